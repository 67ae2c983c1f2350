//! The connection transport over a socket pair and a small buffer ring:
//! sends resume where they stopped, received buffers are read (or passed
//! through) in order and given back.

use std::io::Read;
use std::os::unix::net::UnixStream;

use super::output::LEND_MAX;
use super::*;
use crate::serve::uring::bufs::TX_CAP;

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
fn pass_through_lends_whole_buffers_and_gives_them_back_once_sent() {
    let mut f = Fixture::new();
    f.receive(&[(1, b"abcdef"), (3, b"ghij")]);
    let before = f.bufs.available();
    assert_eq!(f.t().pass_through(100), 10);
    assert_eq!(f.io.rx_bytes(), 0);
    assert_eq!(f.t().unacknowledged(), 10);
    assert_eq!(f.bufs.available(), before, "lent, not given back yet");
    assert!(f.next_is_vectored(), "one sendmsg over both buffers");
    assert_eq!(f.in_flight(), b"abcdefghij");
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.bufs.available(), before + 2, "both buffers went back");
    assert_eq!(f.t().unacknowledged(), 0);
    assert!(f.io.next_send(&f.bufs).is_none());
}

#[test]
fn read_would_block_only_with_nothing_received_and_no_end_or_failure() {
    let mut f = Fixture::new();
    assert!(f.t().read_would_block());
    f.receive(&[(1, b"ab")]);
    assert!(!f.t().read_would_block(), "a buffer is queued");
    let mut out = [0u8; 4];
    assert_eq!(f.t().read(&mut out), ReadOutcome::Data(2));
    assert!(f.t().read_would_block());
    f.io.received_eof();
    assert!(!f.t().read_would_block(), "the end is still to be read");
    let mut f = Fixture::new();
    f.io.receive_failed(libc::ECONNRESET);
    assert!(!f.t().read_would_block(), "the failure is still to be read");
}

/// A raw session on the ring whose input all passes through never writes
/// into its own buffer, so it never allocates one (4 KiB per connection).
#[test]
fn raw_session_passing_everything_through_leaves_its_storage_unallocated() {
    let mut f = Fixture::new();
    let config = ricochet_core::SessionConfig {
        mode: ricochet_core::Mode::Raw,
        idle_timeout: None,
        drain_timeout: None,
        linger: Duration::from_secs(1),
    };
    let mut pump = Pump::new(SessionStorage::new(4096), config, T0);
    let mut counters = ricochet_core::StreamCounters::default();
    for chunk in [&b"ping"[..], b"pong", b"again"] {
        f.receive(&[(1, chunk)]);
        pump.set_ready();
        let _ = pump.drive(T0, &mut f.t(), usize::MAX, &mut counters);
        assert_eq!(f.in_flight(), chunk, "passed through whole");
        f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    }
    assert_eq!(counters.bytes_in, 13);
    assert!(!pump.session().storage().is_allocated());
    // Input that cannot pass through (nothing may be sent while the
    // socket refuses) is read into the buffer, which is allocated then.
    f.io.tx_failed = Some(ricochet_core::pump::Failure::Reset);
    f.receive(&[(2, b"held")]);
    pump.set_ready();
    let _ = pump.drive(T0, &mut f.t(), usize::MAX, &mut counters);
    assert!(pump.session().storage().is_allocated());
}

#[test]
fn pass_through_lends_behind_unsent_writes_and_keeps_their_order() {
    let mut f = Fixture::new();
    f.receive(&[(1, b"abcdef"), (3, b"ghij")]);
    let before = f.bufs.available();
    assert_eq!(f.t().write(b"01", false), WriteOutcome::Sent(2));
    assert_eq!(f.t().pass_through(100), 10, "lent behind the write");
    assert_eq!(f.t().write(b"23", false), WriteOutcome::Sent(2));
    f.receive(&[(0, b"kl")]);
    assert_eq!(f.t().pass_through(100), 2);
    assert_eq!(f.t().pass_through(100), 0, "nothing held");
    assert_eq!(f.io.rx_bytes(), 0);
    assert_eq!(f.bufs.available(), before - 1, "all three lent");
    assert_eq!(f.in_flight(), b"01abcdefghij23kl");
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.bufs.available(), before + 2);
    assert_eq!(f.t().unacknowledged(), 0);
}

#[test]
fn write_after_lending_is_sent_after_the_lent_bytes() {
    let mut f = Fixture::new();
    f.receive(&[(2, b"abc")]);
    assert_eq!(f.t().pass_through(100), 3);
    assert_eq!(f.t().write(b"XY", false), WriteOutcome::Sent(2));
    assert_eq!(f.in_flight(), b"abcXY");
}

#[test]
fn lending_stops_at_a_buffer_larger_than_max_and_leaves_it_received() {
    let mut f = Fixture::new();
    f.receive(&[(1, b"abcdef"), (3, b"ghij")]);
    assert_eq!(f.t().pass_through(9), 6, "the second does not fit in 3");
    assert_eq!(f.io.rx_bytes(), 4);
    let mut rest = [0u8; 8];
    assert_eq!(f.t().read(&mut rest), ReadOutcome::Data(4));
    assert_eq!(&rest[..4], b"ghij", "what was not lent is read in order");
    assert_eq!(f.t().write(&rest[..4], false), WriteOutcome::Sent(4));
    assert_eq!(f.in_flight(), b"abcdefghij");
}

#[test]
fn lending_stops_at_lend_max_buffers() {
    let mut f = Fixture::with_ring(32);
    let data: Vec<[u8; 1]> = (0..=LEND_MAX as u8).map(|i| [b'a' + i]).collect();
    let chunks: Vec<(u16, &[u8])> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (i as u16, &d[..]))
        .collect();
    f.receive(&chunks);
    assert_eq!(f.t().pass_through(100), LEND_MAX);
    assert_eq!(f.io.rx_bytes(), 1, "the last one stays received");
    let expected: Vec<u8> = data[..LEND_MAX].iter().map(|d| d[0]).collect();
    assert_eq!(f.in_flight(), expected);
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.t().pass_through(100), 1, "room again once sent");
}

#[test]
fn sendmsg_spans_interleaved_lent_and_written_pieces() {
    let mut f = Fixture::with_ring(32);
    let mut expected = Vec::new();
    for i in 0..LEND_MAX as u8 {
        let w = [b'A' + i];
        assert_eq!(f.t().write(&w, false), WriteOutcome::Sent(1));
        let r = [b'a' + i];
        f.receive(&[(u16::from(i), &r[..])]);
        assert_eq!(f.t().pass_through(100), 1);
        expected.extend_from_slice(&w);
        expected.extend_from_slice(&r);
    }
    assert_eq!(f.t().write(b"!", false), WriteOutcome::Sent(1));
    expected.push(b'!');
    assert!(f.next_is_vectored());
    assert_eq!(f.in_flight(), expected, "every piece, in the order queued");
}

#[test]
fn short_send_over_lent_buffers_gives_back_only_those_taken_whole() {
    let mut f = Fixture::new();
    f.receive(&[(0, b"abcd"), (1, b"efgh"), (2, b"ij")]);
    let before = f.bufs.available();
    assert_eq!(f.t().pass_through(100), 10);
    assert_eq!(f.in_flight(), b"abcdefghij");
    assert_eq!(
        f.io.send_failed(6, T0, &mut f.bufs, &mut f.pool),
        SendWait::Poll,
        "wait for room"
    );
    assert_eq!(
        f.bufs.available(),
        before + 1,
        "the first buffer, taken whole"
    );
    assert_eq!(f.io.tx_pending(), 4);
    f.io.writable();
    assert_eq!(f.in_flight(), b"ghij", "resumes mid-buffer, nothing lost");
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.bufs.available(), before + 3);
}

#[test]
fn failed_send_gives_lent_buffers_back() {
    let mut f = Fixture::new();
    f.receive(&[(0, b"abcd"), (1, b"ef")]);
    let before = f.bufs.available();
    assert_eq!(f.t().pass_through(100), 6);
    let _ = f.in_flight();
    assert_eq!(
        f.io.send_failed(-libc::EPIPE, T0, &mut f.bufs, &mut f.pool),
        SendWait::Nothing
    );
    assert_eq!(f.bufs.available(), before + 2);
    assert_eq!(f.t().unacknowledged(), 0);
}

#[test]
fn released_connection_keeps_lent_buffers_while_a_send_reads_them() {
    let mut f = Fixture::new();
    f.receive(&[(0, b"abcd")]);
    let before = f.bufs.available();
    assert_eq!(f.t().pass_through(100), 4);
    let _ = f.in_flight();
    f.io.drop_send_buffer(&mut f.bufs, &mut f.pool);
    assert_eq!(f.bufs.available(), before, "the kernel may still read it");
    assert_eq!(
        f.io.send_failed(-libc::ECANCELED, T0, &mut f.bufs, &mut f.pool),
        SendWait::Nothing
    );
    f.io.drop_send_buffer(&mut f.bufs, &mut f.pool);
    assert_eq!(f.bufs.available(), before + 1);
}

#[test]
fn lent_bytes_count_against_the_output_cap() {
    let mut f = Fixture::new();
    f.receive(&[(0, b"abcd")]);
    assert_eq!(f.t().pass_through(100), 4);
    let big = vec![7u8; TX_CAP];
    assert_eq!(f.t().write(&big, false), WriteOutcome::Sent(TX_CAP - 4));
    assert!(f.io.needs_wake());
}

#[test]
fn pass_through_stops_at_the_output_cap_and_leaves_the_rest_received() {
    let mut f = Fixture::new();
    f.receive(&[(0, b"xyz")]);
    let fill = vec![1u8; TX_CAP - 2];
    assert_eq!(f.t().write(&fill, false), WriteOutcome::Sent(TX_CAP - 2));
    assert_eq!(f.t().pass_through(100), 0, "3 bytes do not fit in 2");
    assert_eq!(f.io.rx_bytes(), 3, "still received, in order");
    let _ = f.in_flight();
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.t().pass_through(100), 3);
}

#[test]
fn stalled_connection_spills_its_ring_buffers_and_keeps_every_byte_in_order() {
    let mut f = Fixture::with_ring(8);
    let full = f.bufs.available();
    assert_eq!(f.t().write(b"01", false), WriteOutcome::Sent(2));
    f.receive(&[(0, b"abcd"), (1, b"efgh")]);
    assert_eq!(f.t().pass_through(100), 8, "lent behind the write");
    assert_eq!(f.t().write(b"23", false), WriteOutcome::Sent(2));
    f.receive(&[(2, b"ijkl"), (3, b"mn")]);
    // The socket took 3 bytes, then nothing: the connection is stalled.
    assert_eq!(f.in_flight(), b"01abcdefgh23");
    assert_eq!(
        f.io.send_failed(3, T0, &mut f.bufs, &mut f.pool),
        SendWait::Poll
    );
    assert_eq!(f.bufs.available(), full - 4, "two lent, two received");
    assert_eq!(f.io.spill(&mut f.bufs, &mut f.pool), 4);
    assert_eq!(f.bufs.available(), full, "every ring buffer went back");
    assert_eq!(f.io.rx_buffers(), 0);
    assert_eq!(f.io.rx_bytes(), 6, "the received bytes are still there");
    assert_eq!(f.io.tx_pending(), 9, "and so is the output");
    // Received after the spill: read after the spilled bytes.
    f.receive(&[(4, b"op")]);
    assert_eq!(
        f.t().pass_through(100),
        0,
        "nothing is lent past spilled bytes"
    );
    let mut buf = [0u8; 16];
    assert_eq!(f.t().read(&mut buf), ReadOutcome::Data(8));
    assert_eq!(&buf[..8], b"ijklmnop");
    f.io.writable();
    assert_eq!(f.in_flight(), b"bcdefgh23", "resumes where it stopped");
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.bufs.available(), full);
    assert_eq!(f.t().unacknowledged(), 0);
}

#[test]
fn spill_waits_while_a_send_may_read_the_lent_buffers() {
    let mut f = Fixture::new();
    f.receive(&[(0, b"abcd")]);
    let before = f.bufs.available();
    assert_eq!(f.t().pass_through(100), 4);
    let _ = f.in_flight();
    assert_eq!(f.io.spill(&mut f.bufs, &mut f.pool), 0);
    assert_eq!(f.bufs.available(), before, "still lent to the send");
    f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    assert_eq!(f.bufs.available(), before + 1);
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
fn received_buffers_count_until_read_in_full() {
    let mut f = Fixture::new();
    assert_eq!(f.io.rx_buffers(), 0);
    f.receive(&[(0, b"abcd"), (1, b"ef")]);
    assert_eq!(f.io.rx_buffers(), 2);
    let mut out = [0u8; 3];
    assert_eq!(f.t().read(&mut out), ReadOutcome::Data(3));
    assert_eq!(f.io.rx_buffers(), 2, "the first is still partly unread");
    let mut out = [0u8; 1];
    assert_eq!(f.t().read(&mut out), ReadOutcome::Data(1));
    assert_eq!(f.io.rx_buffers(), 1);
}

#[test]
fn pass_through_lends_a_buffer_exactly_max_long() {
    let mut f = Fixture::new();
    f.receive(&[(0, b"abcd"), (1, b"ef")]);
    assert_eq!(f.t().pass_through(4), 4, "4 bytes fit in 4");
    assert_eq!(f.t().pass_through(2), 2);
    assert_eq!(f.in_flight(), b"abcdef");
}

#[test]
fn second_spill_after_a_partial_read_drops_the_bytes_already_read() {
    let mut f = Fixture::with_ring(8);
    f.receive(&[(0, b"abcdefgh"), (1, b"ijkl")]);
    assert_eq!(f.io.spill(&mut f.bufs, &mut f.pool), 2);
    let mut out = [0u8; 10];
    assert_eq!(f.t().read(&mut out), ReadOutcome::Data(10));
    assert_eq!(&out, b"abcdefghij");
    f.receive(&[(2, b"mnop")]);
    assert_eq!(f.io.spill(&mut f.bufs, &mut f.pool), 1);
    // The spill keeps what is unread only: a stalled connection that
    // reads a little between spills does not grow it without bound.
    assert_eq!(f.io.rx.spill_held(), 6);
    assert_eq!(f.io.rx_bytes(), 6);
    let mut out = [0u8; 16];
    assert_eq!(f.t().read(&mut out), ReadOutcome::Data(6));
    assert_eq!(&out[..6], b"klmnop");
}

#[test]
fn dropped_received_buffers_and_spill_go_back_unread() {
    let mut f = Fixture::with_ring(8);
    let full = f.bufs.available();
    f.receive(&[(0, b"abcd"), (1, b"efgh")]);
    assert_eq!(f.io.spill(&mut f.bufs, &mut f.pool), 2);
    f.receive(&[(2, b"ij"), (3, b"kl")]);
    assert_eq!(f.bufs.available(), full - 2);
    f.io.drop_received(&mut f.bufs, &mut f.pool);
    assert_eq!(f.bufs.available(), full, "every ring buffer went back");
    assert_eq!(f.io.rx_bytes(), 0);
    assert_eq!(f.io.rx_buffers(), 0);
    assert_eq!(f.io.rx.spill_held(), 0, "the spill went back too");
    assert!(f.t().read_would_block(), "nothing left to read");
}

#[test]
fn receive_side_is_done_after_the_peers_fin_or_a_receive_failure_only() {
    let mut f = Fixture::new();
    assert!(!f.io.rx_done());
    f.receive(&[(0, b"ab")]);
    assert!(!f.io.rx_done(), "data is not the end");
    f.io.received_eof();
    assert!(f.io.rx_done(), "FIN");
    let mut f = Fixture::new();
    f.io.receive_failed(libc::ECONNRESET);
    assert!(f.io.rx_done(), "failed");
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

/// Random interleavings of receives, pass-throughs, reads through a
/// session-like buffer, writes, short or full sends and spills: every byte
/// received is sent once, in order, the output never exceeds its cap,
/// and every buffer goes back to the ring.
mod props {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Receive(usize),
        PassThrough(usize),
        Read(usize),
        Write,
        Send(u8),
        Spill,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1usize..=16).prop_map(Op::Receive),
            (0usize..80).prop_map(Op::PassThrough),
            (1usize..40).prop_map(Op::Read),
            Just(Op::Write),
            any::<u8>().prop_map(Op::Send),
            Just(Op::Spill),
        ]
    }

    /// The bytes of the send `next_send` just set up.
    fn sent_bytes(f: &mut Fixture) -> Option<Vec<u8>> {
        f.io.next_send(&f.bufs)?;
        f.io.tx_inflight = 0;
        Some(f.in_flight())
    }

    /// Sends what is queued; `cut` picks how much the socket takes.
    fn send(f: &mut Fixture, cut: u8, out: &mut Vec<u8>) {
        let Some(bytes) = sent_bytes(f) else {
            return;
        };
        let k = if cut >= 128 {
            bytes.len()
        } else {
            bytes.len() * usize::from(cut) / 128
        };
        out.extend_from_slice(&bytes[..k]);
        if k == bytes.len() {
            f.io.confirm_sent(&mut f.bufs, &mut f.pool);
        } else {
            f.io.send_failed(k as i32, T0, &mut f.bufs, &mut f.pool);
            f.io.writable();
        }
    }

    /// Writes what the session holds, as the pump would.
    fn write_held(f: &mut Fixture, held: &mut Vec<u8>) {
        if held.is_empty() {
            return;
        }
        if let WriteOutcome::Sent(n) = f.t().write(held, false) {
            held.drain(..n);
        }
    }

    proptest! {
        #[test]
        fn output_sends_every_received_byte_once_in_order(ops in proptest::collection::vec(op(), 1..200)) {
            let mut f = Fixture::with_ring(1024);
            let start = f.bufs.available();
            let mut received = Vec::new();
            let mut held = Vec::new();
            let mut out = Vec::new();
            let mut next_bid = 0u16;
            for op in ops {
                match op {
                    Op::Receive(len) => {
                        let data: Vec<u8> = (0..len).map(|i| (received.len() + i) as u8 ^ 0x5a).collect();
                        f.receive(&[(next_bid, &data)]);
                        next_bid += 1;
                        received.extend_from_slice(&data);
                    }
                    // The pump passes through only while the session holds nothing.
                    Op::PassThrough(max) if held.is_empty() => {
                        let n = f.t().pass_through(max);
                        prop_assert!(n <= max);
                    }
                    Op::PassThrough(_) => {}
                    Op::Read(n) => {
                        let mut buf = vec![0u8; n];
                        if let ReadOutcome::Data(k) = f.t().read(&mut buf) {
                            held.extend_from_slice(&buf[..k]);
                        }
                    }
                    Op::Write => write_held(&mut f, &mut held),
                    Op::Send(cut) => send(&mut f, cut, &mut out),
                    Op::Spill => {
                        f.io.spill(&mut f.bufs, &mut f.pool);
                        prop_assert_eq!(f.bufs.available(), start, "a spill gives back every ring buffer");
                    }
                }
                prop_assert!(f.io.tx_pending() <= TX_CAP);
            }
            // Drain: the session writes what it holds, the rest passes through.
            for _ in 0..10_000 {
                write_held(&mut f, &mut held);
                if held.is_empty() {
                    f.t().pass_through(usize::MAX);
                }
                if f.io.rx_bytes() > 0 && held.is_empty() {
                    let mut buf = vec![0u8; 64];
                    if let ReadOutcome::Data(k) = f.t().read(&mut buf) {
                        held.extend_from_slice(&buf[..k]);
                    }
                }
                send(&mut f, 200, &mut out);
                if f.io.rx_bytes() == 0 && held.is_empty() && f.io.tx_pending() == 0 {
                    break;
                }
            }
            prop_assert_eq!(out, received);
            prop_assert_eq!(f.bufs.available(), start, "every buffer went back");
        }
    }
}
