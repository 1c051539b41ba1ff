//! A throwaway nats-server on a free loopback port, for the NATS client tests.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A nats-server child process; killed (and waited for) on drop.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    jetstream: bool,
    /// Extra server configuration (TLS, accounts), written to a file the server reads.
    config: Option<String>,
    /// The URL scheme clients use: "nats" or "tls".
    scheme: &'static str,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Ports given up at the first start because another test's server took them (a restart
    /// keeps its port: clients reconnect to it).
    restarts: u32,
    started: bool,
}

/// The nats-server binary: `$NATS_SERVER`, then PATH, then /usr/sbin and /usr/local/bin.
fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A loopback port nothing listens on (right now).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

impl NatsServer {
    /// A server with JetStream (`-js`, storage in a temporary directory); None, with a note, when
    /// nats-server is not installed (a panic instead when FLOODWATCH_REQUIRE_NATS=1).
    pub fn start() -> Option<NatsServer> {
        Self::start_with(true)
    }

    /// A server without JetStream.
    pub fn start_without_jetstream() -> Option<NatsServer> {
        Self::start_with(false)
    }

    /// A server with JetStream and `config` (nats-server's configuration syntax: `tls {...}`,
    /// `authorization {...}`, ...) on top of its port and store; clients use `scheme` URLs.
    pub fn start_configured(config: &str, scheme: &'static str) -> Option<NatsServer> {
        Self::start_full(true, Some(config.to_string()), scheme)
    }

    fn start_with(jetstream: bool) -> Option<NatsServer> {
        Self::start_full(jetstream, None, "nats")
    }

    fn start_full(
        jetstream: bool,
        config: Option<String>,
        scheme: &'static str,
    ) -> Option<NatsServer> {
        let Some(binary) = find_binary() else {
            if std::env::var("FLOODWATCH_REQUIRE_NATS").as_deref() == Ok("1") {
                panic!(
                    "FLOODWATCH_REQUIRE_NATS=1 but nats-server is not installed (Debian package nats-server, or set NATS_SERVER to its path)"
                );
            }
            eprintln!("skipping: nats-server not installed");
            return None;
        };
        let mut s = NatsServer {
            binary,
            port: free_port(),
            jetstream,
            config,
            scheme,
            dir: tempfile::tempdir().expect("temporary directory"),
            child: None,
            restarts: 0,
            started: false,
        };
        s.spawn();
        Some(s)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Runs the server on `self.port` and waits until it accepts connections.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("nats-server log file");
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            cmd.arg("-js").arg("-sd").arg(self.dir.path().join("js"));
        }
        if let Some(config) = &self.config {
            let path = self.dir.path().join("nats-server.conf");
            std::fs::write(&path, config).expect("nats-server config");
            cmd.arg("-c").arg(path);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // ours is ready when it says so (a port taken by another test's server between
            // free_port and here would accept connections too)
            let ready = || {
                std::fs::read_to_string(self.log_path())
                    .is_ok_and(|l| l.contains("Server is ready"))
            };
            if ready() && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.started = true;
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let taken = log.contains("address already in use");
            if exited.is_some() && taken && !self.started && self.restarts < 5 {
                // the port went to another test's server: another port
                self.restarts += 1;
                self.port = free_port();
                return self.spawn();
            }
            if exited.is_some() || Instant::now() > deadline {
                self.kill();
                panic!(
                    "nats-server did not accept connections on {addr} within {START_TIMEOUT:?} (exit {exited:?}); its log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// "nats://127.0.0.1:PORT" (tls:// for a TLS server).
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process is still running (it did not exit, e.g. on a crash).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
