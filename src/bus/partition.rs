//! Which partition of a cluster owns a summary's keys, and the batching an ingest node does before
//! publishing: one [`BatchWriter`] per partition, flushed with the node's watermark.
//!
//! A summary has a destination side (its `dst_host` and `dst_subnet` keys) and a source side
//! (`src_host`, `src_subnet`). Each side belongs to the partition of its address's *prefix* (the
//! cluster's `subnet_v4` / `subnet_v6`), so a host and its subnet always share a partition and a
//! victim attacked through every site is counted whole in one place. A summary goes to its
//! destination's partition and, when different, to its source's; a detector counts the scopes of
//! the sides it owns ([`Cluster::sides_owned`]).
//!
//! The partition hash is part of the cluster's contract (every node must agree): SplitMix64 of the
//! prefix's bits mixed with the cluster seed, written out here rather than taken from a hashing
//! crate whose output may change between versions. The seed is the cluster's secret: an attacker
//! who does not know it cannot aim spoofed prefixes at one partition.

use std::net::IpAddr;

use super::wire::aggregates::encode_aggregate;
use super::wire::{encode_watermark, BatchHeader, BatchWriter, NodeWatermark};
use crate::decode::PacketSummary;
use crate::detect::TickAggregate;
use crate::key::{mask128, mask32};
use crate::time::Timestamp;

/// The partitioning every node of a cluster shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Partitions, fixed for the cluster's life (1 to 65,535).
    pub partitions: u16,
    pub seed: u64,
    /// Prefix lengths of the subnet scopes (the same as the detectors' `--subnet-v4/-v6`).
    pub subnet_v4: u8,
    pub subnet_v6: u8,
}

/// Which sides of a summary a partition owns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sides {
    pub destination: bool,
    pub source: bool,
}

impl Cluster {
    /// The partition of an address's prefix.
    pub fn partition_of(&self, addr: IpAddr) -> u16 {
        let bits: u128 = match addr {
            IpAddr::V4(a) => {
                let len = self.subnet_v4.min(32);
                let masked = u32::from(a) & mask32(len);
                // the family and length are mixed in, so 10.0.0.0/24 and ::a00:0/24 differ
                u128::from(masked) | (4u128 << 120) | (u128::from(len) << 112)
            }
            IpAddr::V6(a) => {
                let len = self.subnet_v6.min(128);
                let masked = u128::from(a) & mask128(len);
                // the low bits of a /64..=/112 prefix are zero: fold the high half in
                masked ^ (u128::from(len) << 8) ^ 6
            }
        };
        let h = splitmix64(self.seed ^ (bits as u64) ^ splitmix64((bits >> 64) as u64));
        (h % u64::from(self.partitions.max(1))) as u16
    }

    /// The destination's and the source's partitions of a summary.
    pub fn partitions_of(&self, p: &PacketSummary) -> (u16, u16) {
        (self.partition_of(p.dst), self.partition_of(p.src))
    }

    /// The sides of `p` that `partition` owns.
    pub fn sides_owned(&self, partition: u16, p: &PacketSummary) -> Sides {
        let (d, s) = self.partitions_of(p);
        Sides {
            destination: d == partition,
            source: s == partition,
        }
    }
}

/// The partition of the last destination looked up: a flood's summaries share their destination,
/// so most look-ups skip the hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct DstCache(Option<(IpAddr, u16)>);

impl DstCache {
    /// The partition of `dst` in `cluster`.
    #[inline]
    pub fn partition(&mut self, cluster: &Cluster, dst: IpAddr) -> u16 {
        match self.0 {
            Some((a, p)) if a == dst => p,
            _ => {
                let p = cluster.partition_of(dst);
                self.0 = Some((dst, p));
                p
            }
        }
    }

    /// [`Cluster::sides_owned`] for a summary published on `partition` by an ingest node: one
    /// there though `partition` does not own its destination was published for its source (the
    /// [`Partitioner`] sends it nowhere else), so the source is hashed only for the summaries of
    /// destinations the partition owns.
    #[inline]
    pub fn sides_owned(&mut self, cluster: &Cluster, partition: u16, p: &PacketSummary) -> Sides {
        if self.partition(cluster, p.dst) != partition {
            return Sides {
                destination: false,
                source: true,
            };
        }
        Sides {
            destination: true,
            source: cluster.partition_of(p.src) == partition,
        }
    }
}

/// SplitMix64's finaliser: a fixed, well-mixed 64-bit permutation.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An ingest node's batching: summaries in, per-partition encoded batches out.
#[derive(Debug)]
pub struct Partitioner {
    cluster: Cluster,
    node: u32,
    /// Summaries a batch holds before it is ready.
    batch: u32,
    writers: Vec<Option<BatchWriter>>,
    /// Batches published per partition (the next batch's sequence number is one more).
    seqs: Vec<u64>,
    /// Latest packet time pushed (or idle time advanced to).
    latest: Timestamp,
    started: bool,
    ready: Vec<(u16, Vec<u8>)>,
    dst_cache: DstCache,
    /// Batches of aggregates ([`Partitioner::push_aggregate`]) rather than summaries.
    aggregates: bool,
    /// The watermark each partition was last told, by a batch or a node watermark (a flush
    /// skips the node watermark when every partition has been told as much).
    sent: Vec<Option<u64>>,
    /// Node watermarks published.
    wm_seq: u64,
    /// Flushes (ticks) so far, and the flush each partition's last batch went at.
    flushes: u64,
    last_batch: Vec<u64>,
}

/// A partition gets a batch at least once in this many flushes (a second at the default tick),
/// empty if need be: a detector starting mid-stream learns the node's partitions from them, and
/// a batch lost upstream stops holding back the node watermarks that name it (they apply once a
/// later batch of the partition arrives).
const KEEPALIVE_FLUSHES: u64 = 10;

impl Partitioner {
    /// Batches of up to `batch` summaries for each of the cluster's partitions, from node `node`.
    pub fn new(cluster: Cluster, node: u32, batch: u32) -> Partitioner {
        let n = usize::from(cluster.partitions.max(1));
        Partitioner {
            cluster,
            node,
            batch: batch.max(1),
            writers: (0..n).map(|_| None).collect(),
            seqs: vec![0; n],
            latest: Timestamp(0),
            started: false,
            ready: Vec::new(),
            dst_cache: DstCache::default(),
            aggregates: false,
            sent: vec![None; n],
            wm_seq: 0,
            flushes: 0,
            last_batch: vec![0; n],
        }
    }

    /// Where the node's watermarks go in [`Partitioner::take_ready`]: the index after the last
    /// partition (the publisher's subject there is the node's watermark subject).
    pub fn watermark_index(&self) -> u16 {
        self.cluster.partitions.max(1)
    }

    /// Publishes aggregates ([`Partitioner::push_aggregate`]) instead of summaries: every batch,
    /// the empty ones that carry the watermark too, is a batch of aggregates.
    pub fn aggregating(mut self) -> Partitioner {
        self.aggregates = true;
        self
    }

    /// Notes the time of a packet aggregated elsewhere (a node that aggregates at its edge): the
    /// watermark moves as [`Partitioner::push`] moves it, and the first packet tells every
    /// partition where the stream starts.
    pub fn observe(&mut self, ts: Timestamp) {
        if !self.started {
            self.started = true;
            self.latest = ts;
            self.open_all();
        }
        self.latest = self.latest.max(ts);
    }

    /// One tick's aggregate (or a part of one): every partition that owns keys of it gets a batch
    /// of those, with the watermark so far. A key goes to the partition of its address, as a
    /// summary's side does. The stream-wide figures ride with the first of those batches (with
    /// partition 0's when the tick has no keys): one message fewer a tick than a batch of their
    /// own, and whichever detector takes them counts them once.
    pub fn push_aggregate(&mut self, t: &TickAggregate) {
        let n = self.cluster.partitions.max(1);
        let cluster = self.cluster;
        let owner: Vec<Vec<u16>> = t
            .scopes
            .iter()
            .map(|s| {
                s.entries()
                    .iter()
                    .map(|e| cluster.partition_of(e.key.addr()))
                    .collect()
            })
            .collect();
        let mut used = vec![false; usize::from(n)];
        for p in owner.iter().flatten() {
            if let Some(u) = used.get_mut(usize::from(*p)) {
                *u = true;
            }
        }
        let figures_part = if t.packets > 0 || t.deferred != [0; 2] {
            let first = used.iter().position(|u| *u).unwrap_or(0);
            used[first] = true;
            Some(first as u16)
        } else {
            None
        };
        for part in (0..n).filter(|p| used[usize::from(*p)]) {
            let header = self.next_header(part, false);
            let keep = |s: crate::key::Scope, e: usize| {
                owner
                    .get(s.index())
                    .and_then(|o| o.get(e))
                    .is_some_and(|p| *p == part)
            };
            let bytes = encode_aggregate(t, header, keep, figures_part == Some(part));
            self.ready.push((part, bytes));
        }
    }

    /// Adds one summary to its destination's batch and, when different, its source's. Summaries
    /// are expected in packet-time order (one older than the first of its batch is published at
    /// that first summary's time).
    pub fn push(&mut self, p: &PacketSummary) {
        if !self.started {
            self.started = true;
            self.latest = p.ts;
            self.open_all();
        }
        self.latest = self.latest.max(p.ts);
        let d = self.dst_cache.partition(&self.cluster, p.dst);
        let s = self.cluster.partition_of(p.src);
        self.add(d, p);
        if s != d {
            self.add(s, p);
        }
    }

    fn add(&mut self, part: u16, p: &PacketSummary) {
        let i = usize::from(part);
        // a batch's times count from its first summary; an older one after it is encoded at
        // that time (the wire format's clamp)
        let w = self.writers[i].get_or_insert_with(|| BatchWriter::new(p.ts));
        w.push(p);
        if w.len() >= self.batch {
            self.close(part);
        }
    }

    /// Closes the batch of `part` with the watermark so far.
    fn close(&mut self, part: u16) {
        self.close_as(part, false)
    }

    /// The header of the next batch of `part`, with the watermark so far.
    fn next_header(&mut self, part: u16, last: bool) -> BatchHeader {
        // (every batch tells its partition the watermark so far)
        let i = usize::from(part);
        if let (Some(f), Some(s)) = (self.last_batch.get_mut(i), self.sent.get_mut(i)) {
            *f = self.flushes;
            *s = Some(self.latest.0);
        }
        let seq = match self.seqs.get_mut(usize::from(part)) {
            Some(s) => {
                *s += 1;
                *s
            }
            None => 0,
        };
        BatchHeader {
            partition: part,
            node: self.node,
            seq,
            watermark: self.latest.0,
            last,
        }
    }

    fn close_as(&mut self, part: u16, last: bool) {
        let i = usize::from(part);
        let header = self.next_header(part, last);
        let bytes = if self.aggregates {
            // the watermark alone, as a batch of no aggregates
            encode_aggregate(&TickAggregate::default(), header, |_, _| false, false)
        } else {
            self.writers[i]
                .take()
                .unwrap_or_else(|| BatchWriter::new(self.latest))
                .finish(header)
        };
        self.ready.push((part, bytes));
    }

    /// Every partition learns where this node's stream starts, before anything else of it: a
    /// batch each, empty.
    fn open_all(&mut self) {
        for part in 0..self.cluster.partitions.max(1) {
            self.close(part);
        }
    }

    /// Closes every partition's batch that holds summaries (and, every `KEEPALIVE_FLUSHES`, an
    /// empty one of a partition that got none); then, unless every partition's last batch already
    /// carries the node's watermark, one node watermark tells them all (call it at every tick): a
    /// detector whose partition got no traffic still sees time move, for one message a tick
    /// instead of an empty batch a partition.
    pub fn flush(&mut self) {
        self.flushes += 1;
        let mut behind = false;
        for part in 0..self.cluster.partitions.max(1) {
            let i = usize::from(part);
            let quiet = self.flushes - self.last_batch[i] >= KEEPALIVE_FLUSHES;
            if self.writers[i].is_some() || quiet {
                self.close(part);
            } else {
                behind |= self.sent[i] != Some(self.latest.0);
            }
        }
        if behind {
            self.wm_seq += 1;
            let w = NodeWatermark {
                node: self.node,
                seq: self.wm_seq,
                watermark: self.latest.0,
                last_seqs: self.seqs.clone(),
            };
            self.sent.iter_mut().for_each(|s| *s = Some(w.watermark));
            let at = self.watermark_index();
            self.ready.push((at, encode_watermark(&w)));
        }
    }

    /// The source is idle at packet time `now` (live capture): nothing older is still to come, so
    /// the next flush carries `now` as the watermark.
    pub fn advance(&mut self, now: Timestamp) {
        if self.started {
            self.latest = self.latest.max(now);
        }
    }

    /// The stream has ended: every partition gets its last batch, flagged so detectors stop waiting
    /// for this node.
    pub fn finish(&mut self) {
        for part in 0..self.cluster.partitions.max(1) {
            self.close_as(part, true);
        }
    }

    /// Batches closed and not taken yet.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The batches ready to publish, as (partition, bytes), in the order they closed.
    pub fn take_ready(&mut self) -> Vec<(u16, Vec<u8>)> {
        std::mem::take(&mut self.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::wire::decode_batch;

    fn cluster(partitions: u16) -> Cluster {
        Cluster {
            partitions,
            seed: 0x5eed,
            subnet_v4: 24,
            subnet_v6: 64,
        }
    }

    fn summary(ts: u64, src: [u8; 4], dst: [u8; 4]) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(ts),
            src: src.into(),
            dst: dst.into(),
            proto: 17,
            sport: 53,
            dport: 4444,
            wire_len: 512,
            ..PacketSummary::default()
        }
    }

    #[test]
    fn an_aggregating_node_flushes_only_the_partitions_its_aggregates_did_not_reach() {
        let c = cluster(8);
        let mut p = Partitioner::new(c, 1, 64).aggregating();
        p.observe(Timestamp(1_000));
        // the start: every partition hears where the stream starts
        assert_eq!(p.take_ready().len(), 8);
        let mut t = TickAggregate::default();
        let mut agg = crate::aggregate::ScopeAgg::new();
        agg.insert(
            crate::key::Key::host([198, 51, 100, 1].into()),
            2_000,
            true,
            1,
            false,
        );
        t.scopes[0] = agg.take();
        t.packets = 1;
        p.observe(Timestamp(3_000));
        p.push_aggregate(&t);
        let sent: Vec<u16> = p.take_ready().iter().map(|(part, _)| *part).collect();
        // one batch: the victim's partition, the stream-wide figures with it
        let victim = c.partition_of([198, 51, 100, 1].into());
        assert_ne!(victim, 0, "the test wants a victim off partition 0");
        assert_eq!(sent, [victim]);
        let ready = {
            p.observe(Timestamp(3_500));
            p.push_aggregate(&t);
            p.take_ready()
        };
        let (_, bytes) = &ready[0];
        let (_, back) = crate::bus::wire::aggregates::decode_aggregate(bytes).unwrap();
        assert_eq!(back.packets, 1);
        // the tick's flush: one node watermark for the others, naming each partition's last
        // batch (the victim's second, the start's for the rest)
        p.flush();
        let flushed = p.take_ready();
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].0, p.watermark_index());
        let w = crate::bus::wire::decode_watermark(&flushed[0].1).unwrap();
        assert_eq!((w.node, w.seq, w.watermark), (1, 1, 3_500));
        let want: Vec<u64> = (0..8).map(|q| if q == victim { 3 } else { 1 }).collect();
        assert_eq!(w.last_seqs, want);
        // nothing new: nothing to say
        p.flush();
        assert!(p.take_ready().is_empty());
        // time moves: a node watermark again
        p.observe(Timestamp(4_000));
        p.flush();
        let again = p.take_ready();
        assert_eq!(again.len(), 1);
        let w = crate::bus::wire::decode_watermark(&again[0].1).unwrap();
        assert_eq!((w.seq, w.watermark), (2, 4_000));
    }

    #[test]
    fn a_partition_without_batches_gets_an_empty_one_every_few_ticks() {
        let c = cluster(8);
        let mut p = Partitioner::new(c, 1, 64).aggregating();
        p.observe(Timestamp(1_000));
        assert_eq!(p.take_ready().len(), 8);
        let mut empties = [0u32; 8];
        for tick in 1..=3 * KEEPALIVE_FLUSHES {
            p.observe(Timestamp(1_000 + tick * 100));
            p.flush();
            let ready = p.take_ready();
            // a node watermark every tick; the keepalive batches of every partition together,
            // once in KEEPALIVE_FLUSHES (which a detector starting mid-stream learns them by)
            assert!(ready.iter().any(|(part, _)| *part == p.watermark_index()) || ready.len() == 8);
            for (part, _) in ready.iter().filter(|(part, _)| *part < 8) {
                empties[usize::from(*part)] += 1;
            }
        }
        assert_eq!(empties, [3; 8]);
    }

    #[test]
    fn a_host_and_its_subnet_share_a_partition_and_prefixes_spread() {
        let c = cluster(16);
        let a = c.partition_of([198, 51, 100, 10].into());
        for host in 0..=255u8 {
            assert_eq!(c.partition_of([198, 51, 100, host].into()), a);
        }
        let mut used = [0u32; 16];
        for net in 0..4096u32 {
            let addr = std::net::Ipv4Addr::from((10 << 24) | (net << 8));
            used[usize::from(c.partition_of(addr.into()))] += 1;
        }
        // 4,096 prefixes over 16 partitions: 256 each on average
        assert!(used.iter().all(|n| (180..=340).contains(n)), "{used:?}");
        // another seed, another layout
        let other = Cluster { seed: 1, ..c };
        let moved = (0..256u32)
            .filter(|n| {
                let addr: IpAddr = std::net::Ipv4Addr::from((10 << 24) | (n << 8)).into();
                c.partition_of(addr) != other.partition_of(addr)
            })
            .count();
        assert!(moved > 200, "{moved}");
    }

    #[test]
    fn each_side_reaches_its_partition_once_and_batches_carry_the_watermark() {
        let c = cluster(8);
        let mut p = Partitioner::new(c, 3, 4);
        let mut sent = Vec::new();
        for i in 0..40u64 {
            let s = summary(
                1_000 + i,
                [203, 0, 113, i as u8],
                [198, 51, (i % 5) as u8, 1],
            );
            p.push(&s);
            sent.push(s);
        }
        p.flush();
        let batches = p.take_ready();
        let mut got: Vec<(u16, PacketSummary)> = Vec::new();
        let mut last_seq = [0u64; 8];
        let mut marks = Vec::new();
        for (part, bytes) in &batches {
            if *part == p.watermark_index() {
                marks.push(crate::bus::wire::decode_watermark(bytes).unwrap());
                continue;
            }
            let mut out = Vec::new();
            let h = decode_batch(bytes, &mut out).unwrap();
            assert_eq!(h.partition, *part);
            assert_eq!(h.node, 3);
            assert_eq!(
                h.seq,
                last_seq[usize::from(*part)] + 1,
                "sequence per partition"
            );
            last_seq[usize::from(*part)] = h.seq;
            assert!(out.len() <= 4);
            assert!(out.iter().all(|s| s.ts.0 <= h.watermark));
            got.extend(out.into_iter().map(|s| (*part, s)));
        }
        // every partition got at least the start's (empty) batch, and those the flush found
        // empty were told the watermark by one node watermark naming every last batch
        assert!(last_seq.iter().all(|s| *s >= 1));
        assert_eq!(marks.len(), 1, "{marks:?}");
        assert_eq!(marks[0].last_seqs, last_seq);
        assert_eq!(marks[0].watermark, 1_039);
        for s in &sent {
            let (d, src) = c.partitions_of(s);
            let copies = got.iter().filter(|(_, g)| g == s).count();
            assert_eq!(copies, if d == src { 1 } else { 2 });
            let owned: Vec<Sides> = got
                .iter()
                .filter(|(_, g)| g == s)
                .map(|(part, g)| c.sides_owned(*part, g))
                .collect();
            // between its copies, each side is owned exactly once
            assert_eq!(owned.iter().filter(|o| o.destination).count(), 1);
            assert_eq!(owned.iter().filter(|o| o.source).count(), 1);
        }
    }
}
