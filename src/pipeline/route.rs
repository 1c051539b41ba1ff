//! Routing: the one place that sees the whole stream after decoding. It runs the stream's [`Clock`]
//! and aggregates the packets of each tick per (scope, key) ([`Aggregator`]): what leaves for the
//! shards is one [`TickAggregate`] per tick, shared by every shard (each counts the keys it owns),
//! followed by the clock's [`TimeStep`]s, so all shards evaluate at the same packet times. Nothing
//! crosses a channel per packet, and the work per packet does not grow with the shard count.
//!
//! Work leaves at every tick. On replay a full channel makes the router wait (back-pressure); on
//! live capture it never does: the aggregates of that flush are dropped for every shard and
//! counted (their packets), and the time steps stay queued for the next flush (a shard may miss
//! packets, never an evaluation).

use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::Sender;

use super::checkpoint::CheckpointTrigger;
use crate::alert::StatsEvent;
use crate::clock::{Clock, ClockStats, TimeStep};
use crate::config::DetectConfig;
use crate::decode::PacketSummary;
use crate::detect::{scopes_of, Aggregator, TickAggregate};
use crate::requests::RequestHead;
use crate::time::Timestamp;

/// One thing a shard does, in stream order.
#[derive(Debug)]
pub(super) enum Item {
    /// Count an aggregate (the keys of it the shard owns).
    Counts(Arc<TickAggregate>),
    /// Apply a step of the stream's clock.
    Step(TimeStep),
}

/// What one shard receives in one message.
#[derive(Debug, Default)]
pub(super) struct ShardWork {
    pub items: Vec<Item>,
    /// `stats` events (shard 0 only), ordered after the alert events of their `seq`.
    pub marks: Vec<StatsEvent>,
    /// Hand the baselines over for this checkpoint once the work is done (every shard gets it in
    /// the same flush, so all of them at the same evaluation).
    pub checkpoint: Option<u64>,
    /// Run on this configuration from the start of this work on (a SIGHUP reload).
    pub reconfigure: Option<Arc<DetectConfig>>,
}

impl ShardWork {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
            && self.marks.is_empty()
            && self.checkpoint.is_none()
            && self.reconfigure.is_none()
    }
}

/// A message from the router to one shard.
#[derive(Debug)]
pub(super) enum ShardMsg {
    Work(ShardWork),
    /// The input is over; the stream's latest packet time, where the last evaluation runs.
    End(Option<Timestamp>),
}

/// How many messages each shard has finished, for a router that must not run ahead of the shards
/// (`--evidence-dir`: the reader's look-back must still hold the frames of a key when a shard says
/// it started an alert, whatever the rate).
#[derive(Debug)]
pub(super) struct Progress {
    done: Mutex<Vec<u64>>,
    changed: Condvar,
}

impl Progress {
    pub fn new(shards: usize) -> Progress {
        Progress {
            done: Mutex::new(vec![0; shards]),
            changed: Condvar::new(),
        }
    }

    /// Shard `i` finished one more message.
    pub fn done(&self, i: usize) {
        if let Ok(mut d) = self.done.lock() {
            if let Some(n) = d.get_mut(i) {
                *n = n.saturating_add(1);
            }
        }
        self.changed.notify_all();
    }

    /// Shard `i` stopped: it is never waited for again.
    pub fn close(&self, i: usize) {
        if let Ok(mut d) = self.done.lock() {
            if let Some(n) = d.get_mut(i) {
                *n = u64::MAX;
            }
        }
        self.changed.notify_all();
    }

    /// Waits until every shard has finished the messages `sent` counts (a shard that ended, by a
    /// panic too, counts as done: [`CloseOnDrop`]). Like a full channel on replay, this is
    /// back-pressure: it waits as long as the shards (and the output behind them) take.
    fn wait_for(&self, sent: &[u64]) {
        let Ok(mut d) = self.done.lock() else { return };
        while d.iter().zip(sent).any(|(done, sent)| done < sent) {
            d = match self.changed.wait(d) {
                Ok(d) => d,
                Err(_) => return,
            };
        }
    }
}

/// Closes a shard's [`Progress`] when dropped: however the shard's thread ends (a panic too), the
/// router is not left waiting for it.
pub(super) struct CloseOnDrop<'a> {
    pub progress: Option<&'a Progress>,
    pub shard: usize,
}

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.progress {
            p.close(self.shard);
        }
    }
}

/// What the router counted.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RouteStats {
    pub clock: ClockStats,
    /// Packets left out by `ignore` / `ours` networks.
    pub ignored: u64,
    /// Live capture: packets lost because a shard was behind, and the flushes they were in.
    pub dropped: u64,
    pub dropped_batches: u64,
}

/// The router: clock, aggregation and the per-shard work being filled.
pub(super) struct Router {
    cfg: DetectConfig,
    clock: Clock,
    agg: Aggregator,
    /// Scratch for the clock's steps.
    steps: Vec<TimeStep>,
    work: Vec<ShardWork>,
    txs: Vec<Sender<ShardMsg>>,
    /// The time of the first packet since the last flush.
    oldest: Option<Timestamp>,
    live: bool,
    /// Evaluations so far, as the engines count them (orders the `stats` marks).
    seq: u64,
    stats_clock: Option<StatsClock>,
    stats: RouteStats,
    checkpoints: Option<CheckpointTrigger>,
    /// With `--evidence-dir`: messages sent to each shard, and the shards' progress to wait for
    /// at every tick.
    sent: Vec<u64>,
    progress: Option<Arc<Progress>>,
}

impl Router {
    /// A router over `txs` (one channel per shard) for `cfg`; `stats_every` (ns) turns on the
    /// `stats` marks.
    pub fn new(
        cfg: &DetectConfig,
        txs: Vec<Sender<ShardMsg>>,
        live: bool,
        stats_every: Option<u64>,
    ) -> Router {
        let shards = txs.len().max(1);
        Router {
            cfg: cfg.clone(),
            clock: Clock::new(cfg),
            agg: Aggregator::for_router(cfg),
            steps: Vec::new(),
            work: (0..shards).map(|_| ShardWork::default()).collect(),
            txs,
            oldest: None,
            live,
            seq: 0,
            stats_clock: stats_every.map(|every| StatsClock {
                every,
                next: None,
                packets: 0,
                bytes: 0,
            }),
            stats: RouteStats::default(),
            checkpoints: None,
            sent: vec![0; shards],
            progress: None,
        }
    }

    /// Waits at every tick until the shards have counted and evaluated what was sent (the
    /// reader then never runs more than a tick's first packet ahead of an alert's start).
    /// Not on live capture: the router is the capture thread there, and must never wait on a
    /// shard (a stalled output would stall the capture).
    pub fn with_progress(mut self, progress: Option<Arc<Progress>>) -> Router {
        if !self.live {
            self.progress = progress;
        }
        self
    }

    /// Takes periodic checkpoints of the shards' baselines when `trigger` says they are due.
    pub fn with_checkpoints(mut self, trigger: Option<CheckpointTrigger>) -> Router {
        self.checkpoints = trigger;
        self
    }

    /// Takes one packet: its tick's aggregate grows; a tick boundary sends the aggregate and the
    /// clock's steps to every shard.
    #[inline]
    /// [`Router::push`] of a packet carrying a request head: what it asked for is noted for the
    /// request-flood evidence (unless the packet filled its aggregate, which then left).
    pub fn push_head(&mut self, p: &PacketSummary, head: RequestHead) {
        self.push(p);
        let scopes = scopes_of(&self.cfg, p);
        if !scopes.is_empty() {
            self.agg.add_head(p, scopes, head);
        }
    }

    /// Starts loading what [`Router::push`] of `p` will read from memory, a few packets ahead.
    #[inline]
    pub fn prefetch(&self, p: &PacketSummary) {
        self.agg.prefetch_sources(p);
    }

    #[inline]
    pub fn push(&mut self, p: &PacketSummary) {
        let stamp = self.clock.accept_weighted(p.ts, p.weight, &mut self.steps);
        if !self.steps.is_empty() {
            self.broadcast_steps();
            self.flush();
            if let Some(p) = &self.progress {
                p.wait_for(&self.sent);
            }
        }
        if let Some(c) = &mut self.stats_clock {
            let mark = c.after_packet(p, self.seq);
            if let (Some(mark), Some(w)) = (mark, self.work.first_mut()) {
                w.marks.push(mark);
            }
        }
        self.oldest.get_or_insert(p.ts);
        let scopes = scopes_of(&self.cfg, p);
        if scopes.is_empty() {
            self.stats.ignored += 1;
            return;
        }
        let (at, other) = self.agg.tick_of(stamp);
        if other {
            self.stage_counts();
        }
        self.agg.add(p, stamp, scopes, at);
        if self.agg.is_full() {
            // a part of the tick leaves now: memory stays bounded whatever the tick holds
            self.stage_counts();
            self.flush();
        }
    }

    /// Queues what is aggregated for every shard.
    fn stage_counts(&mut self) {
        if self.agg.is_empty() {
            return;
        }
        let t = self.agg.take_shared();
        for w in &mut self.work {
            w.items.push(Item::Counts(Arc::clone(&t)));
        }
    }

    /// Runs on `cfg` from here on: sends what is held under the old configuration, then `cfg` to
    /// every shard at the same point of the stream. `cfg` must keep the window, tick, subnet and
    /// key-table layout ([`DetectConfig::reload_changes`]).
    pub fn reconfigure(&mut self, cfg: DetectConfig) {
        self.stage_counts();
        self.flush();
        let cfg = Arc::new(cfg);
        for w in &mut self.work {
            w.reconfigure = Some(Arc::clone(&cfg));
        }
        self.agg.reconfigure(&cfg);
        self.cfg = (*cfg).clone();
        self.flush();
    }

    /// Queues the pending clock steps for every shard, at the current end of its packets.
    fn broadcast_steps(&mut self) {
        for step in &self.steps {
            if matches!(step, TimeStep::Evaluate(_) | TimeStep::Restart { .. }) {
                self.seq += 1;
            }
        }
        // what came before the steps is counted before them
        self.stage_counts();
        for w in &mut self.work {
            w.items.extend(self.steps.iter().map(|s| Item::Step(*s)));
        }
        self.steps.clear();
    }

    /// The source is idle at `now`: queues the evaluations due up to it.
    pub fn idle(&mut self, now: Timestamp) {
        self.clock.advance_to(now, &mut self.steps);
        if !self.steps.is_empty() {
            self.broadcast_steps();
        }
    }

    /// The time of the oldest packet held back, if any.
    pub fn oldest_held(&self) -> Option<Timestamp> {
        self.oldest
    }

    /// Whether anything waits to be sent.
    pub fn holds_work(&self) -> bool {
        self.work.iter().any(|w| !w.is_empty())
    }

    /// Sends what is held: on replay waiting for room; on live capture only when every shard has
    /// room (the router is the only sender, so the check holds until the sends), else the packets
    /// are dropped for all shards alike and counted, and the steps wait for the next flush.
    pub fn flush(&mut self) {
        if let Some(id) = self
            .checkpoints
            .as_mut()
            .and_then(|c| c.due(self.clock.now()))
        {
            for w in &mut self.work {
                w.checkpoint = Some(id);
            }
        }
        self.oldest = None;
        if self.live && self.txs.iter().any(|tx| tx.is_full()) {
            // the aggregates are lost for every shard alike (counted); the steps wait
            let mut dropped = 0;
            if let Some(w) = self.work.first() {
                for item in &w.items {
                    if let Item::Counts(t) = item {
                        dropped += t.packets;
                    }
                }
            }
            if dropped > 0 {
                self.stats.dropped += dropped;
                self.stats.dropped_batches += 1;
            }
            for w in &mut self.work {
                w.items.retain(|i| matches!(i, Item::Step(_)));
            }
            return;
        }
        for ((w, tx), sent) in self.work.iter_mut().zip(&self.txs).zip(&mut self.sent) {
            if w.is_empty() {
                continue;
            }
            *sent += 1;
            let msg = ShardMsg::Work(std::mem::take(w));
            // Live: every channel had room and this is the only sender, so try_send cannot fail
            // for a full channel. A closed shard means the run is stopping; its error surfaces
            // from the join.
            let _ = if self.live {
                tx.try_send(msg).map_err(|_| ())
            } else {
                tx.send(msg).map_err(|_| ())
            };
        }
    }

    /// Ends the input: sends what is held (waiting, even on live capture, so nothing counted is lost
    /// at the end), then the end of input with the stream's latest time. Returns the counters.
    pub fn finish(mut self) -> RouteStats {
        self.live = false;
        self.stage_counts();
        self.flush();
        let now = self.clock.now();
        for tx in &self.txs {
            let _ = tx.send(ShardMsg::End(now));
        }
        self.stats.clock = self.clock.stats();
        self.stats
    }

    /// Evaluations (and restarts) the clock has stepped through so far: the
    /// [`AlertEvent::seq`](crate::alert::AlertEvent) of the latest, and the count a packet pushed
    /// now is counted after.
    pub fn evaluations(&self) -> u64 {
        self.seq
    }

    /// Counters so far.
    pub fn stats(&self) -> RouteStats {
        RouteStats {
            clock: self.clock.stats(),
            ..self.stats
        }
    }
}

/// `stats` marks (`--stats-interval`), counted by the router from every packet of the stream, so the
/// counts and the evaluations they follow are the same whatever the thread count and batch size.
struct StatsClock {
    every: u64,
    /// The next interval boundary, set by the first packet.
    next: Option<u64>,
    packets: u64,
    bytes: u64,
}

impl StatsClock {
    /// Counts `p` after the evaluations due before it; when `p` is the first packet at or past a boundary,
    /// returns the mark for the latest boundary it passed (counts before `p`), ordered after the
    /// evaluations up to `seq`.
    fn after_packet(&mut self, p: &PacketSummary, seq: u64) -> Option<StatsEvent> {
        let t = p.ts.0;
        let next = *self.next.get_or_insert(next_boundary(t, self.every));
        let mark = if t >= next {
            let boundary = t / self.every * self.every;
            self.next = Some(boundary.saturating_add(self.every));
            Some(StatsEvent {
                event: "stats",
                ts: Timestamp(boundary),
                packets: self.packets,
                bytes: self.bytes,
                active_alerts: 0,
                seq,
            })
        } else {
            if t.saturating_add(2 * self.every) < next {
                // Time stepped far back (a second file): restart the boundaries from here.
                self.next = Some(next_boundary(t, self.every));
            }
            None
        };
        self.packets += u64::from(p.weight);
        self.bytes += u64::from(p.wire_len) * u64::from(p.weight);
        mark
    }
}

/// The first multiple of `every` after `t`, saturating.
fn next_boundary(t: u64, every: u64) -> u64 {
    (t / every).saturating_add(1).saturating_mul(every)
}
