//! A minimal synchronous NATS client: the text protocol over [`std::net::TcpStream`], one reader
//! thread per connection, no TLS, no automatic reconnect.
//!
//! [`Client::publish`] only fills a 64 KiB buffer; [`Client::flush_writes`] sends it and
//! [`Client::flush`] also waits for the server to have processed it (PING/PONG). Requests share one
//! wildcard inbox subscription. When the connection dies, [`Client::is_closed`] turns true and
//! every call returns [`NatsError::Closed`]; callers reconnect by connecting a new [`Client`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Deserialize;

/// The port of `nats://host` without one.
pub const DEFAULT_PORT: u16 = 4222;
/// The longest control line accepted from the server (`MSG`, `-ERR`, ...).
pub const MAX_CONTROL_LINE: usize = 4096;
/// The longest `INFO` line accepted (clusters list their URLs in it).
pub const MAX_INFO_LINE: usize = 64 * 1024;
/// Headers may come on top of max_payload in a delivered message.
const PAYLOAD_SLACK: usize = 64 * 1024;
/// The largest max_payload believed from INFO (nats-server refuses more than 64 MiB).
const MAX_PAYLOAD_CAP: usize = 64 * 1024 * 1024;
/// Size of the write buffer behind [`Client::publish`].
const WRITE_BUFFER: usize = 64 * 1024;
/// The shortest stall of a socket write before the connection is given up.
const MIN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the NATS client and of [`super::jetstream`].
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("bad NATS url {url:?}: {reason} (expected nats://[user:pass@]host[:port])")]
    Url { url: String, reason: String },
    #[error(
        "cannot connect to NATS at {addr}: {source}: is nats-server running there? (start one: nats-server -js)"
    )]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("I/O error on the NATS connection: {0}")]
    Io(#[from] io::Error),
    #[error("NATS protocol error: {0}")]
    Protocol(String),
    #[error("the NATS server answered -ERR {0}")]
    Server(String),
    #[error("timed out {what}")]
    Timeout { what: String },
    #[error("the NATS connection is closed (server gone or close() called): connect a new Client")]
    Closed,
    #[error(
        "no responders on NATS subject {subject}: nothing subscribes to it (for JetStream: no stream captures it)"
    )]
    NoResponders { subject: String },
    #[error(
        "NATS message of {size} bytes is larger than the server's max_payload of {max} bytes: send less or raise max_payload in the server's config"
    )]
    TooLarge { size: usize, max: usize },
    #[error("JetStream error {code} (err_code {err_code}): {description}")]
    JetStream {
        code: u16,
        err_code: u32,
        description: String,
    },
    #[error(
        "JetStream is not enabled on the NATS server at {addr}: start nats-server with -js (or jetstream {{}} in its config)"
    )]
    JetStreamNotEnabled { addr: String },
    #[error("bad NATS subject {subject:?}: {reason}")]
    InvalidSubject { subject: String, reason: String },
    #[error("bad NATS header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("bad {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error("object {name:?} in bucket {bucket} is corrupt: {reason}; put it again")]
    ObjectCorrupt {
        bucket: String,
        name: String,
        reason: String,
    },
}

/// A message delivered by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub reply: Option<String>,
    /// Headers in the order sent (names as sent; compare with [`Message::header`]).
    pub headers: Vec<(String, String)>,
    /// The status code of a status message (`NATS/1.0 503`), e.g. 503 no responders.
    pub status: Option<u16>,
    /// The text after the status code.
    pub description: Option<String>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server's INFO says (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerInfo {
    #[serde(default)]
    pub server_id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub max_payload: usize,
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub jetstream: bool,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub auth_required: bool,
}

/// One operation read from the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerOp {
    Info(String),
    Msg { sid: u64, msg: Message },
    Ping,
    Pong,
    Ok,
    Err(String),
}

/// Incremental parser of the server's side of the protocol; bytes go in with [`Parser::feed`] in
/// whatever pieces the socket returns.
pub(crate) struct Parser {
    buf: Vec<u8>,
    pos: usize,
    max_payload: usize,
}

impl Parser {
    pub(crate) fn new(max_payload: usize) -> Parser {
        Parser {
            buf: Vec::with_capacity(WRITE_BUFFER),
            pos: 0,
            max_payload,
        }
    }

    /// Sets the payload limit (from INFO), capped at 64 MiB.
    pub(crate) fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max.min(MAX_PAYLOAD_CAP);
    }

    pub(crate) fn feed(&mut self, data: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= WRITE_BUFFER {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete operation, `Ok(None)` when more bytes are needed.
    pub(crate) fn next_op(&mut self) -> Result<Option<ServerOp>, NatsError> {
        let rest = &self.buf[self.pos..];
        let scan = &rest[..rest.len().min(MAX_INFO_LINE + 1)];
        let is_info = rest.len() >= 4 && rest[..4].eq_ignore_ascii_case(b"INFO");
        let limit = if is_info {
            MAX_INFO_LINE
        } else {
            MAX_CONTROL_LINE
        };
        let nl = match scan.iter().position(|&b| b == b'\n') {
            Some(i) if i <= limit => i,
            Some(_) => return Err(line_too_long(limit)),
            None if rest.len() > limit => return Err(line_too_long(limit)),
            None => return Ok(None),
        };
        let mut line = &rest[..nl];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| NatsError::Protocol("control line is not UTF-8".into()))?;
        let (op, args) = match line.find([' ', '\t']) {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        let after_line = nl + 1;
        let op = op.to_ascii_uppercase();
        let parsed = match op.as_str() {
            "MSG" | "HMSG" => {
                let Some((msg, sid, used)) =
                    parse_msg(op == "HMSG", args, &rest[after_line..], self.max_payload)?
                else {
                    return Ok(None);
                };
                self.pos += after_line + used;
                return Ok(Some(ServerOp::Msg { sid, msg }));
            }
            "INFO" => ServerOp::Info(args.to_string()),
            "PING" => ServerOp::Ping,
            "PONG" => ServerOp::Pong,
            "+OK" => ServerOp::Ok,
            "-ERR" => ServerOp::Err(args.trim_matches('\'').to_string()),
            _ => {
                return Err(NatsError::Protocol(format!(
                    "unknown operation from the server: {:?}",
                    truncate(line, 80)
                )))
            }
        };
        self.pos += after_line;
        Ok(Some(parsed))
    }
}

fn line_too_long(limit: usize) -> NatsError {
    NatsError::Protocol(format!(
        "control line from the server longer than {limit} bytes"
    ))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses the arguments of MSG/HMSG and, when all of it has arrived, its body. Returns the message,
/// its sid and the bytes of `body` used (payload and CRLF).
fn parse_msg(
    has_headers: bool,
    args: &str,
    body: &[u8],
    max_payload: usize,
) -> Result<Option<(Message, u64, usize)>, NatsError> {
    let bad = || NatsError::Protocol(format!("malformed MSG arguments {:?}", truncate(args, 80)));
    let parts: Vec<&str> = args.split_ascii_whitespace().collect();
    let n_sizes = if has_headers { 2 } else { 1 };
    if parts.len() != 2 + n_sizes && parts.len() != 3 + n_sizes {
        return Err(bad());
    }
    let subject = parts[0];
    let sid: u64 = parts[1].parse().map_err(|_| bad())?;
    let reply = (parts.len() == 3 + n_sizes).then(|| parts[2].to_string());
    let sizes = &parts[parts.len() - n_sizes..];
    let total: usize = sizes[n_sizes - 1].parse().map_err(|_| bad())?;
    let hdr_len: usize = if has_headers {
        sizes[0].parse().map_err(|_| bad())?
    } else {
        0
    };
    let limit = max_payload.saturating_add(PAYLOAD_SLACK);
    if total > limit {
        return Err(NatsError::Protocol(format!(
            "message of {total} bytes announced on {subject}, over the limit of {limit}"
        )));
    }
    if hdr_len > total {
        return Err(NatsError::Protocol(format!(
            "header length {hdr_len} larger than the message length {total} on {subject}"
        )));
    }
    if body.len() < total + 2 {
        return Ok(None);
    }
    if &body[total..total + 2] != b"\r\n" {
        return Err(NatsError::Protocol(format!(
            "message on {subject} not followed by CRLF after {total} bytes"
        )));
    }
    let mut msg = Message {
        subject: subject.to_string(),
        reply,
        payload: body[hdr_len..total].to_vec(),
        ..Message::default()
    };
    if has_headers {
        let (status, description, headers) = parse_headers(&body[..hdr_len])?;
        msg.status = status;
        msg.description = description;
        msg.headers = headers;
    }
    Ok(Some((msg, sid, total + 2)))
}

/// The headers block: `NATS/1.0[ status[ description]]\r\n(Name: value\r\n)*\r\n`.
pub(crate) type ParsedHeaders = (Option<u16>, Option<String>, Vec<(String, String)>);

/// Parses a headers block (also used for the base64 `hdrs` of JetStream's message get).
pub(crate) fn parse_headers(block: &[u8]) -> Result<ParsedHeaders, NatsError> {
    let text = String::from_utf8_lossy(block);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let Some(rest) = first.strip_prefix("NATS/1.0") else {
        return Err(NatsError::Protocol(format!(
            "headers do not start with NATS/1.0: {:?}",
            truncate(first, 40)
        )));
    };
    let rest = rest.trim();
    let (mut status, mut description) = (None, None);
    if !rest.is_empty() {
        let (code, desc) = rest.split_once(' ').unwrap_or((rest, ""));
        status = Some(code.parse::<u16>().map_err(|_| {
            NatsError::Protocol(format!("bad status {:?} in headers", truncate(code, 20)))
        })?);
        let desc = desc.trim();
        if !desc.is_empty() {
            description = Some(desc.to_string());
        }
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        // a line without a colon is not a header: skip it rather than drop the connection
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, description, headers))
}

/// Checks that a subject can be written in a control line.
pub(crate) fn check_subject(subject: &str) -> Result<(), NatsError> {
    let reason = if subject.is_empty() {
        "it is empty"
    } else if subject.bytes().any(|b| b <= b' ' || b == 0x7f) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(NatsError::InvalidSubject {
        subject: subject.to_string(),
        reason: reason.to_string(),
    })
}

fn check_header(name: &str, value: &str) -> Result<(), NatsError> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name.bytes().any(|b| b <= b' ' || b == b':' || b == 0x7f) {
        "the name contains ':', whitespace or control characters"
    } else if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        "the value contains CR or LF"
    } else {
        return Ok(());
    };
    Err(NatsError::InvalidHeader {
        name: name.to_string(),
        reason: reason.to_string(),
    })
}

/// Writes `n` in decimal without allocating.
fn write_usize(w: &mut impl Write, mut n: usize) -> io::Result<()> {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.write_all(&digits[i..])
}

/// A random token of `len` base62 characters (inboxes, object store nuids). Not cryptographic.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::with_capacity(len);
    let mut word = 0u64;
    for i in 0..len {
        if i % 10 == 0 {
            let mut h = state.build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            h.write_u32(std::process::id());
            word = h.finish();
        }
        out.push(ALPHABET[(word % 62) as usize] as char);
        word /= 62;
    }
    out
}

/// The parts of a NATS url.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    host: String,
    port: u16,
    user: Option<String>,
    pass: Option<String>,
    token: Option<String>,
}

fn parse_url(url: &str) -> Result<Url, NatsError> {
    let bad = |reason: &str| NatsError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let mut rest = url.trim();
    if let Some((scheme, r)) = rest.split_once("://") {
        if !scheme.eq_ignore_ascii_case("nats") {
            return Err(bad("only nats:// is supported (no TLS, no websocket)"));
        }
        rest = r;
    }
    let rest = rest.trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (user, pass, token) = match auth {
        None => (None, None, None),
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string()), None),
            None => (None, None, Some(a.to_string())),
        },
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        // [ipv6]:port
        let (h, p) = h
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' in the host"))?;
        (h, p.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
        None => DEFAULT_PORT,
    };
    Ok(Url {
        host: host.to_string(),
        port,
        user,
        pass,
        token,
    })
}

/// The socket's write side, shared by publishers under a mutex.
struct Writer {
    out: BufWriter<TcpStream>,
}

#[derive(Default)]
struct Routes {
    subs: HashMap<u64, Sender<Message>>,
    requests: HashMap<u64, Sender<Message>>,
    pongs: VecDeque<Sender<()>>,
}

/// State shared by the client handles, subscriptions and the reader thread.
struct Inner {
    addr: String,
    info: ServerInfo,
    max_payload: usize,
    writer: Mutex<Writer>,
    routes: Mutex<Routes>,
    closed: AtomicBool,
    next_sid: AtomicU64,
    next_request: AtomicU64,
    /// `_INBOX.<random>`; requests get replies on `<prefix>.<n>`, new inboxes are `<prefix>.i<n>`.
    inbox_prefix: String,
    request_sid: u64,
    socket: TcpStream,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic while holding one of these locks leaves consistent data: keep going
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn check_open(&self) -> Result<(), NatsError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(NatsError::Closed)
        } else {
            Ok(())
        }
    }

    /// Marks the connection dead, shuts the socket and drops every route (receivers see it).
    fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.socket.shutdown(Shutdown::Both);
        let mut r = lock(&self.routes);
        r.subs.clear();
        r.requests.clear();
        r.pongs.clear();
    }

    /// Runs `f` on the writer; a failed write kills the connection (a partial write leaves the
    /// stream unusable).
    fn write<T>(&self, f: impl FnOnce(&mut Writer) -> io::Result<T>) -> Result<T, NatsError> {
        self.check_open()?;
        let mut w = lock(&self.writer);
        self.check_open()?;
        match f(&mut w) {
            Ok(v) => Ok(v),
            Err(e) => {
                drop(w);
                let was_closed = self.closed.load(Ordering::SeqCst);
                self.mark_closed();
                Err(match e.kind() {
                    _ if was_closed => NatsError::Closed,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NatsError::Timeout {
                        what: format!(
                            "writing to NATS at {} (the server stopped reading; connection closed)",
                            self.addr
                        ),
                    },
                    io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::UnexpectedEof => NatsError::Closed,
                    _ => NatsError::Io(e),
                })
            }
        }
    }

    fn dispatch(&self, sid: u64, msg: Message) {
        let mut r = lock(&self.routes);
        // sends on unbounded channels (or a fresh bounded(1)) never block: fine under the lock
        if sid == self.request_sid {
            let token = msg.subject.rsplit('.').next().and_then(|t| t.parse().ok());
            if let Some(tx) = token.and_then(|t| r.requests.remove(&t)) {
                let _ = tx.send(msg);
            }
        } else if let Some(tx) = r.subs.get(&sid) {
            let _ = tx.send(msg);
        }
    }

    /// Handles one operation in the reader thread; Err ends the connection.
    fn handle(&self, op: ServerOp) -> Result<(), NatsError> {
        match op {
            ServerOp::Msg { sid, msg } => self.dispatch(sid, msg),
            ServerOp::Ping => self.write(|w| {
                w.out.write_all(b"PONG\r\n")?;
                w.out.flush()
            })?,
            ServerOp::Pong => {
                if let Some(tx) = lock(&self.routes).pongs.pop_front() {
                    let _ = tx.send(());
                }
            }
            ServerOp::Info(_) | ServerOp::Ok => {}
            ServerOp::Err(e) => {
                *lock(&self.last_error) = Some(e.clone());
                // permission errors leave the connection open; the server closes it after others
                if !e.to_ascii_lowercase().contains("permissions violation") {
                    return Err(NatsError::Server(e));
                }
            }
        }
        Ok(())
    }
}

fn reader_loop(inner: Arc<Inner>, mut stream: TcpStream, mut parser: Parser) {
    let mut buf = vec![0u8; WRITE_BUFFER];
    // operations already read during the handshake come first
    'outer: loop {
        loop {
            match parser.next_op() {
                Ok(Some(op)) => {
                    if let Err(e) = inner.handle(op) {
                        *lock(&inner.last_error) = Some(e.to_string());
                        break 'outer;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    *lock(&inner.last_error) = Some(e.to_string());
                    break 'outer;
                }
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => parser.feed(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    inner.mark_closed();
}

/// A connection to a NATS server; clones share it. Dropping the last clone closes it.
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

/// Closes the connection when the last [`Client`] goes.
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        close_inner(&self.inner);
    }
}

fn close_inner(inner: &Inner) {
    if !inner.closed.load(Ordering::SeqCst) {
        let _ = inner.write(|w| w.out.flush());
    }
    inner.mark_closed();
}

/// Reads from `stream` into `parser` until an operation other than +OK/INFO-after-first arrives.
fn handshake_read(
    stream: &mut TcpStream,
    parser: &mut Parser,
    addr: &str,
    what: &str,
) -> Result<ServerOp, NatsError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(op) = parser.next_op()? {
            return Ok(op);
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(NatsError::Protocol(format!(
                    "the server at {addr} closed the connection while {what}"
                )))
            }
            Ok(n) => parser.feed(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(NatsError::Timeout {
                    what: format!("{what} from {addr} (is it a NATS server?)"),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(NatsError::Io(e)),
        }
    }
}

#[derive(serde::Serialize)]
struct ConnectOptions<'a> {
    verbose: bool,
    pedantic: bool,
    headers: bool,
    no_responders: bool,
    name: &'a str,
    lang: &'a str,
    version: &'a str,
    protocol: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_token: Option<&'a str>,
}

impl Client {
    /// Connects to `url` ("nats://host:port", "host:port" or "host"; `user:pass@` or `token@`
    /// optional), reads INFO, sends CONNECT and waits for the PONG of a PING, all within `timeout`.
    pub fn connect(url: &str, name: &str, timeout: Duration) -> Result<Client, NatsError> {
        let u = parse_url(url)?;
        let addr = if u.host.contains(':') {
            format!("[{}]:{}", u.host, u.port)
        } else {
            format!("{}:{}", u.host, u.port)
        };
        let addrs: Vec<SocketAddr> = (u.host.as_str(), u.port)
            .to_socket_addrs()
            .map_err(|source| NatsError::Connect {
                addr: addr.clone(),
                source,
            })?
            .collect();
        let timeout = timeout.max(Duration::from_millis(1));
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let Some(mut stream) = stream else {
            return Err(NatsError::Connect { addr, source: last });
        };
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout.max(MIN_WRITE_TIMEOUT)))?;

        let mut parser = Parser::new(1024 * 1024);
        let info = match handshake_read(&mut stream, &mut parser, &addr, "waiting for INFO")? {
            ServerOp::Info(json) => serde_json::from_str::<ServerInfo>(&json).map_err(|e| {
                NatsError::Protocol(format!("bad INFO from {addr}: {e} (is it a NATS server?)"))
            })?,
            other => {
                return Err(NatsError::Protocol(format!(
                    "expected INFO from {addr}, got {other:?} (is it a NATS server?)"
                )))
            }
        };
        if info.tls_required {
            return Err(NatsError::Protocol(format!(
                "the server at {addr} requires TLS, which this client does not speak: use a plain listener"
            )));
        }
        if !info.headers {
            return Err(NatsError::Protocol(format!(
                "the server at {addr} does not support headers: use nats-server 2.2 or later"
            )));
        }
        let max_payload = if info.max_payload == 0 {
            1024 * 1024
        } else {
            info.max_payload.min(MAX_PAYLOAD_CAP)
        };
        parser.set_max_payload(max_payload);

        let opts = ConnectOptions {
            verbose: false,
            pedantic: false,
            headers: true,
            no_responders: true,
            name,
            lang: "rust-floodwatch",
            version: env!("CARGO_PKG_VERSION"),
            protocol: 1,
            user: u.user.as_deref(),
            pass: u.pass.as_deref(),
            auth_token: u.token.as_deref(),
        };
        let json = serde_json::to_string(&opts)
            .map_err(|e| NatsError::Protocol(format!("cannot encode CONNECT: {e}")))?;
        let inbox_prefix = format!("_INBOX.{}", random_token(22));
        let request_sid = 1;
        let hello = format!("CONNECT {json}\r\nSUB {inbox_prefix}.* {request_sid}\r\nPING\r\n");
        stream.write_all(hello.as_bytes())?;
        loop {
            match handshake_read(&mut stream, &mut parser, &addr, "waiting for PONG")? {
                ServerOp::Pong => break,
                ServerOp::Err(e) => {
                    return Err(NatsError::Server(format!(
                        "{e} (from {addr} during CONNECT: check the user, password or token in the url)"
                    )))
                }
                ServerOp::Ping => stream.write_all(b"PONG\r\n")?,
                ServerOp::Ok | ServerOp::Info(_) => {}
                ServerOp::Msg { .. } => {
                    return Err(NatsError::Protocol(format!(
                        "message from {addr} before the connection was set up"
                    )))
                }
            }
        }
        stream.set_read_timeout(None)?;
        let read_half = stream.try_clone()?;
        let socket = stream.try_clone()?;
        let inner = Arc::new(Inner {
            addr,
            info,
            max_payload,
            writer: Mutex::new(Writer {
                out: BufWriter::with_capacity(WRITE_BUFFER, stream),
            }),
            routes: Mutex::new(Routes::default()),
            closed: AtomicBool::new(false),
            next_sid: AtomicU64::new(request_sid + 1),
            next_request: AtomicU64::new(1),
            inbox_prefix,
            request_sid,
            socket,
            last_error: Mutex::new(None),
        });
        let reader = Arc::clone(&inner);
        thread::Builder::new()
            .name("nats-reader".into())
            .spawn(move || reader_loop(reader, read_half, parser))?;
        Ok(Client {
            handle: Arc::new(Handle { inner }),
        })
    }

    fn inner(&self) -> &Inner {
        &self.handle.inner
    }

    /// The server's address as connected ("host:port").
    pub fn server_addr(&self) -> String {
        self.inner().addr.clone()
    }

    /// The server's INFO at connect time.
    pub fn server_info(&self) -> &ServerInfo {
        &self.inner().info
    }

    /// The largest payload (headers included) the server accepts.
    pub fn max_payload(&self) -> usize {
        self.inner().max_payload
    }

    /// The last -ERR or protocol error seen on the connection, if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.inner().last_error).clone()
    }

    /// Buffers a message (sent when the buffer fills or on [`Client::flush_writes`]).
    pub fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), NatsError> {
        self.publish_with_headers(subject, None, &[], payload)
    }

    /// Buffers a message with a reply subject and headers (HPUB; plain PUB without headers).
    pub fn publish_with_headers(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), NatsError> {
        check_subject(subject)?;
        if let Some(r) = reply {
            check_subject(r)?;
        }
        let mut hdr_len = 0;
        if !headers.is_empty() {
            hdr_len = b"NATS/1.0\r\n\r\n".len();
            for (k, v) in headers {
                check_header(k, v)?;
                hdr_len += k.len() + 2 + v.len() + 2;
            }
        }
        let total = hdr_len + payload.len();
        let max = self.inner().max_payload;
        if total > max {
            return Err(NatsError::TooLarge { size: total, max });
        }
        self.inner().write(|w| {
            let o = &mut w.out;
            o.write_all(if headers.is_empty() {
                b"PUB "
            } else {
                b"HPUB "
            })?;
            o.write_all(subject.as_bytes())?;
            o.write_all(b" ")?;
            if let Some(r) = reply {
                o.write_all(r.as_bytes())?;
                o.write_all(b" ")?;
            }
            if !headers.is_empty() {
                write_usize(o, hdr_len)?;
                o.write_all(b" ")?;
            }
            write_usize(o, total)?;
            o.write_all(b"\r\n")?;
            if !headers.is_empty() {
                o.write_all(b"NATS/1.0\r\n")?;
                for (k, v) in headers {
                    o.write_all(k.as_bytes())?;
                    o.write_all(b": ")?;
                    o.write_all(v.as_bytes())?;
                    o.write_all(b"\r\n")?;
                }
                o.write_all(b"\r\n")?;
            }
            o.write_all(payload)?;
            o.write_all(b"\r\n")
        })
    }

    /// Writes the buffered bytes to the socket (no round trip).
    pub fn flush_writes(&self) -> Result<(), NatsError> {
        self.inner().write(|w| w.out.flush())
    }

    /// Sends the buffered bytes and waits until the server has processed them (PING/PONG).
    pub fn flush(&self, timeout: Duration) -> Result<(), NatsError> {
        let inner = self.inner();
        let (tx, rx) = crossbeam_channel::bounded(1);
        inner.write(|w| {
            {
                let mut r = lock(&inner.routes);
                if inner.closed.load(Ordering::SeqCst) {
                    return Err(io::Error::new(io::ErrorKind::NotConnected, "closed"));
                }
                r.pongs.push_back(tx);
            }
            w.out.write_all(b"PING\r\n")?;
            w.out.flush()
        })?;
        match rx.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => Err(NatsError::Closed),
            Err(RecvTimeoutError::Timeout) => Err(NatsError::Timeout {
                what: format!("waiting for PONG from NATS at {}", inner.addr),
            }),
        }
    }

    /// Subscribes to `subject` (wildcards allowed).
    pub fn subscribe(&self, subject: &str) -> Result<Subscription, NatsError> {
        check_subject(subject)?;
        let inner = self.inner();
        let sid = inner.next_sid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::unbounded();
        {
            let mut r = lock(&inner.routes);
            inner.check_open()?;
            r.subs.insert(sid, tx);
        }
        let sent = inner.write(|w| {
            w.out.write_all(b"SUB ")?;
            w.out.write_all(subject.as_bytes())?;
            w.out.write_all(b" ")?;
            write_usize(&mut w.out, sid as usize)?;
            w.out.write_all(b"\r\n")?;
            w.out.flush()
        });
        if let Err(e) = sent {
            lock(&inner.routes).subs.remove(&sid);
            return Err(e);
        }
        Ok(Subscription {
            client: self.clone(),
            sid,
            subject: subject.to_string(),
            rx,
        })
    }

    /// A fresh inbox subject: `_INBOX.<random>.<n>`.
    pub fn new_inbox(&self) -> String {
        let n = self.inner().next_request.fetch_add(1, Ordering::Relaxed);
        format!("{}.i{n}", self.inner().inbox_prefix)
    }

    /// Sends a request and waits for the first reply; a 503 status → [`NatsError::NoResponders`].
    pub fn request(
        &self,
        subject: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, NatsError> {
        self.request_with_headers(subject, &[], payload, timeout)
    }

    /// [`Client::request`] with headers.
    pub fn request_with_headers(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, NatsError> {
        let inner = self.inner();
        let token = inner.next_request.fetch_add(1, Ordering::Relaxed);
        let reply = format!("{}.{token}", inner.inbox_prefix);
        let (tx, rx) = crossbeam_channel::bounded(1);
        {
            let mut r = lock(&inner.routes);
            inner.check_open()?;
            r.requests.insert(token, tx);
        }
        let sent = self
            .publish_with_headers(subject, Some(&reply), headers, payload)
            .and_then(|()| self.flush_writes());
        if let Err(e) = sent {
            lock(&inner.routes).requests.remove(&token);
            return Err(e);
        }
        let deadline = Instant::now() + timeout;
        let got = rx.recv_deadline(deadline);
        match got {
            Ok(m) if m.status == Some(503) => Err(NatsError::NoResponders {
                subject: subject.to_string(),
            }),
            Ok(m) => Ok(m),
            Err(RecvTimeoutError::Disconnected) => Err(NatsError::Closed),
            Err(RecvTimeoutError::Timeout) => {
                lock(&inner.routes).requests.remove(&token);
                inner.check_open()?;
                Err(NatsError::Timeout {
                    what: format!(
                        "after {timeout:?} waiting for a reply on {subject} from NATS at {}",
                        inner.addr
                    ),
                })
            }
        }
    }

    /// True once the connection is gone (EOF, error, or [`Client::close`]).
    pub fn is_closed(&self) -> bool {
        self.inner().closed.load(Ordering::SeqCst)
    }

    /// Sends what is buffered and closes the connection (all clones).
    pub fn close(&self) {
        close_inner(self.inner());
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner().addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Messages on one subject; unsubscribes when dropped.
pub struct Subscription {
    client: Client,
    sid: u64,
    subject: String,
    rx: Receiver<Message>,
}

impl Subscription {
    /// The next message within `timeout`; `Ok(None)` on timeout, `Err(Closed)` once the connection
    /// is gone and nothing is left queued.
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Message>, NatsError> {
        match self.rx.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(NatsError::Closed),
        }
    }

    /// A queued message without waiting.
    pub fn try_next(&self) -> Result<Option<Message>, NatsError> {
        match self.rx.try_recv() {
            Ok(m) => Ok(Some(m)),
            Err(crossbeam_channel::TryRecvError::Empty) => Ok(None),
            Err(crossbeam_channel::TryRecvError::Disconnected) => Err(NatsError::Closed),
        }
    }

    /// The subject subscribed to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The client this subscription is on.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let inner = self.client.inner();
        lock(&inner.routes).subs.remove(&self.sid);
        if !inner.closed.load(Ordering::SeqCst) {
            let sid = self.sid as usize;
            let _ = inner.write(|w| {
                w.out.write_all(b"UNSUB ")?;
                write_usize(&mut w.out, sid)?;
                w.out.write_all(b"\r\n")?;
                w.out.flush()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_ops(p: &mut Parser) -> Result<Vec<ServerOp>, NatsError> {
        let mut v = Vec::new();
        while let Some(op) = p.next_op()? {
            v.push(op);
        }
        Ok(v)
    }

    const STREAM: &[u8] = b"INFO {\"max_payload\":1048576}\r\nPING\r\n+OK\r\nMSG a.b 7 5\r\nhello\r\nMSG a.b 8 reply.x 0\r\n\r\nHMSG _INBOX.x.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nHMSG s 2 r 34 37\r\nNATS/1.0\r\nA: 1\r\nLong-Name: x y\r\n\r\nabc\r\nPONG\r\n-ERR 'Unknown Protocol Operation'\r\n";

    fn expected() -> Vec<ServerOp> {
        vec![
            ServerOp::Info("{\"max_payload\":1048576}".into()),
            ServerOp::Ping,
            ServerOp::Ok,
            ServerOp::Msg {
                sid: 7,
                msg: Message {
                    subject: "a.b".into(),
                    payload: b"hello".to_vec(),
                    ..Message::default()
                },
            },
            ServerOp::Msg {
                sid: 8,
                msg: Message {
                    subject: "a.b".into(),
                    reply: Some("reply.x".into()),
                    ..Message::default()
                },
            },
            ServerOp::Msg {
                sid: 1,
                msg: Message {
                    subject: "_INBOX.x.1".into(),
                    status: Some(503),
                    ..Message::default()
                },
            },
            ServerOp::Msg {
                sid: 2,
                msg: Message {
                    subject: "s".into(),
                    reply: Some("r".into()),
                    headers: vec![("A".into(), "1".into()), ("Long-Name".into(), "x y".into())],
                    payload: b"abc".to_vec(),
                    ..Message::default()
                },
            },
            ServerOp::Pong,
            ServerOp::Err("Unknown Protocol Operation".into()),
        ]
    }

    #[test]
    fn parses_a_stream_in_one_piece() {
        let mut p = Parser::new(1 << 20);
        p.feed(STREAM);
        assert_eq!(all_ops(&mut p).unwrap(), expected());
    }

    #[test]
    fn parses_a_stream_split_at_every_byte_and_in_odd_pieces() {
        for step in [1, 2, 3, 7, 13, 64] {
            let mut p = Parser::new(1 << 20);
            let mut got = Vec::new();
            for chunk in STREAM.chunks(step) {
                p.feed(chunk);
                got.extend(all_ops(&mut p).unwrap());
            }
            assert_eq!(got, expected(), "pieces of {step} bytes");
        }
    }

    #[test]
    fn status_with_description_and_pending_headers() {
        let block = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\nNats-Pending-Bytes: 0\r\n\r\n";
        let (status, desc, headers) = parse_headers(block).unwrap();
        assert_eq!(status, Some(408));
        assert_eq!(desc.as_deref(), Some("Request Timeout"));
        assert_eq!(headers[0], ("Nats-Pending-Messages".into(), "3".into()));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"HELLO world\r\n"[..],
            b"MSG a\r\n",
            b"MSG a notanumber 3\r\nabc\r\n",
            b"MSG a 1 -5\r\n",
            b"MSG a 1 3\r\nabcXY",
            b"HMSG a 1 10 5\r\n0123456789\r\n",
            b"HMSG a 1 5 5\r\nXATS/\r\n",
            b"HMSG a 1 14 14\r\nNATS/1.0 abc\r\n\r\n",
            b"\xff\xfe\r\n",
            b"MSG a 1 99999999999999999999999\r\n",
        ] {
            let mut p = Parser::new(1 << 20);
            p.feed(bad);
            assert!(
                matches!(p.next_op(), Err(NatsError::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn oversize_lengths_and_lines_are_errors_without_allocating() {
        let mut p = Parser::new(1024);
        p.feed(b"MSG a 1 2000000000\r\n");
        assert!(matches!(p.next_op(), Err(NatsError::Protocol(m)) if m.contains("limit")));

        let mut p = Parser::new(1024);
        p.feed(b"MSG ");
        p.feed(&[b'a'; 5000]);
        assert!(matches!(p.next_op(), Err(NatsError::Protocol(m)) if m.contains("longer")));

        // an unfinished line below the limit just waits for more
        let mut p = Parser::new(1024);
        p.feed(b"MSG a 1 3\r\nab");
        assert!(p.next_op().unwrap().is_none());
        p.feed(b"c\r\n");
        assert!(matches!(p.next_op().unwrap(), Some(ServerOp::Msg { .. })));
    }

    /// A fake server on loopback that runs `script` on the accepted connection.
    fn fake_server(script: impl FnOnce(TcpStream) + Send + 'static) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                script(s);
            }
        });
        addr
    }

    /// Sends INFO and answers the client's PING once CONNECT arrived.
    fn greet(s: &mut TcpStream) {
        s.write_all(b"INFO {\"max_payload\":1024,\"headers\":true}\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"PING\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "client hung up");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"PONG\r\n").unwrap();
    }

    #[test]
    fn a_server_that_is_not_nats_fails_the_connect_naming_it() {
        let addr = fake_server(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            thread::sleep(Duration::from_millis(200));
        });
        let err = Client::connect(&addr, "t", Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, NatsError::Protocol(_)), "{err:?}");

        let addr = fake_server(|_s| thread::sleep(Duration::from_millis(500)));
        let err = Client::connect(&addr, "t", Duration::from_millis(100)).unwrap_err();
        assert!(
            matches!(&err, NatsError::Timeout { what } if what.contains(&addr)),
            "{err:?}"
        );

        let addr = fake_server(|mut s| {
            s.write_all(b"INFO {\"headers\":true}\r\n").unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"-ERR 'Authorization Violation'\r\n");
        });
        let err = Client::connect(&addr, "t", Duration::from_secs(2)).unwrap_err();
        assert!(
            matches!(&err, NatsError::Server(m) if m.contains("Authorization")),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_after_connect_closes_the_client_without_a_panic() {
        for garbage in [
            &b"MSG a 1 999999999\r\n"[..],
            b"\x00\x01\x02 nonsense\r\n",
            b"HMSG a 1 3 3\r\nabc\r\n",
        ] {
            let (tx, rx) = crossbeam_channel::bounded::<()>(1);
            let addr = fake_server(move |mut s| {
                greet(&mut s);
                let _ = rx.recv();
                let _ = s.write_all(garbage);
                thread::sleep(Duration::from_millis(500));
            });
            let c = Client::connect(&addr, "t", Duration::from_secs(2)).unwrap();
            assert_eq!(c.max_payload(), 1024);
            let sub = c.subscribe("a").unwrap();
            tx.send(()).unwrap();
            assert!(matches!(
                sub.next_timeout(Duration::from_secs(2)),
                Err(NatsError::Closed)
            ));
            assert!(c.is_closed());
            assert!(c.last_error().is_some());
            assert!(matches!(c.publish("a", b""), Err(NatsError::Closed)));
        }
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Client>();
        check::<Subscription>();
    }

    #[test]
    fn urls() {
        let u = parse_url("nats://u:p@example.org:4333").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.as_deref(),
                u.pass.as_deref()
            ),
            ("example.org", 4333, Some("u"), Some("p"))
        );
        let u = parse_url("tok@localhost").unwrap();
        assert_eq!((u.port, u.token.as_deref()), (4222, Some("tok")));
        assert_eq!(parse_url("127.0.0.1:5").unwrap().port, 5);
        assert_eq!(parse_url("[::1]:6").unwrap().host, "::1");
        assert!(matches!(parse_url("tls://x"), Err(NatsError::Url { .. })));
        assert!(matches!(
            parse_url("nats://x:99999"),
            Err(NatsError::Url { .. })
        ));
        assert!(matches!(parse_url("nats://"), Err(NatsError::Url { .. })));
    }

    #[test]
    fn subjects_and_numbers() {
        assert!(check_subject("a.b.>").is_ok());
        assert!(check_subject("a b").is_err());
        assert!(check_subject("a\r\nPUB x").is_err());
        assert!(check_header("Nats-Msg-Id", "x").is_ok());
        assert!(check_header("A:B", "x").is_err());
        assert!(check_header("A", "x\r\nB: y").is_err());
        let mut v = Vec::new();
        for n in [0usize, 7, 10, 123456789, usize::MAX] {
            v.clear();
            write_usize(&mut v, n).unwrap();
            assert_eq!(String::from_utf8(v.clone()).unwrap(), n.to_string());
        }
        let t = random_token(22);
        assert_eq!(t.len(), 22);
        assert_ne!(t, random_token(22));
    }
}
