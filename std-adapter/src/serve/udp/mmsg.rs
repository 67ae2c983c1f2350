//! Batched datagram I/O on Linux: `recvmmsg`/`sendmmsg` over buffers
//! allocated once per socket. Each datagram's destination comes with it
//! (`IP_PKTINFO`/`IPV6_PKTINFO`, see `pktinfo.rs`) and its echo leaves from
//! that address.
//!
//! Why hand-written: `nix`'s wrappers allocate per call and tie the
//! buffers' lifetimes to the headers, which does not fit a hot loop that
//! reuses one set of buffers; socket2 has no `mmsg` calls. The unsafe code
//! is confined to the two system calls, with the invariants stated at each.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{SockAddr, SockAddrStorage};

use super::pktinfo::{self, Control, Local, RECV_SPACE, SEND_SPACE};

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;

/// One received datagram.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received {
    /// Its real length (`MSG_TRUNC`), even when longer than the buffer.
    pub(crate) len: usize,
    /// Where it came from; `None` for an address family we do not serve.
    pub(crate) source: Option<SocketAddr>,
    /// Where it was sent to (`IP_PKTINFO`/`IPV6_PKTINFO`), when the socket
    /// reports it; its echo leaves from there.
    pub(crate) local: Option<Local>,
}

/// Receive and send buffers for [`BATCH`] datagrams of up to `slot` bytes.
pub(crate) struct Batch {
    data: Box<[u8]>,
    slot: usize,
    names: Box<[libc::sockaddr_storage]>,
    name_lens: [libc::socklen_t; BATCH],
    /// Each datagram's control data: received, then the echo's.
    controls: Box<[Control<RECV_SPACE>]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// What the last `recv` got.
    pub(crate) received: [Received; BATCH],
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` point into this value's
// own boxed buffers, are rewritten before every system call, and are never
// dereferenced by Rust code; moving the value to another thread moves the
// boxes with it.
#[allow(unsafe_code)]
unsafe impl Send for Batch {}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

#[allow(unsafe_code)]
impl Batch {
    /// Buffers for datagrams of up to `slot` bytes (longer ones are seen
    /// truncated, with their real length).
    pub(crate) fn new(slot: usize) -> Self {
        let slot = slot.max(1);
        // SAFETY: all-zero is a valid `sockaddr_storage`, `iovec` and
        // `mmsghdr` (null pointers, zero lengths).
        let zero_name: libc::sockaddr_storage = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        Batch {
            data: vec![0u8; slot * BATCH].into_boxed_slice(),
            slot,
            names: vec![zero_name; BATCH].into_boxed_slice(),
            name_lens: [0; BATCH],
            controls: vec![Control::ZERO; BATCH].into_boxed_slice(),
            iovs: vec![zero_iov; BATCH].into_boxed_slice(),
            hdrs: vec![zero_hdr; BATCH].into_boxed_slice(),
            received: [Received {
                len: 0,
                source: None,
                local: None,
            }; BATCH],
        }
    }

    /// Points header `i` at buffer `i` (`len` bytes), address `i` and the
    /// first `control_len` bytes of control buffer `i` (none if 0).
    fn point(&mut self, i: usize, len: usize, name_len: libc::socklen_t, control_len: usize) {
        let base = self.data.as_mut_ptr();
        // `i * slot + len <= BATCH * slot`: in bounds of `data`.
        self.iovs[i] = libc::iovec {
            iov_base: base.wrapping_add(i * self.slot).cast(),
            iov_len: len,
        };
        let hdr = &mut self.hdrs[i].msg_hdr;
        hdr.msg_name = (&raw mut self.names[i]).cast();
        hdr.msg_namelen = name_len;
        hdr.msg_iov = &raw mut self.iovs[i];
        hdr.msg_iovlen = 1;
        if control_len == 0 {
            hdr.msg_control = std::ptr::null_mut();
        } else {
            hdr.msg_control = (&raw mut self.controls[i]).cast();
        }
        hdr.msg_controllen = control_len.min(RECV_SPACE) as _;
        hdr.msg_flags = 0;
        self.hdrs[i].msg_len = 0;
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `Ok(0)` when
    /// none is queued. Fewer than [`BATCH`] means the queue is now empty.
    pub(crate) fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        let name_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for i in 0..BATCH {
            self.point(i, self.slot, name_len, RECV_SPACE);
        }
        // SAFETY: `hdrs` holds BATCH headers, each pointing at one iovec of
        // `slot` bytes inside `data` and at one `sockaddr_storage` of
        // `names` and one control buffer of `RECV_SPACE` bytes of
        // `controls`, all owned by `self` and not moved during the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for i in 0..n {
            let hdr = &self.hdrs[i];
            self.name_lens[i] = hdr.msg_hdr.msg_namelen;
            let mut storage = SockAddrStorage::zeroed();
            // SAFETY: `sockaddr_storage` is this platform's storage type;
            // the kernel wrote a valid address of `msg_namelen` bytes into
            // `names[i]`, copied whole here.
            let addr = unsafe {
                *storage.view_as::<libc::sockaddr_storage>() = self.names[i];
                SockAddr::new(storage, hdr.msg_hdr.msg_namelen)
            };
            // `size_t` with glibc, `socklen_t` with musl.
            #[allow(clippy::unnecessary_cast)]
            let control_len = (hdr.msg_hdr.msg_controllen as usize).min(RECV_SPACE);
            self.received[i] = Received {
                len: hdr.msg_len as usize,
                source: addr.as_socket(),
                local: pktinfo::parse(&self.controls[i].0[..control_len]),
            };
        }
        Ok(n)
    }

    /// The control data datagram `i` of the last `recv` came with.
    pub(crate) fn control(&self, i: usize) -> &[u8] {
        // `size_t` with glibc, `socklen_t` with musl.
        #[allow(clippy::unnecessary_cast)]
        let len = (self.hdrs[i].msg_hdr.msg_controllen as usize).min(RECV_SPACE);
        &self.controls[i].0[..len]
    }

    /// Makes datagram `i` of the last `recv` look as if it came from `to`
    /// (tests: a source the kernel will refuse to answer).
    #[cfg(test)]
    pub(crate) fn pretend_source(&mut self, i: usize, to: SocketAddr) {
        let to = SockAddr::from(to);
        let len = to.len() as usize;
        // SAFETY: `to` holds `len` valid bytes of a socket address and
        // `names[i]` is a `sockaddr_storage`, large enough for any.
        unsafe {
            std::ptr::copy_nonoverlapping(
                to.as_ptr().cast::<u8>(),
                (&raw mut self.names[i]).cast::<u8>(),
                len,
            );
        }
        self.name_lens[i] = to.len();
        self.received[i].source = Some(to.as_socket().expect("an IP address"));
    }

    /// Echoes received datagrams `which` (indices into the last `recv`),
    /// each whole to its source, from the address it was sent to (when
    /// known), in order, and reports each one's fate to `done`, in order:
    /// `Ok` sent, `Err` not sent. An echo the kernel refuses on its own (a
    /// subnet-broadcast source, `EACCES`; a firewall's reject, `EPERM`; no
    /// route back) fails alone and the ones after it still leave; a full
    /// send buffer (`WouldBlock`) fails it and every one after it.
    pub(crate) fn send(
        &mut self,
        socket: &impl AsRawFd,
        which: &[usize],
        mut done: impl FnMut(Received, Result<(), &io::Error>),
    ) {
        let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        let count = which.len().min(BATCH);
        for (k, &i) in which.iter().take(count).enumerate() {
            let got = self.received[i];
            let len = got.len.min(self.slot);
            let control_len = match got.local {
                Some(local) => pktinfo::build(local, &mut self.controls[i].0[..SEND_SPACE]),
                None => 0,
            };
            self.point(i, len, self.name_lens[i], control_len);
            hdrs[k].write(self.hdrs[i]);
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: `hdrs[sent..count]` were initialised above; each points
            // at a payload inside `data`, an address inside `names` and
            // control data (or none) inside `controls`, owned by `self`
            // and unchanged during the call.
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    hdrs.as_mut_ptr().add(sent).cast(),
                    (count - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        for &i in &which[sent..count] {
                            done(self.received[i], Err(&e));
                        }
                        return;
                    }
                    // `sendmmsg` reports an error only when the first
                    // datagram it was given fails: that one is refused.
                    _ => {
                        done(self.received[which[sent]], Err(&e));
                        sent += 1;
                    }
                }
                continue;
            }
            for &i in &which[sent..sent + r as usize] {
                done(self.received[i], Ok(()));
            }
            sent += r as usize;
        }
    }
}
