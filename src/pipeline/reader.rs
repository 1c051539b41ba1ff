//! The reading stage: frames from the source → packet summaries → the [`Router`] (or, for one of
//! several capture threads, a channel to it: [`Downstream`]). Also paces
//! `--realtime` replays, reports counters to the metrics, prints the `--status-interval` line, and
//! decides when a stop request has been honoured (at once on replay; on live capture once the source,
//! idle, vouches that what arrived before the request was read).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::capture::{PeerLosses, Peers};
use super::evidence_tap::EvidenceTap;
use super::route::{RouteStats, Router};
use super::summary::RunSummary;
use super::{wall_clock, PipelineConfig};
use crate::capture::RawFrame;
use crate::capture::{CaptureError, CaptureStats, FrameSource, SourceEvent};
use crate::decode::{Decoder, PacketSummary};
use crate::metrics::{InputCounts, Metrics};
use crate::telemetry::{Datagram, Telemetry};
use crate::time::Timestamp;

/// On an idle report, held packets are handed over once the oldest is this old (ns).
const IDLE_FLUSH_AGE: u64 = 20_000_000;
/// Idle clock ticks are at least this far apart in packet time (ns).
const IDLE_TICK_SPACING: u64 = 10_000_000;

/// After a stop request, a live source is drained until it is idle, for at most this long.
const LIVE_DRAIN: Duration = Duration::from_secs(1);

/// Frames between two publications of the reader's counters.
const PUBLISH_EVERY_FRAMES: u64 = 4096;
/// Frames a file hands over per call ([`Reader::read_all`]); divides [`PUBLISH_EVERY_FRAMES`].
const BATCH: usize = 1024;

/// Where the reader hands its packets: the router itself, or a capture thread's channel to it.
pub(super) trait Downstream {
    /// Takes one packet.
    fn push(&mut self, p: &PacketSummary);
    /// Takes one packet that carries a request head (what it asked for).
    fn push_head(&mut self, p: &PacketSummary, head: crate::requests::RequestHead);
    /// The source is idle at `now`: nothing older is still to come.
    fn idle(&mut self, now: Timestamp);
    /// Hands over what is held.
    fn flush(&mut self);
    /// The time of the oldest packet held back, if any.
    fn oldest_held(&self) -> Option<Timestamp>;
    /// Whether anything waits to be handed over.
    fn holds_work(&self) -> bool;
    /// Counters so far (drops are what the reader reports).
    fn stats(&self) -> RouteStats;
    /// Hands over everything and ends.
    fn finish(self) -> RouteStats;
    /// Runs on `cfg` from here on (only the router acts on it).
    fn reconfigure(&mut self, cfg: crate::config::DetectConfig);
    /// Evaluations the stream's clock has stepped through so far, when this side runs it.
    fn evaluations(&self) -> Option<u64> {
        None
    }
    /// Whether [`Downstream::prefetch`] does anything (the reader then holds a few packets).
    fn prefetches(&self) -> bool {
        false
    }
    /// `p` is pushed a few packets from now: start loading the memory that will read.
    fn prefetch(&self, _p: &PacketSummary) {}
}

/// Packets decoded ahead of routing ([`Reader::frame_ahead`]): enough that the prefetched
/// admission counters of a spoofed source have arrived from memory when its packet is routed
/// (live capture: a wake-up finds them far from the core).
const LEAD: usize = 8;

/// Summaries decoded, not yet routed: a ring of [`LEAD`].
#[derive(Default)]
struct Ahead {
    ring: [PacketSummary; LEAD],
    /// The slot the next frame is decoded into.
    next: usize,
    /// Packets held, the oldest at `next - held`.
    held: usize,
}

impl Downstream for Router {
    #[inline]
    fn push(&mut self, p: &PacketSummary) {
        Router::push(self, p)
    }
    fn push_head(&mut self, p: &PacketSummary, head: crate::requests::RequestHead) {
        Router::push_head(self, p, head)
    }
    fn idle(&mut self, now: Timestamp) {
        Router::idle(self, now)
    }
    fn flush(&mut self) {
        Router::flush(self)
    }
    fn oldest_held(&self) -> Option<Timestamp> {
        Router::oldest_held(self)
    }
    fn holds_work(&self) -> bool {
        Router::holds_work(self)
    }
    fn stats(&self) -> RouteStats {
        Router::stats(self)
    }
    fn finish(self) -> RouteStats {
        Router::finish(self)
    }
    fn reconfigure(&mut self, cfg: crate::config::DetectConfig) {
        Router::reconfigure(self, cfg)
    }
    fn evaluations(&self) -> Option<u64> {
        Some(Router::evaluations(self))
    }
    fn prefetches(&self) -> bool {
        true
    }
    #[inline]
    fn prefetch(&self, p: &PacketSummary) {
        Router::prefetch(self, p)
    }
}

/// The reading side.
pub(super) struct Reader<'m, D: Downstream> {
    decoder: Decoder,
    pub router: D,
    pub summary: RunSummary,
    realtime: Option<(Instant, Timestamp)>,
    pace: bool,
    /// `--speed`: packet time runs this many times faster than wall time when pacing.
    speed: f64,
    metrics: Option<&'m Metrics>,
    /// Counted since the last publication to `metrics`.
    counts: InputCounts,
    live: bool,
    /// Latest idle tick sent.
    last_tick: Timestamp,
    /// When the stop request was seen, monotonic and as packet time (live: the drain runs from here).
    stopping: Option<(Instant, Timestamp)>,
    stats: Option<StatsLine>,
    /// Pipeline drops already published to the metrics.
    published_drops: u64,
    /// Kernel drops already published to the metrics.
    published_kernel: u64,
    /// `floodwatch collect`: frames are telemetry datagrams.
    telemetry: Option<Box<TelemetryReader>>,
    /// `report` / `--record`: the input's traffic over time and its distinct sources.
    recording: Option<Box<InputRecorder>>,
    /// SIGHUP reloads to apply.
    reload: Option<&'m crate::reload::ReloadSlot>,
    /// `--evidence-dir`: copies the frames of watched keys for the evidence thread.
    tap: Option<EvidenceTap<'m>>,
    /// The first of several capture threads: the others' batches, routed here between frames.
    peers: Option<Box<Peers>>,
    /// Several capture threads: the others' losses, which the first one's status line shows and
    /// each of the others adds to as it publishes.
    peer_losses: Option<(Arc<PeerLosses>, LossRole)>,
}

/// What a capture thread among several does with [`Reader::peer_losses`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LossRole {
    /// The first thread: shows them with its own.
    Shows,
    /// Another thread: adds its own to them.
    Adds,
}

/// What the reader records for a report.
struct InputRecorder {
    traffic: crate::report::TrafficSeries,
    sources: crate::attribution::Hll,
}

/// The telemetry stage as the reader runs it.
struct TelemetryReader {
    stage: Telemetry,
    ports: Vec<u16>,
    /// Summaries of the datagram at hand.
    scratch: Vec<PacketSummary>,
    not_udp: u64,
    other_port: u64,
}

impl<'m, D: Downstream> Reader<'m, D> {
    pub fn new(pipe: &PipelineConfig, router: D, metrics: Option<&'m Metrics>) -> Self {
        Reader {
            decoder: Decoder,
            router,
            summary: RunSummary {
                live: pipe.live,
                ..RunSummary::default()
            },
            realtime: None,
            pace: pipe.realtime,
            speed: if pipe.speed.is_finite() && pipe.speed > 0.0 {
                pipe.speed
            } else {
                1.0
            },
            metrics,
            counts: InputCounts::default(),
            live: pipe.live,
            last_tick: Timestamp(0),
            stopping: None,
            stats: pipe.status_interval.map(StatsLine::new),
            published_drops: 0,
            published_kernel: 0,
            telemetry: pipe.telemetry.as_ref().map(|c| {
                Box::new(TelemetryReader {
                    stage: Telemetry::new(c.telemetry.clone()),
                    ports: c.ports.clone(),
                    scratch: Vec::new(),
                    not_udp: 0,
                    other_port: 0,
                })
            }),
            recording: None,
            reload: None,
            tap: None,
            peers: None,
            peer_losses: None,
        }
    }

    /// Routes the batches of the other capture threads too (the first of several capture threads,
    /// whose own packets are routed here directly): between frames, and whenever its own socket
    /// is idle. The clock moves to the time every capture thread has vouched for.
    pub fn with_peers(mut self, peers: Peers) -> Self {
        self.peer_losses = Some((peers.losses(), LossRole::Shows));
        self.peers = Some(Box::new(peers));
        self
    }

    /// Takes the other capture threads' channel back (to route the rest once this thread's own
    /// source has ended).
    pub fn take_peers(&mut self) -> Option<Peers> {
        self.peers.take().map(|p| *p)
    }

    /// Routes what the other capture threads have sent so far.
    fn drain_peers(&mut self) {
        if let Some(mut peers) = self.peers.take() {
            peers.drain(self);
            self.peers = Some(peers);
        }
    }

    /// Applies the configurations `slot` offers (SIGHUP reloads).
    pub fn with_reload(mut self, slot: Option<&'m crate::reload::ReloadSlot>) -> Self {
        self.reload = slot;
        self
    }

    /// Switches to a reloaded configuration, if one is waiting.
    pub fn poll_reload(&mut self) {
        if let Some(cfg) = self.reload.and_then(|r| r.take()) {
            self.router.reconfigure(cfg);
        }
    }

    /// Records the input's traffic over time and its distinct sources (the reader that routes;
    /// `report`, `--record`).
    pub fn with_recording(mut self, on: bool) -> Self {
        self.recording = on.then(|| {
            Box::new(InputRecorder {
                traffic: crate::report::TrafficSeries::new(
                    crate::report::series::TRAFFIC_MAX_POINTS,
                ),
                sources: crate::attribution::Hll::new(),
            })
        });
        self
    }

    /// Copies the frames of watched keys with `tap` (`--evidence-dir`).
    pub fn with_tap(mut self, tap: Option<EvidenceTap<'m>>) -> Self {
        self.tap = tap;
        self
    }

    /// Takes the tap back (to finish it once the shards are done, so their last hot keys are
    /// seen); [`Reader::finish`] finishes a tap still held.
    pub fn take_tap(&mut self) -> Option<EvidenceTap<'m>> {
        self.tap.take()
    }

    /// A frame of telemetry: the UDP datagram in it through the telemetry stage.
    fn telemetry_frame(&mut self, frame: RawFrame<'_>) {
        let Some(t) = self.telemetry.as_deref_mut() else {
            return;
        };
        match self.decoder.udp_datagram(frame.link, frame.data) {
            Ok(Some(d)) if t.ports.is_empty() || t.ports.contains(&d.dport) => {
                t.stage.datagram(
                    &Datagram {
                        ts: frame.ts,
                        exporter: d.src,
                        payload: d.payload,
                    },
                    &mut t.scratch,
                );
            }
            Ok(Some(_)) => t.other_port += 1,
            Ok(None) => t.not_udp += 1,
            Err(e) => {
                self.summary.decode.record(&e);
                self.counts.not_decoded(&e);
            }
        }
        self.push_telemetry();
    }

    /// Routes what the telemetry stage made.
    fn push_telemetry(&mut self) {
        let Some(t) = self.telemetry.as_deref_mut() else {
            return;
        };
        let mut scratch = std::mem::take(&mut t.scratch);
        for p in &scratch {
            self.push(p);
        }
        scratch.clear();
        if let Some(t) = self.telemetry.as_deref_mut() {
            t.scratch = scratch;
        }
    }

    /// A capture thread among several other than the first: prints no `--status-interval` line
    /// (the first prints it for all) and adds what it loses to `losses`, which that line shows.
    pub fn without_status_line(mut self, losses: Arc<PeerLosses>) -> Self {
        self.stats = None;
        self.peer_losses = Some((losses, LossRole::Adds));
        self
    }

    /// Publishes what was counted since the last call: to the metrics, and to the first capture
    /// thread's status line from another.
    pub(super) fn publish(&mut self, capture: CaptureStats) {
        // deltas: several capture threads publish into the same counters
        let kernel = capture.kernel_drops - self.published_kernel.min(capture.kernel_drops);
        self.published_kernel = self.published_kernel.max(capture.kernel_drops);
        let dropped = self.router.stats().dropped;
        let pipeline = dropped - self.published_drops.min(dropped);
        self.published_drops = self.published_drops.max(dropped);
        if let Some((losses, LossRole::Adds)) = &self.peer_losses {
            losses.add(kernel, pipeline);
        }
        if let Some(m) = self.metrics {
            m.publish_input(&mut self.counts);
            m.add_kernel_drops(kernel);
            m.add_pipeline_drops(pipeline);
            if let Some(t) = &self.telemetry {
                let mut exporters = t.stage.exporters();
                let exporter_count = exporters.len();
                exporters.truncate(crate::metrics::MAX_EXPORTER_SERIES);
                m.set_telemetry(crate::metrics::TelemetrySnapshot {
                    stats: t.stage.stats().clone(),
                    exporters,
                    exporter_count,
                });
            }
        }
    }

    /// Reads until the end, an error or `stop`; returns the error, if any.
    pub fn read_all(
        &mut self,
        source: &mut dyn FrameSource,
        stop: &AtomicBool,
    ) -> Option<CaptureError> {
        if source.without_idle() && self.telemetry.is_none() {
            return self.read_batches(source, stop);
        }
        // live capture into the router reads a few packets ahead (not with the evidence tap,
        // which copies each frame as it is routed, while the frame is at hand)
        let ahead =
            self.live && self.telemetry.is_none() && self.tap.is_none() && self.router.prefetches();
        let mut ahead = ahead.then(Ahead::default);
        let end = self.read_events(source, stop, &mut ahead);
        if let Some(ahead) = &mut ahead {
            self.push_held(ahead);
        }
        end
    }

    /// [`Reader::read_all`] frame by frame, through `ahead` when given (live capture into the
    /// router: [`Reader::frame_ahead`]); what `ahead` holds at the end is the caller's to push.
    fn read_events(
        &mut self,
        source: &mut dyn FrameSource,
        stop: &AtomicBool,
        ahead: &mut Option<Ahead>,
    ) -> Option<CaptureError> {
        // every frame is decoded into this one summary (or into `ahead`)
        let mut p = PacketSummary::default();
        loop {
            if self.summary.frames.is_multiple_of(1024) {
                if let Some(ahead) = ahead {
                    // a reload or a stop applies after every packet read before it
                    self.push_held(ahead);
                }
                self.drain_peers();
                if self.should_stop(source, stop, None) {
                    return None;
                }
            }
            if self.summary.frames.is_multiple_of(PUBLISH_EVERY_FRAMES) {
                self.publish(source.stats());
            }
            match source.next_event() {
                Ok(SourceEvent::Frame(frame)) if self.telemetry.is_some() => {
                    self.summary.frames += 1;
                    self.counts.frames += 1;
                    self.telemetry_frame(frame);
                }
                Ok(SourceEvent::Frame(frame)) => match ahead {
                    Some(ahead) => self.frame_ahead(frame, ahead),
                    None => self.frame(frame, &mut p),
                },
                Ok(SourceEvent::Idle { now }) => {
                    if let Some(ahead) = ahead {
                        // nothing more has come: what is held is routed before the idle tick
                        self.push_held(ahead);
                    }
                    if let Some(t) = self.telemetry.as_deref_mut() {
                        t.stage.advance(now, &mut t.scratch);
                        self.push_telemetry();
                    }
                    // with other capture threads, the clock waits for all of them to vouch
                    // (what they sent so far routed first)
                    self.drain_peers();
                    let all = match self.peers.as_deref_mut() {
                        None => Some(now),
                        Some(peers) => peers.own_idle(now),
                    };
                    if let Some(all) = all {
                        self.tick(all);
                    }
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

    /// [`Reader::read_all`] of a file: frames [`BATCH`] at a time, each batch walked by the source
    /// in one loop. The stop request and the metrics are looked at between batches, at the same
    /// frame counts as frame by frame.
    fn read_batches(
        &mut self,
        source: &mut dyn FrameSource,
        stop: &AtomicBool,
    ) -> Option<CaptureError> {
        // every frame is decoded into this one summary
        let mut p = PacketSummary::default();
        loop {
            if self.should_stop(source, stop, None) {
                return None;
            }
            if self.summary.frames.is_multiple_of(PUBLISH_EVERY_FRAMES) {
                self.publish(source.stats());
            }
            match source.next_frames(BATCH, &mut |frame| self.frame(frame, &mut p)) {
                Ok(n) if n == BATCH => {}
                Ok(_) => return None,
                Err(e) => return Some(e),
            }
        }
    }

    /// [`Reader::frame`] a few packets ahead: the frame is decoded into `ahead`, the memory its
    /// routing will read is prefetched, and it is routed [`LEAD`] packets later, once that memory
    /// has arrived. A frame with a request head (which borrows the frame) is routed at once, after
    /// every packet held before it: the order never changes.
    #[inline]
    fn frame_ahead(&mut self, frame: RawFrame<'_>, ahead: &mut Ahead) {
        let slot = ahead.next;
        let Some(p) = ahead.ring.get_mut(slot) else {
            return;
        };
        if !self.decode(&frame, p) {
            return;
        }
        if let Some(head) = self.decoder.request_head(frame.link, frame.data, p) {
            let p = *p;
            self.push_held(ahead);
            self.hand_on(&frame, &p, Some(head));
            return;
        }
        self.router.prefetch(p);
        ahead.next = (slot + 1) % LEAD;
        ahead.held += 1;
        if ahead.held == LEAD {
            // the ring is full: its oldest packet is in the slot the next frame is decoded into
            ahead.held -= 1;
            if let Some(&oldest) = ahead.ring.get(ahead.next) {
                self.push(&oldest);
            }
        }
    }

    /// Routes every packet `ahead` holds, oldest first.
    fn push_held(&mut self, ahead: &mut Ahead) {
        while ahead.held > 0 {
            let i = (ahead.next + LEAD - ahead.held) % LEAD;
            ahead.held -= 1;
            if let Some(&p) = ahead.ring.get(i) {
                self.push(&p);
            }
        }
    }

    /// Decodes one frame into `p` (the caller's, reused frame after frame) and hands it on.
    #[inline]
    fn frame(&mut self, frame: RawFrame<'_>, p: &mut PacketSummary) {
        if self.decode(&frame, p) {
            let head = self.decoder.request_head(frame.link, frame.data, p);
            self.hand_on(&frame, p, head);
        }
    }

    /// Counts `frame` and decodes it into `p`; false (the reason counted) when it cannot be.
    #[inline(always)]
    fn decode(&mut self, frame: &RawFrame<'_>, p: &mut PacketSummary) -> bool {
        self.summary.frames += 1;
        self.counts.frames += 1;
        match self
            .decoder
            .decode_into(frame.link, frame.data, frame.ts, frame.wire_len, p)
        {
            Ok(()) => true,
            Err(e) => {
                self.summary.decode.record(&e);
                self.counts.not_decoded(&e);
                false
            }
        }
    }

    /// Routes `p`, decoded from `frame` (with the request head it carries), and offers the frame
    /// to the evidence tap.
    #[inline(always)]
    fn hand_on(
        &mut self,
        frame: &RawFrame<'_>,
        p: &PacketSummary,
        head: Option<crate::requests::RequestHead>,
    ) {
        match head {
            None => self.push(p),
            Some(head) => self.push_head(p, head),
        }
        let eval = self.tap_eval();
        if let Some(t) = &mut self.tap {
            // after the router took it: the evaluations due before it ran
            t.offer(frame, p, eval);
        }
    }

    /// Reads decoded chunks from the decode pool (in reading order) until the end, an error or
    /// `stop` (replay only: a pool reads files); returns the error, if any.
    pub fn read_decoded(
        &mut self,
        chunks: &mut super::decode::DecodedChunks,
        stop: &AtomicBool,
    ) -> Option<CaptureError> {
        let idle = CaptureStats::default();
        while let Some(d) = chunks.next_chunk() {
            self.summary.frames += d.frames;
            self.counts.frames += d.frames;
            for e in &d.errors {
                self.summary.decode.record(e);
                self.counts.not_decoded(e);
            }
            let mut heads = d.heads.into_iter().peekable();
            for (i, p) in d.packets.iter().enumerate() {
                match heads.next_if(|(at, _)| *at as usize == i) {
                    Some((_, head)) => self.push_head(p, head),
                    None => self.push(p),
                }
            }
            if d.error.is_some() {
                return d.error;
            }
            self.publish(idle);
            self.status(&idle);
            if stop.load(Ordering::Relaxed) {
                return None;
            }
        }
        None
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
        self.status(&source.stats());
        self.poll_reload();
        if self.stopping.is_none() && stop.load(Ordering::Relaxed) {
            self.stopping = Some((Instant::now(), wall_clock()));
        }
        match self.stopping {
            None => false,
            Some(_) if !self.live => true,
            Some((at, wall)) => idle.is_some_and(|t| t >= wall) || at.elapsed() >= LIVE_DRAIN,
        }
    }

    /// Prints the `--status-interval` line when it is due.
    pub fn status(&mut self, capture: &CaptureStats) {
        if self.stats.is_some() {
            let (kernel_drops, pipeline_drops) = self.losses_shown(capture);
            self.summary.pipeline_drops = pipeline_drops;
            let all = CaptureStats {
                kernel_drops,
                ..*capture
            };
            if let Some(line) = &mut self.stats {
                line.maybe_print(&self.summary, &all);
            }
        }
    }

    /// (kernel drops, pipeline drops) the status line shows: this thread's (`capture`: its
    /// socket's counters) and, on the first of several capture threads, the others'.
    fn losses_shown(&self, capture: &CaptureStats) -> (u64, u64) {
        let (kernel, pipeline) = match &self.peer_losses {
            Some((losses, LossRole::Shows)) => losses.get(),
            _ => (0, 0),
        };
        (
            capture.kernel_drops + kernel,
            self.router.stats().dropped + pipeline,
        )
    }

    /// The evaluations the evidence tap stamps this thread's frames with: the router's — except on
    /// the first of several capture threads. Its frames meet the others' at the evidence writer,
    /// and theirs carry only their time (those threads never see the evaluations), while its own
    /// can be read after the router has moved on with theirs: stamped with the evaluations, such a
    /// late frame would count as after an alert's start that its time precedes. All are placed by
    /// their time instead.
    #[inline]
    fn tap_eval(&self) -> Option<u64> {
        match self.peer_losses {
            Some(_) => None,
            None => self.router.evaluations(),
        }
    }

    /// Counts `n` frames another capture thread read (the first of several, which routes them).
    pub fn add_frames(&mut self, n: u64) {
        self.summary.frames += n;
    }

    /// The source is idle at packet time `now`: hand over what is held once its oldest packet has
    /// waited [`IDLE_FLUSH_AGE`] (a ring that runs dry after every small block would otherwise flood
    /// the channels with tiny batches), and move every shard's clock to `now` at most every
    /// [`IDLE_TICK_SPACING`], so alerts end on a quiet link.
    pub fn tick(&mut self, now: Timestamp) {
        let due = now.saturating_sub(self.last_tick) >= IDLE_TICK_SPACING;
        if due {
            self.last_tick = now;
            self.router.idle(now);
        }
        let eval = self.tap_eval();
        if let Some(t) = &mut self.tap {
            t.idle(now, eval);
        }
        let old = self
            .router
            .oldest_held()
            .is_some_and(|t| now.saturating_sub(t) >= IDLE_FLUSH_AGE || self.stopping.is_some());
        if old || (due && self.router.holds_work()) {
            self.router.flush();
        }
    }

    #[inline]
    pub fn push(&mut self, p: &PacketSummary) {
        self.account(p);
        self.router.push(p);
    }

    /// [`Reader::push`] of another capture thread's packet ([`Peers`]), with its request head if
    /// it has one: counted and routed here, but not in the metrics, which its own thread counted.
    pub fn push_peer(&mut self, p: &PacketSummary, head: Option<crate::requests::RequestHead>) {
        let metrics = self.metrics.take();
        self.account(p);
        self.metrics = metrics;
        match head {
            Some(head) => self.router.push_head(p, head),
            None => self.router.push(p),
        }
    }

    /// [`Reader::push`] of a packet carrying a request head.
    pub fn push_head(&mut self, p: &PacketSummary, head: crate::requests::RequestHead) {
        self.account(p);
        self.router.push_head(p, head);
    }

    /// The reader's own counts of a packet, and pacing.
    #[inline(always)]
    fn account(&mut self, p: &PacketSummary) {
        let s = &mut self.summary;
        s.packets += u64::from(p.weight);
        s.bytes += u64::from(p.wire_len) * u64::from(p.weight);
        s.first_ts.get_or_insert(p.ts);
        s.last_ts = Some(s.last_ts.map_or(p.ts, |t| t.max(p.ts)));
        if self.metrics.is_some() {
            self.counts.packet(p);
        }
        if let Some(r) = &mut self.recording {
            r.traffic.add(p);
            r.sources.add(p.src);
        }
        if self.pace {
            self.wait_for(p.ts);
        }
    }

    /// `--realtime`: sleeps until wall time catches up with packet time (divided by `--speed`),
    /// flushing first so the shards
    /// see what came before).
    fn wait_for(&mut self, ts: Timestamp) {
        let (wall0, ts0) = *self.realtime.get_or_insert((Instant::now(), ts));
        let due = Duration::from_nanos(ts.saturating_sub(ts0)).div_f64(self.speed);
        let now = wall0.elapsed();
        if due > now {
            self.router.flush();
            if let Some(m) = self.metrics {
                m.publish_input(&mut self.counts);
            }
            std::thread::sleep((due - now).min(Duration::from_secs(5)));
        }
    }

    /// Ends the input: every held packet is sent (even on live capture: the stop request came while
    /// draining) and the shards told; returns the summary.
    pub fn finish(mut self, capture: CaptureStats) -> RunSummary {
        if let Some(t) = self.telemetry.as_deref_mut() {
            t.stage.finish(&mut t.scratch);
            self.push_telemetry();
        }
        self.publish(capture);
        if let Some(t) = self.tap.take() {
            t.finish();
        }
        let route = self.router.finish();
        let mut summary = self.summary;
        summary.capture = capture;
        summary.clock = route.clock;
        summary.ignored_packets = route.ignored;
        summary.pipeline_drops = route.dropped;
        summary.pipeline_dropped_batches = route.dropped_batches;
        summary.telemetry = self.telemetry.map(|t| crate::pipeline::TelemetrySummary {
            stats: t.stage.stats().clone(),
            exporters: t.stage.exporters(),
            frames_not_udp: t.not_udp,
            frames_other_port: t.other_port,
        });
        summary.recorded = self.recording.map(|r| {
            Box::new(super::summary::RecordedInput {
                traffic: r.traffic,
                distinct_sources: r.sources.estimate(),
            })
        });
        summary
    }
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

#[cfg(test)]
mod tests {
    use super::super::capture::CaptureMsg;
    use super::*;
    use crate::capture::file::FileSource;
    use crate::synth::{self, Scenario, SynthOptions};
    use std::time::Duration;

    /// What a downstream saw, in order.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Packet { ts: u64, head: bool },
        Idle(u64),
    }

    /// A downstream that records what it is given; `prefetching` makes the reader hold packets
    /// ahead of it ([`Reader::frame_ahead`]).
    #[derive(Default)]
    struct Recorder {
        prefetching: bool,
        prefetched: std::cell::Cell<u64>,
        seen: Vec<Seen>,
    }

    impl Downstream for Recorder {
        fn push(&mut self, p: &PacketSummary) {
            self.seen.push(Seen::Packet {
                ts: p.ts.0,
                head: false,
            });
        }
        fn push_head(&mut self, p: &PacketSummary, _: crate::requests::RequestHead) {
            self.seen.push(Seen::Packet {
                ts: p.ts.0,
                head: true,
            });
        }
        fn idle(&mut self, now: Timestamp) {
            self.seen.push(Seen::Idle(now.0));
        }
        fn flush(&mut self) {}
        fn oldest_held(&self) -> Option<Timestamp> {
            None
        }
        fn holds_work(&self) -> bool {
            false
        }
        fn stats(&self) -> RouteStats {
            RouteStats::default()
        }
        fn finish(self) -> RouteStats {
            RouteStats::default()
        }
        fn reconfigure(&mut self, _: crate::config::DetectConfig) {}
        fn evaluations(&self) -> Option<u64> {
            Some(7)
        }
        fn prefetches(&self) -> bool {
            self.prefetching
        }
        fn prefetch(&self, _: &PacketSummary) {
            self.prefetched.set(self.prefetched.get() + 1);
        }
    }

    /// A file read as a live source is: idle, at the last frame's time, after every `every`-th
    /// frame (the frame counts vary, so idle reports fall anywhere in the reader's ring).
    struct Bursts {
        inner: FileSource,
        every: Vec<u64>,
        frames: u64,
        idle_due: bool,
        last: Timestamp,
        /// Another capture thread's messages, sent once this many frames have been read (then
        /// that thread ends: its sender is dropped).
        feed: Option<(u64, Vec<CaptureMsg>, crossbeam_channel::Sender<CaptureMsg>)>,
    }

    impl FrameSource for Bursts {
        fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
            self.inner.next_frame()
        }
        fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
            if std::mem::take(&mut self.idle_due) {
                // live idle ticks are at least IDLE_TICK_SPACING apart: far enough ahead
                return Ok(SourceEvent::Idle {
                    now: self.last.saturating_add(self.frames * IDLE_TICK_SPACING),
                });
            }
            match self.inner.next_frame()? {
                Some(f) => {
                    self.frames += 1;
                    self.last = f.ts;
                    if self
                        .feed
                        .as_ref()
                        .is_some_and(|(at, _, _)| *at == self.frames)
                    {
                        if let Some((_, msgs, tx)) = self.feed.take() {
                            for m in msgs {
                                tx.send(m).unwrap();
                            }
                        }
                    }
                    self.idle_due = self.every.iter().any(|n| self.frames.is_multiple_of(*n));
                    Ok(SourceEvent::Frame(f))
                }
                None => Ok(SourceEvent::End),
            }
        }
        fn stats(&self) -> CaptureStats {
            self.inner.stats()
        }
    }

    /// What the downstream saw of `path` read live, and how many packets were prefetched.
    fn read_live(path: &std::path::Path, every: &[u64], prefetching: bool) -> (Vec<Seen>, u64) {
        let (seen, prefetched, _) = read_live_with(path, every, prefetching, None);
        (seen, prefetched)
    }

    /// [`read_live`] as the first of two capture threads, the other of which sends `msgs` once
    /// `at` frames of `path` have been read; also returns the frames the other read.
    fn read_live_with(
        path: &std::path::Path,
        every: &[u64],
        prefetching: bool,
        other: Option<(u64, Vec<CaptureMsg>)>,
    ) -> (Vec<Seen>, u64, u64) {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let peers = other
            .is_some()
            .then(|| Peers::new(rx, 2, Arc::new(PeerLosses::default())));
        let mut source = Bursts {
            inner: FileSource::open(path).unwrap(),
            every: every.to_vec(),
            frames: 0,
            idle_due: false,
            last: Timestamp(0),
            feed: other.map(|(at, msgs)| (at, msgs, tx)),
        };
        let pipe = PipelineConfig {
            live: true,
            ..PipelineConfig::default()
        };
        let down = Recorder {
            prefetching,
            prefetched: std::cell::Cell::new(0),
            seen: Vec::new(),
        };
        let mut reader = Reader::new(&pipe, down, None);
        if let Some(peers) = peers {
            reader = reader.with_peers(peers);
        }
        let stop = AtomicBool::new(false);
        assert!(reader.read_all(&mut source, &stop).is_none());
        let peer_frames = reader
            .take_peers()
            .map_or(0, |peers| peers.route_the_rest(&mut reader, source.stats()));
        (
            std::mem::take(&mut reader.router.seen),
            reader.router.prefetched.get(),
            peer_frames,
        )
    }

    /// The first of two capture threads routes its own packets and the other's batches, each
    /// once, and moves the clock only as far as both have vouched for.
    #[test]
    fn the_first_capture_thread_routes_the_others_batches_and_its_clock_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("syn.pcap");
        let opts = SynthOptions {
            duration: Duration::from_secs(2),
            attack_start: Duration::from_millis(500),
            attack_duration: Duration::from_millis(500),
            attack_pps: 3_000,
            background_pps: 300,
            ..SynthOptions::default()
        };
        synth::write_pcap_file(Scenario::SynFlood, &opts, &path);
        let (own, _) = read_live(&path, &[5], false);
        let own_packets = own
            .iter()
            .filter(|s| matches!(s, Seen::Packet { .. }))
            .count();
        assert!(own_packets > 2_000, "{own_packets}");
        // alone, this source's idle reports run far past what the other thread will vouch for
        let peer_ts: Vec<u64> = (0..700u64).map(|i| 1_000_000_001 + 2 * i).collect();
        let vouched = Timestamp(*peer_ts.last().unwrap() + 5);
        assert!(own
            .iter()
            .any(|s| matches!(s, Seen::Idle(t) if *t > vouched.0)));
        // the other thread's packets: times no frame of the file has (odd nanoseconds; the
        // file's are whole microseconds)
        let is_peer = |t: &u64| t % 2 == 1 && (peer_ts[0]..=vouched.0).contains(t);
        let batch = |ts: &[u64]| CaptureMsg::Packets {
            worker: 1,
            packets: ts
                .iter()
                .map(|t| PacketSummary {
                    ts: Timestamp(*t),
                    ..PacketSummary::default()
                })
                .collect(),
            heads: Vec::new(),
        };
        // idle after every 5 frames (routed at the idle reports), or never (every 1 024 frames)
        for every in [5u64, u64::MAX] {
            for with_idle in [true, false] {
                let mut msgs: Vec<CaptureMsg> = peer_ts.chunks(256).map(batch).collect();
                if with_idle {
                    msgs.push(CaptureMsg::Idle {
                        worker: 1,
                        now: vouched,
                    });
                }
                let case = format!("idle every {every} frames, other idle {with_idle}");
                let (seen, _, peer_frames) =
                    read_live_with(&path, &[every], false, Some((300, msgs)));
                assert_eq!(peer_frames, peer_ts.len() as u64, "{case}");
                let times: Vec<u64> = seen
                    .iter()
                    .filter_map(|s| match s {
                        Seen::Packet { ts, .. } => Some(*ts),
                        Seen::Idle(_) => None,
                    })
                    .collect();
                assert_eq!(
                    times.len(),
                    own_packets + peer_ts.len(),
                    "{case}: once each"
                );
                let theirs: Vec<u64> = times.iter().copied().filter(is_peer).collect();
                assert_eq!(theirs, peer_ts, "{case}: the other's packets, in its order");
                // routed while this thread still read its own: before its last packet
                let last_own = times.iter().rposition(|t| !is_peer(t)).unwrap();
                let last_theirs = times.iter().rposition(is_peer).unwrap();
                assert!(last_theirs < last_own, "{case}: routed only at the end");
                if every == 5 {
                    // sent after frame 300: routed at the next idle report, not 1 024 frames on
                    let own_1000th = times
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| !is_peer(t))
                        .nth(1000)
                        .map(|(i, _)| i)
                        .unwrap();
                    assert!(last_theirs < own_1000th, "{case}: not routed when idle");
                }
                let idles: Vec<u64> = seen
                    .iter()
                    .filter_map(|s| match s {
                        Seen::Idle(t) => Some(*t),
                        Seen::Packet { .. } => None,
                    })
                    .collect();
                // the clock never passes what the other vouched for: its idle report, or its
                // last packet; and it does move
                let limit = if with_idle {
                    vouched.0
                } else {
                    *peer_ts.last().unwrap()
                };
                assert!(idles.iter().all(|t| *t <= limit), "{case}: {idles:?}");
                if every == 5 && with_idle {
                    assert!(!idles.is_empty(), "{case}: the clock never moved");
                }
            }
        }
    }

    /// The first of several capture threads stamps its evidence frames with their time only, as
    /// the others' are: a late frame of its own, stamped with the router's evaluations, counted as
    /// after an alert's start its time precedes (tests/live.rs, two capture threads, failed 3 runs
    /// in 15 so). A reader alone stamps them with the evaluations.
    #[test]
    fn the_first_of_several_capture_threads_places_its_evidence_frames_by_time() {
        let pipe = PipelineConfig {
            live: true,
            ..PipelineConfig::default()
        };
        let alone = Reader::new(&pipe, Recorder::default(), None);
        assert_eq!(alone.tap_eval(), Some(7));
        let (_tx, rx) = crossbeam_channel::bounded::<CaptureMsg>(1);
        let first = Reader::new(&pipe, Recorder::default(), None).with_peers(Peers::new(
            rx,
            2,
            Arc::new(PeerLosses::default()),
        ));
        assert_eq!(first.tap_eval(), None);
    }

    /// The first capture thread's status line shows what the others lost (their sockets' kernel
    /// drops, their batches dropped at a full channel) with its own, each counted once however
    /// often they publish.
    #[test]
    fn the_first_capture_threads_status_line_counts_the_others_losses() {
        use super::super::capture::CaptureTx;
        let pipe = PipelineConfig {
            live: true,
            ..PipelineConfig::default()
        };
        let losses = Arc::new(PeerLosses::default());
        // another capture thread whose channel holds one batch of one packet: the rest drop
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut other = Reader::new(&pipe, CaptureTx::new(1, tx, 1), None)
            .without_status_line(Arc::clone(&losses));
        for _ in 0..5 {
            other.push(&PacketSummary::default());
        }
        let socket = |kernel_drops| CaptureStats {
            kernel_drops,
            ..CaptureStats::default()
        };
        other.publish(socket(7));
        other.publish(socket(7));
        // a reading lower than before (a socket reopened) adds nothing, and what follows only
        // what passes the highest seen
        other.publish(socket(0));
        other.publish(socket(7));
        assert_eq!(losses.get(), (7, 4));
        other.publish(socket(10));
        assert_eq!(losses.get(), (10, 4));
        let mut first = Reader::new(
            &PipelineConfig {
                status_interval: Some(Duration::from_secs(3600)),
                ..pipe.clone()
            },
            Recorder::default(),
            None,
        )
        .with_peers(Peers::new(rx, 2, Arc::clone(&losses)));
        assert_eq!(first.losses_shown(&socket(3)), (13, 4));
        // the first thread shows the others' losses but never adds its own to them
        first.publish(socket(3));
        assert_eq!(losses.get(), (10, 4));
        // and its status line counts them among the pipeline drops
        first.status(&socket(3));
        assert_eq!(first.summary.pipeline_drops, 4);
        // alone, a reader shows its own
        let alone = Reader::new(&pipe, Recorder::default(), None);
        assert_eq!(alone.losses_shown(&socket(3)), (3, 0));
    }

    #[test]
    fn packets_held_ahead_reach_the_router_in_order_and_before_every_idle_tick() {
        let dir = tempfile::tempdir().unwrap();
        let mut cases = Vec::new();
        // a flood, and a web capture whose request heads are routed at once (after what is held)
        for (name, scenario, opts) in [
            (
                "syn.pcap",
                Scenario::SynFlood,
                SynthOptions {
                    duration: Duration::from_secs(3),
                    attack_start: Duration::from_secs(1),
                    attack_duration: Duration::from_secs(1),
                    attack_pps: 2_000,
                    background_pps: 300,
                    ..SynthOptions::default()
                },
            ),
            (
                "web.pcap",
                Scenario::HttpFlood,
                SynthOptions {
                    duration: Duration::from_secs(40),
                    attack_start: Duration::from_secs(32),
                    attack_duration: Duration::from_secs(4),
                    attack_pps: 50,
                    background_pps: 5,
                    ..SynthOptions::for_scenario(Scenario::HttpFlood)
                },
            ),
        ] {
            let path = dir.path().join(name);
            synth::write_pcap_file(scenario, &opts, &path);
            cases.push(path);
        }
        for path in &cases {
            for every in [&[3u64, 1000][..], &[7, 8], &[1]] {
                let (direct, none) = read_live(path, every, false);
                let (ahead, prefetched) = read_live(path, every, true);
                assert_eq!(none, 0);
                let packets = direct
                    .iter()
                    .filter(|s| matches!(s, Seen::Packet { .. }))
                    .count();
                assert!(packets > 1000, "{path:?}: {packets} packets");
                // every packet without a request head went through the ring
                let heads = direct
                    .iter()
                    .filter(|s| matches!(s, Seen::Packet { head: true, .. }))
                    .count();
                assert!(prefetched > 0 && prefetched as usize <= packets - heads);
                assert!(direct.iter().any(|s| matches!(s, Seen::Idle(_))));
                if path.ends_with("web.pcap") {
                    assert!(direct
                        .iter()
                        .any(|s| matches!(s, Seen::Packet { head: true, .. })));
                }
                assert_eq!(direct, ahead, "{path:?}, idle after every {every:?} frames");
            }
        }
    }
}
