//! The clients of one destination and their request signals, counted exactly while the destination
//! is hot: who sent the requests, opened the connections, held the heads open.
//!
//! Every client here completed a TCP handshake, so its address is its own (a spoofer cannot): what
//! is named is reliable, which is the point of request-flood attribution. Counting is exact (no
//! sketch) up to [`MAX_CLIENTS`] clients; later ones are counted together as others, so memory is
//! bounded and the heaviest clients (who come early and stay) are exact.
//!
//! A flash crowd and a request flood both raise a site's request rate; what differs is who sends
//! it. A visitor's browser loads a page and its assets (5 to 15 requests over one or two
//! connections) in a second or two and goes quiet; a flood's clients keep going.
//! [`Clients::looks_like_flood`] asks whether clients that kept going for [`PERSIST_NS`] at a
//! steady rate carry a good share of it. That takes two seconds to see, and the first two seconds
//! of a crowd and of a flood look alike (a few new clients, each sending fast).

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::FixedState;

/// Clients counted one by one.
pub const MAX_CLIENTS: usize = 4_096;
/// Distinct values counted per kind of request detail (paths, hosts, agents, fingerprints).
pub const MAX_DETAILS: usize = 256;
/// A client is one to block when it sent at least this share of what the heaviest client sent
/// (on the alert's signal): the flood's machines, not the ordinary visitors listed after them.
pub const BLOCK_SHARE: f64 = 0.25;
/// Clients to block named at most ([`Clients::to_block`]): a 90-machine flood is named whole.
pub const MAX_BLOCK: usize = 256;
/// How long a client must have been counted to count as persistent: past the first moments, when
/// a crowd's newcomers and a flood's clients both send fast (what keeps newcomers out for good is
/// [`PERSIST_MIN`]: a visit never reaches it).
pub const PERSIST_NS: u64 = 1_500_000_000;
/// What a persistent client has sent at least, per signal (requests, connections, held seconds):
/// more than one visit takes (a page and its assets: up to about 15 requests; a browser opens at
/// most 6 connections to one host).
pub const PERSIST_MIN: [u32; 3] = [16, 8, 10];
/// ... at a rate of at least this many per second since it first appeared (a client polling once
/// a second for a minute is no flood).
pub const PERSIST_RATE: f64 = 2.0;
/// Share of a signal persistent clients carry in a flood.
pub const PERSISTENT_SHARE: f64 = 0.3;

/// One client's signals, indexed as [`crate::window::Signal::REQUEST_SIGNALS`] (requests,
/// handshakes, seconds of heads held open).
pub type Counts = [u32; 3];

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Clients {
    map: HashMap<IpAddr, Client, FixedState>,
    /// What the requests asked for, per [`crate::aggregate::Detail::KINDS`]: value → requests.
    details: [HashMap<Box<str>, u32, FixedState>; 4],
    /// Details that did not fit, per kind.
    details_others: [u64; 4],
    /// Counts of clients that did not fit.
    others: [u64; 3],
    total: [u64; 3],
}

/// One client as counted: its signals and when it was first and last counted (packet time, ns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Client {
    counts: Counts,
    first: u64,
    last: u64,
}

/// A client and its counts, as events report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTotal {
    pub ip: IpAddr,
    pub counts: Counts,
}

impl Clients {
    /// Counts `counts` more for `ip`, at packet time `now` (ns).
    pub fn add(&mut self, ip: IpAddr, counts: Counts, now: u64) {
        for (t, c) in self.total.iter_mut().zip(counts) {
            *t = t.saturating_add(u64::from(c));
        }
        let len = self.map.len();
        match self.map.get_mut(&ip) {
            Some(have) => {
                for (h, c) in have.counts.iter_mut().zip(counts) {
                    *h = h.saturating_add(c);
                }
                have.first = have.first.min(now);
                have.last = have.last.max(now);
            }
            None if len < MAX_CLIENTS => {
                self.map.insert(
                    ip,
                    Client {
                        counts,
                        first: now,
                        last: now,
                    },
                );
            }
            None => {
                for (o, c) in self.others.iter_mut().zip(counts) {
                    *o = o.saturating_add(u64::from(c));
                }
            }
        }
    }

    /// Counts one request's detail of `kind` ([`crate::aggregate::Detail::KINDS`]).
    pub fn add_detail(&mut self, kind: u8, text: &str) {
        let k = usize::from(kind);
        let Some(map) = self.details.get_mut(k) else {
            return;
        };
        if let Some(n) = map.get_mut(text) {
            *n = n.saturating_add(1);
        } else if map.len() < MAX_DETAILS {
            map.insert(text.into(), 1);
        } else if let Some(o) = self.details_others.get_mut(k) {
            *o += 1;
        }
    }

    /// The `n` commonest values of detail `kind`, commonest first (ties by value).
    pub fn top_details(&self, kind: u8, n: usize) -> Vec<(Box<str>, u32)> {
        let Some(map) = self.details.get(usize::from(kind)) else {
            return Vec::new();
        };
        let mut v: Vec<(Box<str>, u32)> = map.iter().map(|(t, c)| (t.clone(), *c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Total of signal `which` over every client.
    pub fn total(&self, which: usize) -> u64 {
        self.total.get(which).copied().unwrap_or(0)
    }

    /// Clients counted one by one.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no client was counted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.others == [0; 3]
    }

    /// The `n` heaviest clients on signal `which`, heaviest first (ties by address); clients with
    /// none of it are left out.
    pub fn top(&self, which: usize, n: usize) -> Vec<ClientTotal> {
        let mut v: Vec<ClientTotal> = self
            .map
            .iter()
            .filter(|(_, c)| c.counts.get(which).is_some_and(|x| *x > 0))
            .map(|(ip, c)| ClientTotal {
                ip: *ip,
                counts: c.counts,
            })
            .collect();
        let get = |c: &ClientTotal| c.counts.get(which).copied().unwrap_or(0);
        v.sort_unstable_by(|a, b| get(b).cmp(&get(a)).then(a.ip.cmp(&b.ip)));
        v.truncate(n);
        v
    }

    /// The clients a request flood's rules should name on signal `which`, heaviest first: every
    /// client that sent at least [`BLOCK_SHARE`] of what the heaviest sent and at least a
    /// visit's worth ([`PERSIST_MIN`]), at most [`MAX_BLOCK`]. A flood's machines, not the
    /// ordinary visitors counted beside them.
    pub fn to_block(&self, which: usize) -> Vec<IpAddr> {
        let top = self.top(which, MAX_BLOCK);
        let count = |c: &ClientTotal| c.counts.get(which).copied().unwrap_or(0);
        let heaviest = top.first().map(count).unwrap_or(0);
        let visit = PERSIST_MIN.get(which).copied().unwrap_or(u32::MAX);
        let least = (f64::from(heaviest) * BLOCK_SHARE).max(f64::from(visit));
        top.iter()
            .filter(|c| f64::from(count(c)) >= least)
            .map(|c| c.ip)
            .collect()
    }

    /// The share of signal `which` the `n` heaviest clients carry.
    pub fn top_share(&self, which: usize, n: usize) -> f64 {
        let top: u64 = self
            .top(which, n)
            .iter()
            .map(|c| u64::from(c.counts.get(which).copied().unwrap_or(0)))
            .sum();
        top as f64 / self.total(which).max(1) as f64
    }

    /// The share of signal `which` carried by persistent clients: counted for at least
    /// [`PERSIST_NS`] by `now`, with at least [`PERSIST_MIN`] of it at [`PERSIST_RATE`] a second.
    pub fn persistent_share(&self, which: usize, now: u64) -> f64 {
        let min = PERSIST_MIN.get(which).copied().unwrap_or(u32::MAX);
        let heavy: u64 = self
            .map
            .values()
            .filter_map(|c| {
                let n = c.counts.get(which).copied()?;
                let span = now.saturating_sub(c.first);
                let rate = f64::from(n) * 1e9 / span.max(1) as f64;
                (span >= PERSIST_NS && n >= min && rate >= PERSIST_RATE).then_some(u64::from(n))
            })
            .sum();
        heavy as f64 / self.total(which).max(1) as f64
    }

    /// Whether signal `which` comes from a flood rather than a crowd, at packet time `now`:
    /// persistent clients ([`Clients::persistent_share`]) carry at least [`PERSISTENT_SHARE`] of
    /// it. A flash crowd (hundreds of new clients, each a page's worth of requests in a second or
    /// two) and a busy site (many clients, each a few requests) do not.
    pub fn looks_like_flood(&self, which: usize, now: u64) -> bool {
        self.persistent_share(which, now) >= PERSISTENT_SHARE
    }
}

pub(crate) mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};

    type R<T> = Result<T, EngineStateError>;

    impl Clients {
        pub(crate) fn save(&self, e: &mut Enc) {
            // in address order: the same state saves to the same bytes
            let mut all: Vec<(&IpAddr, &Client)> = self.map.iter().collect();
            all.sort_unstable_by(|a, b| a.0.cmp(b.0));
            e.var(all.len() as u64);
            for (ip, c) in all {
                match ip {
                    IpAddr::V4(a) => e.bytes(&a.octets()),
                    IpAddr::V6(a) => e.bytes(&a.octets()),
                }
                for x in c.counts {
                    e.var(u64::from(x));
                }
                e.var(c.first);
                e.var(c.last);
            }
            for x in self.others.iter().chain(self.total.iter()) {
                e.var(*x);
            }
            for (map, others) in self.details.iter().zip(&self.details_others) {
                let mut all: Vec<(&Box<str>, &u32)> = map.iter().collect();
                all.sort_unstable();
                e.var(all.len() as u64);
                for (t, n) in all {
                    e.bytes(t.as_bytes());
                    e.var(u64::from(*n));
                }
                e.var(*others);
            }
        }

        pub(crate) fn load(d: &mut Dec) -> R<Clients> {
            let n = d.count("the clients of a destination")?;
            if n > MAX_CLIENTS as u64 {
                return Err(d.corrupt(format!("{n} clients, more than {MAX_CLIENTS}")));
            }
            let mut c = Clients::default();
            for _ in 0..n {
                let ip = match d.bytes("a client's address")? {
                    b if b.len() == 4 => {
                        let a: [u8; 4] = b.try_into().map_err(|_| d.corrupt("an address"))?;
                        IpAddr::from(a)
                    }
                    b if b.len() == 16 => {
                        let a: [u8; 16] = b.try_into().map_err(|_| d.corrupt("an address"))?;
                        IpAddr::from(a)
                    }
                    b => return Err(d.corrupt(format!("a client's address of {} bytes", b.len()))),
                };
                let mut client = Client::default();
                for x in &mut client.counts {
                    *x = d.u32("a client's count")?;
                }
                client.first = d.count("a client's first time")?;
                client.last = d.count("a client's last time")?;
                c.map.insert(ip, client);
            }
            for x in c.others.iter_mut().chain(c.total.iter_mut()) {
                *x = d.count("the clients' totals")?;
            }
            for (map, others) in c.details.iter_mut().zip(c.details_others.iter_mut()) {
                let n = d.count("the request details")?;
                if n > MAX_DETAILS as u64 {
                    return Err(d.corrupt(format!("{n} request details, more than {MAX_DETAILS}")));
                }
                for _ in 0..n {
                    let t = std::str::from_utf8(d.bytes("a request detail")?)
                        .map_err(|_| d.corrupt("a request detail is not UTF-8"))?;
                    let count = d.u32("a request detail's count")?;
                    map.insert(t.into(), count);
                }
                *others = d.count("the request details that did not fit")?;
            }
            Ok(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(i: u32) -> IpAddr {
        Ipv4Addr::from(0xc000_0200 + i).into()
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn every_machine_of_a_flood_is_one_to_block_no_visitor_is() {
        // ninety machines at 4 to 6 requests a second for 5 s, beside 300 visitors' page loads
        let mut c = Clients::default();
        for t in 0..5 {
            for i in 0..90 {
                c.add(ip(i), [4 + i % 3, 1, 0], t * S);
            }
        }
        for i in 100..400 {
            c.add(ip(i), [12, 2, 0], 4 * S);
        }
        let block = c.to_block(0);
        assert_eq!(block.len(), 90);
        assert!(block.iter().all(|b| (0..90).any(|i| ip(i) == *b)));
        // the heaviest first
        let top = c.top(0, 1);
        assert_eq!((top[0].ip, top[0].counts[0]), (block[0], 30));
        // no request past a visit's worth: nobody
        let mut calm = Clients::default();
        calm.add(ip(1), [15, 1, 0], 0);
        assert!(calm.to_block(0).is_empty());
    }

    #[test]
    fn clients_that_keep_going_are_a_flood_a_crowd_is_not() {
        // four machines at 12 requests a second each, over a site's 30 ordinary clients
        let mut flood = Clients::default();
        for t in 0..4 {
            for i in 0..4 {
                flood.add(ip(i), [12, 1, 0], t * S);
            }
            for i in 10..40 {
                flood.add(ip(i), [1, 1, 0], t * S);
            }
        }
        // the first seconds look like anything; three seconds in, the machines kept going
        assert!(!flood.looks_like_flood(0, S));
        assert!(flood.looks_like_flood(0, 3 * S));
        assert_eq!(flood.top(0, 2)[0].counts[0], 48);
        // a flash crowd: new visitors every second, each 12 requests over 1.5 s, then quiet
        let mut crowd = Clients::default();
        for t in 0..20u64 {
            for i in 0..15 {
                let who = ip((t * 15 + i) as u32);
                crowd.add(who, [8, 1, 0], t * S);
                crowd.add(who, [4, 0, 0], t * S + S / 2 * 3);
            }
            assert!(!crowd.looks_like_flood(0, t * S + S), "second {t}");
            assert!(!crowd.looks_like_flood(1, t * S + S), "second {t}");
        }
        // a client polling once a second for a minute
        let mut poller = Clients::default();
        for t in 0..60 {
            poller.add(ip(1), [1, 0, 0], t * S);
        }
        assert!(!poller.looks_like_flood(0, 60 * S));
    }

    #[test]
    fn clients_past_the_bound_are_counted_together() {
        let mut c = Clients::default();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            c.add(ip(i), [1, 0, 0], 0);
        }
        assert_eq!(c.len(), MAX_CLIENTS);
        assert_eq!(c.total(0), MAX_CLIENTS as u64 + 10);
    }
}
