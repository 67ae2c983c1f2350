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
