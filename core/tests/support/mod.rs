//! An in-memory pair: a [`StreamProbe`] talking to a server [`Session`]
//! through two bounded pipes, with arbitrary read/write sizes and a virtual
//! clock that jumps to the next deadline when nothing can move. No sockets,
//! no sleeps.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;

use ricochet_core::probe::{ProbeError, StreamProbe};
use ricochet_core::pump::{Next, Pump, ReadOutcome, Teardown, Transport, WriteOutcome};
use ricochet_core::session::{Event, Session, State};
use ricochet_core::{Duration, Instant, StreamCounters};

/// The property tests' configuration: proptest's (which reads
/// `PROPTEST_CASES`), but never fewer than 256 cases.
pub fn proptest_config() -> proptest::test_runner::Config {
    at_least_256_cases(proptest::test_runner::Config::default())
}

/// `config` with at least 256 cases.
pub fn at_least_256_cases(
    mut config: proptest::test_runner::Config,
) -> proptest::test_runner::Config {
    config.cases = config.cases.max(256);
    config
}

/// Bytes a pipe holds at most (a socket buffer).
pub const PIPE: usize = 512;

/// How a run ended.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub probe: Result<(), ProbeError>,
    pub server: State,
    pub server_events: Vec<Event>,
    pub sent: u64,
    pub verified: u64,
    pub round_trips: u64,
    pub steps: u64,
}

/// The server's side of the two pipes, as its pump sees it.
struct ServerEnd<'a> {
    c2s: &'a mut VecDeque<u8>,
    s2c: &'a mut VecDeque<u8>,
    client_fin_sent: bool,
    fin_sent: &'a mut bool,
    /// The largest single read or write this step.
    chunk: usize,
}

impl Transport for ServerEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        if self.c2s.is_empty() {
            return if self.client_fin_sent {
                ReadOutcome::Eof
            } else {
                ReadOutcome::WouldBlock
            };
        }
        let n = buf.len().min(self.chunk).min(self.c2s.len());
        for (slot, b) in buf.iter_mut().zip(self.c2s.drain(..n)) {
            *slot = b;
        }
        ReadOutcome::Data(n)
    }

    fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
        assert!(!*self.fin_sent, "write after shutdown_write");
        let n = buf.len().min(self.chunk).min(PIPE - self.s2c.len());
        if n == 0 {
            return WriteOutcome::WouldBlock;
        }
        self.s2c.extend(&buf[..n]);
        WriteOutcome::Sent(n)
    }

    fn shutdown_write(&mut self) {
        *self.fin_sent = true;
    }
}

/// Step sizes: cycles through `sizes` (each at least 1).
pub struct Chunks {
    sizes: Vec<usize>,
    at: usize,
}

impl Chunks {
    pub fn new(sizes: &[usize]) -> Self {
        let sizes: Vec<usize> = sizes.iter().map(|&s| s.max(1)).collect();
        Chunks {
            sizes: if sizes.is_empty() {
                vec![usize::MAX]
            } else {
                sizes
            },
            at: 0,
        }
    }
    fn next(&mut self) -> usize {
        let s = self.sizes[self.at % self.sizes.len()];
        self.at += 1;
        s
    }
}

pub struct Pair<const N: usize, const M: usize> {
    pub probe: StreamProbe<M>,
    pub server: Pump<[u8; N]>,
    pub counters: StreamCounters,
    pub now: Instant,
    c2s: VecDeque<u8>,
    s2c: VecDeque<u8>,
    client_fin_sent: bool,
    /// The server shut down its write side (FIN) or reset.
    server_fin_sent: bool,
    server_fin_seen: bool,
    pub released: Option<Teardown>,
    pub max_buffered: usize,
    pub max_rtt: Duration,
    /// When false the client never reads (a peer that stopped reading).
    pub client_reads: bool,
    /// The server does nothing before this instant (a stalled server).
    pub stalled_until: Instant,
    /// Every round trip in order: (from the schedule, from the actual send).
    pub round_trip_log: Vec<(Duration, Duration)>,
    round_trips: u64,
    events: Vec<Event>,
}

impl<const N: usize, const M: usize> Pair<N, M> {
    pub fn new(probe: StreamProbe<M>, server: Session<[u8; N]>, now: Instant) -> Self {
        Pair {
            probe,
            server: Pump::from_session(server),
            counters: StreamCounters::default(),
            now,
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            client_fin_sent: false,
            server_fin_sent: false,
            server_fin_seen: false,
            released: None,
            max_buffered: 0,
            max_rtt: Duration::ZERO,
            client_reads: true,
            stalled_until: Instant::ZERO,
            round_trip_log: Vec::new(),
            round_trips: 0,
            events: Vec::new(),
        }
    }

    /// Runs to the end (or `max_steps`), splitting every read and write by `chunks`.
    pub fn run(&mut self, chunks: &mut Chunks, max_steps: u64) -> Outcome {
        let mut steps = 0;
        let result = loop {
            steps += 1;
            if steps > max_steps {
                panic!(
                    "pair did not finish in {max_steps} steps: {:?} {:?}",
                    self.server.session(),
                    self.probe.stats()
                );
            }
            match self.step(chunks) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => break Err(e),
            }
            // Nothing moved.
            if self.server_fin_seen {
                break self.probe.handle_eof(self.now);
            }
            let stall = (self.stalled_until > self.now).then_some(self.stalled_until);
            let next = [self.probe.poll_timeout(), self.server.poll_timeout(), stall]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.drive_server(usize::MAX);
                    if let Err(e) = self.probe.handle_timeout(self.now) {
                        break Err(e);
                    }
                    if let Some(after) = self.server.poll_timeout() {
                        assert!(
                            after > self.now,
                            "poll_timeout {after} not after drive({})",
                            self.now
                        );
                    }
                }
                None => panic!(
                    "deadlock: nothing moves and no deadline; server {:?}",
                    self.server.session()
                ),
            }
        };
        while let Some(e) = self.server.poll_event() {
            self.events.push(e);
        }
        Outcome {
            probe: result,
            server: self.server.session().state(),
            server_events: std::mem::take(&mut self.events),
            sent: self.probe.stats().bytes_sent,
            verified: self.probe.stats().bytes_verified,
            round_trips: self.round_trips,
            steps,
        }
    }

    /// Drives the server's pump over the pipes, reads and writes at most
    /// `chunk` bytes each; returns whether any byte moved or the pump
    /// finished.
    fn drive_server(&mut self, chunk: usize) -> bool {
        if self.released.is_some() || self.now < self.stalled_until {
            return false;
        }
        let before = (self.c2s.len(), self.s2c.len(), self.server_fin_sent);
        let mut end = ServerEnd {
            c2s: &mut self.c2s,
            s2c: &mut self.s2c,
            client_fin_sent: self.client_fin_sent,
            fin_sent: &mut self.server_fin_sent,
            chunk,
        };
        self.server.set_ready();
        let next = self
            .server
            .drive(self.now, &mut end, chunk, &mut self.counters);
        while let Some(e) = self.server.poll_event() {
            self.events.push(e);
        }
        let mut moved = before != (self.c2s.len(), self.s2c.len(), self.server_fin_sent);
        if let Next::Release(how) = next {
            self.released = Some(how);
            if how == Teardown::Reset {
                // A reset destroys what the client has not read yet.
                self.s2c.clear();
            }
            self.server_fin_sent = true;
            moved = true;
        }
        let buffered = self.server.session().buffered();
        self.max_buffered = self.max_buffered.max(buffered);
        assert!(buffered <= N);
        assert_eq!(
            self.counters.buffered, buffered as u64,
            "gauge mirrors the session"
        );
        moved
    }

    /// One round of every party; returns whether anything moved.
    fn step(&mut self, chunks: &mut Chunks) -> Result<bool, ProbeError> {
        let mut moved = false;
        self.now += Duration::from_micros(1);

        // Client writes.
        let room = PIPE - self.c2s.len();
        if room > 0 && !self.client_fin_sent {
            let mut tmp = vec![0u8; room.min(chunks.next())];
            let n = self.probe.fill_transmit(self.now, &mut tmp);
            if n > 0 {
                self.c2s.extend(&tmp[..n]);
                self.probe.commit_sent(self.now, n).unwrap();
                moved = true;
            }
        }
        if self.probe.is_done() && !self.client_fin_sent {
            self.client_fin_sent = true;
            moved = true;
        }

        // The server reads and writes (only while its session offers space:
        // backpressure).
        moved |= self.drive_server(chunks.next());

        // Client reads.
        if !self.s2c.is_empty() && self.client_reads {
            let n = self.s2c.len().min(chunks.next());
            let data: Vec<u8> = self.s2c.drain(..n).collect();
            let mut at = 0;
            while at < data.len() {
                let r = self.probe.handle_received(self.now, &data[at..])?;
                if let Some(rtt) = r.round_trip {
                    self.round_trips += 1;
                    self.max_rtt = self.max_rtt.max(rtt);
                }
                if let (Some(due), Some(sent)) = (r.round_trip, r.since_sent) {
                    self.round_trip_log.push((due, sent));
                }
                at += r.consumed;
            }
            moved = true;
        } else if self.server_fin_sent
            && !self.server_fin_seen
            && (self.s2c.is_empty() || !self.client_reads)
        {
            self.server_fin_seen = true;
            moved = true;
        }
        Ok(moved)
    }
    /// Injects bytes into the server-to-client pipe (a faulty server).
    pub fn corrupt_next_echo(&mut self, xor: u8) -> bool {
        if let Some(b) = self.s2c.front_mut() {
            *b ^= xor;
            true
        } else {
            false
        }
    }
}
