use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: ServeArgs,
}

fn config(args: &[&str]) -> ServerConfig {
    let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    cli.args.into_config(false)
}

fn usage_error(args: &[&str]) -> String {
    Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
        .map(|c| format!("accepted: {:?}", c.args))
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn no_address_means_tcp_and_udp_on_loopback_7007() {
    let c = config(&[]);
    let default: SocketAddr = "127.0.0.1:7007".parse().unwrap();
    assert_eq!(
        (c.tcp, c.udp, c.unix.len()),
        (vec![default], vec![default], 0)
    );
}

#[test]
fn busy_poll_is_off_by_default_and_takes_durations_up_to_1ms() {
    assert_eq!(config(&[]).busy_poll, Duration::ZERO);
    assert_eq!(config(&[]).busy_poll, ServerConfig::default().busy_poll);
    assert_eq!(
        config(&["--busy-poll", "50us"]).busy_poll,
        Duration::from_micros(50)
    );
    assert_eq!(
        config(&["--busy-poll", "1ms"]).busy_poll,
        crate::cli::serve_values::BUSY_POLL_MAX
    );
    assert_eq!(config(&["--busy-poll", "off"]).busy_poll, Duration::ZERO);
    let e = usage_error(&["--busy-poll", "1001us"]);
    assert!(e.contains("at most 1ms"), "{e}");
}

#[test]
fn any_address_replaces_the_defaults() {
    let c = config(&["--unix", "/tmp/x.sock"]);
    assert!(c.tcp.is_empty() && c.udp.is_empty());
    let c = config(&["--udp", "9"]);
    assert_eq!(c.udp, vec!["127.0.0.1:9".parse().unwrap()]);
    assert!(c.tcp.is_empty());
}

#[test]
fn inherited_sockets_replace_the_default_endpoints() {
    let cli = Cli::try_parse_from(["serve"]).unwrap();
    let c = cli.args.into_config(true);
    assert!(
        c.tcp.is_empty() && c.udp.is_empty() && c.unix.is_empty(),
        "{c:?}"
    );
    // Mixing: explicit addresses are kept beside inherited sockets.
    let cli = Cli::try_parse_from(["serve", "--tcp", "127.0.0.1:0"]).unwrap();
    assert_eq!(cli.args.into_config(true).tcp.len(), 1);
}

#[test]
fn inetd_excludes_listeners_and_metrics_and_group_needs_user() {
    for other in [
        &["--tcp", "7"][..],
        &["--udp", "7"],
        &["--unix", "/x"],
        &["--metrics", "9"],
    ] {
        let mut args = vec!["--inetd"];
        args.extend_from_slice(other);
        let e = usage_error(&args);
        assert!(e.contains("cannot be used with"), "{args:?}: {e}");
    }
    // TLS is not served on inetd's socket: asked for, it was plain echo
    // without a word (no certificate checked, nothing encrypted).
    let e = usage_error(&["--inetd", "--tls-cert", "c.pem", "--tls-key", "k.pem"]);
    assert!(
        e.contains("cannot be used with") && e.contains("--tls-cert"),
        "{e}"
    );
    let e = usage_error(&["--group", "nogroup"]);
    assert!(e.contains("--user"), "{e}");
    // A v4-mapped address is a usage error (exit 2) naming the IPv4
    // form, as a link-local one is; it failed to bind later (exit 1).
    let e = usage_error(&["--tcp", "[::ffff:127.0.0.1]:0"]);
    assert!(
        e.contains("v4-mapped") && e.contains("give the IPv4 address, 127.0.0.1:0"),
        "{e}"
    );
}

#[test]
fn metrics_bare_port_is_loopback_and_log_format_parses() {
    let cli = Cli::try_parse_from(["serve", "--metrics", "9107", "--log-format", "json"]).unwrap();
    assert_eq!(cli.args.metrics, Some("127.0.0.1:9107".parse().unwrap()));
    assert_eq!(cli.args.log_format, LogFormat::Json);
    let cli = Cli::try_parse_from(["serve"]).unwrap();
    assert_eq!(
        (cli.args.metrics, cli.args.log_format),
        (None, LogFormat::Human)
    );
}

#[test]
fn io_backend_defaults_to_auto_and_takes_each_name() {
    // (RICOCHET_IO, the flag's environment, is not set by cargo test.)
    if std::env::var_os("RICOCHET_IO").is_none() {
        assert_eq!(config(&[]).io, IoBackend::Auto);
    }
    assert_eq!(config(&["--io", "uring"]).io, IoBackend::Uring);
    assert_eq!(config(&["--io", "epoll"]).io, IoBackend::Epoll);
    assert_eq!(config(&["--io", "auto"]).io, IoBackend::Auto);
    let e = usage_error(&["--io", "kqueue"]);
    assert!(e.contains("--io") && e.contains("uring"), "{e}");
}

#[test]
fn zero_threads_is_a_usage_error() {
    let e = usage_error(&["--threads", "0"]);
    assert!(e.contains("--threads") && e.contains("at least 1"), "{e}");
}

#[test]
fn zero_off_and_never_disable_the_session_timeouts() {
    for off in ["0", "off", "never"] {
        let c = config(&["--idle-timeout", off, "--drain-timeout", off]);
        assert_eq!((c.idle_timeout, c.drain_timeout), (None, None), "{off}");
    }
    let c = config(&["--idle-timeout", "1.5s", "--drain-timeout", "1m30s"]);
    assert_eq!(c.idle_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(c.drain_timeout, Some(Duration::from_secs(90)));
}

#[test]
fn lines_mode_with_only_udp_is_a_usage_error() {
    let udp_lines = config(&["--udp", "127.0.0.1:0", "--mode", "lines"]);
    let e = check_usage(&udp_lines, false).unwrap_err();
    assert!(e.contains("--mode lines") && e.contains("--tcp"), "{e}");
    assert_eq!(check_usage(&config(&["--mode", "lines"]), false), Ok(()));
    // An inherited stream socket (socket activation) is a stream listener too.
    assert_eq!(check_usage(&udp_lines, true), Ok(()));
}

#[test]
fn link_local_address_needs_an_interface() {
    let e = usage_error(&["--tcp", "[fe80::1]:0"]);
    assert!(e.contains("link-local") && e.contains("%eth0"), "{e}");
    let c = config(&["--tcp", "[fe80::1%lo]:0", "--udp", "[fe80::1%1]:0"]);
    let SocketAddr::V6(tcp) = c.tcp[0] else {
        panic!("{:?}", c.tcp)
    };
    assert_eq!(tcp.scope_id(), 1, "lo is interface 1");
    let e = usage_error(&["--tcp", "[fe80::1%nosuchif0]:0"]);
    assert!(e.contains("no network interface named"), "{e}");
}

/// `--tcp 127.0.0.1:70000` and `--metrics localhost:9107` look like
/// IP:PORT to whoever wrote them: the error says what is wrong with them.
#[test]
fn address_errors_name_a_port_out_of_range_or_a_host_name() {
    for (bad, want) in [
        (
            "127.0.0.1:70000",
            "port 70000 is out of range: a port is 0 to 65535",
        ),
        ("[::1]:99999", "port 99999 is out of range"),
        ("99999", "port 99999 is out of range"),
        ("localhost:9107", "\"localhost\" is not an IP address"),
    ] {
        for flag in ["--tcp", "--udp", "--metrics"] {
            let e = usage_error(&[flag, bad]);
            assert!(e.contains(want), "{flag} {bad}: {e}");
        }
    }
    let e = usage_error(&["--tcp", "nonsense"]);
    assert!(e.contains("\"nonsense\" is not an IP address"), "{e}");
    let e = usage_error(&["--tcp", "127.0.0.1:"]);
    assert!(e.contains("no port: give one after a colon"), "{e}");
    let e = usage_error(&["--tcp", "[::1"]);
    assert!(e.contains("expected IP:PORT"), "{e}");
}

#[test]
fn library_config_errors_are_usage_errors_and_bind_errors_are_not() {
    let invalid = BindError::InvalidConfig { reason: "x".into() };
    assert_eq!(bind_failure_code(&invalid), 2);
    assert_eq!(bind_failure_code(&BindError::NoListener), 2);
    let busy = BindError::AddrInUse {
        endpoint: ricochet::serve::Endpoint::Tcp("127.0.0.1:1".parse().unwrap()),
    };
    assert_eq!(bind_failure_code(&busy), 1);
}

/// The per-source UDP rate limit is on by default (the core's rate and
/// burst); `--udp-rate 0` or `--udp-burst 0` turns it off, any other pair
/// is taken as given.
#[test]
fn udp_rate_limit_is_on_by_default_and_a_zero_rate_or_burst_turns_it_off() {
    assert_eq!(
        config(&[]).udp_rate,
        Some(UdpRate {
            per_second: DEFAULT_RATE.per_second,
            burst: DEFAULT_RATE.burst,
        })
    );
    assert_eq!(config(&["--udp-rate", "0"]).udp_rate, None);
    assert_eq!(config(&["--udp-burst", "0"]).udp_rate, None);
    assert_eq!(
        config(&["--udp-rate", "1", "--udp-burst", "1"]).udp_rate,
        Some(UdpRate {
            per_second: 1,
            burst: 1,
        })
    );
}

/// The UDP loop guard (datagrams from echo, chargen... ports dropped) is
/// on unless `--no-loop-guard` turns it off.
#[test]
fn loop_guard_is_on_unless_no_loop_guard_is_given() {
    assert!(config(&[]).loop_guard);
    assert!(!config(&["--no-loop-guard"]).loop_guard);
}

/// `--user` (with `--group`, if given) is who the server becomes once
/// bound; without `--user` it stays who it is.
#[test]
fn user_and_group_are_the_privilege_drop_target() {
    let parse = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap()
            .args
            .drop_to()
    };
    assert_eq!(parse(&[]), None);
    assert_eq!(
        parse(&["--user", "nobody"]),
        Some(Target {
            user: "nobody".into(),
            group: None,
        })
    );
    assert_eq!(
        parse(&["--user", "nobody", "--group", "nogroup"]),
        Some(Target {
            user: "nobody".into(),
            group: Some("nogroup".into()),
        })
    );
}
