//! Flowspec (RFC 8955, RFC 8956 for IPv6) rules from an alert, written as ExaBGP API commands.
//!
//! A [`FlowRule`] is the match of one rule: the victim (or, for a source scope, the attacker) as a
//! prefix, narrowed by what the class says dominates (protocol, TCP SYN without ACK, the
//! amplifier's source port, fragments, the destination ports that carry the attack) and by the
//! header fields of the signature that flowspec can express: IPv4 total length (`packet-length`),
//! the whole TCP flags byte, the source port, the don't-fragment bit. Flowspec has no TTL, IP ID,
//! TCP window, TCP options or payload component, so those signature fields are left out (the rule
//! is then wider than the nft one, never narrower); for IPv6 the packet length is left out too
//! (RFC 8956 counts it differently from the signature's `ip_len`) and so is DF (IPv4 only).
//!
//! The text follows ExaBGP 4.2's API grammar (its `configuration/flow/parser.py`): one command per
//! line, `announce flow route { match { …; } then { discard; } }` and the matching
//! `withdraw flow route { match { …; } }`; numeric components as `=N` (a bracketed list is an OR),
//! bitmask components as `=bits` (all set) joined by `&` to `!bits` (all clear), several flag names
//! joined by `+`. IPv6 rules use the same command with IPv6 prefixes and `next-header`.

use std::fmt::Write as _;

use crate::alert::{AlertEvent, AttackClass};
use crate::decode::proto;
use crate::key::{Key, Scope};
use crate::signature::{Field, Signature};

/// TCP flag bits in the order ExaBGP names them.
const TCP_FLAG_NAMES: [(u8, &str); 8] = [
    (0x01, "fin"),
    (0x02, "syn"),
    (0x04, "rst"),
    (0x08, "push"),
    (0x10, "ack"),
    (0x20, "urg"),
    (0x40, "ece"),
    (0x80, "cwr"),
];

/// A TCP flags match: the bits of `mask` must equal those of `value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    pub value: u8,
    pub mask: u8,
}

/// What a rule matches about fragmentation (the flowspec `fragment` bitmask).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragmentMatch {
    /// The IPv4 don't-fragment bit set (`true`) or clear.
    DontFragment(bool),
    /// Any fragment, first or not.
    IsFragment,
    /// Fragments after the first (they carry no transport header, so no port).
    LaterFragment,
}

/// What is done to the matched packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FlowAction {
    /// Drop them (traffic-rate 0).
    #[default]
    Discard,
    /// Let through at most this many bytes per second (RFC 8955 traffic-rate-bytes).
    RateLimit(u64),
}

impl FlowAction {
    /// `discard` or `rate-limit:BYTES_PER_SECOND`, as `--flowspec-action` takes it.
    pub fn parse(s: &str) -> Result<FlowAction, String> {
        if s == "discard" {
            return Ok(FlowAction::Discard);
        }
        let rate = s.strip_prefix("rate-limit:").ok_or_else(|| {
            format!("`{s}` is not an action: use `discard` or `rate-limit:BYTES_PER_SECOND`")
        })?;
        match rate.parse::<u64>() {
            Ok(n) if (1..=1_000_000_000_000).contains(&n) => Ok(FlowAction::RateLimit(n)),
            _ => Err(format!(
                "rate-limit:{rate}: the rate is bytes per second, 1 to 10^12 (e.g. rate-limit:125000 for 1 Mbit/s)"
            )),
        }
    }

    fn exabgp(self) -> String {
        match self {
            FlowAction::Discard => "discard;".to_owned(),
            FlowAction::RateLimit(n) => format!("rate-limit {n};"),
        }
    }
}

/// The match of one flowspec rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowRule {
    pub v6: bool,
    /// Destination prefix (`addr/len`), for destination scopes.
    pub destination: Option<Key>,
    /// Source prefix, for source scopes.
    pub source: Option<Key>,
    /// IP protocol (IPv6: upper-layer protocol).
    pub protocol: Option<u8>,
    /// Destination ports, any of them (empty: any port).
    pub destination_ports: Vec<u16>,
    pub source_port: Option<u16>,
    pub tcp_flags: Option<TcpFlags>,
    /// IPv4 total length.
    pub packet_length: Option<u16>,
    pub fragment: Option<FragmentMatch>,
}

impl FlowRule {
    /// A rule matching everything to or from (by `scope`) `key`.
    fn for_key(scope: Scope, key: Key) -> FlowRule {
        let dst = scope.is_destination();
        FlowRule {
            v6: matches!(key, Key::V6 { .. }),
            destination: dst.then_some(key),
            source: (!dst).then_some(key),
            protocol: None,
            destination_ports: Vec::new(),
            source_port: None,
            tcp_flags: None,
            packet_length: None,
            fragment: None,
        }
    }

    /// The components inside `match { … }`, each ending in `;`.
    pub fn components(&self) -> String {
        let mut s = String::new();
        let prefix = |k: Key| format!("{}/{}", k.addr(), k.prefix());
        if let Some(k) = self.destination {
            let _ = write!(s, "destination {}; ", prefix(k));
        }
        if let Some(k) = self.source {
            let _ = write!(s, "source {}; ", prefix(k));
        }
        if let Some(p) = self.protocol {
            let name = if self.v6 { "next-header" } else { "protocol" };
            let _ = write!(s, "{name} ={}; ", protocol_name(p));
        }
        match self.destination_ports.as_slice() {
            [] => {}
            [p] => {
                let _ = write!(s, "destination-port ={p}; ");
            }
            ports => {
                let list: Vec<String> = ports.iter().map(|p| format!("={p}")).collect();
                let _ = write!(s, "destination-port [ {} ]; ", list.join(" "));
            }
        }
        if let Some(p) = self.source_port {
            let _ = write!(s, "source-port ={p}; ");
        }
        if let Some(f) = self.tcp_flags {
            let _ = write!(s, "tcp-flags [ {} ]; ", tcp_flags_expr(f));
        }
        if let Some(n) = self.packet_length {
            let _ = write!(s, "packet-length ={n}; ");
        }
        if let Some(f) = self.fragment {
            let expr = match f {
                FragmentMatch::DontFragment(true) => "=dont-fragment",
                FragmentMatch::DontFragment(false) => "!dont-fragment",
                FragmentMatch::IsFragment => "=is-fragment",
                FragmentMatch::LaterFragment => "=is-fragment&!first-fragment",
            };
            let _ = write!(s, "fragment [ {expr} ]; ");
        }
        s.trim_end().to_owned()
    }

    /// `announce flow route { match { … } then { ACTION } }`.
    pub fn announce(&self, action: FlowAction) -> String {
        format!(
            "announce flow route {{ match {{ {} }} then {{ {} }} }}",
            self.components(),
            action.exabgp()
        )
    }

    /// `withdraw flow route { match { … } }`: removes the rule [`FlowRule::announce`] made,
    /// whatever its action.
    pub fn withdraw(&self) -> String {
        format!(
            "withdraw flow route {{ match {{ {} }} }}",
            self.components()
        )
    }
}

/// The announcement, with `action`, of the rule whose withdrawal is `withdraw` (as
/// [`FlowRule::withdraw`] writes it); `None` for any other text.
pub fn announce_of_withdraw(withdraw: &str, action: FlowAction) -> Option<String> {
    let components = withdraw
        .strip_prefix("withdraw flow route { match { ")?
        .strip_suffix(" } }")?;
    Some(format!(
        "announce flow route {{ match {{ {components} }} then {{ {} }} }}",
        action.exabgp()
    ))
}

/// `tcp`, `udp`, `icmp` by name (ExaBGP knows them), others as numbers.
fn protocol_name(p: u8) -> String {
    match p {
        proto::TCP => "tcp".to_owned(),
        proto::UDP => "udp".to_owned(),
        1 => "icmp".to_owned(),
        n => n.to_string(),
    }
}

/// `=syn&!fin+rst+push+ack+urg+ece+cwr`: the set bits of the mask that must be set, `&`, those
/// that must be clear.
fn tcp_flags_expr(f: TcpFlags) -> String {
    let names = |bits: u8| -> String {
        TCP_FLAG_NAMES
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join("+")
    };
    let set = f.value & f.mask;
    let clear = !f.value & f.mask;
    match (set, clear) {
        (0, 0) => String::new(),
        (s, 0) => format!("={}", names(s)),
        (0, c) => format!("!{}", names(c)),
        (s, c) => format!("={}&!{}", names(s), names(c)),
    }
}

/// The flowspec rules of a `start` event (none for other events): one for most attacks, two for
/// reflection (the amplifier's responses by source port, and their later fragments).
pub fn for_event(e: &AlertEvent) -> Vec<FlowRule> {
    if !super::carries_rules(e) {
        return Vec::new();
    }
    if super::requests::is_request_class(e.class) && e.scope.is_destination() {
        return super::requests::flow_rules(e, &super::dominant_ports(&e.top_ports));
    }
    rules(
        e.scope,
        e.key,
        e.class,
        &super::dominant_ports(&e.top_ports),
        e.signature.as_ref(),
    )
}

/// The rules for an attack of `class` on (`scope`, `key`), narrowed to the destination `ports`
/// and the signature `sig`.
pub fn rules(
    scope: Scope,
    key: Key,
    class: AttackClass,
    ports: &[u16],
    sig: Option<&Signature>,
) -> Vec<FlowRule> {
    let mut r = FlowRule::for_key(scope, key);
    if let Some(port) = class.reflection_port() {
        let mut frags = r.clone();
        frags.protocol = Some(proto::UDP);
        frags.fragment = Some(FragmentMatch::LaterFragment);
        r.protocol = Some(proto::UDP);
        r.source_port = Some(port);
        return vec![r, frags];
    }
    match class {
        AttackClass::SynFlood => {
            r.protocol = Some(proto::TCP);
            r.tcp_flags = Some(TcpFlags {
                value: 0x02,
                mask: 0x12,
            });
            r.destination_ports = ports.to_vec();
        }
        AttackClass::TcpFlood => {
            r.protocol = Some(proto::TCP);
            r.destination_ports = ports.to_vec();
        }
        AttackClass::UdpFlood => {
            r.protocol = Some(proto::UDP);
            r.destination_ports = ports.to_vec();
        }
        AttackClass::IcmpFlood => r.protocol = Some(if r.v6 { 58 } else { 1 }),
        AttackClass::FragmentFlood => r.fragment = Some(FragmentMatch::IsFragment),
        _ => {}
    }
    if let Some(sig) = sig {
        narrow(&mut r, sig);
    }
    vec![r]
}

/// Adds the signature fields flowspec can express to `r`. A rule on fragments takes no transport
/// field: later fragments carry no transport header, so a port or a TCP flag never matches them
/// (RFC 8955 §4.2.2).
fn narrow(r: &mut FlowRule, sig: &Signature) {
    let fragments = matches!(
        r.fragment,
        Some(FragmentMatch::IsFragment | FragmentMatch::LaterFragment)
    );
    let tcp = sig.proto == Some(proto::TCP) && !fragments;
    let udp = sig.proto == Some(proto::UDP) && !fragments;
    // the signature's transport fields are written for its protocol: a rule of another one would
    // match nothing
    if let (Some(p), Some(s)) = (r.protocol, sig.proto) {
        if p != s {
            return;
        }
    }
    for f in &sig.fields {
        match f.field {
            Field::IpLen(n) if !r.v6 => r.packet_length = Some(n),
            Field::Df(df) if !r.v6 && r.fragment.is_none() => {
                r.fragment = Some(FragmentMatch::DontFragment(df))
            }
            Field::TcpFlags(v) if tcp => {
                r.protocol = Some(proto::TCP);
                r.tcp_flags = Some(TcpFlags {
                    value: v,
                    mask: 0xff,
                });
            }
            Field::Sport(p) if tcp || udp => {
                r.protocol = sig.proto;
                r.source_port = Some(p);
            }
            _ => {}
        }
    }
}

/// The fields of `sig` that no flowspec component carries (for docs and tests).
pub fn omitted(sig: &Signature, v6: bool) -> Vec<&'static str> {
    sig.fields
        .iter()
        .filter(|f| match f.field {
            Field::IpLen(_) | Field::Df(_) => v6,
            Field::TcpFlags(_) => sig.proto != Some(proto::TCP),
            Field::Sport(_) => !matches!(sig.proto, Some(proto::TCP | proto::UDP)),
            _ => true,
        })
        .map(|f| f.field.name())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::SignatureField;

    /// [`rules`] for an attack on `key`, written out.
    fn rules_for(
        scope: Scope,
        key: &str,
        class: AttackClass,
        ports: &[u16],
        sig: Option<&Signature>,
    ) -> Vec<FlowRule> {
        rules(scope, key.parse().unwrap(), class, ports, sig)
    }

    /// [`rules_for`] an attack on the host 198.51.100.10.
    fn victim_rules(class: AttackClass, ports: &[u16], sig: Option<&Signature>) -> Vec<FlowRule> {
        rules_for(Scope::DstHost, "198.51.100.10", class, ports, sig)
    }

    fn sig(proto: u8, fields: &[Field]) -> Signature {
        Signature {
            fields: fields
                .iter()
                .map(|&field| SignatureField { field, share: 1.0 })
                .collect(),
            proto: Some(proto),
            packets: 1000,
        }
    }

    #[test]
    fn a_syn_flood_rule_carries_the_signature_fields_flowspec_has() {
        let s = sig(
            proto::TCP,
            &[
                Field::Ttl(64),
                Field::IpLen(40),
                Field::Df(true),
                Field::TcpOptions(0),
                Field::TcpFlags(0x02),
            ],
        );
        let r = victim_rules(AttackClass::SynFlood, &[80], Some(&s));
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].announce(FlowAction::Discard),
            "announce flow route { match { destination 198.51.100.10/32; protocol =tcp; \
             destination-port =80; tcp-flags [ =syn&!fin+rst+push+ack+urg+ece+cwr ]; \
             packet-length =40; fragment [ =dont-fragment ]; } then { discard; } }"
        );
        assert_eq!(
            r[0].withdraw(),
            "withdraw flow route { match { destination 198.51.100.10/32; protocol =tcp; \
             destination-port =80; tcp-flags [ =syn&!fin+rst+push+ack+urg+ece+cwr ]; \
             packet-length =40; fragment [ =dont-fragment ]; } }"
        );
        assert_eq!(omitted(&s, false), ["ttl", "tcp_options"]);
    }

    #[test]
    fn a_fragment_rule_takes_no_port_nor_tcp_flags_from_the_signature() {
        for (p, fields) in [
            (proto::UDP, vec![Field::IpLen(1500), Field::Sport(4444)]),
            (
                proto::TCP,
                vec![Field::IpLen(1500), Field::TcpFlags(0x18), Field::Sport(80)],
            ),
        ] {
            let s = sig(p, &fields);
            assert_eq!(
                victim_rules(AttackClass::FragmentFlood, &[], Some(&s))[0].components(),
                "destination 198.51.100.10/32; packet-length =1500; fragment [ =is-fragment ];"
            );
        }
    }

    #[test]
    fn without_a_signature_a_syn_flood_is_syn_without_ack() {
        assert_eq!(
            victim_rules(AttackClass::SynFlood, &[80, 443], None)[0].components(),
            "destination 198.51.100.10/32; protocol =tcp; destination-port [ =80 =443 ]; \
             tcp-flags [ =syn&!ack ];"
        );
    }

    #[test]
    fn reflection_gives_the_source_port_rule_and_a_later_fragments_rule() {
        let r = victim_rules(AttackClass::DnsAmplification, &[], None);
        let texts: Vec<String> = r.iter().map(FlowRule::components).collect();
        assert_eq!(
            texts,
            [
                "destination 198.51.100.10/32; protocol =udp; source-port =53;",
                "destination 198.51.100.10/32; protocol =udp; fragment [ =is-fragment&!first-fragment ];"
            ]
        );
    }

    #[test]
    fn ipv6_uses_next_header_and_leaves_out_length_and_df() {
        let s = sig(
            proto::UDP,
            &[
                Field::IpLen(540),
                Field::Sport(4444),
                Field::PayloadLen(492),
            ],
        );
        let r = rules_for(
            Scope::DstHost,
            "2001:db8::10",
            AttackClass::UdpFlood,
            &[],
            Some(&s),
        );
        assert_eq!(
            r[0].announce(FlowAction::RateLimit(125_000)),
            "announce flow route { match { destination 2001:db8::10/128; next-header =udp; \
             source-port =4444; } then { rate-limit 125000; } }"
        );
        assert_eq!(omitted(&s, true), ["ip_len", "payload_len"]);
        let icmp = rules_for(
            Scope::DstHost,
            "2001:db8::10",
            AttackClass::IcmpFlood,
            &[],
            None,
        );
        assert_eq!(
            icmp[0].components(),
            "destination 2001:db8::10/128; next-header =58;"
        );
    }

    #[test]
    fn source_scopes_match_the_source_prefix() {
        let r = rules_for(
            Scope::SrcSubnet,
            "203.0.113.0/24",
            AttackClass::FragmentFlood,
            &[],
            None,
        );
        assert_eq!(
            r[0].components(),
            "source 203.0.113.0/24; fragment [ =is-fragment ];"
        );
    }

    #[test]
    fn a_signature_of_another_protocol_is_not_applied() {
        // a TCP flood key whose sampled packets were UDP-dominated: the UDP fields would make a
        // TCP rule match nothing
        let s = sig(proto::UDP, &[Field::Sport(53), Field::IpLen(100)]);
        assert_eq!(
            victim_rules(AttackClass::TcpFlood, &[], Some(&s))[0].components(),
            "destination 198.51.100.10/32; protocol =tcp;"
        );
    }

    #[test]
    fn flag_expressions() {
        let e = |value, mask| tcp_flags_expr(TcpFlags { value, mask });
        assert_eq!(e(0x10, 0xff), "=ack&!fin+syn+rst+push+urg+ece+cwr");
        assert_eq!(e(0x00, 0xff), "!fin+syn+rst+push+ack+urg+ece+cwr");
        assert_eq!(e(0x18, 0x18), "=push+ack");
    }

    #[test]
    fn actions_parse_with_their_unit_named() {
        assert_eq!(FlowAction::parse("discard"), Ok(FlowAction::Discard));
        assert_eq!(
            FlowAction::parse("rate-limit:9600"),
            Ok(FlowAction::RateLimit(9600))
        );
        assert!(FlowAction::parse("rate-limit:0")
            .unwrap_err()
            .contains("bytes per second"));
        assert!(FlowAction::parse("drop").unwrap_err().contains("discard"));
    }
}
