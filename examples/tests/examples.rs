//! Runs every example program (built as [[bin]]s) with a watchdog and
//! checks what it prints and its exit status.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// Waits for `child` with a watchdog; kills it (by handle) on expiry.
fn finish(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run(bin: &str, args: &[&str]) -> (i32, String) {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let o = finish(child, bin);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Starts a server example on port 0 and returns it with the address it printed.
fn start_server(bin: &str, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn server");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, out, addr.to_owned())
}

fn rest_of(
    mut child: Child,
    mut out: BufReader<std::process::ChildStdout>,
    what: &str,
) -> (i32, String) {
    let mut text = String::new();
    // The server exits by itself after its count; the watchdog bounds it.
    let reader = std::thread::spawn(move || {
        let _ = out.read_to_string(&mut text);
        text
    });
    child.stdout = None;
    let o = finish(child, what);
    (
        o.status.code().unwrap_or(-1),
        reader.join().unwrap_or_default(),
    )
}

#[test]
fn example_tcp_server_and_client_echo_and_verify() {
    let (server, out, addr) = start_server(
        env!("CARGO_BIN_EXE_tcp_server"),
        &["127.0.0.1:0", "--count", "2"],
    );
    let (code, client) = run(
        env!("CARGO_BIN_EXE_tcp_client"),
        &[&addr, "--count", "200", "--size", "100"],
    );
    assert_eq!(code, 0, "{client}");
    assert!(client.contains("Received \"Hello, world\""), "{client}");
    assert!(
        client.contains("verified 200 messages, 20000 bytes"),
        "{client}"
    );
    assert!(client.contains("server closed after our FIN"), "{client}");
    let (code, client) = run(
        env!("CARGO_BIN_EXE_tcp_client"),
        &[&addr, "--count", "1", "Bye", "now"],
    );
    assert_eq!(code, 0, "{client}");
    assert!(client.contains("Received \"Bye now\""), "{client}");
    let (code, server) = rest_of(server, out, "tcp_server");
    assert_eq!(code, 0, "{server}");
    assert_eq!(
        server.matches("connected by 127.0.0.1:").count(),
        2,
        "{server}"
    );
    assert!(server.contains("echoed 20012 of 20012 bytes"), "{server}");
}

#[test]
fn example_udp_server_and_client_echo_and_verify() {
    let (server, out, addr) = start_server(
        env!("CARGO_BIN_EXE_udp_server"),
        &["127.0.0.1:0", "--count", "51"],
    );
    let (code, client) = run(env!("CARGO_BIN_EXE_udp_client"), &[&addr, "--count", "50"]);
    assert_eq!(code, 0, "{client}");
    assert!(client.contains("Received \"Hello, world\""), "{client}");
    assert!(
        client.contains("sent 50, verified 50, lost 0, corrupt 0"),
        "{client}"
    );
    let (code, server) = rest_of(server, out, "udp_server");
    assert_eq!(code, 0, "{server}");
    assert!(server.contains("echoed 51 datagrams"), "{server}");
}

#[test]
fn example_unix_pair_holds_incomplete_lines() {
    let (code, out) = run(env!("CARGO_BIN_EXE_unix_pair"), &["--count", "50"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sent \"hel\": no echo yet"), "{out}");
    assert!(out.contains("received \"hello\\n\""), "{out}");
    assert!(out.contains("verified 50 lines"), "{out}");
    assert!(
        out.contains("server echoed 51 lines and closed after our FIN"),
        "{out}"
    );
}

#[test]
fn example_sticky_packets_raw_merges_frames_restore() {
    let (code, out) = run(env!("CARGO_BIN_EXE_sticky_packets"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 read of 10 bytes: \"helloworld\""), "{out}");
    assert!(
        out.contains("1 read of 14 bytes -> 2 messages: \"hello\", \"world\""),
        "{out}"
    );
}

#[test]
fn example_in_memory_runs_every_mode_without_sockets() {
    let (code, out) = run(env!("CARGO_BIN_EXE_in_memory"), &["--count", "300"]);
    assert_eq!(code, 0, "{out}");
    for mode in ["raw", "lines", "frames"] {
        assert!(
            out.contains(&format!("{mode}: 300 messages")),
            "{mode}: {out}"
        );
    }
    assert_eq!(
        out.matches("then closed after the client's FIN").count(),
        3,
        "{out}"
    );
}

/// Every program, by name and path.
const ALL: [(&str, &str); 7] = [
    ("tcp_server", env!("CARGO_BIN_EXE_tcp_server")),
    ("tcp_client", env!("CARGO_BIN_EXE_tcp_client")),
    ("udp_server", env!("CARGO_BIN_EXE_udp_server")),
    ("udp_client", env!("CARGO_BIN_EXE_udp_client")),
    ("unix_pair", env!("CARGO_BIN_EXE_unix_pair")),
    ("sticky_packets", env!("CARGO_BIN_EXE_sticky_packets")),
    ("in_memory", env!("CARGO_BIN_EXE_in_memory")),
];

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

/// Runs `bin ARGS` to completion (watchdog); exit code, stdout and stderr.
fn run_all(bin: &str, args: &[&str]) -> (i32, String, String) {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let o = finish(child, bin);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn example_tcp_client_names_a_server_that_keeps_the_connection_open() {
    use std::io::{Read, Write};
    // An echo server that never closes after the client's FIN.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            c.write_all(&buf[..n]).unwrap();
        }
        // Hold the connection open until the client has given up.
        let _ = done_rx.recv_timeout(LIMIT);
    });
    let (code, _, err) = run_all(env!("CARGO_BIN_EXE_tcp_client"), &[&addr, "--count", "1"]);
    let _ = done_tx.send(());
    server.join().unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the server did not close within 10 s after our FIN"),
        "{err}"
    );
    assert!(!err.contains("0 outstanding bytes"), "{err}");
}

#[test]
fn example_in_memory_counts_round_trips_in_steps_not_microseconds() {
    let (code, out) = run(env!("CARGO_BIN_EXE_in_memory"), &["--count", "10"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("longest round trip ") && out.contains(" steps"),
        "{out}"
    );
    assert!(!out.contains("us\n") && !out.contains("ms\n"), "{out}");
}

#[test]
fn example_udp_client_without_server_says_so() {
    // A bound socket that never answers: the greeting's echo times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (code, _, err) = run_all(env!("CARGO_BIN_EXE_udp_client"), &[&addr, "--count", "1"]);
    drop(silent);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no echo of the greeting within 10 s"), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

/// A UDP echo stand-in that echoes `answers` datagrams, then (after
/// `hold` says so, if given) closes its socket: the kernel then answers the
/// client with ICMP port unreachable.
fn udp_stand_in(
    answers: usize,
    hold: Option<std::sync::mpsc::Receiver<()>>,
) -> (String, std::thread::JoinHandle<()>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..answers {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            socket.send_to(&buf[..n], from).unwrap();
        }
        if let Some(hold) = hold {
            let _ = hold.recv_timeout(LIMIT);
        }
        // Dropping the socket closes the port.
    });
    (addr, handle)
}

#[test]
fn example_udp_client_names_a_server_that_went_away_mid_run() {
    // The greeting and 2 datagrams are echoed, then the port is closed.
    let (addr, server) = udp_stand_in(3, None);
    let (code, out, err) = run_all(env!("CARGO_BIN_EXE_udp_client"), &[&addr, "--count", "50"]);
    server.join().unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "the UDP echo server at {addr} went away after the greeting and 2 of 50 datagrams \
             were verified: ICMP port unreachable"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("udp_server {addr} --count 51")),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
    assert!(out.contains("sent "), "the tally is printed: {out}");
}

#[test]
fn example_udp_client_names_a_server_that_is_not_running() {
    // Nothing echoes at all: the greeting already meets a closed port.
    let (addr, server) = udp_stand_in(0, None);
    server.join().unwrap();
    let (code, out, err) = run_all(env!("CARGO_BIN_EXE_udp_client"), &[&addr, "--count", "5"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "no UDP echo server at {addr}: ICMP port unreachable"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("udp_server {addr}")), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn example_udp_oversize_datagrams_are_logged_and_hinted_without_a_made_up_length() {
    // --count 2: the greeting is echoed, the 2000-byte datagrams are not,
    // and a last small datagram from the test lets the server end by itself.
    let (server, out, addr) = start_server(
        env!("CARGO_BIN_EXE_udp_server"),
        &["127.0.0.1:0", "--count", "2"],
    );
    let (code, client, err) = run_all(
        env!("CARGO_BIN_EXE_udp_client"),
        &[&addr, "--count", "2", "--size", "2000"],
    );
    let last = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    last.send_to(b"bye", &addr).unwrap();
    let (server_code, server) = rest_of(server, out, "udp_server");
    assert_eq!(code, 1, "{client}{err}");
    assert!(client.contains("sent 2, verified 0, lost 2"), "{client}");
    assert!(
        err.contains(
            "hint: every datagram was lost (stopped after 3), and each was 2000 bytes: echo \
             servers commonly drop datagrams larger than 1472 bytes"
        ),
        "{err}"
    );
    assert!(err.contains("try --size 1472 or less"), "{err}");
    assert_eq!(server_code, 0, "{server}");
    assert!(
        server.contains("dropped a datagram of more than 1472 bytes from 127.0.0.1:"),
        "{server}"
    );
    assert!(!server.contains("1473"), "{server}");
    assert!(server.contains("dropped 2 oversize"), "{server}");
}

#[test]
fn example_udp_client_gives_no_size_hint_when_small_datagrams_are_lost() {
    // Only the greeting is echoed; the port stays open (no ICMP), so the
    // 64-byte datagrams are lost, and their size is not the cause.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (addr, server) = udp_stand_in(1, Some(done_rx));
    let (code, out, err) = run_all(env!("CARGO_BIN_EXE_udp_client"), &[&addr, "--count", "1"]);
    let _ = done_tx.send(());
    server.join().unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("sent 1, verified 0, lost 1"), "{out}");
    assert!(err.contains("0 of 1 datagrams verified"), "{err}");
    assert!(!err.contains("hint") && !err.contains("1472"), "{err}");
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

/// A server that accepts and never echoes (e.g. `ricochet serve -m lines`,
/// which waits for a newline the greeting lacks): the client says what it
/// waited for, not "Resource temporarily unavailable".
#[test]
fn example_tcp_client_names_a_greeting_that_never_comes_back() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (c, _) = listener.accept().unwrap();
        // Hold the connection, silent, until the client has given up.
        let _ = done_rx.recv_timeout(LIMIT);
        drop(c);
    });
    let (code, _, err) = run_all(env!("CARGO_BIN_EXE_tcp_client"), &[&addr, "--count", "1"]);
    let _ = done_tx.send(());
    server.join().unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "no echo of the greeting within 10 s (0 of 12 bytes came back): is {addr} an echo \
             server in raw mode?"
        )),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn example_tcp_client_names_a_server_that_is_not_running() {
    // A port nobody listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (code, _, err) = run_all(env!("CARGO_BIN_EXE_tcp_client"), &[&addr, "--count", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "no TCP echo server at {addr}: connection refused, nothing listens on that port"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("tcp_server {addr}")), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

/// A second server on an address already served fails with that address
/// and the fix, not a bare "Address already in use".
#[test]
fn example_servers_name_an_address_already_in_use() {
    for bin in [
        env!("CARGO_BIN_EXE_tcp_server"),
        env!("CARGO_BIN_EXE_udp_server"),
    ] {
        let (mut first, _out, addr) = start_server(bin, &["127.0.0.1:0"]);
        let (code, _, err) = run_all(bin, &[&addr]);
        let _ = first.kill();
        let _ = first.wait();
        assert_eq!(code, 1, "{bin}: {err}");
        assert!(
            err.contains(&format!("cannot bind {addr}")) && err.contains("port 0 picks a free one"),
            "{bin}: {err}"
        );
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

/// Regression: a closed stdout (`| head -1` after the `listening on` line)
/// made the server panic at its next line (exit 101) and reset the client.
#[test]
fn example_server_with_stdout_closed_goes_on_serving() {
    let (server, out, addr) = start_server(
        env!("CARGO_BIN_EXE_tcp_server"),
        &["127.0.0.1:0", "--count", "2"],
    );
    drop(out); // as `head -1` exits
    for _ in 0..2 {
        let (code, client) = run(env!("CARGO_BIN_EXE_tcp_client"), &[&addr, "--count", "5"]);
        assert_eq!(code, 0, "{client}");
    }
    let o = finish(server, "tcp_server");
    assert_eq!(o.status.code(), Some(0), "not a panic on the closed pipe");
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

/// A peer that connects and sends nothing is closed after the examples'
/// 10 s, as the docs say ("timeouts end stuck peers"); the session's
/// default 300 s held it, and every client after it.
#[test]
fn example_tcp_server_closes_a_silent_peer_after_its_timeout() {
    let (server, out, addr) =
        start_server(env!("CARGO_BIN_EXE_tcp_server"), &["127.0.0.1:0", "--once"]);
    let silent = std::net::TcpStream::connect(&addr).unwrap();
    let start = Instant::now();
    let (code, text) = rest_of(server, out, "tcp_server");
    let took = start.elapsed();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("echoed 0 of 0 bytes"), "{text}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(25),
        "{took:?}"
    );
    drop(silent);
}
