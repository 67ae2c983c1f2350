//! The stream probe: a verifying client for one TCP or Unix connection.

use heapless::Deque;

use super::wire::{Cursor, Wire};
use super::{
    ConfigError, Pattern, ProbeError, SizeRange, check_sizes, mode_size_bounds, scheduled,
};
use crate::mode::Mode;
use crate::payload::Payload;
use crate::session::CommitError;
use crate::time::{Duration, Instant, earliest};

/// How a [`StreamProbe`] talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ProbeConfig {
    /// The server's mode: `raw` sends random binary (NUL included); `lines`
    /// sends random bytes without `\n`, then `\n`; `frames` sends a 2-byte
    /// big-endian length, then random bytes.
    pub mode: Mode,
    /// Ping-pong or streaming.
    pub pattern: Pattern,
    /// Seed of the payload and of the message sizes.
    pub seed: u64,
    /// Message size on the wire, terminator or header included.
    pub size: SizeRange,
    /// Messages to send; `None` sends until [`StreamProbe::finish`].
    pub count: Option<u64>,
    /// Outstanding bytes with no progress for this long fail the probe.
    pub response_timeout: Option<Duration>,
    /// Open-loop pacing: message `i` starts no earlier than
    /// `start + i * interval`, and its round trip is measured from that
    /// scheduled instant (so a slow server cannot hide its queueing delay).
    /// In nanoseconds ([`Pace`](crate::Pace)): a `Duration` converts with `.into()`.
    pub interval: Option<crate::Pace>,
}

impl Default for ProbeConfig {
    /// Raw ping-pong of 64-byte messages, seed 1, 1000 messages, 5 s timeout.
    fn default() -> Self {
        ProbeConfig {
            mode: Mode::Raw,
            pattern: Pattern::PingPong,
            seed: 1,
            size: SizeRange::fixed(64),
            count: Some(1000),
            response_timeout: Some(Duration::from_secs(5)),
            interval: None,
        }
    }
}

/// Counters of a stream probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ProbeStats {
    /// Bytes written to the server.
    pub bytes_sent: u64,
    /// Bytes returned and verified.
    pub bytes_verified: u64,
    /// Messages written completely.
    pub messages_sent: u64,
    /// Messages returned completely and verified.
    pub messages_verified: u64,
}

/// What [`StreamProbe::handle_received`] did with some input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Received {
    /// Bytes of the input verified; call again with the rest.
    pub consumed: usize,
    /// The round trip of the message these bytes completed, if any,
    /// measured from the instant the message was due: its scheduled start
    /// under pacing ([`ProbeConfig::interval`]), else its actual start. A
    /// message sent late because the server was slow to answer the previous
    /// one counts that wait (no coordinated omission).
    pub round_trip: Option<Duration>,
    /// The same round trip measured from the message's actual first write
    /// (the "uncorrected" latency; equal to `round_trip` without pacing).
    pub since_sent: Option<Duration>,
}

/// A verifying client for one stream connection; `M` bounds the messages in
/// flight whose start time is kept (the streaming pattern stops sending
/// when `M` messages are outstanding). `M` is at least 1: `StreamProbe<0>`
/// does not compile.
///
/// Call order, like a [`Session`](crate::Session): write what
/// [`fill_transmit`](Self::fill_transmit) offers and
/// [`commit_sent`](Self::commit_sent) what the socket took; pass everything
/// read to [`handle_received`](Self::handle_received) (looping on
/// `consumed`); at end of stream call [`handle_eof`](Self::handle_eof); when
/// [`is_done`](Self::is_done), shut down the write side and expect EOF.
#[derive(Clone, Debug)]
pub struct StreamProbe<const M: usize = 64> {
    config: ProbeConfig,
    wire: Wire,
    tx: Cursor,
    rx: Cursor,
    /// Due and actual start instants of the messages begun and not yet
    /// verified, oldest first.
    started: Deque<(Instant, Instant), M>,
    /// Messages that may be begun (`count`, lowered by `finish`).
    limit: u64,
    start: Instant,
    now: Instant,
    last_progress: Instant,
    /// Bytes the last `fill_transmit` offered.
    offered: usize,
    error: Option<ProbeError>,
    stats: ProbeStats,
}

impl<const M: usize> StreamProbe<M> {
    /// A probe that starts at `now`.
    pub fn new(config: ProbeConfig, now: Instant) -> Result<Self, ConfigError> {
        Self::with_schedule(config, now, now)
    }

    /// A probe that starts at `now` whose paced schedule starts at `start`:
    /// message *k* is due at `start + k × interval`. Earlier than `now` for
    /// a connection that continues a schedule (churn); later to spread the
    /// connections of a run over the interval instead of starting them all
    /// at once. Without pacing, `start` is unused.
    pub fn with_schedule(
        config: ProbeConfig,
        now: Instant,
        start: Instant,
    ) -> Result<Self, ConfigError> {
        check_sizes(config.size, mode_size_bounds(config.mode))?;
        if let Pattern::Stream { window: 0 } = config.pattern {
            return Err(ConfigError::BadWindow {
                window: 0,
                max: usize::MAX,
            });
        }
        let wire = Wire {
            mode: config.mode,
            payload: Payload::new(config.seed),
            size: config.size,
            cut: None,
        };
        Ok(StreamProbe {
            config,
            wire,
            tx: wire.start(),
            rx: wire.start(),
            started: Deque::new(),
            limit: config.count.unwrap_or(u64::MAX),
            start,
            now,
            last_progress: now,
            offered: 0,
            error: None,
            stats: ProbeStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &ProbeStats {
        &self.stats
    }

    /// The failure, if the probe failed.
    pub fn error(&self) -> Option<ProbeError> {
        self.error
    }

    /// Bytes sent and not yet returned.
    pub fn outstanding(&self) -> u64 {
        self.tx.total - self.rx.total
    }

    /// Writes into `out` the last bytes verified, those sent just before
    /// stream offset [`bytes_verified`](ProbeStats::bytes_verified), and
    /// returns how many: `out.len()`, or fewer at the start of the stream.
    /// For diagnosing a failure (bytes that came back twice repeat some of
    /// these); it costs one step per message it walks back over.
    pub fn verified_tail(&self, out: &mut [u8]) -> usize {
        let n = usize::try_from(self.rx.total).map_or(out.len(), |v| v.min(out.len()));
        let mut c = self.rx;
        let mut back = n;
        while back > 0 {
            if c.off == 0 {
                c.msg -= 1;
                c.len = self.wire.size_of(c.msg);
                c.off = c.len;
            }
            let step = back.min(c.off);
            c.off -= step;
            c.total -= step as u64;
            back -= step;
        }
        self.fill_from(c, &mut out[..n]);
        n
    }

    /// Writes into `out` the bytes sent and not yet verified, those from
    /// stream offset [`bytes_verified`](ProbeStats::bytes_verified) on, and
    /// returns how many: `out.len()`, or [`outstanding`](Self::outstanding)
    /// if fewer. For diagnosing a failure (bytes a server lost leave a
    /// later part of these where the lost ones should be).
    pub fn outstanding_bytes(&self, out: &mut [u8]) -> usize {
        let n = usize::try_from(self.outstanding()).map_or(out.len(), |v| v.min(out.len()));
        self.fill_from(self.rx, &mut out[..n]);
        n
    }

    /// Fills `out` with the stream from cursor `c` on.
    fn fill_from(&self, mut c: Cursor, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            let k = self.wire.fill_message(&c, &mut out[filled..]);
            self.wire.advance(&mut c, k, |_| {});
            filled += k;
        }
    }

    /// Writes into `out` the next bytes that may be sent now and returns how
    /// many (0: nothing may be sent now). Does not advance: after writing,
    /// call [`commit_sent`](Self::commit_sent) with what the socket took.
    pub fn fill_transmit(&mut self, now: Instant, out: &mut [u8]) -> usize {
        self.advance(now);
        let allowed = self.allowed(out.len());
        self.fill_from(self.tx, &mut out[..allowed]);
        self.offered = allowed;
        allowed
    }

    /// Records that the first `n` bytes of the last
    /// [`fill_transmit`](Self::fill_transmit) were written.
    pub fn commit_sent(&mut self, now: Instant, n: usize) -> Result<(), CommitError> {
        let now = self.advance(now);
        if n > self.offered {
            return Err(CommitError::TooMany {
                n,
                available: self.offered,
            });
        }
        if n == 0 {
            return Ok(());
        }
        if self.tx.total == self.rx.total {
            // Nothing was outstanding: the response clock starts now.
            self.last_progress = now;
        }
        self.offered -= n;
        let cut = self.cut_message();
        let mut remaining = n;
        while remaining > 0 {
            if self.tx.off == 0 {
                let at = match self.config.interval {
                    Some(interval) => scheduled(self.start, interval, self.tx.msg),
                    None => now,
                };
                // `allowed` never offers a message beyond M in flight.
                let _ = self.started.push_back((at, now));
            }
            let step = remaining.min(self.tx.len - self.tx.off);
            let stats = &mut self.stats;
            self.wire.advance(&mut self.tx, step, |m| {
                stats.messages_sent += u64::from(Some(m) != cut);
            });
            remaining -= step;
        }
        self.stats.bytes_sent += n as u64;
        Ok(())
    }

    /// Verifies bytes read from the server.
    ///
    /// Stops after the first message these bytes complete: returns how many
    /// bytes were consumed and that message's round trip; call again with
    /// the rest. Fails (sticky) on the first wrong byte or on bytes that
    /// were never sent.
    pub fn handle_received(&mut self, now: Instant, data: &[u8]) -> Result<Received, ProbeError> {
        let now = self.advance(now);
        if let Some(e) = self.error {
            return Err(e);
        }
        if data.is_empty() {
            return Ok(Received {
                consumed: 0,
                round_trip: None,
                since_sent: None,
            });
        }
        let outstanding = self.outstanding();
        if outstanding == 0 {
            return Err(self.fail(ProbeError::UnexpectedData {
                offset: self.rx.total,
            }));
        }
        let take = data
            .len()
            .min(self.rx.len - self.rx.off)
            .min(usize::try_from(outstanding).unwrap_or(usize::MAX));
        let mut expected = [0u8; 256];
        let mut checked = 0;
        let mut cursor = self.rx;
        while checked < take {
            let chunk = (take - checked).min(expected.len());
            let n = self.wire.fill_message(&cursor, &mut expected[..chunk]);
            let got = &data[checked..checked + n];
            if got != &expected[..n] {
                let i = got
                    .iter()
                    .zip(&expected[..n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(self.fail(ProbeError::Mismatch {
                    offset: cursor.total + i as u64,
                    expected: expected[i],
                    actual: got[i],
                }));
            }
            cursor.off += n;
            cursor.total += n as u64;
            checked += n;
        }
        let mut completed = None;
        self.wire
            .advance(&mut self.rx, take, |m| completed = Some(m));
        self.last_progress = now;
        self.stats.bytes_verified += take as u64;
        let started = completed.map(|m| (self.started.pop_front(), m));
        let (round_trip, since_sent) = match started {
            // A message cut short is no message: no count, no round trip.
            Some((_, m)) if Some(m) == self.cut_message() => (None, None),
            Some((Some((due, sent)), _)) => {
                self.stats.messages_verified += 1;
                (
                    Some(now.saturating_since(due)),
                    Some(now.saturating_since(sent)),
                )
            }
            Some((None, _)) => {
                self.stats.messages_verified += 1;
                (None, None)
            }
            None => (None, None),
        };
        Ok(Received {
            consumed: take,
            round_trip,
            since_sent,
        })
    }

    /// The server closed its side (a read returned 0). Fine if the probe is
    /// done; otherwise a [`ProbeError::PrematureClose`].
    pub fn handle_eof(&mut self, now: Instant) -> Result<(), ProbeError> {
        self.advance(now);
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.is_done() {
            Ok(())
        } else {
            Err(self.fail(ProbeError::PrematureClose {
                verified: self.rx.total,
                outstanding: self.outstanding(),
            }))
        }
    }

    /// Stops beginning new messages; the one being written is finished and
    /// everything in flight is still verified.
    pub fn finish(&mut self) {
        let last = if self.tx.off == 0 {
            self.tx.msg
        } else {
            self.tx.msg + 1
        };
        self.limit = self.limit.min(last);
    }

    /// Stops sending at once (an interrupt): [`finish`](Self::finish), and
    /// the message being written ends early: in raw mode at what was sent,
    /// in lines mode with its `\n` as the next byte. A frame is still
    /// completed (its header announced its length, at most 65,537 bytes). What was sent is still
    /// verified; the message cut short counts in the bytes, not in
    /// [`ProbeStats`]' messages, and has no round trip. Returns its new
    /// length (0: no message was cut).
    pub fn finish_now(&mut self) -> usize {
        self.finish();
        let len = match self.config.mode {
            Mode::Raw => self.tx.off,
            Mode::Lines => self.tx.off + 1,
            Mode::Frames => return 0,
        };
        if self.tx.off == 0 || len >= self.tx.len {
            return 0;
        }
        let msg = self.tx.msg;
        self.wire.cut = Some((msg, len));
        self.offered = 0;
        for c in [&mut self.tx, &mut self.rx] {
            if c.msg == msg {
                c.len = len;
                if c.off == len {
                    // Raw: the cursor is at the new end, so past the message.
                    c.msg += 1;
                    c.off = 0;
                    c.len = self.wire.size_of(c.msg);
                }
            }
        }
        if self.rx.msg > msg {
            // Everything sent was verified already: the cut message is done.
            self.started.pop_front();
        }
        len
    }

    /// Every message was sent and verified, and nothing failed.
    pub fn is_done(&self) -> bool {
        self.error.is_none()
            && self.tx.off == 0
            && self.tx.msg >= self.limit
            && self.outstanding() == 0
    }

    /// The scheduled start of the next message not yet begun under pacing
    /// ([`ProbeConfig::interval`]); `None` without pacing or when no further
    /// message will begin (the count is reached, or after
    /// [`finish`](Self::finish)).
    ///
    /// An adapter that compares it with the instant a message actually
    /// begins (the [`commit_sent`](Self::commit_sent) that writes its first
    /// byte) measures its own send lateness; messages begun in one commit
    /// are due one interval apart.
    pub fn next_due(&self) -> Option<Instant> {
        let interval = self.config.interval?;
        let next = if self.tx.off == 0 {
            self.tx.msg
        } else {
            self.tx.msg + 1
        };
        (next < self.limit).then(|| scheduled(self.start, interval, next))
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout)
    /// or pacing has work: the response deadline while bytes are
    /// outstanding, or the next paced message's start.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        let response = match self.config.response_timeout {
            Some(t) if self.outstanding() > 0 => Some(self.last_progress + t),
            _ => None,
        };
        let pacing = match self.config.interval {
            Some(interval) if self.tx.off == 0 && self.tx.msg < self.limit => {
                Some(scheduled(self.start, interval, self.tx.msg)).filter(|&t| t > self.now)
            }
            _ => None,
        };
        earliest(response, pacing)
    }

    /// Fails the probe with [`ProbeError::Timeout`] if the response deadline
    /// has passed; calling early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProbeError> {
        let now = self.advance(now);
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(t) = self.config.response_timeout {
            let outstanding = self.outstanding();
            if outstanding > 0 && now >= self.last_progress + t {
                return Err(self.fail(ProbeError::Timeout { outstanding }));
            }
        }
        Ok(())
    }

    // --- internals ---

    fn advance(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    /// The index of the message [`finish_now`](Self::finish_now) cut short.
    fn cut_message(&self) -> Option<u64> {
        self.wire.cut.map(|(m, _)| m)
    }

    fn fail(&mut self, e: ProbeError) -> ProbeError {
        self.error = Some(e);
        e
    }

    /// How many bytes from the tx cursor may be sent now, at most `cap`.
    ///
    /// The pattern gates only the *start* of a message; a message once
    /// begun is always offered to its end. (A window smaller than a message
    /// must not stall a `lines` or `frames` server waiting for the rest of a
    /// unit while the probe waits for its echo.)
    fn allowed(&self, cap: usize) -> usize {
        if self.error.is_some() {
            return 0;
        }
        let outstanding = usize::try_from(self.outstanding()).unwrap_or(usize::MAX);
        let mut allowed = 0;
        let mut msg = self.tx.msg;
        let mut off = self.tx.off;
        let mut len = self.tx.len;
        let mut in_flight_msgs = self.started.len();
        while allowed < cap {
            if off == 0 {
                let in_flight = outstanding.saturating_add(allowed);
                let may_start = match self.config.pattern {
                    Pattern::PingPong => in_flight == 0,
                    Pattern::Stream { window } => in_flight < window,
                };
                let paced_out = match self.config.interval {
                    Some(interval) => scheduled(self.start, interval, msg) > self.now,
                    None => false,
                };
                if !may_start || msg >= self.limit || in_flight_msgs >= M || paced_out {
                    break;
                }
                in_flight_msgs += 1;
            }
            let step = (cap - allowed).min(len - off);
            allowed += step;
            off += step;
            if off == len {
                msg += 1;
                off = 0;
                len = self.wire.size_of(msg);
            }
        }
        allowed
    }
}
