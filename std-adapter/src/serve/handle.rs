//! A running server's handles: [`ServerHandle`] (addresses, counters,
//! join) and [`Controller`] (shutdown and abort from any thread, the
//! watchdog's liveness check).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Endpoint, IoBackend, JoinError, Phase, ServerStats, Shared, StatsSnapshot};

/// Stops a running server from any thread; cheap to clone.
#[derive(Clone, Debug)]
pub struct Controller {
    pub(super) shared: Arc<Shared>,
}

impl Controller {
    /// Graceful shutdown, returns at once: listeners close and Unix socket
    /// files are removed, every session is closed so queued data is still
    /// echoed, and after the grace period what is left is reset.
    pub fn shutdown(&self) {
        self.shared.remove_unix_files();
        self.shared.advance(Phase::Draining);
    }

    /// Immediate stop, returns at once: every connection still echoing is
    /// reset. One whose session already finished (its whole echo handed to
    /// the kernel, waiting for the peer's FIN) is closed, and the kernel
    /// still delivers what it holds; no connection ends with a clean FIN
    /// after a shortened echo.
    pub fn abort(&self) {
        self.shared.remove_unix_files();
        self.shared.advance(Phase::Abort);
    }

    /// Whether a shutdown (graceful or not) was requested.
    pub fn is_stopping(&self) -> bool {
        self.shared.phase() != Phase::Running
    }

    /// Whether every worker's event loop is alive: wakes each worker and
    /// waits up to `within` for each to finish an event-loop turn. False if
    /// one did not (stuck, or exited). Costs one wakeup per worker; meant
    /// for a service manager's watchdog, every few seconds.
    pub fn responsive(&self, within: Duration) -> bool {
        let stats = &self.shared.stats;
        let before: Vec<u64> = (0..self.shared.wakers.len())
            .map(|i| stats.worker(i).turns())
            .collect();
        for w in &self.shared.wakers {
            w.wake();
        }
        let deadline = std::time::Instant::now() + within;
        loop {
            let turned = before
                .iter()
                .enumerate()
                .all(|(i, &b)| stats.worker(i).turns() != b);
            if turned {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// How long dropping a [`ServerHandle`] waits for the aborted workers
/// (an abort ends every connection at once; the io_uring workers' own exit
/// takes at most 2 s) before it leaves them running, detached, with an
/// error logged, rather than hang the thread that dropped it.
const DROP_JOIN_LIMIT: Duration = Duration::from_secs(30);

/// A running server. Dropping it without [`ServerHandle::join`] aborts it
/// and waits for its workers (at most 30 s: see `join_within`).
#[derive(Debug)]
pub struct ServerHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) threads: Vec<JoinHandle<io::Result<()>>>,
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) reporter: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl ServerHandle {
    /// The bound endpoints, with real ports.
    pub fn local_addrs(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The first TCP address, if any (convenient in tests).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.endpoints.iter().find_map(|e| match e {
            Endpoint::Tcp(a) => Some(*a),
            _ => None,
        })
    }

    /// The first TLS address, if any.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.endpoints.iter().find_map(|e| match e {
            Endpoint::Tls(a) => Some(*a),
            _ => None,
        })
    }

    /// The I/O backend the workers run: [`IoBackend::Uring`] or
    /// [`IoBackend::Epoll`] (never `Auto`: that was resolved at spawn).
    /// TLS listeners run on epoll whatever this says: beside io_uring, on
    /// an epoll event loop of their own inside each io_uring worker.
    pub fn io(&self) -> IoBackend {
        self.shared.io
    }

    /// The first UDP address, if any.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.endpoints.iter().find_map(|e| match e {
            Endpoint::Udp(a) => Some(*a),
            _ => None,
        })
    }

    /// The counters now (each worker publishes once per event-loop turn).
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The live counters, to read after the handle is gone.
    pub fn stats_source(&self) -> Arc<ServerStats> {
        Arc::clone(&self.shared.stats)
    }

    /// A [`Controller`] to stop the server from another thread (e.g. a signal handler thread).
    pub fn controller(&self) -> Controller {
        Controller {
            shared: Arc::clone(&self.shared),
        }
    }

    /// See [`Controller::shutdown`].
    pub fn shutdown(&self) {
        self.controller().shutdown();
    }

    /// See [`Controller::abort`].
    pub fn abort(&self) {
        self.controller().abort();
    }

    /// Waits until every worker has exited (after a shutdown or abort).
    ///
    /// Returns the first worker failure; a failing worker stops the others.
    pub fn join(mut self) -> Result<(), JoinError> {
        self.join_all()
    }

    /// [`join`](Self::join), waiting at most `limit` for the workers to
    /// exit: for a caller that must not hang on a worker that never stops
    /// (a bug, or a call before [`shutdown`](Self::shutdown) or
    /// [`abort`](Self::abort)). On expiry it returns
    /// [`JoinError::StillRunning`] and leaves the workers running,
    /// detached: their sockets stay open until they exit, and a
    /// [`Controller`] taken before still stops them.
    pub fn join_within(mut self, limit: Duration) -> Result<(), JoinError> {
        self.join_bounded(limit)
    }

    /// [`join_within`](Self::join_within) on a borrowed handle (also what
    /// dropping it does, after the abort).
    fn join_bounded(&mut self, limit: Duration) -> Result<(), JoinError> {
        let deadline = std::time::Instant::now() + limit;
        while !self.threads.iter().all(JoinHandle::is_finished) {
            if std::time::Instant::now() >= deadline {
                let running = self.threads.iter().filter(|t| !t.is_finished()).count();
                // Detached: dropping a thread's handle does not wait for it.
                self.threads.clear();
                // Its stop sender dropped: the reporter ends (detached too).
                self.reporter = None;
                return Err(JoinError::StillRunning { running, limit });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.join_all()
    }

    fn join_all(&mut self) -> Result<(), JoinError> {
        let mut result = Ok(());
        for (worker, t) in std::mem::take(&mut self.threads).into_iter().enumerate() {
            let outcome = match t.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => {
                    self.shared.advance(Phase::Abort);
                    Err(JoinError::EventLoop { worker, source })
                }
                Err(_) => Err(JoinError::WorkerPanicked { worker }),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        self.shared.remove_unix_files();
        if let Some((stop, t)) = self.reporter.take() {
            drop(stop);
            let _ = t.join();
        }
        result
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shared.advance(Phase::Abort);
            if let Err(e @ JoinError::StillRunning { .. }) = self.join_bounded(DROP_JOIN_LIMIT) {
                tracing::error!(error = %e, "dropping the server handle: workers left running");
            }
        }
    }
}
