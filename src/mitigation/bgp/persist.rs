//! The persist file beside `--state` (`STATE.exabgp.json`): the routes ExaBGP may hold when a run
//! stops, so the next run announces the wanted ones again and withdraws the rest.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One route in the persist file. A route with no `announce` (and no scope or key) is one whose
/// withdrawal was not written yet: the next run writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SavedRoute {
    pub scope: String,
    pub key: String,
    pub announce: String,
    pub withdraw: String,
}

/// The persist file: `{"format":"floodwatch-exabgp-routes","version":1,"routes":[…]}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedRoutes {
    format: String,
    version: u32,
    routes: Vec<SavedRoute>,
}

const SAVED_FORMAT: &str = "floodwatch-exabgp-routes";

/// What the persist file held at start.
#[derive(Debug)]
pub(super) enum Loaded {
    Routes(Vec<SavedRoute>),
    /// Not a persist file (corrupt, truncated, another version): renamed, the run starts with
    /// no routes.
    MovedAside {
        reason: String,
        to: PathBuf,
    },
}

/// Why the persist file could not be used nor moved aside.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(
        "the ExaBGP routes file {path} cannot be read: {source} (fix its permissions or remove it)"
    )]
    Read { path: String, source: io::Error },
    #[error("the ExaBGP routes file {path} cannot be used ({reason}) nor moved aside: {source} (remove it)")]
    MoveAside {
        path: String,
        reason: String,
        source: io::Error,
    },
}

/// Reads the persist file; a missing file is no routes, one that is not a persist file is moved
/// aside to `PATH.corrupt-TIME` (as the state file is) so it is never overwritten unread.
pub(super) fn load(path: &Path) -> Result<Loaded, PersistError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Routes(Vec::new())),
        Err(source) => {
            return Err(PersistError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let reason = match serde_json::from_slice::<SavedRoutes>(&text) {
        Ok(s) if s.format == SAVED_FORMAT && s.version == 1 => return Ok(Loaded::Routes(s.routes)),
        Ok(s) => format!(
            "not a {SAVED_FORMAT} file of version 1 (format {:?}, version {})",
            s.format, s.version
        ),
        Err(e) => e.to_string(),
    };
    let to = crate::atomic_file::corrupt_name(path, &crate::time::Timestamp::now());
    match std::fs::rename(path, &to) {
        Ok(()) => Ok(Loaded::MovedAside { reason, to }),
        Err(source) => Err(PersistError::MoveAside {
            path: path.display().to_string(),
            reason,
            source,
        }),
    }
}

/// Replaces the persist file (atomically) with `routes`.
pub(super) fn save(path: &Path, routes: &[SavedRoute]) -> io::Result<()> {
    let file = SavedRoutes {
        format: SAVED_FORMAT.to_owned(),
        version: 1,
        routes: routes.to_vec(),
    };
    crate::atomic_file::write_atomic(path, |w| {
        serde_json::to_writer(&mut *w, &file).map_err(io::Error::other)
    })
}

/// The persist file kept beside a `--state` file.
pub fn persist_path_for(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".exabgp.json");
    PathBuf::from(name)
}
