//! The bus encoding of packet summaries: one message is a batch of summaries for one partition,
//! with the ingest node's watermark. Versioned, compact (about 33 bytes an IPv4 summary with header
//! fields, 11–15 in a flood, whose summaries repeat most fields of the one before), every
//! multi-byte field big-endian; docs/scaling.md describes it.
//!
//! ```text
//! header (44 bytes)
//!   0  magic      "FWSB"
//!   4  version    u8 = 5 (4: an empty batch on every partition each tick, no node watermarks;
//!                 3: no aggregates; 2: no TCP number; 1: no repeat byte)
//!   5  flags      u8: bit 0 last (the node's stream has ended: no batch of it follows); bit 1
//!                 the body is one tick's aggregates, not summaries ([`aggregates`]); bit 2 the
//!                 message is a node watermark, not a batch (below); a reader refuses other bits
//!                 and bits 1 and 2 together
//!   6  partition  u16
//!   8  node       u32   ingest node id (unique in the cluster)
//!  12  seq        u64   batch number of (node, partition), from 1: a detector drops repeats
//!  20  watermark  u64   ns: the node has published every summary older than this for the partition
//!  28  base_ts    u64   ns: the smallest timestamp in the batch
//!  36  count      u32   summaries that follow (aggregates: the keys)
//!  40  length     u32   bytes of summaries that follow (a reader checks it before decoding)
//! summary
//!   tag      u8      bit 0 source is IPv6; bits 1–2 fragment (0 none, 1 first, 2 later); bit 3
//!                    header fields follow; bit 4 weight follows (else 1); bit 5 ports follow (else
//!                    0, 0); bit 6 destination is IPv6; bit 7 a repeat byte follows
//!   repeat   u8      (tag bit 7) fields equal to the previous summary's in the batch, left out
//!                    below: bit 0 dst, bit 1 proto and flags, bit 2 dport, bit 3 wire_len,
//!                    bit 4 header fields but ip_id, tcp_window and ttl; a reader refuses other bits, repeats in the
//!                    first summary, and repeats the tag contradicts
//!   ts       varint  ns after base_ts
//!   proto    u8      (unless repeated)
//!   flags    u8      TCP flags (unless repeated)
//!   src      4 or 16 bytes, as bit 0 says
//!   dst      4 or 16 bytes, as bit 6 says (unless repeated)
//!   sport, dport  u16 each (bit 5; dport unless repeated)
//!   wire_len varint  (unless repeated)
//!   offset   varint  later fragments only: the fragment offset in bytes
//!   weight   varint  (bit 4)
//!   header fields (bit 3): ip_id u16, tcp_window u16, ttl u8 (these vary even in a flood); then
//!                    unless repeated: ip_len u16, payload_len u16, prefix [4], tcp_opts_len u8,
//!                    prefix_len u8, bits u8
//!   TCP number (TCP with header fields and ACK set): u32, the sequence number of a SYN-ACK, the
//!                    acknowledgement number of any other segment (handshakes are verified by it)
//! ```
//! Varints are LEB128 (7 bits a byte, low first, at most 10 bytes for a u64).
//!
//! A **node watermark** (flag bit 2, on the node's watermark subject, [`encode_watermark`]) is the
//! header with `partition` the cluster's partition count, `seq` the node's watermark number,
//! `watermark` the packet time the node has published everything before on every partition,
//! `count` the partition count again, and as its body each partition's last batch sequence number
//! (varints, partition 0 first; 0: none yet). A detector applies the watermark to a partition
//! once it holds that batch: one message a tick tells every partition that got no batch that
//! tick that time moved, instead of an empty batch each.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::decode::{Fragment, HeaderFields, PacketSummary};
use crate::time::Timestamp;

pub mod aggregates;

/// The first four bytes of every batch.
pub const MAGIC: [u8; 4] = *b"FWSB";
/// The encoding version this build writes and reads.
pub const VERSION: u8 = 5;
/// Header bytes.
pub const HEADER_LEN: usize = 44;

const TAG_SRC_V6: u8 = 0x01;
const TAG_DST_V6: u8 = 0x40;
const TAG_FRAG_SHIFT: u8 = 1;
const TAG_HDR: u8 = 0x08;
const TAG_WEIGHT: u8 = 0x10;
const TAG_PORTS: u8 = 0x20;
const TAG_REPEAT: u8 = 0x80;
/// Repeat bits: fields equal to the previous summary's in the batch, left out.
const R_DST: u8 = 0x01;
const R_PROTO: u8 = 0x02;
const R_DPORT: u8 = 0x04;
const R_LEN: u8 = 0x08;
const R_HDR: u8 = 0x10;
const R_KNOWN: u8 = 0x1f;

/// What a batch says about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchHeader {
    pub partition: u16,
    pub node: u32,
    pub seq: u64,
    /// Packet time (ns) the node has published everything before, for this partition.
    pub watermark: u64,
    /// The node's stream has ended (a replay reached its end): no batch of it follows.
    pub last: bool,
}

/// Header flag: [`BatchHeader::last`].
const FLAG_LAST: u8 = 0x01;
/// Header flag: the body is aggregates ([`aggregates`]).
const FLAG_AGGREGATES: u8 = 0x02;
/// Header flag: a node watermark ([`encode_watermark`]), not a batch.
const FLAG_WATERMARK: u8 = 0x04;
/// The header flags that say what a message's body holds.
const KIND: u8 = FLAG_AGGREGATES | FLAG_WATERMARK;
/// Partitions a cluster has at most (`--cluster-partitions`; a node watermark naming more is
/// refused).
pub const MAX_PARTITIONS: u16 = 4096;

/// Why bytes are not a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a floodwatch summary batch (bad magic)")]
    Magic,
    #[error("summary batch of version {0}; this floodwatch reads version {VERSION}: run the same version on every node")]
    Version(u8),
    #[error("summary batch with unknown flags {0:#04x}")]
    Flags(u8),
    #[error("a batch of {found} where {wanted} were expected: batches of aggregates come from ingest nodes with --edge-admission")]
    Kind {
        found: &'static str,
        wanted: &'static str,
    },
    #[error("a node watermark for {found} partitions where this cluster has {wanted}: every node must join the same cluster")]
    Partitions { found: usize, wanted: u16 },
    #[error("summary batch cut short: {0}")]
    Truncated(&'static str),
    #[error("summary batch with {0} bytes after its last summary")]
    Trailing(usize),
    #[error("summary {index} of the batch is malformed: {what}")]
    Summary { index: u32, what: &'static str },
}

/// Appends summaries to a batch being built.
#[derive(Debug)]
pub struct BatchWriter {
    buf: Vec<u8>,
    count: u32,
    base_ts: u64,
    /// The previous summary: fields equal to its are left out (a flood repeats most of them).
    prev: Option<PacketSummary>,
    /// Header flags besides [`FLAG_LAST`] (what the body holds).
    kind: u8,
}

impl BatchWriter {
    /// A batch whose timestamps are encoded after `base_ts` (summaries must not be older; the
    /// smallest of the batch is best).
    pub fn new(base_ts: Timestamp) -> BatchWriter {
        let mut buf = Vec::with_capacity(HEADER_LEN + 64 * 32);
        buf.resize(HEADER_LEN, 0);
        BatchWriter {
            buf,
            count: 0,
            base_ts: base_ts.0,
            prev: None,
            kind: 0,
        }
    }

    /// Summaries so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded bytes so far (header included).
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends one summary. A summary older than the batch's base time is clamped to it.
    pub fn push(&mut self, p: &PacketSummary) {
        let (frag, offset) = match p.fragment {
            Fragment::None => (0u8, None),
            Fragment::First => (1, None),
            Fragment::Later { offset } => (2, Some(offset)),
        };
        let ports = p.sport != 0 || p.dport != 0;
        let mut tag = frag << TAG_FRAG_SHIFT;
        if p.src.is_ipv6() {
            tag |= TAG_SRC_V6;
        }
        if p.dst.is_ipv6() {
            tag |= TAG_DST_V6;
        }
        if p.hdr.known() {
            tag |= TAG_HDR;
        }
        if p.weight != 1 {
            tag |= TAG_WEIGHT;
        }
        if ports {
            tag |= TAG_PORTS;
        }
        let mut repeat = 0u8;
        if let Some(q) = &self.prev {
            if q.dst == p.dst {
                repeat |= R_DST;
            }
            if (q.proto, q.tcp_flags) == (p.proto, p.tcp_flags) {
                repeat |= R_PROTO;
            }
            if ports && q.dport == p.dport {
                repeat |= R_DPORT;
            }
            if q.wire_len == p.wire_len {
                repeat |= R_LEN;
            }
            if p.hdr.known()
                && q.hdr.known()
                && (HeaderFields {
                    ip_id: p.hdr.ip_id,
                    tcp_window: p.hdr.tcp_window,
                    ttl: p.hdr.ttl,
                    ..q.hdr
                }) == p.hdr
            {
                repeat |= R_HDR;
            }
        }
        if repeat != 0 {
            tag |= TAG_REPEAT;
        }
        let b = &mut self.buf;
        b.push(tag);
        if repeat != 0 {
            b.push(repeat);
        }
        varint(b, p.ts.0.saturating_sub(self.base_ts));
        if repeat & R_PROTO == 0 {
            b.push(p.proto);
            b.push(p.tcp_flags);
        }
        let addr = |b: &mut Vec<u8>, a: IpAddr| match a {
            IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
        };
        addr(b, p.src);
        if repeat & R_DST == 0 {
            addr(b, p.dst);
        }
        if ports {
            b.extend_from_slice(&p.sport.to_be_bytes());
            if repeat & R_DPORT == 0 {
                b.extend_from_slice(&p.dport.to_be_bytes());
            }
        }
        if repeat & R_LEN == 0 {
            varint(b, u64::from(p.wire_len));
        }
        if let Some(off) = offset {
            varint(b, u64::from(off));
        }
        if p.weight != 1 {
            varint(b, u64::from(p.weight));
        }
        if p.hdr.known() {
            let h = &p.hdr;
            b.extend_from_slice(&h.ip_id.to_be_bytes());
            b.extend_from_slice(&h.tcp_window.to_be_bytes());
            b.push(h.ttl);
        }
        if p.hdr.known() && repeat & R_HDR == 0 {
            let h = &p.hdr;
            b.extend_from_slice(&h.ip_len.to_be_bytes());
            b.extend_from_slice(&h.payload_len.to_be_bytes());
            b.extend_from_slice(&h.prefix);
            b.extend_from_slice(&[h.tcp_opts_len, h.prefix_len, h.bits]);
        }
        if p.proto == crate::decode::proto::TCP
            && p.hdr.known()
            && p.tcp_flags & crate::decode::tcp_flags::ACK != 0
        {
            // what a handshake is verified by (request signals, version 3; a bare SYN has none)
            b.extend_from_slice(&p.tcp_num.to_be_bytes());
        }
        self.count += 1;
        self.prev = Some(*p);
    }

    /// The finished batch.
    pub fn finish(mut self, header: BatchHeader) -> Vec<u8> {
        let len = u32::try_from(self.buf.len() - HEADER_LEN).unwrap_or(u32::MAX);
        let h = &mut self.buf[..HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = VERSION;
        h[5] = self.kind | if header.last { FLAG_LAST } else { 0 };
        h[6..8].copy_from_slice(&header.partition.to_be_bytes());
        h[8..12].copy_from_slice(&header.node.to_be_bytes());
        h[12..20].copy_from_slice(&header.seq.to_be_bytes());
        h[20..28].copy_from_slice(&header.watermark.to_be_bytes());
        h[28..36].copy_from_slice(&self.base_ts.to_be_bytes());
        h[36..40].copy_from_slice(&self.count.to_be_bytes());
        h[40..44].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

/// Appends `v` as LEB128.
#[inline]
fn varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// The length of the batch at the start of `bytes` as its header gives it (header included; the
/// header's length alone when there is no header: a reader then refuses the bytes).
pub fn batch_len(bytes: &[u8]) -> usize {
    let body = bytes
        .get(40..44)
        .map_or(0, |l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
    HEADER_LEN.saturating_add(body)
}

/// Whether a batch's header says it carries aggregates ([`aggregates`]) rather than summaries.
pub fn is_aggregates(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC) && bytes.get(5).is_some_and(|f| f & FLAG_AGGREGATES != 0)
}

/// A node's watermark for every partition (see the module's description).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeWatermark {
    pub node: u32,
    /// The node's watermark number, from 1.
    pub seq: u64,
    /// Packet time (ns) the node has published everything before, on every partition.
    pub watermark: u64,
    /// Each partition's last batch sequence number (0: none yet).
    pub last_seqs: Vec<u64>,
}

/// Encodes a node watermark.
pub fn encode_watermark(w: &NodeWatermark) -> Vec<u8> {
    let mut b = BatchWriter::new(Timestamp(0));
    b.kind = FLAG_WATERMARK;
    for s in &w.last_seqs {
        varint(&mut b.buf, *s);
    }
    let n = u16::try_from(w.last_seqs.len()).unwrap_or(u16::MAX);
    b.count = u32::from(n);
    b.finish(BatchHeader {
        partition: n,
        node: w.node,
        seq: w.seq,
        watermark: w.watermark,
        last: false,
    })
}

/// Whether a message's header says it is a node watermark.
pub fn is_watermark(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC) && bytes.get(5).is_some_and(|f| f & FLAG_WATERMARK != 0)
}

/// Reads a node watermark.
pub fn decode_watermark(bytes: &[u8]) -> Result<NodeWatermark, WireError> {
    let Body {
        header,
        count,
        body,
        ..
    } = body_of(bytes, FLAG_WATERMARK)?;
    if count != u32::from(header.partition) || header.partition > MAX_PARTITIONS {
        return Err(WireError::Truncated(
            "a node watermark whose partition count is not its count of sequence numbers",
        ));
    }
    let mut r = Reader {
        b: body,
        at: 0,
        prev: None,
    };
    let mut last_seqs = Vec::with_capacity(usize::from(header.partition));
    for _ in 0..count {
        let seq = r
            .varint()
            .map_err(|_| WireError::Truncated("sequence numbers"))?;
        last_seqs.push(seq);
    }
    if r.at != body.len() {
        return Err(WireError::Trailing(body.len() - r.at));
    }
    Ok(NodeWatermark {
        node: header.node,
        seq: header.seq,
        watermark: header.watermark,
        last_seqs,
    })
}

/// The count of summaries a batch's header announces (0 for what is not a batch, and for a node
/// watermark).
pub fn batch_count(bytes: &[u8]) -> u64 {
    match bytes.get(36..40) {
        Some(b) if bytes.starts_with(&MAGIC) && !is_watermark(bytes) => {
            u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        _ => 0,
    }
}

/// Reads a batch: its header, then every summary appended to `out`. Nothing is appended unless the
/// whole batch decodes.
pub fn decode_batch(bytes: &[u8], out: &mut Vec<PacketSummary>) -> Result<BatchHeader, WireError> {
    let Body {
        header,
        base_ts,
        count,
        body,
    } = body_of(bytes, 0)?;
    let len = body.len();
    // the smallest summary is 7 bytes (tag, repeats, time, an IPv4 source): a count the body
    // cannot hold is refused before reserving
    if (count as usize).saturating_mul(7) > len {
        return Err(WireError::Truncated(
            "fewer bytes than the count of summaries needs",
        ));
    }
    let start = out.len();
    out.reserve(count as usize);
    let mut r = Reader {
        b: body,
        at: 0,
        prev: None,
    };
    for index in 0..count {
        match r.summary(base_ts) {
            Ok(p) => out.push(p),
            Err(what) => {
                out.truncate(start);
                return Err(WireError::Summary { index, what });
            }
        }
    }
    if r.at != body.len() {
        out.truncate(start);
        return Err(WireError::Trailing(body.len() - r.at));
    }
    Ok(header)
}

/// A batch's header and body, checked.
struct Body<'a> {
    header: BatchHeader,
    base_ts: u64,
    count: u32,
    body: &'a [u8],
}

/// Reads and checks a batch's header (`kind`: the flags that say what its body holds) and
/// finds its body.
fn body_of(bytes: &[u8], kind: u8) -> Result<Body<'_>, WireError> {
    let head = bytes
        .get(..HEADER_LEN)
        .ok_or(WireError::Truncated("header"))?;
    if head[0..4] != MAGIC {
        return Err(WireError::Magic);
    }
    if head[4] != VERSION {
        return Err(WireError::Version(head[4]));
    }
    if head[5] & !(FLAG_LAST | KIND) != 0 || head[5] & KIND == KIND {
        return Err(WireError::Flags(head[5]));
    }
    if head[5] & KIND != kind {
        let name = |k: u8| match k {
            0 => "summaries",
            FLAG_AGGREGATES => "aggregates",
            _ => "a node watermark",
        };
        return Err(WireError::Kind {
            found: name(head[5] & KIND),
            wanted: name(kind),
        });
    }
    let u16_at = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
    let header = BatchHeader {
        partition: u16_at(6),
        node: u32_at(8),
        seq: u64_at(12),
        watermark: u64_at(20),
        last: head[5] & FLAG_LAST != 0,
    };
    let base_ts = u64_at(28);
    let count = u32_at(36);
    let len = u32_at(40) as usize;
    let body = &bytes[HEADER_LEN..];
    if body.len() < len {
        return Err(WireError::Truncated("summaries"));
    }
    if body.len() > len {
        return Err(WireError::Trailing(body.len() - len));
    }
    Ok(Body {
        header,
        base_ts,
        count,
        body,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    /// The previous summary decoded (what repeat bits refer to).
    prev: Option<PacketSummary>,
}

impl Reader<'_> {
    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let s = self.b.get(self.at..self.at + N).ok_or("cut short")?;
        self.at += N;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take::<1>()?[0])
    }

    #[inline]
    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes(self.take::<2>()?))
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("varint over 64 bits");
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint over 10 bytes")
    }

    #[inline]
    fn addr(&mut self, v6: bool) -> Result<IpAddr, &'static str> {
        Ok(if v6 {
            IpAddr::V6(Ipv6Addr::from(self.take::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.take::<4>()?))
        })
    }

    fn u32_varint(&mut self) -> Result<u32, &'static str> {
        u32::try_from(self.varint()?).map_err(|_| "a 32-bit field over 32 bits")
    }

    fn summary(&mut self, base_ts: u64) -> Result<PacketSummary, &'static str> {
        let p = self.summary_inner(base_ts)?;
        self.prev = Some(p);
        Ok(p)
    }

    fn summary_inner(&mut self, base_ts: u64) -> Result<PacketSummary, &'static str> {
        let tag = self.u8()?;
        // every tag bit has a meaning (version 2)
        let repeat = if tag & TAG_REPEAT != 0 { self.u8()? } else { 0 };
        if repeat & !R_KNOWN != 0 {
            return Err("unknown repeat bits");
        }
        let prev = match (repeat, self.prev) {
            (0, p) => p,
            (_, Some(p)) => Some(p),
            (_, None) => return Err("repeats a field of no earlier summary"),
        };
        let q = prev.unwrap_or_default();
        let ts = base_ts
            .checked_add(self.varint()?)
            .ok_or("timestamp past the year 2554")?;
        let (proto, tcp_flags) = if repeat & R_PROTO != 0 {
            (q.proto, q.tcp_flags)
        } else {
            (self.u8()?, self.u8()?)
        };
        let src = self.addr(tag & TAG_SRC_V6 != 0)?;
        let dst = if repeat & R_DST != 0 {
            if q.dst.is_ipv6() != (tag & TAG_DST_V6 != 0) {
                return Err("repeated destination of another family");
            }
            q.dst
        } else {
            self.addr(tag & TAG_DST_V6 != 0)?
        };
        let (sport, dport) = if tag & TAG_PORTS != 0 {
            let sport = self.u16()?;
            let dport = if repeat & R_DPORT != 0 {
                q.dport
            } else {
                self.u16()?
            };
            (sport, dport)
        } else if repeat & R_DPORT != 0 {
            return Err("repeated port without ports");
        } else {
            (0, 0)
        };
        let wire_len = if repeat & R_LEN != 0 {
            q.wire_len
        } else {
            self.u32_varint()?
        };
        let fragment = match (tag >> TAG_FRAG_SHIFT) & 0x3 {
            0 => Fragment::None,
            1 => Fragment::First,
            2 => Fragment::Later {
                offset: u16::try_from(self.u32_varint()?)
                    .map_err(|_| "fragment offset over 65535")?,
            },
            _ => return Err("unknown fragment kind"),
        };
        let weight = if tag & TAG_WEIGHT != 0 {
            self.u32_varint()?
        } else {
            1
        };
        let hdr = if tag & TAG_HDR != 0 {
            // what varies packet by packet even in a flood, then the rest unless repeated
            let ip_id = self.u16()?;
            let tcp_window = self.u16()?;
            let ttl = self.u8()?;
            if repeat & R_HDR != 0 {
                if !q.hdr.known() {
                    return Err("repeated header fields of a summary without them");
                }
                HeaderFields {
                    ip_id,
                    tcp_window,
                    ttl,
                    ..q.hdr
                }
            } else {
                let ip_len = self.u16()?;
                let payload_len = self.u16()?;
                let prefix = self.take::<4>()?;
                let [tcp_opts_len, prefix_len, bits] = self.take::<3>()?;
                if bits & HeaderFields::KNOWN == 0 || prefix_len > 4 {
                    return Err("header fields out of range");
                }
                HeaderFields {
                    ip_id,
                    ip_len,
                    tcp_window,
                    payload_len,
                    prefix,
                    ttl,
                    tcp_opts_len,
                    prefix_len,
                    bits,
                }
            }
        } else if repeat & R_HDR != 0 {
            return Err("repeated header fields without header fields");
        } else {
            HeaderFields::UNKNOWN
        };
        let tcp_num = if proto == crate::decode::proto::TCP
            && hdr.known()
            && tcp_flags & crate::decode::tcp_flags::ACK != 0
        {
            u32::from_be_bytes(self.take::<4>()?)
        } else {
            0
        };
        Ok(PacketSummary {
            ts: Timestamp(ts),
            src,
            dst,
            proto,
            sport,
            dport,
            tcp_flags,
            tcp_num,
            wire_len,
            fragment,
            weight,
            hdr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn syn(i: u64) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(1_764_079_202_000_000_000 + i * 1_000),
            src: IpAddr::V4(Ipv4Addr::from(0x6440_0000 + i as u32)),
            dst: [198, 51, 100, 10].into(),
            proto: 6,
            sport: 40_000 + i as u16,
            dport: 80,
            tcp_flags: 0x02,
            tcp_num: 0,
            wire_len: 60,
            fragment: Fragment::None,
            weight: 1,
            hdr: HeaderFields {
                ip_id: i as u16,
                ip_len: 40,
                tcp_window: 512,
                payload_len: 0,
                prefix: [0; 4],
                ttl: 64,
                tcp_opts_len: 0,
                prefix_len: 0,
                bits: HeaderFields::KNOWN | HeaderFields::DF | HeaderFields::L4,
            },
        }
    }

    fn header() -> BatchHeader {
        BatchHeader {
            partition: 7,
            node: 42,
            seq: 9,
            watermark: 1_764_079_202_000_000_000,
            last: true,
        }
    }

    /// `packets` in a batch (based at the earliest time, as the publisher bases them) with
    /// [`header`].
    fn batch_of(packets: &[PacketSummary]) -> Vec<u8> {
        let base = packets.iter().map(|p| p.ts).min().unwrap_or(Timestamp(0));
        let mut w = BatchWriter::new(base);
        for p in packets {
            w.push(p);
        }
        w.finish(header())
    }

    /// `packets` written into a batch and read back: its header, and the summaries read.
    fn round_trip(
        packets: &[PacketSummary],
    ) -> (Result<BatchHeader, WireError>, Vec<PacketSummary>) {
        let mut out = Vec::new();
        let read = decode_batch(&batch_of(packets), &mut out);
        (read, out)
    }

    #[test]
    fn a_batch_round_trips_and_is_compact() {
        let packets: Vec<PacketSummary> = (0..256).map(syn).collect();
        let bytes = batch_of(&packets);
        let per = (bytes.len() - HEADER_LEN) as f64 / 256.0;
        // a SYN flood: destination, protocol, flags, port, length and most header fields repeat
        assert!(per <= 17.0, "{per} bytes a summary");
        // each summary alone (no repeats): the whole fields
        let mut one = BatchWriter::new(packets[0].ts);
        one.push(&packets[0]);
        let first = one.bytes() - HEADER_LEN;
        assert!((30..=36).contains(&first), "{first} bytes");
        let mut out = Vec::new();
        assert_eq!(decode_batch(&bytes, &mut out), Ok(header()));
        assert_eq!(out, packets);
    }

    #[test]
    fn every_cut_and_every_flipped_header_byte_is_an_error_not_a_panic() {
        let mut w = BatchWriter::new(Timestamp(0));
        for i in 0..4 {
            w.push(&syn(i));
        }
        let bytes = w.finish(header());
        for cut in 0..bytes.len() {
            let mut out = Vec::new();
            assert!(decode_batch(&bytes[..cut], &mut out).is_err(), "cut {cut}");
            assert!(out.is_empty());
        }
        let mut bad = bytes.clone();
        bad[4] = 1;
        assert_eq!(
            decode_batch(&bad, &mut Vec::new()),
            Err(WireError::Version(1))
        );
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(decode_batch(&bad, &mut Vec::new()), Err(WireError::Magic));
    }

    #[test]
    fn a_node_watermark_round_trips_and_cut_or_mixed_bytes_are_errors() {
        let w = NodeWatermark {
            node: 7,
            seq: 3,
            watermark: 1_234_567,
            last_seqs: vec![0, 1, 300, u64::MAX],
        };
        let bytes = encode_watermark(&w);
        assert!(is_watermark(&bytes) && !is_aggregates(&bytes));
        assert_eq!(decode_watermark(&bytes), Ok(w));
        // it carries no summaries, and is no batch
        assert_eq!(batch_count(&bytes), 0);
        assert!(matches!(
            decode_batch(&bytes, &mut Vec::new()),
            Err(WireError::Kind {
                found: "a node watermark",
                ..
            })
        ));
        for cut in 0..bytes.len() {
            assert!(decode_watermark(&bytes[..cut]).is_err(), "cut {cut}");
        }
        // a count that is not the partition count, and both kind bits at once
        let mut bad = bytes.clone();
        bad[39] = 3;
        assert!(decode_watermark(&bad).is_err());
        let mut bad = bytes;
        bad[5] |= FLAG_AGGREGATES;
        assert!(matches!(decode_watermark(&bad), Err(WireError::Flags(_))));
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
            any::<u128>().prop_map(|a| IpAddr::V6(a.into())),
        ]
    }

    pub(super) fn any_summary() -> impl Strategy<Value = PacketSummary> {
        (
            (0u64..1 << 40, any_ip(), any_ip(), any::<u8>(), any::<u16>()),
            (
                any::<u16>(),
                any::<u8>(),
                any::<u32>(),
                0u8..3,
                any::<u16>(),
            ),
            (any::<u32>(), any::<bool>(), any::<[u8; 16]>()),
        )
            .prop_map(
                |((ts, src, dst, proto, sport), (dport, flags, len, fk, off), (w, known, h))| {
                    PacketSummary {
                        ts: Timestamp(1_000_000 + ts),
                        src,
                        dst,
                        proto,
                        sport,
                        dport,
                        tcp_flags: flags,
                        tcp_num: 0,
                        wire_len: len,
                        fragment: match fk {
                            0 => Fragment::None,
                            1 => Fragment::First,
                            _ => Fragment::Later { offset: off },
                        },
                        weight: w,
                        hdr: if known {
                            HeaderFields {
                                ip_id: u16::from_be_bytes([h[0], h[1]]),
                                ip_len: u16::from_be_bytes([h[2], h[3]]),
                                tcp_window: u16::from_be_bytes([h[4], h[5]]),
                                payload_len: u16::from_be_bytes([h[6], h[7]]),
                                prefix: [h[8], h[9], h[10], h[11]],
                                ttl: h[12],
                                tcp_opts_len: h[13],
                                prefix_len: h[14] % 5,
                                bits: h[15] | HeaderFields::KNOWN,
                            }
                        } else {
                            HeaderFields::UNKNOWN
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_summaries_round_trip(packets in proptest::collection::vec(any_summary(), 0..40)) {
            let (read, out) = round_trip(&packets);
            prop_assert_eq!(read, Ok(header()));
            prop_assert_eq!(out, packets);
        }

        #[test]
        fn summaries_that_repeat_fields_of_the_previous_round_trip(
            packets in proptest::collection::vec((any_summary(), any::<u8>()), 0..60)
        ) {
            // each summary takes some field groups of the one before: what a flood does
            let mut seq: Vec<PacketSummary> = Vec::new();
            for (mut p, copy) in packets {
                if let Some(q) = seq.last() {
                    if copy & 1 != 0 { p.dst = q.dst; }
                    if copy & 2 != 0 { p.proto = q.proto; p.tcp_flags = q.tcp_flags; }
                    if copy & 4 != 0 { p.dport = q.dport; }
                    if copy & 8 != 0 { p.wire_len = q.wire_len; }
                    if copy & 16 != 0 && p.hdr.known() && q.hdr.known() {
                        p.hdr = HeaderFields { ip_id: p.hdr.ip_id, ttl: p.hdr.ttl, ..q.hdr };
                    }
                    if copy & 32 != 0 { p.src = q.src; }
                }
                seq.push(p);
            }
            let (read, out) = round_trip(&seq);
            prop_assert_eq!(read, Ok(header()));
            prop_assert_eq!(out, seq);
        }

        #[test]
        fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if bytes.len() >= HEADER_LEN {
                bytes[..6].copy_from_slice(&[b'F', b'W', b'S', b'B', VERSION, 0]);
                let len = (bytes.len() - HEADER_LEN) as u32;
                bytes[40..44].copy_from_slice(&len.to_be_bytes());
            }
            let mut out = Vec::new();
            if decode_batch(&bytes, &mut out).is_err() {
                prop_assert!(out.is_empty());
            }
        }
    }
}
