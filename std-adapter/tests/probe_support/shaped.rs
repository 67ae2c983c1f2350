//! An in-test TCP echo server shaped in time ([`Shape`]): stalls at regular
//! times, or a known capacity.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::STEP_TIMEOUT;
use super::accepting::Accepting;

/// When a [`ShapedServer`] may echo.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Echo nothing for `stall` at the start of every `period` (from the
    /// server's start), else at once: a server that freezes regularly.
    StallEvery { period: Duration, stall: Duration },
    /// Echo at most this many bytes per 100 ms over all connections: a
    /// server with a known capacity. Bytes over it wait for a later 100 ms.
    BytesPer100ms(u64),
}

/// A thread-per-connection TCP echo server on 127.0.0.1:0 shaped in time
/// by a [`Shape`]; it closes after the client's FIN. Stops when dropped.
pub struct ShapedServer {
    pub addr: SocketAddr,
    conns: Accepting,
}

/// The shared state of a shaped server's connections.
struct Shaper {
    shape: Shape,
    epoch: Instant,
    /// `BytesPer100ms`: the current 100 ms window and the bytes it echoed.
    budget: std::sync::Mutex<(u64, u64)>,
}

const SHAPE_WINDOW: Duration = Duration::from_millis(100);

impl Shaper {
    /// How many of `want` bytes may be echoed now; `Err(wait)` when none may.
    fn admit(&self, want: u64) -> Result<u64, Duration> {
        let since = self.epoch.elapsed();
        match self.shape {
            Shape::StallEvery { period, stall } => {
                let into = Duration::from_nanos((since.as_nanos() % period.as_nanos()) as u64);
                if into < stall {
                    Err(stall - into)
                } else {
                    Ok(want)
                }
            }
            Shape::BytesPer100ms(cap) => {
                let window = (since.as_nanos() / SHAPE_WINDOW.as_nanos()) as u64;
                let mut b = self.budget.lock().unwrap_or_else(|e| e.into_inner());
                if b.0 != window {
                    *b = (window, 0);
                }
                let n = want.min(cap.saturating_sub(b.1));
                if n == 0 {
                    let next = SHAPE_WINDOW * (window as u32 + 1);
                    return Err(next.saturating_sub(since).max(Duration::from_micros(100)));
                }
                b.1 += n;
                Ok(n)
            }
        }
    }
}

impl ShapedServer {
    pub fn start(shape: Shape) -> ShapedServer {
        let shaper = Shaper {
            shape,
            epoch: Instant::now(),
            budget: std::sync::Mutex::new((0, 0)),
        };
        let (conns, addr) = Accepting::start(move |s, stop| serve_shaped(s, &shaper, stop));
        ShapedServer { addr, conns }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.conns.accepted()
    }
}

fn serve_shaped(s: TcpStream, shaper: &Shaper, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = s.set_write_timeout(Some(STEP_TIMEOUT));
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + STEP_TIMEOUT * 2;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match (&s).read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let mut done = 0;
                while done < n {
                    if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        return;
                    }
                    match shaper.admit((n - done) as u64) {
                        Ok(k) => {
                            let k = k as usize;
                            if (&s).write_all(&buf[done..done + k]).is_err() {
                                return;
                            }
                            done += k;
                        }
                        // The server's own schedule, not test synchronisation.
                        Err(wait) => std::thread::sleep(wait.min(Duration::from_millis(20))),
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
