//! The site's visitors: browsers loading a page and its assets over one or two connections, as
//! regulars over the whole capture, as a flash crowd of newcomers, or as busy-site's growing
//! population.

use super::conn::{Client, Side, Step, What};
use super::http::{Agent, Ask, Resource};
use super::{arrivals, ms, Planner, LEGIT_NET, SECOND};

/// The server closes a keep-alive connection idle this long.
const KEEPALIVE_TIMEOUT: u64 = 15 * SECOND;

/// How a browser visits the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Visit {
    /// A regular visitor: 1–3 pages 4–14 s apart, each with 2–9 assets; two in five come back with
    /// a cache (304s) and cookies; the server closes the idle connections after 15 s.
    Regular,
    /// A flash-crowd newcomer: one page and 4–14 assets within ~2 s, then it leaves (closes 1–5 s
    /// later).
    Crowd,
    /// busy-site's visitor: one page and 2–6 assets, half of them with a cache, then it leaves.
    Brief,
}

impl Visit {
    /// Mean requests of a visit.
    pub(super) fn requests(self) -> f64 {
        match self {
            // Two pages of one and 5.5 assets, and a favicon when there are several pages.
            Visit::Regular => 2.0 * (1.0 + 5.5) + 2.0 / 3.0,
            Visit::Crowd => 1.0 + 9.0,
            Visit::Brief => 1.0 + 4.0,
        }
    }

    /// Assets per page, inclusive.
    fn assets(self) -> (u64, u64) {
        match self {
            Visit::Regular => (2, 9),
            Visit::Crowd => (4, 14),
            Visit::Brief => (2, 6),
        }
    }
}

/// One visit's browser, drawn per visit.
struct Browser {
    addr: u32,
    agent: Agent,
    tls: bool,
    /// When the second connection opens (plain HTTP only, 7 in 10).
    second_at: Option<u64>,
    /// Comes back with a cache (304s) and the site's cookie.
    returning: bool,
    rtt: u64,
}

/// A browser fitting a client's stack.
fn browser(linux: bool, r: u64) -> Agent {
    match (linux, r % 10) {
        (false, 0..=5) => Agent::Chrome(0),
        (false, 6..=7) => Agent::Edge,
        (false, _) => Agent::Firefox(0),
        (true, 0..=3) => Agent::Chrome(1),
        (true, 4..=6) => Agent::Safari,
        (true, 7..=8) => Agent::Chrome(2),
        (true, _) => Agent::Firefox(1),
    }
}

impl Planner {
    /// Regular visits over the whole capture, at `rps` requests per second.
    pub(super) fn regular_visitors(&mut self, rps: f64) {
        let rate = rps / Visit::Regular.requests();
        let times = arrivals(&mut self.rng, self.start, self.end - self.start, |t| {
            rate * t
        });
        for t in times {
            let addr = LEGIT_NET | self.rng.range(1, 0x7fff) as u32;
            self.visit(t, addr, Visit::Regular);
        }
    }

    /// One browser's visit: its page views on one or two connections (TLS or not), then the close.
    fn visit(&mut self, t0: u64, addr: u32, kind: Visit) {
        let mut client = self.client(addr, (8, 90), 2);
        let r = &mut self.rng;
        let tls = r.unit() < if kind == Visit::Crowd { 0.6 } else { 0.7 };
        let returning = match kind {
            Visit::Regular => r.unit() < 0.4,
            Visit::Brief => r.unit() < 0.5,
            Visit::Crowd => false,
        };
        let b = Browser {
            addr,
            agent: browser(client.linux, r.next_u64()),
            tls,
            // Over TLS a browser speaks HTTP/2: one connection to the site.
            second_at: (!tls && r.unit() < 0.7).then(|| t0 + 3 * client.rtt + ms(r, 20, 150)),
            returning,
            rtt: client.rtt,
        };
        let pages = if kind == Visit::Regular {
            r.range(1, 3)
        } else {
            1
        };
        let mut conns: [Vec<Step>; 2] = [Vec::new(), Vec::new()];
        let (mut t, mut prev) = (t0, None);
        for p in 0..pages {
            let page = self.page_view(&b, kind, t, prev, &mut conns);
            if p == 0 && pages > 1 {
                let ask = Ask {
                    cookie: true,
                    referer: Some(page),
                    visitor: addr,
                    ..Ask::new(Resource::Favicon, 0)
                };
                let at = conns[0].last().map_or(t, |s| s.at);
                conns[0].push(Step::new(at, ms(&mut self.rng, 1, 8), What::Request(ask)));
            }
            prev = Some(page);
            t += ms(&mut self.rng, 4_000, 14_000);
        }
        self.leave(&b, kind, t0, conns, &mut client);
    }

    /// A page and its assets, requested from `t` on `conns` (the assets shared with the second
    /// connection once it is open); returns the page.
    fn page_view(
        &mut self,
        b: &Browser,
        kind: Visit,
        t: u64,
        prev: Option<u32>,
        conns: &mut [Vec<Step>; 2],
    ) -> u32 {
        let r = &mut self.rng;
        let page = if prev.is_none() && r.unit() < 0.5 {
            0
        } else {
            r.below(64) as u32
        };
        let ask = Ask {
            visitor: b.addr,
            cookie: b.returning || prev.is_some(),
            referer: prev,
            ..Ask::new(Resource::Page, page)
        };
        conns[0].push(Step::new(t, ms(r, 0, 3), What::Request(ask)));
        // The assets, once the page is in and parsed.
        let mut t = t + 3 * b.rtt + ms(r, 30, 200);
        let (lo, hi) = kind.assets();
        for i in 0..r.range(lo, hi) {
            let what = match r.below(20) {
                _ if prev.is_none() && i == 0 => Resource::Css,
                0..=3 => Resource::Css,
                4..=8 => Resource::Js,
                9..=17 => Resource::Image,
                _ => Resource::Api,
            };
            let ask = Ask {
                visitor: b.addr,
                // The page set the site's cookie, if the browser had none.
                cookie: true,
                cached: b.returning && r.unit() < 0.6,
                referer: Some(page),
                ..Ask::new(what, r.below(1000) as u32)
            };
            let second = b.second_at.is_some_and(|at| t >= at) && i % 2 == 1;
            conns[usize::from(second)].push(Step::new(t, ms(r, 1, 8), What::Request(ask)));
            t += ms(r, 2, 40);
        }
        page
    }

    /// The visit's connections: a TLS hello first where it applies, the requests, then the close —
    /// by the server when the connection has been idle for its keep-alive timeout (regulars), by
    /// the browser 1–5 s after its last response (the others).
    fn leave(
        &mut self,
        b: &Browser,
        kind: Visit,
        t0: u64,
        conns: [Vec<Step>; 2],
        client: &mut Client,
    ) {
        let (by, idle) = match kind {
            Visit::Regular => (Side::Server, KEEPALIVE_TIMEOUT),
            _ => (Side::Client, ms(&mut self.rng, 1_000, 5_000)),
        };
        let close = Step::after(idle, What::close(by));
        let hello = Step::after(ms(&mut self.rng, 0, 1), What::Hello { finish: true });
        let opens = [Some(t0), b.second_at];
        for (requests, open) in conns.into_iter().zip(opens) {
            let Some(open) = open.filter(|_| !requests.is_empty()) else {
                continue;
            };
            let steps = b
                .tls
                .then_some(hello)
                .into_iter()
                .chain(requests)
                .chain([close]);
            let port = if b.tls { 443 } else { 80 };
            self.flow(open, client, b.agent, port, steps.collect(), false);
        }
    }

    /// A flash crowd: `rate` newcomers per second over the attack period.
    pub(super) fn crowd(&mut self, rate: f64) {
        let (from, to) = self.attack;
        for t in arrivals(&mut self.rng, from, to - from, |t| rate * t) {
            let addr = self.newcomer();
            self.visit(t, addr, Visit::Crowd);
        }
    }

    /// busy-site: newcomers whose requests rise linearly from `r0` to `r1` per second over the
    /// attack period, held at `r1` after it.
    pub(super) fn growth(&mut self, r0: f64, r1: f64) {
        let (a, b) = (
            (self.attack.0 - self.start) as f64 / 1e9,
            (self.attack.1 - self.start) as f64 / 1e9,
        );
        let per = Visit::Brief.requests();
        let cum = |t: f64| {
            let ramp = |x: f64| {
                let x = x.clamp(0.0, b - a);
                r0 * x + (r1 - r0) * x * x / (2.0 * (b - a).max(1e-9))
            };
            (r0 * t.min(a) + ramp(t - a) + r1 * (t - b).max(0.0)) / per
        };
        for t in arrivals(&mut self.rng, self.start, self.end - self.start, cum) {
            let addr = self.newcomer();
            self.visit(t, addr, Visit::Brief);
        }
    }
}
