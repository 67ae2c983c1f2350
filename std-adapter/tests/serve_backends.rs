//! One pump, one set of counters: the same traffic ends the same way on
//! each I/O backend (`cargo xtask ci test` runs this file once per
//! `RICOCHET_IO`), in `/metrics` and in the `stopped` line, over TCP and
//! Unix sockets. The timers here (drain, idle) and the Unix accept path are
//! wired separately in the epoll and the io_uring worker.

mod daemon_support;
mod serve_support;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use daemon_support::{http_get, wait_until};
use serve_support::{IO_TIMEOUT, Proc, connect, round_trip};

/// The sample `key` (name and labels as the server writes them) of a
/// `/metrics` body.
fn sample(body: &str, key: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {key} in:\n{body}"))
}

fn scrape(metrics: SocketAddr) -> String {
    http_get(metrics, "/metrics", None).2
}

/// `ricochet serve` with a TCP, a Unix and the metrics endpoint, plus
/// `args`; returns it with the TCP and metrics addresses.
fn serve(path: &std::path::Path, args: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    let mut all = vec![
        "--tcp",
        "127.0.0.1:0",
        "--unix",
        path.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    let p = Proc::serve(&all);
    let lines = p.listening(3);
    let addr = |kind: &str| -> SocketAddr {
        let (_, a) = lines.iter().find(|(k, _)| k == kind).expect(kind);
        a.parse().unwrap()
    };
    let (tcp, metrics) = (addr("tcp"), addr("metrics"));
    (p, tcp, metrics)
}

/// SIGTERM, then the `stopped` line's `key=value` fields.
fn stop(mut p: Proc) -> Vec<(String, u64)> {
    p.signal("TERM");
    let line = p.wait_stderr(" stopped accepted=", IO_TIMEOUT);
    assert!(p.wait_exit(IO_TIMEOUT).success());
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn field(stopped: &[(String, u64)], key: &str) -> u64 {
    stopped
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in {stopped:?}"))
        .1
}

/// Writes 64 KiB chunks until a write makes no progress for 1 s (the
/// caller's write timeout: well past a busy machine's pauses) or
/// fails (the server reset it): a peer that sends and never reads. Returns
/// the failure, if a write saw one.
fn write_until_stuck(s: &mut impl Write) -> Option<io::Error> {
    let chunk = vec![b'x'; 64 * 1024];
    loop {
        match s.write(&chunk) {
            Ok(n) if n > 0 => {}
            Ok(_) => return None,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(e) => return Some(e),
        }
    }
}

/// A peer that sends and never reads its echo: once every buffer on the
/// way is full, the drain timeout aborts it, counted as `drain_timeout`
/// (not a close, not the peer's reset) with every byte received either
/// echoed or discarded, on both transports.
#[test]
fn peers_that_never_read_are_aborted_at_the_drain_timeout_over_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drain.sock");
    let (p, tcp, metrics) = serve(&path, &["--drain-timeout", "300ms"]);
    let mut t = {
        use socket2::{Domain, SockAddr, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.connect_timeout(&SockAddr::from(tcp), IO_TIMEOUT).unwrap();
        std::net::TcpStream::from(s)
    };
    t.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let failed_write = write_until_stuck(&mut t);
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let _ = write_until_stuck(&mut u);
    let aborted = |body: &str, kind: &str| {
        sample(
            body,
            &format!(
                "ricochet_connections_aborted_total{{transport=\"{kind}\",reason=\"drain_timeout\"}}"
            ),
        )
    };
    wait_until(IO_TIMEOUT, "both drain timeouts counted", || {
        let body = scrape(metrics);
        aborted(&body, "tcp") == 1 && aborted(&body, "unix") == 1
    });
    let body = scrape(metrics);
    for kind in ["tcp", "unix"] {
        let get = |name: &str| sample(&body, &format!("{name}{{transport=\"{kind}\"}}"));
        let (received, echoed, discarded) = (
            get("ricochet_received_bytes_total"),
            get("ricochet_echoed_bytes_total"),
            get("ricochet_discarded_bytes_total"),
        );
        assert!(echoed > 0, "{kind}: nothing echoed");
        assert_eq!(received, echoed + discarded, "{kind}: bytes unaccounted");
        assert_eq!(get("ricochet_connections_open"), 0, "{kind}");
        for reason in ["peer_finished", "idle_timeout", "local"] {
            let key = format!(
                "ricochet_connections_closed_total{{transport=\"{kind}\",reason=\"{reason}\"}}"
            );
            assert_eq!(sample(&body, &key), 0, "{key}");
        }
        let key = format!(
            "ricochet_connections_aborted_total{{transport=\"{kind}\",reason=\"peer_reset\"}}"
        );
        assert_eq!(sample(&body, &key), 0, "{key}");
    }
    // The TCP peer sees the reset, never a clean end: on a write (the
    // abort came while it was still sending) or once it reads.
    let end = failed_write.unwrap_or_else(|| {
        t.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut sink = vec![0u8; 1 << 16];
        loop {
            match t.read(&mut sink) {
                Ok(0) => panic!("a clean FIN after a drain timeout"),
                Ok(_) => {}
                Err(e) => break e,
            }
        }
    });
    assert!(
        matches!(
            end.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        "{end}"
    );
    drop(u);
    let stopped = stop(p);
    assert_eq!(
        (field(&stopped, "closed"), field(&stopped, "aborted")),
        (0, 2),
        "{stopped:?}"
    );
    assert_eq!(
        field(&stopped, "bytes_in"),
        field(&stopped, "bytes_out") + field(&stopped, "bytes_discarded"),
        "{stopped:?}"
    );
}

/// Echoes `whole`, sends `partial` and goes silent: the idle timeout must
/// end the connection cleanly without echoing `partial`.
fn silent_with_partial(s: &mut (impl Read + Write), whole: &[u8], partial: &[u8]) {
    round_trip(s, whole);
    s.write_all(partial).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("a clean end, not a reset");
    assert_eq!(rest, b"", "the partial unit is not echoed");
}

/// A peer that goes silent with a partial line or frame held: the idle
/// timeout closes it gracefully, echoing the whole units before and
/// discarding (and counting) the partial one, the same bytes on both
/// transports.
#[test]
fn partial_unit_held_at_the_idle_timeout_is_discarded_and_counted_over_tcp_and_unix() {
    // (mode, whole units, partial unit)
    let cases: [(&str, &[u8], &[u8]); 2] = [
        ("lines", b"whole\n", b"part"),
        ("frames", b"\x00\x02ok", b"\x00\x05pa"),
    ];
    for (mode, whole, partial) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idle.sock");
        let (p, tcp, metrics) = serve(&path, &["--mode", mode, "--idle-timeout", "500ms"]);
        silent_with_partial(&mut connect(tcp), whole, partial);
        let mut u = UnixStream::connect(&path).unwrap();
        u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        silent_with_partial(&mut u, whole, partial);
        drop(u);
        let closed = |body: &str, kind: &str| {
            sample(
                body,
                &format!(
                    "ricochet_connections_closed_total{{transport=\"{kind}\",reason=\"idle_timeout\"}}"
                ),
            )
        };
        wait_until(IO_TIMEOUT, "both idle closes counted", || {
            let body = scrape(metrics);
            closed(&body, "tcp") == 1 && closed(&body, "unix") == 1
        });
        let body = scrape(metrics);
        let (w, h) = (whole.len() as u64, partial.len() as u64);
        for kind in ["tcp", "unix"] {
            let get = |name: &str| sample(&body, &format!("{name}{{transport=\"{kind}\"}}"));
            let bytes = (
                get("ricochet_received_bytes_total"),
                get("ricochet_echoed_bytes_total"),
                get("ricochet_discarded_bytes_total"),
            );
            assert_eq!(bytes, (w + h, w, h), "{mode} {kind}: in, out, discarded");
        }
        let stopped = stop(p);
        let got: Vec<u64> = [
            "closed",
            "aborted",
            "bytes_in",
            "bytes_out",
            "bytes_discarded",
        ]
        .iter()
        .map(|k| field(&stopped, k))
        .collect();
        assert_eq!(
            got,
            [2, 0, 2 * (w + h), 2 * w, 2 * h],
            "{mode}: {stopped:?}"
        );
    }
}

/// A Unix connection over `--max-connections` is closed at once and
/// counted as rejected on the Unix transport; the one admitted is still
/// served.
#[test]
fn unix_connection_over_max_connections_is_rejected_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limit.sock");
    let (p, _, metrics) = serve(&path, &["--max-connections", "1"]);
    let mut first = UnixStream::connect(&path).unwrap();
    first.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut first, b"admitted");
    let mut extra = UnixStream::connect(&path).unwrap();
    extra.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 16];
    match extra.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("a connection over the limit must be closed, got {other:?}"),
    }
    wait_until(IO_TIMEOUT, "the rejection counted", || {
        sample(
            &scrape(metrics),
            "ricochet_connections_rejected_total{transport=\"unix\"}",
        ) == 1
    });
    let body = scrape(metrics);
    assert_eq!(
        sample(
            &body,
            "ricochet_connections_accepted_total{transport=\"unix\"}"
        ),
        1
    );
    assert_eq!(
        sample(
            &body,
            "ricochet_connections_rejected_total{transport=\"tcp\"}"
        ),
        0
    );
    round_trip(&mut first, b"still served");
    drop(first);
    let stopped = stop(p);
    assert_eq!(
        (field(&stopped, "accepted"), field(&stopped, "rejected")),
        (1, 1),
        "{stopped:?}"
    );
}

/// A Unix peer sends a whole line, then one longer than the buffer, in one
/// write: the whole line is echoed, then the session is aborted as
/// `line_too_long` on the Unix transport, with every byte received echoed
/// or discarded. (How much of the long line is read first is the
/// backend's: io_uring receives ahead of the session.)
#[test]
fn unix_overlong_line_behind_a_whole_one_is_aborted_after_its_echo_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.sock");
    let (p, _, metrics) = serve(&path, &["--mode", "lines", "--buffer-size", "64"]);
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut sent = b"ok\n".to_vec();
    sent.extend([b'y'; 100]);
    u.write_all(&sent).unwrap();
    let mut back = Vec::new();
    // No reset on a Unix socket: an end of stream, or ECONNRESET when the
    // server left input unread.
    match u.read_to_end(&mut back) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(back, b"ok\n", "the whole line, then the end");
    let key = "ricochet_connections_aborted_total{transport=\"unix\",reason=\"line_too_long\"}";
    wait_until(IO_TIMEOUT, "the abort counted", || {
        sample(&scrape(metrics), key) == 1
    });
    let body = scrape(metrics);
    let get = |name: &str| sample(&body, &format!("{name}{{transport=\"unix\"}}"));
    let (received, echoed, discarded) = (
        get("ricochet_received_bytes_total"),
        get("ricochet_echoed_bytes_total"),
        get("ricochet_discarded_bytes_total"),
    );
    assert_eq!(echoed, 3);
    assert!(received > 64, "the overlong line was read: {received}");
    assert_eq!(received, echoed + discarded);
    assert_eq!(get("ricochet_connections_open"), 0);
    let stopped = stop(p);
    assert_eq!(
        (field(&stopped, "closed"), field(&stopped, "aborted")),
        (0, 1),
        "{stopped:?}"
    );
}
