//! The JetStream subset floodwatch needs, over [`super::nats::Client`]: streams, durable pull
//! consumers, publish with acks, message get, a key-value bucket and an object store laid out like
//! the `nats kv` / `nats object` tools lay theirs out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::nats::{parse_headers, random_token, Client, Message, NatsError, Subscription};

/// err_code: stream not found.
pub const ERR_STREAM_NOT_FOUND: u32 = 10059;
/// err_code: consumer not found.
pub const ERR_CONSUMER_NOT_FOUND: u32 = 10014;
/// err_code: no message found (message get).
pub const ERR_NO_MESSAGE_FOUND: u32 = 10037;
/// err_code: wrong last sequence (compare-and-set publish).
pub const ERR_WRONG_LAST_SEQUENCE: u32 = 10071;
/// err_code: stream name already in use with a different configuration.
pub const ERR_STREAM_NAME_IN_USE: u32 = 10058;
/// err_code: JetStream not enabled for the account.
pub const ERR_NOT_ENABLED: u32 = 10039;
/// err_code: JetStream not enabled on the server.
pub const ERR_NOT_ENABLED_SERVER: u32 = 10076;

/// Chunk size of the object store (as the `nats` tool).
pub const OBJECT_CHUNK: usize = 128 * 1024;

/// A JetStream context: a client and the timeout of API calls.
#[derive(Clone, Debug)]
pub struct JetStream {
    client: Client,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u32,
    #[serde(default)]
    description: String,
}

fn is_err(e: &NatsError, code: u32) -> bool {
    matches!(e, NatsError::JetStream { err_code, .. } if *err_code == code)
}

/// Checks a stream, consumer or bucket name; `kind` names it in the error.
pub fn check_name(kind: &'static str, name: &str) -> Result<(), NatsError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 255 {
        "it is longer than 255 bytes"
    } else if name
        .bytes()
        .any(|b| b <= b' ' || matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\' | 0x7f))
    {
        "it contains a space, '.', '*', '>', a slash or a control character"
    } else {
        return Ok(());
    };
    Err(NatsError::InvalidName {
        kind,
        name: name.to_string(),
        reason: reason.to_string(),
    })
}

/// Duration as JetStream's nanoseconds.
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl JetStream {
    /// A context on `client`; API calls wait up to `timeout`.
    pub fn new(client: Client, timeout: Duration) -> JetStream {
        JetStream { client, timeout }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn not_enabled(&self) -> NatsError {
        NatsError::JetStreamNotEnabled {
            addr: self.client.server_addr(),
        }
    }

    /// A request on `$JS.API.<api>`; a JSON `error` becomes [`NatsError::JetStream`].
    fn api<T: DeserializeOwned>(&self, api: &str, body: &[u8]) -> Result<T, NatsError> {
        let subject = format!("$JS.API.{api}");
        let reply = match self.client.request(&subject, body, self.timeout) {
            Err(NatsError::NoResponders { .. }) => return Err(self.not_enabled()),
            r => r?,
        };
        let bad = |e: serde_json::Error| {
            NatsError::Protocol(format!(
                "bad JetStream reply on {subject} from {}: {e}",
                self.client.server_addr()
            ))
        };
        let v: Value = serde_json::from_slice(&reply.payload).map_err(bad)?;
        if let Some(err) = v.get("error") {
            let e: ApiError = ApiError::deserialize(err).map_err(bad)?;
            if e.err_code == ERR_NOT_ENABLED || e.err_code == ERR_NOT_ENABLED_SERVER {
                return Err(self.not_enabled());
            }
            return Err(NatsError::JetStream {
                code: e.code,
                err_code: e.err_code,
                description: e.description,
            });
        }
        T::deserialize(v).map_err(bad)
    }

    fn api_json<T: DeserializeOwned>(&self, api: &str, body: &Value) -> Result<T, NatsError> {
        self.api(api, body.to_string().as_bytes())
    }

    /// Checks that JetStream answers (`$JS.API.INFO`).
    pub fn check(&self) -> Result<(), NatsError> {
        self.api::<Value>("INFO", b"").map(|_| ())
    }

    /// Creates the stream, or updates it to `cfg` when it exists with another configuration.
    pub fn ensure_stream(&self, cfg: &StreamConfig) -> Result<(), NatsError> {
        check_name("stream", &cfg.name)?;
        let body = cfg.to_json();
        match self.api_json::<Value>(&format!("STREAM.CREATE.{}", cfg.name), &body) {
            Ok(_) => Ok(()),
            Err(e) if is_err(&e, ERR_STREAM_NAME_IN_USE) => self
                .api_json::<Value>(&format!("STREAM.UPDATE.{}", cfg.name), &body)
                .map(|_| ())
                .map_err(|e| match e {
                    NatsError::JetStream {
                        code,
                        err_code,
                        description,
                    } => NatsError::JetStream {
                        code,
                        err_code,
                        description: format!(
                            "cannot update stream {} on {} to the configuration asked: {description} (delete the stream, e.g. `nats stream rm {}`, or use another name)",
                            cfg.name,
                            self.client.server_addr(),
                            cfg.name
                        ),
                    },
                    e => e,
                }),
            Err(NatsError::JetStream {
                code,
                err_code,
                description,
            }) => Err(NatsError::JetStream {
                code,
                err_code,
                description: format!(
                    "cannot create stream {} on {}: {description}",
                    cfg.name,
                    self.client.server_addr()
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// Deletes a stream; false when it did not exist.
    pub fn delete_stream(&self, name: &str) -> Result<bool, NatsError> {
        check_name("stream", name)?;
        match self.api::<Value>(&format!("STREAM.DELETE.{name}"), b"") {
            Ok(_) => Ok(true),
            Err(e) if is_err(&e, ERR_STREAM_NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a durable pull consumer on `stream` (no change when it exists with this config).
    pub fn create_consumer(&self, stream: &str, cfg: &ConsumerConfig) -> Result<(), NatsError> {
        check_name("stream", stream)?;
        check_name("consumer", &cfg.durable)?;
        let body = json!({"stream_name": stream, "config": cfg.to_json()});
        self.api_json::<Value>(
            &format!("CONSUMER.DURABLE.CREATE.{stream}.{}", cfg.durable),
            &body,
        )
        .map(|_| ())
        .map_err(|e| match e {
            NatsError::JetStream {
                code,
                err_code,
                description,
            } => NatsError::JetStream {
                code,
                err_code,
                description: format!(
                    "cannot create consumer {} on stream {stream} at {}: {description} (delete it first to change its configuration)",
                    cfg.durable,
                    self.client.server_addr()
                ),
            },
            e => e,
        })
    }

    /// Deletes a consumer; false when it (or its stream) did not exist.
    pub fn delete_consumer(&self, stream: &str, durable: &str) -> Result<bool, NatsError> {
        check_name("stream", stream)?;
        check_name("consumer", durable)?;
        match self.api::<Value>(&format!("CONSUMER.DELETE.{stream}.{durable}"), b"") {
            Ok(_) => Ok(true),
            Err(e) if is_err(&e, ERR_CONSUMER_NOT_FOUND) || is_err(&e, ERR_STREAM_NOT_FOUND) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The consumer's state; None when it (or its stream) does not exist.
    pub fn consumer_info(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<Option<ConsumerInfo>, NatsError> {
        check_name("stream", stream)?;
        check_name("consumer", durable)?;
        match self.api::<RawConsumerInfo>(&format!("CONSUMER.INFO.{stream}.{durable}"), b"") {
            Ok(r) => Ok(Some(ConsumerInfo {
                num_pending: r.num_pending,
                num_ack_pending: r.num_ack_pending,
                delivered_stream_seq: r.delivered.stream_seq,
                ack_floor_stream_seq: r.ack_floor.stream_seq,
            })),
            Err(e) if is_err(&e, ERR_CONSUMER_NOT_FOUND) || is_err(&e, ERR_STREAM_NOT_FOUND) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A puller of the existing durable consumer `durable` on `stream`.
    pub fn pull(&self, stream: &str, durable: &str) -> Result<PullConsumer, NatsError> {
        check_name("stream", stream)?;
        check_name("consumer", durable)?;
        if self.consumer_info(stream, durable)?.is_none() {
            return Err(self.no_consumer(stream, durable));
        }
        let inbox = self.client.new_inbox();
        let sub = self.client.subscribe(&inbox)?;
        Ok(PullConsumer {
            js: self.clone(),
            stream: stream.to_string(),
            durable: durable.to_string(),
            next_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
            inbox,
            sub,
            batch: 256,
            expires: Duration::from_secs(5),
            pending: 0,
            last_pull: None,
            hold_until: None,
        })
    }

    fn no_consumer(&self, stream: &str, durable: &str) -> NatsError {
        NatsError::JetStream {
            code: 404,
            err_code: ERR_CONSUMER_NOT_FOUND,
            description: format!(
                "no consumer {durable} on stream {stream} at {}: create it first (JetStream::create_consumer)",
                self.client.server_addr()
            ),
        }
    }

    /// Publishes to a stream's subject and waits for its ack.
    pub fn publish(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<PubAck, NatsError> {
        let reply = self
            .client
            .request_with_headers(subject, headers, payload, self.timeout)?;
        let bad = |e: serde_json::Error| {
            NatsError::Protocol(format!(
                "bad JetStream ack for {subject} from {}: {e}",
                self.client.server_addr()
            ))
        };
        let v: Value = serde_json::from_slice(&reply.payload).map_err(bad)?;
        if let Some(err) = v.get("error") {
            let e = ApiError::deserialize(err).map_err(bad)?;
            return Err(NatsError::JetStream {
                code: e.code,
                err_code: e.err_code,
                description: e.description,
            });
        }
        PubAck::deserialize(v).map_err(bad)
    }

    /// The last message on `subject` in `stream`; None when there is none.
    pub fn last_message(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<StoredMessage>, NatsError> {
        self.get_message(stream, &json!({ "last_by_subj": subject }))
    }

    /// The first message at or after `seq` on `subject` in `stream`; None when there is none.
    pub fn next_message(
        &self,
        stream: &str,
        seq: u64,
        subject: &str,
    ) -> Result<Option<StoredMessage>, NatsError> {
        self.get_message(stream, &json!({ "seq": seq, "next_by_subj": subject }))
    }

    fn get_message(&self, stream: &str, req: &Value) -> Result<Option<StoredMessage>, NatsError> {
        check_name("stream", stream)?;
        let raw = match self.api_json::<RawGet>(&format!("STREAM.MSG.GET.{stream}"), req) {
            Ok(r) => r.message,
            Err(NatsError::JetStream { code: 404, .. }) => return Ok(None),
            Err(e) if is_err(&e, ERR_NO_MESSAGE_FOUND) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |what: &str| {
            NatsError::Protocol(format!(
                "bad {what} in message {} of stream {stream} from {}",
                raw.seq,
                self.client.server_addr()
            ))
        };
        let payload = STANDARD.decode(&raw.data).map_err(|_| bad("base64 data"))?;
        let headers = match raw.hdrs.as_deref() {
            None | Some("") => Vec::new(),
            Some(h) => {
                let block = STANDARD.decode(h).map_err(|_| bad("base64 headers"))?;
                parse_headers(&block)?.2
            }
        };
        Ok(Some(StoredMessage {
            subject: raw.subject,
            seq: raw.seq,
            headers,
            payload,
        }))
    }

    /// Purges the messages of `stream` on `subject`; returns how many went.
    pub fn purge_subject(&self, stream: &str, subject: &str) -> Result<u64, NatsError> {
        check_name("stream", stream)?;
        #[derive(Deserialize)]
        struct Purged {
            #[serde(default)]
            purged: u64,
        }
        let r: Purged = self.api_json(
            &format!("STREAM.PURGE.{stream}"),
            &json!({ "filter": subject }),
        )?;
        Ok(r.purged)
    }
}

#[derive(Deserialize)]
struct RawGet {
    message: RawStored,
}

#[derive(Deserialize)]
struct RawStored {
    subject: String,
    seq: u64,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    data: String,
}

#[derive(Deserialize, Default)]
struct SeqPair {
    #[serde(default)]
    stream_seq: u64,
}

#[derive(Deserialize)]
struct RawConsumerInfo {
    #[serde(default)]
    num_pending: u64,
    #[serde(default)]
    num_ack_pending: u64,
    #[serde(default)]
    delivered: SeqPair,
    #[serde(default)]
    ack_floor: SeqPair,
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    File,
    Memory,
}

/// What a full stream does with a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Drop the oldest messages.
    Old,
    /// Refuse the new message.
    New,
}

/// A stream's configuration (limits retention, one replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub name: String,
    pub subjects: Vec<String>,
    pub storage: Storage,
    /// -1: no limit.
    pub max_bytes: i64,
    /// ZERO: no limit.
    pub max_age: Duration,
    /// -1: no limit.
    pub max_msgs_per_subject: i64,
    pub discard: Discard,
    /// None: the server's default (2 minutes).
    pub duplicate_window: Option<Duration>,
    pub allow_rollup: bool,
    pub deny_delete: bool,
    /// -1: the server's max_payload.
    pub max_msg_size: i32,
}

impl StreamConfig {
    /// File storage, no limits, discard old, no rollup.
    pub fn new(name: &str, subjects: &[&str]) -> StreamConfig {
        StreamConfig {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            storage: Storage::File,
            max_bytes: -1,
            max_age: Duration::ZERO,
            max_msgs_per_subject: -1,
            discard: Discard::Old,
            duplicate_window: None,
            allow_rollup: false,
            deny_delete: false,
            max_msg_size: -1,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "subjects": self.subjects,
            "retention": "limits",
            "max_consumers": -1,
            "max_msgs": -1,
            "max_bytes": self.max_bytes,
            "max_age": nanos(self.max_age),
            "max_msgs_per_subject": self.max_msgs_per_subject,
            "max_msg_size": self.max_msg_size,
            "discard": match self.discard { Discard::Old => "old", Discard::New => "new" },
            "storage": match self.storage { Storage::File => "file", Storage::Memory => "memory" },
            "num_replicas": 1,
            "allow_rollup_hdrs": self.allow_rollup,
            "deny_delete": self.deny_delete,
            "deny_purge": false,
        });
        if let Some(w) = self.duplicate_window {
            v["duplicate_window"] = json!(nanos(w));
        }
        v
    }
}

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverPolicy {
    All,
    StartSequence(u64),
    New,
    Last,
}

/// How a consumer's messages are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckPolicy {
    /// Each message.
    Explicit,
    /// A message acks all before it.
    All,
    None,
}

/// A durable pull consumer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub durable: String,
    /// Empty: every subject of the stream.
    pub filter_subject: String,
    pub deliver: DeliverPolicy,
    pub ack: AckPolicy,
    pub ack_wait: Duration,
    /// -1: no limit.
    pub max_ack_pending: i64,
    /// -1: no limit.
    pub max_deliver: i64,
}

impl ConsumerConfig {
    /// Deliver all, ack explicit, 30 s ack wait, 10 000 ack pending, unlimited redelivery.
    pub fn new(durable: &str, filter_subject: &str) -> ConsumerConfig {
        ConsumerConfig {
            durable: durable.to_string(),
            filter_subject: filter_subject.to_string(),
            deliver: DeliverPolicy::All,
            ack: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 10_000,
            max_deliver: -1,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "durable_name": self.durable,
            "ack_policy": match self.ack {
                AckPolicy::Explicit => "explicit",
                AckPolicy::All => "all",
                AckPolicy::None => "none",
            },
            "ack_wait": nanos(self.ack_wait),
            "max_ack_pending": self.max_ack_pending,
            "max_deliver": self.max_deliver,
            "replay_policy": "instant",
        });
        let (policy, start) = match self.deliver {
            DeliverPolicy::All => ("all", None),
            DeliverPolicy::StartSequence(s) => ("by_start_sequence", Some(s)),
            DeliverPolicy::New => ("new", None),
            DeliverPolicy::Last => ("last", None),
        };
        v["deliver_policy"] = json!(policy);
        if let Some(s) = start {
            v["opt_start_seq"] = json!(s);
        }
        if !self.filter_subject.is_empty() {
            v["filter_subject"] = json!(self.filter_subject);
        }
        v
    }
}

/// A consumer's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Messages not yet delivered.
    pub num_pending: u64,
    /// Delivered, not yet acked.
    pub num_ack_pending: u64,
    pub delivered_stream_seq: u64,
    pub ack_floor_stream_seq: u64,
}

/// The stream's ack of a publish.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PubAck {
    pub stream: String,
    pub seq: u64,
    #[serde(default)]
    pub duplicate: bool,
}

/// A message read from a stream by sequence or subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub subject: String,
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

/// A message delivered by a pull consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsMessage {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    /// How many times it was delivered (1 the first time).
    pub delivered: u64,
    /// The `$JS.ACK...` subject to ack on.
    pub reply: String,
}

/// Delivered count, stream and consumer sequences from a `$JS.ACK` reply subject (both the
/// 9-token form and the 11/12-token form with domain and account hash).
pub fn parse_ack_subject(reply: &str) -> Option<(u64, u64, u64)> {
    let t: Vec<&str> = reply.split('.').collect();
    if t.len() < 9 || t[0] != "$JS" || t[1] != "ACK" {
        return None;
    }
    // <delivered>.<sseq>.<cseq>.<ts>.<pending>, then a random token in the 12-token form
    let base = match t.len() {
        9 => 4,
        11 | 12 => 6,
        _ => return None,
    };
    let n = |i: usize| t[i].parse::<u64>().ok();
    Some((n(base)?, n(base + 1)?, n(base + 2)?))
}

impl JsMessage {
    fn from_message(m: Message) -> Result<JsMessage, NatsError> {
        let reply = m.reply.unwrap_or_default();
        let Some((delivered, stream_seq, consumer_seq)) = parse_ack_subject(&reply) else {
            return Err(NatsError::Protocol(format!(
                "JetStream message on {} has no valid ack subject (reply {reply:?})",
                m.subject
            )));
        };
        Ok(JsMessage {
            subject: m.subject,
            headers: m.headers,
            payload: m.payload,
            stream_seq,
            consumer_seq,
            delivered,
            reply,
        })
    }

    /// Acks the message (buffered: the caller flushes).
    pub fn ack(&self, client: &Client) -> Result<(), NatsError> {
        client.publish(&self.reply, b"+ACK")
    }

    /// Asks for redelivery now (buffered).
    pub fn nak(&self, client: &Client) -> Result<(), NatsError> {
        client.publish(&self.reply, b"-NAK")
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Fetches a durable pull consumer's messages, keeping pull requests outstanding.
pub struct PullConsumer {
    js: JetStream,
    stream: String,
    durable: String,
    next_subject: String,
    inbox: String,
    sub: Subscription,
    batch: usize,
    expires: Duration,
    /// Messages still owed by the outstanding pulls.
    pending: usize,
    last_pull: Option<Instant>,
    /// No new pull before this (after the server refused one with 409).
    hold_until: Option<Instant>,
}

impl PullConsumer {
    /// Messages asked per pull request (default 256).
    pub fn set_batch(&mut self, batch: usize) {
        self.batch = batch.max(1);
    }

    /// How long a pull request stays open on the server (default 5 s).
    pub fn set_expires(&mut self, expires: Duration) {
        self.expires = expires.max(Duration::from_millis(100));
    }

    /// Sends a pull when the outstanding ones owe less than half a batch.
    fn top_up(&mut self) -> Result<(), NatsError> {
        let now = Instant::now();
        // past their expiry (and a margin for the 408), old pulls owe nothing
        if self
            .last_pull
            .is_some_and(|t| now.duration_since(t) > self.expires + Duration::from_secs(1))
        {
            self.pending = 0;
        }
        if self.pending * 2 > self.batch || self.hold_until.is_some_and(|t| now < t) {
            return Ok(());
        }
        let body = format!(
            "{{\"batch\":{},\"expires\":{}}}",
            self.batch,
            nanos(self.expires)
        );
        let client = self.js.client();
        client.publish_with_headers(&self.next_subject, Some(&self.inbox), &[], body.as_bytes())?;
        client.flush_writes()?;
        self.pending += self.batch;
        self.last_pull = Some(now);
        Ok(())
    }

    /// The next message within `timeout`; `Ok(None)` on timeout. Status messages (404, 408, 409
    /// ...) are handled inside; a deleted consumer is an error.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<JsMessage>, NatsError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.top_up()?;
            let now = Instant::now();
            // wake up for the expiry of the pulls even when the caller waits longer
            let mut wait = deadline
                .saturating_duration_since(now)
                .min(self.expires + Duration::from_secs(1));
            if let Some(t) = self.hold_until.filter(|&t| t > now) {
                wait = wait.min(t - now);
            }
            let Some(m) = self.sub.next_timeout(wait)? else {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                continue;
            };
            match m.status {
                None => {
                    self.pending = self.pending.saturating_sub(1);
                    return JsMessage::from_message(m).map(Some);
                }
                Some(100) => {} // idle heartbeat / flow control
                Some(code) => {
                    let owed = m
                        .header("Nats-Pending-Messages")
                        .and_then(|v| v.parse::<usize>().ok());
                    self.pending = match owed {
                        Some(n) => self.pending.saturating_sub(n),
                        None => 0,
                    };
                    let desc = m.description.unwrap_or_default();
                    let lower = desc.to_ascii_lowercase();
                    let fatal = (code == 409
                        && (lower.contains("deleted") || lower.contains("push based")))
                        || code == 400;
                    if fatal {
                        return Err(NatsError::JetStream {
                            code,
                            err_code: 0,
                            description: format!(
                                "pull from consumer {} on stream {} at {}: {desc} (create the consumer again)",
                                self.durable,
                                self.stream,
                                self.js.client().server_addr()
                            ),
                        });
                    }
                    if code == 503 {
                        self.hold_until = Some(Instant::now() + Duration::from_millis(250));
                        return Err(self.js.no_consumer(&self.stream, &self.durable));
                    }
                    if code == 409 {
                        // e.g. too many pulls waiting: do not ask again at once
                        self.hold_until = Some(Instant::now() + Duration::from_millis(250));
                    }
                    if code == 404 || code == 408 || code == 409 {
                        continue;
                    }
                    return Err(NatsError::Protocol(format!(
                        "unexpected status {code} {desc} on the pull inbox of consumer {}",
                        self.durable
                    )));
                }
            }
        }
    }
}

/// Checks a key-value or object bucket name (`[A-Za-z0-9_-]+`).
fn check_bucket(kind: &'static str, bucket: &str) -> Result<(), NatsError> {
    if bucket.is_empty()
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NatsError::InvalidName {
            kind,
            name: bucket.to_string(),
            reason: "use only letters, digits, '_' and '-'".to_string(),
        });
    }
    Ok(())
}

/// Checks a key (`[-/_=.a-zA-Z0-9]+`, no empty token).
fn check_key(key: &str) -> Result<(), NatsError> {
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.'))
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..");
    if ok {
        Ok(())
    } else {
        Err(NatsError::InvalidName {
            kind: "key",
            name: key.to_string(),
            reason: "use letters, digits and - / _ = . (no empty '.'-separated part)".to_string(),
        })
    }
}

/// A key-value bucket (stream `KV_<bucket>`, subjects `$KV.<bucket>.>`), one value per key.
#[derive(Clone, Debug)]
pub struct Kv {
    js: JetStream,
    bucket: String,
    stream: String,
}

/// A key's value and its revision (the stream sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    pub revision: u64,
}

impl Kv {
    /// Creates the bucket (history 1) or opens it.
    pub fn ensure(js: &JetStream, bucket: &str, storage: Storage) -> Result<Kv, NatsError> {
        check_bucket("key-value bucket", bucket)?;
        let stream = format!("KV_{bucket}");
        let subject = format!("$KV.{bucket}.>");
        let mut cfg = StreamConfig::new(&stream, &[&subject]);
        cfg.storage = storage;
        cfg.max_msgs_per_subject = 1;
        cfg.discard = Discard::New;
        cfg.allow_rollup = true;
        cfg.deny_delete = true;
        cfg.duplicate_window = Some(Duration::from_secs(120));
        js.ensure_stream(&cfg)?;
        Ok(Kv {
            js: js.clone(),
            bucket: bucket.to_string(),
            stream,
        })
    }

    fn subject(&self, key: &str) -> Result<String, NatsError> {
        check_key(key)?;
        Ok(format!("$KV.{}.{key}", self.bucket))
    }

    /// The last message of the key, delete markers included.
    fn raw(&self, key: &str) -> Result<Option<StoredMessage>, NatsError> {
        let subject = self.subject(key)?;
        self.js.last_message(&self.stream, &subject)
    }

    /// The key's value; None when absent or deleted.
    pub fn get(&self, key: &str) -> Result<Option<KvEntry>, NatsError> {
        Ok(self.raw(key)?.and_then(|m| {
            let deleted = m
                .header("KV-Operation")
                .is_some_and(|op| op == "DEL" || op == "PURGE");
            (!deleted).then_some(KvEntry {
                value: m.payload,
                revision: m.seq,
            })
        }))
    }

    /// Stores `value`; returns its revision.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<u64, NatsError> {
        let subject = self.subject(key)?;
        Ok(self.js.publish(&subject, &[], value)?.seq)
    }

    /// Stores `value` only when the key is absent (or deleted); None when it exists.
    pub fn create(&self, key: &str, value: &[u8]) -> Result<Option<u64>, NatsError> {
        match self.update(key, value, 0)? {
            Some(rev) => Ok(Some(rev)),
            None => match self.raw(key)? {
                // a delete marker: replace it
                Some(m)
                    if m.header("KV-Operation")
                        .is_some_and(|op| op == "DEL" || op == "PURGE") =>
                {
                    self.update(key, value, m.seq)
                }
                _ => Ok(None),
            },
        }
    }

    /// Stores `value` only when the key's revision is still `revision`; None otherwise.
    pub fn update(&self, key: &str, value: &[u8], revision: u64) -> Result<Option<u64>, NatsError> {
        let subject = self.subject(key)?;
        let rev = revision.to_string();
        match self.js.publish(
            &subject,
            &[("Nats-Expected-Last-Subject-Sequence", &rev)],
            value,
        ) {
            Ok(ack) => Ok(Some(ack.seq)),
            Err(e) if is_err(&e, ERR_WRONG_LAST_SEQUENCE) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// An object store bucket (stream `OBJ_<bucket>`), compatible with `nats object`.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    js: JetStream,
    bucket: String,
    stream: String,
}

/// What [`ObjectStore::put`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub chunks: u32,
    pub nuid: String,
}

#[derive(Serialize, Deserialize)]
struct ObjectInfoJson {
    name: String,
    bucket: String,
    nuid: String,
    size: u64,
    mtime: String,
    chunks: u32,
    #[serde(default)]
    digest: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    options: Option<Value>,
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for `t`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

impl ObjectStore {
    /// Creates the bucket or opens it.
    pub fn ensure(
        js: &JetStream,
        bucket: &str,
        storage: Storage,
    ) -> Result<ObjectStore, NatsError> {
        check_bucket("object store bucket", bucket)?;
        let stream = format!("OBJ_{bucket}");
        let chunks = format!("$O.{bucket}.C.>");
        let meta = format!("$O.{bucket}.M.>");
        let mut cfg = StreamConfig::new(&stream, &[&chunks, &meta]);
        cfg.storage = storage;
        cfg.discard = Discard::New;
        cfg.allow_rollup = true;
        cfg.duplicate_window = Some(Duration::from_secs(120));
        js.ensure_stream(&cfg)?;
        Ok(ObjectStore {
            js: js.clone(),
            bucket: bucket.to_string(),
            stream,
        })
    }

    fn meta_subject(&self, name: &str) -> Result<String, NatsError> {
        if name.is_empty() {
            return Err(NatsError::InvalidName {
                kind: "object",
                name: String::new(),
                reason: "it is empty".to_string(),
            });
        }
        Ok(format!(
            "$O.{}.M.{}",
            self.bucket,
            URL_SAFE.encode(name.as_bytes())
        ))
    }

    fn meta(&self, name: &str) -> Result<Option<ObjectInfoJson>, NatsError> {
        let subject = self.meta_subject(name)?;
        let Some(m) = self.js.last_message(&self.stream, &subject)? else {
            return Ok(None);
        };
        let info: ObjectInfoJson = serde_json::from_slice(&m.payload)
            .map_err(|e| self.corrupt(name, format!("its metadata is not valid JSON ({e})")))?;
        Ok((!info.deleted).then_some(info))
    }

    fn corrupt(&self, name: &str, reason: String) -> NatsError {
        NatsError::ObjectCorrupt {
            bucket: self.bucket.clone(),
            name: name.to_string(),
            reason,
        }
    }

    /// Stores `data` under `name`, replacing (and purging) an older object of that name.
    pub fn put(&self, name: &str, data: &[u8]) -> Result<ObjectMeta, NatsError> {
        let meta_subject = self.meta_subject(name)?;
        let old = match self.meta(name) {
            Ok(old) => old,
            // unreadable metadata is replaced (its chunks stay behind)
            Err(NatsError::ObjectCorrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        let nuid = random_token(22);
        let chunk_subject = format!("$O.{}.C.{nuid}", self.bucket);
        let mut chunks = 0u32;
        let stored = data.chunks(OBJECT_CHUNK).try_for_each(|c| {
            self.js.publish(&chunk_subject, &[], c)?;
            chunks += 1;
            Ok::<_, NatsError>(())
        });
        let info = ObjectInfoJson {
            name: name.to_string(),
            bucket: self.bucket.clone(),
            nuid: nuid.clone(),
            size: data.len() as u64,
            mtime: rfc3339(SystemTime::now()),
            chunks,
            digest: format!("SHA-256={}", URL_SAFE.encode(Sha256::digest(data))),
            deleted: false,
            options: Some(json!({ "max_chunk_size": OBJECT_CHUNK })),
        };
        let stored = stored.and_then(|()| {
            let json = serde_json::to_vec(&info)
                .map_err(|e| NatsError::Protocol(format!("cannot encode object metadata: {e}")))?;
            self.js
                .publish(&meta_subject, &[("Nats-Rollup", "sub")], &json)
        });
        if let Err(e) = stored {
            // best effort: do not leave the chunks of a failed put behind
            let _ = self.js.purge_subject(&self.stream, &chunk_subject);
            return Err(e);
        }
        if let Some(old) = old {
            if old.nuid != nuid {
                self.js
                    .purge_subject(&self.stream, &format!("$O.{}.C.{}", self.bucket, old.nuid))?;
            }
        }
        Ok(ObjectMeta {
            size: info.size,
            chunks,
            nuid,
        })
    }

    /// The object's bytes, verified against its size and digest; None when absent.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, NatsError> {
        let Some(info) = self.meta(name)? else {
            return Ok(None);
        };
        let cap = usize::try_from(info.size).unwrap_or(usize::MAX);
        let mut data = Vec::with_capacity(cap.min(64 * 1024 * 1024));
        let subject = format!("$O.{}.C.{}", self.bucket, info.nuid);
        let mut seq = 1;
        for i in 0..info.chunks {
            let Some(m) = self.js.next_message(&self.stream, seq, &subject)? else {
                return Err(self.corrupt(
                    name,
                    format!("chunk {} of {} is missing", i + 1, info.chunks),
                ));
            };
            if data.len() + m.payload.len() > cap {
                return Err(self.corrupt(
                    name,
                    format!("its chunks hold more than the {} bytes recorded", info.size),
                ));
            }
            data.extend_from_slice(&m.payload);
            seq = m.seq + 1;
        }
        if data.len() as u64 != info.size {
            return Err(self.corrupt(
                name,
                format!("{} bytes read, {} recorded", data.len(), info.size),
            ));
        }
        let digest = format!("SHA-256={}", URL_SAFE.encode(Sha256::digest(&data)));
        if !info.digest.is_empty() && digest != info.digest {
            return Err(self.corrupt(
                name,
                format!(
                    "digest {digest} does not match the recorded {}",
                    info.digest
                ),
            ));
        }
        Ok(Some(data))
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_old_and_new_forms() {
        assert_eq!(
            parse_ack_subject("$JS.ACK.S.C.1.42.7.1700000000000000000.3"),
            Some((1, 42, 7))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.dom.ACCHASH.S.C.2.42.7.1700000000000000000.3.rnd"),
            Some((2, 42, 7))
        );
        assert_eq!(parse_ack_subject("$JS.ACK.S.C.x.42.7.1.3"), None);
        assert_eq!(parse_ack_subject("_INBOX.a.b"), None);
        assert_eq!(parse_ack_subject(""), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("stream", "FLOWS_1").is_ok());
        for bad in ["", "a b", "a.b", "a*", "a>"] {
            let e = check_name("stream", bad).unwrap_err().to_string();
            assert!(e.contains("stream"), "{e}");
        }
        assert!(check_bucket("bucket", "cfg-1").is_ok());
        assert!(check_bucket("bucket", "a.b").is_err());
        assert!(check_key("a.b/c=d").is_ok());
        assert!(check_key("a..b").is_err());
        assert!(check_key("a b").is_err());
    }

    #[test]
    fn configs_as_json() {
        let mut s = StreamConfig::new("S", &["s.>"]);
        s.max_age = Duration::from_secs(1);
        let v = s.to_json();
        assert_eq!(v["max_age"], 1_000_000_000i64);
        assert_eq!(v["storage"], "file");
        assert!(v.get("duplicate_window").is_none());
        let mut c = ConsumerConfig::new("d", "");
        c.deliver = DeliverPolicy::StartSequence(5001);
        let v = c.to_json();
        assert_eq!(v["deliver_policy"], "by_start_sequence");
        assert_eq!(v["opt_start_seq"], 5001);
        assert!(v.get("filter_subject").is_none());
    }

    #[test]
    fn mtime_is_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000000Z");
    }
}
