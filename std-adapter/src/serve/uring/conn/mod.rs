//! One stream connection on the ring: what its completions left (received
//! buffers, send progress, FIN, errors) as a core [`Transport`].
//!
//! The transport owns the completion side. Multishot receive completions
//! queue provided buffers here; [`Transport::read`] copies them into the
//! session's buffer and hands each buffer back once empty (`WouldBlock`
//! when none is queued). When the pump says the session would echo them
//! unchanged (raw mode, nothing held), [`Transport::pass_through`] lends
//! them to the send side instead: they are sent from where the kernel
//! received them (no copy at all) and given back once the kernel took
//! them. [`Transport::write`] copies into the connection's send buffer and
//! returns at once (`WouldBlock` only when the connection's bounded output
//! is full). Lent buffers and written bytes leave in the order they were
//! queued (`output.rs`): the worker submits one send per connection per
//! turn, for everything queued (a `sendmsg` when it spans several
//! pieces). A send that stopped short (the socket is full)
//! continues from where it stopped once the socket can take more, so no
//! byte is lost. [`Transport::unacknowledged`] counts what the kernel has
//! not taken yet (and the FIN until it went out), so the pump's linger
//! waits for it. A failed completion is reported on the next call.

use ricochet_core::pump::{Failure, ReadOutcome, Transport, WriteOutcome};
use ricochet_core::{Duration, Instant, Pump, Teardown};

use super::super::conn::Peer;
use super::super::conns::Tracked;
use super::super::stats::{Counters, Held, StreamKind};
use super::super::storage::SessionStorage;
use super::bufs::{BufRing, TxPool};

mod output;
mod received;
mod socket;

use output::Output;
pub(crate) use output::SendFrom;
use received::Received;
pub(crate) use socket::Socket;

/// Where the FIN is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fin {
    /// Not asked for.
    No,
    /// Asked for; goes out once the send buffer is empty.
    Wanted,
    /// Sent (`shutdown(SHUT_WR)`).
    Sent,
}

/// The I/O state of a connection, which completions update and the
/// transport reads.
#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) socket: Socket,
    /// Its slot in the worker's registered file table, if it has one.
    pub(crate) fixed: Option<u32>,
    rx: Received,
    /// The receive reported the peer's FIN.
    eof: bool,
    /// The receive failed.
    rx_failed: Option<Failure>,
    /// A multishot receive is in flight (until its last completion).
    pub(crate) recv_armed: bool,
    /// Its cancel was submitted.
    pub(crate) recv_cancelling: bool,
    /// Waiting for provided buffers (the last receive ended with `ENOBUFS`).
    pub(crate) buf_waiting: bool,
    /// The session wants input (as of its last drive): a receive waiting
    /// for buffers is re-armed only then.
    pub(crate) wants_read: bool,
    /// In the worker's list of stalled connections (see `ConnIo::spill`).
    pub(crate) stall_listed: bool,
    /// What is queued for sending.
    out: Output,
    /// Bytes of the send submitted this turn, not yet confirmed (0: none).
    pub(crate) tx_inflight: usize,
    /// Waiting for the socket to take more (a POLLOUT request is in flight).
    pub(crate) tx_poll: bool,
    /// The last POLLOUT said the socket can take more, and no send has
    /// taken a byte since.
    tx_woke: bool,
    /// Sending again at this instant, not on POLLOUT (see
    /// [`SendWait::Retry`]), and the pause after the next such refusal.
    tx_retry_at: Option<Instant>,
    tx_retry_pause: Duration,
    /// The session found the send buffer full (its write was cut short).
    tx_blocked: bool,
    tx_failed: Option<Failure>,
    fin: Fin,
}

/// The first and the longest pause of [`SendWait::Retry`].
const RETRY_MIN: Duration = Duration::from_millis(1);
const RETRY_MAX: Duration = Duration::from_millis(64);

/// What a connection whose send failed waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendWait {
    /// Nothing: it failed for good (the pump's next write reports it) or
    /// was cancelled.
    Nothing,
    /// POLLOUT: the socket is full.
    Poll,
    /// Its [`ConnIo::retry_at`]: the socket said it could take more
    /// (POLLOUT) and then refused everything (`EAGAIN`): TCP is short of
    /// memory system-wide, which POLLOUT does not report, so a POLLOUT now
    /// would complete at once, again and again. Paused 1 ms, doubling to
    /// 64 ms while that repeats, back to 1 ms once a send takes bytes.
    Retry,
}

/// Maps a completion's negative result to how the connection failed.
pub(crate) fn failure(errno: i32) -> Failure {
    if errno == libc::ETIMEDOUT {
        Failure::TimedOut
    } else {
        Failure::Reset
    }
}

impl ConnIo {
    /// Where its requests find the socket.
    pub(crate) fn target(&self) -> super::ring::Target {
        match self.fixed {
            Some(i) => super::ring::Target::Fixed(i),
            None => super::ring::Target::Fd(self.socket.raw_fd()),
        }
    }

    /// A connection on `socket`, in slot `fixed` of the worker's file
    /// table if it has one.
    pub(crate) fn new(socket: Socket, fixed: Option<u32>) -> Self {
        ConnIo {
            socket,
            fixed,
            rx: Received::default(),
            eof: false,
            rx_failed: None,
            recv_armed: false,
            recv_cancelling: false,
            buf_waiting: false,
            wants_read: true,
            stall_listed: false,
            out: Output::default(),
            tx_inflight: 0,
            tx_poll: false,
            tx_woke: false,
            tx_retry_at: None,
            tx_retry_pause: RETRY_MIN,
            tx_blocked: false,
            tx_failed: None,
            fin: Fin::No,
        }
    }

    /// Hints that the connection's queues (received buffers, output
    /// pieces) are about to be used: their storage is apart from the
    /// connection's own row.
    pub(crate) fn prefetch_queues(&self) {
        self.rx.prefetch();
        self.out.prefetch();
    }

    /// Bytes received and not yet read by the session.
    pub(crate) fn rx_bytes(&self) -> usize {
        self.rx.bytes()
    }

    /// Received buffers not yet read in full by the session.
    pub(crate) fn rx_buffers(&self) -> usize {
        self.rx.buffers()
    }

    /// Whether the receive side is over (FIN or error).
    pub(crate) fn rx_done(&self) -> bool {
        self.eof || self.rx_failed.is_some()
    }

    /// A receive completion filled `len` bytes of buffer `bid`.
    pub(crate) fn received(&mut self, bid: u16, len: usize) {
        self.rx.push(bid, len);
    }

    /// The peer's FIN arrived.
    pub(crate) fn received_eof(&mut self) {
        self.eof = true;
    }

    /// The receive failed with `errno`.
    pub(crate) fn receive_failed(&mut self, errno: i32) {
        self.rx_failed.get_or_insert(failure(errno));
    }

    /// Hands every queued receive buffer back (the connection is going away).
    pub(crate) fn drop_received(&mut self, bufs: &mut BufRing, pool: &mut TxPool) {
        self.rx.give_back(bufs, pool);
    }

    /// Gives back every ring buffer the connection holds (received, and
    /// lent to its output) after copying their bytes into memory of its
    /// own (from `pool`); order and bytes are kept. Only while no send is
    /// in flight (one may read the lent buffers): returns 0 otherwise, else
    /// how many buffers went back. For a stalled connection when the ring
    /// runs short (see `received.rs`).
    pub(crate) fn spill(&mut self, ring: &mut BufRing, pool: &mut TxPool) -> usize {
        if self.tx_inflight > 0 {
            return 0;
        }
        self.rx.spill(ring, pool) + self.out.unlend(ring, pool)
    }

    /// Bytes queued for sending that the kernel has not taken.
    pub(crate) fn tx_pending(&self) -> usize {
        self.out.pending()
    }

    /// What the kernel has not taken yet: the queued bytes, and the FIN
    /// (counted as 1) until it went out.
    pub(crate) fn unsent(&self) -> usize {
        self.tx_pending() + usize::from(self.fin == Fin::Wanted)
    }

    /// Whether [`ConnIo::next_send`] has something to send now: bytes are
    /// queued, no send is unconfirmed, and the socket is not known to be
    /// full or failed. The worker then marks the connection for a send:
    /// after a drive, and after a confirmation (the session may have
    /// written while the send was in flight, if its confirmation waited a
    /// turn).
    pub(crate) fn has_sendable(&self) -> bool {
        self.tx_pending() > 0
            && self.tx_inflight == 0
            && !self.tx_poll
            && self.tx_retry_at.is_none()
            && self.tx_failed.is_none()
    }

    /// What to send next, if [`ConnIo::has_sendable`]: everything queued.
    pub(crate) fn next_send(&mut self, ring: &BufRing) -> Option<SendFrom> {
        if !self.has_sendable() {
            return None;
        }
        let from = self.out.next(ring)?;
        self.tx_inflight = match from {
            SendFrom::Slice(_, n) | SendFrom::Msg(_, n) => n,
        };
        Some(from)
    }

    /// The enter that submitted the send returned without a failure
    /// completion for it: the kernel took all of it (see the worker's
    /// `flush_sends`). Returns whether the pump should hear about it (it
    /// found the send buffer full, or waits for the FIN to go out).
    pub(crate) fn confirm_sent(&mut self, ring: &mut BufRing, pool: &mut TxPool) -> bool {
        if self.tx_inflight == 0 {
            return false;
        }
        let n = std::mem::take(&mut self.tx_inflight);
        self.out.took(n, ring, pool);
        self.sent_some();
        self.finish_if_flushed();
        std::mem::take(&mut self.tx_blocked) || self.fin != Fin::No
    }

    /// A send's failure completion at `now` (`res`: bytes taken before it
    /// stopped, or `-errno`): what to wait for before sending again (then
    /// [`ConnIo::writable`] on POLLOUT, or [`ConnIo::retry_due`]).
    pub(crate) fn send_failed(
        &mut self,
        res: i32,
        now: Instant,
        ring: &mut BufRing,
        pool: &mut TxPool,
    ) -> SendWait {
        let inflight = std::mem::take(&mut self.tx_inflight);
        if res >= 0 {
            // A short send: the socket is full.
            let took = (res as usize).min(inflight);
            self.out.took(took, ring, pool);
            if took > 0 {
                self.sent_some();
            }
            self.tx_poll = self.tx_pending() > 0;
            return if self.tx_poll {
                SendWait::Poll
            } else {
                SendWait::Nothing
            };
        }
        match -res {
            libc::EAGAIN if self.tx_woke => {
                self.tx_retry_at = Some(now + self.tx_retry_pause);
                self.tx_retry_pause = Duration::from_micros(
                    (self.tx_retry_pause.as_micros() * 2).min(RETRY_MAX.as_micros()),
                );
                SendWait::Retry
            }
            libc::EAGAIN => {
                self.tx_poll = true;
                SendWait::Poll
            }
            libc::ECANCELED => SendWait::Nothing,
            errno => {
                self.tx_failed.get_or_insert(failure(errno));
                // Nothing more will be sent: what is queued is lost with the connection.
                self.out.discard(ring, pool);
                SendWait::Nothing
            }
        }
    }

    /// A send took bytes: the socket works, so the next refusal starts
    /// with POLLOUT and the shortest retry pause again.
    fn sent_some(&mut self) {
        self.tx_woke = false;
        self.tx_retry_pause = RETRY_MIN;
    }

    /// Whether its send waits for the socket to take more (POLLOUT, or the
    /// retry after a refusal): its peer takes no more for now.
    pub(crate) fn is_stalled(&self) -> bool {
        self.tx_poll || self.tx_retry_at.is_some()
    }

    /// Drops the wait for room that the failure of its last send asked
    /// for ([`ConnIo::send_failed`]), when nothing more will be sent (the
    /// connection is released). Only for that: with a poll for room armed
    /// it must stay set until the poll's completion.
    pub(crate) fn stop_waiting_for_room(&mut self) {
        self.tx_poll = false;
        self.tx_retry_at = None;
    }

    /// When the connection sends again without POLLOUT (see
    /// [`SendWait::Retry`]).
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.tx_retry_at
    }

    /// Whether the retry after a refused send is due at `now`: then it is
    /// cleared and the connection may send again.
    pub(crate) fn retry_due(&mut self, now: Instant) -> bool {
        if self.tx_retry_at.is_some_and(|at| at <= now) {
            self.tx_retry_at = None;
            return true;
        }
        false
    }

    /// The pump gave up lingering ([`Teardown::Abandon`]): the socket is
    /// closed next. The kernel keeps delivering what its socket holds after
    /// the close, but what is still queued here would be lost with the
    /// connection, and the peer would read a clean end after a shortened
    /// echo. So hand it to the socket now, without waiting, first as the
    /// socket is, then with its send buffer grown by what is left (as far
    /// as `net.core.wmem_max` allows); then the FIN if it was
    /// asked for. Returns whether something could not be handed over: the
    /// close must then reset the connection (TCP), so the peer sees the
    /// echo cut short; a Unix stream socket has no reset, its peer reads
    /// an end of stream. Not while a send is in flight (it may read the
    /// queue): that counts as not handed over.
    pub(crate) fn hand_over_before_close(&mut self, ring: &mut BufRing, pool: &mut TxPool) -> bool {
        if self.tx_inflight > 0 || self.tx_failed.is_some() {
            return self.unsent() > 0;
        }
        for grow in [false, true] {
            if self.tx_pending() == 0 {
                break;
            }
            if grow {
                self.socket.grow_send_buffer(self.tx_pending());
            }
            self.send_queued_now(ring, pool);
        }
        self.finish_if_flushed();
        self.unsent() > 0
    }

    /// The pump aborted the connection ([`Teardown::Reset`]): the socket is
    /// reset next. What the session already handed over (counted as sent,
    /// e.g. the lines before an overlong one) goes to the socket first, as
    /// far as it takes it now, as on epoll, where every write reaches the
    /// socket at once: the reset must not destroy echo the counters report
    /// as sent and the peer could still read. Not while a send is in flight.
    pub(crate) fn hand_over_before_reset(&mut self, ring: &mut BufRing, pool: &mut TxPool) {
        if self.tx_inflight == 0 && self.tx_failed.is_none() {
            self.send_queued_now(ring, pool);
        }
    }

    /// Hands queued output to the socket without waiting, while it takes it.
    fn send_queued_now(&mut self, ring: &mut BufRing, pool: &mut TxPool) {
        while let Some(from) = self.out.next(ring) {
            match self.socket.send_now(&from) {
                Some(n) if n > 0 => self.out.took(n, ring, pool),
                _ => break,
            }
        }
    }

    /// Whether something waits for the send buffer to empty: the session
    /// (it found the buffer full) or the FIN.
    pub(crate) fn needs_wake(&self) -> bool {
        self.tx_blocked || self.fin != Fin::No
    }

    /// The socket can take more (its POLLOUT completed): send again.
    pub(crate) fn writable(&mut self) {
        self.tx_poll = false;
        self.tx_woke = true;
        self.tx_blocked = false;
    }

    /// Sends the FIN if it was asked for and nothing is left to send.
    fn finish_if_flushed(&mut self) {
        if self.fin == Fin::Wanted && self.tx_pending() == 0 && self.tx_inflight == 0 {
            self.socket.shutdown_write();
            self.fin = Fin::Sent;
        }
    }

    /// Takes the send buffer out (to leak it while a send may still read
    /// it; the lent buffers stay lent, the ring is leaked with them).
    pub(crate) fn take_send_buffer(&mut self) -> Option<Vec<u8>> {
        self.out.take_buffer()
    }

    /// Gives the lent buffers and the send buffer back (release, nothing
    /// in flight).
    pub(crate) fn drop_send_buffer(&mut self, ring: &mut BufRing, pool: &mut TxPool) {
        if self.tx_inflight == 0 {
            self.out.discard(ring, pool);
        }
    }
}

/// A connection's I/O state with the worker's buffers: the core's transport.
pub(crate) struct Io<'a> {
    pub(crate) io: &'a mut ConnIo,
    pub(crate) bufs: &'a mut BufRing,
    pub(crate) pool: &'a mut TxPool,
}

impl Transport for Io<'_> {
    /// Sends are queued on the ring and complete later.
    fn queues_output(&self) -> bool {
        true
    }

    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        let s = &mut *self.io;
        if s.rx.is_empty() {
            return match (s.rx_failed, s.eof) {
                (Some(f), _) => ReadOutcome::Failed(f),
                (None, true) => ReadOutcome::Eof,
                (None, false) => ReadOutcome::WouldBlock,
            };
        }
        let mut n = 0;
        s.rx.drain(self.bufs, self.pool, buf.len(), |data| {
            buf[n..n + data.len()].copy_from_slice(data);
            n += data.len();
        });
        ReadOutcome::Data(n)
    }

    /// Completions queue all input there is: nothing queued, no end and
    /// no failure means nothing to read (raw sessions whose input passes
    /// through then never allocate their buffer, see `serve/storage.rs`).
    fn read_would_block(&self) -> bool {
        let s = &*self.io;
        s.rx.is_empty() && !s.eof && s.rx_failed.is_none()
    }

    fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
        let s = &mut *self.io;
        if let Some(f) = s.tx_failed {
            return WriteOutcome::Failed(f);
        }
        let n = buf.len().min(s.out.room(self.pool, s.tx_inflight > 0));
        if n < buf.len() {
            // The pump hears when room is made (`confirm_sent`, `writable`).
            s.tx_blocked = true;
        }
        if n == 0 {
            return WriteOutcome::WouldBlock;
        }
        s.out.copy(&buf[..n]);
        WriteOutcome::Sent(n)
    }

    /// Received buffers lent whole to the output, without a copy, while
    /// they fit in `max` and its bounds; what does not fit stays received
    /// (the pump reads it through the session's buffer instead).
    fn pass_through(&mut self, max: usize) -> usize {
        let s = &mut *self.io;
        if s.tx_failed.is_some() || s.fin != Fin::No {
            return 0;
        }
        s.out.lend(&mut s.rx, max)
    }

    fn shutdown_write(&mut self) {
        if self.io.fin == Fin::No {
            self.io.fin = Fin::Wanted;
        }
        self.io.finish_if_flushed();
    }

    fn unacknowledged(&self) -> usize {
        self.io.unsent()
    }

    /// Its own queue, then TCP's unacknowledged bytes: what the reset
    /// after an abort would discard (a Unix socket's echo is in its peer's
    /// queue already).
    fn unsent_before_reset(&self) -> usize {
        let kernel = match &self.io.socket {
            Socket::Tcp(s) => crate::serve::listener::tcp_unacknowledged(s),
            Socket::Unix(_) => 0,
        };
        self.io.unsent() + kernel
    }

    /// A send of bytes `write` had queued failed (the peer is gone).
    fn output_failed(&self) -> bool {
        self.io.tx_failed.is_some()
    }
}

/// A connection: its I/O state and the pump driving its session.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) io: ConnIo,
    pub(crate) pump: Pump<SessionStorage>,
    pub(crate) kind: StreamKind,
    pub(crate) peer: Peer,
    /// In the list of connections to drive after this batch of completions.
    pub(crate) ready: bool,
    /// In the list of connections with bytes to submit.
    pub(crate) dirty: bool,
    /// Released by the pump; the slot is freed once no request is in flight.
    pub(crate) releasing: Option<Teardown>,
    /// What this connection's own queues held when last added to the
    /// counters' `buffered` gauge (see [`Conn::sync_gauge`]).
    pub(crate) gauged: Held,
}

impl Conn {
    /// Keeps the counters' `buffered` gauge counting what this
    /// connection's own queues hold beside its session's buffer (which the
    /// pump counts): bytes received and not yet read by the session, and
    /// output not yet submitted to the kernel (up to 64 KiB each, see
    /// `worker.rs`). A submitted send counts as taken: the enter that
    /// submits it resolves it, and its confirmation waits for the next
    /// turn, which an idle worker may not have for long (a short send puts
    /// the rest back). Nothing once the pump or the worker released it, as
    /// the pump counts nothing then. Called after whatever changes them: a
    /// receive or send completion, a drive, a submitted send, a release.
    pub(crate) fn sync_gauge(&mut self, counters: &mut Counters) {
        let now = if self.releasing.is_some() || self.pump.is_released() {
            0
        } else {
            self.io.rx_bytes() + self.io.tx_pending().saturating_sub(self.io.tx_inflight)
        };
        self.gauged.set(now, counters.stream(self.kind));
    }
}

impl Tracked for Conn {
    fn pump(&mut self) -> &mut Pump<SessionStorage> {
        &mut self.pump
    }

    fn deadline(&self) -> Option<Instant> {
        ricochet_core::time::earliest(self.pump.poll_timeout(), self.io.retry_at())
    }

    fn set_reset_on_close(&self) {
        self.io.socket.set_reset_on_close();
    }

    fn kind(&self) -> StreamKind {
        self.kind
    }

    /// Echo not yet handed to the kernel (queued, or in a send in flight).
    fn undelivered(&self) -> bool {
        self.io.unsent() > 0
    }

    /// Not once released: it only waits for its requests to come back.
    fn is_live(&self) -> bool {
        self.releasing.is_none()
    }
}

#[cfg(test)]
mod tests;
