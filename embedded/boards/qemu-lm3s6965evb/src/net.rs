//! The smoltcp interface and its addressing: DHCPv4 with a static IPv4
//! fallback, plus an IPv6 link-local address derived from the MAC.
//!
//! Board independent: it only needs a `smoltcp::phy::Device` and the time.

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};

/// The address to use when no DHCP lease arrives in time.
#[derive(Clone, Copy)]
pub struct StaticIpv4 {
    /// Address and prefix length.
    pub address: Ipv4Cidr,
    /// Default gateway.
    pub gateway: Ipv4Address,
    /// How long to wait for a lease before using this address.
    pub after: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ipv4State {
    /// No IPv4 address yet; the fallback applies at `since + after`.
    Waiting { since: Instant },
    /// Configured from a DHCP lease.
    Leased,
    /// Configured from the static fallback (DHCP keeps trying).
    Static,
}

/// The interface, its sockets and the DHCP client.
pub struct Net<'a> {
    /// The smoltcp interface.
    pub iface: Interface,
    /// Every socket: the DHCP client's and the application's.
    pub sockets: SocketSet<'a>,
    dhcp: SocketHandle,
    fallback: StaticIpv4,
    ipv4: Ipv4State,
}

impl<'a> Net<'a> {
    /// Creates the interface for `mac` and starts DHCP. `storage` must have
    /// room for the DHCP socket plus the application's sockets.
    pub fn new<D: Device + ?Sized>(
        device: &mut D,
        mac: EthernetAddress,
        random_seed: u64,
        storage: &'a mut [SocketStorage<'a>],
        fallback: StaticIpv4,
        now: Instant,
    ) -> Self {
        let mut config = Config::new(mac.into());
        config.random_seed = random_seed;
        let mut iface = Interface::new(config, device, now);
        iface.update_ip_addrs(|addrs| {
            // Capacity is smoltcp's IFACE_MAX_ADDR_COUNT (2): this one and
            // the IPv4 address.
            let _ = addrs.push(IpCidr::Ipv6(Ipv6Cidr::new(link_local(mac), 64)));
        });
        let mut sockets = SocketSet::new(storage);
        let dhcp = sockets.add(dhcpv4::Socket::new());
        Net {
            iface,
            sockets,
            dhcp,
            fallback,
            ipv4: Ipv4State::Waiting { since: now },
        }
    }

    /// Runs the stack once (ingress, egress, timers) and applies DHCP
    /// events and the fallback. Returns the new IPv4 address when it
    /// changed.
    pub fn poll<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> Option<Ipv4Cidr> {
        self.iface.poll(now, device, &mut self.sockets);
        let event = self.sockets.get_mut::<dhcpv4::Socket>(self.dhcp).poll();
        match event {
            Some(dhcpv4::Event::Configured(lease)) => {
                let (address, router) = (lease.address, lease.router);
                defmt::info!("dhcp: lease {} gateway {}", address, router);
                self.set_ipv4(Some((address, router)));
                self.ipv4 = Ipv4State::Leased;
                return Some(address);
            }
            Some(dhcpv4::Event::Deconfigured) if self.ipv4 == Ipv4State::Leased => {
                defmt::warn!("dhcp: lease lost");
                self.set_ipv4(None);
                self.ipv4 = Ipv4State::Waiting { since: now };
            }
            Some(dhcpv4::Event::Deconfigured) | None => {}
        }
        if let Ipv4State::Waiting { since } = self.ipv4
            && now >= since + self.fallback.after
        {
            let StaticIpv4 {
                address, gateway, ..
            } = self.fallback;
            defmt::warn!(
                "dhcp: no lease after {}, using static {} gateway {}",
                self.fallback.after,
                address,
                gateway
            );
            self.set_ipv4(Some((address, Some(gateway))));
            self.ipv4 = Ipv4State::Static;
            return Some(address);
        }
        None
    }

    /// Call when the link comes (back) up: restarts DHCP discovery at once
    /// (instead of at smoltcp's next 10 s retry) and, while there is no
    /// address yet, restarts the fallback delay. A lease from the previous
    /// link is dropped through the usual `Deconfigured` event.
    // Not every board reports link changes: QEMU's model has no PHY.
    #[allow(dead_code)]
    pub fn link_up(&mut self, now: Instant) {
        self.sockets.get_mut::<dhcpv4::Socket>(self.dhcp).reset();
        if let Ipv4State::Waiting { .. } = self.ipv4 {
            self.ipv4 = Ipv4State::Waiting { since: now };
        }
    }

    /// How long the stack may sleep before it must be polled again (`None`:
    /// until a frame arrives). Includes the fallback deadline.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        let stack = self.iface.poll_delay(now, &self.sockets);
        let fallback = match self.ipv4 {
            Ipv4State::Waiting { since } => {
                let at = since + self.fallback.after;
                Some(if at > now { at - now } else { Duration::ZERO })
            }
            Ipv4State::Leased | Ipv4State::Static => None,
        };
        match (stack, fallback) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Replaces the IPv4 address and default route, keeping IPv6 addresses.
    fn set_ipv4(&mut self, config: Option<(Ipv4Cidr, Option<Ipv4Address>)>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|cidr| !matches!(cidr, IpCidr::Ipv4(_)));
            if let Some((address, _)) = config
                && addrs.push(IpCidr::Ipv4(address)).is_err()
            {
                defmt::error!("net: no room for {}", address);
            }
        });
        let routes = self.iface.routes_mut();
        match config.and_then(|(_, router)| router) {
            Some(router) => {
                if routes.add_default_ipv4_route(router).is_err() {
                    defmt::error!("net: route table full");
                }
            }
            None => {
                routes.remove_default_ipv4_route();
            }
        }
    }
}

/// The EUI-64 link-local address (fe80::/64) of a MAC address.
fn link_local(mac: EthernetAddress) -> Ipv6Address {
    let [a, b, c, d, e, f] = mac.0;
    Ipv6Address::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([a ^ 0x02, b]),
        u16::from_be_bytes([c, 0xff]),
        u16::from_be_bytes([0xfe, d]),
        u16::from_be_bytes([e, f]),
    )
}
