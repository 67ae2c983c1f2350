use super::*;

#[test]
fn unbracketed_ipv6_literal_is_refused_as_ambiguous() {
    // `::1:7` is also the IPv6 address 0::1:7 with no port: the
    // brackets say which is meant (as `ricochet serve --tcp` requires).
    for (t, fix) in [
        ("tcp://::1:7", "[::1]:7 (or [::1:7]:PORT"),
        ("udp://fe80::1:9", "[fe80::1]:9"),
        ("tls://::1:7", "[::1]:7"),
    ] {
        let e = t.parse::<Target>().expect_err(t);
        assert!(
            e.to_string()
                .contains(&format!("goes in brackets before its port: {fix}")),
            "{t}: {e}"
        );
    }
    assert!("tcp://[::1]:7".parse::<Target>().is_ok());
}

/// The TLS server name of a scoped link-local target is its address
/// (what a certificate can list), not `fe80::1%eth0`: that was refused
/// as "not a valid TLS server name", asking for --tls-server-name.
#[test]
fn tls_server_name_of_a_scoped_target_leaves_the_interface_out() {
    for (t, host) in [
        ("tls://[fe80::1%lo]:7", "fe80::1"),
        ("tls://[fe80::1%1]:7", "fe80::1"),
        ("tls://[::1]:7", "::1"),
    ] {
        let Ok(Target::Tls(tls)) = t.parse::<Target>() else {
            panic!("{t}");
        };
        assert_eq!(tls.host, host, "{t}");
    }
}

#[test]
fn link_local_targets_take_an_interface_name_and_need_one() {
    // The interface by name, as `ricochet serve --tcp [fe80::1%lo]:7`.
    let lo = std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()
        .and_then(|i| i.trim().parse::<u32>().ok());
    if let Some(index) = lo {
        let Ok(Target::Tcp(a)) = "tcp://[fe80::1%lo]:7".parse::<Target>() else {
            panic!("an interface name was not taken");
        };
        let Some(SocketAddr::V6(v6)) = a.first().copied() else {
            panic!("{a:?}");
        };
        assert_eq!((v6.scope_id(), v6.port()), (index, 7));
    }
    let e = "udp://[fe80::1%nosuch0]:7".parse::<Target>().unwrap_err();
    assert!(
        e.to_string()
            .contains("no network interface named \"nosuch0\""),
        "{e}"
    );
    // Without one, a usage error naming the fix (the connect would only
    // say EINVAL).
    for t in [
        "tcp://[fe80::1]:7",
        "udp://[fe80::1]:7",
        "tls://[fe80::1]:7",
    ] {
        let e = t.parse::<Target>().unwrap_err();
        assert!(
            matches!(e, TargetError::LinkLocalWithoutScope(_))
                && e.to_string().contains("[fe80::1%eth0]:7"),
            "{t}: {e}"
        );
    }
    // A numeric scope still parses; a lone bracket is a bad address, not
    // a host name to look up.
    assert!("tcp://[fe80::1%1]:7".parse::<Target>().is_ok());
    for t in ["tcp://[::1:7", "tcp://::1]:7"] {
        assert!(
            matches!(t.parse::<Target>(), Err(TargetError::Address(_))),
            "{t}"
        );
    }
}

#[test]
fn target_parses_each_scheme() {
    assert_eq!(
        "tcp://127.0.0.1:7".parse::<Target>(),
        Ok(Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into()))
    );
    assert_eq!(
        "udp://[::1]:9".parse::<Target>(),
        Ok(Target::Udp(vec!["[::1]:9".parse().unwrap()].into()))
    );
    assert_eq!(
        "unix:///tmp/e.sock".parse::<Target>(),
        Ok(Target::Unix("/tmp/e.sock".into()))
    );
}

#[test]
fn target_resolves_localhost_to_loopback_addresses_with_the_port() {
    let parsed = "tcp://localhost:7".parse::<Target>();
    let Ok(Target::Tcp(addrs)) = parsed else {
        panic!("localhost did not resolve: {parsed:?}");
    };
    // Never empty (a host with no address is an error), every one loopback.
    assert!(!addrs.is_empty());
    for a in &addrs {
        assert!(a.ip().is_loopback() && a.port() == 7, "{a}");
    }
    let Ok(Target::Udp(udp)) = "udp://localhost:9".parse::<Target>() else {
        panic!("udp://localhost did not resolve");
    };
    assert_eq!(
        udp.first().map(|a| (a.ip().is_loopback(), a.port())),
        Some((true, 9))
    );
}

/// A host name is shown as given (the report's `target` line and JSON),
/// not as the address it resolved to first: `tls://localhost:P` was
/// `tls://127.0.0.1:P`, or `[::1]` on another host.
#[test]
fn target_named_by_host_is_shown_by_its_name_and_an_address_as_itself() {
    for (given, shown) in [
        ("tcp://localhost:7", "tcp://localhost:7"),
        ("udp://localhost:9", "udp://localhost:9"),
        ("tls://localhost:7443", "tls://localhost:7443"),
        ("TCP://localhost:7", "tcp://localhost:7"),
        ("tcp://127.0.0.1:7", "tcp://127.0.0.1:7"),
        ("udp://[::1]:9", "udp://[::1]:9"),
        ("tls://[::1]:7443", "tls://[::1]:7443"),
    ] {
        let t: Target = given.parse().expect(given);
        assert_eq!(t.to_string(), shown, "{given}");
    }
    // The addresses are still there to connect to, in order.
    let Ok(Target::Tcp(a)) = "tcp://localhost:7".parse::<Target>() else {
        panic!("localhost did not resolve");
    };
    assert_eq!(a.name(), Some("localhost"));
    assert!(!a.is_empty() && a.iter().all(|a| a.ip().is_loopback()));
    let literal: Resolved = vec!["127.0.0.1:7".parse().unwrap()].into();
    assert_eq!(literal.name(), None);
}

#[test]
fn tls_target_keeps_the_host_for_the_certificate_name() {
    let Ok(Target::Tls(t)) = "tls://localhost:7443".parse::<Target>() else {
        panic!("tls://localhost did not parse");
    };
    assert_eq!(t.host, "localhost");
    assert!(
        t.addrs
            .iter()
            .all(|a| a.port() == 7443 && a.ip().is_loopback())
    );
    let Ok(Target::Tls(t)) = "tls://[::1]:7".parse::<Target>() else {
        panic!("tls://[::1] did not parse");
    };
    assert_eq!((t.host.as_str(), t.addrs.len()), ("::1", 1));
    let target: Target = "tls://127.0.0.1:9".parse().unwrap();
    assert_eq!((target.transport(), target.is_stream()), ("tls", true));
    assert_eq!(target.to_string(), "tls://127.0.0.1:9");
    assert!(matches!(
        "tls://127.0.0.1".parse::<Target>(),
        Err(TargetError::Address(_))
    ));
}

#[test]
fn target_rejects_malformed_text() {
    assert!(matches!(
        "127.0.0.1:7".parse::<Target>(),
        Err(TargetError::Scheme(_))
    ));
    assert!(matches!(
        "http://x:1".parse::<Target>(),
        Err(TargetError::Scheme(_))
    ));
    assert!(matches!(
        "tcp://127.0.0.1".parse::<Target>(),
        Err(TargetError::Address(_))
    ));
    assert!(matches!(
        "tcp://127.0.0.1:99999".parse::<Target>(),
        Err(TargetError::Address(_))
    ));
    assert!(matches!(
        "tcp://:80".parse::<Target>(),
        Err(TargetError::Address(_))
    ));
    assert_eq!("unix://".parse::<Target>(), Err(TargetError::EmptyPath));
    // A signed port: `u16::from_str` and so `ToSocketAddrs` take `+7`.
    for signed in ["tcp://127.0.0.1:+7", "udp://localhost:+7", "tcp://[::1]:+7"] {
        let e = signed.parse::<Target>();
        assert!(matches!(e, Err(TargetError::Address(_))), "{signed}");
        let said = e.unwrap_err().to_string();
        assert!(said.contains("port +7 has a sign"), "{signed}: {said}");
    }
}

#[test]
fn target_without_a_scheme_suggests_the_one_it_looks_like() {
    let msg = |s: &str| s.parse::<Target>().unwrap_err().to_string();
    let m = msg("127.0.0.1:7");
    assert!(
        m.contains("write tcp://127.0.0.1:7 (or udp://127.0.0.1:7)"),
        "{m}"
    );
    let m = msg("[::1]:7");
    assert!(m.contains("write tcp://[::1]:7"), "{m}");
    let m = msg("/run/echo.sock");
    assert!(m.contains("write unix:///run/echo.sock"), "{m}");
    let m = msg("http://x:1");
    assert!(!m.contains("write"), "a scheme, only not ours: {m}");
    let m = msg("localhost");
    assert!(!m.contains("write"), "no port: {m}");
}

/// `tcp:/127.0.0.1:7` was told to write `tcp://tcp:/127.0.0.1:7`.
#[test]
fn misspelt_scheme_suggests_the_spelling_meant() {
    let msg = |s: &str| s.parse::<Target>().unwrap_err().to_string();
    for (typed, meant) in [
        ("tcp:/127.0.0.1:7", "tcp://127.0.0.1:7"),
        ("tcp:127.0.0.1:7", "tcp://127.0.0.1:7"),
        ("udp:/127.0.0.1:7", "udp://127.0.0.1:7"),
        ("tcp//[::1]:7", "tcp://[::1]:7"),
        ("unix:/run/echo.sock", "unix:///run/echo.sock"),
        ("unix:run/echo.sock", "unix://run/echo.sock"),
    ] {
        let m = msg(typed);
        assert!(
            m.contains(&format!("did you mean {meant}?")),
            "{typed}: {m}"
        );
        assert!(!m.contains("write tcp://"), "{typed}: {m}");
    }
    for other in ["tcpx://h:1", "tcp:", "http://x:1"] {
        let m = msg(other);
        assert!(!m.contains("did you mean"), "{other}: {m}");
    }
}

/// Only text that is `HOST:PORT` is told to take `tcp://`: a host and no
/// port (`localhost:x`), or a port and no host (`:7`), would still be
/// refused with the scheme added.
#[test]
fn schemeless_text_that_is_not_host_and_port_gets_no_scheme_suggested() {
    for typed in ["localhost:x", ":7", "localhost:"] {
        let m = typed.parse::<Target>().unwrap_err().to_string();
        assert!(
            m.starts_with("unknown target scheme") && !m.contains("write"),
            "{typed}: {m}"
        );
    }
}

/// A target's addresses, by reference or iterated, in the order a
/// connection tries them (the resolver's).
#[test]
fn resolved_addresses_iterate_in_the_order_to_try_them() {
    let v6: SocketAddr = "[::1]:7".parse().unwrap();
    let v4: SocketAddr = "127.0.0.1:7".parse().unwrap();
    let r = Resolved::named(vec![v6, v4], "localhost");
    assert_eq!((&r).into_iter().copied().collect::<Vec<_>>(), [v6, v4]);
    assert_eq!(&r[..], [v6, v4]);
    assert_eq!(r.name(), Some("localhost"));
}
