//! Metrics: the counters a run publishes and the Prometheus text endpoint (`--metrics-listen`).
//!
//! Stages never touch these per packet: the reader and the shards sum into locals and publish
//! deltas with relaxed atomics every batch (or every few thousand frames), and the sink records
//! alert events as it writes them. [`MetricsServer`] answers `GET /metrics` over plain HTTP/1.1
//! from one small thread, one connection at a time, with read/write timeouts and a request cap, so
//! a slow or hostile client can hold it for at most a few seconds and never touches detection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::alert::{AlertEvent, AttackClass, EventKind};
use crate::decode::{proto, tcp_flags, DecodeError, Fragment, PacketSummary, SkipReason};
use crate::detect::EngineStats;
use crate::hook::HookStats;
use crate::key::{Key, Scope};
use crate::table::TableStats;

mod server;
pub use server::{parse_listen_addr, MetricsError, MetricsServer};

/// The kind of a packet, for per-class packet and byte counters. Every packet has exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficClass {
    /// TCP SYN without ACK.
    TcpSyn,
    /// Any other TCP.
    TcpOther,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
    /// IP fragments (first and later), whatever they carry.
    Fragment,
    /// Any other IP protocol.
    Other,
}

impl TrafficClass {
    /// Every class, in index order.
    pub const ALL: [TrafficClass; 6] = [
        TrafficClass::TcpSyn,
        TrafficClass::TcpOther,
        TrafficClass::Udp,
        TrafficClass::Icmp,
        TrafficClass::Fragment,
        TrafficClass::Other,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            TrafficClass::TcpSyn => "tcp_syn",
            TrafficClass::TcpOther => "tcp_other",
            TrafficClass::Udp => "udp",
            TrafficClass::Icmp => "icmp",
            TrafficClass::Fragment => "fragment",
            TrafficClass::Other => "other",
        }
    }

    /// The class of a packet.
    #[inline]
    pub fn of(p: &PacketSummary) -> TrafficClass {
        if p.fragment != Fragment::None {
            return TrafficClass::Fragment;
        }
        match p.proto {
            proto::TCP if p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN => {
                TrafficClass::TcpSyn
            }
            proto::TCP => TrafficClass::TcpOther,
            proto::UDP => TrafficClass::Udp,
            proto::ICMP | proto::ICMPV6 => TrafficClass::Icmp,
            _ => TrafficClass::Other,
        }
    }
}

const CLASSES: usize = TrafficClass::ALL.len();
const REASONS: usize = SkipReason::ALL.len();
const ALERT_CLASSES: usize = AttackClass::ALL.len();
/// At most this many `floodwatch_top_pps` series (the heaviest active alerts).
const MAX_TOP_SERIES: usize = 50;

/// What the reader counts between two publications: plain integers, no atomics.
#[derive(Clone, Debug, Default)]
pub struct InputCounts {
    pub frames: u64,
    pub packets: [u64; CLASSES],
    pub bytes: [u64; CLASSES],
    pub not_decoded: [u64; REASONS],
    /// Latest packet time seen (nanoseconds), 0 if none.
    pub last_ts_ns: u64,
}

impl InputCounts {
    /// Counts one decoded packet.
    #[inline]
    pub fn packet(&mut self, p: &PacketSummary) {
        let c = TrafficClass::of(p) as usize;
        self.packets[c] += u64::from(p.weight);
        self.bytes[c] += u64::from(p.wire_len) * u64::from(p.weight);
        self.last_ts_ns = self.last_ts_ns.max(p.ts.0);
    }

    /// Counts one frame that was not decoded.
    pub fn not_decoded(&mut self, e: &DecodeError) {
        self.not_decoded[e.reason().index()] += 1;
    }
}

/// One alert in progress, as the endpoint shows it.
#[derive(Clone, Debug)]
struct ActiveAlert {
    scope: Scope,
    key: Key,
    class: AttackClass,
    pps: f64,
}

/// Counters of a run, shared between the stages and the endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    frames: AtomicU64,
    packets: [AtomicU64; CLASSES],
    bytes: [AtomicU64; CLASSES],
    not_decoded: [AtomicU64; REASONS],
    last_ts_ns: AtomicU64,
    kernel_drops: AtomicU64,
    pipeline_drops: AtomicU64,
    table_keys: [AtomicI64; 4],
    table_evicted: [AtomicU64; 4],
    table_rejected: [AtomicU64; 4],
    table_deferred: [AtomicU64; 4],
    alerts_started: [AtomicU64; ALERT_CLASSES],
    alerts_ended: [AtomicU64; ALERT_CLASSES],
    /// Touched once per alert event, never per packet.
    active: Mutex<BTreeMap<String, ActiveAlert>>,
    hook: OnceLock<Arc<HookStats>>,
    /// `--exabgp-pipe`: the announcer's counters.
    bgp: OnceLock<crate::mitigation::bgp::BgpStatsHandle>,
    /// `--evidence-dir`: the evidence counters.
    evidence: OnceLock<Arc<crate::evidence_pcap::EvidenceCounters>>,
    run_finished: AtomicBool,
    /// `floodwatch collect`: the telemetry stage's counters and exporters, as last published.
    telemetry: Mutex<Option<TelemetrySnapshot>>,
    /// `--state`: checkpoints by outcome and the latest one.
    checkpoints_ok: AtomicU64,
    checkpoints_failed: AtomicU64,
    last_checkpoint_ns: AtomicU64,
    last_checkpoint_write_ns: AtomicU64,
    last_checkpoint_pause_ns: AtomicU64,
    state_keys: AtomicU64,
    /// SIGHUP reloads of `--config` by outcome.
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

/// What one checkpoint of the state did ([`Metrics::record_checkpoint`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckpointReport {
    /// The file was written.
    pub ok: bool,
    /// Baselines in it.
    pub keys: u64,
    /// The longest a shard was held to hand its baselines over.
    pub pause: Duration,
    /// Serialising and writing (temporary file, fsync, rename, directory fsync).
    pub write: Duration,
    /// Wall time at the end.
    pub at: crate::time::Timestamp,
}

/// What the telemetry stage publishes (replaced whole at each publication).
#[derive(Clone, Debug, Default)]
pub struct TelemetrySnapshot {
    pub stats: crate::telemetry::TelemetryStats,
    /// At most [`MAX_EXPORTER_SERIES`] exporters, by address.
    pub exporters: Vec<crate::telemetry::ExporterInfo>,
    /// Exporters tracked in all.
    pub exporter_count: usize,
}

/// Exporters shown one by one in the metrics (label cardinality stays bounded).
pub const MAX_EXPORTER_SERIES: usize = 100;

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Adds what the reader counted since its last publication, and resets it.
    pub fn publish_input(&self, c: &mut InputCounts) {
        let r = Ordering::Relaxed;
        self.frames.fetch_add(c.frames, r);
        for i in 0..CLASSES {
            self.packets[i].fetch_add(c.packets[i], r);
            self.bytes[i].fetch_add(c.bytes[i], r);
        }
        for i in 0..REASONS {
            self.not_decoded[i].fetch_add(c.not_decoded[i], r);
        }
        self.last_ts_ns.fetch_max(c.last_ts_ns, r);
        let last = c.last_ts_ns;
        *c = InputCounts {
            last_ts_ns: last,
            ..InputCounts::default()
        };
    }

    /// Adds `n` frames the kernel dropped (each capture socket publishes what it counted since).
    pub fn add_kernel_drops(&self, n: u64) {
        self.kernel_drops.fetch_add(n, Ordering::Relaxed);
    }

    /// Batches the pipeline dropped (live capture with a full channel).
    pub fn add_pipeline_drops(&self, n: u64) {
        self.pipeline_drops.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds the table counters a shard gained since `prev` (its last publication), then sets
    /// `prev` to `now`.
    pub fn publish_tables(&self, prev: &mut EngineStats, now: &EngineStats) {
        let r = Ordering::Relaxed;
        for i in 0..4 {
            let (p, n): (&TableStats, &TableStats) = (&prev.tables[i], &now.tables[i]);
            self.table_evicted[i].fetch_add(n.evicted.saturating_sub(p.evicted), r);
            self.table_rejected[i].fetch_add(n.rejected.saturating_sub(p.rejected), r);
            self.table_deferred[i].fetch_add(n.deferred.saturating_sub(p.deferred), r);
            let dk = now.keys[i] as i64 - prev.keys[i] as i64;
            self.table_keys[i].fetch_add(dk, r);
        }
        *prev = *now;
    }

    /// Records an alert event the sink wrote.
    pub fn on_alert(&self, e: &AlertEvent) {
        let c = e.class as usize;
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        match e.event {
            EventKind::Start | EventKind::Update => {
                if e.event == EventKind::Start {
                    self.alerts_started[c].fetch_add(1, Ordering::Relaxed);
                }
                active.insert(
                    e.id.clone(),
                    ActiveAlert {
                        scope: e.scope,
                        key: e.key,
                        class: e.class,
                        pps: e.pps,
                    },
                );
            }
            EventKind::End => {
                self.alerts_ended[c].fetch_add(1, Ordering::Relaxed);
                active.remove(&e.id);
            }
        }
    }

    /// Shows the alert hook's counters too.
    pub fn attach_hook(&self, stats: Arc<HookStats>) {
        let _ = self.hook.set(stats);
    }

    /// Shows the ExaBGP output's counters too (`--exabgp-pipe`).
    pub fn attach_bgp(&self, stats: crate::mitigation::bgp::BgpStatsHandle) {
        let _ = self.bgp.set(stats);
    }

    /// Shows the evidence counters too (`--evidence-dir`).
    pub fn attach_evidence(&self, counters: Arc<crate::evidence_pcap::EvidenceCounters>) {
        let _ = self.evidence.set(counters);
    }

    /// Replaces the telemetry counters (collect runs).
    pub fn set_telemetry(&self, snapshot: TelemetrySnapshot) {
        if let Ok(mut t) = self.telemetry.lock() {
            *t = Some(snapshot);
        }
    }

    /// Records a checkpoint of the state: its outcome, and when it worked, its time, duration and
    /// keys.
    pub fn record_checkpoint(&self, c: &CheckpointReport) {
        let r = Ordering::Relaxed;
        if !c.ok {
            self.checkpoints_failed.fetch_add(1, r);
            return;
        }
        self.checkpoints_ok.fetch_add(1, r);
        self.last_checkpoint_ns.store(c.at.0, r);
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.last_checkpoint_write_ns.store(ns(c.write), r);
        self.last_checkpoint_pause_ns.store(ns(c.pause), r);
        self.state_keys.store(c.keys, r);
    }

    /// Records a SIGHUP reload of the config file: applied (`ok`) or rejected.
    pub fn record_reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The run has ended: the counters are final.
    pub fn set_run_finished(&self) {
        self.run_finished.store(true, Ordering::Relaxed);
    }

    /// Packets counted so far, all classes.
    pub fn packets_total(&self) -> u64 {
        self.packets.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let r = Ordering::Relaxed;
        let frames = self.frames.load(r);
        single(
            &mut o,
            "floodwatch_frames_total",
            COUNTER,
            "Frames read from the source.",
            frames,
        );
        for (name, help, values) in [
            (
                "floodwatch_packets_total",
                "Decoded packets by traffic class.",
                &self.packets,
            ),
            (
                "floodwatch_bytes_total",
                "Wire bytes of decoded packets by traffic class.",
                &self.bytes,
            ),
        ] {
            let by_class = TrafficClass::ALL.map(|t| (t.name(), values[t as usize].load(r)));
            labelled(&mut o, (name, COUNTER, help), "class", by_class);
        }
        labelled(
            &mut o,
            (
                "floodwatch_frames_not_decoded_total",
                COUNTER,
                "Frames that produced no packet, by reason.",
            ),
            "reason",
            SkipReason::ALL.map(|s| (s.name(), self.not_decoded[s.index()].load(r))),
        );
        self.render_drops(&mut o);
        self.render_tables(&mut o);
        self.render_alerts(&mut o);
        self.render_hook(&mut o);
        self.render_bgp(&mut o);
        self.render_evidence(&mut o);
        self.render_telemetry(&mut o);
        self.render_daemon(&mut o);
        header(
            &mut o,
            "floodwatch_last_packet_timestamp_seconds",
            "gauge",
            "Packet time of the latest packet (seconds since the epoch).",
        );
        let ts = self.last_ts_ns.load(r) as f64 / 1e9;
        let _ = writeln!(o, "floodwatch_last_packet_timestamp_seconds {ts:.6}");
        single(
            &mut o,
            "floodwatch_run_finished",
            GAUGE,
            "1 once the run has ended (input read, alerts written, hooks done): the counters are final.",
            u64::from(self.run_finished.load(r)),
        );
        o
    }

    fn render_telemetry(&self, o: &mut String) {
        let Some(t) = self.telemetry.lock().ok().and_then(|t| t.clone()) else {
            return;
        };
        let st = &t.stats;
        labelled(
            o,
            (
                "floodwatch_telemetry_datagrams_total",
                COUNTER,
                "Telemetry datagrams received, by kind.",
            ),
            "kind",
            [
                ("sflow", st.sflow_datagrams),
                ("netflow5", st.netflow5_datagrams),
                ("netflow9", st.netflow9_datagrams),
                ("ipfix", st.ipfix_datagrams),
            ],
        );
        let malformed = crate::telemetry::Malformed::ALL.iter().map(|m| m.name());
        labelled(
            o,
            (
                "floodwatch_telemetry_malformed_total",
                COUNTER,
                "Telemetry datagrams not used in full, by reason.",
            ),
            "reason",
            malformed.zip(st.malformed),
        );
        let skipped = [
            ("not_allowed", st.not_allowed),
            ("exporters_over_cap", st.exporters_refused),
            ("no_template", st.no_template),
            ("templates_refused", st.templates_refused),
            ("bad_sampling_rate", st.bad_sampling),
            ("absurd_clock", st.clock_absurd),
            ("absurd_packet_count", st.records_clamped),
            ("undecoded_sampled_header", st.sflow_headers_not_decoded),
        ];
        labelled(
            o,
            (
                "floodwatch_telemetry_skipped_total",
                COUNTER,
                "Telemetry not counted (or corrected), by reason.",
            ),
            "reason",
            skipped,
        );
        for (name, help, v) in [
            ("floodwatch_telemetry_sflow_samples_total", "sFlow flow samples.", st.sflow_flow_samples),
            ("floodwatch_telemetry_flow_records_total", "NetFlow/IPFIX flow records.", st.flow_records),
            ("floodwatch_telemetry_lost_samples_total", "sFlow samples missing from sequence numbers.", st.sflow_lost_samples),
            ("floodwatch_telemetry_late_packets_total", "Packets of flow records that began over a window before they arrived (fed from arrival on).", st.late_packets),
            ("floodwatch_telemetry_packets_total", "Packets the telemetry represents (samples and records times their sampling rate).", st.packets),
        ] {
            single(o, name, COUNTER, help, v);
        }
        single(
            o,
            "floodwatch_telemetry_exporters",
            GAUGE,
            "Exporters tracked.",
            t.exporter_count as u64,
        );
        let name = "floodwatch_telemetry_exporter_datagrams_total";
        counter(
            o,
            name,
            "Datagrams per exporter (the first 100 exporters by address).",
        );
        for e in &t.exporters {
            let addr = e.address.to_string();
            sample(
                o,
                name,
                &[("exporter", &addr), ("kind", &e.kinds)],
                e.datagrams,
            );
        }
        let name = "floodwatch_telemetry_exporter_sampling_rate";
        header(
            o,
            name,
            "gauge",
            "The latest sampling rate per exporter (1: unsampled).",
        );
        for e in &t.exporters {
            let addr = e.address.to_string();
            sample(o, name, &[("exporter", &addr)], e.sampling_rate);
        }
        let name = "floodwatch_telemetry_exporter_lost_samples_total";
        counter(o, name, "sFlow samples lost per exporter.");
        for e in &t.exporters {
            let addr = e.address.to_string();
            sample(o, name, &[("exporter", &addr)], e.lost_samples);
        }
    }

    fn render_daemon(&self, o: &mut String) {
        let r = Ordering::Relaxed;
        labelled(
            o,
            (
                "floodwatch_checkpoints_total",
                COUNTER,
                "Checkpoints of the --state file, by result (ok, failed).",
            ),
            "result",
            [
                ("ok", self.checkpoints_ok.load(r)),
                ("failed", self.checkpoints_failed.load(r)),
            ],
        );
        let secs = |ns: u64| ns as f64 / 1e9;
        for (name, help, v) in [
            (
                "floodwatch_last_checkpoint_timestamp_seconds",
                "Wall time the last successful checkpoint of the state was written (0: none yet).",
                secs(self.last_checkpoint_ns.load(r)),
            ),
            (
                "floodwatch_last_checkpoint_duration_seconds",
                "How long the last successful checkpoint took to serialise and write, off the capture path.",
                secs(self.last_checkpoint_write_ns.load(r)),
            ),
            (
                "floodwatch_last_checkpoint_pause_seconds",
                "How long the last successful checkpoint held the slowest counter shard (copying its baselines).",
                secs(self.last_checkpoint_pause_ns.load(r)),
            ),
        ] {
            header(o, name, "gauge", help);
            let _ = writeln!(o, "{name} {v:.6}");
        }
        single(
            o,
            "floodwatch_state_keys",
            GAUGE,
            "Baselines in the last successful checkpoint of the state.",
            self.state_keys.load(r),
        );
        labelled(
            o,
            (
                "floodwatch_config_reloads_total",
                COUNTER,
                "SIGHUP reloads of --config, by result (ok, failed: the running configuration was kept).",
            ),
            "result",
            [
                ("ok", self.reloads_ok.load(r)),
                ("failed", self.reloads_failed.load(r)),
            ],
        );
    }

    fn render_drops(&self, o: &mut String) {
        let r = Ordering::Relaxed;
        single(
            o,
            "floodwatch_kernel_drops_total",
            COUNTER,
            "Packets the kernel dropped before capture (0 for replay).",
            self.kernel_drops.load(r),
        );
        single(
            o,
            "floodwatch_pipeline_drops_total",
            COUNTER,
            "Packets dropped because the pipeline was full (live capture only; 0 for replay).",
            self.pipeline_drops.load(r),
        );
    }

    fn render_tables(&self, o: &mut String) {
        let r = Ordering::Relaxed;
        let keys = Scope::ALL.map(|s| (s.name(), self.table_keys[s.index()].load(r).max(0) as u64));
        labelled(
            o,
            ("floodwatch_table_keys", GAUGE, "Keys held, by scope."),
            "scope",
            keys,
        );
        let tables: [(&str, &str, &[AtomicU64; 4]); 3] = [
            (
                "floodwatch_table_evicted_total",
                "Keys evicted to make room, by scope.",
                &self.table_evicted,
            ),
            (
                "floodwatch_table_rejected_total",
                "Packets not counted under their key because the table was full, by scope.",
                &self.table_rejected,
            ),
            (
                "floodwatch_table_deferred_total",
                "Packets of new keys held back by the admission sketch, by scope.",
                &self.table_deferred,
            ),
        ];
        for (name, help, values) in tables {
            let by_scope = Scope::ALL.map(|s| (s.name(), values[s.index()].load(r)));
            labelled(o, (name, COUNTER, help), "scope", by_scope);
        }
    }

    fn render_alerts(&self, o: &mut String) {
        let r = Ordering::Relaxed;
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_class = [0u64; ALERT_CLASSES];
        for a in active.values() {
            by_class[a.class as usize] += 1;
        }
        labelled(
            o,
            (
                "floodwatch_alerts_active",
                GAUGE,
                "Alerts in progress, by class.",
            ),
            "class",
            AttackClass::ALL.map(|c| (c.name(), by_class[c as usize])),
        );
        for (name, help, values) in [
            (
                "floodwatch_alerts_started_total",
                "Alerts started, by class.",
                &self.alerts_started,
            ),
            (
                "floodwatch_alerts_ended_total",
                "Alerts ended, by class.",
                &self.alerts_ended,
            ),
        ] {
            let by_class = AttackClass::ALL.map(|c| (c.name(), values[c as usize].load(r)));
            labelled(o, (name, COUNTER, help), "class", by_class);
        }
        header(
            o,
            "floodwatch_top_pps",
            "gauge",
            "Rate of the crossed signal of each active alert (its latest start/update), heaviest first.",
        );
        let mut top: Vec<&ActiveAlert> = active.values().collect();
        top.sort_by(|a, b| b.pps.total_cmp(&a.pps).then(a.key.cmp(&b.key)));
        for a in top.into_iter().take(MAX_TOP_SERIES) {
            let key = a.key.to_string();
            let labels = [
                ("scope", a.scope.name()),
                ("key", key.as_str()),
                ("class", a.class.name()),
            ];
            let _ = writeln!(o, "floodwatch_top_pps{} {}", label_set(&labels), a.pps);
        }
    }

    fn render_evidence(&self, o: &mut String) {
        let Some(e) = self.evidence.get() else { return };
        let st = e.snapshot();
        for (name, help, v) in [
            (
                "floodwatch_evidence_files_total",
                "Evidence pcap files completed (--evidence-dir).",
                st.files,
            ),
            (
                "floodwatch_evidence_packets_total",
                "Packets written into evidence files.",
                st.packets,
            ),
            (
                "floodwatch_evidence_bytes_total",
                "Bytes of evidence files, headers included.",
                st.bytes,
            ),
            (
                "floodwatch_evidence_write_errors_total",
                "Evidence files given up on a write error.",
                st.write_errors,
            ),
        ] {
            single(o, name, COUNTER, help, v);
        }
        labelled(
            o,
            (
                "floodwatch_evidence_alerts_skipped_total",
                COUNTER,
                "Alerts that got no evidence file, by reason.",
            ),
            "reason",
            [
                ("max_bytes", st.skipped_cap),
                ("writer_behind", st.skipped_busy),
            ],
        );
        labelled(
            o,
            (
                "floodwatch_evidence_frames_lost_total",
                COUNTER,
                "Frames of alerted keys not written to their evidence file, by reason.",
            ),
            "reason",
            [
                ("writer_behind", st.dropped),
                ("rings_full", st.ring_full),
                ("link_type", st.link_skipped),
            ],
        );
        labelled(
            o,
            (
                "floodwatch_evidence_files_short_total",
                COUNTER,
                "Evidence files cut short, by reason.",
            ),
            "reason",
            [
                ("max_bytes", st.cut_at_cap),
                ("before_start", st.short_before),
            ],
        );
    }

    fn render_hook(&self, o: &mut String) {
        let Some(h) = self.hook.get() else { return };
        labelled(
            o,
            (
                "floodwatch_alert_hook_total",
                COUNTER,
                "--on-alert events by outcome (ok, failed, timeout, spawn_error, dropped).",
            ),
            "outcome",
            h.snapshot().outcomes(),
        );
    }
}

impl Metrics {
    fn render_bgp(&self, o: &mut String) {
        let Some(h) = self.bgp.get() else { return };
        let (s, active) = h.snapshot();
        labelled(
            o,
            (
                "floodwatch_exabgp_alerts_total",
                COUNTER,
                "Alerts --exabgp-pipe left unannounced, by reason (cap, never_block, source_scope).",
            ),
            "reason",
            [
                ("cap", s.refused_cap),
                ("never_block", s.refused_never_block),
                ("source_scope", s.skipped_source_scope),
            ],
        );
        labelled(
            o,
            (
                "floodwatch_exabgp_routes_total",
                COUNTER,
                "Routes announced and withdrawn through ExaBGP.",
            ),
            "action",
            [("announce", s.announced), ("withdraw", s.withdrawn)],
        );
        single(
            o,
            "floodwatch_exabgp_routes_active",
            GAUGE,
            "Routes announced now (flowspec rules and blackholes).",
            active as u64,
        );
        labelled(
            o,
            (
                "floodwatch_exabgp_lines_total",
                COUNTER,
                "Commands not written to the pipe at once (deferred, retried) or never (dropped).",
            ),
            "outcome",
            [("deferred", s.deferred), ("dropped", s.dropped)],
        );
        single(
            o,
            "floodwatch_exabgp_pipe_open_failures_total",
            COUNTER,
            "Failed opens of the pipe (missing, no reader).",
            s.open_failures,
        );
    }
}

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";

fn counter(o: &mut String, name: &str, help: &str) {
    header(o, name, COUNTER, help);
}

/// A metric (name, kind, help) with one sample, unlabelled.
fn single(o: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    header(o, name, kind, help);
    sample(o, name, &[], v);
}

/// A metric (name, kind, help) with one label: a sample for each (value of `label`, count).
fn labelled<'a>(
    o: &mut String,
    (name, kind, help): (&str, &str, &str),
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) {
    header(o, name, kind, help);
    for (value, v) in samples {
        sample(o, name, &[(label, value)], v);
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn sample(o: &mut String, name: &str, labels: &[(&str, &str)], v: u64) {
    let _ = writeln!(o, "{name}{} {v}", label_set(labels));
}

/// `{a="x",b="y"}` with values escaped, or nothing without labels.
fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::server::{read_request, route, MAX_REQUEST};
    use super::*;
    use crate::fixtures::assert_contains_all;
    use crate::time::Timestamp;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// A 60-byte packet at 5 s: what the input counters read of it (class, bytes, time), the rest
    /// default.
    fn packet(proto: u8, flags: u8, fragment: Fragment) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(5_000_000_000),
            proto,
            tcp_flags: flags,
            wire_len: 60,
            fragment,
            ..PacketSummary::default()
        }
    }

    #[test]
    fn classes_are_exclusive() {
        let syn = packet(proto::TCP, tcp_flags::SYN, Fragment::None);
        assert_eq!(TrafficClass::of(&syn), TrafficClass::TcpSyn);
        let synack = packet(proto::TCP, tcp_flags::SYN | tcp_flags::ACK, Fragment::None);
        assert_eq!(TrafficClass::of(&synack), TrafficClass::TcpOther);
        let frag = packet(proto::UDP, 0, Fragment::Later { offset: 1480 });
        assert_eq!(TrafficClass::of(&frag), TrafficClass::Fragment);
        assert_eq!(
            TrafficClass::of(&packet(proto::ICMPV6, 0, Fragment::None)),
            TrafficClass::Icmp
        );
        assert_eq!(
            TrafficClass::of(&packet(47, 0, Fragment::None)),
            TrafficClass::Other
        );
    }

    #[test]
    fn published_counts_show_in_the_exposition_and_reset_the_local() {
        let m = Metrics::new();
        let mut c = InputCounts::default();
        for _ in 0..3 {
            c.frames += 1;
            c.packet(&packet(proto::TCP, tcp_flags::SYN, Fragment::None));
        }
        c.frames += 1;
        c.not_decoded(&crate::decode::DecodeError::Empty);
        m.publish_input(&mut c);
        assert_eq!(c.frames, 0);
        m.publish_input(&mut c);
        let text = m.render();
        assert!(text.contains("floodwatch_frames_total 4\n"), "{text}");
        assert!(text.contains("floodwatch_packets_total{class=\"tcp_syn\"} 3\n"));
        assert!(text.contains("floodwatch_bytes_total{class=\"tcp_syn\"} 180\n"));
        assert!(text.contains("floodwatch_frames_not_decoded_total{reason=\"empty\"} 1\n"));
        assert!(text.contains("floodwatch_last_packet_timestamp_seconds 5.000000\n"));
        assert_eq!(m.packets_total(), 3);
    }

    #[test]
    fn table_deltas_add_up_across_publications() {
        let m = Metrics::new();
        let mut prev = EngineStats::default();
        let mut now = EngineStats::default();
        now.tables[0].evicted = 5;
        now.keys[0] = 10;
        m.publish_tables(&mut prev, &now);
        now.tables[0].evicted = 7;
        now.keys[0] = 4;
        m.publish_tables(&mut prev, &now);
        let text = m.render();
        assert!(text.contains("floodwatch_table_evicted_total{scope=\"dst_host\"} 7\n"));
        assert!(text.contains("floodwatch_table_keys{scope=\"dst_host\"} 4\n"));
    }

    #[test]
    fn checkpoints_and_reloads_show_in_the_exposition() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("floodwatch_checkpoints_total{result=\"ok\"} 0\n"));
        assert!(text.contains("floodwatch_last_checkpoint_timestamp_seconds 0.000000\n"));
        m.record_checkpoint(&CheckpointReport {
            ok: true,
            keys: 1234,
            pause: Duration::from_micros(2500),
            write: Duration::from_millis(40),
            at: crate::time::Timestamp(1_764_081_790_250_000_000),
        });
        m.record_checkpoint(&CheckpointReport {
            ok: false,
            keys: 99,
            pause: Duration::ZERO,
            write: Duration::ZERO,
            at: crate::time::Timestamp(1),
        });
        m.record_reload(true);
        m.record_reload(false);
        m.record_reload(false);
        let text = m.render();
        assert_contains_all(
            &text,
            &[
                "floodwatch_checkpoints_total{result=\"ok\"} 1\n",
                "floodwatch_checkpoints_total{result=\"failed\"} 1\n",
                "floodwatch_last_checkpoint_timestamp_seconds 1764081790.250000\n",
                "floodwatch_last_checkpoint_duration_seconds 0.040000\n",
                "floodwatch_last_checkpoint_pause_seconds 0.002500\n",
                "floodwatch_state_keys 1234\n",
                "floodwatch_config_reloads_total{result=\"ok\"} 1\n",
                "floodwatch_config_reloads_total{result=\"failed\"} 2\n",
            ],
        );
    }

    #[test]
    fn evidence_counters_show_only_with_evidence_dir() {
        let m = Metrics::new();
        assert!(!m.render().contains("floodwatch_evidence"));
        let c = Arc::new(crate::evidence_pcap::EvidenceCounters::new(10));
        c.add_dropped(3);
        assert!(c.admit_file());
        assert!(!c.admit_file(), "24 header bytes are over a budget of 10");
        m.attach_evidence(Arc::clone(&c));
        let text = m.render();
        assert_contains_all(
            &text,
            &[
                "floodwatch_evidence_files_total 0",
                "floodwatch_evidence_frames_lost_total{reason=\"writer_behind\"} 3",
                "floodwatch_evidence_alerts_skipped_total{reason=\"max_bytes\"} 1",
                "# TYPE floodwatch_evidence_files_short_total counter",
            ],
        );
    }

    #[test]
    fn listen_addresses_default_to_loopback() {
        let a = parse_listen_addr("9464").unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:9464");
        assert_eq!(parse_listen_addr(":9464").unwrap(), a);
        assert_eq!(
            parse_listen_addr("[::1]:9464").unwrap().to_string(),
            "[::1]:9464"
        );
        assert!(parse_listen_addr("0.0.0.0:9464").is_ok());
        assert!(parse_listen_addr("eth0").is_err());
    }

    #[test]
    fn routes_only_get_metrics() {
        let m = Metrics::new();
        assert_eq!(route("GET /metrics HTTP/1.1\r\n\r\n", &m).0, "200 OK");
        assert_eq!(route("GET /metrics?x=1 HTTP/1.1\r\n\r\n", &m).0, "200 OK");
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n", &m).0, "404 Not Found");
        assert!(route("POST /metrics HTTP/1.1\r\n\r\n", &m)
            .0
            .starts_with("405"));
        assert!(route("", &m).0.starts_with("405"));
    }

    #[test]
    fn server_answers_over_loopback_and_caps_requests() {
        let m = Arc::new(Metrics::new());
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&m)).unwrap();
        let get = |req: &[u8]| {
            let mut s = TcpStream::connect(srv.local_addr()).unwrap();
            s.write_all(req).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("floodwatch_run_finished 0"));
        assert!(get(b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let huge = vec![b'a'; MAX_REQUEST];
        assert!(get(&huge).starts_with("HTTP/1.1 431"));
        srv.shutdown();
    }

    #[test]
    fn a_request_trickling_in_is_cut_at_the_deadline() {
        // One byte every 20 ms never trips a per-read timeout; the head of 8 KiB would take minutes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            for _ in 0..MAX_REQUEST {
                if s.write_all(b"a").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let (mut server_side, _) = listener.accept().unwrap();
        let got = read_request(&mut server_side, Duration::from_millis(200));
        assert!(
            got.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut),
            "{got:?}"
        );
        drop(server_side);
        client.join().unwrap();
    }

    /// `--exabgp-pipe`'s counters on the endpoint (the announcer's own tests are in
    /// src/mitigation/bgp/tests.rs, whose helpers this borrows).
    #[test]
    fn the_metrics_endpoint_shows_the_counters() {
        use crate::mitigation::bgp::tests::{config, reader, start, Fifo};
        use crate::mitigation::bgp::{Announcer, BgpConfig, Blackhole, BLACKHOLE_COMMUNITY};
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
        let m = Metrics::new();
        m.attach_bgp(a.stats_handle());
        // a dst_subnet alert: a flowspec rule, no blackhole; then a host that does not fit
        let mut subnet = start("s", "198.51.100.0/24");
        subnet.scope = Scope::DstSubnet;
        a.on_event(&subnet);
        a.on_event(&start("h", "198.51.100.99"));
        let text = m.render();
        assert_contains_all(
            &text,
            &[
                "floodwatch_exabgp_routes_total{action=\"announce\"} 1",
                "floodwatch_exabgp_routes_active 1",
                "floodwatch_exabgp_alerts_total{reason=\"cap\"} 1",
                "floodwatch_exabgp_lines_total{outcome=\"dropped\"} 0",
            ],
        );
        let stats = a.finish();
        assert_eq!(stats.withdrawn, 1);
    }
}
