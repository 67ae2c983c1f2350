//! `--metrics`: the core's counters per transport in Prometheus text and
//! OpenMetrics, checked by the official Python client's parsers; and an
//! HTTP side that slow, greedy or oversized clients cannot hold up.

mod daemon_support;
mod netns_support;
mod serve_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use daemon_support::{http_get, parse_exposition, value, wait_until};
use ricochet::serve::metrics::{MetricsConfig, MetricsServer};
use serve_support::{
    IO_TIMEOUT, Proc, connect, output_within, read_to_eof, round_trip, start, tcp_config,
};

fn addr_of(lines: &[(String, String)], kind: &str) -> SocketAddr {
    lines
        .iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no {kind} in {lines:?}"))
        .1
        .parse()
        .unwrap()
}

#[test]
fn cli_metrics_count_each_transport_and_parse_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sock");
    let mut p = Proc::serve(&[
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--unix",
        path.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
        "--mode",
        "lines",
        "--buffer-size",
        "64",
        "--udp-max-datagram",
        "100",
    ]);
    let lines = p.listening(4);
    let (tcp, udp, metrics) = (
        addr_of(&lines, "tcp"),
        addr_of(&lines, "udp"),
        addr_of(&lines, "metrics"),
    );
    assert!(metrics.ip().is_loopback());
    // Three TCP connections echo 2 lines of 50 bytes each, then finish.
    let line = [b'x'; 49]
        .iter()
        .copied()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    for _ in 0..3 {
        let mut s = connect(tcp);
        round_trip(&mut s, &line);
        round_trip(&mut s, &line);
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(read_to_eof(&mut s).unwrap().is_empty());
    }
    // One sends a line longer than the 64-byte buffer: aborted.
    let mut long = connect(tcp);
    long.write_all(&[b'y'; 100]).unwrap();
    let _ = read_to_eof(&mut long);
    // One Unix connection.
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut u, b"unix line\n");
    drop(u);
    // Two datagrams echoed, one over --udp-max-datagram dropped.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 256];
    for d in [&[1u8; 30][..], &[2u8; 40]] {
        c.send_to(d, udp).unwrap();
        assert_eq!(c.recv_from(&mut b).unwrap().0, d.len());
    }
    c.send_to(&[3u8; 200], udp).unwrap();

    let scrape = |accept: Option<&str>| http_get(metrics, "/metrics", accept);
    wait_until(IO_TIMEOUT, "every connection and datagram counted", || {
        let (_, _, body) = scrape(None);
        let parsed = parse_exposition(&body, "prometheus").expect("parses");
        value(
            &parsed,
            "ricochet_connections_closed_total{reason=\"peer_finished\",transport=\"unix\"}",
        ) == 1
            && value(
                &parsed,
                "ricochet_datagrams_dropped_total{reason=\"oversize\",transport=\"udp\"}",
            ) == 1
            && value(
                &parsed,
                "ricochet_connections_aborted_total{reason=\"line_too_long\",transport=\"tcp\"}",
            ) == 1
            && value(
                &parsed,
                "ricochet_connections_closed_total{reason=\"peer_finished\",transport=\"tcp\"}",
            ) == 3
    });
    let (status, headers, text) = scrape(None);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let (_, headers, open) = scrape(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ));
    assert!(
        headers.contains("Content-Type: application/openmetrics-text"),
        "{headers}"
    );
    for (format, body) in [("prometheus", &text), ("openmetrics", &open)] {
        let m = parse_exposition(body, format).unwrap_or_else(|e| panic!("{format}: {e}\n{body}"));
        let get = |k: &str| value(&m, k);
        assert_eq!(
            get("ricochet_connections_accepted_total{transport=\"tcp\"}"),
            4,
            "{format}"
        );
        assert_eq!(
            get("ricochet_connections_accepted_total{transport=\"unix\"}"),
            1
        );
        assert_eq!(get("ricochet_echoed_bytes_total{transport=\"tcp\"}"), 300);
        assert_eq!(get("ricochet_echoed_bytes_total{transport=\"unix\"}"), 10);
        assert_eq!(get("ricochet_echoed_bytes_total{transport=\"udp\"}"), 70);
        assert!(get("ricochet_received_bytes_total{transport=\"tcp\"}") >= 300 + 64);
        assert_eq!(
            get("ricochet_datagrams_received_total{transport=\"udp\"}"),
            3
        );
        assert_eq!(get("ricochet_datagrams_echoed_total{transport=\"udp\"}"), 2);
        assert_eq!(get("ricochet_connections_open{transport=\"tcp\"}"), 0);
        assert_eq!(get("ricochet_buffered_bytes{transport=\"tcp\"}"), 0);
        assert_eq!(
            get("ricochet_datagrams_dropped_total{reason=\"loop_guard\",transport=\"udp\"}"),
            0
        );
        assert_eq!(
            get("ricochet_accept_errors_total{reason=\"fd_exhausted\"}"),
            0
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn metrics_answer_only_get_and_head_on_the_metrics_path_and_are_off_by_default() {
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--metrics", "0"]);
    let lines = p.listening(2);
    let metrics = addr_of(&lines, "metrics");
    assert_eq!(http_get(metrics, "/", None).0, "HTTP/1.1 404 Not Found");
    assert_eq!(
        http_get(metrics, "/metricsx", None).0,
        "HTTP/1.1 404 Not Found"
    );
    let mut s = TcpStream::connect(metrics).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    // HEAD, as `curl -I` and health checks send it: GET's head, no body.
    let mut s = TcpStream::connect(metrics).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\n"), "no body: {reply}");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());

    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0"]);
    p.listening(1);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    let rest = daemon_support::rest_of_stdout(&p);
    assert!(rest.iter().all(|l| !l.contains("metrics")), "{rest:?}");
}

/// Reads until the server closes (or resets) the connection; returns what came.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut all = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("no close within {IO_TIMEOUT:?}: {e}"),
        }
    }
}

/// A whole request head past `max_request` that came in one read was
/// answered (the limit was checked only while the head was incomplete).
#[test]
fn a_request_head_past_the_limit_is_refused_even_when_it_comes_in_one_read() {
    let echo = start(tcp_config());
    let config = MetricsConfig {
        max_request: 64,
        ..MetricsConfig::new("127.0.0.1:0".parse().unwrap())
    };
    let server = MetricsServer::bind(config).unwrap();
    let addr = server.local_addr();
    let metrics = server.spawn(echo.stats_source()).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(100)
    );
    s.write_all(request.as_bytes()).unwrap();
    let reply = String::from_utf8(read_until_closed(&mut s)).unwrap();
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    metrics.stop();
    echo.shutdown();
    echo.join().unwrap();
}

#[test]
fn slow_greedy_and_oversized_clients_cannot_hold_the_endpoint_or_the_echo() {
    let echo = start(tcp_config());
    let config = MetricsConfig {
        max_connections: 2,
        max_request: 1024,
        timeout: Duration::from_millis(300),
        ..MetricsConfig::new("127.0.0.1:0".parse().unwrap())
    };
    let server = MetricsServer::bind(config).unwrap();
    let addr = server.local_addr();
    let metrics = server.spawn(echo.stats_source()).unwrap();

    // Two clients that never finish their request take every slot...
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow").unwrap();
            s
        })
        .collect();
    // ...so a third is told so at once, not queued.
    let mut third = TcpStream::connect(addr).unwrap();
    let busy = String::from_utf8(read_until_closed(&mut third)).unwrap();
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    // The echo server does not notice.
    round_trip(
        &mut connect(echo.tcp_addr().unwrap()),
        b"echo during a metrics siege",
    );
    // The slow ones are dropped at their deadline, with no answer.
    let t = Instant::now();
    for s in &mut slow {
        assert!(read_until_closed(s).is_empty());
    }
    assert!(t.elapsed() < IO_TIMEOUT);
    // A request head past the limit is refused.
    let mut big = TcpStream::connect(addr).unwrap();
    let header = format!("GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(2000));
    let _ = big.write_all(header.as_bytes());
    let reply = String::from_utf8(read_until_closed(&mut big)).unwrap();
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // And the endpoint still answers.
    let (status, _, body) = http_get(addr, "/metrics", None);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains("ricochet_connections_accepted_total{transport=\"tcp\"} 1"),
        "{body}"
    );
    metrics.stop();
    echo.shutdown();
    echo.join().unwrap();
}

/// `--metrics [::]:PORT` takes IPv4 scrapes too, whatever the host's
/// `net.ipv6.bindv6only`: it took them where the sysctl is 0 (the
/// default) and refused them where it is 1, so the same flag exposed the
/// metrics to IPv4 on one host and not on another.
#[test]
fn metrics_on_the_ipv6_wildcard_take_ipv4_scrapes_whatever_bindv6only() {
    let args = ["serve", "--tcp", "127.0.0.1:0", "--metrics", "[::]:0"];
    let cmd = netns_support::ricochet_in_new_netns("sysctl -qw net.ipv6.bindv6only=1", &args);
    let mut p = Proc::spawn(cmd);
    let lines = p.listening(2);
    let metrics = addr_of(&lines, "metrics");
    // A scrape over IPv4 loopback, from inside the namespace.
    let get = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{} && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && \
         head -n 1 <&3",
        metrics.port()
    );
    let out = output_within(
        std::process::Command::new("nsenter").args([
            "-t",
            &p.id().to_string(),
            "-n",
            "bash",
            "-c",
            &get,
        ]),
        IO_TIMEOUT,
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("HTTP/1.1 200"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn busy_metrics_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = output_within(
        std::process::Command::new(daemon_support::bin()).args([
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--metrics",
            &port,
        ]),
        IO_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing is served when the metrics port is busy"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics 127.0.0.1:") && err.contains("--metrics 127.0.0.1:0"),
        "{err}"
    );
}

#[test]
fn metrics_are_answered_while_the_server_is_out_of_file_descriptors() {
    // 64 descriptors, 100 clients: the workers run out (as in
    // `cli_survives_running_out_of_file_descriptors`), which is when an
    // operator most needs the scrape that counts it.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(
            "ulimit -n 64 && exec \"$0\" serve --tcp 127.0.0.1:0 --threads 1 \
             --max-connections 1000 --backlog 256 --metrics 127.0.0.1:0",
        )
        .arg(env!("CARGO_BIN_EXE_ricochet"));
    let mut p = Proc::spawn(cmd);
    let lines = p.listening(2);
    let (tcp, metrics) = (addr_of(&lines, "tcp"), addr_of(&lines, "metrics"));
    let clients: Vec<TcpStream> = (0..100).map(|_| connect(tcp)).collect();
    p.wait_stderr("out of file descriptors", IO_TIMEOUT);
    // Twice: the descriptor the first scrape borrowed is back for the second.
    for scrape in 0..2 {
        let (status, _, body) = http_get(metrics, "/metrics", None);
        assert_eq!(status, "HTTP/1.1 200 OK", "scrape {scrape}");
        let parsed = parse_exposition(&body, "prometheus").unwrap();
        assert!(
            value(
                &parsed,
                "ricochet_accept_errors_total{reason=\"fd_exhausted\"}"
            ) >= 1,
            "scrape {scrape}: {body}"
        );
    }
    drop(clients);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}
