use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;

use ricochet::serve::{InheritedSocket, ServerConfig};
use socket2::{Domain, Protocol, Socket, Type};

use super::*;

/// A configuration with these flags' addresses: `--tcp A`, `--udp A`.
fn config(args: &[&str]) -> ServerConfig {
    let mut config = ServerConfig {
        tcp: vec![],
        udp: vec![],
        ..ServerConfig::default()
    };
    for pair in args.chunks(2) {
        let addr: SocketAddr = pair[1].parse().unwrap();
        match pair[0] {
            "--tcp" => config.tcp.push(addr),
            "--udp" => config.udp.push(addr),
            flag => panic!("{flag}"),
        }
    }
    config
}

fn inherited(kind: &'static str, addr: &str, takes_ipv4: bool) -> InheritedWildcard {
    InheritedWildcard {
        kind,
        addr: addr.parse().unwrap(),
        takes_ipv4,
    }
}

#[test]
fn an_ipv6_wildcard_without_an_ipv4_one_is_said_to_take_ipv6_clients_only() {
    let (warnings, notes) = ipv6_wildcard_notes(
        &config(&["--tcp", "[::]:7", "--udp", "[::]:0"]),
        &[],
        Ipv6Here::Addresses,
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("tcp [::]:7 takes IPv6 clients only")
            && notes[0].contains("add --tcp 0.0.0.0:7"),
        "{notes:?}"
    );
    assert!(
        notes[1].contains("add --udp 0.0.0.0:0 for IPv4 clients (on a port of its own"),
        "{notes:?}"
    );
    assert!(!notes[0].contains("port of its own"), "{notes:?}");
    // With the IPv4 wildcard beside it, or on one address, nothing to say.
    for args in [
        &["--tcp", "[::]:7", "--tcp", "0.0.0.0:7"][..],
        &["--tcp", "[::1]:7", "--udp", "0.0.0.0:7"],
    ] {
        let said = ipv6_wildcard_notes(&config(args), &[], Ipv6Here::Addresses);
        assert_eq!(said, (vec![], vec![]), "{args:?}");
    }
}

/// In a network namespace where IPv6 is disabled, `[::]` binds and
/// serves no one: a warning names the sysctl and the IPv4 wildcard to
/// listen on instead (not the IPv6-only note, which would not help).
#[test]
fn an_ipv6_wildcard_with_ipv6_disabled_is_warned_of_with_the_sysctl_and_0_0_0_0() {
    let (warnings, notes) = ipv6_wildcard_notes(
        &config(&["--tcp", "[::]:7", "--udp", "[::]:0"]),
        &[],
        Ipv6Here::Disabled,
    );
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("tcp [::]:7 serves no one")
            && warnings[0].contains("net.ipv6.conf.all.disable_ipv6 = 1")
            && warnings[0].ends_with("listen on --tcp 0.0.0.0:7 instead"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("--udp 0.0.0.0:0 instead (on a port of its own"),
        "{warnings:?}"
    );
    // Disabled per interface: named so; with 0.0.0.0 beside it, no advice to add it.
    let (warnings, _) = ipv6_wildcard_notes(
        &config(&["--tcp", "[::]:7", "--tcp", "0.0.0.0:7"]),
        &[],
        Ipv6Here::NoAddress,
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("net.ipv6.conf.IFACE.disable_ipv6")
            && !warnings[0].contains("instead"),
        "{warnings:?}"
    );
}

/// A service manager's IPv6-only `[::]` (systemd's `BindIPv6Only=ipv6-only`)
/// is named as inherited, with the socket unit's setting as the fix, not a
/// flag the server would bind itself.
#[test]
fn an_inherited_ipv6_only_wildcard_is_said_to_take_ipv6_clients_only_with_the_unit_fix() {
    let only_v6 = [inherited("tcp", "[::]:7", false)];
    let (warnings, notes) = ipv6_wildcard_notes(&config(&[]), &only_v6, Ipv6Here::Addresses);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        notes,
        [
            "tcp [::]:7 (inherited) takes IPv6 clients only (the service manager bound it \
          IPv6-only): set BindIPv6Only=both in its socket unit for IPv4 clients"
        ]
    );
    let (warnings, notes) = ipv6_wildcard_notes(&config(&[]), &only_v6, Ipv6Here::Disabled);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("tcp [::]:7 (inherited) serves no one")
            && warnings[0].contains("net.ipv6.conf.all.disable_ipv6 = 1")
            && warnings[0].ends_with("set BindIPv6Only=both in its socket unit for IPv4 clients")
            && !warnings[0].contains("--tcp"),
        "{warnings:?}"
    );
}

/// A dual-stack inherited `[::]` (systemd's default) takes IPv4 clients
/// whatever IPv6 has, and so does an inherited `0.0.0.0`: nothing is said of
/// either, nor of the server's own `[::]` of the same kind beside them.
#[test]
fn an_inherited_dual_stack_or_ipv4_wildcard_takes_ipv4_clients_and_nothing_is_said() {
    for ipv6 in [Ipv6Here::Addresses, Ipv6Here::Disabled, Ipv6Here::NoAddress] {
        let dual = [inherited("udp", "[::]:7", true)];
        let said = ipv6_wildcard_notes(&config(&[]), &dual, ipv6);
        assert_eq!(said, (vec![], vec![]), "{ipv6:?}");
    }
    for beside in [
        inherited("tcp", "[::]:7", true),
        inherited("tcp", "0.0.0.0:7", true),
    ] {
        let said = ipv6_wildcard_notes(
            &config(&["--tcp", "[::]:8"]),
            &[beside],
            Ipv6Here::Addresses,
        );
        assert_eq!(said, (vec![], vec![]), "{beside:?}");
        // Of another kind, it does not take this kind's IPv4 clients.
        let (_, notes) = ipv6_wildcard_notes(
            &config(&["--udp", "[::]:8"]),
            &[beside],
            Ipv6Here::Addresses,
        );
        assert_eq!(notes.len(), 1, "{beside:?}: {notes:?}");
    }
}

/// `among` reads each inherited socket's `IPV6_V6ONLY` and keeps the
/// wildcard TCP and UDP ones: an IPv6-only and a dual-stack `[::]`, an
/// IPv4 `0.0.0.0`; not `[::1]` nor a Unix socket.
#[test]
fn inherited_wildcards_are_read_with_their_ipv6_only_option() {
    let v6 = |ty: Type, proto: Protocol, only_v6: bool, ip: &str| {
        let s = Socket::new(Domain::IPV6, ty, Some(proto)).unwrap();
        s.set_only_v6(only_v6).unwrap();
        let addr: SocketAddr = format!("[{ip}]:0").parse().unwrap();
        s.bind(&addr.into())
            .expect("this test needs IPv6 on loopback; CI machines have it");
        s
    };
    let tcp_only_v6 = v6(Type::STREAM, Protocol::TCP, true, "::");
    tcp_only_v6.listen(1).unwrap();
    let udp_dual = v6(Type::DGRAM, Protocol::UDP, false, "::");
    let tcp_loopback = v6(Type::STREAM, Protocol::TCP, true, "::1");
    tcp_loopback.listen(1).unwrap();
    let dir = std::env::temp_dir().join(format!("ricochet-among-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let sockets = vec![
        InheritedSocket::Tcp(TcpListener::from(tcp_only_v6)),
        InheritedSocket::Udp(UdpSocket::from(udp_dual)),
        InheritedSocket::Udp(UdpSocket::bind("0.0.0.0:0").unwrap()),
        InheritedSocket::Tcp(TcpListener::from(tcp_loopback)),
        InheritedSocket::Unix(UnixListener::bind(&dir).unwrap()),
    ];
    let _ = std::fs::remove_file(&dir);
    let found = InheritedWildcard::among(&sockets);
    let seen: Vec<(&str, bool, bool)> = found
        .iter()
        .map(|w| (w.kind, w.addr.is_ipv6(), w.takes_ipv4))
        .collect();
    assert_eq!(
        seen,
        [
            ("tcp", true, false),
            ("udp", true, true),
            ("udp", false, true)
        ]
    );
    assert_eq!(Some(found[0].addr), sockets[0].socket_addr());
}
