//! `live --report-dir`: a report page per alert, written when the alert ends, by a thread of its own
//! so rendering never holds up the sink (alerts that find its queue full are counted, not waited
//! for).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender, TrySendError};

use super::record::{AlertRecord, Recording, RECORDING_FORMAT};
use super::{file_stem, render_html, RenderOptions};

/// Ended alerts waiting for their page before new ones are dropped.
const QUEUE: usize = 256;

/// Why the report directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReportDirError {
    #[error("cannot use {dir} for --report-dir: {cause} (create it, or give a directory this user can write to)")]
    Unusable { dir: PathBuf, cause: std::io::Error },
    #[error("cannot start the report writer thread: {0}")]
    Thread(std::io::Error),
}

/// What the report writer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportCounts {
    pub written: u64,
    /// Alerts whose page was not made because the writer was behind.
    pub dropped: u64,
    /// Pages that could not be rendered or written.
    pub failed: u64,
    /// The last failure, for the summary.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// The writer of per-alert pages.
pub struct AlertReports {
    tx: Option<Sender<AlertRecord>>,
    /// Wait for room in the queue (replays, where nothing is lost by waiting) instead of dropping.
    wait: bool,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AlertReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertReports")
            .field("counts", &self.counts())
            .finish()
    }
}

impl AlertReports {
    /// Checks that `dir` can be written (creating it if needed) and starts the writer. `input`
    /// names what is watched (the interface), for the pages' headers.
    pub fn start(
        dir: &Path,
        input: String,
        opts: RenderOptions,
    ) -> Result<AlertReports, ReportDirError> {
        Self::start_with(dir, input, opts, false)
    }

    /// [`AlertReports::start`]; with `wait`, an alert that finds the queue full waits for room
    /// (a replay, where waiting loses nothing) instead of being dropped (live capture).
    pub fn start_with(
        dir: &Path,
        input: String,
        opts: RenderOptions,
        wait: bool,
    ) -> Result<AlertReports, ReportDirError> {
        let unusable = |cause| ReportDirError::Unusable {
            dir: dir.to_path_buf(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(unusable)?;
        let probe = dir.join(".floodwatch-write-test");
        std::fs::write(&probe, b"").map_err(unusable)?;
        let _ = std::fs::remove_file(&probe);
        let (tx, rx) = bounded::<AlertRecord>(QUEUE);
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("fw-reports".to_string())
            .spawn(move || {
                for alert in rx.iter() {
                    match write_page(&dir, &input, alert, &opts) {
                        Ok(()) => {
                            worker.written.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            worker.failed.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut last) = worker.last_error.lock() {
                                *last = Some(e);
                            }
                        }
                    }
                }
            })
            .map_err(ReportDirError::Thread)?;
        Ok(AlertReports {
            tx: Some(tx),
            wait,
            thread: Some(thread),
            shared,
        })
    }

    /// Queues the page of an ended alert (on live capture dropped and counted when the writer is
    /// behind; on replay it waits).
    pub fn submit(&self, alert: AlertRecord) {
        let Some(tx) = &self.tx else { return };
        let lost = if self.wait {
            tx.send(alert).is_err()
        } else {
            matches!(
                tx.try_send(alert),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_))
            )
        };
        if lost {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks again that the directory can be written (after a change of user: `--user`).
    pub fn check_writable(dir: &Path) -> Result<(), ReportDirError> {
        let probe = dir.join(".floodwatch-write-test");
        std::fs::write(&probe, b"").map_err(|cause| ReportDirError::Unusable {
            dir: dir.to_path_buf(),
            cause,
        })?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// Counters so far.
    pub fn counts(&self) -> ReportCounts {
        ReportCounts {
            written: self.shared.written.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            last_error: self.shared.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Writes the queued pages and stops the writer.
    pub fn finish(mut self) -> ReportCounts {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.counts()
    }
}

/// The page of one alert: the recording of that alert alone (its key's series carries its traffic).
fn write_page(
    dir: &Path,
    input: &str,
    alert: AlertRecord,
    opts: &RenderOptions,
) -> Result<(), String> {
    let first = alert
        .series
        .as_ref()
        .and_then(|s| s.points.first().map(|p| p.ts_ns))
        .or(alert.start_ns());
    let end = alert.end.as_ref();
    let rec = Recording {
        format: RECORDING_FORMAT,
        generator: format!("floodwatch {}", env!("CARGO_PKG_VERSION")),
        inputs: vec![input.to_string()],
        first_ns: first,
        last_ns: alert.end_ns(),
        packets: end.map_or(0, |e| e.packets),
        bytes: end.map_or(0, |e| e.bytes),
        distinct_sources: end.map_or(0, |e| e.distinct_peers),
        alerts: vec![alert],
        alert_page: true,
        ..Recording::default()
    };
    let name = format!("{}.html", file_stem(&rec.alerts[0].id));
    let html = render_html(&rec, opts).map_err(|e| format!("{name}: {e}"))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    std::fs::write(&tmp, html.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::EventRecord;

    fn alert(id: &str) -> AlertRecord {
        AlertRecord {
            id: id.to_string(),
            scope: "dst_host".into(),
            key: "198.51.100.10".into(),
            class: "syn_flood".into(),
            signal: "syn".into(),
            start: Some(EventRecord {
                event: "start".into(),
                ts_ns: 1_764_079_202_100_000_000,
                ..EventRecord::default()
            }),
            end: Some(EventRecord {
                event: "end".into(),
                ts_ns: 1_764_079_207_100_000_000,
                ..EventRecord::default()
            }),
            ..AlertRecord::default()
        }
    }

    #[test]
    fn each_ended_alert_gets_a_page_named_after_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let reports =
            AlertReports::start(dir.path(), "eth0".into(), RenderOptions::default()).unwrap();
        reports.submit(alert("dst_host/198.51.100.10/syn_flood/1764079202.100000"));
        reports.submit(alert(
            "dst_subnet/2001:db8::/64/udp_flood/1764079202.100000",
        ));
        let counts = reports.finish();
        assert_eq!(counts.written, 2, "{counts:?}");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "dst_host_198.51.100.10_syn_flood_1764079202.100000.html",
                "dst_subnet_2001-db8--_64_udp_flood_1764079202.100000.html"
            ]
        );
    }

    #[test]
    fn an_unwritable_directory_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = AlertReports::start(&file.join("sub"), "eth0".into(), RenderOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("plain-file/sub"), "{err}");
    }
}
