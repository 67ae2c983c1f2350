//! Usage errors, and the addresses, ports and paths a server is given:
//! what is wrong with each, and the fix.

use super::*;

#[test]
fn cli_usage_errors_exit_2_and_name_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["--threads", "0"], "--threads"),
        (&["--backlog", "0"], "--backlog"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--udp-max-datagram", "70000"], "--udp-max-datagram"),
        (&["--idle-timeout", "soon"], "--idle-timeout"),
        (&["--stats-interval", "1ms"], "at least 100ms"),
        (&["--tcp", "[fe80::1]:0"], "%eth0"),
        (
            &["--udp", "127.0.0.1:0", "--mode", "lines"],
            "--mode lines applies to stream listeners",
        ),
    ];
    for (args, needle) in cases {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet"))
                .arg("serve")
                .args(*args),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// The usual slips in an address get what is wrong and the form to give,
/// not only "expected IP:PORT": an IPv6 address without brackets, no port,
/// nothing before the port, a port out of range, a host name without a
/// port (`ricochet probe` says the same of its targets).
#[test]
fn cli_address_slips_name_what_is_wrong_and_the_form_to_give() {
    for (addr, needle) in [
        ("::1:7007", "goes in brackets before its port: [::1]:7007"),
        (
            "::1",
            "no port, and an IPv6 address goes in brackets before it: [::1]:PORT",
        ),
        ("[::1]", "no port: give one after a colon, e.g. [::1]:7007"),
        (
            "127.0.0.1",
            "no port: give one after a colon, e.g. 127.0.0.1:7007",
        ),
        (":7007", "nothing before the port"),
        ("[::1]:70000", "port 70000 is out of range"),
        ("localhost", "\"localhost\" is not an IP address"),
        // `u16::from_str` takes a sign; an address does not (port 0 here:
        // were it taken, nothing fixed would be bound).
        ("+0", "invalid address \"+0\": port +0 has a sign"),
        (
            "127.0.0.1:+7",
            "port +7 has a sign: a port is decimal digits alone",
        ),
        ("[fe80::1%lo]:+7", "invalid address \"[fe80::1%lo]:+7\""),
    ] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet")).args(["serve", "--tcp", addr]),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{addr}: {err}");
        assert!(err.contains(needle), "{addr}: {err}");
    }
}

#[test]
fn cli_link_local_without_interface_is_explained_by_the_library_too() {
    // Through the library (no CLI check): the kernel's EINVAL gets a hint.
    let e = ricochet::serve::Server::bind(ricochet::serve::ServerConfig {
        tcp: vec!["[fe80::1]:0".parse().unwrap()],
        ..ricochet::serve::ServerConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("link-local") && e.contains("[fe80::1%eth0]:0"),
        "{e}"
    );
}

/// An interface name is looked up in the server's own network namespace:
/// in one made with `unshare -n` (or a unit's `PrivateNetwork=`), `/sys`
/// still lists the host's interfaces, and `[fe80::1%NAME]` was refused for
/// an interface that exists there ("no network interface named"), or took
/// the index of the host's interface of that name. The probe, run in the
/// same namespace, takes the same name (it shares the lookup). Both show
/// the address as it was written, by the interface's name: std shows the
/// index (`[fe80::1%2]`), which no one typed.
#[test]
fn cli_link_local_interface_name_is_looked_up_in_the_servers_network_namespace() {
    let setup = "ip link add rv6a type veth peer name rv6b && ip link set rv6a up && \
                 ip link set rv6b up && ip -6 addr add fe80::1/64 dev rv6a nodad";
    let cmd = netns_support::ricochet_in_new_netns(
        setup,
        &[
            "serve",
            "--tcp",
            "[fe80::1%rv6a]:0",
            "--udp",
            "[fe80::1%rv6a]:0",
        ],
    );
    let mut p = Proc::spawn(cmd);
    let lines = p.listening(2);
    for kind in ["tcp", "udp"] {
        let (_, shown) = lines.iter().find(|(k, _)| k == kind).expect(kind);
        let port = shown
            .strip_prefix("[fe80::1%rv6a]:")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("listening {kind} {shown}"));
        assert_ne!(port, 0, "{shown}");
        let target = format!("{kind}://[fe80::1%rv6a]:{port}");
        let out = output_within(
            &mut netns_support::enter(p.id(), &["probe", &target, "-n", "3"]),
            IO_TIMEOUT,
        );
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{target}: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("target") && l.contains(&target)),
            "{report}"
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// A link-local address no interface has is refused naming it as it was
/// written, `[fe80::1%lo]`, not as `[fe80::1%1]`.
#[test]
fn cli_link_local_address_not_on_its_interface_is_named_as_written() {
    for flag in ["--tcp", "--udp"] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet")).args(["serve", flag, "[fe80::1%lo]:0"]),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {err}");
        assert!(
            err.contains(&format!(
                "{} [fe80::1%lo]:0: address not available",
                &flag[2..]
            )),
            "{flag}: {err}"
        );
    }
}

/// `--tcp [::]:PORT` alone is IPv6-only: an IPv4 client is refused, and
/// the log says so at start with the flag that adds IPv4, instead of
/// leaving the user to find out from a refused connection.
#[test]
fn cli_ipv6_wildcard_alone_says_it_takes_ipv6_clients_only() {
    let mut p = Proc::serve(&["--tcp", "[::]:0", "--udp", "[::]:0"]);
    let bound = p.listening(2);
    let line = p.wait_stderr("takes IPv6 clients only", IO_TIMEOUT);
    assert!(
        line.contains("tcp [::]:0") && line.contains("add --tcp 0.0.0.0:0"),
        "{line}"
    );
    let line = p.wait_stderr("takes IPv6 clients only", IO_TIMEOUT);
    assert!(line.contains("add --udp 0.0.0.0:0"), "{line}");
    // What the note says: IPv6 is served, IPv4 refused.
    let tcp = addr_of(&bound, "tcp");
    let mut s = connect(SocketAddr::from((
        std::net::Ipv6Addr::LOCALHOST,
        tcp.port(),
    )));
    round_trip(&mut s, b"over IPv6");
    drop(s);
    let v4 = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, tcp.port()));
    let refused = TcpStream::connect_timeout(&v4, IO_TIMEOUT)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `[::]` where IPv6 is disabled (`net.ipv6.conf.*.disable_ipv6 = 1`, in
/// a network namespace of its own) binds, and serves no one: no interface
/// has an IPv6 address. It started without a word; a warning now names the
/// sysctl and the IPv4 wildcard to listen on instead.
#[test]
fn cli_ipv6_wildcard_where_ipv6_is_disabled_is_warned_of_naming_the_sysctl() {
    let setup = "for c in all default lo; do sysctl -qw net.ipv6.conf.$c.disable_ipv6=1; done";
    let args = ["serve", "--tcp", "[::]:0", "--udp", "[::]:0"];
    let cmd = netns_support::ricochet_in_new_netns(setup, &args);
    let mut p = Proc::spawn(cmd);
    p.listening(2);
    for flag in ["tcp", "udp"] {
        let line = p.wait_stderr("serves no one", IO_TIMEOUT);
        assert!(
            line.contains(&format!("{flag} [::]:0"))
                && line.contains("net.ipv6.conf.all.disable_ipv6 = 1")
                && line.contains(&format!("listen on --{flag} 0.0.0.0:0 instead")),
            "{line}"
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `[::]` where IPv6 is on (`net.ipv6.conf.all.disable_ipv6 = 0`) but no
/// interface has an address (here it is disabled on `lo`, the namespace's
/// only interface): the warning says so and points to `ip -6 addr`, not
/// to the `all` sysctl, which would change nothing.
#[test]
fn cli_ipv6_wildcard_where_no_interface_has_an_address_points_to_ip_addr() {
    let setup = "sysctl -qw net.ipv6.conf.lo.disable_ipv6=1";
    let cmd = netns_support::ricochet_in_new_netns(setup, &["serve", "--tcp", "[::]:0"]);
    let mut p = Proc::spawn(cmd);
    p.listening(1);
    let line = p.wait_stderr("serves no one", IO_TIMEOUT);
    assert!(
        line.contains("tcp [::]:0")
            && line.contains("IPv6 is disabled on each interface")
            && line.contains("see `ip -6 addr`")
            && !line.contains("net.ipv6.conf.all.disable_ipv6 = 1"),
        "{line}"
    );
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `[::ffff:127.0.0.1]:PORT` is an IPv4 address in IPv6 form; an IPv6
/// listener is IPv6-only, so the kernel refuses it with a bare EINVAL:
/// the error names the IPv4 form to give instead, for TCP and UDP alike,
/// as a usage error (exit 2; it was 1, a failed bind, like a busy port).
#[test]
fn cli_v4_mapped_address_names_the_ipv4_form_to_give() {
    for flag in ["--tcp", "--udp"] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
                "serve",
                flag,
                "[::ffff:127.0.0.1]:0",
            ]),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(
            err.contains("v4-mapped")
                && err.contains(&format!("'{flag} <ADDR>'"))
                && err.contains("give the IPv4 address, 127.0.0.1:0")
                && !err.contains("os error"),
            "{flag}: {err}"
        );
        assert!(out.stdout.is_empty(), "{flag}: nothing bound");
    }
}

#[test]
fn cli_unix_path_in_a_directory_the_user_cannot_search_says_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let path = locked.join("x.sock");
    // Root searches any directory: run as nobody then; anyone else: a mode-000 directory.
    let root = is_root();
    use std::os::unix::fs::PermissionsExt;
    let mode = if root { 0o700 } else { 0o000 };
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(mode)).unwrap();
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_ricochet"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_ricochet"))
    };
    let out = output_within(
        cmd.args(["serve", "--unix", path.to_str().unwrap()]),
        IO_TIMEOUT,
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(!err.contains("cannot check or remove"), "{err}");
}

#[test]
fn cli_rejects_a_buffer_size_out_of_range() {
    for bad in ["63", "17MiB"] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
                "serve",
                "--tcp",
                "127.0.0.1:0",
                "--buffer-size",
                bad,
            ]),
            IO_TIMEOUT,
        );
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("64 bytes to 16 MiB"), "{err}");
    }
}

#[test]
fn cli_busy_udp_port_suggests_a_udp_flag() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err, _) = serve_fails(&["--udp", &addr]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("address already in use") && err.contains("--udp 127.0.0.1:0"),
        "{err}"
    );
    assert!(!err.contains("--tcp"), "{err}");
}

#[test]
fn cli_unix_path_in_a_missing_directory_names_the_directory_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nodir");
    let path = missing.join("x.sock");
    let (code, err, _) = serve_fails(&["--unix", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "the directory {} does not exist (create it, or choose another path)",
        missing.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn cli_unix_path_under_a_regular_file_says_it_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("x.sock");
    let (code, err, _) = serve_fails(&["--unix", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "{} is not a directory (choose a path in a directory)",
        file.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn cli_unix_path_another_server_listens_on_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sock");
    let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (code, err, _) = serve_fails(&["--unix", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("another server is listening on this socket")
            && err.contains("stop that server or choose another path"),
        "{err}"
    );
    assert!(path.exists(), "the live socket file is left alone");
}

#[test]
fn cli_tls_certificate_without_a_tls_or_tcp_address_says_to_add_one() {
    let pki = tls_support::Pki::new();
    let (code, err, _) = serve_fails(&[
        "--udp",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no listening address") && err.contains("add --tls ADDR"),
        "{err}"
    );
}
