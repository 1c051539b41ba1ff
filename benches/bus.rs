//! The bus encoding's cost (issue 15): packet summaries encoded into and decoded from batches of 256,
//! in summaries per second on one core, so the cost of the bus path per summary is known before any
//! message system is in the way. Run with `cargo bench --bench bus`.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodwatch::bus::wire::{decode_batch, BatchHeader, BatchWriter};
use floodwatch::decode::{HeaderFields, PacketSummary};

const BATCH: usize = 256;

/// A spoofed SYN flood's summaries: every source different, header fields known.
fn summaries() -> Vec<PacketSummary> {
    (0..BATCH as u32)
        .map(|i| {
            let ts = 1_764_079_202_000_000_000 + u64::from(i) * 1_000;
            let src = IpAddr::V4(Ipv4Addr::from(0x6440_0000 + i * 7919));
            let syn = common::syn(ts, src, 1024 + i as u16, [198, 51, 100, 10].into());
            PacketSummary {
                hdr: HeaderFields {
                    ip_id: i as u16,
                    ip_len: 40,
                    tcp_window: 512,
                    prefix: [0; 4],
                    ttl: 64,
                    bits: HeaderFields::KNOWN | HeaderFields::DF | HeaderFields::L4,
                    ..HeaderFields::UNKNOWN
                },
                ..syn
            }
        })
        .collect()
}

fn encode(packets: &[PacketSummary]) -> Vec<u8> {
    let mut w = BatchWriter::new(packets[0].ts);
    for p in packets {
        w.push(p);
    }
    w.finish(BatchHeader {
        partition: 3,
        node: 1,
        seq: 1,
        watermark: packets[0].ts.0,
        last: false,
    })
}

fn bench(c: &mut Criterion) {
    let packets = summaries();
    let bytes = encode(&packets);
    let mut g = c.benchmark_group("bus");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("encode_batch_256", |b| {
        b.iter(|| black_box(encode(black_box(&packets))))
    });
    let mut out = Vec::with_capacity(BATCH);
    g.bench_function("decode_batch_256", |b| {
        b.iter(|| {
            out.clear();
            black_box(decode_batch(black_box(&bytes), &mut out).ok());
        })
    });
    g.finish();
    eprintln!(
        "bus encoding: {} bytes for {BATCH} summaries ({:.1} a summary)",
        bytes.len(),
        bytes.len() as f64 / BATCH as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
