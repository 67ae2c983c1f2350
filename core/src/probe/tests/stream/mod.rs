//! The stream probe: messages, windows, verification, finishing; in modules
//! [`sending`], [`verifying`], [`finishing`], [`timing`].

use super::*;

mod finishing;
mod sending;
mod timing;
mod verifying;

fn stream(mode: Mode, pattern: Pattern, size: SizeRange, count: u64) -> StreamProbe<8> {
    let config = ProbeConfig {
        mode,
        pattern,
        seed: 3,
        size,
        count: Some(count),
        response_timeout: Some(Duration::from_secs(2)),
        interval: None,
    };
    StreamProbe::new(config, T0).unwrap()
}

/// Feeds `echo` back to `p` whole; returns the round trips it reported.
fn echo_back<const M: usize>(p: &mut StreamProbe<M>, echo: &[u8]) -> usize {
    let (mut at, mut round_trips, mut turns) = (0, 0, 0);
    while at < echo.len() {
        bounded(&mut turns);
        let r = p.handle_received(T0, &echo[at..]).unwrap();
        at += r.consumed;
        round_trips += usize::from(r.round_trip.is_some());
    }
    round_trips
}

/// Sends and echoes everything until done, within `LOOP_BOUND` turns;
/// returns every byte sent.
fn run_to_done<const M: usize>(p: &mut StreamProbe<M>) -> std::vec::Vec<u8> {
    let (mut all, mut turns) = (std::vec::Vec::new(), 0);
    while !p.is_done() {
        bounded(&mut turns);
        let sent = send_all(p, T0);
        echo_back(p, &sent);
        all.extend_from_slice(&sent);
    }
    all
}
