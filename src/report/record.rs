//! The recording of a run: everything the incident report draws, as one serialisable value.
//!
//! [`Recorder`] builds it from the alert events as the sink writes them (each `end` event carries
//! its key's [`KeyTrace`]); the reading stage adds the traffic series and the
//! counters at the end. `replay --record FILE` saves it as JSON ([`Recording::save`]), `report
//! --from FILE` loads it ([`Recording::load`]).

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::series::TrafficSeries;
use crate::alert::{AlertEvent, EventKind};
use crate::alert_output::EventLine;
use crate::key_trace::KeyTrace;
use crate::window::Signal;

/// The version of the recording format written; [`Recording::load`] refuses others.
pub const RECORDING_FORMAT: u32 = 1;

/// Alerts whose key series a recording keeps at most (the ones furthest over their threshold):
/// 10,000 alerts must not make a gigabyte recording. The others keep their events.
pub const MAX_SERIES: usize = 64;

/// Everything a report shows about one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// [`RECORDING_FORMAT`].
    pub format: u32,
    /// `floodwatch <version>`.
    pub generator: String,
    /// What was read: capture files, or an interface.
    pub inputs: Vec<String>,
    /// Packet time of the first and last packet, ns since the Unix epoch.
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub frames: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Estimated distinct source addresses of the whole input (HyperLogLog, about 3 %).
    pub distinct_sources: u64,
    /// The summary's counters a reader should know about (drops, frames not decoded, …), in a
    /// fixed order; zero ones included.
    pub counters: Vec<Counter>,
    /// Reading stopped before the end of the input: why and where.
    pub stopped: Option<String>,
    /// The whole input's traffic over time by class.
    pub traffic: TrafficSeries,
    /// Every alert, in order of start.
    pub alerts: Vec<AlertRecord>,
    /// The page of one alert (`--report-dir`): no traffic series and no run counters, the numbers
    /// are the alert's.
    #[serde(default)]
    pub alert_page: bool,
}

/// A named count of the run summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub name: String,
    pub value: u64,
}

/// What a recording keeps of the run's summary: its span, totals and counters (the pipeline's
/// `RunSummary::report_totals` makes it, so the report needs nothing of the pipeline).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunTotals {
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub frames: u64,
    pub packets: u64,
    pub bytes: u64,
    /// The counters of the run's summary, in the order a report lists them.
    pub counters: Vec<Counter>,
}

/// One alert: its events and its key's series.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub id: String,
    pub scope: String,
    pub key: String,
    pub class: String,
    /// The signal whose threshold was crossed (`syn`, `udp`, `bytes`, …).
    pub signal: String,
    pub start: Option<EventRecord>,
    pub updates: Vec<EventRecord>,
    pub end: Option<EventRecord>,
    /// The rules of the start event's `mitigation`, or of the latest update that refreshed them
    /// (request floods: [`crate::mitigation::carries_rules`]).
    pub mitigation: Option<MitigationRecord>,
    /// The start event's `signature` as written (a list of fields), if any.
    pub signature: Option<serde_json::Value>,
    /// The attack sample file of the start event (`--evidence-dir`).
    pub evidence: Option<String>,
    /// The key's rate, baseline and threshold over time; only for the [`MAX_SERIES`] alerts
    /// furthest over their threshold.
    pub series: Option<KeySeries>,
}

impl AlertRecord {
    /// How far over its threshold the alert went: peak rate / threshold at start.
    pub fn severity(&self) -> f64 {
        let ev = self.end.as_ref().or(self.start.as_ref());
        let peak = ev.map_or(0.0, |e| e.peak_pps);
        let threshold = self.start.as_ref().map_or(0.0, |e| e.threshold_pps);
        if threshold > 0.0 {
            peak / threshold
        } else {
            peak
        }
    }

    /// Packet time the alert started at, ns.
    pub fn start_ns(&self) -> Option<u64> {
        self.start.as_ref().map(|e| e.ts_ns)
    }

    /// Packet time the alert ended at, ns (None while it was still open when the run ended without
    /// an end event).
    pub fn end_ns(&self) -> Option<u64> {
        self.end.as_ref().map(|e| e.ts_ns)
    }
}

/// The fields of one alert event a report shows (docs/alerts.md describes each).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// `start`, `update` or `end`.
    pub event: String,
    pub ts_ns: u64,
    pub pps: f64,
    pub bps: f64,
    pub total_pps: f64,
    pub baseline_pps: f64,
    pub threshold_pps: f64,
    pub peak_pps: f64,
    pub class_share: f64,
    pub window_s: f64,
    pub packets: u64,
    pub bytes: u64,
    pub distinct_peers: u64,
    pub duration_s: Option<f64>,
    pub reason: Option<String>,
    pub top_peers: Vec<PeerRecord>,
    pub top_ports: Vec<PortRecord>,
    pub top_src_ports: Vec<PortRecord>,
    pub top_hosts: Vec<PeerRecord>,
    /// Request-flood classes at a destination: who sent the requests (absent from other alerts,
    /// and from recordings made before request floods were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestRecord>,
}

/// The `requests` of a request-flood event: its clients and what they asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Every client listed completed a TCP handshake with the victim: its address is its own.
    pub verified_sources: bool,
    /// The heaviest clients on the alert's signal, heaviest first.
    pub clients: Vec<ClientRecord>,
    /// Share of the alert's signal the listed clients carry (0–1).
    pub top_share: f64,
    /// Clients counted.
    pub clients_seen: u64,
    /// Requests inside TLS were estimated (client bursts after the server last spoke).
    pub tls_requests_estimated: bool,
    /// The commonest paths, hosts (Host header, TLS server name), user agents and TLS
    /// fingerprints (JA4) of the requests: strings the clients chose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<DetailRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<DetailRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<DetailRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<DetailRecord>,
}

/// One client of a request flood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub ip: String,
    pub requests: u32,
    pub connections: u32,
    pub held_s: u32,
}

/// A request detail (path, host, user agent, fingerprint) and the requests that carried it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetailRecord {
    pub value: String,
    pub requests: u32,
}

/// An address and its packets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub ip: String,
    pub packets: u64,
}

/// A port and its packets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortRecord {
    pub port: u16,
    pub packets: u64,
}

/// Suggested rules (the `mitigation` of a start event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MitigationRecord {
    pub nft: Vec<String>,
    pub bpf: String,
    /// ExaBGP flowspec commands (absent from recordings made before they existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flowspec: Vec<String>,
    /// Request floods: the nginx snippet (absent for other alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxRecord>,
}

impl MitigationRecord {
    /// The record of an event's suggested rules.
    fn of(m: &crate::mitigation::Mitigation) -> MitigationRecord {
        MitigationRecord {
            nft: m.nft.clone(),
            bpf: m.bpf.clone(),
            flowspec: m.flowspec.clone(),
            nginx: m.nginx.as_ref().map(|n| NginxRecord {
                deny: n.deny.clone(),
                limit: n.limit.clone(),
            }),
        }
    }
}

/// What nginx can do about a request flood: `deny` lines and a limit per client address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NginxRecord {
    pub deny: Vec<String>,
    pub limit: Vec<String>,
}

/// A key's evaluations for the alert's signal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeySeries {
    pub points: Vec<SeriesPoint>,
}

/// One evaluation of an alert's key: the rate of the alert's signal with its learned mean and
/// threshold, the key's total rates, its traffic by class and the distinct peers seen so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub ts_ns: u64,
    /// The alert's signal, packets/s (bytes/s for `bytes`).
    pub rate: f64,
    pub baseline: f64,
    pub threshold: f64,
    pub total_pps: f64,
    pub bps: f64,
    pub syn: f64,
    pub tcp: f64,
    pub udp: f64,
    pub icmp: f64,
    pub fragment: f64,
    pub distinct_peers: u64,
}

impl KeySeries {
    /// The series of `signal` from a key's trace.
    pub fn from_trace(trace: &KeyTrace, signal: Signal) -> KeySeries {
        let i = signal.index().min(Signal::THRESHOLDED - 1);
        // one decimal: the f32 the engine keeps has no more to say
        let f = |v: f32| (f64::from(v) * 10.0).round() / 10.0;
        KeySeries {
            points: trace
                .points()
                .iter()
                .map(|p| SeriesPoint {
                    ts_ns: p.ts_ns,
                    rate: f(p.rates[i]),
                    baseline: f(p.baselines[i]),
                    threshold: f(p.thresholds[i]),
                    total_pps: f(p.rates[Signal::Packets.index()]),
                    bps: f(p.rates[Signal::Bytes.index()] * 8.0),
                    syn: f(p.rates[Signal::Syn.index()]),
                    tcp: f(p.rates[Signal::TcpOther.index()]),
                    udp: f(p.rates[Signal::Udp.index()]),
                    icmp: f(p.rates[Signal::Icmp.index()]),
                    fragment: f(p.rates[Signal::Fragment.index()]),
                    distinct_peers: u64::from(p.distinct_peers),
                })
                .collect(),
        }
    }
}

/// Why a recording could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot read the recording {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a floodwatch recording (written by `replay --record`)")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} is a recording of format {found}; this floodwatch reads format {RECORDING_FORMAT}: make it again with this version's `replay --record`")]
    Format { path: PathBuf, found: u32 },
    #[error("cannot write the recording {path}")]
    Write { path: PathBuf, source: io::Error },
}

impl Recording {
    /// Reads a recording written by [`Recording::save`].
    pub fn load(path: &Path) -> Result<Recording, RecordingError> {
        let file = std::fs::File::open(path).map_err(|source| RecordingError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let r: Recording = serde_json::from_reader(BufReader::new(file)).map_err(|source| {
            RecordingError::Parse {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if r.format != RECORDING_FORMAT {
            return Err(RecordingError::Format {
                path: path.to_path_buf(),
                found: r.format,
            });
        }
        Ok(r)
    }

    /// Writes the recording as JSON, to a temporary file renamed into place when complete.
    pub fn save(&self, path: &Path) -> Result<(), RecordingError> {
        let err = |source| RecordingError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = temp_beside(path);
        let write = || -> io::Result<()> {
            let file = std::fs::File::create(&tmp)?;
            let mut out = BufWriter::new(file);
            serde_json::to_writer(&mut out, self).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
    }
}

/// `path` with `.tmp` appended, hidden (a leading dot) in the same directory.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recording".to_string());
    path.with_file_name(format!(".{name}.tmp"))
}

/// Collects alert events into [`AlertRecord`]s as the sink writes them.
#[derive(Debug, Default)]
pub struct Recorder {
    alerts: Vec<AlertRecord>,
    by_id: HashMap<String, usize>,
    /// Alerts holding a series, with their severity.
    with_series: Vec<(usize, f64)>,
    /// Hand each alert over when it ends instead of keeping it (`live --report-dir`).
    release: bool,
    /// Keep every alert and also hand a copy of each over when it ends (`--record` with
    /// `--report-dir`).
    hand_over: bool,
}

impl Recorder {
    /// A recorder keeping every alert of the run.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// A recorder keeping every alert that also hands a copy of each over when it ends.
    pub fn keeping_and_handing_over() -> Recorder {
        Recorder {
            hand_over: true,
            ..Recorder::default()
        }
    }

    /// A recorder holding only open alerts: [`Recorder::event`] hands each one over when it ends
    /// (memory stays bounded by the open alerts over months of `live`).
    pub fn releasing() -> Recorder {
        Recorder {
            release: true,
            ..Recorder::default()
        }
    }

    /// Takes one event as written (`line` is what the writer wrote for it: its mitigation and
    /// evidence fields). A releasing recorder returns the alert an `end` event completes.
    pub fn event(&mut self, e: &AlertEvent, line: &EventLine<'_>) -> Option<AlertRecord> {
        let i = match self.by_id.get(&e.id) {
            Some(i) => *i,
            None => {
                self.alerts.push(AlertRecord {
                    id: e.id.clone(),
                    scope: e.scope.name().to_string(),
                    key: e.key.to_string(),
                    class: e.class.name().to_string(),
                    signal: e.signal.to_string(),
                    ..AlertRecord::default()
                });
                self.by_id.insert(e.id.clone(), self.alerts.len() - 1);
                self.alerts.len() - 1
            }
        };
        let rec = event_record(e);
        let a = &mut self.alerts[i];
        match e.event {
            EventKind::Start => {
                a.mitigation = line.mitigation.as_ref().map(MitigationRecord::of);
                a.signature = e
                    .signature
                    .as_ref()
                    .and_then(|s| serde_json::to_value(s).ok());
                a.evidence = line.evidence.clone();
                a.start = Some(rec);
            }
            EventKind::Update => {
                // a request flood's update names the clients counted by then: its rules replace
                // the start's
                if let Some(m) = line.mitigation.as_ref() {
                    a.mitigation = Some(MitigationRecord::of(m));
                }
                a.updates.push(rec)
            }
            EventKind::End => {
                a.end = Some(rec);
                if let Some(trace) = &e.trace {
                    let signal = Signal::ALL
                        .iter()
                        .copied()
                        .find(|s| s.name() == e.signal)
                        .unwrap_or(Signal::Packets);
                    a.series = Some(KeySeries::from_trace(trace, signal));
                    if !self.release {
                        let severity = a.severity();
                        self.keep_series(i, severity);
                    }
                }
                if self.release {
                    return self.take(&e.id);
                }
                if self.hand_over {
                    return self.alerts.get(i).cloned();
                }
            }
        }
        None
    }

    /// Removes an alert (releasing recorders: the last one moves into its place).
    fn take(&mut self, id: &str) -> Option<AlertRecord> {
        let i = self.by_id.remove(id)?;
        let a = self.alerts.swap_remove(i);
        if let Some(moved) = self.alerts.get(i) {
            self.by_id.insert(moved.id.clone(), i);
        }
        Some(a)
    }

    /// Keeps the series of the [`MAX_SERIES`] most severe alerts.
    fn keep_series(&mut self, i: usize, severity: f64) {
        self.with_series.push((i, severity));
        if self.with_series.len() > MAX_SERIES {
            let (pos, _) = self
                .with_series
                .iter()
                .enumerate()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .unwrap_or((0, &(i, severity)));
            let (drop, _) = self.with_series.swap_remove(pos);
            self.alerts[drop].series = None;
        }
    }

    /// The alerts so far, in order of their first event.
    pub fn alerts(&self) -> &[AlertRecord] {
        &self.alerts
    }

    /// The recording of the run: the alerts, with what the reading stage saw.
    pub fn finish(self, run: RunTotals, traffic: TrafficSeries) -> Recording {
        Recording {
            format: RECORDING_FORMAT,
            generator: format!("floodwatch {}", env!("CARGO_PKG_VERSION")),
            inputs: Vec::new(),
            first_ns: run.first_ns,
            last_ns: run.last_ns,
            frames: run.frames,
            packets: run.packets,
            bytes: run.bytes,
            distinct_sources: 0,
            counters: run.counters,
            stopped: None,
            traffic,
            alerts: self.alerts,
            alert_page: false,
        }
    }
}

fn event_record(e: &AlertEvent) -> EventRecord {
    let peers = |v: &[crate::alert::PeerCount]| {
        v.iter()
            .map(|p| PeerRecord {
                ip: p.ip.to_string(),
                packets: p.packets,
            })
            .collect()
    };
    let ports = |v: &[crate::alert::PortCount]| {
        v.iter()
            .map(|p| PortRecord {
                port: p.port,
                packets: p.packets,
            })
            .collect()
    };
    EventRecord {
        event: match e.event {
            EventKind::Start => "start",
            EventKind::Update => "update",
            EventKind::End => "end",
        }
        .to_string(),
        ts_ns: e.ts.0,
        pps: e.pps,
        bps: e.bps,
        total_pps: e.total_pps,
        baseline_pps: e.baseline_pps,
        threshold_pps: e.threshold_pps,
        peak_pps: e.peak_pps,
        class_share: e.class_share,
        window_s: e.window_s,
        packets: e.packets,
        bytes: e.bytes,
        distinct_peers: e.distinct_peers,
        duration_s: e.duration_s,
        reason: e.reason.and_then(|r| {
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        }),
        top_peers: peers(&e.top_peers),
        top_ports: ports(&e.top_ports),
        top_src_ports: ports(&e.top_src_ports),
        top_hosts: peers(&e.top_hosts),
        requests: e.requests.as_deref().map(request_record),
    }
}

fn request_record(r: &crate::alert::RequestEvidence) -> RequestRecord {
    let details = |v: &[crate::alert::DetailCount]| {
        v.iter()
            .map(|d| DetailRecord {
                value: d.value.to_string(),
                requests: d.requests,
            })
            .collect()
    };
    RequestRecord {
        verified_sources: r.verified_sources,
        clients: r
            .clients
            .iter()
            .map(|c| ClientRecord {
                ip: c.ip.to_string(),
                requests: c.requests,
                connections: c.connections,
                held_s: c.held_s,
            })
            .collect(),
        top_share: r.top_share,
        clients_seen: r.clients_seen,
        tls_requests_estimated: r.tls_requests_estimated,
        paths: details(&r.paths),
        hosts: details(&r.hosts),
        user_agents: details(&r.user_agents),
        fingerprints: details(&r.fingerprints),
    }
}
