//! What the decoder skips and why: a frame it cannot use is a [`DecodeError`] whose [`SkipReason`]
//! is counted in [`DecodeStats`], so nothing is dropped silently.

/// Why a frame produced no [`PacketSummary`](super::PacketSummary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The capture's link type is not one the decoder reads.
    UnsupportedLinkType,
    /// A well-formed frame that does not carry IP (ARP, LLDP, 802.3/LLC, …): not an error.
    NonIp,
    /// The frame ends inside its link-layer header (Ethernet, VLAN tag, MPLS label, SLL, …).
    TruncatedLink,
    /// The frame ends inside the IP header or an IPv6 extension header.
    TruncatedIp,
    /// The IP header is invalid: wrong version, IHL below 5, total length shorter than the header, …
    BadIpHeader,
    /// The frame ends before the transport header fields the engine reads (ports, TCP flags).
    TruncatedTransport,
    /// A zero-length frame.
    Empty,
}

impl SkipReason {
    /// Every reason, in [`SkipReason::index`] order.
    pub const ALL: [SkipReason; 7] = [
        SkipReason::UnsupportedLinkType,
        SkipReason::NonIp,
        SkipReason::TruncatedLink,
        SkipReason::TruncatedIp,
        SkipReason::BadIpHeader,
        SkipReason::TruncatedTransport,
        SkipReason::Empty,
    ];

    /// A snake_case name for summaries and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::UnsupportedLinkType => "unsupported_link_type",
            SkipReason::NonIp => "non_ip",
            SkipReason::TruncatedLink => "truncated_link",
            SkipReason::TruncatedIp => "truncated_ip",
            SkipReason::BadIpHeader => "bad_ip_header",
            SkipReason::TruncatedTransport => "truncated_transport",
            SkipReason::Empty => "empty",
        }
    }

    /// Whether the frame was broken, as opposed to merely not IP or from an unsupported link type.
    pub fn is_malformed(self) -> bool {
        !matches!(self, SkipReason::NonIp | SkipReason::UnsupportedLinkType)
    }

    /// Position in [`SkipReason::ALL`] (and in [`DecodeStats::by_reason`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A frame the decoder could not turn into a [`PacketSummary`](super::PacketSummary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u32),
    #[error("not an IP packet")]
    NonIp,
    #[error("frame ends inside the link-layer header")]
    TruncatedLink,
    #[error("frame ends inside the IP header")]
    TruncatedIp,
    #[error("invalid IP header")]
    BadIpHeader,
    #[error("frame ends inside the transport header")]
    TruncatedTransport,
    #[error("zero-length frame")]
    Empty,
}

impl DecodeError {
    /// The counter this error belongs to.
    pub fn reason(&self) -> SkipReason {
        match self {
            DecodeError::UnsupportedLinkType(_) => SkipReason::UnsupportedLinkType,
            DecodeError::NonIp => SkipReason::NonIp,
            DecodeError::TruncatedLink => SkipReason::TruncatedLink,
            DecodeError::TruncatedIp => SkipReason::TruncatedIp,
            DecodeError::BadIpHeader => SkipReason::BadIpHeader,
            DecodeError::TruncatedTransport => SkipReason::TruncatedTransport,
            DecodeError::Empty => SkipReason::Empty,
        }
    }
}

/// Frames the decoder skipped, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Skipped frames per [`SkipReason::index`].
    pub by_reason: [u64; SkipReason::ALL.len()],
    /// Frames per unsupported link type number.
    pub unsupported_link_types: std::collections::BTreeMap<u32, u64>,
}

impl DecodeStats {
    /// Counts one skipped frame.
    pub fn record(&mut self, e: &DecodeError) {
        if let Some(n) = self.by_reason.get_mut(e.reason().index()) {
            *n += 1;
        }
        if let DecodeError::UnsupportedLinkType(lt) = e {
            *self.unsupported_link_types.entry(*lt).or_insert(0) += 1;
        }
    }

    /// Skipped frames of one reason.
    pub fn count(&self, reason: SkipReason) -> u64 {
        self.by_reason.get(reason.index()).copied().unwrap_or(0)
    }

    /// All skipped frames.
    pub fn total(&self) -> u64 {
        self.by_reason.iter().sum()
    }

    /// Skipped frames that were broken (see [`SkipReason::is_malformed`]).
    pub fn malformed(&self) -> u64 {
        SkipReason::ALL
            .iter()
            .filter(|r| r.is_malformed())
            .map(|r| self.count(*r))
            .sum()
    }

    /// Adds another set of counters (e.g. from another file or thread) to this one.
    pub fn merge(&mut self, other: &DecodeStats) {
        for (mine, theirs) in self.by_reason.iter_mut().zip(other.by_reason.iter()) {
            *mine += theirs;
        }
        for (lt, n) in &other.unsupported_link_types {
            *self.unsupported_link_types.entry(*lt).or_insert(0) += n;
        }
    }
}
