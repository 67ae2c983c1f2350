//! The session's ends in the serving phase: the peer's FIN or reset,
//! timeouts, aborts, a close when idle, and an overlong line behind echo.

use super::*;

#[test]
fn serving_eof_after_pending_echo_closes_and_counts_peer_finished() {
    let mut p = pump(Mode::Lines, 64);
    let mut io = Script::with_input(b"a\nlast", true);
    let mut c = StreamCounters::default();
    p.set_read_closed();
    let next = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(next, Next::Release(Teardown::Close));
    assert_eq!(
        io.output, b"a\nlast",
        "the unterminated last line is echoed"
    );
    assert_eq!(io.shutdowns, 1);
    assert_eq!(p.poll_event(), Some(Event::PeerFinished));
    assert_eq!(
        p.poll_event(),
        Some(Event::Closed(CloseReason::PeerFinished))
    );
    assert_eq!(c.ended(), 1);
}

#[test]
fn serving_read_reset_aborts_counts_peer_reset_and_resets() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    io.read_failure = Some(Failure::Reset);
    let mut c = StreamCounters::default();
    assert_eq!(
        p.drive(T0, &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
    assert_eq!(c.aborted.peer_reset, 1);
    assert_eq!(io.shutdowns, 0, "no FIN before a reset");
}

#[test]
fn serving_transport_timeout_counts_timed_out_not_peer_reset() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"x", false);
    io.write_failure = Some(Failure::TimedOut);
    let mut c = StreamCounters::default();
    assert_eq!(
        p.drive(T0, &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
    assert_eq!((c.aborted.timed_out, c.aborted.peer_reset), (1, 0));
    assert_eq!(p.poll_event(), Some(Event::Aborted(AbortReason::TimedOut)));
}

#[test]
fn serving_idle_deadline_closes_sends_fin_and_lingers_for_eof() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(p.poll_timeout(), Some(at(10_000)));
    let next = p.drive(at(10_000), &mut io, usize::MAX, &mut c);
    assert_eq!(
        next,
        Next::Wait {
            read: true,
            write: false
        },
        "lingering: waiting for the peer's FIN"
    );
    assert_eq!(io.shutdowns, 1);
    assert_eq!(c.closed.idle_timeout, 1);
    assert_eq!(p.poll_timeout(), Some(at(12_000)));
    io.fin = true;
    p.set_readable();
    assert_eq!(
        p.drive(at(10_500), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!(c.lingered, 0);
}

#[test]
fn serving_abort_resets_and_counts_local() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", false);
    io.room = 0;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(c.buffered, 3);
    p.abort(at(1));
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
    assert_eq!(c.aborted.local, 1);
    assert_eq!((c.buffered, c.bytes_discarded), (0, 3));
}

#[test]
fn serving_abort_or_close_of_an_idle_connection_is_due_at_once() {
    // Regression: poll_timeout() was None once the session had ended, so
    // an adapter sleeping until readiness or poll_timeout() never drove an
    // idle connection again: never reset or closed, never counted.
    for abort in [true, false] {
        let mut p = pump(Mode::Raw, 64);
        let mut io = Script::with_input(b"", false);
        let mut c = StreamCounters::default();
        let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
        if abort {
            p.abort(at(1));
        } else {
            p.close(at(1));
        }
        let due = p.poll_timeout();
        assert!(due.is_some_and(|t| t <= at(1)), "abort {abort}: {due:?}");
        let next = p.drive(at(1), &mut io, usize::MAX, &mut c);
        if abort {
            assert_eq!(next, Next::Release(Teardown::Reset));
            assert_eq!(c.aborted.local, 1);
        } else {
            assert_eq!(io.shutdowns, 1, "FIN sent");
            assert_eq!(c.closed.local, 1);
            assert_eq!(p.poll_timeout(), Some(at(1) + Duration::from_secs(2)));
        }
    }
}

#[test]
fn serving_peer_stops_reading_drain_deadline_resets() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"stuck", false);
    io.room = 0;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(p.poll_timeout(), Some(at(5_000)));
    assert_eq!(
        p.drive(at(5_000), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
    assert_eq!(c.aborted.drain_timeout, 1);
}

#[test]
fn serving_reset_stops_the_old_session_counts_it_and_clears_its_gauge() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"held back", false);
    io.room = 0;
    let mut c = StreamCounters {
        accepted: 1,
        ..StreamCounters::default()
    };
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(c.buffered, 9);
    // Re-armed while its connection still runs: the old one must be
    // released (reset) and counted, its bytes leave the gauge.
    assert_eq!(
        p.reset(cfg(Mode::Raw), at(1), &mut c),
        Some(Teardown::Reset)
    );
    assert_eq!((c.aborted.local, c.bytes_discarded, c.buffered), (1, 9, 0));
    c.accepted += 1;
    let mut io = Script::with_input(b"new", false);
    let _ = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"new");
    assert_eq!((c.active(), c.buffered), (1, 0), "{c:?}");
}

/// A server shutdown while the peer is still sending: what it sent after
/// the shutdown began is echoed too. (`Pump::close` stopped taking input
/// at once and the linger read the rest and discarded it, after a FIN
/// that made the echo look complete.)
#[cfg(feature = "shutdown")]
#[test]
fn serving_close_when_idle_echoes_input_still_coming_then_closes_once_quiet() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"first", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    p.close_when_idle();
    let next = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(io.shutdowns, 0, "bytes moved just now: not idle yet");
    assert_eq!(
        next,
        Next::Wait {
            read: true,
            write: false
        }
    );
    assert_eq!(p.poll_timeout(), Some(T0 + IDLE_QUIET), "looks again then");
    io.input.extend(b" second");
    p.set_readable();
    let _ = p.drive(at(100), &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"first second", "still echoed");
    assert_eq!(io.shutdowns, 0);
    let quiet = at(100) + IDLE_QUIET;
    assert_eq!(p.poll_timeout(), Some(quiet));
    let _ = p.drive(quiet, &mut io, usize::MAX, &mut c);
    assert_eq!(io.shutdowns, 1, "quiet: FIN");
    assert_eq!(c.closed.local, 1);
    assert_eq!(c.bytes_discarded, 0);
}

/// A connection quiet before the shutdown closes at once, with nothing
/// echoed late and nothing discarded.
#[cfg(feature = "shutdown")]
#[test]
fn serving_close_when_idle_of_a_quiet_connection_closes_at_once() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"x", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    let later = T0 + IDLE_QUIET + Duration::from_millis(1);
    p.close_when_idle();
    let _ = p.drive(later, &mut io, usize::MAX, &mut c);
    assert_eq!(io.shutdowns, 1);
    assert_eq!(c.closed.local, 1);
}

/// Input that arrived during a quiet spell, unread when the shutdown
/// comes (the adapter had not driven its readiness yet), is read and
/// echoed before the quiet closes the connection: the peer sent it before
/// the shutdown. (The deadline fired first, so the connection closed with
/// a FIN and that input unread: 4 MB sent, nothing echoed, a clean end.)
#[cfg(feature = "shutdown")]
#[test]
fn serving_close_when_idle_with_input_unread_after_a_quiet_spell_echoes_it_first() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"x", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    let later = T0 + IDLE_QUIET + Duration::from_millis(1);
    io.input.extend(b" late");
    p.set_readable();
    p.close_when_idle();
    let _ = p.drive(later, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"x late", "read and echoed");
    assert_eq!(io.shutdowns, 0, "bytes moved just now: not quiet yet");
    let _ = p.drive(later + IDLE_QUIET, &mut io, usize::MAX, &mut c);
    assert_eq!(io.shutdowns, 1, "quiet since: FIN");
    assert_eq!((c.closed.local, c.bytes_discarded), (1, 0));
}

/// The same at the idle timeout: input ready when the deadline is reached
/// means the peer was not idle; it is echoed and the connection stays open.
#[test]
fn serving_idle_deadline_with_input_ready_echoes_it_and_stays_open() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    io.input.extend(b"hello");
    p.set_readable();
    let next = p.drive(at(10_000), &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"hello");
    assert_eq!((io.shutdowns, c.closed.idle_timeout), (0, 0));
    assert_eq!(
        next,
        Next::Wait {
            read: true,
            write: false
        }
    );
    assert_eq!(p.poll_timeout(), Some(at(20_000)), "idle counted from now");
}

/// Output still pending (the peer reads slowly) is not idle either: the
/// connection stays open until it is written.
#[cfg(feature = "shutdown")]
#[test]
fn serving_close_when_idle_waits_for_pending_echo() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"pending", false);
    io.room = 3;
    let mut c = StreamCounters::default();
    let later = T0 + IDLE_QUIET + Duration::from_millis(1);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    p.close_when_idle();
    let _ = p.drive(later, &mut io, usize::MAX, &mut c);
    assert_eq!(io.shutdowns, 0, "4 bytes still to write");
    io.room = usize::MAX;
    p.set_writable();
    let at_write = later + Duration::from_millis(1);
    let _ = p.drive(at_write, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"pending");
    let _ = p.drive(at_write + IDLE_QUIET, &mut io, usize::MAX, &mut c);
    assert_eq!(io.shutdowns, 1);
    assert_eq!(c.closed.local, 1);
}

/// A held partial line (lines mode) is echoed when an idle connection is
/// closed, in the same drive as the FIN: nothing waits for a writable
/// edge that an edge-triggered transport would never send again.
#[cfg(feature = "shutdown")]
#[test]
fn serving_close_when_idle_echoes_a_held_line_then_fin_in_one_drive() {
    let mut p = pump(Mode::Lines, 64);
    let mut io = Script::with_input(b"done\ntail", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"done\n");
    p.close_when_idle();
    let _ = p.drive(T0 + IDLE_QUIET, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"done\ntail");
    assert_eq!(io.shutdowns, 1);
}

#[test]
#[cfg(feature = "deliver_before_reset")]
fn serving_line_too_long_behind_undelivered_echo_resets_once_it_is_delivered() {
    // A reset discards what the peer has not acknowledged: the whole
    // lines before the overlong one must reach it first.
    let (mut p, mut io, mut c, next) = overlong_line_behind_undelivered_echo(3);
    assert_eq!(
        next,
        Next::Wait {
            read: true,
            write: true
        }
    );
    assert_eq!(io.output, b"ok\n");
    assert_eq!(c.aborted.line_too_long, 1, "counted when it aborts");
    assert_eq!(io.shutdowns, 0, "no FIN before a reset");
    assert_eq!(p.poll_timeout(), Some(at(1)), "looks again by itself");
    io.input.extend(b"more input is discarded");
    assert!(matches!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Wait { .. }
    ));
    io.unacked = 0;
    assert_eq!(
        p.drive(at(2), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
    assert_eq!(c.lingered, 0);
    assert_eq!(c.aborted.line_too_long, 1);
}

#[test]
#[cfg(feature = "deliver_before_reset")]
fn serving_line_too_long_behind_echo_never_delivered_resets_after_the_linger() {
    let (mut p, mut io, mut c, _) = overlong_line_behind_undelivered_echo(3);
    assert!(matches!(
        p.drive(at(1_999), &mut io, usize::MAX, &mut c),
        Next::Wait { .. }
    ));
    assert_eq!(
        p.drive(at(2_000), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
    assert_eq!(c.lingered, 0, "not a linger of a close");
}

#[test]
#[cfg(feature = "deliver_before_reset")]
fn serving_line_too_long_behind_a_kernel_send_queue_waits_for_no_writability() {
    // The send queue drains as the peer acknowledges, with no readiness
    // event to wait for: the pump looks again by its own deadline.
    let mut p = pump(Mode::Lines, 8);
    let mut io = Kernel(Script::with_input(b"ok\nxxxxxxxxxx", false));
    io.0.unacked = 3;
    let mut c = StreamCounters::default();
    assert_eq!(
        p.drive(T0, &mut io, usize::MAX, &mut c),
        Next::Wait {
            read: true,
            write: false
        }
    );
    assert_eq!(p.poll_timeout(), Some(at(1)));
    io.0.unacked = 0;
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
}

#[test]
#[cfg(feature = "deliver_before_reset")]
fn serving_line_too_long_with_everything_delivered_resets_at_once() {
    let (_, io, c, next) = overlong_line_behind_undelivered_echo(0);
    assert_eq!(next, Next::Release(Teardown::Reset));
    // What follows the overlong line is left to the reset, not read first.
    assert_eq!(io.input, b"xx");
    assert_eq!((c.bytes_in, c.bytes_discarded), (11, 8));
}

#[test]
fn serving_drain_timeout_with_echo_undelivered_resets_at_once() {
    // The peer takes nothing: waiting for delivery would be in vain.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"stuck", false);
    io.room = 0;
    io.unacked = 100;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(
        p.drive(at(5_000), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
}
