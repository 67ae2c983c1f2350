//! SIGINT and SIGTERM for a server run from a terminal or a service manager.
//!
//! The first signal asks for a graceful shutdown ([`Controller::shutdown`]);
//! a second one stops at once ([`Controller::abort`]). Signals are received
//! on a dedicated thread through `signal-hook`'s self-pipe, so no code runs
//! in signal context. SIGPIPE needs nothing: Rust programs ignore it and
//! socket writes use `MSG_NOSIGNAL`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::Controller;

/// Watches SIGINT and SIGTERM until dropped.
#[derive(Debug)]
pub struct SignalWatcher {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    aborted: Arc<AtomicBool>,
}

impl SignalWatcher {
    /// Starts watching; signals then stop `controller`'s server.
    pub fn start(controller: Controller) -> io::Result<SignalWatcher> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let aborted = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&aborted);
        let thread = std::thread::Builder::new()
            .name("ricochet-signals".into())
            .spawn(move || {
                for (count, signal) in signals.forever().enumerate() {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    if count == 0 {
                        tracing::info!(
                            signal = name,
                            "shutting down gracefully (send it again to stop at once)"
                        );
                        controller.shutdown();
                    } else {
                        tracing::warn!(signal = name, "second signal: stopping at once");
                        flag.store(true, Ordering::SeqCst);
                        controller.abort();
                    }
                }
            })?;
        Ok(SignalWatcher {
            handle,
            thread: Some(thread),
            aborted,
        })
    }

    /// Whether a second signal forced an immediate stop.
    pub fn aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }
}

impl Drop for SignalWatcher {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
