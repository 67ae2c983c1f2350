//! `--user` / `--group`: give up root once every socket is bound.
//!
//! Binding port 7 needs root (or `CAP_NET_BIND_SERVICE`); serving it does
//! not. With `--user NAME` the server binds everything as root, hands its
//! Unix socket files to that user (so `--unix-mode` applies to it and the
//! files can be removed at exit, given a writable directory), then switches
//! to the user and group for good (`privdrop`: supplementary groups
//! cleared, then group, then user) and checks the result: no real,
//! effective or saved id left at root, no way back to root. Any failure
//! stops the server before it serves anything: running on as root when
//! asked not to would be worse than not running.
//!
//! Without `--user`, running as root only earns a warning with the ways
//! to avoid it.

use std::fmt;
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};

/// Who to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// User name (or numeric id).
    pub(crate) user: String,
    /// Group name (or numeric id); the user's primary group when `None`.
    pub(crate) group: Option<String>,
}

/// Why the privileges could not be dropped.
#[derive(Debug)]
pub(crate) enum DropError {
    /// No such user.
    UnknownUser(String),
    /// No such group.
    UnknownGroup(String),
    /// Not running as root: there is nothing to drop and no right to switch.
    NotRoot { user: String },
    /// The user or group named is root itself (`--user root`, `--group 0`,
    /// a user whose primary group is root): nothing would be dropped.
    ToRoot(String),
    /// The user or group database could not be read.
    Lookup(String, nix::Error),
    /// A socket file could not be handed to the user.
    Chown(String, std::io::Error),
    /// The switch failed.
    Switch(String),
    /// The switch reported success but root privileges remain.
    StillPrivileged(String),
}

impl fmt::Display for DropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropError::UnknownUser(u) => write!(
                f,
                "--user {u}: no such user (see `getent passwd`); refusing to serve as root: \
                 create the user (e.g. `useradd --system --no-create-home ricochet`) or name an \
                 existing unprivileged one such as nobody"
            ),
            DropError::UnknownGroup(g) => write!(
                f,
                "--group {g}: no such group (see `getent group`); refusing to serve as root"
            ),
            DropError::NotRoot { user } => write!(
                f,
                "--user {user}: only root can switch users (this process runs as uid {}): start \
                 as root to bind and drop to {user}, or leave --user out",
                Uid::effective()
            ),
            DropError::ToRoot(what) => write!(
                f,
                "{what} is root, so nothing would be dropped; refusing to serve as root: name an \
                 unprivileged user and group (e.g. --user nobody), or leave --user out"
            ),
            DropError::Lookup(what, e) => write!(f, "cannot look up {what}: {e}"),
            DropError::Chown(path, e) => write!(
                f,
                "cannot hand the socket file {path} to the --user: {e}; refusing to serve as root"
            ),
            DropError::Switch(e) => {
                write!(f, "cannot drop privileges: {e}; refusing to serve as root")
            }
            DropError::StillPrivileged(what) => write!(
                f,
                "privileges were not fully dropped ({what}); refusing to serve"
            ),
        }
    }
}

impl std::error::Error for DropError {}

/// The ids of `target`, looked up (numeric ids are accepted too).
fn resolve(target: &Target) -> Result<(Uid, Gid), DropError> {
    let user = match User::from_name(&target.user) {
        Ok(Some(u)) => u,
        Ok(None) => match target.user.parse::<u32>() {
            Ok(id) => User::from_uid(Uid::from_raw(id))
                .map_err(|e| DropError::Lookup(format!("user {id}"), e))?
                .ok_or_else(|| DropError::UnknownUser(target.user.clone()))?,
            Err(_) => return Err(DropError::UnknownUser(target.user.clone())),
        },
        Err(e) => return Err(DropError::Lookup(format!("user {}", target.user), e)),
    };
    let gid = match &target.group {
        None => user.gid,
        Some(name) => match Group::from_name(name) {
            Ok(Some(g)) => g.gid,
            Ok(None) => match name.parse::<u32>() {
                Ok(id) => {
                    Group::from_gid(Gid::from_raw(id))
                        .map_err(|e| DropError::Lookup(format!("group {id}"), e))?
                        .ok_or_else(|| DropError::UnknownGroup(name.clone()))?
                        .gid
                }
                Err(_) => return Err(DropError::UnknownGroup(name.clone())),
            },
            Err(e) => return Err(DropError::Lookup(format!("group {name}"), e)),
        },
    };
    Ok((user.uid, gid))
}

/// What [`drop_to`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Root became this user and group for good.
    Switched(Uid, Gid),
    /// The process already ran as exactly this user and group.
    Already(Uid, Gid),
}

/// Hands `unix_files` to `target`, then becomes `target` for good and checks it.
///
/// Call after every socket is bound and before any client is served.
pub(crate) fn drop_to(target: &Target, unix_files: &[&Path]) -> Result<Dropped, DropError> {
    let (uid, gid) = resolve(target)?;
    if uid.is_root() {
        return Err(DropError::ToRoot(format!("--user {}", target.user)));
    }
    if gid.as_raw() == 0 {
        return Err(DropError::ToRoot(match &target.group {
            Some(g) => format!("--group {g}"),
            None => format!("the primary group of --user {} (add --group)", target.user),
        }));
    }
    if !Uid::effective().is_root() {
        // Already exactly that user and group (a unit with User= that also
        // passes --user): there is nothing to drop.
        if verify(uid, gid).is_ok() {
            return Ok(Dropped::Already(uid, gid));
        }
        return Err(DropError::NotRoot {
            user: target.user.clone(),
        });
    }
    for path in unix_files {
        std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
            .map_err(|e| DropError::Chown(path.display().to_string(), e))?;
    }
    privdrop::PrivDrop::default()
        .user(uid.as_raw().to_string())
        .group(gid.as_raw().to_string())
        .fallback_to_ids_if_names_are_numeric()
        .apply()
        .map_err(|e| DropError::Switch(e.to_string()))?;
    verify(uid, gid)?;
    Ok(Dropped::Switched(uid, gid))
}

/// Checks that no id is root any more, and that root cannot be regained.
fn verify(uid: Uid, gid: Gid) -> Result<(), DropError> {
    let still = |what: String| Err(DropError::StillPrivileged(what));
    let [real, effective, saved] = ids::uids()?;
    if [real, effective, saved] != [uid; 3] {
        return still(format!(
            "uids real {real} effective {effective} saved {saved}, expected {uid}"
        ));
    }
    let [real, effective, saved] = ids::gids()?;
    if [real, effective, saved] != [gid; 3] {
        return still(format!(
            "gids real {real} effective {effective} saved {saved}, expected {gid}"
        ));
    }
    if let Some(groups) = ids::groups()?
        && groups.iter().any(|g| *g != gid)
    {
        return still(format!("supplementary groups {groups:?} kept"));
    }
    if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return still("setuid(0) still succeeds".to_owned());
    }
    Ok(())
}

/// Reading the process's ids, where the system says all of them.
mod ids {
    use nix::unistd::{Gid, Uid};

    use super::DropError;

    #[cfg(not(target_vendor = "apple"))]
    fn err(e: nix::Error) -> DropError {
        DropError::Switch(e.to_string())
    }

    /// Real, effective and saved user ids.
    #[cfg(not(target_vendor = "apple"))]
    pub(super) fn uids() -> Result<[Uid; 3], DropError> {
        let ids = nix::unistd::getresuid().map_err(err)?;
        Ok([ids.real, ids.effective, ids.saved])
    }

    /// Real, effective and saved group ids.
    #[cfg(not(target_vendor = "apple"))]
    pub(super) fn gids() -> Result<[Gid; 3], DropError> {
        let ids = nix::unistd::getresgid().map_err(err)?;
        Ok([ids.real, ids.effective, ids.saved])
    }

    /// The supplementary groups.
    #[cfg(not(target_vendor = "apple"))]
    pub(super) fn groups() -> Result<Option<Vec<Gid>>, DropError> {
        nix::unistd::getgroups().map(Some).map_err(err)
    }

    /// macOS has no getresuid: the saved id is checked through setuid(0) failing.
    #[cfg(target_vendor = "apple")]
    pub(super) fn uids() -> Result<[Uid; 3], DropError> {
        let e = Uid::effective();
        Ok([Uid::current(), e, e])
    }

    /// macOS has no getresgid.
    #[cfg(target_vendor = "apple")]
    pub(super) fn gids() -> Result<[Gid; 3], DropError> {
        let e = Gid::effective();
        Ok([Gid::current(), e, e])
    }

    /// macOS's getgroups does not fit this check (group membership is resolved by opendirectoryd).
    #[cfg(target_vendor = "apple")]
    pub(super) fn groups() -> Result<Option<Vec<Gid>>, DropError> {
        Ok(None)
    }
}

/// How the server got its sockets: what the advice to a root server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Started {
    /// It bound them itself.
    Binding,
    /// A service manager passed every one (socket activation).
    Activated,
    /// `--inetd`: one connection (or UDP socket) from inetd or systemd.
    Inetd,
}

/// The warning for a server left running as root, or `None` if it is not root.
pub(crate) fn root_warning(started: Started) -> Option<&'static str> {
    Uid::effective().is_root().then_some(root_advice(started))
}

/// What [`root_warning`] says, by how the server got its sockets.
fn root_advice(started: Started) -> &'static str {
    match started {
        Started::Binding => {
            "running as root: once bound, the server needs no privileges. Add --user NAME (e.g. \
             --user nobody) to drop root after binding, or do not start it as root at all: let \
             systemd bind port 7 (socket activation, contrib/systemd/ricochet.socket), or grant \
             only the right to bind low ports (`setcap cap_net_bind_service=+ep $(command -v \
             ricochet)`, or AmbientCapabilities=CAP_NET_BIND_SERVICE in a unit)"
        }
        Started::Activated => {
            "running as root: the service manager bound the sockets, so the server needs no \
             privileges at all. Run the service as another user (DynamicUser=yes or User= in \
             the unit, as contrib/systemd/ricochet.service does), or add --user NAME (e.g. \
             --user nobody) to drop root now"
        }
        Started::Inetd => {
            "running as root: --inetd serves the socket it was given and needs no privileges. \
             Name another user where the service is defined (the user field of its inetd.conf \
             line, e.g. nobody; xinetd's `user =`; User= in a systemd unit), or add --user NAME"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_advice_fits_how_the_server_got_its_sockets() {
        let binding = root_advice(Started::Binding);
        assert!(binding.contains("socket activation") && binding.contains("setcap"));
        let activated = root_advice(Started::Activated);
        assert!(activated.contains("DynamicUser=yes") && activated.contains("--user"));
        assert!(!activated.contains("socket activation") && !activated.contains("setcap"));
        let inetd = root_advice(Started::Inetd);
        assert!(inetd.contains("inetd.conf") && inetd.contains("--user"));
        assert!(!inetd.contains("socket activation") && !inetd.contains("setcap"));
    }

    #[test]
    fn unknown_user_and_group_are_named_in_the_error() {
        let e = resolve(&Target {
            user: "no-such-user-ricochet".into(),
            group: None,
        })
        .unwrap_err();
        assert!(matches!(e, DropError::UnknownUser(_)), "{e:?}");
        assert!(e.to_string().contains("no-such-user-ricochet"), "{e}");
        let e = resolve(&Target {
            user: "root".into(),
            group: Some("no-such-group-ricochet".into()),
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("--group no-such-group-ricochet"),
            "{e}"
        );
    }

    #[test]
    fn names_and_numeric_ids_resolve_to_the_same_ids() {
        let by_name = resolve(&Target {
            user: "root".into(),
            group: None,
        })
        .unwrap();
        assert_eq!(by_name, (Uid::from_raw(0), Gid::from_raw(0)));
        let by_id = resolve(&Target {
            user: "0".into(),
            group: Some("0".into()),
        })
        .unwrap();
        assert_eq!(by_id, by_name);
    }

    /// Runs `body` in a forked child, so that the ids it changes are the
    /// child's alone (the child has one thread: a set*id call there is not
    /// broadcast to other threads), and returns what it said. `None`, with
    /// a note, when this is not root (only root can set the ids up).
    #[cfg(target_os = "linux")]
    fn in_child(body: impl FnOnce() -> String) -> Option<String> {
        use std::io::{Read, Write};
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root to set up the ids");
            return None;
        }
        let (mut reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
        // A child stuck on a lock another thread held at the fork fails the
        // test instead of hanging it.
        reader
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        // SAFETY: the child only makes system calls, formats strings (glibc
        // keeps malloc usable across fork) and leaves by `_exit`.
        #[allow(unsafe_code)]
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let said = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
                .unwrap_or_else(|_| "the child panicked".to_owned());
            let _ = writer.write_all(said.as_bytes());
            // SAFETY: ends the child without running the parent's exit handlers.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(0)
            };
        }
        drop(writer);
        let mut said = String::new();
        if let Err(e) = reader.read_to_string(&mut said) {
            // SAFETY: kills the child forked above, by its pid.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL)
            };
            panic!("no answer from the child: {e}");
        }
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        #[allow(unsafe_code)]
        let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(reaped, pid);
        Some(said)
    }

    /// The unprivileged ids the tests switch to (nobody, nogroup).
    #[cfg(target_os = "linux")]
    const NOBODY: (u32, u32) = (65534, 65534);

    /// In the child: supplementary groups `groups`, then the given
    /// real/effective/saved gids and uids, then what [`verify`] says
    /// (`None` when not root).
    #[cfg(target_os = "linux")]
    fn verify_after(groups: &[u32], gids: [u32; 3], uids: [u32; 3]) -> Option<String> {
        use nix::unistd::{setgroups, setresgid, setresuid};
        let groups: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
        let [gr, ge, gs] = gids.map(Gid::from_raw);
        let [ur, ue, us] = uids.map(Uid::from_raw);
        in_child(move || {
            if let Err(e) = setgroups(&groups)
                .and_then(|()| setresgid(gr, ge, gs))
                .and_then(|()| setresuid(ur, ue, us))
            {
                return format!("cannot set up the ids: {e}");
            }
            match verify(Uid::from_raw(NOBODY.0), Gid::from_raw(NOBODY.1)) {
                Ok(()) => "verified".to_owned(),
                Err(e) => e.to_string(),
            }
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn every_id_dropped_without_groups_is_verified() {
        let (u, g) = NOBODY;
        let Some(said) = verify_after(&[], [g; 3], [u; 3]) else {
            return;
        };
        assert_eq!(said, "verified");
        assert_eq!(
            verify_after(&[g], [g; 3], [u; 3]).as_deref(),
            Some("verified")
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn saved_root_uid_is_still_privileged() {
        let (u, g) = NOBODY;
        let Some(said) = verify_after(&[], [g; 3], [u, u, 0]) else {
            return;
        };
        assert!(
            said.starts_with(
                "privileges were not fully dropped (uids real 65534 effective 65534 saved 0"
            ),
            "{said}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn saved_root_gid_is_still_privileged() {
        let (u, g) = NOBODY;
        let Some(said) = verify_after(&[], [g, g, 0], [u; 3]) else {
            return;
        };
        assert!(
            said.starts_with(
                "privileges were not fully dropped (gids real 65534 effective 65534 saved 0"
            ),
            "{said}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn kept_supplementary_group_is_still_privileged() {
        let (u, g) = NOBODY;
        let Some(said) = verify_after(&[0], [g; 3], [u; 3]) else {
            return;
        };
        assert!(
            said.starts_with(
                "privileges were not fully dropped (supplementary groups [Gid(0)] kept)"
            ),
            "{said}"
        );
    }

    /// Every id is the user's, but the capability to switch users was
    /// kept (`PR_SET_KEEPCAPS`, then `CAP_SETUID` raised again): root is
    /// one setuid(0) away.
    #[cfg(target_os = "linux")]
    #[test]
    fn kept_setuid_capability_is_still_privileged() {
        use nix::unistd::{setgroups, setresgid, setresuid};
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const CAP_SETUID: u32 = 1 << 7;
        let (u, g) = (Uid::from_raw(NOBODY.0), Gid::from_raw(NOBODY.1));
        let Some(said) = in_child(move || {
            // SAFETY: plain prctl and capset calls with valid arguments.
            #[allow(unsafe_code)]
            let raise = || unsafe {
                if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                setgroups(&[])
                    .and_then(|()| setresgid(g, g, g))
                    .and_then(|()| setresuid(u, u, u))?;
                let header = CapHeader {
                    version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
                    pid: 0,
                };
                let setuid = CapData {
                    effective: CAP_SETUID,
                    permitted: CAP_SETUID,
                    inheritable: 0,
                };
                let none = CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                };
                let data = [setuid, none];
                if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            if let Err(e) = raise() {
                return format!("cannot set up the ids: {e}");
            }
            match verify(u, g) {
                Ok(()) => "verified".to_owned(),
                Err(e) => e.to_string(),
            }
        }) else {
            return;
        };
        assert_eq!(
            said,
            "privileges were not fully dropped (setuid(0) still succeeds); refusing to serve"
        );
    }
}
