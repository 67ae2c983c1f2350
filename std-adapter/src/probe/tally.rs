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

    /// Whether the next failed connection's details are kept: worth the
    /// work of explaining it (the first few only, see [`error`](Self::error)).
    pub(super) fn keeps_details(&self) -> bool {
        self.details.len() < MAX_ERROR_DETAILS
    }

    /// Records a failed connection (details kept for the first few only).
    pub(super) fn error(&mut self, e: ConnError) {
        self.errors.count(e.kind);
        if self.keeps_details() {
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
mod tests;
