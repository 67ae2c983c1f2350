//! Starting the workers: the sockets each one serves, the backend's
//! preparation of them, the threads, and (io_uring) the barrier that lets
//! no worker serve until every ring is set up, so that `--io auto` can
//! still fall back to epoll with copies of the same sockets.

use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, mpsc};

use mio::Waker;
use ricochet_core::{DatagramPolicy, PolicyConfig};

#[cfg(target_os = "linux")]
use super::uring;
use super::{
    Endpoint, IoBackend, Phase, ServerStats, Settings, Shared, SpawnError, TcpGroup, hash_seed,
    tls, udp, worker,
};

/// A running worker's thread.
type WorkerThread = std::thread::JoinHandle<io::Result<()>>;

/// Starts one worker per entry of `sockets` on backend `io`; beside
/// io_uring workers, worker `i` also hosts an epoll worker for `tls[i]`
/// (TLS listeners; empty on epoll, whose workers serve them among the
/// rest). Waits until each io_uring worker has set up its ring; on an
/// error no worker is left running and none has served (io_uring workers
/// wait for every ring before arming anything or starting their guests).
pub(super) fn launch(
    io: IoBackend,
    sockets: Vec<WorkerSockets>,
    tls: Vec<WorkerSockets>,
    settings: &Settings,
    stats: &Arc<ServerStats>,
) -> Result<(Arc<Shared>, Vec<WorkerThread>), SpawnError> {
    let workers = sockets.len();
    let (guests, guest_wakers) = worker::prepare_loops(tls)?;
    let prepared = match io {
        IoBackend::Uring => uring_prepare(sockets, guests)?,
        _ => worker::prepare(sockets)?,
    };
    let wakers = prepared.wakers.into_iter().chain(guest_wakers).collect();
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(Phase::Running as u8),
        stats: Arc::clone(stats),
        wakers,
        settings: settings.clone(),
        clock: crate::clock::Clock::new(),
        unix_files: Mutex::new(Vec::new()),
        go: prepared.ready.as_ref().map(|r| Arc::clone(&r.go)),
        io,
    });
    let go = shared.go.clone();
    let fail = |threads: Vec<WorkerThread>, e: SpawnError| {
        if let Some(go) = &go {
            go.decide(false);
        }
        shared.advance(Phase::Abort);
        for t in threads {
            let _ = t.join();
        }
        Err(e)
    };
    let spawn = |index: usize, start: Starter| {
        let shared2 = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("ricochet-w{index}"))
            .spawn(move || {
                let _guard = StopOthersOnPanic(Arc::clone(&shared2));
                start(shared2)
            })
            .map_err(SpawnError::Thread)
    };
    let mut threads = Vec::with_capacity(workers);
    for (index, start) in prepared.starters.into_iter().enumerate() {
        match spawn(index, start) {
            Ok(t) => threads.push(t),
            Err(e) => return fail(threads, e),
        }
    }
    if let Some(ready) = prepared.ready {
        // Each worker sets up its own ring (a single-issuer ring belongs
        // to the thread that created it) and reports here.
        for _ in 0..workers {
            let failed = match ready.rx.recv() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(SpawnError::EventLoop(io::Error::other(
                    "a worker stopped before its event loop was ready",
                ))),
            };
            if let Some(e) = failed {
                return fail(threads, e);
            }
        }
        ready.go.decide(true);
        // A worker that panicked while the others set up decided "no"
        // first (see `Shared::advance`): nothing serves, say so.
        if shared.phase() != Phase::Running {
            return fail(
                threads,
                SpawnError::EventLoop(io::Error::other(
                    "a worker stopped before the server started serving",
                )),
            );
        }
    }
    Ok((shared, threads))
}

/// Copies of the sockets (the same open sockets, new descriptors) with
/// policies of their own, for epoll workers should io_uring's fail to
/// set up.
fn clone_sockets(
    sockets: &[WorkerSockets],
    policy: PolicyConfig,
) -> io::Result<Vec<WorkerSockets>> {
    sockets
        .iter()
        .map(|w| {
            let listeners = w
                .listeners
                .iter()
                .map(|(endpoint, l)| {
                    let copy = match l {
                        StdListener::Tcp(s) => StdListener::Tcp(s.try_clone()?),
                        StdListener::Unix(s) => StdListener::Unix(s.try_clone()?),
                        StdListener::Tls(s, a) => StdListener::Tls(s.try_clone()?, Arc::clone(a)),
                    };
                    Ok((endpoint.clone(), copy))
                })
                .collect::<io::Result<_>>()?;
            let udp = w
                .udp
                .iter()
                .map(|u| {
                    Ok(UdpSetup {
                        socket: u.socket.try_clone()?,
                        addr: u.addr,
                        policy: Box::new(DatagramPolicy::with_hash_seed(policy, hash_seed())),
                        max_datagram: u.max_datagram,
                    })
                })
                .collect::<io::Result<_>>()?;
            Ok(WorkerSockets {
                index: w.index,
                listeners,
                udp,
            })
        })
        .collect()
}

/// Gives the TLS listeners (`tls`: one socket per worker each) to epoll
/// workers, rustls being driven by readiness: on epoll to the workers of
/// `sockets`, among the rest; beside io_uring to epoll loops of their own,
/// returned (as many as `sockets`, indexed after them: each has its own
/// connection table and stats slot, and is hosted by the io_uring worker
/// of the same rank, on its thread), so that plain TCP, UDP and Unix stay
/// on io_uring.
pub(super) fn assign_tls(
    io: IoBackend,
    sockets: &mut [WorkerSockets],
    tls: Vec<(TcpGroup, Arc<tls::Acceptor>)>,
) -> Vec<WorkerSockets> {
    let workers = sockets.len();
    let mut own: Vec<WorkerSockets> = if io == IoBackend::Uring && !tls.is_empty() {
        (0..workers)
            .map(|i| WorkerSockets {
                index: workers + i,
                listeners: Vec::new(),
                udp: Vec::new(),
            })
            .collect()
    } else {
        Vec::new()
    };
    for (group, acceptor) in tls {
        let serving = if own.is_empty() {
            &mut *sockets
        } else {
            &mut own[..]
        };
        for (worker, socket) in serving.iter_mut().zip(group.sockets) {
            worker.listeners.push((
                Endpoint::Tls(group.addr),
                StdListener::Tls(socket, Arc::clone(&acceptor)),
            ));
        }
    }
    own
}

/// Copies of `sockets` and of the TLS workers' `tls` ([`assign_tls`]) for
/// epoll workers should io_uring's fail to set up: on epoll one set of
/// workers serves every listener, so the TLS copies join the rest.
pub(super) fn fallback_sockets(
    sockets: &[WorkerSockets],
    tls: &[WorkerSockets],
    policy: PolicyConfig,
) -> io::Result<Vec<WorkerSockets>> {
    let mut all = clone_sockets(sockets, policy)?;
    for (w, t) in all.iter_mut().zip(clone_sockets(tls, policy)?) {
        w.listeners.extend(t.listeners);
    }
    Ok(all)
}

/// Puts a worker's sockets back in non-blocking mode (the io_uring
/// backend made them blocking; copies share that mode).
pub(super) fn set_nonblocking(w: &WorkerSockets) -> io::Result<()> {
    for (_, l) in &w.listeners {
        match l {
            StdListener::Tcp(s) | StdListener::Tls(s, _) => s.set_nonblocking(true)?,
            StdListener::Unix(s) => s.set_nonblocking(true)?,
        }
    }
    for u in &w.udp {
        u.socket.set_nonblocking(true)?;
    }
    Ok(())
}

/// The sockets one worker serves, before a backend takes them over.
#[derive(Debug)]
pub(crate) struct WorkerSockets {
    pub(crate) index: usize,
    pub(crate) listeners: Vec<(Endpoint, StdListener)>,
    pub(crate) udp: Vec<UdpSetup>,
}

/// A listening socket as bound, before a backend takes it over.
#[derive(Debug)]
pub(crate) enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(StdUnixListener),
    /// A TLS listener: served by epoll (mio) workers only.
    Tls(std::net::TcpListener, Arc<tls::Acceptor>),
}

/// A UDP socket and its policy, before a backend takes it over.
#[derive(Debug)]
pub(crate) struct UdpSetup {
    pub(crate) socket: StdUdpSocket,
    pub(crate) addr: SocketAddr,
    pub(crate) policy: Box<DatagramPolicy<{ udp::SOURCES }>>,
    pub(crate) max_datagram: usize,
}

/// A worker's body, run on its own thread.
pub(crate) type Starter = Box<dyn FnOnce(Arc<Shared>) -> io::Result<()> + Send>;

/// What a backend made of the sockets: one body per worker, their wakers,
/// and (io_uring) where each worker reports that its event loop is ready.
pub(crate) struct Prepared {
    pub(crate) starters: Vec<Starter>,
    pub(crate) wakers: Vec<Wake>,
    pub(crate) ready: Option<Ready>,
}

/// Where io_uring workers report that their rings are set up, and are told
/// whether to serve.
pub(crate) struct Ready {
    pub(crate) rx: mpsc::Receiver<Result<(), SpawnError>>,
    pub(crate) go: Arc<Go>,
}

/// Whether workers that have set up may serve: yes once every worker has,
/// no if one failed (then none has armed anything on its sockets).
#[derive(Debug, Default)]
pub(crate) struct Go {
    decided: Mutex<Option<bool>>,
    changed: std::sync::Condvar,
}

impl Go {
    /// Decides, once; later calls change nothing.
    pub(crate) fn decide(&self, go: bool) {
        let mut d = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        d.get_or_insert(go);
        self.changed.notify_all();
    }

    /// Waits for the decision.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn wait(&self) -> bool {
        let mut d = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(go) = *d {
                return go;
            }
            d = self.changed.wait(d).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Wakes one worker out of its wait (shutdown, abort).
#[derive(Debug)]
pub(crate) enum Wake {
    /// An epoll worker's mio waker.
    Mio(Waker),
    /// An io_uring worker's eventfd.
    #[cfg(target_os = "linux")]
    Uring(uring::Waker),
}

impl Wake {
    pub(crate) fn wake(&self) {
        match self {
            Wake::Mio(w) => {
                let _ = w.wake();
            }
            #[cfg(target_os = "linux")]
            Wake::Uring(w) => w.wake(),
        }
    }
}

#[cfg(target_os = "linux")]
fn uring_prepare(
    sockets: Vec<WorkerSockets>,
    guests: Vec<worker::LoopSetup>,
) -> Result<Prepared, SpawnError> {
    uring::prepare(sockets, guests)
}

#[cfg(not(target_os = "linux"))]
fn uring_prepare(
    sockets: Vec<WorkerSockets>,
    _guests: Vec<worker::LoopSetup>,
) -> Result<Prepared, SpawnError> {
    // `backend::choose` never picks io_uring here.
    worker::prepare(sockets)
}

/// Reports the phase on a worker panic so the others stop too.
struct StopOthersOnPanic(Arc<Shared>);

impl Drop for StopOthersOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.advance(Phase::Abort);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Bound on waiting for a thread in these tests.
    const WAIT: Duration = Duration::from_secs(10);

    /// What a worker waiting on `go` is told, from a thread of its own
    /// (bounded: `None` if no decision came).
    fn decision(go: &Arc<Go>) -> Option<bool> {
        let (tx, rx) = mpsc::channel();
        let go = Arc::clone(go);
        std::thread::spawn(move || tx.send(go.wait()));
        rx.recv_timeout(WAIT).ok()
    }

    /// Pins [`Go`]: workers waiting for the decision get it when it comes,
    /// "no" included (a worker failed: none may serve), and a later
    /// decision changes nothing.
    #[test]
    fn go_decided_against_tells_every_waiting_worker_not_to_serve() {
        let go = Arc::new(Go::default());
        let (tx, rx) = mpsc::channel();
        for _ in 0..2 {
            let go = Arc::clone(&go);
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(go.wait()));
        }
        go.decide(false);
        for _ in 0..2 {
            assert_eq!(rx.recv_timeout(WAIT), Ok(false), "a waiting worker");
        }
        go.decide(true);
        assert_eq!(decision(&go), Some(false), "the first decision stands");
        let yes = Arc::new(Go::default());
        yes.decide(true);
        assert_eq!(decision(&yes), Some(true));
    }

    /// Pins [`StopOthersOnPanic`]: a worker thread that panics moves the
    /// server to `Abort`, so the other workers stop and `join` reports it,
    /// instead of serving on with a worker gone; a worker that returns
    /// leaves the phase alone.
    #[test]
    fn worker_panic_moves_the_server_to_abort_and_a_return_does_not() {
        let shared = Shared::for_tests(8, IoBackend::Epoll, |_| {});
        let guarded = Arc::clone(&shared);
        let returned = std::thread::spawn(move || {
            let _guard = StopOthersOnPanic(guarded);
        })
        .join();
        assert!(returned.is_ok());
        assert_eq!(shared.phase(), Phase::Running);
        let guarded = Arc::clone(&shared);
        let panicked = std::thread::spawn(move || {
            let _guard = StopOthersOnPanic(guarded);
            panic!("a worker's bug (expected by this test)");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(shared.phase(), Phase::Abort);
    }
}
