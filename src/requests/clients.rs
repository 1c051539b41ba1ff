//! The clients of one destination and their request signals, counted exactly while the destination
//! is hot: who sent the requests, opened the connections, held the heads open.
//!
//! Every client here completed a TCP handshake, so its address is its own (a spoofer cannot): what
//! is named is reliable, which is the point of request-flood attribution. Counting is exact (no
//! sketch) up to [`MAX_CLIENTS`] clients; later ones are counted together as others, so memory is
//! bounded and the heaviest clients (who come early and stay) are exact.
//!
//! A flash crowd and a request flood both raise a site's request rate; what differs is who sends
//! it. [`Clients::looks_like_flood`] asks whether a few clients carry it, or clients that keep
//! going past what a browser does on one visit.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::FixedState;

/// Clients counted one by one.
pub const MAX_CLIENTS: usize = 4_096;
/// How many of the heaviest clients [`Clients::looks_like_flood`] weighs together.
pub const FEW: usize = 10;
/// Share of a signal the [`FEW`] heaviest clients carry in a flood (a handful of machines, not a
/// crowd).
pub const FEW_SHARE: f64 = 0.5;
/// A client past this many requests or connections since the destination became hot keeps going
/// past a browser's visit (a page and its assets: 5 to 15 requests, one or two connections).
pub const PERSISTENT: u32 = 20;
/// Share of a signal persistent clients carry in a flood.
pub const PERSISTENT_SHARE: f64 = 0.3;

/// One client's signals, indexed as [`crate::window::Signal::REQUEST_SIGNALS`] (requests,
/// handshakes, seconds of heads held open).
pub type Counts = [u32; 3];

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Clients {
    map: HashMap<IpAddr, Counts, FixedState>,
    /// Counts of clients that did not fit.
    others: [u64; 3],
    total: [u64; 3],
}

/// A client and its counts, as events report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTotal {
    pub ip: IpAddr,
    pub counts: Counts,
}

impl Clients {
    /// Counts `counts` more for `ip`.
    pub fn add(&mut self, ip: IpAddr, counts: Counts) {
        for (t, c) in self.total.iter_mut().zip(counts) {
            *t = t.saturating_add(u64::from(c));
        }
        let len = self.map.len();
        match self.map.get_mut(&ip) {
            Some(have) => {
                for (h, c) in have.iter_mut().zip(counts) {
                    *h = h.saturating_add(c);
                }
            }
            None if len < MAX_CLIENTS => {
                self.map.insert(ip, counts);
            }
            None => {
                for (o, c) in self.others.iter_mut().zip(counts) {
                    *o = o.saturating_add(u64::from(c));
                }
            }
        }
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
            .filter(|(_, c)| c.get(which).is_some_and(|x| *x > 0))
            .map(|(ip, c)| ClientTotal {
                ip: *ip,
                counts: *c,
            })
            .collect();
        let get = |c: &ClientTotal| c.counts.get(which).copied().unwrap_or(0);
        v.sort_unstable_by(|a, b| get(b).cmp(&get(a)).then(a.ip.cmp(&b.ip)));
        v.truncate(n);
        v
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

    /// The share of signal `which` carried by clients with at least `min` of it.
    pub fn share_of_clients_over(&self, which: usize, min: u32) -> f64 {
        let heavy: u64 = self
            .map
            .values()
            .filter_map(|c| c.get(which).copied())
            .filter(|x| *x >= min)
            .map(u64::from)
            .sum();
        heavy as f64 / self.total(which).max(1) as f64
    }

    /// Whether signal `which` comes from a flood rather than a crowd: the [`FEW`] heaviest clients
    /// carry at least [`FEW_SHARE`] of it, or clients past [`PERSISTENT`] carry at least
    /// [`PERSISTENT_SHARE`]. A flash crowd (hundreds of new clients, each a page's worth of
    /// requests) and a busy site (many clients, each a few requests) do neither.
    pub fn looks_like_flood(&self, which: usize) -> bool {
        self.top_share(which, FEW) >= FEW_SHARE
            || self.share_of_clients_over(which, PERSISTENT) >= PERSISTENT_SHARE
    }
}

pub(crate) mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};

    type R<T> = Result<T, EngineStateError>;

    impl Clients {
        pub(crate) fn save(&self, e: &mut Enc) {
            // in address order: the same state saves to the same bytes
            let mut all: Vec<(&IpAddr, &Counts)> = self.map.iter().collect();
            all.sort_unstable_by(|a, b| a.0.cmp(b.0));
            e.var(all.len() as u64);
            for (ip, c) in all {
                match ip {
                    IpAddr::V4(a) => e.bytes(&a.octets()),
                    IpAddr::V6(a) => e.bytes(&a.octets()),
                }
                for x in c {
                    e.var(u64::from(*x));
                }
            }
            for x in self.others.iter().chain(self.total.iter()) {
                e.var(*x);
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
                let mut counts = [0u32; 3];
                for x in &mut counts {
                    *x = d.u32("a client's count")?;
                }
                c.map.insert(ip, counts);
            }
            for x in c.others.iter_mut().chain(c.total.iter_mut()) {
                *x = d.count("the clients' totals")?;
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

    #[test]
    fn a_few_heavy_clients_are_a_flood_a_crowd_is_not() {
        // four machines, 40 requests each, over a site's 30 ordinary clients with 2 each
        let mut flood = Clients::default();
        for i in 0..4 {
            flood.add(ip(i), [40, 2, 0]);
        }
        for i in 10..40 {
            flood.add(ip(i), [2, 1, 0]);
        }
        assert!(flood.looks_like_flood(0));
        assert_eq!(flood.top(0, 2)[0].counts[0], 40);
        // a flash crowd: 300 new clients, 10 requests each
        let mut crowd = Clients::default();
        for i in 0..300 {
            crowd.add(ip(i), [10, 1, 0]);
        }
        assert!(!crowd.looks_like_flood(0));
        assert!(!crowd.looks_like_flood(1));
        // ninety bots that keep going: each past a browser's visit
        let mut ddos = Clients::default();
        for i in 0..90 {
            ddos.add(ip(i), [25, 6, 0]);
        }
        assert!(ddos.looks_like_flood(0));
    }

    #[test]
    fn clients_past_the_bound_are_counted_together() {
        let mut c = Clients::default();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            c.add(ip(i), [1, 0, 0]);
        }
        assert_eq!(c.len(), MAX_CLIENTS);
        assert_eq!(c.total(0), MAX_CLIENTS as u64 + 10);
    }
}
