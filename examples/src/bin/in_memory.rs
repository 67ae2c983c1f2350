//! A core `Session` driven by the core's `Pump` (the echo server) and a
//! `StreamProbe` (the verifying client) talking through an in-memory pipe:
//! no sockets, no threads, no clock. Time is a counter passed in, and every transfer is cut into
//! irregular chunks, as a network would, to show that neither side cares
//! how the stream is split. Runs each mode: raw, lines, frames.
//!
//! Usage: `in_memory [--count N]` (default 1000 messages per mode).

use std::process::ExitCode;

use ricochet_core::probe::Pattern;
use ricochet_core::pump::{Failure, Next, Pump, ReadOutcome, Teardown, Transport, WriteOutcome};
use ricochet_core::{
    Duration, Instant, Mode, ProbeConfig, SessionConfig, SizeRange, StreamCounters, StreamProbe,
};
use ricochet_examples::{Takes, errln, outln, parse_args_without_address};

const HELP: &str = "\
in_memory: a core Session (the echo server) and a StreamProbe (the verifying client)
talking through an in-memory pipe, in every mode (raw, lines, frames): no sockets, no
threads, and a step counter for a clock.

Usage: in_memory [--count N]
  --count N   messages to verify in each mode (default 1000)
";

fn main() -> ExitCode {
    let args = match parse_args_without_address("in_memory", HELP, 1000, Takes::COUNT_ONLY) {
        Ok(a) => a,
        Err(code) => return code,
    };
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        if let Err(e) = run(mode, args.count) {
            errln!("in_memory: {mode}: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// One tick of the in-memory clock (the core counts time in microseconds).
const STEP: Duration = Duration::from_micros(10);

/// The client's end of the in-memory pipe, as the server's pump sees it:
/// the pump's reads pull the probe's next bytes and its writes feed the
/// probe's verifier, each cut to an irregular chunk size.
struct ProbeEnd<'a> {
    probe: &'a mut StreamProbe<64>,
    now: Instant,
    step: usize,
    max_rtt: Duration,
    error: Option<String>,
}

impl Transport for ProbeEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        // An irregular chunk size, 1..=1500 bytes.
        let cap = buf.len().min(1 + (self.step * 7919) % 1500);
        let n = self.probe.fill_transmit(self.now, &mut buf[..cap]);
        if n == 0 {
            // Done: the client half-closes.
            return if self.probe.is_done() {
                ReadOutcome::Eof
            } else {
                ReadOutcome::WouldBlock
            };
        }
        match self.probe.commit_sent(self.now, n) {
            Ok(()) => ReadOutcome::Data(n),
            Err(e) => {
                self.error = Some(e.to_string());
                ReadOutcome::Failed(Failure::Reset)
            }
        }
    }

    fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
        let m = buf.len().min(1 + (self.step * 104_729) % 1500);
        let mut rest = &buf[..m];
        while !rest.is_empty() {
            match self.probe.handle_received(self.now, rest) {
                Ok(r) => {
                    if let Some(rtt) = r.round_trip {
                        self.max_rtt = self.max_rtt.max(rtt);
                    }
                    rest = &rest[r.consumed..];
                }
                Err(e) => {
                    self.error = Some(e.to_string());
                    return WriteOutcome::Failed(Failure::Reset);
                }
            }
        }
        WriteOutcome::Sent(m)
    }

    fn shutdown_write(&mut self) {}
}

fn run(mode: Mode, count: u64) -> Result<(), String> {
    let mut now = Instant::ZERO;
    // The server: the core's pump drives a session over this buffer.
    let mut server = Pump::new(
        [0u8; 4096],
        SessionConfig {
            mode,
            ..SessionConfig::default()
        },
        now,
    );
    let config = ProbeConfig {
        mode,
        pattern: Pattern::Stream { window: 8192 },
        size: SizeRange::range(3, 300),
        count: Some(count),
        ..ProbeConfig::default()
    };
    let mut probe = StreamProbe::<64>::new(config, now).map_err(|e| e.to_string())?;
    let mut counters = StreamCounters::default();
    let mut step: usize = 0;
    let mut max_rtt = Duration::ZERO;
    // The clock is a step counter: each step advances it by STEP.
    let released = loop {
        step += 1;
        now += STEP;
        let mut client = ProbeEnd {
            probe: &mut probe,
            now,
            step,
            max_rtt,
            error: None,
        };
        // In memory both directions are always ready: one step each.
        server.set_ready();
        let next = server.drive(now, &mut client, 1500, &mut counters);
        max_rtt = client.max_rtt;
        if let Some(e) = client.error {
            return Err(e);
        }
        if let Next::Release(how) = next {
            break how;
        }
        if step > 10_000_000 {
            return Err(format!("stalled: {:?}", server.session()));
        }
    };
    if released != Teardown::Close {
        return Err(format!(
            "session did not close: {:?}",
            server.session().state()
        ));
    }
    probe.handle_eof(now).map_err(|e| e.to_string())?;
    let p = probe.stats();
    let s = server.session().stats();
    let max_steps = max_rtt.as_micros() / STEP.as_micros();
    outln!(
        "{mode}: {} messages, {} bytes verified in {step} steps of in-memory transfer; \
         session echoed {} bytes ({} units), then closed after the client's FIN; \
         longest round trip {max_steps} steps",
        p.messages_verified,
        p.bytes_verified,
        s.bytes_out,
        s.units
    );
    Ok(())
}
