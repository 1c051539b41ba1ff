//! Helpers shared by the integration tests: run the real binary, make synth captures, read alerts.

#![allow(dead_code)]

pub mod fixtures;
pub mod nats_server;
pub mod secure_nats;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The floodwatch binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_floodwatch"))
}

/// Runs floodwatch with `args`, returning its output (never panics on a non-zero exit).
pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .output()
        .expect("cannot run the floodwatch binary")
}

/// Runs floodwatch with `args`, which must succeed: panics naming the command line and its stderr.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert_ok(&out, format_args!("floodwatch {}", args.join(" ")));
    out
}

/// Starts `cmd` with its stdout and stderr piped (panics naming it when it cannot start).
pub fn spawn_piped(cmd: &mut Command) -> std::process::Child {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Runs `args[0]` with the other arguments, which must succeed: panics naming the command line and
/// its stderr (or why it could not start).
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert_ok(&out, format_args!("{args:?}"));
    out
}

/// Panics unless `out` is a success, saying `what` (the command, or what the test was doing) and
/// the command's stderr.
pub fn assert_ok(out: &Output, what: impl std::fmt::Display) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        stderr(out)
    );
}

/// Panics unless `out` is a failure with exit code 1 whose stderr contains every one of
/// `needles`; returns that stderr for further checks.
#[track_caller]
pub fn assert_fails_naming(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    fixtures::assert_contains_all(&err, needles);
    err
}

/// What a command wrote on stderr, as text.
pub fn stderr(out: &Output) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&out.stderr)
}

/// The last line of what a command wrote on stderr (empty when it wrote nothing).
pub fn last_stderr_line(out: &Output) -> String {
    stderr(out).lines().last().unwrap_or_default().to_string()
}

/// A path as a command-line argument (the tests' temporary paths are UTF-8).
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A command line's options written as one string, split at white space: `"--duration 12s"`.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Synth options for scenario tests: 12 s of capture, the attack from 4 s for 5 s.
pub const SHORT: &[&str] = &[
    "--duration",
    "12s",
    "--attack-start",
    "4s",
    "--attack-duration",
    "5s",
];

/// Synth options for a small SYN flood: 4 s of capture, 3 000 SYN/s on 198.51.100.10 from 1 s to
/// 3 s over 200 packets/s of benign traffic.
pub const SMALL_FLOOD: &[&str] = &[
    "--duration",
    "4s",
    "--attack-start",
    "1s",
    "--attack-duration",
    "2s",
    "--attack-pps",
    "3000",
    "--background-pps",
    "200",
];

/// [`synth`] into a new temporary directory, which lives as long as the returned handle.
pub fn temp_synth(scenario: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cap = synth(dir.path(), scenario, extra);
    (dir, cap)
}

/// [`temp_synth`] with the synth options written as one string, then [`replay_events`] of the
/// capture with no options: the directory, the capture and its events.
pub fn synth_and_replay(scenario: &str, options: &str) -> (tempfile::TempDir, PathBuf, Vec<Value>) {
    let (dir, cap) = temp_synth(scenario, &words(options));
    let ev = replay_events(&cap, &[]);
    (dir, cap, ev)
}

/// `floodwatch synth SCENARIO -o DIR/SCENARIO.pcap EXTRA...`; returns the capture path.
pub fn synth(dir: &Path, scenario: &str, extra: &[&str]) -> PathBuf {
    synth_output(dir, scenario, extra).0
}

/// [`synth`], also returning what the command printed (its report is on stderr).
pub fn synth_output(dir: &Path, scenario: &str, extra: &[&str]) -> (PathBuf, Output) {
    let path = dir.join(format!("{scenario}.pcap"));
    let p = path.to_str().unwrap();
    let mut args = vec!["synth", scenario, "-o", p];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "synth {scenario} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (path, out)
}

/// The JSON lines of stdout.
pub fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// How a node that talks to NATS reaches it: TLS and one way to authenticate, each off unless
/// given.
pub const NATS_CLIENT_OPTIONS: &[&str] = &[
    "--nats-tls-ca",
    "--nats-tls-cert",
    "--nats-tls-key",
    "--nats-creds",
    "--nats-nkey",
    "--nats-user",
    "--nats-password-file",
    "--nats-token-file",
];

/// `floodwatch CMD --help`, which must list every option of `options`; its text.
pub fn help_listing(cmd: &str, options: &[&str]) -> String {
    let out = bin()
        .args([cmd, "--help"])
        .output()
        .expect("floodwatch --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    for opt in options {
        assert!(help.contains(opt), "{cmd} --help lacks {opt}");
    }
    help
}

/// The labels synth wrote beside a capture.
pub fn labels(capture: &Path) -> Vec<Value> {
    let mut p = capture.as_os_str().to_owned();
    p.push(".labels.jsonl");
    std::fs::read_to_string(&p)
        .expect("labels file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("label JSON"))
        .collect()
}

/// Parses `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` into nanoseconds since the epoch.
pub fn rfc3339_ns(s: &str) -> u64 {
    let (date, time) = s.trim_end_matches('Z').split_once('T').expect("RFC 3339");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<u64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    // days from civil (Howard Hinnant)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe - 719_468) as u64;
    let frac_ns: u64 = format!("{frac:0<9}")[..9].parse().unwrap();
    (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000_000 + frac_ns
}

/// The value of `frames N` (or another counter) in the stderr summary.
pub fn summary_count(out: &Output, name: &str) -> Option<u64> {
    let err = String::from_utf8_lossy(&out.stderr);
    let mut words = err.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

/// `floodwatch replay --quiet EXTRA... CAP`, which must succeed; its events.
pub fn replay_events(cap: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["replay", "--quiet"];
    args.extend_from_slice(extra);
    args.push(cap.to_str().unwrap());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    events(&out)
}

/// True when `tool --version` runs; otherwise prints a note that its check is skipped.
pub fn tool_runs(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("note: {tool} is not installed; skipping its check");
    }
    ok
}

/// Packets of `pcap` that the BPF `filter` keeps, by `tcpdump -r`.
pub fn tcpdump_count(pcap: &Path, filter: &str) -> usize {
    // as root tcpdump would drop to its own user, who may not read the temporary directory
    let o = Command::new("tcpdump")
        .args(["-Z", "root", "-nn", "-r"])
        .arg(pcap)
        .arg(filter)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tcpdump rejects `{filter}`: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).lines().count()
}

/// Writes `body` (rules, one a line) as the chain `input` of the nftables table `table` to
/// DIR/rules.nft; returns its path.
pub fn nft_table_file(dir: &Path, table: &str, body: &str) -> PathBuf {
    let file = dir.join("rules.nft");
    let text = format!("table inet {table} {{\n  chain input {{\n{body}  }}\n}}\n");
    std::fs::write(&file, text).expect("writing the nftables file");
    file
}

/// `nft --check -f FILE`, which must accept the file: panics saying `what` the file holds and
/// nft's stderr (or that nft cannot be started).
pub fn assert_nft_accepts(file: &Path, what: impl std::fmt::Display) {
    let out = Command::new("nft")
        .arg("--check")
        .arg("-f")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run nft --check -f {}: {e}", file.display()));
    assert_ok(&out, format_args!("nft --check of {what}"));
}

/// `tcpdump -Z root -nn -tt --time-stamp-precision=nano -r FILE`: its output, or why it could not
/// start (not installed).
pub fn tcpdump_nano(file: &Path) -> std::io::Result<Output> {
    // as root tcpdump would drop to its own user, who may not read the temporary directory
    Command::new("tcpdump")
        .args([
            "-Z",
            "root",
            "-nn",
            "-tt",
            "--time-stamp-precision=nano",
            "-r",
        ])
        .arg(file)
        .output()
}

/// Replays `cap` with `base` options then each of `layouts` (options in one string) in turn: each
/// run must succeed and print what `reference` printed.
pub fn assert_layouts_print(reference: &Output, base: &[&str], layouts: &[&str], cap: &str) {
    for layout in layouts {
        let args = words(layout);
        let mut a = base.to_vec();
        a.extend_from_slice(&args);
        a.push(cap);
        let out = run_ok(&a);
        assert!(
            out.stdout == reference.stdout,
            "{args:?} differs from --threads 1"
        );
    }
}

/// True when this process runs as root (its effective user id is 0).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// Asserts that tcpdump compiles the BPF filter `bpf` for the link type of `pcap` (`tcpdump -d`);
/// `what` names the filter's origin in the panic message.
pub fn assert_bpf_compiles(pcap: &Path, bpf: &str, what: impl std::fmt::Display) {
    // as root tcpdump would drop to its own user, who may not read the temporary directory
    let o = Command::new("tcpdump")
        .args(["-Z", "root", "-d", "-r"])
        .arg(pcap)
        .arg(bpf)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tcpdump: {e}"));
    assert_ok(
        &o,
        format_args!("{what}: BPF `{bpf}` does not compile: tcpdump -d"),
    );
}

/// `nft --check` works here (nft installed and allowed to open its netlink socket).
pub fn nft_usable(dir: &Path) -> bool {
    let probe = dir.join("probe.nft");
    std::fs::write(
        &probe,
        "table inet fw_probe {\n  chain c {\n    ip daddr 192.0.2.1 drop\n  }\n}\n",
    )
    .unwrap();
    match Command::new("nft")
        .arg("--check")
        .arg("-f")
        .arg(&probe)
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "note: `nft --check` cannot run here ({}); skipping the nftables check",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(_) => {
            eprintln!(
                "note: nft is not installed (Debian package nftables); skipping the nftables check"
            );
            false
        }
    }
}

/// The number of charts a report page declares (its `floodwatch-charts` meta tag).
pub fn charts_declared(html: &str) -> usize {
    let tag = "name=\"floodwatch-charts\" content=\"";
    let at = html.find(tag).expect("no floodwatch-charts meta tag") + tag.len();
    html[at..at + html[at..].find('"').unwrap()]
        .parse()
        .unwrap()
}

/// A signature scenario of synth: its name, its capture and the start event of its `dst_host` alert.
pub type SignatureStart = (&'static str, PathBuf, Value);

/// [`signature_scenario_starts`] in a new temporary directory (living as long as the returned
/// handle) for checks that count packets with tcpdump; None, with a note, without tcpdump.
pub fn signature_scenario_starts_for_tcpdump() -> Option<(tempfile::TempDir, Vec<SignatureStart>)> {
    if !tool_runs("tcpdump") {
        return None;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let starts = signature_scenario_starts(dir.path());
    Some((dir, starts))
}

/// The signature scenarios of synth, each written to `dir` and replayed (a small site's floors
/// for the ACK flood, under the 30 000/s other-TCP floor): the scenario, its capture and the start
/// event of its `dst_host` alert (panics naming the scenario when there is none).
pub fn signature_scenario_starts(dir: &Path) -> Vec<SignatureStart> {
    let scenarios: [(&str, &str, &[&str]); 3] = [
        ("sig-syn-flood", "syn_flood", &[]),
        ("sig-udp-flood", "udp_flood", &[]),
        ("sig-ack-flood", "tcp_flood", &["--min-pps", "100"]),
    ];
    scenarios
        .into_iter()
        .map(|(scenario, class, extra)| {
            let cap = synth(
                dir,
                scenario,
                &[
                    "--duration",
                    "16s",
                    "--attack-start",
                    "8s",
                    "--attack-duration",
                    "4s",
                    "--attack-pps",
                    "5000",
                    "--background-pps",
                    "500",
                ],
            );
            let ev = replay_events(&cap, extra);
            let start = ev
                .iter()
                .find(|e| e["event"] == "start" && e["scope"] == "dst_host" && e["class"] == class)
                .unwrap_or_else(|| panic!("{scenario}: no {class} start: {ev:#?}"))
                .clone();
            (scenario, cap, start)
        })
        .collect()
}

/// In the signature scenarios, legitimate clients are all in 100.64.0.0/16 and send to the
/// victim's attacked port; attack sources never are. The victim's own replies are in neither.
pub const SIG_LEGIT: &str = "src net 100.64.0.0/16 and dst host 198.51.100.10";
pub const SIG_ATTACK: &str = "not src net 100.64.0.0/16 and dst host 198.51.100.10";

/// Asserts that a filter of `scenario` matched at least 95 % of its attack's packets and at most 1 %
/// of the legitimate ones, given [`filter_matches`]'s counts.
pub fn assert_takes_the_attack_spares_the_customers(
    scenario: &str,
    ((att, att_all), (leg, leg_all)): ((usize, usize), (usize, usize)),
) {
    assert!(
        att as f64 >= 0.95 * att_all as f64,
        "{scenario}: {att}/{att_all} attack"
    );
    assert!(
        leg as f64 <= 0.01 * leg_all as f64,
        "{scenario}: {leg}/{leg_all} legitimate"
    );
}

/// How many packets of a signature scenario's capture the tcpdump `filter` matches:
/// ((attack matched, attack), (legitimate matched, legitimate)).
pub fn filter_matches(cap: &Path, filter: &str) -> ((usize, usize), (usize, usize)) {
    let matched = |who: &str| tcpdump_count(cap, &format!("({filter}) and {who}"));
    (
        (matched(SIG_ATTACK), tcpdump_count(cap, SIG_ATTACK)),
        (matched(SIG_LEGIT), tcpdump_count(cap, SIG_LEGIT)),
    )
}
