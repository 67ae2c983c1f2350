//! What the adapter provides: a stream connection's I/O primitives
//! ([`Transport`]) and what they report.

/// What a read from the transport gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReadOutcome {
    /// `n > 0` bytes were written at the start of the buffer (`Data(0)` is
    /// read as [`ReadOutcome::Eof`]).
    Data(usize),
    /// The peer finished sending (FIN).
    Eof,
    /// Nothing to read now; the adapter says when it becomes readable
    /// ([`Pump::set_readable`](super::Pump::set_readable)). An interrupted call (`EINTR`) is retried by
    /// the transport, never reported as this.
    WouldBlock,
    /// The connection failed.
    Failed(Failure),
}

/// What a write to the transport gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WriteOutcome {
    /// The transport took the first `n` bytes (a short write is normal;
    /// `Sent(0)` is read as [`WriteOutcome::WouldBlock`]).
    Sent(usize),
    /// No room now; the adapter says when it becomes writable
    /// ([`Pump::set_writable`](super::Pump::set_writable)).
    WouldBlock,
    /// The connection failed.
    Failed(Failure),
}

/// How a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// Reset by the peer, broken pipe, or any other fatal error.
    Reset,
    /// The transport gave up (unanswered retransmissions, `ETIMEDOUT`).
    TimedOut,
}

/// The I/O primitives of one stream connection, as the adapter provides them.
pub trait Transport {
    /// Reads into `buf` (never empty).
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome;

    /// Writes from `buf` (never empty). `more` is a batching hint: the pump
    /// is about to write again, so a partial segment may be held back
    /// (`MSG_MORE`); the pump calls [`Transport::flush`] if it then does not.
    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome;

    /// Sends what a `more` write held back, and whatever output the
    /// transport queued of its own (a TLS transport's records). Called after
    /// a `more` write, before [`Transport::shutdown_write`], and whenever
    /// the connection is writable while [`Transport::unacknowledged`] is
    /// above 0 (serving or lingering), so queued output leaves as soon as
    /// the connection takes it. Default: nothing to do.
    fn flush(&mut self) {}

    /// Shuts down the write side after everything queued (TCP: FIN). Called
    /// once, when the session closes gracefully.
    fn shutdown_write(&mut self);

    /// Whether the transport already holds input, or the end of it (EOF,
    /// an error), that a read would return without waiting for readiness.
    /// After a short read the pump reads again only if this is true (or the
    /// readiness event reported the peer's FIN): a transport that buffers
    /// (TLS decrypts whole records) may return a short read and still have
    /// the end of the stream to report. Default: false (a short read
    /// drained the transport).
    fn read_pending(&self) -> bool {
        false
    }

    /// Moves up to `max` bytes of input the transport already holds
    /// straight to its own output, in order, and returns how many it moved
    /// (each counts as read and as written). The pump calls it only when the
    /// session would echo that input unchanged and first
    /// ([`Session::can_pass_through`](crate::Session::can_pass_through)),
    /// so a transport that queues both directions in memory can send what
    /// it received without copying it through the session's buffer
    /// (io_uring lends its received buffers to its sends). It may move
    /// less than it holds (what is left is read as usual), and nothing
    /// (returns 0) when it holds no input or its output has no room; the end of the stream and
    /// failures are left for [`Transport::read`] and [`Transport::write`] to
    /// report. Default: 0 (the bytes go through the session's buffer).
    fn pass_through(&mut self, max: usize) -> usize {
        let _ = max;
        0
    }

    /// Whether a read now would certainly return
    /// [`ReadOutcome::WouldBlock`]: the transport holds no input, no end of
    /// the stream and no failure, and learns of more only through the
    /// adapter (a completion-based transport: io_uring's receive
    /// completions queue what arrives). The pump then does not offer its
    /// buffer for a read, so a raw session whose input always passes
    /// through ([`Transport::pass_through`]) never touches its storage, and
    /// the adapter may allocate that storage on first use. Default: false
    /// (a readiness-based transport cannot know without reading).
    fn read_would_block(&self) -> bool {
        false
    }

    /// The transport queues output of its own beyond the OS's socket
    /// buffer (io_uring sends in flight, TLS records): its writes succeed
    /// before the bytes are handed on, and may still fail after the session
    /// closed. A graceful close is then counted only once that output was
    /// delivered ([`Transport::unacknowledged`] reached 0), or as reset by
    /// the peer if it failed ([`Transport::output_failed`],
    /// [`Session::handle_output_lost`](crate::Session::handle_output_lost)), so the counters agree with a
    /// transport whose failing write aborts the session at once, and never
    /// need taking back. Default: false (count the close when the session
    /// closes).
    fn queues_output(&self) -> bool {
        false
    }

    /// Bytes written (and the FIN, counted as one) that the transport has
    /// not yet seen delivered. The linger after a graceful close ends only
    /// when this is 0, and restarts whenever it goes down. Default: 0 (the
    /// OS delivers after the socket is closed, as a kernel TCP stack does).
    fn unacknowledged(&self) -> usize {
        0
    }

    /// Bytes written that a reset would still discard: not yet delivered
    /// to the peer (a kernel TCP socket's send queue, `SIOCOUTQ`). A
    /// session aborted for what the peer sent (a line or frame too long, a
    /// frame cut short by the FIN) echoes the whole units before it first:
    /// the pump resets the connection only once this is 0, or after the
    /// linger time without progress, reading and discarding input
    /// meanwhile. Default: [`Transport::unacknowledged`].
    fn unsent_before_reset(&self) -> usize {
        self.unacknowledged()
    }

    /// Whether output this transport already took can no longer be
    /// delivered: a send it queued failed after [`Transport::write`]
    /// accepted the bytes (a transport that queues output of its own, as
    /// TLS records or an io_uring send queue). A lingering pump then
    /// releases the connection at once instead of waiting out the linger
    /// for bytes that will never leave (and, with
    /// [`Transport::queues_output`], counts the session as reset by the
    /// peer). Default: false (writes reach the
    /// kernel at once and report their failures themselves).
    fn output_failed(&self) -> bool {
        false
    }
}
