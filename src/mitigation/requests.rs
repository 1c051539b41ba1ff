//! Rules for request floods (`http_flood`, `connection_flood`, `slowloris`) at a destination: they
//! match the clients the alert names, never the victim as a whole.
//!
//! A request flood is a site's own kind of traffic (TCP to its web ports, with the don't-fragment
//! bit, like every visitor's): a rule on the victim's address, port or header fields would take
//! the site offline for its attackers. What separates the attack is who sends it, and here that is
//! known for sure: every client an alert names completed a TCP handshake, so its address is its
//! own. The rules drop the traffic of the heaviest clients — those that sent a good share of what
//! the heaviest sent, past one visit's worth, not the ordinary visitors listed after them — to the
//! victim (an nft set, a BPF expression,
//! one flowspec rule per client) and the event adds what a web server can do itself: `deny` lines
//! and a request or connection limit for nginx. No blackhole is ever announced for these classes.

use std::net::IpAddr;

use serde::Serialize;

use super::flowspec::FlowRule;
use crate::alert::{AlertEvent, AttackClass, ClientCount};
use crate::decode::proto;
use crate::key::Key;
use crate::requests::clients::{BLOCK_SHARE, PERSIST_MIN};

/// Flowspec rules (one per client) an alert names at most: BGP routes are scarcer than an nft
/// set's entries, which name every client of the event's `requests.block`.
pub const MAX_CLIENTS: usize = 16;

/// What nginx can do about a request flood itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Nginx {
    /// `deny ADDR;` per client named (a `server` or `location` block).
    pub deny: Vec<String>,
    /// A limit per client address: the zone for the `http` block, then its use for the `server`
    /// or `location` block (requests a second for floods of requests, connections at once for
    /// floods of connections and slowloris, with a short `client_header_timeout` for slowloris).
    pub limit: Vec<String>,
}

/// True for the classes these rules are for.
pub fn is_request_class(class: AttackClass) -> bool {
    matches!(
        class,
        AttackClass::HttpFlood | AttackClass::ConnectionFlood | AttackClass::Slowloris
    )
}

/// The clients to block of a destination's request alert, heaviest first: its `requests.block`
/// ([`crate::requests::clients::Clients::to_block`]); an event without that list (made by hand)
/// names those of its listed clients that pass the same test.
fn clients(e: &AlertEvent) -> Vec<IpAddr> {
    let Some(r) = e.requests.as_deref() else {
        return Vec::new();
    };
    if !r.block.is_empty() {
        return r.block.clone();
    }
    let (count, visit): (fn(&ClientCount) -> u32, u32) = match e.class {
        AttackClass::ConnectionFlood => (|c| c.connections, PERSIST_MIN[1]),
        AttackClass::Slowloris => (|c| c.held_s, PERSIST_MIN[2]),
        _ => (|c| c.requests, PERSIST_MIN[0]),
    };
    let top = r.clients.iter().map(count).max().unwrap_or(0);
    let least = (f64::from(top) * BLOCK_SHARE).max(f64::from(visit));
    r.clients
        .iter()
        .filter(|c| f64::from(count(c)) >= least)
        .map(|c| c.ip)
        .collect()
}

/// The nft rules and BPF expression dropping the named clients' TCP to the victim (`e.key`, on
/// the dominant destination `ports` when known). Empty when no client is named.
pub fn firewall(e: &AlertEvent, ports: &[u16]) -> (Vec<String>, String) {
    let all = clients(e);
    if all.is_empty() {
        return (Vec::new(), String::new());
    }
    let v6 = matches!(e.key, Key::V6 { .. });
    let family = if v6 { "ip6" } else { "ip" };
    let same: Vec<String> = all
        .iter()
        .filter(|ip| ip.is_ipv6() == v6)
        .map(|ip| ip.to_string())
        .collect();
    if same.is_empty() {
        return (Vec::new(), String::new());
    }
    let (nft_ports, bpf_ports) = match super::port_match("tcp", ports) {
        (nft, _) if nft.is_empty() => (String::new(), String::new()),
        (nft, bpf) => (format!(" {nft}"), format!(" and {bpf}")),
    };
    let kind = if e.key.is_host() { "host" } else { "net" };
    let nft = format!(
        "{family} saddr {{ {} }} {family} daddr {} meta l4proto tcp{nft_ports} drop",
        same.join(", "),
        e.key
    );
    let srcs: Vec<String> = same.iter().map(|a| format!("src host {a}")).collect();
    let bpf = format!(
        "dst {kind} {} and tcp{bpf_ports} and ({})",
        e.key,
        srcs.join(" or ")
    );
    (vec![nft], bpf)
}

/// One flowspec rule per named client: its address to the victim, TCP, the dominant ports.
pub fn flow_rules(e: &AlertEvent, ports: &[u16]) -> Vec<FlowRule> {
    let v6 = matches!(e.key, Key::V6 { .. });
    clients(e)
        .into_iter()
        .filter(|ip| ip.is_ipv6() == v6)
        .take(MAX_CLIENTS)
        .map(|ip| FlowRule {
            v6,
            destination: Some(e.key),
            source: Some(Key::host(ip)),
            protocol: Some(proto::TCP),
            destination_ports: ports.to_vec(),
            source_port: None,
            tcp_flags: None,
            packet_length: None,
            fragment: None,
        })
        .collect()
}

/// The nginx snippet of a request alert (None without named clients).
pub fn nginx(e: &AlertEvent) -> Option<Nginx> {
    let all = clients(e);
    if all.is_empty() {
        return None;
    }
    let deny = all.iter().map(|ip| format!("deny {ip};")).collect();
    let mut limit = Vec::new();
    let mut line = |s: &str| limit.push(s.to_owned());
    match e.class {
        AttackClass::HttpFlood => {
            // a visitor loads a page and its assets in a burst; ten a second with a burst of
            // twenty lets that through and holds a flood's clients to it
            line("limit_req_zone $binary_remote_addr zone=floodwatch_req:10m rate=10r/s;");
            line("limit_req zone=floodwatch_req burst=20 nodelay;");
        }
        _ => {
            line("limit_conn_zone $binary_remote_addr zone=floodwatch_conn:10m;");
            line("limit_conn floodwatch_conn 8;");
            if e.class == AttackClass::Slowloris {
                line("client_header_timeout 10s;");
            }
        }
    }
    Some(Nginx { deny, limit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{ClientCount, EventKind, RequestEvidence};
    use crate::key::Scope;

    fn event(class: AttackClass, clients: &[&str]) -> AlertEvent {
        let mut e = crate::mitigation::bgp::tests::event(
            EventKind::Start,
            "dst_host/198.51.100.10/http_flood/1",
            Scope::DstHost,
            "198.51.100.10",
            class,
        );
        e.requests = Some(Box::new(RequestEvidence {
            verified_sources: true,
            clients: clients
                .iter()
                .map(|ip| ClientCount {
                    ip: ip.parse().unwrap(),
                    requests: 40,
                    connections: 12,
                    held_s: 30,
                })
                .collect(),
            top_share: 1.0,
            clients_seen: clients.len() as u64,
            block: Vec::new(),
            tls_requests_estimated: true,
            paths: Vec::new(),
            hosts: Vec::new(),
            user_agents: Vec::new(),
            fingerprints: Vec::new(),
        }));
        e
    }

    #[test]
    fn a_block_list_is_named_whole_but_flowspec_keeps_to_its_cap() {
        let mut e = event(AttackClass::HttpFlood, &["203.0.113.1"]);
        let block: Vec<IpAddr> = (0..90u32)
            .map(|i| std::net::Ipv4Addr::from(0xcb00_7100 + i).into())
            .collect();
        if let Some(r) = e.requests.as_mut() {
            r.block = block.clone();
        }
        let (nft, bpf) = firewall(&e, &[80]);
        for ip in &block {
            assert!(nft[0].contains(&format!("{ip},")) || nft[0].contains(&format!("{ip} }}")));
            assert!(
                bpf.contains(&format!("src host {ip})"))
                    || bpf.contains(&format!("src host {ip} "))
            );
        }
        let deny = nginx(&e).map(|n| n.deny).unwrap_or_default();
        assert_eq!(deny.len(), 90);
        assert_eq!(deny[89], "deny 203.0.113.89;");
        assert_eq!(flow_rules(&e, &[80]).len(), MAX_CLIENTS);
    }

    #[test]
    fn rules_name_the_clients_never_the_victim_alone() {
        let mut e = event(
            AttackClass::HttpFlood,
            &["203.0.113.20", "203.0.113.78", "100.64.0.9"],
        );
        // an ordinary visitor listed after the flood's clients is not blocked
        if let Some(r) = e.requests.as_mut() {
            r.clients[2].requests = 6;
        }
        let (nft, bpf) = firewall(&e, &[80]);
        assert_eq!(
            nft,
            vec![
                "ip saddr { 203.0.113.20, 203.0.113.78 } ip daddr 198.51.100.10 meta l4proto tcp tcp dport 80 drop"
            ]
        );
        assert_eq!(
            bpf,
            "dst host 198.51.100.10 and tcp and dst port 80 and (src host 203.0.113.20 or src host 203.0.113.78)"
        );
        let rules = flow_rules(&e, &[80, 443]);
        assert_eq!(rules.len(), 2);
        assert!(rules
            .iter()
            .all(|r| r.source.is_some() && r.destination == Some(e.key)));
        let n = nginx(&e).unwrap();
        assert_eq!(n.deny, vec!["deny 203.0.113.20;", "deny 203.0.113.78;"]);
        assert!(n.limit[0].starts_with("limit_req_zone"));
        // no clients: no rule at all (a rule on the victim alone would take the site down)
        let none = event(AttackClass::HttpFlood, &[]);
        assert_eq!(firewall(&none, &[80]), (Vec::new(), String::new()));
        assert!(flow_rules(&none, &[80]).is_empty());
        assert!(nginx(&none).is_none());
        let slow = event(AttackClass::Slowloris, &["203.0.113.5"]);
        assert!(nginx(&slow)
            .unwrap()
            .limit
            .iter()
            .any(|l| l.starts_with("client_header_timeout")));
    }
}
