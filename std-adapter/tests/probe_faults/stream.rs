//! TCP and Unix stream servers that corrupt, cut, stall, never read or
//! refuse, and the control: one without a fault.

use super::*;

#[test]
fn probe_flipped_byte_reports_mismatch_at_exact_offset_per_connection() {
    let srv = FaultyServer::start(Fault::FlipAt(1000));
    let mut spec = tcp_spec(srv.addr, 100); // 6400 bytes per connection
    spec.connections = 3;
    let r = probe::run(&spec).expect("run");
    assert!(!r.ok);
    assert_eq!(r.errors.mismatch, 3, "{r}");
    assert_eq!(r.errors.total(), 3, "{r}");
    let conns: BTreeSet<usize> = r
        .error_details
        .iter()
        .map(|d| d.connection.expect("a connection's own error"))
        .collect();
    assert_eq!(conns, BTreeSet::from([0, 1, 2]));
    for d in &r.error_details {
        assert_eq!(d.kind, ErrorKind::Mismatch);
        assert_eq!(d.offset, Some(1000), "{d}");
        let (e, a) = (
            d.expected.expect("expected byte"),
            d.actual.expect("actual byte"),
        );
        assert_eq!(a, e ^ 0xff, "{d}");
    }
    // Everything before the bad byte was verified (15 messages of 64 bytes per connection).
    assert!(r.bytes_verified >= 3 * 960, "{r}");
}

/// In `frames` mode a byte altered in a frame's 2-byte length header is
/// named as such, with where the frame starts; one in the payload is not.
#[test]
fn probe_frames_altered_length_header_is_named_with_the_frame_start() {
    for (at, header) in [(64, true), (65, true), (66, false)] {
        let srv = FaultyServer::start(Fault::FlipAt(at));
        let mut spec = tcp_spec(srv.addr, 5);
        spec.mode = ricochet::core::Mode::Frames;
        let r = probe::run(&spec).expect("run");
        assert_eq!(r.errors.mismatch, 1, "{r}");
        let d = &r.error_details[0];
        assert_eq!(d.offset, Some(at), "{r}");
        assert_eq!(
            d.message.contains(
                "in the 2-byte length header of the frame that starts at stream offset 64"
            ),
            header,
            "{at}: {}",
            d.message
        );
    }
}

#[test]
fn probe_cli_flipped_byte_exits_1_with_offset_in_json() {
    let srv = FaultyServer::start(Fault::FlipAt(4242));
    let o = probe_cli(&[
        &format!("tcp://{}", srv.addr),
        "-n",
        "200",
        "-s",
        "16..=256",
        "--json",
        "--timeout",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["ok"], false);
    assert_eq!(j["errors"]["mismatch"], 1);
    let d = &j["error_details"][0];
    assert_eq!(d["kind"], "mismatch");
    assert_eq!(d["connection"], 0);
    assert_eq!(d["offset"], 4242);
    assert_eq!(
        d["actual"].as_u64().unwrap(),
        d["expected"].as_u64().unwrap() ^ 0xff
    );
}

#[test]
fn probe_cli_mismatch_table_names_connection_offset_and_bytes() {
    let srv = FaultyServer::start(Fault::FlipAt(77));
    let o = probe_cli(&[
        &format!("tcp://{}", srv.addr),
        "-n",
        "10",
        "--timeout",
        "2s",
    ]);
    let (code, out, _) = texts(&o);
    assert_eq!(code, 1);
    assert!(
        out.contains("connection 0: mismatch at stream offset 77"),
        "{out}"
    );
    assert!(out.contains("FAILED"), "{out}");
}

#[test]
fn probe_early_close_is_reported_as_early_close() {
    let srv = FaultyServer::start(Fault::CloseAfter(500));
    let r = probe::run(&tcp_spec(srv.addr, 100)).expect("run");
    assert!(!r.ok);
    assert_eq!(r.errors.early_close, 1, "{r}");
    assert_eq!(r.errors.total(), 1, "{r}");
    assert_eq!(r.error_details[0].kind, ErrorKind::EarlyClose);
    assert!(r.bytes_verified <= 500, "{r}");
}

#[test]
fn probe_silent_server_times_out_within_the_timeout() {
    let srv = FaultyServer::start(Fault::Silent);
    let mut spec = tcp_spec(srv.addr, 10);
    spec.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let r = probe::run(&spec).expect("run");
    let took = start.elapsed();
    assert_eq!(r.errors.timeout, 1, "{r}");
    assert_eq!(r.errors.total(), 1, "{r}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(r.messages_verified, 0);
}

#[test]
fn probe_server_that_never_reads_times_out_saying_it_does_not_read() {
    // A 16 MiB message is more than loopback's socket buffers hold (about
    // 4 MiB): the probe's writes block, and the timeout says why.
    let srv = FaultyServer::start(Fault::NeverRead);
    let mut spec = tcp_spec(srv.addr, 1);
    spec.size = SizeRange::fixed(16 << 20);
    spec.timeout = Duration::from_millis(500);
    let start = Instant::now();
    let r = probe::run(&spec).expect("run");
    assert!(start.elapsed() < Duration::from_secs(10), "{r}");
    assert_eq!(r.errors.timeout, 1, "{r}");
    assert_eq!(r.errors.total(), 1, "{r}");
    let msg = &r.error_details[0].message;
    assert!(
        msg.contains("the server is not reading either")
            && msg.contains("the socket has taken none of the probe's next bytes for the last"),
        "{msg}"
    );
    // One that reads and never answers takes everything: not said of it.
    let silent = FaultyServer::start(Fault::Silent);
    let mut spec = tcp_spec(silent.addr, 1);
    spec.size = SizeRange::fixed(16 << 20);
    spec.timeout = Duration::from_millis(500);
    let r = probe::run(&spec).expect("run");
    assert_eq!(r.errors.timeout, 1, "{r}");
    let msg = &r.error_details[0].message;
    assert!(!msg.contains("not reading"), "{msg}");
}

#[test]
fn probe_server_without_fin_is_an_error_after_everything_verified() {
    let srv = FaultyServer::start(Fault::NoFin);
    let mut spec = tcp_spec(srv.addr, 20);
    spec.timeout = Duration::from_millis(300);
    let r = probe::run(&spec).expect("run");
    assert_eq!(r.messages_verified, 20, "{r}");
    assert_eq!(r.errors.no_fin, 1, "{r}");
    assert_eq!(r.errors.total(), 1, "{r}");
    assert!(!r.ok);
}

#[test]
fn probe_bytes_after_our_fin_are_unexpected_data_at_stream_end() {
    let srv = FaultyServer::start(Fault::ExtraAfterFin);
    let r = probe::run(&tcp_spec(srv.addr, 10)).expect("run");
    assert_eq!(r.errors.unexpected_data, 1, "{r}");
    assert_eq!(r.error_details[0].offset, Some(640), "{r}");
}

#[test]
fn probe_refused_connection_is_refused() {
    let port = probe_support::free_tcp_port();
    let mut spec = tcp_spec(([127, 0, 0, 1], port).into(), 10);
    spec.connections = 2;
    let r = probe::run(&spec).expect("run");
    assert_eq!(r.errors.refused, 2, "{r}");
    assert_eq!(r.connections_ok, 0);
    let o = probe_cli(&[&format!("tcp://127.0.0.1:{port}"), "-q"]);
    let (code, out, err) = texts(&o);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "--quiet prints no table: {out}");
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn probe_full_backlog_is_a_connect_timeout() {
    // A listener that never accepts, with the smallest backlog: the kernel
    // completes one or two handshakes, then drops further SYNs.
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    sock.listen(0).expect("listen");
    let addr = sock.local_addr().expect("addr").as_socket().expect("inet");
    let mut spec = tcp_spec(addr, 1);
    spec.connections = 6;
    spec.threads = Some(1);
    spec.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let r = probe::run(&spec).expect("run");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(r.errors.connect_timeout >= 1, "{r}");
    // The few that got through the handshake are never served: response timeouts.
    assert_eq!(r.errors.connect_timeout + r.errors.timeout, 6, "{r}");
    drop(sock);
}

/// socat's default listen backlog is 5: at -c 300 its queue overflowed,
/// the kernel dropped SYNs (retransmitted after 1 s, then 2 s more) and
/// the ACKs of handshakes this host thought done, and the run failed with
/// response timeouts and no cause named. Here a listener with the smallest
/// backlog that starts accepting (and echoing) only after 300 ms: SYNs of
/// the connections beyond its queue wait for their retransmission, and a
/// hint names the full backlog.
#[test]
fn probe_connects_held_by_a_full_backlog_are_hinted() {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    sock.listen(0).expect("listen");
    let addr = sock.local_addr().expect("addr").as_socket().expect("inet");
    let listener: std::net::TcpListener = sock.into();
    std::thread::spawn(move || {
        // The fault: a server slow to start accepting (not a synchronisation).
        std::thread::sleep(Duration::from_millis(300));
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut back = conn.try_clone().expect("clone");
                let _ = std::io::copy(&mut conn, &mut back);
            });
        }
    });
    let mut spec = tcp_spec(addr, 5);
    spec.connections = 8;
    spec.threads = Some(1);
    spec.timeout = Duration::from_secs(3);
    let r = probe::run(&spec).expect("run");
    let connect = r.connect_us.as_ref().expect("connect latency");
    assert!(
        connect.max >= 900_000,
        "a SYN waited for its retransmission: {r}"
    );
    assert!(
        r.hints
            .iter()
            .any(|h| h.contains("SYN") && h.contains("backlog") && h.contains("socat")),
        "{r}"
    );
}

/// `ncat -l -k -e /bin/cat` relays through pipes with blocking writes: at
/// -p stream's default window of 256 KiB both pipes fill and it stops for
/// good after echoing the first bytes (at -w 128K it passes). The run
/// timed out with no word of the window; a hint now names it. Mimicked
/// by a server that stops echoing mid-stream.
#[test]
fn probe_stream_stalled_mid_run_hints_at_the_window() {
    let srv = FaultyServer::start(Fault::StallAfter(100_000, Duration::from_secs(3)));
    let mut spec = tcp_spec(srv.addr, 20);
    spec.pattern = Pattern::Stream;
    spec.size = SizeRange::fixed(16 * 1024);
    spec.timeout = Duration::from_millis(500);
    let r = probe::run(&spec).expect("run");
    assert_eq!(r.errors.timeout, 1, "{r}");
    assert!(r.bytes_verified > 0, "{r}");
    assert!(
        r.hints
            .iter()
            .any(|h| h.contains("ncat -e") && h.contains("smaller -w")),
        "{r}"
    );
}

#[test]
fn probe_a_correct_server_passes_the_same_checks() {
    // The control: the in-test server without a fault.
    let srv = FaultyServer::start(Fault::None);
    let mut spec = tcp_spec(srv.addr, 200);
    spec.connections = 4;
    spec.size = SizeRange::range(1, 3000);
    let r = probe::run(&spec).expect("run");
    assert!(r.ok, "{r}");
    assert_eq!(r.messages_verified, 800);
    assert_eq!(r.connections_ok, 4);
}

#[test]
fn probe_connects_failing_at_once_give_their_place_back_to_the_others() {
    // More connections than one thread connects at a time, every connect
    // refused before it is even in flight: all of them must still be tried.
    let dir = tempfile::tempdir().expect("temp dir");
    let target = format!("unix://{}", dir.path().join("none.sock").display());
    let n = ricochet::probe::CONNECTS_IN_FLIGHT + 8;
    let out = probe_cli(&[&target, "-c", &n.to_string(), "--threads", "1", "--json"]);
    let (code, _, err) = texts(&out);
    assert_eq!(code, 1, "{err}");
    assert_eq!(json_of(&out)["errors"]["refused"], n as u64);
}

/// A server echoing in two writes with Nagle's algorithm on holds the
/// second until the probe's delayed ACK (40 ms): the hint names it. A
/// server merely that slow (45 ms a message, each echoed whole) got the
/// same hint, sending its operator after TCP_NODELAY; it gets none.
#[test]
fn nagle_hint_needs_echoes_held_in_pieces_not_just_40_ms_round_trips() {
    let nagle = FaultyServer::start(Fault::SplitWrites);
    let mut spec = tcp_spec(nagle.addr, 20);
    spec.connections = 2;
    // The hint is for a nearby server (connecting under 5 ms). On a loaded
    // machine a run's loopback connects can take longer (6.5 ms was seen
    // while CI shared the cores): then that run says nothing about the
    // hint, and the probe runs again, 5 times at most.
    let near = |r: &probe::Report| r.connect_us.as_ref().is_some_and(|c| c.p50 < 5_000);
    let mut r = probe::run(&spec).expect("run");
    for _ in 1..5 {
        if near(&r) {
            break;
        }
        r = probe::run(&spec).expect("run");
    }
    assert!(r.ok, "{r}");
    assert!(near(&r), "5 runs, none connecting under 5 ms: {r}");
    assert!(
        r.hints.iter().any(|h| h.contains("Nagle")),
        "p50 {} us: {r}",
        r.latency_us.p50
    );

    let slow = FaultyServer::start(Fault::DelayEach(Duration::from_millis(45)));
    let mut spec = tcp_spec(slow.addr, 10);
    spec.connections = 2;
    let r = probe::run(&spec).expect("run");
    assert!(r.ok, "{r}");
    assert!(
        (45_000..60_000).contains(&r.latency_us.p50),
        "in the band the hint looks at: {r}"
    );
    assert!(!r.hints.iter().any(|h| h.contains("Nagle")), "{r}");
}
