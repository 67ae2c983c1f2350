//! What people install: the systemd units pass `systemd-analyze verify`
//! and the service's own command line serves under socket activation; man
//! pages and completions come from the command line definition.

mod daemon_support;
mod serve_support;

use std::path::Path;
use std::process::Command;

use daemon_support::{NotifySocket, bin, repo_root, require};
use serve_support::{IO_TIMEOUT, Proc, round_trip};

fn unit(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("contrib/systemd").join(name)).unwrap()
}

/// `systemd-analyze verify --man=no` of `units` (file names) placed in a
/// root that holds the system's own units and our binary at /usr/bin;
/// returns (success, everything it printed).
fn verify(units: &[(&str, String)]) -> (bool, String) {
    require("systemd-analyze", "systemd");
    let root = tempfile::tempdir().unwrap();
    let system = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&system).unwrap();
    for entry in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), system.join(entry.file_name())).unwrap();
        }
    }
    let usr_bin = root.path().join("usr/bin");
    std::fs::create_dir_all(&usr_bin).unwrap();
    std::fs::copy(bin(), usr_bin.join("ricochet")).unwrap();
    let mut args = vec![
        "verify".to_owned(),
        "--man=no".to_owned(),
        format!("--root={}", root.path().display()),
    ];
    for (name, text) in units {
        std::fs::write(system.join(name), text).unwrap();
        args.push(format!("/usr/lib/systemd/system/{name}"));
    }
    let out = Command::new("systemd-analyze")
        .args(&args)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

#[test]
fn systemd_units_pass_systemd_analyze_verify_without_a_word() {
    let units = [
        ("ricochet.socket", unit("ricochet.socket")),
        ("ricochet.service", unit("ricochet.service")),
    ];
    let (ok, printed) = verify(&units);
    assert!(
        ok && printed.trim().is_empty(),
        "systemd-analyze verify:\n{printed}"
    );
    // The check can fail: a misspelt key is reported.
    let typo = unit("ricochet.service").replace("ProtectSystem=", "ProtectSystm=");
    let (_, printed) = verify(&[("ricochet.service", typo)]);
    assert!(printed.contains("ProtectSystm"), "{printed}");
}

#[test]
fn service_unit_is_a_hardened_notify_service_of_a_dynamic_user() {
    let service = unit("ricochet.service");
    for line in [
        "Type=notify",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=",
        "WatchdogSec=30s",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "ricochet.service lacks {line}"
        );
    }
    let socket = unit("ricochet.socket");
    for line in ["ListenStream=7", "ListenDatagram=7", "Accept=no"] {
        assert!(
            socket.lines().any(|l| l == line),
            "ricochet.socket lacks {line}"
        );
    }
}

/// The service's ExecStart, as written, under socket activation with a
/// notify socket: it serves the inherited socket and reports READY=1.
#[test]
fn service_exec_start_serves_activated_sockets_and_notifies() {
    require("systemd-socket-activate", "systemd");
    let service = unit("ricochet.service");
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/bin/ricochet"));
    let args: Vec<&str> = words.collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let notify = NotifySocket::new();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l")
        .arg(&path)
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify.env()))
        .arg("--")
        .arg(bin())
        .args(&args);
    let mut p = Proc::spawn(cmd);
    // It binds, then listens: a connection in between is refused.
    daemon_support::wait_until(IO_TIMEOUT, "the activation socket listening", || {
        daemon_support::unix_listening(&path)
    });
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut s, b"as the unit runs it");
    notify.expect("READY=1", IO_TIMEOUT);
    p.signal("TERM");
    notify.expect("STOPPING=1", IO_TIMEOUT);
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn generate_writes_man_pages_and_completions_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("generate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: &str| {
        std::fs::read_to_string(dir.path().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let serve = read("man/ricochet-serve.1");
    assert!(
        serve.starts_with(".ie") || serve.contains(".TH ricochet-serve"),
        "{serve}"
    );
    for flag in ["inetd", "metrics", "user", "log\\-format"] {
        assert!(
            serve.contains(&format!("\\-\\-{flag}")),
            "ricochet-serve.1 lacks --{flag}"
        );
    }
    assert!(read("man/ricochet.1").contains("ricochet\\-serve(1)"));
    assert!(read("man/ricochet-probe.1").contains("\\-\\-max\\-loss"));
    assert!(read("man/ricochet-cert.1").contains("\\-\\-force"));
    assert!(read("man/ricochet.1").contains("ricochet\\-cert(1)"));
    let bash = read("completions/ricochet.bash");
    assert!(
        bash.contains("--metrics") && bash.contains("probe"),
        "bash completion"
    );
    assert!(read("completions/_ricochet").contains("#compdef ricochet"));
    assert!(read("completions/ricochet.fish").contains("complete -c ricochet"));
    // The hidden command stays out of the user's view.
    assert!(
        !bash.contains("generate"),
        "generate leaks into completions"
    );
    assert!(!Path::new(&dir.path().join("man/ricochet-generate.1")).exists());
}

/// A directory `generate` cannot make (here under a regular file) fails
/// the packaging step with status 1 and the path and reason, instead of
/// leaving a package without man pages behind a success.
#[test]
fn generate_into_a_directory_it_cannot_make_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let target = file.join("out");
    let out = Command::new(bin())
        .arg("generate")
        .arg(&target)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("ricochet generate: {}: ", target.display()))
            && err.contains("Not a directory"),
        "{err}"
    );
}
