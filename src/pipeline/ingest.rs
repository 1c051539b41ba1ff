//! An ingest node's pipeline (`--publish`): the same reading and decoding as a detector's, but the
//! summaries go to the bus instead of counter shards. `BusDownstream` batches them per partition
//! ([`Partitioner`]) and hands the batches to the publisher thread (src/bus/publish.rs) over a
//! bounded channel: a replay waits when the publisher is behind; live capture drops and counts.
//!
//! Every partition gets a batch carrying the node's watermark at every tick of packet time (and at
//! every idle tick of a live source), so a detector's time moves as one machine's would, and the
//! stream's end is published as a last batch on every partition.

use std::sync::atomic::AtomicBool;

use crossbeam_channel::{Sender, TrySendError};

use super::reader::{Downstream, Reader};
use super::route::RouteStats;
use super::{PipelineConfig, RunSummary};
use crate::bus::partition::{Cluster, Partitioner};
use crate::capture::CaptureError;
use crate::config::DetectConfig;
use crate::decode::PacketSummary;
use crate::metrics::Metrics;
use crate::time::Timestamp;

/// Encoded batches for the publisher: (partition, bytes), in the order they closed.
pub type BusBatches = Vec<(u16, Vec<u8>)>;

/// Batches closed before they are handed over together (besides every tick's flush).
const HAND_OVER_BATCHES: usize = 32;

/// Where an ingest node's summaries go.
pub struct BusOut {
    pub cluster: Cluster,
    /// This node's id in the cluster.
    pub node: u32,
    /// Summaries per batch.
    pub batch: u32,
    pub tx: Sender<BusBatches>,
}

/// The reader's downstream on an ingest node.
struct BusDownstream {
    parts: Partitioner,
    tx: Option<Sender<BusBatches>>,
    live: bool,
    tick_ns: u64,
    /// Packet time of the next flush.
    next_flush: u64,
    ready: BusBatches,
    dropped: u64,
    dropped_batches: u64,
}

impl BusDownstream {
    fn hand_over(&mut self) {
        self.ready.extend(self.parts.take_ready());
        if self.ready.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        let batches = std::mem::take(&mut self.ready);
        if self.live {
            match tx.try_send(batches) {
                Ok(()) => {}
                Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                    self.dropped_batches += b.len() as u64;
                    self.dropped += b
                        .iter()
                        .map(|(_, x)| crate::bus::wire::batch_count(x))
                        .sum::<u64>();
                }
            }
        } else if tx.send(batches).is_err() {
            // the publisher is gone (it reports why); nothing more can be sent
            self.tx = None;
        }
    }

    fn flush_due(&mut self, ts: u64) {
        if ts >= self.next_flush {
            self.parts.flush();
            self.next_flush = (ts / self.tick_ns)
                .saturating_add(1)
                .saturating_mul(self.tick_ns);
            self.hand_over();
        }
    }
}

impl Downstream for BusDownstream {
    /// The bus carries packet summaries, not request heads: a detector counts the requests (a
    /// summary carries the TCP number its handshake is verified by, and whether a request head
    /// is whole) but cannot name their paths, hosts, agents or fingerprints.
    fn push_head(&mut self, p: &PacketSummary, _head: crate::requests::RequestHead) {
        self.push(p);
    }

    #[inline]
    fn push(&mut self, p: &PacketSummary) {
        self.parts.push(p);
        // after the packet: its batch and the watermark that passes the tick boundary go together
        self.flush_due(p.ts.0);
        if self.parts.ready_len() >= HAND_OVER_BATCHES {
            self.hand_over();
        }
    }

    fn idle(&mut self, now: Timestamp) {
        self.parts.advance(now);
        self.parts.flush();
        self.hand_over();
    }

    fn flush(&mut self) {
        self.hand_over();
    }

    fn oldest_held(&self) -> Option<Timestamp> {
        None
    }

    fn holds_work(&self) -> bool {
        !self.ready.is_empty() || self.parts.ready_len() > 0
    }

    fn stats(&self) -> RouteStats {
        RouteStats {
            dropped: self.dropped,
            dropped_batches: self.dropped_batches,
            ..RouteStats::default()
        }
    }

    fn finish(mut self) -> RouteStats {
        self.parts.finish();
        let live = std::mem::replace(&mut self.live, false);
        self.hand_over();
        self.live = live;
        self.stats()
    }

    fn reconfigure(&mut self, _cfg: DetectConfig) {}
}

/// Reads `source`, decodes it and hands every summary to the bus; returns the run's summary and
/// the error reading stopped on, if any. One reading thread.
pub fn run_ingest(
    source: &mut dyn crate::capture::FrameSource,
    detect: &DetectConfig,
    pipe: &PipelineConfig,
    bus: BusOut,
    stop: &AtomicBool,
    metrics: Option<&Metrics>,
) -> (RunSummary, Option<CaptureError>) {
    let started = std::time::Instant::now();
    let tick_ns = detect.tick_ns().max(1);
    let down = BusDownstream {
        parts: Partitioner::new(bus.cluster, bus.node, bus.batch),
        tx: Some(bus.tx),
        live: pipe.live,
        tick_ns,
        next_flush: 0,
        ready: Vec::new(),
        dropped: 0,
        dropped_batches: 0,
    };
    let mut reader = Reader::new(pipe, down, metrics);
    let error = reader.read_all(source, stop);
    let mut summary = reader.finish(source.stats());
    summary.elapsed = started.elapsed();
    summary.peak_rss = super::peak_rss();
    summary.cpu = super::cpu_time();
    summary.interrupted = stop.load(std::sync::atomic::Ordering::Relaxed);
    (summary, error)
}
