//! Parallel decode for files (`replay --decode-threads N`): a reading thread only walks the records
//! and copies each frame's bytes into a chunk; N decode threads turn chunks into packet summaries;
//! the caller's thread takes the decoded chunks back in reading order and routes them as usual.
//! With N = 1 there is no reading thread: the one decode thread reads the source and decodes each
//! frame where it lies, so no frame is copied (only the summaries cross to the caller's thread).
//!
//! ```text
//!  reading thread            decode threads (N)          caller's thread
//! ┌────────────────┐ chunk i ┌──────────────────┐        ┌────────────────────────┐
//! │ source → copy  │────────▶│ worker i mod N   │───────▶│ chunk 0, 1, 2, … → route│
//! └────────────────┘         └──────────────────┘        └────────────────────────┘
//! ```
//! Chunk `i` goes to worker `i mod N` and the caller takes chunk `i` from worker `i mod N`: the
//! order is kept without sequence numbers or a reorder buffer, so the output is byte-identical to
//! decoding inline. A worker whose channel closes before chunk `i` arrived means chunk `i` does not
//! exist: the input is over. A read error travels in the chunk after the last frame read.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::capture::{CaptureError, CaptureStats, FrameSource};
use crate::decode::{DecodeError, Decoder, LinkType, PacketSummary};
use crate::threads::spawn_named;
use crate::time::Timestamp;

/// Frames per chunk.
const CHUNK_FRAMES: usize = 1024;
/// Bytes of frame data per chunk (a chunk of jumbo frames stops earlier).
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks each channel holds.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Where one frame is in a chunk.
struct FrameAt {
    ts: Timestamp,
    link: LinkType,
    wire_len: u32,
    start: usize,
    end: usize,
}

/// Frames copied out of the source's buffer, in reading order.
#[derive(Default)]
struct Chunk {
    frames: Vec<FrameAt>,
    data: Vec<u8>,
    /// Reading stopped on this error after the frames above.
    error: Option<CaptureError>,
}

/// A chunk decoded: what the caller's thread routes.
#[derive(Default)]
pub(super) struct Decoded {
    /// Frames in the chunk.
    pub frames: u64,
    pub packets: Vec<PacketSummary>,
    /// The request heads some packets carry: (index in `packets`, head), in order.
    pub heads: Vec<(u32, crate::requests::RequestHead)>,
    /// Frames that did not decode (counted by reason; their order does not matter).
    pub errors: Vec<DecodeError>,
    pub error: Option<CaptureError>,
}

impl Decoded {
    /// Decodes one frame (through `p`, the caller's scratch summary) onto the end of the chunk:
    /// its summary and request head, or the reason it did not decode.
    fn decode(
        &mut self,
        decoder: &Decoder,
        link: LinkType,
        data: &[u8],
        ts: Timestamp,
        wire_len: u32,
        p: &mut PacketSummary,
    ) {
        match decoder.decode_into(link, data, ts, wire_len, p) {
            Ok(()) => {
                if let Some(head) = decoder.request_head(link, data, p) {
                    self.heads.push((self.packets.len() as u32, head));
                }
                self.packets.push(*p);
            }
            Err(e) => self.errors.push(e),
        }
    }
}

/// The receiving end of a running pool: decoded chunks in reading order.
pub(super) struct DecodedChunks {
    rxs: Vec<Receiver<Decoded>>,
    next: usize,
    done: bool,
}

impl DecodedChunks {
    /// The next chunk in reading order; `None` once the input is over.
    pub fn next_chunk(&mut self) -> Option<Decoded> {
        if self.done {
            return None;
        }
        let rx = self.rxs.get(self.next)?;
        match rx.recv() {
            Ok(d) => {
                self.next = (self.next + 1) % self.rxs.len();
                Some(d)
            }
            Err(_) => {
                self.done = true;
                None
            }
        }
    }
}

/// Starts the reading thread and `workers` decode threads in `scope` over `source` (one thread
/// that does both when `workers` is 1). The reading
/// thread returns the source's counters when it ends (at the end of input, on an error, or when
/// `stop` is set); drop the [`DecodedChunks`] only after taking what you need (dropping it stops the
/// pool).
pub(super) fn spawn<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    source: &'env mut (dyn FrameSource + Send),
    workers: usize,
    stop: &'env AtomicBool,
) -> (
    DecodedChunks,
    std::thread::ScopedJoinHandle<'scope, CaptureStats>,
) {
    let workers = workers.max(1);
    if workers == 1 {
        // one decode thread reads the source itself: no frame is copied into a chunk
        let (out_tx, out_rx) = bounded::<Decoded>(CHUNKS_IN_FLIGHT);
        let reading = spawn_named(scope, "fw-decode-0".into(), move || {
            read_and_decode(source, out_tx, stop)
        });
        let chunks = DecodedChunks {
            rxs: vec![out_rx],
            next: 0,
            done: false,
        };
        return (chunks, reading);
    }
    let mut chunk_txs = Vec::with_capacity(workers);
    let mut out_rxs = Vec::with_capacity(workers);
    for w in 0..workers {
        let (chunk_tx, chunk_rx) = bounded::<Chunk>(CHUNKS_IN_FLIGHT);
        let (out_tx, out_rx) = bounded::<Decoded>(CHUNKS_IN_FLIGHT);
        chunk_txs.push(chunk_tx);
        out_rxs.push(out_rx);
        spawn_named(scope, format!("fw-decode-{w}"), move || {
            decode_chunks(chunk_rx, out_tx)
        });
    }
    let reading = spawn_named(scope, "fw-read".into(), move || {
        read_chunks(source, chunk_txs, stop)
    });
    (
        DecodedChunks {
            rxs: out_rxs,
            next: 0,
            done: false,
        },
        reading,
    )
}

/// The reading thread: frames into chunks, chunk `i` to worker `i mod N`.
fn read_chunks(
    source: &mut (dyn FrameSource + Send),
    txs: Vec<Sender<Chunk>>,
    stop: &AtomicBool,
) -> CaptureStats {
    let mut next = 0;
    let mut chunk = Chunk::default();
    loop {
        if chunk.frames.len() % 256 == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
        match source.next_frame() {
            Ok(Some(f)) => {
                let start = chunk.data.len();
                chunk.data.extend_from_slice(f.data);
                chunk.frames.push(FrameAt {
                    ts: f.ts,
                    link: f.link,
                    wire_len: f.wire_len,
                    start,
                    end: chunk.data.len(),
                });
                if chunk.frames.len() >= CHUNK_FRAMES || chunk.data.len() >= CHUNK_BYTES {
                    if !send(&txs, &mut next, std::mem::take(&mut chunk)) {
                        return source.stats();
                    }
                    chunk.frames.reserve(CHUNK_FRAMES);
                    chunk.data.reserve(CHUNK_BYTES / 4);
                }
            }
            Ok(None) => break,
            Err(e) => {
                chunk.error = Some(e);
                break;
            }
        }
    }
    if !chunk.frames.is_empty() || chunk.error.is_some() {
        send(&txs, &mut next, chunk);
    }
    source.stats()
}

/// The one decode thread of a pool of one: reads [`CHUNK_FRAMES`] frames at a time from the
/// source and decodes them where they lie (a mapped file's pages), then hands the chunk over.
fn read_and_decode(
    source: &mut (dyn FrameSource + Send),
    tx: Sender<Decoded>,
    stop: &AtomicBool,
) -> CaptureStats {
    let decoder = Decoder;
    let mut p = PacketSummary::default();
    while !stop.load(Ordering::Relaxed) {
        let mut out = Decoded {
            packets: Vec::with_capacity(CHUNK_FRAMES),
            ..Decoded::default()
        };
        let read = source.next_frames(CHUNK_FRAMES, &mut |f| {
            out.frames += 1;
            out.decode(&decoder, f.link, f.data, f.ts, f.wire_len, &mut p);
        });
        let last = match read {
            Ok(n) => n < CHUNK_FRAMES,
            Err(e) => {
                out.error = Some(e);
                true
            }
        };
        if (out.frames > 0 || out.error.is_some()) && tx.send(out).is_err() {
            break;
        }
        if last {
            break;
        }
    }
    source.stats()
}

/// Sends `chunk` to the worker whose turn it is; false when the pool is gone.
fn send(txs: &[Sender<Chunk>], next: &mut usize, chunk: Chunk) -> bool {
    let Some(tx) = txs.get(*next) else {
        return false;
    };
    *next = (*next + 1) % txs.len();
    tx.send(chunk).is_ok()
}

/// A decode thread: chunks in, decoded chunks out, in the order received.
fn decode_chunks(rx: Receiver<Chunk>, tx: Sender<Decoded>) {
    let decoder = Decoder;
    for chunk in rx.iter() {
        let mut out = Decoded {
            frames: chunk.frames.len() as u64,
            packets: Vec::with_capacity(chunk.frames.len()),
            heads: Vec::new(),
            errors: Vec::new(),
            error: chunk.error,
        };
        let mut p = PacketSummary::default();
        for f in &chunk.frames {
            let data = chunk.data.get(f.start..f.end).unwrap_or_default();
            out.decode(&decoder, f.link, data, f.ts, f.wire_len, &mut p);
        }
        if tx.send(out).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::RawFrame;

    /// Frames from memory: `n` IPv4/UDP frames on raw-IP link type, every 7th one garbage, then
    /// optionally an error.
    struct Frames {
        frames: Vec<Vec<u8>>,
        at: usize,
        fail_at_end: bool,
    }

    impl FrameSource for Frames {
        fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
            let i = self.at;
            self.at += 1;
            match self.frames.get(i) {
                Some(data) => Ok(Some(RawFrame {
                    ts: Timestamp(i as u64 * 1000),
                    link: LinkType::RAW,
                    data,
                    wire_len: data.len() as u32,
                })),
                None if self.fail_at_end && i == self.frames.len() => Err(CaptureError::Read {
                    path: "test.pcap".into(),
                    source: std::io::Error::other("boom"),
                }),
                None => Ok(None),
            }
        }
        fn stats(&self) -> CaptureStats {
            CaptureStats {
                frames: self.at.min(self.frames.len()) as u64,
                ..CaptureStats::default()
            }
        }
    }

    fn udp(i: u32) -> Vec<u8> {
        let mut f = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        f.extend_from_slice(&i.to_be_bytes());
        f.extend_from_slice(&[198, 51, 100, 1]);
        f.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        f
    }

    fn frames(n: u32, fail_at_end: bool) -> Frames {
        Frames {
            frames: (0..n)
                .map(|i| if i % 7 == 3 { vec![0xff; 5] } else { udp(i) })
                .collect(),
            at: 0,
            fail_at_end,
        }
    }

    fn run(workers: usize, n: u32, fail: bool) -> (Vec<PacketSummary>, u64, u64, bool, u64) {
        let mut source = frames(n, fail);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let (mut chunks, reading) = spawn(s, &mut source, workers, &stop);
            let (mut packets, mut frames, mut bad, mut failed) = (Vec::new(), 0, 0, false);
            while let Some(d) = chunks.next_chunk() {
                frames += d.frames;
                bad += d.errors.len() as u64;
                failed |= d.error.is_some();
                packets.extend(d.packets);
            }
            let stats = reading.join().map(|s| s.frames).unwrap_or(0);
            (packets, frames, bad, failed, stats)
        })
    }

    #[test]
    fn every_frame_comes_back_once_in_reading_order_whatever_the_worker_count() {
        let n = 5000;
        // what decoding frame by frame on one thread gives
        let mut source = frames(n, false);
        let mut inline = Vec::new();
        while let Ok(Some(f)) = source.next_frame() {
            if let Ok(p) = Decoder.decode(f.link, f.data, f.ts, f.wire_len) {
                inline.push(p);
            }
        }
        let garbage = (0..n).filter(|i| i % 7 == 3).count();
        assert_eq!(inline.len(), n as usize - garbage);
        for workers in [1, 2, 3, 5] {
            let (packets, frames, bad, failed, read) = run(workers, n, false);
            assert_eq!(frames, u64::from(n), "{workers} workers");
            assert_eq!(read, u64::from(n));
            assert_eq!(frames, packets.len() as u64 + bad);
            assert!(!failed);
            let ts: Vec<u64> = packets.iter().map(|p| p.ts.0).collect();
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "{workers}: order");
            assert_eq!(
                packets.iter().map(|p| p.src).collect::<Vec<_>>(),
                inline.iter().map(|p| p.src).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_read_error_arrives_after_the_frames_before_it() {
        for (workers, n) in [
            (1, 0),
            (1, 1),
            (1, 1024),
            (1, 2049),
            (2, 1),
            (3, 1024),
            (2, 2049),
        ] {
            let (packets, frames, bad, failed, _) = run(workers, n, true);
            assert!(failed, "{workers} workers, {n} frames");
            assert_eq!(frames, u64::from(n));
            assert_eq!(frames, packets.len() as u64 + bad);
        }
    }

    #[test]
    fn a_stop_request_ends_the_pool() {
        let stop = AtomicBool::new(true);
        for workers in [1, 2] {
            let mut source = frames(100_000, false);
            let got = std::thread::scope(|s| {
                let (mut chunks, reading) = spawn(s, &mut source, workers, &stop);
                let mut n = 0;
                while let Some(d) = chunks.next_chunk() {
                    n += d.frames;
                }
                let _ = reading.join();
                n
            });
            assert!(got < 100_000, "{workers}: read {got} frames after stop");
        }
    }
}
