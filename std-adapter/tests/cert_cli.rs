//! `ricochet cert`: the self-signed test certificate the TLS errors and the
//! READMEs point to. It must be one `serve` takes and the probe verifies,
//! carry exactly the names and days asked for, and never overwrite a file
//! without `--force`.

mod serve_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serve_support::{Proc, output_within};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

const LIMIT: Duration = Duration::from_secs(60);

fn ricochet(args: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args(args),
        LIMIT,
    )
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// The certificate's subjectAltName entries, as text, its CA flag and its
/// validity in Unix seconds.
fn inspect(cert: &Path) -> (Vec<String>, bool, i64, i64) {
    let pem_bytes = std::fs::read(cert).expect("read cert.pem");
    let (_, pem) = parse_x509_pem(&pem_bytes).expect("a PEM block");
    let x509 = pem.parse_x509().expect("an X.509 certificate");
    let names = x509
        .subject_alternative_name()
        .expect("well-formed extensions")
        .expect("a subjectAltName")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => format!(
                    "IP:{}",
                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap())
                ),
                16 => format!(
                    "IP:{}",
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap())
                ),
                _ => format!("IP:{ip:?}"),
            },
            other => format!("{other:?}"),
        })
        .collect();
    let ca = x509
        .basic_constraints()
        .expect("well-formed extensions")
        .is_some_and(|b| b.value.ca);
    let v = x509.validity();
    (names, ca, v.not_before.timestamp(), v.not_after.timestamp())
}

/// The certificate's subject and issuer common names.
fn subject_and_issuer(cert: &Path) -> (String, String) {
    let pem_bytes = std::fs::read(cert).expect("read cert.pem");
    let (_, pem) = parse_x509_pem(&pem_bytes).expect("a PEM block");
    let x509 = pem.parse_x509().expect("an X.509 certificate");
    let cn = |name: &X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (cn(x509.subject()), cn(x509.issuer()))
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs(),
    )
    .expect("seconds fit")
}

#[test]
fn cert_by_default_is_one_serve_takes_and_the_probe_verifies_by_each_local_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("new/sub"); // made if missing
    let o = ricochet(&["cert", "--out", path(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
    assert_eq!(mode(&key), 0o600, "the private key is the owner's alone");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains(&format!("--tls-cert {}", cert.display()))
            && said.contains(&format!("--tls-ca {}", cert.display())),
        "it prints the lines that use the pair: {said}"
    );
    let (names, ca, _, _) = inspect(&cert);
    assert_eq!(names, ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]);
    assert!(!ca, "a CA certificate is refused by rustls as a server's");

    // The backend is not what this test is about (`cert_cli` runs once):
    // whatever `RICOCHET_IO` the suite sets, `auto` serves.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--tcp", "127.0.0.1:0", "--tcp", "[::1]:0"])
        .args(["--tls-cert", path(&cert), "--tls-key", path(&key)])
        .env_remove("RICOCHET_IO");
    let mut srv = Proc::spawn(cmd);
    let listening = srv.listening(2);
    let port = |v6: bool| {
        let (_, addr) = listening
            .iter()
            .find(|(kind, a)| kind == "tls" && a.starts_with('[') == v6)
            .unwrap_or_else(|| panic!("a TLS listener (IPv6: {v6}): {listening:?}"));
        addr.rsplit(':').next().expect("port").to_owned()
    };
    for target in [
        format!("tls://localhost:{}", port(false)),
        format!("tls://127.0.0.1:{}", port(false)),
        format!("tls://[::1]:{}", port(true)),
    ] {
        let o = ricochet(&["probe", &target, "--tls-ca", path(&cert), "-n", "3"]);
        assert_eq!(o.status.code(), Some(0), "{target}: {}", text(&o));
    }
    srv.signal("TERM");
    assert_eq!(srv.wait_exit(LIMIT).code(), Some(0));
}

/// A certificate for a name that need not resolve here (`echo.test`): the
/// printed serve and probe lines still work on this host as printed (the
/// probe connects to 127.0.0.1 and checks the name), the port aside.
#[test]
fn cert_for_another_name_prints_serve_and_probe_lines_that_work_here() {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = ricochet(&["cert", "--out", path(dir.path()), "--name", "echo.test"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = |tag: &str| -> Vec<String> {
        let l = said
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag:?} line: {said}"));
        let words: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words[0], "ricochet", "{l}");
        words[1..].to_vec()
    };
    let mut serve = line("serve: ");
    let mut probe = line("probe: ");
    // Port 0 for the server, then its port for the probe.
    for w in &mut serve {
        if let Some(host) = w.strip_suffix(":7443") {
            *w = format!("{host}:0");
        }
    }
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(&serve).env_remove("RICOCHET_IO");
    let mut srv = Proc::spawn(cmd);
    let listening = srv.listening(1);
    let port = listening[0].1.rsplit(':').next().expect("port").to_owned();
    for w in &mut probe {
        if let Some(target) = w.strip_suffix(":7443") {
            *w = format!("{target}:{port}");
        }
    }
    probe.extend(["-n".to_owned(), "3".to_owned()]);
    let args: Vec<&str> = probe.iter().map(String::as_str).collect();
    let o = ricochet(&args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    srv.signal("TERM");
    assert_eq!(srv.wait_exit(LIMIT).code(), Some(0));
}

#[test]
fn cert_names_and_days_are_the_ones_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let before = now();
    let o = ricochet(&[
        "cert",
        "--out",
        path(dir.path()),
        "--name",
        "echo.test",
        "--name",
        "*.lan.test",
        "--name",
        "10.1.2.3",
        "--name",
        "fd00::7",
        "--days",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (names, ca, not_before, not_after) = inspect(&dir.path().join("cert.pem"));
    assert_eq!(
        names,
        [
            "DNS:echo.test",
            "DNS:*.lan.test",
            "IP:10.1.2.3",
            "IP:fd00::7"
        ]
    );
    assert!(!ca);
    assert!(
        not_before <= before,
        "valid already: {not_before} > {before}"
    );
    let two_days = 2 * 86_400;
    assert!(
        (before + two_days - 60..=now() + two_days + 60).contains(&not_after),
        "valid for 2 days: not after {not_after}, started {before}"
    );
}

#[test]
fn cert_never_replaces_a_file_without_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&key, "someone's key").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = ricochet(&["cert", "--out", path(dir.path())]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{} is already there", key.display())) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "someone's key");
    assert!(!cert.exists(), "nothing written when it refuses");

    let o = ricochet(&["cert", "--out", path(dir.path()), "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(mode(&key), 0o600, "a replaced key keeps no looser mode");
    assert!(cert.exists());
}

#[test]
fn cert_refuses_a_bad_name_or_days_or_directory_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, status, says) in [
        (
            vec!["--name", "two words"],
            2,
            "\"two words\" is neither an IP address nor a DNS name",
        ),
        (vec!["--days", "0"], 2, "0 is not in 1..=3650"),
        (vec!["--days", "5000"], 2, "5000 is not in 1..=3650"),
    ] {
        let mut all = vec!["cert", "--out", path(dir.path())];
        all.extend(&args);
        let o = ricochet(&all);
        assert_eq!(o.status.code(), Some(status), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{args:?}: {}",
            text(&o)
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a usage error writes nothing"
    );
    // A directory under a regular file cannot be made.
    let file = dir.path().join("file");
    std::fs::write(&file, "").expect("write");
    let o = ricochet(&["cert", "--out", path(&file.join("sub"))]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot make the directory"),
        "{}",
        text(&o)
    );
}

/// Each certificate's subject is its own, `ricochet test certificate`
/// and 16 hex digits of its key, and never a server name: a subject the
/// same as a trusted root's (Debian's snakeoil certificate is
/// `CN=localhost`) makes a verifier check the signature against that
/// root's key, and two of these with one subject would collide the same
/// way.
#[test]
fn cert_subject_is_unique_to_its_key_and_not_a_server_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut subjects = Vec::new();
    for sub in ["one", "two"] {
        let out = dir.path().join(sub);
        let o = ricochet(&["cert", "--out", path(&out)]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let (subject, issuer) = subject_and_issuer(&out.join("cert.pem"));
        assert_eq!(issuer, subject, "self-signed");
        let hex = subject
            .strip_prefix("ricochet test certificate ")
            .unwrap_or_else(|| panic!("subject {subject:?}"));
        assert!(
            hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "subject {subject:?}"
        );
        subjects.push(subject);
    }
    assert_ne!(subjects[0], subjects[1], "two keys, two subjects");
}

/// `--force` removes what is in the way before writing; what it cannot
/// remove (here a directory named key.pem) is named with the reason, not
/// reported as a file that already exists.
#[test]
fn cert_force_over_a_directory_in_the_way_says_it_cannot_replace_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key.pem");
    std::fs::create_dir(&key).expect("mkdir");
    let o = ricochet(&["cert", "--out", path(dir.path()), "--force"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot replace {}", key.display())) && err.contains("directory"),
        "{err}"
    );
    assert!(key.is_dir(), "the directory is left alone");
    assert!(!dir.path().join("cert.pem").exists(), "no half pair");
}
