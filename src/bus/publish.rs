//! An ingest node's publisher: a thread that takes the pipeline's encoded batches and publishes
//! each on its partition's subject, with JetStream's acknowledgement of each coming back in
//! order without waiting for them one by one ([`AckPublisher`]). A batch is dropped from memory
//! only once stored. When the connection is lost (or an acknowledgement does not come), the
//! batches not acknowledged go back to the front of the queue and are sent again once the client
//! has reconnected (a detector drops the copies it already has by their sequence numbers). While
//! NATS is unreachable the queue is kept up to a byte budget (the client reconnects every half
//! second or so); beyond the budget the newest batches are dropped and counted (detectors see
//! the gap in sequence numbers and count it too).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select};

use super::store::{AckOutcome, AckPublisher};
use super::wire::batch_count;

/// The longest wait for the pipeline when nothing is queued: batches and acknowledgements end it
/// at once; a lost or regained connection is noticed (and said) at most this late.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// What the publisher counted (shared with the metrics and the summary).
#[derive(Debug, Default)]
pub struct PublishCounters {
    pub batches: AtomicU64,
    pub summaries: AtomicU64,
    pub bytes: AtomicU64,
    /// Batches (and their summaries) dropped because the buffer was full while disconnected.
    pub dropped_batches: AtomicU64,
    pub dropped_summaries: AtomicU64,
    pub disconnects: AtomicU64,
    pub reconnects: AtomicU64,
    /// Batches sent again after a lost connection (not acknowledged before it).
    pub resent_batches: AtomicU64,
    /// Batches JetStream refused (an error in its acknowledgement), dropped.
    pub refused_batches: AtomicU64,
}

/// A copy of [`PublishCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub batches: u64,
    pub summaries: u64,
    pub bytes: u64,
    pub dropped_batches: u64,
    pub dropped_summaries: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    pub resent_batches: u64,
    pub refused_batches: u64,
    /// Batches still buffered when the publisher gave up at the end (also counted as dropped).
    pub unsent_at_end: u64,
}

impl PublishCounters {
    pub fn snapshot(&self) -> PublishStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PublishStats {
            batches: l(&self.batches),
            summaries: l(&self.summaries),
            bytes: l(&self.bytes),
            dropped_batches: l(&self.dropped_batches),
            dropped_summaries: l(&self.dropped_summaries),
            disconnects: l(&self.disconnects),
            reconnects: l(&self.reconnects),
            resent_batches: l(&self.resent_batches),
            refused_batches: l(&self.refused_batches),
            unsent_at_end: 0,
        }
    }
}

/// How the publisher runs.
pub struct PublisherConfig {
    /// The NATS URL (for messages).
    pub url: String,
    /// Subject of partition i: `subjects[i]`; after the last partition's, the node's watermark
    /// subject ([`crate::bus::partition::Partitioner::watermark_index`]).
    pub subjects: Vec<String>,
    /// Bytes kept while disconnected.
    pub buffer_bytes: usize,
    /// At the end, how long to keep trying to send what is buffered.
    pub drain_timeout: Duration,
    /// Print reconnection notices on stderr.
    pub verbose: bool,
}

/// Batches sent and not acknowledged yet, at most (then sending waits for acknowledgements).
const MAX_UNACKED: usize = 4096;

/// The publisher's batches: waiting to be sent, and sent but not acknowledged (oldest first).
struct Batches {
    queue: VecDeque<(u16, Vec<u8>)>,
    /// (publish id, partition, bytes)
    unacked: VecDeque<(u64, u16, Vec<u8>)>,
    held_bytes: usize,
    next_id: u64,
}

impl Batches {
    /// Everything not acknowledged goes back to the front of the queue, in order.
    fn resend_unacked(&mut self, counters: &PublishCounters) {
        counters
            .resent_batches
            .fetch_add(self.unacked.len() as u64, Ordering::Relaxed);
        while let Some((_, p, b)) = self.unacked.pop_back() {
            self.queue.push_front((p, b));
        }
    }

    /// Takes the pipeline's batches, dropping (and counting) what passes the budget while
    /// disconnected.
    fn take(
        &mut self,
        batches: Vec<(u16, Vec<u8>)>,
        connected: bool,
        cfg: &PublisherConfig,
        counters: &PublishCounters,
    ) {
        for b in batches {
            if !connected && self.held_bytes + b.1.len() > cfg.buffer_bytes {
                counters.dropped_batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .dropped_summaries
                    .fetch_add(batch_count(&b.1), Ordering::Relaxed);
                continue;
            }
            self.held_bytes += b.1.len();
            self.queue.push_back(b);
        }
    }

    /// Sends queued batches within the window of unacknowledged ones, all in one pass of the
    /// client; false when sending failed.
    fn send(
        &mut self,
        out: &AckPublisher,
        cfg: &PublisherConfig,
        counters: &PublishCounters,
    ) -> bool {
        let room = MAX_UNACKED.saturating_sub(self.unacked.len());
        let mut going = Vec::with_capacity(room.min(self.queue.len()));
        while going.len() < room {
            let Some((part, bytes)) = self.queue.pop_front() else {
                break;
            };
            let Some(subject) = cfg.subjects.get(usize::from(part)) else {
                // a partition this cluster does not have: a bug upstream; count and skip
                counters.dropped_batches.fetch_add(1, Ordering::Relaxed);
                self.held_bytes -= bytes.len();
                continue;
            };
            going.push((self.next_id, part, subject.as_str(), bytes));
            self.next_id += 1;
        }
        if going.is_empty() {
            return true;
        }
        let (done, r) = out.publish_all(going.iter().map(|(id, _, s, b)| (*id, *s, b.clone())));
        let mut rest = going.split_off(done.min(going.len()));
        for (id, part, _, bytes) in going {
            self.unacked.push_back((id, part, bytes));
        }
        // what was not published goes back to the front, in order (its ids are not reused: an
        // outcome is matched to the front of `unacked` by id)
        while let Some((_, part, _, bytes)) = rest.pop() {
            self.queue.push_front((part, bytes));
        }
        r.is_ok()
    }

    fn left(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.queue
            .iter()
            .map(|(_, b)| b)
            .chain(self.unacked.iter().map(|(_, _, b)| b))
    }
}

/// Runs until `rx` closes and everything is sent and stored (or the drain time is up); returns the
/// counters.
pub fn run_publisher(
    out: AckPublisher,
    rx: Receiver<Vec<(u16, Vec<u8>)>>,
    cfg: PublisherConfig,
    counters: Arc<PublishCounters>,
) -> PublishStats {
    let mut b = Batches {
        queue: VecDeque::new(),
        unacked: VecDeque::new(),
        held_bytes: 0,
        next_id: 0,
    };
    let mut connected = out.client().is_connected();
    let mut ended_at: Option<Instant> = None;
    let mut warned_refusal = false;
    loop {
        // take what the pipeline has (without waiting while there is work queued)
        if ended_at.is_none() && (b.queue.len() < MAX_UNACKED || !connected) {
            // nothing to send: wait for the pipeline (briefly while acknowledgements are due)
            let idle = b.queue.is_empty() || !connected;
            if idle && !b.unacked.is_empty() {
                // acknowledgements are due: sleep until one comes or the pipeline has batches
                // (a wake-up for work, not a poll every few hundred microseconds)
                let mut sel = Select::new();
                sel.recv(&rx);
                sel.recv(out.outcomes());
                let _ = sel.ready_timeout(IDLE_WAIT);
            }
            let wait = if idle && b.unacked.is_empty() {
                IDLE_WAIT
            } else {
                Duration::ZERO
            };
            match rx.recv_timeout(wait) {
                Ok(batches) => b.take(batches, connected, &cfg, &counters),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => ended_at = Some(Instant::now()),
            }
        } else if !b.unacked.is_empty() && (b.queue.is_empty() || b.unacked.len() >= MAX_UNACKED) {
            // only acknowledgements can move anything (the window is full, or the pipeline has
            // ended and they are all that is left): sleep until one comes
            let mut sel = Select::new();
            sel.recv(out.outcomes());
            let _ = sel.ready_timeout(IDLE_WAIT);
        }
        let now_connected = out.client().is_connected();
        if connected && !now_connected {
            counters.disconnects.fetch_add(1, Ordering::Relaxed);
            if cfg.verbose {
                eprintln!(
                    "floodwatch: warning: lost the connection to NATS at {}; keeping up to {} bytes of batches and reconnecting",
                    cfg.url, cfg.buffer_bytes
                );
            }
            // what was not acknowledged is sent again (detectors drop repeats)
            b.resend_unacked(&counters);
        } else if !connected && now_connected {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            if cfg.verbose {
                eprintln!(
                    "floodwatch: reconnected to NATS at {}; sending {} batches kept meanwhile",
                    cfg.url,
                    b.queue.len()
                );
            }
        }
        connected = now_connected;
        // acknowledgements, in publishing order (those of batches already queued again are stale)
        while let Some((id, outcome)) = out.try_outcome() {
            if b.unacked.front().is_none_or(|(first, _, _)| *first != id) {
                continue;
            }
            let Some((_, part, bytes)) = b.unacked.pop_front() else {
                break;
            };
            match outcome {
                AckOutcome::Stored => {
                    b.held_bytes -= bytes.len();
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    counters
                        .summaries
                        .fetch_add(batch_count(&bytes), Ordering::Relaxed);
                    counters
                        .bytes
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                AckOutcome::Refused(reason) => {
                    b.held_bytes -= bytes.len();
                    counters.refused_batches.fetch_add(1, Ordering::Relaxed);
                    counters
                        .dropped_summaries
                        .fetch_add(batch_count(&bytes), Ordering::Relaxed);
                    if cfg.verbose && !warned_refusal {
                        warned_refusal = true;
                        eprintln!("floodwatch: warning: JetStream refused a batch: {reason}");
                    }
                }
                AckOutcome::Lost => {
                    // no acknowledgement came: this one and all after it go again
                    b.unacked.push_front((id, part, bytes));
                    b.resend_unacked(&counters);
                }
            }
        }
        // (a failed send: the connection is going; its state says so soon)
        if !connected || !b.send(&out, &cfg, &counters) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = ended_at {
            let done = b.queue.is_empty() && b.unacked.is_empty() && connected;
            if done || t.elapsed() >= cfg.drain_timeout {
                let mut st = counters.snapshot();
                let left = b.queue.len() + b.unacked.len();
                st.unsent_at_end = left as u64;
                st.dropped_batches += left as u64;
                st.dropped_summaries += b.left().map(|x| batch_count(x)).sum::<u64>();
                return st;
            }
        }
    }
}
