//! Random interleavings of receives, pass-throughs, reads through a
//! session-like buffer, writes, short or full sends and spills: every byte
//! received is sent once, in order, the output never exceeds its cap,
//! and every buffer goes back to the ring.

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Receive(usize),
    PassThrough(usize),
    Read(usize),
    Write,
    Send(u8),
    Spill,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..=16).prop_map(Op::Receive),
        (0usize..80).prop_map(Op::PassThrough),
        (1usize..40).prop_map(Op::Read),
        Just(Op::Write),
        any::<u8>().prop_map(Op::Send),
        Just(Op::Spill),
    ]
}

/// The bytes of the send `next_send` just set up.
fn sent_bytes(f: &mut Fixture) -> Option<Vec<u8>> {
    f.io.next_send(&f.bufs)?;
    f.io.tx_inflight = 0;
    Some(f.in_flight())
}

/// Sends what is queued; `cut` picks how much the socket takes.
fn send(f: &mut Fixture, cut: u8, out: &mut Vec<u8>) {
    let Some(bytes) = sent_bytes(f) else {
        return;
    };
    let k = if cut >= 128 {
        bytes.len()
    } else {
        bytes.len() * usize::from(cut) / 128
    };
    out.extend_from_slice(&bytes[..k]);
    if k == bytes.len() {
        f.io.confirm_sent(&mut f.bufs, &mut f.pool);
    } else {
        f.io.send_failed(k as i32, T0, &mut f.bufs, &mut f.pool);
        f.io.writable();
    }
}

/// Writes what the session holds, as the pump would.
fn write_held(f: &mut Fixture, held: &mut Vec<u8>) {
    if held.is_empty() {
        return;
    }
    if let WriteOutcome::Sent(n) = f.t().write(held, false) {
        held.drain(..n);
    }
}

proptest! {
    #[test]
    fn output_sends_every_received_byte_once_in_order(ops in proptest::collection::vec(op(), 1..200)) {
        let mut f = Fixture::with_ring(1024);
        let start = f.bufs.available();
        let mut received = Vec::new();
        let mut held = Vec::new();
        let mut out = Vec::new();
        let mut next_bid = 0u16;
        for op in ops {
            match op {
                Op::Receive(len) => {
                    let data: Vec<u8> = (0..len).map(|i| (received.len() + i) as u8 ^ 0x5a).collect();
                    f.receive(&[(next_bid, &data)]);
                    next_bid += 1;
                    received.extend_from_slice(&data);
                }
                // The pump passes through only while the session holds nothing.
                Op::PassThrough(max) if held.is_empty() => {
                    let n = f.t().pass_through(max);
                    prop_assert!(n <= max);
                }
                Op::PassThrough(_) => {}
                Op::Read(n) => {
                    let mut buf = vec![0u8; n];
                    if let ReadOutcome::Data(k) = f.t().read(&mut buf) {
                        held.extend_from_slice(&buf[..k]);
                    }
                }
                Op::Write => write_held(&mut f, &mut held),
                Op::Send(cut) => send(&mut f, cut, &mut out),
                Op::Spill => {
                    f.io.spill(&mut f.bufs, &mut f.pool);
                    prop_assert_eq!(f.bufs.available(), start, "a spill gives back every ring buffer");
                }
            }
            prop_assert!(f.io.tx_pending() <= TX_CAP);
        }
        // Drain: the session writes what it holds, the rest passes through.
        for _ in 0..10_000 {
            write_held(&mut f, &mut held);
            if held.is_empty() {
                f.t().pass_through(usize::MAX);
            }
            if f.io.rx_bytes() > 0 && held.is_empty() {
                let mut buf = vec![0u8; 64];
                if let ReadOutcome::Data(k) = f.t().read(&mut buf) {
                    held.extend_from_slice(&buf[..k]);
                }
            }
            send(&mut f, 200, &mut out);
            if f.io.rx_bytes() == 0 && held.is_empty() && f.io.tx_pending() == 0 {
                break;
            }
        }
        prop_assert_eq!(out, received);
        prop_assert_eq!(f.bufs.available(), start, "every buffer went back");
    }
}
