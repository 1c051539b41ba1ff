//! Counter and engine throughput, in packets per second: `Sliding::record`, `KeyTable::entry` (hit,
//! miss into a full table, miss held back by admission), `SourceAdmission::offer` (the per-scope
//! admission counters the engine runs for every source key), and
//! `Engine::on_packet` on a spoofed SYN flood whose sources are drawn from 1 k, 1 M or 10 M distinct
//! addresses. Run with `cargo bench --bench engine`.
//!
//! Packets come from a seeded generator (SplitMix64), one per iteration, with packet time advancing
//! 1 µs per packet (1 M packets/s), so evaluations (every 100 ms) and window rolls happen inside the
//! measurement at the rate a 1 M packets/s flood causes them. `generator_only` measures the
//! generator alone, to subtract.
//!
//! `signature/*`: `SignatureSketch::observe` per packet, cycling through 4096 prepared summaries: a
//! template flood (fixed TTL, window, length, flags; random source ports and IP IDs: the values an
//! alert's sketch mostly finds in its first slot) and a flood random in every field (every field a
//! miss that evicts: the worst case).

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodwatch::alert::AlertEvent;
use floodwatch::config::DetectConfig;
use floodwatch::decode::{HeaderFields, PacketSummary};
use floodwatch::detect::{admission_for, Engine, ShardSpec};
use floodwatch::key::Key;
use floodwatch::signature::SignatureSketch;
use floodwatch::table::{KeyTable, SourceAdmission};
use floodwatch::window::{Counts, Sliding};

/// Capture start of the generated stream.
const T0: u64 = 1_764_079_200_000_000_000;
/// Packet-time step: 1 µs, i.e. 1 M packets/s.
const STEP_NS: u64 = 1_000;

/// SplitMix64: a tiny seeded generator, so every run draws the same keys.
struct SplitMix(u64);

impl SplitMix {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; bias is irrelevant here).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// A spoofed SYN flood: sources drawn from `keys` addresses of 10.0.0.0/8 onwards, all to one victim.
struct Flood {
    rng: SplitMix,
    keys: u64,
    ts: u64,
}

impl Flood {
    fn new(keys: u64, seed: u64) -> Self {
        Flood {
            rng: SplitMix(seed),
            keys,
            ts: T0,
        }
    }

    #[inline]
    fn next(&mut self) -> PacketSummary {
        let r = self.rng.below(self.keys);
        self.ts += STEP_NS;
        let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(r as u32)));
        let victim = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
        common::syn(self.ts, src, 1024 + (r as u16 % 60_000), victim)
    }
}

fn host_key(i: u64) -> Key {
    Key::V4 {
        addr: 0x0a00_0000u32.wrapping_add(i as u32),
        prefix: 32,
    }
}

fn window_and_tables(c: &mut Criterion) {
    let mut g = c.benchmark_group("counters");
    g.throughput(Throughput::Elements(1));

    let one = Counts::of_packet(&Flood::new(1, 1).next());
    g.bench_function("sliding_record", |b| {
        let mut w = Sliding::new(0);
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            // a new window every 1000 packets, as at 1000 packets/s per key with 1 s windows
            w.record(black_box(n / 1000), &one);
        })
    });

    // A lookup in a table of `capacity` already holding the keys `filled`: of a key drawn from
    // `from + 0..span`, admitted when it is new or not. A hit; a miss in a full table; a miss not
    // admitted (deferred) in a table half full of tracked keys, so it probes one of realistic size.
    for (name, capacity, filled, seed, (from, span), admit) in [
        (
            "key_table_entry_hit_1k",
            65_536,
            0..1000,
            1,
            (0, 1000),
            true,
        ),
        (
            "key_table_entry_miss_full",
            65_536,
            0..65_536,
            2,
            (65_536, 10_000_000),
            true,
        ),
        (
            "key_table_entry_miss_deferred",
            32_768,
            20_000_000..20_016_384,
            3,
            (0, 10_000_000),
            false,
        ),
    ] {
        g.bench_function(name, |b| {
            let mut t: KeyTable<Sliding> = KeyTable::new(capacity, 7);
            for i in filled.clone() {
                let _ = t.entry(host_key(i), true, Sliding::default);
            }
            let mut rng = SplitMix(seed);
            b.iter(|| {
                let k = host_key(from + rng.below(span));
                black_box(t.entry(k, admit, Sliding::default).0)
            })
        });
    }

    g.bench_function("source_admission_offer_10M_sources", |b| {
        let mut a = admission_for(&DetectConfig::default());
        let mut rng = SplitMix(4);
        let mut n = 0u32;
        b.iter(|| {
            n = n.wrapping_add(1);
            if n.is_multiple_of(1_000_000) {
                a.new_window();
            }
            let load = u64::from(n % 1_000_000) + 1;
            black_box(a.offer(
                SourceAdmission::slots(host_key(rng.below(10_000_000))),
                load,
            ))
        })
    });
    g.finish();
}

fn engine_on_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_on_packet");
    g.throughput(Throughput::Elements(1));

    g.bench_function("generator_only", |b| {
        let mut flood = Flood::new(1_000_000, 9);
        b.iter(|| black_box(flood.next()))
    });

    for (name, keys) in [
        ("1k_keys", 1_000u64),
        ("1M_keys", 1_000_000),
        ("10M_keys_spoofed", 10_000_000),
    ] {
        g.bench_function(name, |b| {
            let cfg = DetectConfig {
                hash_seed: 42,
                ..DetectConfig::default()
            };
            let mut engine = match Engine::new(cfg, ShardSpec::SOLE) {
                Ok(e) => e,
                Err(e) => panic!("default config rejected: {e}"),
            };
            let mut flood = Flood::new(keys, 5);
            let mut out: Vec<AlertEvent> = Vec::new();
            b.iter(|| {
                engine.on_packet(&flood.next(), &mut out);
                if out.len() > 1024 {
                    out.clear();
                }
            })
        });
    }
    g.finish();
}

/// 4096 SYNs to one victim: `template` fixes every header field but the source port and IP ID.
fn signature_packets(template: bool) -> Vec<PacketSummary> {
    let mut rng = SplitMix(17);
    let mut flood = Flood::new(1_000_000, 3);
    (0..4096)
        .map(|_| {
            let r = rng.next();
            let mut p = flood.next();
            p.sport = r as u16;
            p.hdr = HeaderFields {
                ip_id: (r >> 16) as u16,
                ttl: 64,
                ip_len: 40,
                tcp_window: 512,
                bits: HeaderFields::KNOWN | HeaderFields::L4,
                ..HeaderFields::UNKNOWN
            };
            if !template {
                p.tcp_flags = (r >> 32) as u8;
                p.hdr.ttl = (r >> 40) as u8;
                p.hdr.ip_len = 40 + (r >> 48) as u16 % 1400;
                p.hdr.tcp_window = (r >> 24) as u16;
                p.hdr.tcp_opts_len = ((r >> 56) % 11) as u8 * 4;
                p.hdr.bits |= if r >> 63 == 0 { HeaderFields::DF } else { 0 };
            }
            p
        })
        .collect()
}

fn signature_observe(c: &mut Criterion) {
    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    for (name, template) in [
        ("observe_template_flood", true),
        ("observe_random_flood", false),
    ] {
        let packets = signature_packets(template);
        g.bench_function(name, |b| {
            let mut sketch = SignatureSketch::new();
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 4095;
                sketch.observe(black_box(&packets[i]));
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(1), Duration::from_secs(3));
    targets = window_and_tables, engine_on_packet, signature_observe
}
criterion_main!(benches);
