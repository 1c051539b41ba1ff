//! Tests of whole captures across scenarios, and the helpers that the tests of each part share.

pub(super) use std::collections::{HashMap, HashSet};
pub(super) use std::net::{IpAddr, Ipv4Addr};
pub(super) use std::time::Duration;

pub(super) use etherparse::{NetSlice, SlicedPacket, TransportSlice};

pub(super) use super::address::is_public;
use super::packet::{fold, sum16};
use super::schedule::Day;
pub(super) use super::{
    write_pcap, Scenario, SynthError, SynthOptions, SynthReport, DEFAULT_SOURCES, FLOOR_SOURCES_MAX,
};
pub(super) use crate::alert::AttackClass;
pub(super) use crate::key::{Key, Scope};

/// Short options that keep tests fast.
pub(super) fn short() -> SynthOptions {
    SynthOptions {
        duration: Duration::from_secs(5),
        attack_start: Duration::from_secs(2),
        attack_duration: Duration::from_secs(2),
        attack_pps: 5_000,
        background_pps: 2_000,
        ..SynthOptions::default()
    }
}

/// [`short`] without background traffic: the scenario's own packets only.
pub(super) fn short_alone() -> SynthOptions {
    SynthOptions {
        background_pps: 0,
        ..short()
    }
}

pub(super) fn gen(s: Scenario, o: &SynthOptions) -> (Vec<u8>, SynthReport) {
    let mut out = Vec::new();
    let r = write_pcap(s, o, &mut out).unwrap();
    (out, r)
}

/// (timestamp ns, frame) of every record.
pub(super) fn records(b: &[u8]) -> Vec<(u64, &[u8])> {
    assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 65535);
    assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
    let mut p = 24;
    let mut v = Vec::new();
    while p < b.len() {
        let f = |o: usize| u64::from(u32::from_le_bytes(b[p + o..p + o + 4].try_into().unwrap()));
        let (sec, us, incl, orig) = (f(0), f(4), f(8) as usize, f(12) as usize);
        assert_eq!(incl, orig);
        assert!(us < 1_000_000);
        v.push((sec * 1_000_000_000 + us * 1000, &b[p + 16..p + 16 + incl]));
        p += 16 + incl;
    }
    assert_eq!(p, b.len());
    v
}

pub(super) fn ip_of(frame: &[u8]) -> (IpAddr, IpAddr) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    match p.net.unwrap() {
        NetSlice::Ipv4(i) => (
            i.header().source_addr().into(),
            i.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(i) => (
            i.header().source_addr().into(),
            i.header().destination_addr().into(),
        ),
        NetSlice::Arp(_) => panic!("arp"),
    }
}

/// Checks lengths and checksums of one frame with etherparse; returns (proto, sport, dport, flags).
pub(super) fn check_frame(frame: &[u8], opts: &SynthOptions) -> (u8, u16, u16, u8) {
    assert!(frame.len() >= 60);
    assert_eq!(&frame[0..6], &opts.dst_mac);
    assert_eq!(&frame[6..12], &opts.src_mac);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let (src4, dst4, src6, dst6) = match p.net.as_ref().unwrap() {
        NetSlice::Ipv4(i) => {
            let h = i.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            let wire = 14 + usize::from(h.total_len);
            assert!(wire == frame.len() || (wire < 60 && frame.len() == 60));
            if i.is_payload_fragmented() {
                return (17, 0, 0, 0);
            }
            (Some(h.source), Some(h.destination), None, None)
        }
        NetSlice::Ipv6(i) => {
            let h = i.header().to_header();
            assert_eq!(14 + 40 + usize::from(h.payload_length), frame.len());
            (None, None, Some(h.source), Some(h.destination))
        }
        NetSlice::Arp(_) => panic!("arp"),
    };
    match p.transport.unwrap() {
        TransportSlice::Tcp(t) => {
            let c = match (src4, dst4, src6, dst6) {
                (Some(s), Some(d), _, _) => t.calc_checksum_ipv4(s, d).unwrap(),
                (_, _, Some(s), Some(d)) => t.calc_checksum_ipv6(s, d).unwrap(),
                _ => unreachable!(),
            };
            assert_eq!(c, t.checksum(), "tcp checksum");
            let flags = frame[14 + if src4.is_some() { 20 } else { 40 } + 13];
            (6, t.source_port(), t.destination_port(), flags)
        }
        TransportSlice::Udp(u) => {
            let h = u.to_header();
            let (s, d) = (src4.unwrap(), dst4.unwrap());
            assert_eq!(
                h.calc_checksum_ipv4_raw(s, d, u.payload()).unwrap(),
                h.checksum,
                "udp checksum"
            );
            assert_eq!(usize::from(h.length), 8 + u.payload().len());
            (17, h.source_port, h.destination_port, 0)
        }
        TransportSlice::Icmpv4(m) => {
            assert_eq!(fold(sum16(m.slice(), 0)), 0, "icmp checksum");
            (1, 0, 0, 0)
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

pub(super) fn expected_packets(s: Scenario, o: &SynthOptions) -> f64 {
    let bg = o.background_pps as f64 * o.duration.as_secs_f64();
    let a = o.attack_pps as f64 * o.attack_duration.as_secs_f64();
    match s {
        Scenario::Benign => bg,
        Scenario::BenignGrowth => {
            // 1× before, mean 2× during, 3× after the growth window.
            let (st, len) = (
                o.attack_start.as_secs_f64(),
                o.attack_duration.as_secs_f64(),
            );
            let after = (o.duration.as_secs_f64() - st - len).max(0.0);
            o.background_pps as f64 * (st + 2.0 * len + 3.0 * after)
        }
        Scenario::SlowRamp => bg + a / 2.0,
        // --background-pps counts what the clients send; the victim answers as much.
        Scenario::SigSynFlood | Scenario::SigUdpFlood | Scenario::SigAckFlood => 2.0 * bg + a,
        // The whole day in the capture: the day's mean level (no burst starts within 5 s).
        Scenario::BenignDay => {
            let levels: Vec<f64> = (0..1000).map(|i| Day::level(i as f64 / 1000.0)).collect();
            let max = levels.iter().copied().fold(0.0, f64::max);
            bg * levels.iter().sum::<f64>() / levels.len() as f64 / max
        }
        Scenario::PulseWave => bg + o.attack_pps as f64 * o.attack_duration.as_secs_f64().min(2.0),
        _ => bg + a,
    }
}

#[test]
fn deterministic_per_seed() {
    let o = short();
    let (a, ra) = gen(Scenario::SynFlood, &o);
    let (b, rb) = gen(Scenario::SynFlood, &o);
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    let (c, _) = gen(Scenario::SynFlood, &SynthOptions { seed: 2, ..o });
    assert_ne!(a, c);
}

#[test]
fn every_scenario_counts_orders_and_checksums() {
    let o = short();
    // The web scenarios count requests, not packets: `web`'s tests check them.
    for s in Scenario::ALL.into_iter().filter(|s| !s.is_web()) {
        let (bytes, r) = gen(s, &o);
        let recs = records(&bytes);
        assert_eq!(recs.len() as u64, r.packets, "{s}");
        assert_eq!(
            recs.iter().map(|(_, f)| f.len() as u64).sum::<u64>(),
            r.bytes
        );
        let exp = expected_packets(s, &o);
        let err = (r.packets as f64 - exp).abs() / exp;
        // Legit clients arrive as a Poisson process: about 1000 sessions here, so ~3 % noise.
        let tol = match s {
            Scenario::BenignDay => 0.1,
            s if is_new_scenario(s) => 0.06,
            _ => 0.02,
        };
        assert!(err < tol, "{s}: {} packets, expected {exp}", r.packets);
        let start = o.start.as_nanos();
        let end = start + o.duration.as_nanos() as u64;
        for w in recs.windows(2) {
            assert!(w[0].0 <= w[1].0, "{s}: timestamps go back");
        }
        assert!(recs.iter().all(|(t, _)| (start..end).contains(t)));
        // Every 3rd frame through etherparse (all of them in debug builds is slow).
        for (_, f) in recs.iter().step_by(3) {
            check_frame(f, &o);
        }
    }
}

#[test]
fn labels_per_scenario() {
    let o = short();
    const V4: &str = "198.51.100.10";
    type Want = &'static [(&'static str, &'static str, &'static str)];
    let cases: [(Scenario, Want); 19] = [
        (Scenario::Benign, &[]),
        (Scenario::FlashCrowd, &[]),
        (Scenario::BenignGrowth, &[]),
        (Scenario::SynFlood, &[("dst_host", V4, "syn_flood")]),
        (Scenario::SlowRamp, &[("dst_host", V4, "syn_flood")]),
        (Scenario::PulseWave, &[("dst_host", V4, "syn_flood")]),
        (Scenario::SpoofedSources, &[("dst_host", V4, "syn_flood")]),
        (Scenario::SynBurst, &[("dst_host", V4, "syn_flood")]),
        (Scenario::LearnedFloor, &[("dst_host", V4, "syn_flood")]),
        (Scenario::SigSynFlood, &[("dst_host", V4, "syn_flood")]),
        (Scenario::SigUdpFlood, &[("dst_host", V4, "udp_flood")]),
        (Scenario::SigAckFlood, &[("dst_host", V4, "tcp_flood")]),
        (Scenario::BenignDay, &[]),
        (
            Scenario::SourcesAtFloor,
            &[
                ("dst_host", V4, "syn_flood"),
                ("src_host", "183.191.13.170", "syn_flood"),
                ("src_host", "178.250.128.129", "syn_flood"),
                ("src_host", "32.125.166.237", "syn_flood"),
                ("src_host", "158.98.178.250", "syn_flood"),
            ],
        ),
        (
            Scenario::Ipv6SynFlood,
            &[("dst_host", "2001:db8:100::10", "syn_flood")],
        ),
        (
            Scenario::DnsReflection,
            &[("dst_host", V4, "dns_amplification")],
        ),
        (
            Scenario::UdpFlood,
            &[
                ("dst_host", V4, "udp_flood"),
                ("src_subnet", "203.0.113.0/24", "udp_flood"),
            ],
        ),
        (
            Scenario::IcmpFlood,
            &[
                ("dst_host", V4, "icmp_flood"),
                ("src_subnet", "192.0.2.0/24", "icmp_flood"),
            ],
        ),
        (
            Scenario::CarpetBombing,
            &[("dst_subnet", "198.51.100.0/24", "udp_flood")],
        ),
    ];
    for (s, want) in cases {
        let (bytes, r) = gen(s, &o);
        let got: Vec<(String, String, String)> = r
            .labels
            .iter()
            .map(|l| (l.scope.to_string(), l.key.to_string(), l.class.to_string()))
            .collect();
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want, "{s}");
        for l in &r.labels {
            // The first labelled packet is the first packet of the attack window that matches.
            let attack_start = o.start.as_nanos() + o.attack_start.as_nanos() as u64;
            assert!(l.first_packet.as_nanos() >= attack_start, "{s}");
            let slack = if s == Scenario::SlowRamp {
                100_000_000
            } else {
                10_000_000
            };
            assert!(l.first_packet.as_nanos() < attack_start + slack, "{s}");
            assert!(l.last_packet > l.first_packet);
            // A packet of the labelled key carries the first_packet timestamp.
            let first = l.first_packet.as_nanos();
            let found = records(&bytes).into_iter().any(|(t, f)| {
                let (src, dst) = ip_of(f);
                t == first && (l.key.contains(dst) || l.key.contains(src))
            });
            assert!(found, "{s}: no matching packet at first_packet");
        }
    }
}

#[test]
fn min_size_frames_are_60_bytes() {
    let o = SynthOptions {
        min_size: true,
        ..short()
    };
    // The web scenarios are made of payloads and refuse --min-size.
    for s in Scenario::ALL.into_iter().filter(|s| !s.is_web()) {
        let (bytes, _) = gen(s, &o);
        for (i, (_, f)) in records(&bytes).into_iter().enumerate() {
            let v6 = f[12..14] == [0x86, 0xdd];
            assert_eq!(f.len(), if v6 { 74 } else { 60 }, "{s}");
            if i % 3 == 0 {
                check_frame(f, &o);
            }
        }
    }
}

/// Whether `s` is one of the scenarios added for the short-window engine (syn-burst to benign-day,
/// declared in a row): same seed, same bytes; another seed, others.
pub(super) fn is_new_scenario(s: Scenario) -> bool {
    (Scenario::SynBurst..=Scenario::BenignDay).contains(&s)
}

/// IPv4 and TCP header fields of a frame: (TTL, DF, IP total length, TCP window, TCP options
/// length, TCP flags).
pub(super) fn tcp_fields(f: &[u8]) -> (u8, bool, u16, u16, usize, u8) {
    assert_eq!(f[12..14], [8, 0]);
    assert_eq!(f[14], 0x45);
    let total = u16::from_be_bytes([f[16], f[17]]);
    let df = f[20] & 0x40 != 0;
    let opts = usize::from(f[46] >> 4) * 4 - 20;
    let win = u16::from_be_bytes([f[48], f[49]]);
    (f[22], df, total, win, opts, f[47])
}

pub(super) fn in_legit_net(a: IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if u32::from(v) >> 16 == 0x6440)
}

#[test]
fn new_scenarios_are_deterministic_per_seed() {
    let o = short();
    for s in Scenario::ALL.into_iter().filter(|&s| is_new_scenario(s)) {
        let (a, ra) = gen(s, &o);
        let (b, rb) = gen(s, &o);
        assert!(a == b && ra == rb, "{s}");
        let (c, _) = gen(
            s,
            &SynthOptions {
                seed: 7,
                ..o.clone()
            },
        );
        assert_ne!(a, c, "{s}");
    }
}

/// `cargo test --release -- --ignored --nocapture synth::tests::bench`
#[test]
#[ignore]
fn bench_10m_min_size_syn_flood() {
    let o = SynthOptions {
        duration: Duration::from_secs(10),
        attack_start: Duration::ZERO,
        attack_duration: Duration::from_secs(10),
        attack_pps: 1_000_000,
        background_pps: 0,
        min_size: true,
        ..SynthOptions::default()
    };
    let dir = match std::env::var_os("SYNTH_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let path = dir.path().join("bench.pcap");
    let t = std::time::Instant::now();
    let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let r = write_pcap(Scenario::SynFlood, &o, f).unwrap();
    let el = t.elapsed();
    assert_eq!(r.packets, 10_000_000);
    println!(
        "10M min-size syn-flood: {:.3} s, {:.2} Mpps, {} bytes",
        el.as_secs_f64(),
        r.packets as f64 / el.as_secs_f64() / 1e6,
        std::fs::metadata(&path).unwrap().len()
    );
    let t = std::time::Instant::now();
    let r = write_pcap(Scenario::SynFlood, &o, std::io::sink()).unwrap();
    let el = t.elapsed();
    println!(
        "same to io::sink: {:.3} s, {:.2} Mpps",
        el.as_secs_f64(),
        r.packets as f64 / el.as_secs_f64() / 1e6
    );
    for s in Scenario::ALL {
        let t = std::time::Instant::now();
        let r = write_pcap(s, &SynthOptions::for_scenario(s), std::io::sink()).unwrap();
        println!(
            "{:16} {:>8} packets {:>11} bytes {:.3} s",
            s.name(),
            r.packets,
            r.bytes,
            t.elapsed().as_secs_f64()
        );
    }
}
