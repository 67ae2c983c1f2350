use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, ServerConfig, ServerConnection, SupportedProtocolVersion};

use super::*;
use crate::probe::transport::Link;
use crate::probe::{Target, TlsOptions, TlsTarget};

/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn certificate_names_are_shown_as_written() {
    assert_eq!(shown_name("DnsName(\"localhost\")"), "localhost");
    assert_eq!(shown_name("IpAddress(127.0.0.1)"), "127.0.0.1");
    // rustls writes IPv6 addresses its own way (`0::1`): shown as the
    // address is written (and as --tls-server-name takes it).
    assert_eq!(shown_name("IpAddress(0::1)"), "::1");
    assert_eq!(shown_name("IpAddress(2001:db8::1)"), "2001:db8::1");
    // What does not parse is shown as it came.
    assert_eq!(shown_name("IpAddress(fe80)"), "fe80");
}

/// A rustls server on 127.0.0.1:0 speaking `version` only, asking for a
/// client certificate with `client_auth`, for one connection: the
/// handshake (a refused one ends with its alert, then FIN), then the
/// echo until the client closes.
fn server(
    version: &'static SupportedProtocolVersion,
    client_auth: bool,
) -> (SocketAddr, JoinHandle<()>) {
    server_ending(version, client_auth, Refusal::Close)
}

/// How the test server ends a connection whose handshake it refused.
#[derive(Clone, Copy)]
enum Refusal {
    /// The alert, then FIN.
    Close,
    /// The alert; then, once more of the client's data has arrived
    /// unread, the close, which the kernel turns into a reset.
    Reset,
}

/// [`server`], ending a refused connection as `refusal` says.
fn server_ending(
    version: &'static SupportedProtocolVersion,
    client_auth: bool,
    refusal: Refusal,
) -> (SocketAddr, JoinHandle<()>) {
    serve_one(config(version, client_auth), move |mut conn, mut sock| {
        let mut buf = [0u8; 1024];
        loop {
            while conn.wants_write() {
                if conn.write_tls(&mut sock).is_err() {
                    return;
                }
            }
            match conn.read_tls(&mut sock) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if conn.process_new_packets().is_err() {
                // The alert, then the close.
                while conn.wants_write() && conn.write_tls(&mut sock).is_ok() {}
                if let Refusal::Reset = refusal {
                    // Blocks (read timeout WAIT) until client data waits unread.
                    let _ = sock.peek(&mut buf);
                }
                return;
            }
            while let Ok(n @ 1..) = conn.reader().read(&mut buf) {
                conn.writer().write_all(&buf[..n]).expect("echo");
            }
        }
    })
}

/// A TLS server on 127.0.0.1:0 with `config` for one connection, run by
/// `body` on a thread of its own with the session and its socket (reads
/// bounded by [`WAIT`]).
fn serve_one(
    config: Arc<ServerConfig>,
    body: impl FnOnce(ServerConnection, std::net::TcpStream) + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let thread = std::thread::spawn(move || {
        let (sock, _) = listener.accept().expect("accept");
        sock.set_read_timeout(Some(WAIT)).expect("read timeout");
        body(ServerConnection::new(config).expect("server session"), sock);
    });
    (addr, thread)
}

/// A rustls server configuration speaking `version` only, asking for a
/// client certificate with `client_auth`.
fn config(version: &'static SupportedProtocolVersion, client_auth: bool) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let id = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert = id.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.signing_key.serialize_der()));
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[version])
        .expect("versions");
    let builder = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).expect("client CA");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(builder.with_single_cert(vec![cert], key).expect("config"))
}

/// A link to `addr`, its TCP connect in progress (any certificate is accepted).
fn link_to(addr: SocketAddr) -> TlsLink {
    let target = Target::Tls(TlsTarget {
        addrs: vec![addr],
        host: "localhost".to_owned(),
    });
    let opts = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    let clients = super::super::clients(std::slice::from_ref(&target), &opts).expect("client");
    let client = clients[0].as_ref().expect("a TLS client");
    TlsLink::new(TcpStream::connect(addr).expect("connect"), client)
}

/// Polls `step` until it gives a value, for [`WAIT`] at most.
fn until<T>(what: &str, mut step: impl FnMut() -> Option<T>) -> T {
    let start = StdInstant::now();
    loop {
        if let Some(v) = step() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        std::thread::yield_now();
    }
}

/// Drives the TCP connect and the handshake to their end.
fn handshake(link: &mut TlsLink) -> Result<(), HandshakeError> {
    until("the handshake's end", || {
        match link.poll_ready(Instant::ZERO, |s| Ok(s.peer_addr().is_ok())) {
            Ok(Readiness::Ready) => Some(Ok(())),
            Ok(_) => None,
            Err(ReadyError::Handshake(e)) => Some(Err(e)),
            Err(ReadyError::Connect(e)) => panic!("connect: {e}"),
        }
    })
}

/// The server's refusal an I/O error carries, if it is one.
fn refusal(e: &io::Error) -> Option<&RefusedByServer> {
    e.get_ref()?.downcast_ref::<RefusedByServer>()
}

/// The next read that does not say `WouldBlock`.
fn read(link: &mut TlsLink, buf: &mut [u8]) -> io::Result<usize> {
    until("a read", || match link.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        r => Some(r),
    })
}

#[test]
fn tls13_handshake_is_accepted_only_when_the_server_has_not_refused_it() {
    // Asked for a client certificate, the probe (which has none)
    // finishes first; the server's refusal is the first record after.
    let (addr, srv) = server(&rustls::version::TLS13, true);
    let mut link = link_to(addr);
    handshake(&mut link).expect("done on the probe's side");
    assert!(link.handshake_done().is_some());
    assert!(!link.handshake_accepted(), "the server has not checked yet");
    let e = read(&mut link, &mut [0; 64]).expect_err("the server's refusal");
    assert!(
        matches!(
            refusal(&e),
            Some(RefusedByServer {
                alert: AlertDescription::CertificateRequired,
                client_cert: None
            })
        ),
        "{e:?}"
    );
    assert!(!link.handshake_accepted());
    srv.join().expect("server");
    // Not asked for one: the server's session ticket (or its echo) says
    // it accepted the handshake.
    let (addr, srv) = server(&rustls::version::TLS13, false);
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    let mut buf = [0u8; 64];
    until("a record after the handshake", || {
        match link.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("nothing to read yet: {other:?}"),
        }
        link.handshake_accepted().then_some(())
    });
    assert_eq!(link.write(b"ping").expect("write"), 4);
    let n = read(&mut link, &mut buf).expect("the echo");
    assert_eq!(&buf[..n], b"ping");
    assert!(link.handshake_accepted());
    drop(link);
    srv.join().expect("server");
}

/// Waits (bounded) until `sock` polls with any of `events` set in its
/// returned events, without reading it.
#[allow(unsafe_code)]
fn until_polled(sock: &TcpStream, events: libc::c_short, what: &str) {
    use std::os::fd::AsRawFd;
    until(what, || {
        let mut p = libc::pollfd {
            fd: sock.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        (n == 1 && p.revents & events != 0).then_some(())
    });
}

#[test]
fn tls13_refusal_behind_a_reset_write_is_reported_as_the_refusal() {
    // The server refused the handshake the probe had done on its side
    // (TLS 1.3), then closed with the probe's data unread: a reset. A
    // write meeting that reset before any read saw the alert must still
    // report the refusal, or the probe counts the handshake completed.
    let (addr, srv) = server_ending(&rustls::version::TLS13, true, Refusal::Reset);
    let mut link = link_to(addr);
    handshake(&mut link).expect("done on the probe's side");
    until_polled(link.socket(), libc::POLLIN, "the server's alert");
    assert_eq!(link.write(b"ping").expect("written before the reset"), 4);
    until_polled(link.socket(), libc::POLLHUP | libc::POLLERR, "the reset");
    let e = link.write(b"more").expect_err("the connection is gone");
    assert!(
        matches!(
            refusal(&e),
            Some(RefusedByServer {
                alert: AlertDescription::CertificateRequired,
                ..
            })
        ),
        "the refusal, not the reset: {e:?}"
    );
    assert!(!link.handshake_accepted());
    srv.join().expect("server");
}

#[test]
fn a_certificate_alert_inside_the_handshake_names_the_client_certificate_flags() {
    let e = HandshakeError::Tls(rustls::Error::AlertReceived(
        AlertDescription::CertificateRequired,
    ))
    .to_string();
    assert!(
        e.contains("CertificateRequired") && e.contains("--tls-cert FILE --tls-key FILE"),
        "{e}"
    );
    let e = HandshakeError::Tls(rustls::Error::AlertReceived(
        AlertDescription::ProtocolVersion,
    ))
    .to_string();
    assert!(!e.contains("--tls-cert"), "not about certificates: {e}");
}

#[test]
fn a_fatal_alert_is_a_refusal_until_the_server_accepted_the_handshake() {
    let alert = |a| rustls::Error::AlertReceived(a);
    let none = RefusedByServer::of(&alert(AlertDescription::CertificateRequired), false, None)
        .expect("a refusal")
        .to_string();
    assert!(
        none.contains("fatal alert CertificateRequired")
            && none.contains("the probe sent none")
            && none.contains("--tls-cert FILE --tls-key FILE"),
        "{none}"
    );
    let presented: Arc<Path> = Arc::from(Path::new("/tmp/client.pem"));
    let cert = RefusedByServer::of(&alert(AlertDescription::UnknownCA), false, Some(&presented))
        .expect("a refusal")
        .to_string();
    assert!(
        cert.contains("fatal alert UnknownCA")
            && cert.contains("refused the probe's client certificate (--tls-cert /tmp/client.pem)")
            && !cert.contains("sent none"),
        "{cert}"
    );
    let other = RefusedByServer::of(&alert(AlertDescription::DecryptError), false, None)
        .expect("a refusal")
        .to_string();
    assert!(
        other.contains("fatal alert DecryptError") && !other.contains("client certificate"),
        "{other}"
    );
    assert!(RefusedByServer::of(&alert(AlertDescription::UnknownCA), true, None).is_none());
    assert!(RefusedByServer::of(&rustls::Error::DecryptError, false, None).is_none());
}

#[test]
fn tls12_handshake_is_accepted_once_complete_and_refused_during_it() {
    // The server's Finished comes last: nothing left to refuse.
    let (addr, srv) = server(&rustls::version::TLS12, false);
    let mut link = link_to(addr);
    handshake(&mut link).expect("handshake");
    assert!(link.handshake_accepted());
    drop(link);
    srv.join().expect("server");
    // A refused client certificate fails the handshake itself.
    let (addr, srv) = server(&rustls::version::TLS12, true);
    let mut link = link_to(addr);
    let e = handshake(&mut link).expect_err("refused during the handshake");
    assert!(matches!(e, HandshakeError::Tls(_)), "{e:?}");
    assert!(!link.handshake_accepted());
    srv.join().expect("server");
}

/// Drives `link` (a TLS one) through the worker's interface until ready:
/// the `now` of the call that saw TCP established, which the handshake
/// began at.
fn ready(link: &mut Link) -> Instant {
    let mut step = 0u64;
    let mut began = None;
    until("the link ready", || {
        step += 1;
        let now = Instant::from_micros(step);
        match link.poll_ready(now) {
            Ok(Readiness::Connecting) => None,
            Ok(Readiness::Handshaking { since }) => {
                began.get_or_insert(since);
                None
            }
            Ok(Readiness::Ready) => Some(*began.get_or_insert(now)),
            Err(e) => panic!("not ready: {e:?}"),
        }
    })
}

#[test]
fn tls13_link_done_on_the_probe_side_has_its_handshake_but_awaits_acceptance() {
    // The worker counts the handshake from `Link::handshake` once the
    // server accepted it (`Link::handshake_accepted`): a server asking
    // for a client certificate has not yet.
    let (addr, srv) = server(&rustls::version::TLS13, true);
    let mut link = Link::Tls(Box::new(link_to(addr)));
    let since = ready(&mut link);
    assert_eq!(
        link.handshake(),
        Some(Handshake {
            since,
            resumed: false
        })
    );
    assert!(!link.is_handshaking());
    assert!(!link.handshake_accepted(), "the server has not checked yet");
    let e = until("the refusal", || match link.read(&mut [0; 64]) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        r => Some(r),
    })
    .expect_err("the server's refusal");
    assert!(refusal(&e).is_some(), "{e:?}");
    assert!(!link.handshake_accepted());
    srv.join().expect("server");
}

/// A TLS 1.2 server on 127.0.0.1:0 for one connection: the handshake,
/// then `after` with the connection and its (blocking) socket.
fn server_then(
    after: impl FnOnce(&mut ServerConnection, &mut std::net::TcpStream) + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    serve_one(
        config(&rustls::version::TLS12, false),
        |mut conn, mut sock| {
            conn.complete_io(&mut sock).expect("handshake");
            after(&mut conn, &mut sock);
        },
    )
}

#[test]
fn short_read_that_reached_the_close_notify_says_the_end_is_pending() {
    // The server's last data and its close_notify, in one segment: the
    // read that returns the data has seen the end, which no new readiness
    // event will announce. The worker reads again only if told so.
    let (addr, srv) = server_then(|conn, sock| {
        conn.writer().write_all(b"bye").expect("data");
        conn.send_close_notify();
        conn.write_tls(sock)
            .expect("data and close_notify in one write");
        // Until the client closes.
        let _ = sock.read(&mut [0; 1024]);
    });
    let mut link = Link::Tls(Box::new(link_to(addr)));
    ready(&mut link);
    let mut buf = [0u8; 64];
    let n = until("the data", || match link.read(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        r => Some(r.expect("read")),
    });
    assert_eq!(&buf[..n], b"bye");
    assert!(link.read_pending(), "the end already known");
    assert_eq!(link.read(&mut buf).expect("the end"), 0);
    assert!(!link.read_pending());
    drop(link);
    srv.join().expect("server");
}

#[test]
fn records_left_queued_by_a_full_socket_go_out_on_flush() {
    // The server reads nothing until the probe's socket is full, then
    // everything: only `flush` sends what the last writes left queued
    // (the probe writes and reads nothing more).
    let (go, wait) = std::sync::mpsc::channel::<usize>();
    let (got, received) = std::sync::mpsc::channel::<()>();
    let (addr, srv) = server_then(move |conn, sock| {
        let total = wait.recv().expect("the bytes written");
        let mut seen = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while seen < total {
            if conn.read_tls(sock).expect("records") == 0 {
                panic!("closed after {seen} of {total} bytes");
            }
            conn.process_new_packets().expect("records");
            while let Ok(n @ 1..) = conn.reader().read(&mut buf) {
                seen += n;
            }
        }
        got.send(()).expect("done");
    });
    let mut link = Link::Tls(Box::new(link_to(addr)));
    ready(&mut link);
    let chunk = vec![7u8; 64 * 1024];
    let mut total = 0;
    loop {
        match link.write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    go.send(total).expect("the server");
    until("every byte at the server", || {
        link.flush().expect("flush");
        received.try_recv().ok()
    });
    drop(link);
    srv.join().expect("server");
}

#[test]
fn a_reset_during_the_handshake_is_reported_as_the_reset() {
    // Not a close (a server that is not TLS), nor a handshake still
    // waiting for its socket until the timeout: the socket's own error.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut link = link_to(listener.local_addr().expect("address"));
    let (server, _) = listener.accept().expect("accept");
    let tcp_up = |s: &TcpStream| Ok(s.peer_addr().is_ok());
    until("the ClientHello out", || {
        match link.poll_ready(Instant::ZERO, tcp_up) {
            Ok(Readiness::Handshaking { .. }) => Some(()),
            Ok(Readiness::Connecting) => None,
            other => panic!("expected a handshake in progress: {other:?}"),
        }
    });
    socket2::SockRef::from(&server)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(server);
    let e = until("the reset", || {
        match link.poll_ready(Instant::ZERO, tcp_up) {
            Ok(Readiness::Handshaking { .. }) => None,
            Err(ReadyError::Handshake(e)) => Some(e),
            other => panic!("expected a failed handshake: {other:?}"),
        }
    });
    assert!(
        matches!(&e, HandshakeError::Io(io) if io.kind() == io::ErrorKind::ConnectionReset),
        "{e:?}"
    );
}

mod explain;
mod plaintext;
