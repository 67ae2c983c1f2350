//! What the programs say when something goes wrong: no server, a server
//! gone mid-run or silent, an address in use, oversize datagrams, a closed
//! stdout.

use super::*;

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
