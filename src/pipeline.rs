//! The pipeline: the only module that spawns threads or touches channels.
//!
//! ```text
//! caller's thread: source → decode → batches ──▶ shard 0..N (Engine) ──events──▶ sink thread ──▶ writer
//! ```
//! Every shard receives every batch (an `Arc`, no copy) and counts only the (scope, key)s it owns, so
//! each key lives in exactly one shard and every shard evaluates at the same packet times. The sink
//! holds events until every shard has passed their evaluation, then writes them in
//! [`AlertEvent::order_key`] order: the output is byte-identical whatever the thread count or batch
//! size. Channels are bounded; on replay a full channel makes the reader wait (back-pressure).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::alert::{AlertEvent, AttackClass, EndReason, EventKind, EventWriter};
use crate::baseline::{BaselineEntry, BaselineFile};
use crate::capture::{CaptureError, CaptureStats, FrameSource};
use crate::config::{ConfigError, DetectConfig};
use crate::decode::{DecodeStats, Decoder, PacketSummary};
use crate::detect::{admission_for, Engine, EngineStats, ShardSpec};
use crate::key::{Key, Scope};
use crate::population::PopulationExchange;
use crate::table::Admission;
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
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_size: 256,
            channel_batches: 64,
            realtime: false,
            load_baselines: None,
            save_baselines: false,
        }
    }
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
    pub events: u64,
    /// Peak rate per alerted (scope, key).
    pub peaks: BTreeMap<(Scope, Key), (AttackClass, f64)>,
}

impl AlertTally {
    fn count(&mut self, e: &AlertEvent) {
        self.events += 1;
        if e.event == EventKind::Start {
            *self.started.entry(e.class).or_default() += 1;
        }
        let p = self.peaks.entry((e.scope, e.key)).or_insert((e.class, 0.0));
        if e.peak_pps > p.1 {
            *p = (e.class, e.peak_pps);
        }
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

/// Packets on their way to the shards, with each one's source-admission tag (decided once, here, so
/// every shard and every thread count sees the same decisions).
#[derive(Debug, Default)]
struct Batch {
    packets: Vec<PacketSummary>,
    tags: Vec<u8>,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Batch {
            packets: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
        }
    }
}

/// A message from a shard to the sink.
struct ShardOut {
    shard: usize,
    events: Vec<AlertEvent>,
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
            let (tx, rx) = bounded::<Arc<Batch>>(pipe.channel_batches.max(1));
            batch_txs.push(tx);
            let out_tx = out_tx.clone();
            shard_handles.push(s.spawn(move || run_shard(i, engine, rx, out_tx, stop, save)));
        }
        drop(out_tx);
        let closed = &output_closed;
        let sink = s.spawn(move || run_sink(out_rx, threads, writer, stop, closed));

        let mut reader = Reader::new(pipe, batch_txs, admission_for(detect));
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

/// The reading side: frames → packet summaries → batches sent to every shard.
struct Reader {
    decoder: Decoder,
    admission: Admission,
    batch: Batch,
    batch_size: usize,
    txs: Vec<Sender<Arc<Batch>>>,
    summary: RunSummary,
    realtime: Option<(Instant, Timestamp)>,
    pace: bool,
}

impl Reader {
    fn new(pipe: &PipelineConfig, txs: Vec<Sender<Arc<Batch>>>, admission: Admission) -> Self {
        let batch_size = pipe.batch_size.clamp(1, 65_536);
        Reader {
            decoder: Decoder,
            admission,
            batch: Batch::with_capacity(batch_size),
            batch_size,
            txs,
            summary: RunSummary::default(),
            realtime: None,
            pace: pipe.realtime,
        }
    }

    /// Reads until the end, an error or `stop`; returns the error, if any.
    fn read_all(
        &mut self,
        source: &mut dyn FrameSource,
        stop: &AtomicBool,
    ) -> Option<CaptureError> {
        loop {
            if self.summary.frames % 1024 == 0 && stop.load(Ordering::Relaxed) {
                return None;
            }
            let frame = match source.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => return Some(e),
            };
            self.summary.frames += 1;
            match self
                .decoder
                .decode(frame.link, frame.data, frame.ts, frame.wire_len)
            {
                Ok(p) => self.push(p),
                Err(e) => self.summary.decode.record(&e),
            }
        }
    }

    #[inline]
    fn push(&mut self, p: PacketSummary) {
        let s = &mut self.summary;
        s.packets += 1;
        s.bytes += u64::from(p.wire_len);
        s.first_ts.get_or_insert(p.ts);
        s.last_ts = Some(s.last_ts.map_or(p.ts, |t| t.max(p.ts)));
        if self.pace {
            self.wait_for(p.ts);
        }
        self.batch.tags.push(self.admission.tag(p.src, p.ts));
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
            std::thread::sleep((due - now).min(Duration::from_secs(5)));
        }
    }

    fn flush(&mut self) {
        if self.batch.packets.is_empty() {
            return;
        }
        let batch = Arc::new(std::mem::replace(
            &mut self.batch,
            Batch::with_capacity(self.batch_size),
        ));
        for tx in &self.txs {
            // A closed shard means the run is stopping; its error surfaces from the join.
            let _ = tx.send(Arc::clone(&batch));
        }
    }

    fn finish(mut self, capture: CaptureStats) -> RunSummary {
        self.flush();
        self.txs.clear();
        self.summary.capture = capture;
        self.summary
    }
}

/// One counter shard: runs its engine over every batch and forwards events with its watermark.
fn run_shard(
    index: usize,
    mut engine: Engine,
    rx: Receiver<Arc<Batch>>,
    out: Sender<ShardOut>,
    stop: &AtomicBool,
    save: bool,
) -> (EngineStats, Vec<BaselineEntry>) {
    let mut events = Vec::new();
    let mut sent_watermark = 0;
    for batch in rx.iter() {
        for (p, tag) in batch.packets.iter().zip(batch.tags.iter()) {
            engine.on_tagged_packet(p, *tag, &mut events);
        }
        let w = engine.watermark();
        if !events.is_empty() || w != sent_watermark {
            sent_watermark = w;
            let msg = ShardOut {
                shard: index,
                events: std::mem::take(&mut events),
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
    let _ = out.send(ShardOut {
        shard: index,
        events,
        watermark: u64::MAX,
        stats: Some(stats),
    });
    let baselines = if save { engine.baselines() } else { Vec::new() };
    (stats, baselines)
}

/// The sink: orders events from all shards and writes them. Returns the tally and the write error
/// that stopped it, if any (a closed pipe is not an error: it sets `closed` and `stop`).
fn run_sink<W: Write>(
    rx: Receiver<ShardOut>,
    shards: usize,
    mut writer: EventWriter<W>,
    stop: &AtomicBool,
    closed: &AtomicBool,
) -> (AlertTally, Option<io::Error>) {
    let mut tally = AlertTally::default();
    let mut watermarks = vec![0u64; shards];
    let mut pending: Vec<AlertEvent> = Vec::new();
    let mut failed = None;
    for msg in rx.iter() {
        if failed.is_some() || closed.load(Ordering::Relaxed) {
            continue; // drain so shards never block
        }
        if let Some(w) = watermarks.get_mut(msg.shard) {
            *w = msg.watermark;
        }
        pending.extend(msg.events);
        let _ = msg.stats;
        let min = watermarks.iter().copied().min().unwrap_or(u64::MAX);
        if let Err(e) = release(&mut pending, min, &mut writer, &mut tally) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                closed.store(true, Ordering::Relaxed);
            } else {
                failed = Some(e);
            }
            stop.store(true, Ordering::Relaxed);
        }
    }
    if failed.is_none() && !closed.load(Ordering::Relaxed) {
        if let Err(e) = release(&mut pending, u64::MAX, &mut writer, &mut tally) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                closed.store(true, Ordering::Relaxed);
            } else {
                failed = Some(e);
            }
        }
    }
    (tally, failed)
}

/// Writes, in order, every pending event of an evaluation all shards have passed.
fn release<W: Write>(
    pending: &mut Vec<AlertEvent>,
    upto: u64,
    writer: &mut EventWriter<W>,
    tally: &mut AlertTally,
) -> io::Result<()> {
    if pending.is_empty() || pending.iter().all(|e| e.seq > upto) {
        return Ok(());
    }
    pending.sort_by_key(|e| e.order_key());
    let n = pending.partition_point(|e| e.seq <= upto);
    for e in pending.drain(..n) {
        tally.count(&e);
        writer.write_event(&e)?;
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
        "  replayed in {:.3} s: {:.0} packets/s ({:.2} M/s)",
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
    if s.capture.kernel_drops > 0 {
        let _ = writeln!(o, "  kernel drops {}", s.capture.kernel_drops);
    }
    let late: u64 = s.engine.first().map(|e| e.late_packets).unwrap_or(0);
    let jumps: u64 = s.engine.first().map(|e| e.time_jumps).unwrap_or(0);
    if late > 0 || jumps > 0 {
        let _ = writeln!(
            o,
            "  timestamps: {late} stepped back (counted at the latest time), {jumps} jumps skipped"
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
