//! The JetStream the bus uses, through async-nats, as blocking calls on a [`Client`]: streams,
//! durable pull consumers, the last message of a subject, a key-value bucket (compare-and-set
//! revisions, for the lease), an object store (checkpoints) and a publisher whose
//! acknowledgements come back in publishing order without waiting for them one by one.
//!
//! Streams and buckets keep the names and layouts the `nats` tool (and floodwatch's earlier,
//! hand-written client) use: `KV_<bucket>` on `$KV.<bucket>.>`, `OBJ_<bucket>` on
//! `$O.<bucket>.C.>`/`$O.<bucket>.M.>`, so a cluster started by either build is read by the other.

use std::time::Duration;

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

    /// Creates the stream, or updates it to `spec`.
    pub fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), NatsError> {
        let cfg = Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            retention: RetentionPolicy::Limits,
            storage: spec.storage.nats(),
            max_bytes: spec.max_bytes,
            max_age: spec.max_age,
            discard: DiscardPolicy::Old,
            num_replicas: 1,
            ..Config::default()
        };
        let what = format!("creating or updating stream {}", spec.name);
        self.client
            .block_on(self.ctx.create_or_update_stream(cfg))
            .map(|_| ())
            .map_err(|e| match e.kind() {
                CreateStreamErrorKind::JetStream(js) => NatsError::JetStream {
                    code: u16::try_from(js.code()).unwrap_or(500),
                    err_code: js.error_code().0 as u32,
                    description: format!(
                        "{what} on {}: {} (delete the stream, e.g. `nats stream rm {}`, if its configuration cannot change)",
                        self.client.url(),
                        js,
                        spec.name
                    ),
                },
                CreateStreamErrorKind::TimedOut => NatsError::Timeout {
                    what: format!("{what} on {}", self.client.url()),
                },
                _ => self.error(&what, &e),
            })
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
        let stream = self
            .client
            .block_on(self.ctx.get_stream(&spec.stream))
            .map_err(|e| self.error(&what, &e))?;
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

    /// A publisher with acknowledgements.
    pub fn publisher(&self) -> AckPublisher {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(u64, jetstream::context::PublishAckFuture)>();
        let (out, acks) = crossbeam_channel::unbounded();
        // acknowledgements awaited in publishing order, reported in that order
        let _in_runtime = self.client.enter();
        drop(tokio::spawn(async move {
            while let Some((id, fut)) = rx.recv().await {
                let outcome = match fut.await {
                    Ok(_) => AckOutcome::Stored,
                    Err(e) => match e.kind() {
                        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                            AckOutcome::Lost
                        }
                        _ => AckOutcome::Refused(
                            std::error::Error::source(&e)
                                .map_or_else(|| e.to_string(), |s| s.to_string()),
                        ),
                    },
                };
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

/// What became of a published batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Stored,
    /// JetStream refused it (with its reason).
    Refused(String),
    /// No acknowledgement came (the connection was lost): send it again.
    Lost,
}

/// Publishes to streams; each publish's outcome comes back, in publishing order, from
/// [`AckPublisher::try_outcome`].
pub struct AckPublisher {
    js: JetStream,
    tx: tokio::sync::mpsc::UnboundedSender<(u64, jetstream::context::PublishAckFuture)>,
    acks: Receiver<(u64, AckOutcome)>,
}

impl AckPublisher {
    /// Publishes `payload` on `subject`; its outcome will carry `id`.
    pub fn publish(&self, id: u64, subject: &str, payload: Vec<u8>) -> Result<(), NatsError> {
        let ctx = self.js.ctx();
        let fut = self
            .js
            .client
            .block_on(ctx.publish(subject.to_string(), payload.into()))
            .map_err(|e| {
                self.js
                    .client
                    .failed(&format!("publishing on {subject}"), e)
            })?;
        self.tx.send((id, fut)).map_err(|_| NatsError::Closed {
            what: "the acknowledgement collector stopped".to_string(),
        })
    }

    /// The next outcome, if one came.
    pub fn try_outcome(&self) -> Option<(u64, AckOutcome)> {
        self.acks.try_recv().ok()
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
    /// Opens the bucket, or creates it (history 1). The bucket's stream is made here with the
    /// layout of async-nats' own `create_key_value`, which first reads the account's limits in a
    /// form older servers (Debian's 2.9) do not answer.
    pub fn ensure(js: &JetStream, bucket: &str, storage: Storage) -> Result<Kv, NatsError> {
        let what = format!("opening key-value bucket {bucket}");
        if js.client.block_on(js.ctx.get_key_value(bucket)).is_err() {
            let cfg = Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                storage: storage.nats(),
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: DiscardPolicy::New,
                num_replicas: 1,
                duplicate_window: Duration::from_secs(120),
                ..Config::default()
            };
            if let Err(e) = js.client.block_on(js.ctx.get_or_create_stream(cfg)) {
                return Err(js.error(&what, &e));
            }
        }
        let store = js
            .client
            .block_on(js.ctx.get_key_value(bucket))
            .map_err(|e| js.error(&what, &e))?;
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
    /// Opens the bucket, or creates it.
    pub fn ensure(
        js: &JetStream,
        bucket: &str,
        storage: Storage,
    ) -> Result<ObjectStore, NatsError> {
        let what = format!("opening object store {bucket}");
        let store = match js.client.block_on(js.ctx.get_object_store(bucket)) {
            Ok(s) => s,
            Err(_) => js
                .client
                .block_on(js.ctx.create_object_store(jetstream::object_store::Config {
                    bucket: bucket.to_string(),
                    storage: storage.nats(),
                    num_replicas: 1,
                    ..Default::default()
                }))
                .map_err(|e| js.error(&what, &e))?,
        };
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
