//! Each program echoing and verifying: TCP, UDP, Unix, sticky packets and
//! the in-memory pair.

use super::*;

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
