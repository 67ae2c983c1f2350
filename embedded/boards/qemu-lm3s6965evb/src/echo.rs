//! A plain smoltcp echo service on TCP and UDP port 7: the driver check.
//!
//! Placeholder: the shared `ricochet-embedded` crate replaces this module.
//! It only needs `&mut SocketSet` once per loop iteration (see `run` in
//! `main.rs`).

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::udp::{self, PacketMetadata, RecvError, UdpMetadata};
use smoltcp::time::Duration;
use static_cell::ConstStaticCell;

/// The echo port (RFC 862).
pub const PORT: u16 = 7;
/// TCP sockets listening on [`PORT`]; one more connection than this waits in
/// the peer's SYN retries.
pub const TCP_SOCKETS: usize = 4;
/// Sockets [`Echo::new`] adds to the set.
pub const SOCKETS: usize = TCP_SOCKETS + 1;
const TCP_BUF: usize = 2048;
const UDP_PACKETS: usize = 4;
const UDP_BUF: usize = 4096;
/// Largest UDP payload that fits an unfragmented IPv4 datagram on Ethernet.
const UDP_MAX_PAYLOAD: usize = 1472;
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const TCP_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Byte buffers: all zero, so the static lands in `.bss` (one byte that is
/// not zero would move all of it to `.data`, and into flash).
struct Buffers {
    tcp_rx: [[u8; TCP_BUF]; TCP_SOCKETS],
    tcp_tx: [[u8; TCP_BUF]; TCP_SOCKETS],
    udp_rx: [u8; UDP_BUF],
    udp_tx: [u8; UDP_BUF],
    scratch: [u8; UDP_MAX_PAYLOAD],
}

/// UDP packet metadata (not all-zero bytes: kept apart from [`Buffers`]).
struct UdpMeta {
    rx: [PacketMetadata; UDP_PACKETS],
    tx: [PacketMetadata; UDP_PACKETS],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    tcp_rx: [[0; TCP_BUF]; TCP_SOCKETS],
    tcp_tx: [[0; TCP_BUF]; TCP_SOCKETS],
    udp_rx: [0; UDP_BUF],
    udp_tx: [0; UDP_BUF],
    scratch: [0; UDP_MAX_PAYLOAD],
});

static UDP_META: ConstStaticCell<UdpMeta> = ConstStaticCell::new(UdpMeta {
    rx: [PacketMetadata::EMPTY; UDP_PACKETS],
    tx: [PacketMetadata::EMPTY; UDP_PACKETS],
});

/// The echo service's sockets.
pub struct Echo<'a> {
    tcp: [SocketHandle; TCP_SOCKETS],
    udp: SocketHandle,
    scratch: &'a mut [u8; UDP_MAX_PAYLOAD],
    udp_dropped: u32,
}

impl<'a> Echo<'a> {
    /// Adds [`SOCKETS`] sockets to `sockets` and starts listening.
    ///
    /// # Panics
    ///
    /// When called a second time: the buffers are statics owned by this
    /// module.
    pub fn new(sockets: &mut SocketSet<'a>) -> Self {
        let Buffers {
            tcp_rx,
            tcp_tx,
            udp_rx,
            udp_tx,
            scratch,
        } = BUFFERS.take();
        let UdpMeta {
            rx: udp_rx_meta,
            tx: udp_tx_meta,
        } = UDP_META.take();
        let mut tcp = [SocketHandle::default(); TCP_SOCKETS];
        for ((handle, rx), tx) in tcp.iter_mut().zip(tcp_rx).zip(tcp_tx) {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(&mut rx[..]),
                tcp::SocketBuffer::new(&mut tx[..]),
            );
            socket.set_nagle_enabled(false);
            socket.set_timeout(Some(TCP_IDLE_TIMEOUT));
            socket.set_keep_alive(Some(TCP_KEEP_ALIVE));
            *handle = sockets.add(socket);
        }
        let udp = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(&mut udp_rx_meta[..], &mut udp_rx[..]),
            udp::PacketBuffer::new(&mut udp_tx_meta[..], &mut udp_tx[..]),
        ));
        let mut echo = Echo {
            tcp,
            udp,
            scratch,
            udp_dropped: 0,
        };
        echo.service(sockets);
        echo
    }

    /// Echoes whatever arrived, closes finished connections and puts closed
    /// sockets back into the listening state.
    pub fn service(&mut self, sockets: &mut SocketSet<'_>) {
        for &handle in &self.tcp {
            echo_tcp(
                sockets.get_mut::<tcp::Socket>(handle),
                &mut self.scratch[..],
            );
        }
        self.echo_udp(sockets.get_mut::<udp::Socket>(self.udp));
    }

    fn echo_udp(&mut self, socket: &mut udp::Socket<'_>) {
        if !socket.is_open() {
            if let Err(e) = socket.bind(PORT) {
                defmt::error!("echo: udp bind: {}", e);
            }
            return;
        }
        while socket.can_recv() && socket.can_send() {
            let (len, meta): (usize, UdpMetadata) = match socket.recv_slice(&mut self.scratch[..]) {
                Ok(received) => received,
                Err(RecvError::Truncated) => {
                    self.udp_dropped = self.udp_dropped.wrapping_add(1);
                    continue;
                }
                Err(RecvError::Exhausted) => break,
            };
            if socket.send_slice(&self.scratch[..len], meta).is_err() {
                self.udp_dropped = self.udp_dropped.wrapping_add(1);
                defmt::warn!("echo: udp reply dropped ({} so far)", self.udp_dropped);
            }
        }
    }
}

fn echo_tcp(socket: &mut tcp::Socket<'_>, scratch: &mut [u8]) {
    if !socket.is_open() {
        // Closed or TIME-WAIT: listen again at once.
        if let Err(e) = socket.listen(PORT) {
            defmt::error!("echo: tcp listen: {}", e);
        }
        return;
    }
    // Move as much as the send buffer can take; the rest stays in the
    // receive buffer, which closes the peer's window (backpressure).
    while socket.can_recv() {
        let room = socket.send_capacity() - socket.send_queue();
        let want = room.min(scratch.len());
        if want == 0 {
            break;
        }
        let Ok(got) = socket.recv_slice(&mut scratch[..want]) else {
            break;
        };
        if got == 0 {
            break;
        }
        // Cannot come up short: `got <= room`.
        let _ = socket.send_slice(&scratch[..got]);
    }
    // The peer finished sending and everything has been echoed: finish too.
    if socket.state() == State::CloseWait && socket.recv_queue() == 0 {
        socket.close();
    }
}
