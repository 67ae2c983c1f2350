//! The worker's exit (`Worker::release_all`): which connections end with
//! a reset and which with the clean close they already began.

use std::io::Write;

use super::live::{connect, read_now, turn, turn_until, with_worker};
use super::*;
use crate::serve::uring::conn::Socket;

/// Whether connection `key`'s socket is set to reset on close (`SO_LINGER`
/// on with a zero timeout).
fn resets_on_close(w: &Worker<'_>, key: usize) -> bool {
    let conn = w.conns.get(key).expect("open");
    let Socket::Tcp(s) = &conn.io.socket else {
        panic!("a TCP connection");
    };
    let linger = socket2::SockRef::from(s).linger().expect("SO_LINGER");
    linger == Some(std::time::Duration::ZERO)
}

/// Echoes `data` on connection `key` and, once the client has it all,
/// closes the session gracefully: the worker sends the FIN and lingers.
fn echo_then_close(w: &mut Worker<'_>, key: usize, client: &mut std::net::TcpStream) {
    client.write_all(b"abc").expect("write");
    let mut back = Vec::new();
    turn_until(w, "the echo", |_| {
        read_now(client, &mut back);
        back.len() >= 3
    });
    assert_eq!(back, b"abc");
    let now = w.clock.now();
    w.conns.get_mut(key).expect("open").pump.close(now);
    w.mark_ready(key);
}

/// A connection lingering after a clean close whose echo and FIN have all
/// left the process keeps its clean end at the worker's exit: its socket
/// is not set to reset: the kernel may still be delivering the tail of the
/// echo, which a reset would throw away, and the peer would read an error
/// after the clean end it was sent.
#[test]
fn lingering_connection_with_everything_sent_is_not_reset_at_exit() {
    with_worker(false, |w| {
        let (key, mut client) = connect(w);
        echo_then_close(w, key, &mut client);
        let mut end = false;
        turn_until(w, "the client sees the FIN", |_| {
            end |= read_now(&mut client, &mut Vec::new());
            end
        });
        let conn = w.conns.get(key).expect("lingering");
        assert!(conn.pump.is_finishing() && !conn.pump.is_released());
        assert_eq!(conn.io.unsent(), 0, "echo and FIN sent");
        w.release_all();
        assert!(
            !resets_on_close(w, key),
            "a clean close turned into a reset at exit"
        );
    });
}

/// A live session at the worker's exit is cut short with a reset: its
/// peer must not take the end for a clean one.
#[test]
fn running_session_is_reset_at_exit() {
    with_worker(false, |w| {
        let (key, mut client) = connect(w);
        client.write_all(b"abc").expect("write");
        let mut back = Vec::new();
        turn_until(w, "the echo", |_| {
            read_now(&mut client, &mut back);
            back.len() >= 3
        });
        w.release_all();
        assert!(resets_on_close(w, key), "a running session closed cleanly");
    });
}

/// The bundle check's receive, when the check gave up and could not end
/// it, is counted among the worker's requests: what it brings goes back to
/// the ring, and the exit waits for its end (`with_worker` asserts that the
/// drain leaves nothing in flight) before the buffers it may fill are freed.
#[test]
fn check_receive_left_in_flight_gives_its_buffers_back_and_is_waited_for_at_exit() {
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use crate::serve::uring::bundle::{Limit, check_user_data, recv_bundle};
    use crate::serve::uring::ring::Target;

    with_worker(false, |w| {
        let (mut tx, rx) = UnixStream::pair().expect("socket pair");
        rx.set_nonblocking(true).expect("non-blocking");
        let all = w.bufs.available();
        let sqe = recv_bundle(
            Target::Fd(rx.as_raw_fd()),
            w.bufs.bgid(),
            RX_CAP as u32,
            Limit::PerCompletion,
        )
        .user_data(check_user_data());
        w.push_uncounted(&sqe);
        w.count_check_receive();
        tx.write_all(&[7; 3 * RX_BUF_SIZE]).expect("write");
        let rx = socket2::SockRef::from(&rx);
        turn_until(w, "the check's receive takes the bytes", |w| {
            let mut peek = [MaybeUninit::uninit(); 1];
            let drained =
                matches!(rx.peek(&mut peek), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            drained && w.bufs.available() == all
        });
        // The receive is still armed (no end of stream): the exit cancels
        // it and must see its last completion.
    });
}

/// A connection released while a send is in flight, whose send then comes
/// back asking to wait for room (EAGAIN, or a short send), is freed once
/// nothing else is in flight: the released connection waits for no room,
/// and no poll is armed for it. Before, it stayed in its slot until the
/// worker's exit, its peer never saw the end, and it counted against
/// `--max-connections` for good.
#[test]
fn released_connection_whose_send_in_flight_comes_back_unfinished_is_freed() {
    with_worker(false, |w| {
        let (key, _client) = connect(w);
        turn(w);
        // A send pushed before the release (one byte, as the worker counts
        // it), its completion not yet reaped; then it comes back: EAGAIN.
        w.conns.get_mut(key).expect("open").io.tx_inflight = 1;
        w.release(key, Teardown::Reset);
        let now = w.clock.now();
        w.on_send(key, -libc::EAGAIN, now);
        turn_until(w, "the released connection freed", |w| {
            w.conns.get(key).is_none()
        });
    });
}
