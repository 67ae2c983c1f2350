//! An epoll worker run by another worker's thread: beside io_uring
//! workers, the TLS listeners' event loops (rustls is driven by
//! readiness) are hosted by the io_uring workers instead of taking
//! threads of their own.
//!
//! The host watches [`Guest::fd`] (the epoll descriptor: readable while
//! events wait in it) through its own ring, and calls [`Guest::turn`] when
//! it became readable or [`Guest::timeout`] came; the guest never blocks.
//! It keeps its own worker index, connection table and counters (its own
//! stats slot), and follows the server's phase like any worker.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use mio::Events;

use super::super::Shared;
use super::{EVENTS, LoopSetup, Worker};

/// A hosted epoll worker (see the module docs).
pub(crate) struct Guest {
    worker: Worker,
    events: Events,
    /// The last turn took as many events as `events` holds: more may wait.
    full: bool,
}

impl Guest {
    /// Starts the event loop of `setup` on the calling thread's behalf.
    pub(crate) fn start(setup: LoopSetup, shared: Arc<Shared>) -> Self {
        Guest {
            worker: Worker::new(setup.0, shared),
            events: Events::with_capacity(EVENTS),
            full: false,
        }
    }

    /// The epoll descriptor: readable while readiness events wait.
    pub(crate) fn fd(&self) -> RawFd {
        self.worker.poll.as_raw_fd()
    }

    /// How long the host may wait before the next [`Guest::turn`] if its
    /// descriptor stays quiet: zero with work left over (a budget ran out,
    /// or the last turn took a full batch of events), `None` for no
    /// deadline.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        if self.full {
            return Some(Duration::ZERO);
        }
        self.worker.poll_timeout()
    }

    /// Takes the events waiting (without blocking) and serves them, the
    /// leftovers and the due timers. `Ok(false)` once the guest is done
    /// (abort, or drained): the host then calls [`Guest::finish`].
    pub(crate) fn turn(&mut self) -> io::Result<bool> {
        loop {
            match self
                .worker
                .poll
                .poll(&mut self.events, Some(Duration::ZERO))
            {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.full = self.events.iter().count() >= self.events.capacity();
        Ok(self.worker.turn(&self.events))
    }

    /// Worker exit: sessions still echoing are reset, the counters published.
    pub(crate) fn finish(mut self) {
        self.worker.finish();
    }
}
