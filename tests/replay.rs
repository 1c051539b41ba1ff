//! Replay end to end on generated captures: every attack scenario raises its labelled alert within a
//! second of the flood's first packet, benign traffic raises none, output does not depend on threads
//! or batch size, and broken input ends with a clear error after the alerts for what was read.

mod common;

use common::fixtures::assert_contains_all;
use common::*;
use serde_json::Value;

fn starts(ev: &[Value]) -> Vec<&Value> {
    ev.iter().filter(|e| e["event"] == "start").collect()
}

/// `named`: the attack comes from few enough sources that the start event must name them.
fn check_scenario(scenario: &str, named: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cap = synth(dir.path(), scenario, SHORT);
    let labels = labels(&cap);
    assert!(!labels.is_empty(), "{scenario} has no labels");
    let out = run_ok(&["replay", "--quiet", arg(&cap)]);
    let ev = events(&out);
    for l in &labels {
        let first = l["first_packet_ns"].as_u64().expect("first_packet_ns");
        let hit = starts(&ev)
            .into_iter()
            .find(|e| e["scope"] == l["scope"] && e["key"] == l["key"] && e["class"] == l["class"]);
        let Some(hit) = hit else {
            panic!(
                "{scenario}: no start for label {l}; events:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        };
        let at = rfc3339_ns(hit["ts"].as_str().unwrap());
        assert!(
            at >= first && at - first <= 1_000_000_000,
            "{scenario}: start {} ms after the first packet",
            (at as i128 - first as i128) / 1_000_000
        );
        if named {
            let peers = hit["top_peers"].as_array().unwrap();
            assert!(!peers.is_empty(), "{scenario}: no top_peers");
        }
    }
    // Every start has exactly one end.
    for s in starts(&ev) {
        let ends = ev
            .iter()
            .filter(|e| e["event"] == "end" && e["id"] == s["id"])
            .count();
        assert_eq!(ends, 1, "{scenario}: alert {} has {ends} ends", s["id"]);
    }
}

#[test]
fn syn_flood_is_detected() {
    check_scenario("syn-flood", false);
}

#[test]
fn udp_flood_is_detected() {
    check_scenario("udp-flood", true);
}

#[test]
fn dns_reflection_with_fragments_is_detected() {
    check_scenario("dns-reflection", true);
}

#[test]
fn icmp_flood_is_detected() {
    check_scenario("icmp-flood", true);
}

#[test]
fn carpet_bombing_is_detected_on_the_subnet() {
    check_scenario("carpet-bombing", false);
}

#[test]
fn ipv6_syn_flood_is_detected() {
    check_scenario("ipv6-syn-flood", false);
}

#[test]
fn benign_background_raises_nothing() {
    let (_dir, cap) = temp_synth("benign", &["--duration", "60s"]);
    let out = run_ok(&["replay", arg(&cap)]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "benign traffic alerted"
    );
    assert!(summary_count(&out, "packets").unwrap() > 100_000);
}

#[test]
fn output_is_byte_identical_across_threads_and_batch_sizes() {
    let (_dir, cap) = temp_synth("udp-flood", SHORT);
    let cap = arg(&cap);
    let reference = run_ok(&["replay", "--quiet", "--threads", "1", cap]);
    assert!(!reference.stdout.is_empty());
    let layouts = [
        "--threads 2 --batch-size 256",
        "--threads 4 --batch-size 7",
        "--threads 1 --batch-size 1",
        "--threads 3 --batch-size 64",
        "--threads 1 --decode-threads 1",
        "--threads 2 --decode-threads 2 --batch-size 7",
        "--threads 3 --decode-threads 3 --batch-size 1",
    ];
    assert_layouts_print(&reference, &["replay", "--quiet"], &layouts, cap);
}

#[test]
fn output_is_identical_across_threads_when_populations_set_thresholds() {
    // Tiny floors: the thresholds of cold keys come from their scope's population, which the shards
    // merge at every window boundary.
    let (_dir, cap) = temp_synth("udp-flood", SHORT);
    let cap = arg(&cap);
    let base = ["replay", "--quiet", "--min-pps", "3"];
    let one = run(&[&base[..], &["--threads", "1", cap]].concat());
    assert!(one.status.success());
    assert!(String::from_utf8_lossy(&one.stdout).lines().count() > 10);
    for t in ["2", "4"] {
        let out = run(&[&base[..], &["--threads", t, "--batch-size", "5", cap]].concat());
        assert!(out.stdout == one.stdout, "--threads {t} differs");
    }
}

#[test]
fn truncated_capture_prints_alerts_then_fails_naming_the_file() {
    let (dir, cap) = temp_synth("syn-flood", SHORT);
    let bytes = std::fs::read(&cap).unwrap();
    // Cut inside the last record's data.
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    let mut first: Option<(Vec<u8>, String)> = None;
    for decode in ["0", "1", "2"] {
        let out = run(&["replay", "--decode-threads", decode, arg(&cut)]);
        assert_eq!(out.status.code(), Some(1), "--decode-threads {decode}");
        let err = stderr(&out);
        assert_contains_all(&last_stderr_line(&out), &["cut.pcap", "truncated"]);
        let ev = events(&out);
        assert!(
            ev.iter()
                .any(|e| e["event"] == "start" && e["class"] == "syn_flood"),
            "alerts before the cut were lost"
        );
        assert!(ev.iter().any(|e| e["event"] == "end"));
        // the same alerts and the same frame counts, decoded inline or by a pool
        let frames = err
            .lines()
            .find(|l| l.contains("frames"))
            .unwrap_or_default()
            .to_string();
        assert!(!frames.is_empty(), "no frames line in: {err}");
        match &first {
            None => first = Some((out.stdout.clone(), frames)),
            Some((stdout, f)) => {
                assert!(*stdout == out.stdout, "alerts differ with a decode pool");
                assert_eq!(*f, frames);
            }
        }
    }
}

#[test]
fn random_bytes_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pcap");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&junk, bytes).unwrap();
    let out = run(&["replay", arg(&junk)]);
    assert_eq!(out.status.code(), Some(1));
    assert_contains_all(&last_stderr_line(&out), &["junk.pcap", "not a pcap"]);
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_and_bad_usage_have_their_exit_codes() {
    let out = run(&["replay", "/nonexistent/x.pcap"]);
    assert_fails_naming(&out, &["/nonexistent/x.pcap"]);
    assert_eq!(run(&["replay"]).status.code(), Some(2));
    assert_eq!(
        run(&["replay", "--window", "fast", "x"]).status.code(),
        Some(2)
    );
}

#[test]
fn stdin_and_several_files_replay_as_one_stream() {
    let (_dir, cap) = temp_synth("icmp-flood", SHORT);
    let bytes = std::fs::read(&cap).unwrap();
    let mut child = bin()
        .args(["replay", "--quiet", "--decode-threads", "2", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&bytes).unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    let direct = run(&["replay", "--quiet", arg(&cap)]);
    assert!(piped.status.success());
    assert_eq!(piped.stdout, direct.stdout);
    // The same file twice: the second copy jumps back in time and is counted in full.
    let twice = run_ok(&["replay", arg(&cap), arg(&cap)]);
    let once = run(&["replay", arg(&cap)]);
    assert_eq!(
        summary_count(&twice, "frames").unwrap(),
        2 * summary_count(&once, "frames").unwrap()
    );
}
