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
    Backend, Cli, CollectArgs, Command, CompletionsArgs, DetectArgs, EvidenceArgs, Format,
    IntegrationArgs, LiveArgs, ManArgs, OutputArgs, ReplayArgs, SynthArgs,
};
use floodwatch::alert::{EventWriter, OutputFormat};
use floodwatch::baseline::BaselineFile;
use floodwatch::capture::file::MultiFileSource;
use floodwatch::capture::udp::UdpSource;
use floodwatch::capture::FrameSource;
use floodwatch::config::{DetectConfig, FileConfig};
use floodwatch::evidence_pcap::EvidenceConfig;
use floodwatch::hook::{AlertHook, HookConfig};
use floodwatch::metrics::{Metrics, MetricsServer};
use floodwatch::pipeline::{self, Integrations, PipelineConfig};
use floodwatch::synth;
use floodwatch::telemetry::TelemetryConfig;
use progress::ProgressSource;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(*args),
        Command::Live(args) => live(*args),
        Command::Collect(args) => collect(*args),
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
    )?;
    let evidence = evidence_config(&args.evidence)?;
    if evidence.is_some() && args.decode_threads.is_some_and(|n| n > 0) && !args.output.quiet {
        eprintln!(
            "floodwatch: note: --evidence-dir reads the capture on one thread; --decode-threads is ignored"
        );
    }
    let pipe = PipelineConfig {
        realtime: args.realtime,
        decode_threads: if evidence.is_some() {
            0
        } else {
            args.decode_threads
                .map_or_else(default_decode_threads, usize::from)
        },
        evidence,
        ..base
    };
    let writer = open_output(&args.output)?;
    let stop = install_stop_handler()?;
    let extras = Extras::start(&args.integrations, args.output.quiet)?;
    let mut source =
        ProgressSource::new(MultiFileSource::new(args.files.clone()), !args.output.quiet);
    let outcome = pipeline::run_input(
        pipeline::Input::Pooled(&mut source),
        &detect,
        &pipe,
        writer,
        &stop,
        extras.integrations(),
    );
    source.finish();
    let outcome = outcome?;
    end_run(
        outcome,
        &detect,
        args.save_baseline.as_deref(),
        extras,
        &stop,
        args.output.quiet,
    )
}

/// The end every mode shares: save the baselines, wait for the hook, print the summary, let the
/// metrics linger, and the exit code (0; 1 when reading stopped on an error; 0 when the output was
/// closed early, e.g. `| head`).
fn end_run(
    outcome: pipeline::RunOutcome,
    detect: &DetectConfig,
    save_baseline: Option<&std::path::Path>,
    mut extras: Extras,
    stop: &AtomicBool,
    quiet: bool,
) -> Result<ExitCode> {
    if let Some(path) = save_baseline {
        BaselineFile::new(detect.subnet_v4, detect.subnet_v6, outcome.baselines).save(path)?;
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
    Ok(ExitCode::SUCCESS)
}

/// The metrics endpoint and the alert hook of a run, when asked for.
struct Extras {
    metrics: Option<Arc<Metrics>>,
    server: Option<MetricsServer>,
    linger: Option<std::time::Duration>,
    hook: Option<AlertHook>,
    stats_interval: Option<std::time::Duration>,
}

impl Extras {
    /// Binds the endpoint and starts the hook runner before any input is read.
    fn start(a: &IntegrationArgs, quiet: bool) -> Result<Extras> {
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
        })
    }

    fn integrations(&self) -> Integrations<'_> {
        Integrations {
            metrics: self.metrics.as_deref(),
            hook: self.hook.as_ref(),
            stats_interval: self.stats_interval,
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
        if let Some(m) = &self.metrics {
            m.set_run_finished();
        }
        line
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
    let (detect, base) = settings(
        &args.detect,
        args.load_baseline.as_deref(),
        args.save_baseline.is_some(),
    )?;
    let pipe = PipelineConfig {
        live: true,
        status_interval: Some(args.status_interval).filter(|d| !d.is_zero()),
        evidence: evidence_config(&args.evidence)?,
        ..base
    };
    let writer = open_output(&args.output)?;
    let (input, described) = open_live(&args)?;
    let stop = install_stop_handler()?;
    let extras = Extras::start(&args.integrations, args.output.quiet)?;
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
        args.save_baseline.as_deref(),
        extras,
        &stop,
        args.output.quiet,
    )
}

fn collect(args: CollectArgs) -> Result<ExitCode> {
    let (detect, base) = settings(
        &args.detect,
        args.load_baseline.as_deref(),
        args.save_baseline.is_some(),
    )?;
    let live = !args.listen.is_empty();
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
    let writer = open_output(&args.output)?;
    let mut listening = None;
    let mut source: Box<dyn FrameSource> = if live {
        let udp = UdpSource::bind(&args.listen, args.recv_buffer)?;
        listening = Some(udp.describe());
        if !args.output.quiet {
            for w in udp.warnings() {
                eprintln!("floodwatch: warning: {w}");
            }
        }
        Box::new(udp)
    } else {
        Box::new(ProgressSource::new(
            MultiFileSource::new(args.pcap.clone()),
            !args.output.quiet,
        ))
    };
    let stop = install_stop_handler()?;
    let extras = Extras::start(&args.integrations, args.output.quiet)?;
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
        args.save_baseline.as_deref(),
        extras,
        &stop,
        args.output.quiet,
    )
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

/// The detection settings and the pipeline layout both modes share (threads, batch size, baselines).
fn settings(
    a: &DetectArgs,
    load_baseline: Option<&std::path::Path>,
    save_baseline: bool,
) -> Result<(DetectConfig, PipelineConfig)> {
    let detect = detect_config(a)?;
    let pipe = PipelineConfig {
        threads: a
            .threads
            .map(usize::from)
            .unwrap_or_else(pipeline::default_shards),
        batch_size: a.batch_size as usize,
        load_baselines: load_baselines(load_baseline, &detect)?,
        save_baselines: save_baseline,
        ..PipelineConfig::default()
    };
    Ok((detect, pipe))
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

/// A seed that differs per run, so attackers cannot aim at fixed hash buckets.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// Opens the alert destination before any input is read, so a bad path fails at once.
fn open_output(o: &OutputArgs) -> Result<EventWriter<Box<dyn Write + Send>>> {
    let out: Box<dyn Write + Send> = match &o.output {
        Some(path) => Box::new(BufWriter::new(File::create(path).with_context(|| {
            format!(
                "cannot write alerts to {}: check the directory exists and is writable",
                path.display()
            )
        })?)),
        None => Box::new(BufWriter::new(io::stdout())),
    };
    let format = match o.format {
        Format::Json => OutputFormat::Json,
        Format::Text => OutputFormat::Text,
    };
    Ok(EventWriter::new(out, format))
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
    let opts = synth::SynthOptions {
        seed: a.seed,
        duration: a.duration,
        attack_start: a.attack_start,
        attack_duration: a.attack_duration,
        attack_pps: a.attack_pps,
        background_pps: a.background_pps,
        victim: a.victim,
        sources: a.sources,
        src_mac: a.src_mac,
        dst_mac: a.dst_mac,
        min_size: a.min_size,
        start: a.start.unwrap_or(synth::SynthOptions::default().start),
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
