//! The event loop's glue stepped by hand with the rig ([`super::rig`]):
//! what a slot's timer does in each phase ([`Env::on_timer`]), how a
//! failure or a clean end is counted ([`Env::fail`], [`Env::closed`]), and
//! when the loop must stop ([`Env::must_stop`]). Times are given to the
//! probe, not waited for.

use std::io::Read;
use std::net::{Shutdown, TcpListener};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use super::super::report::{ConnError, ErrorKind};
use super::super::spec::Lifetime;
use super::super::{Pattern, Target};
use super::rig::{
    STEP, await_event, await_readable, echo, listener, receive, reset, spec_to, stats, with_conn,
};
use super::*;

/// The instant one microsecond before `t`.
fn just_before(t: Instant) -> Instant {
    Instant::from_micros(t.as_micros() - 1)
}

/// The errors recorded for target `target`.
fn errors(env: &mut Env<'_>, target: usize) -> Vec<ConnError> {
    env.rec.tally(target).details.clone()
}

/// Waits (bounded) for a connection to `l` and accepts it.
fn accept_one(l: &TcpListener) {
    l.set_nonblocking(true).expect("non-blocking");
    let deadline = StdInstant::now() + STEP;
    loop {
        match l.accept() {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(StdInstant::now() < deadline, "no connect to the listener");
                std::thread::yield_now();
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// When the slot's next paced message is due.
fn next_due<const M: usize>(c: &Conn<M>) -> Option<Instant> {
    c.probe.as_ref().and_then(|p| p.next_due())
}

/// An address of this host where nothing listens.
fn unused_addr() -> std::net::SocketAddr {
    listener().local_addr().expect("addr")
}

#[test]
fn draining_timer_fails_as_no_fin_only_once_its_deadline_passed() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 1);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        echo(&mut srv, 64);
        await_readable(poll, c);
        env.drive(c, 0);
        let Phase::Draining { deadline } = c.phase else {
            panic!("draining after the last echo");
        };
        env.on_timer(c, 0, just_before(deadline));
        assert_eq!(c.phase, Phase::Draining { deadline }, "the server has time");
        assert!(errors(env, 0).is_empty());
        env.on_timer(c, 0, deadline);
        assert_eq!(c.phase, Phase::Failed);
        let e = errors(env, 0);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, ErrorKind::NoFin, "{}", e[0].message);
        assert_eq!(env.active, 0);
    });
}

#[test]
fn running_timer_past_the_response_timeout_fails_as_a_timeout() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, _, mut srv| {
        receive(&mut srv, 64); // and never answered
        assert_eq!(env.rec.tally(0).connect.len(), 1, "counted opened at once");
        let due = c.deadline().expect("the echo's timeout");
        assert_eq!(env.timers.next(), Some(due), "its timer set");
        env.on_timer(c, 0, just_before(due));
        assert_eq!(c.phase, Phase::Running);
        assert_eq!(env.timers.next(), Some(due), "set again");
        env.on_timer(c, 0, due);
        assert_eq!(c.phase, Phase::Failed);
        let e = errors(env, 0);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, ErrorKind::Timeout, "{}", e[0].message);
        assert!(c.sock.is_none(), "its socket closed");
    });
}

#[test]
fn lifetime_ending_with_a_message_in_flight_sends_no_more_and_half_closes_after_its_echo() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 3);
    spec.lifetime = Some(Lifetime::Time(StdDuration::from_secs(1)));
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        let end = c.lifetime_end.expect("a lifetime");
        assert_eq!(c.deadline(), Some(end), "woken at its end");
        env.on_timer(c, 0, just_before(end));
        assert_eq!(c.lifetime_end, Some(end), "not over yet");
        env.on_timer(c, 0, end);
        assert_eq!((c.lifetime_end, c.phase), (None, Phase::Running));
        echo(&mut srv, 64);
        await_readable(poll, c);
        env.drive(c, 0);
        assert!(matches!(c.phase, Phase::Draining { .. }), "{:?}", c.phase);
        assert_eq!(stats(c).messages_sent, 1, "none after its end");
    });
}

#[test]
fn connecting_timer_waits_for_the_deadline_then_tries_the_next_address() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 1);
    let second = listener();
    let addrs = vec![unused_addr(), second.local_addr().expect("addr")];
    spec.targets.push(Target::Tcp(addrs.into()));
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, _, _, _srv| {
        let now = env.ctx.clock.now();
        let deadline = now + spec.timeout.into();
        let mut conns: [Conn<PINGPONG_SLOTS>; 2] = [Conn::new(0, 0, now), Conn::new(1, 1, now)];
        let c = &mut conns[1];
        c.phase = Phase::Connecting {
            attempt: 0,
            deadline,
        };
        (env.connecting, env.active) = (1, 2);
        env.on_timer(c, 1, just_before(deadline));
        assert_eq!(
            c.phase,
            Phase::Connecting {
                attempt: 0,
                deadline
            },
            "not given up before its deadline"
        );
        env.on_timer(c, 1, deadline);
        assert_eq!(c.failed_attempts.len(), 1, "the first address named");
        assert!(c.failed_attempts[0].1.contains("no answer"));
        accept_one(&second);
        assert!(c.sock.is_some());
        match c.phase {
            Phase::Connecting {
                attempt,
                deadline: d,
            } => {
                assert_eq!(attempt, 1);
                assert_eq!(d, deadline + spec.timeout.into(), "a timeout of its own");
            }
            Phase::Running => assert_eq!(c.sessions, 1),
            p => panic!("{p:?}"),
        }
        assert!(errors(env, 1).is_empty());
    });
}

#[test]
fn connecting_timer_at_the_last_address_fails_naming_every_address() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 1);
    let addrs = vec![unused_addr(), unused_addr()];
    spec.targets.push(Target::Tcp(addrs.into()));
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, _, _, _srv| {
        let now = env.ctx.clock.now();
        let mut conns: [Conn<PINGPONG_SLOTS>; 2] = [Conn::new(0, 0, now), Conn::new(1, 1, now)];
        let c = &mut conns[1];
        c.failed_attempts.push((false, "first: no answer".into()));
        c.phase = Phase::Connecting {
            attempt: 1,
            deadline: now,
        };
        (env.connecting, env.active) = (1, 2);
        env.on_timer(c, 1, now);
        assert_eq!((c.phase, env.connecting, env.active), (Phase::Failed, 0, 1));
        let e = errors(env, 1);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, ErrorKind::ConnectTimeout);
        assert!(
            e[0].message.contains("each of 2 addresses"),
            "{}",
            e[0].message
        );
    });
}

#[test]
fn connecting_timer_of_a_plain_tcp_connect_is_no_handshake_failure() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 1);
    spec.targets.push(Target::Tcp(vec![unused_addr()].into()));
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, _, _, _srv| {
        let now = env.ctx.clock.now();
        let mut conns: [Conn<PINGPONG_SLOTS>; 2] = [Conn::new(0, 0, now), Conn::new(1, 1, now)];
        let c = &mut conns[1];
        c.phase = Phase::Connecting {
            attempt: 0,
            deadline: now,
        };
        (env.connecting, env.active) = (1, 2);
        env.on_timer(c, 1, now);
        let e = errors(env, 1);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, ErrorKind::ConnectTimeout, "{}", e[0].message);
        assert!(e[0].message.contains("no answer"), "{}", e[0].message);
    });
}

#[test]
fn backlog_retry_timer_waits_redials_at_its_time_and_fails_at_its_deadline() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 1);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, _, _, _srv| {
        let now = env.ctx.clock.now();
        let at = now + StdDuration::from_millis(1).into();
        let deadline = now + StdDuration::from_secs(1).into();
        let mut conns: [Conn<PINGPONG_SLOTS>; 2] = [Conn::new(0, 0, now), Conn::new(1, 0, now)];
        let c = &mut conns[1];
        c.phase = Phase::ConnectRetry { at, deadline };
        (env.connecting, env.active) = (1, 2);
        env.on_timer(c, 1, just_before(at));
        assert_eq!(c.phase, Phase::ConnectRetry { at, deadline }, "not yet");
        assert!(c.sock.is_none());
        env.on_timer(c, 1, at);
        assert!(c.sock.is_some(), "redialed at its time");
        accept_one(&l);
        assert!(errors(env, 0).is_empty());
        env.close_socket(c);
        c.phase = Phase::ConnectRetry { at, deadline };
        env.on_timer(c, 1, deadline);
        assert_eq!(c.phase, Phase::Failed);
        let e = errors(env, 0);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, ErrorKind::ConnectTimeout);
        assert!(e[0].message.contains("backlog"), "{}", e[0].message);
    });
}

#[test]
fn reset_before_any_echo_fails_the_slot_and_counts_an_unverified_reset() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        receive(&mut srv, 64);
        reset(srv);
        await_event(poll, |e| e.is_read_closed() || e.is_error());
        c.readable = true;
        env.drive(c, 0);
        assert_eq!((c.phase, env.active), (Phase::Failed, 0));
        let t = env.rec.tally(0);
        assert_eq!((t.reset_unverified, t.closed_unverified), (1, 0));
        assert_eq!(t.messages_sent, 1, "its probe's counts kept");
    });
}

#[test]
fn reset_after_a_verified_echo_is_no_unverified_reset() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        echo(&mut srv, 64);
        reset(srv);
        await_event(poll, |e| e.is_read_closed() || e.is_error());
        (c.readable, c.read_closed) = (true, false);
        env.drive(c, 0);
        assert_eq!(c.phase, Phase::Failed);
        let t = env.rec.tally(0);
        assert_eq!(t.bytes_verified, 64);
        assert_eq!((t.reset_unverified, t.closed_unverified), (0, 0));
    });
}

#[test]
fn fin_before_any_echo_fails_the_slot_and_counts_an_unverified_close() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, mut srv| {
        receive(&mut srv, 64);
        srv.shutdown(Shutdown::Write).expect("the server's FIN");
        await_readable(poll, c);
        env.drive(c, 0);
        assert_eq!(c.phase, Phase::Failed);
        let t = env.rec.tally(0);
        assert_eq!((t.reset_unverified, t.closed_unverified), (0, 1));
        assert_eq!(t.details[0].kind, ErrorKind::EarlyClose);
    });
}

/// Runs slot 0's one message (`crr`) to its clean close.
fn close_cleanly<const M: usize>(
    env: &mut Env<'_>,
    c: &mut Conn<M>,
    poll: &mut mio::Poll,
    mut srv: std::net::TcpStream,
) {
    echo(&mut srv, 64);
    await_readable(poll, c);
    env.drive(c, 0);
    let mut fin = Vec::new();
    srv.read_to_end(&mut fin).expect("our FIN");
    srv.shutdown(Shutdown::Write).expect("the server's FIN");
    await_readable(poll, c);
    env.drive(c, 0);
}

#[test]
fn clean_close_of_the_counts_last_connection_finishes_the_slot_ok() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 1);
    spec.pattern = Pattern::Crr;
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, srv| {
        close_cleanly(env, c, poll, srv);
        assert_eq!(c.phase, Phase::Done, "the count is used up");
        assert_eq!((c.messages_done, env.active), (1, 0));
        let t = env.rec.tally(0);
        assert_eq!((t.connections_ok, t.completed), (1, 1));
        assert!(env.queue.is_empty());
    });
}

#[test]
fn clean_close_of_a_paced_churning_slot_queues_its_next_connection_at_its_next_due() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 2);
    spec.pattern = Pattern::Crr;
    spec.rate = Some(1.0); // the second message a second after the first
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, poll, srv| {
        let origin = c.origin.expect("its schedule");
        close_cleanly(env, c, poll, srv);
        let Phase::Queued { at } = c.phase else {
            panic!("its next connection: {:?}", c.phase);
        };
        assert_eq!(at, origin + StdDuration::from_secs(1).into());
        assert_eq!(env.queue.peek(), Some(&Reverse((at, 0))));
        assert_eq!(env.active, 1);
    });
}

#[test]
fn must_stop_at_an_interrupt_until_cut_but_not_before() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 1);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, _, _, _srv| {
        let now = env.ctx.clock.now();
        assert!(!env.must_stop(now), "no duration, no interrupt");
        env.finishing = true;
        assert!(!env.must_stop(now), "finishing, not interrupted");
        env.finishing = false;
        env.ctx.stop.interrupt();
        assert!(env.must_stop(now));
        env.finishing = true;
        assert!(env.must_stop(now), "finishing: an interrupt still cuts");
        env.cut = true;
        assert!(!env.must_stop(now), "cut already");
    });
}

/// Hands slot `idx`'s readiness events to [`Env::on_ready`], as the loop
/// does, until `done` (bounded by [`STEP`]).
fn events_until<const M: usize>(
    env: &mut Env<'_>,
    c: &mut Conn<M>,
    idx: usize,
    poll: &mut mio::Poll,
    done: impl Fn(&Conn<M>) -> bool,
) {
    let deadline = StdInstant::now() + STEP;
    let mut events = mio::Events::with_capacity(8);
    while !done(c) {
        let left = deadline
            .checked_duration_since(StdInstant::now())
            .expect("the slot's events in time");
        poll.poll(&mut events, Some(left)).expect("poll");
        for ev in events.iter().filter(|e| e.token().0 == idx) {
            c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
            c.read_closed |= ev.is_read_closed() || ev.is_error();
            c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
            env.on_ready(c, idx);
        }
    }
}

#[test]
fn connecting_slot_connects_on_its_event_then_reads_its_echo_on_the_next() {
    let l = listener();
    let spec = spec_to(l.local_addr().expect("addr"), 2);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, _, poll, _srv| {
        let now = env.ctx.clock.now();
        let mut conns: [Conn<PINGPONG_SLOTS>; 2] = [Conn::new(0, 0, now), Conn::new(1, 0, now)];
        let c = &mut conns[1];
        env.active = 2;
        env.start(c, 1, now);
        events_until(env, c, 1, poll, |c| c.phase == Phase::Running);
        assert_eq!((c.sessions, env.connecting), (1, 0));
        let (mut srv, _) = l.accept().expect("accept");
        srv.set_read_timeout(Some(STEP)).expect("read timeout");
        echo(&mut srv, 64);
        events_until(env, c, 1, poll, |c| stats(c).messages_verified == 1);
        assert_eq!(stats(c).messages_sent, 2, "the next one sent");
    });
}

#[test]
fn stop_at_the_durations_end_counts_the_paced_messages_the_window_held_back() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 100);
    spec.rate = Some(1000.0); // one message a millisecond
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, _, mut srv| {
        receive(&mut srv, 64); // never answered: ping-pong holds the next ones back
        let origin = c.origin.expect("its schedule");
        let due = next_due(c);
        let step = Duration::from_micros(1_000);
        assert_eq!(due, Some(origin + step), "the second message's time");
        let due = origin + step;
        // Ten more have come due by then (at 1, 2, ... 10 ms after the
        // first's start); none could start.
        let now = origin + Duration::from_micros(10_500);
        env.stop_sending(std::slice::from_mut(c), now);
        assert!(env.finishing && !env.cut, "finishing, not cut");
        assert_eq!(c.unsent, Some((due, 10)));
        assert_eq!(env.rec.tally(0).messages_cut, 0);
    });
}

#[test]
fn stop_before_the_next_paced_message_is_due_counts_none_held_back() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 100);
    spec.rate = Some(1000.0);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, _, mut srv| {
        receive(&mut srv, 64);
        let due = next_due(c).expect("due");
        env.stop_sending(std::slice::from_mut(c), just_before(due));
        assert_eq!(c.unsent, None);
    });
}

#[test]
fn interrupt_with_a_message_half_written_cuts_it_short_and_counts_it() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 1);
    // Far more than the sockets hold: the server reads nothing, so the
    // first write leaves the message half sent.
    spec.size = ricochet_core::probe::SizeRange::fixed(256 << 20);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, _, _srv| {
        let sent = stats(c).bytes_sent;
        assert!(sent > 0 && sent < 256 << 20, "half sent: {sent}");
        env.ctx.stop.interrupt();
        let now = env.ctx.clock.now();
        env.stop_sending(std::slice::from_mut(c), now);
        assert!(env.finishing && env.cut);
        assert_eq!(env.rec.tally(0).messages_cut, 1);
    });
}

#[test]
fn interrupt_between_messages_cuts_none_and_counts_none_held_back() {
    let l = listener();
    let mut spec = spec_to(l.local_addr().expect("addr"), 100);
    spec.rate = Some(1000.0);
    with_conn::<PINGPONG_SLOTS>(&spec, &l, |env, c, _, mut srv| {
        receive(&mut srv, 64); // written whole, its echo pending
        let due = next_due(c).expect("due");
        env.ctx.stop.interrupt();
        env.stop_sending(std::slice::from_mut(c), due + Duration::from_micros(10_000));
        assert!(env.finishing && env.cut);
        assert_eq!(env.rec.tally(0).messages_cut, 0, "nothing was half sent");
        assert_eq!(c.unsent, None, "an interrupt does not wait for the rest");
    });
}
