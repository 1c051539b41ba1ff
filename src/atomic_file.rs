//! Files replaced whole, atomically, and files set aside: what the state file (src/state.rs), a
//! baselines file (src/baseline.rs) and the BGP announcement book (src/mitigation/bgp/persist.rs)
//! share.
//!
//! - [`write_atomic`]: a temporary file in the same directory, written, `fsync`ed, renamed over the
//!   target, then the directory `fsync`ed. A crash (even `kill -9` or a power cut) at any moment
//!   leaves either the previous complete file or the new complete one, never a mix.
//! - [`remove_stale_temps`]: the temporary files of a killed run.
//! - [`corrupt_name`]: where a file that cannot be used is moved aside.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `PATH.corrupt-20251125T144310Z` for a file set aside at `now`.
pub fn corrupt_name(path: &Path, now: &crate::time::Timestamp) -> PathBuf {
    // 2025-11-25T14:43:10.250000Z → 20251125T144310Z
    let t = now.to_string();
    let stamp: String = t
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{stamp}Z"));
    PathBuf::from(name)
}

/// Temporary files made by this process get distinct names.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory `path` is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The prefix of the temporary files [`write_atomic`] makes for `path`: `.NAME.tmp.`.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp.")
}

/// Writes `path` atomically: `write` fills a new temporary file in the same directory (mode 0600),
/// which is flushed to disk, renamed over `path`, and the directory flushed so the rename itself
/// survives a power cut. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let dir = dir_of(path);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{}{}.{n}", temp_prefix(path), std::process::id()));
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files a killed run left beside `path` (`.NAME.tmp.PID.N` of a process that
/// no longer runs); returns those removed.
pub fn remove_stale_temps(path: &Path) -> Vec<PathBuf> {
    let prefix = temp_prefix(path);
    let Ok(dir) = std::fs::read_dir(dir_of(path)) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('.').next().map(str::parse::<u32>) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Creates and removes a temporary file beside `path`, as [`write_atomic`] would: whether the
/// directory takes new files.
pub fn write_atomic_probe(path: &Path) -> io::Result<()> {
    let dir = dir_of(path);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{}{}.{n}", temp_prefix(path), std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    // the rename that replaces the file needs only the directory to be writable
    std::fs::remove_file(&tmp)
}
