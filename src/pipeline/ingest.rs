//! An ingest node's pipeline (`--publish`): the same reading and decoding as a detector's, but the
//! summaries go to the bus instead of counter shards. `BusDownstream` batches them per partition
//! ([`Partitioner`]) and hands the batches to the publisher thread (src/bus/publish.rs) over a
//! bounded channel: a replay waits when the publisher is behind; live capture drops and counts.
//!
//! Every partition hears the node's watermark at every tick of packet time (and at every idle
//! tick of a live source), by a batch or, for those that got none, one node watermark for all
//! ([`Partitioner::flush`]), so a detector's time moves as one machine's would; the stream's end
//! is published as a last batch on every partition.
//!
//! With `--edge-admission` ([`BusOut::edge`]) the node aggregates its packets per tick as one
//! machine's router does (its own clock, source admission and connection state) and publishes each
//! tick's aggregates, key by key to the partition that owns the key, instead of a summary per
//! packet (docs/scaling.md).

use std::sync::atomic::AtomicBool;

use crossbeam_channel::{Sender, TrySendError};

use super::reader::{Downstream, Reader};
use super::route::RouteStats;
use super::{PipelineConfig, RunSummary};
use crate::bus::partition::{Cluster, Partitioner};
use crate::capture::CaptureError;
use crate::clock::{Clock, Stamp, TimeStep};
use crate::config::DetectConfig;
use crate::decode::PacketSummary;
use crate::detect::{scopes_of, Aggregator};
use crate::metrics::Metrics;
use crate::time::Timestamp;

/// Encoded batches for the publisher: (partition, bytes), in the order they closed; the index
/// after the last partition is the node's watermark
/// ([`crate::bus::partition::Partitioner::watermark_index`]).
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
    /// Admit sources and aggregate here, publishing per-tick aggregates (`--edge-admission`).
    pub edge: bool,
}

/// A node that aggregates at its edge: one machine's router without the shards.
struct Edge {
    cfg: DetectConfig,
    clock: Clock,
    agg: Aggregator,
    /// Scratch for the clock's steps (the detectors evaluate; here they only move time).
    steps: Vec<TimeStep>,
    /// Packets left out by `ignore` / `ours` networks.
    ignored: u64,
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
    edge: Option<Box<Edge>>,
}

impl BusDownstream {
    /// Publishes what the edge has aggregated (nothing without an edge or when nothing is pending).
    fn publish_pending(&mut self) {
        if let Some(e) = &mut self.edge {
            if !e.agg.is_empty() {
                self.parts.push_aggregate(&e.agg.take());
            }
        }
    }

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

/// A tick has ended at a packet stamped `ts`: what is pending leaves with `ts` as the watermark
/// (everything older is in it), so the tick's flush need not repeat the watermark on the
/// partitions the aggregates went to.
fn end_tick(parts: &mut Partitioner, agg: &mut Aggregator, ts: Timestamp) {
    if !agg.is_empty() {
        parts.observe(ts);
        parts.push_aggregate(&agg.take());
    }
}

impl Downstream for BusDownstream {
    /// The bus carries packet summaries, not request heads: a detector counts the requests (a
    /// summary carries the TCP number its handshake is verified by, and whether a request head
    /// is whole) but cannot name their paths, hosts, agents or fingerprints.
    fn push_head(&mut self, p: &PacketSummary, head: crate::requests::RequestHead) {
        self.push(p);
        if let Some(e) = &mut self.edge {
            // an edge aggregates what the request asked for, as one machine's router does
            let scopes = scopes_of(&e.cfg, p);
            if !scopes.is_empty() {
                e.agg.add_head(p, scopes, head);
            }
        }
    }

    #[inline]
    fn push(&mut self, p: &PacketSummary) {
        match &mut self.edge {
            None => self.parts.push(p),
            Some(e) => {
                let stamp = e.clock.accept_weighted(p.ts, p.weight, &mut e.steps);
                if !e.steps.is_empty() {
                    // the clock crossed a tick (or started again): what is pending leaves now,
                    // before this packet's time becomes the watermark, whether or not the packet
                    // itself is counted (one of an `ignore` network may end a tick too), as a
                    // router stages its counts at every step
                    e.steps.clear();
                    end_tick(&mut self.parts, &mut e.agg, p.ts);
                }
                let scopes = scopes_of(&e.cfg, p);
                if scopes.is_empty() {
                    e.ignored += 1;
                } else {
                    let (at, other) = e.agg.tick_of(stamp);
                    if other {
                        // (a tick the clock did not step for: never two ticks in one aggregate)
                        end_tick(&mut self.parts, &mut e.agg, p.ts);
                    }
                    e.agg.add(p, stamp, scopes, at);
                    if e.agg.is_full() {
                        // a part of the tick leaves now: memory stays bounded
                        self.parts.push_aggregate(&e.agg.take());
                    }
                }
                self.parts.observe(p.ts);
            }
        }
        // after the packet: its batch and the watermark that passes the tick boundary go together
        self.flush_due(p.ts.0);
        if self.parts.ready_len() >= HAND_OVER_BATCHES {
            self.hand_over();
        }
    }

    fn idle(&mut self, now: Timestamp) {
        if let Some(e) = &mut self.edge {
            e.clock.advance_to(now, &mut e.steps);
            e.steps.clear();
            let ended = !e.agg.is_empty() && e.agg.tick_of(Stamp { at: now, load: 0 }).1;
            if ended {
                self.publish_pending();
            }
        }
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
        let (clock, ignored) = self
            .edge
            .as_ref()
            .map_or_else(Default::default, |e| (e.clock.stats(), e.ignored));
        RouteStats {
            dropped: self.dropped,
            dropped_batches: self.dropped_batches,
            clock,
            ignored,
        }
    }

    fn finish(mut self) -> RouteStats {
        self.publish_pending();
        self.parts.finish();
        let live = std::mem::replace(&mut self.live, false);
        self.hand_over();
        self.live = live;
        self.stats()
    }

    fn reconfigure(&mut self, cfg: DetectConfig) {
        // what was aggregated under the old configuration leaves first, as a router's does
        self.publish_pending();
        if let Some(e) = &mut self.edge {
            e.agg.reconfigure(&cfg);
            e.cfg = cfg;
        }
    }
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
    let parts = Partitioner::new(bus.cluster, bus.node, bus.batch);
    let (parts, edge) = if bus.edge {
        let edge = Edge {
            cfg: detect.clone(),
            clock: Clock::new(detect),
            agg: Aggregator::for_router(detect),
            steps: Vec::new(),
            ignored: 0,
        };
        (parts.aggregating(), Some(Box::new(edge)))
    } else {
        (parts, None)
    };
    let down = BusDownstream {
        parts,
        tx: Some(bus.tx),
        live: pipe.live,
        tick_ns,
        next_flush: 0,
        ready: Vec::new(),
        dropped: 0,
        dropped_batches: 0,
        edge,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::wire::aggregates::decode_aggregate;
    use crate::bus::wire::is_aggregates;
    use crate::key::Key;

    fn packet(ts: u64, src: [u8; 4]) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(ts),
            src: src.into(),
            dst: [198, 51, 100, 7].into(),
            proto: 6,
            tcp_flags: 0x02,
            sport: 1000,
            dport: 80,
            wire_len: 60,
            ..PacketSummary::default()
        }
    }

    /// A tick's aggregates leave before any watermark past the tick's end, even when the packet
    /// that ends the tick is one an `ignore` network leaves out.
    #[test]
    fn an_edge_publishes_a_tick_before_its_watermark_passes_it_whatever_ends_the_tick() {
        let cfg = DetectConfig {
            ignore: vec![Key::subnet([192, 0, 2, 0].into(), 24, 64)],
            ..DetectConfig::default()
        };
        let tick = cfg.tick_ns();
        let cluster = Cluster {
            partitions: 4,
            seed: 1,
            subnet_v4: 24,
            subnet_v6: 64,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut down = BusDownstream {
            parts: Partitioner::new(cluster, 1, 64).aggregating(),
            tx: Some(tx),
            live: false,
            tick_ns: tick,
            next_flush: 0,
            ready: Vec::new(),
            dropped: 0,
            dropped_batches: 0,
            edge: Some(Box::new(Edge {
                cfg: cfg.clone(),
                clock: Clock::new(&cfg),
                agg: Aggregator::for_router(&cfg),
                steps: Vec::new(),
                ignored: 0,
            })),
        };
        let t0 = 100 * tick;
        for i in 0..5 {
            down.push(&packet(t0 + i * 1_000, [203, 0, 113, i as u8]));
        }
        // the next tick starts with a packet of an ignored network
        down.push(&packet(t0 + tick + 10, [192, 0, 2, 1]));
        down.flush();
        let batches: Vec<(u16, Vec<u8>)> = rx.try_iter().flatten().collect();
        // per partition (a detector's watermark is per node and partition): the batch with tick
        // 100's keys comes no later than the first whose watermark passes the tick
        let mut keys = 0;
        for part in 0..4u16 {
            let mut counted = false;
            for (_, b) in batches.iter().filter(|(p, _)| *p == part) {
                assert!(is_aggregates(b));
                let (h, t) = decode_aggregate(b).unwrap();
                let n: usize = t.scopes.iter().map(|s| s.entries().len()).sum();
                if t.tick == 100 && n > 0 {
                    counted = true;
                    keys += n;
                }
                if h.watermark >= t0 + tick
                    && part == cluster.partition_of([198, 51, 100, 7].into())
                {
                    assert!(counted, "partition {part}: a watermark past tick 100 first");
                }
            }
        }
        // the destination's dst_host and dst_subnet (its partition's); no source is admitted on
        // one packet
        assert_eq!(keys, 2, "tick 100's aggregates");
        assert_eq!(down.stats().ignored, 1);
    }
}
