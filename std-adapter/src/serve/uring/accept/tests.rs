//! A worker's listeners on a real ring whose requests are queued and, where
//! a test says so, submitted: arming, admitting, pausing and stopping.

use std::io::Read;
use std::net::{TcpListener as StdTcpListener, TcpStream};
use std::sync::Arc;

use io_uring::IoUring;
use io_uring::types::{SubmitArgs, Timespec};

use super::super::super::config::IoBackend;
use super::super::super::{Phase, Shared};
use super::super::bufs::BufRing;
use super::*;

fn shared(max_connections: usize) -> Arc<Shared> {
    Shared::for_tests(max_connections, IoBackend::Uring, |_| {})
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A TCP listener on 127.0.0.1 for a worker, and its address.
fn tcp_listener() -> (Listener, std::net::SocketAddr) {
    let l = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("address");
    (
        Listener::new(Endpoint::Tcp(addr), StdListener::Tcp(l)),
        addr,
    )
}

/// Runs `f` on a worker with `listeners`, `--max-connections`
/// `max_connections` and a ring of its own (nothing submitted unless `f` does).
fn with_worker<R>(
    listeners: Vec<Listener>,
    max_connections: usize,
    f: impl FnOnce(&mut Worker<'_>) -> R,
) -> R {
    let mut ring = IoUring::new(64).expect("ring");
    let shared = shared(max_connections);
    let bufs = BufRing::new(16, 4096, 0).expect("buffers");
    let waker = std::fs::File::open("/dev/null").expect("a descriptor");
    let mut w = Worker::new(0, shared, ring.split(), bufs, waker.into());
    w.listeners = listeners;
    f(&mut w)
}

/// Requests queued, not yet submitted.
fn queued(w: &mut Worker<'_>) -> usize {
    w.sq.sync();
    w.sq.len()
}

/// A connected client and the server's end of it, accepted without the ring.
fn accepted(l: &StdTcpListener) -> (TcpStream, OwnedFd) {
    let client = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (server, _) = l.accept().expect("accept");
    (client, server.into())
}

#[test]
fn listener_kind_follows_its_socket() {
    let (tcp, _) = tcp_listener();
    assert_eq!(tcp.kind(), StreamKind::Tcp);
    let dir = std::env::temp_dir().join(format!("ricochet-accept-kind-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let unix = std::os::unix::net::UnixListener::bind(&dir).expect("bind unix");
    let _ = std::fs::remove_file(&dir);
    let l = Listener::new(
        Endpoint::Tcp(([127, 0, 0, 1], 0).into()),
        StdListener::Unix(unix),
    );
    assert_eq!(l.kind(), StreamKind::Unix);
}

#[test]
fn idle_listener_armed_once_accepts_and_admits_the_connection() {
    let (l, addr) = tcp_listener();
    with_worker(vec![l], 8, |w| {
        w.arm_accept(0);
        assert!(w.listeners[0].armed);
        assert_eq!((queued(w), w.inflight), (1, 1));
        // Already armed: no second accept.
        w.arm_accept(0);
        assert_eq!((queued(w), w.inflight), (1, 1));
        let client = TcpStream::connect(addr).expect("connect");
        let ts = Timespec::from(std::time::Duration::from_secs(10));
        w.submitter
            .submit_with_args(1, &SubmitArgs::new().timespec(&ts))
            .expect("submit");
        w.cq.sync();
        let cqe = w.cq.next().expect("the accept's completion");
        assert_eq!(cqe.user_data(), user_data(Op::Accept, 0, 0));
        assert!(cqe.result() >= 0, "accept failed: {}", -cqe.result());
        assert!(
            io_uring::cqueue::more(cqe.flags()),
            "a multishot accept goes on"
        );
        w.on_accept(0, cqe.result(), false, at(1_000));
        assert_eq!(w.conns.len(), 1);
        assert_eq!(w.counters.tcp.accepted, 1);
        let key = w.conns.keys()[0];
        let conn = w.conns.get(key).expect("the connection");
        assert_eq!(conn.peer, Peer::Tcp(client.local_addr().unwrap()));
        assert_eq!(w.listeners[0].paused_until, None);
        assert!(w.listeners[0].armed, "the multishot accept still runs");
        // Its receive is queued; no second accept.
        assert_eq!(queued(w), 1);
    });
}

#[test]
fn connection_past_max_connections_is_refused_and_closed() {
    let l = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    with_worker(Vec::new(), 1, |w| {
        let (_first, fd) = accepted(&l);
        w.admit(fd, StreamKind::Tcp, at(1_000));
        assert_eq!(w.conns.len(), 1);
        let (mut second, fd) = accepted(&l);
        w.admit(fd, StreamKind::Tcp, at(1_000));
        assert_eq!(w.conns.len(), 1, "over the limit, yet admitted");
        assert_eq!((w.counters.tcp.accepted, w.counters.tcp.rejected), (1, 1));
        // The refused connection is closed, not leaked.
        second
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 1];
        match second.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("refused connection still open: {other:?}"),
        }
    });
}

#[test]
fn out_of_descriptors_pauses_counts_and_cancels_the_armed_accept() {
    let (l, _) = tcp_listener();
    with_worker(vec![l], 8, |w| {
        w.arm_accept(0);
        w.on_accept(0, -libc::EMFILE, false, at(1_000));
        let l = &w.listeners[0];
        assert_eq!(l.paused_until, Some(at(1_100)));
        assert_eq!(
            (w.counters.accept_fd_exhausted, w.counters.accept_errors),
            (1, 0)
        );
        assert_eq!((queued(w), w.inflight), (2, 2), "the accept's cancel");
        // Its last completion: the cancel. Paused, so not armed again.
        w.on_accept(0, -libc::ECANCELED, true, at(1_001));
        let l = &w.listeners[0];
        assert!(!l.armed);
        assert!(l.socket.is_some(), "closed while not draining");
        assert_eq!(
            l.paused_until,
            Some(at(1_100)),
            "the cancel changes no pause"
        );
        assert_eq!(
            (w.counters.accept_fd_exhausted, w.counters.accept_errors),
            (1, 0)
        );
        assert_eq!(queued(w), 2);
        w.arm_accept(0);
        assert_eq!(queued(w), 2, "armed while paused");
    });
}

#[test]
fn failing_accepts_pause_with_doubling_back_off_up_to_a_second() {
    let (l, _) = tcp_listener();
    with_worker(vec![l], 8, |w| {
        let mut now = at(10_000);
        let mut pauses = Vec::new();
        for _ in 0..6 {
            w.on_accept(0, -libc::ENOMEM, true, now);
            let until = w.listeners[0].paused_until.expect("paused");
            pauses.push((until - now).as_micros());
            // Nothing armed: nothing to cancel, and not armed while paused.
            assert_eq!(queued(w), 0);
            w.listeners[0].paused_until = None;
            now = until;
        }
        assert_eq!(
            pauses,
            [100_000, 200_000, 400_000, 800_000, 1_000_000, 1_000_000],
            "pauses (µs)"
        );
        assert_eq!(
            (w.counters.accept_errors, w.counters.accept_fd_exhausted),
            (6, 0)
        );
    });
}

#[test]
fn accept_error_of_the_connection_neither_pauses_nor_counts() {
    let (l, _) = tcp_listener();
    with_worker(vec![l], 8, |w| {
        w.arm_accept(0);
        for errno in [libc::ECONNABORTED, libc::ECANCELED] {
            w.on_accept(0, -errno, false, at(1_000));
        }
        assert_eq!(w.listeners[0].paused_until, None);
        assert_eq!(
            (w.counters.accept_errors, w.counters.accept_fd_exhausted),
            (0, 0)
        );
        assert_eq!(queued(w), 1, "only the accept");
    });
}

#[test]
fn last_accept_completion_arms_the_listener_again() {
    let (l, _) = tcp_listener();
    with_worker(vec![l], 8, |w| {
        w.arm_accept(0);
        w.on_accept(0, -libc::ECONNABORTED, true, at(1_000));
        let l = &w.listeners[0];
        assert!(l.armed && l.socket.is_some());
        assert_eq!((queued(w), w.inflight), (2, 2), "a new accept");
    });
}

#[test]
fn draining_cancels_armed_accepts_and_closes_each_listener_once_its_accept_ends() {
    let (armed, _) = tcp_listener();
    let (idle, _) = tcp_listener();
    with_worker(vec![armed, idle], 8, |w| {
        w.arm_accept(0);
        assert_eq!(queued(w), 1);
        w.shared.advance(Phase::Draining);
        assert!(w.follow_phase(at(1_000)));
        // The armed one's accept is cancelled; the idle one is closed at once.
        assert_eq!(queued(w), 2, "one cancel");
        assert!(w.listeners[0].socket.is_some());
        assert!(w.listeners[1].socket.is_none());
        // An accept that ends while draining is not armed again.
        w.on_accept(0, -libc::ECANCELED, true, at(1_001));
        assert!(w.listeners[0].socket.is_none());
        assert!(!w.listeners[0].armed);
        assert_eq!(queued(w), 2);
    });
}
