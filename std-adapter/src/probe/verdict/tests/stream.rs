//! The hints of stream runs: what a reset, a close or a timeout before
//! any echo, slow connects and slow round trips say of the server.

use super::*;

/// Connects of a second (SYNs retransmitted) get the backlog hint on TCP
/// only: a Unix socket has no SYN, a TLS connect includes its handshake.
#[test]
fn second_long_connects_hint_at_syn_retransmission_on_tcp_only() {
    let connect = Latency {
        count: 10,
        p50: 200,
        max: 1_024_000,
        ..Latency::default()
    };
    let tcp = ProbeSpec::new(Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into()));
    let hint = syn_retransmit_hint(&tcp, &connect).expect("a hint");
    assert!(hint.contains("SYN") && hint.contains("backlog"), "{hint}");
    let quick = Latency {
        max: 900_000,
        ..connect
    };
    assert!(
        syn_retransmit_hint(&tcp, &quick).is_none(),
        "under a second"
    );
    for other in [tls("a.example"), Target::Unix("/tmp/echo.sock".into())] {
        let spec = ProbeSpec::new(other);
        assert!(syn_retransmit_hint(&spec, &connect).is_none(), "{spec:?}");
    }
}

/// Ping-pong round trips of 40 ms to a server that accepted in 0.1 ms:
/// the Nagle and delayed-ACK hint; not for a far server (connecting
/// took as long) nor for fast round trips.
#[test]
fn forty_ms_round_trips_to_a_near_server_name_nagle_and_delayed_ack() {
    let lat = |p50| Latency {
        count: 10,
        p50,
        ..Latency::default()
    };
    let spec = ProbeSpec::new(tcp());
    // 10 round trips, 6 of them echoed in pieces with the last one held.
    let split = (6, 10);
    let hint = nagle_hint(&spec, &lat(40_500), &lat(100), split).expect("a hint");
    assert!(
        hint.contains("40.5 ms") && hint.contains("Nagle") && hint.contains("TCP_NODELAY"),
        "{hint}"
    );
    assert!(
        nagle_hint(&spec, &lat(40_500), &lat(39_000), split).is_none(),
        "far away"
    );
    assert!(
        nagle_hint(&spec, &lat(300), &lat(100), split).is_none(),
        "fast"
    );
    // A server merely that slow echoes whole messages, late.
    assert!(
        nagle_hint(&spec, &lat(40_500), &lat(100), (4, 10)).is_none(),
        "echoes mostly whole"
    );
    assert!(
        nagle_hint(&spec, &lat(40_500), &lat(100), (0, 0)).is_none(),
        "no round trip"
    );
    let mut udp = ProbeSpec::new(Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into()));
    udp.pattern = Pattern::PingPong;
    assert!(
        nagle_hint(&udp, &lat(40_500), &lat(100), split).is_none(),
        "no TCP"
    );
}

/// The Nagle hint is for a near server, one whose connect was measured
/// under 5 ms: round trips of 40 ms with no connect measured (say all
/// opened before the window) or one of 5 ms or more tell nothing of it.
#[test]
fn forty_ms_round_trips_without_a_connect_under_five_ms_give_no_nagle_hint() {
    let lat = |count, p50| Latency {
        count,
        p50,
        ..Latency::default()
    };
    let spec = ProbeSpec::new(tcp());
    let split = (6, 10);
    assert!(nagle_hint(&spec, &lat(10, 40_500), &lat(10, 4_999), split).is_some());
    assert!(
        nagle_hint(&spec, &lat(10, 40_500), &lat(0, 0), split).is_none(),
        "no connect measured"
    );
    assert!(
        nagle_hint(&spec, &lat(10, 40_500), &lat(10, 5_000), split).is_none(),
        "a connect of 5 ms"
    );
}

/// A tally of connections ended early before any byte verified.
fn ended_early(reset: u64, closed: u64) -> Tally {
    let mut t = tally();
    t.reset_unverified = reset;
    t.closed_unverified = closed;
    for _ in 0..reset + closed {
        t.errors.count(ErrorKind::EarlyClose);
    }
    t
}

fn sized(mode: Mode, size: usize) -> ProbeSpec {
    let mut spec = ProbeSpec::new(tcp());
    spec.mode = mode;
    spec.size = ricochet_core::probe::SizeRange::fixed(size);
    spec
}

#[test]
fn limits_in_the_hints_are_the_servers_defaults() {
    let config = crate::serve::ServerConfig::default();
    assert_eq!(SERVE_BUFFER, config.buffer_size.bytes());
}

#[test]
fn a_reset_before_any_echo_names_the_limit_the_size_and_the_mode() {
    let h = hints_of(&sized(Mode::Lines, 200), ended_early(1, 0));
    assert_eq!(h.len(), 2, "the limit, then a forward: {h:?}");
    assert!(
        h[0].starts_with("1 connection was reset before any byte was echoed: ")
            && h[0].contains("--buffer-size, default 4096 bytes")
            && h[0].contains("1024 bytes by default")
            && h[0].contains("these lines are up to 200 bytes (`\\n` included)")
            && h[0].contains("try a smaller -s")
            && h[0].contains("pass -m frames"),
        "{h:?}"
    );
    assert!(h[1].starts_with("if the target is a port forward"), "{h:?}");
    let h = hints_of(&sized(Mode::Frames, 2000), ended_early(3, 0));
    assert!(
        h[0].starts_with("3 connections were reset")
            && h[0].contains("these frames are up to 2000 bytes (2-byte header included)")
            && h[0].contains("pass -m lines"),
        "{h:?}"
    );
    assert!(h[1].contains("the resets can also mean"), "{h:?}");
    // Lines that even the smallest buffer takes: the mode comes first.
    let h = hints_of(&sized(Mode::Lines, 64), ended_early(1, 0));
    assert!(
        h[0].contains("at most 64 bytes") && h[0].contains("pass -m frames"),
        "{h:?}"
    );
    assert!(!h[0].contains("default 4096"), "{h:?}");
    // Raw data against a lines or frames server.
    let h = hints_of(&sized(Mode::Raw, 200), ended_early(1, 0));
    assert!(
        h[0].contains("as random raw data soon does") && h[0].contains("-m lines or -m frames"),
        "{h:?}"
    );
    assert!(!h[0].contains("smaller -s"), "{h:?}");
}

#[test]
fn a_unix_close_before_any_echo_names_the_limit_as_a_reset_does() {
    let mut spec = sized(Mode::Lines, 200);
    spec.targets = vec![Target::Unix("/run/echo.sock".into())];
    let h = hints_of(&spec, ended_early(0, 1));
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        h[0].starts_with(
            "1 connection was closed by the peer before any byte was echoed, over a Unix \
             socket, where a server's abort reads as an end of stream (there is no reset): "
        ) && h[0].contains("aborts a connection whose line is longer than its limit")
            && h[0].contains("--buffer-size, default 4096 bytes")
            && h[0].contains("these lines are up to 200 bytes")
            && h[0].contains("pass -m frames")
            && !h[0].contains("embedded node"),
        "{h:?}"
    );
    // Frames that even the smallest buffer takes: the mode comes first.
    spec.mode = Mode::Frames;
    spec.size = ricochet_core::probe::SizeRange::fixed(40);
    let h = hints_of(&spec, ended_early(0, 2));
    assert!(
        h[0].starts_with("2 connections were closed by the peer")
            && h[0].contains("at most 40 bytes")
            && h[0].contains("pass -m lines"),
        "{h:?}"
    );
    // Another connection echoed the same size: not a limit on lines.
    spec.mode = Mode::Lines;
    let mut t = ended_early(0, 1);
    t.messages_verified = 5;
    assert!(hints_of(&spec, t).is_empty());
    // A TCP target and a Unix one: each close gets its own hint.
    spec.size = ricochet_core::probe::SizeRange::fixed(200);
    spec.targets = vec![tcp(), Target::Unix("/run/echo.sock".into())];
    spec.connections = 2;
    let (a, b) = (ended_early(0, 1), ended_early(0, 1));
    let mut both = a.clone();
    both.merge(&b);
    let h = build_report(&spec, facts(None), both, &[a, b]).hints;
    assert!(h[0].contains("over a Unix socket"), "{h:?}");
    assert!(
        h[1].contains("some servers close, rather than reset"),
        "{h:?}"
    );
}

#[test]
fn a_clean_close_before_any_echo_suggests_a_forward() {
    let h = hints_of(&sized(Mode::Lines, 64), ended_early(0, 2));
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        h[0].starts_with("2 connections were closed by the peer before any byte was echoed: ")
            && h[0].contains("wait until it is and try again"),
        "{h:?}"
    );
    let h = hints_of(&sized(Mode::Raw, 64), ended_early(1, 1));
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(
        h[1].starts_with("1 connection was closed by the peer and 1 reset before any byte"),
        "{h:?}"
    );
}

/// Only a reset can be socat's OPENSSL-LISTEN or a superserver that stopped
/// the service: the forward hint of clean closes alone names neither.
#[test]
fn forward_hint_names_tls_and_superservers_after_resets_only() {
    let tls_or_inetd = |h: &str| {
        h.contains("OPENSSL-LISTEN") && h.contains("tls://HOST:PORT") && h.contains("nowait.max")
    };
    let h = hints_of(&sized(Mode::Raw, 64), ended_early(0, 2));
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        !h[0].contains("TLS") && !h[0].contains("superserver"),
        "{h:?}"
    );
    for (reset, closed) in [(1, 0), (1, 1)] {
        let h = hints_of(&sized(Mode::Raw, 64), ended_early(reset, closed));
        let forward = h.last().expect("a forward hint");
        assert!(
            forward.contains("port forward") && tls_or_inetd(forward),
            "{h:?}"
        );
    }
}

#[test]
fn no_forward_hint_once_anything_was_echoed_or_for_unix_targets() {
    let mut t = ended_early(0, 1);
    t.bytes_verified = 64;
    assert!(hints_of(&sized(Mode::Raw, 64), t).is_empty());
    let mut spec = ProbeSpec::new(Target::Unix("/tmp/echo.sock".into()));
    assert!(hints_of(&spec, ended_early(0, 1)).is_empty());
    spec.mode = Mode::Lines;
    let h = hints_of(&spec, ended_early(1, 0));
    assert_eq!(h.len(), 1, "the limit only: {h:?}");
    // Other errors give none of these hints.
    let mut t = tally();
    t.errors.count(ErrorKind::Refused);
    t.errors.count(ErrorKind::Mismatch);
    assert!(hints_of(&sized(Mode::Lines, 200), t).is_empty());
}

/// Resets before any echo while other connections of the same run
/// were served (xinetd's `instances`, an inetd's rate limit under
/// `-p crr`): a connection limit, not the line length, when the size
/// cannot explain them.
#[test]
fn resets_while_other_connections_were_served_name_a_connection_limit() {
    // -c 60 against `instances = 50`: 50 clean, 10 reset, raw data.
    let mut t = ended_early(10, 0);
    t.connections_ok = 50;
    t.bytes_verified = 50 * 64;
    t.messages_verified = 50;
    let h = hints_of(&sized(Mode::Raw, 64), t.clone());
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        h[0].starts_with(
            "10 connections were reset before any byte was echoed, while other connections \
             of the run were served: "
        ) && h[0].contains("limits concurrent connections or their rate")
            && h[0].contains("`nowait.max`")
            && h[0].contains("xinetd's `instances` and `cps`")
            && h[0].contains("--max-connections")
            && h[0].contains("the embedded node's pool: 4 sockets over its 3 ports")
            && h[0].contains("listen backlog overflowed")
            && h[0].contains("try fewer -c or a lower --connect-rate"),
        "{h:?}"
    );
    assert!(!h[0].contains("-m lines"), "{h:?}");
    // Lines of a fixed size that other connections echoed.
    let h = hints_of(&sized(Mode::Lines, 200), t.clone());
    assert!(h[0].contains("--connect-rate"), "{h:?}");
    assert!(!h[0].contains("smaller -s"), "{h:?}");
    // -p crr after hundreds of good connections: no clean slot, but
    // hundreds of connections completed.
    let mut crr = ended_early(1, 0);
    crr.completed = 300;
    crr.bytes_verified = 300 * 64;
    crr.messages_verified = 300;
    let h = hints_of(&sized(Mode::Raw, 64), crr);
    assert!(h[0].contains("--connect-rate"), "{h:?}");
    // Sizes that vary: the longer lines may be what was reset.
    let mut spec = sized(Mode::Lines, 200);
    spec.size = ricochet_core::probe::SizeRange::range(10, 5000);
    let h = hints_of(&spec, t);
    assert!(h[0].contains("try a smaller -s"), "{h:?}");
    // Raw data of which some bytes came back, but no connection
    // completed: a lines server echoing up to a random `\n` (the limit).
    let mut partial = ended_early(2, 0);
    partial.bytes_verified = 40;
    let h = hints_of(&sized(Mode::Raw, 200), partial);
    assert!(h[0].contains("-m lines or -m frames"), "{h:?}");
}

/// A Python `readline` server with a limit closes (FIN), rather than
/// resets, a connection whose line is too long.
#[test]
fn a_clean_close_of_long_lines_or_frames_also_names_the_limit() {
    let h = hints_of(&sized(Mode::Lines, 100 * 1024), ended_early(0, 1));
    assert_eq!(h.len(), 2, "the limit, then a forward: {h:?}");
    assert!(
        h[0].starts_with("1 connection was closed by the peer before any byte was echoed: ")
            && h[0].contains(
                "some servers close, rather than reset, a connection whose line is longer \
                 than their limit"
            )
            && h[0].contains("these lines are up to 102400 bytes (`\\n` included)")
            && h[0].contains("try a smaller -s")
            && h[0].contains("pass -m frames"),
        "{h:?}"
    );
    assert!(h[1].contains("port forward"), "{h:?}");
    let h = hints_of(&sized(Mode::Frames, 2000), ended_early(0, 3));
    assert!(
        h[0].starts_with("3 connections were closed")
            && h[0].contains("whose frame is longer than their limit")
            && h[0].contains("pass -m lines"),
        "{h:?}"
    );
    // Short messages and raw data: the forward only.
    assert_eq!(
        hints_of(&sized(Mode::Lines, 64), ended_early(0, 1)).len(),
        1
    );
    assert_eq!(
        hints_of(&sized(Mode::Raw, 100_000), ended_early(0, 1)).len(),
        1
    );
}

/// `-m frames` against a lines server, `-m lines` against a frames
/// server or a discard service: timeouts, no message back.
#[test]
fn lines_or_frames_timing_out_with_nothing_verified_suggest_another_mode() {
    let mut t = tally();
    t.errors.count(ErrorKind::Timeout);
    // A prefix of a frame up to a random `\n` came back, not the frame.
    t.bytes_verified = 10;
    let h = hints_of(&sized(Mode::Frames, 64), t.clone());
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        h[0].starts_with("no frame came back whole before the timeout: ")
            && h[0].contains("-m lines or -m raw")
            && h[0].contains("not be an echo server at all")
            && h[0].contains("discard"),
        "{h:?}"
    );
    let h = hints_of(&sized(Mode::Lines, 64), t.clone());
    assert!(h[0].contains("-m frames or -m raw"), "{h:?}");
    // Something verified whole: a slow server, no mode hint.
    t.messages_verified = 1;
    assert!(hints_of(&sized(Mode::Lines, 64), t).is_empty());
}

/// A raw stream run that timed out with nothing back suggests the line or
/// frame modes; one that got bytes back, a line run, or one without a
/// timeout does not.
#[test]
fn raw_stream_timing_out_with_nothing_back_suggests_lines_or_frames() {
    const NOTHING: &str = "nothing came back at all";
    let mut spec = ProbeSpec::new(tcp());
    let mut t = tally();
    t.errors.count(ErrorKind::Timeout);
    assert!(any_has(&hints_of(&spec, t.clone()), NOTHING));
    assert!(!any_has(&hints_of(&spec, tally()), NOTHING), "no timeout");
    let mut some = echoed_at(&[0]);
    some.errors.count(ErrorKind::Timeout);
    assert!(!any_has(&hints_of(&spec, some), NOTHING), "bytes came back");
    spec.mode = Mode::Lines;
    assert!(
        !any_has(&hints_of(&spec, t), NOTHING),
        "lines: their own hint"
    );
}

/// A stream-pattern run whose echoes stopped after some came back names
/// the pipe deadlock of relaying servers; nothing back, or no timeout,
/// does not.
#[test]
fn stream_pattern_timing_out_after_echoes_names_a_relay_deadlock() {
    const STOPPED: &str = "echoes stopped mid-stream";
    let mut spec = ProbeSpec::new(tcp());
    spec.pattern = Pattern::Stream;
    let mut t = echoed_at(&[0]);
    assert!(!any_has(&hints_of(&spec, t.clone()), STOPPED), "no timeout");
    t.errors.count(ErrorKind::Timeout);
    let h = hints_of(&spec, t.clone());
    assert!(
        any_has(&h, STOPPED) && any_has(&h, "--window of 256 KiB"),
        "{h:?}"
    );
    let mut nothing = tally();
    nothing.errors.count(ErrorKind::Timeout);
    assert!(!any_has(&hints_of(&spec, nothing), STOPPED));
    spec.pattern = Pattern::PingPong;
    assert!(!any_has(&hints_of(&spec, t), STOPPED), "ping-pong");
}
