//! `--exabgp-pipe` against real BGP daemons: ExaBGP in one network namespace peering with BIRD 2
//! in another over a veth pair this test creates (10.251.0.1/30 – 10.251.0.2/30; nothing leaves
//! the two namespaces), floodwatch writing to the named pipe that ExaBGP's process relays with
//! socat. A paced replay of synth's sig-syn-flood must put the flowspec rule (narrowed by the
//! signature) and the blackhole /32 with 65535:666 into BIRD's tables within a second of the
//! alert's start and take both out within a second of its end; the cap, the never-block prefixes
//! and IPv6 (flow6) are checked by what BIRD received.
//!
//! Needs root, `ip`, exabgp, bird2 (bird, birdc) and socat; skips with a note otherwise, unless
//! FLOODWATCH_REQUIRE_BGP=1 (CI) makes that a failure. Everything it starts is stopped and the
//! namespaces deleted on drop, also when an assertion fails.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{arg, bin, run, run_ok, sh, stderr, synth, temp_synth, words};
use serde_json::Value;

const EXA_ADDR: &str = "10.251.0.1";
const BIRD_ADDR: &str = "10.251.0.2";
const VICTIM: &str = "198.51.100.10";
/// How long the BGP session may take to come up.
const SESSION_TIMEOUT: Duration = Duration::from_secs(40);
/// The issue's targets: announced and withdrawn within a second.
const LATENCY_BOUND: Duration = Duration::from_secs(1);

/// BIRD's tables and import filters for the session from ExaBGP, as docs/mitigation.md gives them:
/// flowspec rules only for our prefixes, blackholes only for our hosts with 65535:666, discarded.
const ROUTER_POLICY: &str = r#"
flow4 table flowtab4;
flow6 table flowtab6;

define OUR_V4 = [ 198.51.100.0/24+ ];
define OUR_V6 = [ 2001:db8:100::/48+ ];

filter floodwatch_flow4_in {
  if net.dst ~ OUR_V4 && net.dst.len >= 24 then accept;
  reject;
}
filter floodwatch_flow6_in {
  if net.dst ~ OUR_V6 && net.dst.len >= 64 then accept;
  reject;
}
filter floodwatch_rtbh_in {
  if (65535, 666) ~ bgp_community && net ~ [ 198.51.100.0/24{32,32} ] then {
    bgp_community.add((65535, 65281));
    dest = RTD_BLACKHOLE;
    accept;
  }
  reject;
}
"#;

/// True when the lab can run; a note (or, with FLOODWATCH_REQUIRE_BGP=1, a panic) otherwise.
fn lab_possible() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let missing: Vec<&str> = ["ip", "exabgp", "bird", "birdc", "socat"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root {
        format!(
            "{} not installed (apt-get install exabgp bird2 socat iproute2)",
            missing.join(", ")
        )
    } else {
        "not root (network namespaces need it)".to_owned()
    };
    assert!(
        std::env::var("FLOODWATCH_REQUIRE_BGP").as_deref() != Ok("1"),
        "FLOODWATCH_REQUIRE_BGP=1 but the BGP lab cannot run: {why}"
    );
    eprintln!("note: skipping the ExaBGP/BIRD test: {why}");
    false
}

/// Two namespaces joined by a veth pair, BIRD in one and ExaBGP in the other; all of it stopped
/// and deleted on drop.
struct Lab {
    dir: tempfile::TempDir,
    ns_exa: String,
    ns_bird: String,
    bird: Option<Child>,
    exabgp: Option<Child>,
}

impl Lab {
    /// `floodwatch replay --realtime --exabgp-pipe PIPE EXTRA... CAP`: `cap` paced at capture
    /// speed, announcing to this lab's ExaBGP.
    fn paced_run(&self, extra: &[&str], cap: &Path) -> Run {
        let pipe = self.pipe();
        let mut args = vec!["replay", "--realtime", "--exabgp-pipe", arg(&pipe)];
        args.extend_from_slice(extra);
        args.push(arg(cap));
        Run::start(&args)
    }

    /// Whether BIRD's flowtab4 holds a rule for the victim.
    fn holds_victim_rule(&self) -> bool {
        self.birdc("show route table flowtab4")
            .contains(&format!("dst {VICTIM}/32"))
    }

    fn pipe(&self) -> PathBuf {
        self.dir.path().join("exabgp.pipe")
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("bird.ctl")
    }

    /// Writes `text` to the file `name` of the lab's directory; its path.
    fn write(&self, name: &str, text: String) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    fn start() -> Lab {
        let id = std::process::id();
        let mut lab = Lab {
            dir: tempfile::tempdir().unwrap(),
            ns_exa: format!("fwbgp{id}e"),
            ns_bird: format!("fwbgp{id}b"),
            bird: None,
            exabgp: None,
        };
        let (veth_e, veth_b) = (format!("fwb{id}e"), format!("fwb{id}b"));
        sh(&["ip", "netns", "add", &lab.ns_exa]);
        sh(&["ip", "netns", "add", &lab.ns_bird]);
        // made inside the namespaces, never in the root one: deleting them deletes the pair
        sh(&[
            "ip",
            "-n",
            &lab.ns_exa,
            "link",
            "add",
            &veth_e,
            "type",
            "veth",
            "peer",
            "name",
            &veth_b,
            "netns",
            &lab.ns_bird,
        ]);
        for (veth, ns, addr) in [
            (&veth_e, &lab.ns_exa, EXA_ADDR),
            (&veth_b, &lab.ns_bird, BIRD_ADDR),
        ] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                veth,
            ]);
            sh(&["ip", "-n", ns, "link", "set", veth, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&["mkfifo", arg(&lab.pipe())]);
        lab.start_bird();
        lab.start_exabgp();
        lab.wait_established();
        lab
    }

    fn start_bird(&mut self) {
        let d = self.dir.path();
        let conf = self.write(
            "bird.conf",
            format!(
                "router id {BIRD_ADDR};\n\
                 log \"{}\" all;\n\
                 protocol device {{}}\n\
                 {ROUTER_POLICY}\n\
                 protocol bgp exa {{\n\
                 \x20 local {BIRD_ADDR} as 65002;\n\
                 \x20 neighbor {EXA_ADDR} as 65001;\n\
                 \x20 ipv4 {{ import filter floodwatch_rtbh_in; import limit 64 action block; export none; }};\n\
                 \x20 ipv6 {{ import all; export none; }};\n\
                 \x20 flow4 {{ table flowtab4; import filter floodwatch_flow4_in; import limit 64 action block; export none; }};\n\
                 \x20 flow6 {{ table flowtab6; import filter floodwatch_flow6_in; import limit 64 action block; export none; }};\n\
                 }}\n",
                d.join("bird.log").display()
            ),
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_bird, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(self.sock())
            .arg("-P")
            .arg(d.join("bird.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start bird");
        self.bird = Some(child);
    }

    fn start_exabgp(&mut self) {
        let d = self.dir.path();
        // ExaBGP splits `run` on commas, and socat's pipe options need one: a wrapper script.
        // `ignoreeof` keeps socat reading when floodwatch closes the pipe, so ExaBGP never has to
        // respawn it between the runs below.
        let relay = self.write(
            "relay.sh",
            format!(
                "#!/bin/sh\necho $$ > {}\nexec socat -u pipe:{},ignoreeof stdout\n",
                d.join("relay.pid").display(),
                self.pipe().display()
            ),
        );
        sh(&["chmod", "+x", arg(&relay)]);
        let conf = self.write(
            "exabgp.conf",
            format!(
                "process floodwatch {{\n  run {};\n  encoder text;\n}}\n\
                 neighbor {BIRD_ADDR} {{\n  router-id {EXA_ADDR};\n  local-address {EXA_ADDR};\n\
                 \x20 local-as 65001;\n  peer-as 65002;\n\
                 \x20 family {{ ipv4 unicast; ipv6 unicast; ipv4 flow; ipv6 flow; }}\n\
                 \x20 api {{ processes [ floodwatch ]; }}\n}}\n",
                relay.display()
            ),
        );
        let log = std::fs::File::create(d.join("exabgp.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_exa, "exabgp"])
            .arg(&conf)
            .env("PYTHONUNBUFFERED", "1")
            .env("exabgp_daemon_user", "root")
            .env("exabgp_daemon_drop", "false")
            .env("exabgp_api_ack", "false")
            .env("exabgp_cli_enable", "false")
            .env("exabgp_log_destination", "stdout")
            .current_dir(d)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start exabgp");
        self.exabgp = Some(child);
    }

    /// Stops ExaBGP and its relay (as ExaBGP's own shutdown does) and starts a new one.
    fn restart_exabgp(&mut self) {
        if let Some(mut c) = self.exabgp.take() {
            stop(&mut c);
        }
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("relay.pid")) {
            let _ = Command::new("kill")
                .args(["-TERM", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        let down = poll_until(SESSION_TIMEOUT, || {
            !self.birdc("show protocols exa").contains("Established")
        });
        assert!(down.is_some(), "the BGP session stayed up");
        self.start_exabgp();
        self.wait_established();
    }

    fn birdc(&self, cmd: &str) -> String {
        let o = Command::new("birdc")
            .arg("-s")
            .arg(self.sock())
            .args(cmd.split_whitespace())
            .output()
            .expect("birdc");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn wait_established(&self) {
        let until = Instant::now() + SESSION_TIMEOUT;
        while Instant::now() < until {
            if self.birdc("show protocols exa").contains("Established") {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "BGP session not up in {SESSION_TIMEOUT:?}: {}\nexabgp log: {}",
            self.birdc("show protocols all exa"),
            std::fs::read_to_string(self.dir.path().join("exabgp.log")).unwrap_or_default()
        );
    }

    /// BIRD's "Import updates" and "Import withdraws" received on a channel of the session.
    fn received(&self, channel: &str) -> (u64, u64) {
        let text = self.birdc("show protocols all exa");
        let block = text
            .split("Channel ")
            .find(|b| b.starts_with(channel))
            .unwrap_or_else(|| panic!("no channel {channel} in {text}"));
        let count = |what: &str| -> u64 {
            block
                .lines()
                .find(|l| l.trim_start().starts_with(what))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {what} in {block}"))
        };
        (count("Import updates:"), count("Import withdraws:"))
    }
}

/// Stops a child politely (ExaBGP then stops its relay), then for good.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in [self.exabgp.take(), self.bird.take()].iter_mut().flatten() {
            stop(c);
        }
        // the relay, should ExaBGP have left it behind
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("relay.pid")) {
            let _ = Command::new("kill")
                .args(["-KILL", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        for ns in [&self.ns_exa, &self.ns_bird] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A floodwatch run whose stdout lines arrive, with their arrival time, on a channel.
struct Run {
    child: Child,
    lines: mpsc::Receiver<(Instant, Value)>,
}

impl Run {
    fn start(args: &[&str]) -> Run {
        let mut child = common::spawn_piped(bin().args(args));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).expect("a JSON line");
                if tx.send((Instant::now(), v)).is_err() {
                    return;
                }
            }
        });
        Run { child, lines }
    }

    /// Waits for the next event of `kind`, within `wait`.
    fn next(&self, kind: &str, wait: Duration) -> (Instant, Value) {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, v)) if v["event"] == kind => return (t, v),
                Ok(_) => {}
                Err(e) => panic!("no {kind} event in {wait:?}: {e}"),
            }
        }
    }

    /// Waits for the end and returns stderr.
    fn finish(mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "floodwatch failed: {err}");
        err
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `probe` every 10 ms until it is true; the time it became true.
fn poll_until(wait: Duration, mut probe: impl FnMut() -> bool) -> Option<Instant> {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if probe() {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn fast_run(lab: &Lab, cap: &Path, extra: &[&str]) -> String {
    let pipe = lab.pipe();
    let mut args = vec!["replay", "--hold-down", "1s", "--exabgp-pipe", arg(&pipe)];
    args.extend_from_slice(extra);
    args.push(arg(cap));
    stderr(&run_ok(&args)).into_owned()
}

/// One lab (the BGP session takes seconds to come up) for every check, in order.
#[test]
fn exabgp_carries_flowspec_and_blackhole_to_bird_while_the_alert_lasts() {
    if !lab_possible() {
        return;
    }
    let mut lab = Lab::start();
    let cap = paced_flood_is_announced_and_withdrawn(&lab);
    guard_rails_hold(&lab, &cap);
    ipv6_rules_reach_flow6(&lab);
    a_restart_takes_kept_routes_over(&lab);
    an_exabgp_restart_gets_the_rule_back(&mut lab);
}

/// A paced sig-syn-flood: the rule and the blackhole in BIRD within a second of the start, gone
/// within a second of the end. Returns the capture.
fn paced_flood_is_announced_and_withdrawn(lab: &Lab) -> PathBuf {
    let dir = lab.dir.path();
    // 2 s of a 5 000/s SYN flood from 2 s, in 6 s of capture, replayed at capture speed
    let cap = synth(
        dir,
        "sig-syn-flood",
        &words(
            "--duration 6s --attack-start 2s --attack-duration 2s --attack-pps 5000 \
             --background-pps 500",
        ),
    );
    let blackhole = [
        "--hold-down",
        "1s",
        "--blackhole",
        "--blackhole-next-hop",
        EXA_ADDR,
    ];
    let run = lab.paced_run(&blackhole, &cap);
    let (t_start, start) = run.next("start", Duration::from_secs(10));
    let flow = |lab: &Lab| lab.birdc("show route table flowtab4 all");
    let held = |lab: &Lab| flow(lab).contains(&format!("dst {VICTIM}/32"));
    let t_flow = poll_until(Duration::from_secs(3), || held(lab))
        .unwrap_or_else(|| panic!("BIRD never held the rule: {}", flow(lab)));
    let rule_text = flow(lab);
    let show_blackhole =
        |lab: &Lab| lab.birdc(&format!("show route {VICTIM}/32 table master4 all"));
    let t_blackhole = poll_until(Duration::from_secs(3), || {
        show_blackhole(lab).contains("(65535,666)")
    })
    .unwrap_or_else(|| panic!("no blackhole route: {}", show_blackhole(lab)));
    let blackhole = show_blackhole(lab);
    let (t_end, _) = run.next("end", Duration::from_secs(10));
    let t_gone = poll_until(Duration::from_secs(3), || {
        !held(lab) && !lab.birdc("show route table master4").contains(VICTIM)
    })
    .unwrap_or_else(|| panic!("not withdrawn: {}", flow(lab)));
    let err = run.finish();

    // the rule as BIRD decoded it, narrowed by the signature the alert carried
    let announced = start["mitigation"]["flowspec"][0].as_str().unwrap();
    eprintln!("announced: {announced}\nBIRD: {rule_text}\nblackhole: {blackhole}");
    assert!(rule_text.contains("proto 6"), "{rule_text}");
    assert!(rule_text.contains("dport 80"), "{rule_text}");
    assert!(rule_text.contains("tcp flags"), "{rule_text}");
    for (ours, birds) in [
        ("packet-length =", "length "),
        ("fragment [ !dont-fragment ]", "fragment !dont_fragment"),
    ] {
        if let Some(at) = announced.find(ours) {
            let value: String = announced[at + ours.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            assert!(
                rule_text.contains(&format!("{birds}{value}")),
                "{birds}{value} missing: {rule_text}"
            );
        }
    }
    // traffic-rate 0: discard
    assert!(
        rule_text.contains("(generic, 0x80060000, 0x0)"),
        "{rule_text}"
    );
    assert!(blackhole.contains("(65535,666)"), "{blackhole}");
    // the documented import filter turned it into a discard route, kept in the AS
    assert!(blackhole.contains("blackhole"), "{blackhole}");
    assert!(blackhole.contains("(65535,65281)"), "{blackhole}");
    let announce_ms = t_flow.duration_since(t_start).as_millis();
    let blackhole_ms = t_blackhole.duration_since(t_start).as_millis();
    let withdraw_ms = t_gone.duration_since(t_end).as_millis();
    eprintln!(
        "alert start -> flowspec rule in BIRD: {announce_ms} ms, blackhole: {blackhole_ms} ms; alert end -> both withdrawn: {withdraw_ms} ms"
    );
    assert!(t_flow.duration_since(t_start) < LATENCY_BOUND);
    assert!(t_blackhole.duration_since(t_start) < LATENCY_BOUND);
    assert!(t_gone.duration_since(t_end) < LATENCY_BOUND);
    assert!(
        err.contains("exabgp: 2 announced, 2 withdrawn"),
        "summary: {err}"
    );

    cap
}

/// The cap and the never-block prefixes: BIRD receives nothing.
fn guard_rails_hold(lab: &Lab, cap: &Path) {
    let dir = lab.dir.path();
    // the cap: a rule and a blackhole do not fit in one route, so nothing goes out
    let before = (lab.received("flow4"), lab.received("ipv4"));
    let err = fast_run(lab, cap, &["--blackhole", "--bgp-max-rules", "1"]);
    assert!(err.contains("1 refused at the cap"), "{err}");
    // never-block prefixes, from the config file and the command line
    let conf = dir.join("fw.toml");
    std::fs::write(&conf, "[mitigation]\nnever_block = [\"198.51.100.0/24\"]\n").unwrap();
    let err = fast_run(lab, cap, &["--config", arg(&conf)]);
    assert!(err.contains("1 in never-block prefixes"), "{err}");
    let err = fast_run(lab, cap, &["--never-block", "198.51.100.10"]);
    assert!(err.contains("1 in never-block prefixes"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (lab.received("flow4"), lab.received("ipv4")),
        before,
        "BIRD received something"
    );
}

/// IPv6: the flow6 rule (next-header, no length) reaches BIRD's flow6 table while the alert lasts
/// (paced: ExaBGP folds an announcement withdrawn before it sent it into nothing).
fn ipv6_rules_reach_flow6(lab: &Lab) {
    let dir = lab.dir.path();
    let v6 = synth(
        dir,
        "ipv6-syn-flood",
        &words("--duration 5s --attack-start 1s --attack-duration 2s"),
    );
    let run = lab.paced_run(&["--hold-down", "1s"], &v6);
    let (t_start, _) = run.next("start", Duration::from_secs(10));
    let flow6 = |lab: &Lab| lab.birdc("show route table flowtab6 all");
    let t_flow6 = poll_until(Duration::from_secs(3), || {
        flow6(lab).contains("dst 2001:db8:100::10/128")
    })
    .unwrap_or_else(|| {
        panic!(
            "BIRD never held the flow6 rule: {}\nexabgp log: {}",
            flow6(lab),
            std::fs::read_to_string(dir.join("exabgp.log")).unwrap_or_default()
        )
    });
    let rule6 = flow6(lab);
    assert!(rule6.contains("next header 6"), "{rule6}");
    assert!(rule6.contains("dport 80"), "{rule6}");
    let (t_end, _) = run.next("end", Duration::from_secs(10));
    let t_gone6 = poll_until(Duration::from_secs(3), || {
        !flow6(lab).contains("2001:db8:100::10")
    })
    .unwrap_or_else(|| panic!("flow6 not withdrawn: {}", flow6(lab)));
    eprintln!(
        "IPv6: alert start -> flow6 rule in BIRD: {} ms; end -> withdrawn: {} ms",
        t_flow6.duration_since(t_start).as_millis(),
        t_gone6.duration_since(t_end).as_millis()
    );
    assert!(t_flow6.duration_since(t_start) < LATENCY_BOUND);
    assert!(t_gone6.duration_since(t_end) < LATENCY_BOUND);
    let err = run.finish();
    assert!(err.contains("exabgp: 1 announced, 1 withdrawn"), "{err}");
}

/// `--bgp-keep-on-exit` with `--state`: the route of an alert the end of the input closed stays in
/// BIRD after floodwatch exits; the next run announces it again, the alert that comes back takes
/// it over, and without the option it is withdrawn at that run's end.
fn a_restart_takes_kept_routes_over(lab: &Lab) {
    let dir = lab.dir.path();
    std::fs::create_dir_all(dir.join("open")).unwrap();
    // the flood lasts to the end of the capture: its alert ends with the input
    let open_ended = synth(
        &dir.join("open"),
        "sig-syn-flood",
        &words(
            "--duration 4s --attack-start 1s --attack-duration 3s --attack-pps 5000 \
             --background-pps 500",
        ),
    );
    let state = dir.join("state.json");
    let st = arg(&state);
    let held = || lab.holds_victim_rule();
    let err = fast_run(lab, &open_ended, &["--state", st, "--bgp-keep-on-exit"]);
    assert!(err.contains("1 still announced at exit"), "{err}");
    assert!(
        poll_until(Duration::from_secs(2), held).is_some(),
        "kept route not in BIRD"
    );
    let saved = std::fs::read_to_string(dir.join("state.json.exabgp.json")).unwrap();
    assert!(saved.contains("198.51.100.10/32"), "{saved}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(held(), "the kept route went away");
    let err = fast_run(
        lab,
        &open_ended,
        &["--state", st, "--bgp-restore-hold", "5s"],
    );
    assert!(
        err.contains("1 route(s) left announced by the last run announced again"),
        "{err}"
    );
    assert!(
        err.contains("1 restored from the last run (0 withdrawn unclaimed)"),
        "{err}"
    );
    assert!(
        poll_until(Duration::from_secs(2), || !held()).is_some(),
        "not withdrawn at the end of the second run"
    );
    let saved = std::fs::read_to_string(dir.join("state.json.exabgp.json")).unwrap();
    assert!(!saved.contains("198.51.100.10"), "{saved}");
}

/// ExaBGP restarts while an alert lasts: BIRD drops the session's routes, and floodwatch, which
/// sees the pipe's reader go, announces the rule again to the new ExaBGP.
fn an_exabgp_restart_gets_the_rule_back(lab: &mut Lab) {
    let dir = lab.dir.path().join("exabgp-restart");
    std::fs::create_dir_all(&dir).unwrap();
    let cap = synth(
        &dir,
        "sig-syn-flood",
        &words(
            "--duration 40s --attack-start 1s --attack-duration 39s --attack-pps 2000 \
             --background-pps 200",
        ),
    );
    let run = lab.paced_run(&[], &cap);
    run.next("start", Duration::from_secs(10));
    assert!(
        poll_until(Duration::from_secs(3), || lab.holds_victim_rule()).is_some(),
        "BIRD never held the rule"
    );
    lab.restart_exabgp();
    let back = poll_until(Duration::from_secs(5), || lab.holds_victim_rule());
    assert!(
        back.is_some(),
        "the rule is not back after ExaBGP restarted: {}\nexabgp log: {}",
        lab.birdc("show route table flowtab4"),
        std::fs::read_to_string(lab.dir.path().join("exabgp.log")).unwrap_or_default()
    );
    drop(run);
}

/// Every command that detects takes the options; they need --exabgp-pipe; a path that is not a
/// pipe is refused by name; a missing pipe is reported and detection goes on. No root needed.
#[test]
fn the_options_are_on_every_detecting_command_and_checked() {
    for cmd in ["replay", "live", "collect", "detect"] {
        let opts = [
            "--exabgp-pipe",
            "--blackhole",
            "--bgp-max-rules",
            "--never-block",
        ];
        common::help_listing(cmd, &opts);
    }
    let (dir, cap) = temp_synth("syn-flood", common::SMALL_FLOOD);
    let c = arg(&cap);
    let o = run(&["replay", "--blackhole", c]);
    assert_eq!(o.status.code(), Some(2), "--blackhole alone is bad usage");
    let plain = dir.path().join("not-a-pipe");
    std::fs::write(&plain, b"").unwrap();
    let o = run(&["replay", "--exabgp-pipe", arg(&plain), c]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not-a-pipe") && err.contains("mkfifo"),
        "{err}"
    );
    // a missing pipe: said at start, alerts written all the same, lines counted
    let missing = dir.path().join("missing.pipe");
    let o = run(&["replay", "--exabgp-pipe", arg(&missing), c]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("exabgp: 1 announced, 1 withdrawn"), "{err}");
    // the announcement and its withdrawal never went out: they cancel out, nothing is owed
    assert!(err.contains("0 dropped"), "{err}");
    assert!(!err.contains("still announced"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\"event\":\"start\""), "{out}");
    // more rules than the design bounds, and routes kept with no --state to find them again
    let p = arg(&missing);
    // the start event shows the rule as announced, with --flowspec-action
    let o = run_ok(&[
        "replay",
        "--exabgp-pipe",
        p,
        "--flowspec-action",
        "rate-limit:125000",
        c,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("then { rate-limit 125000; } }"), "{out}");
    assert!(!out.contains("discard;"), "{out}");
    let o = run(&["replay", "--exabgp-pipe", p, "--bgp-max-rules", "5000", c]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--bgp-max-rules 5000 is bad usage"
    );
    let o = run(&["replay", "--exabgp-pipe", p, "--bgp-keep-on-exit", c]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--bgp-keep-on-exit") && err.contains("--state"),
        "{err}"
    );
}
