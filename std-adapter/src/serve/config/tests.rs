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
