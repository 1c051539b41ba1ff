//! Batches of aggregates (header flag bit 1): what an ingest node that admits sources itself
//! (`--publish` with `--edge-admission`) publishes for a partition at the end of each tick,
//! instead of a summary per packet. The body is one [`TickAggregate`] restricted to the
//! partition's keys:
//!
//! ```text
//! epoch varint, tick varint, packets varint, deferred[2] varints,
//! last_ts varint (0: none; else 1 + ns after base_ts)
//! per scope (dst_host, dst_subnet, src_host, src_subnet): entries varint, then each entry:
//!   key      u8 family (4 or 6), address (4 or 16 bytes), prefix u8 (host bits must be 0)
//!   flags    u8: bit 0 admitted, bit 1 hosts exact, bit 2 registers follow, bit 3 (subnet
//!            scopes) the samples are a host's (below); others refused
//!   classes  u16 bitmap of the packet classes counted, then a varint each (low bit first)
//!   bytes varint, requests 3 varints, summaries varint, first_ts varint (ns after base_ts),
//!   amp port u16 and weight varint, rate u8 (log2, 0–8), hosts_n varint
//!   registers (bit 2): 1 024 bytes, each a rank of at most 55
//!   samples varint, each a rate varint and a summary as in a summary batch (repeats refer to
//!     the batch's previous sample); with flag bit 3 instead a varint: the index, among this
//!     batch's entries of the host scope (dst_host for dst_subnet, src_host for src_subnet), of
//!     the host whose samples these are, every one (a flood's subnet holds its one victim's)
//!   hosts varint, each family u8 (4, 6), address, packets varint
//!   clients varint, each family u8, address, 3 varints
//!   details varint, each kind u8 (< 4), length varint, UTF-8 text
//! ```
//!
//! Counts are those of the aggregate: exact. What a tick samples is what it sampled at the edge.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{body_of, varint, BatchHeader, BatchWriter, Reader, WireError, FLAG_AGGREGATES};
use crate::aggregate::{
    Detail, Drained, EntryFields, ScopeAggregate, MAX_CLIENTS, MAX_DETAILS, MAX_ENTRIES, MAX_HOSTS,
    MAX_SAMPLES,
};
use crate::attribution::Hll;
use crate::decode::request_head::{FINGERPRINT_MAX, HOST_MAX, PATH_MAX, USER_AGENT_MAX};
use crate::detect::TickAggregate;
use crate::key::{Key, Scope};
use crate::time::Timestamp;
use crate::window::PacketClass;

const E_ADMITTED: u8 = 0x01;
const E_HOSTS_EXACT: u8 = 0x02;
const E_REGS: u8 = 0x04;
const E_HOSTS_SAMPLES: u8 = 0x08;

/// The host scope whose samples a subnet scope's entry may repeat.
fn host_scope(s: Scope) -> Option<Scope> {
    match s {
        Scope::DstSubnet => Some(Scope::DstHost),
        Scope::SrcSubnet => Some(Scope::SrcHost),
        _ => None,
    }
}

/// The kept host entries of `t`'s scope `host`, by key: (index in the batch, index in the scope).
fn kept_hosts(
    t: &TickAggregate,
    host: Scope,
    keep: &impl Fn(Scope, usize) -> bool,
) -> HashMap<Key, (u64, usize)> {
    let Some(agg) = t.scopes.get(host.index()) else {
        return HashMap::new();
    };
    (0..agg.entries().len())
        .filter(|i| keep(host, *i))
        .enumerate()
        .filter_map(|(at, i)| agg.entries().get(i).map(|e| (e.key, (at as u64, i))))
        .collect()
}

/// The batch index of the host entry whose samples are every one of `d`'s (a subnet's entry
/// `d` in scope `scope`), if one is kept.
fn same_samples_as(
    t: &TickAggregate,
    scope: Scope,
    d: &Drained<'_>,
    hosts: &HashMap<Key, (u64, usize)>,
) -> Option<u64> {
    let host = host_scope(scope)?;
    let first = d.samples.clone().next()?;
    let addr = if host == Scope::DstHost {
        first.p.dst
    } else {
        first.p.src
    };
    let (at, i) = *hosts.get(&Key::host(addr))?;
    let (_, hd) = t.scopes.get(host.index())?.get(i)?;
    let mine = d.samples.clone().map(|s| (s.rate, s.p));
    mine.eq(hd.samples.map(|s| (s.rate, s.p))).then_some(at)
}

/// The smallest entry: an IPv4 key (6), flags, classes bitmap (2), bytes, 3 requests,
/// summaries, first_ts, amp (3), rate, hosts_n and four list counts.
const MIN_ENTRY: usize = 6 + 1 + 2 + 1 + 3 + 1 + 1 + 3 + 1 + 1 + 4;

/// The batch of `t`'s keys that `keep` keeps (by scope and the entry's index in its scope), for
/// `header`'s partition, with the stream-wide figures (packets, packets held back by admission)
/// when `figures` (one partition of a node carries them), else 0.
pub fn encode_aggregate(
    t: &TickAggregate,
    header: BatchHeader,
    keep: impl Fn(Scope, usize) -> bool,
    figures: bool,
) -> Vec<u8> {
    // base time: the earliest time in what is kept (the tick's start when there is nothing)
    let mut base = t.last_ts.map_or(u64::MAX, |ts| ts.0);
    for (scope, agg) in Scope::ALL.iter().zip(&t.scopes) {
        for (i, (e, d)) in agg.iter().enumerate() {
            if keep(*scope, i) {
                base = base.min(e.first_ts);
                for s in d.samples {
                    base = base.min(s.p.ts.0);
                }
            }
        }
    }
    if base == u64::MAX {
        base = 0;
    }
    let mut w = BatchWriter::new(Timestamp(base));
    w.kind = FLAG_AGGREGATES;
    let b = &mut w.buf;
    varint(b, t.epoch);
    varint(b, t.tick);
    let (packets, deferred) = if figures {
        (t.packets, t.deferred)
    } else {
        (0, [0; 2])
    };
    varint(b, packets);
    varint(b, deferred[0]);
    varint(b, deferred[1]);
    varint(b, t.last_ts.map_or(0, |ts| 1 + ts.0.saturating_sub(base)));
    let mut keys = 0u32;
    // (the host entries a subnet's samples may point at: only when there are subnets to encode)
    let mut hosts = HashMap::new();
    for (scope, agg) in Scope::ALL.iter().zip(&t.scopes) {
        if let Some(host) = host_scope(*scope) {
            hosts = if agg.entries().is_empty() {
                HashMap::new()
            } else {
                kept_hosts(t, host, &keep)
            };
        }
        let kept = (0..agg.entries().len())
            .filter(|i| keep(*scope, *i))
            .count();
        varint(&mut w.buf, kept as u64);
        let entries = agg.iter().enumerate().filter(|(i, _)| keep(*scope, *i));
        for (_, (e, d)) in entries {
            keys = keys.saturating_add(1);
            let f = e.fields();
            let b = &mut w.buf;
            match f.key {
                Key::V4 { addr, prefix } => {
                    b.push(4);
                    b.extend_from_slice(&addr.to_be_bytes());
                    b.push(prefix);
                }
                Key::V6 { addr, prefix } => {
                    b.push(6);
                    b.extend_from_slice(&addr.to_be_bytes());
                    b.push(prefix);
                }
            }
            let mut flags = 0;
            if f.admitted {
                flags |= E_ADMITTED;
            }
            if f.hosts_exact {
                flags |= E_HOSTS_EXACT;
            }
            if d.regs.is_some() {
                flags |= E_REGS;
            }
            let shared = same_samples_as(t, *scope, &d, &hosts);
            if shared.is_some() {
                flags |= E_HOSTS_SAMPLES;
            }
            b.push(flags);
            let mut present = 0u16;
            for (i, c) in f.classes.iter().enumerate() {
                if *c != 0 {
                    present |= 1 << i;
                }
            }
            b.extend_from_slice(&present.to_be_bytes());
            for c in f.classes.iter().filter(|c| **c != 0) {
                varint(b, *c);
            }
            varint(b, f.bytes);
            for r in f.requests {
                varint(b, u64::from(r));
            }
            varint(b, u64::from(f.summaries));
            varint(b, f.first_ts.saturating_sub(base));
            b.extend_from_slice(&f.amp.0.to_be_bytes());
            varint(b, u64::from(f.amp.1));
            b.push(f.rate.max(1).trailing_zeros() as u8);
            varint(b, u64::from(f.hosts_n));
            if let Some(r) = d.regs {
                b.extend_from_slice(r.registers());
            }
            if let Some(at) = shared {
                varint(b, at);
            } else {
                // (a list is walked twice, to count and to write: no allocation per key)
                varint(b, d.samples.clone().count() as u64);
                for s in d.samples {
                    varint(&mut w.buf, u64::from(s.rate));
                    w.push(&s.p);
                }
            }
            let b = &mut w.buf;
            varint(b, d.hosts.clone().count() as u64);
            for h in d.hosts {
                addr(b, h.host);
                varint(b, h.packets);
            }
            varint(b, d.clients.clone().count() as u64);
            for c in d.clients {
                addr(b, c.client);
                for n in c.counts {
                    varint(b, u64::from(n));
                }
            }
            varint(b, d.details.clone().count() as u64);
            for x in d.details {
                b.push(x.kind);
                varint(b, x.text.len() as u64);
                b.extend_from_slice(x.text.as_bytes());
            }
        }
    }
    // the header's count is the keys (the writer counted the samples as summaries)
    w.count = keys;
    w.finish(header)
}

/// An address with its family byte.
fn addr(b: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => {
            b.push(4);
            b.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b.push(6);
            b.extend_from_slice(&a.octets());
        }
    }
}

/// Reads a batch of aggregates. Hostile or cut bytes give an error, never a panic.
pub fn decode_aggregate(bytes: &[u8]) -> Result<(BatchHeader, TickAggregate), WireError> {
    let body = body_of(bytes, FLAG_AGGREGATES)?;
    let keys = body.count;
    if (keys as usize).saturating_mul(MIN_ENTRY) > body.body.len() {
        return Err(WireError::Truncated(
            "fewer bytes than the count of keys needs",
        ));
    }
    let mut r = Reader {
        b: body.body,
        at: 0,
        prev: None,
    };
    let base = body.base_ts;
    let what = |what| WireError::Summary { index: 0, what };
    let mut t = TickAggregate {
        epoch: r.varint().map_err(what)?,
        tick: r.varint().map_err(what)?,
        packets: r.varint().map_err(what)?,
        deferred: [r.varint().map_err(what)?, r.varint().map_err(what)?],
        ..TickAggregate::default()
    };
    t.last_ts = match r.varint().map_err(what)? {
        0 => None,
        n => Some(Timestamp(
            base.checked_add(n - 1)
                .ok_or(what("timestamp past the year 2554"))?,
        )),
    };
    let mut index = 0u32;
    for (s, scope) in Scope::ALL.iter().enumerate() {
        // (a subnet scope's entries may take their samples from the host scope, decoded before)
        let (before, rest) = t.scopes.split_at_mut(s);
        let Some(agg) = rest.first_mut() else { break };
        let hosts = host_scope(*scope).and_then(|h| before.get(h.index()));
        let n = r.varint().map_err(what)?;
        if n > MAX_ENTRIES as u64 {
            return Err(what("more keys in a scope than an aggregate holds"));
        }
        for _ in 0..n {
            if index >= keys {
                return Err(WireError::Summary {
                    index,
                    what: "more keys than the header announces",
                });
            }
            entry(&mut r, base, agg, hosts).map_err(|what| WireError::Summary { index, what })?;
            index += 1;
        }
        // what one aggregate holds at most: a batch cannot make a detector hold more
        let (samples, hosts, clients, details) = agg.sizes();
        if samples > MAX_SAMPLES + 1
            || hosts > MAX_HOSTS
            || clients > MAX_CLIENTS
            || details > MAX_DETAILS
        {
            return Err(what("more items in a scope than an aggregate holds"));
        }
    }
    if index != keys {
        return Err(WireError::Truncated("fewer keys than the header announces"));
    }
    if r.at != r.b.len() {
        return Err(WireError::Trailing(r.b.len() - r.at));
    }
    Ok((body.header, t))
}

/// A count that the bytes left can hold, at `min` bytes an item.
fn count(r: &mut Reader<'_>, min: usize) -> Result<u64, &'static str> {
    let n = r.varint()?;
    if (n as usize).saturating_mul(min) > r.b.len() - r.at {
        return Err("a count the batch cannot hold");
    }
    Ok(n)
}

fn address(r: &mut Reader<'_>) -> Result<IpAddr, &'static str> {
    match r.u8()? {
        4 => r.addr(false),
        6 => r.addr(true),
        _ => Err("unknown address family"),
    }
}

/// One entry into `agg`; `hosts`: for a subnet scope, its host scope's entries of the batch.
fn entry(
    r: &mut Reader<'_>,
    base: u64,
    agg: &mut ScopeAggregate,
    hosts: Option<&ScopeAggregate>,
) -> Result<(), &'static str> {
    let a = address(r)?;
    let prefix = r.u8()?;
    let key = match a {
        IpAddr::V4(_) if prefix <= 32 => Key::subnet(a, prefix, 0),
        IpAddr::V6(_) if prefix <= 128 => Key::subnet(a, 0, prefix),
        _ => return Err("prefix longer than the address"),
    };
    if key.addr() != a {
        return Err("key with bits past its prefix");
    }
    let flags = r.u8()?;
    if flags & !(E_ADMITTED | E_HOSTS_EXACT | E_REGS | E_HOSTS_SAMPLES) != 0 {
        return Err("unknown entry flags");
    }
    if flags & E_HOSTS_SAMPLES != 0 && hosts.is_none() {
        return Err("a host scope's entry taking another host's samples");
    }
    let present = r.u16()?;
    let mut classes = [0u64; PacketClass::COUNT];
    for (i, c) in classes.iter_mut().enumerate() {
        if present & (1 << i) != 0 {
            *c = r.varint()?;
        }
    }
    let bytes = r.varint()?;
    let requests = [r.u32_varint()?, r.u32_varint()?, r.u32_varint()?];
    let summaries = r.u32_varint()?;
    let first_ts = base
        .checked_add(r.varint()?)
        .ok_or("timestamp past the year 2554")?;
    let amp = (r.u16()?, r.u32_varint()?);
    let log = r.u8()?;
    if log > 8 {
        return Err("sampling rate over 256");
    }
    let hosts_n = r.u32_varint()?;
    let regs = if flags & E_REGS != 0 {
        let bytes =
            r.b.get(r.at..r.at + Hll::REGISTERS)
                .ok_or("registers cut short")?;
        r.at += Hll::REGISTERS;
        Some(Hll::from_registers(bytes).ok_or("a register past the largest rank")?)
    } else {
        None
    };
    agg.push_entry(
        EntryFields {
            key,
            classes,
            bytes,
            requests,
            summaries,
            first_ts,
            admitted: flags & E_ADMITTED != 0,
            amp,
            rate: 1 << log,
            hosts_exact: flags & E_HOSTS_EXACT != 0,
            hosts_n,
        },
        regs,
    );
    match hosts.filter(|_| flags & E_HOSTS_SAMPLES != 0) {
        Some(hosts) => {
            let at = usize::try_from(r.varint()?).map_err(|_| "host index past the batch")?;
            let (_, d) = hosts.get(at).ok_or("host index past the batch")?;
            // (every entry may name the same host: what one aggregate holds bounds the copies)
            if agg.sizes().0 + d.samples.clone().count() > MAX_SAMPLES + 1 {
                return Err("more samples in a scope than an aggregate holds");
            }
            for s in d.samples {
                agg.push_sample(s.p, s.rate);
            }
        }
        None => {
            for _ in 0..count(r, 8)? {
                let rate = r.u32_varint()?;
                if rate == 0 {
                    return Err("a sample standing for no summary");
                }
                let p = r.summary(base)?;
                agg.push_sample(p, rate);
            }
        }
    }
    for _ in 0..count(r, 6)? {
        let host = address(r)?;
        agg.push_host(host, r.varint()?);
    }
    for _ in 0..count(r, 8)? {
        let client = address(r)?;
        let counts = [r.u32_varint()?, r.u32_varint()?, r.u32_varint()?];
        agg.push_client(client, counts);
    }
    for _ in 0..count(r, 2)? {
        let kind = r.u8()?;
        if usize::from(kind) >= Detail::KINDS.len() {
            return Err("unknown kind of request detail");
        }
        let len = count(r, 1)? as usize;
        // what a request head keeps of each (a cut text ends in a 3-byte ellipsis)
        let most = [PATH_MAX, HOST_MAX, USER_AGENT_MAX, FINGERPRINT_MAX];
        if len > most.get(usize::from(kind)).copied().unwrap_or(0) + 3 {
            return Err("request detail longer than a request head keeps");
        }
        let text = r.b.get(r.at..r.at + len).ok_or("detail cut short")?;
        r.at += len;
        let text = std::str::from_utf8(text).map_err(|_| "detail not UTF-8")?;
        agg.push_detail(kind, text.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{PeerDraw, ScopeAgg};
    use crate::decode::PacketSummary;
    use proptest::prelude::*;

    fn header() -> BatchHeader {
        BatchHeader {
            partition: 3,
            node: 11,
            seq: 5,
            watermark: 2_000_000_000,
            last: false,
        }
    }

    /// What a shard would read of one scope: every entry with everything it leaves.
    type Seen = Vec<(
        EntryFields,
        Vec<(PacketSummary, u32)>,
        Option<Vec<u8>>,
        Vec<(IpAddr, u64)>,
        Vec<(IpAddr, [u32; 3])>,
        Vec<(u8, String)>,
    )>;

    fn seen(agg: &ScopeAggregate, keep: impl Fn(&Key) -> bool) -> Seen {
        agg.iter()
            .filter(|(e, _)| keep(&e.key))
            .map(|(e, d)| {
                (
                    e.fields(),
                    d.samples.map(|s| (s.p, s.rate)).collect(),
                    d.regs.map(|r| r.registers().to_vec()),
                    d.hosts.map(|h| (h.host, h.packets)).collect(),
                    d.clients.map(|c| (c.client, c.counts)).collect(),
                    d.details.map(|x| (x.kind, x.text.to_string())).collect(),
                )
            })
            .collect()
    }

    /// A tick aggregated the way the router aggregates: `packets` into each scope by a key of
    /// their source or destination, with requests, details and subnet hosts on some.
    fn aggregate(packets: &[PacketSummary], rates: &[u32]) -> TickAggregate {
        aggregate_with(packets, rates, true)
    }

    fn aggregate_with(packets: &[PacketSummary], rates: &[u32], requests: bool) -> TickAggregate {
        let mut scopes: [ScopeAgg; 4] = Default::default();
        for (n, p) in packets.iter().enumerate() {
            for (s, agg) in scopes.iter_mut().enumerate() {
                let (ip, peer) = if s < 2 {
                    (p.dst, p.src)
                } else {
                    (p.src, p.dst)
                };
                let key = if s % 2 == 0 {
                    Key::host(ip)
                } else {
                    Key::subnet(ip, 24, 64)
                };
                let i = match agg.find(key) {
                    Some(i) => i,
                    None => {
                        let rate = rates.get(n % rates.len().max(1)).copied().unwrap_or(1);
                        agg.insert(key, p.ts.0, n % 3 != 0, rate, n % 2 == 0)
                    }
                };
                let class = PacketClass::of(p);
                agg.add(i, p, p.ts, class, || PeerDraw::new(Hll::hash(peer), p.ts));
                if s % 2 == 1 {
                    if let Some(h) = agg.host_slot(i, ip) {
                        agg.count_host(h, u64::from(p.weight));
                    }
                }
                if requests && s == 0 && n % 4 == 1 {
                    agg.add_request(i, n % 3, 1 + n as u64, Some(peer));
                    agg.add_detail(i, (n % 4) as u8, format!("/p{n}").into());
                }
            }
        }
        let last_ts = packets.iter().map(|p| p.ts).max();
        TickAggregate {
            epoch: 17,
            tick: 340,
            scopes: scopes.map(|mut s| s.take()),
            deferred: [3, 4],
            packets: packets.len() as u64,
            last_ts,
        }
    }

    /// [`encode_aggregate`]'s `keep` from a test by key.
    fn by_key<'a>(
        t: &'a TickAggregate,
        keep: impl Fn(Scope, &Key) -> bool + 'a,
    ) -> impl Fn(Scope, usize) -> bool + 'a {
        move |s, i| {
            t.scopes[s.index()]
                .entries()
                .get(i)
                .is_some_and(|e| keep(s, &e.key))
        }
    }

    fn assert_same(a: &TickAggregate, b: &TickAggregate, keep: impl Fn(Scope, &Key) -> bool) {
        assert_eq!(
            (a.epoch, a.tick, a.packets, a.deferred, a.last_ts),
            (b.epoch, b.tick, b.packets, b.deferred, b.last_ts)
        );
        for (scope, (x, y)) in Scope::ALL.iter().zip(a.scopes.iter().zip(&b.scopes)) {
            assert_eq!(seen(x, |k| keep(*scope, k)), seen(y, |_| true), "{scope:?}");
        }
    }

    fn flood(n: u32) -> Vec<PacketSummary> {
        (0..n)
            .map(|i| PacketSummary {
                ts: Timestamp(1_000_000_000 + u64::from(i) * 1_000),
                src: IpAddr::V4((0x0a00_0000 + i % 700).into()),
                dst: [198, 51, 100, (i % 3) as u8].into(),
                proto: 6,
                sport: (i as u16).wrapping_add(1024),
                dport: 443,
                tcp_flags: 0x02,
                wire_len: 60,
                ..PacketSummary::default()
            })
            .collect()
    }

    /// A copy of an aggregate, rebuilt entry by entry.
    fn clone_scope(a: &ScopeAggregate) -> ScopeAggregate {
        let mut b = ScopeAggregate::default();
        for (e, d) in a.iter() {
            b.push_entry(e.fields(), d.regs.cloned());
            for x in d.samples {
                b.push_sample(x.p, x.rate);
            }
        }
        b
    }

    #[test]
    fn a_tick_round_trips_whole_and_by_partition() {
        // 5 000 packets: the victims' keys escalate their rate and get registers
        let t = aggregate(&flood(5_000), &[1]);
        assert!(t.scopes[0].iter().any(|(_, d)| d.regs.is_some()));
        assert!(t.scopes[1].iter().any(|(_, d)| d.hosts.count() > 1));
        assert!(t.scopes[0].iter().any(|(_, d)| d.details.count() > 1));
        let bytes = encode_aggregate(&t, header(), |_, _| true, true);
        let (h, back) = decode_aggregate(&bytes).unwrap();
        assert_eq!(h, header());
        assert_same(&t, &back, |_, _| true);
        // a flood's victim leaves its ~2 300 samples whatever its rate: far under a byte a packet
        // where a summary a packet takes ~15
        let victim: Vec<_> = flood(100_000)
            .into_iter()
            .map(|p| PacketSummary {
                dst: [198, 51, 100, 1].into(),
                ..p
            })
            .collect();
        let v = aggregate_with(&victim, &[1], false);
        let small = encode_aggregate(&v, header(), |s, _| s == Scope::DstHost, true);
        assert!(small.len() < 40_000, "{} bytes", small.len());
        assert_same(&v, &decode_aggregate(&small).unwrap().1, |s, _| {
            s == Scope::DstHost
        });
        // its subnet holds the same samples: they travel once, the subnet naming its host
        let dst_scope = |s: Scope| matches!(s, Scope::DstHost | Scope::DstSubnet);
        let dst = |s: Scope, _: &Key| dst_scope(s);
        let both = encode_aggregate(&v, header(), |s, _| dst_scope(s), true);
        assert!(
            both.len() < small.len() + 2_000,
            "{} bytes against {}",
            both.len(),
            small.len()
        );
        assert_same(&v, &decode_aggregate(&both).unwrap().1, dst);
        // entries naming one host's samples cannot make a scope hold more than an aggregate
        // does: 15 subnets each taking the victim's ~2 300 are refused, not copied on
        let (e, d) = v.scopes[1].get(0).unwrap();
        let mut many = TickAggregate {
            epoch: v.epoch,
            tick: v.tick,
            last_ts: v.last_ts,
            ..TickAggregate::default()
        };
        many.scopes[0] = clone_scope(&v.scopes[0]);
        for n in 0..15u8 {
            let mut f = e.fields();
            f.key = Key::subnet([203, 0, n, 0].into(), 24, 64);
            many.scopes[1].push_entry(f, None);
            for x in d.samples.clone() {
                many.scopes[1].push_sample(x.p, x.rate);
            }
        }
        let hostile = encode_aggregate(&many, header(), |_, _| true, true);
        assert!(
            hostile.len() < small.len() + 2_000,
            "{} bytes",
            hostile.len()
        );
        assert!(decode_aggregate(&hostile).is_err());
        // a subnet whose host is not in the batch (or whose samples differ) carries its own
        let sub = encode_aggregate(&v, header(), |s, _| s == Scope::DstSubnet, true);
        assert!(sub.len() > small.len() - 2_000, "{} bytes", sub.len());
        assert_same(&v, &decode_aggregate(&sub).unwrap().1, |s, _| {
            s == Scope::DstSubnet
        });
        // a partition's share: only the keys it keeps, in their order
        let odd = |_: Scope, k: &Key| k.mix(1) % 2 == 1;
        let (_, part) =
            decode_aggregate(&encode_aggregate(&t, header(), by_key(&t, odd), true)).unwrap();
        assert_same(&t, &part, odd);
        let none = encode_aggregate(&t, header(), |_, _| false, false);
        let (_, empty) = decode_aggregate(&none).unwrap();
        assert!(empty.scopes.iter().all(|s| s.entries().is_empty()));
        assert_eq!(
            (empty.packets, empty.deferred),
            (0, [0, 0]),
            "no figures asked for"
        );
        assert_eq!(empty.last_ts, t.last_ts);
    }

    #[test]
    fn every_cut_is_an_error_and_kinds_and_versions_are_refused_by_name() {
        let t = aggregate(&flood(60), &[1, 16]);
        let bytes = encode_aggregate(&t, header(), |_, _| true, true);
        for cut in 0..bytes.len() {
            assert!(decode_aggregate(&bytes[..cut]).is_err(), "cut {cut}");
        }
        // a summary batch is not aggregates, and aggregates are not summaries
        let summaries = BatchWriter::new(Timestamp(0)).finish(header());
        let err = decode_aggregate(&summaries).unwrap_err();
        assert_eq!(
            err,
            WireError::Kind {
                found: "summaries",
                wanted: "aggregates"
            }
        );
        assert!(err.to_string().contains("--edge-admission"), "{err}");
        assert!(matches!(
            super::super::decode_batch(&bytes, &mut Vec::new()),
            Err(WireError::Kind {
                found: "aggregates",
                ..
            })
        ));
        // earlier versions are refused, naming both: 3 (before aggregates), 4 (before node
        // watermarks, whose detectors would wait for an empty batch a tick)
        for v in [3, 4] {
            let mut old = bytes.clone();
            old[4] = v;
            let err = decode_aggregate(&old).unwrap_err();
            assert_eq!(err, WireError::Version(v));
            assert!(err.to_string().contains("version 5"), "{err}");
        }
    }

    #[test]
    fn hostile_fields_are_refused() {
        let t = aggregate(&flood(1), &[1]);
        let bytes = encode_aggregate(&t, header(), |s, _| s == Scope::DstHost, true);
        // the body: 6 varints of one byte (epoch 17, tick 340 is two), then the dst_host count
        let key_at = super::super::HEADER_LEN + 1 + 2 + 1 + 1 + 1 + 1 + 1;
        assert_eq!(bytes[key_at], 4, "an IPv4 key starts here");
        let mut bad = bytes.clone();
        bad[key_at] = 5;
        assert!(decode_aggregate(&bad).is_err());
        let mut bad = bytes.clone();
        bad[key_at + 5] = 33;
        assert!(decode_aggregate(&bad).is_err(), "prefix over 32");
        let mut bad = bytes.clone();
        bad[key_at + 5] = 8;
        assert!(decode_aggregate(&bad).is_err(), "host bits past the prefix");
        let mut bad = bytes.clone();
        bad[key_at + 6] |= 0x80;
        assert!(decode_aggregate(&bad).is_err(), "unknown entry flag");
        let mut bad = bytes.clone();
        bad[key_at + 6] |= E_HOSTS_SAMPLES;
        assert!(
            decode_aggregate(&bad).is_err(),
            "a host taking another host's samples"
        );
        assert!(decode_aggregate(&bytes).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_tick_round_trips(
            packets in proptest::collection::vec(super::super::tests::any_summary(), 0..60),
            rates in proptest::collection::vec(prop_oneof![Just(1u32), Just(16), Just(256)], 1..4),
        ) {
            let t = aggregate(&packets, &rates);
            let bytes = encode_aggregate(&t, header(), |_, _| true, true);
            let (_, back) = decode_aggregate(&bytes).unwrap();
            assert_same(&t, &back, |_, _| true);
        }

        #[test]
        fn garbage_after_a_good_header_never_panics(
            packets in proptest::collection::vec(super::super::tests::any_summary(), 1..8),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            let t = aggregate(&packets, &[1]);
            let mut bytes = encode_aggregate(&t, header(), |_, _| true, true);
            for (at, x) in flips {
                let i = super::super::HEADER_LEN + at % (bytes.len() - super::super::HEADER_LEN);
                bytes[i] ^= x;
            }
            let _ = decode_aggregate(&bytes);
        }
    }
}
