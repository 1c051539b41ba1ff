//! Flow telemetry: sFlow v5, NetFlow v5/v9 and IPFIX datagrams from routers and switches turned into
//! the same [`PacketSummary`]s the frame decoder makes, each with a `weight` (the packets it stands
//! for), so the routed shards and the engine never know where a summary came from.
//!
//! - **sFlow** flow samples carry the first bytes of a sampled frame: they go through the frame
//!   [`Decoder`]; each stands for `sampling_rate` packets of its frame length. Packet time is the
//!   datagram's arrival (capture time on `--pcap`, the wall clock on `--listen`).
//! - **NetFlow/IPFIX** records describe a flow over `[first, last]` in the exporter's clock (sysUpTime
//!   stamps turned into Unix time with the header's export time, or absolute IPFIX times). An
//!   exporter whose clock is more than two seconds off ours (the smallest arrival − export time of
//!   its datagrams) has that offset added; a record ending over an hour before arrival or ten
//!   minutes after it is absurd: it is placed at arrival and counted. A record's packets are spread
//!   evenly over its length in tick-sized slices (at most 64), starting at arrival — or at its own
//!   start when that is still to come (an exporter reading a capture faster than it was taken):
//!   the slices after now are queued and released in time order. Past windows have already been
//!   judged, so a record that began more than a window before it arrived is fed from arrival on,
//!   at its own rate, and its packets are counted as `late`: a 60-s active-timeout record keeps
//!   its rate for the next 60 s instead of becoming a one-tick burst, and the summary says how
//!   much arrived late.
//!
//! Every datagram is bounds-checked (a cursor whose reads stop at the end); malformed ones are counted by
//! [`Malformed`] reason, never trusted. Exporters are capped (`max_exporters`, idle ones evicted
//! after ten minutes), templates per exporter too, and `allow` narrows who may send at all.

mod netflow;
mod sflow;
mod wire;

/// Datagram builders: well-formed sFlow v5, NetFlow v5/v9 and IPFIX for tests and benchmarks.
#[doc(hidden)]
pub mod build {
    pub use super::netflow::build as netflow;
    pub use super::sflow::build as sflow;
}

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;

use foldhash::fast::FixedState;

use crate::decode::{tcp_flags, Decoder, Fragment, LinkType, PacketSummary};
use crate::key::Key;
use crate::time::Timestamp;

use netflow::{FlowRecord, Templates, MAX_SAMPLING_RATE};

/// Why a datagram (or the rest of it) was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("ends inside a header or field")]
    Truncated,
    #[error("a length points past its datagram or set")]
    BadLength,
    #[error("an absurd record or sample count")]
    BadCount,
    #[error("an invalid template or field")]
    BadField,
    #[error("not sFlow v5, NetFlow v5/v9 or IPFIX")]
    UnknownVersion,
}

impl Malformed {
    pub const ALL: [Malformed; 5] = [
        Malformed::Truncated,
        Malformed::BadLength,
        Malformed::BadCount,
        Malformed::BadField,
        Malformed::UnknownVersion,
    ];

    /// The counter's name in the summary and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::Truncated => "truncated",
            Malformed::BadLength => "bad_length",
            Malformed::BadCount => "bad_count",
            Malformed::BadField => "bad_field",
            Malformed::UnknownVersion => "unknown_version",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Settings of the telemetry stage.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Exporters tracked at once; datagrams from more are refused and counted.
    pub max_exporters: usize,
    /// Templates kept per exporter (NetFlow v9 / IPFIX).
    pub max_templates: usize,
    /// When not empty, only exporters inside one of these prefixes are heard.
    pub allow: Vec<Key>,
    /// The detector's window and tick (ns): how far back a flow's packets still count, and the
    /// step they are spread in.
    pub window_ns: u64,
    pub tick_ns: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            max_exporters: 10_000,
            max_templates: 64,
            allow: Vec::new(),
            window_ns: 1_000_000_000,
            tick_ns: 100_000_000,
        }
    }
}

/// One telemetry datagram as received.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    /// Arrival time (capture time, or the wall clock when listening).
    pub ts: Timestamp,
    /// The sender's address.
    pub exporter: IpAddr,
    pub payload: &'a [u8],
}

/// What the telemetry stage counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryStats {
    pub datagrams: u64,
    pub sflow_datagrams: u64,
    pub netflow5_datagrams: u64,
    pub netflow9_datagrams: u64,
    pub ipfix_datagrams: u64,
    /// Datagrams (or their rest) not used, in [`Malformed::ALL`] order.
    pub malformed: [u64; 5],
    /// Datagrams from exporters outside `allow`.
    pub not_allowed: u64,
    /// Datagrams refused because `max_exporters` were tracked.
    pub exporters_refused: u64,
    pub sflow_flow_samples: u64,
    pub sflow_counter_samples: u64,
    pub sflow_other_samples: u64,
    pub sflow_other_records: u64,
    /// Raw packet headers the frame decoder could not read.
    pub sflow_headers_not_decoded: u64,
    /// Samples missing from sequence numbers (per agent, sub-agent and data source).
    pub sflow_lost_samples: u64,
    /// NetFlow and IPFIX flow records.
    pub flow_records: u64,
    pub templates: u64,
    /// Templates not kept: the exporter already has the most allowed.
    pub templates_refused: u64,
    pub templates_withdrawn: u64,
    /// Data sets whose template was never received.
    pub no_template: u64,
    pub options_records: u64,
    /// Sampling rates of 0 or above 2^20 (taken as 1 or clamped), of sFlow samples and flow
    /// records.
    pub bad_sampling: u64,
    /// Flow records whose times were absurd against the arrival (placed at arrival).
    pub clock_absurd: u64,
    /// Flow records claiming more than 2^34 packets (sampling included): clamped.
    pub records_clamped: u64,
    /// Packets of flow records that began more than a window before they arrived: fed from
    /// arrival on, at their rate (how late the exporter's timeouts make flows).
    pub late_packets: u64,
    /// Summaries made, and the packets they stand for.
    pub summaries: u64,
    pub packets: u64,
}

impl TelemetryStats {
    /// Datagrams not used in full.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

/// One exporter as the summary shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterInfo {
    pub address: IpAddr,
    /// "sflow", "netflow5", "netflow9", "ipfix" (several joined by '+').
    pub kinds: String,
    pub datagrams: u64,
    /// sFlow flow samples or flow records.
    pub units: u64,
    /// The latest sampling rate seen (sFlow samples, v5 header or options), 1 if none.
    pub sampling_rate: u64,
    pub lost_samples: u64,
    pub templates: usize,
}

const KIND_SFLOW: u8 = 1;
const KIND_V5: u8 = 2;
const KIND_V9: u8 = 4;
const KIND_IPFIX: u8 = 8;

/// sFlow sequence streams tracked per exporter.
const MAX_SEQUENCES: usize = 4096;
/// An exporter silent this long (packet time) may be evicted to make room.
const EXPORTER_IDLE_NS: u64 = 600_000_000_000;
/// Records older than this at export, or further in the future, have an absurd clock.
const MAX_AGE_MS: i64 = 3_600_000;
const MAX_FUTURE_MS: i64 = 600_000;
/// Packets one flow record may stand for (sampling included): 2^34, ~17 billion — a 100 Gbit/s link
/// of minimum-size frames for two minutes. Beyond, the record is clamped and counted.
const MAX_RECORD_PACKETS: u128 = 1 << 34;
/// An exporter clock this close to ours is taken as right.
const CLOCK_SLACK_MS: i64 = 2_000;
/// Slices a flow record's future part is spread over at most.
const MAX_SLICES: u64 = 64;
/// Queued slices beyond which the earliest are released early.
const MAX_QUEUED: usize = 1 << 20;

struct Exporter {
    kinds: u8,
    datagrams: u64,
    units: u64,
    sampling_rate: u64,
    lost_samples: u64,
    /// Last sample sequence per (agent, sub-agent, data source).
    sequences: HashMap<(IpAddr, u32, u32), u32, FixedState>,
    templates: Templates,
    last_seen: Timestamp,
    /// The smallest (arrival − export time) of its flow datagrams, ms.
    min_offset_ms: Option<i64>,
}

/// A flow slice waiting for its time.
#[derive(Debug)]
struct Queued {
    ts: u64,
    seq: u64,
    p: PacketSummary,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(other.ts, other.seq))
    }
}

/// The telemetry stage: datagrams in, weighted packet summaries out, in time order.
pub struct Telemetry {
    cfg: TelemetryConfig,
    exporters: HashMap<IpAddr, Exporter, FixedState>,
    stats: TelemetryStats,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    /// Packet time of the last look for idle exporters.
    last_eviction: Timestamp,
    /// The records of the datagram at hand (kept to reuse the allocation).
    records: Vec<FlowRecord>,
}

impl Telemetry {
    pub fn new(cfg: TelemetryConfig) -> Self {
        Telemetry {
            cfg,
            exporters: HashMap::with_hasher(FixedState::with_seed(0x7e1e)),
            stats: TelemetryStats::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            last_eviction: Timestamp(0),
            records: Vec::new(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &TelemetryStats {
        &self.stats
    }

    /// Exporters heard, by address.
    pub fn exporters(&self) -> Vec<ExporterInfo> {
        let mut v: Vec<ExporterInfo> = self
            .exporters
            .iter()
            .map(|(addr, e)| {
                let names = [
                    (KIND_SFLOW, "sflow"),
                    (KIND_V5, "netflow5"),
                    (KIND_V9, "netflow9"),
                    (KIND_IPFIX, "ipfix"),
                ];
                let kinds: Vec<&str> = names
                    .iter()
                    .filter(|(k, _)| e.kinds & k != 0)
                    .map(|(_, n)| *n)
                    .collect();
                ExporterInfo {
                    address: *addr,
                    kinds: kinds.join("+"),
                    datagrams: e.datagrams,
                    units: e.units,
                    sampling_rate: e
                        .templates
                        .announced_sampling()
                        .unwrap_or(e.sampling_rate)
                        .max(1),
                    lost_samples: e.lost_samples,
                    templates: e.templates.len(),
                }
            })
            .collect();
        v.sort_by_key(|e| e.address);
        v
    }

    /// Decodes one datagram; appends the summaries due by its arrival to `out`, in time order.
    pub fn datagram(&mut self, d: &Datagram<'_>, out: &mut Vec<PacketSummary>) {
        let before = out.len();
        self.decode_datagram(d, out);
        self.count_out(&out[before..]);
    }

    fn decode_datagram(&mut self, d: &Datagram<'_>, out: &mut Vec<PacketSummary>) {
        self.stats.datagrams += 1;
        let now = d.ts;
        self.release(now.0, out);
        if !self.cfg.allow.is_empty() && !self.cfg.allow.iter().any(|k| k.contains(d.exporter)) {
            self.stats.not_allowed += 1;
            return;
        }
        let kind = match recognise(d.payload) {
            Ok(k) => k,
            Err(m) => {
                self.stats.malformed[m.index()] += 1;
                return;
            }
        };
        if !self.exporters.contains_key(&d.exporter) && !self.make_room(now) {
            self.stats.exporters_refused += 1;
            return;
        }
        let cap = self.cfg.max_templates;
        let exporter = self
            .exporters
            .entry(d.exporter)
            .or_insert_with(|| Exporter {
                kinds: 0,
                datagrams: 0,
                units: 0,
                sampling_rate: 1,
                lost_samples: 0,
                sequences: HashMap::with_hasher(FixedState::with_seed(0x5e9)),
                templates: Templates::new(cap),
                last_seen: now,
                min_offset_ms: None,
            });
        exporter.kinds |= kind;
        exporter.datagrams += 1;
        exporter.last_seen = now;
        let result = match kind {
            KIND_SFLOW => {
                self.stats.sflow_datagrams += 1;
                let mut v = SflowSink {
                    exporter,
                    stats: &mut self.stats,
                    out,
                    now,
                    agent: None,
                    rate: 1,
                };
                sflow::parse(d.payload, &mut v)
            }
            _ => {
                let records_before = self.stats.flow_records;
                let mut records = std::mem::take(&mut self.records);
                records.clear();
                let r = if kind == KIND_V5 {
                    self.stats.netflow5_datagrams += 1;
                    netflow::parse_v5(d.payload, &mut self.stats, &mut |r| records.push(*r))
                } else {
                    if kind == KIND_V9 {
                        self.stats.netflow9_datagrams += 1;
                    } else {
                        self.stats.ipfix_datagrams += 1;
                    }
                    netflow::parse_templated(
                        d.payload,
                        &mut exporter.templates,
                        &mut self.stats,
                        &mut |r| records.push(*r),
                    )
                };
                exporter.units += self.stats.flow_records - records_before;
                if kind == KIND_V5 {
                    if let Some(r) = records.first() {
                        exporter.sampling_rate = r.sampling;
                    }
                }
                // The exporter's clock against ours: the smallest (arrival − export time) seen,
                // which network delay only makes larger. Applied only past two seconds, so an
                // exporter within NTP's reach keeps its own (finer) times.
                if let Some(r) = records.first() {
                    let o = (now.0 / 1_000_000) as i64 - r.export_ms;
                    exporter.min_offset_ms = Some(exporter.min_offset_ms.map_or(o, |m| m.min(o)));
                }
                let offset = exporter
                    .min_offset_ms
                    .filter(|o| o.abs() > CLOCK_SLACK_MS)
                    .unwrap_or(0);
                for rec in &records {
                    self.flow(now, offset, rec, out);
                }
                self.records = records;
                r
            }
        };
        if let Err(m) = result {
            self.stats.malformed[m.index()] += 1;
        }
    }

    /// Time has reached `now` (an idle live source): appends the queued slices due.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<PacketSummary>) {
        let before = out.len();
        self.release(now.0, out);
        self.count_out(&out[before..]);
    }

    /// The input is over: appends every queued slice.
    pub fn finish(&mut self, out: &mut Vec<PacketSummary>) {
        let before = out.len();
        self.release(u64::MAX, out);
        self.count_out(&out[before..]);
    }

    fn count_out(&mut self, ps: &[PacketSummary]) {
        for p in ps {
            self.stats.summaries += 1;
            self.stats.packets += u64::from(p.weight);
        }
    }

    fn release(&mut self, now: u64, out: &mut Vec<PacketSummary>) {
        while let Some(Reverse(q)) = self.queue.peek() {
            if q.ts > now && self.queue.len() <= MAX_QUEUED {
                break;
            }
            if let Some(Reverse(q)) = self.queue.pop() {
                out.push(q.p);
            }
        }
    }

    /// Whether a new exporter fits, evicting exporters idle for ten minutes when full (at most one
    /// look per second of packet time, so a flood of new senders costs no scan per datagram).
    fn make_room(&mut self, now: Timestamp) -> bool {
        if self.exporters.len() < self.cfg.max_exporters {
            return true;
        }
        if now.saturating_sub(self.last_eviction) < 1_000_000_000 {
            return false;
        }
        self.last_eviction = now;
        self.exporters
            .retain(|_, e| now.saturating_sub(e.last_seen) < EXPORTER_IDLE_NS);
        self.exporters.len() < self.cfg.max_exporters
    }

    /// Places one flow record's packets on the timeline (see the module doc).
    fn flow(
        &mut self,
        now: Timestamp,
        offset_ms: i64,
        rec: &FlowRecord,
        out: &mut Vec<PacketSummary>,
    ) {
        let mut total =
            u128::from(rec.packets) * u128::from(rec.sampling.clamp(1, MAX_SAMPLING_RATE));
        if total == 0 {
            return;
        }
        if total > MAX_RECORD_PACKETS {
            // a record's packets become at most a few summaries per slice, whatever it claims
            self.stats.records_clamped += 1;
            total = MAX_RECORD_PACKETS;
        }
        let now_ns = i128::from(now.0);
        let ms = |t: i64| (i128::from(t) + i128::from(offset_ms)) * 1_000_000;
        let end = rec.end_ms.map_or(now_ns, ms);
        let start = rec.start_ms.map_or(end, ms).min(end);
        let max_age = i128::from(MAX_AGE_MS) * 1_000_000;
        let (start, end) = if end > now_ns + i128::from(MAX_FUTURE_MS) * 1_000_000
            || end < now_ns - max_age
            || end - start > max_age
        {
            self.stats.clock_absurd += 1;
            (now_ns, now_ns)
        } else {
            (start, end)
        };
        // A record already begun keeps its length but starts at arrival: what was exported late is
        // counted late (and said so), at the rate it had, never squeezed into a burst.
        if start < now_ns - i128::from(self.cfg.window_ns) {
            self.stats.late_packets += saturate(total);
        }
        let placed = start.max(now_ns);
        let span = (end - start).max(0);
        let wire_len =
            u32::try_from((u128::from(rec.bytes) / u128::from(rec.packets.max(1))).max(1))
                .unwrap_or(u32::MAX);
        let flags = if rec.proto == crate::decode::proto::TCP {
            flow_flags(rec.tcp_flags)
        } else {
            0
        };
        let base = PacketSummary {
            ts: now,
            src: rec.src,
            dst: rec.dst,
            proto: rec.proto,
            sport: rec.sport,
            dport: rec.dport,
            tcp_flags: flags,
            tcp_num: 0,
            wire_len,
            fragment: if rec.later_fragment {
                Fragment::Later { offset: 8 }
            } else {
                Fragment::None
            },
            weight: 0,
            // A flow record carries no per-packet header fields.
            hdr: crate::decode::HeaderFields::UNKNOWN,
        };
        let len = span as u64;
        let step = (len / MAX_SLICES).max(self.cfg.tick_ns.max(1));
        let slices = u128::from(len / step + 1);
        for i in 0..slices {
            let share = total / slices + u128::from(i < total % slices);
            let ts = (placed as u64).saturating_add(i as u64 * step);
            if i128::from(ts) <= now_ns {
                emit(PacketSummary { ts: now, ..base }, share, out);
                continue;
            }
            let mut chunk = Vec::new();
            emit(
                PacketSummary {
                    ts: Timestamp(ts),
                    ..base
                },
                share,
                &mut chunk,
            );
            for p in chunk {
                self.seq += 1;
                self.queue.push(Reverse(Queued {
                    ts,
                    seq: self.seq,
                    p,
                }));
            }
        }
        if self.queue.len() > MAX_QUEUED {
            self.release(now.0, out);
        }
    }
}

/// Appends summaries of `base` standing for `packets` in all (several when one weight would not
/// fit in 32 bits).
fn emit(base: PacketSummary, mut packets: u128, out: &mut Vec<PacketSummary>) {
    while packets > 0 {
        let w = u32::try_from(packets).unwrap_or(u32::MAX);
        out.push(PacketSummary { weight: w, ..base });
        packets -= u128::from(w);
    }
}

fn saturate(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// A flow's ORed TCP flags as one packet's: SYN without ACK is a flow of SYNs (SYN signal); SYN+ACK
/// with nothing else a flow of SYN-ACKs (reflection); any other flow with ACK is an established
/// connection (its SYN and SYN-ACK are one packet each among many).
fn flow_flags(f: u8) -> u8 {
    use tcp_flags::{ACK, FIN, PSH, RST, SYN};
    if f & SYN != 0 && f & ACK == 0 {
        SYN
    } else if f & (SYN | ACK) == SYN | ACK && f & (FIN | PSH | RST) == 0 {
        SYN | ACK
    } else if f & ACK != 0 {
        ACK
    } else {
        f
    }
}

/// The kind of a datagram from its first bytes.
fn recognise(payload: &[u8]) -> Result<u8, Malformed> {
    let mut c = wire::Cursor::new(payload);
    let word = c.u32()?;
    if word == 5 {
        return Ok(KIND_SFLOW);
    }
    match word >> 16 {
        5 => Ok(KIND_V5),
        9 => Ok(KIND_V9),
        10 => Ok(KIND_IPFIX),
        _ => Err(Malformed::UnknownVersion),
    }
}

/// sFlow samples of one datagram into summaries.
struct SflowSink<'a> {
    exporter: &'a mut Exporter,
    stats: &'a mut TelemetryStats,
    out: &'a mut Vec<PacketSummary>,
    now: Timestamp,
    agent: Option<sflow::Header>,
    /// Sampling rate of the current flow sample.
    rate: u32,
}

impl sflow::Visitor for SflowSink<'_> {
    fn header(&mut self, h: sflow::Header) {
        self.agent = Some(h);
    }

    fn flow_sample(&mut self, s: sflow::FlowSample) {
        self.stats.sflow_flow_samples += 1;
        self.exporter.units += 1;
        let rate = netflow::sampling_rate(u64::from(s.sampling_rate), self.stats);
        self.rate = rate as u32;
        self.exporter.sampling_rate = rate;
        if let Some(h) = self.agent {
            let key = (h.agent, h.sub_agent, s.source_id);
            let seqs = &mut self.exporter.sequences;
            if let Some(last) = seqs.get_mut(&key) {
                let gap = s.sequence.wrapping_sub(*last);
                // a gap beyond a million is a restart, not loss
                if gap > 1 && gap < 1_000_000 {
                    let lost = u64::from(gap - 1);
                    self.stats.sflow_lost_samples += lost;
                    self.exporter.lost_samples += lost;
                }
                *last = s.sequence;
            } else if seqs.len() < MAX_SEQUENCES {
                seqs.insert(key, s.sequence);
            }
        }
    }

    fn raw_header(&mut self, protocol: u32, frame_length: u32, stripped: u32, header: &[u8]) {
        let link = match protocol {
            1 => LinkType::ETHERNET,
            11 => LinkType::IPV4,
            12 => LinkType::IPV6,
            _ => {
                self.stats.sflow_headers_not_decoded += 1;
                return;
            }
        };
        // frame_length counts the FCS an Ethernet capture file does not: subtract what was stripped
        let wire_len = frame_length.saturating_sub(stripped);
        match Decoder.decode(link, header, self.now, wire_len) {
            Ok(mut p) => {
                p.weight = self.rate.max(1);
                self.out.push(p);
            }
            Err(_) => self.stats.sflow_headers_not_decoded += 1,
        }
    }

    fn other_record(&mut self) {
        self.stats.sflow_other_records += 1;
    }

    fn counter_sample(&mut self) {
        self.stats.sflow_counter_samples += 1;
    }

    fn other_sample(&mut self) {
        self.stats.sflow_other_samples += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const EXPORTER: [u8; 4] = [192, 0, 2, 1];

    fn syn_frame() -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[203, 0, 113, 5, 198, 51, 100, 10]);
        f.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f
    }

    fn feed(t: &mut Telemetry, ts: u64, payload: &[u8]) -> Vec<PacketSummary> {
        let mut out = Vec::new();
        t.datagram(
            &Datagram {
                ts: Timestamp(ts),
                exporter: IpAddr::from(EXPORTER),
                payload,
            },
            &mut out,
        );
        out
    }

    /// What a NetFlow v5 datagram (sent at 1 000 s) arriving at 50 s gives at once.
    fn feed_v5(
        t: &mut Telemetry,
        uptime_ms: u32,
        sampling: u16,
        recs: &[netflow::build::Rec],
    ) -> Vec<PacketSummary> {
        let datagram = netflow::build::v5(1_000, uptime_ms, sampling, recs);
        feed(t, 50 * SEC, &datagram)
    }

    /// The packets the summaries stand for.
    fn packets(summaries: &[PacketSummary]) -> u64 {
        summaries.iter().map(|p| u64::from(p.weight)).sum()
    }

    #[test]
    fn sflow_samples_become_weighted_summaries_and_gaps_are_lost_samples() {
        let frame = syn_frame();
        let s = |sequence| sflow::build::Sample {
            sequence,
            source_id: 7,
            rate: 1000,
            frame_length: 64,
            header: &frame,
        };
        let mut t = Telemetry::new(TelemetryConfig::default());
        let out = feed(
            &mut t,
            5 * SEC,
            &sflow::build::datagram(EXPORTER, 1, &[s(1), s(2)]),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].weight, 1000);
        assert_eq!(out[0].wire_len, 60);
        assert_eq!(out[0].tcp_flags, tcp_flags::SYN);
        assert_eq!(out[0].ts, Timestamp(5 * SEC));
        // the sampled header's fields, as the frame decoder reads them
        let h = out[0].hdr;
        assert!(h.known() && h.df() && h.l4());
        assert_eq!(
            (h.ttl, h.ip_len, h.tcp_window, h.tcp_opts_len),
            (64, 40, 0xffff, 0)
        );
        let _ = feed(
            &mut t,
            6 * SEC,
            &sflow::build::datagram(EXPORTER, 2, &[s(6)]),
        );
        let st = t.stats();
        assert_eq!(st.sflow_lost_samples, 3);
        assert_eq!(st.sflow_counter_samples, 2);
        assert_eq!(st.packets, 3000);
        let ex = t.exporters();
        assert_eq!(ex[0].kinds, "sflow");
        assert_eq!(
            (ex[0].units, ex[0].sampling_rate, ex[0].lost_samples),
            (3, 1000, 3)
        );
    }

    #[test]
    fn a_late_long_record_keeps_its_rate_from_arrival_on_and_is_counted_late() {
        let mut t = Telemetry::new(TelemetryConfig::default());
        // 60 000 packets over the 60 s before export (a 60-s active timeout), exported at 1 000 s
        let rec = netflow::build::tcp(0x12 | 0x01, 60_000, 3_600_000, 40_000, 100_000);
        let now = feed_v5(&mut t, 100_000, 0, &[rec]);
        assert!(now.iter().all(|p| p.ts == Timestamp(50 * SEC)));
        // a flow record has no per-packet header fields
        assert!(now
            .iter()
            .all(|p| p.hdr == crate::decode::HeaderFields::UNKNOWN));
        let at_once = packets(&now);
        assert!(at_once <= 1000, "{at_once} packets at arrival: a burst");
        assert_eq!(
            now[0].tcp_flags,
            tcp_flags::ACK,
            "an established connection"
        );
        assert_eq!(now[0].wire_len, 60);
        assert_eq!(t.stats().late_packets, 60_000);
        let mut rest = Vec::new();
        t.advance(Timestamp(51 * SEC), &mut rest);
        let first_second = at_once + packets(&rest);
        assert!(
            (900..=2_000).contains(&first_second),
            "{first_second} in the first second"
        );
        t.finish(&mut rest);
        let all = at_once + packets(&rest);
        assert_eq!(all, 60_000);
        assert!(rest.last().is_some_and(|p| p.ts.0 >= 109 * SEC));
    }

    #[test]
    fn records_ending_after_export_are_queued_until_their_time() {
        let mut t = Telemetry::new(TelemetryConfig::default());
        // a SYN flow from uptime 100 s to 102 s, in a datagram exported at uptime 100 s
        let rec = netflow::build::tcp(0x02, 2_000, 80_000, 100_000, 102_000);
        let out = feed_v5(&mut t, 100_000, 0, &[rec]);
        let now = packets(&out);
        assert!(now <= 100, "{now} packets counted at once");
        let mut later = Vec::new();
        t.advance(Timestamp(51 * SEC), &mut later);
        let mid = packets(&later);
        assert!(
            (900..=1100).contains(&mid),
            "{mid} released in the first second"
        );
        assert!(later.windows(2).all(|w| w[0].ts <= w[1].ts));
        t.finish(&mut later);
        let all = now + packets(&later);
        assert_eq!(all, 2_000);
        assert!(later.iter().all(|p| p.tcp_flags == tcp_flags::SYN));
    }

    #[test]
    fn a_one_packet_flow_in_the_future_waits_for_its_time() {
        let mut t = Telemetry::new(TelemetryConfig::default());
        let rec = netflow::build::tcp(0x02, 1, 60, 103_000, 103_000);
        let out = feed_v5(&mut t, 100_000, 0, &[rec]);
        assert!(out.is_empty());
        let mut later = Vec::new();
        t.finish(&mut later);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].ts, Timestamp(53 * SEC));
    }

    #[test]
    fn a_record_claiming_absurd_packet_counts_is_clamped_to_a_few_summaries() {
        let mut t = Telemetry::new(TelemetryConfig::default());
        let rec = netflow::build::udp(u32::MAX, u32::MAX, 1, 2);
        let out = feed_v5(&mut t, 2, 0x3fff, &[rec; 30]);
        let fed = packets(&out);
        assert_eq!(fed, 30 << 34);
        assert!(out.len() <= 30 * 5, "{} summaries", out.len());
        assert_eq!(t.stats().records_clamped, 30);
    }

    #[test]
    fn absurd_clocks_and_sampling_are_counted_and_clamped() {
        let mut t = Telemetry::new(TelemetryConfig::default());
        // record ends a day before export; sampling rate 2^14 − 1 in the header is fine, the
        // options of another exporter say 0
        let rec = netflow::build::udp(10, 1000, 1, 2);
        let out = feed_v5(&mut t, 86_400_002, 0, &[rec]);
        assert_eq!(t.stats().clock_absurd, 1);
        assert_eq!(packets(&out), 10);
        let d = netflow::build::v9(1_000, 1_000, 1, true, Some(0), &[rec]);
        let _ = feed(&mut t, 51 * SEC, &d);
        assert_eq!(t.stats().bad_sampling, 1);
    }

    #[test]
    fn junk_is_counted_by_reason_and_exporters_are_capped() {
        let mut t = Telemetry::new(TelemetryConfig {
            max_exporters: 3,
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            ..TelemetryConfig::default()
        });
        let mut out = Vec::new();
        for (i, payload) in [
            &[0u8, 7, 0, 0][..],
            &[0, 0][..],
            &[0, 0, 0, 5, 0, 0, 0, 9][..],
        ]
        .iter()
        .enumerate()
        {
            t.datagram(
                &Datagram {
                    ts: Timestamp(SEC),
                    exporter: IpAddr::from([192, 0, 2, i as u8]),
                    payload,
                },
                &mut out,
            );
        }
        let st = t.stats().clone();
        assert_eq!(st.malformed[Malformed::UnknownVersion.index()], 1);
        assert_eq!(st.malformed[Malformed::Truncated.index()], 1);
        assert_eq!(st.malformed[Malformed::BadField.index()], 1);
        let v5 = netflow::build::v5(1, 1, 0, &[]);
        for (i, from) in [[192, 0, 2, 9], [192, 0, 2, 10], [198, 51, 100, 1]]
            .iter()
            .enumerate()
        {
            t.datagram(
                &Datagram {
                    ts: Timestamp(SEC + i as u64),
                    exporter: IpAddr::from(*from),
                    payload: &v5,
                },
                &mut out,
            );
        }
        assert_eq!(t.stats().not_allowed, 1);
        assert_eq!(t.stats().exporters_refused, 0);
        t.datagram(
            &Datagram {
                ts: Timestamp(SEC),
                exporter: IpAddr::from([192, 0, 2, 11]),
                payload: &v5,
            },
            &mut out,
        );
        assert_eq!(t.stats().exporters_refused, 1);
        assert_eq!(t.exporters().len(), 3);
    }
}
