//! Many connections at once, clients that never read (backpressure),
//! half-close and resets from the client.

use super::*;

#[test]
fn thousand_concurrent_connections_each_get_their_own_bytes_back() {
    let server = start(tcp_config());
    let addr = server.tcp_addr().unwrap();
    let mut conns: Vec<_> = (0..1000).map(|_| connect(addr)).collect();
    wait_stats(&server, IO_TIMEOUT, "1000 open connections", |s| {
        s.connections_open == 1000
    });
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(&payload(i as u64, 100)).unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let mut back = [0u8; 100];
        c.read_exact(&mut back).unwrap();
        assert_eq!(
            back[..],
            payload(i as u64, 100)[..],
            "connection {i} got someone else's bytes"
        );
    }
    drop(conns);
    wait_stats(&server, IO_TIMEOUT, "all closed", |s| {
        s.connections_open == 0 && s.streams().closed.total() == 1000
    });
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn client_that_never_reads_is_throttled_and_others_still_served() {
    let server = start(ServerConfig {
        buffer_size: BufferSize::K4,
        ..tcp_config()
    });
    let addr = server.tcp_addr().unwrap();
    let mut hog = connect(addr);
    hog.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = payload(1, 64 * 1024);
    let mut sent = Vec::new();
    // Write until the server stops reading (our writes block): bounded by the timeout.
    loop {
        match hog.write(&chunk) {
            Ok(n) => sent.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => panic!("write failed: {e}"),
        }
        assert!(
            sent.len() < 256 * 1024 * 1024,
            "the server never stopped reading"
        );
    }
    let written = sent.len();
    // What the server holds for it: the session's buffer, and on io_uring
    // the connection's own queues too (received, 64 KiB and one more
    // receive's worth; output, 64 KiB), which the gauge counts.
    let most = match server.io() {
        IoBackend::Uring => 4096 + 3 * 64 * 1024,
        _ => 4096,
    };
    let stats = server.stats();
    assert!(
        stats.streams().buffered <= most,
        "server holds more than {most} bytes for one peer: {}",
        stats.streams().buffered
    );
    if server.io() == IoBackend::Uring {
        assert!(
            stats.streams().buffered > 4096,
            "the gauge counts io_uring's queues, not only the session's buffer: {}",
            stats.streams().buffered
        );
    }
    assert!(
        stats.streams().bytes_in < written as u64,
        "the server must stop reading: read {} of {written}",
        stats.streams().bytes_in
    );
    // Another client is served promptly.
    let mut other = connect(addr);
    let t = Instant::now();
    round_trip(&mut other, b"still here?");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "other client waited {:?}",
        t.elapsed()
    );
    // Memory stays bounded while the hog keeps pushing.
    if let Ok(n) = hog.write(&chunk) {
        sent.extend_from_slice(&chunk[..n]);
    }
    assert!(server.stats().streams().buffered <= most);
    // Once the hog reads, everything it wrote comes back in order.
    hog.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    hog.shutdown(Shutdown::Write).unwrap();
    let back = read_to_eof(&mut hog).unwrap();
    assert_eq!(back.len(), sent.len());
    assert!(back == sent, "echo of the hog differs");
    // Nothing is held once every connection ended.
    drop(other);
    wait_stats(&server, IO_TIMEOUT, "both connections ended", |s| {
        s.streams().active() == 0
    });
    assert_eq!(server.stats().streams().buffered, 0);
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn hundred_clients_that_never_read_cannot_keep_a_new_client_waiting() {
    // On io_uring the workers' receive buffers are shared: what stalled
    // connections keep of them must leave room for everyone else (they
    // give the ring buffers back, copied, once it runs short; RELIABILITY.md,
    // "Stalled peers and the shared receive ring"). Without that, the new
    // client's receive waited past the timeout in about 2 runs of 5.
    let server = start(tcp_config());
    let addr = server.tcp_addr().unwrap();
    let chunk = payload(7, 64 * 1024);
    let mut hogs: Vec<_> = (0..100)
        .map(|_| {
            let s = connect(addr);
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // Push until no hog gets a byte in: the server reads none of them any
    // more (their echo fills their own receive queues, never read).
    let mut rounds = 0;
    loop {
        let mut took = false;
        for h in &mut hogs {
            match h.write(&chunk) {
                Ok(_) => took = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("hog write failed: {e}"),
            }
        }
        rounds += 1;
        if !took {
            break;
        }
        assert!(rounds < 1000, "the server never stopped reading the hogs");
    }
    for i in 0..3 {
        let mut other = connect(addr);
        round_trip(&mut other, format!("still served? {i}").as_bytes());
    }
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn half_closed_client_gets_everything_back_then_eof() {
    let server = start(tcp_config());
    let mut c = connect(server.tcp_addr().unwrap());
    let data = payload(9, 300_000);
    let mut w = c.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        // The reset may already have come (the FIN is not what is tested).
        let _ = w.shutdown(Shutdown::Write);
    });
    let back = read_to_eof(&mut c).expect("clean EOF, not a reset");
    writer.join().unwrap();
    assert!(
        back == data,
        "got {} of {} bytes, or different ones",
        back.len(),
        data.len()
    );
    wait_stats(&server, IO_TIMEOUT, "graceful close counted", |s| {
        s.streams().closed.total() == 1 && s.streams().aborted.total() == 0
    });
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn client_reset_mid_stream_is_counted_and_others_unaffected() {
    let server = start(tcp_config());
    let addr = server.tcp_addr().unwrap();
    let mut bystander = connect(addr);
    round_trip(&mut bystander, b"before");
    let mut c = connect(addr);
    round_trip(&mut c, b"some data");
    c.write_all(&payload(2, 10_000)).unwrap();
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c); // RST
    let s = wait_stats(&server, IO_TIMEOUT, "the reset counted", |s| {
        s.streams().aborted.peer_reset == 1 && s.streams().aborted.total() == 1
    });
    assert_eq!(
        s.streams().closed.total(),
        0,
        "a reset is an abort, not a close"
    );
    round_trip(&mut bystander, b"after");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// A reset that comes while the server only waits to receive (every echo
/// read, nothing to send) reaches it through the receive alone: it is a
/// reset all the same, never a clean end.
#[test]
fn client_reset_with_every_echo_read_is_counted_as_a_reset() {
    let server = start(tcp_config());
    let addr = server.tcp_addr().unwrap();
    let mut c = connect(addr);
    round_trip(&mut c, b"all of it read");
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c); // RST
    let s = wait_stats(&server, IO_TIMEOUT, "the connection ended", |s| {
        s.streams().ended() == 1
    });
    let ends = (s.streams().aborted.peer_reset, s.streams().closed.total());
    assert_eq!(ends, (1, 0), "a reset is an abort, not a close: {s:?}");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}
