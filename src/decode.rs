//! Decode: one captured frame → a small `Copy` [`PacketSummary`], or a counted [`DecodeError`].
//!
//! This module owns everything between the capture's bytes and the engine's view of a packet: the link
//! layers ([`LinkType`]: Ethernet with 802.1Q/802.1ad/QinQ/MPLS/PPPoE, Linux SLL and SLL2, raw IP,
//! BSD NULL/LOOP), IPv4 and IPv6 (extension headers, fragments) and the first bytes of TCP/UDP. It never
//! allocates and never panics on input: a frame it cannot use is a [`DecodeError`] whose [`SkipReason`]
//! is counted in [`DecodeStats`], so nothing is dropped silently.

use std::net::IpAddr;

use crate::time::Timestamp;

/// A capture link type (the pcap `LINKTYPE_*` number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

pub mod request_head;
mod skip;
mod summary;

pub use skip::{DecodeError, DecodeStats, SkipReason};
pub use summary::{proto, tcp_flags, Fragment, HeaderFields, PacketSummary};

/// Ethertypes the decoder follows.
mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
    pub const QINQ_OLD2: u16 = 0x9200;
    pub const MPLS_UC: u16 = 0x8847;
    pub const MPLS_MC: u16 = 0x8848;
    pub const PPPOE_SESSION: u16 = 0x8864;
}

/// Most VLAN tags, MPLS labels or IPv6 extension headers followed before giving up.
const MAX_LAYERS: usize = 16;

/// `LINKTYPE_*` numbers some systems use for raw IP besides 101.
const LINKTYPE_RAW_ALT1: u32 = 12;
const LINKTYPE_RAW_ALT2: u32 = 14;

/// BSD address families for IPv4 and IPv6 (IPv6 differs between BSDs).
const AF_INET: u32 = 2;
const AF_INET6: [u32; 3] = [24, 28, 30];

/// Turns frames into [`PacketSummary`]s. Stateless; one per thread or shared, as convenient.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decoder;

/// What the link layer says comes next.
enum Network<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
}

/// The transport-layer facts of a packet (the signature fields go straight into its [`HeaderFields`]).
#[derive(Default)]
struct Transport {
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    tcp_num: u32,
}

/// `n` as a u16 length field, saturating.
#[inline]
fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl Decoder {
    /// Decodes one frame of link type `link`. `wire_len` is the original length; 0 or a value below the
    /// captured length means "unknown" and the captured length is used.
    #[inline(always)]
    pub fn decode(
        &self,
        link: LinkType,
        frame: &[u8],
        ts: Timestamp,
        wire_len: u32,
    ) -> Result<PacketSummary, DecodeError> {
        if link == LinkType::ETHERNET {
            if let Some(p) = ethernet_ipv4_tcp_udp(frame, ts, wire_len) {
                return Ok(p);
            }
        }
        self.decode_any(link, frame, ts, wire_len)
    }

    /// [`Decoder::decode`] into `out`, for a loop that decodes frame after frame into one summary:
    /// the fields land where they are read from, with no summary moved on the way (a summary is
    /// some 80 bytes, and moving it twice cost a minimum-size packet a tenth of its decoding).
    /// On an error, what `out` holds is unspecified (still a valid summary).
    #[inline(always)]
    pub fn decode_into(
        &self,
        link: LinkType,
        frame: &[u8],
        ts: Timestamp,
        wire_len: u32,
        out: &mut PacketSummary,
    ) -> Result<(), DecodeError> {
        // the straight path spelled out again, not `*out = self.decode(..)?`: through the
        // Result the summary is moved once more (+37 instructions a packet on the SYN-flood bench);
        // the straight path writes `out` itself, where a returned summary was copied into it
        if link == LinkType::ETHERNET && ethernet_ipv4_tcp_udp_into(frame, ts, wire_len, out) {
            return Ok(());
        }
        *out = self.decode_any(link, frame, ts, wire_len)?;
        Ok(())
    }

    /// [`Decoder::decode`] of any frame, without the common frame's straight path.
    #[inline(never)]
    fn decode_any(
        &self,
        link: LinkType,
        frame: &[u8],
        ts: Timestamp,
        wire_len: u32,
    ) -> Result<PacketSummary, DecodeError> {
        if frame.is_empty() {
            return Err(DecodeError::Empty);
        }
        let captured = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let wire_len = if wire_len < captured {
            captured
        } else {
            wire_len
        };
        // The summary is built once, in place: no copy of it after the IP layer.
        let meta = Meta {
            ts: ts.clamped(),
            wire_len,
        };
        match link_payload(link, frame)? {
            Network::V4(ip) => decode_ipv4(ip, meta),
            Network::V6(ip) => decode_ipv6(ip, meta),
        }
    }
}

/// The common frame, straight through: Ethernet II, IPv4 without options and not a fragment, a
/// TCP header captured through its window or a whole UDP header. Anything else (or anything
/// short) is None and goes the general way, which gives the same summary for these frames (a
/// test compares both on every frame of the shared captures and on damaged ones).
#[inline(always)]
fn ethernet_ipv4_tcp_udp(frame: &[u8], ts: Timestamp, wire_len: u32) -> Option<PacketSummary> {
    let mut p = PacketSummary::default();
    ethernet_ipv4_tcp_udp_into(frame, ts, wire_len, &mut p).then_some(p)
}

/// [`ethernet_ipv4_tcp_udp`] written into `out`: true when the frame took the straight path (`out`
/// is then its summary), false when it did not (`out` is left as it was).
#[inline(always)]
fn ethernet_ipv4_tcp_udp_into(
    frame: &[u8],
    ts: Timestamp,
    wire_len: u32,
    out: &mut PacketSummary,
) -> bool {
    // Ethernet (14) + IPv4 (20) + the first 20 bytes of TCP or UDP's 8 and 12 more
    let Some(f) = frame.first_chunk::<54>() else {
        return false;
    };
    if f[12] != 0x08 || f[13] != 0x00 || f[14] != 0x45 {
        return false;
    }
    let total = u16::from_be_bytes([f[16], f[17]]);
    let (flags, proto) = (f[20], f[23]);
    // neither more-fragments nor an offset (DF alone is fine); room for the transport header
    if flags & 0x3f != 0 || f[21] != 0 || total < 40 {
        return false;
    }
    let total_len = usize::from(total);
    // the IP length bounds what follows (Ethernet padding lies beyond it)
    let end = (14 + total_len).min(frame.len());
    let Some(l4) = frame.get(34..end) else {
        return false;
    };
    let l4_len = total_len - 20;
    // (transport header length, TCP flags, window, options length)
    let (header_len, tcp_flags, tcp_window, tcp_opts_len, tcp_num) = match proto {
        proto::TCP if l4.len() >= 20 => {
            // a data offset below 5 is malformed: the payload is then taken to start at 20
            let words = (f[46] >> 4).max(5);
            let window = u16::from_be_bytes([f[48], f[49]]);
            // read only with ACK set: a SYN flood's packets skip it at one test
            let num = if f[47] & tcp_flags::ACK == 0 {
                0
            } else if f[47] & tcp_flags::SYN != 0 {
                u32::from_be_bytes([f[38], f[39], f[40], f[41]])
            } else {
                u32::from_be_bytes([f[42], f[43], f[44], f[45]])
            };
            (usize::from(words) * 4, f[47], window, (words - 5) * 4, num)
        }
        proto::UDP if l4.len() >= 8 => (8, 0, 0, 0, 0),
        _ => return false,
    };
    let captured = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let payload = l4.get(header_len..).unwrap_or_default();
    let (prefix, prefix_len) = match payload.first_chunk::<4>() {
        Some(four) => (*four, 4),
        None => {
            let mut prefix = [0; 4];
            for (d, s) in prefix.iter_mut().zip(payload) {
                *d = *s;
            }
            (prefix, payload.len().min(4))
        }
    };
    let mut bits = HeaderFields::KNOWN
        | HeaderFields::L4
        | if flags & 0x40 != 0 {
            HeaderFields::DF
        } else {
            0
        };
    if proto == proto::TCP && prefix_len != 0 {
        bits |= request_bits(prefix.get(..prefix_len).unwrap_or_default(), payload);
    }
    // made once every field is known: the summary is written in one go, not patched after
    let hdr = HeaderFields {
        ip_id: u16::from_be_bytes([f[18], f[19]]),
        ip_len: total,
        tcp_window,
        payload_len: len16(l4_len.saturating_sub(header_len)),
        prefix,
        ttl: f[22],
        tcp_opts_len,
        prefix_len: prefix_len as u8,
        bits,
    };
    *out = PacketSummary {
        ts: ts.clamped(),
        src: IpAddr::V4(std::net::Ipv4Addr::new(f[26], f[27], f[28], f[29])),
        dst: IpAddr::V4(std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33])),
        proto,
        sport: u16::from_be_bytes([f[34], f[35]]),
        dport: u16::from_be_bytes([f[36], f[37]]),
        tcp_flags,
        tcp_num,
        wire_len: wire_len.max(captured),
        fragment: Fragment::None,
        weight: 1,
        hdr,
    };
    true
}

/// A UDP datagram found in a frame: the telemetry collector's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
}

impl Decoder {
    /// The UDP datagram a frame carries, `Ok(None)` when it carries something else (another
    /// protocol, an IP fragment, IPv6 extension headers).
    pub fn udp_datagram<'a>(
        &self,
        link: LinkType,
        frame: &'a [u8],
    ) -> Result<Option<UdpDatagram<'a>>, DecodeError> {
        if frame.is_empty() {
            return Err(DecodeError::Empty);
        }
        let (src, dst, l4) = match link_payload(link, frame)? {
            Network::V4(ip) => {
                let header = etherparse::Ipv4HeaderSlice::from_slice(ip).map_err(|e| match e {
                    etherparse::err::ipv4::HeaderSliceError::Len(_) => DecodeError::TruncatedIp,
                    etherparse::err::ipv4::HeaderSliceError::Content(_) => DecodeError::BadIpHeader,
                })?;
                if header.protocol().0 != proto::UDP
                    || header.more_fragments()
                    || header.fragments_offset().value() != 0
                {
                    return Ok(None);
                }
                let hl = header.slice().len();
                let end = usize::from(header.total_len()).clamp(hl, ip.len());
                let l4 = ip.get(hl..end).unwrap_or_default();
                (
                    IpAddr::V4(header.source_addr()),
                    IpAddr::V4(header.destination_addr()),
                    l4,
                )
            }
            Network::V6(ip) => {
                let header = etherparse::Ipv6HeaderSlice::from_slice(ip).map_err(|e| match e {
                    etherparse::err::ipv6::HeaderSliceError::Len(_) => DecodeError::TruncatedIp,
                    etherparse::err::ipv6::HeaderSliceError::Content(_) => DecodeError::BadIpHeader,
                })?;
                if header.next_header().0 != proto::UDP {
                    return Ok(None);
                }
                let rest = ip.get(etherparse::Ipv6Header::LEN..).unwrap_or_default();
                let len = usize::from(header.payload_length());
                let l4 = if len == 0 {
                    rest
                } else {
                    rest.get(..len).unwrap_or(rest)
                };
                (
                    IpAddr::V6(header.source_addr()),
                    IpAddr::V6(header.destination_addr()),
                    l4,
                )
            }
        };
        let (Some(sport), Some(dport), Some(len)) = (be16(l4, 0), be16(l4, 2), be16(l4, 4)) else {
            return Err(DecodeError::TruncatedTransport);
        };
        let end = usize::from(len).clamp(8, l4.len().max(8));
        let payload = l4.get(8..end.min(l4.len())).unwrap_or_default();
        Ok(Some(UdpDatagram {
            src,
            dst,
            sport,
            dport,
            payload,
        }))
    }
}

impl Decoder {
    /// The request head `frame` carries, when `p` (its summary) is TCP whose payload starts like
    /// one ([`request_head::wants_parse`]): what it asks for, from whom (Host, User-Agent, SNI,
    /// JA4). One bit test for any other packet ([`HeaderFields::REQUEST`]).
    #[inline]
    pub fn request_head(
        &self,
        link: LinkType,
        frame: &[u8],
        p: &PacketSummary,
    ) -> Option<request_head::RequestHead> {
        if p.hdr.bits & HeaderFields::REQUEST == 0 {
            return None;
        }
        tcp_payload(link, frame).and_then(request_head::parse)
    }
}

/// The captured TCP payload of a frame (IPv4 that is not a fragment, IPv6 without extension
/// headers), for the rare frames whose request head is read.
#[cold]
#[inline(never)]
fn tcp_payload(link: LinkType, frame: &[u8]) -> Option<&[u8]> {
    let l4 = match link_payload(link, frame).ok()? {
        Network::V4(ip) => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            let (flags, proto_byte) = (be16(ip, 6)?, *ip.get(9)?);
            if proto_byte != proto::TCP || flags & 0x3fff != 0 || ihl < 20 {
                return None;
            }
            // (a get, not a clamp: an IHL past what was captured gives nothing, never a panic)
            ip.get(ihl..total.max(ihl).min(ip.len()))?
        }
        Network::V6(ip) => {
            if *ip.get(6)? != proto::TCP {
                return None;
            }
            let len = usize::from(be16(ip, 4)?);
            let rest = ip.get(40..)?;
            rest.get(..len.min(rest.len()))?
        }
    };
    let header_len = (usize::from(*l4.get(12)? >> 4) * 4).max(20);
    l4.get(header_len..)
}

/// Big-endian u16 at `at`, if present.
#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?) {
        Some(&[hi, lo]) => Some(u16::from_be_bytes([hi, lo])),
        _ => None,
    }
}

/// The 4 bytes at `at`, if present.
#[inline]
fn bytes4(b: &[u8], at: usize) -> Option<[u8; 4]> {
    match b.get(at..at.checked_add(4)?) {
        Some(&[a, b, c, d]) => Some([a, b, c, d]),
        _ => None,
    }
}

/// The 16 bytes at `at`, if present.
#[inline]
fn bytes16(b: &[u8], at: usize) -> Option<[u8; 16]> {
    b.get(at..at.checked_add(16)?)?.try_into().ok()
}

/// Strips the link layer of `link` and says which IP version follows.
fn link_payload(link: LinkType, frame: &[u8]) -> Result<Network<'_>, DecodeError> {
    match link.0 {
        1 => ethernet(frame),
        101 | LINKTYPE_RAW_ALT1 | LINKTYPE_RAW_ALT2 => sniff_ip(frame),
        228 => Ok(Network::V4(frame)),
        229 => Ok(Network::V6(frame)),
        113 => cooked(frame, 14, 16),
        276 => cooked(frame, 0, 20),
        0 => bsd_loopback(frame, true),
        108 => bsd_loopback(frame, false),
        other => Err(DecodeError::UnsupportedLinkType(other)),
    }
}

/// Raw IP: the version nibble says which.
fn sniff_ip(ip: &[u8]) -> Result<Network<'_>, DecodeError> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => Ok(Network::V4(ip)),
        Some(6) => Ok(Network::V6(ip)),
        Some(_) => Err(DecodeError::BadIpHeader),
        None => Err(DecodeError::TruncatedIp),
    }
}

/// Ethernet II: destination, source, ethertype, then tags.
#[inline]
fn ethernet(frame: &[u8]) -> Result<Network<'_>, DecodeError> {
    // read in place: the ethertype is all the link layer tells
    let (Some(ethertype), Some(rest)) = (be16(frame, 12), frame.get(14..)) else {
        return Err(DecodeError::TruncatedLink);
    };
    if ethertype == ethertype::IPV4 {
        return Ok(Network::V4(rest));
    }
    by_ethertype(ethertype, rest)
}

/// Linux cooked capture: SLL (protocol at 14, 16-byte header) or SLL2 (protocol at 0, 20 bytes).
fn cooked(frame: &[u8], proto_at: usize, header_len: usize) -> Result<Network<'_>, DecodeError> {
    let proto = be16(frame, proto_at).ok_or(DecodeError::TruncatedLink)?;
    let rest = frame.get(header_len..).ok_or(DecodeError::TruncatedLink)?;
    by_ethertype(proto, rest)
}

/// BSD NULL (host byte order, so both are accepted) or LOOP (network byte order).
fn bsd_loopback(frame: &[u8], any_order: bool) -> Result<Network<'_>, DecodeError> {
    let af = bytes4(frame, 0).ok_or(DecodeError::TruncatedLink)?;
    let rest = frame.get(4..).ok_or(DecodeError::TruncatedLink)?;
    let be = u32::from_be_bytes(af);
    let le = u32::from_le_bytes(af);
    let v4 = be == AF_INET || (any_order && le == AF_INET);
    let v6 = AF_INET6.contains(&be) || (any_order && AF_INET6.contains(&le));
    if v4 {
        Ok(Network::V4(rest))
    } else if v6 {
        Ok(Network::V6(rest))
    } else {
        Err(DecodeError::NonIp)
    }
}

/// Follows an ethertype through VLAN tags, MPLS and PPPoE down to IP.
fn by_ethertype(mut ethertype: u16, mut rest: &[u8]) -> Result<Network<'_>, DecodeError> {
    for _ in 0..MAX_LAYERS {
        match ethertype {
            ethertype::IPV4 => return Ok(Network::V4(rest)),
            ethertype::IPV6 => return Ok(Network::V6(rest)),
            ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD | ethertype::QINQ_OLD2 => {
                let tag = etherparse::SingleVlanHeaderSlice::from_slice(rest)
                    .map_err(|_| DecodeError::TruncatedLink)?;
                ethertype = tag.ether_type().0;
                rest = rest
                    .get(etherparse::SingleVlanHeader::LEN..)
                    .ok_or(DecodeError::TruncatedLink)?;
            }
            ethertype::MPLS_UC | ethertype::MPLS_MC => return mpls(rest),
            ethertype::PPPOE_SESSION => return pppoe(rest),
            _ => return Err(DecodeError::NonIp),
        }
    }
    Err(DecodeError::NonIp)
}

/// MPLS: labels down to bottom-of-stack, then the IP version nibble.
fn mpls(mut rest: &[u8]) -> Result<Network<'_>, DecodeError> {
    for _ in 0..MAX_LAYERS {
        let label = bytes4(rest, 0).ok_or(DecodeError::TruncatedLink)?;
        rest = rest.get(4..).ok_or(DecodeError::TruncatedLink)?;
        if label[2] & 0x01 != 0 {
            return match rest.first().map(|b| b >> 4) {
                Some(4) => Ok(Network::V4(rest)),
                Some(6) => Ok(Network::V6(rest)),
                Some(_) => Err(DecodeError::NonIp),
                None => Err(DecodeError::TruncatedLink),
            };
        }
    }
    Err(DecodeError::NonIp)
}

/// PPPoE session: 6-byte header, then the 2-byte PPP protocol.
fn pppoe(rest: &[u8]) -> Result<Network<'_>, DecodeError> {
    let ppp_proto = be16(rest, 6).ok_or(DecodeError::TruncatedLink)?;
    let ip = rest.get(8..).ok_or(DecodeError::TruncatedLink)?;
    match ppp_proto {
        0x0021 => Ok(Network::V4(ip)),
        0x0057 => Ok(Network::V6(ip)),
        _ => Err(DecodeError::NonIp),
    }
}

/// What the capture says of a frame, beside its bytes.
#[derive(Clone, Copy)]
struct Meta {
    ts: Timestamp,
    wire_len: u32,
}

/// The summary of a decoded packet.
#[inline(always)]
fn summary(
    meta: Meta,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    fragment: Fragment,
    t: Transport,
    hdr: HeaderFields,
) -> PacketSummary {
    PacketSummary {
        ts: meta.ts,
        src,
        dst,
        proto,
        sport: t.sport,
        dport: t.dport,
        tcp_flags: t.tcp_flags,
        tcp_num: t.tcp_num,
        wire_len: meta.wire_len,
        fragment,
        weight: 1,
        hdr,
    }
}

/// IPv4, read in place from its fixed 20 bytes (RFC 791): version and IHL checked as a header
/// parser would (a short header is truncated, a wrong version or an IHL under 5 invalid).
#[inline]
fn decode_ipv4(ip: &[u8], meta: Meta) -> Result<PacketSummary, DecodeError> {
    let Some(h) = ip.first_chunk::<20>() else {
        return Err(DecodeError::TruncatedIp);
    };
    if h[0] >> 4 != 4 || h[0] & 0x0f < 5 {
        return Err(DecodeError::BadIpHeader);
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    if ip.len() < header_len {
        return Err(DecodeError::TruncatedIp);
    }
    let total = u16::from_be_bytes([h[2], h[3]]);
    let total_len = usize::from(total);
    if total_len < header_len {
        return Err(DecodeError::BadIpHeader);
    }
    // Ethernet padding lies beyond total_len; a snaplen cut leaves less than total_len.
    let end = total_len.min(ip.len());
    let payload = ip.get(header_len..end).unwrap_or(&[]);
    let src = IpAddr::V4(std::net::Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    let dst = IpAddr::V4(std::net::Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    let proto = h[9];
    let flags = h[6];
    let df = if flags & 0x40 != 0 {
        HeaderFields::DF
    } else {
        0
    };
    let mut hdr = HeaderFields {
        ip_id: u16::from_be_bytes([h[4], h[5]]),
        ip_len: total,
        ttl: h[8],
        payload_len: len16(total_len - header_len),
        bits: HeaderFields::KNOWN | df,
        ..HeaderFields::UNKNOWN
    };
    let offset = u16::from_be_bytes([flags & 0x1f, h[7]]) << 3;
    if offset > 0 {
        let fragment = Fragment::Later { offset };
        return Ok(summary(
            meta,
            src,
            dst,
            proto,
            fragment,
            Transport::default(),
            hdr,
        ));
    }
    let fragment = if flags & 0x20 != 0 {
        Fragment::First
    } else {
        Fragment::None
    };
    let t = transport(proto, payload, total_len - header_len, fragment, &mut hdr)?;
    Ok(summary(meta, src, dst, proto, fragment, t, hdr))
}

/// IPv6 extension headers the decoder walks through.
mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const DEST_OPTS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}

fn decode_ipv6(ip: &[u8], meta: Meta) -> Result<PacketSummary, DecodeError> {
    use etherparse::err::ipv6::HeaderSliceError;
    let header = etherparse::Ipv6HeaderSlice::from_slice(ip).map_err(|e| match e {
        HeaderSliceError::Len(_) => DecodeError::TruncatedIp,
        HeaderSliceError::Content(_) => DecodeError::BadIpHeader,
    })?;
    // Both addresses as 16-byte loads: etherparse's accessors assemble them byte by byte, which
    // the compiler then stores byte by byte into the summary.
    let (Some(src), Some(dst)) = (bytes16(ip, 8), bytes16(ip, 24)) else {
        return Err(DecodeError::TruncatedIp);
    };
    let src = IpAddr::V6(std::net::Ipv6Addr::from(src));
    let dst = IpAddr::V6(std::net::Ipv6Addr::from(dst));
    let rest = ip.get(etherparse::Ipv6Header::LEN..).unwrap_or(&[]);
    // Payload length 0 is a jumbogram (or a segmentation-offloaded capture): use what was captured.
    let payload_len = usize::from(header.payload_length());
    let mut payload = if payload_len == 0 {
        rest
    } else {
        rest.get(..payload_len).unwrap_or(rest)
    };
    // What the length field says follows the current header (captured or not).
    let mut declared = if payload_len == 0 {
        rest.len()
    } else {
        payload_len
    };
    let mut hdr = HeaderFields {
        ip_len: len16(declared.saturating_add(etherparse::Ipv6Header::LEN)),
        ttl: header.hop_limit(),
        bits: HeaderFields::KNOWN,
        ..HeaderFields::UNKNOWN
    };
    let mut next = header.next_header().0;
    let mut fragment = Fragment::None;
    for _ in 0..MAX_LAYERS {
        let ext_len = match next {
            ext::HOP_BY_HOP
            | ext::ROUTING
            | ext::DEST_OPTS
            | ext::MOBILITY
            | ext::HIP
            | ext::SHIM6 => {
                let len = payload.get(1).ok_or(DecodeError::TruncatedIp)?;
                (usize::from(*len) + 1) * 8
            }
            ext::AUTH => {
                let len = payload.get(1).ok_or(DecodeError::TruncatedIp)?;
                (usize::from(*len) + 2) * 4
            }
            ext::FRAGMENT => {
                let field = be16(payload, 2).ok_or(DecodeError::TruncatedIp)?;
                // The low half of the 32-bit identification, when captured.
                hdr.ip_id = be16(payload, 6).unwrap_or(0);
                let offset = field & !7;
                if offset > 0 {
                    fragment = Fragment::Later { offset };
                } else if field & 1 != 0 {
                    fragment = Fragment::First;
                }
                8
            }
            _ => {
                hdr.payload_len = len16(declared);
                let t = transport(next, payload, declared, fragment, &mut hdr)?;
                return Ok(summary(meta, src, dst, next, fragment, t, hdr));
            }
        };
        next = *payload.first().ok_or(DecodeError::TruncatedIp)?;
        payload = payload.get(ext_len..).ok_or(DecodeError::TruncatedIp)?;
        declared = declared.saturating_sub(ext_len);
        if let Fragment::Later { .. } = fragment {
            hdr.payload_len = len16(declared);
            let t = Transport::default();
            return Ok(summary(meta, src, dst, next, fragment, t, hdr));
        }
    }
    Err(DecodeError::BadIpHeader)
}

/// Ports and flags from the start of the transport header, and the TCP/UDP signature fields into
/// `hdr`.
///
/// A whole packet must carry the header fields the engine reads (TCP through the flags byte, the
/// 8-byte UDP header); a first fragment may be cut anywhere, so it yields what it has. `l4` is what
/// was captured of the transport layer (never past the IP length), `l4_len` its length according to
/// the IP header.
#[inline(always)]
fn transport(
    proto: u8,
    l4: &[u8],
    l4_len: usize,
    fragment: Fragment,
    hdr: &mut HeaderFields,
) -> Result<Transport, DecodeError> {
    const SCTP: u8 = 132;
    const DCCP: u8 = 33;
    const UDP_LITE: u8 = 136;
    let lenient = fragment == Fragment::First;
    let ports = |l4: &[u8]| match bytes4(l4, 0) {
        Some([a, b, c, d]) => Transport {
            sport: u16::from_be_bytes([a, b]),
            dport: u16::from_be_bytes([c, d]),
            tcp_flags: 0,
            tcp_num: 0,
        },
        None => Transport::default(),
    };
    match proto {
        proto::TCP => match l4.get(13) {
            Some(flags) => {
                // A data offset below 5 is malformed: the payload is then taken to start at 20.
                let header_len = l4.get(12).map_or(20, |b| usize::from(b >> 4) * 4).max(20);
                if let Some(window) = be16(l4, 14) {
                    hdr.tcp_window = window;
                    hdr.tcp_opts_len = (header_len - 20) as u8;
                    payload_fields(hdr, l4, header_len, l4_len);
                    if hdr.prefix_len != 0 {
                        let payload = l4.get(header_len..).unwrap_or_default();
                        hdr.bits |= request_bits(hdr.prefix(), payload);
                    }
                }
                // SYN-ACK: the sequence number (bytes 4..8); other segments with ACK: the
                // acknowledgement (8..12); without ACK: none
                let at = match flags & (tcp_flags::SYN | tcp_flags::ACK) {
                    0x12 => Some(4),
                    0x10 => Some(8),
                    _ => None,
                };
                let tcp_num = at
                    .and_then(|at| bytes4(l4, at))
                    .map_or(0, u32::from_be_bytes);
                Ok(Transport {
                    tcp_flags: *flags,
                    tcp_num,
                    ..ports(l4)
                })
            }
            None if lenient => Ok(ports(l4)),
            None => Err(DecodeError::TruncatedTransport),
        },
        proto::UDP if l4.len() >= 8 => {
            payload_fields(hdr, l4, 8, l4_len);
            Ok(ports(l4))
        }
        proto::UDP if lenient => Ok(ports(l4)),
        proto::UDP => Err(DecodeError::TruncatedTransport),
        SCTP | DCCP | UDP_LITE => Ok(ports(l4)),
        _ => Ok(Transport::default()),
    }
}

/// The request bits of a TCP payload that starts with `prefix` (its first bytes, up to four):
/// [`HeaderFields::REQUEST`] when it looks like the start of a request head, and
/// [`HeaderFields::HEAD_END`] when it starts with an HTTP request line and holds the empty line
/// that ends its head. Only request heads are searched (a few in a flood of packets), and only
/// what was captured.
#[inline]
fn request_bits(prefix: &[u8], payload: &[u8]) -> u8 {
    let sniff = request_head::sniff(prefix);
    if !request_head::wants_parse(sniff) {
        return 0;
    }
    if sniff != request_head::Sniff::HttpMethod {
        return HeaderFields::REQUEST;
    }
    HeaderFields::REQUEST | head_end_in(payload)
}

#[cold]
#[inline(never)]
fn head_end_in(payload: &[u8]) -> u8 {
    if payload.windows(4).any(|w| w == b"\r\n\r\n") {
        HeaderFields::HEAD_END
    } else {
        0
    }
}

/// The payload length and prefix of a transport header of `header_len` bytes at the start of `l4`
/// (`l4_len` long according to the IP header).
#[inline]
fn payload_fields(hdr: &mut HeaderFields, l4: &[u8], header_len: usize, l4_len: usize) {
    let payload_len = l4_len.saturating_sub(header_len);
    hdr.payload_len = len16(payload_len);
    hdr.bits |= HeaderFields::L4;
    let captured = l4.get(header_len..).unwrap_or_default();
    // The IP length bounds `l4`, so `captured` never reaches past the payload (nor into padding).
    if let Some(four) = bytes4(captured, 0) {
        hdr.prefix = four;
        hdr.prefix_len = 4;
    } else {
        // fewer than 4 bytes: a fixed-size loop, no memcpy call
        for (dst, src) in hdr.prefix.iter_mut().zip(captured) {
            *dst = *src;
        }
        hdr.prefix_len = captured.len().min(4) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const TS: Timestamp = Timestamp(1_000_000_000);
    const SRC4: [u8; 4] = [192, 0, 2, 1];
    const DST4: [u8; 4] = [198, 51, 100, 7];
    const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn decode(link: LinkType, frame: &[u8]) -> Result<PacketSummary, DecodeError> {
        Decoder.decode(link, frame, TS, 0)
    }

    /// Asserts the decoder refuses `frame` of `link`, for the reason `why`.
    #[track_caller]
    fn assert_refused(link: LinkType, frame: &[u8], why: DecodeError) {
        assert_eq!(decode(link, frame), Err(why));
    }

    /// The bytes an etherparse builder `write`s into an empty buffer.
    fn built<E: std::fmt::Debug>(write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Vec<u8> {
        let mut v = Vec::new();
        write(&mut v).unwrap();
        v
    }

    /// An IPv4 header from `SRC4` to `DST4`, for a transport to follow.
    fn ipv4() -> PacketBuilderStep<IpHeaders> {
        PacketBuilder::ipv4(SRC4, DST4, 64)
    }

    /// An IPv6 header from `SRC6` to `DST6`, for a transport to follow.
    fn ipv6() -> PacketBuilderStep<IpHeaders> {
        PacketBuilder::ipv6(SRC6, DST6, 64)
    }

    /// IPv4 + TCP SYN 40000 → 80 with a 4-byte payload.
    fn ipv4_tcp_syn() -> Vec<u8> {
        built(|v| ipv4().tcp(40000, 80, 1, 1024).syn().write(v, b"abcd"))
    }

    fn ipv4_udp() -> Vec<u8> {
        built(|v| ipv4().udp(5353, 53).write(v, b"query"))
    }

    fn ipv6_udp() -> Vec<u8> {
        built(|v| ipv6().udp(1234, 443).write(v, b"quic"))
    }

    fn ipv4_icmp() -> Vec<u8> {
        built(|v| ipv4().icmpv4_echo_request(1, 2).write(v, b"ping"))
    }

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Ethernet with VLAN tags (outer first), each `(tpid, vid)`, then `ethertype` and `payload`.
    fn eth_tagged(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut inner = Vec::new();
        let mut types: Vec<u16> = tags.iter().map(|t| t.0).collect();
        types.push(ethertype);
        for (i, (_, vid)) in tags.iter().enumerate() {
            inner.extend_from_slice(&vid.to_be_bytes());
            inner.extend_from_slice(&types[i + 1].to_be_bytes());
        }
        inner.extend_from_slice(payload);
        eth(types[0], &inner)
    }

    fn assert_tcp_syn(s: &PacketSummary) {
        assert_eq!(s.src, IpAddr::V4(Ipv4Addr::from(SRC4)));
        assert_eq!(s.dst, IpAddr::V4(Ipv4Addr::from(DST4)));
        assert_eq!((s.proto, s.sport, s.dport), (proto::TCP, 40000, 80));
        assert_eq!(s.tcp_flags, tcp_flags::SYN);
        assert_eq!(s.fragment, Fragment::None);
        assert_eq!(s.ts, TS);
    }

    #[test]
    fn a_request_payload_is_found_and_hostile_headers_give_nothing() {
        // an IHL of 15 words on 24 captured bytes, a total length past the capture, no TCP
        for ip in [
            vec![
                0x4f, 0, 0, 24, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0,
            ],
            vec![
                0x45, 0, 0xff, 0xff, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
            ],
            vec![0x45],
        ] {
            let frame = eth(0x0800, &ip);
            assert_eq!(tcp_payload(LinkType::ETHERNET, &frame), None, "{ip:?}");
        }
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        tcp.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7,
        ];
        let total = (ip.len() + tcp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&tcp);
        let frame = eth(0x0800, &ip);
        assert_eq!(
            tcp_payload(LinkType::ETHERNET, &frame),
            Some(&b"GET / HTTP/1.1\r\n\r\n"[..])
        );
    }

    #[test]
    fn udp_datagrams_are_found_and_other_frames_are_not() {
        let udp = eth(0x0800, &ipv4_udp());
        let d = Decoder
            .udp_datagram(LinkType::ETHERNET, &udp)
            .unwrap()
            .unwrap();
        assert_eq!(d.src, IpAddr::from(SRC4));
        assert_eq!(d.dport, decode(LinkType::ETHERNET, &udp).unwrap().dport);
        assert_eq!(
            Decoder.udp_datagram(LinkType::ETHERNET, &eth(0x0800, &ipv4_tcp_syn())),
            Ok(None)
        );
        for cut in 0..udp.len() {
            let _ = Decoder.udp_datagram(LinkType::ETHERNET, &udp[..cut]);
        }
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let frame = eth(0x0800, &ipv4_tcp_syn());
        let s = decode(LinkType::ETHERNET, &frame).unwrap();
        assert_tcp_syn(&s);
        assert_eq!(s.wire_len, frame.len() as u32);
    }

    #[test]
    fn ethernet_padding_is_ignored_and_wire_len_passes_through() {
        let mut frame = eth(0x0800, &ipv4_udp());
        frame.extend_from_slice(&[0; 20]);
        let s = Decoder
            .decode(LinkType::ETHERNET, &frame, TS, 1500)
            .unwrap();
        assert_eq!(
            (s.proto, s.sport, s.dport, s.wire_len),
            (proto::UDP, 5353, 53, 1500)
        );
        // wire_len below the captured length means "unknown"
        let s = Decoder.decode(LinkType::ETHERNET, &frame, TS, 3).unwrap();
        assert_eq!(s.wire_len, frame.len() as u32);
    }

    #[test]
    fn ethernet_ipv6_udp_and_icmp() {
        let s = decode(LinkType::ETHERNET, &eth(0x86dd, &ipv6_udp())).unwrap();
        assert_eq!(s.src, IpAddr::V6(Ipv6Addr::from(SRC6)));
        assert_eq!(s.dst, IpAddr::V6(Ipv6Addr::from(DST6)));
        assert_eq!(
            (s.proto, s.sport, s.dport, s.tcp_flags),
            (proto::UDP, 1234, 443, 0)
        );
        let s = decode(LinkType::ETHERNET, &eth(0x0800, &ipv4_icmp())).unwrap();
        assert_eq!((s.proto, s.sport, s.dport), (proto::ICMP, 0, 0));
    }

    #[test]
    fn vlan_stacks() {
        let ip = ipv4_tcp_syn();
        for tags in [
            vec![(0x8100, 10)],
            vec![(0x88a8, 100), (0x8100, 10)],
            vec![(0x9100, 1), (0x88a8, 100), (0x8100, 10)],
            vec![(0x8100, 0), (0x8100, 0), (0x8100, 0), (0x8100, 0)],
        ] {
            let s = decode(LinkType::ETHERNET, &eth_tagged(&tags, 0x0800, &ip)).unwrap();
            assert_tcp_syn(&s);
        }
        let arp = eth_tagged(&[(0x88a8, 2001), (0x8100, 7)], 0x0806, &[0; 28]);
        assert_refused(LinkType::ETHERNET, &arp, DecodeError::NonIp);
        let cut = eth_tagged(&[(0x8100, 10)], 0x0800, &[]);
        assert_refused(LinkType::ETHERNET, &cut[..16], DecodeError::TruncatedLink);
    }

    #[test]
    fn mpls_label_stack() {
        let ip4 = ipv4_tcp_syn();
        let ip6 = ipv6_udp();
        // two labels, bottom-of-stack on the second
        let mut labels = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
        labels.extend_from_slice(&ip4);
        assert_tcp_syn(&decode(LinkType::ETHERNET, &eth(0x8847, &labels)).unwrap());
        let mut one = vec![0x00, 0x01, 0x01, 0x40];
        one.extend_from_slice(&ip6);
        let s = decode(LinkType::ETHERNET, &eth(0x8848, &one)).unwrap();
        assert_eq!((s.proto, s.dport), (proto::UDP, 443));
        // VLAN then MPLS
        let s = decode(
            LinkType::ETHERNET,
            &eth_tagged(&[(0x8100, 5)], 0x8847, &labels),
        )
        .unwrap();
        assert_tcp_syn(&s);
        // Ethernet pseudowire (control word 0) is not IP
        let pw = [0x00, 0x01, 0x01, 0x40, 0, 0, 0, 0];
        assert_refused(LinkType::ETHERNET, &eth(0x8847, &pw), DecodeError::NonIp);
        // no bottom-of-stack before the end
        let cut = [0x00, 0x01, 0x00, 0x40];
        assert_refused(
            LinkType::ETHERNET,
            &eth(0x8847, &cut),
            DecodeError::TruncatedLink,
        );
    }

    #[test]
    fn pppoe_session() {
        let mut p = vec![0x11, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x21];
        p.extend_from_slice(&ipv4_tcp_syn());
        assert_tcp_syn(&decode(LinkType::ETHERNET, &eth(0x8864, &p)).unwrap());
    }

    #[test]
    fn linux_sll_and_sll2() {
        let ip = ipv4_tcp_syn();
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        assert_tcp_syn(&decode(LinkType::LINUX_SLL, &sll).unwrap());
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        assert_tcp_syn(&decode(LinkType::LINUX_SLL2, &sll2).unwrap());
        let mut arp = sll2.clone();
        arp[0..2].copy_from_slice(&[0x08, 0x06]);
        assert_refused(LinkType::LINUX_SLL2, &arp, DecodeError::NonIp);
        assert_refused(LinkType::LINUX_SLL, &sll[..15], DecodeError::TruncatedLink);
        assert_refused(
            LinkType::LINUX_SLL2,
            &sll2[..19],
            DecodeError::TruncatedLink,
        );
    }

    #[test]
    fn raw_ip_link_types() {
        let ip4 = ipv4_tcp_syn();
        let ip6 = ipv6_udp();
        for lt in [LinkType::RAW, LinkType(12), LinkType(14)] {
            assert_tcp_syn(&decode(lt, &ip4).unwrap());
            assert_eq!(decode(lt, &ip6).unwrap().proto, proto::UDP);
            assert_refused(lt, &[0x50; 40], DecodeError::BadIpHeader);
        }
        assert_tcp_syn(&decode(LinkType::IPV4, &ip4).unwrap());
        assert_refused(LinkType::IPV4, &ip6, DecodeError::BadIpHeader);
        assert_eq!(decode(LinkType::IPV6, &ip6).unwrap().dport, 443);
        assert_refused(LinkType::IPV6, &ip4, DecodeError::BadIpHeader);
        assert_refused(LinkType::IPV6, &ip6[..39], DecodeError::TruncatedIp);
        assert_refused(LinkType::IPV6, &[0x45; 40], DecodeError::BadIpHeader);
    }

    #[test]
    fn bsd_null_and_loop() {
        let ip4 = ipv4_tcp_syn();
        let ip6 = ipv6_udp();
        let with = |af: [u8; 4], ip: &[u8]| {
            let mut v = af.to_vec();
            v.extend_from_slice(ip);
            v
        };
        assert_tcp_syn(&decode(LinkType::NULL, &with(2u32.to_le_bytes(), &ip4)).unwrap());
        assert_tcp_syn(&decode(LinkType::NULL, &with(2u32.to_be_bytes(), &ip4)).unwrap());
        for af in [24u32, 28, 30] {
            let s = decode(LinkType::NULL, &with(af.to_le_bytes(), &ip6)).unwrap();
            assert_eq!(s.dport, 443);
            let s = decode(LinkType::LOOP, &with(af.to_be_bytes(), &ip6)).unwrap();
            assert_eq!(s.dport, 443);
        }
        assert_tcp_syn(&decode(LinkType::LOOP, &with(2u32.to_be_bytes(), &ip4)).unwrap());
        // LOOP is network order only
        assert_refused(
            LinkType::LOOP,
            &with(2u32.to_le_bytes(), &ip4),
            DecodeError::NonIp,
        );
        assert_refused(
            LinkType::NULL,
            &with(7u32.to_le_bytes(), &ip4),
            DecodeError::NonIp,
        );
        assert_refused(LinkType::NULL, &[2, 0, 0], DecodeError::TruncatedLink);
    }

    #[test]
    fn unsupported_link_type_and_empty() {
        assert_refused(
            LinkType(239),
            &[1, 2, 3],
            DecodeError::UnsupportedLinkType(239),
        );
        assert_refused(LinkType::ETHERNET, &[], DecodeError::Empty);
        assert_refused(LinkType(239), &[], DecodeError::Empty);
    }

    /// Sets the IPv4 flags/fragment-offset field and fixes nothing else (decode ignores checksums).
    fn fragmented_v4(mut ip: Vec<u8>, more: bool, offset_units: u16) -> Vec<u8> {
        let field = (u16::from(more) << 13) | offset_units;
        ip[6..8].copy_from_slice(&field.to_be_bytes());
        ip
    }

    #[test]
    fn ipv4_fragments() {
        let first = fragmented_v4(ipv4_udp(), true, 0);
        let s = decode(LinkType::RAW, &first).unwrap();
        assert_eq!((s.fragment, s.sport, s.dport), (Fragment::First, 5353, 53));
        let later = fragmented_v4(ipv4_udp(), false, 185);
        let s = decode(LinkType::RAW, &later).unwrap();
        assert_eq!(s.fragment, Fragment::Later { offset: 1480 });
        assert_eq!(
            (s.proto, s.sport, s.dport, s.tcp_flags),
            (proto::UDP, 0, 0, 0)
        );
        // a later fragment of TCP with too few bytes for a TCP header is still fine
        let mut tiny = fragmented_v4(ipv4_tcp_syn(), true, 3);
        tiny.truncate(24);
        tiny[2..4].copy_from_slice(&24u16.to_be_bytes());
        let s = decode(LinkType::RAW, &tiny).unwrap();
        assert_eq!(
            (s.proto, s.fragment),
            (proto::TCP, Fragment::Later { offset: 24 })
        );
        // a tiny first fragment gives the ports it has
        let mut tiny_first = fragmented_v4(ipv4_tcp_syn(), true, 0);
        tiny_first.truncate(28);
        tiny_first[2..4].copy_from_slice(&28u16.to_be_bytes());
        let s = decode(LinkType::RAW, &tiny_first).unwrap();
        assert_eq!(
            (s.fragment, s.sport, s.dport, s.tcp_flags),
            (Fragment::First, 40000, 80, 0)
        );
    }

    #[test]
    fn ipv4_header_checks() {
        let mut ip = ipv4_tcp_syn();
        ip[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_refused(LinkType::RAW, &ip, DecodeError::BadIpHeader);
        let mut ip = ipv4_tcp_syn();
        ip[0] = 0x44; // IHL 4
        assert_refused(LinkType::RAW, &ip, DecodeError::BadIpHeader);
        let mut ip = ipv4_tcp_syn();
        ip[0] = 0x4f; // IHL 15: 60 bytes, longer than the packet's 44
        assert_refused(LinkType::IPV4, &ip, DecodeError::TruncatedIp);
        // total length longer than captured (snaplen) is fine
        let mut ip = ipv4_tcp_syn();
        ip[2..4].copy_from_slice(&1500u16.to_be_bytes());
        assert_tcp_syn(&decode(LinkType::RAW, &ip).unwrap());
        // snaplen cut right after the IP header
        let ip = ipv4_tcp_syn();
        assert_refused(LinkType::RAW, &ip[..20], DecodeError::TruncatedTransport);
        assert_refused(LinkType::RAW, &ip[..33], DecodeError::TruncatedTransport);
        assert_tcp_syn(&decode(LinkType::RAW, &ip[..34]).unwrap());
        let udp = ipv4_udp();
        assert_refused(LinkType::RAW, &udp[..27], DecodeError::TruncatedTransport);
        assert_eq!(decode(LinkType::RAW, &udp[..28]).unwrap().dport, 53);
    }

    /// IPv6 header with `next` and the given extension chain bytes, then `l4`.
    fn ipv6_with(next: u8, chain: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&((chain.len() + l4.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[next, 64]);
        v.extend_from_slice(&SRC6);
        v.extend_from_slice(&DST6);
        v.extend_from_slice(chain);
        v.extend_from_slice(l4);
        v
    }

    fn tcp_l4() -> Vec<u8> {
        let mut t = vec![0; 20];
        t[0..2].copy_from_slice(&443u16.to_be_bytes());
        t[2..4].copy_from_slice(&50000u16.to_be_bytes());
        t[12] = 0x50;
        t[13] = tcp_flags::SYN | tcp_flags::ACK;
        t
    }

    #[test]
    fn ipv6_extension_headers() {
        // hop-by-hop (8) → routing (24) → dest opts (16) → AH (12 + 4) → TCP
        let mut chain = vec![43, 0, 1, 4, 0, 0, 0, 0];
        chain.extend_from_slice(&[60, 2, 0, 0, 0, 0, 0, 0]);
        chain.extend_from_slice(&[0; 16]);
        chain.extend_from_slice(&[51, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        chain.extend_from_slice(&[6, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let ip = ipv6_with(0, &chain, &tcp_l4());
        let s = decode(LinkType::IPV6, &ip).unwrap();
        assert_eq!((s.proto, s.sport, s.dport), (proto::TCP, 443, 50000));
        assert_eq!(s.tcp_flags, tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(s.fragment, Fragment::None);
        // cut inside the routing header
        assert_refused(LinkType::IPV6, &ip[..50], DecodeError::TruncatedIp);
        // no next header
        let s = decode(LinkType::IPV6, &ipv6_with(59, &[], &[])).unwrap();
        assert_eq!((s.proto, s.sport), (59, 0));
        // an endless chain of hop-by-hop headers is bounded
        let chain: Vec<u8> = std::iter::repeat_n([0u8, 0, 0, 0, 0, 0, 0, 0], 40)
            .flatten()
            .collect();
        assert_refused(
            LinkType::IPV6,
            &ipv6_with(0, &chain, &[]),
            DecodeError::BadIpHeader,
        );
    }

    #[test]
    fn ipv6_fragments() {
        let first = ipv6_with(44, &[6, 0, 0x00, 0x01, 0, 0, 0, 9], &tcp_l4());
        let s = decode(LinkType::IPV6, &first).unwrap();
        assert_eq!(
            (s.fragment, s.proto, s.sport),
            (Fragment::First, proto::TCP, 443)
        );
        let later = ipv6_with(44, &[17, 0, 0x05, 0xa8, 0, 0, 0, 9], &[0xee; 100]);
        let s = decode(LinkType::IPV6, &later).unwrap();
        assert_eq!(s.fragment, Fragment::Later { offset: 1448 });
        assert_eq!((s.proto, s.sport, s.dport), (proto::UDP, 0, 0));
        // atomic fragment: offset 0, M clear
        let atomic = ipv6_with(44, &[17, 0, 0, 0, 0, 0, 0, 9], &[0, 1, 0, 2, 0, 8, 0, 0]);
        let s = decode(LinkType::IPV6, &atomic).unwrap();
        assert_eq!((s.fragment, s.sport, s.dport), (Fragment::None, 1, 2));
        // destination options after the fragment header of a later fragment are not walked
        let later_dst = ipv6_with(
            0,
            &[44, 0, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0x11, 0, 0, 0, 1],
            &[],
        );
        let s = decode(LinkType::IPV6, &later_dst).unwrap();
        assert_eq!((s.fragment, s.proto), (Fragment::Later { offset: 16 }, 60));
    }

    #[test]
    fn every_truncation_of_valid_frames_is_an_error_not_a_panic() {
        let mut frames = vec![
            (LinkType::ETHERNET, eth(0x0800, &ipv4_tcp_syn())),
            (LinkType::ETHERNET, eth(0x86dd, &ipv6_udp())),
            (
                LinkType::ETHERNET,
                eth_tagged(&[(0x88a8, 1), (0x8100, 2)], 0x8847, &{
                    let mut l = vec![0, 1, 1, 64];
                    l.extend_from_slice(&ipv4_udp());
                    l
                }),
            ),
            (
                LinkType::IPV6,
                ipv6_with(
                    0,
                    &[44, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 1, 0, 0, 0, 1],
                    &tcp_l4(),
                ),
            ),
        ];
        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ipv6_udp());
        frames.push((LinkType::LINUX_SLL2, sll2));
        let mut null = 30u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ipv6_udp());
        frames.push((LinkType::NULL, null));
        for (link, frame) in &frames {
            assert!(decode(*link, frame).is_ok(), "{link:?} full frame decodes");
            for cut in 0..frame.len() {
                match decode(*link, &frame[..cut]) {
                    Ok(_) => {}
                    Err(e) => assert!(e.reason().is_malformed(), "{link:?} cut {cut}: {e:?}"),
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = crate::fixtures::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.next();
        let links = [0u32, 1, 12, 14, 101, 108, 113, 228, 229, 276, 239];
        for i in 0..20_000 {
            let len = (next() % 120) as usize;
            let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // steer some frames into the deeper layers
            if i % 2 == 0 && frame.len() > 14 {
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
                frame[14] = 0x45;
            }
            if i % 3 == 0 && frame.len() > 14 {
                frame[12..14].copy_from_slice(&[0x86, 0xdd]);
                frame[14] = 0x60;
            }
            let link = LinkType(links[i % links.len()]);
            if let Ok(p) = Decoder.decode(link, &frame, TS, next() as u32) {
                // the header fields of a decoded frame are always known and self-consistent
                let h = p.hdr;
                assert!(h.known() && h.prefix_len <= 4, "{h:?}");
                assert!(h.prefix[usize::from(h.prefix_len)..]
                    .iter()
                    .all(|b| *b == 0));
                assert!(h.payload_len <= h.ip_len && h.tcp_opts_len <= 40, "{h:?}");
                assert!(h.prefix_len == 0 || h.l4(), "{h:?}");
            }
        }
    }

    /// An IPv4 header (IHL 5, checksum left 0: the decoder does not check it) before `l4`.
    fn ipv4_raw(id: u16, df: bool, ttl: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
        crate::fixtures::ipv4(SRC4, DST4, id, df, ttl, proto, l4)
    }

    /// A TCP header 40000 → 80 with `flags`, `window` and `opts` (a multiple of 4), then `payload`.
    fn tcp_raw(flags: u8, window: u16, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut t = vec![0; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[12] = (((20 + opts.len()) / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&window.to_be_bytes());
        t.extend_from_slice(opts);
        t.extend_from_slice(payload);
        t
    }

    fn udp_raw(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    /// Linux's SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7 (20 bytes).
    const SYN_OPTS: [u8; 20] = [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];

    #[test]
    fn header_fields_of_an_ipv4_tcp_syn_with_options() {
        let ip = ipv4_raw(
            0x1234,
            true,
            57,
            proto::TCP,
            &tcp_raw(tcp_flags::SYN, 64240, &SYN_OPTS, &[]),
        );
        let s = decode(LinkType::ETHERNET, &eth(0x0800, &ip)).unwrap();
        assert_eq!(s.tcp_flags, tcp_flags::SYN);
        let h = s.hdr;
        assert!(h.known() && h.df() && h.l4());
        assert_eq!(
            h.bits,
            HeaderFields::KNOWN | HeaderFields::DF | HeaderFields::L4
        );
        assert_eq!((h.ttl, h.ip_id, h.ip_len), (57, 0x1234, 60));
        assert_eq!((h.tcp_window, h.tcp_opts_len), (64240, 20));
        assert_eq!((h.payload_len, h.prefix_len, h.prefix), (0, 0, [0; 4]));
        assert!(h.prefix().is_empty());
        // no options, no DF, a payload
        let ip = ipv4_raw(
            0,
            false,
            64,
            proto::TCP,
            &tcp_raw(0x18, 512, &[], b"GET /x"),
        );
        let h = decode(LinkType::RAW, &ip).unwrap().hdr;
        // a request line's start (REQUEST) whose head does not end in what was captured
        assert_eq!(
            h.bits,
            HeaderFields::KNOWN | HeaderFields::L4 | HeaderFields::REQUEST
        );
        assert_eq!((h.ttl, h.ip_id, h.ip_len), (64, 0, 46));
        assert_eq!((h.tcp_window, h.tcp_opts_len), (512, 0));
        assert_eq!((h.payload_len, h.prefix()), (6, &b"GET "[..]));
    }

    #[test]
    fn header_fields_of_a_udp_packet_with_payload() {
        let ip = ipv4_raw(7, false, 128, proto::UDP, &udp_raw(53, 4444, &[0x58; 512]));
        let s = decode(LinkType::ETHERNET, &eth(0x0800, &ip)).unwrap();
        assert_eq!((s.sport, s.dport), (53, 4444));
        let h = s.hdr;
        assert_eq!(h.bits, HeaderFields::KNOWN | HeaderFields::L4);
        assert_eq!((h.ttl, h.ip_id, h.ip_len), (128, 7, 540));
        assert_eq!((h.tcp_window, h.tcp_opts_len), (0, 0));
        assert_eq!((h.payload_len, h.prefix_len, h.prefix), (512, 4, [0x58; 4]));
        // a short payload in an Ethernet frame padded to 60 bytes: the padding is not payload
        let ip = ipv4_raw(7, true, 64, proto::UDP, &udp_raw(1, 2, b"q"));
        let mut frame = eth(0x0800, &ip);
        frame.resize(60, 0xee);
        let h = decode(LinkType::ETHERNET, &frame).unwrap().hdr;
        assert_eq!((h.ip_len, h.payload_len, h.prefix()), (29, 1, &b"q"[..]));
        assert_eq!(h.prefix, [b'q', 0, 0, 0]);
        // ICMP: IP fields only, the payload counted from the end of the IP header
        let h = decode(LinkType::RAW, &ipv4_icmp()).unwrap().hdr;
        assert!(h.known() && !h.l4());
        assert_eq!(
            (h.ttl, h.ip_len, h.payload_len, h.prefix_len),
            (64, 32, 12, 0)
        );
    }

    #[test]
    fn header_fields_of_ipv6_tcp() {
        let l4 = tcp_raw(
            tcp_flags::SYN | tcp_flags::ACK,
            1024,
            &SYN_OPTS[..12],
            b"HTTP/1.1",
        );
        let ip = ipv6_with(proto::TCP, &[], &l4);
        let mut ip = ip;
        ip[7] = 55;
        let s = decode(LinkType::ETHERNET, &eth(0x86dd, &ip)).unwrap();
        assert_eq!((s.sport, s.tcp_flags), (40000, 0x12));
        let h = s.hdr;
        assert_eq!(h.bits, HeaderFields::KNOWN | HeaderFields::L4);
        assert_eq!((h.ttl, h.ip_id, h.ip_len), (55, 0, 80));
        assert_eq!((h.tcp_window, h.tcp_opts_len), (1024, 12));
        assert_eq!((h.payload_len, h.prefix()), (8, &b"HTTP"[..]));
        // extension headers count in ip_len, not in payload_len; a fragment header gives an id
        let chain = [44, 0, 1, 4, 0, 0, 0, 0, 6, 0, 0, 0, 0xab, 0xcd, 0x12, 0x34];
        let ip = ipv6_with(60, &chain, &l4);
        let h = decode(LinkType::IPV6, &ip).unwrap().hdr;
        assert_eq!((h.ip_id, h.ip_len, h.payload_len), (0x1234, 96, 8));
        assert_eq!(
            (h.tcp_window, h.tcp_opts_len, h.prefix()),
            (1024, 12, &b"HTTP"[..])
        );
        // a later IPv6 fragment: the bytes after the fragment header, no transport fields
        let later = ipv6_with(44, &[17, 0, 0x05, 0xa8, 0, 0, 0, 9], &[0xee; 100]);
        let h = decode(LinkType::IPV6, &later).unwrap().hdr;
        assert_eq!(h.bits, HeaderFields::KNOWN);
        assert_eq!(
            (h.ip_id, h.ip_len, h.payload_len, h.prefix_len),
            (9, 148, 100, 0)
        );
    }

    #[test]
    fn header_fields_of_snaplen_cut_packets() {
        // UDP with an 8-byte payload of which 2 bytes were captured
        let ip = ipv4_raw(1, false, 64, proto::UDP, &udp_raw(123, 123, b"XYZWabcd"));
        let s = Decoder.decode(LinkType::RAW, &ip[..30], TS, 36).unwrap();
        let h = s.hdr;
        assert_eq!(h.bits, HeaderFields::KNOWN | HeaderFields::L4);
        assert_eq!((h.ip_len, h.payload_len), (36, 8));
        assert_eq!(
            (h.prefix_len, h.prefix(), h.prefix),
            (2, &b"XY"[..], [b'X', b'Y', 0, 0])
        );
        // the UDP header only
        let h = decode(LinkType::RAW, &ip[..28]).unwrap().hdr;
        assert_eq!((h.payload_len, h.prefix_len, h.l4()), (8, 0, true));
        // TCP cut inside its options: window and options known, payload not captured
        let l4 = tcp_raw(tcp_flags::SYN, 29200, &SYN_OPTS, b"data");
        let ip = ipv4_raw(2, true, 64, proto::TCP, &l4);
        let h = decode(LinkType::RAW, &ip[..50]).unwrap().hdr;
        assert_eq!((h.ip_len, h.payload_len, h.prefix_len), (64, 4, 0));
        assert_eq!((h.tcp_window, h.tcp_opts_len, h.l4()), (29200, 20, true));
        // TCP cut before the window: flags known, window not
        let h = decode(LinkType::RAW, &ip[..35]).unwrap().hdr;
        assert_eq!(
            (h.tcp_window, h.tcp_opts_len, h.l4(), h.known()),
            (0, 0, false, true)
        );
        assert_eq!(h.payload_len, 44);
        // payload partly captured after the options
        let h = decode(LinkType::RAW, &ip[..61]).unwrap().hdr;
        assert_eq!((h.payload_len, h.prefix()), (4, &b"d"[..]));
    }

    /// Checks the straight path against the general one on `frame`, and decoding into a summary
    /// that held another packet against decoding afresh; true when it took the straight path.
    fn same_both_ways(frame: &[u8], wire_len: u32) -> bool {
        let ts = Timestamp(1_700_000_000_123_456_789);
        let mut reused = PacketSummary {
            ts: Timestamp(7),
            src: Ipv6Addr::from(SRC6).into(),
            dst: Ipv6Addr::from(DST6).into(),
            proto: 99,
            sport: 1,
            dport: 2,
            tcp_flags: 0xff,
            tcp_num: 3,
            wire_len: 4,
            fragment: Fragment::Later { offset: 8 },
            weight: 5,
            hdr: HeaderFields {
                bits: 0xff,
                prefix: [9; 4],
                prefix_len: 4,
                ..HeaderFields::default()
            },
        };
        let fresh = Decoder.decode(LinkType::ETHERNET, frame, ts, wire_len);
        match Decoder.decode_into(LinkType::ETHERNET, frame, ts, wire_len, &mut reused) {
            Ok(()) => assert_eq!(fresh, Ok(reused), "frame {frame:02x?}"),
            Err(e) => assert_eq!(fresh, Err(e), "frame {frame:02x?}"),
        }
        match ethernet_ipv4_tcp_udp(frame, ts, wire_len) {
            Some(p) => {
                let general = Decoder.decode_any(LinkType::ETHERNET, frame, ts, wire_len);
                assert_eq!(general, Ok(p), "frame {frame:02x?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_straight_path_decodes_as_the_general_one() {
        let mut rng = crate::fixtures::XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next();
        let (mut taken, mut total) = (0u32, 0u32);
        for round in 0..20_000u32 {
            let payload: Vec<u8> = (0..next() % 7).map(|_| next() as u8).collect();
            let b = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4(SRC4, DST4, 64);
            let mut frame = Vec::new();
            if round % 2 == 0 {
                b.tcp(40000, 80, 7, 1024)
                    .syn()
                    .write(&mut frame, &payload)
                    .unwrap();
            } else {
                b.udp(53, 4000).write(&mut frame, &payload).unwrap();
            }
            // Ethernet padding past the IP length, as short frames carry
            frame.resize(frame.len().max(60), 0);
            // damage: bytes of the Ethernet, IP and transport headers, and the length
            for _ in 0..next() % 4 {
                let at = 12 + (next() as usize) % 50;
                if let Some(b) = frame.get_mut(at) {
                    *b = next() as u8;
                }
            }
            if next() % 4 == 0 {
                frame.truncate((next() as usize) % (frame.len() + 1));
            }
            let wire_len = (next() % 3) as u32 * 40;
            total += 1;
            taken += u32::from(same_both_ways(&frame, wire_len));
        }
        // most frames are whole and take the straight path; the damaged ones test the boundary
        assert!(taken > total / 4 && taken < total, "{taken} of {total}");
        // every frame of the shared captures
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures");
        if !root.is_dir() {
            eprintln!("skipping the shared captures: {} is absent", root.display());
            return;
        }
        let mut seen = 0;
        for dir in ["attack", "benign"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let mut src = crate::capture::file::FileSource::open(&path).unwrap();
                use crate::capture::FrameSource;
                while let Ok(Some(f)) = src.next_frame() {
                    if f.link == LinkType::ETHERNET {
                        seen += u32::from(same_both_ways(f.data, f.wire_len));
                    }
                }
            }
        }
        assert!(
            seen > 10_000,
            "{seen} frames of the shared captures took the straight path"
        );
    }

    #[test]
    fn header_fields_are_small_and_unknown_by_default() {
        assert_eq!(std::mem::size_of::<HeaderFields>(), 16);
        assert!(std::mem::size_of::<PacketSummary>() <= 80);
        let d = PacketSummary::default();
        assert_eq!((d.weight, d.hdr), (1, HeaderFields::UNKNOWN));
        assert!(!d.hdr.known() && !d.hdr.df() && !d.hdr.l4());
    }

    #[test]
    fn stats_count_by_reason() {
        let mut st = DecodeStats::default();
        st.record(&DecodeError::UnsupportedLinkType(239));
        st.record(&DecodeError::UnsupportedLinkType(239));
        st.record(&DecodeError::NonIp);
        st.record(&DecodeError::TruncatedIp);
        assert_eq!(st.total(), 4);
        assert_eq!(st.malformed(), 1);
        assert_eq!(st.count(SkipReason::UnsupportedLinkType), 2);
        assert_eq!(st.unsupported_link_types.get(&239), Some(&2));
        let mut sum = st.clone();
        sum.merge(&st);
        assert_eq!(sum.total(), 8);
        assert_eq!(sum.unsupported_link_types.get(&239), Some(&4));
        for (i, r) in SkipReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.name().is_empty());
        }
    }
}
