//! The alert's life in events: what an alert holds when it starts ([`EvalCtx::start`]), and the
//! `start`, `update` and `end` events built from it, with the evidence an operator reads (top
//! peers and ports, request clients and their details, the signature) and, at the end, the totals
//! over the alert's whole life.

use crate::alert::{AlertEvent, EndReason, EventKind};
use crate::attribution::Evidence;
use crate::config::DetectConfig;
use crate::key::{Key, Scope};
use crate::time::Timestamp;
use crate::window::Signal;

use super::classify::class_of;
use super::eval::{EvalCtx, Reading};
use super::key_state::{ActiveAlert, KeyState};

impl EvalCtx<'_> {
    pub(super) fn start(
        &self,
        scope: Scope,
        key: Key,
        st: &KeyState,
        r: &Reading,
        signal: Signal,
    ) -> ActiveAlert {
        let class = class_of(st, r, signal);
        let id = format!(
            "{}/{}/{}/{}.{:06}",
            scope.name(),
            key,
            class.name(),
            self.now.0 / Timestamp::NANOS_PER_SEC,
            (self.now.0 % Timestamp::NANOS_PER_SEC) / 1000
        );
        let window_packets = r.est[Signal::Packets.index()] as u64;
        let window_bytes = r.est[Signal::Bytes.index()] as u64;
        ActiveAlert {
            id,
            class,
            signal,
            started: self.now,
            last_over: self.now,
            last_update: self.now,
            peak: r.rates[signal.index()],
            threshold: r.thresholds[signal.index()],
            quiet_host: false,
            base_packets: st.packets.saturating_sub(window_packets),
            base_bytes: st.bytes.saturating_sub(window_bytes),
        }
    }

    pub(super) fn event(
        &self,
        kind: EventKind,
        scope: Scope,
        key: Key,
        st: &KeyState,
        a: &ActiveAlert,
        r: &Reading,
    ) -> AlertEvent {
        let s = a.signal.index();
        let packets = r.est[Signal::Packets.index()];
        let share = if a.signal == Signal::Bytes {
            1.0
        } else {
            r.est[s] / packets.max(1.0)
        };
        let mut e = base_event(
            self.cfg,
            kind,
            scope,
            key,
            st,
            a,
            self.now,
            self.window_s,
            self.seq,
        );
        e.pps = round1(r.rates[s]);
        e.bps = round1(r.rates[Signal::Bytes.index()] * 8.0);
        e.total_pps = round1(r.rates[Signal::Packets.index()]);
        e.threshold_pps = round1(r.thresholds[s]);
        e.packets = packets.round() as u64;
        e.bytes = r.est[Signal::Bytes.index()].round() as u64;
        e.class_share = (share.min(1.0) * 1000.0).round() / 1000.0;
        e.window_s = (r.span_s * 1000.0).round() / 1000.0;
        e
    }
}

/// The fields every event of an alert shares.
#[allow(clippy::too_many_arguments)]
fn base_event(
    cfg: &DetectConfig,
    kind: EventKind,
    scope: Scope,
    key: Key,
    st: &KeyState,
    a: &ActiveAlert,
    now: Timestamp,
    window_s: f64,
    seq: u64,
) -> AlertEvent {
    let n = cfg.top_n;
    let ev = st.evidence.as_deref();
    AlertEvent {
        event: kind,
        id: a.id.clone(),
        ts: now,
        seq,
        scope,
        key,
        class: a.class,
        signal: a.signal.name(),
        pps: 0.0,
        bps: 0.0,
        total_pps: 0.0,
        baseline_pps: round1(st.baseline.mean(a.signal)),
        threshold_pps: round1(a.threshold),
        quiet_host: a.quiet_host,
        window_s,
        packets: 0,
        bytes: 0,
        peak_pps: round1(a.peak),
        class_share: 0.0,
        duration_s: None,
        reason: None,
        distinct_peers: ev.map(|e| e.distinct_peers()).unwrap_or(0),
        top_peers: ev.map(|e| e.top_peers(n)).unwrap_or_default(),
        top_ports: ev.map(|e| e.top_dst_ports(n)).unwrap_or_default(),
        top_src_ports: ev.map(|e| e.top_src_ports(n)).unwrap_or_default(),
        top_hosts: ev.map(|e| e.top_hosts(n)).unwrap_or_default(),
        sample_rate: ev.map_or(1, |e| e.max_rate()),
        requests: request_evidence(a.signal, ev, n),
        trace: None,
        // the start and updates: the end's span includes the hold-down, traffic back to normal
        signature: ev
            .filter(|_| kind != EventKind::End)
            .and_then(|e| e.sig.as_ref())
            .and_then(|s| s.signature(now.0)),
    }
}

/// The `end` event of an alert: totals over the alert's life.
#[allow(clippy::too_many_arguments)]
pub(super) fn end_event(
    cfg: &DetectConfig,
    scope: Scope,
    key: Key,
    st: &mut KeyState,
    a: &ActiveAlert,
    now: Timestamp,
    reason: EndReason,
    window_s: f64,
    seq: u64,
) -> AlertEvent {
    let mut e = base_event(cfg, EventKind::End, scope, key, st, a, now, window_s, seq);
    let duration_ns = now.saturating_sub(a.started);
    e.packets = st.packets.saturating_sub(a.base_packets);
    e.bytes = st.bytes.saturating_sub(a.base_bytes);
    let secs = (duration_ns as f64 / 1e9).max(window_s);
    e.pps = round1(e.packets as f64 / secs);
    e.total_pps = e.pps;
    e.bps = round1(e.bytes as f64 * 8.0 / secs);
    e.duration_s = Some((duration_ns as f64 / 1e6).round() / 1e3);
    e.reason = Some(reason);
    e.class_share = 1.0;
    e.trace = st.evidence.as_mut().and_then(|ev| ev.trace.take());
    e
}

/// The clients of a request-signal alert at a destination.
fn request_evidence(
    signal: Signal,
    ev: Option<&Evidence>,
    n: usize,
) -> Option<Box<crate::alert::RequestEvidence>> {
    let which = Signal::REQUEST_SIGNALS.iter().position(|s| *s == signal)?;
    let clients = ev?.clients.as_deref()?;
    let top = clients.top(which, n);
    Some(Box::new(crate::alert::RequestEvidence {
        verified_sources: true,
        top_share: (clients.top_share(which, n) * 1000.0).round() / 1000.0,
        clients: top
            .iter()
            .map(|c| crate::alert::ClientCount {
                ip: c.ip,
                requests: c.counts[0],
                connections: c.counts[1],
                held_s: c.counts[2],
            })
            .collect(),
        clients_seen: clients.len() as u64,
        block: clients.to_block(which),
        tls_requests_estimated: true,
        paths: details(clients, 0),
        hosts: details(clients, 1),
        user_agents: details(clients, 2),
        fingerprints: details(clients, 3),
    }))
}

/// The commonest values of one kind of request detail, for an event.
fn details(
    clients: &crate::requests::clients::Clients,
    kind: u8,
) -> Vec<crate::alert::DetailCount> {
    clients
        .top_details(kind, 5)
        .into_iter()
        .map(|(value, requests)| crate::alert::DetailCount { value, requests })
        .collect()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
