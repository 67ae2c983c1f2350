//! The io_uring backend of `ricochet serve` (Linux only; see
//! [`crate::serve::IoBackend`]).
//!
//! Same sockets, same core pump, same counters as the epoll backend; what
//! differs is how bytes reach the pump. Each worker owns one ring
//! (`SINGLE_ISSUER | DEFER_TASKRUN` where the kernel has them), created on
//! its own thread:
//!
//! - **Accepting**: one multishot accept per listener; out of descriptors,
//!   the listener pauses 100 ms, doubling up to 1 s, as on epoll. Each
//!   connection's socket goes into a slot of the ring's registered file
//!   table (`fixed.rs`): its requests skip the descriptor lookup.
//! - **Receiving**: one multishot receive per connection into a shared
//!   ring of provided 4 KiB buffers (`bufs.rs`): nothing to resubmit and no
//!   readiness to re-arm per message, and an idle connection holds no
//!   buffer. Where the kernel allows (checked per ring, `bundle.rs`), each
//!   completion takes a bundle of buffers, up to 64 KiB, in one pass.
//! - **Sending** (`conn/output.rs`): received buffers are lent to the send
//!   as they are when the session passes bytes through unchanged, and what
//!   the session writes goes to a per-connection send buffer taken from a
//!   pool (held only while there is echo in flight); one `send` or
//!   `sendmsg` per connection for everything queued, submitted after each
//!   batch of completions; `MSG_WAITALL` makes the kernel finish short
//!   sends, and any that still comes back short is resubmitted from where
//!   it stopped.
//! - **Batching**: one `io_uring_enter` per loop turn both submits what the
//!   last batch queued and waits for the next; its timeout is the earliest
//!   deadline of the timer heap (no timer per connection).
//! - **UDP**: multishot `recvmsg` into provided buffers, echoes sent from
//!   the same buffer (`udp.rs`).
//! - **TLS**: rustls is driven by readiness, so TLS listeners keep an
//!   epoll (mio) loop; each worker hosts one, watching its epoll descriptor
//!   with a multishot poll and running its turns on the worker's thread
//!   (`worker/host.rs`).
//!
//! Before spawning, [`probe`] creates a ring and checks the operations, so
//! `--io auto` can fall back to epoll with the reason.

mod accept;
mod bufs;
mod bundle;
mod conn;
mod fixed;
mod ring;
mod stream;
mod udp;
mod worker;

pub(crate) use ring::{Waker, probe};

use super::worker::LoopSetup;
use super::{Go, Prepared, Ready, SpawnError, StdListener, Wake, WorkerSockets};

/// Hands each worker's sockets to an io_uring worker: a waker each now,
/// the rings on the workers' own threads (they report through `ready`).
/// Worker `i` hosts `guests[i]` (the epoll worker of TLS listeners; see
/// [`super::worker::Guest`]), if there is one.
pub(crate) fn prepare(
    sockets: Vec<WorkerSockets>,
    guests: Vec<LoopSetup>,
) -> Result<Prepared, SpawnError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let go = std::sync::Arc::new(Go::default());
    let mut starters = Vec::with_capacity(sockets.len());
    let mut wakers = Vec::with_capacity(sockets.len());
    let workers = sockets.len();
    let mut guests = guests.into_iter();
    for w in sockets {
        // Blocking: the ring waits for connections itself (a non-blocking
        // socket would be polled by the kernel all the same, but stay uniform).
        for (_, l) in &w.listeners {
            let r = match l {
                StdListener::Tcp(s) => s.set_nonblocking(false),
                StdListener::Unix(s) => s.set_nonblocking(false),
                // Never given to io_uring workers themselves: they host an
                // epoll loop for them (`worker/host.rs`).
                StdListener::Tls(..) => Err(std::io::Error::other(
                    "a TLS listener reached an io_uring worker",
                )),
            };
            r.map_err(SpawnError::Register)?;
        }
        let (waker, worker_side) = Waker::new().map_err(SpawnError::EventLoop)?;
        wakers.push(Wake::Uring(waker));
        starters.push(worker::starter(
            w,
            guests.next(),
            workers,
            worker_side,
            tx.clone(),
            std::sync::Arc::clone(&go),
        ));
    }
    Ok(Prepared {
        starters,
        wakers,
        ready: Some(Ready { rx, go }),
    })
}
