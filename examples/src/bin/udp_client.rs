//! The tutorial's UDP echo client, done right.
//!
//! The classic program is `sendto(b'Hello, world', addr); data, server =
//! recvfrom(1024)`, which hangs forever when the datagram (or its echo) is
//! lost, and accepts a reply from anyone. Here the socket is connected (the
//! kernel drops datagrams from other addresses), every receive has a
//! timeout, and a core `DatagramProbe` numbers each datagram so losses are
//! counted apart from corruption, duplicates and late arrivals.
//!
//! Usage: `udp_client [ADDR] [--count N] [--size S] [MESSAGE...]`
//! (default 127.0.0.1:50007, 50 datagrams of 64 bytes, "Hello, world").

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use ricochet::clock::Clock;
use ricochet_core::{DatagramOutcome, DatagramProbe, DatagramProbeConfig, SizeRange};
use ricochet_examples::{PEER_TIMEOUT, parse_args};

const HELP: &str = "\
udp_client: the socket tutorial's UDP echo client, done right. A connected socket with
timeouts sends the greeting, then numbered datagrams from a core DatagramProbe: losses are
counted apart from corruption, duplicates and late arrivals.

Usage: udp_client [ADDR] [--count N] [--size S] [MESSAGE...]
  ADDR        the echo server (default 127.0.0.1:50007)
  --count N   datagrams to verify (default 50)
  --size S    bytes per datagram, at least 12: 64, 1K... (default 64)
  MESSAGE     the greeting (default \"Hello, world\")
";

fn main() -> ExitCode {
    let args = match parse_args("udp_client", HELP, 50) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let greeting = if args.rest.is_empty() {
        "Hello, world".to_owned()
    } else {
        args.rest.join(" ")
    };
    match run(&args.addr, greeting.as_bytes(), args.count, args.size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_client: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(addr: &str, greeting: &[u8], count: u64, size: usize) -> Result<(), String> {
    let server: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr:?} resolves to nothing"))?;
    let local = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(server)
        .map_err(|e| format!("connect: {e}"))?;

    // 1. The greeting, with a timeout instead of a forever-blocking recvfrom.
    socket
        .set_read_timeout(Some(PEER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    socket.send(greeting).map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
            "no echo of the greeting within {} s: is a UDP echo server running at {server}?",
            PEER_TIMEOUT.as_secs()
        ),
        ErrorKind::ConnectionRefused => {
            format!("no UDP echo server at {server} (ICMP port unreachable)")
        }
        _ => format!("no echo of the greeting: {e}"),
    })?;
    if &buf[..n] != greeting {
        return Err(format!(
            "the greeting came back altered: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ));
    }
    println!(
        "Received {:?} from {server}",
        String::from_utf8_lossy(&buf[..n])
    );

    // 2. Verification: numbered datagrams, one in flight, each checked.
    let clock = Clock::new();
    let config = DatagramProbeConfig {
        size: SizeRange::fixed(size),
        count: Some(count),
        window: 1,
        loss_timeout: Duration::from_secs(1).into(),
        ..DatagramProbeConfig::default()
    };
    let mut probe = DatagramProbe::<1>::new(config, clock.now()).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; size];
    while !probe.is_done() {
        if let Some(n) = probe.poll_transmit(clock.now(), &mut out) {
            socket.send(&out[..n]).map_err(|e| format!("send: {e}"))?;
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                if let DatagramOutcome::Corrupt { seq } =
                    probe.handle_datagram(clock.now(), &buf[..n])
                {
                    println!("datagram {seq} came back altered");
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                probe.handle_timeout(clock.now());
            }
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    let s = probe.stats();
    println!(
        "sent {}, verified {}, lost {}, corrupt {}, duplicate {}, late {}",
        s.sent, s.verified, s.lost, s.corrupt, s.duplicate, s.late
    );
    if s.verified == count {
        Ok(())
    } else {
        Err(format!("{} of {count} datagrams verified", s.verified))
    }
}
