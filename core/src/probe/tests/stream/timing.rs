//! Time: paced schedules, lateness, and the response clock behind the
//! timeout.

use super::*;

#[test]
fn outstanding_without_progress_times_out() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 1);
    send_all(&mut p, T0);
    let deadline = p.poll_timeout().unwrap();
    assert_eq!(deadline, T0 + Duration::from_secs(2));
    assert_eq!(
        p.handle_timeout(deadline - Duration::from_micros(1)),
        Ok(())
    );
    assert_eq!(
        p.handle_timeout(deadline),
        Err(ProbeError::Timeout { outstanding: 10 })
    );
}

#[test]
fn paced_pingpong_late_send_measures_from_schedule_and_from_send() {
    // Messages due every 10 ms; the server takes 50 ms to answer the first,
    // so the second leaves 40 ms late. Its latency counts that wait.
    let mut config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(2),
        response_timeout: None,
        interval: Some(Duration::from_millis(10).into()),
    };
    config.count = Some(2);
    let mut p = StreamProbe::<4>::new(config, T0).unwrap();
    let first = send_all(&mut p, T0);
    let t50 = T0 + Duration::from_millis(50);
    let r = p.handle_received(t50, &first).unwrap();
    assert_eq!(r.round_trip, Some(Duration::from_millis(50)));
    let second = send_all(&mut p, t50);
    assert_eq!(second.len(), 16);
    let r = p
        .handle_received(t50 + Duration::from_millis(1), &second)
        .unwrap();
    assert_eq!(
        r.round_trip,
        Some(Duration::from_millis(41)),
        "from the schedule (T0 + 10 ms)"
    );
    assert_eq!(
        r.since_sent,
        Some(Duration::from_millis(1)),
        "from the actual send"
    );
}

#[test]
fn paced_stream_next_due_follows_the_schedule_not_the_sends() {
    let config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::Stream { window: 1024 },
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(3),
        response_timeout: None,
        interval: Some(Duration::from_millis(10).into()),
    };
    let mut p = StreamProbe::<8>::new(config, T0).unwrap();
    assert_eq!(p.next_due(), Some(T0));
    // 25 ms late: messages 0, 1 and 2 are all due and begin in one commit.
    let late = T0 + Duration::from_millis(25);
    let mut buf = [0u8; 64];
    let n = p.fill_transmit(late, &mut buf);
    assert_eq!(n, 48);
    // Half of message 0 written: message 1 is the next to begin.
    p.commit_sent(late, 8).unwrap();
    assert_eq!(p.next_due(), Some(T0 + Duration::from_millis(10)));
    let n = p.fill_transmit(late, &mut buf);
    p.commit_sent(late, n).unwrap();
    assert_eq!(p.next_due(), None, "count reached");
    let unpaced = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(16), 3);
    assert_eq!(unpaced.next_due(), None);
}

/// Receiving part of the echo is progress: the response clock restarts.
#[test]
fn outstanding_receiving_part_of_the_echo_restarts_the_response_clock() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 1);
    let echo = send_all(&mut p, T0);
    let t = T0 + Duration::from_millis(1500);
    p.handle_received(t, &echo[..4]).unwrap();
    assert_eq!(p.poll_timeout(), Some(t + Duration::from_secs(2)));
    assert_eq!(p.handle_timeout(T0 + Duration::from_secs(2)), Ok(()));
    assert_eq!(p.error(), None);
    assert_eq!(
        p.handle_timeout(t + Duration::from_secs(2)),
        Err(ProbeError::Timeout { outstanding: 6 })
    );
    assert_eq!(p.error(), Some(ProbeError::Timeout { outstanding: 6 }));
}

/// With nothing outstanding the response clock is stopped; it starts
/// again at the next send, not at the last echo.
#[test]
fn idle_sending_again_starts_the_response_clock_at_the_send() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 2);
    let first = send_all(&mut p, T0);
    echo_back(&mut p, &first);
    let hour = T0 + Duration::from_secs(3600);
    assert_eq!(p.poll_timeout(), None, "nothing outstanding, no deadline");
    assert_eq!(p.handle_timeout(hour), Ok(()), "idle is no timeout");
    let second = send_all(&mut p, hour);
    assert_eq!(second.len(), 10);
    assert_eq!(p.poll_timeout(), Some(hour + Duration::from_secs(2)));
    assert_eq!(p.handle_timeout(hour + Duration::from_secs(1)), Ok(()));
}

/// A paced ping-pong waiting for an echo: the next message is already due,
/// but it cannot start, so the timer is the response deadline (a timer at
/// an instant already passed would spin the adapter).
#[test]
fn paced_pingpong_waiting_for_an_echo_sets_no_timer_for_a_message_already_due() {
    let config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(3),
        response_timeout: Some(Duration::from_secs(2)),
        interval: Some(Duration::from_millis(10).into()),
    };
    let mut p = StreamProbe::<4>::new(config, T0).unwrap();
    assert_eq!(send_all(&mut p, T0).len(), 16);
    let due = T0 + Duration::from_millis(10);
    assert_eq!(p.handle_timeout(due), Ok(()));
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(2)));
}

/// With every message begun, no paced instant is left: the timer is the
/// response deadline.
#[test]
fn paced_count_reached_sets_only_the_response_deadline() {
    let config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(1),
        response_timeout: Some(Duration::from_secs(2)),
        interval: Some(Duration::from_millis(10).into()),
    };
    let mut p = StreamProbe::<4>::new(config, T0).unwrap();
    assert_eq!(send_all(&mut p, T0).len(), 16);
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(2)));
}
