//! The worker's own wait (`Worker::enter`, as `Worker::run` calls it),
//! which sleeps until a completion or the next deadline: what must wake
//! it does, rather than a connection's idle deadline.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration as StdDuration;

use ricochet_core::Next;

use super::live::{
    connect, end_receive_with, pattern, read_now, turn, turn_until, with_worker_tuned,
};
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

/// Settings with an idle timeout of a minute: the only deadline a quiet
/// connection gives the worker's wait.
fn idle_a_minute(s: &mut Settings) {
    s.session.idle_timeout = Some(ricochet_core::Duration::from_secs(60));
}

/// The worker's own enter, which must return at once (a check of the
/// rings) with work left over from the turn: it returns before the idle
/// deadline of connection `key`, the only deadline there is, with nothing
/// in flight that could complete meanwhile.
fn enter_checks_before_the_idle_deadline(w: &mut Worker<'_>, key: usize, what: &str) {
    use crate::serve::conns::Tracked;
    let deadline = w
        .conns
        .get(key)
        .expect("open")
        .deadline()
        .expect("idle deadline");
    w.enter().expect("enter");
    let now = w.clock.now();
    assert!(
        now < deadline,
        "{what}: the wait slept until the idle deadline ({deadline:?}, now {now:?})"
    );
}

/// A connection whose budget ran out with input left (`Next::Yield`) is
/// queued for the next turn, and the wait before that turn is a check:
/// waiting for a completion instead left it queued until its peer sent
/// more or, with a peer waiting for its echo, until the idle timeout.
#[test]
fn connection_left_in_the_run_queue_makes_the_wait_a_check() {
    with_worker_tuned(false, idle_a_minute, |w| {
        let (key, mut client) = connect(w);
        turn(w);
        assert!(w.conns.get(key).expect("open").io.recv_armed);
        assert_eq!(w.conns.file(key, Next::Yield), None, "queued, not released");
        assert!(w.conns.has_queued());
        enter_checks_before_the_idle_deadline(w, key, "a connection queued");
        let now = w.clock.now();
        assert!(w.turn(now), "the worker stopped");
        assert!(!w.conns.has_queued(), "the queued connection was driven");
        client.write_all(b"still served").expect("write");
        let mut back = Vec::new();
        turn_until(w, "the echo", |_| {
            read_now(&mut client, &mut back);
            back.len() >= 12
        });
        assert_eq!(back, b"still served");
    });
}

/// A receive that ended for want of buffers (`ENOBUFS`) while enough are
/// free to grant it is re-armed at once: the wait is a check, not a sleep
/// until a completion that, with that receive the connection's only
/// request, never comes.
#[test]
fn receive_waiting_for_buffers_that_are_free_makes_the_wait_a_check() {
    with_worker_tuned(false, idle_a_minute, |w| {
        let (key, _client) = connect(w);
        end_receive_with(w, key, libc::ENOBUFS);
        let io = &w.conns.get(key).expect("open").io;
        assert!(io.buf_waiting && !io.recv_armed, "waits for buffers");
        assert_eq!(
            w.inflight, 0,
            "nothing in flight that could wake the worker"
        );
        enter_checks_before_the_idle_deadline(w, key, "a receive waiting");
        let now = w.clock.now();
        assert!(w.turn(now), "the worker stopped");
        assert!(
            w.conns.get(key).expect("open").io.recv_armed,
            "the waiting receive is armed again"
        );
    });
}
