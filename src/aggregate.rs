//! Aggregation before counting: the packets of one tick become one [`KeyAgg`] per (scope, key)
//! before an engine's tables see them ([`crate::detect::Aggregator`] builds them where packets
//! arrive), so a key's state is looked up and updated once per tick instead of once per packet,
//! and what crosses from the router to the shards is aggregates, never packets.
//!
//! What stays exact: every counter of the sliding windows (packets, bytes, SYN, …), the summaries
//! counted, the first packet's time (where a key's traffic resumed), the amplifier-port vote (a
//! weighted majority vote, merged), the hosts of a subnet key (up to [`HOSTS_PER_KEY`] a tick).
//! What is sampled: the packets the engine's evidence looks at one by one (top peers and ports,
//! header-field signatures). A key's first 1 024 packets of a tick are all kept, then one in 16, 64
//! past 4 096 and 256 past 65 536, chosen by a hash of the packet's peer and time so a replay
//! samples the same packets every time; each stands for as many packets as its rate. The
//! distinct-peer count of a key sampled at a rate sees every packet through HyperLogLog registers
//! of its own ([`Hll`]), merged into the evidence's.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use crate::attribution::{Hll, HllSlot};
use crate::decode::PacketSummary;
use crate::key::Key;
use crate::window::{Counts, PacketClass, Signal};

/// A packet's peer as every entry sampling at a rate uses it: its slot in the entry's
/// distinct-peer registers, and the draw that picks samples (from the peer and the time, so a
/// replay samples the same packets every time). Worked out once for all the entries of a packet,
/// with the time the packet is added at ([`ScopeAgg::add`]'s `at`).
#[derive(Clone, Copy, Debug)]
pub struct PeerDraw {
    slot: HllSlot,
    pick: u32,
}

impl PeerDraw {
    /// The draw of a packet stamped `at` whose peer has the [`Hll::hash`] `peer_hash`.
    #[inline]
    pub fn new(peer_hash: u64, at: crate::time::Timestamp) -> PeerDraw {
        PeerDraw {
            slot: Hll::slot(peer_hash),
            pick: (Hll::sample_mix(peer_hash, at) >> 56) as u32,
        }
    }
}

/// No sample / no registers.
const NONE: u32 = u32::MAX;

/// Summaries of one entry (one key, one tick) at which its sampling rate rises to 16, 64 and 256:
/// a tick of a flood keeps about 2 300 samples of its victim, whatever its rate, and a key under
/// 10 000 packets/s is looked at whole.
const ESCALATE: [(u32, u32); 3] = [(1024, 16), (4096, 64), (65_536, 256)];

/// An entry and an address (a subnet's host, a destination's client): the key of the per-entry
/// indexes, hashed as one or two words (the derived hash of an `IpAddr` feeds the hasher a
/// discriminant, a length and a byte slice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EntryAddr(u32, std::net::IpAddr);

impl std::hash::Hash for EntryAddr {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self.1 {
            std::net::IpAddr::V4(a) => {
                h.write_u64(u64::from(self.0) << 32 | u64::from(a.to_bits()))
            }
            std::net::IpAddr::V6(a) => {
                h.write_u128(a.to_bits());
                h.write_u32(self.0);
            }
        }
    }
}

/// One key's packets in one aggregate.
#[derive(Clone, Debug)]
pub struct KeyAgg {
    pub key: Key,
    /// Packets by class and bytes, what a packet adds (cheaper than every counter; [`KeyAgg::counts`]
    /// expands them).
    classes: [u64; PacketClass::COUNT],
    bytes: u64,
    /// The request signals ([`Signal::REQUEST_SIGNALS`]) counted from connections.
    requests: [u32; 3],
    /// A destination key: its clients' request signals ([`ScopeAgg::add_request`]).
    first_client: u32,
    /// A destination key: what its requests asked for ([`ScopeAgg::add_detail`]).
    first_detail: u32,
    /// Summaries aggregated (a flow record or sFlow sample is one summary standing for many packets).
    pub summaries: u32,
    /// Packet time (ns, the clock's stamp) of the first summary.
    pub first_ts: u64,
    /// A source key: made by a summary the admission sketch admitted (it may enter its table). A
    /// key known only as possibly tracked is not; its packets count only if it is. Destination
    /// keys: always.
    pub admitted: bool,
    /// Weighted majority vote over amplifier source ports: (candidate, weight).
    pub amp: (u16, u32),
    /// One summary in `rate` is sampled (1: every one).
    pub rate: u32,
    /// Distinct-peer registers of this key, when it is sampled at a rate and its evidence counts
    /// peers.
    regs: u32,
    first_sample: u32,
    last_sample: u32,
    /// A subnet key: its hosts' packets, counted exactly ([`ScopeAgg::count_host`]).
    first_host: u32,
    /// Every host of this subnet key was counted (false once the key or the aggregate ran out
    /// of room).
    pub hosts_exact: bool,
    hosts_n: u32,
}

/// The packets of one host inside a subnet key, in one aggregate.
#[derive(Clone, Copy, Debug)]
pub struct HostCount {
    pub host: std::net::IpAddr,
    pub packets: u64,
    next: u32,
}

/// One client's request signals at a destination key, in one aggregate.
#[derive(Clone, Copy, Debug)]
pub struct ClientCount {
    pub client: std::net::IpAddr,
    /// Indexed as [`Signal::REQUEST_SIGNALS`].
    pub counts: [u32; 3],
    next: u32,
}

/// What one request at a destination key asked for: its path, Host (or TLS SNI), User-Agent or
/// TLS fingerprint ([`Detail::KINDS`]).
#[derive(Clone, Debug)]
pub struct Detail {
    pub kind: u8,
    pub text: Box<str>,
    next: u32,
}

impl Detail {
    /// The kinds, by index.
    pub const KINDS: [&'static str; 4] = ["path", "host", "user_agent", "fingerprint"];
}

impl KeyAgg {
    /// The window counters of the key's packets.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::of_classes(&self.classes, self.bytes);
        for (s, n) in Signal::REQUEST_SIGNALS.iter().zip(self.requests) {
            c.n[s.index()] = u64::from(n);
        }
        c
    }
}

/// A sampled summary and the packets it stands for besides its own weight.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub p: PacketSummary,
    pub rate: u32,
    next: u32,
}

/// The aggregate of one scope: its keys in the order they first appeared, their samples, and the
/// registers of hot keys. Reused from one aggregate to the next (nothing is freed).
#[derive(Debug)]
pub struct ScopeAgg {
    entries: Vec<KeyAgg>,
    index: HashMap<Key, u32, FixedState>,
    /// The last key looked up and its entry: a flood's packets share it.
    last: Option<(Key, u32)>,
    samples: Vec<Sample>,
    regs: Vec<Hll>,
    regs_used: usize,
    /// Hosts of subnet entries: (entry, host) → its count in `hosts`.
    host_index: HashMap<EntryAddr, u32, FixedState>,
    hosts: Vec<HostCount>,
    /// Clients of destination entries: (entry, client) → its counts in `clients`.
    client_index: HashMap<EntryAddr, u32, FixedState>,
    clients: Vec<ClientCount>,
    details: Vec<Detail>,
    /// The most entries, samples and hosts one aggregate held so far: the next one starts with
    /// that room (bounded by [`MAX_ENTRIES`], …), so a tick never regrows what an earlier one had.
    room: [usize; 5],
    /// Set when the entries or samples reach their bound ([`ScopeAgg::is_full`]): one load for the
    /// router's check after every packet.
    full: bool,
}

/// Keys and samples one aggregate holds at most: a tick with more (a carpet bombing of a /8, a
/// capture whose timestamps never move) leaves in parts, so memory is bounded by these, not by the
/// input (about 3 MB of keys and 3 MB of samples a scope).
pub const MAX_ENTRIES: usize = 8_192;
pub const MAX_SAMPLES: usize = 32_768;

/// Hosts counted exactly in one aggregate (over all subnet keys), and per key: a carpet bombing
/// of a /24 has its victims counted; a subnet with more hosts in one tick (spoofed sources of a
/// range, a /64) names its hosts from its samples instead.
pub const MAX_HOSTS: usize = 65_536;
pub const HOSTS_PER_KEY: u32 = 256;

/// Clients counted per destination in one aggregate (over all keys): the senders of requests,
/// each of whom completed a handshake.
pub const MAX_CLIENTS: usize = 65_536;

/// Request details noted in one aggregate (over all keys): a tick of a flood at 100 000 requests a
/// second notes its first 16 384 requests' paths, hosts, agents and fingerprints.
pub const MAX_DETAILS: usize = 16_384;

impl Default for ScopeAgg {
    fn default() -> Self {
        ScopeAgg::new()
    }
}

impl ScopeAgg {
    pub fn new() -> ScopeAgg {
        ScopeAgg {
            entries: Vec::new(),
            index: HashMap::with_hasher(FixedState::with_seed(0x0a66_0001)),
            last: None,
            samples: Vec::new(),
            regs: Vec::new(),
            regs_used: 0,
            host_index: HashMap::with_hasher(FixedState::with_seed(0x0a66_0002)),
            hosts: Vec::new(),
            client_index: HashMap::with_hasher(FixedState::with_seed(0x0a66_0003)),
            clients: Vec::new(),
            details: Vec::new(),
            room: [0; 5],
            full: false,
        }
    }

    /// True once the aggregate holds [`MAX_ENTRIES`] keys or [`MAX_SAMPLES`] samples: it must be
    /// handed over before the next packet (a part of its tick; the trigger depends only on the
    /// packets, so the parts are the same on every run).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The entry of `key`, if it has one.
    #[inline]
    pub fn find(&mut self, key: Key) -> Option<u32> {
        if let Some((k, i)) = self.last {
            if k == key {
                return Some(i);
            }
        }
        let i = *self.index.get(&key)?;
        self.last = Some((key, i));
        Some(i)
    }

    /// Whether entry `i` was made admitted.
    #[inline]
    pub fn admitted(&self, i: u32) -> bool {
        self.entries.get(i as usize).is_some_and(|e| e.admitted)
    }

    /// A new entry for `key` (the key's later summaries go to it), sampled at `rate` (a power of
    /// two, at most 256), with distinct-peer registers when `count_peers`.
    pub fn insert(
        &mut self,
        key: Key,
        first_ts: u64,
        admitted: bool,
        rate: u32,
        count_peers: bool,
    ) -> u32 {
        let i = self.entries.len() as u32;
        let rate = rate.clamp(1, 256).next_power_of_two();
        let regs = if count_peers && rate > 1 {
            take_regs(&mut self.regs, &mut self.regs_used)
        } else {
            NONE
        };
        self.entries.push(KeyAgg {
            key,
            classes: [0; PacketClass::COUNT],
            bytes: 0,
            requests: [0; 3],
            first_client: NONE,
            first_detail: NONE,
            summaries: 0,
            first_ts,
            admitted,
            amp: (0, 0),
            rate,
            regs,
            first_sample: NONE,
            last_sample: NONE,
            first_host: NONE,
            hosts_exact: true,
            hosts_n: 0,
        });
        self.full |= self.entries.len() >= MAX_ENTRIES;
        self.index.insert(key, i);
        self.last = Some((key, i));
        i
    }

    /// Adds `p`, stamped `at` by the stream's clock (its time, or the clock's when it came late),
    /// to entry `i`. `peer` gives the [`PeerDraw`] of the key's peer (the source of a
    /// destination key, the destination of a source key); it is asked for only when the entry
    /// samples at a rate. A sample keeps `p` with the stamp as its time.
    #[inline]
    pub fn add(
        &mut self,
        i: u32,
        p: &PacketSummary,
        at: crate::time::Timestamp,
        class: PacketClass,
        peer: impl FnOnce() -> PeerDraw,
    ) {
        let Some(e) = self.entries.get_mut(i as usize) else {
            return;
        };
        // flow records can claim up to 2^32 packets of 2^32 bytes: counters wrap as the
        // windows' do rather than overflow
        let w = u64::from(p.weight);
        if let Some(c) = e.classes.get_mut(class.index()) {
            *c = c.wrapping_add(w);
        }
        e.bytes = e.bytes.wrapping_add(u64::from(p.wire_len).wrapping_mul(w));
        e.summaries = e.summaries.saturating_add(1);
        // a key with many packets in one aggregate is sampled more thinly as it grows, and its
        // distinct peers counted in registers from then on (its earlier packets are all samples)
        let step = (e.summaries % 1024 == 0)
            .then(|| ESCALATE.iter().find(|(at, _)| e.summaries == *at))
            .flatten();
        if let Some(&(_, rate)) = step {
            if e.rate < rate {
                e.rate = rate;
                if e.regs == NONE {
                    e.regs = take_regs(&mut self.regs, &mut self.regs_used);
                }
            }
        }
        // (a summary of no packets votes with no weight: the vote stays as it was)
        if class.is_amp() {
            vote(&mut e.amp, p.sport, p.weight);
        }
        let sampled = if e.rate == 1 {
            true
        } else {
            let draw = peer();
            if let Some(r) = self.regs.get_mut(e.regs as usize) {
                r.add_slot(draw.slot);
            }
            draw.pick & (e.rate - 1) == 0
        };
        if sampled {
            let n = self.samples.len() as u32;
            self.samples.push(Sample {
                p: PacketSummary { ts: at, ..*p },
                rate: e.rate,
                next: NONE,
            });
            self.full |= self.samples.len() >= MAX_SAMPLES;
            match self.samples.get_mut(e.last_sample as usize) {
                Some(prev) => prev.next = n,
                None => e.first_sample = n,
            }
            e.last_sample = n;
        }
    }

    /// Counts `n` of request signal `which` (an index into [`Signal::REQUEST_SIGNALS`]) for entry
    /// `i`, and for `client` inside it when given (destination keys: who sent them). Clients
    /// past [`MAX_CLIENTS`] in one aggregate are counted in the entry only.
    pub fn add_request(&mut self, i: u32, which: usize, n: u64, client: Option<std::net::IpAddr>) {
        let Some(e) = self.entries.get_mut(i as usize) else {
            return;
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(c) = e.requests.get_mut(which) {
            *c = c.saturating_add(n);
        }
        let Some(client) = client else {
            return;
        };
        let slot = match self.client_index.get(&EntryAddr(i, client)) {
            Some(x) => *x,
            None if self.clients.len() < MAX_CLIENTS => {
                let x = self.clients.len() as u32;
                self.clients.push(ClientCount {
                    client,
                    counts: [0; 3],
                    next: e.first_client,
                });
                e.first_client = x;
                self.client_index.insert(EntryAddr(i, client), x);
                x
            }
            None => return,
        };
        if let Some(c) = self
            .clients
            .get_mut(slot as usize)
            .and_then(|c| c.counts.get_mut(which))
        {
            *c = c.saturating_add(n);
        }
    }

    /// Notes what a request at entry `i` asked for ([`Detail`]); past [`MAX_DETAILS`] in one
    /// aggregate, nothing more is noted (the request itself is counted all the same).
    pub fn add_detail(&mut self, i: u32, kind: u8, text: Box<str>) {
        if self.details.len() >= MAX_DETAILS {
            return;
        }
        let Some(e) = self.entries.get_mut(i as usize) else {
            return;
        };
        let n = self.details.len() as u32;
        self.details.push(Detail {
            kind,
            text,
            next: e.first_detail,
        });
        e.first_detail = n;
    }

    /// The host slot of `host` inside subnet entry `i` (made when it has none), for
    /// [`ScopeAgg::count_host`]; None once the aggregate holds [`MAX_HOSTS`] hosts or the key [`HOSTS_PER_KEY`].
    pub fn host_slot(&mut self, i: u32, host: std::net::IpAddr) -> Option<u32> {
        if !self.entries.get(i as usize)?.hosts_exact {
            return None;
        }
        if let Some(h) = self.host_index.get(&EntryAddr(i, host)) {
            return Some(*h);
        }
        let e = self.entries.get_mut(i as usize)?;
        if self.hosts.len() >= MAX_HOSTS || e.hosts_n >= HOSTS_PER_KEY {
            e.hosts_exact = false;
            return None;
        }
        e.hosts_n += 1;
        let n = self.hosts.len() as u32;
        self.hosts.push(HostCount {
            host,
            packets: 0,
            next: e.first_host,
        });
        e.first_host = n;
        self.host_index.insert(EntryAddr(i, host), n);
        Some(n)
    }

    /// Counts `packets` for the host at `slot` ([`ScopeAgg::host_slot`]).
    #[inline]
    pub fn count_host(&mut self, slot: u32, packets: u64) {
        if let Some(h) = self.hosts.get_mut(slot as usize) {
            h.packets = h.packets.wrapping_add(packets);
        }
    }

    /// Everything aggregated, moved out; the builder starts empty.
    pub fn take(&mut self) -> ScopeAggregate {
        self.full = false;
        self.index.clear();
        self.last = None;
        self.host_index.clear();
        self.client_index.clear();
        let mut regs = std::mem::take(&mut self.regs);
        regs.truncate(self.regs_used);
        self.regs_used = 0;
        // the next aggregate starts with room for as much as any one held (the buffers leave with
        // the aggregate: no growing from empty at every tick)
        let [entries, samples, hosts, clients, details] = &mut self.room;
        ScopeAggregate {
            entries: taken_with_room(&mut self.entries, entries),
            samples: taken_with_room(&mut self.samples, samples),
            hosts: taken_with_room(&mut self.hosts, hosts),
            regs,
            clients: taken_with_room(&mut self.clients, clients),
            details: taken_with_room(&mut self.details, details),
        }
    }
}

/// The aggregate of one scope, taken from a [`ScopeAgg`]: what crosses to the engine that owns
/// its keys.
#[derive(Debug, Default)]
pub struct ScopeAggregate {
    entries: Vec<KeyAgg>,
    samples: Vec<Sample>,
    hosts: Vec<HostCount>,
    regs: Vec<Hll>,
    clients: Vec<ClientCount>,
    details: Vec<Detail>,
}

impl ScopeAggregate {
    /// The keys, in the order they first appeared.
    pub fn entries(&self) -> &[KeyAgg] {
        &self.entries
    }

    /// Every entry with its samples, registers and hosts' counts.
    pub fn iter(&self) -> impl Iterator<Item = (&KeyAgg, Drained<'_>)> {
        self.entries.iter().map(|e| (e, self.drained(e)))
    }

    /// Entry `i` with its samples, registers and hosts' counts.
    pub fn get(&self, i: usize) -> Option<(&KeyAgg, Drained<'_>)> {
        self.entries.get(i).map(|e| (e, self.drained(e)))
    }

    fn drained(&self, e: &KeyAgg) -> Drained<'_> {
        Drained {
            samples: Linked {
                items: &self.samples,
                at: e.first_sample,
            },
            regs: self.regs.get(e.regs as usize),
            hosts: Linked {
                items: &self.hosts,
                at: e.first_host,
            },
            clients: Linked {
                items: &self.clients,
                at: e.first_client,
            },
            details: Linked {
                items: &self.details,
                at: e.first_detail,
            },
        }
    }
}

/// An entry's counts and state as [`ScopeAggregate::push_entry`] takes them and
/// [`KeyAgg::fields`] gives them: what a bus batch of aggregates carries for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFields {
    pub key: Key,
    /// Packets by [`PacketClass`] index.
    pub classes: [u64; PacketClass::COUNT],
    pub bytes: u64,
    /// Indexed as [`Signal::REQUEST_SIGNALS`].
    pub requests: [u32; 3],
    pub summaries: u32,
    pub first_ts: u64,
    pub admitted: bool,
    pub amp: (u16, u32),
    /// A power of two, 1 to 256.
    pub rate: u32,
    pub hosts_exact: bool,
    /// Hosts the key made room for (may be more than the hosts pushed: the aggregate's bound).
    pub hosts_n: u32,
}

impl KeyAgg {
    /// Its counts and state, without its samples, registers, hosts, clients and details.
    pub fn fields(&self) -> EntryFields {
        EntryFields {
            key: self.key,
            classes: self.classes,
            bytes: self.bytes,
            requests: self.requests,
            summaries: self.summaries,
            first_ts: self.first_ts,
            admitted: self.admitted,
            amp: self.amp,
            rate: self.rate,
            hosts_exact: self.hosts_exact,
            hosts_n: self.hosts_n,
        }
    }
}

/// Appends `n` to the items of an entry whose first item is `*first`: the entry is the last one
/// and its items are the last ones of the arena, so its tail is the item before `n`.
fn link_tail<T: SetLink>(items: &mut [T], first: &mut u32, n: u32) {
    if *first == NONE {
        *first = n;
    } else if let Some(prev) = n.checked_sub(1).and_then(|i| items.get_mut(i as usize)) {
        prev.set_next(n);
    }
}

/// An arena item whose link can be set.
trait SetLink {
    fn set_next(&mut self, next: u32);
}

macro_rules! set_link_by_next {
    ($($t:ty),*) => {
        $(impl SetLink for $t {
            fn set_next(&mut self, next: u32) {
                self.next = next;
            }
        })*
    };
}

set_link_by_next!(Sample, HostCount, ClientCount, Detail);

impl ScopeAggregate {
    /// Appends an entry (rebuilding an aggregate, as a bus batch is read): the samples, hosts,
    /// clients and details pushed next are its own, and its iteration gives them in the order
    /// they were pushed. A rate that is not a power of two up to 256 is made one.
    pub fn push_entry(&mut self, f: EntryFields, regs: Option<Hll>) {
        let regs = match regs {
            Some(r) => {
                self.regs.push(r);
                (self.regs.len() - 1) as u32
            }
            None => NONE,
        };
        self.entries.push(KeyAgg {
            key: f.key,
            classes: f.classes,
            bytes: f.bytes,
            requests: f.requests,
            first_client: NONE,
            first_detail: NONE,
            summaries: f.summaries,
            first_ts: f.first_ts,
            admitted: f.admitted,
            amp: f.amp,
            rate: f.rate.clamp(1, 256).next_power_of_two(),
            regs,
            first_sample: NONE,
            last_sample: NONE,
            first_host: NONE,
            hosts_exact: f.hosts_exact,
            hosts_n: f.hosts_n,
        });
    }

    /// The samples, hosts, clients and details it holds.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.samples.len(),
            self.hosts.len(),
            self.clients.len(),
            self.details.len(),
        )
    }

    /// A sample of the last entry, standing for `rate` summaries. Nothing without an entry.
    pub fn push_sample(&mut self, p: PacketSummary, rate: u32) {
        let Some(e) = self.entries.last_mut() else {
            return;
        };
        let n = self.samples.len() as u32;
        self.samples.push(Sample {
            p,
            rate,
            next: NONE,
        });
        link_tail(&mut self.samples, &mut e.first_sample, n);
        e.last_sample = n;
    }

    /// A host's packets inside the last entry (a subnet key). Nothing without an entry.
    pub fn push_host(&mut self, host: std::net::IpAddr, packets: u64) {
        let Some(e) = self.entries.last_mut() else {
            return;
        };
        let n = self.hosts.len() as u32;
        self.hosts.push(HostCount {
            host,
            packets,
            next: NONE,
        });
        link_tail(&mut self.hosts, &mut e.first_host, n);
    }

    /// A client's request signals at the last entry (a destination key). Nothing without an
    /// entry.
    pub fn push_client(&mut self, client: std::net::IpAddr, counts: [u32; 3]) {
        let Some(e) = self.entries.last_mut() else {
            return;
        };
        let n = self.clients.len() as u32;
        self.clients.push(ClientCount {
            client,
            counts,
            next: NONE,
        });
        link_tail(&mut self.clients, &mut e.first_client, n);
    }

    /// What a request at the last entry asked for. Nothing without an entry.
    pub fn push_detail(&mut self, kind: u8, text: Box<str>) {
        let Some(e) = self.entries.last_mut() else {
            return;
        };
        let n = self.details.len() as u32;
        self.details.push(Detail {
            kind,
            text,
            next: NONE,
        });
        link_tail(&mut self.details, &mut e.first_detail, n);
    }
}

/// What an entry leaves besides its counts.
pub struct Drained<'a> {
    pub samples: SampleIter<'a>,
    /// Its distinct-peer registers, if it had any.
    pub regs: Option<&'a Hll>,
    /// Its hosts' exact counts (a subnet key); empty when none were counted.
    pub hosts: HostIter<'a>,
    /// Its clients' request signals (a destination key).
    pub clients: Linked<'a, ClientCount>,
    /// What its requests asked for (a destination key).
    pub details: Linked<'a, Detail>,
}

/// Items of one entry, linked through a shared arena by index (samples in packet order; hosts in
/// the order opposite to their first packets).
pub struct Linked<'a, T> {
    items: &'a [T],
    at: u32,
}

// (by hand: the derive would ask `T: Clone`, and the arena is only borrowed)
impl<T> Clone for Linked<'_, T> {
    fn clone(&self) -> Self {
        Linked {
            items: self.items,
            at: self.at,
        }
    }
}

/// An arena item that names the next item of its entry.
trait Link {
    fn next(&self) -> u32;
}

/// [`Link`] for types whose `next` field is the link.
macro_rules! linked_by_next {
    ($($t:ty),*) => {
        $(impl Link for $t {
            fn next(&self) -> u32 {
                self.next
            }
        })*
    };
}

linked_by_next!(Sample, HostCount, ClientCount, Detail);

#[allow(private_bounds)]
impl<'a, T: Link> Iterator for Linked<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let item = self.items.get(self.at as usize)?;
        self.at = item.next();
        Some(item)
    }
}

/// The samples of one entry.
pub type SampleIter<'a> = Linked<'a, Sample>;
/// The hosts counted inside one subnet entry.
pub type HostIter<'a> = Linked<'a, HostCount>;

/// Takes `v`, leaving an empty vector with room for as many items.
fn taken_with_room<T>(v: &mut Vec<T>, room: &mut usize) -> Vec<T> {
    *room = (*room).max(v.len());
    std::mem::replace(v, Vec::with_capacity(*room))
}

/// Registers for one more entry (reused from earlier aggregates when there are).
fn take_regs(regs: &mut Vec<Hll>, used: &mut usize) -> u32 {
    if *used == regs.len() {
        regs.push(Hll::new());
    }
    *used += 1;
    (*used - 1) as u32
}

/// One step of a weighted Boyer-Moore majority vote: `item` with `weight` against `(cand, w)`. A
/// weight of 0 changes nothing.
#[inline]
pub fn vote(state: &mut (u16, u32), item: u16, weight: u32) {
    let (cand, w) = state;
    if *cand == item {
        *w = w.saturating_add(weight);
    } else if *w < weight {
        *cand = item;
        *w = weight - *w;
    } else {
        *w -= weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use crate::window::Signal;

    #[test]
    fn a_vote_of_no_weight_changes_nothing() {
        for state in [(0, 0), (53, 0), (53, 7), (123, 1)] {
            for item in [0, 53, 123] {
                let mut s = state;
                vote(&mut s, item, 0);
                assert_eq!(s, state, "{state:?} {item}");
            }
        }
    }

    fn pkt(src: u32, ts: u64) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(ts),
            src: std::net::Ipv4Addr::from(src).into(),
            dst: [198, 51, 100, 1].into(),
            proto: 6,
            sport: 1000,
            dport: 80,
            tcp_flags: 0x02,
            wire_len: 60,
            ..PacketSummary::default()
        }
    }

    #[test]
    fn counts_are_exact_and_samples_follow_the_rate() {
        let mut a = ScopeAgg::new();
        let key = Key::host([198, 51, 100, 1].into());
        let exact = a.insert(key, 5, true, 1, true);
        for n in 0..100u32 {
            let p = pkt(n, 5 + u64::from(n));
            a.add(exact, &p, p.ts, PacketClass::of(&p), || {
                PeerDraw::new(Hll::hash(p.src), p.ts)
            });
        }
        let other = Key::host([198, 51, 100, 2].into());
        let sampled = a.insert(other, 7, true, 16, true);
        assert_eq!(a.find(key), Some(exact));
        for n in 0..16_000u32 {
            let p = pkt(n, 7 + u64::from(n));
            a.add(sampled, &p, p.ts, PacketClass::of(&p), || {
                PeerDraw::new(Hll::hash(p.src), p.ts)
            });
        }
        let mut seen = Vec::new();
        for (e, d) in a.take().iter() {
            let n: u64 = d.samples.map(|s| u64::from(s.rate)).sum();
            seen.push((
                e.key,
                e.counts().get(Signal::Packets),
                e.summaries,
                e.first_ts,
                n,
                d.regs.map(Hll::estimate),
            ));
        }
        assert_eq!(seen[0], (key, 100, 100, 5, 100, None));
        let (k, packets, summaries, first, stood_for, distinct) = seen[1];
        assert_eq!((k, packets, summaries, first), (other, 16_000, 16_000, 7));
        // about 1 000 samples of 16
        assert!((12_000..20_000).contains(&stood_for), "{stood_for}");
        let d = distinct.unwrap_or(0);
        assert!((15_000..17_000).contains(&d), "{d}");
        assert!(a.take().entries().is_empty());
        assert_eq!(a.find(key), None);
    }

    #[test]
    fn majority_vote_finds_the_majority() {
        let mut v = (0, 0);
        for (i, port) in [53, 123, 53, 53, 11211, 53, 53].iter().enumerate() {
            vote(&mut v, *port, 1 + (i as u32 % 2));
        }
        assert_eq!(v.0, 53);
    }
}
