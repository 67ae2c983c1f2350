//! The programs' command lines: help, usage errors, sizes, addresses and
//! arguments that are not UTF-8.

use super::*;

#[test]
fn example_usage_error_exits_2() {
    for (name, bin) in ALL {
        let (code, out) = run(bin, &["--bogus"]);
        assert_eq!(code, 2, "{name}: {out}");
    }
    // sticky_packets takes no argument at all.
    let (code, _) = run(env!("CARGO_BIN_EXE_sticky_packets"), &["extra"]);
    assert_eq!(code, 2);
}

#[test]
fn example_help_describes_each_program_and_exits_0() {
    let mut firsts = Vec::new();
    for (name, bin) in ALL {
        let (code, out) = run(bin, &["--help"]);
        assert_eq!(code, 0, "{name}: {out}");
        assert!(out.starts_with(&format!("{name}: ")), "{name}: {out}");
        assert!(out.contains(&format!("Usage: {name}")), "{name}: {out}");
        firsts.push(out.lines().next().unwrap_or_default().to_owned());
    }
    firsts.dedup();
    assert_eq!(firsts.len(), ALL.len(), "each describes itself: {firsts:?}");
}

#[test]
fn example_tcp_client_takes_probe_size_suffixes() {
    let (server, out, addr) = start_server(env!("CARGO_BIN_EXE_tcp_server"), &["127.0.0.1:0"]);
    let (code, client) = run(
        env!("CARGO_BIN_EXE_tcp_client"),
        &[&addr, "--count", "2", "--size", "100K"],
    );
    assert_eq!(code, 0, "{client}");
    assert!(
        client.contains("verified 2 messages, 204800 bytes"),
        "{client}"
    );
    let (code, _) = rest_of(server, out, "tcp_server");
    assert_eq!(code, 0);
}

#[test]
fn example_help_says_what_count_counts_and_which_size_suffixes() {
    let help = |bin| run(bin, &["--help"]).1;
    let tcp_server = help(env!("CARGO_BIN_EXE_tcp_server"));
    assert!(tcp_server.contains("counts connections"), "{tcp_server}");
    let udp_server = help(env!("CARGO_BIN_EXE_udp_server"));
    assert!(
        udp_server.contains("counts echoed datagrams, not clients"),
        "{udp_server}"
    );
    for bin in [
        env!("CARGO_BIN_EXE_tcp_client"),
        env!("CARGO_BIN_EXE_udp_client"),
    ] {
        let h = help(bin);
        assert!(h.contains("100K = 102400 bytes"), "{h}");
        for suffix in ["K, KB, KiB", "M, MB, MiB", "G, GB, GiB"] {
            assert!(h.contains(suffix), "{suffix}: {h}");
        }
    }
}

/// Arguments that are not UTF-8: a message is sent as the bytes given, an
/// address is a usage error (exit 2), and nothing panics (exit 101).
#[test]
fn example_arguments_that_are_not_utf8_are_sent_or_refused_not_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    let (server, out, addr) = start_server(env!("CARGO_BIN_EXE_tcp_server"), &["127.0.0.1:0"]);
    let client = Command::new(env!("CARGO_BIN_EXE_tcp_client"))
        .args([OsStr::new(&addr), OsStr::new("--count"), OsStr::new("1")])
        .arg(latin1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let o = finish(client, "tcp_client");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    if o.status.code() != Some(0) {
        // The server waits for a connection that never came: end it.
        let mut server = server;
        let _ = server.kill();
        let _ = server.wait();
        panic!("tcp_client: {:?}: {stdout}{stderr}", o.status.code());
    }
    assert!(stdout.contains("Received \"caf\u{FFFD}\""), "{stdout}");
    let (code, server) = rest_of(server, out, "tcp_server");
    assert_eq!(code, 0, "{server}");
    // 4 bytes of greeting (é as one Latin-1 byte) and one 64-byte message.
    assert!(server.contains("echoed 68 of 68 bytes"), "{server}");

    for (name, bin) in ALL {
        let o = finish(
            Command::new(bin)
                .arg(latin1)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
            name,
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("\"caf\\xE9\""), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

/// An address that is not one (or resolves to nothing) is a bad argument:
/// every program that takes one says so, with the form to give, and exits
/// 2 before opening anything (tcp_server did; the others exited 1).
#[test]
fn example_programs_refuse_a_bad_address_as_a_usage_error() {
    for bin in [
        env!("CARGO_BIN_EXE_tcp_server"),
        env!("CARGO_BIN_EXE_udp_server"),
        env!("CARGO_BIN_EXE_tcp_client"),
        env!("CARGO_BIN_EXE_udp_client"),
    ] {
        // No port: refused by the parser, no name lookup (no network here).
        for addr in ["127.0.0.1", "[::1]:port"] {
            let (code, out, err) = run_all(bin, &[addr]);
            assert_eq!(code, 2, "{bin} {addr}: {err}");
            assert!(
                err.contains(&format!("bad address {addr:?}")) && err.contains("give HOST:PORT"),
                "{bin} {addr}: {err}"
            );
            assert!(!out.contains("listening on"), "{bin} {addr}: {out}");
        }
    }
}

/// The programs that open no network socket refuse an address instead of
/// ignoring it (a student would think it was used).
#[test]
fn example_programs_without_a_socket_refuse_an_address() {
    for bin in [
        env!("CARGO_BIN_EXE_unix_pair"),
        env!("CARGO_BIN_EXE_in_memory"),
    ] {
        // Any address, the default one spelled out too (it was taken for
        // no address at all, and ignored).
        for addr in ["127.0.0.1:9", ricochet_examples::DEFAULT_ADDR] {
            let (code, _, err) = run_all(bin, &[addr, "--count", "1"]);
            assert_eq!(code, 2, "{bin} {addr}: {err}");
            assert!(
                err.contains("takes no address") && err.contains(addr),
                "{bin} {addr}: {err}"
            );
        }
        let (code, _, err) = run_all(bin, &["--count", "1"]);
        assert_eq!(code, 0, "{bin}: {err}");
    }
}

/// Arguments a program does not take are usage errors (exit 2), not
/// ignored: extra words to a server, --size to a server or to a program
/// without sockets, --once to a client.
#[test]
fn example_arguments_a_program_does_not_take_are_usage_errors() {
    for (bin, args, word) in [
        (
            env!("CARGO_BIN_EXE_tcp_server"),
            &["127.0.0.1:0", "extra", "--count", "0"][..],
            "\"extra\"",
        ),
        (
            env!("CARGO_BIN_EXE_udp_server"),
            &["127.0.0.1:0", "--size", "5"],
            "--size",
        ),
        (
            env!("CARGO_BIN_EXE_in_memory"),
            &["--size", "10", "--count", "1"],
            "--size",
        ),
        (
            env!("CARGO_BIN_EXE_unix_pair"),
            &["--size", "1K", "--count", "1"],
            "--size",
        ),
        (
            env!("CARGO_BIN_EXE_tcp_client"),
            &["127.0.0.1:9", "--once"],
            "--once",
        ),
    ] {
        let (code, out, err) = run_all(bin, args);
        assert_eq!(code, 2, "{bin} {args:?}: {out}{err}");
        assert!(
            err.contains(&format!("{word} is not an argument")),
            "{bin} {args:?}: {err}"
        );
        assert!(
            !out.contains("listening on"),
            "{bin}: nothing started: {out}"
        );
    }
}

/// A --size no datagram or message can have is a usage error before
/// anything is sent (the greeting used up a `--once` server first).
#[test]
fn example_clients_refuse_an_impossible_size_before_sending() {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sink.local_addr().unwrap().to_string();
    for size in ["11", "65528", "1G"] {
        let (code, _, err) = run_all(env!("CARGO_BIN_EXE_udp_client"), &[&addr, "--size", size]);
        assert_eq!(code, 2, "--size {size}: {err}");
        assert!(
            err.contains("a verified datagram is 12 to 65527 bytes"),
            "{err}"
        );
    }
    // Past what IPv4 carries: said before the greeting, not a raw EMSGSIZE.
    let (code, _, err) = run_all(
        env!("CARGO_BIN_EXE_udp_client"),
        &[&addr, "--size", "65520"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("more than a UDP datagram holds over IPv4 (65507 bytes)"),
        "{err}"
    );
    sink.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    assert!(sink.recv_from(&mut buf).is_err(), "nothing was sent");
    let (code, _, err) = run_all(
        env!("CARGO_BIN_EXE_tcp_client"),
        &["127.0.0.1:9", "--size", "0"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--size 0: a message is at least 1 byte"),
        "{err}"
    );
}
