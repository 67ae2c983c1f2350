//! Probe unit tests, named `<state>_<event>_<outcome>`: the stream probe's
//! in `stream.rs`, the datagram probe's in `datagram.rs`; here the shared
//! helpers and what both share (configuration, errors, pacing).

use super::*;
use crate::{Duration, Instant};

mod datagram;
mod stream;

const T0: Instant = Instant::from_micros(1_000);

/// Panics once a test loop has run `LOOP_BOUND` times: a mutant that stops
/// the probe's progress (nothing consumed, nothing sent, no deadline
/// passing) then fails the test instead of hanging it.
const LOOP_BOUND: u32 = 100_000;

fn bounded(turns: &mut u32) {
    *turns += 1;
    assert!(*turns <= LOOP_BOUND, "no progress after {LOOP_BOUND} turns");
}

/// Sends everything allowed now; returns the bytes.
fn send_all<const M: usize>(p: &mut StreamProbe<M>, now: Instant) -> std::vec::Vec<u8> {
    let mut buf = [0u8; 4096];
    let n = p.fill_transmit(now, &mut buf);
    p.commit_sent(now, n).unwrap();
    buf[..n].to_vec()
}

/// 32-byte datagrams of seed 5, one every 10 ms, `window` in flight.
fn paced_datagrams(count: Option<u64>, window: usize) -> DatagramProbeConfig {
    DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(32),
        count,
        window,
        loss_timeout: Duration::from_secs(1),
        interval: Some(Duration::from_millis(10).into()),
    }
}

#[test]
fn premature_close_with_nothing_in_flight_says_nothing_was_lost() {
    use std::string::ToString;
    let between = ProbeError::PrematureClose {
        verified: 640,
        outstanding: 0,
    }
    .to_string();
    assert!(
        between.contains("before the probe was done") && between.contains("640 bytes verified"),
        "{between}"
    );
    assert!(!between.contains("never returned"), "{between}");
    let mid = ProbeError::PrematureClose {
        verified: 640,
        outstanding: 64,
    }
    .to_string();
    assert!(mid.contains("64 bytes never returned"), "{mid}");
}

#[test]
fn paced_schedule_starting_later_sends_nothing_before_it_then_counts_from_it() {
    // A connection whose phase puts its schedule 3 ms into the interval.
    let config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(2),
        response_timeout: Some(Duration::from_secs(2)),
        interval: Some(Duration::from_millis(10).into()),
    };
    let start = T0 + Duration::from_millis(3);
    let mut p = StreamProbe::<4>::with_schedule(config, T0, start).unwrap();
    assert_eq!(p.next_due(), Some(start));
    assert_eq!(
        p.poll_timeout(),
        Some(start),
        "a timer for the first message"
    );
    assert!(send_all(&mut p, T0).is_empty(), "nothing before its start");
    let first = send_all(&mut p, start);
    assert_eq!(first.len(), 16);
    let r = p
        .handle_received(start + Duration::from_millis(1), &first)
        .unwrap();
    assert_eq!(r.round_trip, Some(Duration::from_millis(1)));
    assert_eq!(p.next_due(), Some(start + Duration::from_millis(10)));

    let config = paced_datagrams(Some(2), 1);
    let mut d = DatagramProbe::<8>::with_schedule(config, T0, start).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(d.next_due(), Some(start));
    assert!(
        d.poll_transmit(T0, &mut buf).is_none(),
        "nothing before its start"
    );
    assert!(d.poll_transmit(start, &mut buf).is_some());
}

#[test]
fn config_error_display_names_the_sizes_and_the_window() {
    use std::string::ToString;
    assert_eq!(
        ConfigError::EmptySizeRange { min: 5, max: 4 }.to_string(),
        "empty size range 5..=4"
    );
    assert_eq!(
        ConfigError::SizeOutOfBounds {
            size: 0,
            min: 1,
            max: 9
        }
        .to_string(),
        "message size 0 is outside 1..=9 for this mode"
    );
    assert_eq!(
        ConfigError::BadWindow { window: 0, max: 4 }.to_string(),
        "a window of 0: at least 1"
    );
    assert_eq!(
        ConfigError::BadWindow { window: 5, max: 4 }.to_string(),
        "datagram window of 5, at most 4 (datagrams the probe tracks)"
    );
}

#[test]
fn probe_error_display_names_the_offset_the_bytes_and_what_is_outstanding() {
    use std::string::ToString;
    assert_eq!(
        ProbeError::Mismatch {
            offset: 237,
            expected: 0x0a,
            actual: 0xff
        }
        .to_string(),
        "mismatch at stream offset 237: sent 0x0a, got 0xff"
    );
    assert_eq!(
        ProbeError::UnexpectedData { offset: 4 }.to_string(),
        "unexpected data at stream offset 4: more came back than was sent"
    );
    assert_eq!(
        ProbeError::Timeout { outstanding: 10 }.to_string(),
        "timed out waiting for 10 outstanding bytes"
    );
}

#[test]
fn config_refuses_a_window_of_0_or_a_datagram_window_beyond_m() {
    let datagram = |window| {
        DatagramProbe::<4>::new(
            DatagramProbeConfig {
                window,
                ..DatagramProbeConfig::default()
            },
            T0,
        )
        .err()
    };
    assert_eq!(
        datagram(0),
        Some(ConfigError::BadWindow { window: 0, max: 4 })
    );
    assert_eq!(
        datagram(5),
        Some(ConfigError::BadWindow { window: 5, max: 4 })
    );
    assert_eq!(datagram(4), None, "a window of M is the ring");
    assert_eq!(
        StreamProbe::<8>::new(
            ProbeConfig {
                pattern: Pattern::Stream { window: 0 },
                ..ProbeConfig::default()
            },
            T0,
        )
        .err(),
        Some(ConfigError::BadWindow {
            window: 0,
            max: usize::MAX
        })
    );
}
