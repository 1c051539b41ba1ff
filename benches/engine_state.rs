//! The whole state of a detector's engine (issue 15): [`Engine::save_state`] and
//! [`Engine::restore_state`] at 100 000 and 1 000 000 keys, and the blob's size. Run with
//! `cargo bench --bench engine_state`.
//!
//! An engine holds `KEYS` `dst_host` keys with baselines learned from two windows (as in the
//! checkpoint bench), plus a SYN flood on one victim from spoofed sources, so one key alerts and
//! gathers evidence. `save` writes into a buffer reused between iterations (what a detector that
//! checkpoints periodically does); `restore` reads it into a new engine.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use floodwatch::config::DetectConfig;
use floodwatch::decode::PacketSummary;
use floodwatch::detect::{Engine, ShardSpec};

const T0: u64 = 1_764_079_200_000_000_000;

fn packet(ts: u64, src: u32, dst: u32) -> PacketSummary {
    let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
    common::syn(ts, IpAddr::V4(src), 40_000, IpAddr::V4(dst))
}

fn config(keys: u32) -> DetectConfig {
    DetectConfig {
        max_keys: DetectConfig::split_max_keys(u64::from(keys) * 5 / 2),
        hash_seed: 15,
        idle_windows: 1_000_000,
        ..DetectConfig::default()
    }
}

/// An engine holding `keys` destination hosts with baselines, and one victim in alert.
fn engine_with(keys: u32) -> Engine {
    let mut e = Engine::new(config(keys), ShardSpec::SOLE).expect("engine");
    let mut out = Vec::new();
    let client = u32::from(Ipv4Addr::new(192, 0, 2, 1));
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let gap = 900_000_000 / u64::from(keys);
    for window in 0..2u64 {
        for i in 0..keys {
            let ts = T0 + window * 1_000_000_000 + u64::from(i) * gap;
            e.on_packet(&packet(ts, client, base + i), &mut out);
        }
    }
    let victim = u32::from(Ipv4Addr::new(198, 51, 100, 10));
    for i in 0..20_000u32 {
        let ts = T0 + 2_000_000_000 + u64::from(i) * 25_000;
        e.on_packet(
            &packet(ts, i.wrapping_mul(2_654_435_761) | 1, victim),
            &mut out,
        );
    }
    assert!(!out.is_empty(), "the flood raised no alert");
    let keys_held: usize = e.stats().keys.iter().sum();
    assert!(keys_held >= keys as usize, "only {keys_held} keys held");
    e
}

fn engine_state(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_state");
    g.sample_size(10);
    for (keys, name) in [(100_000u32, "100k_keys"), (1_000_000, "1M_keys")] {
        g.measurement_time(Duration::from_secs(if keys > 100_000 { 20 } else { 5 }));
        let mut engine = engine_with(keys);
        let mut blob = Vec::new();
        engine.save_state(&mut blob).expect("saved");
        eprintln!(
            "engine_state: {name}: {} keys held, blob {:.1} MB ({:.0} bytes a key)",
            engine.stats().keys.iter().sum::<usize>(),
            blob.len() as f64 / 1e6,
            blob.len() as f64 / f64::from(keys)
        );
        g.bench_function(format!("save_{name}"), |b| {
            b.iter(|| {
                blob.clear();
                engine.save_state(&mut blob).expect("saved");
                black_box(blob.len())
            })
        });
        g.bench_function(format!("restore_{name}"), |b| {
            b.iter_with_large_drop(|| Engine::restore_state(config(keys), &blob).expect("restored"))
        });
    }
    g.finish();
}

criterion_group!(benches, engine_state);
criterion_main!(benches);
