//! The attackers: bots of 203.0.113.0/24 flooding the site with requests on keep-alive or short
//! connections, with TLS handshakes or with slowloris's unfinished heads; and quiet-host-syn's
//! spoofed SYNs (with the pings that are its victim's whole normal).

use super::conn::{Client, Opening, Side, Step, What};
use super::http::{Agent, Ask, Resource};
use super::{arrivals, exp_gap, ms, Planner, Rng, Spoof, LEGIT_NET, MS, SECOND};

/// slowloris opens its connections over this long.
const SLOWLORIS_OPENING: u64 = 10 * SECOND;

impl Planner {
    /// Bots holding `conns` keep-alive connections each, sending `rps` requests per second each
    /// over the attack, asking what `ask` says (bot index, random number).
    pub(super) fn keepalive_bots(
        &mut self,
        bots: &[u32],
        agent: impl Fn(usize) -> Agent,
        conns: (u64, u64),
        rps: f64,
        port: u16,
        ask: impl Fn(usize, u32) -> Ask,
    ) {
        let (from, to) = self.attack;
        for (b, &addr) in bots.iter().enumerate() {
            let k = self.rng.range(conns.0, conns.1);
            let mut client = self.client(addr, (10, 35), k);
            for c in 0..k {
                let open = if b + c as usize == 0 {
                    from
                } else {
                    from + ms(&mut self.rng, 0, 800)
                };
                let mut steps = Vec::new();
                if port == 443 {
                    steps.push(Step::after(
                        ms(&mut self.rng, 0, 1),
                        What::Hello { finish: true },
                    ));
                }
                let mut t = open;
                loop {
                    t += exp_gap(&mut self.rng, rps / k as f64);
                    if t >= to {
                        break;
                    }
                    let what = What::Request(ask(b, self.rng.next_u32()));
                    steps.push(Step::new(t, self.rng.range(100_000, 2 * MS), what));
                }
                steps.push(Step::new(to, 0, What::close(Side::Client)));
                self.flow(open, &mut client, agent(b), port, steps, true);
            }
        }
    }

    /// http-ddos: each bot sends `rps` requests per second over the attack, a new connection for
    /// every 1–5 of them.
    pub(super) fn short_conn_bots(&mut self, bots: &[u32], rps: f64) {
        let (from, to) = self.attack;
        for (b, &addr) in bots.iter().enumerate() {
            let expected = rps * (to - from) as f64 / 1e9;
            let mut client = self.client(addr, (20, 120), (expected / 2.0) as u64 + 10);
            let agent = Agent::Mirai(b as u8);
            let mut t = from + exp_gap(&mut self.rng, rps);
            while t < to {
                let open = t;
                let mut steps = Vec::new();
                for _ in 0..self.rng.range(1, 5) {
                    if t >= to {
                        break;
                    }
                    let n = self.rng.next_u32();
                    let ask = Ask::new(
                        if n.is_multiple_of(5) {
                            Resource::RandomId
                        } else {
                            Resource::Root
                        },
                        n,
                    );
                    steps.push(Step::new(
                        t,
                        self.rng.range(100_000, 2 * MS),
                        What::Request(ask),
                    ));
                    t += exp_gap(&mut self.rng, rps);
                }
                let gap = ms(&mut self.rng, 1, 30);
                steps.push(Step::after(gap, What::close(Side::Client)));
                self.flow(open, &mut client, agent, 80, steps, true);
            }
        }
    }

    /// tls-flood: each bot opens `rate` connections per second, says hello, takes the server's
    /// flight and closes, half with a FIN and half with an RST.
    pub(super) fn handshake_bots(&mut self, bots: &[u32], rate: f64) {
        let (from, to) = self.attack;
        for &addr in bots {
            let expected = rate * (to - from) as f64 / 1e9;
            let mut client = self.client(addr, (10, 80), (expected * 1.5) as u64 + 10);
            let mut t = from + exp_gap(&mut self.rng, rate);
            while t < to {
                let hello = Step::after(self.rng.range(50_000, MS), What::Hello { finish: false });
                let reset = self.rng.unit() < 0.5;
                let close = Step::after(
                    self.rng.range(200_000, 5 * MS),
                    What::Close {
                        by: Side::Client,
                        reset,
                    },
                );
                self.flow(
                    t,
                    &mut client,
                    Agent::HandshakeFlooder,
                    443,
                    vec![hello, close],
                    true,
                );
                t += exp_gap(&mut self.rng, rate);
            }
        }
    }

    /// slowloris: `rate` connections per second over the first 10 s of the attack, in turn from
    /// each bot; each sends an unfinished head, then a header line every 10–15 s, and closes when
    /// the attack ends.
    pub(super) fn slowloris_bots(&mut self, bots: &[u32], rate: f64) {
        let (from, to) = self.attack;
        let opening = SLOWLORIS_OPENING.min(to - from);
        let times = arrivals(&mut self.rng, from, opening, |t| rate * t);
        let mut clients: Vec<Client> = bots
            .iter()
            .map(|&a| self.client(a, (20, 150), times.len() as u64 / bots.len() as u64 + 1))
            .collect();
        for (i, t) in times.into_iter().enumerate() {
            let b = i % bots.len();
            let mut steps = vec![Step::after(self.rng.range(100_000, MS), What::PartialHead)];
            let mut at = t;
            loop {
                at += ms(&mut self.rng, 10_000, 15_000);
                if at >= to {
                    break;
                }
                steps.push(Step::new(at, 0, What::HeaderLine));
            }
            steps.push(Step::new(to, 0, What::close(Side::Client)));
            let mut client = clients[b];
            self.flow(t, &mut client, Agent::Slowloris(b as u8), 80, steps, true);
            clients[b] = client;
        }
    }

    /// quiet-host-syn: `rate` SYNs per second to the victim's port 443 from spoofed sources
    /// (`sources` of them, in turn); a third are answered, a fifth of those reset by the address's
    /// real owner.
    pub(super) fn spoofed_syns(&mut self, rate: f64, sources: u64) {
        let source_port = |r: &mut Rng| r.range(1024, 65535) as u16;
        self.spoofed_flood(rate, sources, 443, source_port, |r| {
            let answered = r.unit() < 1.0 / 3.0;
            let reset = answered && r.unit() < 0.2;
            Opening::Spoofed { answered, reset }
        });
    }

    /// `rate` packets per second to the victim's `port` from spoofed sources (`sources` of them,
    /// in turn) over the attack, each source port drawn by `source_port`, each opening by
    /// `opening`.
    pub(super) fn spoofed_flood(
        &mut self,
        rate: f64,
        sources: u64,
        port: u16,
        source_port: impl Fn(&mut Rng) -> u16,
        opening: impl Fn(&mut Rng) -> Opening,
    ) {
        let (from, to) = self.attack;
        let mut spoof = Spoof::v4(sources, &mut self.rng);
        for t in arrivals(&mut self.rng, from, to - from, |t| rate * t) {
            let r = &mut self.rng;
            let client = Client {
                addr: spoof.next(false).0,
                port: source_port(r),
                ttl: 40 + r.below(25) as u8,
                linux: true,
                rtt: ms(r, 30, 200),
            };
            let opening = opening(r);
            self.probe(t, client, port, opening, true);
        }
    }

    /// A monitoring host pings the victim every 15–25 s.
    pub(super) fn pings(&mut self) {
        let monitor = self.client(LEGIT_NET | 2, (2, 5), 0);
        let ident = self.rng.next_u16();
        let mut t = self.start + ms(&mut self.rng, 0, 5_000);
        let mut seq = 0u16;
        while t < self.end {
            seq = seq.wrapping_add(1);
            self.probe(t, monitor, 0, Opening::Ping { ident, seq }, false);
            t += ms(&mut self.rng, 15_000, 25_000);
        }
    }
}
