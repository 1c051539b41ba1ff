//! Bounded per-scope key tables and the admission sketch that keeps spoofed sources out of them.
//!
//! Keys come from packets, so attackers choose them: maps use a seeded hasher, every table has a hard
//! capacity, and what does not fit is counted ([`Admit`]). Source scopes admit a key only once a
//! count-min sketch says it has sent enough packets in the current window to matter, so a flood from
//! millions of one-packet spoofed sources never reaches the exact table.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use crate::key::Key;

/// The seeded hasher of every map keyed by packet fields.
pub type Hasher = FixedState;

/// The outcome of looking up a key for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Already tracked.
    Tracked,
    /// Newly inserted.
    Inserted,
    /// Not tracked: the admission sketch has not seen enough of it yet.
    Deferred,
    /// Not tracked: the table is full.
    Rejected,
}

/// Counters of what a table did with keys it could not or would not keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub inserted: u64,
    pub evicted: u64,
    /// Packets of keys refused because the table was full.
    pub rejected: u64,
    /// Packets of keys held back by the admission sketch.
    pub deferred: u64,
    /// Most keys held at once.
    pub peak_len: usize,
}

/// A count-min sketch with conservative update, reset every window.
#[derive(Debug, Clone)]
pub struct AdmissionSketch {
    rows: Vec<Vec<u16>>,
    mask: usize,
    seed: u64,
    inserted: u64,
    /// A key is admitted once its estimate reaches `max(min_count, load_factor × mean counter load)`.
    min_count: u32,
}

impl AdmissionSketch {
    /// A sketch of `depth` rows of `width` (rounded up to a power of two) counters.
    pub fn new(width: usize, depth: usize, min_count: u32, seed: u64) -> Self {
        let width = width.max(64).next_power_of_two();
        AdmissionSketch {
            rows: vec![vec![0; width]; depth.clamp(1, 4)],
            mask: width - 1,
            seed: seed ^ 0x5ca1_ab1e,
            inserted: 0,
            min_count: min_count.clamp(1, u32::from(u16::MAX) / 2),
        }
    }

    /// Forgets everything (start of a new window).
    pub fn reset(&mut self) {
        for r in &mut self.rows {
            r.fill(0);
        }
        self.inserted = 0;
    }

    /// Counts one packet of `key` and says whether it now deserves a place in the exact table.
    #[inline]
    pub fn offer(&mut self, key: &Key) -> bool {
        let h = key.mix(self.seed);
        let mut est = u16::MAX;
        let mut idx = [0usize; 4];
        for (i, row) in self.rows.iter().enumerate() {
            let j = (h >> (i * 16)) as usize & self.mask;
            idx[i] = j;
            est = est.min(row[j]);
        }
        let new = est.saturating_add(1);
        for (row, &j) in self.rows.iter_mut().zip(idx.iter()) {
            if row[j] < new {
                row[j] = new;
            }
        }
        self.inserted += 1;
        let load = self.inserted >> (self.mask + 1).trailing_zeros();
        u64::from(new)
            >= u64::from(self.min_count)
                .max(4 * load)
                .min(u64::from(u16::MAX) - 1)
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.rows.len() * (self.mask + 1) * 2
    }
}

/// Admission of source keys, decided over the whole packet stream so every shard (and every thread
/// count) makes the same decisions: one sketch per source scope, reset at each window boundary of
/// packet time, with a fixed seed (its only effect is which keys share counters).
#[derive(Debug, Clone)]
pub struct Admission {
    src_host: AdmissionSketch,
    src_subnet: AdmissionSketch,
    epoch: u64,
    /// Packet-time span of `epoch`.
    epoch_start: u64,
    epoch_end: u64,
    window_ns: u64,
    v4: u8,
    v6: u8,
}

/// Tag bit: the packet's `src_host` key may enter the table.
pub const ADMIT_SRC_HOST: u8 = 1;
/// Tag bit: the packet's `src_subnet` key may enter the table.
pub const ADMIT_SRC_SUBNET: u8 = 2;

impl Admission {
    /// Admission for windows of `window_ns`, subnets of `v4`/`v6` bits, admitting a key after
    /// `min_count` packets in one window (more under heavy load).
    pub fn new(window_ns: u64, v4: u8, v6: u8, min_count: u32) -> Self {
        const WIDTH: usize = 1 << 14;
        Admission {
            src_host: AdmissionSketch::new(WIDTH, 2, min_count, 0x0a11_0001),
            src_subnet: AdmissionSketch::new(WIDTH, 2, min_count, 0x0a11_0002),
            epoch: 0,
            epoch_start: 0,
            epoch_end: 0,
            window_ns: window_ns.max(1),
            v4,
            v6,
        }
    }

    /// A packet outside the current window: a new window, or a jump far back in time (small steps back
    /// stay in the current window).
    fn new_epoch(&mut self, ts: u64) {
        let epoch = ts / self.window_ns;
        if epoch > self.epoch || epoch.saturating_add(2) < self.epoch {
            self.epoch = epoch;
            self.src_host.reset();
            self.src_subnet.reset();
            self.epoch_start = epoch.saturating_mul(self.window_ns);
            self.epoch_end = self.epoch_start.saturating_add(self.window_ns);
        }
    }

    /// Counts one packet and returns its admission tag bits.
    #[inline]
    pub fn tag(&mut self, src: std::net::IpAddr, ts: crate::time::Timestamp) -> u8 {
        // Most packets fall in the current window: skip the division for them.
        if ts.0 < self.epoch_start || ts.0 >= self.epoch_end {
            self.new_epoch(ts.0);
        }
        let mut t = 0;
        if self.src_host.offer(&Key::host(src)) {
            t |= ADMIT_SRC_HOST;
        }
        if self.src_subnet.offer(&Key::subnet(src, self.v4, self.v6)) {
            t |= ADMIT_SRC_SUBNET;
        }
        t
    }
}

/// A capped map from [`Key`] to per-key state.
#[derive(Debug)]
pub struct KeyTable<V> {
    map: HashMap<Key, V, Hasher>,
    cap: usize,
    pub stats: TableStats,
}

impl<V> KeyTable<V> {
    /// A table of at most `cap` keys.
    pub fn new(cap: usize, seed: u64) -> Self {
        KeyTable {
            map: HashMap::with_capacity_and_hasher(cap.min(4096), FixedState::with_seed(seed)),
            cap: cap.max(1),
            stats: TableStats::default(),
        }
    }

    /// The state of `key`, inserting it with `make` when `admit` allows and there is room.
    #[inline]
    pub fn entry(
        &mut self,
        key: Key,
        admit: bool,
        make: impl FnOnce() -> V,
    ) -> (Admit, Option<&mut V>) {
        use std::collections::hash_map::Entry;
        let len = self.map.len();
        match self.map.entry(key) {
            Entry::Occupied(o) => (Admit::Tracked, Some(o.into_mut())),
            Entry::Vacant(_) if !admit => {
                self.stats.deferred += 1;
                (Admit::Deferred, None)
            }
            Entry::Vacant(_) if len >= self.cap => {
                self.stats.rejected += 1;
                (Admit::Rejected, None)
            }
            Entry::Vacant(v) => {
                self.stats.inserted += 1;
                self.stats.peak_len = self.stats.peak_len.max(len + 1);
                (Admit::Inserted, Some(v.insert(make())))
            }
        }
    }

    /// The state of `key` if tracked, for changing.
    pub fn get_mut(&mut self, key: &Key) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    /// Visits every key; those for which `f` returns false are evicted and counted.
    pub fn retain(&mut self, mut f: impl FnMut(&Key, &mut V) -> bool) {
        let before = self.map.len();
        self.map.retain(|k, v| f(k, v));
        self.stats.evicted += (before - self.map.len()) as u64;
    }

    /// Visits every key without evicting.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&Key, &mut V)) {
        for (k, v) in self.map.iter_mut() {
            f(k, v);
        }
    }

    /// The state of `key` if tracked.
    pub fn get(&self, key: &Key) -> Option<&V> {
        self.map.get(key)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Every (key, state), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u32) -> Key {
        Key::V4 {
            addr: i,
            prefix: 32,
        }
    }

    #[test]
    fn never_exceeds_capacity_and_counts_rejections() {
        let mut t: KeyTable<u32> = KeyTable::new(100, 7);
        for i in 0..1000 {
            let _ = t.entry(k(i), true, || 0);
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.stats.rejected, 900);
        assert_eq!(t.stats.peak_len, 100);
        assert_eq!(t.entry(k(5), false, || 0).0, Admit::Tracked);
        t.retain(|key, _| *key != k(5));
        assert_eq!(t.stats.evicted, 1);
    }

    #[test]
    fn sketch_keeps_one_packet_sources_out_but_admits_heavy_ones() {
        let mut a = Admission::new(1_000_000_000, 24, 64, 8);
        let ts = crate::time::Timestamp(5);
        let ip = |i: u32| std::net::IpAddr::from(i.to_be_bytes());
        // 200 000 spoofed sources, one packet each.
        let admitted = (0..200_000u32)
            .filter(|i| a.tag(ip(i.wrapping_mul(2_654_435_761)), ts) & ADMIT_SRC_HOST != 0)
            .count();
        assert!(admitted < 50, "spoofed keys admitted: {admitted}");
        // A heavy source interleaved with them gets in after a few dozen packets.
        let heavy = ip(0xc000_0201);
        let n = (0..1000u32)
            .find(|n| {
                let _ = a.tag(ip(n * 7919 + 1), ts);
                a.tag(heavy, ts) & ADMIT_SRC_HOST != 0
            })
            .expect("heavy key never admitted");
        assert!(n < 200, "admitted only after {n} packets");
        // A new window starts from zero.
        let later = crate::time::Timestamp(2_000_000_000);
        assert_eq!(a.tag(heavy, later) & ADMIT_SRC_HOST, 0);
    }
}
