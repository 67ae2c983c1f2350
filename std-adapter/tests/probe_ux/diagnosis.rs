//! How a wrong echo is named: bytes repeated, skipped or changed, line
//! ends inserted or translated, datagrams lost to a size or rate limit.

use super::*;

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

/// A server (or relay) that turns `\n` into `\r\n` is named as such where
/// the first `\r` comes back for a `\n`, in `lines` mode and in `raw`.
#[test]
fn crlf_translating_server_is_named_at_the_first_line_end() {
    let srv = FaultyServer::start(Fault::Crlf);
    for mode in ["lines", "raw"] {
        let out = failed_probe(&srv, &["-n", "50", "-m", mode]);
        assert!(
            out.contains("sent 0x0a, got 0x0d") && out.contains("turns line ends into CRLF"),
            "{mode}: {out}"
        );
    }
}

/// The report's line of connection 0's error.
fn connection_error(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("connection 0:"))
        .unwrap_or_else(|| panic!("no error of connection 0 in {out}"))
}

/// The number in `line` right after `what`, up to `end`.
fn number_after(line: &str, what: &str, end: char) -> u64 {
    line.split(what)
        .nth(1)
        .and_then(|r| r.split(end).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {what:?} in {line}"))
}

/// The report of a probe of `srv` with `args` (and `--timeout 2s`), which
/// must fail (exit 1).
fn failed_probe(srv: &FaultyServer, args: &[&str]) -> String {
    let mut all = vec![tcp(srv)];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.extend(["--timeout".to_owned(), "2s".to_owned()]);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (code, out, err) = texts(&probe_cli(&all));
    assert_eq!(code, 1, "{args:?}: {out}{err}");
    out
}

/// The classic `send` bug: a server that takes a partial send for none
/// and sends its whole buffer again echoes some bytes twice. The probe
/// says the bytes repeat earlier ones, and where, not only that they are
/// wrong; in each mode, at each pattern.
#[test]
fn echo_with_bytes_sent_twice_is_named_a_repeat_of_the_earlier_bytes() {
    let srv = FaultyServer::start(Fault::ResendAfterPartial);
    for (mode, pattern) in [
        ("raw", "pingpong"),
        ("lines", "pingpong"),
        ("raw", "stream"),
    ] {
        let out = failed_probe(
            &srv,
            &["-n", "20", "-s", "64", "-m", mode, "--pattern", pattern],
        );
        let line = connection_error(&out);
        let at = number_after(line, "mismatch at stream offset ", ':');
        let from = number_after(line, "repeat those sent at stream offset ", ',');
        assert!(
            line.contains(&format!(
                "{from}, {} bytes earlier: the server sent them twice",
                at - from
            )),
            "{mode} {pattern}: {line}"
        );
        if pattern == "pingpong" {
            // One 64-byte message per read: its first 32 bytes come back
            // right, then the message again from its start.
            assert_eq!((at, from), (32, 0), "{mode} {pattern}: {line}");
        } else {
            // Whatever the first read held: its first half, then it again.
            assert!(from < at - from, "{mode} {pattern}: {line}");
        }
    }
    // A wrong byte that repeats nothing gets no such words.
    let flip = FaultyServer::start(Fault::FlipAt(100));
    let out = failed_probe(&flip, &["-n", "20"]);
    assert!(out.contains("mismatch at stream offset 100"), "{out}");
    assert!(!out.contains("repeat"), "{out}");
}

/// A server that takes each read for a line ends lines where the sender's
/// went on: the probe says a line end was inserted and why, in lines mode
/// and in raw.
#[test]
fn line_end_inserted_at_a_read_boundary_is_named_as_such() {
    let srv = FaultyServer::start(Fault::LineEndEach(100));
    for mode in ["lines", "raw"] {
        let out = failed_probe(&srv, &["-n", "5", "-s", "300", "-m", mode]);
        assert!(
            out.contains("mismatch at stream offset 100: ")
                && out.contains("got 0x0a")
                && out.contains(
                    "1 byte inserted there (\"\\n\"), the stream going on after it: a line end \
                     where the line went on"
                ),
            "{mode}: {out}"
        );
        assert!(
            !out.contains("repeat") && !out.contains("lost"),
            "{mode}: {out}"
        );
    }
}

/// The other half of that bug: a server that takes a partial send for all
/// of it loses the rest. Streaming, the probe says the bytes that came are
/// later ones, and how many were lost between.
#[test]
fn echo_that_skips_bytes_is_named_with_how_many_were_lost() {
    let srv = FaultyServer::start(Fault::LoseRestAfterPartial);
    for mode in ["raw", "lines"] {
        // 64,000 bytes: several of the server's reads (16 KiB at most).
        let out = failed_probe(&srv, &["-n", "1000", "-m", mode, "--pattern", "stream"]);
        let line = connection_error(&out);
        // The first read's second half is lost: the next read's first half
        // comes where it should be.
        let at = number_after(line, "mismatch at stream offset ", ':');
        let from = number_after(line, "are those sent at stream offset ", ',');
        assert!(from > at, "{mode}: {line}");
        let lost = from - at;
        assert!(
            line.contains(&format!(
                "{lost} bytes later: the server lost the {lost} bytes between"
            )),
            "{mode}: {line}"
        );
        assert!(!line.contains("repeat"), "{mode}: {line}");
    }
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
    // A server that reads and never answers (discard) gives the same
    // figures: the hint names that possibility too.
    assert!(out.contains("not an echo service"), "{out}");
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
