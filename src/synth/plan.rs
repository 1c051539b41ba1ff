//! The plan of one capture: options checked ([`capture_end`], `Plan::new`) and turned into the
//! generators that [`super::write_pcap`] merges by time — background, flash crowd, legitimate
//! clients, attack — and into the labels of the alerts they should raise.

use std::net::{IpAddr, Ipv4Addr};

use super::address::Victim;
use super::attack::{AttackGen, AttackKind};
use super::background::{Mode, SessionGen};
use super::clients::{day_hosts, ClientGen, LegitMix, CONN_PACKETS, DAY_PACKETS};
use super::rng::Rng;
use super::schedule::Profile;
use super::FLOOR_SOURCES_MAX;
use super::{Scenario, SynthError, SynthOptions, DEFAULT_SOURCES, FLOOR_SOURCES_DEFAULT};
use crate::alert::AttackClass;
use crate::key::{Key, Scope};
use crate::time::Timestamp;

/// The number of sources of sources-at-floor.
pub(super) fn floor_sources(opts: &SynthOptions) -> u64 {
    if opts.sources == DEFAULT_SOURCES {
        FLOOR_SOURCES_DEFAULT
    } else {
        opts.sources
    }
}

/// Highest rate accepted for either stream.
const MAX_PPS: u64 = 100_000_000;
/// Mean packets per background session (pattern of 10 sessions: 6 TCP × 10, 3 DNS × 2, 1 ping × 2).
const PACKETS_PER_SESSION: f64 = 6.8;
/// Packets of one flash-crowd (TCP) session.
const TCP_SESSION_PACKETS: f64 = 10.0;

pub(super) struct Plan {
    pub(super) end: u64,
    pub(super) background: Option<SessionGen>,
    pub(super) extra: Option<SessionGen>,
    pub(super) legit: Option<ClientGen>,
    pub(super) attack: Option<AttackGen>,
    pub(super) labels: Vec<PlanLabel>,
    /// Attack sources whose packets are told apart ([`AttackGen::last_source`] is below this).
    pub(super) numbered_sources: usize,
}

/// An expected alert; its times are those of the attack packets (of numbered source `source` only,
/// when set).
pub(super) struct PlanLabel {
    pub(super) scope: Scope,
    pub(super) key: Key,
    pub(super) class: AttackClass,
    pub(super) source: Option<usize>,
}

/// The end of the capture (ns), checked: a capture lasts a while and ends before pcap's 32-bit
/// seconds run out.
pub(super) fn capture_end(opts: &SynthOptions) -> Result<u64, SynthError> {
    let bad = |m: &str| Err(SynthError::BadOptions(m.into()));
    if opts.duration.is_zero() {
        return bad("duration must be greater than zero");
    }
    let dur_ns = u64::try_from(opts.duration.as_nanos()).unwrap_or(u64::MAX);
    match opts.start.as_nanos().checked_add(dur_ns) {
        Some(e) if e / Timestamp::NANOS_PER_SEC <= u64::from(u32::MAX) => Ok(e),
        _ => bad("the capture must end before 2106-02-07 (pcap seconds are 32-bit)"),
    }
}

impl Plan {
    pub(super) fn new(scenario: Scenario, opts: &SynthOptions) -> Result<Plan, SynthError> {
        let bad = |m: String| Err(SynthError::BadOptions(m));
        let end = capture_end(opts)?;
        let start = opts.start.as_nanos();
        for (name, v) in [
            ("attack_pps", opts.attack_pps),
            ("background_pps", opts.background_pps),
        ] {
            if v > MAX_PPS {
                return bad(format!("{name} {v} is above the maximum {MAX_PPS}"));
            }
        }
        let victim_ip = opts.victim.unwrap_or_else(|| scenario.default_victim());
        let victim = match victim_ip {
            IpAddr::V4(a) => Victim::V4(u32::from(a)),
            IpAddr::V6(a) => Victim::V6(u128::from(a)),
        };
        let needs_attack = !matches!(
            scenario,
            Scenario::Benign | Scenario::BenignGrowth | Scenario::BenignDay
        );
        let v4_only = matches!(
            scenario,
            Scenario::UdpFlood
                | Scenario::DnsReflection
                | Scenario::IcmpFlood
                | Scenario::CarpetBombing
                | Scenario::SourcesAtFloor
                | Scenario::LearnedFloor
                | Scenario::SigSynFlood
                | Scenario::SigUdpFlood
                | Scenario::SigAckFlood
                | Scenario::BenignDay
        );
        if v4_only && victim_ip.is_ipv6() {
            return bad(format!("{scenario} needs an IPv4 victim, got {victim_ip}"));
        }
        if scenario == Scenario::Ipv6SynFlood && victim_ip.is_ipv4() {
            return bad(format!("{scenario} needs an IPv6 victim, got {victim_ip}"));
        }
        if needs_attack {
            if opts.attack_pps == 0 {
                return bad(format!("{scenario} needs attack_pps > 0"));
            }
            if opts.attack_duration.is_zero() {
                return bad(format!("{scenario} needs attack_duration > 0"));
            }
            if opts.attack_start >= opts.duration {
                return bad(format!(
                    "attack_start {:?} is not before the capture end {:?}",
                    opts.attack_start, opts.duration
                ));
            }
        }
        if scenario == Scenario::SpoofedSources && !(1..=1u64 << 31).contains(&opts.sources) {
            return bad(format!("sources must be in 1..=2^31, got {}", opts.sources));
        }
        if scenario == Scenario::SourcesAtFloor
            && !(1..=FLOOR_SOURCES_MAX).contains(&floor_sources(opts))
        {
            return bad(format!(
                "{scenario} needs sources in 1..={FLOOR_SOURCES_MAX}, got {}",
                opts.sources
            ));
        }

        let dur = opts.duration.as_secs_f64();
        let att_start = opts.attack_start.as_secs_f64();
        let att_len = opts.attack_duration.as_secs_f64();
        let att_clip = att_len.min(dur - att_start).max(0.0);
        let att_start_ns =
            start.saturating_add(u64::try_from(opts.attack_start.as_nanos()).unwrap_or(u64::MAX));
        let seed = opts.seed;

        // The victim-centred scenarios replace the background with their legit clients, so that every
        // packet is theirs, the victim's or the attack's.
        let legit_mix = match scenario {
            Scenario::LearnedFloor => Some((
                LegitMix::Conns { port: 443 },
                opts.background_pps as f64 / CONN_PACKETS,
            )),
            // --background-pps counts what the clients send: half of each connection, one query,
            // two segments of each exchange.
            Scenario::SigSynFlood => Some((
                LegitMix::Conns { port: 80 },
                opts.background_pps as f64 / (CONN_PACKETS / 2.0),
            )),
            Scenario::SigUdpFlood => Some((LegitMix::Dns, opts.background_pps as f64)),
            Scenario::SigAckFlood => Some((
                LegitMix::Established { port: 443 },
                opts.background_pps as f64 / 2.0,
            )),
            // Peak sessions per second (the day's shape scales them down).
            Scenario::BenignDay => Some((
                LegitMix::Day {
                    hosts: day_hosts(victim),
                },
                opts.background_pps as f64 / DAY_PACKETS,
            )),
            _ => None,
        };
        let background = (opts.background_pps > 0 && legit_mix.is_none()).then(|| {
            let rate = opts.background_pps as f64 / PACKETS_PER_SESSION;
            let profile = if scenario == Scenario::BenignGrowth {
                Profile::Growth {
                    rate,
                    start: att_start,
                    len: att_len,
                }
            } else {
                Profile::Constant { rate }
            };
            let mut g = SessionGen::new(
                Rng::new(seed, 1),
                Mode::Background,
                profile,
                start,
                dur,
                opts.min_size,
            );
            if scenario == Scenario::SynBurst {
                g.exclude = Some(victim);
            }
            g
        });

        let extra = (scenario == Scenario::FlashCrowd).then(|| {
            let rate = opts.attack_pps as f64 / TCP_SESSION_PACKETS;
            let mut rng = Rng::new(seed, 2);
            let mode = Mode::Flash {
                victim,
                next_client: 0,
                k1: rng.next_u64() | 1,
                k2: rng.next_u64(),
            };
            let profile = Profile::Constant { rate };
            SessionGen::new(rng, mode, profile, att_start_ns, att_clip, opts.min_size)
        });

        let legit =
            match (legit_mix, victim) {
                (Some((mix, rate)), Victim::V4(v)) if opts.background_pps > 0 => Some(
                    ClientGen::new(Rng::new(seed, 4), mix, v, rate, start, dur, opts.min_size),
                ),
                _ => None,
            };

        let rate = opts.attack_pps as f64;
        let host = Key::host(victim_ip);
        let on_host = |class| vec![(Scope::DstHost, host, class)];
        let syn_flood = || on_host(AttackClass::SynFlood);
        // a flood from one /24: its victim, and the source subnet too
        let from_one_net = |net: [u8; 4], class| {
            let src = Key::subnet(IpAddr::V4(Ipv4Addr::from(net)), 24, 64);
            vec![
                (Scope::DstHost, host, class),
                (Scope::SrcSubnet, src, class),
            ]
        };
        // the attack's rate over time: steady, but for the ramp and the pulses
        let profile = match scenario {
            Scenario::SlowRamp => Profile::Ramp { rate, len: att_len },
            Scenario::PulseWave => Profile::Pulse {
                rate,
                on: 2.0,
                period: 10.0,
            },
            _ => Profile::Constant { rate },
        };
        let (kind, labels) = match scenario {
            Scenario::SynFlood
            | Scenario::Ipv6SynFlood
            | Scenario::SynBurst
            | Scenario::LearnedFloor
            | Scenario::SlowRamp
            | Scenario::PulseWave => (AttackKind::Syn, syn_flood()),
            Scenario::SpoofedSources => (AttackKind::Spoofed, syn_flood()),
            Scenario::SourcesAtFloor => (AttackKind::FloorSyn, syn_flood()),
            Scenario::SigSynFlood => (AttackKind::HpingSyn, syn_flood()),
            Scenario::SigUdpFlood => (AttackKind::XUdp, on_host(AttackClass::UdpFlood)),
            // ACK floods are "other TCP" to the detector.
            Scenario::SigAckFlood => (AttackKind::BareAck, on_host(AttackClass::TcpFlood)),
            Scenario::UdpFlood => (
                AttackKind::UdpFew,
                from_one_net([203, 0, 113, 0], AttackClass::UdpFlood),
            ),
            Scenario::DnsReflection => (
                AttackKind::DnsFrag,
                on_host(AttackClass::DnsAmplification),
            ),
            Scenario::IcmpFlood => (
                AttackKind::Icmp,
                from_one_net([192, 0, 2, 0], AttackClass::IcmpFlood),
            ),
            Scenario::CarpetBombing => (
                AttackKind::Carpet,
                vec![(
                    Scope::DstSubnet,
                    Key::subnet(victim_ip, 24, 64),
                    AttackClass::UdpFlood,
                )],
            ),
            Scenario::Benign
            | Scenario::BenignGrowth
            | Scenario::FlashCrowd
            | Scenario::BenignDay
            // `web` plans these: `write_pcap` hands them over before a `Plan` is made.
            | Scenario::HttpFlood
            | Scenario::HttpDdos
            | Scenario::HttpsFlood
            | Scenario::HttpFewHeavy
            | Scenario::TlsFlood
            | Scenario::Slowloris
            | Scenario::HttpFlashCrowd
            | Scenario::BusySite
            | Scenario::QuietHostSyn
            | Scenario::QuietHostIcmp
            | Scenario::QuietHostScan
            | Scenario::QuietHostCrowd => (AttackKind::None, Vec::new()),
        };
        let attack = (kind != AttackKind::None).then(|| {
            let mut g = AttackGen::new(
                Rng::new(seed, 3),
                kind,
                profile,
                att_start_ns,
                att_clip,
                victim,
                opts,
            );
            if scenario == Scenario::LearnedFloor {
                g.syn_port = 443;
            }
            g
        });

        let mut labels: Vec<PlanLabel> = labels
            .into_iter()
            .map(|(scope, key, class)| PlanLabel {
                scope,
                key,
                class,
                source: None,
            })
            .collect();
        // sources-at-floor: each source is a flood of its own.
        let floor_srcs = attack.as_ref().map_or(&[][..], |a| &a.floor_srcs[..]);
        for (i, &(src, _, _)) in floor_srcs.iter().enumerate() {
            labels.push(PlanLabel {
                scope: Scope::SrcHost,
                key: Key::host(IpAddr::V4(Ipv4Addr::from(src))),
                class: AttackClass::SynFlood,
                source: Some(i),
            });
        }
        let numbered_sources = floor_srcs.len();
        Ok(Plan {
            end,
            background,
            extra,
            legit,
            attack,
            labels,
            numbered_sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::tests::*;

    #[test]
    fn bad_options_are_refused() {
        let bad = |s: Scenario, o: SynthOptions| {
            matches!(
                write_pcap(s, &o, Vec::new()),
                Err(SynthError::BadOptions(_))
            )
        };
        // each scenario with one option changed, and whether that is refused
        type Change = fn(&mut SynthOptions);
        let cases: [(Scenario, Change, bool); 8] = [
            (Scenario::SynFlood, |o| o.duration = Duration::ZERO, true),
            (Scenario::SynFlood, |o| o.attack_pps = 0, true),
            (
                Scenario::SynFlood,
                |o| o.attack_start = Duration::from_secs(9),
                true,
            ),
            (
                Scenario::UdpFlood,
                |o| o.victim = Some("2001:db8::1".parse().unwrap()),
                true,
            ),
            (
                Scenario::Ipv6SynFlood,
                |o| o.victim = Some("192.0.2.1".parse().unwrap()),
                true,
            ),
            (Scenario::SpoofedSources, |o| o.sources = 0, true),
            (
                Scenario::Benign,
                |o| o.start = Timestamp::from_secs_nanos(u64::from(u32::MAX), 0),
                true,
            ),
            (Scenario::Benign, |o| o.attack_pps = 0, false),
        ];
        for (i, (scenario, change, refused)) in cases.into_iter().enumerate() {
            let mut o = short();
            change(&mut o);
            assert_eq!(bad(scenario, o), refused, "case {i}: {scenario}");
        }
        // A v6 victim works for the TCP scenarios.
        let v6 = SynthOptions {
            victim: Some("2001:db8:100::7".parse().unwrap()),
            ..short()
        };
        let (_, r) = gen(Scenario::SynFlood, &v6);
        assert_eq!(r.labels[0].key.to_string(), "2001:db8:100::7");
    }
}
