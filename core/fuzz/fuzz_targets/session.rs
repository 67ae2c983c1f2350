//! A stream session in each mode fed arbitrary bytes in arbitrary chunks,
//! with arbitrary writes, pass-throughs, FIN, reset, close and timeouts.
//!
//! Invariants: no panic; the buffer never holds more than N; the echoed
//! bytes are always a prefix of the input; in `lines`/`frames` mode sent +
//! pending is always whole units (a `lines` remainder may be released only
//! at FIN or a local close).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ricochet_core::session::{Session, SessionConfig, State};
use ricochet_core::{Duration, Instant, Mode, frames, lines};

#[derive(Arbitrary, Debug)]
enum Op {
    Receive(Vec<u8>),
    Send(u16),
    /// Input moved straight to the output, when the session allows it.
    PassThrough(Vec<u8>),
    Fin,
    Reset,
    Close,
    Wait(u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    mode: u8,
    idle_ms: u16,
    drain_ms: u16,
    ops: Vec<Op>,
}

const N: usize = 128;

fuzz_target!(|input: Input| {
    let mode = match input.mode % 3 {
        0 => Mode::Raw,
        1 => Mode::Lines,
        _ => Mode::Frames,
    };
    let config = SessionConfig {
        mode,
        idle_timeout: (input.idle_ms > 0).then(|| Duration::from_millis(input.idle_ms.into())),
        drain_timeout: (input.drain_ms > 0).then(|| Duration::from_millis(input.drain_ms.into())),
        ..SessionConfig::default()
    };
    let mut now = Instant::from_micros(1);
    let mut s = Session::new([0u8; N], config, now);
    let mut input_bytes = Vec::new();
    let mut output = Vec::new();
    let mut released_remainder = false;
    for op in input.ops {
        match op {
            Op::Receive(data) => {
                let buf = s.receive_buffer();
                let n = buf.len().min(data.len());
                buf[..n].copy_from_slice(&data[..n]);
                s.commit_received(now, n).expect("commit within offer");
                if !matches!(s.state(), State::Aborted(_)) {
                    input_bytes.extend_from_slice(&data[..n]);
                }
            }
            Op::Send(n) => {
                let out = s.transmit_buffer();
                let n = usize::from(n).min(out.len());
                output.extend_from_slice(&out[..n]);
                s.commit_sent(now, n).expect("commit within offer");
            }
            Op::PassThrough(data) => {
                if s.can_pass_through() {
                    assert_eq!(mode, Mode::Raw, "only raw echo passes input through");
                    assert_eq!(s.buffered(), 0, "nothing older may be waiting");
                    s.commit_passed_through(now, data.len()).expect("allowed just now");
                    input_bytes.extend_from_slice(&data);
                    output.extend_from_slice(&data);
                } else if !data.is_empty() {
                    s.commit_passed_through(now, data.len()).expect_err("refused");
                }
            }
            Op::Fin => {
                s.handle_peer_fin(now);
                released_remainder = true;
            }
            Op::Reset => s.handle_peer_reset(now),
            Op::Close => {
                s.close(now);
                released_remainder = true;
            }
            Op::Wait(us) => {
                now += Duration::from_micros(us.into());
                s.handle_timeout(now);
                if let Some(t) = s.poll_timeout() {
                    assert!(t > now, "deadline in the past after handle_timeout");
                }
            }
        }
        while s.poll_event().is_some() {}
        assert!(s.buffered() <= N);
        let st = s.stats();
        assert!(st.bytes_moved <= st.bytes_in + st.bytes_out, "compaction cost unbounded");
        assert_eq!(&output[..], &input_bytes[..output.len()], "echo is not a prefix of the input");
        if matches!(s.state(), State::Aborted(_)) {
            continue;
        }
        let mut all = output.clone();
        all.extend_from_slice(s.transmit_buffer());
        match mode {
            Mode::Raw => {}
            Mode::Lines if !released_remainder => assert_eq!(lines::complete_prefix(&all).0, all.len()),
            Mode::Lines => {}
            Mode::Frames => assert_eq!(frames::complete_prefix(&all, usize::MAX).map(|r| r.0), Ok(all.len())),
        }
    }
});
