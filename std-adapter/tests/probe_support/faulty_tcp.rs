//! An in-test TCP echo server that misbehaves in a chosen way ([`Fault`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::accepting::Accepting;
use super::{STEP_TIMEOUT, wait_until};

/// How an in-test TCP server misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Echo correctly and close after the client's FIN.
    None,
    /// Echo, but flip (xor 0xff) the byte at this stream offset.
    FlipAt(u64),
    /// Echo this many bytes, then close.
    CloseAfter(u64),
    /// Read and never answer.
    Silent,
    /// Echo everything, but never close after the client's FIN.
    NoFin,
    /// Echo everything, and after the client's FIN send extra bytes.
    ExtraAfterFin,
    /// Send this greeting first (as SMTP or FTP servers do), then echo.
    Banner(&'static [u8]),
    /// Echo this many bytes, stall (read and echo nothing) for this long,
    /// then echo the rest: a server that stops answering for a while.
    StallAfter(u64, Duration),
    /// Echo nothing: half-close at once (FIN), drain what the peer sends,
    /// then close; always a clean close for the peer (a port forward with
    /// nothing behind it, as some end their connections).
    FinAtOnce,
    /// Echo nothing: close at once; if the peer's first message is already
    /// unread, the kernel resets the connection instead (a plain
    /// accept-and-close, as QEMU's `hostfwd` before the guest listens).
    CloseAtOnce,
    /// Echo nothing: wait for the peer's first bytes and close with them
    /// unread, so that the kernel always resets the connection (socat's
    /// `OPENSSL-LISTEN` given a non-TLS hello, a superserver that stopped
    /// the service). Unlike `CloseAtOnce`, never a clean close.
    ResetOnFirstBytes,
    /// Echo each read in two writes, its first byte then the rest, with
    /// Nagle's algorithm on (no `TCP_NODELAY`): the rest waits for the
    /// peer's ACK of the first byte.
    SplitWrites,
    /// Echo each read whole, this long after it came: a slow server.
    DelayEach(Duration),
    /// Echo every `\n` as `\r\n` (a server or relay translating line ends).
    Crlf,
    /// Echo each read as a server does that takes a partial send for none
    /// and sends its whole buffer again: the read's first half, then all
    /// of it (the first half twice).
    ResendAfterPartial,
    /// Echo each read as a server does that takes a partial send for all of
    /// it: the read's first half only, its second half lost.
    LoseRestAfterPartial,
    /// Echo in pieces of this many bytes, each ended with a line feed if
    /// it has none: a server that takes each read for a line.
    LineEndEach(usize),
    /// Accept and never read (nor answer, nor close) until the test ends:
    /// the peer's writes block once both sockets' buffers are full.
    NeverRead,
}

/// A thread-per-connection TCP echo server with a fault, on 127.0.0.1:0.
/// Stops accepting when dropped.
pub struct FaultyServer {
    pub addr: SocketAddr,
    conns: Accepting,
}

impl FaultyServer {
    pub fn start(fault: Fault) -> FaultyServer {
        let (conns, addr) = Accepting::start(move |s, stop| serve_faulty(s, fault, stop));
        FaultyServer { addr, conns }
    }

    /// Waits (bounded) until `n` connections were accepted.
    pub fn wait_accepted(&self, n: usize) {
        wait_until("connections to the faulty server", || {
            self.conns.accepted() >= n
        });
    }
}

fn serve_faulty(s: TcpStream, fault: Fault, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = s.set_write_timeout(Some(STEP_TIMEOUT));
    match fault {
        Fault::Banner(greeting) if (&s).write_all(greeting).is_err() => return,
        Fault::CloseAtOnce => return,
        Fault::ResetOnFirstBytes => {
            let _ = s.set_read_timeout(Some(STEP_TIMEOUT));
            let _ = s.peek(&mut [0u8; 1]);
            return;
        }
        Fault::NeverRead => {
            let deadline = Instant::now() + STEP_TIMEOUT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            return;
        }
        Fault::FinAtOnce => {
            let _ = s.shutdown(Shutdown::Write);
            let _ = s.set_read_timeout(Some(STEP_TIMEOUT));
            let mut buf = [0u8; 4096];
            while matches!((&s).read(&mut buf), Ok(n) if n > 0) {}
            return;
        }
        _ => {}
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut offset: u64 = 0;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match (&s).read(&mut buf) {
            Ok(0) => {
                match fault {
                    Fault::NoFin => {
                        // Keep the connection open until the test ends.
                        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    Fault::ExtraAfterFin => {
                        let _ = (&s).write_all(b"surprise");
                    }
                    _ => {}
                }
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let chunk = &mut buf[..n];
                match fault {
                    // Silent reads and never answers; the others never get here.
                    Fault::Silent
                    | Fault::FinAtOnce
                    | Fault::CloseAtOnce
                    | Fault::ResetOnFirstBytes
                    | Fault::NeverRead => {}
                    Fault::FlipAt(at) => {
                        if at >= offset && at < offset + n as u64 {
                            chunk[(at - offset) as usize] ^= 0xff;
                        }
                        if (&s).write_all(chunk).is_err() {
                            return;
                        }
                    }
                    Fault::StallAfter(limit, stall) => {
                        let before = limit.saturating_sub(offset).min(n as u64) as usize;
                        if (&s).write_all(&chunk[..before]).is_err() {
                            return;
                        }
                        if before < n {
                            if offset <= limit {
                                std::thread::sleep(stall);
                            }
                            if (&s).write_all(&chunk[before..]).is_err() {
                                return;
                            }
                        }
                    }
                    Fault::CloseAfter(limit) => {
                        let keep = limit.saturating_sub(offset).min(n as u64) as usize;
                        let _ = (&s).write_all(&chunk[..keep]);
                        if offset + n as u64 >= limit {
                            let _ = s.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                    Fault::SplitWrites => {
                        let (first, rest) = chunk.split_at(1);
                        if (&s).write_all(first).is_err() || (&s).write_all(rest).is_err() {
                            return;
                        }
                    }
                    Fault::Crlf => {
                        let mut out = Vec::with_capacity(chunk.len() * 2);
                        for &b in chunk.iter() {
                            if b == b'\n' {
                                out.push(b'\r');
                            }
                            out.push(b);
                        }
                        if (&s).write_all(&out).is_err() {
                            return;
                        }
                    }
                    Fault::ResendAfterPartial => {
                        let half = &chunk[..chunk.len() / 2];
                        if (&s).write_all(half).is_err() || (&s).write_all(chunk).is_err() {
                            return;
                        }
                    }
                    Fault::LoseRestAfterPartial => {
                        if (&s).write_all(&chunk[..chunk.len() / 2]).is_err() {
                            return;
                        }
                    }
                    Fault::LineEndEach(piece) => {
                        // One write, as `send(lines)`: the peer's reads
                        // then see each line end with what follows it.
                        let mut out = Vec::with_capacity(chunk.len() * 2);
                        for p in chunk.chunks(piece) {
                            out.extend_from_slice(p);
                            if !p.ends_with(b"\n") {
                                out.push(b'\n');
                            }
                        }
                        if (&s).write_all(&out).is_err() {
                            return;
                        }
                    }
                    Fault::DelayEach(delay) => {
                        std::thread::sleep(delay);
                        if (&s).write_all(chunk).is_err() {
                            return;
                        }
                    }
                    Fault::None | Fault::NoFin | Fault::ExtraAfterFin | Fault::Banner(_) => {
                        if (&s).write_all(chunk).is_err() {
                            return;
                        }
                    }
                }
                offset += n as u64;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
