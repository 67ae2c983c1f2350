use super::*;
use ricochet_core::Mode;
use ricochet_core::probe::{Pattern, SizeRange};
use std::cell::Cell;
use std::collections::VecDeque;

mod transport;

/// A scripted stream: reads come from `input` (then EOF), writes go to `output`
/// at most `max_write` bytes at a time.
struct Script {
    input: VecDeque<u8>,
    output: Vec<u8>,
    max_write: usize,
    fin_sent: bool,
}

impl ErrorType for Script {
    type Error = ErrorKind;
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let n = buf.len().min(self.input.len()).min(7);
        for b in buf.iter_mut().take(n) {
            *b = self.input.pop_front().unwrap_or(0);
        }
        Ok(n)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let n = buf.len().min(self.max_write);
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl HalfClose for Script {
    fn shutdown_write(&mut self) {
        self.fin_sent = true;
    }
}

/// Moves what fits of `from` into `buf`; returns how much.
fn pour(from: &mut VecDeque<u8>, buf: &mut [u8]) -> usize {
    let n = buf.len().min(from.len());
    for (b, byte) in buf.iter_mut().zip(from.drain(..n)) {
        *b = byte;
    }
    n
}

fn ticker() -> impl Fn() -> Instant {
    let t = Cell::new(0u64);
    move || {
        t.set(t.get() + 1);
        Instant::from_micros(t.get())
    }
}

#[test]
fn serve_connection_echoes_everything_through_short_writes_then_closes() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let mut s = Script {
        input: data.iter().copied().collect(),
        output: Vec::new(),
        max_write: 3,
        fin_sent: false,
    };
    let stats = serve_connection(&mut s, [0u8; 64], SessionConfig::default(), &ticker()).unwrap();
    assert_eq!(s.output, data);
    assert_eq!(stats.bytes_out, 1000);
}

#[test]
fn serve_connection_aborts_on_truncated_frame_at_fin() {
    let config = SessionConfig {
        mode: Mode::Frames,
        ..SessionConfig::default()
    };
    let mut s = Script {
        input: [0u8, 5, b'a', b'b'].into_iter().collect(),
        output: Vec::new(),
        max_write: 64,
        fin_sent: false,
    };
    let r = serve_connection(&mut s, [0u8; 64], config, &ticker());
    assert!(matches!(
        r,
        Err(DriveError::Aborted {
            reason: AbortReason::TruncatedFrame { .. },
            ..
        })
    ));
    assert!(s.output.is_empty());
}

/// A peer that sent `input` and then waits (reads time out) until our
/// FIN, which it answers with its own.
struct Waiting {
    input: VecDeque<u8>,
    output: Vec<u8>,
    fin_sent: bool,
}

impl ErrorType for Waiting {
    type Error = ErrorKind;
}

impl Read for Waiting {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.input.is_empty() {
            return if self.fin_sent {
                Ok(0)
            } else {
                Err(ErrorKind::TimedOut)
            };
        }
        Ok(pour(&mut self.input, buf))
    }
}

impl Write for Waiting {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl HalfClose for Waiting {
    fn shutdown_write(&mut self) {
        self.fin_sent = true;
    }
}

/// A peer that sent `input`, then acknowledges one byte of what it was
/// sent per read that finds nothing (a slow reader), and never finishes.
struct SlowReader {
    input: VecDeque<u8>,
    output: Vec<u8>,
    unacknowledged: usize,
}

impl ErrorType for SlowReader {
    type Error = ErrorKind;
}

impl Read for SlowReader {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.input.is_empty() {
            self.unacknowledged = self.unacknowledged.saturating_sub(1);
            return Err(ErrorKind::TimedOut);
        }
        Ok(pour(&mut self.input, buf))
    }
}

impl Write for SlowReader {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.output.extend_from_slice(buf);
        self.unacknowledged += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl HalfClose for SlowReader {
    fn shutdown_write(&mut self) {}
    fn unacknowledged_output(&self) -> usize {
        self.unacknowledged
    }
}

#[test]
fn serve_connection_line_too_long_returns_once_the_echo_before_it_is_acknowledged() {
    // The caller resets the connection when this returns: a reset
    // discards what the peer has not acknowledged, so the whole line
    // before the overlong one must be acknowledged first.
    let mut peer = SlowReader {
        input: b"ok\n".iter().chain(&[b'x'; 100]).copied().collect(),
        output: Vec::new(),
        unacknowledged: 0,
    };
    let config = SessionConfig {
        mode: Mode::Lines,
        ..SessionConfig::default()
    };
    let r = serve_connection(&mut peer, [0u8; 64], config, &ticker());
    assert!(matches!(
        r,
        Err(DriveError::Aborted {
            reason: AbortReason::LineTooLong { .. },
            ..
        })
    ));
    assert_eq!(peer.output, b"ok\n");
    assert_eq!(
        peer.unacknowledged, 0,
        "returned before the echo was acknowledged"
    );
}

/// A stream that cannot tell what its peer acknowledged (the default
/// `unacknowledged_output`, as a Unix socket or the caller's own stream)
/// has nothing to wait for: an abort returns at once instead of waiting
/// out the linger (2 s) for bytes it will never see acknowledged. Time is
/// counted on the fake clock, one microsecond per read.
#[test]
fn serve_connection_abort_on_a_stream_without_acknowledgements_returns_without_the_linger() {
    let mut peer = Waiting {
        input: b"ok\n".iter().chain(&[b'x'; 100]).copied().collect(),
        output: Vec::new(),
        fin_sent: false,
    };
    let config = SessionConfig {
        mode: Mode::Lines,
        ..SessionConfig::default()
    };
    let ticks = Cell::new(0u64);
    let clock = || {
        ticks.set(ticks.get() + 1);
        Instant::from_micros(ticks.get())
    };
    // Through `&mut`, as a caller that keeps its stream passes it.
    let r = serve_connection(&mut &mut peer, [0u8; 64], config, &clock);
    assert!(matches!(
        r,
        Err(DriveError::Aborted {
            reason: AbortReason::LineTooLong { .. },
            ..
        })
    ));
    assert_eq!(peer.output, b"ok\n");
    let linger_us = config.linger.as_micros();
    assert!(
        ticks.get() < linger_us / 2,
        "waited {} µs of a {linger_us} µs linger for acknowledgements it cannot see",
        ticks.get()
    );
}

/// A stream that reports its `.0` bytes written and not yet acknowledged.
struct Unacked(usize);

impl HalfClose for Unacked {
    fn shutdown_write(&mut self) {}
    fn unacknowledged_output(&self) -> usize {
        self.0
    }
}

/// What the wrapped or borrowed stream reports unacknowledged is what the
/// driver waits for before a reset: `StdStream` and `&mut` pass it on.
#[test]
fn std_stream_and_borrowed_streams_report_the_inner_streams_unacknowledged_bytes() {
    assert_eq!(StdStream::new(Unacked(7)).unacknowledged_output(), 7);
    assert_eq!(StdStream::new(Unacked(0)).unacknowledged_output(), 0);
    let mut inner = Unacked(5);
    assert_eq!(HalfClose::unacknowledged_output(&&mut inner), 5);
}

/// A std writer that takes nothing (`Ok(0)` for a non-empty buffer) and
/// whose flush fails as a timed-out socket does.
struct TakesNothing;

impl std::io::Write for TakesNothing {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Ok(0)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

/// `Ok(0)` for bytes offered is an error (`WriteZero`), or a driver would
/// offer them again for ever; an empty write is still `Ok(0)`. A flush's
/// error reaches the caller, a socket timeout's `WouldBlock` as `TimedOut`
/// like every other call's.
#[test]
fn std_stream_write_of_nothing_taken_is_write_zero_and_flush_errors_reach_the_caller() {
    let mut s = StdStream::new(TakesNothing);
    let e = Write::write(&mut s, b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
    assert_eq!(Write::write(&mut s, b"").unwrap(), 0);
    let e = Write::flush(&mut s).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
}

/// `Stop::No` for the first `after` asks, then `then`.
fn stop_after(after: usize, then: Stop) -> impl FnMut() -> Stop {
    let mut asked = 0;
    move || {
        asked += 1;
        if asked > after { then } else { Stop::No }
    }
}

fn lines_peer_waiting_after(input: &[u8]) -> (Waiting, SessionConfig) {
    let peer = Waiting {
        input: input.iter().copied().collect(),
        output: Vec::new(),
        fin_sent: false,
    };
    let config = SessionConfig {
        mode: Mode::Lines,
        ..SessionConfig::default()
    };
    (peer, config)
}

#[test]
fn serve_connection_until_stop_gracefully_echoes_the_held_line_then_fin() {
    let (mut peer, config) = lines_peer_waiting_after(b"one\ntwo");
    let stop = stop_after(3, Stop::Gracefully);
    let stats = serve_connection_until(&mut peer, [0u8; 64], config, &ticker(), stop).unwrap();
    assert_eq!(peer.output, b"one\ntwo");
    assert!(peer.fin_sent);
    assert_eq!((stats.bytes_out, stats.bytes_discarded), (7, 0));
}

#[test]
fn serve_connection_until_stop_at_once_resets_and_counts_the_held_line_discarded() {
    let (mut peer, config) = lines_peer_waiting_after(b"one\ntwo");
    let stop = stop_after(3, Stop::AtOnce);
    let r = serve_connection_until(&mut peer, [0u8; 64], config, &ticker(), stop);
    let Err(DriveError::Aborted { reason, stats }) = r else {
        panic!("expected an abort, got {r:?}");
    };
    assert_eq!(reason, AbortReason::Local);
    assert_eq!(peer.output, b"one\n");
    assert!(!peer.fin_sent);
    assert_eq!(stats.bytes_discarded, 3);
}

/// A stream that echoes what was written (a perfect echo server in memory).
struct Loop {
    pending: VecDeque<u8>,
    corrupt_at: Option<usize>,
    written: usize,
}

impl ErrorType for Loop {
    type Error = ErrorKind;
}

impl Read for Loop {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.pending.is_empty() {
            return Err(ErrorKind::TimedOut);
        }
        let n = buf.len().min(self.pending.len());
        for b in buf.iter_mut().take(n) {
            *b = self.pending.pop_front().unwrap_or(0);
        }
        Ok(n)
    }
}

impl Write for Loop {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        for &b in buf {
            let b = if Some(self.written) == self.corrupt_at {
                b ^ 0xff
            } else {
                b
            };
            self.pending.push_back(b);
            self.written += 1;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

fn config() -> ProbeConfig {
    ProbeConfig {
        pattern: Pattern::Stream { window: 300 },
        size: SizeRange::range(10, 90),
        count: Some(50),
        ..ProbeConfig::default()
    }
}

#[test]
fn probe_connection_over_perfect_echo_verifies_every_message() {
    let mut l = Loop {
        pending: VecDeque::new(),
        corrupt_at: None,
        written: 0,
    };
    let mut buf = [0u8; 128];
    let stats = probe_connection::<64, _, _>(&mut l, config(), &ticker(), &mut buf).unwrap();
    assert_eq!(stats.messages_verified, 50);
    assert_eq!(stats.bytes_verified, stats.bytes_sent);
}

#[test]
fn probe_connection_reports_mismatch_at_corrupted_offset() {
    let mut l = Loop {
        pending: VecDeque::new(),
        corrupt_at: Some(777),
        written: 0,
    };
    let mut buf = [0u8; 128];
    let r = probe_connection::<64, _, _>(&mut l, config(), &ticker(), &mut buf);
    assert!(
        matches!(
            r,
            Err(ProbeDriveError::Probe(ProbeError::Mismatch {
                offset: 777,
                ..
            }))
        ),
        "{r:?}"
    );
}

/// A borrowed stream wrapped for the driver (`StdStream::new(&mut s)`,
/// the caller keeping `s`) still half-closes: the peer sees the echo and
/// then the end, while the caller holds the socket open.
#[test]
fn serve_connection_over_a_borrowed_unix_stream_sends_fin_after_the_echo() {
    use std::io::{Read as _, Write as _};
    let (mut ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let limit = Some(std::time::Duration::from_secs(10));
    ours.set_read_timeout(limit).unwrap();
    peer.set_read_timeout(limit).unwrap();
    peer.write_all(b"hello").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let clock = Clock::new();
    let stats = serve_connection(
        &mut StdStream::new(&mut ours),
        [0u8; 64],
        SessionConfig::default(),
        &clock,
    )
    .unwrap();
    assert_eq!(stats.bytes_out, 5);
    let mut echoed = Vec::new();
    peer.read_to_end(&mut echoed)
        .expect("the echo, then the end of the stream while `ours` is still open");
    assert_eq!(echoed, b"hello");
    drop(ours);
}
