//! Checkpoints of the state (`--state`) at one million keys: what a shard pauses for, and what the
//! writer thread then spends off the capture path. Run with `cargo bench --bench checkpoint`.
//!
//! An engine holds 1 000 000 `dst_host` keys with learned baselines (plus the few subnet and source
//! keys of the same traffic). Each iteration of the first two moves packet time to the next window
//! boundary, whose full evaluation visits every key:
//! - `checkpoint/boundary_eval_1M_keys`: that evaluation alone;
//! - `checkpoint/boundary_eval_with_snapshot_1M_keys`: the same with a checkpoint asked for
//!   ([`Engine::request_snapshot`]): the evaluation copies each baseline as it goes. The difference
//!   between the two is the pause a checkpoint adds to a shard. The copy is dropped outside the
//!   measurement, as it is on the writer thread.
//! - `checkpoint/separate_pass_1M_keys`: [`Engine::snapshot_into`], a pass of its own over the keys
//!   (what a checkpoint taken between evaluations would cost; what the exit save does).
//! - `checkpoint/write_1M_keys`: [`Snapshot::save`] of those entries: sorting, serialising to JSON,
//!   writing a temporary file in the bench's directory, fsync, rename, directory fsync.
//!
//! Targets (issue 14): pause ≤ 50 ms, write ≤ 2 s, on this 2-core machine.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use floodwatch::config::DetectConfig;
use floodwatch::decode::PacketSummary;
use floodwatch::detect::{Engine, ShardSpec};
use floodwatch::state::Snapshot;
use floodwatch::time::Timestamp;

const T0: u64 = 1_764_079_200_000_000_000;
const KEYS: u32 = 1_000_000;

/// One SYN from a fixed client to `dst`.
fn packet(ts: u64, dst: u32) -> PacketSummary {
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    common::syn(ts, client, 40_000, IpAddr::V4(Ipv4Addr::from(dst)))
}

/// An engine holding `KEYS` destination hosts, each with a baseline learned from two windows.
fn engine_with_a_million_keys() -> Engine {
    let cfg = DetectConfig {
        // 40 % of the key budget goes to dst_host
        max_keys: DetectConfig::split_max_keys(u64::from(KEYS) * 5 / 2),
        hash_seed: 14,
        // the bench moves packet time a window per iteration: keep the idle keys all along
        idle_windows: 1_000_000,
        ..DetectConfig::default()
    };
    let mut e = Engine::new(cfg, ShardSpec::SOLE).expect("engine");
    let mut out = Vec::new();
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    for window in 0..2u64 {
        for i in 0..KEYS {
            let ts = T0 + window * 1_000_000_000 + u64::from(i) * 900;
            e.on_packet(&packet(ts, base + i), &mut out);
        }
    }
    e.advance_to(Timestamp(T0 + 2_500_000_000), &mut out);
    let mut snap = Vec::new();
    e.snapshot_into(&mut snap);
    assert!(
        snap.len() >= KEYS as usize,
        "only {} baselines learned",
        snap.len()
    );
    e
}

fn checkpoint(c: &mut Criterion) {
    let mut engine = engine_with_a_million_keys();
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    // packet time moves one window per evaluation
    let mut t = T0 + 3_000_000_000;
    let mut out = Vec::new();
    let mut reused = Vec::new();
    for snapshot in [false, true] {
        let name = if snapshot {
            "boundary_eval_with_snapshot_1M_keys"
        } else {
            "boundary_eval_1M_keys"
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if snapshot {
                        engine.request_snapshot(std::mem::take(&mut reused));
                    }
                    let started = std::time::Instant::now();
                    engine.advance_to(Timestamp(t), &mut out);
                    total += started.elapsed();
                    t += 1_000_000_000;
                    out.clear();
                    if snapshot {
                        let taken = engine.take_snapshot().expect("snapshot taken");
                        assert!(taken.len() >= KEYS as usize);
                        // the writer hands the buffer back, as the pipeline does
                        reused = black_box(taken);
                    }
                }
                total
            })
        });
    }
    // The same two, alternated evaluation by evaluation, so the load of the machine (shared with
    // other jobs) drifts less between them: the median of the differences is the added pause.
    let mut diffs = Vec::new();
    for _ in 0..15 {
        let started = std::time::Instant::now();
        engine.advance_to(Timestamp(t), &mut out);
        let plain = started.elapsed();
        t += 1_000_000_000;
        engine.request_snapshot(std::mem::take(&mut reused));
        let started = std::time::Instant::now();
        engine.advance_to(Timestamp(t), &mut out);
        let with = started.elapsed();
        t += 1_000_000_000;
        reused = engine.take_snapshot().expect("snapshot taken");
        diffs.push(with.as_secs_f64() - plain.as_secs_f64());
        out.clear();
    }
    diffs.sort_by(f64::total_cmp);
    eprintln!(
        "checkpoint: pause added to a boundary evaluation of 1M keys, 15 alternated pairs: median \
         {:.1} ms (min {:.1}, max {:.1})",
        diffs[diffs.len() / 2] * 1e3,
        diffs[0] * 1e3,
        diffs[diffs.len() - 1] * 1e3
    );
    // the first copy into a fresh buffer (page faults included)
    engine.request_snapshot(Vec::new());
    let started = std::time::Instant::now();
    engine.advance_to(Timestamp(t), &mut out);
    let fresh = started.elapsed();
    t += 1_000_000_000;
    drop(engine.take_snapshot());
    let started = std::time::Instant::now();
    engine.advance_to(Timestamp(t), &mut out);
    let plain = started.elapsed();
    eprintln!(
        "checkpoint: the first checkpoint (fresh buffer): evaluation {:.1} ms against {:.1} ms \
         without",
        fresh.as_secs_f64() * 1e3,
        plain.as_secs_f64() * 1e3
    );
    g.bench_function("separate_pass_1M_keys", |b| {
        b.iter_with_large_drop(|| {
            let mut v = Vec::new();
            engine.snapshot_into(&mut v);
            black_box(v)
        })
    });
    let mut entries = Vec::new();
    engine.snapshot_into(&mut entries);
    drop(engine);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let path = dir.path().join("state.json");
    g.bench_function("write_1M_keys", |b| {
        b.iter_batched(
            || Snapshot::new(24, 64, entries.clone()),
            |mut s| s.save(&path).expect("state written"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "checkpoint: {} baselines, state file {:.1} MB",
        entries.len(),
        size as f64 / 1e6
    );
}

criterion_group!(benches, checkpoint);
criterion_main!(benches);
