//! An ingest node's publisher: a thread that takes the pipeline's encoded batches and publishes
//! each on its partition's subject, asking JetStream for an acknowledgement of each (answered on
//! the publisher's inbox, in order, without waiting for them one by one). A batch is dropped from
//! memory only once stored. When the connection is lost, the batches not acknowledged go back to
//! the front of the queue and are sent again after reconnecting (a detector drops the copies it
//! already has by their sequence numbers). While NATS is unreachable the queue is kept up to a
//! byte budget, reconnecting every half second; beyond the budget the newest batches are dropped
//! and counted (detectors see the gap in sequence numbers and count it too).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::nats::{Client, Subscription};
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

/// Batches sent and not acknowledged yet, at most (then sending waits for acknowledgements).
const MAX_UNACKED: usize = 4096;

/// A connection with its acknowledgement inbox.
struct Link {
    client: Client,
    inbox: String,
    acks: Subscription,
}

impl Link {
    fn new(client: Client) -> Result<Link, super::nats::NatsError> {
        let inbox = client.new_inbox();
        let acks = client.subscribe(&inbox)?;
        Ok(Link {
            client,
            inbox,
            acks,
        })
    }
}

/// Runs until `rx` closes and everything is sent and stored (or the drain time is up); returns the
/// counters.
pub fn run_publisher(
    client: Option<Client>,
    rx: Receiver<Vec<(u16, Vec<u8>)>>,
    cfg: PublisherConfig,
    counters: Arc<PublishCounters>,
) -> PublishStats {
    // waiting to be sent, and sent but not acknowledged (oldest first)
    let mut queue: VecDeque<(u16, Vec<u8>)> = VecDeque::new();
    let mut unacked: VecDeque<(u16, Vec<u8>)> = VecDeque::new();
    let mut held_bytes = 0usize;
    let mut link = client.and_then(|c| Link::new(c).ok());
    let mut last_attempt = Instant::now();
    let mut last_flush = Instant::now();
    let mut dirty = false;
    let mut ended_at: Option<Instant> = None;
    let mut warned_refusal = false;
    loop {
        // take what the pipeline has (without waiting while there is work queued)
        if ended_at.is_none() && (queue.len() < MAX_UNACKED || link.is_none()) {
            // nothing to send: wait for the pipeline (briefly while acknowledgements are due)
            let wait = match (queue.is_empty(), unacked.is_empty()) {
                (true, true) => FLUSH_EVERY,
                (true, false) => Duration::from_micros(200),
                _ => Duration::ZERO,
            };
            match rx.recv_timeout(wait) {
                Ok(batches) => {
                    for b in batches {
                        if link.is_none() && held_bytes + b.1.len() > cfg.buffer_bytes {
                            counters.dropped_batches.fetch_add(1, Ordering::Relaxed);
                            counters
                                .dropped_summaries
                                .fetch_add(batch_count(&b.1), Ordering::Relaxed);
                            continue;
                        }
                        held_bytes += b.1.len();
                        queue.push_back(b);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => ended_at = Some(Instant::now()),
            }
        } else if ended_at.is_none() {
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut failed = false;
        if let Some(l) = &link {
            // acknowledgements, in publishing order
            loop {
                match l.acks.try_next() {
                    Ok(Some(m)) => {
                        if let Some((_, b)) = unacked.pop_front() {
                            held_bytes -= b.len();
                            let refused = m.status.is_some_and(|s| s >= 300)
                                || m.payload.windows(7).any(|w| w == b"\"error\"");
                            if refused {
                                counters.refused_batches.fetch_add(1, Ordering::Relaxed);
                                counters
                                    .dropped_summaries
                                    .fetch_add(batch_count(&b), Ordering::Relaxed);
                                if cfg.verbose && !warned_refusal {
                                    warned_refusal = true;
                                    eprintln!(
                                        "floodwatch: warning: JetStream refused a batch: {}",
                                        String::from_utf8_lossy(&m.payload)
                                    );
                                }
                            } else {
                                counters.batches.fetch_add(1, Ordering::Relaxed);
                                counters
                                    .summaries
                                    .fetch_add(batch_count(&b), Ordering::Relaxed);
                                counters.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            // send what is queued, within the window of unacknowledged batches
            while !failed && unacked.len() < MAX_UNACKED {
                let Some((part, bytes)) = queue.pop_front() else {
                    break;
                };
                let Some(subject) = cfg.subjects.get(usize::from(part)) else {
                    // a partition this cluster does not have: a bug upstream; count and skip
                    counters.dropped_batches.fetch_add(1, Ordering::Relaxed);
                    held_bytes -= bytes.len();
                    continue;
                };
                if l.client
                    .publish_with_headers(subject, Some(&l.inbox), &[], &bytes)
                    .is_err()
                {
                    queue.push_front((part, bytes));
                    failed = true;
                    break;
                }
                unacked.push_back((part, bytes));
                dirty = true;
            }
            if !failed && dirty && (queue.is_empty() || last_flush.elapsed() >= FLUSH_EVERY) {
                failed = l.client.flush_writes().is_err();
                dirty = false;
                last_flush = Instant::now();
            }
            if failed || l.client.is_closed() {
                counters.disconnects.fetch_add(1, Ordering::Relaxed);
                if cfg.verbose {
                    eprintln!(
                        "floodwatch: warning: lost the connection to NATS at {}; keeping up to {} bytes of batches and reconnecting",
                        cfg.url, cfg.buffer_bytes
                    );
                }
                // what was not acknowledged is sent again (detectors drop repeats)
                counters
                    .resent_batches
                    .fetch_add(unacked.len() as u64, Ordering::Relaxed);
                while let Some(b) = unacked.pop_back() {
                    queue.push_front(b);
                }
                link = None;
                last_attempt = Instant::now();
            }
        } else if last_attempt.elapsed() >= RECONNECT_EVERY {
            last_attempt = Instant::now();
            if let Ok(l) = Client::connect(&cfg.url, &cfg.client_name, Duration::from_secs(1))
                .and_then(Link::new)
            {
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                if cfg.verbose {
                    eprintln!(
                        "floodwatch: reconnected to NATS at {}; sending {} batches kept meanwhile",
                        cfg.url,
                        queue.len()
                    );
                }
                link = Some(l);
                continue;
            }
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = ended_at {
            let done = queue.is_empty() && unacked.is_empty() && link.is_some();
            if done || t.elapsed() >= cfg.drain_timeout {
                let mut st = counters.snapshot();
                let left = queue.len() + unacked.len();
                st.unsent_at_end = left as u64;
                st.dropped_batches += left as u64;
                st.dropped_summaries += queue
                    .iter()
                    .chain(unacked.iter())
                    .map(|(_, b)| batch_count(b))
                    .sum::<u64>();
                return st;
            }
            if !done && link.is_some() && queue.is_empty() {
                // waiting for the last acknowledgements
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}
