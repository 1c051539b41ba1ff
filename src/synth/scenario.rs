//! The scenario catalogue and its options: every [`Scenario`] with its command-line name, its
//! `--help` line and default victim; [`SynthOptions`] and their defaults; [`SynthError`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use super::web;
use crate::time::Timestamp;

/// A synthetic traffic scenario. Every scenario includes the benign background.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    Benign,
    SynFlood,
    UdpFlood,
    DnsReflection,
    IcmpFlood,
    CarpetBombing,
    Ipv6SynFlood,
    SlowRamp,
    PulseWave,
    FlashCrowd,
    BenignGrowth,
    SpoofedSources,
    SynBurst,
    SourcesAtFloor,
    LearnedFloor,
    SigSynFlood,
    SigUdpFlood,
    SigAckFlood,
    BenignDay,
    HttpFlood,
    HttpDdos,
    HttpsFlood,
    HttpFewHeavy,
    TlsFlood,
    Slowloris,
    HttpFlashCrowd,
    BusySite,
    QuietHostSyn,
    QuietHostIcmp,
    QuietHostScan,
    QuietHostCrowd,
}

impl Scenario {
    /// Every scenario, in a fixed order.
    pub const ALL: [Scenario; 31] = [
        Scenario::Benign,
        Scenario::SynFlood,
        Scenario::UdpFlood,
        Scenario::DnsReflection,
        Scenario::IcmpFlood,
        Scenario::CarpetBombing,
        Scenario::Ipv6SynFlood,
        Scenario::SlowRamp,
        Scenario::PulseWave,
        Scenario::FlashCrowd,
        Scenario::BenignGrowth,
        Scenario::SpoofedSources,
        Scenario::SynBurst,
        Scenario::SourcesAtFloor,
        Scenario::LearnedFloor,
        Scenario::SigSynFlood,
        Scenario::SigUdpFlood,
        Scenario::SigAckFlood,
        Scenario::BenignDay,
        Scenario::HttpFlood,
        Scenario::HttpDdos,
        Scenario::HttpsFlood,
        Scenario::HttpFewHeavy,
        Scenario::TlsFlood,
        Scenario::Slowloris,
        Scenario::HttpFlashCrowd,
        Scenario::BusySite,
        Scenario::QuietHostSyn,
        Scenario::QuietHostIcmp,
        Scenario::QuietHostScan,
        Scenario::QuietHostCrowd,
    ];

    /// The kebab-case name used on the command line (`syn-flood`, …).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Benign => "benign",
            Scenario::SynFlood => "syn-flood",
            Scenario::UdpFlood => "udp-flood",
            Scenario::DnsReflection => "dns-reflection",
            Scenario::IcmpFlood => "icmp-flood",
            Scenario::CarpetBombing => "carpet-bombing",
            Scenario::Ipv6SynFlood => "ipv6-syn-flood",
            Scenario::SlowRamp => "slow-ramp",
            Scenario::PulseWave => "pulse-wave",
            Scenario::FlashCrowd => "flash-crowd",
            Scenario::BenignGrowth => "benign-growth",
            Scenario::SpoofedSources => "spoofed-sources",
            Scenario::SynBurst => "syn-burst",
            Scenario::SourcesAtFloor => "sources-at-floor",
            Scenario::LearnedFloor => "learned-floor",
            Scenario::SigSynFlood => "sig-syn-flood",
            Scenario::SigUdpFlood => "sig-udp-flood",
            Scenario::SigAckFlood => "sig-ack-flood",
            Scenario::BenignDay => "benign-day",
            Scenario::HttpFlood => "http-flood",
            Scenario::HttpDdos => "http-ddos",
            Scenario::HttpsFlood => "https-flood",
            Scenario::HttpFewHeavy => "http-few-heavy",
            Scenario::TlsFlood => "tls-flood",
            Scenario::Slowloris => "slowloris",
            Scenario::HttpFlashCrowd => "http-flash-crowd",
            Scenario::BusySite => "busy-site",
            Scenario::QuietHostSyn => "quiet-host-syn",
            Scenario::QuietHostIcmp => "quiet-host-icmp",
            Scenario::QuietHostScan => "quiet-host-scan",
            Scenario::QuietHostCrowd => "quiet-host-crowd",
        }
    }

    /// One line for `--help`.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Benign => "background only: TCP sessions, DNS lookups and pings (no alert expected)",
            Scenario::SynFlood => "spoofed TCP SYNs to the victim's port 80 at --attack-pps",
            Scenario::UdpFlood => "512-byte UDP to random ports of the victim from 3 hosts of 203.0.113.0/24",
            Scenario::DnsReflection => {
                "3000-byte DNS responses (source port 53) from 500 resolvers, as IPv4 fragments"
            }
            Scenario::IcmpFlood => "ICMP echo requests to the victim from 20 hosts of 192.0.2.0/24",
            Scenario::CarpetBombing => "spoofed UDP spread evenly over all 254 hosts of the victim's /24",
            Scenario::Ipv6SynFlood => "spoofed IPv6 TCP SYNs to 2001:db8:100::10",
            Scenario::SlowRamp => "SYN flood whose rate rises linearly from 0 to --attack-pps over the attack",
            Scenario::PulseWave => "SYN flood in pulses: 2 s at --attack-pps, 8 s off, during the attack",
            Scenario::FlashCrowd => {
                "complete TCP sessions from distinct real clients to one server (no alert expected)"
            }
            Scenario::BenignGrowth => {
                "background rising smoothly to 3x its rate over the attack period (no alert expected)"
            }
            Scenario::SpoofedSources => "SYN flood from --sources distinct spoofed addresses",
            Scenario::SynBurst => {
                "a burst after silence: the background never involves the victim, which receives only \
                 spoofed SYNs to port 80, --attack-pps for --attack-duration (e.g. 25000 for 40ms)"
            }
            Scenario::SourcesAtFloor => {
                "SYNs to the victim's port 80 from --sources sources (4 when --sources is left at its \
                 default), each sending a steady --attack-pps / N (e.g. 4 x 1200 for --attack-pps 4800)"
            }
            Scenario::LearnedFloor => {
                "only legit TCP connections from 100.64.0.0/16 to victim:443 (--background-pps / 10 \
                 per second, 10 packets each), then spoofed SYNs to victim:443 at --attack-pps: a flood \
                 far over the victim's normal but under the absolute floor"
            }
            Scenario::SigSynFlood => {
                "real-stack TCP connections from 100.64.0.0/16 to victim:80 (--background-pps SYNs and \
                 other segments in), and hping-like SYNs (window 512, no options, TTL 64, no DF) from \
                 spoofed sources outside it"
            }
            Scenario::SigUdpFlood => {
                "DNS queries from 100.64.0.0/16 to victim:53 (--background-pps, varied names) with \
                 answers, and 512-byte 'XXX...' UDP to victim:53 with TTL 57 from 300 spoofed sources"
            }
            Scenario::SigAckFlood => {
                "established TCP (timestamps option, varied windows and lengths) from 100.64.0.0/16 to \
                 victim:443 (--background-pps in), and bare 40-byte ACKs (window 1024, TTL 128) from \
                 spoofed sources"
            }
            Scenario::BenignDay => {
                "a 24 h day compressed into --duration (e.g. 24m): connections, DNS and pings from \
                 100.64.0.0/16 to the victim and 3 neighbours, peaking at --background-pps, night ~30 % \
                 of the peak, 30 % growth, 3x page-load bursts of 0.1-0.3 s every ~30 s and 2x surges \
                 of 2 s every ~2 min (no alert expected; --attack-* ignored)"
            }
            Scenario::HttpFlood => {
                "HOIC-style: 4 hosts of 203.0.113.0/24 send --attack-pps HTTP requests/s (default 50) \
                 over 3 keep-alive connections each to the site's port 80, over its 4 requests/s"
            }
            Scenario::HttpDdos => {
                "HTTP DDoS: 90 hosts of 203.0.113.0/24, --attack-pps requests/s in all (default 400), \
                 a new connection every 1-5 requests, to the site's port 80"
            }
            Scenario::HttpsFlood => {
                "keep-alive HTTPS flood: 6 bots (Go and Python TLS stacks) each hold 1-2 TLS \
                 connections to port 443 and send --attack-pps requests/s in all (default 90)"
            }
            Scenario::HttpFewHeavy => {
                "a busier site (--background-pps 20 requests/s) where 3 hosts suddenly request \
                 /search.php?q=cheap+flights at --attack-pps / 3 requests/s each (default 180 in all)"
            }
            Scenario::TlsFlood => {
                "TLS handshake flood: 50 hosts open --attack-pps connections/s (default 300) to port \
                 443, send a ClientHello, take the server's handshake and close (FIN or RST)"
            }
            Scenario::Slowloris => {
                "slowloris: 3 hosts open --attack-pps connections/s for 10 s (default 500 in all), send \
                 a request head without its blank line, then a header line every 10-15 s until the end"
            }
            Scenario::HttpFlashCrowd => {
                "a flash crowd: --attack-pps new browsers/s (default 16, 320 in all) each load a page \
                 and 4-14 assets in ~2 s over 1-2 connections, then leave (no alert expected)"
            }
            Scenario::BusySite => {
                "a busy site's growth: browsers' requests rise linearly from --background-pps (20) to \
                 --attack-pps (200) requests/s over the attack period (2 min), a few each (no alert \
                 expected)"
            }
            Scenario::QuietHostSyn => {
                "a quiet host (a ping every ~20 s) takes --attack-pps spoofed SYN/s (default 300) to \
                 port 443 from fresh random sources; it answers some, no handshake completes"
            }
            Scenario::QuietHostIcmp => {
                "the same quiet host takes --attack-pps spoofed ICMP echo requests/s (default 300) \
                 from fresh random sources, and answers each"
            }
            Scenario::QuietHostScan => {
                "the same quiet host is port-scanned: one host of 203.0.113.0/24 sends --attack-pps \
                 SYN/s (default 300) to its ports in turn; the few open ones answer and the scanner \
                 resets (no alert expected)"
            }
            Scenario::QuietHostCrowd => {
                "the same quiet host suddenly serves a crowd: --attack-pps new clients/s (default \
                 300) of 100.64.128.0/17 each open a connection, ask for a page and close (no alert \
                 expected)"
            }
        }
    }

    /// Whether this is one of the web scenarios: whole TCP/HTTP/TLS sessions with a small website,
    /// whose rates are requests or connections per second ([`SynthOptions::for_scenario`]).
    pub fn is_web(self) -> bool {
        web::defaults(self).is_some()
    }

    /// The victim when the options name none.
    pub(super) fn default_victim(self) -> IpAddr {
        match self {
            Scenario::Ipv6SynFlood => {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10))
            }
            _ => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    /// Parses a scenario name; case and `_` for `-` are forgiven.
    fn from_str(s: &str) -> Result<Scenario, String> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|sc| sc.name()).collect();
                format!(
                    "unknown scenario `{s}`; valid scenarios: {}",
                    names.join(", ")
                )
            })
    }
}

/// Default of [`SynthOptions::sources`]. sources-at-floor reads it as "not set" and uses
/// [`FLOOR_SOURCES_DEFAULT`] sources instead.
pub const DEFAULT_SOURCES: u64 = 1_000_000;

/// Sources of sources-at-floor when [`SynthOptions::sources`] is left at [`DEFAULT_SOURCES`].
pub const FLOOR_SOURCES_DEFAULT: u64 = 4;

/// Most sources sources-at-floor accepts (each gets its own label).
pub const FLOOR_SOURCES_MAX: u64 = 65_536;

/// How to synthesise a capture. See [`SynthOptions::default`] for the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthOptions {
    /// PRNG seed: same seed and options give the same bytes.
    pub seed: u64,
    /// Total capture length.
    pub duration: Duration,
    /// Offset of the attack period from the capture start.
    pub attack_start: Duration,
    /// Length of the attack period (clipped to the capture end).
    pub attack_duration: Duration,
    /// Attack packets per second (peak rate for slow-ramp and pulse-wave, extra session packets per
    /// second for flash-crowd; ignored by benign and benign-growth).
    pub attack_pps: u64,
    /// Benign background packets per second; 0 disables the background.
    pub background_pps: u64,
    /// Victim address; `None` is 198.51.100.10 (2001:db8:100::10 for ipv6-syn-flood).
    pub victim: Option<IpAddr>,
    /// Distinct spoofed sources of spoofed-sources; flooding sources of sources-at-floor, where
    /// [`DEFAULT_SOURCES`] means [`FLOOR_SOURCES_DEFAULT`].
    pub sources: u64,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Timestamp of the capture start.
    pub start: Timestamp,
    /// Payload-free frames padded to 60 bytes (IPv6 TCP frames are 74, the smallest possible).
    pub min_size: bool,
}

impl SynthOptions {
    /// The defaults for `scenario`: [`SynthOptions::default`], except for the web scenarios
    /// ([`Scenario::is_web`]). Those capture 90 s or more (a warm-up of 30 s, 60 s for the quiet-host
    /// scenarios, then the attack),
    /// read `attack_pps` as the attack's requests, connections, browsers or SYNs per second and
    /// `background_pps` as the site's requests per second, as [`Scenario::describe`] says; and
    /// [`DEFAULT_SOURCES`] as their own number of attacking hosts.
    pub fn for_scenario(scenario: Scenario) -> SynthOptions {
        web::defaults(scenario).unwrap_or_default()
    }
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            seed: 1,
            duration: Duration::from_secs(30),
            attack_start: Duration::from_secs(10),
            attack_duration: Duration::from_secs(10),
            attack_pps: 20_000,
            background_pps: 2_000,
            victim: None,
            sources: DEFAULT_SOURCES,
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            start: Timestamp::from_secs_nanos(1_764_079_200, 0),
            min_size: false,
        }
    }
}

/// Why a capture could not be synthesised.
#[derive(thiserror::Error, Debug)]
pub enum SynthError {
    #[error("cannot write the synthetic capture: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad synth options: {0}")]
    BadOptions(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
            assert!(!s.describe().is_empty());
        }
        assert_eq!("SYN_FLOOD".parse::<Scenario>().unwrap(), Scenario::SynFlood);
        let e = "nope".parse::<Scenario>().unwrap_err();
        assert!(
            e.contains("syn-flood") && e.contains("spoofed-sources"),
            "{e}"
        );
    }
}
