//! Scope populations: a high quantile of per-key rates, the fallback threshold of keys that have no
//! history of their own yet.
//!
//! At every window boundary each shard records the completed window's rate of every quiet key (per
//! scope and signal) into hdrhistograms. The threshold of a cold key is at least the 99th percentile
//! of its scope's population. Keys live in different shards, so the histograms are merged across
//! shards through a [`PopulationExchange`] with a lag of one boundary: at boundary `b` every shard uses
//! the merge of everyone's boundary `b − 1`, whatever the thread count, so output stays identical.

use std::sync::{Condvar, Mutex};

use hdrhistogram::Histogram;

use crate::key::Scope;
use crate::window::Signal;

/// The quantile of per-key rates a cold key's threshold is held to.
pub const QUANTILE: f64 = 0.99;
/// Fewer keys than this in a scope and its population says nothing.
pub const MIN_KEYS: u64 = 50;
/// The signals with a population: the packet signals (the thresholded ones before
/// [`Signal::HttpRequests`]). A cold key's request signals are held to their floors alone: a site
/// is no neighbour of another site's requests, and their histograms would cost every evaluation.
const SIGNALS: usize = Signal::HttpRequests as usize;

/// Per scope and packet signal, a histogram of per-key rates (per second, rounded up).
#[derive(Clone, Debug)]
pub struct Population {
    /// Made at its first rate: a histogram is some 40 KiB to allocate and zero, most scope and
    /// signal pairs never record one (a flood's first window, signals no quiet key sends), and a
    /// population is cloned at every window boundary.
    hists: Vec<Option<Histogram<u64>>>,
    /// [`QUANTILE`] of every histogram, computed once by [`Population::seal`] (reading a quantile
    /// walks the histogram; thresholds read it for every cold key at every evaluation).
    sealed: Vec<f64>,
}

impl Population {
    /// An empty population.
    pub fn new() -> Self {
        Population {
            hists: vec![None; 4 * SIGNALS],
            sealed: Vec::new(),
        }
    }

    /// A histogram of rates (fixed bounds: never fails in practice; if it did, the slot would
    /// stay empty and say nothing, as a population under [`MIN_KEYS`] does).
    fn histogram() -> Option<Histogram<u64>> {
        Histogram::<u64>::new_with_bounds(1, 1_000_000_000_000, 2).ok()
    }

    /// The histogram of slot `i`, made when it has none yet.
    fn made(&mut self, i: usize) -> Option<&mut Histogram<u64>> {
        let slot = self.hists.get_mut(i)?;
        if slot.is_none() {
            *slot = Self::histogram();
        }
        slot.as_mut()
    }

    /// A population with no histograms (a placeholder that costs nothing to make).
    pub fn empty() -> Self {
        Population {
            hists: Vec::new(),
            sealed: Vec::new(),
        }
    }

    /// Computes the quantiles [`Population::quantile`] answers with; call once recording is done.
    pub fn seal(&mut self) {
        self.sealed = self
            .hists
            .iter()
            .map(|h| match h {
                Some(h) if h.len() >= MIN_KEYS => h.value_at_quantile(QUANTILE) as f64,
                _ => 0.0,
            })
            .collect();
    }

    fn slot(scope: Scope, s: Signal) -> usize {
        if s.index() < SIGNALS {
            scope.index() * SIGNALS + s.index()
        } else {
            usize::MAX
        }
    }

    /// Records one key's rate of `s` (zero rates are not recorded: idle keys say nothing).
    ///
    /// Inlined down to the compare: an evaluation offers every signal of every key, and most
    /// of them are under one packet a second (five in six of the calls on ordinary traffic).
    #[inline]
    pub fn record(&mut self, scope: Scope, s: Signal, rate: f64) {
        if rate >= 1.0 {
            self.record_rate(Self::slot(scope, s), rate);
        }
    }

    fn record_rate(&mut self, slot: usize, rate: f64) {
        if let Some(h) = self.made(slot) {
            h.saturating_record(rate.ceil().min(1e12) as u64);
        }
    }

    /// Adds another shard's population.
    pub fn merge(&mut self, other: &Population) {
        for (i, b) in other.hists.iter().enumerate() {
            // only where the other has one: a slot neither recorded in stays unmade
            let Some(b) = b else { continue };
            if let Some(a) = self.made(i) {
                // Same bounds on both sides: `add` cannot fail.
                let _ = a.add(b);
            }
        }
    }

    /// The [`QUANTILE`] rate of `s` in `scope` as of the last [`Population::seal`], or 0 when fewer
    /// than [`MIN_KEYS`] keys were recorded.
    #[inline]
    pub fn quantile(&self, scope: Scope, s: Signal) -> f64 {
        self.sealed
            .get(Self::slot(scope, s))
            .copied()
            .unwrap_or(0.0)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        for h in self.hists.iter_mut().flatten() {
            h.reset();
        }
        self.sealed.clear();
    }
}

impl Default for Population {
    fn default() -> Self {
        Population::new()
    }
}

/// Where shards swap their populations at each window boundary.
#[derive(Debug)]
pub struct PopulationExchange {
    shards: usize,
    state: Mutex<ExchangeState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct ExchangeState {
    /// (boundary, shards that published, merged so far)
    rounds: Vec<(u64, usize, Population)>,
    /// Shards that have finished: nobody waits for them any more.
    gone: usize,
}

impl PopulationExchange {
    /// An exchange between `shards` shards.
    pub fn new(shards: usize) -> Self {
        PopulationExchange {
            shards: shards.max(1),
            state: Mutex::new(ExchangeState::default()),
            ready: Condvar::new(),
        }
    }

    /// Publishes one shard's population of boundary `b`.
    pub fn publish(&self, b: u64, pop: &Population) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match st.rounds.iter_mut().find(|r| r.0 == b) {
            Some(r) => {
                r.1 += 1;
                r.2.merge(pop);
            }
            None => st.rounds.push((b, 1, pop.clone())),
        }
        self.ready.notify_all();
    }

    /// The merged population of boundary `b`, once every shard still running has published it. Also
    /// forgets older rounds.
    pub fn wait(&self, b: u64) -> Population {
        let Ok(mut st) = self.state.lock() else {
            return Population::new();
        };
        loop {
            let needed = self.shards.saturating_sub(st.gone);
            if let Some(r) = st.rounds.iter().find(|r| r.0 == b) {
                if r.1 >= needed {
                    let merged = r.2.clone();
                    st.rounds.retain(|r| r.0 + 1 >= b);
                    return merged;
                }
            } else if needed == 0 {
                return Population::new();
            }
            st = match self.ready.wait(st) {
                Ok(g) => g,
                Err(_) => return Population::new(),
            };
        }
    }

    /// A shard has finished (or failed): stop waiting for it.
    pub fn leave(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.gone += 1;
        }
        self.ready.notify_all();
    }
}

/// Engine state ([`crate::engine_state`]): each histogram as its recorded (value, count) pairs,
/// which record back into the same buckets, and the sealed quantiles as they are.
mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};

    impl Population {
        pub(crate) fn save(&self, e: &mut Enc) {
            e.usize(self.hists.len());
            for h in &self.hists {
                let recorded: Vec<(u64, u64)> = h
                    .iter()
                    .flat_map(|h| h.iter_recorded())
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect();
                e.usize(recorded.len());
                for (value, count) in recorded {
                    e.var(value);
                    e.var(count);
                }
            }
            e.usize(self.sealed.len());
            for q in &self.sealed {
                e.f64(*q);
            }
        }

        pub(crate) fn load(d: &mut Dec) -> Result<Population, EngineStateError> {
            let n = d.len("a population", 1)?;
            let mut p = match n {
                0 => Population::empty(),
                n if n == 4 * SIGNALS => Population::new(),
                n => return Err(d.corrupt(format!("a population of {n} histograms"))),
            };
            if p.hists.len() != n {
                return Err(d.corrupt("a population's histograms could not be made"));
            }
            for i in 0..n {
                let buckets = d.len("a population histogram", 2)?;
                if buckets == 0 {
                    continue;
                }
                let h = p
                    .made(i)
                    .ok_or_else(|| d.corrupt("a population's histograms could not be made"))?;
                for _ in 0..buckets {
                    let value = d.count("a population rate")?;
                    let count = d.count("a population count")?;
                    h.record_n(value, count).map_err(|_| {
                        d.corrupt(format!("population rate {value} is out of range"))
                    })?;
                    if h.len() > crate::engine_state::MAX_COUNT {
                        return Err(d.corrupt("a population counts too many keys"));
                    }
                }
            }
            let n = d.len("population quantiles", 8)?;
            if n != 0 && n != p.hists.len() {
                return Err(d.corrupt(format!("{n} population quantiles")));
            }
            p.sealed = (0..n)
                .map(|_| d.f64("a population quantile"))
                .collect::<Result<_, _>>()?;
            Ok(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slots_with_rates_hold_a_histogram() {
        let mut a = Population::new();
        a.record(Scope::DstHost, Signal::Syn, 50.0);
        a.record(Scope::SrcHost, Signal::Udp, 0.5); // under one a second: not recorded
        let mut b = Population::new();
        b.merge(&a);
        b.merge(&Population::new());
        let made = |p: &Population| p.hists.iter().filter(|h| h.is_some()).count();
        assert_eq!((made(&a), made(&b)), (1, 1));
        b.clear();
        assert_eq!(made(&b), 1, "clear resets, it does not unmake");
    }

    #[test]
    fn quantile_needs_enough_keys() {
        let mut p = Population::new();
        for i in 0..(MIN_KEYS - 1) {
            p.record(Scope::DstHost, Signal::Packets, 100.0 + i as f64);
        }
        p.seal();
        assert_eq!(p.quantile(Scope::DstHost, Signal::Packets), 0.0);
        p.record(Scope::DstHost, Signal::Packets, 5000.0);
        p.seal();
        let q = p.quantile(Scope::DstHost, Signal::Packets);
        assert!((4900.0..=5100.0).contains(&q), "{q}");
        assert_eq!(p.quantile(Scope::SrcHost, Signal::Packets), 0.0);
    }

    #[test]
    fn merged_shards_equal_one_population() {
        let mut whole = Population::new();
        let mut a = Population::new();
        let mut b = Population::new();
        for i in 0..1000u32 {
            let r = f64::from(i * 7 % 997);
            whole.record(Scope::DstSubnet, Signal::Syn, r);
            if i % 2 == 0 { &mut a } else { &mut b }.record(Scope::DstSubnet, Signal::Syn, r);
        }
        let ex = PopulationExchange::new(2);
        ex.publish(3, &a);
        ex.publish(3, &b);
        let mut m = ex.wait(3);
        m.seal();
        whole.seal();
        assert_eq!(
            m.quantile(Scope::DstSubnet, Signal::Syn),
            whole.quantile(Scope::DstSubnet, Signal::Syn)
        );
    }

    #[test]
    fn a_departed_shard_is_not_waited_for() {
        let ex = PopulationExchange::new(2);
        ex.publish(1, &Population::new());
        ex.leave();
        let _ = ex.wait(1);
    }
}
