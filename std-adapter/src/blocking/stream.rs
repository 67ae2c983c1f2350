//! The std side of the blocking drivers: [`StdStream`], a std stream as an
//! `embedded_io` stream, and [`HalfClose`], the write side's shutdown and
//! what the peer has not acknowledged.

use std::io;

use embedded_io::{ErrorType, Read, Write};

/// A std stream as an [`embedded_io`] stream whose socket timeouts read as
/// [`ErrorKind::TimedOut`](embedded_io::ErrorKind::TimedOut).
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
/// [`serve_connection`](super::serve_connection) half-closes through it when the session closes
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
    /// for them, within its linger, before [`serve_connection`](super::serve_connection) returns, so
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
