//! UDP on the ring: one multishot `recvmsg` per socket into its own ring
//! of provided buffers, each datagram ruled on by the core's
//! [`DatagramPolicy`], each echo a `sendmsg` straight from the buffer it
//! arrived in (no copy), which goes back to the ring when the send completes.
//!
//! Never truncated: the buffers hold `max_datagram + 1` bytes of payload and
//! the receive asks for `MSG_TRUNC`, so an oversize datagram is seen with its
//! real length and dropped. Never reordered: echoes are submitted in arrival
//! order with `MSG_DONTWAIT`, so each one completes (or fails) when it is
//! issued, in order, instead of waiting for room; a full send buffer drops
//! the echo and counts it ([`DropReason::SendFull`]), as on epoll.
//!
//! Each datagram arrives with its destination address (`IP_PKTINFO` /
//! `IPV6_PKTINFO` control data beside the name in the buffer) and its echo
//! leaves from that address; one sent to, or from, a multicast or broadcast
//! address is dropped ([`DropReason::NotUnicast`]), as on epoll.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use io_uring::squeue::Entry as Sqe;
use io_uring::types::{Fd, RecvMsgOut};
use io_uring::{Submitter, cqueue, opcode};
use ricochet_core::{DatagramCounters, DatagramPolicy, DropReason, Instant, Verdict};

use super::super::UdpSetup;
use super::super::udp::SOURCES;
use super::super::udp::pktinfo::{self, Control, RECV_SPACE, SEND_SPACE};
use super::bufs::BufRing;
use super::ring::{Op, user_data};

/// Bytes of the header the kernel writes before each datagram.
const OUT_HEADER: usize = 16;
/// Bytes reserved for the source address.
const NAME_LEN: usize = size_of::<libc::sockaddr_storage>();
/// Where the payload starts in a buffer: after the header, the name and
/// the control data.
const PAYLOAD_AT: usize = OUT_HEADER + NAME_LEN + RECV_SPACE;
/// Most buffer memory per UDP socket.
const RING_BYTES: usize = 8 << 20;

/// An echo in flight: its header, pointing into the buffer it arrived in,
/// and its control data (the source address it leaves from).
struct Echo {
    hdr: libc::msghdr,
    iov: libc::iovec,
    control: Control<SEND_SPACE>,
    len: usize,
}

/// One UDP socket on the ring.
pub(crate) struct UdpEndpoint {
    /// Closed (`None`) once stopped with nothing in flight on it.
    socket: Option<UdpSocket>,
    addr: SocketAddr,
    policy: Box<DatagramPolicy<SOURCES>>,
    index: u32,
    ring: BufRing,
    /// The multishot recvmsg's template (only the name and control lengths count).
    hdr: Box<libc::msghdr>,
    echoes: Box<[Echo]>,
    armed: bool,
    stopped: bool,
    /// Echoes submitted whose completion has not come back.
    sending: usize,
    /// Datagrams the kernel dropped for a full receive queue.
    queue_drops: pktinfo::QueueDrops,
}

impl std::fmt::Debug for UdpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpEndpoint")
            .field("addr", &self.addr)
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

#[allow(unsafe_code)]
impl UdpEndpoint {
    /// The endpoint of `setup`, UDP socket number `index`, buffers in group `bgid`.
    pub(crate) fn new(setup: UdpSetup, index: u32, bgid: u16) -> std::io::Result<Self> {
        // Blocking: the ring waits for datagrams itself.
        setup.socket.set_nonblocking(false)?;
        let size = PAYLOAD_AT + setup.max_datagram + 1;
        let fit = (RING_BYTES / size).clamp(16, 512);
        let count = 1u16 << (usize::BITS - 1 - fit.leading_zeros());
        let ring = BufRing::new(count, size, bgid)?;
        // SAFETY: all-zero is a valid `msghdr` and `iovec` (null pointers, zero lengths).
        let zero_hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        let mut hdr = Box::new(zero_hdr);
        hdr.msg_namelen = NAME_LEN as libc::socklen_t;
        hdr.msg_controllen = RECV_SPACE as _;
        let echoes = (0..count)
            .map(|_| Echo {
                hdr: zero_hdr,
                iov: zero_iov,
                control: Control::ZERO,
                len: 0,
            })
            .collect();
        let queue_drops = pktinfo::QueueDrops::from_now(&setup.socket);
        Ok(UdpEndpoint {
            socket: Some(setup.socket),
            addr: setup.addr,
            policy: setup.policy,
            index,
            ring,
            hdr,
            echoes,
            armed: false,
            stopped: false,
            sending: 0,
            queue_drops,
        })
    }

    /// Datagrams the kernel dropped for a full receive queue since the last call.
    pub(crate) fn take_queue_drops(&mut self) -> u64 {
        self.queue_drops.take()
    }

    /// Registers the buffer ring.
    pub(crate) fn register(&self, submitter: &Submitter<'_>) -> std::io::Result<()> {
        self.ring.register(submitter)
    }

    /// Makes recycled buffers visible to the kernel.
    pub(crate) fn publish(&mut self) {
        self.ring.publish();
    }

    /// The multishot receive to submit, if it is not running and can take a buffer.
    pub(crate) fn arm(&mut self) -> Option<Sqe> {
        let fd = self.socket.as_ref()?.as_raw_fd();
        if self.armed || self.stopped || self.ring.available() == 0 {
            return None;
        }
        self.armed = true;
        Some(
            opcode::RecvMsgMulti::new(Fd(fd), &raw const *self.hdr, self.ring.bgid())
                .flags(libc::MSG_TRUNC as u32)
                .build()
                .user_data(user_data(Op::UdpRecv, self.index, 0)),
        )
    }

    /// Stops receiving (shutdown): the cancel to submit, if a receive runs.
    /// The socket closes once nothing is in flight on it (at once if
    /// nothing is), as the epoll worker closes its UDP sockets: from then
    /// on the port is closed, and nothing waits unread in its queue.
    pub(crate) fn stop(&mut self) -> Option<Sqe> {
        self.stopped = true;
        self.close_if_idle();
        self.armed.then(|| {
            opcode::AsyncCancel::new(user_data(Op::UdpRecv, self.index, 0))
                .build()
                .user_data(user_data(Op::Cancel, 0, 0))
        })
    }

    /// A receive completion: the echo to submit, if the policy allows it.
    pub(crate) fn on_recv(
        &mut self,
        res: i32,
        flags: u32,
        last: bool,
        now: Instant,
        counters: &mut DatagramCounters,
    ) -> Option<Sqe> {
        if last {
            self.armed = false;
        }
        let echo = self.echo_of(res, flags, now, counters);
        self.close_if_idle();
        echo
    }

    /// Closes the socket if stopped with nothing in flight on it.
    fn close_if_idle(&mut self) {
        if self.stopped && !self.armed && self.sending == 0 {
            self.socket = None;
        }
    }

    fn echo_of(
        &mut self,
        res: i32,
        flags: u32,
        now: Instant,
        counters: &mut DatagramCounters,
    ) -> Option<Sqe> {
        let bid = cqueue::buffer_select(flags)?;
        self.ring.taken();
        if res < 0 {
            self.ring.recycle(bid);
            return None;
        }
        let buf = self.ring.filled(bid, res as usize);
        let Ok(out) = RecvMsgOut::parse(buf, &self.hdr) else {
            self.ring.recycle(bid);
            return None;
        };
        self.queue_drops.note(out.control_data());
        let payload = out.payload_data().len();
        let len = (out.incoming_payload_len() as usize).max(payload);
        let name_len = (out.incoming_name_len() as usize).min(NAME_LEN);
        let Some(source) = sockaddr(out.name_data()) else {
            self.ring.recycle(bid);
            return None;
        };
        let local = pktinfo::parse(out.control_data());
        // A truncated datagram reports its real length (or at least
        // `max_datagram + 1`, the buffer's room): the policy drops it as
        // oversize, so it is never echoed cut short.
        let verdict = if pktinfo::unicast(source, local) {
            self.policy.decide(now, source, len)
        } else {
            Verdict::Drop(DropReason::NotUnicast)
        };
        match verdict {
            Verdict::Echo => {
                let Some(socket) = &self.socket else {
                    // Cannot happen: the socket stays open while a receive runs.
                    self.ring.recycle(bid);
                    return None;
                };
                let fd = socket.as_raw_fd();
                self.sending += 1;
                let echo = &mut self.echoes[usize::from(bid) % self.echoes.len()];
                echo.iov = libc::iovec {
                    iov_base: self.ring.ptr(bid, PAYLOAD_AT).cast(),
                    iov_len: payload,
                };
                echo.len = payload;
                echo.hdr.msg_name = self.ring.ptr(bid, OUT_HEADER).cast();
                echo.hdr.msg_namelen = name_len as libc::socklen_t;
                echo.hdr.msg_iov = &raw mut echo.iov;
                echo.hdr.msg_iovlen = 1;
                let control_len = match local {
                    Some(local) => pktinfo::build(local, &mut echo.control.0),
                    None => 0,
                };
                echo.hdr.msg_control = if control_len == 0 {
                    std::ptr::null_mut()
                } else {
                    (&raw mut echo.control).cast()
                };
                echo.hdr.msg_controllen = control_len as _;
                Some(
                    opcode::SendMsg::new(Fd(fd), &raw const echo.hdr)
                        .flags((libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32)
                        .build()
                        .user_data(user_data(Op::UdpSend, self.index, u32::from(bid))),
                )
            }
            Verdict::Drop(reason) => {
                self.ring.recycle(bid);
                counters.dropped(reason);
                tracing::debug!(source = %crate::serve::events::shown(source), len, %reason, "datagram dropped");
                None
            }
        }
    }

    /// An echo of buffer `bid` completed with `res`.
    pub(crate) fn on_sent(&mut self, bid: u16, res: i32, counters: &mut DatagramCounters) {
        let len = self.echoes[usize::from(bid) % self.echoes.len()].len;
        if res >= 0 {
            counters.echoed(len);
        } else {
            let errno = -res;
            let reason = if matches!(errno, libc::EAGAIN | libc::ENOBUFS) {
                DropReason::SendFull
            } else {
                DropReason::SendFailed
            };
            counters.dropped(reason);
            tracing::debug!(addr = %self.addr, len, %reason, "datagram echo failed");
        }
        self.ring.recycle(bid);
        self.sending = self.sending.saturating_sub(1);
        self.close_if_idle();
    }
}

/// The address in a `sockaddr` the kernel wrote (IPv4 or IPv6 only).
fn sockaddr(raw: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(raw.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(raw.get(2..4)?.try_into().ok()?);
    if family == libc::AF_INET {
        let ip: [u8; 4] = raw.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 {
        let flow = u32::from_ne_bytes(raw.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = raw.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(raw.get(24..28)?.try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use ricochet_core::PolicyConfig;

    use super::*;

    /// An endpoint on a fresh loopback socket, its ring full (not registered:
    /// these tests hand it completions themselves).
    fn endpoint() -> UdpEndpoint {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let setup = UdpSetup {
            addr: socket.local_addr().unwrap(),
            socket,
            policy: Box::new(DatagramPolicy::new(PolicyConfig::DEFAULT)),
            max_datagram: PolicyConfig::DEFAULT.max_datagram,
        };
        UdpEndpoint::new(setup, 0, 0).unwrap()
    }

    const T0: Instant = Instant::from_millis(1_000);

    /// The multishot receive ends without a stop when the ring runs dry
    /// (`-ENOBUFS`, no buffer, no `IORING_CQE_F_MORE`). The socket stays
    /// open and the receive is armed again; only a stop, once nothing is
    /// in flight, closes it. (Closing on any ended receive with nothing
    /// sending would take the port down the first time the ring ran dry.)
    #[test]
    fn receive_ended_for_want_of_buffers_is_armed_again_and_only_a_stop_closes() {
        let mut counters = DatagramCounters::default();
        let mut u = endpoint();
        assert!(u.arm().is_some(), "armed at first");
        assert!(u.arm().is_none(), "one multishot receive at a time");
        assert!(
            u.on_recv(-libc::ENOBUFS, 0, true, T0, &mut counters)
                .is_none()
        );
        assert!(u.socket.is_some(), "the port stays open");
        assert!(u.arm().is_some(), "the receive is armed again");

        let cancel = u.stop().expect("a cancel for the running receive");
        assert_eq!(cancel.get_user_data(), user_data(Op::Cancel, 0, 0));
        assert!(u.socket.is_some(), "open while the receive is in flight");
        assert!(
            u.on_recv(-libc::ECANCELED, 0, true, T0, &mut counters)
                .is_none()
        );
        assert!(u.socket.is_none(), "closed once nothing is in flight");
        assert!(u.arm().is_none(), "never armed again after a stop");
        assert_eq!(counters, DatagramCounters::default(), "nothing counted");
    }

    /// Echo `bid` in flight, `len` bytes, as a receive that passed the
    /// policy leaves it: its buffer taken from the ring, one send counted.
    fn in_flight(u: &mut UdpEndpoint, bid: u16, len: usize) {
        u.ring.taken();
        u.sending += 1;
        u.echoes[usize::from(bid)].len = len;
    }

    /// An echo that completes is counted with its own length; one refused
    /// for room (`EAGAIN`, `ENOBUFS`: UDP has no backpressure) is dropped as
    /// `send_full`, any other failure as `send_failed`. Each buffer goes
    /// back to the ring, and after a stop the socket closes at the last
    /// completion, not before.
    #[test]
    fn echo_completions_count_by_result_give_buffers_back_and_let_a_stopped_socket_close() {
        let mut counters = DatagramCounters::default();
        let mut u = endpoint();
        let full = u.ring.available();
        for (bid, len) in [(0, 10), (1, 20), (2, 30), (3, 40)] {
            in_flight(&mut u, bid, len);
        }
        assert_eq!(u.ring.available(), full - 4);
        assert!(u.stop().is_none(), "no receive to cancel");
        assert!(
            u.arm().is_none(),
            "a stopped socket is not armed while echoes finish"
        );
        u.on_sent(1, -libc::EAGAIN, &mut counters);
        u.on_sent(2, -libc::ENOBUFS, &mut counters);
        u.on_sent(3, -libc::EPERM, &mut counters);
        assert!(u.socket.is_some(), "an echo is still in flight");
        u.on_sent(0, 10, &mut counters);
        assert!(u.socket.is_none(), "closed at the last completion");
        assert_eq!((counters.echoed, counters.echoed_bytes), (1, 10));
        assert_eq!(counters.dropped.send_full, 2, "{counters:?}");
        assert_eq!(counters.dropped.send_failed, 1, "{counters:?}");
        assert_eq!(u.ring.available(), full, "every buffer back");
        assert_eq!(u.sending, 0);
    }

    #[test]
    fn sockaddr_bytes_of_both_families_become_addresses() {
        let v4: SocketAddr = "127.0.0.1:7007".parse().unwrap();
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        for addr in [v4, v6] {
            let raw = socket2::SockAddr::from(addr);
            // SAFETY: `as_ptr` points at `len` initialised bytes of the address.
            #[allow(unsafe_code)]
            let bytes = unsafe {
                std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len() as usize)
            };
            assert_eq!(sockaddr(bytes), Some(addr));
        }
        assert_eq!(sockaddr(&[0u8; 4]), None);
    }
}
