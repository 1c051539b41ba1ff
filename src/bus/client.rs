//! The bus's connection to NATS, through the official client `async-nats`, behind a synchronous
//! facade: a [`Client`] owns a small tokio runtime (two worker threads) and every call blocks the
//! calling thread until the runtime has answered, so the rest of floodwatch stays plain threads.
//!
//! What the connection is allowed to do comes from [`NatsOptions`]: TLS (`tls://` URLs, a CA
//! file, a client certificate), and one way to authenticate (a creds file, an nkey seed file, a
//! user with a password file, a token file) — secrets are read from files, never taken from the
//! command line. Each refusal at start names what failed and the option that fixes it.
//!
//! The JetStream side (streams, pull consumers, the key-value bucket, the object store and the
//! acknowledged publisher) is in [`super::store`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{ConnectErrorKind, ConnectOptions, HeaderMap};
use tokio::runtime::Runtime;

/// Errors of the bus's NATS connection and of its JetStream use.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(
        "cannot connect to NATS at {url}: {reason}: is nats-server running there? (start one: nats-server -js)"
    )]
    Connect { url: String, reason: String },
    #[error("TLS with the NATS server at {url} failed: {reason}. {hint}")]
    Tls {
        url: String,
        reason: String,
        hint: &'static str,
    },
    #[error("the NATS server at {url} refused this node's credentials ({reason}): {hint}")]
    Auth {
        url: String,
        reason: String,
        hint: String,
    },
    #[error("{option} {}: {reason}", path.display())]
    File {
        option: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Options(String),
    #[error("cannot start the NATS client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("timed out {what}")]
    Timeout { what: String },
    #[error("the NATS connection is closed: {what}")]
    Closed { what: String },
    #[error("JetStream error {code} (err_code {err_code}): {description}")]
    JetStream {
        code: u16,
        err_code: u32,
        description: String,
    },
    #[error(
        "JetStream is not enabled on the NATS server at {url}: start nats-server with -js (or jetstream {{}} in its config)"
    )]
    JetStreamNotEnabled { url: String },
    #[error("{what} on NATS at {url}: {reason}")]
    Failed {
        what: String,
        url: String,
        reason: String,
    },
}

/// How a node connects to NATS: the server and what it proves itself with.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// `nats://HOST:PORT` or `tls://HOST:PORT` (several, comma-separated, for a NATS cluster).
    pub url: String,
    /// The connection's name, as the server's monitoring shows it.
    pub name: String,
    /// CA certificate(s) (PEM) that signed the server's certificate; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and its key (PEM), for servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A `.creds` file (user JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// A file holding a user nkey seed (`SU...`).
    pub nkey: Option<PathBuf>,
    /// A user name, with its password in `password_file`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A file holding an authentication token.
    pub token_file: Option<PathBuf>,
}

impl NatsOptions {
    /// A plain connection to `url` named `name`.
    pub fn new(url: &str, name: &str) -> NatsOptions {
        NatsOptions {
            url: url.to_string(),
            name: name.to_string(),
            ..NatsOptions::default()
        }
    }

    /// The same options under another connection name.
    pub fn named(&self, name: &str) -> NatsOptions {
        NatsOptions {
            name: name.to_string(),
            ..self.clone()
        }
    }

    fn wants_tls(&self) -> bool {
        self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self
                .url
                .split(',')
                .any(|u| u.trim().to_ascii_lowercase().starts_with("tls://"))
    }
}

/// Reads a secret (or PEM) file, naming `option` when it cannot.
fn read_file(option: &'static str, path: &Path) -> Result<String, NatsError> {
    let text = std::fs::read_to_string(path).map_err(|e| NatsError::File {
        option,
        path: path.to_path_buf(),
        reason: format!("cannot read it: {e}"),
    })?;
    Ok(text)
}

/// A PEM file holding a block with `label` in its `-----BEGIN` line.
fn check_pem(option: &'static str, path: &Path, label: &str, what: &str) -> Result<(), NatsError> {
    let text = read_file(option, path)?;
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains(label));
    if found {
        Ok(())
    } else {
        Err(NatsError::File {
            option,
            path: path.to_path_buf(),
            reason: format!("no PEM {what} in it (expected a -----BEGIN {label}----- block)"),
        })
    }
}

/// One line of a secret file, without its line end; empty is an error.
fn read_secret(option: &'static str, path: &Path) -> Result<String, NatsError> {
    let text = read_file(option, path)?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(NatsError::File {
            option,
            path: path.to_path_buf(),
            reason: "it is empty".to_string(),
        });
    }
    Ok(secret)
}

/// How long to wait before connection attempt `attempts` (async-nats asks before the first one
/// too: none then, nor for the first reconnection; then 100 ms more each time, at most 500 ms).
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        Duration::ZERO
    } else {
        Duration::from_millis((attempts as u64 * 100).min(500))
    }
}

/// The async-nats options for `o`: files read and checked now, so a bad one is named at start.
fn connect_options(o: &NatsOptions, timeout: Duration) -> Result<ConnectOptions, NatsError> {
    let ways = [
        o.creds.is_some(),
        o.nkey.is_some(),
        o.user.is_some(),
        o.token_file.is_some(),
    ];
    if ways.iter().filter(|w| **w).count() > 1 {
        return Err(NatsError::Options(
            "give one way to authenticate to NATS: --nats-creds, --nats-nkey, --nats-user (with --nats-password-file) or --nats-token-file".to_string(),
        ));
    }
    // a creds file makes the options (it carries the user's JWT and seed)
    let base = match &o.creds {
        Some(path) => {
            let text = read_file("--nats-creds", path)?;
            ConnectOptions::with_credentials(&text).map_err(|e| NatsError::File {
                option: "--nats-creds",
                path: path.clone(),
                reason: format!("not a NATS credentials file: {e}"),
            })?
        }
        None => ConnectOptions::new(),
    };
    let mut opts = base
        .name(&o.name)
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        // reconnect forever, soon: a publisher keeps its batches meanwhile
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay);
    if let Some(path) = &o.nkey {
        let seed = read_secret("--nats-nkey", path)?;
        if !seed.starts_with("SU") {
            return Err(NatsError::File {
                option: "--nats-nkey",
                path: path.clone(),
                reason: "not a user nkey seed (it starts with SU; make one with `nk -gen user`)"
                    .to_string(),
            });
        }
        opts = opts.nkey(seed);
    }
    match (&o.user, &o.password_file) {
        (Some(user), Some(path)) => {
            let password = read_secret("--nats-password-file", path)?;
            opts = opts.user_and_password(user.clone(), password);
        }
        (Some(_), None) => {
            return Err(NatsError::Options(
                "--nats-user needs --nats-password-file FILE (the password is never taken from the command line)".to_string(),
            ))
        }
        (None, Some(_)) => {
            return Err(NatsError::Options(
                "--nats-password-file needs --nats-user NAME".to_string(),
            ))
        }
        (None, None) => {}
    }
    if let Some(path) = &o.token_file {
        opts = opts.token(read_secret("--nats-token-file", path)?);
    }
    if let Some(ca) = &o.tls_ca {
        check_pem("--nats-tls-ca", ca, "CERTIFICATE", "certificate")?;
        opts = opts.add_root_certificates(ca.clone());
    }
    match (&o.tls_cert, &o.tls_key) {
        (Some(cert), Some(key)) => {
            check_pem("--nats-tls-cert", cert, "CERTIFICATE", "certificate")?;
            check_pem("--nats-tls-key", key, "PRIVATE KEY", "private key")?;
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        (None, None) => {}
        _ => {
            return Err(NatsError::Options(
                "--nats-tls-cert and --nats-tls-key go together (the client certificate and its private key)".to_string(),
            ))
        }
    }
    if o.wants_tls() {
        opts = opts.require_tls(true);
    }
    Ok(opts)
}

/// Why a connection attempt failed, in words that say what to change.
fn connect_error(o: &NatsOptions, e: async_nats::ConnectError) -> NatsError {
    let url = o.url.clone();
    let reason = e.to_string();
    let lower = reason.to_ascii_lowercase();
    let tls_failed = ["tls", "certificate", "handshake", "alert"]
        .iter()
        .any(|w| lower.contains(w));
    let plain_server = o.wants_tls()
        && [
            "corrupt message",
            "invalidcontenttype",
            "not support tls",
            "tls not",
        ]
        .iter()
        .any(|w| lower.contains(w));
    match e.kind() {
        _ if plain_server => NatsError::Tls {
            url,
            reason,
            hint: "The server does not seem to speak TLS: enable tls {} in its config, or connect with a nats:// URL and no --nats-tls-* option",
        },
        ConnectErrorKind::Tls | ConnectErrorKind::Io if tls_failed => NatsError::Tls {
            url,
            reason,
            hint: if o.tls_ca.is_none() {
                "The server speaks TLS: give the CA that signed its certificate with --nats-tls-ca FILE (and a client certificate with --nats-tls-cert/--nats-tls-key if it verifies clients)"
            } else if o.tls_cert.is_none() {
                "Check that --nats-tls-ca signed the server's certificate and that the URL's host is in it; if the server verifies clients, add --nats-tls-cert FILE --nats-tls-key FILE"
            } else {
                "Check that --nats-tls-ca signed the server's certificate (and the URL's host is in it), and that the server trusts the CA of --nats-tls-cert"
            },
        },
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            let hint = match (&o.creds, &o.nkey, &o.user, &o.token_file) {
                (Some(p), ..) => format!("check the credentials in --nats-creds {}", p.display()),
                (_, Some(p), ..) => format!("check the seed in --nats-nkey {} and that the server knows its public key", p.display()),
                (_, _, Some(u), _) => format!("check user {u:?} and --nats-password-file"),
                (_, _, _, Some(p)) => format!("check the token in --nats-token-file {}", p.display()),
                _ => "the server wants credentials: give --nats-creds, --nats-nkey, --nats-user with --nats-password-file, or --nats-token-file".to_string(),
            };
            NatsError::Auth { url, reason, hint }
        }
        ConnectErrorKind::Tls => NatsError::Tls {
            url,
            reason,
            hint: "The server requires TLS: connect with a tls:// URL and give its CA with --nats-tls-ca FILE (and --nats-tls-cert/--nats-tls-key if it verifies clients)",
        },
        _ => NatsError::Connect { url, reason },
    }
}

struct Inner {
    rt: Runtime,
    client: async_nats::Client,
    url: String,
}

/// A connection to NATS with the runtime that drives it; clones share both.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Client {
    /// Connects (within `timeout`): a refused TLS handshake, credentials or file is an error now;
    /// a connection lost later is re-established in the background.
    pub fn connect(o: &NatsOptions, timeout: Duration) -> Result<Client, NatsError> {
        let opts = connect_options(o, timeout)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("floodwatch-nats")
            .enable_all()
            .build()
            .map_err(NatsError::Runtime)?;
        let url = o.url.clone();
        // several servers of a NATS cluster: comma-separated
        let mut servers = Vec::new();
        for u in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let addr = u.parse::<async_nats::ServerAddr>().map_err(|e| {
                NatsError::Options(format!(
                    "bad NATS URL {u:?}: {e} (expected nats://HOST:PORT or tls://HOST:PORT)"
                ))
            })?;
            servers.push(addr);
        }
        let client = rt
            .block_on(async {
                tokio::time::timeout(timeout + Duration::from_secs(1), opts.connect(servers)).await
            })
            .map_err(|_| NatsError::Connect {
                url: url.clone(),
                reason: format!("no answer within {timeout:?}"),
            })?
            .map_err(|e| connect_error(o, e))?;
        Ok(Client {
            inner: Arc::new(Inner { rt, client, url }),
        })
    }

    /// The URL connected to (for messages).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Runs `f` on the bus's runtime and waits for it.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.inner.rt.block_on(f)
    }

    /// Makes the bus's runtime current on this thread while the guard lives (for async-nats
    /// calls that spawn tasks).
    pub(crate) fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.inner.rt.enter()
    }

    /// The async-nats client (for [`super::store`]).
    pub(crate) fn raw(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// Connected now (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        self.inner.client.connection_state() == State::Connected
    }

    /// Publishes a plain message with headers (no acknowledgement); [`Client::flush`] sends it.
    pub fn publish_with_headers(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), NatsError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        let client = self.raw();
        self.block_on(client.publish_with_headers(
            subject.to_string(),
            map,
            payload.to_vec().into(),
        ))
        .map_err(|e| self.failed(&format!("publishing on {subject}"), e))
    }

    /// Waits until what was published is written to the server.
    pub fn flush(&self) -> Result<(), NatsError> {
        let client = self.raw();
        self.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.flush()).await })
            .map_err(|_| NatsError::Timeout {
                what: format!("flushing to NATS at {}", self.url()),
            })?
            .map_err(|e| self.failed("flushing", e))
    }

    pub(crate) fn failed(&self, what: &str, e: impl std::fmt::Display) -> NatsError {
        NatsError::Failed {
            what: what.to_string(),
            url: self.inner.url.clone(),
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_before_connecting() {
        let dir = std::env::temp_dir().join(format!("fw-nats-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Duration::from_secs(1);
        // the error `o` is refused with names every one of `words`
        let refused = |o: &NatsOptions, words: &[&str]| {
            let e = connect_options(o, t).err().unwrap().to_string();
            assert!(words.iter().all(|w| e.contains(w)), "{e}");
        };
        let mut o = NatsOptions::new("nats://127.0.0.1:1", "t");
        o.user = Some("u".into());
        refused(&o, &["--nats-password-file"]);
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        o.password_file = Some(empty.clone());
        refused(&o, &["empty", "--nats-password-file"]);
        let mut o = NatsOptions::new("nats://127.0.0.1:1", "t");
        o.tls_ca = Some(empty.clone());
        refused(&o, &["--nats-tls-ca", "CERTIFICATE"]);
        let mut o = NatsOptions::new("nats://127.0.0.1:1", "t");
        o.nkey = Some(dir.join("missing"));
        refused(&o, &["--nats-nkey", "missing"]);
        o.token_file = Some(empty);
        refused(&o, &["one way"]);
        assert!(NatsOptions::new("tls://h:1", "t").wants_tls());
        assert!(!NatsOptions::new("nats://h:1", "t").wants_tls());
        let _ = std::fs::remove_dir_all(dir);
    }
}
