//! Network namespaces for tests of addressing (IPv6 disabled, one loopback
//! family only, interfaces of their own), shared by the `serve_*` and
//! `probe_*` tests.
//!
//! Made with `unshare -n`, not `ip netns add`, on purpose: `/sys` is not
//! remounted, as a user's `unshare -n` shell or a unit's
//! `PrivateNetwork=` leave it; and the namespace goes with its process,
//! with nothing to delete.
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Stdio};

/// `ricochet ARGS...` in a network namespace of its own: `unshare -n`
/// brings `lo` up, runs the shell commands `setup` (e.g. `ip link add`),
/// then execs `ricochet`, which stays the child (the same PID: signals and
/// [`enter`] reach it).
///
/// These tests need root (as CI runs them) and `unshare`, `nsenter` and
/// `ip`: where the machine cannot make the namespace, this panics saying
/// what is missing. It never skips: a test that passes without running
/// proves nothing.
pub fn ricochet_in_new_netns(setup: &str, args: &[&str]) -> Command {
    let script = format!("ip link set lo up && {setup}");
    let trial = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output();
    match trial {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test needs a network namespace of its own, as CI makes them (root, and `ip` \
             for what the test adds): `unshare -n sh -c {script:?}` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "this test needs `unshare` (util-linux) to make a network namespace, as CI does: {e}"
        ),
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "sh", "-c", &format!("{script} && exec \"$0\" \"$@\"")])
        .arg(env!("CARGO_BIN_EXE_ricochet"))
        .args(args);
    cmd
}

/// `ricochet ARGS...` in the network namespace of process `pid` (`nsenter
/// -n`; `/sys` is not remounted either).
pub fn enter(pid: u32, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid.to_string(), "-n", env!("CARGO_BIN_EXE_ricochet")])
        .args(args);
    cmd
}
