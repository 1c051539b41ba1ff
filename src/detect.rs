//! Detection: the [`Engine`] that turns packet summaries into alert events.
//!
//! For every (scope, key) it owns, the engine keeps a sliding window ([`crate::window`]), a learned
//! baseline ([`crate::baseline`]) and an alert state. Packets only increment counters; every `tick` of
//! packet time the engine evaluates each key: a key whose rate of some signal exceeds
//! `max(floor, baseline-derived threshold)` for `trigger_evals` evaluations in a row starts an alert;
//! an active alert sends an update at most every `update_interval` and ends once every signal has
//! stayed under `end_ratio × threshold` for `hold_down`.
//!
//! The engine never reads a clock and never spawns a thread: the pipeline runs one engine per shard and
//! each engine keeps only the keys whose hash falls in its shard.
//!
//! This file holds the [`Engine`] itself: its fields, construction, the clock steps it is driven
//! by, the end of input and reconfiguration. The rest follows the packet's path, one file a stage:
//!
//! - `shard`: which scopes a packet counts in, its key in each, which shard owns each key;
//! - [`aggregator`]: a tick's packets folded per (scope, key) where they arrive;
//! - `counting`: the aggregates counted into the tables, one lookup per key;
//! - `key_state`: what is kept per key, and how one key's aggregate is absorbed into it;
//! - `eval`: every tick, the hot keys (at window boundaries, every key) read against their
//!   thresholds, alerts started and ended; `quiet`: the lower floors of quiet hosts;
//! - `classify`: what an alert is called;
//! - `events`: the `start`, `update` and `end` events of an alert;
//! - `snapshot`: learned baselines loaded, saved and checkpointed; `persist`: the whole engine
//!   saved and restored.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::FixedState;

use crate::alert::{AlertEvent, EndReason};
use crate::attribution::Evidence;
use crate::baseline::Baseline;
use crate::clock::{Clock, ClockStats, TimeStep};
use crate::config::{ConfigError, DetectConfig};
use crate::key::{Key, Scope};
use crate::population::{Population, PopulationExchange};
use crate::state::SnapshotEntry;
use crate::table::{KeyTable, SourceAdmission, TableStats};
use crate::time::Timestamp;
use crate::window::{Signal, Sliding};

pub mod aggregator;
mod classify;
mod counting;
mod eval;
mod events;
mod key_state;
mod persist;
mod quiet;
mod shard;
mod snapshot;

pub use aggregator::{Aggregator, TickAggregate, Tracking};
pub use classify::classify;
pub use shard::{key_of, scopes_of, Ownership, ScopeMask, ShardSpec};

use events::end_event;
use key_state::{ActiveAlert, KeyState, Phase};
use snapshot::loaded_entries;

impl Drop for Engine {
    /// A shard that stops early (even by a panic) must not leave the others waiting for it.
    fn drop(&mut self) {
        if let Some(ex) = self.exchange.take() {
            ex.leave();
        }
    }
}

/// Counters the engine keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Packets counted: by an engine fed packets itself ([`Engine::on_packet`], `count_many`),
    /// those in at least one scope it owns; of a router's aggregates, every packet, by shard 0.
    pub packets: u64,
    /// Packets stamped earlier than one already seen, counted at the later time (by the engine's own
    /// clock: zero when a router keeps the time).
    pub late_packets: u64,
    /// Forward jumps longer than the hold-down that were skipped in one step, and backward jumps
    /// longer than a window that restarted the windows (as `late_packets`).
    pub time_jumps: u64,
    /// Evaluations run.
    pub evaluations: u64,
    /// Packets left out by `ignore` / `ours` networks (by [`Engine::on_packet`]; the router counts
    /// them when it keeps the time).
    pub ignored_packets: u64,
    /// Per scope: the table counters.
    pub tables: [TableStats; 4],
    /// Per scope: keys held now.
    pub keys: [usize; 4],
}

/// The detection engine of one shard.
pub struct Engine {
    cfg: DetectConfig,
    shard: ShardSpec,
    ownership: Ownership,
    tables: [KeyTable<KeyState>; 4],
    window_ns: u64,
    window_s: f64,
    /// The stream's clock when this engine sees every packet ([`Engine::on_packet`]); a router keeps
    /// it instead when packets are routed ([`Engine::apply`], [`Engine::count`]), and the engine
    /// only uses its cached window numbers.
    clock: Clock,
    /// Steps of `clock` waiting to be applied (kept to reuse the allocation).
    steps: Vec<TimeStep>,
    /// Latest packet time the steps have moved to (what [`Engine::finish`] evaluates at).
    now: Option<Timestamp>,
    /// Epoch of the last evaluation.
    last_epoch: u64,
    /// Evaluations so far: the order of events across shards.
    seq: u64,
    watch_default: u64,
    /// Loaded baselines of keys not seen yet: a key takes its own when it enters its table.
    loaded: HashMap<(Scope, Key), Baseline, FixedState>,
    /// Per scope: keys gathering evidence or alerting, evaluated at every tick; the rest only at
    /// window boundaries (nothing can cross a threshold without first becoming hot).
    hot: [Vec<Key>; 4],
    /// Window boundaries crossed (the same count in every shard).
    boundaries: u64,
    /// The population cold keys are held to (every shard's, from the previous boundary).
    population: Population,
    /// The population being recorded at this boundary.
    building: Population,
    /// Where shards swap populations; None when this engine owns every key.
    exchange: Option<Arc<PopulationExchange>>,
    /// Hot keys keep a trace of their evaluations, handed over with their alert's end event.
    record_traces: bool,
    /// A checkpoint asked for: filled during the next full evaluation, then ready.
    snapshot: Option<Vec<SnapshotEntry>>,
    snapshot_ready: bool,
    stats: EngineStats,
    /// Packets counted but not yet in the tables (admission included: the sketches live there).
    agg: Aggregator,
}

impl Engine {
    /// An engine for `shard` running `cfg`.
    pub fn new(cfg: DetectConfig, shard: ShardSpec) -> Result<Engine, ConfigError> {
        cfg.validate()?;
        let count = shard.count.max(1);
        let seed = cfg.hash_seed;
        let table = |scope: Scope| {
            let cap = (cfg.max_keys[scope.index()] / count).max(16);
            KeyTable::new(cap, seed.wrapping_add(scope.index() as u64))
        };
        let tables = Scope::ALL.map(table);
        let watch_default = watch_level(min_floor(&cfg, Scope::DstHost), cfg.window.as_secs_f64());
        Ok(Engine {
            window_ns: cfg.window_ns(),
            window_s: cfg.window.as_secs_f64(),
            ownership: Ownership::new(&cfg, count),
            shard: ShardSpec {
                index: shard.index,
                count,
            },
            tables,
            clock: Clock::new(&cfg),
            steps: Vec::new(),
            now: None,
            last_epoch: 0,
            seq: 0,
            watch_default,
            loaded: HashMap::with_hasher(FixedState::with_seed(seed)),
            hot: Default::default(),
            boundaries: 0,
            population: Population::new(),
            building: Population::new(),
            exchange: None,
            record_traces: false,
            snapshot: None,
            snapshot_ready: false,
            stats: EngineStats::default(),
            agg: Aggregator::new(&cfg, Tracking::Tables),
            cfg,
        })
    }

    /// Applies one step of the stream's clock (from [`Clock::accept`] or [`Clock::advance_to`]).
    pub fn apply(&mut self, step: TimeStep, out: &mut Vec<AlertEvent>) {
        self.absorb_pending();
        match step {
            TimeStep::Start(ts) => self.start_at(ts),
            TimeStep::Evaluate(now) => {
                self.now = Some(self.now.map_or(Timestamp(now), |t| t.max(Timestamp(now))));
                self.evaluate(now, false, out);
            }
            TimeStep::Restart { from, to } => self.restart_at(from, to, out),
        }
    }

    /// Runs every evaluation due up to `now` (the live clock tick calls this during silence).
    pub fn advance_to(&mut self, now: Timestamp, out: &mut Vec<AlertEvent>) {
        let mut steps = std::mem::take(&mut self.steps);
        self.clock.advance_to(now, &mut steps);
        for step in steps.drain(..) {
            self.apply(step, out);
        }
        self.steps = steps;
    }

    /// Ends the input: a last evaluation at the latest packet time (a key over its threshold starts
    /// even without its confirming evaluations, since none will follow), then every active alert ends
    /// with `reason`.
    pub fn finish(&mut self, reason: EndReason, out: &mut Vec<AlertEvent>) {
        let now = self.clock.now().or(self.now);
        self.finish_at(now, reason, out);
    }

    /// [`Engine::finish`] at `now`, the stream's latest packet time as the router's clock has it
    /// (a shard may not have seen the latest packet itself).
    pub fn finish_at(
        &mut self,
        now: Option<Timestamp>,
        reason: EndReason,
        out: &mut Vec<AlertEvent>,
    ) {
        self.absorb_pending();
        if let Some(ex) = self.exchange.take() {
            ex.leave();
        }
        let Some(now) = now.or(self.now) else { return };
        self.evaluate(now.0, true, out);
        self.seq += 1;
        let first = out.len();
        for scope in Scope::ALL {
            let seq = self.seq;
            let window_s = self.window_s;
            let cfg = &self.cfg;
            self.tables[scope.index()].for_each_mut(|key, st| {
                if let Phase::Active(a) = std::mem::replace(&mut st.phase, Phase::Idle) {
                    out.push(end_event(
                        cfg, scope, *key, st, &a, now, reason, window_s, seq,
                    ));
                }
            });
        }
        in_key_order(&mut out[first..]);
    }

    /// Hot keys record their evaluations ([`crate::key_trace::KeyTrace`]); each alert's `end` event
    /// carries its key's trace (for `report` and `--record`; costs about 30 KB a hot key).
    pub fn record_traces(&mut self, on: bool) {
        self.record_traces = on;
    }

    /// Shares scope populations with the other shards (the pipeline gives every shard the same one).
    pub fn set_population_exchange(&mut self, exchange: Arc<PopulationExchange>) {
        self.exchange = Some(exchange);
    }

    /// The sequence number of the last evaluation: every event with `seq` ≤ this has been emitted.
    pub fn watermark(&self) -> u64 {
        self.seq
    }

    /// Counters so far.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats;
        let ClockStats {
            late_packets,
            time_jumps,
        } = self.clock.stats();
        s.late_packets = late_packets;
        s.time_jumps = time_jumps;
        for (i, t) in self.tables.iter().enumerate() {
            s.tables[i] = t.stats;
            s.keys[i] = t.len();
        }
        s
    }

    /// The settings.
    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// Runs on `cfg` from now on (a SIGHUP reload), keeping every key, baseline and open alert.
    /// `cfg` must lay out windows and tables as the running settings do
    /// ([`DetectConfig::reload_changes`]); one that does not is refused and nothing changes.
    pub fn reconfigure(&mut self, mut cfg: DetectConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        self.absorb_pending();
        self.cfg
            .reload_changes(&cfg)
            .map_err(ConfigError::NotReloadable)?;
        cfg.hash_seed = self.cfg.hash_seed;
        self.watch_default = watch_level(min_floor(&cfg, Scope::DstHost), cfg.window.as_secs_f64());
        self.agg.reconfigure(&cfg);
        // which [[prefix]] each key falls under: the list may have changed
        for scope in Scope::ALL {
            self.tables[scope.index()].for_each_mut(|key, st| st.profile = cfg.profile_of(*key));
        }
        self.cfg = cfg;
        Ok(())
    }

    /// The stream starts at `ts`.
    fn start_at(&mut self, ts: Timestamp) {
        self.now = Some(ts);
        self.last_epoch = ts.0 / self.window_ns;
    }

    /// Restarts the windows at an earlier time `ts` (a capture that jumps back): open alerts end at the
    /// old clock, baselines are kept.
    fn restart_at(&mut self, clock: Timestamp, ts: Timestamp, out: &mut Vec<AlertEvent>) {
        self.seq += 1;
        let first = out.len();
        let epoch = ts.0 / self.window_ns;
        for scope in Scope::ALL {
            let seq = self.seq;
            let cfg = &self.cfg;
            let window_s = self.window_s;
            self.tables[scope.index()].for_each_mut(|key, st| {
                if let Phase::Active(a) = std::mem::replace(&mut st.phase, Phase::Idle) {
                    out.push(end_event(
                        cfg,
                        scope,
                        *key,
                        st,
                        &a,
                        clock,
                        EndReason::BelowThreshold,
                        window_s,
                        seq,
                    ));
                }
                st.phase = Phase::Idle;
                st.window = Sliding::new(epoch);
                st.evidence = None;
            });
            self.hot[scope.index()].clear();
        }
        in_key_order(&mut out[first..]);
        self.start_at(ts);
    }

    /// Whether this shard keeps `key` of `scope` ([`Ownership`]).
    #[inline]
    fn owns(&self, scope: Scope, key: &Key) -> bool {
        self.ownership.owner(scope, key) == self.shard.index
    }
}

/// Puts the events of one evaluation in (scope, key, kind) order, the order the pipeline writes
/// them in ([`AlertEvent::order_key`]). Keys are evaluated in the order of their hash tables, which
/// depends on the tables' history (a restored engine's tables hold the same keys in other slots):
/// in key order, what an engine emits depends only on what it holds.
fn in_key_order(events: &mut [AlertEvent]) {
    if events.len() > 1 {
        events.sort_by_key(|e| e.order_key());
    }
}

/// The source-key admission for `cfg`: a key enters a source table after 1 % of the lowest source
/// floor's packets in one window (at least 4).
pub fn admission_for(cfg: &DetectConfig) -> SourceAdmission {
    SourceAdmission::new(admission_min_count(cfg))
}

/// The packets in a window a source key needs to enter its table under `cfg`.
pub(super) fn admission_min_count(cfg: &DetectConfig) -> u32 {
    let min = min_floor(cfg, Scope::SrcHost).min(min_floor(cfg, Scope::SrcSubnet));
    (min * cfg.window.as_secs_f64() * 0.01).max(4.0) as u32
}

/// The lowest packet-rate floor of a scope (bytes excluded).
fn min_floor(cfg: &DetectConfig, scope: Scope) -> f64 {
    Signal::ALL[..Signal::THRESHOLDED]
        .iter()
        .filter(|s| **s != Signal::Bytes && !s.is_request_signal())
        .map(|s| cfg.floors_of(scope).get(*s))
        .fold(f64::INFINITY, f64::min)
}

/// Packets in a window at which a key starts gathering evidence: 30 % of its lowest threshold.
fn watch_level(min_threshold_pps: f64, window_s: f64) -> u64 {
    (min_threshold_pps * window_s * 0.3).max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AttackClass, EventKind};
    use crate::baseline::BaselineParams;
    use crate::clock::Stamp;
    use crate::decode::{proto, tcp_flags, Fragment, PacketSummary};
    use std::net::IpAddr;

    pub(super) const T0: u64 = 1_764_079_200 * Timestamp::NANOS_PER_SEC;
    const VICTIM: [u8; 4] = [198, 51, 100, 10];

    pub(super) fn syn(ts: u64, src: u32) -> PacketSummary {
        syn_to(ts, src, IpAddr::from(VICTIM))
    }

    /// A SYN to port 80 of `dst` from the IPv4 address `src` (its port derived from it).
    pub(super) fn syn_to(ts: u64, src: u32, dst: IpAddr) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(ts),
            src: IpAddr::from(src.to_be_bytes()),
            dst,
            proto: proto::TCP,
            sport: (src % 60_000) as u16 + 1024,
            dport: 80,
            tcp_flags: tcp_flags::SYN,
            tcp_num: 0,
            wire_len: 60,
            fragment: Fragment::None,
            weight: 1,
            hdr: crate::decode::HeaderFields::UNKNOWN,
        }
    }

    #[test]
    fn a_reconfigured_engine_keeps_its_keys_and_alerts_on_the_new_floors() {
        let ms = 1_000_000;
        let high = DetectConfig {
            floors: crate::config::Floors::all_scopes(1e6),
            ..DetectConfig::default()
        };
        let mut e = Engine::new(high.clone(), ShardSpec::SOLE).unwrap();
        let mut out = Vec::new();
        // 3 s of 5 000 SYN/s: nothing over floors of a million
        for i in 0..15_000u64 {
            e.on_packet(&syn(T0 + i * ms / 5, i as u32), &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        let keys = e.stats().keys;
        // a window change is refused and nothing changes
        let wider = DetectConfig {
            window: std::time::Duration::from_secs(2),
            ..high.clone()
        };
        assert!(e.reconfigure(wider).is_err());
        assert_eq!(e.config().window, std::time::Duration::from_secs(1));
        let low = DetectConfig {
            hash_seed: 99, // ignored: the tables are hashed with the running seed
            ..DetectConfig::default()
        };
        e.reconfigure(low).unwrap();
        assert_eq!(e.config().hash_seed, high.hash_seed);
        assert_eq!(e.stats().keys, keys, "keys kept");
        for i in 15_000..25_000u64 {
            e.on_packet(&syn(T0 + i * ms / 5, i as u32), &mut out);
        }
        assert!(
            out.iter()
                .any(|a| a.event == EventKind::Start && a.class == AttackClass::SynFlood),
            "{out:?}"
        );
    }

    fn udp(ts: u64, src: u32, sport: u16, fragment: Fragment) -> PacketSummary {
        udp_to(ts, src, IpAddr::from(VICTIM), sport, fragment)
    }

    /// A 1500-byte UDP packet (or fragment) to port 4444 of `dst`.
    pub(super) fn udp_to(
        ts: u64,
        src: u32,
        dst: IpAddr,
        sport: u16,
        fragment: Fragment,
    ) -> PacketSummary {
        PacketSummary {
            proto: proto::UDP,
            sport,
            dport: 4444,
            tcp_flags: 0,
            fragment,
            wire_len: 1500,
            ..syn_to(ts, src, dst)
        }
    }

    /// Background: 50 pps of SYN from 50 clients to the victim, plus a flood of `flood_pps` from
    /// `flood_start_s` for `flood_s` seconds, built with `make`.
    fn run(
        shards: usize,
        secs: u64,
        flood: Option<(u64, u64, u64)>,
        make: impl Fn(u64, u32) -> PacketSummary,
    ) -> Vec<AlertEvent> {
        let mut packets = Vec::new();
        for i in 0..secs * 50 {
            packets.push(syn(T0 + i * 20_000_000, 0x6440_0000 + (i % 50) as u32));
        }
        if let Some((start, dur, pps)) = flood {
            let gap = Timestamp::NANOS_PER_SEC / pps;
            for i in 0..dur * pps {
                let src = (i as u32).wrapping_mul(2_654_435_761) | 1;
                packets.push(make(
                    T0 + start * Timestamp::NANOS_PER_SEC + i * gap + 7,
                    src,
                ));
            }
        }
        packets.sort_by_key(|p| p.ts);
        let mut all = Vec::new();
        for index in 0..shards {
            let cfg = DetectConfig {
                hash_seed: 42,
                ..DetectConfig::default()
            };
            let mut e = Engine::new(
                cfg,
                ShardSpec {
                    index,
                    count: shards,
                },
            )
            .unwrap();
            for p in &packets {
                e.on_packet(p, &mut all);
            }
            e.finish(EndReason::EndOfInput, &mut all);
        }
        all.sort_by_key(|e| e.order_key());
        all
    }

    #[test]
    fn counting_runs_of_packets_equals_counting_one_at_a_time() {
        // A flood on one victim from a heavy source and spoofed ones, with other destinations
        // breaking the runs: the remembered last key of each scope must change nothing.
        let mut packets = Vec::new();
        for i in 0..120_000u64 {
            let ts = T0 + i * 50_000;
            let src = match i % 5 {
                0 | 1 => 0xcb00_7105,
                _ => (i as u32).wrapping_mul(2_654_435_761) | 1,
            };
            let mut p = syn(ts, src);
            if i % 97 == 0 {
                p.dst = IpAddr::from([203, 0, 113, (i % 7) as u8]);
            }
            packets.push(p);
        }
        let cfg = DetectConfig {
            hash_seed: 42,
            ..DetectConfig::default()
        };
        let mut one = Engine::new(cfg.clone(), ShardSpec { index: 0, count: 1 }).unwrap();
        let mut one_out = Vec::new();
        for p in &packets {
            one.on_packet(p, &mut one_out);
        }
        one.finish(EndReason::EndOfInput, &mut one_out);

        // the packets between two clock steps, handed over in runs of `chunk`
        let by_runs = |chunk: usize| {
            let mut runs = Engine::new(cfg.clone(), ShardSpec { index: 0, count: 1 }).unwrap();
            let mut out = Vec::new();
            let mut clock = Clock::new(&cfg);
            let mut steps = Vec::new();
            let mut pending: Vec<(PacketSummary, Stamp, ScopeMask)> = Vec::new();
            let count =
                |runs: &mut Engine, pending: &mut Vec<(PacketSummary, Stamp, ScopeMask)>| {
                    for part in pending.chunks(chunk) {
                        runs.count_many(part.iter().map(|(p, s, m)| (p, *s, *m)));
                    }
                    pending.clear();
                };
            for p in &packets {
                let stamp = clock.accept(p.ts, &mut steps);
                if !steps.is_empty() {
                    count(&mut runs, &mut pending);
                    for step in steps.drain(..) {
                        runs.apply(step, &mut out);
                    }
                }
                let mut p = *p;
                p.ts = stamp.at;
                pending.push((p, stamp, scopes_of(&cfg, &p)));
            }
            count(&mut runs, &mut pending);
            runs.finish_at(clock.now(), EndReason::EndOfInput, &mut out);
            (out, runs.stats(), runs.baselines())
        };
        let (runs_out, runs_stats, runs_baselines) = by_runs(usize::MAX);
        assert!(
            one_out.iter().any(|e| e.event == EventKind::Start),
            "the flood raised nothing: the test shows nothing"
        );
        // a tick's aggregate is the same however its packets arrive: byte-identical output
        for chunk in [1, 37, 256] {
            let (out, stats, baselines) = by_runs(chunk);
            assert_eq!(out, runs_out, "runs of {chunk}");
            assert_eq!((stats, baselines), (runs_stats, runs_baselines.clone()));
        }
        // one summary at a time (aggregates of one) counts exactly the same; only what is sampled
        // (top peers and ports, distinct peers) may differ
        let exact = |e: &AlertEvent| {
            (
                e.event,
                e.id.clone(),
                e.ts,
                e.class,
                e.packets,
                e.bytes,
                e.pps.to_bits(),
                e.peak_pps.to_bits(),
            )
        };
        assert_eq!(
            one_out.iter().map(exact).collect::<Vec<_>>(),
            runs_out.iter().map(exact).collect::<Vec<_>>()
        );
        assert_eq!(one.stats(), runs_stats);
        assert_eq!(one.baselines(), runs_baselines);
    }

    #[test]
    fn syn_flood_starts_within_a_second_and_ends_after_hold_down() {
        let ev = run(1, 40, Some((10, 5, 20_000)), syn);
        let start = ev
            .iter()
            .find(|e| e.event == EventKind::Start && e.scope == Scope::DstHost)
            .expect("no start");
        assert_eq!(start.class, AttackClass::SynFlood);
        assert_eq!(start.key.to_string(), "198.51.100.10");
        let delay = start
            .ts
            .saturating_sub(Timestamp(T0 + 10 * Timestamp::NANOS_PER_SEC));
        assert!(
            delay <= Timestamp::NANOS_PER_SEC,
            "started {delay} ns after the flood"
        );
        assert_eq!(start.top_ports.first().map(|p| p.port), Some(80));
        // Spoofed one-packet sources are not named as "top peers" with inflated counts; the 50 real
        // background clients (one packet each per second) may be.
        assert!(start.top_peers.iter().all(|p| p.packets >= 2));
        let end = ev
            .iter()
            .find(|e| e.event == EventKind::End && e.id == start.id)
            .expect("no end");
        assert_eq!(end.reason, Some(EndReason::BelowThreshold));
        let d = end.duration_s.unwrap();
        assert!((14.0..=17.0).contains(&d), "duration {d}");
        assert!(end.packets >= 100_000, "end packets {}", end.packets);
        // Spoofed one-packet sources never get src_host alerts.
        assert!(ev.iter().all(|e| e.scope != Scope::SrcHost));
    }

    #[test]
    fn background_alone_raises_nothing() {
        assert!(run(1, 60, None, syn).is_empty());
    }

    #[test]
    fn output_is_identical_across_shard_counts() {
        let one = run(1, 30, Some((10, 5, 20_000)), syn);
        assert!(!one.is_empty());
        for n in [2, 3, 4] {
            assert_eq!(
                run(n, 30, Some((10, 5, 20_000)), syn),
                one,
                "{n} shards differ"
            );
        }
    }

    #[test]
    fn reflection_is_named_by_source_port_even_when_fragmented() {
        let snmp = run(1, 20, Some((10, 3, 5_000)), |ts, src| {
            udp(ts, src % 4000, 161, Fragment::None)
        });
        let s = snmp
            .iter()
            .find(|e| e.event == EventKind::Start && e.scope == Scope::DstHost)
            .unwrap();
        assert_eq!(s.class, AttackClass::SnmpAmplification);
        // DNS responses in three fragments, only the first carrying the UDP header.
        let dns = run(1, 20, Some((10, 3, 6_000)), |ts, src| match (ts / 7) % 3 {
            0 => udp(ts, src % 500, 53, Fragment::First),
            n => udp(
                ts,
                src % 500,
                0,
                Fragment::Later {
                    offset: 1480 * n as u16,
                },
            ),
        });
        let s = dns
            .iter()
            .find(|e| e.event == EventKind::Start && e.scope == Scope::DstHost)
            .unwrap();
        assert_eq!(s.class, AttackClass::DnsAmplification);
    }

    #[test]
    fn a_capture_shorter_than_a_tick_still_alerts_at_the_end() {
        let mut e = Engine::new(DetectConfig::default(), ShardSpec::SOLE).unwrap();
        let mut out = Vec::new();
        for i in 0..4000u64 {
            e.on_packet(
                &udp(T0 + i * 5_000, i as u32, 161, Fragment::None),
                &mut out,
            );
        }
        assert!(out.is_empty());
        e.finish(EndReason::EndOfInput, &mut out);
        let kinds: Vec<_> = out
            .iter()
            .filter(|e| e.scope == Scope::DstHost)
            .map(|e| e.event)
            .collect();
        assert_eq!(kinds, vec![EventKind::Start, EventKind::End]);
        assert_eq!(out[out.len() - 1].reason, Some(EndReason::EndOfInput));
    }

    #[test]
    fn time_jumps_do_not_walk_every_empty_tick() {
        let mut e = Engine::new(DetectConfig::default(), ShardSpec::SOLE).unwrap();
        let mut out = Vec::new();
        e.on_packet(&syn(T0, 1), &mut out);
        // Twenty years later, then back again.
        let later = T0 + 20 * 365 * 86_400 * Timestamp::NANOS_PER_SEC;
        e.on_packet(&syn(later, 2), &mut out);
        e.on_packet(&syn(T0 + 5, 3), &mut out);
        let s = e.stats();
        assert!(s.evaluations < 10, "{} evaluations", s.evaluations);
        assert_eq!(s.time_jumps, 2);
        // A small step back is clamped, not a jump.
        e.on_packet(&syn(T0 + 4, 4), &mut out);
        assert_eq!(e.stats().late_packets, 1);
    }

    #[test]
    fn packets_stamped_at_the_end_of_u64_end_in_a_few_evaluations() {
        // The next tick used to saturate at u64::MAX and be evaluated again and again, forever.
        let mut e = Engine::new(DetectConfig::default(), ShardSpec::SOLE).unwrap();
        let mut out = Vec::new();
        e.on_packet(&syn(T0, 1), &mut out);
        for i in 0..3 {
            e.on_packet(&syn(u64::MAX - i, 2), &mut out);
        }
        e.advance_to(Timestamp(u64::MAX), &mut out);
        e.finish(EndReason::EndOfInput, &mut out);
        let s = e.stats();
        assert!(s.evaluations < 10, "{} evaluations", s.evaluations);
        assert_eq!(s.time_jumps, 1);
    }

    #[test]
    fn a_pending_count_at_its_limit_does_not_overflow() {
        // One evaluation per 1 ms tick for 50 days over threshold (a subnet one host carries, or a
        // config-file trigger of u32::MAX) reaches the u32 limit of the pending count.
        let cfg = DetectConfig {
            trigger_evals: u32::MAX,
            burst_factor: 1e12,
            ..DetectConfig::default()
        };
        let mut e = Engine::new(cfg, ShardSpec::SOLE).unwrap();
        let mut out = Vec::new();
        let flood = |e: &mut Engine, out: &mut Vec<AlertEvent>, from_ms: u64| {
            for i in 0..20_000u64 {
                e.on_packet(&syn(T0 + from_ms * 1_000_000 + i * 100_000, i as u32), out);
            }
        };
        flood(&mut e, &mut out, 0);
        let mut pending = 0;
        e.tables[Scope::DstHost.index()].for_each_mut(|_, st| {
            if matches!(st.phase, Phase::Pending(_)) {
                st.phase = Phase::Pending(u32::MAX);
                pending += 1;
            }
        });
        assert_eq!(pending, 1, "the victim is pending");
        flood(&mut e, &mut out, 2_000);
        assert!(out
            .iter()
            .any(|a| a.event == EventKind::Start && a.scope == Scope::DstHost));
    }

    #[test]
    fn cold_keys_are_held_to_their_scope_population() {
        // 100 servers known (from saved baselines) to run at 200 UDP packets/s each; then a new one at
        // 150 pps. Its floor (5 × 10) would flag it, but the population's 99th percentile (200) says
        // 150 is normal here. The same newcomer alone, with no population, alerts.
        let dst = |i: u32| IpAddr::from((0xc633_6400u32 + i).to_be_bytes());
        let run = |with_servers: bool| {
            let cfg = DetectConfig {
                floors: crate::config::Floors::all_scopes(10.0),
                ..DetectConfig::default()
            };
            let mut e = Engine::new(cfg, ShardSpec::SOLE).unwrap();
            let mut known = Baseline {
                samples: 100,
                ..Baseline::default()
            };
            for s in [Signal::Packets, Signal::Udp] {
                known.rates[s.index()].mean = 200.0;
            }
            known.rates[Signal::Bytes.index()].mean = 300_000.0;
            let entries: Vec<_> = (0..100)
                .map(|i| known.to_entry(Scope::DstHost, Key::host(dst(i))))
                .collect();
            e.load_baselines(&entries);
            let mut out = Vec::new();
            for ms in 0..10_000u64 {
                let ts = T0 + ms * 1_000_000;
                for i in 0..100u32 {
                    if with_servers && ms % 5 == u64::from(i % 5) {
                        e.on_packet(
                            &PacketSummary {
                                dst: dst(i),
                                ..udp(ts, 7, 4444, Fragment::None)
                            },
                            &mut out,
                        );
                    }
                }
                if ms >= 5_000 && ms % 20 < 3 {
                    e.on_packet(
                        &PacketSummary {
                            dst: dst(200),
                            ..udp(ts, 8, 4444, Fragment::None)
                        },
                        &mut out,
                    );
                }
            }
            let newcomer = Key::host(dst(200));
            out.iter()
                .any(|a| a.key == newcomer && a.scope == Scope::DstHost)
        };
        assert!(
            !run(true),
            "the newcomer alerted despite its busy population"
        );
        assert!(run(false), "the newcomer alone should alert at its floor");
    }

    /// Feeds `packets` (sorted here) to one engine with `cfg`; the events, in order.
    fn replay_with(cfg: DetectConfig, mut packets: Vec<PacketSummary>) -> Vec<AlertEvent> {
        packets.sort_by_key(|p| p.ts);
        let mut e = Engine::new(cfg, ShardSpec::SOLE).unwrap();
        let mut out = Vec::new();
        for p in &packets {
            e.on_packet(p, &mut out);
        }
        e.finish(EndReason::EndOfInput, &mut out);
        out
    }

    /// `n` packets made by `make` evenly over `[from_ns, from_ns + len_ns)`.
    fn spread(
        from_ns: u64,
        len_ns: u64,
        n: u64,
        make: impl Fn(u64, u32) -> PacketSummary,
    ) -> Vec<PacketSummary> {
        (0..n)
            .map(|i| {
                make(
                    from_ns + i * len_ns / n,
                    (i as u32).wrapping_mul(2_654_435_761) | 1,
                )
            })
            .collect()
    }

    fn victim_start(out: &[AlertEvent]) -> Option<&AlertEvent> {
        out.iter().find(|a| {
            a.event == EventKind::Start
                && a.scope == Scope::DstHost
                && a.key == Key::host(IpAddr::from(VICTIM))
        })
    }

    #[test]
    fn a_burst_after_silence_alerts_on_the_time_it_covered() {
        // other traffic for 5 s, then 1 000 SYNs in 40 ms to a silent victim, then nothing
        let mut packets = spread(T0, 5 * Timestamp::NANOS_PER_SEC, 500, |ts, src| {
            let mut p = syn(ts, src);
            p.dst = IpAddr::from([203, 0, 113, 7]);
            p.tcp_flags = tcp_flags::ACK;
            p
        });
        let burst_at = T0 + 5 * Timestamp::NANOS_PER_SEC + 33_000_000;
        packets.extend(spread(burst_at, 40_000_000, 1000, syn));
        let out = replay_with(DetectConfig::default(), packets);
        let a = victim_start(&out).expect("the burst alerts");
        assert_eq!(a.class, AttackClass::SynFlood);
        assert!(a.ts.0 - burst_at <= 200_000_000, "{} ns", a.ts.0 - burst_at);
        assert!(a.window_s < 1.0, "judged over {} s", a.window_s);
        // the same burst with too little evidence (60 SYNs in 2 ms) stays quiet
        let out = replay_with(
            DetectConfig::default(),
            spread(burst_at, 2_000_000, 60, syn),
        );
        assert!(victim_start(&out).is_none(), "{out:?}");
    }

    /// 20 s of 200 SYN/s to the victim from `T0` on.
    fn background_syns() -> Vec<PacketSummary> {
        spread(T0, 20 * Timestamp::NANOS_PER_SEC, 4000, syn)
    }

    /// Asserts the alert `a` (on `what`) started at most `max_ms` after `at`.
    #[track_caller]
    fn started_within(a: &AlertEvent, at: u64, max_ms: u64, what: &str) {
        let after_ns = a.ts.0 - at;
        assert!(
            after_ns <= max_ms * 1_000_000,
            "{what}: after {} ms",
            after_ns / 1_000_000
        );
    }

    #[test]
    fn a_capture_shorter_than_the_window_is_judged_on_its_span() {
        // 4 000 SYNs in 25 ms and the capture ends: the sliding window would read 4 000/s over a
        // whole second; the span it covered says far more, and it alerts either way at the end
        let out = replay_with(
            DetectConfig::default(),
            spread(T0 + 10_000_000, 25_000_000, 4000, syn),
        );
        let a = victim_start(&out).expect("alerts at the end of input");
        assert!(a.pps >= 10_000.0, "{} pps", a.pps);
    }

    #[test]
    fn a_flood_at_twice_the_threshold_over_background_starts_within_300_ms() {
        for offset_ms in [0u64, 33, 67] {
            let mut packets = background_syns();
            let flood_at = T0 + 10 * Timestamp::NANOS_PER_SEC + offset_ms * 1_000_000;
            packets.extend(spread(flood_at, 5 * Timestamp::NANOS_PER_SEC, 10_000, syn));
            let out = replay_with(DetectConfig::default(), packets);
            let a = victim_start(&out).expect("the flood alerts");
            started_within(a, flood_at, 300, &format!("offset {offset_ms} ms"));
        }
    }

    #[test]
    fn a_short_burst_far_above_the_floor_over_background_alerts() {
        // 10x the SYN floor for 50 ms over a steady 200 SYN/s: the full window never fills
        let mut packets = background_syns();
        let at = T0 + 10 * Timestamp::NANOS_PER_SEC + 61_000_000;
        packets.extend(spread(at, 50_000_000, 500, syn));
        let out = replay_with(DetectConfig::default(), packets.clone());
        let a = victim_start(&out).expect("the burst alerts");
        started_within(a, at, 300, "the burst");
        // a burst of 3x for 50 ms does not reach 1.5x over the short window
        let mut calm = background_syns();
        calm.extend(spread(at, 50_000_000, 150, syn));
        assert!(victim_start(&replay_with(DetectConfig::default(), calm)).is_none());
    }

    #[test]
    fn a_source_at_its_floor_is_named_without_a_coin_toss() {
        // one source at 1.1x the SYN floor among a spoofed flood on the victim
        for rate in [1100u64, 1250, 1500] {
            let heavy = 0xcb00_7105u32;
            let mut packets = background_syns();
            let at = T0 + 10 * Timestamp::NANOS_PER_SEC + 17_000_000;
            // the source was already talking to the victim (its key is not fresh)
            packets.extend(spread(T0, 10 * Timestamp::NANOS_PER_SEC, 1000, |ts, _| {
                syn(ts, heavy)
            }));
            // Poisson arrivals: the window's count wanders around the floor
            let mut rng = crate::fixtures::XorShift(0x2545_f491_4f6c_dd1du64 ^ rate);
            let mut ts = at;
            while ts < at + 5 * Timestamp::NANOS_PER_SEC {
                let u = ((rng.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                ts += (-u.ln() * 1e9 / rate as f64) as u64;
                packets.push(syn(ts, heavy));
            }
            packets.extend(spread(at, 5 * Timestamp::NANOS_PER_SEC, 20_000, syn));
            let out = replay_with(DetectConfig::default(), packets);
            let src = out
                .iter()
                .find(|a| a.event == EventKind::Start && a.scope == Scope::SrcHost)
                .unwrap_or_else(|| panic!("{rate}/s: no src_host alert"));
            assert_eq!(src.key, Key::host(IpAddr::from(heavy.to_be_bytes())));
            // its full window alone would take about a second at 1.1x
            started_within(src, at, 600, &format!("{rate}/s"));
        }
    }

    #[test]
    fn a_long_learned_low_normal_lowers_the_floor() {
        // 10 SYN/s for 20 minutes, then 200 SYN/s (20x, a fifth of the floor) for 20 s
        let minutes = 20;
        let learn = minutes * 60 * Timestamp::NANOS_PER_SEC;
        let mut packets = spread(
            T0,
            learn + 30 * Timestamp::NANOS_PER_SEC,
            (minutes * 60 + 30) * 10,
            syn,
        );
        let at = T0 + learn + 3_000_000;
        packets.extend(spread(at, 20 * Timestamp::NANOS_PER_SEC, 4000, syn));
        let out = replay_with(DetectConfig::default(), packets.clone());
        let a = victim_start(&out).expect("20x over a mature baseline alerts");
        assert!(
            a.threshold_pps < 1000.0 && a.threshold_pps >= 100.0,
            "{}",
            a.threshold_pps
        );
        assert!(a.ts.0 - at <= 2 * Timestamp::NANOS_PER_SEC);
        // learned floors off, or not mature yet: the floor holds
        let off = DetectConfig {
            baseline: BaselineParams {
                learned_floor: 1.0,
                ..BaselineParams::default()
            },
            ..DetectConfig::default()
        };
        assert!(victim_start(&replay_with(off, packets.clone())).is_none());
        let young = DetectConfig {
            baseline: BaselineParams {
                mature_windows: 3600,
                ..BaselineParams::default()
            },
            ..DetectConfig::default()
        };
        assert!(victim_start(&replay_with(young, packets)).is_none());
    }
}
