//! Attack samples as pcap (`--evidence-dir`): for every alert, a capture file of the packets of its
//! (scope, key) — the last N before the start and the first M after it — that tcpdump, tshark and
//! Wireshark read. (Not to be confused with [`crate::evidence`], the per-key top peers and ports that
//! go into the alert itself.)
//!
//! This module is the part without threads or channels: the [`Recorder`] that keeps a ring of
//! recent frames per watched key and turns start/end [`Notice`]s into files, the [`FrameBatch`]es the
//! reader copies frames into, file-safe names ([`file_name`]), the shared [`EvidenceCounters`] (with
//! the `--evidence-max-bytes` budget), and [`prepare_dir`]. `pipeline::evidence` runs it.
//!
//! How a file is made:
//! - *Where "before" ends.* A start event comes from an evaluation, the `seq`-th of the run; the
//!   reader stamps each frame with the number of evaluations the stream's clock had stepped through
//!   when the frame was counted. A frame is after the start when that number is at least the
//!   event's `seq` ([`Mark::precedes`]): exact, whatever the timestamps do (a capture replayed
//!   twice, late packets). Readers that do not run the clock (several capture threads) fall back to
//!   comparing timestamps.
//! - *When the frames are in.* The reader runs ahead of the shards, and the sink may be far behind
//!   them. The shard owning the key tells the recorder of the start as it evaluates
//!   ([`Notice::AlertStart`]); the recorder chooses the frames *lazily*, once every frame before the
//!   start has arrived — a frame of the key after it came, or a batch said the reader is past it
//!   while watching the key ([`FrameBatch::through_eval`], [`FrameBatch::watched`]), or the input
//!   ended: the last N frames of the ring before the start, then the ring's frames after it, then
//!   every new frame of the key, until M are written, the alert has ended (frames after the end,
//!   by the same rule, are left out), the budget is spent or the run ends. The ring holds N frames
//!   plus the reader's lead over the shards.
//! - *Where they go.* Until the sink names the file ([`Notice::File`]) or refuses it
//!   ([`Notice::NoFile`]), the chosen frames wait in memory; then they are written to
//!   `DIR/.NAME.pcap.tmp`, which is renamed to `DIR/NAME.pcap` when complete.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::DetectConfig;
use crate::decode::LinkType;
use crate::detect::ScopeMask;
use crate::key::{Key, Scope};
use crate::pcap_writer::{PcapWriter, TsResolution, FILE_HEADER_LEN, MAX_SNAPLEN};
use crate::time::Timestamp;

/// `--evidence-before` by default.
pub const DEFAULT_BEFORE: usize = 1000;
/// `--evidence-after` by default.
pub const DEFAULT_AFTER: usize = 10_000;
/// `--evidence-max-bytes` by default: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Bytes all the rings of recent frames may hold together (frames past it are dropped and
/// counted): the rings are `N + slack` frames a key, and a flood of jumbo frames on many keys must
/// not grow the process without bound.
pub const RING_BUDGET: usize = 256 << 20;
/// Frame buffers kept for reuse (a ring's frame that leaves gives its buffer to the next).
const SPARE_BUFFERS: usize = 4096;
/// Bytes a file buffers between writes.
const FILE_BUFFER: usize = 64 << 10;

/// What `--evidence-dir` and its companions ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceConfig {
    /// Where the files go.
    pub dir: PathBuf,
    /// Frames of the key before the alert's start, at most (`--evidence-before`).
    pub before: usize,
    /// Frames of the key from the start on, at most (`--evidence-after`).
    pub after: usize,
    /// Bytes all files of the run may take together (`--evidence-max-bytes`).
    pub max_bytes: u64,
}

impl EvidenceConfig {
    /// The defaults, writing to `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> EvidenceConfig {
        EvidenceConfig {
            dir: dir.into(),
            before: DEFAULT_BEFORE,
            after: DEFAULT_AFTER,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Why evidence files cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("cannot write evidence files to {}: {source} (create the directory and make it writable, or give --evidence-dir another one)", dir.display())]
    Dir { dir: PathBuf, source: io::Error },
}

/// Creates `dir` if needed and proves a file can be written (and removed) in it, so a bad
/// `--evidence-dir` fails before any input is read.
pub fn prepare_dir(dir: &Path) -> Result<(), EvidenceError> {
    let fail = |source| EvidenceError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".floodwatch-probe-{}.tmp", std::process::id()));
    File::create(&probe).map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// The file name of an alert's evidence: its id made file-safe, plus `.pcap`. Every character
/// other than ASCII letters, digits, `.` and `-` becomes `_`, except `:` (IPv6 addresses), which
/// becomes `-`; so `dst_host/2001:db8::10/syn_flood/1764081790.250000` is
/// `dst_host_2001-db8--10_syn_flood_1764081790.250000.pcap`. Ids are made of a scope, an address
/// or prefix, a class and a time, so different ids give different names; a name that would start
/// with `.` (hidden) gets a `_` in front.
pub fn file_name(id: &str) -> String {
    let mut name: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            ':' => '-',
            _ => '_',
        })
        .collect();
    if name.starts_with('.') || name.is_empty() {
        name.insert(0, '_');
    }
    name.push_str(".pcap");
    name
}

/// The temporary name a file is written under until it is complete.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

/// The key of `scope` for a packet from `src` to `dst` ([`crate::detect::key_of`] on addresses).
pub fn key_of_addrs(scope: Scope, src: IpAddr, dst: IpAddr, subnet_v4: u8, subnet_v6: u8) -> Key {
    match scope {
        Scope::DstHost => Key::host(dst),
        Scope::DstSubnet => Key::subnet(dst, subnet_v4, subnet_v6),
        Scope::SrcHost => Key::host(src),
        Scope::SrcSubnet => Key::subnet(src, subnet_v4, subnet_v6),
    }
}

/// One frame the reader copied: its place in [`FrameBatch::data`], what pcap needs, and the
/// addresses and scopes it matched watched keys in.
#[derive(Clone, Copy, Debug)]
pub struct FrameMeta {
    /// The frame's number in reading order: a frame sent twice (the reader looks back over its
    /// recent frames when a key becomes watched) is kept once.
    pub seq: u64,
    /// Evaluations the engine had run when the frame was counted (the router's count), when the
    /// copier knows it (None with several capture threads, which read apart from the router):
    /// a frame is after an alert's start when this is at least the start event's evaluation.
    pub eval: Option<u64>,
    pub ts: Timestamp,
    pub wire_len: u32,
    pub link: LinkType,
    /// Offset and captured length in the batch's data.
    pub offset: u32,
    pub len: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The scopes whose key of this frame is watched.
    pub scopes: ScopeMask,
}

/// Frames the reader copied, in reading order, with the reader's progress.
#[derive(Debug, Default)]
pub struct FrameBatch {
    pub data: Vec<u8>,
    pub frames: Vec<FrameMeta>,
    /// Every frame stamped earlier than this has been offered to the copier (copied into this or
    /// an earlier batch, dropped and counted, or not watched) …
    pub through: Timestamp,
    /// … and every frame counted before this many evaluations (when the copier knows them).
    pub through_eval: Option<u64>,
    /// The keys the copier watched when it sent the batch (None: every key). For a key among
    /// them, every frame of it up to `through` has been sent: the copier sends the frames it
    /// holds of a key as soon as the key is watched, before any batch that names it.
    pub watched: Option<Arc<WatchedKeys>>,
}

/// A set of (scope, key)s whose frames are copied.
#[derive(Debug, Default)]
pub struct WatchedKeys {
    keys: HashSet<(Scope, Key), foldhash::fast::RandomState>,
    /// The scopes with at least one key in the set.
    scopes: ScopeMask,
}

impl WatchedKeys {
    pub fn insert(&mut self, k: (Scope, Key)) {
        self.keys.insert(k);
        self.scopes.insert(k.0);
    }

    #[inline]
    pub fn contains(&self, k: &(Scope, Key)) -> bool {
        self.keys.contains(k)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The scopes with at least one key in the set.
    #[inline]
    pub fn scopes(&self) -> ScopeMask {
        self.scopes
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Scope, Key)> + '_ {
        self.keys.iter()
    }

    /// Whether both hold the same keys.
    pub fn same_keys(&self, other: &WatchedKeys) -> bool {
        self.keys == other.keys
    }
}

impl FrameBatch {
    /// Appends a frame: its bytes, and `meta` but for the place, which this sets.
    #[inline]
    pub fn push(&mut self, data: &[u8], meta: FrameMeta) {
        let offset = self.data.len() as u32;
        self.data.extend_from_slice(data);
        self.frames.push(FrameMeta {
            offset,
            len: data.len() as u32,
            ..meta
        });
    }

    /// The captured bytes of `f`.
    pub fn bytes(&self, f: &FrameMeta) -> &[u8] {
        let start = f.offset as usize;
        self.data
            .get(start..start + f.len as usize)
            .unwrap_or_default()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
        self.through = Timestamp(0);
        self.through_eval = None;
        self.watched = None;
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// What the sink tells the recorder, in the order it writes the events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The shard owning the key: an alert started at `at`. Sent as the shard emits the event, long
    /// before the sink may get to it: the key's frames around the start are kept from then on.
    AlertStart {
        id: String,
        scope: Scope,
        key: Key,
        at: Mark,
    },
    /// The shard (and the sink, for an alert with a file): the alert `id` ended at `at`.
    AlertEnd {
        id: String,
        scope: Scope,
        key: Key,
        at: Mark,
    },
    /// The sink: the alert `id` (started at `at`) gets the file `path` (its `evidence` field).
    File {
        id: String,
        path: PathBuf,
        scope: Scope,
        key: Key,
        at: Mark,
    },
    /// The sink: the alert `id` (started at `at`) gets no file (`--evidence-max-bytes`, or the
    /// writer was behind).
    NoFile {
        id: String,
        scope: Scope,
        key: Key,
        at: Mark,
    },
}

/// Where an event happened in the stream: the evaluation that produced it
/// ([`AlertEvent::seq`](crate::alert::AlertEvent)) and its packet time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    pub ts: Timestamp,
}

impl Mark {
    /// Whether a frame counted after `eval` evaluations (if known) and stamped `ts` comes after
    /// this point of the stream. By evaluations when known — exact whatever the timestamps do (a
    /// second file earlier in time, late packets); else by time.
    #[inline]
    pub fn precedes(&self, eval: Option<u64>, ts: Timestamp) -> bool {
        match eval {
            Some(e) => e >= self.seq,
            None => ts > self.ts,
        }
    }
}

/// The evidence counters of a run, as the summary and the metrics show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvidenceStats {
    /// Files completed (renamed to their final name).
    pub files: u64,
    /// Packets written into them.
    pub packets: u64,
    /// Bytes of all files, headers included.
    pub bytes: u64,
    /// Frames the reader could not hand to the writer because it was behind (its queue was full).
    pub dropped: u64,
    /// Frames not kept because the rings held [`RING_BUDGET`] bytes.
    pub ring_full: u64,
    /// Alerts without a file: `--evidence-max-bytes` was reached.
    pub skipped_cap: u64,
    /// Alerts without a file: the writer was too far behind to take the notice.
    pub skipped_busy: u64,
    /// Files that stopped growing at `--evidence-max-bytes`.
    pub cut_at_cap: u64,
    /// Frames left out of a file because their link type differs from the file's.
    pub link_skipped: u64,
    /// Files given up on a write error (the first one is also printed as a warning).
    pub write_errors: u64,
    /// Files with fewer frames before the start than `--evidence-before` (the key was watched
    /// too late, or its ring overflowed before the start was known).
    pub short_before: u64,
}

/// The counters, shared by the reader (drops), the sink (skipped alerts, the budget) and the
/// recorder (the rest); also what `--metrics-listen` shows.
#[derive(Debug, Default)]
pub struct EvidenceCounters {
    max_bytes: u64,
    /// Bytes taken from the budget: headers reserved by the sink, records by the recorder.
    used: AtomicU64,
    files: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    ring_full: AtomicU64,
    skipped_cap: AtomicU64,
    skipped_busy: AtomicU64,
    cut_at_cap: AtomicU64,
    link_skipped: AtomicU64,
    write_errors: AtomicU64,
    short_before: AtomicU64,
}

impl EvidenceCounters {
    /// Counters for a run whose files may take `max_bytes` together.
    pub fn new(max_bytes: u64) -> EvidenceCounters {
        EvidenceCounters {
            max_bytes,
            ..EvidenceCounters::default()
        }
    }

    /// The sink, at an alert's start: whether it gets a file. It does while the files so far
    /// take less than the budget; its file header is reserved at once, so alerts starting
    /// together are decided in the order they are written.
    pub fn admit_file(&self) -> bool {
        let r = Ordering::Relaxed;
        let admitted = self
            .used
            .fetch_update(r, r, |u| {
                (u < self.max_bytes).then_some(u.saturating_add(FILE_HEADER_LEN))
            })
            .is_ok();
        if !admitted {
            self.skipped_cap.fetch_add(1, r);
        }
        admitted
    }

    /// The sink: an admitted alert got no file after all (its notice could not be sent): its
    /// header's bytes go back to the budget.
    pub fn give_back_header(&self) {
        let r = Ordering::Relaxed;
        let _ = self
            .used
            .fetch_update(r, r, |u| Some(u.saturating_sub(FILE_HEADER_LEN)));
    }

    /// The sink: an alert got no file because the writer could not take its notice.
    pub fn skip_busy(&self) {
        self.skipped_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// The reader: `n` frames were dropped because the writer was behind.
    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `n` bytes of the budget, if they fit.
    fn take(&self, n: u64) -> bool {
        let r = Ordering::Relaxed;
        self.used
            .fetch_update(r, r, |u| {
                (u.saturating_add(n) <= self.max_bytes).then_some(u + n)
            })
            .is_ok()
    }

    fn add(field: &AtomicU64, n: u64) {
        field.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> EvidenceStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EvidenceStats {
            files: g(&self.files),
            packets: g(&self.packets),
            bytes: g(&self.bytes),
            dropped: g(&self.dropped),
            ring_full: g(&self.ring_full),
            skipped_cap: g(&self.skipped_cap),
            skipped_busy: g(&self.skipped_busy),
            cut_at_cap: g(&self.cut_at_cap),
            link_skipped: g(&self.link_skipped),
            write_errors: g(&self.write_errors),
            short_before: g(&self.short_before),
        }
    }
}

/// A frame kept in a ring.
#[derive(Debug)]
struct Stored {
    eval: Option<u64>,
    ts: Timestamp,
    wire_len: u32,
    link: LinkType,
    data: Vec<u8>,
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

/// What the recorder keeps per watched (scope, key).
#[derive(Default)]
struct KeyEvidence {
    /// The key's latest frames (every frame goes in; the oldest go out).
    ring: VecDeque<Stored>,
    /// The highest frame number taken for this key (a frame sent again is skipped).
    last_seq: u64,
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
        if f.seq <= ke.last_seq && f.seq != 0 {
            return;
        }
        ke.last_seq = ke.last_seq.max(f.seq);
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
                taken |= self.write_after(k, n, f.ts, f.link, bytes, f.wire_len);
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
        ke.ring.push_back(Stored {
            eval: f.eval,
            ts: f.ts,
            wire_len: f.wire_len,
            link: f.link,
            data,
        });
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
            if !self.write(k, n, s.ts, s.link, &s.data, s.wire_len) {
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
                if !self.write(k, n, s.ts, s.link, &s.data, s.wire_len) {
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
                && self.write_after(k, n, s.ts, s.link, &s.data, s.wire_len);
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
    fn write_after(
        &mut self,
        k: WatchKey,
        n: u64,
        ts: Timestamp,
        link: LinkType,
        d: &[u8],
        w: u32,
    ) -> bool {
        let limit = self.cfg.after;
        match self.file(k, n) {
            Some(o) if o.after < limit => {}
            _ => return false,
        }
        let taken = self.write(k, n, ts, link, d, w);
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
    fn write(
        &mut self,
        k: WatchKey,
        n: u64,
        ts: Timestamp,
        link: LinkType,
        d: &[u8],
        w: u32,
    ) -> bool {
        let counters = Arc::clone(&self.counters);
        if self.file(k, n).is_some_and(|o| o.path.is_none()) {
            return self.stage(k, n, ts, link, d, w);
        }
        let Some(o) = self.file_mut(k, n) else {
            return false;
        };
        if let Some(file) = o.file.take() {
            o.out = Some(pcap_file(file, link));
        }
        let Some(out) = o.out.as_mut() else {
            return false;
        };
        if link != out.link() {
            EvidenceCounters::add(&counters.link_skipped, 1);
            return true;
        }
        let len = out.record_len(d.len());
        if !counters.take(len) {
            EvidenceCounters::add(&counters.cut_at_cap, 1);
            self.close(k, n, Close::Full);
            return false;
        }
        match out.record(ts, d, w) {
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
    fn stage(
        &mut self,
        k: WatchKey,
        n: u64,
        ts: Timestamp,
        link: LinkType,
        d: &[u8],
        w: u32,
    ) -> bool {
        if self.ring_bytes + self.staged_bytes + d.len() > RING_BUDGET {
            EvidenceCounters::add(&self.counters.ring_full, 1);
            return true;
        }
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(d);
        self.staged_bytes += data.len();
        if let Some(o) = self.file_mut(k, n) {
            o.staged.push(Stored {
                eval: None,
                ts,
                wire_len: w,
                link,
                data,
            });
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
    use super::*;
    use crate::capture::file::FileSource;
    use crate::capture::FrameSource;
    use std::sync::Arc;

    const VICTIM: [u8; 4] = [198, 51, 100, 10];
    const MS: u64 = 1_000_000;
    const T0: u64 = 1_764_079_200 * Timestamp::NANOS_PER_SEC;

    fn dst_host() -> (Scope, Key) {
        (Scope::DstHost, Key::host(IpAddr::from(VICTIM)))
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
            let (scope, key) = dst_host();
            self.rec.notice(Notice::File {
                id: id.to_string(),
                path: path.clone(),
                scope,
                key,
                at: Mark {
                    seq: ms,
                    ts: Timestamp(T0 + ms * MS),
                },
            });
            path
        }

        fn end(&mut self, id: &str, ms: u64) {
            let (scope, key) = dst_host();
            self.rec.notice(Notice::AlertEnd {
                id: id.to_string(),
                scope,
                key,
                at: Mark {
                    seq: ms,
                    ts: Timestamp(T0 + ms * MS),
                },
            });
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
    fn ids_become_file_safe_names() {
        assert_eq!(
            file_name("dst_host/198.51.100.10/syn_flood/1764081790.250000"),
            "dst_host_198.51.100.10_syn_flood_1764081790.250000.pcap"
        );
        assert_eq!(
            file_name("dst_subnet/198.51.100.0/24/udp_flood/1764081790.000000"),
            "dst_subnet_198.51.100.0_24_udp_flood_1764081790.000000.pcap"
        );
        assert_eq!(
            file_name("src_subnet/2001:db8::/64/dns_amplification/17.5"),
            "src_subnet_2001-db8--_64_dns_amplification_17.5.pcap"
        );
        assert_eq!(file_name("../x y"), "_.._x_y.pcap");
        assert_eq!(file_name(""), "_.pcap");
        assert_eq!(temp_name("a.pcap"), ".a.pcap.tmp");
        // the same id always gives the same name; different hosts different names
        assert_ne!(
            file_name("dst_host/2001:db8::1:0/syn_flood/1.0"),
            file_name("dst_host/2001:db8::10/syn_flood/1.0")
        );
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
    fn a_mark_orders_by_evaluations_when_known_else_by_time() {
        let m = Mark {
            seq: 10,
            ts: Timestamp(100),
        };
        assert!(
            m.precedes(Some(10), Timestamp(0)),
            "counted after evaluation 10"
        );
        assert!(
            !m.precedes(Some(9), Timestamp(500)),
            "counted before it, whatever its time"
        );
        assert!(m.precedes(None, Timestamp(101)));
        assert!(!m.precedes(None, Timestamp(100)));
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
        let (scope, key) = dst_host();
        for id in ["a", "b"] {
            s.rec.notice(Notice::File {
                id: id.to_string(),
                path: gone.join(file_name(id)),
                scope,
                key,
                at: Mark {
                    seq: 0,
                    ts: Timestamp(T0 + MS),
                },
            });
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
        let (scope, key) = dst_host();
        let start = |s: &mut Setup, id: &str, seq: u64| {
            assert!(s.counters.admit_file());
            let path = s.dir.path().join(file_name(id));
            s.rec.notice(Notice::File {
                id: id.to_string(),
                path: path.clone(),
                scope,
                key,
                at: Mark {
                    seq,
                    ts: Timestamp(T0 + 4 * MS),
                },
            });
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
        assert_eq!(s.rec.keys[&dst_host()].last_seq, 110);
    }

    #[test]
    fn the_shards_hint_keeps_the_frames_around_a_start_however_late_the_sink_names_it() {
        // rings of 4 + 2 frames: 100 frames later the start's would be long gone from the ring
        let mut s = setup(4, 3, 2, u64::MAX);
        let (scope, key) = dst_host();
        let at = Mark {
            seq: 0,
            ts: Timestamp(T0 + 10 * MS),
        };
        s.rec.frames(&batch(0..12));
        s.rec.notice(Notice::AlertStart {
            id: "a".into(),
            scope,
            key,
            at,
        });
        s.rec.frames(&batch(12..100));
        assert!(s.rec.keys[&dst_host()].ring.len() <= 4 + 3 + 1);
        assert!(s.counters.admit_file());
        let path = s.dir.path().join("a.pcap");
        s.rec.notice(Notice::File {
            id: "a".into(),
            path: path.clone(),
            scope,
            key,
            at,
        });
        assert_eq!(read(&path).0, vec![7, 8, 9, 10, 11, 12, 13]);
        // an alert the sink gives no file releases its frames
        let at = Mark {
            seq: 0,
            ts: Timestamp(T0 + 150 * MS),
        };
        s.rec.notice(Notice::AlertStart {
            id: "b".into(),
            scope,
            key,
            at,
        });
        s.rec.frames(&batch(100..200));
        s.rec.notice(Notice::NoFile {
            id: "b".into(),
            scope,
            key,
            at,
        });
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

    #[test]
    fn prepare_dir_creates_the_directory_and_names_it_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        prepare_dir(&sub).unwrap();
        assert!(sub.is_dir());
        assert_eq!(
            std::fs::read_dir(&sub).unwrap().count(),
            0,
            "the probe is removed"
        );
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = prepare_dir(&file.join("d")).unwrap_err().to_string();
        assert!(e.contains("f/d") && e.contains("--evidence-dir"), "{e}");
    }
}
