//! Session unit tests, named `<state>_<event>_<outcome>`, in modules by
//! subject: [`buffer`], [`framing`], [`endings`].

use super::*;

mod buffer;
mod endings;
mod framing;

const T0: Instant = Instant::from_micros(1_000_000);

fn cfg(mode: Mode) -> SessionConfig {
    SessionConfig {
        mode,
        idle_timeout: Some(Duration::from_secs(10)),
        drain_timeout: Some(Duration::from_secs(5)),
        linger: Duration::from_secs(2),
    }
}

fn at(ms: u64) -> Instant {
    T0 + Duration::from_millis(ms)
}

/// Copies `data` into the session as far as it accepts; returns bytes taken.
fn feed<S: AsRef<[u8]> + AsMut<[u8]>>(s: &mut Session<S>, now: Instant, data: &[u8]) -> usize {
    let buf = s.receive_buffer();
    let n = buf.len().min(data.len());
    buf[..n].copy_from_slice(&data[..n]);
    s.commit_received(now, n).unwrap();
    n
}

/// Takes everything pending.
fn drain<S: AsRef<[u8]> + AsMut<[u8]>>(s: &mut Session<S>, now: Instant) -> heapless::Vec<u8, 256> {
    let out = heapless::Vec::from_slice(s.transmit_buffer()).unwrap();
    let n = out.len();
    s.commit_sent(now, n).unwrap();
    out
}

fn events<S: AsRef<[u8]> + AsMut<[u8]>>(s: &mut Session<S>) -> heapless::Vec<Event, 8> {
    let mut v = heapless::Vec::new();
    while let Some(e) = s.poll_event() {
        v.push(e).unwrap();
    }
    v
}
