//! The stalled-readers scenario: many peers each send a few hundred
//! kilobytes and their FIN, read nothing for longer than the session's 2 s
//! linger, then read everything. The server may give up on a lingering
//! connection, but each peer must get its whole echo or a reset, never a
//! clean end after a shortened echo; and waiting for peers that do not read
//! must not cost the server CPU (no spinning on a full socket).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::harness::{Row, Server, during, good_client, row, target};
use crate::procstat;

/// How each stalled peer's echo ended.
#[derive(Default)]
struct Ends {
    whole: u64,
    reset: u64,
    /// A clean end after a shortened echo, or a wrong byte: the failure.
    damaged: u64,
    /// The peer could not send everything (the server reset it first).
    send_failed: u64,
    /// Still open when the read phase's time ran out.
    unfinished: u64,
}

struct Peer {
    c: TcpStream,
    seed: u64,
    len: usize,
    sent: usize,
    /// Bytes of echo read, and whether each matched what was sent.
    got: usize,
    wrong: bool,
    done: bool,
}

/// Byte `i` of peer `seed`'s stream: differs per peer, so an echo crossing
/// connections or shifted within one shows.
fn byte(seed: u64, i: usize) -> u8 {
    let x =
        (i as u64 ^ seed.wrapping_mul(0xD6E8_FEB8_6659_FD93)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

/// `n` peers against one server, peer `i` sending `first + i * step`
/// bytes (the sizes vary: which echoes end up held in the process when the
/// linger runs out depends on them); fails the row if any
/// echo came back damaged with a clean end, or the good probe failed.
pub(super) fn stalled_readers(
    bin: &Path,
    n: usize,
    first: usize,
    step: usize,
) -> Result<Row, String> {
    const STALL: Duration = Duration::from_secs(5);
    const RCVBUF: usize = 8192;
    let server = Server::start(bin, &["--tcp", "127.0.0.1:0"], None)?;
    let t = target(&server);
    let before = good_client(bin, &t, 2, "raw")?;
    let addr = server.tcp;
    let pid = server.child.id();
    let cpu_before = procstat::cpu_seconds(pid, false).unwrap_or(f64::NAN);
    let failures = Arc::new(AtomicU64::new(0));
    let failed = failures.clone();
    let (run, outcome) = during(bin, &t, "raw", move |_stop| {
        let mut peers: Vec<Peer> = (0..n as u64)
            .filter_map(|seed| {
                let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).ok()?;
                s.set_recv_buffer_size(RCVBUF).ok()?;
                s.connect_timeout(&SockAddr::from(addr), Duration::from_secs(2))
                    .ok()?;
                let c: TcpStream = s.into();
                c.set_nonblocking(true).ok()?;
                Some(Peer {
                    c,
                    seed,
                    len: first + seed as usize * step,
                    sent: 0,
                    got: 0,
                    wrong: false,
                    done: false,
                })
            })
            .collect();
        let opened = peers.len();
        let mut ends = Ends::default();
        // Send everything and the FIN, reading nothing (bounded: 30 s).
        let start = Instant::now();
        let mut chunk = vec![0u8; 64 * 1024];
        while peers.iter().any(|p| !p.done && p.sent < p.len)
            && start.elapsed() < Duration::from_secs(30)
        {
            let mut moved = false;
            for p in peers.iter_mut().filter(|p| !p.done && p.sent < p.len) {
                let k = chunk.len().min(p.len - p.sent);
                for (j, b) in chunk[..k].iter_mut().enumerate() {
                    *b = byte(p.seed, p.sent + j);
                }
                match p.c.write(&chunk[..k]) {
                    Ok(k) => {
                        p.sent += k;
                        moved |= k > 0;
                        if p.sent == p.len {
                            let _ = p.c.shutdown(Shutdown::Write);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        p.done = true;
                        ends.send_failed += 1;
                    }
                }
            }
            if !moved {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let sent_in = start.elapsed();
        // Read nothing for longer than the linger.
        thread::sleep(STALL);
        // Now read everything (bounded: 60 s).
        let start = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        while peers.iter().any(|p| !p.done) && start.elapsed() < Duration::from_secs(60) {
            let mut moved = false;
            for p in peers.iter_mut().filter(|p| !p.done) {
                loop {
                    match p.c.read(&mut buf) {
                        Ok(0) => {
                            p.done = true;
                            moved = true;
                            if p.sent == p.len && p.got == p.len && !p.wrong {
                                ends.whole += 1;
                            } else {
                                ends.damaged += 1;
                            }
                            break;
                        }
                        Ok(k) => {
                            let at = p.got;
                            p.wrong |= buf[..k]
                                .iter()
                                .enumerate()
                                .any(|(j, &b)| b != byte(p.seed, at + j));
                            p.got += k;
                            moved = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            p.done = true;
                            moved = true;
                            if p.wrong {
                                ends.damaged += 1;
                            } else {
                                ends.reset += 1;
                            }
                            break;
                        }
                    }
                }
            }
            if !moved {
                thread::sleep(Duration::from_millis(5));
            }
        }
        ends.unfinished = peers.iter().filter(|p| !p.done).count() as u64;
        let summary = format!(
            "{opened} peers sent {:.0} MB + FIN in {:.1} s, read nothing for {} s",
            peers.iter().map(|p| p.sent).sum::<usize>() as f64 / 1e6,
            sent_in.as_secs_f64(),
            STALL.as_secs()
        );
        failed.store(ends.damaged + ends.unfinished, Ordering::SeqCst);
        format!(
            "{summary}: {} whole, {} reset, {} cut short with a clean end, {} could not send, {} unfinished",
            ends.whole, ends.reset, ends.damaged, ends.send_failed, ends.unfinished
        )
    })?;
    let cpu = procstat::cpu_seconds(pid, false).unwrap_or(f64::NAN) - cpu_before;
    let mut r = row(
        "stalled readers",
        &before,
        &run,
        format!(
            "{n} peers x {}-{} KB, FIN, no reads for {} s (linger 2 s), receive buffer {} KiB",
            first / 1000,
            (first + (n - 1) * step) / 1000,
            STALL.as_secs(),
            RCVBUF / 1024
        ),
        format!("{outcome}; server CPU {cpu:.1} s"),
    );
    r.failures += failures.load(Ordering::SeqCst);
    Ok(r)
}
