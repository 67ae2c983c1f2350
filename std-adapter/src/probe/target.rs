//! `TARGET` parsing: `tcp://host:port`, `udp://host:port`, `unix://path`,
//! `tls://host:port`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use super::tls::TlsTarget;
use crate::serve::{Scoped, parse_port};

/// Where the probe sends its traffic.
///
/// Parsed from `tcp://HOST:PORT`, `udp://HOST:PORT`, `tls://HOST:PORT` or
/// `unix://PATH`. IPv6 literals are bracketed (`tcp://[::1]:7`). Host names
/// are resolved once, at parse time, with [`ToSocketAddrs`]: a TCP or TLS
/// connection tries every resolved address in order until one connects;
/// UDP uses the first, and the next after a refusal. Shown (reports,
/// `--json`) as given: a host name by its name, not the address it
/// resolved to first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A TCP echo server; never empty.
    Tcp(Resolved),
    /// A UDP echo server; never empty.
    Udp(Resolved),
    /// A Unix stream socket echo server at this path.
    Unix(PathBuf),
    /// A TLS echo server (TLS over TCP), `tls://HOST:PORT`.
    Tls(TlsTarget),
}

/// The addresses a TCP or UDP target's host resolved to, in the order to
/// try them, and the host name given, if it was one (not an address).
/// Dereferences to the addresses; made from them alone with `From`
/// (`Target::Tcp(vec![addr].into())`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    addrs: Vec<SocketAddr>,
    name: Option<String>,
}

impl Resolved {
    /// `addrs`, resolved from the host name `name` (shown instead of them).
    pub fn named(addrs: Vec<SocketAddr>, name: impl Into<String>) -> Resolved {
        Resolved {
            addrs,
            name: Some(name.into()),
        }
    }

    /// The host name the addresses were resolved from; `None` for an
    /// address given as such.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl From<Vec<SocketAddr>> for Resolved {
    fn from(addrs: Vec<SocketAddr>) -> Resolved {
        Resolved { addrs, name: None }
    }
}

impl<'a> IntoIterator for &'a Resolved {
    type Item = &'a SocketAddr;
    type IntoIter = std::slice::Iter<'a, SocketAddr>;

    fn into_iter(self) -> Self::IntoIter {
        self.addrs.iter()
    }
}

impl std::ops::Deref for Resolved {
    type Target = [SocketAddr];

    fn deref(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// `scheme://HOST:PORT` as given: the host name with the port, or the first
/// address.
fn show(
    f: &mut fmt::Formatter<'_>,
    scheme: &str,
    name: Option<&str>,
    addrs: &[SocketAddr],
) -> fmt::Result {
    match (name, addrs.first()) {
        (Some(name), Some(addr)) => write!(f, "{scheme}://{name}:{}", addr.port()),
        (None, Some(addr)) => write!(f, "{scheme}://{}", Scoped(*addr)),
        (Some(name), None) => write!(f, "{scheme}://{name}"),
        (None, None) => write!(f, "{scheme}://?"),
    }
}

/// Why a `TARGET` string was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    /// The scheme is missing or not one of `tcp`, `udp`, `unix`.
    Scheme(String),
    /// `HOST:PORT` is malformed (missing port, bad port, empty host).
    Address(String),
    /// The host name did not resolve to any address.
    Resolve {
        /// The `HOST:PORT` text.
        address: String,
        /// The resolver's message.
        reason: String,
    },
    /// `unix://` with an empty path.
    EmptyPath,
    /// A link-local IPv6 address (`fe80::/10`) without its interface: it
    /// exists once per interface, so the interface must be named.
    LinkLocalWithoutScope(String),
    /// Port 0 (`HOST:0`): where `ricochet serve` picks a free port, not
    /// one a server listens on.
    PortZero(String),
    /// `[fe80::1%NAME]:PORT` names no network interface of this network
    /// namespace.
    NoInterface {
        /// The `HOST:PORT` text.
        address: String,
        /// The interface name given after `%`.
        name: String,
    },
}

/// A target that starts with one of our schemes, misspelt (`tcp:/h:p`,
/// `tcp:h:p`, `tcp//h:p`, `unix:/run/echo.sock`): the spelling meant.
fn respelled(s: &str) -> Option<String> {
    ["tcp", "udp", "tls", "unix"]
        .into_iter()
        .find_map(|scheme| {
            let head = s.get(..scheme.len())?;
            let rest = s.get(scheme.len()..)?;
            if !head.eq_ignore_ascii_case(scheme) || !rest.starts_with([':', '/']) {
                return None;
            }
            let rest = if scheme == "unix" {
                // The path keeps its own leading `/` (`unix:/run/x` is /run/x).
                let p = rest.strip_prefix(':').unwrap_or(rest);
                p.strip_prefix("//").unwrap_or(p)
            } else {
                rest.trim_start_matches([':', '/'])
            };
            (!rest.is_empty()).then(|| format!("{scheme}://{rest}"))
        })
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Scheme(s) => {
                write!(
                    f,
                    "unknown target scheme in {s:?}: expected tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT or unix://PATH"
                )?;
                if let Some(meant) = respelled(s) {
                    write!(f, "; did you mean {meant}?")
                } else if s.contains("://") {
                    Ok(())
                } else if s.starts_with('/') || s.starts_with('.') {
                    write!(f, "; for a Unix socket, write unix://{s}")
                } else if s
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && parse_port(port).is_some())
                {
                    write!(
                        f,
                        "; for an echo server at that address, write tcp://{s} (or udp://{s})"
                    )
                } else {
                    Ok(())
                }
            }
            TargetError::Address(s) => match crate::serve::address_slip(s, "PORT") {
                Some(slip) => write!(f, "bad address {s:?}: {slip}"),
                None => write!(
                    f,
                    "bad address {s:?}: expected HOST:PORT (IPv6 as [::1]:PORT)"
                ),
            },
            TargetError::Resolve { address, reason } => {
                write!(f, "cannot resolve {address:?}: {reason}")
            }
            TargetError::EmptyPath => f.write_str("unix:// needs a socket path"),
            TargetError::LinkLocalWithoutScope(s) => {
                let (ip, port) = s.parse::<SocketAddr>().map_or_else(
                    |_| ("fe80::1".to_owned(), "PORT".to_owned()),
                    |a| (a.ip().to_string(), a.port().to_string()),
                );
                write!(
                    f,
                    "{s:?} is a link-local IPv6 address, which exists once per interface: name \
                     the interface, e.g. [{ip}%eth0]:{port} (see `ip -6 addr`)"
                )
            }
            TargetError::PortZero(s) => write!(
                f,
                "bad address {s:?}: no server listens on port 0 (given to `ricochet serve`, it \
                 picks a free port): give the port the server printed, e.g. its `listening tcp \
                 127.0.0.1:PORT` line"
            ),
            TargetError::NoInterface { address, name } => write!(
                f,
                "bad address {address:?}: no network interface named {name:?} (see `ip link`)"
            ),
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// The transport's name: `tcp`, `udp` or `unix`.
    pub fn transport(&self) -> &'static str {
        match self {
            Target::Tcp(_) => "tcp",
            Target::Udp(_) => "udp",
            Target::Unix(_) => "unix",
            Target::Tls(_) => "tls",
        }
    }

    /// The addresses a TCP or TLS connection tries, in order.
    pub fn stream_addrs(&self) -> Option<&[SocketAddr]> {
        match self {
            Target::Tcp(a) => Some(a),
            Target::Tls(t) => Some(&t.addrs),
            Target::Udp(_) | Target::Unix(_) => None,
        }
    }

    /// True for the stream transports (TCP, TLS and Unix).
    pub fn is_stream(&self) -> bool {
        !matches!(self, Target::Udp(_))
    }

    /// True when the server is on this host: a Unix socket, or every
    /// address a loopback one. Then the server shares this host's cores
    /// with the probe.
    pub fn is_on_this_host(&self) -> bool {
        let addrs = match self {
            Target::Tcp(a) | Target::Udp(a) => &**a,
            Target::Tls(t) => &t.addrs[..],
            Target::Unix(_) => return true,
        };
        addrs.iter().all(|addr| addr.ip().is_loopback())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) | Target::Udp(a) => show(f, self.transport(), a.name(), a),
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
            Target::Tls(t) => show(f, "tls", name_of(&t.host), &t.addrs),
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(TargetError::Scheme(s.to_owned()));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "tcp" => resolved(rest).map(Target::Tcp),
            "udp" => resolved(rest).map(Target::Udp),
            "unix" if rest.is_empty() => Err(TargetError::EmptyPath),
            "unix" => Ok(Target::Unix(PathBuf::from(rest))),
            "tls" => resolve(rest).map(|addrs| {
                Target::Tls(TlsTarget {
                    addrs,
                    host: host_of(rest),
                })
            }),
            _ => Err(TargetError::Scheme(s.to_owned())),
        }
    }
}

/// The `HOST` of `HOST:PORT`, without the brackets of an IPv6 literal nor
/// its interface (`[fe80::1%eth0]`: the server name is the address, which
/// a certificate can list; the interface is the connection's affair).
fn host_of(hostport: &str) -> String {
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.split_once('%').map_or(host, |(ip, _)| ip).to_owned()
}

/// `host` if it is a name to show, not an address.
fn name_of(host: &str) -> Option<&str> {
    host.parse::<std::net::IpAddr>().is_err().then_some(host)
}

/// `HOST:PORT` resolved, with the host name kept when it is one.
fn resolved(hostport: &str) -> Result<Resolved, TargetError> {
    let addrs = resolve(hostport)?;
    let host = host_of(hostport);
    Ok(match name_of(&host) {
        Some(name) => Resolved::named(addrs, name),
        None => addrs.into(),
    })
}

/// Resolves `HOST:PORT` (literal addresses without a DNS lookup).
fn resolve(hostport: &str) -> Result<Vec<SocketAddr>, TargetError> {
    let bad = || TargetError::Address(hostport.to_owned());
    if hostport
        .rsplit_once(':')
        .is_some_and(|(_, port)| parse_port(port) == Some(0))
    {
        return Err(TargetError::PortZero(hostport.to_owned()));
    }
    let literal = match hostport.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            crate::serve::parse_scoped_addr(hostport).map_err(|name| TargetError::NoInterface {
                address: hostport.to_owned(),
                name,
            })?
        }
    };
    if let Some(addr) = literal {
        // Connecting to an unscoped link-local address fails with a bare
        // EINVAL: say what is missing instead, as `ricochet serve` does.
        if let SocketAddr::V6(v6) = addr
            && v6.ip().is_unicast_link_local()
            && v6.scope_id() == 0
        {
            return Err(TargetError::LinkLocalWithoutScope(hostport.to_owned()));
        }
        return Ok(vec![addr]);
    }
    let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
    // An IPv6 literal without brackets is ambiguous (`::1:7` is also an
    // address with no port): require them, and both of them.
    if host.contains(':') && !host.starts_with('[') {
        return Err(bad());
    }
    if host.starts_with('[') != host.ends_with(']') || host.contains('%') {
        return Err(bad());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || parse_port(port).is_none() || host.contains(['/', ' ']) {
        return Err(bad());
    }
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| TargetError::Resolve {
            address: hostport.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Resolve {
            address: hostport.to_owned(),
            reason: "no addresses".to_owned(),
        });
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests;
