//! Capture files: reads pcap and pcapng from a path or standard input as a [`FrameSource`].
//!
//! This module owns the file formats: it tells pcap (both byte orders, micro- and nanosecond
//! timestamps) from pcapng (several sections, several interfaces with their own link types,
//! `if_tsresol` and `if_tsoffset`, Enhanced and Simple Packet Blocks) by the magic number, never the
//! extension; streams them through `pcap-parser` with a buffer that grows for jumbo records; and turns
//! every way a file can be broken into a [`CaptureError`] that names the file and the byte offset.
//! [`MultiFileSource`] chains several files in order.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};

use super::mapped::MappedPcap;
use super::{CaptureError, CaptureStats, FrameSource, RawFrame};
use crate::decode::LinkType;
use crate::time::Timestamp;

/// Initial read buffer size.
const BUFFER_SIZE: usize = 1 << 20;
/// Largest record (pcap record or pcapng block) accepted; anything claiming more is corrupt.
pub const MAX_RECORD_LEN: usize = 16 << 20;
/// Most interfaces one pcapng section may declare.
const MAX_INTERFACES: usize = 1 << 16;

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

/// Byte order of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

/// Unit of a legacy pcap file's sub-second timestamp field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsPrecision {
    Micro,
    Nano,
}

/// A capture file format, as told by its magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// Legacy pcap (libpcap / tcpdump).
    Pcap {
        byte_order: ByteOrder,
        precision: TsPrecision,
    },
    /// pcapng (the byte order is per section, read from each section header).
    PcapNg,
}

/// Tells the format from the first four bytes of a file; `None` if they are not a known magic number.
pub fn sniff_format(bytes: &[u8]) -> Option<FileFormat> {
    let magic: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let pcap = |byte_order, precision| {
        Some(FileFormat::Pcap {
            byte_order,
            precision,
        })
    };
    match u32::from_le_bytes(magic) {
        PCAPNG_SHB => Some(FileFormat::PcapNg),
        0xa1b2_c3d4 => pcap(ByteOrder::Little, TsPrecision::Micro),
        0xd4c3_b2a1 => pcap(ByteOrder::Big, TsPrecision::Micro),
        0xa1b2_3c4d => pcap(ByteOrder::Little, TsPrecision::Nano),
        0x4d3c_b2a1 => pcap(ByteOrder::Big, TsPrecision::Nano),
        _ => None,
    }
}

/// A pcapng interface as declared by its Interface Description Block.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_secs: i64,
}

/// Format state the reader needs between records.
enum State {
    Legacy {
        link: LinkType,
        precision: TsPrecision,
        /// Byte order of record headers.
        byte_order: ByteOrder,
    },
    Ng {
        byte_order: ByteOrder,
        interfaces: Vec<Interface>,
    },
}

/// Where the frame to hand out next lies in the reader's buffer.
#[derive(Clone, Copy, Debug)]
struct Prepared {
    ts: Timestamp,
    link: LinkType,
    start: usize,
    len: usize,
    wire_len: u32,
}

/// What one parsed block means to the reader.
enum Step {
    Frame(Prepared),
    Skip,
    /// A pcapng block of a type the pcapng specification does not define: skipped and counted.
    Unknown,
}

/// A `Read` that retries interrupted reads and keeps the last I/O error for the error message
/// (pcap-parser reports only "read error").
struct ErrorKeepingReader<R> {
    inner: R,
    last_error: Arc<Mutex<Option<io::Error>>>,
}

impl<R: Read> Read for ErrorKeepingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kept = io::Error::new(e.kind(), e.to_string());
                    if let Ok(mut slot) = self.last_error.lock() {
                        *slot = Some(kept);
                    }
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }
}

/// One pcap or pcapng file (or standard input) read as a stream of frames.
pub struct FileSource {
    path: PathBuf,
    reader: Option<Box<dyn PcapReaderIterator + Send>>,
    /// A regular pcap file, mapped: used instead of `reader`.
    mapped: Option<MappedPcap>,
    state: State,
    /// Current buffer capacity (the reader does not expose it).
    capacity: usize,
    /// Bytes of the previous record still to consume before parsing the next one.
    pending_consume: usize,
    prepared: Option<Prepared>,
    last_ts: Timestamp,
    stats: CaptureStats,
    /// Bytes of the file parsed so far (up to the end of the current record), for progress.
    bytes_read: u64,
    last_io_error: Arc<Mutex<Option<io::Error>>>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FileSource {
    /// Opens a capture file; `-` reads standard input. The format comes from the magic number.
    pub fn open(path: &Path) -> Result<FileSource, CaptureError> {
        if path == Path::new("-") {
            return FileSource::from_reader("<stdin>", io::stdin());
        }
        let file = std::fs::File::open(path).map_err(|source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // a regular pcap file is walked in place through a memory map (no copy, no parser)
        if let Some(mapped) = MappedPcap::open(path, &file)? {
            return Ok(FileSource {
                path: path.to_path_buf(),
                reader: None,
                mapped: Some(mapped),
                state: State::Legacy {
                    link: LinkType(0),
                    precision: TsPrecision::Micro,
                    byte_order: ByteOrder::Little,
                },
                capacity: 0,
                pending_consume: 0,
                prepared: None,
                last_ts: Timestamp(0),
                stats: CaptureStats::default(),
                bytes_read: 0,
                last_io_error: Arc::new(Mutex::new(None)),
            });
        }
        FileSource::from_reader(path, file)
    }

    /// Reads a capture from any byte stream; `name` is used in error messages.
    pub fn from_reader<R>(name: impl Into<PathBuf>, reader: R) -> Result<FileSource, CaptureError>
    where
        R: Read + Send + 'static,
    {
        FileSource::with_capacity(name.into(), reader, BUFFER_SIZE)
    }

    fn with_capacity<R>(
        path: PathBuf,
        reader: R,
        capacity: usize,
    ) -> Result<FileSource, CaptureError>
    where
        R: Read + Send + 'static,
    {
        let last_io_error = Arc::new(Mutex::new(None));
        let mut reader = ErrorKeepingReader {
            inner: reader,
            last_error: Arc::clone(&last_io_error),
        };
        let (format, header) = read_file_header(&path, &mut reader)?;
        // the header goes first so pcap-parser sees the whole file, and it can parse it from one read
        let capacity = capacity.max(header.len().saturating_mul(2));
        let stream = io::Cursor::new(header).chain(reader);
        let corrupt = |e: PcapError<&'static [u8]>| CaptureError::Corrupt {
            path: path.clone(),
            offset: 0,
            detail: format!("unreadable file header ({e})"),
        };
        let (reader, state): (Box<dyn PcapReaderIterator + Send>, State) = match format {
            FileFormat::Pcap {
                byte_order,
                precision,
            } => (
                Box::new(LegacyPcapReader::new(capacity, stream).map_err(corrupt)?),
                State::Legacy {
                    link: LinkType(0),
                    precision,
                    byte_order,
                },
            ),
            FileFormat::PcapNg => (
                Box::new(PcapNGReader::new(capacity, stream).map_err(corrupt)?),
                State::Ng {
                    byte_order: ByteOrder::Little,
                    interfaces: Vec::new(),
                },
            ),
        };
        Ok(FileSource {
            path,
            reader: Some(reader),
            mapped: None,
            state,
            capacity,
            pending_consume: 0,
            prepared: None,
            last_ts: Timestamp(0),
            stats: CaptureStats::default(),
            bytes_read: 0,
            last_io_error,
        })
    }

    /// The path (or `<stdin>`) this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the input parsed so far, headers included: at the end of a complete file, its size.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Moves to the next frame: `Ok(true)` if there is one (see [`FileSource::current`]), `Ok(false)`
    /// at the end. After an error the source is finished.
    #[inline]
    fn advance(&mut self) -> Result<bool, CaptureError> {
        if let Some(m) = &mut self.mapped {
            let r = m.advance(&self.path, &mut self.stats);
            self.bytes_read = m.offset();
            if let Ok(true) = r {
                return Ok(true);
            }
            self.mapped = None;
            return r;
        }
        self.prepared = None;
        if self.reader.is_none() {
            // finished (at the end or after an error): what was read stays as it was
            return Ok(false);
        }
        match self.find_next_frame() {
            Ok(Some(p)) => {
                self.prepared = Some(p);
                self.last_ts = p.ts;
                self.stats.frames += 1;
                self.stats.captured_bytes += p.len as u64;
                self.pending_consume = self.pending_consume.max(p.start + p.len);
                self.bytes_read = self.offset() + self.pending_consume as u64;
                Ok(true)
            }
            Ok(None) => {
                self.bytes_read = self.offset() + self.pending_consume as u64;
                self.reader = None;
                Ok(false)
            }
            Err(e) => {
                self.bytes_read = self.offset();
                self.reader = None;
                Err(e)
            }
        }
    }

    /// The frame [`FileSource::advance`] found.
    #[inline]
    fn current(&self) -> Option<RawFrame<'_>> {
        if let Some(m) = &self.mapped {
            return m.current();
        }
        let p = self.prepared?;
        let data = self.reader.as_ref()?.data().get(p.start..p.start + p.len)?;
        Some(RawFrame {
            ts: p.ts,
            link: p.link,
            data,
            wire_len: p.wire_len,
        })
    }

    fn find_next_frame(&mut self) -> Result<Option<Prepared>, CaptureError> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            if self.pending_consume > 0 {
                reader.consume(self.pending_consume);
                self.pending_consume = 0;
            }
            let base = reader.data().as_ptr() as usize;
            let outcome = match reader.next() {
                Ok((len, block)) => {
                    self.pending_consume = len;
                    Ok(on_block(&mut self.state, self.last_ts, base, block))
                }
                Err(e) => Err(e.to_owned_vec()),
            };
            match outcome {
                Ok(Ok(Step::Frame(p))) => return Ok(Some(p)),
                Ok(Ok(Step::Skip)) => {}
                Ok(Ok(Step::Unknown)) => self.stats.unknown_blocks += 1,
                Ok(Err(detail)) => return Err(self.corrupt(detail)),
                Err(PcapError::Eof) => return Ok(None),
                Err(PcapError::Incomplete(_)) | Err(PcapError::BufferTooSmall) => {
                    self.make_room()?;
                }
                Err(PcapError::UnexpectedEof) => return Err(self.truncated_or_corrupt()),
                Err(PcapError::ReadError) => return Err(self.read_error()),
                Err(e) => return Err(self.corrupt(e.to_string())),
            }
        }
    }

    /// The parser needs more bytes: check the record's claimed size, refill, and grow the buffer
    /// when it is full. The buffer grows with the bytes actually read, not with what a (possibly
    /// corrupt) record header claims.
    fn make_room(&mut self) -> Result<(), CaptureError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(());
        };
        let available = reader.data().len();
        if let Some(need) = record_len(&self.state, reader.data()) {
            if need > MAX_RECORD_LEN {
                return Err(self.corrupt(format!(
                    "record claims {need} bytes (limit {MAX_RECORD_LEN})"
                )));
            }
            if need <= available {
                return Err(self.corrupt(format!(
                    "record of {need} bytes is inconsistent with its contents"
                )));
            }
        }
        if reader.refill().is_err() {
            return Err(self.read_error());
        }
        if reader.data().len() <= available && !reader.reader_exhausted() {
            // the buffer is full and the record still does not fit: double it
            if self.capacity > MAX_RECORD_LEN {
                return Err(self.corrupt("record does not fit the largest buffer".to_string()));
            }
            self.capacity = self.capacity.saturating_mul(2);
            reader.grow(self.capacity);
        }
        Ok(())
    }

    fn offset(&self) -> u64 {
        self.reader.as_ref().map_or(0, |r| r.consumed() as u64)
    }

    fn corrupt(&self, detail: String) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            offset: self.offset(),
            detail,
        }
    }

    /// The file ended inside a record: truncated, unless the record was all there (then its contents
    /// are inconsistent).
    fn truncated_or_corrupt(&self) -> CaptureError {
        let complete = self.reader.as_ref().and_then(|r| {
            let need = record_len(&self.state, r.data())?;
            Some(need <= r.data().len())
        });
        if complete == Some(true) {
            return self.corrupt("record is inconsistent with its length".to_string());
        }
        CaptureError::Truncated {
            path: self.path.clone(),
            offset: self.offset(),
        }
    }

    fn read_error(&self) -> CaptureError {
        let kept = self.last_io_error.lock().ok().and_then(|mut e| e.take());
        CaptureError::Read {
            path: self.path.clone(),
            source: kept.unwrap_or_else(|| io::Error::other("read failed")),
        }
    }
}

impl FrameSource for FileSource {
    fn without_idle(&self) -> bool {
        true
    }

    #[inline]
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
        if self.advance()? {
            Ok(self.current())
        } else {
            Ok(None)
        }
    }

    fn next_frames(
        &mut self,
        max: usize,
        each: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<usize, CaptureError> {
        let Some(m) = &mut self.mapped else {
            return super::one_by_one(self, max, each);
        };
        let r = m.for_each(&self.path, &mut self.stats, max, each);
        self.bytes_read = m.offset();
        if !matches!(r, Ok(n) if n == max) {
            // the end of the file, or a fault in it: as [`FileSource::advance`] leaves it
            self.mapped = None;
        }
        r
    }

    fn stats(&self) -> CaptureStats {
        self.stats
    }
}

/// Several capture files read one after another, each opened when the previous one ends.
#[derive(Debug)]
pub struct MultiFileSource {
    paths: Vec<PathBuf>,
    /// Index of the file being read (or next to open).
    index: usize,
    current: Option<FileSource>,
    /// Counters of the files already finished.
    finished_stats: CaptureStats,
    /// Bytes of the files already finished.
    finished_bytes: u64,
    failed: bool,
}

impl MultiFileSource {
    /// A source over `paths`, in order; nothing is opened until the first frame is asked for.
    pub fn new(paths: Vec<PathBuf>) -> MultiFileSource {
        MultiFileSource {
            paths,
            index: 0,
            current: None,
            finished_stats: CaptureStats::default(),
            finished_bytes: 0,
            failed: false,
        }
    }

    /// Bytes parsed so far over all files, for progress.
    pub fn bytes_read(&self) -> u64 {
        self.finished_bytes + self.current.as_ref().map_or(0, FileSource::bytes_read)
    }

    /// The summed size of the files, when every one is a regular file whose size is known (`None` for
    /// standard input, pipes and devices).
    pub fn total_bytes(&self) -> Option<u64> {
        self.paths.iter().try_fold(0u64, |sum, p| {
            if p == Path::new("-") {
                return None;
            }
            let meta = std::fs::metadata(p).ok()?;
            meta.is_file().then(|| sum.saturating_add(meta.len()))
        })
    }

    /// The file being read (the first before reading starts, the last after the end), for progress
    /// messages. Empty when there are no paths.
    pub fn current_path(&self) -> &Path {
        let last = self.paths.len().saturating_sub(1);
        self.paths
            .get(self.index.min(last))
            .map_or(Path::new(""), PathBuf::as_path)
    }

    /// Moves to the next frame of the current file, or opens the following files until one has one.
    #[inline]
    fn advance(&mut self) -> Result<bool, CaptureError> {
        if self.failed {
            return Ok(false);
        }
        let result = self.advance_inner();
        if result.is_err() {
            self.failed = true;
            self.current = None;
        }
        result
    }

    /// Frames of the current file (opened when none is), at most `max`, handed to `each`; at its
    /// end the next file is made current. None when no file is left.
    fn next_frames_of_file(
        &mut self,
        max: usize,
        each: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<Option<usize>, CaptureError> {
        let Some(current) = self.open_current()? else {
            return Ok(None);
        };
        let n = current.next_frames(max, each)?;
        if n < max {
            self.finish_current();
        }
        Ok(Some(n))
    }

    #[inline]
    fn advance_inner(&mut self) -> Result<bool, CaptureError> {
        loop {
            let Some(current) = self.open_current()? else {
                return Ok(false);
            };
            if current.advance()? {
                return Ok(true);
            }
            self.finish_current();
        }
    }

    /// The file being read, opened when none is; `None` when no file is left.
    #[inline]
    fn open_current(&mut self) -> Result<Option<&mut FileSource>, CaptureError> {
        if self.current.is_none() {
            let Some(path) = self.paths.get(self.index) else {
                return Ok(None);
            };
            self.current = Some(FileSource::open(path)?);
        }
        Ok(self.current.as_mut())
    }

    /// Closes the file read to its end, its counters kept, and moves on to the next one.
    fn finish_current(&mut self) {
        if let Some(done) = self.current.take() {
            self.finished_stats.add(&done.stats());
            self.finished_bytes += done.bytes_read();
        }
        self.index += 1;
    }
}

impl FrameSource for MultiFileSource {
    fn without_idle(&self) -> bool {
        true
    }

    #[inline]
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
        if self.advance()? {
            Ok(self.current.as_ref().and_then(FileSource::current))
        } else {
            Ok(None)
        }
    }

    fn next_frames(
        &mut self,
        max: usize,
        each: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<usize, CaptureError> {
        let mut n = 0;
        while n < max && !self.failed {
            let step = self.next_frames_of_file(max - n, each);
            match step {
                Ok(Some(k)) => n += k,
                Ok(None) => break,
                Err(e) => {
                    self.failed = true;
                    self.current = None;
                    return Err(e);
                }
            }
        }
        Ok(n)
    }

    fn stats(&self) -> CaptureStats {
        let mut total = self.finished_stats;
        if let Some(current) = &self.current {
            total.add(&current.stats());
        }
        total
    }
}

/// Reads the file header (pcap: 24 bytes; pcapng: the first Section Header Block) and tells the format.
fn read_file_header(
    path: &Path,
    reader: &mut impl Read,
) -> Result<(FileFormat, Vec<u8>), CaptureError> {
    let read_err = |source| CaptureError::Read {
        path: path.to_path_buf(),
        source,
    };
    let truncated = || CaptureError::Truncated {
        path: path.to_path_buf(),
        offset: 0,
    };
    let mut header = vec![0u8; 12];
    let got = read_full(reader, &mut header).map_err(read_err)?;
    if got == 0 {
        return Err(CaptureError::Empty {
            path: path.to_path_buf(),
        });
    }
    let probe = header.get(..got).unwrap_or(&[]);
    if got < 4 && is_magic_prefix(probe) {
        return Err(truncated());
    }
    let Some(format) = sniff_format(probe) else {
        return Err(CaptureError::UnknownFormat {
            path: path.to_path_buf(),
            magic: hex(header.get(..got.min(8)).unwrap_or(&[])),
        });
    };
    let total = match format {
        FileFormat::Pcap { .. } => 24,
        FileFormat::PcapNg => {
            if got < 12 {
                return Err(truncated());
            }
            let bom = header.get(8..12).and_then(|b| <[u8; 4]>::try_from(b).ok());
            let len = header.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok());
            let (Some(bom), Some(len)) = (bom, len) else {
                return Err(truncated());
            };
            let len = if u32::from_le_bytes(bom) == PCAPNG_BOM {
                u32::from_le_bytes(len)
            } else if u32::from_be_bytes(bom) == PCAPNG_BOM {
                u32::from_be_bytes(len)
            } else {
                return Err(CaptureError::Corrupt {
                    path: path.to_path_buf(),
                    offset: 8,
                    detail: format!("bad pcapng byte-order magic {}", hex(&bom)),
                });
            };
            let len = len as usize;
            if !(28..=MAX_RECORD_LEN).contains(&len) || !len.is_multiple_of(4) {
                return Err(CaptureError::Corrupt {
                    path: path.to_path_buf(),
                    offset: 0,
                    detail: format!("section header block length {len} is invalid"),
                });
            }
            len
        }
    };
    if total > got {
        header.resize(total, 0);
        let more = read_full(reader, header.get_mut(got..).unwrap_or(&mut [])).map_err(read_err)?;
        if got + more < total {
            return Err(truncated());
        }
    } else {
        // a 12-byte probe of a 24-byte pcap header never gets here; keep only what was read
        header.truncate(got);
    }
    Ok((format, header))
}

/// Whether `bytes` (shorter than a magic number) start one of the known magic numbers.
fn is_magic_prefix(bytes: &[u8]) -> bool {
    const MAGICS: [u32; 5] = [
        PCAPNG_SHB,
        0xa1b2_c3d4,
        0xd4c3_b2a1,
        0xa1b2_3c4d,
        0x4d3c_b2a1,
    ];
    MAGICS.iter().any(|m| m.to_le_bytes().starts_with(bytes))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    if s.is_empty() {
        s.push_str("(none)");
    }
    s
}

/// The full length the record at the start of `data` claims, if enough of it is there to tell.
fn record_len(state: &State, data: &[u8]) -> Option<usize> {
    let u32_at = |at: usize, order: ByteOrder| {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(match order {
            ByteOrder::Little => u32::from_le_bytes(b),
            ByteOrder::Big => u32::from_be_bytes(b),
        })
    };
    match state {
        State::Legacy { byte_order, .. } => {
            Some(16usize.saturating_add(u32_at(8, *byte_order)? as usize))
        }
        State::Ng { byte_order, .. } => {
            let order = if u32_at(0, ByteOrder::Little)? == PCAPNG_SHB {
                // a new section says its own byte order
                if u32_at(8, ByteOrder::Little)? == PCAPNG_BOM {
                    ByteOrder::Little
                } else {
                    ByteOrder::Big
                }
            } else {
                *byte_order
            };
            Some(u32_at(4, order)? as usize)
        }
    }
}

/// Updates the format state from one block; a packet becomes a [`Prepared`] frame located relative to
/// `base`, the start of the reader's data. `Err` carries a corruption detail.
fn on_block(
    state: &mut State,
    last_ts: Timestamp,
    base: usize,
    block: PcapBlockOwned<'_>,
) -> Result<Step, String> {
    let locate = |data: &[u8]| {
        (data.as_ptr() as usize)
            .checked_sub(base)
            .ok_or_else(|| "record outside the read buffer".to_string())
    };
    match (state, block) {
        (
            State::Legacy {
                link, precision, ..
            },
            PcapBlockOwned::LegacyHeader(h),
        ) => {
            // upper bits may carry FCS information (LT_LINKTYPE in libpcap)
            *link = LinkType((h.network.0 as u32) & 0x03ff_ffff);
            *precision = if h.is_nanosecond_precision() {
                TsPrecision::Nano
            } else {
                TsPrecision::Micro
            };
            Ok(Step::Skip)
        }
        (
            State::Legacy {
                link, precision, ..
            },
            PcapBlockOwned::Legacy(b),
        ) => {
            let sub_nanos = match precision {
                TsPrecision::Micro => u64::from(b.ts_usec).saturating_mul(1_000),
                TsPrecision::Nano => u64::from(b.ts_usec),
            };
            Ok(Step::Frame(Prepared {
                ts: Timestamp::from_secs_nanos(u64::from(b.ts_sec), sub_nanos),
                link: *link,
                start: locate(b.data)?,
                len: b.data.len(),
                wire_len: b.origlen,
            }))
        }
        (
            State::Ng {
                byte_order,
                interfaces,
            },
            PcapBlockOwned::NG(block),
        ) => on_ng_block(byte_order, interfaces, last_ts, block, locate),
        _ => Ok(Step::Skip),
    }
}

fn on_ng_block(
    byte_order: &mut ByteOrder,
    interfaces: &mut Vec<Interface>,
    last_ts: Timestamp,
    block: Block<'_>,
    locate: impl Fn(&[u8]) -> Result<usize, String>,
) -> Result<Step, String> {
    match block {
        Block::SectionHeader(shb) => {
            *byte_order = if shb.big_endian() {
                ByteOrder::Big
            } else {
                ByteOrder::Little
            };
            interfaces.clear();
            Ok(Step::Skip)
        }
        Block::InterfaceDescription(idb) => {
            if interfaces.len() >= MAX_INTERFACES {
                return Err(format!(
                    "more than {MAX_INTERFACES} interfaces in one section"
                ));
            }
            let units_per_sec = ts_units_per_sec(idb.if_tsresol).ok_or_else(|| {
                format!(
                    "interface {} has an invalid if_tsresol {:#04x}",
                    interfaces.len(),
                    idb.if_tsresol
                )
            })?;
            interfaces.push(Interface {
                link: LinkType(u32::from(idb.linktype.0 as u16)),
                snaplen: idb.snaplen,
                units_per_sec,
                offset_secs: ts_offset(&idb.options, *byte_order),
            });
            Ok(Step::Skip)
        }
        Block::EnhancedPacket(epb) => {
            let iface = interface(interfaces, epb.if_id)?;
            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
            let data = epb.packet_data();
            Ok(Step::Frame(Prepared {
                ts: iface.timestamp(raw),
                link: iface.link,
                start: locate(data)?,
                len: data.len(),
                wire_len: epb.origlen,
            }))
        }
        Block::SimplePacket(spb) => {
            let iface = interface(interfaces, 0)?;
            let mut data = spb.packet_data();
            if iface.snaplen > 0 {
                data = data.get(..iface.snaplen as usize).unwrap_or(data);
            }
            Ok(Step::Frame(Prepared {
                ts: last_ts,
                link: iface.link,
                start: locate(data)?,
                len: data.len(),
                wire_len: spb.origlen,
            }))
        }
        Block::Unknown(_) => Ok(Step::Unknown),
        _ => Ok(Step::Skip),
    }
}

fn interface(interfaces: &[Interface], id: u32) -> Result<Interface, String> {
    interfaces
        .get(id as usize)
        .copied()
        .ok_or_else(|| format!("packet on interface {id}, which the section does not declare"))
}

/// `if_tsoffset` in the section's byte order (pcap-parser always reads it little-endian).
fn ts_offset(options: &[pcap_parser::pcapng::PcapNGOption<'_>], order: ByteOrder) -> i64 {
    options
        .iter()
        .find(|o| o.code == pcap_parser::pcapng::OptionCode::IfTsoffset)
        .and_then(|o| <[u8; 8]>::try_from(o.value().get(..8)?).ok())
        .map_or(0, |b| match order {
            ByteOrder::Little => i64::from_le_bytes(b),
            ByteOrder::Big => i64::from_be_bytes(b),
        })
}

/// Timestamp units per second for an `if_tsresol` value: a power of 10, or of 2 when the top bit is set.
fn ts_units_per_sec(tsresol: u8) -> Option<u64> {
    let exp = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(exp)
    } else {
        1u64.checked_shl(exp).filter(|_| exp < 64)
    }
}

impl Interface {
    /// A raw pcapng timestamp in this interface's units → packet time.
    fn timestamp(&self, raw: u64) -> Timestamp {
        let per_sec = self.units_per_sec.max(1);
        let secs = raw / per_sec;
        let frac = raw % per_sec;
        let nanos = u128::from(frac) * u128::from(Timestamp::NANOS_PER_SEC) / u128::from(per_sec);
        let secs = i128::from(secs) + i128::from(self.offset_secs);
        let secs = u64::try_from(secs.max(0)).unwrap_or(u64::MAX);
        Timestamp::from_secs_nanos(secs, u64::try_from(nanos).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeError, DecodeStats, Decoder, Fragment, SkipReason};
    use crate::fixtures::{shared_captures, SHARED_CAPTURES};

    // ---- hand-written writers ----

    fn u16b(order: ByteOrder, v: u16) -> [u8; 2] {
        match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    fn u32b(order: ByteOrder, v: u32) -> [u8; 4] {
        match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    struct Rec<'a> {
        secs: u32,
        frac: u32,
        data: &'a [u8],
        orig: u32,
    }

    fn rec(secs: u32, frac: u32, data: &[u8]) -> Rec<'_> {
        Rec {
            secs,
            frac,
            data,
            orig: data.len() as u32,
        }
    }

    fn pcap(order: ByteOrder, precision: TsPrecision, link: u32, recs: &[Rec]) -> Vec<u8> {
        let magic = match precision {
            TsPrecision::Micro => 0xa1b2_c3d4,
            TsPrecision::Nano => 0xa1b2_3c4d,
        };
        let mut v = Vec::new();
        v.extend_from_slice(&u32b(order, magic));
        v.extend_from_slice(&u16b(order, 2));
        v.extend_from_slice(&u16b(order, 4));
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&u32b(order, 65535));
        v.extend_from_slice(&u32b(order, link));
        for r in recs {
            v.extend_from_slice(&u32b(order, r.secs));
            v.extend_from_slice(&u32b(order, r.frac));
            v.extend_from_slice(&u32b(order, r.data.len() as u32));
            v.extend_from_slice(&u32b(order, r.orig));
            v.extend_from_slice(r.data);
        }
        v
    }

    fn ng_block(order: ByteOrder, block_type: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&u32b(order, block_type));
        v.extend_from_slice(&u32b(order, total));
        v.extend_from_slice(body);
        v.resize(8 + padded, 0);
        v.extend_from_slice(&u32b(order, total));
        v
    }

    fn shb(order: ByteOrder) -> Vec<u8> {
        let mut body = u32b(order, PCAPNG_BOM).to_vec();
        body.extend_from_slice(&u16b(order, 1));
        body.extend_from_slice(&u16b(order, 0));
        body.extend_from_slice(&[0xff; 8]); // section length unknown
        ng_block(order, PCAPNG_SHB, &body)
    }

    /// IDB with optional if_tsresol (code 9) and if_tsoffset (code 14).
    fn idb(order: ByteOrder, link: u16, tsresol: Option<u8>, tsoffset: Option<i64>) -> Vec<u8> {
        let mut body = u16b(order, link).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&u32b(order, 0));
        if let Some(r) = tsresol {
            body.extend_from_slice(&u16b(order, 9));
            body.extend_from_slice(&u16b(order, 1));
            body.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(o) = tsoffset {
            body.extend_from_slice(&u16b(order, 14));
            body.extend_from_slice(&u16b(order, 8));
            match order {
                ByteOrder::Little => body.extend_from_slice(&o.to_le_bytes()),
                ByteOrder::Big => body.extend_from_slice(&o.to_be_bytes()),
            }
        }
        if tsresol.is_some() || tsoffset.is_some() {
            body.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        }
        ng_block(order, 1, &body)
    }

    fn epb(order: ByteOrder, if_id: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut body = u32b(order, if_id).to_vec();
        body.extend_from_slice(&u32b(order, (ts >> 32) as u32));
        body.extend_from_slice(&u32b(order, ts as u32));
        body.extend_from_slice(&u32b(order, data.len() as u32));
        body.extend_from_slice(&u32b(order, data.len() as u32 + 100));
        body.extend_from_slice(data);
        body.resize(20 + data.len().div_ceil(4) * 4, 0);
        ng_block(order, 6, &body)
    }

    fn spb(order: ByteOrder, data: &[u8]) -> Vec<u8> {
        let mut body = u32b(order, data.len() as u32).to_vec();
        body.extend_from_slice(data);
        ng_block(order, 3, &body)
    }

    // ---- helpers ----

    #[derive(Debug, PartialEq)]
    struct Owned {
        ts: u64,
        link: u32,
        data: Vec<u8>,
        wire_len: u32,
    }

    fn source(bytes: Vec<u8>) -> Result<FileSource, CaptureError> {
        FileSource::from_reader("test.pcap", io::Cursor::new(bytes))
    }

    /// Reads every frame; returns them and the error that ended the file, if any.
    fn drain(src: &mut impl FrameSource) -> (Vec<Owned>, Option<CaptureError>) {
        let mut out = Vec::new();
        loop {
            match src.next_frame() {
                Ok(Some(f)) => out.push(Owned {
                    ts: f.ts.as_nanos(),
                    link: f.link.0,
                    data: f.data.to_vec(),
                    wire_len: f.wire_len,
                }),
                Ok(None) => return (out, None),
                Err(e) => {
                    assert!(
                        matches!(src.next_frame(), Ok(None)),
                        "finished after an error"
                    );
                    return (out, Some(e));
                }
            }
        }
    }

    /// [`drain`] through [`FrameSource::next_frames`], `batch` frames at a time.
    fn drain_batched(
        src: &mut impl FrameSource,
        batch: usize,
    ) -> (Vec<Owned>, Option<CaptureError>) {
        assert!(src.without_idle());
        let mut out = Vec::new();
        loop {
            let before = out.len();
            let r = src.next_frames(batch, &mut |f| {
                out.push(Owned {
                    ts: f.ts.as_nanos(),
                    link: f.link.0,
                    data: f.data.to_vec(),
                    wire_len: f.wire_len,
                })
            });
            match r {
                Ok(n) => {
                    assert_eq!(n, out.len() - before, "the count handed");
                    if n < batch {
                        assert!(
                            matches!(src.next_frame(), Ok(None)),
                            "fewer only at the end"
                        );
                        return (out, None);
                    }
                }
                Err(e) => {
                    assert!(
                        matches!(src.next_frame(), Ok(None)),
                        "finished after an error"
                    );
                    return (out, Some(e));
                }
            }
        }
    }

    fn read_all(bytes: Vec<u8>) -> Vec<Owned> {
        let (frames, err) = drain(&mut source(bytes).unwrap());
        assert!(err.is_none(), "{err:?}");
        frames
    }

    // ---- tests ----

    #[test]
    fn sniffs_magic_numbers() {
        use ByteOrder::*;
        use TsPrecision::*;
        let p = |byte_order, precision| {
            Some(FileFormat::Pcap {
                byte_order,
                precision,
            })
        };
        assert_eq!(sniff_format(&[0xd4, 0xc3, 0xb2, 0xa1]), p(Little, Micro));
        assert_eq!(sniff_format(&[0xa1, 0xb2, 0xc3, 0xd4]), p(Big, Micro));
        assert_eq!(sniff_format(&[0x4d, 0x3c, 0xb2, 0xa1]), p(Little, Nano));
        assert_eq!(sniff_format(&[0xa1, 0xb2, 0x3c, 0x4d]), p(Big, Nano));
        assert_eq!(
            sniff_format(&[0x0a, 0x0d, 0x0d, 0x0a]),
            Some(FileFormat::PcapNg)
        );
        assert_eq!(sniff_format(b"GIF8"), None);
        assert_eq!(sniff_format(&[0xd4, 0xc3]), None);
    }

    #[test]
    fn pcap_both_byte_orders_and_precisions() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            for precision in [TsPrecision::Micro, TsPrecision::Nano] {
                let recs = [
                    rec(1_700_000_000, 123_456, b"first"),
                    rec(1_700_000_001, 7, b""),
                ];
                let frames = read_all(pcap(order, precision, 113, &recs));
                let scale = if precision == TsPrecision::Micro {
                    1_000
                } else {
                    1
                };
                assert_eq!(frames.len(), 2, "{order:?} {precision:?}");
                assert_eq!(frames[0].ts, 1_700_000_000_000_000_000 + 123_456 * scale);
                assert_eq!(frames[0].link, 113);
                assert_eq!(frames[0].data, b"first");
                assert_eq!(frames[0].wire_len, 5);
                assert_eq!(frames[1].ts, 1_700_000_001_000_000_000 + 7 * scale);
                assert!(frames[1].data.is_empty());
            }
        }
    }

    #[test]
    fn zero_length_record_decodes_as_empty() {
        let bytes = pcap(ByteOrder::Little, TsPrecision::Micro, 1, &[rec(1, 0, b"")]);
        let mut src = source(bytes).unwrap();
        let f = src.next_frame().unwrap().unwrap();
        assert!(f.data.is_empty());
        let e = Decoder
            .decode(f.link, f.data, f.ts, f.wire_len)
            .unwrap_err();
        assert_eq!(e, DecodeError::Empty);
        assert!(src.next_frame().unwrap().is_none());
        assert_eq!(src.stats().frames, 1);
    }

    #[test]
    fn snaplen_cut_keeps_wire_len() {
        let r = Rec {
            secs: 1,
            frac: 0,
            data: b"abcd",
            orig: 1514,
        };
        let frames = read_all(pcap(ByteOrder::Little, TsPrecision::Micro, 1, &[r]));
        assert_eq!((frames[0].data.len(), frames[0].wire_len), (4, 1514));
    }

    #[test]
    fn pcapng_interfaces_sections_and_block_types() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let mut f = shb(order);
            f.extend(idb(order, 1, None, None)); // µs, Ethernet
            f.extend(idb(order, 101, Some(9), Some(10))); // ns, raw IP, +10 s
            f.extend(ng_block(order, 0x0000_0bad, b"unknown block")); // skipped
            f.extend(epb(order, 0, 1_500_000_000_250_000, b"eth frame"));
            f.extend(epb(order, 1, 1_500_000_000_000_000_123, b"raw"));
            f.extend(spb(order, b"simple")); // interface 0, last timestamp
                                             // a second section: interfaces start again
            f.extend(shb(order));
            f.extend(idb(order, 276, Some(0x80 | 20), None)); // 2^-20 s
            f.extend(epb(order, 0, (5 << 20) | (1 << 19), b"sll2"));
            let frames = read_all(f);
            assert_eq!(frames.len(), 4, "{order:?}");
            assert_eq!(frames[0].ts, 1_500_000_000_250_000_000);
            assert_eq!(
                (frames[0].link, frames[0].data.as_slice()),
                (1, &b"eth frame"[..])
            );
            assert_eq!(frames[0].wire_len, 109);
            assert_eq!(frames[1].ts, 1_500_000_010_000_000_123);
            assert_eq!(
                (frames[1].link, frames[1].data.as_slice()),
                (101, &b"raw"[..])
            );
            assert_eq!(frames[2].ts, frames[1].ts);
            assert_eq!(
                (frames[2].link, frames[2].data.as_slice()),
                (1, &b"simple"[..])
            );
            assert_eq!(frames[3].ts, 5_500_000_000);
            assert_eq!(frames[3].link, 276);
        }
    }

    #[test]
    fn unknown_blocks_are_counted_and_bytes_read_reach_the_file_size() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let mut f = shb(order);
            f.extend(idb(order, 1, None, None));
            f.extend(ng_block(order, 0x0000_0bad, b"custom block")); // defined: not counted
            f.extend(ng_block(order, 0x0000_0099, b"unknown block"));
            f.extend(epb(order, 0, 1, b"frame one"));
            f.extend(ng_block(order, 0x7eed_0001, &[0u8; 40]));
            f.extend(epb(order, 0, 2, b"frame two"));
            let size = f.len() as u64;
            let mut src = source(f).unwrap();
            let mut last = 0;
            while let Some(frame) = src.next_frame().unwrap() {
                assert!(!frame.data.is_empty());
                assert!(src.bytes_read() >= last, "bytes read never go back");
                last = src.bytes_read();
            }
            assert_eq!(src.stats().frames, 2);
            assert_eq!(src.stats().unknown_blocks, 2, "{order:?}");
            assert_eq!(src.bytes_read(), size, "{order:?}");
        }
    }

    #[test]
    fn pcapng_packet_on_undeclared_interface_is_corrupt() {
        let mut f = shb(ByteOrder::Little);
        f.extend(idb(ByteOrder::Little, 1, None, None));
        f.extend(epb(ByteOrder::Little, 3, 0, b"x"));
        let (frames, err) = drain(&mut source(f).unwrap());
        assert!(frames.is_empty());
        assert!(matches!(err, Some(CaptureError::Corrupt { .. })), "{err:?}");
    }

    #[test]
    fn truncated_mid_record_keeps_frames_before() {
        let recs = [
            rec(1, 0, &[1; 60]),
            rec(2, 0, &[2; 60]),
            rec(3, 0, &[3; 60]),
        ];
        let mut bytes = pcap(ByteOrder::Little, TsPrecision::Micro, 1, &recs);
        bytes.truncate(bytes.len() - 10);
        let (frames, err) = drain(&mut source(bytes).unwrap());
        assert_eq!(frames.len(), 2);
        match err {
            Some(CaptureError::Truncated { path, offset }) => {
                assert_eq!(path, Path::new("test.pcap"));
                assert_eq!(offset, 24 + 2 * 76);
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        // cut inside a record header, and in pcapng
        let mut bytes = pcap(ByteOrder::Big, TsPrecision::Nano, 1, &recs[..1]);
        bytes.extend_from_slice(&[0; 5]);
        let (frames, err) = drain(&mut source(bytes).unwrap());
        assert_eq!(frames.len(), 1);
        assert!(
            matches!(err, Some(CaptureError::Truncated { offset: 100, .. })),
            "{err:?}"
        );
        let mut f = shb(ByteOrder::Little);
        f.extend(idb(ByteOrder::Little, 1, None, None));
        f.extend(epb(ByteOrder::Little, 0, 0, b"whole"));
        let cut_at = f.len() as u64;
        f.extend(epb(ByteOrder::Little, 0, 0, b"cut short"));
        f.truncate(f.len() - 4);
        let (frames, err) = drain(&mut source(f).unwrap());
        assert_eq!(frames.len(), 1);
        match err {
            Some(CaptureError::Truncated { offset, .. }) => assert_eq!(offset, cut_at),
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[test]
    fn bad_inputs_name_the_problem() {
        let err = source(Vec::new()).unwrap_err();
        assert!(matches!(err, CaptureError::Empty { .. }), "{err:?}");
        let err = source(b"<html><body>not a capture".to_vec()).unwrap_err();
        match &err {
            CaptureError::UnknownFormat { magic, .. } => {
                assert_eq!(magic, "3c 68 74 6d 6c 3e 3c 62")
            }
            other => panic!("expected UnknownFormat, got {other:?}"),
        }
        assert!(err.to_string().contains("test.pcap"));
        let err = source(vec![0x42]).unwrap_err();
        assert!(matches!(err, CaptureError::UnknownFormat { .. }), "{err:?}");
        // the start of a magic number: a file cut short, not a foreign one
        let err = source(vec![0xd4, 0xc3]).unwrap_err();
        assert!(matches!(err, CaptureError::Truncated { .. }), "{err:?}");
        // a header cut short
        let err = source(vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).unwrap_err();
        assert!(
            matches!(err, CaptureError::Truncated { offset: 0, .. }),
            "{err:?}"
        );
        let err = source(shb(ByteOrder::Little)[..20].to_vec()).unwrap_err();
        assert!(
            matches!(err, CaptureError::Truncated { offset: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::fixtures::XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next();
        let valid = pcap(
            ByteOrder::Little,
            TsPrecision::Micro,
            1,
            &[rec(1, 2, &[7; 40]), rec(3, 4, &[8; 30])],
        );
        let mut ng = shb(ByteOrder::Little);
        ng.extend(idb(ByteOrder::Little, 1, Some(9), None));
        ng.extend(epb(ByteOrder::Little, 0, 5, &[9; 33]));
        ng.extend(spb(ByteOrder::Little, &[1; 12]));
        for base in [valid, ng] {
            for _ in 0..2_000 {
                let mut bytes = base.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
                if next() % 3 == 0 {
                    bytes.truncate((next() as usize) % bytes.len());
                }
                // a small buffer: quicker in debug builds, and it exercises growing
                let reader = io::Cursor::new(bytes);
                if let Ok(mut src) = FileSource::with_capacity("fuzz".into(), reader, 256) {
                    let _ = drain(&mut src);
                }
            }
        }
    }

    /// What a source read: the frames and the error that ended it, comparable across readers.
    fn outcome(src: &mut FileSource) -> (Vec<Owned>, Option<String>, u64) {
        let (frames, err) = drain(src);
        (frames, err.map(|e| e.to_string()), src.bytes_read())
    }

    #[test]
    fn a_mapped_file_reads_as_the_stream_of_it_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mapped.pcap");
        let recs = [
            rec(1, 999_999, &[1; 60]),
            rec(2, 5, &[2; 0]),
            rec(3, 7, &[3; 1514]),
        ];
        let mut rng = crate::fixtures::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next();
        let mut files = Vec::new();
        for order in [ByteOrder::Little, ByteOrder::Big] {
            for precision in [TsPrecision::Micro, TsPrecision::Nano] {
                let whole = pcap(order, precision, 113, &recs);
                for cut in [0, 1, 10, 16, 77] {
                    let mut b = whole.clone();
                    b.truncate(b.len() - cut);
                    files.push(b);
                }
                // a record claiming more than any record may hold
                let mut huge = pcap(order, precision, 1, &recs[..1]);
                let at = 24 + 8;
                huge[at..at + 4].copy_from_slice(&u32b(order, 0x7fff_ffff));
                files.push(huge);
                for _ in 0..300 {
                    let mut b = whole.clone();
                    for _ in 0..(next() % 3 + 1) {
                        let at = 24 + (next() as usize) % (b.len() - 24);
                        b[at] = next() as u8;
                    }
                    files.push(b);
                }
            }
        }
        // a file written just now may still be growing: it is streamed, not mapped
        std::fs::write(&path, &files[0]).unwrap();
        assert!(FileSource::open(&path).unwrap().mapped.is_none());
        let settle = |path: &Path| {
            let f = std::fs::File::options().write(true).open(path).unwrap();
            let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            f.set_modified(past).unwrap();
        };
        let mut mapped = 0;
        for bytes in files {
            std::fs::write(&path, &bytes).unwrap();
            settle(&path);
            let mut from_file = FileSource::open(&path).unwrap();
            mapped += usize::from(from_file.mapped.is_some());
            let streamed = FileSource::from_reader(path.clone(), io::Cursor::new(bytes.clone()));
            let expected = outcome(&mut streamed.unwrap());
            assert_eq!(outcome(&mut from_file), expected);
            // and a batch at a time, mapped and streamed, whatever the batch
            for batch in [1, 2, 1024] {
                let mut mapped = FileSource::open(&path).unwrap();
                let (frames, err) = drain_batched(&mut mapped, batch);
                let got = (frames, err.map(|e| e.to_string()), mapped.bytes_read());
                assert_eq!(got, expected, "mapped, batches of {batch}");
                let mut streamed =
                    FileSource::from_reader(path.clone(), io::Cursor::new(bytes.clone())).unwrap();
                let (frames, err) = drain_batched(&mut streamed, batch);
                assert_eq!(frames, expected.0, "streamed, batches of {batch}");
                assert_eq!(err.map(|e| e.to_string()), expected.1);
            }
        }
        assert_eq!(mapped, 4 * 306, "every file was mapped");
        // pcapng and standard input keep the streaming reader
        let mut ng = shb(ByteOrder::Little);
        ng.extend(idb(ByteOrder::Little, 1, None, None));
        std::fs::write(&path, &ng).unwrap();
        settle(&path);
        assert!(FileSource::open(&path).unwrap().mapped.is_none());
    }

    #[test]
    fn jumbo_records_grow_the_buffer() {
        let jumbo = vec![0xabu8; 200 * 1024];
        let recs = [rec(1, 0, b"small"), rec(2, 0, &jumbo), rec(3, 0, b"after")];
        let bytes = pcap(ByteOrder::Little, TsPrecision::Micro, 1, &recs);
        // a 64 KiB buffer must grow for the 200 KiB record
        let mut src =
            FileSource::with_capacity("small-buf".into(), io::Cursor::new(bytes.clone()), 64 << 10)
                .unwrap();
        let (frames, err) = drain(&mut src);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].data, jumbo);
        assert_eq!(frames[2].data, b"after");
        assert_eq!(read_all(bytes).len(), 3);
        // a 3 MiB record exceeds the default buffer
        let big = vec![1u8; 3 << 20];
        let mut f = shb(ByteOrder::Little);
        f.extend(idb(ByteOrder::Little, 1, None, None));
        f.extend(epb(ByteOrder::Little, 0, 0, &big));
        f.extend(epb(ByteOrder::Little, 0, 0, b"tail"));
        let frames = read_all(f);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data.len(), big.len());
    }

    #[test]
    fn huge_record_claim_is_corrupt() {
        let mut bytes = pcap(
            ByteOrder::Little,
            TsPrecision::Micro,
            1,
            &[rec(1, 0, b"ok")],
        );
        bytes.extend_from_slice(&u32b(ByteOrder::Little, 2));
        bytes.extend_from_slice(&u32b(ByteOrder::Little, 0));
        bytes.extend_from_slice(&u32b(ByteOrder::Little, 64 << 20));
        bytes.extend_from_slice(&u32b(ByteOrder::Little, 64 << 20));
        bytes.extend_from_slice(&[0; 100]);
        let (frames, err) = drain(&mut source(bytes).unwrap());
        assert_eq!(frames.len(), 1);
        match err {
            Some(CaptureError::Corrupt { offset, .. }) => assert_eq!(offset, 24 + 18),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// A reader that hands out at most 7 bytes per call, like a slow pipe.
    struct Trickle(io::Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn short_reads_are_fine() {
        let mut f = shb(ByteOrder::Big);
        f.extend(idb(ByteOrder::Big, 1, None, None));
        for i in 0..50u8 {
            f.extend(epb(ByteOrder::Big, 0, u64::from(i), &[i; 61]));
        }
        let mut src = FileSource::from_reader("<stdin>", Trickle(io::Cursor::new(f))).unwrap();
        let (frames, err) = drain(&mut src);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(frames.len(), 50);
        assert_eq!(frames[49].data, vec![49; 61]);
    }

    #[test]
    fn multi_file_source_chains_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.cap");
        let b = dir.path().join("b.whatever");
        std::fs::write(
            &a,
            pcap(
                ByteOrder::Little,
                TsPrecision::Micro,
                1,
                &[rec(1, 0, b"a1")],
            ),
        )
        .unwrap();
        let mut ng = shb(ByteOrder::Little);
        ng.extend(idb(ByteOrder::Little, 101, None, None));
        ng.extend(epb(ByteOrder::Little, 0, 2_000_000, b"b1"));
        ng.extend(epb(ByteOrder::Little, 0, 3_000_000, b"b2"));
        std::fs::write(&b, ng).unwrap();
        let mut src = MultiFileSource::new(vec![a.clone(), b.clone()]);
        assert_eq!(src.current_path(), a.as_path());
        let f = src.next_frame().unwrap().unwrap();
        assert_eq!(f.data, b"a1");
        let f = src.next_frame().unwrap().unwrap();
        assert_eq!((f.data, f.link), (&b"b1"[..], LinkType::RAW));
        assert_eq!(src.current_path(), b.as_path());
        assert!(src.next_frame().unwrap().is_some());
        assert!(src.next_frame().unwrap().is_none());
        assert_eq!(src.stats().frames, 3);
        // in batches: across the files, in order, and the same count
        for batch in [1, 2, 5] {
            let mut src = MultiFileSource::new(vec![a.clone(), b.clone()]);
            let (frames, err) = drain_batched(&mut src, batch);
            assert!(err.is_none(), "{err:?}");
            let data: Vec<&[u8]> = frames.iter().map(|f| f.data.as_slice()).collect();
            assert_eq!(data, [&b"a1"[..], b"b1", b"b2"], "batches of {batch}");
            assert_eq!(src.stats().frames, 3);
        }
        // a missing file is an Open error naming it, then the source is finished
        let missing = dir.path().join("missing.pcap");
        let mut src = MultiFileSource::new(vec![a.clone(), missing.clone(), b.clone()]);
        assert!(src.next_frame().unwrap().is_some());
        match src.next_frame() {
            Err(CaptureError::Open { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Open, got {:?}", other.map(|f| f.is_some())),
        }
        assert!(src.next_frame().unwrap().is_none());
        // in batches: the first file's frame is handed, then the error
        let mut src = MultiFileSource::new(vec![a, missing.clone(), b]);
        let (frames, err) = drain_batched(&mut src, 8);
        assert_eq!(frames.len(), 1);
        assert!(matches!(err, Some(CaptureError::Open { path, .. }) if path == missing));
    }

    /// TCP flag counts from INDEX.md ("TCP flags: S 37841"; S=0x02, SA=0x12, R=0x04, AR=0x14).
    const FLAG_COUNTS: &[(&str, u8, u64)] = &[
        ("attack/synflood_spoofed_stopddos.pcap", 0x02, 37_841),
        ("attack/synack_reflection_stopddos.pcap", 0x12, 6_651),
        ("attack/synack_reflection_stopddos.pcap", 0x04, 813),
        ("attack/synack_reflection_stopddos.pcap", 0x14, 205),
        ("attack/cicddos2019_synflood_lucid.pcap", 0x02, 18_778),
        ("attack/cicddos2019_synflood_lucid.pcap", 0x14, 7_538),
        ("benign/lt_sll_nanosecond_tcpdump.pcap", 0x02, 1),
        ("benign/lt_qinqinq_http_zeek.pcap", 0x10, 8),
    ];

    fn stats_line(st: &DecodeStats) -> String {
        SkipReason::ALL
            .iter()
            .filter(|r| st.count(**r) > 0)
            .map(|r| format!("{}={}", r.name(), st.count(*r)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn shared_captures_read_and_decode() {
        let Some(root) = shared_captures() else {
            return;
        };
        // every capture in the folders is in the table
        for dir in ["attack", "benign"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let name = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
                assert!(
                    SHARED_CAPTURES.iter().any(|(n, _)| *n == name),
                    "{name} is not in the expected-count table"
                );
            }
        }
        for (name, expected) in SHARED_CAPTURES {
            let mut src = FileSource::open(&root.join(name)).unwrap();
            let mut stats = DecodeStats::default();
            let mut decoded = 0u64;
            let mut tcp_flags = std::collections::BTreeMap::<u8, u64>::new();
            let mut fragments = 0u64;
            while let Some(f) = src.next_frame().unwrap() {
                match Decoder.decode(f.link, f.data, f.ts, f.wire_len) {
                    Ok(p) => {
                        decoded += 1;
                        if p.proto == crate::decode::proto::TCP && p.fragment == Fragment::None {
                            *tcp_flags.entry(p.tcp_flags).or_insert(0) += 1;
                        }
                        fragments += u64::from(p.fragment != Fragment::None);
                    }
                    Err(e) => stats.record(&e),
                }
            }
            for (file, flags, count) in FLAG_COUNTS {
                if file == name {
                    assert_eq!(
                        tcp_flags.get(flags).copied(),
                        Some(*count),
                        "{name} {flags:#x}"
                    );
                }
            }
            assert_eq!(src.stats().frames, *expected, "{name}");
            eprintln!(
                "{name}: frames={} decoded={decoded} fragments={fragments} {}",
                src.stats().frames,
                stats_line(&stats)
            );
            if *name == "benign/lt_nflog_http_zeek.pcap" {
                assert_eq!(stats.unsupported_link_types.get(&239), Some(&13));
            }
        }
    }
}
