//! Telemetry decode throughput: datagrams through the whole telemetry stage (parsing, templates,
//! sampled-header decode, placing flows) into weighted packet summaries, in sFlow samples or flow
//! records per second. The bar on one core: ≥ 2 M sFlow samples/s, ≥ 1 M NetFlow v9 /
//! IPFIX records/s. Run with `cargo bench --bench telemetry`.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodwatch::telemetry::build::{netflow, sflow};
use floodwatch::telemetry::{Datagram, Telemetry, TelemetryConfig};
use floodwatch::time::Timestamp;

const EXPORT_SECS: u32 = 1_764_079_200;
const UPTIME_MS: u32 = 3_600_000;

/// A 128-byte Ethernet/IPv4/TCP SYN frame from `src` (the rest of the 128 bytes is payload).
fn frame(src: u8) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 114, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[203, 0, 113, src, 198, 51, 100, 10]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
    ]);
    f.resize(128, 0);
    f
}

/// `n` flow records of distinct sources, ending at export time.
fn records(n: u32) -> Vec<netflow::Rec> {
    (0..n)
        .map(|i| {
            let src = (0xcb00_7100u32 + i).to_be_bytes();
            (
                src,
                [198, 51, 100, 10],
                40000,
                80,
                6,
                0x02,
                3,
                180,
                UPTIME_MS - 20,
                UPTIME_MS,
            )
        })
        .collect()
}

fn run(c: &mut Criterion, name: &str, per_datagram: u64, setup: &[Vec<u8>], datagram: &[u8]) {
    let mut t = Telemetry::new(TelemetryConfig::default());
    let exporter = IpAddr::from([192, 0, 2, 1]);
    let ts = Timestamp::from_secs_nanos(u64::from(EXPORT_SECS), 0);
    let mut out = Vec::with_capacity(256);
    for d in setup {
        t.datagram(
            &Datagram {
                ts,
                exporter,
                payload: d,
            },
            &mut out,
        );
    }
    let mut g = c.benchmark_group("telemetry");
    g.throughput(Throughput::Elements(per_datagram));
    g.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            t.datagram(
                &Datagram {
                    ts,
                    exporter,
                    payload: black_box(datagram),
                },
                &mut out,
            );
            black_box(out.len())
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let frames: Vec<Vec<u8>> = (0..5).map(frame).collect();
    let samples: Vec<sflow::Sample<'_>> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| sflow::Sample {
            sequence: i as u32,
            source_id: 3,
            rate: 1000,
            frame_length: 1514,
            header: f,
        })
        .collect();
    run(
        c,
        "sflow_5_samples",
        5,
        &[],
        &sflow::datagram([192, 0, 2, 1], 1, &samples),
    );
    let recs = records(30);
    run(
        c,
        "netflow5_30_records",
        30,
        &[],
        &netflow::v5(EXPORT_SECS, UPTIME_MS, 0, &recs),
    );
    let recs = records(20);
    let tmpl9 = netflow::v9(EXPORT_SECS, UPTIME_MS, 1, true, None, &[]);
    run(
        c,
        "netflow9_20_records",
        20,
        &[tmpl9],
        &netflow::v9(EXPORT_SECS, UPTIME_MS, 1, false, None, &recs),
    );
    let tmpl10 = netflow::ipfix(
        EXPORT_SECS,
        1,
        true,
        Some(u64::from(EXPORT_SECS) * 1000 - u64::from(UPTIME_MS)),
        &[],
    );
    run(
        c,
        "ipfix_20_records",
        20,
        &[tmpl10],
        &netflow::ipfix(EXPORT_SECS, 1, false, None, &recs),
    );
}

criterion_group!(group, benches);
criterion_main!(group);
