//! Ricochet on QEMU's `lm3s6965evb`: the Stellaris Ethernet MAC driven by
//! smoltcp, serving echo on TCP and UDP port 7.
//!
//! For now the echo service is the plain smoltcp one in [`echo`] (a driver
//! check); the shared `ricochet-embedded` crate replaces it by swapping the
//! closure passed to [`run`]. Logs go out as defmt frames over semihosting:
//! run with `cargo run --release` (see `qemu-run.sh`).

#![no_std]
#![no_main]

mod clock;
mod echo;
mod enet;
mod net;

use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::{ExceptionFrame, entry, exception};
use defmt_semihosting as _;
use smoltcp::iface::{SocketSet, SocketStorage};
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use static_cell::StaticCell;

use crate::enet::Enet;
use crate::net::{Net, StaticIpv4};

/// Used when no DHCP lease arrives (QEMU's slirp hands out this address).
const FALLBACK: StaticIpv4 = StaticIpv4 {
    address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
    gateway: Ipv4Address::new(10, 0, 2, 2),
    after: Duration::from_secs(2),
};

/// The DHCP socket plus the echo service's.
/// Filled at run time: `SocketStorage::EMPTY` is not all-zero bytes, so a
/// const-initialised static would sit in `.data` and cost flash.
static SOCKETS: StaticCell<[SocketStorage<'static>; 1 + echo::SOCKETS]> = StaticCell::new();

defmt::timestamp!("{=u64:ms}", clock::now_ms());

#[entry]
fn main() -> ! {
    let core = cortex_m::Peripherals::take().expect("core peripherals taken once");
    clock::init(core.SYST);
    let enet = Enet::take().expect("Ethernet controller taken once");
    let mac = enet.mac_address();
    defmt::info!("ricochet: lm3s6965evb up, mac {}", mac);

    let mut net = Net::new(
        enet,
        mac,
        random_seed(mac),
        SOCKETS.init([SocketStorage::EMPTY; 1 + echo::SOCKETS]),
        FALLBACK,
        clock::smoltcp_now(),
    );
    let mut echo = echo::Echo::new(&mut net.sockets);
    run(enet, &mut net, |sockets| echo.service(sockets))
}

/// The poll/sleep loop: polls the stack, lets `app` service its sockets,
/// then sleeps until a frame arrives or the stack's next deadline.
fn run(enet: &mut Enet, net: &mut Net<'_>, mut app: impl FnMut(&mut SocketSet<'_>)) -> ! {
    let mut reported_errors = 0;
    loop {
        let now = clock::now_ms();
        if let Some(address) = net.poll(clock::to_smoltcp(now), enet) {
            defmt::info!(
                "ricochet: listening on tcp/udp port {}, ip {}",
                echo::PORT,
                address.address()
            );
        }
        app(&mut net.sockets);

        let stats = enet.stats();
        if stats.errors() != reported_errors {
            reported_errors = stats.errors();
            defmt::warn!("enet: {}", stats);
        }

        // Zero when the application queued data: the next poll sends it.
        let delay = net.poll_delay(clock::to_smoltcp(now));
        sleep(enet, delay.map(|delay| clock::deadline_ms(now, delay)));
    }
}

/// Sleeps (`wfi`) until a frame is waiting or the clock reaches `deadline`
/// (milliseconds; `None`: no deadline).
///
/// Interrupts are disabled around the check and the `wfi`, so an interrupt
/// arriving in between stays pending and makes `wfi` return at once; the
/// handlers run when interrupts are enabled again. SysTick wakes the core
/// every millisecond to re-check the deadline.
fn sleep(enet: &mut Enet, deadline: Option<u64>) {
    loop {
        let wake = cortex_m::interrupt::free(|_| {
            if enet.arm_rx_wakeup() || deadline.is_some_and(|at| clock::now_ms() >= at) {
                return true;
            }
            cortex_m::asm::wfi();
            false
        });
        if wake {
            return;
        }
    }
}

/// smoltcp's seed (TCP initial sequence numbers, DHCP transaction ids): the
/// MAC and the SysTick phase. Not cryptographic; QEMU has no RNG.
fn random_seed(mac: EthernetAddress) -> u64 {
    let [a, b, c, d, e, f] = mac.0;
    u64::from_le_bytes([a, b, c, d, e, f, 0, 0]) ^ (u64::from(clock::jitter()) << 32)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == enet::IRQ as i16 {
        enet::on_interrupt();
    } else {
        panic!("unexpected interrupt {}", irqn);
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
    // A panic while logging (for example inside the defmt logger) must not
    // recurse.
    if !PANICKED.swap(true, Ordering::Relaxed) {
        defmt::error!("panic: {}", defmt::Display2Format(info));
    }
    semihosting::process::exit(1)
}
