//! Daemon state (`--state FILE`): the learned baselines, kept across restarts.
//!
//! The state file *is* a baselines file (the format `--save-baseline` writes and `--load-baseline`
//! reads, with its format name and version), so either option reads what the other wrote. What this
//! module adds is how it is written and read by a process meant to run for months:
//!
//! - written with [`write_atomic`] (src/atomic_file.rs): a crash at any moment leaves either the
//!   previous complete file or the new complete one, never a mix.
//! - [`Snapshot`]: the baselines as the shards hand them over (plain `Copy` values, no strings, so
//!   the copy that pauses a shard is a memcpy per key), serialised to the file's JSON on the
//!   writer's thread without building an intermediate [`BaselineFile`].
//! - [`load_state`]: a missing file is a cold start; a file that cannot be used (corrupt, truncated,
//!   another version, other subnet prefixes) is moved aside to `FILE.corrupt-TIME` with a warning and
//!   the run starts cold, instead of refusing to start. (`--load-baseline` stays strict: a file the
//!   operator names explicitly that cannot be used is an error.)

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

pub use crate::atomic_file::remove_stale_temps;
use crate::atomic_file::write_atomic;
use crate::baseline::{Baseline, BaselineFile, BaselineFileError};
use crate::key::{Key, Scope};
use crate::window::Signal;

/// One key's learned baseline, as a shard hands it over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SnapshotEntry {
    pub scope: Scope,
    pub key: Key,
    pub baseline: Baseline,
}

/// Every shard's baselines at one point, ready to be written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub subnet_v4: u8,
    pub subnet_v6: u8,
    pub entries: Vec<SnapshotEntry>,
}

impl Snapshot {
    /// A snapshot of `entries` for keys made with these subnet prefix lengths.
    pub fn new(subnet_v4: u8, subnet_v6: u8, entries: Vec<SnapshotEntry>) -> Snapshot {
        Snapshot {
            subnet_v4,
            subnet_v6,
            entries,
        }
    }

    /// Orders the entries by scope and key, so the same baselines give the same file whatever the
    /// shard count.
    pub fn sort(&mut self) {
        self.entries.sort_unstable_by_key(|e| (e.scope, e.key));
    }

    /// Writes the snapshot as a baselines file (JSON) to `w`.
    pub fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer(&mut *w, self).map_err(io::Error::other)
    }

    /// Sorts, then writes the file atomically ([`write_atomic`]).
    pub fn save(&mut self, path: &Path) -> Result<(), StateError> {
        self.sort();
        write_atomic(path, |w| self.write_json(w)).map_err(|source| StateError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let signals: Vec<&str> = Signal::ALL[..Signal::THRESHOLDED]
            .iter()
            .map(|s| s.name())
            .collect();
        let mut st = s.serialize_struct("BaselineFile", 6)?;
        st.serialize_field("format", BaselineFile::FORMAT)?;
        st.serialize_field("version", &BaselineFile::VERSION)?;
        st.serialize_field("signals", &signals)?;
        st.serialize_field("subnet_v4", &self.subnet_v4)?;
        st.serialize_field("subnet_v6", &self.subnet_v6)?;
        st.serialize_field("entries", &Entries(&self.entries))?;
        st.end()
    }
}

struct Entries<'a>(&'a [SnapshotEntry]);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(&EntryView(e))?;
        }
        seq.end()
    }
}

/// One entry in the field order of [`crate::baseline::BaselineEntry`].
struct EntryView<'a>(&'a SnapshotEntry);

impl Serialize for EntryView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut st = s.serialize_struct("BaselineEntry", 5)?;
        st.serialize_field("scope", e.scope.name())?;
        st.serialize_field("key", &AsDisplay(&e.key))?;
        st.serialize_field("samples", &e.baseline.samples)?;
        st.serialize_field("mean", &Column(&e.baseline, false))?;
        st.serialize_field("var", &Column(&e.baseline, true))?;
        st.end()
    }
}

/// A value written as its `Display` string, with no allocation.
struct AsDisplay<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> Serialize for AsDisplay<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// The means (or variances) of a baseline. A value that is not a finite number ≥ 0 (which learning
/// never makes) is written as 0, since a reader rejects the whole file for one.
struct Column<'a>(&'a Baseline, bool);

impl Serialize for Column<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.rates.len()))?;
        for r in &self.0.rates {
            let x = if self.1 { r.var } else { r.mean };
            seq.serialize_element(&if x.is_finite() && x >= 0.0 { x } else { 0.0 })?;
        }
        seq.end()
    }
}

/// Why the state could not be read, moved aside or written. Each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {source} (fix its permissions, or remove it to start cold)")]
    Read { path: String, source: io::Error },
    #[error("cannot write the state file {path}: {source} (check that its directory exists and is writable by this user, and has room)")]
    Write { path: String, source: io::Error },
    #[error("the state file {path} cannot be used ({reason}) and cannot be moved aside: {source} (remove it to start cold)")]
    Quarantine {
        path: String,
        reason: String,
        source: io::Error,
    },
}

/// What [`load_state`] found.
#[derive(Debug)]
pub enum StateStart {
    /// No state file yet: a cold start.
    Missing,
    /// The learned baselines.
    Loaded(BaselineFile),
    /// The file could not be used (`reason`); it was renamed to `moved_to`. A cold start.
    Quarantined { reason: String, moved_to: PathBuf },
}

/// Reads the state at `path` for a run with these subnet prefix lengths. A file that is not a
/// usable baselines file is renamed to `PATH.corrupt-TIME` (UTC, e.g. `20251125T144310Z`) and the
/// run starts cold; only a file that exists but cannot be read (permissions) is an error.
pub fn load_state(path: &Path, subnet_v4: u8, subnet_v6: u8) -> Result<StateStart, StateError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StateStart::Missing),
        Err(source) => {
            return Err(StateError::Read {
                path: path.display().to_string(),
                source,
            })
        }
        Ok(_) => {}
    }
    let why = match BaselineFile::load(path, subnet_v4, subnet_v6) {
        Ok(f) => return Ok(StateStart::Loaded(f)),
        Err(BaselineFileError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(StateStart::Missing)
        }
        Err(BaselineFileError::Read { path, source }) => {
            return Err(StateError::Read { path, source })
        }
        Err(BaselineFileError::Parse { detail, .. }) => {
            format!("not a complete baselines file: {detail}")
        }
        Err(BaselineFileError::Version {
            found, expected, ..
        }) => format!("format version {found}, this floodwatch reads {expected}"),
        Err(BaselineFileError::Incompatible { detail, .. }) => detail,
        Err(e) => e.to_string(),
    };
    let reason = format!("the state file {} cannot be used ({why})", path.display());
    let moved_to = crate::atomic_file::corrupt_name(path, &crate::time::Timestamp::now());
    std::fs::rename(path, &moved_to).map_err(|source| StateError::Quarantine {
        path: path.display().to_string(),
        reason: why.clone(),
        source,
    })?;
    Ok(StateStart::Quarantined { reason, moved_to })
}

/// Checks that the state file's directory takes new files (as this process's user, e.g. after
/// `--user`), so a run that could never checkpoint fails at start rather than every interval.
pub fn check_writable(path: &Path) -> Result<(), StateError> {
    crate::atomic_file::write_atomic_probe(path).map_err(|source| StateError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::Ewma;

    fn entry(scope: Scope, key: &str, mean: f32) -> SnapshotEntry {
        let mut b = Baseline {
            samples: 40,
            ..Baseline::default()
        };
        b.rates[0] = Ewma { mean, var: 4.0 };
        b.rates[2] = Ewma {
            mean: mean / 10.0,
            var: 0.5,
        };
        SnapshotEntry {
            scope,
            key: key.parse().unwrap(),
            baseline: b,
        }
    }

    #[test]
    fn a_snapshot_is_a_baselines_file_that_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let entries = vec![
            entry(Scope::SrcHost, "203.0.113.9", 12.5),
            entry(Scope::DstHost, "198.51.100.10", 101.25),
            entry(Scope::DstSubnet, "2001:db8::/64", 7.0),
        ];
        Snapshot::new(24, 64, entries.clone()).save(&path).unwrap();
        let f = BaselineFile::load(&path, 24, 64).unwrap();
        assert_eq!(f.entries.len(), 3);
        // sorted by scope, then key
        assert_eq!(f.entries[0].scope, "dst_host");
        assert_eq!(f.entries[2].scope, "src_host");
        for e in &entries {
            let back = f
                .entries
                .iter()
                .find(|b| b.key == e.key.to_string() && b.scope == e.scope.name())
                .unwrap();
            assert_eq!(Baseline::from_entry(back), e.baseline);
        }
        // the same bytes as the baselines file the old path writes
        let old = BaselineFile::new(
            24,
            64,
            entries
                .iter()
                .map(|e| e.baseline.to_entry(e.scope, e.key))
                .collect(),
        );
        let mut a = Vec::new();
        Snapshot::new(24, 64, entries).write_json(&mut a).unwrap();
        let parsed: BaselineFile = serde_json::from_slice(&a).unwrap();
        let mut want = old.entries.clone();
        want.sort_by(|x, y| (&x.scope, &x.key).cmp(&(&y.scope, &y.key)));
        let mut got = parsed.entries.clone();
        got.sort_by(|x, y| (&x.scope, &x.key).cmp(&(&y.scope, &y.key)));
        assert_eq!(got, want);
        // no temporary file is left behind, and the file is private
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn non_finite_values_are_written_as_zero_so_the_file_stays_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut e = entry(Scope::DstHost, "198.51.100.10", 1.0);
        e.baseline.rates[1].mean = f32::NAN;
        e.baseline.rates[3].var = f32::INFINITY;
        e.baseline.rates[4].mean = -1.0;
        Snapshot::new(24, 64, vec![e]).save(&path).unwrap();
        let f = BaselineFile::load(&path, 24, 64).unwrap();
        assert_eq!(f.entries[0].mean[1], 0.0);
        assert_eq!(f.entries[0].var[3], 0.0);
        assert_eq!(f.entries[0].mean[4], 0.0);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // a directory that does not exist names the file
        let e = Snapshot::default()
            .save(&dir.path().join("nope/state.json"))
            .unwrap_err()
            .to_string();
        crate::fixtures::assert_contains_all(&e, &["nope/state.json", "writable"]);
    }

    #[test]
    fn a_missing_state_is_a_cold_start_and_a_corrupt_one_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(matches!(
            load_state(&path, 24, 64).unwrap(),
            StateStart::Missing
        ));
        for bad in [
            &b"{\"format\":\"floodwatch-baselines\",\"version\":1,\"entries\":["[..],
            b"\x00\x01garbage",
            b"",
            b"{\"format\":\"floodwatch-baselines\",\"version\":7}",
        ] {
            std::fs::write(&path, bad).unwrap();
            match load_state(&path, 24, 64).unwrap() {
                StateStart::Quarantined { reason, moved_to } => {
                    assert!(!path.exists());
                    assert_eq!(std::fs::read(&moved_to).unwrap(), bad);
                    let name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
                    assert!(name.starts_with("state.json.corrupt-20"), "{name}");
                    assert!(name.ends_with('Z') && !name.contains(':'), "{name}");
                    assert!(reason.contains("state.json"), "{reason}");
                    std::fs::remove_file(moved_to).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        // other subnet prefixes: not usable by this run either
        Snapshot::new(22, 64, vec![entry(Scope::DstHost, "198.51.100.10", 1.0)])
            .save(&path)
            .unwrap();
        assert!(matches!(
            load_state(&path, 24, 64).unwrap(),
            StateStart::Quarantined { .. }
        ));
        Snapshot::new(24, 64, vec![entry(Scope::DstHost, "198.51.100.10", 1.0)])
            .save(&path)
            .unwrap();
        match load_state(&path, 24, 64).unwrap() {
            StateStart::Loaded(f) => assert_eq!(f.entries.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        // pid 0 never names a live process in /proc; our own pid is alive
        let dead = dir.path().join(".state.json.tmp.0.3");
        let ours = dir
            .path()
            .join(format!(".state.json.tmp.{}.1", std::process::id()));
        let other = dir.path().join(".other.json.tmp.0.1");
        for p in [&dead, &ours, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(&path), vec![dead.clone()]);
        assert!(!dead.exists() && ours.exists() && other.exists());
        check_writable(&path).unwrap();
        assert!(check_writable(&dir.path().join("missing/state.json")).is_err());
    }
}
