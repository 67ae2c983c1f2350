//! The connections of an io_uring worker: what their completions do
//! (received buffers, send progress), driving their pumps, submitting
//! their receives and sends, and releasing them. Their deadlines and run
//! queue are the shared connection table's (`conns/`).

use io_uring::squeue::Flags;
use io_uring::{cqueue, opcode};
use ricochet_core::{Instant, Next, Teardown};

use super::super::conns::{BUDGET, ConnTable, Driver};
use super::super::events::log_events;
use super::super::stats::{Counters, StreamKind};
use super::super::storage::release_idle;
use super::bundle;
use super::conn::{Conn, Io, SendFrom, SendWait};
use super::fixed;
use super::ring::{Op, on_target, user_data};
use super::worker::{REARM_MIN_FREE, RX_BUFS, RX_CAP, RX_CAP_BUFFERS, Worker};

impl Worker<'_> {
    pub(super) fn on_recv(&mut self, key: usize, res: i32, flags: u32, last: bool) {
        let Some((conn, generation)) = self.conns.get_tagged(key) else {
            // Cannot happen (a slot is freed only with nothing in flight);
            // its buffers must still go back.
            if let Some(first) = cqueue::buffer_select(flags) {
                let filled = self.bufs.take_completion(first, res.max(0) as usize);
                self.bufs.recycle_completion(filled);
            }
            return;
        };
        if last {
            conn.io.recv_armed = false;
            conn.io.recv_cancelling = false;
        }
        if let Some(first) = cqueue::buffer_select(flags) {
            let filled = self.bufs.take_completion(first, res.max(0) as usize);
            if res > 0 && conn.releasing.is_none() && !conn.io.rx_done() {
                for k in 0..filled.count {
                    let (bid, len) = self.bufs.nth(filled, k);
                    conn.io.received(bid, len);
                }
            } else {
                self.bufs.recycle_completion(filled);
            }
        }
        conn.sync_gauge(&mut self.counters);
        if conn.releasing.is_some() {
            self.try_free(key);
            return;
        }
        match res {
            r if r > 0 => conn.pump.set_readable(),
            0 => {
                conn.io.received_eof();
                conn.pump.set_read_closed();
            }
            r if r == -libc::ENOBUFS => {
                if !conn.io.buf_waiting {
                    conn.io.buf_waiting = true;
                    self.buf_waiters.push_back((key, generation));
                }
            }
            r if r == -libc::ECANCELED => {}
            r => {
                conn.io.receive_failed(-r);
                conn.pump.set_read_closed();
            }
        }
        if conn.io.rx_bytes() >= RX_CAP || conn.io.rx_buffers() >= RX_CAP_BUFFERS {
            // Holding enough: leave the rest in the socket (TCP flow control).
            self.pause_recv(key);
        }
        self.mark_ready(key);
    }

    /// Cancels the connection's receive (if one runs): what arrives stays
    /// in the socket, and TCP flow control slows the peer. Re-armed once
    /// the session wants input and has taken what was received.
    pub(super) fn pause_recv(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.io.recv_armed || conn.io.recv_cancelling {
            return;
        }
        conn.io.recv_cancelling = true;
        let sqe = opcode::AsyncCancel::new(user_data(Op::Recv, key as u32, 0))
            .build()
            .user_data(user_data(Op::Cancel, 0, 0));
        self.push(&sqe);
    }

    /// A send's completion: failures and short sends, and full sends
    /// someone waits for (see [`Worker::flush_sends`]).
    pub(super) fn on_send(&mut self, key: usize, res: i32, now: Instant) {
        let Some((conn, generation)) = self.conns.get_tagged(key) else {
            return;
        };
        if res >= 0 && conn.io.tx_inflight > 0 && res as usize == conn.io.tx_inflight {
            self.confirm(key);
            return;
        }
        let res = if conn.io.tx_inflight == 0 {
            // A completion for a send already taken as whole: the kernel
            // did not resolve it inside its enter. What the connection sent
            // is no longer known, so it is reset rather than risk a gap.
            tracing::error!(peer = %conn.peer, res, "io_uring send completed late; resetting the connection");
            -libc::EIO
        } else {
            res
        };
        let wait = conn
            .io
            .send_failed(res, now, &mut self.bufs, &mut self.pool);
        conn.sync_gauge(&mut self.counters);
        if conn.releasing.is_some() {
            // Released: nothing more is sent, so it waits for no room.
            conn.io.stop_waiting_for_room();
            conn.io.drop_send_buffer(&mut self.bufs, &mut self.pool);
            self.try_free(key);
            return;
        }
        if wait != SendWait::Nothing && !conn.io.stall_listed {
            // Its peer takes no more for now: if the ring runs short,
            // what it holds of it is copied out (`relieve_buffers`).
            conn.io.stall_listed = true;
            self.stalled.push((key, generation));
        }
        if wait == SendWait::Retry {
            // Driven again at its retry instant (its deadline).
            self.conns.schedule(key);
        } else if wait == SendWait::Poll {
            let sqe = on_target!(conn.io.target(), opcode::PollAdd::new, libc::POLLOUT as u32)
                .build()
                .user_data(user_data(Op::SendPoll, key as u32, 0));
            self.push(&sqe);
        } else {
            // A failure: the pump's next write reports it.
            conn.pump.set_writable();
            self.mark_ready(key);
        }
    }

    /// The socket of a connection whose send stopped short can take more.
    pub(super) fn on_send_poll(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.io.writable();
        if conn.releasing.is_some() {
            self.try_free(key);
            return;
        }
        conn.pump.set_writable();
        self.mark_dirty(key);
        self.mark_ready(key);
    }

    /// The enter that submitted this turn's sends took the whole
    /// submission queue and posted no failure for them (none waits in the
    /// kernel's overflow list either: the worker checks): each was taken
    /// whole by the kernel.
    ///
    /// Why that holds: every send (`send` or `sendmsg`, which share these
    /// rules in the kernel) carries `MSG_DONTWAIT`, so io_uring issues
    /// it inline during the enter and never parks it to wait for room
    /// (`REQ_F_NOWAIT`); with `MSG_WAITALL`, one the socket takes only in
    /// part fails, reporting the bytes it took; and `SKIP_SUCCESS` drops the
    /// completion of a full send only. So a send completes within its
    /// enter, and one without a completion sent everything. This saves a
    /// completion, and at one connection a second `io_uring_enter`, per
    /// echo.
    pub(super) fn confirm_sends(&mut self) {
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        for &key in &unconfirmed {
            self.confirm(key);
        }
        let mut unconfirmed = unconfirmed;
        unconfirmed.clear();
        unconfirmed.append(&mut self.unconfirmed);
        self.unconfirmed = unconfirmed;
    }

    /// Connection `key`'s send was taken whole: frees a released
    /// connection once nothing is in flight; else wakes the pump if it
    /// waits (for room, or for the FIN to go out), and sends what was
    /// queued meanwhile.
    fn confirm(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let wake = conn.io.confirm_sent(&mut self.bufs, &mut self.pool);
        conn.sync_gauge(&mut self.counters);
        if conn.releasing.is_some() {
            conn.io.drop_send_buffer(&mut self.bufs, &mut self.pool);
            self.try_free(key);
            return;
        }
        if wake || conn.pump.is_finishing() {
            conn.pump.set_writable();
            self.mark_ready(key);
        }
        if self.conns.get(key).is_some_and(|c| c.io.has_sendable()) {
            self.mark_dirty(key);
        }
    }

    pub(super) fn mark_ready(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.ready
        {
            conn.ready = true;
            self.ready.push(key);
        }
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    pub(super) fn drive_ready(&mut self, now: Instant) {
        let ready = std::mem::take(&mut self.ready);
        for &key in &ready {
            match self.conns.get_mut(key) {
                Some(conn) if conn.ready => {
                    conn.ready = false;
                    self.drive(key, now);
                }
                _ => {}
            }
        }
        let mut ready = ready;
        ready.clear();
        // Completions filed while driving (none today) would be in `self.ready`.
        ready.append(&mut self.ready);
        self.ready = ready;
    }

    /// Arms the connection's multishot receive if it has none and wants input.
    pub(super) fn arm_recv(&mut self, key: usize) {
        let Some((conn, generation)) = self.conns.get_tagged(key) else {
            return;
        };
        let io = &mut conn.io;
        if io.recv_armed
            || io.buf_waiting
            || io.rx_done()
            || io.rx_bytes() > 0
            || conn.releasing.is_some()
        {
            return;
        }
        if !self.buf_waiters.is_empty() && grants(self.bufs.available()) == 0 {
            // Buffers are scarce: take a turn.
            io.buf_waiting = true;
            self.buf_waiters.push_back((key, generation));
            return;
        }
        io.recv_armed = true;
        let target = io.target();
        // Bundles for TCP only: on a Unix stream socket a capped bundle
        // that hits its cap and then empties the socket may miss an end
        // of stream that was already queued (seen on Linux 6.18: the
        // receive waits for a wakeup that came before it), while TCP
        // reports a queued FIN as a byte still to read and the kernel
        // reads on to it.
        let sqe = match self.bundles {
            Some(limit) if conn.kind == StreamKind::Tcp => {
                bundle::recv_bundle(target, self.bufs.bgid(), RX_CAP as u32, limit)
            }
            _ => on_target!(target, opcode::RecvMulti::new, self.bufs.bgid()).build(),
        };
        let sqe = sqe.user_data(user_data(Op::Recv, key as u32, 0));
        self.push(&sqe);
    }

    /// Re-arms waiting receives, in turn, as many as [`grants`] allows.
    pub(super) fn grant_buffers(&mut self) {
        let mut left = grants(self.bufs.available());
        while left > 0 {
            let Some((key, generation)) = self.buf_waiters.pop_front() else {
                return;
            };
            let Some(conn) = self.conns.get_current(key, generation) else {
                continue;
            };
            if !conn.io.buf_waiting {
                continue;
            }
            conn.io.buf_waiting = false;
            if !conn.io.wants_read {
                // Stalled since: its next drive that wants input arms it.
                continue;
            }
            left -= 1;
            self.arm_recv(key);
        }
    }

    /// When the shared ring runs short ([`scarce`]), every stalled
    /// connection (its send waits for its peer to read) gives back the ring
    /// buffers it holds, copied into memory of its own (`ConnIo::spill`):
    /// peers that take no echo cannot keep the others from receiving.
    /// Connections still stalled stay listed.
    pub(super) fn relieve_buffers(&mut self) {
        if self.stalled.is_empty() || !scarce(self.bufs.available(), self.buf_waiters.len()) {
            return;
        }
        let mut given = 0;
        let (conns, bufs, pool) = (&mut self.conns, &mut self.bufs, &mut self.pool);
        self.stalled.retain(|&(key, generation)| {
            let Some(conn) = conns.get_current(key, generation) else {
                return false;
            };
            if !conn.io.is_stalled() || conn.releasing.is_some() {
                conn.io.stall_listed = false;
                return false;
            }
            given += conn.io.spill(bufs, pool);
            true
        });
        if given > 0 {
            tracing::debug!(
                worker = self.index,
                given,
                stalled = self.stalled.len(),
                "receive buffers short: stalled connections gave theirs back"
            );
        }
    }

    pub(super) fn flush_sends(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !conn.dirty {
                continue;
            }
            conn.dirty = false;
            if conn.releasing.is_some() {
                continue;
            }
            let target = conn.io.target();
            // Someone waits for this send (the session for room, the linger
            // for delivery): its completion must wake the loop. Otherwise
            // (the usual echo) it completes silently (`confirm_sends`).
            let waited_for = conn.io.needs_wake() || conn.pump.is_finishing();
            let next = conn.io.next_send(&self.bufs);
            conn.sync_gauge(&mut self.counters);
            if let Some(from) = next {
                // Resolved inside the enter that submits it.
                let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL | libc::MSG_DONTWAIT;
                let sqe = match from {
                    SendFrom::Slice(ptr, len) => {
                        on_target!(target, opcode::Send::new, ptr, len as u32)
                            .flags(flags)
                            .build()
                    }
                    SendFrom::Msg(hdr, _) => on_target!(target, opcode::SendMsg::new, hdr)
                        .flags(flags as u32)
                        .build(),
                };
                let sqe = if waited_for {
                    sqe
                } else {
                    sqe.flags(Flags::SKIP_SUCCESS)
                };
                self.push_uncounted(&sqe.user_data(user_data(Op::Send, key as u32, 0)));
                self.unconfirmed.push(key);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// The pump released the connection: cancel what is in flight, close
    /// when nothing is.
    pub(super) fn release(&mut self, key: usize, how: Teardown) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.releasing = Some(how);
        conn.io.drop_received(&mut self.bufs, &mut self.pool);
        // A reset first hands the socket what it takes of the queue (echo
        // already counted as sent); after a linger that gave up, what the
        // socket cannot take is cut short with a reset too.
        let cut_short = match how {
            Teardown::Reset => {
                conn.io
                    .hand_over_before_reset(&mut self.bufs, &mut self.pool);
                true
            }
            Teardown::Abandon => conn
                .io
                .hand_over_before_close(&mut self.bufs, &mut self.pool),
            Teardown::Close => false,
        };
        conn.io.drop_send_buffer(&mut self.bufs, &mut self.pool);
        conn.sync_gauge(&mut self.counters);
        if cut_short {
            conn.io.socket.set_reset_on_close();
        }
        let mut cancels = Vec::new();
        if conn.io.recv_armed && !conn.io.recv_cancelling {
            conn.io.recv_cancelling = true;
            cancels.push(user_data(Op::Recv, key as u32, 0));
        }
        if conn.io.tx_poll {
            cancels.push(user_data(Op::SendPoll, key as u32, 0));
        }
        for target in cancels {
            let sqe = opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data(Op::Cancel, 0, 0));
            self.push(&sqe);
        }
        self.try_free(key);
    }

    /// Frees a released connection's slot once none of its requests is in flight.
    pub(super) fn try_free(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.releasing.is_none()
            || conn.io.recv_armed
            || conn.io.tx_inflight > 0
            || conn.io.tx_poll
        {
            return;
        }
        self.conns.release(key, |mut conn| {
            conn.io.drop_received(&mut self.bufs, &mut self.pool);
            conn.io.drop_send_buffer(&mut self.bufs, &mut self.pool);
            fixed::empty(&self.submitter, conn.io.fixed);
            // Dropping the socket closes it (FIN, or RST after `set_reset_on_close`).
        });
    }
}

/// How many receives waiting for buffers `available` free ones re-arm in
/// one turn: one while a quarter of them is at least [`REARM_MIN_FREE`],
/// and one more per 32 beyond (a re-armed receive may take up to 32 at
/// once). The worker waits for buffers to come back, rather than turning
/// again at once, when this is 0 (see `Worker::rearm_possible`).
pub(super) fn grants(available: usize) -> usize {
    let budget = available / 4;
    if budget < REARM_MIN_FREE {
        0
    } else {
        (budget - REARM_MIN_FREE) / 32 + 1
    }
}

/// Whether the shared ring runs short: receives wait for buffers, or
/// fewer than an eighth of them are free.
pub(super) fn scarce(available: usize, waiting: usize) -> bool {
    waiting > 0 || available < usize::from(RX_BUFS) / 8
}

impl Driver for Worker<'_> {
    type Conn = Conn;

    fn table(&mut self) -> &mut ConnTable<Conn> {
        &mut self.conns
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Runs connection `key`'s pump (unless released), then files it:
    /// receive armed or paused, timer, run queue, send, or release.
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.releasing.is_some() {
            return;
        }
        if conn.io.retry_due(now) {
            conn.pump.set_writable();
        }
        let counters = self.counters.stream(conn.kind);
        let mut io = Io {
            io: &mut conn.io,
            bufs: &mut self.bufs,
            pool: &mut self.pool,
        };
        let next = conn.pump.drive(now, &mut io, BUDGET, counters);
        conn.sync_gauge(&mut self.counters);
        release_idle(&mut conn.pump);
        log_events(&mut conn.pump, &conn.peer, false, now, &mut self.throttles);
        let wants_send = conn.io.has_sendable();
        conn.io.wants_read = !matches!(next, Next::Wait { read: false, .. });
        if let Next::Wait { read, .. } = next {
            if read {
                self.arm_recv(key);
            } else {
                // Backpressure (the session is full: its peer does not
                // take the echo): receive no more than what is here, so
                // a peer that stops reading cannot hold the worker's
                // shared receive buffers.
                self.pause_recv(key);
            }
        }
        if let Some(how) = self.conns.file(key, next) {
            self.release(key, how);
            return;
        }
        if wants_send {
            self.mark_dirty(key);
        }
    }

    /// Stops accepting and receiving datagrams (see `accept.rs`).
    fn stop_accepting(&mut self) {
        self.stop_listeners();
    }
}
