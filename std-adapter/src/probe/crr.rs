//! `--pattern crr` (connect, request, response): each connection slot
//! opens a connection, echoes one message through it, half-closes, waits
//! for the server's FIN, and starts over, `--count` times (or until
//! `--duration` ends). Over `tls://` every round is a handshake, so the
//! report's handshakes per second is the server's handshake rate at that
//! concurrency (`--tls-resumption off` for full handshakes only).
//!
//! Kept apart from the stream worker, which only asks two questions here:
//! which probe configuration a round uses, and whether a slot that just
//! finished a round cleanly starts another.

use ricochet_core::probe::ProbeConfig;

use super::spec::{ProbeSpec, Stop, connection_seed};

/// The core probe configuration of round `round` of connection slot `conn`:
/// one ping-pong message, with a payload seed of its own.
pub(super) fn round_config(spec: &ProbeSpec, conn: usize, round: u64) -> ProbeConfig {
    let mut config = spec.stream_config(conn);
    config.count = Some(1);
    config.interval = None;
    config.seed = connection_seed(spec.seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15), conn);
    config
}

/// Whether a slot that cleanly finished `rounds_done` rounds starts another.
pub(super) fn another_round(spec: &ProbeSpec, rounds_done: u64, finishing: bool) -> bool {
    match spec.stop {
        Stop::Count(n) => rounds_done < n && !finishing,
        Stop::Duration(_) => !finishing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Pattern, Target};

    fn spec() -> ProbeSpec {
        let mut s = ProbeSpec::new(Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()]));
        s.pattern = Pattern::Crr;
        s
    }

    #[test]
    fn crr_round_is_one_message_with_its_own_seed() {
        let s = spec();
        let (a, b) = (round_config(&s, 0, 0), round_config(&s, 0, 1));
        assert_eq!((a.count, b.count), (Some(1), Some(1)));
        assert_ne!(a.seed, b.seed);
        assert_ne!(a.seed, round_config(&s, 1, 0).seed);
    }

    #[test]
    fn crr_count_bounds_the_rounds_and_finishing_stops_them() {
        let mut s = spec();
        s.stop = Stop::Count(3);
        assert!(another_round(&s, 2, false));
        assert!(!another_round(&s, 3, false));
        assert!(!another_round(&s, 1, true));
        s.stop = Stop::Duration(std::time::Duration::from_secs(1));
        assert!(another_round(&s, 1_000_000, false));
        assert!(!another_round(&s, 1, true));
    }
}
