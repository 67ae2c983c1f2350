//! How echoes are verified: corruption at its exact offset, extra data, an
//! early end, echoes split anyhow.

use super::*;

#[test]
fn open_receives_corrupted_byte_reports_exact_offset_and_sticks() {
    let mut p = stream(
        Mode::Raw,
        Pattern::Stream { window: 1000 },
        SizeRange::fixed(100),
        5,
    );
    let mut echo = send_all(&mut p, T0);
    echo[237] ^= 0x01;
    let (mut at, mut turns) = (0, 0);
    let err = loop {
        bounded(&mut turns);
        match p.handle_received(T0, &echo[at..]) {
            Ok(r) => at += r.consumed,
            Err(e) => break e,
        }
    };
    assert_eq!(
        err,
        ProbeError::Mismatch {
            offset: 237,
            expected: echo[237] ^ 1,
            actual: echo[237]
        }
    );
    assert_eq!(p.handle_received(T0, b"x"), Err(err), "errors are sticky");
    assert!(!p.is_done());
}

#[test]
fn open_receives_more_than_sent_reports_unexpected_data() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(4), 1);
    let mut echo = send_all(&mut p, T0);
    echo.push(0);
    let r = p.handle_received(T0, &echo).unwrap();
    assert_eq!(r.consumed, 4);
    assert!(p.is_done());
    assert_eq!(
        p.handle_received(T0, &echo[4..]),
        Err(ProbeError::UnexpectedData { offset: 4 })
    );
}

#[test]
fn open_receives_eof_with_outstanding_reports_premature_close() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 2);
    let echo = send_all(&mut p, T0);
    p.handle_received(T0, &echo[..4]).unwrap();
    assert_eq!(
        p.handle_eof(T0),
        Err(ProbeError::PrematureClose {
            verified: 4,
            outstanding: 6
        })
    );
}

/// The rest of a partly returned message, then the next message, in one
/// read: each message is verified, and completed, apart.
#[test]
fn partial_echo_then_the_rest_with_the_next_message_verifies_each_apart() {
    let mut p = stream(
        Mode::Lines,
        Pattern::Stream { window: 1000 },
        SizeRange::fixed(10),
        2,
    );
    let echo = send_all(&mut p, T0);
    assert_eq!(echo.len(), 20);
    assert_eq!(p.handle_received(T0, &echo[..4]).unwrap().consumed, 4);
    let r = p.handle_received(T0, &echo[4..]).unwrap();
    assert_eq!((r.consumed, r.round_trip.is_some()), (6, true));
    let r = p.handle_received(T0, &echo[10..]).unwrap();
    assert_eq!((r.consumed, r.round_trip.is_some()), (10, true));
    assert!(p.is_done());
}

/// An echo of more than one comparison chunk (256 bytes) that stops short
/// of its message's end is verified up to what was sent, and a byte beyond
/// that is unexpected.
#[test]
fn open_receives_more_than_a_chunk_short_of_the_message_end_verifies_what_was_sent() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(1000), 1);
    let mut buf = [0u8; 300];
    let n = p.fill_transmit(T0, &mut buf);
    p.commit_sent(T0, n).unwrap();
    let mut echo = buf.to_vec();
    echo.push(0);
    let r = p.handle_received(T0, &echo).unwrap();
    assert_eq!((r.consumed, r.round_trip), (300, None));
    assert_eq!(
        p.handle_received(T0, &echo[300..]),
        Err(ProbeError::UnexpectedData { offset: 300 })
    );
}

#[test]
fn verified_tail_and_outstanding_bytes_after_echoes_are_the_stream_sent_either_side_of_the_receive_position()
 {
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        let size = SizeRange { min: 3, max: 40 };
        let mut p = stream(mode, Pattern::Stream { window: 4000 }, size, 200);
        let mut sent = send_all(&mut p, T0);
        let mut out = [0u8; 100];
        // Nothing verified yet: nothing to show.
        assert_eq!(p.verified_tail(&mut out), 0, "{mode:?}");
        // Echoed in pieces that end inside messages and on their bounds.
        let mut at = 0;
        for piece in [7, 1, 90, 33, 2, 150, 61] {
            let mut turns = 0;
            while sent.len() < at + piece {
                bounded(&mut turns);
                let more = send_all(&mut p, T0);
                assert!(!more.is_empty(), "{mode:?}: stuck at {} sent", sent.len());
                sent.extend_from_slice(&more);
            }
            let mut fed = 0;
            while fed < piece {
                bounded(&mut turns);
                let r = p.handle_received(T0, &sent[at + fed..at + piece]).unwrap();
                fed += r.consumed;
            }
            at += piece;
            let n = p.verified_tail(&mut out);
            assert_eq!(n, at.min(100), "{mode:?} after {at}");
            assert_eq!(&out[..n], &sent[at - n..at], "{mode:?} after {at}");
            // And ahead: what was sent and not yet verified.
            let n = p.outstanding_bytes(&mut out);
            assert_eq!(n, (sent.len() - at).min(100), "{mode:?} after {at}");
            assert_eq!(&out[..n], &sent[at..at + n], "{mode:?} after {at}");
        }
    }
}
