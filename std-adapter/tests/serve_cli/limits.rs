//! Open-file limits and exhaustion, ten thousand idle connections, and
//! the counters logged.

use super::*;

#[test]
fn cli_stats_interval_logs_counters() {
    let p = Proc::serve(&[
        "--udp",
        "127.0.0.1:0",
        "--stats-interval",
        "100ms",
        "--udp-max-datagram",
        "10",
    ]);
    let udp = addr_of(&p.listening(1), "udp");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(&[0u8; 11], udp).unwrap();
    let line = p.wait_stderr("oversize=1", IO_TIMEOUT);
    assert!(line.contains("stats") && line.contains("open=0"), "{line}");
}

#[test]
fn cli_survives_running_out_of_file_descriptors() {
    // 64 descriptors: a few are the server's own; 100 clients exhaust the rest.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" serve --tcp 127.0.0.1:0 --threads 1 --max-connections 1000 --backlog 256")
        .arg(env!("CARGO_BIN_EXE_ricochet"));
    let mut p = Proc::spawn(cmd);
    let tcp = addr_of(&p.listening(1), "tcp");
    let clients: Vec<TcpStream> = (0..100).map(|_| connect(tcp)).collect();
    p.wait_stderr("out of file descriptors", IO_TIMEOUT);
    // Still alive, and the connections it did accept are served.
    assert!(p.child.try_wait().unwrap().is_none(), "server died");
    drop(clients);
    // Once descriptors are free again it accepts and serves new clients.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = connect(tcp);
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let ok = c.write_all(b"back?").is_ok() && {
            let mut b = [0u8; 5];
            c.read_exact(&mut b).is_ok() && &b == b"back?"
        };
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not recover; stderr: {}",
            p.drain_stderr()
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `ricochet serve ARGS` under `ulimit -n 256`; the stderr lines up to "serving".
fn start_lines_under_256_descriptors(args: &str) -> Vec<String> {
    start_lines_under_descriptors(256, args)
}

fn start_lines_under_descriptors(limit: u32, args: &str) -> Vec<String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec \"$0\" serve --tcp 127.0.0.1:0 {args}"
        ))
        .arg(env!("CARGO_BIN_EXE_ricochet"));
    let mut p = Proc::spawn(cmd);
    let lines = p.stderr_until("serving", IO_TIMEOUT);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    lines
}

#[test]
fn cli_max_connections_beyond_the_open_file_limit_is_warned_with_the_fix() {
    let lines = start_lines_under_256_descriptors("--max-connections 99999999999");
    let warning = lines
        .iter()
        .find(|l| l.contains("WARN") && l.contains("max-connections"))
        .unwrap_or_else(|| panic!("no warning about --max-connections: {lines:#?}"));
    for needle in ["99999999999", "256", "ulimit -n", "LimitNOFILE", "backlog"] {
        assert!(warning.contains(needle), "{needle:?} missing: {warning}");
    }
    // Within the limit, or derived from it: no warning.
    for args in ["--max-connections 100", ""] {
        let lines = start_lines_under_256_descriptors(args);
        assert!(
            !lines.iter().any(|l| l.contains("max-connections")),
            "{args:?}: {lines:#?}"
        );
    }
}

#[test]
fn cli_open_file_limit_with_no_room_for_connections_is_warned_with_the_fix() {
    // 24 descriptors: the listeners, two workers' event loops and the
    // reserve of 32 leave none for connections.
    let lines = start_lines_under_descriptors(24, "--threads 2");
    let warning = lines
        .iter()
        .find(|l| l.contains("WARN") && l.contains("leaves no descriptor"))
        .unwrap_or_else(|| panic!("no warning about the open-file limit: {lines:#?}"));
    for needle in ["limit of 24", "ulimit -n", "LimitNOFILE", "--threads"] {
        assert!(warning.contains(needle), "{needle:?} missing: {warning}");
    }
    let lines = start_lines_under_256_descriptors("");
    assert!(
        !lines.iter().any(|l| l.contains("leaves no descriptor")),
        "room for connections, no warning: {lines:#?}"
    );
}

/// Descriptors process `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the server's descriptors")
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
/// Issue 9's target is under 10 KiB per idle connection; none holds a
/// session buffer (4 KiB), silent or after an echo, so they stay far below.
/// Two workers, whatever the machine: each io_uring worker's receive ring
/// (4 MiB, touched once for all as receives cycle through it) is shared by
/// the connections and counts in the figure.
fn cli_holds_ten_thousand_idle_connections_without_a_session_buffer_each() {
    const N: usize = 10_000;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if hard < N as u64 + 100 {
        panic!(
            "this test needs an open-file hard limit above {} (have soft {soft}, hard {hard})",
            N + 100
        );
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard).unwrap();
    let mut p = Proc::serve(&[
        "--tcp",
        "127.0.0.1:0",
        "--backlog",
        "4096",
        "--threads",
        "2",
    ]);
    let tcp = addr_of(&p.listening(1), "tcp");
    let pid = p.child.id();
    // Kept open: its descriptor counts in `fds_before` to the end.
    let mut warm = connect(tcp);
    round_trip(&mut warm, b"warm up");
    let fds_before = open_fds(pid);
    let before = rss_kib(pid);
    // Silent first: accepted (the server holds a descriptor for each),
    // nothing sent, so no session buffer is allocated (4 KiB each).
    let mut conns: Vec<TcpStream> = (0..N).map(|_| connect(tcp)).collect();
    let deadline = Instant::now() + IO_TIMEOUT;
    while open_fds(pid) < fds_before + N {
        assert!(
            Instant::now() < deadline,
            "the server accepted {} of {N} connections",
            open_fds(pid) - fds_before
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The server's RSS growth per connection, printed and held under `kib`.
    let check = |what: &str, kib: f64| {
        let now = rss_kib(pid);
        let each = now.saturating_sub(before) as f64 * 1024.0 / N as f64;
        println!(
            "server RSS {before} KiB -> {now} KiB with {N} {what} connections: {each:.0} bytes each"
        );
        assert!(
            each < kib * 1024.0,
            "{each:.0} bytes per {what} connection: a session buffer each?"
        );
    };
    check("silent", 2.0);
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(&[(i % 251) as u8]).unwrap();
    }
    // Every connection is served (its byte comes back), so each has a session.
    for (i, c) in conns.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(b[0], (i % 251) as u8);
    }
    check("echoed", 3.0);
    // The server closes first (shutdown), so TIME_WAIT stays on its side, not on our ports.
    p.signal("TERM");
    for c in &mut conns {
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap(), 0);
    }
    drop(conns);
    assert!(p.wait_exit(Duration::from_secs(20)).success());
}
