//! Setting a worker up on its own thread: the ring, the stream receive
//! buffers (and whether receive bundles work here), the fixed-file table,
//! the UDP sockets' rings; then, once every worker is ready, running it and
//! tearing it down so that no buffer the kernel may still write is freed.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::super::super::{Go, Shared, SpawnError, WorkerSockets};
use super::super::accept::Listener;
use super::super::bufs::BufRing;
use super::super::udp::UdpEndpoint;
use super::super::{bundle, fixed, ring};
use super::{RX_BUF_SIZE, RX_BUFS, RX_CAP, STREAM_BGID, Worker};

/// Prepares one worker: its waker now, its ring on its own thread.
pub(crate) fn starter(
    sockets: WorkerSockets,
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
        let (result, leftovers) = serve(&mut ring, sockets, workers, waker_fd, &ready, &go, shared);
        // The ring goes first: the buffers it used are freed after it.
        drop(ring);
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

/// Sets up and runs a worker on `ring`; returns its result and, if
/// requests are still in flight, the buffers that must outlive the ring.
/// Once set up it reports on `ready` and serves only when `go` says so
/// (every worker set up): until then nothing is armed on its sockets.
fn serve(
    ring: &mut io_uring::IoUring,
    sockets: WorkerSockets,
    workers: usize,
    waker_fd: OwnedFd,
    ready: &std::sync::mpsc::Sender<Result<(), SpawnError>>,
    go: &Go,
    shared: Arc<Shared>,
) -> (io::Result<()>, Option<Leftovers>) {
    let mut bufs = match BufRing::new(RX_BUFS, RX_BUF_SIZE, STREAM_BGID) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(ring_error(&e, workers)));
            return (Ok(()), None);
        }
    };
    if let Err(e) = bufs.register(&ring.submitter()) {
        let _ = ready.send(Err(ring_error(&e, workers)));
        return (Ok(()), None);
    }
    let bundles = match bundle::check(ring, &mut bufs, RX_BUF_SIZE) {
        Ok(limit) => {
            tracing::debug!(
                cap = RX_CAP,
                %limit,
                "io_uring receive bundles on: TCP receives take up to the cap"
            );
            Some(limit)
        }
        Err(why) => {
            tracing::debug!(%why, "io_uring receive bundles not used: one buffer per receive completion");
            None
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
        return (Ok(()), None);
    }
    let _ = ready.send(Ok(()));
    if !go.wait() {
        // Another worker failed: nothing was armed, nothing is in flight.
        return (Ok(()), None);
    }
    let listeners = sockets
        .listeners
        .into_iter()
        .map(|(endpoint, socket)| Listener::new(endpoint, socket))
        .collect();
    let mut worker = Worker::new(sockets.index, shared, (submitter, sq, cq), bufs, waker_fd);
    worker.listeners = listeners;
    worker.udp = udp;
    worker.bundles = bundles;
    worker.fixed_slots = fixed_slots;
    let result = worker.run();
    worker.release_all();
    worker.publish();
    let clean = worker.drain_ring();
    let Worker {
        bufs,
        udp,
        wake_buf,
        ..
    } = worker;
    (result, (!clean).then_some((bufs, udp, wake_buf)))
}
