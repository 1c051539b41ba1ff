//! Attribution: what the engine gathers for keys near or over their threshold to say who and what an
//! alert is about ([`Evidence`]) — the heaviest peers, ports and member hosts, each kept by a small
//! Space-Saving top-k so memory stays fixed however many peers a flood has, the distinct peers
//! ([`Hll`]), the header-field sketch its signature comes from and the request clients.
//!
//! Not to be confused with the evidence pcaps users see (`--evidence-dir`, src/evidence_pcap/) nor
//! the pipeline's tap that feeds them (src/pipeline/evidence_tap.rs).

use std::net::IpAddr;

use crate::alert::{PeerCount, PortCount};
use crate::decode::PacketSummary;
use crate::key::Scope;
use crate::requests::clients::Clients;
use crate::signature::{Signature, SignatureSketch};

/// Space-Saving top-k: `k` counters; an unseen item takes the place of the smallest, inheriting its
/// count as its possible error. `count − error` is a guaranteed lower bound, and any item with more
/// than total/k occurrences is present.
///
/// Items and counts live in separate arrays (the lookup scans items only) and the slot to replace —
/// the first one with the smallest count — is remembered between misses, so a spoofed flood, where
/// nearly every item is new, does not rescan every count per packet. Nor does it scan the items
/// to find one: the slots are indexed by [`Fingerprint`] (a bit per slot in one of 64 buckets),
/// so a lookup compares only the items of its bucket — usually none (most new items of a flood of
/// spoofed sources or random ports) or the one it is after.
#[derive(Clone, Debug)]
pub struct TopK<T> {
    items: Vec<T>,
    counts: Vec<u64>,
    errors: Vec<u64>,
    k: usize,
    /// The first slot with the smallest count, when known.
    min_slot: Option<usize>,
    /// Largest weight added so far: an item is reported once surely seen twice at that weight.
    unit: u64,
    /// Per fingerprint bucket ([`bucket`]), the slots whose item falls in it (bit i: slot i).
    slots_of: Box<[u32; BUCKETS]>,
}

/// Fingerprint buckets of a [`TopK`]: as many as twice its largest number of slots, so a bucket
/// holds one item at most, most of the time.
const BUCKETS: usize = 64;

/// Slots a [`TopK`] may have: one bit each in a bucket's `u32`.
const MAX_K: usize = 32;
const _: () = assert!(
    SLOTS <= MAX_K,
    "the evidence's top-k lists must fit a bucket's slot mask"
);

/// The bucket of `item` in a [`TopK`]'s slot index.
#[inline]
fn bucket<T: Fingerprint>(item: &T) -> usize {
    usize::from(item.fingerprint()) % BUCKETS
}

/// A byte of an item, well mixed: [`TopK`]'s filter of the items it may hold.
pub trait Fingerprint {
    fn fingerprint(&self) -> u8;
}

impl Fingerprint for u128 {
    #[inline]
    fn fingerprint(&self) -> u8 {
        let x = (*self as u64) ^ ((*self >> 64) as u64).rotate_left(17);
        (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
    }
}

impl Fingerprint for u16 {
    #[inline]
    fn fingerprint(&self) -> u8 {
        (u32::from(*self).wrapping_mul(0x9e37_79b1) >> 24) as u8
    }
}

impl Fingerprint for u32 {
    #[inline]
    fn fingerprint(&self) -> u8 {
        (self.wrapping_mul(0x9e37_79b1) >> 24) as u8
    }
}

impl<T: Copy + PartialEq + Ord + Fingerprint> TopK<T> {
    /// An empty top-k with `k` slots (at most 32).
    pub fn new(k: usize) -> Self {
        let k = k.clamp(1, MAX_K);
        TopK {
            items: Vec::with_capacity(k),
            counts: Vec::with_capacity(k),
            errors: Vec::with_capacity(k),
            k,
            min_slot: None,
            unit: 1,
            slots_of: Box::new([0; BUCKETS]),
        }
    }

    /// Notes that `item` came into slot `slot` (`add`) or left it.
    #[inline]
    fn hold(&mut self, item: &T, slot: usize, add: bool) {
        let bit = 1u32 << (slot % MAX_K);
        let b = &mut self.slots_of[bucket(item)];
        *b = if add { *b | bit } else { *b & !bit };
    }

    /// The first slot holding `item`.
    #[inline]
    fn find(&self, item: &T) -> Option<usize> {
        let mut slots = self.slots_of[bucket(item)];
        while slots != 0 {
            let i = slots.trailing_zeros() as usize;
            if self.items.get(i) == Some(item) {
                return Some(i);
            }
            slots &= slots - 1;
        }
        None
    }

    /// Counts one occurrence of `item`.
    #[inline]
    pub fn add(&mut self, item: T) {
        self.add_weighted(item, 1);
    }

    /// Counts `w` occurrences of `item` (a sampled packet standing for `w`).
    #[inline]
    pub fn add_weighted(&mut self, item: T, w: u64) {
        self.unit = self.unit.max(w);
        self.add_counted(item, w);
    }

    /// Counts `w` occurrences of `item` that were each seen (an exact count, not a sample: items
    /// reported need not have been added twice).
    #[inline]
    pub fn add_counted(&mut self, item: T, w: u64) {
        if let Some(i) = self.find(&item) {
            if let Some(c) = self.counts.get_mut(i) {
                *c += w;
            }
            if self.min_slot == Some(i) {
                self.min_slot = None;
            }
            return;
        }
        if self.items.len() < self.k {
            self.hold(&item, self.items.len(), true);
            self.items.push(item);
            self.counts.push(w);
            self.errors.push(0);
            self.min_slot = None;
            return;
        }
        let m = match self.min_slot {
            Some(m) => m,
            None => first_min(&self.counts),
        };
        let (Some(slot), Some(count), Some(error)) = (
            self.items.get_mut(m),
            self.counts.get_mut(m),
            self.errors.get_mut(m),
        ) else {
            return;
        };
        let old = *count;
        let gone = std::mem::replace(slot, item);
        *error = old;
        *count = old + w;
        self.hold(&gone, m, false);
        self.hold(&item, m, true);
        // Every slot before `m` counts more than `old` (m was the first minimum) and none counts
        // less, so the next first minimum is the next slot still at `old`, if any.
        self.min_slot = self
            .counts
            .get(m + 1..)
            .and_then(|rest| rest.iter().position(|&c| c == old))
            .map(|j| m + 1 + j);
    }

    /// Up to `n` items seen at least twice for certain, heaviest first, each with its guaranteed count
    /// (ties by item, for a stable order). Items that may have been seen only once — the long tail of a
    /// spoofed flood — are left out rather than shown with inflated counts.
    pub fn top(&self, n: usize) -> Vec<(T, u64)> {
        let mut v: Vec<(T, u64)> = self
            .items
            .iter()
            .zip(self.counts.iter().zip(&self.errors))
            .map(|(t, (c, e))| (*t, c - e))
            .filter(|(_, sure)| *sure >= 2 * self.unit)
            .collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Occurrences counted in all slots (for shares).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The index of the first smallest count (0 when empty).
#[inline]
fn first_min(counts: &[u64]) -> usize {
    let mut best = 0;
    let mut min = u64::MAX;
    for (i, &c) in counts.iter().enumerate() {
        if c < min {
            min = c;
            best = i;
        }
    }
    best
}

/// Slots per top-k: more than the `top_n` reported, so the reported ones are accurate.
const SLOTS: usize = 32;
/// Packets recorded one by one before sampling starts.
pub const EXACT_PACKETS: u64 = 4096;
/// Past that, one packet in `SAMPLE` updates the top-k lists and signature, standing for `SAMPLE`.
pub const SAMPLE: u32 = 16;

/// What an alert shows about a key's traffic.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// Addresses as u128 (IPv4 mapped into IPv6), so the top-k compares one integer, not an enum.
    peers: TopK<u128>,
    dst_ports: TopK<u16>,
    src_ports: TopK<u16>,
    /// Hosts inside a subnet key (empty for host keys).
    hosts: Option<TopK<u128>>,
    /// Distinct peers, over every packet.
    distinct: Hll,
    /// Summaries the samples so far stand for (what chooses the sampling rate).
    seen: u64,
    /// The largest rate a sample had (reported in events as `sample_rate`).
    max_rate: u32,
    /// The key's short window while it is hot (the engine keeps it here: only hot keys need it).
    pub burst: crate::window::Burst,
    /// Header-field sketches of a destination key (None for source keys).
    pub sig: Option<Box<SigSketches>>,
    /// The key's evaluations while hot, when the engine records traces (`report`, `--record`).
    pub trace: Option<Box<crate::key_trace::KeyTrace>>,
    /// A destination's clients and their request signals (None until one is counted).
    pub clients: Option<Box<Clients>>,
    /// The key's packets are watched (samples, short window): it came near a packet threshold.
    /// False for evidence started by request signals alone, which only counts clients.
    pub packets_watched: bool,
}

/// The header-field sketches of a hot destination key: what it receives now, and what it received
/// in its last quiet window (the reference a signature must differ from).
#[derive(Clone, Debug, Default)]
pub struct SigSketches {
    pub attack: SignatureSketch,
    pub normal: SignatureSketch,
    /// Packet time (ns) `attack` has been fed since.
    pub attack_since: u64,
    /// Packets per second of the reference window (`normal`).
    pub normal_pps: f64,
}

impl SigSketches {
    /// The signature of what `attack` holds at `now`, against `normal` when it has enough packets,
    /// with the normal traffic expected in `attack` (the reference's rate over the time it covers)
    /// left out of the shares.
    pub fn signature(&self, now: u64) -> Option<Signature> {
        let reference =
            (self.normal.known_samples() >= crate::signature::MIN_SAMPLES).then_some(&self.normal);
        let mut attack = self.attack.clone();
        if reference.is_some() {
            let secs = now.saturating_sub(self.attack_since) as f64 / 1e9;
            attack.expect_normal((self.normal_pps * secs) as u64);
        }
        // an empty signature says that nothing separates the attack from normal traffic; too few
        // packets with header fields to say anything (or flow records, which carry none) give none
        (attack.known_samples() >= crate::signature::MIN_SAMPLES)
            .then(|| attack.signature(reference))
    }

    /// The window of `window_s` seconds ending at `now` was quiet: what it held becomes the
    /// reference.
    pub fn quiet_window(&mut self, now: u64, window_s: f64) {
        if self.attack.known_samples() >= crate::signature::MIN_SAMPLES {
            std::mem::swap(&mut self.attack, &mut self.normal);
            self.normal_pps = self.normal.packets() as f64 / window_s.max(1e-9);
        }
        self.restart(now);
    }

    /// `attack` starts afresh at `now`.
    pub fn restart(&mut self, now: u64) {
        self.attack.clear();
        self.attack_since = now;
    }
}

impl Evidence {
    /// Empty evidence for a key of `scope`.
    pub fn new(scope: Scope) -> Self {
        Evidence {
            peers: TopK::new(SLOTS),
            dst_ports: TopK::new(SLOTS),
            src_ports: TopK::new(SLOTS),
            hosts: scope.is_subnet().then(|| TopK::new(SLOTS)),
            distinct: Hll::new(),
            seen: 0,
            max_rate: 1,
            burst: crate::window::Burst::default(),
            sig: scope
                .is_destination()
                .then(|| Box::new(SigSketches::default())),
            trace: None,
            clients: None,
            packets_watched: true,
        }
    }

    /// Evidence of a key near a request threshold only: its clients are counted, its packets not
    /// yet ([`Evidence::packets_watched`]).
    pub fn for_requests(scope: Scope) -> Self {
        Evidence {
            packets_watched: false,
            ..Evidence::new(scope)
        }
    }

    /// Counts what one request at this (destination) key asked for.
    pub fn add_detail(&mut self, kind: u8, text: &str) {
        self.clients.get_or_insert_default().add_detail(kind, text);
    }

    /// Counts a client's request signals at this (destination) key, at packet time `now` (ns).
    pub fn add_client(&mut self, ip: IpAddr, counts: crate::requests::clients::Counts, now: u64) {
        self.clients.get_or_insert_default().add(ip, counts, now);
    }

    /// The largest sampling rate any of this evidence's samples had (1: every packet seen).
    pub fn max_rate(&self) -> u32 {
        self.max_rate
    }

    /// Records a sampled packet seen by a key of `scope`, standing for `rate` summaries like it.
    /// The distinct-peer count takes its peer (what the aggregate's registers also saw does not
    /// count twice).
    /// Hosts inside a subnet key are taken from the samples unless `hosts_counted` (the aggregate
    /// counted them exactly: [`Evidence::add_host`]).
    #[inline]
    pub fn add_sample(&mut self, scope: Scope, p: &PacketSummary, rate: u32, hosts_counted: bool) {
        // by reference: choosing between two addresses by value compiles to a select per byte
        let (peer, own) = if scope.is_destination() {
            (&p.src, &p.dst)
        } else {
            (&p.dst, &p.src)
        };
        let peer_hash = Hll::hash(*peer);
        self.distinct.add_hash(peer_hash);
        let mut rate = rate.max(1);
        if rate == 1 && self.seen >= EXACT_PACKETS {
            // a key past its first packets, seen one packet at a time (a small aggregate, or a
            // summary at a time): one in SAMPLE, chosen by the packet, stands for SAMPLE
            let h = Hll::sample_mix(peer_hash, p.ts);
            if (h >> 59) as u32 & (SAMPLE - 1) != 0 {
                return;
            }
            rate = SAMPLE;
        }
        self.seen = self.seen.saturating_add(u64::from(rate));
        self.max_rate = self.max_rate.max(rate);
        let w = u64::from(p.weight.max(1)) * u64::from(rate);
        if let Some(sig) = &mut self.sig {
            sig.attack.observe_scaled(p, rate);
        }
        self.peers.add_weighted(ip_bits(*peer), w);
        if p.sport != 0 || p.dport != 0 {
            self.dst_ports.add_weighted(p.dport, w);
            self.src_ports.add_weighted(p.sport, w);
        }
        if let Some(h) = self.hosts.as_mut().filter(|_| !hosts_counted) {
            h.add_weighted(ip_bits(*own), w);
        }
    }

    /// Counts `packets` of `host` inside a subnet key (an aggregate's exact count).
    pub fn add_host(&mut self, host: IpAddr, packets: u64) {
        if let Some(h) = &mut self.hosts {
            h.add_counted(ip_bits(host), packets);
        }
    }

    /// Takes the distinct peers an aggregate counted besides its samples.
    pub fn merge_peers(&mut self, regs: &Hll) {
        self.distinct.merge(regs);
    }

    /// The guaranteed share of the heaviest host inside a subnet key (0 for host keys).
    pub fn top_host_share(&self) -> f64 {
        let Some(h) = &self.hosts else { return 0.0 };
        let top = h.top(1).first().map_or(0, |(_, c)| *c);
        top as f64 / h.total().max(1) as f64
    }

    /// The guaranteed share of the heaviest peer among the sampled packets (0 when no peer surely
    /// sent two: the one-packet sources of a spoofed flood).
    pub fn top_peer_share(&self) -> f64 {
        let top = self.peers.top(1).first().map_or(0, |(_, c)| *c);
        top as f64 / self.peers.total().max(1) as f64
    }

    /// Estimated distinct peers (sources of a destination key, destinations of a source key).
    pub fn distinct_peers(&self) -> u64 {
        self.distinct.estimate()
    }

    /// The `n` heaviest peers.
    pub fn top_peers(&self, n: usize) -> Vec<PeerCount> {
        self.peers
            .top(n)
            .into_iter()
            .map(|(ip, packets)| PeerCount {
                ip: bits_ip(ip),
                packets,
            })
            .collect()
    }

    /// The `n` heaviest destination ports.
    pub fn top_dst_ports(&self, n: usize) -> Vec<PortCount> {
        ports(&self.dst_ports, n)
    }

    /// The `n` heaviest source ports.
    pub fn top_src_ports(&self, n: usize) -> Vec<PortCount> {
        ports(&self.src_ports, n)
    }

    /// The `n` heaviest hosts inside a subnet key (empty for host keys).
    pub fn top_hosts(&self, n: usize) -> Vec<PeerCount> {
        self.hosts
            .as_ref()
            .map(|h| {
                h.top(n)
                    .into_iter()
                    .map(|(ip, packets)| PeerCount {
                        ip: bits_ip(ip),
                        packets,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// HyperLogLog with 2^10 one-byte registers: a distinct count in 1 KiB with a standard error of
/// 1.04/√1024 ≈ 3.3 %, exact-ish (linear counting) below a few thousand. The hash has a fixed seed so
/// the same capture gives the same count on every run.
#[derive(Clone, Debug)]
pub struct Hll {
    regs: Box<[u8; Hll::M]>,
}

/// An item's register and rank in every [`Hll`] ([`Hll::slot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HllSlot {
    idx: u16,
    rank: u8,
}

impl Hll {
    const BITS: u32 = 10;
    const M: usize = 1 << Hll::BITS;

    /// An empty counter.
    pub fn new() -> Self {
        Hll {
            regs: Box::new([0; Hll::M]),
        }
    }

    /// Counts `item`.
    #[inline]
    pub fn add(&mut self, ip: IpAddr) {
        self.add_hash(Hll::hash(ip));
    }

    /// The hash [`Hll::add`] counts `ip` by (fixed seed).
    #[inline]
    pub fn hash(ip: IpAddr) -> u64 {
        crate::key::Key::host(ip).mix(0x000d_157c)
    }

    /// The packet's own draw for sampling, from its peer's [`Hll::hash`] and its time: the same
    /// packets are chosen on every replay (its top bits decide, by the rate).
    #[inline]
    pub fn sample_mix(peer_hash: u64, ts: crate::time::Timestamp) -> u64 {
        (peer_hash ^ ts.0).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// Counts the item of hash `h` ([`Hll::hash`]).
    #[inline]
    pub fn add_hash(&mut self, h: u64) {
        self.add_slot(Hll::slot(h));
    }

    /// Where the item of hash `h` counts, in any counter: worked out once for an item counted in
    /// several.
    #[inline]
    pub fn slot(h: u64) -> HllSlot {
        let rest = h << Hll::BITS;
        HllSlot {
            idx: (h >> (64 - Hll::BITS)) as u16,
            rank: (rest.leading_zeros() + 1).min(64 - Hll::BITS + 1) as u8,
        }
    }

    /// Counts the item at `slot` ([`Hll::slot`]).
    #[inline]
    pub fn add_slot(&mut self, slot: HllSlot) {
        let r = &mut self.regs[usize::from(slot.idx) & (Hll::M - 1)];
        *r = (*r).max(slot.rank);
    }

    /// Counts every item `other` counted.
    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.regs.iter_mut().zip(other.regs.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// Forgets every item.
    pub fn clear(&mut self) {
        self.regs.fill(0);
    }

    /// Registers in a counter.
    pub const REGISTERS: usize = Hll::M;

    /// Its registers, as [`Hll::from_registers`] takes them (a bus batch carries them).
    pub fn registers(&self) -> &[u8] {
        &self.regs[..]
    }

    /// A counter with registers `regs`: None unless there are [`Hll::REGISTERS`] of them, each a
    /// rank [`Hll::slot`] can give.
    pub fn from_registers(regs: &[u8]) -> Option<Hll> {
        let max_rank = (64 - Hll::BITS + 1) as u8;
        let regs: [u8; Hll::M] = regs.try_into().ok()?;
        regs.iter().all(|&r| r <= max_rank).then(|| Hll {
            regs: Box::new(regs),
        })
    }

    /// The estimated number of distinct items added.
    pub fn estimate(&self) -> u64 {
        let m = Hll::M as f64;
        let sum: f64 = self.regs.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
        let zeros = self.regs.iter().filter(|&&r| r == 0).count();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        est.round() as u64
    }
}

impl Default for Hll {
    fn default() -> Self {
        Hll::new()
    }
}

/// An address as one integer: IPv6 as is, IPv4 mapped (`::ffff:a.b.c.d`).
#[inline]
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`ip_bits`] (an IPv4-mapped IPv6 address reads back as IPv4).
fn bits_ip(bits: u128) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(bits);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn ports(t: &TopK<u16>, n: usize) -> Vec<PortCount> {
    t.top(n)
        .into_iter()
        .map(|(port, packets)| PortCount { port, packets })
        .collect()
}

/// Engine state ([`crate::engine_state`]).
mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};
    use crate::key_trace::KeyTrace;
    use crate::signature::SignatureSketch;
    use crate::window::Burst;

    type R<T> = Result<T, EngineStateError>;

    impl<T: Copy + PartialEq + Ord + Fingerprint> TopK<T> {
        fn save(&self, e: &mut Enc, item: impl Fn(&mut Enc, T)) {
            e.usize(self.items.len());
            for ((t, c), err) in self.items.iter().zip(&self.counts).zip(&self.errors) {
                item(e, *t);
                e.var(*c);
                e.var(*err);
            }
            e.var(self.min_slot.map_or(0, |m| m as u64 + 1));
            e.var(self.unit);
        }

        fn load(d: &mut Dec, item: impl Fn(&mut Dec) -> R<T>) -> R<TopK<T>> {
            let n = d.len("a top-k list", 3)?;
            if n > SLOTS {
                return Err(d.corrupt(format!("a top-k list holds {n} items, more than {SLOTS}")));
            }
            let mut t = TopK::new(SLOTS);
            for _ in 0..n {
                let it = item(d)?;
                let count = d.count("a top-k count")?;
                let error = d.count("a top-k error")?;
                if error > count {
                    return Err(d.corrupt("a top-k count is below its error"));
                }
                t.hold(&it, t.items.len(), true);
                t.items.push(it);
                t.counts.push(count);
                t.errors.push(error);
            }
            t.min_slot = match d.usize("a top-k slot")? {
                0 => None,
                m if m <= n => Some(m - 1),
                m => return Err(d.corrupt(format!("top-k slot {} of {n} does not exist", m - 1))),
            };
            t.unit = d.count("a top-k unit")?.max(1);
            Ok(t)
        }
    }

    impl Hll {
        fn save(&self, e: &mut Enc) {
            e.bytes(&self.regs[..]);
        }

        fn load(d: &mut Dec) -> R<Hll> {
            let regs = d.bytes("a distinct count")?;
            let mut h = Hll::new();
            if regs.len() != h.regs.len() {
                return Err(d.corrupt(format!(
                    "a distinct count has {} registers, not {}",
                    regs.len(),
                    h.regs.len()
                )));
            }
            h.regs.copy_from_slice(regs);
            Ok(h)
        }
    }

    fn save_u128(e: &mut Enc, v: u128) {
        e.raw64(v as u64);
        e.raw64((v >> 64) as u64);
    }

    fn load_u128(d: &mut Dec) -> R<u128> {
        let lo = d.raw64("an address")?;
        let hi = d.raw64("an address")?;
        Ok(u128::from(hi) << 64 | u128::from(lo))
    }

    fn save_u16(e: &mut Enc, v: u16) {
        e.var(u64::from(v));
    }

    fn load_u16(d: &mut Dec) -> R<u16> {
        d.u16("a port")
    }

    impl Evidence {
        pub(crate) fn save(&self, e: &mut Enc) {
            self.peers.save(e, save_u128);
            self.dst_ports.save(e, save_u16);
            self.src_ports.save(e, save_u16);
            e.opt(self.hosts.as_ref(), |e, h| h.save(e, save_u128));
            self.distinct.save(e);
            e.var(self.seen);
            e.var(u64::from(self.max_rate));
            self.burst.save(e);
            e.opt(self.sig.as_ref(), |e, s| {
                s.attack.save(e);
                s.normal.save(e);
                e.var(s.attack_since);
                e.f64(s.normal_pps);
            });
            e.opt(self.trace.as_ref(), |e, t| t.save(e));
            e.opt(self.clients.as_ref(), |e, c| c.save(e));
            e.bool(self.packets_watched);
        }

        pub(crate) fn load(d: &mut Dec) -> R<Evidence> {
            let peers = TopK::load(d, load_u128)?;
            let dst_ports = TopK::load(d, load_u16)?;
            let src_ports = TopK::load(d, load_u16)?;
            let hosts = d.opt("the hosts of a subnet", |d| TopK::load(d, load_u128))?;
            let distinct = Hll::load(d)?;
            let seen = d.count("the packets of the evidence")?;
            let max_rate = u32::try_from(d.count("the sampling rate")?)
                .map_err(|_| d.corrupt("the sampling rate is out of range"))?;
            let burst = Burst::load(d)?;
            let sig = d.opt("the signature sketches", |d| {
                Ok(Box::new(SigSketches {
                    attack: SignatureSketch::load(d)?,
                    normal: SignatureSketch::load(d)?,
                    attack_since: d.count("the signature's start")?,
                    normal_pps: d.f64("the reference rate")?,
                }))
            })?;
            let trace = d.opt("a trace", |d| KeyTrace::load(d).map(Box::new))?;
            let clients = d.opt("the clients", |d| Clients::load(d).map(Box::new))?;
            let packets_watched = d.bool("whether packets are watched")?;
            Ok(Evidence {
                peers,
                dst_ports,
                src_ports,
                hosts,
                distinct,
                seen,
                max_rate,
                burst,
                sig,
                trace,
                clients,
                packets_watched,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_hitters_survive_a_long_tail() {
        let mut t = TopK::new(8);
        for i in 0..10_000u32 {
            t.add(i);
            if i % 3 == 0 {
                t.add(1_000_000);
            }
        }
        let top = t.top(1);
        assert_eq!(top[0].0, 1_000_000);
        assert!(top[0].1 >= 3334);
    }

    #[test]
    fn hll_counts_within_its_error() {
        for n in [10u32, 1000, 50_000, 1_000_000] {
            let mut h = Hll::new();
            for i in 0..n {
                h.add(IpAddr::from(i.to_be_bytes()));
                h.add(IpAddr::from(i.to_be_bytes()));
            }
            let e = h.estimate() as f64;
            let err = (e - f64::from(n)).abs() / f64::from(n);
            assert!(
                err < 0.1 || (e - f64::from(n)).abs() <= 1.0,
                "{n}: estimated {e}"
            );
        }
    }

    #[test]
    fn sampled_evidence_still_names_heavy_sources() {
        use crate::decode::{Fragment, PacketSummary};
        let mut ev = Evidence::new(Scope::DstHost);
        let key = crate::key::Key::host(IpAddr::from([198, 51, 100, 10]));
        let mut batch = Vec::new();
        for i in 0..100_000u32 {
            let src = if i % 4 == 0 {
                [203, 0, 113, 5]
            } else {
                (i.wrapping_mul(2_654_435_761) | 1).to_be_bytes()
            };
            let p = PacketSummary {
                ts: crate::time::Timestamp(u64::from(i)),
                src: IpAddr::from(src),
                dst: IpAddr::from([198, 51, 100, 10]),
                proto: 17,
                sport: 4444,
                dport: 53,
                tcp_flags: 0,
                tcp_num: 0,
                wire_len: 100,
                fragment: Fragment::None,
                weight: 1,
                hdr: crate::decode::HeaderFields::UNKNOWN,
            };
            batch.push(p);
            if batch.len() == 256 {
                // the way the engine feeds it: an aggregate per run, sampled at the evidence's rate
                let mut agg = crate::aggregate::ScopeAgg::new();
                let e = agg.insert(key, 0, true, 1, false);
                for p in &batch {
                    agg.add(e, p, p.ts, crate::window::PacketClass::of(p), || {
                        crate::aggregate::PeerDraw::new(Hll::hash(p.src), p.ts)
                    });
                }
                for (_, d) in agg.take().iter() {
                    for s in d.samples {
                        ev.add_sample(Scope::DstHost, &s.p, s.rate, false);
                    }
                    if let Some(r) = d.regs {
                        ev.merge_peers(r);
                    }
                }
                batch.clear();
            }
        }
        assert_eq!(ev.max_rate(), SAMPLE);
        let top = ev.top_peers(3);
        assert_eq!(top[0].ip, IpAddr::from([203, 0, 113, 5]));
        assert!(
            (20_000..30_000).contains(&top[0].packets),
            "{}",
            top[0].packets
        );
        assert_eq!(top.len(), 1, "tail named: {top:?}");
        let d = ev.distinct_peers();
        assert!((70_000..80_000).contains(&d), "distinct {d}");
    }

    /// The reference: Space-Saving as first written (linear find, `min_by_key` over all slots).
    fn naive_top(items: &[(u32, u64)], k: usize) -> Vec<(u32, u64, u64)> {
        let mut slots: Vec<(u32, u64, u64)> = Vec::new();
        for &(item, w) in items {
            if let Some(s) = slots.iter_mut().find(|s| s.0 == item) {
                s.1 += w;
            } else if slots.len() < k {
                slots.push((item, w, 0));
            } else if let Some(min) = slots.iter_mut().min_by_key(|s| s.1) {
                *min = (item, min.1 + w, min.1);
            }
        }
        slots
    }

    #[test]
    fn remembered_minimum_picks_the_same_slots_as_a_full_scan() {
        let mut rng = 0x1234_5678_9abc_def1u64;
        for round in 0..200 {
            // small k, and every tenth round the evidence's own 32 (all bits of a bucket's mask)
            let k = if round % 10 == 9 {
                SLOTS
            } else {
                1 + round % 9
            };
            let mut seq = Vec::new();
            for _ in 0..2000 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // a mix of heavy items, a long tail and occasional weighted samples
                let item = if rng.is_multiple_of(3) {
                    (rng >> 8) as u32 % 4
                } else {
                    (rng >> 8) as u32 % 500
                };
                let w = if rng.is_multiple_of(7) { 16 } else { 1 };
                seq.push((item, w));
            }
            let mut t = TopK::new(k);
            for &(item, w) in &seq {
                t.add_weighted(item, w);
            }
            let got: Vec<(u32, u64, u64)> = t
                .items
                .iter()
                .zip(t.counts.iter().zip(&t.errors))
                .map(|(i, (c, e))| (*i, *c, *e))
                .collect();
            assert_eq!(got, naive_top(&seq, k), "round {round}");
        }
    }

    #[test]
    fn top_is_sorted_and_truncated() {
        let mut t = TopK::new(4);
        for (x, n) in [(5u16, 3), (7, 9), (1, 3)] {
            for _ in 0..n {
                t.add(x);
            }
        }
        assert_eq!(t.top(2), vec![(7, 9), (1, 3)]);
    }

    #[test]
    fn a_uniform_tail_reports_nothing_rather_than_inflated_counts() {
        let mut t = TopK::new(8);
        for i in 0..100_000u32 {
            t.add(i);
        }
        assert!(t.top(5).is_empty(), "{:?}", t.top(5));
    }
}
