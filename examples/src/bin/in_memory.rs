//! A core `Session` (the echo server) and a `StreamProbe` (the verifying
//! client) talking through an in-memory pipe: no sockets, no threads, no
//! clock. Time is a counter passed in, and every transfer is cut into
//! irregular chunks, as a network would, to show that neither side cares
//! how the stream is split. Runs each mode: raw, lines, frames.
//!
//! Usage: `in_memory [--count N]` (default 1000 messages per mode).

use std::process::ExitCode;

use ricochet_core::probe::Pattern;
use ricochet_core::{
    Duration, Instant, Mode, ProbeConfig, Session, SessionConfig, SizeRange, State, StreamProbe,
};
use ricochet_examples::parse_args;

const HELP: &str = "\
in_memory: a core Session (the echo server) and a StreamProbe (the verifying client)
talking through an in-memory pipe, in every mode (raw, lines, frames): no sockets, no
threads, and a step counter for a clock.

Usage: in_memory [--count N]
  --count N   messages per mode (default 1000)
";

fn main() -> ExitCode {
    let args = match parse_args("in_memory", HELP, 1000) {
        Ok(a) => a,
        Err(code) => return code,
    };
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        if let Err(e) = run(mode, args.count) {
            eprintln!("in_memory: {mode}: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// One tick of the in-memory clock (the core counts time in microseconds).
const STEP: Duration = Duration::from_micros(10);

fn run(mode: Mode, count: u64) -> Result<(), String> {
    let mut now = Instant::ZERO;
    let mut session = Session::<4096>::new(
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
    let mut wire = [0u8; 4096];
    let mut step: usize = 0;
    // The clock is a step counter: each step advances it by STEP.
    let mut max_rtt = Duration::ZERO;
    while !probe.is_done() {
        step += 1;
        now += STEP;
        // An irregular chunk size, 1..=1500 bytes.
        let chunk = 1 + (step * 7919) % 1500;

        // Client -> server: the probe writes straight into the session's free space.
        let room = session.receive_buffer();
        let cap = room.len().min(chunk);
        let sent = probe.fill_transmit(now, &mut room[..cap]);
        probe.commit_sent(now, sent).map_err(|e| e.to_string())?;
        session
            .commit_received(now, sent)
            .map_err(|e| e.to_string())?;

        // Server -> client: whatever the session releases, in another chunk size.
        let out = session.transmit_buffer();
        let m = out.len().min(1 + (step * 104_729) % 1500);
        wire[..m].copy_from_slice(&out[..m]);
        session.commit_sent(now, m).map_err(|e| e.to_string())?;
        let mut rest = &wire[..m];
        while !rest.is_empty() {
            let r = probe
                .handle_received(now, rest)
                .map_err(|e| e.to_string())?;
            if let Some(rtt) = r.round_trip {
                max_rtt = max_rtt.max(rtt);
            }
            rest = &rest[r.consumed..];
        }
        if sent == 0 && m == 0 {
            return Err(format!("stalled in state {:?}", session.state()));
        }
    }
    // The client half-closes; the session has nothing left and closes too.
    session.handle_peer_fin(now);
    if session.state() != State::Closed {
        return Err(format!("session did not close: {:?}", session.state()));
    }
    probe.handle_eof(now).map_err(|e| e.to_string())?;
    let p = probe.stats();
    let s = session.stats();
    let max_steps = max_rtt.as_micros() / STEP.as_micros();
    println!(
        "{mode}: {} messages, {} bytes verified in {step} steps of in-memory transfer; \
         session echoed {} bytes ({} units), then closed after the client's FIN; \
         longest round trip {max_steps} steps",
        p.messages_verified, p.bytes_verified, s.bytes_out, s.units
    );
    Ok(())
}
