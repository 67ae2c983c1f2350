//! The node's setup and the poll/sleep loop every MPS2 board runs.

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use ricochet_cortex_m_clock::{Clock, Every};
use ricochet_embedded::ricochet_core::{Duration, PolicyConfig};
use ricochet_embedded::smoltcp::time::{Duration as SmolDuration, Instant};
use ricochet_embedded::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use ricochet_embedded::{EchoNode, Ipv4Config, NoLed, NodeConfig, NodeResources, StaticIpv4};
use ricochet_lan9118::{Lan9118, Mmio, Registers};
use static_cell::{ConstStaticCell, StaticCell};

/// The LAN9118 driver on the register window at `BASE`: the type of a
/// board's `static ETH`.
pub type Eth<const BASE: usize> = Lan9118<Mmio<BASE>>;

/// What differs between the MPS2 images, for [`run`].
pub struct Board {
    /// The QEMU machine's name (`mps2-an385`), logged at boot.
    pub name: defmt::Str,
    /// The clock SysTick counts (SYSCLK): 25 MHz on the AN385 and AN500
    /// (QEMU `hw/arm/mps2.c`), 20 MHz on the AN505 (`hw/arm/mps2-tz.c`).
    pub core_hz: u32,
    /// The LAN9118's NVIC line (13 on the AN385 and AN500, 48 on the
    /// AN505). Its handler must call [`crate::on_interrupt`].
    pub eth_irq: u16,
    /// The MAC used if the controller's EEPROM holds none (QEMU always
    /// provides one): locally administered.
    pub fallback_mac: EthernetAddress,
}

/// The longest UDP payload echoed (longer ones are dropped and counted).
const MAX_DATAGRAM: usize = 1400;

/// Every buffer of the node (4 TCP sockets, the defaults), in `.bss`.
static RESOURCES: ConstStaticCell<NodeResources<'static>> =
    ConstStaticCell::new(NodeResources::new());
type Node = EchoNode<'static, 4>;
static NODE: StaticCell<Node> = StaticCell::new();

/// Runs the board: SysTick as the clock, the LAN9118 brought up and its
/// interrupt unmasked, the echo node built, then the loop (poll the node,
/// log the stats every 10 s and any new driver error, sleep until the next
/// deadline or frame). Call it once, from `#[entry]`; it panics (logged,
/// QEMU exits with status 1) if the clock, the controller or the node
/// cannot start.
///
/// Always inlined into the board's `main`, where `board` is a constant:
/// the frequency check, the NVIC line and the fallback MAC then fold into
/// the code as they did when each board wrote its own loop (a call costs
/// about 170 bytes of flash).
#[inline(always)]
pub fn run<R: Registers>(board: Board, eth: &'static mut Lan9118<R>) -> ! {
    let core = cortex_m::Peripherals::take().expect("core peripherals taken once");
    let mut clock = match Clock::start(core.SYST, board.core_hz) {
        Ok(clock) => clock,
        Err(e) => defmt::panic!("clock: {}", e),
    };
    // QEMU's LAN9118 model never wakes QEMU's main loop, which slirp needs
    // to see a new connection: tick every millisecond while traffic flows.
    clock.tick_while_busy(SmolDuration::from_millis(1), SmolDuration::from_secs(1));
    if let Err(e) = eth.init(board.fallback_mac) {
        defmt::panic!("lan9118: {}", e);
    }
    // SAFETY: the handler for this line calls `on_interrupt`, which only
    // masks the controller's interrupt, so unmasking it breaks no critical
    // section.
    unsafe { NVIC::unmask(EthIrq(board.eth_irq)) };
    let mac = eth.mac_address();
    // The MAC follows in the node's first line.
    defmt::info!(
        "ricochet: {=istr} up, lan9118 id {=u32:#010x}",
        board.name,
        eth.id_rev()
    );
    ricochet_qemu_rt::selftest();
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
/// building it must not stay reserved in `run`'s stack frame.
#[inline(never)]
fn start<R: Registers>(
    eth: &mut Lan9118<R>,
    mac: EthernetAddress,
    clock: &Clock,
) -> &'static mut Node {
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
struct EthIrq(u16);

// SAFETY: `number` always returns the line the board named; NVIC bounds
// checks it against its register arrays, and a line that is not the
// LAN9118's only reaches `on_interrupt`, which panics on it.
unsafe impl InterruptNumber for EthIrq {
    fn number(self) -> u16 {
        self.0
    }
}
