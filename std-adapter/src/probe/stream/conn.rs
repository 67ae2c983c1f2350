//! One stream connection *slot*: the connection it has open now, its core
//! probe, and what carries over from one connection to the next when
//! connections churn (`--pattern crr`, `--lifetime`).

use ricochet_core::{Duration, Instant, StreamProbe};

use super::super::transport::{Handshake, Link};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting to connect, no earlier than `at` (and as the connects in
    /// flight and `--connect-rate` allow).
    Queued { at: Instant },
    /// Connect to the `attempt`-th address of the target in progress.
    Connecting { attempt: usize, deadline: Instant },
    /// A Unix connect hit a full backlog: try again at `at`.
    ConnectRetry { at: Instant, deadline: Instant },
    /// Sending and verifying.
    Running,
    /// Everything verified, our FIN sent: waiting for the server's.
    Draining { deadline: Instant },
    /// Finished cleanly, no further connection.
    Done,
    /// Finished with an error.
    Failed,
}

pub(super) struct Conn<const M: usize> {
    /// Global connection number (for reports and seeds).
    pub(super) id: usize,
    /// Index of its target in the spec.
    pub(super) target: usize,
    pub(super) sock: Option<Link>,
    pub(super) phase: Phase,
    pub(super) probe: Option<Box<StreamProbe<M>>>,
    /// Cached edge-triggered readiness: true until an operation would block.
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// An event said the peer finished (or the socket failed): read to the end.
    pub(super) read_closed: bool,
    /// Connections opened so far (each churned connection is one).
    pub(super) sessions: u64,
    /// Messages sent by its earlier connections (they count toward `--count`
    /// and the pacing schedule).
    pub(super) messages_done: u64,
    /// When the current connection's connect began.
    pub(super) dialed_at: Instant,
    /// The current connection has had its first echoed byte.
    pub(super) first_byte_seen: bool,
    /// When the first piece of an echo still incomplete arrived (the
    /// message's other bytes not back yet): see `Recorder::split_echo`.
    pub(super) piece_at: Option<Instant>,
    /// `--lifetime` as a time: when the current connection stops starting messages.
    pub(super) lifetime_end: Option<Instant>,
    /// Pacing: the due instant of the slot's first message (its schedule
    /// runs on across its connections).
    pub(super) origin: Option<Instant>,
    /// Pacing: a message due by now could not start (window full, message
    /// in flight, a new connection): its lateness counts from `ready_at`.
    pub(super) held: bool,
    /// The last instant that may have let a held message start.
    pub(super) ready_at: Instant,
    /// Pacing: the socket took no more (the server not reading: TCP's
    /// backpressure); when it takes bytes again, held messages may start.
    pub(super) socket_full: bool,
    /// Since when the socket has refused the probe's next bytes, if it
    /// took none since: a server that does not read (told apart, at a
    /// timeout, from one that reads and does not answer).
    pub(super) write_blocked_since: Option<Instant>,
    /// The stream offset at which the message being verified starts (a
    /// `frames` mismatch there is in its length header).
    pub(super) unit_start: u64,
    /// Pacing: the messages due, and not begun, when the duration ended
    /// (first due instant, count): their wait is recorded once the
    /// connection could have sent them, or failed.
    pub(super) unsent: Option<(Instant, u64)>,
    /// The current connection is ready for data but not counted as opened
    /// yet: the server has not shown it accepted the TLS handshake.
    pub(super) unsettled: Option<Opened>,
    /// The current connect's attempts that failed at an address before the
    /// one it tries now (a name that resolves to several), each as
    /// `(refused, "ADDRESS: error")`: named if every address fails.
    pub(super) failed_attempts: Vec<(bool, String)>,
}

/// A connection that became ready for data, as it is counted once the
/// server has accepted its handshake (TLS 1.3: see `Link::handshake_accepted`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Opened {
    /// When it became ready (its handshake done on the probe's side).
    pub(super) at: Instant,
    /// From the connect call to ready.
    pub(super) connect: Duration,
    /// Its handshake (TLS).
    pub(super) handshake: Option<Handshake>,
}

impl<const M: usize> Conn<M> {
    pub(super) fn new(id: usize, target: usize, at: Instant) -> Self {
        Conn {
            id,
            target,
            sock: None,
            phase: Phase::Queued { at },
            probe: None,
            readable: false,
            writable: false,
            read_closed: false,
            sessions: 0,
            messages_done: 0,
            dialed_at: at,
            first_byte_seen: false,
            piece_at: None,
            lifetime_end: None,
            origin: None,
            held: false,
            ready_at: at,
            socket_full: false,
            write_blocked_since: None,
            unit_start: 0,
            unsent: None,
            unsettled: None,
            failed_attempts: Vec::new(),
        }
    }

    /// The next deadline of the slot in its current phase.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting { deadline, .. } | Phase::Draining { deadline } => Some(deadline),
            Phase::ConnectRetry { at, .. } => Some(at),
            Phase::Running => {
                let probe = self.probe.as_ref().and_then(|p| p.poll_timeout());
                ricochet_core::time::earliest(probe, self.lifetime_end)
            }
            Phase::Queued { .. } | Phase::Done | Phase::Failed => None,
        }
    }

    /// Still connecting (counts against the connects in flight).
    pub(super) fn is_connecting(&self) -> bool {
        matches!(
            self.phase,
            Phase::Connecting { .. } | Phase::ConnectRetry { .. }
        )
    }
}

/// New connections per second at most (`--connect-rate`), per worker thread.
#[derive(Debug)]
pub(super) struct Gate {
    every: Option<ricochet_core::Duration>,
    next: Instant,
}

impl Gate {
    /// A gate allowing one connection every `every` (`None`: no cap), from `start`.
    pub(super) fn new(every: Option<ricochet_core::Duration>, start: Instant) -> Self {
        Gate { every, next: start }
    }

    /// `None` if a connection may start at `now`, else when one may.
    pub(super) fn wait_until(&self, now: Instant) -> Option<Instant> {
        (self.every.is_some() && now < self.next).then_some(self.next)
    }

    /// A connection started at `now`. A gate that fell behind catches up
    /// by at most one connection (no burst after a pause).
    pub(super) fn take(&mut self, now: Instant) {
        if let Some(every) = self.every {
            let floor = Instant::from_micros(now.as_micros().saturating_sub(every.as_micros()));
            self.next = self.next.max(floor) + every;
        }
    }
}

#[cfg(test)]
mod tests {
    use ricochet_core::Duration;

    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn gate_spaces_connections_and_does_not_burst_after_a_pause() {
        let mut g = Gate::new(Some(Duration::from_millis(10)), ms(0));
        assert_eq!(g.wait_until(ms(0)), None);
        g.take(ms(0));
        assert_eq!(g.wait_until(ms(5)), Some(ms(10)));
        g.take(ms(10));
        // Idle for a while: one catch-up at most.
        g.take(ms(100));
        assert_eq!(g.wait_until(ms(100)), None, "one catch-up");
        g.take(ms(100));
        assert_eq!(g.wait_until(ms(100)), Some(ms(110)));
    }

    #[test]
    fn gate_without_a_rate_never_waits() {
        let mut g = Gate::new(None, ms(0));
        for _ in 0..1000 {
            g.take(ms(1));
            assert_eq!(g.wait_until(ms(1)), None);
        }
    }
}
