//! An in-test UDP echo server that misbehaves in a chosen way ([`UdpFault`]).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How an in-test UDP echo server misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum UdpFault {
    /// Drop every `n`-th datagram (1-based: the n-th, 2n-th…).
    DropEvery(u64),
    /// Flip one byte of every `n`-th datagram.
    CorruptEvery(u64),
    /// Echo only the first this many bytes of each datagram (a server
    /// whose receive buffer is that small: socat and ncat at 8192).
    TruncateTo(usize),
    /// Echo this many datagrams, then close the socket: later datagrams
    /// get an ICMP port unreachable (a server stopped mid-run).
    CloseAfter(u64),
    /// Echo every datagram from another socket (another port), which a
    /// client's connected socket never sees.
    FromOtherPort,
    /// Echo datagrams in swapped pairs: the 2nd before the 1st, the 4th
    /// before the 3rd… (an odd last one is never echoed).
    SwapPairs,
    /// Before echoing the `n`-th datagram, pause this long (a server that
    /// stops for a while, e.g. a collector's pause), losing nothing.
    PauseAt(u64, Duration),
    /// Hold the `n`-th datagram this long while echoing the later ones (a
    /// server thread that stalled on one), then echo it.
    HoldOne(u64, Duration),
    /// Echo every datagram with two bytes appended (a server that joins
    /// datagrams, as one relaying them through a byte stream does).
    Lengthen,
    /// Echo every datagram this many times (a server that answers each
    /// datagram more than once, or a network that duplicates them).
    EchoTimes(u32),
    /// Connect the socket to the first peer and serve only it: the other
    /// peers' datagrams get an ICMP port unreachable (socat's `UDP-LISTEN`
    /// without `fork`).
    FirstPeerOnly,
}

/// A UDP echo server with a fault on 127.0.0.1:0; stops when dropped.
pub struct FaultyUdp {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultyUdp {
    pub fn start(fault: UdpFault) -> FaultyUdp {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let addr = sock.local_addr().expect("addr");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let other = UdpSocket::bind("127.0.0.1:0").expect("bind the other udp socket");
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut seen: u64 = 0;
            let mut held: Option<Vec<u8>> = None;
            let mut held_one: Option<(Vec<u8>, SocketAddr, Instant)> = None;
            let mut first: Option<SocketAddr> = None;
            while !stop2.load(Ordering::Relaxed) {
                if let Some((data, to, at)) = &held_one
                    && Instant::now() >= *at
                {
                    let _ = sock.send_to(data, *to);
                    held_one = None;
                }
                let Ok((mut n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                seen += 1;
                match fault {
                    UdpFault::DropEvery(k) if seen.is_multiple_of(k) => continue,
                    UdpFault::CorruptEvery(k) if seen.is_multiple_of(k) => buf[n - 1] ^= 0x5a,
                    UdpFault::TruncateTo(k) => n = n.min(k),
                    UdpFault::Lengthen => {
                        buf[n..n + 2].copy_from_slice(b"xy");
                        n += 2;
                    }
                    UdpFault::PauseAt(k, pause) if seen == k => std::thread::sleep(pause),
                    UdpFault::HoldOne(k, hold) if seen == k => {
                        let at = Instant::now() + hold;
                        held_one = Some((buf[..n].to_vec(), from, at));
                        continue;
                    }
                    UdpFault::FirstPeerOnly => {
                        // Queued before the connect: another peer's, dropped.
                        if seen == 1 {
                            sock.connect(from).expect("connect to the first peer");
                            first = Some(from);
                        }
                        if first == Some(from) {
                            let _ = sock.send(&buf[..n]);
                        }
                        continue;
                    }
                    UdpFault::FromOtherPort => {
                        let _ = other.send_to(&buf[..n], from);
                        continue;
                    }
                    UdpFault::EchoTimes(k) => {
                        for _ in 0..k {
                            let _ = sock.send_to(&buf[..n], from);
                        }
                        continue;
                    }
                    UdpFault::SwapPairs => {
                        match held.take() {
                            None => held = Some(buf[..n].to_vec()),
                            Some(first) => {
                                let _ = sock.send_to(&buf[..n], from);
                                let _ = sock.send_to(&first, from);
                            }
                        }
                        continue;
                    }
                    _ => {}
                }
                let _ = sock.send_to(&buf[..n], from);
                if matches!(fault, UdpFault::CloseAfter(k) if seen >= k) {
                    // Dropping the socket: the port is closed from now on.
                    break;
                }
            }
        });
        FaultyUdp {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FaultyUdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}
