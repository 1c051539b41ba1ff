//! What a run saw: the counters gathered from every stage, the alert tally, and the summary printed
//! on stderr at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::alert::{AlertEvent, AttackClass, EventKind};
use crate::capture::CaptureStats;
use crate::clock::ClockStats;
use crate::decode::DecodeStats;
use crate::detect::EngineStats;
use crate::key::{Key, Scope};
use crate::report::record::{Counter, RunTotals};
use crate::time::Timestamp;

/// What a run saw, for the summary.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Frames read from the source.
    pub frames: u64,
    /// Frames decoded into packets.
    pub packets: u64,
    /// Wire bytes of decoded packets.
    pub bytes: u64,
    pub decode: DecodeStats,
    pub capture: CaptureStats,
    pub first_ts: Option<Timestamp>,
    pub last_ts: Option<Timestamp>,
    /// Per shard.
    pub engine: Vec<EngineStats>,
    /// Frames read by each capture thread (several only with a fanout group).
    pub frames_per_capture_thread: Vec<u64>,
    /// The stream's timestamps, as the router's clock saw them.
    pub clock: ClockStats,
    /// Packets left out by `ignore` / `ours` networks.
    pub ignored_packets: u64,
    pub alerts: AlertTally,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The output closed early (e.g. `| head`): the run stopped quietly.
    pub output_closed: bool,
    /// Ctrl-C / SIGTERM stopped the run.
    pub interrupted: bool,
    /// Peak resident memory of the process, in bytes (Linux; None elsewhere).
    pub peak_rss: Option<u64>,
    /// CPU time of the process so far (user, system), to the microsecond.
    pub cpu: Option<(Duration, Duration)>,
    /// The source was a live interface.
    pub live: bool,
    /// Packets read but not counted because the shards were behind (live capture only).
    pub pipeline_drops: u64,
    /// Batches those packets travelled in.
    pub pipeline_dropped_batches: u64,
    /// `floodwatch collect`: what the telemetry stage counted.
    pub telemetry: Option<TelemetrySummary>,
    /// With [`PipelineConfig::record`](super::PipelineConfig::record): what the reading stage
    /// recorded for the report.
    pub recorded: Option<Box<RecordedInput>>,
    /// `--evidence-dir`: the files written and what they missed.
    pub evidence: Option<EvidenceSummary>,
}

/// What the reading stage records for a report: the input's traffic over time and its distinct
/// sources.
#[derive(Clone, Debug, Default)]
pub struct RecordedInput {
    pub traffic: crate::report::TrafficSeries,
    pub distinct_sources: u64,
}

/// The evidence part of a [`RunSummary`].
#[derive(Clone, Debug, Default)]
pub struct EvidenceSummary {
    pub dir: std::path::PathBuf,
    pub stats: crate::evidence_pcap::EvidenceStats,
}

/// The telemetry part of a [`RunSummary`].
#[derive(Clone, Debug, Default)]
pub struct TelemetrySummary {
    pub stats: crate::telemetry::TelemetryStats,
    pub exporters: Vec<crate::telemetry::ExporterInfo>,
    /// Frames that were not UDP datagrams, and UDP datagrams to other ports than asked.
    pub frames_not_udp: u64,
    pub frames_other_port: u64,
}

impl RunSummary {
    /// Packet-time span of the input, in seconds.
    pub fn capture_seconds(&self) -> f64 {
        match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// Frames per wall-clock second.
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// What a report's recording keeps of the run: span, totals, and the counters in the order a
    /// report lists them.
    pub fn report_totals(&self) -> RunTotals {
        let c = |name: &str, value: u64| Counter {
            name: name.to_string(),
            value,
        };
        RunTotals {
            first_ns: self.first_ts.map(|t| t.0),
            last_ns: self.last_ts.map(|t| t.0),
            frames: self.frames,
            packets: self.packets,
            bytes: self.bytes,
            counters: vec![
                c("frames not decoded", self.decode.total()),
                c("kernel drops", self.capture.kernel_drops),
                c("pipeline drops", self.pipeline_drops),
                c(
                    "packets ignored (ignore/ours networks)",
                    self.ignored_packets,
                ),
                c("packets stamped out of order", self.clock.late_packets),
                c("time jumps", self.clock.time_jumps),
            ],
        }
    }
}

/// Alerts the sink wrote, by class, and the heaviest targets.
#[derive(Clone, Debug, Default)]
pub struct AlertTally {
    pub started: BTreeMap<AttackClass, u64>,
    /// `end` events written.
    pub ended: u64,
    pub events: u64,
    /// Peak rate per alerted (scope, key).
    pub peaks: BTreeMap<(Scope, Key), (AttackClass, f64)>,
}

impl AlertTally {
    pub(super) fn count(&mut self, e: &AlertEvent) {
        self.events += 1;
        match e.event {
            EventKind::Start => *self.started.entry(e.class).or_default() += 1,
            EventKind::End => self.ended += 1,
            EventKind::Update => {}
        }
        let p = self.peaks.entry((e.scope, e.key)).or_insert((e.class, 0.0));
        if e.peak_pps > p.1 {
            *p = (e.class, e.peak_pps);
        }
    }

    /// Alerts started and not yet ended.
    pub fn active(&self) -> u64 {
        self.started
            .values()
            .sum::<u64>()
            .saturating_sub(self.ended)
    }

    /// The `n` heaviest alerted destinations (hosts and subnets), heaviest first.
    pub fn top_targets(&self, n: usize) -> Vec<(Scope, Key, AttackClass, f64)> {
        let mut v: Vec<_> = self
            .peaks
            .iter()
            .filter(|((s, _), _)| s.is_destination())
            .map(|((s, k), (c, p))| (*s, *k, *c, *p))
            .collect();
        v.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.1.cmp(&b.1)));
        v.truncate(n);
        v
    }
}

/// The end-of-run summary printed on stderr.
/// The telemetry lines of the summary: datagrams by kind, what they held, what was not used, and
/// one line per exporter (the first 20).
fn render_telemetry(o: &mut String, t: &TelemetrySummary) {
    use std::fmt::Write as _;
    let st = &t.stats;
    let _ = writeln!(
        o,
        "  telemetry datagrams {} (sflow {}, netflow5 {}, netflow9 {}, ipfix {}); samples {}, \
         flow records {}; packets represented {}",
        st.datagrams,
        st.sflow_datagrams,
        st.netflow5_datagrams,
        st.netflow9_datagrams,
        st.ipfix_datagrams,
        st.sflow_flow_samples,
        st.flow_records,
        st.packets
    );
    let mut notes: Vec<String> = crate::telemetry::Malformed::ALL
        .iter()
        .zip(st.malformed.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(m, n)| format!("malformed {} {n}", m.name()))
        .collect();
    for (name, n) in [
        ("frames not UDP", t.frames_not_udp),
        ("UDP to other ports", t.frames_other_port),
        ("not allowed", st.not_allowed),
        ("exporters over the cap", st.exporters_refused),
        ("lost samples", st.sflow_lost_samples),
        ("undecoded sampled headers", st.sflow_headers_not_decoded),
        ("counter samples", st.sflow_counter_samples),
        ("data without template", st.no_template),
        ("templates refused", st.templates_refused),
        ("bad sampling rates", st.bad_sampling),
        ("absurd exporter clocks", st.clock_absurd),
        (
            "flow records clamped (absurd packet counts)",
            st.records_clamped,
        ),
        (
            "flow packets counted late (record began over a window before arrival)",
            st.late_packets,
        ),
    ] {
        if n > 0 {
            notes.push(format!("{name} {n}"));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(o, "  telemetry: {}", notes.join(", "));
    }
    for e in t.exporters.iter().take(20) {
        let _ = writeln!(
            o,
            "  exporter {} {}: datagrams {}, {} {}, sampling 1:{}{}{}",
            e.address,
            e.kinds,
            e.datagrams,
            if e.kinds == "sflow" {
                "samples"
            } else {
                "records"
            },
            e.units,
            e.sampling_rate,
            if e.lost_samples > 0 {
                format!(", lost samples {}", e.lost_samples)
            } else {
                String::new()
            },
            if e.templates > 0 {
                format!(", templates {}", e.templates)
            } else {
                String::new()
            }
        );
    }
    if t.exporters.len() > 20 {
        let _ = writeln!(o, "  … and {} more exporters", t.exporters.len() - 20);
    }
}

/// The evidence lines: files written, then what did not make it into them (when anything).
fn render_evidence(o: &mut String, e: &EvidenceSummary) {
    use std::fmt::Write as _;
    let st = &e.stats;
    let _ = writeln!(
        o,
        "  evidence files {}  packets {}  bytes {}  in {}",
        st.files,
        st.packets,
        st.bytes,
        e.dir.display()
    );
    let lost: Vec<String> = [
        ("alerts skipped at --evidence-max-bytes", st.skipped_cap),
        ("alerts skipped (writer behind)", st.skipped_busy),
        ("files cut at --evidence-max-bytes", st.cut_at_cap),
        ("frames dropped (writer behind)", st.dropped),
        ("frames dropped (rings full)", st.ring_full),
        ("frames of another link type skipped", st.link_skipped),
        ("files short of --evidence-before", st.short_before),
        ("write errors", st.write_errors),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{what} {n}"))
    .collect();
    if !lost.is_empty() {
        let _ = writeln!(o, "  evidence: {}", lost.join(", "));
    }
}

pub fn render_summary(s: &RunSummary) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let secs = s.elapsed.as_secs_f64();
    let _ = writeln!(
        o,
        "floodwatch summary{}",
        if s.interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(
        o,
        "  frames {}  packets {}  bytes {}  capture span {:.3} s",
        s.frames,
        s.packets,
        s.bytes,
        s.capture_seconds()
    );
    let _ = writeln!(
        o,
        "  {} {:.3} s: {:.0} packets/s ({:.2} M/s)",
        if s.live {
            "captured for"
        } else {
            "replayed in"
        },
        secs,
        s.frames_per_second(),
        s.frames_per_second() / 1e6
    );
    if s.frames_per_capture_thread.len() > 1 {
        let each: Vec<String> = s
            .frames_per_capture_thread
            .iter()
            .map(u64::to_string)
            .collect();
        let _ = writeln!(
            o,
            "  capture threads {}: frames {}",
            each.len(),
            each.join(" / ")
        );
        if s.capture.spreads > 0 {
            let _ = writeln!(
                o,
                "  the first capture thread fell behind {} time{}: packets were spread over every socket",
                s.capture.spreads,
                if s.capture.spreads == 1 { "" } else { "s" }
            );
        }
    }
    let skipped: Vec<String> = crate::decode::SkipReason::ALL
        .iter()
        .filter(|r| s.decode.by_reason[r.index()] > 0)
        .map(|r| format!("{} {}", r.name(), s.decode.by_reason[r.index()]))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(o, "  not decoded: {}", skipped.join(", "));
    }
    for (lt, n) in &s.decode.unsupported_link_types {
        let _ = writeln!(o, "  unsupported link type {lt}: {n} frames");
    }
    if s.live || s.capture.kernel_drops > 0 || s.pipeline_drops > 0 {
        let _ = writeln!(
            o,
            "  kernel drops {}  pipeline drops {} ({} batches)",
            s.capture.kernel_drops, s.pipeline_drops, s.pipeline_dropped_batches
        );
    }
    if let Some(t) = &s.telemetry {
        render_telemetry(&mut o, t);
    }
    if let Some(e) = &s.evidence {
        render_evidence(&mut o, e);
    }
    if s.ignored_packets > 0 {
        let _ = writeln!(
            o,
            "  packets left out by ignore/ours networks: {}",
            s.ignored_packets
        );
    }
    if s.capture.unknown_blocks > 0 {
        let _ = writeln!(
            o,
            "  pcapng blocks of unknown type skipped: {}",
            s.capture.unknown_blocks
        );
    }
    // every shard evaluates at the same times: the first one speaks for all
    let evaluations = s.engine.first().map_or(0, |e| e.evaluations);
    if s.clock.late_packets > 0 || s.clock.time_jumps > 0 {
        let _ = writeln!(
            o,
            "  timestamps: late_packets {} (stepped back, counted at the latest time), \
             time_jumps {} (long silences crossed or restarts after a step back), evaluations {}",
            s.clock.late_packets, s.clock.time_jumps, evaluations
        );
    }
    let mut tables = [crate::table::TableStats::default(); 4];
    for e in &s.engine {
        for (t, x) in tables.iter_mut().zip(e.tables.iter()) {
            t.rejected += x.rejected;
            t.deferred += x.deferred;
            t.evicted += x.evicted;
            t.peak_len += x.peak_len;
        }
    }
    let keys: Vec<String> = Scope::ALL
        .iter()
        .map(|sc| {
            let t = &tables[sc.index()];
            let mut line = format!("{} {}", sc.name(), t.peak_len);
            if t.rejected > 0 {
                line += &format!(" ({} packets over the key cap)", t.rejected);
            }
            if t.evicted > 0 {
                line += &format!(" ({} idle keys evicted)", t.evicted);
            }
            line
        })
        .collect();
    let _ = writeln!(o, "  peak keys: {}", keys.join(", "));
    let (dh, ds) = (
        tables[Scope::SrcHost.index()].deferred,
        tables[Scope::SrcSubnet.index()].deferred,
    );
    if dh + ds > 0 {
        let _ = writeln!(
            o,
            "  packets not tracked by source (sources too small to matter, e.g. spoofed): src_host {dh}, src_subnet {ds}"
        );
    }
    if let Some((user, system)) = s.cpu {
        let _ = writeln!(
            o,
            "  CPU {:.3} s (user {:.3} s, system {:.3} s)",
            (user + system).as_secs_f64(),
            user.as_secs_f64(),
            system.as_secs_f64()
        );
    }
    if let Some(rss) = s.peak_rss {
        let _ = writeln!(o, "  peak memory {} MiB", rss.div_ceil(1 << 20));
    }
    if s.alerts.started.is_empty() {
        let _ = writeln!(o, "  alerts: none");
    } else {
        let by: Vec<String> = s
            .alerts
            .started
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(o, "  alerts started: {}", by.join(", "));
        for (scope, key, class, peak) in s.alerts.top_targets(5) {
            let _ = writeln!(o, "  target {scope} {key}: {class}, peak {peak:.0}/s");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_evidence_files_and_what_they_missed() {
        let mut s = RunSummary {
            evidence: Some(EvidenceSummary {
                dir: "ev".into(),
                stats: crate::evidence_pcap::EvidenceStats {
                    files: 2,
                    packets: 500,
                    bytes: 38_048,
                    ..Default::default()
                },
            }),
            ..RunSummary::default()
        };
        let text = render_summary(&s);
        assert!(
            text.contains("evidence files 2  packets 500  bytes 38048  in ev"),
            "{text}"
        );
        assert!(!text.contains("evidence:"), "nothing lost: {text}");
        if let Some(e) = &mut s.evidence {
            e.stats.dropped = 7;
            e.stats.skipped_cap = 1;
        }
        let text = render_summary(&s);
        assert!(
            text.contains(
                "evidence: alerts skipped at --evidence-max-bytes 1, frames dropped (writer behind) 7"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_summary_counts_evictions_and_rejections() {
        let mut e = EngineStats::default();
        e.tables[Scope::DstHost.index()].evicted = 7;
        e.tables[Scope::DstHost.index()].rejected = 3;
        let s = RunSummary {
            engine: vec![e],
            ..RunSummary::default()
        };
        let text = render_summary(&s);
        assert!(text.contains("7 idle keys evicted"), "{text}");
        assert!(text.contains("3 packets over the key cap"), "{text}");
    }
}
