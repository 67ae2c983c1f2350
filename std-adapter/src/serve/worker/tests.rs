//! An epoll worker built as `run` builds it, turned by hand: routing
//! events, the accept budget, admission, and stopping.

use std::io::{Read, Write};
use std::net::TcpStream;

use ricochet_core::{DatagramPolicy, PolicyConfig};

use super::super::Phase;
use super::super::config::{AcceptStrategy, IoBackend};
use super::super::listener::bind_tcp;
use super::*;

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
    let mut udp_addrs = Vec::new();
    let mut endpoints = Vec::new();
    for _ in 0..udp {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        s.set_nonblocking(true).expect("non-blocking");
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
fn worker_thread_serves_until_the_server_aborts_then_closes_what_is_left() {
    let group = bind_tcp(([127, 0, 0, 1], 0).into(), 64, AcceptStrategy::Shared, 1).expect("bind");
    let addr = group.addr;
    let socket = group.sockets.into_iter().next().expect("a socket");
    let mut prepared = prepare(vec![WorkerSockets {
        index: 0,
        listeners: vec![(Endpoint::Tcp(addr), StdListener::Tcp(socket))],
        udp: Vec::new(),
    }])
    .expect("prepare");
    let mut shared = shared(8);
    Arc::get_mut(&mut shared).expect("not shared yet").wakers =
        std::mem::take(&mut prepared.wakers);
    let starter = prepared.starters.pop().expect("a starter");
    let (tx, rx) = std::sync::mpsc::channel();
    let theirs = Arc::clone(&shared);
    std::thread::spawn(move || tx.send(starter(theirs).map_err(|e| e.to_string())));
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).expect("the echo");
    assert_eq!(&b, b"ping");
    shared.advance(Phase::Abort);
    let result = rx
        .recv_timeout(StdDuration::from_secs(10))
        .expect("the worker did not stop in 10 s");
    assert_eq!(result, Ok(()));
    assert!(
        closed(&mut c),
        "connection left open after the worker stopped"
    );
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
