//! The datagram loop: every datagram goes through the core's [`DatagramPolicy`].
//!
//! Datagrams are received into a buffer one byte longer than the largest
//! allowed, so an oversize datagram shows up as `max + 1` bytes and is
//! dropped, never truncated and echoed. UDP has no backpressure: when the
//! socket's send buffer is full (`WouldBlock`), the echo is dropped and
//! counted (`udp_send_dropped`), not queued.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;
use ricochet_core::{DatagramPolicy, DropReason, Instant, Verdict};

use super::stats::Counters;

/// Sources whose rate-limit state a policy tracks (least recently seen evicted first).
pub(crate) const SOURCES: usize = 1024;

/// One UDP socket and its policy.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    pub(crate) socket: UdpSocket,
    pub(crate) addr: SocketAddr,
    pub(crate) policy: Box<DatagramPolicy<SOURCES>>,
    /// The budget ran out with datagrams possibly left: serve again next turn.
    pub(crate) pending: bool,
}

/// Datagrams handled per wakeup per socket before yielding to other work.
const BUDGET: usize = 256;

impl UdpEndpoint {
    /// Receives and answers datagrams until `WouldBlock` or the budget is
    /// spent. `buf` must be at least `max_datagram + 1` bytes.
    pub(crate) fn serve(&mut self, now: Instant, buf: &mut [u8], counters: &mut Counters) {
        self.pending = false;
        for _ in 0..BUDGET {
            let (n, source) = match self.socket.recv_from(buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. an ICMP error for an earlier echo; the socket stays usable.
                    tracing::debug!(addr = %self.addr, error = %e, "udp receive error");
                    continue;
                }
            };
            counters.udp_received += 1;
            match self.policy.decide(now, source, n) {
                Verdict::Echo => match self.socket.send_to(&buf[..n], source) {
                    Ok(_) => {
                        counters.udp_echoed += 1;
                        counters.udp_echoed_bytes += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        counters.udp_send_dropped += 1;
                        tracing::debug!(%source, len = n, "datagram dropped: send buffer full");
                    }
                    Err(e) => {
                        counters.udp_send_errors += 1;
                        tracing::debug!(%source, len = n, error = %e, "datagram echo failed");
                    }
                },
                Verdict::Drop(reason) => {
                    match reason {
                        DropReason::Oversize { .. } => counters.udp_oversize += 1,
                        DropReason::LoopGuard { .. } => counters.udp_loop_guard += 1,
                        DropReason::RateLimited => counters.udp_rate_limited += 1,
                        _ => counters.udp_dropped_other += 1,
                    }
                    tracing::debug!(%source, len = n, %reason, "datagram dropped");
                }
            }
        }
        self.pending = true;
    }
}
