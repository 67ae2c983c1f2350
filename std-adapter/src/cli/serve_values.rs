//! The values of `ricochet serve`'s flags: addresses (a bare port, a
//! link-local IPv6 address scoped by interface name), counts, durations
//! that `off` turns off, the busy-poll bound, octal permission bits. Each
//! parser's error names what it expects.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ricochet::serve::{DEFAULT_PORT, address_slip, parse_duration, parse_port, parse_scoped_addr};

pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let addr = if let Ok(addr) = s.parse::<SocketAddr>() {
        addr
    } else if let Some(port) = parse_port(s) {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else if let Some(addr) = parse_scoped_addr(s).map_err(|name| {
        format!("invalid address {s:?}: no network interface named {name:?} (see `ip link`)")
    })? {
        addr
    } else {
        return Err(format!("invalid address {s:?}: {}", why_not_an_address(s)));
    };
    if let SocketAddr::V6(v6) = addr
        && let Some(v4) = v6.ip().to_ipv4_mapped()
    {
        // A usage error like the link-local one below (binding it failed
        // later, exit 1, as if the address were busy or missing).
        return Err(format!(
            "{s:?} is an IPv4 address written as IPv6 (v4-mapped), which an IPv6 listener \
             cannot bind (it is IPv6-only): give the IPv4 address, {v4}:{}",
            v6.port()
        ));
    }
    if let SocketAddr::V6(v6) = addr
        && v6.ip().is_unicast_link_local()
        && v6.scope_id() == 0
    {
        return Err(format!(
            "{s:?} is a link-local IPv6 address, which exists once per interface: name the \
             interface, e.g. [{}%eth0]:{} (see `ip -6 addr`)",
            v6.ip(),
            v6.port()
        ));
    }
    Ok(addr)
}

/// What is wrong with `s`, which is not an address [`parse_addr`] takes:
/// a host name is named as such (it looks like `IP:PORT` to whoever wrote
/// it), then the usual slips (a port out of range or signed, none, an IPv6
/// address without brackets: [`address_slip`]); anything else gets the forms
/// expected.
fn why_not_an_address(s: &str) -> String {
    let (host, port) = s.rsplit_once(':').unwrap_or((s, ""));
    let digits = |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit());
    if !host.is_empty()
        && !host.starts_with('[')
        && !host.contains(':')
        && !digits(host)
        && !host.strip_prefix(['+', '-']).is_some_and(digits)
        && host.parse::<Ipv4Addr>().is_err()
        && (port.is_empty() || parse_port(port).is_some())
    {
        let default = DEFAULT_PORT.to_string();
        let port = if port.is_empty() { &default } else { port };
        return format!(
            "{host:?} is not an IP address (host names are not resolved here): give the \
             address to listen on, e.g. 127.0.0.1:{port}, 0.0.0.0:{port} or [::1]:{port}"
        );
    }
    address_slip(s, &DEFAULT_PORT.to_string())
        .unwrap_or_else(|| "expected IP:PORT (IPv6 as [::1]:PORT) or a bare PORT".to_owned())
}

pub(crate) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => {
            Err("must be at least 1; leave --threads out for one per available core".to_owned())
        }
        Ok(n) if n > 1024 => Err("must be at most 1024".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn parse_max_datagram(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=ricochet::probe::UDP_MAX_V6).contains(&n) => Ok(n),
        Ok(_) => Err(format!(
            "must be between 1 and {} (the largest UDP payload)",
            ricochet::probe::UDP_MAX_V6
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A timeout that `0`, `off` or `never` turns off (returned as zero).
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "off" | "never" => Ok(Duration::ZERO),
        t => parse_duration(t).map_err(|e| e.to_string()),
    }
}

pub(crate) use ricochet::serve::{BUSY_POLL_MAX, STATS_INTERVAL_MIN};

pub(crate) fn parse_busy_poll(s: &str) -> Result<Duration, String> {
    let d = parse_timeout(s)?;
    if d > BUSY_POLL_MAX {
        return Err(format!(
            "busy polling for {d:?} burns a core between events that far apart; give at most 1ms \
             (50us suits one message in flight; 0 or off, the default, disables it)"
        ));
    }
    Ok(d)
}

pub(crate) fn parse_stats_interval(s: &str) -> Result<Duration, String> {
    let d = parse_timeout(s)?;
    if !d.is_zero() && d < STATS_INTERVAL_MIN {
        return Err(format!(
            "a stats line every {d:?} floods the log; give at least 100ms (e.g. 10s; 0 or off: none)"
        ));
    }
    Ok(d)
}

pub(crate) fn parse_octal(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "invalid mode {s:?}: expected octal permission bits such as 600 or 660"
        )),
    }
}

pub(crate) fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--threads` takes 1 to 1024, each edge included.
    #[test]
    fn threads_take_1_to_1024() {
        assert_eq!(parse_threads("1"), Ok(1));
        assert_eq!(parse_threads("1024"), Ok(1024));
        assert_eq!(
            parse_threads("1025"),
            Err("must be at most 1024".to_owned())
        );
        assert!(parse_threads("0").unwrap_err().contains("at least 1"));
    }

    /// `--max-connections` takes any count but 0, as given.
    #[test]
    fn max_connections_take_any_count_from_1() {
        assert_eq!(at_least_one("1"), Ok(1));
        assert_eq!(at_least_one("10000"), Ok(10000));
        assert!(at_least_one("0").is_err());
    }

    /// `--udp-max-datagram` takes 1 to the largest UDP payload, as given.
    #[test]
    fn udp_max_datagram_takes_1_to_the_largest_udp_payload() {
        let max = ricochet::probe::UDP_MAX_V6;
        assert_eq!(parse_max_datagram("1"), Ok(1));
        assert_eq!(parse_max_datagram("1200"), Ok(1200));
        assert_eq!(parse_max_datagram(&max.to_string()), Ok(max));
        for bad in ["0".to_owned(), (max + 1).to_string()] {
            let e = parse_max_datagram(&bad).unwrap_err();
            assert!(e.contains(&format!("between 1 and {max}")), "{bad}: {e}");
        }
    }

    /// `--stats-interval` takes 100ms or more, or 0/off for none; anything
    /// shorter floods the log.
    #[test]
    fn stats_interval_takes_at_least_100ms_or_off() {
        assert_eq!(parse_stats_interval("100ms"), Ok(STATS_INTERVAL_MIN));
        assert_eq!(parse_stats_interval("10s"), Ok(Duration::from_secs(10)));
        for off in ["0", "off"] {
            assert_eq!(parse_stats_interval(off), Ok(Duration::ZERO), "{off}");
        }
        let e = parse_stats_interval("99ms").unwrap_err();
        assert!(e.contains("at least 100ms"), "{e}");
    }

    /// `--unix-mode` takes octal permission bits up to 777, with or
    /// without `0o`.
    #[test]
    fn unix_mode_takes_octal_bits_up_to_777() {
        assert_eq!(parse_octal("600"), Ok(0o600));
        assert_eq!(parse_octal("0o660"), Ok(0o660));
        assert_eq!(parse_octal("777"), Ok(0o777));
        for bad in ["1000", "8", "rw"] {
            let e = parse_octal(bad).unwrap_err();
            assert!(e.contains("expected octal permission bits"), "{bad}: {e}");
        }
    }
}
