//! `ricochet serve` with a TLS listener, driven by a rustls client: echo in
//! every mode, half-close with close_notify, backpressure, the handshake
//! timeout, refusal of non-TLS clients, certificates, resumption, and the
//! counters of each. Certificates are made by the test (rcgen).

mod tls_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use ricochet::core::Mode;
use ricochet::serve::{BindError, BufferSize, Server, ServerConfig, TlsConfig};
use tls_support::{Client, Pki, TlsServer, WAIT, client_config, data, read_raw_to_end};

#[test]
fn tls_raw_echo_then_half_close_gets_close_notify_and_fin() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    let msg = data(10_000, 1);
    c.send(&msg);
    assert_eq!(c.recv(msg.len()), msg);
    c.send(b"tail");
    c.half_close();
    // The echo of what came before our close_notify, then the server's
    // close_notify (a clean end: read_to_end is Ok, not UnexpectedEof).
    assert_eq!(c.read_to_close().expect("clean TLS close"), b"tail");
    srv.wait_stats("a graceful TLS close", |s| {
        s.tls.closed.peer_finished == 1 && s.connections_open == 0
    });
    let s = srv.handle().stats();
    assert_eq!(s.tls_handshakes.completed, 1);
    assert_eq!((s.tls.bytes_in, s.tls.bytes_out), (10_004, 10_004));
    assert_eq!(s.tcp.accepted, 0, "TLS connections count as tls, not tcp");
}

#[test]
fn tls_lines_mode_echoes_complete_lines_and_the_rest_at_close() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Lines, |_| {});
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.send(b"first line\nsecond");
    assert_eq!(c.recv(11), b"first line\n");
    c.half_close();
    assert_eq!(c.read_to_close().expect("clean close"), b"second");
}

#[test]
fn tls_frames_mode_echoes_whole_frames() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Frames, |_| {});
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.send(&[0, 5, b'h', b'e', b'l', b'l', b'o', 0, 3, b'a']);
    assert_eq!(c.recv(7), [0, 5, b'h', b'e', b'l', b'l', b'o']);
    c.send(b"bc");
    assert_eq!(c.recv(5), [0, 3, b'a', b'b', b'c']);
    c.half_close();
    assert_eq!(c.read_to_close().expect("clean close"), b"");
}

#[test]
fn tls_messages_larger_than_the_session_buffer_and_records_come_back_whole() {
    // 256 KiB messages through a 4 KiB session buffer: many TLS records per
    // message, backpressure inside every one.
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    for i in 0..4 {
        let msg = data(256 * 1024, i);
        // Interleave: send in pieces small enough for the socket buffers,
        // read back as we go.
        let mut back = Vec::with_capacity(msg.len());
        for chunk in msg.chunks(32 * 1024) {
            c.send(chunk);
            back.extend_from_slice(&c.recv(chunk.len()));
        }
        assert!(back == msg, "message {i} differs");
    }
    c.half_close();
    assert_eq!(c.read_to_close().expect("clean close"), b"");
}

#[test]
fn tls_tls12_client_is_served_too() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let base = client_config(&pki.ca, None);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("TLS 1.2")
    .with_root_certificates(base_roots(&pki))
    .with_no_client_auth();
    drop(base);
    let mut c = Client::connect(srv.tls, Arc::new(config));
    c.send(b"over tls 1.2");
    assert_eq!(c.recv(12), b"over tls 1.2");
    assert_eq!(
        c.tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    c.half_close();
    assert_eq!(c.read_to_close().expect("clean close"), b"");
}

fn base_roots(pki: &Pki) -> rustls::RootCertStore {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca).expect("CA") {
        roots.add(c.expect("cert")).expect("add");
    }
    roots
}

#[test]
fn tls_plain_tcp_client_is_refused_with_an_alert_then_fin_and_tcp_stays_plain() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut sock = TcpStream::connect(srv.tls).expect("connect");
    sock.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
    // A fatal alert record (content type 21), then FIN: read_to_end is Ok
    // (no reset, no hang).
    let got = read_raw_to_end(&mut sock).expect("clean close, not a reset");
    assert!(
        got.len() == 7 && got[0] == 0x15 && got[5] == 2,
        "expected one fatal alert record, got {got:02x?}"
    );
    srv.wait_stats("the refusal counted", |s| {
        s.tls_handshakes.failed.bad_record == 1 && s.connections_open == 0
    });
    let s = srv.handle().stats();
    assert_eq!(s.tls_handshakes.completed, 0);
    assert_eq!(s.tls.accepted, 1);
    // The plain TCP listener of the same server is untouched by TLS.
    let mut plain = TcpStream::connect(srv.tcp).expect("connect tcp");
    plain.write_all(b"plain").expect("send");
    plain.shutdown(std::net::Shutdown::Write).expect("FIN");
    assert_eq!(read_raw_to_end(&mut plain).expect("echo"), b"plain");
}

#[test]
fn tls_silent_client_is_closed_at_the_handshake_timeout() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |c| {
        if let Some(t) = &mut c.tls {
            t.handshake_timeout = Duration::from_millis(300);
        }
    });
    let started = std::time::Instant::now();
    let mut sock = TcpStream::connect(srv.tls).expect("connect");
    // Nothing sent: the server closes (FIN, no alert) once the timeout passes.
    let got = read_raw_to_end(&mut sock).expect("clean close at the timeout");
    assert!(got.is_empty(), "{got:02x?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    srv.wait_stats("the timeout counted", |s| {
        s.tls_handshakes.failed.timeout == 1 && s.tls.aborted.timed_out == 1
    });
}

#[test]
fn tls_client_closing_during_the_handshake_is_counted_as_closed() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut sock = TcpStream::connect(srv.tls).expect("connect");
    sock.shutdown(std::net::Shutdown::Write).expect("FIN");
    assert_eq!(read_raw_to_end(&mut sock).expect("FIN back"), b"");
    srv.wait_stats("the early close counted", |s| {
        s.tls_handshakes.failed.closed == 1 && s.connections_open == 0
    });
}

#[test]
fn tls_client_distrusting_our_certificate_is_counted_as_certificate_failure() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut c = Client::connect(srv.tls, client_config(&pki.other_ca, None));
    let e = c
        .handshake()
        .expect_err("our certificate is not from other_ca");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    srv.wait_stats("the certificate failure counted", |s| {
        s.tls_handshakes.failed.certificate == 1 && s.connections_open == 0
    });
}

#[test]
fn tls_client_ca_requires_a_certificate_from_that_ca() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |c| {
        if let Some(t) = &mut c.tls {
            t.client_ca = Some(pki.ca.clone());
        }
    });
    // Without a client certificate: refused (TLS 1.3 reports it after the
    // client's Finished, on the first read).
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    let refused = c.handshake().and_then(|()| {
        c.tls.write_all(b"x")?;
        c.tls.flush()?;
        let mut b = [0u8; 1];
        c.tls.read(&mut b).map(drop)
    });
    assert!(refused.is_err(), "a client without certificate was served");
    srv.wait_stats("the missing client certificate counted", |s| {
        s.tls_handshakes.failed.certificate == 1
    });
    // With one: served.
    let mut c = Client::connect(
        srv.tls,
        client_config(&pki.ca, Some((&pki.client_cert, &pki.client_key))),
    );
    c.send(b"mutual");
    assert_eq!(c.recv(6), b"mutual");
    c.half_close();
    assert_eq!(c.read_to_close().expect("clean close"), b"");
    assert_eq!(srv.handle().stats().tls_handshakes.completed, 1);
}

#[test]
fn tls_second_connection_resumes_the_first_session() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let config = client_config(&pki.ca, None);
    for round in 0..2 {
        let mut c = Client::connect(srv.tls, Arc::clone(&config));
        c.send(b"again");
        assert_eq!(c.recv(5), b"again");
        c.half_close();
        assert_eq!(
            c.read_to_close().expect("clean close"),
            b"",
            "round {round}"
        );
    }
    srv.wait_stats("two handshakes", |s| s.tls_handshakes.completed == 2);
    assert_eq!(srv.handle().stats().tls_handshakes.resumed, 1);
}

#[test]
fn tls_idle_timeout_closes_with_close_notify() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |c| {
        c.idle_timeout = Some(Duration::from_millis(300));
    });
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.send(b"x");
    assert_eq!(c.recv(1), b"x");
    // The server's close_notify makes read_to_end end Ok (not UnexpectedEof).
    assert_eq!(c.read_to_close().expect("close_notify"), b"");
    srv.wait_stats("the idle close", |s| s.tls.closed.idle_timeout == 1);
}

/// A graceful shutdown lets an open TLS connection go on to its end, as
/// plain TCP does. Beside io_uring the TLS listener's epoll loop runs
/// inside an io_uring worker: that worker must not end (and take the loop
/// with it, resetting the TLS connection) when its own connections are
/// gone, only once the loop has drained too.
#[test]
fn tls_connection_open_at_a_graceful_shutdown_is_echoed_until_it_ends() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |c| c.grace = Duration::from_secs(60));
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.send(b"before");
    assert_eq!(c.recv(6), b"before");
    srv.handle().shutdown();
    // The drain has begun once the TLS listener is closed (bounded).
    let start = std::time::Instant::now();
    while TcpStream::connect(srv.tls).is_ok() {
        assert!(start.elapsed() < WAIT, "the TLS listener stays open");
        std::thread::sleep(Duration::from_millis(5));
    }
    c.send(b"during the drain");
    assert_eq!(c.recv(16), b"during the drain");
    c.half_close();
    assert_eq!(c.read_to_close().expect("a clean TLS close"), b"");
    // The probes above may have been accepted (and closed) too, but never
    // completed a handshake.
    srv.wait_stats("the TLS connection's end", |s| {
        s.tls_handshakes.completed == 1 && s.connections_open == 0
    });
    let s = srv.handle().stats();
    assert!(s.tls.closed.peer_finished >= 1, "{s:#?}");
    assert_eq!(s.tls.aborted.local, 0, "{s:#?}");
    assert_eq!((s.tls.bytes_in, s.tls.bytes_out), (22, 22));
}

#[test]
fn tls_peer_that_stops_reading_hits_the_drain_timeout_with_bounded_buffers() {
    // If TLS writes took everything (an unbounded record buffer), the
    // session would never hold pending echo and the drain timeout could
    // not fire: the client would stream its whole budget unharmed.
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |c| {
        c.drain_timeout = Some(Duration::from_millis(300));
    });
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.handshake().expect("handshake");
    c.tls.sock.set_write_timeout(Some(WAIT)).expect("timeout");
    let chunk = data(64 * 1024, 7);
    let mut sent = 0usize;
    let failed = loop {
        if sent >= 256 << 20 {
            break false;
        }
        match c.tls.write_all(&chunk).and_then(|()| c.tls.flush()) {
            Ok(()) => sent += chunk.len(),
            Err(_) => break true,
        }
    };
    assert!(
        failed,
        "sent {sent} bytes without reading and the server never gave up"
    );
    srv.wait_stats("the drain timeout", |s| s.tls.aborted.drain_timeout == 1);
}

/// The session handed all its echo to rustls, whose records the socket
/// has not taken yet (the client reads nothing): the client's close_notify
/// ends the session, and the close waits for those records and its own
/// close_notify to leave before the socket is closed. A close that took
/// rustls's queue for empty would drop them: bytes lost, no close_notify.
#[test]
fn tls_half_close_while_rustls_holds_records_delivers_them_then_close_notify() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.handshake().expect("handshake");
    let chunk = data(CHUNK, 11);
    let held = fill_rustls_queue(&srv, &mut c, &chunk);
    let sent = srv.handle().stats().tls.bytes_in;
    c.half_close();
    // Read nothing before the server acted on our close_notify: its own
    // queues behind the held records (or it let the connection go).
    srv.wait_stats("the close_notify read", |s| {
        s.tls.buffered > held || s.connections_open == 0
    });
    let back = c.read_to_close().expect("every record, then close_notify");
    assert_eq!(back.len() as u64, sent, "echo lost at the close");
    assert!(back.chunks(CHUNK).all(|b| b == chunk), "echo differs");
    srv.wait_stats("a graceful TLS close", |s| {
        s.tls.closed.peer_finished == 1 && s.connections_open == 0
    });
}

/// A client whose echo rustls holds (the socket full: the client reads
/// nothing), after its close_notify: the session closed, its close is not
/// counted until those records leave. The client then resets: they never
/// will, so the session counts as reset by the peer, at once, not as a
/// graceful close abandoned after the linger.
#[test]
fn tls_reset_while_records_wait_after_close_notify_counts_reset_by_the_peer() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.handshake().expect("handshake");
    let held = fill_rustls_queue(&srv, &mut c, &data(CHUNK, 12));
    c.half_close();
    // The server's own close_notify queues behind the held records.
    srv.wait_stats("the close_notify read, and ours queued", |s| {
        s.tls.buffered > held || s.tls.ended() > 0
    });
    let s = srv.handle().stats();
    assert_eq!(s.tls.ended(), 0, "counted before its echo left: {s:?}");
    // Unread input makes the close a reset.
    drop(c);
    srv.wait_stats("the connection released", |s| {
        s.tls.ended() == 1 && s.connections_open == 0
    });
    let s = srv.handle().stats();
    let ends = (
        s.tls.aborted.peer_reset,
        s.tls.closed.total(),
        s.tls.lingered,
    );
    assert_eq!(ends, (1, 0, 0), "{s:?}");
}

/// An overlong line behind echo rustls still holds (the client reads
/// nothing yet): the session aborts, and its reset waits until every whole
/// line before it was delivered, rustls's records and then the kernel's
/// bytes; only then the reset.
#[test]
fn tls_overlong_line_behind_echo_rustls_holds_is_reset_after_it_is_delivered() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Lines, |c| c.buffer_size = BufferSize::K4);
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.handshake().expect("handshake");
    let mut line = vec![b'l'; 63];
    line.push(b'\n');
    let lines = line.repeat(CHUNK / line.len());
    fill_rustls_queue(&srv, &mut c, &lines);
    let whole = srv.handle().stats().tls.bytes_out;
    c.send(&[b'x'; 5000]);
    srv.wait_stats("the abort", |s| s.tls.aborted.line_too_long == 1);
    let mut back = Vec::new();
    let end = c
        .tls
        .read_to_end(&mut back)
        .expect_err("a reset, not a close");
    assert_eq!(
        back.len() as u64,
        whole,
        "echo lost before the reset ({end})"
    );
    assert!(back.chunks(line.len()).all(|l| l == line), "echo differs");
    assert_eq!(end.kind(), std::io::ErrorKind::ConnectionReset, "{end}");
}

/// A client whose echo rustls holds after its close_notify, and which then
/// reads nothing for longer than the linger (2 s without progress): the
/// server gives the linger up, and since records were still queued, the
/// connection ends in a reset. A FIN there would let the client take the
/// echo cut short for a whole one. (If the kernel's send buffer grows and
/// takes every record meanwhile, the close stands and the kernel delivers
/// the rest: then the echo must come back whole, and the test tries again,
/// three times at most, for the case it is about.)
#[test]
fn tls_linger_given_up_with_records_queued_ends_in_a_reset_not_a_fin() {
    let pki = Pki::new();
    for attempt in 1..=3 {
        // A server of its own each time: the helpers compare totals.
        let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
        let mut c = Client::connect_with_window(srv.tls, client_config(&pki.ca, None), 4096);
        c.handshake().expect("handshake");
        fill_rustls_queue(&srv, &mut c, &data(CHUNK, 13));
        let sent = srv.handle().stats().tls.bytes_in;
        c.half_close();
        srv.wait_stats("the connection ended", |s| {
            s.tls.ended() == 1 && s.connections_open == 0
        });
        let mut back = Vec::new();
        let end = c.tls.read_to_end(&mut back);
        if srv.handle().stats().tls.lingered == 0 {
            // Every record reached the kernel in time: a graceful close.
            assert_eq!(back.len() as u64, sent, "echo lost at a graceful close");
            end.expect("close_notify after the whole echo");
            eprintln!("attempt {attempt}: the kernel took every record; again");
            continue;
        }
        let end = end.expect_err("a reset, not a close");
        assert!((back.len() as u64) < sent, "the whole echo came back");
        assert_eq!(end.kind(), std::io::ErrorKind::ConnectionReset, "{end}");
        return;
    }
    panic!("the linger was never given up with records queued: the kernel took them all");
}

/// The same at an abort (the server stops at once): a connection lingering
/// with records rustls still holds ends in a reset, not a FIN.
#[test]
fn tls_abort_while_records_wait_after_close_notify_resets_the_connection() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut c = Client::connect_with_window(srv.tls, client_config(&pki.ca, None), 4096);
    c.handshake().expect("handshake");
    let held = fill_rustls_queue(&srv, &mut c, &data(CHUNK, 14));
    let sent = srv.handle().stats().tls.bytes_in;
    c.half_close();
    // The server's own close_notify queues behind the held records.
    srv.wait_stats("the close_notify read, and ours queued", |s| {
        s.tls.buffered > held
    });
    srv.handle().abort();
    let mut back = Vec::new();
    let end = c
        .tls
        .read_to_end(&mut back)
        .expect_err("a reset, not a close");
    assert!((back.len() as u64) < sent, "the whole echo came back");
    assert_eq!(end.kind(), std::io::ErrorKind::ConnectionReset, "{end}");
}

/// What [`fill_rustls_queue`] sends at a time: 16 KiB.
const CHUNK: usize = 16 * 1024;

/// Sends [`CHUNK`] bytes at a time, reading nothing, until rustls holds at
/// least 32 KiB of records the socket did not take, with the session's
/// buffer empty (not just what a moment's lack of room left behind);
/// returns what the `buffered` gauge counts then: rustls's records alone.
fn fill_rustls_queue(srv: &TlsServer, c: &mut Client, chunk: &[u8]) -> u64 {
    // Each chunk's echo fits beside what rustls holds under its 64 KiB
    // limit, so the session hands it all over and each wait below ends.
    assert_eq!(chunk.len(), CHUNK);
    let mut sent = 0u64;
    loop {
        assert!(sent < 256 << 20, "the socket took everything");
        c.send(chunk);
        sent += chunk.len() as u64;
        srv.wait_stats("every byte read and echoed to rustls", |s| {
            s.tls.bytes_in == sent && s.tls.bytes_out == sent
        });
        let held = srv.handle().stats().tls.buffered;
        if held >= 32 * 1024 {
            return held;
        }
    }
}

/// Beside the session's buffer, rustls holds records the socket has not
/// taken (up to 64 KiB) and decrypted input the session has not read yet:
/// the `buffered` gauge counts them while a peer does not read, and
/// nothing once its connection ended.
#[test]
fn tls_peer_that_stops_reading_has_rustls_queues_counted_in_the_gauge() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |c| c.buffer_size = BufferSize::K4);
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.handshake().expect("handshake");
    c.tls
        .sock
        .set_write_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let chunk = data(64 * 1024, 9);
    let mut sent = 0usize;
    // Write until the server stops reading (a write times out).
    while c.tls.write_all(&chunk).and_then(|()| c.tls.flush()).is_ok() {
        sent += chunk.len();
        assert!(sent < 256 << 20, "the server never stopped reading");
    }
    srv.wait_stats("rustls's records in the gauge", |s| s.tls.buffered > 4096);
    // The session's 4 KiB, 64 KiB of records (and one write's overhead),
    // and at most two records of decrypted input.
    let most = 4096 + 64 * 1024 + 2 * 16 * 1024 + 1024;
    let held = srv.handle().stats().tls.buffered;
    assert!(
        held <= most,
        "holds {held} bytes for one peer, more than {most}"
    );
    drop(c);
    srv.wait_stats("the connection ended and nothing held", |s| {
        s.tls.active() == 0 && s.tls.buffered == 0
    });
}

#[test]
fn tls_configuration_errors_name_the_file_and_the_fix() {
    let pki = Pki::new();
    let local = vec!["127.0.0.1:0".parse().unwrap()];
    let bind = |tls: TlsConfig| {
        Server::bind(ServerConfig {
            tls: Some(tls),
            ..ServerConfig::default()
        })
    };
    let missing = pki.dir.path().join("nope.pem");
    let e = bind(TlsConfig::new(local.clone(), &missing, &pki.key)).unwrap_err();
    assert!(matches!(e, BindError::Tls(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("nope.pem") && msg.contains("cannot read") && msg.contains("--tls-cert"),
        "{msg}"
    );
    // A certificate file given as the key: no key in it.
    let msg = bind(TlsConfig::new(local.clone(), &pki.cert, &pki.cert))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no private key found") && msg.contains("BEGIN PRIVATE KEY"),
        "{msg}"
    );
    // The client's key with the server's certificate: they do not match.
    let msg = bind(TlsConfig::new(local.clone(), &pki.cert, &pki.client_key))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("is not the key of the certificate") && msg.contains("client-key.pem"),
        "{msg}"
    );
    let mut zero = TlsConfig::new(local.clone(), &pki.cert, &pki.key);
    zero.handshake_timeout = Duration::ZERO;
    let msg = bind(zero).unwrap_err().to_string();
    assert!(
        msg.contains("handshake timeout must be more than 0"),
        "{msg}"
    );
    let msg = bind(TlsConfig::new(Vec::new(), &pki.cert, &pki.key))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no listening address"), "{msg}");
}

#[test]
fn tls_close_notify_in_the_same_read_as_the_last_data_ends_the_session() {
    // The last data and the close_notify reach the server in one segment,
    // and no FIN follows (socat's TLS client closes this way): the server
    // decrypts both in one read and must still act on the close_notify.
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut c = Client::connect(srv.tls, client_config(&pki.ca, None));
    c.handshake().expect("handshake");
    c.tls
        .conn
        .writer()
        .write_all(b"last words")
        .expect("buffer");
    c.tls.conn.send_close_notify();
    let mut wire = Vec::new();
    while c.tls.conn.wants_write() {
        c.tls.conn.write_tls(&mut wire).expect("encrypt");
    }
    c.tls
        .sock
        .write_all(&wire)
        .expect("one write: data and close_notify");
    assert_eq!(
        c.read_to_close().expect("echo, then close_notify"),
        b"last words"
    );
    srv.wait_stats("the close", |s| s.tls.closed.peer_finished == 1);
}
