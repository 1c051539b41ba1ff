//! The web scenarios: request floods and their look-alikes (issue 23), made of whole TCP/HTTP/TLS
//! sessions with a small website.
//!
//! The site is the victim (198.51.100.10 unless `--victim`; the quiet-host scenarios put it on .80
//! of the victim's /24 instead), `www.example.com` on port 80 and 443 (nginx, TLS 1.3). Its
//! visitors are browsers in 100.64.0.0/16 ([`Visit`]): Chrome, Edge, Firefox and Safari with their
//! own heads and ClientHellos, 70 % over TLS, a page and its assets at a time. Attackers are hosts
//! of 203.0.113.0/24 running a tool ([`http::Agent`]: HOIC, Mirai, python-requests, Go,
//! slowloris.py, a handshake flooder), except the quiet-host scenarios' spoofed sources and crowd.
//! Every connection is a correct one ([`conn`]): only spoofed SYNs fail to complete a handshake.
//!
//! Rates are in the scenario's own unit, set by `attack_pps` and `background_pps`
//! ([`Scenario::describe`]); defaults in [`defaults`]. The first 30 s are the site's normal
//! traffic only, so that baselines learn it. Each flow is planned in full (a few bytes a request),
//! then played packet by packet; a flow holds the bytes of one exchange at a time.

mod attackers;
mod conn;
mod http;
mod quiet;
mod tls;
mod visitors;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::address::{Spoof, LEGIT_NET};
use super::clients::client_stack;
use super::output::pcap_out;
use super::packet::Frame;
use super::plan::capture_end;
use super::rng::Rng;
use super::{Label, LabelClass, Scenario, SynthError, SynthOptions, SynthReport, DEFAULT_SOURCES};
use crate::alert::AttackClass;
use crate::key::{Key, Scope};
use crate::time::Timestamp;
use conn::{Client, Conn, ConnPlan, Opening, Step};
use http::{Agent, Ask, Resource};
use visitors::Visit;

/// A request-flood class of issue 23, named as alerts will name it; labels carry it until the
/// alerts' [`AttackClass`] has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// Requests per second far over the site's normal.
    HttpFlood,
    /// Completed handshakes or TLS hellos per second far over the normal.
    ConnectionFlood,
    /// Request heads held open unfinished.
    Slowloris,
}

impl RequestClass {
    /// `http_flood`, `connection_flood`, `slowloris`.
    pub fn name(self) -> &'static str {
        match self {
            RequestClass::HttpFlood => "http_flood",
            RequestClass::ConnectionFlood => "connection_flood",
            RequestClass::Slowloris => "slowloris",
        }
    }
}

/// The site's name: Host header and SNI.
const SITE: &str = "www.example.com";
const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000_000_000;
/// Most requests (or connections, or SYNs) a web scenario plans: a few hundred MB of capture.
const MAX_EVENTS: f64 = 2_000_000.0;

/// A web scenario's defaults: capture length, attack start and length (s), attack rate, site
/// requests/s; `None` for the other scenarios.
pub(super) fn defaults(s: Scenario) -> Option<SynthOptions> {
    let (duration, start, len, rate, site) = match s {
        Scenario::HttpFlood => (90, 30, 45, 50, 4),
        Scenario::HttpDdos => (90, 30, 20, 400, 4),
        Scenario::HttpsFlood => (90, 30, 45, 90, 4),
        Scenario::HttpFewHeavy => (90, 30, 45, 180, 20),
        Scenario::TlsFlood => (90, 30, 20, 300, 4),
        Scenario::Slowloris => (120, 30, 90, 50, 4),
        Scenario::HttpFlashCrowd => (90, 30, 20, 16, 4),
        Scenario::BusySite => (150, 30, 120, 200, 20),
        // a minute of the quiet host's normal first: its baseline is warm (docs/tuning.md)
        Scenario::QuietHostSyn | Scenario::QuietHostIcmp | Scenario::QuietHostScan => {
            (120, 60, 30, 300, 4)
        }
        Scenario::QuietHostCrowd => (120, 60, 10, 300, 4),
        _ => return None,
    };
    Some(SynthOptions {
        duration: Duration::from_secs(duration),
        attack_start: Duration::from_secs(start),
        attack_duration: Duration::from_secs(len),
        attack_pps: rate,
        background_pps: site,
        ..SynthOptions::default()
    })
}

/// The attacking hosts of a scenario when the options leave [`SynthOptions::sources`] at
/// [`DEFAULT_SOURCES`]; `None` where they are not hosts of 203.0.113.0/24.
fn default_sources(s: Scenario) -> Option<u64> {
    match s {
        Scenario::HttpFlood => Some(4),
        Scenario::HttpDdos => Some(90),
        Scenario::HttpsFlood => Some(6),
        Scenario::HttpFewHeavy => Some(3),
        Scenario::TlsFlood => Some(50),
        Scenario::Slowloris => Some(3),
        _ => None,
    }
}

impl Scenario {
    /// The quiet-host scenarios: a host whose whole normal is a ping now and then, beside the
    /// site.
    pub fn is_quiet_host(self) -> bool {
        matches!(
            self,
            Scenario::QuietHostSyn
                | Scenario::QuietHostIcmp
                | Scenario::QuietHostScan
                | Scenario::QuietHostCrowd
        )
    }
}

/// The alert class a correct detector raises on the victim, if any.
fn class(s: Scenario) -> Option<LabelClass> {
    match s {
        Scenario::HttpFlood
        | Scenario::HttpDdos
        | Scenario::HttpsFlood
        | Scenario::HttpFewHeavy => Some(LabelClass::Request(RequestClass::HttpFlood)),
        Scenario::TlsFlood => Some(LabelClass::Request(RequestClass::ConnectionFlood)),
        Scenario::Slowloris => Some(LabelClass::Request(RequestClass::Slowloris)),
        Scenario::QuietHostSyn => Some(LabelClass::Attack(AttackClass::SynFlood)),
        Scenario::QuietHostIcmp => Some(LabelClass::Attack(AttackClass::IcmpFlood)),
        _ => None,
    }
}

/// Everything a web scenario's capture is made of.
struct WebPlan {
    /// Sorted by `open_at`.
    flows: Vec<ConnPlan>,
    end: u64,
    victim: u32,
    attackers: Vec<u32>,
}

/// Builds a web scenario's flows.
struct Planner {
    rng: Rng,
    /// The web server.
    site: u32,
    /// The target of the attack (the site but in quiet-host-syn).
    victim: u32,
    start: u64,
    end: u64,
    /// [from, to) of the attack, clipped to the capture.
    attack: (u64, u64),
    flows: Vec<ConnPlan>,
    /// Distinct newcomers drawn so far (flash crowd, busy site).
    newcomers: u32,
    attackers: Vec<u32>,
}

/// A uniform time in [lo, hi] milliseconds, in ns.
fn ms(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    rng.range(lo * MS, hi * MS)
}

/// An exponential gap (ns) of a Poisson process at `rate` per second.
fn exp_gap(rng: &mut Rng, rate: f64) -> u64 {
    (-(1.0 - rng.unit()).ln() / rate * 1e9) as u64
}

/// An ephemeral port of a Linux-like (32768–60999) or Windows-like (49152–65535) stack, with room
/// for `conns` more after it.
fn ephemeral(rng: &mut Rng, linux: bool, conns: u64) -> u16 {
    let (lo, hi) = if linux {
        (32_768, 60_999)
    } else {
        (49_152, 65_535)
    };
    let hi = hi - conns.min(hi - lo);
    rng.range(lo, hi) as u16
}

/// `n` event times over `[from, from + len)`, the k-th where `cum` (the expected count by t
/// seconds) reaches k + U(0, 1): as many events as expected, spread as the rate says.
fn arrivals(rng: &mut Rng, from: u64, len: u64, cum: impl Fn(f64) -> f64) -> Vec<u64> {
    let horizon = len as f64 / 1e9;
    let n = cum(horizon).max(0.0).floor() as u64;
    let mut times = Vec::with_capacity(n as usize);
    for k in 0..n {
        let x = k as f64 + rng.unit();
        let (mut lo, mut hi) = (0.0, horizon);
        for _ in 0..50 {
            let mid = 0.5 * (lo + hi);
            if cum(mid) < x {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        times.push(from + (hi * 1e9) as u64);
    }
    times
}

impl Planner {
    fn client(&mut self, addr: u32, rtt: (u64, u64), conns: u64) -> Client {
        let (ttl, linux) = client_stack(addr);
        Client {
            addr,
            port: ephemeral(&mut self.rng, linux, conns),
            ttl,
            linux,
            rtt: ms(&mut self.rng, rtt.0, rtt.1),
        }
    }

    /// Adds a flow of `client` opening at `open_at` (the next port for each further flow).
    fn flow(
        &mut self,
        open_at: u64,
        client: &mut Client,
        agent: Agent,
        port: u16,
        steps: Vec<Step>,
        attack: bool,
    ) {
        self.flows.push(ConnPlan {
            open_at,
            client: *client,
            server: if attack { self.victim } else { self.site },
            port,
            agent,
            tls: port == 443,
            opening: Opening::Handshake,
            steps,
            attack,
            seed: self.rng.next_u64(),
        });
        client.port = client.port.wrapping_add(1);
    }

    /// A flow to the victim's `port` that only opens, with `opening`, and sends nothing more: a
    /// flooder's SYN or ping, a scanner's probe, a monitor's ping.
    fn probe(&mut self, open_at: u64, client: Client, port: u16, opening: Opening, attack: bool) {
        self.flows.push(ConnPlan {
            open_at,
            client,
            server: self.victim,
            port,
            agent: Agent::HandshakeFlooder,
            tls: false,
            opening,
            steps: Vec::new(),
            attack,
            seed: self.rng.next_u64(),
        });
    }

    /// `n` distinct hosts of 203.0.113.0/24 (1 ≤ n ≤ 254), the attackers.
    fn bots(&mut self, n: u64) -> Vec<u32> {
        let mut pool: Vec<u32> = (1..=254).collect();
        for i in 0..n as usize {
            let j = i + self.rng.below((pool.len() - i) as u64) as usize;
            pool.swap(i, j);
        }
        pool.truncate(n as usize);
        let bots: Vec<u32> = pool.into_iter().map(|h| 0xCB00_7100 | h).collect();
        self.attackers.extend(&bots);
        bots
    }

    /// A newcomer's address: distinct ones of 100.64.128.0/17 (the regular visitors use the lower
    /// half) in a scrambled order, 32 767 of them before they repeat.
    fn newcomer(&mut self) -> u32 {
        loop {
            let k = self.newcomers;
            self.newcomers = self.newcomers.wrapping_add(1);
            let host = k.wrapping_mul(0x2c1b).wrapping_add(0x1357) & 0x7fff;
            if host != 0x7fff {
                return LEGIT_NET | 0x8000 | host;
            }
        }
    }
}

/// Checks the options of web scenario `s`; returns the victim, the capture end and the number of
/// attacking hosts.
fn check(s: Scenario, opts: &SynthOptions) -> Result<(u32, u64, u64), SynthError> {
    let bad = |m: String| Err(SynthError::BadOptions(m));
    let end = capture_end(opts)?;
    let victim = match opts.victim.unwrap_or_else(|| s.default_victim()) {
        IpAddr::V4(a) => u32::from(a),
        v6 => return bad(format!("{s} needs an IPv4 victim, got {v6}")),
    };
    if opts.min_size {
        return bad(format!(
            "{s} is made of payloads: --min-size does not apply"
        ));
    }
    if opts.attack_pps == 0 || opts.attack_duration.is_zero() {
        return bad(format!("{s} needs attack_pps > 0 and attack_duration > 0"));
    }
    if opts.attack_start >= opts.duration {
        return bad(format!(
            "attack_start {:?} is not before the capture end {:?}",
            opts.attack_start, opts.duration
        ));
    }
    let sources = match default_sources(s) {
        Some(n) if opts.sources == DEFAULT_SOURCES => n,
        Some(_) if !(1..=254).contains(&opts.sources) => {
            return bad(format!(
                "{s} takes 1 to 254 sources (hosts of 203.0.113.0/24), got {}",
                opts.sources
            ))
        }
        _ => opts.sources,
    };
    let (rate, duration) = (opts.attack_pps as f64, opts.duration.as_secs_f64());
    let attack_s = opts
        .attack_duration
        .min(opts.duration - opts.attack_start)
        .as_secs_f64();
    let attack = match s {
        Scenario::HttpFlashCrowd => rate * attack_s * Visit::Crowd.requests(),
        Scenario::BusySite => rate * duration,
        _ => rate * attack_s,
    };
    let events = attack + opts.background_pps as f64 * duration;
    if events > MAX_EVENTS {
        return bad(format!(
            "{s} would plan {events:.0} requests, more than {MAX_EVENTS}: lower --attack-pps, \
             --background-pps or --duration"
        ));
    }
    Ok((victim, end, sources))
}

/// Plans every flow of web scenario `s`.
fn plan(s: Scenario, opts: &SynthOptions) -> Result<WebPlan, SynthError> {
    let (victim, end, sources) = check(s, opts)?;
    let start = opts.start.as_nanos();
    let from =
        start.saturating_add(u64::try_from(opts.attack_start.as_nanos()).unwrap_or(u64::MAX));
    let to = from
        .saturating_add(u64::try_from(opts.attack_duration.as_nanos()).unwrap_or(u64::MAX))
        .min(end);
    // quiet-host-*: the site is a neighbour of the quiet victim.
    let site = match s {
        _ if !s.is_quiet_host() => victim,
        _ if victim & 0xff == 80 => (victim & !0xff) | 81,
        _ => (victim & !0xff) | 80,
    };
    let mut p = Planner {
        rng: Rng::new(opts.seed, 0x3eb),
        site,
        victim,
        start,
        end,
        attack: (from, to),
        flows: Vec::new(),
        newcomers: 0,
        attackers: Vec::new(),
    };
    let (rate, site_rps) = (opts.attack_pps as f64, opts.background_pps as f64);
    if s != Scenario::BusySite && site_rps > 0.0 {
        p.regular_visitors(site_rps);
    }
    let per_bot = rate / sources as f64;
    match s {
        Scenario::HttpFlood => {
            let bots = p.bots(sources);
            p.keepalive_bots(
                &bots,
                |b| Agent::Hoic(b as u8),
                (3, 3),
                per_bot,
                80,
                |b, n| {
                    // Half the bots bust caches with a random id, the others hammer the front page.
                    let what = if b % 2 == 0 {
                        Resource::RandomId
                    } else {
                        Resource::Root
                    };
                    Ask::new(what, n)
                },
            );
        }
        Scenario::HttpDdos => {
            let bots = p.bots(sources);
            p.short_conn_bots(&bots, per_bot);
        }
        Scenario::HttpsFlood => {
            let bots = p.bots(sources);
            let half = bots.len().div_ceil(2);
            let agent = move |b| {
                if b < half {
                    Agent::GoHttp
                } else {
                    Agent::PythonRequests
                }
            };
            p.keepalive_bots(&bots, agent, (1, 2), per_bot, 443, |_, n| {
                Ask::new(Resource::Root, n)
            });
        }
        Scenario::HttpFewHeavy => {
            let bots = p.bots(sources);
            let agent = |_| Agent::PythonRequests;
            p.keepalive_bots(&bots, agent, (6, 6), per_bot, 80, |_, n| {
                Ask::new(Resource::Search, n)
            });
        }
        Scenario::TlsFlood => {
            let bots = p.bots(sources);
            p.handshake_bots(&bots, per_bot);
        }
        Scenario::Slowloris => {
            let bots = p.bots(sources);
            p.slowloris_bots(&bots, rate);
        }
        Scenario::HttpFlashCrowd => p.crowd(rate),
        Scenario::BusySite => p.growth(site_rps, rate),
        Scenario::QuietHostSyn => {
            p.pings();
            p.spoofed_syns(rate, opts.sources);
        }
        Scenario::QuietHostIcmp => {
            p.pings();
            p.spoofed_pings(rate, opts.sources);
        }
        Scenario::QuietHostScan => {
            p.pings();
            p.port_scan(rate);
        }
        Scenario::QuietHostCrowd => {
            p.pings();
            p.crowd_of_connections(rate);
        }
        _ => return Err(SynthError::BadOptions(format!("{s} is not a web scenario"))),
    }
    p.flows.sort_by_key(|f| f.open_at);
    p.attackers.sort_unstable();
    Ok(WebPlan {
        flows: p.flows,
        end,
        victim,
        attackers: p.attackers,
    })
}

/// The flows being played, earliest next packet first.
#[derive(Default)]
struct Live {
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    order: u64,
}

impl Live {
    fn next_time(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Takes `conn` in (or drops it when it has nothing to send).
    fn insert(&mut self, conn: Conn, slot: Option<usize>) {
        let Some(t) = conn.peek() else {
            if let Some(s) = slot {
                self.slots[s] = None;
                self.free.push(s);
            }
            return;
        };
        let s = match slot.or_else(|| self.free.pop()) {
            Some(s) => {
                self.slots[s] = Some(conn);
                s
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        self.order += 1;
        self.heap.push(Reverse((t, self.order, s)));
    }

    /// Writes the earliest packet into `frame`: its time, length, and whether an attacker sent it.
    fn emit(&mut self, frame: &mut Frame) -> Option<(u64, usize, bool)> {
        let Reverse((_, _, s)) = self.heap.pop()?;
        let mut conn = self.slots[s].take()?;
        let out = conn.emit(frame);
        self.insert(conn, Some(s));
        out
    }
}

/// Writes the capture of web scenario `s` (see [`super::write_pcap`]).
pub(super) fn write_pcap<W: Write>(
    s: Scenario,
    opts: &SynthOptions,
    out: W,
) -> Result<SynthReport, SynthError> {
    let plan = plan(s, opts)?;
    let mut out = pcap_out(out);
    let mut frame = Frame::new(opts.src_mac, opts.dst_mac);
    let mut flows = plan.flows.into_iter().peekable();
    let mut live = Live::default();
    let mut span: Option<(u64, u64)> = None;
    loop {
        let next = live.next_time();
        if let Some(f) = flows.next_if(|f| next.is_none_or(|t| f.open_at <= t)) {
            if f.open_at >= plan.end {
                break;
            }
            live.insert(Conn::new(f, SITE), None);
            continue;
        }
        if next.is_none_or(|t| t >= plan.end) {
            break;
        }
        let Some((ts, len, attack)) = live.emit(&mut frame) else {
            break;
        };
        let ts = ts / 1_000 * 1_000;
        if attack {
            span.get_or_insert((ts, ts)).1 = ts;
        }
        out.record(Timestamp(ts), &frame.buf[..len], len as u32)?;
    }
    out.flush()?;
    let label = class(s).zip(span).map(|(class, (first, last))| Label {
        scope: Scope::DstHost,
        key: Key::host(IpAddr::V4(Ipv4Addr::from(plan.victim))),
        class,
        first_packet: Timestamp(first),
        last_packet: Timestamp(last),
        attackers: plan
            .attackers
            .iter()
            .map(|&a| IpAddr::V4(Ipv4Addr::from(a)))
            .collect(),
    });
    Ok(SynthReport {
        packets: out.packets,
        bytes: out.bytes,
        labels: label.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests;
