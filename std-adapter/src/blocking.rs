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

use std::io;

use embedded_io::{Error as _, ErrorKind, ErrorType, Read, Write};
use ricochet_core::probe::{ConfigError, ProbeConfig, ProbeError, ProbeStats};
use ricochet_core::pump::{Failure, ReadOutcome, Transport, WriteOutcome};
use ricochet_core::session::SessionStats;
use ricochet_core::{
    AbortReason, Instant, Mode, Next, Pump, SessionConfig, State, StreamCounters, StreamProbe,
};

use crate::clock::Clock;

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

/// A std stream as an [`embedded_io`] stream whose socket timeouts read as
/// [`ErrorKind::TimedOut`].
///
/// Like `embedded_io_adapters::std::FromStd`, except that std reports a
/// socket read/write timeout as `WouldBlock` on Unix, which `FromStd` maps
/// to `ErrorKind::Other` (a failure for the drivers). Works with
/// `TcpStream`, `UnixStream` and `&TcpStream`.
#[derive(Debug)]
pub struct StdStream<T> {
    inner: T,
}

impl<T> StdStream<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        StdStream { inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

fn map_timeout(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, e)
    } else {
        e
    }
}

impl<T> ErrorType for StdStream<T> {
    type Error = io::Error;
}

impl<T: io::Read> Read for StdStream<T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        self.inner.read(buf).map_err(map_timeout)
    }
}

impl<T: io::Write> Write for StdStream<T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        match self.inner.write(buf) {
            Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WriteZero.into()),
            r => r.map_err(map_timeout),
        }
    }

    fn flush(&mut self) -> Result<(), io::Error> {
        self.inner.flush().map_err(map_timeout)
    }
}

/// A blocking stream whose write side can be shut down (TCP and Unix:
/// `shutdown(Write)`, which sends FIN after everything queued).
///
/// [`serve_connection`] half-closes through it when the session closes
/// gracefully, then keeps reading until the peer finishes, like every
/// other Ricochet transport. A stream that cannot half-close implements it
/// as a no-op: the peer then sees the end when the caller closes the stream.
///
/// Implemented for `TcpStream` and `UnixStream` (owned or borrowed), for
/// `&mut` of any implementor, and for [`StdStream<T>`] whenever `T` is one:
/// to serve your own std stream (an in-memory pipe, a wrapper), implement
/// it for that type and wrap it in [`StdStream`].
pub trait HalfClose {
    /// Sends FIN after everything written; errors are ignored (the peer may
    /// be gone already).
    fn shutdown_write(&mut self);

    /// Bytes written that the peer has not acknowledged yet (TCP:
    /// `SIOCOUTQ`), which a reset would discard. A session aborted for what
    /// its peer sent (a line or frame too long, a frame cut short) waits
    /// for them, within its linger, before [`serve_connection`] returns, so
    /// the caller's reset does not cut off the echo of the whole lines or
    /// frames before it. Default: 0 (nothing waits).
    fn unacknowledged_output(&self) -> usize {
        0
    }
}

macro_rules! half_close_via_shutdown {
    ($($t:ty),*) => {$(
        impl HalfClose for $t {
            fn shutdown_write(&mut self) {
                let _ = self.shutdown(std::net::Shutdown::Write);
            }
        }
    )*};
}

half_close_via_shutdown!(
    std::os::unix::net::UnixStream,
    &std::os::unix::net::UnixStream
);

macro_rules! half_close_tcp {
    ($($t:ty),*) => {$(
        impl HalfClose for $t {
            fn shutdown_write(&mut self) {
                let _ = self.shutdown(std::net::Shutdown::Write);
            }
            fn unacknowledged_output(&self) -> usize {
                let tcp: &std::net::TcpStream = std::borrow::Borrow::borrow(self);
                crate::serve::tcp_unacknowledged(tcp)
            }
        }
    )*};
}

half_close_tcp!(std::net::TcpStream, &std::net::TcpStream);

impl<T: HalfClose + ?Sized> HalfClose for &mut T {
    fn shutdown_write(&mut self) {
        (**self).shutdown_write();
    }
    fn unacknowledged_output(&self) -> usize {
        (**self).unacknowledged_output()
    }
}

impl<T: HalfClose> HalfClose for StdStream<T> {
    fn shutdown_write(&mut self) {
        self.inner.shutdown_write();
    }
    fn unacknowledged_output(&self) -> usize {
        self.inner.unacknowledged_output()
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
/// is "nothing now", `Interrupted` is retried, other errors fail the
/// connection.
struct Blocking<'a, S: ?Sized>(&'a mut S);

fn failure(kind: ErrorKind) -> Failure {
    if kind == ErrorKind::TimedOut {
        Failure::TimedOut
    } else {
        Failure::Reset
    }
}

impl<S: Read + Write + HalfClose + ?Sized> Transport for Blocking<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            return match self.0.read(buf) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == ErrorKind::TimedOut => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Failed(failure(e.kind())),
            };
        }
    }

    fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
        loop {
            return match self.0.write(buf) {
                // A blocking stream that takes nothing will not take more later.
                Ok(0) => WriteOutcome::Failed(Failure::Reset),
                Ok(n) => WriteOutcome::Sent(n),
                Err(e) if e.kind() == ErrorKind::TimedOut => WriteOutcome::WouldBlock,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => WriteOutcome::Failed(failure(e.kind())),
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
/// written before the next read; after a graceful close the stream is
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
/// write and read; 4 KiB to 64 KiB is sensible). On success the caller
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
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    probe
                        .handle_timeout(time.now())
                        .map_err(ProbeDriveError::Probe)?;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ProbeDriveError::Io(e)),
            }
        }
        if probe.is_done() {
            return Ok(*probe.stats());
        }
        // 2. Nothing outstanding: wait for the next paced message.
        if probe.outstanding() == 0 {
            match probe.poll_timeout() {
                Some(t) => time.sleep_until(t),
                None => probe.finish(),
            }
            continue;
        }
        // 3. Read once and verify everything read.
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
mod tests {
    use super::*;
    use ricochet_core::Mode;
    use ricochet_core::probe::{Pattern, SizeRange};
    use std::cell::Cell;
    use std::collections::VecDeque;

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
        let stats =
            serve_connection(&mut s, [0u8; 64], SessionConfig::default(), &ticker()).unwrap();
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
            let n = buf.len().min(self.input.len());
            for (b, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
                *b = byte;
            }
            Ok(n)
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
            let n = buf.len().min(self.input.len());
            for (b, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
                *b = byte;
            }
            Ok(n)
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
}
