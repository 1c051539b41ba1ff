//! A detector node (`floodwatch detect`): consumes the batches of its partitions from JetStream,
//! merges them into one stream in packet-time order ([`Merger`]) and runs one [`Engine`] over the
//! sides of each summary it owns. The merger releases whole ticks ([`Merger::release_ticks`]),
//! which the engine aggregates and counts at the tick's end as one machine's router does: a
//! checkpoint is taken only between ticks, so where it falls never changes what a tick samples.
//!
//! Failover. A group of partitions is run by one detector at a time: the holder of the lease
//! `lease.<group>` in the cluster's key-value bucket, refreshed every quarter of its time to live.
//! A standby started with the same partitions waits; when the lease has not moved for its whole
//! time to live (the holder died), it takes it over with a compare-and-set. The holder
//! checkpoints its engine and merger, with the stream position of the last batch of each
//! partition they include, to the cluster's object store, and then acknowledges those batches
//! (ack-all; with one consumer of every partition this may acknowledge batches of partitions the
//! state does not hold yet, and nothing relies on acknowledgements: see next). The new holder
//! restores that checkpoint, recreates the consumers to start right after those positions (one
//! consumer of every partition starts at the smallest and skips what each partition holds) and
//! re-reads what came since: nothing is counted twice (the state had not counted it) and nothing
//! is lost (the consumers start from the state's own positions). Events it computes again before
//! reaching the point the dead holder had written are recognised by their position (evaluation,
//! index in it; the engine is deterministic) against the last event the group published on
//! `fw.<cluster>.events.<group>`, and not written again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use serde::{Deserialize, Serialize};

use super::client::NatsError;
use super::cluster::ClusterBus;
use super::consumers::{self, forward, CONSUMER_QUEUE};
use super::merge::{MergeStats, Merger};
use super::partition::Sides;
use super::store::{Delivered, ObjectStore};
use crate::alert::{AlertEvent, EndReason};
use crate::alert_output::EventLine;
use crate::config::DetectConfig;
use crate::decode::PacketSummary;
use crate::detect::{Engine, ScopeMask, ShardSpec};
use crate::key::Scope;
use crate::time::Timestamp;

/// Checkpoint container: magic, version.
const CHECKPOINT_MAGIC: &[u8; 4] = b"FWCK";
const CHECKPOINT_VERSION: u16 = 1;

/// Batches taken from one partition in a row.
const TAKE_IN_A_ROW: usize = 8;

/// The longest wait for a batch or a node watermark while a partition ahead holds batches in its
/// channel: if the channel fills, its consumer stops, and the loop takes from it after this long.
const BUSY_WAIT: Duration = Duration::from_millis(5);

/// The longest wait with every channel empty (an eighth of --silence or --lease-ttl if less). A
/// batch or a node watermark ends the wait at once; what moves without one (a node's silence limit,
/// the periodic checkpoint, the lease's renewal at a quarter of its time to live, a stop) may come
/// this late. An idle detector wakes 20 times a second, not 200.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// One partition's batches, from its consumer thread.
struct Feed {
    partition: u16,
    rx: Receiver<Delivered>,
    /// The latest watermark its batches carried.
    watermark: u64,
    gone: bool,
}

/// How a detector node runs.
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    pub partitions: Vec<u16>,
    /// The canonical name of the partitions ([`super::cluster::group_name`]).
    pub group: String,
    /// Ingest nodes to hear from before time moves.
    pub ingest_nodes: usize,
    /// An ingest node silent this long (wall time) no longer holds time back.
    pub silence: Duration,
    /// Checkpoint (and acknowledge) this often.
    pub checkpoint_every: Duration,
    /// The lease's time to live: a standby takes over once it has not moved for this long.
    pub lease_ttl: Duration,
    /// Stop once every ingest node has ended its stream (replays), ending open alerts as a replay
    /// does.
    pub exit_at_end: bool,
    /// Start a group that has no checkpoint from the oldest batch the bus keeps instead of the
    /// newest.
    pub from_start: bool,
    /// This process, as the lease names it.
    pub instance: String,
    /// Notices on stderr.
    pub verbose: bool,
}

/// Why a detector stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("detector engine: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("the lease of partitions {group} was taken over by {holder}: this detector stopped so the group is not run twice (was it paused longer than the lease's {ttl:?}?)")]
    LeaseLost {
        group: String,
        holder: String,
        ttl: Duration,
    },
    #[error("cannot write the checkpoint of partitions {group}: {reason}")]
    Checkpoint { group: String, reason: String },
    #[error("the output is gone")]
    OutputClosed,
}

/// What a detector counted.
#[derive(Clone, Debug, Default)]
pub struct DetectorStats {
    pub merge: MergeStats,
    pub malformed_batches: u64,
    pub events: u64,
    /// Events computed again after a takeover and not written again.
    pub events_suppressed: u64,
    pub checkpoints: u64,
    pub checkpoint_bytes: u64,
    /// The longest checkpoint (detection waits while it is taken and stored).
    pub checkpoint_longest: Duration,
    /// Restored from a checkpoint at start (else started cold).
    pub restored: bool,
    /// From holding the lease to consuming.
    pub takeover: Duration,
}

/// A detector's saved state.
#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    partitions: Vec<u16>,
    cluster_seed: u64,
    /// Per partition, the stream sequence of the last batch the state includes.
    positions: Vec<(u16, u64)>,
    /// The run the events belong to (a new one on a cold start).
    run: String,
    /// Last event position written: (evaluation, index).
    last_event: Option<(u64, u32)>,
}

struct Checkpoint {
    meta: CheckpointMeta,
    merger_meta: Vec<u8>,
    merger_held: Vec<u8>,
    engine: Vec<u8>,
}

fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let meta = serde_json::to_vec(&c.meta).unwrap_or_default();
    let mut out = Vec::with_capacity(
        16 + meta.len() + c.merger_meta.len() + c.merger_held.len() + c.engine.len(),
    );
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_VERSION.to_be_bytes());
    for part in [&meta, &c.merger_meta, &c.merger_held, &c.engine] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.len() < 6 || &bytes[..4] != CHECKPOINT_MAGIC {
        return Err("not a floodwatch detector checkpoint".into());
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != CHECKPOINT_VERSION {
        return Err(format!(
            "checkpoint version {version}; this floodwatch reads {CHECKPOINT_VERSION}"
        ));
    }
    let mut rest = &bytes[6..];
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(4);
    for _ in 0..4 {
        let len = rest
            .get(..8)
            .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .ok_or("checkpoint cut short")?;
        let len = usize::try_from(len).map_err(|_| "checkpoint part too long")?;
        let body = rest
            .get(8..8usize.saturating_add(len))
            .ok_or("checkpoint cut short")?;
        parts.push(body.to_vec());
        rest = &rest[8 + len..];
    }
    let engine = parts.pop().unwrap_or_default();
    let merger_held = parts.pop().unwrap_or_default();
    let merger_meta = parts.pop().unwrap_or_default();
    let meta_bytes = parts.pop().unwrap_or_default();
    let meta: CheckpointMeta =
        serde_json::from_slice(&meta_bytes).map_err(|e| format!("checkpoint metadata: {e}"))?;
    Ok(Checkpoint {
        meta,
        merger_meta,
        merger_held,
        engine,
    })
}

/// Where a detector's events go: called with each evaluation's events in order, and the
/// evaluation they come from. Returns false when the output is gone.
pub type EmitFn<'a> = dyn FnMut(Vec<AlertEvent>) -> bool + 'a;

/// Monotonic nanoseconds since `t0`.
fn mono(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

/// The lease this process holds.
struct Lease {
    key: String,
    revision: u64,
    refreshed: Instant,
}

#[derive(Serialize, Deserialize)]
struct LeaseValue {
    holder: String,
}

/// Waits until this process holds the group's lease (or `stop`).
fn acquire_lease(
    bus: &ClusterBus,
    cfg: &DetectorConfig,
    stop: &AtomicBool,
) -> Result<Option<Lease>, DetectorError> {
    let key = format!("lease.{}", cfg.group);
    let mine = serde_json::to_vec(&LeaseValue {
        holder: cfg.instance.clone(),
    })
    .unwrap_or_default();
    // (revision seen, since when)
    let mut seen: Option<(u64, Instant)> = None;
    let mut told = false;
    while !stop.load(Ordering::Relaxed) {
        match bus.kv.get(&key)? {
            None => {
                if let Some(rev) = bus.kv.create(&key, &mine)? {
                    return Ok(Some(Lease {
                        key,
                        revision: rev,
                        refreshed: Instant::now(),
                    }));
                }
            }
            Some(e) => {
                let holder = serde_json::from_slice::<LeaseValue>(&e.value)
                    .map(|v| v.holder)
                    .unwrap_or_default();
                // a released lease (empty holder) or one that has not moved for its time to live
                let expired = match seen {
                    Some((rev, since)) if rev == e.revision => since.elapsed() >= cfg.lease_ttl,
                    _ => {
                        seen = Some((e.revision, Instant::now()));
                        false
                    }
                };
                if holder.is_empty() || expired {
                    if let Some(rev) = bus.kv.update(&key, &mine, e.revision)? {
                        if cfg.verbose && !holder.is_empty() {
                            eprintln!(
                                "floodwatch: taking over partitions {} from {holder} (its lease was not renewed for {:?})",
                                cfg.group, cfg.lease_ttl
                            );
                        }
                        return Ok(Some(Lease {
                            key,
                            revision: rev,
                            refreshed: Instant::now(),
                        }));
                    }
                } else if !told && cfg.verbose {
                    told = true;
                    eprintln!(
                        "floodwatch: standby for partitions {}: {holder} runs them; taking over if its lease lapses for {:?}",
                        cfg.group, cfg.lease_ttl
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100).min(cfg.lease_ttl / 8));
    }
    Ok(None)
}

fn refresh_lease(
    bus: &ClusterBus,
    cfg: &DetectorConfig,
    lease: &mut Lease,
) -> Result<(), DetectorError> {
    let mine = serde_json::to_vec(&LeaseValue {
        holder: cfg.instance.clone(),
    })
    .unwrap_or_default();
    match bus.kv.update(&lease.key, &mine, lease.revision)? {
        Some(rev) => {
            lease.revision = rev;
            lease.refreshed = Instant::now();
            Ok(())
        }
        None => {
            let holder = bus
                .kv
                .get(&lease.key)
                .ok()
                .flatten()
                .and_then(|e| serde_json::from_slice::<LeaseValue>(&e.value).ok())
                .map_or_else(|| "another detector".to_string(), |v| v.holder);
            Err(DetectorError::LeaseLost {
                group: cfg.group.clone(),
                holder,
                ttl: cfg.lease_ttl,
            })
        }
    }
}

/// The scopes a summary counts on this detector: the sides its partition owns.
fn mask_of(sides: Sides) -> ScopeMask {
    let mut m = ScopeMask(0);
    if sides.destination {
        m.insert(Scope::DstHost);
        m.insert(Scope::DstSubnet);
    }
    if sides.source {
        m.insert(Scope::SrcHost);
        m.insert(Scope::SrcSubnet);
    }
    m
}

fn random_run() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Runs a detector node until `stop`, the end of the ingest streams (with `exit_at_end`) or an
/// error; events go to `emit`.
pub fn run_detector(
    bus: &ClusterBus,
    detect: DetectConfig,
    cfg: &DetectorConfig,
    stop: &AtomicBool,
    emit: &mut EmitFn<'_>,
) -> Result<DetectorStats, DetectorError> {
    let mut stats = DetectorStats::default();
    let Some(mut lease) = acquire_lease(bus, cfg, stop)? else {
        return Ok(stats);
    };
    let took = Instant::now();
    let store = bus.state.clone();
    let object = format!("detector.{}", cfg.group);
    let t0 = Instant::now();
    let silence_ns = cfg.silence.as_nanos() as u64;
    let mut merger =
        Merger::new(bus.cluster, &cfg.partitions, silence_ns).expect_nodes(cfg.ingest_nodes);
    let saved = match store.get(&object)? {
        Some(bytes) => match decode_checkpoint(&bytes) {
            Ok(c)
                if c.meta.partitions == cfg.partitions
                    && c.meta.cluster_seed == bus.cluster.seed =>
            {
                Some(c)
            }
            Ok(_) => {
                if cfg.verbose {
                    eprintln!("floodwatch: warning: the checkpoint of partitions {} belongs to another cluster layout; starting cold", cfg.group);
                }
                None
            }
            Err(e) => {
                if cfg.verbose {
                    eprintln!("floodwatch: warning: the checkpoint of partitions {} is unusable ({e}); starting cold", cfg.group);
                }
                None
            }
        },
        None => None,
    };
    let from_checkpoint = saved.is_some();
    let (mut engine, mut positions, run, mut last_written) = match saved {
        Some(c) => {
            let engine = Engine::restore_state(detect.clone(), &c.engine).map_err(|e| {
                DetectorError::Checkpoint {
                    group: cfg.group.clone(),
                    reason: format!("the saved engine does not load: {e}"),
                }
            })?;
            merger
                .restore(&c.merger_meta, &c.merger_held, mono(t0))
                .map_err(|e| DetectorError::Checkpoint {
                    group: cfg.group.clone(),
                    reason: e.to_string(),
                })?;
            let mut pos = vec![0u64; usize::from(bus.cluster.partitions)];
            for (p, s) in c.meta.positions {
                if let Some(x) = pos.get_mut(usize::from(p)) {
                    *x = s;
                }
            }
            (engine, pos, c.meta.run, c.meta.last_event)
        }
        None => {
            let engine = Engine::new(detect.clone(), ShardSpec { index: 0, count: 1 })?;
            let mut pos = vec![0u64; usize::from(bus.cluster.partitions)];
            if !cfg.from_start {
                // from what comes next: after the last message of the partition's stream (of
                // every partition's, in a one-stream cluster: asked once), so that one consumer
                // of every partition does not start from the stream's oldest
                let mut last: Option<(String, u64)> = None;
                for p in &cfg.partitions {
                    let stream = bus.stream(*p);
                    let seq = match &last {
                        Some((name, seq)) if *name == stream => *seq,
                        _ => bus.js.last_sequence(&stream)?,
                    };
                    pos[usize::from(*p)] = seq;
                    last = Some((stream, seq));
                }
            }
            (engine, pos, random_run(), None)
        }
    };
    stats.restored = from_checkpoint;
    // the events already written by this run (a takeover): computed again, not written again
    let events_subject = bus.events_subject(&cfg.group);
    if let Some(m) = bus.js.last_message(&bus.events_stream(), &events_subject)? {
        let header = |name: &str| {
            m.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        if header("Fw-Run").as_deref() == Some(run.as_str()) {
            if let Some(pos) = header("Fw-Pos").and_then(|p| parse_pos(&p)) {
                last_written = Some(last_written.map_or(pos, |w| w.max(pos)));
            }
        }
    }
    let suppress_upto = last_written;
    // a cold start's first checkpoint, before anything is consumed: a standby taking over from
    // here on continues this run (and knows which of its events were written); a restored
    // state is in the store already
    let mut ckpt = CheckpointWriter {
        store: &store,
        object: &object,
        group: &cfg.group,
        seed: bus.cluster.seed,
        partitions: &cfg.partitions,
        run: &run,
    };
    // (restoring a large state takes a while: the lease is renewed before and after)
    refresh_lease(bus, cfg, &mut lease)?;
    if !from_checkpoint {
        stats.checkpoint_bytes = ckpt.write(&mut engine, &merger, &positions, last_written)? as u64;
        stats.checkpoints += 1;
        refresh_lease(bus, cfg, &mut lease)?;
    }

    // consumers, read by threads of their own, from right after the checkpoint's positions
    let consumers_stop = AtomicBool::new(false);
    let misrouted = AtomicU64::new(0);
    let pulls = consumers::open(bus, &cfg.partitions, &positions, cfg.checkpoint_every)?;
    // the ingest nodes' watermarks, from each node's latest
    let (wm_stream, wm_filter) = bus.watermark_stream();
    let mut marks_reader = bus.js.latest_reader(&wm_stream, &wm_filter)?;
    stats.takeover = took.elapsed();
    if cfg.verbose {
        eprintln!(
            "floodwatch: running partitions {} of cluster {} ({}; {}; ready in {} ms)",
            cfg.group,
            bus.name,
            if stats.restored {
                "restored from its checkpoint"
            } else {
                "cold start"
            },
            pulls.describe(),
            stats.takeover.as_millis()
        );
    }
    let result = std::thread::scope(|s| {
        let mut feeds: Vec<Feed> = pulls
            .spawn(s, &cfg.partitions, &consumers_stop, &misrouted)
            .into_iter()
            .map(|(partition, rx)| Feed {
                partition,
                rx,
                watermark: 0,
                gone: false,
            })
            .collect();
        let (marks_tx, marks) = bounded::<Vec<u8>>(CONSUMER_QUEUE);
        let quit = &consumers_stop;
        crate::threads::spawn_named(s, "fw-pull-wm".to_string(), move || {
            forward(
                quit,
                |t| marks_reader.next_timeout(t),
                |m| marks_tx.send(m).is_ok(),
            )
        });
        let r = consume(
            bus,
            cfg,
            (&mut feeds, &marks),
            stop,
            &mut Loop {
                engine: &mut engine,
                merger: &mut merger,
                positions: &mut positions,
                t0,
                lease: &mut lease,
                ckpt: &mut ckpt,
                stats: &mut stats,
                emit,
                run: &run,
                events_subject: &events_subject,
                suppress_upto,
                last_written: &mut last_written,
                verbose: cfg.verbose,
            },
        );
        consumers_stop.store(true, Ordering::Relaxed);
        drop(feeds);
        drop(marks);
        r
    });
    stats.merge = merger.stats();
    // (a batch of the one consumer of every partition on no partition's subject)
    stats.malformed_batches += misrouted.load(Ordering::Relaxed);
    result.map(|()| stats)
}

fn parse_pos(s: &str) -> Option<(u64, u32)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

struct CheckpointWriter<'a> {
    store: &'a ObjectStore,
    object: &'a str,
    group: &'a str,
    seed: u64,
    partitions: &'a [u16],
    run: &'a str,
}

impl CheckpointWriter<'_> {
    fn write(
        &mut self,
        engine: &mut Engine,
        merger: &Merger,
        positions: &[u64],
        last_event: Option<(u64, u32)>,
    ) -> Result<usize, DetectorError> {
        let fail = |reason: String| DetectorError::Checkpoint {
            group: self.group.to_string(),
            reason,
        };
        let mut blob = Vec::new();
        engine
            .save_state(&mut blob)
            .map_err(|e| fail(e.to_string()))?;
        let (merger_meta, merger_held) = merger.save();
        let c = Checkpoint {
            meta: CheckpointMeta {
                partitions: self.partitions.to_vec(),
                cluster_seed: self.seed,
                positions: self
                    .partitions
                    .iter()
                    .map(|p| (*p, positions.get(usize::from(*p)).copied().unwrap_or(0)))
                    .collect(),
                run: self.run.to_string(),
                last_event,
            },
            merger_meta,
            merger_held,
            engine: blob,
        };
        let bytes = encode_checkpoint(&c);
        self.store
            .put(self.object, &bytes)
            .map_err(|e| fail(e.to_string()))?;
        Ok(bytes.len())
    }
}

struct Loop<'a, 'e> {
    engine: &'a mut Engine,
    merger: &'a mut Merger,
    positions: &'a mut [u64],
    t0: Instant,
    lease: &'a mut Lease,
    ckpt: &'a mut CheckpointWriter<'a>,
    stats: &'a mut DetectorStats,
    emit: &'a mut EmitFn<'e>,
    run: &'a str,
    events_subject: &'a str,
    suppress_upto: Option<(u64, u32)>,
    last_written: &'a mut Option<(u64, u32)>,
    /// Warnings on stderr (the first malformed batch).
    verbose: bool,
}

impl Loop<'_, '_> {
    /// Writes the events of one engine call: sorted as the sink writes them, numbered by
    /// (evaluation, index), those at or before `suppress_upto` skipped (written before a takeover),
    /// the rest published on the group's events subject, then handed to the output.
    fn out(&mut self, bus: &ClusterBus, mut events: Vec<AlertEvent>) -> Result<(), DetectorError> {
        if events.is_empty() {
            return Ok(());
        }
        events.sort_by_key(|e| e.order_key());
        let mut keep = Vec::with_capacity(events.len());
        let mut last_seq = None;
        let mut idx = 0u32;
        for e in events {
            if last_seq == Some(e.seq) {
                idx += 1;
            } else {
                last_seq = Some(e.seq);
                idx = 0;
            }
            let pos = (e.seq, idx);
            if self.suppress_upto.is_some_and(|s| pos <= s) {
                self.stats.events_suppressed += 1;
                continue;
            }
            let line = EventLine::of(&e).to_json();
            let pos_text = format!("{}.{}", pos.0, pos.1);
            bus.client.publish_with_headers(
                self.events_subject,
                &[("Fw-Run", self.run), ("Fw-Pos", &pos_text)],
                line.as_bytes(),
            )?;
            *self.last_written = Some(pos);
            keep.push(e);
        }
        bus.client.flush()?;
        self.stats.events += keep.len() as u64;
        if !keep.is_empty() && !(self.emit)(keep) {
            return Err(DetectorError::OutputClosed);
        }
        Ok(())
    }

    fn checkpoint(
        &mut self,
        bus: &ClusterBus,
        replies: &mut [Option<Delivered>],
    ) -> Result<(), DetectorError> {
        let began = Instant::now();
        let n = self
            .ckpt
            .write(self.engine, self.merger, self.positions, *self.last_written)?;
        self.stats.checkpoint_longest = self.stats.checkpoint_longest.max(began.elapsed());
        self.stats.checkpoints += 1;
        self.stats.checkpoint_bytes = n as u64;
        // the checkpoint holds everything up to these batches: acknowledge them (ack-all)
        for r in replies.iter_mut() {
            if let Some(last) = r.take() {
                last.ack(&bus.client)?;
            }
        }
        bus.client.flush()?;
        Ok(())
    }
}

fn consume(
    bus: &ClusterBus,
    cfg: &DetectorConfig,
    (feeds, marks): (&mut [Feed], &Receiver<Vec<u8>>),
    stop: &AtomicBool,
    l: &mut Loop<'_, '_>,
) -> Result<(), DetectorError> {
    let mut released = Vec::new();
    let mut ticks = Vec::new();
    let mut events = Vec::new();
    let mut started = false;
    let mut replies: Vec<Option<Delivered>> = (0..bus.cluster.partitions).map(|_| None).collect();
    let mut last_ckpt = Instant::now();
    let tick_ns = l.engine.config().tick_ns().max(1);
    let window_ns = l.engine.config().window_ns().max(1);
    let idle_wait = IDLE_WAIT
        .min(cfg.lease_ttl / 8)
        .min(cfg.silence / 8)
        .max(BUSY_WAIT);
    loop {
        if stop.load(Ordering::Relaxed) {
            // hand over: state saved, lease released so a standby starts at once
            l.checkpoint(bus, &mut replies)?;
            let _ = bus.kv.update(&l.lease.key, b"", l.lease.revision);
            return Ok(());
        }
        // Take batches from the partitions that are behind in packet time (within a tick of the
        // slowest): one that runs ahead waits in its channel, and then its consumer waits, so the
        // merge holds back little (partitions read from the bus's store run at their own pace).
        // One consumer of every partition waits when any partition's channel is full: when
        // nothing else came, a batch is taken from a partition ahead so that it goes on.
        let slowest = feeds
            .iter()
            .filter(|f| !f.gone)
            .map(|f| f.watermark)
            .min()
            .unwrap_or(0);
        let limit = slowest.saturating_add(tick_ns);
        let mut got = 0;
        // the ingest nodes' watermarks: time moving on partitions that got no batch
        loop {
            match marks.try_recv() {
                Ok(m) => {
                    got += 1;
                    take_mark(l, feeds, &m);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    let (stream, _) = bus.watermark_stream();
                    return Err(DetectorError::Nats(NatsError::Closed {
                        what: format!(
                            "the consumer of stream {stream} on {} stopped",
                            bus.client.url()
                        ),
                    }));
                }
            }
        }
        for f in feeds.iter_mut().filter(|f| !f.gone && f.watermark <= limit) {
            for _ in 0..TAKE_IN_A_ROW {
                match f.rx.try_recv() {
                    Ok(m) => {
                        got += 1;
                        take(l, &mut replies, f, m);
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        f.gone = true;
                        break;
                    }
                }
            }
        }
        let consumers_gone = feeds.iter().all(|f| f.gone);
        if got == 0 && !consumers_gone {
            // wait (briefly) for a batch of a partition that may be read now
            let mut sel = crossbeam_channel::Select::new();
            let eligible: Vec<usize> = (0..feeds.len())
                .filter(|i| !feeds[*i].gone && feeds[*i].watermark <= limit)
                .collect();
            for i in &eligible {
                sel.recv(&feeds[*i].rx);
            }
            // (or for a node watermark)
            let mark = sel.recv(marks);
            let waiting = feeds.iter().any(|f| !f.gone && !f.rx.is_empty());
            let wait = if waiting { BUSY_WAIT } else { idle_wait };
            let picked = sel.select_timeout(wait).ok().map(|op| {
                if op.index() == mark {
                    Woke::Mark(op.recv(marks))
                } else {
                    let i = eligible[op.index()];
                    Woke::Batch(i, op.recv(&feeds[i].rx))
                }
            });
            drop(sel);
            match picked {
                Some(Woke::Batch(i, r)) => {
                    let f = &mut feeds[i];
                    match r {
                        Ok(m) => take(l, &mut replies, f, m),
                        Err(_) => f.gone = true,
                    }
                }
                Some(Woke::Mark(Ok(m))) => take_mark(l, feeds, &m),
                // (the watermark consumer stopped: the loop's top says so)
                Some(Woke::Mark(Err(_))) => {}
                None => {
                    if let Some(f) = feeds.iter_mut().find(|f| !f.gone && f.rx.is_full()) {
                        match f.rx.try_recv() {
                            Ok(m) => take(l, &mut replies, f, m),
                            Err(crossbeam_channel::TryRecvError::Disconnected) => f.gone = true,
                            Err(crossbeam_channel::TryRecvError::Empty) => {}
                        }
                    }
                }
            }
        }
        if consumers_gone {
            return Err(DetectorError::Nats(NatsError::Closed {
                what: format!(
                    "the consumers of partitions {} on {} stopped",
                    cfg.group,
                    bus.client.url()
                ),
            }));
        }
        // the streams have ended: everything is released and the run finishes; until then whole
        // ticks only, so that a checkpoint never falls inside a tick the engine is aggregating
        let ending =
            cfg.exit_at_end && l.merger.all_ended() && feeds.iter().all(|f| f.rx.is_empty());
        let upto = if ending {
            l.merger.release(mono(l.t0), &mut released)
        } else {
            l.merger.release_ticks(mono(l.t0), tick_ns, &mut released)
        };
        if let Some(upto) = upto {
            let whole = if ending { u64::MAX } else { upto.0 };
            l.merger.take_ticks(whole, tick_ns, &mut ticks);
            if !started {
                started = true;
                if let Some(s) = l.merger.start() {
                    l.engine.advance_to(s, &mut events);
                }
            }
            // aggregates (`--edge-admission`) and summaries in time order: a tick's aggregates
            // after the summaries before it and the evaluations due before it, counted as a
            // shard counts a router's; a tick the clock has passed (a node heard again after
            // silence) is counted at once, into the clock's tick
            let mut summaries = released.drain(..).peekable();
            for mut t in ticks.drain(..) {
                let start = t.tick.saturating_mul(tick_ns);
                let fits = t.epoch == start / window_ns
                    && t.last_ts
                        .is_none_or(|ts| ts.0 >= start && ts.0 - start < tick_ns);
                if !fits {
                    // another tick or window than this detector's: a node with another --config
                    if l.stats.malformed_batches == 0 && l.verbose {
                        eprintln!("floodwatch: warning: aggregates of tick {} do not fit this detector's tick and window (--tick, --window): every node of a cluster must run with the same --config; refused batches are counted", t.tick);
                    }
                    l.stats.malformed_batches += 1;
                    continue;
                }
                while let Some((s, sides)) = summaries.next_if(|(s, _)| s.ts.0 < start) {
                    count_summary(l.engine, &s, sides, &mut events);
                }
                l.engine.advance_to(Timestamp(start), &mut events);
                if let Some(now) = l.engine.clock_now().filter(|now| now.0 / tick_ns > t.tick) {
                    // late: counted into the clock's tick and window, as a late summary is
                    t.tick = now.0 / tick_ns;
                    t.epoch = now.0 / window_ns;
                }
                l.engine.absorb(&t);
                if let Some(ts) = t.last_ts {
                    // the clock at the tick's latest packet, as one machine's is (no step is due
                    // inside a tick)
                    l.engine.advance_to(ts, &mut events);
                }
            }
            for (s, sides) in summaries {
                count_summary(l.engine, &s, sides, &mut events);
            }
            l.engine.advance_to(upto, &mut events);
            l.out(bus, std::mem::take(&mut events))?;
        }
        if ending && l.merger.held() == 0 {
            l.engine.finish(EndReason::EndOfInput, &mut events);
            l.out(bus, std::mem::take(&mut events))?;
            l.checkpoint(bus, &mut replies)?;
            let _ = bus.kv.update(&l.lease.key, b"", l.lease.revision);
            return Ok(());
        }
        // a periodic checkpoint waits for a moment with no part of a tick pending (after every
        // release there is none; this only guards the rule)
        if last_ckpt.elapsed() >= cfg.checkpoint_every && !l.engine.has_pending() {
            last_ckpt = Instant::now();
            l.checkpoint(bus, &mut replies)?;
        }
        if l.lease.refreshed.elapsed() >= cfg.lease_ttl / 4 {
            refresh_lease(bus, cfg, l.lease)?;
        }
    }
}

/// Counts one released summary: aggregated into its tick, or, late (from a node heard again after
/// the clock moved on without it), counted at once into the clock's tick, never left pending in
/// a tick the clock may not reach before a checkpoint.
fn count_summary(engine: &mut Engine, s: &PacketSummary, sides: Sides, out: &mut Vec<AlertEvent>) {
    if engine.clock_now().is_some_and(|now| s.ts < now) {
        engine.on_packet_within(s, mask_of(sides), out);
    } else {
        engine.aggregate_within(s, mask_of(sides), out);
    }
}

/// What a wait for the bus woke to: a partition's batch (by its feed's index) or a node
/// watermark. (It lives for one turn of the loop, on the stack: its size costs nothing.)
#[allow(clippy::large_enum_variant)]
enum Woke {
    Batch(usize, Result<Delivered, crossbeam_channel::RecvError>),
    Mark(Result<Vec<u8>, crossbeam_channel::RecvError>),
}

/// One node watermark into the merge; every partition's feed learns where time is.
fn take_mark(l: &mut Loop<'_, '_>, feeds: &mut [Feed], m: &[u8]) {
    if let Err(e) = l.merger.accept_watermark(m, mono(l.t0)) {
        if l.stats.malformed_batches == 0 && l.verbose {
            eprintln!("floodwatch: warning: a node watermark was refused: {e} (refused messages are only counted from now on)");
        }
        l.stats.malformed_batches += 1;
        return;
    }
    for f in feeds.iter_mut() {
        f.watermark = f.watermark.max(l.merger.partition_watermark(f.partition));
    }
}

/// One batch of a partition into the merge.
fn take(l: &mut Loop<'_, '_>, replies: &mut [Option<Delivered>], f: &mut Feed, m: Delivered) {
    let p = usize::from(f.partition);
    if let Some(x) = l.positions.get_mut(p) {
        *x = (*x).max(m.stream_seq);
    }
    match l.merger.accept(m.payload(), mono(l.t0)) {
        // (the batch may have let a node watermark held for it apply: the merger's says all)
        Ok(h) => {
            let held = l.merger.partition_watermark(f.partition);
            f.watermark = f.watermark.max(h.watermark).max(held);
        }
        Err(e) => {
            if l.stats.malformed_batches == 0 && l.verbose {
                // the first says why (a node of another version or kind, bytes cut in transit);
                // the rest are counted
                eprintln!(
                    "floodwatch: warning: partition {}: a batch was refused: {e} (batches refused from now on are only counted)",
                    f.partition
                );
            }
            l.stats.malformed_batches += 1;
        }
    }
    if let Some(r) = replies.get_mut(p) {
        *r = Some(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_cut_bytes_are_refused() {
        let c = Checkpoint {
            meta: CheckpointMeta {
                partitions: vec![0, 1],
                cluster_seed: 7,
                positions: vec![(0, 5), (1, 9)],
                run: "r".into(),
                last_event: Some((3, 1)),
            },
            merger_meta: b"{}".to_vec(),
            merger_held: vec![1, 2, 3],
            engine: vec![9; 100],
        };
        let b = encode_checkpoint(&c);
        let d = decode_checkpoint(&b).unwrap();
        assert_eq!(d.meta.positions, vec![(0, 5), (1, 9)]);
        assert_eq!(d.engine, vec![9; 100]);
        assert_eq!(d.merger_held, vec![1, 2, 3]);
        for cut in 0..b.len() {
            assert!(decode_checkpoint(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(parse_pos("12.3"), Some((12, 3)));
        assert_eq!(parse_pos("x"), None);
    }
}
