//! When things happen: rate [`Profile`]s and the [`Schedule`] of event times they give, Poisson
//! [`Arrivals`] and benign-day's [`Day`], and the [`Sessions`] of a generator whose sessions arrive
//! over time and send a few packets each ([`SessionSource`], merged by time in [`emit`]).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::packet::Frame;
use super::rng::Rng;

/// Expected number of events by time `t` (seconds from the stream's start), and its inverse.
#[derive(Clone, Copy, Debug)]
pub(super) enum Profile {
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
    pub(super) fn cum(self, t: f64) -> f64 {
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

pub(super) fn secs_to_ns(t: f64) -> u64 {
    (t * 1e9) as u64
}

/// Event times of a profile over `[start, start + len)`: `n` events, the k-th at `inv(k + jitter)`.
#[derive(Clone, Debug)]
pub(super) struct Schedule {
    profile: Profile,
    pub(super) start: u64,
    horizon: f64,
    pub(super) n: u64,
    pub(super) k: u64,
    prev: u64,
}

impl Schedule {
    pub(super) fn new(profile: Profile, start: u64, len: f64) -> Schedule {
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
    pub(super) fn next(&mut self, rng: &mut Rng) -> Option<u64> {
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

/// The sessions of a generator: when the next one arrives, and the next packet of each one under
/// way, earliest first (ties in the order they were queued).
pub(super) struct Sessions<S> {
    /// When the next session arrives; `None` once no more will.
    pub(super) next_arrival: Option<u64>,
    heap: BinaryHeap<Reverse<Pending<S>>>,
    order: u64,
}

impl<S> Sessions<S> {
    pub(super) fn new() -> Sessions<S> {
        Sessions {
            next_arrival: None,
            heap: BinaryHeap::with_capacity(1024),
            order: 0,
        }
    }

    /// The time of the next packet: a new session's first or a queued one.
    pub(super) fn peek(&self) -> Option<u64> {
        let top = self.heap.peek().map(|p| p.0.ts);
        match (self.next_arrival, top) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }
}

/// A generator of sessions that arrive over time and send a few packets each, one step at a time.
pub(super) trait SessionSource {
    type Session: Copy;

    fn sessions(&mut self) -> &mut Sessions<Self::Session>;

    /// Starts the session arriving at `ts` and sets when the next one arrives.
    fn arrive(&mut self, ts: u64) -> Self::Session;

    /// Writes the session's current step, sent at `ts`; returns the frame length and the gap to
    /// the next step, if there is one.
    fn write_step(&mut self, s: &Self::Session, ts: u64, frame: &mut Frame)
        -> (usize, Option<u64>);

    /// The session at its next step.
    fn advance(s: Self::Session) -> Self::Session;
}

/// Emits `g`'s earliest packet into `frame` (a new session's first on a tie) and queues the
/// session's next one; returns the frame length, `None` when no packet is left.
pub(super) fn emit<G: SessionSource>(g: &mut G, frame: &mut Frame) -> Option<usize> {
    let top = g.sessions().heap.peek().map(|p| p.0.ts);
    let (ts, session) = match (g.sessions().next_arrival, top) {
        (Some(a), t) if t.is_none_or(|t| a <= t) => (a, g.arrive(a)),
        _ => {
            let p = g.sessions().heap.pop()?.0;
            (p.ts, p.session)
        }
    };
    let (len, gap) = g.write_step(&session, ts, frame);
    if let Some(gap) = gap {
        let q = g.sessions();
        q.order += 1;
        q.heap.push(Reverse(Pending {
            ts: ts.saturating_add(gap),
            order: q.order,
            session: G::advance(session),
        }));
    }
    Some(len)
}

/// Poisson arrivals over `[0, len)` seconds at `rate` per second, or, with a [`Day`], at
/// `rate × shape(t) × burst(t)`: drawn by thinning, candidates at `rate × burst(t)` (piecewise
/// constant, so each piece is an exact Poisson process) each kept with probability `shape(t)` ≤ 1.
#[derive(Clone, Debug)]
pub(super) struct Arrivals {
    pub(super) rate: f64,
    pub(super) len: f64,
    pub(super) t: f64,
    pub(super) day: Option<Day>,
}

impl Arrivals {
    pub(super) fn next(&mut self, rng: &mut Rng) -> Option<f64> {
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
pub(super) struct Day {
    pub(super) len: f64,
    /// 1 / the maximum of [`Day::level`], so that `shape` peaks at 1.
    pub(super) norm: f64,
    /// The current or next page-load burst, 3× for 0.1–0.3 s, every 20–40 s: [start, end).
    pub(super) page: (f64, f64),
    /// The current or next surge, 2× for 2 s, every 90–150 s.
    surge: (f64, f64),
}

impl Day {
    pub(super) fn new(len: f64, rng: &mut Rng) -> Day {
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
    pub(super) fn level(f: f64) -> f64 {
        let cycle = 0.675 - 0.325 * (std::f64::consts::TAU * (f - 4.0 / 24.0)).cos();
        cycle * (1.0 + 0.3 * f)
    }

    /// The smooth rate at `t` seconds as a fraction of the peak.
    pub(super) fn shape(&self, t: f64) -> f64 {
        Day::level(t / self.len) * self.norm
    }

    /// Moves the bursts that ended by `t` to their next occurrence.
    pub(super) fn advance(&mut self, t: f64, rng: &mut Rng) {
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
    pub(super) fn burst(&self, t: f64) -> (f64, f64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::tests::*;

    #[test]
    fn slow_ramp_rises_and_pulse_wave_pulses() {
        let o = SynthOptions {
            duration: Duration::from_secs(25),
            attack_start: Duration::from_secs(1),
            attack_duration: Duration::from_secs(20),
            attack_pps: 2_000,
            ..short_alone()
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
}
