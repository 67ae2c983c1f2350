use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::*;

/// Generous bound on each loop below; none needs more than a few turns.
const TURNS: usize = 100_000;

/// When the handshakes of these streams must be complete.
const DEADLINE: Instant = Instant::from_millis(60_000);

/// A server `TlsStream` just accepted (its handshake not started, due by
/// [`DEADLINE`]), the client's rustls connection and its non-blocking
/// socket over loopback; the client's receive buffer is 4 KiB.
fn accepted() -> (TlsStream, rustls::ClientConnection, StdTcpStream) {
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&listener.local_addr().unwrap().into())
        .unwrap();
    let csock: StdTcpStream = sock.into();
    csock.set_nonblocking(true).unwrap();
    let (ssock, _) = listener.accept().unwrap();
    ssock.set_nonblocking(true).unwrap();
    let t = TlsStream::new(TcpStream::from_std(ssock), server, DEADLINE).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let c = rustls::ClientConnection::new(client, name).unwrap();
    (t, c, csock)
}

/// A server configuration with a fresh self-signed certificate for
/// `localhost`, and a client configuration that trusts it (tests here and
/// elsewhere in the crate).
pub(crate) fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(super::super::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], der)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(super::super::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A server `TlsStream` and a non-blocking client over loopback whose
/// handshake is complete; the client's receive buffer is 4 KiB.
fn established() -> (TlsStream, rustls::ClientConnection, StdTcpStream) {
    let (mut t, mut c, mut csock) = accepted();
    let mut buf = [0u8; 64];
    for _ in 0..TURNS {
        if !c.is_handshaking() && t.state == State::Established {
            return (t, c, csock);
        }
        while c.wants_write() && c.write_tls(&mut csock).is_ok() {}
        if c.read_tls(&mut csock).is_ok() {
            c.process_new_packets().unwrap();
        }
        assert!(matches!(t.read(&mut buf), ReadOutcome::WouldBlock));
        std::thread::yield_now();
    }
    panic!("no handshake after {TURNS} turns");
}

/// Reads `t` until it reports something other than `WouldBlock`.
fn read_until_ready(t: &mut TlsStream, buf: &mut [u8]) -> ReadOutcome {
    for _ in 0..TURNS {
        match t.read(buf) {
            ReadOutcome::WouldBlock => std::thread::yield_now(),
            other => return other,
        }
    }
    panic!("nothing to read after {TURNS} turns");
}

/// Reads `t` until the handshake fails: the session reads `read`, the
/// handshake is reported as `failure`, and no deadline is left.
fn handshake_fails(t: &mut TlsStream, read: ReadOutcome, failure: HandshakeFailure) {
    let mut buf = [0u8; 64];
    assert_eq!(read_until_ready(t, &mut buf), read);
    assert_eq!(t.take_outcome(), Some(Outcome::Failed(failure)));
    assert_eq!(t.deadline(), None, "no handshake left to time out");
}

/// What the client's socket receives until the server's FIN (`Ok`) or an
/// error, bounded by a 20 s read timeout.
fn raw_until_fin(csock: &mut StdTcpStream) -> io::Result<Vec<u8>> {
    csock.set_nonblocking(false)?;
    csock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut got = Vec::new();
    csock.read_to_end(&mut got).map(|_| got)
}

/// The client's plaintext until the server's close_notify and FIN (`Ok`),
/// or an error (a FIN without close_notify is `UnexpectedEof`).
fn plaintext_until_close(
    c: &mut rustls::ClientConnection,
    csock: &mut StdTcpStream,
) -> io::Result<Vec<u8>> {
    csock.set_nonblocking(false)?;
    csock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut got = Vec::new();
    rustls::Stream::new(c, csock)
        .read_to_end(&mut got)
        .map(|_| got)
}

/// Closes the client's socket with a reset (`SO_LINGER` 0), not a FIN.
fn reset(csock: StdTcpStream) {
    socket2::SockRef::from(&csock)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Writes 16 KiB at a time to a peer that reads nothing until a write
/// would block: its window, the socket, then rustls's record buffer full.
fn fill_until_blocked(t: &mut TlsStream) {
    let chunk = [7u8; 16 * 1024];
    for _ in 0..TURNS {
        match t.write(&chunk, false) {
            WriteOutcome::Sent(_) => {}
            WriteOutcome::WouldBlock => return,
            other => panic!("write: {other:?}"),
        }
    }
    panic!("the socket never filled");
}

#[test]
fn records_queued_then_peer_reset_reports_output_failed() {
    let (mut t, _client, csock) = established();
    // The client reads nothing: fill its window, the socket, then
    // rustls's record buffer.
    fill_until_blocked(&mut t);
    assert!(t.unacknowledged() > 0, "records should be queued");
    assert!(!t.output_failed(), "nothing failed yet");
    // The peer resets: the queued records can never leave.
    reset(csock);
    t.flush();
    assert!(t.output_failed(), "the failed push must be reported");
    // A reset, not a timeout: the session counts it as reset by the peer.
    assert_eq!(
        t.write(b"more", false),
        WriteOutcome::Failed(Failure::Reset)
    );
    assert_eq!(t.read(&mut [0u8; 64]), ReadOutcome::Failed(Failure::Reset));
}

/// After the close began with records queued (the client read nothing),
/// what the linger sees as unacknowledged goes down as soon as the socket
/// takes some of them, not only once rustls holds none: a slow reader's
/// progress keeps the linger going. Until the FIN is out the connection
/// has output undelivered.
#[test]
fn closing_with_records_queued_counts_their_bytes_down_as_the_socket_takes_them() {
    let (mut t, _c, mut csock) = established();
    fill_until_blocked(&mut t);
    t.shutdown_write();
    let before = t.unacknowledged();
    assert!(t.undelivered(), "records and close_notify wait");
    assert!(before > 16 * 1024, "only {before} unacknowledged");
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..TURNS {
        // The client takes some bytes; the server pushes what now fits.
        let _ = csock.read(&mut buf);
        t.flush();
        let now = t.unacknowledged();
        if now < before {
            assert!(
                t.conn.wants_write(),
                "progress seen only once rustls held nothing ({now} < {before})"
            );
            return;
        }
        std::thread::yield_now();
    }
    panic!("the socket never took more");
}

/// A peer that resets an established connection: the next read reports a
/// reset (counted as `peer_reset`), not a timeout, and not the end of
/// input.
#[test]
fn peer_reset_of_an_established_stream_is_read_as_a_reset() {
    let (mut t, _c, csock) = established();
    reset(csock);
    let mut buf = [0u8; 64];
    assert_eq!(
        read_until_ready(&mut t, &mut buf),
        ReadOutcome::Failed(Failure::Reset)
    );
    assert!(!t.is_refused(), "no handshake failed: reset, not refused");
    assert_eq!(
        t.take_outcome(),
        Some(Outcome::Completed { resumed: false })
    );
}

/// A plain client's bytes before the handshake: the handshake fails once,
/// counted as `bad_record` with rustls's words for the log; the
/// connection is refused with the alert and then a FIN (not a reset).
#[test]
fn plain_bytes_during_the_handshake_are_refused_as_bad_record_with_an_alert_then_fin() {
    let (mut t, _c, mut csock) = accepted();
    csock.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    handshake_fails(
        &mut t,
        ReadOutcome::Failed(Failure::Reset),
        HandshakeFailure::BadRecord,
    );
    assert_eq!(t.take_outcome(), None, "reported once");
    let detail = t.failure_detail().expect("rustls said why");
    assert!(detail.contains("corrupt message"), "{detail}");
    assert!(t.is_refused());
    assert!(t.read_pending(), "the failure is the next read's");
    assert_eq!(t.read(&mut [0u8; 64]), ReadOutcome::Failed(Failure::Reset));
    assert!(t.refuse(), "a refused connection closes with a FIN");
    let got = raw_until_fin(&mut csock).expect("the alert, then a FIN, not a reset");
    assert!(
        got.len() == 7 && got[0] == 0x15 && got[5] == 2,
        "expected one fatal alert record, got {got:02x?}"
    );
}

/// A client that closes (FIN, no bytes) during the handshake: counted as
/// `closed`, and answered with a FIN alone: nothing was said to answer.
#[test]
fn client_fin_during_the_handshake_counts_closed_and_gets_a_bare_fin() {
    let (mut t, _c, mut csock) = accepted();
    csock.shutdown(Shutdown::Write).unwrap();
    handshake_fails(&mut t, ReadOutcome::Eof, HandshakeFailure::Closed);
    assert!(t.is_refused());
    assert!(t.refuse());
    assert_eq!(raw_until_fin(&mut csock).expect("a FIN"), b"");
}

/// The handshake deadline: nothing happens before it; at it the handshake
/// fails once as `timeout`, the connection reports `TimedOut` to the
/// session and is closed with a FIN, no alert (the client said nothing).
#[test]
fn silent_client_times_out_exactly_at_the_handshake_deadline() {
    let (mut t, _c, mut csock) = accepted();
    assert_eq!(t.deadline(), Some(DEADLINE));
    let before = Instant::from_millis(59_999);
    assert!(!t.expire(before), "expired before its deadline");
    assert_eq!(t.take_outcome(), None);
    assert_eq!(t.deadline(), Some(DEADLINE));
    assert!(t.expire(DEADLINE), "not expired at its deadline");
    assert_eq!(
        t.take_outcome(),
        Some(Outcome::Failed(HandshakeFailure::Timeout))
    );
    assert_eq!(t.deadline(), None);
    assert!(!t.expire(Instant::from_millis(70_000)), "expired twice");
    assert_eq!(t.take_outcome(), None);
    let mut buf = [0u8; 64];
    assert_eq!(t.read(&mut buf), ReadOutcome::Failed(Failure::TimedOut));
    assert_eq!(
        t.write(b"x", false),
        WriteOutcome::Failed(Failure::TimedOut)
    );
    assert!(t.refuse());
    assert_eq!(raw_until_fin(&mut csock).expect("a FIN"), b"");
}

/// A completed handshake: reported once as completed (not resumed), no
/// deadline left to expire, described by version and suite for the log,
/// not refused (an aborted session is reset, not closed with a FIN), and
/// nothing queued once a write is pushed.
#[test]
fn completed_handshake_is_reported_once_and_the_stream_is_not_refused() {
    let (mut t, _c, _csock) = established();
    assert_eq!(
        t.take_outcome(),
        Some(Outcome::Completed { resumed: false })
    );
    assert_eq!(t.take_outcome(), None);
    assert_eq!(t.deadline(), None);
    assert!(!t.expire(Instant::from_millis(u64::MAX / 2)));
    let d = t.describe();
    assert!(d.contains("TLSv1_3") && d.contains("TLS13_"), "{d}");
    assert!(!t.is_refused());
    assert!(!t.refuse(), "an established stream is reset on abort");
    assert!(!t.read_pending());
    assert!(!t.output_failed());
    assert_eq!(t.unacknowledged(), 0, "nothing queued");
}

/// Before any handshake message the log says no version was negotiated.
#[test]
fn stream_before_the_handshake_describes_no_version() {
    let (t, _c, _csock) = accepted();
    assert_eq!(t.describe(), "no version negotiated");
}

/// Writes with the `more` hint are held in rustls until a write without
/// it (or a flush); the echo then arrives whole, and a half-close sends
/// close_notify and then FIN, leaving nothing unacknowledged.
#[test]
fn writes_with_more_wait_for_the_last_then_close_notify_and_fin_follow() {
    let (mut t, mut c, mut csock) = established();
    assert_eq!(t.write(b"first ", true), WriteOutcome::Sent(6));
    assert_eq!(t.unacknowledged(), 1, "held for the next write");
    assert_eq!(t.write(b"second", false), WriteOutcome::Sent(6));
    assert_eq!(t.unacknowledged(), 0, "pushed by the last write");
    t.shutdown_write();
    assert_eq!(t.unacknowledged(), 0, "close_notify and FIN sent");
    t.shutdown_write();
    let got = plaintext_until_close(&mut c, &mut csock).expect("close_notify, then FIN");
    assert_eq!(got, b"first second");
}

/// The last data and close_notify decrypted in one read: the data first,
/// with the end announced as pending, then the end.
#[test]
fn data_and_close_notify_in_one_read_give_the_data_then_the_end() {
    let (mut t, mut c, mut csock) = established();
    c.writer().write_all(b"last words").unwrap();
    c.send_close_notify();
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    csock.write_all(&wire).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(read_until_ready(&mut t, &mut buf), ReadOutcome::Data(10));
    assert_eq!(&buf[..10], b"last words");
    assert!(t.read_pending(), "the end is already known");
    assert_eq!(t.read(&mut buf), ReadOutcome::Eof);
}

/// A client that resets the connection during the handshake: counted as
/// `io` (the connection failed), reported to the session as a reset.
#[test]
fn client_reset_during_the_handshake_counts_io() {
    let (mut t, _c, csock) = accepted();
    reset(csock);
    handshake_fails(
        &mut t,
        ReadOutcome::Failed(Failure::Reset),
        HandshakeFailure::Io,
    );
}

/// The `buffered` gauge counts both of rustls's queues: decrypted input
/// the session has not read yet plus records the socket has not taken;
/// nothing once the connection is released.
#[test]
fn gauge_counts_unread_plaintext_and_unsent_records_then_nothing_when_released() {
    let (mut t, mut c, mut csock) = established();
    c.writer().write_all(&[b'x'; 100]).unwrap();
    while c.wants_write() {
        c.write_tls(&mut csock).unwrap();
    }
    let mut buf = [0u8; 10];
    assert_eq!(read_until_ready(&mut t, &mut buf), ReadOutcome::Data(10));
    let mut counters = StreamCounters::default();
    t.sync_gauge(false, &mut counters);
    assert_eq!(counters.buffered, 90, "the plaintext not read yet");
    // Held in rustls (the `more` hint): one record, 6 bytes and its overhead.
    assert_eq!(t.write(b"first ", true), WriteOutcome::Sent(6));
    t.sync_gauge(false, &mut counters);
    let both = counters.buffered;
    assert!(96 < both && both < 90 + 100, "{both}");
    t.sync_gauge(true, &mut counters);
    assert_eq!(counters.buffered, 0, "a released connection holds nothing");
}

/// A record shorter than the session's buffer, with nothing after it: the
/// read returns its bytes once the socket has nothing more, and then
/// would block (the connection stays open).
#[test]
fn short_record_is_returned_when_the_socket_drains() {
    let (mut t, mut c, mut csock) = established();
    c.writer().write_all(b"hello").unwrap();
    while c.wants_write() {
        c.write_tls(&mut csock).unwrap();
    }
    let mut buf = [0u8; 64];
    assert_eq!(read_until_ready(&mut t, &mut buf), ReadOutcome::Data(5));
    assert_eq!(&buf[..5], b"hello");
    assert!(!t.read_pending(), "nothing more is known");
    assert_eq!(t.read(&mut buf), ReadOutcome::WouldBlock);
}

/// A peer that reads nothing: once the socket is full, rustls holds
/// records up to [`OUTPUT_LIMIT`] (about 64 KiB, so sends stay large) and
/// not much more (one record's overhead), as the `buffered` gauge shows;
/// further writes would block.
#[test]
fn peer_that_reads_nothing_lets_rustls_hold_up_to_the_output_limit() {
    let (mut t, _client, _csock) = established();
    fill_until_blocked(&mut t);
    let mut counters = StreamCounters::default();
    t.sync_gauge(false, &mut counters);
    let held = counters.buffered;
    assert!(
        (48 * 1024..=64 * 1024 + 1024).contains(&held),
        "rustls holds {held} bytes of records"
    );
}

/// A write whose bytes rustls took, but whose push then fails (the peer
/// reset): the bytes count as sent, as a kernel socket's would, and the
/// failure is reported for the session's close (reset by the peer).
#[test]
fn write_taken_then_failed_push_reports_the_bytes_and_the_failure() {
    let (mut t, _c, csock) = established();
    reset(csock);
    // Wait for the reset to reach the server's socket (peeking takes the
    // error; sends fail from then on).
    let sock = socket2::SockRef::from(t.socket_ref());
    let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    let reset = (0..TURNS).any(|_| match sock.peek(&mut scratch) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            std::thread::yield_now();
            false
        }
        _ => true,
    });
    assert!(reset, "the reset never arrived");
    assert_eq!(t.write(b"x", false), WriteOutcome::Sent(1));
    assert!(t.output_failed(), "the failed push must be reported");
    assert_eq!(t.write(b"y", false), WriteOutcome::Failed(Failure::Reset));
}

/// A drive takes in at most its share of records: once past it, the read
/// returns what it has (or `WouldBlock`) and reports the stop once; the
/// next drive reads on, and every byte arrives, in order.
#[test]
fn drive_stops_reading_at_its_share_of_records_and_the_next_reads_on() {
    let (mut t, mut c, mut csock) = established();
    const CAP: usize = 4 * 1024;
    t.set_ciphertext_cap(CAP);
    let sent: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut got, mut taken, mut throttled) = (Vec::new(), 0, 0);
    for _ in 0..TURNS {
        if taken < sent.len() {
            taken += c.writer().write(&sent[taken..]).unwrap();
        }
        while c.wants_write() && c.write_tls(&mut csock).is_ok() {}
        t.begin_drive();
        let mut this_drive = 0;
        loop {
            match t.read(&mut buf) {
                ReadOutcome::Data(n) => {
                    got.extend_from_slice(&buf[..n]);
                    this_drive += n;
                }
                ReadOutcome::WouldBlock => break,
                other => panic!("read: {other:?}"),
            }
        }
        // Past the share by at most a read of the socket and the rest of
        // a record the drive before took in part (about 17 KiB each).
        assert!(
            this_drive <= CAP + 2 * 17 * 1024,
            "one drive read {this_drive} bytes"
        );
        if t.take_throttled() {
            throttled += 1;
            assert!(!t.take_throttled(), "reported once");
        }
        if got.len() == sent.len() {
            break;
        }
        std::thread::yield_now();
    }
    assert!(
        got == sent,
        "{} of {} bytes, or out of order",
        got.len(),
        sent.len()
    );
    assert!(throttled > 0, "no drive stopped at its share");
}

/// A handshake that ended some other way than through the paths that
/// clear its deadline (a failed push moves it to `Failed` too) has no
/// deadline left: one in the past would be due at every turn.
#[test]
fn handshake_failed_by_a_push_leaves_no_deadline() {
    let (mut t, _c, _csock) = accepted();
    assert_eq!(t.deadline(), Some(DEADLINE));
    t.state = State::Failed(Failure::Reset);
    assert_eq!(t.deadline(), None);
}
