//! A lingering close whose tail is acknowledged in steps past the linger
//! delivers everything, with no reset.

use super::*;

/// A part of the echo the wire loses in its first two sending rounds (the
/// segments smoltcp sends at one instant; a retransmission may cut the
/// bytes into other segments).
#[derive(Debug, Default)]
struct Held {
    rounds: u32,
    round_at: Option<u64>,
    /// When it first got through.
    delivered_at: Option<u64>,
}

impl Held {
    /// Whether a segment that carries this part, sent at `now`, gets through.
    fn sent(&mut self, now: u64) -> bool {
        if self.round_at != Some(now) {
            self.rounds += 1;
            self.round_at = Some(now);
        }
        let deliver = self.rounds > 2;
        if deliver {
            self.delivered_at.get_or_insert(now);
        }
        deliver
    }
}

/// What the wire did to the node's side of the connection.
#[derive(Debug, Default)]
struct TailWire {
    /// The node's initial sequence number (from its SYN-ACK).
    isn: Option<u32>,
    /// The byte at offset 500, and the last byte or the FIN.
    middle: Held,
    last: Held,
    /// RSTs the node sent.
    resets: u32,
}

/// The tail of an echo is acknowledged in steps, each shorter than the
/// linger, that add up to more than it: the node lingers from its last
/// delivery progress, not from the close, so the client gets everything
/// and no RST.
///
/// 1500 bytes come back in two segments, and the session closes when the
/// last byte is queued (the FIN follows it). The wire loses the first two
/// sending rounds of the middle byte (offset 500) and of the last byte and
/// the FIN. smoltcp's retransmission timer backs off (1 s, 2 s, 4 s): the
/// first segment gets through 2 s after the close, the last byte and the
/// FIN 4 s later, 6 s after the close. A linger counted from the close
/// (5 s) reset the connection 1 s before that.
#[test]
fn lingering_close_with_a_tail_acknowledged_in_steps_past_the_linger_delivers_everything() {
    use std::cell::RefCell;
    use std::rc::Rc;

    const TOTAL: u32 = 1500;
    const MIDDLE: u32 = 500;
    let linger = 5 * SECOND;
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    let wire = Rc::new(RefCell::new(TailWire::default()));
    let seen = wire.clone();
    sim.node_dev.filter_sent(move |now, frame| {
        let Some(seg) = support::frames::tcp_segment(frame) else {
            return true;
        };
        let mut w = seen.borrow_mut();
        if seg.src_port != 7 {
            return true;
        }
        w.resets += u32::from(seg.rst);
        if seg.syn {
            w.isn = Some(seg.seq);
            return true;
        }
        let Some(isn) = w.isn else { return true };
        let start = seg.seq.wrapping_sub(isn).wrapping_sub(1);
        let bytes = start..start + seg.len as u32;
        let now = now.total_micros() as u64;
        let mut deliver = true;
        if bytes.contains(&MIDDLE) {
            deliver &= w.middle.sent(now);
        }
        if bytes.contains(&(TOTAL - 1)) || seg.fin {
            deliver &= w.last.sent(now);
        }
        deliver
    });
    let config = ProbeConfig {
        response_timeout: Some(Duration::from_secs(30)),
        ..probe(Mode::Raw, SizeRange::fixed(TOTAL as usize / 3), 3)
    };
    let mut clients = [connect(&mut sim, 40000, config)];
    clients[0].close_after_sending = true;
    let mut closed_at = None;
    let finished = sim.run(60 * SECOND, &mut |host, node, now| {
        if closed_at.is_none() && node.stats().tcp.closed.total() > 0 {
            closed_at = Some(now.as_micros());
        }
        drive_all(&mut clients, host, now)
    });
    sim.idle(10 * SECOND);
    let w = wire.borrow();
    let tcp = sim.node.stats().tcp;
    assert!(finished);
    assert_eq!(
        clients[0].phase,
        Phase::Finished(Ok(())),
        "{w:?} closed at {closed_at:?}: {tcp:?}"
    );
    assert_eq!(w.resets, 0, "the node reset the connection: {tcp:?}");
    assert_eq!(tcp.closed.peer_finished, 1);
    assert_eq!(tcp.aborted.total(), 0);
    assert_eq!(tcp.lingered, 0);
    // The scenario: progress within the linger, completion beyond it.
    let closed_at = closed_at.unwrap();
    let (middle_at, last_at) = (w.middle.delivered_at.unwrap(), w.last.delivered_at.unwrap());
    assert!(
        middle_at - closed_at < linger,
        "{w:?} closed at {closed_at}"
    );
    assert!(last_at - middle_at < linger, "{w:?}");
    assert!(last_at - closed_at > linger, "{w:?} closed at {closed_at}");
}
