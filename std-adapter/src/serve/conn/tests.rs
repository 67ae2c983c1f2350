//! The socket mapping of an epoll stream connection, on loopback TCP and
//! Unix socket pairs, driven as the pump drives it.

use super::{Peer, Stream, failure};
use crate::serve::stats::StreamKind;
use ricochet_core::pump::{Failure, ReadOutcome, Transport, WriteOutcome};
use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

/// Bounds every blocking step of these tests.
const BOUND: Duration = Duration::from_secs(10);

/// Our end (non-blocking, as the worker holds it) of a loopback TCP
/// connection, and the peer's (blocking, reads bounded).
fn tcp_pair() -> (Stream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ours, _) = l.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_read_timeout(Some(BOUND)).unwrap();
    (Stream::Tcp(mio::net::TcpStream::from_std(ours)), peer)
}

/// The same over a Unix socket pair.
fn unix_pair() -> (Stream, std::os::unix::net::UnixStream) {
    let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_read_timeout(Some(BOUND)).unwrap();
    (Stream::Unix(mio::net::UnixStream::from_std(ours)), peer)
}

/// Waits (bounded) until `stream` is readable: data, FIN or an error came.
fn wait_readable(stream: &mut Stream) {
    let mut poll = mio::Poll::new().unwrap();
    poll.registry()
        .register(stream.source(), mio::Token(0), mio::Interest::READABLE)
        .unwrap();
    let mut events = mio::Events::with_capacity(4);
    poll.poll(&mut events, Some(BOUND)).unwrap();
    assert!(!events.is_empty(), "nothing arrived in {BOUND:?}");
    poll.registry().deregister(stream.source()).unwrap();
}

/// Reads through the transport until `n` bytes came (bounded).
fn read_exactly(stream: &mut Stream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        wait_readable(stream);
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            ReadOutcome::Data(k) => got.extend_from_slice(&buf[..k]),
            ReadOutcome::WouldBlock => {}
            other => panic!("after {got:?}: {other:?}"),
        }
    }
    got
}

/// Writes through the transport until it would block (the peer reads
/// nothing); returns how many bytes it took.
fn fill(stream: &mut Stream) -> usize {
    let chunk = [7u8; 65536];
    let mut sent = 0;
    loop {
        match stream.write(&chunk, false) {
            WriteOutcome::Sent(n) => sent += n,
            WriteOutcome::WouldBlock => return sent,
            WriteOutcome::Failed(f) => panic!("after {sent} bytes: {f:?}"),
        }
        assert!(sent < 1 << 30, "the socket took 1 GiB without blocking");
    }
}

#[test]
fn socket_error_timed_out_is_a_timeout_and_any_other_a_reset() {
    assert_eq!(failure(&ErrorKind::TimedOut.into()), Failure::TimedOut);
    for kind in [
        ErrorKind::ConnectionReset,
        ErrorKind::BrokenPipe,
        ErrorKind::ConnectionAborted,
        ErrorKind::Other,
    ] {
        assert_eq!(failure(&kind.into()), Failure::Reset, "{kind:?}");
    }
}

#[test]
fn tcp_bytes_then_fin_from_the_peer_are_read_in_order_then_eof() {
    let (mut ours, mut peer) = tcp_pair();
    let mut buf = [0u8; 64];
    assert_eq!(ours.read(&mut buf), ReadOutcome::WouldBlock);
    peer.write_all(b"hello").unwrap();
    assert_eq!(read_exactly(&mut ours, 5), b"hello");
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    wait_readable(&mut ours);
    assert_eq!(ours.read(&mut buf), ReadOutcome::Eof);
}

#[test]
fn unix_bytes_then_fin_from_the_peer_are_read_in_order_then_eof() {
    let (mut ours, mut peer) = unix_pair();
    let mut buf = [0u8; 64];
    assert_eq!(ours.read(&mut buf), ReadOutcome::WouldBlock);
    peer.write_all(b"hello").unwrap();
    assert_eq!(read_exactly(&mut ours, 5), b"hello");
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    wait_readable(&mut ours);
    assert_eq!(ours.read(&mut buf), ReadOutcome::Eof);
}

#[test]
fn tcp_peer_reset_fails_the_read_and_then_the_write_as_reset() {
    let (mut ours, peer) = tcp_pair();
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    wait_readable(&mut ours);
    let mut buf = [0u8; 64];
    assert_eq!(ours.read(&mut buf), ReadOutcome::Failed(Failure::Reset));
    assert_eq!(
        ours.write(b"late", false),
        WriteOutcome::Failed(Failure::Reset)
    );
}

#[test]
fn unix_peer_gone_fails_the_write_as_reset() {
    let (mut ours, peer) = unix_pair();
    drop(peer);
    assert_eq!(
        ours.write(b"late", false),
        WriteOutcome::Failed(Failure::Reset)
    );
}

#[test]
fn tcp_writes_reach_the_peer_whole_and_in_order_then_the_fin() {
    let (mut ours, mut peer) = tcp_pair();
    for (part, more) in [(&b"one "[..], true), (b"two ", true), (b"three", false)] {
        assert_eq!(ours.write(part, more), WriteOutcome::Sent(part.len()));
    }
    ours.flush();
    ours.shutdown_write();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"one two three");
}

#[test]
fn unix_writes_reach_the_peer_whole_and_in_order_then_the_fin() {
    let (mut ours, mut peer) = unix_pair();
    for part in [&b"one "[..], b"two ", b"three"] {
        assert_eq!(ours.write(part, true), WriteOutcome::Sent(part.len()));
    }
    ours.shutdown_write();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"one two three");
}

/// A write held back by `MSG_MORE` leaves only once the pump flushes:
/// the flush turns `TCP_NODELAY` on, which pushes it.
#[test]
fn tcp_flush_after_a_held_back_write_pushes_it_with_nodelay() {
    let (mut ours, _peer) = tcp_pair();
    let Stream::Tcp(s) = &ours else {
        unreachable!()
    };
    assert!(!s.nodelay().unwrap());
    assert_eq!(ours.write(b"x", true), WriteOutcome::Sent(1));
    ours.flush();
    let Stream::Tcp(s) = &ours else {
        unreachable!()
    };
    assert!(s.nodelay().unwrap());
}

#[test]
fn tcp_socket_full_would_block_and_what_a_reset_would_discard_is_counted() {
    let (mut ours, mut peer) = tcp_pair();
    let sent = fill(&mut ours);
    assert!(sent > 0);
    #[cfg(target_os = "linux")]
    {
        let unsent = ours.unsent_before_reset();
        assert!(unsent > 0 && unsent <= sent, "{unsent} of {sent}");
    }
    // The kernel delivers it after the socket is closed: nothing for
    // the pump to wait for.
    assert_eq!(ours.unacknowledged(), 0);
    assert!(!ours.output_failed());
    // What was taken reaches the peer, whole.
    ours.shutdown_write();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), sent);
}

#[test]
fn unix_socket_full_would_block_and_nothing_is_left_for_a_reset_to_discard() {
    let (mut ours, mut peer) = unix_pair();
    let sent = fill(&mut ours);
    assert!(sent > 0);
    assert_eq!(ours.unsent_before_reset(), 0);
    assert_eq!(ours.unacknowledged(), 0);
    assert!(!ours.output_failed());
    ours.shutdown_write();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), sent);
}

#[test]
fn tcp_released_after_a_reset_closes_with_rst_not_fin() {
    let releases: [fn(&mut Stream); 2] = [|s| s.set_reset_on_close(), |s| s.release_reset()];
    for release in releases {
        let (mut ours, mut peer) = tcp_pair();
        assert_eq!(ours.write(b"echo", false), WriteOutcome::Sent(4));
        release(&mut ours);
        drop(ours);
        let mut got = Vec::new();
        let e = peer.read_to_end(&mut got).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "read {got:?}");
    }
}

#[test]
fn kernel_sockets_hold_no_input_past_a_short_read_and_count_as_their_kind() {
    let (tcp, _tcp_peer) = tcp_pair();
    let (unix, _unix_peer) = unix_pair();
    assert!(!tcp.read_pending() && !unix.read_pending());
    assert_eq!(tcp.kind(), StreamKind::Tcp);
    assert_eq!(unix.kind(), StreamKind::Unix);
    assert_eq!(tcp.deadline(), None);
}

#[test]
fn peer_of_a_dual_stack_socket_shows_an_ipv4_client_as_ipv4() {
    let mapped = Peer::Tcp("[::ffff:127.0.0.1]:39870".parse().unwrap());
    assert_eq!(mapped.to_string(), "127.0.0.1:39870");
    let v6 = Peer::Tcp("[::1]:7".parse().unwrap());
    assert_eq!(v6.to_string(), "[::1]:7");
}

/// A client that resets its connection before the server asks its
/// address (io_uring asks after the accept) was logged as 0.0.0.0:0.
#[test]
fn peer_reset_before_its_address_is_read_shows_as_gone() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    assert_eq!(Peer::of_tcp(&s), Peer::Tcp(c.local_addr().unwrap()));
    socket2::SockRef::from(&c)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(c);
    // The RST has arrived once a read says so (bounded, whatever comes).
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    let _ = std::io::Read::read(&mut &s, &mut buf);
    let gone = Peer::of_tcp(&s);
    assert_eq!(gone, Peer::Gone);
    assert_eq!(
        gone.to_string(),
        "unknown (gone before its address was read)"
    );
}
