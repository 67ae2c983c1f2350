//! What the worker says when the shared receive ring runs short and
//! stalled connections give their buffers back (`relieve_buffers`).

use super::live::{connect, stall, with_worker};
use super::*;
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
