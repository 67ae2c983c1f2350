//! Protocol violations: an overlong line or oversized frame aborts that
//! session only, after the whole units before it are echoed.

use super::*;

#[test]
fn frames_oversized_frame_aborts_that_session_only() {
    let server = start(ServerConfig {
        mode: Mode::Frames,
        buffer_size: BufferSize::K4,
        ..tcp_config()
    });
    let addr = server.tcp_addr().unwrap();
    let mut good = connect(addr);
    round_trip(&mut good, &[0, 3, b'a', b'b', b'c']);
    let mut bad = connect(addr);
    bad.write_all(&[0xFF, 0xFF, 1, 2, 3]).unwrap(); // announces 65535 bytes > 4096
    expect_reset(&mut bad);
    let s = wait_stats(&server, IO_TIMEOUT, "abort counted", |s| {
        s.streams().aborted.frame_too_large == 1 && s.streams().aborted.total() == 1
    });
    assert_eq!(s.streams().aborted.peer_reset, 0);
    round_trip(&mut good, &[0, 2, b'o', b'k']);
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn frames_largest_frame_is_echoed_with_a_70000_byte_buffer_from_the_cli() {
    // 2 + 65535 bytes: no buffer on the old fixed menu (largest 64 KiB) held it.
    let server = Proc::serve(&[
        "--tcp",
        "127.0.0.1:0",
        "--mode",
        "frames",
        "--buffer-size",
        "70000",
    ]);
    let addr: std::net::SocketAddr = server.listening(1)[0].1.parse().unwrap();
    let mut frame = vec![0xFF, 0xFF];
    frame.extend(payload(7, 65535));
    let mut c = connect(addr);
    c.write_all(&frame).unwrap();
    let mut back = vec![0u8; frame.len()];
    c.read_exact(&mut back).unwrap();
    assert!(back == frame, "the 65537-byte frame came back altered");
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c).unwrap(), b"", "then a clean FIN");
}

#[test]
fn lines_overlong_line_aborts_that_session_only() {
    let server = start(ServerConfig {
        mode: Mode::Lines,
        buffer_size: BufferSize::K1,
        ..tcp_config()
    });
    let addr = server.tcp_addr().unwrap();
    let mut good = connect(addr);
    round_trip(&mut good, b"short line\n");
    let mut bad = connect(addr);
    let _ = bad.write_all(&[b'x'; 5000]); // no newline, longer than 1024
    expect_reset(&mut bad);
    wait_stats(&server, IO_TIMEOUT, "abort counted", |s| {
        s.streams().aborted.line_too_long == 1
    });
    round_trip(&mut good, b"another\n");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn lines_whole_lines_before_an_overlong_one_are_echoed_then_reset() {
    // One write: the line before the overlong one is echoed (and counted
    // as such) before the reset, on io_uring too, where the echo waits in
    // the connection's output queue when the abort comes.
    let server = start(ServerConfig {
        mode: Mode::Lines,
        buffer_size: BufferSize::K1,
        ..tcp_config()
    });
    let mut c = connect(server.tcp_addr().unwrap());
    let mut sent = b"ok\n".to_vec();
    sent.extend([b'x'; 1100]);
    c.write_all(&sent).unwrap();
    let mut back = [0u8; 3];
    c.read_exact(&mut back)
        .expect("the whole line before the overlong one");
    assert_eq!(&back, b"ok\n");
    expect_reset(&mut c);
    let s = wait_stats(&server, IO_TIMEOUT, "abort counted", |s| {
        s.streams().aborted.line_too_long == 1
    });
    assert_eq!(s.streams().bytes_out, 3, "bytes out as the peer read them");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn frames_whole_frames_before_an_oversized_header_are_echoed_then_reset() {
    // What is echoed must not depend on how the stream was split into
    // reads: a whole frame read together with the bad header behind it is
    // echoed, as it is when it arrives alone.
    let server = start(ServerConfig {
        mode: Mode::Frames,
        buffer_size: BufferSize::K4,
        ..tcp_config()
    });
    let mut c = connect(server.tcp_addr().unwrap());
    c.write_all(&[0, 2, b'o', b'k', 0xFF, 0xFF, 1]).unwrap();
    let mut back = [0u8; 4];
    c.read_exact(&mut back)
        .expect("the whole frame before the bad header");
    assert_eq!(&back, &[0, 2, b'o', b'k']);
    expect_reset(&mut c);
    let s = wait_stats(&server, IO_TIMEOUT, "abort counted", |s| {
        s.streams().aborted.frame_too_large == 1
    });
    assert_eq!(s.streams().bytes_out, 4);
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// A client with a small receive window sends `whole` then `tail` (which
/// aborts the session) and its FIN, and reads nothing until the server has
/// counted the abort: it must still read every byte of `whole`, then the
/// reset. The reset must not discard the echo the kernel still holds.
fn slow_reader_gets_whole_units_before_the_reset(
    mode: Mode,
    whole: Vec<u8>,
    tail: &[u8],
    aborted: fn(&ricochet::core::AbortCounts) -> u64,
) {
    let server = start(ServerConfig {
        mode,
        buffer_size: BufferSize::K4,
        ..tcp_config()
    });
    let addr = server.tcp_addr().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // Set before the connect, so the window it advertises stays small.
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    sock.connect_timeout(&addr.into(), IO_TIMEOUT).unwrap();
    let mut c: std::net::TcpStream = sock.into();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut sent = whole.clone();
    sent.extend_from_slice(tail);
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        // The reset may already have come (the FIN is not what is tested).
        let _ = w.shutdown(Shutdown::Write);
    });
    wait_stats(&server, IO_TIMEOUT, "abort counted", |s| {
        aborted(&s.streams().aborted) == 1
    });
    let mut back = Vec::with_capacity(whole.len());
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match c.read(&mut buf) {
            Ok(0) => break "a clean EOF".to_string(),
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) => break e.to_string(),
        }
    };
    writer.join().unwrap();
    assert!(
        back == whole,
        "{} of the {} bytes of whole units came back before {end}",
        back.len(),
        whole.len()
    );
    assert!(end.contains("reset"), "then a reset, not {end}");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn frames_truncated_frame_behind_echo_a_slow_reader_has_not_read_is_reset_after_it() {
    let mut frame = vec![0, 60];
    frame.extend([b'f'; 60]);
    slow_reader_gets_whole_units_before_the_reset(
        Mode::Frames,
        frame.repeat(40_000),
        &[0, 9, b'a', b'b', b'c'],
        |a| a.truncated_frame,
    );
}

#[test]
fn lines_overlong_line_behind_echo_a_slow_reader_has_not_read_is_reset_after_it() {
    let mut line = vec![b'l'; 61];
    line.push(b'\n');
    slow_reader_gets_whole_units_before_the_reset(
        Mode::Lines,
        line.repeat(40_000),
        &[b'x'; 5000],
        |a| a.line_too_long,
    );
}
