//! What to say at start-up of each IPv6 wildcard listener (`[::]:PORT`):
//! the server's own (always IPv6-only, so that `0.0.0.0` and `[::]` can be
//! bound side by side) and those a service manager passed (IPv6-only or
//! dual-stack, as its socket unit says: systemd's `BindIPv6Only=`).
//!
//! An IPv6-only wildcard takes no IPv4 client, where many servers would; and
//! where no interface has an IPv6 address it binds and serves no one. Each
//! case gets a line that names the fix: the flag to add for the server's own
//! sockets, the socket unit's setting for inherited ones.

use std::net::SocketAddr;

use ricochet::serve::{InheritedSocket, ServerConfig};
use socket2::SockRef;

/// What this network namespace has of IPv6, for what `[::]` will serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ipv6Here {
    /// Some interface has an IPv6 address (or it cannot be told: no `/proc`).
    Addresses,
    /// None has one, and `net.ipv6.conf.all.disable_ipv6` is 1.
    Disabled,
    /// None has one (disabled on each interface, or none configured).
    NoAddress,
}

impl Ipv6Here {
    /// Read from this network namespace's IPv6 addresses and
    /// `net.ipv6.conf.all.disable_ipv6`.
    pub(super) fn read() -> Ipv6Here {
        match ricochet::serve::ipv6_addresses_here() {
            Some(list) if list.is_empty() => {
                match std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6") {
                    Ok(v) if v.trim() == "1" => Ipv6Here::Disabled,
                    _ => Ipv6Here::NoAddress,
                }
            }
            _ => Ipv6Here::Addresses,
        }
    }
}

/// An inherited TCP or UDP socket on a wildcard address, read before the
/// sockets are handed to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct InheritedWildcard {
    /// `tcp` or `udp`.
    kind: &'static str,
    addr: SocketAddr,
    /// `[::]` with `IPV6_V6ONLY` off also takes IPv4 clients (systemd's
    /// default where `net.ipv6.bindv6only` is 0); `0.0.0.0` takes only them.
    takes_ipv4: bool,
}

impl InheritedWildcard {
    /// The wildcard ones among `sockets` (a socket whose `IPV6_V6ONLY`
    /// cannot be read is taken as dual-stack: nothing is said of it).
    pub(super) fn among(sockets: &[InheritedSocket]) -> Vec<InheritedWildcard> {
        sockets
            .iter()
            .filter_map(|socket| {
                let (kind, only_v6) = match socket {
                    InheritedSocket::Tcp(l) => ("tcp", SockRef::from(l).only_v6()),
                    InheritedSocket::Udp(s) => ("udp", SockRef::from(s).only_v6()),
                    InheritedSocket::Unix(_) => return None,
                };
                let addr = socket.socket_addr()?;
                addr.ip().is_unspecified().then(|| InheritedWildcard {
                    kind,
                    addr,
                    takes_ipv4: addr.is_ipv4() || !only_v6.unwrap_or(false),
                })
            })
            .collect()
    }
}

/// Whose socket a line speaks of, for the fix it names.
#[derive(Clone, Copy)]
enum Owner {
    /// Bound by the server from its flags: the fix is a flag.
    Own,
    /// Passed by a service manager: the fix is in its socket unit.
    Inherited,
}

/// What to say of each IPv6-only wildcard address (`[::]:PORT`), the
/// server's own and `inherited` ones: a warning where no interface has an
/// IPv6 address (the listener binds and serves no one: IPv6 is disabled,
/// e.g. in a network namespace with `net.ipv6.conf.*.disable_ipv6 = 1`);
/// else, with no wildcard of the same kind beside it that takes IPv4
/// clients, a note that it is IPv6-only, and an IPv4 client is refused,
/// where many servers would take it. A dual-stack inherited `[::]` takes
/// IPv4 clients whatever IPv6 has: nothing is said of it. `(warnings,
/// notes)`.
pub(super) fn ipv6_wildcard_notes(
    config: &ServerConfig,
    inherited: &[InheritedWildcard],
    ipv6: Ipv6Here,
) -> (Vec<String>, Vec<String>) {
    let tls: &[SocketAddr] = config.tls.as_ref().map_or(&[], |t| &t.listen);
    let (mut warnings, mut notes) = (Vec::new(), Vec::new());
    for (kind, own) in [
        ("tcp", &config.tcp[..]),
        ("udp", &config.udp[..]),
        ("tls", tls),
    ] {
        let inherited = inherited.iter().filter(|w| w.kind == kind);
        let wildcards: Vec<(SocketAddr, bool, Owner)> = own
            .iter()
            .filter(|a| a.ip().is_unspecified())
            .map(|&a| (a, a.is_ipv4(), Owner::Own))
            .chain(inherited.map(|w| (w.addr, w.takes_ipv4, Owner::Inherited)))
            .collect();
        let v4_wildcard = wildcards.iter().any(|&(_, takes_ipv4, _)| takes_ipv4);
        for &(a, takes_ipv4, owner) in &wildcards {
            if takes_ipv4 {
                continue;
            }
            let fix = Fix::new(kind, a, owner);
            let why = match ipv6 {
                Ipv6Here::Addresses => {
                    if !v4_wildcard {
                        notes.push(format!(
                            "{kind} {a}{} takes IPv6 clients only ({}): {} for IPv4 clients{}",
                            fix.whose, fix.v6_only, fix.add, fix.own_port
                        ));
                    }
                    continue;
                }
                Ipv6Here::Disabled => {
                    "IPv6 is disabled: net.ipv6.conf.all.disable_ipv6 = 1, `sysctl -w \
                     net.ipv6.conf.all.disable_ipv6=0` enables it"
                }
                Ipv6Here::NoAddress => {
                    "IPv6 is disabled on each interface, net.ipv6.conf.IFACE.disable_ipv6, or \
                     none has an address yet: see `ip -6 addr`"
                }
            };
            let instead = if v4_wildcard {
                String::new()
            } else {
                format!("; {}{}", fix.instead, fix.own_port)
            };
            warnings.push(format!(
                "{kind} {a}{} serves no one: no interface here has an IPv6 address ({why}){instead}",
                fix.whose
            ));
        }
    }
    (warnings, notes)
}

/// The words of a line about one IPv6-only wildcard: whose it is and how to
/// take IPv4 clients too.
struct Fix {
    /// After the address: nothing for the server's own socket.
    whose: &'static str,
    /// Why it is IPv6-only.
    v6_only: &'static str,
    /// How to take IPv4 clients beside it.
    add: String,
    /// How to take IPv4 clients where IPv6 serves no one.
    instead: String,
    /// Port 0 picks a free port per socket: an IPv4 one the server binds
    /// gets a port of its own, not this one's.
    own_port: &'static str,
}

impl Fix {
    fn new(kind: &str, a: SocketAddr, owner: Owner) -> Fix {
        match owner {
            Owner::Own => {
                let v4 = format!("--{kind} 0.0.0.0:{}", a.port());
                Fix {
                    whose: "",
                    v6_only: "an IPv6 listener is IPv6-only",
                    add: format!("add {v4}"),
                    instead: format!("for IPv4 clients listen on {v4} instead"),
                    own_port: if a.port() == 0 {
                        " (on a port of its own: port 0 picks one per socket)"
                    } else {
                        ""
                    },
                }
            }
            Owner::Inherited => Fix {
                whose: " (inherited)",
                v6_only: "the service manager bound it IPv6-only",
                add: "set BindIPv6Only=both in its socket unit".to_owned(),
                instead: "the service manager bound it IPv6-only: set BindIPv6Only=both in its \
                          socket unit for IPv4 clients"
                    .to_owned(),
                own_port: "",
            },
        }
    }
}

#[cfg(test)]
mod tests;
