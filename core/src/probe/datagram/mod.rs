//! The datagram probe: a verifying UDP client.
//!
//! Each datagram is `seq (8 bytes, big-endian) | tag (4 bytes) | payload`,
//! where `tag` is derived from the seed (so stray datagrams are told apart)
//! and the payload and the datagram's length are pure functions of the seed
//! and `seq`. A datagram that comes back is verified whole: a truncated,
//! padded or altered echo is corruption, never a success. A datagram not
//! back within the loss timeout is counted lost; if it turns up later it is
//! counted late, not verified.
//!
//! The ring tracks the last `M` datagrams sent. A lost one must not hold it
//! (nor the caller's window) for the whole loss timeout: at a few percent
//! loss that capped a socket at `M` datagrams per timeout. So an unanswered
//! datagram stops counting against a window after
//! [`DatagramProbe::overdue_after`] (a retransmission timeout estimated
//! from the round trips, as TCP's, RFC 6298; see
//! [`DatagramProbe::in_flight_recent`]), and once the ring is full, its
//! oldest datagram still unanswered after [`overdue_at_most`] (a fiftieth
//! of the loss timeout) while a later one came back gives its slot up
//! early. It is counted lost only at its loss timeout: one that comes back
//! intact before then (a server that held it while it echoed later ones)
//! is verified after all, as reordered, with its real round trip. Up to
//! `M` such datagrams are remembered apart from the ring; the oldest is
//! counted lost at once when `M` later ones gave their slots up too. With
//! nothing later back (a server that paused, or stopped) nothing gives its
//! slot up early: the full ring waits for the loss timeout.

use super::{ConfigError, SizeRange, check_sizes, scheduled};
use crate::payload::Payload;
use crate::time::{Duration, Instant, earliest};

mod outcome;

pub use outcome::{DatagramOutcome, DatagramProbeStats};

/// Unanswered datagrams hold the ring for at most a fiftieth of the loss
/// timeout (see [`DatagramProbe::overdue_after`]).
const OVERDUE_PER_TIMEOUT: u64 = 50;
/// The shortest wait before an unanswered datagram stops holding the ring.
const MIN_OVERDUE_US: u64 = 1_000;

/// The longest [`DatagramProbe::overdue_after`] for a loss timeout: a
/// fiftieth of it, at least 1 ms (100 ms for 5 s).
pub fn overdue_at_most(loss_timeout: Duration) -> Duration {
    Duration::from_micros((loss_timeout.as_micros() / OVERDUE_PER_TIMEOUT).max(MIN_OVERDUE_US))
}

/// Bytes of header in every probe datagram.
pub const DATAGRAM_HEADER: usize = 12;
/// The largest UDP payload over IPv4: 65535 − 20 (IP header) − 8 (UDP header).
pub const UDP_MAX_V4: usize = 65_507;
/// The largest UDP payload over IPv6: 65535 − 8 (the IPv6 payload length
/// excludes its own header). The largest [`DatagramProbeConfig::size`].
pub const UDP_MAX_V6: usize = 65_527;

/// How a [`DatagramProbe`] talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DatagramProbeConfig {
    /// Seed of the payloads and sizes.
    pub seed: u64,
    /// Datagram sizes, [`DATAGRAM_HEADER`] to [`UDP_MAX_V6`] bytes (an IPv4
    /// socket sends at most [`UDP_MAX_V4`]: the adapter checks its family).
    pub size: SizeRange,
    /// Datagrams to send; `None` sends until [`DatagramProbe::finish`].
    pub count: Option<u64>,
    /// Datagrams in flight at most (1 = ping-pong); at most the probe's `M`.
    pub window: usize,
    /// A datagram not back after this long is counted lost.
    pub loss_timeout: Duration,
    /// Open-loop pacing: datagram `i` is sent no earlier than `start + i * interval`
    /// (nanoseconds, [`Pace`](crate::Pace); a `Duration` converts with `.into()`).
    pub interval: Option<crate::Pace>,
}

impl Default for DatagramProbeConfig {
    /// 64-byte ping-pong, seed 1, 1000 datagrams, 1 s loss timeout.
    fn default() -> Self {
        DatagramProbeConfig {
            seed: 1,
            size: SizeRange::fixed(64),
            count: Some(1000),
            window: 1,
            loss_timeout: Duration::from_secs(1),
            interval: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Empty,
    InFlight { seq: u64, sent_at: Instant },
    Verified { seq: u64 },
    Lost { seq: u64 },
}

/// A verifying UDP client; `M` bounds the datagrams tracked in flight.
#[derive(Clone, Debug)]
pub struct DatagramProbe<const M: usize = 64> {
    config: DatagramProbeConfig,
    payload: Payload,
    tag: [u8; 4],
    /// Ring of the last `M` sequence numbers, indexed by `seq % M`.
    slots: [Slot; M],
    next_seq: u64,
    in_flight: usize,
    /// Lowest sequence number that may still be in flight.
    oldest: u64,
    /// One past the highest sequence number verified so far (0: none).
    verified_end: u64,
    /// Datagrams that gave their ring slot up before their loss timeout
    /// (see the module docs), indexed by `seq % M`: `(seq, sent_at)`.
    early: [Option<(u64, Instant)>; M],
    /// How many of `early` are set.
    early_len: usize,
    /// Smoothed round trip and its variation, microseconds (RFC 6298);
    /// `None` before the first verified echo.
    rtt: Option<(u64, u64)>,
    limit: u64,
    start: Instant,
    now: Instant,
    stats: DatagramProbeStats,
}

impl<const M: usize> DatagramProbe<M> {
    /// A probe that starts at `now`.
    pub fn new(config: DatagramProbeConfig, now: Instant) -> Result<Self, ConfigError> {
        Self::with_schedule(config, now, now)
    }

    /// A probe that starts at `now` whose paced schedule starts at `start`
    /// (datagram *k* is due at `start + k × interval`), as
    /// [`StreamProbe::with_schedule`](super::StreamProbe::with_schedule).
    pub fn with_schedule(
        config: DatagramProbeConfig,
        now: Instant,
        start: Instant,
    ) -> Result<Self, ConfigError> {
        check_sizes(config.size, (DATAGRAM_HEADER, UDP_MAX_V6))?;
        if config.window == 0 || config.window > M {
            return Err(ConfigError::BadWindow {
                window: config.window,
                max: M,
            });
        }
        let payload = Payload::new(config.seed);
        let tag = (payload.number(u64::MAX) as u32).to_be_bytes();
        Ok(DatagramProbe {
            config,
            payload,
            tag,
            slots: [Slot::Empty; M],
            next_seq: 0,
            in_flight: 0,
            oldest: 0,
            verified_end: 0,
            early: [None; M],
            early_len: 0,
            rtt: None,
            limit: config.count.unwrap_or(u64::MAX),
            start,
            now,
            stats: DatagramProbeStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DatagramProbeConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &DatagramProbeStats {
        &self.stats
    }

    /// Writes the next datagram into `out` and counts it as sent at `now`;
    /// `None` when nothing may be sent now (window full, pacing, done).
    ///
    /// `out` must hold `config.size.max` bytes. A smaller one cannot take
    /// the datagram: that is the adapter's bug, so debug builds panic with
    /// the sizes, and release builds return `None` (nothing is sent, ever:
    /// the run stalls). If the socket fails to send the datagram, it is
    /// simply counted lost later, as it would be on the wire.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let now = self.advance(now);
        let seq = self.next_seq;
        if seq < self.limit && self.ring_full() {
            self.give_up_oldest(now);
        }
        if seq >= self.limit || !self.has_room() {
            return None;
        }
        if let Some(interval) = self.config.interval
            && scheduled(self.start, interval, seq) > now
        {
            return None;
        }
        let len = self.size_of(seq);
        debug_assert!(
            out.len() >= len,
            "DatagramProbe::poll_transmit: out holds {} bytes, datagram {seq} needs {len}; \
             give it config.size.max bytes",
            out.len()
        );
        let out = out.get_mut(..len)?;
        self.write(seq, out);
        self.slots[self.index(seq)] = Slot::InFlight { seq, sent_at: now };
        self.next_seq += 1;
        self.in_flight += 1;
        self.stats.sent += 1;
        Some(len)
    }

    /// Classifies and counts one received datagram.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) -> DatagramOutcome {
        let now = self.advance(now);
        let outcome = self.classify(now, data);
        match outcome {
            DatagramOutcome::Verified { .. } => {
                self.stats.verified += 1;
                self.stats.bytes_verified += data.len() as u64;
            }
            DatagramOutcome::Corrupt { .. } => self.stats.corrupt += 1,
            DatagramOutcome::Duplicate { .. } => self.stats.duplicate += 1,
            DatagramOutcome::Late { .. } => self.stats.late += 1,
            DatagramOutcome::Foreign => self.stats.foreign += 1,
        }
        outcome
    }

    /// Counts as lost every datagram in flight for the loss timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        let mut seq = self.oldest;
        while seq < self.next_seq {
            let i = self.index(seq);
            if let Slot::InFlight { seq: s, sent_at } = self.slots[i] {
                if s == seq && now >= sent_at + self.config.loss_timeout {
                    self.slots[i] = Slot::Lost { seq };
                    self.in_flight -= 1;
                    self.stats.lost += 1;
                } else {
                    // Sent in order: later ones are younger.
                    break;
                }
            }
            seq += 1;
        }
        self.settle();
        if self.early_len > 0 {
            let timeout = self.config.loss_timeout;
            for entry in &mut self.early {
                if let Some((_, sent_at)) = *entry
                    && now >= sent_at + timeout
                {
                    *entry = None;
                    self.early_len -= 1;
                    self.stats.lost += 1;
                }
            }
        }
    }

    /// The scheduled send of the next datagram under pacing
    /// ([`DatagramProbeConfig::interval`]); `None` without pacing or when no
    /// further datagram will be sent (the count is reached, or after
    /// [`finish`](Self::finish)). Compared with the instant
    /// [`poll_transmit`](Self::poll_transmit) actually sends it, it gives the
    /// adapter's own send lateness.
    pub fn next_due(&self) -> Option<Instant> {
        let interval = self.config.interval?;
        (self.next_seq < self.limit).then(|| scheduled(self.start, interval, self.next_seq))
    }

    /// The next loss deadline or paced send.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let loss = (self.oldest..self.next_seq).find_map(|seq| match self.slots[self.index(seq)] {
            Slot::InFlight { seq: s, sent_at } if s == seq => {
                Some(sent_at + self.config.loss_timeout)
            }
            _ => None,
        });
        let give_up = self.give_up_at();
        // Walked only while one is remembered: this runs after every event.
        let early = (self.early_len > 0)
            .then(|| {
                self.early
                    .iter()
                    .flatten()
                    .map(|&(_, sent_at)| sent_at + self.config.loss_timeout)
                    .min()
            })
            .flatten();
        let loss = earliest(earliest(loss, give_up), early);
        let pacing = match self.config.interval {
            Some(interval) if self.next_seq < self.limit && self.has_room() => {
                Some(scheduled(self.start, interval, self.next_seq)).filter(|&t| t > self.now)
            }
            _ => None,
        };
        earliest(loss, pacing)
    }

    /// How long an unanswered datagram is waited for before it stops
    /// holding the ring (and, for an adapter applying a smaller window of
    /// its own, that window): the estimated retransmission timeout,
    /// `srtt + 4 * rttvar` (RFC 6298), within 1 ms and a fiftieth of the
    /// loss timeout; before any round trip was measured, that fiftieth (at
    /// least 1 ms). It is never counted lost for this before the ring needs
    /// its slot.
    pub fn overdue_after(&self) -> Duration {
        let most = overdue_at_most(self.config.loss_timeout).as_micros();
        let us = match self.rtt {
            Some((srtt, rttvar)) => srtt.saturating_add(rttvar.saturating_mul(4)),
            None => most,
        };
        Duration::from_micros(us.clamp(MIN_OVERDUE_US, most))
    }

    /// The datagrams in flight at `now` that are not yet overdue (sent less
    /// than [`overdue_after`](Self::overdue_after) ago), and when the
    /// oldest of them will be: what an adapter applying a window smaller
    /// than `M` counts against it, so a lost datagram stops holding that
    /// window after the estimated retransmission timeout rather than until
    /// the loss timeout.
    pub fn in_flight_recent(&self, now: Instant) -> (usize, Option<Instant>) {
        let overdue = self.overdue_after();
        // Sent in order: the overdue ones are the oldest. Walk forward past
        // them (no step at all while nothing is overdue).
        let mut stale = 0;
        for seq in self.oldest..self.next_seq {
            if let Slot::InFlight { seq: s, sent_at } = self.slots[self.index(seq)]
                && s == seq
            {
                let due = sent_at + overdue;
                if due > now {
                    return (self.in_flight - stale, Some(due));
                }
                stale += 1;
            }
        }
        (0, None)
    }

    /// Stops sending new datagrams.
    pub fn finish(&mut self) {
        self.limit = self.limit.min(self.next_seq);
    }

    /// Everything was sent and each datagram was verified or counted lost.
    pub fn is_done(&self) -> bool {
        self.next_seq >= self.limit && self.in_flight == 0 && self.early_len == 0
    }

    // --- internals ---

    fn advance(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    /// Folds one round trip into the estimate (RFC 6298, in microseconds).
    fn sample_rtt(&mut self, rtt: Duration) {
        let r = rtt.as_micros();
        self.rtt = Some(match self.rtt {
            None => (r, r / 2),
            Some((srtt, rttvar)) => {
                let rttvar = (3 * rttvar + srtt.abs_diff(r)) / 4;
                let srtt = (7 * srtt + r) / 8;
                (srtt, rttvar)
            }
        });
    }

    /// Every slot of the ring holds a datagram not yet settled.
    fn ring_full(&self) -> bool {
        self.next_seq - self.oldest >= M as u64
    }

    /// When the ring's oldest datagram, if the ring is full and it is still
    /// unanswered while a later one came back, will be counted lost to free
    /// its slot. With nothing later back the server is paused or gone, not
    /// dropping: the oldest waits for the loss timeout (a server that paused
    /// 200 ms had every datagram of the pause counted lost, though all came
    /// back).
    fn give_up_at(&self) -> Option<Instant> {
        if self.next_seq >= self.limit || !self.ring_full() {
            return None;
        }
        match self.slots[self.index(self.oldest)] {
            // Counting it lost is a verdict: wait the longest overdue time,
            // not the estimate, so a datagram merely slowed by a busy host
            // is not counted lost (and late) after 1 ms.
            Slot::InFlight { seq, sent_at } if seq == self.oldest && self.verified_end > seq => {
                Some(sent_at + overdue_at_most(self.config.loss_timeout))
            }
            _ => None,
        }
    }

    /// Counts the ring's oldest datagram lost if it is overdue at `now` and
    /// the ring is full (see the module docs).
    fn give_up_oldest(&mut self, now: Instant) {
        if self.give_up_at().is_some_and(|at| now >= at) {
            let seq = self.oldest;
            let i = self.index(seq);
            if let Slot::InFlight { sent_at, .. } = self.slots[i] {
                // Remembered until its loss timeout; the one `M` datagrams
                // older, crowded out, is lost now.
                if self.early[i].replace((seq, sent_at)).is_some() {
                    self.stats.lost += 1;
                } else {
                    self.early_len += 1;
                }
            }
            self.slots[i] = Slot::Lost { seq };
            self.in_flight -= 1;
            self.settle();
        }
    }

    /// The window has room and the ring slot for the next datagram is free
    /// (an unresolved old datagram holds its slot until lost or verified).
    fn has_room(&self) -> bool {
        self.in_flight < self.config.window && self.next_seq - self.oldest < M as u64
    }

    fn index(&self, seq: u64) -> usize {
        (seq % M as u64) as usize
    }

    fn size_of(&self, seq: u64) -> usize {
        let SizeRange { min, max } = self.config.size;
        if min == max {
            min
        } else {
            min + (self.payload.number(seq) % ((max - min) as u64 + 1)) as usize
        }
    }

    /// Payload offsets of datagram `seq` start at `seq << 16`: no overlap.
    fn write(&self, seq: u64, out: &mut [u8]) {
        out[..8].copy_from_slice(&seq.to_be_bytes());
        out[8..DATAGRAM_HEADER].copy_from_slice(&self.tag);
        self.payload.fill(seq << 16, &mut out[DATAGRAM_HEADER..]);
    }

    fn classify(&mut self, now: Instant, data: &[u8]) -> DatagramOutcome {
        let (Some(seq), Some(tag)) = (data.first_chunk::<8>(), data.get(8..DATAGRAM_HEADER)) else {
            return DatagramOutcome::Foreign;
        };
        let seq = u64::from_be_bytes(*seq);
        if tag != self.tag || seq >= self.next_seq {
            return DatagramOutcome::Foreign;
        }
        let i = self.index(seq);
        let slot = self.slots[i];
        if let Some((s, sent_at)) = self.early[i]
            && s == seq
        {
            // It gave its slot up early and is back before its loss
            // timeout: resolved now, as any in flight would be.
            self.early[i] = None;
            self.early_len -= 1;
            if !self.intact(seq, data) {
                return DatagramOutcome::Corrupt { seq };
            }
            if slot == (Slot::Lost { seq }) {
                // A second copy is then a duplicate, not late.
                self.slots[i] = Slot::Verified { seq };
            }
            return self.verify(now, seq, sent_at);
        }
        let tracked = match slot {
            Slot::InFlight { seq: s, .. } | Slot::Verified { seq: s } | Slot::Lost { seq: s } => {
                s == seq
            }
            Slot::Empty => false,
        };
        if !tracked {
            return DatagramOutcome::Late { seq };
        }
        if !self.intact(seq, data) {
            if let Slot::InFlight { .. } = slot {
                // An altered echo resolves the datagram: it will not come back intact.
                self.slots[i] = Slot::Lost { seq };
                self.in_flight -= 1;
                self.settle();
            }
            return DatagramOutcome::Corrupt { seq };
        }
        match slot {
            Slot::InFlight { sent_at, .. } => {
                self.slots[i] = Slot::Verified { seq };
                self.in_flight -= 1;
                self.settle();
                self.verify(now, seq, sent_at)
            }
            Slot::Verified { .. } => DatagramOutcome::Duplicate { seq },
            Slot::Lost { .. } | Slot::Empty => DatagramOutcome::Late { seq },
        }
    }

    /// Counts datagram `seq` (sent at `sent_at`) back intact at `now`: its
    /// order, its round trip.
    fn verify(&mut self, now: Instant, seq: u64, sent_at: Instant) -> DatagramOutcome {
        if seq < self.verified_end {
            self.stats.reordered += 1;
        } else {
            self.verified_end = seq + 1;
        }
        self.sample_rtt(now.saturating_since(sent_at));
        let due = match self.config.interval {
            Some(interval) => scheduled(self.start, interval, seq).min(sent_at),
            None => sent_at,
        };
        DatagramOutcome::Verified {
            round_trip: now.saturating_since(due),
            since_sent: now.saturating_since(sent_at),
        }
    }

    fn intact(&self, seq: u64, data: &[u8]) -> bool {
        if data.len() != self.size_of(seq) {
            return false;
        }
        let mut expected = [0u8; 128];
        let body = &data[DATAGRAM_HEADER..];
        let mut offset = seq << 16;
        for chunk in body.chunks(expected.len()) {
            let e = &mut expected[..chunk.len()];
            self.payload.fill(offset, e);
            if chunk != e {
                return false;
            }
            offset += chunk.len() as u64;
        }
        true
    }

    /// Moves `oldest` past resolved datagrams.
    fn settle(&mut self) {
        while self.oldest < self.next_seq {
            match self.slots[self.index(self.oldest)] {
                Slot::InFlight { seq, .. } if seq == self.oldest => break,
                _ => self.oldest += 1,
            }
        }
    }
}
