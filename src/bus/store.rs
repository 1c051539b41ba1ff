//! The JetStream the bus uses, through async-nats, as blocking calls on a [`Client`]: streams,
//! durable pull consumers, the last message of a subject, a key-value bucket (compare-and-set
//! revisions, for the lease), an object store (checkpoints) and a publisher whose
//! acknowledgements come back in publishing order without waiting for them one by one.
//!
//! Streams and buckets keep the names and layouts the `nats` tool (and floodwatch's earlier,
//! hand-written client) use: `KV_<bucket>` on `$KV.<bucket>.>`, `OBJ_<bucket>` on
//! `$O.<bucket>.C.>`/`$O.<bucket>.M.>`, so a cluster started by either build is read by the other.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::{CreateStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::object_store::GetErrorKind;
use async_nats::jetstream::stream::{
    Config, DiscardPolicy, LastRawMessageErrorKind, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, Context};
use crossbeam_channel::Receiver;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::client::{Client, NatsError};

/// How long a JetStream API call (or a publish's acknowledgement) may take.
const API_TIMEOUT: Duration = Duration::from_secs(5);

/// JetStream's "stream name already in use with a different configuration".
const STREAM_NAME_IN_USE: u64 = 10058;

/// JetStream's "subjects overlap with an existing stream".
const SUBJECTS_OVERLAP: u64 = 10065;

/// JetStream's "stream not found".
const STREAM_NOT_FOUND: u64 = 10059;

/// What creating a stream found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Created {
    /// Created, or there with the configuration asked.
    Same,
    /// There with another configuration.
    Differs,
}

/// A subject of a stream with `subjects` that nothing is written to: a stream's first subject
/// with its wildcards made a literal token.
fn probe_subject(subjects: &[String]) -> String {
    let first = subjects.first().map_or("fw", String::as_str);
    first
        .split('.')
        .map(|t| if t == "*" || t == ">" { "_fw_ready" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    File,
    Memory,
}

impl Storage {
    fn nats(self) -> StorageType {
        match self {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        }
    }
}

/// The stream under a key-value bucket or an object store, as async-nats lays both out: one
/// replica, new messages refused when full, roll-ups and direct gets allowed.
fn bucket_stream(name: String, subjects: Vec<String>, storage: Storage) -> Config {
    Config {
        name,
        subjects,
        storage: storage.nats(),
        num_replicas: 1,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        ..Config::default()
    }
}

/// A stream with limits retention, one replica, the oldest messages dropped when full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    pub storage: Storage,
    /// -1: no limit.
    pub max_bytes: i64,
    /// ZERO: no limit.
    pub max_age: Duration,
    /// Messages kept per subject, the oldest dropped first (0: no limit).
    pub max_per_subject: i64,
}

/// A message read back from a stream by subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: u64,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl StoredMessage {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The JetStream error inside an async-nats error's chain, if any.
fn api_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a jetstream::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(js) = err.downcast_ref::<jetstream::Error>() {
            return Some(js);
        }
        cur = err.source();
    }
    None
}

/// JetStream on a connection.
#[derive(Clone, Debug)]
pub struct JetStream {
    client: Client,
    ctx: Context,
}

impl JetStream {
    pub fn new(client: &Client) -> JetStream {
        // (the context spawns its acknowledgement task on the bus's runtime)
        let _in_runtime = client.enter();
        let ctx = jetstream::ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .max_ack_inflight(8192)
            .backpressure_on_inflight(true)
            .build(client.raw().clone());
        JetStream {
            client: client.clone(),
            ctx,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn not_enabled(&self) -> NatsError {
        NatsError::JetStreamNotEnabled {
            url: self.client.url().to_string(),
        }
    }

    /// A JetStream error as ours (with its codes, for retry decisions), else a failure of `what`.
    fn error(&self, what: &str, e: &(dyn std::error::Error + 'static)) -> NatsError {
        match api_error(e) {
            Some(js) => {
                let err_code = js.error_code().0 as u32;
                if err_code == 10039 || err_code == 10076 {
                    return self.not_enabled();
                }
                NatsError::JetStream {
                    code: u16::try_from(js.code()).unwrap_or(500),
                    err_code,
                    description: format!("{what} on {}: {}", self.client.url(), js),
                }
            }
            None => {
                let text = e.to_string();
                if text.contains("timed out") {
                    NatsError::Timeout {
                        what: format!("{what} on {}", self.client.url()),
                    }
                } else if text.contains("no responders") {
                    self.not_enabled()
                } else {
                    self.client.failed(what, e)
                }
            }
        }
    }

    /// Checks that JetStream answers for this account (`$JS.API.INFO`, read loosely: the
    /// account's fields differ between server versions).
    pub fn check(&self) -> Result<(), NatsError> {
        use async_nats::jetstream::context::RequestErrorKind;
        let what = "asking for the JetStream account";
        let reply: serde_json::Value = match self.client.block_on(self.ctx.request("INFO", "")) {
            Ok(v) => v,
            Err(e) if e.kind() == RequestErrorKind::NoResponders => return Err(self.not_enabled()),
            Err(e) if e.kind() == RequestErrorKind::TimedOut => {
                return Err(NatsError::Timeout {
                    what: format!("{what} on {}", self.client.url()),
                })
            }
            Err(e) => return Err(self.error(what, &e)),
        };
        let Some(err) = reply.get("error") else {
            return Ok(());
        };
        let num = |k: &str| err.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let err_code = u32::try_from(num("err_code")).unwrap_or(0);
        if err_code == 10039 || err_code == 10076 {
            return Err(self.not_enabled());
        }
        Err(NatsError::JetStream {
            code: u16::try_from(num("code")).unwrap_or(500),
            err_code,
            description: format!("{what} on {}: {err}", self.client.url()),
        })
    }

    /// Creates the stream, or updates it to `spec` when it exists with another configuration;
    /// returns once the server has set it up (see [`JetStream::wait_ready`]).
    ///
    /// Create first, update only a stream that is there with another configuration, and only
    /// once it is set up: async-nats' `create_or_update_stream` sends the update first, and on
    /// nats-server 2.9 an update that reaches a stream while another client is creating it
    /// dereferences the stream's store before it exists and crashes the server (seen when the
    /// nodes of a cluster start together).
    pub fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), NatsError> {
        let cfg = Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            retention: RetentionPolicy::Limits,
            storage: spec.storage.nats(),
            max_bytes: spec.max_bytes,
            max_age: spec.max_age,
            max_messages_per_subject: spec.max_per_subject,
            discard: DiscardPolicy::Old,
            num_replicas: 1,
            ..Config::default()
        };
        let what = format!("creating or updating stream {}", spec.name);
        if self.create_stream(&cfg, &what)? == Created::Differs {
            self.wait_ready(&spec.name)?;
            self.client
                .block_on(self.ctx.update_stream(&cfg))
                .map_err(|e| self.stream_error(&what, &spec.name, e))?;
        }
        self.wait_ready(&spec.name)
    }

    /// Creates stream `cfg`, or finds it there (with this configuration or another); the server
    /// may still be setting it up ([`JetStream::wait_ready`]).
    ///
    /// Two clients creating a stream at once can both pass the server's check that the name is
    /// free; the second then hears "subjects overlap with an existing stream" (10065), the first
    /// one's. Asked again, it finds the stream by its name.
    fn create_stream(&self, cfg: &Config, what: &str) -> Result<Created, NatsError> {
        let mut tries = 0;
        loop {
            let e = match self.client.block_on(self.ctx.create_stream(cfg.clone())) {
                Ok(_) => return Ok(Created::Same),
                Err(e) => e,
            };
            let code = match e.kind() {
                CreateStreamErrorKind::JetStream(js) => js.error_code().0,
                _ => 0,
            };
            if code == STREAM_NAME_IN_USE {
                return Ok(Created::Differs);
            }
            if code == SUBJECTS_OVERLAP && tries < 3 && self.stream_exists(&cfg.name)? {
                tries += 1;
                continue;
            }
            return Err(self.stream_error(what, &cfg.name, e));
        }
    }

    /// Stream `name` exists.
    pub fn stream_exists(&self, name: &str) -> Result<bool, NatsError> {
        use async_nats::jetstream::context::GetStreamErrorKind;
        match self.client.block_on(self.ctx.get_stream(name)) {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(js) if js.error_code().0 == STREAM_NOT_FOUND => {
                    Ok(false)
                }
                _ => Err(self.error(&format!("looking for stream {name}"), &e)),
            },
        }
    }

    fn stream_error(
        &self,
        what: &str,
        name: &str,
        e: jetstream::context::CreateStreamError,
    ) -> NatsError {
        match e.kind() {
            CreateStreamErrorKind::JetStream(js) => NatsError::JetStream {
                code: u16::try_from(js.code()).unwrap_or(500),
                err_code: js.error_code().0 as u32,
                description: format!(
                    "{what} on {}: {} (delete the stream, e.g. `nats stream rm {name}`, if its configuration cannot change)",
                    self.client.url(),
                    js,
                ),
            },
            CreateStreamErrorKind::TimedOut => NatsError::Timeout {
                what: format!("{what} on {}", self.client.url()),
            },
            _ => self.error(what, &e),
        }
    }

    /// Makes a bucket's stream `cfg` (or keeps the one there), waits until the server has set it
    /// up, then opens the bucket with `open`.
    fn open_bucket<T, E: std::error::Error + 'static>(
        &self,
        cfg: &Config,
        what: &str,
        open: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, NatsError> {
        self.create_stream(cfg, what)?;
        self.wait_ready(&cfg.name)?;
        self.client.block_on(open).map_err(|e| self.error(what, &e))
    }

    /// Waits until the server has set up stream `name`, so that it can be read, written and
    /// updated.
    ///
    /// nats-server 2.9 (Debian's) lists a stream in its account as soon as a client starts
    /// creating it, before the stream has a store and before it subscribes to its subjects and
    /// to direct gets. Another client that finds it then (its own create returns at once: the
    /// stream exists) and uses it meets a server that crashes on an update or a message get
    /// (the store is nil), and that drops a direct get without an answer — how async-nats reads
    /// a key of a bucket or an object's metadata — so the read waits for the whole API timeout
    /// (a request to `$JS.API.DIRECT.GET.<stream>.…` that no stream has subscribed to yet
    /// reaches only the server's own `$JS.API.>` subscription, which ignores it: there is
    /// interest, so not even "no responders"). The stream's info is answered safely throughout
    /// and shows a zero creation time until the store exists; a stream that allows direct gets
    /// answers one once it has subscribed to its subjects and to direct gets. So: ask the info
    /// until the creation time is set, then, for such a stream, send a direct get for a subject
    /// never written with a short time limit, again until it is answered. (A stream without
    /// direct gets has no such sign for its subscriptions; the server makes them right after the
    /// store, in the same request, without I/O between; a publish before them would be refused
    /// at once with no responders, not left waiting.)
    pub fn wait_ready(&self, name: &str) -> Result<(), NatsError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let deadline = Instant::now() + API_TIMEOUT;
        let what = format!("waiting for stream {name} to be set up");
        let mut pause = Duration::from_millis(2);
        let mut probe_limit = Duration::from_millis(25);
        loop {
            let stream = self
                .client
                .block_on(self.ctx.get_stream(name))
                .map_err(|e| self.error(&what, &e))?;
            let info = stream.cached_info();
            if info.created.unix_timestamp() > 0 {
                if !info.config.allow_direct {
                    return Ok(());
                }
                let subject = probe_subject(&info.config.subjects);
                let left = deadline.saturating_duration_since(Instant::now());
                let answer = self.client.block_on(async {
                    tokio::time::timeout(
                        probe_limit.min(left),
                        stream.direct_get_last_for_subject(subject),
                    )
                    .await
                });
                match answer {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) if matches!(e.kind(), DirectGetErrorKind::NotFound) => return Ok(()),
                    // not answered: not subscribed yet
                    Ok(Err(e)) if matches!(e.kind(), DirectGetErrorKind::TimedOut) => {}
                    Err(_) => {}
                    Ok(Err(e)) => return Err(self.error(&what, &e)),
                }
                probe_limit = (probe_limit * 2).min(Duration::from_secs(1));
            }
            if Instant::now() >= deadline {
                return Err(NatsError::Timeout {
                    what: format!("{what} on {}", self.client.url()),
                });
            }
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Deletes a stream; false when it did not exist.
    pub fn delete_stream(&self, name: &str) -> Result<bool, NatsError> {
        match self.client.block_on(self.ctx.delete_stream(name)) {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                jetstream::context::DeleteStreamErrorKind::JetStream(js)
                    if js.error_code().0 == 10059 =>
                {
                    Ok(false)
                }
                _ => Err(self.error(&format!("deleting stream {name}"), &e)),
            },
        }
    }

    /// The sequence number of the last message `stream` has stored (0: none yet).
    pub fn last_sequence(&self, stream: &str) -> Result<u64, NatsError> {
        let what = format!("reading the state of stream {stream}");
        Ok(self
            .get_stream(stream, &what)?
            .cached_info()
            .state
            .last_sequence)
    }

    /// The last message on `subject` in `stream`; None when there is none.
    pub fn last_message(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<StoredMessage>, NatsError> {
        let what = format!("reading the last message of {subject} in stream {stream}");
        let s = self
            .client
            .block_on(self.ctx.get_stream_no_info(stream))
            .map_err(|e| self.error(&what, &e))?;
        match self
            .client
            .block_on(s.get_last_raw_message_by_subject(subject))
        {
            Ok(m) => Ok(Some(StoredMessage {
                seq: m.sequence,
                headers: m
                    .headers
                    .iter()
                    .flat_map(|(k, vs)| {
                        vs.iter()
                            .map(move |v| (k.to_string(), v.as_str().to_string()))
                    })
                    .collect(),
                payload: m.payload.to_vec(),
            })),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(self.error(&what, &e)),
        }
    }

    /// Creates the durable pull consumer `durable` on `stream` afresh (an older one of that name
    /// is deleted), delivering `filter` from stream sequence `start` with ack-all, and returns
    /// its reader.
    pub fn pull_consumer(&self, spec: &ConsumerSpec) -> Result<PullReader, NatsError> {
        let what = format!(
            "creating consumer {} on stream {}",
            spec.durable, spec.stream
        );
        let stream = self.get_stream(&spec.stream, &what)?;
        if let Err(e) = self.client.block_on(stream.delete_consumer(&spec.durable)) {
            use async_nats::jetstream::stream::ConsumerErrorKind;
            let absent =
                matches!(e.kind(), ConsumerErrorKind::JetStream(js) if js.error_code().0 == 10014);
            if !absent {
                return Err(self.error(&what, &e));
            }
        }
        let cfg = pull::Config {
            durable_name: Some(spec.durable.clone()),
            filter_subject: spec.filter.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: spec.start.max(1),
            },
            ack_policy: AckPolicy::All,
            ack_wait: spec.ack_wait,
            max_ack_pending: spec.max_ack_pending,
            ..pull::Config::default()
        };
        let consumer = self
            .client
            .block_on(stream.create_consumer(cfg))
            .map_err(|e| self.error(&what, &e))?;
        let messages = self
            .client
            .block_on(
                consumer
                    .stream()
                    .max_messages_per_batch(spec.batch_messages)
                    .max_bytes_per_batch(spec.batch_bytes)
                    .expires(Duration::from_secs(5))
                    .messages(),
            )
            .map_err(|e| self.error(&what, &e))?;
        Ok(PullReader {
            client: self.client.clone(),
            name: format!("consumer {} on stream {}", spec.durable, spec.stream),
            messages,
        })
    }

    /// Stream `name`, with its information as of now (`what`: the error's context).
    fn get_stream(
        &self,
        name: &str,
        what: &str,
    ) -> Result<async_nats::jetstream::stream::Stream, NatsError> {
        self.client
            .block_on(self.ctx.get_stream(name))
            .map_err(|e| self.error(what, &e))
    }

    /// An ordered consumer of `filter` on `stream` that starts from each subject's last message
    /// (no acknowledgements: the server sends, the client keeps the order and recovers gaps).
    pub fn latest_reader(&self, stream: &str, filter: &str) -> Result<LatestReader, NatsError> {
        let what = format!("reading {filter} on stream {stream}");
        let s = self.get_stream(stream, &what)?;
        let cfg = pull::OrderedConfig {
            filter_subject: filter.to_string(),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..pull::OrderedConfig::default()
        };
        let consumer = self
            .client
            .block_on(s.create_consumer(cfg))
            .map_err(|e| self.error(&what, &e))?;
        let messages = self
            .client
            .block_on(consumer.messages())
            .map_err(|e| self.error(&what, &e))?;
        Ok(LatestReader {
            client: self.client.clone(),
            name: what,
            messages,
        })
    }

    /// A publisher with acknowledgements.
    pub fn publisher(&self) -> AckPublisher {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, AckWait)>();
        let (out, acks) = crossbeam_channel::unbounded();
        // outcomes reported in publishing order; each acknowledgement is awaited by its own task
        // from the moment it was published ([`AckPublisher::publish`])
        let _in_runtime = self.client.enter();
        drop(tokio::spawn(async move {
            while let Some((id, wait)) = rx.recv().await {
                // (a wait that panicked or was cancelled, as at shutdown: counted as lost, so the
                // batch goes again and detectors drop it if it did arrive)
                let outcome = wait.await.unwrap_or(AckOutcome::Lost);
                if out.send((id, outcome)).is_err() {
                    return;
                }
            }
        }));
        AckPublisher {
            js: self.clone(),
            tx,
            acks,
        }
    }

    pub(crate) fn ctx(&self) -> &Context {
        &self.ctx
    }
}

/// A durable pull consumer to create.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    pub filter: String,
    /// First stream sequence delivered.
    pub start: u64,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    /// Messages and bytes asked per pull, at most.
    pub batch_messages: usize,
    pub batch_bytes: usize,
}

/// A message delivered by a pull consumer.
pub struct Delivered {
    pub stream_seq: u64,
    message: jetstream::Message,
}

impl Delivered {
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// The subject it was published on.
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    /// Acknowledges this message (and, on an ack-all consumer, every one before it).
    pub fn ack(&self, client: &Client) -> Result<(), NatsError> {
        client
            .block_on(self.message.ack())
            .map_err(|e| client.failed("acknowledging a batch", e))
    }
}

/// Reads a pull consumer, keeping pulls outstanding.
pub struct PullReader {
    client: Client,
    name: String,
    messages: pull::Stream,
}

impl PullReader {
    /// The next message within `timeout`; `Ok(None)` on timeout (or a missed heartbeat, which the
    /// consumer recovers from); an error when the consumer is gone.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Delivered>, NatsError> {
        let messages = &mut self.messages;
        let next = self
            .client
            .block_on(async { tokio::time::timeout(timeout, messages.next()).await });
        match next {
            Err(_) => Ok(None),
            Ok(None) => Err(NatsError::Closed {
                what: format!("{} ended", self.name),
            }),
            Ok(Some(Ok(message))) => {
                let stream_seq = message
                    .info()
                    .map_err(|e| self.client.failed(&format!("reading {}", self.name), e))?
                    .stream_sequence;
                Ok(Some(Delivered {
                    stream_seq,
                    message,
                }))
            }
            Ok(Some(Err(e))) => {
                use async_nats::jetstream::consumer::pull::MessagesErrorKind as K;
                match e.kind() {
                    K::MissingHeartbeat | K::Pull => Ok(None),
                    _ => Err(self.client.failed(&format!("reading {}", self.name), e)),
                }
            }
        }
    }
}

/// Reads an ordered consumer ([`JetStream::latest_reader`]).
pub struct LatestReader {
    client: Client,
    name: String,
    messages: pull::Ordered,
}

impl LatestReader {
    /// The next message's payload within `timeout`; `Ok(None)` on timeout or a missed heartbeat
    /// (the consumer recovers from it); an error when the consumer is gone.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, NatsError> {
        let messages = &mut self.messages;
        let next = self
            .client
            .block_on(async { tokio::time::timeout(timeout, messages.next()).await });
        match next {
            Err(_) => Ok(None),
            Ok(None) => Err(NatsError::Closed {
                what: format!("{} ended", self.name),
            }),
            Ok(Some(Ok(message))) => Ok(Some(message.payload.to_vec())),
            Ok(Some(Err(e))) => {
                use async_nats::jetstream::consumer::pull::OrderedErrorKind as K;
                match e.kind() {
                    K::MissingHeartbeat | K::Pull | K::Recreate => Ok(None),
                    _ => Err(self.client.failed(&self.name, e)),
                }
            }
        }
    }
}

/// What became of a published batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Stored,
    /// JetStream refused it (with its reason).
    Refused(String),
    /// No acknowledgement came (the connection was lost): send it again.
    Lost,
}

/// The wait for one publish's acknowledgement, running from the moment it was published.
type AckWait = tokio::task::JoinHandle<AckOutcome>;

/// What became of a publish, once its acknowledgement came or its wait ran out.
async fn ack_outcome(fut: jetstream::context::PublishAckFuture) -> AckOutcome {
    match fut.await {
        Ok(_) => AckOutcome::Stored,
        Err(e) => match e.kind() {
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => AckOutcome::Lost,
            _ => AckOutcome::Refused(
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()),
            ),
        },
    }
}

/// Publishes to streams; each publish's outcome comes back, in publishing order, from
/// [`AckPublisher::try_outcome`].
///
/// Each acknowledgement's wait (its timeout) starts when the batch is published, not when the
/// ones before it are settled: after a lost connection, the acknowledgements that will never come
/// all time out together, once, instead of one after another (n × the timeout, which held back
/// the outcomes of every batch sent again after them).
pub struct AckPublisher {
    js: JetStream,
    tx: tokio::sync::mpsc::UnboundedSender<(u64, AckWait)>,
    acks: Receiver<(u64, AckOutcome)>,
}

impl AckPublisher {
    /// Publishes `payload` on `subject`; its outcome will carry `id`.
    pub fn publish(&self, id: u64, subject: &str, payload: Vec<u8>) -> Result<(), NatsError> {
        self.publish_all(std::iter::once((id, subject, payload))).1
    }

    /// Publishes each `(id, subject, payload)` in order, in one pass of the client's runtime (a
    /// wake-up of its thread for all of them, not one each); each outcome will carry its `id`.
    /// Returns how many were published: fewer than given when publishing failed (the error), and
    /// those after it were not tried.
    pub fn publish_all<'a>(
        &self,
        batch: impl Iterator<Item = (u64, &'a str, Vec<u8>)>,
    ) -> (usize, Result<(), NatsError>) {
        let ctx = self.js.ctx();
        let tx = &self.tx;
        let (done, failed) = self.js.client.block_on(async move {
            let mut done = 0;
            for (id, subject, payload) in batch {
                let fut = match ctx.publish(subject.to_string(), payload.into()).await {
                    Ok(f) => f,
                    Err(e) => return (done, Some((subject, e))),
                };
                if tx.send((id, tokio::spawn(ack_outcome(fut)))).is_err() {
                    return (done, None);
                }
                done += 1;
            }
            (done, None)
        });
        let r = match failed {
            Some((subject, e)) => Err(self
                .js
                .client
                .failed(&format!("publishing on {subject}"), e)),
            None if tx.is_closed() => Err(NatsError::Closed {
                what: "the acknowledgement collector stopped".to_string(),
            }),
            None => Ok(()),
        };
        (done, r)
    }

    /// The next outcome, if one came.
    pub fn try_outcome(&self) -> Option<(u64, AckOutcome)> {
        self.acks.try_recv().ok()
    }

    /// Where outcomes arrive (to wait for one together with other work).
    pub fn outcomes(&self) -> &Receiver<(u64, AckOutcome)> {
        &self.acks
    }

    pub fn client(&self) -> &Client {
        &self.js.client
    }
}

/// A key's value and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    pub revision: u64,
}

/// A key-value bucket (stream `KV_<bucket>`), one value per key.
#[derive(Clone)]
pub struct Kv {
    js: JetStream,
    bucket: String,
    store: jetstream::kv::Store,
}

impl Kv {
    /// Creates the bucket (history 1), or opens it, and returns once the server has set it up
    /// ([`JetStream::wait_ready`]). The bucket's stream is made here with the layout of
    /// async-nats' own `create_key_value`, which first reads the account's limits in a form
    /// older servers (Debian's 2.9) do not answer.
    pub fn ensure(js: &JetStream, bucket: &str, storage: Storage) -> Result<Kv, NatsError> {
        let what = format!("opening key-value bucket {bucket}");
        let cfg = Config {
            max_messages_per_subject: 1,
            deny_delete: true,
            duplicate_window: Duration::from_secs(120),
            ..bucket_stream(
                format!("KV_{bucket}"),
                vec![format!("$KV.{bucket}.>")],
                storage,
            )
        };
        // a bucket there with another layout (made by the nats tool, or by an older floodwatch)
        // is used as it is
        let store = js.open_bucket(&cfg, &what, js.ctx.get_key_value(bucket))?;
        Ok(Kv {
            js: js.clone(),
            bucket: bucket.to_string(),
            store,
        })
    }

    /// The key's value; None when absent or deleted.
    pub fn get(&self, key: &str) -> Result<Option<KvEntry>, NatsError> {
        use async_nats::jetstream::kv::Operation;
        let entry = self
            .js
            .client
            .block_on(self.store.entry(key))
            .map_err(|e| {
                self.js
                    .error(&format!("reading key {key} of {}", self.bucket), &e)
            })?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| KvEntry {
                value: e.value.to_vec(),
                revision: e.revision,
            }))
    }

    /// Stores `value`; returns its revision.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<u64, NatsError> {
        self.js
            .client
            .block_on(self.store.put(key, value.to_vec().into()))
            .map_err(|e| {
                self.js
                    .error(&format!("writing key {key} of {}", self.bucket), &e)
            })
    }

    /// Stores `value` only when the key is absent (or deleted); None when it exists.
    pub fn create(&self, key: &str, value: &[u8]) -> Result<Option<u64>, NatsError> {
        match self
            .js
            .client
            .block_on(self.store.create(key, value.to_vec().into()))
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(self
                .js
                .error(&format!("creating key {key} of {}", self.bucket), &e)),
        }
    }

    /// Stores `value` only when the key's revision is still `revision`; None otherwise.
    pub fn update(&self, key: &str, value: &[u8], revision: u64) -> Result<Option<u64>, NatsError> {
        match self
            .js
            .client
            .block_on(self.store.update(key, value.to_vec().into(), revision))
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(self
                .js
                .error(&format!("updating key {key} of {}", self.bucket), &e)),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// An object store bucket (stream `OBJ_<bucket>`).
#[derive(Clone)]
pub struct ObjectStore {
    js: JetStream,
    bucket: String,
    store: jetstream::object_store::ObjectStore,
}

impl ObjectStore {
    /// Creates the bucket, or opens it, and returns once the server has set it up
    /// ([`JetStream::wait_ready`]).
    pub fn ensure(
        js: &JetStream,
        bucket: &str,
        storage: Storage,
    ) -> Result<ObjectStore, NatsError> {
        let what = format!("opening object store {bucket}");
        // the layout of async-nats' own create_object_store; a bucket there with another one is
        // used as it is
        let subjects = vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")];
        let cfg = bucket_stream(format!("OBJ_{bucket}"), subjects, storage);
        let store = js.open_bucket(&cfg, &what, js.ctx.get_object_store(bucket))?;
        Ok(ObjectStore {
            js: js.clone(),
            bucket: bucket.to_string(),
            store,
        })
    }

    /// Stores `data` under `name`, replacing an older object of that name; returns its size.
    pub fn put(&self, name: &str, data: &[u8]) -> Result<u64, NatsError> {
        let mut reader = data;
        self.js
            .client
            .block_on(self.store.put(name, &mut reader))
            .map(|info| info.size as u64)
            .map_err(|e| {
                self.js
                    .error(&format!("storing object {name} in {}", self.bucket), &e)
            })
    }

    /// The object's bytes (checked against their recorded digest); None when absent.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, NatsError> {
        let what = format!("reading object {name} of {}", self.bucket);
        let client = &self.js.client;
        client.block_on(async {
            let mut object = match self.store.get(name).await {
                Ok(o) => o,
                Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.js.error(&what, &e)),
            };
            let mut data = Vec::new();
            object
                .read_to_end(&mut data)
                .await
                .map_err(|e| client.failed(&what, e))?;
            Ok(Some(data))
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}
