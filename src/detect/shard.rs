//! Where a packet goes before the engine counts it: which scopes of a packet count ([`scopes_of`]),
//! its key in each ([`key_of`]), and which shard owns each (scope, key) ([`Ownership`],
//! [`ShardSpec`], [`ScopeMask`]). The router and the engines share these, so they agree on every
//! packet.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

use crate::config::DetectConfig;
use crate::decode::PacketSummary;
use crate::key::{Key, Scope};
use crate::table::SourceAdmission;

/// Which part of the key space an engine owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

impl ShardSpec {
    /// The only shard: owns every key.
    pub const SOLE: ShardSpec = ShardSpec { index: 0, count: 1 };
}

/// A set of scopes, one bit per [`Scope::index`]: the scopes of a packet a shard counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScopeMask(pub u8);

impl ScopeMask {
    /// Every scope.
    pub const ALL: ScopeMask = ScopeMask(0b1111);
    /// The two source scopes (a packet whose destination is not ours).
    pub const SOURCES: ScopeMask = ScopeMask(0b1100);
    /// Both destination scopes.
    pub const DESTINATIONS: ScopeMask = ScopeMask(0b0011);

    #[inline]
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & (1 << scope.index()) != 0
    }

    #[inline]
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= 1 << scope.index();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Which shard owns each (scope, key): a pure function of the key, the hash seed and the shard count,
/// so the router and the engines agree and the split is the same on every run. Destination keys go
/// by a seeded hash; source keys by their admission bank, so keys that can share an admission
/// counter share a shard.
#[derive(Clone, Debug)]
pub struct Ownership {
    count: usize,
    /// Seeds of the destination scopes' hash (from the run's hash seed, so attackers cannot aim
    /// keys at one shard).
    seeds: [u64; 2],
    /// The owner of each source admission bank (`bank % count`, looked up: no division per packet).
    bank_owner: [u16; SourceAdmission::BANKS],
}

impl Ownership {
    /// The split of `cfg`'s keys over `count` shards.
    pub fn new(cfg: &DetectConfig, count: usize) -> Ownership {
        let seed = FixedState::with_seed(cfg.hash_seed ^ 0x0005_4a2d).hash_one(0x5ca1_ab1e_u64);
        let count = count.max(1);
        let mut bank_owner = [0u16; SourceAdmission::BANKS];
        for (bank, owner) in bank_owner.iter_mut().enumerate() {
            *owner = (bank % count) as u16;
        }
        Ownership {
            count,
            seeds: [seed, seed.rotate_left(17) ^ 0x0d57_5ab0],
            bank_owner,
        }
    }

    /// Shards in the split.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The shard that owns `key` of `scope`.
    #[inline]
    pub fn owner(&self, scope: Scope, key: &Key) -> usize {
        if self.count == 1 {
            return 0;
        }
        match scope {
            // one multiply-xorshift mix, mapped to a shard by multiply-high (no division)
            Scope::DstHost | Scope::DstSubnet => {
                let h = key.mix(self.seeds[scope.index()]);
                ((u128::from(h) * self.count as u128) >> 64) as usize
            }
            Scope::SrcHost | Scope::SrcSubnet => self
                .bank_owner
                .get(SourceAdmission::slots(*key).bank)
                .map_or(0, |o| usize::from(*o)),
        }
    }
}

/// The scopes `p` counts in under `cfg`: none when an `ignore` network or no `ours` network covers
/// it, only the source scopes when its destination is not ours.
#[inline]
pub fn scopes_of(cfg: &DetectConfig, p: &PacketSummary) -> ScopeMask {
    if !cfg.ignore.is_empty() && (cfg.ignored(p.src) || cfg.ignored(p.dst)) {
        return ScopeMask(0);
    }
    if cfg.is_ours(p.dst) {
        ScopeMask::ALL
    } else if cfg.is_ours(p.src) {
        ScopeMask::SOURCES
    } else {
        ScopeMask(0)
    }
}

/// The key of `p` in `scope` under `cfg`'s subnet prefixes.
#[inline]
pub fn key_of(cfg: &DetectConfig, scope: Scope, p: &PacketSummary) -> Key {
    let (v4, v6) = (cfg.subnet_v4, cfg.subnet_v6);
    match scope {
        Scope::DstHost => Key::host(p.dst),
        Scope::DstSubnet => Key::subnet(p.dst, v4, v6),
        Scope::SrcHost => Key::host(p.src),
        Scope::SrcSubnet => Key::subnet(p.src, v4, v6),
    }
}
