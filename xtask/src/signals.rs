//! Ctrl-C, `kill` and a closed terminal: SIGINT, SIGTERM and SIGHUP stop
//! every process group xtask started (QEMU under `setsid`, `cargo run` of a
//! board, `ricochet serve` in `loss`'s namespace) and delete the network
//! namespaces it created before xtask exits with 128 + the signal's number (130, 143,
//! 129). Those groups are outside the terminal's foreground group, so
//! nothing else would stop them: a QEMU left running keeps its forwarded
//! ports bound, and the next run fails with `Could not set up host
//! forwarding rule`.
//!
//! `signal-hook` takes the signals; a thread of its own does the work.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The process groups (by id) started and not yet stopped.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// The network namespaces (by name, `cargo xtask loss`) created and not
/// yet deleted: a signal's exit runs no `Drop`, and a namespace outlives
/// every process, so nothing else would delete them.
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Set by the signal handler itself (before the thread runs), so `main`
/// cannot exit first with a failure the signal caused.
static SIGNALLED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// How long a group gets to stop after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// Records a process group to stop on a signal.
pub(crate) fn register(pgid: u32) {
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    groups.push(pgid as i32);
}

/// Forgets a process group (its owner stops it).
pub(crate) fn unregister(pgid: u32) {
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    groups.retain(|g| *g != pgid as i32);
}

/// Records a network namespace to delete on a signal.
pub(crate) fn register_netns(name: &str) {
    let mut names = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
    names.push(name.to_owned());
}

/// Forgets a network namespace (its owner deletes it).
pub(crate) fn unregister_netns(name: &str) {
    let mut names = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
    names.retain(|n| n != name);
}

/// Deletes every network namespace still registered (`ip netns del`),
/// after the groups that ran in them are stopped.
fn delete_namespaces() {
    let names = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for name in &names {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", name])
            .status();
    }
}

/// The exit status after `signal`: 128 + its number.
pub(crate) fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// Once a signal has come, the thread handling it owns the exit: a
/// command that failed because its children were stopped must not exit
/// first (with 1) or report that failure. Call before exiting `main`.
pub(crate) fn leave_exit_to_handler() {
    if SIGNALLED.get().is_some_and(|f| f.load(Ordering::SeqCst)) {
        loop {
            thread::park();
        }
    }
}

/// Installs the handlers (`signal-hook`) and starts the thread that acts
/// on them. Call once, first thing in `main`.
pub(crate) fn install() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flag = SIGNALLED.get_or_init(Default::default);
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(flag)) {
            eprintln!("xtask: warning: cannot watch signal {signal} ({e})");
        }
    }
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xtask: warning: cannot watch signals ({e}); Ctrl-C may leave QEMU running");
            return;
        }
    };
    thread::spawn(move || {
        let Some(signal) = signals.forever().next() else {
            return;
        };
        let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !groups.is_empty() {
            eprintln!(
                "xtask: signal {signal}: stopping the process group(s) it started {groups:?} (QEMU, servers and their helpers)"
            );
        }
        stop_groups(&groups);
        delete_namespaces();
        std::process::exit(exit_code(signal));
    });
}

/// Stops every group still registered and deletes every namespace still
/// registered (as a signal would), for an exit that is not a signal's: a
/// closed stdout (`out.rs`).
pub(crate) fn stop_registered() {
    let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    stop_groups(&groups);
    delete_namespaces();
}

/// SIGTERM to each group, up to [`GRACE`] for them to go, then SIGKILL.
pub(crate) fn stop_groups(groups: &[i32]) {
    for &g in groups {
        // SAFETY: kill(2) on a group we started.
        unsafe { libc::kill(-g, libc::SIGTERM) };
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && groups.iter().any(|&g| group_running(g)) {
        thread::sleep(Duration::from_millis(50));
    }
    for &g in groups {
        // SAFETY: as above.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
}

/// Whether group `g` has a member that is not a zombie: its leader (our
/// child, which stays a zombie until reaped) or another process.
fn group_running(g: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists.
    if unsafe { libc::kill(-g, 0) } != 0 {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    dir.filter_map(Result::ok).any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let mut fields = rest.split(' ');
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(g) && state != Some("Z")
    })
}

/// Runs `command` to completion in a process group of its own, registered
/// meanwhile, and collects its output. For `timeout ...` children: timeout
/// moves itself out of the terminal's foreground group, so Ctrl-C would
/// not reach them.
pub(crate) fn output_in_group(
    command: &mut std::process::Command,
) -> std::io::Result<std::process::Output> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let child = command
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pgid = child.id();
    register(pgid);
    let out = child.wait_with_output();
    unregister(pgid);
    out
}

/// `ricochet probe ARGS` under `timeout SECS`: `timeout` is `command` (a
/// plain `timeout`, or one run in a network namespace), the whole run in
/// a registered process group of its own ([`output_in_group`]).
pub(crate) fn probe_in_group(
    mut timeout: std::process::Command,
    secs: u64,
    ricochet: &std::path::Path,
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    output_in_group(
        timeout
            .arg(secs.to_string())
            .arg(ricochet)
            .arg("probe")
            .args(args)
            .stdin(std::process::Stdio::null()),
    )
}

/// [`probe_in_group`] of `ricochet probe TARGET ARGS --json`.
pub(crate) fn probe_json_in_group(
    timeout: std::process::Command,
    secs: u64,
    ricochet: &std::path::Path,
    target: &str,
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    let all: Vec<&str> = [target]
        .iter()
        .chain(args)
        .chain(&["--json"])
        .copied()
        .collect();
    probe_in_group(timeout, secs, ricochet, &all)
}

/// `PR_SET_PDEATHSIG`, SIGTERM, for a child spawned from the main thread
/// only: the kernel sends it when the *thread* that forked the child ends,
/// which for the main thread is when xtask ends, even by SIGKILL.
pub(crate) fn term_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid and gettid only read.
    let main_thread = unsafe { libc::getpid() == libc::gettid() };
    if !main_thread {
        return;
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The parent may have gone before prctl: then act now.
            if libc::getppid() != parent {
                libc::raise(libc::SIGTERM);
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn exit_codes_are_128_plus_the_signal() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGHUP), 129);
    }

    #[test]
    fn registry_adds_and_forgets_groups() {
        register(999_991);
        register(999_992);
        unregister(999_991);
        let groups = GROUPS.lock().unwrap().clone();
        assert!(!groups.contains(&999_991) && groups.contains(&999_992));
        unregister(999_992);
        assert!(!GROUPS.lock().unwrap().contains(&999_992));
    }

    #[test]
    fn stop_groups_ends_a_whole_group_that_ignores_sigterm() {
        // A group of two: a shell that ignores TERM and its sleeping child.
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 60 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let g = child.id() as i32;
        thread::sleep(Duration::from_millis(200));
        assert!(group_running(g));
        let t = Instant::now();
        stop_groups(&[g]);
        assert!(t.elapsed() < GRACE + Duration::from_secs(2));
        let _ = child.wait();
        thread::sleep(Duration::from_millis(100));
        assert!(!group_running(g), "group {g} still has members");
    }
}
