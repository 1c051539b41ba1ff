use super::*;
use crate::alert::{AttackClass, PortCount};
use crate::time::Timestamp;
use std::io::Read;

fn event(kind: EventKind, id: &str, scope: Scope, key: &str, class: AttackClass) -> AlertEvent {
    AlertEvent {
        event: kind,
        id: id.to_owned(),
        ts: Timestamp(0),
        seq: 0,
        scope,
        key: key.parse().unwrap(),
        class,
        signal: "syn",
        pps: 0.0,
        bps: 0.0,
        total_pps: 0.0,
        baseline_pps: 0.0,
        threshold_pps: 0.0,
        window_s: 1.0,
        packets: 0,
        bytes: 0,
        peak_pps: 0.0,
        class_share: 1.0,
        duration_s: None,
        reason: None,
        distinct_peers: 0,
        top_peers: Vec::new(),
        top_ports: vec![PortCount {
            port: 80,
            packets: 100,
        }],
        top_src_ports: Vec::new(),
        top_hosts: Vec::new(),
        sample_rate: 1,
        trace: None,
        signature: None,
    }
}

fn start(id: &str, key: &str) -> AlertEvent {
    event(
        EventKind::Start,
        id,
        Scope::DstHost,
        key,
        AttackClass::SynFlood,
    )
}

fn end(id: &str, key: &str) -> AlertEvent {
    event(
        EventKind::End,
        id,
        Scope::DstHost,
        key,
        AttackClass::SynFlood,
    )
}

fn policy(max_rules: usize, blackhole: bool) -> Policy {
    Policy {
        action: FlowAction::Discard,
        blackhole: blackhole.then(|| Blackhole {
            next_hop_v4: Some("192.0.2.1".parse().unwrap()),
            next_hop_v6: None,
            communities: vec![BLACKHOLE_COMMUNITY.to_owned(), "65535:65281".to_owned()],
        }),
        max_rules,
        never_block: vec!["198.51.100.0/28".parse().unwrap()],
        source_scopes: false,
        keep_on_exit: false,
    }
}

fn drain(book: &mut Book) -> Vec<String> {
    book.outbox.drain(..).collect()
}

#[test]
fn a_start_announces_and_its_end_withdraws_flowspec_and_blackhole() {
    let p = policy(32, true);
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "198.51.100.77"));
    let lines = drain(&mut b);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(
        "announce flow route { match { destination 198.51.100.77/32; protocol =tcp; destination-port =80;"
    ));
    assert!(lines[0].ends_with("then { discard; } }"));
    assert_eq!(
        lines[1],
        "announce route 198.51.100.77/32 next-hop 192.0.2.1 community [65535:666 65535:65281]"
    );
    p.on_event(&mut b, &end("a", "198.51.100.77"));
    let lines = drain(&mut b);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("withdraw flow route { match { destination 198.51.100.77/32;"));
    assert_eq!(
        lines[1],
        "withdraw route 198.51.100.77/32 next-hop 192.0.2.1"
    );
    assert!(b.routes.is_empty() && b.owners.is_empty());
    assert_eq!((b.stats.announced, b.stats.withdrawn), (2, 2));
}

#[test]
fn the_cap_refuses_whole_alerts_and_counts_them() {
    let p = policy(3, true);
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "198.51.100.20"));
    // two more routes would make 4 > 3
    p.on_event(&mut b, &start("b", "198.51.100.21"));
    assert_eq!(b.routes.len(), 2);
    assert_eq!(b.stats.refused_cap, 1);
    // its end withdraws nothing
    drain(&mut b);
    p.on_event(&mut b, &end("b", "198.51.100.21"));
    assert!(b.outbox.is_empty());
    // room again after the first ends
    p.on_event(&mut b, &end("a", "198.51.100.20"));
    p.on_event(&mut b, &start("c", "198.51.100.22"));
    assert_eq!(b.routes.len(), 2);
}

#[test]
fn never_block_prefixes_and_source_scopes_are_left_alone() {
    let p = policy(32, true);
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "198.51.100.5"));
    // a subnet holding a never-block prefix is refused too
    let mut s = start("b", "198.51.100.0/24");
    s.scope = Scope::DstSubnet;
    p.on_event(&mut b, &s);
    assert_eq!(b.stats.refused_never_block, 2);
    let src = event(
        EventKind::Start,
        "c",
        Scope::SrcHost,
        "203.0.113.9",
        AttackClass::UdpFlood,
    );
    p.on_event(&mut b, &src);
    assert_eq!(b.stats.skipped_source_scope, 1);
    assert!(b.outbox.is_empty());
    let p = Policy {
        source_scopes: true,
        ..policy(32, true)
    };
    p.on_event(&mut b, &src);
    let lines = drain(&mut b);
    // a rule on the source, and never a blackhole of a source
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("source 203.0.113.9/32;"), "{}", lines[0]);
}

#[test]
fn a_route_two_alerts_share_is_withdrawn_with_the_last() {
    let p = policy(32, false);
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "198.51.100.30"));
    p.on_event(&mut b, &start("b", "198.51.100.30"));
    assert_eq!(drain(&mut b).len(), 1);
    p.on_event(&mut b, &end("a", "198.51.100.30"));
    assert!(b.outbox.is_empty());
    p.on_event(&mut b, &end("b", "198.51.100.30"));
    assert_eq!(drain(&mut b).len(), 1);
}

#[test]
fn restored_routes_are_taken_over_or_withdrawn_after_the_hold() {
    let p = policy(32, false);
    let mut first = Book::default();
    p.on_event(&mut first, &start("a", "198.51.100.40"));
    p.on_event(&mut first, &start("b", "198.51.100.41"));
    let saved = first.saved();
    let t0 = Instant::now();
    let mut b = Book::default();
    restore(&mut b, saved, t0 + Duration::from_secs(30));
    assert_eq!(b.stats.restored, 2);
    assert_eq!(drain(&mut b).len(), 2, "announced again at start");
    // the same alert comes back: its route changes holder, nothing is sent
    p.on_event(&mut b, &start("a2", "198.51.100.40"));
    assert!(b.outbox.is_empty());
    b.expire_restored(t0 + Duration::from_secs(10));
    assert!(b.outbox.is_empty(), "not before the hold");
    b.expire_restored(t0 + Duration::from_secs(31));
    let lines = drain(&mut b);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("withdraw flow route { match { destination 198.51.100.41/32;"));
    assert_eq!(b.stats.restored_expired, 1);
    p.on_event(&mut b, &end("a2", "198.51.100.40"));
    assert_eq!(drain(&mut b).len(), 1);
    assert!(b.routes.is_empty());
}

#[test]
fn communities_are_checked() {
    assert!(Blackhole::parse_community("65535:666").is_ok());
    for bad in ["65536:1", "666", "a:b", "1:2:3"] {
        let e = Blackhole::parse_community(bad).unwrap_err();
        assert!(e.contains("ASN:VALUE"), "{bad}: {e}");
    }
}

/// A FIFO in a fresh temporary directory (removed on drop).
struct Fifo {
    dir: PathBuf,
    path: PathBuf,
}

impl Fifo {
    fn new(name: &str) -> Fifo {
        let dir =
            std::env::temp_dir().join(format!("floodwatch-bgp-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exabgp.pipe");
        let ok = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo failed");
        Fifo { dir, path }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(pipe: &Path) -> BgpConfig {
    BgpConfig {
        pipe: pipe.to_owned(),
        action: FlowAction::RateLimit(125_000),
        blackhole: None,
        max_rules: 32,
        never_block: Vec::new(),
        source_scopes: false,
        keep_on_exit: false,
        persist: None,
        restore_hold: Duration::from_secs(60),
    }
}

/// Reads what arrives on a non-blocking reader within `wait`.
fn read_for(r: &mut File, wait: Duration) -> String {
    let until = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match r.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(10)),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
    String::from_utf8(out).unwrap()
}

fn reader(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap()
}

#[test]
fn a_pipe_without_reader_never_blocks_and_is_written_once_one_comes() {
    let fifo = Fifo::new("late-reader");
    let (a, note) = Announcer::start(config(&fifo.path)).unwrap();
    let note = note.expect("a note about the missing reader");
    assert!(note.contains("no reader"), "{note}");
    let t = Instant::now();
    a.on_event(&start("a", "198.51.100.50"));
    assert!(t.elapsed() < Duration::from_millis(50), "on_event waited");
    std::thread::sleep(Duration::from_millis(100));
    assert!(a.stats().deferred >= 1, "{:?}", a.stats());
    let mut r = reader(&fifo.path);
    let got = read_for(&mut r, RETRY * 3);
    assert!(
        got.starts_with("announce flow route { match { destination 198.51.100.50/32;")
            && got.ends_with("then { rate-limit 125000; } }\n"),
        "{got:?}"
    );
    a.on_event(&end("a", "198.51.100.50"));
    let got = read_for(&mut r, Duration::from_millis(300));
    assert!(got.starts_with("withdraw flow route"), "{got:?}");
    let stats = a.finish();
    assert_eq!((stats.announced, stats.withdrawn, stats.dropped), (1, 1, 0));
    assert!(stats.open_failures >= 1);
}

#[test]
fn a_lost_reader_gets_every_active_route_again_and_exit_withdraws() {
    let fifo = Fifo::new("reconnect");
    let mut r = reader(&fifo.path);
    let (a, note) = Announcer::start(config(&fifo.path)).unwrap();
    assert!(note.is_none(), "{note:?}");
    a.on_event(&start("a", "198.51.100.60"));
    assert_eq!(
        read_for(&mut r, Duration::from_millis(200)).lines().count(),
        1
    );
    drop(r);
    // the next line finds no reader (EPIPE): kept, and sent with the active routes on reconnect
    a.on_event(&start("b", "198.51.100.61"));
    std::thread::sleep(Duration::from_millis(100));
    let mut r = reader(&fifo.path);
    let got = read_for(&mut r, RETRY * 3);
    assert!(got.contains("198.51.100.61/32"), "{got}");
    assert!(got.contains("198.51.100.60/32"), "re-announced: {got}");
    assert_eq!(a.stats().reconnects, 1);
    let stats = a.finish();
    let got = read_for(&mut r, Duration::from_millis(200));
    assert_eq!(
        got.lines()
            .filter(|l| l.starts_with("withdraw flow route"))
            .count(),
        2,
        "{got}"
    );
    assert_eq!(stats.active_at_exit, 0);
}

#[test]
fn a_path_that_is_not_a_pipe_is_an_error_naming_it() {
    let fifo = Fifo::new("not-a-pipe");
    let file = fifo.dir.join("plain");
    std::fs::write(&file, b"").unwrap();
    let err = Announcer::start(config(&file)).err().unwrap().to_string();
    assert!(err.contains("plain") && err.contains("mkfifo"), "{err}");
}

#[test]
fn kept_routes_are_saved_and_announced_again_by_the_next_run() {
    let fifo = Fifo::new("persist");
    let persist = fifo.dir.join("state.exabgp.json");
    let mut r = reader(&fifo.path);
    let cfg = BgpConfig {
        keep_on_exit: true,
        persist: Some(persist.clone()),
        ..config(&fifo.path)
    };
    let (a, _) = Announcer::start(cfg.clone()).unwrap();
    a.on_event(&start("a", "198.51.100.70"));
    let stats = a.finish();
    assert_eq!(stats.active_at_exit, 1);
    let first = read_for(&mut r, Duration::from_millis(200));
    assert!(!first.contains("withdraw"), "kept: {first}");
    let cfg = BgpConfig {
        keep_on_exit: false,
        restore_hold: Duration::from_millis(300),
        ..cfg
    };
    let (a, note) = Announcer::start(cfg).unwrap();
    assert!(note.unwrap().contains("1 route(s) left announced"));
    let got = read_for(&mut r, Duration::from_millis(1500));
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 2, "{got}");
    assert!(lines[0].starts_with("announce flow route { match { destination 198.51.100.70/32;"));
    assert!(lines[1].starts_with("withdraw flow route { match { destination 198.51.100.70/32;"));
    let stats = a.finish();
    assert_eq!(stats.restored_expired, 1);
    let left = load_saved(&persist).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn keep_on_exit_keeps_the_routes_of_alerts_the_end_of_the_run_closes() {
    use crate::alert::EndReason;
    let p = Policy {
        keep_on_exit: true,
        ..policy(32, false)
    };
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "198.51.100.80"));
    p.on_event(&mut b, &start("b", "198.51.100.81"));
    drain(&mut b);
    let mut over = end("a", "198.51.100.80");
    over.reason = Some(EndReason::BelowThreshold);
    p.on_event(&mut b, &over);
    assert_eq!(drain(&mut b).len(), 1, "an attack that ended is withdrawn");
    let mut stopped = end("b", "198.51.100.81");
    stopped.reason = Some(EndReason::Shutdown);
    p.on_event(&mut b, &stopped);
    assert!(b.outbox.is_empty(), "kept");
    assert_eq!(b.routes.len(), 1);
}

#[test]
fn dropping_the_announcer_withdraws_like_finish() {
    let fifo = Fifo::new("drop");
    let mut r = reader(&fifo.path);
    let (a, _) = Announcer::start(config(&fifo.path)).unwrap();
    a.on_event(&start("a", "198.51.100.90"));
    drop(a);
    let got = read_for(&mut r, Duration::from_millis(200));
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 2, "{got}");
    assert!(lines[1].starts_with("withdraw flow route"), "{got}");
}

#[test]
fn the_metrics_endpoint_shows_the_counters() {
    let fifo = Fifo::new("metrics");
    let _r = reader(&fifo.path);
    let cfg = BgpConfig {
        max_rules: 1,
        blackhole: Some(Blackhole {
            next_hop_v4: None,
            next_hop_v6: None,
            communities: vec![BLACKHOLE_COMMUNITY.to_owned()],
        }),
        ..config(&fifo.path)
    };
    let (a, _) = Announcer::start(cfg).unwrap();
    let m = crate::metrics::Metrics::new();
    m.attach_bgp(a.stats_handle());
    // a dst_subnet alert: a flowspec rule, no blackhole; then a host that does not fit
    let mut subnet = start("s", "198.51.100.0/24");
    subnet.scope = Scope::DstSubnet;
    a.on_event(&subnet);
    a.on_event(&start("h", "198.51.100.99"));
    let text = m.render();
    for line in [
        "floodwatch_exabgp_routes_total{action=\"announce\"} 1",
        "floodwatch_exabgp_routes_active 1",
        "floodwatch_exabgp_alerts_total{reason=\"cap\"} 1",
        "floodwatch_exabgp_lines_total{outcome=\"dropped\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let stats = a.finish();
    assert_eq!(stats.withdrawn, 1);
}
