//! Counting: packets and aggregates into the engine's tables. A packet is aggregated per (scope,
//! key) and tick ([`super::aggregator`]); at the next clock step each aggregate is counted into its
//! key's state ([`KeyState::absorb`]) with one table lookup per key, and a key that turns hot joins
//! the hot list evaluated at every tick.

use crate::alert::AlertEvent;
use crate::clock::Stamp;
use crate::decode::PacketSummary;
use crate::key::Scope;
use crate::table::{Admit, SourceAdmission};

use super::key_state::{At, KeyState};
use super::{key_of, scopes_of, Engine, ScopeMask, TickAggregate};

impl Engine {
    /// Counts one packet of the whole stream, first running any evaluation due before its timestamp:
    /// the engine keeps the clock itself and counts the scopes of the packet this shard owns.
    #[inline]
    pub fn on_packet(&mut self, p: &PacketSummary, out: &mut Vec<AlertEvent>) {
        self.on_packet_within(p, ScopeMask::ALL, out);
    }

    /// [`Engine::on_packet`] counting only the scopes in `allowed`: a detector that owns only the
    /// destination side or only the source side of a summary still keeps the stream's clock with
    /// every packet (the load source admission scales with included), but counts only its side.
    /// The packet is counted into the tables at once, so a state saved after any packet restores
    /// exactly (at the cost of the per-key work per packet; see [`Engine::aggregate_within`]).
    pub fn on_packet_within(
        &mut self,
        p: &PacketSummary,
        allowed: ScopeMask,
        out: &mut Vec<AlertEvent>,
    ) {
        self.aggregate_within(p, allowed, out);
        // counted at once: a saved state never holds part of a tick's aggregate
        self.absorb_pending();
    }

    /// [`Engine::on_packet_within`] aggregated per (scope, key) and tick, as [`Engine::count_many`]
    /// does, and counted into the tables at the next clock step: the per-key work is done once
    /// per key and tick. A caller that saves the state must do so where a tick has just been
    /// counted ([`Engine::advance_to`] a tick boundary, after every packet before it): a state
    /// saved mid-tick counts the tick's part at once, which changes what that tick samples.
    pub fn aggregate_within(
        &mut self,
        p: &PacketSummary,
        allowed: ScopeMask,
        out: &mut Vec<AlertEvent>,
    ) {
        let mut steps = std::mem::take(&mut self.steps);
        let stamp = self.clock.accept_weighted(p.ts, p.weight, &mut steps);
        for step in steps.drain(..) {
            self.apply(step, out);
        }
        self.steps = steps;
        let mut mask = scopes_of(&self.cfg, p);
        if mask.is_empty() {
            self.stats.ignored_packets += 1;
            return;
        }
        mask.0 &= allowed.0;
        if mask.is_empty() {
            return;
        }
        if self.shard.count > 1 {
            for scope in Scope::ALL {
                if mask.contains(scope)
                    && self.ownership.owner(scope, &key_of(&self.cfg, scope, p)) != self.shard.index
                {
                    mask.0 &= !(1 << scope.index());
                }
            }
            if mask.is_empty() {
                return;
            }
        }
        self.count(p, stamp, mask);
    }

    /// Counts `p` at `stamp` (from the stream's [`Clock`](crate::clock::Clock), with every step
    /// due before it applied) in the scopes of `mask`, which must be scopes of `p` ([`scopes_of`])
    /// this shard owns.
    #[inline]
    pub fn count(&mut self, p: &PacketSummary, stamp: Stamp, mask: ScopeMask) {
        self.count_many(std::iter::once((p, stamp, mask)));
    }

    /// [`Engine::count`] for each of `packets` in order, with no clock step due among them. The
    /// packets are aggregated per (scope, key) and tick ([`aggregator`](super::aggregator)) and
    /// counted into the tables at the next clock step ([`Engine::absorb`]): the per-key work is
    /// done once per key and tick, and the result is the same however the packets of a tick are
    /// split into calls.
    pub fn count_many<'p>(
        &mut self,
        packets: impl IntoIterator<Item = (&'p PacketSummary, Stamp, ScopeMask)>,
    ) {
        for (p, stamp, mask) in packets {
            if self.now.is_none_or(|t| stamp.at > t) {
                self.now = Some(stamp.at);
            }
            let (at, other) = self.agg.tick_of(stamp);
            if other {
                self.absorb_pending();
            }
            self.agg.add(p, stamp, mask, at);
            if self.agg.is_full() {
                self.absorb_pending();
            }
        }
    }

    /// The stream's clock: the latest packet time or time advanced to (None before the first).
    pub fn clock_now(&self) -> Option<crate::time::Timestamp> {
        self.clock.now()
    }

    /// True when packets are aggregated and not yet counted into the tables (a state saved now
    /// would count them mid-tick).
    pub fn has_pending(&self) -> bool {
        !self.agg.is_empty()
    }

    /// Counts what is aggregated into the tables now (done before every clock step; a checkpoint
    /// also does it, mid-tick).
    pub fn settle(&mut self) {
        self.absorb_pending();
    }

    /// Counts this engine's own pending aggregate.
    pub(super) fn absorb_pending(&mut self) {
        if self.agg.is_empty() {
            return;
        }
        let t = self.agg.take();
        // this engine's own aggregate holds only what it counts: its figures are its own
        self.absorb_counting(&t, true);
    }

    /// Counts an aggregate into the tables: the keys this shard owns, each with one lookup. A
    /// router's aggregates reach every shard alike; the first shard counts the stream-wide
    /// figures (packets, packets held back by admission).
    pub fn absorb(&mut self, t: &TickAggregate) {
        self.absorb_counting(t, self.shard.index == 0);
    }

    fn absorb_counting(&mut self, t: &TickAggregate, figures: bool) {
        if let Some(ts) = t.last_ts {
            if self.now.is_none_or(|n| ts > n) {
                self.now = Some(ts);
            }
        }
        if figures {
            self.stats.packets += t.packets;
            for (i, d) in t.deferred.iter().enumerate() {
                if let Some(table) = self.tables.get_mut(2 + i) {
                    table.stats.deferred += d;
                }
            }
        }
        let cfg = &self.cfg;
        let loaded = &mut self.loaded;
        let admission = &mut self.agg.admission;
        let watch = self.watch_default;
        let ticks_per_window = (self.window_ns / cfg.tick_ns().max(1)).max(1);
        let sharded = self.shard.count > 1;
        for scope in Scope::ALL {
            let s = scope.index();
            let (Some(agg), Some(table), Some(hot)) =
                (t.scopes.get(s), self.tables.get_mut(s), self.hot.get_mut(s))
            else {
                continue;
            };
            for (e, left) in agg.iter() {
                let key = e.key;
                if sharded && self.ownership.owner(scope, &key) != self.shard.index {
                    continue;
                }
                let at = At {
                    ts: e.first_ts,
                    epoch: t.epoch,
                    tick: t.tick,
                    ticks_per_window,
                };
                let make = || {
                    let profile = if cfg.profiles.is_empty() {
                        0
                    } else {
                        cfg.profile_of(key)
                    };
                    KeyState::new(&at, watch, loaded.remove(&(scope, key)), profile)
                };
                let (how, st) = table.entry_many(key, e.admitted, u64::from(e.summaries), make);
                if how == Admit::Inserted && !scope.is_destination() {
                    if let Some(a) = admission.get_mut(s - 2) {
                        a.mark_tracked(SourceAdmission::slots(key));
                    }
                }
                if let Some(st) = st {
                    if st.absorb(scope, &at, e, left) {
                        hot.push(key);
                    }
                }
            }
        }
    }
}
