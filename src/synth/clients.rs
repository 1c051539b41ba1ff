//! The legitimate clients of one victim (learned-floor, sig-syn-flood, sig-udp-flood, sig-ack-flood,
//! benign-day): real-stack TCP connections, established exchanges, DNS and pings from
//! 100.64.0.0/16, arriving as a Poisson process and merged by time in [`ClientGen`].

use super::address::{Victim, LEGIT_NET, V4_SERVERS};
use super::dns::legit_dns;
use super::packet::{Ends, Frame, IpFields, TcpSeg, ACK, FIN, PSH, SYN};
use super::rng::{splitmix64, Rng};
use super::schedule::{self, secs_to_ns, Arrivals, Day, SessionSource, Sessions};

/// TTL of what the victim (a Linux server, zero hops from the capture point) sends.
pub(super) const SERVER_TTL: u8 = 64;
/// Packets of one legit connection.
pub(super) const CONN_PACKETS: f64 = 10.0;

/// Direction of each legit connection step, `true` victim → client: handshake, request, two-segment
/// response, client ACK, then the victim closes; five packets each way.
const CONN_DIRS: [bool; 10] = [
    false, true, false, false, true, true, false, true, false, true,
];

/// What the legit clients of a [`ClientGen`] do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LegitMix {
    /// Connections to victim:port, nothing else.
    Conns { port: u16 },
    /// DNS queries to victim:53 and the victim's answers.
    Dns,
    /// Request/response exchanges over [`FLOWS`] established connections to victim:port.
    Established { port: u16 },
    /// benign-day: to `hosts` (the victim half the time, else one of its three neighbours), six in ten
    /// sessions connections (port 443, one in five port 80), three DNS lookups, one ping.
    Day { hosts: [u32; 4] },
}

/// Mean packets per benign-day session: (6 × 10 + 3 × 2 + 1 × 2) / 10.
pub(super) const DAY_PACKETS: f64 = 6.8;

/// The victim and three neighbours in its /24 (the first three of .1–.4 that are not the victim).
pub(super) fn day_hosts(victim: Victim) -> [u32; 4] {
    let v = match victim {
        Victim::V4(v) => v,
        // benign-day needs an IPv4 victim (`Plan::new`).
        Victim::V6(_) => V4_SERVERS | 10,
    };
    let mut hosts = [v; 4];
    let others = (1..=4u32)
        .map(|h| (v & 0xFFFF_FF00) | h)
        .filter(|&a| a != v);
    for (slot, a) in hosts[1..].iter_mut().zip(others) {
        *slot = a;
    }
    hosts
}

/// Established connections of [`LegitMix::Established`].
const FLOWS: usize = 1000;

/// One established connection: its client, and the next sequence numbers of both sides.
#[derive(Clone, Copy, Debug)]
struct Flow {
    pub(super) client: u32,
    pub(super) cport: u16,
    pub(super) cttl: u8,
    pub(super) rtt: u64,
    cseq: u32,
    sseq: u32,
    /// TCP timestamp clocks at the capture start.
    pub(super) tsc: u32,
    pub(super) tss: u32,
}

#[derive(Clone, Copy, Debug)]
enum LegitKind {
    /// One whole connection ([`CONN_DIRS`]).
    Conn(TcpNumbers),
    /// A request, a two-segment response and the client's ACK on an established connection
    /// (client, victim, victim, client).
    Exchange(TcpNumbers),
    /// A query and its answer; the name is drawn from `name`.
    Dns { qid: u16, name: u64, aaaa: bool },
    /// An echo request and its reply.
    Ping { ident: u16, seq: u16 },
}

/// What a TCP session of the legit clients numbers: the client's and the server's initial
/// sequence numbers, the lengths of the request and of the response's two segments, and the TCP
/// timestamp clocks at the session's `t0`.
#[derive(Clone, Copy, Debug)]
struct TcpNumbers {
    cseq: u32,
    sseq: u32,
    lq: u16,
    l1: u16,
    l2: u16,
    tsc: u32,
    tss: u32,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct LegitSession {
    client: u32,
    server: u32,
    cport: u16,
    sport: u16,
    /// TTL of the client's packets as captured.
    cttl: u8,
    /// Round-trip time, ns.
    rtt: u64,
    /// When the TCP timestamp clocks read `tsc`/`tss`.
    t0: u64,
    step: u8,
    kind: LegitKind,
}

/// A legit client's stack, fixed per address: TTL as captured (64 or 128 less 0–20 hops) and whether
/// it is Linux-like (TTL 64: ports 32768–60999, DF on UDP) or Windows-like (128: ports 49152–65535).
pub(super) fn client_stack(addr: u32) -> (u8, bool) {
    let mut x = u64::from(addr);
    let h = splitmix64(&mut x);
    let linux = h & 1 == 0;
    let hops = ((h >> 8) % 21) as u8;
    (if linux { 64 } else { 128 } - hops, linux)
}

/// TCP options of a SYN or SYN-ACK as Linux sends them: MSS 1460, SACK permitted, timestamps, NOP,
/// window scale 7 (20 bytes).
pub(super) fn syn_options(val: u32, ecr: u32) -> [u8; 20] {
    let (v, e) = (val.to_be_bytes(), ecr.to_be_bytes());
    [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, v[0], v[1], v[2], v[3], e[0], e[1], e[2], e[3], 1, 3, 3, 7,
    ]
}

/// The timestamps option of an established segment: NOP, NOP, timestamps (12 bytes).
pub(super) fn ts_option(val: u32, ecr: u32) -> [u8; 12] {
    let (v, e) = (val.to_be_bytes(), ecr.to_be_bytes());
    [1, 1, 8, 10, v[0], v[1], v[2], v[3], e[0], e[1], e[2], e[3]]
}

/// Legitimate clients of one victim: sessions arriving as a Poisson process, each a short exchange
/// with the victim, merged by time (the victim-centred counterpart of [`SessionGen`]).
pub(super) struct ClientGen {
    pub(super) rng: Rng,
    mix: LegitMix,
    pub(super) start: u64,
    arrivals: Arrivals,
    sessions: Sessions<LegitSession>,
    pub(super) victim: u32,
    pub(super) min_size: bool,
    flows: Vec<Flow>,
    pub(super) dns: [u8; 512],
}

impl ClientGen {
    /// `rate` sessions per second over `len` seconds from `start` (ns).
    pub(super) fn new(
        rng: Rng,
        mix: LegitMix,
        victim: u32,
        rate: f64,
        start: u64,
        len: f64,
        min_size: bool,
    ) -> ClientGen {
        let mut g = ClientGen {
            rng,
            mix,
            start,
            arrivals: Arrivals {
                rate,
                len,
                t: 0.0,
                day: None,
            },
            sessions: Sessions::new(),
            victim,
            min_size,
            flows: Vec::new(),
            dns: [0; 512],
        };
        if matches!(mix, LegitMix::Day { .. }) {
            g.arrivals.day = Some(Day::new(len, &mut g.rng));
        }
        if matches!(mix, LegitMix::Established { .. }) {
            g.flows = (0..FLOWS)
                .map(|_| {
                    let (client, cport, cttl) = g.client();
                    let r = &mut g.rng;
                    Flow {
                        client,
                        cport,
                        cttl,
                        rtt: r.range(4_000_000, 40_000_000),
                        cseq: r.next_u32(),
                        sseq: r.next_u32(),
                        tsc: r.next_u32(),
                        tss: r.next_u32(),
                    }
                })
                .collect();
        }
        g.sessions.next_arrival = g.arrival();
        g
    }

    pub(super) fn arrival(&mut self) -> Option<u64> {
        let t = self.arrivals.next(&mut self.rng)?;
        Some(self.start.saturating_add(secs_to_ns(t)))
    }

    pub(super) fn peek(&self) -> Option<u64> {
        self.sessions.peek()
    }

    /// Emits the earliest packet into `frame`; returns its length.
    pub(super) fn emit(&mut self, frame: &mut Frame) -> Option<usize> {
        schedule::emit(self, frame)
    }

    /// A client address of 100.64.0.0/16 (not .0.0 nor .255.255) and an ephemeral port of its stack.
    pub(super) fn client(&mut self) -> (u32, u16, u8) {
        let client = LEGIT_NET | self.rng.range(1, 0xfffe) as u32;
        let (cttl, linux) = client_stack(client);
        let cport = if linux {
            self.rng.range(32768, 60999)
        } else {
            self.rng.range(49152, 65535)
        } as u16;
        (client, cport, cttl)
    }

    fn new_session(&mut self, ts: u64) -> LegitSession {
        if let LegitMix::Established { port } = self.mix {
            return self.exchange(port);
        }
        let (client, cport, cttl) = self.client();
        let rtt = self.rng.range(4_000_000, 40_000_000);
        let min = self.min_size;
        let rng = &mut self.rng;
        let mut len = |lo: u64, hi: u64| if min { 0 } else { rng.range(lo, hi) as u16 };
        let (lq, l1, l2) = (len(80, 600), len(600, 1448), len(100, 1448));
        enum What {
            Conn(u16),
            Dns,
            Ping,
        }
        let (server, what) = match self.mix {
            LegitMix::Conns { port } => (self.victim, What::Conn(port)),
            LegitMix::Dns | LegitMix::Established { .. } => (self.victim, What::Dns),
            LegitMix::Day { hosts } => {
                let r = self.rng.next_u64();
                let server = hosts[[0, 0, 0, 1, 2, 3][(r % 6) as usize]];
                let what = match (r >> 8) % 10 {
                    0..=5 if (r >> 16).is_multiple_of(5) => What::Conn(80),
                    0..=5 => What::Conn(443),
                    6..=8 => What::Dns,
                    _ => What::Ping,
                };
                (server, what)
            }
        };
        let (sport, kind) = match what {
            What::Conn(port) => (
                port,
                LegitKind::Conn(TcpNumbers {
                    cseq: self.rng.next_u32(),
                    sseq: self.rng.next_u32(),
                    lq,
                    l1,
                    l2,
                    tsc: self.rng.next_u32(),
                    tss: self.rng.next_u32(),
                }),
            ),
            What::Dns => {
                let r = self.rng.next_u64();
                let kind = LegitKind::Dns {
                    qid: r as u16,
                    name: self.rng.next_u64(),
                    aaaa: (r >> 16) & 3 == 0,
                };
                (53, kind)
            }
            What::Ping => {
                let r = self.rng.next_u64();
                let kind = LegitKind::Ping {
                    ident: r as u16,
                    seq: (r >> 16) as u16 & 0xff,
                };
                (0, kind)
            }
        };
        LegitSession {
            client,
            server,
            cport,
            sport,
            cttl,
            rtt,
            t0: ts,
            step: 0,
            kind,
        }
    }

    /// The next exchange on a random established connection, whose sequence numbers move past it.
    fn exchange(&mut self, port: u16) -> LegitSession {
        let i = self.rng.below(self.flows.len() as u64) as usize;
        let min = self.min_size;
        let rng = &mut self.rng;
        let mut len = |lo: u64, hi: u64| if min { 0 } else { rng.range(lo, hi) as u16 };
        let (lq, l1, l2) = (len(50, 1200), len(200, 1448), len(100, 1448));
        // `new` makes FLOWS flows for this mix; the fallback is never used.
        let f = self.flows.get_mut(i).map_or(
            Flow {
                client: LEGIT_NET | 1,
                cport: 50_000,
                cttl: 64,
                rtt: 10_000_000,
                cseq: 0,
                sseq: 0,
                tsc: 0,
                tss: 0,
            },
            |f| {
                let now = *f;
                f.cseq = f.cseq.wrapping_add(u32::from(lq));
                f.sseq = f.sseq.wrapping_add(u32::from(l1) + u32::from(l2));
                now
            },
        );
        LegitSession {
            client: f.client,
            server: self.victim,
            cport: f.cport,
            sport: port,
            cttl: f.cttl,
            rtt: f.rtt,
            t0: self.start,
            step: 0,
            kind: LegitKind::Exchange(TcpNumbers {
                cseq: f.cseq,
                sseq: f.sseq,
                lq,
                l1,
                l2,
                tsc: f.tsc,
                tss: f.tss,
            }),
        }
    }

    /// Writes step `s.step` (sent at `ts`) of a session; returns the frame length and the gap to the
    /// next step.
    fn step(&mut self, s: &LegitSession, ts: u64, frame: &mut Frame) -> (usize, Option<u64>) {
        let half = s.rtt / 2;
        match s.kind {
            LegitKind::Conn(t) => {
                let i = usize::from(s.step).min(CONN_DIRS.len() - 1);
                let (q, a, b) = (u32::from(t.lq), u32::from(t.l1), u32::from(t.l2));
                let (c1, s1) = (t.cseq.wrapping_add(1), t.sseq.wrapping_add(1));
                let (cq, sab) = (c1.wrapping_add(q), s1.wrapping_add(a + b));
                let (seq, ack, flags, payload) = match i {
                    0 => (t.cseq, 0, SYN, 0),
                    1 => (t.sseq, c1, SYN | ACK, 0),
                    2 => (c1, s1, ACK, 0),
                    3 => (c1, s1, PSH | ACK, t.lq),
                    4 => (s1, cq, ACK, t.l1),
                    5 => (s1.wrapping_add(a), cq, PSH | ACK, t.l2),
                    6 => (cq, sab, ACK, 0),
                    7 => (sab, cq, FIN | ACK, 0),
                    8 => (cq, sab.wrapping_add(1), FIN | ACK, 0),
                    _ => (sab.wrapping_add(1), cq.wrapping_add(1), ACK, 0),
                };
                let from_server = CONN_DIRS[i];
                let len = self.tcp(
                    frame,
                    s,
                    ts,
                    from_server,
                    (seq, ack, flags, payload),
                    (t.tsc, t.tss),
                );
                // About 3.5 round trips plus the victim's think time and close delay: ~100 ms.
                let gap = match i {
                    2 => Some(self.rng.range(20_000, 500_000)),
                    3 => Some(half + self.rng.range(1_000_000, 20_000_000)),
                    4 => Some(self.rng.range(10_000, 300_000)),
                    6 => Some(half + self.rng.range(2_000_000, 20_000_000)),
                    7 => Some(half + self.rng.range(100_000, 1_000_000)),
                    9 => None,
                    _ => Some(half),
                };
                (len, gap)
            }
            LegitKind::Exchange(t) => {
                let i = s.step.min(3);
                let (q, a, b) = (u32::from(t.lq), u32::from(t.l1), u32::from(t.l2));
                let cq = t.cseq.wrapping_add(q);
                let (seg, from_server) = match i {
                    0 => ((t.cseq, t.sseq, PSH | ACK, t.lq), false),
                    1 => ((t.sseq, cq, ACK, t.l1), true),
                    2 => ((t.sseq.wrapping_add(a), cq, PSH | ACK, t.l2), true),
                    _ => ((cq, t.sseq.wrapping_add(a + b), ACK, 0), false),
                };
                let len = self.tcp(frame, s, ts, from_server, seg, (t.tsc, t.tss));
                let gap = match i {
                    0 => Some(half + self.rng.range(500_000, 10_000_000)),
                    1 => Some(self.rng.range(10_000, 300_000)),
                    2 => Some(half),
                    _ => None,
                };
                (len, gap)
            }
            LegitKind::Dns { qid, name, aaaa } => {
                let response = s.step > 0;
                let n = if self.min_size {
                    0
                } else {
                    legit_dns(&mut self.dns, qid, name, aaaa, response)
                };
                let client_side = Ends::V4 {
                    src: s.client,
                    dst: s.server,
                };
                let id = self.rng.next_u16();
                let len = if response {
                    let ip = IpFields {
                        id,
                        ttl: SERVER_TTL,
                        df: true,
                    };
                    frame.udp_ip(client_side.swap(), (s.sport, s.cport), &self.dns[..n], ip)
                } else {
                    // Linux-like clients set DF on UDP, Windows-like ones do not.
                    let ip = IpFields {
                        id,
                        ttl: s.cttl,
                        df: s.cttl <= 64,
                    };
                    frame.udp_ip(client_side, (s.cport, s.sport), &self.dns[..n], ip)
                };
                let gap = (!response).then(|| half * 2 + self.rng.range(50_000, 2_000_000));
                (len, gap)
            }
            LegitKind::Ping { ident, seq } => {
                let reply = s.step > 0;
                let payload = if self.min_size { 0 } else { 56 };
                let id = self.rng.next_u16();
                let client_side = Ends::V4 {
                    src: s.client,
                    dst: s.server,
                };
                let len = if reply {
                    frame.icmp_echo(client_side.swap(), 0, ident, seq, payload, id, SERVER_TTL)
                } else {
                    frame.icmp_echo(client_side, 8, ident, seq, payload, id, s.cttl)
                };
                let gap = (!reply).then(|| half * 2 + self.rng.range(20_000, 200_000));
                (len, gap)
            }
        }
    }

    /// One TCP segment of session `s` at `ts`: `seg` is (seq, ack, flags, payload) and `clocks` the
    /// TCP timestamp clocks at `s.t0`. SYNs carry the SYN options, other segments the timestamps
    /// option; --min-size frames carry none.
    fn tcp(
        &mut self,
        frame: &mut Frame,
        s: &LegitSession,
        ts: u64,
        from_server: bool,
        seg: (u32, u32, u8, u16),
        clocks: (u32, u32),
    ) -> usize {
        let (seq, ack, flags, payload) = seg;
        let clock =
            |base: u32, at: u64| base.wrapping_add((at.saturating_sub(s.t0) / 1_000_000) as u32);
        // The echoed value is the peer's clock half a round trip ago (0 in the first SYN).
        let heard = ts.saturating_sub(s.rtt / 2);
        let (mine, peer) = if from_server {
            (clocks.1, clocks.0)
        } else {
            clocks
        };
        let val = clock(mine, ts);
        let ecr = if flags == SYN { 0 } else { clock(peer, heard) };
        let (syn_opts, ts_opts) = (syn_options(val, ecr), ts_option(val, ecr));
        let opts: &[u8] = if self.min_size {
            &[]
        } else if flags & SYN != 0 {
            &syn_opts
        } else {
            &ts_opts
        };
        let win = match (flags & SYN != 0, from_server) {
            (true, false) => 64240,
            (true, true) => 65160,
            _ => self.rng.range(500, 3000) as u16,
        };
        let client_side = Ends::V4 {
            src: s.client,
            dst: s.server,
        };
        let (ends, ports, ttl) = if from_server {
            (client_side.swap(), (s.sport, s.cport), SERVER_TTL)
        } else {
            (client_side, (s.cport, s.sport), s.cttl)
        };
        let ip = IpFields {
            id: self.rng.next_u16(),
            ttl,
            df: true,
        };
        let seg = TcpSeg {
            ports,
            seq,
            ack,
            flags,
            win,
            opts,
            payload: usize::from(payload),
        };
        frame.tcp_seg(ends, ip, &seg)
    }
}

impl SessionSource for ClientGen {
    type Session = LegitSession;

    fn sessions(&mut self) -> &mut Sessions<LegitSession> {
        &mut self.sessions
    }

    fn arrive(&mut self, ts: u64) -> LegitSession {
        let s = self.new_session(ts);
        self.sessions.next_arrival = self.arrival();
        s
    }

    fn write_step(&mut self, s: &LegitSession, ts: u64, frame: &mut Frame) -> (usize, Option<u64>) {
        self.step(s, ts, frame)
    }

    fn advance(s: LegitSession) -> LegitSession {
        LegitSession {
            step: s.step + 1,
            ..s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::tests::*;

    #[test]
    fn learned_floor_is_steady_legit_connections_then_a_small_flood() {
        let o = SynthOptions {
            duration: Duration::from_secs(70),
            attack_start: Duration::from_secs(60),
            attack_duration: Duration::from_secs(5),
            background_pps: 100,
            attack_pps: 200,
            ..SynthOptions::default()
        };
        let (bytes, r) = gen(Scenario::LearnedFloor, &o);
        let victim: IpAddr = "198.51.100.10".parse().unwrap();
        let (t0, t1) = (
            o.start.as_nanos() + 60_000_000_000,
            o.start.as_nanos() + 65_000_000_000,
        );
        let (mut syn_before, mut inbound_before, mut attack) = (0u64, 0u64, 0u64);
        // Per connection (client, port): first and last packet time.
        let mut conns: HashMap<(IpAddr, u16), (u64, u64)> = HashMap::new();
        for (t, f) in records(&bytes) {
            let (src, dst) = ip_of(f);
            let (proto, sport, dport, flags) = check_frame(f, &o);
            assert_eq!(proto, 6);
            let (ttl, df, _, win, opts, _) = tcp_fields(f);
            if in_legit_net(src) {
                assert_eq!((dst, dport), (victim, 443));
                assert!(df && ((44..=64).contains(&ttl) || (108..=128).contains(&ttl)));
                if flags == SYN {
                    assert_eq!((win, opts), (64240, 20));
                    syn_before += u64::from(t < t0);
                }
                inbound_before += u64::from(t < t0);
                conns.entry((src, sport)).or_insert((t, t)).1 = t;
            } else if src == victim {
                assert!(in_legit_net(dst) && sport == 443 && ttl == 64);
                conns.get_mut(&(dst, dport)).expect("reply before SYN").1 = t;
            } else {
                assert!(matches!(src, IpAddr::V4(a) if is_public(u32::from(a))));
                assert_eq!((dst, dport, flags), (victim, 443, SYN));
                assert!((t0..t1).contains(&t));
                attack += 1;
            }
        }
        assert_eq!(attack, 1000);
        // 10 SYN/s and 50 packets/s in from the legit clients, within 20 %.
        let syn_rate = syn_before as f64 / 60.0;
        assert!((8.0..12.0).contains(&syn_rate), "legit SYN rate {syn_rate}");
        let in_rate = inbound_before as f64 / 60.0;
        assert!(
            (40.0..60.0).contains(&in_rate),
            "legit inbound rate {in_rate}"
        );
        // A connection lasts about 100 ms.
        let spans: Vec<u64> = conns.values().map(|(a, b)| b - a).collect();
        let mean = spans.iter().sum::<u64>() as f64 / spans.len() as f64 / 1e6;
        assert!((60.0..140.0).contains(&mean), "mean connection {mean} ms");
        assert!(spans.iter().all(|&d| d < 300_000_000));
        assert_eq!(r.labels.len(), 1);
        assert!(r.labels[0].first_packet.as_nanos() >= t0);
    }

    #[test]
    fn signature_floods_keep_legit_and_attack_apart() {
        let o = short();
        let victim: IpAddr = "198.51.100.10".parse().unwrap();
        let (t0, t1) = (
            o.start.as_nanos() + 2_000_000_000,
            o.start.as_nanos() + 4_000_000_000,
        );
        for (s, port) in [
            (Scenario::SigSynFlood, 80),
            (Scenario::SigUdpFlood, 53),
            (Scenario::SigAckFlood, 443),
        ] {
            let (bytes, r) = gen(s, &o);
            let (mut legit_in, mut replies, mut attack) = (0u64, 0u64, 0u64);
            let (mut ttls, mut ids, mut lens, mut attack_srcs) = (
                HashSet::new(),
                HashSet::new(),
                HashSet::new(),
                HashSet::new(),
            );
            for (t, f) in records(&bytes) {
                let (src, dst) = ip_of(f);
                let (proto, sport, dport, flags) = check_frame(f, &o);
                let ttl = f[22];
                let df = f[20] & 0x40 != 0;
                let ip_len = u16::from_be_bytes([f[16], f[17]]);
                let udp_payload = &f[42..14 + usize::from(ip_len)];
                if in_legit_net(src) {
                    assert_eq!((dst, dport), (victim, port), "{s}");
                    assert!(
                        (44..=64).contains(&ttl) || (108..=128).contains(&ttl),
                        "{s}"
                    );
                    ttls.insert(ttl);
                    ids.insert(u16::from_be_bytes([f[18], f[19]]));
                    lens.insert(ip_len);
                    legit_in += 1;
                    if proto == 6 {
                        let (_, df, _, win, opts, _) = tcp_fields(f);
                        assert!(df, "{s}");
                        if flags == SYN {
                            assert_eq!((win, opts), (64240, 20), "{s}");
                        } else {
                            assert!(opts == 12 && (500..=3000).contains(&win), "{s}: {win}");
                        }
                    } else {
                        assert_eq!(proto, 17);
                        // A DNS query: one question, not the flood's payload.
                        assert_eq!(&udp_payload[2..6], &[1, 0, 0, 1], "{s}");
                    }
                } else if src == victim {
                    assert!(in_legit_net(dst) && sport == port, "{s}");
                    replies += 1;
                } else {
                    assert!(
                        matches!(src, IpAddr::V4(a) if is_public(u32::from(a))),
                        "{s}: {src}"
                    );
                    assert_eq!((dst, dport), (victim, port), "{s}");
                    assert!((t0..t1).contains(&t), "{s}");
                    assert!(!df, "{s}");
                    attack_srcs.insert(src);
                    attack += 1;
                    match s {
                        Scenario::SigSynFlood => {
                            let (ttl, _, len, win, opts, _) = tcp_fields(f);
                            assert_eq!((flags, ttl, len, win, opts), (SYN, 64, 40, 512, 0));
                        }
                        Scenario::SigAckFlood => {
                            let (ttl, _, len, win, opts, _) = tcp_fields(f);
                            assert_eq!((flags, ttl, len, win, opts), (ACK, 128, 40, 1024, 0));
                        }
                        _ => {
                            assert_eq!((proto, ttl, ip_len), (17, 57, 20 + 8 + 512));
                            assert!(udp_payload.iter().all(|&b| b == b'X'));
                        }
                    }
                }
            }
            assert_eq!(attack, 10_000, "{s}");
            let legit_pps = legit_in as f64 / 5.0;
            assert!((1800.0..2200.0).contains(&legit_pps), "{s}: {legit_pps}");
            assert!(replies > legit_in / 2, "{s}: {replies} replies");
            assert!(
                ttls.len() > 20 && ids.len() > 5000 && lens.len() > 20,
                "{s}"
            );
            if s == Scenario::SigUdpFlood {
                assert!((250..=300).contains(&attack_srcs.len()));
            } else {
                assert!(attack_srcs.len() > 9_900);
            }
            assert_eq!(r.labels.len(), 1);
        }
    }

    #[test]
    fn benign_day_follows_the_day_to_the_victim_and_its_neighbours() {
        let o = SynthOptions {
            duration: Duration::from_secs(24 * 60),
            background_pps: 300,
            ..SynthOptions::default()
        };
        let (bytes, r) = gen(Scenario::BenignDay, &o);
        assert!(r.labels.is_empty());
        let hosts: Vec<IpAddr> = [
            "198.51.100.10",
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        // Packets per minute; sessions (SYNs, queries, echo requests) per destination.
        let mut per_min = [0u64; 24];
        let mut sessions: HashMap<IpAddr, u64> = HashMap::new();
        let mut protos = HashSet::new();
        for (i, (t, f)) in records(&bytes).into_iter().enumerate() {
            per_min[((t - o.start.as_nanos()) / 60_000_000_000) as usize] += 1;
            let (src, dst) = ip_of(f);
            let (client, server) = if in_legit_net(src) {
                (src, dst)
            } else {
                (dst, src)
            };
            assert!(
                in_legit_net(client) && hosts.contains(&server),
                "{src} > {dst}"
            );
            let proto = f[23];
            protos.insert(proto);
            let opening = match proto {
                6 => f[47] == SYN,
                17 => u16::from_be_bytes([f[36], f[37]]) == 53,
                _ => f[34] == 8,
            };
            if opening {
                assert_eq!(client, src);
                *sessions.entry(server).or_default() += 1;
            }
            if i % 7 == 0 {
                check_frame(f, &o);
            }
        }
        assert_eq!(protos, HashSet::from([1, 6, 17]));
        let total: u64 = sessions.values().sum();
        let victim_share = sessions[&hosts[0]] as f64 / total as f64;
        assert!(
            (0.45..0.55).contains(&victim_share),
            "victim {victim_share}"
        );
        assert!(hosts[1..]
            .iter()
            .all(|h| sessions[h] as f64 > 0.13 * total as f64));
        // The busiest minute is at about --background-pps, the quietest (04:00) ~30 % of it.
        let pps: Vec<f64> = per_min.iter().map(|&n| n as f64 / 60.0).collect();
        let (lo, hi) = (
            pps.iter().copied().fold(f64::MAX, f64::min),
            pps.iter().copied().fold(0.0, f64::max),
        );
        assert!((270.0..345.0).contains(&hi), "peak {hi} pps: {pps:?}");
        assert!((0.25..0.36).contains(&(lo / hi)), "night {lo} pps: {pps:?}");
        let at = |x: f64| pps.iter().position(|&p| p == x).unwrap();
        assert!(
            (2..=5).contains(&at(lo)) && (14..=18).contains(&at(hi)),
            "{pps:?}"
        );
        // Growth: 16:00-24:00 mirrors 08:00-16:00 on the cycle, and is ~9 % higher.
        let (am, pm) = (
            pps[8..16].iter().sum::<f64>(),
            pps[16..].iter().sum::<f64>(),
        );
        assert!(pm > 1.04 * am, "{pps:?}");
    }
}
