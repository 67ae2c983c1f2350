//! A test rig for one socket's I/O loop: a probe socket and its `Env`
//! as the event loop holds them, stepped by hand against a server socket
//! the test drives (127.0.0.1:0), each step bounded.

use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use mio::{Events, Poll};

use super::super::control::StopHandle;
use super::super::progress::Progress;
use super::super::record::Recorder;
use super::super::{Ctx, ProbeSpec, Stop, Target};
use super::{Conn, Env, new_probe};
use crate::clock::Clock;

/// The longest any step of these tests waits for its socket.
pub(super) const STEP: StdDuration = StdDuration::from_secs(5);

/// A spec of `count` datagrams to `addr`, ping-pong, with a timeout so
/// long that no datagram is overdue (a fiftieth of it) or lost while a
/// test steps through it.
pub(super) fn spec_to(addr: SocketAddr, count: u64) -> ProbeSpec {
    let mut s = ProbeSpec::new(Target::Udp(vec![addr].into()));
    s.stop = Stop::Count(count);
    s.timeout = StdDuration::from_secs(60);
    s
}

/// A server socket on 127.0.0.1:0 whose reads give up after [`STEP`].
pub(super) fn server() -> StdUdpSocket {
    let s = StdUdpSocket::bind("127.0.0.1:0").expect("bind the server");
    s.set_read_timeout(Some(STEP)).expect("read timeout");
    s
}

/// Runs `test` on socket 0 of `spec` as the event loop would hold it
/// (open, writable, nothing read yet); `test` steps it with
/// [`Env::pump`], standing in for the loop's readiness events.
pub(super) fn with_socket(spec: &ProbeSpec, test: impl FnOnce(&mut Env<'_>, &mut Conn, &mut Poll)) {
    let progress = Progress::default();
    let stop = StopHandle::new();
    let clock = Clock::new();
    let ctx = Ctx::for_tests(spec, clock, &progress, &stop);
    let mut poll = Poll::new().expect("poll");
    let (tx, _rx) = mpsc::channel();
    let registry = poll.registry().try_clone().expect("registry");
    let rec = Recorder::new(&ctx, 0, &tx).expect("recorder");
    let mut env = Env::new(&ctx, registry, rec, 1);
    env.active = 1;
    let Some(Target::Udp(addrs)) = spec.targets.first() else {
        panic!("a UDP target");
    };
    let sock = env.open(addrs[0], 0).expect("the probe's socket");
    let probe = new_probe(&ctx, 0).expect("the probe");
    let mut c = Conn::new(0, 0, clock.now());
    c.sock = Some(sock);
    c.probe = Some(Box::new(probe));
    test(&mut env, &mut c, &mut poll);
}

pub(super) fn stats(c: &Conn) -> ricochet_core::probe::DatagramProbeStats {
    *c.probe.as_ref().expect("the probe").stats()
}

/// Waits (bounded) until a datagram is queued on the probe's socket,
/// then marks it readable, as its readiness event would.
pub(super) fn await_datagram(poll: &mut Poll, c: &mut Conn) {
    let deadline = StdInstant::now() + STEP;
    let mut events = Events::with_capacity(8);
    loop {
        match c.sock.as_ref().expect("socket").peek(&mut [0; 1]) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("peek: {e}"),
        }
        let left = deadline
            .checked_duration_since(StdInstant::now())
            .expect("a datagram for the probe in time");
        poll.poll(&mut events, Some(left)).expect("poll");
    }
    c.readable = true;
}

/// Waits (bounded) for the error event of the probe's socket (an ICMP
/// port unreachable), leaving the error unread.
#[cfg(target_os = "linux")]
pub(super) fn await_error(poll: &mut Poll) {
    let deadline = StdInstant::now() + STEP;
    let mut events = Events::with_capacity(8);
    loop {
        let left = deadline
            .checked_duration_since(StdInstant::now())
            .expect("the ICMP port unreachable in time");
        poll.poll(&mut events, Some(left)).expect("poll");
        if events
            .iter()
            .any(|e| e.token() == mio::Token(0) && e.is_error())
        {
            return;
        }
    }
}

/// Echoes the probe's next datagram back from `srv` unchanged and waits
/// (bounded) until it is queued on the probe's socket; returns its bytes.
pub(super) fn echo_next(srv: &StdUdpSocket, poll: &mut Poll, c: &mut Conn) -> Vec<u8> {
    let (d, from) = receive(srv);
    srv.send_to(&d, from).expect("echo");
    await_datagram(poll, c);
    d
}

/// Receives the probe's next datagram at `srv`: its bytes and sender.
pub(super) fn receive(srv: &StdUdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; 65_536];
    let (n, from) = srv.recv_from(&mut buf).expect("the probe's datagram");
    buf.truncate(n);
    (buf, from)
}
