//! What the probe suggests when a run fails before anything verified:
//! line limits, modes, forwards, TLS, superservers, stalls.

use super::*;

/// Our server in `lines` mode with the smallest buffer (64 bytes).
fn small_lines_server() -> ricochet::serve::ServerHandle {
    use ricochet::serve::{BufferSize, Server, ServerConfig};
    Server::bind(ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        mode: Mode::Lines,
        buffer_size: BufferSize::new(64).expect("64 bytes"),
        threads: 1,
        ..ServerConfig::default()
    })
    .expect("bind")
    .spawn()
    .expect("spawn")
}

/// The hint lines of a table.
fn hints_of(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("hint ")).collect()
}

/// A line longer than the server's limit gets the connection reset before
/// anything comes back: the probe names the limits and what to try. A raw
/// probe of a lines server is told to pass -m.
#[test]
fn reset_before_anything_verified_suggests_the_line_limit_and_the_mode() {
    let handle = small_lines_server();
    let t = format!("tcp://{}", handle.tcp_addr().expect("tcp address"));
    let (code, out, _) = texts(&probe_cli(&[
        &t,
        "--mode",
        "lines",
        "--size",
        "200",
        "-n",
        "3",
        "--timeout",
        "2s",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("server reset the connection"), "{out}");
    let hints = hints_of(&out).join("\n");
    assert!(
        hints.contains("1 connection was reset before any byte was echoed")
            && hints.contains("these lines are up to 200 bytes")
            && hints.contains("--buffer-size, default 4096 bytes")
            && hints.contains("1024 bytes by default")
            && hints.contains("try a smaller -s")
            && hints.contains("-m frames"),
        "{out}"
    );
    // A raw probe's random bytes make lines longer than 64 bytes too.
    let (code, out, _) = texts(&probe_cli(&[&t, "-s", "200", "-n", "3", "--timeout", "2s"]));
    assert_eq!(code, 1, "{out}");
    let hints = hints_of(&out).join("\n");
    assert!(
        hints.contains("reset before any byte was echoed")
            && hints.contains("-m lines or -m frames"),
        "{out}"
    );
    assert!(
        !hints.contains("try a smaller -s"),
        "raw data has no line length: {out}"
    );
    handle.shutdown();
    handle.join().unwrap();
}

/// Over a Unix socket a line longer than the server's buffer ends the
/// connection with an end of stream when the server read all of it (io_uring
/// does), as there is no reset: the hint still names `--buffer-size`, as it
/// does for the reset over TCP (or when the server left input unread).
#[test]
fn unix_close_before_anything_verified_names_the_servers_buffer_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lines.sock");
    let _server = serve_unix_child(&path, &["--mode", "lines", "--buffer-size", "64"]);
    let t = format!("unix://{}", path.display());
    for size in ["200", "5000"] {
        let (code, out, _) = texts(&probe_cli(&[
            &t,
            "-m",
            "lines",
            "-s",
            size,
            "-n",
            "3",
            "--timeout",
            "2s",
        ]));
        assert_eq!(code, 1, "{out}");
        let hints = hints_of(&out);
        assert_eq!(hints.len(), 1, "one hint: {out}");
        let h = hints[0];
        assert!(
            h.contains("--buffer-size, default 4096 bytes")
                && h.contains(&format!("these lines are up to {size} bytes"))
                && h.contains("try a smaller -s")
                && h.contains("-m frames"),
            "{out}"
        );
        if out.contains("server closed early: 0 bytes verified") {
            assert!(
                h.starts_with(
                    "hint         1 connection was closed by the peer before any byte was \
                     echoed, over a Unix socket, where a server's abort reads as an end of stream"
                ) && h.contains("aborts a connection whose line is longer than its limit"),
                "{out}"
            );
        } else {
            assert!(out.contains("server reset the connection"), "{out}");
            assert!(
                h.contains("1 connection was reset before any byte"),
                "{out}"
            );
        }
    }
}

/// Hints about early ends need nothing verified on the connection: a
/// server that closes after echoing some, or refuses, gets none of them.
#[test]
fn early_end_hints_only_when_nothing_was_verified() {
    let srv = FaultyServer::start(Fault::CloseAfter(100));
    let (code, out, _) = texts(&probe_cli(&[&tcp(&srv), "-n", "5", "--timeout", "2s"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("early close"), "{out}");
    assert!(hints_of(&out).is_empty(), "{out}");
    let (code, out, _) = texts(&probe_cli(&[&refused_target(), "-n", "1"]));
    assert_eq!(code, 1, "{out}");
    assert!(hints_of(&out).is_empty(), "{out}");
}

/// A peer that accepts and closes at once before any byte was echoed: the
/// probe says a port forward's server may not be up yet, and not that a
/// line was too long (a clean close is not how a server aborts one).
#[test]
fn connections_closed_before_any_echo_suggest_the_server_behind_a_forward_is_not_up() {
    let fwd = FaultyServer::start(Fault::FinAtOnce);
    let t = format!("tcp://{}", fwd.addr);
    let (code, out, _) = texts(&probe_cli(&[&t, "-c", "2", "-n", "3", "--timeout", "2s"]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("server closed early: 0 bytes verified"),
        "{out}"
    );
    let hints = hints_of(&out);
    assert_eq!(hints.len(), 1, "{out}");
    let h = hints[0];
    assert!(
        h.contains("2 connections were closed by the peer before any byte was echoed")
            && h.contains("port forward")
            && h.contains("hostfwd")
            && h.contains("not be up yet")
            && h.contains("wait until it is and try again"),
        "{out}"
    );
    // In lines mode too: a clean close is not a line-length abort.
    let (code, out, _) = texts(&probe_cli(&[
        &t,
        "-m",
        "lines",
        "-n",
        "3",
        "--timeout",
        "2s",
    ]));
    assert_eq!(code, 1, "{out}");
    assert_eq!(hints_of(&out).len(), 1, "{out}");
    assert!(!out.contains("--buffer-size"), "{out}");
}

/// A forward that just drops what it accepts resets the probe's connection
/// when the first message is already waiting unread (what a plain
/// accept-and-close does on Linux): the forward hint is there as well.
#[test]
fn connections_dropped_at_once_suggest_a_forward_whichever_way_they_end() {
    let fwd = FaultyServer::start(Fault::CloseAtOnce);
    let t = format!("tcp://{}", fwd.addr);
    let (code, out, _) = texts(&probe_cli(&[&t, "-n", "3", "--timeout", "2s"]));
    assert_eq!(code, 1, "{out}");
    let hints = hints_of(&out).join("\n");
    assert!(
        hints.contains("port forward") && hints.contains("not be up yet"),
        "{out}"
    );
}

/// socat's `OPENSSL-LISTEN` probed as tcp:// resets the connection at the
/// probe's first (non-TLS) bytes without a word: the hints named line
/// limits and port forwards only. A TLS server is named too.
#[test]
fn resets_before_any_echo_suggest_a_tls_server_too() {
    let tls_like = FaultyServer::start(Fault::ResetOnFirstBytes);
    let t = format!("tcp://{}", tls_like.addr);
    let (code, out, _) = texts(&probe_cli(&[&t, "-n", "3", "--timeout", "2s"]));
    assert_eq!(code, 1, "{out}");
    let hints = hints_of(&out).join("\n");
    assert!(
        hints.contains("OPENSSL-LISTEN") && hints.contains("tls://"),
        "{out}"
    );
}

/// openbsd-inetd stops a service invoked more than `nowait.max` times a
/// minute (256 by default) for ten minutes, its port still listening: after
/// a `-p crr` run every connection was reset (a few closed) before any
/// echo, and the hints named line limits, forwards and TLS, never the
/// superserver's limit.
#[test]
fn resets_before_any_echo_suggest_a_superserver_that_stopped_the_service() {
    let stopped = FaultyServer::start(Fault::ResetOnFirstBytes);
    let t = format!("tcp://{}", stopped.addr);
    let (code, out, _) = texts(&probe_cli(&[&t, "-n", "3", "-c", "4", "--timeout", "2s"]));
    assert_eq!(code, 1, "{out}");
    let hints = hints_of(&out).join("\n");
    assert!(
        hints.contains("nowait.max") && hints.contains("ten minutes"),
        "{out}"
    );
}

/// A server that answers for the first 20 messages of a 1 s paced run and
/// then stalls past its end: the run is measured over its whole second
/// (not up to the last echo before the stall, which made the rate look
/// met), the stalled message's wait is in the latency, and the rate not
/// reached is a warning.
#[test]
fn server_stalling_at_the_end_of_a_duration_run_is_not_measured_away() {
    let srv = FaultyServer::start(Fault::StallAfter(20 * 64, Duration::from_millis(1_500)));
    let j = json_of(&probe_cli(&[
        &tcp(&srv),
        "-r",
        "100",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "--json",
    ]));
    let measured = j["measured_secs"].as_f64().unwrap();
    assert!((0.99..=1.01).contains(&measured), "{j}");
    let rate = j["round_trips_per_sec"].as_f64().unwrap();
    assert!(rate < 30.0, "21 round trips in 1 s, not ~100/s: {j}");
    let max_us = j["latency_us"]["max"].as_u64().unwrap();
    assert!(max_us > 1_000_000, "the stall is in the latency: {j}");
    let warnings = j["warnings"].to_string();
    assert!(warnings.contains("was not reached"), "{j}");
}

/// A UDP server that answers from another port (or not at all, as
/// openbsd-inetd's echo for loopback sources): every datagram is lost, and
/// the probe says what to check.
#[test]
fn udp_run_with_nothing_back_asks_whether_a_server_answers_from_that_port() {
    use probe_support::{FaultyUdp, UdpFault};
    let srv = FaultyUdp::start(UdpFault::FromOtherPort);
    let (code, out, _) = texts(&probe_cli(&[
        &format!("udp://{}", srv.addr),
        "-n",
        "3",
        "--timeout",
        "200ms",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("foreign 0"), "filtered by the socket: {out}");
    let hints = hints_of(&out);
    assert_eq!(hints.len(), 1, "{out}");
    assert!(
        hints[0].starts_with("hint         nothing came back: all 3 datagrams were lost")
            && hints[0].contains("is a UDP echo server listening there")
            && hints[0].contains("from the same address and port"),
        "{out}"
    );
}

/// `-m lines` against a server that reads and answers nothing (a discard
/// service, or one that waits for a whole frame): the probe names the
/// other modes, not just a timeout.
#[test]
fn lines_probe_that_times_out_with_nothing_back_suggests_the_other_modes() {
    let srv = FaultyServer::start(Fault::Silent);
    let (code, out, _) = texts(&probe_cli(&[
        &tcp(&srv),
        "-m",
        "lines",
        "-n",
        "1",
        "--timeout",
        "300ms",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("errors       1 error (timeout 1)"), "{out}");
    let hints = hints_of(&out);
    assert_eq!(hints.len(), 1, "{out}");
    assert!(
        hints[0].contains("no line came back whole before the timeout")
            && hints[0].contains("-m frames or -m raw")
            && hints[0].contains("discard"),
        "{out}"
    );
}
