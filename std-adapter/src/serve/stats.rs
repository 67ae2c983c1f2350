//! Server counters: written by each worker, readable from any thread.
//!
//! The taxonomy is the core's ([`StreamCounters`], [`DatagramCounters`]):
//! the session pump and the datagram loop count into a worker-local
//! [`Counters`] on the hot path, and the worker publishes a copy once per
//! event-loop turn into its own cache-line-aligned slot, so workers never
//! contend. Readers sum the slots into a [`StatsSnapshot`].

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use ricochet_core::{DatagramCounters, StreamCounters};

use super::tls::HandshakeCounts;

/// Which stream transport a connection uses (for per-transport counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Tcp,
    Unix,
    Tls,
}

/// One worker's counters (no atomics), or a sum of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) tcp: StreamCounters,
    pub(crate) unix: StreamCounters,
    pub(crate) tls: StreamCounters,
    pub(crate) tls_handshakes: HandshakeCounts,
    pub(crate) udp: DatagramCounters,
    /// UDP datagrams the kernel dropped for a full receive queue.
    pub(crate) udp_queue_drops: u64,
    pub(crate) accept_fd_exhausted: u64,
    pub(crate) accept_errors: u64,
}

impl Counters {
    pub(crate) fn stream(&mut self, kind: StreamKind) -> &mut StreamCounters {
        match kind {
            StreamKind::Tcp => &mut self.tcp,
            StreamKind::Unix => &mut self.unix,
            StreamKind::Tls => &mut self.tls,
        }
    }

    fn add(&mut self, o: &Counters) {
        self.tcp.add(&o.tcp);
        self.unix.add(&o.unix);
        self.tls.add(&o.tls);
        self.tls_handshakes.add(&o.tls_handshakes);
        self.udp.add(&o.udp);
        self.udp_queue_drops += o.udp_queue_drops;
        self.accept_fd_exhausted += o.accept_fd_exhausted;
        self.accept_errors += o.accept_errors;
    }
}

/// What a connection's transport holds beside its session's buffer (which
/// the pump counts), as last added to its kind's `buffered` gauge:
/// io_uring's receive and send queues, rustls's records and decrypted
/// input. Each backend sets it after whatever changes them and to 0 when it
/// releases the connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held(usize);

impl Held {
    /// The transport holds `now` bytes: moves `counters`' gauge by the change.
    pub(crate) fn set(&mut self, now: usize, counters: &mut StreamCounters) {
        if now != self.0 {
            counters.rebuffer(self.0, now);
            self.0 = now;
        }
    }
}

/// A point-in-time copy of the server's counters (summed over workers).
///
/// Everything only grows, except `connections_open` and the `buffered`
/// gauges. Each worker publishes once per event-loop turn, so a snapshot is
/// at most one turn old per worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Stream connections open now (including ones finishing their close).
    pub connections_open: u64,
    /// TCP connections: accepted, rejected, closes and aborts by reason, bytes.
    pub tcp: StreamCounters,
    /// Unix stream connections, the same.
    pub unix: StreamCounters,
    /// TLS connections, the same (their sessions, whatever their handshake did).
    pub tls: StreamCounters,
    /// TLS handshakes: completed, resumed, failed by reason.
    pub tls_handshakes: HandshakeCounts,
    /// UDP datagrams: received, echoed, dropped by reason.
    pub udp: DatagramCounters,
    /// UDP datagrams the kernel dropped because a socket's receive queue
    /// was full, before the server could read them (so not in `udp`);
    /// Linux only (`SO_RXQ_OVFL`), counted when a later datagram arrives.
    pub udp_queue_drops: u64,
    /// `accept` failures for lack of file descriptors (EMFILE/ENFILE).
    pub accept_fd_exhausted: u64,
    /// Other `accept` failures.
    pub accept_errors: u64,
}

impl StatsSnapshot {
    /// TCP, Unix and TLS together.
    pub fn streams(&self) -> StreamCounters {
        let mut all = self.tcp;
        all.add(&self.unix);
        all.add(&self.tls);
        all
    }
}

/// One worker's published counters, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerStats {
    published: Mutex<Counters>,
    /// Publications so far: one per event-loop turn (a liveness sign).
    turns: AtomicU64,
}

impl WorkerStats {
    /// Publishes the worker's running totals (once per event-loop turn).
    pub(crate) fn publish(&self, c: &Counters) {
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = *c;
        self.turns.fetch_add(1, Relaxed);
    }

    /// How many times the worker published: it grows while the worker's event loop turns.
    pub(crate) fn turns(&self) -> u64 {
        self.turns.load(Relaxed)
    }

    fn read(&self) -> Counters {
        *self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Live counters of a running server, shared by its workers and handles.
#[derive(Debug)]
pub struct ServerStats {
    workers: Vec<WorkerStats>,
    open: AtomicUsize,
}

impl ServerStats {
    pub(crate) fn new(workers: usize) -> Self {
        ServerStats {
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            open: AtomicUsize::new(0),
        }
    }

    /// The slot worker `i` publishes into.
    pub(crate) fn worker(&self, i: usize) -> &WorkerStats {
        &self.workers[i]
    }

    /// The open-connection gauge shared by all workers (for `max_connections`).
    pub(crate) fn open(&self) -> &AtomicUsize {
        &self.open
    }

    /// Sums every worker's last published counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut sum = Counters::default();
        for w in &self.workers {
            sum.add(&w.read());
        }
        StatsSnapshot {
            connections_open: self.open.load(Relaxed) as u64,
            tcp: sum.tcp,
            unix: sum.unix,
            tls: sum.tls,
            tls_handshakes: sum.tls_handshakes,
            udp: sum.udp,
            udp_queue_drops: sum.udp_queue_drops,
            accept_fd_exhausted: sum.accept_fd_exhausted,
            accept_errors: sum.accept_errors,
        }
    }
}

/// The periodic stats line: `now` minus `before` over `elapsed`, plus gauges.
#[derive(Clone, Copy, Debug)]
pub struct StatsLine {
    /// Counters at the end of the interval.
    pub now: StatsSnapshot,
    /// Counters at its start.
    pub before: StatsSnapshot,
    /// Length of the interval.
    pub elapsed: Duration,
}

/// Bytes per second in human units: `812 B/s`, `3.4 KB/s`, `118.2 MB/s`.
pub(crate) struct Rate(pub(crate) f64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        if r >= 1e9 {
            write!(f, "{:.1} GB/s", r / 1e9)
        } else if r >= 1e6 {
            write!(f, "{:.1} MB/s", r / 1e6)
        } else if r >= 1e3 {
            write!(f, "{:.1} KB/s", r / 1e3)
        } else {
            write!(f, "{r:.0} B/s")
        }
    }
}

/// A byte count in human units: `17 B`, `4.0 KiB`, `2.5 MiB`.
pub(crate) struct Bytes(pub(crate) u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if self.0 >= 1 << 30 {
            write!(f, "{:.1} GiB", b / (1u64 << 30) as f64)
        } else if self.0 >= 1 << 20 {
            write!(f, "{:.1} MiB", b / (1u64 << 20) as f64)
        } else if self.0 >= 1 << 10 {
            write!(f, "{:.1} KiB", b / 1024.0)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

impl fmt::Display for StatsLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, b) = (self.now.streams(), self.before.streams());
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let rate = |now: u64, before: u64| Rate(now.saturating_sub(before) as f64 / secs);
        let udp = &self.now.udp;
        let d = &udp.dropped;
        write!(
            f,
            "open={} accepted={} rejected={} closed={} aborted={} in={} out={} buffered={} \
             fd_exhausted={} udp_echoed={} udp_dropped[oversize={} loop_guard={} rate_limited={} \
             not_unicast={} unroutable={} send_full={} send_failed={}] udp_queue_dropped={}",
            self.now.connections_open,
            n.accepted,
            n.rejected,
            n.closed.total(),
            n.aborted.total(),
            rate(n.bytes_in, b.bytes_in),
            rate(n.bytes_out, b.bytes_out),
            Bytes(n.buffered),
            self.now.accept_fd_exhausted,
            udp.echoed,
            d.oversize,
            d.loop_guard,
            d.rate_limited,
            d.not_unicast,
            d.unroutable,
            d.send_full,
            d.send_failed,
            self.now.udp_queue_drops,
        )?;
        let h = &self.now.tls_handshakes;
        if self.now.tls.accepted > 0 {
            let fl = &h.failed;
            write!(
                f,
                " tls_handshakes[completed={} resumed={} failed={} timeout={} bad_record={} \
                 certificate={} protocol={} closed={} io={}]",
                h.completed,
                h.resumed,
                fl.total(),
                fl.timeout,
                fl.bad_record,
                fl.certificate,
                fl.protocol,
                fl.closed,
                fl.io,
            )?;
        }
        Ok(())
    }
}

/// Logs a `stats` line every `every` until `stop` is dropped or sent to
/// (the reporter thread's body).
pub(super) fn report(stats: &ServerStats, stop: &mpsc::Receiver<()>, every: Duration) {
    let mut before = stats.snapshot();
    let mut since = std::time::Instant::now();
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let now = stats.snapshot();
        let line = StatsLine {
            now,
            before,
            elapsed: since.elapsed(),
        };
        tracing::info!("stats {line}");
        before = now;
        since = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_line_shows_rates_and_sizes_in_human_units() {
        let mut now = StatsSnapshot::default();
        now.tcp.bytes_in = 3_500_000;
        now.tcp.bytes_out = 812;
        now.tcp.buffered = 4096;
        let line = StatsLine {
            now,
            before: StatsSnapshot::default(),
            elapsed: Duration::from_secs(1),
        }
        .to_string();
        assert!(line.contains("in=3.5 MB/s"), "{line}");
        assert!(line.contains("out=812 B/s"), "{line}");
        assert!(line.contains("buffered=4.0 KiB"), "{line}");
    }

    #[test]
    fn stats_line_shows_every_udp_drop_reason_the_metrics_have() {
        let mut now = StatsSnapshot::default();
        let d = &mut now.udp.dropped;
        (d.oversize, d.loop_guard, d.rate_limited) = (1, 2, 3);
        (d.not_unicast, d.unroutable, d.send_full, d.send_failed) = (4, 5, 6, 7);
        let line = StatsLine {
            now,
            before: StatsSnapshot::default(),
            elapsed: Duration::from_secs(1),
        }
        .to_string();
        assert!(
            line.contains(
                "udp_dropped[oversize=1 loop_guard=2 rate_limited=3 not_unicast=4 unroutable=5 \
                 send_full=6 send_failed=7]"
            ),
            "{line}"
        );
    }

    #[test]
    fn stats_line_shows_tls_handshakes_only_with_tls_connections() {
        let mut now = StatsSnapshot::default();
        let line = |now| {
            StatsLine {
                now,
                before: StatsSnapshot::default(),
                elapsed: Duration::from_secs(1),
            }
            .to_string()
        };
        assert!(!line(now).contains("tls"), "{}", line(now));
        now.tls.accepted = 3;
        now.tls_handshakes.completed = 2;
        now.tls_handshakes.failed.bad_record = 1;
        let l = line(now);
        assert!(
            l.contains("tls_handshakes[completed=2 resumed=0 failed=1 timeout=0 bad_record=1"),
            "{l}"
        );
    }

    #[test]
    fn stream_kind_picks_its_own_transports_counters() {
        let mut c = Counters::default();
        c.stream(StreamKind::Tcp).accepted += 1;
        c.stream(StreamKind::Unix).accepted += 2;
        c.stream(StreamKind::Tls).accepted += 3;
        assert_eq!((c.tcp.accepted, c.unix.accepted, c.tls.accepted), (1, 2, 3));
    }

    /// A transport's holdings move the gauge by their change only, down
    /// to 0 when it lets the connection go, beside what others hold.
    #[test]
    fn held_bytes_move_the_gauge_by_each_change_and_back_to_zero() {
        let mut c = StreamCounters {
            buffered: 100, // sessions' buffers
            ..StreamCounters::default()
        };
        let mut held = Held::default();
        held.set(5000, &mut c);
        assert_eq!(c.buffered, 5100);
        held.set(5000, &mut c);
        assert_eq!(c.buffered, 5100);
        held.set(300, &mut c);
        assert_eq!(c.buffered, 400);
        held.set(0, &mut c);
        assert_eq!(c.buffered, 100);
    }

    #[test]
    fn snapshot_sums_the_queue_drops_accept_errors_and_open_gauge() {
        let stats = ServerStats::new(2);
        let c = Counters {
            udp_queue_drops: 3,
            accept_fd_exhausted: 5,
            accept_errors: 7,
            ..Counters::default()
        };
        stats.worker(0).publish(&c);
        stats.worker(1).publish(&Counters {
            udp_queue_drops: 1,
            accept_fd_exhausted: 2,
            accept_errors: 4,
            ..Counters::default()
        });
        stats.open().fetch_add(9, Relaxed);
        let s = stats.snapshot();
        assert_eq!(
            (s.udp_queue_drops, s.accept_fd_exhausted, s.accept_errors),
            (4, 7, 11)
        );
        assert_eq!(s.connections_open, 9);
    }

    /// `turns` counts publications: the watchdog's sign of a live loop.
    #[test]
    fn worker_turns_count_each_publication() {
        let stats = ServerStats::new(1);
        assert_eq!(stats.worker(0).turns(), 0);
        for _ in 0..3 {
            stats.worker(0).publish(&Counters::default());
        }
        assert_eq!(stats.worker(0).turns(), 3);
    }

    #[test]
    fn rates_and_sizes_change_unit_at_each_boundary() {
        for (r, shown) in [
            (999.0, "999 B/s"),
            (1e3, "1.0 KB/s"),
            (999_949.0, "999.9 KB/s"),
            (1e6, "1.0 MB/s"),
            (1e9, "1.0 GB/s"),
        ] {
            assert_eq!(Rate(r).to_string(), shown);
        }
        for (b, shown) in [
            (17, "17 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1 << 20, "1.0 MiB"),
            (3 << 29, "1.5 GiB"),
        ] {
            assert_eq!(Bytes(b).to_string(), shown);
        }
    }

    /// Rates are per second of the interval, not per interval.
    #[test]
    fn stats_line_rate_divides_by_the_interval() {
        let mut now = StatsSnapshot::default();
        now.tcp.bytes_in = 4000;
        let before = StatsSnapshot::default();
        let line = StatsLine {
            now,
            before,
            elapsed: Duration::from_secs(4),
        }
        .to_string();
        assert!(line.contains("in=1.0 KB/s"), "{line}");
    }

    /// The reporter logs one `stats` line per interval, from the counters
    /// published, and ends when told (here: as soon as a line is written).
    #[cfg(feature = "cli")]
    #[test]
    fn reporter_logs_a_stats_line_per_interval_until_stopped() {
        use std::sync::Arc;
        struct Capture(Arc<Mutex<Vec<u8>>>, mpsc::Sender<()>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                let _ = self.1.send(());
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let stats = ServerStats::new(1);
        let mut c = Counters::default();
        c.tcp.accepted = 4;
        stats.worker(0).publish(&c);
        let (stop, stopped) = mpsc::channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let captured = Arc::clone(&out);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&captured), stop.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            report(&stats, &stopped, Duration::from_millis(10));
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.matches("stats open=0 accepted=4 ").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn snapshot_sums_workers_and_transports() {
        let stats = ServerStats::new(2);
        let mut c = Counters::default();
        c.tcp.accepted = 3;
        c.unix.accepted = 1;
        c.tls.accepted = 5;
        c.tls_handshakes.failed.timeout = 1;
        c.udp.echoed(10);
        stats.worker(0).publish(&c);
        stats.worker(1).publish(&c);
        let s = stats.snapshot();
        assert_eq!((s.tcp.accepted, s.unix.accepted), (6, 2));
        assert_eq!(s.streams().accepted, 18);
        assert_eq!((s.tls.accepted, s.tls_handshakes.failed.timeout), (10, 2));
        assert_eq!(s.udp.echoed_bytes, 20);
    }
}
