//! Hosting an epoll worker (the TLS listeners' event loop, see
//! [`Guest`](crate::serve::worker::Guest)): the ring watches its epoll
//! descriptor with a multishot poll, and the worker runs the guest's turn
//! when the descriptor became readable or the guest's deadline came
//! (`enter` waits no longer than that deadline). The worker ends only once
//! its guest is done.

use std::io;

use io_uring::opcode;
use io_uring::types::Fd;

use super::super::ring::{Op, user_data};
use super::Worker;

impl Worker<'_> {
    /// Runs a turn of the hosted epoll worker if its descriptor became
    /// readable or its deadline came; once it is done, finishes it and
    /// stops watching its descriptor.
    ///
    /// If its event loop fails (`epoll_wait`, or the poll on its
    /// descriptor), only the guest ends, as an epoll worker whose
    /// `epoll_wait` fails does: its connections are reset and its share of
    /// the TLS listeners closes (the kernel then gives new TLS connections
    /// to the other workers' shares), logged as an error; this worker's
    /// own listeners and connections go on.
    pub(super) fn turn_guest(&mut self) {
        let failed = match (self.guest_error.take(), &mut self.guest) {
            (_, None) => return,
            (Some(e), Some(_)) => Some(e),
            (None, Some(guest)) => {
                let due = std::mem::take(&mut self.guest_due);
                if !due && !guest.timeout().is_some_and(|t| t.is_zero()) {
                    return;
                }
                match guest.turn() {
                    Ok(true) => {
                        self.arm_guest();
                        return;
                    }
                    Ok(false) => None,
                    Err(e) => Some(e),
                }
            }
        };
        if let Some(error) = failed {
            tracing::error!(
                worker = self.index,
                %error,
                "the TLS event loop this worker hosts failed: its TLS connections are reset \
                 and its share of the TLS listeners closed; the other workers go on serving"
            );
        }
        self.finish_guest();
    }

    /// Finishes the hosted epoll worker (its sessions still echoing are
    /// reset) and cancels the poll on its descriptor.
    pub(super) fn finish_guest(&mut self) {
        let Some(guest) = self.guest.take() else {
            return;
        };
        guest.finish();
        if self.guest_armed {
            let sqe = opcode::AsyncCancel::new(user_data(Op::Guest, 0, 0))
                .build()
                .user_data(user_data(Op::Cancel, 0, 0));
            self.push(&sqe);
        }
    }

    /// Watches the hosted epoll worker's descriptor (if any, and not yet).
    pub(super) fn arm_guest(&mut self) {
        let Some(guest) = &self.guest else {
            return;
        };
        if self.guest_armed {
            return;
        }
        self.guest_armed = true;
        let sqe = opcode::PollAdd::new(Fd(guest.fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(Op::Guest, 0, 0));
        self.push(&sqe);
    }

    /// A completion of the poll on the guest's descriptor (`res`: its
    /// events, or an error): due for a turn; re-armed at that turn if this
    /// was the poll's last completion. A failure other than a cancel ends
    /// the guest at that turn (see [`Worker::turn_guest`]).
    pub(super) fn on_guest(&mut self, res: i32, last: bool) {
        if last {
            self.guest_armed = false;
        }
        if res < 0 && res != -libc::ECANCELED && self.guest.is_some() {
            self.guest_error
                .get_or_insert(io::Error::from_raw_os_error(-res));
        }
        self.guest_due = true;
    }
}
