//! Where output goes, on the real binary: stdout carries only alerts, a reader that closes stdout
//! early (`| head -1`) ends the run quietly with status 0, and an unusable `--output` fails before any
//! input is read.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The small SYN flood; with `--min-pps 1 --update-interval 100ms` it writes several hundred KB of
/// alerts, more than a pipe holds, so a reader that stops early is noticed by the writer.
fn flood(dir: &std::path::Path) -> PathBuf {
    synth(dir, "syn-flood", SMALL_FLOOD)
}

const CHATTY: &[&str] = &["--min-pps", "1", "--update-interval", "100ms"];

#[test]
fn closing_stdout_early_exits_zero_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let cap = flood(dir.path());
    let all = run(&[&["replay", arg(&cap)], CHATTY].concat());
    assert!(
        all.stdout.len() > 256 * 1024,
        "the run must write more than a pipe holds ({} bytes)",
        all.stdout.len()
    );

    let mut child = spawn_piped(bin().args(["replay", arg(&cap)]).args(CHATTY));
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // the reader is dropped here: stdout is closed after one line, as `head -1` does
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("{\"event\":\"start\""), "{first}");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "a closed stdout is not an error: {}",
        stderr(&out)
    );
}

#[test]
fn piping_into_head_keeps_the_pipeline_status_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cap = flood(dir.path());
    let script = format!(
        "set -o pipefail; '{}' replay '{}' {} | head -1 >/dev/null",
        env!("CARGO_BIN_EXE_floodwatch"),
        cap.display(),
        CHATTY.join(" ")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty());
}

#[test]
fn unusable_output_fails_before_reading_input() {
    let dir = tempfile::tempdir().unwrap();
    // the output is a directory: it cannot be created as a file
    let bad = arg(dir.path());
    let out = run(&["replay", "--output", bad, "/nonexistent/input.pcap"]);
    let err = assert_fails_naming(&out, &[bad, "writable"]);
    assert!(
        !err.contains("input.pcap"),
        "the output must fail first: {err}"
    );
    assert!(out.stdout.is_empty());

    // from stdin, held open and never written: the run must not wait for input
    let mut child = spawn_piped(
        bin()
            .args(["replay", "--output", bad, "-"])
            .stdin(Stdio::piped()),
    );
    let stdin = child.stdin.take().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        // a generous guard against a hang, not a timing assertion
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "replay waited for input before opening --output"
    );
    assert!(stderr(&out).contains("writable"));
}

#[test]
fn stdout_carries_only_alerts_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let cap = flood(dir.path());
    // a capture that also has frames that do not decode and ends in a truncated record
    let mut bytes = std::fs::read(&cap).unwrap();
    bytes.extend([0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3]); // a 3-byte frame
    bytes.extend([0, 0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 0]); // cut inside a record header
    let messy = dir.path().join("messy.pcap");
    std::fs::write(&messy, &bytes).unwrap();

    let json = run(&["replay", arg(&messy)]);
    assert_eq!(json.status.code(), Some(1));
    let ev = events(&json); // every line parses as JSON
    assert!(!ev.is_empty());
    for e in &ev {
        let kind = e["event"].as_str().unwrap_or_default();
        assert!(["start", "update", "end"].contains(&kind), "{e}");
    }
    let err = stderr(&json);
    assert!(err.contains("floodwatch summary") && err.contains("truncated_link 1"));
    assert!(err.contains("messy.pcap"));

    let text = run(&["replay", "--format", "text", arg(&messy)]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(stdout.lines().count(), ev.len(), "one line per event");
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        let ts = words.next().unwrap_or_default();
        assert!(ts.len() == 27 && ts.ends_with('Z'), "{line}");
        assert!(
            ["START", "UPDATE", "END"].contains(&words.next().unwrap_or_default()),
            "{line}"
        );
    }

    // --output takes the alerts; stdout stays empty
    let file = dir.path().join("alerts.jsonl");
    let to_file = run(&["replay", "-o", arg(&file), arg(&messy)]);
    assert!(to_file.stdout.is_empty());
    let written = std::fs::read(&file).unwrap();
    assert_eq!(written, json.stdout);

    // `-o -` is stdout, as `-` is standard input for the captures: no file named `-` appears
    let dash = bin()
        .current_dir(dir.path())
        .args(["replay", "-o", "-", arg(&messy)])
        .output()
        .unwrap();
    assert_eq!(dash.stdout, json.stdout);
    assert!(!dir.path().join("-").exists());
}
