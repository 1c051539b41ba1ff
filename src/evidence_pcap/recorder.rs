//! The [`Recorder`]: per watched key a ring of its latest frames, and the alerts' files — which
//! frames go in, when a file is complete (see the parent module's docs for the rules).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    key_of_addrs, temp_name, EvidenceConfig, EvidenceCounters, EvidenceStats, FrameBatch,
    FrameMeta, Mark, Notice, WatchedKeys, FILE_BUFFER, RING_BUDGET, SPARE_BUFFERS,
};
use crate::config::DetectConfig;
use crate::decode::LinkType;
use crate::key::{Key, Scope};
use crate::pcap_writer::{PcapWriter, TsResolution, FILE_HEADER_LEN, MAX_SNAPLEN};
use crate::time::Timestamp;

/// A frame kept in a ring.
#[derive(Debug)]
struct Stored {
    eval: Option<u64>,
    ts: Timestamp,
    wire_len: u32,
    link: LinkType,
    data: Vec<u8>,
}

impl Stored {
    fn record(&self) -> Record<'_> {
        Record {
            ts: self.ts,
            wire_len: self.wire_len,
            link: self.link,
            data: &self.data,
        }
    }
}

/// One frame on its way to a file: what a pcap record holds, and the link type it must match.
#[derive(Clone, Copy)]
struct Record<'a> {
    ts: Timestamp,
    wire_len: u32,
    link: LinkType,
    data: &'a [u8],
}

impl<'a> Record<'a> {
    /// A frame of a batch: its description and its bytes.
    fn of(f: &FrameMeta, data: &'a [u8]) -> Self {
        Record {
            ts: f.ts,
            wire_len: f.wire_len,
            link: f.link,
            data,
        }
    }

    /// This frame kept, in `data` (a copy of its bytes).
    fn stored(self, eval: Option<u64>, data: Vec<u8>) -> Stored {
        Stored {
            eval,
            ts: self.ts,
            wire_len: self.wire_len,
            link: self.link,
            data,
        }
    }
}

/// An alert's file while it is being written, or, until the sink names it, an alert whose frames
/// are being kept.
struct OpenFile {
    /// Tells the files of a run apart.
    n: u64,
    id: String,
    /// Where it goes, and its temporary name: None until the sink gives the alert a file.
    path: Option<PathBuf>,
    tmp: Option<PathBuf>,
    start: Mark,
    /// Set by the end notice: frames after this are left out.
    end: Option<Mark>,
    /// The frames before the start have been chosen and written.
    selected: bool,
    /// The writer, from the first frame (its link type is the file's).
    out: Option<PcapWriter<BufWriter<File>>>,
    /// The file, until the first frame makes the writer.
    file: Option<File>,
    after: usize,
    /// Until the sink names the file: the frames chosen for it so far.
    staged: Vec<Stored>,
    /// The recorder is done with the alert's frames (told once).
    released: bool,
    /// Complete (M frames, the budget, its end, the input's end) before the sink named it: it
    /// is closed as soon as it is named.
    complete: Option<Close>,
}

impl OpenFile {
    /// Whether a frame belongs after this alert's start and not after its end.
    fn covers(&self, eval: Option<u64>, ts: Timestamp) -> bool {
        self.start.precedes(eval, ts) && !self.end.is_some_and(|e| e.precedes(eval, ts))
    }

    /// Whether it still waits for frames: up to its start, or up to its known end.
    fn pending(&self) -> bool {
        (!self.selected || self.end.is_some()) && self.complete.is_none()
    }
}

/// Frame numbers carry their reading thread above this bit: thread `i` numbers its frames from
/// `i << STREAM_SHIFT` (2^48 frames each before they would meet).
pub const STREAM_SHIFT: u32 = 48;

/// What the recorder keeps per watched (scope, key).
#[derive(Default)]
struct KeyEvidence {
    /// The key's latest frames (every frame goes in; the oldest go out).
    ring: VecDeque<Stored>,
    /// Per reading thread (the high bits of a frame number, [`STREAM_SHIFT`]): the highest frame
    /// number taken for this key (a frame sent again is skipped). Each capture thread numbers its
    /// own frames, so one running behind another is not mistaken for a repeat.
    last_seq: Vec<u64>,
    /// Files of the key's alerts still being written, in start order (usually one; two when an
    /// alert starts before the frames of the previous one are all in).
    files: Vec<OpenFile>,
}

/// Why a file is being closed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    /// M frames written, or the budget spent: the alert goes on, its frames are no longer needed.
    Full,
    /// The alert ended, or the input did.
    Over,
}

type WatchKey = (Scope, Key);

/// Turns copied frames and start/end notices into evidence files (see the module docs).
pub struct Recorder {
    cfg: EvidenceConfig,
    /// Frames kept per key: N plus the reader's lead over the sink.
    ring_cap: usize,
    subnet_v4: u8,
    subnet_v6: u8,
    keys: HashMap<WatchKey, KeyEvidence, foldhash::fast::RandomState>,
    /// Keys with a file still waiting for frames up to its start or its end.
    pending: Vec<WatchKey>,
    ring_bytes: usize,
    /// Bytes of frames chosen for alerts the sink has not named yet (within [`RING_BUDGET`] too).
    staged_bytes: usize,
    counters: Arc<EvidenceCounters>,
    /// Every frame stamped earlier than this (counted before `through_eval` evaluations) has
    /// arrived, for the keys of `watched`.
    through: Timestamp,
    through_eval: Option<u64>,
    watched: Option<Arc<WatchedKeys>>,
    input_ended: bool,
    /// The link type of the first frame seen: the header of a file that got no frame.
    first_link: Option<LinkType>,
    /// One entry per alert the recorder is done with (its file complete, or refused): its key's
    /// frames are wanted for one alert fewer.
    released: Vec<WatchKey>,
    warning: Option<String>,
    warned: bool,
    /// Buffers of evicted frames, reused.
    spare: Vec<Vec<u8>>,
    next_file: u64,
}

impl Recorder {
    /// A recorder for `cfg` whose rings hold `before + slack` frames (`slack`: how many packets
    /// the reader may run ahead of the sink), for keys as `detect` makes them (its subnet lengths).
    pub fn new(
        cfg: EvidenceConfig,
        slack: usize,
        detect: &DetectConfig,
        counters: Arc<EvidenceCounters>,
    ) -> Recorder {
        Recorder {
            ring_cap: cfg.before.saturating_add(slack).max(1),
            cfg,
            subnet_v4: detect.subnet_v4,
            subnet_v6: detect.subnet_v6,
            keys: HashMap::default(),
            pending: Vec::new(),
            ring_bytes: 0,
            staged_bytes: 0,
            counters,
            through: Timestamp(0),
            through_eval: None,
            watched: None,
            input_ended: false,
            first_link: None,
            released: Vec::new(),
            warning: None,
            warned: false,
            spare: Vec::new(),
            next_file: 0,
        }
    }

    /// Takes a batch of frames.
    pub fn frames(&mut self, batch: &FrameBatch) {
        for f in &batch.frames {
            self.first_link.get_or_insert(f.link);
            let bytes = batch.bytes(f);
            for scope in Scope::ALL {
                if f.scopes.contains(scope) {
                    let key = key_of_addrs(scope, f.src, f.dst, self.subnet_v4, self.subnet_v6);
                    self.frame((scope, key), f, bytes);
                }
            }
        }
        // the reader's position, which steps back with the stream's time (a second file)
        self.through = batch.through;
        self.through_eval = batch.through_eval;
        self.watched.clone_from(&batch.watched);
        self.resolve_pending();
    }

    /// Takes a notice from the sink.
    pub fn notice(&mut self, n: Notice) {
        match n {
            Notice::AlertStart { id, scope, key, at } => {
                self.alert_start(id, (scope, key), at);
            }
            Notice::AlertEnd { id, scope, key, at } => self.end(&id, (scope, key), at),
            Notice::File {
                id,
                path,
                scope,
                key,
                at,
            } => self.admit(id, path, (scope, key), at),
            Notice::NoFile { id, scope, key, at } => self.refuse(&id, (scope, key), at),
        }
    }

    /// No frame will come any more: every file takes what its key's ring holds and is complete
    /// (a start told later is settled at once).
    pub fn end_input(&mut self) {
        self.input_ended = true;
        self.settle(false);
    }

    /// The run is over: every file is completed (alerts the sink never named get none).
    pub fn finish(&mut self) {
        self.input_ended = true;
        self.settle(true);
    }

    /// Completes every named file with what its key's ring holds; with `all`, drops the alerts
    /// still unnamed.
    fn settle(&mut self, all: bool) {
        let open: Vec<WatchKey> = self
            .keys
            .iter()
            .filter(|(_, ke)| !ke.files.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for k in open {
            for n in self.file_numbers(k) {
                self.select(k, n, true);
                if all && self.file(k, n).is_some_and(|o| o.path.is_none()) {
                    // never named by the sink (its output closed, or the notice was lost)
                    if let Some(o) = self.take_file(k, n) {
                        self.unstage(o.staged);
                    }
                } else {
                    self.close(k, n, Close::Over);
                }
            }
        }
        self.pending.clear();
    }

    /// Forgets the rings of keys no longer watched and without an open file (a key is watched
    /// from its alert's start until the recorder is done with the alert; its next alert takes
    /// the frames before it from the reader's look-back). A key the latest batch still names is
    /// kept: the reader copied its frames up to that batch, and a start told now counts on them.
    pub fn retain_keys(&mut self, mut watched: impl FnMut(&WatchKey) -> bool) {
        let mut freed = 0;
        let copied = self.watched.clone();
        self.keys.retain(|k, ke| {
            let keep = !ke.files.is_empty()
                || watched(k)
                || copied.as_ref().is_some_and(|w| w.contains(k));
            if !keep {
                freed += ke.ring.iter().map(|s| s.data.len()).sum::<usize>();
            }
            keep
        });
        self.ring_bytes = self.ring_bytes.saturating_sub(freed);
    }

    /// The keys of the alerts the recorder got done with since the last call, one entry per
    /// alert (for [`WatchedKeys`] kept by counting: a key stays watched while one of its alerts
    /// still wants frames).
    pub fn take_released(&mut self) -> Vec<WatchKey> {
        std::mem::take(&mut self.released)
    }

    /// The first write error, once (later ones are only counted).
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// The counters.
    pub fn stats(&self) -> EvidenceStats {
        self.counters.snapshot()
    }

    /// The numbers of `k`'s open files, in start order.
    fn file_numbers(&self, k: WatchKey) -> Vec<u64> {
        self.keys
            .get(&k)
            .map(|ke| ke.files.iter().map(|o| o.n).collect())
            .unwrap_or_default()
    }

    fn file(&self, k: WatchKey, n: u64) -> Option<&OpenFile> {
        self.keys.get(&k)?.files.iter().find(|o| o.n == n)
    }

    fn file_mut(&mut self, k: WatchKey, n: u64) -> Option<&mut OpenFile> {
        self.keys.get_mut(&k)?.files.iter_mut().find(|o| o.n == n)
    }

    /// One frame of a watched key: into its ring, and to its files.
    fn frame(&mut self, k: WatchKey, f: &FrameMeta, bytes: &[u8]) {
        let ke = self.keys.entry(k).or_default();
        let stream = (f.seq >> STREAM_SHIFT) as usize;
        if ke.last_seq.len() <= stream {
            ke.last_seq.resize(stream + 1, 0);
        }
        if f.seq <= ke.last_seq[stream] && f.seq != 0 {
            return;
        }
        ke.last_seq[stream] = ke.last_seq[stream].max(f.seq);
        // a file still to choose its frames takes them from the ring: this one goes in first
        let to_ring = ke.files.iter().all(|o| o.selected);
        if !to_ring {
            self.keep(k, f, bytes);
        }
        let mut taken = false;
        for n in self.file_numbers(k) {
            let Some(o) = self.file(k, n) else { continue };
            if !o.selected {
                if o.start.precedes(f.eval, f.ts) {
                    // a frame after the start: every frame before it is in (the ring has this one)
                    self.select(k, n, false);
                }
            } else if o.end.is_some_and(|e| e.precedes(f.eval, f.ts)) {
                // the first frame after the end: every frame of the alert is in
                self.close(k, n, Close::Over);
            } else if o.covers(f.eval, f.ts) {
                taken |= self.write_after(k, n, Record::of(f, bytes));
            }
        }
        // a frame a file took is not kept again (the key's next alert starts after this one ends)
        if to_ring && !taken {
            self.keep(k, f, bytes);
        }
    }

    /// Keeps a frame in its key's ring, evicting the oldest when the ring is full.
    fn keep(&mut self, k: WatchKey, f: &FrameMeta, bytes: &[u8]) {
        let Some(ke) = self.keys.get_mut(&k) else {
            return;
        };
        let mut buf = None;
        if ke.ring.len() >= self.ring_cap {
            if let Some(old) = ke.ring.pop_front() {
                self.ring_bytes -= old.data.len();
                buf = Some(old.data);
            }
        }
        while self.ring_bytes + self.staged_bytes + bytes.len() > RING_BUDGET {
            match ke.ring.pop_front() {
                Some(old) => {
                    self.ring_bytes -= old.data.len();
                    self.spare.push(old.data);
                }
                None => {
                    EvidenceCounters::add(&self.counters.ring_full, 1);
                    if let Some(b) = buf {
                        self.spare.push(b);
                    }
                    return;
                }
            }
        }
        let mut data = buf.or_else(|| self.spare.pop()).unwrap_or_default();
        data.clear();
        data.extend_from_slice(bytes);
        self.ring_bytes += data.len();
        ke.ring.push_back(Record::of(f, bytes).stored(f.eval, data));
        self.spare.truncate(SPARE_BUFFERS);
    }

    /// An alert of `k` started at `at` (told by its shard, or by the sink if that came first):
    /// its frames are kept from now on. Returns its file number.
    fn alert_start(&mut self, id: String, k: WatchKey, at: Mark) -> u64 {
        let ke = self.keys.entry(k).or_default();
        // (ids can repeat: the same capture replayed twice; the start's evaluation cannot)
        if let Some(o) = ke
            .files
            .iter()
            .find(|o| o.id == id && o.start.seq == at.seq)
        {
            return o.n;
        }
        for o in &mut ke.files {
            // a file whose end was never told (its notice lost) ends where this one starts
            o.end.get_or_insert(at);
        }
        self.next_file += 1;
        let n = self.next_file;
        ke.files.push(OpenFile {
            n,
            id,
            path: None,
            tmp: None,
            start: at,
            end: None,
            selected: false,
            out: None,
            file: None,
            after: 0,
            staged: Vec::new(),
            released: false,
            complete: None,
        });
        if !self.pending.contains(&k) {
            self.pending.push(k);
        }
        n
    }

    /// The sink gives the alert `id` the file `path`: it is created (under its temporary name)
    /// and takes its frames once they are in.
    fn admit(&mut self, id: String, path: PathBuf, k: WatchKey, at: Mark) {
        let n = self.alert_start(id, k, at);
        let tmp = path.with_file_name(temp_name(
            &path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ));
        let file = match File::create(&tmp) {
            Ok(f) => f,
            Err(e) => {
                self.take_file(k, n);
                self.failed(&tmp, &e);
                return;
            }
        };
        let (staged, complete) = match self.file_mut(k, n) {
            Some(o) => {
                o.path = Some(path);
                o.tmp = Some(tmp);
                o.file = Some(file);
                (std::mem::take(&mut o.staged), o.complete)
            }
            None => return,
        };
        // the frames chosen while the sink was behind go in first
        for s in &staged {
            if !self.write(k, n, s.record()) {
                break;
            }
        }
        self.unstage(staged);
        if let Some(why) = complete {
            self.close(k, n, why);
            return;
        }
        self.select(k, n, self.input_ended);
        if self.input_ended {
            self.close(k, n, Close::Over);
        } else if !self.pending.contains(&k) {
            self.pending.push(k);
        }
    }

    /// Lets go of frames staged for a file.
    fn unstage(&mut self, staged: Vec<Stored>) {
        for s in staged {
            self.staged_bytes -= s.data.len();
            self.spare.push(s.data);
        }
        self.spare.truncate(SPARE_BUFFERS);
    }

    /// The sink gives the alert `id` no file: its frames need not be kept.
    fn refuse(&mut self, id: &str, k: WatchKey, at: Mark) {
        let n = self
            .keys
            .get(&k)
            .and_then(|ke| {
                ke.files
                    .iter()
                    .find(|o| o.id == id && o.start.seq == at.seq)
            })
            .map(|o| o.n);
        if let Some(o) = n.and_then(|n| self.take_file(k, n)) {
            self.unstage(o.staged);
        }
    }

    fn end(&mut self, id: &str, k: WatchKey, at: Mark) {
        let Some(ke) = self.keys.get_mut(&k) else {
            return;
        };
        // an end comes after its start (the same id may come again later, replayed)
        let open = ke
            .files
            .iter_mut()
            .find(|o| o.id == id && o.end.is_none() && o.start.seq < at.seq);
        let Some(o) = open else {
            return; // complete already, or never opened
        };
        o.end = Some(at);
        let (n, selected) = (o.n, o.selected);
        if selected && self.past(k, at) {
            self.close(k, n, Close::Over);
        } else if !self.pending.contains(&k) {
            self.pending.push(k);
        }
    }

    /// Whether every frame of `k` up to `at` has arrived, so a file of an alert of `k` that ended
    /// at `at` is complete: the reader is past `at` while watching `k`, or the input is over.
    /// (A key stays watched until the recorder releases it.)
    fn past(&self, k: WatchKey, at: Mark) -> bool {
        self.input_ended || (self.watching(k) && self.reader_past(at))
    }

    /// Whether the reader has offered every frame before `at`.
    fn reader_past(&self, at: Mark) -> bool {
        match self.through_eval {
            Some(e) => e >= at.seq,
            None => self.through > at.ts,
        }
    }

    /// Whether the copier watched `k` when it sent the latest batch.
    fn watching(&self, k: WatchKey) -> bool {
        self.watched.as_ref().is_none_or(|w| w.contains(&k))
    }

    fn resolve_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for k in pending {
            for n in self.file_numbers(k) {
                self.select(k, n, false);
                let over = self
                    .file(k, n)
                    .filter(|o| o.selected)
                    .and_then(|o| o.end)
                    .is_some_and(|end| self.past(k, end));
                if over {
                    self.close(k, n, Close::Over);
                }
            }
            let still = self
                .keys
                .get(&k)
                .is_some_and(|ke| ke.files.iter().any(OpenFile::pending));
            if still && !self.pending.contains(&k) {
                self.pending.push(k);
            }
        }
    }

    /// Writes the frames before the start of `k`'s file `n` (and the ring's frames after it) once
    /// every frame up to the start has arrived — or at once with `now`.
    fn select(&mut self, k: WatchKey, n: u64, now: bool) {
        let Some(o) = self.file(k, n).filter(|o| !o.selected) else {
            return;
        };
        let start = o.start;
        // the reader's position counts for `k` only while it watches `k` (before, it did not copy
        // `k`'s frames; it sends those it still holds when it starts watching)
        let reader_past = self.watching(k) && self.reader_past(start);
        let Some(ke) = self.keys.get_mut(&k) else {
            return;
        };
        let frame_after = ke.ring.back().is_some_and(|s| start.precedes(s.eval, s.ts));
        if !(now || self.input_ended || reader_past || frame_after) {
            return;
        }
        let ring = std::mem::take(&mut ke.ring);
        let Some(o) = ke.files.iter_mut().find(|o| o.n == n) else {
            ke.ring = ring;
            return;
        };
        o.selected = true;
        let (before, after) =
            select_positions(&ring, |s| start.precedes(s.eval, s.ts), self.cfg.before);
        let end = o.end;
        if before.len() < self.cfg.before {
            EvidenceCounters::add(&self.counters.short_before, 1);
        }
        for &i in &before {
            if let Some(s) = ring.get(i) {
                if !self.write(k, n, s.record()) {
                    break;
                }
            }
        }
        // frames after the start that the file does not take stay for the key's next alert
        let mut keep = vec![false; ring.len()];
        for &i in &after {
            let Some(s) = ring.get(i) else { continue };
            let taken = !end.is_some_and(|e| e.precedes(s.eval, s.ts))
                && self.file(k, n).is_some()
                && self.write_after(k, n, s.record());
            keep[i] = !taken;
        }
        if let Some(ke) = self.keys.get_mut(&k) {
            if ke.files.iter().any(|o| !o.selected) {
                ke.ring = ring; // another alert still chooses from all of it
            } else {
                let mut kept = VecDeque::with_capacity(ring.len());
                for (s, keep) in ring.into_iter().zip(keep) {
                    if keep {
                        kept.push_back(s);
                    } else {
                        self.ring_bytes -= s.data.len();
                        self.spare.push(s.data);
                    }
                }
                self.spare.truncate(SPARE_BUFFERS);
                if let Some(ke) = self.keys.get_mut(&k) {
                    ke.ring = kept;
                }
            }
        }
        if self.cfg.after == 0 && self.file(k, n).is_some() {
            self.close(k, n, Close::Full);
        }
    }

    /// Writes one frame after the start; closes the file at M frames. True when it was taken.
    fn write_after(&mut self, k: WatchKey, n: u64, r: Record<'_>) -> bool {
        let limit = self.cfg.after;
        match self.file(k, n) {
            Some(o) if o.after < limit => {}
            _ => return false,
        }
        let taken = self.write(k, n, r);
        if taken {
            if let Some(o) = self.file_mut(k, n) {
                o.after += 1;
                if o.after >= limit {
                    self.close(k, n, Close::Full);
                }
            }
        }
        taken
    }

    /// Writes one record to `k`'s file `n`; false when the file is gone (closed at the budget, or
    /// failed). A frame of another link type than the file's is skipped (and true returned).
    fn write(&mut self, k: WatchKey, n: u64, r: Record<'_>) -> bool {
        let counters = Arc::clone(&self.counters);
        if self.file(k, n).is_some_and(|o| o.path.is_none()) {
            return self.stage(k, n, r);
        }
        let Some(o) = self.file_mut(k, n) else {
            return false;
        };
        if let Some(file) = o.file.take() {
            o.out = Some(pcap_file(file, r.link));
        }
        let Some(out) = o.out.as_mut() else {
            return false;
        };
        if r.link != out.link() {
            EvidenceCounters::add(&counters.link_skipped, 1);
            return true;
        }
        let len = out.record_len(r.data.len());
        if !counters.take(len) {
            EvidenceCounters::add(&counters.cut_at_cap, 1);
            self.close(k, n, Close::Full);
            return false;
        }
        match out.record(r.ts, r.data, r.wire_len) {
            Ok(()) => {
                EvidenceCounters::add(&counters.packets, 1);
                EvidenceCounters::add(&counters.bytes, len);
                true
            }
            Err(e) => {
                let tmp = o.tmp.clone().unwrap_or_default();
                self.abandon(k, n, &tmp, &e);
                false
            }
        }
    }

    /// Keeps a frame for a file the sink has not named yet (true: taken, or dropped at the
    /// budget and counted).
    fn stage(&mut self, k: WatchKey, n: u64, r: Record<'_>) -> bool {
        if self.ring_bytes + self.staged_bytes + r.data.len() > RING_BUDGET {
            EvidenceCounters::add(&self.counters.ring_full, 1);
            return true;
        }
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(r.data);
        self.staged_bytes += data.len();
        if let Some(o) = self.file_mut(k, n) {
            o.staged.push(r.stored(None, data));
        }
        true
    }

    /// Takes `k`'s file `n` out of the open ones.
    fn take_file(&mut self, k: WatchKey, n: u64) -> Option<OpenFile> {
        let ke = self.keys.get_mut(&k)?;
        let i = ke.files.iter().position(|o| o.n == n)?;
        let o = ke.files.remove(i);
        if !o.released {
            self.released.push(k);
        }
        Some(o)
    }

    /// Completes `k`'s file `n`: flushes it and gives it its final name.
    fn close(&mut self, k: WatchKey, n: u64, why: Close) {
        if let Some(o) = self.file_mut(k, n).filter(|o| o.path.is_none()) {
            // not named yet: complete once it is; its frames are no longer wanted
            o.complete.get_or_insert(why);
            if !std::mem::replace(&mut o.released, true) {
                self.released.push(k);
            }
            return;
        }
        let Some(o) = self.take_file(k, n) else {
            return;
        };
        self.unstage(o.staged);
        let (Some(path), Some(tmp)) = (o.path, o.tmp) else {
            return; // never named by the sink: no file
        };
        let link = self.first_link.unwrap_or(LinkType::ETHERNET);
        let out = match (o.out, o.file) {
            (Some(out), _) => Some(out),
            (None, Some(file)) => Some(pcap_file(file, link)),
            (None, None) => None,
        };
        let Some(out) = out else { return };
        let result = out
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|_| std::fs::rename(&tmp, &path));
        match result {
            Ok(()) => {
                EvidenceCounters::add(&self.counters.files, 1);
                EvidenceCounters::add(&self.counters.bytes, FILE_HEADER_LEN);
            }
            Err(e) => self.failed(&tmp, &e),
        }
    }

    /// Gives up `k`'s file `n` after a write error.
    fn abandon(&mut self, k: WatchKey, n: u64, tmp: &Path, e: &io::Error) {
        self.take_file(k, n);
        self.failed(tmp, e);
    }

    /// Counts a failed file (warning about the first) and removes what was written of it.
    fn failed(&mut self, tmp: &Path, e: &io::Error) {
        EvidenceCounters::add(&self.counters.write_errors, 1);
        let _ = std::fs::remove_file(tmp);
        if !self.warned {
            self.warned = true;
            self.warning = Some(format!(
                "cannot write evidence file {}: {e}; detection goes on, and later evidence \
                 errors are only counted (see the summary)",
                tmp.display()
            ));
        }
    }
}

/// A nanosecond pcap writer of `link` frames over `file`.
fn pcap_file(file: File, link: LinkType) -> PcapWriter<BufWriter<File>> {
    PcapWriter::new(
        BufWriter::with_capacity(FILE_BUFFER, file),
        link,
        TsResolution::Nano,
        MAX_SNAPLEN,
        FILE_BUFFER,
    )
}

/// Which frames of a ring go into a file for an alert: the positions of the last `n` frames
/// before its start and of every frame after it (`after` tells), each in ring order.
pub fn select_positions<T>(
    ring: &VecDeque<T>,
    after: impl Fn(&T) -> bool,
    n: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut before: Vec<usize> = ring
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, f)| !after(f))
        .take(n)
        .map(|(i, _)| i)
        .collect();
    before.reverse();
    let later = ring
        .iter()
        .enumerate()
        .filter(|(_, f)| after(f))
        .map(|(i, _)| i)
        .collect();
    (before, later)
}

#[cfg(test)]
mod tests {
    use super::super::file_name;
    use super::*;
    use crate::capture::file::FileSource;
    use crate::capture::FrameSource;
    use crate::detect::ScopeMask;
    use std::net::IpAddr;

    const VICTIM: [u8; 4] = [198, 51, 100, 10];
    const MS: u64 = 1_000_000;
    const T0: u64 = 1_764_079_200 * Timestamp::NANOS_PER_SEC;

    fn dst_host() -> (Scope, Key) {
        (Scope::DstHost, Key::host(IpAddr::from(VICTIM)))
    }

    /// Frame `seq`, at `T0 + ms`.
    fn mark(seq: u64, ms: u64) -> Mark {
        Mark {
            seq,
            ts: Timestamp(T0 + ms * MS),
        }
    }

    /// The alert `id` on the victim starts at `at`.
    fn alert_start(id: &str, at: Mark) -> Notice {
        let (scope, key) = dst_host();
        Notice::AlertStart {
            id: id.to_string(),
            scope,
            key,
            at,
        }
    }

    /// The alert `id` on the victim, started at `at`, gets the file `path`.
    fn file(id: &str, path: PathBuf, at: Mark) -> Notice {
        let (scope, key) = dst_host();
        Notice::File {
            id: id.to_string(),
            path,
            scope,
            key,
            at,
        }
    }

    /// A batch of frames to the victim (watched in dst_host), at `T0 + ms` each, 60 bytes whose
    /// first two say the millisecond; the reader is through the last of them.
    fn batch(ms: impl IntoIterator<Item = u64>) -> FrameBatch {
        batch_of(ms, LinkType::ETHERNET)
    }

    fn batch_of(ms: impl IntoIterator<Item = u64>, link: LinkType) -> FrameBatch {
        let mut b = FrameBatch::default();
        let mut mask = ScopeMask(0);
        mask.insert(Scope::DstHost);
        for m in ms {
            let mut data = [0u8; 60];
            data[..2].copy_from_slice(&(m as u16).to_be_bytes());
            let ts = Timestamp(T0 + m * MS);
            let meta = FrameMeta {
                seq: m + 1,
                eval: None,
                ts,
                wire_len: 60,
                link,
                offset: 0,
                len: 0,
                src: IpAddr::from([192, 0, 2, 1]),
                dst: IpAddr::from(VICTIM),
                scopes: mask,
            };
            b.push(&data, meta);
            b.through = ts;
        }
        b
    }

    struct Setup {
        dir: tempfile::TempDir,
        rec: Recorder,
        counters: Arc<EvidenceCounters>,
    }

    fn setup(before: usize, after: usize, slack: usize, max_bytes: u64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(EvidenceCounters::new(max_bytes));
        let cfg = EvidenceConfig {
            dir: dir.path().to_path_buf(),
            before,
            after,
            max_bytes,
        };
        let rec = Recorder::new(cfg, slack, &DetectConfig::default(), Arc::clone(&counters));
        Setup { dir, rec, counters }
    }

    impl Setup {
        fn start(&mut self, id: &str, ms: u64) -> PathBuf {
            assert!(self.counters.admit_file());
            let path = self.dir.path().join(file_name(id));
            self.rec.notice(file(id, path.clone(), mark(ms, ms)));
            path
        }

        fn end(&mut self, id: &str, ms: u64) {
            let (scope, key) = dst_host();
            let id = id.to_string();
            let at = mark(ms, ms);
            self.rec.notice(Notice::AlertEnd { id, scope, key, at });
        }
    }

    /// The milliseconds (from the frames' first bytes) of the packets in `path`, and their link
    /// type; checks times and lengths survived.
    fn read(path: &Path) -> (Vec<u64>, LinkType) {
        let mut src = FileSource::open(path).unwrap();
        let mut ms = Vec::new();
        let mut link = LinkType::ETHERNET;
        while let Some(f) = src.next_frame().unwrap() {
            let m = u64::from(u16::from_be_bytes([f.data[0], f.data[1]]));
            assert_eq!(f.ts, Timestamp(T0 + m * MS));
            assert_eq!((f.data.len(), f.wire_len), (60, 60));
            link = f.link;
            ms.push(m);
        }
        (ms, link)
    }

    #[test]
    fn selection_takes_the_last_n_before_the_start_and_everything_after() {
        let ring: VecDeque<u64> = [1, 2, 3, 4, 5, 6].into_iter().collect();
        let (b, a) = select_positions(&ring, |t| *t > 4, 2);
        assert_eq!((b, a), (vec![2, 3], vec![4, 5]));
        let (b, a) = select_positions(&ring, |t| *t > 4, 10);
        assert_eq!((b, a), (vec![0, 1, 2, 3], vec![4, 5]));
        let (b, a) = select_positions(&ring, |_| true, 3);
        assert_eq!((b, a), (vec![], vec![0, 1, 2, 3, 4, 5]));
        // by time, a late frame (stamped before the start, read after a later one) is before
        let ring: VecDeque<u64> = [1, 5, 2, 6].into_iter().collect();
        let (b, a) = select_positions(&ring, |t| *t > 3, 5);
        assert_eq!((b, a), (vec![0, 2], vec![1, 3]));
    }

    #[test]
    fn a_file_holds_n_before_and_m_after_once_the_reader_is_past_the_start() {
        let mut s = setup(5, 4, 100, u64::MAX);
        s.rec.frames(&batch(0..20));
        // the sink is behind the reader: the start at 12 ms comes after frames up to 19 ms
        let path = s.start("dst_host/198.51.100.10/syn_flood/1", 12);
        s.rec.frames(&batch(20..30));
        assert!(path.exists(), "M frames after the start complete the file");
        assert!(!s
            .dir
            .path()
            .join(temp_name(&file_name("dst_host/198.51.100.10/syn_flood/1")))
            .exists());
        let (ms, link) = read(&path);
        assert_eq!(ms, vec![8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(link, LinkType::ETHERNET);
        // complete while the alert goes on: the copier may stop (the alert is released, once)
        assert_eq!(s.rec.take_released(), vec![dst_host()]);
        s.end("dst_host/198.51.100.10/syn_flood/1", 40);
        assert!(s.rec.take_released().is_empty());
        let st = s.rec.stats();
        assert_eq!((st.files, st.packets, st.short_before), (1, 9, 0));
        assert_eq!(st.bytes, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_start_waits_for_the_frames_up_to_it_and_an_end_for_the_frames_up_to_it() {
        let mut s = setup(3, 100, 100, u64::MAX);
        s.rec.frames(&batch([0, 1, 2, 3]));
        // the sink is ahead of the copied frames: the frames up to 6 ms are still to come
        let path = s.start("a", 6);
        s.rec.frames(&batch([4, 5, 6]));
        s.rec.frames(&batch([7, 8]));
        s.end("a", 9);
        s.rec.frames(&batch([9]));
        let tmp = s.dir.path().join(temp_name("a.pcap"));
        assert!(
            tmp.exists() && !path.exists(),
            "not complete before the reader is past the end"
        );
        s.rec.frames(&batch([10, 11]));
        assert!(path.exists() && !tmp.exists());
        assert_eq!(read(&path).0, vec![4, 5, 6, 7, 8, 9]);
        // the frames after the end wait in the ring for the key's next alert
        let path2 = s.start("b", 30);
        s.rec.end_input();
        assert_eq!(read(&path2).0, vec![10, 11]);
        assert_eq!(s.rec.stats().short_before, 1);
    }

    #[test]
    fn a_batch_that_is_past_the_start_settles_it_without_frames_of_the_key() {
        let mut s = setup(2, 100, 100, u64::MAX);
        s.rec.frames(&batch([0, 1, 2]));
        let path = s.start("a", 5);
        let mut quiet = FrameBatch {
            through: Timestamp(T0 + 6 * MS),
            ..FrameBatch::default()
        };
        s.rec.frames(&quiet);
        s.end("a", 7);
        quiet.through = Timestamp(T0 + 8 * MS);
        s.rec.frames(&quiet);
        assert_eq!(read(&path).0, vec![1, 2]);
    }

    #[test]
    fn the_ring_keeps_n_plus_slack_frames_and_counts_a_short_before() {
        let mut s = setup(4, 10, 2, u64::MAX);
        s.rec.frames(&batch(0..10));
        // 6 frames kept (4 + 2): 4 to 9; the start at 8 ms takes 5 to 8 before it, 9 after
        let path = s.start("a", 8);
        s.rec.finish();
        assert_eq!(read(&path).0, vec![5, 6, 7, 8, 9]);
        assert_eq!(s.rec.stats().short_before, 0);
        let mut s = setup(4, 10, 0, u64::MAX);
        s.rec.frames(&batch(0..10));
        let path = s.start("a", 8);
        s.rec.finish();
        assert_eq!(read(&path).0, vec![6, 7, 8, 9]);
        assert_eq!(s.rec.stats().short_before, 1);
    }

    #[test]
    fn the_budget_stops_a_file_and_refuses_later_alerts() {
        // header 24 + 3 records of 76 bytes
        let mut s = setup(10, 100, 100, 24 + 3 * 76);
        s.rec.frames(&batch(0..10));
        let path = s.start("a", 1);
        assert!(path.exists(), "the file is complete at the budget");
        assert_eq!(read(&path).0, vec![0, 1, 2]);
        assert!(!s.counters.admit_file(), "no room left for another file");
        let st = s.rec.stats();
        assert_eq!((st.cut_at_cap, st.skipped_cap), (1, 1));
        assert_eq!(st.bytes, 24 + 3 * 76);
    }

    #[test]
    fn frames_of_another_link_type_are_skipped_and_counted() {
        let mut s = setup(10, 100, 100, u64::MAX);
        s.rec.frames(&batch_of([0, 1], LinkType::LINUX_SLL));
        s.rec.frames(&batch([2, 3]));
        let path = s.start("a", 5);
        s.rec.finish();
        assert_eq!(read(&path), (vec![0, 1], LinkType::LINUX_SLL));
        assert_eq!(s.rec.stats().link_skipped, 2);
    }

    #[test]
    fn an_alert_with_no_frames_gets_an_empty_capture() {
        let mut s = setup(10, 100, 100, u64::MAX);
        let path = s.start("a", 5);
        s.rec.finish();
        assert_eq!(read(&path).0, Vec::<u64>::new());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    }

    #[test]
    fn a_write_error_is_counted_and_warned_about_once() {
        let mut s = setup(10, 100, 100, u64::MAX);
        s.rec.frames(&batch(0..3));
        let gone = s.dir.path().join("gone");
        for id in ["a", "b"] {
            s.rec.notice(file(id, gone.join(file_name(id)), mark(0, 1)));
        }
        let warning = s.rec.take_warning().expect("a warning");
        assert!(warning.contains("gone"), "{warning}");
        assert!(s.rec.take_warning().is_none());
        assert_eq!(s.rec.stats().write_errors, 2);
        // the copier may skip the key: its alerts will get no file
        assert_eq!(s.rec.take_released(), vec![dst_host(), dst_host()]);
    }

    #[test]
    fn by_evaluations_a_second_pass_over_the_same_times_is_told_apart() {
        // the same capture twice: times repeat, the evaluation counts go on
        let mut s = setup(2, 3, 100, u64::MAX);
        let pass = |from_seq: u64, eval0: u64| {
            let mut b = batch(0..10);
            for f in &mut b.frames {
                f.seq += from_seq;
                // an evaluation every 2 ms
                f.eval = Some(eval0 + (f.ts.0 - T0) / MS / 2);
            }
            b.through_eval = b.frames.last().and_then(|f| f.eval);
            b
        };
        let start = |s: &mut Setup, id: &str, seq: u64| {
            assert!(s.counters.admit_file());
            let path = s.dir.path().join(file_name(id));
            s.rec.notice(file(id, path.clone(), mark(seq, 4)));
            path
        };
        s.rec.frames(&pass(0, 0));
        s.rec.frames(&pass(100, 100));
        // evaluation 2 (at 4 ms) of the first pass, evaluation 102 (at 4 ms again) of the second
        let first = start(&mut s, "a", 2);
        let second = start(&mut s, "b", 102);
        s.rec.finish();
        assert_eq!(read(&first).0, vec![2, 3, 4, 5, 6]);
        assert_eq!(read(&second).0, vec![2, 3, 4, 5, 6]);
        let mut f = FileSource::open(&second).unwrap();
        f.next_frame().unwrap();
        // the second file holds the second pass's frames (their numbers went on)
        assert_eq!(s.rec.keys[&dst_host()].last_seq, [110]);
    }

    #[test]
    fn the_shards_hint_keeps_the_frames_around_a_start_however_late_the_sink_names_it() {
        // rings of 4 + 2 frames: 100 frames later the start's would be long gone from the ring
        let mut s = setup(4, 3, 2, u64::MAX);
        let at = mark(0, 10);
        s.rec.frames(&batch(0..12));
        s.rec.notice(alert_start("a", at));
        s.rec.frames(&batch(12..100));
        assert!(s.rec.keys[&dst_host()].ring.len() <= 4 + 3 + 1);
        assert!(s.counters.admit_file());
        let path = s.dir.path().join("a.pcap");
        s.rec.notice(file("a", path.clone(), at));
        assert_eq!(read(&path).0, vec![7, 8, 9, 10, 11, 12, 13]);
        // an alert the sink gives no file releases its frames
        let at = mark(0, 150);
        s.rec.notice(alert_start("b", at));
        s.rec.frames(&batch(100..200));
        let (scope, key) = dst_host();
        let id = "b".to_string();
        s.rec.notice(Notice::NoFile { id, scope, key, at });
        assert!(s.rec.keys[&dst_host()].files.is_empty());
        s.rec.frames(&batch(200..300));
        assert_eq!(s.rec.keys[&dst_host()].ring.len(), 6);
        s.rec.finish();
        assert_eq!(s.rec.stats().files, 1);
    }

    #[test]
    fn a_frame_sent_again_is_kept_once() {
        let mut s = setup(10, 100, 100, u64::MAX);
        s.rec.frames(&batch(0..5));
        s.rec.frames(&batch(3..8));
        let path = s.start("a", 4);
        s.rec.finish();
        assert_eq!(read(&path).0, (0..8).collect::<Vec<u64>>());
    }

    #[test]
    fn keys_no_longer_watched_are_forgotten_with_their_rings() {
        let mut s = setup(10, 100, 100, u64::MAX);
        s.rec.frames(&batch(0..3));
        assert_eq!(s.rec.ring_bytes, 180);
        s.rec.retain_keys(|_| true);
        assert_eq!(s.rec.ring_bytes, 180, "watched keys are kept");
        s.rec.retain_keys(|_| false);
        assert_eq!(s.rec.ring_bytes, 0);
        assert!(s.rec.keys.is_empty());
    }
}
