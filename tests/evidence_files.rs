//! `--evidence-dir` end to end: the real binary replays a synthetic SYN flood and writes a pcap per
//! alert; the files are read back (by a small reader here, and by tcpdump when it is installed) and
//! checked against the alerts and the capture they came from.

mod common;

use common::fixtures::assert_contains_all;
use common::{arg, assert_fails_naming, stderr};

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

const BEFORE: usize = 50;
const AFTER: usize = 200;

/// A small SYN flood: 3 000 SYN/s on 198.51.100.10 from 1 s to 3 s over 200 packets/s of benign
/// traffic, 4 s in all.
fn flood(dir: &Path) -> PathBuf {
    common::synth(dir, "syn-flood", common::SMALL_FLOOD)
}

/// `floodwatch replay --seed 1 --evidence-dir DIR --evidence-before 50 --evidence-after 200
/// EXTRA... CAPTURES...`.
fn replay(dir: &Path, extra: &[&str], captures: &[&Path]) -> Output {
    let before = BEFORE.to_string();
    let after = AFTER.to_string();
    let mut args = vec![
        "replay",
        "--seed",
        "1",
        "--evidence-dir",
        arg(dir),
        "--evidence-before",
        &before,
        "--evidence-after",
        &after,
    ];
    args.extend_from_slice(extra);
    args.extend(captures.iter().map(|c| arg(c)));
    common::run(&args)
}

fn ok(out: &Output) {
    assert!(out.status.success(), "floodwatch failed: {}", stderr(out));
}

/// The start events of `out`'s `dst_host` alerts.
fn dst_host_starts(out: &Output) -> Vec<Value> {
    starts(out)
        .into_iter()
        .filter(|s| s["scope"] == "dst_host")
        .collect()
}

fn starts(out: &Output) -> Vec<Value> {
    common::events(out)
        .into_iter()
        .filter(|e| e["event"] == "start")
        .collect()
}

/// A packet of an evidence file: time (ns), captured and original length, destination address.
#[derive(Debug, PartialEq)]
struct Packet {
    ts: u64,
    caplen: usize,
    wire_len: u32,
    dst: [u8; 4],
    bytes: Vec<u8>,
}

/// Reads a nanosecond pcap of Ethernet/IPv4 frames, checking its header.
fn read_pcap(path: &Path) -> Vec<Packet> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    assert!(b.len() >= 24, "{}: no header", path.display());
    assert_eq!(u32_at(0), 0xa1b2_3c4d, "nanosecond magic");
    assert_eq!((u32_at(4) & 0xffff, u32_at(4) >> 16), (2, 4), "version 2.4");
    assert_eq!(u32_at(20), 1, "link type Ethernet");
    let mut out = Vec::new();
    let mut i = 24;
    while i < b.len() {
        let ts = u64::from(u32_at(i)) * 1_000_000_000 + u64::from(u32_at(i + 4));
        let caplen = u32_at(i + 8) as usize;
        let wire_len = u32_at(i + 12);
        let bytes = b[i + 16..i + 16 + caplen].to_vec();
        let dst = bytes[30..34].try_into().unwrap();
        out.push(Packet {
            ts,
            caplen,
            wire_len,
            dst,
            bytes,
        });
        i += 16 + caplen;
    }
    out
}

/// tcpdump's reading of a file: (time in ns, destination address) per packet; None without
/// tcpdump.
fn tcpdump(path: &Path) -> Option<Vec<(u64, String)>> {
    if !common::tool_runs("tcpdump") {
        return None;
    }
    let o = common::tcpdump_nano(path).unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "tcpdump -r {}: {err}", path.display());
    assert!(err.contains("link-type EN10MB"), "{err}");
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let (s, ns) = w[0].split_once('.').expect("seconds.nanoseconds");
                let ts = s.parse::<u64>().unwrap() * 1_000_000_000 + ns.parse::<u64>().unwrap();
                // `IP src.port > dst.port: ...`
                assert_eq!(w[1], "IP", "{l}");
                let dst = w[4].trim_end_matches(':');
                let host = dst.rsplit_once('.').map_or(dst, |(h, _)| h);
                (ts, host.to_string())
            })
            .collect(),
    )
}

/// Every start event names its file, which holds N packets of the alert's key before the start
/// and M from it, in time order, each byte for byte a frame of the capture; tcpdump reads them;
/// and the files are the same at another thread count and batch size.
#[test]
fn each_start_names_a_file_with_n_packets_before_and_m_after() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = flood(tmp.path());
    let dir = tmp.path().join("evidence");
    let out = replay(&dir, &[], &[&cap]);
    ok(&out);
    let starts = starts(&out);
    assert!(!starts.is_empty(), "the flood raised no alert");
    let original: Vec<Vec<u8>> = {
        // the capture is microsecond pcap: records after a 24-byte header
        let b = std::fs::read(&cap).unwrap();
        let mut frames = Vec::new();
        let mut i = 24;
        while i + 16 <= b.len() {
            let caplen = u32::from_le_bytes(b[i + 8..i + 12].try_into().unwrap()) as usize;
            frames.push(b[i + 16..i + 16 + caplen].to_vec());
            i += 16 + caplen;
        }
        frames
    };
    let mut names = Vec::new();
    for s in &starts {
        let path = PathBuf::from(s["evidence"].as_str().unwrap_or_else(|| {
            panic!("start without an evidence field: {s}");
        }));
        assert_eq!(path.parent(), Some(dir.as_path()), "{s}");
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        let start = common::rfc3339_ns(s["ts"].as_str().unwrap());
        let packets = read_pcap(&path);
        let before = packets.iter().filter(|p| p.ts < start).count();
        let after = packets.iter().filter(|p| p.ts >= start).count();
        assert_eq!((before, after), (BEFORE, AFTER), "{}", path.display());
        assert!(packets.windows(2).all(|w| w[0].ts <= w[1].ts), "time order");
        let key = s["key"].as_str().unwrap();
        for p in &packets {
            let dst = std::net::Ipv4Addr::from(p.dst).to_string();
            match s["scope"].as_str() {
                Some("dst_host") => assert_eq!(dst, key),
                Some("dst_subnet") => assert!(key.starts_with("198.51.100."), "{key}"),
                other => panic!("unexpected scope {other:?}"),
            }
            assert_eq!(p.caplen as u32, p.wire_len);
            assert!(original.contains(&p.bytes), "a frame not in the capture");
        }
        if let Some(lines) = tcpdump(&path) {
            let times: Vec<u64> = packets.iter().map(|p| p.ts).collect();
            let seen: Vec<u64> = lines.iter().map(|(t, _)| *t).collect();
            assert_eq!(
                seen, times,
                "tcpdump reads the same packets at the same times"
            );
            if s["scope"] == "dst_host" {
                assert!(lines.iter().all(|(_, d)| d == key), "{lines:?}");
            }
        }
    }
    // one file per start, nothing left under a temporary name
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    names.sort();
    assert_eq!(files, names);
    let err = stderr(&out);
    let line = format!(
        "evidence files {}  packets {}",
        starts.len(),
        starts.len() * (BEFORE + AFTER)
    );
    assert!(err.contains(&line), "{err}");
    // the same files whatever the thread count and batch size
    let again = tmp.path().join("again");
    ok(&replay(
        &again,
        &["--threads", "3", "--batch-size", "7"],
        &[&cap],
    ));
    for name in &files {
        let a = std::fs::read(dir.join(name)).unwrap();
        let b = std::fs::read(again.join(name)).unwrap();
        assert!(a == b, "{name} differs at --threads 3 --batch-size 7");
    }
}

/// The same capture twice: the same alert id twice, two files (the second named `-2`), each with
/// its own pass's packets around its own start (told apart although their times are the same).
#[test]
fn a_capture_replayed_twice_gives_two_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = flood(tmp.path());
    let dir = tmp.path().join("evidence");
    let out = replay(&dir, &["--quiet"], &[&cap, &cap]);
    ok(&out);
    let starts = dst_host_starts(&out);
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0]["id"], starts[1]["id"]);
    let first = PathBuf::from(starts[0]["evidence"].as_str().unwrap());
    let second = PathBuf::from(starts[1]["evidence"].as_str().unwrap());
    assert!(second.to_string_lossy().ends_with("-2.pcap"), "{second:?}");
    let (a, b) = (read_pcap(&first), read_pcap(&second));
    assert_eq!(a.len(), BEFORE + AFTER);
    assert_eq!(
        a, b,
        "both passes hold the same packets around the same start"
    );
}

/// A budget smaller than a file header: the first alert keeps its (empty) file, the next one gets
/// none and no `evidence` field, and the summary counts both.
#[test]
fn the_byte_budget_keeps_the_earliest_file_and_skips_later_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = flood(tmp.path());
    let dir = tmp.path().join("evidence");
    let out = replay(&dir, &["--evidence-max-bytes", "24"], &[&cap, &cap]);
    ok(&out);
    let starts = dst_host_starts(&out);
    assert_eq!(starts.len(), 2, "{starts:?}");
    let kept = PathBuf::from(
        starts[0]["evidence"]
            .as_str()
            .expect("the first has a file"),
    );
    assert!(starts[1].get("evidence").is_none(), "{}", starts[1]);
    assert_eq!(read_pcap(&kept).len(), 0, "no room for a packet");
    if let Some(lines) = tcpdump(&kept) {
        assert!(lines.is_empty());
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    let err = stderr(&out);
    assert_contains_all(
        &err,
        &[
            "alerts skipped at --evidence-max-bytes 1",
            "files cut at --evidence-max-bytes 1",
        ],
    );
}

/// A directory that cannot be made fails at once, naming it and the option, before any input is
/// read (the capture here does not even exist).
#[test]
fn an_unusable_directory_fails_before_reading_input() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("evidence");
    let missing = tmp.path().join("missing.pcap");
    let out = replay(&dir, &[], &[&missing]);
    let err = assert_fails_naming(&out, &[arg(&dir), "--evidence-dir"]);
    assert!(
        !err.contains("missing.pcap"),
        "the directory is checked first: {err}"
    );
    assert!(out.stdout.is_empty());
}

/// The companions of `--evidence-dir` are refused without it (bad usage).
#[test]
fn evidence_options_need_the_directory() {
    let out = common::run(&["replay", "--evidence-before", "5", "x.pcap"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--evidence-dir"), "{err}");
}
