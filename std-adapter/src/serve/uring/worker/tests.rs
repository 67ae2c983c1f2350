use super::*;

mod exit;
mod host;
mod live;
#[cfg(feature = "cli")]
mod logs;
mod wakes;

#[test]
fn only_last_completions_of_counted_requests_end_one_in_flight() {
    const F_MORE: u32 = 1 << 1;
    assert!(cqueue::more(F_MORE), "IORING_CQE_F_MORE");
    let recv = user_data(Op::Recv, 3, 0);
    assert!(ends_counted(recv, 0));
    assert!(!ends_counted(recv, F_MORE), "a multishot receive goes on");
    assert!(
        !ends_counted(user_data(Op::Send, 3, 0), 0),
        "sends are not counted"
    );
    assert!(
        !ends_counted(bundle::check_cancel_user_data(), 0),
        "the cancel of the bundle check's receive is never counted"
    );
    assert!(
        ends_counted(bundle::check_user_data(), 0),
        "the check's receive is, when the check left it in flight"
    );
    assert!(
        ends_counted(user_data(Op::Cancel, 0, 0), 0),
        "the worker's own cancels are"
    );
    assert!(ends_counted(user_data(Op::Accept, 0, 0), 0));
}

#[test]
fn waiting_receives_are_granted_only_from_a_quarter_of_the_ring_free() {
    use super::super::stream::grants;
    assert_eq!(grants(0), 0);
    assert_eq!(grants(4 * REARM_MIN_FREE - 1), 0);
    assert_eq!(grants(4 * REARM_MIN_FREE), 1);
    assert_eq!(grants(usize::from(RX_BUFS)), 8);
}

#[test]
fn ring_is_short_when_receives_wait_or_an_eighth_is_left() {
    use super::super::stream::scarce;
    let ring = usize::from(RX_BUFS);
    assert!(!scarce(ring, 0));
    assert!(!scarce(ring / 8, 0));
    assert!(scarce(ring / 8 - 1, 0));
    assert!(scarce(ring, 1), "a receive waits for buffers");
}

#[test]
fn worker_with_waiting_receives_and_too_few_buffers_to_grant_waits() {
    // The state a worker spun in (millions of turns a second): 12
    // receives waiting, 18 buffers free, none granted.
    assert!(!rearm_possible(12, 18));
    assert!(rearm_possible(12, 32));
    assert!(!rearm_possible(0, 1024));
}

/// A quiet connection's only deadline is its idle timeout: the worker may
/// sleep until then, not wake at once (a deadline in the past would drive
/// every connection every turn, a busy loop).
#[test]
fn quiet_connection_lets_the_worker_sleep_until_its_idle_timeout() {
    use crate::serve::conns::Tracked;
    live::with_worker(false, |w| {
        let admitted = w.clock.now();
        let (key, _client) = live::connect(w);
        live::turn(w);
        let now = w.clock.now();
        let idle = ricochet_core::SessionConfig::default()
            .idle_timeout
            .expect("an idle timeout by default");
        let conn = w.conns.get(key).expect("open");
        let deadline = conn.deadline().expect("the idle deadline");
        assert!(
            deadline >= admitted + idle && deadline <= now + idle,
            "deadline {deadline:?}, admitted {admitted:?}, now {now:?}"
        );
        let wait = w.conns.wait_limit([], now).expect("a limit");
        assert!(wait > StdDuration::from_secs(60), "{wait:?}");
    });
}
