//! One stream connection's I/O loop ([`Env::pump`]) stepped by hand with
//! the rig ([`super::rig`]) against a server socket the test drives: what
//! it writes and when, what it reads and verifies, how it half-closes, and
//! what a server's reset or close mid-run says.

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration as StdDuration;

use ricochet_core::Mode;

use super::super::report::ErrorKind;
use super::super::{Pattern, Target};
use super::rig::{
    await_event, await_readable, echo, listener, outcome, receive, reset, spec_to, stats,
    with_conn, with_slot,
};
use super::*;

#[test]
fn echo_read_verifies_it_and_sends_the_next_message_in_the_same_step() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 3);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        assert_eq!(stats(c).messages_sent, 1, "the first message went at once");
        for sent in 2..=3 {
            echo(&mut srv, 64);
            await_readable(poll, c);
            assert_eq!(outcome(env.pump(c)), Ok(false));
            let s = stats(c);
            assert_eq!(
                (s.messages_verified, s.bytes_verified),
                (sent - 1, 64 * (sent - 1))
            );
            assert_eq!(s.messages_sent, sent, "sent on the echo that freed it");
            assert!(c.writable && !c.socket_full, "the socket took it all");
            assert_eq!(c.write_blocked_since, None);
            assert!(!c.readable, "a short read drained the socket");
        }
        let t = env.rec.tally(0);
        assert_eq!(t.first_byte.len(), 1, "one first byte per connection");
        assert_eq!(t.rtt.len(), 2, "a round trip per echo");
    });
}

#[test]
fn last_echo_half_closes_and_the_servers_fin_then_closes_cleanly() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 1);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        echo(&mut srv, 64);
        await_readable(poll, c);
        let before = env.ctx.clock.now();
        assert_eq!(outcome(env.pump(c)), Ok(false));
        let Phase::Draining { deadline } = c.phase else {
            panic!("draining after the last echo");
        };
        assert!(
            deadline >= before + spec.timeout.into(),
            "the server has the timeout"
        );
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut srv, &mut rest).expect("our FIN");
        assert!(rest.is_empty(), "nothing after the last message");
        srv.shutdown(Shutdown::Write).expect("the server's FIN");
        await_readable(poll, c);
        assert_eq!(outcome(env.pump(c)), Ok(true));
    });
}

#[test]
fn socket_marked_full_reading_an_echo_writes_nothing_until_writable() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 3);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        c.writable = false; // as a write that would block leaves it
        echo(&mut srv, 64);
        await_readable(poll, c);
        assert_eq!(outcome(env.pump(c)), Ok(false));
        assert_eq!((stats(c).messages_verified, stats(c).messages_sent), (1, 1));
        c.writable = true;
        assert_eq!(outcome(env.pump(c)), Ok(false));
        assert_eq!(stats(c).messages_sent, 2, "sent on the writable edge");
    });
}

#[test]
fn read_filling_the_buffer_reads_on_until_the_socket_is_drained() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        env.rbuf = vec![0; 16];
        echo(&mut srv, 64);
        await_readable(poll, c);
        assert_eq!(outcome(env.pump(c)), Ok(false));
        assert_eq!(
            stats(c).bytes_verified,
            64,
            "four full reads, no edge between"
        );
        assert_eq!(stats(c).messages_sent, 2);
    });
}

#[test]
fn echo_and_fin_in_one_event_end_the_connection_in_one_step() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 1);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        echo(&mut srv, 64);
        srv.shutdown(Shutdown::Write).expect("the server's FIN");
        await_event(poll, mio::event::Event::is_read_closed);
        (c.readable, c.read_closed) = (true, true);
        // No further event comes: the FIN queued behind the echo is read now.
        assert_eq!(outcome(env.pump(c)), Ok(true));
        assert_eq!(stats(c).bytes_verified, 64);
    });
}

#[test]
fn readable_edge_with_nothing_queued_waits_for_the_next() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, _, _| {
        c.readable = true;
        assert_eq!(outcome(env.pump(c)), Ok(false));
        assert!(!c.readable, "the read would block");
        assert_eq!(c.phase, Phase::Running);
    });
}

#[test]
fn reset_met_by_a_read_fails_as_a_reset() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        receive(&mut srv, 64);
        reset(srv);
        await_event(poll, |e| e.is_read_closed() || e.is_error());
        c.readable = true;
        let e = outcome(env.pump(c)).expect_err("a reset");
        assert_eq!(e.kind, ErrorKind::EarlyClose);
        assert!(
            e.message.contains("reset") && e.message.contains("read"),
            "{}",
            e.message
        );
    });
}

#[test]
fn reset_met_by_a_write_fails_as_a_reset() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        echo(&mut srv, 64);
        reset(srv);
        await_event(poll, |e| e.is_read_closed() || e.is_error());
        // The echo is read first (its read short, the end not yet known
        // to the loop): the next message's write meets the reset.
        (c.readable, c.read_closed) = (true, false);
        let e = outcome(env.pump(c)).expect_err("a reset");
        assert_eq!(stats(c).messages_verified, 1);
        assert_eq!(e.kind, ErrorKind::EarlyClose);
        assert!(
            e.message.contains("reset") && e.message.contains("write"),
            "{}",
            e.message
        );
    });
}

#[test]
fn server_not_reading_fills_the_socket_and_the_rest_waits_for_writable() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 4096);
    spec.pattern = Pattern::Stream;
    spec.size = ricochet_core::probe::SizeRange::fixed(64 * 1024);
    spec.window = 1 << 30;
    with_conn::<STREAM_SLOTS>(&spec, &l, |env, c, _, _srv| {
        assert_eq!(c.phase, Phase::Running, "a full socket is no failure");
        assert!(!c.writable && c.socket_full && c.held);
        assert!(c.write_blocked_since.is_some());
        let mut sent = stats(c).bytes_sent;
        assert!(0 < sent && sent < 4096 * 64 * 1024);
        assert_eq!(outcome(env.pump(c)), Ok(false));
        assert_eq!(stats(c).bytes_sent, sent, "nothing more until writable");
        // Writable edges while the server still does not read: the socket
        // takes what room it has left, then refuses (would block).
        for _ in 0..64 {
            c.writable = true;
            assert_eq!(outcome(env.pump(c)), Ok(false));
            assert!(!c.writable && c.socket_full && c.held);
            if stats(c).bytes_sent == sent {
                return; // refused, and waiting again
            }
            sent = stats(c).bytes_sent;
        }
        panic!("the socket never refused a write");
    });
}

#[test]
fn message_held_by_the_one_in_flight_is_late_only_from_the_echo_that_frees_it() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 2);
    spec.rate = Some(1000.0); // one every millisecond
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        assert_eq!(
            env.rec.tally(0).late.len(),
            1,
            "the first message's lateness"
        );
        // Not synchronisation: the second message falls due meanwhile,
        // and the timer's step finds it held by the first.
        std::thread::sleep(StdDuration::from_millis(5));
        assert_eq!(outcome(env.pump(c)), Ok(false));
        assert!(c.held);
        let first = env.rec.tally(0).late.max();
        // The server takes its time: the probe is not late meanwhile.
        std::thread::sleep(StdDuration::from_millis(50));
        echo(&mut srv, 64);
        await_readable(poll, c);
        let before = env.ctx.clock.now();
        assert_eq!(outcome(env.pump(c)), Ok(false));
        // The step reads the echo, then writes the second message: late by
        // no more than the step took (a loaded machine only makes it longer).
        let step = env.ctx.clock.now().saturating_since(before).as_micros();
        assert_eq!(stats(c).messages_sent, 2);
        let late = &env.rec.tally(0).late;
        assert_eq!(late.len(), 2);
        assert!(
            late.max() <= first.max(step),
            "late by {} us in a step of {step} us (the first {first} us)",
            late.max()
        );
    });
}

#[test]
fn frames_header_changed_after_a_piece_names_the_frame_start() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 2);
    spec.mode = Mode::Frames;
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        let first = stats(c).bytes_sent as usize;
        echo(&mut srv, first);
        await_readable(poll, c);
        assert_eq!(outcome(env.pump(c)), Ok(false));
        let start = stats(c).bytes_verified;
        let len = (stats(c).bytes_sent - start) as usize;
        let mut second = receive(&mut srv, len);
        // Its first byte alone, read as a piece of its own.
        srv.write_all(&second[..1]).expect("a piece");
        await_readable(poll, c);
        assert_eq!(outcome(env.pump(c)), Ok(false));
        assert_eq!(stats(c).bytes_verified, start + 1);
        second[1] ^= 0xff;
        srv.write_all(&second[1..]).expect("the rest");
        await_readable(poll, c);
        let e = outcome(env.pump(c)).expect_err("a mismatch");
        assert_eq!((e.kind, e.offset), (ErrorKind::Mismatch, Some(start + 1)));
        let named = format!("length header of the frame that starts at stream offset {start}:");
        assert!(e.message.contains(&named), "{}", e.message);
    });
}

#[test]
fn launch_starts_the_slots_due_as_the_connects_in_flight_allow_and_says_when_next() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 1);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, _, _, _srv| {
        let now = env.ctx.clock.now();
        let later = now + StdDuration::from_secs(1).into();
        let mut conns: [Conn<PINGPONG_SLOTS>; 2] = [Conn::new(1, 0, now), Conn::new(2, 0, later)];
        env.queue.push(Reverse((now, 0)));
        env.queue.push(Reverse((later, 1)));
        assert_eq!(env.launch(&mut conns, now), Some(later));
        assert!(
            !matches!(conns[0].phase, Phase::Queued { .. }),
            "due: started"
        );
        assert!(conns[0].sock.is_some(), "dialed");
        assert_eq!(
            conns[0].sessions + env.connecting as u64,
            1,
            "connected or connecting"
        );
        assert!(
            matches!(conns[1].phase, Phase::Queued { .. }),
            "not due yet"
        );
        // Every connect in flight taken: nothing starts, a connect
        // finishing moves the queue on.
        let busy = env.connecting;
        env.connecting = env.ctx.connect_limit();
        assert_eq!(env.launch(&mut conns, later), None);
        assert!(matches!(conns[1].phase, Phase::Queued { .. }));
        // Finishing: nothing starts.
        (env.connecting, env.finishing) = (busy, true);
        assert_eq!(env.launch(&mut conns, later), None);
        assert!(matches!(conns[1].phase, Phase::Queued { .. }));
        env.finishing = false;
        assert_eq!(env.launch(&mut conns, later), None, "nothing left");
        assert!(!matches!(conns[1].phase, Phase::Queued { .. }));
    });
}

#[test]
fn stale_queue_entry_of_a_started_slot_starts_nothing() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 1);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, _, _srv| {
        let now = env.ctx.clock.now();
        env.queue.push(Reverse((now, 0)));
        let sessions = c.sessions;
        assert_eq!(env.launch(std::slice::from_mut(c), now), None);
        assert_eq!((c.phase, c.sessions), (Phase::Running, sessions));
    });
}

#[test]
fn finishing_counts_queued_slots_that_connected_ok_and_the_others_not_started() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 2);
    spec.pattern = Pattern::Crr;
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        env.active = 3;
        echo(&mut srv, 64);
        await_readable(poll, c);
        env.drive(c, 0);
        let mut fin = Vec::new();
        std::io::Read::read_to_end(&mut srv, &mut fin).expect("our FIN");
        srv.shutdown(Shutdown::Write).expect("the server's FIN");
        await_readable(poll, c);
        env.drive(c, 0);
        assert!(
            matches!(c.phase, Phase::Queued { .. }),
            "its next connection"
        );
        assert_eq!((c.sessions, c.messages_done, env.active), (1, 1, 3));
        let now = env.ctx.clock.now();
        env.drop_queue(std::slice::from_mut(c));
        assert_eq!(c.phase, Phase::Done);
        let t = env.rec.tally(0);
        assert_eq!((t.connections_ok, t.not_started), (1, 0));
        assert_eq!(env.active, 2);
        // A slot that never connected; a stale entry of a running one.
        let mut fresh: [Conn<PINGPONG_SLOTS>; 1] = [Conn::new(1, 0, now)];
        env.queue.push(Reverse((now, 0)));
        env.drop_queue(&mut fresh);
        assert_eq!(fresh[0].phase, Phase::Done);
        let t = env.rec.tally(0);
        assert_eq!((t.connections_ok, t.not_started), (1, 1));
        let mut running: [Conn<PINGPONG_SLOTS>; 1] = [Conn::new(2, 0, now)];
        running[0].phase = Phase::Running;
        env.queue.push(Reverse((now, 0)));
        env.drop_queue(&mut running);
        assert_eq!((running[0].phase, env.active), (Phase::Running, 1));
        assert!(env.queue.is_empty());
    });
}

#[test]
fn paced_slot_starts_its_schedule_its_share_into_the_interval() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 1);
    spec.connections = 2;
    // Each connection one message in 10 s, slot 1 starting 5 s in: far
    // longer than a loaded machine takes to reach the assertions.
    spec.rate = Some(0.2);
    with_slot::<PINGPONG_SLOTS>(&spec, &l, 1, |env, c, _, _srv| {
        let origin = c.origin.expect("its schedule");
        assert!(
            origin > env.ctx.clock.now(),
            "its first message is not due yet"
        );
        assert_eq!(c.deadline(), Some(origin), "woken when it is");
        assert_eq!(stats(c).messages_sent, 0);
    });
}

#[test]
fn connects_left_in_progress_by_a_full_backlog_count_as_in_flight() {
    // A listener that never accepts, with the smallest backlog: the kernel
    // completes one or two handshakes, then drops further SYNs.
    let full =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    full.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    full.listen(0).expect("listen");
    let full_addr = full.local_addr().expect("addr").as_socket().expect("inet");
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 1);
    spec.targets.push(Target::Tcp(vec![full_addr].into()));
    spec.connections = 5;
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, _, _, _srv| {
        let now = env.ctx.clock.now();
        let mut conns: Vec<Conn<PINGPONG_SLOTS>> = (1..5).map(|id| Conn::new(id, 1, now)).collect();
        for idx in 0..conns.len() {
            env.queue.push(Reverse((now, idx)));
        }
        assert_eq!(env.launch(&mut conns, now), None);
        let connecting = conns.iter().filter(|c| c.is_connecting()).count();
        assert!(connecting >= 2, "{connecting} connects left in progress");
        assert_eq!(env.connecting, connecting);
    });
    drop(full);
}
