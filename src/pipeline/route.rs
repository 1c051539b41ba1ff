//! Routing: the one place that sees the whole stream after decoding. It runs the stream's [`Clock`]
//! and sends each packet only to the shards that own one of its (scope, key)s, with the scopes each
//! owner counts ([`ScopeMask`]); every shard gets the clock's [`TimeStep`]s at the same point of its
//! own packets, so all shards evaluate at the same packet times. Work per packet does not grow with
//! the shard count: the keys are derived and hashed once, here, and a shard touches only what it owns.
//!
//! Packets collect in one [`ShardWork`] per shard and leave together every `batch_size` packets. On
//! replay a full channel makes the router wait (back-pressure); on live capture it never does: the
//! packets of that flush are dropped for every shard and counted, and the time steps stay queued for
//! the next flush (a shard may miss packets, never an evaluation).

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::checkpoint::CheckpointTrigger;
use crate::alert::StatsEvent;
use crate::clock::{Clock, ClockStats, TimeStep};
use crate::config::DetectConfig;
use crate::decode::PacketSummary;
use crate::detect::{key_of, scopes_of, Ownership, ScopeMask};
use crate::key::Scope;
use crate::time::Timestamp;

/// One packet on its way to a shard.
#[derive(Clone, Copy, Debug)]
pub(super) struct Routed {
    /// The packet, its `ts` already the clock's [`Stamp::at`](crate::clock::Stamp).
    pub p: PacketSummary,
    /// Packets of the stream in this window so far (source admission scales with it).
    pub load: u64,
    /// The scopes this shard counts the packet in.
    pub mask: ScopeMask,
}

/// What one shard receives in one message.
#[derive(Debug, Default)]
pub(super) struct ShardWork {
    pub packets: Vec<Routed>,
    /// The clock's steps, each to apply before `packets[at..]`, in order.
    pub steps: Vec<(usize, TimeStep)>,
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
        self.packets.is_empty()
            && self.steps.is_empty()
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

/// The router: clock, ownership and the per-shard work being filled.
pub(super) struct Router {
    cfg: DetectConfig,
    clock: Clock,
    ownership: Ownership,
    /// Scratch for the clock's steps.
    steps: Vec<TimeStep>,
    work: Vec<ShardWork>,
    txs: Vec<Sender<ShardMsg>>,
    /// Packets taken since the last flush, and the time of the first of them.
    held: usize,
    oldest: Option<Timestamp>,
    batch_size: usize,
    live: bool,
    /// Evaluations so far, as the engines count them (orders the `stats` marks).
    seq: u64,
    stats_clock: Option<StatsClock>,
    stats: RouteStats,
    checkpoints: Option<CheckpointTrigger>,
}

impl Router {
    /// A router over `txs` (one channel per shard) for `cfg`; `stats_every` (ns) turns on the
    /// `stats` marks.
    pub fn new(
        cfg: &DetectConfig,
        txs: Vec<Sender<ShardMsg>>,
        batch_size: usize,
        live: bool,
        stats_every: Option<u64>,
    ) -> Router {
        let shards = txs.len().max(1);
        Router {
            cfg: cfg.clone(),
            clock: Clock::new(cfg),
            ownership: Ownership::new(cfg, shards),
            steps: Vec::new(),
            work: (0..shards).map(|_| ShardWork::default()).collect(),
            txs,
            held: 0,
            oldest: None,
            batch_size: batch_size.clamp(1, 65_536),
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
        }
    }

    /// Takes periodic checkpoints of the shards' baselines when `trigger` says they are due.
    pub fn with_checkpoints(mut self, trigger: Option<CheckpointTrigger>) -> Router {
        self.checkpoints = trigger;
        self
    }

    /// Routes one packet (flushing when `batch_size` packets are held).
    #[inline]
    pub fn push(&mut self, mut p: PacketSummary) {
        let raw_ts = p.ts;
        let stamp = self.clock.accept_weighted(p.ts, p.weight, &mut self.steps);
        if !self.steps.is_empty() {
            self.broadcast_steps();
        }
        if let Some(c) = &mut self.stats_clock {
            let mark = c.after_packet(&p, self.seq);
            if let (Some(mark), Some(w)) = (mark, self.work.first_mut()) {
                w.marks.push(mark);
            }
        }
        self.oldest.get_or_insert(raw_ts);
        self.held += 1;
        p.ts = stamp.at;
        let scopes = scopes_of(&self.cfg, &p);
        if scopes.is_empty() {
            self.stats.ignored += 1;
        } else if self.work.len() == 1 {
            self.work[0].packets.push(Routed {
                p,
                load: stamp.load,
                mask: scopes,
            });
        } else {
            self.route(p, stamp.load, scopes);
        }
        if self.held >= self.batch_size {
            self.flush();
        }
    }

    /// Hands `p` to the owner of each of its keys, once per owner.
    #[inline]
    fn route(&mut self, p: PacketSummary, load: u64, scopes: ScopeMask) {
        // At most four owners; a packet whose keys share a shard is sent to it once.
        let mut owners: [(usize, ScopeMask); 4] = [(usize::MAX, ScopeMask(0)); 4];
        let mut n = 0;
        for scope in Scope::ALL {
            if !scopes.contains(scope) {
                continue;
            }
            let owner = self.ownership.owner(scope, &key_of(&self.cfg, scope, &p));
            match owners[..n].iter_mut().find(|(o, _)| *o == owner) {
                Some((_, mask)) => mask.insert(scope),
                None => {
                    let mut mask = ScopeMask(0);
                    mask.insert(scope);
                    owners[n] = (owner, mask);
                    n += 1;
                }
            }
        }
        for &(owner, mask) in &owners[..n] {
            if let Some(w) = self.work.get_mut(owner) {
                w.packets.push(Routed { p, load, mask });
            }
        }
    }

    /// Runs on `cfg` from here on: sends what is held under the old configuration, then `cfg` to
    /// every shard at the same point of the stream. `cfg` must keep the window, tick, subnet and
    /// key-table layout ([`DetectConfig::reload_changes`]).
    pub fn reconfigure(&mut self, cfg: DetectConfig) {
        self.flush();
        let cfg = Arc::new(cfg);
        for w in &mut self.work {
            w.reconfigure = Some(Arc::clone(&cfg));
        }
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
        for w in &mut self.work {
            let at = w.packets.len();
            w.steps.extend(self.steps.iter().map(|s| (at, *s)));
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
        let held = std::mem::take(&mut self.held) as u64;
        self.oldest = None;
        if self.live && self.txs.iter().any(|tx| tx.is_full()) {
            if held > 0 {
                self.stats.dropped += held;
                self.stats.dropped_batches += 1;
            }
            for w in &mut self.work {
                w.packets.clear();
                for (at, _) in &mut w.steps {
                    *at = 0;
                }
            }
            return;
        }
        for (w, tx) in self.work.iter_mut().zip(&self.txs) {
            if w.is_empty() {
                continue;
            }
            // the next work starts with room for as many packets as this one had
            let room = w.packets.len();
            let msg = ShardMsg::Work(std::mem::take(w));
            w.packets.reserve(room);
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
