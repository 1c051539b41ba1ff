//! `replay --record`: the recording a report is made from — the same alerts with or without it, every
//! alert's events and its key's trace, the traffic over time, bounded and deterministic.

mod common;

use common::{arg, assert_fails_naming, run, run_ok, stderr, temp_synth, SMALL_FLOOD};
use serde_json::Value;

fn replay_recording(capture: &str, record: &std::path::Path, extra: &[&str]) -> (String, Value) {
    let mut args = vec!["replay", "-q", "--record", arg(record), capture];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let rec: Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    (String::from_utf8(out.stdout).unwrap(), rec)
}

#[test]
fn recording_changes_no_alert_and_holds_every_alert_with_its_trace() {
    let (dir, cap) = temp_synth("syn-flood", SMALL_FLOOD);
    let cap = arg(&cap);
    let plain = run_ok(&["replay", "-q", cap]);
    let rec_path = dir.path().join("rec.json");
    let (alerts, rec) = replay_recording(cap, &rec_path, &[]);
    assert_eq!(alerts, String::from_utf8(plain.stdout).unwrap());

    assert_eq!(rec["format"], 1);
    assert_eq!(rec["inputs"][0], cap);
    let lines: Vec<Value> = alerts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let starts: Vec<&Value> = lines.iter().filter(|e| e["event"] == "start").collect();
    let recorded = rec["alerts"].as_array().unwrap();
    assert_eq!(recorded.len(), starts.len());
    assert!(!recorded.is_empty());
    for (a, s) in recorded.iter().zip(&starts) {
        assert_eq!(a["id"], s["id"]);
        assert_eq!(a["class"], s["class"]);
        assert_eq!(a["start"]["threshold_pps"], s["threshold_pps"]);
        assert_eq!(a["mitigation"]["bpf"], s["mitigation"]["bpf"]);
        let end = &a["end"];
        assert_eq!(end["event"], "end");
        let points = a["series"]["points"].as_array().unwrap();
        assert!(points.len() >= 10, "{} points", points.len());
        let (t0, t1) = (
            points[0]["ts_ns"].as_u64().unwrap(),
            points.last().unwrap()["ts_ns"].as_u64().unwrap(),
        );
        // the trace covers the alert: from before or at its start to its end
        assert!(t0 <= a["start"]["ts_ns"].as_u64().unwrap());
        assert!(t1 >= end["ts_ns"].as_u64().unwrap() - 1_000_000_000);
        let peak = points
            .iter()
            .map(|p| p["rate"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!(
            peak > points[0]["threshold"].as_f64().unwrap(),
            "peak {peak}"
        );
    }
    // the traffic series holds every packet
    let traffic = &rec["traffic"];
    let counted: u64 = traffic["packets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(counted, rec["packets"].as_u64().unwrap());
    assert!(rec["distinct_sources"].as_u64().unwrap() > 100);
}

#[test]
fn a_recording_is_the_same_for_any_thread_count() {
    let (dir, cap) = temp_synth("dns-reflection", common::SHORT);
    let cap = arg(&cap);
    let (a1, r1) = replay_recording(cap, &dir.path().join("r1.json"), &["--threads", "1"]);
    let (a3, r3) = replay_recording(cap, &dir.path().join("r3.json"), &["--threads", "3"]);
    assert_eq!(a1, a3);
    assert_eq!(r1, r3);
}

#[test]
fn an_unwritable_recording_path_is_an_error_naming_it() {
    let (dir, cap) = temp_synth("syn-flood", SMALL_FLOOD);
    let bad = dir.path().join("no/such/dir/rec.json");
    let out = run(&["replay", "-q", "--record", arg(&bad), arg(&cap)]);
    assert_fails_naming(&out, &["no/such/dir/rec.json"]);
}

#[test]
fn report_dir_writes_a_page_per_alert_when_it_ends() {
    let (dir, cap) = temp_synth("syn-flood", SMALL_FLOOD);
    let pages = dir.path().join("pages");
    let out = run_ok(&["replay", "--report-dir", arg(&pages), arg(&cap)]);
    let ids: Vec<String> = common::events(&out)
        .iter()
        .filter(|e| e["event"] == "end")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!ids.is_empty());
    for id in &ids {
        let page = pages.join(format!("{}.html", floodwatch::report::file_stem(id)));
        let html =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(
            html.contains("<html") || html.contains("<!doctype"),
            "{html}"
        );
    }
    let err = stderr(&out);
    assert!(
        err.contains(&format!("alert reports: {} written, 0 dropped", ids.len())),
        "{err}"
    );
    // nothing half-written is left behind
    let leftovers: Vec<_> = std::fs::read_dir(&pages)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn record_and_report_dir_together_keep_the_recording_and_write_the_pages() {
    let (dir, cap) = temp_synth("syn-flood", SMALL_FLOOD);
    let pages = dir.path().join("pages");
    let rec = dir.path().join("rec.json");
    let (alerts, recording) = replay_recording(arg(&cap), &rec, &["--report-dir", arg(&pages)]);
    let ends = alerts
        .lines()
        .filter(|l| l.contains(r#""event":"end""#))
        .count();
    assert!(ends > 0);
    assert_eq!(std::fs::read_dir(&pages).unwrap().count(), ends);
    assert_eq!(recording["alerts"].as_array().unwrap().len(), ends);
}

#[test]
fn a_directory_given_as_the_page_or_the_recording_fails_before_reading() {
    let (dir, cap) = temp_synth("syn-flood", SMALL_FLOOD);
    let d = arg(dir.path());
    for args in [
        vec!["report", "-q", "-o", d, arg(&cap)],
        vec!["replay", "-q", "--record", d, arg(&cap)],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("it is a directory"), "{err}");
        assert!(out.stdout.is_empty(), "nothing was replayed");
    }
}
