//! Help text, the README's agreement with it, warnings about options that
//! do not apply, and the serving log line.

use super::*;

/// `ricochet ARGS` (a help request): its stdout, which must be the whole of it.
fn help_of(args: &[&str]) -> String {
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args(args),
        IO_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cli_help_lists_io_outside_the_tls_heading() {
    let help = help_of(&["serve", "--help"]);
    let tls = help
        .split("\nTLS:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no TLS: heading in {help}"));
    // The section runs up to the next heading or the footer (a line that
    // starts without indentation).
    let mut section = String::new();
    for line in tls.lines() {
        if !line.is_empty() && !line.starts_with(' ') {
            break;
        }
        section.push_str(line);
        section.push('\n');
    }
    assert!(section.contains("--tls-cert"), "{section}");
    assert!(
        !section.contains("--io"),
        "--io under the TLS heading:\n{section}"
    );
    assert!(help.contains("--io <auto|uring|epoll>"), "{help}");
}

#[test]
fn cli_serve_help_shows_the_long_description_with_exit_statuses_and_listening_lines() {
    for args in [&["serve", "--help"][..], &["help", "serve"]] {
        let help = help_of(args);
        assert!(
            help.contains("listening <tcp|tls|udp|unix> <address>")
                && help.contains("Exit status 1")
                && help.contains("SIGINT/SIGTERM"),
            "{args:?}: {help}"
        );
    }
    // -h stays short.
    let short = help_of(&["serve", "-h"]);
    assert!(!short.contains("Exit status 1"), "{short}");
}

#[test]
fn cli_serve_help_footer_examples_are_whole_commands_and_name_every_listener_flag() {
    let help = help_of(&["serve", "--help"]);
    for line in help.lines() {
        assert!(
            !line.trim_start().starts_with("ricochet serve --inetd)"),
            "a wrapped example reads as a command: {line:?}\n{help}"
        );
        assert!(
            line.chars().count() <= 100,
            "{line:?} is wider than the help"
        );
    }
    assert!(
        help.contains("Without --tcp/--udp/--unix/--tls"),
        "the default endpoints are dropped by --tls too: {help}"
    );
}

#[test]
fn cli_serving_log_line_spells_the_accept_strategy_as_the_flag_does() {
    for (flag, want) in [
        ("reuseport", "accept=reuseport"),
        ("shared", "accept=shared"),
    ] {
        let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--accept", flag]);
        let serving = p.wait_stderr("serving", IO_TIMEOUT);
        assert!(serving.contains(want), "{flag}: {serving}");
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success());
    }
}

#[test]
fn cli_serving_log_line_of_a_udp_only_server_names_no_stream_setting() {
    let mut p = Proc::serve(&["--udp", "127.0.0.1:0"]);
    let serving = p.wait_stderr("serving", IO_TIMEOUT);
    for stream_only in ["mode=", "buffer=", "max_connections=", "accept="] {
        assert!(!serving.contains(stream_only), "{stream_only}: {serving}");
    }
    assert!(
        serving.contains("workers=") && serving.contains("io="),
        "{serving}"
    );
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// The row of `option` in the options table of std-adapter/README.md.
fn readme_row(option: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("std-adapter/README.md");
    readme
        .lines()
        .find(|l| l.starts_with(&format!("| `{option}")))
        .unwrap_or_else(|| panic!("no README row for {option}"))
        .to_owned()
}

#[test]
fn cli_readme_and_help_agree_on_buffer_sizes_and_busy_polling() {
    let help = help_of(&["serve", "--help"]).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let buffer = readme_row("--buffer-size");
    assert!(
        help.contains("64 B to 16 MiB") && buffer.contains("64 B to 16 MiB"),
        "{buffer}"
    );
    assert!(!buffer.contains("16384 or 65536"), "{buffer}");
    let busy = readme_row("--busy-poll");
    assert!(
        help.contains("2.4-3.0x faster") && busy.contains("2.4–3.0×"),
        "{busy}"
    );
    assert!(
        help.contains("an idle worker one, after its last event"),
        "{help}"
    );
    assert!(
        busy.contains("an idle worker spins once after its last event"),
        "{busy}"
    );
    let io = readme_row("--io");
    assert!(
        help.contains(
            "beside io_uring, on an epoll event loop of their own inside each io_uring worker"
        ) && io.contains("an epoll event loop of their own inside each io_uring worker"),
        "{io}"
    );
}

/// With a TLS listener `auto` keeps the rest on io_uring (it put every
/// listener on epoll) and says where TLS runs: an epoll event loop of its
/// own inside each io_uring worker, so still one thread per worker (there
/// were twice as many).
#[test]
fn cli_tls_listener_under_io_auto_keeps_the_rest_on_io_uring_and_says_so() {
    let pki = tls_support::Pki::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args([
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--io",
        "auto",
        "--threads",
        "3",
    ])
    .args([
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
    ])
    .args(["--tls-key", pki.key.to_str().unwrap()])
    .env_remove("RICOCHET_IO");
    let mut p = Proc::spawn(cmd);
    let lines = p.stderr_until("serving workers", IO_TIMEOUT);
    assert!(
        lines.last().unwrap().contains("io=uring") && lines.last().unwrap().contains("workers=3"),
        "{lines:#?}"
    );
    let tls = lines
        .iter()
        .find(|l| l.contains("TLS listeners run on epoll event loops of their own"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(tls.contains("tls_loops=3"), "{tls}");
    assert_eq!(worker_threads(p.id(), 3), 3, "{lines:#?}");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `ricochet --help` describes the tool in a user's words, not its crates.
#[test]
fn cli_top_level_help_describes_the_tool_for_users() {
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).arg("--help"),
        IO_TIMEOUT,
    );
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let first = help.lines().next().unwrap_or_default();
    assert!(
        first.contains("echo server") && first.contains("probe"),
        "{first}"
    );
    assert!(
        !help.contains("ricochet-core") && !help.contains("std sockets"),
        "{help}"
    );
}

/// An option given where nothing uses it is said, not silently ignored:
/// stream options on a UDP-only server and UDP options on a TCP-only one
/// are warned of once bound; --tls-handshake-timeout without a certificate
/// is a usage error.
#[test]
fn cli_options_without_an_endpoint_of_their_kind_are_warned_of() {
    for (args, flag, other) in [
        (
            &[
                "--udp",
                "127.0.0.1:0",
                "--buffer-size",
                "8192",
                "--udp-rate",
                "5",
            ][..],
            "--buffer-size has no effect: no stream endpoint",
            "--udp-rate",
        ),
        (
            &[
                "--tcp",
                "127.0.0.1:0",
                "--udp-rate",
                "5",
                "--buffer-size",
                "8192",
            ],
            "--udp-rate has no effect: no UDP endpoint",
            "--buffer-size",
        ),
    ] {
        let mut p = Proc::serve(args);
        let lines = p.stderr_until("has no effect", IO_TIMEOUT);
        let warnings: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("has no effect"))
            .collect();
        assert!(
            warnings.len() == 1 && warnings[0].contains("WARN") && warnings[0].contains(flag),
            "{args:?}: {lines:#?}"
        );
        assert!(
            !warnings[0].contains(other),
            "{args:?}: {other} is used here"
        );
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success());
    }
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--tls-handshake-timeout",
            "5s",
        ]),
        IO_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));
}

/// `--idle-timeout` closes stream connections and `--unix-mode` sets the
/// permissions of Unix socket files: on a server with neither (UDP only),
/// each is warned of once bound, as `--drain-timeout` is, not dropped
/// without a word.
#[test]
fn cli_idle_timeout_and_unix_mode_on_a_udp_only_server_are_warned_of() {
    let mut p = Proc::serve(&[
        "--udp",
        "127.0.0.1:0",
        "--idle-timeout",
        "30s",
        "--unix-mode",
        "644",
        "--drain-timeout",
        "5s",
    ]);
    // Three options, three warnings, in whatever order.
    let lines: Vec<String> = (0..3)
        .flat_map(|_| p.stderr_until("has no effect", IO_TIMEOUT))
        .collect();
    for flag in [
        "--idle-timeout has no effect: no stream endpoint",
        "--unix-mode has no effect: no Unix endpoint",
        "--drain-timeout has no effect: no stream endpoint",
    ] {
        assert!(
            lines.iter().any(|l| l.contains("WARN") && l.contains(flag)),
            "{flag}: {lines:#?}"
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}
