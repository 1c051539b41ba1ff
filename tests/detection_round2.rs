//! Detection, second round, on labelled synth scenarios: sub-second bursts and short samples alert
//! (short window, fresh keys judged on the time they covered), a long-learned low normal lowers the
//! floor while a compressed benign day stays quiet, and sources sending at about their floor are
//! named within a second.

mod common;

use common::*;
use serde_json::Value;

fn replay(cap: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    replay_events(cap, extra)
}

/// For every label of `cap`, the start event on its scope, key and class, and the delay from the
/// label's first packet to it (ns). Panics naming the label when one is missing.
fn delays(cap: &std::path::Path, ev: &[Value]) -> Vec<(String, u64)> {
    labels(cap)
        .iter()
        .map(|l| {
            let s = ev
                .iter()
                .find(|e| {
                    e["event"] == "start"
                        && e["scope"] == l["scope"]
                        && e["key"] == l["key"]
                        && e["class"] == l["class"]
                })
                .unwrap_or_else(|| panic!("no start for label {l}; got {ev:#?}"));
            let first = l["first_packet_ns"].as_u64().unwrap();
            let at = rfc3339_ns(s["ts"].as_str().unwrap());
            (
                format!("{} {}", l["scope"], l["key"]),
                at.saturating_sub(first),
            )
        })
        .collect()
}

#[test]
fn a_thousand_syns_in_40_ms_after_silence_alert_within_200_ms() {
    let (_dir, cap, ev) = synth_and_replay(
        "syn-burst",
        "--duration 15s --attack-start 10s --attack-pps 25000 --attack-duration 40ms",
    );
    for (what, d) in delays(&cap, &ev) {
        assert!(d <= 200_000_000, "{what}: {} ms", d / 1_000_000);
    }
}

#[test]
fn short_samples_of_floods_alert() {
    // a few thousand UDP datagrams in a tenth of a second (30 000/s from 3 hosts)
    let (dir, udp) = temp_synth(
        "udp-flood",
        &words(
            "--duration 3s --attack-start 2s --attack-duration 100ms --attack-pps 30000 \
             --background-pps 500",
        ),
    );
    // a fraction of a second of reflection at 10 000/s, the whole capture shorter than a window
    let dns = synth(
        dir.path(),
        "dns-reflection",
        &words(
            "--duration 400ms --attack-start 0s --attack-duration 400ms --attack-pps 10000 \
             --background-pps 500",
        ),
    );
    for cap in [udp, dns] {
        let ev = replay(&cap, &[]);
        for (what, d) in delays(&cap, &ev) {
            assert!(
                d <= 400_000_000,
                "{}: {what}: {} ms",
                cap.display(),
                d / 1_000_000
            );
        }
    }
}

#[test]
fn a_20x_jump_over_a_long_learned_normal_alerts_under_the_floor() {
    // 10 legitimate SYN/s for 35 minutes, then 200 spoofed SYN/s: a fifth of the SYN floor
    let (_dir, cap, ev) = synth_and_replay(
        "learned-floor",
        "--duration 36m --attack-start 35m --attack-duration 30s --background-pps 100 \
             --attack-pps 200",
    );
    for (what, d) in delays(&cap, &ev) {
        assert!(d <= 2_000_000_000, "{what}: {} ms", d / 1_000_000);
    }
    let start = ev.iter().find(|e| e["event"] == "start").unwrap();
    let thr = start["threshold_pps"].as_f64().unwrap();
    assert!((100.0..1000.0).contains(&thr), "threshold {thr}");
    // Learned floors off: the absolute floor holds and nothing alerts.
    assert!(replay(&cap, &["--learned-floor", "1"]).is_empty());
}

#[test]
fn a_compressed_benign_day_raises_nothing() {
    // daily cycle (night at 30 %), +30 % growth, page-load bursts at 3x and 2-s surges at 2x
    let (_dir, cap) = temp_synth(
        "benign-day",
        &["--duration", "24m", "--background-pps", "300"],
    );
    assert!(labels(&cap).is_empty());
    // learned floors mature after 15 minutes by default; let them mature early too
    for extra in [&[][..], &["--mature-after", "2m"][..]] {
        let ev = replay(&cap, extra);
        assert!(ev.is_empty(), "{extra:?}: {ev:#?}");
    }
}

#[test]
fn sources_at_their_floor_are_named_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    for per_source in [1100u32, 1200, 1500] {
        let total = (4 * per_source).to_string();
        let cap = synth(
            dir.path(),
            "sources-at-floor",
            &[
                "--duration",
                "14s",
                "--sources",
                "4",
                "--attack-pps",
                &total,
            ],
        );
        let ev = replay(&cap, &[]);
        let d = delays(&cap, &ev);
        assert_eq!(d.len(), 5, "victim and four sources");
        for (what, d) in d {
            assert!(
                d <= 1_000_000_000,
                "{per_source}/s: {what} after {} ms",
                d / 1_000_000
            );
        }
    }
}

#[test]
fn signatures_make_rules_that_match_the_attack_and_spare_the_customers() {
    let Some((_dir, starts)) = signature_scenario_starts_for_tcpdump() else {
        return;
    };
    for (scenario, cap, start) in starts {
        let sig = start["signature"].as_array().expect("a signature");
        assert!(!sig.is_empty(), "{scenario}: empty signature");
        let bpf = start["mitigation"]["bpf"].as_str().unwrap();
        let counts = filter_matches(&cap, bpf);
        let ((att, att_all), (leg, leg_all)) = counts;
        eprintln!("{scenario}: attack {att}/{att_all}, legitimate {leg}/{leg_all}: {bpf}");
        assert_takes_the_attack_spares_the_customers(scenario, counts);
        assert!(leg_all > 1000 && att_all > 10_000);
    }
}
