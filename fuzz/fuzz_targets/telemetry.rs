//! Fuzz target: the telemetry stage on arbitrary datagrams must never panic, and the summaries it
//! makes must add up to the packets it says it represented.
#![no_main]

use std::net::IpAddr;

use floodwatch::telemetry::{Datagram, Telemetry, TelemetryConfig};
use floodwatch::time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the input is a series of datagrams: a 2-byte length, a byte picking the exporter, the bytes
    let mut t = Telemetry::new(TelemetryConfig {
        max_exporters: 4,
        max_templates: 8,
        ..TelemetryConfig::default()
    });
    let mut out = Vec::new();
    let mut rest = data;
    let mut ts = 1_764_079_200_000_000_000u64;
    while let Some((head, tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_le_bytes([head[0], head[1]])).min(tail.len());
        let (payload, next) = tail.split_at(len);
        t.datagram(
            &Datagram {
                ts: Timestamp(ts),
                exporter: IpAddr::from([192, 0, 2, head[2] % 6]),
                payload,
            },
            &mut out,
        );
        ts += 10_000_000;
        rest = next;
    }
    t.finish(&mut out);
    let fed: u64 = out.iter().map(|p| u64::from(p.weight)).sum();
    assert_eq!(fed, t.stats().packets);
    assert!(out.windows(2).all(|w| w[0].ts <= w[1].ts) || out.is_empty());
});
