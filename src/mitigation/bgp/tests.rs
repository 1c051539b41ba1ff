use super::*;
use crate::alert::{AttackClass, PortCount};
use crate::time::Timestamp;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub(crate) fn event(
    kind: EventKind,
    id: &str,
    scope: Scope,
    key: &str,
    class: AttackClass,
) -> AlertEvent {
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
        quiet_host: false,
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
        requests: None,
        trace: None,
        signature: None,
    }
}

pub(crate) fn start(id: &str, key: &str) -> AlertEvent {
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

/// The lines owed now, taken as written.
fn drain(book: &mut Book) -> Vec<String> {
    let outs = book.next_lines();
    let lines = outs.iter().map(|o| o.line().to_owned()).collect();
    for o in outs {
        book.written(o);
    }
    lines
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
    assert!(drain(&mut b).is_empty());
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
    assert!(drain(&mut b).is_empty());
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
    assert!(drain(&mut b).is_empty());
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
    p.restore(&mut b, saved, t0 + Duration::from_secs(30));
    assert_eq!(b.stats.restored, 2);
    assert_eq!(drain(&mut b).len(), 2, "announced again at start");
    // the same alert comes back: its route changes holder, nothing is sent
    p.on_event(&mut b, &start("a2", "198.51.100.40"));
    assert!(drain(&mut b).is_empty());
    b.expire_restored(t0 + Duration::from_secs(10));
    assert!(drain(&mut b).is_empty(), "not before the hold");
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
pub(crate) struct Fifo {
    dir: PathBuf,
    pub(crate) path: PathBuf,
}

impl Fifo {
    pub(crate) fn new(name: &str) -> Fifo {
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

pub(crate) fn config(pipe: &Path) -> BgpConfig {
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
        reannounce: REANNOUNCE,
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

/// Lines that arrive on a non-blocking reader within 200 ms.
fn lines_read(r: &mut File) -> usize {
    read_for(r, Duration::from_millis(200)).lines().count()
}

pub(crate) fn reader(path: &Path) -> File {
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
    assert_eq!(lines_read(&mut r), 1);
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
    let Ok(persist::Loaded::Routes(left)) = persist::load(&persist) else {
        panic!("not loaded")
    };
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
    assert!(drain(&mut b).is_empty(), "kept");
    assert_eq!(b.routes.len(), 1);
}

#[test]
fn dropping_the_announcer_withdraws_like_finish() {
    let fifo = Fifo::new("drop");
    let mut r = reader(&fifo.path);
    let (a, _) = Announcer::start(config(&fifo.path)).unwrap();
    a.on_event(&start("a", "198.51.100.90"));
    let got = read_for(&mut r, Duration::from_millis(200));
    assert!(got.starts_with("announce flow route"), "{got}");
    drop(a);
    let got = read_for(&mut r, Duration::from_millis(200));
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 1, "{got}");
    assert!(lines[0].starts_with("withdraw flow route"), "{got}");
}

/// Waits until `probe` holds, up to `wait`.
fn eventually(wait: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    probe()
}

#[test]
fn a_reader_back_before_the_next_write_gets_every_route_again() {
    let fifo = Fifo::new("quick-respawn");
    let mut r = reader(&fifo.path);
    let cfg = BgpConfig {
        reannounce: Duration::from_millis(400),
        ..config(&fifo.path)
    };
    let (a, _) = Announcer::start(cfg).unwrap();
    a.on_event(&start("a", "198.51.100.61"));
    a.on_event(&start("b", "198.51.100.62"));
    assert_eq!(lines_read(&mut r), 2);
    // ExaBGP restarted and its new reader opened the pipe before floodwatch wrote again: no
    // write failed and no poll saw the gap
    drop(r);
    let mut r = reader(&fifo.path);
    let got = read_for(&mut r, Duration::from_millis(900));
    for route in ["198.51.100.61/32", "198.51.100.62/32"] {
        assert!(got.contains(route), "{route} not announced again: {got:?}");
    }
    assert!(!got.contains("withdraw"), "{got}");
    drop(a);
}

#[test]
fn an_idle_pipe_whose_reader_went_away_is_seen_and_every_route_announced_again() {
    let fifo = Fifo::new("idle-loss");
    let mut r = reader(&fifo.path);
    let (a, _) = Announcer::start(config(&fifo.path)).unwrap();
    a.on_event(&start("a", "198.51.100.63"));
    assert_eq!(lines_read(&mut r), 1);
    drop(r);
    // nothing is written meanwhile: only polling the pipe can see the reader go
    std::thread::sleep(RETRY * 2);
    let mut r = reader(&fifo.path);
    let got = read_for(&mut r, RETRY * 4);
    assert!(
        got.contains("198.51.100.63/32"),
        "not announced again: {got:?}"
    );
    assert_eq!(a.stats().reconnects, 1);
    drop(a);
}

#[test]
fn withdrawals_are_never_dropped_however_many_changes_wait() {
    let p = policy(MAX_RULES_LIMIT, false);
    let mut b = Book::default();
    let key = |i: u32| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
    for i in 0..3000 {
        p.on_event(&mut b, &start(&format!("a{i}"), &key(i)));
    }
    assert_eq!(drain(&mut b).len(), 3000);
    // the pipe is gone while 3000 alerts end and 3000 others start
    for i in 0..3000 {
        p.on_event(&mut b, &end(&format!("a{i}"), &key(i)));
        p.on_event(&mut b, &start(&format!("b{i}"), &key(i + 5000)));
    }
    let lines = drain(&mut b);
    assert_eq!(lines.len(), 6000);
    assert!(lines[..3000].iter().all(|l| l.starts_with("withdraw ")));
    assert!(lines[3000..].iter().all(|l| l.starts_with("announce ")));
    assert_eq!(b.stats.dropped, 0);
}

#[test]
fn an_announcement_and_its_withdrawal_never_written_cancel_out() {
    let p = policy(32, true);
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "198.51.100.77"));
    p.on_event(&mut b, &end("a", "198.51.100.77"));
    assert!(drain(&mut b).is_empty());
    assert!(b.saved().is_empty());
}

#[test]
fn a_withdrawal_not_yet_written_stays_in_the_persist_file() {
    let p = policy(32, false);
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "198.51.100.78"));
    drain(&mut b);
    // the alert ends; floodwatch crashes before the withdrawal is written
    p.on_event(&mut b, &end("a", "198.51.100.78"));
    let saved = b.saved();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let mut next = Book::default();
    p.restore(&mut next, saved, Instant::now());
    let lines = drain(&mut next);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("withdraw flow route { match { destination 198.51.100.78/32;"));
    assert!(next.saved().is_empty(), "forgotten once written");
}

#[test]
fn exit_with_no_reader_waits_without_spinning() {
    let fifo = Fifo::new("exit-spin");
    let mut r = reader(&fifo.path);
    let (a, _) = Announcer::start(config(&fifo.path)).unwrap();
    a.on_event(&start("a", "198.51.100.64"));
    assert_eq!(lines_read(&mut r), 1);
    drop(r);
    // a process another test forks while `r` is open holds a copy of it until it execs: wait
    // until the pipe has no reader at all (opening it to write without blocking then fails)
    let t = Instant::now();
    while OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo.path)
        .is_ok()
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the pipe kept a reader"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let handle = a.stats_handle();
    // the withdrawal has no reader: the exit waits EXIT_GRACE for one
    let before = handle.0.book().writer_wakeups;
    let t = Instant::now();
    let stats = a.finish();
    let took = t.elapsed();
    let wakeups = handle.0.book().writer_wakeups - before;
    assert!(took <= EXIT_GRACE + Duration::from_millis(500), "{took:?}");
    assert!(
        wakeups < 100,
        "{wakeups} wakeups in {took:?}: the writer spun"
    );
    assert_eq!((stats.dropped, stats.active_at_exit), (1, 1), "{stats:?}");
}

/// The routes of two alerts of a run with `policy(32, true)` and no never-block prefix.
fn saved_run(keys: &[&str]) -> Vec<SavedRoute> {
    let p = Policy {
        never_block: Vec::new(),
        ..policy(32, true)
    };
    let mut b = Book::default();
    for (i, k) in keys.iter().enumerate() {
        p.on_event(&mut b, &start(&format!("r{i}"), k));
    }
    b.saved()
}

#[test]
fn restored_routes_follow_the_current_settings() {
    let saved = saved_run(&["198.51.100.40", "198.51.100.5", "198.51.100.41"]);
    assert_eq!(saved.len(), 6);
    // now: rate-limit, no --blackhole, .5 never-block (policy's /28), room for 1 route
    let p = Policy {
        action: FlowAction::RateLimit(1000),
        blackhole: None,
        ..policy(1, false)
    };
    let mut b = Book::default();
    p.restore(&mut b, saved, Instant::now() + Duration::from_secs(30));
    assert_eq!((b.stats.restored, b.stats.restored_refused), (1, 5));
    let lines = drain(&mut b);
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(
        lines[..5].iter().all(|l| l.starts_with("withdraw ")),
        "{lines:?}"
    );
    assert!(
        lines[5].starts_with("announce flow route { match { destination 198.51.100.40/32;")
            && lines[5].ends_with("then { rate-limit 1000; } }"),
        "{}",
        lines[5]
    );
    // an alert taking the route over with another action announces it again
    let p = Policy {
        action: FlowAction::Discard,
        ..p
    };
    p.on_event(&mut b, &start("a", "198.51.100.40"));
    let lines = drain(&mut b);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with("then { discard; } }"), "{}", lines[0]);
}

#[test]
fn taking_over_restored_routes_stays_under_the_cap() {
    // a run without --blackhole left two flowspec rules
    let saved: Vec<SavedRoute> = saved_run(&["198.51.100.40", "198.51.100.41"])
        .into_iter()
        .filter(|s| s.announce.starts_with("announce flow"))
        .collect();
    let p = Policy {
        never_block: Vec::new(),
        ..policy(2, true)
    };
    let mut b = Book::default();
    p.restore(&mut b, saved, Instant::now() + Duration::from_secs(30));
    assert_eq!(b.routes.len(), 2);
    drain(&mut b);
    // the alert on .40 wants its rule (held already) and a blackhole: one route too many
    p.on_event(&mut b, &start("a", "198.51.100.40"));
    assert_eq!(b.stats.refused_cap, 1);
    assert_eq!(b.routes.len(), 2);
    // a dst_subnet alert replacing nothing needs room too; one replacing .41's rule has it
    let mut other = start("b", "198.51.100.41");
    other.top_ports[0].port = 443;
    p.on_event(&mut b, &other);
    assert_eq!(b.stats.refused_cap, 2, "2 new routes, 1 freed");
    let p = Policy {
        blackhole: None,
        ..p
    };
    p.on_event(&mut b, &other);
    assert_eq!(b.stats.refused_cap, 2);
    assert_eq!(b.routes.len(), 2);
    let lines = drain(&mut b);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("withdraw flow route { match { destination 198.51.100.41/32;"));
    assert!(lines[1].contains("destination-port =443;"), "{}", lines[1]);
}

#[test]
fn keep_on_exit_without_state_is_refused_naming_both_options() {
    let fifo = Fifo::new("keep-no-state");
    let cfg = BgpConfig {
        keep_on_exit: true,
        ..config(&fifo.path)
    };
    let err = Announcer::start(cfg).err().unwrap().to_string();
    assert!(
        err.contains("--bgp-keep-on-exit") && err.contains("--state"),
        "{err}"
    );
}

#[test]
fn a_failed_persist_write_is_counted_and_retried() {
    let fifo = Fifo::new("persist-fail");
    let _r = reader(&fifo.path);
    let dir = fifo.dir.join("later");
    let persist = dir.join("state.exabgp.json");
    let cfg = BgpConfig {
        persist: Some(persist.clone()),
        ..config(&fifo.path)
    };
    let (a, _) = Announcer::start(cfg).unwrap();
    a.on_event(&start("a", "198.51.100.65"));
    assert!(eventually(Duration::from_secs(1), || a
        .stats()
        .persist_errors
        >= 1));
    std::fs::create_dir(&dir).unwrap();
    assert!(
        eventually(RETRY * 4, || persist.exists()),
        "not written once the directory exists"
    );
    let Ok(persist::Loaded::Routes(saved)) = persist::load(&persist) else {
        panic!("unreadable")
    };
    assert_eq!(saved.len(), 1);
    drop(a);
}

#[test]
fn a_corrupt_persist_file_is_moved_aside_not_overwritten() {
    let fifo = Fifo::new("persist-corrupt");
    let _r = reader(&fifo.path);
    let persist = fifo.dir.join("state.exabgp.json");
    std::fs::write(&persist, b"{\"format\":\"floodwatch-exabgp-routes\",\"vers").unwrap();
    let cfg = BgpConfig {
        persist: Some(persist.clone()),
        ..config(&fifo.path)
    };
    let (a, note) = Announcer::start(cfg).unwrap();
    let note = note.unwrap_or_default();
    assert!(note.contains("moved aside"), "{note}");
    let aside: Vec<_> = std::fs::read_dir(&fifo.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.exabgp.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    let kept = std::fs::read(aside[0].path()).unwrap();
    assert!(kept.ends_with(b"\"vers"));
    drop(a);
}

#[test]
fn never_block_holds_for_ipv4_mapped_ipv6_keys() {
    let p = policy(32, false);
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "::ffff:198.51.100.5"));
    let p = Policy {
        never_block: vec!["::ffff:192.0.2.0/120".parse().unwrap()],
        ..policy(32, false)
    };
    p.on_event(&mut b, &start("b", "192.0.2.53"));
    assert_eq!(b.stats.refused_never_block, 2);
    assert!(drain(&mut b).is_empty());
}

#[test]
fn a_second_start_of_the_same_alert_changes_nothing() {
    let p = policy(32, false);
    let mut b = Book::default();
    p.on_event(&mut b, &start("a", "198.51.100.66"));
    p.on_event(&mut b, &start("a", "198.51.100.66"));
    assert_eq!(drain(&mut b).len(), 1);
    p.on_event(&mut b, &end("a", "198.51.100.66"));
    assert_eq!(drain(&mut b).len(), 1, "withdrawn with its one end");
    assert!(b.routes.is_empty());
}
