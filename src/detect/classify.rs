//! Classification: what an alert is called ([`classify`]: SYN, UDP, ICMP, fragment and reflection
//! floods by what dominates the key's traffic, request floods by their signal), and the checks that
//! keep ordinary traffic from being named a flood: completed handshakes (a flash crowd), a crowd of
//! ordinary visitors, a subnet whose traffic is one host's.

use crate::alert::AttackClass;
use crate::baseline::Baseline;
use crate::key::Scope;
use crate::window::{Signal, COUNTERS};

use super::eval::Reading;
use super::key_state::KeyState;

/// Names what dominates a key's traffic, given the signal that crossed its threshold.
///
/// A request signal names its own class (`http_flood`, `connection_flood`, `slowloris`). For packet
/// signals, cut-offs in order: reflection when at least half the UDP packets come from amplifier ports and
/// reflection traffic (those plus non-first fragments) is at least half of all packets (the port is
/// the majority amplifier port); `fragment_flood` when fragments are at least half of the packets;
/// else the crossed signal names the class, and a packet- or byte-rate alert takes the class of
/// whichever of SYN / other TCP / UDP / ICMP is at least half of the packets, else `traffic_flood`.
pub fn classify(signal: Signal, est: &[f64; COUNTERS], amp_port: u16) -> AttackClass {
    match signal {
        // connections, not packets: what they are does not depend on the packet mix
        Signal::HttpRequests => return AttackClass::HttpFlood,
        Signal::Handshakes => return AttackClass::ConnectionFlood,
        Signal::IncompleteHeads => return AttackClass::Slowloris,
        _ => {}
    }
    let get = |s: Signal| est[s.index()];
    let total = get(Signal::Packets).max(1.0);
    let reflection = get(Signal::AmpPort) >= 0.5 * get(Signal::Udp).max(1.0)
        && get(Signal::Reflection) >= 0.5 * total;
    if let Some(c) = reflection
        .then(|| AttackClass::reflection_of_port(amp_port))
        .flatten()
    {
        return c;
    }
    if get(Signal::Fragment) >= 0.5 * total {
        return AttackClass::FragmentFlood;
    }
    match signal {
        Signal::Syn => AttackClass::SynFlood,
        Signal::TcpOther | Signal::SynAck => AttackClass::TcpFlood,
        Signal::Icmp => AttackClass::IcmpFlood,
        Signal::Udp | Signal::Reflection => AttackClass::UdpFlood,
        _ => {
            let shares = [
                (Signal::Syn, AttackClass::SynFlood),
                (Signal::TcpOther, AttackClass::TcpFlood),
                (Signal::Udp, AttackClass::UdpFlood),
                (Signal::Icmp, AttackClass::IcmpFlood),
            ];
            shares
                .iter()
                .find(|(s, _)| get(*s) >= 0.5 * total)
                .map(|(_, c)| *c)
                .unwrap_or(if get(Signal::Syn) + get(Signal::TcpOther) >= 0.5 * total {
                    AttackClass::TcpFlood
                } else {
                    AttackClass::TrafficFlood
                })
        }
    }
}

/// The class of an alert of `st` on `signal` read as `r`.
pub(super) fn class_of(st: &KeyState, r: &Reading, signal: Signal) -> AttackClass {
    let class = classify(signal, &r.est, st.amp_vote.0);
    if class == AttackClass::SynFlood && handshakes_complete(&r.rates, &st.baseline) {
        AttackClass::FlashCrowd
    } else {
        class
    }
}

/// Share of a subnet key's traffic that one host must carry for the subnet alert to be left to that
/// host's own alert.
const ONE_HOST_SHARE: f64 = 0.8;

/// True for a subnet key whose traffic is one host's: its alert would repeat that host's own, so it
/// waits (pending) until the traffic spreads. Carpet bombing and botnet ranges spread by nature.
pub(super) fn one_host_carries_it(scope: Scope, st: &KeyState) -> bool {
    scope.is_subnet()
        && st
            .evidence
            .as_ref()
            .is_some_and(|e| e.top_host_share() >= ONE_HOST_SHARE)
}

/// Handshake-aware SYN check: real clients that open connections also complete them, so their ACKs
/// and data (the `tcp_other` signal) grow with their SYNs; a SYN flood's spoofed sources never answer
/// the SYN-ACK. True when the growth of other TCP over its baseline is at least half the growth of
/// SYNs over theirs. (A SYN flood mixed with an equal ACK flood would pass as a flash crowd; the ACK
/// flood part still crosses `tcp_other` thresholds on its own.)
pub(super) fn handshakes_complete(rates: &[f64; COUNTERS], baseline: &Baseline) -> bool {
    let excess = |s: Signal| (rates[s.index()] - baseline.mean(s)).max(0.0);
    let syn = excess(Signal::Syn);
    syn > 0.0 && excess(Signal::TcpOther) >= 0.5 * syn
}

/// Whether a destination's request signal `signal` comes from a crowd of ordinary visitors rather
/// than a flood ([`crate::requests::clients::Clients::looks_like_flood`]): such a key does not
/// start an alert on it. Unknown (no clients counted) is not a crowd.
pub(super) fn request_crowd(scope: Scope, st: &KeyState, signal: Signal, now: u64) -> bool {
    let which = match signal {
        Signal::HttpRequests => 0,
        Signal::Handshakes => 1,
        _ => return false,
    };
    scope.is_destination()
        && st
            .evidence
            .as_ref()
            .and_then(|e| e.clients.as_deref())
            .is_some_and(|c| !c.looks_like_flood(which, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_uses_dominant_traffic_for_volume_signals() {
        let mut est = [0.0; COUNTERS];
        est[Signal::Packets.index()] = 100.0;
        est[Signal::Icmp.index()] = 80.0;
        assert_eq!(classify(Signal::Packets, &est, 0), AttackClass::IcmpFlood);
        est[Signal::Icmp.index()] = 30.0;
        est[Signal::Udp.index()] = 30.0;
        assert_eq!(classify(Signal::Bytes, &est, 0), AttackClass::TrafficFlood);
    }
}
