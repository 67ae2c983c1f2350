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
//! Each buffer's size is named by its type ([`SessionBuffer`],
//! [`TcpRxBuffer`], [`TcpTxBuffer`], [`UdpRxBuffer`], [`UdpTxBuffer`]), and
//! each parameter of [`NodeResources`] accepts only its own kind, so two
//! sizes given in the wrong order do not compile.
//!
//! [`NodeResources::new`] is a `const fn` whose initial value is all zero
//! bytes (buffers) or uninitialised (the vectors of pumps, socket slots and
//! packet metadata, filled by [`EchoNode::new`](crate::EchoNode::new)), so
//! the whole struct lands in `.bss`: no flash, no copy at boot, and no stack
//! temporary of its size (a `[SocketStorage::EMPTY; N]` initialiser would
//! put it in `.data` or on the stack).

use heapless::Vec;
use ricochet_core::Pump;
use smoltcp::iface::SocketStorage;
#[cfg(feature = "udp")]
use smoltcp::socket::udp::PacketMetadata;

/// Datagrams each UDP ring holds at most (metadata slots).
pub const UDP_PACKETS: usize = 4;

/// smoltcp socket slots a node with `tcp_sockets` TCP sockets needs: one
/// per TCP socket, one for UDP (`udp` feature) and one for the DHCP client
/// (`dhcp` feature). The `SLOTS` parameter of [`NodeResources`] for another
/// `N`: `NodeResources<'static, 8, { socket_slots(8) }>`.
pub const fn socket_slots(tcp_sockets: usize) -> usize {
    tcp_sockets + cfg!(feature = "udp") as usize + cfg!(feature = "dhcp") as usize
}

mod sealed {
    pub trait Sealed {}
}

/// A buffer of [`NodeResources`]: a byte array whose length is part of its
/// type. Implemented only by this crate's buffer types.
pub trait Buffer: sealed::Sealed {
    /// Its length in bytes.
    const LEN: usize;
    /// All zero: the initial value, in `.bss`.
    const ZEROED: Self;
    /// The bytes, lent to a session or a smoltcp socket.
    fn bytes(&mut self) -> &mut [u8];
}

macro_rules! buffers {
    ($($(#[$doc:meta])* $name:ident: $kind:ident;)*) => {$(
        $(#[$doc])*
        #[repr(transparent)]
        pub struct $name<const BYTES: usize>([u8; BYTES]);

        impl<const BYTES: usize> sealed::Sealed for $name<BYTES> {}

        impl<const BYTES: usize> Buffer for $name<BYTES> {
            const LEN: usize = BYTES;
            const ZEROED: Self = $name([0; BYTES]);
            fn bytes(&mut self) -> &mut [u8] {
                &mut self.0
            }
        }

        #[doc = concat!("The [`", stringify!($name), "`] parameter of [`NodeResources`]: implemented by it alone.")]
        pub trait $kind: Buffer {}

        impl<const BYTES: usize> $kind for $name<BYTES> {}
    )*};
}

buffers! {
    /// Each connection's session buffer: the longest line or frame echoed
    /// whole, and the most bytes held for a peer that does not read.
    SessionBuffer: SessionSize;
    /// Each TCP socket's smoltcp receive buffer: the window it advertises.
    /// Below one segment is fine: the node drains it into the session at
    /// once and sends the window update itself.
    TcpRxBuffer: TcpRxSize;
    /// Each TCP socket's smoltcp transmit buffer: echoed bytes not yet
    /// acknowledged. Keep it above the largest message echoed in one piece:
    /// a smaller one makes the echo wait mid-message for the client's ACK,
    /// which a desktop may delay by up to 40 ms.
    TcpTxBuffer: TcpTxSize;
    /// The UDP receive ring. It must exceed `max_datagram` and hold the
    /// largest datagram the device's MTU carries, so an oversize datagram is
    /// seen (and counted) whole instead of lost.
    UdpRxBuffer: UdpRxSize;
    /// The UDP transmit ring, and the copy buffer an echoed datagram passes
    /// through: at least `max_datagram`.
    UdpTxBuffer: UdpTxSize;
}

/// Every buffer of a node with `N` TCP sockets, each size named by its
/// type:
///
/// | parameter | default | what |
/// |---|---|---|
/// | `N` | 4 | TCP sockets, all listening on the echo port when free |
/// | `SLOTS` | 6 | smoltcp socket slots: [`socket_slots(N)`](socket_slots) (checked at compile time) |
/// | `S` | [`SessionBuffer<1024>`] | each connection's session buffer |
/// | `R` | [`TcpRxBuffer<1024>`] | each TCP socket's receive buffer |
/// | `T` | [`TcpTxBuffer<1536>`] | each TCP socket's transmit buffer |
/// | `UR` | [`UdpRxBuffer<1536>`] | the UDP receive ring |
/// | `UT` | [`UdpTxBuffer<1472>`] | the UDP transmit ring (and the echo copy) |
///
/// For example 8 sockets with 512-byte sessions and 2 KiB windows:
/// `NodeResources<'static, 8, { socket_slots(8) }, SessionBuffer<512>,
/// TcpRxBuffer<2048>, TcpTxBuffer<2048>>`. Swapping `N` and `SLOTS`, or any
/// two buffers, does not compile.
///
/// Size on a 32-bit target (thumbv7m, smoltcp 0.14, ricochet-core 0.1):
/// `N * (S + R + T + 192) + SLOTS * 392 + UR + 2 * UT` bytes (192: a
/// pump; 392: a socket slot, 336 without IPv6) plus 376 for packet
/// metadata and vector lengths (152 without IPv6): 22 312 bytes
/// (21.8 KiB) with the defaults, 21 752 without IPv6. See README.md for
/// the whole firmware's budget.
///
/// The lifetime is the one the node borrows the resources for: `'static`
/// in a `static`.
pub struct NodeResources<
    'a,
    const N: usize = 4,
    const SLOTS: usize = 6,
    S: SessionSize = SessionBuffer<1024>,
    R: TcpRxSize = TcpRxBuffer<1024>,
    T: TcpTxSize = TcpTxBuffer<1536>,
    UR: UdpRxSize = UdpRxBuffer<1536>,
    UT: UdpTxSize = UdpTxBuffer<1472>,
> {
    pub(crate) tcp_rx: [R; N],
    pub(crate) tcp_tx: [T; N],
    pub(crate) sessions: [S; N],
    /// Filled with one pump per session buffer by `EchoNode::new` (server role).
    pub(crate) pumps: Vec<Pump<&'a mut [u8]>, N>,
    /// Filled with `SLOTS` empty slots by `EchoNode::new`.
    pub(crate) sockets: Vec<SocketStorage<'a>, SLOTS>,
    pub(crate) udp_rx: UR,
    pub(crate) udp_tx: UT,
    pub(crate) udp_copy: UT,
    /// Filled with [`UDP_PACKETS`] empty entries by `EchoNode::new`.
    #[cfg(feature = "udp")]
    pub(crate) udp_rx_meta: Vec<PacketMetadata, UDP_PACKETS>,
    #[cfg(feature = "udp")]
    pub(crate) udp_tx_meta: Vec<PacketMetadata, UDP_PACKETS>,
}

impl<
    const N: usize,
    const SLOTS: usize,
    S: SessionSize,
    R: TcpRxSize,
    T: TcpTxSize,
    UR: UdpRxSize,
    UT: UdpTxSize,
> NodeResources<'_, N, SLOTS, S, R, T, UR, UT>
{
    /// Empty buffers; usable in a `static` initialiser.
    pub const fn new() -> Self {
        NodeResources {
            tcp_rx: [const { R::ZEROED }; N],
            tcp_tx: [const { T::ZEROED }; N],
            sessions: [const { S::ZEROED }; N],
            pumps: Vec::new(),
            sockets: Vec::new(),
            udp_rx: UR::ZEROED,
            udp_tx: UT::ZEROED,
            udp_copy: UT::ZEROED,
            #[cfg(feature = "udp")]
            udp_rx_meta: Vec::new(),
            #[cfg(feature = "udp")]
            udp_tx_meta: Vec::new(),
        }
    }

    /// Fills the vectors of socket slots and UDP packet metadata. Never
    /// inlined, so its temporaries are gone from the stack before the node
    /// is built.
    #[inline(never)]
    pub(crate) fn fill(&mut self) {
        self.sockets.clear();
        while self.sockets.push(SocketStorage::EMPTY).is_ok() {}
        #[cfg(feature = "udp")]
        for meta in [&mut self.udp_rx_meta, &mut self.udp_tx_meta] {
            meta.clear();
            while meta.push(PacketMetadata::EMPTY).is_ok() {}
        }
    }
}

impl<
    const N: usize,
    const SLOTS: usize,
    S: SessionSize,
    R: TcpRxSize,
    T: TcpTxSize,
    UR: UdpRxSize,
    UT: UdpTxSize,
> Default for NodeResources<'_, N, SLOTS, S, R, T, UR, UT>
{
    fn default() -> Self {
        Self::new()
    }
}
