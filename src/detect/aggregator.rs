//! The aggregating half of counting: packets in, one [`TickAggregate`] per tick out, counted into
//! the tables by [`Engine::absorb`](super::Engine::absorb). It runs where packets arrive — the
//! pipeline's router, before anything crosses a channel, or inside an engine fed one summary at a
//! time — so a flood costs the tables one update per key and tick, and shards receive aggregates,
//! never packets.
//!
//! Per packet: its keys (one compare for both destination scopes while the destination repeats),
//! the counters added to its entries, and source admission: the count-min sketch sees every
//! packet in order, and a source key gets an entry only when admitted or possibly tracked. Which
//! keys may be tracked is known exactly when the tables are at hand ([`Tracking::Tables`]: the
//! engine marks keys as they enter and rebuilds the marks after evictions); a router, which cannot
//! see the shards' tables, hints every source key that had an entry in the last `idle_windows + 2`
//! windows ([`Tracking::Recent`], fixed-size bitmaps) — a superset of what a table still holds, but
//! for a key that stays in its table with no packet at all for that long (an alert that outlives
//! its traffic by minutes), whose packets then wait for admission again.
//!
//! An aggregate is bounded ([`crate::aggregate::MAX_ENTRIES`], [`crate::aggregate::MAX_SAMPLES`]):
//! a tick with more keys or samples leaves in parts, at points the packets alone decide.

use std::sync::Arc;

use super::ScopeMask;
use crate::aggregate::{PeerDraw, ScopeAgg, ScopeAggregate};
use crate::attribution::Hll;
use crate::clock::Stamp;
use crate::config::DetectConfig;
use crate::decode::{tcp_flags, PacketSummary};
use crate::key::{Key, Scope, Subnets};
use crate::requests::conn::{ConnEvent, Flow, Tracker};
use crate::table::SourceAdmission;
use crate::window::PacketClass;

/// No entry for a scope the packet is not counted in.
const NO_ENTRY: u32 = u32::MAX;

/// How the aggregator knows which source keys may be in a table.
#[derive(Debug)]
pub enum Tracking {
    /// The engine that owns this aggregator marks and rebuilds the hints from its own tables.
    Tables,
    /// A router's: the source keys that had an entry (were admitted, or counted as possibly
    /// tracked) in the last `windows` windows, as a ring of hint bitmaps, one per `generation`
    /// windows. Fixed size (8 KiB a bitmap), whatever the input.
    Recent {
        ring: Vec<Vec<u64>>,
        windows: u64,
        generation: u64,
        /// The generation the ring was last moved to.
        current: u64,
    },
}

impl Tracking {
    /// A router's hints for keys kept `windows` windows.
    fn recent(windows: u64) -> Tracking {
        let windows = windows.max(1);
        let generation = (windows / 8).max(1);
        let len = windows.div_ceil(generation) as usize + 1;
        Tracking::Recent {
            ring: vec![vec![0; SourceAdmission::HINT_WORDS]; len],
            windows,
            generation,
            current: 0,
        }
    }
}

/// Every hint any bitmap of `ring` holds.
fn union(ring: &[Vec<u64>]) -> Vec<u64> {
    let mut all = vec![0u64; SourceAdmission::HINT_WORDS];
    for bits in ring {
        for (a, b) in all.iter_mut().zip(bits) {
            *a |= b;
        }
    }
    all
}

/// The packets of one tick (or of a part of one, when something had to be counted mid-tick),
/// aggregated per scope and key.
#[derive(Debug, Default)]
pub struct TickAggregate {
    pub epoch: u64,
    pub tick: u64,
    /// Per scope, the keys in the order they first appeared.
    pub scopes: [ScopeAggregate; 4],
    /// Packets of the source scopes held back by admission (counted where they would have been).
    pub deferred: [u64; 2],
    /// Packets aggregated.
    pub packets: u64,
    /// The latest packet time in it.
    pub last_ts: Option<crate::time::Timestamp>,
}

/// A destination, the destination scopes it was counted in, their entries (or [`NO_ENTRY`]) and
/// the slot of the host inside its dst_subnet entry: valid until the aggregate is taken.
type DstEntries = (std::net::IpAddr, u8, [u32; 2], u32);

/// Bits of a slot's index in [`Aggregator::dst_cache`]: ordinary traffic interleaves the packets of
/// many destinations in a tick (a site's replies go to each of its clients), and each found again
/// there skips two lookups and a host's. 1 024 slots of 40 bytes.
const DST_CACHE_BITS: u32 = 10;
const DST_CACHE_SLOTS: usize = 1 << DST_CACHE_BITS;

/// The slot of `dst` in [`Aggregator::dst_cache`]: the top bits of a multiplicative hash, so the
/// hosts of one subnet, which differ in their last bits, spread over the slots.
#[inline]
fn dst_cache_slot(dst: std::net::IpAddr) -> usize {
    let folded = match dst {
        std::net::IpAddr::V4(a) => u32::from(a),
        std::net::IpAddr::V6(a) => {
            let x = u128::from(a);
            let y = (x >> 64) as u64 ^ x as u64;
            (y >> 32) as u32 ^ y as u32
        }
    };
    (folded.wrapping_mul(0x9e37_79b1) >> (32 - DST_CACHE_BITS)) as usize
}

/// Aggregates packets until [`Aggregator::take`].
#[derive(Debug)]
pub struct Aggregator {
    subnets: Subnets,
    pending: [ScopeAgg; 4],
    /// (epoch, tick) of what is pending.
    at: Option<(u64, u64)>,
    /// The destination of the last packet, its destination scopes, their entries and the
    /// dst_subnet entry's slot for that host.
    last_dst: Option<DstEntries>,
    /// Destinations met since what is pending began, by [`dst_cache_slot`] (an entry counts
    /// only when its generation is `dst_generation`): a flood's victim between packets of other
    /// traffic, or a server among its clients, finds its entries here, not through two lookups
    /// and a host's.
    dst_cache: Box<[(u64, Option<DstEntries>)]>,
    /// Bumped when what is pending is taken: every cached destination is stale from then on.
    dst_generation: u64,
    pub(super) admission: [SourceAdmission; 2],
    pub(super) admission_epoch: u64,
    tracking: Tracking,
    deferred: [u64; 2],
    packets: u64,
    last_ts: Option<crate::time::Timestamp>,
    window_ns: u64,
    tick_ns: u64,
    /// The last tick looked up: [start, end) in ns and its (epoch, tick).
    tick_cache: (u64, u64, (u64, u64)),
    /// Connection state for the request signals, and what it said for the packet at hand.
    conns: Tracker,
    conn_events: Vec<(ConnEvent, Flow, u8)>,
    /// The tick whose aggregate last ran the tracker's per-tick work.
    conns_tick: u64,
}

impl Aggregator {
    /// An aggregator for `cfg` whose source hints come from `tracking`.
    pub fn new(cfg: &DetectConfig, tracking: Tracking) -> Aggregator {
        let admission = super::admission_for(cfg);
        Aggregator {
            subnets: Subnets::new(cfg.subnet_v4, cfg.subnet_v6),
            pending: Default::default(),
            at: None,
            last_dst: None,
            dst_cache: vec![(0, None); DST_CACHE_SLOTS].into_boxed_slice(),
            dst_generation: 1,
            admission: [admission.clone(), admission],
            admission_epoch: 0,
            tracking,
            deferred: [0; 2],
            packets: 0,
            last_ts: None,
            window_ns: cfg.window_ns().max(1),
            tick_ns: cfg.tick_ns().max(1),
            tick_cache: (1, 0, (0, 0)),
            conns: Tracker::new(cfg.hash_seed),
            conn_events: Vec::new(),
            conns_tick: u64::MAX,
        }
    }

    /// The connection tracker's counters.
    pub fn tracker_stats(&self) -> crate::requests::conn::TrackerStats {
        self.conns.stats()
    }

    /// A router's aggregator: source hints from the keys admitted in recent windows.
    pub fn for_router(cfg: &DetectConfig) -> Aggregator {
        Aggregator::new(cfg, Tracking::recent(cfg.idle_windows.saturating_add(2)))
    }

    /// Takes a reloaded configuration's admission level (the rest must not change on reload).
    pub fn reconfigure(&mut self, cfg: &DetectConfig) {
        let min_count = super::admission_min_count(cfg);
        for a in &mut self.admission {
            a.set_min_count(min_count);
        }
        if let Tracking::Recent { windows, ring, .. } = &self.tracking {
            let wanted = cfg.idle_windows.saturating_add(2).max(1);
            if *windows != wanted {
                // a new span: every hint of the old ring carries over into the new one's current
                // bitmap (hints may only be too many, never too few)
                let merged = union(ring);
                let mut fresh = Tracking::recent(wanted);
                if let Tracking::Recent {
                    ring,
                    generation,
                    current,
                    ..
                } = &mut fresh
                {
                    *current = self.admission_epoch / *generation;
                    let len = ring.len() as u64;
                    if let Some(slot) = ring.get_mut((*current % len) as usize) {
                        *slot = merged;
                    }
                }
                self.tracking = fresh;
            }
        }
    }

    /// True when what is pending must be taken before the next packet ([`ScopeAgg::is_full`]).
    #[inline]
    pub fn is_full(&self) -> bool {
        let [a, b, c, d] = &self.pending;
        a.is_full() | b.is_full() | c.is_full() | d.is_full()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.at.is_none()
    }

    /// The (epoch, tick) `ts` falls in, and whether what is pending belongs to another one (it
    /// must be taken first).
    #[inline]
    pub fn tick_of(&mut self, stamp: Stamp) -> ((u64, u64), bool) {
        let t = stamp.at.0;
        let (start, end, cached) = self.tick_cache;
        let at = if t >= start && t < end {
            // what is pending was added at the cached tick, if anything is (only this sets the
            // cache, and add follows it): nothing to compare
            return (cached, false);
        } else {
            // a tick divides the window: one epoch per tick
            let tick = t / self.tick_ns;
            let start = tick.saturating_mul(self.tick_ns);
            let at = (t / self.window_ns, tick);
            self.tick_cache = (start, start.saturating_add(self.tick_ns), at);
            at
        };
        (at, self.at.is_some_and(|p| p != at))
    }

    /// Adds `p` (stamped `stamp` by the stream's clock) to the scopes of `mask`. What is pending
    /// must be of the same tick ([`Aggregator::tick_of`]).
    #[inline]
    pub fn add(&mut self, p: &PacketSummary, stamp: Stamp, mask: ScopeMask, at: (u64, u64)) {
        self.at = Some(at);
        self.packets += 1;
        if self.last_ts.is_none_or(|t| stamp.at > t) {
            self.last_ts = Some(stamp.at);
        }
        let (epoch, _) = at;
        if epoch != self.admission_epoch {
            self.admission_epoch = epoch;
            for a in self.admission.iter_mut() {
                a.new_window();
            }
            self.rebuild_hints(epoch);
        }
        let ts = stamp.at.0;
        let class = PacketClass::of(p);
        let dst_mask = mask.0 & ScopeMask::DESTINATIONS.0;
        if dst_mask != 0 {
            let (entries, host) = match self.last_dst {
                // a flood's packets: one compare for both destination scopes
                Some((dst, m, e, h)) if dst == p.dst && m == dst_mask => (e, h),
                // ordinary traffic: a destination met earlier in the aggregate
                _ => match self.cached_dst(p.dst, dst_mask) {
                    Some((e, h)) => {
                        self.last_dst = Some((p.dst, dst_mask, e, h));
                        (e, h)
                    }
                    None => self.dst_entries(p, mask, dst_mask, ts),
                },
            };
            // the peer of destination keys, drawn once for both (sampling, distinct sources)
            let mut draw = None;
            let [host_agg, subnet_agg, ..] = &mut self.pending;
            if entries[0] != NO_ENTRY {
                host_agg.add(entries[0], p, stamp.at, class, || {
                    *draw.get_or_insert_with(|| PeerDraw::new(Hll::hash(p.src), stamp.at))
                });
            }
            if entries[1] != NO_ENTRY {
                subnet_agg.add(entries[1], p, stamp.at, class, || {
                    *draw.get_or_insert_with(|| PeerDraw::new(Hll::hash(p.src), stamp.at))
                });
                if host != NO_ENTRY {
                    subnet_agg.count_host(host, u64::from(p.weight));
                }
            }
        }
        if mask.0 & ScopeMask::SOURCES.0 != 0 {
            // both sketches admit at one level (one configuration's minimum, set on both by
            // new and reconfigure): worked out once
            let level = self.admission[0].level(stamp.load);
            debug_assert_eq!(level, self.admission[1].level(stamp.load));
            let offer = (SourceAdmission::weight(p.weight), level);
            if mask.contains(Scope::SrcHost) {
                let key = Key::host(p.src);
                self.source(0, key, p, class, stamp, offer);
            }
            if mask.contains(Scope::SrcSubnet) {
                let key = self.subnets.of(p.src);
                self.source(1, key, p, class, stamp, offer);
            }
        }
        // a SYN never creates connection state: a SYN flood stops at this compare (a later
        // fragment has no TCP header to track either)
        if class.is_tcp_after_syn() && self.conns.wants(p) {
            self.connections(p, ts, mask);
        }
    }

    /// Starts loading the admission counters `p`'s source keys will use when `p` is added a few
    /// packets from now ([`Aggregator::add`]).
    #[inline]
    pub fn prefetch_sources(&self, p: &PacketSummary) {
        let [host, subnet] = &self.admission;
        host.prefetch(SourceAdmission::slots(Key::host(p.src)));
        subnet.prefetch(SourceAdmission::slots(self.subnets.of(p.src)));
    }

    /// Notes what the request head `head` of `p` (just added) asked for at `p`'s destination
    /// keys, when `p` was data from the client of an established connection (a spoofed packet
    /// shaped like a request names nothing).
    pub fn add_head(
        &mut self,
        p: &PacketSummary,
        mask: ScopeMask,
        head: crate::requests::RequestHead,
    ) {
        if p.tcp_flags & tcp_flags::SYN != 0 || !self.conns.last_was_client_data() {
            return;
        }
        let keys = [Key::host(p.dst), self.subnets.of(p.dst)];
        let texts = [head.path, head.host, head.user_agent, head.fingerprint];
        for (i, (scope, key)) in [Scope::DstHost, Scope::DstSubnet]
            .into_iter()
            .zip(keys)
            .enumerate()
        {
            if !mask.contains(scope) {
                continue;
            }
            let Some(agg) = self.pending.get_mut(i) else {
                continue;
            };
            let Some(entry) = agg.find(key) else {
                continue;
            };
            for (kind, text) in texts.iter().enumerate() {
                if let Some(t) = text {
                    agg.add_detail(entry, kind as u8, t.clone());
                }
            }
        }
    }

    /// Feeds the connection tracker a packet it wants and counts what it says.
    #[inline(never)]
    fn connections(&mut self, p: &PacketSummary, ts: u64, mask: ScopeMask) {
        let events = &mut self.conn_events;
        self.conns
            .take(p, ts, mask.0, &mut |e, f, m| events.push((e, *f, m)));
        if !self.conn_events.is_empty() {
            self.count_connection_events(ts);
        }
    }

    /// The tracker's per-tick work (heads held open, expiry) at packet time `now`, counted into
    /// what is pending.
    fn tick_connections(&mut self, now: u64) {
        let events = &mut self.conn_events;
        self.conns.tick(now, &mut |e, f, m| events.push((e, *f, m)));
        if !self.conn_events.is_empty() {
            self.count_connection_events(now);
        }
    }

    /// Counts the request signals the tracker reported, for the server's destination keys and the
    /// client's source keys (where the client's packets count: source keys are admitted by their
    /// packets, as always).
    #[cold]
    fn count_connection_events(&mut self, ts: u64) {
        let events = std::mem::take(&mut self.conn_events);
        for &(e, flow, m) in &events {
            let which = match e {
                ConnEvent::Request => 0,
                ConnEvent::Handshake => 1,
                ConnEvent::HeldSecond => 2,
            };
            let mask = ScopeMask(m);
            // the server's destination entries, when one of its packets just found or made them
            let cached = self.cached_dst(flow.server, m & ScopeMask::DESTINATIONS.0);
            let keys = [
                (Scope::DstHost, Key::host(flow.server)),
                (Scope::DstSubnet, self.subnets.of(flow.server)),
                (Scope::SrcHost, Key::host(flow.client)),
                (Scope::SrcSubnet, self.subnets.of(flow.client)),
            ];
            for (i, (scope, key)) in keys.into_iter().enumerate() {
                if !mask.contains(scope) {
                    continue;
                }
                let Some(agg) = self.pending.get_mut(i) else {
                    continue;
                };
                let entry = if i < 2 {
                    // (a destination's entries are all admitted)
                    match cached.map(|(e, _)| e[i]).filter(|x| *x != NO_ENTRY) {
                        Some(x) => x,
                        None => match agg.find(key) {
                            Some(x) if agg.admitted(x) => x,
                            _ => agg.insert(key, ts, true, 1, false),
                        },
                    }
                } else {
                    // a client's requests count where its packets count: in its entry, or in
                    // one that counts only if its key is tracked (what the packet path does for
                    // a key it did not admit); a client never admitted for its packets is not
                    // given a key for its requests (a destination's client list names it)
                    let tracked = self
                        .admission
                        .get(i - 2)
                        .is_some_and(|a| a.may_be_tracked(SourceAdmission::slots(key)));
                    match agg.find(key) {
                        Some(x) => x,
                        None if tracked => agg.insert(key, ts, false, 1, false),
                        None => continue,
                    }
                };
                let client = (i < 2).then_some(flow.client);
                agg.add_request(entry, which, 1, client);
            }
        }
        self.conn_events = events;
        self.conn_events.clear();
    }

    /// The entries of `p`'s destination keys when neither the last destination nor the cache has
    /// them: found or made, then remembered in both.
    #[cold]
    fn dst_entries(
        &mut self,
        p: &PacketSummary,
        mask: ScopeMask,
        dst_mask: u8,
        ts: u64,
    ) -> ([u32; 2], u32) {
        let mut e = [NO_ENTRY; 2];
        let keys = [Key::host(p.dst), self.subnets.of(p.dst)];
        for (i, scope) in [Scope::DstHost, Scope::DstSubnet].into_iter().enumerate() {
            if let (true, Some(agg)) = (mask.contains(scope), self.pending.get_mut(i)) {
                e[i] = match agg.find(keys[i]) {
                    Some(x) => x,
                    None => agg.insert(keys[i], ts, true, 1, false),
                };
            }
        }
        let host = match &mut self.pending[1] {
            agg if e[1] != NO_ENTRY => agg.host_slot(e[1], p.dst).unwrap_or(NO_ENTRY),
            _ => NO_ENTRY,
        };
        let entries = (p.dst, dst_mask, e, host);
        self.last_dst = Some(entries);
        if let Some(c) = self.dst_cache.get_mut(dst_cache_slot(p.dst)) {
            *c = (self.dst_generation, Some(entries));
        }
        (e, host)
    }

    /// The entries of destination `dst` in the scopes of `dst_mask` and the slot of the host in
    /// its dst_subnet entry, when the cache still holds them from this aggregate.
    #[inline]
    fn cached_dst(&self, dst: std::net::IpAddr, dst_mask: u8) -> Option<([u32; 2], u32)> {
        match self.dst_cache.get(dst_cache_slot(dst)) {
            Some(&(generation, Some((d, m, e, host))))
                if generation == self.dst_generation && d == dst && m == dst_mask =>
            {
                Some((e, host))
            }
            _ => None,
        }
    }

    /// Counts `p` for source key `key` of source scope `i` (0: host, 1: subnet); `offer` is its
    /// weight and the admission level ([`SourceAdmission::offer_at`]).
    #[inline(always)]
    fn source(
        &mut self,
        i: usize,
        key: Key,
        p: &PacketSummary,
        class: PacketClass,
        stamp: Stamp,
        (weight, level): (u16, u16),
    ) {
        let (Some(agg), Some(adm)) = (self.pending.get_mut(2 + i), self.admission.get_mut(i))
        else {
            return;
        };
        // admission counts every packet, tracked or not
        let slots = SourceAdmission::slots(key);
        let admit = adm.offer_at(slots, weight, level);
        // a key with an entry has its hint set (here, or when it entered a table): most packets
        // of a spoofed flood stop here, without a lookup
        if !admit && !adm.may_be_tracked(slots) {
            if let Some(d) = self.deferred.get_mut(i) {
                *d += 1;
            }
            return;
        }
        if admit {
            adm.mark_tracked(slots);
        }
        let ts = stamp.at.0;
        let entry = match agg.find(key) {
            // a key first seen as possibly tracked, now admitted: what follows may enter the
            // table even if what came before may not
            Some(e) if admit && !agg.admitted(e) => agg.insert(key, ts, true, 1, false),
            Some(e) => e,
            None => agg.insert(key, ts, admit, 1, false),
        };
        agg.add(entry, p, stamp.at, class, || {
            PeerDraw::new(Hll::hash(p.dst), stamp.at)
        });
        if i == 1 {
            if let Some(h) = agg.host_slot(entry, p.src) {
                agg.count_host(h, u64::from(p.weight));
            }
        }
    }

    /// At a new window: a router's hints become the keys that had entries in its recent windows.
    fn rebuild_hints(&mut self, epoch: u64) {
        let Tracking::Recent {
            ring,
            generation,
            current,
            ..
        } = &mut self.tracking
        else {
            return;
        };
        let g = epoch / *generation;
        if g == *current {
            return;
        }
        let len = ring.len() as u64;
        if g < *current || g - *current >= len {
            // time went back (a second file), or so far ahead that every bitmap is stale; the
            // latest keys stay hinted
            let last = (*current % len) as usize;
            for (i, bits) in ring.iter_mut().enumerate() {
                if i != last {
                    bits.fill(0);
                }
            }
            ring.swap(last, (g % len) as usize);
        } else {
            for n in *current + 1..=g {
                if let Some(bits) = ring.get_mut((n % len) as usize) {
                    bits.fill(0);
                }
            }
        }
        *current = g;
        let hints = union(ring);
        for adm in self.admission.iter_mut() {
            adm.set_tracked(&hints);
        }
    }

    /// Everything pending, as one aggregate (empty when nothing is).
    pub fn take(&mut self) -> TickAggregate {
        if let (Some((_, tick)), Some(now)) = (self.at, self.last_ts) {
            // once per tick, at its last packet (a tick that leaves in parts: at the first)
            if tick != self.conns_tick {
                self.conns_tick = tick;
                self.tick_connections(now.0);
            }
        }
        let (epoch, tick) = self.at.take().unwrap_or_default();
        self.last_dst = None;
        self.dst_generation += 1;
        let scopes = [0, 1, 2, 3].map(|s| self.pending[s].take());
        if let Tracking::Recent { ring, current, .. } = &mut self.tracking {
            // every source key with an entry stays hinted: admitted now, or counted because it
            // may be tracked (traffic under the admission level keeps a tracked key's hint)
            let len = ring.len() as u64;
            if let Some(bits) = ring.get_mut((*current % len) as usize) {
                for scope in &scopes[2..] {
                    for e in scope.entries() {
                        let b = SourceAdmission::hint_bit(e.key);
                        if let Some(w) = bits.get_mut(b / 64) {
                            *w |= 1 << (b % 64);
                        }
                    }
                }
            }
        }
        TickAggregate {
            epoch,
            tick,
            scopes,
            deferred: std::mem::take(&mut self.deferred),
            packets: std::mem::take(&mut self.packets),
            last_ts: self.last_ts.take(),
        }
    }

    /// [`Aggregator::take`] shared (a router hands the same aggregate to every shard).
    pub fn take_shared(&mut self) -> Arc<TickAggregate> {
        Arc::new(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use crate::window::Signal;
    use std::collections::HashMap;

    fn pkt(dst: u32, src: u32) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(5_000_000_000),
            src: std::net::Ipv4Addr::from(src).into(),
            dst: std::net::Ipv4Addr::from(dst).into(),
            proto: 17,
            sport: 4000,
            dport: 53,
            wire_len: 80,
            ..PacketSummary::default()
        }
    }

    /// Adds `p` to `agg` as packet `n` of one tick (the window's load `n + 1`).
    fn add_in_one_tick(agg: &mut Aggregator, p: &PacketSummary, n: u32) {
        let stamp = Stamp {
            at: p.ts,
            load: u64::from(n) + 1,
        };
        let (at, other) = agg.tick_of(stamp);
        assert!(!other, "one tick");
        agg.add(p, stamp, ScopeMask::ALL, at);
    }

    #[test]
    fn a_tick_with_too_many_keys_leaves_in_bounded_parts_that_count_every_packet() {
        let cfg = DetectConfig::default();
        let mut agg = Aggregator::for_router(&cfg);
        let (mut parts, mut packets, mut keys) = (0, 0, 0);
        // a carpet bombing of a /16 in one tick: 65 536 destinations, one packet each
        for i in 0..65_536u32 {
            add_in_one_tick(&mut agg, &pkt(0x0a00_0000 | i, 0xcb00_7105), i);
            if agg.is_full() {
                let t = agg.take();
                assert!(t.scopes[0].entries().len() <= crate::aggregate::MAX_ENTRIES);
                parts += 1;
                packets += t.packets;
                keys += t.scopes[0].entries().len();
            }
        }
        let t = agg.take();
        packets += t.packets;
        keys += t.scopes[0].entries().len();
        // a part leaves each time the destinations fill it, and a taken part starts empty
        assert_eq!(parts, 65_536 / crate::aggregate::MAX_ENTRIES);
        assert_eq!((packets, keys), (65_536, 65_536));
    }

    #[test]
    fn interleaved_destinations_count_in_their_own_entries_in_every_part() {
        let cfg = DetectConfig::default();
        let mut agg = Aggregator::for_router(&cfg);
        // 3 000 destinations in 15 /24s, far more than the destination cache has slots (they
        // share and overwrite slots), visited in turn three times; what is pending is taken after
        // the first round, so the second part must not count into the first part's entries
        let dsts: Vec<u32> = (0..3_000u32)
            .map(|i| 0x0a00_0000 | (i / 200) << 8 | (i % 200))
            .collect();
        let mut keys: HashMap<Key, u64> = HashMap::new();
        let mut hosts: HashMap<std::net::IpAddr, u64> = HashMap::new();
        let mut collect = |t: TickAggregate| {
            for scope in &t.scopes[..2] {
                for (e, left) in scope.iter() {
                    *keys.entry(e.key).or_default() += e.counts().get(Signal::Packets);
                    assert!(e.hosts_exact || e.key.is_host(), "{:?}", e.key);
                    for h in left.hosts {
                        *hosts.entry(h.host).or_default() += h.packets;
                    }
                }
            }
        };
        let mut n = 0;
        for round in 0..3 {
            for &d in &dsts {
                add_in_one_tick(&mut agg, &pkt(d, 0xcb00_7105), n);
                n += 1;
                assert!(!agg.is_full());
            }
            if round == 0 {
                collect(agg.take());
            }
        }
        collect(agg.take());
        let subnet_of = |d: u32| Key::V4 {
            addr: d & 0xffff_ff00,
            prefix: 24,
        };
        for &d in &dsts {
            let ip = std::net::IpAddr::from(std::net::Ipv4Addr::from(d));
            assert_eq!(keys.get(&Key::host(ip)), Some(&3), "{ip}");
            assert_eq!(keys.get(&subnet_of(d)), Some(&600), "{ip}");
            assert_eq!(hosts.get(&ip), Some(&3), "{ip}");
        }
        assert_eq!(keys.len(), 3_000 + 15);
    }

    #[test]
    fn a_destination_met_under_other_scopes_is_not_counted_in_the_cached_ones() {
        let cfg = DetectConfig::default();
        let mut agg = Aggregator::for_router(&cfg);
        let (d1, d2) = (0x0a00_0101, 0x0a00_0202);
        let mut add = |dst: u32, mask: ScopeMask, n: u64| {
            let p = pkt(dst, 0xcb00_7105);
            let stamp = Stamp {
                at: p.ts,
                load: n + 1,
            };
            let (at, _) = agg.tick_of(stamp);
            agg.add(&p, stamp, mask, at);
        };
        // d1 in both destination scopes, then d2 (d1 is no longer the last destination, only in
        // the cache), then d1 in its host scope alone: its subnet must not count that packet
        add(d1, ScopeMask::ALL, 0);
        add(d2, ScopeMask::ALL, 1);
        add(d1, ScopeMask(0b0001), 2);
        let t = agg.take();
        let count = |scope: usize, key: Key| {
            t.scopes[scope]
                .iter()
                .find(|(e, _)| e.key == key)
                .map(|(e, _)| e.counts().get(Signal::Packets))
        };
        let ip = std::net::IpAddr::from(std::net::Ipv4Addr::from(d1));
        assert_eq!(count(0, Key::host(ip)), Some(2));
        let subnet = Key::V4 {
            addr: d1 & 0xffff_ff00,
            prefix: 24,
        };
        assert_eq!(count(1, subnet), Some(1));
    }

    #[test]
    fn a_tick_with_too_many_samples_leaves_in_a_part_when_they_fill_it() {
        let cfg = DetectConfig::default();
        let mut agg = Aggregator::for_router(&cfg);
        // 100 destinations, 400 packets each in one tick: each destination is under the 1 024
        // summaries at which its sampling thins, so every packet is a sample of its host key
        let mut parts = Vec::new();
        for i in 0..40_000u32 {
            add_in_one_tick(&mut agg, &pkt(0x0a00_0000 | (i % 100), 0xcb00_7105), i);
            if agg.is_full() {
                parts.push((i, agg.take()));
            }
        }
        let rest = agg.take();
        let samples = |t: &TickAggregate| -> usize {
            t.scopes[0].iter().map(|(_, d)| d.samples.count()).sum()
        };
        let [(at, part)] = &parts[..] else {
            panic!("{} parts", parts.len());
        };
        assert_eq!(*at as usize + 1, crate::aggregate::MAX_SAMPLES);
        assert_eq!(samples(part), crate::aggregate::MAX_SAMPLES);
        assert_eq!(part.packets + rest.packets, 40_000);
        assert_eq!(samples(&rest), 40_000 - crate::aggregate::MAX_SAMPLES);
    }

    #[test]
    fn a_router_keeps_hinting_a_source_with_traffic_under_the_admission_level() {
        let cfg = DetectConfig {
            idle_windows: 8,
            ..DetectConfig::default()
        };
        let mut agg = Aggregator::for_router(&cfg);
        let heavy = 0xcb00_7105;
        let key = Key::host(std::net::Ipv4Addr::from(heavy).into());
        let slots = SourceAdmission::slots(key);
        let window = cfg.window_ns();
        // window 0: admitted (many packets); later windows: one packet a window, far under the
        // admission level, for five times the hint span
        for w in 0..50u64 {
            let n = if w == 0 { 200 } else { 1 };
            for i in 0..n {
                let ts = Timestamp(w * window + i);
                let p = PacketSummary {
                    ts,
                    ..pkt(0x0a00_0001, heavy)
                };
                let stamp = Stamp {
                    at: ts,
                    load: i + 1,
                };
                let (at, other) = agg.tick_of(stamp);
                if other {
                    agg.take();
                }
                agg.add(&p, stamp, ScopeMask::ALL, at);
                let t = if i + 1 == n { Some(agg.take()) } else { None };
                if let Some(t) = t.filter(|_| w > 0) {
                    // (window 0 holds back the packets before admission) the packet was counted
                    // for the source, not held back
                    assert_eq!(t.deferred, [0, 0], "window {w}");
                }
            }
            assert!(agg.admission[0].may_be_tracked(slots), "window {w}");
        }
    }
}
