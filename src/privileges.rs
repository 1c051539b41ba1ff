//! `--user NAME` / `--group NAME`: give up root (and every capability) once the capture sockets, the
//! telemetry listeners and the metrics endpoint are open.
//!
//! Nothing floodwatch does after start-up needs a privilege: an AF_PACKET socket keeps reading its
//! mmapped ring and answering `PACKET_STATISTICS` after the process has lost `CAP_NET_RAW` (the
//! kernel checks the capability when the socket is created, not when it is used), libpcap's handle
//! likewise, and bound UDP and TCP sockets keep receiving. So the switch keeps *no* capability, not
//! even `CAP_NET_RAW`: a bug in the parts that face the network (the decoder, the telemetry parser,
//! the HTTP endpoint) or in an alert hook then runs as an ordinary user with no way back to root.
//!
//! Started as root, the process switches its group list, group and user ids (real, effective and
//! saved, so none of them can switch back); the kernel then clears its capabilities. Started as the
//! named user already (e.g. systemd's `User=` with `AmbientCapabilities=CAP_NET_RAW`), it only drops
//! the capabilities it was given. Either way the result is checked: the ids read back, every
//! capability set is empty, and `setuid(0)` fails; if not, the run stops. `no_new_privs` is set as
//! well, so no program started afterwards (a hook, or `sudo` inside one) can gain a privilege.

use std::fmt;

use nix::unistd::{Gid, Group, Uid, User};

/// Whom to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub uid: Uid,
    pub group: String,
    pub gid: Gid,
}

/// Why the switch could not be made. Each names the user or group and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("--user {0}: no such user (create it, e.g. `useradd --system --no-create-home {0}`, or name another)")]
    NoUser(String),
    #[error("--group {0}: no such group")]
    NoGroup(String),
    #[error("cannot look up {what}: {source}")]
    Lookup { what: String, source: nix::Error },
    #[error("--user {user}: floodwatch runs as uid {current}, not root, so it cannot become another user; start it as root, or as {user} itself (systemd: User={user} with AmbientCapabilities=CAP_NET_RAW)")]
    NotRoot { user: String, current: u32 },
    #[error("cannot switch to user {user} / group {group}: {step} failed: {source}")]
    Switch {
        user: String,
        group: String,
        step: &'static str,
        source: nix::Error,
    },
    #[error("cannot drop capabilities: {0}")]
    Capabilities(std::io::Error),
    #[error("privileges were not dropped as asked: {0}; refusing to run (please report it)")]
    Verify(String),
}

/// What the process is after [`drop_to`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub target: Target,
    /// Whether it switched from root (else it already was the user and only shed capabilities).
    pub switched: bool,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.target;
        write!(
            f,
            "running as user {} (uid {}), group {} (gid {}), with no capabilities",
            t.user, t.uid, t.group, t.gid
        )
    }
}

/// Looks up `user` and `group` (default: the user's primary group).
pub fn resolve(user: &str, group: Option<&str>) -> Result<Target, PrivilegeError> {
    let u = found(User::from_name(user), || format!("user {user}"))?
        .ok_or_else(|| PrivilegeError::NoUser(user.to_owned()))?;
    let (group, gid) = match group {
        Some(g) => {
            let gr = found(Group::from_name(g), || format!("group {g}"))?
                .ok_or_else(|| PrivilegeError::NoGroup(g.to_owned()))?;
            (gr.name, gr.gid)
        }
        None => {
            let name = Group::from_gid(u.gid)
                .ok()
                .flatten()
                .map_or_else(|| u.gid.to_string(), |g| g.name);
            (name, u.gid)
        }
    };
    Ok(Target {
        user: u.name,
        uid: u.uid,
        group,
        gid,
    })
}

/// A user or group lookup's answer, its failure named after `what` was looked up.
fn found<T>(
    answer: nix::Result<Option<T>>,
    what: impl FnOnce() -> String,
) -> Result<Option<T>, PrivilegeError> {
    answer.map_err(|source| PrivilegeError::Lookup {
        what: what(),
        source,
    })
}

/// Becomes `target` for good (see the module documentation), then checks it.
pub fn drop_to(target: &Target) -> Result<Dropped, PrivilegeError> {
    let switched = Uid::effective().is_root();
    if switched {
        let fail = |step, source| PrivilegeError::Switch {
            user: target.user.clone(),
            group: target.group.clone(),
            step,
            source,
        };
        // groups first: only root may change them
        nix::unistd::setgroups(&[target.gid]).map_err(|e| fail("setgroups", e))?;
        nix::unistd::setresgid(target.gid, target.gid, target.gid)
            .map_err(|e| fail("setresgid", e))?;
        nix::unistd::setresuid(target.uid, target.uid, target.uid)
            .map_err(|e| fail("setresuid", e))?;
    } else if Uid::current() != target.uid || Uid::effective() != target.uid {
        return Err(PrivilegeError::NotRoot {
            user: target.user.clone(),
            current: Uid::effective().as_raw(),
        });
    }
    clear_capabilities().map_err(PrivilegeError::Capabilities)?;
    // No executable started from here on (an alert hook, or a set-user-id program it runs, such
    // as sudo) can gain a privilege back.
    nix::sys::prctl::set_no_new_privs().map_err(|e| PrivilegeError::Switch {
        user: target.user.clone(),
        group: target.group.clone(),
        step: "prctl(PR_SET_NO_NEW_PRIVS)",
        source: e,
    })?;
    verify(target)?;
    Ok(Dropped {
        target: target.clone(),
        switched,
    })
}

/// Makes `cmd`'s child give up what this process may still hold in the thread that starts it:
/// its ambient capabilities (so nothing survives the exec as a non-root user) and the right to gain
/// privileges through set-user-id programs or file capabilities (no_new_privs). Capabilities and
/// no_new_privs are per thread, and the hook runner's thread may have started before
/// [`drop_to`]: the child must not depend on that.
pub fn harden_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: it makes two prctl system calls with integer arguments, allocates nothing
    // and touches no lock. Errors are ignored on purpose for PR_CAP_AMBIENT (EINVAL on kernels
    // without ambient capabilities); no_new_privs cannot fail on a supported kernel, and if it did
    // the exec would go on with the restrictions the process already has.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            Ok(())
        });
    }
}

/// Empties the ambient, effective, permitted and inheritable capability sets of the process.
fn clear_capabilities() -> std::io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) takes no pointers; it only
    // changes this process's ambient set. EINVAL means a kernel without ambient capabilities
    // (before 4.3), which has nothing to clear.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    // The capset(2) interface: version 3 takes a header and two 32-bit data words per set.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and, for version 3, two data structs, through valid
    // pointers to live locals of the layout the kernel ABI defines (repr(C), u32 fields); pid 0 is
    // this thread. Lowering every set is always permitted.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Checks what the kernel says about this process: the ids, the capability sets, and that root
/// cannot be regained.
fn verify(target: &Target) -> Result<(), PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| PrivilegeError::Verify(format!("cannot read /proc/self/status: {e}")))?;
    check_status(&status, target).map_err(PrivilegeError::Verify)?;
    if !target.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::Verify("setuid(0) succeeded".into()));
    }
    if target.gid.as_raw() != 0 && nix::unistd::setgid(Gid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::Verify("setgid(0) succeeded".into()));
    }
    Ok(())
}

/// Checks a `/proc/PID/status` text: every uid and gid is the target's, the supplementary groups
/// at most its group, and no capability is held.
pub fn check_status(status: &str, target: &Target) -> Result<(), String> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .ok_or_else(|| format!("no {name} line"))
    };
    let ids = |name: &str, want: u32| -> Result<(), String> {
        let v = field(name)?;
        if v.split_whitespace().all(|x| x == want.to_string()) {
            Ok(())
        } else {
            Err(format!("{name} {v}, expected {want} everywhere"))
        }
    };
    ids("Uid:", target.uid.as_raw())?;
    ids("Gid:", target.gid.as_raw())?;
    let groups = field("Groups:")?;
    if groups
        .split_whitespace()
        .any(|g| g != target.gid.as_raw().to_string())
    {
        return Err(format!("supplementary groups {groups}"));
    }
    if field("NoNewPrivs:").is_ok_and(|v| v != "1") {
        return Err("NoNewPrivs is not set".into());
    }
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        // CapAmb is absent before Linux 4.3
        if let Ok(v) = field(cap) {
            if u64::from_str_radix(v, 16) != Ok(0) {
                return Err(format!("{cap} {v}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody() -> Target {
        Target {
            user: "nobody".into(),
            uid: Uid::from_raw(65534),
            group: "nogroup".into(),
            gid: Gid::from_raw(65534),
        }
    }

    #[test]
    fn a_status_is_accepted_only_with_every_id_switched_and_no_capability() {
        let good = "Name:\tfloodwatch\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
                    Groups:\t65534 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
                    CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n\
                    NoNewPrivs:\t1\n";
        assert_eq!(check_status(good, &nobody()), Ok(()));
        let saved_root = good.replace("Uid:\t65534\t65534\t65534", "Uid:\t65534\t65534\t0");
        assert!(check_status(&saved_root, &nobody())
            .unwrap_err()
            .contains("Uid"));
        let groups = good.replace("Groups:\t65534 ", "Groups:\t0 65534");
        assert!(check_status(&groups, &nobody())
            .unwrap_err()
            .contains("groups"));
        let raw = good.replace("CapEff:\t0000000000000000", "CapEff:\t0000000000002000");
        assert!(check_status(&raw, &nobody())
            .unwrap_err()
            .contains("CapEff"));
        let amb = good.replace("CapAmb:\t0000000000000000", "CapAmb:\t0000000000002000");
        assert!(check_status(&amb, &nobody()).is_err());
        let nnp = good.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        assert!(check_status(&nnp, &nobody())
            .unwrap_err()
            .contains("NoNewPrivs"));
        // an empty group list is fine
        let none = good.replace("Groups:\t65534 ", "Groups:\t");
        assert_eq!(check_status(&none, &nobody()), Ok(()));
    }

    #[test]
    fn unknown_users_and_groups_are_named() {
        let e = resolve("no-such-user-fw14", None).unwrap_err().to_string();
        assert!(
            e.contains("no-such-user-fw14") && e.contains("useradd"),
            "{e}"
        );
        let e = resolve("root", Some("no-such-group-fw14"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-group-fw14"), "{e}");
        let root = resolve("root", None).unwrap();
        assert_eq!((root.uid.as_raw(), root.gid.as_raw()), (0, 0));
    }
}
