//! What the io_uring worker logs: stalled connections giving their ring
//! buffers back (`relieve_buffers`), the grace period's resets.

use super::live::{connect, stall, with_worker};
use super::*;
use crate::serve::Phase;
use crate::serve::conns::tests::logged_at;

/// Buffers that stalled connections give back when the ring runs short
/// are logged at debug, with how many (`given`); nothing is logged while
/// the ring has plenty free, nor when the stalled connections have none
/// left to give.
#[test]
fn buffers_given_back_when_the_ring_runs_short_are_logged_with_their_count() {
    with_worker(true, |w| {
        let (key, mut client) = connect(w);
        let mut sent = Vec::new();
        stall(w, key, &mut client, &mut sent);
        let held = usize::from(RX_BUFS) - w.bufs.available();
        assert!(held > 0, "a stalled connection holding no buffer");
        let relieve = |w: &mut Worker<'_>| logged_at(tracing::Level::DEBUG, || w.relieve_buffers());
        assert_eq!(relieve(w), "", "logged with plenty free");
        w.bufs
            .set_available_for_test((usize::from(RX_BUFS) / 8 - 1).saturating_sub(held));
        let text = relieve(w);
        assert!(
            text.contains("stalled connections gave theirs back")
                && text.contains(&format!(" given={held} ")),
            "{text}"
        );
        assert_eq!(relieve(w), "", "logged with none given");
        w.bufs.set_available_for_test(usize::from(RX_BUFS));
    });
}

/// At the grace period's end, a session still echoing to a peer that
/// reads nothing is reset, and the warning counts it: the count is read
/// from this worker's own counters (`Driver::counters`).
#[test]
fn grace_end_resets_a_session_its_peer_does_not_read_and_warns_with_the_count() {
    with_worker(true, |w| {
        let (key, mut client) = connect(w);
        let mut sent = Vec::new();
        stall(w, key, &mut client, &mut sent);
        w.shared.advance(Phase::Draining);
        let now = w.clock.now();
        assert!(w.follow_phase(now));
        let end = now + ricochet_core::Duration::from(w.shared.settings.grace);
        let text = logged_at(tracing::Level::WARN, || assert!(w.drained(end)));
        assert_eq!(w.counters.tcp.aborted.local, 1, "{:?}", w.counters.tcp);
        assert!(
            text.contains("grace period over: connections reset")
                && text.contains(" connections=1"),
            "{text}"
        );
    });
}
