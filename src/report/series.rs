//! Bounded time series for the report's charts: the whole input's traffic ([`TrafficSeries`]); a
//! hot key's evaluations are a [`crate::key_trace::KeyTrace`], bounded the same way.
//!
//! Both keep at most a fixed number of points: when the next point would not fit, every two
//! neighbours merge into one and the step doubles, so an hour and a month of input cost the same
//! memory and give charts of the same size, at a coarser step.

use serde::{Deserialize, Serialize};

use crate::decode::PacketSummary;

/// Traffic classes of the whole-input chart, in drawing order.
pub const TRAFFIC_CLASSES: [&str; 6] = ["syn", "tcp", "udp", "icmp", "fragment", "other"];

/// The traffic class index (into [`TRAFFIC_CLASSES`]) of a packet: fragments first (a later
/// fragment has no transport header), then SYN without ACK, other TCP, UDP, ICMP/ICMPv6, the rest.
#[inline]
pub fn traffic_class(p: &PacketSummary) -> usize {
    if p.fragment != crate::decode::Fragment::None {
        return 4;
    }
    match p.proto {
        6 if p.tcp_flags & 0x12 == 0x02 => 0,
        6 => 1,
        17 => 2,
        1 | 58 => 3,
        _ => 5,
    }
}

/// The first step of a [`TrafficSeries`]: 100 ms (a short capture keeps its detail).
pub const TRAFFIC_FIRST_STEP_NS: u64 = 100_000_000;
/// Points a [`TrafficSeries`] keeps at most.
pub const TRAFFIC_MAX_POINTS: usize = 1200;

/// Packets and bytes of the whole input per time step and traffic class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSeries {
    /// Start of the first step, ns since the Unix epoch (a multiple of the step).
    pub start_ns: u64,
    /// Length of one step, ns.
    pub step_ns: u64,
    /// Class names, the columns of `packets` and `bytes` ([`TRAFFIC_CLASSES`]).
    pub classes: Vec<String>,
    /// Per step, packets (weighted, as counted) of each class.
    pub packets: Vec<[u64; 6]>,
    /// Per step, wire bytes of each class.
    pub bytes: Vec<[u64; 6]>,
    #[serde(skip)]
    max_points: usize,
}

impl TrafficSeries {
    /// An empty series of at most `max_points` steps (at least 2).
    pub fn new(max_points: usize) -> TrafficSeries {
        TrafficSeries {
            start_ns: 0,
            step_ns: TRAFFIC_FIRST_STEP_NS,
            classes: TRAFFIC_CLASSES.iter().map(|c| c.to_string()).collect(),
            packets: Vec::new(),
            bytes: Vec::new(),
            max_points: max_points.max(2),
        }
    }

    /// Counts one packet. Packets older than the first step count in the first step.
    #[inline]
    pub fn add(&mut self, p: &PacketSummary) {
        let ts = p.ts.0;
        if self.packets.is_empty() {
            self.start_ns = ts - ts % self.step_ns;
        }
        let mut i = (ts.saturating_sub(self.start_ns) / self.step_ns) as usize;
        if i >= self.packets.len() {
            while i >= self.max_points {
                self.halve();
                i = (ts.saturating_sub(self.start_ns) / self.step_ns) as usize;
            }
            self.packets.resize(i + 1, [0; 6]);
            self.bytes.resize(i + 1, [0; 6]);
        }
        let c = traffic_class(p);
        let w = u64::from(p.weight);
        self.packets[i][c] += w;
        self.bytes[i][c] += u64::from(p.wire_len) * w;
    }

    /// Merges neighbouring steps: the step doubles, the start moves back to a multiple of it.
    fn halve(&mut self) {
        let step = self.step_ns * 2;
        let start = self.start_ns - self.start_ns % step;
        let offset = usize::from(start != self.start_ns);
        for v in [&mut self.packets, &mut self.bytes] {
            let mut merged = vec![[0u64; 6]; (v.len() + offset).div_ceil(2)];
            for (i, row) in v.iter().enumerate() {
                let m = &mut merged[(i + offset) / 2];
                for (a, b) in m.iter_mut().zip(row.iter()) {
                    *a += b;
                }
            }
            *v = merged;
        }
        self.step_ns = step;
        self.start_ns = start;
    }

    /// Steps held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// No packet was counted.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The highest packet rate of one step (packets/s, all classes).
    pub fn peak_pps(&self) -> f64 {
        let secs = self.step_ns as f64 / 1e9;
        self.packets
            .iter()
            .map(|row| row.iter().map(|&v| v as f64).sum::<f64>() / secs)
            .fold(0.0, f64::max)
    }

    /// The highest bit rate of one step (bits/s, all classes).
    pub fn peak_bps(&self) -> f64 {
        let secs = self.step_ns as f64 / 1e9;
        self.bytes
            .iter()
            .map(|row| row.iter().map(|&v| v as f64).sum::<f64>() * 8.0 / secs)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Fragment, HeaderFields};
    use crate::time::Timestamp;

    fn packet(ts_ns: u64, proto: u8, flags: u8) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(ts_ns),
            src: [192, 0, 2, 1].into(),
            dst: [198, 51, 100, 1].into(),
            proto,
            sport: 1234,
            dport: 80,
            tcp_flags: flags,
            tcp_num: 0,
            wire_len: 100,
            fragment: Fragment::default(),
            weight: 1,
            hdr: HeaderFields::UNKNOWN,
        }
    }

    #[test]
    fn traffic_is_counted_by_class_and_step() {
        let mut s = TrafficSeries::new(100);
        let t0 = 1_700_000_000_000_000_000;
        s.add(&packet(t0 + 10, 6, 0x02));
        s.add(&packet(t0 + 20, 6, 0x12));
        s.add(&packet(t0 + 150_000_000, 17, 0));
        s.add(&packet(t0 + 250_000_000, 1, 0));
        assert_eq!(s.start_ns, t0);
        assert_eq!(s.len(), 3);
        assert_eq!(s.packets[0], [1, 1, 0, 0, 0, 0]);
        assert_eq!(s.packets[1], [0, 0, 1, 0, 0, 0]);
        assert_eq!(s.packets[2], [0, 0, 0, 1, 0, 0]);
        assert_eq!(s.bytes[0][0], 100);
        assert!((s.peak_pps() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn a_long_input_stays_within_the_point_budget_and_keeps_every_packet() {
        let mut s = TrafficSeries::new(50);
        let t0 = 1_700_000_000_050_000_000;
        let n = 10_000u64;
        for i in 0..n {
            // one packet every 37 ms: 370 s of input
            s.add(&packet(t0 + i * 37_000_000, 17, 0));
        }
        assert!(s.len() <= 50, "{} points", s.len());
        assert_eq!(s.start_ns % s.step_ns, 0);
        let total: u64 = s.packets.iter().map(|r| r.iter().sum::<u64>()).sum();
        assert_eq!(total, n);
        // every packet is in the step its time falls in
        let last = t0 + (n - 1) * 37_000_000;
        assert_eq!(((last - s.start_ns) / s.step_ns) as usize, s.len() - 1);
    }
}
