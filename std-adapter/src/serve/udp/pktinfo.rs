//! Which address a datagram was sent to, and echoing from that address
//! (Linux): `IP_PKTINFO` / `IPV6_PKTINFO` control messages.
//!
//! A socket bound to a wildcard address (`0.0.0.0`, `[::]`) receives for
//! every local address. Without help, `sendmsg` lets the kernel pick the
//! echo's source by routing, so on a host with several addresses a client
//! that sent to address B may get its echo from address A, which
//! connected-UDP clients, NAT and firewalls drop. With the receive options on
//! ([`enable`]) each datagram carries its destination ([`parse`]), and the
//! echo is sent with that address as its source ([`build`]).
//!
//! The destination also tells a datagram sent to a group apart: multicast
//! and the limited broadcast by their address class, a subnet-directed
//! broadcast because Linux then reports, in `ipi_spec_dst`, the local
//! address it would answer from, not the header's destination (for unicast
//! to a local address the two are equal). Such a datagram is not answered
//! ([`Local::is_unicast`]).
//!
//! A datagram queued before the option was turned on (the one that made
//! inetd start the server, or that waited for systemd to start it) still
//! reports its header destination, but an `ipi_spec_dst` of `0.0.0.0`: the
//! kernel fills that in only while the option is on. Such a datagram is
//! judged by its destination's address class alone and answered from its
//! destination, which the kernel refuses (a failed send) if that is not a
//! local address.
//!
//! The parsing and building work on byte slices with unaligned reads and
//! writes, because io_uring hands back control data at any offset of its
//! buffers.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use ricochet_core::datagram::is_unicast_address;

use crate::serve::listener::set_int_option;

/// Control messages are aligned to this (`CMSG_ALIGN`).
const ALIGN: usize = size_of::<usize>();

const fn align(len: usize) -> usize {
    (len + ALIGN - 1) & !(ALIGN - 1)
}

/// `CMSG_LEN(0)`: where a control message's data starts.
const HEADER: usize = align(size_of::<libc::cmsghdr>());

/// `CMSG_SPACE(len)`.
const fn space(len: usize) -> usize {
    HEADER + align(len)
}

/// Room for what a receive can carry: both destination messages (a
/// dual-stack socket gets an `IPV6_PKTINFO` and an `IP_PKTINFO` for IPv4
/// traffic) and the socket's drop count (`SO_RXQ_OVFL`).
pub(crate) const RECV_SPACE: usize = space(size_of::<libc::in_pktinfo>())
    + space(size_of::<libc::in6_pktinfo>())
    + space(size_of::<u32>());

/// Room for what an echo carries: one message.
pub(crate) const SEND_SPACE: usize = {
    let v4 = space(size_of::<libc::in_pktinfo>());
    let v6 = space(size_of::<libc::in6_pktinfo>());
    if v4 > v6 { v4 } else { v6 }
};

// An echo's control data is built in its datagram's receive buffer.
const _: () = assert!(SEND_SPACE <= RECV_SPACE);

/// A control buffer, aligned as `msg_control` expects.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct Control<const N: usize>(pub(crate) [u8; N]);

impl<const N: usize> Control<N> {
    pub(crate) const ZERO: Self = Control([0; N]);
}

/// Where a datagram arrived: the local end of the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Local {
    /// `IP_PKTINFO`.
    V4 {
        /// The header's destination (`ipi_addr`).
        dst: Ipv4Addr,
        /// The local address the kernel would answer from (`ipi_spec_dst`);
        /// `0.0.0.0` if the datagram was queued before the option was on.
        spec_dst: Ipv4Addr,
    },
    /// `IPV6_PKTINFO`.
    V6 {
        /// The header's destination (`ipi6_addr`).
        dst: Ipv6Addr,
        /// The interface it arrived on (`ipi6_ifindex`).
        ifindex: u32,
    },
}

impl Local {
    /// The destination address as written in the datagram's header.
    pub(crate) fn destination(self) -> IpAddr {
        match self {
            Local::V4 { dst, .. } => IpAddr::V4(dst),
            Local::V6 { dst, .. } => IpAddr::V6(dst),
        }
    }

    /// Whether the datagram was sent to one address, not to a group:
    /// not multicast, not a broadcast (limited, or subnet-directed: then
    /// `ipi_spec_dst` differs from the destination), not unspecified.
    pub(crate) fn is_unicast(self) -> bool {
        let class = is_unicast_address(self.destination());
        match self {
            Local::V4 { dst, spec_dst } => class && (spec_dst.is_unspecified() || dst == spec_dst),
            Local::V6 { .. } => class,
        }
    }

    /// The IPv4 address an echo leaves from: `ipi_spec_dst`, or the
    /// destination if that is unknown.
    fn source_v4(dst: Ipv4Addr, spec_dst: Ipv4Addr) -> Ipv4Addr {
        if spec_dst.is_unspecified() {
            dst
        } else {
            spec_dst
        }
    }
}

/// Whether a datagram from `source`, received with `local` (if known),
/// may be answered: both ends unicast. Without a known destination only
/// the source is judged.
pub(crate) fn unicast(source: SocketAddr, local: Option<Local>) -> bool {
    is_unicast_address(source.ip()) && local.is_none_or(Local::is_unicast)
}

/// Turns on the receive options on `socket`: `IP_PKTINFO` on IPv4;
/// `IPV6_RECVPKTINFO` and `IP_PKTINFO` on IPv6 (a dual-stack socket then
/// reports IPv4 traffic's `ipi_spec_dst` too).
///
/// Not on a socket bound to one unicast address: it only receives
/// datagrams sent to that address (Linux delivers broadcast and multicast
/// only to sockets bound to the wildcard or the group), and its echoes
/// leave from it anyway, so the control data would be pure cost.
pub(crate) fn enable(socket: &UdpSocket) -> io::Result<()> {
    let bound = socket.local_addr()?;
    if !bound.ip().is_unspecified() && is_unicast_address(bound.ip()) {
        return Ok(());
    }
    if bound.is_ipv6() {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
    }
    set_int_option(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
}

/// Asks the kernel to attach to each datagram received on `socket` how
/// many datagrams it has dropped so far because the receive queue was full
/// (`SO_RXQ_OVFL`): drops that happen before the server reads anything, so
/// that nothing else would count them.
pub(crate) fn enable_drop_count(socket: &UdpSocket) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// The control messages in received control data `control` (what the
/// kernel wrote, `msg_controllen` bytes): level, type and data of each,
/// until one does not fit.
fn messages(control: &[u8]) -> impl Iterator<Item = (libc::c_int, libc::c_int, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = control.get(at..)?;
        if rest.len() < size_of::<libc::cmsghdr>() {
            return None;
        }
        // SAFETY: `rest` holds at least a `cmsghdr`'s bytes; it is plain
        // old data, any bits are a value; read unaligned.
        #[allow(unsafe_code)]
        let hdr: libc::cmsghdr = unsafe { rest.as_ptr().cast::<libc::cmsghdr>().read_unaligned() };
        // `size_t` with glibc, `socklen_t` with musl.
        #[allow(clippy::unnecessary_cast)]
        let len = hdr.cmsg_len as usize;
        if len < HEADER || len > rest.len() {
            return None;
        }
        at += align(len);
        Some((hdr.cmsg_level, hdr.cmsg_type, &rest[HEADER..len]))
    })
}

/// The socket's count of datagrams dropped for a full receive queue, as
/// of this datagram's arrival, in received control data `control`; `None`
/// if it carries none (the kernel sends it only once there was a drop).
pub(crate) fn drop_count(control: &[u8]) -> Option<u32> {
    let (_, _, data) = messages(control)
        .find(|(level, kind, _)| *level == libc::SOL_SOCKET && *kind == libc::SO_RXQ_OVFL)?;
    let bytes: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(u32::from_ne_bytes(bytes))
}

/// The socket's drop total so far (`SO_MEMINFO`'s `SK_MEMINFO_DROPS`):
/// what later datagrams' [`drop_count`] starts from. A socket inherited
/// from a service manager (or an inetd) may have dropped datagrams before
/// this process had it; those are not its to count.
#[allow(unsafe_code)]
fn drops_so_far(socket: &impl std::os::fd::AsRawFd) -> io::Result<u32> {
    let mut info = [0u32; 16];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: `getsockopt` writes at most `len` bytes into `info`, a live
    // array of that size, on a descriptor `socket` owns for the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let at = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (at + 1) * size_of::<u32>() {
        return Err(io::Error::other("SO_MEMINFO has no drop count"));
    }
    Ok(info[at])
}

/// Datagrams a socket's full receive queue dropped, from the running
/// count each datagram carries ([`drop_count`]): what is new since the
/// last one seen, until taken. The kernel's count is its total of drops
/// for any reason (a full queue nearly always; also a bad checksum or a
/// socket filter).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QueueDrops {
    seen: u32,
    new: u64,
}

impl QueueDrops {
    /// Counting from `socket`'s drops so far (from 0 if the kernel does not
    /// say: a socket of our own has none yet).
    pub(crate) fn from_now(socket: &impl std::os::fd::AsRawFd) -> Self {
        let seen = drops_so_far(socket).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "UDP socket's drop count so far unknown; counting from 0");
            0
        });
        QueueDrops { seen, new: 0 }
    }

    /// A datagram arrived with control data `control`.
    pub(crate) fn note(&mut self, control: &[u8]) {
        if let Some(count) = drop_count(control) {
            // The kernel's count is a u32 that wraps.
            self.new += u64::from(count.wrapping_sub(self.seen));
            self.seen = count;
        }
    }

    /// The drops noted since the last call.
    pub(crate) fn take(&mut self) -> u64 {
        std::mem::take(&mut self.new)
    }
}

/// The destination in received control data `control` (what the kernel
/// wrote, `msg_controllen` bytes); `None` if it carries none. With both
/// messages (IPv4 on a dual-stack socket), the `IP_PKTINFO` one, which
/// has `ipi_spec_dst`.
#[allow(unsafe_code)]
pub(crate) fn parse(control: &[u8]) -> Option<Local> {
    let mut found = None;
    for (level, kind, data) in messages(control) {
        if level == libc::IPPROTO_IP
            && kind == libc::IP_PKTINFO
            && data.len() >= size_of::<libc::in_pktinfo>()
        {
            // SAFETY: `data` holds at least an `in_pktinfo`'s bytes; plain
            // old data; read unaligned.
            let info: libc::in_pktinfo =
                unsafe { data.as_ptr().cast::<libc::in_pktinfo>().read_unaligned() };
            // `s_addr` is in network byte order: its memory bytes are the octets.
            return Some(Local::V4 {
                dst: Ipv4Addr::from(info.ipi_addr.s_addr.to_ne_bytes()),
                spec_dst: Ipv4Addr::from(info.ipi_spec_dst.s_addr.to_ne_bytes()),
            });
        }
        if level == libc::IPPROTO_IPV6
            && kind == libc::IPV6_PKTINFO
            && data.len() >= size_of::<libc::in6_pktinfo>()
        {
            // SAFETY: as above, for an `in6_pktinfo`.
            let info: libc::in6_pktinfo =
                unsafe { data.as_ptr().cast::<libc::in6_pktinfo>().read_unaligned() };
            found = Some(Local::V6 {
                dst: Ipv6Addr::from(info.ipi6_addr.s6_addr),
                ifindex: info.ipi6_ifindex,
            });
        }
    }
    found
}

/// Writes into `buf` the control message that makes an echo leave from
/// `local`'s destination address; returns its length (`msg_controllen`),
/// 0 if `buf` is too short. IPv4: `IP_PKTINFO` with `ipi_spec_dst` (the
/// received one, or the destination if that was not filled in), any
/// interface. IPv6: `IPV6_PKTINFO` with `ipi6_addr`, and the interface it
/// arrived on only for a link-local address, which needs it.
#[allow(unsafe_code)]
pub(crate) fn build(local: Local, buf: &mut [u8]) -> usize {
    let (level, kind, data_len) = match local {
        Local::V4 { .. } => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        Local::V6 { .. } => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    let total = space(data_len);
    let Some(buf) = buf.get_mut(..total) else {
        return 0;
    };
    buf.fill(0);
    // SAFETY: all-zero is a valid `cmsghdr` (padding fields included).
    let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
    hdr.cmsg_len = (HEADER + data_len) as _;
    hdr.cmsg_level = level;
    hdr.cmsg_type = kind;
    let (head, data) = buf.split_at_mut(HEADER);
    // SAFETY: `head` has `HEADER >= size_of::<cmsghdr>()` bytes; written unaligned.
    unsafe {
        head.as_mut_ptr()
            .cast::<libc::cmsghdr>()
            .write_unaligned(hdr)
    };
    match local {
        Local::V4 { dst, spec_dst } => {
            let from = Local::source_v4(dst, spec_dst);
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(from.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            // SAFETY: `data` has at least `size_of::<in_pktinfo>()` bytes
            // (`total` was taken for it); written unaligned.
            unsafe {
                data.as_mut_ptr()
                    .cast::<libc::in_pktinfo>()
                    .write_unaligned(info)
            };
        }
        Local::V6 { dst, ifindex } => {
            let link_local = dst.is_unicast_link_local();
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: dst.octets(),
                },
                ipi6_ifindex: if link_local { ifindex } else { 0 },
            };
            // SAFETY: as above, for an `in6_pktinfo`.
            unsafe {
                data.as_mut_ptr()
                    .cast::<libc::in6_pktinfo>()
                    .write_unaligned(info)
            };
        }
    }
    total
}

#[cfg(test)]
mod tests;
