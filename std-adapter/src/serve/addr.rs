//! Socket addresses as users write them, for `ricochet serve`'s flags and
//! `ricochet probe`'s targets alike: an IPv6 address scoped by interface
//! name.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

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
    let (Ok(ip), Ok(port)) = (ip.parse::<Ipv6Addr>(), port.parse::<u16>()) else {
        return Ok(None);
    };
    let index = interface_index(name).ok_or_else(|| name.to_owned())?;
    Ok(Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index))))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
