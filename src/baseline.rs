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
    /// Windows of history after which a steady signal's baseline is mature: its threshold may then
    /// go below the absolute floor, down to `learned_floor × floor`.
    pub mature_windows: u32,
    /// The lowest a mature baseline takes a threshold, as a fraction of the floor (1: never below).
    pub learned_floor: f64,
}

impl Default for BaselineParams {
    fn default() -> Self {
        BaselineParams {
            alpha: 0.02,
            warmup: 30,
            factor: 3.0,
            sigmas: 5.0,
            max_step: 0.5,
            mature_windows: 900,
            learned_floor: 0.1,
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

    /// The lowest threshold this baseline allows `s`, given the signal's absolute `floor`: once the
    /// baseline has `mature_windows` of history and the signal is steady (a mean above zero and a
    /// standard deviation no larger than it), `learned_floor × floor`; otherwise the floor itself.
    pub fn floor_for(&self, s: Signal, floor: f64, p: &BaselineParams) -> f64 {
        if p.learned_floor >= 1.0 || self.samples < p.mature_windows.max(p.warmup) {
            return floor;
        }
        let Some(e) = self.rates.get(s.index()) else {
            return floor;
        };
        let mean = f64::from(e.mean);
        let sd = f64::from(e.var).max(0.0).sqrt();
        if mean > 0.0 && sd <= mean {
            floor * p.learned_floor
        } else {
            floor
        }
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

/// The saved-baselines file: versioned JSON, written by `--save-baseline`, read by `--load-baseline`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineFile {
    /// Always `floodwatch-baselines`.
    pub format: String,
    /// [`BaselineFile::VERSION`].
    pub version: u32,
    /// The signal each column of `mean`/`var` is, in order.
    pub signals: Vec<String>,
    /// Subnet prefix lengths the subnet keys were made with.
    pub subnet_v4: u8,
    pub subnet_v6: u8,
    pub entries: Vec<BaselineEntry>,
}

/// One key's learned baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineEntry {
    /// `dst_host`, `dst_subnet`, `src_host` or `src_subnet`.
    pub scope: String,
    /// Address or prefix.
    pub key: String,
    /// Windows learned.
    pub samples: u32,
    /// Mean rate per signal, per second.
    pub mean: Vec<f32>,
    /// Variance per signal.
    pub var: Vec<f32>,
}

/// Why a baselines file could not be used. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BaselineFileError {
    #[error("cannot read baselines from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot write baselines to {path}: {source} (check the directory exists and is writable)"
    )]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a floodwatch baselines file ({detail}); make one with --save-baseline")]
    Parse { path: String, detail: String },
    #[error("{path} is a version {found} baselines file; this floodwatch reads version {expected}: save it again with --save-baseline")]
    Version {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("{path} does not fit this run: {detail}")]
    Incompatible { path: String, detail: String },
}

impl BaselineFile {
    /// The format version this build reads and writes.
    pub const VERSION: u32 = 1;
    /// The `format` field of every baselines (and state) file.
    pub const FORMAT: &'static str = "floodwatch-baselines";

    /// A file holding `entries`.
    pub fn new(subnet_v4: u8, subnet_v6: u8, mut entries: Vec<BaselineEntry>) -> Self {
        entries.sort_by(|a, b| (&a.scope, &a.key).cmp(&(&b.scope, &b.key)));
        BaselineFile {
            format: Self::FORMAT.to_owned(),
            version: Self::VERSION,
            signals: Signal::ALL[..Signal::THRESHOLDED]
                .iter()
                .map(|s| s.name().to_owned())
                .collect(),
            subnet_v4,
            subnet_v6,
            entries,
        }
    }

    /// Writes the file as JSON, atomically ([`crate::atomic_file::write_atomic`]): a crash during the
    /// write leaves the previous file whole.
    pub fn save(&self, path: &std::path::Path) -> Result<(), BaselineFileError> {
        crate::atomic_file::write_atomic(path, |w| {
            serde_json::to_writer(w, self).map_err(std::io::Error::other)
        })
        .map_err(|source| BaselineFileError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads and checks a file made with the same subnet prefix lengths.
    pub fn load(
        path: &std::path::Path,
        subnet_v4: u8,
        subnet_v6: u8,
    ) -> Result<Self, BaselineFileError> {
        let p = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| BaselineFileError::Read {
            path: p.clone(),
            source,
        })?;
        // Read the header leniently first so a newer version is reported as such, not as garbage.
        #[derive(Deserialize)]
        struct Header {
            format: Option<String>,
            version: Option<u32>,
        }
        let h: Header = serde_json::from_slice(&text).map_err(|e| BaselineFileError::Parse {
            path: p.clone(),
            detail: e.to_string(),
        })?;
        if h.format.as_deref() != Some(Self::FORMAT) {
            return Err(BaselineFileError::Parse {
                path: p,
                detail: "no \"format\":\"floodwatch-baselines\"".into(),
            });
        }
        let found = h.version.unwrap_or(0);
        if found != Self::VERSION {
            return Err(BaselineFileError::Version {
                path: p,
                found,
                expected: Self::VERSION,
            });
        }
        let f: BaselineFile =
            serde_json::from_slice(&text).map_err(|e| BaselineFileError::Parse {
                path: p.clone(),
                detail: e.to_string(),
            })?;
        let mut f = f;
        let expected = BaselineFile::new(subnet_v4, subnet_v6, Vec::new());
        // Columns are matched by name: a file learned before the request signals existed loads,
        // with those signals not learned yet (zero: their floors hold until they are).
        let columns: Vec<Option<usize>> = expected
            .signals
            .iter()
            .map(|name| f.signals.iter().position(|s| s == name))
            .collect();
        if let Some(unknown) = f.signals.iter().find(|s| !expected.signals.contains(s)) {
            return Err(BaselineFileError::Incompatible {
                path: p,
                detail: format!("it has a signal `{unknown}` this floodwatch does not know"),
            });
        }
        if (f.subnet_v4, f.subnet_v6) != (subnet_v4, subnet_v6) {
            return Err(BaselineFileError::Incompatible {
                path: p,
                detail: format!(
                    "it was learned with --subnet-v4 {} --subnet-v6 {}, this run uses {subnet_v4}/{subnet_v6}",
                    f.subnet_v4, f.subnet_v6
                ),
            });
        }
        for e in &f.entries {
            let bad = |detail: String| BaselineFileError::Parse {
                path: p.clone(),
                detail,
            };
            crate::key::Scope::from_name(&e.scope)
                .ok_or_else(|| bad(format!("unknown scope `{}`", e.scope)))?;
            e.key.parse::<crate::key::Key>().map_err(bad)?;
            if e.mean.len() != f.signals.len() || e.var.len() != f.signals.len() {
                return Err(bad(format!(
                    "entry {} has {} columns, expected {}",
                    e.key,
                    e.mean.len(),
                    f.signals.len()
                )));
            }
            if e.mean
                .iter()
                .chain(e.var.iter())
                .any(|x| !x.is_finite() || *x < 0.0)
            {
                return Err(bad(format!(
                    "entry {} has a negative or non-finite rate",
                    e.key
                )));
            }
        }
        if columns.iter().enumerate().any(|(i, c)| *c != Some(i)) {
            let pick = |v: &[f32]| -> Vec<f32> {
                columns
                    .iter()
                    .map(|c| c.and_then(|i| v.get(i).copied()).unwrap_or(0.0))
                    .collect()
            };
            for e in &mut f.entries {
                e.mean = pick(&e.mean);
                e.var = pick(&e.var);
            }
            f.signals = expected.signals;
        }
        Ok(f)
    }
}

impl Baseline {
    /// This baseline as a file entry.
    pub fn to_entry(&self, scope: crate::key::Scope, key: crate::key::Key) -> BaselineEntry {
        BaselineEntry {
            scope: scope.name().to_owned(),
            key: key.to_string(),
            samples: self.samples,
            mean: self.rates.iter().map(|e| e.mean).collect(),
            var: self.rates.iter().map(|e| e.var).collect(),
        }
    }

    /// A baseline from a checked file entry.
    pub fn from_entry(e: &BaselineEntry) -> Baseline {
        let mut b = Baseline {
            samples: e.samples,
            ..Baseline::default()
        };
        for (r, (m, v)) in b.rates.iter_mut().zip(e.mean.iter().zip(e.var.iter())) {
            *r = Ewma { mean: *m, var: *v };
        }
        b
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

    /// A baseline that learned `windows` windows of `pps` (see [`rates`]).
    fn learned(pps: f64, windows: u32, p: &BaselineParams) -> Baseline {
        let mut b = Baseline::default();
        for _ in 0..windows {
            b.learn(&rates(pps), &FLOORS, p);
        }
        b
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
    fn only_a_mature_steady_signal_goes_below_its_floor() {
        let p = BaselineParams::default();
        let mut b = Baseline::default();
        let floor = 1000.0;
        for i in 0..p.mature_windows - 1 {
            b.learn(&rates(10.0 + (i % 5) as f64), &FLOORS, &p);
        }
        assert_eq!(b.floor_for(Signal::Syn, floor, &p), floor, "not mature yet");
        b.learn(&rates(12.0), &FLOORS, &p);
        assert_eq!(b.floor_for(Signal::Syn, floor, &p), 100.0);
        // a signal that never had traffic keeps its floor
        let mut quiet = rates(12.0);
        quiet[Signal::Icmp.index()] = 0.0;
        let mut c = Baseline::default();
        for _ in 0..p.mature_windows {
            c.learn(&quiet, &FLOORS, &p);
        }
        assert_eq!(c.floor_for(Signal::Icmp, floor, &p), floor);
        assert_eq!(c.floor_for(Signal::Syn, floor, &p), 100.0);
        // an erratic signal (σ > mean) keeps its floor
        let mut d = Baseline::default();
        for i in 0..p.mature_windows * 2 {
            d.learn(&rates(if i % 10 == 0 { 60.0 } else { 0.0 }), &FLOORS, &p);
        }
        assert_eq!(d.floor_for(Signal::Syn, floor, &p), floor);
        // learned_floor 1 turns it off
        let off = BaselineParams {
            learned_floor: 1.0,
            ..p
        };
        assert_eq!(b.floor_for(Signal::Syn, floor, &off), floor);
    }

    #[test]
    fn no_threshold_before_warmup() {
        let p = BaselineParams::default();
        let mut b = learned(100.0, p.warmup - 1, &p);
        assert_eq!(b.threshold(Signal::Packets, &p), 0.0);
        b.learn(&rates(100.0), &FLOORS, &p);
        assert!(b.threshold(Signal::Packets, &p) > 100.0);
    }

    #[test]
    fn a_slow_ramp_stays_above_what_is_learned() {
        // 100 pps of normal traffic, then +5 % per window: the rate must overtake the threshold.
        let p = BaselineParams::default();
        let mut b = learned(100.0, 60, &p);
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
        let mut b = learned(100.0, 60, &p);
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
    fn baselines_file_round_trips_and_rejects_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let p = BaselineParams::default();
        let b = learned(100.0, 40, &p);
        let key: crate::key::Key = "198.51.100.10".parse().unwrap();
        let f = BaselineFile::new(24, 64, vec![b.to_entry(crate::key::Scope::DstHost, key)]);
        f.save(&path).unwrap();
        let back = BaselineFile::load(&path, 24, 64).unwrap();
        assert_eq!(back, f);
        assert_eq!(Baseline::from_entry(&back.entries[0]), b);
        let e = BaselineFile::load(&path, 22, 64).unwrap_err().to_string();
        assert!(e.contains("--subnet-v4 24"), "{e}");
        std::fs::write(
            &path,
            b"{\"format\":\"floodwatch-baselines\",\"version\":9}",
        )
        .unwrap();
        assert!(BaselineFile::load(&path, 24, 64)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        std::fs::write(&path, b"\x00garbage").unwrap();
        let e = BaselineFile::load(&path, 24, 64).unwrap_err().to_string();
        assert!(e.contains("b.json") && e.contains("--save-baseline"), "{e}");
    }

    #[test]
    fn silence_decays_the_mean() {
        let p = BaselineParams::default();
        let mut b = learned(1000.0, 50, &p);
        b.learn_silence(300, &p);
        assert!(b.mean(Signal::Packets) < 10.0);
        assert_eq!(b.samples, 350);
    }
}
