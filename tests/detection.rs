//! Detection quality on generated captures: slow ramps and pulse waves are caught early, carpet
//! bombing alerts on the subnet, flash crowds and smooth growth are not called floods.

mod common;

use common::*;
use serde_json::Value;

const VICTIM: &str = "198.51.100.10";

fn replay(cap: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    replay_events(cap, extra)
}

fn starts_on<'a>(ev: &'a [Value], scope: &str, key: &str) -> Vec<&'a Value> {
    ev.iter()
        .filter(|e| e["event"] == "start" && e["scope"] == scope && e["key"] == key)
        .collect()
}

/// The alerts that start on the victim host.
fn victim_starts(ev: &[Value]) -> Vec<&Value> {
    starts_on(ev, "dst_host", VICTIM)
}

/// An event's time, ns since the epoch.
fn ts_ns(e: &Value) -> u64 {
    rfc3339_ns(e["ts"].as_str().unwrap())
}

/// When the victim's first alert starts, ns since the epoch.
fn first_victim_alert(ev: &[Value]) -> Option<u64> {
    victim_starts(ev).first().map(|e| ts_ns(e))
}

/// The nanoseconds from the first attack packet of `cap` (as labelled) to event `e`.
fn after_attack_start(cap: &std::path::Path, e: &Value) -> u64 {
    ts_ns(e) - labels(cap)[0]["first_packet_ns"].as_u64().unwrap()
}

#[test]
fn slow_ramp_alerts_before_half_rate() {
    // 40 s of benign traffic, then SYNs ramping from 0 to 30 kpps over 75 s.
    let (_dir, cap, ev) = synth_and_replay(
        "slow-ramp",
        "--duration 116s --attack-start 40s --attack-duration 75s --attack-pps 30000",
    );
    let s = victim_starts(&ev)
        .first()
        .copied()
        .expect("ramp never alerted");
    assert_eq!(s["class"], "syn_flood");
    let at_s = after_attack_start(&cap, s) as f64 / 1e9;
    let rate_then = 30_000.0 * at_s / 75.0;
    assert!(
        rate_then < 15_000.0,
        "alerted at {at_s:.1} s into the ramp, {rate_then:.0} pps"
    );
}

#[test]
fn pulse_wave_alerts_on_the_first_pulse_as_one_alert() {
    // 2 s on, 8 s off at 80 kpps: the hold-down (10 s) outlasts the gaps, so the pulses share one alert.
    let (_dir, cap, ev) = synth_and_replay(
        "pulse-wave",
        "--duration 50s --attack-start 10s --attack-duration 30s --attack-pps 80000",
    );
    let s = victim_starts(&ev);
    assert_eq!(s.len(), 1, "pulses split into {} alerts", s.len());
    assert!(
        after_attack_start(&cap, s[0]) < 1_000_000_000,
        "first pulse not caught within a second"
    );
    let end = ev
        .iter()
        .find(|e| e["event"] == "end" && e["id"] == s[0]["id"])
        .unwrap();
    assert_eq!(end["reason"], "below_threshold");
    // With a hold-down shorter than the gaps, each pulse is its own alert.
    let ev = replay(&cap, &["--hold-down", "3s"]);
    assert_eq!(victim_starts(&ev).len(), 3);
}

#[test]
fn carpet_bombing_alerts_on_the_subnet_not_the_hosts() {
    let (_dir, cap) = temp_synth(
        "carpet-bombing",
        &["--duration", "20s", "--attack-pps", "30000"],
    );
    let ev = replay(&cap, &[]);
    let s = starts_on(&ev, "dst_subnet", "198.51.100.0/24");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["class"], "udp_flood");
    assert!(
        s[0]["top_hosts"].as_array().map_or(0, Vec::len) >= 5,
        "victims not listed"
    );
    // Each host gets ~120 packets/s: none alerts on its own.
    assert!(
        ev.iter().all(|e| e["scope"] != "dst_host"),
        "a single host alerted"
    );
}

#[test]
fn flash_crowd_is_not_a_syn_flood() {
    let dir = tempfile::tempdir().unwrap();
    // Ten times one server's normal session rate, then a crowd big enough to cross the SYN floor.
    for pps in ["1000", "20000"] {
        let cap = synth(
            dir.path(),
            "flash-crowd",
            &["--duration", "30s", "--attack-pps", pps],
        );
        let ev = replay(&cap, &[]);
        let syn: Vec<_> = ev
            .iter()
            .filter(|e| e["event"] == "start" && e["class"] == "syn_flood")
            .collect();
        assert!(
            syn.is_empty(),
            "flash crowd at {pps} pps called syn_flood: {syn:?}"
        );
        if pps == "20000" {
            assert!(
                ev.iter().any(|e| e["event"] == "start"
                    && e["class"] == "flash_crowd"
                    && e["key"] == VICTIM),
                "the overload itself was not reported"
            );
        }
    }
}

#[test]
fn benign_growth_to_three_times_raises_nothing() {
    let (_dir, _cap, ev) = synth_and_replay(
        "benign-growth",
        "--duration 150s --attack-start 20s --attack-duration 120s",
    );
    assert!(ev.is_empty(), "smooth growth alerted: {:?}", ev.first());
}

#[test]
fn a_million_spoofed_sources_stay_under_128_mib_and_still_alert() {
    let (_dir, cap) = temp_synth(
        "spoofed-sources",
        &words(
            "--sources 1000000 --duration 12s --attack-start 2s --attack-duration 8s \
             --attack-pps 130000 --background-pps 500 --min-size",
        ),
    );
    let out = run_ok(&["replay", arg(&cap)]);
    let ev = events(&out);
    let s = victim_starts(&ev);
    assert_eq!(
        s.first().map(|e| e["class"].clone()),
        Some("syn_flood".into())
    );
    let distinct = s[0]["distinct_peers"].as_u64().unwrap();
    assert!(distinct > 1000, "distinct sources {distinct}");
    let mib = summary_count(&out, "memory").expect("no peak memory in the summary");
    assert!(mib <= 128, "peak RSS {mib} MiB");
    // The spoofed sources were held back, and counted.
    let err = stderr(&out);
    // the CPU the run took, to the millisecond: user and system add up to the total
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with("CPU "))
        .expect("no CPU line");
    let secs: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .collect();
    assert_eq!(secs.len(), 3, "{line}");
    assert!(
        secs[0] > 0.0 && (secs[1] + secs[2] - secs[0]).abs() <= 0.002,
        "{line}"
    );
    assert!(err.contains("not tracked"), "{err}");
}

#[test]
fn saved_baselines_start_warm_and_never_delay_an_alert() {
    let (dir, benign) = temp_synth("benign", &["--duration", "60s"]);
    let saved = dir.path().join("baselines.json");
    run_ok(&[
        "replay",
        "--quiet",
        "--save-baseline",
        arg(&saved),
        arg(&benign),
    ]);
    let file: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(file["version"], 1);
    assert!(file["entries"].as_array().unwrap().len() > 100);
    let flood = synth(dir.path(), "syn-flood", &["--duration", "20s"]);
    let cold = replay(&flood, &[]);
    let warm = replay(&flood, &["--load-baseline", arg(&saved)]);
    assert!(
        first_victim_alert(&warm).expect("no alert")
            <= first_victim_alert(&cold).expect("no alert"),
        "the loaded baseline delayed the alert"
    );
    // The warm run knows the victim's normal rate from the first packet.
    let b = victim_starts(&warm)[0]["baseline_pps"].as_f64().unwrap();
    assert!(b > 0.0);
    // A corrupt file is a clear error before anything is read.
    std::fs::write(
        &saved,
        b"{\"format\":\"floodwatch-baselines\",\"version\":1,\"entries\":[",
    )
    .unwrap();
    let out = run(&["replay", "--load-baseline", arg(&saved), arg(&flood)]);
    assert_fails_naming(&out, &["baselines.json", "--save-baseline"]);
    assert!(out.stdout.is_empty());
}

#[test]
fn config_file_overrides_apply_and_the_command_line_wins() {
    let (dir, flood) = temp_synth("syn-flood", &["--duration", "14s", "--attack-pps", "5000"]);
    let cfg = dir.path().join("fw.toml");
    // The default config, as printed, works as is.
    let out = run(&["config", "--default"]);
    std::fs::write(&cfg, &out.stdout).unwrap();
    assert_eq!(
        replay(&flood, &["--config", arg(&cfg)]),
        replay(&flood, &[])
    );
    // A per-prefix floor above the flood's rate silences the victim; its subnet stays quiet too, since
    // all of the subnet's excess is that one host's (subnet alerts are for spread traffic).
    std::fs::write(
        &cfg,
        "[[prefix]]\nprefix = \"198.51.100.10/32\"\nmin_pps = 20000\n",
    )
    .unwrap();
    let ev = replay(&flood, &["--config", arg(&cfg)]);
    assert!(ev.is_empty(), "{ev:?}");
    // A lower floor on the victim makes it alert no later than the defaults (at 25x the default
    // floor the short window already starts both at the first tick of the flood).
    std::fs::write(
        &cfg,
        "[[prefix]]\nprefix = \"198.51.100.10/32\"\nmin_pps = 100\n",
    )
    .unwrap();
    let low = replay(&flood, &["--config", arg(&cfg)]);
    assert!(first_victim_alert(&low).unwrap() <= first_victim_alert(&replay(&flood, &[])).unwrap());
    // Ignored networks are not counted at all.
    std::fs::write(&cfg, "[networks]\nignore = [\"198.51.100.0/24\"]\n").unwrap();
    assert!(replay(&flood, &["--config", arg(&cfg)]).is_empty());
    // The command line beats the file.
    std::fs::write(&cfg, "[detection]\nmin_pps = 100000\n").unwrap();
    assert!(replay(&flood, &["--config", arg(&cfg)]).is_empty());
    assert!(!replay(&flood, &["--config", arg(&cfg), "--min-pps", "1000"]).is_empty());
    // Unknown keys are rejected by name.
    std::fs::write(&cfg, "[detection]\nmin_ppss = 5\n").unwrap();
    let out = run(&["replay", "--config", arg(&cfg), arg(&flood)]);
    assert_fails_naming(&out, &["min_ppss", "fw.toml"]);
}
