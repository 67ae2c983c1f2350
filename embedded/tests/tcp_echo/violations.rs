//! A session aborted for what its peer sent: the echo of the whole lines
//! before the violation is delivered before the reset (feature
//! `deliver_before_reset`), or the reset comes at once without it.

use super::*;

/// The line before the overlong one: 600 bytes, ending in a newline.
fn line() -> Vec<u8> {
    (0..599u32)
        .map(|i| b'a' + (i % 26) as u8)
        .chain([b'\n'])
        .collect()
}

/// A `lines` client with a 256-byte receive window sends a 600-byte line,
/// then 2,000 bytes without a newline (the node's sessions hold 1,024),
/// and reads nothing until the node has aborted the session. Returns the
/// bytes it then read, whether the connection ended in a reset (a FIN
/// would end it in `CloseWait`), and the virtual microseconds from the
/// last byte read to that end.
fn slow_reader_sends_an_overlong_line_behind_a_line() -> (Vec<u8>, bool, u64) {
    let mut sim = Sim::<4, 6, 1024>::new(config_in(Mode::Lines));
    let handle = sim.host.tcp_connect((256, 4096), echo_endpoint(), 40300);
    let mut input = line();
    input.extend_from_slice(&[b'x'; 2000]);
    let mut sent = 0;
    let aborted = sim.run(5 * SECOND, &mut |host, node, _| {
        let socket = host.tcp(handle);
        if socket.may_send() && sent < input.len() {
            sent += socket.send_slice(&input[sent..]).unwrap();
        }
        Flow::until(None, node.stats().tcp.aborted.line_too_long == 1)
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
    let reset = sim.host.tcp(handle).state() == tcp::State::Closed;
    (echoed, reset, sim.now - last_read.as_micros())
}

/// The node resets the connection only once the client has the whole
/// echo of the line before the overlong one, and soon after that (it looks
/// again by itself; not the whole linger of 5 s later).
#[cfg(feature = "deliver_before_reset")]
#[test]
fn lines_overlong_line_behind_an_echo_a_slow_reader_has_not_read_is_reset_after_it() {
    let (echoed, reset, after) = slow_reader_sends_an_overlong_line_behind_a_line();
    assert_eq!(echoed.len(), 600, "the echo before the overlong line");
    assert_eq!(echoed, line());
    assert!(reset, "the overlong line ends in a reset");
    assert!(after < SECOND, "reset {after} µs after the last byte");
}

/// Without the feature the node resets at once: the client keeps what its
/// window held and loses the rest of the echo.
#[cfg(not(feature = "deliver_before_reset"))]
#[test]
fn lines_overlong_line_behind_an_echo_a_slow_reader_has_not_read_loses_it_to_the_reset() {
    let (echoed, reset, _) = slow_reader_sends_an_overlong_line_behind_a_line();
    assert!(echoed.len() < 600, "{} bytes arrived", echoed.len());
    assert_eq!(echoed, line()[..echoed.len()]);
    assert!(reset, "the overlong line ends in a reset");
}
