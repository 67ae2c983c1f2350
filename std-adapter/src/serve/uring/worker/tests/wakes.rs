//! The worker's own wait (`Worker::enter`, as `Worker::run` calls it),
//! which sleeps until a completion or the next deadline: what must wake
//! it does, rather than a connection's idle deadline.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration as StdDuration;

use super::live::{connect, pattern, with_worker_tuned};
use super::*;
use crate::serve::Settings;

/// One turn as `Worker::run` takes it: the worker's own enter, waiting
/// for a completion or for its next deadline, then the turn.
fn real_turn(w: &mut Worker<'_>) {
    w.enter().expect("enter");
    let now = w.clock.now();
    assert!(w.turn(now), "the worker stopped");
}

/// A client that writes 1 MiB at once and reads the echo meanwhile
/// (threads of its own, blocking with timeouts) is echoed whole by the
/// worker's real loop, with an idle timeout of 3 s. Each time the session
/// finds its output full (64 KiB), its receive pauses and only the send's
/// completion can wake the worker: sent without one (`SKIP_SUCCESS`), the
/// worker slept until the idle deadline, which then closed the connection
/// halfway through the echo.
#[test]
fn send_a_full_session_waits_on_wakes_the_worker_before_the_idle_deadline() {
    for bundles in [true, false] {
        let idle = |s: &mut Settings| {
            s.session.idle_timeout = Some(ricochet_core::Duration::from_secs(3));
        };
        with_worker_tuned(bundles, idle, |w| {
            let (_, client) = connect(w);
            client.set_nonblocking(false).expect("blocking");
            let timeout = Some(StdDuration::from_secs(20));
            client.set_read_timeout(timeout).expect("read timeout");
            client.set_write_timeout(timeout).expect("write timeout");
            let sent = pattern(1024 * 1024);
            let mut writer = client.try_clone().expect("clone");
            let to_write = sent.clone();
            let writing = std::thread::spawn(move || writer.write_all(&to_write));
            let (done, back) = mpsc::channel();
            let len = sent.len();
            let mut reader = client;
            std::thread::spawn(move || {
                let mut got = vec![0u8; len];
                let read = reader.read_exact(&mut got).map(|()| got);
                let _ = done.send(read);
            });
            // A hang guard only: the echo takes milliseconds.
            let deadline = std::time::Instant::now() + StdDuration::from_secs(120);
            let got = loop {
                if let Ok(read) = back.try_recv() {
                    break read.expect("the echo");
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no end to the echo of 1 MiB in 120 s (bundles: {bundles})"
                );
                real_turn(w);
            };
            writing.join().expect("writer").expect("the client's write");
            assert!(got == sent, "bytes differ or out of order");
        });
    }
}
