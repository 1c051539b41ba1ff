//! The pipeline: the only module that spawns threads or touches channels.
//!
//! ```text
//! caller's thread: source → decode → batches ──▶ shard 0..N (Engine) ──events──▶ sink thread ──▶ writer
//! ```
//! Every shard receives every batch (an `Arc`, no copy) and counts only the (scope, key)s it owns, so
//! each key lives in exactly one shard and every shard evaluates at the same packet times. The sink
//! holds events until every shard has passed their evaluation, then writes them in
//! [`AlertEvent::order_key`] order: the output is byte-identical whatever the thread count or batch
//! size. Channels are bounded; on replay a full channel makes the reader wait (back-pressure); on
//! live capture it never does (that would stall the kernel's ring): the batch is dropped for every
//! shard and counted. When a live source is idle, a clock tick travels in-band through the same
//! channels, so every shard advances packet time at the same point of the stream.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::alert::{
    AlertEvent, AttackClass, EndReason, EventKind, EventLine, EventWriter, StatsEvent,
};
use crate::baseline::{BaselineEntry, BaselineFile};
use crate::capture::{CaptureError, CaptureStats, FrameSource, SourceEvent};
use crate::config::{ConfigError, DetectConfig};
use crate::decode::{DecodeStats, Decoder, PacketSummary};
use crate::detect::{Engine, EngineStats, ShardSpec};
use crate::hook::{AlertHook, HookJob};
use crate::key::{Key, Scope};
use crate::metrics::{InputCounts, Metrics};
use crate::population::PopulationExchange;
use crate::time::Timestamp;

/// How the stages are laid out.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Counter shards (threads).
    pub threads: usize,
    /// Packet summaries per batch.
    pub batch_size: usize,
    /// Batches each channel holds before the reader waits.
    pub channel_batches: usize,
    /// Pace the replay at capture speed.
    pub realtime: bool,
    /// Baselines to start from (`--load-baseline`).
    pub load_baselines: Option<Arc<BaselineFile>>,
    /// Collect the learned baselines at the end (`--save-baseline`).
    pub save_baselines: bool,
    /// Live capture: never wait on a full channel (drop the batch and count it), and drain the
    /// source for a moment after a stop request.
    pub live: bool,
    /// Print a status line of counters on stderr this often (wall time).
    pub status_interval: Option<Duration>,
}

/// Counter shards by default: one core fewer than the machine has (the reader needs one to itself),
/// at least one. Every shard reads every batch, so on two cores one shard beside the reader replays
/// faster than two (docs/performance.md).
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            threads: default_shards(),
            batch_size: 256,
            channel_batches: 64,
            realtime: false,
            load_baselines: None,
            save_baselines: false,
            live: false,
            status_interval: None,
        }
    }
}

/// Where a run reports besides its alert output; all optional ([`Integrations::default`]: none).
#[derive(Clone, Copy, Debug, Default)]
pub struct Integrations<'a> {
    /// Counters for `--metrics-listen`, published per batch.
    pub metrics: Option<&'a Metrics>,
    /// `--on-alert`: every alert event written is also queued for the hook.
    pub hook: Option<&'a AlertHook>,
    /// `--stats-interval`: a `stats` event at every multiple of this in packet time.
    pub stats_interval: Option<Duration>,
}

/// What a run saw, for the summary.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Frames read from the source.
    pub frames: u64,
    /// Frames decoded into packets.
    pub packets: u64,
    /// Wire bytes of decoded packets.
    pub bytes: u64,
    pub decode: DecodeStats,
    pub capture: CaptureStats,
    pub first_ts: Option<Timestamp>,
    pub last_ts: Option<Timestamp>,
    /// Per shard.
    pub engine: Vec<EngineStats>,
    pub alerts: AlertTally,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The output closed early (e.g. `| head`): the run stopped quietly.
    pub output_closed: bool,
    /// Ctrl-C / SIGTERM stopped the run.
    pub interrupted: bool,
    /// Peak resident memory of the process, in bytes (Linux; None elsewhere).
    pub peak_rss: Option<u64>,
    /// The source was a live interface.
    pub live: bool,
    /// Packets read but not counted because the shards were behind (live capture only).
    pub pipeline_drops: u64,
    /// Batches those packets travelled in.
    pub pipeline_dropped_batches: u64,
}

impl RunSummary {
    /// Packet-time span of the input, in seconds.
    pub fn capture_seconds(&self) -> f64 {
        match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// Frames per wall-clock second.
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Alerts the sink wrote, by class, and the heaviest targets.
#[derive(Clone, Debug, Default)]
pub struct AlertTally {
    pub started: BTreeMap<AttackClass, u64>,
    /// `end` events written.
    pub ended: u64,
    pub events: u64,
    /// Peak rate per alerted (scope, key).
    pub peaks: BTreeMap<(Scope, Key), (AttackClass, f64)>,
}

impl AlertTally {
    fn count(&mut self, e: &AlertEvent) {
        self.events += 1;
        match e.event {
            EventKind::Start => *self.started.entry(e.class).or_default() += 1,
            EventKind::End => self.ended += 1,
            EventKind::Update => {}
        }
        let p = self.peaks.entry((e.scope, e.key)).or_insert((e.class, 0.0));
        if e.peak_pps > p.1 {
            *p = (e.class, e.peak_pps);
        }
    }

    /// Alerts started and not yet ended.
    pub fn active(&self) -> u64 {
        self.started
            .values()
            .sum::<u64>()
            .saturating_sub(self.ended)
    }

    /// The `n` heaviest alerted destinations (hosts and subnets), heaviest first.
    pub fn top_targets(&self, n: usize) -> Vec<(Scope, Key, AttackClass, f64)> {
        let mut v: Vec<_> = self
            .peaks
            .iter()
            .filter(|((s, _), _)| s.is_destination())
            .map(|((s, k), (c, p))| (*s, *k, *c, *p))
            .collect();
        v.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.1.cmp(&b.1)));
        v.truncate(n);
        v
    }
}

/// Why a run could not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("writing alerts failed: {0}")]
    Output(io::Error),
    #[error("a pipeline thread panicked (a bug: please report it with the capture)")]
    Panicked,
}

/// The outcome of a run: its summary and, if reading stopped on an error, that error (the alerts for
/// what was read before it have been written).
pub struct RunOutcome {
    pub summary: RunSummary,
    pub capture_error: Option<CaptureError>,
    /// With [`PipelineConfig::save_baselines`]: every shard's learned baselines.
    pub baselines: Vec<BaselineEntry>,
}

/// Packets on their way to the shards.
#[derive(Debug, Default)]
struct Batch {
    packets: Vec<PacketSummary>,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Batch {
            packets: Vec::with_capacity(n),
        }
    }
}

/// A message from the reader to every shard.
#[derive(Clone, Debug)]
enum ShardMsg {
    Packets(Arc<Batch>),
    /// The live source is idle: packet time is at least this.
    Tick(Timestamp),
}

/// A message from a shard to the sink.
struct ShardOut {
    shard: usize,
    events: Vec<AlertEvent>,
    /// `stats` events (shard 0 only), ordered after the alert events of their `seq`.
    marks: Vec<StatsEvent>,
    watermark: u64,
    /// Set on the shard's last message.
    stats: Option<EngineStats>,
}

/// Runs `source` through decode, the engine shards and the writer until the source ends, fails or
/// `stop` is set.
pub fn run<W: Write + Send>(
    source: &mut dyn FrameSource,
    detect: &DetectConfig,
    pipe: &PipelineConfig,
    writer: EventWriter<W>,
    stop: &AtomicBool,
) -> Result<RunOutcome, PipelineError> {
    run_with(source, detect, pipe, writer, stop, Integrations::default())
}

/// [`run`], also publishing metrics, feeding the alert hook and writing `stats` events as
/// `integ` asks.
pub fn run_with<W: Write + Send>(
    source: &mut dyn FrameSource,
    detect: &DetectConfig,
    pipe: &PipelineConfig,
    writer: EventWriter<W>,
    stop: &AtomicBool,
    integ: Integrations<'_>,
) -> Result<RunOutcome, PipelineError> {
    let threads = pipe.threads.max(1);
    let mut engines = (0..threads)
        .map(|i| {
            Engine::new(
                detect.clone(),
                ShardSpec {
                    index: i,
                    count: threads,
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    if threads > 1 {
        let exchange = Arc::new(PopulationExchange::new(threads));
        for e in &mut engines {
            e.set_population_exchange(Arc::clone(&exchange));
        }
    }
    if let Some(file) = &pipe.load_baselines {
        for e in &mut engines {
            e.load_baselines(&file.entries);
        }
    }
    let save = pipe.save_baselines;
    let started = Instant::now();
    let output_closed = AtomicBool::new(false);
    let (out_tx, out_rx) = bounded::<ShardOut>(threads * pipe.channel_batches.max(1));

    let (mut summary, capture_error, sink_result, shard_stats) = std::thread::scope(|s| {
        let mut batch_txs = Vec::with_capacity(threads);
        let mut shard_handles = Vec::with_capacity(threads);
        for (i, engine) in engines.into_iter().enumerate() {
            let (tx, rx) = bounded::<ShardMsg>(pipe.channel_batches.max(1));
            batch_txs.push(tx);
            let out_tx = out_tx.clone();
            let stats_every = if i == 0 {
                integ.stats_interval.map(|d| (d.as_nanos() as u64).max(1))
            } else {
                None
            };
            let observe = ShardObserve {
                metrics: integ.metrics,
                stats_every,
                save,
            };
            shard_handles.push(s.spawn(move || run_shard(i, engine, rx, out_tx, stop, observe)));
        }
        drop(out_tx);
        let closed = &output_closed;
        let sink = s.spawn(move || run_sink(out_rx, threads, writer, stop, closed, integ));

        let mut reader = Reader::new(pipe, batch_txs, integ.metrics);
        let capture_error = reader.read_all(source, stop);
        let summary = reader.finish(source.stats());

        let mut shard_stats = Vec::new();
        for h in shard_handles {
            shard_stats.push(h.join().map_err(|_| PipelineError::Panicked));
        }
        let sink_result = sink.join().map_err(|_| PipelineError::Panicked);
        (summary, capture_error, sink_result, shard_stats)
    });
    let mut baselines = Vec::new();
    for st in shard_stats {
        let (stats, b) = st?;
        summary.engine.push(stats);
        baselines.extend(b);
    }
    let (tally, write_error) = sink_result?;
    summary.alerts = tally;
    summary.elapsed = started.elapsed();
    summary.peak_rss = peak_rss();
    summary.output_closed = output_closed.load(Ordering::Relaxed);
    summary.interrupted = stop.load(Ordering::Relaxed) && !summary.output_closed;
    if let Some(e) = write_error {
        return Err(PipelineError::Output(e));
    }
    Ok(RunOutcome {
        summary,
        capture_error,
        baselines,
    })
}

/// On an idle report, a partial batch is handed over once its oldest packet is this old (ns).
const IDLE_FLUSH_AGE: u64 = 20_000_000;
/// Idle clock ticks are at least this far apart in packet time (ns).
const IDLE_TICK_SPACING: u64 = 10_000_000;

/// After a stop request, a live source is drained until it is idle, for at most this long.
const LIVE_DRAIN: Duration = Duration::from_secs(1);

/// The reading side: frames → packet summaries → batches sent to every shard.
struct Reader<'m> {
    decoder: Decoder,
    batch: Batch,
    batch_size: usize,
    txs: Vec<Sender<ShardMsg>>,
    summary: RunSummary,
    realtime: Option<(Instant, Timestamp)>,
    pace: bool,
    metrics: Option<&'m Metrics>,
    /// Counted since the last publication to `metrics`.
    counts: InputCounts,
    live: bool,
    /// Latest idle tick sent.
    last_tick: Timestamp,
    /// When the stop request was seen, monotonic and as packet time (live: the drain runs from here).
    stopping: Option<(Instant, Timestamp)>,
    stats: Option<StatsLine>,
}

/// Frames between two publications of the reader's counters.
const PUBLISH_EVERY_FRAMES: u64 = 4096;

impl<'m> Reader<'m> {
    fn new(
        pipe: &PipelineConfig,
        txs: Vec<Sender<ShardMsg>>,
        metrics: Option<&'m Metrics>,
    ) -> Self {
        let batch_size = pipe.batch_size.clamp(1, 65_536);
        Reader {
            decoder: Decoder,
            batch: Batch::with_capacity(batch_size),
            batch_size,
            txs,
            summary: RunSummary {
                live: pipe.live,
                ..RunSummary::default()
            },
            realtime: None,
            pace: pipe.realtime,
            metrics,
            counts: InputCounts::default(),
            live: pipe.live,
            last_tick: Timestamp(0),
            stopping: None,
            stats: pipe.status_interval.map(StatsLine::new),
        }
    }

    /// Publishes what was counted since the last call (metrics only).
    fn publish(&mut self, capture: CaptureStats) {
        if let Some(m) = self.metrics {
            m.publish_input(&mut self.counts);
            m.set_kernel_drops(capture.kernel_drops);
        }
    }

    /// Reads until the end, an error or `stop`; returns the error, if any.
    fn read_all(
        &mut self,
        source: &mut dyn FrameSource,
        stop: &AtomicBool,
    ) -> Option<CaptureError> {
        loop {
            if self.summary.frames % 1024 == 0 && self.should_stop(source, stop, None) {
                return None;
            }
            if self.summary.frames % PUBLISH_EVERY_FRAMES == 0 {
                self.publish(source.stats());
            }
            match source.next_event() {
                Ok(SourceEvent::Frame(frame)) => {
                    self.summary.frames += 1;
                    self.counts.frames += 1;
                    match self
                        .decoder
                        .decode(frame.link, frame.data, frame.ts, frame.wire_len)
                    {
                        Ok(p) => self.push(p),
                        Err(e) => {
                            self.summary.decode.record(&e);
                            self.counts.not_decoded(&e);
                        }
                    }
                }
                Ok(SourceEvent::Idle { now }) => {
                    self.tick(now);
                    self.publish(source.stats());
                    if self.should_stop(source, stop, Some(now)) {
                        return None;
                    }
                }
                Ok(SourceEvent::End) => return None,
                Err(e) => return Some(e),
            }
        }
    }

    /// Whether to stop reading now: at once on replay; on live capture once the source, idle, vouches
    /// that every frame that arrived before the stop request has been read (`idle` is the packet time
    /// it is idle at), or the drain deadline has passed. Also prints the periodic stats.
    fn should_stop(
        &mut self,
        source: &dyn FrameSource,
        stop: &AtomicBool,
        idle: Option<Timestamp>,
    ) -> bool {
        if let Some(line) = &mut self.stats {
            line.maybe_print(&self.summary, &source.stats());
        }
        if self.stopping.is_none() && stop.load(Ordering::Relaxed) {
            self.stopping = Some((Instant::now(), wall_clock()));
        }
        match self.stopping {
            None => false,
            Some(_) if !self.live => true,
            Some((at, wall)) => idle.is_some_and(|t| t >= wall) || at.elapsed() >= LIVE_DRAIN,
        }
    }

    /// The source is idle at packet time `now`: hand over the batch once its oldest packet has
    /// waited [`IDLE_FLUSH_AGE`] (a ring that runs dry after every small block would otherwise flood
    /// the channels with tiny batches), and, with nothing held back, move every shard's clock
    /// in-band, so each sees the tick at the same point of the stream.
    fn tick(&mut self, now: Timestamp) {
        let oldest = self.batch.packets.first().map(|p| p.ts);
        if oldest
            .is_some_and(|t| now.saturating_sub(t) >= IDLE_FLUSH_AGE || self.stopping.is_some())
        {
            self.flush();
        }
        if self.batch.packets.is_empty() && now.saturating_sub(self.last_tick) >= IDLE_TICK_SPACING
        {
            self.last_tick = now;
            self.send(ShardMsg::Tick(now));
        }
    }

    #[inline]
    fn push(&mut self, p: PacketSummary) {
        let s = &mut self.summary;
        s.packets += 1;
        s.bytes += u64::from(p.wire_len);
        s.first_ts.get_or_insert(p.ts);
        s.last_ts = Some(s.last_ts.map_or(p.ts, |t| t.max(p.ts)));
        if self.metrics.is_some() {
            self.counts.packet(&p);
        }
        if self.pace {
            self.wait_for(p.ts);
        }
        self.batch.packets.push(p);
        if self.batch.packets.len() >= self.batch_size {
            self.flush();
        }
    }

    /// `--realtime`: sleeps until wall time catches up with packet time (flushing first so the shards
    /// see what came before).
    fn wait_for(&mut self, ts: Timestamp) {
        let (wall0, ts0) = *self.realtime.get_or_insert((Instant::now(), ts));
        let due = Duration::from_nanos(ts.saturating_sub(ts0));
        let now = wall0.elapsed();
        if due > now {
            self.flush();
            if let Some(m) = self.metrics {
                m.publish_input(&mut self.counts);
            }
            std::thread::sleep((due - now).min(Duration::from_secs(5)));
        }
    }

    fn flush(&mut self) {
        if self.batch.packets.is_empty() {
            return;
        }
        if self.live && self.txs.iter().any(|tx| tx.is_full()) {
            // A shard is behind: waiting would stall the capture ring, so this batch is lost to all
            // shards alike (they keep seeing the same stream) and counted.
            self.summary.pipeline_drops += self.batch.packets.len() as u64;
            self.summary.pipeline_dropped_batches += 1;
            self.batch.packets.clear();
            return;
        }
        let batch = Arc::new(std::mem::replace(
            &mut self.batch,
            Batch::with_capacity(self.batch_size),
        ));
        self.send(ShardMsg::Packets(batch));
    }

    /// Sends `msg` to every shard: waiting on replay; on live capture only when every channel has
    /// room (the reader is the only sender, so the check holds until the sends), else not at all.
    fn send(&self, msg: ShardMsg) {
        if self.live {
            if self.txs.iter().any(|tx| tx.is_full()) {
                return;
            }
            for tx in &self.txs {
                let _ = tx.try_send(msg.clone());
            }
        } else {
            for tx in &self.txs {
                // A closed shard means the run is stopping; its error surfaces from the join.
                let _ = tx.send(msg.clone());
            }
        }
    }

    fn finish(mut self, capture: CaptureStats) -> RunSummary {
        if self.live {
            // The stop request came while draining: what is batched is still counted.
            self.live = false;
        }
        self.flush();
        self.publish(capture);
        self.txs.clear();
        self.summary.capture = capture;
        self.summary
    }
}

/// What a shard reports besides its events.
#[derive(Clone, Copy)]
struct ShardObserve<'a> {
    metrics: Option<&'a Metrics>,
    /// Shard 0 with `--stats-interval`: the interval in nanoseconds.
    stats_every: Option<u64>,
    /// Collect the learned baselines at the end.
    save: bool,
}

/// `stats` marks from the packets shard 0 sees: every packet reaches every shard, so the counts
/// and the evaluations they follow are the same whatever the thread count and batch size.
struct StatsClock {
    every: u64,
    /// The next interval boundary, set by the first packet.
    next: Option<u64>,
    packets: u64,
    bytes: u64,
}

impl StatsClock {
    /// Counts `p` after the engine has seen it; when `p` is the first packet at or past a boundary,
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
        self.packets += 1;
        self.bytes += u64::from(p.wire_len);
        mark
    }
}

/// The first multiple of `every` after `t`, saturating.
fn next_boundary(t: u64, every: u64) -> u64 {
    (t / every).saturating_add(1).saturating_mul(every)
}

/// One counter shard: runs its engine over every batch and forwards events with its watermark.
fn run_shard(
    index: usize,
    mut engine: Engine,
    rx: Receiver<ShardMsg>,
    out: Sender<ShardOut>,
    stop: &AtomicBool,
    observe: ShardObserve<'_>,
) -> (EngineStats, Vec<BaselineEntry>) {
    let mut events = Vec::new();
    let mut marks = Vec::new();
    let mut sent_watermark = 0;
    let mut published = EngineStats::default();
    let mut clock = observe.stats_every.map(|every| StatsClock {
        every,
        next: None,
        packets: 0,
        bytes: 0,
    });
    for msg in rx.iter() {
        match msg {
            ShardMsg::Packets(batch) => {
                for p in batch.packets.iter() {
                    engine.on_packet(p, &mut events);
                    if let Some(c) = &mut clock {
                        marks.extend(c.after_packet(p, engine.watermark()));
                    }
                }
            }
            ShardMsg::Tick(now) => engine.advance_to(now, &mut events),
        }
        if let Some(m) = observe.metrics {
            m.publish_tables(&mut published, &engine.stats());
        }
        let w = engine.watermark();
        if !events.is_empty() || !marks.is_empty() || w != sent_watermark {
            sent_watermark = w;
            let msg = ShardOut {
                shard: index,
                events: std::mem::take(&mut events),
                marks: std::mem::take(&mut marks),
                watermark: w,
                stats: None,
            };
            if out.send(msg).is_err() {
                break;
            }
        }
    }
    let reason = if stop.load(Ordering::Relaxed) {
        EndReason::Shutdown
    } else {
        EndReason::EndOfInput
    };
    engine.finish(reason, &mut events);
    let stats = engine.stats();
    if let Some(m) = observe.metrics {
        m.publish_tables(&mut published, &stats);
    }
    let _ = out.send(ShardOut {
        shard: index,
        events,
        marks,
        watermark: u64::MAX,
        stats: Some(stats),
    });
    let baselines = if observe.save {
        engine.baselines()
    } else {
        Vec::new()
    };
    (stats, baselines)
}

/// An event waiting in the sink for every shard to pass its evaluation.
// Most pending items are alerts: boxing them to shrink the rare stats variant would only add an
// allocation per alert.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Alert(AlertEvent),
    Stats(StatsEvent),
}

impl Pending {
    fn seq(&self) -> u64 {
        match self {
            Pending::Alert(e) => e.seq,
            Pending::Stats(s) => s.seq,
        }
    }

    /// Alert events in [`AlertEvent::order_key`] order, then the `stats` events of the same
    /// evaluation (the sort is stable, so those keep their packet-time order).
    fn order(&self) -> (u64, u8, Scope, Key, EventKind) {
        match self {
            Pending::Alert(e) => {
                let (seq, scope, key, kind) = e.order_key();
                (seq, 0, scope, key, kind)
            }
            Pending::Stats(s) => (
                s.seq,
                1,
                Scope::DstHost,
                Key::V4 { addr: 0, prefix: 0 },
                EventKind::Start,
            ),
        }
    }
}

/// What the sink writes to, besides its output.
struct SinkOut<'a, W: Write> {
    writer: EventWriter<W>,
    tally: AlertTally,
    integ: Integrations<'a>,
}

impl<W: Write> SinkOut<'_, W> {
    fn write(&mut self, item: Pending) -> io::Result<()> {
        match item {
            Pending::Alert(e) => {
                self.tally.count(&e);
                if let Some(m) = self.integ.metrics {
                    m.on_alert(&e);
                }
                if let Some(h) = self.integ.hook {
                    h.submit(HookJob::of(&e, EventLine::of(&e).to_json()));
                }
                self.writer.write_event(&e)
            }
            Pending::Stats(mut s) => {
                s.active_alerts = self.tally.active();
                self.writer.write_stats(&s)
            }
        }
    }
}

/// The sink: orders events from all shards and writes them. Returns the tally and the write error
/// that stopped it, if any (a closed pipe is not an error: it sets `closed` and `stop`).
fn run_sink<W: Write>(
    rx: Receiver<ShardOut>,
    shards: usize,
    writer: EventWriter<W>,
    stop: &AtomicBool,
    closed: &AtomicBool,
    integ: Integrations<'_>,
) -> (AlertTally, Option<io::Error>) {
    let mut out = SinkOut {
        writer,
        tally: AlertTally::default(),
        integ,
    };
    let mut watermarks = vec![0u64; shards];
    let mut pending: Vec<Pending> = Vec::new();
    let mut failed = None;
    for msg in rx.iter() {
        if failed.is_some() || closed.load(Ordering::Relaxed) {
            continue; // drain so shards never block
        }
        if let Some(w) = watermarks.get_mut(msg.shard) {
            *w = msg.watermark;
        }
        pending.extend(msg.events.into_iter().map(Pending::Alert));
        pending.extend(msg.marks.into_iter().map(Pending::Stats));
        let _ = msg.stats;
        let min = watermarks.iter().copied().min().unwrap_or(u64::MAX);
        if let Err(e) = release(&mut pending, min, &mut out) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                closed.store(true, Ordering::Relaxed);
            } else {
                failed = Some(e);
            }
            stop.store(true, Ordering::Relaxed);
        }
    }
    if failed.is_none() && !closed.load(Ordering::Relaxed) {
        if let Err(e) = release(&mut pending, u64::MAX, &mut out) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                closed.store(true, Ordering::Relaxed);
            } else {
                failed = Some(e);
            }
        }
    }
    (out.tally, failed)
}

/// The wall clock as packet time (live capture stamps frames with it).
fn wall_clock() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| Timestamp(d.as_nanos() as u64))
        .unwrap_or_default()
}

/// The periodic counters line on stderr (`--status-interval`).
struct StatsLine {
    every: Duration,
    started: Instant,
    next: Instant,
    last_frames: u64,
    last_at: Instant,
}

impl StatsLine {
    fn new(every: Duration) -> StatsLine {
        let now = Instant::now();
        StatsLine {
            every: every.max(Duration::from_millis(100)),
            started: now,
            next: now + every,
            last_frames: 0,
            last_at: now,
        }
    }

    fn maybe_print(&mut self, s: &RunSummary, capture: &CaptureStats) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        let rate = (s.frames - self.last_frames) as f64
            / now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        self.last_frames = s.frames;
        self.last_at = now;
        eprintln!(
            "{}",
            stats_line(now.duration_since(self.started), rate, s, capture)
        );
    }
}

/// One line of running counters, e.g. for `--status-interval`.
fn stats_line(elapsed: Duration, rate: f64, s: &RunSummary, c: &CaptureStats) -> String {
    format!(
        "floodwatch: stats at {:.0} s: frames {} ({:.0}/s), packets {}, not decoded {}, kernel drops {}, pipeline drops {}",
        elapsed.as_secs_f64(),
        s.frames,
        rate,
        s.packets,
        s.decode.total(),
        c.kernel_drops,
        s.pipeline_drops
    )
}

/// Writes, in order, every pending event of an evaluation all shards have passed.
fn release<W: Write>(
    pending: &mut Vec<Pending>,
    upto: u64,
    out: &mut SinkOut<'_, W>,
) -> io::Result<()> {
    if pending.is_empty() || pending.iter().all(|e| e.seq() > upto) {
        return Ok(());
    }
    pending.sort_by_key(|e| e.order());
    let n = pending.partition_point(|e| e.seq() <= upto);
    for e in pending.drain(..n) {
        out.write(e)?;
    }
    Ok(())
}

/// The process's peak resident set size (VmHWM in /proc/self/status), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The end-of-run summary printed on stderr.
pub fn render_summary(s: &RunSummary) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let secs = s.elapsed.as_secs_f64();
    let _ = writeln!(
        o,
        "floodwatch summary{}",
        if s.interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(
        o,
        "  frames {}  packets {}  bytes {}  capture span {:.3} s",
        s.frames,
        s.packets,
        s.bytes,
        s.capture_seconds()
    );
    let _ = writeln!(
        o,
        "  {} {:.3} s: {:.0} packets/s ({:.2} M/s)",
        if s.live {
            "captured for"
        } else {
            "replayed in"
        },
        secs,
        s.frames_per_second(),
        s.frames_per_second() / 1e6
    );
    let skipped: Vec<String> = crate::decode::SkipReason::ALL
        .iter()
        .filter(|r| s.decode.by_reason[r.index()] > 0)
        .map(|r| format!("{} {}", r.name(), s.decode.by_reason[r.index()]))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(o, "  not decoded: {}", skipped.join(", "));
    }
    for (lt, n) in &s.decode.unsupported_link_types {
        let _ = writeln!(o, "  unsupported link type {lt}: {n} frames");
    }
    if s.live || s.capture.kernel_drops > 0 || s.pipeline_drops > 0 {
        let _ = writeln!(
            o,
            "  kernel drops {}  pipeline drops {} ({} batches)",
            s.capture.kernel_drops, s.pipeline_drops, s.pipeline_dropped_batches
        );
    }
    if s.capture.unknown_blocks > 0 {
        let _ = writeln!(
            o,
            "  pcapng blocks of unknown type skipped: {}",
            s.capture.unknown_blocks
        );
    }
    // every shard sees every packet and evaluates at the same times: the first one speaks for all
    let first = s.engine.first().copied().unwrap_or_default();
    if first.late_packets > 0 || first.time_jumps > 0 {
        let _ = writeln!(
            o,
            "  timestamps: late_packets {} (stepped back, counted at the latest time), \
             time_jumps {} (long silences crossed or restarts after a step back), evaluations {}",
            first.late_packets, first.time_jumps, first.evaluations
        );
    }
    let mut tables = [crate::table::TableStats::default(); 4];
    for e in &s.engine {
        for (t, x) in tables.iter_mut().zip(e.tables.iter()) {
            t.rejected += x.rejected;
            t.deferred += x.deferred;
            t.evicted += x.evicted;
            t.peak_len += x.peak_len;
        }
    }
    let keys: Vec<String> = Scope::ALL
        .iter()
        .map(|sc| {
            let t = &tables[sc.index()];
            let mut line = format!("{} {}", sc.name(), t.peak_len);
            if t.rejected > 0 {
                line += &format!(" ({} packets over the key cap)", t.rejected);
            }
            if t.evicted > 0 {
                line += &format!(" ({} idle keys evicted)", t.evicted);
            }
            line
        })
        .collect();
    let _ = writeln!(o, "  peak keys: {}", keys.join(", "));
    let (dh, ds) = (
        tables[Scope::SrcHost.index()].deferred,
        tables[Scope::SrcSubnet.index()].deferred,
    );
    if dh + ds > 0 {
        let _ = writeln!(
            o,
            "  packets not tracked by source (sources too small to matter, e.g. spoofed): src_host {dh}, src_subnet {ds}"
        );
    }
    if let Some(rss) = s.peak_rss {
        let _ = writeln!(o, "  peak memory {} MiB", rss.div_ceil(1 << 20));
    }
    if s.alerts.started.is_empty() {
        let _ = writeln!(o, "  alerts: none");
    } else {
        let by: Vec<String> = s
            .alerts
            .started
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(o, "  alerts started: {}", by.join(", "));
        for (scope, key, class, peak) in s.alerts.top_targets(5) {
            let _ = writeln!(o, "  target {scope} {key}: {class}, peak {peak:.0}/s");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_counts_evictions_and_rejections() {
        let mut e = EngineStats::default();
        e.tables[Scope::DstHost.index()].evicted = 7;
        e.tables[Scope::DstHost.index()].rejected = 3;
        let s = RunSummary {
            engine: vec![e],
            ..RunSummary::default()
        };
        let text = render_summary(&s);
        assert!(text.contains("7 idle keys evicted"), "{text}");
        assert!(text.contains("3 packets over the key cap"), "{text}");
    }

    use super::*;
    use crate::alert::OutputFormat;
    use crate::capture::file::FileSource;
    use crate::capture::RawFrame;
    use crate::synth::{self, Scenario, SynthOptions};

    /// A file source that, like a live one, reports itself idle: once at `idle_at` after its last
    /// frame, then ends.
    struct IdleAfter {
        inner: FileSource,
        idle_at: Option<u64>,
        last: Timestamp,
    }

    impl FrameSource for IdleAfter {
        fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
            self.inner.next_frame()
        }

        fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
            match self.inner.next_frame()? {
                Some(f) => {
                    self.last = f.ts;
                    Ok(SourceEvent::Frame(f))
                }
                None => Ok(match self.idle_at.take() {
                    Some(after) => SourceEvent::Idle {
                        now: self.last.saturating_add(after),
                    },
                    None => SourceEvent::End,
                }),
            }
        }

        fn stats(&self) -> CaptureStats {
            self.inner.stats()
        }
    }

    fn run_with_idle(threads: usize, idle_after_s: Option<u64>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("syn.pcap");
        let opts = SynthOptions {
            duration: Duration::from_secs(8),
            attack_start: Duration::from_secs(2),
            attack_duration: Duration::from_secs(3),
            attack_pps: 5_000,
            background_pps: 200,
            ..SynthOptions::default()
        };
        let file = std::fs::File::create(&path).unwrap();
        synth::write_pcap(Scenario::SynFlood, &opts, std::io::BufWriter::new(file)).unwrap();
        let mut source = IdleAfter {
            inner: FileSource::open(&path).unwrap(),
            idle_at: idle_after_s.map(|s| s * 1_000_000_000),
            last: Timestamp(0),
        };
        let detect = DetectConfig {
            hash_seed: 7,
            ..DetectConfig::default()
        };
        let pipe = PipelineConfig {
            threads,
            batch_size: 64,
            ..PipelineConfig::default()
        };
        let mut out = Vec::new();
        let stop = AtomicBool::new(false);
        let writer = EventWriter::new(&mut out, OutputFormat::Json);
        let outcome = run(&mut source, &detect, &pipe, writer, &stop).unwrap();
        assert!(outcome.capture_error.is_none());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_idle_tick_ends_alerts_the_same_way_on_every_shard() {
        let ended_by_input = run_with_idle(1, None);
        assert!(
            ended_by_input.contains(r#""reason":"end_of_input""#),
            "{ended_by_input}"
        );
        // Silence long past the hold-down: the tick ends the alert as traffic below threshold would.
        let one = run_with_idle(1, Some(30));
        assert!(one.contains(r#""event":"end""#), "{one}");
        assert!(one.contains(r#""reason":"below_threshold""#), "{one}");
        assert!(!one.contains("end_of_input"), "{one}");
        for threads in [2, 3] {
            assert_eq!(run_with_idle(threads, Some(30)), one, "threads {threads}");
        }
    }

    #[test]
    fn live_mode_drops_a_batch_for_every_shard_when_one_is_full() {
        let (tx_a, rx_a) = bounded::<ShardMsg>(1);
        let (tx_b, rx_b) = bounded::<ShardMsg>(4);
        let pipe = PipelineConfig {
            live: true,
            batch_size: 2,
            ..PipelineConfig::default()
        };
        let mut reader = Reader::new(&pipe, vec![tx_a, tx_b], None);
        let p = PacketSummary {
            ts: Timestamp(1),
            src: [192, 0, 2, 1].into(),
            dst: [198, 51, 100, 1].into(),
            proto: 6,
            sport: 1234,
            dport: 80,
            tcp_flags: 0x02,
            wire_len: 60,
            fragment: crate::decode::Fragment::default(),
        };
        for _ in 0..4 {
            reader.push(p);
        }
        // The first batch filled shard a's channel, the second was dropped for both shards.
        assert_eq!(reader.summary.pipeline_drops, 2);
        assert_eq!(reader.summary.pipeline_dropped_batches, 1);
        assert_eq!((rx_a.len(), rx_b.len()), (1, 1));
        // An idle tick is not queued behind a full channel either.
        reader.tick(Timestamp(1_000_000_000));
        assert_eq!((rx_a.len(), rx_b.len()), (1, 1));
    }
}
