//! [`Engine::save_state`] and [`Engine::restore_state`]: the whole state of a sole engine as
//! bytes, for a standby detector that takes over from a killed one (issue 15). The layout and its
//! primitives are in [`crate::engine_state`]; each type writes its own fields beside them.

use std::time::Duration;

use super::*;
use crate::alert::AttackClass;
use crate::engine_state::{Dec, Enc, EngineStateError, MAGIC, VERSION};

type R<T> = Result<T, EngineStateError>;

/// Settings that do not fit a saved state: the engine state codec sits below the settings, so the
/// conversion lives here, where both are known.
impl From<ConfigError> for EngineStateError {
    fn from(err: ConfigError) -> Self {
        EngineStateError::Config(Box::new(err))
    }
}

impl Engine {
    /// Appends the complete state of this engine to `out`: the settings that lay out its windows
    /// and tables, the clock, every key's window, baseline, alert phase and evidence, the hot lists,
    /// the admission sketches, the loaded baselines, the populations and the counters. A standby
    /// that restores it with [`Engine::restore_state`] and is fed the packets that followed emits
    /// exactly the events and counters this engine would have. A checkpoint asked for with
    /// [`Engine::request_snapshot`] and not taken yet is not part of it.
    ///
    /// Only a sole engine ([`ShardSpec::SOLE`], no [`PopulationExchange`]) can be saved: a shard's
    /// output depends on the others.
    pub fn save_state(&mut self, out: &mut Vec<u8>) -> Result<(), EngineStateError> {
        // what is aggregated but not counted yet is counted first: the state holds no aggregate
        self.settle();
        if self.shard.count != 1 {
            return Err(EngineStateError::Sharded {
                index: self.shard.index,
                count: self.shard.count,
            });
        }
        if self.exchange.is_some() {
            return Err(EngineStateError::Exchange);
        }
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let mut e = Enc::new(out);
        // the settings that lay out windows and tables (what `reconfigure` cannot change)
        let cfg = &self.cfg;
        e.var(cfg.window_ns());
        e.var(cfg.tick_ns());
        e.u8(cfg.subnet_v4);
        e.u8(cfg.subnet_v6);
        for m in cfg.max_keys {
            e.usize(m);
        }
        e.raw64(cfg.hash_seed);

        self.clock.save(&mut e);
        e.opt_ts(self.now);
        e.var(self.last_epoch);
        e.var(self.seq);
        e.var(self.boundaries);
        e.var(self.agg.admission_epoch);
        for a in &self.agg.admission {
            a.save(&mut e);
        }
        e.bool(self.record_traces);
        e.var(self.stats.packets);
        e.var(self.stats.evaluations);
        e.var(self.stats.ignored_packets);
        self.population.save(&mut e);
        self.building.save(&mut e);
        e.usize(self.loaded.len());
        for (&(scope, key), b) in &self.loaded {
            e.scope(scope);
            e.key(key);
            save_baseline(&mut e, b);
        }
        for table in &self.tables {
            table.save(&mut e, save_key_state);
        }
        for hot in &self.hot {
            e.usize(hot.len());
            for k in hot {
                e.key(*k);
            }
        }
        Ok(())
    }

    /// An engine that continues from `bytes` (written by [`Engine::save_state`]) under `cfg`.
    ///
    /// `cfg` may differ from the saved engine's settings as far as [`Engine::reconfigure`] allows
    /// (floors, trigger, hold-down, prefixes, …: the restored engine runs on `cfg` from now on, as
    /// after a reload); window, tick, subnet prefix lengths and max_keys must be the saved ones,
    /// and the hash seed stays the saved one. A blob that is cut short, corrupt or of another
    /// version is an error, never a panic, and what is allocated for it stays within a few times
    /// its length.
    pub fn restore_state(cfg: DetectConfig, bytes: &[u8]) -> Result<Engine, EngineStateError> {
        if !bytes.starts_with(&MAGIC) {
            return Err(EngineStateError::Magic);
        }
        let mut d = Dec::new(bytes);
        d.take(MAGIC.len(), "the magic")?;
        let version = u16::from_le_bytes(d.array("the version")?);
        if version != VERSION {
            return Err(EngineStateError::Version {
                found: version,
                supported: VERSION,
            });
        }
        let window_ns = d.count("the saved window")?;
        let tick_ns = d.count("the saved tick")?;
        let subnet_v4 = d.u8("the saved subnet_v4")?;
        let subnet_v6 = d.u8("the saved subnet_v6")?;
        let mut max_keys = [0usize; 4];
        for m in &mut max_keys {
            *m = d.usize("the saved max_keys")?;
        }
        let hash_seed = d.raw64("the saved hash seed")?;
        let saved = DetectConfig {
            window: Duration::from_nanos(window_ns),
            tick: Duration::from_nanos(tick_ns),
            subnet_v4,
            subnet_v6,
            max_keys,
            hash_seed,
            ..cfg.clone()
        };
        saved
            .validate()
            .map_err(|err| d.corrupt(format!("the saved settings are invalid ({err})")))?;
        let mut e = Engine::new(saved, ShardSpec::SOLE)?;
        // fails fast, before the keys are read, on settings the saved engine cannot run on
        e.reconfigure(cfg.clone())?;

        e.clock = Clock::load(&mut d, &e.cfg)?;
        e.now = d.opt_ts("the latest packet time")?;
        e.last_epoch = d.count("the last evaluated window")?;
        e.seq = d.count("the evaluation sequence")?;
        e.boundaries = d.count("the window boundaries")?;
        e.agg.admission_epoch = d.count("the admission window")?;
        for a in &mut e.agg.admission {
            a.load(&mut d)?;
        }
        e.record_traces = d.bool("the trace flag")?;
        e.stats.packets = d.count("the packet counter")?;
        e.stats.evaluations = d.count("the evaluation counter")?;
        e.stats.ignored_packets = d.count("the ignored packet counter")?;
        e.population = Population::load(&mut d)?;
        e.building = Population::load(&mut d)?;
        let n = d.len("the loaded baselines", 1 + 6 + 1 + 9 * 8)?;
        e.loaded.reserve(n);
        for _ in 0..n {
            let scope = d.scope()?;
            let key = d.key()?;
            let b = load_baseline(&mut d)?;
            if e.loaded.insert((scope, key), b).is_some() {
                return Err(d.corrupt(format!("{scope} {key} has two loaded baselines")));
            }
        }
        for table in &mut e.tables {
            table.load(&mut d, |d, _| load_key_state(d))?;
        }
        for hot in &mut e.hot {
            let n = d.len("a hot list", 6)?;
            *hot = (0..n).map(|_| d.key()).collect::<R<Vec<Key>>>()?;
        }
        d.finish()?;
        // which [[prefix]] each key falls under, from `cfg`, as a reload does
        e.reconfigure(cfg)?;
        Ok(e)
    }
}

fn save_baseline(e: &mut Enc, b: &Baseline) {
    e.var(u64::from(b.samples));
    for r in &b.rates {
        e.f32(r.mean);
        e.f32(r.var);
    }
}

fn load_baseline(d: &mut Dec) -> R<Baseline> {
    let mut b = Baseline {
        samples: d.u32("a baseline's samples")?,
        ..Baseline::default()
    };
    for r in &mut b.rates {
        r.mean = d.f32("a baseline's mean")?;
        r.var = d.f32("a baseline's variance")?;
    }
    Ok(b)
}

fn save_key_state(e: &mut Enc, st: &KeyState) {
    st.window.save(e);
    save_baseline(e, &st.baseline);
    e.var(st.packets);
    e.var(st.bytes);
    match &st.phase {
        Phase::Idle => e.u8(0),
        Phase::Pending(n) => {
            e.u8(1);
            e.var(u64::from(*n));
        }
        Phase::Active(a) => {
            // 3: an alert that started on a quiet host's floor (the same layout; files without
            // one read as before)
            e.u8(if a.quiet_host { 3 } else { 2 });
            e.bytes(a.id.as_bytes());
            e.u8(AttackClass::ALL
                .iter()
                .position(|c| *c == a.class)
                .unwrap_or(0) as u8);
            e.u8(a.signal.index() as u8);
            e.ts(a.started);
            e.ts(a.last_over);
            e.ts(a.last_update);
            e.f64(a.peak);
            e.f64(a.threshold);
            e.var(a.base_packets);
            e.var(a.base_bytes);
        }
    }
    e.opt(st.evidence.as_ref(), |e, ev| ev.save(e));
    e.var(st.watch_at);
    e.var(u64::from(st.watch_req));
    e.var(st.since);
    e.var(u64::from(st.summaries));
    e.var(u64::from(st.tick));
    e.var(u64::from(st.tick_packets));
    e.var(u64::from(st.amp_vote.0));
    e.var(u64::from(st.amp_vote.1));
    e.var(st.idle_windows);
    e.var(u64::from(st.profile));
}

fn load_key_state(d: &mut Dec) -> R<KeyState> {
    let window = Sliding::load(d)?;
    let baseline = load_baseline(d)?;
    let packets = d.count("a key's packets")?;
    let bytes = d.count("a key's bytes")?;
    let phase = match d.u8("an alert phase")? {
        0 => Phase::Idle,
        1 => Phase::Pending(d.u32("a pending count")?),
        2 => Phase::Active(Box::new(load_alert(d, false)?)),
        3 => Phase::Active(Box::new(load_alert(d, true)?)),
        p => return Err(d.corrupt(format!("alert phase {p} does not exist"))),
    };
    let evidence = d.opt("the evidence flag", |d| Evidence::load(d).map(Box::new))?;
    Ok(KeyState {
        window,
        baseline,
        packets,
        bytes,
        phase,
        evidence,
        watch_at: d.count("a key's watch level")?,
        watch_req: d.u32("a key's request watch level")?,
        since: d.count("a key's start")?,
        summaries: d.u32("a key's summaries")?,
        tick: d.u32("a key's tick")?,
        tick_packets: d.u32("a key's tick packets")?,
        amp_vote: (
            d.u16("a key's amplifier port")?,
            d.u32("a key's amplifier vote")?,
        ),
        idle_windows: d.count("a key's idle windows")?,
        profile: d.u16("a key's profile")?,
    })
}

fn load_alert(d: &mut Dec, quiet_host: bool) -> R<ActiveAlert> {
    let id = d.bytes("an alert id")?;
    let id = std::str::from_utf8(id)
        .map_err(|_| d.corrupt("an alert id is not UTF-8"))?
        .to_owned();
    let class = d.u8("an alert class")?;
    let class = AttackClass::ALL
        .get(usize::from(class))
        .copied()
        .ok_or_else(|| d.corrupt(format!("alert class {class} does not exist")))?;
    let signal = d.u8("an alert signal")?;
    let signal = Signal::ALL[..Signal::THRESHOLDED]
        .get(usize::from(signal))
        .copied()
        .ok_or_else(|| d.corrupt(format!("alert signal {signal} has no threshold")))?;
    Ok(ActiveAlert {
        id,
        class,
        signal,
        started: d.ts("an alert's start")?,
        last_over: d.ts("an alert's last time over")?,
        last_update: d.ts("an alert's last update")?,
        peak: d.f64("an alert's peak")?,
        threshold: d.f64("an alert's threshold")?,
        base_packets: d.count("an alert's packets")?,
        base_bytes: d.count("an alert's bytes")?,
        quiet_host,
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;
    use crate::alert::{EndReason, EventKind};
    use crate::decode::{proto, tcp_flags, Fragment, PacketSummary};
    use crate::detect::key_state::At;

    const T0: u64 = 1_764_079_200 * Timestamp::NANOS_PER_SEC;
    const SEC: u64 = Timestamp::NANOS_PER_SEC;
    const MS: u64 = 1_000_000;

    fn ip(v: u32) -> IpAddr {
        IpAddr::from(v.to_be_bytes())
    }

    fn pkt(ts: u64, src: u32, dst: u32) -> PacketSummary {
        crate::detect::tests::syn_to(ts, src, ip(dst))
    }

    use crate::fixtures::XorShift as Rng;

    const VICTIM: u32 = 0xc633_640a; // 198.51.100.10

    /// 50 clients at 1 SYN/s each plus an ACK each to the victim (`secs` seconds).
    fn background(secs: u64, out: &mut Vec<PacketSummary>) {
        for i in 0..secs * 50 {
            let ts = T0 + i * 20 * MS;
            let client = 0x6440_0000 + (i % 50) as u32;
            out.push(pkt(ts, client, VICTIM));
            out.push(PacketSummary {
                tcp_flags: tcp_flags::ACK,
                ..pkt(ts + 3 * MS, client, VICTIM)
            });
        }
    }

    /// A SYN flood from spoofed sources with one heavy real source, from 10 s to 14 s, over 30 s
    /// of background: the alert starts, updates and ends.
    fn syn_flood() -> Vec<PacketSummary> {
        let mut v = Vec::new();
        background(30, &mut v);
        let mut r = Rng(7);
        for i in 0..4 * 6_000u64 {
            let ts = T0 + 10 * SEC + i * SEC / 6_000 + 11;
            let src = if i % 4 == 0 {
                0xcb00_7105
            } else {
                r.next() as u32 | 1
            };
            v.push(pkt(ts, src, VICTIM));
        }
        v.sort_by_key(|p| p.ts);
        v
    }

    /// DNS reflection with fragments from 400 reflectors onto a /24, some summaries sampled
    /// (weight 8), from 5 s to 8 s.
    fn reflection() -> Vec<PacketSummary> {
        let mut v = Vec::new();
        background(12, &mut v);
        let mut r = Rng(11);
        for i in 0..3 * 4_000u64 {
            let ts = T0 + 5 * SEC + i * SEC / 4_000 + 5;
            let src = 0x0a00_0000 + r.below(400) as u32;
            let dst = 0xc633_6500 + r.below(40) as u32;
            let (sport, fragment) = match i % 3 {
                // NTP among the DNS: the amplifier port vote is contested
                0 if i % 7 == 0 => (123, Fragment::None),
                0 => (53, Fragment::First),
                n => (
                    0,
                    Fragment::Later {
                        offset: 1480 * n as u16,
                    },
                ),
            };
            v.push(PacketSummary {
                weight: if i % 10 == 0 { 8 } else { 1 },
                ..crate::detect::tests::udp_to(ts, src, ip(dst), sport, fragment)
            });
        }
        v.sort_by_key(|p| p.ts);
        v
    }

    /// Benign mixed traffic (TCP, UDP, ICMP, IPv6) among a few hundred hosts, with a capture that
    /// jumps back in time and a long silence: no alert, every clock path.
    fn benign() -> Vec<PacketSummary> {
        let mut v = Vec::new();
        let mut r = Rng(3);
        let push = |ts: u64, r: &mut Rng| {
            let src = 0x6440_0000 + r.below(300) as u32;
            let dst = 0xc633_6400 + r.below(30) as u32;
            let mut p = pkt(ts, src, dst);
            match r.below(4) {
                0 => p.tcp_flags = tcp_flags::ACK | tcp_flags::PSH,
                1 => {
                    p.proto = proto::UDP;
                    p.tcp_flags = 0;
                    p.dport = 53;
                }
                2 => {
                    p.proto = proto::ICMP;
                    p.tcp_flags = 0;
                    p.sport = 0;
                    p.dport = 0;
                }
                _ => {
                    p.src = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, src as u16]);
                    p.dst = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, dst as u16]);
                }
            }
            p
        };
        for i in 0..20_000u64 {
            v.push(push(T0 + i * SEC / 1_000, &mut r));
        }
        // a second file starting earlier, then a silence of a minute
        for i in 0..5_000u64 {
            v.push(push(T0 + 3 * SEC + i * SEC / 1_000, &mut r));
        }
        for i in 0..5_000u64 {
            v.push(push(T0 + 70 * SEC + i * SEC / 1_000, &mut r));
        }
        v
    }

    /// Thousands of short-lived hosts and chatty sources: the tables fill (rejections), admission
    /// defers, and idle keys are evicted. A quarter of the summaries are heavily sampled (weight
    /// 1 000), so the stream's load raises the admission bar.
    fn churn() -> Vec<PacketSummary> {
        let mut v = Vec::new();
        let mut r = Rng(5);
        for i in 0..40_000u64 {
            let ts = T0 + i * SEC / 2_000;
            let second = (i / 2_000) as u32;
            let dst = 0xc633_0000 + second * 256 + r.below(150) as u32;
            let src = 0x6440_0000 + second * 64 + r.below(60) as u32;
            let mut p = pkt(ts, src, dst);
            if i % 4 == 0 {
                p.src = ip(0x0a0a_0000 + r.below(4) as u32);
                p.weight = 1_000;
            }
            v.push(p);
        }
        v
    }

    fn churn_cfg() -> DetectConfig {
        DetectConfig {
            max_keys: [64, 16, 64, 16],
            idle_windows: 2,
            hash_seed: 99,
            floors: crate::config::Floors::all_scopes(300.0),
            ..DetectConfig::default()
        }
    }

    fn flood_cfg() -> DetectConfig {
        DetectConfig {
            hash_seed: 42,
            ..DetectConfig::default()
        }
    }

    /// A stream, its settings and whether the engine records traces and loads baselines.
    struct Case {
        name: &'static str,
        cfg: DetectConfig,
        packets: Vec<PacketSummary>,
        traces: bool,
        /// When the flood starts (keys become hot in the packets after it).
        onset: u64,
    }

    fn cases() -> &'static [Case] {
        static CASES: OnceLock<Vec<Case>> = OnceLock::new();
        CASES.get_or_init(|| {
            vec![
                Case {
                    name: "syn_flood",
                    onset: T0 + 10 * SEC,
                    cfg: flood_cfg(),
                    packets: syn_flood(),
                    traces: true,
                },
                Case {
                    name: "reflection",
                    onset: T0 + 5 * SEC,
                    cfg: flood_cfg(),
                    packets: reflection(),
                    traces: false,
                },
                Case {
                    name: "benign",
                    onset: T0 + 3 * SEC,
                    cfg: flood_cfg(),
                    packets: benign(),
                    traces: false,
                },
                Case {
                    name: "churn",
                    onset: T0 + SEC,
                    cfg: churn_cfg(),
                    packets: churn(),
                    traces: false,
                },
            ]
        })
    }

    fn fresh(case: &Case) -> Engine {
        let mut e = Engine::new(case.cfg.clone(), ShardSpec::SOLE).unwrap();
        e.record_traces(case.traces);
        // baselines of a key that shows up and of one that never does
        let mut b = Baseline {
            samples: 40,
            ..Baseline::default()
        };
        b.rates[0].mean = 100.0;
        e.load_baselines(&[
            b.to_entry(Scope::DstHost, Key::host(ip(VICTIM))),
            b.to_entry(Scope::SrcHost, Key::host(ip(0x0102_0304))),
        ]);
        e
    }

    fn json(events: &[AlertEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect()
    }

    /// What a run shows: its events as JSON, its counters, its baselines (sorted).
    #[derive(Debug, PartialEq)]
    struct Outcome {
        events: Vec<String>,
        /// The end events' traces (not part of the JSON line).
        traces: Vec<Option<Box<crate::key_trace::KeyTrace>>>,
        stats: EngineStats,
        baselines: Vec<String>,
    }

    fn outcome(e: &mut Engine, mut events: Vec<AlertEvent>) -> Outcome {
        e.finish(EndReason::EndOfInput, &mut events);
        let mut baselines: Vec<String> = e
            .baselines()
            .iter()
            .map(|b| serde_json::to_string(b).unwrap())
            .collect();
        baselines.sort();
        Outcome {
            traces: events.iter().map(|e| e.trace.clone()).collect(),
            events: json(&events),
            stats: e.stats(),
            baselines,
        }
    }

    /// The case run straight through, and what each packet left behind (events so far, counters).
    struct Straight {
        outcome: Outcome,
        events_after: Vec<usize>,
        stats_after: Vec<EngineStats>,
    }

    fn straight(i: usize) -> &'static Straight {
        static RUNS: OnceLock<Vec<Straight>> = OnceLock::new();
        let runs = RUNS.get_or_init(|| {
            cases()
                .iter()
                .map(|case| {
                    let mut e = fresh(case);
                    let mut out = Vec::new();
                    let mut events_after = Vec::new();
                    let mut stats_after = Vec::new();
                    for p in &case.packets {
                        e.on_packet(p, &mut out);
                        events_after.push(out.len());
                        stats_after.push(e.stats());
                    }
                    Straight {
                        outcome: outcome(&mut e, out),
                        events_after,
                        stats_after,
                    }
                })
                .collect()
        });
        &runs[i]
    }

    /// Runs `case` with a save and a restore (into a new engine) after each packet count in `at`.
    fn resumed(case: &Case, at: &[usize]) -> Outcome {
        let mut e = fresh(case);
        let mut out = Vec::new();
        let mut blob = Vec::new();
        for (i, p) in case.packets.iter().enumerate() {
            if at.contains(&i) {
                blob.clear();
                e.save_state(&mut blob).unwrap();
                drop(e);
                e = Engine::restore_state(case.cfg.clone(), &blob)
                    .unwrap_or_else(|err| panic!("{}: restore at {i}: {err}", case.name));
            }
            e.on_packet(p, &mut out);
        }
        if at.contains(&case.packets.len()) {
            blob.clear();
            e.save_state(&mut blob).unwrap();
            e = Engine::restore_state(case.cfg.clone(), &blob).unwrap();
        }
        outcome(&mut e, out)
    }

    fn assert_same(case: &Case, i: usize, at: &[usize]) {
        let want = &straight(i).outcome;
        let got = resumed(case, at);
        assert_eq!(
            got.stats, want.stats,
            "{}: stats after a restore at {at:?}",
            case.name
        );
        assert_eq!(
            got.events.len(),
            want.events.len(),
            "{}: at {at:?}",
            case.name
        );
        for (n, (g, w)) in got.events.iter().zip(&want.events).enumerate() {
            assert_eq!(g, w, "{}: event {n} after a restore at {at:?}", case.name);
        }
        assert_eq!(got.traces, want.traces, "{}: traces at {at:?}", case.name);
        assert_eq!(got.baselines, want.baselines, "{}: at {at:?}", case.name);
    }

    /// Interesting places to stop: evenly spread, around window boundaries, right after the
    /// first events (mid-alert), after the first evictions and rejections.
    fn stops(case: &Case, run: &Straight) -> Vec<usize> {
        let n = case.packets.len();
        let mut at: Vec<usize> = (0..=12).map(|i| i * n / 12).collect();
        at.push(1);
        let window = case.cfg.window_ns();
        let boundaries: Vec<usize> = (1..n)
            .filter(|&i| case.packets[i].ts.0 / window != case.packets[i - 1].ts.0 / window)
            .collect();
        for b in boundaries.iter().step_by(5).take(6) {
            at.extend([b - 1, *b, b + 1]);
        }
        // the packets right after the onset: keys become hot, start watching, vote
        let onset = case.packets.partition_point(|p| p.ts.0 < case.onset);
        at.extend((0..40).map(|i| onset + i * i / 2).filter(|k| *k <= n));
        let mut firsts = Vec::new();
        if let Some(i) = run.events_after.iter().position(|&c| c > 0) {
            firsts.push(i);
        }
        let evicted = |s: &EngineStats| s.tables.iter().map(|t| t.evicted).sum::<u64>();
        let rejected = |s: &EngineStats| s.tables.iter().map(|t| t.rejected).sum::<u64>();
        firsts.extend(run.stats_after.iter().position(|s| evicted(s) > 0));
        firsts.extend(run.stats_after.iter().position(|s| rejected(s) > 0));
        for f in firsts {
            at.extend(
                [f, f + 1, f + 50, f + 2_000]
                    .into_iter()
                    .filter(|k| *k <= n),
            );
        }
        at.sort_unstable();
        at.dedup();
        at
    }

    #[test]
    fn the_streams_show_what_the_restores_are_tested_on() {
        let flood = &straight(0).outcome;
        assert!(flood
            .events
            .iter()
            .any(|e| e.contains("\"event\":\"start\"")));
        assert!(flood
            .events
            .iter()
            .any(|e| e.contains("\"event\":\"update\"")));
        assert!(flood.events.iter().any(|e| e.contains("below_threshold")));
        assert!(flood.traces.iter().any(|t| t.is_some()));
        assert!(straight(1)
            .outcome
            .events
            .iter()
            .any(|e| e.contains("dns_amplification")));
        let benign = &straight(2).outcome;
        assert!(benign.events.is_empty(), "{:?}", benign.events);
        assert!(benign.stats.time_jumps >= 2, "{:?}", benign.stats);
        let churn = straight(3).outcome.stats;
        assert!(
            churn.tables[0].evicted > 0 && churn.tables[0].rejected > 0,
            "{churn:?}"
        );
        assert!(
            churn.tables[2].deferred > 0 && churn.tables[2].inserted > 0,
            "{churn:?}"
        );
    }

    #[test]
    fn an_alert_started_on_a_quiet_host_floor_stays_one_when_restored() {
        for quiet_host in [false, true] {
            let at = At {
                ts: T0,
                epoch: T0 / SEC,
                tick: T0 / (SEC / 10),
                ticks_per_window: 10,
            };
            let mut st = KeyState::new(&at, 300, None, 0);
            st.phase = Phase::Active(Box::new(ActiveAlert {
                id: "dst_host/198.51.100.10/syn_flood/1".into(),
                class: AttackClass::SynFlood,
                signal: Signal::Syn,
                started: Timestamp(T0),
                last_over: Timestamp(T0),
                last_update: Timestamp(T0),
                peak: 300.0,
                threshold: 200.0,
                quiet_host,
                base_packets: 1,
                base_bytes: 60,
            }));
            let mut buf = Vec::new();
            save_key_state(&mut Enc::new(&mut buf), &st);
            let back = load_key_state(&mut Dec::new(&buf)).unwrap();
            match back.phase {
                Phase::Active(a) => assert_eq!((a.quiet_host, a.threshold), (quiet_host, 200.0)),
                p => panic!("{p:?}"),
            }
        }
    }

    #[test]
    fn a_restored_engine_continues_exactly_as_the_saved_one_would_have() {
        for (i, case) in cases().iter().enumerate() {
            for k in stops(case, straight(i)) {
                assert_same(case, i, &[k]);
            }
        }
    }

    #[test]
    fn restores_one_after_another_change_nothing() {
        for (i, case) in cases().iter().enumerate() {
            let n = case.packets.len();
            let at: Vec<usize> = (0..=40).map(|j| j * n / 40).collect();
            assert_same(case, i, &at);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn a_restore_after_any_packet_changes_nothing(case in 0usize..4, frac in 0.0f64..=1.0) {
            let c = &cases()[case];
            let k = (frac * c.packets.len() as f64) as usize;
            assert_same(c, case, &[k]);
        }
    }

    /// The state of the flood case stopped mid-alert (evidence, traces, hot keys, populations).
    fn mid_alert_blob() -> &'static [u8] {
        static BLOB: OnceLock<Vec<u8>> = OnceLock::new();
        BLOB.get_or_init(|| {
            let case = &cases()[0];
            let mut e = fresh(case);
            let mut out = Vec::new();
            for p in case.packets.iter().take_while(|p| p.ts.0 < T0 + 12 * SEC) {
                e.on_packet(p, &mut out);
            }
            assert!(out.iter().any(|a| a.event == EventKind::Start));
            let mut blob = Vec::new();
            e.save_state(&mut blob).unwrap();
            blob
        })
    }

    /// Restores `bytes`; when that works, the engine must also run on without a panic.
    fn restore_and_run(bytes: &[u8]) -> Result<(), EngineStateError> {
        let mut e = Engine::restore_state(flood_cfg(), bytes)?;
        let mut out = Vec::new();
        for p in cases()[0].packets.iter().skip(40_000).take(3_000) {
            e.on_packet(p, &mut out);
        }
        e.advance_to(Timestamp(T0 + 40 * SEC), &mut out);
        e.finish(EndReason::EndOfInput, &mut out);
        Ok(())
    }

    #[test]
    fn blobs_that_are_not_one_state_of_this_version_are_refused() {
        let blob = mid_alert_blob();
        assert!(restore_and_run(blob).is_ok());
        let err = |b: &[u8]| Engine::restore_state(flood_cfg(), b).err().unwrap();
        assert!(matches!(err(b""), EngineStateError::Magic));
        assert!(matches!(err(b"FWE"), EngineStateError::Magic));
        assert!(matches!(err(b"PK\x03\x04rest"), EngineStateError::Magic));
        let mut other = blob.to_vec();
        other[4..6].copy_from_slice(&(VERSION + 1).to_le_bytes());
        let e = err(&other);
        assert!(
            matches!(
                e,
                EngineStateError::Version {
                    found,
                    supported: VERSION
                } if found == VERSION + 1
            ),
            "{e}"
        );
        assert!(matches!(
            err(&blob[..6]),
            EngineStateError::Truncated { .. }
        ));
        // cut inside a sequence, the length says more than the bytes left
        let e = err(&blob[..blob.len() - 1]);
        assert!(
            matches!(
                e,
                EngineStateError::Truncated { .. } | EngineStateError::Corrupt { .. }
            ),
            "{e}"
        );
        let mut longer = blob.to_vec();
        longer.push(0);
        assert!(matches!(
            err(&longer),
            EngineStateError::Trailing { extra: 1 }
        ));
    }

    #[test]
    fn an_absurd_length_is_refused_without_allocating_it() {
        // A fresh engine's state ends with four empty tables (five counters and a length each)
        // and four empty hot lists: make the first table's length 2^60.
        let mut e = Engine::new(flood_cfg(), ShardSpec::SOLE).unwrap();
        let mut blob = Vec::new();
        e.save_state(&mut blob).unwrap();
        assert_eq!(blob[blob.len() - 28..], [0; 28]);
        let at = blob.len() - 28 + 5;
        let mut bad = blob[..at].to_vec();
        Enc::new(&mut bad).var(1 << 60);
        bad.extend_from_slice(&blob[at + 1..]);
        let err = Engine::restore_state(flood_cfg(), &bad).err().unwrap();
        assert!(err.to_string().contains("bytes are left"), "{err}");
        // a hot list's length
        let mut bad = blob[..blob.len() - 1].to_vec();
        Enc::new(&mut bad).var(u64::MAX);
        let err = Engine::restore_state(flood_cfg(), &bad).err().unwrap();
        assert!(matches!(err, EngineStateError::Corrupt { .. }), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn a_cut_blob_is_an_error(frac in 0.0f64..1.0) {
            let blob = mid_alert_blob();
            let cut = (frac * blob.len() as f64) as usize;
            prop_assert!(Engine::restore_state(flood_cfg(), &blob[..cut]).is_err());
        }

        #[test]
        fn flipped_bytes_never_panic(
            flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 1..8),
        ) {
            let mut blob = mid_alert_blob().to_vec();
            for (at, b) in flips {
                let last = blob.len() - 1;
                let i = 6 + (at * (blob.len() - 6) as f64) as usize;
                blob[i.min(last)] ^= b | 1;
            }
            let _ = restore_and_run(&blob);
        }

        #[test]
        fn garbage_after_the_header_never_panics(
            garbage in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut blob = mid_alert_blob()[..6].to_vec();
            blob.extend_from_slice(&garbage);
            let _ = restore_and_run(&blob);
        }
    }

    #[test]
    fn only_a_sole_engine_without_an_exchange_is_saved() {
        let mut out = Vec::new();
        let mut shard = Engine::new(flood_cfg(), ShardSpec { index: 1, count: 2 }).unwrap();
        let err = shard.save_state(&mut out).unwrap_err();
        assert!(err.to_string().contains("shard 1 of 2"), "{err}");
        let mut sole = Engine::new(flood_cfg(), ShardSpec::SOLE).unwrap();
        sole.set_population_exchange(Arc::new(PopulationExchange::new(1)));
        assert!(matches!(
            sole.save_state(&mut out),
            Err(EngineStateError::Exchange)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn settings_are_checked_as_a_reload_checks_them() {
        let blob = mid_alert_blob();
        let wider = DetectConfig {
            window: Duration::from_secs(2),
            ..flood_cfg()
        };
        let err = Engine::restore_state(wider, blob).err().unwrap();
        assert!(matches!(err, EngineStateError::Config(_)));
        assert!(err.to_string().contains("window cannot change"), "{err}");
        let keys = DetectConfig {
            max_keys: DetectConfig::split_max_keys(1_000),
            ..flood_cfg()
        };
        let err = Engine::restore_state(keys, blob).err().unwrap();
        assert!(err.to_string().contains("max_keys"), "{err}");
        // what a reload may change, a restore may too; the hash seed stays the saved one
        let reloaded = DetectConfig {
            floors: crate::config::Floors::all_scopes(5_000.0),
            hold_down: Duration::from_secs(3),
            hash_seed: 7,
            ..flood_cfg()
        };
        let e = Engine::restore_state(reloaded, blob).unwrap();
        assert_eq!(e.config().hold_down, Duration::from_secs(3));
        assert_eq!(e.config().hash_seed, 42);
    }

    /// The bus's detector aggregates per tick ([`Engine::aggregate_within`]) and saves its state
    /// only where its clock has just crossed a tick boundary: restored there, every case runs on
    /// exactly as it would have, and differs from a packet-at-a-time run only where a tick's
    /// sample is taken (the counts, alerts and their keys stay).
    #[test]
    fn aggregated_per_tick_a_restore_at_any_tick_boundary_changes_nothing() {
        for case in cases() {
            let tick = case.cfg.tick_ns().max(1);
            // (packet index, the tick boundary before it) of every packet that opens a new tick
            let boundaries: Vec<(usize, u64)> = (1..case.packets.len())
                .filter_map(|i| {
                    let (a, b) = (case.packets[i - 1].ts.0, case.packets[i].ts.0);
                    (a / tick != b / tick).then(|| (i, b - b % tick))
                })
                .collect();
            let run = |restore_at: &[usize]| {
                let mut e = fresh(case);
                let mut out = Vec::new();
                let mut blob = Vec::new();
                for (i, p) in case.packets.iter().enumerate() {
                    if let Some(&(_, at)) = boundaries.iter().find(|(k, _)| *k == i) {
                        e.advance_to(Timestamp(at), &mut out);
                        if restore_at.contains(&i) {
                            blob.clear();
                            e.save_state(&mut blob).unwrap();
                            e = Engine::restore_state(case.cfg.clone(), &blob).unwrap();
                        }
                    }
                    e.aggregate_within(p, ScopeMask::ALL, &mut out);
                }
                outcome(&mut e, out)
            };
            let whole = run(&[]);
            let n = boundaries.len();
            let at: Vec<usize> = [1, n / 7, n / 3, n / 2, 2 * n / 3, n - 1]
                .into_iter()
                .filter_map(|j| boundaries.get(j).map(|b| b.0))
                .collect();
            assert!(at.len() >= 4, "{}: too few ticks", case.name);
            for k in &at {
                assert_eq!(run(&[*k]), whole, "{}: restored at packet {k}", case.name);
            }
            assert_eq!(run(&at), whole, "{}: restored at {at:?}", case.name);
            // against the packet-at-a-time run: the same alerts on the same keys, counted the same
            let one = &straight(cases().iter().position(|c| c.name == case.name).unwrap()).outcome;
            assert_eq!(whole.stats.packets, one.stats.packets, "{}", case.name);
            let starts = |o: &Outcome| -> Vec<String> {
                o.events
                    .iter()
                    .filter(|e| e.contains("\"event\":\"start\""))
                    .map(|e| {
                        let v: serde_json::Value = serde_json::from_str(e).unwrap();
                        format!("{} {} {}", v["class"], v["key"], v["ts"])
                    })
                    .collect()
            };
            assert_eq!(starts(&whole), starts(one), "{}", case.name);
        }
    }

    #[test]
    fn a_side_counts_only_its_scopes_and_keeps_the_whole_clock() {
        let case = &cases()[0];
        let run = |allowed: ScopeMask| {
            let mut e = Engine::new(case.cfg.clone(), ShardSpec::SOLE).unwrap();
            let mut out = Vec::new();
            for p in &case.packets {
                e.on_packet_within(p, allowed, &mut out);
            }
            e.finish(EndReason::EndOfInput, &mut out);
            (out, e.stats())
        };
        let (all, all_stats) = run(ScopeMask::ALL);
        let dst = ScopeMask(0b0011);
        let (dst_events, dst_stats) = run(dst);
        let (src_events, src_stats) = run(ScopeMask::SOURCES);
        let only = |mask: ScopeMask| -> Vec<AlertEvent> {
            all.iter()
                .filter(|e| mask.contains(e.scope))
                .cloned()
                .collect()
        };
        assert!(!only(dst).is_empty() && !only(ScopeMask::SOURCES).is_empty());
        assert_eq!(dst_events, only(dst));
        assert_eq!(src_events, only(ScopeMask::SOURCES));
        for s in [dst_stats, src_stats] {
            assert_eq!(s.evaluations, all_stats.evaluations);
        }
        assert_eq!(dst_stats.keys[2..], [0, 0]);
        assert_eq!(src_stats.keys[..2], [0, 0]);
        assert_eq!(dst_stats.tables[..2], all_stats.tables[..2]);
        assert_eq!(src_stats.tables[2..], all_stats.tables[2..]);
    }
}
