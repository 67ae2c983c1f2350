//! `--user`/`--group`: root is dropped once every socket is bound, checked
//! in /proc; a drop that cannot happen stops the server; root without
//! `--user` is warned. These tests run as root (as CI does): they say so
//! and fail otherwise, never skip.

mod daemon_support;
mod serve_support;
mod tls_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::Command;

use daemon_support::{bin, require};
use serve_support::{IO_TIMEOUT, Proc, connect, output_within, round_trip};
use tls_support::Pki;

fn assert_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|v| v.split_whitespace().next().unwrap().to_owned())
        })
        .unwrap();
    assert_eq!(
        uid, "0",
        "these tests drop root, so they must run as root (CI does)"
    );
}

/// A copy of the binary that any user may run (the checkout itself may sit
/// in a directory only root can enter); kept alive by the returned dir.
///
/// Copied by `cp`, not by this process: a test thread that forks while
/// this process holds the copy open for writing passes that descriptor to
/// its child until the child's exec, and running the copy in that window
/// fails with "Text file busy" (ETXTBSY; seen under load, exit 126).
fn world_executable_bin() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("ricochet");
    let status = Command::new("cp")
        .arg(bin())
        .arg(&copy)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp {} {}: {status}",
        bin(),
        copy.display()
    );
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = copy.to_str().unwrap().to_owned();
    (dir, copy)
}

/// `setpriv` running `ricochet serve ARGS` as nobody (never root).
fn as_nobody(args: &[&str]) -> (tempfile::TempDir, Command) {
    as_uid(65534, args)
}

/// [`as_nobody`] as user and group `uid` (no account needed).
fn as_uid(uid: u32, args: &[&str]) -> (tempfile::TempDir, Command) {
    require("setpriv", "util-linux");
    let (dir, copy) = world_executable_bin();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", &copy])
        .arg("serve")
        .args(args);
    (dir, cmd)
}

/// The `Uid:`, `Gid:` and `Groups:` lines of /proc/PID/status.
fn ids(pid: u32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

#[test]
fn user_nobody_drops_every_id_after_binding_and_still_serves() {
    assert_root();
    // A sticky, world-writable directory (like /tmp): nobody may remove its own socket file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = dir.path().join("dropped.sock");
    let mut p = Proc::serve(&[
        "--tcp",
        "127.0.0.1:0",
        "--unix",
        path.to_str().unwrap(),
        "--user",
        "nobody",
        "--threads",
        "2",
    ]);
    let lines = p.listening(2);
    let (uid, gid, groups) = ids(p.child.id());
    assert_eq!(
        uid, "65534 65534 65534 65534",
        "real, effective, saved, fs uid"
    );
    assert_eq!(gid, "65534 65534 65534 65534");
    assert_eq!(
        groups, "65534",
        "no supplementary group but nobody's own (root's dropped)"
    );
    // Every thread, not just the main one.
    for task in std::fs::read_dir(format!("/proc/{}/task", p.child.id())).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert!(
            status.contains("Uid:\t65534\t65534\t65534\t65534"),
            "{status}"
        );
    }
    let tcp = lines
        .iter()
        .find(|(k, _)| k == "tcp")
        .unwrap()
        .1
        .parse()
        .unwrap();
    round_trip(&mut connect(tcp), b"served by nobody");
    assert_eq!(
        std::fs::metadata(&path).unwrap().uid(),
        65534,
        "socket file handed over"
    );
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut u, b"unix as nobody");
    drop(u);
    let log = p.wait_stderr("dropped privileges", IO_TIMEOUT);
    assert!(log.contains("nobody"), "{log}");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    assert!(!path.exists(), "nobody removed its socket file at exit");
}

#[test]
fn unknown_user_or_group_stops_the_server_before_it_serves() {
    assert_root();
    for args in [
        &["--user", "no-such-user-ricochet"][..],
        &["--user", "nobody", "--group", "no-such-group-ricochet"],
    ] {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--tcp", "127.0.0.1:0"]).args(args);
        let out = output_within(&mut cmd, IO_TIMEOUT);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: nothing may be served as root"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no-such-") && err.contains("refusing to serve as root"),
            "{args:?}: {err}"
        );
    }
}

/// `--user root`, `--user 0` or `--group root` would "drop" to root: refused
/// like any drop that cannot leave root (it served as root, without even
/// the root warning).
#[test]
fn user_or_group_root_is_refused_before_it_serves() {
    assert_root();
    for (args, named) in [
        (&["--user", "root"][..], "--user root"),
        (&["--user", "0"], "--user 0"),
        (&["--user", "nobody", "--group", "root"], "--group root"),
    ] {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--tcp", "127.0.0.1:0"]).args(args);
        let out = output_within(&mut cmd, IO_TIMEOUT);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing may be served");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(named) && err.contains("refusing to serve as root"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn user_without_root_is_refused_with_the_reason() {
    let (_dir, mut cmd) = as_nobody(&["--tcp", "127.0.0.1:0", "--user", "daemon"]);
    let out = output_within(&mut cmd, IO_TIMEOUT);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only root can switch users"), "{err}");
}

/// Already that user and group (a unit with User= that also passes
/// --user): nothing to drop, so nothing to refuse.
#[test]
fn user_it_already_runs_as_is_accepted() {
    let (_dir, cmd) = as_nobody(&["--tcp", "127.0.0.1:0", "--user", "nobody"]);
    let mut p = Proc::spawn(cmd);
    let tcp = p.listening(1)[0].1.parse().unwrap();
    round_trip(&mut connect(tcp), b"already nobody");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    let log = p.drain_stderr();
    assert!(
        log.contains("already running as user=nobody"),
        "the log says there was nothing to drop: {log}"
    );
    assert!(
        !log.contains("dropped privileges"),
        "nothing was dropped: {log}"
    );
}

#[test]
fn root_without_user_is_warned_with_the_ways_out() {
    assert_root();
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0"]);
    let warning = p.wait_stderr("running as root", IO_TIMEOUT);
    for hint in ["--user", "socket activation", "cap_net_bind_service"] {
        assert!(warning.contains(hint), "{hint}: {warning}");
    }
    // Signals are handled once the listening lines are out.
    p.listening(1);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());

    // Not root: no warning.
    let (_dir, cmd) = as_nobody(&["--tcp", "127.0.0.1:0"]);
    let mut p = Proc::spawn(cmd);
    p.listening(1);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    let err = daemon_support::rest_of(&p.stderr);
    assert!(
        err.iter().all(|l| !l.contains("running as root")),
        "{err:?}"
    );
}

/// Port 7, the echo port, as a user: the error names each way to serve it
/// (the README's three), not only "use a port of 1024 or above", and the
/// limit this host has (`net.ipv4.ip_unprivileged_port_start`).
#[test]
fn privileged_port_as_a_user_names_socket_activation_setcap_and_the_host_limit() {
    assert_root();
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if start <= 7 {
        // A container whose sysctl lets anyone bind port 7: nothing refuses it.
        eprintln!(
            "skipped: net.ipv4.ip_unprivileged_port_start is {start} here, so port 7 is not \
             privileged"
        );
        return;
    }
    for flag in ["--tcp", "--udp"] {
        // The bind is refused before any check of who uses the port.
        let (_dir, mut cmd) = as_nobody(&[flag, "127.0.0.1:7"]);
        let out = output_within(&mut cmd, IO_TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        for needle in [
            "permission denied".to_owned(),
            format!("ports below {start}"),
            "net.ipv4.ip_unprivileged_port_start".to_owned(),
            "CAP_NET_BIND_SERVICE".to_owned(),
            "socket activation".to_owned(),
            "setcap cap_net_bind_service=+ep".to_owned(),
        ] {
            assert!(err.contains(&needle), "{flag}: no {needle:?} in: {err}");
        }
    }
}

/// A stale socket file root's server left in a sticky directory (a run
/// with sudo, then one as a user): the user may neither connect to it nor
/// remove it. The error says whose file it is and what to do, not only
/// "cannot check or remove the existing file: Permission denied"; the file
/// stays.
#[test]
fn stale_socket_of_another_user_names_its_owner_and_the_fix_and_is_kept() {
    assert_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = dir.path().join("echo.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_bin, mut cmd) = as_nobody(&["--unix", path.to_str().unwrap()]);
    let out = output_within(&mut cmd, IO_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in ["uid 0", "root", "rm ", "choose another path"] {
        assert!(err.contains(needle), "no {needle:?} in: {err}");
    }
    assert!(!err.contains("cannot check or remove"), "{err}");
    assert!(path.exists(), "the other user's file is left alone");
}

/// A user at its process and thread limit (`RLIMIT_NPROC`, a unit's
/// `TasksMax=`): `ricochet serve` panicked with a backtrace (exit 101) in
/// the log writer's thread spawn. It now logs without that thread, and the
/// thread it cannot start for a worker is an error naming the limit and
/// the fix (exit 1).
#[test]
fn thread_limit_reached_is_an_error_naming_the_limit_not_a_panic() {
    assert_root();
    // The user may run no further thread than the process itself: the
    // limit counts all the user's tasks, so the user is one of this test's
    // own (nobody runs other tests' servers at the same time).
    let uid = 3_000_000 + std::process::id();
    let (_dir, nobody) = as_uid(uid, &["--tcp", "127.0.0.1:0", "--threads", "2"]);
    require("prlimit", "util-linux");
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nproc=1")
        .arg("--")
        .arg(nobody.get_program())
        .args(nobody.get_args());
    let out = output_within(&mut cmd, IO_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in ["cannot start", "ulimit -u", "TasksMax="] {
        assert!(err.contains(needle), "no {needle:?} in: {err}");
    }
}

/// Socket-activated, the server bound nothing: the advice to a root server
/// is to run the unit as another user, not to let systemd bind the port.
#[test]
fn root_when_socket_activated_is_told_to_run_the_unit_as_another_user() {
    assert_root();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut p =
        daemon_support::serve_activated(&[], vec![std::os::fd::OwnedFd::from(l)], None, &[]);
    let warning = p.wait_stderr("running as root", IO_TIMEOUT);
    assert!(warning.contains("DynamicUser=yes"), "{warning}");
    assert!(!warning.contains("let systemd bind"), "{warning}");
    p.listening(1);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// A certificate anyone may read and a key only root may (mode 0600, as
/// `ricochet cert` writes it), in a directory anyone may enter.
fn root_only_key() -> Pki {
    let pki = Pki::new();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(pki.dir.path(), 0o755);
    mode(&pki.cert, 0o644);
    mode(&pki.key, 0o600);
    pki
}

/// A key the server's user may not read: the error names that user and the
/// fix (readable by it, or systemd's LoadCredential= for a DynamicUser),
/// not "check the path" (the path is right).
#[test]
fn unreadable_key_names_the_user_the_server_runs_as_and_the_fix() {
    assert_root();
    let pki = root_only_key();
    let key = pki.key.to_str().unwrap();
    let (_dir, mut cmd) = as_nobody(&[
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        key,
    ]);
    cmd.env_remove("RICOCHET_IO");
    let out = output_within(&mut cmd, IO_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(key)
            && err.contains("runs as nobody (uid 65534)")
            && err.contains("the file is there, but that user may not read it")
            && err.contains("make it readable by nobody")
            && err.contains(&format!("LoadCredential=tls-key:{key}"))
            && err.contains("--tls-key ${CREDENTIALS_DIRECTORY}/tls-key"),
        "{err}"
    );
    assert!(!err.contains("check the path"), "{err}");

    // A readable key in a directory nobody may enter: that is what is said.
    let private = pki.dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let hidden = private.join("key.pem");
    std::fs::copy(&pki.key, &hidden).unwrap();
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_dir, mut cmd) = as_nobody(&[
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        hidden.to_str().unwrap(),
    ]);
    cmd.env_remove("RICOCHET_IO");
    let out = output_within(&mut cmd, IO_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("runs as nobody (uid 65534)")
            && err.contains("may not enter a directory on the path to the file"),
        "{err}"
    );
}

/// The certificate and key are read before `--user` drops root: a key only
/// root may read serves as nobody.
#[test]
fn tls_files_are_read_before_user_drops_root() {
    assert_root();
    let pki = root_only_key();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--tls", "127.0.0.1:0", "--user", "nobody"])
        .args(["--tls-cert", pki.cert.to_str().unwrap()])
        .args(["--tls-key", pki.key.to_str().unwrap()])
        .env_remove("RICOCHET_IO");
    let mut p = Proc::spawn(cmd);
    let (kind, addr) = p.listening(1).remove(0);
    assert_eq!(kind, "tls");
    let mut c = tls_support::Client::connect(
        addr.parse().unwrap(),
        tls_support::client_config(&pki.ca, None),
    );
    c.send(b"as nobody");
    assert_eq!(c.recv(9), b"as nobody");
    let (uid, _, _) = ids(p.child.id());
    assert_eq!(uid, "65534 65534 65534 65534");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}
