//! Socket addresses as users write them, for `ricochet serve`'s flags and
//! `ricochet probe`'s targets alike: an IPv6 address scoped by interface
//! name, shown the way it was written, and what is wrong with one that is
//! not an address.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// `[fe80::1%eth0]:7007`: an IPv6 socket address scoped by interface name
/// (the standard parser takes only a numeric scope, `[fe80::1%2]:7007`), as
/// `ricochet serve --tcp` and `ricochet probe tcp://` take it.
///
/// `Ok(None)` if `s` is not of this form; `Err(name)` if this network
/// namespace has no interface of that name. The name is looked up in the
/// calling thread's network namespace (`if_nametoindex`), not in
/// `/sys/class/net`, which lists the interfaces of the namespace sysfs was
/// mounted in: after `unshare -n`, or in a unit with `PrivateNetwork=`,
/// that is the host's, whose index names another interface here or none.
pub fn parse_scoped_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    let Some((inner, port)) = s.strip_prefix('[').and_then(|r| r.split_once("]:")) else {
        return Ok(None);
    };
    let Some((ip, name)) = inner.split_once('%') else {
        return Ok(None);
    };
    let (Ok(ip), Some(port)) = (ip.parse::<Ipv6Addr>(), parse_port(port)) else {
        return Ok(None);
    };
    let index = interface_index(name).ok_or_else(|| name.to_owned())?;
    Ok(Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index))))
}

/// A socket address as users write it, the inverse of
/// [`parse_scoped_addr`]: an IPv6 scope by the name of its interface
/// (`[fe80::1%eth0]:7007`) where this network namespace has one, where
/// std shows the index (`[fe80::1%2]:7007`), which names no interface
/// anyone typed. A scope with no interface of that index here stays a
/// number; every other address shows as std shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scoped(pub SocketAddr);

impl fmt::Display for Scoped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V6(a) if a.scope_id() != 0 => match interface_name(a.scope_id()) {
                Some(name) => f.pad(&format!("[{}%{name}]:{}", a.ip(), a.port())),
                None => fmt::Display::fmt(&a, f),
            },
            a => fmt::Display::fmt(&a, f),
        }
    }
}

/// A port as users write it: decimal digits only, 0 to 65535. Not
/// `u16::from_str`, which takes a sign (`+7`), where std's socket-address
/// parser, and so every other address the tools take, does not.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The index of the network interface `name` in the calling thread's
/// network namespace; `None` if it has none of that name.
#[allow(unsafe_code)]
fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `if_nametoindex` reads the NUL-terminated string `name`
    // owns, which outlives the call, and keeps no pointer to it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The name of the network interface of index `index` in the calling
/// thread's network namespace; `None` if it has none of that index.
#[allow(unsafe_code)]
fn interface_name(index: u32) -> Option<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes `if_indextoname` may
    // write, a NUL-terminated name, and outlives the call.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if found.is_null() {
        return None;
    }
    // SAFETY: on success `name` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// What is wrong with `s`, written as `HOST:PORT` but not parsed as one,
/// when it is one of the usual slips: a port out of range or with a sign,
/// no port, no host, an IPv6 address without its brackets. `None` for anything else
/// (the caller names the form it expects). `HOST` is an IP address, or
/// (`example` names one) any host name: the example of the fix uses it.
pub fn address_slip(s: &str, example: &str) -> Option<String> {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (Some(host), port),
        None => (None, s),
    };
    if digits(port) && port.parse::<u16>().is_err() {
        return Some(format!("port {port} is out of range: a port is 0 to 65535"));
    }
    if port.strip_prefix(['+', '-']).is_some_and(digits) {
        return Some(format!(
            "port {port} has a sign: a port is decimal digits alone, 0 to 65535"
        ));
    }
    let bracketed = s.starts_with('[');
    // `::1:7007` is also the address 0::1:7007 with no port: brackets tell.
    if !bracketed && s.matches(':').count() > 1 {
        let whole = s.parse::<Ipv6Addr>().is_ok();
        let split = host
            .filter(|h| h.parse::<Ipv6Addr>().is_ok())
            .filter(|_| parse_port(port).is_some());
        return match (split, whole) {
            (Some(h), _) => Some(format!(
                "an IPv6 address goes in brackets before its port: [{h}]:{port}{}",
                if whole {
                    format!(" (or [{s}]:PORT if all of it is the address)")
                } else {
                    String::new()
                }
            )),
            (None, true) => Some(format!(
                "no port, and an IPv6 address goes in brackets before it: [{s}]:PORT"
            )),
            (None, false) => None,
        };
    }
    // An address or name alone, `[::1]`, or a colon with nothing after it.
    let no_port = match host {
        None => !digits(s),
        Some(h) => port.is_empty() && !h.is_empty(),
    } || (bracketed && s.ends_with(']'));
    if no_port {
        let h = host.filter(|_| port.is_empty()).unwrap_or(s);
        let ip = h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        let h = match ip {
            Ok(IpAddr::V6(_)) if !h.starts_with('[') => format!("[{h}]"),
            _ => h.to_owned(),
        };
        return Some(format!(
            "no port: give one after a colon, e.g. {h}:{example}"
        ));
    }
    if host == Some("") && digits(port) {
        return Some(format!(
            "nothing before the port: give the address, e.g. 127.0.0.1:{port} or [::1]:{port}"
        ));
    }
    None
}

/// The IPv6 addresses of this network namespace's interfaces, each with
/// its interface's name, from `/proc/net/if_inet6` (Linux; the calling
/// process's namespace). `None` where it cannot be read: no `/proc`, or no
/// IPv6 in the kernel. Empty where no interface has one (IPv6 disabled:
/// `net.ipv6.conf.*.disable_ipv6 = 1`).
pub fn ipv6_addresses_here() -> Option<Vec<(Ipv6Addr, String)>> {
    let list = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    Some(
        list.lines()
            .filter_map(|line| {
                // `fe800000000000000000000000000001 04 40 20 80 eth0`
                let mut fields = line.split_whitespace();
                let hex = fields.next()?;
                let name = fields.nth(4)?;
                let bits = u128::from_str_radix(hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 32)?;
                Some((Ipv6Addr::from(bits), name.to_owned()))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_address_shows_the_interface_name_it_was_written_with() {
        let Ok(Some(a)) = parse_scoped_addr("[fe80::1%lo]:7") else {
            panic!("lo was not taken");
        };
        assert_eq!(Scoped(a).to_string(), "[fe80::1%lo]:7");
        // Padded as a whole, as std pads an address.
        assert_eq!(format!("{:>16}|", Scoped(a)), "  [fe80::1%lo]:7|");
        // No interface of that index here: the number, as std shows it.
        let far = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7, 0, u32::MAX));
        assert_eq!(Scoped(far).to_string(), far.to_string());
        for plain in ["[fe80::1]:7", "[::1]:7", "127.0.0.1:7"] {
            let a: SocketAddr = plain.parse().unwrap();
            assert_eq!(Scoped(a).to_string(), plain);
            assert_eq!(format!("{:<12}|", Scoped(a)), format!("{plain:<12}|"));
        }
    }

    #[test]
    fn scoped_addresses_take_an_interface_name_of_this_namespace() {
        let Ok(Some(SocketAddr::V6(a))) = parse_scoped_addr("[fe80::1%lo]:7") else {
            panic!("lo was not taken");
        };
        assert_eq!((a.ip().segments()[0], a.port()), (0xfe80, 7));
        assert_ne!(a.scope_id(), 0);
        for name in ["nosuch0", "", "lo/x", "l\0o"] {
            assert_eq!(
                parse_scoped_addr(&format!("[fe80::1%{name}]:7")),
                Err(name.to_owned())
            );
        }
        // Not this form: left to the other parsers and their errors.
        for s in [
            "[fe80::1]:7",
            "[fe80::1%lo]",
            "fe80::1%lo:7",
            "[x%lo]:7",
            "[::1%lo]:x",
        ] {
            assert_eq!(parse_scoped_addr(s), Ok(None), "{s}");
        }
    }

    /// `u16::from_str` takes a `+`; std's socket-address parser, which this
    /// one extends, does not: `[fe80::1%lo]:+7` was taken as port 7.
    #[test]
    fn scoped_address_with_a_signed_port_is_not_this_form() {
        assert!("[fe80::1%2]:+7".parse::<SocketAddr>().is_err());
        assert_eq!(parse_scoped_addr("[fe80::1%lo]:+7"), Ok(None));
    }

    #[test]
    fn port_is_decimal_digits_only() {
        assert_eq!(parse_port("7007"), Some(7007));
        assert_eq!(parse_port("0"), Some(0));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["+7", "-7", "", "65536", " 7", "7 ", "0x7"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn address_slips_are_named_with_the_form_to_give() {
        let slip = |s: &str| address_slip(s, "7007").unwrap_or_else(|| format!("none: {s}"));
        for (s, port) in [
            ("+7007", "+7007"),
            ("-7", "-7"),
            ("127.0.0.1:+7", "+7"),
            ("[::1]:-7", "-7"),
            ("localhost:+7", "+7"),
        ] {
            assert_eq!(
                slip(s),
                format!("port {port} has a sign: a port is decimal digits alone, 0 to 65535"),
                "{s}"
            );
        }
        assert_eq!(
            slip("[::1]:70000"),
            "port 70000 is out of range: a port is 0 to 65535"
        );
        assert_eq!(
            slip("70000"),
            "port 70000 is out of range: a port is 0 to 65535"
        );
        assert_eq!(
            slip("::1:7007"),
            "an IPv6 address goes in brackets before its port: [::1]:7007 (or [::1:7007]:PORT \
             if all of it is the address)"
        );
        assert_eq!(
            slip("fe80::1%eth0:7"),
            "none: fe80::1%eth0:7",
            "not an address std parses: left to the caller"
        );
        assert_eq!(
            slip("::1"),
            "no port, and an IPv6 address goes in brackets before it: [::1]:PORT"
        );
        for (s, fix) in [
            ("127.0.0.1", "127.0.0.1:7007"),
            ("127.0.0.1:", "127.0.0.1:7007"),
            ("[::1]", "[::1]:7007"),
            ("[::1]:", "[::1]:7007"),
            ("localhost", "localhost:7007"),
        ] {
            assert_eq!(
                slip(s),
                format!("no port: give one after a colon, e.g. {fix}"),
                "{s}"
            );
        }
        assert!(
            slip(":7007").starts_with("nothing before the port"),
            "{}",
            slip(":7007")
        );
        // Well-formed, or not one of these slips: the caller says what it expects.
        for s in ["127.0.0.1:7", "7", "[::1]:7", "a:b:c", "[::1]:x"] {
            assert_eq!(address_slip(s, "7007"), None, "{s}");
        }
    }

    #[test]
    fn ipv6_addresses_here_are_every_line_of_the_kernel_list() {
        // Each line of /proc/net/if_inet6 is one entry, in order: the
        // address from its first field, the name from its sixth. Without
        // the file (no IPv6 in this kernel, no /proc) it cannot be told.
        let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") else {
            assert_eq!(ipv6_addresses_here(), None, "unreadable, so unknown");
            return;
        };
        let list = ipv6_addresses_here().expect("readable, so listed");
        let want: Vec<(String, String)> = text
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_owned(), f[5].to_owned())
            })
            .collect();
        let got: Vec<(String, String)> = list
            .iter()
            .map(|(ip, name)| (format!("{:032x}", u128::from(*ip)), name.clone()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn ipv6_addresses_here_come_with_their_interface() {
        // This host's own list; where it has IPv6 on loopback, ::1 is on lo.
        if let Some(list) = ipv6_addresses_here() {
            for (ip, name) in &list {
                assert!(!name.is_empty(), "{ip}");
            }
            if let Some((_, name)) = list.iter().find(|(ip, _)| ip.is_loopback()) {
                assert_eq!(name, "lo");
            }
        }
    }
}
