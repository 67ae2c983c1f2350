//! Scenario tests: a probe and a server session through an in-memory pipe,
//! with a virtual clock. Named after the scenario and its outcome.

mod support;

use ricochet_core::probe::{Pattern, ProbeConfig, ProbeError, SizeRange, StreamProbe};
use ricochet_core::session::{AbortReason, CloseReason, Event, Session, SessionConfig, State};
use ricochet_core::{Duration, Instant, Mode};
use support::{Chunks, Pair};

const T0: Instant = Instant::from_micros(7_000_000);

fn server_cfg(mode: Mode) -> SessionConfig {
    SessionConfig {
        mode,
        idle_timeout: Some(Duration::from_secs(10)),
        drain_timeout: Some(Duration::from_secs(5)),
        ..SessionConfig::default()
    }
}

fn probe_cfg(mode: Mode, pattern: Pattern, size: SizeRange, count: u64) -> ProbeConfig {
    ProbeConfig {
        mode,
        pattern,
        seed: 9,
        size,
        count: Some(count),
        response_timeout: Some(Duration::from_secs(30)),
        interval: None,
    }
}

fn pair<const N: usize>(probe: ProbeConfig, server: SessionConfig) -> Pair<N, 64> {
    Pair::new(
        StreamProbe::new(probe, T0).unwrap(),
        Session::new([0u8; N], server, T0),
        T0,
    )
}

#[test]
fn raw_pingpong_every_message_verified_then_server_closes_after_fin() {
    let mut p = pair::<4096>(
        probe_cfg(Mode::Raw, Pattern::PingPong, SizeRange::fixed(64), 100),
        server_cfg(Mode::Raw),
    );
    let out = p.run(&mut Chunks::new(&[7, 64, 1, 300]), 100_000);
    assert_eq!(out.probe, Ok(()));
    assert_eq!((out.sent, out.verified, out.round_trips), (6400, 6400, 100));
    assert_eq!(out.server, State::Closed(CloseReason::PeerFinished));
    assert_eq!(
        out.server_events,
        vec![
            Event::PeerFinished,
            Event::Closed(CloseReason::PeerFinished)
        ]
    );
}

#[test]
fn raw_stream_larger_than_buffer_is_backpressured_and_nothing_lost() {
    let window = 64 * 1024;
    let mut p = pair::<256>(
        probe_cfg(
            Mode::Raw,
            Pattern::Stream { window },
            SizeRange::range(1, 5000),
            200,
        ),
        server_cfg(Mode::Raw),
    );
    let out = p.run(&mut Chunks::new(&[1000, 3, 4096, 17]), 1_000_000);
    assert_eq!(out.probe, Ok(()));
    assert_eq!(out.sent, out.verified);
    assert!(out.sent > 200_000, "sent {}", out.sent);
    assert!(p.max_buffered <= 256);
}

#[test]
fn lines_random_sizes_split_anywhere_all_verified() {
    let mut p = pair::<1024>(
        probe_cfg(
            Mode::Lines,
            Pattern::Stream { window: 10_000 },
            SizeRange::range(1, 1024),
            300,
        ),
        server_cfg(Mode::Lines),
    );
    let out = p.run(&mut Chunks::new(&[5, 1, 999, 64]), 1_000_000);
    assert_eq!(out.probe, Ok(()));
    assert_eq!(p.server.session().stats().units, 300);
    assert_eq!(out.server, State::Closed(CloseReason::PeerFinished));
}

#[test]
fn frames_random_sizes_split_anywhere_all_verified() {
    let mut p = pair::<2048>(
        probe_cfg(
            Mode::Frames,
            Pattern::Stream { window: 9000 },
            SizeRange::range(2, 2048),
            300,
        ),
        server_cfg(Mode::Frames),
    );
    let out = p.run(&mut Chunks::new(&[2, 1, 3, 511]), 1_000_000);
    assert_eq!(out.probe, Ok(()));
    assert_eq!(p.server.session().stats().units, 300);
}

#[test]
fn frames_probe_larger_than_server_buffer_gets_abort_and_premature_close() {
    let mut p = pair::<64>(
        probe_cfg(Mode::Frames, Pattern::PingPong, SizeRange::fixed(100), 1),
        server_cfg(Mode::Frames),
    );
    let out = p.run(&mut Chunks::new(&[512]), 10_000);
    assert_eq!(
        out.server,
        State::Aborted(AbortReason::FrameTooLarge {
            len: 100,
            limit: 64
        })
    );
    assert!(
        matches!(
            out.probe,
            Err(ProbeError::PrematureClose { verified: 0, .. })
        ),
        "{:?}",
        out.probe
    );
}

#[test]
fn silent_client_is_closed_by_idle_timeout_on_the_virtual_clock() {
    let mut probe = probe_cfg(Mode::Raw, Pattern::PingPong, SizeRange::fixed(8), 2);
    probe.interval = Some(Duration::from_secs(3600).into());
    let mut p = pair::<64>(probe, server_cfg(Mode::Raw));
    let out = p.run(&mut Chunks::new(&[64]), 10_000);
    assert_eq!(
        out.server_events,
        vec![Event::Closed(CloseReason::IdleTimeout)]
    );
    assert!(
        matches!(
            out.probe,
            Err(ProbeError::PrematureClose {
                verified: 8,
                outstanding: 0
            })
        ),
        "{:?}",
        out.probe
    );
    assert!(
        p.now >= T0 + Duration::from_secs(10),
        "clock jumped to the idle deadline"
    );
    assert!(out.steps < 100, "no busy waiting: {} steps", out.steps);
}

#[test]
fn client_that_never_reads_is_aborted_by_drain_timeout_with_bounded_buffer() {
    let mut p = pair::<128>(
        probe_cfg(
            Mode::Raw,
            Pattern::Stream { window: 1 << 20 },
            SizeRange::fixed(1000),
            1000,
        ),
        server_cfg(Mode::Raw),
    );
    p.client_reads = false;
    let out = p.run(&mut Chunks::new(&[100]), 100_000);
    assert_eq!(out.server, State::Aborted(AbortReason::DrainTimeout));
    assert!(
        (64..=128).contains(&p.max_buffered),
        "the buffer filled (to at least half: the rest of a full buffer is \
         reclaimed only once paid for) and stopped there: backpressure, max {}",
        p.max_buffered
    );
    assert_eq!(out.verified, 0);
    assert!(
        out.sent <= 128 + 2 * 512 + 1000,
        "the client was held back: sent {}",
        out.sent
    );
}

#[test]
fn paced_probe_against_a_stalled_server_counts_the_stall_in_every_late_message() {
    // Ping-pong due every 10 ms; the server stalls for the first 100 ms.
    // Messages 1..9 were due during the stall and leave late: measured from
    // their schedule they all show the wait; from their actual send they do
    // not (that is the coordinated-omission error the schedule avoids).
    let mut probe = probe_cfg(Mode::Raw, Pattern::PingPong, SizeRange::fixed(32), 20);
    probe.interval = Some(Duration::from_millis(10).into());
    let mut p = pair::<64>(probe, server_cfg(Mode::Raw));
    p.stalled_until = T0 + Duration::from_millis(100);
    let out = p.run(&mut Chunks::new(&[32]), 100_000);
    assert_eq!(out.probe, Ok(()));
    assert_eq!(out.round_trips, 20);
    let log = &p.round_trip_log;
    assert!(
        log[0].1 >= Duration::from_millis(100),
        "message 0 waited out the stall"
    );
    for (i, &(due, sent)) in log.iter().enumerate().take(10).skip(1) {
        let waited = Duration::from_millis(100 - 10 * i as u64);
        assert!(
            due >= waited,
            "message {i} was due {waited} before it could leave: {due}"
        );
        assert!(
            sent < Duration::from_millis(1),
            "message {i} from its actual send: {sent}"
        );
    }
    assert!(
        p.now >= T0 + Duration::from_millis(190),
        "twenty messages 10 ms apart"
    );
}
