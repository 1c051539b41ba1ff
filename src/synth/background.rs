//! The benign background: complete TCP sessions, DNS lookups and pings between 5,500 clients and
//! about twenty servers ([`Mode::Background`]), and flash-crowd sessions from distinct clients to the
//! victim ([`Mode::Flash`]), merged by time in [`SessionGen`].

use super::address::{
    v6_server, Victim, SERVERS, V4_CLIENT_NET, V4_DNS_SERVER, V4_SERVERS, V6_CLIENT_NET,
};
use super::dns::{dns_header, dns_label, dns_tail};
use super::packet::{Ends, Frame, ACK, FIN, PSH, SYN};
use super::rng::{perm64, Rng};
use super::schedule::{self, Profile, Schedule, SessionSource, Sessions};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp {
        cseq: u32,
        sseq: u32,
        lq: u16,
        l1: u16,
        l2: u16,
        mss: u16,
    },
    Dns {
        qid: u16,
        name: u8,
        aaaa: bool,
    },
    Ping {
        ident: u16,
        seq: u16,
    },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Session {
    /// Client → server.
    ends: Ends,
    cport: u16,
    sport: u16,
    rtt: u32,
    step: u8,
    cttl: u8,
    sttl: u8,
    kind: Kind,
}

pub(super) enum Mode {
    Background,
    Flash {
        victim: Victim,
        next_client: u64,
        k1: u64,
        k2: u64,
    },
}

/// Direction of each TCP step: `true` server → client.
const TCP_DIRS: [bool; 10] = [
    false, true, false, false, true, true, false, false, true, false,
];

/// Background session mix, repeated: T4 = TCP over IPv4, T6 = TCP over IPv6, D = DNS, P = ping.
#[derive(Clone, Copy)]
enum Mix {
    T4,
    T6,
    D,
    P,
}
const MIX: [Mix; 10] = [
    Mix::T4,
    Mix::D,
    Mix::T4,
    Mix::T6,
    Mix::P,
    Mix::T4,
    Mix::D,
    Mix::T4,
    Mix::D,
    Mix::T4,
];

const QNAMES: [&str; 8] = [
    "www.example.com",
    "api.example.net",
    "cdn.example.org",
    "mail.example.com",
    "example.org",
    "static.example.net",
    "login.example.com",
    "updates.example.org",
];

const V4_CLIENTS: usize = 5000;
const V6_CLIENTS: usize = 500;

pub(super) struct SessionGen {
    pub(super) rng: Rng,
    mode: Mode,
    pub(super) sched: Schedule,
    arrival_k: u64,
    sessions: Sessions<Session>,
    clients4: Vec<u32>,
    clients6: Vec<u128>,
    /// Per-server load wave: (period s, phase rad).
    waves: [(f64, f64); SERVERS],
    pub(super) min_size: bool,
    pub(super) dns: [u8; 256],
    /// An address no session may use (syn-burst's victim): sessions that would are moved next door.
    pub(super) exclude: Option<Victim>,
}

impl SessionGen {
    pub(super) fn new(
        mut rng: Rng,
        mode: Mode,
        profile: Profile,
        start: u64,
        len: f64,
        min_size: bool,
    ) -> SessionGen {
        let (clients4, clients6) = if matches!(mode, Mode::Background) {
            let c4 = (0..V4_CLIENTS)
                .map(|_| V4_CLIENT_NET | (rng.range(256, (1 << 22) - 2) as u32))
                .collect();
            let c6 = (0..V6_CLIENTS)
                .map(|_| {
                    V6_CLIENT_NET | (u128::from(rng.next_u64()) << 16) | u128::from(rng.next_u16())
                })
                .collect();
            (c4, c6)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut waves = [(0.0, 0.0); SERVERS];
        for w in &mut waves {
            *w = (
                60.0 + 540.0 * rng.unit(),
                std::f64::consts::TAU * rng.unit(),
            );
        }
        let mut g = SessionGen {
            rng,
            mode,
            sched: Schedule::new(profile, start, len),
            arrival_k: 0,
            sessions: Sessions::new(),
            clients4,
            clients6,
            waves,
            min_size,
            dns: [0; 256],
            exclude: None,
        };
        g.sessions.next_arrival = g.sched.next(&mut g.rng);
        g
    }

    pub(super) fn peek(&self) -> Option<u64> {
        self.sessions.peek()
    }

    /// Emits the earliest packet into `frame`; returns its length.
    pub(super) fn emit(&mut self, frame: &mut Frame) -> Option<usize> {
        schedule::emit(self, frame)
    }

    /// `ends` with the excluded address, if either end is it, replaced by a neighbour: a server (or
    /// the DNS server) by the next or previous address, a client by its last bit flipped. Only
    /// addresses change, so the rest of the stream is the same as without the exclusion.
    fn avoid_excluded(&self, ends: Ends) -> Ends {
        let near4 = |a: u32| {
            if a & 0xff >= SERVERS as u32 {
                a - 1
            } else {
                a + 1
            }
        };
        let near6 = |a: u128| {
            if a & 0xffff >= 0x20 {
                a - 1
            } else {
                a + 1
            }
        };
        match (ends, self.exclude) {
            (Ends::V4 { src, dst }, Some(Victim::V4(v))) if src == v || dst == v => Ends::V4 {
                src: if src == v { src ^ 1 } else { src },
                dst: if dst == v { near4(dst) } else { dst },
            },
            (Ends::V6 { src, dst }, Some(Victim::V6(v))) if src == v || dst == v => Ends::V6 {
                src: if src == v { src ^ 1 } else { src },
                dst: if dst == v { near6(dst) } else { dst },
            },
            _ => ends,
        }
    }

    /// Index (0-based) of a web server, weighted by its slowly varying load at `t` seconds.
    fn pick_server(&mut self, t: f64) -> u32 {
        let mut w = [0.0f64; SERVERS];
        let mut total = 0.0;
        for (i, &(period, phase)) in self.waves.iter().enumerate() {
            total += 1.0 + 0.5 * (std::f64::consts::TAU * t / period + phase).sin();
            w[i] = total;
        }
        let x = self.rng.unit() * total;
        w.iter().position(|&c| x < c).unwrap_or(SERVERS - 1) as u32
    }

    fn new_session(&mut self, ts: u64) -> Session {
        let rng = &mut self.rng;
        let min = self.min_size;
        let tcp = |rng: &mut Rng, mss: u16| Kind::Tcp {
            cseq: rng.next_u32(),
            sseq: rng.next_u32(),
            lq: if min { 0 } else { rng.range(80, 600) as u16 },
            l1: if min {
                0
            } else {
                rng.range(600, u64::from(mss)) as u16
            },
            l2: if min {
                0
            } else {
                rng.range(100, u64::from(mss)) as u16
            },
            mss,
        };
        let ttl_of = |a: u64| {
            if a & 1 == 0 {
                64 - (a % 17) as u8
            } else {
                128 - (a % 23) as u8
            }
        };
        let cport = rng.range(32768, 60999) as u16;
        let rtt = rng.range(1_000_000, 40_000_000) as u32;
        match self.mode {
            Mode::Flash {
                victim,
                ref mut next_client,
                k1,
                k2,
            } => {
                let c = *next_client;
                *next_client += 1;
                let ends = match victim {
                    Victim::V4(v) => {
                        let host = (c.wrapping_mul(k1).wrapping_add(k2) as u32) & 0x003F_FFFF;
                        Ends::V4 {
                            src: V4_CLIENT_NET | host,
                            dst: v,
                        }
                    }
                    Victim::V6(v) => Ends::V6 {
                        src: V6_CLIENT_NET | u128::from(perm64(c, k1, k2)),
                        dst: v,
                    },
                };
                let (mss, cttl) = match ends {
                    Ends::V4 { src, .. } => (1460, ttl_of(u64::from(src))),
                    Ends::V6 { src, .. } => (1440, ttl_of(src as u64)),
                };
                let kind = tcp(rng, mss);
                Session {
                    ends,
                    cport,
                    sport: 443,
                    rtt,
                    step: 0,
                    cttl,
                    sttl: 62,
                    kind,
                }
            }
            Mode::Background => {
                let t = ts.saturating_sub(self.sched.start) as f64 / 1e9;
                let mix = MIX[(self.arrival_k % MIX.len() as u64) as usize];
                self.arrival_k += 1;
                let c4 = self.clients4[rng.below(self.clients4.len() as u64) as usize];
                let c6 = self.clients6[rng.below(self.clients6.len() as u64) as usize];
                let web_port = if rng.below(5) == 0 { 80 } else { 443 };
                let kind_rand = rng.next_u64();
                let (ends, sport, kind, cttl) = match mix {
                    Mix::T4 => {
                        let s = self.pick_server(t) + 1;
                        let e = Ends::V4 {
                            src: c4,
                            dst: V4_SERVERS | s,
                        };
                        (e, web_port, tcp(&mut self.rng, 1460), ttl_of(u64::from(c4)))
                    }
                    Mix::T6 => {
                        let s = self.pick_server(t) + 1;
                        let e = Ends::V6 {
                            src: c6,
                            dst: v6_server(s),
                        };
                        (e, web_port, tcp(&mut self.rng, 1440), ttl_of(c6 as u64))
                    }
                    Mix::D => {
                        let e = Ends::V4 {
                            src: c4,
                            dst: V4_DNS_SERVER,
                        };
                        let kind = Kind::Dns {
                            qid: kind_rand as u16,
                            name: ((kind_rand >> 16) % QNAMES.len() as u64) as u8,
                            aaaa: (kind_rand >> 32) & 3 == 0,
                        };
                        (e, 53, kind, ttl_of(u64::from(c4)))
                    }
                    Mix::P => {
                        let s = self.pick_server(t) + 1;
                        let e = Ends::V4 {
                            src: c4,
                            dst: V4_SERVERS | s,
                        };
                        let kind = Kind::Ping {
                            ident: kind_rand as u16,
                            seq: (kind_rand >> 16) as u16 & 0xff,
                        };
                        (e, 0, kind, ttl_of(u64::from(c4)))
                    }
                };
                let sttl = 64 - (kind_rand >> 40) as u8 % 5;
                let ends = self.avoid_excluded(ends);
                Session {
                    ends,
                    cport,
                    sport,
                    rtt,
                    step: 0,
                    cttl,
                    sttl,
                    kind,
                }
            }
        }
    }

    /// Writes step `s.step` of a session; returns the frame length and the gap to the next step.
    fn step(&mut self, s: &Session, frame: &mut Frame) -> (usize, Option<u64>) {
        let id = self.rng.next_u16();
        let half = u64::from(s.rtt / 2);
        match s.kind {
            Kind::Tcp {
                cseq,
                sseq,
                lq,
                l1,
                l2,
                mss,
            } => {
                let i = usize::from(s.step).min(TCP_DIRS.len() - 1);
                let (lq32, l1_32, l2_32) = (u32::from(lq), u32::from(l1), u32::from(l2));
                let c1 = cseq.wrapping_add(1);
                let s1 = sseq.wrapping_add(1);
                let (seq, ack, flags, payload) = match i {
                    0 => (cseq, 0, SYN, 0),
                    1 => (sseq, c1, SYN | ACK, 0),
                    2 => (c1, s1, ACK, 0),
                    3 => (c1, s1, PSH | ACK, lq),
                    4 => (s1, c1.wrapping_add(lq32), ACK, l1),
                    5 => (s1.wrapping_add(l1_32), c1.wrapping_add(lq32), PSH | ACK, l2),
                    6 | 7 => {
                        let f = if i == 6 { ACK } else { FIN | ACK };
                        (c1.wrapping_add(lq32), s1.wrapping_add(l1_32 + l2_32), f, 0)
                    }
                    8 => (
                        s1.wrapping_add(l1_32 + l2_32),
                        c1.wrapping_add(lq32 + 1),
                        FIN | ACK,
                        0,
                    ),
                    _ => (
                        c1.wrapping_add(lq32 + 1),
                        s1.wrapping_add(l1_32 + l2_32 + 1),
                        ACK,
                        0,
                    ),
                };
                let from_server = TCP_DIRS[i];
                let (ends, ports, ttl, win) = if from_server {
                    (s.ends.swap(), (s.sport, s.cport), s.sttl, 65160)
                } else {
                    (s.ends, (s.cport, s.sport), s.cttl, 64240)
                };
                let opt = (i < 2 && !self.min_size).then_some(mss);
                let len = frame.tcp(
                    ends,
                    ports,
                    seq,
                    ack,
                    flags,
                    win,
                    opt,
                    usize::from(payload),
                    id,
                    ttl,
                );
                let gap = (i + 1 < TCP_DIRS.len()).then(|| {
                    if TCP_DIRS[i + 1] != from_server {
                        let think = if i == 3 {
                            self.rng.range(100_000, 2_000_000)
                        } else {
                            0
                        };
                        half + think
                    } else {
                        self.rng.range(5_000, 100_000)
                    }
                });
                (len, gap)
            }
            Kind::Dns { qid, name, aaaa } => {
                let response = s.step > 0;
                let plen = if self.min_size {
                    0
                } else {
                    self.dns_message(qid, name, aaaa, response)
                };
                let len = if response {
                    frame.udp(
                        s.ends.swap(),
                        (s.sport, s.cport),
                        &self.dns[..plen],
                        id,
                        s.sttl,
                    )
                } else {
                    frame.udp(s.ends, (s.cport, s.sport), &self.dns[..plen], id, s.cttl)
                };
                (len, (!response).then_some(2 * half))
            }
            Kind::Ping { ident, seq } => {
                let reply = s.step > 0;
                let payload = if self.min_size { 0 } else { 56 };
                let len = if reply {
                    frame.icmp_echo(s.ends.swap(), 0, ident, seq, payload, id, s.sttl)
                } else {
                    frame.icmp_echo(s.ends, 8, ident, seq, payload, id, s.cttl)
                };
                (len, (!reply).then_some(2 * half))
            }
        }
    }

    /// A DNS query (or its one-answer response) in `self.dns`; returns its length.
    fn dns_message(&mut self, qid: u16, name: u8, aaaa: bool, response: bool) -> usize {
        let idx = usize::from(name) % QNAMES.len();
        let b = &mut self.dns;
        let mut p = dns_header(b, qid, response);
        for label in QNAMES[idx].split('.') {
            p = dns_label(b, p, label.as_bytes());
        }
        dns_tail(b, p, aaaa, response, idx as u32 + 1)
    }
}

impl SessionSource for SessionGen {
    type Session = Session;

    fn sessions(&mut self) -> &mut Sessions<Session> {
        &mut self.sessions
    }

    fn arrive(&mut self, ts: u64) -> Session {
        let s = self.new_session(ts);
        self.sessions.next_arrival = self.sched.next(&mut self.rng);
        s
    }

    fn write_step(&mut self, s: &Session, _ts: u64, frame: &mut Frame) -> (usize, Option<u64>) {
        self.step(s, frame)
    }

    fn advance(s: Session) -> Session {
        Session {
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
    fn benign_load_is_spread_over_servers() {
        let o = SynthOptions {
            duration: Duration::from_secs(10),
            ..short()
        };
        let (bytes, r) = gen(Scenario::Benign, &o);
        assert!(r.labels.is_empty());
        let mut per: HashMap<IpAddr, u64> = HashMap::new();
        let (mut srcs, mut syn, mut v6) = (HashSet::new(), 0, 0);
        for (_, f) in records(&bytes) {
            let (s, d) = ip_of(f);
            *per.entry(d).or_default() += 1;
            srcs.insert(s);
            v6 += u64::from(d.is_ipv6());
            let (proto, _, _, flags) = check_frame(f, &o);
            syn += u64::from(proto == 6 && flags == SYN);
        }
        let max = *per.values().max().unwrap();
        assert!((max as f64) < 0.3 * r.packets as f64);
        assert!(srcs.len() > 2000, "{} sources", srcs.len());
        assert!(v6 > 0);
        // One SYN per TCP session: about 6 sessions in 68 packets.
        let share = syn as f64 / r.packets as f64;
        assert!((0.07..0.1).contains(&share), "syn share {share}");
    }

    #[test]
    fn flash_crowd_sessions_complete_from_distinct_clients() {
        let o = short_alone();
        let (bytes, r) = gen(Scenario::FlashCrowd, &o);
        let victim: IpAddr = "198.51.100.10".parse().unwrap();
        let (mut syn_clients, mut synack, mut fin_from_client) = (HashSet::new(), 0, 0);
        for (_, f) in records(&bytes) {
            let (s, d) = ip_of(f);
            let (proto, _, _, flags) = check_frame(f, &o);
            assert_eq!(proto, 6);
            assert!(s == victim || d == victim);
            if flags == SYN {
                assert!(syn_clients.insert(s), "client {s} reused");
            }
            synack += u64::from(flags == SYN | ACK);
            fin_from_client += u64::from(flags == FIN | ACK && d == victim);
        }
        assert_eq!(syn_clients.len() as u64, r.packets / 10);
        assert_eq!(synack, r.packets / 10);
        assert_eq!(fin_from_client, r.packets / 10);
    }

    #[test]
    fn syn_burst_victim_hears_nothing_before_the_burst() {
        for victim in ["198.51.100.10", "2001:db8:100::10"] {
            let victim: IpAddr = victim.parse().unwrap();
            let o = SynthOptions {
                attack_pps: 25_000,
                attack_duration: Duration::from_millis(40),
                victim: Some(victim),
                ..short()
            };
            let (bytes, r) = gen(Scenario::SynBurst, &o);
            let t0 = o.start.as_nanos() + 2_000_000_000;
            let (mut to_victim, mut other) = (0, 0);
            for (t, f) in records(&bytes) {
                let (src, dst) = ip_of(f);
                assert_ne!(src, victim, "the victim sent a packet");
                if dst == victim {
                    assert!((t0..t0 + 40_000_000).contains(&t), "victim packet at {t}");
                    let (proto, _, dport, flags) = check_frame(f, &o);
                    assert_eq!((proto, dport, flags), (6, 80, SYN));
                    to_victim += 1;
                } else {
                    other += 1;
                }
            }
            assert_eq!(to_victim, 1000, "{victim}");
            assert!(other > 8000, "background of {other} packets");
            assert_eq!(r.labels.len(), 1);
            let l = &r.labels[0];
            assert_eq!(
                (l.scope, l.key, l.class),
                (
                    Scope::DstHost,
                    Key::host(victim),
                    AttackClass::SynFlood.into()
                )
            );
            assert!(l.first_packet.as_nanos() >= t0);
            assert!(l.last_packet.as_nanos() < t0 + 40_000_000);
        }
    }
}
