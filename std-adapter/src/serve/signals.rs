//! SIGINT, SIGTERM and SIGHUP for a server (or a probe) run from a
//! terminal or a service manager. SIGHUP counts as a stop request like the
//! other two: the server has no configuration to reload, and a hang-up (a
//! closed terminal, an operator's reflex) then stops it gracefully instead
//! of killing it with its socket files left behind.
//!
//! Signals are received on a dedicated thread through `signal-hook`'s
//! self-pipe, so no code runs in signal context but a count: the iterator
//! reports a signal once however often it came since the thread last looked
//! (a second SIGTERM right after the first would be lost, and with it the
//! stop at once), so each delivery is also counted, and the thread hands
//! on as many events as there were deliveries. For a server
//! ([`SignalWatcher::start`]) the first signal asks for a graceful shutdown
//! ([`Controller::shutdown`]) and a second one stops at once
//! ([`Controller::abort`]); [`SignalWatcher::spawn`] lets the caller decide.
//!
//! The watcher must not be the reason a process ignores signals. Its
//! handler acts first and reports after (a report that fails cannot undo
//! the action), and if the thread ends while the watcher is alive (a panic
//! in the handler), a guard flips the watched signals back to their default
//! action (terminate) through a flag checked in signal context: a process
//! whose watcher died can still be stopped by a signal rather than only by
//! SIGKILL.
//!
//! SIGPIPE needs nothing: Rust programs ignore it and socket writes use
//! `MSG_NOSIGNAL`.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::Controller;

/// The signals watched, with their names.
const WATCHED: [(i32, &str); 3] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")];

/// One SIGINT, SIGTERM or SIGHUP, as the watcher thread sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalEvent {
    /// `SIGINT`, `SIGTERM` or `SIGHUP`.
    pub name: &'static str,
    /// How many of these signals came before this one (0 for the first).
    pub count: usize,
}

/// Watches SIGINT, SIGTERM and SIGHUP until dropped. If its handler panics, they
/// terminate the process from then on, as by default.
#[derive(Debug)]
pub struct SignalWatcher {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    aborted: Arc<AtomicBool>,
    /// The conditional default actions and the delivery counters, removed
    /// on drop (so a later watcher in the same process is not bypassed by
    /// this one's flag).
    fallbacks: Vec<signal_hook::SigId>,
}

/// Set when the watcher thread ends: the watched signals then take their
/// default action again (checked in signal context).
struct RestoreDefaultOnExit(Arc<AtomicBool>);

impl Drop for RestoreDefaultOnExit {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl SignalWatcher {
    /// Starts watching for a server: the first signal shuts `controller`'s
    /// server down gracefully, a second one aborts it
    /// ([`aborted`](SignalWatcher::aborted) then tells).
    ///
    /// Between [`Server::spawn`](super::Server::spawn) and this call a
    /// signal still takes its default action; a program that must never
    /// die by one uses [`start_before`](SignalWatcher::start_before).
    pub fn start(controller: Controller) -> io::Result<SignalWatcher> {
        Self::start_with(controller, || {})
    }

    /// [`start`](SignalWatcher::start), also calling `on_shutdown` on the
    /// watcher thread right after the first signal began the graceful
    /// shutdown (e.g. to tell a service manager `STOPPING=1`).
    pub fn start_with(
        controller: Controller,
        on_shutdown: impl FnMut() + Send + 'static,
    ) -> io::Result<SignalWatcher> {
        let (watcher, slot) = Self::start_before(on_shutdown)?;
        slot.attach(controller);
        Ok(watcher)
    }

    /// Starts watching before the server exists, so that no SIGINT or
    /// SIGTERM between starting the workers and watching can kill the
    /// process with the default action: signals that come before
    /// [`ServerSlot::attach`] wait there (the first two; more would only
    /// repeat "stop at once") and act when the server's controller is
    /// attached, exactly as [`start_with`](SignalWatcher::start_with) acts.
    pub fn start_before(
        mut on_shutdown: impl FnMut() + Send + 'static,
    ) -> io::Result<(SignalWatcher, ServerSlot)> {
        let aborted = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&aborted);
        let act: Handler = Box::new(move |controller, ev| {
            if ev.count == 0 {
                controller.shutdown();
                on_shutdown();
                tracing::info!(
                    signal = ev.name,
                    "shutting down gracefully (send it again to stop at once)"
                );
            } else {
                flag.store(true, Ordering::SeqCst);
                controller.abort();
                tracing::warn!(signal = ev.name, "second signal: stopping at once");
            }
        });
        let slot = ServerSlot(Arc::new(Mutex::new(SlotState {
            controller: None,
            pending: Vec::new(),
            act,
        })));
        let watched = slot.clone();
        let mut watcher = Self::spawn(move |ev| watched.deliver(ev))?;
        watcher.aborted = aborted;
        Ok((watcher, slot))
    }

    /// Starts watching: `on_signal` runs on the watcher thread for every
    /// SIGINT, SIGTERM or SIGHUP, in order. If it panics, the thread ends and the
    /// signals take their default action (terminate) from then on.
    pub fn spawn(
        mut on_signal: impl FnMut(SignalEvent) + Send + 'static,
    ) -> io::Result<SignalWatcher> {
        let watcher_gone = Arc::new(AtomicBool::new(false));
        let mut fallbacks = Vec::with_capacity(WATCHED.len());
        for (signal, _) in WATCHED {
            match signal_hook::flag::register_conditional_default(signal, Arc::clone(&watcher_gone))
            {
                Ok(id) => fallbacks.push(id),
                Err(e) => {
                    unregister(&fallbacks);
                    return Err(e);
                }
            }
        }
        // Deliveries of each watched signal, counted in signal context
        // before the iterator's own action runs (actions run in the order
        // they were registered), so the count is complete when the thread
        // wakes for a delivery.
        let deliveries: Arc<[AtomicUsize; WATCHED.len()]> = Arc::new(Default::default());
        for (i, (signal, _)) in WATCHED.iter().enumerate() {
            let counts = Arc::clone(&deliveries);
            let count = move || {
                counts[i].fetch_add(1, Ordering::SeqCst);
            };
            // SAFETY: the action is one atomic add, async-signal-safe: it
            // neither allocates nor locks, and cannot panic.
            #[allow(unsafe_code)]
            let registered = unsafe { signal_hook::low_level::register(*signal, count) };
            match registered {
                Ok(id) => fallbacks.push(id),
                Err(e) => {
                    unregister(&fallbacks);
                    return Err(e);
                }
            }
        }
        let mut signals = match Signals::new(WATCHED.map(|(signal, _)| signal)) {
            Ok(s) => s,
            Err(e) => {
                unregister(&fallbacks);
                return Err(e);
            }
        };
        let handle = signals.handle();
        let guard = RestoreDefaultOnExit(watcher_gone);
        let spawned = std::thread::Builder::new()
            .name("ricochet-signals".into())
            .spawn(move || {
                let _guard = guard;
                let mut count = 0;
                for signal in signals.forever() {
                    let Some(i) = WATCHED.iter().position(|(s, _)| *s == signal) else {
                        continue;
                    };
                    // 0 when an earlier wake-up already took this delivery.
                    for _ in 0..deliveries[i].swap(0, Ordering::SeqCst) {
                        on_signal(SignalEvent {
                            name: WATCHED[i].1,
                            count,
                        });
                        count += 1;
                    }
                }
            });
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                unregister(&fallbacks);
                return Err(e);
            }
        };
        Ok(SignalWatcher {
            handle,
            thread: Some(thread),
            aborted: Arc::new(AtomicBool::new(false)),
            fallbacks,
        })
    }

    /// Whether a second signal forced an immediate stop ([`start`](SignalWatcher::start) only).
    pub fn aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Whether the watcher thread is still running (false after a panic in
    /// the handler: the signals then terminate the process).
    pub fn is_watching(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

/// What a server's watcher does with a signal, given the server's controller.
type Handler = Box<dyn FnMut(&Controller, SignalEvent) + Send>;

/// Where the signals of a watcher started with
/// [`SignalWatcher::start_before`] find the server's controller, once
/// [`attach`](ServerSlot::attach)ed.
#[derive(Clone)]
pub struct ServerSlot(Arc<Mutex<SlotState>>);

struct SlotState {
    controller: Option<Controller>,
    /// Signals that came before the controller: at most two.
    pending: Vec<SignalEvent>,
    act: Handler,
}

impl fmt::Debug for ServerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.0);
        f.debug_struct("ServerSlot")
            .field("attached", &state.controller.is_some())
            .field("pending", &state.pending)
            .finish()
    }
}

impl ServerSlot {
    /// Hands the server's controller to the watcher; signals that came
    /// before act now, in order, on this thread.
    pub fn attach(&self, controller: Controller) {
        let mut state = lock(&self.0);
        for ev in std::mem::take(&mut state.pending) {
            (state.act)(&controller, ev);
        }
        state.controller = Some(controller);
    }

    /// Signals received and not yet acted on (before `attach`; at most 2).
    pub fn pending(&self) -> usize {
        lock(&self.0).pending.len()
    }

    /// On the watcher thread: act, or keep the signal until `attach`.
    fn deliver(&self, ev: SignalEvent) {
        let mut state = lock(&self.0);
        match state.controller.clone() {
            Some(controller) => (state.act)(&controller, ev),
            None if state.pending.len() < 2 => state.pending.push(ev),
            None => {}
        }
    }
}

/// The slot's lock; a panic in a handler (a failed log write) leaves the
/// state usable, so a poisoned lock is taken as it is.
fn lock(m: &Mutex<SlotState>) -> std::sync::MutexGuard<'_, SlotState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unregister(ids: &[signal_hook::SigId]) {
    for &id in ids {
        signal_hook::low_level::unregister(id);
    }
}

impl Drop for SignalWatcher {
    fn drop(&mut self) {
        unregister(&self.fallbacks);
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::serve::{IoBackend, Phase, Shared};

    /// Generous bound on a step that takes microseconds.
    const LIMIT: Duration = Duration::from_secs(20);

    fn controller() -> Controller {
        Controller {
            shared: Shared::for_tests(1, IoBackend::Auto, |_| {}),
        }
    }

    fn event(name: &'static str, count: usize) -> SignalEvent {
        SignalEvent { name, count }
    }

    /// A slot that records what it acts on, without a watcher.
    fn recording_slot() -> (ServerSlot, mpsc::Receiver<SignalEvent>) {
        let (tx, rx) = mpsc::channel();
        let act: Handler = Box::new(move |_, ev| tx.send(ev).unwrap());
        let slot = ServerSlot(Arc::new(Mutex::new(SlotState {
            controller: None,
            pending: Vec::new(),
            act,
        })));
        (slot, rx)
    }

    #[test]
    fn signals_before_attach_wait_two_at_most_and_act_in_order_on_attach() {
        let (slot, acted) = recording_slot();
        slot.deliver(event("SIGTERM", 0));
        assert_eq!(slot.pending(), 1);
        slot.deliver(event("SIGINT", 1));
        slot.deliver(event("SIGHUP", 2));
        assert_eq!(slot.pending(), 2);
        assert!(acted.try_recv().is_err(), "acted before attach");
        assert!(format!("{slot:?}").contains("attached: false"), "{slot:?}");
        slot.attach(controller());
        let on_attach: Vec<_> = acted.try_iter().collect();
        assert_eq!(on_attach, [event("SIGTERM", 0), event("SIGINT", 1)]);
        assert_eq!(slot.pending(), 0);
        assert!(format!("{slot:?}").contains("attached: true"), "{slot:?}");
        slot.deliver(event("SIGTERM", 3));
        assert_eq!(acted.try_recv(), Ok(event("SIGTERM", 3)));
    }

    #[test]
    fn first_signal_shuts_down_gracefully_and_a_second_stops_at_once() {
        let shutdowns = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&shutdowns);
        let (watcher, slot) = SignalWatcher::start_before(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let c = controller();
        slot.attach(c.clone());
        slot.deliver(event("SIGTERM", 0));
        assert_eq!(c.shared.phase(), Phase::Draining);
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
        assert!(!watcher.aborted());
        slot.deliver(event("SIGINT", 1));
        assert_eq!(c.shared.phase(), Phase::Abort);
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
        assert!(watcher.aborted());
    }

    #[test]
    fn watcher_is_watching_until_its_thread_ends() {
        let mut watcher = SignalWatcher::spawn(|_| {}).unwrap();
        assert!(watcher.is_watching());
        watcher.handle.close();
        watcher.thread.take().unwrap().join().unwrap();
        assert!(!watcher.is_watching());
    }

    const CHILD: &str = "RICOCHET_SIGNALS_UNIT_CHILD";

    /// In the child: a watcher whose handler dies, dropped, then another.
    fn next_watcher_child() {
        use signal_hook::low_level::raise;
        let (tx, rx) = mpsc::channel();
        let first = SignalWatcher::spawn(move |_| {
            tx.send(()).unwrap();
            panic!("the handler failed");
        })
        .unwrap();
        raise(SIGHUP).unwrap();
        rx.recv_timeout(LIMIT).expect("the first watcher's SIGHUP");
        let deadline = Instant::now() + LIMIT;
        while first.is_watching() {
            assert!(Instant::now() < deadline, "the first watcher lives on");
            std::thread::yield_now();
        }
        // Its signals now take the default action, until it is dropped.
        drop(first);
        let (tx, rx) = mpsc::channel();
        let _second = SignalWatcher::spawn(move |ev| tx.send(ev).unwrap()).unwrap();
        raise(SIGHUP).unwrap();
        let ev = rx.recv_timeout(LIMIT).expect("the second watcher's SIGHUP");
        println!("child: the second watcher saw {}", ev.name);
    }

    /// Signal dispositions are process-wide: the scenario runs in a child
    /// (this test binary, running only this test).
    #[test]
    fn dropped_watcher_whose_handler_died_leaves_signals_to_the_next_one() {
        let name = "serve::signals::tests::dropped_watcher_whose_handler_died_leaves_signals_to_the_next_one";
        if std::env::var_os(CHILD).is_some() {
            next_watcher_child();
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("RUST_BACKTRACE", "0")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
        assert!(
            stdout.contains("child: the second watcher saw SIGHUP"),
            "{stdout}"
        );
    }
}
