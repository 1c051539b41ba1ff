//! What the engine counts by: a [`Scope`] (source or destination, host or subnet) and a [`Key`] (an
//! address or a prefix), both small `Copy` values that hash and order cheaply.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

/// Which side of a packet, and at which granularity, a key is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Destination address: the victim of a flood.
    DstHost,
    /// Destination prefix (`--subnet-v4`/`--subnet-v6`): carpet bombing over a range.
    DstSubnet,
    /// Source address: one attacker.
    SrcHost,
    /// Source prefix: a botnet range.
    SrcSubnet,
}

impl Scope {
    /// All scopes, in the order events of one tick are written.
    pub const ALL: [Scope; 4] = [
        Scope::DstHost,
        Scope::DstSubnet,
        Scope::SrcHost,
        Scope::SrcSubnet,
    ];

    /// The name used in alerts (`dst_host`, …).
    pub fn name(self) -> &'static str {
        match self {
            Scope::DstHost => "dst_host",
            Scope::DstSubnet => "dst_subnet",
            Scope::SrcHost => "src_host",
            Scope::SrcSubnet => "src_subnet",
        }
    }

    /// The scope named `name` (`dst_host`, …).
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Index in [`Scope::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// True for the destination scopes, whose peers are sources.
    pub fn is_destination(self) -> bool {
        matches!(self, Scope::DstHost | Scope::DstSubnet)
    }

    /// True for the subnet scopes.
    pub fn is_subnet(self) -> bool {
        matches!(self, Scope::DstSubnet | Scope::SrcSubnet)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An address or a prefix. Host keys have the full prefix length (32 or 128).
///
/// Ordering puts IPv4 before IPv6, then by address, then by prefix length, so events sort the same
/// way on every run. Hashing feeds the hasher one or two integers (not the enum's parts one by one):
/// keys are hashed several times per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    V4 { addr: u32, prefix: u8 },
    V6 { addr: u128, prefix: u8 },
}

impl Key {
    /// The host key of an address.
    pub fn host(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(a) => Key::V4 {
                addr: u32::from(a),
                prefix: 32,
            },
            IpAddr::V6(a) => Key::V6 {
                addr: u128::from(a),
                prefix: 128,
            },
        }
    }

    /// The prefix of `ip` with `v4`/`v6` bits kept (lengths are clamped to 32/128).
    pub fn subnet(ip: IpAddr, v4: u8, v6: u8) -> Key {
        Subnets::new(v4, v6).of(ip)
    }

    /// The address part.
    pub fn addr(self) -> IpAddr {
        match self {
            Key::V4 { addr, .. } => IpAddr::V4(Ipv4Addr::from(addr)),
            Key::V6 { addr, .. } => IpAddr::V6(Ipv6Addr::from(addr)),
        }
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        match self {
            Key::V4 { prefix, .. } | Key::V6 { prefix, .. } => prefix,
        }
    }

    /// True when this key is a whole address rather than a prefix.
    pub fn is_host(self) -> bool {
        match self {
            Key::V4 { prefix, .. } => prefix == 32,
            Key::V6 { prefix, .. } => prefix == 128,
        }
    }

    /// True when `ip` falls inside this key.
    pub fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Key::V4 { addr, prefix }, IpAddr::V4(a)) => u32::from(a) & mask32(prefix) == addr,
            (Key::V6 { addr, prefix }, IpAddr::V6(a)) => u128::from(a) & mask128(prefix) == addr,
            _ => false,
        }
    }
}

/// The netmask of an IPv4 prefix of `prefix` bits (at most 32).
pub(crate) fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// A configuration's subnet lengths with their netmasks made once: [`Key::subnet`] for a packet
/// without working out a mask for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnets {
    v4: u8,
    v6: u8,
    mask4: u32,
    mask6: u128,
}

impl Subnets {
    /// Subnets of `v4`/`v6` bits (clamped to 32/128, as [`Key::subnet`] does).
    pub fn new(v4: u8, v6: u8) -> Subnets {
        let (v4, v6) = (v4.min(32), v6.min(128));
        Subnets {
            v4,
            v6,
            mask4: mask32(v4),
            mask6: mask128(v6),
        }
    }

    /// The subnet of `ip` ([`Key::subnet`] with these lengths).
    #[inline]
    pub fn of(self, ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(a) => Key::V4 {
                addr: u32::from(a) & self.mask4,
                prefix: self.v4,
            },
            IpAddr::V6(a) => Key::V6 {
                addr: u128::from(a) & self.mask6,
                prefix: self.v6,
            },
        }
    }
}

/// The netmask of an IPv6 prefix of `prefix` bits (at most 128).
pub(crate) fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix.min(128)))
    }
}

impl std::hash::Hash for Key {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match *self {
            Key::V4 { addr, prefix } => h.write_u64(u64::from(addr) | u64::from(prefix) << 32),
            Key::V6 { addr, prefix } => {
                h.write_u128(addr);
                h.write_u8(prefix);
            }
        }
    }
}

impl Key {
    /// A fast fixed-seed 64-bit mix of the key (a multiply-xorshift finaliser), for sketches and
    /// counters that need the same value on every run, without a hasher's per-call setup.
    #[inline]
    pub fn mix(self, seed: u64) -> u64 {
        let x = match self {
            Key::V4 { addr, prefix } => u64::from(addr) | u64::from(prefix) << 32 | 1 << 40,
            Key::V6 { addr, prefix } => {
                ((addr >> 64) as u64).rotate_left(29) ^ (addr as u64) ^ u64::from(prefix) << 56
            }
        };
        let mut z = x ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl fmt::Display for Key {
    /// Hosts print as a bare address, prefixes as `addr/len`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr())
        } else {
            write!(f, "{}/{}", self.addr(), self.prefix())
        }
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for Key {
    type Err = String;

    /// Parses `addr` or `addr/len`; host bits of a prefix are cleared.
    fn from_str(s: &str) -> Result<Key, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or prefix"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Key::subnet(ip, len, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_masks_host_bits_and_prints_prefix() {
        let ip: IpAddr = "198.51.100.77".parse().unwrap();
        let k = Key::subnet(ip, 24, 64);
        assert_eq!(k.to_string(), "198.51.100.0/24");
        assert!(k.contains(ip));
        assert!(!k.contains("198.51.101.1".parse().unwrap()));
        assert_eq!(Key::host(ip).to_string(), "198.51.100.77");
        let v6: IpAddr = "2001:db8:1:2:3::9".parse().unwrap();
        assert_eq!(Key::subnet(v6, 24, 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(Key::subnet(ip, 0, 0).to_string(), "0.0.0.0/0");
    }

    #[test]
    fn subnets_made_once_are_the_subnets_of_each_address() {
        let ips: [IpAddr; 4] = [
            "198.51.100.77".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "2001:db8:1:2:3::9".parse().unwrap(),
            "ffff::1".parse().unwrap(),
        ];
        for (v4, v6) in [(0, 0), (1, 1), (24, 64), (31, 127), (32, 128), (40, 200)] {
            let subnets = Subnets::new(v4, v6);
            for ip in ips {
                assert_eq!(subnets.of(ip), Key::subnet(ip, v4, v6), "{ip} /{v4} /{v6}");
            }
        }
    }

    #[test]
    fn parses_and_orders() {
        let a: Key = "10.0.0.9/8".parse().unwrap();
        assert_eq!(a.to_string(), "10.0.0.0/8");
        assert!("10.0.0.1/33".parse::<Key>().is_err());
        assert!("nonsense".parse::<Key>().is_err());
        let v6: Key = "::1".parse().unwrap();
        assert!(a < v6);
    }
}
