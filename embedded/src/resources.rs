//! The memory a node runs in, provided by the board (like embassy-net's
//! `StackResources`).
//!
//! Everything is sized at compile time and lives where the board puts it,
//! normally a `static`:
//!
//! ```text
//! static RESOURCES: ConstStaticCell<NodeResources<'static>> = ConstStaticCell::new(NodeResources::new());
//! ```
//!
//! [`NodeResources::new`] is a `const fn` whose initial value is all zero
//! bytes (buffers) or uninitialised (the vectors of sessions, socket slots
//! and packet metadata, filled by [`EchoNode::new`](crate::EchoNode::new)),
//! so the whole struct lands in `.bss`: no flash, no copy at boot, and no
//! stack temporary of its size (a `[SocketStorage::EMPTY; N]` or a
//! `[Session; N]` initialiser would put kilobytes in `.data` or on the
//! stack).

use heapless::Vec;
use ricochet_core::{Instant, Session, SessionConfig};
use smoltcp::iface::SocketStorage;
use smoltcp::socket::udp::PacketMetadata;

/// Datagrams each UDP ring holds at most (metadata slots).
pub const UDP_PACKETS: usize = 4;

/// smoltcp socket slots a node with `tcp_sockets` TCP sockets needs: one
/// per TCP socket, one for UDP and one for the DHCP client. The `SLOTS`
/// parameter of [`NodeResources`] for another `N`:
/// `NodeResources<'static, 8, { socket_slots(8) }>`.
pub const fn socket_slots(tcp_sockets: usize) -> usize {
    tcp_sockets + 2
}

/// Every buffer of a node with `N` TCP sockets.
///
/// | parameter | default | what |
/// |---|---|---|
/// | `N` | 4 | TCP sockets, all listening on the echo port when free |
/// | `SLOTS` | 6 | smoltcp socket slots: [`socket_slots(N)`](socket_slots) (checked at compile time) |
/// | `BUF` | 1024 | each connection's [`Session`] buffer (the longest line or frame echoed whole) |
/// | `TCP_RX` | 1024 | each TCP socket's smoltcp receive buffer: the window it advertises. Below one segment is fine: the node drains it into the session at once and sends the window update itself |
/// | `TCP_TX` | 1536 | each TCP socket's smoltcp transmit buffer: echoed bytes not yet acknowledged. Keep it above the largest message echoed in one piece: a smaller one makes the echo wait mid-message for the client's ACK, which a desktop may delay by up to 40 ms |
/// | `UDP_RX` | 1536 | the UDP receive ring; must exceed `max_datagram` and hold the largest datagram the device's MTU carries, so an oversize datagram is seen (and counted) whole instead of lost |
/// | `UDP_TX` | 1472 | the UDP transmit ring, and the copy buffer an echoed datagram passes through; at least `max_datagram` |
///
/// Size on a 32-bit target (smoltcp 0.14, ricochet-core 0.1):
/// `N * (TCP_RX + TCP_TX + BUF + 184) + SLOTS * 392 + UDP_RX + 2 * UDP_TX`
/// bytes, plus 384 for packet metadata and vector lengths: 22 288 bytes
/// (21.8 KiB) with the defaults. See README.md for the whole firmware's
/// budget.
///
/// The lifetime is the one the node borrows the resources for: `'static`
/// in a `static`.
pub struct NodeResources<
    'a,
    const N: usize = 4,
    const SLOTS: usize = 6,
    const BUF: usize = 1024,
    const TCP_RX: usize = 1024,
    const TCP_TX: usize = 1536,
    const UDP_RX: usize = 1536,
    const UDP_TX: usize = 1472,
> {
    pub(crate) tcp_rx: [[u8; TCP_RX]; N],
    pub(crate) tcp_tx: [[u8; TCP_TX]; N],
    /// Filled with `N` sessions by `EchoNode::new`.
    pub(crate) sessions: Vec<Session<BUF>, N>,
    /// Filled with `SLOTS` empty slots by `EchoNode::new`.
    pub(crate) sockets: Vec<SocketStorage<'a>, SLOTS>,
    pub(crate) udp_rx: [u8; UDP_RX],
    pub(crate) udp_tx: [u8; UDP_TX],
    pub(crate) udp_copy: [u8; UDP_TX],
    /// Filled with [`UDP_PACKETS`] empty entries by `EchoNode::new`.
    pub(crate) udp_rx_meta: Vec<PacketMetadata, UDP_PACKETS>,
    pub(crate) udp_tx_meta: Vec<PacketMetadata, UDP_PACKETS>,
}

impl<
    const N: usize,
    const SLOTS: usize,
    const BUF: usize,
    const TCP_RX: usize,
    const TCP_TX: usize,
    const UDP_RX: usize,
    const UDP_TX: usize,
> NodeResources<'_, N, SLOTS, BUF, TCP_RX, TCP_TX, UDP_RX, UDP_TX>
{
    /// Empty buffers; usable in a `static` initialiser.
    pub const fn new() -> Self {
        NodeResources {
            tcp_rx: [[0; TCP_RX]; N],
            tcp_tx: [[0; TCP_TX]; N],
            sessions: Vec::new(),
            sockets: Vec::new(),
            udp_rx: [0; UDP_RX],
            udp_tx: [0; UDP_TX],
            udp_copy: [0; UDP_TX],
            udp_rx_meta: Vec::new(),
            udp_tx_meta: Vec::new(),
        }
    }
}

impl<
    'a,
    const N: usize,
    const SLOTS: usize,
    const BUF: usize,
    const TCP_RX: usize,
    const TCP_TX: usize,
    const UDP_RX: usize,
    const UDP_TX: usize,
> NodeResources<'a, N, SLOTS, BUF, TCP_RX, TCP_TX, UDP_RX, UDP_TX>
{
    /// Fills the vectors: empty socket slots, one session per TCP socket,
    /// empty UDP packet metadata. Never inlined, so a session's temporary
    /// (its whole buffer) is gone from the stack before the node is built.
    #[inline(never)]
    pub(crate) fn fill(&mut self, session: SessionConfig, now: Instant) {
        self.sockets.clear();
        while self.sockets.push(SocketStorage::EMPTY).is_ok() {}
        self.sessions.clear();
        while self.sessions.push(Session::new(session, now)).is_ok() {}
        for meta in [&mut self.udp_rx_meta, &mut self.udp_tx_meta] {
            meta.clear();
            while meta.push(PacketMetadata::EMPTY).is_ok() {}
        }
    }
}

impl<
    const N: usize,
    const SLOTS: usize,
    const BUF: usize,
    const TCP_RX: usize,
    const TCP_TX: usize,
    const UDP_RX: usize,
    const UDP_TX: usize,
> Default for NodeResources<'_, N, SLOTS, BUF, TCP_RX, TCP_TX, UDP_RX, UDP_TX>
{
    fn default() -> Self {
        Self::new()
    }
}
