//! Ricochet on the NUCLEO-F429ZI: the STM32F429's Ethernet MAC (through
//! stm32-eth's DMA rings) and the on-board LAN8742A PHY driven by smoltcp,
//! serving echo on TCP and UDP port 7.
//!
//! This folder holds only chip glue: clocks and pins, the MAC through
//! stm32-eth (`eth_device.rs`), the PHY link (`link.rs`) and this `main`;
//! SysTick is `ricochet-cortex-m-clock`. The echo node itself (sessions, policy,
//! DHCP, probe) is `ricochet-embedded`. Logs go out as defmt over RTT:
//! `cargo run --release` flashes the board with probe-rs and prints them
//! (README.md).

#![no_std]
#![no_main]

mod eth_device;
mod link;

use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::entry;
use defmt_rtt as _;
use embedded_hal::digital::{OutputPin, PinState};
use panic_probe as _;
use rand_core::RngCore;
use ricochet_cortex_m_clock::{Clock, Every, earliest};
use ricochet_embedded::ricochet_core::Duration;
use ricochet_embedded::smoltcp::time::{Duration as SmolDuration, Instant};
use ricochet_embedded::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use ricochet_embedded::{EchoNode, Ipv4Config, NoLed, NodeConfig, NodeResources, StaticIpv4};
use static_cell::{ConstStaticCell, StaticCell};
use stm32_eth::dma::{RxRingEntry, TxRingEntry};
use stm32_eth::{EthPins, Parts, PartsIn};
use stm32f4xx_hal::gpio::{GpioExt, Speed};
use stm32f4xx_hal::pac::{self, interrupt};
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Clocks;
use stm32f4xx_hal::rng::RngExt;

use crate::eth_device::EthDevice;
use crate::link::{Link, LinkEvent};

/// Used when no DHCP lease arrives within 2 s of link-up.
const FALLBACK: StaticIpv4 = StaticIpv4 {
    address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 1, 50), 24),
    gateway: Some(Ipv4Address::new(192, 168, 1, 1)),
};

/// How often the node's counters are logged.
const STATS_EVERY: SmolDuration = SmolDuration::from_secs(10);

/// NUCLEO-144 boards feed the ST-LINK's 8 MHz MCO into PH0 (HSE bypass) in
/// their default solder-bridge setting. Set to `false` to run from the
/// internal 16 MHz RC oscillator instead (Ethernet timing comes from the
/// PHY's own 25 MHz crystal either way).
const HSE_BYPASS_8MHZ: bool = true;

const RX_DESCRIPTORS: usize = 8;
const TX_DESCRIPTORS: usize = 4;

// DMA descriptors and buffers: in SRAM1-3 (`RAM` in memory.x), which the
// Ethernet DMA can reach; CCM RAM is not used.
static RX_RING: ConstStaticCell<[RxRingEntry; RX_DESCRIPTORS]> =
    ConstStaticCell::new([RxRingEntry::RX_INIT; RX_DESCRIPTORS]);
static TX_RING: ConstStaticCell<[TxRingEntry; TX_DESCRIPTORS]> =
    ConstStaticCell::new([TxRingEntry::INIT; TX_DESCRIPTORS]);
/// Every buffer of the echo node (4 TCP sockets, the defaults), in `.bss`.
static RESOURCES: ConstStaticCell<NodeResources<'static>> =
    ConstStaticCell::new(NodeResources::new());
type Node = EchoNode<'static, 4>;
static NODE: StaticCell<Node> = StaticCell::new();

/// Set by the ETH interrupt: a frame arrived or a transmit descriptor freed.
static ETH_EVENT: AtomicBool = AtomicBool::new(false);

defmt::timestamp!("{=u64:ms}", ricochet_cortex_m_clock::millis());

#[entry]
fn main() -> ! {
    let dp = pac::Peripherals::take().expect("device peripherals taken once");
    let core = cortex_m::Peripherals::take().expect("core peripherals taken once");

    defmt::info!("ricochet: nucleo-f429zi booting");
    // Keep the debug port (RTT, probe-rs) alive while the core sleeps in wfi.
    dp.DBGMCU.cr.modify(|_, w| w.dbg_sleep().set_bit());

    let rcc = dp.RCC.constrain();
    let cfgr = rcc
        .cfgr
        .sysclk(168.MHz())
        .hclk(168.MHz())
        .require_pll48clk();
    let cfgr = if HSE_BYPASS_8MHZ {
        cfgr.use_hse(8.MHz()).bypass_hse_oscillator()
    } else {
        cfgr
    };
    let clocks = cfgr.freeze();
    let mut clock = match Clock::start(core.SYST, clocks.hclk().raw()) {
        Ok(clock) => clock,
        Err(e) => defmt::panic!("clock: {}", e),
    };
    defmt::info!(
        "ricochet: nucleo-f429zi up, sysclk {} Hz",
        clocks.sysclk().raw()
    );

    let gpioa = dp.GPIOA.split();
    let gpiob = dp.GPIOB.split();
    let gpioc = dp.GPIOC.split();
    let gpiog = dp.GPIOG.split();
    let mut led = gpiob.pb0.into_push_pull_output();

    // RMII: stm32-eth switches these to AF11, very high speed.
    let pins = EthPins {
        ref_clk: gpioa.pa1.into_floating_input(),
        crs: gpioa.pa7.into_floating_input(),
        tx_en: gpiog.pg11.into_floating_input(),
        tx_d0: gpiog.pg13.into_floating_input(),
        tx_d1: gpiob.pb13.into_floating_input(),
        rx_d0: gpioc.pc4.into_floating_input(),
        rx_d1: gpioc.pc5.into_floating_input(),
    };
    let mdio = gpioa.pa2.into_alternate().speed(Speed::VeryHigh);
    let mdc = gpioc.pc1.into_alternate().speed(Speed::VeryHigh);
    let parts = PartsIn {
        mac: dp.ETHERNET_MAC,
        mmc: dp.ETHERNET_MMC,
        dma: dp.ETHERNET_DMA,
    };
    let Parts { mac, dma } = stm32_eth::new_with_mii(
        parts,
        RX_RING.take(),
        TX_RING.take(),
        clocks,
        pins,
        mdio,
        mdc,
    )
    .expect("HCLK is at least 25 MHz");
    dma.enable_interrupt();
    let mut device = EthDevice::new(dma);
    let mut link = Link::new(mac);

    let mac = mac_address();
    defmt::info!("eth: mac {}", mac);
    let seed = random_seed(dp.RNG, &clocks);
    let node = start(&mut device, mac, seed, &clock);
    run(&mut device, &mut link, &mut led, node, &mut clock)
}

/// Builds the node in its static (not inlined: the temporaries must not stay
/// reserved in `main`'s stack frame, which lives forever).
#[inline(never)]
fn start(
    device: &mut EthDevice<'static, 'static>,
    mac: EthernetAddress,
    seed: u64,
    clock: &Clock,
) -> &'static mut Node {
    let mut config = NodeConfig::new(mac);
    config.random_seed = seed;
    // Raw on 7 (and UDP), lines on 7001, frames on 7002.
    config.serve_every_mode();
    config.ipv4 = Ipv4Config::Dhcp {
        fallback: Some(FALLBACK),
        fallback_after: Duration::from_secs(2),
    };
    match EchoNode::init(
        NODE.uninit(),
        config,
        RESOURCES.take(),
        NoLed,
        device,
        clock.now(),
    ) {
        Ok(node) => node,
        Err(e) => panic!("node: {}", defmt::Display2Format(&e)),
    }
}

/// The poll/sleep loop: watches the link (LD1 on while it is up), polls the
/// node while the link is up, then sleeps until an Ethernet interrupt or the
/// next deadline.
fn run(
    device: &mut EthDevice<'_, '_>,
    link: &mut Link,
    led: &mut impl OutputPin,
    node: &mut Node,
    clock: &mut Clock,
) -> ! {
    let mut reported_errors = 0;
    let mut stats = Every::new(STATS_EVERY);
    loop {
        let now = clock.now();
        let now_ms = u64::try_from(now.total_millis()).unwrap_or(0);
        if let Some(event) = link.poll(now_ms) {
            match event {
                LinkEvent::Up(speed) => {
                    defmt::info!("eth: link up, {}", speed);
                    node.link_up(now);
                }
                LinkEvent::Down => defmt::warn!("eth: link down"),
            }
            let _ = led.set_state(PinState::from(matches!(event, LinkEvent::Up(_))));
        }
        // The node only runs while the link is up, so the DHCP fallback
        // delay counts from link-up (see `EchoNode::link_up`), not from boot.
        let mut wake = None;
        if link.is_up() {
            wake = node.poll(now, device).map(|delay| now + delay);
        }
        if stats.due(now) {
            node.log_stats();
        }

        let eth_stats = device.stats();
        if eth_stats.rx_errors != reported_errors {
            reported_errors = eth_stats.rx_errors;
            defmt::warn!("eth: {}", eth_stats);
        }

        let link_check =
            Instant::from_millis(i64::try_from(link.next_check_ms()).unwrap_or(i64::MAX));
        let deadline = stats.earliest(Some(earliest(wake, link_check)));
        // While the link is down only the link check and the stats matter:
        // an Ethernet event is consumed but does not end the sleep.
        let up = link.is_up();
        clock.sleep_until(deadline, || {
            let eth_event = ETH_EVENT.swap(false, Ordering::Relaxed);
            up && (eth_event || device.rx_pending())
        });
    }
}

#[interrupt]
fn ETH() {
    // Clears the DMA's interrupt flags (else the interrupt fires again at
    // once); the frames themselves are handled in thread mode.
    let _ = stm32_eth::eth_interrupt_handler();
    ETH_EVENT.store(true, Ordering::Relaxed);
}

/// A locally administered MAC address (02:52:43:xx:xx:xx) derived from the
/// chip's 96-bit unique ID: stable across boots, distinct between boards.
fn mac_address() -> EthernetAddress {
    /// Address of the unique device ID in system memory (RM0090 §39.1).
    const UID: *const [u32; 3] = 0x1FFF_7A10 as *const [u32; 3];
    // SAFETY: the unique ID is a read-only, word-aligned, factory-programmed
    // block present on every STM32F4; reading it has no side effects.
    let uid = unsafe { core::ptr::read_volatile(UID) };
    // FNV-1a over the 12 bytes.
    let mut hash: u32 = 0x811C_9DC5;
    for byte in uid.iter().flat_map(|word| word.to_le_bytes()) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = hash.to_le_bytes();
    EthernetAddress([0x02, 0x52, 0x43, a, b, c])
}

/// smoltcp's seed (TCP initial sequence numbers, DHCP transaction ids) from
/// the hardware RNG, or from the clock if the RNG reports an error.
fn random_seed(rng: pac::RNG, clocks: &Clocks) -> u64 {
    let mut rng = rng.constrain(clocks);
    let mut bytes = [0u8; 8];
    match rng.try_fill_bytes(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => {
            defmt::warn!("rng: error, seeding from the clock");
            ricochet_cortex_m_clock::millis()
                ^ u64::from(cortex_m::peripheral::SYST::get_current()) << 32
        }
    }
}
