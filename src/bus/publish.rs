//! An ingest node's publisher: a thread that takes the pipeline's encoded batches and publishes
//! each on its partition's subject. While NATS is unreachable it keeps batches (up to a byte
//! budget), reconnects every half second and sends them in order once back; beyond the budget it
//! drops the newest batches and counts them (detectors see the gap in sequence numbers and count
//! it too).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::nats::Client;
use super::wire::batch_count;

/// Wait between two attempts to reconnect.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);
/// Unflushed data is written to the socket at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(5);

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
            unsent_at_end: 0,
        }
    }
}

/// How the publisher runs.
pub struct PublisherConfig {
    pub url: String,
    pub client_name: String,
    /// Subject of partition i: `subjects[i]`.
    pub subjects: Vec<String>,
    /// Bytes kept while disconnected.
    pub buffer_bytes: usize,
    /// At the end, how long to keep trying to send what is buffered.
    pub drain_timeout: Duration,
    /// Print reconnection notices on stderr.
    pub verbose: bool,
}

/// Runs until `rx` closes and everything is sent (or the drain time is up); returns the counters.
pub fn run_publisher(
    mut client: Option<Client>,
    rx: Receiver<Vec<(u16, Vec<u8>)>>,
    cfg: PublisherConfig,
    counters: Arc<PublishCounters>,
) -> PublishStats {
    let mut queue: VecDeque<(u16, Vec<u8>)> = VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut last_attempt = Instant::now();
    let mut last_flush = Instant::now();
    let mut dirty = false;
    let mut ended_at: Option<Instant> = None;
    loop {
        // take what the pipeline has (without waiting while there is work queued)
        let wait = if queue.is_empty() && ended_at.is_none() {
            FLUSH_EVERY
        } else {
            Duration::ZERO
        };
        if ended_at.is_none() {
            match rx.recv_timeout(wait) {
                Ok(batches) => {
                    for b in batches {
                        if queued_bytes + b.1.len() > cfg.buffer_bytes && client.is_none() {
                            counters.dropped_batches.fetch_add(1, Ordering::Relaxed);
                            counters
                                .dropped_summaries
                                .fetch_add(batch_count(&b.1), Ordering::Relaxed);
                            continue;
                        }
                        queued_bytes += b.1.len();
                        queue.push_back(b);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => ended_at = Some(Instant::now()),
            }
        }
        // connected: send everything queued
        if let Some(c) = &client {
            let mut failed = false;
            while let Some((part, bytes)) = queue.front() {
                let subject = match cfg.subjects.get(usize::from(*part)) {
                    Some(s) => s,
                    None => {
                        // a partition this cluster does not have: a bug upstream; count and skip
                        counters.dropped_batches.fetch_add(1, Ordering::Relaxed);
                        queued_bytes -= bytes.len();
                        queue.pop_front();
                        continue;
                    }
                };
                if c.publish(subject, bytes).is_err() {
                    failed = true;
                    break;
                }
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .summaries
                    .fetch_add(batch_count(bytes), Ordering::Relaxed);
                counters
                    .bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                queued_bytes -= bytes.len();
                queue.pop_front();
                dirty = true;
            }
            if !failed && dirty && (queue.is_empty() || last_flush.elapsed() >= FLUSH_EVERY) {
                failed = c.flush_writes().is_err();
                dirty = false;
                last_flush = Instant::now();
            }
            if failed || c.is_closed() {
                counters.disconnects.fetch_add(1, Ordering::Relaxed);
                if cfg.verbose {
                    eprintln!(
                        "floodwatch: warning: lost the connection to NATS at {}; buffering up to {} bytes and reconnecting",
                        cfg.url, cfg.buffer_bytes
                    );
                }
                client = None;
                last_attempt = Instant::now();
            }
        } else if last_attempt.elapsed() >= RECONNECT_EVERY {
            last_attempt = Instant::now();
            if let Ok(c) = Client::connect(&cfg.url, &cfg.client_name, Duration::from_secs(1)) {
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                if cfg.verbose {
                    eprintln!(
                        "floodwatch: reconnected to NATS at {}; sending {} buffered batches",
                        cfg.url,
                        queue.len()
                    );
                }
                client = Some(c);
                continue;
            }
        } else if !queue.is_empty() || ended_at.is_some() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = ended_at {
            let done = queue.is_empty() && client.is_some();
            if done || t.elapsed() >= cfg.drain_timeout {
                if let Some(c) = &client {
                    // the server has taken every batch once it answers a ping sent after them
                    if c.flush(Duration::from_secs(10)).is_err() {
                        counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let mut st = counters.snapshot();
                st.unsent_at_end = queue.len() as u64;
                st.dropped_batches += queue.len() as u64;
                st.dropped_summaries += queue.iter().map(|(_, b)| batch_count(b)).sum::<u64>();
                return st;
            }
        }
    }
}
