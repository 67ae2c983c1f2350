//! The receive side: received buffers read in order or passed through
//! (lent to a send) and given back, spilled when the ring runs short.

use super::*;

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
