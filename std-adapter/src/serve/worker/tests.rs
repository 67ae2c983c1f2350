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

/// A worker thread of [`spawn_worker`].
struct Running {
    /// Its listener's address.
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<()>,
    /// What `run` returned.
    result: std::sync::mpsc::Receiver<Result<(), String>>,
}

/// A worker thread named `name`, built by `prepare` on a new TCP listener
/// as `spawn` builds it, `tune` applied to its settings.
fn spawn_worker(name: &str, tune: impl FnOnce(&mut super::super::Settings)) -> Running {
    let group = bind_tcp(([127, 0, 0, 1], 0).into(), 64, AcceptStrategy::Shared, 1).expect("bind");
    let addr = group.addr;
    let socket = group.sockets.into_iter().next().expect("a socket");
    let mut prepared = prepare(vec![WorkerSockets {
        index: 0,
        listeners: vec![(Endpoint::Tcp(addr), StdListener::Tcp(socket))],
        udp: Vec::new(),
    }])
    .expect("prepare");
    let mut shared = Shared::for_tests(8, IoBackend::Epoll, tune);
    Arc::get_mut(&mut shared).expect("not shared yet").wakers =
        std::mem::take(&mut prepared.wakers);
    let starter = prepared.starters.pop().expect("a starter");
    let (tx, rx) = std::sync::mpsc::channel();
    let theirs = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(starter(theirs).map_err(|e| e.to_string()));
        })
        .expect("spawn");
    Running {
        addr,
        shared,
        thread,
        result: rx,
    }
}

/// Sends `ping` on a new connection to `addr` and reads its echo (10 s at most).
fn echo_once(addr: std::net::SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).expect("the echo");
    assert_eq!(&b, b"ping");
    c
}

/// Ends the worker thread (abort), checks `run` returned `Ok` and joins it.
fn abort_and_join(w: Running) {
    w.shared.advance(Phase::Abort);
    let result = w
        .result
        .recv_timeout(StdDuration::from_secs(10))
        .expect("the worker did not stop in 10 s");
    assert_eq!(result, Ok(()));
    w.thread.join().expect("the worker thread panicked");
}

#[test]
fn worker_thread_serves_until_the_server_aborts_then_closes_what_is_left() {
    let w = spawn_worker("ricochet-w-abort", |_| {});
    let mut c = echo_once(w.addr);
    abort_and_join(w);
    assert!(
        closed(&mut c),
        "connection left open after the worker stopped"
    );
}

#[test]
fn busy_polling_worker_serves_the_events_its_spin_finds() {
    // It spins on a non-blocking check before sleeping: what the check
    // finds must be served, not lost to the next check (edge-triggered,
    // nothing reports it again).
    let w = spawn_worker("ricochet-w-busy", |s| {
        s.busy_poll = StdDuration::from_millis(50);
    });
    for _ in 0..3 {
        echo_once(w.addr);
    }
    abort_and_join(w);
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

/// One UDP socket with the smallest receive queue the kernel allows, its
/// queue's drops reported (as the server sets its sockets up): 100
/// datagrams overflow it, then markers follow until one is echoed (a
/// datagram queued after the drops carries their count; one sent while
/// the queue is still full is dropped too). `serve` serves the socket
/// once. Returns the worker and how many datagrams were sent.
#[cfg(target_os = "linux")]
fn overflow_a_udp_queue(mut serve: impl FnMut(&mut Worker)) -> (Worker, u64) {
    let (mut w, _, addrs) = worker_with_tuned_udp(0, 1, 8, |s| {
        socket2::SockRef::from(s)
            .set_recv_buffer_size(1)
            .expect("SO_RCVBUF");
        super::super::udp::report_destinations(s).expect("report destinations");
    });
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_nonblocking(true).unwrap();
    let mut sent = 100;
    for _ in 0..sent {
        c.send_to(&[0u8; 64], addrs[0]).unwrap();
    }
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    'marker: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no marker echoed in 10 s"
        );
        c.send_to(b"marker", addrs[0]).unwrap();
        sent += 1;
        serve(&mut w);
        let mut b = [0u8; 64];
        while let Ok((n, _)) = c.recv_from(&mut b) {
            if &b[..n] == b"marker" {
                break 'marker;
            }
        }
    }
    (w, sent)
}

/// What the worker counted of a UDP queue's overflow: every datagram sent
/// was either received or dropped by the kernel, and the server's stats say so.
#[cfg(target_os = "linux")]
fn assert_every_datagram_received_or_counted_dropped(w: &mut Worker, sent: u64) {
    let drops = w.counters.udp_queue_drops;
    assert!(drops > 0, "no drop counted: {:?}", w.counters.udp);
    assert_eq!(
        w.counters.udp.received + drops,
        sent,
        "{:?}",
        w.counters.udp
    );
    w.publish();
    assert_eq!(w.shared.stats.snapshot().udp_queue_drops, drops);
}

#[cfg(target_os = "linux")]
#[test]
fn udp_queue_overflow_read_on_the_sockets_event_is_counted_as_queue_drops() {
    let (mut w, sent) = overflow_a_udp_queue(turn);
    assert_every_datagram_received_or_counted_dropped(&mut w, sent);
}

#[cfg(target_os = "linux")]
#[test]
fn udp_queue_overflow_read_as_a_leftover_of_the_budget_is_counted_as_queue_drops() {
    // The socket is served only as left over from an earlier turn's
    // budget (`pending`), never on its event.
    let (mut w, sent) = overflow_a_udp_queue(|w| {
        w.udp[0].pending = true;
        let now = w.clock.now();
        w.serve_leftovers(now);
    });
    assert_every_datagram_received_or_counted_dropped(&mut w, sent);
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

/// Whether the thread named `name` of this process sleeps now (state `S`
/// in `/proc`): where an idle worker sleeps is its `epoll_wait`.
#[cfg(target_os = "linux")]
fn thread_sleeps(name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    let (named, sleeping) = (format!("({name}) "), format!("({name}) S "));
    tasks.flatten().any(|task| {
        // `TID (NAME) STATE ...`; a thread gone meanwhile reads as empty.
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        stat.contains(&named) && stat.contains(&sleeping)
    })
}

/// A signal handled on the worker's thread interrupts its `epoll_wait`
/// (never restarted, `SA_RESTART` or not; the server's signal handlers run
/// on whichever thread the kernel picks): the worker waits again.
#[cfg(target_os = "linux")]
#[test]
#[allow(unsafe_code)]
fn signal_interrupting_the_workers_wait_does_not_stop_it() {
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    // A signal nothing else in this process uses, with a handler.
    let signal = libc::SIGRTMIN() + 8;
    let handled = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal, Arc::clone(&handled)).unwrap();
    let name = "ricochet-eintr"; // 15 bytes at most in `/proc`
    let w = spawn_worker(name, |_| {});
    let thread = &w.thread;
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    for i in 0..3 {
        // Once the worker sleeps in its wait (or is gone), a signal to it.
        while !thread_sleeps(name) && !thread.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "signal {i}: not asleep in 10 s"
            );
            std::thread::yield_now();
        }
        if thread.is_finished() {
            break;
        }
        handled.store(false, Ordering::SeqCst);
        // SAFETY: the thread is not joined yet, so its id is valid.
        unsafe { libc::pthread_kill(thread.as_pthread_t(), signal) };
        while !handled.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "signal {i}: not handled in 10 s"
            );
            std::thread::yield_now();
        }
    }
    assert!(
        !thread.is_finished(),
        "the worker stopped: {:?}",
        w.result.try_recv()
    );
    echo_once(w.addr);
    abort_and_join(w);
}
