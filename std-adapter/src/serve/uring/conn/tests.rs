//! The connection transport over a socket pair and a small buffer ring:
//! sends resume where they stopped, received buffers are read (or passed
//! through) in order and given back.

use std::io::Read;
use std::os::unix::net::UnixStream;

use super::*;

/// A connection over one end of a socket pair, with a worker's buffers.
struct Fixture {
    io: ConnIo,
    bufs: BufRing,
    pool: TxPool,
    /// The other end (reads time out after 5 s).
    peer: UnixStream,
}

impl Fixture {
    fn new() -> Self {
        let (ours, peer) = UnixStream::pair().expect("socket pair");
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        Fixture {
            io: ConnIo::new(Socket::Unix(ours)),
            bufs: BufRing::new(4, 16, 0).unwrap(),
            pool: TxPool::new(4),
            peer,
        }
    }

    /// The core's view of the connection.
    fn t(&mut self) -> Io<'_> {
        Io {
            io: &mut self.io,
            bufs: &mut self.bufs,
            pool: &mut self.pool,
        }
    }

    /// Receive completions of `chunks` into the given provided buffers.
    fn receive(&mut self, chunks: &[(u16, &[u8])]) {
        for &(bid, data) in chunks {
            self.bufs.fill_for_test(bid, data);
            self.bufs.taken();
            self.io.received(bid, data.len());
        }
    }

    /// The bytes a send submitted now would carry.
    fn in_flight(&mut self) -> Vec<u8> {
        let (ptr, len) = self.io.next_send().expect("something to send");
        #[allow(unsafe_code)]
        // SAFETY: `next_send` points into the connection's send buffer,
        // which holds `len` initialised bytes from `ptr` and is not changed
        // while this copy is made.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
        bytes.to_vec()
    }

    /// The connection's own socket (to stand in for the kernel's send).
    fn sender(&self) -> &UnixStream {
        match &self.io.socket {
            Socket::Unix(s) => s,
            Socket::Tcp(_) => unreachable!(),
        }
    }
}

#[test]
fn short_send_resumes_where_it_stopped_and_loses_nothing() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"hello, ", false), WriteOutcome::Sent(7));
    assert_eq!(f.in_flight(), b"hello, ");
    // Written while that send is in flight: appended, not sent yet.
    assert_eq!(f.t().write(b"world", false), WriteOutcome::Sent(5));
    assert!(f.io.next_send().is_none(), "one send at a time");
    // The socket took 4 bytes: wait for room, then the rest, in order.
    assert!(f.io.send_failed(4, &mut f.pool), "must wait for POLLOUT");
    assert!(
        f.io.next_send().is_none(),
        "nothing while the socket is full"
    );
    f.io.writable();
    assert_eq!(f.in_flight(), b"o, world");
    assert_eq!(f.io.tx_pending(), 8);
    f.io.confirm_sent(&mut f.pool);
    assert_eq!(f.io.tx_pending(), 0);
    assert!(f.io.next_send().is_none());
}

#[test]
fn full_send_buffer_blocks_the_session_until_confirmed() {
    let mut f = Fixture::new();
    let big = vec![7u8; TX_CAP + 100];
    assert_eq!(f.t().write(&big, false), WriteOutcome::Sent(TX_CAP));
    assert_eq!(f.t().write(&big, false), WriteOutcome::WouldBlock);
    assert!(f.io.needs_wake(), "the session waits for room");
    let _ = f.in_flight();
    assert!(f.io.confirm_sent(&mut f.pool), "the session must be told");
    assert_eq!(f.t().write(&big[..100], false), WriteOutcome::Sent(100));
}

#[test]
fn fin_goes_out_only_after_every_queued_byte() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"last words", false), WriteOutcome::Sent(10));
    f.t().shutdown_write();
    assert_eq!(f.t().unacknowledged(), 11, "10 bytes and the FIN");
    let bytes = f.in_flight();
    // What the kernel would have sent, then the confirmation.
    std::io::Write::write_all(&mut f.sender(), &bytes).unwrap();
    f.io.confirm_sent(&mut f.pool);
    assert_eq!(f.t().unacknowledged(), 0);
    let mut got = Vec::new();
    f.peer.read_to_end(&mut got).expect("EOF after the data");
    assert_eq!(got, b"last words");
}

#[test]
fn failed_send_is_reported_on_the_next_write() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"x", false), WriteOutcome::Sent(1));
    let _ = f.in_flight();
    assert!(!f.io.send_failed(-libc::ECONNRESET, &mut f.pool));
    assert_eq!(
        f.t().write(b"y", false),
        WriteOutcome::Failed(Failure::Reset)
    );
}

#[test]
fn received_buffers_are_read_in_order_across_buffers_then_eof() {
    let mut f = Fixture::new();
    f.receive(&[(2, b"abcdef"), (0, b"ghij")]);
    f.io.received_eof();
    let before = f.bufs.available();
    let mut out = [0u8; 4];
    assert_eq!(f.t().read(&mut out), ReadOutcome::Data(4));
    assert_eq!(&out, b"abcd");
    let mut out = [0u8; 16];
    assert_eq!(f.t().read(&mut out), ReadOutcome::Data(6));
    assert_eq!(&out[..6], b"efghij");
    assert_eq!(f.t().read(&mut out), ReadOutcome::Eof);
    assert_eq!(f.bufs.available(), before + 2, "both buffers went back");
}

#[test]
fn pass_through_moves_received_buffers_into_the_send_buffer_in_order() {
    let mut f = Fixture::new();
    f.receive(&[(1, b"abcdef"), (3, b"ghij")]);
    let before = f.bufs.available();
    assert_eq!(f.t().write(b"01", false), WriteOutcome::Sent(2));
    assert_eq!(f.t().pass_through(7), 7, "up to max, across buffers");
    assert_eq!(f.t().pass_through(100), 3, "the rest");
    assert_eq!(f.t().pass_through(100), 0, "nothing held");
    assert_eq!(f.io.rx_bytes(), 0);
    assert_eq!(f.bufs.available(), before + 2, "both buffers went back");
    assert_eq!(f.in_flight(), b"01abcdefghij");
}

#[test]
fn pass_through_stops_at_the_send_buffer_cap_and_leaves_the_rest_received() {
    let mut f = Fixture::new();
    f.receive(&[(0, b"xyz")]);
    let fill = vec![1u8; TX_CAP - 1];
    assert_eq!(f.t().write(&fill, false), WriteOutcome::Sent(TX_CAP - 1));
    assert_eq!(f.t().pass_through(100), 1, "one byte of room");
    assert_eq!(f.t().pass_through(100), 0, "full");
    let mut rest = [0u8; 4];
    assert_eq!(f.t().read(&mut rest), ReadOutcome::Data(2));
    assert_eq!(
        &rest[..2],
        b"yz",
        "what did not fit stays received, in order"
    );
}
