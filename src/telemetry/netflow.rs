//! NetFlow v5 (fixed records), NetFlow v9 (RFC 3954) and IPFIX (RFC 7011): flow records, turned into
//! [`FlowRecord`]s with times in the exporter's clock. v9 and IPFIX records are described by
//! templates the exporter sends from time to time; [`Templates`] keeps them per observation domain
//! (v9 source id), bounded, with the sampling rate and system start time that options records
//! announce.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::FixedState;

use super::wire::{uint, Cursor};
use super::{Malformed, TelemetryStats};

/// Fields per template beyond which the template is taken as hostile.
const MAX_FIELDS: u16 = 256;
/// Records per datagram header count beyond which it is taken as hostile.
const MAX_V5_RECORDS: u16 = 1024;
/// Sampling rates above this are clamped (and counted): 2^32 − 1 would make one sample stand for
/// four billion packets.
pub(super) const MAX_SAMPLING_RATE: u64 = 1 << 20;

/// One flow as the exporter reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FlowRecord {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags seen over the flow (ORed).
    pub tcp_flags: u8,
    pub packets: u64,
    pub bytes: u64,
    /// First and last packet, ms since the Unix epoch in the exporter's clock, when the record
    /// says.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// When the datagram was sent, same clock.
    pub export_ms: i64,
    /// The record describes non-first fragments.
    pub later_fragment: bool,
    /// Packets per sampled packet (1: unsampled).
    pub sampling: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    id: u16,
    /// An enterprise-specific field (IPFIX): skipped.
    enterprise: bool,
    /// 65535: variable length (IPFIX).
    len: u16,
}

#[derive(Clone, Debug)]
struct Template {
    /// Shared, so a data set can walk them while options records update the exporter state.
    fields: std::sync::Arc<[Field]>,
    /// Options template: its records carry exporter settings, not flows.
    options: bool,
    /// Bytes of the smallest record (each variable-length field counted as 1).
    min_len: usize,
}

/// Per-exporter template state.
#[derive(Debug)]
pub(super) struct Templates {
    map: HashMap<(u32, u16), Template, FixedState>,
    /// Per observation domain: the sampling rate options records announced.
    sampling: HashMap<u32, u64, FixedState>,
    /// Per observation domain: the system start time (ms since the epoch) for sysUpTime fields.
    init_ms: HashMap<u32, i64, FixedState>,
    cap: usize,
}

impl Templates {
    /// State for one exporter keeping at most `cap` templates.
    pub fn new(cap: usize) -> Self {
        Templates {
            map: HashMap::with_hasher(FixedState::with_seed(0x7e3a)),
            sampling: HashMap::with_hasher(FixedState::with_seed(0x7e3b)),
            init_ms: HashMap::with_hasher(FixedState::with_seed(0x7e3c)),
            cap: cap.max(1),
        }
    }

    /// Templates held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The sampling rate announced for any domain (for the summary), if one was.
    pub fn announced_sampling(&self) -> Option<u64> {
        self.sampling.values().copied().max()
    }

    fn define(&mut self, domain: u32, id: u16, t: Template, stats: &mut TelemetryStats) {
        let key = (domain, id);
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            stats.templates_refused += 1;
            return;
        }
        self.map.insert(key, t);
        stats.templates += 1;
    }
}

/// Parses a NetFlow v5 datagram.
pub(super) fn parse_v5(
    payload: &[u8],
    stats: &mut TelemetryStats,
    on_record: &mut dyn FnMut(&FlowRecord),
) -> Result<(), Malformed> {
    let mut c = Cursor::new(payload);
    let _version = c.u16()?;
    let count = c.u16()?;
    let uptime = c.u32()?;
    let secs = c.u32()?;
    let nsecs = c.u32()?;
    let _sequence = c.u32()?;
    let _engine = c.u16()?;
    let sampling = c.u16()?;
    if count > MAX_V5_RECORDS {
        return Err(Malformed::BadCount);
    }
    let export_ms = i64::from(secs) * 1000 + i64::from(nsecs / 1_000_000);
    // top two bits: sampling mode; the low 14: the interval (0: unsampled)
    let sampling = sampling_rate(u64::from(sampling & 0x3fff).max(1), stats);
    for _ in 0..count {
        let mut r = Cursor::new(c.take(48)?);
        let (Ok(src), Ok(dst)) = (r.ipv4(), r.ipv4()) else {
            return Err(Malformed::Truncated);
        };
        r.skip(8)?; // next hop, input and output interfaces
        let packets = r.u32()?;
        let bytes = r.u32()?;
        let first = r.u32()?;
        let last = r.u32()?;
        let sport = r.u16()?;
        let dport = r.u16()?;
        r.skip(1)?;
        let tcp_flags = r.u8()?;
        let proto = r.u8()?;
        stats.flow_records += 1;
        on_record(&FlowRecord {
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            proto,
            sport,
            dport,
            tcp_flags,
            packets: u64::from(packets),
            bytes: u64::from(bytes),
            start_ms: Some(uptime_ms(export_ms, uptime, first)),
            end_ms: Some(uptime_ms(export_ms, uptime, last)),
            export_ms,
            later_fragment: false,
            sampling,
        });
    }
    Ok(())
}

/// An exporter's sysUpTime stamp `t` as ms since the epoch, given the datagram's export time and
/// uptime (uptime wraps after 49.7 days: the difference is taken modulo 2^32, signed).
fn uptime_ms(export_ms: i64, uptime: u32, t: u32) -> i64 {
    export_ms - i64::from(uptime.wrapping_sub(t) as i32)
}

/// A sampling rate as given, 0 taken as 1 and huge ones clamped, both counted.
pub(super) fn sampling_rate(rate: u64, stats: &mut TelemetryStats) -> u64 {
    if rate == 0 {
        stats.bad_sampling += 1;
        1
    } else if rate > MAX_SAMPLING_RATE {
        stats.bad_sampling += 1;
        MAX_SAMPLING_RATE
    } else {
        rate
    }
}

/// Which of the two template formats a datagram uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    V9 { uptime: u32 },
    Ipfix,
}

/// Parses a NetFlow v9 (`version` 9) or IPFIX (10) datagram from one exporter.
pub(super) fn parse_templated(
    payload: &[u8],
    templates: &mut Templates,
    stats: &mut TelemetryStats,
    on_record: &mut dyn FnMut(&FlowRecord),
) -> Result<(), Malformed> {
    let mut c = Cursor::new(payload);
    let version = c.u16()?;
    let (dialect, export_ms, domain, end) = match version {
        9 => {
            let _count = c.u16()?;
            let uptime = c.u32()?;
            let secs = c.u32()?;
            let _seq = c.u32()?;
            let source_id = c.u32()?;
            (
                Dialect::V9 { uptime },
                i64::from(secs) * 1000,
                source_id,
                payload.len(),
            )
        }
        10 => {
            let len = usize::from(c.u16()?);
            let secs = c.u32()?;
            let _seq = c.u32()?;
            let domain = c.u32()?;
            if len < 16 || len > payload.len() {
                return Err(Malformed::BadLength);
            }
            (Dialect::Ipfix, i64::from(secs) * 1000, domain, len)
        }
        _ => return Err(Malformed::UnknownVersion),
    };
    let header_len = payload.len() - c.remaining();
    let mut c = Cursor::new(payload.get(header_len..end).unwrap_or_default());
    let header = Header {
        dialect,
        export_ms,
        domain,
    };
    // Templates first, then options records (sampling rate, system start time), then flows: an
    // exporter may put the options data after the flows it applies to in the same datagram.
    let mut data: Vec<(u16, &[u8])> = Vec::new();
    let mut result = Ok(());
    while c.remaining() >= 4 {
        let (Ok(set_id), Ok(len)) = (c.u16(), c.u16()) else {
            result = Err(Malformed::Truncated);
            break;
        };
        let len = usize::from(len);
        if len < 4 {
            result = Err(Malformed::BadLength);
            break;
        }
        let Ok(set) = c.take(len - 4) else {
            result = Err(Malformed::BadLength);
            break;
        };
        match (dialect, set_id) {
            (Dialect::V9 { .. }, 0) | (Dialect::Ipfix, 2) => {
                template_set(set, &header, false, templates, stats)?
            }
            (Dialect::V9 { .. }, 1) | (Dialect::Ipfix, 3) => {
                template_set(set, &header, true, templates, stats)?
            }
            (_, id) if id >= 256 => data.push((id, set)),
            _ => {} // reserved set ids: skipped
        }
    }
    let is_options =
        |t: &Templates, id: u16| t.map.get(&(header.domain, id)).is_some_and(|t| t.options);
    for pass_options in [true, false] {
        for &(id, set) in &data {
            if is_options(templates, id) == pass_options {
                data_set(set, id, &header, templates, stats, on_record)?;
            }
        }
    }
    result
}

struct Header {
    dialect: Dialect,
    export_ms: i64,
    domain: u32,
}

/// A (options) template set: one or more template records.
fn template_set(
    set: &[u8],
    h: &Header,
    options: bool,
    templates: &mut Templates,
    stats: &mut TelemetryStats,
) -> Result<(), Malformed> {
    let mut c = Cursor::new(set);
    // a record needs at least its id and a count; the rest is padding
    while c.remaining() >= 4 {
        let id = c.u16()?;
        let (fields, scope_fields) = match (h.dialect, options) {
            (Dialect::V9 { .. }, true) => {
                let scope_len = c.u16()?;
                let option_len = c.u16()?;
                ((scope_len / 4) + (option_len / 4), scope_len / 4)
            }
            (Dialect::Ipfix, true) => {
                let n = c.u16()?;
                let scope = c.u16()?;
                (n, scope)
            }
            (_, false) => (c.u16()?, 0),
        };
        if id < 256 {
            if id == 0 && fields == 0 {
                break; // padding
            }
            return Err(Malformed::BadField);
        }
        if fields == 0 {
            // IPFIX withdrawal
            if templates.map.remove(&(h.domain, id)).is_some() {
                stats.templates_withdrawn += 1;
            }
            continue;
        }
        if fields > MAX_FIELDS || scope_fields > fields {
            return Err(Malformed::BadField);
        }
        let mut list = Vec::with_capacity(usize::from(fields));
        let mut min_len = 0usize;
        for _ in 0..fields {
            let raw = c.u16()?;
            let len = c.u16()?;
            let enterprise = h.dialect == Dialect::Ipfix && raw & 0x8000 != 0;
            if enterprise {
                c.skip(4)?;
            }
            if len == 65535 && h.dialect != Dialect::Ipfix {
                return Err(Malformed::BadField);
            }
            min_len += if len == 65535 { 1 } else { usize::from(len) };
            list.push(Field {
                id: raw & 0x7fff,
                enterprise,
                len,
            });
        }
        if min_len == 0 {
            return Err(Malformed::BadField);
        }
        templates.define(
            h.domain,
            id,
            Template {
                fields: list.into(),
                options,
                min_len,
            },
            stats,
        );
    }
    Ok(())
}

/// A data set: records of template `id`, then padding.
fn data_set(
    set: &[u8],
    id: u16,
    h: &Header,
    templates: &mut Templates,
    stats: &mut TelemetryStats,
    on_record: &mut dyn FnMut(&FlowRecord),
) -> Result<(), Malformed> {
    let Some(t) = templates.map.get(&(h.domain, id)) else {
        stats.no_template += 1;
        return Ok(());
    };
    let t = t.clone(); // cheap: the fields are shared
    let mut c = Cursor::new(set);
    while c.remaining() >= t.min_len {
        let mut rec = Values::default();
        for f in t.fields.iter() {
            let len = if f.len == 65535 {
                match c.u8()? {
                    255 => usize::from(c.u16()?),
                    n => usize::from(n),
                }
            } else {
                usize::from(f.len)
            };
            let v = c.part(len)?;
            if !f.enterprise {
                rec.set(f.id, v);
            }
        }
        if t.options {
            stats.options_records += 1;
            if let Some(rate) = rec.sampling() {
                let rate = sampling_rate(rate, stats);
                if templates.sampling.len() < templates.cap
                    || templates.sampling.contains_key(&h.domain)
                {
                    templates.sampling.insert(h.domain, rate);
                }
            }
            if let Some(init) = rec.init_ms {
                if templates.init_ms.len() < templates.cap
                    || templates.init_ms.contains_key(&h.domain)
                {
                    templates.init_ms.insert(h.domain, init);
                }
            }
            continue;
        }
        let (Some(src), Some(dst)) = (rec.src, rec.dst) else {
            continue; // not an IP flow (e.g. a layer-2 template): nothing to count
        };
        let sampling = match rec.sampling() {
            Some(r) => sampling_rate(r, stats),
            None => templates.sampling.get(&h.domain).copied().unwrap_or(1),
        };
        let (start_ms, end_ms) = rec.times(h, templates.init_ms.get(&h.domain).copied());
        stats.flow_records += 1;
        on_record(&FlowRecord {
            src,
            dst,
            proto: rec.proto,
            sport: rec.sport,
            dport: rec.dport,
            tcp_flags: rec.tcp_flags,
            packets: rec.packets.or(rec.packets_total).unwrap_or(0),
            bytes: rec.bytes.or(rec.bytes_total).unwrap_or(0),
            start_ms,
            end_ms,
            export_ms: h.export_ms,
            later_fragment: rec.fragment_offset.is_some_and(|o| o > 0),
            sampling,
        });
    }
    Ok(())
}

/// The fields of one data record the detector uses.
#[derive(Default)]
struct Values {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    packets: Option<u64>,
    bytes: Option<u64>,
    packets_total: Option<u64>,
    bytes_total: Option<u64>,
    /// sysUpTime stamps (ms).
    up_first: Option<u32>,
    up_last: Option<u32>,
    /// Absolute times (ms since the epoch).
    abs_first: Option<i64>,
    abs_last: Option<i64>,
    /// Microseconds before the export time.
    delta_first: Option<u64>,
    delta_last: Option<u64>,
    fragment_offset: Option<u64>,
    sampling_interval: Option<u64>,
    packet_interval: Option<u64>,
    packet_space: Option<u64>,
    sampling_size: Option<u64>,
    sampling_population: Option<u64>,
    init_ms: Option<i64>,
}

impl Values {
    fn set(&mut self, id: u16, v: &[u8]) {
        let n = || uint(v);
        match id {
            1 => self.bytes = n(),
            2 => self.packets = n(),
            85 => self.bytes_total = n(),
            86 => self.packets_total = n(),
            4 => self.proto = n().unwrap_or(0) as u8,
            6 => self.tcp_flags = n().unwrap_or(0) as u8,
            7 => self.sport = n().unwrap_or(0) as u16,
            11 => self.dport = n().unwrap_or(0) as u16,
            8 => self.src = addr::<4>(v).or(self.src),
            12 => self.dst = addr::<4>(v).or(self.dst),
            27 => self.src = addr::<16>(v).or(self.src),
            28 => self.dst = addr::<16>(v).or(self.dst),
            22 => self.up_first = n().map(|x| x as u32),
            21 => self.up_last = n().map(|x| x as u32),
            150 => self.abs_first = n().map(secs_ms),
            151 => self.abs_last = n().map(secs_ms),
            152 => self.abs_first = n().map(to_i64),
            153 => self.abs_last = n().map(to_i64),
            154 | 156 => self.abs_first = ntp_ms(v),
            155 | 157 => self.abs_last = ntp_ms(v),
            158 => self.delta_first = n(),
            159 => self.delta_last = n(),
            88 => self.fragment_offset = n(),
            34 | 50 => self.sampling_interval = n(),
            305 => self.packet_interval = n(),
            306 => self.packet_space = n(),
            309 => self.sampling_size = n(),
            310 => self.sampling_population = n(),
            160 => self.init_ms = n().map(to_i64),
            _ => {}
        }
    }

    /// Packets per sampled packet, when the record says.
    fn sampling(&self) -> Option<u64> {
        if let Some(i) = self.sampling_interval {
            return Some(i);
        }
        if let Some(i) = self.packet_interval {
            // `i` packets selected, then `space` skipped
            let space = self.packet_space.unwrap_or(0);
            return Some(if i == 0 { 0 } else { (i + space).div_ceil(i) });
        }
        match (self.sampling_size, self.sampling_population) {
            (Some(size), Some(pop)) if size > 0 => Some(pop.div_ceil(size)),
            (Some(_), Some(_)) => Some(0),
            _ => None,
        }
    }

    /// First and last packet in ms since the epoch, exporter clock.
    fn times(&self, h: &Header, init_ms: Option<i64>) -> (Option<i64>, Option<i64>) {
        let up = |t: Option<u32>| -> Option<i64> {
            let t = t?;
            match h.dialect {
                Dialect::V9 { uptime } => Some(uptime_ms(h.export_ms, uptime, t)),
                // IPFIX flowStart/EndSysUpTime count from systemInitTimeMilliseconds; taken
                // modulo 2^32 against the uptime at export, like v9's (a stamp from before the
                // init time has wrapped)
                Dialect::Ipfix => init_ms.map(|i| {
                    let up_at_export = h.export_ms.wrapping_sub(i) as u32;
                    uptime_ms(h.export_ms, up_at_export, t)
                }),
            }
        };
        let delta =
            |d: Option<u64>| d.map(|us| h.export_ms - (us / 1000).min(i64::MAX as u64) as i64);
        let first = self
            .abs_first
            .or_else(|| up(self.up_first))
            .or_else(|| delta(self.delta_first));
        let last = self
            .abs_last
            .or_else(|| up(self.up_last))
            .or_else(|| delta(self.delta_last));
        (first, last)
    }
}

/// A sender's unsigned count as i64, saturating (absurd values are caught as absurd times later).
fn to_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// Seconds as ms, saturating.
fn secs_ms(s: u64) -> i64 {
    to_i64(s).saturating_mul(1000)
}

/// The address in a field of `N` bytes (4: IPv4, 16: IPv6); `None` for a field of another length.
fn addr<const N: usize>(v: &[u8]) -> Option<IpAddr>
where
    IpAddr: From<[u8; N]>,
{
    <[u8; N]>::try_from(v).ok().map(IpAddr::from)
}

/// An NTP timestamp (seconds since 1900 in the high 32 bits) as ms since the Unix epoch.
fn ntp_ms(v: &[u8]) -> Option<i64> {
    const NTP_TO_UNIX: i64 = 2_208_988_800;
    let x = uint(v)?;
    if v.len() != 8 {
        return None;
    }
    let secs = (x >> 32) as i64 - NTP_TO_UNIX;
    let frac_ms = ((x & 0xffff_ffff) * 1000) >> 32;
    Some(secs * 1000 + frac_ms as i64)
}

pub mod build {
    //! NetFlow datagrams for tests.

    /// (src, dst, sport, dport, proto, flags, packets, bytes, first uptime ms, last uptime ms)
    pub type Rec = ([u8; 4], [u8; 4], u16, u16, u8, u8, u32, u32, u32, u32);

    /// A TCP flow with `flags` from 203.0.113.5:40000 to 198.51.100.10:80: `packets` packets of
    /// `bytes` bytes in all, from uptime `first` to `last` ms.
    pub const fn tcp(flags: u8, packets: u32, bytes: u32, first: u32, last: u32) -> Rec {
        let (src, dst) = ([203, 0, 113, 5], [198, 51, 100, 10]);
        (src, dst, 40000, 80, 6, flags, packets, bytes, first, last)
    }

    /// A UDP flow from 203.0.113.5:1 to 198.51.100.10:2, otherwise as [`tcp`].
    pub const fn udp(packets: u32, bytes: u32, first: u32, last: u32) -> Rec {
        let (src, dst) = ([203, 0, 113, 5], [198, 51, 100, 10]);
        (src, dst, 1, 2, 17, 0, packets, bytes, first, last)
    }

    /// Packets, bytes, first and last: the four counters both encodings write in a row.
    fn counters(r: &Rec) -> [u32; 4] {
        [r.6, r.7, r.8, r.9]
    }

    /// A v5 datagram exported at `secs` (uptime `uptime` ms).
    pub fn v5(secs: u32, uptime: u32, sampling: u16, recs: &[Rec]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&5u16.to_be_bytes());
        d.extend_from_slice(&(recs.len() as u16).to_be_bytes());
        for x in [uptime, secs, 0, 1] {
            d.extend_from_slice(&x.to_be_bytes());
        }
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&sampling.to_be_bytes());
        for r in recs {
            d.extend_from_slice(&r.0);
            d.extend_from_slice(&r.1);
            d.extend_from_slice(&[0; 8]); // next hop, interfaces
            for x in counters(r) {
                d.extend_from_slice(&x.to_be_bytes());
            }
            d.extend_from_slice(&r.2.to_be_bytes());
            d.extend_from_slice(&r.3.to_be_bytes());
            d.extend_from_slice(&[0, r.5, r.4, 0]);
            d.extend_from_slice(&[0; 8]);
        }
        d
    }

    /// The template every v9/IPFIX test datagram uses (id 256): src, dst, sport, dport, proto,
    /// flags, packets, bytes, first, last (sysUpTime ms).
    pub const FIELDS: [(u16, u16); 10] = [
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (6, 1),
        (2, 4),
        (1, 4),
        (22, 4),
        (21, 4),
    ];

    fn record(r: &Rec) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&r.0);
        d.extend_from_slice(&r.1);
        d.extend_from_slice(&r.2.to_be_bytes());
        d.extend_from_slice(&r.3.to_be_bytes());
        d.extend_from_slice(&[r.4, r.5]);
        for x in counters(r) {
            d.extend_from_slice(&x.to_be_bytes());
        }
        d
    }

    /// Appends a set (or, in v9, a flowset): its id, its length with the 4-byte header, `body`.
    fn set(sets: &mut Vec<u8>, id: u16, body: &[u8]) {
        sets.extend_from_slice(&id.to_be_bytes());
        sets.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        sets.extend_from_slice(body);
    }

    /// The sets v9 and IPFIX datagrams share: template 256 in a template set `template_set`
    /// (when `template`), the options template `options` in set `options_set` followed by its
    /// data record `option` (when given), then `recs` in a data set of template 256.
    fn sets(
        (template_set, template): (u16, bool),
        (options_set, options): (u16, &[u8]),
        option: Option<(u16, Vec<u8>)>,
        recs: &[Rec],
    ) -> Vec<u8> {
        let mut sets = Vec::new();
        if template {
            let mut t = vec![1u8, 0, 0, FIELDS.len() as u8]; // id 256
            for (id, len) in FIELDS {
                t.extend_from_slice(&id.to_be_bytes());
                t.extend_from_slice(&len.to_be_bytes());
            }
            set(&mut sets, template_set, &t);
        }
        if let Some((id, value)) = option {
            set(&mut sets, options_set, options);
            let mut data = 0u32.to_be_bytes().to_vec(); // the scope
            data.extend_from_slice(&value);
            set(&mut sets, id, &data);
        }
        if !recs.is_empty() {
            let body: Vec<u8> = recs.iter().flat_map(record).collect();
            set(&mut sets, 256, &body);
        }
        sets
    }

    /// A v9 datagram from source id `source`: the template (when `template`), an options record
    /// announcing `sampling` (when given), then `recs`.
    pub fn v9(
        secs: u32,
        uptime: u32,
        source: u32,
        template: bool,
        sampling: Option<u32>,
        recs: &[Rec],
    ) -> Vec<u8> {
        // options template 257: scope system (id 1, 4 bytes), option SAMPLING_INTERVAL (34, 4),
        // padded to 4 bytes
        let options = [1u8, 1, 0, 4, 0, 4, 0, 1, 0, 4, 0, 34, 0, 4, 0, 0];
        let sampling = sampling.map(|rate| (257, rate.to_be_bytes().to_vec()));
        let sets = sets((0, template), (1, &options), sampling, recs);
        let mut d = Vec::new();
        d.extend_from_slice(&9u16.to_be_bytes());
        d.extend_from_slice(&(recs.len() as u16).to_be_bytes());
        for x in [uptime, secs, 1, source] {
            d.extend_from_slice(&x.to_be_bytes());
        }
        d.extend_from_slice(&sets);
        d
    }

    /// An IPFIX datagram: the template (when `template`), an options record with
    /// systemInitTimeMilliseconds `init_ms` (when given), then `recs`.
    pub fn ipfix(
        secs: u32,
        domain: u32,
        template: bool,
        init_ms: Option<u64>,
        recs: &[Rec],
    ) -> Vec<u8> {
        // options template 258: scope meteringProcessId (143, 4), systemInitTimeMilliseconds (160, 8)
        let options = [1u8, 2, 0, 2, 0, 1, 0, 143, 0, 4, 0, 160, 0, 8];
        let init = init_ms.map(|init| (258, init.to_be_bytes().to_vec()));
        let sets = sets((2, template), (3, &options), init, recs);
        let mut d = Vec::new();
        d.extend_from_slice(&10u16.to_be_bytes());
        d.extend_from_slice(&((sets.len() + 16) as u16).to_be_bytes());
        for x in [secs, 1, domain] {
            d.extend_from_slice(&x.to_be_bytes());
        }
        d.extend_from_slice(&sets);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: build::Rec = build::tcp(0x02, 10, 600, 9_000, 10_000);

    fn collect(
        d: &[u8],
        t: &mut Templates,
    ) -> (Result<(), Malformed>, Vec<FlowRecord>, TelemetryStats) {
        let mut out = Vec::new();
        let mut stats = TelemetryStats::default();
        let r = if d.get(1) == Some(&5) {
            parse_v5(d, &mut stats, &mut |r| out.push(*r))
        } else {
            parse_templated(d, t, &mut stats, &mut |r| out.push(*r))
        };
        (r, out, stats)
    }

    #[test]
    fn v5_records_with_times_and_sampling() {
        let d = build::v5(1_700_000_000, 10_000, 0x4000 | 100, &[SYN, SYN]);
        let (r, recs, _) = collect(&d, &mut Templates::new(8));
        r.unwrap();
        assert_eq!(recs.len(), 2);
        let x = recs[0];
        assert_eq!(x.dst, IpAddr::from([198, 51, 100, 10]));
        assert_eq!((x.proto, x.tcp_flags, x.packets, x.bytes), (6, 2, 10, 600));
        assert_eq!(x.end_ms, Some(1_700_000_000_000));
        assert_eq!(x.start_ms, Some(1_700_000_000_000 - 1000));
        assert_eq!(x.sampling, 100);
        for cut in 0..d.len() {
            let _ = collect(&d[..cut], &mut Templates::new(8));
        }
    }

    #[test]
    fn v9_template_then_data_and_options_sampling() {
        let mut t = Templates::new(8);
        let (r, recs, c) = collect(
            &build::v9(1_700_000_000, 10_000, 7, false, None, &[SYN]),
            &mut t,
        );
        r.unwrap();
        assert!(recs.is_empty());
        assert_eq!(c.no_template, 1);
        let (r, recs, c) = collect(
            &build::v9(1_700_000_000, 10_000, 7, true, Some(512), &[SYN]),
            &mut t,
        );
        r.unwrap();
        assert_eq!(c.templates, 2);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].sampling, 512);
        assert_eq!(recs[0].end_ms, Some(1_700_000_000_000));
        // another source id does not share the template
        let (_, recs, c) = collect(
            &build::v9(1_700_000_000, 10_000, 8, false, None, &[SYN]),
            &mut t,
        );
        assert!(recs.is_empty());
        assert_eq!(c.no_template, 1);
        let d = build::v9(1_700_000_000, 10_000, 7, true, Some(512), &[SYN, SYN]);
        for cut in 0..d.len() {
            let _ = collect(&d[..cut], &mut Templates::new(8));
        }
    }

    #[test]
    fn ipfix_sysuptime_needs_the_init_time_from_options() {
        let mut t = Templates::new(8);
        let (r, recs, _) = collect(&build::ipfix(1_700_000_000, 3, true, None, &[SYN]), &mut t);
        r.unwrap();
        assert_eq!(recs[0].end_ms, None);
        let (r, recs, c) = collect(
            &build::ipfix(1_700_000_000, 3, false, Some(1_699_999_000_000), &[SYN]),
            &mut t,
        );
        r.unwrap();
        assert_eq!(c.options_records, 1);
        assert_eq!(recs[0].end_ms, Some(1_699_999_000_000 + 10_000));
        let d = build::ipfix(1_700_000_000, 3, true, Some(5), &[SYN, SYN]);
        for cut in 0..d.len() {
            let _ = collect(&d[..cut], &mut Templates::new(8));
        }
    }

    #[test]
    fn absurd_time_fields_saturate_instead_of_overflowing() {
        let mut v = Values::default();
        for id in [150, 151, 153, 160] {
            v.set(id, &[0xff; 8]);
        }
        let h = Header {
            dialect: Dialect::Ipfix,
            export_ms: 1_700_000_000_000,
            domain: 0,
        };
        let (first, last) = v.times(&h, Some(i64::MIN));
        assert_eq!((first, last), (Some(i64::MAX), Some(i64::MAX)));
        v.abs_last = None;
        v.up_last = Some(u32::MAX);
        let _ = v.times(&h, Some(i64::MIN));
        let _ = v.times(&h, Some(i64::MAX));
    }

    #[test]
    fn template_count_is_capped_and_hostile_templates_refused() {
        let mut t = Templates::new(1);
        let (_, _, c) = collect(&build::v9(1, 1, 1, true, Some(10), &[]), &mut t);
        assert_eq!((c.templates, c.templates_refused), (1, 1));
        assert_eq!(t.len(), 1);
        // a template claiming 65535 fields
        let mut d = build::ipfix(1, 1, true, None, &[]);
        d[22..24].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            collect(&d, &mut Templates::new(8)).0,
            Err(Malformed::BadField)
        );
        // a set length past the datagram
        let mut d = build::ipfix(1, 1, true, None, &[SYN]);
        d[18..20].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            collect(&d, &mut Templates::new(8)).0,
            Err(Malformed::BadLength)
        );
    }
}
