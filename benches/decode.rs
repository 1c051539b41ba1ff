//! Decode throughput per link type: `Decoder::decode` on one minimum-size frame of each kind, in
//! packets per second. Run with `cargo bench --bench decode`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodwatch::decode::{Decoder, Fragment, LinkType};
use floodwatch::time::Timestamp;

const SRC4: [u8; 4] = [203, 0, 113, 9];
const DST4: [u8; 4] = [198, 51, 100, 10];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const DST6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// A 20-byte TCP SYN header 40000 → 80.
fn tcp_syn() -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&1024u16.to_be_bytes());
    t
}

/// An IPv4 header (checksum filled in) carrying `payload`; `frag` is the flags+offset field.
fn ipv4(proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len() as u16;
    let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&SRC4);
    h.extend_from_slice(&DST4);
    let sum: u32 = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let csum = !(((folded & 0xffff) + (folded >> 16)) as u16);
    h[10..12].copy_from_slice(&csum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 header with `next` header, carrying `payload`.
fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&SRC6);
    h.extend_from_slice(&DST6);
    h.extend_from_slice(payload);
    h
}

/// An 8-byte IPv6 option header (hop-by-hop or destination options: PadN) before `next`.
fn ipv6_options(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// Ethernet II with VLAN tags `tpids` (outer first), padded to the 60-byte minimum.
fn ethernet(tpids: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for (i, tpid) in tpids.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// Linux cooked capture v1: 16-byte header, protocol at offset 14.
fn sll(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Linux cooked capture v2: 20-byte header, protocol at offset 0.
fn sll2(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = ethertype.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Every case: name, link type, frame.
fn cases() -> Vec<(&'static str, LinkType, Vec<u8>)> {
    let syn4 = ipv4(PROTO_TCP, 0, &tcp_syn());
    // IPv6: hop-by-hop → destination options → TCP.
    let mut ext = ipv6_options(60);
    ext.extend(ipv6_options(PROTO_TCP));
    ext.extend(tcp_syn());
    let syn6_ext = ipv6(0, &ext);
    // IPv4 later fragment (offset 1480 bytes, more fragments) of a UDP datagram.
    let frag4 = ipv4(PROTO_UDP, 0x2000 | (1480 / 8), &[0u8; 24]);
    // IPv6 first fragment (fragment header, offset 0, M set) carrying a UDP header.
    let mut frag6 = vec![PROTO_UDP, 0, 0, 1, 0, 0, 0x12, 0x34];
    frag6.extend_from_slice(&[0x00, 0x35, 0x9c, 0x40, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let frag6 = ipv6(44, &frag6);
    vec![
        (
            "ethernet_ipv4_tcp",
            LinkType::ETHERNET,
            ethernet(&[], ETH_IPV4, &syn4),
        ),
        (
            "vlan_ipv4_tcp",
            LinkType::ETHERNET,
            ethernet(&[0x8100], ETH_IPV4, &syn4),
        ),
        (
            "qinq_ipv4_tcp",
            LinkType::ETHERNET,
            ethernet(&[0x88a8, 0x8100], ETH_IPV4, &syn4),
        ),
        ("sll_ipv4_tcp", LinkType::LINUX_SLL, sll(ETH_IPV4, &syn4)),
        ("sll2_ipv4_tcp", LinkType::LINUX_SLL2, sll2(ETH_IPV4, &syn4)),
        ("raw_ipv4_tcp", LinkType::RAW, syn4.clone()),
        (
            "ethernet_ipv6_ext_tcp",
            LinkType::ETHERNET,
            ethernet(&[], ETH_IPV6, &syn6_ext),
        ),
        (
            "ethernet_ipv4_fragment",
            LinkType::ETHERNET,
            ethernet(&[], ETH_IPV4, &frag4),
        ),
        (
            "ethernet_ipv6_fragment",
            LinkType::ETHERNET,
            ethernet(&[], ETH_IPV6, &frag6),
        ),
    ]
}

fn decode_per_link_type(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    let decoder = Decoder;
    let ts = Timestamp(1_764_079_200_000_000_000);
    for (name, link, frame) in cases() {
        // A benchmark of a frame that does not decode would measure the error path: refuse it.
        let s = decoder
            .decode(link, &frame, ts, 0)
            .unwrap_or_else(|e| panic!("bench frame {name} does not decode: {e}"));
        assert_eq!(
            s.fragment != Fragment::None,
            name.contains("fragment"),
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| decoder.decode(black_box(link), black_box(&frame), ts, 0))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_millis(500), Duration::from_secs(2));
    targets = decode_per_link_type
}
criterion_main!(benches);
