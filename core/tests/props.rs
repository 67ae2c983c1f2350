//! Property tests (proptest). Case count: `PROPTEST_CASES`, never fewer
//! than 256 (`support::proptest_config`).

mod support;

use proptest::prelude::*;
use ricochet_core::probe::{Pattern, ProbeConfig, ProbeError, SizeRange, StreamProbe};
use ricochet_core::session::{CloseReason, Session, SessionConfig, State};
use ricochet_core::{Duration, Instant, Mode, frames, lines};
use support::{Chunks, Pair};

const T0: Instant = Instant::from_micros(1);

fn any_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Raw), Just(Mode::Lines), Just(Mode::Frames)]
}

/// One thing that can happen to a session.
#[derive(Clone, Debug)]
enum Op {
    Receive(Vec<u8>),
    Send(usize),
    Fin,
    Reset,
    Close,
    Wait(u64),
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(prop_oneof![Just(b'\n'), Just(0u8), any::<u8>()], 0..90).prop_map(Op::Receive),
        6 => (0usize..100).prop_map(Op::Send),
        1 => Just(Op::Fin),
        1 => Just(Op::Reset),
        1 => Just(Op::Close),
        2 => (0u64..20_000_000).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(support::proptest_config())]

    /// For every mode and any split of reads and writes on both sides, the
    /// echoed stream equals the sent stream (the probe checks every byte),
    /// and the server never buffers more than N.
    #[test]
    fn echoed_stream_equals_sent_stream_for_any_split(
        mode in any_mode(),
        seed in any::<u64>(),
        chunks in prop::collection::vec(1usize..700, 1..12),
        stream in any::<bool>(),
        window in 1usize..5000,
        count in 1u64..40,
        size_cap in 2usize..256,
    ) {
        let size = match mode { Mode::Frames => SizeRange::range(2, size_cap), _ => SizeRange::range(1, size_cap) };
        let pattern = if stream { Pattern::Stream { window } } else { Pattern::PingPong };
        let probe = ProbeConfig { mode, pattern, seed, size, count: Some(count), response_timeout: Some(Duration::from_secs(60)), interval: None };
        let server = SessionConfig { mode, ..SessionConfig::default() };
        let mut pair: Pair<256, 16> = Pair::new(StreamProbe::new(probe, T0).unwrap(), Session::new([0u8; 256], server, T0), T0);
        let out = pair.run(&mut Chunks::new(&chunks), 1_000_000);
        prop_assert_eq!(out.probe, Ok(()));
        prop_assert_eq!(out.sent, out.verified);
        prop_assert_eq!(out.round_trips, count);
        prop_assert_eq!(out.server, State::Closed(CloseReason::PeerFinished));
        prop_assert!(pair.max_buffered <= 256);
    }

    /// Any sequence of input, writes, FIN, reset, close and time: no panic,
    /// bounded buffer, output always a prefix of input made of whole units,
    /// and after `handle_timeout(now)` the next deadline is never in the past.
    #[test]
    fn arbitrary_events_never_panic_and_output_is_whole_units_of_input(
        mode in any_mode(),
        ops in prop::collection::vec(any_op(), 0..80),
    ) {
        let config = SessionConfig { mode, idle_timeout: Some(Duration::from_secs(5)), drain_timeout: Some(Duration::from_secs(2)), ..SessionConfig::default() };
        let mut s = Session::new([0u8; 64], config, T0);
        let mut now = T0;
        let mut input = Vec::new();
        let mut output = Vec::new();
        let mut ended_early = false; // FIN or local close may release a partial line
        for op in ops {
            match op {
                Op::Receive(data) => {
                    let buf = s.receive_buffer();
                    let n = buf.len().min(data.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    s.commit_received(now, n).unwrap();
                    if !matches!(s.state(), State::Aborted(_)) { input.extend_from_slice(&data[..n]); }
                }
                Op::Send(n) => {
                    let out = s.transmit_buffer();
                    let n = n.min(out.len());
                    output.extend_from_slice(&out[..n]);
                    s.commit_sent(now, n).unwrap();
                }
                Op::Fin => { s.handle_peer_fin(now); ended_early = true; }
                Op::Reset => s.handle_peer_reset(now),
                Op::Close => { s.close(now); ended_early = true; }
                Op::Wait(us) => {
                    now += Duration::from_micros(us);
                    s.handle_timeout(now);
                    if let Some(t) = s.poll_timeout() {
                        prop_assert!(t > now, "deadline {} not after {}", t, now);
                    }
                }
            }
            prop_assert!(s.buffered() <= 64);
            prop_assert!(output.len() <= input.len());
            prop_assert_eq!(&output[..], &input[..output.len()]);
            match mode {
                Mode::Raw => {}
                Mode::Lines => if !ended_early && !matches!(s.state(), State::Aborted(_)) {
                    // A short write may stop mid-line, but sent + pending is whole lines.
                    let mut all = output.clone();
                    all.extend_from_slice(s.transmit_buffer());
                    prop_assert_eq!(lines::complete_prefix(&all).0, all.len());
                },
                Mode::Frames => {
                    // Whole frames only, however it ended (a partial frame is never released).
                    if !matches!(s.state(), State::Open | State::PeerHalfClosed | State::Closing | State::Closed(_)) {
                        continue;
                    }
                    let pending = s.transmit_buffer().len();
                    let mut all = output.clone();
                    all.extend_from_slice(s.transmit_buffer());
                    prop_assert_eq!(frames::complete_prefix(&all, usize::MAX).map(|r| r.0), Ok(all.len()), "pending {}", pending);
                }
            }
        }
    }

    /// A single altered byte anywhere is reported at exactly its offset.
    #[test]
    fn probe_reports_any_single_corruption_at_its_offset(
        mode in any_mode(),
        seed in any::<u64>(),
        at in 0usize..2000,
        flip in 1u8..=255,
    ) {
        let probe = ProbeConfig {
            mode, pattern: Pattern::Stream { window: 4096 }, seed, size: SizeRange::range(2, 300),
            count: Some(20), response_timeout: None, interval: None,
        };
        let mut p = StreamProbe::<64>::new(probe, T0).unwrap();
        let mut buf = vec![0u8; 8192];
        let n = p.fill_transmit(T0, &mut buf);
        p.commit_sent(T0, n).unwrap();
        let at = at % n;
        buf[at] ^= flip;
        let mut pos = 0;
        let err = loop {
            match p.handle_received(T0, &buf[pos..n]) {
                Ok(r) => { prop_assert!(r.consumed > 0); pos += r.consumed; }
                Err(e) => break e,
            }
        };
        prop_assert_eq!(err, ProbeError::Mismatch { offset: at as u64, expected: buf[at] ^ flip, actual: buf[at] });
    }

    /// Codecs: decoding an encoded frame gives back the payload; line
    /// splitting finds exactly the terminators.
    #[test]
    fn codecs_round_trip(payload in prop::collection::vec(any::<u8>(), 0..600), extra in prop::collection::vec(any::<u8>(), 0..10)) {
        let mut out = vec![0u8; payload.len() + 2];
        let n = frames::encode(&payload, &mut out).unwrap();
        out.truncate(n);
        out.extend_from_slice(&extra);
        prop_assert_eq!(frames::decode(&out), frames::Status::Complete(frames::Frame { payload: &payload }));
        let (len, count) = lines::complete_prefix(&payload);
        prop_assert_eq!(count as usize, payload.iter().filter(|&&b| b == b'\n').count());
        prop_assert!(len == 0 || payload[len - 1] == b'\n');
        prop_assert!(!payload[len..].contains(&b'\n'));
    }
}
