//! The wiring every command shares: detection settings resolved from the options and the state
//! file, the stop handler, and the steps around a privilege drop. Each command has its own file
//! beside this one; `output` opens what the commands write and `run` starts a run's integrations
//! and ends every run the same way.

pub(crate) mod cluster;
pub(crate) mod collect;
pub(crate) mod docs;
pub(crate) mod live;
pub(crate) mod output;
pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod synth;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::{
    BaselineArgs, DetectArgs, EvidenceArgs, IntegrationArgs, PrivilegeArgs, RunArgs, StateArgs,
};
use floodwatch::baseline::BaselineFile;
use floodwatch::config::{DetectConfig, FileConfig};
use floodwatch::evidence_pcap::EvidenceConfig;
use floodwatch::pipeline::{self, CheckpointClock, CheckpointConfig, PipelineConfig};
use floodwatch::privileges;
use floodwatch::reload;
use floodwatch::report::live::AlertReports;
use floodwatch::state::{self, StateStart};
use run::Extras;

/// The steps of a run that detects here, each taking the run's options as one.
impl RunArgs<'_> {
    /// `--quiet`.
    pub(crate) fn quiet(self) -> bool {
        self.output.quiet
    }

    /// [`settings`] from these options.
    pub(crate) fn settings(self, clock: CheckpointClock) -> Result<(DetectConfig, PipelineConfig)> {
        settings(self.detect, self.baseline, clock, self.quiet())
    }

    /// The run's integrations ([`Extras::start`]), reading `input`.
    pub(crate) fn extras(self, input: String, live: bool) -> Result<Extras> {
        Extras::start(
            self.integrations,
            self.detect,
            self.baseline.state.state.as_deref(),
            self.quiet(),
            input,
            live,
        )
    }

    /// A daemon's start once its input and output are open: the integrations (the metrics
    /// endpoint may want a privileged port), then [`start_as_user`].
    pub(crate) fn start_daemon(
        self,
        privileges: &PrivilegeArgs,
        pipe: &PipelineConfig,
        input: String,
        live: bool,
    ) -> Result<Extras> {
        let extras = self.extras(input, live)?;
        start_as_user(
            privileges,
            pipe,
            self.integrations,
            &self.baseline.state,
            self.quiet(),
        )?;
        Ok(extras)
    }
}

/// The detection settings and the pipeline layout every mode shares (threads, batch size,
/// baselines, state checkpoints on `clock`).
pub(crate) fn settings(
    a: &DetectArgs,
    baseline: &BaselineArgs,
    clock: CheckpointClock,
    quiet: bool,
) -> Result<(DetectConfig, PipelineConfig)> {
    let detect = detect_config(a)?;
    let state = &baseline.state;
    // --load-baseline is checked even when the state wins, so a bad file never waits for a restart
    let loaded = load_baselines(baseline.load_baseline.as_deref(), &detect)?;
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
        save_baselines: baseline.save_baseline.is_some() || state.state.is_some(),
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

/// `--load-baseline`: read before any input, so a bad file fails at once.
pub(crate) fn load_baselines(
    path: Option<&std::path::Path>,
    detect: &DetectConfig,
) -> Result<Option<Arc<BaselineFile>>> {
    path.map(|p| BaselineFile::load(p, detect.subnet_v4, detect.subnet_v6).map(Arc::new))
        .transpose()
        .map_err(Into::into)
}

/// `--state` at start: the baselines it holds, or none (no file yet, or one that could not be used
/// and was moved aside, with a warning).
pub(crate) fn load_state(
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

/// Resolves the detection options: command line over the config file over the defaults.
pub(crate) fn detect_config(a: &DetectArgs) -> Result<DetectConfig> {
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
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// `--evidence-dir` and its companions; the directory is created and proved writable before any
/// input is read, so a bad one fails at once.
pub(crate) fn evidence_config(a: &EvidenceArgs) -> Result<Option<EvidenceConfig>> {
    let cfg = a.config();
    if let Some(c) = &cfg {
        floodwatch::evidence_pcap::prepare_dir(&c.dir)?;
    }
    Ok(cfg)
}

/// First Ctrl-C / SIGTERM: stop reading, drain, end open alerts, print the summary. Second: exit now.
pub(crate) fn install_stop_handler() -> Result<Arc<AtomicBool>> {
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

/// A daemon's last steps before reading, once everything privileged is open (the capture, the
/// sockets, the output, the metrics endpoint): become `--user`, check again as that user the
/// directories checked as root, and prepare `--state`.
pub(crate) fn start_as_user(
    p: &PrivilegeArgs,
    pipe: &PipelineConfig,
    a: &IntegrationArgs,
    state: &StateArgs,
    quiet: bool,
) -> Result<()> {
    drop_privileges(p, quiet)?;
    recheck_dirs(p, pipe, a)?;
    prepare_state(state, quiet)
}

/// Blocks SIGHUP in this thread and the threads it starts; called before any thread starts, so
/// only the SIGHUP thread (`Extras::watch_sighup`) ever receives it.
pub(crate) fn block_sighup() -> Result<()> {
    reload::block_sighup().context("cannot block SIGHUP")
}

/// `--user`/`--group`: once everything privileged is open, become that user with no capability.
pub(crate) fn drop_privileges(p: &PrivilegeArgs, quiet: bool) -> Result<()> {
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
pub(crate) fn prepare_state(state: &StateArgs, quiet: bool) -> Result<()> {
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
