use super::*;

#[test]
fn loopback_not_available_names_the_other_family_to_listen_on() {
    let unavailable = |addr: &str| {
        BindError::from_io(
            Endpoint::Tcp(addr.parse().unwrap()),
            io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
        )
        .to_string()
    };
    // An IPv6-only host or network namespace: `ricochet serve`'s default.
    let v4 = unavailable("127.0.0.1:7007");
    assert!(
        v4.contains("no interface has 127.0.0.1") && v4.contains("--tcp [::1]:7007"),
        "{v4}"
    );
    // IPv6 disabled (net.ipv6.conf.*.disable_ipv6).
    let v6 = unavailable("[::1]:7007");
    assert!(
        v6.contains("disable_ipv6") && v6.contains("--tcp 127.0.0.1:7007"),
        "{v6}"
    );
    let other = unavailable("[2001:db8::1]:7");
    assert!(other.contains("ip -6 addr"), "{other}");
}

#[test]
fn port_refused_below_the_unprivileged_start_names_every_way_out_and_above_it_a_policy() {
    let low = port_denied_advice(7, 1024);
    for needle in [
        "ports below 1024",
        "socket activation",
        "setcap cap_net_bind_service=+ep",
        "AmbientCapabilities=",
    ] {
        assert!(low.contains(needle), "{needle:?}: {low}");
    }
    // A host that moved the limit: the number is its own.
    assert!(port_denied_advice(79, 80).contains("ports below 80 "));
    let high = port_denied_advice(8080, 1024);
    assert!(high.contains("security policy"), "{high}");
    assert!(!high.contains("setcap"), "{high}");
}

#[test]
fn invalid_argument_on_unscoped_link_local_says_to_name_the_interface() {
    let endpoint = Endpoint::Tcp("[fe80::1]:7007".parse().unwrap());
    let e = BindError::from_io(endpoint, io::Error::from_raw_os_error(libc::EINVAL));
    assert!(
        matches!(e, BindError::LinkLocalWithoutScope { .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "tcp [fe80::1]:7007: a link-local IPv6 address exists once per interface: name the \
         interface, e.g. --tcp [fe80::1%eth0]:7007 (see `ip -6 addr`)"
    );
    // Any other address keeps the OS error.
    let other = Endpoint::Tcp("[2001:db8::1]:7".parse().unwrap());
    let e = BindError::from_io(other, io::Error::from_raw_os_error(libc::EINVAL));
    assert!(matches!(e, BindError::Io { .. }), "{e:?}");
}

#[test]
fn spawn_error_from_the_open_file_limit_names_the_fix() {
    let e = SpawnError::EventLoop(io::Error::from_raw_os_error(libc::EMFILE));
    let text = e.to_string();
    assert!(text.starts_with("cannot create an event loop: "), "{text}");
    assert!(
        text.contains("ulimit -n") && text.contains("LimitNOFILE"),
        "{text}"
    );
    let e = SpawnError::Register(io::Error::from_raw_os_error(libc::ENFILE));
    assert!(e.to_string().contains("fs.file-max"), "{e}");
    // A thread refused for the user's process/thread limit names it.
    let e = SpawnError::Thread(io::Error::from_raw_os_error(libc::EAGAIN));
    assert!(
        e.to_string().contains("ulimit -u") && e.to_string().contains("TasksMax="),
        "{e}"
    );
    // Any other error is left as it is.
    let e = SpawnError::Thread(io::Error::from_raw_os_error(libc::EINVAL));
    assert_eq!(
        e.to_string(),
        format!(
            "cannot start a worker thread: {}",
            io::Error::from_raw_os_error(libc::EINVAL)
        )
    );
}

/// A kernel booted with `ipv6.disable=1` refuses every IPv6 socket with
/// EAFNOSUPPORT: it was "Address family not supported by protocol" and
/// nothing more. Now it says why and names the IPv4 flag to give.
#[test]
fn ipv6_endpoint_on_a_kernel_without_ipv6_names_the_ipv4_flag_to_give() {
    let no_v6 = |e: Endpoint| {
        BindError::from_io(e, io::Error::from_raw_os_error(libc::EAFNOSUPPORT)).to_string()
    };
    let wildcard = no_v6(Endpoint::Tcp("[::]:7".parse().unwrap()));
    assert!(
        wildcard.starts_with("tcp [::]:7: this system has no IPv6")
            && wildcard.contains("ipv6.disable=1")
            && wildcard.ends_with("listen on IPv4 instead, --tcp 0.0.0.0:7"),
        "{wildcard}"
    );
    let loopback = no_v6(Endpoint::Udp("[::1]:9".parse().unwrap()));
    assert!(loopback.ends_with("--udp 127.0.0.1:9"), "{loopback}");
    let other = no_v6(Endpoint::Tls("[2001:db8::1]:7443".parse().unwrap()));
    assert!(
        other.ends_with("--tls ADDRESS:7443 (one of this host's IPv4 addresses)"),
        "{other}"
    );
    // An IPv4 endpoint's EAFNOSUPPORT is not about IPv6.
    assert!(matches!(
        BindError::from_io(
            Endpoint::Tcp("127.0.0.1:7".parse().unwrap()),
            io::Error::from_raw_os_error(libc::EAFNOSUPPORT)
        ),
        BindError::Io { .. }
    ));
}

/// Each bind error kind is its own variant, whatever the endpoint.
#[test]
fn bind_errors_are_classified_by_kind() {
    let tcp = || Endpoint::Tcp("127.0.0.1:7".parse().unwrap());
    let from = |errno| BindError::from_io(tcp(), io::Error::from_raw_os_error(errno));
    assert!(matches!(
        from(libc::EADDRINUSE),
        BindError::AddrInUse { .. }
    ));
    assert!(matches!(
        from(libc::EACCES),
        BindError::PermissionDenied { .. }
    ));
    assert!(matches!(
        from(libc::EADDRNOTAVAIL),
        BindError::AddrNotAvailable { .. }
    ));
    assert!(matches!(from(libc::EINVAL), BindError::Io { .. }));
}

/// `[::ffff:127.0.0.1]` refused (EINVAL on an IPv6-only socket) names the
/// IPv4 address to give instead; another error on it stays what it is.
#[test]
fn a_v4_mapped_address_refused_names_the_ipv4_one_and_other_errors_stay() {
    let mapped = || Endpoint::Udp("[::ffff:127.0.0.1]:9".parse().unwrap());
    let e = BindError::from_io(mapped(), io::Error::from_raw_os_error(libc::EINVAL));
    assert!(matches!(e, BindError::V4MappedAddress { .. }), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("give the IPv4 address, e.g. --udp 127.0.0.1:9"),
        "{e}"
    );
    let e = BindError::from_io(mapped(), io::Error::from_raw_os_error(libc::EADDRINUSE));
    assert!(matches!(e, BindError::AddrInUse { .. }), "{e:?}");
}

/// The link-local hint gives the flag of the endpoint's own kind.
#[test]
fn an_unscoped_link_local_hint_gives_the_flag_of_its_kind() {
    let hint =
        |e: Endpoint| BindError::from_io(e, io::Error::from_raw_os_error(libc::EINVAL)).to_string();
    let udp = hint(Endpoint::Udp("[fe80::2]:9".parse().unwrap()));
    assert!(udp.contains("e.g. --udp [fe80::2%eth0]:9"), "{udp}");
    let tls = hint(Endpoint::Tls("[fe80::3]:443".parse().unwrap()));
    assert!(tls.contains("e.g. --tls [fe80::3%eth0]:443"), "{tls}");
}

/// A Unix path refused names the directory; a port refused, the port rules.
#[test]
fn permission_denied_on_a_unix_path_is_about_its_directory() {
    let e = BindError::PermissionDenied {
        endpoint: Endpoint::Unix("/run/x/echo.sock".into()),
    };
    assert!(
        e.to_string()
            .starts_with("unix /run/x/echo.sock: permission denied: this user cannot search or write the directory"),
        "{e}"
    );
}

/// A bare file name's directory is the current one, named `.`.
#[test]
fn a_unix_path_without_a_directory_names_the_current_one() {
    let e = BindError::UnixNoDirectory {
        path: "echo.sock".into(),
    };
    assert_eq!(
        e.to_string(),
        "unix echo.sock: . is not a directory (choose a path in a directory)"
    );
    let e = BindError::UnixNoDirectory {
        path: "/no/such/dir/echo.sock".into(),
    };
    assert!(
        e.to_string()
            .contains("the directory /no/such/dir does not exist"),
        "{e}"
    );
}

#[test]
fn a_non_loopback_ipv4_address_not_here_points_at_ip_addr() {
    let advice = address_advice("tcp", "10.9.8.7:7".parse().unwrap());
    assert!(
        advice.starts_with("no interface has 10.9.8.7 (see `ip addr`)"),
        "{advice}"
    );
}

/// The threshold is this host's sysctl, read now.
#[cfg(target_os = "linux")]
#[test]
fn the_unprivileged_port_start_is_the_sysctl() {
    let sysctl = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .map_or(1024, |s| s.trim().parse().expect("a port"));
    assert_eq!(unprivileged_port_start(), sysctl);
}

/// The underlying error stays reachable through `source` wherever there
/// is one, and there is none where the error is the whole story.
#[test]
fn errors_with_a_cause_give_it_as_source() {
    use std::error::Error as _;
    let os = || io::Error::from_raw_os_error(libc::EMFILE);
    let tcp = Endpoint::Tcp("127.0.0.1:7".parse().unwrap());
    let io_err = BindError::Io {
        endpoint: tcp,
        source: os(),
    };
    assert_eq!(
        io_err.source().map(|s| s.to_string()),
        Some(os().to_string())
    );
    let inspect = BindError::UnixInspect {
        path: "s".into(),
        source: os(),
    };
    assert!(inspect.source().is_some());
    let tls = BindError::Tls(super::super::tls::TlsConfigError::Invalid { reason: "r".into() });
    assert_eq!(
        tls.source().map(|s| s.to_string()).as_deref(),
        Some("TLS configuration: r")
    );
    assert!(BindError::NoListener.source().is_none());
    let spawn = SpawnError::Thread(os());
    assert_eq!(
        spawn.source().map(|s| s.to_string()),
        Some(os().to_string())
    );
    assert!(
        SpawnError::IoUring { reason: "r".into() }
            .source()
            .is_none()
    );
    let join = JoinError::EventLoop {
        worker: 3,
        source: os(),
    };
    assert_eq!(
        join.to_string(),
        format!("worker 3: event loop failed: {}", os())
    );
    assert!(join.source().is_some());
    let panicked = JoinError::WorkerPanicked { worker: 1 };
    assert_eq!(panicked.to_string(), "worker 1 panicked");
    assert!(panicked.source().is_none());
    let stuck = JoinError::StillRunning {
        running: 2,
        limit: std::time::Duration::from_secs(60),
    };
    assert_eq!(
        stuck.to_string(),
        "2 worker(s) still running 1m after the join began \
         (was the server shut down or aborted first?)"
    );
    assert!(stuck.source().is_none());
}
