//! A counter shard: one [`Engine`] over the aggregates the router sends it, applying the stream's
//! clock steps where the router placed them, and forwarding its events with its watermark to the sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::checkpoint::{ShardSnapshot, SnapshotBuffers};
use super::evidence_tap::ShardEvidence;
use super::route::{CloseOnDrop, Item, Progress, ShardMsg, ShardWork};
use crate::alert::{AlertEvent, EndReason, StatsEvent};
use crate::detect::{Engine, EngineStats};
use crate::metrics::Metrics;
use crate::state::SnapshotEntry;
use crate::time::Timestamp;

/// A message from a shard to the sink.
pub(super) struct ShardOut {
    pub shard: usize,
    pub events: Vec<AlertEvent>,
    /// `stats` events (shard 0 only), ordered after the alert events of their `seq`.
    pub marks: Vec<StatsEvent>,
    /// Every event with a `seq` up to this has been sent.
    pub watermark: u64,
}

/// What a shard reports besides its events.
#[derive(Clone)]
pub(super) struct ShardObserve<'a> {
    pub metrics: Option<&'a Metrics>,
    /// Collect the learned baselines at the end.
    pub save: bool,
    /// `--evidence-dir`: tells the evidence writer of this shard's alerts.
    pub evidence: Option<ShardEvidence<'a>>,
    /// `--evidence-dir`: tells the router each message is done (it waits at every tick).
    pub progress: Option<&'a Progress>,
}

/// Runs one shard until its input ends; returns its counters and (when asked) its baselines.
/// Checkpoint requests in its work are answered on `checkpoints`.
pub(super) fn run_shard(
    index: usize,
    mut engine: Engine,
    rx: Receiver<ShardMsg>,
    out: Sender<ShardOut>,
    stop: &AtomicBool,
    mut observe: ShardObserve<'_>,
    checkpoints: Option<(Sender<ShardSnapshot>, &SnapshotBuffers)>,
) -> (EngineStats, Vec<SnapshotEntry>) {
    // the router may wait for this shard's progress: it must hear when the shard is gone
    let close = CloseOnDrop {
        progress: observe.progress,
        shard: index,
    };
    let mut events = Vec::new();
    let mut marks = Vec::new();
    let mut sent_watermark = 0;
    let mut published = EngineStats::default();
    let mut end_at: Option<Timestamp> = None;
    // a checkpoint asked for, not yet taken
    let mut pending: Option<u64> = None;
    for msg in rx.iter() {
        match msg {
            ShardMsg::Work(work) => {
                if let Some(cfg) = &work.reconfigure {
                    // checked before it was offered; a refusal keeps the running settings
                    let _ = engine.reconfigure((**cfg).clone());
                }
                if let (Some(id), Some((_, buffers))) = (work.checkpoint, &checkpoints) {
                    // copied during the next window-boundary evaluation
                    engine.request_snapshot(buffers.take(index));
                    pending = Some(id);
                }
                let started = Instant::now();
                run_work(&mut engine, &work, &mut events);
                marks.extend(work.marks);
                if let (Some(id), Some((tx, _))) = (pending, &checkpoints) {
                    if let Some(entries) = engine.take_snapshot() {
                        pending = None;
                        // The router asks for no new checkpoint before the writer has taken
                        // every shard's part of this one, so the channel (one slot per shard)
                        // has room.
                        let _ = tx.try_send(ShardSnapshot {
                            shard: index,
                            id,
                            entries,
                            pause: started.elapsed(),
                        });
                    }
                }
                if let Some(ev) = &mut observe.evidence {
                    ev.events(&events);
                }
                if let Some(p) = observe.progress {
                    p.done(index);
                }
            }
            ShardMsg::End(now) => {
                end_at = now;
                break;
            }
        }
        if let Some(m) = observe.metrics {
            m.publish_tables(&mut published, &engine.stats());
        }
        let w = engine.watermark();
        if !events.is_empty() || !marks.is_empty() || w != sent_watermark {
            sent_watermark = w;
            let msg = ShardOut {
                shard: index,
                events: std::mem::take(&mut events),
                marks: std::mem::take(&mut marks),
                watermark: w,
            };
            if out.send(msg).is_err() {
                break;
            }
        }
    }
    drop(close);
    let reason = if stop.load(Ordering::Relaxed) {
        EndReason::Shutdown
    } else {
        EndReason::EndOfInput
    };
    engine.finish_at(end_at, reason, &mut events);
    if let Some(ev) = &mut observe.evidence {
        ev.events(&events);
    }
    let stats = engine.stats();
    if let Some(m) = observe.metrics {
        m.publish_tables(&mut published, &stats);
    }
    let _ = out.send(ShardOut {
        shard: index,
        events,
        marks,
        watermark: u64::MAX,
    });
    let mut baselines = Vec::new();
    if observe.save {
        engine.snapshot_into(&mut baselines);
    }
    (stats, baselines)
}

/// Counts the aggregates of `work` and applies its clock steps, in the order the router placed them.
fn run_work(engine: &mut Engine, work: &ShardWork, events: &mut Vec<AlertEvent>) {
    for item in &work.items {
        match item {
            Item::Counts(t) => engine.absorb(t),
            Item::Step(step) => engine.apply(*step, events),
        }
    }
}
