//! `ricochet probe` as a new user meets it: help, edge values, the words
//! and units of the report, hints on failures, and write errors.

mod probe_support;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use probe_support::{
    Fault, FaultyServer, OurServer, STEP_TIMEOUT, json_of, probe_cli, ricochet_bin, run_bounded,
    texts,
};
use ricochet::core::Mode;

fn tcp(srv: &FaultyServer) -> String {
    format!("tcp://{}", srv.addr)
}

/// A TCP address nobody listens on (connects are refused).
fn refused_target() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    format!("tcp://{a}")
}

#[test]
fn help_examples_use_the_serve_default_port_and_state_the_udp_sizes() {
    let o = probe_cli(&["--help"]);
    let (code, out, _) = texts(&o);
    assert_eq!(code, 0);
    assert!(out.contains("tcp://127.0.0.1:7007"), "{out}");
    for line in out.lines().filter(|l| l.contains("://")) {
        assert!(
            !line.contains(":7 ") && !line.ends_with(":7"),
            "port 7 in {line:?}"
        );
    }
    assert!(out.contains("12 to 65507 bytes"), "{out}");
}

#[test]
fn edge_values_with_nothing_to_check_or_no_bound_are_usage_errors() {
    let srv = FaultyServer::start(Fault::None);
    let t = tcp(&srv);
    for (args, needle) in [
        (vec!["-n", "0"], "--count must be at least 1"),
        (vec!["-d", "0"], "--duration must be more than 0"),
        (vec!["-d", "0s"], "--duration must be more than 0"),
        (vec!["--timeout", "0"], "--timeout 1m"),
        (
            vec!["-s", "0"],
            "--size 0 is out of range: a raw message is at least 1 byte",
        ),
    ] {
        let mut all = vec![t.as_str()];
        all.extend(&args);
        let (code, out, err) = texts(&probe_cli(&all));
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("18446744073709551615"), "{err}");
    }
}

#[test]
fn udp_sizes_beyond_the_largest_datagram_are_rejected_before_sending() {
    let u = "udp://127.0.0.1:9";
    let (code, _, err) = texts(&probe_cli(&[u, "-s", "65508"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("a UDP datagram over IPv4 is 12 to 65507 bytes"),
        "{err}"
    );
    let (code, _, err) = texts(&probe_cli(&["udp://[::1]:9", "-s", "65528"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("12 to 65527 bytes"), "{err}");
    let (code, _, err) = texts(&probe_cli(&[u, "-s", "8"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("12-byte sequence number and tag"), "{err}");
}

#[test]
fn durations_share_one_grammar() {
    let srv = FaultyServer::start(Fault::None);
    let o = probe_cli(&[&tcp(&srv), "-n", "5", "--timeout", "1m30s", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["timeout_secs"], 90.0);
    let o = probe_cli(&[&tcp(&srv), "-d", "0.3", "--warmup", "0.1s", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(
        (j["duration_secs"].as_f64(), j["warmup_secs"].as_f64()),
        (Some(0.3), Some(0.1))
    );
    let (code, _, err) = texts(&probe_cli(&[&tcp(&srv), "--timeout", "5 parsecs"]));
    assert_eq!(code, 2);
    assert!(err.contains("1m30s"), "{err}");
}

#[test]
fn json_carries_the_run_parameters_version_and_start_time() {
    let srv = FaultyServer::start(Fault::None);
    let o = probe_cli(&[
        &tcp(&srv),
        "-c",
        "2",
        "-n",
        "20",
        "-r",
        "400",
        "-p",
        "stream",
        "-w",
        "4K",
        "--timeout",
        "3s",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["count"], 20);
    assert_eq!(j["messages_requested"], 40);
    assert!(j["duration_secs"].is_null());
    assert_eq!(j["warmup_secs"], 0.0);
    assert_eq!(j["rate"], 400.0);
    assert_eq!(j["window"], 4096);
    assert_eq!(j["timeout_secs"], 3.0);
    assert_eq!(j["max_loss_pct"], 0.0);
    assert!(j["measured_secs"].as_f64().unwrap() > 0.0);
    assert!(
        j.get("window_secs").is_none(),
        "renamed: it clashed with --window"
    );
    let mb = j["mb_per_sec"].as_f64().unwrap();
    assert!((j["mbit_per_sec"].as_f64().unwrap() - 8.0 * mb).abs() < 1e-9);
    let started = j["started_at"].as_str().expect("started_at");
    let t = humantime::parse_rfc3339(started).expect("RFC 3339");
    let age = std::time::SystemTime::now()
        .duration_since(t)
        .expect("in the past");
    assert!(age < STEP_TIMEOUT, "{started}");
}

#[test]
fn table_names_the_measured_span_rate_and_units() {
    let srv = FaultyServer::start(Fault::None);
    let (code, out, _) = texts(&probe_cli(&[&tcp(&srv), "-n", "20", "-r", "200"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nmeasured     "), "{out}");
    assert!(!out.contains("\nwindow "), "{out}");
    assert!(out.contains("(requested 200 /s)"), "{out}");
    assert!(out.contains("rate 200 msg/s in total"), "{out}");
    assert!(out.contains("Mbit/s"), "{out}");
    assert!(
        out.contains(" us,") || out.contains(" ms,"),
        "latency units: {out}"
    );
}

#[test]
fn unreachable_rate_is_a_warning() {
    let srv = FaultyServer::start(Fault::None);
    // One connection cannot do ten million round trips per second.
    let (code, out, _) = texts(&probe_cli(&[&tcp(&srv), "-n", "300", "-r", "10M"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning      the requested rate of 10000000 msg/s was not reached"),
        "{out}"
    );
}

#[test]
fn refused_run_counts_requested_messages_and_shows_no_fake_latency() {
    let o = probe_cli(&[&refused_target(), "-n", "10"]);
    let (code, out, _) = texts(&o);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("verified     0 of 0 messages sent (10 requested)"),
        "{out}"
    );
    assert!(
        out.contains("latency      none measured"),
        "no table of zero latencies: {out}"
    );
    assert!(out.contains("errors       1 error (refused 1)"), "{out}");
    assert!(!out.contains("1 errors"), "{out}");
    assert!(
        out.contains("result       FAILED: 1 error (0 of 1 connection completed cleanly)"),
        "{out}"
    );
}

#[test]
fn udp_result_counts_sockets_and_a_lossy_socket_is_not_clean() {
    let srv = probe_support::FaultyUdp::start(probe_support::UdpFault::DropEvery(10));
    let (code, out, _) = texts(&probe_cli(&[
        &format!("udp://{}", srv.addr),
        "-c",
        "1",
        "-n",
        "30",
        "--timeout",
        "300ms",
        "--max-loss",
        "5",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("(0 of 1 socket without error or loss)"),
        "{out}"
    );
    assert!(!out.contains("connections completed cleanly"), "{out}");
}

#[test]
fn mismatch_shows_printable_bytes_and_what_came_back_around_them() {
    let srv = FaultyServer::start(Fault::Banner(b"220 hello\r\n"));
    let (code, out, _) = texts(&probe_cli(&[
        &tcp(&srv),
        "-n",
        "5",
        "-m",
        "lines",
        "--timeout",
        "2s",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("connection 0: mismatch at stream offset 0: sent "),
        "{out}"
    );
    assert!(out.contains("got '2' (0x32)"), "{out}");
    assert!(
        out.contains("received at stream offset 0: \"220 hello\\r\\n"),
        "{out}"
    );
}

#[test]
fn raw_probe_of_a_lines_server_that_echoes_nothing_suggests_the_mode() {
    let server = OurServer::start(Mode::Lines);
    let (code, out, _) = texts(&probe_cli(&[
        &format!("tcp://{}", server.tcp),
        "-n",
        "1",
        "--timeout",
        "300ms",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("errors       1 error (timeout 1)"), "{out}");
    assert!(
        out.contains("hint         nothing came back at all"),
        "{out}"
    );
    assert!(out.contains("-m lines"), "{out}");
}

#[test]
fn udp_loss_above_1472_bytes_suggests_the_server_limit() {
    let server = OurServer::start(Mode::Raw); // drops datagrams above 1472 bytes
    let (code, out, _) = texts(&probe_cli(&[
        &format!("udp://{}", server.udp),
        "-n",
        "3",
        "-s",
        "2000",
        "--timeout",
        "200ms",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "hint         all datagrams were lost, and datagrams were larger than 1472 bytes"
        ),
        "{out}"
    );
    assert!(out.contains("-s 1472"), "{out}");
}

#[test]
fn report_that_cannot_be_written_is_an_error() {
    let srv = FaultyServer::start(Fault::None);
    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut cmd = Command::new(ricochet_bin());
    cmd.args(["probe", &tcp(&srv), "-n", "5"]).stdout(full);
    // run_bounded pipes stdout; build the output by hand instead.
    let o = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot write the report to stdout"), "{err}");
}

#[test]
fn too_low_open_file_limit_is_reported_up_front() {
    let srv = FaultyServer::start(Fault::None);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" probe \"$1\" -c 500 -n 1")
        .arg(ricochet_bin())
        .arg(tcp(&srv));
    let o = run_bounded(&mut cmd, STEP_TIMEOUT);
    let (code, out, err) = texts(&o);
    assert_eq!(code, 1, "{out} {err}");
    assert!(
        err.contains("--connections 500 needs about") && err.contains("ulimit -n"),
        "{err}"
    );
    assert!(out.is_empty(), "no report of 500 failed connects: {out}");
}

#[test]
fn quiet_probe_with_closed_stderr_still_exits_with_its_status() {
    let srv = FaultyServer::start(Fault::None);
    for (target, want) in [(tcp(&srv), 0), (refused_target(), 1)] {
        // stderr is a pipe whose reader is gone: every write to it fails (EPIPE).
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut cmd = Command::new(ricochet_bin());
        cmd.args(["probe", &target, "-n", "3", "-q"]).stderr(writer);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        drop(cmd);
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(start.elapsed() < STEP_TIMEOUT, "probe hung");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(want), "{target}");
    }
}

#[test]
fn help_shows_the_long_description_with_the_exit_statuses() {
    for args in [&["probe", "--help"][..], &["help", "probe"]] {
        let o = run_bounded(Command::new(ricochet_bin()).args(args), STEP_TIMEOUT);
        let (code, out, _) = texts(&o);
        assert_eq!(code, 0, "{args:?}");
        assert!(
            out.contains("Exit status: 0 when every byte verified")
                && out.contains("130 when interrupted"),
            "{args:?}: {out}"
        );
    }
}

#[test]
fn connect_rate_zero_is_refused_in_connections_per_second() {
    let srv = FaultyServer::start(Fault::None);
    let t = tcp(&srv);
    let (code, _, err) = texts(&probe_cli(&[&t, "-p", "crr", "--connect-rate", "0"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad rate \"0\": expected connections per second"),
        "{err}"
    );
    assert!(!err.contains("messages"), "{err}");
}

#[test]
fn readme_says_the_plot_interval_shows_in_the_requested_line() {
    let srv = FaultyServer::start(Fault::None);
    let dir = tempfile::tempdir().expect("temp dir");
    let svg = dir.path().join("a.svg");
    let (code, out, err) = texts(&probe_cli(&[
        &tcp(&srv),
        "-n",
        "10",
        "--plot",
        svg.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reports every 100ms"), "{out}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        readme.contains("the `requested` line says `reports every …`"),
        "the README should say where the implicit plot interval shows"
    );
}

/// Output files are checked before the run, not after it: a directory that
/// does not exist, or a plot name that is not `.svg` (the plot is SVG), is
/// a usage error at once, before any connection (the target here refuses
/// connections: a run would fail with status 1 instead).
#[test]
fn output_files_are_checked_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let t = refused_target();
    for (flag, path, needle) in [
        ("--plot", missing.join("a.svg"), "does not exist"),
        ("--latency-out", missing.join("a.hgrm"), "does not exist"),
        ("--plot", dir.path().join("a.png"), ".svg"),
        ("--latency-out", dir.path().to_path_buf(), "a directory"),
    ] {
        let p = path.to_str().unwrap();
        let (code, out, err) = texts(&probe_cli(&[&t, "-n", "1", flag, p]));
        assert_eq!(code, 2, "{flag} {p}: {out} {err}");
        assert!(
            err.contains(needle) && err.contains(flag),
            "{flag} {p}: {err}"
        );
        assert!(out.is_empty(), "no run, no table: {out}");
    }
    // Checking a file that is not there leaves nothing behind: the plot's
    // check passes (and removes what it created), the next one fails.
    let fresh = dir.path().join("fresh.svg");
    let bad = missing.join("a.hgrm");
    let (code, _, _) = texts(&probe_cli(&[
        &t,
        "-n",
        "1",
        "--plot",
        fresh.to_str().unwrap(),
        "--latency-out",
        bad.to_str().unwrap(),
    ]));
    assert_eq!(code, 2);
    assert!(!fresh.exists(), "the check left {}", fresh.display());
}

/// `--max-loss` is for datagrams: a stream target loses nothing (TCP
/// retransmits), so giving it there is a usage error, not silently unused.
#[test]
fn max_loss_on_a_stream_target_is_a_usage_error() {
    let t = refused_target();
    let (code, out, err) = texts(&probe_cli(&[&t, "-n", "1", "--max-loss", "5"]));
    assert_eq!(code, 2, "{out} {err}");
    assert!(
        err.contains("--max-loss") && err.contains("udp://"),
        "{err}"
    );
}

/// A closed-loop UDP run (no --rate) against a server that limits each
/// source's rate loses datagrams; the probe says what to try (the embedded
/// node under QEMU is such a server: every datagram comes from one
/// address). At the suggested rate the same run passes.
#[test]
fn udp_loss_without_a_rate_suggests_the_server_rate_limit() {
    use ricochet::serve::{Server, ServerConfig};
    let handle = Server::bind(ServerConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        udp_rate_loopback: true,
        ..ServerConfig::default()
    })
    .expect("bind")
    .spawn()
    .expect("spawn");
    let udp = handle.udp_addr().expect("udp address");
    let t = format!("udp://{udp}");
    let (code, out, err) = texts(&probe_cli(&[&t, "-n", "500", "--timeout", "300ms"]));
    assert_eq!(code, 1, "a closed loop outruns 1000/s: {out} {err}");
    assert!(
        out.contains("--rate") && out.contains("rate limit"),
        "no hint: {out}"
    );
    let (code, out, err) = texts(&probe_cli(&[
        &t,
        "-n",
        "300",
        "--rate",
        "500",
        "--timeout",
        "300ms",
    ]));
    assert_eq!(code, 0, "{out} {err}");
    handle.shutdown();
    handle.join().unwrap();
}
