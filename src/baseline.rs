//! Learned baselines: each key's normal rate per signal, an EWMA of mean and variance fed one sample per
//! completed window, and the threshold derived from it.
//!
//! Floods must not teach the baseline that floods are normal, so:
//! - the detector stops feeding a key's baseline while the key is pending or in alert;
//! - during warm-up (a running mean of the first `warmup` windows) samples are clipped to half the
//!   key's floor, so a flood that begins before the key has history is not learned;
//! - after it, every sample is clipped to `(1 + max_step) × mean`, so the mean can grow by at most
//!   `alpha × max_step` (1 % with the defaults) per window: a ramp faster than that outruns its
//!   baseline and crosses `factor × mean`, while slower, organic growth is learned.

use serde::{Deserialize, Serialize};

use crate::window::{Signal, COUNTERS};

/// How a baseline learns and what threshold it gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BaselineParams {
    /// Weight of each new sample (one per window): 0.02 ≈ a 50-window memory. An EWMA follows a rate
    /// growing by g per window at about `1 + g/alpha` below it, so with `factor` 3 a rate growing 5 % a
    /// window overtakes its threshold while one tripling over two minutes (0.9 % a window) does not.
    pub alpha: f64,
    /// Samples needed before the learned threshold applies (until then only the floors do).
    pub warmup: u32,
    /// Threshold ≥ `factor × mean`.
    pub factor: f64,
    /// Threshold ≥ `mean + sigmas × σ`.
    pub sigmas: f64,
    /// Samples above `(1 + max_step) × mean` are clipped to it before learning.
    pub max_step: f64,
}

impl Default for BaselineParams {
    fn default() -> Self {
        BaselineParams {
            alpha: 0.02,
            warmup: 30,
            factor: 3.0,
            sigmas: 5.0,
            max_step: 0.5,
        }
    }
}

/// Mean and variance of one signal's per-second rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    pub mean: f32,
    pub var: f32,
}

/// The learned rates of one key, one [`Ewma`] per thresholded signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub samples: u32,
    pub rates: [Ewma; Signal::THRESHOLDED],
}

impl Baseline {
    /// Learns one completed window, given as per-second rates of every counter. `floors` are the key's
    /// absolute floors: during warm-up samples are clipped to half of them, so a flood that begins
    /// before the key has history (even inside its first window) is not learned as normal.
    pub fn learn(
        &mut self,
        rates: &[f64; COUNTERS],
        floors: &[f64; Signal::THRESHOLDED],
        p: &BaselineParams,
    ) {
        let warm = self.is_warm(p);
        // Warm-up: running mean (fast, exact); then the EWMA.
        let alpha = if warm {
            p.alpha
        } else {
            1.0 / (f64::from(self.samples) + 1.0)
        };
        for ((e, &x), &floor) in self.rates.iter_mut().zip(rates.iter()).zip(floors.iter()) {
            let mean = f64::from(e.mean);
            let ceiling = if warm {
                mean * (1.0 + p.max_step) + 1.0
            } else {
                0.5 * floor
            };
            let x = x.min(ceiling);
            let d = x - mean;
            let new_mean = mean + alpha * d;
            let new_var = (1.0 - alpha) * (f64::from(e.var) + alpha * d * d);
            e.mean = new_mean as f32;
            e.var = new_var as f32;
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// Learns `n` windows with no traffic at all, in O(1).
    pub fn learn_silence(&mut self, n: u64, p: &BaselineParams) {
        if n == 0 || self.samples == 0 {
            return;
        }
        let keep = (1.0 - p.alpha).powf(n.min(100_000) as f64);
        for e in self.rates.iter_mut() {
            e.mean = (f64::from(e.mean) * keep) as f32;
            e.var = (f64::from(e.var) * keep) as f32;
        }
        self.samples = self
            .samples
            .saturating_add(n.min(u64::from(u32::MAX)) as u32);
    }

    /// True once the baseline has seen its warm-up.
    pub fn is_warm(&self, p: &BaselineParams) -> bool {
        self.samples >= p.warmup
    }

    /// The learned mean rate of `s`.
    pub fn mean(&self, s: Signal) -> f64 {
        self.rates
            .get(s.index())
            .map(|e| f64::from(e.mean))
            .unwrap_or(0.0)
    }

    /// The baseline-derived threshold of `s` (zero while warming up): the larger of `factor × mean` and
    /// `mean + sigmas × σ`.
    pub fn threshold(&self, s: Signal, p: &BaselineParams) -> f64 {
        if !self.is_warm(p) {
            return 0.0;
        }
        let Some(e) = self.rates.get(s.index()) else {
            return 0.0;
        };
        let mean = f64::from(e.mean);
        let sd = f64::from(e.var).max(0.0).sqrt();
        (p.factor * mean).max(mean + p.sigmas * sd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOORS: [f64; Signal::THRESHOLDED] = [1e9; Signal::THRESHOLDED];

    fn rates(pps: f64) -> [f64; COUNTERS] {
        let mut r = [0.0; COUNTERS];
        r[Signal::Packets.index()] = pps;
        r[Signal::Syn.index()] = pps / 10.0;
        r
    }

    #[test]
    fn learns_a_steady_rate() {
        let p = BaselineParams::default();
        let mut b = Baseline::default();
        for i in 0..200 {
            b.learn(&rates(100.0 + (i % 3) as f64), &FLOORS, &p);
        }
        assert!((b.mean(Signal::Packets) - 101.0).abs() < 2.0);
        let t = b.threshold(Signal::Packets, &p);
        assert!((290.0..=320.0).contains(&t), "threshold {t}");
    }

    #[test]
    fn no_threshold_before_warmup() {
        let p = BaselineParams::default();
        let mut b = Baseline::default();
        for _ in 0..p.warmup - 1 {
            b.learn(&rates(100.0), &FLOORS, &p);
        }
        assert_eq!(b.threshold(Signal::Packets, &p), 0.0);
        b.learn(&rates(100.0), &FLOORS, &p);
        assert!(b.threshold(Signal::Packets, &p) > 100.0);
    }

    #[test]
    fn a_slow_ramp_stays_above_what_is_learned() {
        // 100 pps of normal traffic, then +5 % per window: the rate must overtake the threshold.
        let p = BaselineParams::default();
        let mut b = Baseline::default();
        for _ in 0..60 {
            b.learn(&rates(100.0), &FLOORS, &p);
        }
        let mut rate = 100.0;
        let mut caught = false;
        for _ in 0..200 {
            rate *= 1.05;
            if rate > b.threshold(Signal::Packets, &p) {
                caught = true;
                break;
            }
            b.learn(&rates(rate), &FLOORS, &p);
        }
        assert!(
            caught,
            "ramp was learned: baseline {}",
            b.mean(Signal::Packets)
        );
    }

    #[test]
    fn smooth_growth_is_learned_not_flagged() {
        // Tripling over 120 windows.
        let p = BaselineParams::default();
        let mut b = Baseline::default();
        for _ in 0..60 {
            b.learn(&rates(100.0), &FLOORS, &p);
        }
        let g = 3f64.powf(1.0 / 120.0);
        let mut rate = 100.0;
        for _ in 0..120 {
            rate *= g;
            assert!(rate < b.threshold(Signal::Packets, &p), "flagged at {rate}");
            b.learn(&rates(rate), &FLOORS, &p);
        }
    }

    #[test]
    fn warm_up_does_not_learn_a_flood_as_normal() {
        let p = BaselineParams::default();
        let mut b = Baseline::default();
        let floors = [1000.0; Signal::THRESHOLDED];
        b.learn(&rates(750.0), &floors, &p);
        assert_eq!(b.mean(Signal::Packets), 500.0);
        for _ in 0..40 {
            b.learn(&rates(20.0), &floors, &p);
        }
        assert!(
            b.mean(Signal::Packets) < 40.0,
            "{}",
            b.mean(Signal::Packets)
        );
    }

    #[test]
    fn silence_decays_the_mean() {
        let p = BaselineParams::default();
        let mut b = Baseline::default();
        for _ in 0..50 {
            b.learn(&rates(1000.0), &FLOORS, &p);
        }
        b.learn_silence(300, &p);
        assert!(b.mean(Signal::Packets) < 10.0);
        assert_eq!(b.samples, 350);
    }
}
