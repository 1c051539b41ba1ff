//! Mitigation hints: the nftables rules and the BPF filter expression that match an alert's attack.
//!
//! floodwatch never applies them: they are suggestions written into `start` events so an operator
//! (or an `--on-alert` script) has a rule to review and paste. The match is built from the alert
//! alone: the key's address or prefix on the side of its scope (`daddr` for a victim, `saddr` for
//! an attacker), narrowed by what the class says dominates — TCP SYN without ACK, a protocol, the
//! amplifier's source port — and by the destination ports when a few of them carry the attack.

pub mod bgp;
pub mod flowspec;
pub mod requests;

use serde::Serialize;

use crate::alert::{AlertEvent, AttackClass, PortCount};
use crate::key::{Key, Scope};
use crate::signature::Signature;

/// The suggested rules of one alert (the `mitigation` field of a `start` event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mitigation {
    /// nftables rules (each a full rule body ending in `drop`, for an `inet` family table, e.g.
    /// `nft add rule inet filter input <rule>`). Reflection gets a second rule for the non-first
    /// fragments of the large responses, which carry no port.
    pub nft: Vec<String>,
    /// The same match as a pcap/BPF filter expression (`tcpdump`, `--filter`).
    pub bpf: String,
    /// Flowspec rules (RFC 8955/8956) as ExaBGP API commands (`announce flow route { … }`), the
    /// ones `--exabgp-pipe` announces: with its `--flowspec-action` when it is given, else
    /// `discard` ([`flowspec_lines`]). Empty only where [`suggest`] is used alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flowspec: Vec<String>,
    /// Request floods at a destination: what nginx can do itself ([`requests::nginx`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nginx: Option<requests::Nginx>,
}

/// At most this many destination ports go into a rule.
const MAX_PORTS: usize = 4;
/// Whether event `e` carries rules: every `start`; the `update`s of request floods at a
/// destination too, since their rules name clients and a flood's clients are not all past a
/// visit's worth when it starts (the update's rules name those counted by then).
pub fn carries_rules(e: &AlertEvent) -> bool {
    match e.event {
        crate::alert::EventKind::Start => true,
        crate::alert::EventKind::Update => {
            requests::is_request_class(e.class) && e.scope.is_destination() && e.requests.is_some()
        }
        crate::alert::EventKind::End => false,
    }
}

/// The named ports must cover at least this share of the counted packets.
const PORT_COVERAGE: f64 = 0.8;
/// A port under this share of the counted packets is never named.
const PORT_MIN_SHARE: f64 = 0.1;

/// The suggestion for `e`, or `None` for events that carry none: `end`, and `update` but those of
/// request floods at a destination ([`carries_rules`]).
pub fn for_event(e: &AlertEvent) -> Option<Mitigation> {
    carries_rules(e).then(|| {
        if requests::is_request_class(e.class) && e.scope.is_destination() {
            // the clients, never the victim: its own kind of traffic is the attack's
            let (nft, bpf) = requests::firewall(e, &dominant_ports(&e.top_ports));
            return Mitigation {
                nft,
                bpf,
                flowspec: flowspec_lines(e, flowspec::FlowAction::Discard),
                nginx: requests::nginx(e),
            };
        }
        let m = suggest(e.scope, e.key, e.class, &e.top_ports);
        let mut m = match &e.signature {
            Some(sig) => with_signature(m, sig, Addr::new(e.scope, e.key).v6),
            None => m,
        };
        m.flowspec = flowspec_lines(e, flowspec::FlowAction::Discard);
        m
    })
}

/// The flowspec rules of `e` with `action`, as `--exabgp-pipe` announces them.
pub fn flowspec_lines(e: &AlertEvent, action: flowspec::FlowAction) -> Vec<String> {
    flowspec::for_event(e)
        .iter()
        .map(|r| r.announce(action))
        .collect()
}

/// `m` narrowed to the packets that carry `sig`: its match is added to the BPF filter and to the
/// first nft rule (a reflection's second rule, for non-first fragments, has no header to match).
pub fn with_signature(mut m: Mitigation, sig: &Signature, v6: bool) -> Mitigation {
    if let Some(bpf) = sig.bpf(v6).filter(|b| !b.is_empty()) {
        m.bpf = if m.bpf.is_empty() {
            bpf
        } else {
            format!("{} and {bpf}", m.bpf)
        };
    }
    if let (Some(nft), Some(rule)) = (sig.nft(v6).filter(|n| !n.is_empty()), m.nft.first_mut()) {
        if let Some(head) = rule.strip_suffix(" drop") {
            *rule = format!("{head} {nft} drop");
        }
    }
    m
}

/// The rules matching an attack of `class` on (`scope`, `key`), whose heaviest destination ports
/// are `top_ports`.
pub fn suggest(scope: Scope, key: Key, class: AttackClass, top_ports: &[PortCount]) -> Mitigation {
    let addr = Addr::new(scope, key);
    let ports = dominant_ports(top_ports);
    if let Some(port) = class.reflection_port() {
        return reflection(&addr, port);
    }
    let (nft, bpf) = match class {
        AttackClass::SynFlood => {
            let (nft_p, bpf_p) = port_match("tcp", &ports);
            let bpf_syn = if addr.v6 {
                "ip6[6] == 6 and ip6[53] & 0x12 == 0x02"
            } else {
                "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"
            };
            (
                join(&[&nft_p, "tcp flags & (syn|ack) == syn"]),
                join_and(&["tcp", &bpf_p, bpf_syn]),
            )
        }
        AttackClass::TcpFlood | AttackClass::UdpFlood => {
            let proto = if class == AttackClass::TcpFlood {
                "tcp"
            } else {
                "udp"
            };
            let (nft_p, bpf_p) = port_match(proto, &ports);
            let nft = if nft_p.is_empty() {
                format!("meta l4proto {proto}")
            } else {
                nft_p
            };
            (nft, join_and(&[proto, &bpf_p]))
        }
        AttackClass::IcmpFlood => {
            if addr.v6 {
                ("meta l4proto ipv6-icmp".to_owned(), "icmp6".to_owned())
            } else {
                ("meta l4proto icmp".to_owned(), "icmp".to_owned())
            }
        }
        AttackClass::FragmentFlood => {
            if addr.v6 {
                ("exthdr frag exists".to_owned(), "ip6[6] == 44".to_owned())
            } else {
                (
                    "ip frag-off & 0x3fff != 0".to_owned(),
                    "ip[6:2] & 0x3fff != 0".to_owned(),
                )
            }
        }
        _ => (String::new(), String::new()),
    };
    Mitigation {
        nft: vec![format!("{} drop", join(&[&addr.nft, &nft]))],
        bpf: join_and(&[&addr.bpf, &bpf]),
        flowspec: Vec::new(),
        nginx: None,
    }
}

/// Reflection: what the amplifiers send from their service port, and the non-first fragments of
/// the responses too large for one packet.
fn reflection(addr: &Addr, port: u16) -> Mitigation {
    let (nft_frag, bpf_frag) = if addr.v6 {
        (
            "frag frag-off != 0",
            "ip6[6] == 44 and ip6[42:2] & 0xfff8 != 0",
        )
    } else {
        ("ip frag-off & 0x1fff != 0", "ip[6:2] & 0x1fff != 0")
    };
    Mitigation {
        nft: vec![
            format!("{} udp sport {port} drop", addr.nft),
            format!("{} {nft_frag} drop", addr.nft),
        ],
        bpf: format!("{} and (udp src port {port} or ({bpf_frag}))", addr.bpf),
        flowspec: Vec::new(),
        nginx: None,
    }
}

/// The address part of a match, in both syntaxes.
struct Addr {
    nft: String,
    bpf: String,
    v6: bool,
}

impl Addr {
    fn new(scope: Scope, key: Key) -> Addr {
        let v6 = matches!(key, Key::V6 { .. });
        let nft_dir = if scope.is_destination() {
            "daddr"
        } else {
            "saddr"
        };
        let bpf_dir = if scope.is_destination() { "dst" } else { "src" };
        let family = if v6 { "ip6" } else { "ip" };
        let bpf_kind = if key.is_host() { "host" } else { "net" };
        Addr {
            // Key's Display is a bare address for hosts and `addr/len` for prefixes: both syntaxes
            // take it as is.
            nft: format!("{family} {nft_dir} {key}"),
            bpf: format!("{bpf_dir} {bpf_kind} {key}"),
            v6,
        }
    }
}

/// The destination ports worth naming: the fewest heaviest ports (at most [`MAX_PORTS`]) that cover
/// [`PORT_COVERAGE`] of the counted packets, or none when the attack is spread over many ports.
pub(crate) fn dominant_ports(top: &[PortCount]) -> Vec<u16> {
    let total: u64 = top.iter().map(|p| p.packets).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut sorted: Vec<PortCount> = top.to_vec();
    sorted.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.port.cmp(&b.port)));
    let mut covered = 0u64;
    let mut ports = Vec::new();
    for p in sorted.iter().take(MAX_PORTS) {
        if (p.packets as f64) < PORT_MIN_SHARE * total as f64 {
            break;
        }
        ports.push(p.port);
        covered += p.packets;
        if covered as f64 >= PORT_COVERAGE * total as f64 {
            ports.sort_unstable();
            return ports;
        }
    }
    Vec::new()
}

/// `tcp dport 80` / `tcp dport { 80, 443 }` and `dst port 80` / `(dst port 80 or dst port 443)`;
/// empty strings when there are no ports to name.
fn port_match(proto: &str, ports: &[u16]) -> (String, String) {
    match ports {
        [] => (String::new(), String::new()),
        [p] => (format!("{proto} dport {p}"), format!("dst port {p}")),
        _ => {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let bpf: Vec<String> = ports.iter().map(|p| format!("dst port {p}")).collect();
            (
                format!("{proto} dport {{ {} }}", list.join(", ")),
                format!("({})", bpf.join(" or ")),
            )
        }
    }
}

/// Joins the non-empty parts with spaces (nftables matches are juxtaposed).
fn join(parts: &[&str]) -> String {
    let v: Vec<&str> = parts.iter().copied().filter(|s| !s.is_empty()).collect();
    v.join(" ")
}

/// Joins the non-empty parts with ` and ` (BPF).
fn join_and(parts: &[&str]) -> String {
    let v: Vec<&str> = parts.iter().copied().filter(|s| !s.is_empty()).collect();
    v.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`suggest`] says for an alert on `key` whose top ports are (port, packets) `ports`.
    fn suggest_for(
        scope: Scope,
        key: &str,
        class: AttackClass,
        ports: &[(u16, u64)],
    ) -> Mitigation {
        let ports: Vec<PortCount> = ports
            .iter()
            .map(|&(port, packets)| PortCount { port, packets })
            .collect();
        suggest(scope, key.parse().unwrap(), class, &ports)
    }

    /// [`suggest_for`] an attack on the host 198.51.100.10.
    fn suggest_for_victim(class: AttackClass, ports: &[(u16, u64)]) -> Mitigation {
        suggest_for(Scope::DstHost, "198.51.100.10", class, ports)
    }

    #[test]
    fn syn_flood_on_one_port_names_victim_port_and_flags() {
        let m = suggest_for_victim(AttackClass::SynFlood, &[(80, 48_100), (443, 20)]);
        assert_eq!(
            m.nft,
            ["ip daddr 198.51.100.10 tcp dport 80 tcp flags & (syn|ack) == syn drop"]
        );
        assert_eq!(
            m.bpf,
            "dst host 198.51.100.10 and tcp and dst port 80 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"
        );
    }

    #[test]
    fn dns_amplification_matches_source_port_and_later_fragments() {
        let m = suggest_for_victim(AttackClass::DnsAmplification, &[(40_000, 10)]);
        assert_eq!(
            m.nft,
            [
                "ip daddr 198.51.100.10 udp sport 53 drop",
                "ip daddr 198.51.100.10 ip frag-off & 0x1fff != 0 drop"
            ]
        );
        assert_eq!(
            m.bpf,
            "dst host 198.51.100.10 and (udp src port 53 or (ip[6:2] & 0x1fff != 0))"
        );
    }

    #[test]
    fn source_subnet_uses_saddr_and_the_prefix() {
        let m = suggest_for(
            Scope::SrcSubnet,
            "203.0.113.0/24",
            AttackClass::UdpFlood,
            &[(1, 5), (2, 5), (3, 5), (4, 5), (5, 5), (6, 5)],
        );
        // Ports spread evenly: none is named.
        assert_eq!(m.nft, ["ip saddr 203.0.113.0/24 meta l4proto udp drop"]);
        assert_eq!(m.bpf, "src net 203.0.113.0/24 and udp");
        let m = suggest_for(
            Scope::SrcHost,
            "203.0.113.9",
            AttackClass::TrafficFlood,
            &[],
        );
        assert_eq!(m.nft, ["ip saddr 203.0.113.9 drop"]);
        assert_eq!(m.bpf, "src host 203.0.113.9");
    }

    #[test]
    fn ipv6_variants_use_ip6_and_fixed_offsets() {
        let m = suggest_for(
            Scope::DstHost,
            "2001:db8:100::10",
            AttackClass::SynFlood,
            &[(80, 100)],
        );
        assert_eq!(
            m.nft,
            ["ip6 daddr 2001:db8:100::10 tcp dport 80 tcp flags & (syn|ack) == syn drop"]
        );
        assert!(m.bpf.contains("ip6[53] & 0x12 == 0x02"), "{}", m.bpf);
        let m = suggest_for(
            Scope::DstSubnet,
            "2001:db8:100::/64",
            AttackClass::NtpAmplification,
            &[],
        );
        assert_eq!(
            m.nft,
            [
                "ip6 daddr 2001:db8:100::/64 udp sport 123 drop",
                "ip6 daddr 2001:db8:100::/64 frag frag-off != 0 drop"
            ]
        );
        assert!(m.bpf.starts_with("dst net 2001:db8:100::/64 and"));
        let m = suggest_for(Scope::DstHost, "2001:db8::1", AttackClass::IcmpFlood, &[]);
        assert_eq!(m.nft, ["ip6 daddr 2001:db8::1 meta l4proto ipv6-icmp drop"]);
        assert_eq!(m.bpf, "dst host 2001:db8::1 and icmp6");
    }

    #[test]
    fn a_few_heavy_ports_become_a_set() {
        let m = suggest_for_victim(AttackClass::TcpFlood, &[(443, 500), (80, 450), (22, 3)]);
        assert_eq!(m.nft, ["ip daddr 198.51.100.10 tcp dport { 80, 443 } drop"]);
        assert_eq!(
            m.bpf,
            "dst host 198.51.100.10 and tcp and (dst port 80 or dst port 443)"
        );
    }

    #[test]
    fn fragment_flood_matches_any_fragment() {
        let m = suggest_for_victim(AttackClass::FragmentFlood, &[]);
        assert_eq!(
            m.nft,
            ["ip daddr 198.51.100.10 ip frag-off & 0x3fff != 0 drop"]
        );
        assert_eq!(m.bpf, "dst host 198.51.100.10 and ip[6:2] & 0x3fff != 0");
    }
}
