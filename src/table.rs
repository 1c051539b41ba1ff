//! Bounded per-scope key tables and the admission sketch that keeps spoofed sources out of them.
//!
//! Keys come from packets, so attackers choose them: maps use a seeded hasher, every table has a hard
//! capacity, and what does not fit is counted ([`Admit`]). Source scopes admit a key only once its
//! admission counter says it has sent enough packets in the current window to matter, so a flood from
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

/// Admission of the source keys of one scope: a count-min sketch (two rows, conservative update) over
/// the whole key space, reset every window. Keys hash into one of [`SourceAdmission::BANKS`] banks,
/// each with its own part of both rows, and the engine gives each shard the source keys of the banks
/// it owns (`bank % shards`): keys that can share a counter always share a shard, so every shard's
/// counters hold exactly what one global sketch would, and admission — so output — is the same
/// whatever the thread count. A key enters its table once its estimate reaches
/// `max(min_count, 4 × mean counter load)`.
#[derive(Debug, Clone)]
pub struct SourceAdmission {
    /// Row 0 then row 1, each `BANKS × BANK_WIDTH` counters. Fixed-size, indexed by slots masked
    /// to its length: no bounds check on a packet's path.
    counters: Box<[u16; 2 * SourceAdmission::ROW]>,
    min_count: u64,
    /// One bit per row-0 counter, set when a key counting there is in the table: a key whose bit
    /// is clear and that is not admitted needs no table lookup (most packets of a spoofed flood).
    /// Bits may stay set after their key left (a lookup that finds nothing); rebuilt by the engine
    /// after evictions.
    tracked: Box<[u64; SourceAdmission::HINT_WORDS]>,
}

/// Where a key counts in a [`SourceAdmission`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slots {
    pub bank: usize,
    a: usize,
    b: usize,
}

impl SourceAdmission {
    /// Banks: the unit of ownership between shards.
    pub const BANKS: usize = 64;
    const BANK_WIDTH: usize = 1024;
    const ROW: usize = Self::BANKS * Self::BANK_WIDTH;
    const SEED: u64 = 0x0a11_0001;

    /// Admission after `min_count` packets in one window (more under heavy load).
    pub fn new(min_count: u32) -> Self {
        SourceAdmission {
            counters: Box::new([0; 2 * Self::ROW]),
            min_count: u64::from(min_count.clamp(1, u32::from(u16::MAX) / 2)),
            tracked: Box::new([0; Self::HINT_WORDS]),
        }
    }

    /// Admission after `min_count` packets in one window from now on (a reloaded configuration).
    pub fn set_min_count(&mut self, min_count: u32) {
        self.min_count = u64::from(min_count.clamp(1, u32::from(u16::MAX) / 2));
    }

    /// Notes that the key at `slots` entered its table.
    #[inline]
    pub fn mark_tracked(&mut self, slots: Slots) {
        self.tracked[Self::hint_word(slots)] |= 1 << (slots.a % 64);
    }

    /// The word of `slots`' hint bit (masked: always in range).
    #[inline]
    fn hint_word(slots: Slots) -> usize {
        (slots.a / 64) & (Self::HINT_WORDS - 1)
    }

    /// False when no key at `slots` can be in the table (true may be a stale hint).
    #[inline]
    pub fn may_be_tracked(&self, slots: Slots) -> bool {
        self.tracked[Self::hint_word(slots)] & (1 << (slots.a % 64)) != 0
    }

    /// Words of the tracked hints ([`SourceAdmission::set_tracked`]).
    pub const HINT_WORDS: usize = Self::ROW / 64;

    /// The bit of `key` in the tracked hints.
    #[inline]
    pub fn hint_bit(key: Key) -> usize {
        Self::slots(key).a
    }

    /// Sets the tracked hints to `bits` ([`SourceAdmission::HINT_WORDS`] words, bit
    /// [`SourceAdmission::hint_bit`] of each key that may be tracked).
    pub fn set_tracked(&mut self, bits: &[u64]) {
        for (t, b) in self
            .tracked
            .iter_mut()
            .zip(bits.iter().chain(std::iter::repeat(&0)))
        {
            *t = *b;
        }
    }

    /// Rebuilds the tracked hints from the keys now in the table.
    pub fn retrack<'k>(&mut self, keys: impl Iterator<Item = &'k Key>) {
        self.tracked.fill(0);
        for k in keys {
            self.mark_tracked(Self::slots(*k));
        }
    }

    /// The counters of `key` (fixed seed: the same on every run and in every shard).
    #[inline]
    pub fn slots(key: Key) -> Slots {
        let h = key.mix(Self::SEED);
        let bank = (h >> 58) as usize;
        let base = bank * Self::BANK_WIDTH;
        Slots {
            bank,
            a: base + (h as usize & (Self::BANK_WIDTH - 1)),
            b: Self::ROW + base + ((h >> 20) as usize & (Self::BANK_WIDTH - 1)),
        }
    }

    /// Asks the CPU to start loading the counters of the key at `slots`: a packet whose admission
    /// runs a few packets later finds them in the cache instead of waiting for memory.
    #[inline]
    pub fn prefetch(&self, slots: Slots) {
        crate::prefetch::prefetch(&self.counters[slots.a & (2 * Self::ROW - 1)]);
        crate::prefetch::prefetch(&self.counters[slots.b & (2 * Self::ROW - 1)]);
        crate::prefetch::prefetch(&self.tracked[Self::hint_word(slots)]);
    }

    /// Forgets the window.
    pub fn new_window(&mut self) {
        self.counters.fill(0);
    }

    /// Counts one packet of the key at `slots` and says whether the key may enter its table.
    /// `load` is the packets of the whole stream in this window so far (the [`Stamp`]'s load), what
    /// the threshold scales with: the same in every shard, whatever it owns.
    ///
    /// [`Stamp`]: crate::clock::Stamp
    #[inline]
    pub fn offer(&mut self, slots: Slots, load: u64) -> bool {
        self.offer_at(slots, 1, self.level(load))
    }

    /// The estimate at which a key is admitted when the window has seen `load` packets: what
    /// [`SourceAdmission::offer_at`] compares with, worked out once for a packet's source keys.
    #[inline]
    pub fn level(&self, load: u64) -> u16 {
        let load = load / Self::ROW as u64;
        self.min_count.max(4 * load).min(u64::from(u16::MAX) - 1) as u16
    }

    /// A summary's weight as the counters add it (saturated).
    #[inline]
    pub fn weight(weight: u32) -> u16 {
        u16::try_from(weight).unwrap_or(u16::MAX)
    }

    /// Counts `weight` packets ([`SourceAdmission::weight`]) of the key at `slots` and says
    /// whether its estimate reached `level` ([`SourceAdmission::level`]).
    #[inline]
    pub fn offer_at(&mut self, slots: Slots, weight: u16, level: u16) -> bool {
        // (slots are in range by construction; the masks only let the compiler see it)
        let (ia, ib) = (slots.a & (2 * Self::ROW - 1), slots.b & (2 * Self::ROW - 1));
        let (a, b) = (self.counters[ia], self.counters[ib]);
        let est = a.min(b).saturating_add(weight);
        // conservative update: a counter already above the estimate keeps its value (stored
        // either way: whether it rises is a coin toss under spoofed sources, a branch the CPU
        // would mispredict)
        self.counters[ia] = a.max(est);
        self.counters[ib] = b.max(est);
        est >= level
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
        self.entry_many(key, admit, 1, make)
    }

    /// [`KeyTable::entry`] for `n` packets at once (an aggregate): a refusal counts `n`.
    #[inline]
    pub fn entry_many(
        &mut self,
        key: Key,
        admit: bool,
        n: u64,
        make: impl FnOnce() -> V,
    ) -> (Admit, Option<&mut V>) {
        use std::collections::hash_map::Entry;
        let len = self.map.len();
        match self.map.entry(key) {
            Entry::Occupied(o) => (Admit::Tracked, Some(o.into_mut())),
            Entry::Vacant(_) if !admit => {
                self.stats.deferred += n;
                (Admit::Deferred, None)
            }
            Entry::Vacant(_) if len >= self.cap => {
                self.stats.rejected += n;
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

/// Engine state ([`crate::engine_state`]).
mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};

    type R<T> = Result<T, EngineStateError>;

    impl TableStats {
        fn save(&self, e: &mut Enc) {
            e.var(self.inserted);
            e.var(self.evicted);
            e.var(self.rejected);
            e.var(self.deferred);
            e.usize(self.peak_len);
        }

        fn load(d: &mut Dec) -> R<TableStats> {
            Ok(TableStats {
                inserted: d.count("a table counter")?,
                evicted: d.count("a table counter")?,
                rejected: d.count("a table counter")?,
                deferred: d.count("a table counter")?,
                peak_len: d.usize("a table's peak")?,
            })
        }
    }

    impl<V> KeyTable<V> {
        /// Writes the counters, then every (key, state) in iteration order.
        pub(crate) fn save(&self, e: &mut Enc, mut value: impl FnMut(&mut Enc, &V)) {
            self.stats.save(e);
            e.usize(self.map.len());
            for (k, v) in &self.map {
                e.key(*k);
                value(e, v);
            }
        }

        /// Reads what [`KeyTable::save`] wrote into this (empty) table. The keys go in in the saved
        /// order; the engine's output does not depend on where they land.
        pub(crate) fn load(
            &mut self,
            d: &mut Dec,
            mut value: impl FnMut(&mut Dec, Key) -> R<V>,
        ) -> R<()> {
            self.stats = TableStats::load(d)?;
            // a key and the least state of the engine's tables take over 100 bytes (window and
            // baseline): the map reserved for them is a few times the bytes left, no more
            let n = d.len("a key table", 100)?;
            if n > self.cap {
                return Err(d.corrupt(format!(
                    "a table holds {n} keys, more than its capacity of {} (max_keys)",
                    self.cap
                )));
            }
            self.map.reserve(n);
            for _ in 0..n {
                let k = d.key()?;
                let v = value(d, k)?;
                if self.map.insert(k, v).is_some() {
                    return Err(d.corrupt(format!("key {k} is in a table twice")));
                }
            }
            Ok(())
        }
    }

    impl SourceAdmission {
        pub(crate) fn save(&self, e: &mut Enc) {
            e.usize(self.counters.len());
            for c in self.counters.iter() {
                e.var(u64::from(*c));
            }
            e.usize(self.tracked.len());
            for w in self.tracked.iter() {
                e.raw64(*w);
            }
        }

        /// Reads the counters and hints into this admission (its `min_count` comes from the
        /// settings).
        pub(crate) fn load(&mut self, d: &mut Dec) -> R<()> {
            d.fill("admission counters", 1, &mut self.counters[..], |d| {
                d.u16("an admission counter")
            })?;
            d.fill("admission hint words", 8, &mut self.tracked[..], |d| {
                d.raw64("an admission hint")
            })
        }
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
    fn a_summary_of_more_packets_than_a_counter_holds_saturates_it_and_is_admitted() {
        // a flow record may stand for 2^32 packets; the counters are 16 bits
        let mut a = SourceAdmission::new(64);
        let s = SourceAdmission::slots(k(7));
        assert_eq!(SourceAdmission::weight(100_000), u16::MAX);
        assert_eq!(SourceAdmission::weight(3), 3);
        assert!(a.offer_at(s, SourceAdmission::weight(100_000), a.level(1)));
        // the next does not wrap the counters round to a small estimate, whatever the load
        assert!(a.offer_at(s, 1, a.level(u64::MAX / 8)));
        assert!(a.offer(s, 3));
        // a key with counters of its own stays under the level
        assert!(!a.offer(SourceAdmission::slots(k(8)), 3));
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
    fn admission_keeps_one_packet_sources_out_but_admits_heavy_ones() {
        let mut a = SourceAdmission::new(8);
        let ip = |i: u32| Key::host(std::net::IpAddr::from(i.to_be_bytes()));
        let mut load = 0u64;
        let mut offer = |a: &mut SourceAdmission, k: Key| {
            load += 1;
            a.offer(SourceAdmission::slots(k), load)
        };
        // 200 000 spoofed sources, one packet each.
        let admitted = (0..200_000u32)
            .filter(|i| offer(&mut a, ip(i.wrapping_mul(2_654_435_761))))
            .count();
        assert!(admitted < 50, "spoofed keys admitted: {admitted}");
        // A heavy source interleaved with them gets in after a few dozen packets.
        let heavy = ip(0xc000_0201);
        let n = (0..1000u32)
            .find(|n| {
                let _ = offer(&mut a, ip(n * 7919 + 1));
                offer(&mut a, heavy)
            })
            .expect("heavy key never admitted");
        assert!(n < 200, "admitted only after {n} packets");
        // Only keys marked as tracked may need a lookup.
        let s = SourceAdmission::slots(heavy);
        assert!(!a.may_be_tracked(s));
        a.mark_tracked(s);
        assert!(a.may_be_tracked(s));
        a.retrack(std::iter::empty());
        assert!(!a.may_be_tracked(s));
        // A new window starts from zero.
        a.new_window();
        assert!(!offer(&mut a, heavy));
    }
}
