use std::net::{TcpListener, TcpStream};

use super::*;

const SIZE: usize = 4096;

fn ring_and_bufs() -> (IoUring, BufRing) {
    let ring = super::super::ring::build().expect("ring");
    let bufs = BufRing::new(16, SIZE, 0).expect("bufs");
    bufs.register(&ring.submitter()).expect("register");
    (ring, bufs)
}

/// A connected TCP pair on loopback (port 0).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (b, _) = l.accept().expect("accept");
    (a, b)
}

/// `len` pattern bytes and a FIN queued on the receiving side of a
/// TCP pair: that side, and the bytes.
fn queued_with_fin(len: usize) -> (TcpStream, Vec<u8>) {
    let (mut a, b) = tcp_pair();
    let sent: Vec<u8> = (0..len).map(pattern).collect();
    a.write_all(&sent).expect("write");
    drop(a);
    (b, sent)
}

/// Runs `sqe` (user data 1) until its last completion (2 s at most):
/// the bytes each completion brought and how many buffers it took,
/// and everything received, in order. Every buffer goes back.
fn run(ring: &mut IoUring, bufs: &mut BufRing, sqe: Sqe) -> (Vec<(i32, usize)>, Vec<u8>) {
    push(ring, &sqe.user_data(1)).expect("push");
    let (mut shots, mut got) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (_, cqes) = reap(ring, Duration::from_millis(50));
        for (_, res, flags) in cqes {
            let took = take_filled(bufs, res, flags, &mut got);
            shots.push((res, took));
            if !cqueue::more(flags) {
                return (shots, got);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no last completion; so far {shots:?}"
        );
    }
}

#[test]
fn check_receive_is_a_receive_of_no_connection_and_its_cancel_a_cancel() {
    use super::super::ring::{Op, decode, user_data};
    // A late completion of the check's receive reaches the worker's
    // receive path, which finds no connection and recycles its buffers.
    assert_eq!(decode(check_user_data()), Some((Op::Recv, u32::MAX, 0)));
    assert_eq!(
        decode(check_cancel_user_data()),
        Some((Op::Cancel, u32::MAX, 0))
    );
    for other in [
        user_data(Op::Recv, 0, 0),
        user_data(Op::Cancel, 0, 0),
        user_data(Op::Send, u32::MAX, 0),
    ] {
        assert!(
            other != check_user_data() && other != check_cancel_user_data(),
            "{other:#x} is not the check's"
        );
    }
}

#[test]
fn check_bytes_differ_from_one_buffer_to_the_next_and_byte_to_byte() {
    // Buffers out of ring order, or a byte repeated, must not come back
    // equal to what was sent.
    let sent: Vec<u8> = (0..3 * SIZE + 100).map(pattern).collect();
    assert!(
        sent.windows(2).all(|w| w[0] != w[1]),
        "a byte repeats its neighbour"
    );
    let chunks: Vec<&[u8]> = sent.chunks(SIZE).collect();
    for (i, a) in chunks.iter().enumerate() {
        for b in &chunks[i + 1..] {
            assert!(a[..b.len()] != **b, "two buffers start alike");
        }
    }
}

#[test]
fn limits_and_reasons_say_what_they_are() {
    assert_eq!(
        Limit::Total.to_string(),
        "per arm (the receive ends at the cap)"
    );
    assert_eq!(
        Limit::PerCompletion.to_string(),
        "per completion (the receive is paused at the cap)"
    );
    for (why, says) in [
        (Unsupported::NoBundles, "no receive bundles"),
        (Unsupported::NoCap(22), "errno 22"),
        (
            Unsupported::CapIgnored {
                cap: 8192,
                took: 12288,
            },
            "took 12288 bytes past its cap of 8192",
        ),
        (Unsupported::Garbled, "not in ring order"),
        (Unsupported::CheckFailed("why".into()), "could not run: why"),
        (
            Unsupported::ReceiveLeft("why".into()),
            "could not run (why) and its receive did not end",
        ),
        (
            Unsupported::ReceiveLeft("why".into()),
            "could not run (why) and its receive did not end",
        ),
    ] {
        assert!(why.to_string().contains(says), "{why:?}: {why}");
    }
}

#[test]
fn check_whose_receive_fails_reports_the_errno_and_leaves_the_buffers() {
    // No buffer group registered: every receive fails at once
    // (ENOENT), with the total limit and without it.
    let mut ring = super::super::ring::build().expect("ring");
    let mut bufs = BufRing::new(16, SIZE, 0).expect("bufs");
    assert_eq!(
        check(&mut ring, &mut bufs, SIZE),
        Err(Unsupported::NoCap(libc::ENOENT))
    );
    assert_eq!(bufs.available(), 16);
}

#[test]
fn check_passes_on_this_kernel_and_leaves_every_buffer_in_the_ring() {
    let (mut ring, mut bufs) = ring_and_bufs();
    assert_eq!(check(&mut ring, &mut bufs, SIZE), Ok(Limit::Total));
    assert_eq!(bufs.available(), 16);
}

#[test]
fn tcp_bundle_takes_several_buffers_in_one_completion_then_the_fin() {
    let (mut ring, mut bufs) = ring_and_bufs();
    let (b, sent) = queued_with_fin(3 * SIZE + 100);
    let (shots, got) = run(
        &mut ring,
        &mut bufs,
        recv_bundle(Target::Fd(b.as_raw_fd()), 0, 64 * 1024, Limit::Total),
    );
    assert!(got == sent, "bytes differ or out of order");
    assert!(
        shots.iter().any(|&(_, took)| took > 1),
        "no completion took more than one buffer: {shots:?}"
    );
    assert_eq!(
        shots.last(),
        Some(&(0, 0)),
        "ends with the end of stream: {shots:?}"
    );
    assert_eq!(bufs.available(), 16);
}

#[test]
fn check_without_the_total_limit_passes_and_sees_no_receive_end_by_itself() {
    let (mut ring, mut bufs) = ring_and_bufs();
    assert_eq!(
        check_with(&mut ring, &mut bufs, SIZE, Limit::PerCompletion),
        Ok(false)
    );
    assert_eq!(bufs.available(), 16);
}

#[test]
fn tcp_bundle_capped_per_completion_reads_past_the_cap_to_the_fin() {
    let (mut ring, mut bufs) = ring_and_bufs();
    let (b, sent) = queued_with_fin(5 * SIZE + 1);
    let (shots, got) = run(
        &mut ring,
        &mut bufs,
        recv_bundle(
            Target::Fd(b.as_raw_fd()),
            0,
            2 * SIZE as u32,
            Limit::PerCompletion,
        ),
    );
    assert!(got == sent, "bytes differ or out of order");
    assert!(
        shots
            .iter()
            .all(|&(res, took)| took <= 2 && res <= 2 * SIZE as i32),
        "a completion went past the cap: {shots:?}"
    );
    assert_eq!(
        shots.last(),
        Some(&(0, 0)),
        "one receive to the FIN: {shots:?}"
    );
    assert_eq!(bufs.available(), 16);
}

#[test]
fn tcp_bundle_ends_at_its_cap_and_the_next_reads_on_to_the_fin() {
    let (mut ring, mut bufs) = ring_and_bufs();
    let (b, sent) = queued_with_fin(5 * SIZE + 1);
    let cap = 2 * SIZE;
    let mut got = Vec::new();
    let mut arms = 0;
    loop {
        arms += 1;
        assert!(arms <= 4, "more receives than 5 buffers and a FIN need");
        let (shots, part) = run(
            &mut ring,
            &mut bufs,
            recv_bundle(Target::Fd(b.as_raw_fd()), 0, cap as u32, Limit::Total),
        );
        let took: usize = shots.iter().map(|&(res, _)| res.max(0) as usize).sum();
        assert!(
            took <= cap && shots.iter().all(|&(_, bufs)| bufs <= 2),
            "a receive went past its cap: {shots:?}"
        );
        got.extend_from_slice(&part);
        if shots.last() == Some(&(0, 0)) {
            break;
        }
        assert_eq!(took, cap, "a receive ended short of its cap: {shots:?}");
    }
    assert!(got == sent, "bytes differ or out of order");
    // Two receives end at the cap; the third takes the rest, under the
    // cap, and so reads on to the FIN.
    assert_eq!(
        arms, 3,
        "two receives of the cap, then the rest and the FIN"
    );
    assert_eq!(bufs.available(), 16);
}

/// A check that gives up with its receive armed (no time at all, and no
/// total limit, so the receive runs until cancelled) ends that receive
/// before it returns: every buffer is back in the ring and nothing of the
/// check's completes later. Were it left in flight, the worker would free
/// buffers the kernel may still fill.
#[test]
fn check_that_gives_up_ends_its_receive_before_it_returns() {
    let (mut ring, mut bufs) = ring_and_bufs();
    let verdict = check_within(
        &mut ring,
        &mut bufs,
        SIZE,
        Limit::PerCompletion,
        Duration::ZERO,
    );
    match &verdict {
        Err(Unsupported::CheckFailed(why)) => assert!(why.contains("bytes back after"), "{why}"),
        other => panic!("the check did not give up: {other:?}"),
    }
    assert!(!verdict.unwrap_err().receive_left());
    assert_eq!(bufs.available(), 16, "a buffer is still held");
    let (waited, late) = reap(&mut ring, Duration::from_millis(200));
    assert!(
        late.is_empty(),
        "completions after the check returned: {late:?} ({waited:?})"
    );
    // The ring is as the check found it: a full check passes on it.
    assert_eq!(check(&mut ring, &mut bufs, SIZE), Ok(Limit::Total));
}
