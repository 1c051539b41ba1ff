//! Synthetic captures: deterministic, seeded, labelled pcap files for tests, demos and benchmarks.
//!
//! [`write_pcap`] writes a classic pcap (little-endian, microsecond timestamps, Ethernet, snaplen
//! 65535) made of a benign background (complete TCP sessions, DNS lookups, pings between a few thousand
//! clients and about twenty servers) with one [`Scenario`]'s traffic merged in by time, and returns a
//! [`SynthReport`] whose [`Label`]s say which alerts a correct detector raises. The same scenario,
//! options and seed give a byte-identical file.
//!
//! The victim-centred scenarios (learned-floor, benign-day, sig-syn-flood, sig-udp-flood,
//! sig-ack-flood) have no such background: their benign traffic is legitimate clients of the victim
//! (and, for benign-day, of three neighbours in its /24), arriving as a Poisson process, with
//! real-stack TCP (SYN options MSS, SACK-permitted, timestamps, window scale; timestamps on every
//! later segment), per-client TTLs of 64 or 128 less 0–20 hops, random IP IDs and DF on TCP. Every
//! packet of theirs is a client's, the victim's reply, or the attack's.
//!
//! Address plan (documentation and shared ranges only, except spoofed attack sources, which are random
//! public-looking IPv4 addresses):
//! - web servers 198.51.100.1–20 (TCP 443/80), DNS server 198.51.100.53, default victim 198.51.100.10;
//!   IPv6 servers 2001:db8:100::1–::20, IPv6 victim 2001:db8:100::10;
//! - benign clients: 5000 addresses in 100.64.0.0/10 and 500 in 2001:db8:200::/48; legitimate
//!   clients of the victim-centred scenarios anywhere in 100.64.0.0/16, which no attack source uses;
//! - UDP flood sources 203.0.113.5, .17, .99; ICMP flood sources 20 hosts of 192.0.2.0/24; spoofed IPv6
//!   sources in 2001:db8:f000::/36.
//!
//! Every IPv4 header checksum is correct, and so are TCP, ICMP and unfragmented UDP checksums; the UDP
//! checksum of the fragmented DNS-reflection datagrams is 0 ("none", legal over IPv4). Frames shorter
//! than the 60-byte Ethernet minimum are zero-padded to 60 bytes, as a receiving NIC would deliver them.
//!
//! The web scenarios (http-flood, https-flood, slowloris, … : [`Scenario::is_web`]) are request floods
//! and their look-alikes, made of whole TCP/HTTP/TLS sessions with a small website; the `web`
//! module builds them, with defaults of their own ([`SynthOptions::for_scenario`]).
//!
//! Where things are:
//! - `scenario.rs`: the catalogue of scenarios, their options and errors;
//! - `plan.rs`: the options checked and turned into the generators and labels of one capture;
//! - `background.rs`: the benign background (sessions with ~20 servers) and the flash crowd;
//! - `clients.rs`: the legitimate clients of one victim (learned-floor, sig-*, benign-day);
//! - `attack.rs`: the packet-level attack streams (volumetric floods, reflection, signature floods);
//! - `web.rs` and `web/`: the web scenarios (request floods and their look-alikes);
//! - packet building: `packet.rs` (frames, headers, checksums), `address.rs` (the address plan,
//!   spoofed sources), `dns.rs` (DNS messages), `rng.rs` (the seeded PRNG), `schedule.rs` (rate
//!   profiles, arrival processes, the queue of a session's next packets);
//! - `output.rs`: the pcap writer's settings, labels, the report and [`write_labels`];
//! - `tests.rs`: tests of whole captures across scenarios, and helpers for the tests of each part.

use std::io::Write;

use crate::time::Timestamp;

mod address;
mod attack;
mod background;
mod clients;
mod dns;
mod output;
mod packet;
mod plan;
mod rng;
mod scenario;
mod schedule;
#[cfg(test)]
mod tests;
mod web;

pub use output::{write_labels, Label, LabelClass, SynthReport};
pub use scenario::{
    Scenario, SynthError, SynthOptions, DEFAULT_SOURCES, FLOOR_SOURCES_DEFAULT, FLOOR_SOURCES_MAX,
};
pub use web::RequestClass;

use attack::AttackGen;
use background::SessionGen;
use clients::ClientGen;
use output::pcap_out;
use packet::Frame;
use plan::Plan;

/// [`write_pcap`] into a new file at `path` (the unit tests' captures).
#[cfg(test)]
pub(crate) fn write_pcap_file(scenario: Scenario, opts: &SynthOptions, path: &std::path::Path) {
    let file = std::fs::File::create(path).unwrap();
    write_pcap(scenario, opts, std::io::BufWriter::new(file)).unwrap();
}

/// Writes the capture of `scenario` to `out` (buffered internally) and returns what it wrote.
pub fn write_pcap<W: Write>(
    scenario: Scenario,
    opts: &SynthOptions,
    out: W,
) -> Result<SynthReport, SynthError> {
    if scenario.is_web() {
        return web::write_pcap(scenario, opts, out);
    }
    let plan = Plan::new(scenario, opts)?;
    let mut out = pcap_out(out);
    let mut frame = Frame::new(opts.src_mac, opts.dst_mac);
    let mut background = plan.background;
    let mut extra = plan.extra;
    let mut legit = plan.legit;
    let mut attack = plan.attack;
    // (first, last) attack packet times: of the whole attack, and of each numbered source.
    let mut span: Option<(u64, u64)> = None;
    let mut source_spans: Vec<Option<(u64, u64)>> = vec![None; plan.numbered_sources];
    let widen = |s: &mut Option<(u64, u64)>, ts: u64| {
        s.get_or_insert((ts, ts)).1 = ts;
    };

    loop {
        let b = background.as_ref().and_then(SessionGen::peek);
        let e = extra.as_ref().and_then(SessionGen::peek);
        let l = legit.as_ref().and_then(ClientGen::peek);
        let a = attack.as_ref().and_then(AttackGen::peek);
        // Earliest first; ties go background, extra, legit, attack.
        let mut pick = (u64::MAX, 4u8);
        for (i, t) in [b, e, l, a].into_iter().enumerate() {
            if let Some(t) = t {
                if t < pick.0 {
                    pick = (t, i as u8);
                }
            }
        }
        if pick.1 == 4 || pick.0 >= plan.end {
            break;
        }
        let len = match pick.1 {
            0 => background.as_mut().and_then(|g| g.emit(&mut frame)),
            1 => extra.as_mut().and_then(|g| g.emit(&mut frame)),
            2 => legit.as_mut().and_then(|g| g.emit(&mut frame)),
            _ => attack.as_mut().map(|g| g.emit(&mut frame)),
        };
        let Some(len) = len else { break };
        let ts = pick.0 / 1_000 * 1_000;
        if pick.1 == 3 {
            widen(&mut span, ts);
            let src = attack.as_ref().and_then(|g| g.last_source);
            if let Some(s) = src.and_then(|i| source_spans.get_mut(i)) {
                widen(s, ts);
            }
        }
        let data = &frame.buf[..len];
        out.record(Timestamp(ts), data, data.len() as u32)?;
    }
    out.flush()?;

    // A label whose packets never came (an attack cut off by the capture end) is left out.
    let labels = plan
        .labels
        .iter()
        .filter_map(|l| {
            let (first, last) = match l.source {
                None => span?,
                Some(i) => (*source_spans.get(i)?)?,
            };
            Some(Label {
                scope: l.scope,
                key: l.key,
                class: l.class.into(),
                first_packet: Timestamp(first),
                last_packet: Timestamp(last),
                attackers: Vec::new(),
            })
        })
        .collect();
    Ok(SynthReport {
        packets: out.packets,
        bytes: out.bytes,
        labels,
    })
}
