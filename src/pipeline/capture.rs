//! Several capture threads (live capture over AF_PACKET fanout): each reads and decodes its own
//! socket. The first routes its own packets itself and, between them, the batches of packet
//! summaries the others send it ([`Peers`]), merging them into one stream. A capture thread never
//! waits: when the channel is full, the batch is dropped and counted (waiting would stall its
//! ring). Idle reports travel behind the packets, and the first thread moves the clock to the
//! earliest time every capture thread has vouched for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::reader::{Downstream, Reader};
use super::route::RouteStats;
use crate::capture::CaptureStats;
use crate::decode::PacketSummary;
use crate::requests::RequestHead;
use crate::time::Timestamp;

/// Packets ahead of the one routed whose admission counters are being loaded: a batch arrives
/// from another core, and a spoofed source's counters are rarely in this one's cache.
const PREFETCH_LEAD: usize = 8;

/// A message from a capture thread to the first capture thread, which routes for all.
pub(super) enum CaptureMsg {
    Packets {
        worker: usize,
        packets: Vec<PacketSummary>,
        /// Request heads of some packets: (index in `packets`, head), in order.
        heads: Vec<(u32, RequestHead)>,
    },
    /// `worker` is idle: nothing older than `now` is still to come from it.
    Idle { worker: usize, now: Timestamp },
}

/// What the other capture threads lost, for the first thread's status line (their own readers
/// print none): each adds what it counted since it last said, as it publishes its metrics.
#[derive(Debug, Default)]
pub(super) struct PeerLosses {
    kernel_drops: AtomicU64,
    pipeline_drops: AtomicU64,
}

impl PeerLosses {
    /// Adds `kernel` frames the kernel dropped and `pipeline` packets dropped at a full channel.
    pub fn add(&self, kernel: u64, pipeline: u64) {
        if kernel > 0 {
            self.kernel_drops.fetch_add(kernel, Ordering::Relaxed);
        }
        if pipeline > 0 {
            self.pipeline_drops.fetch_add(pipeline, Ordering::Relaxed);
        }
    }

    /// (kernel drops, pipeline drops) said so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.kernel_drops.load(Ordering::Relaxed),
            self.pipeline_drops.load(Ordering::Relaxed),
        )
    }
}

/// A capture thread's end of the channel to the first capture thread.
pub(super) struct CaptureTx {
    worker: usize,
    tx: Sender<CaptureMsg>,
    batch: Vec<PacketSummary>,
    heads: Vec<(u32, RequestHead)>,
    batch_size: usize,
    stats: RouteStats,
}

impl CaptureTx {
    pub fn new(worker: usize, tx: Sender<CaptureMsg>, batch_size: usize) -> CaptureTx {
        let batch_size = batch_size.clamp(1, 65_536);
        CaptureTx {
            worker,
            tx,
            batch: Vec::with_capacity(batch_size),
            heads: Vec::new(),
            batch_size,
            stats: RouteStats::default(),
        }
    }
}

impl Downstream for CaptureTx {
    #[inline]
    fn push(&mut self, p: &PacketSummary) {
        self.batch.push(*p);
        if self.batch.len() >= self.batch_size {
            self.flush();
        }
    }

    fn push_head(&mut self, p: &PacketSummary, head: RequestHead) {
        self.heads.push((self.batch.len() as u32, head));
        self.push(p);
    }

    fn idle(&mut self, now: Timestamp) {
        // the packets held are older than `now`: they go first
        self.flush();
        if self.batch.is_empty() {
            let _ = self.tx.try_send(CaptureMsg::Idle {
                worker: self.worker,
                now,
            });
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let packets = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        let n = packets.len() as u64;
        let msg = CaptureMsg::Packets {
            worker: self.worker,
            packets,
            heads: std::mem::take(&mut self.heads),
        };
        if self.tx.try_send(msg).is_err() {
            self.stats.dropped += n;
            self.stats.dropped_batches += 1;
        }
    }

    fn oldest_held(&self) -> Option<Timestamp> {
        self.batch.first().map(|p| p.ts)
    }

    fn holds_work(&self) -> bool {
        !self.batch.is_empty()
    }

    fn stats(&self) -> RouteStats {
        self.stats
    }

    fn reconfigure(&mut self, _: crate::config::DetectConfig) {}

    fn finish(mut self) -> RouteStats {
        // the end of the run: what was read is still counted, so this one waits
        if !self.batch.is_empty() {
            let packets = std::mem::take(&mut self.batch);
            let _ = self.tx.send(CaptureMsg::Packets {
                worker: self.worker,
                packets,
                heads: std::mem::take(&mut self.heads),
            });
        }
        self.stats
    }
}

/// The other capture threads' batches, on the first capture thread, which reads its own socket
/// and routes its own packets itself: only the others' batches cross between threads, and no
/// thread wakes for nothing but to route them (a wake-up costs more than the routing here).
pub(super) struct Peers {
    rx: Receiver<CaptureMsg>,
    /// Per capture thread (0 is this one), the latest time it has vouched for: its last packet
    /// or idle report.
    vouched: Vec<Timestamp>,
    /// Frames the other capture threads read (counted into the status line as they come).
    frames: u64,
    /// What they lost, shown in the status line with this thread's own.
    losses: Arc<PeerLosses>,
}

impl Peers {
    /// The receiving end of `workers` capture threads' channel, the first of them this one.
    pub fn new(rx: Receiver<CaptureMsg>, workers: usize, losses: Arc<PeerLosses>) -> Peers {
        Peers {
            rx,
            vouched: vec![Timestamp(0); workers.max(1)],
            frames: 0,
            losses,
        }
    }

    /// What the other capture threads have said they lost.
    pub fn losses(&self) -> Arc<PeerLosses> {
        Arc::clone(&self.losses)
    }

    /// This thread's own source is idle at `now`: the time every capture thread has vouched for
    /// (`None` before each has said something).
    pub fn own_idle(&mut self, now: Timestamp) -> Option<Timestamp> {
        if let Some(v) = self.vouched.first_mut() {
            *v = (*v).max(now);
        }
        self.all_vouched()
    }

    fn all_vouched(&self) -> Option<Timestamp> {
        let all = self.vouched.iter().copied().min()?;
        (all > Timestamp(0)).then_some(all)
    }

    /// Routes the batches that have come, without waiting: as many as were waiting when it
    /// started, so that other threads sending faster than this one routes never keep it from
    /// its own socket (their excess is dropped at the full channel and counted, as before).
    pub fn drain<D: Downstream>(&mut self, reader: &mut Reader<'_, D>) {
        for _ in 0..self.rx.len() {
            match self.rx.try_recv() {
                Ok(m) => self.take(m, reader),
                Err(_) => break,
            }
        }
    }

    /// This thread's own source has ended (`own`: its last counters): routes the others' batches
    /// until every one of them has ended (closed its sender); returns the frames they read, as far
    /// as their batches came. The metrics and the status line go on meanwhile.
    pub fn route_the_rest<D: Downstream>(
        mut self,
        reader: &mut Reader<'_, D>,
        own: CaptureStats,
    ) -> u64 {
        if let Some(v) = self.vouched.first_mut() {
            // nothing more comes from this thread: the others alone hold the clock back
            *v = Timestamp::LATEST;
        }
        loop {
            reader.poll_reload();
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => self.take(m, reader),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // the router's drops are still published; the others publish their own sockets'
            reader.publish(own);
            reader.status(&own);
        }
        self.frames
    }

    /// Routes one message of another capture thread.
    fn take<D: Downstream>(&mut self, m: CaptureMsg, reader: &mut Reader<'_, D>) {
        match m {
            CaptureMsg::Packets {
                worker,
                packets,
                heads,
            } => {
                if let (Some(v), Some(last)) = (self.vouched.get_mut(worker), packets.last()) {
                    *v = (*v).max(last.ts);
                }
                // frames so far for the status line (undecoded frames join at the end)
                self.frames += packets.len() as u64;
                reader.add_frames(packets.len() as u64);
                let mut heads = heads.into_iter().peekable();
                // the batch was written on another core: its summaries are loaded two leads
                // ahead, the counters they name one lead ahead
                for p in packets.iter().take(2 * PREFETCH_LEAD) {
                    crate::prefetch::prefetch(p);
                }
                for p in packets.iter().take(PREFETCH_LEAD) {
                    reader.router.prefetch(p);
                }
                for (i, p) in packets.iter().enumerate() {
                    if let Some(ahead) = packets.get(i + 2 * PREFETCH_LEAD) {
                        crate::prefetch::prefetch(ahead);
                    }
                    if let Some(ahead) = packets.get(i + PREFETCH_LEAD) {
                        reader.router.prefetch(ahead);
                    }
                    reader.push_peer(p, heads.next_if(|(at, _)| *at as usize == i).map(|h| h.1));
                }
            }
            CaptureMsg::Idle { worker, now } => {
                if let Some(v) = self.vouched.get_mut(worker) {
                    *v = (*v).max(now);
                }
                if let Some(all) = self.all_vouched() {
                    reader.tick(all);
                }
            }
        }
    }
}
