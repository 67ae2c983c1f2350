//! Property tests of the session pump over a transport that splits,
//! stalls and refuses at random (and passes input straight through, in
//! raw mode, as much as it likes): whatever the transport does, the echo is
//! the input, in order, whole; the counters add up; the session ends once.

mod support;

use std::collections::VecDeque;

use proptest::prelude::*;
use ricochet_core::pump::{Next, Pump, ReadOutcome, Teardown, Transport, WriteOutcome};
use ricochet_core::{Duration, Instant, Mode, SessionConfig, StreamCounters};

/// A peer whose every call's size (or refusal) comes from a script.
struct Erratic {
    input: VecDeque<u8>,
    output: Vec<u8>,
    /// Per call: 0 = would block, n = at most n bytes.
    reads: Vec<usize>,
    writes: Vec<usize>,
    /// Per `pass_through` call: at most n bytes (0 = moves nothing).
    passes: Vec<usize>,
    r: usize,
    w: usize,
    p: usize,
    fin_sent: bool,
    unacked: usize,
}

impl Transport for Erratic {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        let limit = self.reads[self.r % self.reads.len()];
        self.r += 1;
        if self.input.is_empty() {
            return ReadOutcome::Eof;
        }
        if limit == 0 {
            return ReadOutcome::WouldBlock;
        }
        let n = buf.len().min(limit).min(self.input.len());
        for (slot, b) in buf.iter_mut().zip(self.input.drain(..n)) {
            *slot = b;
        }
        ReadOutcome::Data(n)
    }

    fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
        assert!(!self.fin_sent, "write after FIN");
        let limit = self.writes[self.w % self.writes.len()];
        self.w += 1;
        if limit == 0 {
            return WriteOutcome::WouldBlock;
        }
        let n = buf.len().min(limit);
        self.output.extend_from_slice(&buf[..n]);
        self.unacked += n;
        WriteOutcome::Sent(n)
    }

    fn pass_through(&mut self, max: usize) -> usize {
        assert!(!self.fin_sent, "pass-through after FIN");
        let limit = self.passes[self.p % self.passes.len()];
        self.p += 1;
        let n = max.min(limit).min(self.input.len());
        self.output.extend(self.input.drain(..n));
        self.unacked += n;
        n
    }

    fn shutdown_write(&mut self) {
        self.fin_sent = true;
    }

    fn unacknowledged(&self) -> usize {
        self.unacked
    }
}

fn frames(sizes: &[usize]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        v.extend_from_slice(&(n as u16).to_be_bytes());
        v.extend((0..n).map(|j| (i * 31 + j) as u8));
    }
    v
}

proptest! {
    #![proptest_config(support::proptest_config())]

    #[test]
    fn any_transport_behaviour_echoes_the_input_whole_and_counts_it_once(
        mode in prop_oneof![Just(Mode::Raw), Just(Mode::Lines), Just(Mode::Frames)],
        data in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..3000),
        frame_sizes in prop::collection::vec(0usize..200, 0..20),
        reads in prop::collection::vec(0usize..700, 1..16),
        writes in prop::collection::vec(0usize..700, 1..16),
        passes in prop::collection::vec(0usize..2000, 1..8),
        budgets in prop::collection::vec(1usize..5000, 1..8),
        capacity in 256usize..1024,
    ) {
        // Every read or write call size is allowed, but some must move bytes.
        prop_assume!(reads.iter().any(|&r| r > 0) && writes.iter().any(|&w| w > 0));
        let input = if mode == Mode::Frames { frames(&frame_sizes) } else { data };
        let config = SessionConfig { mode, idle_timeout: None, drain_timeout: None, ..SessionConfig::default() };
        let mut now = Instant::from_millis(1);
        let mut pump = Pump::new(vec![0u8; capacity], config, now);
        let mut io = Erratic {
            input: input.iter().copied().collect(),
            output: Vec::new(),
            reads, writes, passes, r: 0, w: 0, p: 0, fin_sent: false, unacked: 0,
        };
        let mut counters = StreamCounters::default();
        let mut released = None;
        for step in 0..200_000usize {
            pump.set_ready();
            let budget = budgets[step % budgets.len()];
            match pump.drive(now, &mut io, budget, &mut counters) {
                Next::Release(how) => { released = Some(how); break; }
                Next::Yield | Next::Wait { .. } => {}
            }
            prop_assert!(pump.session().buffered() <= capacity);
            prop_assert_eq!(counters.buffered, pump.session().buffered() as u64);
            // The peer acknowledges what it received, a little at a time.
            io.unacked = io.unacked.saturating_sub(97);
            now += Duration::from_micros(10);
        }
        let how = released.expect("the pump released the connection");
        // Lines too long for the buffer abort; everything else is echoed whole.
        let overlong_line = mode == Mode::Lines && input.split(|&b| b == b'\n').any(|l| l.len() + 1 > capacity);
        let overlong_frame = mode == Mode::Frames && frame_sizes.iter().any(|&n| n + 2 > capacity);
        if overlong_line || overlong_frame {
            prop_assert_eq!(how, Teardown::Reset);
            prop_assert_eq!(counters.aborted.total(), 1);
            prop_assert!(input.starts_with(&io.output));
        } else {
            prop_assert_eq!(how, Teardown::Close);
            prop_assert!(io.output == input, "echo differs from the input");
            prop_assert!(io.fin_sent);
            prop_assert_eq!(counters.closed.peer_finished, 1);
            prop_assert_eq!(counters.bytes_out, input.len() as u64);
        }
        prop_assert_eq!(counters.ended(), 1);
        prop_assert_eq!(counters.bytes_in, (input.len() - io.input.len()) as u64);
        prop_assert_eq!(counters.buffered, 0);
        let st = pump.session().stats();
        prop_assert!(st.bytes_moved <= st.bytes_in + st.bytes_out);
    }
}
