//! The pipeline: the only module that spawns threads or touches channels.
//!
//! ```text
//!  caller's thread                         shard threads (N)                sink thread
//! ┌──────────────────────────────┐       ┌────────────────────┐          ┌──────────────────┐
//! │ reader: source → decode      │ work  │ shard 0: Engine    │  events  │ orders by        │
//! │   ↓ PacketSummary            │──────▶│ shard 1: Engine    │─────────▶│ evaluation, then │─▶ writer,
//! │ route: clock, keys → owners  │       │ …                  │ +watermk │ writes           │  hook, metrics
//! └──────────────────────────────┘       └────────────────────┘          └──────────────────┘
//! ```
//! - `reader`: reads frames, decodes them, paces `--realtime`, handles idle reports and stop.
//! - `route`: runs the stream's packet-time [`Clock`](crate::clock::Clock) and sends each packet
//!   only to the shards owning one of its (scope, key)s, with the clock's steps placed in every
//!   shard's stream at the same point, so all shards evaluate at the same packet times.
//! - `shard`: one [`Engine`] per shard, over what the router sends it.
//! - `sink`: holds events until every shard has passed their evaluation, then writes them in
//!   [`AlertEvent::order_key`](crate::alert::AlertEvent::order_key) order: the output is
//!   byte-identical whatever the thread count or batch size.
//! - `summary`: the counters of a run and the summary printed at the end.
//! - `evidence` (`--evidence-dir`): the reader copies the frames of keys the shards hold hot into
//!   batches for a thread of its own, which writes a pcap per alert as the sink tells it of starts
//!   and ends ([`crate::evidence_pcap`]).
//!
//! Channels are bounded; on replay a full channel makes the reader wait (back-pressure); on live
//! capture it never does (that would stall the kernel's ring): the packets are dropped for every
//! shard and counted, the clock's steps are kept. When a live source is idle, its clock steps travel
//! in-band through the same channels.

mod capture;
mod checkpoint;
mod decode;
mod evidence_tap;
pub mod ingest;
mod reader;
mod route;
mod shard;
mod sink;
mod summary;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::alert_output::EventWriter;
use crate::baseline::BaselineFile;
use crate::capture::{CaptureError, CaptureStats, FrameSource};
use crate::config::{ConfigError, DetectConfig};
use crate::detect::{Engine, ShardSpec};
use crate::evidence_pcap::{EvidenceConfig, EvidenceCounters, FrameBatch, Notice, Recorder};
use crate::hook::AlertHook;
use crate::metrics::Metrics;
use crate::population::PopulationExchange;
use crate::state::SnapshotEntry;
use crate::threads::spawn_named;
use crate::time::Timestamp;

pub use checkpoint::{CheckpointClock, CheckpointConfig, CheckpointTally};
use evidence_tap::{EvidenceShared, EvidenceTap, EvidenceWatch, ShardEvidence, SinkEvidence};
use reader::Reader;
use route::{Progress, Router, ShardMsg};
use shard::{run_shard, ShardObserve, ShardOut};
use sink::{run_sink, SinkFeeds};
pub use summary::{render_summary, AlertTally, EvidenceSummary, RunSummary, TelemetrySummary};

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
    /// With `realtime`: play this many times faster than captured (`--speed`; 1: capture speed).
    pub speed: f64,
    /// Baselines to start from (`--load-baseline`).
    pub load_baselines: Option<Arc<BaselineFile>>,
    /// Collect the learned baselines at the end (`--save-baseline`).
    pub save_baselines: bool,
    /// Live capture: never wait on a full channel (drop the batch and count it), and drain the
    /// source for a moment after a stop request.
    pub live: bool,
    /// Print a status line of counters on stderr this often (wall time).
    pub status_interval: Option<Duration>,
    /// Decode threads for [`Input::Pooled`] (0: decode on the reading thread).
    pub decode_threads: usize,
    /// The frames are telemetry (`floodwatch collect`): UDP datagrams of sFlow/NetFlow/IPFIX whose
    /// samples and records are the packets.
    pub telemetry: Option<CollectConfig>,
    /// `--state`: checkpoint the baselines to a file periodically, off the capture path.
    pub checkpoint: Option<CheckpointConfig>,
    /// Record what a report draws (`report`, `--record`): the input's traffic over time, every
    /// alert's events and its key's trace ([`RunOutcome::recording`]).
    pub record: bool,
    /// `--evidence-dir`: a pcap of each alert's packets (not with telemetry, which has no frames of
    /// the packets; replay reads on one thread, without the decode pool, when this is set).
    pub evidence: Option<EvidenceConfig>,
}

/// Telemetry settings of a run ([`PipelineConfig::telemetry`]).
#[derive(Clone, Debug)]
pub struct CollectConfig {
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Only datagrams to these UDP ports (all when empty).
    pub ports: Vec<u16>,
}

impl PartialEq for CollectConfig {
    fn eq(&self, other: &Self) -> bool {
        self.ports == other.ports
    }
}

/// Counter shards by default: one core fewer than the machine has (the reader needs one to itself),
/// at least one (docs/performance.md).
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
            speed: 1.0,
            load_baselines: None,
            save_baselines: false,
            live: false,
            status_interval: None,
            decode_threads: 0,
            telemetry: None,
            checkpoint: None,
            record: false,
            evidence: None,
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
    /// SIGHUP: configurations to switch to while running.
    pub reload: Option<&'a crate::reload::ReloadSlot>,
    /// `--report-dir`: a report page per alert when it ends (the engines record traces).
    pub reports: Option<&'a crate::report::live::AlertReports>,
    /// `--exabgp-pipe`: every alert event written is also handed to the BGP announcer.
    pub bgp: Option<&'a crate::mitigation::bgp::Announcer>,
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
    pub baselines: Vec<SnapshotEntry>,
    /// With [`PipelineConfig::checkpoint`]: the checkpoints written during the run.
    pub checkpoints: Option<CheckpointTally>,
    /// With [`PipelineConfig::record`]: what a report draws (its `inputs` left for the caller).
    pub recording: Option<crate::report::Recording>,
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
    run_input(
        Input::One(source),
        detect,
        pipe,
        writer,
        stop,
        Integrations::default(),
    )
}

/// What the pipeline reads.
pub enum Input<'s> {
    /// One source, read on the caller's thread.
    One(&'s mut dyn FrameSource),
    /// One source (files) read by a thread of its own that only copies frames out, decoded by
    /// [`PipelineConfig::decode_threads`] threads, routed on the caller's thread in reading order
    /// (the output is the same as [`Input::One`]'s). With no decode threads, the same as
    /// [`Input::One`].
    Pooled(&'s mut (dyn FrameSource + Send)),
    /// Several live sources read by one capture thread each (e.g. the sockets of one AF_PACKET
    /// fanout group), merged into one stream before routing. The stream's order across sources is
    /// the order batches arrive in, so unlike a replay the output depends on timing.
    Many(Vec<Box<dyn FrameSource + Send>>),
}

/// [`run`] over any [`Input`], also publishing metrics, feeding the alert hook and writing `stats`
/// events as `integ` asks.
pub fn run_input<W: Write + Send>(
    input: Input<'_>,
    detect: &DetectConfig,
    pipe: &PipelineConfig,
    writer: EventWriter<W>,
    stop: &AtomicBool,
    integ: Integrations<'_>,
) -> Result<RunOutcome, PipelineError> {
    let threads = pipe.threads.max(1);
    let traces = pipe.record || integ.reports.is_some();
    let engines = shard_engines(detect, pipe, threads, traces)?;
    let save = pipe.save_baselines;
    let started = Instant::now();
    let output_closed = AtomicBool::new(false);
    let (out_tx, out_rx) = bounded::<ShardOut>(threads * pipe.channel_batches.max(1));
    let evidence = EvidenceSetup::new(pipe);
    if let (Some(ev), Some(m)) = (&evidence, integ.metrics) {
        m.attach_evidence(Arc::clone(&ev.shared.counters));
    }

    let in_flight = Arc::new(AtomicBool::new(false));
    // with evidence, the router waits for the shards at every tick
    let progress = evidence.as_ref().map(|_| Arc::new(Progress::new(threads)));
    let buffers = checkpoint::SnapshotBuffers::new(threads);
    // (the evidence recorder's and the pool's reading side's ends)
    let (mut summary, capture_error, sink_result, shard_stats, checkpoints, ends) =
        std::thread::scope(|s| {
            // one slot per shard: a checkpoint is not requested before the last one was taken whole
            let (ckpt_tx, ckpt_writer) = match &pipe.checkpoint {
                Some(cfg) => {
                    let (tx, rx) = bounded::<checkpoint::ShardSnapshot>(threads);
                    let flag = &*in_flight;
                    let metrics = integ.metrics;
                    let bufs = &buffers;
                    let h = spawn_named(s, "fw-checkpoint".into(), move || {
                        checkpoint::run_writer(rx, threads, cfg, flag, bufs, metrics)
                    });
                    (Some(tx), Some(h))
                }
                None => (None, None),
            };
            let ev = evidence.as_ref();
            // starts and ends, from the shards (early) and the sink (with the file names)
            let (notice_tx, notice_rx) = bounded::<Notice>(evidence_tap::NOTICE_CAPACITY);
            let mut work_txs = Vec::with_capacity(threads);
            let mut shard_handles = Vec::with_capacity(threads);
            for (i, engine) in engines.into_iter().enumerate() {
                let (tx, rx) = bounded::<ShardMsg>(pipe.channel_batches.max(1));
                work_txs.push(tx);
                let out_tx = out_tx.clone();
                let observe = ShardObserve {
                    metrics: integ.metrics,
                    save,
                    evidence: ev.map(|e| ShardEvidence::new(&e.shared, notice_tx.clone())),
                    progress: progress.as_deref(),
                };
                let ckpt = ckpt_tx.clone().map(|tx| (tx, &buffers));
                shard_handles.push(spawn_named(s, format!("fw-shard-{i}"), move || {
                    run_shard(i, engine, rx, out_tx, stop, observe, ckpt)
                }));
            }
            drop(out_tx);
            drop(ckpt_tx);
            let (recorder_handle, sink_evidence, mut frame_tx) = match ev {
                Some(e) => {
                    let (frame_tx, frame_rx) = bounded::<FrameBatch>(evidence_tap::CHANNEL_BATCHES);
                    let recorder = Recorder::new(
                        e.cfg.clone(),
                        e.slack,
                        detect,
                        Arc::clone(&e.shared.counters),
                    );
                    let spare_tx = e.spare.0.clone();
                    let handle = spawn_named(s, "fw-evidence".into(), move || {
                        evidence_tap::run_evidence(
                            recorder, frame_rx, spare_tx, notice_rx, &e.shared,
                        )
                    });
                    let sink_ev =
                        SinkEvidence::new(e.cfg.dir.clone(), &e.shared, notice_tx.clone());
                    (Some(handle), Some(sink_ev), Some(frame_tx))
                }
                None => (None, None, None),
            };
            // the notice channel closes once the shards and the sink are done
            drop(notice_tx);
            let closed = &output_closed;
            let feeds = SinkFeeds {
                evidence: sink_evidence,
                record: pipe.record,
            };
            let sink = spawn_named(s, "fw-sink".into(), move || {
                run_sink(out_rx, threads, writer, stop, closed, integ, feeds)
            });
            // one tap per reading thread; the evidence thread ends once every tap is gone
            let tap = |tx: &Option<crossbeam_channel::Sender<FrameBatch>>| {
                let (e, tx) = (ev?, tx.as_ref()?);
                Some(EvidenceTap::new(
                    &e.shared,
                    detect,
                    e.lookback,
                    e.cfg.before + e.slack,
                    tx.clone(),
                    e.spare.1.clone(),
                ))
            };

            let stats_every = integ.stats_interval.map(|d| (d.as_nanos() as u64).max(1));
            let trigger = pipe
                .checkpoint
                .as_ref()
                .map(|c| checkpoint::CheckpointTrigger::new(c, Arc::clone(&in_flight)));
            let router = Router::new(detect, work_txs, pipe.live, stats_every)
                .with_checkpoints(trigger)
                .with_progress(progress.clone());
            let mut reading_result = Ok(());
            let (summary, capture_error, last_tap) = match input {
                Input::One(source) => {
                    let mut reader = Reader::new(pipe, router, integ.metrics)
                        .with_reload(integ.reload)
                        .with_recording(pipe.record)
                        .with_tap(tap(&frame_tx));
                    let capture_error = reader.read_all(source, stop);
                    let tap = reader.take_tap();
                    (reader.finish(source.stats()), capture_error, tap)
                }
                Input::Pooled(source)
                    if pipe.decode_threads > 0
                        && !pipe.live
                        && pipe.telemetry.is_none()
                        && ev.is_none() =>
                {
                    let mut reader =
                        Reader::new(pipe, router, integ.metrics).with_recording(pipe.record);
                    let (mut chunks, reading) = decode::spawn(s, source, pipe.decode_threads, stop);
                    let capture_error = reader.read_decoded(&mut chunks, stop);
                    drop(chunks);
                    // a panic of the pool's reading (and, with one thread, decoding) side ends
                    // the run as a failure, not as an input that ended early
                    let capture = reading.join().unwrap_or_else(|_| {
                        reading_result = Err(PipelineError::Panicked);
                        CaptureStats::default()
                    });
                    (reader.finish(capture), capture_error, None)
                }
                Input::Pooled(source) => {
                    let mut reader = Reader::new(pipe, router, integ.metrics)
                        .with_recording(pipe.record)
                        .with_tap(tap(&frame_tx));
                    let capture_error = reader.read_all(source, stop);
                    let tap = reader.take_tap();
                    (reader.finish(source.stats()), capture_error, tap)
                }
                Input::Many(sources) => {
                    let taps = (0..sources.len())
                        .map(|i| tap(&frame_tx).map(|t| t.stream(i as u16)))
                        .collect();
                    read_many(s, sources, taps, router, pipe, stop, integ)
                }
            };
            frame_tx.take();

            let mut shard_stats = Vec::new();
            for h in shard_handles {
                shard_stats.push(h.join().map_err(|_| PipelineError::Panicked));
            }
            // the shards have told their last alerts: the tap looks back for their keys
            if let Some(t) = last_tap {
                t.finish();
            }
            let sink_result = sink.join().map_err(|_| PipelineError::Panicked);
            let tally = ckpt_writer.map(|h| h.join().unwrap_or_default());
            let evidence_result = match recorder_handle {
                Some(h) => h.join().map_err(|_| PipelineError::Panicked),
                None => Ok(()),
            };
            (
                summary,
                capture_error,
                sink_result,
                shard_stats,
                tally,
                [evidence_result, reading_result],
            )
        });
    let mut baselines = Vec::new();
    for st in shard_stats {
        let (stats, b) = st?;
        summary.engine.push(stats);
        baselines.extend(b);
    }
    let (tally, write_error, recorder) = sink_result?;
    for end in ends {
        end?;
    }
    summary.alerts = tally;
    summary.evidence = evidence.map(|e| EvidenceSummary {
        dir: e.cfg.dir.clone(),
        stats: e.shared.counters.snapshot(),
    });
    summary.elapsed = started.elapsed();
    summary.peak_rss = peak_rss();
    summary.cpu = cpu_time();
    summary.output_closed = output_closed.load(Ordering::Relaxed);
    summary.interrupted = stop.load(Ordering::Relaxed) && !summary.output_closed;
    if let Some(e) = write_error {
        return Err(PipelineError::Output(e));
    }
    let recording = recorder.map(|r| {
        let input = summary.recorded.take().unwrap_or_default();
        let mut rec = r.finish(summary.report_totals(), input.traffic);
        rec.distinct_sources = input.distinct_sources;
        rec.stopped = capture_error.as_ref().map(|e| e.to_string());
        rec
    });
    Ok(RunOutcome {
        summary,
        capture_error,
        baselines,
        checkpoints,
        recording,
    })
}

/// Runs `produce` on the caller's thread with the sink on a thread of its own: every batch of
/// events `produce` hands its callback (in order) is written as a replay writes them, feeding the
/// tally, metrics and hook. The callback returns false once the output is gone. For a detector
/// node, whose events come from the bus rather than from counter shards.
pub fn run_events<W: Write + Send, R>(
    writer: EventWriter<W>,
    stop: &AtomicBool,
    integ: Integrations<'_>,
    produce: impl FnOnce(&mut dyn FnMut(Vec<crate::alert::AlertEvent>) -> bool) -> R,
) -> Result<(R, AlertTally, bool), PipelineError> {
    let closed = AtomicBool::new(false);
    let (r, sink) = std::thread::scope(|s| {
        let (tx, rx) = bounded::<ShardOut>(64);
        let closed_ref = &closed;
        let feeds = SinkFeeds {
            evidence: None,
            record: false,
        };
        let sink = spawn_named(s, "fw-sink".into(), move || {
            run_sink(rx, 1, writer, stop, closed_ref, integ, feeds)
        });
        let mut emit = |events: Vec<crate::alert::AlertEvent>| {
            tx.send(ShardOut {
                shard: 0,
                events,
                marks: Vec::new(),
                watermark: u64::MAX,
            })
            .is_ok()
                && !closed_ref.load(Ordering::Relaxed)
        };
        let r = produce(&mut emit);
        drop(tx);
        (r, sink.join().map_err(|_| PipelineError::Panicked))
    });
    let (tally, write_error, _) = sink?;
    if let Some(e) = write_error {
        return Err(PipelineError::Output(e));
    }
    Ok((r, tally, closed.load(Ordering::Relaxed)))
}

/// Frames the reader keeps to look back over, at least (`--evidence-dir`).
const LOOKBACK_FRAMES: usize = 65_536;

/// What a run with `--evidence-dir` sets up before its threads start.
struct EvidenceSetup {
    cfg: EvidenceConfig,
    shared: EvidenceShared,
    /// How far (in packets) the reader may run ahead of the shard that tells an alert's start (a
    /// shard's channel and the router's batch, with a batch to spare): besides N frames before
    /// the start, a key's ring holds this many after it. (The sink may be much further behind;
    /// the recorder picks the frames without it.)
    slack: usize,
    /// Frames the reader keeps to look back over when a key goes into alert: at least N + slack
    /// (so a key that is most of the traffic has all its N frames there), and more for keys that
    /// are a smaller share of it.
    lookback: usize,
    /// Batches the evidence thread hands back to the readers for reuse.
    spare: (
        crossbeam_channel::Sender<FrameBatch>,
        crossbeam_channel::Receiver<FrameBatch>,
    ),
}

impl EvidenceSetup {
    fn new(pipe: &PipelineConfig) -> Option<EvidenceSetup> {
        let cfg = pipe.evidence.clone().filter(|_| pipe.telemetry.is_none())?;
        let per_channel = pipe.channel_batches.max(1) * pipe.batch_size.max(1);
        Some(EvidenceSetup {
            shared: EvidenceShared {
                watch: EvidenceWatch::default(),
                counters: Arc::new(EvidenceCounters::new(cfg.max_bytes)),
            },
            slack: per_channel + 2 * pipe.batch_size.max(1),
            lookback: (cfg.before + per_channel + 2 * pipe.batch_size.max(1)).max(LOOKBACK_FRAMES),
            spare: bounded(evidence_tap::CHANNEL_BATCHES),
            cfg,
        })
    }
}

/// Reads `sources` on one capture thread each: the first on this thread, which routes its own
/// packets into `router` and, between them, the other threads' batches; returns the summary of
/// them all, the first capture error and the first thread's tap (finished once the shards are
/// done, as one thread's is, so its look-back sees their last hot keys).
fn read_many<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    sources: Vec<Box<dyn FrameSource + Send>>,
    taps: Vec<Option<EvidenceTap<'env>>>,
    router: Router,
    pipe: &'env PipelineConfig,
    stop: &'env AtomicBool,
    integ: Integrations<'env>,
) -> (RunSummary, Option<CaptureError>, Option<EvidenceTap<'env>>) {
    let metrics = integ.metrics;
    let workers = sources.len();
    // room for what the others read while the first waits out a block timeout on a quiet socket
    // of its own (10 ms at 10 M packets/s is ~400 batches of 256): batches are allocated only
    // while they are in flight
    let capacity = pipe.channel_batches.max(1) * workers.max(1) * 4;
    let (tx, rx) = bounded::<capture::CaptureMsg>(capacity);
    let mut sources = sources.into_iter();
    let mut taps = taps.into_iter();
    let (first, first_tap) = (sources.next(), taps.next().flatten());
    let losses = Arc::new(capture::PeerLosses::default());
    let handles: Vec<_> = sources
        .zip(taps)
        .enumerate()
        .map(|(i, (mut source, tap))| {
            let down = capture::CaptureTx::new(i + 1, tx.clone(), pipe.batch_size);
            let losses = Arc::clone(&losses);
            spawn_named(scope, format!("fw-capture-{}", i + 1), move || {
                let mut reader = Reader::new(pipe, down, metrics)
                    .without_status_line(losses)
                    .with_tap(tap);
                let error = reader.read_all(source.as_mut(), stop);
                (reader.finish(source.stats()), error)
            })
        })
        .collect();
    drop(tx);
    let mut reader = Reader::new(pipe, router, metrics)
        .with_reload(integ.reload)
        .with_recording(pipe.record)
        .with_tap(first_tap)
        .with_peers(capture::Peers::new(rx, workers, losses));
    let (mut error, own_capture) = match first {
        Some(mut source) => {
            let error = reader.read_all(source.as_mut(), stop);
            (error, source.stats())
        }
        None => (None, CaptureStats::default()),
    };
    let peer_frames = reader
        .take_peers()
        .map_or(0, |peers| peers.route_the_rest(&mut reader, own_capture));
    let mut parts = Vec::new();
    for h in handles {
        match h.join() {
            Ok((part, e)) => {
                error = error.or(e);
                parts.push(part);
            }
            Err(_) => {
                error = error.or(Some(CaptureError::Setup {
                    iface: "capture thread".to_string(),
                    detail: "a capture thread panicked (a bug: please report it)".to_string(),
                }))
            }
        }
    }
    let tap = reader.take_tap();
    // finished with its own socket's counters (each thread publishes its own to the metrics)
    let mut summary = reader.finish(own_capture);
    // this thread's own frames, then the others'
    summary.frames -= peer_frames.min(summary.frames);
    summary.frames_per_capture_thread.push(summary.frames);
    for part in &parts {
        summary.capture.add(&part.capture);
        summary.frames += part.frames;
        summary.frames_per_capture_thread.push(part.frames);
        summary.decode.merge(&part.decode);
        summary.pipeline_drops += part.pipeline_drops;
        summary.pipeline_dropped_batches += part.pipeline_dropped_batches;
    }
    (summary, error, tap)
}

/// One engine per shard, sharing scope populations and starting from the loaded baselines.
fn shard_engines(
    detect: &DetectConfig,
    pipe: &PipelineConfig,
    threads: usize,
    traces: bool,
) -> Result<Vec<Engine>, PipelineError> {
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
    for e in &mut engines {
        e.record_traces(traces);
    }
    if let Some(file) = &pipe.load_baselines {
        for e in &mut engines {
            e.load_baselines(&file.entries);
        }
    }
    Ok(engines)
}

/// A duration as a person writes it: `5m`, `90s`, `1.5s`, `250ms`.
pub fn describe_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// The wall clock as packet time (live capture stamps frames with it).
fn wall_clock() -> Timestamp {
    Timestamp::now()
}

/// The CPU time the process has used so far: (user, system).
pub fn cpu_time() -> Option<(Duration, Duration)> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Some((d(u.user_time()), d(u.system_time())))
}

/// The process's peak resident set size (VmHWM in /proc/self/status), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert_output::OutputFormat;
    use crate::capture::file::FileSource;
    use crate::capture::{CaptureStats, RawFrame, SourceEvent};
    use crate::clock::TimeStep;
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
        synth::write_pcap_file(Scenario::SynFlood, &opts, &path);
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
    fn live_mode_drops_aggregates_for_every_shard_when_one_is_full_but_keeps_time() {
        // room for the clock's start and one tick
        let (tx_a, rx_a) = bounded::<ShardMsg>(2);
        let (tx_b, rx_b) = bounded::<ShardMsg>(4);
        let detect = DetectConfig::default();
        let router = Router::new(&detect, vec![tx_a, tx_b], true, None);
        let pipe = PipelineConfig {
            live: true,
            ..PipelineConfig::default()
        };
        let mut reader = Reader::new(&pipe, router, None);
        let p = |ts: u64| crate::decode::PacketSummary {
            ts: Timestamp(ts),
            src: [192, 0, 2, 1].into(),
            dst: [198, 51, 100, 1].into(),
            proto: 6,
            sport: 1234,
            dport: 80,
            tcp_flags: 0x02,
            tcp_num: 0,
            wire_len: 60,
            fragment: crate::decode::Fragment::default(),
            weight: 1,
            hdr: crate::decode::HeaderFields::UNKNOWN,
        };
        const MS: u64 = 1_000_000;
        let t0 = 1_000 * MS;
        // a tick of 3 packets: it leaves, with the clock's steps, when the next tick begins
        for i in 0..3 {
            reader.push(&p(t0 + i));
        }
        reader.push(&p(t0 + 150 * MS));
        let stats = reader.router.stats();
        assert_eq!((stats.dropped, rx_a.len(), rx_b.len()), (0, 2, 2));
        // shard a's channel is full: the next tick's 3 packets are lost for both shards, counted
        reader.push(&p(t0 + 160 * MS));
        reader.push(&p(t0 + 170 * MS));
        reader.push(&p(t0 + 250 * MS));
        let stats = reader.router.stats();
        assert_eq!((stats.dropped, stats.dropped_batches), (3, 1));
        assert_eq!((rx_a.len(), rx_b.len()), (2, 2));
        let counted = |w: &route::ShardWork| -> u64 {
            w.items
                .iter()
                .map(|i| match i {
                    route::Item::Counts(t) => t.packets,
                    route::Item::Step(_) => 0,
                })
                .sum()
        };
        let mut got = Vec::new();
        while let Ok(ShardMsg::Work(w)) = rx_b.try_recv() {
            got.push(counted(&w));
        }
        assert_eq!(got, [0, 3], "shard b: the start, then the first tick");
        // the clock's steps were not lost with the packets: they go out with the next flush
        let mut evaluations = 0;
        let mut evaluate = |rx: &crossbeam_channel::Receiver<ShardMsg>| {
            while let Ok(ShardMsg::Work(w)) = rx.try_recv() {
                evaluations += w
                    .items
                    .iter()
                    .filter(|i| matches!(i, route::Item::Step(TimeStep::Evaluate(_))))
                    .count();
            }
        };
        evaluate(&rx_a);
        reader.tick(Timestamp(t0 + 2_000 * MS));
        evaluate(&rx_a);
        assert!(
            evaluations >= 19,
            "shard a got {evaluations} evaluations for 2 s of ticks"
        );
    }
}
