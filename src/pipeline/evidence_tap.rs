//! The evidence tap (`--evidence-dir`): the pipeline's side of the attack samples written as pcap
//! (src/evidence_pcap/), by a thread of its own that never slows detection — what the reader copies,
//! what the shards and the sink tell, and the thread that runs the evidence recorder.
//!
//! ```text
//!  shards ──alerts' keys─▶ EvidenceWatch ◀──keys done── evidence thread ◀─ starts, ends ── shards
//!                           │ generation                     ▲      ▲
//!                           ▼                                │      │ file names (or none)
//!  reader: decode ─▶ EvidenceTap ──batches (try_send)────────┘     sink
//! ```
//! - [`EvidenceWatch`]: the (scope, key)s whose frames are wanted — the keys of alerts that have
//!   started and whose file the evidence thread has not finished (M frames, the alert's end, or
//!   no file) — with a generation number that moves when the set changes. A shard adds a key when
//!   it emits a start ([`ShardEvidence`]), the evidence thread releases it; the reader reads one
//!   atomic per frame and takes a new copy of the set only when the generation moved. (Keys merely near their threshold are not watched: a flood's
//!   victim keeps its /24 near or over its threshold for the whole flood — held back because one
//!   host carries it — and copying all of those frames cost a fifth of the replay speed.)
//! - [`EvidenceTap`] (reader side): copies every decoded frame into a look-back ring (one
//!   `memcpy`), and a frame of a watched key into a batch, sent with `try_send` over a bounded
//!   channel; it never waits: batches that find the channel full are kept (up to [`QUEUE_BYTES`])
//!   and sent as room appears, beyond that dropped from the sample (counted). The reader
//!   runs ahead of the shards by up to a shard channel's worth of packets, so when a key becomes
//!   watched the tap first copies the look-back's frames of it: the samples then do not depend on
//!   how far ahead the reader happened to be (the same files at any thread count).
//! - The shards tell the evidence thread of their alerts' starts and ends as they emit them; the
//!   sink ([`SinkEvidence`]) decides, when it writes a start, whether the alert gets a file (the
//!   budget), names it (the event's `evidence` field) and tells the evidence thread.
//! - The evidence thread runs the [`Recorder`], starts and ends before frames.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{never, select, Receiver, Sender, TrySendError};

use crate::alert::{AlertEvent, EventKind};
use crate::capture::RawFrame;
use crate::config::DetectConfig;
use crate::decode::LinkType;
use crate::decode::PacketSummary;
use crate::detect::{key_of, scopes_of, ScopeMask};
use crate::evidence_pcap::{
    file_name, EvidenceCounters, FrameBatch, FrameMeta, Mark, Notice, Recorder, WatchedKeys,
};
use crate::key::{Key, Scope};
use crate::time::Timestamp;

/// Batches the channel from the reader(s) to the evidence thread holds.
pub(super) const CHANNEL_BATCHES: usize = 256;
/// A batch leaves at this many frames …
const BATCH_FRAMES: usize = 256;
/// … or this many bytes …
const BATCH_BYTES: usize = 64 << 10;
/// … or once its first frame is this old in packet time (ns), so a slow key's frames do not wait.
const BATCH_AGE: u64 = 50_000_000;
/// Bytes of frames a reader holds for the evidence writer when its channel is full, at most.
const QUEUE_BYTES: usize = 32 << 20;
/// Start and end notices the evidence thread may have waiting.
pub(super) const NOTICE_CAPACITY: usize = 65_536;

type WatchKey = (Scope, Key);

#[derive(Default)]
struct WatchInner {
    /// Per key: its alerts whose frames are still wanted (started, and not yet done with by the
    /// evidence thread).
    wanted: HashMap<WatchKey, u32, foldhash::fast::RandomState>,
    current: Arc<WatchedKeys>,
}

/// The keys whose frames the reader copies (see the module docs).
#[derive(Default)]
pub(super) struct EvidenceWatch {
    generation: AtomicU64,
    inner: Mutex<WatchInner>,
}

impl EvidenceWatch {
    /// The generation now: moves whenever the set does.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The set now, with its generation.
    pub fn snapshot(&self) -> (u64, Arc<WatchedKeys>) {
        let inner = self.lock();
        (self.generation(), Arc::clone(&inner.current))
    }

    /// A shard: an alert of `k` started; its frames are wanted until the evidence thread releases
    /// it (so a key whose alert starts and ends before the reader looks is still seen).
    pub fn want(&self, k: WatchKey) {
        let mut inner = self.lock();
        *inner.wanted.entry(k).or_default() += 1;
        self.rebuild(&mut inner);
    }

    /// The evidence thread: it is done with one alert of each of `keys` (its file complete, or
    /// refused).
    pub fn release(&self, keys: &[WatchKey]) {
        let mut inner = self.lock();
        for k in keys {
            if let Some(n) = inner.wanted.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    inner.wanted.remove(k);
                }
            }
        }
        self.rebuild(&mut inner);
    }

    fn rebuild(&self, inner: &mut WatchInner) {
        let mut set = WatchedKeys::default();
        for k in inner.wanted.keys() {
            set.insert(*k);
        }
        if !set.same_keys(&inner.current) {
            inner.current = Arc::new(set);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A shard's side: tells the evidence thread of the shard's alerts as it emits them (the sink may
/// be far behind), and marks the keys whose frames the reader is to copy.
#[derive(Clone)]
pub(super) struct ShardEvidence<'a> {
    watch: &'a EvidenceWatch,
    hints: Sender<Notice>,
}

impl<'a> ShardEvidence<'a> {
    pub fn new(shared: &'a EvidenceShared, hints: Sender<Notice>) -> Self {
        ShardEvidence {
            watch: &shared.watch,
            hints,
        }
    }

    /// The events the shard just emitted: starts and ends are told (a full queue loses the
    /// hint; the sink's notice then does its work, later), and a start's key watched.
    pub fn events(&mut self, events: &[AlertEvent]) {
        for e in events {
            let at = mark(e);
            let (id, scope, key) = (e.id.clone(), e.scope, e.key);
            let _ = match e.event {
                EventKind::Start => {
                    self.watch.want((scope, key));
                    self.hints
                        .try_send(Notice::AlertStart { id, scope, key, at })
                }
                EventKind::End => self.hints.try_send(Notice::AlertEnd { id, scope, key, at }),
                EventKind::Update => Ok(()),
            };
        }
    }
}

/// The reader's recent frames, so a key that goes into alert gets its frames from before the
/// reader knew: the alert is found by a shard, which runs behind the reader by up to a shard
/// channel's worth of packets, and its packets before the start are older still.
///
/// Frame records in a power-of-two array indexed by the frame's number, over a ring of bytes:
/// every frame is copied in whole (one `memcpy`, and no work to push anything out: a record is
/// simply overwritten, and one whose bytes were overwritten is recognised when read).
struct Backlog {
    bytes: Vec<u8>,
    slots: Vec<BackFrame>,
    mask: u64,
    /// The number of the latest frame pushed.
    last: u64,
    /// Bytes written so far, the skipped ends of the ring included, and the write position in it.
    written: u64,
    phys: usize,
    max_bytes: usize,
    /// Checks that found the frame half the array back already overwritten by bytes: the byte
    /// ring is too small for these frames and grows (up to `max_bytes`).
    squeezed: u32,
}

#[derive(Clone, Copy, Debug)]
struct BackFrame {
    /// The frame's number (0: never written).
    seq: u64,
    eval: Option<u64>,
    ts: Timestamp,
    wire_len: u32,
    link: LinkType,
    /// Absolute byte position (`Backlog::written` when it was copied), place in the ring and
    /// length ([`NOT_KEPT`]: a frame too big for the ring).
    at: u64,
    off: u32,
    len: u32,
}

impl Default for BackFrame {
    fn default() -> Self {
        BackFrame {
            seq: 0,
            eval: None,
            ts: Timestamp(0),
            wire_len: 0,
            link: LinkType::ETHERNET,
            at: 0,
            off: 0,
            len: 0,
        }
    }
}

/// [`BackFrame::len`] of a frame not kept.
const NOT_KEPT: u32 = u32::MAX;
/// The backlog starts with this many bytes a frame (grown when frames are bigger).
const BACKLOG_BYTES_PER_FRAME: usize = 128;
/// The most bytes the backlog holds.
const BACKLOG_MAX_BYTES: usize = 32 << 20;

impl Backlog {
    /// A backlog of at least `frames` frames (rounded up to a power of two).
    fn new(frames: usize) -> Backlog {
        let n = frames.max(2).next_power_of_two();
        Backlog {
            bytes: vec![0; (n * BACKLOG_BYTES_PER_FRAME).min(BACKLOG_MAX_BYTES)],
            slots: vec![BackFrame::default(); n],
            mask: n as u64 - 1,
            last: 0,
            written: 0,
            phys: 0,
            max_bytes: BACKLOG_MAX_BYTES,
            squeezed: 0,
        }
    }

    /// Copies frame number `seq` (one more than the last) in.
    #[inline]
    fn push(&mut self, seq: u64, eval: Option<u64>, f: &RawFrame<'_>) {
        let cap = self.bytes.len();
        let len = f.data.len();
        self.last = seq;
        let slot = (seq & self.mask) as usize;
        if len > cap / 4 {
            // a giant frame (or a tiny ring): not kept
            if let Some(s) = self.slots.get_mut(slot) {
                *s = BackFrame {
                    seq,
                    len: NOT_KEPT,
                    ..BackFrame::default()
                };
            }
            return;
        }
        // each frame is contiguous: one that would cross the ring's end starts at its beginning
        let mut at = self.written;
        let mut phys = self.phys;
        if phys + len > cap {
            at += (cap - phys) as u64;
            phys = 0;
        }
        if let Some(dst) = self.bytes.get_mut(phys..phys + len) {
            dst.copy_from_slice(f.data);
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = BackFrame {
                seq,
                eval,
                ts: f.ts,
                wire_len: f.wire_len,
                link: f.link,
                at,
                off: phys as u32,
                len: len as u32,
            };
        }
        self.written = at + len as u64;
        self.phys = phys + len;
        if seq & 1023 == 0 {
            self.check_size();
        }
    }

    /// Whether the bytes of `b` are still in the ring.
    fn intact(&self, b: &BackFrame) -> bool {
        b.len != NOT_KEPT && b.at + self.bytes.len() as u64 >= self.written
    }

    /// Now and then: is the frame half the array back already overwritten by bytes? Then frames
    /// are bigger than the ring was sized for, and it grows.
    #[cold]
    fn check_size(&mut self) {
        let half = self.last.saturating_sub(self.mask / 2);
        let b = self.slots[(half & self.mask) as usize];
        if b.seq == half && b.len != NOT_KEPT && !self.intact(&b) {
            self.squeezed += 1;
            if self.squeezed >= 4 {
                self.grow();
            }
        }
    }

    /// Doubles the byte ring (up to the maximum), the frames it holds packed at its start.
    #[cold]
    fn grow(&mut self) {
        self.squeezed = 0;
        let bigger = (self.bytes.len() * 2).min(self.max_bytes);
        if bigger <= self.bytes.len() {
            return;
        }
        let held: Vec<u64> = self.iter_rev().map(|(b, _)| b.seq).collect();
        let held_from = held.last().copied().unwrap_or(self.last + 1);
        let mut bytes = vec![0; bigger];
        let mut at = 0usize;
        for seq in held.into_iter().rev() {
            let slot = (seq & self.mask) as usize;
            let b = self.slots[slot];
            let (start, len) = (b.off as usize, b.len as usize);
            if let (Some(dst), Some(src)) = (
                bytes.get_mut(at..at + len),
                self.bytes.get(start..start + len),
            ) {
                dst.copy_from_slice(src);
            }
            self.slots[slot].at = at as u64;
            self.slots[slot].off = at as u32;
            at += len;
        }
        // records older than the packed ones must not pass for intact in the new ring
        for s in &mut self.slots {
            if s.seq < held_from {
                *s = BackFrame::default();
            }
        }
        self.bytes = bytes;
        self.written = at as u64;
        self.phys = at;
    }

    /// The frames held, newest first, with their bytes.
    fn iter_rev(&self) -> impl Iterator<Item = (&BackFrame, &[u8])> + '_ {
        let n = (self.mask + 1).min(self.last);
        (0..n)
            .map(move |i| {
                (
                    self.last - i,
                    &self.slots[((self.last - i) & self.mask) as usize],
                )
            })
            .take_while(|(seq, b)| b.seq == *seq && (b.len == NOT_KEPT || self.intact(b)))
            .filter(|(_, b)| b.len != NOT_KEPT)
            .map(move |(_, b)| {
                let start = b.off as usize;
                let data = self
                    .bytes
                    .get(start..start + b.len as usize)
                    .unwrap_or_default();
                (b, data)
            })
    }

    /// The frames held, oldest first (tests).
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = (&BackFrame, &[u8])> + '_ {
        let mut v: Vec<_> = self.iter_rev().collect();
        v.reverse();
        v.into_iter()
    }
}

/// The reader's side: copies the frames of watched keys into batches for the evidence thread.
pub(super) struct EvidenceTap<'a> {
    watch: &'a EvidenceWatch,
    counters: &'a EvidenceCounters,
    cfg: DetectConfig,
    generation: u64,
    set: Arc<WatchedKeys>,
    batch: FrameBatch,
    tx: Sender<FrameBatch>,
    /// Batches the evidence thread is done with, to reuse.
    spare: Receiver<FrameBatch>,
    /// The time of the batch's first frame.
    batch_first: Timestamp,
    /// Batches that found the channel full, oldest first: a burst the writer has not caught up
    /// with (an alert's look-back, many keys at once) waits here, up to [`QUEUE_BYTES`].
    queued: VecDeque<FrameBatch>,
    queued_bytes: usize,
    queue_limit: usize,
    /// Frames offered so far (each frame's number).
    seq: u64,
    /// The most frames of one key copied from the look-back when it becomes watched.
    per_key: usize,
    /// The router's evaluation count at the latest frame (None: not known to this reader).
    eval: Option<u64>,
    backlog: Backlog,
}

impl<'a> EvidenceTap<'a> {
    /// A tap whose look-back holds `lookback` frames, of which it copies at most `per_key` (the
    /// latest) of a key that becomes watched.
    pub fn new(
        shared: &'a EvidenceShared,
        cfg: &DetectConfig,
        lookback: usize,
        per_key: usize,
        tx: Sender<FrameBatch>,
        spare: Receiver<FrameBatch>,
    ) -> EvidenceTap<'a> {
        EvidenceTap {
            watch: &shared.watch,
            counters: &shared.counters,
            cfg: cfg.clone(),
            generation: 0,
            set: Arc::new(WatchedKeys::default()),
            batch: FrameBatch::default(),
            tx,
            spare,
            batch_first: Timestamp(0),
            queued: VecDeque::new(),
            queued_bytes: 0,
            queue_limit: QUEUE_BYTES,
            seq: 0,
            per_key: per_key.max(1),
            eval: None,
            backlog: Backlog::new(lookback),
        }
    }

    /// Numbers this tap's frames as reading thread `stream` of several (capture threads): frame
    /// numbers then never meet another thread's.
    pub fn stream(mut self, stream: u16) -> Self {
        self.seq = u64::from(stream) << crate::evidence_pcap::STREAM_SHIFT;
        self
    }

    /// Looks at a decoded frame, counted after `eval` evaluations (the router's count, if this
    /// reader knows it): keeps it in the look-back, and copies it when one of its keys is watched.
    #[inline]
    pub fn offer(&mut self, frame: &RawFrame<'_>, p: &PacketSummary, eval: Option<u64>) {
        self.seq += 1;
        if !self.queued.is_empty() {
            self.drain();
        }
        // every frame before this one was counted before `eval` evaluations or at it
        self.eval = eval;
        let g = self.watch.generation();
        if g != self.generation {
            self.refresh(p.ts);
        }
        self.backlog.push(self.seq, eval, frame);
        if !self.set.is_empty() {
            self.offer_watched(frame, p);
        }
    }

    /// The set changed: copies the look-back's frames of the keys just added, sends what is held
    /// (the evidence thread learns the reader is at `now`) and takes the new set.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, now: Timestamp) {
        let (generation, set) = self.watch.snapshot();
        self.generation = generation;
        let mut fresh = WatchedKeys::default();
        for k in set.iter().filter(|k| !self.set.contains(k)) {
            fresh.insert(*k);
        }
        if !fresh.is_empty() {
            self.backfill(&fresh);
        }
        self.set = set;
        self.send(now);
    }

    /// Copies the look-back's frames of the `fresh` keys — the latest `per_key` of each, oldest
    /// first, after what the batch holds (each key's frames stay in order) — into one batch however
    /// many they are: the batch that names a key in its watched set must come with every frame of
    /// it the reader still has (the recorder takes the set as the promise that the key's frames up
    /// to the batch's progress are all out).
    fn backfill(&mut self, fresh: &WatchedKeys) {
        let decoder = crate::decode::Decoder;
        let keys: Vec<WatchKey> = fresh.iter().copied().collect();
        let mut taken = vec![0usize; keys.len()];
        let mut found = Vec::new();
        for (b, data) in self.backlog.iter_rev() {
            if taken.iter().all(|n| *n >= self.per_key) {
                break;
            }
            let Ok(p) = decoder.decode(b.link, data, b.ts, b.wire_len) else {
                continue;
            };
            let mut hit = ScopeMask(0);
            for scope in Scope::ALL {
                let k = (scope, key_of(&self.cfg, scope, &p));
                if let Some(i) = keys.iter().position(|x| *x == k) {
                    if taken[i] < self.per_key && scopes_of(&self.cfg, &p).contains(scope) {
                        taken[i] += 1;
                        hit.insert(scope);
                    }
                }
            }
            if !hit.is_empty() {
                found.push((*b, p.src, p.dst, hit));
            }
        }
        for (b, src, dst, hit) in found.into_iter().rev() {
            let start = b.off as usize;
            let Some(data) = self.backlog.bytes.get(start..start + b.len as usize) else {
                continue;
            };
            let meta = FrameMeta {
                seq: b.seq,
                eval: b.eval,
                ts: b.ts,
                wire_len: b.wire_len,
                link: b.link,
                offset: 0,
                len: 0,
                src,
                dst,
                scopes: hit,
            };
            Self::copy(&mut self.batch, &mut self.batch_first, data, meta);
        }
    }

    /// Appends one frame to the batch for the writer (the batch's age counts from its first).
    fn copy(batch: &mut FrameBatch, first: &mut Timestamp, data: &[u8], meta: FrameMeta) {
        if batch.is_empty() {
            *first = meta.ts;
        }
        batch.push(data, meta);
    }

    fn batch_full(&self) -> bool {
        self.batch.frames.len() >= BATCH_FRAMES || self.batch.data.len() >= BATCH_BYTES
    }

    fn offer_watched(&mut self, frame: &RawFrame<'_>, p: &PacketSummary) {
        let hit = hits(&self.cfg, &self.set, p);
        if !hit.is_empty() {
            let meta = FrameMeta {
                seq: self.seq,
                eval: self.eval,
                ts: frame.ts,
                wire_len: frame.wire_len,
                link: frame.link,
                offset: 0,
                len: 0,
                src: p.src,
                dst: p.dst,
                scopes: hit,
            };
            Self::copy(&mut self.batch, &mut self.batch_first, frame.data, meta);
        }
        if !self.batch.is_empty()
            && (self.batch_full() || p.ts.saturating_sub(self.batch_first) >= BATCH_AGE)
        {
            // every frame before this one has been offered (this one too, but a later frame may
            // share its time)
            self.send(p.ts);
        }
    }

    /// Sends the batch with the reader's progress: at `through` in time, at its latest evaluation
    /// count; a full channel drops it (counted).
    fn send(&mut self, through: Timestamp) {
        self.send_at(through, self.eval);
    }

    fn send_at(&mut self, through: Timestamp, through_eval: Option<u64>) {
        if self.batch.is_empty()
            && through == self.batch.through
            && through_eval == self.batch.through_eval
        {
            return;
        }
        let next = match self.spare.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => FrameBatch {
                data: Vec::with_capacity(BATCH_BYTES + 2048),
                frames: Vec::with_capacity(BATCH_FRAMES),
                through: Timestamp(0),
                through_eval: None,
                watched: None,
            },
        };
        let mut batch = std::mem::replace(&mut self.batch, next);
        batch.through = through;
        batch.through_eval = through_eval;
        batch.watched = Some(Arc::clone(&self.set));
        self.queued_bytes += batch.data.len();
        self.queued.push_back(batch);
        self.drain();
        if self.queued_bytes > self.queue_limit {
            // the writer is too far behind: this batch is dropped from the samples (its progress
            // is carried by the next one)
            if let Some(b) = self.queued.pop_back() {
                self.queued_bytes -= b.data.len();
                self.counters.add_dropped(b.frames.len() as u64);
            }
        }
        // what an empty batch still has to say, should it be sent
        self.batch.through = through;
        self.batch.through_eval = through_eval;
    }

    /// Hands the queued batches to the channel while it has room.
    fn drain(&mut self) {
        while let Some(b) = self.queued.pop_front() {
            let len = b.data.len();
            match self.tx.try_send(b) {
                Ok(()) => self.queued_bytes -= len,
                Err(TrySendError::Full(b)) => {
                    self.queued.push_front(b);
                    return;
                }
                Err(TrySendError::Disconnected(b)) => {
                    // the writer is gone (it panicked; the run reports that)
                    self.queued_bytes -= len;
                    self.counters.add_dropped(b.frames.len() as u64);
                }
            }
        }
    }

    /// The source is idle at `now` (live), the router at `eval` evaluations: nothing older is to
    /// come, send what is held.
    pub fn idle(&mut self, now: Timestamp, eval: Option<u64>) {
        if eval.is_some() {
            self.eval = eval;
        }
        if self.watch.generation() != self.generation {
            self.refresh(now);
        }
        if !self.batch.is_empty() || !self.set.is_empty() {
            self.send(now);
        }
    }

    /// The input is over and the shards are done (their last hot keys published): copies what the
    /// look-back holds of keys watched since, and sends everything.
    pub fn finish(mut self) {
        let end = Timestamp(u64::MAX);
        if self.watch.generation() != self.generation {
            self.refresh(end);
        }
        self.send_at(end, Some(u64::MAX));
        // detection is done reading: what is queued may wait for room
        for b in std::mem::take(&mut self.queued) {
            if let Err(e) = self.tx.send(b) {
                self.counters.add_dropped(e.0.frames.len() as u64);
            }
        }
    }
}

/// The scopes of `p` whose key is in `set`.
#[inline]
fn hits(cfg: &DetectConfig, set: &WatchedKeys, p: &PacketSummary) -> ScopeMask {
    let mask = ScopeMask(scopes_of(cfg, p).0 & set.scopes().0);
    let mut hit = ScopeMask(0);
    if mask.is_empty() {
        return hit;
    }
    for scope in Scope::ALL {
        if mask.contains(scope) && set.contains(&(scope, key_of(cfg, scope, p))) {
            hit.insert(scope);
        }
    }
    hit
}

/// What the reader(s), the shards, the sink and the evidence thread share.
pub(super) struct EvidenceShared {
    pub watch: EvidenceWatch,
    pub counters: Arc<EvidenceCounters>,
}

/// The sink's side: which alerts get a file, under which name.
pub(super) struct SinkEvidence<'a> {
    dir: PathBuf,
    counters: &'a EvidenceCounters,
    tx: Sender<Notice>,
    /// File names given out in this run (an id seen twice, e.g. the same capture replayed twice,
    /// gets `-2`, `-3`, …).
    names: HashSet<String>,
    /// Alerts with a file, by id: their end is told too.
    open: HashSet<String>,
}

/// Where the event `e` happened in the stream.
fn mark(e: &AlertEvent) -> Mark {
    Mark {
        seq: e.seq,
        ts: e.ts,
    }
}

impl<'a> SinkEvidence<'a> {
    pub fn new(dir: PathBuf, shared: &'a EvidenceShared, tx: Sender<Notice>) -> SinkEvidence<'a> {
        SinkEvidence {
            dir,
            counters: &shared.counters,
            tx,
            names: HashSet::new(),
            open: HashSet::new(),
        }
    }

    /// An event about to be written: at a start, the path of its evidence file (its `evidence`
    /// field) when it gets one.
    pub fn on_event(&mut self, e: &AlertEvent) -> Option<String> {
        match e.event {
            EventKind::Start => self.start(e),
            EventKind::End => {
                if self.open.remove(&e.id) {
                    // the shard told the end already; this repeats it should that have been lost
                    let _ = self.tx.try_send(Notice::AlertEnd {
                        id: e.id.clone(),
                        scope: e.scope,
                        key: e.key,
                        at: mark(e),
                    });
                }
                None
            }
            EventKind::Update => None,
        }
    }

    fn start(&mut self, e: &AlertEvent) -> Option<String> {
        let refuse = |tx: &Sender<Notice>| {
            // the frames the recorder keeps for the alert can go
            let _ = tx.try_send(Notice::NoFile {
                id: e.id.clone(),
                scope: e.scope,
                key: e.key,
                at: mark(e),
            });
        };
        if self.tx.is_full() {
            self.counters.skip_busy();
            refuse(&self.tx);
            return None;
        }
        if !self.counters.admit_file() {
            refuse(&self.tx);
            return None;
        }
        let base = file_name(&e.id);
        let mut name = base.clone();
        let mut n = 1;
        while self.names.contains(&name) {
            n += 1;
            name = format!("{}-{n}.pcap", base.trim_end_matches(".pcap"));
        }
        let path = self.dir.join(&name);
        let shown = path.display().to_string();
        let notice = Notice::File {
            id: e.id.clone(),
            path,
            scope: e.scope,
            key: e.key,
            at: mark(e),
        };
        if self.tx.try_send(notice).is_err() {
            // filled by the shards since the look: no file after all
            self.counters.give_back_header();
            self.counters.skip_busy();
            refuse(&self.tx);
            return None;
        }
        self.names.insert(name);
        self.open.insert(e.id.clone());
        Some(shown)
    }
}

/// The evidence thread: records until the reader(s) and the sink are done, then completes every
/// file. Prints the first write error as a warning (later ones are counted).
pub(super) fn run_evidence(
    mut recorder: Recorder,
    frames: Receiver<FrameBatch>,
    spare: Sender<FrameBatch>,
    notices: Receiver<Notice>,
    shared: &EvidenceShared,
) {
    let (mut frames, mut notices) = (frames, notices);
    let (mut frames_open, mut notices_open) = (true, true);
    let mut generation = shared.watch.generation();
    while frames_open || notices_open {
        // starts and ends first: a start must pin its key's frames before more of them arrive
        while let Ok(n) = notices.try_recv() {
            recorder.notice(n);
        }
        select! {
            recv(frames) -> msg => match msg {
                Ok(batch) => {
                    recorder.frames(&batch);
                    let _ = spare.try_send(batch);
                }
                Err(_) => {
                    frames_open = false;
                    frames = never();
                    recorder.end_input();
                }
            },
            recv(notices) -> msg => match msg {
                Ok(n) => recorder.notice(n),
                Err(_) => {
                    notices_open = false;
                    notices = never();
                }
            },
        }
        let done = recorder.take_released();
        if !done.is_empty() {
            shared.watch.release(&done);
        }
        let g = shared.watch.generation();
        if g != generation {
            generation = g;
            let (_, set) = shared.watch.snapshot();
            recorder.retain_keys(|k| set.contains(k));
        }
        if let Some(w) = recorder.take_warning() {
            eprintln!("floodwatch: warning: {w}");
        }
    }
    recorder.finish();
    if let Some(w) = recorder.take_warning() {
        eprintln!("floodwatch: warning: {w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(last: u8) -> WatchKey {
        (
            Scope::DstHost,
            Key::host(IpAddr::from([198, 51, 100, last])),
        )
    }

    #[test]
    fn a_key_is_watched_while_one_of_its_alerts_wants_frames() {
        let w = EvidenceWatch::default();
        let g0 = w.generation();
        w.want(key(1));
        w.want(key(2));
        let (g, set) = w.snapshot();
        assert!(g > g0);
        assert!(set.contains(&key(1)) && set.contains(&key(2)));
        // a second alert of the same key changes nothing in the set
        w.want(key(2));
        assert_eq!(w.generation(), g);
        w.release(&[key(2)]);
        assert!(
            w.snapshot().1.contains(&key(2)),
            "one alert of it still wants frames"
        );
        w.release(&[key(2), key(1)]);
        assert!(w.snapshot().1.is_empty());
        // releasing a key not wanted is harmless
        w.release(&[key(3)]);
        assert!(w.snapshot().1.is_empty());
    }

    /// An Ethernet frame of a TCP SYN from 192.0.2.1 to 198.51.100.`dst_last`, padded to 60 bytes.
    fn syn_frame(dst_last: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
        ip[16..20].copy_from_slice(&[198, 51, 100, dst_last]);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        f
    }

    fn packet(dst_last: u8, ms: u64) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(ms * 1_000_000),
            src: IpAddr::from([192, 0, 2, 1]),
            dst: IpAddr::from([198, 51, 100, dst_last]),
            ..PacketSummary::default()
        }
    }

    #[test]
    fn the_tap_copies_watched_keys_looks_back_for_new_ones_and_counts_drops() {
        let shared = EvidenceShared {
            watch: EvidenceWatch::default(),
            counters: Arc::new(EvidenceCounters::new(u64::MAX)),
        };
        let (tx, rx) = crossbeam_channel::bounded(2);
        let (_spare_tx, spare_rx) = crossbeam_channel::bounded(1);
        let mut tap = EvidenceTap::new(&shared, &DetectConfig::default(), 16, 16, tx, spare_rx);
        let offer = |tap: &mut EvidenceTap<'_>, dst: u8, ms: u64| {
            let data = syn_frame(dst);
            let frame = RawFrame {
                ts: Timestamp(ms * 1_000_000),
                link: LinkType::ETHERNET,
                data: &data,
                wire_len: 60,
            };
            tap.offer(&frame, &packet(dst, ms), None);
        };
        offer(&mut tap, 10, 1);
        offer(&mut tap, 11, 2);
        assert!(
            tap.batch.is_empty() && rx.is_empty(),
            "nothing watched: nothing copied"
        );
        // .10 becomes watched: its frame from before is looked back for, and sent at once
        shared.watch.want(key(10));
        offer(&mut tap, 10, 3);
        let b = rx.try_recv().unwrap();
        assert_eq!(b.frames.len(), 1);
        assert_eq!((b.frames[0].seq, b.frames[0].ts), (1, Timestamp(1_000_000)));
        assert_eq!(b.through, Timestamp(3_000_000));
        assert_eq!(tap.batch.frames.len(), 1, "the frame at 3 ms");
        offer(&mut tap, 11, 4);
        assert_eq!(tap.batch.frames.len(), 1, "the other key is not copied");
        // 50 ms on, the batch leaves, saying the reader is at 60 ms
        offer(&mut tap, 11, 60);
        let b = rx.try_recv().unwrap();
        assert_eq!((b.frames.len(), b.through), (1, Timestamp(60_000_000)));
        // two batches fill the channel, the third finds it full and waits in the tap …
        for ms in [70, 130, 140, 200, 210, 270] {
            offer(&mut tap, 10, ms);
        }
        assert_eq!((rx.len(), tap.queued.len()), (2, 1));
        // … until there is room
        rx.try_recv().unwrap();
        offer(&mut tap, 11, 271);
        assert_eq!((rx.len(), tap.queued.len()), (2, 0));
        // past the queue's limit, a batch is dropped and counted
        tap.queue_limit = 0;
        for ms in [280, 340] {
            offer(&mut tap, 10, ms);
        }
        assert_eq!(shared.counters.snapshot().dropped, 2);
        // at the end, what is queued waits for room
        tap.queue_limit = QUEUE_BYTES;
        for ms in [350, 410] {
            offer(&mut tap, 10, ms);
        }
        assert_eq!(tap.queued.len(), 1);
        let reading = std::thread::spawn(move || rx.iter().count());
        tap.finish();
        assert_eq!(reading.join().unwrap(), 2 + 1 + 1);
        assert_eq!(shared.counters.snapshot().dropped, 2);
    }

    #[test]
    fn the_backlog_keeps_the_latest_frames_by_count_and_by_bytes() {
        let mut b = Backlog::new(4);
        b.max_bytes = b.bytes.len();
        assert_eq!(b.bytes.len(), 512);
        let data: Vec<u8> = (0..=255).collect();
        let frame = |ms: u64, len: usize| RawFrame {
            ts: Timestamp(ms),
            link: LinkType::ETHERNET,
            data: &data[..len],
            wire_len: len as u32,
        };
        for i in 1..=6 {
            b.push(i, None, &frame(i, 10));
        }
        let seqs: Vec<u64> = b.iter().map(|(f, _)| f.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5, 6]);
        assert!(b.iter().all(|(_, d)| d == &data[..10]));
        // 512 bytes of ring: frames of 120 fill it, each new one displaces the oldest, and a
        // frame never straddles the end
        for i in 7..=12 {
            b.push(i, None, &frame(i, 120));
        }
        let held: Vec<(u64, usize)> = b.iter().map(|(f, d)| (f.seq, d.len())).collect();
        assert_eq!(held, vec![(10, 120), (11, 120), (12, 120)]);
        assert!(b.iter().all(|(_, d)| d == &data[..120]));
        // a frame over a quarter of the ring is not kept (the others are)
        b.push(13, None, &frame(13, 200));
        let seqs: Vec<u64> = b.iter().map(|(f, _)| f.seq).collect();
        assert_eq!(seqs, vec![10, 11, 12]);
        // growing keeps what is held, in order
        b.max_bytes = 4096;
        let before: Vec<(u64, Vec<u8>)> = b.iter().map(|(f, d)| (f.seq, d.to_vec())).collect();
        b.grow();
        assert_eq!(b.bytes.len(), 1024);
        let after: Vec<(u64, Vec<u8>)> = b.iter().map(|(f, d)| (f.seq, d.to_vec())).collect();
        assert_eq!(after, before);
        b.push(14, None, &frame(14, 200));
        let held: Vec<(u64, usize)> = b.iter().map(|(f, d)| (f.seq, d.len())).collect();
        assert_eq!(held, vec![(11, 120), (12, 120), (14, 200)]);
    }
}
