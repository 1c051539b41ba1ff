//! A hot key's evaluations ([`KeyTrace`]): the rate, threshold and learned mean of every signal at
//! each evaluation from the moment the key came near its threshold, bounded. The engine records
//! them (`Engine::record_traces`), an alert's `end` event carries its key's, the attribution keeps
//! one per hot key, and the report draws them (src/report/).

use crate::window::Signal;

/// Points a [`KeyTrace`] keeps at most (about 30 KB a hot key).
pub const TRACE_MAX_POINTS: usize = 256;

/// One evaluation of a hot key: the rate, threshold and learned mean of every thresholded signal
/// ([`Signal::ALL`] order), and the distinct peers seen since the key became hot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    pub ts_ns: u64,
    pub rates: [f32; Signal::THRESHOLDED],
    pub thresholds: [f32; Signal::THRESHOLDED],
    pub baselines: [f32; Signal::THRESHOLDED],
    pub distinct_peers: u32,
}

/// A hot key's evaluations, from the moment it came near its threshold until its alert ends,
/// bounded to [`TRACE_MAX_POINTS`]: when full, neighbours merge (the later point's time, threshold
/// and baseline; the higher rate, so peaks stay visible) and only every other evaluation after
/// that is kept, and so on.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyTrace {
    points: Vec<TracePoint>,
    /// Evaluations merged into one point.
    stride: u32,
    /// Evaluations since the last point was started (< stride).
    pending: u32,
}

impl Default for KeyTrace {
    fn default() -> Self {
        KeyTrace::new()
    }
}

impl KeyTrace {
    pub fn new() -> KeyTrace {
        KeyTrace {
            points: Vec::new(),
            stride: 1,
            pending: 0,
        }
    }

    /// Adds one evaluation.
    pub fn push(&mut self, p: TracePoint) {
        if self.pending > 0 {
            if let Some(last) = self.points.last_mut() {
                merge(last, &p);
            }
            self.pending = (self.pending + 1) % self.stride;
            return;
        }
        if self.points.len() == TRACE_MAX_POINTS {
            let merged: Vec<TracePoint> = self
                .points
                .chunks(2)
                .map(|pair| {
                    let mut a = pair[0];
                    if let Some(b) = pair.get(1) {
                        merge(&mut a, b);
                    }
                    a
                })
                .collect();
            self.points = merged;
            self.stride *= 2;
            // the new evaluation merges into the last point when that one is still short of a stride
        }
        self.points.push(p);
        self.pending = 1 % self.stride;
    }

    /// The points, oldest first.
    pub fn points(&self) -> &[TracePoint] {
        &self.points
    }
}

/// Merges `b` (later) into `a`.
fn merge(a: &mut TracePoint, b: &TracePoint) {
    a.ts_ns = b.ts_ns;
    for (x, y) in a.rates.iter_mut().zip(b.rates.iter()) {
        *x = x.max(*y);
    }
    a.thresholds = b.thresholds;
    a.baselines = b.baselines;
    a.distinct_peers = a.distinct_peers.max(b.distinct_peers);
}

/// Engine state ([`crate::engine_state`]).
mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};

    /// The most evaluations one point may stand for in a restored trace (far more than any run
    /// reaches: 256 × 2^30 ticks), so doubling it never overflows.
    const MAX_STRIDE: u32 = 1 << 30;

    impl KeyTrace {
        pub(crate) fn save(&self, e: &mut Enc) {
            e.usize(self.points.len());
            for p in &self.points {
                e.var(p.ts_ns);
                for v in p.rates.iter().chain(&p.thresholds).chain(&p.baselines) {
                    e.f32(*v);
                }
                e.var(u64::from(p.distinct_peers));
            }
            e.var(u64::from(self.stride));
            e.var(u64::from(self.pending));
        }

        pub(crate) fn load(d: &mut Dec) -> Result<KeyTrace, EngineStateError> {
            let n = d.len("a trace", 1 + 27 * 4 + 1)?;
            if n > TRACE_MAX_POINTS {
                return Err(d.corrupt(format!(
                    "a trace holds {n} points, more than {TRACE_MAX_POINTS}"
                )));
            }
            let mut points = Vec::with_capacity(n);
            for _ in 0..n {
                let mut p = TracePoint {
                    ts_ns: d.count("a trace point's time")?,
                    rates: [0.0; Signal::THRESHOLDED],
                    thresholds: [0.0; Signal::THRESHOLDED],
                    baselines: [0.0; Signal::THRESHOLDED],
                    distinct_peers: 0,
                };
                for v in p
                    .rates
                    .iter_mut()
                    .chain(p.thresholds.iter_mut())
                    .chain(p.baselines.iter_mut())
                {
                    *v = d.f32("a trace point")?;
                }
                p.distinct_peers = d.u32("a trace point's peers")?;
                points.push(p);
            }
            let stride = d.u32("a trace's stride")?;
            let pending = d.u32("a trace's pending evaluations")?;
            if stride == 0 || stride > MAX_STRIDE || pending >= stride {
                return Err(d.corrupt(format!(
                    "a trace's stride {stride} (pending {pending}) is impossible"
                )));
            }
            Ok(KeyTrace {
                points,
                stride,
                pending,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: u64, rate: f32) -> TracePoint {
        TracePoint {
            ts_ns: ts,
            rates: [rate; Signal::THRESHOLDED],
            thresholds: [10.0; Signal::THRESHOLDED],
            baselines: [1.0; Signal::THRESHOLDED],
            distinct_peers: 1,
        }
    }

    #[test]
    fn a_trace_is_bounded_and_keeps_its_peak() {
        let mut t = KeyTrace::new();
        for i in 0..10_000u64 {
            let rate = if i == 7_777 { 1e6 } else { i as f32 };
            t.push(point(i, rate));
        }
        let pts = t.points();
        assert!(pts.len() <= TRACE_MAX_POINTS && pts.len() > TRACE_MAX_POINTS / 2);
        assert!(pts.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns));
        assert_eq!(pts.iter().map(|p| p.rates[0]).fold(0.0, f32::max), 1e6);
        assert_eq!(pts.last().map(|p| p.ts_ns), Some(9_999));
    }
}
