//! The event loop's glue around one socket, stepped by hand with the rig
//! ([`super::rig`]): moving on to the next address, overdue windows,
//! losses against the run's budget, and what a socket's end counts.

use std::time::Duration as StdDuration;

use super::super::Pattern;
use super::super::control::StopReason;
use super::rig::{await_datagram, receive, server, spec_to, stats, with_socket};
use super::*;

#[test]
#[cfg(target_os = "linux")]
fn refused_socket_with_nothing_back_moves_to_the_next_address() {
    use super::super::{ProbeSpec, Stop};

    let closed = server().local_addr().expect("addr"); // closed at once
    let srv = server();
    let mut spec = ProbeSpec::new(Target::Udp(
        vec![closed, srv.local_addr().expect("addr")].into(),
    ));
    spec.stop = Stop::Count(2);
    spec.timeout = StdDuration::from_secs(60);
    with_socket(&spec, |env, c, poll| {
        env.drive(c, 0);
        assert!(c.phase == Phase::Running, "waiting for its echo");
        assert_eq!((stats(c).sent, c.addr_idx), (1, 0));
        super::rig::await_error(poll);
        c.readable = true;
        env.drive(c, 0);
        assert!(c.phase == Phase::Running, "moved on, not failed");
        assert_eq!(c.addr_idx, 1);
        // A fresh probe on a fresh socket: datagram 0 again, to the server.
        let (d, _) = receive(&srv);
        assert_eq!(d[..8], 0u64.to_be_bytes());
        assert_eq!((stats(c).sent, c.bytes_sent), (1, 64));
        assert_eq!(env.rec.tally(0).errors.total(), 0);
    });
}

#[test]
fn full_window_frees_when_its_datagram_is_overdue_while_more_is_to_go() {
    let srv = server();
    let spec = spec_to(srv.local_addr().expect("addr"), 2);
    with_socket(&spec, |env, c, _| {
        let now = env.ctx.clock.now();
        let p = c.probe.as_deref().expect("probe");
        assert_eq!(env.overdue_at(c, p, now), None, "the window has room");
        assert_eq!(env.pump(c), Ok(false));
        let p = c.probe.as_deref().expect("probe");
        let now = env.ctx.clock.now();
        let frees_at = p.in_flight_recent(now).1.expect("in flight");
        assert!(frees_at > now);
        assert_eq!(env.overdue_at(c, p, now), Some(frees_at));
        c.finishing = true;
        let p = c.probe.as_deref().expect("probe");
        assert_eq!(env.overdue_at(c, p, now), None, "nothing more goes");
    });
    let spec = spec_to(srv.local_addr().expect("addr"), 1);
    with_socket(&spec, |env, c, _| {
        assert_eq!(env.pump(c), Ok(false));
        let p = c.probe.as_deref().expect("probe");
        let now = env.ctx.clock.now();
        assert_eq!(env.overdue_at(c, p, now), None, "its only datagram went");
    });
}

#[test]
fn losses_are_counted_once_against_the_run_budget() {
    let srv = server();
    let mut spec = spec_to(srv.local_addr().expect("addr"), 3);
    // Longer than any stall of a loaded machine: the pump never finds its
    // datagram overdue (which would free the window for the next one).
    spec.timeout = StdDuration::from_secs(60);
    // 1 of 3 lost passes, 2 cannot.
    spec.max_loss_pct = 50.0;
    with_socket(&spec, |env, c, _| {
        let mut now = env.ctx.clock.now();
        for lost in 1..=2 {
            assert_eq!(env.pump(c), Ok(false));
            assert_eq!(stats(c).sent, lost, "one datagram in flight");
            receive(&srv); // never echoed
            // The datagram's timeout has passed: the probe is told so
            // (nobody waits for it), on a time that never goes back.
            now = now.max(env.ctx.clock.now()) + spec.timeout.into();
            c.probe.as_mut().expect("probe").handle_timeout(now);
            assert_eq!(stats(c).lost, lost);
            env.count_losses(c, now);
            env.count_losses(c, now);
            assert_eq!(c.lost_counted, lost);
            let stop = (lost == 2).then_some(StopReason::LossBudget);
            assert_eq!(env.ctx.stop.reason(), stop, "after {lost} lost");
        }
    });
}

#[test]
fn failed_socket_counts_its_datagrams_in_flight_lost_and_says_so() {
    let srv = server();
    let mut spec = spec_to(srv.local_addr().expect("addr"), 4);
    spec.pattern = Pattern::Stream;
    spec.window = 2 * 64;
    with_socket(&spec, |env, c, _| {
        assert_eq!(env.pump(c), Ok(false));
        assert_eq!(stats(c).sent, 2);
        env.finish(c, 0, Some((ErrorKind::Refused, "refused".to_owned())));
        assert!(c.phase == Phase::Failed);
        assert_eq!(env.active, 0);
        let t = env.rec.tally(0);
        let d = &t.datagrams;
        assert_eq!((d.sent, d.lost, d.lost_on_failure), (2, 2, 2));
        assert_eq!(t.bytes_sent, 128);
        assert_eq!(
            (t.refused_unverified, t.errors.refused, t.connections_ok),
            (1, 1, 0)
        );
        assert_eq!(
            t.details[0].message,
            "refused; 2 datagrams in flight counted lost"
        );
        // A socket finishes once.
        env.finish(c, 0, Some((ErrorKind::Io, "again".to_owned())));
        assert_eq!((env.rec.tally(0).errors.total(), env.active), (1, 0));
    });
}

#[test]
fn socket_failing_with_nothing_in_flight_keeps_its_message() {
    let srv = server();
    let spec = spec_to(srv.local_addr().expect("addr"), 1);
    with_socket(&spec, |env, c, _| {
        env.finish(c, 0, Some((ErrorKind::Io, "boom".to_owned())));
        let t = env.rec.tally(0);
        assert_eq!(t.details[0].message, "boom");
        assert_eq!((t.datagrams.lost, t.refused_unverified), (0, 0));
    });
}

#[test]
fn done_socket_counts_ok_only_with_nothing_corrupt_or_lost() {
    let srv = server();
    let spec = spec_to(srv.local_addr().expect("addr"), 1);
    for corrupt in [false, true] {
        with_socket(&spec, |env, c, poll| {
            assert_eq!(env.pump(c), Ok(false));
            let (mut d, from) = receive(&srv);
            if corrupt {
                d[40] ^= 0x5a;
            }
            srv.send_to(&d, from).expect("echo");
            await_datagram(poll, c);
            assert_eq!(env.pump(c), Ok(true));
            env.finish(c, 0, None);
            assert!(c.phase == Phase::Done);
            let t = env.rec.tally(0);
            assert_eq!(
                t.connections_ok,
                usize::from(!corrupt),
                "corrupt: {corrupt}"
            );
            assert_eq!(t.datagrams.corrupt, u64::from(corrupt));
        });
    }
}

#[test]
fn in_flight_is_what_was_sent_and_neither_verified_lost_nor_corrupt() {
    let s = ricochet_core::probe::DatagramProbeStats {
        sent: 10,
        verified: 4,
        lost: 2,
        corrupt: 1,
        ..Default::default()
    };
    assert_eq!(in_flight(&s), 3);
}

#[test]
fn ring_index_wraps_at_the_ring_as_the_probe_indexes_its_own() {
    assert_eq!(ring_index(5), 5);
    assert_eq!(ring_index(RING as u64 + 5), 5);
    assert_eq!(ring_index(RING as u64 - 1), RING - 1);
}

#[test]
fn corrupt_echo_is_named_by_how_its_length_differs_from_the_one_sent() {
    assert!(corrupt_message(3, 100, 101).starts_with("datagram 3 was truncated: 100 of 101 bytes"));
    assert!(
        corrupt_message(3, 102, 101)
            .starts_with("datagram 3 came back longer: 102 bytes came back for 101 sent")
    );
    assert_eq!(
        corrupt_message(3, 101, 101),
        "datagram 3 came back altered (101 bytes)"
    );
    // Its length unknown (not recorded): neither truncated nor longer.
    assert_eq!(
        corrupt_message(3, 101, 0),
        "datagram 3 came back altered (101 bytes)"
    );
}

#[test]
fn socket_moves_to_the_next_address_only_with_nothing_back_lost_or_finishing() {
    use super::super::{ProbeSpec, Stop};

    let (a, b) = (server(), server());
    let mut spec = ProbeSpec::new(Target::Udp(
        vec![a.local_addr().expect("addr"), b.local_addr().expect("addr")].into(),
    ));
    spec.stop = Stop::Count(2);
    spec.timeout = StdDuration::from_secs(60);
    // A datagram came back, if only a foreign one: a server is there.
    with_socket(&spec, |env, c, poll| {
        assert_eq!(env.pump(c), Ok(false));
        let (_, from) = receive(&a);
        a.send_to(b"junk", from).expect("send");
        await_datagram(poll, c);
        assert_eq!(env.pump(c), Ok(false));
        assert_eq!(stats(c).foreign, 1);
        assert!(!env.next_address(c, 0));
        assert_eq!(c.addr_idx, 0);
    });
    // The run is finishing, or a loss was counted: too late to move.
    with_socket(&spec, |env, c, _| {
        c.finishing = true;
        assert!(!env.next_address(c, 0));
        c.finishing = false;
        c.lost_counted = 1;
        assert!(!env.next_address(c, 0));
        c.lost_counted = 0;
        assert!(env.next_address(c, 0));
        assert_eq!(c.addr_idx, 1);
        assert!(!env.next_address(c, 0), "no address after the last");
    });
}

/// A peer that sends more than one pump reads (here 200 short foreign
/// datagrams queued at once; a flood in earnest) does not hold the thread:
/// the pump stops at its budget, and the socket's timer is due at once so
/// that the loop drives it again after the others, without an event.
#[test]
fn pump_reads_at_most_its_budget_and_the_socket_is_due_again_at_once() {
    let srv = server();
    let spec = spec_to(srv.local_addr().expect("addr"), 10);
    with_socket(&spec, |env, c, _| {
        env.drive(c, 0);
        let (_, probe_addr) = receive(&srv);
        for _ in 0..200 {
            srv.send_to(b"xyz", probe_addr).expect("send");
        }
        c.readable = true;
        env.drive(c, 0);
        assert_eq!(
            env.rec.tally(0).foreign_short,
            pump::RECV_BUDGET as u64,
            "one pump reads its budget, no more"
        );
        assert!(c.readable, "more is queued");
        let now = env.ctx.clock.now();
        assert!(
            env.timers.next().is_some_and(|at| at <= now),
            "driven again at once"
        );
        env.drive(c, 0);
        assert_eq!(env.rec.tally(0).foreign_short, 2 * pump::RECV_BUDGET as u64);
    });
}
