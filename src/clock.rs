//! Packet time: when evaluations are due, how late and backward-stepping packets are counted, and the
//! per-window packet load that source admission scales with.
//!
//! One [`Clock`] sees every packet of the stream in order. For each it says where to count the packet
//! (a [`Stamp`]) and which [`TimeStep`]s are due before it. The engine applies the steps to its keys;
//! with several shards the router runs the one clock and hands every shard the same steps at the same
//! point of its own packets, so every shard evaluates at the same packet times whatever packets it
//! owns. The clock never reads the wall clock: time is an argument.

use crate::config::DetectConfig;
use crate::time::Timestamp;

/// A backward step larger than this (in windows) restarts the windows instead of being clamped.
const MAX_BACKSTEP_WINDOWS: u64 = 2;

/// What the engine must do, in order, before counting the next packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeStep {
    /// The first packet time: windows and the evaluation schedule start here.
    Start(Timestamp),
    /// Evaluate the keys at this packet time (ns; a tick boundary, or the far side of a silence).
    Evaluate(u64),
    /// Time stepped back more than two windows (e.g. a second capture file):
    /// open alerts end at `from`, windows restart at `to`, baselines are kept.
    Restart { from: Timestamp, to: Timestamp },
}

/// Where to count a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The packet's time, or the clock's when the packet stepped back a little.
    pub at: Timestamp,
    /// Packets of the stream in the window of `at` so far, this one included.
    pub load: u64,
}

/// Counters the clock keeps about the stream's timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockStats {
    /// Packets stamped earlier than one already seen, counted at the later time.
    pub late_packets: u64,
    /// Forward jumps longer than the hold-down that were crossed in one step, and backward jumps
    /// longer than two windows that restarted the windows.
    pub time_jumps: u64,
}

/// The stream's packet-time clock.
#[derive(Clone, Debug)]
pub struct Clock {
    window_ns: u64,
    tick_ns: u64,
    /// A silence longer than this (ns) is crossed in two evaluations instead of one per tick.
    gap_limit: u64,
    /// Latest packet time accepted.
    now: Option<Timestamp>,
    /// Time of the next evaluation.
    next_tick: u64,
    /// The window packets last fell in.
    epoch_cache: Span,
    /// The tick packets last fell in.
    tick_cache: Span,
    /// (window number, packets in it so far).
    load: (u64, u64),
    /// The end of the fast span: a packet stamped from the clock's time up to here (the next
    /// evaluation or the end of the window of `load`, whichever is first; 0 when unknown) only
    /// moves the clock and counts in the load, most packets of a stream.
    fast_end: u64,
    stats: ClockStats,
}

impl Clock {
    /// A clock with `cfg`'s window, tick and hold-down.
    pub fn new(cfg: &DetectConfig) -> Clock {
        let window_ns = cfg.window_ns().max(1);
        Clock {
            window_ns,
            tick_ns: cfg.tick_ns().max(1),
            gap_limit: (cfg.hold_down.as_nanos() as u64).saturating_add(2 * window_ns),
            now: None,
            next_tick: 0,
            epoch_cache: Span::default(),
            tick_cache: Span::default(),
            load: (0, 0),
            fast_end: 0,
            stats: ClockStats::default(),
        }
    }

    /// The latest packet time accepted, if any.
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    /// Counters so far.
    pub fn stats(&self) -> ClockStats {
        self.stats
    }

    /// Accepts a packet stamped `ts`: pushes the steps due before it onto `steps` and returns where to
    /// count it. Small backward steps are counted at the clock's time, large ones restart the windows.
    #[inline]
    pub fn accept(&mut self, ts: Timestamp, steps: &mut Vec<TimeStep>) -> Stamp {
        self.accept_weighted(ts, 1, steps)
    }

    /// [`Clock::accept`] for a summary standing for `weight` packets (they all count in the load).
    #[inline]
    pub fn accept_weighted(
        &mut self,
        ts: Timestamp,
        weight: u32,
        steps: &mut Vec<TimeStep>,
    ) -> Stamp {
        if ts.0 < self.fast_end && self.now.is_some_and(|now| ts >= now) {
            self.now = Some(ts);
            self.load.1 += u64::from(weight);
            return Stamp {
                at: ts,
                load: self.load.1,
            };
        }
        self.accept_slowly(ts, weight, steps)
    }

    /// [`Clock::accept_weighted`] for a packet outside the fast span: the first, a late one, one
    /// in another tick or window, or the first after a restored checkpoint. Sets the span's end
    /// from the clock's new time.
    #[inline(never)]
    fn accept_slowly(&mut self, ts: Timestamp, weight: u32, steps: &mut Vec<TimeStep>) -> Stamp {
        let at = self.move_to(ts, steps);
        let epoch = self.epoch_of(at);
        if epoch != self.load.0 {
            self.load = (epoch, 0);
        }
        self.load.1 += u64::from(weight);
        // (after a move the clock is at the packet's stamp, so the span starts there)
        self.fast_end = self
            .next_tick
            .min(self.epoch_cache.end)
            .min(Timestamp::LATEST.0.saturating_add(1));
        Stamp {
            at,
            load: self.load.1,
        }
    }

    /// A live source is idle at `now`: pushes the evaluations due up to it (nothing if `now` is not
    /// later than the clock).
    pub fn advance_to(&mut self, now: Timestamp, steps: &mut Vec<TimeStep>) {
        if self.now.is_none_or(|c| now > c) {
            // (the fast span needs no change: it starts at the clock's time, and a span the
            // clock moved past is empty)
            self.move_to(now, steps);
        }
    }

    #[inline]
    fn move_to(&mut self, ts: Timestamp, steps: &mut Vec<TimeStep>) -> Timestamp {
        // most packets: in order, before the next evaluation is due
        if let Some(clock) = self.now {
            if ts >= clock && ts.0 < self.next_tick && ts <= Timestamp::LATEST {
                self.now = Some(ts);
                return ts;
            }
        }
        self.move_slowly(ts, steps)
    }

    /// [`Clock::move_to`] for a packet that starts the clock, is late, or crosses a tick.
    #[cold]
    fn move_slowly(&mut self, ts: Timestamp, steps: &mut Vec<TimeStep>) -> Timestamp {
        // Near u64::MAX the next tick would saturate and the tick loop never end.
        let ts = ts.clamped();
        let Some(clock) = self.now else {
            self.start(ts, steps);
            return ts;
        };
        if ts < clock {
            if clock.0 - ts.0 > MAX_BACKSTEP_WINDOWS * self.window_ns {
                self.stats.time_jumps += 1;
                steps.push(TimeStep::Restart {
                    from: clock,
                    to: ts,
                });
                self.schedule_from(ts);
                return ts;
            }
            self.stats.late_packets += 1;
            return clock;
        }
        self.ticks_until(ts.0, steps);
        self.now = Some(ts);
        ts
    }

    fn start(&mut self, ts: Timestamp, steps: &mut Vec<TimeStep>) {
        steps.push(TimeStep::Start(ts));
        self.schedule_from(ts);
    }

    fn schedule_from(&mut self, ts: Timestamp) {
        self.now = Some(ts);
        self.next_tick = (ts.0 / self.tick_ns)
            .saturating_add(1)
            .saturating_mul(self.tick_ns);
    }

    /// Every evaluation up to `t`; a silence longer than the gap limit is crossed in two steps (one
    /// evaluation that ends what has subsided, then a jump) instead of walking every empty tick.
    fn ticks_until(&mut self, t: u64, steps: &mut Vec<TimeStep>) {
        while self.next_tick <= t {
            if t - self.next_tick > self.gap_limit {
                self.stats.time_jumps += 1;
                let quiet = self.next_tick.saturating_add(self.gap_limit);
                let quiet = quiet - quiet % self.window_ns;
                steps.push(TimeStep::Evaluate(self.next_tick));
                steps.push(TimeStep::Evaluate(quiet));
                self.next_tick = t - t % self.tick_ns;
                if self.next_tick <= quiet {
                    self.next_tick = quiet + self.tick_ns;
                }
                continue;
            }
            steps.push(TimeStep::Evaluate(self.next_tick));
            self.next_tick = self.next_tick.saturating_add(self.tick_ns);
        }
    }

    /// The window number of `ts`, without a division for the many packets of one window.
    #[inline]
    pub fn epoch_of(&mut self, ts: Timestamp) -> u64 {
        self.epoch_cache.number_of(ts.0, self.window_ns)
    }

    /// The tick number of `ts` (evaluations happen at tick boundaries), cached like
    /// [`Clock::epoch_of`].
    #[inline]
    pub fn tick_of(&mut self, ts: Timestamp) -> u64 {
        self.tick_cache.number_of(ts.0, self.tick_ns)
    }
}

/// The span `[start, end)` of one window or tick and its number: a cache that saves the division
/// for the many packets that fall in the same one.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u64,
    end: u64,
    number: u64,
}

impl Span {
    /// The number of the `width`-long span `t` falls in, remembered for the next call.
    #[inline]
    fn number_of(&mut self, t: u64, width: u64) -> u64 {
        if t >= self.start && t < self.end {
            return self.number;
        }
        let number = t / width;
        let start = number.saturating_mul(width);
        *self = Span {
            start,
            end: start.saturating_add(width),
            number,
        };
        number
    }
}

/// Engine state ([`crate::engine_state`]). The window and tick caches and the fast span are not
/// kept: they only remember a division or a compare, and a restored clock starts without them
/// (its first packet takes the full path).
mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};

    impl Clock {
        pub(crate) fn save(&self, e: &mut Enc) {
            e.var(self.window_ns);
            e.var(self.tick_ns);
            e.var(self.gap_limit);
            e.opt_ts(self.now);
            e.var(self.next_tick);
            e.var(self.load.0);
            e.var(self.load.1);
            e.var(self.stats.late_packets);
            e.var(self.stats.time_jumps);
        }

        /// Reads a clock saved under `cfg`'s window and tick.
        pub(crate) fn load(d: &mut Dec, cfg: &DetectConfig) -> Result<Clock, EngineStateError> {
            let mut c = Clock::new(cfg);
            let window_ns = d.count("the clock's window")?;
            let tick_ns = d.count("the clock's tick")?;
            if (window_ns, tick_ns) != (c.window_ns, c.tick_ns) {
                return Err(d.corrupt(format!(
                    "the clock runs {window_ns} ns windows and {tick_ns} ns ticks, the saved \
                     settings {} and {}",
                    c.window_ns, c.tick_ns
                )));
            }
            c.gap_limit = d.count("the clock's gap limit")?;
            if c.gap_limit > crate::engine_state::MAX_COUNT / 2 {
                return Err(d.corrupt("the clock's gap limit is beyond any real hold-down"));
            }
            c.now = d.opt_ts("the clock's time")?;
            c.next_tick = d.count("the clock's next tick")?;
            c.load = (d.count("the clock's window")?, d.count("the clock's load")?);
            c.stats = ClockStats {
                late_packets: d.count("the clock's late packets")?,
                time_jumps: d.count("the clock's time jumps")?,
            };
            Ok(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn clock() -> Clock {
        Clock::new(&DetectConfig::default())
    }

    #[test]
    fn the_fast_span_stamps_and_steps_as_the_full_path_does() {
        // times in order, repeated, late, back by more than two windows, across ticks,
        // windows and a long silence, with idle advances of a live source between them
        let cfg = DetectConfig::default();
        let (tick, window) = (cfg.tick_ns(), cfg.window_ns());
        let mut times = Vec::new();
        let mut t = 3 * MS;
        for i in 0..4_000u64 {
            t += match i % 97 {
                0 => 7 * tick + 1,
                1 => window,
                _ => (i * 7919) % (tick / 9),
            };
            if i == 2_000 {
                t += 1_000 * window;
            }
            let late = (i % 13 == 0).then(|| t.saturating_sub((i % 5) * MS));
            let back = (i == 3_000).then(|| t - 5 * window);
            times.extend(
                [Some(t)]
                    .into_iter()
                    .chain(late.into_iter().chain(back).map(Some)),
            );
            if i % 101 == 0 {
                times.push(None); // an idle advance to t + 2 ms
            }
        }
        let (mut fast, mut full) = (Clock::new(&cfg), Clock::new(&cfg));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let last = times.iter().flatten().max().copied().unwrap_or(0);
        let mut took_fast = 0;
        for (n, x) in times.into_iter().chain([Some(last + 1)]).enumerate() {
            full.fast_end = 0;
            if n == 2_500 {
                // a checkpoint mid-stream: the restored clock starts without a span
                let mut buf = Vec::new();
                fast.save(&mut crate::engine_state::Enc::new(&mut buf));
                fast = Clock::load(&mut crate::engine_state::Dec::new(&buf), &cfg).unwrap();
            }
            match x {
                Some(x) => {
                    took_fast +=
                        usize::from(x < fast.fast_end && fast.now().is_some_and(|n| x >= n.0));
                    let want = full.accept(Timestamp(x), &mut b);
                    assert_eq!(fast.accept(Timestamp(x), &mut a), want, "at {x}");
                }
                None => {
                    let now = full.now().map_or(0, |n| n.0) + 2 * MS;
                    full.advance_to(Timestamp(now), &mut b);
                    fast.advance_to(Timestamp(now), &mut a);
                }
            }
            assert_eq!(a, b);
            assert_eq!(fast.stats(), full.stats());
        }
        assert!(a.len() > 100, "{} steps", a.len());
        // most packets took the span (the full path is what they are checked against)
        assert!(took_fast > 3_000, "{took_fast} packets on the fast path");
    }

    #[test]
    fn the_first_packet_starts_the_schedule_and_ticks_follow() {
        let mut c = clock();
        let mut steps = Vec::new();
        let s = c.accept(Timestamp(5 * MS), &mut steps);
        assert_eq!(steps, [TimeStep::Start(Timestamp(5 * MS))]);
        assert_eq!(s.load, 1);
        steps.clear();
        c.accept(Timestamp(250 * MS), &mut steps);
        let tick = DetectConfig::default().tick_ns();
        let want: Vec<_> = (1..)
            .map(|i| i * tick)
            .take_while(|t| *t <= 250 * MS)
            .map(TimeStep::Evaluate)
            .collect();
        assert_eq!(steps, want);
    }

    #[test]
    fn late_packets_count_at_the_clock_and_big_steps_back_restart() {
        let mut c = clock();
        let mut steps = Vec::new();
        c.accept(Timestamp(10_000 * MS), &mut steps);
        steps.clear();
        let s = c.accept(Timestamp(9_900 * MS), &mut steps);
        assert_eq!(s.at, Timestamp(10_000 * MS));
        assert!(steps.is_empty());
        assert_eq!(c.stats().late_packets, 1);
        c.accept(Timestamp(1_000 * MS), &mut steps);
        assert_eq!(
            steps,
            [TimeStep::Restart {
                from: Timestamp(10_000 * MS),
                to: Timestamp(1_000 * MS)
            }]
        );
        assert_eq!(c.stats().time_jumps, 1);
    }

    #[test]
    fn the_load_restarts_with_each_window() {
        let mut c = clock();
        let mut steps = Vec::new();
        let window = DetectConfig::default().window_ns();
        assert_eq!(c.accept(Timestamp(0), &mut steps).load, 1);
        assert_eq!(c.accept(Timestamp(1), &mut steps).load, 2);
        assert_eq!(c.accept(Timestamp(window), &mut steps).load, 1);
    }

    #[test]
    fn a_long_silence_is_crossed_in_two_evaluations() {
        let mut c = clock();
        let mut steps = Vec::new();
        c.accept(Timestamp(0), &mut steps);
        steps.clear();
        c.accept(Timestamp(3_600_000 * MS), &mut steps);
        // the last tick before the silence, the quiet point past the hold-down, the tick at the end
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert_eq!(c.stats().time_jumps, 1);
    }

    #[test]
    fn idle_reports_only_move_time_forward() {
        let mut c = clock();
        let mut steps = Vec::new();
        c.advance_to(Timestamp(500 * MS), &mut steps);
        assert_eq!(steps, [TimeStep::Start(Timestamp(500 * MS))]);
        steps.clear();
        c.advance_to(Timestamp(400 * MS), &mut steps);
        assert!(steps.is_empty());
        assert_eq!(c.now(), Some(Timestamp(500 * MS)));
    }
}
