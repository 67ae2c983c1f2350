//! An in-memory pair: a [`StreamProbe`] talking to a server [`Session`]
//! through two bounded pipes, with arbitrary read/write sizes and a virtual
//! clock that jumps to the next deadline when nothing can move. No sockets,
//! no sleeps.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;

use ricochet_core::probe::{ProbeError, StreamProbe};
use ricochet_core::session::{Event, Session, State};
use ricochet_core::{Duration, Instant};

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
    pub server: Session<N>,
    pub now: Instant,
    c2s: VecDeque<u8>,
    s2c: VecDeque<u8>,
    client_fin_sent: bool,
    server_fin_seen: bool,
    pub max_buffered: usize,
    pub max_rtt: Duration,
    /// When false the client never reads (a peer that stopped reading).
    pub client_reads: bool,
    round_trips: u64,
    events: Vec<Event>,
}

impl<const N: usize, const M: usize> Pair<N, M> {
    pub fn new(probe: StreamProbe<M>, server: Session<N>, now: Instant) -> Self {
        Pair {
            probe,
            server,
            now,
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            client_fin_sent: false,
            server_fin_seen: false,
            max_buffered: 0,
            max_rtt: Duration::ZERO,
            client_reads: true,
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
                    self.server,
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
            let next = [self.probe.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.server.handle_timeout(self.now);
                    if let Err(e) = self.probe.handle_timeout(self.now) {
                        break Err(e);
                    }
                    if let Some(after) = self.server.poll_timeout() {
                        assert!(
                            after > self.now,
                            "poll_timeout {after} not after handle_timeout({})",
                            self.now
                        );
                    }
                }
                None => panic!(
                    "deadlock: nothing moves and no deadline; server {:?}",
                    self.server
                ),
            }
        };
        while let Some(e) = self.server.poll_event() {
            self.events.push(e);
        }
        Outcome {
            probe: result,
            server: self.server.state(),
            server_events: std::mem::take(&mut self.events),
            sent: self.probe.stats().bytes_sent,
            verified: self.probe.stats().bytes_verified,
            round_trips: self.round_trips,
            steps,
        }
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

        // Server reads (only while it offers space: backpressure).
        if !self.c2s.is_empty() && self.server.wants_read() {
            let want = chunks.next();
            let buf = self.server.receive_buffer();
            let n = buf.len().min(want).min(self.c2s.len());
            for (slot, b) in buf.iter_mut().zip(self.c2s.drain(..n)) {
                *slot = b;
            }
            self.server.commit_received(self.now, n).unwrap();
            moved = true;
        } else if self.c2s.is_empty() && self.client_fin_sent && self.server.state() == State::Open
        {
            self.server.handle_peer_fin(self.now);
            moved = true;
        }
        self.max_buffered = self.max_buffered.max(self.server.buffered());
        assert!(self.server.buffered() <= N);

        // Server writes.
        let room = PIPE - self.s2c.len();
        if room > 0 && self.server.wants_write() {
            let out = self.server.transmit_buffer();
            let n = out.len().min(room).min(chunks.next());
            self.s2c.extend(&out[..n]);
            self.server.commit_sent(self.now, n).unwrap();
            moved = true;
        }
        while let Some(e) = self.server.poll_event() {
            self.events.push(e);
        }

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
                at += r.consumed;
            }
            moved = true;
        } else if self.server.is_terminal()
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
