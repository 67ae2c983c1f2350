use std::io::ErrorKind;
use std::net::TcpStream;

use super::*;

#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn reset_connection_has_nothing_left_to_deliver() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    peer.set_recv_buffer_size(4096).unwrap();
    peer.connect(&l.local_addr().unwrap().into()).unwrap();
    let (mut ours, _) = l.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    // The peer reads nothing: what does not fit its window stays unacknowledged.
    let chunk = [7u8; 64 * 1024];
    while ours.write(&chunk).is_ok() {}
    assert!(tcp_unacknowledged(&ours) > 0);
    peer.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(peer);
    ours.set_nonblocking(false).unwrap();
    ours.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        ours.read(&mut b).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset)
    );
    // SIOCOUTQ still counts the bytes; none of them can be delivered.
    assert_eq!(tcp_unacknowledged(&ours), 0);
}

#[test]
fn accept_error_of_the_connection_retries_and_a_refusal_pauses() {
    for errno in [libc::ECONNABORTED, libc::EINTR, libc::EAGAIN, libc::EPROTO] {
        assert!(!accept_error_pauses(Some(errno)), "{errno}");
    }
    for errno in [
        libc::EMFILE,
        libc::ENFILE,
        libc::ENOBUFS,
        libc::ENOMEM,
        libc::EPERM,
        libc::EINVAL,
    ] {
        assert!(accept_error_pauses(Some(errno)), "{errno}");
    }
    assert!(accept_error_pauses(
        io::Error::other("no errno").raw_os_error()
    ));
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `net.core.rmem_max`: what `SO_RCVBUF` may ask for without `CAP_NET_ADMIN`.
fn rmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("read rmem_max")
        .trim()
        .parse()
        .expect("rmem_max")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}

#[test]
fn udp_receive_buffer_grows_to_what_was_asked_within_the_cap() {
    let (_, socket) = bind_udp(local()).expect("bind");
    let before = receive_buffer(&socket).expect("size");
    let want = 1 << 20;
    let got = raise_udp_receive_buffer(&socket, want).expect("raise");
    assert!(
        got >= want.min(rmem_max()) && got > before,
        "asked {want}, had {before}, got {got} (rmem_max {})",
        rmem_max()
    );
}

#[test]
fn udp_receive_buffer_goes_past_rmem_max_as_root() {
    // CI runs as root (as the privilege tests require): say so, never skip.
    assert!(is_root(), "this test needs root (SO_RCVBUFFORCE)");
    let (_, socket) = bind_udp(local()).expect("bind");
    let want = (2 * rmem_max()).min(1 << 30);
    let got = raise_udp_receive_buffer(&socket, want).expect("raise");
    // Exactly: Linux reports twice what it granted, and this is halved.
    assert_eq!(got, want, "asked {want} as root");
}

#[test]
fn busy_port_is_refused_even_to_a_reuseport_group_of_the_same_user() {
    let first = bind_tcp(local(), 16, AcceptStrategy::ReusePort, 2).expect("first group");
    for (strategy, workers) in [
        (AcceptStrategy::ReusePort, 2),
        (AcceptStrategy::ReusePort, 1),
        (AcceptStrategy::Shared, 2),
    ] {
        match bind_tcp(first.addr, 16, strategy, workers) {
            Err(BindError::AddrInUse { endpoint }) => {
                assert_eq!(endpoint, Endpoint::Tcp(first.addr));
            }
            other => panic!("{strategy:?} x{workers}: expected AddrInUse, got {other:?}"),
        }
    }
}

#[test]
fn reuseport_group_spreads_connections_over_every_socket() {
    let group = bind_tcp(local(), 256, AcceptStrategy::ReusePort, 2).expect("group");
    assert_eq!(group.sockets.len(), 2);
    let mut accepted = [0usize; 2];
    let mut clients = Vec::new();
    // The kernel hashes each connection (by source port) onto one socket
    // of the group: 100 connections all on one of two sockets would mean
    // the group is broken (or a chance of 2^-99).
    while accepted.contains(&0) {
        assert!(clients.len() < 100, "accepted per socket: {accepted:?}");
        clients.push(TcpStream::connect(group.addr).expect("connect"));
        for (i, l) in group.sockets.iter().enumerate() {
            loop {
                match l.accept() {
                    Ok(_) => accepted[i] += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("accept: {e}"),
                }
            }
        }
    }
}

// --- the address-in-use retry ---

/// An error of `kind` for `while_in_use`'s attempts.
fn failing<T>(kind: ErrorKind) -> io::Result<T> {
    Err(io::Error::from(kind))
}

#[test]
fn address_in_use_is_tried_again_until_it_is_free() {
    let mut tries = 0;
    let got = while_in_use(|| {
        tries += 1;
        if tries < 4 {
            failing(ErrorKind::AddrInUse)
        } else {
            Ok(tries)
        }
    });
    assert_eq!(got.expect("free on the fourth try"), 4);
}

#[test]
fn address_error_other_than_in_use_is_returned_at_once() {
    let mut tries = 0;
    let got: io::Result<()> = while_in_use(|| {
        tries += 1;
        failing(ErrorKind::PermissionDenied)
    });
    assert_eq!(got.map_err(|e| e.kind()), Err(ErrorKind::PermissionDenied));
    assert_eq!(tries, 1, "a refusal other than AddrInUse was tried again");
}

#[test]
fn address_still_in_use_after_the_wait_is_an_error() {
    let (took, tries, got) = bounded("while_in_use", || {
        let start = std::time::Instant::now();
        let mut tries = 0;
        let got: io::Result<()> = while_in_use(|| {
            tries += 1;
            failing(ErrorKind::AddrInUse)
        });
        (start.elapsed(), tries, got.map_err(|e| e.kind()))
    });
    assert_eq!(got, Err(ErrorKind::AddrInUse));
    assert!(
        took >= IN_USE_WAIT && tries > 1,
        "gave up after {took:?} and {tries} tries"
    );
}

/// Runs `f` on a thread of its own and returns its result; fails the test
/// if it takes more than 10 s (a loop that spins, here, instead of the
/// whole test binary hanging).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} still running after 10 s")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

// --- SO_REUSEPORT ---

#[test]
fn only_a_reuseport_group_of_several_workers_sets_so_reuseport() {
    for (strategy, workers, want) in [
        (AcceptStrategy::ReusePort, 2, true),
        // One worker needs no group: nobody else may join its address.
        (AcceptStrategy::ReusePort, 1, false),
        // Duplicates of one socket.
        (AcceptStrategy::Shared, 2, false),
    ] {
        let group = bind_tcp(local(), 16, strategy, workers).expect("bind");
        assert_eq!(group.sockets.len(), workers);
        for (i, s) in group.sockets.iter().enumerate() {
            let set = socket2::SockRef::from(s)
                .reuse_port()
                .expect("SO_REUSEPORT");
            assert_eq!(set, want, "{strategy:?} x{workers}: socket {i}");
        }
    }
}

// --- accepting ---

const TOKEN: mio::Token = mio::Token(7);

/// A listener on 127.0.0.1 registered with a poll of its own, as a worker's.
fn registered(
    socket: impl FnOnce(mio::net::TcpListener) -> ListenSocket,
) -> (mio::Poll, Listener, SocketAddr) {
    let poll = mio::Poll::new().expect("poll");
    let std = StdTcpListener::bind(local()).expect("bind");
    std.set_nonblocking(true).expect("non-blocking");
    let addr = std.local_addr().expect("address");
    let mut l = Listener::new(
        Endpoint::Tcp(addr),
        socket(mio::net::TcpListener::from_std(std)),
    );
    poll.registry()
        .register(l.socket.source(), TOKEN, mio::Interest::READABLE)
        .expect("register");
    (poll, l, addr)
}

/// Whether the listener is registered with `poll` (a modification of a
/// registration that is not there fails).
fn is_registered(poll: &mio::Poll, l: &mut Listener) -> bool {
    poll.registry()
        .reregister(l.socket.source(), TOKEN, mio::Interest::READABLE)
        .is_ok()
}

/// Waits (10 s at most) until the listener reports a connection waiting.
fn wait_readable(poll: &mut mio::Poll) {
    let mut events = mio::Events::with_capacity(8);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while events.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "no connection reported in 10 s");
        poll.poll(&mut events, Some(left)).expect("poll");
    }
}

#[test]
fn accept_with_connections_waiting_returns_each_then_none_without_pausing() {
    let (mut poll, mut l, addr) = registered(ListenSocket::Tcp);
    let clients: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    wait_readable(&mut poll);
    let now = Instant::from_millis(5_000);
    let mut counters = Counters::default();
    let mut peers = Vec::new();
    for _ in &clients {
        let (stream, peer) = l
            .accept_next(now, poll.registry(), &mut counters)
            .expect("a connection waiting");
        assert!(matches!(stream, Stream::Tcp(_)));
        peers.push(peer);
    }
    let want: Vec<Peer> = clients
        .iter()
        .map(|c| Peer::Tcp(c.local_addr().unwrap()))
        .collect();
    assert_eq!(peers, want);
    // None left: nothing to accept is not a failure.
    let (poll, mut l, counters, rest) = bounded("accept_next", move || {
        let rest = l.accept_next(now, poll.registry(), &mut counters).is_some();
        (poll, l, counters, rest)
    });
    assert!(!rest, "a third connection");
    assert_eq!(l.paused_until, None);
    assert!(is_registered(&poll, &mut l));
    assert_eq!(
        (counters.accept_errors, counters.accept_fd_exhausted),
        (0, 0)
    );
}

#[test]
fn tls_connection_accepted_must_finish_its_handshake_by_the_timeout() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(super::super::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], der)
        .unwrap();
    let acceptor = Arc::new(Acceptor {
        config: Arc::new(config),
        handshake_timeout: Duration::from_secs(7),
    });
    let (mut poll, mut l, addr) = registered(|s| ListenSocket::Tls(s, acceptor));
    let _client = TcpStream::connect(addr).unwrap();
    wait_readable(&mut poll);
    let mut counters = Counters::default();
    let (stream, _) = l
        .accept_next(Instant::from_millis(3_000), poll.registry(), &mut counters)
        .expect("a connection waiting");
    assert!(matches!(stream, Stream::Tls(_)));
    assert_eq!(stream.deadline(), Some(Instant::from_millis(10_000)));
}

/// Shuts a listening socket down: every accept on it then fails with
/// `EINVAL` (Linux), an accept error that pauses, as running out of
/// descriptors does.
#[cfg(target_os = "linux")]
fn break_listener(l: &Listener) {
    let ListenSocket::Tcp(s) = &l.socket else {
        unreachable!("a TCP listener")
    };
    socket2::SockRef::from(s)
        .shutdown(std::net::Shutdown::Both)
        .expect("shutdown");
}

#[test]
#[cfg(target_os = "linux")]
fn broken_listener_pauses_with_doubling_back_off_and_resumes_when_due() {
    let (poll, mut l, _) = registered(ListenSocket::Tcp);
    break_listener(&l);
    let (counters, pauses) = bounded("accept_next", move || {
        let mut counters = Counters::default();
        let mut now = Instant::from_millis(10_000);
        let mut pauses = Vec::new();
        for round in 0..6 {
            let got = l.accept_next(now, poll.registry(), &mut counters);
            assert!(
                got.is_none(),
                "round {round}: accepted on a broken listener"
            );
            let until = l.paused_until.expect("paused");
            pauses.push((until - now).as_micros());
            assert!(
                !is_registered(&poll, &mut l),
                "round {round}: still registered"
            );
            // A paused listener does not accept, and is not due a moment early.
            let early = until - Duration::from_micros(1);
            assert!(
                l.accept_next(early, poll.registry(), &mut counters)
                    .is_none()
            );
            assert!(
                !l.resume_if_due(early, poll.registry(), TOKEN),
                "round {round}: early"
            );
            assert_eq!(l.paused_until, Some(until));
            assert!(!is_registered(&poll, &mut l));
            assert!(
                l.resume_if_due(until, poll.registry(), TOKEN),
                "round {round}: due"
            );
            assert_eq!(l.paused_until, None);
            assert!(
                is_registered(&poll, &mut l),
                "round {round}: resumed unregistered"
            );
            now = until;
        }
        (counters, pauses)
    });
    assert_eq!(
        pauses,
        [100_000, 200_000, 400_000, 800_000, 1_000_000, 1_000_000],
        "pauses (µs)"
    );
    assert_eq!(
        (counters.accept_errors, counters.accept_fd_exhausted),
        (6, 0)
    );
}

#[test]
#[cfg(target_os = "linux")]
fn resume_that_cannot_register_stays_paused_for_the_back_off() {
    // Still registered: registering again fails (`EEXIST`).
    let (poll, mut l, _) = registered(ListenSocket::Tcp);
    let due = Instant::from_millis(4_000);
    l.paused_until = Some(due);
    assert!(!l.resume_if_due(due, poll.registry(), TOKEN));
    assert_eq!(l.paused_until, Some(due + MIN_BACKOFF));
}

/// Set in the child process of
/// `out_of_descriptors_pauses_and_keeps_the_waiting_connection`.
const FD_LIMIT_CHILD: &str = "RICOCHET_TEST_LISTENER_FD_LIMIT_CHILD";

#[test]
fn out_of_descriptors_pauses_and_keeps_the_waiting_connection() {
    const NAME: &str = "out_of_descriptors_pauses_and_keeps_the_waiting_connection";
    if std::env::var_os(FD_LIMIT_CHILD).is_none() {
        // The descriptor limit is the whole process's: lower it in a child
        // running only this test, never in the tests' own process.
        let module = module_path!().split_once("::").expect("crate::path").1;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 64 && exec \"$0\" --exact \"$1\" --test-threads 1 --nocapture")
            .arg(std::env::current_exe().expect("this test binary"))
            .arg(format!("{module}::{NAME}"))
            .env(FD_LIMIT_CHILD, "1")
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let (mut poll, mut l, addr) = registered(ListenSocket::Tcp);
    let client = TcpStream::connect(addr).unwrap();
    wait_readable(&mut poll);
    let mut held = Vec::new();
    let full = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) => break e,
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::EMFILE), "{full}");
    let now = Instant::from_millis(1_000);
    let mut counters = Counters::default();
    let (poll, mut l, mut counters, got) = bounded("accept_next", move || {
        let got = l.accept_next(now, poll.registry(), &mut counters).is_some();
        (poll, l, counters, got)
    });
    assert!(!got, "accepted with no descriptor left");
    assert_eq!(l.paused_until, Some(now + MIN_BACKOFF));
    assert_eq!(
        (counters.accept_fd_exhausted, counters.accept_errors),
        (1, 0)
    );
    // Descriptors free again: once due, the connection that waited is accepted.
    drop(held);
    assert!(l.resume_if_due(now + MIN_BACKOFF, poll.registry(), TOKEN));
    let (_, peer) = l
        .accept_next(now + MIN_BACKOFF, poll.registry(), &mut counters)
        .expect("the connection that waited");
    assert_eq!(peer, Peer::Tcp(client.local_addr().unwrap()));
}
