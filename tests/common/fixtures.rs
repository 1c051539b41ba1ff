//! Test fixtures shared by the unit tests (`crate::fixtures`, included by `src/lib.rs` under
//! `cfg(test)`), the integration tests (`common::fixtures`) and the benches (`common::fixtures`):
//! a seeded generator, raw packet headers, a browser's request head and the table of the shared
//! real captures. Plain `std` only, so the
//! one file compiles in each of those crates.

#![allow(dead_code)]

/// A deterministic xorshift64 generator: the same numbers on every run, no dependency.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// An index into a slice of `len` items (0 when `len` is 0).
    pub fn index(&mut self, len: usize) -> usize {
        (self.next() % len.max(1) as u64) as usize
    }
}

/// Panics unless `text` contains every one of `needles`, naming the first it lacks and `text`.
#[track_caller]
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

/// An IPv4 header from `src` to `dst` before `l4`: IHL 5, no options and checksum 0 (neither the
/// decoder nor the filters check it).
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    df: bool,
    ttl: u8,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut v = vec![0x45, 0];
    v.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[if df { 0x40 } else { 0 }, 0, ttl, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(l4);
    v
}

/// The shared real captures (`../shared/captures`, beside the checkout), or None with a note when
/// the folder is absent (a user's clone has no shared/).
pub fn shared_captures() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "note: {} absent; skipping the real-capture checks",
            p.display()
        );
        None
    }
}

/// Every capture of `../shared/captures` (see [`shared_captures`]) with the frames its INDEX.md
/// lists.
pub const SHARED_CAPTURES: &[(&str, u64)] = &[
    ("attack/synflood_spoofed_stopddos.pcap", 37_841),
    ("attack/synack_reflection_stopddos.pcap", 8_000),
    ("attack/snmp_amplification_stopddos.pcap", 4_373),
    ("attack/dns_reflection_2013_netlyzer.pcap", 7_057),
    ("attack/cicddos2019_synflood_lucid.pcap", 26_316),
    (
        "attack/ipv6_exthdr_frag_dos_denial6-6_suricata.pcap",
        39_838,
    ),
    ("attack/synflood_classic_ppa_sanders.pcap", 100),
    ("attack/portscan_syn_nonflood_sanders.pcapng", 2_011),
    ("attack/teardrop_wireshark_lwerdna.pcap", 17),
    ("benign/web_wikipedia_zeek.pcap", 136),
    ("benign/loopback_500_echo_connections_zeek.pcap", 82_582),
    ("benign/web_reddit_ipv6_ndpi.pcap", 1_942),
    ("benign/crawler_vlan_ndpi.pcap", 402),
    ("benign/cicddos2019_benign_1000.pcapng", 1_000),
    ("benign/lt_sll2_http_loopback_lwerdna.pcap", 24),
    ("benign/lt_sll2_icmp_arp_zeek.pcap", 6),
    ("benign/lt_sll_arp_zeek.pcap", 12),
    ("benign/lt_sll_mptcp_tcpdump.pcap", 20),
    ("benign/lt_sll_nanosecond_tcpdump.pcap", 3),
    ("benign/lt_rawip_ipv4_tcpdump.pcap", 1),
    ("benign/lt_ipv4_228_tcpdump.pcap", 1),
    ("benign/lt_null_loopback_quic_tcpdump.pcap", 18),
    ("benign/lt_nflog_http_zeek.pcap", 13),
    ("benign/lt_vlan_http_zeek.pcap", 14),
    ("benign/lt_qinq_http_zeek.pcap", 14),
    ("benign/lt_qinqinq_http_zeek.pcap", 14),
    ("benign/lt_vlan_icmp_zeek.pcap", 15),
    ("benign/lt_8021ad_qinq_tcpdump.pcap", 2),
];

/// A browser's GET head (Firefox on Linux), 430 bytes.
pub const BROWSER_GET: &[u8] = b"GET /search?q=floodwatch&lang=en HTTP/1.1\r\n\
Host: www.example.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-User: ?1\r\n\
Priority: u=0, i\r\n\
\r\n";
