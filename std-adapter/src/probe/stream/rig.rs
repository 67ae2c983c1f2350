//! A test rig for one stream connection's I/O loop: a slot and its `Env`
//! as the event loop holds them, connected (as `connected` leaves it) to a
//! server socket the test drives (127.0.0.1:0), then stepped by hand with
//! [`Env::pump`] or [`Env::drive`], each wait bounded.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream as StdTcpStream};
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::super::control::StopHandle;
use super::super::progress::Progress;
use super::super::record::Recorder;
use super::super::report::ConnError;
use super::super::{Ctx, ProbeSpec, Stop, Target};
use super::conn::{Conn, Phase};
use super::failure::Failure;
use super::pump::Pumped;
use super::{Env, Link};
use crate::clock::Clock;

/// The longest any step of these tests waits for a socket.
pub(super) const STEP: StdDuration = StdDuration::from_secs(5);

/// A spec of `count` messages to `addr`, ping-pong, with a timeout so long
/// that nothing times out while a test steps through it.
pub(super) fn spec_to(addr: SocketAddr, count: u64) -> ProbeSpec {
    let mut s = ProbeSpec::new(Target::Tcp(vec![addr].into()));
    s.stop = Stop::Count(count);
    s.timeout = StdDuration::from_secs(60);
    s
}

/// A listener on 127.0.0.1:0 for the probe's connection.
pub(super) fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind the server")
}

/// Runs `test` on slot 0 of `spec` (one TCP target, `listener`'s) as the
/// event loop holds it once its connect completed: `connected` has made
/// its probe and driven it once. `test` gets the server's end, blocking,
/// its reads bounded by [`STEP`], to keep or to end.
pub(super) fn with_conn<const M: usize>(
    spec: &ProbeSpec,
    listener: &TcpListener,
    test: impl FnOnce(&mut Env<'_>, &mut Conn<M>, &mut Poll, StdTcpStream),
) {
    with_slot(spec, listener, 0, test);
}

/// [`with_conn`] for the slot of connection number `id`.
pub(super) fn with_slot<const M: usize>(
    spec: &ProbeSpec,
    listener: &TcpListener,
    id: usize,
    test: impl FnOnce(&mut Env<'_>, &mut Conn<M>, &mut Poll, StdTcpStream),
) {
    let progress = Progress::default();
    let stop = StopHandle::new();
    let clock = Clock::new();
    let ctx = Ctx::for_tests(spec, clock, &progress, &stop);
    let poll = Poll::new().expect("poll");
    let (tx, _rx) = mpsc::channel();
    let registry = poll.registry().try_clone().expect("registry");
    let now = clock.now();
    let rec = Recorder::new(&ctx, 0, &tx).expect("recorder");
    let mut env = Env::new(&ctx, registry, rec, spec.connections.max(2), now);
    // Slot 0 is being connected below; no other slot runs.
    env.queue.clear();
    env.connecting = 1;
    env.active = 1;
    let client = StdTcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (srv, _) = listener.accept().expect("accept");
    srv.set_read_timeout(Some(STEP)).expect("read timeout");
    client.set_nonblocking(true).expect("non-blocking");
    let mut sock = TcpStream::from_std(client);
    sock.set_nodelay(true).expect("nodelay");
    env.registry
        .register(&mut sock, Token(0), Interest::READABLE | Interest::WRITABLE)
        .expect("register");
    let mut c = Conn::new(id, 0, now);
    c.sock = Some(Link::Tcp(sock));
    c.phase = Phase::Connecting {
        attempt: 0,
        deadline: now + spec.timeout.into(),
    };
    env.connected(&mut c, 0, clock.now());
    let mut poll = poll;
    test(&mut env, &mut c, &mut poll, srv);
}

/// What a step ended with, comparable: `Ok(true)` closed cleanly,
/// `Ok(false)` still open, or the failure as it is recorded.
pub(super) fn outcome(r: Result<Pumped, Failure>) -> Result<bool, ConnError> {
    match r {
        Ok(Pumped::Open) => Ok(false),
        Ok(Pumped::Closed) => Ok(true),
        Err(f) => Err(f.into_error(0)),
    }
}

pub(super) fn stats<const M: usize>(c: &Conn<M>) -> ricochet_core::probe::ProbeStats {
    *c.probe.as_ref().expect("the probe").stats()
}

fn tcp<const M: usize>(c: &Conn<M>) -> &TcpStream {
    match c.sock.as_ref() {
        Some(Link::Tcp(s)) => s,
        _ => panic!("a TCP link"),
    }
}

/// Waits (bounded) until bytes or the end of the stream are queued on the
/// probe's socket, then marks it readable, as its readiness event would.
pub(super) fn await_readable<const M: usize>(poll: &mut Poll, c: &mut Conn<M>) {
    let deadline = StdInstant::now() + STEP;
    let mut events = Events::with_capacity(8);
    loop {
        match tcp(c).peek(&mut [0; 1]) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("peek: {e}"),
        }
        let left = deadline
            .checked_duration_since(StdInstant::now())
            .expect("bytes for the probe in time");
        poll.poll(&mut events, Some(left)).expect("poll");
    }
    c.readable = true;
}

/// Waits (bounded) for an event of the probe's socket that `what` accepts
/// (leaving what it tells unread).
pub(super) fn await_event(poll: &mut Poll, what: impl Fn(&Event) -> bool) {
    let deadline = StdInstant::now() + STEP;
    let mut events = Events::with_capacity(8);
    loop {
        let left = deadline
            .checked_duration_since(StdInstant::now())
            .expect("the event in time");
        poll.poll(&mut events, Some(left)).expect("poll");
        if events.iter().any(|e| e.token() == Token(0) && what(e)) {
            return;
        }
    }
}

/// Reads `n` bytes the probe sent to the server.
pub(super) fn receive(srv: &mut StdTcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    srv.read_exact(&mut buf).expect("the probe's bytes");
    buf
}

/// Reads `n` bytes the probe sent and sends them back.
pub(super) fn echo(srv: &mut StdTcpStream, n: usize) -> Vec<u8> {
    let bytes = receive(srv, n);
    srv.write_all(&bytes).expect("echo");
    bytes
}

/// Ends the server's side with a reset (`SO_LINGER` 0), not a FIN.
pub(super) fn reset(srv: StdTcpStream) {
    socket2::SockRef::from(&srv)
        .set_linger(Some(StdDuration::ZERO))
        .expect("SO_LINGER");
    drop(srv);
}
