//! The rules attack signatures render are real filters: every BPF compiles with `tcpdump -d`, a
//! capture of known packets filtered with `tcpdump -r` keeps exactly each attack's packets, and
//! `nft --check` accepts every nft match. Each check is skipped, with a note, when its tool is not
//! installed or cannot run here.

mod common;

use common::fixtures::{ipv4, XorShift as Rng};
use common::{
    assert_bpf_compiles, assert_nft_accepts, nft_table_file, nft_usable, stderr, tcpdump_count,
    tool_runs,
};
use std::path::Path;
use std::process::Command;

use floodwatch::decode::{Decoder, LinkType};
use floodwatch::signature::{Field, IpIdPattern, Signature, SignatureField, SignatureSketch};
use floodwatch::time::Timestamp;

const SRC4: [u8; 4] = [203, 0, 113, 9];
const DST4: [u8; 4] = [198, 51, 100, 10];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const DST6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Linux's SYN options (20 bytes) and the 12 bytes of an established connection's timestamps.
const SYN_OPTS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];
const TS_OPTS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

struct Tcp<'a> {
    sport: u16,
    flags: u8,
    window: u16,
    opts: &'a [u8],
    payload: &'a [u8],
}

fn tcp(t: &Tcp) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&t.sport.to_be_bytes());
    v.extend_from_slice(&80u16.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    v.push((((20 + t.opts.len()) / 4) as u8) << 4);
    v.push(t.flags);
    v.extend_from_slice(&t.window.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(t.opts);
    v.extend_from_slice(t.payload);
    v
}

fn udp(sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&4444u16.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

/// Ethernet + IPv4 (checksums are not checked by the filters).
fn eth_ipv4(ttl: u8, id: u16, df: bool, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    v.extend_from_slice(&ipv4(SRC4, DST4, id, df, ttl, proto, l4));
    v
}

fn eth_ipv6(hop_limit: u8, next: u8, l4: &[u8]) -> Vec<u8> {
    let mut v = vec![
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60, 0, 0, 0,
    ];
    v.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, hop_limit]);
    v.extend_from_slice(&SRC6);
    v.extend_from_slice(&DST6);
    v.extend_from_slice(l4);
    v
}

/// A classic little-endian pcap of Ethernet frames.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// The traffic of the capture, by kind: the attacks and the normal traffic of each family and
/// transport.
struct Traffic {
    syn_flood: Vec<Vec<u8>>,
    udp_flood: Vec<Vec<u8>>,
    ack_flood: Vec<Vec<u8>>,
    syn_flood6: Vec<Vec<u8>>,
    udp_flood6: Vec<Vec<u8>>,
    normal_tcp: Vec<Vec<u8>>,
    normal_udp: Vec<Vec<u8>>,
    normal_tcp6: Vec<Vec<u8>>,
    normal_udp6: Vec<Vec<u8>>,
}

impl Traffic {
    fn new() -> Traffic {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut t = Traffic {
            syn_flood: Vec::new(),
            udp_flood: Vec::new(),
            ack_flood: Vec::new(),
            syn_flood6: Vec::new(),
            udp_flood6: Vec::new(),
            normal_tcp: Vec::new(),
            normal_udp: Vec::new(),
            normal_tcp6: Vec::new(),
            normal_udp6: Vec::new(),
        };
        let junk = *b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
        let mut tls = [0x5a_u8; 64];
        tls[..4].copy_from_slice(&[0x16, 0x03, 0x01, 0x02]);
        for _ in 0..200 {
            let r = rng.next();
            // a SYN flood: TTL 64, window 512, no options, random ports and IDs, DF clear
            let syn = Tcp {
                sport: r as u16,
                flags: 0x02,
                window: 512,
                opts: &[],
                payload: &[],
            };
            t.syn_flood
                .push(eth_ipv4(64, (r >> 16) as u16, false, 6, &tcp(&syn)));
            t.syn_flood6.push(eth_ipv6(64, 6, &tcp(&syn)));
        }
        for _ in 0..150 {
            let r = rng.next();
            // a UDP flood: 64 bytes of 'X' from random ports with random TTLs
            let u = udp(r as u16, &junk);
            t.udp_flood
                .push(eth_ipv4((r >> 16) as u8, (r >> 24) as u16, false, 17, &u));
            t.udp_flood6.push(eth_ipv6((r >> 16) as u8, 17, &u));
            // an ACK flood replaying one TLS record from port 443, without options
            let ack = Tcp {
                sport: 443,
                flags: 0x18,
                window: (r >> 32) as u16,
                opts: &[],
                payload: &tls,
            };
            t.ack_flood.push(eth_ipv4(
                (r >> 48) as u8 | 1,
                (r >> 40) as u16,
                false,
                6,
                &tcp(&ack),
            ));
        }
        for i in 0..60u16 {
            let r = rng.next();
            // normal clients: TTL 52..=64, Linux SYNs and ACKs with options, DF set
            let (flags, opts): (u8, &[u8]) = if i % 3 == 0 {
                (0x02, &SYN_OPTS)
            } else {
                (0x10, &TS_OPTS)
            };
            let c = Tcp {
                sport: 32768 + (r as u16) % 28000,
                flags,
                window: 64240,
                opts,
                payload: &[],
            };
            let ttl = 52 + (i % 13) as u8;
            t.normal_tcp.push(eth_ipv4(ttl, i, true, 6, &tcp(&c)));
            t.normal_tcp6.push(eth_ipv6(ttl, 6, &tcp(&c)));
            // DNS queries of various lengths
            let q = vec![0x12; 20 + usize::from(i % 40)];
            t.normal_udp
                .push(eth_ipv4(ttl, i, true, 17, &udp(1024 + i, &q)));
            t.normal_udp6.push(eth_ipv6(ttl, 17, &udp(1024 + i, &q)));
        }
        t
    }

    fn all(&self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for part in [
            &self.normal_tcp,
            &self.syn_flood,
            &self.normal_udp,
            &self.udp_flood,
            &self.ack_flood,
            &self.normal_tcp6,
            &self.syn_flood6,
            &self.normal_udp6,
            &self.udp_flood6,
        ] {
            v.extend(part.iter().cloned());
        }
        v
    }
}

/// The sketch of `frames`, decoded by floodwatch's decoder.
fn sketch(frames: &[Vec<u8>]) -> SignatureSketch {
    let mut sk = SignatureSketch::new();
    for f in frames {
        let p = Decoder
            .decode(LinkType::ETHERNET, f, Timestamp(1), 0)
            .unwrap();
        sk.observe(&p);
    }
    sk
}

/// The five attacks' signatures, each against the normal traffic of its family and transport.
fn signatures(t: &Traffic) -> Vec<(&'static str, bool, Signature, usize)> {
    let attacks = [
        ("syn flood", false, &t.syn_flood, &t.normal_tcp),
        ("udp flood", false, &t.udp_flood, &t.normal_udp),
        ("ack flood", false, &t.ack_flood, &t.normal_tcp),
        ("ipv6 syn flood", true, &t.syn_flood6, &t.normal_tcp6),
        ("ipv6 udp flood", true, &t.udp_flood6, &t.normal_udp6),
    ];
    attacks
        .into_iter()
        .map(|(name, ipv6, attack, normal)| {
            let signature = sketch(attack).signature(Some(&sketch(normal)));
            (name, ipv6, signature, attack.len())
        })
        .collect()
}

#[test]
fn signatures_of_decoded_attacks_name_their_templates() {
    let t = Traffic::new();
    let names = |s: &Signature| -> Vec<&str> { s.fields.iter().map(|f| f.field.name()).collect() };
    let sigs = signatures(&t);
    // TTL 64 is one normal TTL in 13: kept; DF clear is not normal here: kept; a third of the
    // normal packets are SYNs too: the flags are no signature
    assert_eq!(
        names(&sigs[0].2),
        ["ttl", "ip_len", "df", "tcp_window", "tcp_options"]
    );
    assert_eq!(
        names(&sigs[1].2),
        ["ip_len", "df", "payload_len", "payload_prefix"]
    );
    assert_eq!(
        names(&sigs[2].2),
        [
            "ip_len",
            "df",
            "tcp_options",
            "tcp_flags",
            "sport",
            "payload_prefix"
        ]
    );
    // no DF in IPv6
    assert_eq!(
        names(&sigs[3].2),
        ["ttl", "ip_len", "tcp_window", "tcp_options"]
    );
    assert_eq!(
        names(&sigs[4].2),
        ["ip_len", "payload_len", "payload_prefix"]
    );
    // the random IDs are no pattern
    assert!(sigs.iter().all(|s| s.2.get("ip_id").is_none()));
    for (what, ipv6, sig, _) in &sigs {
        println!(
            "{what}: {}\n  bpf: {}\n  nft: {}",
            serde_json::to_string(sig).unwrap(),
            sig.bpf(*ipv6).unwrap_or_default(),
            sig.nft(*ipv6).unwrap_or_default()
        );
    }
}

#[test]
fn bpf_of_each_attack_keeps_exactly_its_packets() {
    if !tool_runs("tcpdump") {
        return;
    }
    let t = Traffic::new();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mix.pcap");
    let all = t.all();
    write_pcap(&pcap, &all);
    assert_eq!(tcpdump_count(&pcap, ""), all.len());
    for (what, ipv6, sig, n) in signatures(&t) {
        let bpf = sig.bpf(ipv6).unwrap();
        assert_eq!(tcpdump_count(&pcap, &bpf), n, "{what}: `{bpf}`");
    }
}

/// Signatures with every field value alone, and with one value of each field together, for both
/// families and all transports.
fn every_shape() -> Vec<(Signature, bool)> {
    let all_fields = [
        Field::Ttl(64),
        Field::IpId(IpIdPattern::Zero),
        Field::IpId(IpIdPattern::Constant(54321)),
        Field::IpId(IpIdPattern::Incrementing),
        Field::IpLen(1500),
        Field::Df(true),
        Field::Df(false),
        Field::TcpWindow(65535),
        Field::TcpOptions(0),
        Field::TcpOptions(40),
        Field::TcpFlags(0),
        Field::TcpFlags(0x02),
        Field::TcpFlags(0x12),
        Field::TcpFlags(0xff),
        Field::Sport(53),
        Field::PayloadLen(0),
        Field::PayloadLen(65507),
        Field::PayloadPrefix([0, 0, 0, 0]),
        Field::PayloadPrefix([0xff, 0xfe, 0x80, 0x01]),
    ];
    let mut v = Vec::new();
    for proto in [Some(6u8), Some(17), None] {
        for ipv6 in [false, true] {
            for f in all_fields {
                v.push((
                    Signature {
                        fields: vec![SignatureField {
                            field: f,
                            share: 1.0,
                        }],
                        proto,
                        packets: 1,
                    },
                    ipv6,
                ));
            }
            // the first value of each field (a libpcap optimiser rejects contradictions)
            let mut seen = Vec::new();
            let together = all_fields
                .iter()
                .filter(|f| {
                    let new = !seen.contains(&f.name());
                    seen.push(f.name());
                    new
                })
                .map(|f| SignatureField {
                    field: *f,
                    share: 1.0,
                })
                .collect();
            v.push((
                Signature {
                    fields: together,
                    proto,
                    packets: 1,
                },
                ipv6,
            ));
        }
    }
    v
}

#[test]
fn every_bpf_compiles() {
    if !tool_runs("tcpdump") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("empty.pcap");
    write_pcap(&pcap, &[]);
    let mut checked = 0;
    for (sig, ipv6) in every_shape() {
        let Some(bpf) = sig.bpf(ipv6) else { continue };
        assert_bpf_compiles(&pcap, &bpf, "a signature shape");
        checked += 1;
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn every_nft_match_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    if !nft_usable(dir.path()) {
        return;
    }
    let t = Traffic::new();
    let mut rules: Vec<String> = signatures(&t)
        .iter()
        .filter_map(|(_, ipv6, sig, _)| sig.nft(*ipv6))
        .collect();
    rules.extend(every_shape().iter().filter_map(|(s, ipv6)| s.nft(*ipv6)));
    assert!(rules.len() > 50, "{}", rules.len());
    let body: String = rules.iter().map(|r| format!("    {r} drop\n")).collect();
    let file = nft_table_file(dir.path(), "fw_signature", &body);
    assert_nft_accepts(&file, "the signature matches");
    // the raw payload offsets land where the payload starts: UDP after 8 bytes, TCP after the
    // header with its options (20 bytes for the ACK flood), as nft compiles them
    let o = Command::new("nft")
        .args(["--check", "--debug=netlink", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    if out.contains("payload load") {
        assert!(
            out.contains("payload load 4b @ transport header + 8 "),
            "{out}"
        );
        assert!(
            out.contains("payload load 4b @ transport header + 20 "),
            "{out}"
        );
    }
}
