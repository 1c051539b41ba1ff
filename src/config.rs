//! Resolved detection settings: what the engine runs on, after the command line (and later a config
//! file) have been merged over the defaults and validated.

use std::time::Duration;

use crate::baseline::BaselineParams;
use crate::key::Scope;
use crate::window::Signal;

/// Absolute floors: a key never alerts below these rates, whatever its baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Floors {
    /// Per thresholded signal, in packets per second (bytes per second for [`Signal::Bytes`]).
    pub per_signal: [f64; Signal::THRESHOLDED],
}

impl Floors {
    /// Floors scaled from one number, `min_pps` (default 1000): SYN, SYN-ACK, ICMP, fragments and
    /// reflection at `min_pps`; UDP at 5×; other TCP at 30×; all packets at 50×; bytes at 1 Gbit/s ×
    /// `min_pps`/1000.
    pub fn from_min_pps(min_pps: f64) -> Floors {
        let mut per_signal = [0.0; Signal::THRESHOLDED];
        for s in &Signal::ALL[..Signal::THRESHOLDED] {
            per_signal[s.index()] = min_pps
                * match s {
                    Signal::Packets => 50.0,
                    Signal::Bytes => 125_000.0,
                    Signal::TcpOther => 30.0,
                    Signal::Udp => 5.0,
                    _ => 1.0,
                };
        }
        Floors { per_signal }
    }

    /// The floors of `scope` from `min_pps`: as [`Floors::from_min_pps`], except that a source sending
    /// SYN-ACKs is a server answering connections (or a reflector), so source scopes put SYN-ACK at 30×.
    pub fn for_scope(scope: Scope, min_pps: f64) -> Floors {
        let mut f = Floors::from_min_pps(min_pps);
        if !scope.is_destination() {
            f.per_signal[Signal::SynAck.index()] = 30.0 * min_pps;
        }
        f
    }

    /// The floors of every scope from `min_pps`, indexed by [`Scope::index`].
    pub fn all_scopes(min_pps: f64) -> [Floors; 4] {
        Scope::ALL.map(|s| Floors::for_scope(s, min_pps))
    }

    /// The floor of `s`.
    pub fn get(&self, s: Signal) -> f64 {
        self.per_signal
            .get(s.index())
            .copied()
            .unwrap_or(f64::INFINITY)
    }
}

impl Default for Floors {
    fn default() -> Self {
        Floors::from_min_pps(1000.0)
    }
}

/// Everything the detection engine needs.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectConfig {
    /// Sliding window length (rates are per window, reported per second).
    pub window: Duration,
    /// Evaluation period in packet time; divides `window`.
    pub tick: Duration,
    /// Prefix lengths of the subnet scopes.
    pub subnet_v4: u8,
    pub subnet_v6: u8,
    /// Absolute floors per scope (index [`Scope::index`]).
    pub floors: [Floors; 4],
    pub baseline: BaselineParams,
    /// Consecutive evaluations over threshold before an alert starts.
    pub trigger_evals: u32,
    /// Time below threshold before an alert ends.
    pub hold_down: Duration,
    /// While active, below this fraction of the threshold counts as "below" (hysteresis).
    pub end_ratio: f64,
    /// At most one `update` per this interval while an alert is active.
    pub update_interval: Duration,
    /// Hard cap on keys per scope (index [`Scope::index`]).
    pub max_keys: [usize; 4],
    /// Keys idle this many windows are evicted (their baseline forgotten).
    pub idle_windows: u64,
    /// Entries in `top_peers` / `top_ports` lists.
    pub top_n: usize,
    /// Seed of the hashers of every map keyed by packet fields.
    pub hash_seed: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            window: Duration::from_secs(1),
            tick: Duration::from_millis(100),
            subnet_v4: 24,
            subnet_v6: 64,
            floors: Floors::all_scopes(1000.0),
            baseline: BaselineParams::default(),
            trigger_evals: 2,
            hold_down: Duration::from_secs(10),
            end_ratio: 0.8,
            update_interval: Duration::from_secs(10),
            max_keys: DetectConfig::split_max_keys(131_072),
            idle_windows: 300,
            top_n: 10,
            hash_seed: 0,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--window must be between 100 ms and 1 hour (got {0:?})")]
    Window(Duration),
    #[error("--tick ({tick:?}) must be at least 1 ms and divide --window ({window:?}) evenly")]
    Tick { tick: Duration, window: Duration },
    #[error("--subnet-v4 must be 0..=32 and --subnet-v6 0..=128 (got {0}/{1})")]
    Subnet(u8, u8),
    #[error("--max-keys must be at least 16 (got {0})")]
    MaxKeys(usize),
    #[error("--min-pps must be a positive number (got {0})")]
    MinPps(f64),
}

impl DetectConfig {
    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let w = self.window.as_nanos();
        if self.window < Duration::from_millis(100) || self.window > Duration::from_secs(3600) {
            return Err(ConfigError::Window(self.window));
        }
        let t = self.tick.as_nanos();
        if self.tick < Duration::from_millis(1) || w % t != 0 {
            return Err(ConfigError::Tick {
                tick: self.tick,
                window: self.window,
            });
        }
        if self.subnet_v4 > 32 || self.subnet_v6 > 128 {
            return Err(ConfigError::Subnet(self.subnet_v4, self.subnet_v6));
        }
        if let Some(&m) = self.max_keys.iter().find(|&&m| m < 16) {
            return Err(ConfigError::MaxKeys(m));
        }
        for f in &self.floors {
            if let Some(&x) = f.per_signal.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                return Err(ConfigError::MinPps(x));
            }
        }
        Ok(())
    }

    /// Splits a total key budget over the scopes: 40 % dst_host, 10 % dst_subnet, 40 % src_host,
    /// 10 % src_subnet.
    pub fn split_max_keys(total: u64) -> [usize; 4] {
        let t = usize::try_from(total).unwrap_or(usize::MAX);
        [t / 10 * 4, t / 10, t / 10 * 4, t / 10].map(|n| n.max(16))
    }

    /// The floors of a scope.
    pub fn floors_of(&self, scope: Scope) -> &Floors {
        &self.floors[scope.index()]
    }

    /// Window length in nanoseconds.
    pub fn window_ns(&self) -> u64 {
        self.window.as_nanos().min(u128::from(u64::MAX)) as u64
    }

    /// Tick length in nanoseconds.
    pub fn tick_ns(&self) -> u64 {
        self.tick.as_nanos().min(u128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert_eq!(DetectConfig::default().validate(), Ok(()));
        let c = DetectConfig {
            tick: Duration::from_millis(300),
            ..DetectConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Tick { .. })));
        let c = DetectConfig {
            subnet_v4: 33,
            ..DetectConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--subnet-v4"));
        let c = DetectConfig {
            floors: [Floors::from_min_pps(0.0); 4],
            ..DetectConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn floors_scale_from_min_pps() {
        let f = Floors::from_min_pps(1000.0);
        assert_eq!(f.get(Signal::Syn), 1000.0);
        assert_eq!(f.get(Signal::Udp), 5000.0);
        assert_eq!(f.get(Signal::Packets), 50_000.0);
    }
}
