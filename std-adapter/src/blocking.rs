//! A tiny blocking driver: one connection, one thread, no event loop.
//!
//! [`serve_connection`] drives a core session through the core's [`Pump`]
//! (the echo server side, exactly as `ricochet serve` does) and
//! [`probe_connection`] a core [`StreamProbe`] (the verifying client) over
//! any blocking stream implementing [`embedded_io::Read`] +
//! [`embedded_io::Write`]: a std `TcpStream`/`UnixStream` wrapped in
//! [`StdStream`], or a microcontroller's blocking socket. Time comes from a
//! [`TimeSource`] (a [`Clock`] on a desktop).
//!
//! ## Why alternating is correct
//!
//! A blocking driver cannot read and write at once: it writes everything the
//! session has pending (blocking until the peer takes it), then reads once,
//! and so on. That loses and reorders nothing, because the session only
//! ever offers bytes it holds ([`Session::transmit_buffer`](ricochet_core::Session::transmit_buffer)) and only
//! accepts what fits ([`Session::receive_buffer`](ricochet_core::Session::receive_buffer)); every byte that is read
//! is echoed in order, and a short write just leaves the rest pending.
//!
//! ## The limit: a peer that writes without reading
//!
//! While the driver blocks in `write`, it is not reading. A peer that sends
//! a lot before reading anything fills, in turn, our kernel send buffer, its
//! kernel receive buffer, then our receive buffer; its own `write` then
//! blocks too and both sides wait for each other. In `raw` mode this needs
//! more than all those kernel buffers in flight (megabytes on Linux); in
//! `lines`/`frames` the session additionally holds an incomplete unit of up
//! to `N` bytes, so a peer sending more than that without reading reaches
//! the same state sooner. [`probe_connection`] avoids this for itself in
//! `raw` mode: it never has more than [`RAW_READ_AHEAD`] bytes unverified,
//! so a huge message is sent a slice at a time between reads of its echo.
//! Give the stream read **and** write timeouts
//! (`set_read_timeout`/`set_write_timeout`): a timed-out call passes time to
//! the session, whose drain timeout then aborts the connection instead of
//! hanging forever (without timeouts the driver blocks as long as the peer
//! does). The event-driven server (`ricochet serve`) never blocks on one
//! peer: it stops reading a connection whose echo is not being taken
//! (backpressure) while serving all the others, and the same drain timeout
//! ends the stuck connection.
//!
//! With [`StdStream`], a socket timeout (`WouldBlock`/`TimedOut` from std)
//! surfaces as [`embedded_io::ErrorKind::TimedOut`], which both drivers
//! treat as "time passed", not as a failure.

use embedded_io::{Error as _, ErrorKind, ErrorType, Read, Write};
use ricochet_core::probe::{ConfigError, ProbeConfig, ProbeError, ProbeStats};
use ricochet_core::pump::{Failure, ReadOutcome, Transport, WriteOutcome};
use ricochet_core::session::SessionStats;
use ricochet_core::{
    AbortReason, Instant, Mode, Next, Pump, SessionConfig, State, StreamCounters, StreamProbe,
};

use crate::clock::Clock;

mod stream;

pub use stream::{HalfClose, StdStream};

/// Where the blocking drivers get the time from.
pub trait TimeSource {
    /// The current instant (never earlier than a previous call's).
    fn now(&self) -> Instant;

    /// Blocks until `deadline` (used for open-loop pacing). The default
    /// spins on [`TimeSource::now`]; [`Clock`] sleeps.
    fn sleep_until(&self, deadline: Instant) {
        while self.now() < deadline {
            core::hint::spin_loop();
        }
    }
}

impl TimeSource for Clock {
    fn now(&self) -> Instant {
        Clock::now(self)
    }

    fn sleep_until(&self, deadline: Instant) {
        let target = self.to_std(deadline);
        let now = std::time::Instant::now();
        if target > now {
            std::thread::sleep(target - now);
        }
    }
}

impl<F: Fn() -> Instant> TimeSource for F {
    fn now(&self) -> Instant {
        self()
    }
}

/// Why [`serve_connection`] ended other than by a graceful close.
#[derive(Debug)]
#[non_exhaustive]
pub enum DriveError {
    /// The session aborted (overlong line, oversized or truncated frame,
    /// drain timeout, reset by the peer…): the connection is to be reset
    /// (e.g. `SO_LINGER` 0) rather than closed gracefully.
    Aborted {
        /// Why.
        reason: AbortReason,
        /// The session's counters at the end.
        stats: SessionStats,
    },
}

impl core::fmt::Display for DriveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DriveError::Aborted { reason, .. } => write!(f, "session aborted: {reason}"),
        }
    }
}

impl std::error::Error for DriveError {}

/// An `embedded_io` stream as the core's [`Transport`]: a timed-out call
/// is "nothing now", `Interrupted` is retried, other errors are the peer's
/// reset (a transport timeout, `Failure::TimedOut`, cannot be told from a
/// socket timeout here).
struct Blocking<'a, S: ?Sized>(&'a mut S);

impl<S: Read + Write + HalfClose + ?Sized> Transport for Blocking<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            return match self.0.read(buf) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == ErrorKind::TimedOut => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => ReadOutcome::Failed(Failure::Reset),
            };
        }
    }

    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome {
        loop {
            return match self.0.write(buf) {
                // A blocking stream that takes nothing will not take more later.
                Ok(0) => WriteOutcome::Failed(Failure::Reset),
                Ok(n) => {
                    // Only a `more` write may be held back (the pump flushes
                    // after it): a stream that buffers writes (an embedded
                    // socket, a `BufWriter`) sends this one now. A flush that
                    // fails leaves it for the next read or write to report.
                    if !more {
                        let _ = self.0.flush();
                    }
                    WriteOutcome::Sent(n)
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => WriteOutcome::WouldBlock,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => WriteOutcome::Failed(Failure::Reset),
            };
        }
    }

    fn flush(&mut self) {
        let _ = self.0.flush();
    }

    fn shutdown_write(&mut self) {
        let _ = self.0.flush();
        self.0.shutdown_write();
    }

    fn unsent_before_reset(&self) -> usize {
        self.0.unacknowledged_output()
    }
}

/// Serves one echo connection until it ends, over `storage` (the session
/// buffer: its length is the longest line or largest frame echoed).
///
/// Runs the core's [`Pump`] over the blocking stream: everything pending is
/// written (and flushed, for a stream that buffers writes) before the next
/// read; after a graceful close the stream is
/// half-closed ([`HalfClose`]) and read until the peer finishes, within the
/// session's linger time. Returns the session's counters when it closed
/// gracefully (the caller then drops the stream), or [`DriveError`] when it
/// aborted (the caller resets). Time reaches the session through `time`
/// and through timed-out reads and writes (see the [module docs](self)).
///
/// ```no_run
/// use std::net::TcpListener;
/// use std::time::Duration;
/// use ricochet::blocking::{serve_connection, StdStream};
/// use ricochet::clock::Clock;
/// use ricochet::core::SessionConfig;
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let (tcp, _) = listener.accept()?;
/// tcp.set_read_timeout(Some(Duration::from_secs(1)))?;
/// tcp.set_write_timeout(Some(Duration::from_secs(1)))?;
/// let mut stream = StdStream::new(&tcp);
/// let mut buffer = [0u8; 4096];
/// match serve_connection(&mut stream, &mut buffer[..], SessionConfig::default(), &Clock::new()) {
///     Ok(stats) => println!("echoed {} bytes", stats.bytes_out),
///     Err(e) => eprintln!("{e}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve_connection<S, B, T>(
    stream: &mut S,
    storage: B,
    config: SessionConfig,
    time: &T,
) -> Result<SessionStats, DriveError>
where
    S: Read + Write + HalfClose + ?Sized,
    B: AsRef<[u8]> + AsMut<[u8]>,
    T: TimeSource + ?Sized,
{
    serve_connection_until(stream, storage, config, time, || Stop::No)
}

/// What the caller of [`serve_connection_until`] wants, asked before every
/// blocking call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Go on serving.
    No,
    /// Close gracefully (a server shutting down): no more input; what was
    /// received is still echoed, then FIN ([`Pump::close`]).
    Gracefully,
    /// Stop now: the connection is reset ([`Pump::abort`]); the result is
    /// [`DriveError::Aborted`] with [`AbortReason::Local`].
    AtOnce,
}

/// [`serve_connection`] that also asks `stop` before every blocking call
/// and acts on the first `Gracefully` and the first `AtOnce` (a `Gracefully`
/// after `AtOnce` changes nothing). A call blocks at most for the stream's
/// read or write timeout, so that bounds how late a stop is seen.
pub fn serve_connection_until<S, B, T>(
    stream: &mut S,
    storage: B,
    config: SessionConfig,
    time: &T,
    mut stop: impl FnMut() -> Stop,
) -> Result<SessionStats, DriveError>
where
    S: Read + Write + HalfClose + ?Sized,
    B: AsRef<[u8]> + AsMut<[u8]>,
    T: TimeSource + ?Sized,
{
    let mut pump = Pump::new(storage, config, time.now());
    let mut io = Blocking(stream);
    let mut counters = StreamCounters::default();
    let mut asked = Stop::No;
    loop {
        match (stop(), asked) {
            (Stop::Gracefully, Stop::No) => {
                pump.close_when_idle();
                asked = Stop::Gracefully;
            }
            (Stop::AtOnce, Stop::No | Stop::Gracefully) => {
                pump.abort(time.now());
                asked = Stop::AtOnce;
            }
            _ => {}
        }
        // A blocking stream is always worth a try: it blocks until ready
        // (or its timeout, reported as "nothing now").
        pump.set_ready();
        match pump.drive(time.now(), &mut io, usize::MAX, &mut counters) {
            Next::Release(_) => break,
            Next::Yield => {}
            Next::Wait { read, write } => {
                if !read && !write {
                    // Nothing to read or write: only a deadline moves it on.
                    match pump.poll_timeout() {
                        Some(t) => time.sleep_until(t),
                        None => pump.abort(time.now()),
                    }
                }
            }
        }
    }
    while pump.poll_event().is_some() {}
    let stats = pump.session().stats();
    match pump.session().state() {
        State::Aborted(reason) => Err(DriveError::Aborted { reason, stats }),
        _ => Ok(stats),
    }
}

/// The most bytes [`probe_connection`] has sent and not yet seen verified in
/// `raw` mode before it reads instead of writing more: well below what the
/// kernel buffers of a loopback or Internet connection hold in flight, so a
/// peer that echoes as it reads is never blocked by the probe not reading.
pub const RAW_READ_AHEAD: u64 = 64 * 1024;

/// Why [`probe_connection`] or [`expect_eof`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProbeDriveError<E> {
    /// The probe configuration is invalid.
    Config(ConfigError),
    /// Verification failed: mismatch, unexpected data, early close or timeout.
    Probe(ProbeError),
    /// The stream failed.
    Io(E),
    /// The scratch buffer passed in is empty.
    EmptyBuffer,
}

impl<E: core::fmt::Display> core::fmt::Display for ProbeDriveError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProbeDriveError::Config(e) => write!(f, "probe configuration: {e}"),
            ProbeDriveError::Probe(e) => e.fmt(f),
            ProbeDriveError::Io(e) => write!(f, "stream failed: {e}"),
            ProbeDriveError::EmptyBuffer => f.write_str("the scratch buffer is empty"),
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for ProbeDriveError<E> {}

/// Runs a verifying [`StreamProbe`] over one blocking connection until every
/// message was sent and verified; `M` bounds the messages in flight.
///
/// `buf` is scratch space for both directions (its size is the largest
/// write and read; 4 KiB to 64 KiB is sensible). What was written is
/// flushed before each read, for a stream that buffers writes. A stream
/// that takes none of a message for the response timeout (its writes time
/// out) fails the probe with [`ProbeError::Timeout`], 0 outstanding. On success the caller
/// half-closes (`shutdown(Write)`) and checks the server's FIN with
/// [`expect_eof`]; this function cannot, as `embedded_io` has no shutdown.
///
/// In `raw` mode at most [`RAW_READ_AHEAD`] bytes are sent unverified: the
/// echo of what was sent is read before more is written, so a message of
/// any size (megabytes, more than the kernel buffers hold) cannot leave
/// both ends blocked in `write`. In `lines` and `frames` mode the server
/// echoes nothing of a unit until it is whole, so each message is written
/// whole before reading: keep the stream pattern's window below the kernel
/// buffers there (see the [module docs](self)).
pub fn probe_connection<const M: usize, S, T>(
    stream: &mut S,
    config: ProbeConfig,
    time: &T,
    buf: &mut [u8],
) -> Result<ProbeStats, ProbeDriveError<S::Error>>
where
    S: Read + Write + ?Sized,
    T: TimeSource + ?Sized,
{
    if buf.is_empty() {
        return Err(ProbeDriveError::EmptyBuffer);
    }
    let mut probe = StreamProbe::<M>::new(config, time.now()).map_err(ProbeDriveError::Config)?;
    // Written since the last flush: a stream that buffers writes (an
    // embedded socket, a `BufWriter`) sends them only when flushed.
    let mut unflushed = false;
    // Since when the stream has taken nothing of a message it was offered
    // (its writes timing out).
    let mut write_stalled: Option<Instant> = None;
    loop {
        // 1. Write everything the probe allows now (in `raw` mode, only up
        //    to RAW_READ_AHEAD unverified bytes: see its docs).
        loop {
            let now = time.now();
            let cap = match config.mode {
                Mode::Raw => {
                    let room = RAW_READ_AHEAD.saturating_sub(probe.outstanding());
                    buf.len().min(usize::try_from(room).unwrap_or(usize::MAX))
                }
                Mode::Lines | Mode::Frames => buf.len(),
            };
            let n = probe.fill_transmit(now, &mut buf[..cap]);
            if n == 0 {
                break;
            }
            match stream.write(&buf[..n]) {
                Ok(w) => {
                    // w <= n (what was offered): cannot fail.
                    let _ = probe.commit_sent(time.now(), w);
                    unflushed = true;
                    write_stalled = None;
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    probe
                        .handle_timeout(time.now())
                        .map_err(ProbeDriveError::Probe)?;
                    write_stalled.get_or_insert(now);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ProbeDriveError::Io(e)),
            }
        }
        if probe.is_done() {
            return Ok(*probe.stats());
        }
        // 2. Nothing outstanding: if the stream took none of the next
        //    message, offer it again (within the response timeout: no echo
        //    can come of it); else wait for the next paced message.
        if probe.outstanding() == 0 {
            if let Some(since) = write_stalled {
                if config
                    .response_timeout
                    .is_some_and(|t| time.now() >= since + t)
                {
                    return Err(ProbeDriveError::Probe(ProbeError::Timeout {
                        outstanding: 0,
                    }));
                }
                continue;
            }
            match probe.poll_timeout() {
                Some(t) => time.sleep_until(t),
                None => probe.finish(),
            }
            continue;
        }
        // 3. Send what the stream holds, then read once and verify
        //    everything read.
        if unflushed {
            match stream.flush() {
                Ok(()) => unflushed = false,
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    probe
                        .handle_timeout(time.now())
                        .map_err(ProbeDriveError::Probe)?;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(ProbeDriveError::Io(e)),
            }
        }
        match stream.read(buf) {
            Ok(0) => {
                probe
                    .handle_eof(time.now())
                    .map_err(ProbeDriveError::Probe)?;
            }
            Ok(n) => {
                let now = time.now();
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    let r = probe
                        .handle_received(now, rest)
                        .map_err(ProbeDriveError::Probe)?;
                    if r.consumed == 0 {
                        break;
                    }
                    rest = &rest[r.consumed..];
                }
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                probe
                    .handle_timeout(time.now())
                    .map_err(ProbeDriveError::Probe)?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(ProbeDriveError::Io(e)),
        }
    }
}

/// After our half-close: reads until the server's FIN. Bytes instead are
/// [`ProbeError::UnexpectedData`] (offset counted from this call); a
/// timed-out read is reported as [`ProbeError::Timeout`].
pub fn expect_eof<S, E>(stream: &mut S, buf: &mut [u8]) -> Result<(), ProbeDriveError<E>>
where
    S: Read + ErrorType<Error = E> + ?Sized,
    E: embedded_io::Error,
{
    if buf.is_empty() {
        return Err(ProbeDriveError::EmptyBuffer);
    }
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(ProbeDriveError::Probe(ProbeError::UnexpectedData {
                    offset: 0,
                }));
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                return Err(ProbeDriveError::Probe(ProbeError::Timeout {
                    outstanding: 0,
                }));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(ProbeDriveError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests;
