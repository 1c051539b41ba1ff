//! Evidence gathered for keys near or over their threshold: the heaviest peers, ports and member hosts,
//! each kept by a small Space-Saving top-k so memory stays fixed however many peers a flood has.

use std::net::IpAddr;

use crate::alert::{PeerCount, PortCount};
use crate::decode::PacketSummary;
use crate::key::Scope;

/// Space-Saving top-k: `k` counters; an unseen item takes the place of the smallest, inheriting its
/// count as its possible error. `count − error` is a guaranteed lower bound, and any item with more
/// than total/k occurrences is present.
#[derive(Clone, Debug)]
pub struct TopK<T> {
    /// (item, count, error)
    slots: Vec<(T, u64, u64)>,
    k: usize,
}

impl<T: Copy + PartialEq + Ord> TopK<T> {
    /// An empty top-k with `k` slots.
    pub fn new(k: usize) -> Self {
        TopK {
            slots: Vec::with_capacity(k.max(1)),
            k: k.max(1),
        }
    }

    /// Counts one occurrence of `item`.
    #[inline]
    pub fn add(&mut self, item: T) {
        if let Some(slot) = self.slots.iter_mut().find(|(t, _, _)| *t == item) {
            slot.1 += 1;
            return;
        }
        if self.slots.len() < self.k {
            self.slots.push((item, 1, 0));
            return;
        }
        if let Some(min) = self.slots.iter_mut().min_by_key(|(_, c, _)| *c) {
            *min = (item, min.1 + 1, min.1);
        }
    }

    /// Up to `n` items seen at least twice for certain, heaviest first, each with its guaranteed count
    /// (ties by item, for a stable order). Items that may have been seen only once — the long tail of a
    /// spoofed flood — are left out rather than shown with inflated counts.
    pub fn top(&self, n: usize) -> Vec<(T, u64)> {
        let mut v: Vec<(T, u64)> = self
            .slots
            .iter()
            .map(|(t, c, e)| (*t, c - e))
            .filter(|(_, sure)| *sure >= 2)
            .collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Occurrences counted in all slots (for shares).
    pub fn total(&self) -> u64 {
        self.slots.iter().map(|(_, c, _)| c).sum()
    }
}

/// Slots per top-k: more than the `top_n` reported, so the reported ones are accurate.
const SLOTS: usize = 32;

/// What an alert shows about a key's traffic.
#[derive(Clone, Debug)]
pub struct Evidence {
    peers: TopK<IpAddr>,
    dst_ports: TopK<u16>,
    src_ports: TopK<u16>,
    /// Hosts inside a subnet key (empty for host keys).
    hosts: Option<TopK<IpAddr>>,
}

impl Evidence {
    /// Empty evidence for a key of `scope`.
    pub fn new(scope: Scope) -> Self {
        Evidence {
            peers: TopK::new(SLOTS),
            dst_ports: TopK::new(SLOTS),
            src_ports: TopK::new(SLOTS),
            hosts: scope.is_subnet().then(|| TopK::new(SLOTS)),
        }
    }

    /// Records one packet seen by a key of `scope`.
    #[inline]
    pub fn add(&mut self, scope: Scope, p: &PacketSummary) {
        let (peer, own) = if scope.is_destination() {
            (p.src, p.dst)
        } else {
            (p.dst, p.src)
        };
        self.peers.add(peer);
        if p.sport != 0 || p.dport != 0 {
            self.dst_ports.add(p.dport);
            self.src_ports.add(p.sport);
        }
        if let Some(h) = &mut self.hosts {
            h.add(own);
        }
    }

    /// The `n` heaviest peers.
    pub fn top_peers(&self, n: usize) -> Vec<PeerCount> {
        self.peers
            .top(n)
            .into_iter()
            .map(|(ip, packets)| PeerCount { ip, packets })
            .collect()
    }

    /// The `n` heaviest destination ports.
    pub fn top_dst_ports(&self, n: usize) -> Vec<PortCount> {
        ports(&self.dst_ports, n)
    }

    /// The `n` heaviest source ports.
    pub fn top_src_ports(&self, n: usize) -> Vec<PortCount> {
        ports(&self.src_ports, n)
    }

    /// The `n` heaviest hosts inside a subnet key (empty for host keys).
    pub fn top_hosts(&self, n: usize) -> Vec<PeerCount> {
        self.hosts
            .as_ref()
            .map(|h| {
                h.top(n)
                    .into_iter()
                    .map(|(ip, packets)| PeerCount { ip, packets })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn ports(t: &TopK<u16>, n: usize) -> Vec<PortCount> {
    t.top(n)
        .into_iter()
        .map(|(port, packets)| PortCount { port, packets })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_hitters_survive_a_long_tail() {
        let mut t = TopK::new(8);
        for i in 0..10_000u32 {
            t.add(i);
            if i % 3 == 0 {
                t.add(1_000_000);
            }
        }
        let top = t.top(1);
        assert_eq!(top[0].0, 1_000_000);
        assert!(top[0].1 >= 3334);
    }

    #[test]
    fn top_is_sorted_and_truncated() {
        let mut t = TopK::new(4);
        for (x, n) in [(5u16, 3), (7, 9), (1, 3)] {
            for _ in 0..n {
                t.add(x);
            }
        }
        assert_eq!(t.top(2), vec![(7, 9), (1, 3)]);
    }

    #[test]
    fn a_uniform_tail_reports_nothing_rather_than_inflated_counts() {
        let mut t = TopK::new(8);
        for i in 0..100_000u32 {
            t.add(i);
        }
        assert!(t.top(5).is_empty(), "{:?}", t.top(5));
    }
}
