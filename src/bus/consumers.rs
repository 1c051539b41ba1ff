//! How a detector node reads its partitions' batches: a durable pull consumer a partition, each
//! read by a thread of its own; or, when the cluster keeps every partition's batches in one
//! stream and this detector runs every partition, one consumer of them all whose thread hands
//! each batch to its partition by subject. Filtered to one subject each, eight consumers of one
//! stream would each be handed past the others' batches by nats-server 2.9 (a tenth more CPU
//! for the whole bus under a summary-per-packet flood); one consumer reads the stream once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Scope;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::client::NatsError;
use super::cluster::{BatchStreams, ClusterBus};
use super::store::{ConsumerSpec, Delivered, PullReader};

/// Batches a pull asks for at once, at most (fewer when they pass [`PULL_BYTES`]).
const PULL_BATCH: usize = 256;
/// Bytes a pull asks for at once, about.
const PULL_BYTES: usize = 2 << 20;

/// Batches a partition's consumer thread keeps in flight to the merge.
pub(super) const CONSUMER_QUEUE: usize = 64;

/// A detector's consumers, created and not yet read.
pub(super) enum Consumers {
    /// One a partition.
    Each(Vec<(u16, PullReader)>),
    /// One of every partition of a one-stream cluster; `start[p]`: the first stream sequence of
    /// partition `p` not in the state (what comes before it is skipped).
    All {
        pull: Box<PullReader>,
        start: Vec<u64>,
    },
}

/// Creates the consumers of `partitions` (of `bus`), each partition from right after its
/// position in `positions` (indexed by partition).
pub(super) fn open(
    bus: &ClusterBus,
    partitions: &[u16],
    positions: &[u64],
    checkpoint_every: Duration,
) -> Result<Consumers, NatsError> {
    let spec = |partition: u16, durable: String, filter: String, start: u64| ConsumerSpec {
        stream: bus.stream(partition),
        durable,
        filter,
        start,
        ack_wait: Duration::from_secs(60).max(checkpoint_every * 4),
        max_ack_pending: 1 << 20,
        // as many batches a pull as make ~2 MB: fewer requests for small batches, never near the
        // server's 64 MB limit of data waiting for a client for large ones
        batch_messages: PULL_BATCH,
        batch_bytes: PULL_BYTES,
    };
    // (one consumer starts at the smallest position; every partition gets a batch at least
    // every ten ticks from each node publishing, src/bus/partition.rs, so none lags far)
    let next = |p: u16| {
        positions
            .get(usize::from(p))
            .map_or(1, |s| s.saturating_add(1))
    };
    if bus.streams == BatchStreams::One && partitions.len() == usize::from(bus.cluster.partitions) {
        let start: Vec<u64> = (0..bus.cluster.partitions).map(next).collect();
        let first = start.iter().copied().min().unwrap_or(1);
        let filter = bus.batch_subjects();
        let pull = bus
            .js
            .pull_consumer(&spec(0, format!("fw_{}_all", bus.name), filter, first))?;
        return Ok(Consumers::All {
            pull: Box::new(pull),
            start,
        });
    }
    let mut each = Vec::with_capacity(partitions.len());
    for p in partitions {
        let s = spec(
            *p,
            format!("fw_{}_p{p}", bus.name),
            bus.partition_subject(*p),
            next(*p),
        );
        each.push((*p, bus.js.pull_consumer(&s)?));
    }
    Ok(Consumers::Each(each))
}

impl Consumers {
    /// How the batches are read, for the detector's start message.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Consumers::Each(_) => "a consumer a partition",
            Consumers::All { .. } => "one consumer of every partition",
        }
    }

    /// Starts the threads that read the consumers, in `s`, until `quit`; returns each
    /// partition's batches in the order of `partitions`. A batch of the one consumer whose
    /// subject names no partition of the cluster is dropped and counted in `misrouted`.
    pub(super) fn spawn<'s>(
        self,
        s: &'s Scope<'s, '_>,
        partitions: &[u16],
        quit: &'s AtomicBool,
        misrouted: &'s AtomicU64,
    ) -> Vec<(u16, Receiver<Delivered>)> {
        match self {
            Consumers::Each(each) => each
                .into_iter()
                .map(|(p, mut pull)| {
                    let (tx, rx) = bounded::<Delivered>(CONSUMER_QUEUE);
                    crate::threads::spawn_named(s, format!("fw-pull-{p}"), move || {
                        forward(quit, |t| pull.next_timeout(t), |m| tx.send(m).is_ok())
                    });
                    (p, rx)
                })
                .collect(),
            Consumers::All { mut pull, start } => {
                // one thread feeds every partition: when a partition the merge is not taking from
                // (it runs ahead) fills its channel, the thread waits, and the merge takes from a
                // full channel when nothing else comes (detector.rs, `consume`)
                let mut txs: Vec<Option<Sender<Delivered>>> = vec![None; start.len()];
                let mut out = Vec::with_capacity(partitions.len());
                for p in partitions {
                    let (tx, rx) = bounded::<Delivered>(CONSUMER_QUEUE);
                    if let Some(slot) = txs.get_mut(usize::from(*p)) {
                        *slot = Some(tx);
                    }
                    out.push((*p, rx));
                }
                crate::threads::spawn_named(s, "fw-pull-all".to_string(), move || {
                    forward(
                        quit,
                        |t| pull.next_timeout(t),
                        |m| route(m, &txs, &start, misrouted),
                    )
                });
                out
            }
        }
    }
}

/// Where a batch of the one consumer of every partition goes.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// To this partition's feed.
    To(usize),
    /// Nowhere: the state already holds it (it comes before its partition's start).
    Held,
    /// Nowhere: its subject names no partition of the cluster (counted as a malformed batch).
    Misrouted,
}

/// Where the batch at stream sequence `seq` on `subject` (`fw.NAME.p.N`) goes, `start[p]` being
/// partition `p`'s first sequence not in the state.
fn route_of(subject: &str, seq: u64, start: &[u64]) -> Route {
    // (digits only, no leading zero: the partition's subject exactly)
    let partition = subject
        .rsplit('.')
        .next()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && (*n == "0" || !n.starts_with('0')))
        .and_then(|n| n.parse::<usize>().ok());
    match partition.and_then(|p| Some((p, *start.get(p)?))) {
        None => Route::Misrouted,
        Some((_, first)) if seq < first => Route::Held,
        Some((p, _)) => Route::To(p),
    }
}

/// Hands `m` to its partition's feed ([`route_of`]). False when that feed is gone.
fn route(
    m: Delivered,
    txs: &[Option<Sender<Delivered>>],
    start: &[u64],
    misrouted: &AtomicU64,
) -> bool {
    match route_of(m.subject(), m.stream_seq, start) {
        Route::To(p) => match txs.get(p) {
            Some(Some(tx)) => tx.send(m).is_ok(),
            // (every partition has a feed when one consumer reads them all)
            _ => {
                misrouted.fetch_add(1, Ordering::Relaxed);
                true
            }
        },
        Route::Held => true,
        Route::Misrouted => {
            misrouted.fetch_add(1, Ordering::Relaxed);
            true
        }
    }
}

/// A consumer thread's loop: what `next` reads (waiting up to a tenth of a second a call) goes to
/// `send`, until `quit`, `send` says the receiver is gone, or reading fails (the merge sees the
/// channel close).
pub(super) fn forward<T>(
    quit: &AtomicBool,
    mut next: impl FnMut(Duration) -> Result<Option<T>, NatsError>,
    mut send: impl FnMut(T) -> bool,
) {
    while !quit.load(Ordering::Relaxed) {
        match next(Duration::from_millis(100)) {
            Ok(Some(m)) => {
                if !send(m) {
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_to_the_partition_its_subject_names_unless_the_state_holds_it() {
        let start = [5, 1, 9, 1, 1, 1, 1, 8];
        assert_eq!(route_of("fw.site-a.p.7", 8, &start), Route::To(7));
        assert_eq!(route_of("fw.site-a.p.7", 7, &start), Route::Held);
        assert_eq!(route_of("fw.x.p.0", 4, &start), Route::Held);
        assert_eq!(route_of("fw.x.p.0", 5, &start), Route::To(0));
        assert_eq!(route_of("fw.x.p.1", 1, &start), Route::To(1));
        // no partition of the cluster
        assert_eq!(route_of("fw.x.p.8", 100, &start), Route::Misrouted);
        assert_eq!(route_of("fw.x.p.seven", 100, &start), Route::Misrouted);
        assert_eq!(route_of("fw.x.p.", 100, &start), Route::Misrouted);
        assert_eq!(route_of("fw.x.p.-1", 100, &start), Route::Misrouted);
        // not a partition's subject exactly
        assert_eq!(route_of("fw.x.p.01", 100, &start), Route::Misrouted);
        assert_eq!(route_of("fw.x.p.+1", 100, &start), Route::Misrouted);
    }
}
