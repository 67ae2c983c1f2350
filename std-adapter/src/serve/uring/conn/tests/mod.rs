//! The connection transport over a socket pair and a small buffer ring:
//! sends resume where they stopped, received buffers are read (or passed
//! through) in order and given back.

use std::io::Read;
use std::os::unix::net::UnixStream;

use super::output::LEND_MAX;
use super::*;
use crate::serve::uring::bufs::TX_CAP;

mod props;
mod received;

/// An instant for calls that take one (nothing here waits).
const T0: Instant = Instant::from_millis(1_000);

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
        Self::with_ring(4)
    }

    /// With a ring of `count` 16-byte buffers.
    fn with_ring(count: u16) -> Self {
        let (ours, peer) = UnixStream::pair().expect("socket pair");
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        Fixture {
            io: ConnIo::new(Socket::Unix(ours), None),
            bufs: BufRing::new(count, 16, 0).unwrap(),
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
        let from = self.io.next_send(&self.bufs).expect("something to send");
        bytes_of(&from)
    }
}

/// The bytes `from` (from `next_send`) points at now.
fn bytes_of(from: &SendFrom) -> Vec<u8> {
    #[allow(unsafe_code)]
    // SAFETY: `next_send` points into the connection's send buffer and
    // the ring's lent buffers (through its boxed header), which hold
    // the given lengths of initialised bytes and stay allocated while
    // the connection keeps them queued (the send buffer is never
    // reallocated); nothing writes them while this copy is made.
    unsafe {
        match *from {
            SendFrom::Slice(ptr, len) => std::slice::from_raw_parts(ptr, len).to_vec(),
            SendFrom::Msg(hdr, len) => {
                let hdr = &*hdr;
                let iov = std::slice::from_raw_parts(hdr.msg_iov, hdr.msg_iovlen);
                let bytes: Vec<u8> = iov
                    .iter()
                    .flat_map(|v| std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len))
                    .copied()
                    .collect();
                assert_eq!(bytes.len(), len, "the header covers what it claims");
                bytes
            }
        }
    }
}

impl Fixture {
    /// Whether the next send would be a `sendmsg` over several buffers.
    fn next_is_vectored(&mut self) -> bool {
        let from = self.io.next_send(&self.bufs).expect("something to send");
        self.io.tx_inflight = 0;
        matches!(from, SendFrom::Msg(..))
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
    assert!(f.io.next_send(&f.bufs).is_none(), "one send at a time");
    // The socket took 4 bytes: wait for room, then the rest, in order.
    assert_eq!(
        f.io.send_failed(4, T0, &mut f.bufs, &mut f.pool),
        SendWait::Poll,
        "must wait for POLLOUT"
    );
    assert!(
        f.io.next_send(&f.bufs).is_none(),
        "nothing while the socket is full"
    );
    f.io.writable();
    assert_eq!(f.in_flight(), b"o, world");
    assert_eq!(f.io.tx_pending(), 8);
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.io.tx_pending(), 0);
    assert!(f.io.next_send(&f.bufs).is_none());
}

#[test]
fn full_send_buffer_blocks_the_session_until_confirmed() {
    let mut f = Fixture::new();
    let big = vec![7u8; TX_CAP + 100];
    assert_eq!(f.t().write(&big, false), WriteOutcome::Sent(TX_CAP));
    assert_eq!(f.t().write(&big, false), WriteOutcome::WouldBlock);
    assert!(f.io.needs_wake(), "the session waits for room");
    let _ = f.in_flight();
    assert!(
        f.io.confirm_sent(&mut f.bufs, &mut f.pool),
        "the session must be told"
    );
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
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.t().unacknowledged(), 0);
    let mut got = Vec::new();
    f.peer.read_to_end(&mut got).expect("EOF after the data");
    assert_eq!(got, b"last words");
}

/// Fills the connection's socket until it takes no more (standing in for
/// a peer that stopped reading); returns the bytes it took.
fn fill_socket(f: &Fixture) -> usize {
    let s = f.sender();
    s.set_nonblocking(true).unwrap();
    let chunk = [b'f'; 4096];
    let mut filled = 0;
    loop {
        match std::io::Write::write(&mut &*s, &chunk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the socket: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    filled
}

#[test]
fn abandoned_linger_hands_what_is_queued_to_a_full_socket_then_the_fin() {
    let mut f = Fixture::new();
    let filled = fill_socket(&f);
    // Copied bytes, then a lent buffer behind them: a `sendmsg` of two pieces.
    assert_eq!(f.t().write(&[b'q'; 3000], false), WriteOutcome::Sent(3000));
    f.receive(&[(0, b"and the lent end")]);
    assert_eq!(f.t().pass_through(64), 16);
    f.t().shutdown_write();
    assert_eq!(f.t().unacknowledged(), 3000 + 16 + 1, "bytes and the FIN");
    assert!(
        !f.io.hand_over_before_close(&mut f.bufs, &mut f.pool),
        "a grown send buffer takes all of it: nothing is cut short"
    );
    assert_eq!(f.t().unacknowledged(), 0);
    assert_eq!(f.bufs.available(), 4, "the lent buffer is back in the ring");
    let mut got = Vec::new();
    f.peer.read_to_end(&mut got).expect("EOF after the data");
    assert_eq!(got.len(), filled + 3016);
    assert!(got[..filled].iter().all(|&b| b == b'f'));
    assert!(got[filled..filled + 3000].iter().all(|&b| b == b'q'));
    assert_eq!(&got[filled + 3000..], b"and the lent end");
}

#[test]
fn abandoned_linger_with_a_send_in_flight_is_cut_short() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"in flight", false), WriteOutcome::Sent(9));
    let _ = f.in_flight();
    assert!(
        f.io.hand_over_before_close(&mut f.bufs, &mut f.pool),
        "the queue may be read by the send: the close must reset"
    );
}

#[test]
fn abandoned_linger_with_nothing_queued_closes_cleanly() {
    let mut f = Fixture::new();
    assert!(!f.io.hand_over_before_close(&mut f.bufs, &mut f.pool));
}

#[test]
fn refused_send_right_after_pollout_retries_on_a_timer_not_another_pollout() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"echo", false), WriteOutcome::Sent(4));
    let _ = f.in_flight();
    // Refused with the socket full: POLLOUT.
    let eagain = -libc::EAGAIN;
    assert_eq!(
        f.io.send_failed(eagain, T0, &mut f.bufs, &mut f.pool),
        SendWait::Poll
    );
    assert!(f.io.is_stalled());
    // POLLOUT said it can take more, and it refuses again (TCP short of
    // memory): a POLLOUT now would complete at once; wait 1 ms instead.
    f.io.writable();
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(eagain, T0, &mut f.bufs, &mut f.pool),
        SendWait::Retry
    );
    let at = T0 + Duration::from_millis(1);
    assert_eq!(f.io.retry_at(), Some(at));
    assert!(f.io.is_stalled(), "it still holds what it could not send");
    assert!(
        f.io.next_send(&f.bufs).is_none(),
        "nothing before the retry"
    );
    assert!(!f.io.retry_due(T0));
    assert!(f.io.retry_due(at));
    assert!(!f.io.is_stalled());
    // Refused again straight after the retry: the pause doubles.
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(eagain, at, &mut f.bufs, &mut f.pool),
        SendWait::Retry
    );
    assert_eq!(f.io.retry_at(), Some(at + Duration::from_millis(2)));
    assert!(f.io.retry_due(at + Duration::from_millis(2)));
    // A send that takes bytes ends it: the next refusal is POLLOUT again.
    assert_eq!(f.in_flight(), b"echo");
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.t().write(b"more", false), WriteOutcome::Sent(4));
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(eagain, at, &mut f.bufs, &mut f.pool),
        SendWait::Poll
    );
}

#[test]
fn retry_pause_stops_doubling_at_64_ms() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"x", false), WriteOutcome::Sent(1));
    let mut now = T0;
    let mut pauses = Vec::new();
    f.io.writable();
    for _ in 0..9 {
        let _ = f.in_flight();
        f.io.send_failed(-libc::EAGAIN, now, &mut f.bufs, &mut f.pool);
        let at = f.io.retry_at().expect("a retry");
        pauses.push((at - now).as_millis());
        now = at;
        assert!(f.io.retry_due(now));
    }
    assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
}

#[test]
fn bytes_written_while_a_send_is_in_flight_are_sendable_once_it_is_confirmed() {
    let mut f = Fixture::new();
    assert!(!f.io.has_sendable(), "nothing queued");
    assert_eq!(f.t().write(b"first", false), WriteOutcome::Sent(5));
    assert!(f.io.has_sendable());
    let _ = f.in_flight();
    assert_eq!(f.t().write(b"second", false), WriteOutcome::Sent(6));
    assert!(!f.io.has_sendable(), "one send at a time");
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert!(
        f.io.has_sendable(),
        "what came meanwhile must be sent without waiting for more input"
    );
    assert_eq!(f.in_flight(), b"second");
}

#[test]
fn nothing_is_sendable_while_the_socket_is_full_or_refusing_or_failed() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"data", false), WriteOutcome::Sent(4));
    let _ = f.in_flight();
    f.io.send_failed(-libc::EAGAIN, T0, &mut f.bufs, &mut f.pool);
    assert!(!f.io.has_sendable(), "waiting for POLLOUT");
    f.io.writable();
    assert!(f.io.has_sendable());
    let _ = f.in_flight();
    f.io.send_failed(-libc::EAGAIN, T0, &mut f.bufs, &mut f.pool);
    assert!(!f.io.has_sendable(), "waiting for the retry");
    assert!(f.io.retry_due(T0 + Duration::from_millis(1)));
    assert!(f.io.has_sendable());
    let _ = f.in_flight();
    f.io.send_failed(-libc::EPIPE, T0, &mut f.bufs, &mut f.pool);
    assert!(!f.io.has_sendable(), "failed for good");
}

#[test]
fn failed_send_is_reported_on_the_next_write() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"x", false), WriteOutcome::Sent(1));
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(-libc::ECONNRESET, T0, &mut f.bufs, &mut f.pool),
        SendWait::Nothing
    );
    assert_eq!(
        f.t().write(b"y", false),
        WriteOutcome::Failed(Failure::Reset)
    );
}

#[test]
fn write_while_a_resumed_send_is_in_flight_leaves_the_sent_bytes_in_place() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"abcdef", false), WriteOutcome::Sent(6));
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(2, T0, &mut f.bufs, &mut f.pool),
        SendWait::Poll
    );
    f.io.writable();
    let from = f.io.next_send(&f.bufs).expect("the rest");
    assert_eq!(bytes_of(&from), b"cdef");
    // The kernel may still be reading "cdef" where it was when the send
    // was submitted: a write now must not move it.
    assert_eq!(f.t().write(b"gh", false), WriteOutcome::Sent(2));
    assert_eq!(bytes_of(&from), b"cdef", "the in-flight send's bytes moved");
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.in_flight(), b"gh");
}

#[test]
fn room_after_a_short_send_counts_only_the_bytes_not_taken() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"0123456789", false), WriteOutcome::Sent(10));
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(4, T0, &mut f.bufs, &mut f.pool),
        SendWait::Poll
    );
    // Nothing in flight: the 4 bytes taken make room again.
    let big = vec![b'x'; TX_CAP];
    assert_eq!(f.t().write(&big, false), WriteOutcome::Sent(TX_CAP - 6));
    assert_eq!(f.io.tx_pending(), TX_CAP);
    f.io.writable();
    let sent = f.in_flight();
    assert_eq!(&sent[..6], b"456789");
    assert_eq!(sent.len(), TX_CAP);
    assert!(sent[6..].iter().all(|&b| b == b'x'));
}

#[test]
fn writes_in_a_row_are_one_run_sent_with_one_send() {
    let mut f = Fixture::new();
    let data: Vec<u8> = (0..2 * LEND_MAX as u8 + 8).collect();
    for b in &data {
        assert_eq!(f.t().write(&[*b], false), WriteOutcome::Sent(1));
    }
    assert!(!f.next_is_vectored(), "one run, one plain send");
    assert_eq!(f.in_flight(), data);
}

#[test]
fn unclean_release_takes_out_the_send_buffer_an_in_flight_send_reads() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"abc", false), WriteOutcome::Sent(3));
    let from = f.io.next_send(&f.bufs).expect("a send");
    let SendFrom::Slice(ptr, 3) = from else {
        panic!("one run: {from:?}");
    };
    let buf = f.io.take_send_buffer().expect("the send buffer");
    assert_eq!(buf.as_ptr(), ptr, "the very buffer the send reads");
    assert_eq!(buf, b"abc");
    assert!(f.io.take_send_buffer().is_none(), "taken out, not copied");
}

#[test]
fn confirmed_send_tells_the_pump_when_its_fin_went_out_and_not_otherwise() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"echo", false), WriteOutcome::Sent(4));
    let _ = f.in_flight();
    assert!(
        !f.io.confirm_sent(&mut f.bufs, &mut f.pool),
        "nobody waits for this one"
    );
    assert_eq!(f.t().write(b"bye", false), WriteOutcome::Sent(3));
    f.t().shutdown_write();
    let _ = f.in_flight();
    assert!(
        f.io.confirm_sent(&mut f.bufs, &mut f.pool),
        "the pump lingers for the FIN: it must hear it went out"
    );
    assert_eq!(f.t().unacknowledged(), 0);
}

#[test]
fn short_send_that_took_bytes_after_a_timed_retry_restarts_the_shortest_pause() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"abcd", false), WriteOutcome::Sent(4));
    let eagain = -libc::EAGAIN;
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(eagain, T0, &mut f.bufs, &mut f.pool),
        SendWait::Poll
    );
    f.io.writable();
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(eagain, T0, &mut f.bufs, &mut f.pool),
        SendWait::Retry
    );
    let at = T0 + Duration::from_millis(1);
    assert!(f.io.retry_due(at));
    // The retry's send takes 2 bytes: the socket works again.
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(2, at, &mut f.bufs, &mut f.pool),
        SendWait::Poll
    );
    f.io.writable();
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(eagain, at, &mut f.bufs, &mut f.pool),
        SendWait::Retry
    );
    assert_eq!(
        f.io.retry_at(),
        Some(at + Duration::from_millis(1)),
        "1 ms again, not the 2 ms the pause had doubled to"
    );
}

#[test]
fn abandoned_linger_after_a_failed_send_has_nothing_left_to_reset_for() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"lost", false), WriteOutcome::Sent(4));
    let _ = f.in_flight();
    f.io.send_failed(-libc::EPIPE, T0, &mut f.bufs, &mut f.pool);
    assert!(
        !f.io.hand_over_before_close(&mut f.bufs, &mut f.pool),
        "the failure dropped the queue: nothing is cut short by the close"
    );
}

#[test]
fn abandoned_linger_on_a_socket_at_its_largest_buffer_reports_the_echo_cut_short() {
    let mut f = Fixture::new();
    // As large as `net.core.wmem_max` allows: growing it gains nothing.
    let _ = socket2::SockRef::from(f.sender()).set_send_buffer_size(i32::MAX as usize);
    let _ = fill_socket(&f);
    assert_eq!(f.t().write(b"tail", false), WriteOutcome::Sent(4));
    f.t().shutdown_write();
    assert!(
        f.io.hand_over_before_close(&mut f.bufs, &mut f.pool),
        "the socket took none of it: the close must say so"
    );
    assert_eq!(f.t().unacknowledged(), 5, "4 bytes and the FIN");
}

/// Reads what the peer has now, without waiting.
fn peer_has(f: &Fixture) -> Vec<u8> {
    f.peer.set_nonblocking(true).unwrap();
    let mut got = vec![0u8; 64];
    let n = match (&f.peer).read(&mut got) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("reading the peer: {e}"),
    };
    f.peer.set_nonblocking(false).unwrap();
    got.truncate(n);
    got
}

#[test]
fn reset_after_queued_echo_hands_it_to_the_socket_first() {
    let mut f = Fixture::new();
    assert_eq!(
        f.t().write(b"counted as sent", false),
        WriteOutcome::Sent(15)
    );
    f.io.hand_over_before_reset(&mut f.bufs, &mut f.pool);
    assert_eq!(f.t().unacknowledged(), 0);
    assert_eq!(peer_has(&f), b"counted as sent");
}

#[test]
fn reset_with_a_send_in_flight_leaves_the_queue_to_it() {
    let mut f = Fixture::new();
    assert_eq!(f.t().write(b"in flight", false), WriteOutcome::Sent(9));
    let _ = f.in_flight();
    f.io.hand_over_before_reset(&mut f.bufs, &mut f.pool);
    assert_eq!(f.io.tx_pending(), 9, "the send may still read it");
    assert_eq!(peer_has(&f), b"", "sent once, by the send in flight");
}

#[test]
fn session_waits_for_a_wake_only_when_blocked_or_a_fin_is_due() {
    let mut f = Fixture::new();
    assert!(!f.io.needs_wake());
    assert_eq!(f.t().write(b"fits", false), WriteOutcome::Sent(4));
    assert!(!f.io.needs_wake(), "the write fitted");
    f.t().shutdown_write();
    assert!(f.io.needs_wake(), "the FIN waits for the queue to empty");
}
