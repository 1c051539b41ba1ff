//! Named threads: every pipeline thread carries a name of its role (`fw-shard-0`, `fw-capture-1`,
//! `fw-sink`, …), which `top -H`, `ps -L`, `/proc/PID/task/*/comm` and profilers show, so an
//! operator can see which stage is busy (a saturated shard wants `--threads`; a saturated first
//! capture thread, which also routes, wants fewer, busier sockets or a faster machine). The main
//! thread keeps the program's name: during a run it is the one that reads (or, with several
//! capture threads, reads the first socket and routes).

use std::thread::{Builder, Scope, ScopedJoinHandle};

/// Spawns `f` in `scope` on a thread named `name` (Linux shows its first 15 bytes), as
/// [`Scope::spawn`] does otherwise: a system that cannot start a thread at all (out of memory,
/// or at its thread limit) stops the run the same way.
pub fn spawn_named<'scope, 'env, T, F>(
    scope: &'scope Scope<'scope, 'env>,
    name: String,
    f: F,
) -> ScopedJoinHandle<'scope, T>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    match Builder::new().name(name).spawn_scoped(scope, f) {
        Ok(handle) => handle,
        // what `Scope::spawn` does when the system refuses a thread
        Err(e) => panic!("failed to spawn thread: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_thread_carries_its_name() {
        let name = std::thread::scope(|s| {
            spawn_named(s, "fw-shard-3".to_string(), || {
                std::thread::current().name().map(str::to_string)
            })
            .join()
        });
        assert_eq!(name.ok().flatten().as_deref(), Some("fw-shard-3"));
        // the name the kernel shows, where there is one
        #[cfg(target_os = "linux")]
        {
            let comm = std::thread::scope(|s| {
                spawn_named(s, "fw-capture-12".to_string(), || {
                    std::fs::read_to_string("/proc/thread-self/comm").ok()
                })
                .join()
            });
            if let Ok(Some(comm)) = comm {
                assert_eq!(comm.trim_end(), "fw-capture-12");
            }
        }
    }
}
