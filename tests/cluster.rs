//! Detection partitioned over NATS (docs/scaling.md): ingest nodes (`replay --publish`) and
//! detector nodes (`detect`) on a real nats-server started here on loopback, against one machine's
//! `floodwatch replay` of the same capture; a detector killed with SIGKILL and replaced by its
//! standby; NATS unreachable.

mod common;

use common::{bin, stderr, temp_synth, words};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::nats_server::NatsServer;
use common::secure_nats::{Auth, SecureNats};
use serde_json::Value;

const TICK_NS: i64 = 100_000_000;

/// Splits a classic pcap into two, packets alternating: what two sites would each have seen.
fn split(pcap: &Path) -> (PathBuf, PathBuf) {
    split_by(pcap, |i, _| i % 2)
}

/// Splits a classic pcap of Ethernet frames into two by source prefix (/24, /64): each source's
/// packets, and its subnet's, all reach one of two ingest nodes (sites that each watch their own
/// sources' links).
fn split_by_source(pcap: &Path) -> (PathBuf, PathBuf) {
    split_by(pcap, |_, frame| {
        let prefix = match frame.get(12..14) {
            Some([0x08, 0x00]) => frame.get(26..29),
            Some([0x86, 0xdd]) => frame.get(22..30),
            _ => None,
        };
        prefix.map_or(0, |p| p.iter().map(|b| usize::from(*b)).sum::<usize>() % 2)
    })
}

/// Splits a classic pcap into two: record `i` with frame `f` goes to part `pick(i, f)`.
fn split_by(pcap: &Path, pick: impl Fn(usize, &[u8]) -> usize) -> (PathBuf, PathBuf) {
    let bytes = std::fs::read(pcap).unwrap();
    let le = bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || bytes[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let (head, mut rest) = bytes.split_at(24);
    let mut parts = [head.to_vec(), head.to_vec()];
    let mut i = 0;
    while rest.len() >= 16 {
        let l = &rest[8..12];
        let incl = if le {
            u32::from_le_bytes([l[0], l[1], l[2], l[3]])
        } else {
            u32::from_be_bytes([l[0], l[1], l[2], l[3]])
        } as usize;
        let (rec, r) = rest.split_at(16 + incl);
        parts[pick(i, &rec[16..]) % 2].extend_from_slice(rec);
        rest = r;
        i += 1;
    }
    let a = pcap.with_extension("a.pcap");
    let b = pcap.with_extension("b.pcap");
    std::fs::write(&a, &parts[0]).unwrap();
    std::fs::write(&b, &parts[1]).unwrap();
    (a, b)
}

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ts_ns(v: &Value) -> i64 {
    // "2025-11-25T14:00:02.100000Z": compare within a day, which a test capture never spans
    let s = v["ts"].as_str().unwrap();
    let t = &s[11..s.len() - 1];
    let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
    let mut p = hms.split(':').map(|x| x.parse::<i64>().unwrap());
    let (h, m, sec) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
    let frac_ns = format!("{frac:0<9}")[..9].parse::<i64>().unwrap();
    ((h * 60 + m) * 60 + sec) * 1_000_000_000 + frac_ns
}

/// Start and end events by (event, scope, key, class), with their times.
fn lifecycle(evs: &[Value]) -> BTreeMap<(String, String, String, String), Vec<i64>> {
    let mut m: BTreeMap<_, Vec<i64>> = BTreeMap::new();
    for e in evs {
        let kind = e["event"].as_str().unwrap_or("");
        if kind != "start" && kind != "end" {
            continue;
        }
        let k = (
            kind.to_string(),
            e["scope"].as_str().unwrap().to_string(),
            e["key"].as_str().unwrap().to_string(),
            e["class"].as_str().unwrap().to_string(),
        );
        m.entry(k).or_default().push(ts_ns(e));
    }
    m
}

fn assert_same_alerts(one: &[Value], cluster: &[Value], what: &str) {
    let (a, b) = (lifecycle(one), lifecycle(cluster));
    assert!(!a.is_empty(), "{what}: the single machine raised no alert");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: different start/end events"
    );
    for (k, ta) in &a {
        let tb = &b[k];
        assert_eq!(ta.len(), tb.len(), "{what}: {k:?} count");
        for (x, y) in ta.iter().zip(tb) {
            assert!(
                (x - y).abs() <= TICK_NS,
                "{what}: {k:?} at {x} on one machine, {y} in the cluster (more than a tick apart)"
            );
        }
    }
}

/// A child whose stderr is read by a thread (lines also sent to `lines`).
struct Node {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
    lines: mpsc::Receiver<String>,
}

fn spawn(args: &[String]) -> Node {
    let mut child = common::spawn_piped(bin().args(args));
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    Node {
        child,
        stderr,
        lines: rx,
    }
}

impl Node {
    /// Waits (bounded) for a stderr line containing `what`.
    fn wait_line(&self, what: &str, limit: Duration) -> Option<Instant> {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return Some(Instant::now()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Waits (bounded) for the exit; returns (success, stdout, stderr).
    fn finish(mut self, limit: Duration) -> (bool, String, String) {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let err = self.stderr.join().unwrap_or_default();
        (status.is_some_and(|s| s.success()), out, err)
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn detector(url: &str, cluster: &str, parts: &str, extra: &[&str]) -> Node {
    detector_of(url, cluster, parts, "2", extra)
}

/// A detector node that waits for `nodes` ingest nodes.
fn detector_of(url: &str, cluster: &str, parts: &str, nodes: &str, extra: &[&str]) -> Node {
    let mut a = s(&[
        "detect",
        "--nats",
        url,
        "--cluster",
        cluster,
        "--cluster-partitions",
        "4",
        "--bus-max-bytes",
        "64M",
        "--partitions",
        parts,
        "--ingest-nodes",
        nodes,
        "--exit-at-end",
        "--from-start",
        "--seed",
        "1",
    ]);
    a.extend(s(extra));
    spawn(&a)
}

fn ingest(url: &str, cluster: &str, node: &str, pcap: &Path, extra: &[&str]) -> Node {
    let mut a = s(&[
        "replay",
        "--publish",
        url,
        "--cluster",
        cluster,
        "--cluster-partitions",
        "4",
        "--bus-max-bytes",
        "64M",
        "--node-id",
        node,
    ]);
    a.extend(s(extra));
    a.push(pcap.display().to_string());
    spawn(&a)
}

fn replay_one(pcap: &Path) -> Vec<Value> {
    let out = bin()
        .args(["replay", "--seed", "1", "-q"])
        .arg(pcap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    events(&String::from_utf8_lossy(&out.stdout))
}

/// Runs `test` with the URL of a plain NATS server and no security options (skipped, by
/// [`NatsServer::start`], without nats-server).
fn over_plain_nats(test: fn(&str, &[&str])) {
    if let Some(server) = NatsServer::start() {
        test(&server.url(), &[]);
    }
}

/// Runs `test` with the URL of a NATS server that wants mutual TLS and `auth`, and the options
/// every node needs for it (skipped, by [`SecureNats::start`], without nats-server or openssl).
fn over_secure_nats(auth: Auth, test: fn(&str, &[&str])) {
    if let Some(secure) = SecureNats::start() {
        let sec = secure.args(auth);
        let sec: Vec<&str> = sec.iter().map(String::as_str).collect();
        test(&secure.server.url(), &sec);
    }
}

#[test]
fn two_ingest_and_two_detector_nodes_raise_the_alerts_of_one_machine() {
    over_plain_nats(equivalence);
}

#[test]
fn the_cluster_over_mutual_tls_with_an_nkey_account_raises_the_alerts_of_one_machine() {
    // and with a stream a partition (the default is one stream for every partition)
    over_secure_nats(Auth::Nkey, |url, sec| {
        equivalence(url, &[sec, &["--bus-stream-per-partition"]].concat())
    });
}

/// Two ingest and two detector nodes over NATS at `url`, every node with the options `sec`.
fn equivalence(url: &str, sec: &[&str]) {
    let url = url.to_string();
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 4] = [
        ("syn-flood", common::SHORT),
        ("dns-reflection", common::SHORT),
        ("carpet-bombing", common::SHORT),
        ("sources-at-floor", common::SHORT),
    ];
    for (i, (scenario, opts)) in cases.iter().enumerate() {
        let pcap = common::synth(dir.path(), scenario, opts);
        let one = replay_one(&pcap);
        let (a, b) = split(&pcap);
        let cluster = format!("eq{i}");
        let d1 = detector(&url, &cluster, "0-1", sec);
        let d2 = detector(&url, &cluster, "2-3", sec);
        let i1 = ingest(&url, &cluster, "1", &a, sec);
        let i2 = ingest(&url, &cluster, "2", &b, sec);
        for (n, what) in [(i1, "ingest 1"), (i2, "ingest 2")] {
            let (ok, _, err) = n.finish(Duration::from_secs(60));
            assert!(ok, "{scenario}: {what} failed:\n{err}");
        }
        let mut cluster_events = Vec::new();
        for (n, what) in [(d1, "detector 0-1"), (d2, "detector 2-3")] {
            let (ok, out, err) = n.finish(Duration::from_secs(60));
            assert!(ok, "{scenario}: {what} failed:\n{err}");
            // (some of the partitions: a consumer each, in either layout)
            assert!(err.contains("a consumer a partition"), "{what}:\n{err}");
            cluster_events.extend(events(&out));
        }
        assert_same_alerts(&one, &cluster_events, scenario);
        assert_same_counts(&one, &cluster_events, scenario);
    }
}

#[test]
fn ingest_nodes_that_admit_sources_at_their_edge_raise_exactly_the_alerts_of_one_machine() {
    over_plain_nats(edge_equivalence);
}

/// Ingest nodes with `--edge-admission` (per-tick aggregates on the bus, wire version 4) and two
/// detector nodes over NATS at `url`. Two ingest nodes, each with its own sources (split by source
/// prefix): the alerts, their times and counts of one machine (each node samples its own share of
/// a key's packets, so sampled evidence may differ). One ingest node: every event of one machine,
/// updates, sources, signatures, request paths and rules included.
fn edge_equivalence(url: &str, sec: &[&str]) {
    let url = url.to_string();
    let dir = tempfile::tempdir().unwrap();
    let edge: Vec<&str> = ["--edge-admission"]
        .into_iter()
        .chain(sec.iter().copied())
        .collect();
    let cases = [
        ("syn-flood", 2),
        ("dns-reflection", 2),
        ("carpet-bombing", 2),
        ("sources-at-floor", 2),
        ("syn-flood", 1),
        ("sources-at-floor", 1),
        // request heads cross inside the aggregates: the paths, hosts and agents of one machine
        ("http-flood", 1),
    ];
    for (i, (scenario, nodes)) in cases.into_iter().enumerate() {
        let what = format!("{scenario}, {nodes} ingest node(s)");
        let pcap = common::synth(dir.path(), scenario, common::SHORT);
        let one = replay_one(&pcap);
        let cluster = format!("edge{i}");
        let n = nodes.to_string();
        let d1 = detector_of(&url, &cluster, "0-1", &n, sec);
        let d2 = detector_of(&url, &cluster, "2-3", &n, sec);
        let ingests = if nodes == 2 {
            let (a, b) = split_by_source(&pcap);
            vec![
                ingest(&url, &cluster, "1", &a, &edge),
                ingest(&url, &cluster, "2", &b, &edge),
            ]
        } else {
            vec![ingest(&url, &cluster, "1", &pcap, &edge)]
        };
        for node in ingests {
            let (ok, _, err) = node.finish(Duration::from_secs(60));
            assert!(ok, "{what}: an ingest node failed:\n{err}");
            assert!(err.contains("key aggregates in"), "{what}:\n{err}");
        }
        let mut cluster_events = Vec::new();
        for (n, who) in [(d1, "detector 0-1"), (d2, "detector 2-3")] {
            let (ok, out, err) = n.finish(Duration::from_secs(60));
            assert!(ok, "{what}: {who} failed:\n{err}");
            cluster_events.extend(events(&out));
        }
        assert_same_alerts(&one, &cluster_events, &what);
        assert_same_counts(&one, &cluster_events, &what);
        if nodes == 1 {
            let lines = |evs: &[Value]| {
                let mut v: Vec<String> = evs.iter().map(Value::to_string).collect();
                v.sort();
                v
            };
            assert_eq!(lines(&one), lines(&cluster_events), "{what}: every event");
        }
    }
}

#[test]
fn a_killed_detector_is_replaced_by_its_standby_within_five_seconds_and_no_event_is_lost_or_repeated(
) {
    over_plain_nats(failover);
}

#[test]
fn over_mutual_tls_with_a_password_file_a_killed_detector_is_replaced_by_its_standby() {
    // and with a stream a partition (the default is one stream for every partition)
    over_secure_nats(Auth::Password, |url, sec| {
        failover(url, &[sec, &["--bus-stream-per-partition"]].concat())
    });
}

#[test]
fn with_edge_admission_a_killed_detector_is_replaced_by_its_standby_and_no_event_is_lost_or_repeated(
) {
    // aggregates held by the merger travel in the checkpoints; each source on one ingest node
    over_plain_nats(|url, sec| failover_with(url, sec, true));
}

/// A detector killed twice during a flood, each time replaced by its standby, every node with
/// the options `sec`.
fn failover(url: &str, sec: &[&str]) {
    failover_with(url, sec, false)
}

/// [`failover`]; with `edge`, ingest nodes with `--edge-admission`, split by source.
fn failover_with(url: &str, sec: &[&str], edge: bool) {
    let url = url.to_string();
    let realtime: Vec<&str> = ["--realtime"]
        .into_iter()
        .chain(edge.then_some("--edge-admission"))
        .chain(sec.iter().copied())
        .collect();
    // 16 s of traffic at capture speed, a flood from 4 s to 12 s; the detectors run with the
    // default lease (2 s) and checkpoint interval (1 s)
    let (_dir, pcap) = temp_synth(
        "syn-flood",
        &words("--duration 16s --attack-start 4s --attack-duration 8s --attack-pps 3000"),
    );
    let one = replay_one(&pcap);
    let (a, b) = if edge {
        split_by_source(&pcap)
    } else {
        split(&pcap)
    };
    let running = "running partitions";
    let mut active = detector(&url, "fo", "0-3", sec);
    assert!(
        active.wait_line(running, Duration::from_secs(10)).is_some(),
        "the first detector did not start"
    );
    let mut standby = detector(&url, "fo", "0-3", sec);
    assert!(
        standby
            .wait_line("standby for partitions", Duration::from_secs(10))
            .is_some(),
        "the second detector did not become a standby"
    );
    let started = Instant::now();
    let i1 = ingest(&url, "fo", "1", &a, &realtime);
    let i2 = ingest(&url, "fo", "2", &b, &realtime);
    let mut outputs = Vec::new();
    // kill the running detector twice during the flood (packet time ~6 s and ~10 s), each time
    // with a standby waiting
    for (n, at) in [(1, 6), (2, 10)] {
        let wait = Duration::from_secs(at).saturating_sub(started.elapsed());
        std::thread::sleep(wait);
        let killed = Instant::now();
        active.child.kill().unwrap(); // SIGKILL
        let took = standby
            .wait_line(running, Duration::from_secs(10))
            .map(|t| t.duration_since(killed))
            .unwrap_or_else(|| panic!("kill {n}: the standby never took over"));
        eprintln!("kill {n}: the standby ran the partitions {took:?} after the kill");
        assert!(
            took <= Duration::from_secs(5),
            "kill {n}: failover took {took:?}"
        );
        let (_, out, _) = active.finish(Duration::from_secs(5));
        outputs.push(out);
        active = standby;
        standby = detector(&url, "fo", "0-3", sec);
        assert!(standby
            .wait_line("standby for partitions", Duration::from_secs(10))
            .is_some());
    }
    for (n, what) in [(i1, "ingest 1"), (i2, "ingest 2")] {
        let (ok, _, err) = n.finish(Duration::from_secs(60));
        assert!(ok, "{what} failed:\n{err}");
    }
    let (ok, out, err) = active.finish(Duration::from_secs(60));
    assert!(ok, "the last detector failed:\n{err}");
    assert!(err.contains("restored from a checkpoint"), "{err}");
    // how it read its partitions: one consumer of all four unless each has a stream; from the
    // checkpoint's positions, so that nothing it was handed was already in its state
    let per_partition = sec.contains(&"--bus-stream-per-partition");
    let reading = if per_partition {
        "a consumer a partition"
    } else {
        "one consumer of every partition"
    };
    assert!(err.contains(reading), "expected {reading:?}:\n{err}");
    assert!(err.contains("(0 repeated and dropped"), "{err}");
    outputs.push(out);
    // the spare standby never ran: it holds nothing
    let _ = standby.child.kill();
    let (_, spare, _) = standby.finish(Duration::from_secs(5));
    assert!(spare.trim().is_empty(), "the spare standby wrote: {spare}");
    let per: Vec<usize> = outputs.iter().map(|o| events(o).len()).collect();
    eprintln!("events written by each detector in turn: {per:?}");
    let all: Vec<Value> = outputs.iter().flat_map(|o| events(o)).collect();
    // every event exactly once: (event kind, id) unique, and the lifecycle of one machine
    let mut seen = std::collections::HashSet::new();
    for e in &all {
        if e["event"] == "start" || e["event"] == "end" {
            let k = format!("{}/{}", e["event"], e["id"]);
            assert!(seen.insert(k.clone()), "event written twice: {k}");
        }
    }
    assert_same_alerts(&one, &all, "failover");
    assert_same_counts(&one, &all, "failover");
    // updates too: every event of one machine, once
    let kinds = |evs: &[Value]| {
        let mut v: Vec<String> = evs
            .iter()
            .map(|e| format!("{} {} {}", e["event"], e["id"], e["ts"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        kinds(&one),
        kinds(&all),
        "failover: the events, updates included"
    );
}

/// A detector that starts while an ingest node is publishing (no `--from-start`: it reads from
/// the streams' tails) misses the node's start batches and first hears of the node by its latest
/// node watermark, before any batch of it: its time still moves, and it alerts while the flood
/// lasts, not only when the node's last batches end the stream. (Here the flood's sources reach
/// every partition; the keepalive batch a partition with no traffic gets every 10 ticks is
/// covered by the partitioner's unit test.)
#[test]
fn a_detector_started_mid_stream_alerts_while_the_flood_lasts() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    // 9 s at capture speed, the flood from 1 s to 8 s
    let (_dir, pcap) = temp_synth(
        "syn-flood",
        &words("--duration 9s --attack-start 1s --attack-duration 7s --attack-pps 3000"),
    );
    let node = ingest(&url, "mid", "1", &pcap, &["--realtime", "--edge-admission"]);
    assert!(
        node.wait_line("publishing to", Duration::from_secs(10))
            .is_some(),
        "the ingest node did not start"
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut a = s(&[
        "detect",
        "--nats",
        &url,
        "--cluster",
        "mid",
        "--cluster-partitions",
        "4",
        "--bus-max-bytes",
        "64M",
        "--partitions",
        "0-3",
        "--exit-at-end",
        "--seed",
        "1",
    ]);
    a.push("-q".into());
    let mut child = common::spawn_piped(bin().args(&a));
    let out = child.stdout.take().unwrap();
    let (tx, starts) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(r#""event":"start""#) {
                let _ = tx.send(Instant::now());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let (ok, _, err) = node.finish(Duration::from_secs(60));
    assert!(ok, "the ingest node failed:\n{err}");
    let ended = Instant::now();
    let first = starts.recv_timeout(Duration::from_secs(30));
    let _ = child.wait();
    let all = reader.join().unwrap_or_default();
    let first = first.unwrap_or_else(|_| panic!("no alert at all:\n{all}"));
    assert!(
        first + Duration::from_secs(2) < ended,
        "the first alert came {:?} after the ingest node ended, not while the flood lasted",
        first.saturating_duration_since(ended)
    );
}

/// The packets and bytes each alert's end event reports: counted once, they are the same.
fn assert_same_counts(one: &[Value], cluster: &[Value], what: &str) {
    let ends = |evs: &[Value]| -> BTreeMap<String, (u64, u64)> {
        evs.iter()
            .filter(|e| e["event"] == "end")
            .map(|e| {
                (
                    format!("{}/{}", e["scope"], e["key"]),
                    (e["packets"].as_u64().unwrap(), e["bytes"].as_u64().unwrap()),
                )
            })
            .collect()
    };
    assert_eq!(
        ends(one),
        ends(cluster),
        "{what}: packets and bytes of the alerts"
    );
}

#[test]
fn nats_unreachable_at_start_is_a_clear_error() {
    let port = common::nats_server::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let (_dir, pcap) = temp_synth("syn-flood", common::SHORT);
    for args in [
        s(&["replay", "--publish", &url, &pcap.display().to_string()]),
        s(&["detect", "--nats", &url, "--partitions", "0-3"]),
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("127.0.0.1:{port}")) && err.contains("nats-server"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn an_ingest_node_that_loses_nats_keeps_its_batches_and_sends_them_once_back_or_counts_what_it_drops(
) {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    let (_dir, pcap) = temp_synth(
        "syn-flood",
        &words("--duration 6s --attack-start 1s --attack-duration 4s --attack-pps 3000"),
    );
    let one = replay_one(&pcap);
    for (cluster, buffer) in [("lost1", "256M"), ("lost2", "1K")] {
        let node = spawn(&s(&[
            "replay",
            "--publish",
            &url,
            "--cluster",
            cluster,
            "--node-id",
            "1",
            "--bus-max-bytes",
            "64M",
            "--publish-buffer",
            buffer,
            "--realtime",
            &pcap.display().to_string(),
        ]));
        // the server dies at 1.5 s of the replay and is back 1.5 s later
        std::thread::sleep(Duration::from_millis(1500));
        server.kill();
        std::thread::sleep(Duration::from_millis(1500));
        server.restart();
        let (ok, _, err) = node.finish(Duration::from_secs(60));
        assert!(ok, "{cluster}: the ingest node failed:\n{err}");
        assert!(err.contains("lost the connection to NATS"), "{err}");
        assert!(err.contains("reconnected to NATS"), "{err}");
        let dropped: u64 = err
            .lines()
            .find_map(|l| l.split("; dropped ").nth(1))
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no drop count in:\n{err}"));
        // then a detector reads everything the bus kept
        let det = spawn(&s(&[
            "detect",
            "--nats",
            &url,
            "--cluster",
            cluster,
            "--partitions",
            "0-7",
            "--bus-max-bytes",
            "64M",
            "--exit-at-end",
            "--from-start",
            "--seed",
            "1",
        ]));
        let (ok, out, derr) = det.finish(Duration::from_secs(60));
        assert!(ok, "{cluster}: the detector failed:\n{derr}");
        if buffer == "256M" {
            assert_eq!(dropped, 0, "{err}");
            assert!(derr.contains(" 0 missing"), "{derr}");
            let evs = events(&out);
            assert_same_alerts(&one, &evs, cluster);
            assert_same_counts(&one, &evs, cluster);
        } else {
            assert!(dropped > 0, "a 1 KiB buffer kept 1.5 s of batches?\n{err}");
            assert!(
                !derr.contains(" 0 missing"),
                "the detector did not count the batches lost:\n{derr}"
            );
        }
    }
}
