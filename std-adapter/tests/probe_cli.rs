//! `ricochet probe` as a command: usage errors exit 2, `--json` prints one
//! parseable line, the table and `--quiet` behave, seeds are reproducible.

mod netns_support;
mod probe_support;

use std::time::Duration;

use probe_support::{Fault, FaultyServer, json_of, probe_cli, ricochet_bin, run_bounded, texts};

#[test]
fn probe_cli_bad_target_exits_2() {
    for bad in [
        "foo://127.0.0.1:7",
        "127.0.0.1:7",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:70000",
        "unix://",
        "udp://:7",
    ] {
        let o = probe_cli(&[bad]);
        let (code, out, err) = texts(&o);
        assert_eq!(code, 2, "{bad}: {out} {err}");
        assert!(err.contains("TARGET"), "{bad}: {err}");
        assert!(out.is_empty());
    }
}

/// The usual slips in a target's address get what is wrong and the form
/// to give, as `ricochet serve --tcp` does: it said "expected HOST:PORT"
/// to all of them, a port out of range included.
#[test]
fn probe_cli_address_slips_name_what_is_wrong_and_the_form_to_give() {
    for (target, needle) in [
        (
            "tcp://::1:7007",
            "goes in brackets before its port: [::1]:7007",
        ),
        (
            "udp://::1",
            "no port, and an IPv6 address goes in brackets before it",
        ),
        (
            "tcp://[::1]",
            "no port: give one after a colon, e.g. [::1]:PORT",
        ),
        (
            "tls://localhost",
            "no port: give one after a colon, e.g. localhost:PORT",
        ),
        ("tcp://:7", "nothing before the port"),
        ("tcp://127.0.0.1:70000", "port 70000 is out of range"),
    ] {
        let o = probe_cli(&[target]);
        let (code, _, err) = texts(&o);
        assert_eq!(code, 2, "{target}: {err}");
        assert!(err.contains(needle), "{target}: {err}");
    }
}

/// Port 0 copied from `serve --tcp [::1]:0` into a target: no server
/// listens there, and it ran to "Connection refused" (UDP: "no UDP echo
/// server"). A usage error now says it is serve's "any free port" and to
/// give the port serve printed.
#[test]
fn probe_cli_port_0_is_a_usage_error_naming_the_port_serve_printed() {
    for target in ["tcp://[::1]:0", "udp://127.0.0.1:0", "tls://localhost:0"] {
        let o = probe_cli(&[target, "-n", "1", "--timeout", "1s"]);
        let (code, out, err) = texts(&o);
        assert_eq!(code, 2, "{target}: {out} {err}");
        assert!(
            err.contains("port 0") && err.contains("listening tcp"),
            "{target}: {err}"
        );
    }
}

/// A loopback address of a family the host or namespace does not run:
/// 127.0.0.1 in an IPv6-only network namespace said only "Network is
/// unreachable", and ::1 where IPv6 is disabled "Cannot assign requested
/// address"; each now says which loopback is missing and the one a server
/// here listens on, for TCP and UDP alike.
#[test]
fn probe_cli_a_loopback_family_missing_here_is_named_with_the_other() {
    let disable_v6 = "for c in all default lo; do sysctl -qw net.ipv6.conf.$c.disable_ipv6=1; done";
    for (setup, family, needle) in [
        ("ip addr del 127.0.0.1/8 dev lo", "127.0.0.1:7", "IPv6-only"),
        (disable_v6, "[::1]:7", "IPv6 is disabled"),
    ] {
        for scheme in ["tcp", "udp"] {
            let target = format!("{scheme}://{family}");
            let args = ["probe", &target, "-n", "1", "--timeout", "1s"];
            let mut cmd = netns_support::ricochet_in_new_netns(setup, &args);
            let o = run_bounded(&mut cmd, Duration::from_secs(20));
            let (code, out, err) = texts(&o);
            assert_eq!(code, 1, "{target}: {out} {err}");
            assert!(out.contains(needle), "{target}: {out}");
        }
    }
}

/// Link-local IPv6 targets, as `ricochet serve` takes its addresses: the
/// interface by name is taken (`[fe80::1%lo]`, not looked up as a host
/// name), a missing one is a usage error naming the fix (not the connect's
/// bare EINVAL), and a lone bracket is a bad address, not a host name.
#[test]
fn probe_cli_link_local_targets_take_an_interface_name_and_need_one() {
    let o = probe_cli(&["tcp://[fe80::1]:7", "--timeout", "1s"]);
    let (code, out, err) = texts(&o);
    assert_eq!(code, 2, "{out} {err}");
    assert!(
        err.contains("link-local") && err.contains("[fe80::1%eth0]:7"),
        "{err}"
    );
    let o = probe_cli(&["udp://[fe80::1%no-such-if]:7"]);
    let (code, _, err) = texts(&o);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no network interface named \"no-such-if\""),
        "{err}"
    );
    let o = probe_cli(&["tcp://[::1:7"]);
    let (code, _, err) = texts(&o);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad address") && !err.contains("resolve"),
        "{err}"
    );
    if std::path::Path::new("/sys/class/net/lo/ifindex").exists() {
        // Parsed with the loopback's index; the connect itself then fails
        // (no fe80::1 on it): a run that ends, not a usage error.
        let o = probe_cli(&["tcp://[fe80::1%lo]:7", "--timeout", "1s", "--json"]);
        let (code, out, err) = texts(&o);
        assert_eq!(code, 1, "{out} {err}");
        assert!(!err.contains("resolve"), "{err}");
        // Shown as written, by the interface's name, not std's index.
        let j = json_of(&o);
        assert_eq!(j["target"], "tcp://[fe80::1%lo]:7", "{j}");
        assert!(
            j["error_details"]
                .to_string()
                .contains("connect to [fe80::1%lo]:7: "),
            "{j}"
        );
    }
}

#[test]
fn probe_cli_usage_errors_exit_2() {
    let srv = FaultyServer::start(Fault::None);
    let t = format!("tcp://{}", srv.addr);
    let u = format!("udp://{}", srv.addr);
    let cases: &[&[&str]] = &[
        &[&t, "--count", "5", "--duration", "1s"],
        &[&t, "--size", "lots"],
        &[&t, "--size", "9-3"],
        &[&t, "--mode", "frames", "--size", "1"],
        &[&t, "--connections", "0"],
        &[&t, "--warmup", "1s"],
        &[&t, "--pattern", "zigzag"],
        &[&u, "--mode", "lines"],
        &[&u, "--size", "8"],
        &[&t, "--json", "--quiet"],
    ];
    for args in cases {
        let o = probe_cli(args);
        let (code, out, err) = texts(&o);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(!err.is_empty(), "{args:?}: an error message is printed");
    }
}

#[test]
fn probe_cli_warns_before_a_run_planned_past_a_tib() {
    // A server that closes at once: the run ends as soon as it starts.
    let srv = FaultyServer::start(Fault::CloseAtOnce);
    let t = format!("tcp://{}", srv.addr);
    let warning = "ricochet probe: warning: this run is planned to send";
    // -s 100G with the default -n 1000: about 100 TB.
    let o = probe_cli(&[&t, "-s", "100G", "--json"]);
    let (code, out, err) = texts(&o);
    assert_eq!(code, 1, "{out} {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(warning),
        "the first line, before the run: {err}"
    );
    assert!(first.contains("97.7 TiB"), "{first}");
    assert!(
        first.contains("1000 messages (-n) of 100 GiB (-s)"),
        "{first}"
    );
    assert!(first.contains("-n 10 stays within 1 TiB"), "{first}");
    assert!(first.contains("-d DURATION"), "{first}");
    json_of(&o); // stdout still holds the one JSON line
    // Within 1 TiB, bounded by -d, --quiet, or a usage error: no warning.
    for args in [
        &[&t, "-s", "100G", "-n", "10"][..],
        &[&t, "-s", "100G", "-d", "1s"],
        &[&t, "-s", "100G", "-q"],
    ] {
        let (_, out, err) = texts(&probe_cli(args));
        assert!(!err.contains("warning: this run"), "{args:?}: {out} {err}");
    }
    let (code, _, err) = texts(&probe_cli(&[&format!("udp://{}", srv.addr), "-s", "100G"]));
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

/// `-w` is the stream pattern's: given with ping-pong or crr it did
/// nothing without a word.
#[test]
fn probe_cli_warns_of_a_window_outside_the_stream_pattern() {
    let srv = FaultyServer::start(Fault::None);
    let t = format!("tcp://{}", srv.addr);
    let warning = "ricochet probe: warning: --window has no effect with --pattern";
    for (args, warned) in [
        (
            &[&t, "-w", "64K", "-n", "5", "--json"][..],
            Some("pingpong"),
        ),
        (
            &[&t, "-w", "64K", "-n", "5", "-p", "crr", "--json"],
            Some("crr"),
        ),
        (
            &[&t, "-w", "64K", "-n", "5", "-p", "stream", "--json"],
            None,
        ),
        (&[&t, "-n", "5", "--json"], None),
    ] {
        let o = probe_cli(args);
        let (code, out, err) = texts(&o);
        assert_eq!(code, 0, "{args:?}: {out} {err}");
        // The report's warnings hold it too (JSON, the table, --strict).
        let j = json_of(&o);
        let in_report = j["warnings"].as_array().expect("warnings").iter().any(|w| {
            w.as_str()
                .is_some_and(|w| w.contains("--window has no effect"))
        });
        assert_eq!(in_report, warned.is_some(), "{args:?}: {out}");
        match warned {
            Some(pattern) => {
                let line = err.lines().find(|l| l.starts_with(warning));
                let line = line.unwrap_or_else(|| panic!("{args:?}: {err}"));
                assert!(
                    line.contains(pattern) && line.contains("-p stream"),
                    "{line}"
                );
            }
            None => assert!(!err.contains("--window"), "{args:?}: {err}"),
        }
    }
    // --strict fails on a warning: this one too (it exited 0).
    let (code, out, err) = texts(&probe_cli(&[&t, "-w", "64K", "-n", "5", "--strict"]));
    assert_eq!(code, 1, "{out} {err}");
    assert!(
        err.contains("failed (--strict): warning: --window has no effect"),
        "{err}"
    );
}

#[test]
fn probe_cli_json_is_one_line_with_the_figures() {
    let srv = FaultyServer::start(Fault::None);
    let o = probe_cli(&[
        &format!("tcp://{}", srv.addr),
        "-c",
        "3",
        "-n",
        "50",
        "--json",
        "--seed",
        "7",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["tool"], "ricochet-probe");
    assert_eq!(j["ok"], true);
    assert_eq!(j["transport"], "tcp");
    assert_eq!(j["mode"], "raw");
    assert_eq!(j["pattern"], "pingpong");
    assert_eq!(j["connections"], 3);
    assert_eq!(j["connections_ok"], 3);
    assert_eq!(j["seed"], 7);
    assert_eq!(j["messages_sent"], 150);
    assert_eq!(j["messages_verified"], 150);
    assert_eq!(j["bytes_verified"], 150 * 64);
    assert_eq!(j["round_trips"], 150);
    assert!(j["round_trips_per_sec"].as_f64().unwrap() > 0.0);
    assert!(j["mb_per_sec"].as_f64().unwrap() > 0.0);
    let lat = &j["latency_us"];
    assert_eq!(lat["count"], 150);
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(lat[k].is_u64(), "latency {k}");
    }
    assert!(
        lat["p50"].as_u64() <= lat["p99"].as_u64() && lat["p99"].as_u64() <= lat["max"].as_u64()
    );
    for k in [
        "mismatch",
        "unexpected_data",
        "early_close",
        "refused",
        "connect_timeout",
        "timeout",
        "no_fin",
        "io",
    ] {
        assert_eq!(j["errors"][k], 0, "errors.{k}");
    }
    assert!(j["error_details"].as_array().unwrap().is_empty());
    assert!(j["datagrams"].is_null());
}

#[test]
fn probe_cli_table_shows_seed_rates_latency_and_result() {
    let srv = FaultyServer::start(Fault::None);
    let o = probe_cli(&[&format!("tcp://{}", srv.addr), "-n", "20"]);
    let (code, out, _) = texts(&o);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "seed 1",
        "round trips",
        "MB/s",
        "p50",
        "p99.9",
        "errors       none",
        "OK: every byte verified",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn probe_cli_quiet_prints_nothing_on_success() {
    let srv = FaultyServer::start(Fault::None);
    let o = probe_cli(&[&format!("tcp://{}", srv.addr), "-n", "20", "-q"]);
    let (code, out, err) = texts(&o);
    assert_eq!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.is_empty(),
        "no progress bar when stderr is not a terminal: {err}"
    );
}

#[test]
fn probe_cli_same_seed_sends_same_sizes_other_seed_differs() {
    let srv = FaultyServer::start(Fault::None);
    let t = format!("tcp://{}", srv.addr);
    let sent = |seed: &str| {
        let o = probe_cli(&[&t, "-n", "100", "-s", "1..=5000", "--seed", seed, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
        json_of(&o)["bytes_sent"].as_u64().unwrap()
    };
    let (a, b, c) = (sent("3"), sent("3"), sent("4"));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn probe_cli_duration_runs_about_that_long() {
    let srv = FaultyServer::start(Fault::None);
    let start = std::time::Instant::now();
    let o = probe_cli(&[
        &format!("tcp://{}", srv.addr),
        "-d",
        "600ms",
        "--warmup",
        "200ms",
        "--json",
    ]);
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    let w = j["measured_secs"].as_f64().unwrap();
    assert!((0.5..=0.7).contains(&w), "window {w}");
    assert!(
        took >= std::time::Duration::from_millis(800),
        "took {took:?}"
    );
    assert!(
        j["messages_verified"].as_u64().unwrap() > j["round_trips"].as_u64().unwrap(),
        "warmup not counted"
    );
}

/// `ricochet probe … -i 100ms | head -n 2`: once `head` has its lines the
/// probe's stdout is a closed pipe. It went on loading the server for the
/// whole duration (20 s here) and only then said it could not write; it
/// now stops the run at the first failed write, as an interrupt does.
#[test]
fn probe_cli_stops_the_run_when_stdout_is_closed() {
    let srv = FaultyServer::start(Fault::None);
    let script = format!(
        "set -o pipefail; '{}' probe tcp://{} -c 2 -d 20s -i 100ms | head -n 2",
        ricochet_bin(),
        srv.addr
    );
    let start = std::time::Instant::now();
    let o = run_bounded(
        std::process::Command::new("bash").args(["-c", &script]),
        Duration::from_secs(30),
    );
    let took = start.elapsed();
    let (code, out, err) = texts(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        err.contains("cannot write to stdout") && err.contains("stopping the run"),
        "{err}"
    );
    assert_eq!(code, 130, "interrupted, as by a signal: {err}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {err}");
}
