//! Live progress: counters the workers publish while a run is in progress
//! (the command line draws them as a progress bar on terminals).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters the worker threads publish while a run is in progress
/// (updated every few milliseconds, not on every message).
#[derive(Debug, Default)]
pub struct Progress {
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    finished: AtomicU64,
}

/// A reading of [`Progress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Messages verified so far.
    pub messages_verified: u64,
    /// Bytes verified so far.
    pub bytes_verified: u64,
    /// Errors so far.
    pub errors: u64,
    /// UDP datagrams counted lost so far (not back within the timeout).
    pub lost: u64,
    /// Connections that are finished (cleanly or not).
    pub connections_finished: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl Progress {
    pub(super) fn publish(&self, d: &Delta) {
        self.messages.fetch_add(d.messages, Relaxed);
        self.bytes.fetch_add(d.bytes, Relaxed);
        self.errors.fetch_add(d.errors, Relaxed);
        self.lost.fetch_add(d.lost, Relaxed);
        self.finished.fetch_add(d.finished, Relaxed);
    }

    /// The current counters; `elapsed` is filled in by the caller.
    pub fn snapshot(&self, elapsed: Duration) -> Snapshot {
        Snapshot {
            messages_verified: self.messages.load(Relaxed),
            bytes_verified: self.bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            lost: self.lost.load(Relaxed),
            connections_finished: self.finished.load(Relaxed),
            elapsed,
        }
    }
}

/// A worker's unpublished increments.
#[derive(Debug, Default)]
pub(super) struct Delta {
    pub(super) messages: u64,
    pub(super) bytes: u64,
    pub(super) errors: u64,
    pub(super) lost: u64,
    pub(super) finished: u64,
}

impl Delta {
    /// Publishes and resets.
    pub(super) fn flush(&mut self, to: &Progress) {
        if self.messages | self.bytes | self.errors | self.lost | self.finished != 0 {
            to.publish(self);
            *self = Delta::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters of `p` as `(messages, bytes, errors, lost, finished)`.
    fn read(p: &Progress) -> (u64, u64, u64, u64, u64) {
        let s = p.snapshot(Duration::from_secs(3));
        assert_eq!(s.elapsed, Duration::from_secs(3));
        (
            s.messages_verified,
            s.bytes_verified,
            s.errors,
            s.lost,
            s.connections_finished,
        )
    }

    /// A delta with `n` in the counter at position `i` of [`read`]'s tuple.
    fn one(i: usize, n: u64) -> Delta {
        let mut d = Delta::default();
        *[
            &mut d.messages,
            &mut d.bytes,
            &mut d.errors,
            &mut d.lost,
            &mut d.finished,
        ][i] = n;
        d
    }

    #[test]
    fn flush_of_a_delta_with_any_one_counter_publishes_it_once() {
        for i in 0..5 {
            let p = Progress::default();
            let mut d = one(i, 2);
            d.flush(&p);
            d.flush(&p);
            let mut want = [0; 5];
            want[i] = 2;
            assert_eq!(read(&p), want.into(), "counter {i}");
        }
    }

    #[test]
    fn flush_of_a_delta_with_equal_counters_publishes_them_all() {
        // Equal values must not cancel out in the "anything to publish" test.
        for i in 1..5 {
            let p = Progress::default();
            let mut d = one(i, 1);
            d.messages = 1;
            d.flush(&p);
            let mut want = [0; 5];
            want[0] = 1;
            want[i] = 1;
            assert_eq!(read(&p), want.into(), "messages and counter {i}");
        }
    }

    #[test]
    fn flushes_of_two_workers_add_up() {
        let p = Progress::default();
        for _ in 0..2 {
            let mut d = Delta {
                messages: 1,
                bytes: 64,
                errors: 2,
                lost: 3,
                finished: 4,
            };
            d.flush(&p);
        }
        assert_eq!(read(&p), (2, 128, 4, 6, 8));
    }
}
