//! Attack signatures: the header fields nearly every packet of an attack shares, and the nft/BPF
//! matches they make.
//!
//! Flood tools build their packets from a template: one TTL, one TCP window, no TCP options, one
//! payload. A [`SignatureSketch`] is fed the packets counted toward an alert and keeps, per header
//! field of [`crate::decode::HeaderFields`], the few heaviest values with their packet counts (a
//! Space-Saving top-k of [`SLOTS`] entries), in fixed memory and without allocating.
//! [`SignatureSketch::signature`] turns it into a [`Signature`]: the fields whose top value covers at
//! least [`MIN_SHARE`] of the sketched packets. Given a reference sketch of the same key's normal
//! traffic it drops the fields whose value is common there too (at least [`MAX_REFERENCE_SHARE`]),
//! since a rule on them would also drop normal traffic. [`Signature::bpf`] and [`Signature::nft`]
//! render the signature as one conjunction to add to an alert's suggested rules.
//!
//! In alert JSON a signature is a list, e.g.
//! `[{"field":"ttl","value":64,"share":0.99},{"field":"tcp_options","value":"absent","share":0.99}]`.

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::decode::{proto, Fragment, PacketSummary};

/// A field becomes part of the signature when its top value covers at least this share of the
/// sketched packets (by weight; a lower bound of the top value's count is used).
pub const MIN_SHARE: f64 = 0.9;

/// A signature field is dropped when its value covers at least this share of the reference
/// (normal) traffic (an upper bound of the value's count there is used): a rule on it would drop
/// that much normal traffic too.
pub const MAX_REFERENCE_SHARE: f64 = 0.2;

/// A sketch of fewer summaries than this yields no signature: a handful of sampled packets (sFlow
/// weights them by the sampling rate) is no evidence of a template.
pub const MIN_SAMPLES: u64 = 20;

/// Values kept per field. Any value heavier than 1/`SLOTS` of the packets is guaranteed to be kept.
pub const SLOTS: usize = 8;

/// Two IP IDs in a row count as incrementing when the second is 1 to `ID_GAP × weight` above the
/// first (mod 2^16): a sampled stream skips the IDs of the packets it did not sample.
const ID_GAP: u64 = 8;
/// The gap allowed is never more than this (a random ID falls within it 1.6 % of the time).
const MAX_ID_GAP: u64 = 1024;

/// The Space-Saving top-k of one field: `values` with their packet counts, each count at most
/// `errors[i]` above the true count. A slot with count 0 is empty (its value means nothing).
///
/// The loops run over all slots without early exits so that they compile to conditional moves:
/// a flood random in a field misses on every packet, and branches on random data mispredict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TopK {
    values: [u32; SLOTS],
    counts: [u64; SLOTS],
    errors: [u64; SLOTS],
    /// The slot the last value went to: a template's field hits it every time.
    last: u8,
}

impl TopK {
    /// The slot monitoring `value`, if any (the last one when empty slots hold it too).
    #[inline]
    fn find(&self, value: u32) -> Option<usize> {
        let mut mask = 0u32;
        for (i, v) in self.values.iter().enumerate() {
            mask |= u32::from(*v == value) << i;
        }
        mask.checked_ilog2().map(|i| i as usize)
    }

    #[inline]
    fn add(&mut self, value: u32, w: u64) {
        let last = usize::from(self.last) % SLOTS;
        if self.values[last] == value && self.counts[last] > 0 {
            self.counts[last] = self.counts[last].saturating_add(w);
            return;
        }
        self.add_slow(value, w);
    }

    fn add_slow(&mut self, value: u32, w: u64) {
        if let Some(i) = self.find(value) {
            self.counts[i] = self.counts[i].saturating_add(w);
            self.last = i as u8;
            return;
        }
        // The value takes the place of the lightest one (an empty slot first) and inherits its
        // count as error.
        let mut min = 0;
        let mut floor = self.counts[0];
        for (i, c) in self.counts.iter().enumerate().skip(1) {
            if *c < floor {
                min = i;
                floor = *c;
            }
        }
        self.values[min] = value;
        self.counts[min] = floor.saturating_add(w);
        self.errors[min] = floor;
        self.last = min as u8;
    }

    /// The value with the most packets, and a lower bound of its packets.
    fn top(&self) -> Option<(u32, u64)> {
        (0..SLOTS)
            .filter(|i| self.counts[*i] > 0)
            .max_by_key(|i| (self.counts[*i] - self.errors[*i], std::cmp::Reverse(*i)))
            .map(|i| (self.values[i], self.counts[i] - self.errors[i]))
    }

    /// An upper bound of the packets of `value`: its count when monitored, else the lightest
    /// count (an unmonitored value never had more; 0 while a slot is empty).
    fn upper(&self, value: u32) -> u64 {
        let monitored = (0..SLOTS)
            .filter(|i| self.values[*i] == value)
            .map(|i| self.counts[i])
            .max()
            .unwrap_or(0);
        let floor = self.counts.iter().copied().min().unwrap_or(0);
        monitored.max(floor)
    }
}

/// The header fields of the packets counted toward an alert, in fixed memory (about 1.6 KB).
///
/// Feed it with [`SignatureSketch::observe`] for every packet counted toward the alert (weights are
/// honoured); read it with [`SignatureSketch::signature`]. Summaries without header fields (flow
/// records) are counted in [`SignatureSketch::samples`] only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureSketch {
    /// Summaries observed (unweighted), with or without header fields.
    samples: u64,
    /// Summaries observed with header fields (unweighted).
    known_samples: u64,
    /// Packets (weighted) with header fields: the denominator of every share.
    known: u64,
    /// Packets of TCP, UDP among `known`.
    tcp: u64,
    udp: u64,
    ttl: TopK,
    ip_len: TopK,
    ip_id: TopK,
    /// IPv4 packets whose ID followed the previous IPv4 packet's by a small step.
    id_increments: u64,
    last_id: Option<u16>,
    /// IPv4 packets without / with DF.
    df: [u64; 2],
    tcp_window: TopK,
    tcp_opts: TopK,
    tcp_flags: TopK,
    sport: TopK,
    /// UDP payload length (unfragmented datagrams).
    payload_len: TopK,
    /// The 4-byte payload prefix, where the payload has 4 bytes and all were captured.
    prefix: TopK,
    /// Packets whose payload had 4 bytes or more but fewer were captured.
    prefix_partial: u64,
    /// Packets of the key's normal traffic expected among `known` (see
    /// [`SignatureSketch::expect_normal`]).
    normal: u64,
}

impl SignatureSketch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one summary (`p.weight` packets).
    #[inline]
    pub fn observe(&mut self, p: &PacketSummary) {
        self.observe_scaled(p, 1);
    }

    /// Counts one summary as `p.weight × scale` packets: for a caller that feeds one packet in
    /// `scale` to spend less per packet.
    pub fn observe_scaled(&mut self, p: &PacketSummary, scale: u32) {
        self.samples += 1;
        let h = &p.hdr;
        if !h.known() {
            return;
        }
        let w = u64::from(p.weight).saturating_mul(u64::from(scale));
        if w == 0 {
            return;
        }
        self.known_samples += 1;
        self.known = self.known.saturating_add(w);
        self.ttl.add(u32::from(h.ttl), w);
        self.ip_len.add(u32::from(h.ip_len), w);
        if p.src.is_ipv4() {
            self.ip_id.add(u32::from(h.ip_id), w);
            if let Some(last) = self.last_id {
                let step = u64::from(h.ip_id.wrapping_sub(last));
                if step >= 1 && step <= ID_GAP.saturating_mul(w).min(MAX_ID_GAP) {
                    self.id_increments = self.id_increments.saturating_add(w);
                }
            }
            self.last_id = Some(h.ip_id);
            let df = &mut self.df[usize::from(h.df())];
            *df = df.saturating_add(w);
        }
        let later = matches!(p.fragment, Fragment::Later { .. });
        match p.proto {
            proto::TCP => {
                self.tcp = self.tcp.saturating_add(w);
                if later {
                    return;
                }
                self.tcp_flags.add(u32::from(p.tcp_flags), w);
                self.sport.add(u32::from(p.sport), w);
                if h.l4() {
                    self.tcp_window.add(u32::from(h.tcp_window), w);
                    self.tcp_opts.add(u32::from(h.tcp_opts_len), w);
                    self.add_prefix(p, w);
                }
            }
            proto::UDP => {
                self.udp = self.udp.saturating_add(w);
                if later {
                    return;
                }
                self.sport.add(u32::from(p.sport), w);
                if h.l4() {
                    if p.fragment == Fragment::None {
                        self.payload_len.add(u32::from(h.payload_len), w);
                    }
                    self.add_prefix(p, w);
                }
            }
            _ => {}
        }
    }

    #[inline]
    fn add_prefix(&mut self, p: &PacketSummary, w: u64) {
        let h = &p.hdr;
        if h.prefix_len >= 4 {
            self.prefix.add(u32::from_be_bytes(h.prefix), w);
        } else if h.payload_len >= 4 {
            self.prefix_partial = self.prefix_partial.saturating_add(w);
        }
    }

    /// Summaries observed, with or without header fields.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Summaries observed with header fields (flow records have none).
    pub fn known_samples(&self) -> u64 {
        self.known_samples
    }

    /// Packets (weighted) observed with header fields.
    pub fn packets(&self) -> u64 {
        self.known
    }

    /// Forgets everything (to reuse the sketch for another alert without reallocating).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Says that about `packets` of what was observed are the key's normal traffic (its normal rate
    /// times the time observed), so shares are of the rest — the attack's packets — and a flood
    /// mixed with 10 % of normal traffic still shows the fields all of its own packets carry. The
    /// attack is taken to be at least a twentieth of what was observed.
    pub fn expect_normal(&mut self, packets: u64) {
        self.normal = packets;
    }

    /// The denominator of every share: the packets observed minus the expected normal ones.
    fn attack_total(&self) -> f64 {
        let known = self.known as f64;
        (known - self.normal as f64).max(known / 20.0)
    }

    /// The pattern of the IPv4 identification field: one value (zero or not) or increments in
    /// at least [`MIN_SHARE`] of the packets, else random; unknown before [`MIN_SAMPLES`]
    /// summaries with header fields or without IPv4 packets.
    pub fn ip_id_pattern(&self) -> IpIdPattern {
        let v4 = self.df[0].saturating_add(self.df[1]);
        if v4 == 0 || self.known_samples < MIN_SAMPLES {
            return IpIdPattern::Unknown;
        }
        let total = self.attack_total();
        match self.ip_id.top() {
            Some((0, n)) if n as f64 / total >= MIN_SHARE => IpIdPattern::Zero,
            Some((id, n)) if n as f64 / total >= MIN_SHARE => IpIdPattern::Constant(id as u16),
            _ if self.id_increments as f64 / total >= MIN_SHARE => IpIdPattern::Incrementing,
            _ => IpIdPattern::Random,
        }
    }

    /// The attack's signature: the fields whose top value covers at least [`MIN_SHARE`] of the
    /// sketched packets, less those whose value covers at least [`MAX_REFERENCE_SHARE`] of
    /// `reference` (the key's traffic before the attack; ignored when it saw no packet with header
    /// fields). Empty when fewer than [`MIN_SAMPLES`] summaries with header fields were sketched or
    /// when no field qualifies.
    pub fn signature(&self, reference: Option<&SignatureSketch>) -> Signature {
        let mut sig = Signature {
            fields: Vec::new(),
            proto: self.dominant_proto(),
            packets: self.known,
        };
        if self.known_samples < MIN_SAMPLES || self.known == 0 {
            return sig;
        }
        let reference = reference.filter(|r| r.known > 0);
        let total = self.attack_total();
        let mut push =
            |field: Field, count: u64, in_reference: &dyn Fn(&SignatureSketch) -> u64| {
                let share = (count as f64 / total).min(1.0);
                if share < MIN_SHARE {
                    return;
                }
                if let Some(r) = reference {
                    if in_reference(r) as f64 / r.known as f64 >= MAX_REFERENCE_SHARE {
                        return;
                    }
                }
                sig.fields.push(SignatureField { field, share });
            };
        if let Some((v, n)) = self.ttl.top() {
            push(Field::Ttl(v as u8), n, &|r| r.ttl.upper(v));
        }
        let ip_id = self.ip_id_pattern();
        match ip_id {
            IpIdPattern::Zero | IpIdPattern::Constant(_) => {
                if let Some((v, n)) = self.ip_id.top() {
                    push(Field::IpId(ip_id), n, &|r| r.ip_id.upper(v));
                }
            }
            IpIdPattern::Incrementing => {
                push(Field::IpId(ip_id), self.id_increments, &|r| r.id_increments);
            }
            IpIdPattern::Random | IpIdPattern::Unknown => {}
        }
        if let Some((v, n)) = self.ip_len.top() {
            push(Field::IpLen(v as u16), n, &|r| r.ip_len.upper(v));
        }
        let df = usize::from(self.df[1] > self.df[0]);
        push(Field::Df(df == 1), self.df[df], &|r| r.df[df]);
        if let Some((v, n)) = self.tcp_window.top() {
            push(Field::TcpWindow(v as u16), n, &|r| r.tcp_window.upper(v));
        }
        if let Some((v, n)) = self.tcp_opts.top() {
            push(Field::TcpOptions(v as u8), n, &|r| r.tcp_opts.upper(v));
        }
        if let Some((v, n)) = self.tcp_flags.top() {
            push(Field::TcpFlags(v as u8), n, &|r| r.tcp_flags.upper(v));
        }
        if let Some((v, n)) = self.sport.top() {
            push(Field::Sport(v as u16), n, &|r| r.sport.upper(v));
        }
        if let Some((v, n)) = self.payload_len.top() {
            push(Field::PayloadLen(v as u16), n, &|r| r.payload_len.upper(v));
        }
        if self.prefix_partial == 0 {
            if let Some((v, n)) = self.prefix.top() {
                push(Field::PayloadPrefix(v.to_be_bytes()), n, &|r| {
                    r.prefix.upper(v)
                });
            }
        }
        sig
    }

    /// TCP or UDP when that protocol carries at least [`MIN_SHARE`] of the packets.
    fn dominant_proto(&self) -> Option<u8> {
        let total = self.attack_total();
        if total == 0.0 {
            None
        } else if self.tcp as f64 / total >= MIN_SHARE {
            Some(proto::TCP)
        } else if self.udp as f64 / total >= MIN_SHARE {
            Some(proto::UDP)
        } else {
            None
        }
    }
}

/// How the IPv4 identification field of a stream of packets behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpIdPattern {
    /// Always 0 (common with DF set, and in crafted packets).
    Zero,
    /// One non-zero value.
    Constant(u16),
    /// Each packet's ID a little above the previous one's: one sender's counter.
    Incrementing,
    /// None of the above.
    Random,
    /// Too few IPv4 packets to tell.
    Unknown,
}

/// One header field of a signature, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// IPv4 TTL or IPv6 hop limit.
    Ttl(u8),
    /// IPv4 identification: [`IpIdPattern::Zero`], [`IpIdPattern::Constant`] or
    /// [`IpIdPattern::Incrementing`].
    IpId(IpIdPattern),
    /// IPv4 total length; IPv6 payload length + 40.
    IpLen(u16),
    /// IPv4 don't-fragment flag.
    Df(bool),
    TcpWindow(u16),
    /// TCP option bytes; 0 is "absent".
    TcpOptions(u8),
    /// The whole TCP flags byte.
    TcpFlags(u8),
    /// TCP or UDP source port.
    Sport(u16),
    /// UDP payload length (the UDP length field − 8).
    PayloadLen(u16),
    /// The first 4 bytes of the TCP or UDP payload.
    PayloadPrefix([u8; 4]),
}

impl Field {
    /// The name in alert JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Field::Ttl(_) => "ttl",
            Field::IpId(_) => "ip_id",
            Field::IpLen(_) => "ip_len",
            Field::Df(_) => "df",
            Field::TcpWindow(_) => "tcp_window",
            Field::TcpOptions(_) => "tcp_options",
            Field::TcpFlags(_) => "tcp_flags",
            Field::Sport(_) => "sport",
            Field::PayloadLen(_) => "payload_len",
            Field::PayloadPrefix(_) => "payload_prefix",
        }
    }
}

/// A signature field and the share of the sketched packets carrying its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignatureField {
    pub field: Field,
    /// In [`MIN_SHARE`]..=1.
    pub share: f64,
}

/// `{"field":"tcp_window","value":512,"share":0.998}`: numbers for numeric fields, `true`/`false`
/// for `df`, strings for `tcp_options` `"absent"`, `ip_id` `"incrementing"`, `tcp_flags` (`"SYN"`,
/// `"PSH|ACK"`) and `payload_prefix` (hex, `"58585858"`); the share rounded down to 3 decimals.
impl Serialize for SignatureField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("SignatureField", 3)?;
        st.serialize_field("field", self.field.name())?;
        match self.field {
            Field::Ttl(v) => st.serialize_field("value", &v)?,
            Field::IpId(IpIdPattern::Constant(v)) => st.serialize_field("value", &v)?,
            Field::IpId(IpIdPattern::Zero) => st.serialize_field("value", &0)?,
            Field::IpId(IpIdPattern::Incrementing) => {
                st.serialize_field("value", "incrementing")?
            }
            Field::IpId(IpIdPattern::Random) => st.serialize_field("value", "random")?,
            Field::IpId(IpIdPattern::Unknown) => st.serialize_field("value", "unknown")?,
            Field::IpLen(v) | Field::TcpWindow(v) | Field::Sport(v) | Field::PayloadLen(v) => {
                st.serialize_field("value", &v)?
            }
            Field::Df(v) => st.serialize_field("value", &v)?,
            Field::TcpOptions(0) => st.serialize_field("value", "absent")?,
            Field::TcpOptions(v) => st.serialize_field("value", &v)?,
            Field::TcpFlags(f) => {
                st.serialize_field("value", &flag_names(f, FLAG_NAMES, "none"))?
            }
            Field::PayloadPrefix(b) => st.serialize_field("value", &hex(&b))?,
        }
        st.serialize_field("share", &((self.share * 1000.0).floor() / 1000.0))?;
        st.end()
    }
}

/// What an attack's packets have in common; empty when nothing qualified. Serialises as the list
/// of its fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signature {
    /// In a fixed order: ttl, ip_id, ip_len, df, tcp_window, tcp_options, tcp_flags, sport,
    /// payload_len, payload_prefix.
    pub fields: Vec<SignatureField>,
    /// TCP or UDP when it carried at least [`MIN_SHARE`] of the packets: the transport the port,
    /// length and prefix matches are written for.
    pub proto: Option<u8>,
    /// Packets (weighted) the signature was drawn from.
    pub packets: u64,
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(&self.fields)
    }
}

/// The syntax of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleSyntax {
    /// pcap filter (tcpdump, libpcap).
    Bpf,
    /// nftables match expression.
    Nft,
}

/// Flag names in bit order, for JSON (upper case) and nft.
const FLAG_NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
const NFT_FLAG_NAMES: [&str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"];

fn flag_names(flags: u8, names: [&str; 8], none: &str) -> String {
    let set: Vec<&str> = (0..8)
        .filter(|bit| flags & (1 << bit) != 0)
        .filter_map(|bit| names.get(bit).copied())
        .collect();
    if set.is_empty() {
        none.to_owned()
    } else {
        set.join("|")
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

impl Signature {
    /// Whether no field qualified.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The field named `name` ([`Field::name`]), if in the signature.
    pub fn get(&self, name: &str) -> Option<&SignatureField> {
        self.fields.iter().find(|f| f.field.name() == name)
    }

    /// The signature as a pcap filter: the conjunction (` and `) of its fields, for IPv4 or IPv6
    /// traffic. `None` when no field can be expressed.
    ///
    /// IPv4 uses `ip[…]`, `tcp[…]` and `udp[…]` (libpcap adds the protocol and first-fragment
    /// checks, and `tcp[…]`/`udp[…]` follow IPv4 options). libpcap cannot index `tcp[…]` in IPv6,
    /// so IPv6 uses fixed `ip6[…]` offsets and holds only for packets without extension headers
    /// (the match then starts with `ip6[6] == 6` or `== 17`). Not expressed: an incrementing IP ID;
    /// for IPv6 the IP ID and DF (IPv4 only); see [`Signature::omitted`].
    pub fn bpf(&self, ipv6: bool) -> Option<String> {
        self.render(RuleSyntax::Bpf, ipv6).0
    }

    /// The signature as an nftables match (juxtaposed matches, to put before a verdict in an `inet`
    /// table), e.g. `ip ttl 64 tcp window 512 tcp doff 5`. `None` when no field can be expressed.
    ///
    /// nft finds the transport header behind IPv6 extension headers itself. Not expressed: an
    /// incrementing IP ID; for IPv6 the IP ID and DF; a TCP payload prefix unless the signature
    /// also fixes the TCP options length (nft raw payload offsets are constant); see
    /// [`Signature::omitted`].
    pub fn nft(&self, ipv6: bool) -> Option<String> {
        self.render(RuleSyntax::Nft, ipv6).0
    }

    /// The names of the fields [`Signature::bpf`] or [`Signature::nft`] leave out.
    pub fn omitted(&self, syntax: RuleSyntax, ipv6: bool) -> Vec<&'static str> {
        self.render(syntax, ipv6).1
    }

    fn render(&self, syntax: RuleSyntax, ipv6: bool) -> (Option<String>, Vec<&'static str>) {
        let mut parts: Vec<String> = Vec::new();
        let mut omitted = Vec::new();
        let mut transport_fields = false;
        let tcp = self.proto == Some(proto::TCP);
        let udp = self.proto == Some(proto::UDP);
        let opts = self.fields.iter().find_map(|f| match f.field {
            Field::TcpOptions(n) => Some(n),
            _ => None,
        });
        for f in &self.fields {
            let part = match syntax {
                RuleSyntax::Bpf => bpf_field(f.field, ipv6, tcp, udp),
                RuleSyntax::Nft => nft_field(f.field, ipv6, tcp, udp, opts),
            };
            match part {
                Some(p) => {
                    transport_fields |= matches!(
                        f.field,
                        Field::TcpWindow(_)
                            | Field::TcpOptions(_)
                            | Field::TcpFlags(_)
                            | Field::PayloadLen(_)
                            | Field::PayloadPrefix(_)
                    );
                    parts.push(p);
                }
                None => omitted.push(f.field.name()),
            }
        }
        if parts.is_empty() {
            return (None, omitted);
        }
        let text = match syntax {
            // IPv6 BPF reads the transport header at fixed offsets: only right after the IPv6
            // header, and only for the protocol the offsets are written for.
            RuleSyntax::Bpf if ipv6 && transport_fields => {
                let next = if tcp { proto::TCP } else { proto::UDP };
                format!("ip6[6] == {next} and {}", parts.join(" and "))
            }
            RuleSyntax::Bpf => parts.join(" and "),
            RuleSyntax::Nft => parts.join(" "),
        };
        (Some(text), omitted)
    }
}

/// One field as a pcap filter term.
fn bpf_field(field: Field, ipv6: bool, tcp: bool, udp: bool) -> Option<String> {
    let l4 = if tcp { "tcp" } else { "udp" };
    Some(match (field, ipv6) {
        (Field::Ttl(t), false) => format!("ip[8] == {t}"),
        (Field::Ttl(t), true) => format!("ip6[7] == {t}"),
        (Field::IpId(IpIdPattern::Zero), false) => "ip[4:2] == 0".to_owned(),
        (Field::IpId(IpIdPattern::Constant(id)), false) => format!("ip[4:2] == {id}"),
        (Field::IpId(_), _) => return None,
        (Field::IpLen(n), false) => format!("ip[2:2] == {n}"),
        (Field::IpLen(n), true) => format!("ip6[4:2] == {}", n.checked_sub(40)?),
        (Field::Df(true), false) => "ip[6] & 0x40 != 0".to_owned(),
        (Field::Df(false), false) => "ip[6] & 0x40 == 0".to_owned(),
        (Field::Df(_), true) => return None,
        (Field::TcpWindow(w), false) if tcp => format!("tcp[14:2] == {w}"),
        (Field::TcpWindow(w), true) if tcp => format!("ip6[54:2] == {w}"),
        (Field::TcpOptions(n), false) if tcp => format!("(tcp[12] >> 4) == {}", 5 + n / 4),
        (Field::TcpOptions(n), true) if tcp => format!("(ip6[52] >> 4) == {}", 5 + n / 4),
        (Field::TcpFlags(f), false) if tcp => format!("tcp[13] == 0x{f:02x}"),
        (Field::TcpFlags(f), true) if tcp => format!("ip6[53] == 0x{f:02x}"),
        // libpcap's port primitives read IPv6 too
        (Field::Sport(p), _) if tcp || udp => format!("{l4} src port {p}"),
        (Field::Sport(p), _) => format!("src port {p}"),
        (Field::PayloadLen(n), false) if udp => format!("udp[4:2] == {}", u32::from(n) + 8),
        (Field::PayloadLen(n), true) if udp => format!("ip6[44:2] == {}", u32::from(n) + 8),
        (Field::PayloadPrefix(b), false) if udp => format!("udp[8:4] == 0x{}", hex(&b)),
        (Field::PayloadPrefix(b), true) if udp => format!("ip6[48:4] == 0x{}", hex(&b)),
        // the TCP payload starts data offset × 4 bytes into the header
        (Field::PayloadPrefix(b), false) if tcp => {
            format!("tcp[((tcp[12] & 0xf0) >> 2):4] == 0x{}", hex(&b))
        }
        (Field::PayloadPrefix(b), true) if tcp => {
            format!("ip6[40 + ((ip6[52] & 0xf0) >> 2):4] == 0x{}", hex(&b))
        }
        _ => return None,
    })
}

/// One field as an nft match.
fn nft_field(field: Field, ipv6: bool, tcp: bool, udp: bool, opts: Option<u8>) -> Option<String> {
    let l4 = if tcp { "tcp" } else { "udp" };
    Some(match (field, ipv6) {
        (Field::Ttl(t), false) => format!("ip ttl {t}"),
        (Field::Ttl(t), true) => format!("ip6 hoplimit {t}"),
        (Field::IpId(IpIdPattern::Zero), false) => "ip id 0".to_owned(),
        (Field::IpId(IpIdPattern::Constant(id)), false) => format!("ip id {id}"),
        (Field::IpId(_), _) => return None,
        (Field::IpLen(n), false) => format!("ip length {n}"),
        (Field::IpLen(n), true) => format!("ip6 length {}", n.checked_sub(40)?),
        (Field::Df(true), false) => "ip frag-off & 0x4000 != 0".to_owned(),
        (Field::Df(false), false) => "ip frag-off & 0x4000 == 0".to_owned(),
        (Field::Df(_), true) => return None,
        (Field::TcpWindow(w), _) if tcp => format!("tcp window {w}"),
        (Field::TcpOptions(n), _) if tcp => format!("tcp doff {}", 5 + n / 4),
        (Field::TcpFlags(0), _) if tcp => "tcp flags == 0x0".to_owned(),
        (Field::TcpFlags(f), _) if tcp => {
            format!("tcp flags == {}", flag_names(f, NFT_FLAG_NAMES, "0x0"))
        }
        (Field::Sport(p), _) if tcp || udp => format!("{l4} sport {p}"),
        (Field::Sport(p), _) => format!("meta l4proto {{ tcp, udp }} th sport {p}"),
        (Field::PayloadLen(n), _) if udp => format!("udp length {}", u32::from(n) + 8),
        // raw payload matching, offsets in bits from the start of the transport header
        (Field::PayloadPrefix(b), _) if udp => {
            format!("meta l4proto udp @th,64,32 0x{}", hex(&b))
        }
        (Field::PayloadPrefix(b), _) if tcp => {
            let at = (20 + u32::from(opts?)) * 8;
            format!("meta l4proto tcp @th,{at},32 0x{}", hex(&b))
        }
        _ => return None,
    })
}

/// Engine state ([`crate::engine_state`]).
mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};

    type R<T> = Result<T, EngineStateError>;

    impl TopK {
        fn save(&self, e: &mut Enc) {
            for i in 0..SLOTS {
                e.var(u64::from(self.values[i]));
                e.var(self.counts[i]);
                e.var(self.errors[i]);
            }
            e.u8(self.last);
        }

        fn load(d: &mut Dec) -> R<TopK> {
            let mut t = TopK::default();
            for i in 0..SLOTS {
                t.values[i] = d.u32("a signature value")?;
                t.counts[i] = d.count("a signature count")?;
                t.errors[i] = d.count("a signature count")?;
                if t.errors[i] > t.counts[i] {
                    return Err(d.corrupt("a signature count is below its error"));
                }
            }
            t.last = d.u8("a signature slot")?;
            if usize::from(t.last) >= SLOTS {
                return Err(d.corrupt(format!("signature slot {} does not exist", t.last)));
            }
            Ok(t)
        }
    }

    impl SignatureSketch {
        pub(crate) fn save(&self, e: &mut Enc) {
            for v in [
                self.samples,
                self.known_samples,
                self.known,
                self.tcp,
                self.udp,
                self.id_increments,
                self.df[0],
                self.df[1],
                self.prefix_partial,
                self.normal,
            ] {
                e.var(v);
            }
            e.opt(self.last_id.as_ref(), |e, id| e.var(u64::from(*id)));
            for t in [
                &self.ttl,
                &self.ip_len,
                &self.ip_id,
                &self.tcp_window,
                &self.tcp_opts,
                &self.tcp_flags,
                &self.sport,
                &self.payload_len,
                &self.prefix,
            ] {
                t.save(e);
            }
        }

        pub(crate) fn load(d: &mut Dec) -> R<SignatureSketch> {
            let mut c = || d.count("a signature counter");
            let (samples, known_samples, known, tcp, udp) = (c()?, c()?, c()?, c()?, c()?);
            let (id_increments, df0, df1, prefix_partial, normal) = (c()?, c()?, c()?, c()?, c()?);
            let last_id = d.opt("the last IP ID", |d| d.u16("the last IP ID"))?;
            Ok(SignatureSketch {
                samples,
                known_samples,
                known,
                tcp,
                udp,
                id_increments,
                df: [df0, df1],
                prefix_partial,
                normal,
                last_id,
                ttl: TopK::load(d)?,
                ip_len: TopK::load(d)?,
                ip_id: TopK::load(d)?,
                tcp_window: TopK::load(d)?,
                tcp_opts: TopK::load(d)?,
                tcp_flags: TopK::load(d)?,
                sport: TopK::load(d)?,
                payload_len: TopK::load(d)?,
                prefix: TopK::load(d)?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{tcp_flags, HeaderFields};
    use std::net::IpAddr;

    use crate::fixtures::XorShift as Rng;

    /// An IPv4 TCP packet from `sport` with the given header fields and no payload.
    fn tcp(ttl: u8, window: u16, opts: u8, flags: u8, sport: u16, ip_id: u16) -> PacketSummary {
        PacketSummary {
            src: IpAddr::from([203, 0, 113, 9]),
            dst: IpAddr::from([198, 51, 100, 10]),
            proto: proto::TCP,
            sport,
            dport: 80,
            tcp_flags: flags,
            wire_len: 60,
            hdr: HeaderFields {
                ttl,
                ip_id,
                ip_len: 40 + u16::from(opts),
                tcp_window: window,
                tcp_opts_len: opts,
                bits: HeaderFields::KNOWN | HeaderFields::L4,
                ..HeaderFields::UNKNOWN
            },
            ..PacketSummary::default()
        }
    }

    /// An IPv4 UDP packet from `sport` with a `len`-byte payload starting with `prefix`.
    fn udp(ttl: u8, sport: u16, len: u16, prefix: [u8; 4]) -> PacketSummary {
        PacketSummary {
            proto: proto::UDP,
            sport,
            dport: 4444,
            tcp_flags: 0,
            hdr: HeaderFields {
                ttl,
                ip_len: 28 + len,
                payload_len: len,
                prefix,
                prefix_len: len.min(4) as u8,
                bits: HeaderFields::KNOWN | HeaderFields::DF | HeaderFields::L4,
                ..HeaderFields::UNKNOWN
            },
            ..tcp(ttl, 0, 0, 0, sport, 0)
        }
    }

    fn values(sig: &Signature) -> Vec<(&'static str, Field)> {
        sig.fields
            .iter()
            .map(|f| (f.field.name(), f.field))
            .collect()
    }

    /// 10 000 SYNs (window 512, no options, TTL 64, random source ports and IDs) and 100 legit SYNs
    /// (window 64240, 20 option bytes, TTL 52..=64).
    fn syn_flood_with_legit() -> SignatureSketch {
        let mut rng = Rng(7);
        let mut sk = SignatureSketch::new();
        for i in 0..10_100u32 {
            let r = rng.next();
            let p = if i % 101 == 50 {
                let ttl = 52 + (r % 13) as u8;
                tcp(
                    ttl,
                    64240,
                    20,
                    tcp_flags::SYN,
                    32768 + (r >> 16) as u16 % 28000,
                    (r >> 40) as u16,
                )
            } else {
                tcp(
                    64,
                    512,
                    0,
                    tcp_flags::SYN,
                    (r >> 8) as u16,
                    (r >> 24) as u16,
                )
            };
            sk.observe(&p);
        }
        sk
    }

    #[test]
    fn a_syn_flood_has_its_template_as_signature() {
        let sk = syn_flood_with_legit();
        assert_eq!((sk.samples(), sk.packets()), (10_100, 10_100));
        let sig = sk.signature(None);
        assert_eq!(sig.proto, Some(proto::TCP));
        let v = values(&sig);
        assert!(v.contains(&("ttl", Field::Ttl(64))), "{v:?}");
        assert!(v.contains(&("tcp_window", Field::TcpWindow(512))));
        assert!(v.contains(&("tcp_options", Field::TcpOptions(0))));
        assert!(v.contains(&("tcp_flags", Field::TcpFlags(tcp_flags::SYN))));
        assert!(v.contains(&("ip_len", Field::IpLen(40))));
        // random source ports and IDs, no IPv4 DF in either: no sport, no ip_id, df=false
        assert!(sig.get("sport").is_none() && sig.get("ip_id").is_none());
        assert_eq!(sig.get("df").map(|f| f.field), Some(Field::Df(false)));
        for name in ["tcp_window", "tcp_options", "ip_len"] {
            let share = sig.get(name).map_or(0.0, |f| f.share);
            assert!((share - 10_000.0 / 10_100.0).abs() < 1e-9, "{name} {share}");
        }
        // TTL 64 also in 1/13 of the legit packets
        let ttl = sig.get("ttl").map_or(0.0, |f| f.share);
        assert!(ttl > 0.99 && ttl < 0.992, "{ttl}");
        assert_eq!(
            sig.bpf(false).as_deref(),
            Some(
                "ip[8] == 64 and ip[2:2] == 40 and ip[6] & 0x40 == 0 and tcp[14:2] == 512 \
                 and (tcp[12] >> 4) == 5 and tcp[13] == 0x02"
            )
        );
        assert_eq!(
            sig.nft(false).as_deref(),
            Some(
                "ip ttl 64 ip length 40 ip frag-off & 0x4000 == 0 tcp window 512 tcp doff 5 \
                 tcp flags == syn"
            )
        );
        assert!(sig.omitted(RuleSyntax::Bpf, false).is_empty());
    }

    #[test]
    fn a_reference_drops_the_fields_normal_traffic_shares() {
        let sk = syn_flood_with_legit();
        // normal traffic with TTL 52..=64 evenly: TTL 64 is rare there (1/13), kept
        let mut rng = Rng(11);
        let mut spread = SignatureSketch::new();
        for _ in 0..1_000 {
            let r = rng.next();
            let ttl = 52 + (r % 13) as u8;
            spread.observe(&tcp(
                ttl,
                64240,
                20,
                tcp_flags::SYN,
                (r >> 16) as u16,
                (r >> 32) as u16,
            ));
        }
        let sig = sk.signature(Some(&spread));
        assert!(sig.get("ttl").is_some(), "{:?}", values(&sig));
        assert!(sig.get("tcp_window").is_some() && sig.get("tcp_options").is_some());
        // SYN is what normal SYNs carry too, and so is DF clear in this made-up traffic
        assert!(sig.get("tcp_flags").is_none() && sig.get("df").is_none());
        // normal traffic mostly at TTL 64: TTL does not tell them apart, dropped
        let mut at_64 = SignatureSketch::new();
        for i in 0..1_000u32 {
            let r = rng.next();
            let ttl = if i % 2 == 0 { 64 } else { 52 + (r % 12) as u8 };
            at_64.observe(&tcp(ttl, 64240, 20, tcp_flags::ACK, (r >> 16) as u16, 0));
        }
        let sig = sk.signature(Some(&at_64));
        let v = values(&sig);
        assert!(sig.get("ttl").is_none(), "{v:?}");
        assert!(v.contains(&("tcp_window", Field::TcpWindow(512))));
        assert!(v.contains(&("tcp_flags", Field::TcpFlags(tcp_flags::SYN))));
        // an empty reference is no reference
        assert_eq!(
            sk.signature(Some(&SignatureSketch::new())),
            sk.signature(None)
        );
    }

    #[test]
    fn a_random_attack_has_no_signature() {
        let mut rng = Rng(3);
        let mut sk = SignatureSketch::new();
        for _ in 0..20_000 {
            let r = rng.next();
            let mut p = tcp(
                r as u8,
                (r >> 8) as u16,
                ((r >> 24) % 11) as u8 * 4,
                (r >> 32) as u8,
                (r >> 40) as u16,
                (r >> 48) as u16,
            );
            p.hdr.bits |= if r >> 63 == 0 { HeaderFields::DF } else { 0 };
            sk.observe(&p);
        }
        let sig = sk.signature(None);
        assert!(sig.is_empty(), "{:?}", values(&sig));
        assert_eq!((sig.bpf(false), sig.nft(true)), (None, None));
        assert_eq!(serde_json::to_string(&sig).unwrap(), "[]");
        assert_eq!(sk.ip_id_pattern(), IpIdPattern::Random);
        // a SYN flood random in everything else: only the flags
        let mut sk = SignatureSketch::new();
        for _ in 0..20_000 {
            let r = rng.next();
            let mut p = tcp(
                r as u8,
                (r >> 8) as u16,
                0,
                tcp_flags::SYN,
                (r >> 40) as u16,
                0,
            );
            p.hdr.ip_len = 40 + (r >> 24) as u16 % 1000;
            p.hdr.tcp_opts_len = ((r >> 50) % 11) as u8 * 4;
            p.hdr.ip_id = (r >> 32) as u16;
            sk.observe(&p);
        }
        let v = values(&sk.signature(None));
        assert_eq!(
            v,
            vec![
                ("df", Field::Df(false)),
                ("tcp_flags", Field::TcpFlags(tcp_flags::SYN))
            ]
        );
    }

    #[test]
    fn weights_are_honoured() {
        // 50 sampled headers standing for 1000 packets each against 500 single packets
        let mut sk = SignatureSketch::new();
        for i in 0..550u32 {
            let mut p = if i % 11 == 0 {
                tcp(64, 512, 0, tcp_flags::SYN, 1, 0)
            } else {
                tcp(128, 8192, 8, tcp_flags::ACK, 2, 0)
            };
            p.weight = if i % 11 == 0 { 1000 } else { 1 };
            sk.observe(&p);
        }
        assert_eq!(sk.packets(), 50 * 1000 + 500);
        let sig = sk.signature(None);
        let ttl = sig.get("ttl").copied();
        assert_eq!(ttl.map(|f| f.field), Some(Field::Ttl(64)));
        assert!(ttl.is_some_and(|f| (f.share - 50_000.0 / 50_500.0).abs() < 1e-9));
        assert_eq!(
            sig.get("tcp_window").map(|f| f.field),
            Some(Field::TcpWindow(512))
        );
        // observe_scaled multiplies
        let mut scaled = SignatureSketch::new();
        for _ in 0..30 {
            scaled.observe_scaled(&tcp(64, 512, 0, tcp_flags::SYN, 1, 0), 10);
        }
        assert_eq!(scaled.packets(), 300);
        // a weight of 0 counts nothing
        let mut zero = tcp(64, 512, 0, tcp_flags::SYN, 1, 0);
        zero.weight = 0;
        scaled.observe(&zero);
        assert_eq!((scaled.packets(), scaled.samples()), (300, 31));
    }

    #[test]
    fn too_few_samples_or_no_header_fields_give_no_signature() {
        let mut sk = SignatureSketch::new();
        for _ in 0..MIN_SAMPLES - 1 {
            sk.observe(&tcp(64, 512, 0, tcp_flags::SYN, 1, 0));
        }
        assert!(sk.signature(None).is_empty());
        sk.observe(&tcp(64, 512, 0, tcp_flags::SYN, 1, 0));
        assert!(!sk.signature(None).is_empty());
        // flow records carry no header fields
        let mut flows = SignatureSketch::new();
        for _ in 0..1000 {
            flows.observe(&PacketSummary {
                hdr: HeaderFields::UNKNOWN,
                ..tcp(64, 512, 0, tcp_flags::SYN, 1, 0)
            });
        }
        assert_eq!((flows.samples(), flows.packets()), (1000, 0));
        assert!(flows.signature(None).is_empty());
        sk.clear();
        assert_eq!(sk, SignatureSketch::new());
    }

    #[test]
    fn ip_id_patterns() {
        let run = |id: &dyn Fn(u32) -> u16| {
            let mut sk = SignatureSketch::new();
            for i in 0..1000u32 {
                sk.observe(&tcp(64, 512, 0, tcp_flags::SYN, 1, id(i)));
            }
            (
                sk.ip_id_pattern(),
                sk.signature(None).get("ip_id").map(|f| f.field),
            )
        };
        assert_eq!(
            run(&|_| 0),
            (IpIdPattern::Zero, Some(Field::IpId(IpIdPattern::Zero)))
        );
        let c = IpIdPattern::Constant(54321);
        assert_eq!(run(&|_| 54321), (c, Some(Field::IpId(c))));
        // hping3-style: +1 per packet, wrapping, with a few lost packets
        let inc = IpIdPattern::Incrementing;
        assert_eq!(
            run(&|i| (65_000 + i + i / 100) as u16),
            (inc, Some(Field::IpId(inc)))
        );
        let mut rng = Rng(5);
        let mut sk = SignatureSketch::new();
        for _ in 0..1000 {
            sk.observe(&tcp(64, 512, 0, tcp_flags::SYN, 1, rng.next() as u16));
        }
        assert_eq!(sk.ip_id_pattern(), IpIdPattern::Random);
        assert!(sk.signature(None).get("ip_id").is_none());
        // IPv6 has no IP ID
        let mut v6 = SignatureSketch::new();
        for _ in 0..1000 {
            let mut p = tcp(64, 512, 0, tcp_flags::SYN, 1, 0);
            p.src = IpAddr::from([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            v6.observe(&p);
        }
        assert_eq!(v6.ip_id_pattern(), IpIdPattern::Unknown);
        let sig = v6.signature(None);
        assert!(sig.get("ip_id").is_none() && sig.get("df").is_none());
        // an incrementing ID cannot be written as a rule
        let mut sk = SignatureSketch::new();
        for i in 0..1000u16 {
            sk.observe(&tcp(64, 512, 0, tcp_flags::SYN, 1, i));
        }
        let sig = sk.signature(None);
        assert_eq!(sig.omitted(RuleSyntax::Bpf, false), vec!["ip_id"]);
        assert_eq!(sig.omitted(RuleSyntax::Nft, false), vec!["ip_id"]);
    }

    #[test]
    fn a_udp_flood_with_a_fixed_payload() {
        let mut sk = SignatureSketch::new();
        let mut rng = Rng(9);
        for i in 0..5_000u32 {
            let r = rng.next();
            let mut p = if i % 50 == 0 {
                udp(57, 53, 100 + (r % 400) as u16, (r as u32).to_be_bytes())
            } else {
                udp(r as u8, (r >> 8) as u16, 512, *b"XXXX")
            };
            p.hdr.ip_id = (r >> 48) as u16;
            sk.observe(&p);
        }
        let sig = sk.signature(None);
        assert_eq!(sig.proto, Some(proto::UDP));
        assert_eq!(
            values(&sig),
            vec![
                ("ip_len", Field::IpLen(540)),
                ("df", Field::Df(true)),
                ("payload_len", Field::PayloadLen(512)),
                ("payload_prefix", Field::PayloadPrefix(*b"XXXX")),
            ]
        );
        assert_eq!(
            sig.bpf(false).as_deref(),
            Some("ip[2:2] == 540 and ip[6] & 0x40 != 0 and udp[4:2] == 520 and udp[8:4] == 0x58585858")
        );
        assert_eq!(
            sig.nft(false).as_deref(),
            Some(
                "ip length 540 ip frag-off & 0x4000 != 0 udp length 520 \
                 meta l4proto udp @th,64,32 0x58585858"
            )
        );
        // the same flood over IPv6 (no DF there), with the protocol check BPF needs
        let v6: Vec<SignatureField> = sig
            .fields
            .iter()
            .copied()
            .filter(|f| f.field.name() != "df")
            .collect();
        let sig6 = Signature {
            fields: v6,
            ..sig.clone()
        };
        assert_eq!(
            sig6.bpf(true).as_deref(),
            Some(
                "ip6[6] == 17 and ip6[4:2] == 500 and ip6[44:2] == 520 and ip6[48:4] == 0x58585858"
            )
        );
        assert_eq!(
            sig6.nft(true).as_deref(),
            Some("ip6 length 500 udp length 520 meta l4proto udp @th,64,32 0x58585858")
        );
        // DF of an IPv4 signature cannot be said of IPv6
        assert_eq!(sig.omitted(RuleSyntax::Bpf, true), vec!["df"]);
        // one packet whose prefix was cut by the snaplen: no prefix
        let mut cut = udp(64, 1, 512, *b"XX\0\0");
        cut.hdr.prefix_len = 2;
        sk.observe(&cut);
        assert!(sk.signature(None).get("payload_prefix").is_none());
        // a payload shorter than 4 bytes is no cut
        let mut sk = SignatureSketch::new();
        for _ in 0..100 {
            sk.observe(&udp(64, 1, 2, *b"ab\0\0"));
        }
        let sig = sk.signature(None);
        assert!(sig.get("payload_prefix").is_none());
        assert_eq!(sig.get("sport").map(|f| f.field), Some(Field::Sport(1)));
    }

    #[test]
    fn an_ack_flood_with_a_tcp_payload() {
        let mut sk = SignatureSketch::new();
        let mut rng = Rng(13);
        for _ in 0..3_000 {
            let r = rng.next();
            let mut p = tcp(
                (r % 200) as u8,
                (r >> 8) as u16,
                12,
                tcp_flags::ACK | tcp_flags::PSH,
                443,
                (r >> 24) as u16,
            );
            p.hdr.payload_len = 64;
            p.hdr.ip_len = 20 + 32 + 64;
            p.hdr.prefix = [0x16, 0x03, 0x01, 0x02];
            p.hdr.prefix_len = 4;
            sk.observe(&p);
        }
        let sig = sk.signature(None);
        assert_eq!(
            values(&sig),
            vec![
                ("ip_len", Field::IpLen(116)),
                ("df", Field::Df(false)),
                ("tcp_options", Field::TcpOptions(12)),
                ("tcp_flags", Field::TcpFlags(0x18)),
                ("sport", Field::Sport(443)),
                ("payload_prefix", Field::PayloadPrefix([0x16, 3, 1, 2])),
            ]
        );
        assert_eq!(
            sig.bpf(false).as_deref(),
            Some(
                "ip[2:2] == 116 and ip[6] & 0x40 == 0 and (tcp[12] >> 4) == 8 and tcp[13] == 0x18 \
                 and tcp src port 443 and tcp[((tcp[12] & 0xf0) >> 2):4] == 0x16030102"
            )
        );
        assert_eq!(
            sig.nft(false).as_deref(),
            Some(
                "ip length 116 ip frag-off & 0x4000 == 0 tcp doff 8 tcp flags == psh|ack \
                 tcp sport 443 meta l4proto tcp @th,256,32 0x16030102"
            )
        );
        // without a fixed options length nft cannot place the prefix
        let no_opts = Signature {
            fields: sig
                .fields
                .iter()
                .copied()
                .filter(|f| f.field.name() != "tcp_options")
                .collect(),
            ..sig.clone()
        };
        assert_eq!(
            no_opts.omitted(RuleSyntax::Nft, false),
            vec!["payload_prefix"]
        );
        // DF is IPv4's
        assert_eq!(no_opts.omitted(RuleSyntax::Bpf, true), vec!["df"]);
        assert_eq!(
            no_opts.bpf(true).as_deref(),
            Some(
                "ip6[6] == 6 and ip6[4:2] == 76 and ip6[53] == 0x18 and tcp src port 443 \
                 and ip6[40 + ((ip6[52] & 0xf0) >> 2):4] == 0x16030102"
            )
        );
    }

    #[test]
    fn signatures_serialise_as_a_list_of_fields() {
        let sig = Signature {
            fields: vec![
                SignatureField {
                    field: Field::TcpWindow(512),
                    share: 0.99876,
                },
                SignatureField {
                    field: Field::TcpOptions(0),
                    share: 1.0,
                },
                SignatureField {
                    field: Field::TcpOptions(20),
                    share: 0.95,
                },
                SignatureField {
                    field: Field::IpId(IpIdPattern::Incrementing),
                    share: 0.9,
                },
                SignatureField {
                    field: Field::IpId(IpIdPattern::Zero),
                    share: 0.9,
                },
                SignatureField {
                    field: Field::Df(true),
                    share: 0.9,
                },
                SignatureField {
                    field: Field::TcpFlags(0x12),
                    share: 0.9,
                },
                SignatureField {
                    field: Field::PayloadPrefix(*b"XX\x00\xff"),
                    share: 0.9,
                },
            ],
            proto: Some(proto::TCP),
            packets: 10,
        };
        assert_eq!(
            serde_json::to_string(&sig).unwrap(),
            r#"[{"field":"tcp_window","value":512,"share":0.998},{"field":"tcp_options","value":"absent","share":1.0},{"field":"tcp_options","value":20,"share":0.95},{"field":"ip_id","value":"incrementing","share":0.9},{"field":"ip_id","value":0,"share":0.9},{"field":"df","value":true,"share":0.9},{"field":"tcp_flags","value":"SYN|ACK","share":0.9},{"field":"payload_prefix","value":"585800ff","share":0.9}]"#
        );
    }

    #[test]
    fn the_sketch_is_small_and_bounded() {
        let size = std::mem::size_of::<SignatureSketch>();
        assert!(size <= 2048, "{size} bytes");
        // Space-Saving keeps a heavy value found late, and its count never undershoots
        let mut k = TopK::default();
        for v in 0..1000u32 {
            k.add(v, 1);
        }
        for _ in 0..9000 {
            k.add(5000, 1);
        }
        let (v, n) = k.top().unwrap();
        assert_eq!(v, 5000);
        assert!(n <= 9000 && n >= 9000 - 1000 / SLOTS as u64);
        assert!(k.upper(5000) >= 9000);
        assert!(k.upper(7) <= 1000 / SLOTS as u64 + 1);
    }
}
