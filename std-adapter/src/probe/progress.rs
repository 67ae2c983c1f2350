//! Live progress: counters the workers publish, and an indicatif bar for terminals.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{ProbeSpec, Stop};

/// Counters the worker threads publish while a run is in progress
/// (updated every few milliseconds, not on every message).
#[derive(Debug, Default)]
pub struct Progress {
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
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
        self.finished.fetch_add(d.finished, Relaxed);
    }

    /// The current counters; `elapsed` is filled in by the caller.
    pub fn snapshot(&self, elapsed: Duration) -> Snapshot {
        Snapshot {
            messages_verified: self.messages.load(Relaxed),
            bytes_verified: self.bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
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
    pub(super) finished: u64,
}

impl Delta {
    /// Publishes and resets.
    pub(super) fn flush(&mut self, to: &Progress) {
        if self.messages | self.bytes | self.errors | self.finished != 0 {
            to.publish(self);
            *self = Delta::default();
        }
    }
}

/// A progress bar on stderr: messages verified out of the total for a
/// count, elapsed time out of the duration otherwise.
///
/// The command line shows it only when stderr is a terminal and neither
/// `--quiet` nor `--json` is given.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    by_time: bool,
}

impl Bar {
    /// A bar sized for `spec`.
    pub fn new(spec: &ProbeSpec) -> Self {
        let (len, by_time, template) = match spec.stop {
            Stop::Count(n) => (
                n.saturating_mul(spec.connections as u64),
                false,
                "{bar:40} {pos}/{len} messages  {msg}",
            ),
            Stop::Duration(d) => (
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                true,
                "{bar:40} {elapsed}  {msg}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Bar {
            bar: ProgressBar::new(len).with_style(style),
            by_time,
        }
    }

    /// Shows a new reading.
    pub fn update(&self, s: &Snapshot) {
        if self.by_time {
            self.bar
                .set_position(u64::try_from(s.elapsed.as_millis()).unwrap_or(u64::MAX));
        } else {
            self.bar.set_position(s.messages_verified);
        }
        self.bar.set_message(format!(
            "{} msgs, {:.1} MB verified, {} errors",
            s.messages_verified,
            s.bytes_verified as f64 / 1e6,
            s.errors
        ));
    }

    /// Removes the bar (the table follows on stdout).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
