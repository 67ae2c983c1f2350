//! The worker on its own thread, as `run` spawns it: serving until an
//! abort, busy polling, and signals interrupting its wait.

use super::*;

/// A worker thread of [`spawn_worker`].
struct Running {
    /// Its listener's address.
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<()>,
    /// What `run` returned.
    result: std::sync::mpsc::Receiver<Result<(), String>>,
}

/// A worker thread named `name`, built by `prepare` on a new TCP listener
/// as `spawn` builds it, `tune` applied to its settings.
fn spawn_worker(name: &str, tune: impl FnOnce(&mut crate::serve::Settings)) -> Running {
    let group = bind_tcp(([127, 0, 0, 1], 0).into(), 64, AcceptStrategy::Shared, 1).expect("bind");
    let addr = group.addr;
    let socket = group.sockets.into_iter().next().expect("a socket");
    let mut prepared = prepare(vec![WorkerSockets {
        index: 0,
        listeners: vec![(Endpoint::Tcp(addr), StdListener::Tcp(socket))],
        udp: Vec::new(),
    }])
    .expect("prepare");
    let mut shared = Shared::for_tests(8, IoBackend::Epoll, tune);
    Arc::get_mut(&mut shared).expect("not shared yet").wakers =
        std::mem::take(&mut prepared.wakers);
    let starter = prepared.starters.pop().expect("a starter");
    let (tx, rx) = std::sync::mpsc::channel();
    let theirs = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(starter(theirs).map_err(|e| e.to_string()));
        })
        .expect("spawn");
    Running {
        addr,
        shared,
        thread,
        result: rx,
    }
}

/// Sends `ping` on a new connection to `addr` and reads its echo (10 s at most).
fn echo_once(addr: std::net::SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(StdDuration::from_secs(10)))
        .unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).expect("the echo");
    assert_eq!(&b, b"ping");
    c
}

/// Ends the worker thread (abort), checks `run` returned `Ok` and joins it.
fn abort_and_join(w: Running) {
    w.shared.advance(Phase::Abort);
    let result = w
        .result
        .recv_timeout(StdDuration::from_secs(10))
        .expect("the worker did not stop in 10 s");
    assert_eq!(result, Ok(()));
    w.thread.join().expect("the worker thread panicked");
}

#[test]
fn worker_thread_serves_until_the_server_aborts_then_closes_what_is_left() {
    let w = spawn_worker("ricochet-w-abort", |_| {});
    let mut c = echo_once(w.addr);
    abort_and_join(w);
    assert!(
        closed(&mut c),
        "connection left open after the worker stopped"
    );
}

#[test]
fn busy_polling_worker_serves_the_events_its_spin_finds() {
    // It spins on a non-blocking check before sleeping: what the check
    // finds must be served, not lost to the next check (edge-triggered,
    // nothing reports it again).
    let w = spawn_worker("ricochet-w-busy", |s| {
        s.busy_poll = StdDuration::from_millis(50);
    });
    for _ in 0..3 {
        echo_once(w.addr);
    }
    abort_and_join(w);
}

/// Whether the thread named `name` of this process sleeps now (state `S`
/// in `/proc`): where an idle worker sleeps is its `epoll_wait`.
#[cfg(target_os = "linux")]
fn thread_sleeps(name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    let (named, sleeping) = (format!("({name}) "), format!("({name}) S "));
    tasks.flatten().any(|task| {
        // `TID (NAME) STATE ...`; a thread gone meanwhile reads as empty.
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        stat.contains(&named) && stat.contains(&sleeping)
    })
}

/// A signal handled on the worker's thread interrupts its `epoll_wait`
/// (never restarted, `SA_RESTART` or not; the server's signal handlers run
/// on whichever thread the kernel picks): the worker waits again.
#[cfg(target_os = "linux")]
#[test]
#[allow(unsafe_code)]
fn signal_interrupting_the_workers_wait_does_not_stop_it() {
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    // A signal nothing else in this process uses, with a handler.
    let signal = libc::SIGRTMIN() + 8;
    let handled = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal, Arc::clone(&handled)).unwrap();
    let name = "ricochet-eintr"; // 15 bytes at most in `/proc`
    let w = spawn_worker(name, |_| {});
    let thread = &w.thread;
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    for i in 0..3 {
        // Once the worker sleeps in its wait (or is gone), a signal to it.
        while !thread_sleeps(name) && !thread.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "signal {i}: not asleep in 10 s"
            );
            std::thread::yield_now();
        }
        if thread.is_finished() {
            break;
        }
        handled.store(false, Ordering::SeqCst);
        // SAFETY: the thread is not joined yet, so its id is valid.
        unsafe { libc::pthread_kill(thread.as_pthread_t(), signal) };
        while !handled.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "signal {i}: not handled in 10 s"
            );
            std::thread::yield_now();
        }
    }
    assert!(
        !thread.is_finished(),
        "the worker stopped: {:?}",
        w.result.try_recv()
    );
    echo_once(w.addr);
    abort_and_join(w);
}
