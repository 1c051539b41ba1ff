//! A detector node's side of the bus: batches from every ingest node for the partitions it owns,
//! merged into one stream in packet-time order, released up to the minimum watermark of the ingest
//! nodes still heard from.
//!
//! - A node's batches of one partition are expected in order (one subject per partition keeps a
//!   publisher's order); a batch repeated or older (a redelivery) is dropped and counted; a gap in
//!   a node's sequence numbers is counted (batches lost upstream).
//! - Time advances to the smallest watermark of the live ingest nodes; a node not heard from for
//!   longer than the silence limit (wall time) is left out of that minimum and counted, so one dead
//!   node cannot stop detection; it is back in as soon as a batch of it arrives.
//! - Summaries are held until every live node's watermark has passed them, then released sorted by
//!   time (ties keep their arrival order): the engine sees what one machine would have seen.
//! - Aggregates (ingest nodes with `--edge-admission`) are held until every live node's watermark
//!   has passed the end of their tick, then released by (tick, node, partition), each node's parts
//!   of a tick in their order ([`Merger::take_ticks`]). Nodes of both kinds may feed one merger:
//!   the detector counts each tick's aggregates and summaries in time order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::partition::{Cluster, DstCache, Sides};
use super::wire::aggregates::{decode_aggregate, encode_aggregate};
use super::wire::{
    decode_batch, decode_watermark, is_aggregates, BatchHeader, BatchWriter, NodeWatermark,
    WireError,
};
use crate::decode::PacketSummary;
use crate::detect::TickAggregate;
use crate::time::Timestamp;

/// What the merger counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeStats {
    pub batches: u64,
    pub summaries: u64,
    /// Batches seen before (redeliveries), dropped.
    pub duplicates: u64,
    /// Batches missing between two of a node's sequence numbers.
    pub gaps: u64,
    /// Batches for a partition this node does not own, dropped.
    pub foreign: u64,
    /// Times an ingest node was left out of the watermark for silence.
    pub silent_nodes: u64,
    /// Ingest nodes whose stream ended (a replay reached its end).
    pub ended_nodes: u64,
    /// Keys of aggregates taken (ingest nodes with `--edge-admission`).
    #[serde(default)]
    pub key_aggregates: u64,
    /// Node watermarks taken (one a tick from each ingest node: time moving on the partitions
    /// that got no batch).
    #[serde(default)]
    pub node_watermarks: u64,
    /// Node watermarks of nodes no batch came from yet, left alone.
    #[serde(default)]
    pub unknown_watermarks: u64,
}

/// One owned partition as one ingest node publishes it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct PartState {
    /// Last batch sequence number.
    seq: u64,
    /// Packet time the node has published everything before, for this partition.
    watermark: u64,
    /// The node's last batch for this partition has arrived.
    ended: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Node {
    /// Wall time (ns) the node was last heard from.
    heard: u64,
    silent: bool,
    /// Per owned partition heard from.
    parts: BTreeMap<u16, PartState>,
    /// Node watermarks not yet applied to every owned partition, oldest first: (watermark, each
    /// partition's last batch sequence number). Not saved: a detector's watermark consumer starts
    /// from each node's latest one.
    #[serde(skip)]
    marks: VecDeque<(u64, Vec<u64>)>,
}

/// Node watermarks kept per node while partitions catch up with them, at most (the oldest go
/// first: one later says more).
const MAX_MARKS: usize = 256;

impl Node {
    fn new(now_ns: u64) -> Node {
        Node {
            heard: now_ns,
            silent: false,
            parts: BTreeMap::new(),
            marks: VecDeque::new(),
        }
    }

    /// Applies the held node watermarks to each partition that holds the batches they name, and
    /// drops those every owned partition has caught up with.
    fn apply_marks(&mut self, owned_count: usize) {
        if self.marks.is_empty() {
            return;
        }
        for (p, part) in self.parts.iter_mut().filter(|(_, part)| !part.ended) {
            for (w, seqs) in &self.marks {
                if seqs.get(usize::from(*p)).is_some_and(|s| *s <= part.seq) {
                    part.watermark = part.watermark.max(*w);
                }
            }
        }
        while let Some((_, seqs)) = self.marks.front() {
            let caught_up = self.parts.len() == owned_count
                && self.parts.iter().all(|(p, part)| {
                    part.ended || seqs.get(usize::from(*p)).is_none_or(|s| *s <= part.seq)
                });
            if !caught_up {
                break;
            }
            self.marks.pop_front();
        }
    }
}

/// A summary held until every live node's watermark has passed it. Summaries are released in
/// (time, node, partition) order, each (node, partition) in its publishing order, so the stream
/// the engine sees does not depend on the order batches of different nodes arrived in.
#[derive(Clone, Copy, Debug)]
struct Held {
    summary: PacketSummary,
    sides: Sides,
}

/// Merges the batches of one detector's partitions.
#[derive(Debug)]
pub struct Merger {
    cluster: Cluster,
    owned: Vec<bool>,
    owned_count: usize,
    silence_ns: u64,
    /// Ingest nodes to hear from before time moves (at most a silence limit after the first).
    expected: usize,
    /// Wall time the first batch arrived.
    first_heard: Option<u64>,
    nodes: HashMap<u32, Node>,
    /// Held summaries, one queue per (node, partition): each is that node's publishing order.
    runs: Vec<Run>,
    run_of: HashMap<(u32, u16), usize>,
    held: usize,
    dst_cache: DstCache,
    released_to: u64,
    /// The earliest watermark of any node's first batches: where the stream starts.
    start: Option<u64>,
    stats: MergeStats,
    scratch: Vec<PacketSummary>,
}

/// Why a saved merger state does not load.
#[derive(Debug, thiserror::Error)]
pub enum MergeStateError {
    #[error("merger state: {0}")]
    Json(#[from] serde_json::Error),
    #[error("merger state: held summaries: {0}")]
    Wire(#[from] WireError),
    #[error("merger state: {0} held summaries but {1} origins")]
    Mismatch(usize, usize),
    #[error("merger state: held aggregates cut short")]
    Cut,
}

/// The merger's state in a checkpoint (held summaries travel as a wire batch beside it).
#[derive(Serialize, Deserialize)]
struct SavedMerger {
    nodes: Vec<(u32, Node)>,
    /// Per held summary: (node, partition, sides bits).
    origins: Vec<(u32, u16, u8)>,
    released_to: u64,
    start: Option<u64>,
    stats: MergeStats,
    first_heard: bool,
}

impl Merger {
    /// A merger for `partitions` of `cluster`; an ingest node silent for `silence_ns` of wall time
    /// stops holding time back.
    pub fn new(cluster: Cluster, partitions: &[u16], silence_ns: u64) -> Merger {
        let mut owned = vec![false; usize::from(cluster.partitions.max(1))];
        for p in partitions {
            if let Some(o) = owned.get_mut(usize::from(*p)) {
                *o = true;
            }
        }
        Merger {
            cluster,
            owned_count: owned.iter().filter(|o| **o).count(),
            owned,
            silence_ns,
            expected: 1,
            first_heard: None,
            nodes: HashMap::new(),
            runs: Vec::new(),
            run_of: HashMap::new(),
            held: 0,
            dst_cache: DstCache::default(),
            released_to: 0,
            start: None,
            stats: MergeStats::default(),
            scratch: Vec::new(),
        }
    }

    /// Time does not move before `n` ingest nodes have been heard from, or a silence limit after
    /// the first one was (so every node's start is seen, as one machine would).
    pub fn expect_nodes(mut self, n: usize) -> Merger {
        self.expected = n.max(1);
        self
    }

    /// Takes one batch received at wall time `now_ns`. A malformed batch is an error and changes
    /// nothing.
    pub fn accept(&mut self, bytes: &[u8], now_ns: u64) -> Result<BatchHeader, WireError> {
        if is_aggregates(bytes) {
            let (h, t) = decode_aggregate(bytes)?;
            self.take_aggregate(h, t, now_ns);
            return Ok(h);
        }
        let mut summaries = std::mem::take(&mut self.scratch);
        summaries.clear();
        let h = decode_batch(bytes, &mut summaries);
        let h = match h {
            Ok(h) => h,
            Err(e) => {
                self.scratch = summaries;
                return Err(e);
            }
        };
        self.take(h, &mut summaries, now_ns);
        self.scratch = summaries;
        Ok(h)
    }

    /// Takes one node watermark (src/bus/wire.rs) received at wall time `now_ns`: held until the
    /// partitions it names hold its batches. A malformed one, or one of another partition count,
    /// is an error and changes nothing.
    pub fn accept_watermark(&mut self, bytes: &[u8], now_ns: u64) -> Result<(), WireError> {
        let w = decode_watermark(bytes)?;
        let n = self.cluster.partitions.max(1);
        if w.last_seqs.len() != usize::from(n) {
            return Err(WireError::Partitions {
                found: w.last_seqs.len(),
                wanted: n,
            });
        }
        self.take_watermark(w, now_ns);
        Ok(())
    }

    /// A node's watermark for every partition: held until the partitions it names hold its
    /// batches.
    ///
    /// A node no batch came from yet is left alone: a watermark does not make a node (the stream's
    /// latest of each node may be one of a node long gone; a live node's batches come, and its
    /// next watermark says as much as this one).
    fn take_watermark(&mut self, w: NodeWatermark, now_ns: u64) {
        let owned = self.owned_count;
        let Some(node) = self.nodes.get_mut(&w.node) else {
            self.stats.unknown_watermarks += 1;
            return;
        };
        self.stats.node_watermarks += 1;
        node.heard = node.heard.max(now_ns);
        node.silent = false;
        if node.marks.len() >= MAX_MARKS {
            node.marks.pop_front();
        }
        node.marks.push_back((w.watermark, w.last_seqs));
        node.apply_marks(owned);
    }

    /// A node's aggregates of one tick (or part of one) for a partition.
    fn take_aggregate(&mut self, h: BatchHeader, t: TickAggregate, now_ns: u64) {
        // where a node starts: its first batch's watermark (it is sent at the first packet)
        if !self.note(h, h.watermark, now_ns) {
            return;
        }
        let keys: usize = t.scopes.iter().map(|s| s.entries().len()).sum();
        self.stats.key_aggregates += keys as u64;
        if keys == 0 && t.packets == 0 && t.deferred == [0; 2] {
            return;
        }
        self.run_entry(h.node, h.partition).ticks.push_back(t);
        self.held += 1;
    }

    /// The bookkeeping of every batch: ownership, the node heard from, repeats and gaps, the
    /// watermark, a stream's start (`first`: the earliest time of a node's first batch) and end.
    /// False when the batch is to be dropped (a foreign partition or a repeat).
    fn note(&mut self, h: BatchHeader, first: u64, now_ns: u64) -> bool {
        if !self
            .owned
            .get(usize::from(h.partition))
            .copied()
            .unwrap_or(false)
        {
            self.stats.foreign += 1;
            return false;
        }
        self.first_heard.get_or_insert(now_ns);
        let owned = self.owned_count;
        let node = self
            .nodes
            .entry(h.node)
            .or_insert_with(|| Node::new(now_ns));
        node.heard = node.heard.max(now_ns);
        node.silent = false;
        let part = node.parts.entry(h.partition).or_default();
        if h.seq <= part.seq {
            self.stats.duplicates += 1;
            return false;
        }
        if part.seq == 0 {
            // a node's first batch of a partition carries the time it started at
            self.start = Some(self.start.map_or(first, |t| t.min(first)));
        }
        self.stats.gaps += h.seq - part.seq - 1;
        part.seq = h.seq;
        part.watermark = part.watermark.max(h.watermark);
        if h.last && !part.ended {
            part.ended = true;
            if node.parts.len() == owned && node.parts.values().all(|p| p.ended) {
                self.stats.ended_nodes += 1;
            }
        }
        node.apply_marks(owned);
        self.stats.batches += 1;
        true
    }

    fn take(&mut self, h: BatchHeader, summaries: &mut Vec<PacketSummary>, now_ns: u64) {
        let first = summaries
            .first()
            .map_or(h.watermark, |s| s.ts.0.min(h.watermark));
        if !self.note(h, first, now_ns) {
            return;
        }
        self.stats.summaries += summaries.len() as u64;
        let cluster = self.cluster;
        let mut cache = self.dst_cache;
        let run = self.run(h.node, h.partition);
        let before = run.len();
        run.extend(
            summaries
                .drain(..)
                .map(|s| Held {
                    summary: s,
                    sides: cache.sides_owned(&cluster, h.partition, &s),
                })
                // a summary whose two sides both live here came in one batch; its sides are those
                // this partition owns, which `sides_owned` gives for any owned partition
                .filter(|h| h.sides.destination || h.sides.source),
        );
        self.held += run.len() - before;
        self.dst_cache = cache;
    }

    /// The queue of (node, partition).
    fn run(&mut self, node: u32, partition: u16) -> &mut VecDeque<Held> {
        &mut self.run_entry(node, partition).queue
    }

    fn run_entry(&mut self, node: u32, partition: u16) -> &mut Run {
        let i = *self.run_of.entry((node, partition)).or_insert_with(|| {
            self.runs.push(Run {
                node,
                partition,
                queue: VecDeque::new(),
                ticks: VecDeque::new(),
            });
            self.runs.len() - 1
        });
        &mut self.runs[i]
    }

    fn node_ended(&self, n: &Node) -> bool {
        n.parts.len() == self.owned_count && n.parts.values().all(|p| p.ended)
    }

    /// True once the expected nodes were heard from and every node heard from has ended its
    /// stream on every partition owned here.
    pub fn all_ended(&self) -> bool {
        self.nodes.len() >= self.expected && self.nodes.values().all(|n| self.node_ended(n))
    }

    /// The latest watermark any node has given partition `p` (by its batches or its node
    /// watermarks); 0 before any.
    pub fn partition_watermark(&self, p: u16) -> u64 {
        self.nodes
            .values()
            .filter_map(|n| n.parts.get(&p))
            .map(|s| s.watermark)
            .max()
            .unwrap_or(0)
    }

    /// Where the stream starts (the earliest time any node started at), once known.
    pub fn start(&self) -> Option<Timestamp> {
        self.start.map(Timestamp)
    }

    /// The packet time every live ingest node has passed, at wall time `now_ns` (None before time
    /// may move). Once every node has ended, the latest time any of them reached.
    pub fn watermark(&mut self, now_ns: u64) -> Option<Timestamp> {
        let first = self.first_heard?;
        if self.nodes.len() < self.expected && now_ns.saturating_sub(first) <= self.silence_ns {
            return None;
        }
        if self.all_ended() {
            let last = self
                .nodes
                .values()
                .flat_map(|n| n.parts.values().map(|p| p.watermark))
                .max()?;
            return Some(Timestamp(last.max(self.released_to)));
        }
        let owned = self.owned_count;
        let mut min: Option<u64> = None;
        for n in self.nodes.values_mut() {
            let ended = n.parts.len() == owned && n.parts.values().all(|p| p.ended);
            if ended {
                continue;
            }
            if now_ns.saturating_sub(n.heard) > self.silence_ns {
                if !n.silent {
                    n.silent = true;
                    self.stats.silent_nodes += 1;
                }
                continue;
            }
            // a partition not heard from yet holds the node at 0; an ended one holds nothing
            let w = if n.parts.len() < owned {
                0
            } else {
                n.parts
                    .values()
                    .filter(|p| !p.ended)
                    .map(|p| p.watermark)
                    .min()
                    .unwrap_or(u64::MAX)
            };
            min = Some(min.map_or(w, |m| m.min(w)));
        }
        min.map(Timestamp)
    }

    /// Appends to `out`, in time order, every held summary at or before the watermark at `now_ns`;
    /// returns the time released up to.
    pub fn release(
        &mut self,
        now_ns: u64,
        out: &mut Vec<(PacketSummary, Sides)>,
    ) -> Option<Timestamp> {
        let w = self.watermark(now_ns)?;
        self.released_to = self.released_to.max(w.0);
        let upto = self.released_to;
        self.drain_through(upto, out);
        Some(Timestamp(upto))
    }

    /// [`Merger::release`] of whole ticks only: every held summary of a tick (`tick_ns` long,
    /// counted from time 0 as the engine's clock counts them) that ended at or before the
    /// watermark at `now_ns`; returns where the last of those ticks ends. A detector that counts
    /// what this releases and then moves its clock to the returned time has no part of a tick
    /// pending, so a checkpoint taken there cuts the stream where its own ticks are cut, and what
    /// a tick samples never depends on when the checkpoints fell. The rest of a tick stays held
    /// (and is in the checkpoint with the merger's state).
    pub fn release_ticks(
        &mut self,
        now_ns: u64,
        tick_ns: u64,
        out: &mut Vec<(PacketSummary, Sides)>,
    ) -> Option<Timestamp> {
        let w = self.watermark(now_ns)?.0.max(self.released_to);
        let boundary = w - w % tick_ns.max(1);
        // time released never goes back, as with `release`: a node that comes back from silence
        // behind it has its summaries released at once (late, for the engine's clock)
        self.released_to = self.released_to.max(boundary);
        if let Some(last) = boundary.checked_sub(1) {
            self.drain_through(last, out);
        }
        Some(Timestamp(boundary))
    }

    /// Moves every held summary at or before `upto` into `out`: a k-way merge of the queues'
    /// heads, each summary moved once, in (time, node, partition) order, a queue's own order kept.
    fn drain_through(&mut self, upto: u64, out: &mut Vec<(PacketSummary, Sides)>) {
        let mut heads = BinaryHeap::with_capacity(self.runs.len());
        for (i, r) in self.runs.iter().enumerate() {
            if let Some(h) = r.queue.front().filter(|h| h.summary.ts.0 <= upto) {
                heads.push(Reverse((h.summary.ts, r.node, r.partition, i)));
            }
        }
        while let Some(Reverse((_, _, _, i))) = heads.pop() {
            let r = &mut self.runs[i];
            if let Some(h) = r.queue.pop_front() {
                out.push((h.summary, h.sides));
                self.held -= 1;
            }
            if let Some(h) = r.queue.front().filter(|h| h.summary.ts.0 <= upto) {
                heads.push(Reverse((h.summary.ts, r.node, r.partition, i)));
            }
        }
    }

    /// Moves every held aggregate of a tick that ends at or before `upto` (a time
    /// [`Merger::release_ticks`] or [`Merger::release`] returned; `u64::MAX`: all) into `out`, in
    /// (tick, node, partition) order, each node's parts of a tick in their order. Ticks are
    /// `tick_ns` long, counted from time 0 as the engine's clock counts them.
    pub fn take_ticks(&mut self, upto: u64, tick_ns: u64, out: &mut Vec<TickAggregate>) {
        let tick_ns = tick_ns.max(1);
        let due = |t: &TickAggregate| {
            upto == u64::MAX || t.tick.saturating_add(1).saturating_mul(tick_ns) <= upto
        };
        let mut heads = BinaryHeap::with_capacity(self.runs.len());
        for (i, r) in self.runs.iter().enumerate() {
            if let Some(t) = r.ticks.front().filter(|t| due(t)) {
                heads.push(Reverse((t.tick, r.node, r.partition, i)));
            }
        }
        while let Some(Reverse((_, _, _, i))) = heads.pop() {
            let r = &mut self.runs[i];
            if let Some(t) = r.ticks.pop_front() {
                out.push(t);
                self.held -= 1;
            }
            if let Some(t) = r.ticks.front().filter(|t| due(t)) {
                heads.push(Reverse((t.tick, r.node, r.partition, i)));
            }
        }
    }

    /// Summaries and aggregates held back.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn stats(&self) -> MergeStats {
        self.stats
    }

    /// The merger's state for a checkpoint: (metadata as JSON, held summaries as a wire batch).
    pub fn save(&self) -> (Vec<u8>, Vec<u8>) {
        let held = || {
            self.runs
                .iter()
                .flat_map(|r| r.queue.iter().map(move |h| (r.node, r.partition, h)))
        };
        let base = held().map(|(_, _, h)| h.summary.ts).min();
        let mut w = BatchWriter::new(base.unwrap_or(Timestamp(0)));
        for (_, _, h) in held() {
            w.push(&h.summary);
        }
        let mut batch = w.finish(BatchHeader::default());
        // then each held aggregate as its own batch, its length before it
        for r in &self.runs {
            for t in &r.ticks {
                let header = BatchHeader {
                    partition: r.partition,
                    node: r.node,
                    ..BatchHeader::default()
                };
                let bytes = encode_aggregate(t, header, |_, _| true, true);
                batch.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                batch.extend_from_slice(&bytes);
            }
        }
        let saved = SavedMerger {
            nodes: self.nodes.iter().map(|(k, v)| (*k, v.clone())).collect(),
            origins: held()
                .map(|(node, partition, h)| {
                    let sides = u8::from(h.sides.destination) | (u8::from(h.sides.source) << 1);
                    (node, partition, sides)
                })
                .collect(),
            released_to: self.released_to,
            start: self.start,
            stats: self.stats,
            first_heard: self.first_heard.is_some(),
        };
        (serde_json::to_vec(&saved).unwrap_or_default(), batch)
    }

    /// Restores a state [`Merger::save`] wrote. Wall times restart at `now_ns` (every node counts
    /// as just heard from).
    pub fn restore(
        &mut self,
        meta: &[u8],
        batch: &[u8],
        now_ns: u64,
    ) -> Result<(), MergeStateError> {
        let saved: SavedMerger = serde_json::from_slice(meta)?;
        let mut summaries = Vec::new();
        // the summaries' batch, then the held aggregates, each after its length
        let end = super::wire::batch_len(batch);
        let (first, mut rest) = batch.split_at(end.min(batch.len()));
        // a checkpoint of an earlier build (version 3: before aggregates; 4: before node
        // watermarks): its summaries and aggregates are encoded as now
        let upgraded;
        let first = if matches!(first.get(4), Some(3 | 4)) {
            upgraded = upgrade(first);
            &upgraded[..]
        } else {
            first
        };
        decode_batch(first, &mut summaries)?;
        let mut ticks = Vec::new();
        while !rest.is_empty() {
            let len = rest
                .get(..4)
                .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .ok_or(MergeStateError::Cut)?;
            let bytes = rest.get(4..4 + len).ok_or(MergeStateError::Cut)?;
            ticks.push(if bytes.get(4) == Some(&4) {
                decode_aggregate(&upgrade(bytes))?
            } else {
                decode_aggregate(bytes)?
            });
            rest = &rest[4 + len..];
        }
        if summaries.len() != saved.origins.len() {
            return Err(MergeStateError::Mismatch(
                summaries.len(),
                saved.origins.len(),
            ));
        }
        self.nodes = saved
            .nodes
            .into_iter()
            .map(|(k, mut n)| {
                n.heard = now_ns;
                n.silent = false;
                (k, n)
            })
            .collect();
        self.runs.clear();
        self.run_of.clear();
        self.held = 0;
        for (s, (node, partition, sides)) in summaries.into_iter().zip(saved.origins) {
            self.run(node, partition).push_back(Held {
                summary: s,
                sides: Sides {
                    destination: sides & 1 != 0,
                    source: sides & 2 != 0,
                },
            });
            self.held += 1;
        }
        for (h, t) in ticks {
            self.run_entry(h.node, h.partition).ticks.push_back(t);
            self.held += 1;
        }
        self.released_to = saved.released_to;
        self.start = saved.start;
        self.stats = saved.stats;
        self.first_heard = saved.first_heard.then_some(now_ns);
        Ok(())
    }
}

/// A held batch of a checkpoint an earlier build wrote, marked as this version's (the encoding
/// of summaries and aggregates is unchanged since version 3).
fn upgrade(batch: &[u8]) -> Vec<u8> {
    let mut b = batch.to_vec();
    if let Some(v) = b.get_mut(4) {
        *v = super::wire::VERSION;
    }
    b
}

/// The held summaries (or aggregates) of one node's partition.
#[derive(Debug)]
struct Run {
    node: u32,
    partition: u16,
    queue: VecDeque<Held>,
    ticks: VecDeque<TickAggregate>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::partition::Partitioner;

    /// What a detector does with a message of either stream: a node watermark to
    /// [`Merger::accept_watermark`], a batch to [`Merger::accept`].
    trait TakeAny {
        fn take_any(&mut self, bytes: &[u8], now_ns: u64) -> Result<(), WireError>;
    }

    impl TakeAny for Merger {
        fn take_any(&mut self, bytes: &[u8], now_ns: u64) -> Result<(), WireError> {
            if crate::bus::wire::is_watermark(bytes) {
                self.accept_watermark(bytes, now_ns)
            } else {
                self.accept(bytes, now_ns).map(|_| ())
            }
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            partitions: 4,
            seed: 77,
            subnet_v4: 24,
            subnet_v6: 64,
        }
    }

    fn summary(ts: u64, i: u8) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(ts),
            src: [203, 0, 113, i].into(),
            dst: [198, 51, i % 7, 10].into(),
            proto: 6,
            tcp_flags: 0x02,
            sport: 1000,
            dport: 80,
            wire_len: 60,
            ..PacketSummary::default()
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn two_ingest_nodes_merge_into_one_ordered_stream_and_each_side_arrives_once() {
        let c = cluster();
        // node 1 has the even summaries, node 2 the odd ones, as two sites would
        let all: Vec<PacketSummary> = (0..200u64)
            .map(|i| summary(SEC + i * 1000, i as u8))
            .collect();
        let mut parts = [Partitioner::new(c, 1, 16), Partitioner::new(c, 2, 16)];
        for (i, s) in all.iter().enumerate() {
            parts[i % 2].push(s);
        }
        // every partition's detector; each node's batches arrive in order (one subject per
        // partition keeps a publisher's order), the nodes in any order: here node 2 first
        let mut batches = Vec::new();
        for p in parts.iter_mut().rev() {
            p.flush();
            batches.extend(p.take_ready());
        }
        let mut counted_dst = vec![0u32; all.len()];
        let mut counted_src = vec![0u32; all.len()];
        for part in 0..4u16 {
            let mut m = Merger::new(c, &[part], 5 * SEC);
            for (_, b) in &batches {
                m.take_any(b, 0).unwrap();
            }
            let mut out = Vec::new();
            let upto = m.release(0, &mut out).unwrap();
            assert_eq!(upto, Timestamp(SEC + 198 * 1000), "the smaller watermark");
            assert!(out.windows(2).all(|w| w[0].0.ts <= w[1].0.ts), "time order");
            for (s, sides) in &out {
                let i = all.iter().position(|a| a == s).unwrap();
                counted_dst[i] += u32::from(sides.destination);
                counted_src[i] += u32::from(sides.source);
            }
            // what is past the smaller watermark waits (node 1's last summary)
            assert!(m.held() <= 2);
        }
        let late = all.len() - 1;
        for i in 0..late {
            assert_eq!((counted_dst[i], counted_src[i]), (1, 1), "summary {i}");
        }
    }

    #[test]
    fn repeats_are_dropped_gaps_counted_and_a_silent_node_stops_holding_time() {
        let c = cluster();
        let mut a = Partitioner::new(c, 1, 1);
        let mut b = Partitioner::new(c, 2, 1);
        let s = summary(10 * SEC, 1);
        let part = c.partitions_of(&s).0;
        for i in 0..3 {
            a.push(&summary(10 * SEC + i, 1));
        }
        b.push(&summary(5 * SEC, 1));
        // the batches of `part` a partitioner has ready
        let ready = |p: &mut Partitioner| -> Vec<Vec<u8>> {
            let batches = p.take_ready().into_iter();
            batches
                .filter(|(p, _)| *p == part)
                .map(|(_, x)| x)
                .collect()
        };
        let (from_a, from_b) = (ready(&mut a), ready(&mut b));
        let mut m = Merger::new(c, &[part], 5 * SEC);
        // node 2 heard at 0 s, node 1 at 3 s (wall time)
        m.take_any(&from_b[0], 0).unwrap();
        m.take_any(&from_a[0], 3 * SEC).unwrap();
        m.take_any(&from_a[0], 3 * SEC).unwrap();
        m.take_any(&from_a[2], 3 * SEC).unwrap();
        let st = m.stats();
        assert_eq!((st.duplicates, st.gaps), (1, 1));
        // node 2 is behind: time waits for it
        assert_eq!(m.watermark(3 * SEC), Some(Timestamp(5 * SEC)));
        // node 2 silent past the limit: time follows node 1 (batch 3 of it: the start batch, then
        // one a summary)
        assert_eq!(m.watermark(7 * SEC), Some(Timestamp(10 * SEC + 1)));
        assert_eq!(m.stats().silent_nodes, 1);
        // a batch for a partition not owned here is dropped
        let other = (part + 1) % 4;
        let mut m2 = Merger::new(c, &[other], 5 * SEC);
        m2.take_any(&from_a[0], 0).unwrap();
        assert_eq!(m2.stats().foreign, 1);
        assert!(m2.take_any(b"garbage", 0).is_err());
    }

    #[test]
    fn a_node_holds_time_until_every_owned_partition_has_passed_it_and_ends_with_its_last_batch() {
        let c = cluster();
        let mut a = Partitioner::new(c, 1, 4);
        for i in 0..40u64 {
            a.push(&summary(SEC + i * 1000, i as u8));
        }
        let mut batches = a.take_ready();
        let all: Vec<u16> = (0..4).collect();
        let mut m = Merger::new(c, &all, 5 * SEC).expect_nodes(1);
        // batches closed because they were full say nothing about partitions still open
        for (_, b) in &batches {
            m.take_any(b, 0).unwrap();
        }
        let mut out = Vec::new();
        let upto = m.release(0, &mut out).unwrap().0;
        assert!(out.iter().all(|(s, _)| s.ts.0 <= upto));
        assert_eq!(m.start(), Some(Timestamp(SEC)));
        assert!(!m.all_ended());
        // saved mid-stream and restored elsewhere, it goes on the same way
        let (meta, held) = m.save();
        let mut copy = Merger::new(c, &all, 5 * SEC).expect_nodes(1);
        copy.restore(&meta, &held, 9).unwrap();
        assert_eq!(copy.held(), m.held());
        a.finish();
        batches = a.take_ready();
        let (mut rest, mut rest_copy) = (Vec::new(), Vec::new());
        for (_, b) in &batches {
            m.take_any(b, 0).unwrap();
            copy.take_any(b, 9).unwrap();
        }
        assert!(m.all_ended() && copy.all_ended());
        let end = m.release(0, &mut rest).unwrap();
        assert_eq!(copy.release(9, &mut rest_copy).unwrap(), end);
        assert_eq!(end, Timestamp(SEC + 39_000));
        assert_eq!(rest, rest_copy);
        assert_eq!(
            out.len() + rest.len(),
            40 * 2
                - out
                    .iter()
                    .chain(&rest)
                    .filter(|(_, s)| s.destination && s.source)
                    .count()
        );
        assert_eq!(m.held(), 0);
        assert_eq!(m.stats().ended_nodes, 1);
    }

    /// A node watermark moves the partitions that got no batch, each only once it holds the
    /// batches the watermark names (they travel on other streams and may come later); it is not
    /// saved, and a later one (the watermark consumer starts from each node's latest) says it.
    #[test]
    fn a_node_watermark_moves_each_partition_once_it_holds_the_batches_named() {
        let c = cluster();
        let all: Vec<u16> = (0..4).collect();
        let mut node = Partitioner::new(c, 1, 1_000);
        let s = summary(SEC, 1);
        node.push(&s);
        // the start's empty batches, and what the summary's first tick closes
        let start = node.take_ready();
        assert_eq!(start.len(), 4);
        node.push(&summary(SEC + 500, 1));
        node.flush();
        let tick: Vec<(u16, Vec<u8>)> = node.take_ready();
        let (marks, batches): (Vec<_>, Vec<_>) = tick
            .into_iter()
            .partition(|(p, _)| *p == node.watermark_index());
        assert_eq!(marks.len(), 1);
        let (d, src) = c.partitions_of(&s);
        assert_eq!(batches.len(), if d == src { 1 } else { 2 });
        let mut m = Merger::new(c, &all, 5 * SEC).expect_nodes(1);
        for (_, b) in &start {
            m.take_any(b, 0).unwrap();
        }
        assert_eq!(m.watermark(0), Some(Timestamp(SEC)));
        let (meta, held) = m.save();
        // (a watermark is not a batch: one on a partition's stream is refused)
        assert!(m.accept(&marks[0].1, 0).is_err());
        // the watermark first: it waits for the batches it names
        m.accept_watermark(&marks[0].1, 0).unwrap();
        assert_eq!(m.watermark(0), Some(Timestamp(SEC)));
        let idle = (0..4u16).find(|p| *p != d && *p != src).unwrap();
        assert_eq!(m.partition_watermark(idle), SEC + 500);
        assert_eq!(m.partition_watermark(d), SEC);
        for (_, b) in &batches {
            m.take_any(b, 0).unwrap();
        }
        assert_eq!(m.watermark(0), Some(Timestamp(SEC + 500)));
        assert_eq!(m.stats().node_watermarks, 1);
        // restored from before the watermark came: the batches move their own partitions, the
        // watermark (as the consumer gives each node's latest again) the others
        let mut copy = Merger::new(c, &all, 5 * SEC).expect_nodes(1);
        copy.restore(&meta, &held, 0).unwrap();
        for (_, b) in &batches {
            copy.take_any(b, 0).unwrap();
        }
        assert_eq!(copy.watermark(0), Some(Timestamp(SEC)));
        copy.accept_watermark(&marks[0].1, 0).unwrap();
        assert_eq!(copy.watermark(0), Some(Timestamp(SEC + 500)));
        // a watermark of another partition count is refused and changes nothing
        let other = crate::bus::wire::encode_watermark(&crate::bus::wire::NodeWatermark {
            node: 1,
            seq: 9,
            watermark: SEC * 9,
            last_seqs: vec![0; 3],
        });
        let err = m.accept_watermark(&other, 0).unwrap_err();
        assert!(err.to_string().contains("3 partitions"), "{err}");
        assert_eq!(m.watermark(0), Some(Timestamp(SEC + 500)));
        // a node no batch came from (the stream keeps the last watermark of nodes long gone)
        // makes no node: it would hold time back and never end
        let gone = crate::bus::wire::encode_watermark(&crate::bus::wire::NodeWatermark {
            node: 77,
            seq: 1,
            watermark: SEC,
            last_seqs: vec![5; 4],
        });
        m.accept_watermark(&gone, 0).unwrap();
        assert_eq!(m.stats().unknown_watermarks, 1);
        assert_eq!(m.watermark(0), Some(Timestamp(SEC + 500)));
    }

    /// A checkpoint written by the previous build (version 4 batches) restores.
    #[test]
    fn a_checkpoint_of_the_previous_wire_version_restores() {
        let c = cluster();
        let all: Vec<u16> = (0..4).collect();
        let mut node = Partitioner::new(c, 1, 1_000);
        node.push(&summary(SEC, 1));
        let mut m = Merger::new(c, &all, 5 * SEC).expect_nodes(1);
        for (_, b) in node.take_ready() {
            m.take_any(&b, 0).unwrap();
        }
        node.push(&summary(SEC + 1, 2));
        node.flush();
        for (_, b) in node.take_ready() {
            m.take_any(&b, 0).unwrap();
        }
        assert!(m.held() > 0);
        let (meta, mut held) = m.save();
        assert_eq!(held[4], crate::bus::wire::VERSION);
        held[4] = 4;
        let mut copy = Merger::new(c, &all, 5 * SEC).expect_nodes(1);
        copy.restore(&meta, &held, 0).unwrap();
        assert_eq!(copy.held(), m.held());
    }

    /// A node silent past the limit lets time move on without it; when it comes back behind,
    /// whole-tick release does not go back: its summaries come out at once, late.
    #[test]
    fn whole_ticks_never_go_back_when_a_silent_node_returns_behind() {
        let c = cluster();
        let all: Vec<u16> = (0..4).collect();
        let tick = 100_000_000;
        let (mut a, mut b) = (Partitioner::new(c, 1, 4), Partitioner::new(c, 2, 4));
        for i in 0..50u64 {
            a.push(&summary(10 * SEC + i * 20_000_000, i as u8));
        }
        a.flush();
        b.push(&summary(5 * SEC, 1));
        b.flush();
        let mut m = Merger::new(c, &all, 5 * SEC).expect_nodes(2);
        for (_, x) in b.take_ready() {
            m.take_any(&x, 0).unwrap();
        }
        for (_, x) in a.take_ready() {
            m.take_any(&x, 6 * SEC).unwrap();
        }
        // node 2 (heard at 0 s) is silent at 6 s: time follows node 1 alone
        let mut out = Vec::new();
        let first = m.release_ticks(6 * SEC, tick, &mut out).unwrap();
        assert_eq!(first, Timestamp(10 * SEC + 900_000_000));
        assert!(out.iter().all(|(s, _)| s.ts < first));
        // node 2 comes back with summaries from before that
        for i in 0..5u64 {
            b.push(&summary(5 * SEC + i * 1000, 2));
        }
        b.flush();
        for (_, x) in b.take_ready() {
            m.take_any(&x, 7 * SEC).unwrap();
        }
        let before = out.len();
        let again = m.release_ticks(7 * SEC, tick, &mut out).unwrap();
        assert!(again >= first, "time went back: {again:?} < {first:?}");
        assert!(out.len() > before, "the returning node's summaries wait");
        assert!(out[before..].iter().all(|(s, _)| s.ts < first));
    }

    /// One tick's aggregate of `packets` (their own tick), as an edge router makes it.
    fn tick_of(packets: &[PacketSummary], tick_ns: u64) -> TickAggregate {
        let cfg = crate::config::DetectConfig::default();
        let mut agg = crate::detect::Aggregator::for_router(&cfg);
        let mut clock = crate::clock::Clock::new(&cfg);
        let mut steps = Vec::new();
        for p in packets {
            let stamp = clock.accept(p.ts, &mut steps);
            let (at, _) = agg.tick_of(stamp);
            agg.add(p, stamp, crate::detect::scopes_of(&cfg, p), at);
        }
        let t = agg.take();
        assert_eq!(
            t.tick,
            packets[0].ts.0 / tick_ns,
            "the test's tick is the config's"
        );
        t
    }

    /// What a released aggregate holds, to compare: (tick, keys by scope).
    fn keys_of(t: &TickAggregate) -> (u64, Vec<Vec<crate::key::Key>>) {
        let keys = t
            .scopes
            .iter()
            .map(|s| s.entries().iter().map(|e| e.key).collect())
            .collect();
        (t.tick, keys)
    }

    #[test]
    fn aggregates_leave_by_whole_tick_node_and_partition_and_survive_a_checkpoint() {
        let c = cluster();
        let all: Vec<u16> = (0..4).collect();
        let tick = crate::config::DetectConfig::default().tick_ns();
        let mut nodes = [
            Partitioner::new(c, 2, 4).aggregating(),
            Partitioner::new(c, 1, 4).aggregating(),
        ];
        // three ticks of each node; node 2's batches arrive first
        for (n, p) in nodes.iter_mut().enumerate() {
            for k in 0..3u64 {
                let packets: Vec<_> = (0..20u64)
                    .map(|i| summary(10 * SEC + k * tick + i * 1000, (n as u64 * 100 + i) as u8))
                    .collect();
                for s in &packets {
                    p.observe(s.ts);
                }
                p.push_aggregate(&tick_of(&packets, tick));
                p.observe(Timestamp(10 * SEC + (k + 1) * tick));
                p.flush();
            }
        }
        let mut m = Merger::new(c, &all, 5 * SEC).expect_nodes(2);
        for p in &mut nodes {
            for (_, b) in p.take_ready() {
                m.take_any(&b, 0).unwrap();
            }
        }
        assert_eq!(m.start(), Some(Timestamp(10 * SEC)));
        // the watermark is at the start of the fourth tick: three whole ticks leave
        let mut out = Vec::new();
        let upto = m.release_ticks(0, tick, &mut out).unwrap();
        assert_eq!(upto, Timestamp(10 * SEC + 3 * tick));
        assert!(out.is_empty(), "no summaries");
        // a tick leaves only once it has ended: before the third ends, two ticks of each node
        let mut early = Vec::new();
        let before_third = 10 * SEC + 3 * tick - 1;
        let (meta0, held0) = m.save();
        let mut peek = Merger::new(c, &all, 5 * SEC).expect_nodes(2);
        peek.restore(&meta0, &held0, 7).unwrap();
        peek.take_ticks(before_third, tick, &mut early);
        let third = (10 * SEC) / tick + 2;
        assert!(!early.is_empty() && early.iter().all(|t| t.tick < third));
        assert_eq!(
            peek.held(),
            m.held() - early.len(),
            "the third tick stays held"
        );
        // checkpointed before the ticks are taken, restored elsewhere: the same ticks leave
        let (meta, held) = m.save();
        let mut copy = Merger::new(c, &all, 5 * SEC).expect_nodes(2);
        copy.restore(&meta, &held, 7).unwrap();
        assert_eq!(copy.held(), m.held());
        let mut ticks = Vec::new();
        m.take_ticks(upto.0, tick, &mut ticks);
        let mut again = Vec::new();
        copy.take_ticks(upto.0, tick, &mut again);
        assert_eq!(m.held(), 0);
        let got: Vec<_> = ticks.iter().map(keys_of).collect();
        assert_eq!(got, again.iter().map(keys_of).collect::<Vec<_>>());
        // by tick, then node (1 before 2), then partition: each key of each node and tick once
        let order: Vec<u64> = ticks.iter().map(|t| t.tick).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        // the 7 destinations of each node's tick, each once, whatever partition it went to
        let dst_keys: usize = ticks.iter().map(|t| t.scopes[0].entries().len()).sum();
        assert_eq!(
            dst_keys,
            3 * 2 * 7,
            "every destination of 3 ticks of 2 nodes"
        );
        // the figures (packets) travel once per node and tick
        assert_eq!(ticks.iter().map(|t| t.packets).sum::<u64>(), 3 * 2 * 20);
    }

    /// A node behind holds the others' ticks; summaries and aggregates of different nodes both
    /// go through one merger.
    #[test]
    fn a_node_behind_holds_the_tick_and_nodes_of_both_kinds_merge() {
        let c = cluster();
        let all: Vec<u16> = (0..4).collect();
        let tick = crate::config::DetectConfig::default().tick_ns();
        let mut edge = Partitioner::new(c, 1, 4).aggregating();
        let mut plain = Partitioner::new(c, 2, 4);
        let packets: Vec<_> = (0..10u64)
            .map(|i| summary(10 * SEC + i * 1000, i as u8))
            .collect();
        for s in &packets {
            edge.observe(s.ts);
        }
        edge.observe(Timestamp(10 * SEC + tick));
        edge.push_aggregate(&tick_of(&packets, tick));
        edge.flush();
        plain.push(&summary(10 * SEC + 5, 200));
        plain.flush();
        let mut m = Merger::new(c, &all, 5 * SEC).expect_nodes(2);
        for (_, b) in edge.take_ready() {
            m.take_any(&b, 0).unwrap();
        }
        for (_, b) in plain.take_ready() {
            m.take_any(&b, 0).unwrap();
        }
        // node 2 has said nothing past 10 s + 5 ns: the tick stays held
        let (mut out, mut ticks) = (Vec::new(), Vec::new());
        let upto = m.release_ticks(0, tick, &mut out).unwrap();
        m.take_ticks(upto.0, tick, &mut ticks);
        assert!(
            ticks.is_empty() && out.is_empty(),
            "released before node 2 passed the tick"
        );
        // node 2 passes it: its summary and node 1's aggregate leave together
        plain.advance(Timestamp(10 * SEC + tick));
        plain.flush();
        for (_, b) in plain.take_ready() {
            m.take_any(&b, 0).unwrap();
        }
        let upto = m.release_ticks(0, tick, &mut out).unwrap();
        m.take_ticks(upto.0, tick, &mut ticks);
        assert!(!ticks.is_empty(), "node 1's aggregate");
        assert!(!out.is_empty(), "node 2's summary");
        assert_eq!(m.held(), 0);
    }

    #[test]
    fn time_waits_for_the_expected_nodes_then_a_silence_limit() {
        let c = cluster();
        let mut a = Partitioner::new(c, 1, 4);
        a.push(&summary(SEC, 1));
        a.flush();
        let mut m = Merger::new(c, &[0, 1, 2, 3], 5 * SEC).expect_nodes(2);
        for (_, b) in a.take_ready() {
            m.take_any(&b, 0).unwrap();
        }
        assert_eq!(m.watermark(SEC), None, "the second node may still come");
        assert_eq!(m.watermark(6 * SEC), None, "node 1 itself fell silent");
        let mut m2 = Merger::new(c, &[0, 1, 2, 3], 5 * SEC).expect_nodes(2);
        let mut a = Partitioner::new(c, 1, 4);
        a.push(&summary(SEC, 1));
        a.flush();
        for (_, b) in a.take_ready() {
            m2.take_any(&b, 0).unwrap();
        }
        a.advance(Timestamp(2 * SEC));
        a.flush();
        for (_, b) in a.take_ready() {
            m2.take_any(&b, 5 * SEC + 1).unwrap();
        }
        assert_eq!(m2.watermark(5 * SEC + 1), Some(Timestamp(2 * SEC)));
    }

    #[test]
    fn releasing_in_many_steps_gives_the_stream_one_release_gives() {
        let c = cluster();
        let mut parts = [Partitioner::new(c, 1, 5), Partitioner::new(c, 2, 3)];
        for i in 0..600u64 {
            // the two nodes share times: ties are released in a fixed order
            parts[(i % 2) as usize].push(&summary(SEC + (i / 2) * 700, (i % 251) as u8));
            if i % 97 == 0 {
                parts[0].flush();
                parts[1].flush();
            }
        }
        for p in &mut parts {
            p.finish();
        }
        let (a, b) = (parts[0].take_ready(), parts[1].take_ready());
        let all: Vec<u16> = (0..4).collect();
        let mut once = Merger::new(c, &all, 5 * SEC).expect_nodes(2);
        for (_, x) in a.iter().chain(&b) {
            once.take_any(x, 0).unwrap();
        }
        let mut whole = Vec::new();
        once.release(0, &mut whole).unwrap();
        // the same batches interleaved, released after every one
        let mut steps = Merger::new(c, &all, 5 * SEC).expect_nodes(2);
        let mut pieces = Vec::new();
        let mut bi = b.iter();
        for (_, x) in &a {
            steps.take_any(x, 0).unwrap();
            if let Some((_, y)) = bi.next() {
                steps.take_any(y, 0).unwrap();
            }
            steps.release(0, &mut pieces);
        }
        for (_, y) in bi {
            steps.take_any(y, 0).unwrap();
            steps.release(0, &mut pieces);
        }
        assert_eq!(steps.held(), 0);
        assert_eq!(pieces.len(), whole.len());
        assert!(pieces == whole, "a different order");
        assert!(whole.windows(2).all(|w| w[0].0.ts <= w[1].0.ts));

        // whole ticks only, after every batch: each release ends on a tick boundary, holds back
        // the tick the watermark is in, and the stream is the same once the end releases the rest
        let tick = 10_000;
        let mut ticks = Merger::new(c, &all, 5 * SEC).expect_nodes(2);
        let mut pieces = Vec::new();
        let mut last_end = 0;
        let mut bi = b.iter();
        for (_, x) in &a {
            ticks.take_any(x, 0).unwrap();
            if let Some((_, y)) = bi.next() {
                ticks.take_any(y, 0).unwrap();
            }
            let before = pieces.len();
            let Some(end) = ticks.release_ticks(0, tick, &mut pieces) else {
                continue;
            };
            assert_eq!(end.0 % tick, 0, "a boundary");
            assert!(end.0 >= last_end && end.0 <= ticks.watermark(0).unwrap().0);
            assert!(pieces[before..]
                .iter()
                .all(|(s, _)| s.ts.0 >= last_end && s.ts.0 < end.0));
            last_end = end.0;
        }
        for (_, y) in bi {
            ticks.take_any(y, 0).unwrap();
        }
        ticks.release_ticks(0, tick, &mut pieces).unwrap();
        assert!(ticks.held() > 0, "the last tick waits");
        assert!(pieces.len() < whole.len());
        ticks.release(0, &mut pieces).unwrap();
        assert_eq!(ticks.held(), 0);
        assert!(pieces == whole, "a different order");
    }
}
