//! The connection transport over a socket pair and a small buffer ring:
//! sends resume where they stopped, received buffers are read (or passed
//! through) in order and given back.

use std::io::Read;
use std::os::unix::net::UnixStream;

use super::*;

fn pair() -> (ConnIo, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    theirs
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    (ConnIo::new(Socket::Unix(ours)), theirs)
}

/// The bytes a send submitted now would carry.
fn in_flight(io: &mut ConnIo) -> Vec<u8> {
    let (ptr, len) = io.next_send().expect("something to send");
    #[allow(unsafe_code)]
    // SAFETY: `next_send` points into the connection's send buffer,
    // which holds `len` initialised bytes from `ptr` and is not changed
    // while this copy is made.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    bytes.to_vec()
}

#[test]
fn short_send_resumes_where_it_stopped_and_loses_nothing() {
    let (mut io, _peer) = pair();
    let mut bufs = BufRing::new(4, 16, 0).unwrap();
    let mut pool = TxPool::new(4);
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.write(b"hello, ", false), WriteOutcome::Sent(7));
    assert_eq!(in_flight(&mut io), b"hello, ");
    // Written while that send is in flight: appended, not sent yet.
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.write(b"world", false), WriteOutcome::Sent(5));
    assert!(io.next_send().is_none(), "one send at a time");
    // The socket took 4 bytes: wait for room, then the rest, in order.
    assert!(io.send_failed(4, &mut pool), "must wait for POLLOUT");
    assert!(io.next_send().is_none(), "nothing while the socket is full");
    io.writable();
    assert_eq!(in_flight(&mut io), b"o, world");
    assert_eq!(io.tx_pending(), 8);
    io.confirm_sent(&mut pool);
    assert_eq!(io.tx_pending(), 0);
    assert!(io.next_send().is_none());
}

#[test]
fn full_send_buffer_blocks_the_session_until_confirmed() {
    let (mut io, _peer) = pair();
    let mut bufs = BufRing::new(4, 16, 0).unwrap();
    let mut pool = TxPool::new(4);
    let big = vec![7u8; TX_CAP + 100];
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.write(&big, false), WriteOutcome::Sent(TX_CAP));
    assert_eq!(t.write(&big, false), WriteOutcome::WouldBlock);
    assert!(io.needs_wake(), "the session waits for room");
    let _ = in_flight(&mut io);
    assert!(io.confirm_sent(&mut pool), "the session must be told");
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.write(&big[..100], false), WriteOutcome::Sent(100));
}

#[test]
fn fin_goes_out_only_after_every_queued_byte() {
    let (mut io, mut peer) = pair();
    let mut bufs = BufRing::new(4, 16, 0).unwrap();
    let mut pool = TxPool::new(4);
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.write(b"last words", false), WriteOutcome::Sent(10));
    t.shutdown_write();
    assert_eq!(t.unacknowledged(), 11, "10 bytes and the FIN");
    let bytes = in_flight(&mut io);
    // What the kernel would have sent, then the confirmation.
    std::io::Write::write_all(&mut peer_sender(&io), &bytes).unwrap();
    io.confirm_sent(&mut pool);
    let t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.unacknowledged(), 0);
    let mut got = Vec::new();
    peer.read_to_end(&mut got).expect("EOF after the data");
    assert_eq!(got, b"last words");
}

/// The connection's own socket (to stand in for the kernel's send).
fn peer_sender(io: &ConnIo) -> &UnixStream {
    match &io.socket {
        Socket::Unix(s) => s,
        Socket::Tcp(_) => unreachable!(),
    }
}

#[test]
fn failed_send_is_reported_on_the_next_write() {
    let (mut io, _peer) = pair();
    let mut bufs = BufRing::new(4, 16, 0).unwrap();
    let mut pool = TxPool::new(4);
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.write(b"x", false), WriteOutcome::Sent(1));
    let _ = in_flight(&mut io);
    assert!(!io.send_failed(-libc::ECONNRESET, &mut pool));
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.write(b"y", false), WriteOutcome::Failed(Failure::Reset));
}

#[test]
fn received_buffers_are_read_in_order_across_buffers_then_eof() {
    let (mut io, _peer) = pair();
    let mut bufs = BufRing::new(4, 16, 0).unwrap();
    let mut pool = TxPool::new(4);
    bufs.fill_for_test(2, b"abcdef");
    bufs.fill_for_test(0, b"ghij");
    bufs.taken();
    bufs.taken();
    io.received(2, 6);
    io.received(0, 4);
    io.received_eof();
    let before = bufs.available();
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    let mut out = [0u8; 4];
    assert_eq!(t.read(&mut out), ReadOutcome::Data(4));
    assert_eq!(&out, b"abcd");
    let mut out = [0u8; 16];
    assert_eq!(t.read(&mut out), ReadOutcome::Data(6));
    assert_eq!(&out[..6], b"efghij");
    assert_eq!(t.read(&mut out), ReadOutcome::Eof);
    assert_eq!(bufs.available(), before + 2, "both buffers went back");
}

#[test]
fn pass_through_moves_received_buffers_into_the_send_buffer_in_order() {
    let (mut io, _peer) = pair();
    let mut bufs = BufRing::new(4, 16, 0).unwrap();
    let mut pool = TxPool::new(4);
    bufs.fill_for_test(1, b"abcdef");
    bufs.fill_for_test(3, b"ghij");
    bufs.taken();
    bufs.taken();
    io.received(1, 6);
    io.received(3, 4);
    let before = bufs.available();
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    assert_eq!(t.write(b"01", false), WriteOutcome::Sent(2));
    assert_eq!(t.pass_through(7), 7, "up to max, across buffers");
    assert_eq!(t.pass_through(100), 3, "the rest");
    assert_eq!(t.pass_through(100), 0, "nothing held");
    assert_eq!(io.rx_bytes(), 0);
    assert_eq!(bufs.available(), before + 2, "both buffers went back");
    assert_eq!(in_flight(&mut io), b"01abcdefghij");
}

#[test]
fn pass_through_stops_at_the_send_buffer_cap_and_leaves_the_rest_received() {
    let (mut io, _peer) = pair();
    let mut bufs = BufRing::new(4, 16, 0).unwrap();
    let mut pool = TxPool::new(4);
    bufs.fill_for_test(0, b"xyz");
    bufs.taken();
    io.received(0, 3);
    let mut t = Io {
        io: &mut io,
        bufs: &mut bufs,
        pool: &mut pool,
    };
    let fill = vec![1u8; TX_CAP - 1];
    assert_eq!(t.write(&fill, false), WriteOutcome::Sent(TX_CAP - 1));
    assert_eq!(t.pass_through(100), 1, "one byte of room");
    assert_eq!(t.pass_through(100), 0, "full");
    let mut rest = [0u8; 4];
    assert_eq!(t.read(&mut rest), ReadOutcome::Data(2));
    assert_eq!(
        &rest[..2],
        b"yz",
        "what did not fit stays received, in order"
    );
}
