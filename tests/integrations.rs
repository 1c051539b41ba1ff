//! Integrations on the real binary: the metrics endpoint counts exactly the packets a synth
//! capture holds, `--on-alert` sees every event once and kills a hanging command, the suggested
//! nftables rules and BPF filters parse, and `stats` events do not depend on threads or batches.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The packet and byte counts `floodwatch synth` reports for the capture it wrote.
fn synth_counts(dir: &Path, scenario: &str) -> (std::path::PathBuf, u64, u64) {
    let (path, out) = synth_output(dir, scenario, SHORT);
    let err = stderr(&out);
    // "wrote X (N packets, B bytes on the wire, ...)"
    let inner = err.split('(').nth(1).expect("synth report");
    let mut words = inner.split_whitespace();
    let packets = words.next().unwrap().parse().unwrap();
    let _ = words.next();
    let bytes = words.next().unwrap().parse().unwrap();
    (path, packets, bytes)
}

/// `GET /metrics` over loopback: the body.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// Sample lines of an exposition: `name{labels}` → value.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("sample line");
            (k.to_owned(), v.parse().expect("sample value"))
        })
        .collect()
}

/// Sum of every sample of `name` (all label sets).
fn sum(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

/// Kills the child when the test ends, passing or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn metrics_endpoint_counts_the_capture() {
    let dir = tempfile::tempdir().unwrap();
    let (cap, packets, bytes) = synth_counts(dir.path(), "udp-flood");
    let child = bin()
        .args([
            "replay",
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-linger",
            "120s",
            arg(&cap),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut err = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no metrics line");
        if let Some(rest) = line.trim().strip_prefix("floodwatch: metrics on http://") {
            break rest.trim_end_matches("/metrics").to_owned();
        }
    };
    // Scrape until the run has finished (a guard, not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(120);
    let m = loop {
        let m = samples(&scrape(&addr));
        if m["floodwatch_run_finished"] == 1.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "the replay never finished");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(m["floodwatch_frames_total"], packets as f64);
    assert_eq!(sum(&m, "floodwatch_packets_total"), packets as f64);
    assert_eq!(sum(&m, "floodwatch_bytes_total"), bytes as f64);
    // 5 s of 20 000 UDP packets/s, plus background UDP.
    assert!(m["floodwatch_packets_total{class=\"udp\"}"] >= 100_000.0);
    assert_eq!(sum(&m, "floodwatch_frames_not_decoded_total"), 0.0);
    assert_eq!(m["floodwatch_kernel_drops_total"], 0.0);
    assert_eq!(m["floodwatch_pipeline_drops_total"], 0.0);
    let started = sum(&m, "floodwatch_alerts_started_total");
    assert!(m["floodwatch_alerts_started_total{class=\"udp_flood\"}"] >= 1.0);
    assert_eq!(sum(&m, "floodwatch_alerts_ended_total"), started);
    assert_eq!(sum(&m, "floodwatch_alerts_active"), 0.0);
    assert!(sum(&m, "floodwatch_table_keys") > 0.0);
    // A path other than /metrics is not found.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

/// Replays a short `scenario` with the options `extra` and `--on-alert` set to the command `hook`
/// makes for a fresh folder, where its runs leave their files; the replay must succeed. The
/// temporary directory (the folder lives while it does), the folder and the replay's output.
fn replay_with_hook(
    scenario: &str,
    hook: impl FnOnce(&Path) -> String,
    extra: &[&str],
) -> (tempfile::TempDir, PathBuf, Output) {
    let (dir, cap) = temp_synth(scenario, SHORT);
    let folder = dir.path().join("hook-files");
    std::fs::create_dir(&folder).unwrap();
    let cmd = hook(&folder);
    let out = run_ok(&[&["replay", "--on-alert", &cmd], extra, &[arg(&cap)]].concat());
    (dir, folder, out)
}

#[test]
fn on_alert_sees_every_event_exactly_once() {
    // Each run records its environment line and stdin in a file of its own.
    let (_dir, rec, out) = replay_with_hook(
        "dns-reflection",
        |rec| {
            format!(
            "f=$(mktemp '{}/ev.XXXXXX') && {{ echo \"$FLOODWATCH_EVENT|$FLOODWATCH_ID|$FLOODWATCH_SCOPE|$FLOODWATCH_KEY|$FLOODWATCH_CLASS|$FLOODWATCH_PPS\"; cat; }} > \"$f\"",
            rec.display()
        )
        },
        &["--on-alert-concurrency", "2"],
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines.iter().any(|l| l.contains("\"event\":\"start\"")));
    let mut recorded: Vec<(String, String)> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|f| {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            let (env, json) = text.split_once('\n').expect("env line and JSON");
            (env.to_owned(), json.trim_end().to_owned())
        })
        .collect();
    recorded.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected = lines.clone();
    expected.sort();
    let got: Vec<&String> = recorded.iter().map(|(_, j)| j).collect();
    assert_eq!(got, expected.iter().collect::<Vec<_>>());
    for (env, json) in &recorded {
        let e: Value = serde_json::from_str(json).unwrap();
        let want = format!(
            "{}|{}|{}|{}|{}|{}",
            e["event"].as_str().unwrap(),
            e["id"].as_str().unwrap(),
            e["scope"].as_str().unwrap(),
            e["key"].as_str().unwrap(),
            e["class"].as_str().unwrap(),
            e["pps"].as_f64().unwrap()
        );
        assert_eq!(env, &want);
    }
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "alert hook: {} ok, 0 failed, 0 timed out",
            lines.len()
        )),
        "{err}"
    );
}

/// True when `pid` is gone (or a zombie nobody has reaped yet).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_hanging_hook_is_killed_after_its_timeout_and_counted() {
    // The command starts a grandchild, as real scripts do: it must die with the group.
    let (_dir, pids, out) = replay_with_hook(
        "syn-flood",
        |pids| {
            format!(
                "sleep 60 >/dev/null 2>&1 & echo $! > \"$(mktemp '{}/p.XXXXXX')\"; wait",
                pids.display()
            )
        },
        &["--on-alert-timeout", "300ms"],
    );
    let events = events(&out).len();
    assert!(events >= 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("alert hook: 0 ok, 0 failed, {events} timed out")),
        "{err}"
    );
    let mut seen = 0;
    for f in std::fs::read_dir(&pids).unwrap() {
        let pid: u32 = std::fs::read_to_string(f.unwrap().path())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(process_gone(pid), "sleep {pid} outlived its hook");
        seen += 1;
    }
    assert_eq!(seen, events);
}

#[test]
fn suggested_rules_parse_for_every_attack_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let nft = nft_usable(dir.path());
    let tcpdump = tool_runs("tcpdump");
    let mut rules = Vec::new();
    for scenario in [
        "syn-flood",
        "udp-flood",
        "dns-reflection",
        "icmp-flood",
        "carpet-bombing",
        "ipv6-syn-flood",
    ] {
        let cap = synth(dir.path(), scenario, SHORT);
        let out = run_ok(&["replay", "--quiet", arg(&cap)]);
        let ev = events(&out);
        let starts: Vec<&Value> = ev.iter().filter(|e| e["event"] == "start").collect();
        assert!(!starts.is_empty(), "{scenario}: no alert");
        for e in &starts {
            let m = &e["mitigation"];
            let nft_rules = m["nft"].as_array().expect("mitigation.nft");
            assert!(!nft_rules.is_empty());
            let key = e["key"].as_str().unwrap();
            for r in nft_rules {
                let r = r.as_str().unwrap();
                assert!(r.contains(key) && r.ends_with(" drop"), "{scenario}: {r}");
                rules.push(r.to_owned());
            }
            let bpf = m["bpf"].as_str().expect("mitigation.bpf");
            assert!(bpf.contains(key), "{scenario}: {bpf}");
            if tcpdump {
                assert_bpf_compiles(&cap, bpf, scenario);
            }
        }
        for e in ev.iter().filter(|e| e["event"] != "start") {
            assert!(e.get("mitigation").is_none(), "mitigation outside start");
        }
    }
    if nft {
        let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
        let file = nft_table_file(dir.path(), "floodwatch_check", &body);
        assert_nft_accepts(&file, format_args!("the suggestions:\n{body}\n"));
    }
}

#[test]
fn stats_events_are_identical_across_threads_and_batch_sizes() {
    let (_dir, cap) = temp_synth("syn-flood", SHORT);
    let cap = arg(&cap);
    let plain = run(&["replay", "--quiet", cap]);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("\"stats\""));
    let reference = run_ok(&[
        "replay",
        "--quiet",
        "--stats-interval",
        "1s",
        "--threads",
        "1",
        cap,
    ]);
    let ev = events(&reference);
    let stats: Vec<&Value> = ev.iter().filter(|e| e["event"] == "stats").collect();
    // 12 s of capture: a stats event at every whole second after the first packet.
    assert_eq!(stats.len(), 11, "{stats:?}");
    let counts: Vec<u64> = stats
        .iter()
        .map(|s| s["packets"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert!(stats.iter().any(|s| s["active_alerts"].as_u64() > Some(0)));
    // Without stats lines the output is the plain run's.
    let alerts_only: String = String::from_utf8_lossy(&reference.stdout)
        .lines()
        .filter(|l| !l.contains("\"event\":\"stats\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(alerts_only, String::from_utf8_lossy(&plain.stdout));
    let layouts = [
        "--threads 2 --batch-size 256",
        "--threads 3 --batch-size 7",
        "--threads 1 --batch-size 1",
    ];
    let base = ["replay", "--quiet", "--stats-interval", "1s"];
    assert_layouts_print(&reference, &base, &layouts, cap);
}

#[test]
fn a_hook_can_gain_no_privileges_and_holds_no_capability() {
    let (dir, cap) = temp_synth("syn-flood", common::SMALL_FLOOD);
    let seen = dir.path().join("status");
    let cmd = format!(
        "grep -E '^(NoNewPrivs|CapEff|CapAmb)' /proc/self/status > '{}'",
        seen.display()
    );
    run_ok(&["replay", "-q", "--on-alert", &cmd, arg(&cap)]);
    let status = std::fs::read_to_string(&seen).unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("CapAmb:\t0000000000000000"), "{status}");
}
