//! What the engine keeps per (scope, key) ([`KeyState`]: window, baseline, lifetime totals, alert
//! phase, evidence) and how one tick's aggregate of a key is counted into it
//! ([`KeyState::absorb`]), including the moment a key becomes hot and starts gathering evidence.

use crate::aggregate::{Drained, KeyAgg};
use crate::alert::AttackClass;
use crate::attribution::Evidence;
use crate::baseline::Baseline;
use crate::key::Scope;
use crate::time::Timestamp;
use crate::window::{Burst, Signal, Sliding, COUNTERS};

/// Where a key is in its alert life.
#[derive(Debug)]
pub(super) enum Phase {
    Idle,
    /// Over threshold for this many consecutive evaluations, not yet alerting.
    Pending(u32),
    Active(Box<ActiveAlert>),
}

#[derive(Debug)]
pub(super) struct ActiveAlert {
    pub(super) id: String,
    pub(super) class: AttackClass,
    pub(super) signal: Signal,
    pub(super) started: Timestamp,
    pub(super) last_over: Timestamp,
    pub(super) last_update: Timestamp,
    pub(super) peak: f64,
    /// The signal's threshold at the last evaluation.
    pub(super) threshold: f64,
    /// The alert started on a quiet host's floor ([`quiet`]): only such an alert keeps judging its
    /// key against the quiet-host floors.
    pub(super) quiet_host: bool,
    /// Lifetime packet/byte totals of the key at the alert's start, minus what its window held then.
    pub(super) base_packets: u64,
    pub(super) base_bytes: u64,
}

/// Everything the engine keeps per (scope, key).
#[derive(Debug)]
pub(super) struct KeyState {
    pub(super) window: Sliding,
    pub(super) baseline: Baseline,
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) phase: Phase,
    pub(super) evidence: Option<Box<Evidence>>,
    /// Packets in the current window at which evidence starts being gathered.
    pub(super) watch_at: u64,
    /// The same for the request signals together (requests, handshakes, heads held open): a
    /// request flood is a few hundred packets a second, far under `watch_at`.
    pub(super) watch_req: u32,
    /// Packet time (ns) at which the key's traffic resumed after a silence of a whole window (or
    /// first appeared): while that is less than a window ago, its rate is judged on the time since.
    pub(super) since: u64,
    /// Summaries counted since `since` (saturating).
    pub(super) summaries: u32,
    /// Tick (low 32 bits) of `tick_packets`, and the packets counted in it: a key that packs 30 % of
    /// its lowest threshold's share of a window into one tick starts watching at once.
    pub(super) tick: u32,
    pub(super) tick_packets: u32,
    /// Majority vote over amplifier source ports: (candidate, weight).
    pub(super) amp_vote: (u16, u32),
    pub(super) idle_windows: u64,
    /// Which `[[prefix]]` settings apply (0: the defaults).
    pub(super) profile: u16,
}

/// Where a packet is counted: its time, window and tick, and the tick watch level.
#[derive(Clone, Copy, Debug)]
pub(super) struct At {
    pub(super) ts: u64,
    pub(super) epoch: u64,
    pub(super) tick: u64,
    /// Ticks per window: a key watches once a tick holds `watch_at / ticks_per_window` packets.
    pub(super) ticks_per_window: u64,
}

impl KeyState {
    pub(super) fn new(at: &At, watch_at: u64, baseline: Option<Baseline>, profile: u16) -> Self {
        KeyState {
            profile,
            window: Sliding::new(at.epoch),
            baseline: baseline.unwrap_or_default(),
            packets: 0,
            bytes: 0,
            phase: Phase::Idle,
            evidence: None,
            watch_at,
            watch_req: u32::MAX,
            since: at.ts,
            summaries: 0,
            tick: at.tick as u32,
            tick_packets: 0,
            amp_vote: (0, 0),
            idle_windows: 0,
        }
    }

    /// Counts one aggregate of the key's packets (all in the tick of `at`); returns true when the key
    /// just started gathering evidence (became hot). Its samples feed the evidence.
    pub(super) fn absorb(
        &mut self,
        scope: Scope,
        at: &At,
        agg: &KeyAgg,
        left: Drained<'_>,
    ) -> bool {
        let counts = agg.counts();
        if self.window.record(at.epoch, &counts) {
            self.since = at.ts;
            self.summaries = 0;
        }
        self.summaries = self.summaries.saturating_add(agg.summaries);
        let packets = counts.get(Signal::Packets);
        if self.tick != at.tick as u32 {
            self.tick = at.tick as u32;
            self.tick_packets = 0;
        }
        self.tick_packets = self
            .tick_packets
            .saturating_add(u32::try_from(packets).unwrap_or(u32::MAX));
        // lifetime totals: flow records can claim absurd sizes, and a total never panics
        self.packets = self.packets.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(counts.get(Signal::Bytes));
        if agg.amp.1 > 0 {
            crate::aggregate::vote(&mut self.amp_vote, agg.amp.0, agg.amp.1);
        }
        let packets_near = || {
            self.window.current().n[0] >= self.watch_at
                || u64::from(self.tick_packets).saturating_mul(at.ticks_per_window) >= self.watch_at
        };
        // (hot list, packets watched from this aggregate on: its burst was seeded)
        let (became_hot, seeded) = match &self.evidence {
            Some(e) if e.packets_watched => (false, false),
            // near a request threshold before: the packets are watched from now, as if the
            // evidence started now (what packets it sketches must not depend on the requests)
            Some(_) if packets_near() => {
                let clients = self.evidence.as_mut().and_then(|e| e.clients.take());
                self.start_watching(scope, at);
                if let Some(e) = &mut self.evidence {
                    e.clients = clients;
                }
                // hot already (since its requests came near)
                (false, true)
            }
            Some(_) => (false, false),
            None if packets_near() => {
                self.start_watching(scope, at);
                (true, true)
            }
            None if requests_of(self.window.current()) >= u64::from(self.watch_req) => {
                self.evidence = Some(Box::new(Evidence::for_requests(scope)));
                (true, false)
            }
            None => return false,
        };
        if let Some(e) = self.evidence.as_mut().filter(|e| !e.packets_watched) {
            for c in left.clients {
                e.add_client(c.client, c.counts, at.ts);
            }
            for d in left.details {
                e.add_detail(d.kind, &d.text);
            }
            return became_hot;
        }
        if let Some(e) = &mut self.evidence {
            let hosts_counted = scope.is_subnet() && agg.hosts_exact;
            for s in left.samples {
                e.add_sample(scope, &s.p, s.rate, hosts_counted);
            }
            if hosts_counted {
                for h in left.hosts {
                    e.add_host(h.host, h.packets);
                }
            }
            if let Some(r) = left.regs {
                e.merge_peers(r);
            }
            for c in left.clients {
                e.add_client(c.client, c.counts, at.ts);
            }
            for d in left.details {
                e.add_detail(d.kind, &d.text);
            }
            if !seeded {
                e.burst.add_many(at.tick, &counts, u64::from(agg.summaries));
            }
        }
        became_hot
    }

    /// The key becomes hot: evidence and the short window start.
    #[cold]
    #[inline(never)]
    fn start_watching(&mut self, scope: Scope, at: &At) {
        let mut e = Box::new(Evidence::new(scope));
        e.burst = self.seed_burst(at.tick);
        self.evidence = Some(e);
    }

    /// The short window of a key that just became hot: its current tick gets the packets counted in
    /// it so far, split between signals as the current window's traffic is (the earlier tick is
    /// unknown and left empty).
    fn seed_burst(&self, tick: u64) -> Burst {
        let cur = self.window.current();
        let total = cur.n[0].max(1) as f64;
        let in_tick = f64::from(self.tick_packets).min(total);
        let mut seed = [0u64; COUNTERS];
        for (s, c) in seed.iter_mut().zip(cur.n.iter()) {
            *s = (*c as f64 * in_tick / total).round() as u64;
        }
        let summaries = u64::from(self.summaries).min(in_tick as u64).max(1);
        Burst::seeded(tick, seed, summaries)
    }

    /// True when the key must be evaluated at every tick, not only at window boundaries.
    pub(super) fn is_hot(&self) -> bool {
        self.evidence.is_some() || !matches!(self.phase, Phase::Idle)
    }
}

/// The request signals of a window together (what [`KeyState::watch_req`] is compared with).
fn requests_of(c: &crate::window::Counts) -> u64 {
    Signal::REQUEST_SIGNALS
        .iter()
        .fold(0u64, |n, s| n.saturating_add(c.get(*s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;

    #[test]
    fn per_key_state_stays_small() {
        // The --max-keys help promises about 470 bytes a key (state + key + map slot).
        let per_key = std::mem::size_of::<KeyState>() + std::mem::size_of::<Key>() + 8;
        assert!(per_key <= 470, "{per_key} bytes per key");
    }
}
