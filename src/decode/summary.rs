//! The packet summary: what the detector knows of one packet (addresses, ports, flags, lengths,
//! the header fields signatures are made of), `Copy` and without pointers, so it rides through the
//! pipeline's channels and the bus as it is; [`super::Decoder`] makes it from a frame.

use std::net::IpAddr;

use crate::time::Timestamp;

/// IP fragment position of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// Not a fragment.
    #[default]
    None,
    /// First fragment (offset 0, more-fragments set): carries the transport header.
    First,
    /// A later fragment: no transport header; `offset` in bytes (at most 65 528: 13 bits of 8-byte units).
    Later { offset: u16 },
}

/// What the detector needs to know about one packet. `Copy`, no heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSummary {
    /// Capture timestamp.
    pub ts: Timestamp,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, …) of the innermost header reached.
    pub proto: u8,
    /// Transport ports, 0 when absent (ICMP, later fragments).
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80), 0 otherwise.
    pub tcp_flags: u8,
    /// The TCP number a handshake is checked by: the sequence number of a SYN-ACK, the
    /// acknowledgement number of any other segment with ACK set; 0 without ACK (a SYN's own number
    /// is never needed), when not TCP, not captured, or not from a packet header. A SYN-ACK's sequence number plus one is what the client's ACK must acknowledge, which
    /// a spoofed source never sees ([`crate::requests`] creates connection state only then).
    pub tcp_num: u32,
    /// Original length on the wire (not the captured length), so snaplen-cut captures count full bytes.
    pub wire_len: u32,
    pub fragment: Fragment,
    /// Packets this summary stands for: 1 for a captured frame; the sampling rate for a sampled
    /// packet header (sFlow); a share of a flow record's packets (NetFlow/IPFIX). Bytes are
    /// `wire_len × weight`.
    pub weight: u32,
    /// The header fields attack signatures are made of (see [`HeaderFields`]); all zero and not
    /// [`HeaderFields::known`] for summaries built from flow records.
    pub hdr: HeaderFields,
}

impl Default for PacketSummary {
    /// An empty summary standing for one packet: unspecified IPv4 addresses, every field zero, header
    /// fields unknown. For building summaries with `..PacketSummary::default()`.
    fn default() -> Self {
        let any = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        PacketSummary {
            ts: Timestamp(0),
            src: any,
            dst: any,
            proto: 0,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            tcp_num: 0,
            wire_len: 0,
            fragment: Fragment::None,
            weight: 1,
            hdr: HeaderFields::UNKNOWN,
        }
    }
}

/// The IP and transport header fields of one packet that flood tools tend to hold constant, the raw
/// material of attack signatures (`crate::signature`).
///
/// Sixteen bytes, `Copy`, no pointers: it rides in every [`PacketSummary`] through the pipeline's
/// channels. Lengths come from the packets' length fields, never from the captured length, so a
/// snaplen-cut capture reports what was on the wire; only the payload prefix depends on what was
/// captured ([`HeaderFields::prefix_len`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct HeaderFields {
    /// IPv4 identification; for IPv6 the low 16 bits of the fragment header's identification, 0
    /// without a fragment header.
    pub ip_id: u16,
    /// IPv4 total length; IPv6 payload length + 40 (the captured length for a jumbogram whose payload
    /// length is 0), saturating at 65535.
    pub ip_len: u16,
    /// TCP window (not scaled); 0 when not TCP or the header was not captured that far.
    pub tcp_window: u16,
    /// Bytes after the transport header (TCP with its options, UDP's 8 bytes) according to the IP
    /// length fields: of this fragment for a first fragment. For other protocols and later
    /// fragments: the bytes after the IP header(s).
    pub payload_len: u16,
    /// The first [`HeaderFields::prefix_len`] bytes of the TCP or UDP payload, zero-filled after.
    pub prefix: [u8; 4],
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// TCP options length in bytes (data offset × 4 − 20).
    pub tcp_opts_len: u8,
    /// How many bytes of [`HeaderFields::prefix`] were captured: min(4, payload length, captured).
    pub prefix_len: u8,
    /// [`HeaderFields::KNOWN`], [`HeaderFields::DF`], [`HeaderFields::L4`] bits.
    pub bits: u8,
}

impl HeaderFields {
    /// The fields of a summary that did not come from a packet header (flow records).
    pub const UNKNOWN: HeaderFields = HeaderFields {
        ip_id: 0,
        ip_len: 0,
        tcp_window: 0,
        payload_len: 0,
        prefix: [0; 4],
        ttl: 0,
        tcp_opts_len: 0,
        prefix_len: 0,
        bits: 0,
    };
    /// The fields were read from a packet header.
    pub const KNOWN: u8 = 0x01;
    /// IPv4 don't-fragment flag.
    pub const DF: u8 = 0x02;
    /// The transport header was captured whole (TCP through the window and a valid data offset, the
    /// 8-byte UDP header), so `tcp_window`, `tcp_opts_len`, `payload_len` and the prefix are
    /// transport-relative.
    pub const L4: u8 = 0x04;
    /// A TCP payload that starts with an HTTP request line holds the end of its head (an empty
    /// line) in what was captured: the request is whole ([`crate::requests`]; a head left open is
    /// how slowloris looks).
    pub const HEAD_END: u8 = 0x08;
    /// A TCP payload whose first bytes look like the start of a request head (an HTTP/1 method,
    /// the HTTP/2 preface, a TLS handshake record: [`super::request_head::wants_parse`]), so
    /// [`Decoder::request_head`](super::Decoder::request_head) reads it; every other packet costs that one bit test.
    pub const REQUEST: u8 = 0x10;

    /// Whether the fields were read from a packet header.
    #[inline]
    pub fn known(&self) -> bool {
        self.bits & Self::KNOWN != 0
    }

    /// IPv4 don't-fragment flag.
    #[inline]
    pub fn df(&self) -> bool {
        self.bits & Self::DF != 0
    }

    /// Whether the TCP/UDP header was captured whole (see [`HeaderFields::L4`]).
    #[inline]
    pub fn l4(&self) -> bool {
        self.bits & Self::L4 != 0
    }

    /// The captured part of the payload prefix.
    #[inline]
    pub fn prefix(&self) -> &[u8] {
        let n = usize::from(self.prefix_len).min(self.prefix.len());
        self.prefix.get(..n).unwrap_or_default()
    }
}

pub mod proto {
    //! IP protocol numbers used by the engine.
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

pub mod tcp_flags {
    //! TCP flag bits in [`super::PacketSummary::tcp_flags`].
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}
