//! Light connection state for the request signals: which TCP connections completed their
//! handshake, whether a request head is open on them, whether the server spoke last.
//!
//! Nothing here trusts a source address. A connection exists only once its client acknowledged the
//! server's SYN-ACK with the right number (the SYN-ACK's sequence number plus one, which a spoofed
//! source never sees): a SYN flood, however large, creates no connection, and a SYN-ACK (a server's
//! answer, or a reflected one) only a half-open entry that expires. Both kinds are bounded; what
//! does not fit is refused and counted, never grown into. Both live in one map keyed by the
//! connection whichever way a packet went, so a packet of either end costs one lookup. A bare ACK
//! (no data, SYN, FIN or RST), which changes a connection only when it completes a handshake, is
//! looked up only when a small filter of the half-open entries says its flow may have one: the
//! bare ACKs of established connections cost a hash and one load.
//!
//! Per connection, from packet summaries alone (the payload's first bytes, [`sniff`]):
//! - a **request** is an HTTP/1.x request head starting a client segment, counted when the head
//!   is whole ([`HeaderFields::HEAD_END`]) or, when it is not, once the server answers it; an
//!   HTTP/2 preface; or, inside TLS, a client application-data record after the server last spoke
//!   (the request-like burst of a keep-alive connection: an estimate, said so in events);
//! - a **head held open** is a request head the server has not answered (no server data since)
//!   after [`HEAD_GRACE_NS`]: slowloris keeps hundreds of them, a browser none. Each such
//!   connection counts one per second it stays so ([`Tracker::tick`]).
//!
//! Connections to a loopback address are not tracked: a reverse proxy talking to its back end on
//! the same host opens one per request, and nothing on loopback crosses a network.
//!
//! What leaves is [`ConnEvent`]s for the client and the server, which the aggregator counts like
//! packets, in the same tick.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::FixedState;

use crate::decode::request_head::{sniff, Sniff};
use crate::decode::{proto, tcp_flags, HeaderFields, PacketSummary};

/// Half-open entries (SYN-ACK seen, ACK not yet) kept at most.
pub const MAX_HALF_OPEN: usize = 65_536;
/// Connections kept at most.
pub const MAX_CONNS: usize = 65_536;
/// How long a SYN-ACK waits for its ACK.
pub const HALF_OPEN_TTL_NS: u64 = 10_000_000_000;
/// A connection with no data, SYN, FIN or RST for this long is forgotten (slowloris sends a line
/// every 10–15 s; bare ACKs do not keep a connection: they skip the table, see [`Tracker::wants`]).
pub const IDLE_TTL_NS: u64 = 120_000_000_000;
/// How long a request head may stay unanswered before it counts as held open: longer than any
/// client takes to send a head and a server to start answering it.
pub const HEAD_GRACE_NS: u64 = 10_000_000_000;
/// Buckets of the half-open filter (a power of two): see [`Tracker::maybe_half_open`].
const HALF_OPEN_BUCKETS: usize = 1 << 14;
/// Sweeps of expired entries run at most this often (packet time).
const SWEEP_EVERY_NS: u64 = 1_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

/// A connection, seen from its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub client: IpAddr,
    pub server: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
}

/// A connection whichever way its packet went: the two ends in a fixed order (the lower address
/// and port first), so one lookup finds it from a packet of either end. Addresses are 128-bit
/// words (IPv4 in the low 32 bits, told apart by `v6`): compared and hashed as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FlowKey {
    lo: u128,
    hi: u128,
    lo_port: u16,
    hi_port: u16,
    v6: bool,
}

impl std::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let ports = u32::from(self.lo_port) << 16 | u32::from(self.hi_port);
        if self.v6 {
            h.write_u128(self.lo);
            h.write_u128(self.hi);
            h.write_u32(ports);
        } else {
            // an IPv4 connection is one 128-bit word
            h.write_u128(self.lo << 64 | self.hi << 32 | u128::from(ports));
        }
    }
}

/// An address as a word and whether it is IPv6.
#[inline]
fn word(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(a.to_bits()), false),
        IpAddr::V6(a) => (a.to_bits(), true),
    }
}

/// The half-open filter's bucket of the connection between (`a`, `a_port`) and (`b`, `b_port`),
/// the same whichever end comes first (a sum of the two ends' mixes), seeded like the table.
#[inline]
fn bucket(seed: u64, a: u128, a_port: u16, b: u128, b_port: u16) -> usize {
    let end = |w: u128, port: u16| {
        let x = (w as u64) ^ ((w >> 64) as u64) ^ (u64::from(port) << 48) ^ seed;
        x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    };
    let h = end(a, a_port)
        .wrapping_add(end(b, b_port))
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h >> (64 - HALF_OPEN_BUCKETS.trailing_zeros())) as usize
}

/// The address of a word.
fn address(w: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::from_bits(w))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::from_bits(w as u32))
    }
}

impl FlowKey {
    /// The key of the connection between (`a`, `a_port`) and (`b`, `b_port`), and whether `a` is
    /// its lower end.
    #[inline]
    fn of(a: IpAddr, a_port: u16, b: IpAddr, b_port: u16) -> (FlowKey, bool) {
        let ((wa, v6), (wb, _)) = (word(a), word(b));
        let a_lo = (wa, a_port) <= (wb, b_port);
        let key = if a_lo {
            FlowKey {
                lo: wa,
                hi: wb,
                lo_port: a_port,
                hi_port: b_port,
                v6,
            }
        } else {
            FlowKey {
                lo: wb,
                hi: wa,
                lo_port: b_port,
                hi_port: a_port,
                v6,
            }
        };
        (key, a_lo)
    }

    /// Its bucket of the half-open filter ([`bucket`]).
    fn bucket(&self, seed: u64) -> usize {
        bucket(seed, self.lo, self.lo_port, self.hi, self.hi_port)
    }

    /// The key of `p`'s connection, and whether its sender is the lower end.
    #[inline]
    fn of_packet(p: &PacketSummary) -> (FlowKey, bool) {
        FlowKey::of(p.src, p.sport, p.dst, p.dport)
    }

    /// The key of `flow`, and whether its client is the lower end.
    fn of_flow(flow: &Flow) -> (FlowKey, bool) {
        FlowKey::of(flow.client, flow.client_port, flow.server, flow.server_port)
    }

    /// The connection, with its client at the lower end or at the higher one.
    fn flow(&self, client_lo: bool) -> Flow {
        let (lo, hi) = (address(self.lo, self.v6), address(self.hi, self.v6));
        if client_lo {
            Flow {
                client: lo,
                server: hi,
                client_port: self.lo_port,
                server_port: self.hi_port,
            }
        } else {
            Flow {
                client: hi,
                server: lo,
                client_port: self.hi_port,
                server_port: self.lo_port,
            }
        }
    }
}

/// What one packet (or one tick) says about a connection, for its client and its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// The handshake completed.
    Handshake,
    /// A request (HTTP head, HTTP/2 preface, or a TLS client burst after the server spoke).
    Request,
    /// One more second of a request head held open.
    HeldSecond,
}

#[derive(Clone, Copy, Debug)]
struct HalfOpen {
    /// What the client's ACK must acknowledge.
    expect: u32,
    since: u64,
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    last: u64,
    /// When the open request head started (0: none open).
    head_since: u64,
    /// Held-open time credited so far (ns past the grace, not yet a whole second).
    held_ns: u64,
    /// Up to when the head's held time was credited.
    credited_to: u64,
    /// The server sent data since the client's last request.
    server_spoke: bool,
    /// The client sent a TLS handshake record.
    tls: bool,
    /// The scopes its packets are counted in (the aggregator's mask, passed through).
    mask: u8,
}

/// One entry of the table: a SYN-ACK waiting for its ACK, or a connection.
#[derive(Clone, Copy, Debug)]
enum State {
    HalfOpen(HalfOpen),
    Conn(Conn),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The client is the key's lower end.
    client_lo: bool,
    state: State,
}

/// Counters of the tracker itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub handshakes: u64,
    pub requests: u64,
    /// SYN-ACKs not remembered: the half-open table was full.
    pub half_open_refused: u64,
    /// Completed handshakes not tracked: the connection table was full.
    pub conns_refused: u64,
}

/// The connection table (see the module docs): half-open entries and connections in one map, so
/// that a packet of either end costs one lookup; each kind bounded by its own cap.
#[derive(Debug)]
pub struct Tracker {
    table: HashMap<FlowKey, Entry, FixedState>,
    half_open: usize,
    /// Half-open entries per bucket of [`bucket`]: a bare ACK whose bucket holds none cannot
    /// complete a handshake, and skips the table.
    half_open_at: Box<[u32]>,
    seed: u64,
    conns: usize,
    /// Connections with a request head open (a subset of the connections): what
    /// [`Tracker::tick`] walks.
    heads: Vec<Flow>,
    next_sweep: u64,
    stats: TrackerStats,
    /// The last packet taken was data from the client of an established connection.
    client_data: bool,
}

impl Tracker {
    /// An empty table whose hasher is seeded with `seed` (keys come from packets: attackers choose
    /// them; a fixed seed per run keeps a replay's output the same).
    pub fn new(seed: u64) -> Tracker {
        Tracker {
            table: HashMap::with_hasher(FixedState::with_seed(seed)),
            half_open: 0,
            half_open_at: vec![0; HALF_OPEN_BUCKETS].into_boxed_slice(),
            seed,
            conns: 0,
            heads: Vec::new(),
            next_sweep: 0,
            stats: TrackerStats::default(),
            client_data: false,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Whether the last packet [`Tracker::packet`] took was data from the client of an
    /// established connection (what a request head it carries may be believed for).
    pub fn last_was_client_data(&self) -> bool {
        self.client_data
    }

    /// Connections tracked now.
    pub fn connections(&self) -> usize {
        self.conns
    }

    /// Takes one TCP packet summary at packet time `now` (ns), counted in the scopes of `mask`;
    /// `out` gets what it completes, with the connection and the mask its events count in. A SYN
    /// without ACK returns at once: it never creates state. [`Tracker::wants`], then
    /// [`Tracker::take`].
    #[inline]
    pub fn packet(
        &mut self,
        p: &PacketSummary,
        now: u64,
        mask: u8,
        out: &mut impl FnMut(ConnEvent, &Flow, u8),
    ) {
        if self.wants(p) {
            self.take(p, now, mask, out);
        }
    }

    /// Whether `p` may change the table (then give it to [`Tracker::take`]); false for all that
    /// cannot: not TCP, a SYN, anything while the table is empty but a SYN-ACK, and a bare ACK
    /// (no data, no SYN, FIN or RST) of a flow with no half-open entry, since a bare ACK changes a
    /// connection only when it completes a handshake. Forgets what the last packet was
    /// ([`Tracker::last_was_client_data`]).
    #[inline]
    pub fn wants(&mut self, p: &PacketSummary) -> bool {
        self.client_data = false;
        if p.proto != proto::TCP
            || p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
        {
            return false;
        }
        if self.table.is_empty() && p.tcp_flags & tcp_flags::SYN == 0 {
            return false;
        }
        p.tcp_flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0
            || p.hdr.payload_len != 0
            || self.maybe_half_open(p)
    }

    /// Whether `p`'s flow may have a half-open entry (its bucket holds one; false: it has none).
    #[inline]
    fn maybe_half_open(&self, p: &PacketSummary) -> bool {
        let b = bucket(self.seed, word(p.src).0, p.sport, word(p.dst).0, p.dport);
        self.half_open_at.get(b).is_some_and(|&n| n != 0)
    }

    /// Counts a half-open entry of `key` in (`add`) or out of its bucket.
    fn note_half_open(&mut self, key: &FlowKey, add: bool) {
        if let Some(n) = self.half_open_at.get_mut(key.bucket(self.seed)) {
            *n = if add { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    /// Takes `p`, which [`Tracker::wants`] (what [`Tracker::packet`] says).
    #[inline(never)]
    pub fn take(
        &mut self,
        p: &PacketSummary,
        now: u64,
        mask: u8,
        out: &mut impl FnMut(ConnEvent, &Flow, u8),
    ) {
        let flags = p.tcp_flags;
        let (key, sender_lo) = FlowKey::of_packet(p);
        if flags & tcp_flags::SYN != 0 {
            // SYN-ACK from the server: remember what the client must acknowledge
            if p.src.is_loopback() {
                // a host talking to itself (a reverse proxy and its back end open a connection
                // per request): no network flood, and no connection state
                return;
            }
            let entry = Entry {
                client_lo: !sender_lo,
                state: State::HalfOpen(HalfOpen {
                    expect: p.tcp_num.wrapping_add(1),
                    since: now,
                }),
            };
            match self.table.get_mut(&key) {
                // a connection already open keeps its entry
                Some(Entry {
                    state: State::Conn(_),
                    ..
                }) => {}
                Some(e) => *e = entry,
                None if self.half_open < MAX_HALF_OPEN => {
                    self.table.insert(key, entry);
                    self.half_open += 1;
                    self.note_half_open(&key, true);
                }
                None => self.stats.half_open_refused += 1,
            }
            return;
        }
        let closing = flags & (tcp_flags::FIN | tcp_flags::RST) != 0;
        let data = p.hdr.payload_len > 0;
        let Some(e) = self.table.get_mut(&key) else {
            return;
        };
        let from_client = e.client_lo == sender_lo;
        match &mut e.state {
            State::Conn(c) if from_client => {
                if !data && !closing {
                    // a bare ACK leaves an established connection as it is (most never get
                    // here: see `wants`)
                    return;
                }
                c.last = now;
                let flow = key.flow(e.client_lo);
                if data {
                    self.client_data = true;
                    client_data(c, p, now, &flow, &mut self.heads, &mut self.stats, out);
                }
                if closing {
                    self.remove(&key);
                }
            }
            State::Conn(c) => {
                if !data && !closing {
                    // the server's bare ACKs say nothing
                    return;
                }
                c.last = now;
                if data {
                    // the server answered: a head that was open was a whole request after all
                    c.server_spoke = true;
                    if c.head_since != 0 {
                        c.head_since = 0;
                        self.stats.requests += 1;
                        let mask = c.mask;
                        out(ConnEvent::Request, &key.flow(e.client_lo), mask);
                    }
                }
                if closing {
                    self.remove(&key);
                }
            }
            State::HalfOpen(h) if from_client => {
                if flags & tcp_flags::ACK == 0 || p.tcp_num != h.expect || closing {
                    if closing {
                        self.remove(&key);
                    }
                    return;
                }
                let client_lo = e.client_lo;
                self.complete(p, now, mask, key, client_lo, out);
            }
            State::HalfOpen(_) => {}
        }
    }

    /// Forgets the entry of `key`.
    fn remove(&mut self, key: &FlowKey) {
        match self.table.remove(key) {
            Some(Entry {
                state: State::HalfOpen(_),
                ..
            }) => {
                self.half_open = self.half_open.saturating_sub(1);
                self.note_half_open(key, false);
            }
            Some(Entry {
                state: State::Conn(_),
                ..
            }) => self.conns = self.conns.saturating_sub(1),
            None => {}
        }
    }

    /// `p` from the client of half-open `key`, acknowledging its SYN-ACK: the handshake completed
    /// (its ACK may carry the first request).
    fn complete(
        &mut self,
        p: &PacketSummary,
        now: u64,
        mask: u8,
        key: FlowKey,
        client_lo: bool,
        out: &mut impl FnMut(ConnEvent, &Flow, u8),
    ) {
        let flow = key.flow(client_lo);
        self.stats.handshakes += 1;
        out(ConnEvent::Handshake, &flow, mask);
        if self.conns >= MAX_CONNS {
            self.remove(&key);
            self.stats.conns_refused += 1;
            return;
        }
        let mut c = Conn {
            last: now,
            head_since: 0,
            held_ns: 0,
            credited_to: 0,
            server_spoke: false,
            tls: false,
            mask,
        };
        if p.hdr.payload_len > 0 {
            self.client_data = true;
            client_data(&mut c, p, now, &flow, &mut self.heads, &mut self.stats, out);
        }
        if let Some(e) = self.table.get_mut(&key) {
            e.state = State::Conn(c);
            self.half_open = self.half_open.saturating_sub(1);
            self.conns += 1;
            self.note_half_open(&key, false);
        }
    }

    /// At a tick boundary at packet time `now`: each head held open past the grace counts its
    /// whole seconds, and (once a second) expired entries go.
    pub fn tick(&mut self, now: u64, out: &mut impl FnMut(ConnEvent, &Flow, u8)) {
        let table = &mut self.table;
        self.heads.retain(|flow| {
            let Some(Entry {
                state: State::Conn(c),
                ..
            }) = table.get_mut(&FlowKey::of_flow(flow).0)
            else {
                return false;
            };
            if c.head_since == 0 {
                return false;
            }
            let from = c
                .head_since
                .saturating_add(HEAD_GRACE_NS)
                .max(c.credited_to);
            if now > from {
                c.held_ns += now - from;
                c.credited_to = now;
                while c.held_ns >= SECOND_NS {
                    c.held_ns -= SECOND_NS;
                    out(ConnEvent::HeldSecond, flow, c.mask);
                }
            }
            true
        });
        if now >= self.next_sweep {
            self.next_sweep = now.saturating_add(SWEEP_EVERY_NS);
            self.table.retain(|_, e| match e.state {
                State::HalfOpen(h) => now.saturating_sub(h.since) < HALF_OPEN_TTL_NS,
                State::Conn(c) => now.saturating_sub(c.last) < IDLE_TTL_NS,
            });
            self.half_open = 0;
            self.conns = 0;
            self.half_open_at.fill(0);
            let seed = self.seed;
            for (key, e) in &self.table {
                match e.state {
                    State::HalfOpen(_) => {
                        self.half_open += 1;
                        if let Some(n) = self.half_open_at.get_mut(key.bucket(seed)) {
                            *n += 1;
                        }
                    }
                    State::Conn(_) => self.conns += 1,
                }
            }
        }
    }
}

/// Data from the client on connection `c`.
#[inline]
fn client_data(
    c: &mut Conn,
    p: &PacketSummary,
    now: u64,
    flow: &Flow,
    heads: &mut Vec<Flow>,
    stats: &mut TrackerStats,
    out: &mut impl FnMut(ConnEvent, &Flow, u8),
) {
    match sniff(p.hdr.prefix()) {
        Sniff::HttpMethod if p.hdr.bits & HeaderFields::HEAD_END == 0 => {
            // a head not whole in its first segment: a request once the server answers it,
            // held open (slowloris) while it does not
            if c.head_since == 0 {
                if heads.len() < MAX_CONNS {
                    heads.push(*flow);
                }
                c.held_ns = 0;
                c.credited_to = 0;
            }
            c.head_since = now.max(1);
            c.server_spoke = false;
        }
        Sniff::HttpMethod | Sniff::H2Preface => {
            stats.requests += 1;
            out(ConnEvent::Request, flow, c.mask);
            c.head_since = 0;
            c.server_spoke = false;
        }
        Sniff::TlsHandshake => c.tls = true,
        Sniff::TlsAppData if c.tls && c.server_spoke => {
            stats.requests += 1;
            out(ConnEvent::Request, flow, c.mask);
            c.server_spoke = false;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::HeaderFields;
    use crate::time::Timestamp;
    use std::net::Ipv4Addr;

    const CLIENT: [u8; 4] = [192, 0, 2, 7];
    const SERVER: [u8; 4] = [198, 51, 100, 80];
    const S: u64 = SECOND_NS;

    fn seg(from_client: bool, flags: u8, num: u32, payload: &[u8]) -> PacketSummary {
        let (src, dst, sport, dport) = if from_client {
            (CLIENT, SERVER, 40_000, 80)
        } else {
            (SERVER, CLIENT, 80, 40_000)
        };
        let mut hdr = HeaderFields {
            payload_len: payload.len() as u16,
            bits: HeaderFields::KNOWN | HeaderFields::L4,
            ..HeaderFields::UNKNOWN
        };
        for (d, s) in hdr.prefix.iter_mut().zip(payload) {
            *d = *s;
        }
        hdr.prefix_len = payload.len().min(4) as u8;
        PacketSummary {
            hdr,
            ts: Timestamp(0),
            src: Ipv4Addr::from(src).into(),
            dst: Ipv4Addr::from(dst).into(),
            proto: proto::TCP,
            sport,
            dport,
            tcp_flags: flags,
            tcp_num: num,
            wire_len: 60 + payload.len() as u32,
            ..PacketSummary::default()
        }
    }

    const ACK: u8 = tcp_flags::ACK;
    const PSH_ACK: u8 = tcp_flags::PSH | tcp_flags::ACK;

    fn run(t: &mut Tracker, packets: &[(u64, PacketSummary)]) -> Vec<ConnEvent> {
        let mut got = Vec::new();
        for (now, p) in packets {
            t.packet(p, *now, 15, &mut |e, _, _| got.push(e));
        }
        got
    }

    fn handshake(server_isn: u32) -> Vec<(u64, PacketSummary)> {
        vec![
            (1, seg(true, tcp_flags::SYN, 1000, b"")),
            (2, seg(false, tcp_flags::SYN | ACK, server_isn, b"")),
            (3, seg(true, ACK, server_isn.wrapping_add(1), b"")),
        ]
    }

    #[test]
    fn a_handshake_completes_only_with_the_right_acknowledgement() {
        let mut t = Tracker::new(1);
        assert_eq!(
            run(&mut t, &handshake(u32::MAX)),
            vec![ConnEvent::Handshake]
        );
        assert_eq!(t.connections(), 1);
        // a blind ACK after a SYN-ACK (a spoofer guessing) creates nothing
        let mut t = Tracker::new(1);
        let mut pk = handshake(5000);
        pk[2].1.tcp_num = 4242;
        assert!(run(&mut t, &pk).is_empty());
        assert_eq!(t.connections(), 0);
    }

    #[test]
    fn spoofed_syns_create_no_state() {
        let mut t = Tracker::new(1);
        for i in 0..10_000u32 {
            let mut p = seg(true, tcp_flags::SYN, i, b"");
            p.src = Ipv4Addr::from(0x0a00_0000 + i).into();
            t.packet(&p, u64::from(i), 15, &mut |_, _, _| panic!("no event"));
        }
        assert_eq!((t.half_open, t.connections()), (0, 0));
    }

    #[test]
    fn requests_and_held_heads() {
        let mut t = Tracker::new(1);
        let mut pk = handshake(7);
        // a whole head, then one cut short that the server answers, then one it never answers
        let mut whole = seg(true, PSH_ACK, 8, b"GET / HTTP/1.1\r\n\r\n");
        whole.hdr.bits |= HeaderFields::HEAD_END;
        pk.push((4, whole));
        pk.push((5, seg(false, PSH_ACK, 1, b"HTTP/1.1 200 OK")));
        pk.push((6, seg(true, PSH_ACK, 8, b"GET /b HTTP/1.1\r\n")));
        pk.push((7, seg(false, PSH_ACK, 1, b"HTTP/1.1 200 OK")));
        pk.push((8, seg(true, PSH_ACK, 8, b"GET /a HTTP/1.1\r\n")));
        // a body segment is no request
        pk.push((9, seg(true, PSH_ACK, 8, b"x=1&y")));
        let got = run(&mut t, &pk);
        assert_eq!(
            got,
            vec![ConnEvent::Handshake, ConnEvent::Request, ConnEvent::Request]
        );
        // the second head is never answered: after the grace, one per second
        let mut held = 0;
        for s in 1..=31u64 {
            t.tick(s * S, &mut |e, f, _| {
                assert_eq!((e, f.client), (ConnEvent::HeldSecond, IpAddr::from(CLIENT)));
                held += 1;
            });
        }
        // the head opened at 8 ns: 31 s - 10 s of grace - 8 ns is 20 whole seconds
        assert_eq!(held, 20, "seconds past the grace");
        // the server answers: nothing more
        t.packet(
            &seg(false, PSH_ACK, 1, b"HTTP"),
            30 * S,
            15,
            &mut |_, _, _| {},
        );
        t.tick(40 * S, &mut |_, _, _| panic!("answered"));
        // FIN ends it
        t.packet(
            &seg(true, tcp_flags::FIN | ACK, 8, b""),
            41 * S,
            15,
            &mut |_, _, _| {},
        );
        assert_eq!(t.connections(), 0);
    }

    #[test]
    fn tls_requests_are_client_bursts_after_the_server_spoke() {
        let mut t = Tracker::new(1);
        let mut pk = handshake(9);
        pk.push((4, seg(true, PSH_ACK, 10, &[0x16, 3, 1, 0])));
        pk.push((5, seg(false, PSH_ACK, 1, &[0x16, 3, 3, 0])));
        pk.push((6, seg(true, PSH_ACK, 10, &[0x17, 3, 3, 0])));
        // a second segment of the same burst: not another request
        pk.push((7, seg(true, PSH_ACK, 10, &[0x17, 3, 3, 0])));
        pk.push((8, seg(false, PSH_ACK, 1, &[0x17, 3, 3, 0])));
        pk.push((9, seg(true, PSH_ACK, 10, &[0x17, 3, 3, 0])));
        let got = run(&mut t, &pk);
        assert_eq!(
            got,
            vec![ConnEvent::Handshake, ConnEvent::Request, ConnEvent::Request]
        );
    }

    #[test]
    fn tables_are_bounded_and_expire() {
        let mut t = Tracker::new(3);
        for i in 0..(MAX_HALF_OPEN as u32 + 100) {
            let mut p = seg(false, tcp_flags::SYN | ACK, i, b"");
            p.dst = Ipv4Addr::from(0x0a00_0000 + i).into();
            t.packet(&p, 1, 15, &mut |_, _, _| {});
        }
        assert_eq!(t.half_open, MAX_HALF_OPEN);
        assert_eq!(t.stats().half_open_refused, 100);
        t.tick(HALF_OPEN_TTL_NS + 2, &mut |_, _, _| {});
        assert_eq!(t.half_open, 0);
        assert!(t.half_open_at.iter().all(|&n| n == 0));
    }

    #[test]
    fn bare_acks_skip_the_table_unless_they_may_complete_a_handshake() {
        let mut t = Tracker::new(1);
        let pk = handshake(41);
        // the SYN-ACK leaves a half-open entry: the client's bare ACK is wanted, and completes it
        assert!(run(&mut t, &pk[..2]).is_empty());
        assert!(t.wants(&pk[2].1));
        assert_eq!(run(&mut t, &pk[2..]), vec![ConnEvent::Handshake]);
        // once open, bare ACKs of either end pass by; data, FIN and RST do not
        let bare = seg(true, ACK, 42, b"");
        assert!(!t.wants(&bare));
        assert!(!t.wants(&seg(false, ACK, 1, b"")));
        assert!(t.wants(&seg(true, PSH_ACK, 42, b"GET")));
        assert!(t.wants(&seg(true, ACK | tcp_flags::FIN, 42, b"")));
        assert!(t.wants(&seg(false, tcp_flags::RST, 0, b"")));
        // the filter is kept across a sweep: a SYN-ACK older than the sweep still completes
        let mut t = Tracker::new(7);
        run(&mut t, &pk[..2]);
        t.tick(3 * S, &mut |_, _, _| {});
        assert_eq!(t.half_open, 1);
        assert_eq!(
            run(&mut t, &[(3 * S + 1, pk[2].1)]),
            vec![ConnEvent::Handshake]
        );
        assert!(t.half_open_at.iter().all(|&n| n == 0));
    }

    #[test]
    fn the_half_open_filter_is_the_same_from_either_end() {
        let a = word(IpAddr::from(CLIENT)).0;
        let b = word(IpAddr::from(SERVER)).0;
        assert_eq!(bucket(9, a, 40_000, b, 80), bucket(9, b, 80, a, 40_000));
        let (key, _) = FlowKey::of(IpAddr::from(SERVER), 80, IpAddr::from(CLIENT), 40_000);
        assert_eq!(key.bucket(9), bucket(9, a, 40_000, b, 80));
    }
}
