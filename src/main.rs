//! The `floodwatch` binary: parses the command line and wires the library's stages together.

mod cli;
mod progress;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

use cli::{
    Backend, Cli, ClusterArgs, CollectArgs, Command, CompletionsArgs, DetectArgs, DetectNodeArgs,
    EvidenceArgs, Format, IntegrationArgs, LiveArgs, ManArgs, OutputArgs, PrivilegeArgs,
    PublishArgs, ReplayArgs, ReportArgs, StateArgs, SynthArgs,
};
use floodwatch::alert::{EventWriter, OutputFormat};
use floodwatch::baseline::BaselineFile;
use floodwatch::capture::file::MultiFileSource;
use floodwatch::capture::udp::UdpSource;
use floodwatch::capture::FrameSource;
use floodwatch::config::{DetectConfig, FileConfig};
use floodwatch::evidence_pcap::EvidenceConfig;
use floodwatch::hook::{AlertHook, HookConfig};
use floodwatch::metrics::{CheckpointReport, Metrics, MetricsServer};
use floodwatch::mitigation::bgp::{Announcer, BgpConfig, Blackhole, BLACKHOLE_COMMUNITY};
use floodwatch::pipeline::{self, CheckpointClock, CheckpointConfig, Integrations, PipelineConfig};
use floodwatch::privileges;
use floodwatch::reload::{self, ReloadSlot, ReopenFile};
use floodwatch::report::live::AlertReports;
use floodwatch::report::{LinkBase, Recording, RenderOptions};
use floodwatch::state::{self, Snapshot, StateStart};
use floodwatch::synth;
use floodwatch::telemetry::TelemetryConfig;
use progress::ProgressSource;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(*args),
        Command::Live(args) => live(*args),
        Command::Collect(args) => collect(*args),
        Command::Report(args) => report(*args),
        Command::Detect(args) => detect_node(*args),
        Command::Synth(args) => synth_capture(args),
        Command::Config(_) => write_stdout(floodwatch::config::DEFAULT_CONFIG.as_bytes()),
        Command::Completions(args) => completions(args),
        Command::Man(args) => man_page(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("floodwatch: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let (detect, base) = settings(
        &args.detect,
        args.load_baseline.as_deref(),
        args.save_baseline.is_some(),
        &args.state,
        CheckpointClock::Packet,
        args.output.quiet,
    )?;
    let evidence = evidence_config(&args.evidence)?;
    if evidence.is_some() && args.decode_threads.is_some_and(|n| n > 0) && !args.output.quiet {
        eprintln!(
            "floodwatch: note: --evidence-dir reads the capture on one thread; --decode-threads is ignored"
        );
    }
    let pipe = PipelineConfig {
        realtime: args.realtime,
        speed: args.speed,
        decode_threads: decode_threads_for(evidence.as_ref(), args.decode_threads),
        evidence,
        record: args.record.is_some(),
        ..base
    };
    if let Some(url) = &args.publish.publish {
        let stop = install_stop_handler()?;
        let mut source =
            ProgressSource::new(MultiFileSource::new(args.files.clone()), !args.output.quiet);
        let code = ingest(
            url,
            &args.publish,
            &mut source,
            (&detect, &pipe),
            &stop,
            args.output.quiet,
        );
        source.finish();
        return code;
    }
    if let Some(path) = &args.record {
        check_can_create(path, "the --record file")?;
    }
    prepare_state(&args.state, args.output.quiet)?;
    let writer = open_output(&args.output)?;
    let stop = install_stop_handler()?;
    let bgp = bgp_config(
        &args.integrations,
        &args.detect,
        args.state.state.as_deref(),
    )?;
    let extras = Extras::start(
        &args.integrations,
        args.output.quiet,
        input_names(&args.files).join(", "),
        false,
        bgp,
    )?;
    let mut outcome = replay_files(
        &args.files,
        !args.output.quiet,
        (&detect, &pipe),
        writer,
        &stop,
        extras.integrations(),
    )?;
    // a recording that cannot be written must not cost the baselines, the state or the summary
    let mut record_error = None;
    if let (Some(path), Some(mut rec)) = (&args.record, outcome.recording.take()) {
        rec.inputs = input_names(&args.files);
        record_error = rec.save(path).err().map(anyhow::Error::from);
    }
    let code = end_run(
        outcome,
        &detect,
        Saves {
            baseline: args.save_baseline.as_deref(),
            state: args.state.state.as_deref(),
        },
        extras,
        &stop,
        args.output.quiet,
    )?;
    match record_error {
        Some(e) => {
            eprintln!("floodwatch: error: {e:#}");
            Ok(ExitCode::from(1))
        }
        None => Ok(code),
    }
}

/// `floodwatch report`: a recording (made here by replaying the captures, or read with --from)
/// rendered as one HTML page.
fn report(args: ReportArgs) -> Result<ExitCode> {
    check_can_create(&args.output, "the report")?;
    if let Some(path) = &args.record {
        check_can_create(path, "the --record file")?;
    }
    let mut failed = false;
    let recording = match &args.from {
        Some(path) => Recording::load(path)?,
        None => {
            let no_state = StateArgs {
                state: None,
                state_interval: std::time::Duration::from_secs(300),
            };
            let (detect, base) = settings(
                &args.detect,
                args.load_baseline.as_deref(),
                false,
                &no_state,
                CheckpointClock::Packet,
                args.quiet,
            )?;
            let evidence = evidence_config(&args.evidence)?;
            let pipe = PipelineConfig {
                // evidence needs the frames on the reading thread (as replay)
                decode_threads: decode_threads_for(evidence.as_ref(), None),
                evidence,
                record: true,
                ..base
            };
            let out: Box<dyn Write + Send> = match &args.alerts {
                Some(path) => Box::new(BufWriter::new(File::create(path).with_context(|| {
                    format!("cannot create the alerts file {}", path.display())
                })?)),
                None => Box::new(io::sink()),
            };
            let writer = EventWriter::new(out, OutputFormat::Json);
            let stop = install_stop_handler()?;
            let mut outcome = replay_files(
                &args.files,
                !args.quiet,
                (&detect, &pipe),
                writer,
                &stop,
                Integrations::default(),
            )?;
            if let Some(e) = &outcome.capture_error {
                eprintln!("floodwatch: error: {e} (the report covers what was read before it)");
                failed = true;
            }
            if !args.quiet {
                eprint!("{}", pipeline::render_summary(&outcome.summary));
            }
            let mut rec = outcome
                .recording
                .take()
                .context("the run recorded nothing (a bug: please report it)")?;
            rec.inputs = input_names(&args.files);
            if let Some(path) = &args.record {
                rec.save(path)?;
            }
            rec
        }
    };
    let opts = RenderOptions {
        title: args.title.clone(),
        max_detailed: args.max_detailed as usize,
        links: link_base(&args.output),
    };
    let html = floodwatch::report::render_html(&recording, &opts)?;
    write_atomically(&args.output, html.as_bytes())
        .with_context(|| format!("cannot write the report {}", args.output.display()))?;
    if !args.quiet {
        eprintln!(
            "floodwatch: report written to {} ({} alert(s), {} KB)",
            args.output.display(),
            recording.alerts.len(),
            html.len().div_ceil(1024)
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Evidence links of a page written to `output`: relative paths of the recording are relative to
/// the current directory; the page links them relative to its own directory. None when the
/// current directory is unknown (the paths are then linked as recorded).
fn link_base(output: &std::path::Path) -> Option<LinkBase> {
    let cwd = std::env::current_dir().ok()?;
    let page = cwd.join(output);
    let page_dir = page
        .parent()
        .map_or_else(|| cwd.clone(), |d| d.to_path_buf());
    Some(LinkBase { cwd, page_dir })
}

/// Replays capture files through the pipeline, with a progress bar when `progress` (what `replay`
/// and `report` share).
fn replay_files<W: Write + Send>(
    files: &[std::path::PathBuf],
    progress: bool,
    (detect, pipe): (&DetectConfig, &PipelineConfig),
    writer: EventWriter<W>,
    stop: &AtomicBool,
    integ: Integrations<'_>,
) -> Result<pipeline::RunOutcome> {
    let mut source = ProgressSource::new(MultiFileSource::new(files.to_vec()), progress);
    let outcome = pipeline::run_input(
        pipeline::Input::Pooled(&mut source),
        detect,
        pipe,
        writer,
        stop,
        integ,
    );
    source.finish();
    Ok(outcome?)
}

/// The capture files as a report names its inputs.
fn input_names(files: &[std::path::PathBuf]) -> Vec<String> {
    files.iter().map(|f| f.display().to_string()).collect()
}

/// Decode threads of a replay: none with --evidence-dir (the sample needs the frames on the
/// reading thread), else as asked or the default.
fn decode_threads_for(evidence: Option<&EvidenceConfig>, asked: Option<u16>) -> usize {
    if evidence.is_some() {
        0
    } else {
        asked.map_or_else(default_decode_threads, usize::from)
    }
}

/// Fails at once, before any input is read, when `path` cannot be created (its directory is missing
/// or not writable): a long replay must not end in that error.
fn check_can_create(path: &std::path::Path, what: &str) -> Result<()> {
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
        anyhow::bail!(
            "cannot write {what} {}: it is a directory (give a file name)",
            path.display()
        );
    }
    let probe = temp_beside(path);
    File::create(&probe)
        .map(drop)
        .with_context(|| format!("cannot write {what} {}", path.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The temporary name `path` is written under before the rename: hidden, in the same directory.
fn temp_beside(path: &std::path::Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "floodwatch".to_string());
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place: a reader never
/// sees half a file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_beside(path);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where the learned baselines go at the end of a run.
#[derive(Clone, Copy)]
struct Saves<'a> {
    /// `--save-baseline`.
    baseline: Option<&'a std::path::Path>,
    /// `--state`.
    state: Option<&'a std::path::Path>,
}

/// The end every mode shares: write the state and the baselines, wait for the hook, print the
/// summary, let the metrics linger, and the exit code (0; 1 when reading stopped on an error or the
/// state could not be saved; 0 when the output was closed early, e.g. `| head`).
fn end_run(
    mut outcome: pipeline::RunOutcome,
    detect: &DetectConfig,
    saves: Saves<'_>,
    mut extras: Extras,
    stop: &AtomicBool,
    quiet: bool,
) -> Result<ExitCode> {
    let baselines = std::mem::take(&mut outcome.baselines);
    let (v4, v6) = (detect.subnet_v4, detect.subnet_v6);
    let mut state_failed = false;
    if let Some(path) = saves.state {
        // the last checkpoint: a failure is reported, and the --save-baseline file still written
        let started = std::time::Instant::now();
        let keys = baselines.len() as u64;
        let result = Snapshot::new(v4, v6, baselines.clone()).save(path);
        if let Some(m) = &extras.metrics {
            m.record_checkpoint(&CheckpointReport {
                ok: result.is_ok(),
                keys,
                pause: std::time::Duration::ZERO,
                write: started.elapsed(),
                at: floodwatch::time::Timestamp::now(),
            });
        }
        match result {
            Ok(()) if !quiet => {
                let t = outcome.checkpoints.unwrap_or_default();
                eprintln!(
                    "floodwatch: state saved to {} ({keys} keys); checkpoints during the run: {} written, {} failed",
                    path.display(),
                    t.written,
                    t.failed
                )
            }
            Ok(()) => {}
            Err(e) => {
                eprintln!("floodwatch: error: {e}");
                state_failed = true;
            }
        }
    }
    if let Some(path) = saves.baseline {
        Snapshot::new(v4, v6, baselines).save(path)?;
    }
    let hook_line = extras.finish_hook(quiet);
    let s = &outcome.summary;
    if !s.output_closed && !quiet {
        eprint!("{}", pipeline::render_summary(s));
        eprint!("{hook_line}");
    }
    extras.linger(stop);
    if s.output_closed {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(e) = outcome.capture_error {
        eprintln!("floodwatch: error: {e}");
        return Ok(ExitCode::from(1));
    }
    if state_failed {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The metrics endpoint and the alert hook of a run, when asked for.
struct Extras {
    metrics: Option<Arc<Metrics>>,
    server: Option<MetricsServer>,
    linger: Option<std::time::Duration>,
    hook: Option<AlertHook>,
    stats_interval: Option<std::time::Duration>,
    reports: Option<AlertReports>,
    /// SIGHUP reloads (live and collect).
    reload: Option<Arc<ReloadSlot>>,
    /// `--exabgp-pipe`.
    bgp: Option<Announcer>,
}

impl Extras {
    /// Binds the endpoint and starts the hook runner before any input is read.
    /// `input` names what is read (for --report-dir pages); `live`: a full --report-dir queue
    /// drops pages rather than wait (a replay waits: nothing is lost by it).
    fn start(
        a: &IntegrationArgs,
        quiet: bool,
        input: String,
        live: bool,
        bgp: Option<BgpConfig>,
    ) -> Result<Extras> {
        let bgp = match bgp {
            Some(cfg) => {
                let (announcer, note) = Announcer::start(cfg)?;
                // a pipe with no reader is worth saying even with --quiet: nothing reaches the routers
                if let Some(note) = note {
                    eprintln!("{note}");
                }
                Some(announcer)
            }
            None => None,
        };
        let reports = match &a.report_dir {
            Some(dir) => Some(AlertReports::start_with(
                dir,
                input,
                RenderOptions::default(),
                !live,
            )?),
            None => None,
        };
        let hook = match &a.on_alert {
            Some(cmd) => Some(
                AlertHook::start(HookConfig {
                    command: cmd.clone(),
                    concurrency: usize::from(a.on_alert_concurrency),
                    timeout: a.on_alert_timeout,
                    queue: a.on_alert_queue as usize,
                })
                .context("cannot start the --on-alert runner thread")?,
            ),
            None => None,
        };
        let (metrics, server) = match a.metrics_listen {
            Some(addr) => {
                let m = Arc::new(Metrics::new());
                if let Some(h) = &hook {
                    m.attach_hook(h.stats());
                }
                if let Some(b) = &bgp {
                    m.attach_bgp(b.stats_handle());
                }
                let srv = MetricsServer::start(addr, Arc::clone(&m))?;
                if !quiet {
                    eprintln!("floodwatch: metrics on http://{}/metrics", srv.local_addr());
                }
                (Some(m), Some(srv))
            }
            None => (None, None),
        };
        Ok(Extras {
            metrics,
            server,
            linger: a.metrics_linger,
            hook,
            stats_interval: a.stats_interval,
            reports,
            reload: None,
            bgp,
        })
    }

    /// Starts the SIGHUP thread: reopens `output`, reloads `--config` under the command line's
    /// settings, counting reloads in the metrics.
    fn watch_sighup(
        &mut self,
        a: &DetectArgs,
        running: &DetectConfig,
        output: Option<ReopenFile>,
    ) -> Result<()> {
        let slot = Arc::new(ReloadSlot::new());
        reload::spawn_sighup_thread(reload::Reloader {
            config: a.config.clone(),
            overrides: a.overrides(),
            running: running.clone(),
            slot: Arc::clone(&slot),
            output,
            metrics: self.metrics.clone(),
        })
        .context("cannot start the SIGHUP thread")?;
        self.reload = Some(slot);
        Ok(())
    }

    fn integrations(&self) -> Integrations<'_> {
        Integrations {
            metrics: self.metrics.as_deref(),
            hook: self.hook.as_ref(),
            stats_interval: self.stats_interval,
            reports: self.reports.as_ref(),
            reload: self.reload.as_deref(),
            bgp: self.bgp.as_ref(),
        }
    }

    /// Waits for the hook's last commands, marks the metrics final and returns the summary line
    /// of the hook.
    fn finish_hook(&mut self, quiet: bool) -> String {
        let mut line = String::new();
        if let Some(h) = self.hook.take() {
            let report = h.finish();
            line = format!("  alert hook: {report}\n");
            if quiet && report.problems() > 0 {
                eprintln!("floodwatch: --on-alert: {report}");
            }
        }
        if let Some(r) = self.reports.take() {
            let c = r.finish();
            line.push_str(&format!(
                "  alert reports: {} written, {} dropped (writer behind), {} failed\n",
                c.written, c.dropped, c.failed
            ));
            if let Some(e) = c.last_error {
                eprintln!(
                    "floodwatch: --report-dir: {} page(s) failed, the last: {e}",
                    c.failed
                );
            }
        }
        line.push_str(&self.finish_bgp(quiet));
        if let Some(m) = &self.metrics {
            m.set_run_finished();
        }
        line
    }

    /// Withdraws what `--exabgp-pipe` announced (unless kept) and returns its summary line.
    fn finish_bgp(&mut self, quiet: bool) -> String {
        let Some(b) = self.bgp.take() else {
            return String::new();
        };
        let stats = b.finish();
        if quiet && (stats.dropped > 0 || stats.active_at_exit > 0) {
            eprintln!("floodwatch: --exabgp-pipe: {stats}");
        }
        format!("  exabgp: {stats}\n")
    }

    /// Keeps the endpoint up for `--metrics-linger` (or until Ctrl-C), then closes it.
    fn linger(self, stop: &AtomicBool) {
        if let (Some(server), Some(linger)) = (self.server, self.linger) {
            let until = std::time::Instant::now() + linger;
            while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            server.shutdown();
        }
    }
}

fn live(args: LiveArgs) -> Result<ExitCode> {
    // before any thread starts, so only the SIGHUP thread ever receives it
    reload::block_sighup().context("cannot block SIGHUP")?;
    let (detect, base) = settings(
        &args.detect,
        args.load_baseline.as_deref(),
        args.save_baseline.is_some(),
        &args.state,
        CheckpointClock::Wall,
        args.output.quiet,
    )?;
    let pipe = PipelineConfig {
        live: true,
        status_interval: Some(args.status_interval).filter(|d| !d.is_zero()),
        evidence: evidence_config(&args.evidence)?,
        ..base
    };
    if let Some(url) = &args.publish.publish {
        let (input, described) = open_live(&args)?;
        let LiveInput::One(mut source) = input else {
            anyhow::bail!("--publish reads with one capture thread: leave out --capture-threads");
        };
        let stop = install_stop_handler()?;
        drop_privileges(&args.privileges, args.output.quiet)?;
        if !args.output.quiet {
            eprintln!(
                "floodwatch: capturing on {} ({described}) for cluster {:?}; Ctrl-C stops",
                args.interface, args.publish.cluster.cluster
            );
        }
        return ingest(
            url,
            &args.publish,
            source.as_mut(),
            (&detect, &pipe),
            &stop,
            args.output.quiet,
        );
    }
    let (writer, reopen) = open_daemon_output(&args.output)?;
    let (input, described) = open_live(&args)?;
    let stop = install_stop_handler()?;
    let bgp = bgp_config(
        &args.integrations,
        &args.detect,
        args.state.state.as_deref(),
    )?;
    let mut extras = Extras::start(
        &args.integrations,
        args.output.quiet,
        format!("interface {}", args.interface),
        true,
        bgp,
    )?;
    drop_privileges(&args.privileges, args.output.quiet)?;
    recheck_dirs(&args.privileges, &pipe, &args.integrations)?;
    prepare_state(&args.state, args.output.quiet)?;
    extras.watch_sighup(&args.detect, &detect, reopen)?;
    if !args.output.quiet {
        eprintln!(
            "floodwatch: capturing on {} ({described}); Ctrl-C stops",
            args.interface
        );
    }
    let mut one;
    let input = match input {
        LiveInput::One(source) => {
            one = source;
            pipeline::Input::One(one.as_mut())
        }
        LiveInput::Group(sources) => pipeline::Input::Many(sources),
    };
    let outcome = pipeline::run_input(input, &detect, &pipe, writer, &stop, extras.integrations())?;
    end_run(
        outcome,
        &detect,
        Saves {
            baseline: args.save_baseline.as_deref(),
            state: args.state.state.as_deref(),
        },
        extras,
        &stop,
        args.output.quiet,
    )
}

fn collect(args: CollectArgs) -> Result<ExitCode> {
    let live = !args.listen.is_empty();
    if live {
        // before any thread starts, so only the SIGHUP thread ever receives it
        reload::block_sighup().context("cannot block SIGHUP")?;
    }
    let (detect, base) = settings(
        &args.detect,
        args.load_baseline.as_deref(),
        args.save_baseline.is_some(),
        &args.state,
        if live {
            CheckpointClock::Wall
        } else {
            CheckpointClock::Packet
        },
        args.output.quiet,
    )?;
    let pipe = PipelineConfig {
        live,
        status_interval: Some(args.status_interval).filter(|d| live && !d.is_zero()),
        telemetry: Some(pipeline::CollectConfig {
            telemetry: TelemetryConfig {
                max_exporters: args.max_exporters.max(1),
                max_templates: args.max_templates.max(1),
                allow: args.allow.clone(),
                window_ns: detect.window_ns(),
                tick_ns: detect.tick.as_nanos().clamp(1, u128::from(u64::MAX)) as u64,
            },
            ports: args.port.clone(),
        }),
        ..base
    };
    if let Some(url) = &args.publish.publish {
        let (mut source, _) = collect_source(&args, live)?;
        let stop = install_stop_handler()?;
        drop_privileges(&args.privileges, args.output.quiet)?;
        return ingest(
            url,
            &args.publish,
            source.as_mut(),
            (&detect, &pipe),
            &stop,
            args.output.quiet,
        );
    }
    let (writer, reopen) = if live {
        open_daemon_output(&args.output)?
    } else {
        (open_output(&args.output)?, None)
    };
    let (mut source, listening) = collect_source(&args, live)?;
    let stop = install_stop_handler()?;
    let described = if live {
        format!("telemetry on {}", listening.as_deref().unwrap_or("?"))
    } else {
        format!("telemetry from {}", input_names(&args.pcap).join(", "))
    };
    let bgp = bgp_config(
        &args.integrations,
        &args.detect,
        args.state.state.as_deref(),
    )?;
    let mut extras = Extras::start(&args.integrations, args.output.quiet, described, live, bgp)?;
    drop_privileges(&args.privileges, args.output.quiet)?;
    recheck_dirs(&args.privileges, &pipe, &args.integrations)?;
    prepare_state(&args.state, args.output.quiet)?;
    if live {
        extras.watch_sighup(&args.detect, &detect, reopen)?;
    }
    // last start-up line: once it is printed, the sockets and the metrics endpoint are ready
    if let (Some(on), false) = (listening, args.output.quiet) {
        eprintln!("floodwatch: collecting telemetry on {on}; Ctrl-C stops");
    }
    let outcome = pipeline::run_input(
        pipeline::Input::One(source.as_mut()),
        &detect,
        &pipe,
        writer,
        &stop,
        extras.integrations(),
    )?;
    drop(source);
    end_run(
        outcome,
        &detect,
        Saves {
            baseline: args.save_baseline.as_deref(),
            state: args.state.state.as_deref(),
        },
        extras,
        &stop,
        args.output.quiet,
    )
}

/// The input of `collect`: the --listen sockets (and what they listen on) or the --pcap files.
fn collect_source(
    args: &CollectArgs,
    live: bool,
) -> Result<(Box<dyn FrameSource>, Option<String>)> {
    if !live {
        let files = MultiFileSource::new(args.pcap.clone());
        return Ok((
            Box::new(ProgressSource::new(files, !args.output.quiet)),
            None,
        ));
    }
    let udp = UdpSource::bind(&args.listen, args.recv_buffer)?;
    if !args.output.quiet {
        for w in udp.warnings() {
            eprintln!("floodwatch: warning: {w}");
        }
    }
    let listening = udp.describe();
    Ok((Box::new(udp), Some(listening)))
}

/// Joins the cluster `c` on NATS at `url`.
fn join_cluster(
    url: &str,
    c: &ClusterArgs,
    detect: &DetectConfig,
    client_name: &str,
) -> Result<floodwatch::bus::cluster::ClusterBus> {
    let sec = &c.security;
    let nats = floodwatch::bus::client::NatsOptions {
        url: url.to_string(),
        name: client_name.to_string(),
        tls_ca: sec.nats_tls_ca.clone(),
        tls_cert: sec.nats_tls_cert.clone(),
        tls_key: sec.nats_tls_key.clone(),
        creds: sec.nats_creds.clone(),
        nkey: sec.nats_nkey.clone(),
        user: sec.nats_user.clone(),
        password_file: sec.nats_password_file.clone(),
        token_file: sec.nats_token_file.clone(),
    };
    let settings = floodwatch::bus::cluster::JoinSettings {
        name: c.cluster.clone(),
        partitions: c.cluster_partitions,
        subnet_v4: detect.subnet_v4,
        subnet_v6: detect.subnet_v6,
        max_bytes: i64::try_from(c.bus_max_bytes).unwrap_or(i64::MAX),
        storage: match c.bus_storage {
            cli::BusStorage::File => floodwatch::bus::store::Storage::File,
            cli::BusStorage::Memory => floodwatch::bus::store::Storage::Memory,
        },
    };
    floodwatch::bus::cluster::join(&nats, &settings, random_seed())
        .with_context(|| format!("cannot join cluster {:?} on NATS at {url}", c.cluster))
}

/// `--publish`: reads `source` as an ingest node of the cluster, publishing the summaries.
fn ingest(
    url: &str,
    p: &PublishArgs,
    source: &mut dyn FrameSource,
    (detect, pipe): (&DetectConfig, &PipelineConfig),
    stop: &AtomicBool,
    quiet: bool,
) -> Result<ExitCode> {
    use floodwatch::bus::publish::{run_publisher, PublishCounters, PublisherConfig};
    let node = p.node_id.unwrap_or_else(|| random_seed() as u32);
    let bus = join_cluster(
        url,
        &p.cluster,
        detect,
        &format!("floodwatch-ingest-{node}"),
    )?;
    let counters = Arc::new(PublishCounters::default());
    let cfg = PublisherConfig {
        url: url.to_string(),
        subjects: (0..bus.cluster.partitions)
            .map(|i| bus.partition_subject(i))
            .collect(),
        buffer_bytes: p.publish_buffer,
        drain_timeout: std::time::Duration::from_secs(10),
        verbose: !quiet,
    };
    if !quiet {
        eprintln!(
            "floodwatch: ingest node {node} of cluster {:?} ({} partitions) publishing to {url}",
            bus.name, bus.cluster.partitions
        );
    }
    let (tx, rx) = crossbeam_channel::bounded(64);
    let out = pipeline::ingest::BusOut {
        cluster: bus.cluster,
        node,
        batch: p.publish_batch,
        tx,
    };
    let publisher = bus.js.publisher();
    let (summary, error, published) = std::thread::scope(|s| {
        let c = Arc::clone(&counters);
        let h = s.spawn(move || run_publisher(publisher, rx, cfg, c));
        let (summary, error) = pipeline::ingest::run_ingest(source, detect, pipe, out, stop, None);
        (summary, error, h.join())
    });
    let published =
        published.map_err(|_| anyhow::anyhow!("the publisher thread panicked (a bug)"))?;
    if !quiet {
        // an ingest node counts no keys and raises no alert: those lines would only mislead
        let rendered = pipeline::render_summary(&summary);
        for line in rendered.lines().filter(|l| {
            let l = l.trim_start();
            !l.starts_with("peak keys") && !l.starts_with("alerts:")
        }) {
            eprintln!("{line}");
        }
        eprintln!(
            "published: {} summaries in {} batches ({} bytes) to cluster {:?}; dropped {} summaries in {} batches (NATS unreachable and the buffer full{}); {} disconnects, {} batches sent again after one, {} refused by JetStream",
            published.summaries,
            published.batches,
            published.bytes,
            bus.name,
            published.dropped_summaries,
            published.dropped_batches,
            if published.unsent_at_end > 0 {
                format!(", {} still unsent at the end", published.unsent_at_end)
            } else {
                String::new()
            },
            published.disconnects,
            published.resent_batches,
            published.refused_batches
        );
    }
    if let Some(e) = error {
        eprintln!("floodwatch: error: {e}");
        return Ok(ExitCode::from(1));
    }
    if published.unsent_at_end > 0 {
        eprintln!(
            "floodwatch: error: {} batches could not be published to {url} before giving up",
            published.unsent_at_end
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `floodwatch detect`: a detector node of a cluster.
fn detect_node(args: DetectNodeArgs) -> Result<ExitCode> {
    use floodwatch::bus::cluster::{group_name, parse_partitions};
    use floodwatch::bus::detector::{run_detector, DetectorConfig};
    let mut detect = detect_config(&args.detect)?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    let instance = format!("{host}-{}", std::process::id());
    let bus = join_cluster(
        &args.nats,
        &args.cluster,
        &detect,
        &format!("floodwatch-detect-{instance}"),
    )?;
    let partitions = parse_partitions(&args.partitions, bus.cluster.partitions)
        .map_err(|e| anyhow::anyhow!("--partitions {}: {e}", args.partitions))?;
    let group = group_name(&partitions);
    if args.detect.threads.is_some_and(|t| t > 1) && !args.output.quiet {
        eprintln!(
            "floodwatch: note: a detector runs one engine; --threads is ignored (to use more cores, run more detectors over fewer partitions each)"
        );
    }
    // a standby must hash keys as the detector it replaces: the seed comes from the cluster's
    if args.detect.seed.is_none() {
        use std::hash::{BuildHasher, Hasher};
        let mut h = foldhash::fast::FixedState::with_seed(bus.cluster.seed).build_hasher();
        h.write(group.as_bytes());
        detect.hash_seed = h.finish();
    }
    let cfg = DetectorConfig {
        partitions,
        group: group.clone(),
        ingest_nodes: args.ingest_nodes as usize,
        silence: args.silence,
        checkpoint_every: args.checkpoint_interval,
        lease_ttl: args.lease_ttl,
        exit_at_end: args.exit_at_end,
        from_start: args.from_start,
        instance,
        verbose: !args.output.quiet,
    };
    let (writer, _reopen) = open_daemon_output(&args.output)?;
    let stop = install_stop_handler()?;
    let bgp = bgp_config(&args.integrations, &args.detect, None)?;
    let extras = Extras::start(
        &args.integrations,
        args.output.quiet,
        format!("partitions {group} of cluster {}", bus.name),
        true,
        bgp,
    )?;
    let started = std::time::Instant::now();
    let (result, tally, _closed) =
        pipeline::run_events(writer, &stop, extras.integrations(), |emit| {
            run_detector(&bus, detect, &cfg, &stop, emit)
        })?;
    let mut extras = extras;
    let bgp_line = extras.finish_bgp(args.output.quiet);
    let stats = result.with_context(|| format!("detector of partitions {group}"))?;
    if !args.output.quiet {
        let m = &stats.merge;
        eprintln!(
            "floodwatch detector summary (partitions {group} of cluster {})\n  {:.1} s; {} summaries from {} batches of the bus ({} repeated and dropped, {} missing, {} malformed); ingest nodes ended {}, fell silent {} times\n  events: {} written, {} already written before a takeover; {} checkpoints (last {} bytes, longest {} ms){}\n  alerts: {} started, {} ended",
            bus.name,
            started.elapsed().as_secs_f64(),
            m.summaries,
            m.batches,
            m.duplicates,
            m.gaps,
            stats.malformed_batches,
            m.ended_nodes,
            m.silent_nodes,
            stats.events,
            stats.events_suppressed,
            stats.checkpoints,
            stats.checkpoint_bytes,
            stats.checkpoint_longest.as_millis(),
            if stats.restored {
                format!("; restored from a checkpoint in {} ms", stats.takeover.as_millis())
            } else {
                String::new()
            },
            tally.started.values().sum::<u64>(),
            tally.ended,
        );
        eprint!("{bgp_line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A live capture: one source read on the pipeline's thread, or a fanout group, a thread each.
enum LiveInput {
    One(Box<dyn FrameSource>),
    Group(Vec<Box<dyn FrameSource + Send>>),
}

/// Decode threads by default: none up to four cores (a reading thread, a decode thread and the
/// shards would share too few), else a quarter of the cores, at most 8.
fn default_decode_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 4 {
        0
    } else {
        (cores / 4).clamp(1, 8)
    }
}

/// Capture threads by default: one up to three cores (the reader, the shards and the sink share
/// them), else a quarter of the cores, at most 16.
fn default_capture_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 3 {
        1
    } else {
        (cores / 4).clamp(1, 16)
    }
}

/// Opens the capture backend the options ask for; returns it with a short description.
fn open_live(args: &LiveArgs) -> Result<(LiveInput, String)> {
    match args.backend {
        Backend::Afpacket => {
            if args.filter.is_some() {
                anyhow::bail!(
                    "--filter needs --backend pcap (the AF_PACKET backend takes no BPF expressions)"
                );
            }
            open_afpacket(args)
        }
        Backend::Pcap => {
            if args.capture_threads.is_some_and(|n| n > 1) {
                anyhow::bail!(
                    "--capture-threads needs the afpacket backend: the pcap backend reads with one \
                     thread (drop --backend pcap, or --capture-threads)"
                );
            }
            let (source, described) = open_pcap(args)?;
            Ok((LiveInput::One(source), described))
        }
    }
}

#[cfg(target_os = "linux")]
fn open_afpacket(args: &LiveArgs) -> Result<(LiveInput, String)> {
    use floodwatch::capture::afpacket::{AfPacketSource, RingConfig};
    let ring = RingConfig {
        block_size: args.ring_block_size,
        block_count: args.ring_blocks,
        promiscuous: !args.no_promisc,
        ..RingConfig::default()
    };
    let threads = args
        .capture_threads
        .map_or_else(default_capture_threads, usize::from);
    let mut group = AfPacketSource::open_fanout(&args.interface, ring, threads)?;
    let link = group.first().map_or(0, |s| s.link_type().0);
    let sockets = if threads > 1 {
        format!("{threads} sockets in a PACKET_FANOUT hash group, each with a ring")
    } else {
        "ring".to_string()
    };
    let described = format!(
        "AF_PACKET TPACKET_V3, {sockets} {} × {} KiB, link type {link}",
        ring.block_count,
        ring.block_size >> 10,
    );
    if group.len() == 1 {
        if let Some(source) = group.pop() {
            return Ok((LiveInput::One(Box::new(source)), described));
        }
    }
    let sources = group
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn FrameSource + Send>)
        .collect();
    Ok((LiveInput::Group(sources), described))
}

#[cfg(not(target_os = "linux"))]
fn open_afpacket(_: &LiveArgs) -> Result<(LiveInput, String)> {
    anyhow::bail!(
        "the AF_PACKET backend is Linux only: use --backend pcap (build with --features libpcap)"
    )
}

#[cfg(feature = "libpcap")]
fn open_pcap(args: &LiveArgs) -> Result<(Box<dyn FrameSource>, String)> {
    use floodwatch::capture::libpcap::{PcapConfig, PcapSource};
    let cfg = PcapConfig {
        buffer_bytes: args.ring_block_size.saturating_mul(args.ring_blocks),
        promiscuous: !args.no_promisc,
        filter: args.filter.clone(),
        ..PcapConfig::default()
    };
    let buffer = cfg.buffer_bytes;
    let source = PcapSource::open(&args.interface, cfg)?;
    let described = format!(
        "libpcap, buffer {} KiB, link type {}{}",
        buffer >> 10,
        source.link_type().0,
        args.filter
            .as_deref()
            .map(|f| format!(", filter `{f}`"))
            .unwrap_or_default()
    );
    Ok((Box::new(source), described))
}

#[cfg(not(feature = "libpcap"))]
fn open_pcap(_: &LiveArgs) -> Result<(Box<dyn FrameSource>, String)> {
    anyhow::bail!(
        "this floodwatch was built without libpcap: use the default --backend afpacket, or rebuild \
         with `cargo build --release --features libpcap` (needs libpcap-dev)"
    )
}

/// `--evidence-dir` and its companions; the directory is created and proved writable before any
/// input is read, so a bad one fails at once.
fn evidence_config(a: &EvidenceArgs) -> Result<Option<EvidenceConfig>> {
    let cfg = a.config();
    if let Some(c) = &cfg {
        floodwatch::evidence_pcap::prepare_dir(&c.dir)?;
    }
    Ok(cfg)
}

/// `--load-baseline`: read before any input, so a bad file fails at once.
fn load_baselines(
    path: Option<&std::path::Path>,
    detect: &DetectConfig,
) -> Result<Option<Arc<BaselineFile>>> {
    path.map(|p| BaselineFile::load(p, detect.subnet_v4, detect.subnet_v6).map(Arc::new))
        .transpose()
        .map_err(Into::into)
}

/// The detection settings and the pipeline layout every mode shares (threads, batch size,
/// baselines, state checkpoints on `clock`).
fn settings(
    a: &DetectArgs,
    load_baseline: Option<&std::path::Path>,
    save_baseline: bool,
    state: &StateArgs,
    clock: CheckpointClock,
    quiet: bool,
) -> Result<(DetectConfig, PipelineConfig)> {
    let detect = detect_config(a)?;
    // --load-baseline is checked even when the state wins, so a bad file never waits for a restart
    let loaded = load_baselines(load_baseline, &detect)?;
    let from_state = match &state.state {
        Some(path) => load_state(path, &detect, quiet)?,
        None => None,
    };
    let pipe = PipelineConfig {
        threads: a
            .threads
            .map(usize::from)
            .unwrap_or_else(pipeline::default_shards),
        batch_size: a.batch_size as usize,
        load_baselines: from_state.or(loaded),
        save_baselines: save_baseline || state.state.is_some(),
        checkpoint: state.state.as_ref().map(|path| CheckpointConfig {
            path: path.clone(),
            every: state.state_interval,
            clock,
            subnet_v4: detect.subnet_v4,
            subnet_v6: detect.subnet_v6,
            quiet,
        }),
        ..PipelineConfig::default()
    };
    Ok((detect, pipe))
}

/// `--state` at start: the baselines it holds, or none (no file yet, or one that could not be used
/// and was moved aside, with a warning).
fn load_state(
    path: &std::path::Path,
    detect: &DetectConfig,
    quiet: bool,
) -> Result<Option<Arc<BaselineFile>>> {
    match state::load_state(path, detect.subnet_v4, detect.subnet_v6)? {
        StateStart::Missing => {
            if !quiet {
                eprintln!(
                    "floodwatch: no state in {} yet: starting cold, it will be written every --state-interval",
                    path.display()
                );
            }
            Ok(None)
        }
        StateStart::Loaded(f) => {
            if !quiet {
                eprintln!(
                    "floodwatch: state: {} learned baselines from {}",
                    f.entries.len(),
                    path.display()
                );
            }
            Ok(Some(Arc::new(f)))
        }
        StateStart::Quarantined { reason, moved_to } => {
            eprintln!(
                "floodwatch: warning: {reason}; moved it aside to {} and starting cold",
                moved_to.display()
            );
            Ok(None)
        }
    }
}

/// `--user`/`--group`: once everything privileged is open, become that user with no capability.
fn drop_privileges(p: &PrivilegeArgs, quiet: bool) -> Result<()> {
    let Some(user) = &p.user else {
        return Ok(());
    };
    let target = privileges::resolve(user, p.group.as_deref())?;
    let dropped = privileges::drop_to(&target)?;
    if !quiet {
        eprintln!("floodwatch: {dropped}");
    }
    Ok(())
}

/// After `--user`: the --evidence-dir and --report-dir directories were checked as root; check
/// again that this user can write them, so a sample or a page does not fail at the first alert.
fn recheck_dirs(p: &PrivilegeArgs, pipe: &PipelineConfig, a: &IntegrationArgs) -> Result<()> {
    let Some(user) = &p.user else {
        return Ok(());
    };
    let hint = || format!("make it writable by --user {user} (e.g. chown {user})");
    if let Some(e) = &pipe.evidence {
        floodwatch::evidence_pcap::prepare_dir(&e.dir).with_context(hint)?;
    }
    if let Some(dir) = &a.report_dir {
        AlertReports::check_writable(dir).with_context(hint)?;
    }
    Ok(())
}

/// `--state`, just before reading starts (and after any `--user` switch): removes the temporary
/// files a killed run left, and checks the directory takes new files as this user.
fn prepare_state(state: &StateArgs, quiet: bool) -> Result<()> {
    let Some(path) = &state.state else {
        return Ok(());
    };
    for stale in state::remove_stale_temps(path) {
        if !quiet {
            eprintln!(
                "floodwatch: removed {}, left by an interrupted checkpoint",
                stale.display()
            );
        }
    }
    state::check_writable(path)?;
    Ok(())
}

/// Resolves the detection options: command line over the config file over the defaults.
fn detect_config(a: &DetectArgs) -> Result<DetectConfig> {
    let file = a.config.as_deref().map(FileConfig::load).transpose()?;
    let mut cfg =
        DetectConfig::resolve(a.overrides(), file.as_ref()).map_err(|e| match &a.config {
            Some(p) => anyhow::anyhow!("{e} (from the command line or {})", p.display()),
            None => anyhow::anyhow!("{e}"),
        })?;
    cfg.hash_seed = a.seed.unwrap_or_else(random_seed);
    Ok(cfg)
}

/// The `--exabgp-pipe` settings, with the config file's never-block prefixes; `None` without it.
/// With `--state` the announced routes are kept beside the state file.
fn bgp_config(
    a: &IntegrationArgs,
    detect: &DetectArgs,
    state: Option<&std::path::Path>,
) -> Result<Option<BgpConfig>> {
    let b = &a.bgp;
    let Some(pipe) = &b.exabgp_pipe else {
        return Ok(None);
    };
    let mut never_block = b.never_block.clone();
    if let Some(path) = &detect.config {
        let file = FileConfig::load(path)?;
        let keys = file
            .mitigation
            .never_block_keys()
            .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        never_block.extend(keys);
    }
    let hop = |v6: bool| -> Result<Option<std::net::IpAddr>> {
        let mut of_family = b.blackhole_next_hop.iter().filter(|h| h.is_ipv6() == v6);
        let first = of_family.next().copied();
        if of_family.next().is_some() {
            anyhow::bail!(
                "--blackhole-next-hop: give at most one IPv{} address",
                if v6 { 6 } else { 4 }
            );
        }
        Ok(first)
    };
    let blackhole = if b.blackhole {
        Some(Blackhole {
            next_hop_v4: hop(false)?,
            next_hop_v6: hop(true)?,
            communities: if b.blackhole_community.is_empty() {
                vec![BLACKHOLE_COMMUNITY.to_owned()]
            } else {
                b.blackhole_community.clone()
            },
        })
    } else {
        None
    };
    Ok(Some(BgpConfig {
        pipe: pipe.clone(),
        action: b.flowspec_action,
        blackhole,
        max_rules: b.bgp_max_rules as usize,
        never_block,
        source_scopes: b.bgp_source_scopes,
        keep_on_exit: b.bgp_keep_on_exit,
        persist: state.map(floodwatch::mitigation::bgp::persist_path_for),
        restore_hold: b.bgp_restore_hold,
        reannounce: floodwatch::mitigation::bgp::REANNOUNCE,
    }))
}

/// A seed that differs per run, so attackers cannot aim at fixed hash buckets.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// Where alerts are written.
type AlertWriter = EventWriter<Box<dyn Write + Send>>;

/// Opens the alert destination before any input is read, so a bad path fails at once.
fn open_output(o: &OutputArgs) -> Result<AlertWriter> {
    let out: Box<dyn Write + Send> = match alert_file(o) {
        Some(path) => Box::new(BufWriter::new(File::create(path).with_context(|| {
            format!(
                "cannot write alerts to {}: check the directory exists and is writable",
                path.display()
            )
        })?)),
        None => Box::new(BufWriter::new(io::stdout())),
    };
    Ok(EventWriter::new(out, output_format(o)))
}

/// The file `--output` names; None for stdout (no option, or `-` as for the capture files).
fn alert_file(o: &OutputArgs) -> Option<&std::path::Path> {
    o.output
        .as_deref()
        .filter(|p| *p != std::path::Path::new("-"))
}

/// A daemon's alert destination: `--output FILE` is appended to (a restart keeps the alerts
/// already there) and reopened on SIGHUP (the returned handle); stdout otherwise.
fn open_daemon_output(o: &OutputArgs) -> Result<(AlertWriter, Option<ReopenFile>)> {
    let Some(path) = alert_file(o) else {
        return Ok((open_output(o)?, None));
    };
    let file = ReopenFile::append(path).with_context(|| {
        format!(
            "cannot write alerts to {}: check the directory exists and is writable",
            path.display()
        )
    })?;
    Ok((
        EventWriter::new(Box::new(file.clone()), output_format(o)),
        Some(file),
    ))
}

fn output_format(o: &OutputArgs) -> OutputFormat {
    match o.format {
        Format::Json => OutputFormat::Json,
        Format::Text => OutputFormat::Text,
    }
}

/// First Ctrl-C / SIGTERM: stop reading, drain, end open alerts, print the summary. Second: exit now.
fn install_stop_handler() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let presses = AtomicUsize::new(0);
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) > 0 {
            std::process::exit(130);
        }
        eprintln!("floodwatch: stopping (Ctrl-C again to quit at once)");
        flag.store(true, Ordering::SeqCst);
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(stop)
}

fn synth_capture(a: SynthArgs) -> Result<ExitCode> {
    let scenario = a.scenario;
    let defaults = synth::SynthOptions::for_scenario(scenario);
    let opts = synth::SynthOptions {
        seed: a.seed,
        duration: a.duration.unwrap_or(defaults.duration),
        attack_start: a.attack_start.unwrap_or(defaults.attack_start),
        attack_duration: a.attack_duration.unwrap_or(defaults.attack_duration),
        attack_pps: a.attack_pps.unwrap_or(defaults.attack_pps),
        background_pps: a.background_pps.unwrap_or(defaults.background_pps),
        victim: a.victim,
        sources: a.sources,
        src_mac: a.src_mac,
        dst_mac: a.dst_mac,
        min_size: a.min_size,
        start: a.start.unwrap_or(defaults.start),
    };
    let file = File::create(&a.output).with_context(|| {
        format!(
            "cannot create {}: check the directory exists and is writable",
            a.output.display()
        )
    })?;
    let report = synth::write_pcap(scenario, &opts, BufWriter::with_capacity(1 << 20, file))
        .with_context(|| format!("writing {}", a.output.display()))?;
    let mut labels_path = a.output.clone().into_os_string();
    labels_path.push(".labels.jsonl");
    let labels = File::create(&labels_path)
        .with_context(|| format!("cannot create {}", labels_path.to_string_lossy()))?;
    synth::write_labels(&report, BufWriter::new(labels))
        .with_context(|| format!("writing {}", labels_path.to_string_lossy()))?;
    eprintln!(
        "floodwatch: wrote {} ({} packets, {} bytes on the wire, {} expected alert(s) in {})",
        a.output.display(),
        report.packets,
        report.bytes,
        report.labels.len(),
        labels_path.to_string_lossy()
    );
    Ok(ExitCode::SUCCESS)
}

/// `floodwatch completions SHELL`: the script on stdout.
fn completions(a: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "floodwatch", &mut script);
    write_stdout(&script)
}

/// `floodwatch man [SUBCOMMAND]`: the roff page on stdout.
fn man_page(a: ManArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match &a.subcommand {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd.find_subcommand(name).cloned() else {
                let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                cmd.error(
                    clap::error::ErrorKind::InvalidValue,
                    format!("no subcommand `{name}` (one of: {})", names.join(", ")),
                )
                .exit();
            };
            sub.name(format!("floodwatch-{name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("rendering the man page")?;
    write_stdout(&roff)
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}
