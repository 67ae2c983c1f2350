//! Per-thread, per-target accumulation of figures and errors, merged into a
//! [`Report`](super::Report) at the end.

use hdrhistogram::Histogram;
use ricochet_core::probe::{DatagramProbeStats, ProbeStats};
use ricochet_core::{Duration, Instant, Pace};

use super::report::{ConnError, DatagramCounts, ErrorCounts, Latency, MAX_ERROR_DETAILS};

/// Latencies are recorded in microseconds up to one hour (3 significant digits).
pub(super) const HIST_MAX_US: u64 = 3_600_000_000;
/// At most this many histogram records for the messages a run's end held
/// back (see [`Tally::unsent`]).
pub(super) const UNSENT_GROUPS: u64 = 10_000;
/// Significant digits of every latency histogram.
pub(super) const HIST_SIGFIG: u8 = 3;

/// A latency histogram in microseconds, 1 us to one hour, 3 significant digits.
pub(super) fn histogram() -> std::io::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG).map_err(std::io::Error::other)
}

/// Percentiles of `h` (all zero when it is empty).
pub(super) fn latency_of(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

/// Adds `from` into `into` (same bounds: cannot fail).
pub(super) fn add_hist(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    let _ = into.add(from);
}

/// The measured span: round trips, bytes and completed connections count
/// only inside it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    /// After the warmup.
    pub(super) start: Instant,
    /// The end of the duration; open-ended with a count.
    pub(super) end: Option<Instant>,
    /// A paced run (`--rate`): a round trip counts only if its message was
    /// also due inside (see [`counts_round_trip`](Self::counts_round_trip)).
    pub(super) paced: bool,
}

impl Window {
    pub(super) fn contains(&self, now: Instant) -> bool {
        now >= self.start && self.end.is_none_or(|end| now <= end)
    }

    /// Whether a message that completed at `now`, `rtt` after it was due,
    /// has its latency recorded: if it was due inside (see
    /// [`Tally::round_trip`]).
    pub(super) fn was_due_inside(&self, now: Instant, rtt: Duration) -> bool {
        self.contains(now - rtt)
    }

    /// Whether a message that completed at `now`, `rtt` after it was due,
    /// is a round trip of the window: it completed inside, and in a paced
    /// run it was not due before the start either. A closed loop counts
    /// what completes (its messages are due when sent); a paced run that
    /// fell behind in the warmup would otherwise count that backlog too,
    /// caught up in the window, and report more than the rate asked for.
    pub(super) fn counts_round_trip(&self, now: Instant, rtt: Duration) -> bool {
        self.contains(now) && (!self.paced || now - rtt >= self.start)
    }
}

/// What one worker thread measured for one target.
#[derive(Clone)]
pub(super) struct Tally {
    window: Window,
    /// Round trips from each message's due instant (its scheduled send
    /// under pacing): the corrected latency.
    pub(super) rtt: Histogram<u64>,
    /// Round trips from each message's actual send: the uncorrected latency.
    pub(super) rtt_sent: Histogram<u64>,
    /// Paced runs: how late the probe's own sends left their schedule.
    pub(super) late: Histogram<u64>,
    /// Streams: connect latency (connect call to a connection ready for data).
    pub(super) connect: Histogram<u64>,
    /// Streams: connect call to the first echoed byte.
    pub(super) first_byte: Histogram<u64>,
    /// Verified bytes read inside the window.
    pub(super) window_bytes: u64,
    /// Round trips completed inside the window.
    window_round_trips: u64,
    /// Last instant at which anything was verified inside the window.
    pub(super) last_verified: Option<Instant>,
    pub(super) messages_sent: u64,
    pub(super) messages_verified: u64,
    pub(super) bytes_sent: u64,
    pub(super) bytes_verified: u64,
    /// Streams: messages an interrupt cut short (`StreamProbe::finish_now`):
    /// their bytes count, the messages do not.
    pub(super) messages_cut: u64,
    /// Connection slots that completed everything (UDP: clean sockets).
    pub(super) connections_ok: usize,
    /// Connection slots never started: the run stopped first.
    pub(super) not_started: usize,
    /// Connections established (every churned connection counts).
    pub(super) connects: u64,
    /// Connections closed cleanly inside the window.
    pub(super) completed: u64,
    pub(super) errors: ErrorCounts,
    pub(super) details: Vec<ConnError>,
    pub(super) datagrams: DatagramCounts,
    /// UDP datagrams the socket refused to send (buffer full), counted lost by the probe.
    pub(super) send_blocked: u64,
    /// Of the foreign UDP datagrams: those shorter than the header every
    /// probe datagram starts with (perhaps its echoes, cut short), and the
    /// length of the shortest.
    pub(super) foreign_short: u64,
    pub(super) foreign_shortest: Option<usize>,
    /// Streams: connections the peer reset before any of their bytes verified.
    pub(super) reset_unverified: u64,
    /// UDP: sockets refused (ICMP port unreachable) before any of their
    /// datagrams came back.
    pub(super) refused_unverified: u64,
    /// Streams: connections the peer closed cleanly (FIN) before any of
    /// their bytes verified.
    pub(super) closed_unverified: u64,
    /// TLS: handshake latency (TCP established to handshake done) of the
    /// handshakes completed inside the window.
    pub(super) handshake_time: Histogram<u64>,
    /// TLS handshakes completed (all, warmup included).
    pub(super) handshakes: u64,
    /// Of those, resumed from an earlier session.
    pub(super) resumed: u64,
    /// Streams: round trips of the window whose echo came in pieces at
    /// least [`SPLIT_STALL`] apart (the first piece, then the rest): what
    /// a server's Nagle algorithm meeting the probe's delayed ACK does.
    pub(super) split_stalls: u64,
}

/// The least time between the first piece of an echo and its last that
/// counts as a stalled split echo: well under the 40 ms of Linux's delayed
/// ACK, far above a loopback round trip.
pub(super) const SPLIT_STALL: Duration = Duration::from_millis(20);

impl Tally {
    /// A tally that counts rates inside `window`.
    pub(super) fn new(window: Window) -> std::io::Result<Self> {
        Ok(Tally {
            window,
            rtt: histogram()?,
            rtt_sent: histogram()?,
            late: histogram()?,
            connect: histogram()?,
            first_byte: histogram()?,
            handshake_time: histogram()?,
            handshakes: 0,
            resumed: 0,
            split_stalls: 0,
            window_bytes: 0,
            window_round_trips: 0,
            last_verified: None,
            messages_sent: 0,
            messages_verified: 0,
            bytes_sent: 0,
            bytes_verified: 0,
            messages_cut: 0,
            connections_ok: 0,
            not_started: 0,
            connects: 0,
            completed: 0,
            errors: ErrorCounts::default(),
            details: Vec::new(),
            datagrams: DatagramCounts::default(),
            send_blocked: 0,
            foreign_short: 0,
            foreign_shortest: None,
            reset_unverified: 0,
            refused_unverified: 0,
            closed_unverified: 0,
        })
    }

    pub(super) fn in_window(&self, now: Instant) -> bool {
        self.window.contains(now)
    }

    /// `n` bytes were verified at `now`.
    pub(super) fn verified(&mut self, now: Instant, n: usize) {
        if self.in_window(now) {
            self.window_bytes += n as u64;
            self.last_verified = Some(now);
        }
    }

    /// A message completed its round trip at `now`: `rtt` from its due
    /// instant, `since_sent` from its actual send. It counts as a round
    /// trip of the window if it completed inside (as the intervals count
    /// it). Its latency is recorded if it was due inside (`now - rtt`): one
    /// due before the end whose echo comes after it (a server stalled at
    /// the end) still shows its whole wait; one due in the warmup does not.
    pub(super) fn round_trip(&mut self, now: Instant, rtt: Duration, since_sent: Duration) {
        if self.window.counts_round_trip(now, rtt) {
            self.window_round_trips += 1;
        }
        if self.window.was_due_inside(now, rtt) {
            self.rtt.saturating_record(rtt.as_micros());
            self.rtt_sent.saturating_record(since_sent.as_micros());
        }
    }

    /// Pacing: `n` messages due from `first_due` on, `pace` apart, that the
    /// end of the duration kept from starting (the connection's window was
    /// held, by a server that stopped answering): each waited at least
    /// until `now`, when its connection could have sent it. Those due in
    /// the window join the corrected latency (never sent, they have no
    /// uncorrected one): a server that stalls at the end is no better off
    /// than one that stalls in the middle.
    ///
    /// The work is bounded whatever `n` (a rate of 10^9/s held for a
    /// second is 10^9 messages): they are recorded in at most
    /// [`UNSENT_GROUPS`] runs of consecutive messages, each at the wait of
    /// its middle message (the waits fall evenly, so a run's spread is its
    /// length in spacings).
    pub(super) fn unsent(&mut self, first_due: Instant, pace: Pace, n: u64, now: Instant) {
        record_unsent(&mut self.rtt, &self.window, first_due, pace, n, now);
    }

    /// A paced message left `late` after it was due (and could be sent), at `now`.
    pub(super) fn lateness(&mut self, now: Instant, late: Duration) {
        if self.in_window(now) {
            self.late.saturating_record(late.as_micros());
        }
    }

    /// A connection became ready for data `latency` after its connect call.
    pub(super) fn connected(&mut self, latency: Duration) {
        self.connects += 1;
        self.connect.saturating_record(latency.as_micros());
    }

    /// The first echoed byte of a connection arrived `latency` after its connect call.
    pub(super) fn first_byte(&mut self, latency: Duration) {
        self.first_byte.saturating_record(latency.as_micros());
    }

    /// A connection closed cleanly at `now` (one connection of a churning slot).
    pub(super) fn completed(&mut self, now: Instant) {
        if self.in_window(now) {
            self.completed += 1;
        }
    }

    /// A TLS handshake completed at `now`, having taken `took` (recorded
    /// once the server accepted it, which over TLS 1.3 may be later).
    pub(super) fn handshake(&mut self, now: Instant, took: Duration, resumed: bool) {
        self.handshakes += 1;
        self.resumed += u64::from(resumed);
        if self.in_window(now) {
            self.handshake_time.saturating_record(took.as_micros());
        }
    }

    /// A message's echo completed at `now`, `gap` after its first piece
    /// arrived: a stalled split if `gap` is at least [`SPLIT_STALL`].
    pub(super) fn split_echo(&mut self, now: Instant, gap: Duration) {
        if gap >= SPLIT_STALL && self.in_window(now) {
            self.split_stalls += 1;
        }
    }

    /// Records a failed connection (details kept for the first few only).
    pub(super) fn error(&mut self, e: ConnError) {
        self.errors.count(e.kind);
        if self.details.len() < MAX_ERROR_DETAILS {
            self.details.push(e);
        }
    }

    /// Adds a finished stream connection's counters.
    pub(super) fn add_stream(&mut self, s: &ProbeStats) {
        self.messages_sent += s.messages_sent;
        self.messages_verified += s.messages_verified;
        self.bytes_sent += s.bytes_sent;
        self.bytes_verified += s.bytes_verified;
    }

    /// Adds a finished UDP socket's counters.
    pub(super) fn add_datagram(&mut self, s: &DatagramProbeStats, bytes_sent: u64) {
        self.messages_sent += s.sent;
        self.messages_verified += s.verified;
        self.bytes_sent += bytes_sent;
        self.bytes_verified += s.bytes_verified;
        let d = &mut self.datagrams;
        d.sent += s.sent;
        d.verified += s.verified;
        d.lost += s.lost;
        d.corrupt += s.corrupt;
        d.duplicate += s.duplicate;
        d.late += s.late;
        d.foreign += s.foreign;
        d.reordered += s.reordered;
    }

    /// Folds another tally (another thread's, or another target's) into this one.
    pub(super) fn merge(&mut self, o: &Tally) {
        add_hist(&mut self.rtt, &o.rtt);
        add_hist(&mut self.rtt_sent, &o.rtt_sent);
        add_hist(&mut self.late, &o.late);
        add_hist(&mut self.connect, &o.connect);
        add_hist(&mut self.first_byte, &o.first_byte);
        add_hist(&mut self.handshake_time, &o.handshake_time);
        self.handshakes += o.handshakes;
        self.resumed += o.resumed;
        self.split_stalls += o.split_stalls;
        self.window_bytes += o.window_bytes;
        self.window_round_trips += o.window_round_trips;
        self.last_verified = match (self.last_verified, o.last_verified) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.messages_sent += o.messages_sent;
        self.messages_verified += o.messages_verified;
        self.bytes_sent += o.bytes_sent;
        self.bytes_verified += o.bytes_verified;
        self.messages_cut += o.messages_cut;
        self.connections_ok += o.connections_ok;
        self.not_started += o.not_started;
        self.connects += o.connects;
        self.completed += o.completed;
        self.errors.add(&o.errors);
        for d in &o.details {
            if self.details.len() < MAX_ERROR_DETAILS {
                self.details.push(d.clone());
            }
        }
        let (a, b) = (&mut self.datagrams, &o.datagrams);
        a.sent += b.sent;
        a.verified += b.verified;
        a.lost += b.lost;
        a.lost_on_failure += b.lost_on_failure;
        a.corrupt += b.corrupt;
        a.duplicate += b.duplicate;
        a.reordered += b.reordered;
        a.late += b.late;
        a.foreign += b.foreign;
        self.send_blocked += o.send_blocked;
        self.foreign_short += o.foreign_short;
        self.foreign_shortest = match (self.foreign_shortest, o.foreign_shortest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.reset_unverified += o.reset_unverified;
        self.refused_unverified += o.refused_unverified;
        self.closed_unverified += o.closed_unverified;
    }

    /// Round trips completed inside the window.
    pub(super) fn round_trips(&self) -> u64 {
        self.window_round_trips
    }
}

/// Records in `h` the waits until `now` of the `n` messages due from
/// `first_due`, `pace` apart, that are due inside `window` (see
/// [`Tally::unsent`]; the intervals record them the same way).
pub(super) fn record_unsent(
    h: &mut Histogram<u64>,
    window: &Window,
    first_due: Instant,
    pace: Pace,
    n: u64,
    now: Instant,
) {
    for (due, count) in unsent_groups(first_due, pace, n) {
        if window.contains(due) {
            h.saturating_record_n(now.saturating_since(due).as_micros(), count);
        }
    }
}

/// `n` messages due from `first_due`, `pace` apart, as at most
/// [`UNSENT_GROUPS`] runs of consecutive ones: (the due instant of a run's
/// middle message, the run's length).
fn unsent_groups(first_due: Instant, pace: Pace, n: u64) -> impl Iterator<Item = (Instant, u64)> {
    let per_group = n.div_ceil(UNSENT_GROUPS).max(1);
    (0..n.div_ceil(per_group)).map(move |g| {
        let start = g * per_group;
        let count = per_group.min(n - start);
        (pace.at(first_due, start + count / 2), count)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start_ms: u64, end_ms: Option<u64>) -> Window {
        Window {
            start: Instant::from_millis(start_ms),
            end: end_ms.map(Instant::from_millis),
            paced: false,
        }
    }

    #[test]
    fn tally_counts_only_inside_the_window() {
        let mut t = Tally::new(window(100, Some(200))).unwrap();
        let d = Duration::from_micros(50);
        for ms in [50, 100, 150, 200, 250] {
            let now = Instant::from_millis(ms);
            t.verified(now, 10);
            t.round_trip(now, d, d);
            t.completed(now);
        }
        assert_eq!(t.round_trips(), 3);
        // Latency by the due instant, 50 us earlier: 149.95 and 199.95 ms
        // are inside, 99.95 (the warmup) and 249.95 are not.
        assert_eq!((t.rtt.len(), t.rtt_sent.len()), (2, 2));
        assert_eq!(t.window_bytes, 30);
        assert_eq!(t.completed, 3);
        assert_eq!(t.last_verified, Some(Instant::from_millis(200)));
    }

    /// A message due inside the window whose echo comes after its end (a
    /// server stalled at the end of the run) is a round trip of the
    /// window, with its whole wait; one due in the warmup is not.
    #[test]
    fn tally_times_round_trips_by_when_they_were_due() {
        let mut t = Tally::new(window(100, Some(200))).unwrap();
        let stalled = Duration::from_millis(1_900);
        t.round_trip(Instant::from_millis(2_000), stalled, stalled);
        let warmup = Duration::from_millis(100);
        t.round_trip(Instant::from_millis(150), warmup, warmup);
        assert_eq!(t.rtt.len(), 1, "the stalled one, not the warmup's");
        assert_eq!(t.round_trips(), 1, "completed inside: the warmup's");
        let max = latency_of(&t.rtt).max;
        assert!((1_900_000..1_901_000).contains(&max), "{max}");
    }

    /// A paced run that fell behind in the warmup catches the backlog up in
    /// the window: those round trips, due before the start, are not the
    /// window's (they lifted the rate reported above the one asked for); a
    /// closed loop's message in flight at the start still counts.
    #[test]
    fn paced_tally_leaves_out_round_trips_due_in_the_warmup() {
        let rtt = Duration::from_millis(80);
        let now = Instant::from_millis(150);
        let mut paced = Tally::new(Window {
            paced: true,
            ..window(100, Some(200))
        })
        .unwrap();
        paced.round_trip(now, rtt, Duration::from_micros(50));
        assert_eq!(paced.round_trips(), 0, "due at 70 ms, in the warmup");
        paced.round_trip(now, Duration::from_millis(50), Duration::from_micros(50));
        assert_eq!(paced.round_trips(), 1, "due at 100 ms, the start");
        let mut closed = Tally::new(window(100, Some(200))).unwrap();
        closed.round_trip(now, rtt, rtt);
        assert_eq!(closed.round_trips(), 1, "sent at 70 ms, completed inside");
    }

    /// Messages the end held back: each due one in the window waits until
    /// `now`; exact when few.
    #[test]
    fn tally_unsent_records_each_wait_until_now() {
        let mut t = Tally::new(window(0, Some(1_000))).unwrap();
        let pace = Pace::from(Duration::from_millis(100));
        // Due at 900, 1000 (in the window) and 1100 ms (after it).
        t.unsent(
            Instant::from_millis(900),
            pace,
            3,
            Instant::from_millis(1_200),
        );
        let l = latency_of(&t.rtt);
        assert_eq!(l.count, 2);
        assert!((300_000..300_400).contains(&l.max), "{l:?}");
        assert!((199_900..200_100).contains(&l.p50), "{l:?}");
    }

    /// A million messages held back cost at most `UNSENT_GROUPS` records
    /// (a rate of 10^9/s held for a second once took seconds), and still
    /// count as many waits, spread from the first's to the last's.
    #[test]
    fn tally_unsent_of_a_huge_backlog_is_bounded_work() {
        let mut t = Tally::new(window(0, Some(1_000))).unwrap();
        let (first, now) = (Instant::from_millis(500), Instant::from_millis(1_500));
        let pace = Pace::from_nanos(1_000);
        let n = pace.due_by(first, now) + 1;
        let groups: Vec<_> = unsent_groups(first, pace, n).collect();
        assert!(groups.len() <= 10_000, "{} records", groups.len());
        assert_eq!(groups.iter().map(|g| g.1).sum::<u64>(), n);
        t.unsent(first, pace, n, now);
        // Due at or before 1000 ms: 500,001 of them (give or take a group).
        let group = n.div_ceil(UNSENT_GROUPS);
        assert!(t.rtt.len().abs_diff(500_001) <= group, "{}", t.rtt.len());
        let l = latency_of(&t.rtt);
        assert!((999_000..1_001_000).contains(&l.max), "{l:?}");
        assert!((499_000..501_000).contains(&t.rtt.min()), "{l:?}");
    }

    /// A backlog that is not a whole number of groups ends with a shorter
    /// group: the groups still count each message once.
    #[test]
    fn tally_unsent_of_a_backlog_with_a_partial_last_group_counts_each_once() {
        let (first, pace) = (Instant::from_millis(0), Pace::from_nanos(1_000));
        // Groups of 3 (20,002 / 10,000, rounded up): 6,667 of them, then 1.
        let n = 2 * UNSENT_GROUPS + 2;
        let groups: Vec<_> = unsent_groups(first, pace, n).collect();
        assert_eq!(groups.len(), 6_668);
        assert_eq!(groups.last().map(|g| g.1), Some(1), "the one left over");
        assert_eq!(groups.iter().map(|g| g.1).sum::<u64>(), n);
    }

    #[test]
    fn tally_merge_adds_histograms_and_counters() {
        let mut a = Tally::new(window(0, None)).unwrap();
        let mut b = Tally::new(window(0, None)).unwrap();
        a.connected(Duration::from_micros(10));
        b.connected(Duration::from_micros(30));
        b.round_trip(
            Instant::from_millis(1),
            Duration::from_micros(80),
            Duration::from_micros(70),
        );
        a.merge(&b);
        assert_eq!(a.connects, 2);
        assert_eq!(a.connect.len(), 2);
        assert_eq!(latency_of(&a.rtt).max, 80);
        assert_eq!(latency_of(&a.rtt_sent).max, 70);
    }

    fn conn_error(connection: usize) -> ConnError {
        ConnError {
            connection: Some(connection),
            kind: super::super::report::ErrorKind::Timeout,
            offset: None,
            expected: None,
            actual: None,
            message: String::new(),
        }
    }

    /// A tally whose every counter is `k * 100` plus its own number (so
    /// no two are equal, and sums differ from products), with histograms
    /// of one value each and `k` ms as its last verified instant.
    fn filled(k: u64) -> Tally {
        let mut t = Tally::new(window(0, None)).unwrap();
        let n = |i: u64| k * 100 + i;
        let us = Duration::from_micros(k * 10);
        t.round_trip(Instant::from_millis(k), us, us);
        t.lateness(Instant::from_millis(k), us);
        t.connected(us);
        t.first_byte(us);
        t.handshake(Instant::from_millis(k), us, true);
        (t.handshakes, t.resumed, t.split_stalls) = (n(1), n(2), n(3));
        (t.window_bytes, t.window_round_trips) = (n(4), n(5));
        t.last_verified = Some(Instant::from_millis(k));
        (t.messages_sent, t.messages_verified) = (n(6), n(7));
        (t.bytes_sent, t.bytes_verified, t.messages_cut) = (n(8), n(9), n(10));
        (t.connections_ok, t.not_started) = (n(11) as usize, n(12) as usize);
        (t.connects, t.completed) = (n(13), n(14));
        t.datagrams = DatagramCounts {
            sent: n(15),
            verified: n(16),
            lost: n(17),
            lost_on_failure: n(18),
            corrupt: n(19),
            duplicate: n(20),
            late: n(21),
            foreign: n(22),
            reordered: n(23),
            ..DatagramCounts::default()
        };
        (t.send_blocked, t.foreign_short) = (n(24), n(25));
        t.foreign_shortest = Some(n(26) as usize);
        t.reset_unverified = n(27);
        t.refused_unverified = n(28);
        t.closed_unverified = n(29);
        t.error(conn_error(k as usize));
        t
    }

    /// Each worker thread tallies its share: the run's figures are their
    /// sums, whatever the counter (the merged report is the only one).
    #[test]
    fn merged_tallies_add_every_counter_and_keep_the_extremes() {
        let mut a = filled(1);
        a.merge(&filled(2));
        let n = |i: u64| 300 + 2 * i;
        assert_eq!(
            (a.handshakes, a.resumed, a.split_stalls),
            (n(1), n(2), n(3))
        );
        assert_eq!((a.window_bytes, a.round_trips()), (n(4), n(5)));
        assert_eq!(a.last_verified, Some(Instant::from_millis(2)), "the later");
        assert_eq!((a.messages_sent, a.messages_verified), (n(6), n(7)));
        assert_eq!(
            (a.bytes_sent, a.bytes_verified, a.messages_cut),
            (n(8), n(9), n(10))
        );
        assert_eq!(
            (a.connections_ok, a.not_started),
            (n(11) as usize, n(12) as usize)
        );
        assert_eq!((a.connects, a.completed), (n(13), n(14)));
        let d = a.datagrams;
        assert_eq!(
            [d.sent, d.verified, d.lost, d.lost_on_failure, d.corrupt],
            [n(15), n(16), n(17), n(18), n(19)]
        );
        assert_eq!(
            [d.duplicate, d.late, d.foreign, d.reordered],
            [n(20), n(21), n(22), n(23)]
        );
        assert_eq!((a.send_blocked, a.foreign_short), (n(24), n(25)));
        assert_eq!(a.foreign_shortest, Some(126), "the shorter");
        assert_eq!(
            (
                a.reset_unverified,
                a.refused_unverified,
                a.closed_unverified
            ),
            (n(27), n(28), n(29))
        );
        assert_eq!((a.errors.timeout, a.details.len()), (2, 2));
        for h in [&a.rtt, &a.rtt_sent, &a.late, &a.connect, &a.first_byte] {
            assert_eq!((h.len(), h.min(), h.max()), (2, 10, 20));
        }
        assert_eq!(a.handshake_time.len(), 2);
    }

    /// Extremes merge with a side that has none: the other's stands.
    #[test]
    fn merged_extremes_of_a_tally_without_any_are_the_others() {
        let mut empty = Tally::new(window(0, None)).unwrap();
        empty.merge(&filled(1));
        assert_eq!(empty.last_verified, Some(Instant::from_millis(1)));
        assert_eq!(empty.foreign_shortest, Some(126));
        let mut full = filled(1);
        full.merge(&Tally::new(window(0, None)).unwrap());
        assert_eq!(full.last_verified, Some(Instant::from_millis(1)));
        assert_eq!(full.foreign_shortest, Some(126));
        // The shorter of the two, whichever side holds it.
        let mut b = filled(2);
        b.merge(&filled(1));
        assert_eq!(b.foreign_shortest, Some(126));
        assert_eq!(b.last_verified, Some(Instant::from_millis(2)));
    }

    /// Every error counts; the details stop at `MAX_ERROR_DETAILS`, the
    /// first ones kept, in a thread's tally as in the merge of two.
    #[test]
    fn errors_past_the_details_cap_count_without_details() {
        let mut a = Tally::new(window(0, None)).unwrap();
        for c in 0..MAX_ERROR_DETAILS - 1 {
            a.error(conn_error(c));
        }
        assert_eq!(a.details.len(), MAX_ERROR_DETAILS - 1);
        let mut b = Tally::new(window(0, None)).unwrap();
        for c in 100..100 + MAX_ERROR_DETAILS + 1 {
            b.error(conn_error(c));
        }
        assert_eq!(b.errors.timeout, MAX_ERROR_DETAILS as u64 + 1);
        assert_eq!(b.details.len(), MAX_ERROR_DETAILS, "capped");
        assert_eq!(b.details[0].connection, Some(100), "the first kept");
        a.merge(&b);
        assert_eq!(a.errors.timeout, 2 * MAX_ERROR_DETAILS as u64);
        assert_eq!(a.details.len(), MAX_ERROR_DETAILS, "filled up to the cap");
        let last = a.details.last().and_then(|d| d.connection);
        assert_eq!(last, Some(100), "then the other's first");
    }

    /// A finished stream connection's counters are what the run reports
    /// as sent and verified: each connection adds its own.
    #[test]
    fn finished_stream_connections_add_their_counters() {
        let mut t = Tally::new(window(0, None)).unwrap();
        for (k, stats) in [(1, 3), (2, 5)] {
            t.add_stream(&ProbeStats {
                messages_sent: stats,
                messages_verified: stats - 1,
                bytes_sent: 100 * k,
                bytes_verified: 100 * k - 10,
            });
        }
        assert_eq!((t.messages_sent, t.messages_verified), (8, 6));
        assert_eq!((t.bytes_sent, t.bytes_verified), (300, 280));
    }

    /// A finished UDP socket's counters join both the run's message and
    /// byte counts and its datagram accounting, field by field.
    #[test]
    fn finished_udp_sockets_add_their_datagram_counts() {
        let mut t = Tally::new(window(0, None)).unwrap();
        for k in [1, 2] {
            let n = |i: u64| k * 100 + i;
            let s = DatagramProbeStats {
                sent: n(1),
                verified: n(2),
                bytes_verified: n(3),
                lost: n(4),
                corrupt: n(5),
                duplicate: n(6),
                late: n(7),
                foreign: n(8),
                reordered: n(9),
            };
            t.add_datagram(&s, n(10));
        }
        let n = |i: u64| 300 + 2 * i;
        assert_eq!((t.messages_sent, t.messages_verified), (n(1), n(2)));
        assert_eq!((t.bytes_sent, t.bytes_verified), (n(10), n(3)));
        let d = t.datagrams;
        assert_eq!(
            [d.sent, d.verified, d.lost, d.corrupt, d.duplicate],
            [n(1), n(2), n(4), n(5), n(6)]
        );
        assert_eq!([d.late, d.foreign, d.reordered], [n(7), n(8), n(9)]);
        assert_eq!(d.lost_on_failure, 0, "the socket's failure sets it");
    }

    /// A split echo is a stall from `SPLIT_STALL` on, and only inside the
    /// window.
    #[test]
    fn split_echo_counts_from_the_stall_threshold_inside_the_window() {
        let mut t = Tally::new(window(100, Some(200))).unwrap();
        let short = Duration::from_micros(SPLIT_STALL.as_micros() - 1);
        t.split_echo(Instant::from_millis(150), short);
        assert_eq!(t.split_stalls, 0, "just under the threshold");
        t.split_echo(Instant::from_millis(150), SPLIT_STALL);
        assert_eq!(t.split_stalls, 1, "at the threshold");
        t.split_echo(Instant::from_millis(250), Duration::from_millis(40));
        assert_eq!(t.split_stalls, 1, "after the window");
        t.split_echo(Instant::from_millis(160), Duration::from_millis(40));
        assert_eq!(t.split_stalls, 2);
    }

    /// Connect and first-byte latencies are recorded whenever they happen
    /// (a connection of the warmup serves the window too).
    #[test]
    fn connect_and_first_byte_latencies_are_recorded_outside_the_window_too() {
        let mut t = Tally::new(window(100, Some(200))).unwrap();
        t.connected(Duration::from_micros(700));
        t.first_byte(Duration::from_micros(900));
        t.first_byte(Duration::from_micros(1_100));
        assert_eq!((t.connects, t.connect.len(), t.connect.max()), (1, 1, 700));
        let l = latency_of(&t.first_byte);
        assert_eq!((l.count, l.max), (2, 1_100));
        assert!((899..=901).contains(&t.first_byte.min()), "{l:?}");
    }

    #[test]
    fn tally_counts_every_handshake_and_times_those_in_the_window() {
        let mut a = Tally::new(window(100, Some(200))).unwrap();
        let took = Duration::from_micros(900);
        a.handshake(Instant::from_millis(50), took, false);
        a.handshake(Instant::from_millis(150), took, true);
        let mut b = Tally::new(window(100, Some(200))).unwrap();
        b.handshake(Instant::from_millis(160), Duration::from_micros(300), true);
        a.merge(&b);
        assert_eq!((a.handshakes, a.resumed), (3, 2));
        let l = latency_of(&a.handshake_time);
        assert_eq!((l.count, l.max), (2, 900));
    }
}
