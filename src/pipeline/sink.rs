//! The sink: gathers the events of every shard, holds each until every shard has passed its
//! evaluation, then writes them in [`AlertEvent::order_key`] order (so the output is the same for any
//! thread count and batch size), feeding the tally, the metrics and the alert hook on the way.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Receiver;

use super::evidence_tap::SinkEvidence;
use super::shard::ShardOut;
use super::summary::AlertTally;
use super::Integrations;
use crate::alert::{AlertEvent, EventKind, StatsEvent};
use crate::alert_output::{EventLine, EventWriter};
use crate::hook::HookJob;
use crate::key::{Key, Scope};
use crate::report::record::Recorder;

/// An event waiting in the sink for every shard to pass its evaluation.
// Most pending items are alerts: boxing them to shrink the rare stats variant would only add an
// allocation per alert.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Alert(AlertEvent),
    Stats(StatsEvent),
}

impl Pending {
    fn seq(&self) -> u64 {
        match self {
            Pending::Alert(e) => e.seq,
            Pending::Stats(s) => s.seq,
        }
    }

    /// Alert events in [`AlertEvent::order_key`] order, then the `stats` events of the same
    /// evaluation (the sort is stable, so those keep their packet-time order).
    fn order(&self) -> (u64, u8, Scope, Key, EventKind) {
        match self {
            Pending::Alert(e) => {
                let (seq, scope, key, kind) = e.order_key();
                (seq, 0, scope, key, kind)
            }
            Pending::Stats(s) => (
                s.seq,
                1,
                Scope::DstHost,
                Key::V4 { addr: 0, prefix: 0 },
                EventKind::Start,
            ),
        }
    }
}

/// What the sink writes to, besides its output.
struct SinkOut<'a, W: Write> {
    writer: EventWriter<W>,
    tally: AlertTally,
    integ: Integrations<'a>,
    recorder: Option<Recorder>,
    evidence: Option<SinkEvidence<'a>>,
}

impl<W: Write> SinkOut<'_, W> {
    fn write(&mut self, item: Pending) -> io::Result<()> {
        match item {
            Pending::Alert(e) => {
                self.tally.count(&e);
                if let Some(m) = self.integ.metrics {
                    m.on_alert(&e);
                }
                let mut line = EventLine {
                    evidence: self.evidence.as_mut().and_then(|ev| ev.on_event(&e)),
                    ..EventLine::of(&e)
                };
                if let (Some(b), Some(m)) = (self.integ.bgp, line.mitigation.as_mut()) {
                    // the rules with --flowspec-action, not the default discard (those of a
                    // start are what is announced; an update's refreshed client rules are not)
                    m.flowspec = crate::mitigation::flowspec_lines(&e, b.flowspec_action());
                }
                if let Some(h) = self.integ.hook {
                    h.submit(HookJob::of(&e, line.to_json()));
                }
                if let Some(b) = self.integ.bgp {
                    b.on_event(&e);
                }
                if let Some(r) = &mut self.recorder {
                    let ended = r.event(&e, &line);
                    if let (Some(done), Some(reports)) = (ended, self.integ.reports) {
                        reports.submit(done);
                    }
                }
                self.writer.write_line(&line)
            }
            Pending::Stats(mut s) => {
                s.active_alerts = self.tally.active();
                self.writer.write_stats(&s)
            }
        }
    }
}

/// What the sink feeds besides its output and the integrations.
pub(super) struct SinkFeeds<'a> {
    /// `--evidence-dir`: names each start's file and tells the evidence writer.
    pub evidence: Option<SinkEvidence<'a>>,
    /// `report` / `--record`: keep every alert for the recording.
    pub record: bool,
}

/// The sink: orders events from all shards and writes them. Returns the tally, the write error
/// that stopped it, if any (a closed pipe is not an error: it sets `closed` and `stop`), and the
/// recorded alerts when `feeds.record`.
pub(super) fn run_sink<'a, W: Write>(
    rx: Receiver<ShardOut>,
    shards: usize,
    writer: EventWriter<W>,
    stop: &AtomicBool,
    closed: &AtomicBool,
    integ: Integrations<'a>,
    feeds: SinkFeeds<'a>,
) -> (AlertTally, Option<io::Error>, Option<Recorder>) {
    let SinkFeeds { evidence, record } = feeds;
    let mut out = SinkOut {
        writer,
        tally: AlertTally::default(),
        integ,
        recorder: if record && integ.reports.is_some() {
            Some(Recorder::keeping_and_handing_over())
        } else if record {
            Some(Recorder::new())
        } else {
            integ.reports.map(|_| Recorder::releasing())
        },
        evidence,
    };
    let mut watermarks = vec![0u64; shards];
    let mut pending: Vec<Pending> = Vec::new();
    let mut failed = None;
    for msg in rx.iter() {
        if failed.is_some() || closed.load(Ordering::Relaxed) {
            continue; // drain so shards never block
        }
        if let Some(w) = watermarks.get_mut(msg.shard) {
            *w = msg.watermark;
        }
        pending.extend(msg.events.into_iter().map(Pending::Alert));
        pending.extend(msg.marks.into_iter().map(Pending::Stats));
        let min = watermarks.iter().copied().min().unwrap_or(u64::MAX);
        if let Err(e) = release(&mut pending, min, &mut out) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                closed.store(true, Ordering::Relaxed);
            } else {
                failed = Some(e);
            }
            stop.store(true, Ordering::Relaxed);
        }
    }
    if failed.is_none() && !closed.load(Ordering::Relaxed) {
        if let Err(e) = release(&mut pending, u64::MAX, &mut out) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                closed.store(true, Ordering::Relaxed);
            } else {
                failed = Some(e);
            }
        }
    }
    // a releasing recorder (`--report-dir`) is not a recording of the run
    let recorder = out.recorder.filter(|_| record);
    (out.tally, failed, recorder)
}

/// Writes, in order, every pending event of an evaluation all shards have passed.
fn release<W: Write>(
    pending: &mut Vec<Pending>,
    upto: u64,
    out: &mut SinkOut<'_, W>,
) -> io::Result<()> {
    if pending.is_empty() || pending.iter().all(|e| e.seq() > upto) {
        return Ok(());
    }
    pending.sort_by_key(|e| e.order());
    let n = pending.partition_point(|e| e.seq() <= upto);
    for e in pending.drain(..n) {
        out.write(e)?;
    }
    Ok(())
}
