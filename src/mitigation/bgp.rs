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
//! The pipe never delays detection: the sink only records what it wants ([`Announcer::on_event`]
//! takes a short lock); a thread of its own opens the pipe non-blocking (`ENXIO`: no reader yet),
//! writes each line with one non-blocking `write` (a line is under `PIPE_BUF`, so it is written
//! whole or not at all) and retries every [`RETRY`]. What is owed is kept per route, not as a
//! queue of lines (`bgp::book`): the wanted routes against what ExaBGP was last told.
//!
//! ExaBGP keeps no routes across its own restart, and a restart can go unseen from the pipe: the
//! reader of the old ExaBGP (socat) may take a line before it notices its ExaBGP is gone, and the
//! new one may open the pipe before floodwatch writes again. So the writer (1) polls the pipe every
//! [`RETRY`], idle or not, and announces every wanted route again when its reader went away, and
//! (2) announces every wanted route again every `reannounce` ([`REANNOUNCE`] by default), which
//! covers what polling cannot see; ExaBGP ignores an announcement of a route it already holds, so
//! that costs a few lines and no BGP update.
//!
//! At the end every active route is withdrawn (unless `keep_on_exit`, which needs `persist`: then
//! the alerts the end of the run closes — reason `end_of_input` or `shutdown` — keep their routes
//! too). With `persist` (beside `--state`) the routes ExaBGP may hold (wanted ones, and those whose
//! withdrawal is not written yet) are kept in a file, so a restarted floodwatch announces the
//! ones its settings still allow again and holds them for `restore_hold` (an alert on the same
//! key that starts meanwhile takes them over, the others are then withdrawn), and withdraws the
//! rest at once.

mod book;
mod persist;
mod pipe;

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::flowspec::{self, FlowAction};
use crate::alert::{AlertEvent, EndReason, EventKind};
use crate::key::{Key, Scope};
use book::{Book, Owner};
pub use persist::{persist_path_for, PersistError};
use persist::{Loaded, SavedRoute};
use pipe::{OpenError, Pipe, Reader};

/// How often a missing pipe is opened again, unwritten lines retried and the reader checked.
pub const RETRY: Duration = Duration::from_millis(250);
/// How often every wanted route is announced again (the default of `reannounce`).
pub const REANNOUNCE: Duration = Duration::from_secs(30);
/// The most routes `max_rules` may allow: routers hold a few thousand flowspec rules, and the
/// persist file is rewritten whole on every change.
pub const MAX_RULES_LIMIT: usize = 4096;
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
    /// Most routes active at once (at most [`MAX_RULES_LIMIT`]).
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
    /// How often every wanted route is announced again ([`REANNOUNCE`]).
    pub reannounce: Duration,
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
    /// Lines dropped unwritten (too long for one write, or still unwritten at exit).
    pub dropped: u64,
    /// Attempts to open the pipe that failed (missing, no reader).
    pub open_failures: u64,
    /// Times a reader was found again after one was lost.
    pub reconnects: u64,
    /// Routes restored from the persist file at start, and of them those withdrawn unclaimed.
    pub restored: u64,
    pub restored_expired: u64,
    /// Routes of the persist file the current settings no longer allow (source scope,
    /// never-block, no `--blackhole`, the cap): withdrawn at start.
    pub restored_refused: u64,
    /// Failed writes of the persist file (each retried).
    pub persist_errors: u64,
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
        if self.restored > 0 || self.restored_refused > 0 {
            write!(
                f,
                "; {} restored from the last run ({} withdrawn unclaimed), {} withdrawn at start as the settings no longer allow them",
                self.restored, self.restored_expired, self.restored_refused
            )?;
        }
        if self.persist_errors > 0 {
            write!(
                f,
                "; {} failed writes of the routes file",
                self.persist_errors
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
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("--bgp-keep-on-exit needs --state FILE: the routes it leaves announced are kept there for the next run to take over or withdraw; without it they would stay announced forever (add --state, which replay, live and collect take, or leave out --bgp-keep-on-exit, as detect must)")]
    KeepWithoutState,
}

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

/// Why a key gets no routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    SourceScope,
    NeverBlock,
}

/// `key` with an IPv4-mapped IPv6 prefix (`::ffff:a.b.c.d`, /96 or longer) written as the IPv4
/// prefix it is, so a never-block prefix matches it in either form.
fn canonical(key: Key) -> Key {
    match key {
        Key::V6 { addr, prefix } if prefix >= 96 && addr >> 32 == 0xffff => Key::V4 {
            addr: addr as u32,
            prefix: prefix - 96,
        },
        k => k,
    }
}

impl Policy {
    fn never_block(&self, key: Key) -> bool {
        let key = canonical(key);
        self.never_block.iter().map(|n| canonical(*n)).any(|n| {
            // the key inside a never-block prefix, or a prefix that holds one
            n.contains(key.addr()) && n.prefix() <= key.prefix()
                || key.contains(n.addr()) && key.prefix() <= n.prefix()
        })
    }

    /// Whether (`scope`, `key`) may have routes at all.
    fn refusal(&self, scope: Scope, key: Key) -> Option<Refusal> {
        if !scope.is_destination() && !self.source_scopes {
            Some(Refusal::SourceScope)
        } else if self.never_block(key) {
            Some(Refusal::NeverBlock)
        } else {
            None
        }
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
        // a request flood is the site's own kind of traffic: blackholing the victim would finish
        // the attackers' work (its flowspec rules name the clients instead)
        if let (Some(b), Scope::DstHost, false) = (
            &self.blackhole,
            e.scope,
            super::requests::is_request_class(e.class),
        ) {
            routes.push(b.routes(e.key));
        }
        routes
    }

    /// A route of the last run as these settings would announce it now (the current flowspec
    /// action, the current blackhole communities), or `None` if they would not announce it.
    fn current(&self, scope: Scope, key: Key, r: Route) -> Option<Route> {
        if let Some(announce) = flowspec::announce_of_withdraw(&r.withdraw, self.action) {
            return Some(Route {
                announce,
                withdraw: r.withdraw,
            });
        }
        let now = self
            .blackhole
            .as_ref()
            .filter(|_| scope == Scope::DstHost)?
            .routes(key);
        (now.withdraw == r.withdraw).then_some(now)
    }

    fn on_event(&self, book: &mut Book, e: &AlertEvent) {
        let owner = Owner::Alert(e.id.clone());
        match e.event {
            EventKind::Start => match self.refusal(e.scope, e.key) {
                Some(Refusal::SourceScope) => book.stats.skipped_source_scope += 1,
                Some(Refusal::NeverBlock) => book.stats.refused_never_block += 1,
                None => self.start(book, owner, e),
            },
            // the run ending ends the open alerts, not the attacks: with keep_on_exit their
            // routes stay (and are saved for the next run)
            EventKind::End
                if self.keep_on_exit
                    && matches!(e.reason, Some(EndReason::EndOfInput | EndReason::Shutdown)) => {}
            EventKind::End => book.release(&owner),
            EventKind::Update => {}
        }
    }

    /// Holds the routes of a `start` event if they fit under the cap, counting the routes of a
    /// restored holder of the key that it replaces as free.
    fn start(&self, book: &mut Book, owner: Owner, e: &AlertEvent) {
        let mut routes = self.routes(e);
        let all = routes.len();
        routes.retain(|r| r.announce.len() < PIPE_BUF);
        book.stats.dropped += (all - routes.len()) as u64;
        let restored = Owner::Restored(e.scope, e.key);
        let room = self.max_rules.saturating_sub(book.routes.len())
            + book.freed_by_release(&restored, &routes);
        if book.new_routes(&routes) > room {
            book.stats.refused_cap += 1;
            return;
        }
        book.hold(owner, e.scope, e.key, routes);
        // a restored route of this key: the alert's own routes replace it (the same route
        // changes holder, announced again if its text changed; another one is withdrawn)
        book.release(&restored);
    }

    /// Puts the routes of the last run back: those these settings still allow, within the cap,
    /// are announced again and held until `deadline`; the others are withdrawn at once.
    fn restore(&self, book: &mut Book, saved: Vec<SavedRoute>, deadline: Instant) {
        let mut by_key: BTreeMap<(Scope, Key), Vec<Route>> = BTreeMap::new();
        for s in saved {
            // whatever ExaBGP may hold is withdrawn, unless held again below
            book.may_be_held(s.withdraw.clone());
            if let (Some(scope), Ok(key), false) = (
                Scope::from_name(&s.scope),
                s.key.parse::<Key>(),
                s.announce.is_empty(),
            ) {
                by_key.entry((scope, key)).or_default().push(Route {
                    announce: s.announce,
                    withdraw: s.withdraw,
                });
            }
        }
        for ((scope, key), routes) in by_key {
            let saved = routes.len();
            let routes: Vec<Route> = match self.refusal(scope, key) {
                Some(_) => Vec::new(),
                None => routes
                    .into_iter()
                    .filter_map(|r| self.current(scope, key, r))
                    .collect(),
            };
            let room = self.max_rules.saturating_sub(book.routes.len());
            if routes.is_empty() || book.new_routes(&routes) > room {
                book.stats.restored_refused += saved as u64;
                continue;
            }
            book.stats.restored += routes.len() as u64;
            book.stats.restored_refused += (saved - routes.len()) as u64;
            book.hold(Owner::Restored(scope, key), scope, key, routes);
        }
        book.stats.announced = 0;
        book.restore_deadline = Some(deadline);
    }
}

/// State shared by the sink (which records what it wants) and the writer thread (which writes).
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
    writer: Option<JoinHandle<()>>,
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
    /// exists and is not a pipe is an error, so is `keep_on_exit` without `persist`. With
    /// `persist`, routes left by the last run are put back (the note says how many); a persist
    /// file that is not one is moved aside (the note says where).
    pub fn start(cfg: BgpConfig) -> Result<(Announcer, Option<String>), BgpError> {
        if cfg.keep_on_exit && cfg.persist.is_none() {
            return Err(BgpError::KeepWithoutState);
        }
        let path = cfg.pipe.display().to_string();
        let policy = Policy {
            action: cfg.action,
            blackhole: cfg.blackhole,
            max_rules: cfg.max_rules.min(MAX_RULES_LIMIT),
            never_block: cfg.never_block,
            source_scopes: cfg.source_scopes,
            keep_on_exit: cfg.keep_on_exit,
        };
        let mut notes = Vec::new();
        let mut pipe = Pipe::new(cfg.pipe.clone());
        let mut book = Book::default();
        if let Some(p) = &cfg.persist {
            match persist::load(p)? {
                Loaded::Routes(saved) if !saved.is_empty() => {
                    policy.restore(&mut book, saved, Instant::now() + cfg.restore_hold);
                    notes.push(format!(
                        "{} route(s) left announced by the last run announced again (withdrawn after {:?} unless an alert takes them over), {} withdrawn",
                        book.stats.restored, cfg.restore_hold, book.stats.restored_refused
                    ));
                }
                Loaded::Routes(_) => {}
                Loaded::MovedAside { reason, to } => notes.push(format!(
                    "{} cannot be used ({reason}): moved aside to {}; starting with no routes (ExaBGP may still hold old ones)",
                    p.display(),
                    to.display()
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
        let writer = Writer {
            shared: Arc::clone(&shared),
            pipe,
            persist: cfg.persist.clone(),
            reannounce: cfg.reannounce,
            persist_failing: false,
        };
        let writer = std::thread::Builder::new()
            .name("fw-exabgp".into())
            .spawn(move || writer.run())
            .map_err(BgpError::Thread)?;
        let note = (!notes.is_empty())
            .then(|| format!("floodwatch: --exabgp-pipe {path}: {}", notes.join("; ")));
        Ok((
            Announcer {
                policy,
                shared,
                writer: Some(writer),
                keep_on_exit: cfg.keep_on_exit,
                persist: cfg.persist,
            },
            note,
        ))
    }

    /// Records the announcements or withdrawals of one event. Never waits for the pipe.
    pub fn on_event(&self, e: &AlertEvent) {
        if e.event == EventKind::Update {
            return;
        }
        let mut book = self.shared.book();
        self.policy.on_event(&mut book, e);
        let kicked = book.kicked;
        drop(book);
        if kicked {
            self.shared.wake.notify_one();
        }
    }

    /// What the flowspec rules announced do (`--flowspec-action`).
    pub fn flowspec_action(&self) -> FlowAction {
        self.policy.action
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
            book.stopping = true;
        }
        self.shared.wake.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let mut book = self.shared.book();
        book.unwritten();
        // what ExaBGP may still hold: the routes kept, and those whose withdrawal never went out
        book.stats.active_at_exit = book.held_by_exabgp() as u64;
        if let Some(p) = &self.persist {
            if let Err(e) = persist::save(p, &book.saved()) {
                book.stats.persist_errors += 1;
                eprintln!(
                    "floodwatch: --exabgp-pipe: cannot write the routes file {}: {e}; the next run will not know the {} route(s) ExaBGP may still hold",
                    p.display(),
                    book.stats.active_at_exit
                );
            }
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

/// The writer thread: opens the pipe when it can, writes what is owed, watches the reader,
/// announces everything again every `reannounce`, withdraws restored routes no alert claimed,
/// keeps the persist file current; at stop, flushes for up to [`EXIT_GRACE`].
struct Writer {
    shared: Arc<Shared>,
    pipe: Pipe,
    persist: Option<PathBuf>,
    reannounce: Duration,
    /// The persist file could not be written last time (said once on stderr).
    persist_failing: bool,
}

impl Writer {
    fn run(mut self) {
        let mut exit_by: Option<Instant> = None;
        let mut again_at = Instant::now() + self.reannounce;
        loop {
            let now = Instant::now();
            let mut book = self.shared.book();
            book.writer_wakeups += 1;
            book.kicked = false;
            book.expire_restored(now);
            if self.pipe.reader_gone() || now >= again_at {
                again_at = now + self.reannounce;
                book.announce_all_again();
            }
            let outs = if book.owes_lines() {
                match self.pipe.ensure_open(now) {
                    Reader::Back => book.stats.reconnects += 1,
                    Reader::Failed => book.stats.open_failures += 1,
                    Reader::Opened | Reader::Unchanged => {}
                }
                book.next_lines()
            } else {
                Vec::new()
            };
            let saved = match &self.persist {
                Some(_) if std::mem::take(&mut book.dirty) => Some(book.saved()),
                _ => None,
            };
            let stopping = book.stopping;
            drop(book);
            let done = self.pipe.flush(&outs);
            let saved = saved.map(|routes| self.save(&routes));
            let mut book = self.shared.book();
            book.stats.dropped += done.too_long as u64;
            let mut outs = outs.into_iter();
            for o in outs.by_ref().take(done.written) {
                book.written(o);
            }
            book.deferred(&outs.collect::<Vec<_>>());
            if done.lost {
                book.announce_all_again();
            }
            if let Some(Err(())) = saved {
                book.stats.persist_errors += 1;
                book.dirty = true;
            }
            if stopping {
                let by = *exit_by.get_or_insert(now + EXIT_GRACE);
                if !book.owes_lines() || now >= by {
                    return;
                }
                // a plain wait: the predicate of the one below is false once stopping
                drop(self.shared.wake.wait_timeout(book, RETRY / 5));
                continue;
            }
            let wait = if book.owes_lines() && self.pipe.file.is_some() {
                RETRY / 5
            } else {
                RETRY
            };
            drop(
                self.shared
                    .wake
                    .wait_timeout_while(book, wait, |b| !b.kicked && !b.stopping),
            );
        }
    }

    /// Writes the persist file; a failure is said once on stderr (naming the file) until a
    /// write works again.
    fn save(&mut self, routes: &[SavedRoute]) -> Result<(), ()> {
        let Some(path) = &self.persist else {
            return Ok(());
        };
        match persist::save(path, routes) {
            Ok(()) => {
                self.persist_failing = false;
                Ok(())
            }
            Err(e) => {
                if !std::mem::replace(&mut self.persist_failing, true) {
                    eprintln!(
                        "floodwatch: --exabgp-pipe: cannot write the routes file {}: {e}; retried every {} ms (until then a restart would not know the routes announced)",
                        path.display(),
                        RETRY.as_millis()
                    );
                }
                Err(())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
