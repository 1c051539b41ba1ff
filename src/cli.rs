//! What the user typed: the clap definition of every subcommand and option. Doc comments are the help.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, Args, Parser, Subcommand, ValueEnum};
pub use floodwatch::config::parse_duration;

mod parse;
pub use parse::{
    parse_listen, parse_mac, parse_positive_duration, parse_size, parse_speed, parse_start,
};

/// Network flood (DoS/DDoS) detector: replays captures or watches traffic, learns what is normal for
/// every host and subnet, and writes an alert as one JSON line the moment a flood starts.
#[derive(Debug, Parser)]
#[command(name = "floodwatch", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The exit codes, shown at the end of the main and the replay help (a macro so `concat!` takes it).
macro_rules! exit_status {
    () => {
        "
Exit status:
  0  success (also when stdout is closed early, as by `| head`)
  1  error: unreadable or corrupt input, unwritable output; the message names the file and the fix,
     and the alerts for what was read before the error have been written
  2  bad usage (unknown option, invalid value)"
    };
}

const EXAMPLES: &str = concat!(
    "Examples:
  floodwatch replay captures/syn-flood.pcap
  floodwatch replay --format text day1.pcapng day2.pcap
  tcpdump -i eth0 -w - | floodwatch replay -
  floodwatch replay attack.pcap | jq 'select(.event==\"start\") | {key, class, pps}'
  floodwatch synth syn-flood -o /tmp/syn.pcap --attack-pps 50000
  sudo floodwatch live eth0
  floodwatch completions bash > ~/.local/share/bash-completion/completions/floodwatch
  floodwatch man > floodwatch.1 && man ./floodwatch.1

Docs: README.md, docs/alerts.md (every output field), docs/tuning.md, docs/architecture.md.
",
    exit_status!()
);

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay capture files (pcap or pcapng, told apart by content; `-` reads stdin) through the
    /// detector, as fast as possible, and write alerts. Several files replay in order, as one stream.
    #[command(after_help = concat!("Examples:
  floodwatch replay attack.pcap
  floodwatch replay --threads 1 --format text a.pcap b.pcapng
  floodwatch replay --min-pps 500 --subnet-v4 22 attack.pcap
  cat x.pcap | floodwatch replay -
  floodwatch replay --metrics-listen 9464 --on-alert ./notify.sh --stats-interval 10s x.pcap
  floodwatch replay -q -o alerts.jsonl attack.pcap

Alerts go to stdout (or --output), one JSON object per line (docs/alerts.md); the summary, the
progress bar (when stderr is a terminal) and errors go to stderr. Time is packet time: the same
capture gives the same alerts at any speed and thread count. Tuning: docs/tuning.md.
", exit_status!()))]
    Replay(Box<ReplayArgs>),
    /// Watch a network interface live and write alerts as floods start and end. Needs root or the
    /// CAP_NET_RAW capability (docs/live.md). Ctrl-C stops: open alerts end with reason `shutdown` and
    /// the summary (with kernel drops) is printed.
    #[command(after_help = "Examples:
  sudo floodwatch live eth0
  sudo setcap cap_net_raw,cap_net_admin=eip $(command -v floodwatch); floodwatch live eth0
  floodwatch live --ring-blocks 256 --status-interval 30s eth0 | jq -c 'select(.event==\"start\")'
  floodwatch live --backend pcap --filter 'dst net 198.51.100.0/24' eth0

Packet timestamps drive the windows; during silence a clock tick advances time so alerts end.

As a service (docs/live.md, contrib/floodwatch.service):
  floodwatch live eth0 --user floodwatch --state /var/lib/floodwatch/state.json \
      --config /etc/floodwatch/floodwatch.toml --output /var/log/floodwatch/alerts.jsonl
  kill -HUP PID    # reload --config (floors, factor, prefixes, networks), reopen --output
  kill -TERM PID   # end open alerts, write the state, print the summary")]
    Live(Box<LiveArgs>),
    /// Detect floods from flow telemetry: sFlow v5, NetFlow v5/v9 and IPFIX datagrams exported by
    /// routers and switches, received on UDP sockets (`--listen`) or read from captures of them
    /// (`--pcap`). Datagrams are recognised by their header, whatever the port. Same detection
    /// options, outputs and summary as `live` (docs/flows.md).
    #[command(after_help = "Examples:
  floodwatch collect --listen 0.0.0.0:6343 --listen [::]:2055
  floodwatch collect --listen 0.0.0.0:2055 --allow 192.0.2.0/24 --metrics-listen 9464
  floodwatch collect --pcap exports.pcap --port 2055
  softflowd -r attack.pcap -n 127.0.0.1:2055 -v 10   # exporting a capture as IPFIX

Each sFlow sample stands for `sampling_rate` packets; each flow record for its packets times the
sampling rate its exporter announced. The summary lists every exporter with its sampling rate and
the samples it lost.")]
    Collect(Box<CollectArgs>),
    /// Write an incident report: one self-contained HTML page (charts as inline SVG, no scripts, no
    /// network fetches) with the traffic over time, every alert on it, each alert's rate against its
    /// learned baseline and threshold, its sources, ports and the rules to block it. From capture
    /// files (replayed with the same detection options as `replay`) or from a recording made by
    /// `replay --record`.
    #[command(after_help = "Examples:
  floodwatch report attack.pcap -o attack.html
  floodwatch report --min-pps 500 day1.pcap day2.pcap -o incident.html --alerts alerts.jsonl
  floodwatch replay --record run.json attack.pcap > alerts.jsonl; floodwatch report --from run.json -o run.html

The page reads at 1280 px, follows the system's light or dark theme, and shows every time in UTC
with its date. With many alerts, the --max-detailed most severe are drawn in full and the table
lists up to 2,000 (the most severe, in order of start; the page says how many it leaves out), so
10,000 alerts make a page of about 1.5 MB. docs/report.md describes the page.
Exit status: 0 success (also when the capture holds no alert: the page says so), 1 error (a
truncated capture still gets its report, saying where reading stopped), 2 bad usage.")]
    Report(Box<ReportArgs>),
    /// Run a detector node of a cluster: consume the partitions given from NATS (published there by
    /// `replay`, `live` or `collect` with --publish) and detect over them with the same engine and
    /// outputs as one machine. A second `detect` with the same partitions is a standby: it takes
    /// over within seconds when the first dies, from its last checkpoint (docs/scaling.md).
    #[command(after_help = "Examples:
  nats-server -js -sd /var/lib/nats &     # JetStream on (Debian: apt install nats-server)
  floodwatch detect --nats nats://127.0.0.1:4222 --partitions 0-3
  floodwatch detect --nats nats://127.0.0.1:4222 --partitions 4-7 --on-alert ./notify.sh
  floodwatch live eth0 --publish nats://127.0.0.1:4222          # an ingest node
  floodwatch replay --publish nats://127.0.0.1:4222 day.pcap    # another one

Every node of a cluster (--cluster, default `floodwatch`) uses the same --subnet-v4/--subnet-v6;
the first one to start fixes the partition count (--cluster-partitions, default 8). Alerts are
written here as by `replay`, and also published on fw.CLUSTER.events.GROUP.
Exit status: 0 stopped (Ctrl-C, or --exit-at-end), 1 error (NATS unreachable, lease lost,
checkpoint unwritable: the message says which and what to do), 2 bad usage.")]
    Detect(Box<DetectNodeArgs>),
    /// Write a deterministic synthetic capture (classic pcap, Ethernet) of a named scenario, for tests,
    /// demos and benchmarks. The expected alerts are written to FILE.labels.jsonl.
    #[command(after_help = "Examples:
  floodwatch synth syn-flood -o syn.pcap
  floodwatch synth dns-reflection -o dns.pcap --duration 10s --attack-start 3s --attack-pps 5000
  floodwatch synth spoofed-sources -o spoofed.pcap --sources 100000 --min-size
  floodwatch synth syn-burst -o burst.pcap --attack-pps 25000 --attack-duration 40ms
  floodwatch synth learned-floor -o floor.pcap --duration 40m --attack-start 35m \\
      --attack-duration 30s --background-pps 100 --attack-pps 200
  floodwatch synth sources-at-floor -o srcs.pcap --attack-pps 4800   # 4 sources x 1200 pps
  floodwatch synth benign-day -o day.pcap --duration 24m
  floodwatch synth sig-syn-flood -o sig.pcap   # legit clients: src net 100.64.0.0/16 only
  floodwatch synth http-flood -o hoic.pcap     # 90 s: the site alone, then 50 requests/s from 30 s
  floodwatch synth slowloris -o slow.pcap --sources 5 --attack-pps 100   # 1000 connections

Exit status: 0 success, 1 the file cannot be written, 2 bad usage.")]
    Synth(SynthArgs),
    /// Print the commented default config file (TOML) to use with --config.
    #[command(after_help = "Examples:
  floodwatch config --default > floodwatch.toml
  floodwatch replay --config floodwatch.toml attack.pcap

Exit status: 0 success, 2 bad usage.")]
    Config(ConfigArgs),
    /// Print a shell completion script to stdout.
    #[command(after_help = "Examples:
  floodwatch completions bash > ~/.local/share/bash-completion/completions/floodwatch
  floodwatch completions zsh > ~/.zfunc/_floodwatch
  floodwatch completions fish > ~/.config/fish/completions/floodwatch.fish

Exit status: 0 success, 2 bad usage.")]
    Completions(CompletionsArgs),
    /// Print a man page (roff), generated from this help, to stdout.
    #[command(after_help = "Examples:
  floodwatch man > floodwatch.1 && man ./floodwatch.1
  floodwatch man replay > floodwatch-replay.1

Exit status: 0 success, 2 bad usage.")]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print the default configuration, every setting commented with its meaning and default.
    #[arg(long, required = true)]
    pub default: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A subcommand's page (floodwatch-SUBCOMMAND, e.g. `replay`) instead of the main one.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

#[derive(Debug, Args)]
#[command(mut_args(with_help(&[
    (
        "load_baseline",
        "Start from the baselines in FILE (made by --save-baseline on normal traffic) instead of \
         learning from nothing. Checked before any input is read",
    ),
    (
        "save_baseline",
        "At the end, write every key's learned baseline to FILE (versioned JSON), to start warm \
         next time with --load-baseline",
    ),
])))]
pub struct ReplayArgs {
    /// Capture files to replay in order; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub detect: DetectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Pace the replay at the speed it was captured (sleeping between packets) instead of as fast as
    /// possible; the alerts are the same either way.
    #[arg(long)]
    pub realtime: bool,
    /// With --realtime: play FACTOR times faster than captured (e.g. 60 plays an hour in a
    /// minute), for soak tests of what a long run does to memory and state; still the same alerts.
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, requires = "realtime", value_parser = parse_speed)]
    pub speed: f64,
    #[command(flatten)]
    pub baseline: BaselineArgs,
    /// Decode threads: a reading thread only copies frames out of the file and N threads decode
    /// them, so reading is not capped by one core; 0 decodes on the reading thread. The alerts are
    /// the same for any N [default: 0 up to 4 cores (at the default --threads it gains nothing
    /// there: docs/performance.md), else a quarter of the cores, at most 8].
    ///
    /// With --evidence-dir the file is read and decoded on one thread (the evidence copy needs the
    /// frames), whatever this says.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=64))]
    pub decode_threads: Option<u16>,
    /// Also record what an incident report draws (the traffic over time, every alert with its
    /// key's rate, baseline and threshold) to FILE (JSON); `floodwatch report --from FILE` makes
    /// the page. The alerts are the same with or without it.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub integrations: IntegrationArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Capture files to replay in order (pcap or pcapng; `-` reads standard input).
    #[arg(
        value_name = "CAPTURE",
        required_unless_present = "from",
        conflicts_with = "from"
    )]
    pub files: Vec<PathBuf>,
    /// Make the report from a recording written by `replay --record` instead of a capture.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// The HTML file to write (written whole to a temporary file, then renamed).
    #[arg(long, short, value_name = "FILE", default_value = "report.html")]
    pub output: PathBuf,
    /// Also write the alert events (JSON lines, as `replay` writes them) to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "from")]
    pub alerts: Option<PathBuf>,
    /// Also write the recording the report was made from (as `replay --record` does).
    #[arg(long, value_name = "FILE", conflicts_with = "from")]
    pub record: Option<PathBuf>,
    /// Alerts drawn in full (the most severe); every alert is in the table.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=500))]
    pub max_detailed: u32,
    /// A title for the page [default: the input's file names].
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Start from the baselines in FILE (made by --save-baseline) instead of learning from nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "from")]
    pub load_baseline: Option<PathBuf>,
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Attack samples (pcap per alert) while replaying; the page links each alert's file.
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    /// No summary on stderr (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Running with less than root.
#[derive(Debug, Args)]
pub struct PrivilegeArgs {
    /// Once the capture sockets (or listeners) and the metrics endpoint are open, run as USER: as
    /// root, switch user, group and supplementary groups for good; as USER already (systemd
    /// User=), shed the capabilities given to capture. Either way no capability is kept (reading
    /// an open socket needs none), no program started later can gain one (no_new_privs), and
    /// alert hooks run as USER. The --state and --output directories must be writable by USER.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// With --user: the group to run as [default: USER's primary group].
    #[arg(long, value_name = "GROUP", requires = "user")]
    pub group: Option<String>,
}

/// The options of a run that detects here (`replay`, `live`, `collect`), borrowed together: each
/// step of such a run (its settings, its integrations, its end) takes them as one.
#[derive(Debug, Clone, Copy)]
pub struct RunArgs<'a> {
    pub detect: &'a DetectArgs,
    pub output: &'a OutputArgs,
    pub baseline: &'a BaselineArgs,
    pub integrations: &'a IntegrationArgs,
}

/// `run()` for the arguments of each command that detects here (they name the groups alike).
macro_rules! impl_run_args {
    ($($args:ty),*) => {$(
        impl $args {
            /// The options every run that detects here has.
            pub fn run(&self) -> RunArgs<'_> {
                RunArgs {
                    detect: &self.detect,
                    output: &self.output,
                    baseline: &self.baseline,
                    integrations: &self.integrations,
                }
            }
        }
    )*};
}

impl_run_args!(ReplayArgs, LiveArgs, CollectArgs);

/// Learned baselines: where a run starts from and where it leaves them. (`replay` and `live` word
/// the help of the two files for what they are: see their `with_help`.)
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Start from the baselines in FILE (made by --save-baseline) instead of learning from nothing.
    #[arg(long, value_name = "FILE")]
    pub load_baseline: Option<PathBuf>,
    /// At the end, write every key's learned baseline to FILE, to start warm next time.
    #[arg(long, value_name = "FILE")]
    pub save_baseline: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArgs,
}

/// Learned baselines kept across restarts.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Keep the learned baselines in FILE across restarts: loaded at start when it exists, written
    /// every --state-interval and when the run ends, atomically (a crash, even kill -9, leaves the
    /// last checkpoint whole). A file that cannot be used is moved aside to FILE.corrupt-TIME with
    /// a warning and the run starts cold. Same format as --save-baseline: --load-baseline reads
    /// it, and when both are given a usable state file wins.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// How often to checkpoint --state: wall time for `live` and `collect --listen`, packet time
    /// for `replay` and `collect --pcap`. A crash loses at most this much learning.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_positive_duration, requires = "state")]
    pub state_interval: Duration,
}

/// Attack samples: a pcap file of each alert's packets.
#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// For every alert, write DIR/ID.pcap (the alert id made file-safe: `/` → `_`, `:` → `-`) with
    /// packets of its scope and key: the last --evidence-before before the start and the first
    /// --evidence-after from it, with their original timestamps (nanosecond pcap), lengths and link
    /// type, for tcpdump, tshark or Wireshark. The start event names the file in its `evidence`
    /// field; the file is written as DIR/.ID.pcap.tmp and renamed when complete (M packets, the
    /// alert's end, or the end of the run). A separate thread writes them and never slows
    /// detection: frames it cannot take in time are dropped from the sample and counted in the
    /// summary. DIR is created if needed; it must be writable (checked before any input is read).
    #[arg(long, value_name = "DIR")]
    pub evidence_dir: Option<PathBuf>,
    /// With --evidence-dir: packets of the alert's key before its start, at most. They come from
    /// the reader's look-back of its latest frames (at least 65 536): a key that is a small share of
    /// a fast stream may have fewer there (docs/alerts.md).
    #[arg(long, value_name = "N", default_value_t = floodwatch::evidence_pcap::DEFAULT_BEFORE, requires = "evidence_dir")]
    pub evidence_before: usize,
    /// With --evidence-dir: packets of the alert's key from its start on, at most.
    #[arg(long, value_name = "M", default_value_t = floodwatch::evidence_pcap::DEFAULT_AFTER, requires = "evidence_dir")]
    pub evidence_after: usize,
    /// With --evidence-dir: bytes all evidence files of the run may take (suffixes K, M, G). The
    /// earliest alerts keep their files; a file stops growing at the limit, and later alerts get
    /// none (counted in the summary, no `evidence` field).
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size, requires = "evidence_dir")]
    pub evidence_max_bytes: usize,
}

impl EvidenceArgs {
    /// The evidence settings, when --evidence-dir is given.
    pub fn config(&self) -> Option<floodwatch::evidence_pcap::EvidenceConfig> {
        self.evidence_dir
            .as_ref()
            .map(|dir| floodwatch::evidence_pcap::EvidenceConfig {
                dir: dir.clone(),
                before: self.evidence_before,
                after: self.evidence_after,
                max_bytes: self.evidence_max_bytes as u64,
            })
    }
}

/// What floodwatch reports to besides its alert output: metrics, an alert hook, stats events.
#[derive(Debug, Args)]
pub struct IntegrationArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (PORT alone listens on 127.0.0.1; nothing
    /// listens unless this is given).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// Keep the metrics endpoint up this long after the input ends (or until Ctrl-C), so the final
    /// counters can be scraped.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, hide = true)]
    pub metrics_linger: Option<Duration>,
    /// Run CMD (with `sh -c`) for every alert event: the JSON line on stdin, FLOODWATCH_EVENT,
    /// _ID, _TS, _SCOPE, _KEY, _CLASS and _PPS in the environment. Never delays detection: events
    /// that find the queue full are dropped for the hook and counted.
    #[arg(long, value_name = "CMD")]
    pub on_alert: Option<String>,
    /// --on-alert commands running at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub on_alert_concurrency: u16,
    /// Kill an --on-alert command (and its process group) still running after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub on_alert_timeout: Duration,
    /// Events waiting for a free --on-alert slot before new ones are dropped.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), hide = true)]
    pub on_alert_queue: u32,
    /// Write a `stats` event (packets, bytes, active alerts) at every multiple of this much
    /// packet time, so a consumer sees the detector is alive [default: none].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub stats_interval: Option<Duration>,
    /// Write a report page (HTML, as `floodwatch report` makes) for every alert when it ends, to
    /// DIR/<alert id>.html: its rate against baseline and threshold, sources, ports, rules. Made by a
    /// thread of its own; never delays detection (pages that find it behind are counted).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    #[command(flatten)]
    pub bgp: BgpArgs,
}

/// Announcements to routers through ExaBGP (docs/mitigation.md).
#[derive(Debug, Args)]
#[command(next_help_heading = "BGP mitigation (ExaBGP)")]
pub struct BgpArgs {
    /// Announce a flowspec rule (RFC 8955/8956) for every alert while it lasts, by writing ExaBGP
    /// API commands to the named pipe PATH that an ExaBGP `process` relays (e.g. `run
    /// /usr/bin/socat stdout pipe:PATH;`). The rule matches the victim and the header fields that
    /// separate the attack from normal traffic (the `flowspec` of the alert's `mitigation`); it is
    /// withdrawn when the alert ends and when floodwatch exits. A missing pipe or one without a
    /// reader is reported, retried and never delays detection. Nothing is announced without it.
    #[arg(long, value_name = "PATH")]
    pub exabgp_pipe: Option<PathBuf>,
    /// What the flowspec rules do: `discard`, or `rate-limit:N` to let through at most N bytes per
    /// second (RFC 8955 traffic-rate, in bytes; 125000 is 1 Mbit/s).
    #[arg(long, value_name = "ACTION", default_value = "discard", value_parser = floodwatch::mitigation::flowspec::FlowAction::parse, requires = "exabgp_pipe")]
    pub flowspec_action: floodwatch::mitigation::flowspec::FlowAction,
    /// Also announce the victim's /32 (/128) with the blackhole community, a remotely triggered
    /// blackhole (RFC 7999): the router drops all its traffic, the good with the bad. Only for
    /// `dst_host` alerts.
    #[arg(long, requires = "exabgp_pipe")]
    pub blackhole: bool,
    /// Next hop of the blackhole routes (one IPv4 and one IPv6 at most; the routers map it to a
    /// discard route) [default: `self`, ExaBGP's own address].
    #[arg(long, value_name = "ADDR", requires = "blackhole")]
    pub blackhole_next_hop: Vec<IpAddr>,
    /// Community of the blackhole routes, ASN:VALUE (repeatable; replaces the default; add
    /// 65535:65281 NO_EXPORT to keep them in your AS) [default: 65535:666].
    #[arg(long, value_name = "ASN:VALUE", requires = "blackhole", value_parser = floodwatch::mitigation::bgp::Blackhole::parse_community)]
    pub blackhole_community: Vec<String>,
    /// Most routes announced at once (each flowspec rule and each blackhole counts one); an alert
    /// whose routes would pass it is not announced, and counted. At most 4096: routers hold a few
    /// thousand flowspec rules, and the routes file beside --state is rewritten on every change.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096), requires = "exabgp_pipe")]
    pub bgp_max_rules: u32,
    /// Never announce anything for a key inside PREFIX (or a subnet holding it), e.g. your
    /// resolvers or the routers themselves (repeatable; added to the config file's
    /// `[mitigation] never_block`) [default: none].
    #[arg(long, value_name = "PREFIX", requires = "exabgp_pipe")]
    pub never_block: Vec<floodwatch::key::Key>,
    /// Announce flowspec rules for source-scope alerts too (matching the attacker's address);
    /// by default only destination alerts are announced.
    #[arg(long, requires = "exabgp_pipe")]
    pub bgp_source_scopes: bool,
    /// Leave the routes announced when floodwatch exits (with --state they are taken over or
    /// withdrawn by the next run).
    #[arg(long, requires = "exabgp_pipe")]
    pub bgp_keep_on_exit: bool,
    /// With --state: routes the last run left announced are announced again at start and kept
    /// this long for an alert on the same key to take them over; the others are then withdrawn.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "exabgp_pipe")]
    pub bgp_restore_hold: Duration,
}

#[derive(Debug, Args)]
#[command(mut_args(with_help(&[(
    "save_baseline",
    "When capture stops, write every key's learned baseline to FILE, to start warm next time",
)])))]
pub struct LiveArgs {
    /// Network interface to watch (e.g. eth0).
    #[arg(value_name = "INTERFACE")]
    pub interface: String,
    #[command(flatten)]
    pub detect: DetectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Capture backend: `afpacket` (Linux TPACKET_V3 ring, no library needed) or `pcap` (libpcap;
    /// needs a build with `--features libpcap`).
    #[arg(long, value_enum, default_value_t = Backend::Afpacket)]
    pub backend: Backend,
    /// BPF filter expression in tcpdump syntax (pcap backend only), e.g. 'dst net 198.51.100.0/24'.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Bytes per ring block (power of two, at least 4K; suffixes K, M). The pcap backend uses
    /// size × blocks as its buffer.
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size)]
    pub ring_block_size: usize,
    /// Blocks in the ring: the ring holds block size × blocks bytes (default 64 MiB).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub ring_blocks: usize,
    /// Do not put the interface in promiscuous mode (see only this host's traffic).
    #[arg(long)]
    pub no_promisc: bool,
    /// Capture threads: N AF_PACKET sockets in one PACKET_FANOUT group, each read and decoded by
    /// its own thread, all feeding the same counter shards. Each socket has its own ring of the
    /// size above. See --capture-spread for when the others get packets. The pcap backend always
    /// reads with one thread [default: 1 on up to 3 cores, else a quarter of the cores, at most 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub capture_threads: Option<u16>,
    /// With several capture threads, when packets go to more than the first socket (whose thread
    /// also routes the others' packets). `when-behind`: only while that thread falls a quarter of
    /// its ring behind, for at least 10 s, and until it waits for packets half the time: a second
    /// thread costs CPU per packet, so it works only when needed. `always`: spread all the time.
    /// Spreading hashes IPv4/IPv6 addresses and ports: both directions of a flow go to the same
    /// socket (between two switches); other packets go to the first.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = CaptureSpread::WhenBehind)]
    pub capture_spread: CaptureSpread,
    #[command(flatten)]
    pub baseline: BaselineArgs,
    #[command(flatten)]
    pub privileges: PrivilegeArgs,
    /// Print a status line (frames, rate, kernel and pipeline drops) on stderr this often, in wall
    /// time; 0 turns it off. (`--stats-interval` writes `stats` events to the alert output.)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub status_interval: Duration,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub integrations: IntegrationArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["listen", "pcap"])))]
pub struct CollectArgs {
    /// UDP address to receive telemetry on (repeatable; IPv4 or IPv6, e.g. 0.0.0.0:6343,
    /// [::]:2055). Packet time is the wall clock at arrival.
    #[arg(long, value_name = "ADDR", conflicts_with = "pcap")]
    pub listen: Vec<SocketAddr>,
    /// Capture files holding exported datagrams (UDP, any port unless --port narrows it); packet
    /// time is the capture's, so the output is the same on every run.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub pcap: Vec<PathBuf>,
    /// With --pcap: only UDP datagrams to this port (repeatable).
    #[arg(long, value_name = "PORT", conflicts_with = "listen")]
    pub port: Vec<u16>,
    /// Only hear exporters inside this prefix (repeatable, e.g. 192.0.2.0/24); others are counted
    /// and dropped.
    #[arg(long, value_name = "PREFIX")]
    pub allow: Vec<floodwatch::key::Key>,
    /// Exporters tracked at once; datagrams from more are counted and dropped (exporters silent
    /// for ten minutes make room).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_exporters: usize,
    /// NetFlow v9 / IPFIX templates kept per exporter (routers use a few dozen at most; each costs
    /// ~170 bytes, so the default caps 10 000 exporters at ~110 MB).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_templates: usize,
    /// Receive buffer of each --listen socket (suffixes K, M): room for bursts of datagrams while
    /// the collector is busy. Beyond net.core.rmem_max only with CAP_NET_ADMIN (root); otherwise
    /// capped by it, with a warning. Datagrams the kernel drops when it is full are counted.
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = parse_size)]
    pub recv_buffer: usize,
    #[command(flatten)]
    pub detect: DetectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub baseline: BaselineArgs,
    #[command(flatten)]
    pub privileges: PrivilegeArgs,
    /// With --listen: print a status line of counters on stderr this often (wall time); 0 turns
    /// it off.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub status_interval: Duration,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub integrations: IntegrationArgs,
}

/// `--publish`: an ingest node of a cluster.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Be an ingest node: publish the decoded packet summaries to NATS at URL
    /// (nats://HOST:PORT or tls://HOST:PORT, JetStream on) for the cluster's `floodwatch detect` nodes, instead of
    /// detecting here. Each summary goes to the partitions of its destination's and its source's
    /// prefix, in batches with this node's packet-time watermark (docs/scaling.md).
    #[arg(long, value_name = "URL", help_heading = "Cluster")]
    pub publish: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// This ingest node's id in the cluster (any number, unique among the ingest nodes, and new
    /// at every start: a detector takes the batches of a reused id for repeats of those it had)
    /// [default: random at every start].
    #[arg(long, value_name = "N", requires = "publish", help_heading = "Cluster")]
    pub node_id: Option<u32>,
    /// Bytes of batches kept while NATS is unreachable (suffixes K, M, G); beyond, the newest are
    /// dropped and counted.
    #[arg(long, value_name = "BYTES", default_value = "256M", value_parser = parse_size, requires = "publish", help_heading = "Cluster")]
    pub publish_buffer: usize,
    /// Summaries per published batch (at most; every tick of packet time flushes, so this bounds
    /// message size, not latency: 10–35 bytes a summary).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=16_384), requires = "publish", help_heading = "Cluster")]
    pub publish_batch: u32,
    /// Admit sources and aggregate here: publish each tick's aggregates per key (what one
    /// machine's router hands its shards) instead of a summary per packet: about a fifth of the
    /// bus's CPU under a flood (docs/scaling.md). Destination keys count exactly as on one
    /// machine, and with one ingest node everything does. With several, each admits source keys by
    /// its own packets and load: a source split over N nodes may count up to about N−1 times the
    /// admission level differently, and under a spoofed flood each node's level follows its own
    /// share of the load. Nodes with and without it may feed one cluster; use the same --config on
    /// the ingest nodes as on the detectors (window, tick, subnets, admission).
    #[arg(long, requires = "publish", help_heading = "Cluster")]
    pub edge_admission: bool,
}

/// Which cluster a node belongs to.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The cluster's name: it names its NATS streams, subjects and buckets (letters, digits, '-',
    /// '_').
    #[arg(
        long,
        value_name = "NAME",
        default_value = "floodwatch",
        help_heading = "Cluster"
    )]
    pub cluster: String,
    /// Partitions of the cluster, when this node is the first and creates it (fixed for the
    /// cluster's life; a node that says otherwise is refused) [default: 8].
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = "Cluster")]
    pub cluster_partitions: Option<u16>,
    /// Bytes of summary batches the bus keeps for detectors that are behind or taking over
    /// (suffixes K, M, G; the oldest go first).
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size, help_heading = "Cluster")]
    pub bus_max_bytes: usize,
    /// Where the bus keeps the batches: `file` (survives a NATS restart) or `memory` (less CPU on
    /// the NATS server; lost if it restarts). The same on every node of a cluster.
    #[arg(long, value_enum, default_value_t = BusStorage::File, help_heading = "Cluster")]
    pub bus_storage: BusStorage,
    /// When this node creates the cluster: keep each partition's batches in a stream of its own,
    /// so that a NATS cluster spreads them over its servers. By default one stream holds every
    /// partition's, which costs the NATS server less CPU (docs/scaling.md). Fixed for the
    /// cluster's life: a node that says so to a cluster created without it is refused.
    #[arg(long, help_heading = "Cluster")]
    pub bus_stream_per_partition: bool,
    #[command(flatten)]
    pub security: NatsSecurityArgs,
}

/// How a node proves itself to NATS and checks the server: TLS and one way to authenticate.
/// Secrets come from files only (never the command line, where `ps` shows them); docs/scaling.md
/// shows a secure deployment.
#[derive(Debug, Args)]
pub struct NatsSecurityArgs {
    /// CA certificate (PEM) that signed the NATS server's certificate: turns TLS on (as a tls://
    /// URL does) and trusts only this CA.
    #[arg(long, value_name = "FILE", help_heading = "NATS security")]
    pub nats_tls_ca: Option<PathBuf>,
    /// This node's client certificate (PEM), for a server that verifies clients (mutual TLS);
    /// with --nats-tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "nats_tls_key",
        help_heading = "NATS security"
    )]
    pub nats_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --nats-tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "nats_tls_cert",
        help_heading = "NATS security"
    )]
    pub nats_tls_key: Option<PathBuf>,
    /// A NATS credentials file (user JWT and nkey seed, as `nsc` writes them).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["nats_nkey", "nats_user", "nats_token_file"], help_heading = "NATS security")]
    pub nats_creds: Option<PathBuf>,
    /// A file holding a user nkey seed (SU...; `nk -gen user`), whose public key the server lists.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["nats_user", "nats_token_file"], help_heading = "NATS security")]
    pub nats_nkey: Option<PathBuf>,
    /// A NATS user name; its password is read from --nats-password-file.
    #[arg(
        long,
        value_name = "NAME",
        requires = "nats_password_file",
        conflicts_with = "nats_token_file",
        help_heading = "NATS security"
    )]
    pub nats_user: Option<String>,
    /// A file holding the password of --nats-user (one line).
    #[arg(
        long,
        value_name = "FILE",
        requires = "nats_user",
        help_heading = "NATS security"
    )]
    pub nats_password_file: Option<PathBuf>,
    /// A file holding the server's authentication token (one line).
    #[arg(long, value_name = "FILE", help_heading = "NATS security")]
    pub nats_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BusStorage {
    File,
    Memory,
}

/// `floodwatch detect`.
#[derive(Debug, Args)]
pub struct DetectNodeArgs {
    /// The NATS server (nats://HOST:PORT, or tls://HOST:PORT for TLS; the servers of a NATS
    /// cluster comma-separated; JetStream on). TLS and credentials: the NATS security options.
    #[arg(long, value_name = "URL")]
    pub nats: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The partitions this detector runs: e.g. 0-7, 3, 0,2,4-5. A running detector with the same
    /// list makes this one its standby.
    #[arg(long, value_name = "LIST")]
    pub partitions: String,
    /// Ingest nodes to hear from before time moves (so every node's start is seen); after
    /// --silence without them, time moves with those heard.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub ingest_nodes: u32,
    /// An ingest node not heard from for this long (wall time) stops holding time back (counted).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration)]
    pub silence: Duration,
    /// Checkpoint the state to the cluster's object store (and acknowledge the batches it
    /// includes) this often. Detection waits while a checkpoint is taken and stored (the summary
    /// shows the longest; saving a million keys takes ~160 ms and ~140 MB); a standby re-reads
    /// at most this much of the bus when it takes over.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration)]
    pub checkpoint_interval: Duration,
    /// The lease's time to live: a standby takes over once the running detector has not renewed
    /// it for this long.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_positive_duration)]
    pub lease_ttl: Duration,
    /// Stop once every ingest node has ended its stream (replays), ending open alerts as a replay
    /// does: for batch runs and tests.
    #[arg(long)]
    pub exit_at_end: bool,
    /// With no checkpoint yet: start from the oldest batch the bus keeps, not the newest.
    #[arg(long)]
    pub from_start: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub integrations: IntegrationArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Afpacket,
    Pcap,
}

/// When a fanout group spreads packets over its sockets (`--capture-spread`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaptureSpread {
    WhenBehind,
    Always,
}

/// Detection and pipeline options shared by every mode. Options the config file can also set have no
/// default here: command line > config file > built-in default (shown in brackets).
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// TOML config file: detection settings, per-signal floors, per-prefix overrides, networks to
    /// ignore or to treat as ours. `floodwatch config --default` prints a commented one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Counter threads (shards); the alerts are the same for any count [default: cores − 1, at
    /// least 1: the reader needs a core of its own].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Packets per batch passed between threads (throughput only: the alerts never depend on it).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536), hide_short_help = true)]
    pub batch_size: u32,
    /// Length of the sliding window rates are measured over, 100ms to 1h (units: ms, s, m, h)
    /// [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub window: Option<Duration>,
    /// How often every key is evaluated, in packet time; must divide --window evenly
    /// [default: 100ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub tick: Option<Duration>,
    /// Prefix length in bits of IPv4 subnet keys (the dst_subnet and src_subnet scopes)
    /// [default: 24].
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=32))]
    pub subnet_v4: Option<u8>,
    /// Prefix length in bits of IPv6 subnet keys [default: 64].
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=128))]
    pub subnet_v6: Option<u8>,
    /// Base floor in packets per second: no key alerts below its floor, whatever its baseline. SYN,
    /// SYN-ACK, ICMP, fragment and reflection floors are PPS; UDP 5×; other TCP 30×; all packets 50×;
    /// bytes 125 000 × PPS bytes/s (1 Gbit/s at the default) [default: 1000].
    #[arg(long, value_name = "PPS")]
    pub min_pps: Option<f64>,
    /// Learned threshold = max(FACTOR × baseline mean, mean + 5σ), once a key has 30 windows of
    /// history (until then only the floors apply); a key alerts above max(floor, learned threshold)
    /// [default: 3].
    #[arg(long, value_name = "FACTOR")]
    pub factor: Option<f64>,
    /// Consecutive evaluations (one per --tick) over threshold before an alert starts [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub trigger: Option<u32>,
    /// Short window: a key whose rate over its last two ticks (200 ms at the default tick) reaches
    /// FACTOR × its threshold, on at least --burst-min-packets packets, alerts at once, without
    /// waiting for --trigger evaluations of the full window [default: 1.5].
    #[arg(long, value_name = "FACTOR")]
    pub burst_factor: Option<f64>,
    /// The least evidence a rate measured over less than a window may rest on (the short window, and
    /// a key whose traffic began less than a window ago, judged on the time it has covered): this
    /// many packets, and for sampled telemetry at least min(N, 10) samples or records [default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub burst_min_packets: Option<u64>,
    /// Learned floors: once a key has --mature-after of history and a signal of it is steady (a mean
    /// above zero, standard deviation no larger than the mean), that signal's threshold may go below
    /// its floor, down to FRACTION × the floor; 1 turns learned floors off [default: 0.1].
    #[arg(long, value_name = "FRACTION")]
    pub learned_floor: Option<f64>,
    /// History a key needs before its floors may be learned (see --learned-floor) [default: 15m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub mature_after: Option<Duration>,
    /// How long, in packet time, a key must stay below 80 % of its threshold before its alert ends
    /// [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub hold_down: Option<Duration>,
    /// At most one `update` event per active alert per this interval of packet time [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub update_interval: Option<Duration>,
    /// Most keys tracked, all scopes together, split 40 % dst_host, 10 % dst_subnet, 40 % src_host,
    /// 10 % src_subnet. Each key costs about 470 bytes; the default keeps the process under 128 MiB.
    /// Keys over the cap are not tracked and are counted in the summary [default: 131072].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(64..=100_000_000))]
    pub max_keys: Option<u64>,
    /// Seed of the hashers of key tables [default: random per run]. The alerts never depend on it.
    #[arg(long, value_name = "N", hide_short_help = true)]
    pub seed: Option<u64>,
}

impl DetectArgs {
    /// The settings given on the command line.
    pub fn overrides(&self) -> floodwatch::config::Overrides {
        floodwatch::config::Overrides {
            window: self.window,
            tick: self.tick,
            subnet_v4: self.subnet_v4,
            subnet_v6: self.subnet_v6,
            min_pps: self.min_pps,
            factor: self.factor,
            trigger: self.trigger,
            burst_factor: self.burst_factor,
            burst_min_packets: self.burst_min_packets,
            learned_floor: self.learned_floor,
            mature_after: self.mature_after,
            hold_down: self.hold_down,
            update_interval: self.update_interval,
            max_keys: self.max_keys,
        }
    }
}

/// Where and how alerts are written.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Write alerts to FILE instead of stdout (`-`: stdout), opened before any input is read so a
    /// bad path fails at once: a replay truncates it; live and collect --listen append to it and
    /// reopen it on SIGHUP (log rotation).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// `json`: one JSON object per line (docs/alerts.md); `text`: one readable line per event.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// No summary and no progress bar on stderr (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Scenario to generate: benign, syn-flood, udp-flood, dns-reflection, icmp-flood, carpet-bombing,
    /// ipv6-syn-flood, slow-ramp, pulse-wave, flash-crowd, benign-growth, spoofed-sources, syn-burst,
    /// sources-at-floor, learned-floor, sig-syn-flood, sig-udp-flood, sig-ack-flood, benign-day; and
    /// the web scenarios (whole HTTP/TLS sessions with a small site, rates in requests or
    /// connections per second, longer defaults): http-flood, http-ddos, https-flood,
    /// http-few-heavy, tls-flood, slowloris, http-flash-crowd, busy-site, quiet-host-syn,
    /// quiet-host-icmp, quiet-host-scan, quiet-host-crowd.
    #[arg(value_name = "SCENARIO", value_parser = clap::value_parser!(floodwatch::synth::Scenario))]
    pub scenario: floodwatch::synth::Scenario,
    /// Output capture file.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Seed: the same seed and options give a byte-identical file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Total capture length [default: 30s; web scenarios 90s, slowloris and quiet-host-* 120s,
    /// busy-site 150s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// When the attack starts, from the capture's start [default: 10s; web scenarios 30s,
    /// quiet-host-* 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub attack_start: Option<Duration>,
    /// How long the attack lasts [default: 10s; web scenarios 20s to 120s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub attack_duration: Option<Duration>,
    /// Attack packets per second [default: 20000]. For the web scenarios: requests/s of http-flood
    /// (50), http-ddos (400), https-flood (90), http-few-heavy (180); connections/s of tls-flood
    /// (300) and of slowloris, for 10 s (50); new browsers/s of http-flash-crowd (16); busy-site's
    /// final requests/s (200); quiet-host-syn's SYN/s (300), quiet-host-icmp's echo requests/s
    /// (300), quiet-host-scan's SYN/s (300), quiet-host-crowd's new clients/s (300).
    #[arg(long, value_name = "PPS")]
    pub attack_pps: Option<u64>,
    /// Benign background packets per second, 0: none [default: 2000]; for the web scenarios the
    /// site's requests per second [default: 4; http-few-heavy and busy-site, where it is the
    /// start of the growth: 20].
    #[arg(long, value_name = "PPS")]
    pub background_pps: Option<u64>,
    /// Victim address [default: 198.51.100.10, or 2001:db8:100::10 for IPv6 scenarios].
    #[arg(long, value_name = "IP")]
    pub victim: Option<IpAddr>,
    /// Distinct spoofed sources (spoofed-sources scenario); flooding sources of sources-at-floor, which
    /// reads the default 1000000 as 4 (at most 65536 there, one src_host label each); attacking hosts
    /// of the web scenarios, which read the default as their own number (1 to 254).
    #[arg(long, value_name = "N", default_value_t = floodwatch::synth::DEFAULT_SOURCES)]
    pub sources: u64,
    /// Source MAC of every frame.
    #[arg(long, value_name = "MAC", default_value = "02:00:00:00:00:01", value_parser = parse_mac)]
    pub src_mac: [u8; 6],
    /// Destination MAC of every frame.
    #[arg(long, value_name = "MAC", default_value = "02:00:00:00:00:02", value_parser = parse_mac)]
    pub dst_mac: [u8; 6],
    /// Minimum-size frames (60 bytes, no payload): benchmark captures.
    #[arg(long)]
    pub min_size: bool,
    /// Time of the first packet: Unix seconds, or `now` / `now+DURATION` (e.g. now+2s) for a
    /// capture that a flow exporter reading it (softflowd -r) stamps with sane times
    /// [default: 1764079200, 2025-11-25 14:00 UTC].
    #[arg(long, value_name = "TIME", value_parser = parse_start)]
    pub start: Option<floodwatch::time::Timestamp>,
}

/// Sets the help of the arguments named in `helps` (id, help), where a command words a shared
/// option for itself. In place, unlike `Command::mut_arg`, which moves the argument to the end
/// (completion scripts list the arguments in that order). Without a closing period, as clap
/// leaves a one-sentence doc comment.
fn with_help(helps: &'static [(&'static str, &'static str)]) -> impl FnMut(Arg) -> Arg {
    move |a| match helps.iter().find(|(id, _)| a.get_id().as_str() == *id) {
        Some((_, help)) => a.help(*help),
        None => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_macs_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Ok([2, 0, 0, 0, 0, 10]));
        assert!(parse_mac("02:00").is_err());
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("256k"), Ok(256 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
    }
}
