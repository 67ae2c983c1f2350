//! The connection table with a stand-in backend: connections whose drives
//! are scripted (yield, or run the real pump over a transport that takes
//! nothing), so fairness, deadlines, admission and the drain are checked
//! without sockets. In modules [`scheduling`] and [`lifecycle`]; the stand-ins
//! are here.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use ricochet_core::pump::{ReadOutcome, Transport, WriteOutcome};
use ricochet_core::{Duration, Instant, Next, Pump, SessionConfig, State};

use super::super::config::IoBackend;
use super::super::stats::{Counters, StreamKind};
use super::super::storage::SessionStorage;
use super::super::{Phase, Shared};
use super::{BUDGET, ConnTable, Driver, TIMER_BUDGET, Tracked};

mod lifecycle;
mod scheduling;

const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn shared(max_connections: usize) -> Arc<Shared> {
    Shared::for_tests(max_connections, IoBackend::Epoll, |s| s.grace = GRACE)
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A peer that sent `input` bytes once and takes no echo (or, with
/// `takes_echo`, all of it).
#[derive(Debug)]
struct Peer {
    input: usize,
    takes_echo: bool,
}

impl Transport for Peer {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        let n = self.input.min(buf.len());
        self.input -= n;
        if n == 0 {
            return ReadOutcome::WouldBlock;
        }
        buf[..n].fill(b'x');
        ReadOutcome::Data(n)
    }

    fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
        if self.takes_echo {
            WriteOutcome::Sent(buf.len())
        } else {
            WriteOutcome::WouldBlock
        }
    }

    fn shutdown_write(&mut self) {}
}

#[derive(Debug)]
struct Fake {
    pump: Pump<SessionStorage>,
    peer: Peer,
    /// Drives left that return `Next::Yield` before the pump runs.
    yields: u32,
    deadline: Option<Instant>,
    /// What `deadline` becomes once driven.
    after: Option<Instant>,
    live: bool,
    reset_on_close: Cell<bool>,
}

impl Tracked for Fake {
    fn pump(&mut self) -> &mut Pump<SessionStorage> {
        &mut self.pump
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn set_reset_on_close(&self) {
        self.reset_on_close.set(true);
    }

    fn kind(&self) -> StreamKind {
        StreamKind::Tcp
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

struct Worker {
    conns: ConnTable<Fake>,
    counters: Counters,
    /// Keys in the order they were driven.
    driven: Vec<usize>,
    stopped_accepting: bool,
}

impl Worker {
    fn new(max_connections: usize) -> Self {
        Worker {
            conns: ConnTable::new(0, shared(max_connections)),
            counters: Counters::default(),
            driven: Vec::new(),
            stopped_accepting: false,
        }
    }

    /// Admits a connection (panics over the limit).
    fn open(&mut self, now: Instant, yields: u32, deadline: Option<Instant>) -> usize {
        let peer = super::super::conn::Peer::Unix;
        assert!(
            self.conns
                .reserve(StreamKind::Tcp, &peer, now, &mut self.counters)
        );
        let make = |pump| Fake {
            pump,
            peer: Peer {
                input: 0,
                takes_echo: false,
            },
            yields,
            deadline,
            after: None,
            live: true,
            reset_on_close: Cell::new(false),
        };
        self.conns
            .insert(StreamKind::Tcp, peer, now, &mut self.counters, make)
    }

    fn times_driven(&self, key: usize) -> usize {
        self.driven.iter().filter(|&&k| k == key).count()
    }

    fn open_gauge(&mut self) -> usize {
        self.conns
            .shared
            .stats
            .open()
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Driver for Worker {
    type Conn = Fake;

    fn table(&mut self) -> &mut ConnTable<Fake> {
        &mut self.conns
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.live {
            return;
        }
        self.driven.push(key);
        conn.deadline = conn.after;
        let next = if conn.yields > 0 {
            conn.yields -= 1;
            Next::Yield
        } else {
            let counters = self.counters.stream(StreamKind::Tcp);
            conn.pump.drive(now, &mut conn.peer, BUDGET, counters)
        };
        if self.conns.file(key, next).is_some() {
            self.conns.release(key, drop);
        }
    }

    fn stop_accepting(&mut self) {
        self.stopped_accepting = true;
    }
}

/// What `f` logs (the `fmt` layer's text, no colours).
#[cfg(feature = "cli")]
fn logged(f: impl FnOnce()) -> String {
    logged_at(tracing::Level::INFO, f)
}

/// What `f` logs at `level` and above (the `fmt` layer's text, no colours).
#[cfg(feature = "cli")]
pub(in crate::serve) fn logged_at(level: tracing::Level, f: impl FnOnce()) -> String {
    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Capture(Arc::new(Mutex::new(Vec::new())));
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
}

/// A backend connection that does not say otherwise.
struct Plain(Pump<SessionStorage>);

impl Tracked for Plain {
    fn pump(&mut self) -> &mut Pump<SessionStorage> {
        &mut self.0
    }
    fn deadline(&self) -> Option<Instant> {
        None
    }
    fn set_reset_on_close(&self) {}
    fn kind(&self) -> StreamKind {
        StreamKind::Tcp
    }
}
