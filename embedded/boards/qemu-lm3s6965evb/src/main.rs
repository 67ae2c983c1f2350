//! Ricochet on QEMU's `lm3s6965evb`: the Stellaris Ethernet MAC driven by
//! smoltcp, serving echo on TCP and UDP port 7 through `ricochet-embedded`.
//! Logs go out as defmt frames over semihosting: run with
//! `cargo run --release` (see `qemu-run.sh`).
//!
//! This folder holds only chip glue: the MAC driver (`enet.rs`) and this
//! `main`. The clock is `ricochet-cortex-m-clock`; everything else is in
//! `ricochet-embedded` and `ricochet-core`.

#![no_std]
#![no_main]

mod enet;
mod vectors;

use ricochet_compact_rt as _;
// The fault and panic handlers, the defmt timestamp and logger (semihosting).
use ricochet_qemu_rt as _;

use core::mem::MaybeUninit;

use cortex_m_rt::{entry, exception};
use ricochet_cortex_m_clock::{Clock, Every};
use ricochet_embedded::ricochet_core::{Duration, PolicyConfig};
use ricochet_embedded::smoltcp::time::Duration as SmolDuration;
use ricochet_embedded::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use ricochet_embedded::{
    EchoNode, Ipv4Config, NoLed, NodeConfig, NodeResources, SessionBuffer, StaticIpv4, TcpRxBuffer,
    TcpTxBuffer, UdpRxBuffer, UdpTxBuffer, socket_slots,
};

use crate::enet::Enet;

/// How often the node's counters are logged.
const STATS_EVERY: SmolDuration = SmolDuration::from_secs(10);
/// Core clock after reset on QEMU's lm3s6965evb, in Hz: RCC = 0x078E3AC0,
/// 200 MHz PLL / (SYSDIV + 1) = 12.5 MHz. Its SysTick has no reference
/// clock (SYST_CALIB reads 0), so SysTick counts this. (DWT CYCCNT reads 0
/// in QEMU and cannot be used.)
const SYSCLK_HZ: u32 = 12_500_000;
/// The longest UDP payload echoed.
const MAX_DATAGRAM: usize = 1400;

/// TCP sockets, and each one's receive window and transmit buffer. The
/// default keeps all of RAM within 32 KiB; `big-buffers` trades footprint
/// for throughput (one socket per mode, all of RAM within the LM3S6965's
/// 64 KiB).
const SOCKETS: usize = if cfg!(feature = "big-buffers") { 3 } else { 4 };
const TCP_RX: usize = if cfg!(feature = "big-buffers") {
    6144
} else {
    1024
};
const TCP_TX: usize = if cfg!(feature = "big-buffers") {
    8192
} else {
    1536
};
/// The UDP rings: the largest datagram a 1500-byte MTU carries, and the
/// largest echoed; none without UDP.
const UDP_RX: usize = if cfg!(feature = "udp") { 1536 } else { 0 };
const UDP_TX: usize = if cfg!(feature = "udp") { 1472 } else { 0 };
type Resources = NodeResources<
    'static,
    SOCKETS,
    { socket_slots(SOCKETS) },
    SessionBuffer<1024>,
    TcpRxBuffer<TCP_RX>,
    TcpTxBuffer<TCP_TX>,
    UdpRxBuffer<UDP_RX>,
    UdpTxBuffer<UDP_TX>,
>;
type Node = EchoNode<'static, SOCKETS>;

#[entry]
fn main() -> ! {
    // cortex-m-rt turns these two into `&'static mut` borrows, safe because
    // the entry point runs once: no run-time "taken once" check (and panic
    // path) as with a `StaticCell`. Every buffer of the node: all zero or
    // uninitialised, so in `.bss`.
    static mut RESOURCES: Resources = NodeResources::new();
    // Where the node is built, so it never exists as a stack temporary.
    static mut NODE: MaybeUninit<Node> = MaybeUninit::uninit();
    // SAFETY: `main` runs once and nothing else takes the core
    // peripherals, so this is their only instance (`take` would check that
    // at run time, at the cost of a critical section and a panic path).
    let core = unsafe { cortex_m::Peripherals::steal() };
    let mut clock = match Clock::start(core.SYST, SYSCLK_HZ) {
        Ok(clock) => clock,
        Err(e) => defmt::panic!("clock: {}", e),
    };
    let enet = Enet::take().expect("Ethernet controller taken once");
    let mac = enet.mac_address();
    defmt::info!("ricochet: lm3s6965evb up, mac {}", mac);
    ricochet_qemu_rt::selftest();
    let node = start(RESOURCES, NODE, enet, mac, &clock);

    let mut stats = Every::new(STATS_EVERY);
    let mut reported_errors = 0;
    loop {
        let now = clock.now();
        let wake = node.poll(now, enet).map(|delay| now + delay);
        if stats.due(now) {
            node.log_stats();
        }
        let enet_stats = enet.stats();
        if enet_stats.errors() != reported_errors {
            reported_errors = enet_stats.errors();
            defmt::warn!("enet: {}", enet_stats);
        }
        // Until the next deadline (`None`: only a frame brings work; the
        // stats log still wakes us) or a frame.
        clock.sleep_until(stats.earliest(wake), || enet.arm_rx_wakeup());
    }
}

/// Builds the node in its static. Never inlined: the temporaries of
/// building it must not stay reserved in `main`'s stack frame, which lives
/// forever.
#[inline(never)]
fn start(
    resources: &'static mut Resources,
    slot: &'static mut MaybeUninit<Node>,
    enet: &mut Enet,
    mac: EthernetAddress,
    clock: &Clock,
) -> &'static mut Node {
    let mut config = NodeConfig::new(mac);
    config.random_seed = random_seed(mac, clock);
    // Raw on 7 (and UDP), lines on 7001, frames on 7002.
    config.serve_every_mode();
    // QEMU's slirp hands out 10.0.2.15 by DHCP; this is used if it does not
    // (and at once without the `dhcp` feature).
    let slirp = StaticIpv4 {
        address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
        gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
    };
    config.ipv4 = if cfg!(feature = "dhcp") {
        Ipv4Config::Dhcp {
            fallback: Some(slirp),
            fallback_after: Duration::from_secs(2),
        }
    } else {
        Ipv4Config::Static(slirp)
    };
    // Echo UDP payloads up to 1400 bytes. Anything up to 1472 still arrives
    // unfragmented on a 1500-byte MTU, so a longer datagram is dropped and
    // counted by the policy (never truncated); `cargo xtask ci qemu` checks it.
    config.udp = cfg!(feature = "udp").then_some(PolicyConfig {
        max_datagram: MAX_DATAGRAM,
        ..PolicyConfig::DEFAULT
    });
    match EchoNode::init(slot, config, resources, NoLed, enet, clock.now()) {
        Ok(node) => node,
        Err(e) => defmt::panic!("node: {}", e),
    }
}

/// smoltcp's seed (TCP initial sequence numbers, DHCP transaction ids): the
/// MAC and the SysTick phase. Not cryptographic; QEMU has no RNG.
fn random_seed(mac: EthernetAddress, clock: &Clock) -> u64 {
    let [a, b, c, d, e, f] = mac.0;
    u64::from_le_bytes([a, b, c, d, e, f, 0, 0]) ^ (u64::from(clock.jitter()) << 32)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == enet::IRQ as i16 {
        enet::on_interrupt();
    } else {
        defmt::panic!("unexpected interrupt {}", irqn);
    }
}
