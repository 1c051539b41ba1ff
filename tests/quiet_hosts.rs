//! Quiet hosts hit by low-rate floods (issue 23, item 5) through the binary: synth's quiet-host
//! scenarios, a host whose whole normal is a ping every ~20 s beside a small site. A spoofed flood
//! of a few hundred packets a second, far under the floors, must name the victim with the right
//! class within 3 s; a port scan and a crowd of real connections at the same rate stay quiet.

mod common;

use common::{arg, events, labels, rfc3339_ns, run, stderr, synth};
use serde_json::Value;

const S: u64 = 1_000_000_000;

/// Replays `scenario` (default options, `extra` to the replay) and returns its labels and events.
fn replay(dir: &std::path::Path, scenario: &str, extra: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let cap = synth(dir, scenario, &[]);
    let mut args = vec!["replay", "-q"];
    args.extend_from_slice(extra);
    args.push(arg(&cap));
    let out = run(&args);
    assert!(out.status.success(), "replay {scenario}: {}", stderr(&out));
    (labels(&cap), events(&out))
}

/// Checks the victim alert of `scenario`: `class` at the labelled victim, from the quiet-host
/// floor, within 3 s of the attack's first packet; nothing else alerts. Returns the delay (ns).
fn check_flood(scenario: &str, class: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let (labels, ev) = replay(dir.path(), scenario, &[]);
    assert_eq!(labels.len(), 1, "{scenario}: one labelled attack");
    let label = &labels[0];
    assert_eq!(label["class"], class, "{label}");
    let starts: Vec<&Value> = ev.iter().filter(|e| e["event"] == "start").collect();
    assert_eq!(starts.len(), 1, "{scenario}: one alert, got {starts:?}");
    let start = starts[0];
    assert_eq!(start["scope"], "dst_host", "{start}");
    assert_eq!(start["key"], label["key"], "{start}");
    assert_eq!(start["class"], class, "{start}");
    assert_eq!(start["quiet_host"], true, "{start}");
    assert_eq!(start["threshold_pps"], 200.0, "{start}");
    let delay = rfc3339_ns(start["ts"].as_str().unwrap())
        .saturating_sub(label["first_packet_ns"].as_u64().unwrap());
    eprintln!(
        "{scenario}: {class} {:.2} s after the attack's first packet",
        delay as f64 / 1e9
    );
    assert!(
        delay <= 3 * S,
        "{scenario}: alert {:.2} s after the attack's start",
        delay as f64 / 1e9
    );
    // every event of the alert says where its threshold came from; the end comes after the flood
    let id = &start["id"];
    let of_it: Vec<&Value> = ev.iter().filter(|e| e["id"] == *id).collect();
    assert!(of_it.iter().all(|e| e["quiet_host"] == true), "{of_it:?}");
    assert_eq!(of_it.last().unwrap()["event"], "end");
    delay
}

#[test]
fn a_spoofed_syn_flood_on_a_quiet_host_is_a_syn_flood_within_3_s() {
    check_flood("quiet-host-syn", "syn_flood");
}

#[test]
fn a_spoofed_icmp_flood_on_a_quiet_host_is_an_icmp_flood_within_3_s() {
    check_flood("quiet-host-icmp", "icmp_flood");
}

/// Replays `scenario` and requires that nothing alerts.
fn check_quiet(scenario: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (labels, ev) = replay(dir.path(), scenario, extra);
    assert!(labels.is_empty(), "{scenario}: {labels:?}");
    assert!(ev.is_empty(), "{scenario}: {ev:?}");
}

#[test]
fn a_port_scan_of_a_quiet_host_from_one_source_stays_quiet() {
    check_quiet("quiet-host-scan", &[]);
}

#[test]
fn a_crowd_of_real_connections_to_a_quiet_host_stays_quiet() {
    check_quiet("quiet-host-crowd", &[]);
}

#[test]
fn the_quiet_host_floor_is_set_in_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    // at or above the flood's rate, the quiet-host floor no longer wakes on it
    let cfg = dir.path().join("fw.toml");
    std::fs::write(&cfg, "[quiet_hosts]\nsyn = 1000\n").unwrap();
    let (_, ev) = replay(dir.path(), "quiet-host-syn", &["--config", arg(&cfg)]);
    assert!(ev.is_empty(), "{ev:?}");
}
