//! The quiet-host scenarios beside quiet-host-syn: a spoofed ICMP flood on the quiet host, and two
//! look-alikes that must stay quiet — a port scan from one host, and a crowd of real connections.

use super::conn::{Client, Opening, Side, Step, What};
use super::http::{Agent, Ask, Resource};
use super::{arrivals, ms, Planner, Rng};

/// The ports a scanned quiet host answers on (the rest are filtered: no answer).
const OPEN_PORTS: [u16; 3] = [22, 80, 443];
/// The scanning host: a host of 203.0.113.0/24.
const SCANNER: u32 = 0xCB00_7145;

impl Planner {
    /// quiet-host-icmp: `rate` echo requests per second to the victim from spoofed sources
    /// (`sources` of them, in turn); the victim answers each.
    pub(super) fn spoofed_pings(&mut self, rate: f64, sources: u64) {
        let opening = |r: &mut Rng| Opening::Ping {
            ident: r.next_u16(),
            seq: r.next_u16(),
        };
        self.spoofed_flood(rate, sources, 0, |_| 0, opening);
    }

    /// quiet-host-scan: one host sends `rate` SYNs per second to the victim's ports in turn (from
    /// port 1), from random source ports; the open ports answer and the scanner resets them, the
    /// others are filtered.
    pub(super) fn port_scan(&mut self, rate: f64) {
        let (from, to) = self.attack;
        let scanner = self.client(SCANNER, (5, 20), 0);
        for (i, t) in arrivals(&mut self.rng, from, to - from, |t| rate * t)
            .into_iter()
            .enumerate()
        {
            let port = (i % 65_535) as u16 + 1;
            let answered = OPEN_PORTS.contains(&port);
            let client = Client {
                port: self.rng.range(32_768, 60_999) as u16,
                ..scanner
            };
            let opening = Opening::Spoofed {
                answered,
                reset: answered,
            };
            self.probe(t, client, port, opening, true);
        }
    }

    /// quiet-host-crowd: `rate` new clients per second (newcomers of 100.64.128.0/17) each open a
    /// connection to the victim's port 80, ask for its page and close.
    pub(super) fn crowd_of_connections(&mut self, rate: f64) {
        let (from, to) = self.attack;
        for t in arrivals(&mut self.rng, from, to - from, |t| rate * t) {
            let addr = self.newcomer();
            let mut client = self.client(addr, (10, 80), 1);
            let ask = Ask::new(Resource::Root, self.rng.next_u32());
            let steps = vec![
                Step::after(ms(&mut self.rng, 0, 2), What::Request(ask)),
                Step::after(ms(&mut self.rng, 1, 30), What::close(Side::Client)),
            ];
            self.flow(t, &mut client, Agent::GoHttp, 80, steps, true);
        }
    }
}
