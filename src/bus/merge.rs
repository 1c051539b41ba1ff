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

use std::collections::HashMap;

use super::partition::{Cluster, Sides};
use super::wire::{decode_batch, WireError};
use crate::decode::PacketSummary;
use crate::time::Timestamp;

/// What the merger counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
}

#[derive(Debug)]
struct Node {
    watermark: u64,
    /// Wall time (ns) the node was last heard from.
    heard: u64,
    silent: bool,
    /// Last sequence number per partition.
    seqs: HashMap<u16, u64>,
}

/// Merges the batches of one detector's partitions.
#[derive(Debug)]
pub struct Merger {
    cluster: Cluster,
    owned: Vec<bool>,
    silence_ns: u64,
    nodes: HashMap<u32, Node>,
    pending: Vec<(PacketSummary, Sides)>,
    released_to: u64,
    stats: MergeStats,
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
            owned,
            silence_ns,
            nodes: HashMap::new(),
            pending: Vec::new(),
            released_to: 0,
            stats: MergeStats::default(),
        }
    }

    /// Takes one batch received at wall time `now_ns`. A malformed batch is an error and changes
    /// nothing.
    pub fn accept(&mut self, bytes: &[u8], now_ns: u64) -> Result<(), WireError> {
        let mut summaries = Vec::new();
        let h = decode_batch(bytes, &mut summaries)?;
        if !self
            .owned
            .get(usize::from(h.partition))
            .copied()
            .unwrap_or(false)
        {
            self.stats.foreign += 1;
            return Ok(());
        }
        let node = self.nodes.entry(h.node).or_insert(Node {
            watermark: 0,
            heard: now_ns,
            silent: false,
            seqs: HashMap::new(),
        });
        node.heard = node.heard.max(now_ns);
        node.silent = false;
        let last = node.seqs.entry(h.partition).or_insert(0);
        if h.seq <= *last {
            self.stats.duplicates += 1;
            return Ok(());
        }
        self.stats.gaps += h.seq - *last - 1;
        *last = h.seq;
        node.watermark = node.watermark.max(h.watermark);
        self.stats.batches += 1;
        self.stats.summaries += summaries.len() as u64;
        let cluster = self.cluster;
        self.pending.extend(
            summaries
                .into_iter()
                .map(|s| (s, cluster.sides_owned(h.partition, &s)))
                // a summary whose two sides both live here came in one batch; its sides are those
                // this partition owns, which `sides_owned` gives for any owned partition
                .filter(|(_, sides)| sides.destination || sides.source),
        );
        Ok(())
    }

    /// The packet time every live ingest node has passed, at wall time `now_ns` (None before any
    /// node was heard from).
    pub fn watermark(&mut self, now_ns: u64) -> Option<Timestamp> {
        let mut min: Option<u64> = None;
        for n in self.nodes.values_mut() {
            if now_ns.saturating_sub(n.heard) > self.silence_ns {
                if !n.silent {
                    n.silent = true;
                    self.stats.silent_nodes += 1;
                }
                continue;
            }
            min = Some(min.map_or(n.watermark, |m| m.min(n.watermark)));
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
        self.pending.sort_by_key(|(s, _)| s.ts);
        let n = self.pending.partition_point(|(s, _)| s.ts.0 <= upto);
        out.extend(self.pending.drain(..n));
        Some(Timestamp(upto))
    }

    /// Summaries held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> MergeStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::partition::Partitioner;

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
                m.accept(b, 0).unwrap();
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
        let from_a: Vec<Vec<u8>> = a
            .take_ready()
            .into_iter()
            .filter(|(p, _)| *p == part)
            .map(|(_, x)| x)
            .collect();
        let from_b: Vec<Vec<u8>> = b
            .take_ready()
            .into_iter()
            .filter(|(p, _)| *p == part)
            .map(|(_, x)| x)
            .collect();
        let mut m = Merger::new(c, &[part], 5 * SEC);
        // node 2 heard at 0 s, node 1 at 3 s (wall time)
        m.accept(&from_b[0], 0).unwrap();
        m.accept(&from_a[0], 3 * SEC).unwrap();
        m.accept(&from_a[0], 3 * SEC).unwrap();
        m.accept(&from_a[2], 3 * SEC).unwrap();
        let st = m.stats();
        assert_eq!((st.duplicates, st.gaps), (1, 1));
        // node 2 is behind: time waits for it
        assert_eq!(m.watermark(3 * SEC), Some(Timestamp(5 * SEC)));
        // node 2 silent past the limit: time follows node 1
        assert_eq!(m.watermark(7 * SEC), Some(Timestamp(10 * SEC + 2)));
        assert_eq!(m.stats().silent_nodes, 1);
        // a batch for a partition not owned here is dropped
        let other = (part + 1) % 4;
        let mut m2 = Merger::new(c, &[other], 5 * SEC);
        m2.accept(&from_a[0], 0).unwrap();
        assert_eq!(m2.stats().foreign, 1);
        assert!(m2.accept(b"garbage", 0).is_err());
    }
}
