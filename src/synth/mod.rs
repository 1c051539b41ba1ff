//! Synthetic captures: deterministic, seeded, labelled pcap files for tests, demos and benchmarks.
//!
//! [`write_pcap`] writes a classic pcap (little-endian, microsecond timestamps, Ethernet, snaplen
//! 65535) made of a benign background (complete TCP sessions, DNS lookups, pings between a few thousand
//! clients and about twenty servers) with one [`Scenario`]'s traffic merged in by time, and returns a
//! [`SynthReport`] whose [`Label`]s say which alerts a correct detector raises. The same scenario,
//! options and seed give a byte-identical file.
//!
//! The victim-centred scenarios (learned-floor, benign-day, sig-syn-flood, sig-udp-flood,
//! sig-ack-flood) have no such background: their benign traffic is legitimate clients of the victim
//! (and, for benign-day, of three neighbours in its /24), arriving as a Poisson process, with
//! real-stack TCP (SYN options MSS, SACK-permitted, timestamps, window scale; timestamps on every
//! later segment), per-client TTLs of 64 or 128 less 0–20 hops, random IP IDs and DF on TCP. Every
//! packet of theirs is a client's, the victim's reply, or the attack's.
//!
//! Address plan (documentation and shared ranges only, except spoofed attack sources, which are random
//! public-looking IPv4 addresses):
//! - web servers 198.51.100.1–20 (TCP 443/80), DNS server 198.51.100.53, default victim 198.51.100.10;
//!   IPv6 servers 2001:db8:100::1–::20, IPv6 victim 2001:db8:100::10;
//! - benign clients: 5000 addresses in 100.64.0.0/10 and 500 in 2001:db8:200::/48; legitimate
//!   clients of the victim-centred scenarios anywhere in 100.64.0.0/16, which no attack source uses;
//! - UDP flood sources 203.0.113.5, .17, .99; ICMP flood sources 20 hosts of 192.0.2.0/24; spoofed IPv6
//!   sources in 2001:db8:f000::/36.
//!
//! Every IPv4 header checksum is correct, and so are TCP, ICMP and unfragmented UDP checksums; the UDP
//! checksum of the fragmented DNS-reflection datagrams is 0 ("none", legal over IPv4). Frames shorter
//! than the 60-byte Ethernet minimum are zero-padded to 60 bytes, as a receiving NIC would deliver them.
//!
//! The web scenarios (http-flood, https-flood, slowloris, … : [`Scenario::is_web`]) are request floods
//! and their look-alikes, made of whole TCP/HTTP/TLS sessions with a small website; the `web`
//! module builds them, with defaults of their own ([`SynthOptions::for_scenario`]).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::alert::AttackClass;
use crate::key::{Key, Scope};
use crate::pcap_writer::{PcapWriter, TsResolution};
use crate::time::Timestamp;

mod web;

pub use web::RequestClass;

// ---------------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------------

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
    fn default_victim(self) -> IpAddr {
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

/// The class of an expected alert, as alerts name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabelClass {
    /// A class of today's alerts.
    Attack(AttackClass),
    /// A request-flood class of issue 23, which the alerts' [`AttackClass`] does not have yet.
    Request(RequestClass),
}

impl LabelClass {
    /// The name used in alerts and labels (`syn_flood`, `http_flood`, …).
    pub fn name(self) -> &'static str {
        match self {
            LabelClass::Attack(c) => c.name(),
            LabelClass::Request(c) => c.name(),
        }
    }
}

impl From<AttackClass> for LabelClass {
    fn from(c: AttackClass) -> LabelClass {
        LabelClass::Attack(c)
    }
}

impl fmt::Display for LabelClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for LabelClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An alert a correct detector raises on the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub scope: Scope,
    pub key: Key,
    pub class: LabelClass,
    /// Timestamp (as written, microsecond precision) of the first attack packet.
    pub first_packet: Timestamp,
    /// Timestamp of the last attack packet.
    pub last_packet: Timestamp,
    /// The attacking hosts, ascending, when they are real (they complete handshakes): what the
    /// alert should name. Empty for spoofed sources and for the packet-level floods.
    pub attackers: Vec<IpAddr>,
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = if self.attackers.is_empty() { 7 } else { 8 };
        let mut st = s.serialize_struct("Label", fields)?;
        st.serialize_field("scope", &self.scope)?;
        st.serialize_field("key", &self.key)?;
        st.serialize_field("class", &self.class)?;
        st.serialize_field("first_packet", &self.first_packet.to_string())?;
        st.serialize_field("first_packet_ns", &self.first_packet.as_nanos())?;
        st.serialize_field("last_packet", &self.last_packet.to_string())?;
        st.serialize_field("last_packet_ns", &self.last_packet.as_nanos())?;
        if !self.attackers.is_empty() {
            st.serialize_field("attackers", &self.attackers)?;
        }
        st.end()
    }
}

/// What [`write_pcap`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SynthReport {
    /// Frames written.
    pub packets: u64,
    /// Sum of frame lengths (each frame is captured whole: captured = original length).
    pub bytes: u64,
    /// Expected alerts (empty for benign scenarios).
    pub labels: Vec<Label>,
}

/// Why a capture could not be synthesised.
#[derive(thiserror::Error, Debug)]
pub enum SynthError {
    #[error("cannot write the synthetic capture: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad synth options: {0}")]
    BadOptions(String),
}

/// Writes `report`'s labels as JSON lines: `{"scope","key","class","first_packet","first_packet_ns",
/// "last_packet","last_packet_ns"}`, and `"attackers":["203.0.113.7",…]` when [`Label::attackers`]
/// is not empty.
pub fn write_labels<W: Write>(report: &SynthReport, mut out: W) -> io::Result<()> {
    for label in &report.labels {
        serde_json::to_writer(&mut out, label).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Writes the capture of `scenario` to `out` (buffered internally) and returns what it wrote.
pub fn write_pcap<W: Write>(
    scenario: Scenario,
    opts: &SynthOptions,
    out: W,
) -> Result<SynthReport, SynthError> {
    if scenario.is_web() {
        return web::write_pcap(scenario, opts, out);
    }
    let plan = Plan::new(scenario, opts)?;
    let mut out = pcap_out(out);
    let mut frame = Frame::new(opts.src_mac, opts.dst_mac);
    let mut background = plan.background;
    let mut extra = plan.extra;
    let mut legit = plan.legit;
    let mut attack = plan.attack;
    // (first, last) attack packet times: of the whole attack, and of each numbered source.
    let mut span: Option<(u64, u64)> = None;
    let mut source_spans: Vec<Option<(u64, u64)>> = vec![None; plan.numbered_sources];
    let widen = |s: &mut Option<(u64, u64)>, ts: u64| {
        s.get_or_insert((ts, ts)).1 = ts;
    };

    loop {
        let b = background.as_ref().and_then(SessionGen::peek);
        let e = extra.as_ref().and_then(SessionGen::peek);
        let l = legit.as_ref().and_then(ClientGen::peek);
        let a = attack.as_ref().and_then(AttackGen::peek);
        // Earliest first; ties go background, extra, legit, attack.
        let mut pick = (u64::MAX, 4u8);
        for (i, t) in [b, e, l, a].into_iter().enumerate() {
            if let Some(t) = t {
                if t < pick.0 {
                    pick = (t, i as u8);
                }
            }
        }
        if pick.1 == 4 || pick.0 >= plan.end {
            break;
        }
        let len = match pick.1 {
            0 => background.as_mut().and_then(|g| g.emit(&mut frame)),
            1 => extra.as_mut().and_then(|g| g.emit(&mut frame)),
            2 => legit.as_mut().and_then(|g| g.emit(&mut frame)),
            _ => attack.as_mut().map(|g| g.emit(&mut frame)),
        };
        let Some(len) = len else { break };
        let ts = pick.0 / 1_000 * 1_000;
        if pick.1 == 3 {
            widen(&mut span, ts);
            let src = attack.as_ref().and_then(|g| g.last_source);
            if let Some(s) = src.and_then(|i| source_spans.get_mut(i)) {
                widen(s, ts);
            }
        }
        let data = &frame.buf[..len];
        out.record(Timestamp(ts), data, data.len() as u32)?;
    }
    out.flush()?;

    // A label whose packets never came (an attack cut off by the capture end) is left out.
    let labels = plan
        .labels
        .iter()
        .filter_map(|l| {
            let (first, last) = match l.source {
                None => span?,
                Some(i) => (*source_spans.get(i)?)?,
            };
            Some(Label {
                scope: l.scope,
                key: l.key,
                class: l.class.into(),
                first_packet: Timestamp(first),
                last_packet: Timestamp(last),
                attackers: Vec::new(),
            })
        })
        .collect();
    Ok(SynthReport {
        packets: out.packets,
        bytes: out.bytes,
        labels,
    })
}

// ---------------------------------------------------------------------------------------------------
// Plan: validated options turned into generators
// ---------------------------------------------------------------------------------------------------

/// The number of sources of sources-at-floor.
fn floor_sources(opts: &SynthOptions) -> u64 {
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

struct Plan {
    end: u64,
    background: Option<SessionGen>,
    extra: Option<SessionGen>,
    legit: Option<ClientGen>,
    attack: Option<AttackGen>,
    labels: Vec<PlanLabel>,
    /// Attack sources whose packets are told apart ([`AttackGen::last_source`] is below this).
    numbered_sources: usize,
}

/// An expected alert; its times are those of the attack packets (of numbered source `source` only,
/// when set).
struct PlanLabel {
    scope: Scope,
    key: Key,
    class: AttackClass,
    source: Option<usize>,
}

/// The end of the capture (ns), checked: a capture lasts a while and ends before pcap's 32-bit
/// seconds run out.
fn capture_end(opts: &SynthOptions) -> Result<u64, SynthError> {
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
    fn new(scenario: Scenario, opts: &SynthOptions) -> Result<Plan, SynthError> {
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
        let (kind, profile) = match scenario {
            Scenario::SynFlood
            | Scenario::Ipv6SynFlood
            | Scenario::SynBurst
            | Scenario::LearnedFloor => (AttackKind::Syn, Profile::Constant { rate }),
            Scenario::SlowRamp => (AttackKind::Syn, Profile::Ramp { rate, len: att_len }),
            Scenario::PulseWave => (
                AttackKind::Syn,
                Profile::Pulse {
                    rate,
                    on: 2.0,
                    period: 10.0,
                },
            ),
            Scenario::SpoofedSources => (AttackKind::Spoofed, Profile::Constant { rate }),
            Scenario::SourcesAtFloor => (AttackKind::FloorSyn, Profile::Constant { rate }),
            Scenario::SigSynFlood => (AttackKind::HpingSyn, Profile::Constant { rate }),
            Scenario::SigUdpFlood => (AttackKind::XUdp, Profile::Constant { rate }),
            Scenario::SigAckFlood => (AttackKind::BareAck, Profile::Constant { rate }),
            Scenario::UdpFlood => (AttackKind::UdpFew, Profile::Constant { rate }),
            Scenario::DnsReflection => (AttackKind::DnsFrag, Profile::Constant { rate }),
            Scenario::IcmpFlood => (AttackKind::Icmp, Profile::Constant { rate }),
            Scenario::CarpetBombing => (AttackKind::Carpet, Profile::Constant { rate }),
            Scenario::Benign
            | Scenario::BenignGrowth
            | Scenario::FlashCrowd
            | Scenario::BenignDay => (AttackKind::None, Profile::Constant { rate: 1.0 }),
            // `web` plans these: `write_pcap` hands them over before a `Plan` is made.
            Scenario::HttpFlood
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
            | Scenario::QuietHostCrowd => (AttackKind::None, Profile::Constant { rate: 1.0 }),
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

        let host = Key::host(victim_ip);
        let v4net = |a: [u8; 4]| Key::subnet(IpAddr::V4(Ipv4Addr::from(a)), 24, 64);
        let labels = match scenario {
            Scenario::SynFlood
            | Scenario::Ipv6SynFlood
            | Scenario::SlowRamp
            | Scenario::PulseWave
            | Scenario::SpoofedSources
            | Scenario::SynBurst
            | Scenario::SourcesAtFloor
            | Scenario::LearnedFloor
            | Scenario::SigSynFlood => vec![(Scope::DstHost, host, AttackClass::SynFlood)],
            Scenario::SigUdpFlood => vec![(Scope::DstHost, host, AttackClass::UdpFlood)],
            // ACK floods are "other TCP" to the detector.
            Scenario::SigAckFlood => vec![(Scope::DstHost, host, AttackClass::TcpFlood)],
            Scenario::UdpFlood => vec![
                (Scope::DstHost, host, AttackClass::UdpFlood),
                (
                    Scope::SrcSubnet,
                    v4net([203, 0, 113, 0]),
                    AttackClass::UdpFlood,
                ),
            ],
            Scenario::DnsReflection => vec![(Scope::DstHost, host, AttackClass::DnsAmplification)],
            Scenario::IcmpFlood => vec![
                (Scope::DstHost, host, AttackClass::IcmpFlood),
                (
                    Scope::SrcSubnet,
                    v4net([192, 0, 2, 0]),
                    AttackClass::IcmpFlood,
                ),
            ],
            Scenario::CarpetBombing => {
                vec![(
                    Scope::DstSubnet,
                    Key::subnet(victim_ip, 24, 64),
                    AttackClass::UdpFlood,
                )]
            }
            Scenario::Benign
            | Scenario::BenignGrowth
            | Scenario::FlashCrowd
            | Scenario::BenignDay => Vec::new(),
            Scenario::HttpFlood
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
            | Scenario::QuietHostCrowd => Vec::new(),
        };
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

// ---------------------------------------------------------------------------------------------------
// PRNG, checksums, addresses
// ---------------------------------------------------------------------------------------------------

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256**, seeded through splitmix64; one independent stream per `stream` number.
#[derive(Clone, Debug)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut s = [0u64; 4];
        for v in &mut s {
            *v = splitmix64(&mut x);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Ones-complement sum of big-endian 16-bit words, added to `acc` (not folded).
fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// Folds a sum into a 16-bit ones-complement checksum.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// True for IPv4 addresses outside special-purpose, private, documentation and multicast ranges.
fn is_public(a: u32) -> bool {
    let o = a >> 24;
    !(o == 0
        || o == 10
        || o == 127
        || o >= 224
        || a & 0xFFC0_0000 == 0x6440_0000 // 100.64.0.0/10
        || a & 0xFFFF_0000 == 0xA9FE_0000 // 169.254.0.0/16
        || a & 0xFFF0_0000 == 0xAC10_0000 // 172.16.0.0/12
        || a & 0xFFFF_FF00 == 0xC000_0000 // 192.0.0.0/24
        || a & 0xFFFF_FF00 == 0xC000_0200 // 192.0.2.0/24
        || a & 0xFFFF_0000 == 0xC0A8_0000 // 192.168.0.0/16
        || a & 0xFFFE_0000 == 0xC612_0000 // 198.18.0.0/15
        || a & 0xFFFF_FF00 == 0xC633_6400 // 198.51.100.0/24
        || a & 0xFFFF_FF00 == 0xCB00_7100) // 203.0.113.0/24
}

fn random_public(rng: &mut Rng) -> u32 {
    loop {
        let a = rng.next_u32();
        if is_public(a) {
            return a;
        }
    }
}

/// A bijection of the 32-bit space keyed by `k1`, `k2`.
fn perm32(x: u32, k1: u32, k2: u32) -> u32 {
    let mut x = x.wrapping_mul(k1 | 1).wrapping_add(k2);
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

/// A bijection of the 64-bit space keyed by `k1`, `k2`.
fn perm64(x: u64, k1: u64, k2: u64) -> u64 {
    let mut x = x.wrapping_mul(k1 | 1).wrapping_add(k2);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A source port that no reflection class claims.
fn ephemeral_port(rng: &mut Rng) -> u16 {
    let p = rng.range(1024, 65535) as u16;
    if AttackClass::reflection_of_port(p).is_some() {
        p + 1
    } else {
        p
    }
}

const V4_SERVERS: u32 = 0xC633_6400; // 198.51.100.0
const V4_DNS_SERVER: u32 = V4_SERVERS | 53;
const V4_CLIENT_NET: u32 = 0x6440_0000; // 100.64.0.0/10
const V6_SERVERS: u128 = 0x2001_0db8_0100_0000_0000_0000_0000_0000;
const V6_CLIENT_NET: u128 = 0x2001_0db8_0200_0000_0000_0000_0000_0000; // /48
const V6_SPOOF_NET: u128 = 0x2001_0db8_f000_0000_0000_0000_0000_0000; // /36
const SERVERS: usize = 20;

/// IPv6 server `i` (1..=20) reads like its IPv4 twin: `2001:db8:100::10` for 198.51.100.10.
fn v6_server(i: u32) -> u128 {
    V6_SERVERS | u128::from(i / 10 * 16 + i % 10)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    V4(u32),
    V6(u128),
}

/// Source and destination of one packet, one address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    V4 { src: u32, dst: u32 },
    V6 { src: u128, dst: u128 },
}

impl Ends {
    fn swap(self) -> Ends {
        match self {
            Ends::V4 { src, dst } => Ends::V4 { src: dst, dst: src },
            Ends::V6 { src, dst } => Ends::V6 { src: dst, dst: src },
        }
    }

    /// Sum of the transport pseudo-header.
    fn pseudo_sum(self, proto: u8, len: usize) -> u64 {
        let mut acc = u64::from(proto) + len as u64;
        match self {
            Ends::V4 { src, dst } => {
                for a in [src, dst] {
                    acc += u64::from(a >> 16) + u64::from(a & 0xffff);
                }
            }
            Ends::V6 { src, dst } => {
                for a in [src, dst] {
                    for i in 0..8 {
                        acc += ((a >> (16 * i)) & 0xffff) as u64;
                    }
                }
            }
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------------------
// Frames and the pcap writer
// ---------------------------------------------------------------------------------------------------

const ETH: usize = 14;
const MIN_FRAME: usize = 60;
const FRAME_CAP: usize = 1536;
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;
const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Printable filler for payloads.
static FILLER: [u8; 1500] = filler();

const fn filler() -> [u8; 1500] {
    let mut a = [0u8; 1500];
    let mut i = 0;
    while i < a.len() {
        a[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    a
}

/// The per-packet IPv4 header fields a sender's stack chooses (IPv6 uses `ttl` as the hop limit).
#[derive(Clone, Copy, Debug)]
struct IpFields {
    id: u16,
    ttl: u8,
    /// Don't Fragment.
    df: bool,
}

impl IpFields {
    fn frag(self) -> u16 {
        if self.df {
            IP_DF
        } else {
            0
        }
    }
}

/// The TCP header of one segment, and how many filler bytes follow it.
#[derive(Clone, Copy, Debug)]
struct TcpSeg<'a> {
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    opts: &'a [u8],
    payload: usize,
}

/// The reusable frame buffer; MACs are written once.
struct Frame {
    buf: [u8; FRAME_CAP],
}

impl Frame {
    fn new(src_mac: [u8; 6], dst_mac: [u8; 6]) -> Frame {
        let mut buf = [0u8; FRAME_CAP];
        buf[0..6].copy_from_slice(&dst_mac);
        buf[6..12].copy_from_slice(&src_mac);
        Frame { buf }
    }

    /// Writes the ethertype and IP header for an IP payload of `l4_len` bytes; returns its offset.
    fn ip(&mut self, ends: Ends, proto: u8, l4_len: usize, id: u16, frag: u16, ttl: u8) -> usize {
        match ends {
            Ends::V4 { src, dst } => {
                self.buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                let h = &mut self.buf[ETH..ETH + 20];
                h[0] = 0x45;
                h[1] = 0;
                h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                h[6..8].copy_from_slice(&frag.to_be_bytes());
                h[8] = ttl;
                h[9] = proto;
                h[10] = 0;
                h[11] = 0;
                h[12..16].copy_from_slice(&src.to_be_bytes());
                h[16..20].copy_from_slice(&dst.to_be_bytes());
                let c = fold(sum16(h, 0));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                ETH + 20
            }
            Ends::V6 { src, dst } => {
                self.buf[12..14].copy_from_slice(&0x86DDu16.to_be_bytes());
                let h = &mut self.buf[ETH..ETH + 40];
                h[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
                h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                h[6] = proto;
                h[7] = ttl;
                h[8..24].copy_from_slice(&src.to_be_bytes());
                h[24..40].copy_from_slice(&dst.to_be_bytes());
                ETH + 40
            }
        }
    }

    /// Zero-pads to the Ethernet minimum; returns the frame length.
    fn finish(&mut self, end: usize) -> usize {
        if end < MIN_FRAME {
            self.buf[end..MIN_FRAME].fill(0);
            MIN_FRAME
        } else {
            end
        }
    }

    /// A TCP segment with `payload` filler bytes (at most 1440), an optional MSS option and DF set.
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        ends: Ends,
        ports: (u16, u16),
        seq: u32,
        ack: u32,
        flags: u8,
        win: u16,
        mss: Option<u16>,
        payload: usize,
        id: u16,
        ttl: u8,
    ) -> usize {
        let mss_opt = mss.map(|m| {
            let [hi, lo] = m.to_be_bytes();
            [2, 4, hi, lo]
        });
        let seg = TcpSeg {
            ports,
            seq,
            ack,
            flags,
            win,
            opts: mss_opt.as_ref().map_or(&[][..], |o| &o[..]),
            payload: payload.min(1440),
        };
        self.tcp_seg(ends, IpFields { id, ttl, df: true }, &seg)
    }

    /// A TCP segment with any options (at most 40 bytes, zero-padded to a multiple of 4) and
    /// `seg.payload` filler bytes, clamped so that an IPv4 packet fits a 1500-byte MTU.
    fn tcp_seg(&mut self, ends: Ends, ip: IpFields, seg: &TcpSeg<'_>) -> usize {
        self.tcp_data(ends, ip, seg, &FILLER)
    }

    /// [`Frame::tcp_seg`] with the first `seg.payload` bytes of `data` as the payload (as many as
    /// `data` has and an IPv4 packet of 1500 bytes holds).
    fn tcp_data(&mut self, ends: Ends, ip: IpFields, seg: &TcpSeg<'_>, data: &[u8]) -> usize {
        let opts = &seg.opts[..seg.opts.len().min(40)];
        let hl = 20 + opts.len().div_ceil(4) * 4;
        let payload = seg.payload.min(1480 - hl).min(data.len());
        let l4_len = hl + payload;
        let o = self.ip(ends, 6, l4_len, ip.id, ip.frag(), ip.ttl);
        let t = &mut self.buf[o..o + l4_len];
        t[0..2].copy_from_slice(&seg.ports.0.to_be_bytes());
        t[2..4].copy_from_slice(&seg.ports.1.to_be_bytes());
        t[4..8].copy_from_slice(&seg.seq.to_be_bytes());
        t[8..12].copy_from_slice(&seg.ack.to_be_bytes());
        t[12] = ((hl / 4) as u8) << 4;
        t[13] = seg.flags;
        t[14..16].copy_from_slice(&seg.win.to_be_bytes());
        t[16..20].fill(0);
        t[20..20 + opts.len()].copy_from_slice(opts);
        t[20 + opts.len()..hl].fill(0);
        t[hl..].copy_from_slice(&data[..payload]);
        let c = fold(sum16(t, ends.pseudo_sum(6, l4_len)));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        self.finish(o + l4_len)
    }

    /// A UDP datagram carrying `payload` (at most 1472 bytes), with its checksum; DF clear.
    fn udp(&mut self, ends: Ends, ports: (u16, u16), payload: &[u8], id: u16, ttl: u8) -> usize {
        self.udp_ip(ends, ports, payload, IpFields { id, ttl, df: false })
    }

    /// A UDP datagram carrying `payload` (at most 1472 bytes), with its checksum.
    fn udp_ip(&mut self, ends: Ends, ports: (u16, u16), payload: &[u8], ip: IpFields) -> usize {
        let payload = &payload[..payload.len().min(1472)];
        let l4_len = 8 + payload.len();
        let o = self.ip(ends, 17, l4_len, ip.id, ip.frag(), ip.ttl);
        let u = &mut self.buf[o..o + l4_len];
        u[0..2].copy_from_slice(&ports.0.to_be_bytes());
        u[2..4].copy_from_slice(&ports.1.to_be_bytes());
        u[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        u[6..8].fill(0);
        u[8..].copy_from_slice(payload);
        let c = match fold(sum16(u, ends.pseudo_sum(17, l4_len))) {
            0 => 0xffff,
            c => c,
        };
        u[6..8].copy_from_slice(&c.to_be_bytes());
        self.finish(o + l4_len)
    }

    /// An ICMPv4 echo request (type 8) or reply (type 0) with `payload` filler bytes.
    #[allow(clippy::too_many_arguments)]
    fn icmp_echo(
        &mut self,
        ends: Ends,
        icmp_type: u8,
        ident: u16,
        seq: u16,
        payload: usize,
        id: u16,
        ttl: u8,
    ) -> usize {
        let payload = payload.min(1472);
        let l4_len = 8 + payload;
        let o = self.ip(ends, 1, l4_len, id, 0, ttl);
        let m = &mut self.buf[o..o + l4_len];
        m[0] = icmp_type;
        m[1] = 0;
        m[2..4].fill(0);
        m[4..6].copy_from_slice(&ident.to_be_bytes());
        m[6..8].copy_from_slice(&seq.to_be_bytes());
        m[8..].copy_from_slice(&FILLER[..payload]);
        let c = fold(sum16(m, 0));
        m[2..4].copy_from_slice(&c.to_be_bytes());
        self.finish(o + l4_len)
    }

    /// One IPv4 fragment of a UDP datagram: `data` at byte `offset` (a multiple of 8).
    fn fragment(
        &mut self,
        ends: Ends,
        id: u16,
        offset: usize,
        more: bool,
        data: &[u8],
        ttl: u8,
    ) -> usize {
        let data = &data[..data.len().min(1480)];
        let frag = ((offset / 8) as u16 & 0x1fff) | if more { IP_MF } else { 0 };
        let o = self.ip(ends, 17, data.len(), id, frag, ttl);
        self.buf[o..o + data.len()].copy_from_slice(data);
        self.finish(o + data.len())
    }
}

/// Bytes the capture writer buffers between writes.
const FLUSH_AT: usize = 1 << 20;

/// The classic (microsecond) pcap writer of Ethernet frames synth captures are written with.
fn pcap_out<W: Write>(w: W) -> PcapWriter<W> {
    PcapWriter::new(
        w,
        crate::decode::LinkType::ETHERNET,
        TsResolution::Micro,
        65_535,
        FLUSH_AT,
    )
}

// ---------------------------------------------------------------------------------------------------
// Rate profiles
// ---------------------------------------------------------------------------------------------------

/// Expected number of events by time `t` (seconds from the stream's start), and its inverse.
#[derive(Clone, Copy, Debug)]
enum Profile {
    Constant {
        rate: f64,
    },
    /// Linear rise from 0 to `rate` over `len` seconds.
    Ramp {
        rate: f64,
        len: f64,
    },
    /// `rate` for `on` seconds of every `period`.
    Pulse {
        rate: f64,
        on: f64,
        period: f64,
    },
    /// `rate` until `start`, smoothstep rise to `3 × rate` over `len` seconds, then held.
    Growth {
        rate: f64,
        start: f64,
        len: f64,
    },
}

impl Profile {
    fn cum(self, t: f64) -> f64 {
        match self {
            Profile::Constant { rate } => rate * t,
            Profile::Ramp { rate, len } => {
                let t = t.min(len);
                rate * t * t / (2.0 * len)
            }
            Profile::Pulse { rate, on, period } => {
                let cycles = (t / period).floor();
                rate * (cycles * on + (t - cycles * period).min(on))
            }
            Profile::Growth { rate, start, len } => {
                let extra = if t <= start {
                    0.0
                } else if len <= 0.0 || t >= start + len {
                    len / 2.0 + (t - start - len)
                } else {
                    let x = (t - start) / len;
                    len * (x * x * x - x * x * x * x / 2.0)
                };
                rate * (t + 2.0 * extra)
            }
        }
    }

    /// The time at which `cum` reaches `x` (`x` below `cum(horizon)`).
    fn inv(self, x: f64, horizon: f64) -> f64 {
        match self {
            Profile::Constant { rate } => x / rate,
            Profile::Ramp { rate, len } => (2.0 * len * x / rate).sqrt(),
            Profile::Pulse { rate, on, period } => {
                let per = rate * on;
                let c = (x / per).floor();
                c * period + ((x - c * per) / rate).min(on)
            }
            Profile::Growth { .. } => {
                let (mut lo, mut hi) = (0.0, horizon);
                for _ in 0..64 {
                    let mid = 0.5 * (lo + hi);
                    if self.cum(mid) < x {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                hi
            }
        }
    }
}

fn secs_to_ns(t: f64) -> u64 {
    (t * 1e9) as u64
}

/// Event times of a profile over `[start, start + len)`: `n` events, the k-th at `inv(k + jitter)`.
#[derive(Clone, Debug)]
struct Schedule {
    profile: Profile,
    start: u64,
    horizon: f64,
    n: u64,
    k: u64,
    prev: u64,
}

impl Schedule {
    fn new(profile: Profile, start: u64, len: f64) -> Schedule {
        let n = match profile {
            // Exact for integer rates and whole-microsecond lengths.
            Profile::Constant { rate } if rate.fract() == 0.0 => {
                let len_us = (len * 1e6).round() as u128;
                (rate as u128 * len_us / 1_000_000) as u64
            }
            _ => profile.cum(len).max(0.0).floor() as u64,
        };
        Schedule {
            profile,
            start,
            horizon: len,
            n,
            k: 0,
            prev: start,
        }
    }

    /// The next event time, or `None` when the schedule is done.
    fn next(&mut self, rng: &mut Rng) -> Option<u64> {
        if self.k >= self.n {
            return None;
        }
        let x = self.k as f64 + rng.unit();
        self.k += 1;
        let t = self.profile.inv(x, self.horizon).min(self.horizon);
        let ns = self.start.saturating_add(secs_to_ns(t)).max(self.prev);
        self.prev = ns;
        Some(ns)
    }
}

// ---------------------------------------------------------------------------------------------------
// Sessions: benign background and flash crowd
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp {
        cseq: u32,
        sseq: u32,
        lq: u16,
        l1: u16,
        l2: u16,
        mss: u16,
    },
    Dns {
        qid: u16,
        name: u8,
        aaaa: bool,
    },
    Ping {
        ident: u16,
        seq: u16,
    },
}

#[derive(Clone, Copy, Debug)]
struct Session {
    /// Client → server.
    ends: Ends,
    cport: u16,
    sport: u16,
    rtt: u32,
    step: u8,
    cttl: u8,
    sttl: u8,
    kind: Kind,
}

/// A session's next packet, ordered by time then by when it was queued.
#[derive(Clone, Copy, Debug)]
struct Pending<S> {
    ts: u64,
    order: u64,
    session: S,
}

impl<S> PartialEq for Pending<S> {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.order) == (o.ts, o.order)
    }
}
impl<S> Eq for Pending<S> {}
impl<S> PartialOrd for Pending<S> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<S> Ord for Pending<S> {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.ts, self.order).cmp(&(o.ts, o.order))
    }
}

enum Mode {
    Background,
    Flash {
        victim: Victim,
        next_client: u64,
        k1: u64,
        k2: u64,
    },
}

/// Direction of each TCP step: `true` server → client.
const TCP_DIRS: [bool; 10] = [
    false, true, false, false, true, true, false, false, true, false,
];

/// Background session mix, repeated: T4 = TCP over IPv4, T6 = TCP over IPv6, D = DNS, P = ping.
#[derive(Clone, Copy)]
enum Mix {
    T4,
    T6,
    D,
    P,
}
const MIX: [Mix; 10] = [
    Mix::T4,
    Mix::D,
    Mix::T4,
    Mix::T6,
    Mix::P,
    Mix::T4,
    Mix::D,
    Mix::T4,
    Mix::D,
    Mix::T4,
];

const QNAMES: [&str; 8] = [
    "www.example.com",
    "api.example.net",
    "cdn.example.org",
    "mail.example.com",
    "example.org",
    "static.example.net",
    "login.example.com",
    "updates.example.org",
];

const V4_CLIENTS: usize = 5000;
const V6_CLIENTS: usize = 500;

struct SessionGen {
    rng: Rng,
    mode: Mode,
    sched: Schedule,
    arrival_k: u64,
    next_arrival: Option<u64>,
    heap: BinaryHeap<Reverse<Pending<Session>>>,
    order: u64,
    clients4: Vec<u32>,
    clients6: Vec<u128>,
    /// Per-server load wave: (period s, phase rad).
    waves: [(f64, f64); SERVERS],
    min_size: bool,
    dns: [u8; 256],
    /// An address no session may use (syn-burst's victim): sessions that would are moved next door.
    exclude: Option<Victim>,
}

impl SessionGen {
    fn new(
        mut rng: Rng,
        mode: Mode,
        profile: Profile,
        start: u64,
        len: f64,
        min_size: bool,
    ) -> SessionGen {
        let (clients4, clients6) = if matches!(mode, Mode::Background) {
            let c4 = (0..V4_CLIENTS)
                .map(|_| V4_CLIENT_NET | (rng.range(256, (1 << 22) - 2) as u32))
                .collect();
            let c6 = (0..V6_CLIENTS)
                .map(|_| {
                    V6_CLIENT_NET | (u128::from(rng.next_u64()) << 16) | u128::from(rng.next_u16())
                })
                .collect();
            (c4, c6)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut waves = [(0.0, 0.0); SERVERS];
        for w in &mut waves {
            *w = (
                60.0 + 540.0 * rng.unit(),
                std::f64::consts::TAU * rng.unit(),
            );
        }
        let mut g = SessionGen {
            rng,
            mode,
            sched: Schedule::new(profile, start, len),
            arrival_k: 0,
            next_arrival: None,
            heap: BinaryHeap::with_capacity(1024),
            order: 0,
            clients4,
            clients6,
            waves,
            min_size,
            dns: [0; 256],
            exclude: None,
        };
        g.next_arrival = g.sched.next(&mut g.rng);
        g
    }

    fn peek(&self) -> Option<u64> {
        let top = self.heap.peek().map(|p| p.0.ts);
        match (self.next_arrival, top) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Emits the earliest packet into `frame`; returns its length.
    fn emit(&mut self, frame: &mut Frame) -> Option<usize> {
        let top = self.heap.peek().map(|p| p.0.ts);
        let (ts, session) = match (self.next_arrival, top) {
            (Some(a), t) if t.is_none_or(|t| a <= t) => {
                let s = self.new_session(a);
                self.next_arrival = self.sched.next(&mut self.rng);
                (a, s)
            }
            _ => {
                let p = self.heap.pop()?.0;
                (p.ts, p.session)
            }
        };
        let (len, gap) = self.step(&session, frame);
        if let Some(gap) = gap {
            let mut next = session;
            next.step += 1;
            self.order += 1;
            self.heap.push(Reverse(Pending {
                ts: ts.saturating_add(gap),
                order: self.order,
                session: next,
            }));
        }
        Some(len)
    }

    /// `ends` with the excluded address, if either end is it, replaced by a neighbour: a server (or
    /// the DNS server) by the next or previous address, a client by its last bit flipped. Only
    /// addresses change, so the rest of the stream is the same as without the exclusion.
    fn avoid_excluded(&self, ends: Ends) -> Ends {
        let near4 = |a: u32| {
            if a & 0xff >= SERVERS as u32 {
                a - 1
            } else {
                a + 1
            }
        };
        let near6 = |a: u128| {
            if a & 0xffff >= 0x20 {
                a - 1
            } else {
                a + 1
            }
        };
        match (ends, self.exclude) {
            (Ends::V4 { src, dst }, Some(Victim::V4(v))) if src == v || dst == v => Ends::V4 {
                src: if src == v { src ^ 1 } else { src },
                dst: if dst == v { near4(dst) } else { dst },
            },
            (Ends::V6 { src, dst }, Some(Victim::V6(v))) if src == v || dst == v => Ends::V6 {
                src: if src == v { src ^ 1 } else { src },
                dst: if dst == v { near6(dst) } else { dst },
            },
            _ => ends,
        }
    }

    /// Index (0-based) of a web server, weighted by its slowly varying load at `t` seconds.
    fn pick_server(&mut self, t: f64) -> u32 {
        let mut w = [0.0f64; SERVERS];
        let mut total = 0.0;
        for (i, &(period, phase)) in self.waves.iter().enumerate() {
            total += 1.0 + 0.5 * (std::f64::consts::TAU * t / period + phase).sin();
            w[i] = total;
        }
        let x = self.rng.unit() * total;
        w.iter().position(|&c| x < c).unwrap_or(SERVERS - 1) as u32
    }

    fn new_session(&mut self, ts: u64) -> Session {
        let rng = &mut self.rng;
        let min = self.min_size;
        let tcp = |rng: &mut Rng, mss: u16| Kind::Tcp {
            cseq: rng.next_u32(),
            sseq: rng.next_u32(),
            lq: if min { 0 } else { rng.range(80, 600) as u16 },
            l1: if min {
                0
            } else {
                rng.range(600, u64::from(mss)) as u16
            },
            l2: if min {
                0
            } else {
                rng.range(100, u64::from(mss)) as u16
            },
            mss,
        };
        let ttl_of = |a: u64| {
            if a & 1 == 0 {
                64 - (a % 17) as u8
            } else {
                128 - (a % 23) as u8
            }
        };
        let cport = rng.range(32768, 60999) as u16;
        let rtt = rng.range(1_000_000, 40_000_000) as u32;
        match self.mode {
            Mode::Flash {
                victim,
                ref mut next_client,
                k1,
                k2,
            } => {
                let c = *next_client;
                *next_client += 1;
                let ends = match victim {
                    Victim::V4(v) => {
                        let host = (c.wrapping_mul(k1).wrapping_add(k2) as u32) & 0x003F_FFFF;
                        Ends::V4 {
                            src: V4_CLIENT_NET | host,
                            dst: v,
                        }
                    }
                    Victim::V6(v) => Ends::V6 {
                        src: V6_CLIENT_NET | u128::from(perm64(c, k1, k2)),
                        dst: v,
                    },
                };
                let (mss, cttl) = match ends {
                    Ends::V4 { src, .. } => (1460, ttl_of(u64::from(src))),
                    Ends::V6 { src, .. } => (1440, ttl_of(src as u64)),
                };
                let kind = tcp(rng, mss);
                Session {
                    ends,
                    cport,
                    sport: 443,
                    rtt,
                    step: 0,
                    cttl,
                    sttl: 62,
                    kind,
                }
            }
            Mode::Background => {
                let t = ts.saturating_sub(self.sched.start) as f64 / 1e9;
                let mix = MIX[(self.arrival_k % MIX.len() as u64) as usize];
                self.arrival_k += 1;
                let c4 = self.clients4[rng.below(self.clients4.len() as u64) as usize];
                let c6 = self.clients6[rng.below(self.clients6.len() as u64) as usize];
                let web_port = if rng.below(5) == 0 { 80 } else { 443 };
                let kind_rand = rng.next_u64();
                let (ends, sport, kind, cttl) = match mix {
                    Mix::T4 => {
                        let s = self.pick_server(t) + 1;
                        let e = Ends::V4 {
                            src: c4,
                            dst: V4_SERVERS | s,
                        };
                        (e, web_port, tcp(&mut self.rng, 1460), ttl_of(u64::from(c4)))
                    }
                    Mix::T6 => {
                        let s = self.pick_server(t) + 1;
                        let e = Ends::V6 {
                            src: c6,
                            dst: v6_server(s),
                        };
                        (e, web_port, tcp(&mut self.rng, 1440), ttl_of(c6 as u64))
                    }
                    Mix::D => {
                        let e = Ends::V4 {
                            src: c4,
                            dst: V4_DNS_SERVER,
                        };
                        let kind = Kind::Dns {
                            qid: kind_rand as u16,
                            name: ((kind_rand >> 16) % QNAMES.len() as u64) as u8,
                            aaaa: (kind_rand >> 32) & 3 == 0,
                        };
                        (e, 53, kind, ttl_of(u64::from(c4)))
                    }
                    Mix::P => {
                        let s = self.pick_server(t) + 1;
                        let e = Ends::V4 {
                            src: c4,
                            dst: V4_SERVERS | s,
                        };
                        let kind = Kind::Ping {
                            ident: kind_rand as u16,
                            seq: (kind_rand >> 16) as u16 & 0xff,
                        };
                        (e, 0, kind, ttl_of(u64::from(c4)))
                    }
                };
                let sttl = 64 - (kind_rand >> 40) as u8 % 5;
                let ends = self.avoid_excluded(ends);
                Session {
                    ends,
                    cport,
                    sport,
                    rtt,
                    step: 0,
                    cttl,
                    sttl,
                    kind,
                }
            }
        }
    }

    /// Writes step `s.step` of a session; returns the frame length and the gap to the next step.
    fn step(&mut self, s: &Session, frame: &mut Frame) -> (usize, Option<u64>) {
        let id = self.rng.next_u16();
        let half = u64::from(s.rtt / 2);
        match s.kind {
            Kind::Tcp {
                cseq,
                sseq,
                lq,
                l1,
                l2,
                mss,
            } => {
                let i = usize::from(s.step).min(TCP_DIRS.len() - 1);
                let (lq32, l1_32, l2_32) = (u32::from(lq), u32::from(l1), u32::from(l2));
                let c1 = cseq.wrapping_add(1);
                let s1 = sseq.wrapping_add(1);
                let (seq, ack, flags, payload) = match i {
                    0 => (cseq, 0, SYN, 0),
                    1 => (sseq, c1, SYN | ACK, 0),
                    2 => (c1, s1, ACK, 0),
                    3 => (c1, s1, PSH | ACK, lq),
                    4 => (s1, c1.wrapping_add(lq32), ACK, l1),
                    5 => (s1.wrapping_add(l1_32), c1.wrapping_add(lq32), PSH | ACK, l2),
                    6 | 7 => {
                        let f = if i == 6 { ACK } else { FIN | ACK };
                        (c1.wrapping_add(lq32), s1.wrapping_add(l1_32 + l2_32), f, 0)
                    }
                    8 => (
                        s1.wrapping_add(l1_32 + l2_32),
                        c1.wrapping_add(lq32 + 1),
                        FIN | ACK,
                        0,
                    ),
                    _ => (
                        c1.wrapping_add(lq32 + 1),
                        s1.wrapping_add(l1_32 + l2_32 + 1),
                        ACK,
                        0,
                    ),
                };
                let from_server = TCP_DIRS[i];
                let (ends, ports, ttl, win) = if from_server {
                    (s.ends.swap(), (s.sport, s.cport), s.sttl, 65160)
                } else {
                    (s.ends, (s.cport, s.sport), s.cttl, 64240)
                };
                let opt = (i < 2 && !self.min_size).then_some(mss);
                let len = frame.tcp(
                    ends,
                    ports,
                    seq,
                    ack,
                    flags,
                    win,
                    opt,
                    usize::from(payload),
                    id,
                    ttl,
                );
                let gap = (i + 1 < TCP_DIRS.len()).then(|| {
                    if TCP_DIRS[i + 1] != from_server {
                        let think = if i == 3 {
                            self.rng.range(100_000, 2_000_000)
                        } else {
                            0
                        };
                        half + think
                    } else {
                        self.rng.range(5_000, 100_000)
                    }
                });
                (len, gap)
            }
            Kind::Dns { qid, name, aaaa } => {
                let response = s.step > 0;
                let plen = if self.min_size {
                    0
                } else {
                    self.dns_message(qid, name, aaaa, response)
                };
                let len = if response {
                    frame.udp(
                        s.ends.swap(),
                        (s.sport, s.cport),
                        &self.dns[..plen],
                        id,
                        s.sttl,
                    )
                } else {
                    frame.udp(s.ends, (s.cport, s.sport), &self.dns[..plen], id, s.cttl)
                };
                (len, (!response).then_some(2 * half))
            }
            Kind::Ping { ident, seq } => {
                let reply = s.step > 0;
                let payload = if self.min_size { 0 } else { 56 };
                let len = if reply {
                    frame.icmp_echo(s.ends.swap(), 0, ident, seq, payload, id, s.sttl)
                } else {
                    frame.icmp_echo(s.ends, 8, ident, seq, payload, id, s.cttl)
                };
                (len, (!reply).then_some(2 * half))
            }
        }
    }

    /// A DNS query (or its one-answer response) in `self.dns`; returns its length.
    fn dns_message(&mut self, qid: u16, name: u8, aaaa: bool, response: bool) -> usize {
        let idx = usize::from(name) % QNAMES.len();
        let b = &mut self.dns;
        let mut p = dns_header(b, qid, response);
        for label in QNAMES[idx].split('.') {
            p = dns_label(b, p, label.as_bytes());
        }
        dns_tail(b, p, aaaa, response, idx as u32 + 1)
    }
}

// ---------------------------------------------------------------------------------------------------
// Legitimate clients of one victim (learned-floor, benign-day, sig-*)
// ---------------------------------------------------------------------------------------------------

/// The clients of the victim-centred scenarios: 100.64.0.0/16, which no attack source ever uses.
const LEGIT_NET: u32 = 0x6440_0000;
/// TTL of what the victim (a Linux server, zero hops from the capture point) sends.
const SERVER_TTL: u8 = 64;
/// Packets of one legit connection.
const CONN_PACKETS: f64 = 10.0;

/// Direction of each legit connection step, `true` victim → client: handshake, request, two-segment
/// response, client ACK, then the victim closes; five packets each way.
const CONN_DIRS: [bool; 10] = [
    false, true, false, false, true, true, false, true, false, true,
];

/// What the legit clients of a [`ClientGen`] do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegitMix {
    /// Connections to victim:port, nothing else.
    Conns { port: u16 },
    /// DNS queries to victim:53 and the victim's answers.
    Dns,
    /// Request/response exchanges over [`FLOWS`] established connections to victim:port.
    Established { port: u16 },
    /// benign-day: to `hosts` (the victim half the time, else one of its three neighbours), six in ten
    /// sessions connections (port 443, one in five port 80), three DNS lookups, one ping.
    Day { hosts: [u32; 4] },
}

/// Mean packets per benign-day session: (6 × 10 + 3 × 2 + 1 × 2) / 10.
const DAY_PACKETS: f64 = 6.8;

/// The victim and three neighbours in its /24 (the first three of .1–.4 that are not the victim).
fn day_hosts(victim: Victim) -> [u32; 4] {
    let v = match victim {
        Victim::V4(v) => v,
        // benign-day needs an IPv4 victim (`Plan::new`).
        Victim::V6(_) => V4_SERVERS | 10,
    };
    let mut hosts = [v; 4];
    let others = (1..=4u32)
        .map(|h| (v & 0xFFFF_FF00) | h)
        .filter(|&a| a != v);
    for (slot, a) in hosts[1..].iter_mut().zip(others) {
        *slot = a;
    }
    hosts
}

/// Established connections of [`LegitMix::Established`].
const FLOWS: usize = 1000;

/// One established connection: its client, and the next sequence numbers of both sides.
#[derive(Clone, Copy, Debug)]
struct Flow {
    client: u32,
    cport: u16,
    cttl: u8,
    rtt: u64,
    cseq: u32,
    sseq: u32,
    /// TCP timestamp clocks at the capture start.
    tsc: u32,
    tss: u32,
}

#[derive(Clone, Copy, Debug)]
enum LegitKind {
    /// One whole connection ([`CONN_DIRS`]); `tsc`/`tss` are the TCP timestamp clocks at `t0`.
    Conn {
        cseq: u32,
        sseq: u32,
        lq: u16,
        l1: u16,
        l2: u16,
        tsc: u32,
        tss: u32,
    },
    /// A request, a two-segment response and the client's ACK on an established connection
    /// (client, victim, victim, client).
    Exchange {
        cseq: u32,
        sseq: u32,
        lq: u16,
        l1: u16,
        l2: u16,
        tsc: u32,
        tss: u32,
    },
    /// A query and its answer; the name is drawn from `name`.
    Dns { qid: u16, name: u64, aaaa: bool },
    /// An echo request and its reply.
    Ping { ident: u16, seq: u16 },
}

const TLDS: [&str; 6] = ["com", "net", "org", "io", "de", "example"];
const NAME_CHARS: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A DNS query for the name drawn from `name` (1–3 labels of 2–14 letters and digits, then a TLD), or
/// its one-record answer, into `buf`; returns the length.
fn legit_dns(buf: &mut [u8; 512], qid: u16, name: u64, aaaa: bool, response: bool) -> usize {
    let mut x = name;
    let h = splitmix64(&mut x);
    let mut p = dns_header(buf, qid, response);
    let mut label = [0u8; 14];
    for _ in 0..1 + h % 3 {
        let n = 2 + (splitmix64(&mut x) % 13) as usize;
        for b in &mut label[..n] {
            *b = NAME_CHARS[(splitmix64(&mut x) % NAME_CHARS.len() as u64) as usize];
        }
        p = dns_label(buf, p, &label[..n]);
    }
    let tld = TLDS[((h >> 8) % TLDS.len() as u64) as usize];
    p = dns_label(buf, p, tld.as_bytes());
    dns_tail(buf, p, aaaa, response, 1 + (h >> 16) as u32 % 250)
}

/// A DNS header (one question; one answer in a response) into `buf`; returns where the name goes.
fn dns_header(buf: &mut [u8], qid: u16, response: bool) -> usize {
    buf[0..2].copy_from_slice(&qid.to_be_bytes());
    buf[2..4].copy_from_slice(&(if response { 0x8180u16 } else { 0x0100 }).to_be_bytes());
    buf[4..6].copy_from_slice(&1u16.to_be_bytes());
    buf[6..8].copy_from_slice(&u16::from(response).to_be_bytes());
    buf[8..12].fill(0);
    12
}

/// One name label at `p`; returns the position after it.
fn dns_label(buf: &mut [u8], p: usize, label: &[u8]) -> usize {
    buf[p] = label.len() as u8;
    buf[p + 1..p + 1 + label.len()].copy_from_slice(label);
    p + 1 + label.len()
}

/// The end of the name at `p`, the question's type and class, and in a response the A/AAAA record
/// of server `host`; returns the message length.
fn dns_tail(buf: &mut [u8], mut p: usize, aaaa: bool, response: bool, host: u32) -> usize {
    buf[p] = 0;
    let qtype: u16 = if aaaa { 28 } else { 1 };
    buf[p + 1..p + 3].copy_from_slice(&qtype.to_be_bytes());
    buf[p + 3..p + 5].copy_from_slice(&1u16.to_be_bytes());
    p += 5;
    if response {
        buf[p..p + 2].copy_from_slice(&0xc00cu16.to_be_bytes());
        buf[p + 2..p + 4].copy_from_slice(&qtype.to_be_bytes());
        buf[p + 4..p + 6].copy_from_slice(&1u16.to_be_bytes());
        buf[p + 6..p + 10].copy_from_slice(&300u32.to_be_bytes());
        p += 10;
        if aaaa {
            buf[p..p + 2].copy_from_slice(&16u16.to_be_bytes());
            buf[p + 2..p + 18].copy_from_slice(&v6_server(host).to_be_bytes());
            p += 18;
        } else {
            buf[p..p + 2].copy_from_slice(&4u16.to_be_bytes());
            buf[p + 2..p + 6].copy_from_slice(&(V4_SERVERS | host).to_be_bytes());
            p += 6;
        }
    }
    p
}

#[derive(Clone, Copy, Debug)]
struct LegitSession {
    client: u32,
    server: u32,
    cport: u16,
    sport: u16,
    /// TTL of the client's packets as captured.
    cttl: u8,
    /// Round-trip time, ns.
    rtt: u64,
    /// When the TCP timestamp clocks read `tsc`/`tss`.
    t0: u64,
    step: u8,
    kind: LegitKind,
}

/// A legit client's stack, fixed per address: TTL as captured (64 or 128 less 0–20 hops) and whether
/// it is Linux-like (TTL 64: ports 32768–60999, DF on UDP) or Windows-like (128: ports 49152–65535).
fn client_stack(addr: u32) -> (u8, bool) {
    let mut x = u64::from(addr);
    let h = splitmix64(&mut x);
    let linux = h & 1 == 0;
    let hops = ((h >> 8) % 21) as u8;
    (if linux { 64 } else { 128 } - hops, linux)
}

/// TCP options of a SYN or SYN-ACK as Linux sends them: MSS 1460, SACK permitted, timestamps, NOP,
/// window scale 7 (20 bytes).
fn syn_options(val: u32, ecr: u32) -> [u8; 20] {
    let (v, e) = (val.to_be_bytes(), ecr.to_be_bytes());
    [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, v[0], v[1], v[2], v[3], e[0], e[1], e[2], e[3], 1, 3, 3, 7,
    ]
}

/// The timestamps option of an established segment: NOP, NOP, timestamps (12 bytes).
fn ts_option(val: u32, ecr: u32) -> [u8; 12] {
    let (v, e) = (val.to_be_bytes(), ecr.to_be_bytes());
    [1, 1, 8, 10, v[0], v[1], v[2], v[3], e[0], e[1], e[2], e[3]]
}

/// Poisson arrivals over `[0, len)` seconds at `rate` per second, or, with a [`Day`], at
/// `rate × shape(t) × burst(t)`: drawn by thinning, candidates at `rate × burst(t)` (piecewise
/// constant, so each piece is an exact Poisson process) each kept with probability `shape(t)` ≤ 1.
#[derive(Clone, Debug)]
struct Arrivals {
    rate: f64,
    len: f64,
    t: f64,
    day: Option<Day>,
}

impl Arrivals {
    fn next(&mut self, rng: &mut Rng) -> Option<f64> {
        loop {
            if self.t.is_nan() || self.t >= self.len || self.rate <= 0.0 {
                return None;
            }
            let (mult, until) = match &mut self.day {
                Some(d) => {
                    d.advance(self.t, rng);
                    d.burst(self.t)
                }
                None => (1.0, f64::INFINITY),
            };
            // Exponential gaps; 1 - unit() is in (0, 1], so the logarithm is finite.
            let t = self.t - (1.0 - rng.unit()).ln() / (self.rate * mult);
            if t >= until {
                // The multiplier changes first: start over from there (the process is memoryless).
                self.t = until;
                continue;
            }
            self.t = t;
            if t >= self.len {
                return None;
            }
            match &self.day {
                Some(d) if rng.unit() >= d.shape(t) => continue,
                _ => return Some(t),
            }
        }
    }
}

/// benign-day's rate over a 24 h day compressed into `len` seconds, relative to its peak: a daily
/// cycle (lowest at 04:00, highest at 16:00, a cosine) times a linear rise to 1.3× over the day, so
/// that the night is about 30 % of the peak; and the bursts on top of it.
#[derive(Clone, Debug)]
struct Day {
    len: f64,
    /// 1 / the maximum of [`Day::level`], so that `shape` peaks at 1.
    norm: f64,
    /// The current or next page-load burst, 3× for 0.1–0.3 s, every 20–40 s: [start, end).
    page: (f64, f64),
    /// The current or next surge, 2× for 2 s, every 90–150 s.
    surge: (f64, f64),
}

impl Day {
    fn new(len: f64, rng: &mut Rng) -> Day {
        let max = (0..=2000)
            .map(|i| Day::level(f64::from(i) / 2000.0))
            .fold(0.0, f64::max);
        let page = 5.0 + 25.0 * rng.unit();
        let surge = 30.0 + 90.0 * rng.unit();
        Day {
            len,
            norm: 1.0 / max,
            page: (page, page + 0.1 + 0.2 * rng.unit()),
            surge: (surge, surge + 2.0),
        }
    }

    /// The smooth rate at fraction `f` of the day, before normalisation.
    fn level(f: f64) -> f64 {
        let cycle = 0.675 - 0.325 * (std::f64::consts::TAU * (f - 4.0 / 24.0)).cos();
        cycle * (1.0 + 0.3 * f)
    }

    /// The smooth rate at `t` seconds as a fraction of the peak.
    fn shape(&self, t: f64) -> f64 {
        Day::level(t / self.len) * self.norm
    }

    /// Moves the bursts that ended by `t` to their next occurrence.
    fn advance(&mut self, t: f64, rng: &mut Rng) {
        while t >= self.page.1 {
            let start = self.page.0 + 20.0 + 20.0 * rng.unit();
            self.page = (start, start + 0.1 + 0.2 * rng.unit());
        }
        while t >= self.surge.1 {
            let start = self.surge.0 + 90.0 + 60.0 * rng.unit();
            self.surge = (start, start + 2.0);
        }
    }

    /// The burst multiplier at `t` (after [`Day::advance`]) and when it next changes.
    fn burst(&self, t: f64) -> (f64, f64) {
        let (mut mult, mut until) = (1.0, f64::INFINITY);
        for ((start, end), m) in [(self.page, 3.0), (self.surge, 2.0)] {
            if t >= start {
                mult *= m;
                until = until.min(end);
            } else {
                until = until.min(start);
            }
        }
        (mult, until)
    }
}

/// Legitimate clients of one victim: sessions arriving as a Poisson process, each a short exchange
/// with the victim, merged by time (the victim-centred counterpart of [`SessionGen`]).
struct ClientGen {
    rng: Rng,
    mix: LegitMix,
    start: u64,
    arrivals: Arrivals,
    next_arrival: Option<u64>,
    heap: BinaryHeap<Reverse<Pending<LegitSession>>>,
    order: u64,
    victim: u32,
    min_size: bool,
    flows: Vec<Flow>,
    dns: [u8; 512],
}

impl ClientGen {
    /// `rate` sessions per second over `len` seconds from `start` (ns).
    fn new(
        rng: Rng,
        mix: LegitMix,
        victim: u32,
        rate: f64,
        start: u64,
        len: f64,
        min_size: bool,
    ) -> ClientGen {
        let mut g = ClientGen {
            rng,
            mix,
            start,
            arrivals: Arrivals {
                rate,
                len,
                t: 0.0,
                day: None,
            },
            next_arrival: None,
            heap: BinaryHeap::with_capacity(1024),
            order: 0,
            victim,
            min_size,
            flows: Vec::new(),
            dns: [0; 512],
        };
        if matches!(mix, LegitMix::Day { .. }) {
            g.arrivals.day = Some(Day::new(len, &mut g.rng));
        }
        if matches!(mix, LegitMix::Established { .. }) {
            g.flows = (0..FLOWS)
                .map(|_| {
                    let (client, cport, cttl) = g.client();
                    let r = &mut g.rng;
                    Flow {
                        client,
                        cport,
                        cttl,
                        rtt: r.range(4_000_000, 40_000_000),
                        cseq: r.next_u32(),
                        sseq: r.next_u32(),
                        tsc: r.next_u32(),
                        tss: r.next_u32(),
                    }
                })
                .collect();
        }
        g.next_arrival = g.arrival();
        g
    }

    fn arrival(&mut self) -> Option<u64> {
        let t = self.arrivals.next(&mut self.rng)?;
        Some(self.start.saturating_add(secs_to_ns(t)))
    }

    fn peek(&self) -> Option<u64> {
        let top = self.heap.peek().map(|p| p.0.ts);
        match (self.next_arrival, top) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Emits the earliest packet into `frame`; returns its length.
    fn emit(&mut self, frame: &mut Frame) -> Option<usize> {
        let top = self.heap.peek().map(|p| p.0.ts);
        let (ts, session) = match (self.next_arrival, top) {
            (Some(a), t) if t.is_none_or(|t| a <= t) => {
                let s = self.new_session(a);
                self.next_arrival = self.arrival();
                (a, s)
            }
            _ => {
                let p = self.heap.pop()?.0;
                (p.ts, p.session)
            }
        };
        let (len, gap) = self.step(&session, ts, frame);
        if let Some(gap) = gap {
            let mut next = session;
            next.step += 1;
            self.order += 1;
            self.heap.push(Reverse(Pending {
                ts: ts.saturating_add(gap),
                order: self.order,
                session: next,
            }));
        }
        Some(len)
    }

    /// A client address of 100.64.0.0/16 (not .0.0 nor .255.255) and an ephemeral port of its stack.
    fn client(&mut self) -> (u32, u16, u8) {
        let client = LEGIT_NET | self.rng.range(1, 0xfffe) as u32;
        let (cttl, linux) = client_stack(client);
        let cport = if linux {
            self.rng.range(32768, 60999)
        } else {
            self.rng.range(49152, 65535)
        } as u16;
        (client, cport, cttl)
    }

    fn new_session(&mut self, ts: u64) -> LegitSession {
        if let LegitMix::Established { port } = self.mix {
            return self.exchange(port);
        }
        let (client, cport, cttl) = self.client();
        let rtt = self.rng.range(4_000_000, 40_000_000);
        let min = self.min_size;
        let rng = &mut self.rng;
        let mut len = |lo: u64, hi: u64| if min { 0 } else { rng.range(lo, hi) as u16 };
        let (lq, l1, l2) = (len(80, 600), len(600, 1448), len(100, 1448));
        enum What {
            Conn(u16),
            Dns,
            Ping,
        }
        let (server, what) = match self.mix {
            LegitMix::Conns { port } => (self.victim, What::Conn(port)),
            LegitMix::Dns | LegitMix::Established { .. } => (self.victim, What::Dns),
            LegitMix::Day { hosts } => {
                let r = self.rng.next_u64();
                let server = hosts[[0, 0, 0, 1, 2, 3][(r % 6) as usize]];
                let what = match (r >> 8) % 10 {
                    0..=5 if (r >> 16).is_multiple_of(5) => What::Conn(80),
                    0..=5 => What::Conn(443),
                    6..=8 => What::Dns,
                    _ => What::Ping,
                };
                (server, what)
            }
        };
        let (sport, kind) = match what {
            What::Conn(port) => (
                port,
                LegitKind::Conn {
                    cseq: self.rng.next_u32(),
                    sseq: self.rng.next_u32(),
                    lq,
                    l1,
                    l2,
                    tsc: self.rng.next_u32(),
                    tss: self.rng.next_u32(),
                },
            ),
            What::Dns => {
                let r = self.rng.next_u64();
                let kind = LegitKind::Dns {
                    qid: r as u16,
                    name: self.rng.next_u64(),
                    aaaa: (r >> 16) & 3 == 0,
                };
                (53, kind)
            }
            What::Ping => {
                let r = self.rng.next_u64();
                let kind = LegitKind::Ping {
                    ident: r as u16,
                    seq: (r >> 16) as u16 & 0xff,
                };
                (0, kind)
            }
        };
        LegitSession {
            client,
            server,
            cport,
            sport,
            cttl,
            rtt,
            t0: ts,
            step: 0,
            kind,
        }
    }

    /// The next exchange on a random established connection, whose sequence numbers move past it.
    fn exchange(&mut self, port: u16) -> LegitSession {
        let i = self.rng.below(self.flows.len() as u64) as usize;
        let min = self.min_size;
        let rng = &mut self.rng;
        let mut len = |lo: u64, hi: u64| if min { 0 } else { rng.range(lo, hi) as u16 };
        let (lq, l1, l2) = (len(50, 1200), len(200, 1448), len(100, 1448));
        // `new` makes FLOWS flows for this mix; the fallback is never used.
        let f = self.flows.get_mut(i).map_or(
            Flow {
                client: LEGIT_NET | 1,
                cport: 50_000,
                cttl: 64,
                rtt: 10_000_000,
                cseq: 0,
                sseq: 0,
                tsc: 0,
                tss: 0,
            },
            |f| {
                let now = *f;
                f.cseq = f.cseq.wrapping_add(u32::from(lq));
                f.sseq = f.sseq.wrapping_add(u32::from(l1) + u32::from(l2));
                now
            },
        );
        LegitSession {
            client: f.client,
            server: self.victim,
            cport: f.cport,
            sport: port,
            cttl: f.cttl,
            rtt: f.rtt,
            t0: self.start,
            step: 0,
            kind: LegitKind::Exchange {
                cseq: f.cseq,
                sseq: f.sseq,
                lq,
                l1,
                l2,
                tsc: f.tsc,
                tss: f.tss,
            },
        }
    }

    /// Writes step `s.step` (sent at `ts`) of a session; returns the frame length and the gap to the
    /// next step.
    fn step(&mut self, s: &LegitSession, ts: u64, frame: &mut Frame) -> (usize, Option<u64>) {
        let half = s.rtt / 2;
        match s.kind {
            LegitKind::Conn {
                cseq,
                sseq,
                lq,
                l1,
                l2,
                tsc,
                tss,
            } => {
                let i = usize::from(s.step).min(CONN_DIRS.len() - 1);
                let (q, a, b) = (u32::from(lq), u32::from(l1), u32::from(l2));
                let (c1, s1) = (cseq.wrapping_add(1), sseq.wrapping_add(1));
                let (cq, sab) = (c1.wrapping_add(q), s1.wrapping_add(a + b));
                let (seq, ack, flags, payload) = match i {
                    0 => (cseq, 0, SYN, 0),
                    1 => (sseq, c1, SYN | ACK, 0),
                    2 => (c1, s1, ACK, 0),
                    3 => (c1, s1, PSH | ACK, lq),
                    4 => (s1, cq, ACK, l1),
                    5 => (s1.wrapping_add(a), cq, PSH | ACK, l2),
                    6 => (cq, sab, ACK, 0),
                    7 => (sab, cq, FIN | ACK, 0),
                    8 => (cq, sab.wrapping_add(1), FIN | ACK, 0),
                    _ => (sab.wrapping_add(1), cq.wrapping_add(1), ACK, 0),
                };
                let from_server = CONN_DIRS[i];
                let len = self.tcp(
                    frame,
                    s,
                    ts,
                    from_server,
                    (seq, ack, flags, payload),
                    (tsc, tss),
                );
                // About 3.5 round trips plus the victim's think time and close delay: ~100 ms.
                let gap = match i {
                    2 => Some(self.rng.range(20_000, 500_000)),
                    3 => Some(half + self.rng.range(1_000_000, 20_000_000)),
                    4 => Some(self.rng.range(10_000, 300_000)),
                    6 => Some(half + self.rng.range(2_000_000, 20_000_000)),
                    7 => Some(half + self.rng.range(100_000, 1_000_000)),
                    9 => None,
                    _ => Some(half),
                };
                (len, gap)
            }
            LegitKind::Exchange {
                cseq,
                sseq,
                lq,
                l1,
                l2,
                tsc,
                tss,
            } => {
                let i = s.step.min(3);
                let (q, a, b) = (u32::from(lq), u32::from(l1), u32::from(l2));
                let cq = cseq.wrapping_add(q);
                let (seg, from_server) = match i {
                    0 => ((cseq, sseq, PSH | ACK, lq), false),
                    1 => ((sseq, cq, ACK, l1), true),
                    2 => ((sseq.wrapping_add(a), cq, PSH | ACK, l2), true),
                    _ => ((cq, sseq.wrapping_add(a + b), ACK, 0), false),
                };
                let len = self.tcp(frame, s, ts, from_server, seg, (tsc, tss));
                let gap = match i {
                    0 => Some(half + self.rng.range(500_000, 10_000_000)),
                    1 => Some(self.rng.range(10_000, 300_000)),
                    2 => Some(half),
                    _ => None,
                };
                (len, gap)
            }
            LegitKind::Dns { qid, name, aaaa } => {
                let response = s.step > 0;
                let n = if self.min_size {
                    0
                } else {
                    legit_dns(&mut self.dns, qid, name, aaaa, response)
                };
                let client_side = Ends::V4 {
                    src: s.client,
                    dst: s.server,
                };
                let id = self.rng.next_u16();
                let len = if response {
                    let ip = IpFields {
                        id,
                        ttl: SERVER_TTL,
                        df: true,
                    };
                    frame.udp_ip(client_side.swap(), (s.sport, s.cport), &self.dns[..n], ip)
                } else {
                    // Linux-like clients set DF on UDP, Windows-like ones do not.
                    let ip = IpFields {
                        id,
                        ttl: s.cttl,
                        df: s.cttl <= 64,
                    };
                    frame.udp_ip(client_side, (s.cport, s.sport), &self.dns[..n], ip)
                };
                let gap = (!response).then(|| half * 2 + self.rng.range(50_000, 2_000_000));
                (len, gap)
            }
            LegitKind::Ping { ident, seq } => {
                let reply = s.step > 0;
                let payload = if self.min_size { 0 } else { 56 };
                let id = self.rng.next_u16();
                let client_side = Ends::V4 {
                    src: s.client,
                    dst: s.server,
                };
                let len = if reply {
                    frame.icmp_echo(client_side.swap(), 0, ident, seq, payload, id, SERVER_TTL)
                } else {
                    frame.icmp_echo(client_side, 8, ident, seq, payload, id, s.cttl)
                };
                let gap = (!reply).then(|| half * 2 + self.rng.range(20_000, 200_000));
                (len, gap)
            }
        }
    }

    /// One TCP segment of session `s` at `ts`: `seg` is (seq, ack, flags, payload) and `clocks` the
    /// TCP timestamp clocks at `s.t0`. SYNs carry the SYN options, other segments the timestamps
    /// option; --min-size frames carry none.
    fn tcp(
        &mut self,
        frame: &mut Frame,
        s: &LegitSession,
        ts: u64,
        from_server: bool,
        seg: (u32, u32, u8, u16),
        clocks: (u32, u32),
    ) -> usize {
        let (seq, ack, flags, payload) = seg;
        let clock =
            |base: u32, at: u64| base.wrapping_add((at.saturating_sub(s.t0) / 1_000_000) as u32);
        // The echoed value is the peer's clock half a round trip ago (0 in the first SYN).
        let heard = ts.saturating_sub(s.rtt / 2);
        let (mine, peer) = if from_server {
            (clocks.1, clocks.0)
        } else {
            clocks
        };
        let val = clock(mine, ts);
        let ecr = if flags == SYN { 0 } else { clock(peer, heard) };
        let (syn_opts, ts_opts) = (syn_options(val, ecr), ts_option(val, ecr));
        let opts: &[u8] = if self.min_size {
            &[]
        } else if flags & SYN != 0 {
            &syn_opts
        } else {
            &ts_opts
        };
        let win = match (flags & SYN != 0, from_server) {
            (true, false) => 64240,
            (true, true) => 65160,
            _ => self.rng.range(500, 3000) as u16,
        };
        let client_side = Ends::V4 {
            src: s.client,
            dst: s.server,
        };
        let (ends, ports, ttl) = if from_server {
            (client_side.swap(), (s.sport, s.cport), SERVER_TTL)
        } else {
            (client_side, (s.cport, s.sport), s.cttl)
        };
        let ip = IpFields {
            id: self.rng.next_u16(),
            ttl,
            df: true,
        };
        let seg = TcpSeg {
            ports,
            seq,
            ack,
            flags,
            win,
            opts,
            payload: usize::from(payload),
        };
        frame.tcp_seg(ends, ip, &seg)
    }
}

// ---------------------------------------------------------------------------------------------------
// Attack streams
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttackKind {
    None,
    Syn,
    Spoofed,
    UdpFew,
    DnsFrag,
    Icmp,
    Carpet,
    /// sources-at-floor: SYNs from a few numbered sources in turn.
    FloorSyn,
    /// sig-syn-flood: hping-like SYNs to port 80.
    HpingSyn,
    /// sig-udp-flood: fixed 'X' payloads to port 53 from [`X_SOURCES`] sources.
    XUdp,
    /// sig-ack-flood: bare ACKs to port 443.
    BareAck,
}

/// Sources of the sig-udp-flood attack.
const X_SOURCES: usize = 300;
/// The sig-udp-flood payload: 512 'X' bytes.
static X_PAYLOAD: [u8; 512] = [b'X'; 512];

const RESOLVERS: usize = 500;
const ICMP_HOSTS: usize = 20;
const DNS_RESPONSE: usize = 3000;
const FRAG_DATA: usize = 1480;
const UDP_FLOOD_PAYLOAD: usize = 512;
const CARPET_PAYLOAD: usize = 100;
const SYN_WINDOWS: [u16; 5] = [512, 5840, 8192, 29200, 64240];

/// Walks a keyed permutation of the IPv4 space, skipping non-public addresses, restarting after
/// `sources` addresses: the first `sources` addresses are all distinct.
struct Spoof {
    sources: u64,
    used: u64,
    j: u64,
    k1: u32,
    k2: u32,
    k64: (u64, u64),
}

impl Spoof {
    /// `sources` spoofed IPv4 sources in turn, keyed from `rng` (two draws; no IPv6 key).
    fn v4(sources: u64, rng: &mut Rng) -> Spoof {
        Spoof {
            sources: sources.max(1),
            used: 0,
            j: 0,
            k1: rng.next_u32(),
            k2: rng.next_u32(),
            k64: (0, 0),
        }
    }

    fn next(&mut self, v6: bool) -> (u32, u128) {
        if self.used >= self.sources {
            self.used = 0;
            self.j = 0;
        }
        self.used += 1;
        if v6 {
            let low = perm64(self.used - 1, self.k64.0, self.k64.1);
            return (0, V6_SPOOF_NET | u128::from(low));
        }
        loop {
            let a = perm32(self.j as u32, self.k1, self.k2);
            self.j = (self.j + 1) & 0xFFFF_FFFF;
            if is_public(a) {
                return (a, 0);
            }
        }
    }
}

struct AttackGen {
    rng: Rng,
    kind: AttackKind,
    sched: Schedule,
    next: Option<u64>,
    k: u64,
    victim: Victim,
    min_size: bool,
    resolvers: Vec<u32>,
    icmp_hosts: [(u32, u16, u16); ICMP_HOSTS],
    udp_srcs: [(u32, u16); 3],
    dgram: Vec<u8>,
    frag: (u32, u16, u8),
    spoof: Spoof,
    /// FloorSyn sources: (address, SYN window, TTL), one fixed stack each.
    floor_srcs: Vec<(u32, u16, u8)>,
    /// Index in `floor_srcs` of the source of the packet last emitted.
    last_source: Option<usize>,
    /// Destination port of Syn and Spoofed SYNs.
    syn_port: u16,
    /// XUdp sources.
    x_srcs: Vec<u32>,
}

impl AttackGen {
    fn new(
        mut rng: Rng,
        kind: AttackKind,
        profile: Profile,
        start: u64,
        len: f64,
        victim: Victim,
        opts: &SynthOptions,
    ) -> AttackGen {
        let resolvers = if kind == AttackKind::DnsFrag {
            (0..RESOLVERS).map(|_| random_public(&mut rng)).collect()
        } else {
            Vec::new()
        };
        // 20 distinct hosts of 192.0.2.0/24 (partial Fisher-Yates over 1..=254).
        let mut pool: [u8; 254] = [0; 254];
        for (i, p) in pool.iter_mut().enumerate() {
            *p = i as u8 + 1;
        }
        let mut icmp_hosts = [(0u32, 0u16, 0u16); ICMP_HOSTS];
        for (i, h) in icmp_hosts.iter_mut().enumerate() {
            let j = i + rng.below((pool.len() - i) as u64) as usize;
            pool.swap(i, j);
            *h = (
                0xC000_0200 | u32::from(pool[i]),
                rng.next_u16(),
                rng.next_u16(),
            );
        }
        let mut udp_srcs = [(0u32, 0u16); 3];
        for (s, host) in udp_srcs.iter_mut().zip([5u32, 17, 99]) {
            *s = (0xCB00_7100 | host, ephemeral_port(&mut rng));
        }
        let dgram_len = if opts.min_size { 24 } else { 8 + DNS_RESPONSE };
        let mut dgram = vec![0u8; dgram_len];
        for (i, b) in dgram.iter_mut().enumerate().skip(20) {
            *b = FILLER[(i - 20) % FILLER.len()];
        }
        let mut spoof = Spoof {
            sources: opts.sources.max(1),
            used: 0,
            j: 0,
            k1: rng.next_u32(),
            k2: rng.next_u32(),
            k64: (rng.next_u64(), rng.next_u64()),
        };
        let floor_srcs = if kind == AttackKind::FloorSyn {
            (0..floor_sources(opts))
                .map(|_| {
                    let (src, _) = spoof.next(false);
                    let r = rng.next_u64();
                    let win = SYN_WINDOWS[(r % SYN_WINDOWS.len() as u64) as usize];
                    (src, win, 40 + ((r >> 8) % 25) as u8)
                })
                .collect()
        } else {
            Vec::new()
        };
        let x_srcs = if kind == AttackKind::XUdp {
            (0..X_SOURCES).map(|_| random_public(&mut rng)).collect()
        } else {
            Vec::new()
        };
        let mut sched = Schedule::new(profile, start, len);
        if kind == AttackKind::DnsFrag {
            // Whole responses only: every datagram gets its three fragments.
            sched.n -= sched.n % 3;
        }
        let mut g = AttackGen {
            rng,
            kind,
            sched,
            next: None,
            k: 0,
            victim,
            min_size: opts.min_size,
            resolvers,
            icmp_hosts,
            udp_srcs,
            dgram,
            frag: (0, 0, 64),
            spoof,
            floor_srcs,
            last_source: None,
            syn_port: 80,
            x_srcs,
        };
        g.next = g.sched.next(&mut g.rng);
        g
    }

    fn peek(&self) -> Option<u64> {
        self.next
    }

    fn emit(&mut self, frame: &mut Frame) -> usize {
        let k = self.k;
        self.k += 1;
        let id = self.rng.next_u16();
        let len = match (self.kind, self.victim) {
            (AttackKind::Syn | AttackKind::Spoofed | AttackKind::None, victim) => {
                let v6 = matches!(victim, Victim::V6(_));
                let (s4, s6) = if self.kind == AttackKind::Spoofed {
                    self.spoof.next(v6)
                } else if v6 {
                    let low = (u128::from(self.rng.next_u64()) << 28)
                        | u128::from(self.rng.next_u32() >> 4);
                    (0, V6_SPOOF_NET | low)
                } else {
                    (random_public(&mut self.rng), 0)
                };
                let ends = match victim {
                    Victim::V4(d) => Ends::V4 { src: s4, dst: d },
                    Victim::V6(d) => Ends::V6 { src: s6, dst: d },
                };
                let r = self.rng.next_u64();
                let sport = 1024 + (r as u16) % 64512;
                let win = SYN_WINDOWS[((r >> 16) % SYN_WINDOWS.len() as u64) as usize];
                let ttl = 40 + ((r >> 24) % 25) as u8;
                frame.tcp(
                    ends,
                    (sport, self.syn_port),
                    (r >> 32) as u32,
                    0,
                    SYN,
                    win,
                    None,
                    0,
                    id,
                    ttl,
                )
            }
            (AttackKind::UdpFew, Victim::V4(d)) => {
                let (src, sport) = self.udp_srcs[self.rng.below(3) as usize];
                let dport = self.rng.range(1, 65535) as u16;
                let n = if self.min_size { 0 } else { UDP_FLOOD_PAYLOAD };
                frame.udp(
                    Ends::V4 { src, dst: d },
                    (sport, dport),
                    &FILLER[..n],
                    id,
                    52,
                )
            }
            (AttackKind::DnsFrag, Victim::V4(d)) => {
                let j = (k % 3) as usize;
                let step = if self.min_size { 8 } else { FRAG_DATA };
                if j == 0 {
                    let src = self.resolvers[self.rng.below(self.resolvers.len() as u64) as usize];
                    let ttl = 44 + (src % 20) as u8;
                    self.frag = (src, id, ttl);
                    let ulen = self.dgram.len() as u16;
                    let dport = ephemeral_port(&mut self.rng);
                    let u = &mut self.dgram;
                    u[0..2].copy_from_slice(&53u16.to_be_bytes());
                    u[2..4].copy_from_slice(&dport.to_be_bytes());
                    u[4..6].copy_from_slice(&ulen.to_be_bytes());
                    u[6..8].fill(0);
                    if u.len() >= 20 {
                        // DNS header: id, response flags, 1 question, many answers.
                        u[8..10].copy_from_slice(&self.rng.next_u16().to_be_bytes());
                        u[10..12].copy_from_slice(&0x8180u16.to_be_bytes());
                        u[12..14].copy_from_slice(&1u16.to_be_bytes());
                        u[14..16].copy_from_slice(&60u16.to_be_bytes());
                        u[16..20].fill(0);
                    }
                }
                let (src, ipid, ttl) = self.frag;
                let off = j * step;
                let end = if j == 2 {
                    self.dgram.len()
                } else {
                    (off + step).min(self.dgram.len())
                };
                let data = self.dgram.get(off..end).unwrap_or(&[]);
                frame.fragment(Ends::V4 { src, dst: d }, ipid, off, j < 2, data, ttl)
            }
            (AttackKind::Icmp, Victim::V4(d)) => {
                let h = self.rng.below(ICMP_HOSTS as u64) as usize;
                let (src, ident, seq) = self.icmp_hosts[h];
                self.icmp_hosts[h].2 = seq.wrapping_add(1);
                let n = if self.min_size { 0 } else { 56 };
                frame.icmp_echo(Ends::V4 { src, dst: d }, 8, ident, seq, n, id, 57)
            }
            (AttackKind::Carpet, Victim::V4(d)) => {
                let dst = (d & 0xFFFF_FF00) | ((k % 254) as u32 + 1);
                let src = random_public(&mut self.rng);
                let sport = ephemeral_port(&mut self.rng);
                let dport = self.rng.range(1, 65535) as u16;
                let n = if self.min_size { 0 } else { CARPET_PAYLOAD };
                frame.udp(Ends::V4 { src, dst }, (sport, dport), &FILLER[..n], id, 50)
            }
            (AttackKind::FloorSyn, Victim::V4(d)) => {
                // In turn, so each source's packets are evenly spaced; `Plan::new` makes sure there
                // is at least one source.
                let i = (k % self.floor_srcs.len().max(1) as u64) as usize;
                let (src, win, ttl) = self.floor_srcs.get(i).copied().unwrap_or_default();
                self.last_source = Some(i);
                let r = self.rng.next_u64();
                let sport = 1024 + (r as u16) % 64512;
                frame.tcp(
                    Ends::V4 { src, dst: d },
                    (sport, 80),
                    (r >> 32) as u32,
                    0,
                    SYN,
                    win,
                    None,
                    0,
                    id,
                    ttl,
                )
            }
            (AttackKind::HpingSyn | AttackKind::BareAck, Victim::V4(d)) => {
                let src = random_public(&mut self.rng);
                let r = self.rng.next_u64();
                let hping = self.kind == AttackKind::HpingSyn;
                let seg = TcpSeg {
                    ports: (1024 + (r as u16) % 64512, if hping { 80 } else { 443 }),
                    seq: (r >> 32) as u32,
                    ack: if hping { 0 } else { self.rng.next_u32() },
                    flags: if hping { SYN } else { ACK },
                    win: if hping { 512 } else { 1024 },
                    opts: &[],
                    payload: 0,
                };
                let ip = IpFields {
                    id,
                    ttl: if hping { 64 } else { 128 },
                    df: false,
                };
                frame.tcp_seg(Ends::V4 { src, dst: d }, ip, &seg)
            }
            (AttackKind::XUdp, Victim::V4(d)) => {
                let i = self.rng.below(self.x_srcs.len() as u64) as usize;
                let src = self.x_srcs.get(i).copied().unwrap_or(0x0101_0101);
                let sport = ephemeral_port(&mut self.rng);
                let n = if self.min_size { 0 } else { X_PAYLOAD.len() };
                let ip = IpFields {
                    id,
                    ttl: 57,
                    df: false,
                };
                frame.udp_ip(Ends::V4 { src, dst: d }, (sport, 53), &X_PAYLOAD[..n], ip)
            }
            // IPv4-only kinds with an IPv6 victim are refused by `Plan::new`.
            (_, Victim::V6(_)) => frame.finish(ETH),
        };
        self.next = self.sched.next(&mut self.rng);
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use std::collections::{HashMap, HashSet};

    /// Short options that keep tests fast.
    fn short() -> SynthOptions {
        SynthOptions {
            duration: Duration::from_secs(5),
            attack_start: Duration::from_secs(2),
            attack_duration: Duration::from_secs(2),
            attack_pps: 5_000,
            background_pps: 2_000,
            ..SynthOptions::default()
        }
    }

    fn gen(s: Scenario, o: &SynthOptions) -> (Vec<u8>, SynthReport) {
        let mut out = Vec::new();
        let r = write_pcap(s, o, &mut out).unwrap();
        (out, r)
    }

    /// (timestamp ns, frame) of every record.
    fn records(b: &[u8]) -> Vec<(u64, &[u8])> {
        assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 65535);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        let mut p = 24;
        let mut v = Vec::new();
        while p < b.len() {
            let f =
                |o: usize| u64::from(u32::from_le_bytes(b[p + o..p + o + 4].try_into().unwrap()));
            let (sec, us, incl, orig) = (f(0), f(4), f(8) as usize, f(12) as usize);
            assert_eq!(incl, orig);
            assert!(us < 1_000_000);
            v.push((sec * 1_000_000_000 + us * 1000, &b[p + 16..p + 16 + incl]));
            p += 16 + incl;
        }
        assert_eq!(p, b.len());
        v
    }

    fn ip_of(frame: &[u8]) -> (IpAddr, IpAddr) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        match p.net.unwrap() {
            NetSlice::Ipv4(i) => (
                i.header().source_addr().into(),
                i.header().destination_addr().into(),
            ),
            NetSlice::Ipv6(i) => (
                i.header().source_addr().into(),
                i.header().destination_addr().into(),
            ),
            NetSlice::Arp(_) => panic!("arp"),
        }
    }

    /// Checks lengths and checksums of one frame with etherparse; returns (proto, sport, dport, flags).
    fn check_frame(frame: &[u8], opts: &SynthOptions) -> (u8, u16, u16, u8) {
        assert!(frame.len() >= 60);
        assert_eq!(&frame[0..6], &opts.dst_mac);
        assert_eq!(&frame[6..12], &opts.src_mac);
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let (src4, dst4, src6, dst6) = match p.net.as_ref().unwrap() {
            NetSlice::Ipv4(i) => {
                let h = i.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                let wire = 14 + usize::from(h.total_len);
                assert!(wire == frame.len() || (wire < 60 && frame.len() == 60));
                if i.is_payload_fragmented() {
                    return (17, 0, 0, 0);
                }
                (Some(h.source), Some(h.destination), None, None)
            }
            NetSlice::Ipv6(i) => {
                let h = i.header().to_header();
                assert_eq!(14 + 40 + usize::from(h.payload_length), frame.len());
                (None, None, Some(h.source), Some(h.destination))
            }
            NetSlice::Arp(_) => panic!("arp"),
        };
        match p.transport.unwrap() {
            TransportSlice::Tcp(t) => {
                let c = match (src4, dst4, src6, dst6) {
                    (Some(s), Some(d), _, _) => t.calc_checksum_ipv4(s, d).unwrap(),
                    (_, _, Some(s), Some(d)) => t.calc_checksum_ipv6(s, d).unwrap(),
                    _ => unreachable!(),
                };
                assert_eq!(c, t.checksum(), "tcp checksum");
                let flags = frame[14 + if src4.is_some() { 20 } else { 40 } + 13];
                (6, t.source_port(), t.destination_port(), flags)
            }
            TransportSlice::Udp(u) => {
                let h = u.to_header();
                let (s, d) = (src4.unwrap(), dst4.unwrap());
                assert_eq!(
                    h.calc_checksum_ipv4_raw(s, d, u.payload()).unwrap(),
                    h.checksum,
                    "udp checksum"
                );
                assert_eq!(usize::from(h.length), 8 + u.payload().len());
                (17, h.source_port, h.destination_port, 0)
            }
            TransportSlice::Icmpv4(m) => {
                assert_eq!(fold(sum16(m.slice(), 0)), 0, "icmp checksum");
                (1, 0, 0, 0)
            }
            other => panic!("unexpected transport {other:?}"),
        }
    }

    fn expected_packets(s: Scenario, o: &SynthOptions) -> f64 {
        let bg = o.background_pps as f64 * o.duration.as_secs_f64();
        let a = o.attack_pps as f64 * o.attack_duration.as_secs_f64();
        match s {
            Scenario::Benign => bg,
            Scenario::BenignGrowth => {
                // 1× before, mean 2× during, 3× after the growth window.
                let (st, len) = (
                    o.attack_start.as_secs_f64(),
                    o.attack_duration.as_secs_f64(),
                );
                let after = (o.duration.as_secs_f64() - st - len).max(0.0);
                o.background_pps as f64 * (st + 2.0 * len + 3.0 * after)
            }
            Scenario::SlowRamp => bg + a / 2.0,
            // --background-pps counts what the clients send; the victim answers as much.
            Scenario::SigSynFlood | Scenario::SigUdpFlood | Scenario::SigAckFlood => 2.0 * bg + a,
            // The whole day in the capture: the day's mean level (no burst starts within 5 s).
            Scenario::BenignDay => {
                let levels: Vec<f64> = (0..1000).map(|i| Day::level(i as f64 / 1000.0)).collect();
                let max = levels.iter().copied().fold(0.0, f64::max);
                bg * levels.iter().sum::<f64>() / levels.len() as f64 / max
            }
            Scenario::PulseWave => {
                bg + o.attack_pps as f64 * o.attack_duration.as_secs_f64().min(2.0)
            }
            _ => bg + a,
        }
    }

    #[test]
    fn deterministic_per_seed() {
        let o = short();
        let (a, ra) = gen(Scenario::SynFlood, &o);
        let (b, rb) = gen(Scenario::SynFlood, &o);
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        let (c, _) = gen(Scenario::SynFlood, &SynthOptions { seed: 2, ..o });
        assert_ne!(a, c);
    }

    #[test]
    fn every_scenario_counts_orders_and_checksums() {
        let o = short();
        // The web scenarios count requests, not packets: `web`'s tests check them.
        for s in Scenario::ALL.into_iter().filter(|s| !s.is_web()) {
            let (bytes, r) = gen(s, &o);
            let recs = records(&bytes);
            assert_eq!(recs.len() as u64, r.packets, "{s}");
            assert_eq!(
                recs.iter().map(|(_, f)| f.len() as u64).sum::<u64>(),
                r.bytes
            );
            let exp = expected_packets(s, &o);
            let err = (r.packets as f64 - exp).abs() / exp;
            // Legit clients arrive as a Poisson process: about 1000 sessions here, so ~3 % noise.
            let tol = match s {
                Scenario::BenignDay => 0.1,
                s if NEW_SCENARIOS.contains(&s) => 0.06,
                _ => 0.02,
            };
            assert!(err < tol, "{s}: {} packets, expected {exp}", r.packets);
            let start = o.start.as_nanos();
            let end = start + o.duration.as_nanos() as u64;
            for w in recs.windows(2) {
                assert!(w[0].0 <= w[1].0, "{s}: timestamps go back");
            }
            assert!(recs.iter().all(|(t, _)| (start..end).contains(t)));
            // Every 3rd frame through etherparse (all of them in debug builds is slow).
            for (_, f) in recs.iter().step_by(3) {
                check_frame(f, &o);
            }
        }
    }

    #[test]
    fn labels_per_scenario() {
        let o = short();
        const V4: &str = "198.51.100.10";
        type Want = &'static [(&'static str, &'static str, &'static str)];
        let cases: [(Scenario, Want); 19] = [
            (Scenario::Benign, &[]),
            (Scenario::FlashCrowd, &[]),
            (Scenario::BenignGrowth, &[]),
            (Scenario::SynFlood, &[("dst_host", V4, "syn_flood")]),
            (Scenario::SlowRamp, &[("dst_host", V4, "syn_flood")]),
            (Scenario::PulseWave, &[("dst_host", V4, "syn_flood")]),
            (Scenario::SpoofedSources, &[("dst_host", V4, "syn_flood")]),
            (Scenario::SynBurst, &[("dst_host", V4, "syn_flood")]),
            (Scenario::LearnedFloor, &[("dst_host", V4, "syn_flood")]),
            (Scenario::SigSynFlood, &[("dst_host", V4, "syn_flood")]),
            (Scenario::SigUdpFlood, &[("dst_host", V4, "udp_flood")]),
            (Scenario::SigAckFlood, &[("dst_host", V4, "tcp_flood")]),
            (Scenario::BenignDay, &[]),
            (
                Scenario::SourcesAtFloor,
                &[
                    ("dst_host", V4, "syn_flood"),
                    ("src_host", "183.191.13.170", "syn_flood"),
                    ("src_host", "178.250.128.129", "syn_flood"),
                    ("src_host", "32.125.166.237", "syn_flood"),
                    ("src_host", "158.98.178.250", "syn_flood"),
                ],
            ),
            (
                Scenario::Ipv6SynFlood,
                &[("dst_host", "2001:db8:100::10", "syn_flood")],
            ),
            (
                Scenario::DnsReflection,
                &[("dst_host", V4, "dns_amplification")],
            ),
            (
                Scenario::UdpFlood,
                &[
                    ("dst_host", V4, "udp_flood"),
                    ("src_subnet", "203.0.113.0/24", "udp_flood"),
                ],
            ),
            (
                Scenario::IcmpFlood,
                &[
                    ("dst_host", V4, "icmp_flood"),
                    ("src_subnet", "192.0.2.0/24", "icmp_flood"),
                ],
            ),
            (
                Scenario::CarpetBombing,
                &[("dst_subnet", "198.51.100.0/24", "udp_flood")],
            ),
        ];
        for (s, want) in cases {
            let (bytes, r) = gen(s, &o);
            let got: Vec<(String, String, String)> = r
                .labels
                .iter()
                .map(|l| (l.scope.to_string(), l.key.to_string(), l.class.to_string()))
                .collect();
            let want: Vec<(String, String, String)> = want
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect();
            assert_eq!(got, want, "{s}");
            for l in &r.labels {
                // The first labelled packet is the first packet of the attack window that matches.
                let attack_start = o.start.as_nanos() + o.attack_start.as_nanos() as u64;
                assert!(l.first_packet.as_nanos() >= attack_start, "{s}");
                let slack = if s == Scenario::SlowRamp {
                    100_000_000
                } else {
                    10_000_000
                };
                assert!(l.first_packet.as_nanos() < attack_start + slack, "{s}");
                assert!(l.last_packet > l.first_packet);
                // A packet of the labelled key carries the first_packet timestamp.
                let first = l.first_packet.as_nanos();
                let found = records(&bytes).into_iter().any(|(t, f)| {
                    let (src, dst) = ip_of(f);
                    t == first && (l.key.contains(dst) || l.key.contains(src))
                });
                assert!(found, "{s}: no matching packet at first_packet");
            }
        }
    }

    #[test]
    fn labels_serialize_as_json_lines() {
        let (_, r) = gen(Scenario::UdpFlood, &short());
        let mut out = Vec::new();
        write_labels(&r, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["scope"], "dst_host");
        assert_eq!(v["key"], "198.51.100.10");
        assert_eq!(v["class"], "udp_flood");
        assert_eq!(v["first_packet"], r.labels[0].first_packet.to_string());
        assert_eq!(v["first_packet_ns"], r.labels[0].first_packet.as_nanos());
        assert!(v["last_packet"]
            .as_str()
            .unwrap()
            .starts_with("2025-11-25T14:00:03"));
        assert!(v["last_packet_ns"].is_u64());
    }

    #[test]
    fn min_size_frames_are_60_bytes() {
        let o = SynthOptions {
            min_size: true,
            ..short()
        };
        // The web scenarios are made of payloads and refuse --min-size.
        for s in Scenario::ALL.into_iter().filter(|s| !s.is_web()) {
            let (bytes, _) = gen(s, &o);
            for (i, (_, f)) in records(&bytes).into_iter().enumerate() {
                let v6 = f[12..14] == [0x86, 0xdd];
                assert_eq!(f.len(), if v6 { 74 } else { 60 }, "{s}");
                if i % 3 == 0 {
                    check_frame(f, &o);
                }
            }
        }
    }

    #[test]
    fn dns_reflection_has_first_and_later_fragments() {
        let o = short();
        let (bytes, _) = gen(Scenario::DnsReflection, &o);
        let (mut first, mut later, mut last_len) = (0, 0, HashSet::new());
        for (_, f) in records(&bytes) {
            let p = SlicedPacket::from_ethernet(f).unwrap();
            let Some(NetSlice::Ipv4(i)) = p.net else {
                continue;
            };
            let h = i.header();
            if !i.is_payload_fragmented() {
                continue;
            }
            assert_eq!(h.destination_addr(), Ipv4Addr::new(198, 51, 100, 10));
            let off = h.fragments_offset().byte_offset();
            if off == 0 {
                first += 1;
                assert!(h.more_fragments());
                assert_eq!(f.len(), 1514);
                assert_eq!(
                    u16::from_be_bytes([f[34], f[35]]),
                    53,
                    "first fragment carries sport 53"
                );
                assert_eq!(u16::from_be_bytes([f[38], f[39]]), 3008, "udp length");
            } else {
                later += 1;
                assert!(off == 1480 || off == 2960);
                assert_eq!(h.more_fragments(), off == 1480);
                if off == 2960 {
                    last_len.insert(h.total_len());
                }
            }
        }
        assert!(first > 3000, "{first} first fragments");
        assert_eq!(later, 2 * first);
        assert_eq!(last_len, HashSet::from([20 + 48]));
    }

    #[test]
    fn carpet_bombing_spreads_over_254_hosts() {
        let o = SynthOptions {
            background_pps: 0,
            ..short()
        };
        let (bytes, r) = gen(Scenario::CarpetBombing, &o);
        let mut per: HashMap<IpAddr, u64> = HashMap::new();
        for (_, f) in records(&bytes) {
            *per.entry(ip_of(f).1).or_default() += 1;
        }
        assert_eq!(per.len(), 254);
        let net = r.labels[0].key;
        assert!(per.keys().all(|a| net.contains(*a)));
        let (min, max) = (per.values().min().unwrap(), per.values().max().unwrap());
        assert!(max - min <= 1, "uneven: {min}..{max}");
    }

    #[test]
    fn benign_load_is_spread_over_servers() {
        let o = SynthOptions {
            duration: Duration::from_secs(10),
            ..short()
        };
        let (bytes, r) = gen(Scenario::Benign, &o);
        assert!(r.labels.is_empty());
        let mut per: HashMap<IpAddr, u64> = HashMap::new();
        let (mut srcs, mut syn, mut v6) = (HashSet::new(), 0, 0);
        for (_, f) in records(&bytes) {
            let (s, d) = ip_of(f);
            *per.entry(d).or_default() += 1;
            srcs.insert(s);
            v6 += u64::from(d.is_ipv6());
            let (proto, _, _, flags) = check_frame(f, &o);
            syn += u64::from(proto == 6 && flags == SYN);
        }
        let max = *per.values().max().unwrap();
        assert!((max as f64) < 0.3 * r.packets as f64);
        assert!(srcs.len() > 2000, "{} sources", srcs.len());
        assert!(v6 > 0);
        // One SYN per TCP session: about 6 sessions in 68 packets.
        let share = syn as f64 / r.packets as f64;
        assert!((0.07..0.1).contains(&share), "syn share {share}");
    }

    #[test]
    fn flash_crowd_sessions_complete_from_distinct_clients() {
        let o = SynthOptions {
            background_pps: 0,
            ..short()
        };
        let (bytes, r) = gen(Scenario::FlashCrowd, &o);
        let victim: IpAddr = "198.51.100.10".parse().unwrap();
        let (mut syn_clients, mut synack, mut fin_from_client) = (HashSet::new(), 0, 0);
        for (_, f) in records(&bytes) {
            let (s, d) = ip_of(f);
            let (proto, _, _, flags) = check_frame(f, &o);
            assert_eq!(proto, 6);
            assert!(s == victim || d == victim);
            if flags == SYN {
                assert!(syn_clients.insert(s), "client {s} reused");
            }
            synack += u64::from(flags == SYN | ACK);
            fin_from_client += u64::from(flags == FIN | ACK && d == victim);
        }
        assert_eq!(syn_clients.len() as u64, r.packets / 10);
        assert_eq!(synack, r.packets / 10);
        assert_eq!(fin_from_client, r.packets / 10);
    }

    #[test]
    fn spoofed_sources_are_distinct_then_cycle() {
        let o = SynthOptions {
            background_pps: 0,
            sources: 1_000_000,
            ..short()
        };
        let (bytes, r) = gen(Scenario::SpoofedSources, &o);
        let srcs: HashSet<IpAddr> = records(&bytes).iter().map(|(_, f)| ip_of(f).0).collect();
        assert_eq!(srcs.len() as u64, r.packets);
        let o = SynthOptions { sources: 1000, ..o };
        let (bytes, r) = gen(Scenario::SpoofedSources, &o);
        let srcs: HashSet<IpAddr> = records(&bytes).iter().map(|(_, f)| ip_of(f).0).collect();
        assert_eq!(r.packets, 10_000);
        assert_eq!(srcs.len(), 1000);
        assert!(srcs
            .iter()
            .all(|a| matches!(a, IpAddr::V4(v) if is_public(u32::from(*v)))));
    }

    #[test]
    fn udp_and_icmp_sources_stay_in_their_24() {
        let o = SynthOptions {
            background_pps: 0,
            ..short()
        };
        for (s, net, n) in [
            (Scenario::UdpFlood, "203.0.113.0/24", 3),
            (Scenario::IcmpFlood, "192.0.2.0/24", 20),
        ] {
            let net: Key = net.parse().unwrap();
            let (bytes, _) = gen(s, &o);
            let srcs: HashSet<IpAddr> = records(&bytes).iter().map(|(_, f)| ip_of(f).0).collect();
            assert_eq!(srcs.len(), n);
            assert!(srcs.iter().all(|a| net.contains(*a)));
        }
    }

    #[test]
    fn slow_ramp_rises_and_pulse_wave_pulses() {
        let o = SynthOptions {
            background_pps: 0,
            duration: Duration::from_secs(25),
            attack_start: Duration::from_secs(1),
            attack_duration: Duration::from_secs(20),
            attack_pps: 2_000,
            ..short()
        };
        let per_sec = |s: Scenario| {
            let (bytes, _) = gen(s, &o);
            let mut v = vec![0u64; 25];
            for (t, _) in records(&bytes) {
                v[((t - o.start.as_nanos()) / 1_000_000_000) as usize] += 1;
            }
            v
        };
        let ramp = per_sec(Scenario::SlowRamp);
        assert_eq!(ramp[0], 0);
        assert!(ramp[2] < ramp[10] && ramp[10] < ramp[20]);
        assert!((1850..=2000).contains(&ramp[20]), "{ramp:?}");
        let pulse = per_sec(Scenario::PulseWave);
        assert_eq!(&pulse[1..3], &[2000, 2000]);
        assert_eq!(&pulse[3..11], &[0; 8]);
        assert_eq!(&pulse[11..13], &[2000, 2000]);
        assert_eq!(pulse.iter().sum::<u64>(), 8000);
    }

    /// The scenarios added for the short-window engine: same seed, same bytes; another seed, others.
    const NEW_SCENARIOS: [Scenario; 7] = [
        Scenario::SynBurst,
        Scenario::SourcesAtFloor,
        Scenario::LearnedFloor,
        Scenario::SigSynFlood,
        Scenario::SigUdpFlood,
        Scenario::SigAckFlood,
        Scenario::BenignDay,
    ];

    /// IPv4 and TCP header fields of a frame: (TTL, DF, IP total length, TCP window, TCP options
    /// length, TCP flags).
    fn tcp_fields(f: &[u8]) -> (u8, bool, u16, u16, usize, u8) {
        assert_eq!(f[12..14], [8, 0]);
        assert_eq!(f[14], 0x45);
        let total = u16::from_be_bytes([f[16], f[17]]);
        let df = f[20] & 0x40 != 0;
        let opts = usize::from(f[46] >> 4) * 4 - 20;
        let win = u16::from_be_bytes([f[48], f[49]]);
        (f[22], df, total, win, opts, f[47])
    }

    fn in_legit_net(a: IpAddr) -> bool {
        matches!(a, IpAddr::V4(v) if u32::from(v) >> 16 == 0x6440)
    }

    #[test]
    fn new_scenarios_are_deterministic_per_seed() {
        let o = short();
        for s in NEW_SCENARIOS {
            let (a, ra) = gen(s, &o);
            let (b, rb) = gen(s, &o);
            assert!(a == b && ra == rb, "{s}");
            let (c, _) = gen(
                s,
                &SynthOptions {
                    seed: 7,
                    ..o.clone()
                },
            );
            assert_ne!(a, c, "{s}");
        }
    }

    #[test]
    fn syn_burst_victim_hears_nothing_before_the_burst() {
        for victim in ["198.51.100.10", "2001:db8:100::10"] {
            let victim: IpAddr = victim.parse().unwrap();
            let o = SynthOptions {
                attack_pps: 25_000,
                attack_duration: Duration::from_millis(40),
                victim: Some(victim),
                ..short()
            };
            let (bytes, r) = gen(Scenario::SynBurst, &o);
            let t0 = o.start.as_nanos() + 2_000_000_000;
            let (mut to_victim, mut other) = (0, 0);
            for (t, f) in records(&bytes) {
                let (src, dst) = ip_of(f);
                assert_ne!(src, victim, "the victim sent a packet");
                if dst == victim {
                    assert!((t0..t0 + 40_000_000).contains(&t), "victim packet at {t}");
                    let (proto, _, dport, flags) = check_frame(f, &o);
                    assert_eq!((proto, dport, flags), (6, 80, SYN));
                    to_victim += 1;
                } else {
                    other += 1;
                }
            }
            assert_eq!(to_victim, 1000, "{victim}");
            assert!(other > 8000, "background of {other} packets");
            assert_eq!(r.labels.len(), 1);
            let l = &r.labels[0];
            assert_eq!(
                (l.scope, l.key, l.class),
                (
                    Scope::DstHost,
                    Key::host(victim),
                    AttackClass::SynFlood.into()
                )
            );
            assert!(l.first_packet.as_nanos() >= t0);
            assert!(l.last_packet.as_nanos() < t0 + 40_000_000);
        }
    }

    #[test]
    fn sources_at_floor_sources_are_steady_and_labelled() {
        for (sources, n) in [(DEFAULT_SOURCES, 4usize), (10, 10)] {
            let o = SynthOptions {
                attack_pps: 4800,
                sources,
                ..short()
            };
            let (bytes, r) = gen(Scenario::SourcesAtFloor, &o);
            let victim: IpAddr = "198.51.100.10".parse().unwrap();
            assert_eq!(r.labels.len(), 1 + n);
            assert_eq!(
                (r.labels[0].scope, r.labels[0].key, r.labels[0].class),
                (
                    Scope::DstHost,
                    Key::host(victim),
                    AttackClass::SynFlood.into()
                )
            );
            // Per source: packets per 200 ms slot of the attack, first and last packet.
            let t0 = o.start.as_nanos() + 2_000_000_000;
            let mut per: HashMap<IpAddr, (Vec<u64>, u64, u64)> = HashMap::new();
            let mut background = 0;
            for (t, f) in records(&bytes) {
                let (src, dst) = ip_of(f);
                let IpAddr::V4(s4) = src else {
                    background += 1;
                    continue;
                };
                if !is_public(u32::from(s4)) {
                    background += 1;
                    continue;
                }
                let (proto, _, dport, flags) = check_frame(f, &o);
                assert_eq!((dst, proto, dport, flags), (victim, 6, 80, SYN));
                let e = per.entry(src).or_insert((vec![0; 10], t, t));
                e.0[((t - t0) / 200_000_000) as usize] += 1;
                e.2 = t;
            }
            assert!(background > 9000, "{background}");
            assert_eq!(per.len(), n);
            let each = 4800 / n as u64 / 5;
            for l in &r.labels[1..] {
                assert_eq!(
                    (l.scope, l.class),
                    (Scope::SrcHost, AttackClass::SynFlood.into())
                );
                let (src, (slots, first, last)) = per
                    .iter()
                    .find(|(a, _)| Key::host(**a) == l.key)
                    .expect("a labelled source sent nothing");
                assert!(
                    slots.iter().all(|&c| c.abs_diff(each) <= 1),
                    "{src}: {slots:?}, want {each} per 200 ms"
                );
                assert_eq!(
                    (l.first_packet.as_nanos(), l.last_packet.as_nanos()),
                    (*first, *last)
                );
            }
        }
        let bad = |sources| {
            let o = SynthOptions { sources, ..short() };
            matches!(
                write_pcap(Scenario::SourcesAtFloor, &o, Vec::new()),
                Err(SynthError::BadOptions(_))
            )
        };
        assert!(bad(0) && bad(FLOOR_SOURCES_MAX + 1) && !bad(FLOOR_SOURCES_MAX));
    }

    #[test]
    fn learned_floor_is_steady_legit_connections_then_a_small_flood() {
        let o = SynthOptions {
            duration: Duration::from_secs(70),
            attack_start: Duration::from_secs(60),
            attack_duration: Duration::from_secs(5),
            background_pps: 100,
            attack_pps: 200,
            ..SynthOptions::default()
        };
        let (bytes, r) = gen(Scenario::LearnedFloor, &o);
        let victim: IpAddr = "198.51.100.10".parse().unwrap();
        let (t0, t1) = (
            o.start.as_nanos() + 60_000_000_000,
            o.start.as_nanos() + 65_000_000_000,
        );
        let (mut syn_before, mut inbound_before, mut attack) = (0u64, 0u64, 0u64);
        // Per connection (client, port): first and last packet time.
        let mut conns: HashMap<(IpAddr, u16), (u64, u64)> = HashMap::new();
        for (t, f) in records(&bytes) {
            let (src, dst) = ip_of(f);
            let (proto, sport, dport, flags) = check_frame(f, &o);
            assert_eq!(proto, 6);
            let (ttl, df, _, win, opts, _) = tcp_fields(f);
            if in_legit_net(src) {
                assert_eq!((dst, dport), (victim, 443));
                assert!(df && ((44..=64).contains(&ttl) || (108..=128).contains(&ttl)));
                if flags == SYN {
                    assert_eq!((win, opts), (64240, 20));
                    syn_before += u64::from(t < t0);
                }
                inbound_before += u64::from(t < t0);
                conns.entry((src, sport)).or_insert((t, t)).1 = t;
            } else if src == victim {
                assert!(in_legit_net(dst) && sport == 443 && ttl == 64);
                conns.get_mut(&(dst, dport)).expect("reply before SYN").1 = t;
            } else {
                assert!(matches!(src, IpAddr::V4(a) if is_public(u32::from(a))));
                assert_eq!((dst, dport, flags), (victim, 443, SYN));
                assert!((t0..t1).contains(&t));
                attack += 1;
            }
        }
        assert_eq!(attack, 1000);
        // 10 SYN/s and 50 packets/s in from the legit clients, within 20 %.
        let syn_rate = syn_before as f64 / 60.0;
        assert!((8.0..12.0).contains(&syn_rate), "legit SYN rate {syn_rate}");
        let in_rate = inbound_before as f64 / 60.0;
        assert!(
            (40.0..60.0).contains(&in_rate),
            "legit inbound rate {in_rate}"
        );
        // A connection lasts about 100 ms.
        let spans: Vec<u64> = conns.values().map(|(a, b)| b - a).collect();
        let mean = spans.iter().sum::<u64>() as f64 / spans.len() as f64 / 1e6;
        assert!((60.0..140.0).contains(&mean), "mean connection {mean} ms");
        assert!(spans.iter().all(|&d| d < 300_000_000));
        assert_eq!(r.labels.len(), 1);
        assert!(r.labels[0].first_packet.as_nanos() >= t0);
    }

    #[test]
    fn signature_floods_keep_legit_and_attack_apart() {
        let o = short();
        let victim: IpAddr = "198.51.100.10".parse().unwrap();
        let (t0, t1) = (
            o.start.as_nanos() + 2_000_000_000,
            o.start.as_nanos() + 4_000_000_000,
        );
        for (s, port) in [
            (Scenario::SigSynFlood, 80),
            (Scenario::SigUdpFlood, 53),
            (Scenario::SigAckFlood, 443),
        ] {
            let (bytes, r) = gen(s, &o);
            let (mut legit_in, mut replies, mut attack) = (0u64, 0u64, 0u64);
            let (mut ttls, mut ids, mut lens, mut attack_srcs) = (
                HashSet::new(),
                HashSet::new(),
                HashSet::new(),
                HashSet::new(),
            );
            for (t, f) in records(&bytes) {
                let (src, dst) = ip_of(f);
                let (proto, sport, dport, flags) = check_frame(f, &o);
                let ttl = f[22];
                let df = f[20] & 0x40 != 0;
                let ip_len = u16::from_be_bytes([f[16], f[17]]);
                let udp_payload = &f[42..14 + usize::from(ip_len)];
                if in_legit_net(src) {
                    assert_eq!((dst, dport), (victim, port), "{s}");
                    assert!(
                        (44..=64).contains(&ttl) || (108..=128).contains(&ttl),
                        "{s}"
                    );
                    ttls.insert(ttl);
                    ids.insert(u16::from_be_bytes([f[18], f[19]]));
                    lens.insert(ip_len);
                    legit_in += 1;
                    if proto == 6 {
                        let (_, df, _, win, opts, _) = tcp_fields(f);
                        assert!(df, "{s}");
                        if flags == SYN {
                            assert_eq!((win, opts), (64240, 20), "{s}");
                        } else {
                            assert!(opts == 12 && (500..=3000).contains(&win), "{s}: {win}");
                        }
                    } else {
                        assert_eq!(proto, 17);
                        // A DNS query: one question, not the flood's payload.
                        assert_eq!(&udp_payload[2..6], &[1, 0, 0, 1], "{s}");
                    }
                } else if src == victim {
                    assert!(in_legit_net(dst) && sport == port, "{s}");
                    replies += 1;
                } else {
                    assert!(
                        matches!(src, IpAddr::V4(a) if is_public(u32::from(a))),
                        "{s}: {src}"
                    );
                    assert_eq!((dst, dport), (victim, port), "{s}");
                    assert!((t0..t1).contains(&t), "{s}");
                    assert!(!df, "{s}");
                    attack_srcs.insert(src);
                    attack += 1;
                    match s {
                        Scenario::SigSynFlood => {
                            let (ttl, _, len, win, opts, _) = tcp_fields(f);
                            assert_eq!((flags, ttl, len, win, opts), (SYN, 64, 40, 512, 0));
                        }
                        Scenario::SigAckFlood => {
                            let (ttl, _, len, win, opts, _) = tcp_fields(f);
                            assert_eq!((flags, ttl, len, win, opts), (ACK, 128, 40, 1024, 0));
                        }
                        _ => {
                            assert_eq!((proto, ttl, ip_len), (17, 57, 20 + 8 + 512));
                            assert!(udp_payload.iter().all(|&b| b == b'X'));
                        }
                    }
                }
            }
            assert_eq!(attack, 10_000, "{s}");
            let legit_pps = legit_in as f64 / 5.0;
            assert!((1800.0..2200.0).contains(&legit_pps), "{s}: {legit_pps}");
            assert!(replies > legit_in / 2, "{s}: {replies} replies");
            assert!(
                ttls.len() > 20 && ids.len() > 5000 && lens.len() > 20,
                "{s}"
            );
            if s == Scenario::SigUdpFlood {
                assert!((250..=300).contains(&attack_srcs.len()));
            } else {
                assert!(attack_srcs.len() > 9_900);
            }
            assert_eq!(r.labels.len(), 1);
        }
    }

    #[test]
    fn benign_day_bursts_come_every_30_s_and_surges_every_2_min() {
        let mut rng = Rng::new(5, 4);
        let mut d = Day::new(1440.0, &mut rng);
        // Runs of time with the page (3x) and surge (2x) factor: (start, end).
        let mut pages: Vec<(f64, f64)> = Vec::new();
        let mut surges: Vec<(f64, f64)> = Vec::new();
        let mut t = 0.0;
        while t < 1440.0 {
            d.advance(t, &mut rng);
            let (m, until) = d.burst(t);
            for (runs, factor) in [(&mut pages, 3.0), (&mut surges, 2.0)] {
                if (m / factor).fract() == 0.0 {
                    match runs.last_mut() {
                        Some(r) if r.1 == t => r.1 = until,
                        _ => runs.push((t, until)),
                    }
                }
            }
            t = until;
        }
        assert!((36..=72).contains(&pages.len()), "{} pages", pages.len());
        assert!(pages.iter().all(|(a, b)| (0.1..=0.3).contains(&(b - a))));
        assert!(pages
            .windows(2)
            .all(|w| (20.0..=40.0).contains(&(w[1].0 - w[0].0))));
        assert!((9..=16).contains(&surges.len()), "{} surges", surges.len());
        assert!(surges.iter().all(|(a, b)| (b - a - 2.0).abs() < 1e-9));
        // The smooth part: night at ~30 % of the peak, at 04:00; peak in the afternoon.
        let shape: Vec<f64> = (0..24).map(|h| d.shape((h * 60) as f64 + 30.0)).collect();
        let (lo, hi) = (
            shape.iter().copied().fold(1.0, f64::min),
            shape.iter().copied().fold(0.0, f64::max),
        );
        assert!((0.28..0.33).contains(&(lo / hi)) && hi <= 1.0 && hi > 0.99);
        let at = |x: f64| shape.iter().position(|&s| s == x).unwrap();
        assert!(
            (3..=4).contains(&at(lo)) && (15..=17).contains(&at(hi)),
            "{shape:?}"
        );
    }

    #[test]
    fn benign_day_follows_the_day_to_the_victim_and_its_neighbours() {
        let o = SynthOptions {
            duration: Duration::from_secs(24 * 60),
            background_pps: 300,
            ..SynthOptions::default()
        };
        let (bytes, r) = gen(Scenario::BenignDay, &o);
        assert!(r.labels.is_empty());
        let hosts: Vec<IpAddr> = [
            "198.51.100.10",
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        // Packets per minute; sessions (SYNs, queries, echo requests) per destination.
        let mut per_min = [0u64; 24];
        let mut sessions: HashMap<IpAddr, u64> = HashMap::new();
        let mut protos = HashSet::new();
        for (i, (t, f)) in records(&bytes).into_iter().enumerate() {
            per_min[((t - o.start.as_nanos()) / 60_000_000_000) as usize] += 1;
            let (src, dst) = ip_of(f);
            let (client, server) = if in_legit_net(src) {
                (src, dst)
            } else {
                (dst, src)
            };
            assert!(
                in_legit_net(client) && hosts.contains(&server),
                "{src} > {dst}"
            );
            let proto = f[23];
            protos.insert(proto);
            let opening = match proto {
                6 => f[47] == SYN,
                17 => u16::from_be_bytes([f[36], f[37]]) == 53,
                _ => f[34] == 8,
            };
            if opening {
                assert_eq!(client, src);
                *sessions.entry(server).or_default() += 1;
            }
            if i % 7 == 0 {
                check_frame(f, &o);
            }
        }
        assert_eq!(protos, HashSet::from([1, 6, 17]));
        let total: u64 = sessions.values().sum();
        let victim_share = sessions[&hosts[0]] as f64 / total as f64;
        assert!(
            (0.45..0.55).contains(&victim_share),
            "victim {victim_share}"
        );
        assert!(hosts[1..]
            .iter()
            .all(|h| sessions[h] as f64 > 0.13 * total as f64));
        // The busiest minute is at about --background-pps, the quietest (04:00) ~30 % of it.
        let pps: Vec<f64> = per_min.iter().map(|&n| n as f64 / 60.0).collect();
        let (lo, hi) = (
            pps.iter().copied().fold(f64::MAX, f64::min),
            pps.iter().copied().fold(0.0, f64::max),
        );
        assert!((270.0..345.0).contains(&hi), "peak {hi} pps: {pps:?}");
        assert!((0.25..0.36).contains(&(lo / hi)), "night {lo} pps: {pps:?}");
        let at = |x: f64| pps.iter().position(|&p| p == x).unwrap();
        assert!(
            (2..=5).contains(&at(lo)) && (14..=18).contains(&at(hi)),
            "{pps:?}"
        );
        // Growth: 16:00-24:00 mirrors 08:00-16:00 on the cycle, and is ~9 % higher.
        let (am, pm) = (
            pps[8..16].iter().sum::<f64>(),
            pps[16..].iter().sum::<f64>(),
        );
        assert!(pm > 1.04 * am, "{pps:?}");
    }

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

    #[test]
    fn bad_options_are_refused() {
        let bad = |s: Scenario, o: SynthOptions| {
            matches!(
                write_pcap(s, &o, Vec::new()),
                Err(SynthError::BadOptions(_))
            )
        };
        let o = short();
        assert!(bad(
            Scenario::SynFlood,
            SynthOptions {
                duration: Duration::ZERO,
                ..o.clone()
            }
        ));
        assert!(bad(
            Scenario::SynFlood,
            SynthOptions {
                attack_pps: 0,
                ..o.clone()
            }
        ));
        assert!(bad(
            Scenario::SynFlood,
            SynthOptions {
                attack_start: Duration::from_secs(9),
                ..o.clone()
            }
        ));
        assert!(bad(
            Scenario::UdpFlood,
            SynthOptions {
                victim: Some("2001:db8::1".parse().unwrap()),
                ..o.clone()
            }
        ));
        assert!(bad(
            Scenario::Ipv6SynFlood,
            SynthOptions {
                victim: Some("192.0.2.1".parse().unwrap()),
                ..o.clone()
            }
        ));
        assert!(bad(
            Scenario::SpoofedSources,
            SynthOptions {
                sources: 0,
                ..o.clone()
            }
        ));
        assert!(bad(
            Scenario::Benign,
            SynthOptions {
                start: Timestamp::from_secs_nanos(u64::from(u32::MAX), 0),
                ..o.clone()
            }
        ));
        assert!(!bad(
            Scenario::Benign,
            SynthOptions {
                attack_pps: 0,
                ..o.clone()
            }
        ));
        // A v6 victim works for the TCP scenarios.
        let v6 = SynthOptions {
            victim: Some("2001:db8:100::7".parse().unwrap()),
            ..o
        };
        let (_, r) = gen(Scenario::SynFlood, &v6);
        assert_eq!(r.labels[0].key.to_string(), "2001:db8:100::7");
    }

    /// `cargo test --release -- --ignored --nocapture synth::tests::bench`
    #[test]
    #[ignore]
    fn bench_10m_min_size_syn_flood() {
        let o = SynthOptions {
            duration: Duration::from_secs(10),
            attack_start: Duration::ZERO,
            attack_duration: Duration::from_secs(10),
            attack_pps: 1_000_000,
            background_pps: 0,
            min_size: true,
            ..SynthOptions::default()
        };
        let dir = match std::env::var_os("SYNTH_BENCH_DIR") {
            Some(d) => tempfile::tempdir_in(d).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let path = dir.path().join("bench.pcap");
        let t = std::time::Instant::now();
        let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let r = write_pcap(Scenario::SynFlood, &o, f).unwrap();
        let el = t.elapsed();
        assert_eq!(r.packets, 10_000_000);
        println!(
            "10M min-size syn-flood: {:.3} s, {:.2} Mpps, {} bytes",
            el.as_secs_f64(),
            r.packets as f64 / el.as_secs_f64() / 1e6,
            std::fs::metadata(&path).unwrap().len()
        );
        let t = std::time::Instant::now();
        let r = write_pcap(Scenario::SynFlood, &o, std::io::sink()).unwrap();
        let el = t.elapsed();
        println!(
            "same to io::sink: {:.3} s, {:.2} Mpps",
            el.as_secs_f64(),
            r.packets as f64 / el.as_secs_f64() / 1e6
        );
        for s in Scenario::ALL {
            let t = std::time::Instant::now();
            let r = write_pcap(s, &SynthOptions::for_scenario(s), std::io::sink()).unwrap();
            println!(
                "{:16} {:>8} packets {:>11} bytes {:.3} s",
                s.name(),
                r.packets,
                r.bytes,
                t.elapsed().as_secs_f64()
            );
        }
    }
}
