//! Learned baselines into and out of the engine: baselines loaded from a file wait for their keys
//! ([`Engine::load_baselines`]); a save or a checkpoint copies every key's baseline
//! ([`Engine::baselines`], [`Engine::snapshot_into`]), or asks for the copy to be taken during the
//! next full evaluation, which visits every key anyway ([`Engine::request_snapshot`]).

use std::collections::HashMap;

use foldhash::fast::FixedState;

use crate::baseline::{Baseline, BaselineEntry};
use crate::key::{Key, Scope};
use crate::state::SnapshotEntry;

use super::Engine;

impl Engine {
    /// Takes learned baselines (from [`BaselineFile::load`](crate::baseline::BaselineFile::load)) for the keys this shard owns; each key
    /// starts from its own when it first shows up. At most the scope's key cap are kept per scope.
    pub fn load_baselines(&mut self, entries: &[BaselineEntry]) -> usize {
        let mut per_scope = [0usize; 4];
        let mut n = 0;
        for e in entries {
            let (Some(scope), Ok(key)) = (Scope::from_name(&e.scope), e.key.parse::<Key>()) else {
                continue;
            };
            if !self.owns(scope, &key)
                || per_scope[scope.index()] >= self.tables[scope.index()].capacity()
            {
                continue;
            }
            per_scope[scope.index()] += 1;
            self.loaded.insert((scope, key), Baseline::from_entry(e));
            n += 1;
        }
        n
    }

    /// The learned baselines of this shard's keys, plus loaded ones whose keys never showed up, for
    /// [`BaselineFile::save`](crate::baseline::BaselineFile::save).
    pub fn baselines(&self) -> Vec<BaselineEntry> {
        let mut snap = Vec::new();
        self.snapshot_into(&mut snap);
        snap.iter()
            .map(|e| e.baseline.to_entry(e.scope, e.key))
            .collect()
    }

    /// Appends what [`Engine::baselines`] holds to `out` as plain copies (no strings): what a
    /// checkpoint takes from a shard, so the shard pauses only for one copy per key while the
    /// serialisation and the write happen elsewhere.
    pub fn snapshot_into(&self, out: &mut Vec<SnapshotEntry>) {
        out.reserve(self.baseline_count());
        for scope in Scope::ALL {
            for (key, st) in self.tables[scope.index()].iter() {
                if st.baseline.samples > 0 {
                    out.push(SnapshotEntry {
                        scope,
                        key: *key,
                        baseline: st.baseline,
                    });
                }
            }
        }
        out.extend(loaded_entries(&self.loaded));
    }

    /// Asks for the baselines as [`Engine::snapshot_into`] gives them, copied during the next full
    /// evaluation (the next window boundary): that pass visits every key anyway and has just done
    /// its learning, so the copy costs little more than the writes, and every baseline is the one
    /// of that boundary. [`Engine::take_snapshot`] returns it afterwards.
    ///
    /// `buffer` is where the copies go (cleared first): the buffer of the previous checkpoint,
    /// handed back, costs no page faults; a fresh one costs a page fault every 36 keys or so.
    pub fn request_snapshot(&mut self, mut buffer: Vec<SnapshotEntry>) {
        if self.snapshot.is_none() {
            buffer.clear();
            buffer.reserve(self.baseline_count());
            self.snapshot = Some(buffer);
            self.snapshot_ready = false;
        }
    }

    /// The snapshot [`Engine::request_snapshot`] asked for, once a full evaluation has taken it.
    pub fn take_snapshot(&mut self) -> Option<Vec<SnapshotEntry>> {
        if !self.snapshot_ready {
            return None;
        }
        self.snapshot_ready = false;
        self.snapshot.take()
    }

    /// At most how many entries [`Engine::snapshot_into`] adds: the keys held and the loaded
    /// baselines still waiting for their keys.
    pub fn baseline_count(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum::<usize>() + self.loaded.len()
    }
}

/// The loaded baselines of keys not seen yet, as snapshot entries (a checkpoint keeps them).
pub(super) fn loaded_entries(
    loaded: &HashMap<(Scope, Key), Baseline, FixedState>,
) -> impl Iterator<Item = SnapshotEntry> + '_ {
    loaded
        .iter()
        .map(|(&(scope, key), &baseline)| SnapshotEntry {
            scope,
            key,
            baseline,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DetectConfig;
    use crate::detect::tests::{syn, T0};
    use crate::detect::ShardSpec;
    use crate::time::Timestamp;

    #[test]
    fn a_snapshot_asked_for_is_taken_at_the_next_window_boundary() {
        let ms = 1_000_000;
        let mut e = Engine::new(DetectConfig::default(), ShardSpec::SOLE).unwrap();
        let mut out = Vec::new();
        for i in 0..3_000u64 {
            e.on_packet(&syn(T0 + i * ms, (i % 50) as u32), &mut out);
        }
        e.request_snapshot(Vec::with_capacity(1));
        assert!(e.take_snapshot().is_none(), "not before a boundary");
        // packets ran every evaluation up to 2.9 s; 2.95 s is no evaluation at all
        e.advance_to(Timestamp(T0 + 2_950 * ms), &mut out);
        assert!(e.take_snapshot().is_none(), "nothing evaluated yet");
        e.advance_to(Timestamp(T0 + 3_050 * ms), &mut out);
        let mut taken = e.take_snapshot().expect("taken at the boundary");
        let mut direct = Vec::new();
        e.snapshot_into(&mut direct);
        let order = |v: &mut Vec<SnapshotEntry>| v.sort_by_key(|x| (x.scope, x.key));
        order(&mut taken);
        order(&mut direct);
        assert!(!taken.is_empty());
        assert_eq!(taken, direct);
        assert!(e.take_snapshot().is_none(), "taken once");
    }
}
