//! Live capture end to end: two network namespaces joined by a veth pair, `floodwatch live` on the
//! receiving side, a synth SYN flood sent with tcpreplay from the other side to the receiver's own
//! address (10.250.0.2, no default route anywhere: nothing can leave the test's namespaces).
//!
//! Runs only as root with `ip` and `tcpreplay` present (CI installs tcpreplay); otherwise each test
//! prints why it skipped. The namespaces are deleted when the test ends, also on failure.

mod common;

use common::{arg, is_root, sh, stderr};

use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use serde_json::Value;

/// Packets in the flood: bounded, about a quarter to half a second at the veth's top speed.
const FLOOD_PACKETS: u64 = 50_000;
const VICTIM: &str = "10.250.0.2";

/// A veth pair (`tag` keeps its names apart) and a flood capture addressed to its receiver, in a
/// new temporary directory; None, with a note that the `test` is skipped, where the live tests
/// cannot run.
fn veth_and_flood(tag: char, test: &str) -> Option<(TestNet, tempfile::TempDir, PathBuf)> {
    if let Some(why) = missing_prerequisite() {
        eprintln!("note: skipping the {test}: {why}");
        return None;
    }
    let net = TestNet::create(tag);
    let dir = tempfile::tempdir().unwrap();
    let capture = flood_capture(dir.path(), &net.receiver_mac());
    Some((net, dir, capture))
}

/// Why the live tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    for (tool, arg) in [("ip", "-V"), ("tcpreplay", "-V")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Two namespaces and a veth pair; `Drop` deletes the namespaces (and with them the veth).
struct TestNet {
    sender_ns: String,
    receiver_ns: String,
    sender_if: String,
    receiver_if: String,
}

impl TestNet {
    /// `tag` keeps the names of tests running at once in this process apart.
    fn create(tag: char) -> TestNet {
        let pid = std::process::id();
        let net = TestNet {
            sender_ns: format!("fwtest{pid}{tag}s"),
            receiver_ns: format!("fwtest{pid}{tag}r"),
            sender_if: format!("fw{pid}{tag}s"),
            receiver_if: format!("fw{pid}{tag}r"),
        };
        // Built before the first command, so a failure half-way still cleans up what exists.
        sh(&["ip", "netns", "add", &net.sender_ns]);
        sh(&["ip", "netns", "add", &net.receiver_ns]);
        for ns in [&net.sender_ns, &net.receiver_ns] {
            // No IPv6: no router solicitations or MLD reports, so the link carries only the flood.
            for key in ["all", "default"] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                ]);
            }
        }
        sh(&[
            "ip",
            "link",
            "add",
            &net.sender_if,
            "netns",
            &net.sender_ns,
            "type",
            "veth",
            "peer",
            "name",
            &net.receiver_if,
            "netns",
            &net.receiver_ns,
        ]);
        for (ns, dev, addr) in [
            (&net.sender_ns, &net.sender_if, "10.250.0.1/24"),
            (&net.receiver_ns, &net.receiver_if, "10.250.0.2/24"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        net
    }

    fn receiver_mac(&self) -> String {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &self.receiver_ns,
            "cat",
            &format!("/sys/class/net/{}/address", self.receiver_if),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in [&self.sender_ns, &self.receiver_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A running `floodwatch live`, its output lines arriving on channels.
struct Floodwatch {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Floodwatch {
    fn start(net: &TestNet, extra: &[&str]) -> Floodwatch {
        let mut args = vec!["live", &net.receiver_if, "--threads", "2"];
        args.extend_from_slice(extra);
        Floodwatch::start_with(net, &args, "capturing on")
    }

    /// `floodwatch ARGS` in the receiving namespace, once it has printed `ready` on stderr.
    fn start_with(net: &TestNet, args: &[&str], ready: &str) -> Floodwatch {
        let mut child = common::spawn_piped(
            Command::new("ip")
                .args(["netns", "exec", &net.receiver_ns])
                .arg(env!("CARGO_BIN_EXE_floodwatch"))
                .args(args),
        );
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        let mut fw = Floodwatch {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        };
        fw.wait_stderr(ready);
        fw
    }

    /// Waits (at most 30 s) for a stderr line containing `needle`.
    fn wait_stderr(&mut self, needle: &str) {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr_seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "floodwatch never printed {needle:?}; stderr so far:\n{}",
                        self.stderr_seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits (at most 30 s) for an alert event matching `want`; returns every event read so far.
    fn wait_event(&mut self, events: &mut Vec<Value>, want: impl Fn(&Value) -> bool) {
        loop {
            let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(30)) else {
                let _ = self.child.kill();
                panic!("expected alert never came; events so far: {events:?}");
            };
            let v: Value = serde_json::from_str(&line).expect("alert JSON");
            let hit = want(&v);
            events.push(v);
            if hit {
                return;
            }
        }
    }

    /// Ctrl-C, then everything it wrote until it exited.
    fn interrupt(mut self, events: &mut Vec<Value>) -> String {
        // `ip netns exec` execs floodwatch, so the child's pid is floodwatch's.
        sh(&["kill", "-INT", &self.child.id().to_string()]);
        for line in self.stdout.iter() {
            events.push(serde_json::from_str(&line).expect("alert JSON"));
        }
        self.stderr_seen.extend(self.stderr.iter());
        let status = self.child.wait().expect("floodwatch exit status");
        let stderr = self.stderr_seen.join("\n");
        assert!(
            status.success(),
            "floodwatch exited with {status}:\n{stderr}"
        );
        stderr
    }
}

/// Forwards the lines of `r` to a channel, from a thread.
fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends the flood with tcpreplay at top speed; returns (packets sent, rate line).
fn send_flood(net: &TestNet, capture: &Path) -> (u64, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &net.sender_ns, "tcpreplay", "-q"])
        .args(["-i", &net.sender_if, "--topspeed"])
        .arg(capture)
        .output()
        .expect("cannot run tcpreplay");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tcpreplay failed:\n{text}{}",
        stderr(&out)
    );
    let sent = word_after(&text, "Actual:").expect("tcpreplay's packet count");
    let failed = word_after(&text, "Failed packets:").unwrap_or(0);
    let rated = text
        .lines()
        .find(|l| l.contains("Rated:"))
        .unwrap_or("")
        .trim()
        .to_string();
    (sent - failed, rated)
}

/// The number after `label` in `text`.
fn word_after(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)? + label.len();
    text[at..].split_whitespace().next()?.parse().ok()
}

/// Makes the flood capture: SYNs to the receiver's address and MAC only, no background traffic.
fn flood_capture(dir: &Path, mac: &str) -> std::path::PathBuf {
    let pps = FLOOD_PACKETS.to_string();
    common::synth(
        dir,
        "syn-flood",
        &[
            "--victim",
            VICTIM,
            "--dst-mac",
            mac,
            "--src-mac",
            "02:00:00:00:00:01",
            "--duration",
            "1s",
            "--attack-start",
            "0s",
            "--attack-duration",
            "1s",
            "--attack-pps",
            &pps,
            "--background-pps",
            "0",
        ],
    )
}

/// The first `event` (start, end…) of the SYN flood alert on the victim among `events`.
fn victim_event<'a>(events: &'a [Value], event: &str) -> Option<&'a Value> {
    events.iter().find(|e| is_victim_syn_flood(e, event))
}

fn is_victim_syn_flood(e: &Value, event: &str) -> bool {
    e["event"] == event
        && e["class"] == "syn_flood"
        && e["scope"] == "dst_host"
        && e["key"] == VICTIM
}

/// Every frame sent was either read or counted as dropped by the kernel.
fn assert_accounted(stderr: &str, sent: u64) {
    let frames = word_after(stderr, "frames ").expect("frames in the summary");
    let kernel = word_after(stderr, "kernel drops ").expect("kernel drops in the summary");
    let pipeline = word_after(stderr, "pipeline drops ").expect("pipeline drops in the summary");
    eprintln!("sent {sent}, read {frames}, kernel drops {kernel}, pipeline drops {pipeline}");
    assert_eq!(frames + kernel, sent, "summary:\n{stderr}");
    assert!(pipeline <= frames);
}

/// The flood raises `syn_flood` on the victim; Ctrl-C ends it with reason `shutdown`, and the
/// summary accounts for every packet sent. Returns the summary (empty when skipped).
fn flood_then_interrupt(tag: char, backend: &[&str]) -> String {
    let Some((net, _dir, capture)) = veth_and_flood(tag, "live capture test") else {
        return String::new();
    };
    let mut args = vec!["--status-interval", "0"];
    args.extend_from_slice(backend);
    let mut fw = Floodwatch::start(&net, &args);
    let (sent, rated) = send_flood(&net, &capture);
    eprintln!("tcpreplay: {rated}");
    let mut events = Vec::new();
    fw.wait_event(&mut events, |e| is_victim_syn_flood(e, "start"));
    let stderr = fw.interrupt(&mut events);
    let end = victim_event(&events, "end").unwrap_or_else(|| panic!("no end event: {events:?}"));
    assert_eq!(end["reason"], "shutdown", "{end}");
    assert!(
        stderr.contains("floodwatch summary (interrupted)"),
        "{stderr}"
    );
    assert_accounted(&stderr, sent);
    stderr
}

/// With a short hold-down, the alert ends on the idle link by itself: the idle clock advances
/// packet time although no packet arrives.
fn flood_then_idle(tag: char, backend: &[&str]) {
    let Some((net, _dir, capture)) = veth_and_flood(tag, "live capture test") else {
        return;
    };
    let mut args = vec!["--status-interval", "0", "--hold-down", "1s"];
    args.extend_from_slice(backend);
    let mut fw = Floodwatch::start(&net, &args);
    let (sent, _) = send_flood(&net, &capture);
    let mut events = Vec::new();
    fw.wait_event(&mut events, |e| is_victim_syn_flood(e, "end"));
    let end = events.last().expect("end event");
    assert_eq!(end["reason"], "below_threshold", "{end}");
    assert!(events.iter().any(|e| is_victim_syn_flood(e, "start")));
    let stderr = fw.interrupt(&mut events);
    assert_accounted(&stderr, sent);
}

#[test]
fn afpacket_syn_flood_on_veth_alerts_and_accounts_for_every_packet() {
    flood_then_interrupt('a', &[]);
}

#[test]
fn afpacket_alert_ends_on_an_idle_link() {
    flood_then_idle('i', &[]);
}

/// Two AF_PACKET sockets in one fanout group spreading by flow, a capture thread each, feeding the
/// same shards: the same alert as one thread, and every packet read by one of the sockets or
/// counted as dropped.
#[test]
fn afpacket_two_capture_threads_alert_and_account_for_every_packet() {
    let stderr = flood_then_interrupt(
        'f',
        &["--capture-threads", "2", "--capture-spread", "always"],
    );
    if stderr.is_empty() {
        return; // skipped
    }
    // the flood's spoofed sources spread over both sockets of the group
    let each = frames_per_capture_thread(&stderr);
    assert!(
        each.iter().all(|n| *n > 0),
        "one socket got nothing: {each:?}"
    );
    assert!(!stderr.contains("fell behind"), "{stderr}");
}

/// By default the second socket of the group gets nothing while the first thread keeps up: the
/// flood (50 k frames of ~130 bytes in the ring) fills about 6 of the first socket's 64 blocks of
/// 1 MiB, and behind means the block 16 ahead is already full, so the whole flood is read by the
/// first.
#[test]
fn afpacket_two_capture_threads_leave_the_second_idle_while_the_first_keeps_up() {
    let stderr = flood_then_interrupt('k', &["--capture-threads", "2"]);
    if stderr.is_empty() {
        return; // skipped
    }
    let each = frames_per_capture_thread(&stderr);
    assert!(each[0] > 0 && each[1] == 0, "{each:?}");
    assert!(!stderr.contains("fell behind"), "{stderr}");
}

/// With a ring of 8 blocks of 4 KiB, the first thread falls two blocks behind the flood sent at
/// top speed, and the packets spread over both sockets from then on; none is lost unaccounted.
#[test]
fn afpacket_two_capture_threads_spread_when_the_first_falls_behind() {
    let stderr = flood_then_interrupt(
        'j',
        &[
            "--capture-threads",
            "2",
            "--ring-block-size",
            "4K",
            "--ring-blocks",
            "8",
        ],
    );
    if stderr.is_empty() {
        return; // skipped
    }
    let each = frames_per_capture_thread(&stderr);
    assert!(each.iter().all(|n| *n > 0), "{each:?}\n{stderr}");
    assert!(
        stderr.contains("the first capture thread fell behind"),
        "{stderr}"
    );
}

/// The frames each capture thread read, from the summary's line.
fn frames_per_capture_thread(stderr: &str) -> Vec<u64> {
    let line = stderr
        .lines()
        .find(|l| l.contains("capture threads 2: frames"))
        .unwrap_or_else(|| panic!("no per-thread frames in the summary:\n{stderr}"));
    let each: Vec<u64> = line
        .rsplit("frames ")
        .next()
        .unwrap_or("")
        .split(" / ")
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    assert_eq!(each.len(), 2, "{line}");
    each
}

/// The interface going down ends the run with an error naming it, with one capture thread and
/// with two (the second waiting without a ring, which must notice too, or the first would wait
/// for it for ever).
#[test]
fn afpacket_interface_down_ends_the_run_with_an_error_naming_it() {
    for (tag, extra) in [('l', &[][..]), ('m', &["--capture-threads", "2"][..])] {
        let Some((net, _dir, _capture)) = veth_and_flood(tag, "live capture test") else {
            return;
        };
        let mut args = vec!["--status-interval", "0"];
        args.extend_from_slice(extra);
        let mut fw = Floodwatch::start(&net, &args);
        sh(&[
            "ip",
            "netns",
            "exec",
            &net.receiver_ns,
            "ip",
            "link",
            "set",
            &net.receiver_if,
            "down",
        ]);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = fw.child.try_wait().expect("floodwatch's status") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = fw.child.kill();
                panic!("{extra:?}: floodwatch still runs 20 s after its interface went down");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        fw.stderr_seen.extend(fw.stderr.iter());
        let stderr = fw.stderr_seen.join("\n");
        assert!(!status.success(), "{extra:?}: {status}\n{stderr}");
        assert!(stderr.contains(&net.receiver_if), "{extra:?}:\n{stderr}");
    }
}

#[test]
fn afpacket_two_capture_threads_end_the_alert_on_an_idle_link() {
    flood_then_idle(
        'g',
        &["--capture-threads", "2", "--capture-spread", "always"],
    );
}

/// `--evidence-dir` on a live capture: the start names a pcap of the victim's packets, N before the
/// start and at most M after it (fewer before only when drops were counted), that tcpdump reads;
/// complete (renamed) by the time floodwatch exits.
#[test]
fn afpacket_flood_leaves_an_evidence_pcap() {
    evidence_on_veth('e', &[]);
}

/// The same with two capture threads, whose copies of the frames reach the writer apart (it orders
/// them by time, not by the router's evaluations, which these threads do not see).
#[test]
fn afpacket_two_capture_threads_leave_an_evidence_pcap() {
    evidence_on_veth(
        'h',
        &["--capture-threads", "2", "--capture-spread", "always"],
    );
}

fn evidence_on_veth(tag: char, extra: &[&str]) {
    let Some((net, dir, capture)) = veth_and_flood(tag, "live evidence test") else {
        return;
    };
    let evidence = dir.path().join("evidence");
    let mut args = vec![
        "--status-interval",
        "0",
        "--hold-down",
        "1s",
        "--evidence-dir",
        arg(&evidence),
        "--evidence-before",
        "50",
        "--evidence-after",
        "200",
    ];
    args.extend_from_slice(extra);
    let mut fw = Floodwatch::start(&net, &args);
    send_flood(&net, &capture);
    let mut events = Vec::new();
    fw.wait_event(&mut events, |e| is_victim_syn_flood(e, "end"));
    let stderr = fw.interrupt(&mut events);
    let start = victim_event(&events, "start").expect("a start event");
    let file = start["evidence"].as_str().expect("an evidence field");
    assert!(
        file.starts_with(arg(&evidence)),
        "{file} is not in {}",
        evidence.display()
    );
    let Ok(o) = common::tcpdump_nano(Path::new(file)) else {
        eprintln!("note: tcpdump is not installed; the evidence file is not read back");
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let start_ns = common::rfc3339_ns(start["ts"].as_str().unwrap());
    let (mut before, mut after) = (0, 0);
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let dst = line.split_whitespace().nth(4).unwrap_or("");
        assert!(dst.starts_with(&format!("{VICTIM}.")), "{line}");
        let (s, ns) = line
            .split_whitespace()
            .next()
            .unwrap()
            .split_once('.')
            .unwrap();
        let ts = s.parse::<u64>().unwrap() * 1_000_000_000 + ns.parse::<u64>().unwrap();
        if ts < start_ns {
            before += 1;
        } else {
            after += 1;
        }
    }
    eprintln!("evidence: {before} before the start, {after} after");
    // (the whole flood can fit in one tick: then the alert starts on the idle link after it, and
    // no packet follows the start)
    assert!(after <= 200, "{after} after the start");
    let lost = stderr.contains("evidence: ");
    assert!(
        before == 50 || lost || !stderr.contains("kernel drops 0"),
        "{before} packets before the start, with nothing counted as lost:\n{stderr}"
    );
}

#[test]
fn capture_threads_need_the_afpacket_backend() {
    let out = common::run(&["live", "lo", "--backend", "pcap", "--capture-threads", "2"]);
    common::assert_fails_naming(&out, &["pcap backend reads with one thread"]);
}

#[test]
fn unknown_interface_lists_the_available_ones() {
    let out = common::run(&["live", "no-such-if9"]);
    common::assert_fails_naming(
        &out,
        &["no network interface named `no-such-if9`; available:"],
    );
}

#[test]
fn filter_needs_the_pcap_backend() {
    let out = common::run(&["live", "lo", "--filter", "tcp"]);
    common::assert_fails_naming(&out, &["--backend pcap"]);
}

#[cfg(feature = "libpcap")]
#[test]
fn libpcap_syn_flood_on_veth_alerts_and_accounts_for_every_packet() {
    flood_then_interrupt('p', &["--backend", "pcap", "--filter", "tcp"]);
}

#[cfg(feature = "libpcap")]
#[test]
fn libpcap_alert_ends_on_an_idle_link() {
    flood_then_idle('q', &["--backend", "pcap"]);
}

#[test]
fn missing_privilege_names_cap_net_raw_and_setcap() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("note: skipping the privilege test: {why}");
        return;
    }
    // As root, drop to `nobody` with no capabilities to see what an unprivileged user sees.
    let Ok(out) = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_floodwatch"))
        .args(["live", "lo"])
        .output()
    else {
        eprintln!("note: skipping the privilege test: `setpriv` is not installed");
        return;
    };
    let err = stderr(&out);
    if err.contains("Permission denied") && !err.contains("CAP_NET_RAW") {
        eprintln!("note: skipping the privilege test: nobody cannot run the test binary: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_NET_RAW"), "{err}");
    assert!(
        err.contains("setcap cap_net_raw,cap_net_admin=eip /"),
        "{err}"
    );
}

/// sFlow from pmacctd's sfprobe on the victim's side of the veth, sampling 1:`rate`, into
/// `collect --listen` in the same namespace: a SYN flood of 50 000 packets/s for 2 s after 1 s of
/// 1 000 packets/s of benign traffic, sent by tcpreplay at the capture's own pace (as far as the
/// machine keeps it). Returns (ms from the flood's first packet to the start event, packets the
/// samples represent, packets sent), or None when skipped.
fn sflow_on_veth(tag: char, rate: u32) -> Option<(f64, u64, u64)> {
    if let Some(why) = missing_prerequisite() {
        eprintln!("note: skipping the live sFlow test: {why}");
        return None;
    }
    if !Command::new("sh")
        .args(["-c", "command -v pmacctd"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::env::var_os("FLOODWATCH_REQUIRE_EXPORTERS").is_none(),
            "pmacctd is not installed (Debian package pmacct)"
        );
        eprintln!("note: skipping the live sFlow test: pmacctd is not installed");
        return None;
    }
    let net = TestNet::create(tag);
    sh(&["ip", "-n", &net.receiver_ns, "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let capture = common::synth(
        dir.path(),
        "syn-flood",
        &[
            "--victim",
            VICTIM,
            "--dst-mac",
            &net.receiver_mac(),
            "--src-mac",
            "02:00:00:00:00:01",
            "--duration",
            "3s",
            "--attack-start",
            "1s",
            "--attack-duration",
            "2s",
            "--attack-pps",
            "50000",
            "--background-pps",
            "1000",
            "--min-size",
        ],
    );
    let listen = "127.0.0.1:6343";
    let mut fw = Floodwatch::start_with(
        &net,
        &["collect", "--listen", listen, "--status-interval", "0"],
        "collecting telemetry on",
    );
    let conf = dir.path().join("sfprobe.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_interface: {}\nplugins: sfprobe\n\
             sfprobe_receiver: {listen}\nsampling_rate: {rate}\n",
            net.receiver_if
        ),
    )
    .unwrap();
    let mut probe = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.receiver_ns,
            "timeout",
            "60",
            "pmacctd",
            "-f",
        ])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start pmacctd");
    // pmacctd opens its capture in well under this
    std::thread::sleep(Duration::from_secs(2));
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let out = Command::new("ip")
        .args(["netns", "exec", &net.sender_ns, "tcpreplay", "-q"])
        .args(["-i", &net.sender_if])
        .arg(&capture)
        .output()
        .expect("cannot run tcpreplay");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "tcpreplay failed: {text}");
    let sent = word_after(&text, "Actual:").expect("tcpreplay's packet count");
    let mut events = Vec::new();
    fw.wait_event(&mut events, |e| is_victim_syn_flood(e, "start"));
    // pmacctd flushes what it holds within a second or so
    std::thread::sleep(Duration::from_secs(2));
    let _ = probe.kill();
    let _ = probe.wait();
    let stderr = fw.interrupt(&mut events);
    let start = victim_event(&events, "start").expect("start event");
    let at = common::rfc3339_ns(start["ts"].as_str().unwrap_or_default());
    // the flood's first packet left tcpreplay one second (of capture time) after it started, or
    // later if it fell behind: the latency measured is an upper bound
    let latency_ms = (at as f64 - (t0 as f64 + 1e9)) / 1e6;
    let represented = stderr
        .lines()
        .find(|l| l.contains("packets represented"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    eprintln!(
        "sFlow 1:{rate}: start {latency_ms:.0} ms after the flood's first packet; {represented} \
         packets represented for {sent} sent; tcpreplay: {}\n{stderr}",
        text.lines()
            .find(|l| l.contains("Rated"))
            .unwrap_or("")
            .trim()
    );
    assert!(stderr.contains(&format!("sampling 1:{rate}")), "{stderr}");
    Some((latency_ms, represented, sent))
}

/// Bounded in CI (the machine may be busy); docs/performance.md has the latency on a quiet one.
#[test]
fn sflow_from_pmacctd_on_veth_alerts_and_estimates_the_packets_at_1_in_100() {
    check_sflow_on_veth('s', 100, 2000.0, 0.9..1.1);
}

#[test]
fn sflow_from_pmacctd_on_veth_alerts_and_estimates_the_packets_at_1_in_1000() {
    check_sflow_on_veth('t', 1000, 3000.0, 0.8..1.2);
}

/// [`sflow_on_veth`] at 1 in `rate`: the alert starts under `max_latency_ms` after the flood, and
/// the packets represented over those sent are within `ratio` (skipped where it cannot run).
fn check_sflow_on_veth(tag: char, rate: u32, max_latency_ms: f64, ratio: Range<f64>) {
    let Some((latency_ms, represented, sent)) = sflow_on_veth(tag, rate) else {
        return;
    };
    assert!(
        latency_ms < max_latency_ms,
        "start {latency_ms:.0} ms after the flood"
    );
    assert!(
        ratio.contains(&(represented as f64 / sent as f64)),
        "{represented} represented for {sent} sent"
    );
}

/// `--user nobody`: after the ring is open the process holds no id of root and no capability,
/// still captures the flood, checkpoints `--state` into a directory only nobody can write, and
/// runs the alert hook as nobody.
#[test]
fn afpacket_as_nobody_captures_checkpoints_and_runs_hooks_unprivileged() {
    use std::os::unix::fs::PermissionsExt;
    if let Some(why) = missing_prerequisite() {
        eprintln!("note: skipping the live capture test: {why}");
        return;
    }
    let Some((uid, gid)) = nobody_ids() else {
        eprintln!("note: skipping the --user test: no user `nobody`");
        return;
    };
    let net = TestNet::create('u');
    let dir = tempfile::tempdir().unwrap();
    // nobody may enter the test's directory, and write only its own
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let own = dir.path().join("nobody");
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).unwrap();
    let state = own.join("state.json");
    let hook_out = own.join("hook.out");
    let capture = flood_capture(dir.path(), &net.receiver_mac());
    let hook = format!("id -u >> {}", hook_out.display());
    let mut fw = Floodwatch::start(
        &net,
        &[
            "--status-interval",
            "0",
            "--user",
            "nobody",
            "--state",
            arg(&state),
            "--state-interval",
            "1s",
            "--on-alert",
            &hook,
        ],
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", fw.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let id = uid.to_string();
    assert_eq!(field("Uid:"), [id.as_str(); 4].join(" "), "{status}");
    let g = gid.to_string();
    assert_eq!(field("Gid:"), [g.as_str(); 4].join(" "), "{status}");
    for cap in ["CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(field(cap), "0000000000000000", "{cap} in {status}");
    }
    assert_eq!(field("NoNewPrivs:"), "1");
    let (sent, _) = send_flood(&net, &capture);
    let mut events = Vec::new();
    fw.wait_event(&mut events, |e| is_victim_syn_flood(e, "start"));
    fw.wait_stderr("state checkpointed to");
    let stderr = fw.interrupt(&mut events);
    assert!(stderr.contains("running as user nobody"), "{stderr}");
    assert_accounted(&stderr, sent);
    let meta = std::fs::metadata(&state).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), uid, "the state file was written by nobody");
    let f: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    // (the flood's keys learn nothing while in alert: only the file's being there and whole counts)
    assert_eq!(f["format"], "floodwatch-baselines");
    let ran_as = std::fs::read_to_string(&hook_out).unwrap();
    assert!(
        !ran_as.is_empty() && ran_as.lines().all(|l| l == id),
        "hook ran as {ran_as:?}"
    );
}

/// The uid and gid of `nobody`, if the system has it.
fn nobody_ids() -> Option<(u32, u32)> {
    let out = Command::new("id").arg("nobody").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let num = |label: &str| word_after(&text.replace(['(', '='], " "), label);
    Some((num("uid")? as u32, num("gid")? as u32))
}

/// SIGHUP: a config that changes what cannot change is rejected and the running one kept; a good
/// one applies at once (lower floors: the next flood alerts) without ending an open alert; the
/// `--output` file is reopened after a rename (log rotation).
#[test]
fn afpacket_sighup_reloads_the_config_and_reopens_the_output() {
    let Some((net, dir, capture)) = veth_and_flood('y', "live capture test") else {
        return;
    };
    let config = dir.path().join("fw.toml");
    let alerts = dir.path().join("alerts.jsonl");
    let rotated = dir.path().join("alerts.jsonl.1");
    // floors far above the flood: nothing alerts
    std::fs::write(&config, "[detection]\nmin_pps = 10000000\n").unwrap();
    let mut fw = Floodwatch::start(
        &net,
        &[
            "--status-interval",
            "0",
            "--config",
            arg(&config),
            "--output",
            arg(&alerts),
        ],
    );
    let hup = |fw: &Floodwatch| sh(&["kill", "-HUP", &fw.child.id().to_string()]);
    send_flood(&net, &capture);
    std::thread::sleep(Duration::from_millis(500));
    assert!(read_events(&alerts).is_empty(), "alerted over its floors");

    std::fs::write(&config, "[detection]\nwindow = \"2s\"\n").unwrap();
    hup(&fw);
    fw.wait_stderr("SIGHUP: rejected");
    assert!(fw.stderr_seen.last().unwrap().contains("window"));
    std::fs::write(&config, "[detection]\nmin_pps = 1000\n").unwrap();
    hup(&fw);
    fw.wait_stderr("SIGHUP: reloaded");
    assert!(
        fw.stderr_seen.last().unwrap().contains("floors"),
        "{:?}",
        fw.stderr_seen
    );
    std::fs::rename(&alerts, &rotated).unwrap();
    hup(&fw);
    fw.wait_stderr("SIGHUP: reopened --output");

    send_flood(&net, &capture);
    let start = wait_for_event(&alerts, |e| is_victim_syn_flood(e, "start"));
    // another reload while the alert is open: it stays open
    std::fs::write(&config, "[detection]\nmin_pps = 1000\nfactor = 4\n").unwrap();
    hup(&fw);
    fw.wait_stderr("SIGHUP: reloaded");
    let stderr = fw.interrupt(&mut Vec::new());
    let events = read_events(&alerts);
    let starts = events
        .iter()
        .filter(|e| is_victim_syn_flood(e, "start"))
        .count();
    assert_eq!(starts, 1, "{events:?}");
    let end = victim_event(&events, "end").unwrap_or_else(|| panic!("no end: {events:?}"));
    assert_eq!(end["id"], start["id"]);
    assert_eq!(
        end["reason"], "shutdown",
        "the reload ended the alert: {end}"
    );
    assert!(read_events(&rotated).is_empty());
    assert!(stderr.contains("reloaded"), "{stderr}");
}

/// The alert events in `path` (none if it does not exist).
fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect()
}

/// Waits (at most 30 s) for an event matching `want` in `path`.
fn wait_for_event(path: &Path, want: impl Fn(&Value) -> bool) -> Value {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = read_events(path).into_iter().find(|e| want(e)) {
            return e;
        }
        assert!(
            std::time::Instant::now() < until,
            "no such event in {}: {:?}",
            path.display(),
            read_events(path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
