//! After the session ended: the linger after a close, and the wait for delivery before a reset.

use super::*;

#[test]
fn lingering_input_is_read_and_discarded() {
    let mut p = pump(Mode::Raw, 8);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    p.close(T0);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    io.input.extend(b"late bytes that are not echoed");
    io.fin = true;
    p.set_readable();
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert!(io.output.is_empty());
    assert_eq!((c.bytes_in, c.bytes_discarded), (30, 30));
    assert_eq!(c.closed.local, 1);
}

#[test]
fn lingering_input_beyond_the_budget_yields() {
    let mut p = pump(Mode::Raw, 8);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    p.close(T0);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    io.input.extend(b"late bytes that are not echoed");
    p.set_readable();
    assert_eq!(p.drive(at(1), &mut io, 16, &mut c), Next::Yield);
    assert_eq!(
        c.bytes_discarded, 16,
        "the budget bounds the discarding too"
    );
    assert_eq!(io.input.len(), 14);
}

#[test]
fn lingering_with_nothing_queued_in_the_transport_does_not_flush() {
    let mut p = pump(Mode::Raw, 8);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    p.close(T0);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.flushes, 1, "before the FIN");
    io.input.extend(b"late");
    p.set_ready();
    assert!(matches!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Wait { read: true, .. }
    ));
    assert_eq!(io.flushes, 1, "nothing to flush");
}

#[test]
fn lingering_peer_fin_with_delivery_left_waits_for_it() {
    let mut p = pump(Mode::Raw, 8);
    let mut io = Script::with_input(b"", false);
    io.unacked = 4;
    let mut c = StreamCounters::default();
    p.close(T0);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    io.fin = true;
    p.set_readable();
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Wait {
            read: false,
            write: true
        }
    );
    assert!(p.session().peer_finished());
}

#[test]
fn lingering_read_of_zero_bytes_is_the_peer_fin() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    p.close(T0);
    assert!(matches!(
        p.drive(T0, &mut io, usize::MAX, &mut c),
        Next::Wait { read: true, .. }
    ));
    io.fin = true;
    io.eof_as_zero = true;
    p.set_readable();
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!(c.lingered, 0, "the peer finished within the linger");
}

#[test]
fn lingering_without_peer_fin_abandons_after_linger_and_counts_it() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    p.close(T0);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    let _ = p.drive(at(1_999), &mut io, usize::MAX, &mut c);
    assert!(!p.is_released());
    assert_eq!(
        p.drive(at(2_000), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Abandon)
    );
    assert_eq!(c.lingered, 1);
    assert_eq!(c.closed.local, 1, "still a graceful close");
}

#[test]
fn lingering_delivery_progress_restarts_the_linger_clock() {
    // The transport still holds unacknowledged echo (a lossy path): the
    // linger counts from the last acknowledgement, not from the close.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", true);
    io.unacked = 3000;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert!(!p.is_released(), "FIN seen, but echo not yet delivered");
    io.unacked = 1500;
    let _ = p.drive(at(1_900), &mut io, usize::MAX, &mut c);
    assert!(
        !p.is_released() && p.poll_timeout() == Some(at(3_900)),
        "progress at 1.9 s moves the deadline to 3.9 s"
    );
    let _ = p.drive(at(3_000), &mut io, usize::MAX, &mut c);
    assert!(
        !p.is_released(),
        "2 s after the close, but delivery progressed"
    );
    io.unacked = 0;
    assert_eq!(
        p.drive(at(3_500), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!(c.lingered, 0);
}

#[test]
fn lingering_queued_output_failing_releases_at_once_without_a_linger() {
    // The peer finished; the echo and FIN wait in the transport's own queue
    // (io_uring, TLS), and the send that carries them fails (the peer is
    // gone): nothing will be delivered, so the linger ends now, not 2 s on.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", true);
    io.unacked = 4;
    io.queues = true;
    let mut c = StreamCounters::default();
    p.set_read_closed();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"abc");
    assert!(!p.is_released(), "echo not yet delivered: lingering");
    assert_eq!(c.ended(), 0, "not counted before its echo is delivered");
    assert_eq!(p.poll_event(), Some(Event::PeerFinished));
    assert_eq!(
        p.poll_event(),
        Some(Event::Closed(CloseReason::PeerFinished))
    );
    io.output_failed = true;
    p.set_writable();
    assert_eq!(
        p.drive(at(5), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!(c.lingered, 0, "released, not abandoned");
    // The echo never reached the peer: counted as the reset a failing
    // write would have been, not as a graceful close.
    assert_eq!((c.closed.total(), c.aborted.peer_reset), (0, 1));
    assert_eq!(p.poll_event(), Some(Event::Aborted(AbortReason::PeerReset)));
    assert_eq!(p.poll_event(), None);
}

#[test]
fn lingering_queued_output_failing_after_its_delivery_keeps_the_close() {
    // Everything was delivered (and the close counted); the peer then goes
    // away before its FIN: the close stands, in the counters and the log.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", false);
    io.queues = true;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    p.close(at(1));
    let _ = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(c.closed.local, 1, "delivered: counted");
    assert_eq!(p.poll_event(), Some(Event::Closed(CloseReason::Local)));
    io.output_failed = true;
    assert_eq!(
        p.drive(at(2), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!((c.closed.local, c.aborted.total()), (1, 0));
    assert_eq!(p.session().state(), State::Closed(CloseReason::Local));
    assert_eq!(p.poll_event(), None);
}

#[test]
fn lingering_queued_output_delivered_counts_the_close_then() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", false);
    io.unacked = 4;
    io.queues = true;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    p.close(at(1));
    let _ = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(c.ended(), 0, "its echo and FIN are still queued");
    io.unacked = 0;
    p.set_writable();
    assert!(matches!(
        p.drive(at(2), &mut io, usize::MAX, &mut c),
        Next::Wait { read: true, .. }
    ));
    assert_eq!(c.closed.local, 1, "delivered: counted while lingering on");
    io.fin = true;
    p.set_readable();
    assert_eq!(
        p.drive(at(3), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!(c.ended(), 1, "counted once");
}

#[test]
fn lingering_queued_output_never_delivered_counts_the_close_when_abandoned() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", true);
    io.unacked = 4;
    io.queues = true;
    let mut c = StreamCounters::default();
    p.set_read_closed();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(c.ended(), 0);
    assert_eq!(
        p.drive(at(2_001), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Abandon)
    );
    assert_eq!((c.closed.peer_finished, c.lingered), (1, 1));

    // Stopped (an adapter exiting) while its output is queued: counted too.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"abc", true);
    io.unacked = 4;
    io.queues = true;
    let mut c = StreamCounters::default();
    p.set_read_closed();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(p.stop(at(1), &mut c), Some(Teardown::Abandon));
    assert_eq!((c.closed.peer_finished, c.lingered), (1, 1));
}

#[test]
fn lingering_abort_abandons_at_once() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    p.close(T0);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    p.abort(at(1));
    assert_eq!(p.poll_timeout(), Some(Instant::ZERO));
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Abandon)
    );
    assert_eq!((c.lingered, c.aborted.total()), (1, 0));
}

/// `Pump::abort`'s contract: a session that ended cleanly at the close
/// (nothing to echo) and was not driven since keeps that end: the drive
/// sends its FIN and lingers; a second abort then cuts the linger short.
#[test]
fn closed_session_aborted_before_its_first_drive_keeps_its_fin_then_abandons() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    p.close(T0);
    p.abort(T0);
    let next = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert!(!matches!(next, Next::Release(_)), "{next:?}");
    assert_eq!(io.shutdowns, 1, "the FIN of the clean close");
    p.abort(at(1));
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Abandon)
    );
    assert_eq!(c.aborted.total(), 0, "counted as a close, not an abort");
}

#[test]
fn lingering_time_stepping_back_does_not_end_the_linger_early() {
    // Regression: the linger took the raw `now`, so a clock that stepped
    // back made it end 0.5 s after the close instead of 2 s.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    let _ = p.drive(at(3_000), &mut io, usize::MAX, &mut c);
    p.close(at(3_000));
    let _ = p.drive(at(1_000), &mut io, usize::MAX, &mut c);
    assert_eq!(io.shutdowns, 1);
    let _ = p.drive(at(3_500), &mut io, usize::MAX, &mut c);
    assert!(!p.is_released(), "lingered 0.5 s of 2");
    assert_eq!(
        p.drive(at(5_000), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Abandon)
    );
}

#[test]
fn lingering_reset_abandons_the_old_connection_and_counts_it() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    p.close(T0);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(
        p.reset(cfg(Mode::Raw), at(1), &mut c),
        Some(Teardown::Abandon)
    );
    assert_eq!((c.closed.local, c.lingered), (1, 1));
    assert!(!p.is_finishing(), "serving the new connection");
}

#[test]
fn lingering_writable_with_queued_transport_output_flushes_it() {
    // After the close, a TLS transport still holds close_notify and the FIN:
    // each writable drive pushes them, until nothing is left.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", true);
    let mut c = StreamCounters::default();
    io.unacked = 2;
    p.set_read_closed();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert!(!p.is_released());
    let before = io.flushes;
    p.set_writable();
    let _ = p.drive(at(10), &mut io, usize::MAX, &mut c);
    assert_eq!(io.flushes, before + 1, "writable while lingering: flushed");
    io.unacked = 0;
    p.set_writable();
    assert_eq!(
        p.drive(at(20), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
}

#[test]
fn lingering_over_a_transport_queueing_nothing_counts_the_close_and_waits_for_delivery() {
    // `queues_output` and `output_failed` by default: the kernel (or
    // smoltcp) delivers what it took, so the close counts when the session
    // closes, and the linger waits for that delivery.
    let mut p = pump(Mode::Raw, 64);
    let mut io = Delivering(Script::with_input(b"abc", true));
    io.0.unacked = 4;
    let mut c = StreamCounters::default();
    p.set_read_closed();
    assert_eq!(
        p.drive(T0, &mut io, usize::MAX, &mut c),
        Next::Wait {
            read: false,
            write: true
        }
    );
    assert_eq!(io.0.output, b"abc");
    assert_eq!(c.closed.peer_finished, 1, "counted at the close");
    io.0.unacked = 0;
    p.set_writable();
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!(c.ended(), 1, "counted once");
}

#[test]
#[cfg(feature = "deliver_before_reset")]
fn waiting_to_reset_looks_at_delivery_again_by_itself_sooner_then_less_often() {
    // A kernel's send queue drains with no readiness event: without its
    // own timer the pump would see the delivery only at the linger's end,
    // and every such reset would come 2 s late.
    let (mut p, mut io, mut c, _) = overlong_line_behind_undelivered_echo(3);
    let mut looks = Vec::new();
    while let Some(t) = p.poll_timeout() {
        if t >= at(2_000) {
            break;
        }
        looks.push(t.saturating_since(T0).as_millis());
        // Bounded: a pump coming back without time passing fails, never hangs.
        assert!(
            looks.len() <= 32,
            "looks that never reach the linger: {looks:?}"
        );
        assert!(matches!(
            p.drive(t, &mut io, usize::MAX, &mut c),
            Next::Wait { .. }
        ));
    }
    assert_eq!(
        looks,
        [
            1, 3, 7, 15, 31, 63, 127, 255, 505, 755, 1005, 1255, 1505, 1755
        ]
    );
    assert_eq!(
        p.poll_timeout(),
        Some(at(2_000)),
        "the linger still ends it"
    );
    // Delivered between two looks: the next one resets.
    let (mut p, mut io, mut c, _) = overlong_line_behind_undelivered_echo(3);
    assert!(matches!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Wait { .. }
    ));
    io.unacked = 0;
    assert_eq!(p.poll_timeout(), Some(at(3)));
    assert_eq!(
        p.drive(at(3), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
}

#[test]
#[cfg(feature = "deliver_before_reset")]
fn waiting_to_reset_abort_or_stop_resets_at_once() {
    let (mut p, mut io, mut c, _) = overlong_line_behind_undelivered_echo(3);
    p.abort(at(1));
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
    let (mut p, _, mut c, _) = overlong_line_behind_undelivered_echo(3);
    assert_eq!(p.stop(at(1), &mut c), Some(Teardown::Reset));
    assert_eq!(c.aborted.line_too_long, 1, "counted once");
    assert_eq!(c.aborted.local, 0);
    assert_eq!(c.lingered, 0);
}

/// A transport that reports more bytes than the buffer it was given
/// (outside [`Transport::read`]'s contract): counted as what was offered,
/// as while serving, never more.
struct Overstating(Script);

impl Transport for Overstating {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        match self.0.read(buf) {
            ReadOutcome::Data(n) if n > 0 => ReadOutcome::Data(n + 1000),
            other => other,
        }
    }

    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome {
        self.0.write(buf, more)
    }

    fn shutdown_write(&mut self) {
        self.0.shutdown_write();
    }
}

#[test]
fn lingering_read_reported_larger_than_offered_counts_only_what_was_offered() {
    let mut p = pump(Mode::Raw, 8);
    let mut io = Overstating(Script::with_input(b"", false));
    let mut c = StreamCounters::default();
    p.close(T0);
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    io.0.input.extend(b"late bytes");
    p.set_readable();
    let _ = p.drive(at(1), &mut io, 8, &mut c);
    assert_eq!(
        (c.bytes_in, c.bytes_discarded),
        (8, 8),
        "at most the budget (8) was offered"
    );
}
