//! What a run starts beside the pipeline (the metrics endpoint, the alert hook, --report-dir
//! pages, SIGHUP reloads, ExaBGP announcements) and the end every run shares: state and baselines
//! saved, integrations finished, the summary and the exit code.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::{DetectArgs, IntegrationArgs, RunArgs};
use floodwatch::config::{DetectConfig, FileConfig};
use floodwatch::hook::{AlertHook, HookConfig};
use floodwatch::metrics::{CheckpointReport, Metrics, MetricsServer};
use floodwatch::mitigation::bgp::{Announcer, BgpConfig, Blackhole, BLACKHOLE_COMMUNITY};
use floodwatch::pipeline::{self, Integrations};
use floodwatch::reload::{self, ReloadSlot, ReopenFile};
use floodwatch::report::live::AlertReports;
use floodwatch::report::RenderOptions;
use floodwatch::state::Snapshot;

/// The end every mode shares: write the state and the baselines, wait for the hook, print the
/// summary, let the metrics linger, and the exit code (0; 1 when reading stopped on an error or the
/// state could not be saved; 0 when the output was closed early, e.g. `| head`).
pub(crate) fn end_run(
    mut outcome: pipeline::RunOutcome,
    detect: &DetectConfig,
    run: RunArgs<'_>,
    mut extras: Extras,
    stop: &AtomicBool,
) -> Result<ExitCode> {
    let quiet = run.quiet();
    let baselines = std::mem::take(&mut outcome.baselines);
    let (v4, v6) = (detect.subnet_v4, detect.subnet_v6);
    let mut state_failed = false;
    if let Some(path) = &run.baseline.state.state {
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
    if let Some(path) = &run.baseline.save_baseline {
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
pub(crate) struct Extras {
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
    /// drops pages rather than wait (a replay waits: nothing is lost by it). `detect` gives the
    /// config file's never-block prefixes to --exabgp-pipe, which keeps its routes beside `state`.
    pub(crate) fn start(
        a: &IntegrationArgs,
        detect: &DetectArgs,
        state: Option<&std::path::Path>,
        quiet: bool,
        input: String,
        live: bool,
    ) -> Result<Extras> {
        let bgp = match bgp_config(a, detect, state)? {
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
    pub(crate) fn watch_sighup(
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

    pub(crate) fn integrations(&self) -> Integrations<'_> {
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
    pub(crate) fn finish_hook(&mut self, quiet: bool) -> String {
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
    pub(crate) fn finish_bgp(&mut self, quiet: bool) -> String {
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
    pub(crate) fn linger(self, stop: &AtomicBool) {
        if let (Some(server), Some(linger)) = (self.server, self.linger) {
            let until = std::time::Instant::now() + linger;
            while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            server.shutdown();
        }
    }
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
