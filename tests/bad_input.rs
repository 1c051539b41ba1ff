//! Hostile and broken input on the real binary: every case ends with a clear message or a counted
//! reason in the summary, and the alerts for what was read before an error are printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

/// One record of a little-endian microsecond pcap.
#[derive(Clone, Debug)]
struct Rec {
    secs: u32,
    usecs: u32,
    orig_len: u32,
    data: Vec<u8>,
}

impl Rec {
    fn ts_us(&self) -> u64 {
        u64::from(self.secs) * 1_000_000 + u64::from(self.usecs)
    }

    fn set_ts_us(&mut self, us: u64) {
        self.secs = (us / 1_000_000) as u32;
        self.usecs = (us % 1_000_000) as u32;
    }
}

/// A synth capture split into its 24-byte file header and records.
fn split_pcap(bytes: &[u8]) -> ([u8; 24], Vec<Rec>) {
    let header: [u8; 24] = bytes[..24].try_into().unwrap();
    assert_eq!(
        &header[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "synth writes LE µs pcap"
    );
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut recs = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let incl = u32_at(at + 8) as usize;
        recs.push(Rec {
            secs: u32_at(at),
            usecs: u32_at(at + 4),
            orig_len: u32_at(at + 12),
            data: bytes[at + 16..at + 16 + incl].to_vec(),
        });
        at += 16 + incl;
    }
    (header, recs)
}

fn record_bytes(r: &Rec) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + r.data.len());
    for v in [r.secs, r.usecs, r.data.len() as u32, r.orig_len] {
        b.extend(v.to_le_bytes());
    }
    b.extend(&r.data);
    b
}

fn join_pcap(header: &[u8; 24], recs: &[Rec]) -> Vec<u8> {
    let mut b = header.to_vec();
    for r in recs {
        b.extend(record_bytes(r));
    }
    b
}

fn flood(dir: &Path) -> PathBuf {
    synth(dir, "syn-flood", SMALL_FLOOD)
}

/// The bytes of [`flood`], made in a new temporary directory that lives as long as the handle.
fn flood_bytes() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(flood(dir.path())).unwrap();
    (dir, bytes)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn replay(files: &[&Path], extra: &[&str]) -> Output {
    let mut args = vec!["replay"];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(|p| arg(p)));
    run(&args)
}

fn syn_flood_starts(ev: &[Value]) -> usize {
    ev.iter()
        .filter(|e| {
            e["event"] == "start"
                && e["class"] == "syn_flood"
                && e["scope"] == "dst_host"
                && e["key"] == "198.51.100.10"
        })
        .count()
}

/// Asserts a failed run counted the `frames` read before the error and kept the alerts of the
/// flood in them: its start and its end.
fn assert_flood_alerts_kept(out: &Output, frames: usize) {
    assert_eq!(summary_count(out, "frames"), Some(frames as u64));
    let ev = events(out);
    assert_eq!(
        syn_flood_starts(&ev),
        1,
        "alerts before the error were lost"
    );
    assert!(
        ev.iter().any(|e| e["event"] == "end"),
        "open alerts were not ended"
    );
}

#[test]
fn truncated_record_header_fails_after_printing_alerts() {
    let (dir, bytes) = flood_bytes();
    let (header, recs) = split_pcap(&bytes);
    // the whole capture, then 9 bytes of a record header
    let mut cut = join_pcap(&header, &recs);
    cut.extend(&record_bytes(&recs[0])[..9]);
    let path = write(dir.path(), "cut-header.pcap", &cut);
    let out = replay(&[&path], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = last_stderr_line(&out);
    assert!(
        last.contains("cut-header.pcap") && last.contains("truncated"),
        "{last}"
    );
    assert_flood_alerts_kept(&out, recs.len());
}

#[test]
fn bad_magic_is_named_with_its_bytes_and_a_fix() {
    let (dir, bytes) = flood_bytes();
    let mut bad = bytes.clone();
    bad[0] ^= 0x01;
    let path = write(dir.path(), "bad-magic.pcap", &bad);
    let out = replay(&[&path], &[]);
    assert_fails_naming(
        &out,
        &[
            "bad-magic.pcap",
            "not a pcap or pcapng file",
            "d5 c3 b2 a1",
            "editcap",
        ],
    );
    assert!(out.stdout.is_empty(), "stdout carries only alerts");
    // pcapng magic with a broken byte-order magic
    let mut ng = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4];
    ng.resize(28, 0);
    let path = write(dir.path(), "bad-bom.pcapng", &ng);
    let last = last_stderr_line(&replay(&[&path], &[]));
    assert!(
        last.contains("bad-bom.pcapng") && last.contains("byte-order magic"),
        "{last}"
    );
}

#[test]
fn zero_length_records_are_counted_not_fatal() {
    let (dir, bytes) = flood_bytes();
    let (header, mut recs) = split_pcap(&bytes);
    let n = recs.len();
    for i in (0..n).step_by(500).rev() {
        let mut empty = recs[i].clone();
        empty.data.clear();
        empty.orig_len = 0;
        recs.insert(i, empty);
    }
    let added = recs.len() - n;
    let path = write(dir.path(), "empty-records.pcap", &join_pcap(&header, &recs));
    let out = replay(&[&path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary_count(&out, "frames"), Some(recs.len() as u64));
    assert_eq!(summary_count(&out, "packets"), Some(n as u64));
    assert!(
        stderr(&out).contains(&format!("empty {added}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(syn_flood_starts(&events(&out)), 1);
}

#[test]
fn oversized_record_is_corrupt_after_printing_alerts() {
    let (dir, bytes) = flood_bytes();
    let (header, recs) = split_pcap(&bytes);
    let mut bad = join_pcap(&header, &recs);
    // a record header claiming 2 GiB, followed by a little data
    let mut liar = record_bytes(&recs[recs.len() - 1]);
    liar[8..12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    bad.extend(&liar);
    let path = write(dir.path(), "oversized.pcap", &bad);
    let out = replay(&[&path], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = last_stderr_line(&out);
    assert!(
        last.contains("oversized.pcap")
            && last.contains("corrupt")
            && last.contains("record claims 2147483663 bytes")
            && last.contains(&format!("byte {}", bytes.len())),
        "{last}"
    );
    assert_flood_alerts_kept(&out, recs.len());
}

#[test]
fn snaplen_over_256_kib_and_a_300_kib_record_are_read() {
    let (dir, bytes) = flood_bytes();
    let (mut header, mut recs) = split_pcap(&bytes);
    header[16..20].copy_from_slice(&(1u32 << 20).to_le_bytes()); // snaplen 1 MiB
    let mut jumbo = recs[recs.len() / 2].clone();
    jumbo.data.resize(300 * 1024, 0xab);
    jumbo.orig_len = jumbo.data.len() as u32;
    let at = recs.len() / 2;
    recs.insert(at, jumbo);
    let path = write(dir.path(), "jumbo.pcap", &join_pcap(&header, &recs));
    let out = replay(&[&path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary_count(&out, "frames"), Some(recs.len() as u64));
    assert_eq!(summary_count(&out, "packets"), Some(recs.len() as u64));
    assert_eq!(syn_flood_starts(&events(&out)), 1);
}

#[test]
fn small_backward_steps_are_counted_as_late_and_change_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let cap = flood(dir.path());
    let (header, mut recs) = split_pcap(&std::fs::read(&cap).unwrap());
    // swap the timestamps of every 7th pair: each swap puts one packet a little in the past
    let mut late = 0;
    for i in (0..recs.len() - 1).step_by(7) {
        let (a, b) = (recs[i].ts_us(), recs[i + 1].ts_us());
        if a < b {
            late += 1;
        }
        recs[i].set_ts_us(b);
        recs[i + 1].set_ts_us(a);
    }
    assert!(late > 100);
    let path = write(dir.path(), "jitter.pcap", &join_pcap(&header, &recs));
    let out = replay(&[&path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary_count(&out, "late_packets"), Some(late));
    assert_eq!(summary_count(&out, "time_jumps"), Some(0));
    let starts = |out: &Output| -> Vec<(String, String, String)> {
        events(out)
            .iter()
            .filter(|e| e["event"] == "start")
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (s("scope"), s("key"), s("class"))
            })
            .collect()
    };
    assert_eq!(starts(&out), starts(&replay(&[&cap], &[])));
}

#[test]
fn a_large_step_back_restarts_the_windows() {
    let dir = tempfile::tempdir().unwrap();
    let cap = flood(dir.path());
    let (header, mut recs) = split_pcap(&std::fs::read(&cap).unwrap());
    for r in &mut recs {
        r.set_ts_us(r.ts_us() - 3_600_000_000); // the same flood an hour earlier
    }
    let earlier = write(dir.path(), "earlier.pcap", &join_pcap(&header, &recs));
    let out = replay(&[&cap, &earlier], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary_count(&out, "time_jumps"), Some(1));
    assert_eq!(summary_count(&out, "late_packets"), Some(0));
    assert_eq!(syn_flood_starts(&events(&out)), 2, "both floods are seen");
}

#[test]
fn a_jump_of_years_is_crossed_in_a_few_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    let cap = flood(dir.path());
    let (header, mut recs) = split_pcap(&std::fs::read(&cap).unwrap());
    let span_s = (recs[recs.len() - 1].ts_us() - recs[0].ts_us()) / 1_000_000 + 1;
    for r in &mut recs {
        r.secs += 20 * 365 * 86_400; // the same flood twenty years later
    }
    let later = write(dir.path(), "later.pcap", &join_pcap(&header, &recs));
    let out = replay(&[&cap, &later], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary_count(&out, "time_jumps"), Some(1));
    // walking every 100 ms tick of twenty years would be 6.3e9 evaluations
    let evaluations = summary_count(&out, "evaluations").expect("evaluations in the summary");
    let ticks_of_traffic = 2 * span_s * 10;
    assert!(
        evaluations <= ticks_of_traffic + 10,
        "{evaluations} evaluations for {ticks_of_traffic} ticks of traffic"
    );
    assert_eq!(syn_flood_starts(&events(&out)), 2, "both floods are seen");
}

/// Rewrites a pcap as little-endian pcapng (one Ethernet interface in µs), with a block of an
/// undefined type every `every` packets.
fn to_pcapng(recs: &[Rec], every: usize) -> (Vec<u8>, usize) {
    to_pcapng_with(recs, every, Rec::ts_us)
}

/// [`to_pcapng`] with each packet's raw 64-bit µs timestamp given by `ts`.
fn to_pcapng_with(recs: &[Rec], every: usize, ts: impl Fn(&Rec) -> u64) -> (Vec<u8>, usize) {
    fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        let mut b = block_type.to_le_bytes().to_vec();
        b.extend(total.to_le_bytes());
        b.extend(body);
        b.resize(8 + padded, 0);
        b.extend(total.to_le_bytes());
        b
    }
    let mut shb = 0x1a2b_3c4d_u32.to_le_bytes().to_vec();
    shb.extend([1, 0, 0, 0]);
    shb.extend((-1i64).to_le_bytes());
    let mut f = block(0x0a0d_0d0a, &shb);
    let mut idb = vec![1, 0, 0, 0];
    idb.extend(0u32.to_le_bytes());
    f.extend(block(1, &idb));
    let mut unknown = 0;
    for (i, r) in recs.iter().enumerate() {
        if i % every == 0 {
            f.extend(block(
                0x0000_0042 + i as u32 % 3,
                b"vendor data nobody reads",
            ));
            unknown += 1;
        }
        let mut epb = 0u32.to_le_bytes().to_vec();
        let ts = ts(r);
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((ts as u32).to_le_bytes());
        epb.extend((r.data.len() as u32).to_le_bytes());
        epb.extend(r.orig_len.to_le_bytes());
        epb.extend(&r.data);
        f.extend(block(6, &epb));
    }
    (f, unknown)
}

#[test]
fn pcapng_blocks_of_unknown_type_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cap = flood(dir.path());
    let (_, recs) = split_pcap(&std::fs::read(&cap).unwrap());
    let (ng, unknown) = to_pcapng(&recs, 250);
    let path = write(dir.path(), "unknown-blocks.pcapng", &ng);
    let out = replay(&[&path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary_count(&out, "frames"), Some(recs.len() as u64));
    assert!(
        stderr(&out).contains(&format!("pcapng blocks of unknown type skipped: {unknown}")),
        "{}",
        stderr(&out)
    );
    let reference = replay(&[&cap], &[]);
    assert!(
        out.stdout == reference.stdout,
        "the pcapng gives other alerts than the same packets as pcap"
    );
}

#[test]
fn pcapng_timestamps_at_the_end_of_u64_do_not_hang_or_panic() {
    // 2^64-1 µs is past what nanoseconds in a u64 can hold: the tick loop once saturated there and
    // never ended, and the stats boundary overflowed.
    let dir = tempfile::tempdir().unwrap();
    let cap = flood(dir.path());
    let (_, recs) = split_pcap(&std::fs::read(&cap).unwrap());
    let half = recs[recs.len() / 2].ts_us();
    let (ng, _) = to_pcapng_with(&recs, usize::MAX, |r| {
        if r.ts_us() < half {
            r.ts_us()
        } else {
            u64::MAX
        }
    });
    let path = write(dir.path(), "far-future.pcapng", &ng);
    for extra in [&[][..], &["--stats-interval", "1s"][..]] {
        let out = replay(&[&path], extra);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        assert_eq!(summary_count(&out, "time_jumps"), Some(1));
        assert_eq!(summary_count(&out, "frames"), Some(recs.len() as u64));
    }
}
