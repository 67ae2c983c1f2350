//! Reading and writing: short reads and writes, budgets, `more`, and
//! readiness.

use super::*;

#[test]
fn serving_readable_raw_echoes_everything_and_counts_bytes() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"hello", false);
    let mut c = StreamCounters::default();
    let next = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(
        next,
        Next::Wait {
            read: true,
            write: false
        }
    );
    assert_eq!(io.output, b"hello");
    assert_eq!((c.bytes_in, c.bytes_out), (5, 5));
}

#[test]
fn serving_short_read_stops_reading_until_readable_again() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.reads, 1, "a short read means the transport is drained");
    io.input.extend(b"de");
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.reads, 1, "no read without a readiness event");
    p.set_readable();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"abcde");
}

#[test]
fn serving_read_closed_short_read_keeps_reading_until_eof() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", true);
    let mut c = StreamCounters::default();
    p.set_read_closed();
    let next = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(next, Next::Release(Teardown::Close));
    assert_eq!(io.output, b"abc");
    assert_eq!(c.closed.peer_finished, 1);
}

#[test]
fn serving_short_write_keeps_the_rest_until_writable() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"0123456789", false);
    io.room = 4;
    let mut c = StreamCounters::default();
    let next = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(
        next,
        Next::Wait {
            read: true,
            write: true
        }
    );
    assert_eq!(io.output, b"0123");
    assert_eq!(io.writes, 1, "a short write means the transport is full");
    assert_eq!(c.buffered, 6, "the gauge holds the unsent bytes");
    io.room = usize::MAX;
    p.set_writable();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"0123456789");
    assert_eq!(c.buffered, 0);
}

#[test]
fn serving_full_read_writes_with_more_then_flushes() {
    let mut p = pump(Mode::Raw, 4);
    let mut io = Script::with_input(b"0123456789ab", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"0123456789ab");
    assert_eq!(io.more, [true, true, true], "each read filled the buffer");
    assert_eq!(io.flushes, 1, "what `more` held back is flushed once");
}

#[test]
fn serving_short_read_with_the_end_to_come_writes_without_more() {
    // Ping-pong traffic: the read did not fill the buffer, so the echo
    // leaves at once, even though the pump reads again (for the FIN).
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", true);
    let mut c = StreamCounters::default();
    p.set_read_closed();
    let next = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(next, Next::Release(Teardown::Close));
    assert_eq!(io.output, b"abc");
    assert_eq!(io.more, [false]);
}

#[test]
fn serving_lines_fin_after_a_full_read_writes_the_last_line_without_more() {
    // The full read's line goes out with `more`; the FIN then releases the
    // unterminated rest, the last write of the drive: nothing is held back.
    let mut p = pump(Mode::Lines, 8);
    let mut io = Script::with_input(b"abc\ndefg", true);
    let mut c = StreamCounters::default();
    let next = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(next, Next::Release(Teardown::Close));
    assert_eq!(io.output, b"abc\ndefg");
    assert_eq!(io.more, [true, false]);
    assert_eq!(io.flushes, 1, "only the one before the FIN");
}

#[test]
fn serving_budget_spent_by_a_full_read_writes_without_more() {
    // The drive reads no more once its budget is spent: the echo of the
    // last read is the last write, so it is not held back.
    let mut p = pump(Mode::Raw, 4);
    let mut io = Script::with_input(b"01234567", false);
    let mut c = StreamCounters::default();
    assert_eq!(p.drive(T0, &mut io, 4, &mut c), Next::Yield);
    assert_eq!(io.output, b"0123");
    assert_eq!(io.more, [false]);
    assert_eq!(io.flushes, 0);
}

#[test]
fn serving_budget_spent_with_the_echo_blocked_waits_for_writable() {
    // Nothing can move until the peer reads: yielding would only have the
    // adapter drive it again at once, and again.
    let mut p = pump(Mode::Raw, 4);
    let mut io = Script::with_input(b"01234567", false);
    io.room = 0;
    let mut c = StreamCounters::default();
    assert_eq!(
        p.drive(T0, &mut io, 4, &mut c),
        Next::Wait {
            read: false,
            write: true
        }
    );
    assert_eq!(c.bytes_in, 4);
}

#[test]
fn serving_read_of_zero_bytes_is_the_peer_fin() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", true);
    io.eof_as_zero = true;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    p.set_readable();
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!(io.output, b"abc");
    assert_eq!(c.closed.peer_finished, 1);
}

#[test]
fn serving_write_sent_zero_is_taken_as_would_block() {
    let mut p = pump(Mode::Raw, 4);
    let mut io = Script::with_input(b"01234567", false);
    io.room = 0;
    io.sent_zero = true;
    let mut c = StreamCounters::default();
    assert_eq!(
        p.drive(T0, &mut io, usize::MAX, &mut c),
        Next::Wait {
            read: false,
            write: true
        }
    );
    assert_eq!((io.writes, c.bytes_out), (1, 0));
    assert_eq!(io.flushes, 0, "nothing was sent, so nothing held back");
    io.room = usize::MAX;
    p.set_writable();
    p.set_readable();
    let _ = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"01234567");
}

#[test]
fn serving_budget_spent_with_input_left_yields() {
    let mut p = pump(Mode::Raw, 4);
    let mut io = Script::with_input(b"0123456789", false);
    let mut c = StreamCounters::default();
    assert_eq!(p.drive(T0, &mut io, 8, &mut c), Next::Yield);
    assert_eq!(c.bytes_in, 8);
    let _ = p.drive(T0, &mut io, 8, &mut c);
    assert_eq!(io.output, b"0123456789");
}

#[test]
fn serving_zero_budget_still_reads_one_turn() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", false);
    let mut c = StreamCounters::default();
    // Taken as 1 byte: progress, then a yield (a zero budget used to
    // yield forever without reading).
    for n in 1..=3 {
        assert_eq!(p.drive(T0, &mut io, 0, &mut c), Next::Yield);
        assert_eq!(io.output, &b"abc"[..n]);
    }
}

#[test]
fn serving_writable_with_queued_transport_output_flushes_it() {
    // A transport that queues output of its own (TLS records the socket did
    // not take) gets a flush whenever it is writable, even with no echo
    // pending, so its queue leaves without waiting for more input.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    io.unacked = 7;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.flushes, 1);
    io.unacked = 0;
    p.set_writable();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.flushes, 1, "nothing queued: no flush");
}

#[test]
fn serving_short_read_with_the_end_pending_reads_it_without_readiness() {
    // A TLS transport decrypts the last data and the close_notify in one
    // go: it returns the data (a short read) and has the end still to say.
    // Without a readiness event to come, the pump must read again.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"last", false);
    io.eof_after_short_read = true;
    let mut c = StreamCounters::default();
    let mut next = p.drive(T0, &mut io, usize::MAX, &mut c);
    for _ in 0..3 {
        if let Next::Release(_) = next {
            break;
        }
        next = p.drive(T0, &mut io, usize::MAX, &mut c);
    }
    assert_eq!(next, Next::Release(Teardown::Close));
    assert_eq!(io.output, b"last");
    assert_eq!(c.closed.peer_finished, 1);
}

#[test]
fn serving_short_read_over_a_transport_holding_nothing_stops_reading() {
    // `read_pending` by default: a short read drained the transport.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Delivering(Script::with_input(b"abc", false));
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.0.output, b"abc");
    assert_eq!(io.0.reads, 1, "no read after the short one");
}
