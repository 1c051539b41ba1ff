//! Attack samples as pcap (`--evidence-dir`): for every alert, a capture file of the packets of its
//! (scope, key) — the last N before the start and the first M after it — that tcpdump, tshark and
//! Wireshark read. (Not to be confused with [`crate::attribution`], the per-key top peers and ports
//! that go into the alert itself.)
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

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::decode::LinkType;
use crate::detect::ScopeMask;
use crate::key::{Key, Scope};
use crate::pcap_writer::FILE_HEADER_LEN;
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

/// The file name of an alert's evidence: its id made file-safe ([`file_stem`]), plus `.pcap`.
pub fn file_name(id: &str) -> String {
    let mut name = file_stem(id);
    name.push_str(".pcap");
    name
}

/// An alert id made file-safe, the name of its files (evidence pcap, `--report-dir` page) without
/// the extension. Every character other than ASCII letters, digits, `.` and `-` becomes `_`,
/// except `:` (IPv6 addresses), which becomes `-`; so
/// `dst_host/2001:db8::10/syn_flood/1764081790.250000` is
/// `dst_host_2001-db8--10_syn_flood_1764081790.250000`. Ids are made of a scope, an address or
/// prefix, a class and a time, so different ids give different names; a name that would start
/// with `.` (hidden) gets a `_` in front.
pub fn file_stem(id: &str) -> String {
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

mod recorder;

pub use recorder::{select_positions, Recorder, STREAM_SHIFT};

#[cfg(test)]
mod tests {
    use super::*;

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
