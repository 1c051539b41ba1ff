//! The packet-level attack streams: SYN floods (plain, spoofed, ramped, pulsed, from numbered
//! sources), UDP and ICMP floods, carpet bombing, DNS reflection as IPv4 fragments, and the
//! signature floods (hping-like SYNs, 'X' UDP, bare ACKs), written by [`AttackGen`].

use super::address::{ephemeral_port, random_public, Spoof, Victim, V6_SPOOF_NET};
use super::packet::{Ends, Frame, IpFields, TcpSeg, ACK, ETH, FILLER, SYN};
use super::plan::floor_sources;
use super::rng::Rng;
use super::schedule::{Profile, Schedule};
use super::SynthOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AttackKind {
    None,
    Syn,
    Spoofed,
    UdpFew,
    DnsFrag,
    Icmp,
    Carpet,
    /// sources-at-floor: SYNs from a few numbered sources in turn.
    FloorSyn,
    /// sig-syn-flood: hping-like SYNs to port 80.
    HpingSyn,
    /// sig-udp-flood: fixed 'X' payloads to port 53 from [`X_SOURCES`] sources.
    XUdp,
    /// sig-ack-flood: bare ACKs to port 443.
    BareAck,
}

/// Sources of the sig-udp-flood attack.
const X_SOURCES: usize = 300;
/// The sig-udp-flood payload: 512 'X' bytes.
static X_PAYLOAD: [u8; 512] = [b'X'; 512];

const RESOLVERS: usize = 500;
const ICMP_HOSTS: usize = 20;
const DNS_RESPONSE: usize = 3000;
const FRAG_DATA: usize = 1480;
const UDP_FLOOD_PAYLOAD: usize = 512;
const CARPET_PAYLOAD: usize = 100;
pub(super) const SYN_WINDOWS: [u16; 5] = [512, 5840, 8192, 29200, 64240];

pub(super) struct AttackGen {
    pub(super) rng: Rng,
    pub(super) kind: AttackKind,
    pub(super) sched: Schedule,
    pub(super) next: Option<u64>,
    pub(super) k: u64,
    pub(super) victim: Victim,
    pub(super) min_size: bool,
    resolvers: Vec<u32>,
    icmp_hosts: [(u32, u16, u16); ICMP_HOSTS],
    udp_srcs: [(u32, u16); 3],
    dgram: Vec<u8>,
    pub(super) frag: (u32, u16, u8),
    spoof: Spoof,
    /// FloorSyn sources: (address, SYN window, TTL), one fixed stack each.
    pub(super) floor_srcs: Vec<(u32, u16, u8)>,
    /// Index in `floor_srcs` of the source of the packet last emitted.
    pub(super) last_source: Option<usize>,
    /// Destination port of Syn and Spoofed SYNs.
    pub(super) syn_port: u16,
    /// XUdp sources.
    x_srcs: Vec<u32>,
}

impl AttackGen {
    pub(super) fn new(
        mut rng: Rng,
        kind: AttackKind,
        profile: Profile,
        start: u64,
        len: f64,
        victim: Victim,
        opts: &SynthOptions,
    ) -> AttackGen {
        let resolvers = if kind == AttackKind::DnsFrag {
            (0..RESOLVERS).map(|_| random_public(&mut rng)).collect()
        } else {
            Vec::new()
        };
        // 20 distinct hosts of 192.0.2.0/24 (partial Fisher-Yates over 1..=254).
        let mut pool: [u8; 254] = [0; 254];
        for (i, p) in pool.iter_mut().enumerate() {
            *p = i as u8 + 1;
        }
        let mut icmp_hosts = [(0u32, 0u16, 0u16); ICMP_HOSTS];
        for (i, h) in icmp_hosts.iter_mut().enumerate() {
            let j = i + rng.below((pool.len() - i) as u64) as usize;
            pool.swap(i, j);
            *h = (
                0xC000_0200 | u32::from(pool[i]),
                rng.next_u16(),
                rng.next_u16(),
            );
        }
        let mut udp_srcs = [(0u32, 0u16); 3];
        for (s, host) in udp_srcs.iter_mut().zip([5u32, 17, 99]) {
            *s = (0xCB00_7100 | host, ephemeral_port(&mut rng));
        }
        let dgram_len = if opts.min_size { 24 } else { 8 + DNS_RESPONSE };
        let mut dgram = vec![0u8; dgram_len];
        for (i, b) in dgram.iter_mut().enumerate().skip(20) {
            *b = FILLER[(i - 20) % FILLER.len()];
        }
        let mut spoof = Spoof::v4_v6(opts.sources, &mut rng);
        let floor_srcs = if kind == AttackKind::FloorSyn {
            (0..floor_sources(opts))
                .map(|_| {
                    let (src, _) = spoof.next(false);
                    let r = rng.next_u64();
                    let win = SYN_WINDOWS[(r % SYN_WINDOWS.len() as u64) as usize];
                    (src, win, 40 + ((r >> 8) % 25) as u8)
                })
                .collect()
        } else {
            Vec::new()
        };
        let x_srcs = if kind == AttackKind::XUdp {
            (0..X_SOURCES).map(|_| random_public(&mut rng)).collect()
        } else {
            Vec::new()
        };
        let mut sched = Schedule::new(profile, start, len);
        if kind == AttackKind::DnsFrag {
            // Whole responses only: every datagram gets its three fragments.
            sched.n -= sched.n % 3;
        }
        let mut g = AttackGen {
            rng,
            kind,
            sched,
            next: None,
            k: 0,
            victim,
            min_size: opts.min_size,
            resolvers,
            icmp_hosts,
            udp_srcs,
            dgram,
            frag: (0, 0, 64),
            spoof,
            floor_srcs,
            last_source: None,
            syn_port: 80,
            x_srcs,
        };
        g.next = g.sched.next(&mut g.rng);
        g
    }

    pub(super) fn peek(&self) -> Option<u64> {
        self.next
    }

    pub(super) fn emit(&mut self, frame: &mut Frame) -> usize {
        let k = self.k;
        self.k += 1;
        let id = self.rng.next_u16();
        let len = match (self.kind, self.victim) {
            (AttackKind::Syn | AttackKind::Spoofed | AttackKind::None, victim) => {
                let v6 = matches!(victim, Victim::V6(_));
                let (s4, s6) = if self.kind == AttackKind::Spoofed {
                    self.spoof.next(v6)
                } else if v6 {
                    let low = (u128::from(self.rng.next_u64()) << 28)
                        | u128::from(self.rng.next_u32() >> 4);
                    (0, V6_SPOOF_NET | low)
                } else {
                    (random_public(&mut self.rng), 0)
                };
                let ends = match victim {
                    Victim::V4(d) => Ends::V4 { src: s4, dst: d },
                    Victim::V6(d) => Ends::V6 { src: s6, dst: d },
                };
                let r = self.rng.next_u64();
                let win = SYN_WINDOWS[((r >> 16) % SYN_WINDOWS.len() as u64) as usize];
                let ttl = 40 + ((r >> 24) % 25) as u8;
                bare_syn(frame, ends, self.syn_port, r, win, (id, ttl))
            }
            (AttackKind::UdpFew, Victim::V4(d)) => {
                let (src, sport) = self.udp_srcs[self.rng.below(3) as usize];
                let dport = self.rng.range(1, 65535) as u16;
                let n = if self.min_size { 0 } else { UDP_FLOOD_PAYLOAD };
                frame.udp(
                    Ends::V4 { src, dst: d },
                    (sport, dport),
                    &FILLER[..n],
                    id,
                    52,
                )
            }
            (AttackKind::DnsFrag, Victim::V4(d)) => {
                let j = (k % 3) as usize;
                let step = if self.min_size { 8 } else { FRAG_DATA };
                if j == 0 {
                    let src = self.resolvers[self.rng.below(self.resolvers.len() as u64) as usize];
                    let ttl = 44 + (src % 20) as u8;
                    self.frag = (src, id, ttl);
                    let ulen = self.dgram.len() as u16;
                    let dport = ephemeral_port(&mut self.rng);
                    let u = &mut self.dgram;
                    u[0..2].copy_from_slice(&53u16.to_be_bytes());
                    u[2..4].copy_from_slice(&dport.to_be_bytes());
                    u[4..6].copy_from_slice(&ulen.to_be_bytes());
                    u[6..8].fill(0);
                    if u.len() >= 20 {
                        // DNS header: id, response flags, 1 question, many answers.
                        u[8..10].copy_from_slice(&self.rng.next_u16().to_be_bytes());
                        u[10..12].copy_from_slice(&0x8180u16.to_be_bytes());
                        u[12..14].copy_from_slice(&1u16.to_be_bytes());
                        u[14..16].copy_from_slice(&60u16.to_be_bytes());
                        u[16..20].fill(0);
                    }
                }
                let (src, ipid, ttl) = self.frag;
                let off = j * step;
                let end = if j == 2 {
                    self.dgram.len()
                } else {
                    (off + step).min(self.dgram.len())
                };
                let data = self.dgram.get(off..end).unwrap_or(&[]);
                frame.fragment(Ends::V4 { src, dst: d }, ipid, off, j < 2, data, ttl)
            }
            (AttackKind::Icmp, Victim::V4(d)) => {
                let h = self.rng.below(ICMP_HOSTS as u64) as usize;
                let (src, ident, seq) = self.icmp_hosts[h];
                self.icmp_hosts[h].2 = seq.wrapping_add(1);
                let n = if self.min_size { 0 } else { 56 };
                frame.icmp_echo(Ends::V4 { src, dst: d }, 8, ident, seq, n, id, 57)
            }
            (AttackKind::Carpet, Victim::V4(d)) => {
                let dst = (d & 0xFFFF_FF00) | ((k % 254) as u32 + 1);
                let src = random_public(&mut self.rng);
                let sport = ephemeral_port(&mut self.rng);
                let dport = self.rng.range(1, 65535) as u16;
                let n = if self.min_size { 0 } else { CARPET_PAYLOAD };
                frame.udp(Ends::V4 { src, dst }, (sport, dport), &FILLER[..n], id, 50)
            }
            (AttackKind::FloorSyn, Victim::V4(d)) => {
                // In turn, so each source's packets are evenly spaced; `Plan::new` makes sure there
                // is at least one source.
                let i = (k % self.floor_srcs.len().max(1) as u64) as usize;
                let (src, win, ttl) = self.floor_srcs.get(i).copied().unwrap_or_default();
                self.last_source = Some(i);
                let r = self.rng.next_u64();
                bare_syn(frame, Ends::V4 { src, dst: d }, 80, r, win, (id, ttl))
            }
            (AttackKind::HpingSyn | AttackKind::BareAck, Victim::V4(d)) => {
                let src = random_public(&mut self.rng);
                let r = self.rng.next_u64();
                let hping = self.kind == AttackKind::HpingSyn;
                let seg = TcpSeg {
                    ports: (1024 + (r as u16) % 64512, if hping { 80 } else { 443 }),
                    seq: (r >> 32) as u32,
                    ack: if hping { 0 } else { self.rng.next_u32() },
                    flags: if hping { SYN } else { ACK },
                    win: if hping { 512 } else { 1024 },
                    opts: &[],
                    payload: 0,
                };
                let ip = IpFields {
                    id,
                    ttl: if hping { 64 } else { 128 },
                    df: false,
                };
                frame.tcp_seg(Ends::V4 { src, dst: d }, ip, &seg)
            }
            (AttackKind::XUdp, Victim::V4(d)) => {
                let i = self.rng.below(self.x_srcs.len() as u64) as usize;
                let src = self.x_srcs.get(i).copied().unwrap_or(0x0101_0101);
                let sport = ephemeral_port(&mut self.rng);
                let n = if self.min_size { 0 } else { X_PAYLOAD.len() };
                let ip = IpFields {
                    id,
                    ttl: 57,
                    df: false,
                };
                frame.udp_ip(Ends::V4 { src, dst: d }, (sport, 53), &X_PAYLOAD[..n], ip)
            }
            // IPv4-only kinds with an IPv6 victim are refused by `Plan::new`.
            (_, Victim::V6(_)) => frame.finish(ETH),
        };
        self.next = self.sched.next(&mut self.rng);
        len
    }
}

/// A flooder's bare SYN to `dport`: no options, no payload, the source port and sequence number
/// drawn from `r`; `ip` is the IP ID and TTL.
fn bare_syn(frame: &mut Frame, ends: Ends, dport: u16, r: u64, win: u16, ip: (u16, u8)) -> usize {
    let sport = 1024 + (r as u16) % 64512;
    let (id, ttl) = ip;
    frame.tcp(
        ends,
        (sport, dport),
        (r >> 32) as u32,
        0,
        SYN,
        win,
        None,
        0,
        id,
        ttl,
    )
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::tests::*;

    #[test]
    fn dns_reflection_has_first_and_later_fragments() {
        let o = short();
        let (bytes, _) = gen(Scenario::DnsReflection, &o);
        let (mut first, mut later, mut last_len) = (0, 0, HashSet::new());
        for (_, f) in records(&bytes) {
            let p = SlicedPacket::from_ethernet(f).unwrap();
            let Some(NetSlice::Ipv4(i)) = p.net else {
                continue;
            };
            let h = i.header();
            if !i.is_payload_fragmented() {
                continue;
            }
            assert_eq!(h.destination_addr(), Ipv4Addr::new(198, 51, 100, 10));
            let off = h.fragments_offset().byte_offset();
            if off == 0 {
                first += 1;
                assert!(h.more_fragments());
                assert_eq!(f.len(), 1514);
                assert_eq!(
                    u16::from_be_bytes([f[34], f[35]]),
                    53,
                    "first fragment carries sport 53"
                );
                assert_eq!(u16::from_be_bytes([f[38], f[39]]), 3008, "udp length");
            } else {
                later += 1;
                assert!(off == 1480 || off == 2960);
                assert_eq!(h.more_fragments(), off == 1480);
                if off == 2960 {
                    last_len.insert(h.total_len());
                }
            }
        }
        assert!(first > 3000, "{first} first fragments");
        assert_eq!(later, 2 * first);
        assert_eq!(last_len, HashSet::from([20 + 48]));
    }

    #[test]
    fn carpet_bombing_spreads_over_254_hosts() {
        let o = short_alone();
        let (bytes, r) = gen(Scenario::CarpetBombing, &o);
        let mut per: HashMap<IpAddr, u64> = HashMap::new();
        for (_, f) in records(&bytes) {
            *per.entry(ip_of(f).1).or_default() += 1;
        }
        assert_eq!(per.len(), 254);
        let net = r.labels[0].key;
        assert!(per.keys().all(|a| net.contains(*a)));
        let (min, max) = (per.values().min().unwrap(), per.values().max().unwrap());
        assert!(max - min <= 1, "uneven: {min}..{max}");
    }

    #[test]
    fn spoofed_sources_are_distinct_then_cycle() {
        let o = SynthOptions {
            sources: 1_000_000,
            ..short_alone()
        };
        let (bytes, r) = gen(Scenario::SpoofedSources, &o);
        let srcs: HashSet<IpAddr> = records(&bytes).iter().map(|(_, f)| ip_of(f).0).collect();
        assert_eq!(srcs.len() as u64, r.packets);
        let o = SynthOptions { sources: 1000, ..o };
        let (bytes, r) = gen(Scenario::SpoofedSources, &o);
        let srcs: HashSet<IpAddr> = records(&bytes).iter().map(|(_, f)| ip_of(f).0).collect();
        assert_eq!(r.packets, 10_000);
        assert_eq!(srcs.len(), 1000);
        assert!(srcs
            .iter()
            .all(|a| matches!(a, IpAddr::V4(v) if is_public(u32::from(*v)))));
    }

    #[test]
    fn udp_and_icmp_sources_stay_in_their_24() {
        let o = short_alone();
        for (s, net, n) in [
            (Scenario::UdpFlood, "203.0.113.0/24", 3),
            (Scenario::IcmpFlood, "192.0.2.0/24", 20),
        ] {
            let net: Key = net.parse().unwrap();
            let (bytes, _) = gen(s, &o);
            let srcs: HashSet<IpAddr> = records(&bytes).iter().map(|(_, f)| ip_of(f).0).collect();
            assert_eq!(srcs.len(), n);
            assert!(srcs.iter().all(|a| net.contains(*a)));
        }
    }

    #[test]
    fn sources_at_floor_sources_are_steady_and_labelled() {
        for (sources, n) in [(DEFAULT_SOURCES, 4usize), (10, 10)] {
            let o = SynthOptions {
                attack_pps: 4800,
                sources,
                ..short()
            };
            let (bytes, r) = gen(Scenario::SourcesAtFloor, &o);
            let victim: IpAddr = "198.51.100.10".parse().unwrap();
            assert_eq!(r.labels.len(), 1 + n);
            assert_eq!(
                (r.labels[0].scope, r.labels[0].key, r.labels[0].class),
                (
                    Scope::DstHost,
                    Key::host(victim),
                    AttackClass::SynFlood.into()
                )
            );
            // Per source: packets per 200 ms slot of the attack, first and last packet.
            let t0 = o.start.as_nanos() + 2_000_000_000;
            let mut per: HashMap<IpAddr, (Vec<u64>, u64, u64)> = HashMap::new();
            let mut background = 0;
            for (t, f) in records(&bytes) {
                let (src, dst) = ip_of(f);
                let IpAddr::V4(s4) = src else {
                    background += 1;
                    continue;
                };
                if !is_public(u32::from(s4)) {
                    background += 1;
                    continue;
                }
                let (proto, _, dport, flags) = check_frame(f, &o);
                assert_eq!((dst, proto, dport, flags), (victim, 6, 80, SYN));
                let e = per.entry(src).or_insert((vec![0; 10], t, t));
                e.0[((t - t0) / 200_000_000) as usize] += 1;
                e.2 = t;
            }
            assert!(background > 9000, "{background}");
            assert_eq!(per.len(), n);
            let each = 4800 / n as u64 / 5;
            for l in &r.labels[1..] {
                assert_eq!(
                    (l.scope, l.class),
                    (Scope::SrcHost, AttackClass::SynFlood.into())
                );
                let (src, (slots, first, last)) = per
                    .iter()
                    .find(|(a, _)| Key::host(**a) == l.key)
                    .expect("a labelled source sent nothing");
                assert!(
                    slots.iter().all(|&c| c.abs_diff(each) <= 1),
                    "{src}: {slots:?}, want {each} per 200 ms"
                );
                assert_eq!(
                    (l.first_packet.as_nanos(), l.last_packet.as_nanos()),
                    (*first, *last)
                );
            }
        }
        let bad = |sources| {
            let o = SynthOptions { sources, ..short() };
            matches!(
                write_pcap(Scenario::SourcesAtFloor, &o, Vec::new()),
                Err(SynthError::BadOptions(_))
            )
        };
        assert!(bad(0) && bad(FLOOR_SOURCES_MAX + 1) && !bad(FLOOR_SOURCES_MAX));
    }
}
