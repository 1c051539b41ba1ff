//! Helpers shared by the criterion benches (`mod common;` in each that uses them).

#![allow(dead_code)]

use std::net::IpAddr;
use std::time::Duration;

use criterion::Criterion;
use floodwatch::decode::{proto, tcp_flags, PacketSummary};
use floodwatch::time::Timestamp;

/// A TCP SYN, 60 bytes on the wire, from `src` port `sport` to `dst` port 80 at `ts` (ns).
#[inline]
pub fn syn(ts: u64, src: IpAddr, sport: u16, dst: IpAddr) -> PacketSummary {
    PacketSummary {
        ts: Timestamp(ts),
        src,
        dst,
        proto: proto::TCP,
        sport,
        dport: 80,
        tcp_flags: tcp_flags::SYN,
        wire_len: 60,
        ..PacketSummary::default()
    }
}

/// Criterion with 30 samples, each bench warmed up for `warm_up` and measured for `measurement`:
/// the settings of the benches of small, fast steps.
pub fn criterion(warm_up: Duration, measurement: Duration) -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(warm_up)
        .measurement_time(measurement)
}
