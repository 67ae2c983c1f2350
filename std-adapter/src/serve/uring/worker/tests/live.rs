//! A worker on a ring of its own, with no listener: connections are
//! admitted by hand, and [`turn`] runs one loop turn (waiting 20 ms at
//! most), so a test walks it through completions one turn at a time.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};

use std::sync::Arc;
use std::time::Duration as StdDuration;

use super::*;
use crate::serve::Settings;
use crate::serve::config::IoBackend;
use crate::serve::stats::StreamKind;

fn shared(tune: impl FnOnce(&mut Settings)) -> Arc<Shared> {
    Shared::for_tests(64, IoBackend::Uring, |s| {
        // Lingering outlasts every wait here: a FIN held back
        // until the linger gives up fails the test.
        s.session.linger = ricochet_core::Duration::from_secs(60);
        s.buffer_size = 16 * 1024;
        tune(s);
    })
}

/// Runs `test` on a fresh worker (TCP receives in bundles if
/// `bundles`), then cancels everything and checks nothing is left in
/// flight.
pub(super) fn with_worker(bundles: bool, test: impl FnOnce(&mut Worker<'_>)) {
    with_worker_tuned(bundles, |_| {}, test);
}

/// [`with_worker`] with the server's settings changed by `tune`.
pub(super) fn with_worker_tuned(
    bundles: bool,
    tune: impl FnOnce(&mut Settings),
    test: impl FnOnce(&mut Worker<'_>),
) {
    let mut ring = ring::build().expect("ring");
    let mut bufs = BufRing::new(RX_BUFS, RX_BUF_SIZE, STREAM_BGID).expect("bufs");
    bufs.register(&ring.submitter()).expect("register");
    let bundles =
        bundles.then(|| bundle::check(&mut ring, &mut bufs, RX_BUF_SIZE).expect("bundles"));
    let (_waker, waker) = ring::Waker::new().expect("waker");
    let mut w = Worker::new(0, shared(tune), ring.split(), bufs, waker);
    w.bundles = bundles;
    test(&mut w);
    w.release_all();
    assert!(w.drain_ring(), "requests left in flight");
}

/// Publishes the buffers given back, submits what is queued and waits
/// for one completion, 20 ms at most (the enter before a turn).
pub(super) fn enter(w: &mut Worker<'_>) {
    w.bufs.publish();
    w.sq.sync();
    let ts = Timespec::from(StdDuration::from_millis(20));
    let _ = w
        .submitter
        .submit_with_args(1, &SubmitArgs::new().timespec(&ts));
    w.cq.sync();
}

/// One turn of the worker's loop (`Worker::turn`, as `Worker::run`
/// runs it) after a bounded [`enter`].
pub(super) fn turn(w: &mut Worker<'_>) {
    enter(w);
    let now = w.clock.now();
    assert!(w.turn(now), "the worker stopped");
}

/// Admits the server side of a new TCP connection on loopback; returns
/// its key and the client side (non-blocking).
pub(super) fn connect(w: &mut Worker<'_>) -> (usize, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (server, _) = l.accept().expect("accept");
    client.set_nonblocking(true).expect("non-blocking");
    let before = w.conns.keys();
    let now = w.clock.now();
    w.admit(OwnedFd::from(server), StreamKind::Tcp, now);
    let key = w
        .conns
        .keys()
        .into_iter()
        .find(|k| !before.contains(k))
        .expect("admitted");
    (key, client)
}

/// Turns until `until` holds (10 s at most).
pub(super) fn turn_until(
    w: &mut Worker<'_>,
    what: &str,
    until: impl FnMut(&mut Worker<'_>) -> bool,
) {
    step_until(w, what, until, turn);
}

/// Runs `step` until `until` holds; fails the test after 10 s, naming `what`.
pub(super) fn step_until(
    w: &mut Worker<'_>,
    what: &str,
    mut until: impl FnMut(&mut Worker<'_>) -> bool,
    mut step: impl FnMut(&mut Worker<'_>),
) {
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while !until(w) {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        step(w);
    }
}

/// Reads what `client` has now into `into`; whether it saw the end.
pub(super) fn read_now(client: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => panic!("client read: {e}"),
        }
    }
}

/// Bytes that differ from one 4 KiB buffer to the next.
pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect()
}

/// Writes all of `data` to `client`, turning the worker while the
/// socket is full, and returns what came back meanwhile.
pub(super) fn write_all(
    w: &mut Worker<'_>,
    client: &mut TcpStream,
    data: &[u8],
    back: &mut Vec<u8>,
) {
    let mut at = 0;
    turn_until(w, "the client's bytes written", |_| {
        match client.write(&data[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("client write: {e}"),
        }
        read_now(client, back);
        at == data.len()
    });
}

#[test]
fn echoed_bundles_come_back_whole_and_in_order_and_every_buffer_goes_back() {
    for bundles in [true, false] {
        with_worker(bundles, |w| {
            let (key, mut client) = connect(w);
            let sent = pattern(300 * 1024 + 7);
            let mut back = Vec::new();
            write_all(w, &mut client, &sent, &mut back);
            client.shutdown(std::net::Shutdown::Write).expect("FIN");
            let mut end = false;
            turn_until(w, "the whole echo and the server's FIN", |_| {
                end |= read_now(&mut client, &mut back);
                end
            });
            assert_eq!(back.len(), sent.len(), "bundles: {bundles}");
            assert!(
                back == sent,
                "bytes differ or out of order (bundles: {bundles})"
            );
            turn_until(w, "the connection freed", |w| w.conns.get(key).is_none());
            assert_eq!(w.bufs.available(), usize::from(RX_BUFS), "a buffer kept");
        });
    }
}

/// The client writes and does not read, until its socket is full
/// and the connection's receive is paused (not merely between arms)
/// with its echo stalled; what it wrote is appended to `sent`.
pub(super) fn stall(w: &mut Worker<'_>, key: usize, client: &mut TcpStream, sent: &mut Vec<u8>) {
    let chunk = pattern(64 * 1024);
    let mut refused = 0;
    turn_until(w, "the receive paused and the echo stalled", |w| {
        match client.write(&chunk) {
            Ok(n) => {
                sent.extend_from_slice(&chunk[..n]);
                refused = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => refused += 1,
            Err(e) => panic!("client write: {e}"),
        }
        let io = &w.conns.get(key).expect("open").io;
        refused >= 3 && !io.recv_armed && io.is_stalled()
    });
}

#[test]
fn peer_that_stops_reading_pauses_its_receive_then_gives_buffers_back_when_short() {
    // With bundles the receive ends at its cap; without, it is cancelled.
    for bundles in [true, false] {
        with_worker(bundles, |w| {
            let (key, mut client) = connect(w);
            let mut sent = Vec::new();
            stall(w, key, &mut client, &mut sent);
            // The client reads what came, writes more and stops reading
            // again: the echo goes on, stalls again, and the connection
            // is listed once.
            let mut back = Vec::new();
            read_now(&mut client, &mut back);
            assert!(!back.is_empty(), "no echo before the stall");
            stall(w, key, &mut client, &mut sent);
            assert_eq!(w.stalled.len(), 1, "listed once");
            // Ring buffers it holds, received or lent to its output: what
            // its receive took up to the cap, and its output's share.
            // With bundles the kernel stops each receive at the cap.
            // Without, the cap is checked as each batch of completions
            // is filed, so one turn can bring more: a backlog that
            // built up in the socket while the receive was paused
            // comes in at once (97 buffers seen on a loaded machine).
            let held = usize::from(RX_BUFS) - w.bufs.available();
            let most = if bundles {
                3 * RX_CAP_BUFFERS
            } else {
                usize::from(RX_BUFS) / 2
            };
            assert!(
                held > 0 && held <= most,
                "{held} buffers held (bundles: {bundles})"
            );
            // Plenty free: a stalled connection keeps its buffers.
            w.relieve_buffers();
            assert_eq!(w.bufs.available(), usize::from(RX_BUFS) - held);
            // Short (others hold all but an eighth, or all of the
            // rest): it gives them back.
            let free = (usize::from(RX_BUFS) / 8 - 1).saturating_sub(held);
            w.bufs.set_available_for_test(free);
            w.relieve_buffers();
            assert_eq!(w.bufs.available(), free + held, "its buffers are back");
            w.bufs.set_available_for_test(usize::from(RX_BUFS));
            // Every byte comes back, in order, then the FIN (the last
            // sends wait behind the stall), once the client reads.
            client.shutdown(std::net::Shutdown::Write).expect("FIN");
            let mut end = false;
            turn_until(w, "the whole echo and the server's FIN", |_| {
                end |= read_now(&mut client, &mut back);
                end
            });
            assert_eq!(back.len(), sent.len());
            assert!(back == sent, "bytes differ or out of order");
        });
    }
}

/// Ends connection `key`'s receive as if it had failed with `errno`:
/// it is cancelled, and its last completion says `-errno` instead.
pub(super) fn end_receive_with(w: &mut Worker<'_>, key: usize, errno: i32) {
    w.pause_recv(key);
    let recv = user_data(Op::Recv, key as u32, 0);
    let mut ended = false;
    turn_until(w, "the receive ended", |w| {
        enter(w);
        let cqes: Vec<_> = (&mut w.cq)
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        let now = w.clock.now();
        for (ud, mut res, flags) in cqes {
            if ud == recv && !cqueue::more(flags) {
                res = -errno;
                ended = true;
            }
            w.complete(ud, res, flags, now);
        }
        w.drive_ready(now);
        ended
    });
}

#[test]
fn receive_that_fails_timed_out_is_counted_as_a_timeout_not_a_reset() {
    with_worker(false, |w| {
        let (key, _client) = connect(w);
        // As when TCP gives up on a peer that stopped answering
        // (keepalive, user timeout).
        end_receive_with(w, key, libc::ETIMEDOUT);
        turn_until(w, "the connection freed", |w| w.conns.get(key).is_none());
        let aborted = &w.counters.tcp.aborted;
        assert_eq!(
            (aborted.timed_out, aborted.peer_reset),
            (1, 0),
            "{aborted:?}"
        );
    });
}

#[test]
fn receive_that_ran_out_of_buffers_is_armed_again_once_enough_are_free() {
    with_worker(true, |w| {
        let (key, mut client) = connect(w);
        // Its receive ends with ENOBUFS, as when the ring ran dry.
        end_receive_with(w, key, libc::ENOBUFS);
        let io = &w.conns.get(key).expect("open").io;
        assert!(io.buf_waiting && !io.recv_armed, "waits for buffers");
        assert_eq!(w.buf_waiters.len(), 1);
        // A second connection finds receives waiting and too few
        // buffers free (others hold the rest): it waits its turn.
        w.bufs.set_available_for_test(4 * REARM_MIN_FREE - 1);
        let (second, _client2) = connect(w);
        assert!(!w.conns.get(second).expect("open").io.recv_armed);
        assert_eq!(w.buf_waiters.len(), 2);
        turn(w);
        assert_eq!(w.buf_waiters.len(), 2, "granted with too few free");
        // Enough for one comes back: the first is armed, the second
        // still waits.
        w.bufs.set_available_for_test(4 * REARM_MIN_FREE);
        turn(w);
        assert_eq!(w.buf_waiters.len(), 1, "one receive granted");
        assert!(w.conns.get(key).expect("open").io.recv_armed);
        // Plenty: the second is armed too, and the first receives.
        w.bufs.set_available_for_test(usize::from(RX_BUFS));
        client.write_all(b"back again").expect("write");
        let mut back = Vec::new();
        turn_until(w, "the echo after the wait", |_| {
            read_now(&mut client, &mut back);
            back.len() >= 10
        });
        assert_eq!(back, b"back again");
        assert!(w.buf_waiters.is_empty());
        assert!(w.conns.get(second).expect("open").io.recv_armed);
    });
}

#[test]
fn receive_holding_less_than_its_cap_goes_on_uncancelled_and_alone() {
    for bundles in [true, false] {
        with_worker(bundles, |w| {
            let (key, mut client) = connect(w);
            for round in 0..3 {
                client.write_all(b"hello").expect("write");
                let mut back = Vec::new();
                turn_until(w, "the echo", |_| {
                    read_now(&mut client, &mut back);
                    back.len() >= 5
                });
                assert_eq!(back, b"hello");
                let io = &w.conns.get(key).expect("open").io;
                assert!(
                    io.recv_armed && !io.recv_cancelling,
                    "5 bytes paused the receive (bundles: {bundles}, round {round})"
                );
                assert_eq!(w.inflight, 1, "one receive in flight, no other");
            }
        });
    }
}

/// The first half of turns, until `until`: enters and completes what
/// came (receives, cancels) without driving the pumps, so what a
/// connection received stays held, and its state is the one right
/// after the receiving turn's completions.
fn complete_until(w: &mut Worker<'_>, what: &str, until: impl FnMut(&mut Worker<'_>) -> bool) {
    step_until(w, what, until, |w| {
        enter(w);
        let cqes: Vec<_> = (&mut w.cq)
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        let now = w.clock.now();
        for (ud, res, flags) in cqes {
            w.complete(ud, res, flags, now);
        }
    });
}

#[test]
fn receive_holding_its_cap_of_buffers_stops_at_once_and_is_armed_again_once_they_are_read() {
    for bundles in [false, true] {
        with_worker(bundles, |w| {
            let (key, mut client) = connect(w);
            // Small pieces, each received into a buffer of its own
            // before the next is sent: the cap of buffers comes long
            // before the cap of bytes.
            let mut sent = Vec::new();
            for held in 1..=RX_CAP_BUFFERS {
                let piece = [held as u8; 100];
                client.write_all(&piece).expect("write");
                sent.extend_from_slice(&piece);
                complete_until(w, "the piece received", |w| {
                    w.conns.get(key).expect("open").io.rx_buffers() == held
                });
                let io = &w.conns.get(key).expect("open").io;
                assert_eq!(io.rx_bytes(), sent.len());
                if held < RX_CAP_BUFFERS {
                    assert!(
                        io.recv_armed && !io.recv_cancelling,
                        "receive stopped holding {held} buffers (bundles: {bundles})"
                    );
                } else {
                    assert!(
                        !io.recv_armed || io.recv_cancelling,
                        "receive goes on holding {held} buffers (bundles: {bundles})"
                    );
                }
            }
            // Asked to pause again meanwhile: no second cancel.
            let inflight = w.inflight;
            w.pause_recv(key);
            assert_eq!(w.inflight, inflight, "a second cancel (bundles: {bundles})");
            complete_until(w, "the receive ended", |w| {
                !w.conns.get(key).expect("open").io.recv_armed
            });
            let io = &w.conns.get(key).expect("open").io;
            assert!(!io.recv_cancelling, "still cancelling once ended");
            assert_eq!(io.rx_buffers(), RX_CAP_BUFFERS, "a piece lost or added");
            // Ended, with its bytes still held: neither paused (there
            // is nothing to cancel) nor armed again, whoever asks.
            let inflight = w.inflight;
            w.pause_recv(key);
            w.arm_recv(key);
            let io = &w.conns.get(key).expect("open").io;
            assert!(
                !io.recv_armed && !io.recv_cancelling,
                "armed or cancelled with its buffers held (bundles: {bundles})"
            );
            assert_eq!(w.inflight, inflight, "a request queued");
            // The session reads them: they are echoed, and the
            // receive goes on.
            let mut back = Vec::new();
            turn_until(w, "the echo, and the receive armed again", |w| {
                read_now(&mut client, &mut back);
                back.len() >= sent.len() && w.conns.get(key).expect("open").io.recv_armed
            });
            assert!(back == sent, "bytes differ or out of order");
            client.write_all(b"more").expect("write");
            turn_until(w, "the next echo", |_| {
                read_now(&mut client, &mut back);
                back.len() >= sent.len() + 4
            });
            assert_eq!(&back[sent.len()..], b"more");
        });
    }
}

#[test]
fn peer_reset_fails_the_receive_and_the_connection_is_freed() {
    for bundles in [true, false] {
        with_worker(bundles, |w| {
            let (key, client) = connect(w);
            turn(w);
            assert!(w.conns.get(key).expect("open").io.recv_armed);
            // Linger 0: the close sends a reset.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and option of the right size.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&client),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const linger).cast(),
                    size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "SO_LINGER");
            drop(client);
            turn_until(w, "the connection freed", |w| w.conns.get(key).is_none());
            assert_eq!(w.bufs.available(), usize::from(RX_BUFS));
        });
    }
}

#[test]
fn send_completion_after_its_send_was_taken_as_whole_resets_the_connection() {
    with_worker(true, |w| {
        let (key, mut client) = connect(w);
        turn(w);
        // No send in flight: what was sent is no longer known.
        let now = w.clock.now();
        w.on_send(key, 5, now);
        client.write_all(b"echo me").expect("write");
        turn_until(w, "the connection reset and freed", |w| {
            w.conns.get(key).is_none()
        });
        let (mut back, mut buf) = (Vec::new(), [0u8; 64]);
        turn_until(w, "the reset seen", |_| match client.read(&mut buf) {
            Ok(0) => panic!("a clean end, not a reset"),
            Ok(n) => {
                back.extend_from_slice(&buf[..n]);
                false
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::ConnectionReset);
                true
            }
        });
        assert!(back.is_empty(), "echo after an unknown send: {back:?}");
    });
}

#[test]
fn unix_stream_reads_a_fin_queued_behind_a_full_cap_of_bytes() {
    // A bundle capped at RX_CAP that takes exactly the bytes queued
    // would miss the FIN queued behind them on a Unix socket (Linux
    // 6.18): Unix streams take one buffer per completion.
    with_worker(true, |w| {
        let (ours, mut client) = std::os::unix::net::UnixStream::pair().expect("pair");
        let sent = pattern(RX_CAP);
        client.write_all(&sent).expect("write");
        client.shutdown(std::net::Shutdown::Write).expect("FIN");
        client.set_nonblocking(true).expect("non-blocking");
        let now = w.clock.now();
        w.admit(OwnedFd::from(ours), StreamKind::Unix, now);
        let (mut back, mut end, mut buf) = (Vec::new(), false, vec![0u8; 64 * 1024]);
        turn_until(w, "the echo and the server's FIN", |_| {
            loop {
                match client.read(&mut buf) {
                    Ok(0) => end = true,
                    Ok(n) => {
                        back.extend_from_slice(&buf[..n]);
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("client read: {e}"),
                }
                break end;
            }
        });
        assert!(back == sent, "bytes differ or out of order");
    });
}

#[test]
fn released_connection_keeps_its_slot_until_its_cancelled_receive_ends() {
    for bundles in [true, false] {
        with_worker(bundles, |w| {
            let (key, mut client) = connect(w);
            turn(w);
            assert!(w.conns.get(key).expect("open").io.recv_armed);
            w.release(key, Teardown::Close);
            assert!(
                w.conns.get(key).is_some(),
                "freed with its receive in flight"
            );
            turn_until(w, "the receive cancelled and the slot freed", |w| {
                w.conns.get(key).is_none()
            });
            assert_eq!(w.inflight, 0, "a request left in flight");
            let mut end = false;
            turn_until(w, "the client sees the FIN", |_| {
                end |= read_now(&mut client, &mut Vec::new());
                end
            });
        });
    }
}
