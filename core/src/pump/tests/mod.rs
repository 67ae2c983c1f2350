//! Pump unit tests over a scripted transport, named `<phase>_<event>_<outcome>`:
//! the serving phase's in `serving/`, the linger's (and the wait before a
//! reset) in `lingering.rs`; here the transports, helpers and the rest.

use std::collections::VecDeque;
use std::vec::Vec;

use super::*;
use crate::mode::Mode;
use crate::session::{AbortReason, CloseReason, State};
use crate::time::Duration;

mod lingering;
mod serving;

const T0: Instant = Instant::from_micros(1_000_000);

fn at(ms: u64) -> Instant {
    T0 + Duration::from_millis(ms)
}

fn cfg(mode: Mode) -> SessionConfig {
    SessionConfig {
        mode,
        idle_timeout: Some(Duration::from_secs(10)),
        drain_timeout: Some(Duration::from_secs(5)),
        linger: Duration::from_secs(2),
    }
}

/// A scripted connection: reads come from `input` (then `Eof` if `fin`,
/// else `WouldBlock`), writes go to `output` while `room` lasts.
#[derive(Default)]
struct Script {
    input: VecDeque<u8>,
    fin: bool,
    read_failure: Option<Failure>,
    write_failure: Option<Failure>,
    /// Bytes the transport takes before `WouldBlock`.
    room: usize,
    output: Vec<u8>,
    reads: usize,
    /// Calls to [`Transport::write`], whatever they gave.
    writes: usize,
    /// Report no room as `Sent(0)` instead of `WouldBlock`.
    sent_zero: bool,
    /// Report the end as `Data(0)` (a read that returned 0) instead of `Eof`.
    eof_as_zero: bool,
    more: Vec<bool>,
    flushes: usize,
    shutdowns: usize,
    unacked: usize,
    /// [`Transport::output_failed`]: a queued send failed.
    output_failed: bool,
    /// [`Transport::queues_output`].
    queues: bool,
    /// Report `Eof` only after a first short read (a buffering transport
    /// that returned the last plaintext, then has the end to report).
    eof_after_short_read: bool,
    /// Implements [`Transport::pass_through`] (input to output within
    /// `room`), counting what it moved in `passed`.
    passes: bool,
    passed: usize,
    /// Implements [`Transport::read_would_block`] (no input, no end, no
    /// failure: a completion-based transport knows).
    knows_input: bool,
}

impl Script {
    fn with_input(data: &[u8], fin: bool) -> Self {
        Script {
            input: data.iter().copied().collect(),
            fin,
            room: usize::MAX,
            ..Script::default()
        }
    }
}

impl Transport for Script {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        self.reads += 1;
        assert!(self.reads < 100_000, "the pump reads in a loop");
        if let Some(f) = self.read_failure {
            return ReadOutcome::Failed(f);
        }
        if self.input.is_empty() {
            return if self.fin && self.eof_as_zero {
                ReadOutcome::Data(0)
            } else if self.fin {
                ReadOutcome::Eof
            } else {
                ReadOutcome::WouldBlock
            };
        }
        let n = buf.len().min(self.input.len());
        for (slot, b) in buf.iter_mut().zip(self.input.drain(..n)) {
            *slot = b;
        }
        if self.eof_after_short_read && self.input.is_empty() {
            self.fin = true;
        }
        ReadOutcome::Data(n)
    }

    fn read_pending(&self) -> bool {
        self.eof_after_short_read && self.input.is_empty() && self.fin
    }

    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome {
        self.writes += 1;
        if let Some(f) = self.write_failure {
            return WriteOutcome::Failed(f);
        }
        let n = buf.len().min(self.room);
        if n == 0 && self.sent_zero {
            return WriteOutcome::Sent(0);
        }
        if n == 0 {
            return WriteOutcome::WouldBlock;
        }
        self.room -= n;
        self.output.extend_from_slice(&buf[..n]);
        self.more.push(more);
        WriteOutcome::Sent(n)
    }

    fn flush(&mut self) {
        self.flushes += 1;
    }

    fn pass_through(&mut self, max: usize) -> usize {
        if !self.passes {
            return 0;
        }
        let n = max.min(self.input.len()).min(self.room);
        self.output.extend(self.input.drain(..n));
        self.room -= n;
        self.passed += n;
        n
    }

    fn read_would_block(&self) -> bool {
        self.knows_input && self.input.is_empty() && !self.fin && self.read_failure.is_none()
    }

    fn shutdown_write(&mut self) {
        self.shutdowns += 1;
    }

    fn unacknowledged(&self) -> usize {
        self.unacked
    }

    fn output_failed(&self) -> bool {
        self.output_failed
    }

    fn queues_output(&self) -> bool {
        self.queues
    }
}

fn pump(mode: Mode, size: usize) -> Pump<Vec<u8>> {
    Pump::new(std::vec![0u8; size], cfg(mode), T0)
}

#[test]
fn released_pump_returns_the_same_release_and_counts_once() {
    let mut p = pump(Mode::Frames, 64);
    let mut io = Script::with_input(b"\x00\x05ab", true);
    let mut c = StreamCounters::default();
    p.set_read_closed();
    let first = p.drive(T0, &mut io, usize::MAX, &mut c);
    let again = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(first, Next::Release(Teardown::Reset));
    assert_eq!(again, first);
    assert_eq!(c.aborted.truncated_frame, 1);
    assert_eq!(c.ended(), 1);
    assert_eq!(c.bytes_discarded, 4);
}

#[test]
fn stop_counts_a_running_session_as_aborted_and_a_linger_as_cut_short() {
    let mut c = StreamCounters::default();
    // Running, with echo pending that the peer is not reading.
    let mut running = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"pending", false);
    io.room = 0;
    running.set_readable();
    let _ = running.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(c.buffered, 7);
    assert_eq!(running.stop(at(1), &mut c), Some(Teardown::Reset));
    assert_eq!(c.aborted.local, 1);
    assert_eq!(c.bytes_discarded, 7, "the pending echo is lost");
    assert_eq!(c.buffered, 0);
    // Lingering: cut short.
    let mut lingering = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"", false);
    lingering.close(T0);
    let _ = lingering.drive(T0, &mut io, usize::MAX, &mut c);
    assert!(lingering.is_finishing() && !lingering.is_released());
    assert_eq!(lingering.stop(at(1), &mut c), Some(Teardown::Abandon));
    assert_eq!((c.lingered, c.closed.local), (1, 1));
    // Released: nothing more to count, and drive agrees.
    assert_eq!(lingering.stop(at(2), &mut c), None);
    assert_eq!(
        running.drive(at(2), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Reset)
    );
    assert_eq!((c.ended(), c.lingered), (2, 1), "each counted once");
}

#[test]
fn reset_rearms_a_released_pump_over_the_same_storage() {
    let mut p = pump(Mode::Raw, 16);
    let mut io = Script::with_input(b"a", true);
    let mut c = StreamCounters::default();
    p.set_read_closed();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert!(p.is_released());
    assert_eq!(
        p.reset(cfg(Mode::Raw), at(1), &mut c),
        None,
        "nothing to release"
    );
    p.set_read_closed();
    let mut io = Script::with_input(b"bc", true);
    assert_eq!(
        p.drive(at(1), &mut io, usize::MAX, &mut c),
        Next::Release(Teardown::Close)
    );
    assert_eq!(io.output, b"bc");
    assert_eq!(c.closed.peer_finished, 2);
}

#[test]
fn vacant_pump_has_no_connection_and_reset_arms_it_without_counting() {
    let mut p = Pump::vacant(std::vec![0u8; 16], cfg(Mode::Raw), T0);
    let mut c = StreamCounters::default();
    assert!(p.is_released());
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(p.reset(cfg(Mode::Lines), at(1), &mut c), None);
    assert_eq!(c, StreamCounters::default(), "nothing to count");
    let mut io = Script::with_input(b"x\n", false);
    let _ = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"x\n");
}

/// A transport with only the required primitives and
/// [`Transport::unacknowledged`], as the smoltcp node implements it: every
/// other method keeps its default.
struct Delivering(Script);

impl Transport for Delivering {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        self.0.read(buf)
    }

    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome {
        self.0.write(buf, more)
    }

    fn shutdown_write(&mut self) {
        self.0.shutdown_write();
    }

    fn unacknowledged(&self) -> usize {
        self.0.unacked
    }
}

fn passing(data: &[u8]) -> Script {
    Script {
        passes: true,
        ..Script::with_input(data, false)
    }
}

/// Storage that counts how often the session asked to write into it.
struct Watched {
    bytes: Vec<u8>,
    borrowed_mut: std::rc::Rc<core::cell::Cell<usize>>,
}

impl AsRef<[u8]> for Watched {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsMut<[u8]> for Watched {
    fn as_mut(&mut self) -> &mut [u8] {
        self.borrowed_mut.set(self.borrowed_mut.get() + 1);
        &mut self.bytes
    }
}

/// A raw pump over [`Watched`] storage, and its count of mutable borrows.
fn watched_pump(size: usize) -> (Pump<Watched>, std::rc::Rc<core::cell::Cell<usize>>) {
    let borrowed_mut = std::rc::Rc::default();
    let storage = Watched {
        bytes: std::vec![0u8; size],
        borrowed_mut: std::rc::Rc::clone(&borrowed_mut),
    };
    (Pump::new(storage, cfg(Mode::Raw), T0), borrowed_mut)
}

#[test]
fn fresh_pump_cleared_readable_reads_only_after_a_readiness_event() {
    let (mut p, borrowed_mut) = watched_pump(4);
    p.clear_readable();
    let mut io = Script::with_input(b"", false);
    let mut c = StreamCounters::default();
    let next = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(
        next,
        Next::Wait {
            read: true,
            write: false
        }
    );
    assert_eq!(io.reads, 0, "no readiness reported yet");
    assert_eq!(borrowed_mut.get(), 0, "the storage is untouched");
    io.input.extend(b"hi");
    p.set_readable();
    let _ = p.drive(at(2), &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"hi");
    assert!(borrowed_mut.get() > 0);
}

/// A `lines` session of 8 bytes that echoed "ok\n", then met a line too
/// long, while the transport still had `unacked` bytes undelivered.
#[cfg(feature = "deliver_before_reset")]
fn overlong_line_behind_undelivered_echo(
    unacked: usize,
) -> (Pump<Vec<u8>>, Script, StreamCounters, Next) {
    let mut p = pump(Mode::Lines, 8);
    let mut io = Script::with_input(b"ok\nxxxxxxxxxx", false);
    io.unacked = unacked;
    let mut c = StreamCounters::default();
    let next = p.drive(T0, &mut io, usize::MAX, &mut c);
    (p, io, c, next)
}

/// A kernel socket: only the required primitives, and its send queue
/// (`SIOCOUTQ`, from `Script::unacked`) as what a reset would discard; the
/// kernel delivers what it took by itself, so nothing is unacknowledged.
struct Kernel(Script);

impl Transport for Kernel {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        self.0.read(buf)
    }

    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome {
        self.0.write(buf, more)
    }

    fn shutdown_write(&mut self) {
        self.0.shutdown_write();
    }

    fn unsent_before_reset(&self) -> usize {
        self.0.unacked
    }
}
