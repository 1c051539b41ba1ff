//! SIGHUP: reload `--config` and reopen `--output`, without a restart.
//!
//! A thread of its own waits for SIGHUP (blocked in every other thread, so it is never delivered
//! to them). On each one it reopens the `--output` file (log rotation: `logrotate` renames the file,
//! then signals), then reads the config file again and resolves it under the same command line. A
//! config that does not parse or validate, or that changes what cannot change while running (the
//! window, the tick, the subnet prefixes, the key caps: the tables and windows are laid out for
//! them), is rejected with the reason and the running one kept. A good one is offered to the
//! pipeline in a [`ReloadSlot`]; the router picks it up between packets and hands it to every shard
//! in-band, so each applies it at the same point of the stream, keeping every baseline and open
//! alert.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::config::{DetectConfig, FileConfig, Overrides};
use crate::metrics::Metrics;

/// A new configuration waiting for the pipeline to apply it.
#[derive(Debug, Default)]
pub struct ReloadSlot {
    ready: AtomicBool,
    config: Mutex<Option<DetectConfig>>,
}

impl ReloadSlot {
    pub fn new() -> ReloadSlot {
        ReloadSlot::default()
    }

    /// Offers `cfg` (replacing one not yet taken).
    pub fn offer(&self, cfg: DetectConfig) {
        let mut slot = self.config.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(cfg);
        self.ready.store(true, Ordering::Release);
    }

    /// The configuration offered since the last call, if any (one relaxed load when none).
    #[inline]
    pub fn take(&self) -> Option<DetectConfig> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.config.lock().unwrap_or_else(|p| p.into_inner());
        self.ready.store(false, Ordering::Release);
        slot.take()
    }
}

/// An alert output file that can be reopened by path while the sink writes to it.
#[derive(Clone, Debug)]
pub struct ReopenFile {
    path: PathBuf,
    inner: Arc<Mutex<BufWriter<File>>>,
}

impl ReopenFile {
    /// Opens `path` for appending (created if missing): a restarted daemon adds to its alert log.
    pub fn append(path: &Path) -> io::Result<ReopenFile> {
        Ok(ReopenFile {
            path: path.to_owned(),
            inner: Arc::new(Mutex::new(BufWriter::new(open_append(path)?))),
        })
    }

    /// Opens `path` truncated (a replay's output).
    pub fn create(path: &Path) -> io::Result<ReopenFile> {
        Ok(ReopenFile {
            path: path.to_owned(),
            inner: Arc::new(Mutex::new(BufWriter::new(File::create(path)?))),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes what is buffered to the file open now, then writes to `path` from here on (opened
    /// anew for appending). On error the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let new = open_append(&self.path)?;
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        w.flush()?;
        *w = BufWriter::new(new);
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for ReopenFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// What a SIGHUP does: reopen the output, reload the config.
pub struct Reloader {
    /// `--config`, if given.
    pub config: Option<PathBuf>,
    /// The command line's settings (they stay over the file's).
    pub overrides: Overrides,
    /// The configuration running now.
    pub running: DetectConfig,
    pub slot: Arc<ReloadSlot>,
    pub output: Option<ReopenFile>,
    pub metrics: Option<Arc<Metrics>>,
}

impl Reloader {
    /// Handles one SIGHUP; returns the lines to report on stderr.
    pub fn on_sighup(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(out) = &self.output {
            match out.reopen() {
                Ok(()) => lines.push(format!(
                    "floodwatch: SIGHUP: reopened --output {}",
                    out.path().display()
                )),
                Err(e) => lines.push(format!(
                    "floodwatch: SIGHUP: cannot reopen --output {}: {e}; still writing to the file open before (check the directory is writable by this user)",
                    out.path().display()
                )),
            }
        }
        let Some(path) = self.config.clone() else {
            lines.push("floodwatch: SIGHUP: no --config to reload".into());
            return lines;
        };
        let outcome = self.reload(&path);
        if let Some(m) = &self.metrics {
            m.record_reload(outcome.is_ok());
        }
        lines.push(match outcome {
            Ok(changes) if changes.is_empty() => format!(
                "floodwatch: SIGHUP: reloaded {}: nothing changed",
                path.display()
            ),
            Ok(changes) => format!(
                "floodwatch: SIGHUP: reloaded {}: {} (baselines and open alerts kept)",
                path.display(),
                changes.join(", ")
            ),
            Err(reason) => format!(
                "floodwatch: SIGHUP: rejected {}: {reason}; the running configuration is kept",
                path.display()
            ),
        });
        lines
    }

    /// Reads, resolves and checks the config file; offers it to the pipeline when it may apply.
    fn reload(&mut self, path: &Path) -> Result<Vec<String>, String> {
        let file = FileConfig::load(path).map_err(|e| e.to_string())?;
        let mut new = DetectConfig::resolve(self.overrides.clone(), Some(&file))?;
        new.hash_seed = self.running.hash_seed;
        let changes = self.running.reload_changes(&new)?;
        if !changes.is_empty() {
            self.slot.offer(new.clone());
            self.running = new;
        }
        Ok(changes)
    }
}

/// Blocks SIGHUP in the calling thread and every thread it starts afterwards, so only
/// [`spawn_sighup_thread`]'s thread receives it. Call it before starting any thread. (Programs
/// started with `std::process::Command` get an empty signal mask again.)
pub fn block_sighup() -> nix::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
}

/// Starts the thread that waits for SIGHUP and runs `reloader` on each; it reports on stderr.
pub fn spawn_sighup_thread(mut reloader: Reloader) -> io::Result<()> {
    std::thread::Builder::new()
        .name("fw-sighup".into())
        .spawn(move || {
            let mut set = SigSet::empty();
            set.add(Signal::SIGHUP);
            while let Ok(sig) = set.wait() {
                if sig == Signal::SIGHUP {
                    for line in reloader.on_sighup() {
                        eprintln!("{line}");
                    }
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reloader(dir: &Path, text: &str) -> (Reloader, PathBuf) {
        let path = dir.join("fw.toml");
        std::fs::write(&path, text).unwrap();
        let file = FileConfig::load(&path).unwrap();
        let mut running = DetectConfig::resolve(Overrides::default(), Some(&file)).unwrap();
        running.hash_seed = 42;
        (
            Reloader {
                config: Some(path.clone()),
                overrides: Overrides::default(),
                running,
                slot: Arc::new(ReloadSlot::new()),
                output: None,
                metrics: Some(Arc::new(Metrics::new())),
            },
            path,
        )
    }

    #[test]
    fn a_good_config_is_offered_and_a_bad_one_rejected_with_the_running_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, path) = reloader(dir.path(), "[detection]\nfactor = 3\n");
        std::fs::write(
            &path,
            "[detection]\nfactor = 4\nhold_down = \"5s\"\n[networks]\nignore = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let lines = r.on_sighup();
        assert!(lines[0].contains("reloaded"), "{lines:?}");
        assert!(
            lines[0].contains("factor") && lines[0].contains("hold_down"),
            "{lines:?}"
        );
        let got = r.slot.take().expect("offered");
        assert_eq!(got.baseline.factor, 4.0);
        assert_eq!(got.hash_seed, 42, "the hash seed never changes");
        assert!(r.slot.take().is_none());

        for (bad, why) in [
            ("[detection]\nfactor = 0.5\n", "factor"),
            ("[detection]\nfactr = 4\n", "factr"),
            ("[detection]\nwindow = \"2s\"\n", "window"),
            ("[detection]\nmax_keys = 1000\n", "max_keys"),
            ("[[prefix]]\nprefix = \"bogus\"\n", "bogus"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let lines = r.on_sighup();
            assert!(
                lines[0].contains("rejected") && lines[0].contains(why),
                "{bad}: {lines:?}"
            );
            assert!(r.slot.take().is_none());
            assert_eq!(r.running.baseline.factor, 4.0);
        }
        std::fs::remove_file(&path).unwrap();
        assert!(r.on_sighup()[0].contains("rejected"));
        let text = r.metrics.as_ref().unwrap().render();
        assert!(text.contains("floodwatch_config_reloads_total{result=\"ok\"} 1\n"));
        assert!(text.contains("floodwatch_config_reloads_total{result=\"failed\"} 6\n"));
    }

    #[test]
    fn the_output_is_reopened_by_path_after_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut out = ReopenFile::append(&path).unwrap();
        writeln!(out, "one").unwrap();
        out.flush().unwrap();
        std::fs::rename(&path, dir.path().join("alerts.jsonl.1")).unwrap();
        writeln!(out, "two").unwrap(); // still the renamed file
        out.reopen().unwrap();
        writeln!(out, "three").unwrap();
        out.flush().unwrap();
        let old = std::fs::read_to_string(dir.path().join("alerts.jsonl.1")).unwrap();
        assert_eq!(old, "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        // appending: a restart keeps what is there
        let mut again = ReopenFile::append(&path).unwrap();
        writeln!(again, "four").unwrap();
        again.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\nfour\n");
    }
}
