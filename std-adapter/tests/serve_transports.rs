//! Every transport (TCP v4, TCP v6, Unix, UDP) × every mode (raw, lines, frames),
//! through the library API.

mod serve_support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ricochet::core::Mode;
use ricochet::serve::JoinError;
use ricochet::serve::{ServerConfig, ServerHandle};
use serve_support::{IO_TIMEOUT, STOP_TIMEOUT, connect, payload, round_trip, start, tcp_config};

/// What the checks need from a stream socket.
trait Duplex: Read + Write + Send + Sized + 'static {
    fn dup(&self) -> Self;
    fn finish_writing(&self);
    fn set_timeout(&self, t: Duration);
}

impl Duplex for TcpStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn finish_writing(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
    fn set_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
        self.set_write_timeout(Some(t)).unwrap();
    }
}

impl Duplex for UnixStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn finish_writing(&self) {
        self.shutdown(Shutdown::Write).unwrap();
    }
    fn set_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
        self.set_write_timeout(Some(t)).unwrap();
    }
}

fn assert_silent<S: Duplex>(s: &mut S) {
    s.set_timeout(Duration::from_millis(200));
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(n) => panic!("expected nothing yet, got {n} bytes: {:?}", &b[..n]),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    s.set_timeout(IO_TIMEOUT);
}

fn expect<S: Duplex>(s: &mut S, want: &[u8]) {
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).expect("read echo");
    assert_eq!(got, want);
}

fn expect_eof<S: Duplex>(s: &mut S) {
    let mut b = [0u8; 16];
    assert_eq!(
        s.read(&mut b).expect("read EOF"),
        0,
        "expected EOF after everything was echoed"
    );
}

/// raw: 256 KiB of binary data in uneven writes (more than every buffer on the way)
/// comes back byte for byte while we keep writing, then EOF after our FIN.
fn check_raw<S: Duplex>(mut s: S) {
    s.set_timeout(IO_TIMEOUT);
    let data = payload(7, 256 * 1024);
    let mut w = s.dup();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        let mut off = 0;
        let mut step = 1;
        while off < sent.len() {
            let end = (off + step).min(sent.len());
            w.write_all(&sent[off..end]).unwrap();
            off = end;
            step = step * 7 % 9001 + 1;
        }
        w.finish_writing();
    });
    expect(&mut s, &data);
    expect_eof(&mut s);
    writer.join().unwrap();
}

/// lines: a partial line is held until its newline; complete lines come back whole.
fn check_lines<S: Duplex>(mut s: S) {
    s.set_timeout(IO_TIMEOUT);
    s.write_all(b"abc").unwrap();
    assert_silent(&mut s);
    s.write_all(b"def\nxy").unwrap();
    expect(&mut s, b"abcdef\n");
    assert_silent(&mut s);
    s.write_all(b"z\r\n\n").unwrap();
    expect(&mut s, b"xyz\r\n\n");
    let many: Vec<u8> = (0..500)
        .flat_map(|i| format!("line {i} \0 binary is fine\n").into_bytes())
        .collect();
    s.write_all(&many).unwrap();
    expect(&mut s, &many);
    s.finish_writing();
    expect_eof(&mut s);
}

/// frames: a frame split across writes (header too) is reassembled and echoed whole.
fn check_frames<S: Duplex>(mut s: S) {
    s.set_timeout(IO_TIMEOUT);
    let frame1 = [&[0u8, 5][..], b"hello"].concat();
    let frame2 = vec![0u8, 0];
    let body3 = payload(3, 3000);
    let frame3 = [&(body3.len() as u16).to_be_bytes()[..], &body3].concat();
    s.write_all(&frame1[..1]).unwrap();
    assert_silent(&mut s);
    s.write_all(&frame1[1..4]).unwrap();
    assert_silent(&mut s);
    let mut rest = frame1[4..].to_vec();
    rest.extend_from_slice(&frame2);
    rest.extend_from_slice(&frame3[..1000]);
    s.write_all(&rest).unwrap();
    expect(&mut s, &[frame1.as_slice(), &frame2].concat());
    assert_silent(&mut s);
    s.write_all(&frame3[1000..]).unwrap();
    expect(&mut s, &frame3);
    s.finish_writing();
    expect_eof(&mut s);
}

fn check(mode: Mode, s: impl Duplex) {
    match mode {
        Mode::Raw => check_raw(s),
        Mode::Lines => check_lines(s),
        Mode::Frames => check_frames(s),
    }
}

fn tcp_server(addr: &str, mode: Mode) -> ServerHandle {
    start(ServerConfig {
        tcp: vec![addr.parse().unwrap()],
        mode,
        threads: 2,
        ..ServerConfig::default()
    })
}

fn run_tcp(addr: &str, mode: Mode) {
    let server = tcp_server(addr, mode);
    let target: SocketAddr = server.tcp_addr().unwrap();
    check(
        mode,
        TcpStream::connect_timeout(&target, IO_TIMEOUT).unwrap(),
    );
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

fn ipv6_loopback() -> bool {
    match TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            println!("SKIPPED: this kernel has no IPv6 loopback ([::1] cannot be bound: {e})");
            false
        }
    }
}

fn run_unix(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let server = start(ServerConfig {
        unix: vec![path.clone()],
        mode,
        threads: 2,
        ..ServerConfig::default()
    });
    check(mode, UnixStream::connect(&path).unwrap());
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[test]
fn tcp_v4_raw_echoes_every_byte() {
    run_tcp("127.0.0.1:0", Mode::Raw);
}

#[test]
fn tcp_v4_lines_holds_partial_line_until_newline() {
    run_tcp("127.0.0.1:0", Mode::Lines);
}

#[test]
fn tcp_v4_frames_reassembles_split_frames() {
    run_tcp("127.0.0.1:0", Mode::Frames);
}

#[test]
fn tcp_v6_raw_echoes_every_byte() {
    if ipv6_loopback() {
        run_tcp("[::1]:0", Mode::Raw);
    }
}

#[test]
fn tcp_v6_lines_holds_partial_line_until_newline() {
    if ipv6_loopback() {
        run_tcp("[::1]:0", Mode::Lines);
    }
}

#[test]
fn tcp_v6_frames_reassembles_split_frames() {
    if ipv6_loopback() {
        run_tcp("[::1]:0", Mode::Frames);
    }
}

#[test]
fn unix_raw_echoes_every_byte() {
    run_unix(Mode::Raw);
}

#[test]
fn unix_lines_holds_partial_line_until_newline() {
    run_unix(Mode::Lines);
}

#[test]
fn unix_frames_reassembles_split_frames() {
    run_unix(Mode::Frames);
}

#[test]
fn udp_echoes_each_datagram_exactly() {
    let server = start(ServerConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        udp_max_datagram: 65_507,
        threads: 2,
        ..ServerConfig::default()
    });
    let target = server.udp_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = vec![0u8; 65536];
    for (i, len) in [1usize, 12, 512, 1400, 9000, 65000].into_iter().enumerate() {
        let data = payload(i as u64, len);
        client.send_to(&data, target).unwrap();
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, target);
        assert_eq!(&buf[..n], &data[..], "datagram of {len} bytes");
    }
    // Counters are published once per event-loop turn, just after the echo.
    serve_support::wait_stats(&server, IO_TIMEOUT, "6 echoes counted", |s| {
        s.udp.echoed == 6
    });
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn tcp_v4_and_v6_udp_and_unix_served_by_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mix.sock");
    let mut tcp = vec!["127.0.0.1:0".parse().unwrap()];
    let v6 = ipv6_loopback();
    if v6 {
        tcp.push("[::1]:0".parse().unwrap());
    }
    let server = start(ServerConfig {
        tcp,
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        unix: vec![path.clone()],
        threads: 2,
        ..ServerConfig::default()
    });
    assert_eq!(server.local_addrs().len(), if v6 { 4 } else { 3 });
    for endpoint in server.local_addrs() {
        match endpoint {
            ricochet::serve::Endpoint::Tcp(a) => {
                let mut s = serve_support::connect(*a);
                serve_support::round_trip(&mut s, b"over tcp");
            }
            ricochet::serve::Endpoint::Udp(a) => {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                c.send_to(b"over udp", a).unwrap();
                let mut b = [0u8; 16];
                let (n, _) = c.recv_from(&mut b).unwrap();
                assert_eq!(&b[..n], b"over udp");
            }
            ricochet::serve::Endpoint::Unix(p) => {
                let mut s = UnixStream::connect(p).unwrap();
                s.set_timeout(IO_TIMEOUT);
                serve_support::round_trip(&mut s, b"over unix");
            }
            other => panic!("no such listener was configured: {other}"),
        }
    }
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// A server nobody stopped: `join_within` gives up at its limit with every
/// worker counted as still running, and leaves them serving (detached); a
/// controller taken before still stops them.
#[test]
fn join_within_on_a_server_never_stopped_reports_its_workers_still_running() {
    let server = start(tcp_config());
    let addr = server.tcp_addr().unwrap();
    let controller = server.controller();
    let limit = Duration::from_millis(50);
    match server.join_within(limit) {
        Err(JoinError::StillRunning { running, limit: l }) => {
            assert_eq!(running, 2, "both workers");
            assert_eq!(l, limit);
        }
        other => panic!("expected StillRunning, got {other:?}"),
    }
    let mut s = connect(addr);
    round_trip(&mut s, b"still served after the join gave up");
    drop(s);
    controller.abort();
    // The workers exit and close the listener: connecting is refused.
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    while TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the aborted workers never closed {addr}"
        );
        std::thread::yield_now();
    }
}

/// A server shut down first: `join_within` waits for its workers and
/// reports how they ended (here, cleanly).
#[test]
fn join_within_after_a_shutdown_returns_once_every_worker_exited() {
    let server = start(tcp_config());
    let addr = server.tcp_addr().unwrap();
    let mut s = connect(addr);
    round_trip(&mut s, b"one echo");
    drop(s);
    server.shutdown();
    server
        .join_within(STOP_TIMEOUT)
        .expect("workers exit after a shutdown");
}
