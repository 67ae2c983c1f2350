//! The socket of a connection on the ring: what the worker does to it
//! directly, beside what goes through the ring (a send that cannot wait,
//! the FIN, the send buffer's size, a reset on close).

use std::net::Shutdown;

use super::SendFrom;

/// The socket of a connection.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    pub(crate) fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }

    pub(super) fn shutdown_write(&self) {
        // The peer may be gone already; the socket is closed soon after.
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(Shutdown::Write),
            Socket::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// Sends what `from` points at, without waiting: bytes taken, or None
    /// (the socket is full, or failed).
    pub(super) fn send_now(&self, from: &SendFrom) -> Option<usize> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        #[allow(unsafe_code)]
        // SAFETY: `from` comes from `Output::next`: it points into the
        // connection's send buffer and lent ring buffers (through its
        // boxed header), which hold that many initialised bytes and stay
        // put until `Output::took`; the kernel only reads them, during
        // this call.
        let n = unsafe {
            match *from {
                SendFrom::Slice(ptr, len) => libc::send(self.raw_fd(), ptr.cast(), len, flags),
                SendFrom::Msg(hdr, _) => libc::sendmsg(self.raw_fd(), hdr, flags),
            }
        };
        usize::try_from(n).ok()
    }

    /// Raises the socket's send buffer by `more` bytes, as far as
    /// `net.core.wmem_max` allows; leaves it alone if that cap would lower
    /// it (TCP's autotuning can take it past the cap).
    pub(super) fn grow_send_buffer(&self, more: usize) {
        let sock = match self {
            Socket::Tcp(s) => socket2::SockRef::from(s),
            Socket::Unix(s) => socket2::SockRef::from(s),
        };
        let Ok(now) = sock.send_buffer_size() else {
            return;
        };
        let cap = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        // The kernel keeps (and reports) twice what is set.
        let want = now / 2 + more;
        if want.min(cap).saturating_mul(2) > now {
            let _ = sock.set_send_buffer_size(want);
        }
    }

    /// Makes the coming close send RST (TCP: `SO_LINGER` 0) instead of FIN.
    pub(crate) fn set_reset_on_close(&self) {
        if let Socket::Tcp(s) = self {
            let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer grows by what is asked, over what the kernel holds now
    /// (it reports twice what is set), up to `net.core.wmem_max`.
    #[test]
    fn growing_the_send_buffer_adds_the_bytes_asked_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let sock = socket2::SockRef::from(&stream);
        sock.set_send_buffer_size(16_384).expect("SO_SNDBUF");
        let now = sock.send_buffer_size().expect("SO_SNDBUF");
        let cap = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let socket = Socket::Tcp(stream.try_clone().expect("clone"));
        socket.grow_send_buffer(8_192);
        let want = (now / 2 + 8_192).min(cap) * 2;
        let got = sock.send_buffer_size().expect("SO_SNDBUF");
        assert_eq!(got, want.max(now), "from {now}");
    }
}
