//! A session aborted for what its peer sent (a line too long, a frame too
//! large): the echo of the whole units before the violation is delivered
//! before the reset (feature `deliver_before_reset`), or the reset comes
//! at once and discards it (without the feature).

use ricochet_core::AbortCounts;

use super::*;

/// A 600-byte `lines` unit: 599 letters and the newline.
fn line() -> Vec<u8> {
    let mut unit: Vec<u8> = (0..599u32).map(|i| b'a' + (i % 26) as u8).collect();
    unit.push(b'\n');
    unit
}

/// A 600-byte `frames` unit: the 2-byte length (598), then the payload.
fn frame() -> Vec<u8> {
    let mut unit = 598u16.to_be_bytes().to_vec();
    unit.extend((0..598u32).map(|i| (i % 251) as u8));
    unit
}

/// What a slow reader got: the bytes it read once the node had aborted,
/// whether the connection then ended in a reset (a FIN would leave it in
/// `CloseWait`), and the virtual microseconds from its last byte to that
/// end.
struct Outcome {
    echoed: Vec<u8>,
    reset: bool,
    after: u64,
}

/// A client of a node in `mode`, with a 256-byte receive window, sends
/// `unit` (600 bytes) and then `violation`, and reads nothing until the
/// node has aborted the session (`counted` goes to 1): most of the echo of
/// `unit` is then neither read nor acknowledged.
fn slow_reader_sends_a_violation_behind(
    mode: Mode,
    unit: &[u8],
    violation: &[u8],
    counted: fn(&AbortCounts) -> u64,
) -> Outcome {
    let mut sim = Sim::<4, 6, 1024>::new(config_in(mode));
    let handle = sim.host.tcp_connect((256, 4096), echo_endpoint(), 40300);
    let input = [unit, violation].concat();
    let mut sent = 0;
    let aborted = sim.run(5 * SECOND, &mut |host, node, _| {
        let socket = host.tcp(handle);
        if socket.may_send() && sent < input.len() {
            sent += socket.send_slice(&input[sent..]).unwrap();
        }
        Flow::until(None, counted(&node.stats().tcp.aborted) == 1)
    });
    assert!(aborted, "{:?}", sim.node.stats().tcp);
    // Only now does the client read, as fast as the echo comes.
    let mut echoed = Vec::new();
    let mut last_read = core(sim.now);
    let ended = sim.run(10 * SECOND, &mut |host, _, now| {
        let socket = host.tcp(handle);
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = socket.recv_slice(&mut buf) {
            echoed.extend_from_slice(&buf[..n]);
            last_read = now;
        }
        Flow::until(
            None,
            !socket.is_open() || socket.state() == tcp::State::CloseWait,
        )
    });
    assert!(ended, "the connection is still open");
    Outcome {
        echoed,
        reset: sim.host.tcp(handle).state() == tcp::State::Closed,
        after: sim.now - last_read.as_micros(),
    }
}

fn overlong_line_behind_a_line() -> (Outcome, Vec<u8>) {
    let outcome = slow_reader_sends_a_violation_behind(Mode::Lines, &line(), &[b'x'; 2000], |a| {
        a.line_too_long
    });
    (outcome, line())
}

/// A header announcing 65,535 bytes, more than the 1,024-byte session holds.
fn oversize_frame_behind_a_frame() -> (Outcome, Vec<u8>) {
    let outcome =
        slow_reader_sends_a_violation_behind(Mode::Frames, &frame(), &[0xFF, 0xFF, 1, 2], |a| {
            a.frame_too_large
        });
    (outcome, frame())
}

/// The node resets only once the client has the whole echo before the
/// violation, and soon after that (it looks again by itself; not the whole
/// linger of 5 s later).
#[cfg(feature = "deliver_before_reset")]
fn is_delivered_then_reset((outcome, unit): (Outcome, Vec<u8>)) {
    assert_eq!(
        outcome.echoed.len(),
        unit.len(),
        "the echo before the violation"
    );
    assert_eq!(outcome.echoed, unit);
    assert!(outcome.reset, "the violation ends in a reset");
    assert!(
        outcome.after < SECOND,
        "reset {} µs after the last byte",
        outcome.after
    );
}

/// Without the feature the node resets at once: the client keeps what its
/// window held, loses the rest of the echo, and finds the reset behind it.
#[cfg(not(feature = "deliver_before_reset"))]
fn is_cut_short_by_the_reset((outcome, unit): (Outcome, Vec<u8>)) {
    assert!(
        outcome.echoed.len() < unit.len(),
        "{} bytes arrived",
        outcome.echoed.len()
    );
    assert_eq!(outcome.echoed, unit[..outcome.echoed.len()]);
    assert!(outcome.reset, "the violation ends in a reset");
    assert!(
        outcome.after < SECOND,
        "reset {} µs after the last byte",
        outcome.after
    );
}

#[cfg(feature = "deliver_before_reset")]
#[test]
fn lines_overlong_line_behind_an_echo_a_slow_reader_has_not_read_is_reset_after_it() {
    is_delivered_then_reset(overlong_line_behind_a_line());
}

#[cfg(feature = "deliver_before_reset")]
#[test]
fn frames_oversize_frame_behind_an_echo_a_slow_reader_has_not_read_is_reset_after_it() {
    is_delivered_then_reset(oversize_frame_behind_a_frame());
}

#[cfg(not(feature = "deliver_before_reset"))]
#[test]
fn lines_overlong_line_behind_an_echo_a_slow_reader_has_not_read_loses_it_to_the_reset() {
    is_cut_short_by_the_reset(overlong_line_behind_a_line());
}

#[cfg(not(feature = "deliver_before_reset"))]
#[test]
fn frames_oversize_frame_behind_an_echo_a_slow_reader_has_not_read_loses_it_to_the_reset() {
    is_cut_short_by_the_reset(oversize_frame_behind_a_frame());
}
