//! Resolved detection settings: what the engine runs on, after the command line and the TOML config
//! file have been merged over the defaults (command line > file > defaults) and validated.

use std::time::Duration;

use std::path::Path;

use serde::Deserialize;

use crate::baseline::BaselineParams;
use crate::key::{Key, Scope};
use crate::window::Signal;

/// Default floors of a destination's request signals: 40 requests/s, 100 completed handshakes/s, 100
/// request heads held open. A small site that normally serves a few requests a second and suddenly
/// takes 50 from a handful of machines is over the first; a busy site has learned a higher normal
/// (its threshold is `factor ×` that). docs/tuning.md gives the reasoning.
pub const REQUEST_FLOORS: [f64; 3] = [40.0, 100.0, 100.0];
/// Default floors of a source's request signals: one client sending 50 requests every second, opening
/// 50 connections a second or holding 50 heads open, second after second, is no browser (a browser
/// loading a heavy page sends about 20 a second to a dozen servers for a second or two).
pub const SOURCE_REQUEST_FLOORS: [f64; 3] = [50.0, 50.0, 50.0];

/// Default quiet-host floor of each of [`QuietFloors::SIGNALS`], packets/s: a fifth of the default
/// SYN floor, a few hundred packets a second that a small site cannot take for long. docs/tuning.md
/// ("Quiet hosts") gives the reasoning.
pub const QUIET_FLOOR: f64 = 200.0;

/// The quiet-host floors (`[quiet_hosts]` in the config file): the lower floor that applies to a
/// destination host whose learned normal of a signal is near zero, once the traffic carries the mark
/// of an attack of that kind ([`crate::detect`]'s `quiet` module). One per [`QuietFloors::SIGNALS`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuietFloors {
    /// Packets per second, in the order of [`QuietFloors::SIGNALS`].
    pub per_signal: [f64; 4],
}

impl QuietFloors {
    /// The signals a quiet host has a floor of its own for: a flood of each has a mark that
    /// ordinary traffic lacks (handshakes that never complete, many senders of what the host never
    /// receives).
    pub const SIGNALS: [Signal; 4] = [
        Signal::Syn,
        Signal::Icmp,
        Signal::Fragment,
        Signal::Reflection,
    ];

    /// The quiet-host floor of `s` (infinite for a signal without one).
    pub fn get(&self, s: Signal) -> f64 {
        Self::SIGNALS
            .iter()
            .position(|q| *q == s)
            .and_then(|i| self.per_signal.get(i))
            .copied()
            .unwrap_or(f64::INFINITY)
    }
}

impl Default for QuietFloors {
    fn default() -> Self {
        QuietFloors {
            per_signal: [QUIET_FLOOR; 4],
        }
    }
}

/// Absolute floors: a key never alerts below these rates, whatever its baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Floors {
    /// Per thresholded signal, in packets per second (bytes per second for [`Signal::Bytes`]).
    pub per_signal: [f64; Signal::THRESHOLDED],
}

impl Floors {
    /// Floors scaled from one number, `min_pps` (default 1000): SYN, SYN-ACK, ICMP, fragments and
    /// reflection at `min_pps`; UDP at 5×; other TCP at 30×; all packets at 50×; bytes at 1 Gbit/s ×
    /// `min_pps`/1000.
    ///
    /// The request signals do not scale with `min_pps` (a packet floor sized for volumetric floods
    /// says nothing of what a small web site takes): [`REQUEST_FLOORS`] for destinations.
    pub fn from_min_pps(min_pps: f64) -> Floors {
        let mut per_signal = [0.0; Signal::THRESHOLDED];
        for s in &Signal::ALL[..Signal::THRESHOLDED] {
            per_signal[s.index()] = match s {
                Signal::Packets => 50.0 * min_pps,
                Signal::Bytes => 125_000.0 * min_pps,
                Signal::TcpOther => 30.0 * min_pps,
                Signal::Udp => 5.0 * min_pps,
                Signal::HttpRequests => REQUEST_FLOORS[0],
                Signal::Handshakes => REQUEST_FLOORS[1],
                Signal::IncompleteHeads => REQUEST_FLOORS[2],
                _ => min_pps,
            };
        }
        Floors { per_signal }
    }

    /// The floors of `scope` from `min_pps`: as [`Floors::from_min_pps`], except that a source sending
    /// SYN-ACKs is a server answering connections (or a reflector), so source scopes put SYN-ACK at 30×;
    /// and one client's requests and connections have floors of their own
    /// ([`SOURCE_REQUEST_FLOORS`]).
    pub fn for_scope(scope: Scope, min_pps: f64) -> Floors {
        let mut f = Floors::from_min_pps(min_pps);
        if !scope.is_destination() {
            f.per_signal[Signal::SynAck.index()] = 30.0 * min_pps;
            for (s, v) in Signal::REQUEST_SIGNALS.iter().zip(SOURCE_REQUEST_FLOORS) {
                f.per_signal[s.index()] = v;
            }
        }
        f
    }

    /// The floors of every scope from `min_pps`, indexed by [`Scope::index`].
    pub fn all_scopes(min_pps: f64) -> [Floors; 4] {
        Scope::ALL.map(|s| Floors::for_scope(s, min_pps))
    }

    /// The floor of `s`.
    pub fn get(&self, s: Signal) -> f64 {
        self.per_signal
            .get(s.index())
            .copied()
            .unwrap_or(f64::INFINITY)
    }
}

impl Default for Floors {
    fn default() -> Self {
        Floors::from_min_pps(1000.0)
    }
}

/// Settings for the keys inside one prefix (`[[prefix]]` in the config file).
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub prefix: Key,
    /// Floors per scope, as [`DetectConfig::floors`].
    pub floors: [Floors; 4],
    /// Learned-threshold factor, as [`BaselineParams::factor`].
    pub factor: f64,
}

/// Everything the detection engine needs.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectConfig {
    /// Sliding window length (rates are per window, reported per second).
    pub window: Duration,
    /// Evaluation period in packet time; divides `window`.
    pub tick: Duration,
    /// Prefix lengths of the subnet scopes.
    pub subnet_v4: u8,
    pub subnet_v6: u8,
    /// Absolute floors per scope (index [`Scope::index`]).
    pub floors: [Floors; 4],
    /// The lower floors of quiet destination hosts ([`QuietFloors`]).
    pub quiet_hosts: QuietFloors,
    pub baseline: BaselineParams,
    /// Consecutive evaluations over threshold before an alert starts.
    pub trigger_evals: u32,
    /// A hot key alerts at once when a signal's rate over the short window (two ticks) reaches this
    /// many times its threshold, with at least `burst_min_packets` packets in it.
    pub burst_factor: f64,
    /// The least evidence a rate measured over less than a window may rest on: packets (weighted)
    /// and, for sampled telemetry, at least `min(this, 10)` summaries.
    pub burst_min_packets: u64,
    /// Time below threshold before an alert ends.
    pub hold_down: Duration,
    /// While active, below this fraction of the threshold counts as "below" (hysteresis).
    pub end_ratio: f64,
    /// At most one `update` per this interval while an alert is active.
    pub update_interval: Duration,
    /// Hard cap on keys per scope (index [`Scope::index`]).
    pub max_keys: [usize; 4],
    /// Keys idle this many windows are evicted (their baseline forgotten).
    pub idle_windows: u64,
    /// Entries in `top_peers` / `top_ports` lists.
    pub top_n: usize,
    /// Seed of the hashers of every map keyed by packet fields.
    pub hash_seed: u64,
    /// Per-prefix settings, most specific first; a key takes the first whose prefix contains it.
    pub profiles: Vec<Profile>,
    /// Traffic from or to these prefixes is not counted at all.
    pub ignore: Vec<Key>,
    /// When not empty, "our" networks: only packets from or to them count, only our addresses are
    /// watched as victims (`dst_*`), and sources are watched for what they send (either way).
    pub ours: Vec<Key>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            window: Duration::from_secs(1),
            tick: Duration::from_millis(100),
            subnet_v4: 24,
            subnet_v6: 64,
            floors: Floors::all_scopes(1000.0),
            quiet_hosts: QuietFloors::default(),
            baseline: BaselineParams::default(),
            trigger_evals: 2,
            burst_factor: 1.5,
            burst_min_packets: 100,
            hold_down: Duration::from_secs(10),
            end_ratio: 0.8,
            update_interval: Duration::from_secs(10),
            max_keys: DetectConfig::split_max_keys(131_072),
            idle_windows: 300,
            top_n: 10,
            hash_seed: 0,
            profiles: Vec::new(),
            ignore: Vec::new(),
            ours: Vec::new(),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--window must be between 100 ms and 1 hour (got {0:?})")]
    Window(Duration),
    #[error("--tick ({tick:?}) must be at least 1 ms and divide --window ({window:?}) evenly")]
    Tick { tick: Duration, window: Duration },
    #[error("--subnet-v4 must be 0..=32 and --subnet-v6 0..=128 (got {0}/{1})")]
    Subnet(u8, u8),
    #[error("--max-keys must be at least 16 (got {0})")]
    MaxKeys(usize),
    #[error("--min-pps must be a positive number (got {0})")]
    MinPps(f64),
    #[error("quiet_hosts floors must be positive numbers of packets/s (got {0})")]
    QuietFloor(f64),
    #[error("{0}")]
    NotReloadable(String),
}

impl DetectConfig {
    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let w = self.window.as_nanos();
        if self.window < Duration::from_millis(100) || self.window > Duration::from_secs(3600) {
            return Err(ConfigError::Window(self.window));
        }
        let t = self.tick.as_nanos();
        if self.tick < Duration::from_millis(1) || !w.is_multiple_of(t) {
            return Err(ConfigError::Tick {
                tick: self.tick,
                window: self.window,
            });
        }
        if self.subnet_v4 > 32 || self.subnet_v6 > 128 {
            return Err(ConfigError::Subnet(self.subnet_v4, self.subnet_v6));
        }
        if let Some(&m) = self.max_keys.iter().find(|&&m| m < 16) {
            return Err(ConfigError::MaxKeys(m));
        }
        for f in &self.floors {
            if let Some(&x) = f.per_signal.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                return Err(ConfigError::MinPps(x));
            }
        }
        if let Some(&x) = self
            .quiet_hosts
            .per_signal
            .iter()
            .find(|x| !(x.is_finite() && **x > 0.0))
        {
            return Err(ConfigError::QuietFloor(x));
        }
        Ok(())
    }

    /// Splits a total key budget over the scopes: 40 % dst_host, 10 % dst_subnet, 40 % src_host,
    /// 10 % src_subnet.
    pub fn split_max_keys(total: u64) -> [usize; 4] {
        let t = usize::try_from(total).unwrap_or(usize::MAX);
        [t / 10 * 4, t / 10, t / 10 * 4, t / 10].map(|n| n.max(16))
    }

    /// The floors of a scope.
    pub fn floors_of(&self, scope: Scope) -> &Floors {
        &self.floors[scope.index()]
    }

    /// The profile index (1-based; 0 = the defaults) of the first `[[prefix]]` containing `key`.
    pub fn profile_of(&self, key: Key) -> u16 {
        self.profiles
            .iter()
            .position(|p| p.prefix.prefix() <= key.prefix() && p.prefix.contains(key.addr()))
            .map_or(0, |i| (i + 1).min(usize::from(u16::MAX)) as u16)
    }

    /// Floors and factor of a scope under a profile from [`DetectConfig::profile_of`].
    pub fn settings_for(&self, scope: Scope, profile: u16) -> (&Floors, f64) {
        match usize::from(profile)
            .checked_sub(1)
            .and_then(|i| self.profiles.get(i))
        {
            Some(p) => (&p.floors[scope.index()], p.factor),
            None => (&self.floors[scope.index()], self.baseline.factor),
        }
    }

    /// True when packets with this address are not counted (`ignore`).
    #[inline]
    pub fn ignored(&self, ip: std::net::IpAddr) -> bool {
        self.ignore.iter().any(|k| k.contains(ip))
    }

    /// True when `ip` is in `ours` (always true when `ours` is empty).
    #[inline]
    pub fn is_ours(&self, ip: std::net::IpAddr) -> bool {
        self.ours.is_empty() || self.ours.iter().any(|k| k.contains(ip))
    }

    /// What a reload from `self` to `new` changes, by setting name; an error naming the first
    /// setting that cannot change while running (the windows, the ticks, the subnet keys and the
    /// key tables are laid out for it: a restart applies it, with `--state` keeping the learning).
    pub fn reload_changes(&self, new: &DetectConfig) -> Result<Vec<String>, String> {
        let fixed = [
            ("window", self.window != new.window),
            ("tick", self.tick != new.tick),
            ("subnet_v4", self.subnet_v4 != new.subnet_v4),
            ("subnet_v6", self.subnet_v6 != new.subnet_v6),
            ("max_keys", self.max_keys != new.max_keys),
        ];
        if let Some((name, _)) = fixed.iter().find(|(_, changed)| *changed) {
            return Err(format!(
                "{name} cannot change while running (it lays out the windows and key tables):                  restart floodwatch to apply it (with --state the learned baselines are kept)"
            ));
        }
        let (a, b) = (&self.baseline, &new.baseline);
        let changes = [
            ("floors", self.floors != new.floors),
            ("quiet_hosts", self.quiet_hosts != new.quiet_hosts),
            ("factor", a.factor != b.factor),
            ("learned_floor", a.learned_floor != b.learned_floor),
            ("mature_after", a.mature_windows != b.mature_windows),
            ("trigger", self.trigger_evals != new.trigger_evals),
            ("burst_factor", self.burst_factor != new.burst_factor),
            (
                "burst_min_packets",
                self.burst_min_packets != new.burst_min_packets,
            ),
            ("hold_down", self.hold_down != new.hold_down),
            (
                "update_interval",
                self.update_interval != new.update_interval,
            ),
            ("prefixes", self.profiles != new.profiles),
            ("networks.ignore", self.ignore != new.ignore),
            ("networks.ours", self.ours != new.ours),
        ];
        Ok(changes
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| (*name).to_owned())
            .collect())
    }

    /// Window length in nanoseconds.
    pub fn window_ns(&self) -> u64 {
        self.window.as_nanos().min(u128::from(u64::MAX)) as u64
    }

    /// Tick length in nanoseconds.
    pub fn tick_ns(&self) -> u64 {
        self.tick.as_nanos().min(u128::from(u64::MAX)) as u64
    }
}

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 500ms, 1s, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown unit `{u}` in `{s}` (use ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Settings that both the command line and the config file can give; `None` = not given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default, deserialize_with = "de_duration")]
    pub window: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub tick: Option<Duration>,
    pub subnet_v4: Option<u8>,
    pub subnet_v6: Option<u8>,
    pub min_pps: Option<f64>,
    pub factor: Option<f64>,
    pub trigger: Option<u32>,
    pub burst_factor: Option<f64>,
    pub burst_min_packets: Option<u64>,
    pub learned_floor: Option<f64>,
    #[serde(default, deserialize_with = "de_duration")]
    pub mature_after: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub hold_down: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub update_interval: Option<Duration>,
    pub max_keys: Option<u64>,
}

/// Reads a duration written as a string (`"500ms"`, `"1s"`).
fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl Overrides {
    /// `self` where set, else `below`.
    pub fn over(self, below: Overrides) -> Overrides {
        Overrides {
            window: self.window.or(below.window),
            tick: self.tick.or(below.tick),
            subnet_v4: self.subnet_v4.or(below.subnet_v4),
            subnet_v6: self.subnet_v6.or(below.subnet_v6),
            min_pps: self.min_pps.or(below.min_pps),
            factor: self.factor.or(below.factor),
            trigger: self.trigger.or(below.trigger),
            burst_factor: self.burst_factor.or(below.burst_factor),
            burst_min_packets: self.burst_min_packets.or(below.burst_min_packets),
            learned_floor: self.learned_floor.or(below.learned_floor),
            mature_after: self.mature_after.or(below.mature_after),
            hold_down: self.hold_down.or(below.hold_down),
            update_interval: self.update_interval.or(below.update_interval),
            max_keys: self.max_keys.or(below.max_keys),
        }
    }
}

/// Floors per signal in a config file (`[floors]`, or `floors` of a `[[prefix]]`), packets/s (bytes
/// per second for `bytes`); each replaces the one derived from `min_pps`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloorOverrides {
    pub packets: Option<f64>,
    pub bytes: Option<f64>,
    pub syn: Option<f64>,
    pub tcp_other: Option<f64>,
    pub udp: Option<f64>,
    pub icmp: Option<f64>,
    pub fragment: Option<f64>,
    pub reflection: Option<f64>,
    pub syn_ack: Option<f64>,
    pub http_requests: Option<f64>,
    pub handshakes: Option<f64>,
    pub incomplete_heads: Option<f64>,
}

impl FloorOverrides {
    fn apply(&self, floors: &mut [Floors; 4]) {
        let set = [
            (Signal::Packets, self.packets),
            (Signal::Bytes, self.bytes),
            (Signal::Syn, self.syn),
            (Signal::TcpOther, self.tcp_other),
            (Signal::Udp, self.udp),
            (Signal::Icmp, self.icmp),
            (Signal::Fragment, self.fragment),
            (Signal::Reflection, self.reflection),
            (Signal::SynAck, self.syn_ack),
            (Signal::HttpRequests, self.http_requests),
            (Signal::Handshakes, self.handshakes),
            (Signal::IncompleteHeads, self.incomplete_heads),
        ];
        for f in floors.iter_mut() {
            for (s, v) in set {
                if let (Some(v), Some(slot)) = (v, f.per_signal.get_mut(s.index())) {
                    *slot = v;
                }
            }
        }
    }
}

/// `[quiet_hosts]`: the quiet-host floors, packets/s; each replaces the default ([`QUIET_FLOOR`]).
/// A value at or above a signal's floor turns the quiet-host floor of that signal off.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietOverrides {
    pub syn: Option<f64>,
    pub icmp: Option<f64>,
    pub fragment: Option<f64>,
    pub reflection: Option<f64>,
}

impl QuietOverrides {
    /// The defaults with what the file sets.
    fn resolve(&self) -> QuietFloors {
        let mut q = QuietFloors::default();
        let set = [self.syn, self.icmp, self.fragment, self.reflection];
        for (slot, v) in q.per_signal.iter_mut().zip(set) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        q
    }
}

/// One `[[prefix]]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixConfig {
    pub prefix: String,
    pub min_pps: Option<f64>,
    pub factor: Option<f64>,
    #[serde(default)]
    pub floors: FloorOverrides,
}

/// `[networks]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworksConfig {
    #[serde(default)]
    pub ours: Vec<String>,
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// `[mitigation]`: limits on what is announced to routers (`--exabgp-pipe`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MitigationConfig {
    /// Prefixes never announced (flowspec or blackhole), whatever alerts on them.
    #[serde(default)]
    pub never_block: Vec<String>,
}

impl MitigationConfig {
    /// The never-block prefixes as keys; the error names the bad entry.
    pub fn never_block_keys(&self) -> Result<Vec<Key>, String> {
        self.never_block
            .iter()
            .map(|s| {
                s.parse::<Key>()
                    .map_err(|e| format!("mitigation.never_block: {e}"))
            })
            .collect()
    }
}

/// The TOML config file. Unknown keys are rejected, by name.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub detection: Overrides,
    #[serde(default)]
    pub floors: FloorOverrides,
    #[serde(default)]
    pub quiet_hosts: QuietOverrides,
    #[serde(default)]
    pub networks: NetworksConfig,
    #[serde(default)]
    pub prefix: Vec<PrefixConfig>,
    #[serde(default)]
    pub mitigation: MitigationConfig,
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {detail}")]
    Invalid { path: String, detail: String },
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigFileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: p.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigFileError::Invalid {
            path: p,
            detail: e.to_string().trim().to_owned(),
        })
    }
}

/// The commented default config, as `floodwatch config --default` prints it.
pub const DEFAULT_CONFIG: &str = include_str!("default_config.toml");

impl DetectConfig {
    /// Resolves the command line (`cli`) over the config file over the defaults, and validates.
    pub fn resolve(cli: Overrides, file: Option<&FileConfig>) -> Result<DetectConfig, String> {
        let empty = FileConfig::default();
        let file = file.unwrap_or(&empty);
        let o = cli.over(file.detection.clone());
        let d = DetectConfig::default();
        let min_pps = o.min_pps.unwrap_or(1000.0);
        let mut floors = Floors::all_scopes(min_pps);
        file.floors.apply(&mut floors);
        let mut cfg = DetectConfig {
            window: o.window.unwrap_or(d.window),
            tick: o.tick.unwrap_or(d.tick),
            subnet_v4: o.subnet_v4.unwrap_or(d.subnet_v4),
            subnet_v6: o.subnet_v6.unwrap_or(d.subnet_v6),
            floors,
            quiet_hosts: file.quiet_hosts.resolve(),
            trigger_evals: o.trigger.unwrap_or(d.trigger_evals).max(1),
            burst_factor: o.burst_factor.unwrap_or(d.burst_factor),
            burst_min_packets: o.burst_min_packets.unwrap_or(d.burst_min_packets),
            hold_down: o.hold_down.unwrap_or(d.hold_down),
            update_interval: o.update_interval.unwrap_or(d.update_interval),
            max_keys: o.max_keys.map_or(d.max_keys, DetectConfig::split_max_keys),
            ..d
        };
        cfg.baseline.factor = o.factor.unwrap_or(cfg.baseline.factor);
        cfg.baseline.learned_floor = o.learned_floor.unwrap_or(cfg.baseline.learned_floor);
        let after = o.mature_after.unwrap_or(Duration::from_secs(15 * 60));
        let windows = after.as_secs_f64() / cfg.window.as_secs_f64().max(1e-9);
        cfg.baseline.mature_windows = windows.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
        if !(cfg.burst_factor.is_finite() && cfg.burst_factor >= 1.0) {
            return Err("burst_factor must be a number ≥ 1".into());
        }
        if cfg.burst_min_packets == 0 {
            return Err("burst_min_packets must be at least 1".into());
        }
        if !(cfg.baseline.learned_floor.is_finite()
            && cfg.baseline.learned_floor > 0.0
            && cfg.baseline.learned_floor <= 1.0)
        {
            return Err(
                "learned_floor must be a fraction of the floor in (0, 1] (1 turns learned floors off)"
                    .into(),
            );
        }
        let parse = |s: &str, what: &str| s.parse::<Key>().map_err(|e| format!("{what}: {e}"));
        cfg.ours = file
            .networks
            .ours
            .iter()
            .map(|s| parse(s, "networks.ours"))
            .collect::<Result<_, _>>()?;
        cfg.ignore = file
            .networks
            .ignore
            .iter()
            .map(|s| parse(s, "networks.ignore"))
            .collect::<Result<_, _>>()?;
        for p in &file.prefix {
            let mut floors = Floors::all_scopes(p.min_pps.unwrap_or(min_pps));
            file.floors.apply(&mut floors);
            p.floors.apply(&mut floors);
            cfg.profiles.push(Profile {
                prefix: parse(&p.prefix, "prefix")?,
                floors,
                factor: p.factor.unwrap_or(cfg.baseline.factor),
            });
        }
        // Most specific first, so the first match is the longest.
        cfg.profiles
            .sort_by_key(|p| std::cmp::Reverse(p.prefix.prefix()));
        if !(cfg.baseline.factor.is_finite() && cfg.baseline.factor >= 1.0)
            || cfg
                .profiles
                .iter()
                .any(|p| !(p.factor.is_finite() && p.factor >= 1.0))
        {
            return Err("factor must be a number ≥ 1".into());
        }
        for p in &cfg.profiles {
            for f in &p.floors {
                if f.per_signal.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                    return Err(format!(
                        "prefix {}: floors and min_pps must be positive",
                        p.prefix
                    ));
                }
            }
        }
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert_eq!(DetectConfig::default().validate(), Ok(()));
        let c = DetectConfig {
            tick: Duration::from_millis(300),
            ..DetectConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Tick { .. })));
        let c = DetectConfig {
            subnet_v4: 33,
            ..DetectConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--subnet-v4"));
        let c = DetectConfig {
            floors: [Floors::from_min_pps(0.0); 4],
            ..DetectConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn default_config_parses_and_resolves_to_the_defaults() {
        let f: FileConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        let c = DetectConfig::resolve(Overrides::default(), Some(&f)).unwrap();
        assert_eq!(c, DetectConfig::default());
    }

    #[test]
    fn command_line_beats_file_beats_defaults() {
        let f: FileConfig = toml::from_str(
            "[detection]\nwindow = \"2s\"\nmin_pps = 500\n[floors]\nsyn = 300\n\
             [networks]\nours = [\"198.51.100.0/24\"]\nignore = [\"10.0.0.0/8\"]\n\
             [[prefix]]\nprefix = \"198.51.100.53/32\"\nmin_pps = 5000\nfactor = 5\n\
             [[prefix]]\nprefix = \"198.51.100.0/24\"\nfloors = { udp = 9000 }\n",
        )
        .unwrap();
        let cli = Overrides {
            min_pps: Some(2000.0),
            ..Overrides::default()
        };
        let c = DetectConfig::resolve(cli, Some(&f)).unwrap();
        assert_eq!(c.window, Duration::from_secs(2));
        assert_eq!(c.floors_of(Scope::DstHost).get(Signal::Udp), 10_000.0);
        assert_eq!(c.floors_of(Scope::DstHost).get(Signal::Syn), 300.0);
        let dns: Key = "198.51.100.53".parse().unwrap();
        let web: Key = "198.51.100.80".parse().unwrap();
        let (fl, factor) = c.settings_for(Scope::DstHost, c.profile_of(dns));
        assert_eq!((fl.get(Signal::Icmp), factor), (5000.0, 5.0));
        let (fl, _) = c.settings_for(Scope::DstHost, c.profile_of(web));
        assert_eq!(fl.get(Signal::Udp), 9000.0);
        assert!(c.ignored("10.1.2.3".parse().unwrap()));
        assert!(c.is_ours("198.51.100.7".parse().unwrap()));
        assert!(!c.is_ours("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn burst_and_learned_floor_settings_are_checked() {
        let file = |text: &str| toml::from_str::<FileConfig>(text).unwrap();
        for (text, what) in [
            ("[detection]\nburst_factor = 0.5\n", "burst_factor"),
            ("[detection]\nburst_min_packets = 0\n", "burst_min_packets"),
            ("[detection]\nlearned_floor = 0\n", "learned_floor"),
            ("[detection]\nlearned_floor = 2\n", "learned_floor"),
        ] {
            let err = DetectConfig::resolve(Overrides::default(), Some(&file(text))).unwrap_err();
            assert!(err.contains(what), "{text}: {err}");
        }
        let cfg = DetectConfig::resolve(
            Overrides::default(),
            Some(&file(
                "[detection]\nwindow = \"2s\"\nmature_after = \"1h\"\n",
            )),
        )
        .unwrap();
        assert_eq!(cfg.baseline.mature_windows, 1800);
    }

    #[test]
    fn quiet_host_floors_come_from_their_own_table() {
        let file = |text: &str| toml::from_str::<FileConfig>(text).unwrap();
        let c = DetectConfig::resolve(Overrides::default(), None).unwrap();
        assert_eq!(c.quiet_hosts.get(Signal::Syn), QUIET_FLOOR);
        assert_eq!(c.quiet_hosts.get(Signal::Udp), f64::INFINITY);
        let c = DetectConfig::resolve(
            Overrides::default(),
            Some(&file("[quiet_hosts]\nsyn = 150\nreflection = 1000\n")),
        )
        .unwrap();
        assert_eq!(c.quiet_hosts.get(Signal::Syn), 150.0);
        assert_eq!(c.quiet_hosts.get(Signal::Icmp), QUIET_FLOOR);
        assert_eq!(c.quiet_hosts.get(Signal::Reflection), 1000.0);
        // the packet floors are not touched
        assert_eq!(c.floors_of(Scope::DstHost).get(Signal::Syn), 1000.0);
        let err = DetectConfig::resolve(
            Overrides::default(),
            Some(&file("[quiet_hosts]\nicmp = 0\n")),
        )
        .unwrap_err();
        assert!(err.contains("quiet_hosts"), "{err}");
        let e = toml::from_str::<FileConfig>("[quiet_hosts]\nudp = 100\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("udp"), "{e}");
        let changed = DetectConfig::default().reload_changes(&c).unwrap();
        assert_eq!(changed, ["quiet_hosts"]);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = toml::from_str::<FileConfig>("[detection]\nwindw = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("windw"), "{e}");
        let e = toml::from_str::<FileConfig>("[[prefix]]\nprefix = \"x\"\nfloor = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("floor"), "{e}");
        let f: FileConfig = toml::from_str("[[prefix]]\nprefix = \"not-an-ip\"\n").unwrap();
        assert!(DetectConfig::resolve(Overrides::default(), Some(&f))
            .unwrap_err()
            .contains("not-an-ip"));
    }

    #[test]
    fn floors_scale_from_min_pps() {
        let f = Floors::from_min_pps(1000.0);
        assert_eq!(f.get(Signal::Syn), 1000.0);
        assert_eq!(f.get(Signal::Udp), 5000.0);
        assert_eq!(f.get(Signal::Packets), 50_000.0);
    }
}
