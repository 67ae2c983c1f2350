//! Help, options and their edge values, and output files checked before
//! the run.

use super::*;

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
fn help_shows_the_long_description_with_the_exit_statuses() {
    for args in [&["probe", "--help"][..], &["help", "probe"]] {
        let o = run_bounded(Command::new(ricochet_bin()).args(args), STEP_TIMEOUT);
        let (code, out, _) = texts(&o);
        assert_eq!(code, 0, "{args:?}");
        // Wrapped to the terminal's width: compared word by word.
        let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains("Exit status: 0 when every byte verified")
                && words.contains("nothing at all was verified")
                && words.contains("130 when interrupted"),
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
        err.contains("bad rate \"0\": a rate is more than 0 connections per second"),
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

/// `--latency-out -` writes the distribution to standard output, after
/// the table, as `-` means to other tools (it wrote a file named `-`).
/// With `--json`, whose standard output is the report, or for both
/// distributions at once, it is a usage error before the run.
#[test]
fn latency_out_dash_is_standard_output_after_the_table() {
    let server = OurServer::start(Mode::Raw);
    let dir = tempfile::tempdir().unwrap();
    let t = format!("tcp://{}", server.tcp);
    let probe = |extra: &[&str]| {
        texts(&run_bounded(
            Command::new(ricochet_bin())
                .current_dir(dir.path())
                .args(["probe", &t, "-n", "20"])
                .args(extra),
            STEP_TIMEOUT,
        ))
    };
    // `/dev/stdout` is standard output too: opened as a file it ran into
    // the table (or truncated the file stdout was redirected to).
    for spelling in ["-", "/dev/stdout"] {
        let (code, out, err) = probe(&["--latency-out", spelling]);
        assert_eq!(code, 0, "{spelling}: {out} {err}");
        let table_end = out.find("result       OK").expect("the table");
        let hgrm = out
            .find("Value     Percentile TotalCount")
            .expect("the distribution");
        assert!(
            table_end < hgrm,
            "{spelling}: the distribution follows the table: {out}"
        );
        assert!(out.contains("#[Mean"), "the whole .hgrm, footer too: {out}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "no file made"
        );
    }
    // Redirected to a file, the report and the distribution both land in it.
    let file = dir.path().join("out.txt");
    let (code, _, err) = texts(&run_bounded(
        Command::new("sh")
            .args(["-c", r#"exec "$0" "$@" > "$OUT""#, ricochet_bin()])
            .args(["probe", &t, "-n", "20", "--latency-out", "/dev/stdout"])
            .env("OUT", &file),
        STEP_TIMEOUT,
    ));
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let table_end = written.find("result       OK").expect("the table kept");
    assert!(
        written[table_end..].contains("#[Mean"),
        "the distribution after it: {written}"
    );

    for (extra, needle) in [
        (&["--json", "--latency-out", "-"][..], "--json"),
        (
            &["--json", "--latency-out", "/dev/stdout"][..],
            "/dev/stdout:",
        ),
        (
            &["--latency-out", "-", "--latency-out-uncorrected", "-"][..],
            "both",
        ),
    ] {
        let (code, out, err) = probe(extra);
        assert_eq!(code, 2, "{extra:?}: {out} {err}");
        assert!(
            err.contains("standard output") && err.contains(needle),
            "{extra:?}: {err}"
        );
        assert!(out.is_empty(), "no run: {out}");
    }
}

/// Two output options naming one file (however spelled) are a usage
/// error before the run: `--latency-out a.hgrm --latency-out-uncorrected
/// a.hgrm` wrote the corrected distribution, then replaced it with the
/// uncorrected one, and said nothing (exit 0).
#[test]
fn two_output_options_naming_one_file_are_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = refused_target();
    let hgrm = dir.path().join("a.hgrm");
    let svg = dir.path().join("a.svg");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    // The same file spelled another way: through a subdirectory and `..`.
    let hgrm_again = sub.join("..").join("a.hgrm");
    let svg_again = sub.join("..").join("a.svg");
    for (args, flag, first) in [
        (
            [
                "--latency-out",
                hgrm.to_str().unwrap(),
                "--latency-out-uncorrected",
                hgrm_again.to_str().unwrap(),
            ],
            "--latency-out-uncorrected",
            "--latency-out",
        ),
        (
            [
                "--plot",
                svg.to_str().unwrap(),
                "--latency-out",
                svg_again.to_str().unwrap(),
            ],
            "--plot",
            "--latency-out",
        ),
    ] {
        let (code, out, err) = texts(&probe_cli(
            &[&[t.as_str(), "-n", "1"][..], &args[..]].concat(),
        ));
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(
            err.contains(&format!("{flag} ")) && err.contains(&format!("the same file as {first}")),
            "{args:?}: {err}"
        );
        assert!(out.is_empty(), "no run, no table: {out}");
    }
    assert!(
        !hgrm.exists() && !svg.exists(),
        "the checks left files behind"
    );
    // Two files of their own: checked and accepted (the refused target
    // then fails the run, status 1, not 2).
    let (code, _, err) = texts(&probe_cli(&[
        &t,
        "-n",
        "1",
        "--latency-out",
        hgrm.to_str().unwrap(),
        "--latency-out-uncorrected",
        dir.path().join("u.hgrm").to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{err}");
}

/// Output files named relative to the working directory are told apart
/// as the files they are: `a.hgrm` and `./a.hgrm` are one file (a usage
/// error), `x/a.hgrm` and `y/a.hgrm` two, and a bare name is a file in the
/// working directory (both checked and accepted: the refused target then
/// fails the run, status 1, not 2).
#[test]
fn relative_output_paths_are_compared_as_the_files_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let t = refused_target();
    let probe = |extra: &[&str]| {
        texts(&run_bounded(
            Command::new(ricochet_bin())
                .current_dir(dir.path())
                .args(["probe", &t, "-n", "1"])
                .args(extra),
            STEP_TIMEOUT,
        ))
    };
    let (code, out, err) = probe(&[
        "--latency-out",
        "a.hgrm",
        "--latency-out-uncorrected",
        "./a.hgrm",
    ]);
    assert_eq!(code, 2, "{out} {err}");
    assert!(
        err.contains("--latency-out-uncorrected ./a.hgrm: the same file as --latency-out"),
        "{err}"
    );
    for sub in ["x", "y"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let (code, _, err) = probe(&[
        "--latency-out",
        "x/a.hgrm",
        "--latency-out-uncorrected",
        "y/a.hgrm",
    ]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = probe(&["--latency-out", "b.hgrm"]);
    assert_eq!(code, 1, "{err}");
    assert!(dir.path().join("b.hgrm").exists(), "{err}");
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

/// `-w` below one message cannot hold a stream: a message is always sent
/// whole, so each connection has one in flight at a time. Said, not silent.
#[test]
fn stream_window_smaller_than_a_message_is_a_warning() {
    let srv = FaultyServer::start(Fault::None);
    let small = json_of(&probe_cli(&[
        &tcp(&srv),
        "-p",
        "stream",
        "-s",
        "4KiB",
        "-w",
        "1KiB",
        "-n",
        "3",
        "--json",
    ]));
    assert_eq!(small["ok"], true, "{small}");
    let warnings = small["warnings"].to_string();
    assert!(
        warnings.contains("--window of 1024 bytes is smaller than a 4096-byte message"),
        "{small}"
    );
    let fits = json_of(&probe_cli(&[
        &tcp(&srv),
        "-p",
        "stream",
        "-s",
        "4KiB",
        "-w",
        "4KiB",
        "-n",
        "3",
        "--json",
    ]));
    assert!(!fits["warnings"].to_string().contains("--window"), "{fits}");
}

/// `--strict` for scripts and CI: a run that passed with a warning (here
/// the rate not reached) fails, and stderr says which warning did it.
#[test]
fn strict_run_with_a_warning_fails_and_names_it() {
    let srv = FaultyServer::start(Fault::None);
    let (code, out, err) = texts(&probe_cli(&[
        &tcp(&srv),
        "-n",
        "300",
        "-r",
        "10M",
        "--strict",
    ]));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("--strict") && err.contains("the requested rate of 10000000 msg/s"),
        "{err}"
    );
    let (code, out, err) = texts(&probe_cli(&[&tcp(&srv), "-n", "30", "--strict", "-q"]));
    assert_eq!(code, 0, "no warning, no failure: {out}\n{err}");
}
