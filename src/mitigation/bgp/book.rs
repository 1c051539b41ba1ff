//! The routes of the ExaBGP output, without I/O: which routes the alerts want (`routes`, held by
//! owners with a reference count) and what ExaBGP was last told of each (`sent`). The lines for
//! the pipe are the difference, computed per route when the writer asks ([`Book::next_lines`]),
//! so nothing is queued line by line: an announcement and its withdrawal that were never written
//! cancel out, a withdrawal is never pushed out by newer lines, and the state is bounded by the
//! routes (at most `max_rules` wanted, plus those whose withdrawal is not written yet).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::{BgpStats, Route, SavedRoute};
use crate::key::{Key, Scope};

/// Who holds a route: an alert (by id) or a route restored from the last run (by key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Owner {
    Alert(String),
    Restored(Scope, Key),
}

/// A route and how many owners hold it.
#[derive(Debug)]
pub(super) struct Held {
    pub route: Route,
    pub scope: Scope,
    pub key: Key,
    pub refs: u32,
}

/// One line the pipe owes ExaBGP: the route's announcement, or (`announce: None`) its withdrawal,
/// whose text is the route's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Out {
    pub id: String,
    pub announce: Option<String>,
}

impl Out {
    /// The command as written (without the newline).
    pub fn line(&self) -> &str {
        self.announce.as_deref().unwrap_or(&self.id)
    }
}

/// What ExaBGP was told of a route whose text is not known: restored from the last run, or a
/// withdrawal the last run still owed. Never equal to an announcement, so the route is sent.
const UNKNOWN: &str = "";

#[derive(Debug, Default)]
pub(super) struct Book {
    /// The routes wanted now, by withdraw command (the route's identity).
    pub routes: BTreeMap<String, Held>,
    /// The route identities of each owner.
    pub owners: HashMap<Owner, Vec<String>>,
    /// The routes ExaBGP may hold, with the announcement last written for each.
    sent: BTreeMap<String, String>,
    /// Routes whose wanted state may differ from `sent`; the flag says the delay was counted in
    /// `stats.deferred` already.
    changed: BTreeMap<String, bool>,
    /// When restored routes stop waiting for an alert.
    pub restore_deadline: Option<Instant>,
    pub stats: BgpStats,
    /// What the persist file keeps (wanted routes, unwritten withdrawals) changed since it was
    /// last written.
    pub dirty: bool,
    /// The sink changed something since the writer last looked.
    pub kicked: bool,
    /// The run is ending: the writer flushes and stops.
    pub stopping: bool,
    /// Times the writer thread woke up (a spinning writer shows here).
    pub writer_wakeups: u64,
}

impl Book {
    /// Takes `routes` for `owner`: each new route is announced, shared ones gain a holder, a
    /// route whose announcement changed (another action) is announced again. An owner that holds
    /// routes already keeps them and takes nothing more.
    pub fn hold(&mut self, owner: Owner, scope: Scope, key: Key, routes: Vec<Route>) {
        let std::collections::hash_map::Entry::Vacant(slot) = self.owners.entry(owner) else {
            return;
        };
        let mut ids = Vec::with_capacity(routes.len());
        for r in routes {
            let id = r.withdraw.clone();
            if ids.contains(&id) {
                continue;
            }
            match self.routes.get_mut(&id) {
                Some(h) => {
                    h.refs += 1;
                    if h.route.announce != r.announce {
                        h.route.announce = r.announce;
                        self.changed.entry(id.clone()).or_default();
                        self.dirty = true;
                    }
                }
                None => {
                    self.stats.announced += 1;
                    self.changed.entry(id.clone()).or_default();
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
        slot.insert(ids);
        self.kicked = true;
    }

    /// Drops what `owner` holds: routes no one else holds are withdrawn.
    pub fn release(&mut self, owner: &Owner) {
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
                self.changed.entry(id).or_default();
                self.stats.withdrawn += 1;
                self.dirty = true;
                self.kicked = true;
            }
        }
    }

    /// How many of `routes` are not active yet.
    pub fn new_routes(&self, routes: &[Route]) -> usize {
        routes
            .iter()
            .filter(|r| !self.routes.contains_key(&r.withdraw))
            .count()
    }

    /// How many active routes releasing `owner` would free, `routes` (about to be held) aside.
    pub fn freed_by_release(&self, owner: &Owner, routes: &[Route]) -> usize {
        self.owners.get(owner).map_or(0, |ids| {
            ids.iter()
                .filter(|id| self.routes.get(*id).is_some_and(|h| h.refs == 1))
                .filter(|id| !routes.iter().any(|r| &r.withdraw == *id))
                .count()
        })
    }

    /// Withdraws the restored routes no alert took over, once their hold has passed.
    pub fn expire_restored(&mut self, now: Instant) {
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

    /// Records a route ExaBGP may hold from the last run, announcement unknown: it is announced
    /// again if wanted, else withdrawn.
    pub fn may_be_held(&mut self, id: String) {
        self.changed.entry(id.clone()).or_default();
        self.sent.insert(id, UNKNOWN.to_owned());
        self.dirty = true;
        self.kicked = true;
    }

    /// ExaBGP may have lost every route (a new reader, a restart): announce all wanted ones again.
    pub fn announce_all_again(&mut self) {
        for id in self.routes.keys() {
            self.sent.insert(id.clone(), UNKNOWN.to_owned());
            self.changed.entry(id.clone()).or_default();
        }
        self.kicked |= !self.routes.is_empty();
    }

    /// True when some line is owed to ExaBGP (or may be: [`Book::next_lines`] tells).
    pub fn owes_lines(&self) -> bool {
        !self.changed.is_empty()
    }

    /// The lines owed now, withdrawals first (they free the routers' rules, and while any is
    /// unwritten no announcement goes out, which bounds the routes ExaBGP may hold). Routes
    /// found in step are forgotten.
    pub fn next_lines(&mut self) -> Vec<Out> {
        let mut withdraws = Vec::new();
        let mut announces = Vec::new();
        let (routes, sent) = (&self.routes, &self.sent);
        self.changed
            .retain(|id, _| match (routes.get(id), sent.get(id)) {
                (Some(h), Some(s)) if *s == h.route.announce => false,
                (None, None) => false,
                (Some(h), _) => {
                    announces.push(Out {
                        id: id.clone(),
                        announce: Some(h.route.announce.clone()),
                    });
                    true
                }
                (None, Some(_)) => {
                    withdraws.push(Out {
                        id: id.clone(),
                        announce: None,
                    });
                    true
                }
            });
        withdraws.append(&mut announces);
        withdraws
    }

    /// `out` reached the pipe: ExaBGP holds the route as announced, or no longer holds it.
    pub fn written(&mut self, out: Out) {
        let in_step = match &out.announce {
            Some(a) => {
                let in_step = self
                    .routes
                    .get(&out.id)
                    .is_some_and(|h| h.route.announce == *a);
                self.sent.insert(out.id.clone(), a.clone());
                in_step
            }
            None => {
                self.dirty |= self.sent.remove(&out.id).is_some();
                !self.routes.contains_key(&out.id)
            }
        };
        if in_step {
            self.changed.remove(&out.id);
        }
    }

    /// `outs` could not be written: each is counted once as deferred.
    pub fn deferred(&mut self, outs: &[Out]) {
        for o in outs {
            if let Some(counted) = self.changed.get_mut(&o.id) {
                if !std::mem::replace(counted, true) {
                    self.stats.deferred += 1;
                }
            }
        }
    }

    /// The lines still owed at the end of a run, counted as dropped.
    pub fn unwritten(&mut self) -> usize {
        let n = self.next_lines().len();
        self.stats.dropped += n as u64;
        n
    }

    /// What the persist file keeps: the wanted routes, and the routes whose withdrawal is not
    /// written yet (with no announcement: the next run withdraws them).
    pub fn saved(&self) -> Vec<SavedRoute> {
        let wanted = self.routes.values().map(|h| SavedRoute {
            scope: h.scope.name().to_owned(),
            key: h.key.to_string(),
            announce: h.route.announce.clone(),
            withdraw: h.route.withdraw.clone(),
        });
        let owed = self
            .sent
            .keys()
            .filter(|id| !self.routes.contains_key(*id))
            .map(|id| SavedRoute {
                scope: String::new(),
                key: String::new(),
                announce: String::new(),
                withdraw: id.clone(),
            });
        wanted.chain(owed).collect()
    }

    /// Routes ExaBGP may still hold: wanted ones and those whose withdrawal is owed.
    pub fn held_by_exabgp(&self) -> usize {
        self.routes.len()
            + self
                .sent
                .keys()
                .filter(|id| !self.routes.contains_key(*id))
                .count()
    }
}
