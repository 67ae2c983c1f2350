//! IPv4 by DHCP with a static fallback (or a fixed address), and the IPv6
//! link-local address derived from the MAC.

use ricochet_core::Instant;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
#[cfg(feature = "dhcp")]
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{IpCidr, Ipv4Cidr};

use crate::config::{Ipv4Config, StaticIpv4};
use crate::stats::{AddressStats, bump};

/// Where the IPv4 address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AddressSource {
    /// A DHCP lease.
    Dhcp,
    /// The static fallback, after no lease came in time (DHCP keeps trying).
    Fallback,
    /// The fixed address of [`Ipv4Config::Static`].
    Static,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No address yet; a fallback (if any) applies at `since + after`.
    Waiting {
        since: Instant,
    },
    Configured(AddressSource),
}

/// The IPv4 address's life.
pub(crate) struct Addressing {
    config: Ipv4Config,
    dhcp: Option<SocketHandle>,
    state: State,
}

impl Addressing {
    /// Applies a static address at once, or starts DHCP (its socket is
    /// added to `sockets`).
    pub(crate) fn new(
        config: Ipv4Config,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        now: Instant,
    ) -> Self {
        match config {
            Ipv4Config::Static(fixed) => {
                set_ipv4(iface, Some(fixed));
                Addressing {
                    config,
                    dhcp: None,
                    state: State::Configured(AddressSource::Static),
                }
            }
            Ipv4Config::Dhcp { .. } => Addressing {
                config,
                // Without the feature `EchoNode::new` refuses `Dhcp`.
                #[cfg(feature = "dhcp")]
                dhcp: Some(sockets.add(dhcpv4::Socket::new())),
                #[cfg(not(feature = "dhcp"))]
                dhcp: {
                    let _ = sockets;
                    None
                },
                state: State::Waiting { since: now },
            },
        }
    }

    /// Where the current address came from (`None`: no address yet).
    pub(crate) fn source(&self) -> Option<AddressSource> {
        match self.state {
            State::Waiting { .. } => None,
            State::Configured(source) => Some(source),
        }
    }

    /// Applies DHCP events and, once due, the fallback. Call after every
    /// interface poll.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        stats: &mut AddressStats,
    ) {
        let Some(handle) = self.dhcp else {
            return;
        };
        #[cfg(not(feature = "dhcp"))]
        let _ = (handle, sockets);
        #[cfg(feature = "dhcp")]
        match sockets.get_mut::<dhcpv4::Socket<'_>>(handle).poll() {
            Some(dhcpv4::Event::Configured(lease)) => {
                info!("dhcp: lease {} gateway {:?}", lease.address, lease.router);
                set_ipv4(
                    iface,
                    Some(StaticIpv4 {
                        address: lease.address,
                        gateway: lease.router,
                    }),
                );
                self.state = State::Configured(AddressSource::Dhcp);
                bump(&mut stats.leases);
            }
            Some(dhcpv4::Event::Deconfigured)
                if self.state == State::Configured(AddressSource::Dhcp) =>
            {
                warn!("dhcp: lease lost");
                set_ipv4(iface, None);
                self.state = State::Waiting { since: now };
                bump(&mut stats.lease_losses);
            }
            Some(dhcpv4::Event::Deconfigured) | None => {}
        }
        if let Some(at) = self.deadline()
            && now >= at
            && let Ipv4Config::Dhcp {
                fallback: Some(fallback),
                ..
            } = self.config
        {
            warn!(
                "dhcp: no lease in time, using {} gateway {:?}",
                fallback.address, fallback.gateway
            );
            set_ipv4(iface, Some(fallback));
            self.state = State::Configured(AddressSource::Fallback);
            bump(&mut stats.fallbacks);
        }
    }

    /// When the fallback is due (`None`: no fallback pending).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match (self.state, self.config) {
            (
                State::Waiting { since },
                Ipv4Config::Dhcp {
                    fallback: Some(_),
                    fallback_after,
                },
            ) => Some(since + fallback_after),
            _ => None,
        }
    }

    /// The link came (back) up: DHCP starts over at once, and while there
    /// is no address the fallback delay starts over too.
    pub(crate) fn link_up(&mut self, now: Instant, sockets: &mut SocketSet<'_>) {
        #[cfg(feature = "dhcp")]
        if let Some(handle) = self.dhcp {
            sockets.get_mut::<dhcpv4::Socket<'_>>(handle).reset();
        }
        #[cfg(not(feature = "dhcp"))]
        let _ = sockets;
        if let State::Waiting { .. } = self.state {
            self.state = State::Waiting { since: now };
        }
    }
}

/// Replaces the IPv4 address and default route, keeping other addresses.
fn set_ipv4(iface: &mut Interface, config: Option<StaticIpv4>) {
    iface.update_ip_addrs(|addrs| {
        addrs.retain(|cidr| !matches!(cidr, IpCidr::Ipv4(_)));
        if let Some(StaticIpv4 { address, .. }) = config
            && addrs.push(IpCidr::Ipv4(address)).is_err()
        {
            error!("net: no room for address {}", address);
        }
    });
    let routes = iface.routes_mut();
    match config.and_then(|c| c.gateway) {
        Some(gateway) => {
            if routes.add_default_ipv4_route(gateway).is_err() {
                error!("net: route table full");
            }
        }
        None => {
            routes.remove_default_ipv4_route();
        }
    }
}

/// The node's IPv4 address, if it has one.
pub(crate) fn ipv4_cidr(iface: &Interface) -> Option<Ipv4Cidr> {
    iface.ip_addrs().iter().find_map(|cidr| match cidr {
        IpCidr::Ipv4(v4) => Some(*v4),
        #[allow(unreachable_patterns)]
        _ => None,
    })
}

#[cfg(feature = "udp")]
/// Whether `addr` is a broadcast address on this interface: the limited
/// broadcast or the directed broadcast of one of its IPv4 networks.
pub(crate) fn is_ipv4_broadcast(iface: &Interface, addr: smoltcp::wire::Ipv4Address) -> bool {
    addr.is_broadcast()
        || iface.ip_addrs().iter().any(|cidr| match cidr {
            IpCidr::Ipv4(v4) => v4.broadcast() == Some(addr),
            #[allow(unreachable_patterns)]
            _ => false,
        })
}

/// The EUI-64 link-local address (fe80::/64) of a MAC address.
#[cfg(feature = "ipv6")]
pub(crate) fn link_local(mac: smoltcp::wire::EthernetAddress) -> smoltcp::wire::Ipv6Address {
    let [a, b, c, d, e, f] = mac.0;
    smoltcp::wire::Ipv6Address::new(
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
