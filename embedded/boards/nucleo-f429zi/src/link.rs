//! The LAN8742A PHY of the NUCLEO-F429ZI (MDIO address 0): link state, and
//! the MAC's speed/duplex to match what autonegotiation found.
//!
//! Polled (every [`CHECK_EVERY_MS`]) rather than interrupt driven: the PHY's
//! interrupt pin is not wired to the MCU on this board.

use ieee802_3_miim::Phy;
use ieee802_3_miim::phy::{LAN8742A, PhySpeed};
use stm32_eth::mac::{EthernetMACWithMii, Speed};
use stm32f4xx_hal::gpio::{Alternate, PA2, PC1};

/// MDIO address of the LAN8742A on the NUCLEO-144 boards.
const PHY_ADDRESS: u8 = 0;
/// How often the link state is read over MDIO.
pub const CHECK_EVERY_MS: u64 = 500;

/// The MAC with its management pins (MDIO on PA2, MDC on PC1, both AF11).
pub type Mac = EthernetMACWithMii<PA2<Alternate<11>>, PC1<Alternate<11>>>;

/// A change of link state.
#[derive(Clone, Copy, defmt::Format)]
pub enum LinkEvent {
    /// The link came up; the MAC now runs at this speed.
    Up(Speed),
    /// The link went down.
    Down,
}

/// The PHY and the last link state seen.
pub struct Link {
    phy: LAN8742A<Mac>,
    up: bool,
    next_check_ms: u64,
}

impl Link {
    /// Starts autonegotiation (advertising everything the PHY supports).
    pub fn new(mac: Mac) -> Self {
        let mut phy = LAN8742A::new(mac, PHY_ADDRESS);
        match phy.phy_ident() {
            Some(id) => defmt::info!("eth: phy id {=u32:#010x}", id.raw_u32()),
            None => defmt::warn!("eth: no PHY answers at MDIO address {}", PHY_ADDRESS),
        }
        phy.phy_init();
        Link {
            phy,
            up: false,
            next_check_ms: 0,
        }
    }

    /// Whether the link was up at the last check.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// When [`poll`](Self::poll) next wants to run.
    pub fn next_check_ms(&self) -> u64 {
        self.next_check_ms
    }

    /// Reads the link state if it is time to; reports a change.
    pub fn poll(&mut self, now_ms: u64) -> Option<LinkEvent> {
        if now_ms < self.next_check_ms {
            return None;
        }
        self.next_check_ms = now_ms + CHECK_EVERY_MS;
        let up = self.phy.link_established();
        if up == self.up {
            return None;
        }
        self.up = up;
        if !up {
            return Some(LinkEvent::Down);
        }
        let speed = match self.phy.link_speed() {
            Some(PhySpeed::HalfDuplexBase10T) => Speed::HalfDuplexBase10T,
            Some(PhySpeed::FullDuplexBase10T) => Speed::FullDuplexBase10T,
            Some(PhySpeed::HalfDuplexBase100Tx) => Speed::HalfDuplexBase100Tx,
            // The MAC's reset setting; also used if the PHY reports nonsense.
            Some(PhySpeed::FullDuplexBase100Tx) | None => Speed::FullDuplexBase100Tx,
        };
        self.phy.get_miim().set_speed(speed);
        Some(LinkEvent::Up(speed))
    }
}
