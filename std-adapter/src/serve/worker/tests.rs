//! An epoll worker built as `run` builds it, turned by hand: routing
//! events, the accept budget, admission, and stopping. The worker on its
//! own thread is in [`thread`], a UDP queue overflowing in [`udp_queue`].

use std::io::{Read, Write};
use std::net::TcpStream;

use ricochet_core::{DatagramPolicy, PolicyConfig};

use super::super::Phase;
use super::super::config::{AcceptStrategy, IoBackend};
use super::super::listener::bind_tcp;
use super::*;

mod thread;
mod tls;
#[cfg(target_os = "linux")]
mod udp_queue;

fn shared(max_connections: usize) -> Arc<Shared> {
    Shared::for_tests(max_connections, IoBackend::Epoll, |_| {})
}

/// A worker serving `listeners` new TCP listeners on 127.0.0.1 (backlog
/// 1024), registered as `prepare` registers them; and their addresses.
fn worker(listeners: usize, max_connections: usize) -> (Worker, Vec<std::net::SocketAddr>) {
    let (w, addrs, _) = worker_with_udp(listeners, 0, max_connections);
    (w, addrs)
}

/// As [`worker`], with `udp` UDP sockets too; and their addresses.
fn worker_with_udp(
    listeners: usize,
    udp: usize,
    max_connections: usize,
) -> (Worker, Vec<std::net::SocketAddr>, Vec<std::net::SocketAddr>) {
    worker_with_tuned_udp(listeners, udp, max_connections, |_| {})
}

/// As [`worker_with_udp`], each UDP socket set up by `tune` first.
fn worker_with_tuned_udp(
    listeners: usize,
    udp: usize,
    max_connections: usize,
    tune: impl Fn(&std::net::UdpSocket),
) -> (Worker, Vec<std::net::SocketAddr>, Vec<std::net::SocketAddr>) {
    let mut udp_addrs = Vec::new();
    let mut endpoints = Vec::new();
    for _ in 0..udp {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        s.set_nonblocking(true).expect("non-blocking");
        tune(&s);
        let addr = s.local_addr().expect("address");
        udp_addrs.push(addr);
        endpoints.push(UdpEndpoint::new(
            mio::net::UdpSocket::from_std(s),
            addr,
            Box::new(DatagramPolicy::new(PolicyConfig::DEFAULT)),
            PolicyConfig::DEFAULT.max_datagram,
        ));
    }
    let mut addrs = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..listeners {
        let group =
            bind_tcp(([127, 0, 0, 1], 0).into(), 1024, AcceptStrategy::Shared, 1).expect("bind");
        addrs.push(group.addr);
        let s = group.sockets.into_iter().next().expect("a socket");
        sockets.push((
            Endpoint::Tcp(group.addr),
            ListenSocket::Tcp(mio::net::TcpListener::from_std(s)),
        ));
    }
    let mut setup = Setup {
        index: 0,
        poll: Poll::new().expect("poll"),
        listeners: sockets,
        udp: endpoints,
    };
    register(&mut setup).expect("register");
    let shared = shared(max_connections);
    let w = Worker {
        index: 0,
        poll: setup.poll,
        clock: shared.clock,
        conns: ConnTable::new(0, Arc::clone(&shared)),
        shared,
        listeners: setup
            .listeners
            .into_iter()
            .map(|(endpoint, socket)| Listener::new(endpoint, socket))
            .collect(),
        udp: setup.udp,
        counters: Counters::default(),
        throttles: Throttles::new(),
        busy: BusyPoll::new(StdDuration::ZERO),
    };
    (w, addrs, udp_addrs)
}

/// One turn of `Worker::run`: waits (100 ms at most), serves the events,
/// the leftovers and the timers, publishes.
fn turn(w: &mut Worker) {
    let mut events = Events::with_capacity(1024);
    let timeout = w.poll_timeout().map_or(StdDuration::from_millis(100), |t| {
        t.min(StdDuration::from_millis(100))
    });
    w.poll.poll(&mut events, Some(timeout)).expect("poll");
    let now = w.clock.now();
    for event in events.iter() {
        w.handle_event(event, now);
    }
    w.serve_leftovers(now);
    w.fire_timers(now);
    w.publish();
}

/// Turns the worker until `done`, 10 s at most.
fn turn_until(w: &mut Worker, what: &str, mut done: impl FnMut(&mut Worker) -> bool) {
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while !done(w) {
        assert!(std::time::Instant::now() < deadline, "{what}: not in 10 s");
        turn(w);
    }
}

/// Whether the peer closed `c` (end of stream or reset), waiting 10 s at most.
fn closed(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn listener_event_past_the_accept_budget_leaves_the_rest_pending() {
    // No room at all: every connection accepted is refused and closed, so
    // none is queued and only the listener can keep the worker awake.
    let (mut w, addrs) = worker(1, 0);
    let n = ACCEPT_BUDGET + 2;
    let mut clients: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(addrs[0]).unwrap())
        .collect();
    assert_eq!(w.poll_timeout(), None, "nothing to do, no deadline");
    let mut events = Events::with_capacity(16);
    w.poll
        .poll(&mut events, Some(StdDuration::from_secs(10)))
        .expect("poll");
    assert!(!events.is_empty(), "no event for the listener in 10 s");
    let now = w.clock.now();
    for event in events.iter() {
        w.handle_event(event, now);
    }
    assert_eq!(
        w.counters.tcp.rejected, ACCEPT_BUDGET as u64,
        "one turn's budget"
    );
    assert!(w.listeners[0].pending);
    assert_eq!(
        w.poll_timeout(),
        Some(StdDuration::ZERO),
        "connections left waiting"
    );
    w.serve_leftovers(now);
    assert_eq!(w.counters.tcp.rejected, n as u64, "the rest, next turn");
    assert!(!w.listeners[0].pending);
    assert_eq!(w.poll_timeout(), None);
    assert_eq!(
        (
            w.conns.len(),
            w.shared
                .stats
                .open()
                .load(std::sync::atomic::Ordering::Relaxed)
        ),
        (0, 0)
    );
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(closed(c), "refused connection {i} left open");
    }
}

#[test]
fn connection_on_each_listener_is_admitted_and_echoed() {
    let (mut w, addrs) = worker(2, 8);
    let mut clients: Vec<TcpStream> = addrs
        .iter()
        .map(|a| TcpStream::connect(a).unwrap())
        .collect();
    turn_until(&mut w, "two connections admitted", |w| w.conns.len() == 2);
    assert_eq!(w.counters.tcp.accepted, 2);
    for (i, c) in clients.iter_mut().enumerate() {
        c.set_nonblocking(true).unwrap();
        let msg = format!("ping {i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut got = Vec::new();
        turn_until(&mut w, "the echo", |_| {
            let mut b = [0u8; 64];
            match c.read(&mut b) {
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
            }
            got.len() >= msg.len()
        });
        assert_eq!(got, msg.as_bytes());
    }
    // A peer that ends its side gets a clean end, not a reset.
    let mut c = clients.pop().unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    turn_until(&mut w, "the close", |w| w.conns.len() == 1);
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    assert!(
        c.read_to_end(&mut rest).is_ok(),
        "reset instead of a clean end"
    );
    // The counters reach the server's stats.
    let s = w.shared.stats.snapshot();
    assert_eq!(s.streams().accepted, 2);
}

/// Reads what `c` (non-blocking) has now into `into`.
fn read_now(c: &mut TcpStream, into: &mut Vec<u8>) {
    let mut b = [0u8; 16 * 1024];
    loop {
        match c.read(&mut b) {
            Ok(0) => return,
            Ok(n) => into.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("client read: {e}"),
        }
    }
}

#[test]
fn bytes_and_fin_reported_by_one_event_are_echoed_then_the_connection_closes() {
    let (mut w, addrs) = worker(1, 8);
    // Both queued before the worker accepts: the connection's first event
    // reports the bytes and the peer's FIN at once. The read that takes
    // the bytes is short, and must not end the reading before the FIN.
    let mut c = TcpStream::connect(addrs[0]).unwrap();
    c.write_all(b"bye").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    turn_until(&mut w, "admitted", |w| w.counters.tcp.accepted == 1);
    turn_until(&mut w, "the connection closed", |w| w.conns.is_empty());
    c.set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("a clean end");
    assert_eq!(back, b"bye");
}

#[test]
fn echo_stalled_by_a_peer_that_stops_reading_resumes_when_it_reads_again() {
    let (mut w, addrs) = worker(1, 8);
    // Little room on the way back (the client's receive buffer, the
    // server's send buffer): the echo stalls long before the client's
    // 64 KiB are all written, and only a writable event resumes it.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addrs[0].into()).unwrap();
    let mut c: TcpStream = s.into();
    c.set_nonblocking(true).unwrap();
    turn_until(&mut w, "admitted", |w| w.conns.len() == 1);
    let key = w.conns.keys()[0];
    match &w.conns.get(key).expect("open").stream {
        Stream::Tcp(s) => socket2::SockRef::from(s)
            .set_send_buffer_size(4096)
            .unwrap(),
        other => panic!("not TCP: {other:?}"),
    }
    let sent: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut at = 0;
    turn_until(&mut w, "the client's bytes written, none read", |_| {
        match c.write(&sent[at..]) {
            Ok(n) => at += n,
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
        }
        at == sent.len()
    });
    let mut back = Vec::new();
    turn_until(&mut w, "the whole echo, read at last", |_| {
        read_now(&mut c, &mut back);
        back.len() >= sent.len()
    });
    assert!(back == sent, "bytes differ or out of order");
}

#[test]
fn draining_stops_accepting_and_exit_releases_every_connection() {
    let (mut w, addrs) = worker(1, 8);
    let mut c = TcpStream::connect(addrs[0]).unwrap();
    turn_until(&mut w, "admitted", |w| w.conns.len() == 1);
    w.stop_accepting();
    assert!(w.listeners.is_empty(), "listeners still open");
    w.release_all();
    assert_eq!(w.conns.len(), 0);
    assert!(closed(&mut c), "connection left open at exit");
}

#[test]
fn datagram_on_each_udp_socket_is_echoed() {
    let (mut w, _, addrs) = worker_with_udp(0, 2, 8);
    for (i, addr) in addrs.iter().enumerate() {
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_nonblocking(true).unwrap();
        let msg = format!("datagram {i}");
        c.send_to(msg.as_bytes(), addr).unwrap();
        let mut got = None;
        turn_until(&mut w, "the echo", |_| {
            let mut b = [0u8; 64];
            match c.recv_from(&mut b) {
                Ok((n, from)) => got = Some((b[..n].to_vec(), from)),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
            }
            got.is_some()
        });
        assert_eq!(got, Some((msg.into_bytes(), *addr)));
    }
}

#[test]
fn paused_listener_resumed_when_due_accepts_on_its_own_events() {
    let (mut w, addrs) = worker(2, 8);
    // Listener 1 paused (as after running out of descriptors), due now.
    let now = w.clock.now();
    let l = &mut w.listeners[1];
    w.poll
        .registry()
        .deregister(l.socket.source())
        .expect("deregister");
    l.paused_until = Some(now);
    w.serve_leftovers(now);
    assert_eq!(w.listeners[1].paused_until, None, "not resumed");
    // A connection after the resume arrives through the listener's event.
    let _c = TcpStream::connect(addrs[1]).unwrap();
    turn_until(&mut w, "admitted", |w| w.conns.len() == 1);
}

#[test]
fn connection_that_cannot_be_registered_is_closed_counted_and_gives_its_place_back() {
    // Room for one connection: the one that failed must not keep it.
    let (mut w, addrs) = worker(1, 1);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, peer) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    let mut s = mio::net::TcpStream::from_std(s);
    // Already in the worker's epoll set: registering it again fails (EEXIST).
    w.poll
        .registry()
        .register(&mut s, Token(1 << 40), Interest::READABLE)
        .expect("first registration");
    let now = w.clock.now();
    w.admit(Stream::Tcp(s), Peer::Tcp(peer), now);
    assert_eq!(w.conns.len(), 0, "kept without its readiness events");
    assert_eq!(w.counters.accept_errors, 1);
    w.publish();
    let s = w.shared.stats.snapshot();
    assert_eq!(s.accept_errors, 1, "not in the server's stats");
    assert_eq!(
        w.shared
            .stats
            .open()
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "its place kept"
    );
    assert!(closed(&mut c), "the connection left open");
    // The worker goes on: the next connection takes the place and is echoed.
    let mut c = TcpStream::connect(addrs[0]).unwrap();
    turn_until(&mut w, "the next one admitted", |w| w.conns.len() == 1);
    c.set_nonblocking(true).unwrap();
    c.write_all(b"next").unwrap();
    let mut got = Vec::new();
    turn_until(&mut w, "the echo", |_| {
        let mut b = [0u8; 16];
        match c.read(&mut b) {
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
        }
        got.len() >= 4
    });
    assert_eq!(got, b"next");
}
