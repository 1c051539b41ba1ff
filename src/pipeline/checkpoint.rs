//! Checkpoints of the learned baselines (`--state`), taken without stalling capture.
//!
//! The router decides when one is due ([`CheckpointTrigger`]: every `--state-interval` of wall time
//! on live input, of packet time on a replay) and marks the next work it sends to every shard. All
//! shards receive the mark in the same flush, after the same clock steps, so each hands over its
//! baselines at the same evaluation: the next window boundary, whose full pass over the keys
//! copies each key's just-learned baseline as it goes ([`Engine::request_snapshot`]), the only
//! extra work a shard does: about 9 ms for a million keys, where a pass of its own took 100–140 ms
//! (the copy buffers go back to the shards after each write, so only the first checkpoint of a run
//! pays the page faults: about 50 ms more; benches/checkpoint.rs, docs/performance.md).
//! The copies go to one writer thread ([`run_writer`]) that joins them, serialises them and writes
//! the file atomically, far from the packets. A new checkpoint is not requested while one is still
//! being written, so at most one set of copies exists at a time.
//!
//! [`Engine::request_snapshot`]: crate::detect::Engine::request_snapshot

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::metrics::{CheckpointReport, Metrics};
use crate::state::{Snapshot, SnapshotEntry};
use crate::time::Timestamp;

/// Which clock `--state-interval` runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointClock {
    /// Wall time (live capture, telemetry listeners): a checkpoint every interval, busy or idle.
    Wall,
    /// Packet time (replays): the same checkpoints at any replay speed.
    Packet,
}

/// Periodic checkpoints of the baselines ([`super::PipelineConfig::checkpoint`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointConfig {
    /// The state file.
    pub path: PathBuf,
    /// How often.
    pub every: Duration,
    pub clock: CheckpointClock,
    /// Subnet prefix lengths the keys were made with (written in the file).
    pub subnet_v4: u8,
    pub subnet_v6: u8,
    /// No line on stderr for the first successful checkpoint (failures are always reported).
    pub quiet: bool,
}

/// The copy buffers of the shards, one slot per shard: the writer hands each back once written,
/// so the next checkpoint copies into memory already mapped (a fresh buffer of a million keys costs
/// the shard ~30 000 page faults, more than the copy itself).
#[derive(Debug)]
pub(super) struct SnapshotBuffers {
    slots: Mutex<Vec<Vec<SnapshotEntry>>>,
}

impl SnapshotBuffers {
    pub fn new(shards: usize) -> Self {
        SnapshotBuffers {
            slots: Mutex::new((0..shards).map(|_| Vec::new()).collect()),
        }
    }

    /// Shard `i`'s buffer (empty if it is still with the writer).
    pub fn take(&self, i: usize) -> Vec<SnapshotEntry> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get_mut(i).map(std::mem::take).unwrap_or_default()
    }

    /// Hands shard `i`'s buffer back, emptied.
    fn put(&self, i: usize, mut buffer: Vec<SnapshotEntry>) {
        buffer.clear();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(i) {
            *slot = buffer;
        }
    }
}

/// One shard's part of a checkpoint.
pub(super) struct ShardSnapshot {
    pub shard: usize,
    pub id: u64,
    pub entries: Vec<SnapshotEntry>,
    /// How long the shard spent on the work whose window-boundary evaluation copied the baselines
    /// (the evaluation itself included: an upper bound on what the copy added).
    pub pause: Duration,
}

/// Decides, on the router's thread, when the next checkpoint is due.
pub(super) struct CheckpointTrigger {
    every: Duration,
    clock: CheckpointClock,
    next_wall: Instant,
    next_packet: Option<u64>,
    /// Set while a checkpoint is being taken or written; the writer clears it.
    in_flight: Arc<AtomicBool>,
    last_id: u64,
}

impl CheckpointTrigger {
    pub fn new(cfg: &CheckpointConfig, in_flight: Arc<AtomicBool>) -> Self {
        let every = cfg.every.max(Duration::from_millis(1));
        CheckpointTrigger {
            every,
            clock: cfg.clock,
            next_wall: Instant::now() + every,
            next_packet: None,
            in_flight,
            last_id: 0,
        }
    }

    /// The id of a checkpoint to take now, if one is due and none is under way; `now` is the
    /// stream's packet time.
    pub fn due(&mut self, now: Option<Timestamp>) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) {
            return None;
        }
        let every_ns = u64::try_from(self.every.as_nanos()).unwrap_or(u64::MAX);
        let due = match self.clock {
            CheckpointClock::Wall => {
                let t = Instant::now();
                if t < self.next_wall {
                    return None;
                }
                self.next_wall = t + self.every;
                true
            }
            CheckpointClock::Packet => {
                let now = now?.0;
                let next = *self.next_packet.get_or_insert(now.saturating_add(every_ns));
                // a replay that steps far back in time (another file) starts the interval afresh
                if now >= next || next.saturating_sub(now) > every_ns {
                    self.next_packet = Some(now.saturating_add(every_ns));
                }
                now >= next
            }
        };
        if !due {
            return None;
        }
        self.in_flight.store(true, Ordering::Release);
        self.last_id += 1;
        Some(self.last_id)
    }
}

/// The writer thread: joins the parts of each checkpoint from every shard, then writes the file and
/// reports. Ends when every shard has hung up; a checkpoint some shard never sent (the run ended
/// first) is dropped: the state is written at the end of the run anyway.
pub(super) fn run_writer(
    rx: Receiver<ShardSnapshot>,
    shards: usize,
    cfg: &CheckpointConfig,
    in_flight: &AtomicBool,
    buffers: &SnapshotBuffers,
    metrics: Option<&Metrics>,
) -> CheckpointTally {
    let mut parts: Vec<ShardSnapshot> = Vec::with_capacity(shards);
    let mut written = 0u64;
    let mut failed = 0u64;
    let mut failing = false;
    for part in rx.iter() {
        if parts.first().is_some_and(|p| p.id != part.id) {
            parts.clear(); // a stale, incomplete checkpoint (cannot happen while in_flight gates)
        }
        parts.push(part);
        if parts.len() < shards {
            continue;
        }
        let pause = parts.iter().map(|p| p.pause).max().unwrap_or_default();
        let keys: usize = parts.iter().map(|p| p.entries.len()).sum();
        let started = Instant::now();
        // one shard: its buffer is the snapshot; several: joined into a new one
        let (entries, single) = match parts.as_mut_slice() {
            [one] => (std::mem::take(&mut one.entries), Some(one.shard)),
            _ => {
                let mut all = Vec::with_capacity(keys);
                for p in &mut parts {
                    all.append(&mut p.entries);
                }
                (all, None)
            }
        };
        let mut snapshot = Snapshot::new(cfg.subnet_v4, cfg.subnet_v6, entries);
        let result = snapshot.save(&cfg.path);
        match single {
            Some(shard) => buffers.put(shard, snapshot.entries),
            None => {
                for p in parts.drain(..) {
                    buffers.put(p.shard, p.entries);
                }
            }
        }
        parts.clear();
        let report = CheckpointReport {
            ok: result.is_ok(),
            keys: keys as u64,
            pause,
            write: started.elapsed(),
            at: Timestamp::now(),
        };
        if let Some(m) = metrics {
            m.record_checkpoint(&report);
        }
        match result {
            Ok(()) => {
                written += 1;
                if failing {
                    eprintln!(
                        "floodwatch: state checkpoint to {} works again ({keys} keys)",
                        cfg.path.display()
                    );
                } else if written == 1 && !cfg.quiet {
                    eprintln!(
                        "floodwatch: state checkpointed to {} ({keys} keys, shards paused {:.1} ms, written in {:.0} ms); again every {}",
                        cfg.path.display(),
                        pause.as_secs_f64() * 1e3,
                        report.write.as_secs_f64() * 1e3,
                        crate::pipeline::describe_duration(cfg.every),
                    );
                }
                failing = false;
            }
            Err(e) => {
                failing = true;
                failed += 1;
                eprintln!("floodwatch: warning: checkpoint failed, will retry: {e}");
            }
        }
        in_flight.store(false, Ordering::Release);
    }
    CheckpointTally { written, failed }
}

/// The periodic checkpoints of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointTally {
    pub written: u64,
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(clock: CheckpointClock, every: Duration) -> CheckpointConfig {
        CheckpointConfig {
            path: PathBuf::from("/nonexistent/state.json"),
            every,
            clock,
            subnet_v4: 24,
            subnet_v6: 64,
            quiet: true,
        }
    }

    /// A trigger and the flag it raises while a checkpoint is under way.
    fn trigger(clock: CheckpointClock, every: Duration) -> (CheckpointTrigger, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        let t = CheckpointTrigger::new(&cfg(clock, every), Arc::clone(&flag));
        (t, flag)
    }

    #[test]
    fn packet_time_checkpoints_come_every_interval_and_never_overlap() {
        let (mut t, flag) = trigger(CheckpointClock::Packet, Duration::from_secs(10));
        let s = |x: u64| Some(Timestamp(x * 1_000_000_000));
        assert_eq!(t.due(None), None);
        assert_eq!(t.due(s(100)), None);
        assert_eq!(t.due(s(109)), None);
        assert_eq!(t.due(s(110)), Some(1));
        // under way: nothing new until the writer is done
        assert_eq!(t.due(s(125)), None);
        flag.store(false, Ordering::Release);
        assert_eq!(t.due(s(125)), Some(2), "overdue since 120");
        flag.store(false, Ordering::Release);
        assert_eq!(t.due(s(134)), None, "next at 135");
        // time stepping back restarts the interval
        assert_eq!(t.due(s(50)), None);
        assert_eq!(t.due(s(60)), Some(3));
    }

    #[test]
    fn wall_checkpoints_wait_for_the_interval() {
        let (mut t, flag) = trigger(CheckpointClock::Wall, Duration::from_millis(30));
        assert_eq!(t.due(None), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(t.due(None), Some(1));
        assert!(flag.load(Ordering::Acquire));
    }
}
