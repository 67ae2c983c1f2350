//! The blocking transport's reading of errors (a timeout is "nothing now",
//! `Interrupted` is retried, anything else is a reset) and its flush.

use super::*;

/// A peer whose calls fail as scripted: each read takes the next of
/// `read_errors` first, each write the next of `write_errors`; then reads
/// give `input`, and once it is all echoed, the end of the stream (before
/// that, reads time out: it waits for its echo). A `buffering` one holds
/// what it is given until it is flushed (an embedded socket's transmit
/// buffer, a `BufWriter`).
struct Faulty {
    read_errors: VecDeque<ErrorKind>,
    write_errors: VecDeque<ErrorKind>,
    input: VecDeque<u8>,
    sent: usize,
    buffering: bool,
    pending: Vec<u8>,
    output: Vec<u8>,
}

impl Faulty {
    fn new(input: &[u8], read_errors: &[ErrorKind], write_errors: &[ErrorKind]) -> Faulty {
        Faulty {
            read_errors: read_errors.iter().copied().collect(),
            write_errors: write_errors.iter().copied().collect(),
            input: input.iter().copied().collect(),
            sent: input.len(),
            buffering: false,
            pending: Vec::new(),
            output: Vec::new(),
        }
    }

    fn buffering(input: &[u8]) -> Faulty {
        Faulty {
            buffering: true,
            ..Faulty::new(input, &[], &[])
        }
    }
}

impl ErrorType for Faulty {
    type Error = ErrorKind;
}

impl Read for Faulty {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if let Some(e) = self.read_errors.pop_front() {
            return Err(e);
        }
        if self.input.is_empty() {
            return if self.output.len() == self.sent {
                Ok(0)
            } else {
                Err(ErrorKind::TimedOut)
            };
        }
        Ok(pour(&mut self.input, buf))
    }
}

impl Write for Faulty {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if let Some(e) = self.write_errors.pop_front() {
            return Err(e);
        }
        if self.buffering {
            self.pending.extend_from_slice(buf);
        } else {
            self.output.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        self.output.append(&mut self.pending);
        Ok(())
    }
}

impl HalfClose for Faulty {
    fn shutdown_write(&mut self) {}
}

fn serve(peer: &mut Faulty) -> Result<SessionStats, DriveError> {
    serve_connection(peer, [0u8; 64], SessionConfig::default(), &ticker())
}

/// A read or a write that fails for any reason but a timeout or an
/// interruption is the peer's reset: the session aborts saying so, and
/// nothing is retried (a reset read taken for "nothing now" would have
/// let the stream end look like a graceful close; a failed write retried
/// would have sent the echo after all).
#[test]
fn serve_connection_read_or_write_failure_aborts_as_a_peer_reset() {
    let mut peer = Faulty::new(b"", &[ErrorKind::ConnectionReset], &[]);
    let e = serve(&mut peer).unwrap_err();
    assert!(
        matches!(
            e,
            DriveError::Aborted {
                reason: AbortReason::PeerReset,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "session aborted: connection reset by peer");

    let mut peer = Faulty::new(b"hi", &[], &[ErrorKind::BrokenPipe]);
    let e = serve(&mut peer).unwrap_err();
    assert!(
        matches!(
            e,
            DriveError::Aborted {
                reason: AbortReason::PeerReset,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(peer.output.is_empty(), "a failed write is not retried");
}

/// An interrupted read or write (a signal) is retried: the echo is whole
/// and the connection closes gracefully.
#[test]
fn serve_connection_retries_interrupted_reads_and_writes() {
    let mut peer = Faulty::new(
        b"hello",
        &[ErrorKind::Interrupted],
        &[ErrorKind::Interrupted, ErrorKind::Interrupted],
    );
    let stats = serve(&mut peer).expect("a graceful close");
    assert_eq!(peer.output, b"hello");
    assert_eq!(stats.bytes_out, 5);
}

/// A write without the "more is coming" hint is not held back: the driver
/// flushes a buffering stream after it, so a peer waiting for its echo
/// gets it at once. It did not: the echo stayed in the stream's buffer
/// until the idle timeout closed the connection (and a peer that waits
/// for each echo before sending more, as the probe does, got nothing).
#[test]
fn serve_connection_flushes_a_buffering_stream_after_each_echo_not_held_back() {
    // 200 bytes end on a short read, echoed without the hint; 192 on a
    // full one, echoed with it and flushed when the next read finds nothing.
    for len in [200u32, 192] {
        let data: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
        let mut peer = Faulty::buffering(&data);
        let config = SessionConfig {
            idle_timeout: Some(ricochet_core::Duration::from_millis(100)),
            ..SessionConfig::default()
        };
        let ticks = Cell::new(0u64);
        let clock = || {
            ticks.set(ticks.get() + 1);
            Instant::from_micros(ticks.get())
        };
        let stats =
            serve_connection(&mut peer, [0u8; 64], config, &clock).expect("a graceful close");
        assert_eq!(peer.output, data, "{len} bytes");
        assert_eq!(stats.bytes_out, u64::from(len));
        // The idle timeout closes gracefully too, flushing on the way out:
        // the fake clock (a microsecond per read of it) tells the two apart.
        assert!(
            ticks.get() < 50_000,
            "{len} bytes: the echo left only when the idle timeout closed the connection, \
             {} µs in",
            ticks.get()
        );
    }
}

/// The blocking probe flushes what it wrote before it waits for the
/// echo: over a buffering stream every message is verified. It did not
/// flush: its messages stayed in the stream's buffer and the first one
/// timed out.
#[test]
fn probe_connection_flushes_a_buffering_stream_before_it_reads() {
    let mut echo = FaultyEcho::buffering();
    let config = ProbeConfig {
        pattern: Pattern::PingPong,
        size: SizeRange::range(10, 90),
        count: Some(20),
        response_timeout: Some(ricochet_core::Duration::from_millis(100)),
        ..ProbeConfig::default()
    };
    let mut buf = [0u8; 128];
    let stats = probe_connection::<4, _, _>(&mut echo, config, &ticker(), &mut buf)
        .expect("every message echoed");
    assert_eq!(stats.messages_verified, 20);
    assert_eq!(stats.bytes_verified, stats.bytes_sent);
}

/// A perfect echo whose calls fail as scripted: each write takes the next
/// of `write_errors` first, each read the next of `read_errors`; reads
/// time out when nothing came back. Behind a `buffering` stream, only
/// what was flushed reaches the echo.
struct FaultyEcho {
    write_errors: VecDeque<ErrorKind>,
    read_errors: VecDeque<ErrorKind>,
    buffering: bool,
    pending: Vec<u8>,
    echo: VecDeque<u8>,
}

impl FaultyEcho {
    fn new(write_errors: &[ErrorKind], read_errors: &[ErrorKind]) -> FaultyEcho {
        FaultyEcho {
            write_errors: write_errors.iter().copied().collect(),
            read_errors: read_errors.iter().copied().collect(),
            buffering: false,
            pending: Vec::new(),
            echo: VecDeque::new(),
        }
    }

    fn buffering() -> FaultyEcho {
        FaultyEcho {
            buffering: true,
            ..FaultyEcho::new(&[], &[])
        }
    }
}

impl ErrorType for FaultyEcho {
    type Error = ErrorKind;
}

impl Read for FaultyEcho {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if let Some(e) = self.read_errors.pop_front() {
            return Err(e);
        }
        if self.echo.is_empty() {
            return Err(ErrorKind::TimedOut);
        }
        Ok(pour(&mut self.echo, buf))
    }
}

impl Write for FaultyEcho {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if let Some(e) = self.write_errors.pop_front() {
            return Err(e);
        }
        if self.buffering {
            self.pending.extend_from_slice(buf);
        } else {
            self.echo.extend(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        self.echo.extend(self.pending.drain(..));
        Ok(())
    }
}

fn probe_over(echo: &mut FaultyEcho) -> Result<ProbeStats, ProbeDriveError<ErrorKind>> {
    let config = ProbeConfig {
        count: Some(5),
        ..ProbeConfig::default()
    };
    probe_connection::<4, _, _>(echo, config, &ticker(), &mut [0u8; 128])
}

/// A write or a read that fails for any reason but a timeout or an
/// interruption ends the probe with that error, named as the stream's.
#[test]
fn probe_connection_write_or_read_failure_ends_with_the_streams_error() {
    for (writes, reads) in [
        (&[ErrorKind::BrokenPipe][..], &[][..]),
        (&[], &[ErrorKind::ConnectionReset]),
    ] {
        let r = probe_over(&mut FaultyEcho::new(writes, reads));
        let Err(e @ ProbeDriveError::Io(kind)) = r else {
            panic!("{writes:?} {reads:?}: {r:?}");
        };
        assert_eq!([kind], if writes.is_empty() { reads } else { writes });
        assert_eq!(e.to_string(), format!("stream failed: {kind}"));
    }
}

/// A write or a read that timed out ("nothing now", within the response
/// timeout) or was interrupted is tried again: every message is verified.
#[test]
fn probe_connection_goes_on_after_timed_out_or_interrupted_calls() {
    let mut echo = FaultyEcho::new(
        &[ErrorKind::TimedOut, ErrorKind::Interrupted],
        &[ErrorKind::Interrupted, ErrorKind::TimedOut],
    );
    let stats = probe_over(&mut echo).expect("every message verified");
    assert_eq!(stats.messages_verified, 5);
    assert_eq!(stats.bytes_verified, stats.bytes_sent);
}

/// A stream that takes none of the first message for the whole response
/// timeout (every write times out) fails the probe with a timeout. The
/// probe used to take "nothing outstanding" for "nothing more to send"
/// and return success with no message sent.
#[test]
fn probe_connection_over_a_stream_that_takes_nothing_times_out() {
    let mut echo = FaultyEcho::new(&[ErrorKind::TimedOut; 1000], &[]);
    let config = ProbeConfig {
        count: Some(5),
        response_timeout: Some(ricochet_core::Duration::from_micros(200)),
        ..ProbeConfig::default()
    };
    let r = probe_connection::<4, _, _>(&mut echo, config, &ticker(), &mut [0u8; 128]);
    assert!(
        matches!(
            r,
            Err(ProbeDriveError::Probe(ProbeError::Timeout {
                outstanding: 0
            }))
        ),
        "{r:?}"
    );
    assert!(echo.echo.is_empty());
}

/// A stream whose reads return `reads` in turn (`Ok(n)`: n bytes of data),
/// then the end of the stream.
struct Reads(VecDeque<Result<usize, ErrorKind>>);

impl ErrorType for Reads {
    type Error = ErrorKind;
}

impl Read for Reads {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let r = self.0.pop_front().unwrap_or(Ok(0));
        if let Ok(n) = r {
            buf[..n].fill(b'x');
        }
        r
    }
}

/// `expect_eof` after the probe: the end of the stream is what it wants
/// (an interrupted read is tried again); a byte more is unexpected data, a
/// read that times out is a timeout, any other failure the stream's error,
/// none of them retried.
#[test]
fn expect_eof_takes_only_the_end_of_the_stream() {
    let run = |reads: &[Result<usize, ErrorKind>]| {
        expect_eof(&mut Reads(reads.iter().copied().collect()), &mut [0u8; 16])
    };
    assert!(run(&[]).is_ok());
    assert!(run(&[Err(ErrorKind::Interrupted), Ok(0)]).is_ok());
    let r = run(&[Ok(3), Ok(0)]);
    assert!(
        matches!(
            r,
            Err(ProbeDriveError::Probe(ProbeError::UnexpectedData {
                offset: 0
            }))
        ),
        "{r:?}"
    );
    let r = run(&[Err(ErrorKind::TimedOut), Ok(0)]);
    assert!(
        matches!(
            r,
            Err(ProbeDriveError::Probe(ProbeError::Timeout {
                outstanding: 0
            }))
        ),
        "{r:?}"
    );
    let r = run(&[Err(ErrorKind::ConnectionReset), Ok(0)]);
    assert!(
        matches!(r, Err(ProbeDriveError::Io(ErrorKind::ConnectionReset))),
        "{r:?}"
    );
    let r = expect_eof(&mut Reads(VecDeque::new()), &mut []);
    assert!(matches!(r, Err(ProbeDriveError::EmptyBuffer)), "{r:?}");
}
