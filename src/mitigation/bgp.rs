//! Announcements over BGP through ExaBGP (`--exabgp-pipe`): a flowspec rule per alert (and with
//! `--blackhole` the victim's /32 or /128 with the blackhole community, RFC 7999), announced when
//! the alert starts and withdrawn when it ends.
//!
//! floodwatch speaks no BGP: it writes ExaBGP API commands (the text encoder, one per line) to a
//! named pipe that an ExaBGP `process` relays, e.g. `run /usr/bin/socat stdout pipe:PATH;`.
//!
//! Guard rails, in the order they apply to a `start` event:
//! - only destination scopes, unless `source_scopes` (a source key is an attacker's address: a
//!   rule for it is fine, a blackhole of it is not — blackholes are only ever for `dst_host`);
//! - never a key inside a `never_block` prefix (nor a prefix containing one);
//! - at most `max_rules` routes at once (each flowspec rule and each blackhole is one); an alert
//!   whose routes do not fit is refused as a whole and counted;
//! - two alerts that give the same route share it: it is withdrawn with the last of them.
//!
//! The pipe never delays detection: the sink only queues lines ([`Announcer::on_event`] takes a
//! short lock); a thread of its own opens the pipe non-blocking (`ENXIO`: no reader yet), writes
//! each line with one non-blocking `write` (a line is under `PIPE_BUF`, so it is written whole or
//! not at all), keeps what could not be written (bounded, counted) and retries every
//! [`RETRY`]. When a reader comes back after one was lost, every active route is announced again
//! (ExaBGP may have restarted; announcing a route twice changes nothing).
//!
//! At the end every active route is withdrawn (unless `keep_on_exit`: then the alerts the end of
//! the run closes — reason `end_of_input` or `shutdown` — keep their routes too). With `persist` (beside
//! `--state`) the active routes are kept in a file, so a restarted floodwatch announces them again
//! and holds them for `restore_hold`: an alert on the same key that starts meanwhile takes them
//! over, the others are then withdrawn.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::flowspec::{self, FlowAction};
use crate::alert::{AlertEvent, EndReason, EventKind};
use crate::key::{Key, Scope};

/// How often a missing pipe is opened again and unwritten lines retried.
pub const RETRY: Duration = Duration::from_millis(250);
/// Lines kept for the pipe at most; older ones are dropped (counted) beyond it.
const OUTBOX_CAP: usize = 4096;
/// How long the end of a run waits for the pipe to take the last withdrawals.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// The longest line one `write` on a pipe keeps whole (POSIX PIPE_BUF on Linux).
const PIPE_BUF: usize = 4096;

/// The blackhole announcement (`--blackhole`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blackhole {
    /// Next hop for IPv4 victims (`None`: ExaBGP's `self`).
    pub next_hop_v4: Option<IpAddr>,
    /// Next hop for IPv6 victims (`None`: `self`).
    pub next_hop_v6: Option<IpAddr>,
    /// Communities, `ASN:VALUE` (default `65535:666`, RFC 7999 BLACKHOLE).
    pub communities: Vec<String>,
}

/// The RFC 7999 BLACKHOLE community.
pub const BLACKHOLE_COMMUNITY: &str = "65535:666";

impl Blackhole {
    /// Checks a community is `A:B` with two 16-bit numbers.
    pub fn parse_community(s: &str) -> Result<String, String> {
        let ok = s
            .split_once(':')
            .is_some_and(|(a, b)| a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok());
        if ok {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "`{s}` is not a community: write ASN:VALUE with two numbers up to 65535 (e.g. 65535:666)"
            ))
        }
    }

    fn routes(&self, key: Key) -> Route {
        let v6 = matches!(key, Key::V6 { .. });
        let hop = if v6 {
            self.next_hop_v6
        } else {
            self.next_hop_v4
        };
        let hop = hop.map_or_else(|| "self".to_owned(), |a| a.to_string());
        let prefix = format!("{}/{}", key.addr(), key.prefix());
        Route {
            announce: format!(
                "announce route {prefix} next-hop {hop} community [{}]",
                self.communities.join(" ")
            ),
            withdraw: format!("withdraw route {prefix} next-hop {hop}"),
        }
    }
}

/// What `--exabgp-pipe` and its options resolve to.
#[derive(Clone, Debug)]
pub struct BgpConfig {
    /// The named pipe ExaBGP reads.
    pub pipe: PathBuf,
    /// What the flowspec rules do to the matched packets.
    pub action: FlowAction,
    /// Also announce a blackhole route of the victim.
    pub blackhole: Option<Blackhole>,
    /// Most routes active at once.
    pub max_rules: usize,
    /// Keys inside these prefixes (or prefixes holding one) are never announced.
    pub never_block: Vec<Key>,
    /// Announce flowspec rules for source scopes too.
    pub source_scopes: bool,
    /// Leave the routes announced when floodwatch exits.
    pub keep_on_exit: bool,
    /// Where the active routes are kept across restarts (beside `--state`).
    pub persist: Option<PathBuf>,
    /// How long restored routes wait for an alert to take them over.
    pub restore_hold: Duration,
}

/// One route as the two commands that make and remove it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub announce: String,
    pub withdraw: String,
}

/// Counters of the ExaBGP output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpStats {
    /// Routes announced and withdrawn (commands queued for the pipe).
    pub announced: u64,
    pub withdrawn: u64,
    /// Alerts refused because their routes would pass `max_rules`.
    pub refused_cap: u64,
    /// Alerts on keys in a never-block prefix.
    pub refused_never_block: u64,
    /// Source-scope alerts left alone (no `source_scopes`).
    pub skipped_source_scope: u64,
    /// Lines that could not be written when first tried (no pipe, no reader, pipe full): kept
    /// and retried.
    pub deferred: u64,
    /// Lines dropped unwritten (the queue was full, or still unwritten at exit).
    pub dropped: u64,
    /// Attempts to open the pipe that failed (missing, no reader).
    pub open_failures: u64,
    /// Times a reader was found again after one was lost.
    pub reconnects: u64,
    /// Routes restored from the persist file at start, and of them those withdrawn unclaimed.
    pub restored: u64,
    pub restored_expired: u64,
    /// Routes still announced (kept on exit, or whose withdrawal could not be written).
    pub active_at_exit: u64,
}

impl std::fmt::Display for BgpStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} announced, {} withdrawn, {} refused at the cap, {} in never-block prefixes, {} source-scope alerts left alone; lines: {} deferred, {} dropped; pipe: {} failed opens, {} reconnects",
            self.announced,
            self.withdrawn,
            self.refused_cap,
            self.refused_never_block,
            self.skipped_source_scope,
            self.deferred,
            self.dropped,
            self.open_failures,
            self.reconnects
        )?;
        if self.restored > 0 {
            write!(
                f,
                "; {} restored from the last run ({} withdrawn unclaimed)",
                self.restored, self.restored_expired
            )?;
        }
        if self.active_at_exit > 0 {
            write!(f, "; {} still announced at exit", self.active_at_exit)?;
        }
        Ok(())
    }
}

/// Why the ExaBGP output could not start.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    #[error("--exabgp-pipe {path}: {detail}")]
    Pipe { path: String, detail: String },
    #[error("cannot start the --exabgp-pipe writer thread: {0}")]
    Thread(io::Error),
}

/// Who holds a route: an alert (by id) or a route restored from the last run (by key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Owner {
    Alert(String),
    Restored(Scope, Key),
}

/// A route and how many owners hold it.
#[derive(Debug)]
struct Held {
    route: Route,
    scope: Scope,
    key: Key,
    refs: u32,
}

/// The routes and the lines waiting for the pipe. Pure: no I/O, time passed in.
#[derive(Debug, Default)]
struct Book {
    /// By withdraw command (the route's identity).
    routes: BTreeMap<String, Held>,
    /// The route identities of each owner.
    owners: HashMap<Owner, Vec<String>>,
    /// When restored routes stop waiting for an alert.
    restore_deadline: Option<Instant>,
    outbox: VecDeque<String>,
    stats: BgpStats,
    /// The route set changed since the persist file was last written.
    dirty: bool,
    /// The run is ending: the writer flushes and stops.
    stopping: bool,
}

impl Book {
    fn push(&mut self, line: String) {
        if self.outbox.len() >= OUTBOX_CAP {
            self.outbox.pop_front();
            self.stats.dropped += 1;
        }
        self.outbox.push_back(line);
    }

    /// Takes `routes` for `owner`: each new route is announced, shared ones gain a holder.
    fn hold(&mut self, owner: Owner, scope: Scope, key: Key, routes: Vec<Route>) {
        let mut ids = Vec::with_capacity(routes.len());
        for r in routes {
            let id = r.withdraw.clone();
            match self.routes.get_mut(&id) {
                Some(h) => h.refs += 1,
                None => {
                    self.push(r.announce.clone());
                    self.stats.announced += 1;
                    self.routes.insert(
                        id.clone(),
                        Held {
                            route: r,
                            scope,
                            key,
                            refs: 1,
                        },
                    );
                    self.dirty = true;
                }
            }
            ids.push(id);
        }
        self.owners.insert(owner, ids);
    }

    /// Drops what `owner` holds: routes no one else holds are withdrawn.
    fn release(&mut self, owner: &Owner) {
        for id in self.owners.remove(owner).unwrap_or_default() {
            let last = match self.routes.get_mut(&id) {
                Some(h) => {
                    h.refs = h.refs.saturating_sub(1);
                    h.refs == 0
                }
                None => false,
            };
            if last {
                self.routes.remove(&id);
                self.push(id);
                self.stats.withdrawn += 1;
                self.dirty = true;
            }
        }
    }

    /// How many of `routes` are not active yet.
    fn new_routes(&self, routes: &[Route]) -> usize {
        routes
            .iter()
            .filter(|r| !self.routes.contains_key(&r.withdraw))
            .count()
    }

    /// Withdraws the restored routes no alert took over, once their hold has passed.
    fn expire_restored(&mut self, now: Instant) {
        if self.restore_deadline.is_none_or(|d| now < d) {
            return;
        }
        self.restore_deadline = None;
        let restored: Vec<Owner> = self
            .owners
            .keys()
            .filter(|o| matches!(o, Owner::Restored(..)))
            .cloned()
            .collect();
        for o in restored {
            let before = self.stats.withdrawn;
            self.release(&o);
            self.stats.restored_expired += self.stats.withdrawn - before;
        }
    }

    /// The active routes, as the persist file keeps them.
    fn saved(&self) -> Vec<SavedRoute> {
        self.routes
            .values()
            .map(|h| SavedRoute {
                scope: h.scope.name().to_owned(),
                key: h.key.to_string(),
                announce: h.route.announce.clone(),
                withdraw: h.route.withdraw.clone(),
            })
            .collect()
    }
}

/// One route in the persist file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedRoute {
    scope: String,
    key: String,
    announce: String,
    withdraw: String,
}

/// The persist file: `{"format":"floodwatch-exabgp-routes","version":1,"routes":[…]}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedRoutes {
    format: String,
    version: u32,
    routes: Vec<SavedRoute>,
}

const SAVED_FORMAT: &str = "floodwatch-exabgp-routes";

/// The decisions, without the pipe: what the sink calls for every event.
struct Policy {
    action: FlowAction,
    blackhole: Option<Blackhole>,
    max_rules: usize,
    never_block: Vec<Key>,
    source_scopes: bool,
    /// Alerts ended by the end of the run (input over, Ctrl-C) keep their routes.
    keep_on_exit: bool,
}

impl Policy {
    fn never_block(&self, key: Key) -> bool {
        self.never_block.iter().any(|n| {
            // the key inside a never-block prefix, or a prefix that holds one
            n.contains(key.addr()) && n.prefix() <= key.prefix()
                || key.contains(n.addr()) && key.prefix() <= n.prefix()
        })
    }

    /// The routes of a `start` event.
    fn routes(&self, e: &AlertEvent) -> Vec<Route> {
        let mut routes: Vec<Route> = flowspec::for_event(e)
            .iter()
            .map(|r| Route {
                announce: r.announce(self.action),
                withdraw: r.withdraw(),
            })
            .collect();
        if let (Some(b), Scope::DstHost) = (&self.blackhole, e.scope) {
            routes.push(b.routes(e.key));
        }
        routes
    }

    fn on_event(&self, book: &mut Book, e: &AlertEvent) {
        let owner = Owner::Alert(e.id.clone());
        match e.event {
            EventKind::Start => {
                if !e.scope.is_destination() && !self.source_scopes {
                    book.stats.skipped_source_scope += 1;
                    return;
                }
                if self.never_block(e.key) {
                    book.stats.refused_never_block += 1;
                    return;
                }
                let routes = self.routes(e);
                let restored = Owner::Restored(e.scope, e.key);
                let reclaim = book.owners.contains_key(&restored);
                let room = self.max_rules.saturating_sub(book.routes.len());
                if !reclaim && book.new_routes(&routes) > room {
                    book.stats.refused_cap += 1;
                    return;
                }
                book.hold(owner, e.scope, e.key, routes);
                // a restored route of this key: the alert's own routes replace it (the same
                // route just changes holder, another one is withdrawn)
                book.release(&restored);
            }
            // the run ending ends the open alerts, not the attacks: with keep_on_exit their
            // routes stay (and are saved for the next run)
            EventKind::End
                if self.keep_on_exit
                    && matches!(e.reason, Some(EndReason::EndOfInput | EndReason::Shutdown)) => {}
            EventKind::End => book.release(&owner),
            EventKind::Update => {}
        }
    }
}

/// The pipe's end of the ExaBGP output: opened when it can be, never blocking.
struct Pipe {
    path: PathBuf,
    file: Option<File>,
    /// A reader was there once and went away: announce everything again on the next one.
    lost: bool,
    last_attempt: Option<Instant>,
}

/// Why the pipe could not be opened.
#[derive(Debug, PartialEq, Eq)]
enum OpenError {
    Missing,
    NoReader,
    NotAPipe,
    Other(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Missing => f.write_str(
                "does not exist: create it with `mkfifo` and have an ExaBGP process read it (docs/mitigation.md)",
            ),
            OpenError::NoReader => f.write_str(
                "has no reader yet (is ExaBGP running with its `process` reading this pipe?)",
            ),
            OpenError::NotAPipe => f.write_str("is not a named pipe (make one with `mkfifo`)"),
            OpenError::Other(e) => f.write_str(e),
        }
    }
}

impl Pipe {
    fn open(path: &Path) -> Result<File, OpenError> {
        match std::fs::metadata(path) {
            Ok(m) if !m.file_type().is_fifo() => return Err(OpenError::NotAPipe),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::Missing),
            Err(e) => return Err(OpenError::Other(e.to_string())),
        }
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => OpenError::NoReader,
                Some(libc::ENOENT) => OpenError::Missing,
                _ => OpenError::Other(e.to_string()),
            })
    }

    /// Opens the pipe if it is closed and the last attempt is [`RETRY`] old; true when it is
    /// open. A reopen after a loss queues every active route again.
    fn ensure_open(&mut self, now: Instant, book: &mut Book) -> bool {
        if self.file.is_some() {
            return true;
        }
        if self
            .last_attempt
            .is_some_and(|t| now.duration_since(t) < RETRY)
        {
            return false;
        }
        self.last_attempt = Some(now);
        match Pipe::open(&self.path) {
            Ok(f) => {
                self.file = Some(f);
                if std::mem::take(&mut self.lost) {
                    book.stats.reconnects += 1;
                    let again: Vec<String> = book
                        .routes
                        .values()
                        .map(|h| h.route.announce.clone())
                        .collect();
                    for line in again {
                        book.push(line);
                    }
                }
                true
            }
            Err(_) => {
                book.stats.open_failures += 1;
                false
            }
        }
    }

    /// Writes queued lines until one does not go: each with one non-blocking write, whole or not
    /// at all.
    fn flush(&mut self, lines: &mut VecDeque<String>, stats: &mut BgpStats) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        while let Some(line) = lines.front() {
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            if buf.len() > PIPE_BUF {
                lines.pop_front();
                stats.dropped += 1;
                continue;
            }
            match file.write(&buf) {
                Ok(n) if n == buf.len() => {
                    lines.pop_front();
                }
                // a pipe write under PIPE_BUF is whole or fails: anything else means it is not a
                // pipe any more; stop using it
                Ok(_) => {
                    self.file = None;
                    self.lost = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // EPIPE: the reader went away
                    self.file = None;
                    self.lost = true;
                    return;
                }
            }
        }
    }
}

/// State shared by the sink (which queues) and the writer thread (which writes).
struct Shared {
    book: Mutex<Book>,
    wake: Condvar,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the ExaBGP output's counters from another thread (`--metrics-listen`).
#[derive(Clone)]
pub struct BgpStatsHandle(Arc<Shared>);

impl BgpStatsHandle {
    /// The counters and the routes active now.
    pub fn snapshot(&self) -> (BgpStats, usize) {
        let book = self.0.book();
        (book.stats.clone(), book.routes.len())
    }
}

impl std::fmt::Debug for BgpStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BgpStatsHandle")
    }
}

/// The ExaBGP output of a run: [`Announcer::on_event`] for every alert event, [`Announcer::finish`]
/// at the end.
pub struct Announcer {
    policy: Policy,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<VecDeque<String>>>,
    keep_on_exit: bool,
    persist: Option<PathBuf>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("max_rules", &self.policy.max_rules)
            .field("keep_on_exit", &self.keep_on_exit)
            .finish_non_exhaustive()
    }
}

impl Announcer {
    /// Starts the writer thread. Returns the announcer and a note for stderr when the pipe could
    /// not be opened yet (missing or no reader: it is retried every [`RETRY`]); a path that
    /// exists and is not a pipe is an error. With `persist`, routes left by the last run are
    /// announced again at once (the note says how many).
    pub fn start(cfg: BgpConfig) -> Result<(Announcer, Option<String>), BgpError> {
        let path = cfg.pipe.display().to_string();
        let mut notes = Vec::new();
        let mut pipe = Pipe {
            path: cfg.pipe.clone(),
            file: None,
            lost: false,
            last_attempt: None,
        };
        let mut book = Book::default();
        if let Some(p) = &cfg.persist {
            match load_saved(p) {
                Ok(saved) if !saved.is_empty() => {
                    restore(&mut book, saved, Instant::now() + cfg.restore_hold);
                    notes.push(format!(
                        "{} route(s) left announced by the last run announced again (withdrawn after {:?} unless an alert takes them over)",
                        book.stats.restored, cfg.restore_hold
                    ));
                }
                Ok(_) => {}
                Err(e) => notes.push(format!(
                    "{}: {e}; starting with no routes (ExaBGP may still hold old ones)",
                    p.display()
                )),
            }
        }
        match Pipe::open(&cfg.pipe) {
            Ok(f) => pipe.file = Some(f),
            Err(OpenError::NotAPipe) => {
                return Err(BgpError::Pipe {
                    path,
                    detail: OpenError::NotAPipe.to_string(),
                })
            }
            Err(e) => {
                book.stats.open_failures += 1;
                pipe.last_attempt = Some(Instant::now());
                notes.push(format!(
                    "{e}; announcements wait for it (tried again every {} ms, never delaying detection)",
                    RETRY.as_millis()
                ));
            }
        }
        let shared = Arc::new(Shared {
            book: Mutex::new(book),
            wake: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let persist = cfg.persist.clone();
        let writer = std::thread::Builder::new()
            .name("exabgp-pipe".into())
            .spawn(move || write_loop(&thread_shared, pipe, persist.as_deref()))
            .map_err(BgpError::Thread)?;
        let note = (!notes.is_empty())
            .then(|| format!("floodwatch: --exabgp-pipe {path}: {}", notes.join("; ")));
        Ok((
            Announcer {
                policy: Policy {
                    action: cfg.action,
                    blackhole: cfg.blackhole,
                    max_rules: cfg.max_rules,
                    never_block: cfg.never_block,
                    source_scopes: cfg.source_scopes,
                    keep_on_exit: cfg.keep_on_exit,
                },
                shared,
                writer: Some(writer),
                keep_on_exit: cfg.keep_on_exit,
                persist: cfg.persist,
            },
            note,
        ))
    }

    /// Queues the announcements or withdrawals of one event. Never waits for the pipe.
    pub fn on_event(&self, e: &AlertEvent) {
        if e.event == EventKind::Update {
            return;
        }
        let mut book = self.shared.book();
        self.policy.on_event(&mut book, e);
        let queued = !book.outbox.is_empty();
        drop(book);
        if queued {
            self.shared.wake.notify_one();
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> BgpStats {
        self.shared.book().stats.clone()
    }

    /// A handle that reads the counters and the active routes, for the metrics endpoint.
    pub fn stats_handle(&self) -> BgpStatsHandle {
        BgpStatsHandle(Arc::clone(&self.shared))
    }

    /// Withdraws every active route (unless `keep_on_exit`), gives the pipe up to 2 s
    /// to take the last lines, stops the writer and returns the counters.
    pub fn finish(mut self) -> BgpStats {
        self.shut_down()
    }

    fn shut_down(&mut self) -> BgpStats {
        {
            let mut book = self.shared.book();
            if !self.keep_on_exit {
                let owners: Vec<Owner> = book.owners.keys().cloned().collect();
                for o in owners {
                    book.release(&o);
                }
            }
        }
        self.shared.book().stopping = true;
        self.shared.wake.notify_one();
        let mut unwritten = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(lines)) => lines,
            _ => VecDeque::new(),
        };
        let mut book = self.shared.book();
        unwritten.append(&mut book.outbox);
        book.stats.dropped += unwritten.len() as u64;
        // what ExaBGP may still hold: the routes kept, and those whose withdrawal never went out
        let mut left = book.saved();
        if !unwritten.is_empty() {
            left.extend(
                unwritten
                    .iter()
                    .filter(|w| w.starts_with("withdraw "))
                    .map(|w| SavedRoute {
                        scope: String::new(),
                        key: String::new(),
                        announce: String::new(),
                        withdraw: w.clone(),
                    }),
            );
        }
        book.stats.active_at_exit = left.len() as u64;
        if let Some(p) = &self.persist {
            let _ = save_routes(p, &left);
        }
        book.stats.clone()
    }
}

/// A run that stops on an error never calls [`Announcer::finish`]: its routes are withdrawn (or
/// kept) all the same.
impl Drop for Announcer {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.shut_down();
        }
    }
}

/// The writer thread: opens the pipe when it can, writes what is queued, withdraws restored
/// routes no alert claimed, keeps the persist file current; at stop, flushes for up to
/// [`EXIT_GRACE`]. Returns the lines it could not write.
fn write_loop(shared: &Shared, mut pipe: Pipe, persist: Option<&Path>) -> VecDeque<String> {
    // lines tried and not written yet, oldest first
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut exit_by: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut book = shared.book();
        book.expire_restored(now);
        let has_work = !pending.is_empty() || !book.outbox.is_empty();
        let open = has_work && pipe.ensure_open(now, &mut book);
        let tried_before = pending.len();
        pending.append(&mut book.outbox);
        let saved = std::mem::take(&mut book.dirty).then(|| book.saved());
        let stopping = book.stopping;
        drop(book);
        let mut stats = BgpStats::default();
        if open {
            pipe.flush(&mut pending, &mut stats);
        }
        // lines written in order: those left beyond the ones left before are new failures
        stats.deferred = pending.len().saturating_sub(tried_before) as u64;
        while pending.len() > OUTBOX_CAP {
            pending.pop_front();
            stats.dropped += 1;
        }
        if let (Some(p), Some(routes)) = (persist, saved) {
            let _ = save_routes(p, &routes);
        }
        let mut book = shared.book();
        book.stats.deferred += stats.deferred;
        book.stats.dropped += stats.dropped;
        if stopping {
            let by = *exit_by.get_or_insert(now + EXIT_GRACE);
            if (pending.is_empty() && book.outbox.is_empty()) || now >= by {
                return pending;
            }
        }
        let wait = if pending.is_empty() {
            Duration::from_secs(1)
        } else {
            RETRY / 5
        };
        let _ = shared
            .wake
            .wait_timeout_while(book, wait, |b| b.outbox.is_empty() && !b.stopping);
    }
}

/// Puts the routes of the last run back: announced again and held until `deadline`.
fn restore(book: &mut Book, saved: Vec<SavedRoute>, deadline: Instant) {
    let mut by_key: BTreeMap<(Scope, Key), Vec<Route>> = BTreeMap::new();
    let mut orphans = Vec::new();
    for s in saved {
        match (Scope::from_name(&s.scope), s.key.parse::<Key>()) {
            (Some(scope), Ok(key)) if !s.announce.is_empty() => {
                by_key.entry((scope, key)).or_default().push(Route {
                    announce: s.announce,
                    withdraw: s.withdraw,
                })
            }
            // a withdrawal that never went out: send it now
            _ => orphans.push(s.withdraw),
        }
    }
    for w in orphans {
        book.push(w);
    }
    for ((scope, key), routes) in by_key {
        book.stats.restored += routes.len() as u64;
        book.hold(Owner::Restored(scope, key), scope, key, routes);
    }
    book.stats.announced = 0;
    book.restore_deadline = Some(deadline);
}

/// Reads the persist file; a missing file is no routes.
fn load_saved(path: &Path) -> Result<Vec<SavedRoute>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let saved: SavedRoutes = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if saved.format != SAVED_FORMAT || saved.version != 1 {
        return Err(format!(
            "not a {SAVED_FORMAT} file of version 1 (format {:?}, version {})",
            saved.format, saved.version
        ));
    }
    Ok(saved.routes)
}

fn save_routes(path: &Path, routes: &[SavedRoute]) -> io::Result<()> {
    let file = SavedRoutes {
        format: SAVED_FORMAT.to_owned(),
        version: 1,
        routes: routes.to_vec(),
    };
    crate::state::write_atomic(path, |w| {
        serde_json::to_writer(&mut *w, &file).map_err(io::Error::other)
    })
}

/// The persist file kept beside a `--state` file.
pub fn persist_path_for(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".exabgp.json");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests;
