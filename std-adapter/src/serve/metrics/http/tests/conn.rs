//! One scrape connection stepped by hand: heads in pieces, the request
//! bound, a response larger than the socket takes, resets, deadlines; and
//! the endpoint's thread serving until stopped.

use super::*;

/// How long the endpoint's side of [`conn_and_client`] waits on a read or
/// a write before it reads as `WouldBlock`.
const WAIT: Duration = Duration::from_millis(100);

/// A bound on anything the client waits for.
const BOUND: Duration = Duration::from_secs(5);

/// A connection of the endpoint's, reading its request, and its client.
/// The endpoint's side is blocking with `WAIT` as its timeouts, so that
/// `step` sees what the client sent before it (a read waits for it) and a
/// `WouldBlock` means nothing more came, or no more room, for `WAIT`, as
/// on the non-blocking socket the endpoint uses.
fn conn_and_client() -> (Conn, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    // Small, so that a large response fills it (and the client's window).
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(16 * 1024)
        .unwrap();
    ours.set_read_timeout(Some(WAIT)).unwrap();
    ours.set_write_timeout(Some(WAIT)).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    client.set_write_timeout(Some(BOUND)).unwrap();
    let conn = Conn {
        stream: TcpStream::from_std(ours),
        input: Vec::new(),
        output: Vec::new(),
        sent: 0,
        deadline: Instant::now() + BOUND,
        stage: Stage::Reading,
    };
    (conn, client)
}

/// What the client reads until the endpoint's FIN (panics on a timeout or an error).
fn read_to_fin(client: &mut std::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    client
        .read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("no FIN within {BOUND:?}: {e}"));
    all
}

/// Makes the client's close a reset (SO_LINGER 0).
fn reset(client: std::net::TcpStream) {
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
}

fn config(max_request: usize) -> MetricsConfig {
    MetricsConfig {
        max_request,
        ..MetricsConfig::new("127.0.0.1:0".parse().unwrap())
    }
}

/// A head in two reads: the first leaves the connection reading, the
/// second answers it; then the endpoint sends FIN and waits for the
/// client's close (closing with input unread would reset the response).
#[test]
fn request_head_in_two_reads_is_answered_then_the_client_close_awaited() {
    let s = stats();
    let (mut conn, mut client) = conn_and_client();
    let config = config(8 * 1024);
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x")
        .unwrap();
    assert!(!step(&mut conn, &config, &s).unwrap(), "head incomplete");
    assert_eq!(conn.stage, Stage::Reading);
    client.write_all(b"\r\n\r\n").unwrap();
    assert!(
        !step(&mut conn, &config, &s).unwrap(),
        "the client's close awaited"
    );
    assert_eq!(conn.stage, Stage::Draining);
    assert!(conn.input.is_empty(), "the request's buffer is freed");
    let reply = read_to_fin(&mut client);
    let expected = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &s);
    assert_eq!(status(&reply), "HTTP/1.1 200 OK");
    assert_eq!(reply, expected);
    // Whatever the client sends now is read and dropped; its close ends it.
    client.write_all(b"more").unwrap();
    assert!(!step(&mut conn, &config, &s).unwrap());
    client.shutdown(Shutdown::Write).unwrap();
    assert!(
        step(&mut conn, &config, &s).unwrap(),
        "ended at the client's close"
    );
}

/// `max_request` bounds the head inclusively: a head of exactly that many
/// bytes is answered, one byte more is refused.
#[test]
fn head_of_exactly_max_request_is_answered_and_one_byte_longer_refused() {
    let s = stats();
    let head = b"GET /metrics HTTP/1.1\r\nX-Pad: a\r\n\r\n";
    for (max_request, expected) in [
        (head.len(), "HTTP/1.1 200 OK"),
        (
            head.len() - 1,
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ] {
        let (mut conn, mut client) = conn_and_client();
        client.write_all(head).unwrap();
        assert!(!step(&mut conn, &config(max_request), &s).unwrap());
        assert_eq!(status(&read_to_fin(&mut client)), expected, "{max_request}");
    }
}

/// `max_request` bytes with no blank line yet are refused at once: the
/// endpoint does not read on (nor grow its buffer) waiting for the end.
#[test]
fn max_request_bytes_without_a_blank_line_are_refused_without_waiting_for_more() {
    let s = stats();
    let (mut conn, mut client) = conn_and_client();
    let mut partial = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    partial.resize(64, b'a');
    client.write_all(&partial).unwrap();
    assert!(!step(&mut conn, &config(64), &s).unwrap());
    assert_eq!(conn.stage, Stage::Draining);
    assert_eq!(
        status(&read_to_fin(&mut client)),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

/// A response larger than the socket takes at once waits for room (the
/// client reading) and then goes out whole, once, then FIN.
#[test]
fn response_larger_than_the_socket_takes_goes_out_whole_as_the_client_reads() {
    let s = stats();
    let (mut conn, mut client) = conn_and_client();
    let output: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    conn.output = output.clone();
    conn.stage = Stage::Writing;
    let config = config(8 * 1024);
    assert!(!step(&mut conn, &config, &s).unwrap(), "no room: waits");
    assert_eq!(conn.stage, Stage::Writing);
    assert!(0 < conn.sent && conn.sent < output.len(), "{}", conn.sent);
    // The client reads until FIN, or until it has more than was sent, and
    // keeps its end open.
    let len = output.len();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while all.len() <= len {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) => panic!("{e} after {} bytes", all.len()),
            }
        }
        (all, client)
    });
    let mut steps = 0;
    while conn.stage != Stage::Draining {
        assert!(!step(&mut conn, &config, &s).unwrap());
        steps += 1;
        assert!(steps < 100, "sent {} of {len}", conn.sent);
    }
    let (got, client) = reader.join().unwrap();
    assert!(
        got == output,
        "{} bytes of {len}, or different ones",
        got.len()
    );
    drop(client);
    assert!(step(&mut conn, &config, &s).unwrap(), "the client closed");
}

/// `step` on its own thread, bounded: a step that never returns (an
/// error retried for ever) fails the test instead of hanging it.
fn step_within_bound(conn: Conn, config: &MetricsConfig, stats: &Arc<ServerStats>) -> (Conn, bool) {
    let (config, stats) = (*config, Arc::clone(stats));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut conn = conn;
        let finished = step(&mut conn, &config, &stats).unwrap_or(true);
        let _ = tx.send((conn, finished));
    });
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("step did not return within {BOUND:?}"))
}

/// A client that resets its connection, at any stage, ends it at once:
/// it does not hold one of the few connections until the deadline, nor
/// keep the endpoint retrying.
#[test]
fn client_reset_while_reading_writing_or_draining_ends_the_connection() {
    let s = stats();
    let config = config(8 * 1024);
    // Reading: half a head, then a reset.
    let (mut conn, mut client) = conn_and_client();
    client.write_all(b"GET /metrics HT").unwrap();
    assert!(!step(&mut conn, &config, &s).unwrap());
    reset(client);
    assert!(step_within_bound(conn, &config, &s).1, "reading");
    // Writing: a response the client does not read, then a reset.
    let (mut conn, client) = conn_and_client();
    conn.output = vec![b'x'; 4 << 20];
    conn.stage = Stage::Writing;
    assert!(!step(&mut conn, &config, &s).unwrap());
    reset(client);
    assert!(step_within_bound(conn, &config, &s).1, "writing");
    // Draining: the response read, then a reset instead of a close.
    let (mut conn, mut client) = conn_and_client();
    client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(!step(&mut conn, &config, &s).unwrap());
    read_to_fin(&mut client);
    reset(client);
    assert!(step_within_bound(conn, &config, &s).1, "draining");
}

fn scrape(addr: SocketAddr) -> Vec<u8> {
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    read_to_fin(&mut client)
}

fn refused(addr: SocketAddr) -> bool {
    matches!(std::net::TcpStream::connect(addr), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
}

/// The endpoint serves scrape after scrape on its own thread; `stop` and
/// dropping the handle each stop it (the port is closed).
#[test]
fn endpoint_serves_scrapes_until_stopped_or_dropped() {
    for stop in [true, false] {
        let server = MetricsServer::bind(config(8 * 1024)).unwrap();
        let addr = server.local_addr();
        let s = stats();
        let handle = server.spawn(Arc::clone(&s)).unwrap();
        assert_eq!(handle.local_addr(), addr);
        let expected = answer(b"GET /metrics HTTP/1.1\r\n\r\n", &s);
        assert_eq!(status(&expected), "HTTP/1.1 200 OK");
        for _ in 0..3 {
            assert!(
                scrape(addr) == expected,
                "{}",
                String::from_utf8_lossy(&scrape(addr))
            );
        }
        if stop {
            handle.stop();
        } else {
            drop(handle);
        }
        assert!(refused(addr), "stopped (stop: {stop})");
    }
}

/// A client that sends nothing is dropped at its deadline: not before,
/// and not never.
#[test]
fn silent_client_is_dropped_at_its_deadline_not_before() {
    let timeout = Duration::from_millis(300);
    let server = MetricsServer::bind(MetricsConfig {
        timeout,
        ..config(8 * 1024)
    })
    .unwrap();
    let addr = server.local_addr();
    let handle = server.spawn(stats()).unwrap();
    let t = Instant::now();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    assert!(read_to_fin(&mut client).is_empty());
    let waited = t.elapsed();
    assert!(waited >= timeout && waited < BOUND, "{waited:?}");
    // The slot is free again: a scrape is answered.
    assert_eq!(status(&scrape(addr)), "HTTP/1.1 200 OK");
    handle.stop();
}

/// Whether every endpoint thread of this process sleeps now (state `S`
/// in `/proc`): where an idle endpoint sleeps is its `epoll_wait`.
/// Linux only, as `/proc/self/task` and real-time signals are.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn every_endpoint_thread_sleeps() -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    tasks.flatten().all(|task| {
        // `TID (NAME) STATE ...`; a thread gone meanwhile reads as empty.
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        !stat.contains("(ricochet-metrics) ") || stat.contains("(ricochet-metrics) S ")
    })
}

/// Signals handled on the endpoint's thread interrupt its wait
/// (`epoll_wait` is never restarted, `SA_RESTART` or not, and the server's
/// signal handlers run on whichever thread the kernel picks): the endpoint
/// waits again, and still answers.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
#[allow(unsafe_code)]
fn signals_interrupting_the_endpoints_wait_do_not_stop_it() {
    use std::os::unix::thread::JoinHandleExt;
    // A signal nothing else in this process uses, with a handler.
    let signal = libc::SIGRTMIN() + 7;
    let handled = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal, Arc::clone(&handled)).unwrap();
    let server = MetricsServer::bind(config(8 * 1024)).unwrap();
    let addr = server.local_addr();
    let handle = server.spawn(stats()).unwrap();
    let thread = handle.thread.as_ref().unwrap();
    for _ in 0..3 {
        // Once the endpoint sleeps in its wait (or is gone), a signal to it.
        let deadline = Instant::now() + BOUND;
        while !every_endpoint_thread_sleeps() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        if thread.is_finished() {
            break;
        }
        handled.store(false, Ordering::SeqCst);
        // SAFETY: the thread is not joined yet, so its id is valid.
        unsafe { libc::pthread_kill(thread.as_pthread_t(), signal) };
        while !handled.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
    assert!(!thread.is_finished(), "the endpoint stopped");
    assert_eq!(status(&scrape(addr)), "HTTP/1.1 200 OK");
    handle.stop();
}
