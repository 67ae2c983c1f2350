//! Telling a service manager how the server is doing (`sd_notify(3)`, with
//! the `sd-notify` crate): `READY=1` once every listener is up, `STOPPING=1`
//! when the shutdown begins, and `WATCHDOG=1` every half `WATCHDOG_USEC`
//! while every worker's event loop still turns.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd with `Type=notify`)
//! every call is a no-op. A notification that cannot be sent is logged
//! once and otherwise ignored: the echo service matters more than its
//! reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use ricochet::serve::Controller;
use sd_notify::NotifyState;

/// The service manager's view of this process.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    stopping: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    watchdog: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

fn send(failed: &AtomicBool, states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states)
        && !failed.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

impl Notifier {
    /// `READY=1` with a `STATUS=` line; starts the watchdog if the manager asked for one.
    pub(crate) fn ready(&mut self, status: &str, controller: Controller) {
        send(
            &self.failed,
            &[NotifyState::Ready, NotifyState::Status(status)],
        );
        if let Some(every) = sd_notify::watchdog_enabled() {
            self.start_watchdog(every, controller);
        }
    }

    /// `STOPPING=1`, once however often it is called.
    pub(crate) fn stopping(&self) {
        stopping(&self.stopping, &self.failed);
    }

    /// [`Notifier::stopping`] for another thread (the signal watcher).
    pub(crate) fn stopping_hook(&self) -> impl FnMut() + Send + 'static {
        let (flag, failed) = (Arc::clone(&self.stopping), Arc::clone(&self.failed));
        move || stopping(&flag, &failed)
    }

    /// Pings every half period while every worker turns within a quarter
    /// period (during a shutdown, unconditionally: the stop timeout rules
    /// then). A stuck worker stops the pings, and the manager restarts the
    /// service (`Restart=on-failure`).
    fn start_watchdog(&mut self, period: Duration, controller: Controller) {
        let (tx, rx) = mpsc::channel::<()>();
        let failed = Arc::clone(&self.failed);
        let (ping_every, turn_within) = watchdog_times(period);
        let spawned = std::thread::Builder::new()
            .name("ricochet-watchdog".into())
            .spawn(move || {
                loop {
                    if controller.is_stopping() || controller.responsive(turn_within) {
                        send(&failed, &[NotifyState::Watchdog]);
                    } else {
                        tracing::error!(
                            "a worker's event loop did not turn within {:?}: not pinging the \
                             watchdog, the service manager will act",
                            turn_within
                        );
                    }
                    match rx.recv_timeout(ping_every) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            });
        match spawned {
            Ok(t) => self.watchdog = Some((tx, t)),
            Err(e) => tracing::warn!(error = %e, "cannot start the watchdog thread"),
        }
    }
}

/// For a manager's watchdog `period` (`WATCHDOG_USEC`): how often to ping
/// (every half period, so one late ping is not yet a miss) and how soon
/// every worker must turn for a ping (a quarter period, which leaves the
/// ping in time).
fn watchdog_times(period: Duration) -> (Duration, Duration) {
    (period / 2, period / 4)
}

fn stopping(flag: &AtomicBool, failed: &AtomicBool) {
    if !flag.swap(true, Ordering::AcqRel) {
        send(failed, &[NotifyState::Stopping]);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some((tx, t)) = self.watchdog.take() {
            drop(tx);
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_pings_every_half_period_once_workers_turn_within_a_quarter() {
        let (ping_every, turn_within) = watchdog_times(Duration::from_secs(30));
        assert_eq!(ping_every, Duration::from_secs(15));
        assert_eq!(turn_within, Duration::from_millis(7_500));
    }
}
