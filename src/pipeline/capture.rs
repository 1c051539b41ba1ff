//! Several capture threads (live capture over AF_PACKET fanout): each reads and decodes its own
//! socket and sends batches of packet summaries to the router's thread, which merges them into one
//! stream. A capture thread never waits: when the channel is full, the batch is dropped and counted
//! (waiting would stall its ring). Idle reports travel behind the packets, and the router's thread
//! moves the clock to the earliest time every capture thread has vouched for.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::reader::{Downstream, Reader};
use super::route::{RouteStats, Router};
use crate::capture::CaptureStats;
use crate::decode::PacketSummary;
use crate::requests::RequestHead;
use crate::time::Timestamp;

/// Packets ahead of the one routed whose admission counters are being loaded: a batch arrives
/// from another core, and a spoofed source's counters are rarely in this one's cache.
const PREFETCH_LEAD: usize = 8;

/// A message from a capture thread to the router's thread.
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

/// A capture thread's end of the channel to the router's thread.
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

/// The router's thread: merges the capture threads' batches into one stream until every capture
/// thread has ended (closed its sender).
pub(super) fn merge(rx: Receiver<CaptureMsg>, workers: usize, reader: &mut Reader<'_, Router>) {
    // per capture thread: the latest time it has vouched for (its last packet or idle report)
    let mut vouched = vec![Timestamp(0); workers.max(1)];
    loop {
        reader.poll_reload();
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(CaptureMsg::Packets {
                worker,
                packets,
                heads,
            }) => {
                if let (Some(v), Some(last)) = (vouched.get_mut(worker), packets.last()) {
                    *v = (*v).max(last.ts);
                }
                // frames so far for the status line (undecoded frames join at the end)
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
                    match heads.next_if(|(at, _)| *at as usize == i) {
                        Some((_, head)) => reader.push_head(p, head),
                        None => reader.push(p),
                    }
                }
            }
            Ok(CaptureMsg::Idle { worker, now }) => {
                if let Some(v) = vouched.get_mut(worker) {
                    *v = (*v).max(now);
                }
                let all = vouched.iter().copied().min().unwrap_or(now);
                if all > Timestamp(0) {
                    reader.tick(all);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // the capture threads own their sockets' counters: they join the summary at the end
        reader.status(&CaptureStats::default());
    }
}
