//! Capture: where frames come from. A [`FrameSource`] yields [`RawFrame`]s (bytes, timestamp, link type)
//! and knows its own counters; files are read by [`file`](mod@file), live interfaces by
//! [`afpacket`] (Linux, default) or `libpcap` (cargo feature `libpcap`).
//!
//! This module owns the contract between capture backends and the rest of the engine: the borrowed
//! [`RawFrame`] (valid until the next call, so no copy per packet), the [`FrameSource`] trait with its
//! [`SourceEvent`]s and [`CaptureStats`], and [`CaptureError`], whose variants name the file or
//! interface and say what to do.

#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod file;
#[cfg(feature = "libpcap")]
pub mod libpcap;
mod mapped;
#[cfg(target_os = "linux")]
pub mod udp;

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

/// What a source has to say next.
#[derive(Clone, Copy, Debug)]
pub enum SourceEvent<'a> {
    /// A frame, borrowed until the next call.
    Frame(RawFrame<'a>),
    /// Live sources only: nothing is ready now, and no frame still to come is older than `now`
    /// (packet time). The pipeline flushes what it holds and advances the engines' clock to `now`, so
    /// alerts end on an idle link.
    Idle { now: Timestamp },
    /// The input is over.
    End,
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
    /// Live capture over a fanout group spreading only when behind: the times the first socket's
    /// thread fell behind and packets began to spread over every socket.
    pub spreads: u64,
}

impl CaptureStats {
    /// Adds `other`'s counters to these (several files read in turn).
    pub fn add(&mut self, other: &CaptureStats) {
        self.frames += other.frames;
        self.captured_bytes += other.captured_bytes;
        self.kernel_drops += other.kernel_drops;
        self.unknown_blocks += other.unknown_blocks;
        self.spreads += other.spreads;
    }
}

/// A source of frames: a capture file, several files in order, or a live interface.
pub trait FrameSource {
    /// The next frame, `Ok(None)` at the end of input. After an `Err` the source is finished.
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError>;
    /// The next frame, idle report or end. Files never idle; live sources override this (and their
    /// `next_frame` skips the idle reports).
    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
        Ok(match self.next_frame()? {
            Some(frame) => SourceEvent::Frame(frame),
            None => SourceEvent::End,
        })
    }
    /// True when the source never reports itself idle, so its frames may be taken with
    /// [`FrameSource::next_frames`] (files); false for sources whose [`FrameSource::next_event`]
    /// says more than `next_frame` does.
    fn without_idle(&self) -> bool {
        false
    }
    /// Hands the next frames, at most `max`, to `each` in order and says how many it handed; fewer
    /// than `max` only at the end of input. Meant for sources [`FrameSource::without_idle`]
    /// (idle reports need `next_event`). Files walk their records in one loop here instead of one
    /// call through every layer per frame. After an `Err` (the frames before the fault were
    /// handed) the source is finished.
    fn next_frames(
        &mut self,
        max: usize,
        each: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<usize, CaptureError> {
        one_by_one(self, max, each)
    }
    /// Counters so far.
    fn stats(&self) -> CaptureStats;
}

/// [`FrameSource::next_frames`] through [`FrameSource::next_frame`]: what a source without a
/// loop of its own does.
pub fn one_by_one<S: FrameSource + ?Sized>(
    source: &mut S,
    max: usize,
    each: &mut dyn FnMut(RawFrame<'_>),
) -> Result<usize, CaptureError> {
    for n in 0..max {
        match source.next_frame()? {
            Some(frame) => each(frame),
            None => return Ok(n),
        }
    }
    Ok(max)
}

/// Why a capture could not be read. Every variant names the file or interface and says what to do.
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
    #[error("cannot capture on {iface} ({cause}): this needs root or the CAP_NET_RAW capability; run as root, or grant it once with `sudo setcap cap_net_raw,cap_net_admin=eip {exe}` (see docs/live.md)")]
    Permission {
        iface: String,
        exe: String,
        cause: std::io::Error,
    },
    #[error("no network interface named `{iface}`; available: {available}")]
    NoSuchInterface { iface: String, available: String },
    #[error("{iface}: {what} failed: {cause}{hint}")]
    Live {
        iface: String,
        what: &'static str,
        cause: std::io::Error,
        /// What to try, starting with "; " (or empty).
        hint: &'static str,
    },
    #[error("{iface}: {detail}")]
    Setup { iface: String, detail: String },
}

/// The names of the network interfaces of this machine (namespace), sorted, for error messages.
pub fn interface_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The [`CaptureError::NoSuchInterface`] for `iface`.
pub fn no_such_interface(iface: &str) -> CaptureError {
    let names = interface_names();
    CaptureError::NoSuchInterface {
        iface: iface.to_string(),
        available: if names.is_empty() {
            "none found in /sys/class/net".to_string()
        } else {
            names.join(", ")
        },
    }
}

/// The [`CaptureError::Permission`] for `iface`, naming this executable in the `setcap` command.
pub fn permission_denied(iface: &str, cause: std::io::Error) -> CaptureError {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/path/to/floodwatch".to_string());
    CaptureError::Permission {
        iface: iface.to_string(),
        exe,
        cause,
    }
}
