//! `--log-format json`: one JSON object per stderr line, beside the human
//! format, through the same never-failing writer.

mod daemon_support;
mod serve_support;

use std::io::{Read, Write};

use serve_support::{IO_TIMEOUT, Proc, connect, round_trip};

#[test]
fn json_log_format_writes_one_object_per_line_with_the_fields() {
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--log-format", "json"]);
    let lines = p.listening(1);
    let tcp = lines[0].1.parse().unwrap();
    round_trip(&mut connect(tcp), b"logged");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    let records: Vec<serde_json::Value> = daemon_support::rest_of(&p.stderr)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let listening = records
        .iter()
        .find(|r| r["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("no listening record in {records:#?}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["fields"]["endpoint"], format!("tcp {tcp}"));
    assert!(listening["timestamp"].is_string() && listening["target"].is_string());
    let stopped = records
        .iter()
        .find(|r| r["fields"]["message"] == "stopped")
        .expect("a stopped record");
    assert_eq!(stopped["fields"]["accepted"], 1);
    assert_eq!(stopped["fields"]["bytes_out"], 6);
}

/// The final line accounts for every byte received: a partial frame held
/// at the shutdown cannot be echoed and is counted as discarded, so
/// `bytes_in` = `bytes_out` + `bytes_discarded`.
#[test]
fn stopped_line_counts_the_bytes_a_shutdown_discarded() {
    let mut p = Proc::serve(&[
        "--tcp",
        "127.0.0.1:0",
        "--mode",
        "frames",
        "--stats-interval",
        "100ms",
    ]);
    let tcp = p.listening(1)[0].1.parse().unwrap();
    let mut c = connect(tcp);
    c.write_all(b"\x00\x01a\x00\x05he").unwrap();
    let mut back = [0u8; 3];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"\x00\x01a");
    p.wait_stderr("buffered=4 B", IO_TIMEOUT); // the partial frame is held
    p.signal("TERM");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"", "the partial frame is not echoed, then FIN");
    drop(c);
    let stopped = p.wait_stderr("stopped", IO_TIMEOUT);
    assert!(
        stopped.contains("bytes_in=7 bytes_out=3 bytes_discarded=4"),
        "{stopped}"
    );
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn human_log_format_stays_the_default() {
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0"]);
    let line = p.wait_stderr("listening", IO_TIMEOUT);
    assert!(
        line.contains("INFO") && !line.trim_start().starts_with('{'),
        "{line}"
    );
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// A stderr that keeps up loses no line, so nothing is said of lost
/// lines: not while serving, not at exit (the report of dropped lines
/// once named "1 log lines" or "0 log lines" on a healthy stderr).
#[test]
fn a_stderr_that_keeps_up_is_never_told_of_dropped_lines() {
    let mut cmd = std::process::Command::new(daemon_support::bin());
    cmd.args(["serve", "--tcp", "127.0.0.1:0"])
        .env("RUST_LOG", "debug");
    let mut p = Proc::spawn(cmd);
    let tcp = p.listening(1)[0].1.parse().unwrap();
    for i in 0..20u8 {
        round_trip(&mut connect(tcp), &[i; 32]);
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    let err = daemon_support::rest_of(&p.stderr).join("\n");
    assert!(err.contains("stopped"), "{err}");
    assert!(!err.contains("were dropped"), "{err}");
}

/// `RUST_LOG` set but empty (as `RUST_LOG= ricochet serve`, or an empty
/// `Environment=` line) means the default, info: the start lines are logged.
#[test]
fn an_empty_rust_log_logs_at_info() {
    for empty in ["", " "] {
        let mut cmd = std::process::Command::new(daemon_support::bin());
        cmd.args(["serve", "--tcp", "127.0.0.1:0"])
            .env("RUST_LOG", empty);
        let mut p = Proc::spawn(cmd);
        p.listening(1);
        let line = p.wait_stderr("listening", IO_TIMEOUT);
        assert!(line.contains("INFO"), "{empty:?}: {line}");
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success());
    }
}

/// The JSON format writes through the same never-failing writer: a stderr
/// with no reader (EPIPE on every record) loses records, nothing else.
#[test]
fn json_logs_to_a_dead_stderr_neither_stop_serving_nor_shutdown() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = std::process::Command::new(daemon_support::bin());
    cmd.args(["serve", "--tcp", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(writer);
    let mut p = Proc::spawn_with(cmd);
    let tcp = p.listening(1)[0].1.parse().unwrap();
    for i in 0..5u8 {
        round_trip(&mut connect(tcp), &[i; 32]);
    }
    assert!(p.child.try_wait().unwrap().is_none(), "the server died");
    p.signal("TERM");
    assert_eq!(p.wait_exit(IO_TIMEOUT).code(), Some(0));
}

/// A `RUST_LOG` that is not a valid filter is not ignored silently: the
/// server logs at `info` and says which value it could not use.
#[test]
fn invalid_rust_log_is_reported_and_info_is_used() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--tcp", "127.0.0.1:0"])
        .env("RUST_LOG", "bogus===");
    let mut p = Proc::spawn(cmd);
    p.listening(1);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    let err = daemon_support::rest_of(&p.stderr).join("\n");
    assert!(
        err.contains("RUST_LOG") && err.contains("bogus===") && err.contains("info"),
        "{err}"
    );
    assert!(err.contains("listening"), "info is logged: {err}");
}

/// Under `--log-format json` every stderr line is JSON, the error that
/// stops the server included (a busy port here): a log collector parses
/// it like any other record.
#[test]
fn json_log_format_reports_a_fatal_error_as_json() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = serve_support::output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
            "serve",
            "--tcp",
            &addr,
            "--log-format",
            "json",
        ]),
        IO_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let records: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let fatal = records
        .iter()
        .find(|r| r["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error record in {err}"));
    let msg = fatal["fields"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(&addr) && msg.contains("in use"), "{msg}");
}

/// The usage errors too (a value clap refuses): they were clap's plain
/// text under `--log-format json`, the one stderr line a collector could
/// not parse. `--help` stays text.
#[test]
fn json_log_format_reports_a_usage_error_as_json() {
    for bad in [
        &["--buffer-size", "1"][..],
        &["--udp-max-datagram", "99999"],
        &["--no-such-flag"],
    ] {
        let out = serve_support::output_within(
            std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"))
                .args(["serve", "--log-format=json"])
                .args(bad)
                // Not filtered away: it is the only thing said.
                .env("RUST_LOG", "off"),
            IO_TIMEOUT,
        );
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{bad:?}: one record: {err}");
        let record: serde_json::Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("{bad:?}: not JSON ({e}): {err}"));
        assert_eq!(record["level"], "ERROR", "{err}");
        let msg = record["fields"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("error: ") && msg.contains(bad[0]),
            "{bad:?}: {msg}"
        );
    }
    let help = serve_support::output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
            "serve",
            "--log-format",
            "json",
            "--help",
        ]),
        IO_TIMEOUT,
    );
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
}

/// Each end of a connection has its line: a clean close at debug with
/// the bytes, a peer's reset at info naming the peer, an abort by the
/// server (a line longer than the buffer) a warning with its reason.
#[test]
fn close_reset_and_abort_are_each_logged_with_the_peer() {
    let mut cmd = std::process::Command::new(daemon_support::bin());
    cmd.args(["serve", "--tcp", "127.0.0.1:0", "--mode", "lines"])
        .args(["--buffer-size", "1KiB"])
        .env("RUST_LOG", "debug");
    let mut p = Proc::spawn(cmd);
    let tcp = p.listening(1)[0].1.parse().unwrap();

    let mut closed = connect(tcp);
    let peer = closed.local_addr().unwrap().to_string();
    round_trip(&mut closed, b"bye\n");
    closed.shutdown(std::net::Shutdown::Write).unwrap();
    closed.read_to_end(&mut Vec::new()).unwrap();
    let line = p.wait_stderr("connection closed", IO_TIMEOUT);
    assert!(
        line.contains(&peer) && line.contains("bytes_in=4"),
        "{line}"
    );
    assert!(line.contains("DEBUG"), "{line}");

    let reset = connect(tcp);
    let peer = reset.local_addr().unwrap().to_string();
    round_trip(&mut &reset, b"hello\n");
    socket2::SockRef::from(&reset)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(reset);
    let line = p.wait_stderr("connection reset or lost by the peer", IO_TIMEOUT);
    assert!(line.contains(&peer) && line.contains("INFO"), "{line}");

    let mut overlong = connect(tcp);
    let peer = overlong.local_addr().unwrap().to_string();
    overlong.write_all(&[b'x'; 4096]).unwrap();
    let line = p.wait_stderr("connection aborted", IO_TIMEOUT);
    assert!(line.contains(&peer) && line.contains("WARN"), "{line}");
    drop(overlong);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}
