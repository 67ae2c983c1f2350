//! Limits: `--max-connections`, idle timeouts, and a listener that fails
//! (fd exhaustion) pausing instead of spinning.

use super::*;

#[test]
fn max_connections_rejects_the_next_one_and_keeps_the_first() {
    let server = start(ServerConfig {
        max_connections: Some(3),
        ..tcp_config()
    });
    let addr = server.tcp_addr().unwrap();
    let mut first: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for (i, c) in first.iter_mut().enumerate() {
        round_trip(c, format!("conn {i}").as_bytes());
    }
    let mut extra = connect(addr);
    let _ = extra.write_all(b"let me in");
    let mut b = [0u8; 16];
    match extra.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("connection over the limit must be closed, got {other:?}"),
    }
    wait_stats(&server, IO_TIMEOUT, "rejection counted", |s| {
        s.streams().rejected == 1 && s.connections_open == 3 && s.streams().accepted == 3
    });
    for (i, c) in first.iter_mut().enumerate() {
        round_trip(c, format!("still {i}").as_bytes());
    }
    // A slot freed is a slot usable again.
    drop(first.pop());
    wait_stats(&server, IO_TIMEOUT, "slot freed", |s| {
        s.connections_open == 2
    });
    let mut again = connect(addr);
    round_trip(&mut again, b"my turn");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn idle_connection_closed_after_idle_timeout_busy_one_kept() {
    let server = start(ServerConfig {
        idle_timeout: Some(Duration::from_millis(500)),
        ..tcp_config()
    });
    let addr = server.tcp_addr().unwrap();
    let mut idle = connect(addr);
    round_trip(&mut idle, b"then silence");
    let mut busy = connect(addr);
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1000) {
        round_trip(&mut busy, b"tick");
        std::thread::sleep(Duration::from_millis(20)); // traffic pattern, not synchronisation
    }
    let back = read_to_eof(&mut idle).expect("clean close");
    assert!(back.is_empty());
    assert!(t.elapsed() < Duration::from_secs(5));
    let s = wait_stats(&server, IO_TIMEOUT, "idle close counted", |s| {
        s.streams().closed.idle_timeout == 1
    });
    assert_eq!(s.streams().aborted.total(), 0);
    round_trip(&mut busy, b"still open");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn idle_timeout_none_never_closes_while_a_short_one_does() {
    // The same silence closes a connection under a 200 ms idle timeout and
    // leaves it open with none (what `--idle-timeout 0` configures).
    let short = start(ServerConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..tcp_config()
    });
    let never = start(ServerConfig {
        idle_timeout: None,
        ..tcp_config()
    });
    let mut a = connect(short.tcp_addr().unwrap());
    let mut b = connect(never.tcp_addr().unwrap());
    round_trip(&mut a, b"x");
    round_trip(&mut b, b"x");
    let t = Instant::now();
    assert_eq!(
        read_to_eof(&mut a).unwrap(),
        b"",
        "closed by the idle timeout"
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_silent(&mut b, Duration::from_millis(400));
    round_trip(&mut b, b"still open");
    for s in [short, never] {
        s.shutdown();
        s.join().unwrap();
    }
}

/// A listener that breaks under the server (shut down here, so every
/// accept fails with `EINVAL`) pauses accepting with back-off (100 ms,
/// then doubling), as running out of descriptors does, and counts each
/// failure: it never re-arms at once and spins.
#[test]
fn broken_listener_pauses_accepting_instead_of_spinning() {
    use ricochet::serve::{InheritedSocket, Server};
    use std::os::fd::AsRawFd;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = listener.try_clone().unwrap();
    let config = ServerConfig {
        threads: 1,
        ..ServerConfig::default()
    };
    let server = Server::bind_with(
        serve_support::with_io(config),
        vec![InheritedSocket::Tcp(listener)],
    )
    .expect("bind")
    .spawn()
    .expect("spawn");
    serve_support::check_io(&server);
    round_trip(&mut connect(server.tcp_addr().unwrap()), b"served");
    let broken = Instant::now();
    assert_eq!(
        // SAFETY: shutdown(2) on a descriptor this test owns (a duplicate
        // of the inherited listener); no memory changes hands.
        unsafe { libc::shutdown(ours.as_raw_fd(), libc::SHUT_RDWR) },
        0,
        "shutdown: {}",
        io::Error::last_os_error()
    );
    wait_stats(&server, IO_TIMEOUT, "three accept errors", |s| {
        s.accept_errors >= 3
    });
    // Paused 100 ms after the first error and 200 ms after the second: a
    // third error any sooner means the listener did not wait.
    let took = broken.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "three accept errors {took:?} after the listener broke: no back-off"
    );
    server.shutdown();
    server.join_within(STOP_TIMEOUT).expect("join");
}
