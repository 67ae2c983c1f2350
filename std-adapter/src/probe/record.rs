//! A worker thread's one place to record what happens: per-target
//! [`Tally`]s for the summary, the [`Slicer`] for per-interval reports, and
//! the live progress counters, kept consistent with each other.

use std::sync::mpsc::Sender;

use ricochet_core::{Duration, Instant, Pace};

use super::Ctx;
use super::interval::{Slicer, WorkerMsg};
use super::progress::{Delta, Progress};
use super::report::ConnError;
use super::tally::{Tally, Window};

/// Records a worker's events; see the module documentation.
pub(super) struct Recorder {
    tallies: Vec<Tally>,
    slicer: Option<Slicer>,
    delta: Delta,
}

impl Recorder {
    /// A recorder for worker `thread` of the run `ctx`; interval slices go to `tx`.
    pub(super) fn new(
        ctx: &Ctx<'_>,
        thread: usize,
        tx: &Sender<WorkerMsg>,
    ) -> std::io::Result<Self> {
        let window = Window {
            start: ctx.window_start,
            end: ctx.finish_at,
            paced: ctx.spec.rate.is_some(),
        };
        let tallies = (0..ctx.spec.targets.len())
            .map(|_| Tally::new(window))
            .collect::<std::io::Result<Vec<_>>>()?;
        let slicer = match ctx.spec.interval {
            Some(every) => Some(Slicer::new(window, every.into(), thread, tx.clone())?),
            None => None,
        };
        Ok(Recorder {
            tallies,
            slicer,
            delta: Delta::default(),
        })
    }

    /// Target `target`'s tally (for the counters added when a connection ends).
    ///
    /// # Panics
    ///
    /// Never: connections only carry target indices of the spec.
    pub(super) fn tally(&mut self, target: usize) -> &mut Tally {
        let last = self.tallies.len() - 1;
        &mut self.tallies[target.min(last)]
    }

    /// Reports the interval that ended, if `now` is past it.
    pub(super) fn roll(&mut self, now: Instant) {
        if let Some(s) = &mut self.slicer {
            s.roll(now);
        }
    }

    /// When the current interval ends, if intervals are reported.
    pub(super) fn next_boundary(&self) -> Option<Instant> {
        self.slicer.as_ref().map(Slicer::next_boundary)
    }

    /// `n` bytes were verified at `now`.
    pub(super) fn verified(&mut self, target: usize, now: Instant, n: usize) {
        self.roll(now);
        self.tally(target).verified(now, n);
        if let Some(s) = &mut self.slicer {
            s.verified(now, n);
        }
        self.delta.bytes += n as u64;
    }

    /// A message completed its round trip at `now`.
    pub(super) fn round_trip(
        &mut self,
        target: usize,
        now: Instant,
        rtt: Duration,
        since_sent: Duration,
    ) {
        self.roll(now);
        self.tally(target).round_trip(now, rtt, since_sent);
        if let Some(s) = &mut self.slicer {
            s.round_trip(now, rtt, since_sent);
        }
        self.delta.messages += 1;
    }

    /// A message's echo completed at `now`, `gap` after its first piece
    /// came (it came in pieces): see [`Tally::split_echo`].
    pub(super) fn split_echo(&mut self, target: usize, now: Instant, gap: Duration) {
        self.tally(target).split_echo(now, gap);
    }

    /// Pacing: `n` messages due from `first_due`, `pace` apart, that the
    /// end of the duration held back, waited until `now` (see [`Tally::unsent`]).
    pub(super) fn unsent(
        &mut self,
        target: usize,
        first_due: Instant,
        pace: Pace,
        n: u64,
        now: Instant,
    ) {
        self.roll(now);
        self.tally(target).unsent(first_due, pace, n, now);
        if let Some(s) = &mut self.slicer {
            s.unsent(first_due, pace, n, now);
        }
    }

    /// A paced message left at `now`, `late` after it could have.
    pub(super) fn lateness(&mut self, target: usize, now: Instant, late: Duration) {
        self.tally(target).lateness(now, late);
    }

    /// A connection became ready for data `latency` after its connect call.
    pub(super) fn connected(&mut self, target: usize, latency: Duration) {
        self.tally(target).connected(latency);
    }

    /// A TLS handshake completed at `now`, `took` after the TCP connection was up.
    pub(super) fn handshake(&mut self, target: usize, now: Instant, took: Duration, resumed: bool) {
        self.tally(target).handshake(now, took, resumed);
    }

    /// A connection's first echoed byte came `latency` after its connect call.
    pub(super) fn first_byte(&mut self, target: usize, latency: Duration) {
        self.tally(target).first_byte(latency);
    }

    /// A connection closed cleanly at `now`.
    pub(super) fn completed(&mut self, target: usize, now: Instant) {
        self.roll(now);
        self.tally(target).completed(now);
        if let Some(s) = &mut self.slicer {
            s.completed(now);
        }
    }

    /// A connection failed at `now`.
    pub(super) fn error(&mut self, target: usize, now: Instant, e: ConnError) {
        self.roll(now);
        self.tally(target).error(e);
        if let Some(s) = &mut self.slicer {
            s.error();
        }
        self.delta.errors += 1;
    }

    /// `n` datagrams were counted lost at `now`.
    pub(super) fn lost(&mut self, now: Instant, n: u64) {
        self.roll(now);
        if let Some(s) = &mut self.slicer {
            s.lost(n);
        }
        self.delta.lost += n;
    }

    /// A connection slot is finished for good (progress counter).
    pub(super) fn slot_finished(&mut self) {
        self.delta.finished += 1;
    }

    /// Publishes the progress counters.
    pub(super) fn flush(&mut self, to: &Progress) {
        self.delta.flush(to);
    }

    /// Sends the last interval slice and returns the tallies (one per target).
    pub(super) fn finish(mut self, to: &Progress) -> Vec<Tally> {
        self.delta.flush(to);
        if let Some(s) = self.slicer.take() {
            s.finish();
        }
        self.tallies
    }
}
