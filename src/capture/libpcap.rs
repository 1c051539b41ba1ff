//! Live capture through libpcap (the `pcap` crate; cargo feature `libpcap`): portable beyond Linux and
//! takes BPF filter expressions (`--filter`).
//!
//! Two libpcap 1.10 pitfalls, measured here, shape this file: its read timeout never expires on an
//! idle Linux interface (so `next_packet` would block forever and alerts could not end), and
//! `immediate_mode(true)` falls back from TPACKET_V3 to V2, about a third slower. So the handle is
//! put in non-blocking mode, keeps V3 (the timeout is its block retire timeout), and is waited on with
//! `poll` on its descriptor, which gives the idle reports live capture needs.

use std::os::fd::AsFd;
use std::time::Duration;

use pcap::{Active, Capture, Error as PcapError, Precision};

use super::afpacket::{poll_readable, PollResult};
use super::{
    no_such_interface, permission_denied, CaptureError, CaptureStats, FrameSource, RawFrame,
    SourceEvent,
};
use crate::decode::LinkType;
use crate::time::Timestamp;

/// How to open the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapConfig {
    /// Kernel buffer in bytes (libpcap's ring on Linux).
    pub buffer_bytes: usize,
    /// Block retire timeout (libpcap's read timeout).
    pub block_timeout: Duration,
    /// How long one wait lasts before the source reports itself idle.
    pub poll_timeout: Duration,
    pub promiscuous: bool,
    /// BPF filter expression (tcpdump syntax), if any.
    pub filter: Option<String>,
}

impl Default for PcapConfig {
    fn default() -> Self {
        PcapConfig {
            buffer_bytes: 64 << 20,
            block_timeout: Duration::from_millis(10),
            poll_timeout: Duration::from_millis(100),
            promiscuous: true,
            filter: None,
        }
    }
}

/// A live libpcap source on one interface.
pub struct PcapSource {
    iface: String,
    cap: Capture<Active>,
    link: LinkType,
    cfg: PcapConfig,
    /// libpcap's buffer ran dry: wait on the descriptor before reading again.
    dry: bool,
    stats: CaptureStats,
    /// libpcap's drop counter as last read: it is 32 bits and wraps (after 2^32 drops, about 71
    /// minutes at a million a second), so the stats add what it moved by since.
    last_dropped: u32,
    /// Copy of the last frame for [`FrameSource::next_frame`] (the pipeline uses the zero-copy
    /// [`FrameSource::next_event`]).
    copy: Vec<u8>,
}

impl std::fmt::Debug for PcapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapSource")
            .field("iface", &self.iface)
            .field("link", &self.link)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl PcapSource {
    /// Opens `iface`. Errors name the missing privilege, the unknown interface (listing the available
    /// ones) or libpcap's complaint.
    pub fn open(iface: &str, cfg: PcapConfig) -> Result<PcapSource, CaptureError> {
        if cfg!(target_os = "linux") && !std::path::Path::new("/sys/class/net").join(iface).exists()
        {
            return Err(no_such_interface(iface));
        }
        let setup = |e: PcapError| classify(iface, e);
        let cap = Capture::from_device(iface)
            .map_err(setup)?
            .promisc(cfg.promiscuous)
            .snaplen(65_535)
            .buffer_size(cfg.buffer_bytes.min(i32::MAX as usize) as i32)
            .timeout(cfg.block_timeout.as_millis().clamp(1, 60_000) as i32)
            .precision(Precision::Nano)
            .open()
            .map_err(setup)?;
        let mut cap = cap.setnonblock().map_err(setup)?;
        if let Some(expr) = &cfg.filter {
            cap.filter(expr, true).map_err(|e| CaptureError::Setup {
                iface: iface.to_string(),
                detail: format!(
                    "bad --filter `{expr}`: {e} (tcpdump filter syntax: man pcap-filter)"
                ),
            })?;
        }
        let link = LinkType(cap.get_datalink().0 as u32);
        Ok(PcapSource {
            iface: iface.to_string(),
            cap,
            link,
            cfg,
            dry: false,
            stats: CaptureStats::default(),
            last_dropped: 0,
            copy: Vec::new(),
        })
    }

    /// The link type libpcap reports.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// Packet time no frame still to come can precede (see the AF_PACKET source).
    fn idle_now(&self) -> Timestamp {
        let now = Timestamp::now().0;
        Timestamp(now.saturating_sub(2 * self.cfg.block_timeout.as_nanos() as u64))
    }

    /// Waits for the descriptor; true when there is something to read.
    fn wait(&mut self) -> Result<bool, CaptureError> {
        match poll_readable(self.cap.as_fd(), self.cfg.poll_timeout) {
            Ok(PollResult::Ready) => {
                self.dry = false;
                Ok(true)
            }
            Ok(PollResult::TimedOut) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
            Ok(PollResult::Error) => Err(CaptureError::Setup {
                iface: self.iface.clone(),
                detail: "the capture descriptor reports an error (is the interface still up?)"
                    .into(),
            }),
            Err(cause) => Err(CaptureError::Live {
                iface: self.iface.clone(),
                what: "waiting for frames",
                cause,
                hint: "",
            }),
        }
    }

    fn read_error(&self, e: PcapError) -> CaptureError {
        CaptureError::Setup {
            iface: self.iface.clone(),
            detail: format!("libpcap read failed: {e}"),
        }
    }
}

/// Maps libpcap's open errors onto the ones that say what to do.
fn classify(iface: &str, e: PcapError) -> CaptureError {
    let msg = e.to_string();
    let lower = msg.to_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        permission_denied(iface, std::io::Error::other(msg))
    } else if lower.contains("no such device") {
        no_such_interface(iface)
    } else {
        CaptureError::Setup {
            iface: iface.to_string(),
            detail: format!("libpcap cannot open it: {msg}"),
        }
    }
}

fn frame_ts(tv: &libc::timeval) -> Timestamp {
    // Nanosecond precision was requested: `tv_usec` holds nanoseconds.
    Timestamp::from_secs_nanos(tv.tv_sec.max(0) as u64, tv.tv_usec.max(0) as u64)
}

impl FrameSource for PcapSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
        let (ts, wire_len) = loop {
            if self.dry {
                self.wait()?;
                continue;
            }
            match self.cap.next_packet() {
                Ok(p) => {
                    self.copy.clear();
                    self.copy.extend_from_slice(p.data);
                    break (frame_ts(&p.header.ts), p.header.len);
                }
                Err(PcapError::TimeoutExpired) => self.dry = true,
                Err(PcapError::NoMorePackets) => return Ok(None),
                Err(e) => return Err(self.read_error(e)),
            }
        };
        self.stats.frames += 1;
        self.stats.captured_bytes += self.copy.len() as u64;
        Ok(Some(RawFrame {
            ts,
            link: self.link,
            data: &self.copy,
            wire_len,
        }))
    }

    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
        if self.dry {
            // Once per drained buffer: cheap enough to keep the kernel drops current.
            self.refresh_stats();
            if !self.wait()? {
                return Ok(SourceEvent::Idle {
                    now: self.idle_now(),
                });
            }
        }
        let idle_now = self.idle_now();
        match self.cap.next_packet() {
            Ok(p) => {
                self.stats.frames += 1;
                self.stats.captured_bytes += p.data.len() as u64;
                Ok(SourceEvent::Frame(RawFrame {
                    ts: frame_ts(&p.header.ts),
                    link: self.link,
                    data: p.data,
                    wire_len: p.header.len,
                }))
            }
            Err(PcapError::TimeoutExpired) => {
                // Ran dry: report it at once so the pipeline flushes, and wait on the next call.
                self.dry = true;
                Ok(SourceEvent::Idle { now: idle_now })
            }
            Err(PcapError::NoMorePackets) => Ok(SourceEvent::End),
            Err(e) => Err(CaptureError::Setup {
                iface: self.iface.clone(),
                detail: format!("libpcap read failed: {e}"),
            }),
        }
    }

    /// Counters; the kernel drops are as of the last time the buffer ran dry (libpcap needs `&mut`
    /// to read them).
    fn stats(&self) -> CaptureStats {
        self.stats
    }
}

impl PcapSource {
    /// Reads libpcap's kernel drop counter into the stats.
    fn refresh_stats(&mut self) {
        if let Ok(st) = self.cap.stats() {
            self.stats.kernel_drops = self
                .stats
                .kernel_drops
                .saturating_add(u64::from(dropped_since(self.last_dropped, st.dropped)));
            self.last_dropped = st.dropped;
        }
    }
}

/// Drops counted by libpcap's 32-bit counter between readings `before` and `now` (it wraps).
fn dropped_since(before: u32, now: u32) -> u32 {
    now.wrapping_sub(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_counter_is_followed_across_its_wrap() {
        assert_eq!(dropped_since(0, 0), 0);
        assert_eq!(dropped_since(10, 25), 15);
        // 2^32 - 5 before, 7 after: 12 more, not a step back
        assert_eq!(dropped_since(u32::MAX - 4, 7), 12);
    }
}
