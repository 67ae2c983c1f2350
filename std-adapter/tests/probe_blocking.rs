//! The blocking driver on real sockets: `serve_connection` as the server
//! for `ricochet probe`, `probe_connection` as a client of our server, and
//! a peer that never reads ending in a drain-timeout abort instead of a hang.

mod probe_support;

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use probe_support::{OurServer, json_of, probe_cli, texts};
use ricochet::blocking::{
    DriveError, HalfClose, ProbeDriveError, StdStream, expect_eof, probe_connection,
    serve_connection,
};
use ricochet::clock::Clock;
use ricochet::core::probe::{Pattern, SizeRange};
use ricochet::core::{AbortReason, Mode, ProbeConfig, SessionConfig};

/// Serves `n` connections one after the other with the blocking driver.
fn blocking_server(mode: Mode, n: usize) -> (std::net::SocketAddr, thread::JoinHandle<Vec<u64>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let h = thread::spawn(move || {
        let clock = Clock::new();
        let mut echoed = Vec::new();
        for _ in 0..n {
            let (conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            conn.set_write_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let config = SessionConfig {
                mode,
                ..SessionConfig::default()
            };
            let stats = serve_connection(&mut StdStream::new(&conn), [0u8; 4096], config, &clock)
                .expect("served");
            // serve_connection sent FIN itself (HalfClose) and saw the probe's.
            echoed.push(stats.bytes_out);
        }
        echoed
    });
    (addr, h)
}

#[test]
fn blocking_serve_connection_passes_the_probe_in_every_mode() {
    for (mode, size) in [("raw", "1-3000"), ("lines", "1-3000"), ("frames", "2-3000")] {
        let m: Mode = mode.parse().expect("mode");
        let (addr, server) = blocking_server(m, 2);
        for pattern in ["pingpong", "stream"] {
            let o = probe_cli(&[
                &format!("tcp://{addr}"),
                "-m",
                mode,
                "-s",
                size,
                "-p",
                pattern,
                "-w",
                "16K",
                "-n",
                "300",
                "--json",
            ]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{mode} {pattern}: {:?}",
                texts(&o)
            );
            assert_eq!(json_of(&o)["messages_verified"], 300);
        }
        let echoed = server.join().expect("server thread");
        assert_eq!(echoed.len(), 2);
    }
}

#[test]
fn blocking_probe_connection_verifies_our_server_then_sees_its_fin() {
    let srv = OurServer::start(Mode::Frames);
    let tcp = TcpStream::connect(srv.tcp).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    tcp.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let config = ProbeConfig {
        mode: Mode::Frames,
        pattern: Pattern::Stream { window: 16 * 1024 },
        size: SizeRange::range(2, 1000),
        count: Some(500),
        ..ProbeConfig::default()
    };
    let mut s = StdStream::new(&tcp);
    let mut buf = vec![0u8; 32 * 1024];
    let stats =
        probe_connection::<64, _, _>(&mut s, config, &Clock::new(), &mut buf).expect("verified");
    assert_eq!(stats.messages_verified, 500);
    tcp.shutdown(Shutdown::Write).expect("fin");
    expect_eof(&mut s, &mut buf).expect("server closes after our FIN");
}

#[test]
fn blocking_probe_connection_reports_timeout_against_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tcp = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let _accepted = listener.accept().expect("accept"); // never reads or writes
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let config = ProbeConfig {
        response_timeout: Some(Duration::from_millis(300).into()),
        ..ProbeConfig::default()
    };
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    let r = probe_connection::<4, _, _>(&mut StdStream::new(&tcp), config, &Clock::new(), &mut buf);
    assert!(
        matches!(
            r,
            Err(ProbeDriveError::Probe(
                ricochet::core::ProbeError::Timeout { .. }
            ))
        ),
        "{r:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn blocking_serve_connection_aborts_a_peer_that_never_reads() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // The peer writes without ever reading, until its writes block.
    let peer = thread::spawn(move || {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let chunk = vec![7u8; 64 * 1024];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if (&s).write_all(&chunk).is_err() {
                break;
            }
        }
        s
    });
    let (conn, _) = listener.accept().expect("accept");
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    conn.set_write_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let config = SessionConfig {
        drain_timeout: Some(Duration::from_millis(300).into()),
        ..SessionConfig::default()
    };
    let start = Instant::now();
    let r = serve_connection(
        &mut StdStream::new(&conn),
        [0u8; 4096],
        config,
        &Clock::new(),
    );
    assert!(
        matches!(
            r,
            Err(DriveError::Aborted {
                reason: AbortReason::DrainTimeout,
                ..
            })
        ),
        "expected a drain-timeout abort, got {r:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "took {:?}",
        start.elapsed()
    );
    drop(conn);
    drop(peer.join().expect("peer"));
}

/// A raw message far larger than what the kernel buffers hold in flight:
/// the probe must read the echo while it still has bytes to send, or both
/// ends block in `write` (the server's echo fills the probe's receive
/// buffer, the server stops reading, the probe's send buffer fills) until
/// the response timeout fails a correct server. Small socket buffers on
/// both ends make "far larger" a few hundred KiB.
#[test]
fn blocking_probe_connection_sends_a_raw_message_larger_than_the_kernel_buffers() {
    use socket2::{Domain, Socket, Type};
    const KERNEL_BUF: usize = 32 * 1024;
    const SIZE: usize = 2 * 1024 * 1024;

    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    listener.set_recv_buffer_size(KERNEL_BUF).expect("rcvbuf");
    listener.set_send_buffer_size(KERNEL_BUF).expect("sndbuf");
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .expect("bind");
    listener.listen(1).expect("listen");
    let listener: TcpListener = listener.into();
    let addr = listener.local_addr().expect("addr");
    let server = thread::spawn(move || {
        // Accepted sockets inherit the listener's small buffers.
        let (conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        conn.set_write_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let config = SessionConfig {
            drain_timeout: Some(Duration::from_secs(5).into()),
            ..SessionConfig::default()
        };
        serve_connection(
            &mut StdStream::new(&conn),
            [0u8; 4096],
            config,
            &Clock::new(),
        )
        .map(|stats| stats.bytes_out)
    });

    let client = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    client.set_recv_buffer_size(KERNEL_BUF).expect("rcvbuf");
    client.set_send_buffer_size(KERNEL_BUF).expect("sndbuf");
    client
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    let tcp: TcpStream = client.into();
    // A stalled write outlasts the response timeout, as in tcp_client
    // (10 s socket timeouts, 5 s response timeout).
    tcp.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    tcp.set_write_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let config = ProbeConfig {
        size: SizeRange::fixed(SIZE),
        count: Some(2),
        response_timeout: Some(Duration::from_secs(1).into()),
        ..ProbeConfig::default()
    };
    let mut s = StdStream::new(&tcp);
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let r = probe_connection::<4, _, _>(&mut s, config, &Clock::new(), &mut buf);
    let stats = r.expect("a correct echo server is verified, however large the message");
    assert_eq!(stats.messages_verified, 2);
    assert_eq!(stats.bytes_verified, 2 * SIZE as u64);
    tcp.shutdown(Shutdown::Write).expect("fin");
    expect_eof(&mut s, &mut buf).expect("server closes after our FIN");
    assert_eq!(
        server.join().expect("server thread").expect("served"),
        2 * SIZE as u64
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

/// A caller's own std stream: it says how it half-closes ([`HalfClose`]),
/// and [`StdStream`] makes it a stream `serve_connection` drives.
struct Logged {
    tcp: TcpStream,
    half_closed: bool,
}

impl std::io::Read for Logged {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.tcp, buf)
    }
}

impl Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

impl HalfClose for Logged {
    fn shutdown_write(&mut self) {
        self.half_closed = true;
        let _ = self.tcp.shutdown(Shutdown::Write);
    }
}

#[test]
fn blocking_serve_connection_takes_a_mut_borrowed_or_a_callers_own_std_stream() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = thread::spawn(move || {
        let clock = Clock::new();
        let mut half_closed = Vec::new();
        for own in [false, true] {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            conn.set_write_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let config = SessionConfig::default();
            if own {
                let mut stream = StdStream::new(Logged {
                    tcp: conn,
                    half_closed: false,
                });
                serve_connection(&mut stream, [0u8; 4096], config, &clock).expect("served");
                half_closed.push(stream.into_inner().half_closed);
            } else {
                // `&mut TcpStream`, as a caller that keeps the socket holds it.
                serve_connection(&mut StdStream::new(&mut conn), [0u8; 4096], config, &clock)
                    .expect("served");
            }
        }
        half_closed
    });
    for _ in 0..2 {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut client = StdStream::new(&tcp);
        let mut buf = [0u8; 4096];
        let config = ProbeConfig {
            count: Some(50),
            ..ProbeConfig::default()
        };
        let stats = probe_connection::<16, _, _>(&mut client, config, &Clock::new(), &mut buf)
            .expect("probe");
        assert_eq!(stats.messages_verified, 50);
        tcp.shutdown(Shutdown::Write).expect("half-close");
        expect_eof(&mut client, &mut buf).expect("the server's FIN");
    }
    assert_eq!(server.join().expect("server thread"), [true]);
}
