//! The link's plaintext I/O: every byte once, in order, and the end of
//! the stream told apart from a reset.

use std::io::{Read as _, Write as _};
use std::sync::mpsc;

use super::*;

/// Every read until the end (`Ok(0)`), `size` bytes at a time at most;
/// more than `most` bytes in all fails.
fn read_to_end(link: &mut TlsLink, size: usize, most: usize) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; size];
    loop {
        match read(link, &mut buf)? {
            0 => return Ok(all),
            n => all.extend_from_slice(&buf[..n]),
        }
        assert!(all.len() <= most, "more than the {most} bytes sent");
    }
}

/// Blocks (read timeout [`WAIT`]) until the client's FIN (or an error).
fn until_client_closes(sock: &mut std::net::TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(1..) = sock.read(&mut buf) {}
}

#[test]
fn records_longer_than_the_buffer_are_read_whole_in_order_then_the_end() {
    // Three records (two writes, each possibly split), read 7 bytes at a
    // time: a full buffer returns at once, and nothing is lost or repeated.
    let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let (addr, srv) = server_then(move |conn, sock| {
        conn.writer().write_all(&sent[..100]).expect("data");
        conn.writer().write_all(&sent[100..]).expect("data");
        conn.send_close_notify();
        while conn.wants_write() {
            conn.write_tls(sock).expect("records");
        }
        until_client_closes(sock);
    });
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    assert_eq!(
        read_to_end(&mut link, 7, data.len()).expect("the data"),
        data
    );
    drop(link);
    srv.join().expect("server");
}

/// The server's side of a truncated stream: `bye`, then a FIN without
/// `close_notify`, then it waits for the client to close.
fn bye_then_fin(conn: &mut ServerConnection, sock: &mut std::net::TcpStream) {
    conn.writer().write_all(b"bye").expect("data");
    while conn.wants_write() {
        conn.write_tls(sock).expect("records");
    }
    sock.shutdown(Shutdown::Write).expect("FIN");
    until_client_closes(sock);
}

#[test]
fn fin_without_close_notify_after_data_reads_the_data_then_the_end() {
    // A truncated stream: the data read so far, then the end (not an
    // error, and not a wait for more).
    let (addr, srv) = server_then(bye_then_fin);
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    assert_eq!(
        read_to_end(&mut link, 64, 3).expect("data, then the end"),
        b"bye"
    );
    drop(link);
    srv.join().expect("server");
}

// POLLRDHUP (the FIN seen without reading) is not everywhere.
#[cfg(target_os = "linux")]
#[test]
fn fin_without_close_notify_arriving_with_the_data_says_the_end_is_pending() {
    // The data and the FIN both arrived before the read: the read that
    // returns the data has seen the end, which no readiness will announce.
    let (addr, srv) = server_then(bye_then_fin);
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    until_polled(link.socket(), libc::POLLRDHUP, "the FIN");
    let mut buf = [0u8; 64];
    let n = link.read(&mut buf).expect("the data");
    assert_eq!(&buf[..n], b"bye");
    assert!(link.read_pending(), "the end already known");
    assert_eq!(link.read(&mut buf).expect("the end"), 0);
    assert!(!link.read_pending());
    drop(link);
    srv.join().expect("server");
}

#[test]
fn shutdown_write_sends_close_notify_then_fin() {
    // The server sees a clean end of the probe's stream: its close_notify
    // (rustls reads `Ok(0)`, not `UnexpectedEof`), then the FIN.
    let (ended, end) = mpsc::channel::<String>();
    let (addr, srv) = server_then(move |conn, sock| {
        let seen = loop {
            match conn.read_tls(sock) {
                Ok(0) => break "FIN".to_owned(),
                Ok(_) => {}
                Err(e) => break format!("no FIN: {e}"),
            }
            conn.process_new_packets().expect("records");
        };
        let closed = match conn.reader().read(&mut [0u8; 64]) {
            Ok(0) => "close_notify".to_owned(),
            other => format!("no close_notify: {other:?}"),
        };
        ended.send(format!("{closed}, {seen}")).expect("told");
    });
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    link.shutdown_write().expect("shutdown");
    let seen = until("the server's view", || end.try_recv().ok());
    assert_eq!(seen, "close_notify, FIN");
    srv.join().expect("server");
}

#[test]
fn tls13_write_failing_before_acceptance_with_nothing_unread_reports_the_error() {
    // TLS 1.3, done on the probe's side, the server silent (no session
    // ticket): a write failing (the probe's own side shut) looks for a
    // refusal behind it, finds the socket empty, and reports the failure.
    let mut config = (*config(&rustls::version::TLS13, false)).clone();
    config.send_tls13_tickets = 0;
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (done, wait) = mpsc::channel::<()>();
    let srv = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("accept");
        sock.set_read_timeout(Some(WAIT)).expect("read timeout");
        let mut conn = ServerConnection::new(config).expect("server session");
        conn.complete_io(&mut sock).expect("handshake");
        // Open and silent (its close would make the socket readable)
        // until the test ends, the sender dropped if it panics.
        let _ = wait.recv();
    });
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    assert!(!link.handshake_accepted());
    link.shutdown_write().expect("shutdown");
    let e = link.write(b"late").expect_err("the probe's side is shut");
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e:?}");
    assert!(!link.handshake_accepted());
    done.send(()).expect("the server");
    drop(link);
    srv.join().expect("server");
}

/// A link whose server sent `data` (perhaps none), then reset the
/// connection; returned once the reset has arrived, nothing read yet.
fn link_reset_after(data: &'static [u8]) -> TlsLink {
    let (addr, srv) = server_then(move |conn, sock| {
        // Sent at once (neither the data nor what is left of the handshake
        // held back for an ACK), then the reset.
        sock.set_nodelay(true).expect("nodelay");
        conn.writer().write_all(data).expect("data");
        while conn.wants_write() {
            conn.write_tls(sock).expect("records");
        }
        socket2::SockRef::from(&*sock)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
    });
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    srv.join().expect("server");
    until_polled(link.socket(), libc::POLLHUP | libc::POLLERR, "the reset");
    link
}

#[test]
fn reset_after_data_reads_the_data_then_the_reset_not_an_end() {
    // The data and the server's reset both arrived before the read: the
    // data, then the reset itself (the kernel reports it once; the next
    // read of the socket says end of stream), never a clean end.
    let mut link = link_reset_after(b"bye");
    let mut buf = [0u8; 64];
    let n = link.read(&mut buf).expect("the data");
    assert_eq!(&buf[..n], b"bye");
    assert!(link.read_pending(), "the reset already known");
    let e = link.read(&mut buf).expect_err("the reset");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}");
}

#[test]
fn reset_before_any_data_is_read_as_the_reset_not_an_end() {
    let mut link = link_reset_after(b"");
    let e = link.read(&mut [0u8; 64]).expect_err("the reset");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}");
    assert!(!link.read_pending());
}

#[test]
fn bad_record_behind_data_in_one_read_is_the_next_reads_error() {
    // rustls reads at most 4096 bytes of an empty buffer per `read_tls`:
    // records filling exactly that are taken and decrypted first, within
    // the same `read()` the record behind them fails. The data is
    // returned; the failure must not be lost with the end said pending.
    let (plain_tx, plain_rx) = mpsc::channel();
    let (addr, srv) = server_then(move |conn, sock| {
        let mut wire = Vec::new();
        conn.writer().write_all(b"x").expect("data");
        conn.write_tls(&mut wire).expect("a record");
        let overhead = wire.len() - 1;
        let rest = vec![b'y'; 4096 - wire.len() - overhead];
        conn.writer().write_all(&rest).expect("data");
        while conn.wants_write() {
            conn.write_tls(&mut wire).expect("records");
        }
        assert_eq!(wire.len(), 4096, "two records, one read's worth");
        // Application data whose tag cannot verify.
        wire.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
        wire.extend_from_slice(&[0u8; 32]);
        plain_tx.send(1 + rest.len()).expect("the test");
        sock.write_all(&wire).expect("in one write");
        until_client_closes(sock);
    });
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    let plain = plain_rx.recv_timeout(WAIT).expect("the server's records");
    until_polled(link.socket(), libc::POLLIN, "the records");
    let mut buf = vec![0u8; 8192];
    let n = link.read(&mut buf).expect("the data before the bad record");
    assert_eq!(n, plain);
    assert!(link.read_pending(), "the failure already known");
    let e = link.read(&mut buf).expect_err("the bad record");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e:?}");
    drop(link);
    srv.join().expect("server");
}

#[test]
fn write_past_the_record_buffer_limit_takes_all_the_socket_has_room_for() {
    // rustls encrypts at most its buffer limit per call; the link pushes
    // those records out and goes on, so one write takes everything the
    // socket has room for, not one buffer's worth (8 KiB and its record
    // headers fit a fresh loopback connection many times over).
    let data: Vec<u8> = (0..8_192u32).map(|i| (i % 253) as u8).collect();
    let expected = data.clone();
    let (addr, srv) = server_then(move |conn, sock| {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        while got.len() < expected.len() {
            let n = conn.read_tls(sock).expect("records");
            assert!(n > 0, "closed after {} bytes", got.len());
            conn.process_new_packets().expect("records");
            while let Ok(n @ 1..) = conn.reader().read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(got, expected, "every byte once, in order");
        until_client_closes(sock);
    });
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    link.conn
        .as_mut()
        .expect("connected")
        .set_buffer_limit(Some(1024));
    assert_eq!(link.write(&data).expect("write"), data.len());
    drop(link);
    srv.join().expect("server");
}
