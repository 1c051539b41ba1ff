//! Daemon-grade operation through the real binary: the `--state` file survives `kill -9` at any
//! moment and is loaded warm after a restart; a corrupt one is moved aside; checkpoints are counted
//! in the metrics.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{arg, assert_fails_naming, bin, events, is_root, run, run_ok, stderr, synth, words};
use serde_json::Value;

const VICTIM: &str = "198.51.100.10";

/// Benign traffic (with the victim among its hosts) to learn from: `secs` seconds at 500 pps.
fn benign(dir: &Path, secs: u32) -> PathBuf {
    synth(
        dir,
        "benign",
        &["--duration", &format!("{secs}s"), "--background-pps", "500"],
    )
}

/// `floodwatch replay --quiet --load-baseline FILE tiny.pcap` succeeds: the strict loader accepts
/// FILE.
fn strictly_loadable(state: &Path, tiny: &Path) -> Result<(), String> {
    let out = run(&[
        "replay",
        "--quiet",
        "--load-baseline",
        arg(state),
        arg(tiny),
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(stderr(&out).into_owned())
    }
}

/// Temporary files beside the state file (a checkpoint was being written).
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".state.json.tmp."))
        .collect()
}

fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// A small pseudo-random sequence (no dependency), the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn kill_9_while_checkpointing_never_corrupts_the_state_and_a_restart_starts_warm() {
    let dir = tempfile::tempdir().unwrap();
    let learn = benign(dir.path(), 90);
    let tiny_dir = dir.path().join("tiny");
    std::fs::create_dir(&tiny_dir).unwrap();
    let tiny = synth(
        &tiny_dir,
        "benign",
        &["--duration", "1s", "--background-pps", "50"],
    );
    let state = dir.path().join("state.json");
    let s = arg(&state);

    // Learn once, cleanly: the state holds warm baselines.
    run_ok(&["replay", "--quiet", "--state", s, arg(&learn)]);
    strictly_loadable(&state, &tiny).unwrap();

    // Then crash it again and again while it checkpoints non-stop (a checkpoint every 100 ms of
    // packet time at 40x: as soon as one is written the next is due).
    let mut rng = Lcg(14);
    // at least 24 kills, and more (up to 120) until one lands mid-write: on a busy machine (the
    // other tests of this file run beside it) checkpoints come less often and a round of 24 can
    // miss them all
    let mut iterations = 0;
    let mut mid_write = 0;
    let started = Instant::now();
    for i in 0..120 {
        if i >= 24 && mid_write > 0 {
            break;
        }
        iterations += 1;
        let mut child = bin()
            .args([
                "replay",
                "--quiet",
                "--state",
                s,
                "--state-interval",
                "100ms",
                "--realtime",
                "--speed",
                "40",
                arg(&learn),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        kill9(&mut child);
        if !temporaries(dir.path()).is_empty() {
            mid_write += 1;
        }
        strictly_loadable(&state, &tiny)
            .unwrap_or_else(|e| panic!("iteration {i}: the state no longer loads: {e}"));
    }
    eprintln!(
        "kill -9 loop: {iterations} kills in {:.1} s, {mid_write} of them while a checkpoint was \
         being written; the state loaded every time",
        started.elapsed().as_secs_f64()
    );
    assert!(
        mid_write > 0,
        "no kill landed during a checkpoint: the test proves nothing"
    );

    // A restart with --state removes the leftovers and alerts on the next flood with learned
    // baselines at once: no warm-up.
    // the flood begins with the capture: a cold detector has no history of the victim at all
    let flood = synth(
        dir.path(),
        "syn-flood",
        &words("--duration 6s --attack-start 0s --attack-duration 4s"),
    );
    let out = run_ok(&["replay", "--state", s, arg(&flood)]);
    let err = stderr(&out);
    assert!(err.contains("learned baselines from"), "{err}");
    assert!(temporaries(dir.path()).is_empty(), "{err}");
    let ev = events(&out);
    let start: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event"] == "start" && e["scope"] == "dst_host" && e["key"] == VICTIM)
        .collect();
    assert!(!start.is_empty(), "no alert on the victim: {ev:?}");
    let b = start[0]["baseline_pps"].as_f64().unwrap();
    assert!(
        b > 0.0,
        "the restarted run alerted without its learned baseline"
    );
    // the same flood with no state: the victim is cold
    let cold = events(&run(&["replay", "--quiet", arg(&flood)]));
    let cold_b = cold
        .iter()
        .find(|e| e["event"] == "start" && e["scope"] == "dst_host" && e["key"] == VICTIM)
        .map(|e| e["baseline_pps"].as_f64().unwrap());
    assert_eq!(cold_b, Some(0.0), "{cold:?}");
}

#[test]
fn a_corrupt_state_is_moved_aside_and_the_run_starts_cold_but_load_baseline_stays_strict() {
    let dir = tempfile::tempdir().unwrap();
    let learn = benign(dir.path(), 40);
    let state = dir.path().join("state.json");
    let s = arg(&state);
    // a truncated file, as an in-place write cut short would leave
    std::fs::write(
        &state,
        b"{\"format\":\"floodwatch-baselines\",\"version\":1,\"entries\":[{\"scope\"",
    )
    .unwrap();
    let out = run_ok(&["replay", "--state", s, arg(&learn)]);
    let err = stderr(&out);
    assert!(
        err.contains("warning: the state file") && err.contains("moved it aside to"),
        "{err}"
    );
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // the run wrote a fresh, good state at its end
    let f: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(f["format"], "floodwatch-baselines");
    assert!(f["entries"].as_array().unwrap().len() > 10);
    // --load-baseline on the corrupt file is still an error, before anything is read
    let bad = dir.path().join(&aside[0]);
    let out = run(&["replay", "--load-baseline", arg(&bad), arg(&learn)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    // a state directory that does not exist is a clear error at start
    let out = run(&[
        "replay",
        "--state",
        dir.path().join("nope/state.json").to_str().unwrap(),
        arg(&learn),
    ]);
    assert_fails_naming(&out, &["nope/state.json", "writable"]);
}

/// Two hours of packet time played at 360x (about 20 s): six 20-minute segments, each with a
/// different 30 s flood, replayed as one stream with `--state` checkpointed every 5 minutes of
/// packet time. Memory stays flat, keys are evicted once floods end, every alert ends on its own,
/// and every checkpoint is written.
#[test]
fn soak_two_hours_of_floods_coming_and_going() {
    let dir = tempfile::tempdir().unwrap();
    let segment_s: u64 = 1200;
    let start0: u64 = 1_764_079_200;
    let scenarios = [
        "syn-flood",
        "udp-flood",
        "dns-reflection",
        "icmp-flood",
        "carpet-bombing",
        "syn-flood",
    ];
    let mut files = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        let seg = dir.path().join(format!("seg{i}"));
        std::fs::create_dir(&seg).unwrap();
        let start = (start0 + i as u64 * segment_s).to_string();
        let seed = (i + 1).to_string();
        files.push(synth(
            &seg,
            scenario,
            &[
                "--duration",
                "20m",
                "--attack-start",
                "5m",
                "--attack-duration",
                "30s",
                "--attack-pps",
                "800",
                "--background-pps",
                "20",
                "--min-size",
                "--start",
                &start,
                "--seed",
                &seed,
            ],
        ));
    }
    let state = dir.path().join("state.json");
    let mut args: Vec<String> = [
        "replay",
        "--min-pps",
        "100",
        "--state",
        arg(&state),
        "--state-interval",
        "5m",
        "--realtime",
        "--speed",
        "360",
        "--metrics-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(files.iter().map(|f| arg(f).to_string()));
    let mut child = common::spawn_piped(bin().args(&args));
    let pid = child.id();
    // the endpoint's address is the first thing on stderr
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "no metrics line"
        );
        if let Some(rest) = line.trim().strip_prefix("floodwatch: metrics on http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    let err_rest = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut s).unwrap();
        s
    });
    // sample memory and keys while it runs
    let mut samples: Vec<(f64, u64, u64)> = Vec::new(); // (packet time s, RSS bytes, keys)
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "soak too slow"
        );
        let rss = rss_bytes(pid);
        if let (Some(rss), Some(m)) = (rss, scrape(&addr)) {
            let keys: u64 = metric_values(&m, "floodwatch_table_keys{").iter().sum();
            let t = metric_values(&m, "floodwatch_last_packet_timestamp_seconds ")
                .first()
                .copied()
                .unwrap_or(0);
            if t > 0 {
                samples.push((t.saturating_sub(start0) as f64, rss, keys));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = child.wait().unwrap();
    let err = err_rest.join().unwrap();
    assert!(status.success(), "{err}");
    let out = out_reader.join().unwrap();
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let starts = events.iter().filter(|e| e["event"] == "start").count();
    let ends: Vec<&Value> = events.iter().filter(|e| e["event"] == "end").collect();
    assert!(
        starts >= scenarios.len(),
        "{starts} alerts for {} floods",
        scenarios.len()
    );
    assert_eq!(starts, ends.len(), "every alert ends");
    assert!(
        ends.iter().all(|e| e["reason"] == "below_threshold"),
        "an alert lasted to the end of input: {ends:?}"
    );
    // memory: the last third of the run holds no more than the first third (plus slack)
    assert!(samples.len() >= 12, "{samples:?}");
    let third = samples.len() / 3;
    let max = |s: &[(f64, u64, u64)]| s.iter().map(|x| x.1).max().unwrap_or(0);
    let (early, late) = (
        max(&samples[..third]),
        max(&samples[samples.len() - third..]),
    );
    let peak_keys = samples.iter().map(|x| x.2).max().unwrap_or(0);
    let last_keys = samples.last().map_or(0, |x| x.2);
    let covered = samples.last().map_or(0.0, |x| x.0);
    eprintln!(
        "soak: {covered:.0} s of packet time in {:.1} s; RSS first third max {:.1} MiB, last third \
         max {:.1} MiB; keys peak {peak_keys}, at the end {last_keys}; alerts {starts} started, \
         {} ended",
        started.elapsed().as_secs_f64(),
        early as f64 / 1048576.0,
        late as f64 / 1048576.0,
        ends.len()
    );
    assert!(
        late <= early + early / 4 + (16 << 20),
        "memory grew: {early} -> {late}"
    );
    assert!(last_keys < peak_keys, "keys were not evicted: {samples:?}");
    // checkpoints: one per 5 minutes of packet time, then the one at exit
    let ok = err
        .lines()
        .filter(|l| l.contains("state checkpointed to"))
        .count();
    assert_eq!(ok, 1, "the first checkpoint is reported once: {err}");
    assert!(err.contains("state saved to"), "{err}");
    let m = metrics_after(&err);
    eprintln!("soak: {m} checkpoints written during the run");
    // due at 5, 10, ... 115 minutes: 23 (22 if the writer, on a loaded machine, pushes one back)
    assert!(m >= 22, "{m} checkpoints for 2 h at 5 min: {err}");
}

/// The checkpoints a run says it wrote ("checkpoints during the run: N written").
fn metrics_after(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            l.split("checkpoints during the run: ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// VmRSS of `pid`, in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `GET /metrics` from `addr`.
fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The integer part of every sample of the metric lines starting with `prefix`.
fn metric_values(text: &str, prefix: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.split('.').next()?.parse().ok())
        .collect()
}

/// contrib/floodwatch.service keeps its `systemd-analyze security` exposure at or below 2.0 ("OK")
/// and names only options this floodwatch has.
#[test]
fn the_systemd_unit_stays_hardened() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/floodwatch.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    // every long option of the ExecStart line is one `floodwatch live --help` lists
    let help = run(&["live", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    let exec: String = text
        .split("ExecStart=")
        .nth(1)
        .unwrap()
        .split("\nExecReload")
        .next()
        .unwrap()
        .replace("\\\n", " ");
    for opt in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(
            help.contains(opt),
            "{opt} is not an option of floodwatch live"
        );
    }
    let out = match std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            eprintln!("note: systemd-analyze is not installed; skipping the exposure check");
            return;
        }
    };
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    let level: f64 = report
        .split("Overall exposure level for floodwatch.service:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security: exposure {level}");
    assert!(
        level <= 2.0,
        "the unit's exposure rose to {level}:\n{report}"
    );
}

#[test]
fn a_report_dir_the_user_cannot_write_fails_after_the_switch_not_at_the_first_alert() {
    if !is_root() {
        eprintln!("skipped: --user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // root's 0700 temp dir: created and checked fine as root, not writable by nobody
    let pages = dir.path().join("pages");
    let out = run(&[
        "collect",
        "-q",
        "--listen",
        "127.0.0.1:0",
        "--user",
        "nobody",
        "--report-dir",
        arg(&pages),
    ]);
    assert_fails_naming(&out, &["writable by --user nobody", "pages"]);
}
