//! The datagram loop: every datagram goes through the core's
//! [`DatagramPolicy`] and its fate is counted in the core's
//! [`DatagramCounters`].
//!
//! On Linux, datagrams are received and echoed in batches (`recvmmsg`,
//! `sendmmsg`, see `mmsg.rs`) and each one's real length comes from
//! `MSG_TRUNC`, so an oversize datagram is dropped and logged with its true
//! size, never truncated and echoed. A batch that comes back short means the
//! queue is empty: no extra receive just to learn `EAGAIN`. Echoes leave in
//! the order their datagrams arrived. UDP has no backpressure: when the send
//! buffer is full (`WouldBlock`), the echo is dropped and counted
//! ([`DropReason::SendFull`]), not queued. An echo the kernel refuses on
//! its own (a subnet-broadcast source, a firewall's reject, no route back)
//! is dropped alone ([`DropReason::SendFailed`]); the rest of its batch
//! still leaves.
//!
//! On Linux, each datagram's destination address comes with it
//! (`IP_PKTINFO`/`IPV6_PKTINFO`, see `pktinfo.rs`), so on a socket bound to
//! a wildcard address the echo leaves from the address the client sent to,
//! not from whichever one routing picks. A datagram sent to, or from, a
//! multicast or broadcast address (limited or subnet-directed) is not
//! answered ([`DropReason::NotUnicast`]).
//!
//! Elsewhere, one datagram per call into a buffer one byte longer than the
//! largest allowed, so an oversize datagram shows up as `max + 1` bytes;
//! the kernel picks the echo's source address, and only the source address
//! is checked for being unicast.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;
use ricochet_core::{DatagramCounters, DatagramPolicy, DropReason, Instant, Verdict};

/// Asks the kernel to report each datagram's destination address on
/// `socket` if it is bound to a wildcard address (Linux; elsewhere
/// nothing), so that its echo can leave from that address and a datagram
/// sent to a group can be told apart.
/// Also asks for the socket's count of datagrams its full receive queue
/// dropped, which comes with them (Linux, `SO_RXQ_OVFL`).
pub(crate) fn report_destinations(socket: &std::net::UdpSocket) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // A diagnostic: a socket that refuses it is still served.
        if let Err(e) = pktinfo::enable_drop_count(socket) {
            tracing::debug!(error = %e, "SO_RXQ_OVFL refused: receive-queue drops go uncounted");
        }
        pktinfo::enable(socket)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = socket;
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod mmsg;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) mod pktinfo;
#[cfg(test)]
mod tests;

/// Sources whose rate-limit state a policy tracks (least recently seen evicted first).
pub(crate) const SOURCES: usize = 1024;

/// Datagrams handled per wakeup per socket before yielding to other work.
const BUDGET: usize = 256;

/// One UDP socket, its policy and its receive buffers.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    pub(crate) socket: UdpSocket,
    pub(crate) addr: SocketAddr,
    pub(crate) policy: Box<DatagramPolicy<SOURCES>>,
    /// The budget ran out with datagrams possibly left: serve again next turn.
    pub(crate) pending: bool,
    /// Receive system calls made (tests check that none is wasted).
    pub(crate) receive_calls: u64,
    /// The last drop, for tests and diagnostics.
    pub(crate) last_drop: Option<DropReason>,
    /// Datagrams the kernel dropped for a full receive queue (Linux).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) queue_drops: pktinfo::QueueDrops,
    io: Buffers,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
type Buffers = mmsg::Batch;

/// One buffer of `max + 1` bytes.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[derive(Debug)]
struct Buffers(Box<[u8]>);

impl UdpEndpoint {
    /// An endpoint for datagrams of up to `max_datagram` bytes.
    pub(crate) fn new(
        socket: UdpSocket,
        addr: SocketAddr,
        policy: Box<DatagramPolicy<SOURCES>>,
        max_datagram: usize,
    ) -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let io = mmsg::Batch::new(max_datagram);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let io = Buffers(vec![0u8; max_datagram + 1].into_boxed_slice());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let queue_drops = pktinfo::QueueDrops::from_now(&socket);
        UdpEndpoint {
            socket,
            addr,
            policy,
            pending: false,
            receive_calls: 0,
            last_drop: None,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            queue_drops,
            io,
        }
    }

    /// Datagrams the kernel dropped for a full receive queue since the
    /// last call (0 where the kernel does not say).
    pub(crate) fn take_queue_drops(&mut self) -> u64 {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return self.queue_drops.take();
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        0
    }

    fn drop_one(
        &mut self,
        counters: &mut DatagramCounters,
        source: SocketAddr,
        len: usize,
        reason: DropReason,
    ) {
        counters.dropped(reason);
        self.last_drop = Some(reason);
        tracing::debug!(source = %super::events::shown(source), len, %reason, "datagram dropped");
    }

    /// Receives and answers datagrams until the queue is empty or the
    /// budget is spent.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn serve(&mut self, now: Instant, counters: &mut DatagramCounters) {
        self.pending = false;
        let mut handled = 0;
        let mut echo = [0usize; mmsg::BATCH];
        while handled < BUDGET {
            self.receive_calls += 1;
            let n = match self.io.recv(&self.socket) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. an ICMP error for an earlier echo; the socket stays
                    // usable. Counted against the budget: an error that
                    // persists must not hold the worker here.
                    tracing::debug!(addr = %self.addr, error = %e, "udp receive error");
                    handled += 1;
                    continue;
                }
            };
            let mut echoes = 0;
            for i in 0..n {
                self.queue_drops.note(self.io.control(i));
                let got = self.io.received[i];
                let Some(source) = got.source else { continue };
                let verdict = if pktinfo::unicast(source, got.local) {
                    self.policy.decide(now, source, got.len)
                } else {
                    Verdict::Drop(DropReason::NotUnicast)
                };
                match verdict {
                    Verdict::Echo => {
                        echo[echoes] = i;
                        echoes += 1;
                    }
                    Verdict::Drop(reason) => self.drop_one(counters, source, got.len, reason),
                }
            }
            let (addr, last_drop) = (self.addr, &mut self.last_drop);
            self.io
                .send(&self.socket, &echo[..echoes], |got, result| match result {
                    Ok(()) => counters.echoed(got.len),
                    Err(e) => {
                        let reason = if e.kind() == io::ErrorKind::WouldBlock {
                            DropReason::SendFull
                        } else {
                            DropReason::SendFailed
                        };
                        counters.dropped(reason);
                        *last_drop = Some(reason);
                        tracing::debug!(%addr, source = ?got.source, len = got.len, error = %e, "datagram echo failed");
                    }
                });
            handled += n;
            if n < mmsg::BATCH {
                return;
            }
        }
        self.pending = true;
    }

    /// Receives and answers datagrams until `WouldBlock` or the budget is spent.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn serve(&mut self, now: Instant, counters: &mut DatagramCounters) {
        self.pending = false;
        for _ in 0..BUDGET {
            self.receive_calls += 1;
            let (n, source) = match self.socket.recv_from(&mut self.io.0) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(addr = %self.addr, error = %e, "udp receive error");
                    continue;
                }
            };
            let verdict = if ricochet_core::datagram::is_unicast_address(source.ip()) {
                self.policy.decide(now, source, n)
            } else {
                Verdict::Drop(DropReason::NotUnicast)
            };
            match verdict {
                Verdict::Echo => match self.socket.send_to(&self.io.0[..n], source) {
                    Ok(_) => counters.echoed(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.drop_one(counters, source, n, DropReason::SendFull)
                    }
                    Err(_) => self.drop_one(counters, source, n, DropReason::SendFailed),
                },
                Verdict::Drop(reason) => self.drop_one(counters, source, n, reason),
            }
        }
        self.pending = true;
    }
}
