//! Alerts: the [`AlertEvent`] the engine emits and the types it carries. How they are written
//! (JSON lines or text, with the rules a start carries) is src/alert_output.rs.

use serde::Serialize;

pub use crate::attack_class::AttackClass;

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Start,
    Update,
    End,
}

/// Why an alert ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The rate stayed below the threshold for the hold-down time.
    BelowThreshold,
    /// The capture ended while the alert was active.
    EndOfInput,
    /// floodwatch was stopped (Ctrl-C / SIGTERM) while the alert was active.
    Shutdown,
}

/// A heavy peer address and its packet count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PeerCount {
    pub ip: std::net::IpAddr,
    pub packets: u64,
}

/// A heavy port and its packet count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PortCount {
    pub port: u16,
    pub packets: u64,
}

fn is_one(n: &u32) -> bool {
    *n <= 1
}

/// Who sent a request flood: every client named completed a TCP handshake with the victim, so its
/// address is its own (not spoofed).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestEvidence {
    /// Always true: the clients below completed handshakes (written so a reader need not know).
    pub verified_sources: bool,
    /// The heaviest clients on the alert's signal, heaviest first.
    pub clients: Vec<ClientCount>,
    /// Share of the alert's signal (since the destination came near its threshold) these clients
    /// carry.
    pub top_share: f64,
    /// Clients counted (at most [`crate::requests::clients::MAX_CLIENTS`] one by one).
    pub clients_seen: u64,
    /// The clients the rules name ([`crate::requests::clients::Clients::to_block`]): every one
    /// past the block test, heaviest first, up to 256; `clients` lists only the `--top` heaviest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<std::net::IpAddr>,
    /// Requests inside TLS are counted as the client's bursts after the server spoke: an
    /// estimate. Always true for `http_requests` (written so a reader need not know).
    pub tls_requests_estimated: bool,
    /// The commonest request paths (HTTP/1), Host headers and TLS server names, User-Agents and
    /// TLS fingerprints (JA4) of the requests, up to five each, with how many requests carried
    /// each (empty when none was seen: requests inside TLS carry no path).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<DetailCount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<DetailCount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<DetailCount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<DetailCount>,
}

/// A request detail (a path, host, user agent or fingerprint) and how many requests carried it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetailCount {
    pub value: Box<str>,
    pub requests: u32,
}

/// One client of a request flood and what it did since the destination came near its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClientCount {
    pub ip: std::net::IpAddr,
    /// Requests (HTTP request heads; inside TLS, estimated).
    pub requests: u32,
    /// Connections it completed.
    pub connections: u32,
    /// Seconds of request heads it held open past the grace.
    pub held_s: u32,
}

/// One alert event: a line of the JSON output. docs/alerts.md documents every field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    pub event: EventKind,
    /// `scope/key/class/start-seconds`: the same on the start, update and end of one alert.
    pub id: String,
    /// Packet time of the evaluation that produced the event.
    pub ts: crate::time::Timestamp,
    /// The engine evaluation that produced the event: orders events across shards (not written).
    #[serde(skip)]
    pub seq: u64,
    pub scope: crate::key::Scope,
    pub key: crate::key::Key,
    pub class: AttackClass,
    /// The signal whose threshold was crossed (`syn`, `udp`, `reflection`, …).
    pub signal: &'static str,
    /// Rate of that signal over the window, packets/s (bytes/s for the `bytes` signal).
    pub pps: f64,
    /// Bits per second of all the key's traffic over the window.
    pub bps: f64,
    /// Packets per second of all the key's traffic.
    pub total_pps: f64,
    /// The learned normal rate of the signal (0 while still learning).
    pub baseline_pps: f64,
    /// The threshold that was crossed: max(floor, baseline-derived).
    pub threshold_pps: f64,
    /// True on every event of an alert that a quiet host's lower floor started (`[quiet_hosts]`:
    /// the key's normal of the signal is near zero and its traffic carries the mark of an attack
    /// of that kind; docs/tuning.md, "Quiet hosts"); the start's `threshold_pps` is that floor.
    /// Absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quiet_host: bool,
    pub window_s: f64,
    /// Start/update: packets and bytes of the key in the window. End: over the whole alert.
    pub packets: u64,
    pub bytes: u64,
    /// Highest signal rate seen during the alert.
    pub peak_pps: f64,
    /// Share of the key's packets that belong to the signal (0..1).
    pub class_share: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    /// Estimated distinct peers (sources of a destination key, destinations of a source key) since
    /// the key came near its threshold; HyperLogLog, about 3 % standard error.
    pub distinct_peers: u64,
    /// Heaviest sources of a destination key, heaviest destinations of a source key.
    pub top_peers: Vec<PeerCount>,
    /// Heaviest destination ports.
    pub top_ports: Vec<PortCount>,
    /// Heaviest source ports (the reflector's service port for amplification).
    pub top_src_ports: Vec<PortCount>,
    /// For subnet keys: the heaviest hosts inside the subnet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_hosts: Vec<PeerCount>,
    /// The largest sampling rate of the packets the `top_*` lists and the signature were built
    /// from: each sampled packet counted for this many (absent when every packet was looked at).
    #[serde(skip_serializing_if = "is_one")]
    pub sample_rate: u32,
    /// The header fields nearly every attack packet shares and the key's normal traffic does not
    /// (destination scopes; absent when nothing separates them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::Signature>,
    /// Request-flood classes at a destination: the clients that sent the requests, opened the
    /// connections or held the heads open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Box<RequestEvidence>>,
    /// End events, when the engine records traces (`report`, `--record`): the key's evaluations
    /// from the moment it came near its threshold (not written).
    #[serde(skip)]
    pub trace: Option<Box<crate::key_trace::KeyTrace>>,
}

impl AlertEvent {
    /// The order events of one run are written in: evaluation, then scope, key and kind. Every shard
    /// runs the same evaluations, so this order is total and the same whatever the thread count.
    pub fn order_key(&self) -> (u64, crate::key::Scope, crate::key::Key, EventKind) {
        (self.seq, self.scope, self.key, self.event)
    }
}

/// A periodic `stats` event (`--stats-interval`): proof that the detector is alive, in packet time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsEvent {
    /// Always `stats`.
    pub event: &'static str,
    /// The interval boundary (packet time) the counts run up to.
    pub ts: crate::time::Timestamp,
    /// Decoded packets and their wire bytes since the start of the run, before `ts`.
    pub packets: u64,
    pub bytes: u64,
    /// Alerts started and not yet ended, as written so far.
    pub active_alerts: u64,
    /// Orders the event among alert events (not written).
    #[serde(skip)]
    pub seq: u64,
}
