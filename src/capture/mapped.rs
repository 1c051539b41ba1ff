//! Regular pcap files read through a memory map: the frames are handed out where they lie in the
//! file's pages, with no copy into a read buffer and no parser state machine, only the 16-byte
//! record headers walked in order. Standard input, pipes and pcapng keep the streaming reader
//! ([`super::file`]), which owns every other format detail; errors here are the same
//! [`CaptureError`]s with the same offsets.
//!
//! The two `unsafe` blocks of this module map the file and hand the pages already read back to the
//! kernel; see their `SAFETY` notes for what a map assumes of the file.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::file::{sniff_format, ByteOrder, FileFormat, TsPrecision, MAX_RECORD_LEN};
use super::{CaptureError, CaptureStats, RawFrame};
use crate::decode::LinkType;
use crate::time::Timestamp;

/// A file unchanged for this long is taken as complete (not being written) and mapped.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// Length of the pcap file header and of a record header.
const FILE_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;

/// A legacy pcap file mapped into memory.
pub(super) struct MappedPcap {
    map: Mmap,
    /// Offset of the next record header.
    pos: usize,
    order: ByteOrder,
    precision: TsPrecision,
    link: LinkType,
    /// The frame found by the last [`MappedPcap::advance`]: its place and header fields.
    current: Option<(usize, usize, Timestamp, u32)>,
    /// The pages before this offset have been handed back to the kernel.
    released: usize,
}

/// Pages behind the reader are handed back every this many bytes: without it every page of the
/// file read so far would stay in the process's resident set (a 1.5 GB capture, 1.5 GB of RSS).
const RELEASE_EVERY: usize = 4 << 20;
/// Alignment of what is released (a multiple of every common page size).
const RELEASE_ALIGN: usize = 64 << 10;

impl MappedPcap {
    /// Maps `file` (already open at `path`) when it is a regular pcap file with its whole header;
    /// None leaves it to the streaming reader (pcapng, and what is wrong with a file too short for
    /// its header, are told there).
    pub(super) fn open(path: &Path, file: &File) -> Result<Option<MappedPcap>, CaptureError> {
        let meta = file.metadata().map_err(|source| CaptureError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() || meta.len() < FILE_HEADER as u64 {
            return Ok(None);
        }
        // a capture still being written (changed in the last seconds) is streamed: a map sees
        // only the length it had when mapped, a stream reads on to the end
        let settled = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= SETTLED);
        if !settled {
            return Ok(None);
        }
        // SAFETY: a read-only shared mapping of the file; its bytes are only read as plain
        // `u8`s (any contents are valid), never as references to other types, and nothing
        // writes through it. What no map can rule out is another process shrinking the file
        // while it is read: the lost pages then raise SIGBUS. Only files that have not changed
        // for a while are mapped (above); one truncated in place under a running replay (a
        // rotation by copy-and-truncate of the very file being replayed) would end the process.
        let map = match unsafe { Mmap::map(file) } {
            Ok(m) => m,
            // a file system that cannot map (some FUSE or network mounts): stream it instead
            Err(_) => return Ok(None),
        };
        let Some(FileFormat::Pcap {
            byte_order: order,
            precision,
        }) = sniff_format(map.get(..4).unwrap_or_default())
        else {
            return Ok(None);
        };
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        let link = u32_at(&map, 20, order).map_or(0, |n| n & 0x03ff_ffff);
        Ok(Some(MappedPcap {
            map,
            pos: FILE_HEADER,
            order,
            precision,
            link: LinkType(link),
            current: None,
            released: 0,
        }))
    }

    /// Moves to the next record: `Ok(true)` when there is one, `Ok(false)` at the end of the
    /// file. `path` names the file in errors.
    #[inline]
    pub(super) fn advance(
        &mut self,
        path: &Path,
        stats: &mut CaptureStats,
    ) -> Result<bool, CaptureError> {
        self.current = match self.order {
            ByteOrder::Little => self.step::<false>(path, stats)?,
            ByteOrder::Big => self.step::<true>(path, stats)?,
        };
        Ok(self.current.is_some())
    }

    /// The record at `pos`, counted in `stats`, with `pos` moved past it; None at the end.
    #[inline(always)]
    fn step<const BIG: bool>(
        &mut self,
        path: &Path,
        stats: &mut CaptureStats,
    ) -> Result<Option<(usize, usize, Timestamp, u32)>, CaptureError> {
        let Some(record) = self.record::<BIG>(path)? else {
            return Ok(None);
        };
        self.pos = record.0 + record.1;
        stats.frames += 1;
        stats.captured_bytes += record.1 as u64;
        Ok(Some(record))
    }

    /// Hands the next records, at most `max`, to `each` ([`super::FrameSource::next_frames`]):
    /// fewer than `max` only at the end of the file.
    #[inline]
    pub(super) fn for_each(
        &mut self,
        path: &Path,
        stats: &mut CaptureStats,
        max: usize,
        each: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<usize, CaptureError> {
        self.current = None;
        match self.order {
            ByteOrder::Little => self.walk::<false>(path, stats, max, each),
            ByteOrder::Big => self.walk::<true>(path, stats, max, each),
        }
    }

    /// [`MappedPcap::for_each`] in one byte order (`BIG`: big-endian fields).
    #[inline(always)]
    fn walk<const BIG: bool>(
        &mut self,
        path: &Path,
        stats: &mut CaptureStats,
        max: usize,
        each: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<usize, CaptureError> {
        for n in 0..max {
            let Some((start, len, ts, wire_len)) = self.step::<BIG>(path, stats)? else {
                return Ok(n);
            };
            if let Some(data) = self.map.get(start..start + len) {
                each(RawFrame {
                    ts,
                    link: self.link,
                    data,
                    wire_len,
                });
            }
        }
        Ok(max)
    }

    /// The record at `pos`: (start of its bytes, captured length, time, wire length); None at the
    /// end of the file.
    #[inline(always)]
    fn record<const BIG: bool>(
        &mut self,
        path: &Path,
    ) -> Result<Option<(usize, usize, Timestamp, u32)>, CaptureError> {
        let len = self.map.len();
        if self.pos >= len {
            return Ok(None);
        }
        if self.pos - self.released >= RELEASE_EVERY {
            self.release();
        }
        let Some(&header) = self
            .map
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<RECORD_HEADER>())
        else {
            return Err(truncated(path, self.pos));
        };
        let field = |at: usize| {
            let v =
                u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
            if BIG {
                v.swap_bytes()
            } else {
                v
            }
        };
        let (secs, frac, caplen, wire_len) = (field(0), field(4), field(8), field(12));
        let need = RECORD_HEADER.saturating_add(caplen as usize);
        if need > MAX_RECORD_LEN {
            return Err(CaptureError::Corrupt {
                path: path.to_path_buf(),
                offset: self.pos as u64,
                detail: format!("record claims {need} bytes (limit {MAX_RECORD_LEN})"),
            });
        }
        let start = self.pos + RECORD_HEADER;
        if start + caplen as usize > len {
            return Err(truncated(path, self.pos));
        }
        let sub_nanos = match self.precision {
            TsPrecision::Micro => u64::from(frac).saturating_mul(1_000),
            TsPrecision::Nano => u64::from(frac),
        };
        let ts = Timestamp::from_secs_nanos(u64::from(secs), sub_nanos);
        Ok(Some((start, caplen as usize, ts, wire_len)))
    }

    /// Hands the pages wholly before the next record back to the kernel (they are read again from
    /// the file should anything touch them, which nothing does: frames are lent until the next
    /// call only).
    #[cold]
    fn release(&mut self) {
        let upto = self.pos / RELEASE_ALIGN * RELEASE_ALIGN;
        if upto <= self.released {
            return;
        }
        #[cfg(unix)]
        {
            // SAFETY: no reference into [released, upto) exists: the only borrows of the map are
            // the frames handed out by `current`, which borrow `self` and so ended before this
            // `&mut self` call, and every later record starts at or after `self.pos` >= `upto`.
            // The map is a read-only file mapping: dropped pages read back the file's bytes.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.released,
                    upto - self.released,
                )
            };
        }
        self.released = upto;
    }

    /// The frame the last [`MappedPcap::advance`] found.
    #[inline]
    pub(super) fn current(&self) -> Option<RawFrame<'_>> {
        let (start, len, ts, wire_len) = self.current?;
        Some(RawFrame {
            ts,
            link: self.link,
            data: self.map.get(start..start + len)?,
            wire_len,
        })
    }

    /// Bytes of the file walked so far (at the end of a complete file, its size).
    pub(super) fn offset(&self) -> u64 {
        self.pos.min(self.map.len()) as u64
    }
}

fn u32_at(bytes: &[u8], at: usize, order: ByteOrder) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(match order {
        ByteOrder::Little => u32::from_le_bytes(b),
        ByteOrder::Big => u32::from_be_bytes(b),
    })
}

fn truncated(path: &Path, offset: usize) -> CaptureError {
    CaptureError::Truncated {
        path: PathBuf::from(path),
        offset: offset as u64,
    }
}
