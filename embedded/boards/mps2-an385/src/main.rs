//! Ricochet on Arm's MPS2 with the AN385 FPGA image (Cortex-M3), as QEMU's
//! `mps2-an385` models it: the LAN9118 Ethernet controller driven by
//! smoltcp, serving echo on TCP and UDP port 7 through `ricochet-embedded`.
//! Logs go out as defmt frames over semihosting: run with
//! `cargo run --release` (see `../qemu-run.sh`).
//!
//! Chip glue only: the addresses below, the interrupt routing and the
//! exception handlers. The driver is `ricochet-lan9118`, the clock
//! `ricochet-cortex-m-clock`, the echo node `ricochet-embedded`.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use ricochet_compact_rt as _;

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{ExceptionFrame, entry, exception};
use defmt_semihosting as _;
use ricochet_cortex_m_clock::{Clock, Every};
use ricochet_embedded::ricochet_core::{Duration, PolicyConfig};
use ricochet_embedded::smoltcp::time::{Duration as SmolDuration, Instant};
use ricochet_embedded::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use ricochet_embedded::{EchoNode, Ipv4Config, NoLed, NodeConfig, NodeResources, StaticIpv4};
use ricochet_lan9118::{Lan9118, Mmio};
use static_cell::{ConstStaticCell, StaticCell};

/// SYSCLK of the MPS2 FPGA images (QEMU `hw/arm/mps2.c`); SysTick counts it.
const CORE_HZ: u32 = 25_000_000;
/// The LAN9118's register window and NVIC line on the AN385.
const ETH_BASE: usize = 0x4020_0000;
const ETH_IRQ: u16 = 13;
/// Used only if the controller's EEPROM holds no address (QEMU always
/// provides one): locally administered.
const FALLBACK_MAC: EthernetAddress = EthernetAddress([0x02, 0x52, 0x43, 0x00, 0x03, 0x85]);
/// The longest UDP payload echoed (longer ones are dropped and counted).
const MAX_DATAGRAM: usize = 1400;

// SAFETY: ETH_BASE is the AN385's LAN9118 window (256 bytes of device
// memory); this driver and `DefaultHandler` (INT_EN only) are its only users.
static ETH: ConstStaticCell<Lan9118<EthRegs>> =
    ConstStaticCell::new(Lan9118::new(unsafe { EthRegs::new() }));
type EthRegs = Mmio<ETH_BASE>;
/// Every buffer of the node (4 TCP sockets, the defaults), in `.bss`.
static RESOURCES: ConstStaticCell<NodeResources<'static>> =
    ConstStaticCell::new(NodeResources::new());
type Node = EchoNode<'static, 4>;
static NODE: StaticCell<Node> = StaticCell::new();

defmt::timestamp!("{=u64:ms}", ricochet_cortex_m_clock::millis());

#[entry]
fn main() -> ! {
    let core = cortex_m::Peripherals::take().expect("core peripherals taken once");
    let mut clock = match Clock::start(core.SYST, CORE_HZ) {
        Ok(clock) => clock,
        Err(e) => defmt::panic!("clock: {}", e),
    };
    // QEMU's LAN9118 model never wakes QEMU's main loop, which slirp needs
    // to see a new connection: tick every millisecond while traffic flows.
    clock.tick_while_busy(SmolDuration::from_millis(1), SmolDuration::from_secs(1));
    let eth = ETH.take();
    if let Err(e) = eth.init(FALLBACK_MAC) {
        defmt::panic!("lan9118: {}", e);
    }
    // SAFETY: the handler for this line (`DefaultHandler`) only masks the
    // controller's interrupt, so unmasking it breaks no critical section.
    unsafe { NVIC::unmask(EthIrq) };
    let mac = eth.mac_address();
    defmt::info!(
        "ricochet: mps2-an385 up, lan9118 id {=u32:#010x}, mac {}",
        eth.id_rev(),
        mac
    );
    let node = start(eth, mac, &clock);

    let mut stats = Every::new(SmolDuration::from_secs(10));
    let mut reported_errors = 0;
    loop {
        let now = clock.now();
        let wake = node.poll(now, eth).map(|delay| now + delay);
        if stats.due(now) {
            node.log_stats();
        }
        if eth.stats().errors() != reported_errors {
            reported_errors = eth.stats().errors();
            defmt::warn!("lan9118: {}", eth.stats());
        }
        clock.sleep_until(stats.earliest(wake), || eth.arm_wakeup());
    }
}

/// Builds the node in its static. Never inlined: the temporaries of
/// building it must not stay reserved in `main`'s stack frame.
#[inline(never)]
fn start(eth: &mut Lan9118<EthRegs>, mac: EthernetAddress, clock: &Clock) -> &'static mut Node {
    let mut config = NodeConfig::new(mac);
    // Raw on 7 (and UDP), lines on 7001, frames on 7002.
    config.serve_every_mode();
    // Not cryptographic: the MAC and the SysTick phase (QEMU has no RNG).
    let [a, b, c, d, e, f] = mac.0;
    config.random_seed =
        u64::from_le_bytes([a, b, c, d, e, f, 0, 0]) ^ (u64::from(clock.jitter()) << 32);
    // QEMU's slirp hands out 10.0.2.15 by DHCP; this is used if it does not.
    config.ipv4 = Ipv4Config::Dhcp {
        fallback: Some(StaticIpv4 {
            address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
            gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
        }),
        fallback_after: Duration::from_secs(2),
    };
    config.udp = Some(PolicyConfig {
        max_datagram: MAX_DATAGRAM,
        ..PolicyConfig::DEFAULT
    });
    let now: Instant = clock.now();
    match EchoNode::init(NODE.uninit(), config, RESOURCES.take(), NoLed, eth, now) {
        Ok(node) => node,
        Err(e) => defmt::panic!("node: {}", e),
    }
}

/// The LAN9118's NVIC line.
#[derive(Clone, Copy)]
struct EthIrq;

// SAFETY: ETH_IRQ is the LAN9118's line on the AN385 (QEMU wires it to
// input 13 of the 32 the machine has); `number` always returns it.
unsafe impl InterruptNumber for EthIrq {
    fn number(self) -> u16 {
        ETH_IRQ
    }
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == ETH_IRQ as i16 {
        // SAFETY: the LAN9118's window; `on_interrupt` writes INT_EN only,
        // which thread mode writes only with interrupts masked.
        ricochet_lan9118::on_interrupt(&mut unsafe { EthRegs::new() });
    } else {
        defmt::panic!("unexpected interrupt {}", irqn);
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!(
        "hard fault: pc {=u32:#010x} lr {=u32:#010x}",
        frame.pc(),
        frame.lr()
    );
    semihosting::process::exit(1)
}

/// Logs the panic through defmt and ends the QEMU process with status 1.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    static PANICKED: AtomicBool = AtomicBool::new(false);
    // A panic while logging must not recurse. Nothing of `info` is read:
    // then the compiler drops every panic site's location and message
    // (about 10 KiB of flash); our own panics go through defmt::panic!,
    // which logs its message first.
    if !PANICKED.swap(true, Ordering::Relaxed) {
        let _ = info;
        defmt::error!("panic");
    }
    semihosting::process::exit(1)
}
