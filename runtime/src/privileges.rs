//! Dropping privileges once a live capture is open.
//!
//! Why it exists: opening a packet socket needs CAP_NET_RAW (root, or a
//! capability granted by systemd or Kubernetes), but reading from the open
//! socket needs nothing, and a sensor parses hostile bytes all day. So, after
//! the interfaces are open and before a single packet is read, the process
//! switches to `privileges.run_as` (when started as root), gives up every
//! capability in every set, and sets `no_new_privs` so nothing it executes
//! can gain any back. A process still root after that is refused unless
//! `privileges.allow_root` says otherwise.
//!
//! Capability sets belong to threads, so the drop must happen while the
//! process has only one; [`drop_privileges`] refuses otherwise. `run`
//! therefore opens the capture, drops privileges, and only then loads the
//! model, starts the metrics endpoint and opens the outputs (which must be
//! reachable by `run_as`).

use anyhow::{bail, Context, Result};
use caps::CapSet;
use nix::unistd::{Gid, Uid, User};

use crate::config::PrivilegesSection;

/// Who the process is after [`drop_privileges`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// User name (or the numeric uid when it has none).
    pub user: String,
    /// Real, effective and saved uid.
    pub uid: u32,
    /// Real, effective and saved gid.
    pub gid: u32,
}

/// Threads of this process, from `/proc/self/task` (Linux).
fn threads() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(Iterator::count)
}

/// Switches user and drops every capability; see the module docs.
pub fn drop_privileges(p: &PrivilegesSection) -> Result<Dropped> {
    if let Some(n) = threads().filter(|&n| n > 1) {
        bail!("privileges must be dropped before any thread starts ({n} threads are running)");
    }
    // The bounding set first, while CAP_SETPCAP (which goes with root)
    // allows it: nothing executed later, even as root, gets a capability.
    if caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::all() {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    if Uid::effective().is_root() && !p.run_as.is_empty() {
        let user = User::from_name(&p.run_as)
            .with_context(|| format!("looking up privileges.run_as = {:?}", p.run_as))?
            .with_context(|| {
                format!(
                    "privileges.run_as: no user {:?} on this system (create it, or name another)",
                    p.run_as
                )
            })?;
        nix::unistd::setgroups(&[user.gid])
            .with_context(|| format!("setting the groups of {}", user.name))?;
        nix::unistd::setgid(user.gid).with_context(|| format!("switching to gid {}", user.gid))?;
        // Leaving uid 0 clears the permitted and effective sets of every
        // thread (glibc applies setuid to all threads; keep-caps is off).
        nix::unistd::setuid(user.uid).with_context(|| format!("switching to uid {}", user.uid))?;
        if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            bail!("switched to {} but could switch back to root", user.name);
        }
    } else if !Uid::effective().is_root() && !p.run_as.is_empty() {
        tracing::info!(
            message = "not started as root: keeping the current user, dropping capabilities",
            run_as = %p.run_as
        );
    }
    // Whatever is left (a non-root start with ambient capabilities, or root
    // kept by allow_root): every set emptied.
    caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")?;
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).with_context(|| format!("clearing the {set:?} capabilities"))?;
    }
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integers and
    // touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting no_new_privs");
    }
    let left = caps::read(None, CapSet::Effective).context("reading the capabilities")?;
    if !left.is_empty() {
        bail!("capabilities left after the drop: {left:?}");
    }
    let uid = Uid::effective();
    if uid.is_root() && !p.allow_root {
        bail!(
            "refusing to process packets as root: set privileges.run_as to an unprivileged \
             user (default \"nobody\"), or privileges.allow_root = true"
        );
    }
    let gid = Gid::effective();
    let user = User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    tracing::info!(message = "privileges dropped", user = %user, uid = uid.as_raw(), gid = gid.as_raw());
    Ok(Dropped {
        user,
        uid: uid.as_raw(),
        gid: gid.as_raw(),
    })
}
