//! The Prometheus text endpoint (`--metrics-listen`): one small thread answering `GET /metrics`
//! over plain HTTP/1.1, one connection at a time, with read/write timeouts and a request cap.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Metrics;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot listen for metrics on {addr}: {source} (pick a free port, or 127.0.0.1:0 for any)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("`{0}` is not a listen address: use PORT (loopback), IP:PORT or [IPv6]:PORT")]
    BadAddress(String),
}

/// Parses `--metrics-listen`: a bare `PORT` (or `:PORT`) listens on loopback; otherwise `IP:PORT`.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, MetricsError> {
    let t = s.trim();
    let port = t.strip_prefix(':').unwrap_or(t);
    if let Ok(p) = port.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p));
    }
    t.parse()
        .map_err(|_| MetricsError::BadAddress(s.to_owned()))
}

/// Longest request read (request line and headers).
pub(super) const MAX_REQUEST: usize = 8192;
/// How long one client may take to send its whole request, or to take each part of the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the idle server checks whether it should stop.
const POLL: Duration = Duration::from_millis(50);

/// The `/metrics` endpoint: one thread, one connection at a time.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and starts answering. Nothing listens unless this is called.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer, MetricsError> {
        let bind_err = |source| MetricsError::Bind { addr, source };
        let listener = TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fw-metrics".into())
            .spawn(move || serve(&listener, &metrics, &flag))
            .map_err(bind_err)?;
        Ok(MetricsServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn serve(listener: &TcpListener, metrics: &Metrics, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // A client that misbehaves only loses its own answer.
                let _ = answer(stream, metrics);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Reads one request and writes one response, then closes the connection.
fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let (status, body) = match read_request(&mut stream, IO_TIMEOUT)? {
        Some(head) => route(&head, metrics),
        None => ("431 Request Header Fields Too Large", String::new()),
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The request head (up to the blank line), or `None` when it exceeds [`MAX_REQUEST`]. The whole
/// head must arrive within `limit`: a per-read timeout alone would let a client that sends a byte
/// every second hold the only server thread for hours.
pub(super) fn read_request(
    stream: &mut TcpStream,
    limit: Duration,
) -> std::io::Result<Option<String>> {
    let deadline = std::time::Instant::now() + limit;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() >= MAX_REQUEST {
            return Ok(None);
        }
        let n = match stream.read(&mut chunk) {
            // A read timeout is WouldBlock on Unix, TimedOut on Windows.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::ErrorKind::TimedOut.into())
            }
            r => r?,
        };
        if n == 0 {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Status line and body for a request head.
pub(super) fn route(head: &str, metrics: &Metrics) -> (&'static str, String) {
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let method = words.next().unwrap_or_default();
    let target = words.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", metrics.render()),
        ("GET", _) => ("404 Not Found", "not found: try /metrics\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "only GET /metrics is served\n".to_owned(),
        ),
    }
}
