//! Capture: where frames come from. A [`FrameSource`] yields [`RawFrame`]s (bytes, timestamp, link type)
//! and knows its own counters; files are read by [`file`](mod@file).
//!
//! This module owns the contract between capture backends and the rest of the engine: the borrowed
//! [`RawFrame`] (valid until the next call, so no copy per packet), the [`FrameSource`] trait with its
//! [`CaptureStats`], and [`CaptureError`], whose variants name the file and say what to do.

pub mod file;

use std::path::PathBuf;

use crate::decode::LinkType;
use crate::time::Timestamp;

/// One captured frame, borrowed from the source's buffer until the next call.
#[derive(Clone, Copy, Debug)]
pub struct RawFrame<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    /// Captured bytes (may be shorter than `wire_len` when the capture used a snaplen).
    pub data: &'a [u8],
    /// Original length on the wire.
    pub wire_len: u32,
}

/// Counters a source keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames handed out.
    pub frames: u64,
    /// Captured bytes handed out.
    pub captured_bytes: u64,
    /// Frames the kernel dropped (live capture only).
    pub kernel_drops: u64,
    /// pcapng blocks of a type the specification does not define, skipped.
    pub unknown_blocks: u64,
}

impl CaptureStats {
    /// Adds `other`'s counters to these (several files read in turn).
    pub fn add(&mut self, other: &CaptureStats) {
        self.frames += other.frames;
        self.captured_bytes += other.captured_bytes;
        self.kernel_drops += other.kernel_drops;
        self.unknown_blocks += other.unknown_blocks;
    }
}

/// A source of frames: a capture file, several files in order, or a live interface.
pub trait FrameSource {
    /// The next frame, `Ok(None)` at the end of input. After an `Err` the source is finished.
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError>;
    /// Counters so far.
    fn stats(&self) -> CaptureStats;
}

/// Why a capture could not be read. Every variant names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {}: {source} (check the path and its permissions)", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a pcap or pcapng file (first bytes {magic}); convert it with `editcap -F pcap` or check that it is a capture", path.display())]
    UnknownFormat { path: PathBuf, magic: String },
    #[error("{}: file is empty (no capture header)", path.display())]
    Empty { path: PathBuf },
    #[error("{}: truncated at byte {offset}: the last record is cut short (was the capture interrupted?); packets before it were read", path.display())]
    Truncated { path: PathBuf, offset: u64 },
    #[error("{}: corrupt capture at byte {offset}: {detail}; packets before it were read", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
}
