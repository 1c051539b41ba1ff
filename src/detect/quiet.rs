//! Quiet hosts (issue 23, item 5): a lower floor for a destination host whose learned normal of a
//! kind of traffic is near zero, when that traffic carries the mark of an attack of its kind.
//!
//! A small site's host that normally receives no SYNs, no ICMP, no fragments can be taken down by a
//! few hundred a second of them, a fifth of the absolute floors (`--min-pps`). Lowering the floors
//! for every host would wake on every burst, so the quiet-host floor ([`QuietFloors`], 200/s by
//! default) applies to a signal of a key only when all of this holds:
//!
//! - the key is a `dst_host` with a warm baseline (`warmup` windows of history, 30 s by default)
//!   whose learned mean of the signal is under [`NEAR_ZERO`] of the quiet floor;
//! - the rate is measured over a whole window: never the short window, never a fresh key's first
//!   fraction of a second (a burst of a second does not wake it);
//! - the traffic has the mark of an attack of that kind, from the window's counts: SYNs whose
//!   handshakes do not complete (fewer than [`COMPLETED_MAX`] of them, and no growth of ACKs and
//!   data beside them); reflected traffic that is large or fragmented;
//! - and from the key's evidence, who sends it: SYNs from more than one sender (not one scanner,
//!   one client), ICMP, fragments and reflection from many.
//!
//! This is evaluation-time work on keys already measured: nothing is added per packet. A key whose
//! rate reaches [`WATCH_SHARE`] of a quiet floor with the counting marks is *watched* (its evidence
//! starts, so its senders are known when the rate reaches the floor); a key in an alert that did
//! not start on a quiet floor never has its thresholds lowered, so every other alert's life is as
//! before.

use crate::attribution::Evidence;
use crate::baseline::{Baseline, BaselineParams};
use crate::config::QuietFloors;
use crate::key::Scope;
use crate::window::Signal;

use super::eval::Reading;

/// A learned mean under this share of the quiet floor is near zero (10/s at the default 200/s).
pub(super) const NEAR_ZERO: f64 = 0.05;
/// A rate at this share of the quiet floor, with the counting marks, starts watching the key's
/// senders.
pub(super) const WATCH_SHARE: f64 = 0.5;
/// A SYN flood's handshakes: completed ones under this share of the SYNs.
pub(super) const COMPLETED_MAX: f64 = 0.1;
/// The heaviest sender may carry at most this share of the key's sampled packets.
pub(super) const TOP_SENDER_MAX: f64 = 0.5;
/// Distinct senders of SYNs at least: not one scanner or client (the handshakes say the rest).
pub(super) const SYN_SENDERS: u64 = 8;
/// Distinct senders of ICMP, fragments and reflection at least: many, as spoofed floods and
/// amplifiers are.
pub(super) const MANY_SENDERS: u64 = 32;
/// Reflection that is neither fragmented nor larger than this on average (bytes a packet of the
/// key) is a host's own answers (DNS lookups, an SNMP poller), not amplification.
pub(super) const LARGE_RESPONSE: f64 = 400.0;
/// Share of the reflected packets that must be later fragments, when they are not large.
pub(super) const FRAGMENTED_SHARE: f64 = 0.1;

/// What the quiet-host floors say of one key at one evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Verdict {
    /// Some signal is near its quiet floor with the counting marks: keep the evidence.
    watch: bool,
    /// Bit i: the threshold of `QuietFloors::SIGNALS[i]` was lowered to its quiet floor.
    lowered: u8,
}

impl Verdict {
    /// True when the key's senders must be watched (its evidence kept or started).
    pub(super) fn watching(self) -> bool {
        self.watch
    }

    /// True when `s`'s threshold is the quiet-host floor.
    pub(super) fn lowered(self, s: Signal) -> bool {
        QuietFloors::SIGNALS
            .iter()
            .position(|q| *q == s)
            .is_some_and(|i| self.lowered & (1 << i) != 0)
    }
}

/// The key a verdict is about: its scope, learning and evidence.
pub(super) struct Host<'a> {
    pub scope: Scope,
    pub baseline: &'a Baseline,
    /// The key's baseline parameters (its profile's factor).
    pub params: &'a BaselineParams,
    pub evidence: Option<&'a Evidence>,
}

/// Judges `r` of `host` against the quiet-host `floors`; lowers the thresholds of `r` where they
/// apply. `window_s`: the sliding window, what a rate must be measured over to count.
pub(super) fn judge(
    floors: &QuietFloors,
    host: &Host<'_>,
    r: &mut Reading,
    window_s: f64,
) -> Verdict {
    let mut v = Verdict::default();
    if host.scope != Scope::DstHost || !host.baseline.is_warm(host.params) {
        return v;
    }
    let whole = r.span_s >= window_s;
    for (i, (&s, &floor)) in QuietFloors::SIGNALS
        .iter()
        .zip(floors.per_signal.iter())
        .enumerate()
    {
        let normal = r.thresholds[s.index()];
        let rate = r.rates[s.index()];
        if floor >= normal
            || host.baseline.mean(s) > NEAR_ZERO * floor
            || rate < WATCH_SHARE * floor
            || !counts_mark(s, r, host.baseline)
        {
            continue;
        }
        v.watch = true;
        // over its usual threshold, the key alerts as it always did
        if whole && rate < normal && senders_mark(s, host.evidence) {
            let lowest = floor.max(host.baseline.threshold(s, host.params));
            r.thresholds[s.index()] = lowest.min(normal);
            v.lowered |= 1 << i;
        }
    }
    v
}

/// True when [`judge`] can neither watch nor lower anything for a key whose window holds no
/// traffic: every quiet floor is positive, so a rate of 0 stays under its watch share.
pub(super) fn silence_is_never_watched(floors: &QuietFloors) -> bool {
    floors.per_signal.iter().all(|f| 0.0 < WATCH_SHARE * f)
}

/// The mark of an attack of kind `s` that the window's counts show.
fn counts_mark(s: Signal, r: &Reading, baseline: &Baseline) -> bool {
    let est = |s: Signal| r.est[s.index()];
    match s {
        // spoofed sources never complete the handshake; real clients do (and send ACKs and data,
        // which one-way captures show even when they hide the handshakes)
        Signal::Syn => {
            est(Signal::Handshakes) < COMPLETED_MAX * est(Signal::Syn)
                && !super::classify::handshakes_complete(&r.rates, baseline)
        }
        Signal::Reflection => {
            let size = est(Signal::Bytes) / est(Signal::Packets).max(1.0);
            size >= LARGE_RESPONSE
                || est(Signal::LaterFragment) >= FRAGMENTED_SHARE * est(Signal::Reflection)
        }
        _ => true,
    }
}

/// The mark of an attack of kind `s` that the key's senders show: not one sender carrying it, and
/// enough of them.
fn senders_mark(s: Signal, evidence: Option<&Evidence>) -> bool {
    let Some(e) = evidence.filter(|e| e.packets_watched) else {
        return false;
    };
    let least = if s == Signal::Syn {
        SYN_SENDERS
    } else {
        MANY_SENDERS
    };
    e.distinct_peers() >= least && e.top_peer_share() <= TOP_SENDER_MAX
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::COUNTERS;

    /// A warm baseline that learned `rates` (per second, by signal) for 60 windows.
    fn learned(rates: &[(Signal, f64)]) -> Baseline {
        let mut x = [0.0; COUNTERS];
        for (s, r) in rates {
            x[s.index()] = *r;
        }
        let mut b = Baseline::default();
        let floors = [1e9; Signal::THRESHOLDED];
        for _ in 0..60 {
            b.learn(&x, &floors, &BaselineParams::default());
        }
        b
    }

    /// A whole-window reading with `counts` in it, against the default floors (1 000/s).
    fn reading(counts: &[(Signal, f64)]) -> Reading {
        let mut est = [0.0; COUNTERS];
        for (s, n) in counts {
            est[s.index()] = *n;
        }
        Reading {
            est,
            rates: est,
            thresholds: [1000.0; Signal::THRESHOLDED],
            span_s: 1.0,
        }
    }

    /// Evidence of `n` packets, from `senders` sources in turn.
    fn evidence(n: u32, senders: u32) -> Evidence {
        let mut e = Evidence::new(Scope::DstHost);
        for i in 0..n {
            let src = std::net::Ipv4Addr::from(0xCB00_7100 + i % senders);
            let p = crate::decode::PacketSummary {
                src: src.into(),
                dst: std::net::Ipv4Addr::new(198, 51, 100, 10).into(),
                ..Default::default()
            };
            e.add_sample(Scope::DstHost, &p, 1, false);
        }
        e
    }

    fn judge_on(b: &Baseline, e: Option<&Evidence>, r: &mut Reading) -> Verdict {
        let host = Host {
            scope: Scope::DstHost,
            baseline: b,
            params: &BaselineParams::default(),
            evidence: e,
        };
        judge(&QuietFloors::default(), &host, r, 1.0)
    }

    const SPOOFED_SYNS: [(Signal, f64); 3] = [
        (Signal::Packets, 300.0),
        (Signal::Bytes, 18_000.0),
        (Signal::Syn, 300.0),
    ];

    #[test]
    fn spoofed_syns_at_a_quiet_host_meet_the_quiet_floor() {
        let b = learned(&[(Signal::Packets, 0.1)]);
        let e = evidence(100, 100);
        let mut r = reading(&SPOOFED_SYNS);
        let v = judge_on(&b, Some(&e), &mut r);
        assert!(v.watching() && v.lowered(Signal::Syn), "{v:?}");
        assert_eq!(r.thresholds[Signal::Syn.index()], 200.0);
        assert_eq!(r.thresholds[Signal::Icmp.index()], 1000.0);
    }

    #[test]
    fn without_its_senders_known_the_key_is_only_watched() {
        let b = learned(&[(Signal::Packets, 0.1)]);
        let mut r = reading(&SPOOFED_SYNS);
        let v = judge_on(&b, None, &mut r);
        assert!(v.watching() && !v.lowered(Signal::Syn), "{v:?}");
        assert_eq!(r.thresholds[Signal::Syn.index()], 1000.0);
    }

    #[test]
    fn ordinary_traffic_keeps_the_usual_floors() {
        let quiet = learned(&[(Signal::Packets, 0.1)]);
        let many = evidence(100, 100);
        let cases = [
            // a scanner: one source, nothing completes
            ("port scan", quiet, SPOOFED_SYNS.to_vec(), evidence(100, 1)),
            // a crowd of real connections: they complete
            (
                "crowd",
                quiet,
                vec![
                    (Signal::Packets, 900.0),
                    (Signal::Syn, 300.0),
                    (Signal::TcpOther, 600.0),
                    (Signal::Handshakes, 290.0),
                ],
                many.clone(),
            ),
            // a host that receives SYNs every second is not quiet
            (
                "busy",
                learned(&[(Signal::Syn, 40.0)]),
                SPOOFED_SYNS.to_vec(),
                many.clone(),
            ),
            // a burst of lookups: small answers from port 53
            (
                "dns lookups",
                quiet,
                vec![
                    (Signal::Packets, 300.0),
                    (Signal::Bytes, 30_000.0),
                    (Signal::Udp, 300.0),
                    (Signal::Reflection, 300.0),
                    (Signal::AmpPort, 300.0),
                ],
                many.clone(),
            ),
            // ICMP from a few hosts
            (
                "pings",
                quiet,
                vec![(Signal::Packets, 300.0), (Signal::Icmp, 300.0)],
                evidence(100, 4),
            ),
        ];
        for (what, b, counts, e) in cases {
            let mut r = reading(&counts);
            let v = judge_on(&b, Some(&e), &mut r);
            assert_eq!(v.lowered, 0, "{what}: {v:?}");
            assert!(r.thresholds.iter().all(|t| *t == 1000.0), "{what}");
        }
    }

    #[test]
    fn only_whole_windows_of_warm_destination_hosts_count() {
        let e = evidence(100, 100);
        let warm = learned(&[(Signal::Packets, 0.1)]);
        let mut short = reading(&SPOOFED_SYNS);
        short.span_s = 0.2;
        assert!(!judge_on(&warm, Some(&e), &mut short).lowered(Signal::Syn));
        let mut cold = Baseline::default();
        cold.learn(
            &[0.0; COUNTERS],
            &[1e9; Signal::THRESHOLDED],
            &BaselineParams::default(),
        );
        let mut r = reading(&SPOOFED_SYNS);
        assert_eq!(judge_on(&cold, Some(&e), &mut r), Verdict::default());
        let host = Host {
            scope: Scope::DstSubnet,
            baseline: &warm,
            params: &BaselineParams::default(),
            evidence: Some(&e),
        };
        let mut r = reading(&SPOOFED_SYNS);
        assert_eq!(
            judge(&QuietFloors::default(), &host, &mut r, 1.0),
            Verdict::default()
        );
        // over the usual floor it is the usual alert
        let mut r = reading(&[(Signal::Packets, 3000.0), (Signal::Syn, 3000.0)]);
        let v = judge_on(&warm, Some(&e), &mut r);
        assert!(v.watching() && !v.lowered(Signal::Syn));
    }

    #[test]
    fn spoofed_icmp_and_fragmented_reflection_meet_their_quiet_floors() {
        let b = learned(&[(Signal::Packets, 0.1)]);
        let e = evidence(200, 200);
        let mut r = reading(&[(Signal::Packets, 300.0), (Signal::Icmp, 300.0)]);
        assert!(judge_on(&b, Some(&e), &mut r).lowered(Signal::Icmp));
        let mut r = reading(&[
            (Signal::Packets, 300.0),
            (Signal::Bytes, 300.0 * 1200.0),
            (Signal::Udp, 150.0),
            (Signal::AmpPort, 150.0),
            (Signal::Reflection, 300.0),
            (Signal::Fragment, 300.0),
            (Signal::LaterFragment, 150.0),
        ]);
        let v = judge_on(&b, Some(&e), &mut r);
        assert!(
            v.lowered(Signal::Reflection) && v.lowered(Signal::Fragment),
            "{v:?}"
        );
    }
}
