use super::*;

#[test]
fn an_endpoint_given_twice_is_named_and_port_zero_may_repeat() {
    let a: SocketAddr = "127.0.0.1:7".parse().unwrap();
    let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut c = ServerConfig {
        tcp: vec![zero, a, zero],
        udp: vec![a],
        unix: vec!["/run/a".into(), "/run/b".into()],
        ..ServerConfig::default()
    };
    assert_eq!(given_twice(&c), None);
    c.udp.push(a);
    assert_eq!(given_twice(&c).as_deref(), Some("--udp 127.0.0.1:7"));
    c.udp.pop();
    c.unix.push("/run/a".into());
    assert_eq!(given_twice(&c).as_deref(), Some("--unix /run/a"));
    c.unix.pop();
    c.tcp.push(a);
    assert_eq!(given_twice(&c).as_deref(), Some("--tcp 127.0.0.1:7"));
    let err = validate(&c, 0).unwrap_err().to_string();
    assert!(err.contains("--tcp 127.0.0.1:7 is given twice"), "{err}");
}

/// Limits the command line enforced and the library did not: a
/// library caller's 1 ns stats interval flooded the log, a zero idle
/// timeout (the README's "0 disables") ended every connection at once.
#[test]
fn library_config_is_held_to_the_command_line_limits() {
    let base = || ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        ..ServerConfig::default()
    };
    assert!(validate(&base(), 0).is_ok());
    type Set = fn(&mut ServerConfig);
    let cases: [(Set, &str); 5] = [
        (
            |c| c.stats_interval = Some(Duration::from_nanos(1)),
            "floods the log",
        ),
        (
            |c| c.idle_timeout = Some(Duration::ZERO),
            "idle timeout of 0",
        ),
        (
            |c| c.drain_timeout = Some(Duration::ZERO),
            "drain timeout of 0",
        ),
        (
            |c| c.busy_poll = Duration::from_millis(2),
            "busy polling longer than 1ms",
        ),
        (|c| c.udp_max_datagram = 65_528, "between 1 and 65527 bytes"),
    ];
    for (set, want) in cases {
        let mut c = base();
        set(&mut c);
        let e = validate(&c, 0).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
    let mut c = base();
    c.stats_interval = Some(STATS_INTERVAL_MIN);
    c.busy_poll = BUSY_POLL_MAX;
    c.udp_max_datagram = 65_527;
    assert!(validate(&c, 0).is_ok(), "the limits themselves are allowed");
}

#[test]
fn parse_duration_accepts_units_and_bare_seconds() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
}

#[test]
fn parse_duration_rejects_garbage() {
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    for bad in ["", "s", "5x", "-1s", "ms5"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn buffer_size_parses_any_size_from_64_bytes_to_16_mib() {
    assert_eq!("4096".parse::<BufferSize>(), Ok(BufferSize::K4));
    assert_eq!("16KiB".parse::<BufferSize>(), Ok(BufferSize::K16));
    assert_eq!("64k".parse::<BufferSize>(), Ok(BufferSize::K64));
    assert_eq!(
        "70000".parse::<BufferSize>().map(BufferSize::bytes),
        Ok(70_000)
    );
    assert_eq!("64".parse::<BufferSize>(), Ok(BufferSize::MIN));
    assert_eq!("16MiB".parse::<BufferSize>(), Ok(BufferSize::MAX));
    assert_eq!(
        "1m".parse::<BufferSize>().map(BufferSize::bytes),
        Ok(1 << 20)
    );
    for bad in ["63", "0", "17MiB", "lots", "-1", ""] {
        let err = bad.parse::<BufferSize>().unwrap_err();
        assert!(
            err.to_string().contains("64 bytes to 16 MiB"),
            "{bad}: {err}"
        );
    }
}

fn one_tcp() -> ServerConfig {
    ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        ..ServerConfig::default()
    }
}

/// Every range `validate` enforces refuses the first value past it, naming
/// the setting, and takes the value at its edge.
#[test]
fn a_value_past_each_limit_is_refused_and_the_limit_itself_taken() {
    type Set = fn(&mut ServerConfig);
    let refused: [(Set, &str); 11] = [
        (|c| c.threads = 1025, "threads must be at most 1024"),
        (|c| c.backlog = 0, "backlog must be at least 1"),
        (
            |c| c.max_connections = Some(0),
            "max-connections must be at least 1",
        ),
        (
            |c| c.udp_max_datagram = 0,
            "udp max datagram must be between 1 and 65527 bytes",
        ),
        (
            |c| c.stats_interval = Some(STATS_INTERVAL_MIN - Duration::from_nanos(1)),
            "a stats line more often than every 100ms floods the log",
        ),
        (
            |c| c.busy_poll = BUSY_POLL_MAX + Duration::from_nanos(1),
            "busy polling longer than 1ms",
        ),
        (
            |c| {
                c.udp_rate = Some(UdpRate {
                    per_second: 0,
                    burst: 1,
                })
            },
            "udp rate and burst must both be at least 1",
        ),
        (
            |c| {
                c.udp_rate = Some(UdpRate {
                    per_second: 1,
                    burst: 0,
                })
            },
            "udp rate and burst must both be at least 1",
        ),
        (
            |c| c.udp_receive_buffer = Some(0),
            "udp receive buffer must be between 1 byte",
        ),
        (
            |c| c.udp_receive_buffer = Some(MAX_UDP_RECEIVE_BUFFER + 1),
            "udp receive buffer must be between 1 byte",
        ),
        (
            |c| c.unix_mode = 0o1000,
            "unix socket mode must be at most 0777",
        ),
    ];
    for (set, want) in refused {
        let mut c = one_tcp();
        set(&mut c);
        let e = validate(&c, 0).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("invalid configuration: {want}")),
            "{want}: {e}"
        );
    }
    let mut edge = one_tcp();
    edge.threads = 1024;
    edge.backlog = 1;
    edge.max_connections = Some(1);
    edge.udp_max_datagram = 1;
    edge.udp_rate = Some(UdpRate {
        per_second: 1,
        burst: 1,
    });
    edge.udp_receive_buffer = Some(MAX_UDP_RECEIVE_BUFFER);
    edge.unix_mode = 0o777;
    assert!(
        validate(&edge, 0).is_ok(),
        "the limits themselves are allowed"
    );
    edge.udp_receive_buffer = Some(1);
    assert!(validate(&edge, 0).is_ok(), "a 1-byte receive buffer");
    edge.udp_rate = None;
    edge.udp_receive_buffer = None;
    assert!(
        validate(&edge, 0).is_ok(),
        "no rate limit, the kernel's buffer"
    );
}

/// Any one kind of endpoint is enough to bind; none at all (and no
/// inherited socket) is `NoListener`, not an empty server.
#[test]
fn any_single_endpoint_is_enough_and_none_is_no_listener() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let none = ServerConfig::default();
    assert!(matches!(validate(&none, 0), Err(BindError::NoListener)));
    assert!(validate(&none, 1).is_ok(), "an inherited socket listens");
    let alone: [ServerConfig; 4] = [
        ServerConfig {
            tcp: vec![addr],
            ..ServerConfig::default()
        },
        ServerConfig {
            udp: vec![addr],
            ..ServerConfig::default()
        },
        ServerConfig {
            unix: vec!["/run/echo.sock".into()],
            ..ServerConfig::default()
        },
        ServerConfig {
            tls: Some(super::super::tls::TlsConfig::new(
                vec![addr],
                "cert.pem",
                "key.pem",
            )),
            ..ServerConfig::default()
        },
    ];
    for c in alone {
        assert!(validate(&c, 0).is_ok(), "{c:?}");
    }
}

/// A certificate with nowhere to serve it is refused with the flag to add,
/// even beside a plain TCP listener.
#[test]
fn tls_without_a_listening_address_is_refused_with_the_flag_to_add() {
    let mut c = one_tcp();
    c.tls = Some(super::super::tls::TlsConfig::new(
        Vec::new(),
        "cert.pem",
        "key.pem",
    ));
    let e = validate(&c, 0).unwrap_err().to_string();
    assert!(
        e.contains("TLS is configured but has no listening address: add --tls ADDR"),
        "{e}"
    );
}

#[test]
fn names_print_as_the_command_line_spells_them_and_parse_back() {
    assert_eq!(BufferSize::K4.to_string(), "4096");
    assert_eq!(AcceptStrategy::ReusePort.to_string(), "reuseport");
    assert_eq!(AcceptStrategy::Shared.to_string(), "shared");
    for io in [IoBackend::Auto, IoBackend::Uring, IoBackend::Epoll] {
        assert_eq!(io.to_string().parse::<IoBackend>(), Ok(io));
    }
    assert_eq!(IoBackend::Uring.to_string(), "uring");
    for uring in ["io_uring", "io-uring", " URING "] {
        assert_eq!(uring.parse::<IoBackend>(), Ok(IoBackend::Uring), "{uring}");
    }
    assert_eq!(
        "kqueue".parse::<IoBackend>(),
        Err("invalid I/O backend \"kqueue\": expected auto, uring or epoll".to_owned())
    );
}

#[test]
fn a_bad_duration_displays_the_reason_alone() {
    let e = parse_duration("5x").unwrap_err();
    assert_eq!(e.given, "5x");
    assert!(!e.reason.is_empty());
    assert_eq!(e.to_string(), e.reason);
}

#[test]
fn session_config_carries_mode_and_both_timeouts() {
    let c = ServerConfig {
        mode: Mode::Lines,
        idle_timeout: Some(Duration::from_secs(7)),
        drain_timeout: None,
        ..ServerConfig::default()
    };
    let s = c.session_config();
    assert_eq!(s.mode, Mode::Lines);
    assert_eq!(s.idle_timeout, Some(ricochet_core::Duration::from_secs(7)));
    assert_eq!(s.drain_timeout, None);
    assert_eq!(s.linger, ricochet_core::SessionConfig::DEFAULT.linger);
}

#[test]
fn zero_threads_is_one_worker_per_core_and_a_count_is_kept() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut c = ServerConfig::default();
    assert_eq!(c.worker_count(), cores);
    c.threads = cores + 1;
    assert_eq!(c.worker_count(), cores + 1);
}
