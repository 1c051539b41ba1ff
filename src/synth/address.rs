//! The address plan: servers, clients and spoofing ranges, the victim, public-looking IPv4
//! addresses and ephemeral ports, and [`Spoof`], the generator of distinct spoofed sources.

use super::rng::{perm32, perm64, Rng};
use crate::alert::AttackClass;

/// True for IPv4 addresses outside special-purpose, private, documentation and multicast ranges.
pub(super) fn is_public(a: u32) -> bool {
    let o = a >> 24;
    !(o == 0
        || o == 10
        || o == 127
        || o >= 224
        || a & 0xFFC0_0000 == 0x6440_0000 // 100.64.0.0/10
        || a & 0xFFFF_0000 == 0xA9FE_0000 // 169.254.0.0/16
        || a & 0xFFF0_0000 == 0xAC10_0000 // 172.16.0.0/12
        || a & 0xFFFF_FF00 == 0xC000_0000 // 192.0.0.0/24
        || a & 0xFFFF_FF00 == 0xC000_0200 // 192.0.2.0/24
        || a & 0xFFFF_0000 == 0xC0A8_0000 // 192.168.0.0/16
        || a & 0xFFFE_0000 == 0xC612_0000 // 198.18.0.0/15
        || a & 0xFFFF_FF00 == 0xC633_6400 // 198.51.100.0/24
        || a & 0xFFFF_FF00 == 0xCB00_7100) // 203.0.113.0/24
}

pub(super) fn random_public(rng: &mut Rng) -> u32 {
    loop {
        let a = rng.next_u32();
        if is_public(a) {
            return a;
        }
    }
}

/// A source port that no reflection class claims.
pub(super) fn ephemeral_port(rng: &mut Rng) -> u16 {
    let p = rng.range(1024, 65535) as u16;
    if AttackClass::reflection_of_port(p).is_some() {
        p + 1
    } else {
        p
    }
}

pub(super) const V4_SERVERS: u32 = 0xC633_6400; // 198.51.100.0
pub(super) const V4_DNS_SERVER: u32 = V4_SERVERS | 53;
pub(super) const V4_CLIENT_NET: u32 = 0x6440_0000; // 100.64.0.0/10
const V6_SERVERS: u128 = 0x2001_0db8_0100_0000_0000_0000_0000_0000;
pub(super) const V6_CLIENT_NET: u128 = 0x2001_0db8_0200_0000_0000_0000_0000_0000; // /48
pub(super) const V6_SPOOF_NET: u128 = 0x2001_0db8_f000_0000_0000_0000_0000_0000; // /36
pub(super) const SERVERS: usize = 20;

/// IPv6 server `i` (1..=20) reads like its IPv4 twin: `2001:db8:100::10` for 198.51.100.10.
pub(super) fn v6_server(i: u32) -> u128 {
    V6_SERVERS | u128::from(i / 10 * 16 + i % 10)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Victim {
    V4(u32),
    V6(u128),
}

/// The clients of the victim-centred scenarios: 100.64.0.0/16, which no attack source ever uses.
pub(super) const LEGIT_NET: u32 = 0x6440_0000;

/// Walks a keyed permutation of the IPv4 space, skipping non-public addresses, restarting after
/// `sources` addresses: the first `sources` addresses are all distinct.
pub(super) struct Spoof {
    sources: u64,
    used: u64,
    j: u64,
    k1: u32,
    k2: u32,
    k64: (u64, u64),
}

impl Spoof {
    /// `sources` spoofed IPv4 sources in turn, keyed from `rng` (two draws; no IPv6 key).
    pub(super) fn v4(sources: u64, rng: &mut Rng) -> Spoof {
        Spoof {
            sources: sources.max(1),
            used: 0,
            j: 0,
            k1: rng.next_u32(),
            k2: rng.next_u32(),
            k64: (0, 0),
        }
    }

    /// `sources` spoofed sources in turn, IPv4 or IPv6, keyed from `rng` (four draws: the IPv4
    /// keys as [`Spoof::v4`] draws them, then the IPv6 key).
    pub(super) fn v4_v6(sources: u64, rng: &mut Rng) -> Spoof {
        let mut spoof = Spoof::v4(sources, rng);
        spoof.k64 = (rng.next_u64(), rng.next_u64());
        spoof
    }

    pub(super) fn next(&mut self, v6: bool) -> (u32, u128) {
        if self.used >= self.sources {
            self.used = 0;
            self.j = 0;
        }
        self.used += 1;
        if v6 {
            let low = perm64(self.used - 1, self.k64.0, self.k64.1);
            return (0, V6_SPOOF_NET | u128::from(low));
        }
        loop {
            let a = perm32(self.j as u32, self.k1, self.k2);
            self.j = (self.j + 1) & 0xFFFF_FFFF;
            if is_public(a) {
                return (a, 0);
            }
        }
    }
}
