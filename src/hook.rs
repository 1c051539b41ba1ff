//! The alert hook (`--on-alert CMD`): runs a command for every alert event, off the detection path.
//!
//! The sink hands each event to [`AlertHook::submit`], which only tries to put it in a bounded
//! queue: when the queue is full the event is dropped for the hook and counted, so a slow script
//! never delays detection or output. One runner thread takes events from the queue and runs
//! `sh -c CMD` for each, at most `concurrency` at a time, with the event's JSON line on stdin and
//! its key fields in `FLOODWATCH_*` environment variables. A command still running after `timeout`
//! is killed with its whole process group (so `sh -c 'sleep 60'` leaves nothing behind). Every
//! outcome is counted in [`HookStats`]. The command's stdout goes to floodwatch's stderr: stdout
//! carries only alerts.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::alert::{AlertEvent, EventKind};

/// How the hook runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookConfig {
    /// Given to `sh -c`.
    pub command: String,
    /// Commands running at once (at least 1).
    pub concurrency: usize,
    /// A command running longer is killed and counted as a timeout.
    pub timeout: Duration,
    /// Events waiting for a free slot before new ones are dropped.
    pub queue: usize,
}

/// Outcomes so far, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct HookStats {
    ok: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    spawn_errors: AtomicU64,
    dropped: AtomicU64,
}

impl HookStats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> HookReport {
        let r = Ordering::Relaxed;
        HookReport {
            ok: self.ok.load(r),
            failed: self.failed.load(r),
            timed_out: self.timed_out.load(r),
            spawn_errors: self.spawn_errors.load(r),
            dropped: self.dropped.load(r),
        }
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the hook did over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookReport {
    /// Commands that exited with status 0.
    pub ok: u64,
    /// Commands that exited non-zero or were killed by a signal.
    pub failed: u64,
    /// Commands killed after the timeout.
    pub timed_out: u64,
    /// Commands that could not be started.
    pub spawn_errors: u64,
    /// Events never given to the command because the queue was full.
    pub dropped: u64,
}

impl HookReport {
    /// `(outcome, count)` pairs, as the metrics label them.
    pub fn outcomes(&self) -> [(&'static str, u64); 5] {
        [
            ("ok", self.ok),
            ("failed", self.failed),
            ("timeout", self.timed_out),
            ("spawn_error", self.spawn_errors),
            ("dropped", self.dropped),
        ]
    }

    /// Events that did not end in a successful run.
    pub fn problems(&self) -> u64 {
        self.failed + self.timed_out + self.spawn_errors + self.dropped
    }
}

impl std::fmt::Display for HookReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok, {} failed, {} timed out, {} could not start, {} dropped (queue full)",
            self.ok, self.failed, self.timed_out, self.spawn_errors, self.dropped
        )
    }
}

/// One event for the command: its JSON line and environment.
#[derive(Clone, Debug, PartialEq)]
pub struct HookJob {
    pub json: String,
    pub env: Vec<(&'static str, String)>,
}

impl HookJob {
    /// The job for `e`, whose written JSON line is `json`.
    pub fn of(e: &AlertEvent, json: String) -> HookJob {
        let event = match e.event {
            EventKind::Start => "start",
            EventKind::Update => "update",
            EventKind::End => "end",
        };
        HookJob {
            json,
            env: vec![
                ("FLOODWATCH_EVENT", event.to_owned()),
                ("FLOODWATCH_ID", e.id.clone()),
                ("FLOODWATCH_TS", e.ts.to_string()),
                ("FLOODWATCH_SCOPE", e.scope.name().to_owned()),
                ("FLOODWATCH_KEY", e.key.to_string()),
                ("FLOODWATCH_CLASS", e.class.name().to_owned()),
                ("FLOODWATCH_PPS", e.pps.to_string()),
            ],
        }
    }
}

/// The running hook: a bounded queue and its runner thread.
#[derive(Debug)]
pub struct AlertHook {
    tx: Option<Sender<HookJob>>,
    stats: Arc<HookStats>,
    thread: Option<JoinHandle<()>>,
}

impl AlertHook {
    /// Starts the runner thread.
    pub fn start(cfg: HookConfig) -> std::io::Result<AlertHook> {
        let (tx, rx) = bounded(cfg.queue.max(1));
        let stats = Arc::new(HookStats::default());
        let st = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("fw-on-alert".into())
            .spawn(move || Runner::new(cfg, st).run(&rx))?;
        Ok(AlertHook {
            tx: Some(tx),
            stats,
            thread: Some(thread),
        })
    }

    /// Queues `job`, or drops and counts it when the queue is full. Never blocks.
    pub fn submit(&self, job: HookJob) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                HookStats::bump(&self.stats.dropped)
            }
        }
    }

    /// The counters, for the metrics endpoint.
    pub fn stats(&self) -> Arc<HookStats> {
        Arc::clone(&self.stats)
    }

    /// Runs what is queued, waits for the commands (each at most its timeout) and reports.
    pub fn finish(mut self) -> HookReport {
        self.stop();
        self.stats.snapshot()
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AlertHook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A command in flight.
struct Running {
    child: Child,
    deadline: Instant,
}

/// How often running commands are checked for exit and timeout.
const REAP_EVERY: Duration = Duration::from_millis(10);

struct Runner {
    cfg: HookConfig,
    stats: Arc<HookStats>,
    running: Vec<Running>,
}

impl Runner {
    fn new(cfg: HookConfig, stats: Arc<HookStats>) -> Runner {
        Runner {
            cfg,
            stats,
            running: Vec::new(),
        }
    }

    fn run(mut self, rx: &Receiver<HookJob>) {
        let slots = self.cfg.concurrency.max(1);
        let mut open = true;
        while open || !self.running.is_empty() {
            self.reap();
            if open && self.running.len() < slots {
                let wait = if self.running.is_empty() {
                    Duration::from_millis(200)
                } else {
                    REAP_EVERY
                };
                match rx.recv_timeout(wait) {
                    Ok(job) => self.launch(&job),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            } else {
                std::thread::sleep(REAP_EVERY);
            }
        }
    }

    fn launch(&mut self, job: &HookJob) {
        match spawn(&self.cfg.command, job) {
            Ok(child) => self.running.push(Running {
                child,
                deadline: Instant::now() + self.cfg.timeout,
            }),
            Err(e) => {
                eprintln!(
                    "floodwatch: --on-alert: cannot start `sh -c {}`: {e}",
                    self.cfg.command
                );
                HookStats::bump(&self.stats.spawn_errors);
            }
        }
    }

    /// Collects finished commands and kills those past their deadline.
    fn reap(&mut self) {
        let now = Instant::now();
        let stats = &self.stats;
        self.running.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(status)) => {
                HookStats::bump(if status.success() {
                    &stats.ok
                } else {
                    &stats.failed
                });
                false
            }
            Ok(None) if now >= r.deadline => {
                kill_group(&mut r.child);
                HookStats::bump(&stats.timed_out);
                false
            }
            Ok(None) => true,
            Err(_) => {
                kill_group(&mut r.child);
                HookStats::bump(&stats.failed);
                false
            }
        });
    }
}

/// Starts `sh -c command` in its own process group with the job's JSON on stdin.
fn spawn(command: &str, job: &HookJob) -> std::io::Result<Child> {
    let stdout = std::io::stderr().as_fd().try_clone_to_owned()?;
    let mut cmd = Command::new("sh");
    // a hook never inherits capabilities nor gains privileges (whatever thread starts it)
    crate::privileges::harden_child(&mut cmd);
    let mut child = cmd
        .arg("-c")
        .arg(command)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::from(stdout))
        .process_group(0)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // One line, far below a pipe's buffer, so this does not block; a command that exits
        // without reading closes the pipe, which is not an error.
        let _ = stdin.write_all(job.json.as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    Ok(child)
}

/// Kills the command and everything it started (its process group), then reaps it.
fn kill_group(child: &mut Child) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u32) -> HookJob {
        HookJob {
            json: format!("{{\"n\":{n}}}"),
            env: vec![("FLOODWATCH_EVENT", "start".to_owned())],
        }
    }

    fn hook(command: &str, timeout: Duration, queue: usize) -> AlertHook {
        AlertHook::start(HookConfig {
            command: command.to_owned(),
            concurrency: 2,
            timeout,
            queue,
        })
        .unwrap()
    }

    #[test]
    fn runs_every_job_with_stdin_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!(
            "{{ read -r line; echo \"$FLOODWATCH_EVENT $line\"; }} >> '{}'",
            out.display()
        );
        let h = hook(&cmd, Duration::from_secs(20), 16);
        for n in 0..5 {
            h.submit(job(n));
        }
        let report = h.finish();
        assert_eq!(report.ok, 5, "{report}");
        assert_eq!(report.problems(), 0);
        let mut lines: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        let want: Vec<String> = (0..5).map(|n| format!("start {{\"n\":{n}}}")).collect();
        assert_eq!(lines, want);
    }

    #[test]
    fn failures_and_timeouts_are_counted() {
        let h = hook("exit 3", Duration::from_secs(20), 4);
        h.submit(job(1));
        assert_eq!(h.finish().failed, 1);
        let h = hook("sleep 60", Duration::from_millis(100), 4);
        h.submit(job(1));
        let started = Instant::now();
        let report = h.finish();
        assert_eq!(report.timed_out, 1, "{report}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        // The runner holds at most 2 running + 1 queued while `sleep` runs; the rest is dropped.
        let h = hook("sleep 60", Duration::from_millis(300), 1);
        for n in 0..20 {
            h.submit(job(n));
        }
        let report = h.finish();
        assert!(report.dropped >= 1, "{report}");
        assert_eq!(
            report.dropped + report.timed_out,
            20,
            "every job is either dropped or run: {report}"
        );
    }
}
