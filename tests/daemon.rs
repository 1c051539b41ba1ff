//! Daemon-grade operation through the real binary: the `--state` file survives `kill -9` at any
//! moment and is loaded warm after a restart; a corrupt one is moved aside; checkpoints are counted
//! in the metrics.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{bin, events, run, synth};
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
        state.to_str().unwrap(),
        tiny.to_str().unwrap(),
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
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
    let s = state.to_str().unwrap();

    // Learn once, cleanly: the state holds warm baselines.
    let out = run(&["replay", "--quiet", "--state", s, learn.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    strictly_loadable(&state, &tiny).unwrap();

    // Then crash it again and again while it checkpoints non-stop (a checkpoint every 100 ms of
    // packet time at 40x: as soon as one is written the next is due).
    let mut rng = Lcg(14);
    let iterations = 24;
    let mut mid_write = 0;
    let started = Instant::now();
    for i in 0..iterations {
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
                learn.to_str().unwrap(),
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
        &[
            "--duration",
            "6s",
            "--attack-start",
            "0s",
            "--attack-duration",
            "4s",
        ],
    );
    let out = run(&["replay", "--state", s, flood.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
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
    let cold = events(&run(&["replay", "--quiet", flood.to_str().unwrap()]));
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
    let s = state.to_str().unwrap();
    // a truncated file, as an in-place write cut short would leave
    std::fs::write(
        &state,
        b"{\"format\":\"floodwatch-baselines\",\"version\":1,\"entries\":[{\"scope\"",
    )
    .unwrap();
    let out = run(&["replay", "--state", s, learn.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
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
    let out = run(&[
        "replay",
        "--load-baseline",
        bad.to_str().unwrap(),
        learn.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    // a state directory that does not exist is a clear error at start
    let out = run(&[
        "replay",
        "--state",
        dir.path().join("nope/state.json").to_str().unwrap(),
        learn.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope/state.json") && err.contains("writable"),
        "{err}"
    );
}
