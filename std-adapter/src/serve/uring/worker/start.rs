//! Setting a worker up on its own thread: the ring, the stream receive
//! buffers (and whether receive bundles work here), the fixed-file table,
//! the UDP sockets' rings; then, once every worker is ready, running it and
//! tearing it down so that no buffer the kernel may still write is freed.

use std::any::Any;
use std::io;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use super::super::super::worker::{Guest, LoopSetup};
use super::super::super::{Go, Shared, SpawnError, WorkerSockets};
use super::super::accept::Listener;
use super::super::bufs::BufRing;
use super::super::udp::UdpEndpoint;
use super::super::{bundle, fixed, ring};
use super::{RX_BUF_SIZE, RX_BUFS, RX_CAP, STREAM_BGID, Worker};

/// Prepares one worker: its waker now, its ring on its own thread. It
/// hosts `guest`, the epoll worker of TLS listeners, if given.
pub(crate) fn starter(
    sockets: WorkerSockets,
    guest: Option<LoopSetup>,
    workers: usize,
    waker_fd: OwnedFd,
    ready: std::sync::mpsc::Sender<Result<(), SpawnError>>,
    go: Arc<Go>,
) -> super::super::super::Starter {
    Box::new(move |shared: Arc<Shared>| {
        let mut ring = match ring::build() {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(ring_error(&e, workers)));
                return Ok(());
            }
        };
        let served = serve(
            &mut ring,
            (sockets, guest),
            workers,
            waker_fd,
            &ready,
            &go,
            shared,
        );
        // The ring goes first: the buffers it used are freed after it.
        drop(ring);
        let (result, leftovers) = match served {
            Ok(served) => served,
            // The worker's buffers were leaked; the panic goes on now that
            // the ring is gone (and stops the other workers).
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Some(leftovers) = leftovers {
            // Requests the kernel never gave back may still write into these.
            std::mem::forget(leftovers);
        }
        result
    })
}

/// Buffers the kernel may still use if some request never came back: the
/// receive rings, the UDP endpoints' rings and headers, and the eventfd
/// read's buffer.
type Leftovers = (BufRing, Vec<UdpEndpoint>, Box<[u8; 8]>);

/// Why a worker could not set up its ring or the buffers registered with
/// it: an io_uring error, so that `--io auto` serves with epoll instead.
fn ring_error(e: &io::Error, workers: usize) -> SpawnError {
    SpawnError::IoUring {
        reason: super::super::super::backend::explain_worker_ring_error(e, workers),
    }
}

/// How a worker ended: its result and, if requests are still in flight,
/// the buffers that must outlive the ring; or a panic, to resume once the
/// ring is gone.
type Served = Result<(io::Result<()>, Option<Leftovers>), Box<dyn Any + Send>>;

/// Runs `body` on `worker` and gives both back; if `body` panics, leaks
/// `worker` (never drops it) and returns the panic. A worker that panics
/// leaves requests armed on its ring, and until the ring is gone the
/// kernel may write into the buffers the worker owns (the provided receive
/// buffers, the UDP rings and headers, the waker's buffer): freeing them
/// as the panic unwound would let a late receive write into freed memory.
/// What leaks (buffers, sockets) is the process's until it ends; the
/// panic stops the server anyway.
fn leak_on_panic<W, R>(
    mut worker: W,
    body: impl FnOnce(&mut W) -> R,
) -> Result<(W, R), Box<dyn Any + Send>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(&mut worker))) {
        Ok(r) => Ok((worker, r)),
        Err(panic) => {
            std::mem::forget(worker);
            Err(panic)
        }
    }
}

/// Sets up and runs a worker on `ring` (see [`Served`]).
/// Once set up it reports on `ready` and serves only when `go` says so
/// (every worker set up): until then nothing is armed on its sockets.
fn serve(
    ring: &mut io_uring::IoUring,
    (sockets, guest): (WorkerSockets, Option<LoopSetup>),
    workers: usize,
    waker_fd: OwnedFd,
    ready: &std::sync::mpsc::Sender<Result<(), SpawnError>>,
    go: &Go,
    shared: Arc<Shared>,
) -> Served {
    let mut bufs = match BufRing::new(RX_BUFS, RX_BUF_SIZE, STREAM_BGID) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(ring_error(&e, workers)));
            return Ok((Ok(()), None));
        }
    };
    if let Err(e) = bufs.register(&ring.submitter()) {
        let _ = ready.send(Err(ring_error(&e, workers)));
        return Ok((Ok(()), None));
    }
    let (bundles, check_left) = match bundle::check(ring, &mut bufs, RX_BUF_SIZE) {
        Ok(limit) => {
            tracing::debug!(
                cap = RX_CAP,
                %limit,
                "io_uring receive bundles on: TCP receives take up to the cap"
            );
            (Some(limit), false)
        }
        Err(why) if why.receive_left() => {
            // Serving goes on; only the ring's buffers are kept for good.
            tracing::warn!(%why, "io_uring receive bundles not used: one buffer per receive completion");
            (None, true)
        }
        Err(why) => {
            tracing::debug!(%why, "io_uring receive bundles not used: one buffer per receive completion");
            (None, false)
        }
    };
    // If the check's receive may still fill `bufs`, they are never freed
    // before the worker saw it end: on the returns before serving, not at all.
    let unready = |bufs: BufRing| {
        if check_left {
            std::mem::forget(bufs);
        }
    };
    let (mut submitter, sq, cq) = ring.split();
    // Optional: saves a descriptor lookup per enter.
    let _ = submitter.register_ring_fd();
    let fixed_slots = fixed::register_table(&submitter, shared.settings.max_connections, workers);
    let mut udp = Vec::new();
    let setup = (|| -> io::Result<()> {
        for (i, u) in sockets.udp.into_iter().enumerate() {
            let e = UdpEndpoint::new(u, i as u32, STREAM_BGID + 1 + i as u16)?;
            e.register(&submitter)?;
            udp.push(e);
        }
        Ok(())
    })();
    if let Err(e) = setup {
        let _ = ready.send(Err(ring_error(&e, workers)));
        unready(bufs);
        return Ok((Ok(()), None));
    }
    let _ = ready.send(Ok(()));
    if !go.wait() {
        // Another worker failed: nothing was armed (only the check's
        // receive may be in flight).
        unready(bufs);
        return Ok((Ok(()), None));
    }
    let listeners = sockets
        .listeners
        .into_iter()
        .map(|(endpoint, socket)| Listener::new(endpoint, socket))
        .collect();
    let guest = guest.map(|g| Guest::start(g, Arc::clone(&shared)));
    let mut worker = Worker::new(sockets.index, shared, (submitter, sq, cq), bufs, waker_fd);
    worker.guest = guest;
    worker.listeners = listeners;
    worker.udp = udp;
    worker.bundles = bundles;
    worker.fixed_slots = fixed_slots;
    if check_left {
        worker.count_check_receive();
    }
    // The drain too: it releases connections (their send buffers) while
    // requests may still be in flight.
    let (worker, (result, clean)) = leak_on_panic(worker, |w| {
        let result = w.run();
        w.release_all();
        w.publish();
        (result, w.drain_ring())
    })?;
    let Worker {
        bufs,
        udp,
        wake_buf,
        ..
    } = worker;
    Ok((result, (!clean).then_some((bufs, udp, wake_buf))))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use super::leak_on_panic;

    /// Counts its drops (stands for a worker and the buffers it owns).
    struct Owner<'a>(&'a AtomicUsize);

    impl Drop for Owner<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// Pins [`leak_on_panic`]: a worker whose run panics is never dropped
    /// (its buffers stay allocated while its ring may still write into
    /// them) and the panic comes back to be resumed; a run that returns
    /// hands the worker and its result back untouched.
    #[test]
    fn worker_panicking_in_its_run_is_leaked_and_one_returning_is_handed_back() {
        let drops = AtomicUsize::new(0);
        let panicked = leak_on_panic(Owner(&drops), |_| -> u8 {
            panic!("a worker's bug (expected by this test)")
        });
        let panic = panicked.err().expect("the panic comes back");
        assert_eq!(
            panic.downcast_ref::<&str>(),
            Some(&"a worker's bug (expected by this test)")
        );
        assert_eq!(drops.load(SeqCst), 0, "the panicking worker was dropped");
        let (owner, result) = leak_on_panic(Owner(&drops), |_| 7).expect("no panic");
        assert_eq!((result, drops.load(SeqCst)), (7, 0));
        drop(owner);
        assert_eq!(drops.load(SeqCst), 1);
    }
}
