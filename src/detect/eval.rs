//! Evaluation: every tick the engine reads each hot key (every key at a window boundary) and
//! judges it. A key's window rolls and feeds its baseline while it is quiet ([`EvalCtx::roll`]);
//! its rates over the window, over the time a fresh key has covered, or over the short window are
//! read against its thresholds (learned baseline, scope population and floors: [`Reading`]); a key
//! over them for `trigger_evals` evaluations starts an alert, and an alert ends after `hold_down`
//! below `end_ratio` of them ([`EvalCtx::eval_active`]).

use crate::alert::{AlertEvent, AttackClass, EndReason, EventKind};
use crate::attribution::Evidence;
use crate::baseline::BaselineParams;
use crate::config::DetectConfig;
use crate::key::{Key, Scope};
use crate::population::Population;
use crate::state::SnapshotEntry;
use crate::time::Timestamp;
use crate::window::{Signal, COUNTERS};

use super::classify::{class_of, one_host_carries_it, request_crowd};
use super::events::end_event;
use super::key_state::{ActiveAlert, KeyState, Phase};
use super::{in_key_order, loaded_entries, quiet, watch_level, Engine};

/// When a request flood at a destination sends its first update ([`EvalCtx::eval_active`]).
const FIRST_RULES_UPDATE_NS: u64 = 2_000_000_000;

impl Engine {
    /// Evaluates keys at time `now`: every key at a window boundary (learning baselines, evicting idle
    /// keys) and at the end of input (`last`), only the hot keys in between.
    pub(super) fn evaluate(&mut self, now: u64, last: bool, out: &mut Vec<AlertEvent>) {
        self.seq += 1;
        let first = out.len();
        self.stats.evaluations += 1;
        let epoch = now / self.window_ns;
        let frac = (now % self.window_ns) as f64 / self.window_ns as f64;
        let boundary = epoch > self.last_epoch;
        let full = last || boundary;
        self.last_epoch = self.last_epoch.max(epoch);
        if boundary {
            self.boundaries += 1;
            self.take_population();
        }
        let mut building = std::mem::replace(&mut self.building, Population::empty());
        // a checkpoint copies each key's baseline as the full pass visits it (learning is done)
        let mut snap = match &mut self.snapshot {
            Some(v) if full && !self.snapshot_ready => Some(v),
            _ => None,
        };
        let tick_ns = self.cfg.tick_ns().max(1);
        let ctx = EvalCtx {
            cfg: &self.cfg,
            now: Timestamp(now),
            epoch,
            tick: now / tick_ns,
            frac,
            window_s: self.window_s,
            window_ns: self.window_ns,
            short_s: 2.0 * tick_ns as f64 / 1e9,
            seq: self.seq,
            last,
            population: &self.population,
            record: self.record_traces,
            silence_unwatched: quiet::silence_is_never_watched(&self.cfg.quiet_hosts),
        };
        for scope in Scope::ALL {
            let table = &mut self.tables[scope.index()];
            let hot = &mut self.hot[scope.index()];
            if full {
                hot.clear();
                let before = table.len();
                table.retain(|key, st| {
                    let keep = ctx.eval_key(scope, *key, st, out, &mut building);
                    if keep && st.is_hot() {
                        hot.push(*key);
                    }
                    if let Some(v) = snap.as_deref_mut() {
                        if keep && st.baseline.samples > 0 {
                            v.push(SnapshotEntry {
                                scope,
                                key: *key,
                                baseline: st.baseline,
                            });
                        }
                    }
                    keep
                });
                if scope.index() >= 2 && table.len() < before {
                    if let Some(a) = self.agg.admission.get_mut(scope.index() - 2) {
                        a.retrack(table.iter().map(|(k, _)| k));
                    }
                }
            } else {
                hot.retain(|key| match table.get_mut(key) {
                    Some(st) => {
                        ctx.eval_key(scope, *key, st, out, &mut building);
                        st.is_hot()
                    }
                    None => false,
                });
            }
        }
        if let Some(v) = snap {
            v.extend(loaded_entries(&self.loaded));
            self.snapshot_ready = true;
        }
        self.building = building;
        in_key_order(&mut out[first..]);
        if boundary {
            if let Some(ex) = &self.exchange {
                ex.publish(self.boundaries, &self.building);
            }
        }
    }

    /// At a window boundary: the population cold keys are held to becomes what every shard recorded
    /// at the previous boundary; recording starts afresh.
    fn take_population(&mut self) {
        match &self.exchange {
            Some(ex) if self.boundaries >= 2 => self.population = ex.wait(self.boundaries - 1),
            Some(_) => {}
            None => std::mem::swap(&mut self.population, &mut self.building),
        }
        self.population.seal();
        self.building.clear();
    }
}

/// Leaves the request signals out of a rate measured over less than a window: a browser opens a
/// dozen connections and sends a burst of requests in a fraction of a second; a request flood is
/// judged on whole windows.
fn sustained_only(rates: &mut [f64; COUNTERS]) {
    for s in Signal::REQUEST_SIGNALS {
        rates[s.index()] = 0.0;
    }
}

/// What one evaluation needs besides the key.
pub(super) struct EvalCtx<'a> {
    pub(super) cfg: &'a DetectConfig,
    pub(super) now: Timestamp,
    pub(super) epoch: u64,
    /// Tick of `now` (a boundary: the short window is the two ticks before it).
    pub(super) tick: u64,
    pub(super) frac: f64,
    pub(super) window_s: f64,
    pub(super) window_ns: u64,
    /// Length of the short window (two ticks), seconds.
    pub(super) short_s: f64,
    pub(super) seq: u64,
    pub(super) last: bool,
    pub(super) population: &'a Population,
    /// Hot keys record their evaluations.
    pub(super) record: bool,
    /// The quiet-host floors never watch a key with no traffic
    /// ([`quiet::silence_is_never_watched`]).
    pub(super) silence_unwatched: bool,
}

/// Rates and thresholds of one key at one evaluation.
pub(super) struct Reading {
    pub(super) est: [f64; COUNTERS],
    pub(super) rates: [f64; COUNTERS],
    pub(super) thresholds: [f64; Signal::THRESHOLDED],
    /// Seconds the rates were measured over: the window, the time a fresh key's traffic has
    /// covered, or the short window.
    pub(super) span_s: f64,
}

/// Signals on which a source's short-window rate over its threshold counts as an evaluation over it
/// (besides its window rate): a single host sending SYNs, ICMP, fragments or reflected traffic at
/// its floor for a fifth of a second is not ordinary traffic, and waiting for its full window to
/// fill names it a second late.
const SOURCE_ATTACK_SIGNALS: [Signal; 4] = [
    Signal::Syn,
    Signal::Icmp,
    Signal::Fragment,
    Signal::Reflection,
];

impl Reading {
    /// The highest ratio rate/threshold among `signals`.
    fn ratio_on(&self, signals: &[Signal]) -> f64 {
        signals
            .iter()
            .map(|s| self.rates[s.index()] / self.thresholds[s.index()])
            .fold(0.0, f64::max)
    }

    /// The thresholded signal furthest over its threshold, with its ratio rate/threshold.
    fn worst(&self) -> (Signal, f64) {
        self.worst_where(|_| true)
    }

    /// [`Reading::worst`] among the signals `keep` keeps.
    fn worst_where(&self, keep: impl Fn(Signal) -> bool) -> (Signal, f64) {
        let mut best = (Signal::Packets, 0.0);
        for s in Signal::ALL[..Signal::THRESHOLDED]
            .iter()
            .filter(|s| keep(**s))
        {
            let r = self.rates[s.index()] / self.thresholds[s.index()];
            if r > best.1 {
                best = (*s, r);
            }
        }
        best
    }
}

impl EvalCtx<'_> {
    /// Evaluates one key; returns false when the key should be evicted.
    fn eval_key(
        &self,
        scope: Scope,
        key: Key,
        st: &mut KeyState,
        out: &mut Vec<AlertEvent>,
        building: &mut Population,
    ) -> bool {
        self.roll(scope, st, building);
        if self.is_silent(scope, st) {
            // every rate is 0: nothing can start, be pending, be watched or be dropped; only the
            // watch levels follow the thresholds (what judge_key would conclude)
            let usual = self.thresholds(scope, st);
            set_watch_levels(st, &usual, self.window_s);
        } else {
            self.judge_key(scope, key, st, out);
        }
        self.keep(st)
    }

    /// Reads a key whose window has rolled to this evaluation and judges it: an alert starts,
    /// updates or ends; a key near its thresholds is pending or watched.
    fn judge_key(&self, scope: Scope, key: Key, st: &mut KeyState, out: &mut Vec<AlertEvent>) {
        let mut r = self.read(scope, st);
        // a quiet host's floor is for whole windows: the short window and the levels at which
        // evidence starts keep the usual thresholds
        let usual = r.thresholds;
        let quiet = self.judge_quiet(scope, st, &mut r);
        if self.record {
            self.trace(st, &r);
        }
        // Subnet keys are for traffic spread over their hosts, which the full window shows; a burst
        // is one host's, and that host's own key has the short window.
        let short = if scope.is_subnet() {
            None
        } else {
            self.read_short(st, &usual)
        };
        let all = r.worst();
        let (signal, ratio) = match all {
            // a crowd's requests are no flood: judged on its packets alone (a flash crowd's SYNs
            // are the `flash_crowd` overload)
            (s, q) if q >= self.cfg.end_ratio && request_crowd(scope, st, s, self.now.0) => {
                r.worst_where(|s| !s.is_request_signal())
            }
            w => w,
        };
        set_watch_levels(st, &usual, self.window_s);
        match std::mem::replace(&mut st.phase, Phase::Idle) {
            prev @ (Phase::Idle | Phase::Pending(_)) => {
                // a source is also judged on its short window for attack signals
                let level = match &short {
                    Some(b) if scope == Scope::SrcHost => {
                        ratio.max(b.ratio_on(&SOURCE_ATTACK_SIGNALS))
                    }
                    _ => ratio,
                };
                let over = level > 1.0;
                let n = match prev {
                    Phase::Pending(n) if over => n.saturating_add(1),
                    Phase::Pending(n) => n,
                    _ => u32::from(over),
                };
                let confirmed = over && (n >= self.cfg.trigger_evals || self.last);
                let burst = short
                    .as_ref()
                    .map(|b| (b, b.worst()))
                    .filter(|(_, (_, q))| *q >= self.cfg.burst_factor);
                let start = if confirmed && ratio > 1.0 {
                    Some((&r, signal))
                } else if confirmed {
                    // a source confirmed on its short window reports what its short window saw
                    short.as_ref().map(|b| (b, b.worst().0))
                } else {
                    burst.map(|(b, (s, _))| (b, s))
                };
                // A sub-second burst of connections that complete their handshakes is a busy
                // client, not an overload: flash crowds are judged on the full window only.
                let start = start.filter(|(reading, s)| {
                    reading.span_s >= self.window_s
                        || class_of(st, reading, *s) != AttackClass::FlashCrowd
                });
                match start {
                    Some((reading, s)) if !one_host_carries_it(scope, st) => {
                        let mut a = self.start(scope, key, st, reading, s);
                        // (the short window never has a quiet floor)
                        a.quiet_host = std::ptr::eq(reading, &r) && quiet.lowered(s);
                        out.push(self.event(EventKind::Start, scope, key, st, &a, reading));
                        st.phase = Phase::Active(Box::new(a));
                        // later events sketch the alert's own packets
                        if let Some(sig) = st.evidence.as_mut().and_then(|e| e.sig.as_mut()) {
                            sig.restart(self.now.0);
                        }
                    }
                    // Over the threshold, or back between end_ratio and it: the count of evaluations
                    // over it is kept (no coin toss for a key that sits at its threshold).
                    _ if n > 0 && level >= self.cfg.end_ratio => {
                        st.phase = Phase::Pending(n);
                    }
                    // near a quiet host's floor with the mark of an attack: its senders are
                    // watched (what the floor waits for)
                    _ if quiet.watching() => watch_packets(scope, st),
                    // no evidence to drop or trim (most keys of ordinary traffic)
                    _ if st.evidence.is_none() => {}
                    _ => {
                        let short_packets = short.as_ref().map_or(0.0, |b| b.est[0]);
                        let packets_quiet = r.worst_where(|s| !s.is_request_signal()).1 < 0.3
                            && st.window.current().n[0] < st.watch_at
                            && short_packets * self.window_s / self.short_s < st.watch_at as f64;
                        if packets_quiet && all.1 < 0.3 {
                            st.evidence = None;
                        } else if packets_quiet {
                            // requests still near their threshold: their clients stay counted,
                            // the packets stop being watched (as a key whose evidence ended)
                            requests_only(scope, st);
                        }
                    }
                }
            }
            Phase::Active(a) => self.eval_active(scope, key, st, a, &r, out),
        }
    }

    /// Judges `r` of a key against the quiet-host floors ([`quiet`]), lowering its thresholds where
    /// they apply; an alert that started on the usual thresholds keeps them.
    fn judge_quiet(&self, scope: Scope, st: &KeyState, r: &mut Reading) -> quiet::Verdict {
        let usual_alert = matches!(&st.phase, Phase::Active(a) if !a.quiet_host);
        if scope != Scope::DstHost || usual_alert {
            return quiet::Verdict::default();
        }
        let params = BaselineParams {
            factor: self.cfg.settings_for(scope, st.profile).1,
            ..self.cfg.baseline
        };
        let host = quiet::Host {
            scope,
            baseline: &st.baseline,
            params: &params,
            evidence: st.evidence.as_deref(),
        };
        quiet::judge(&self.cfg.quiet_hosts, &host, r, self.window_s)
    }

    /// Adds this evaluation to a hot key's trace.
    #[cold]
    fn trace(&self, st: &mut KeyState, r: &Reading) {
        let Some(e) = st.evidence.as_deref_mut() else {
            return;
        };
        let mut point = crate::key_trace::TracePoint {
            ts_ns: self.now.0,
            rates: [0.0; Signal::THRESHOLDED],
            thresholds: [0.0; Signal::THRESHOLDED],
            baselines: [0.0; Signal::THRESHOLDED],
            distinct_peers: u32::try_from(e.distinct_peers()).unwrap_or(u32::MAX),
        };
        for (i, s) in Signal::ALL[..Signal::THRESHOLDED].iter().enumerate() {
            point.rates[i] = r.rates[i] as f32;
            point.thresholds[i] = r.thresholds[i] as f32;
            point.baselines[i] = st.baseline.mean(*s) as f32;
        }
        e.trace.get_or_insert_with(Default::default).push(point);
    }

    /// Evaluates a key in alert: refresh, update, or end after the hold-down.
    fn eval_active(
        &self,
        scope: Scope,
        key: Key,
        st: &mut KeyState,
        mut a: Box<ActiveAlert>,
        r: &Reading,
        out: &mut Vec<AlertEvent>,
    ) {
        let below =
            (0..Signal::THRESHOLDED).all(|i| r.rates[i] < self.cfg.end_ratio * r.thresholds[i]);
        a.peak = a.peak.max(r.rates[a.signal.index()]);
        a.threshold = r.thresholds[a.signal.index()];
        if !below {
            a.last_over = self.now;
        }
        let quiet_ns = self.now.saturating_sub(a.last_over);
        if below && quiet_ns >= self.cfg.hold_down.as_nanos() as u64 {
            out.push(end_event(
                self.cfg,
                scope,
                key,
                st,
                &a,
                self.now,
                EndReason::BelowThreshold,
                self.window_s,
                self.seq,
            ));
            st.evidence = None;
            return;
        }
        let interval = self.cfg.update_interval.as_nanos() as u64;
        // a request flood at a destination sends its first update FIRST_RULES_UPDATE after its
        // start, not a whole interval: by then every client that keeps sending has passed the
        // block test, and the update names them all, with rules (a start comes as soon as the
        // rate is over, before the slower clients have made a visit's worth)
        let first_rules = a.last_update == a.started
            && a.signal.is_request_signal()
            && scope.is_destination()
            && self.now.saturating_sub(a.started) >= FIRST_RULES_UPDATE_NS.min(interval);
        if first_rules || self.now.saturating_sub(a.last_update) >= interval {
            a.last_update = self.now;
            out.push(self.event(EventKind::Update, scope, key, st, &a, r));
        }
        st.phase = Phase::Active(a);
    }

    /// Rolls the key's window to this evaluation's epoch, feeding completed windows to the baseline
    /// while the key is quiet.
    fn roll(&self, scope: Scope, st: &mut KeyState, building: &mut Population) {
        let rolled = st.window.roll(self.epoch);
        let Some(done) = rolled.completed else { return };
        if done.n[0] == 0 {
            st.idle_windows = st.idle_windows.saturating_add(1 + rolled.empty_windows);
        } else {
            st.idle_windows = rolled.empty_windows;
        }
        if matches!(st.phase, Phase::Idle) {
            let mut rates = [0.0; COUNTERS];
            for (r, n) in rates.iter_mut().zip(done.n.iter()) {
                *r = *n as f64 / self.window_s;
            }
            if rolled.empty_windows == 0 {
                for s in &Signal::ALL[..Signal::THRESHOLDED] {
                    building.record(scope, *s, rates[s.index()]);
                }
            }
            let sketching = st.evidence.as_ref().is_some_and(|e| e.sig.is_some());
            if sketching {
                // the reference is a window well under every threshold: a flood that took more
                // than a window to cross its threshold must not become what it is compared with
                let thresholds = self.thresholds(scope, st);
                // (packets: the signature is theirs; a site's ordinary requests may sit near
                // their lower floors)
                let quiet = thresholds
                    .iter()
                    .zip(rates.iter())
                    .zip(Signal::ALL)
                    .all(|((t, r), s)| s.is_request_signal() || *r < 0.5 * t);
                if let Some(sig) = st.evidence.as_mut().and_then(|e| e.sig.as_mut()) {
                    if quiet {
                        sig.quiet_window(self.now.0, self.window_s);
                    }
                }
            }
            let floors = &self.cfg.settings_for(scope, st.profile).0.per_signal;
            st.baseline.learn(&rates, floors, &self.cfg.baseline);
            st.baseline
                .learn_silence(rolled.empty_windows, &self.cfg.baseline);
        }
    }

    /// The key's rates over its window, with its thresholds. A key whose traffic resumed (or began)
    /// less than a window ago, with at least the minimum evidence, is judged on the time since then
    /// (at least the short window) rather than over a window it has not filled: a capture shorter
    /// than the window, or a flood after a silence, shows its real rate.
    fn read(&self, scope: Scope, st: &KeyState) -> Reading {
        let covered_ns = self.now.0.saturating_sub(st.since);
        let both = st.window.both();
        let fresh = covered_ns < self.window_ns
            && both.n[0] >= self.cfg.burst_min_packets
            && u64::from(st.summaries) >= self.min_summaries();
        let (est, span_s) = if fresh {
            let mut est = [0.0; COUNTERS];
            for (e, c) in est.iter_mut().zip(both.n.iter()) {
                *e = *c as f64;
            }
            (est, (covered_ns as f64 / 1e9).max(self.short_s))
        } else {
            (st.window.estimate(self.epoch, self.frac), self.window_s)
        };
        self.reading(scope, st, est, span_s)
    }

    /// The key's rates over the short window, when it is hot and the window holds the minimum
    /// evidence.
    fn read_short(
        &self,
        st: &KeyState,
        thresholds: &[f64; Signal::THRESHOLDED],
    ) -> Option<Reading> {
        let (counts, summaries) = st.evidence.as_ref()?.burst.read(self.tick);
        if counts[0] < self.cfg.burst_min_packets || summaries < self.min_summaries() {
            return None;
        }
        let mut est = [0.0; COUNTERS];
        let mut rates = [0.0; COUNTERS];
        for ((e, r), c) in est.iter_mut().zip(rates.iter_mut()).zip(counts.iter()) {
            *e = *c as f64;
            *r = *e / self.short_s;
        }
        sustained_only(&mut rates);
        Some(Reading {
            est,
            rates,
            thresholds: *thresholds,
            span_s: self.short_s,
        })
    }

    /// Summaries a rate over less than a window needs besides `burst_min_packets` packets: a few
    /// sampled packets standing for thousands must not start an alert on their own.
    fn min_summaries(&self) -> u64 {
        self.cfg.burst_min_packets.min(10)
    }

    fn reading(&self, scope: Scope, st: &KeyState, est: [f64; COUNTERS], span_s: f64) -> Reading {
        let mut rates = [0.0; COUNTERS];
        for (r, e) in rates.iter_mut().zip(est.iter()) {
            *r = e / span_s;
        }
        if span_s < self.window_s {
            sustained_only(&mut rates);
        }
        Reading {
            est,
            rates,
            thresholds: self.thresholds(scope, st),
            span_s,
        }
    }

    /// The key's threshold of every thresholded signal.
    fn thresholds(&self, scope: Scope, st: &KeyState) -> [f64; Signal::THRESHOLDED] {
        let (floors, factor) = self.cfg.settings_for(scope, st.profile);
        let params = BaselineParams {
            factor,
            ..self.cfg.baseline
        };
        let mut thresholds = [0.0; Signal::THRESHOLDED];
        for (i, t) in thresholds.iter_mut().enumerate() {
            let s = Signal::ALL[i];
            let learned = if st.baseline.is_warm(&params) {
                st.baseline.threshold(s, &params)
            } else {
                self.population.quantile(scope, s)
            };
            *t = st
                .baseline
                .floor_for(s, floors.get(s), &params)
                .max(learned);
        }
        thresholds
    }

    /// True for a key with no alert, no evidence and nothing in its window (a key of ordinary
    /// traffic waiting to be evicted), when no quiet floor can watch it.
    fn is_silent(&self, scope: Scope, st: &KeyState) -> bool {
        matches!(st.phase, Phase::Idle)
            && st.evidence.is_none()
            && st.window.is_empty()
            && (scope != Scope::DstHost || self.silence_unwatched)
    }

    /// Whether to keep a key after its evaluation.
    fn keep(&self, st: &KeyState) -> bool {
        !(matches!(st.phase, Phase::Idle)
            && st.window.is_idle()
            && st.idle_windows >= self.cfg.idle_windows.max(1))
    }
}

/// Sets the levels at which a key starts watching its packets and its requests from its usual
/// thresholds `usual`.
fn set_watch_levels(st: &mut KeyState, usual: &[f64; Signal::THRESHOLDED], window_s: f64) {
    st.watch_at = {
        let min_thr = usual[Signal::Syn.index()..=Signal::SynAck.index()]
            .iter()
            .copied()
            .fold(usual[0], f64::min);
        watch_level(min_thr, window_s)
    };
    st.watch_req = {
        let min_thr = Signal::REQUEST_SIGNALS
            .iter()
            .map(|s| usual[s.index()])
            .fold(f64::INFINITY, f64::min);
        u32::try_from(watch_level(min_thr, window_s)).unwrap_or(u32::MAX)
    };
}

/// Starts watching a key's packets (its evidence: senders, ports, short window) unless it already
/// does, keeping the clients of its requests.
fn watch_packets(scope: Scope, st: &mut KeyState) {
    match st.evidence.as_mut() {
        None => st.evidence = Some(Box::new(Evidence::new(scope))),
        Some(e) if !e.packets_watched => {
            let clients = e.clients.take();
            **e = Evidence::new(scope);
            e.clients = clients;
        }
        Some(_) => {}
    }
}

/// Drops the packet part of a key's evidence, keeping the clients of its requests.
fn requests_only(scope: Scope, st: &mut KeyState) {
    if let Some(e) = st.evidence.as_mut().filter(|e| e.packets_watched) {
        let clients = e.clients.take();
        **e = Evidence::for_requests(scope);
        e.clients = clients;
    }
}

#[cfg(test)]
mod tests {
    use super::super::key_state::At;
    use super::*;
    use crate::config::QuietFloors;
    use crate::window::Counts;

    /// A key made at window 0 that saw no traffic (a baseline warmed on 2 packets a second when
    /// `warm`), or only request signals when `requests`.
    fn quiet_key(cfg: &DetectConfig, scope: Scope, warm: bool, requests: bool) -> KeyState {
        let at = At {
            ts: 0,
            epoch: 0,
            tick: 0,
            ticks_per_window: 10,
        };
        let mut st = KeyState::new(&at, 3, None, 0);
        if warm {
            let floors = &cfg.settings_for(scope, 0).0.per_signal;
            let mut rates = [0.0; COUNTERS];
            rates[Signal::Packets.index()] = 2.0;
            rates[Signal::Bytes.index()] = 120.0;
            for _ in 0..cfg.baseline.mature_windows.max(1) * 2 {
                st.baseline.learn(&rates, floors, &cfg.baseline);
            }
        }
        if requests {
            let mut c = Counts::default();
            c.n[Signal::HttpRequests.index()] = 5;
            st.window.record(0, &c);
        }
        st
    }

    fn ctx<'a>(cfg: &'a DetectConfig, population: &'a Population, epoch: u64) -> EvalCtx<'a> {
        let (window_ns, tick_ns) = (cfg.window_ns(), cfg.tick_ns());
        EvalCtx {
            cfg,
            now: Timestamp(epoch * window_ns),
            epoch,
            tick: epoch * window_ns / tick_ns,
            frac: 0.0,
            window_s: cfg.window.as_secs_f64(),
            window_ns,
            short_s: 2.0 * tick_ns as f64 / 1e9,
            seq: 1,
            last: false,
            population,
            record: false,
            silence_unwatched: quiet::silence_is_never_watched(&cfg.quiet_hosts),
        }
    }

    #[test]
    fn a_silent_key_is_judged_as_reading_it_would() {
        let zero_floors = DetectConfig {
            quiet_hosts: QuietFloors {
                per_signal: [0.0; 4],
            },
            ..DetectConfig::default()
        };
        let population = Population::new();
        let key = Key::host(std::net::Ipv4Addr::new(198, 51, 100, 7).into());
        let mut shortcuts = 0;
        for (zero, cfg) in [(false, DetectConfig::default()), (true, zero_floors)] {
            for scope in Scope::ALL {
                for (warm, requests, epoch) in [
                    (false, false, 1),
                    (true, false, 1),
                    (true, false, 3),
                    (true, true, 1),
                ] {
                    let c = ctx(&cfg, &population, epoch);
                    let case = format!("{scope:?} warm {warm} requests {requests} epoch {epoch}");
                    let mut a = quiet_key(&cfg, scope, warm, requests);
                    let mut b = quiet_key(&cfg, scope, warm, requests);
                    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
                    let (mut pop_a, mut pop_b) = (Population::new(), Population::new());
                    let keep_a = c.eval_key(scope, key, &mut a, &mut out_a, &mut pop_a);
                    c.roll(scope, &mut b, &mut pop_b);
                    let silent = c.is_silent(scope, &b);
                    shortcuts += usize::from(silent);
                    // a window of requests alone is not silent; nor is a destination host under
                    // a zero quiet floor
                    let full_path = requests || (zero && scope == Scope::DstHost);
                    assert_eq!(silent, !full_path, "{case}");
                    c.judge_key(scope, key, &mut b, &mut out_b);
                    let keep_b = c.keep(&b);
                    let seen = |st: &KeyState| {
                        (
                            st.watch_at,
                            st.watch_req,
                            st.baseline,
                            st.evidence.is_some(),
                            matches!(st.phase, Phase::Idle),
                        )
                    };
                    assert_eq!((keep_a, seen(&a)), (keep_b, seen(&b)), "{case}");
                    assert_eq!((out_a.len(), out_b.len()), (0, 0), "{case}");
                    // why a zero quiet floor keeps the shortcut away from destination hosts: it
                    // watches a warm host that receives nothing
                    if zero && scope == Scope::DstHost && warm && !requests {
                        assert!(b.evidence.is_some(), "{case}");
                    }
                }
            }
        }
        assert!(shortcuts >= 20, "{shortcuts}");
    }
}
