//! Raw input passed straight through a transport that can take it, held to
//! the budget and in order; the storage lent while idle.

use super::*;

#[test]
fn serving_idle_storage_is_lent_only_while_the_session_holds_nothing() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = Script::with_input(b"held", false);
    io.room = 0;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert!(p.idle_storage_mut().is_none(), "echo pending");
    io.room = usize::MAX;
    p.set_writable();
    let _ = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"held");
    assert_eq!(p.idle_storage_mut().map(|s| s.len()), Some(64));
}

#[test]
fn serving_raw_with_nothing_held_passes_transport_input_straight_through() {
    let mut p = pump(Mode::Raw, 4);
    let mut io = passing(b"hello, world");
    let mut c = StreamCounters::default();
    let next = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(
        next,
        Next::Wait {
            read: true,
            write: false
        }
    );
    assert_eq!(io.output, b"hello, world");
    assert_eq!(io.passed, 12, "not through the 4-byte session buffer");
    assert_eq!((c.bytes_in, c.bytes_out), (12, 12));
    let stats = p.session().stats();
    assert_eq!((stats.bytes_in, stats.bytes_out), (12, 12));
    assert_eq!(io.reads, 1, "the read that found the transport drained");
    assert_eq!(
        p.poll_timeout(),
        Some(at(10_001)),
        "activity moves the idle deadline"
    );
}

#[test]
fn serving_raw_input_all_passed_through_by_a_knowing_transport_never_touches_the_buffer() {
    let (mut p, borrowed_mut) = watched_pump(4);
    let mut io = Script {
        knows_input: true,
        ..passing(b"hello, world")
    };
    let mut c = StreamCounters::default();
    for round in 0..3u8 {
        if round > 0 {
            io.input.extend([round; 5]);
            p.set_readable();
        }
        let next = p.drive(at(1), &mut io, usize::MAX, &mut c);
        assert_eq!(
            next,
            Next::Wait {
                read: true,
                write: false
            }
        );
    }
    assert_eq!(
        io.output,
        b"hello, world\x01\x01\x01\x01\x01\x02\x02\x02\x02\x02"
    );
    assert_eq!(io.reads, 0, "a read would only have found nothing");
    assert_eq!(p.session().stats().bytes_in, 22);
    assert_eq!(borrowed_mut.get(), 0, "the storage may stay unallocated");
}

#[test]
fn serving_raw_a_knowing_transport_still_reads_its_end_and_failures() {
    let (mut p, _) = watched_pump(4);
    let mut io = Script {
        knows_input: true,
        fin: true,
        ..passing(b"bye")
    };
    let mut c = StreamCounters::default();
    let _ = p.drive(at(1), &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"bye");
    assert_eq!(io.reads, 1, "the FIN is read");
    assert!(p.session().peer_finished());
}

#[test]
fn serving_pass_through_out_of_room_falls_back_to_the_buffer_and_keeps_order() {
    let mut p = pump(Mode::Raw, 4);
    let mut io = passing(b"abcdefgh");
    io.room = 3;
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    // "abc" passed, "defg" waits in the session buffer, "h" in the transport.
    assert_eq!(io.output, b"abc");
    assert_eq!(p.session().buffered(), 4);
    io.room = usize::MAX;
    io.input.extend(b"ij");
    p.set_writable();
    p.set_readable();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"abcdefghij");
    assert_eq!((c.bytes_in, c.bytes_out), (10, 10));
}

#[test]
fn serving_pass_through_is_held_to_the_budget() {
    let mut p = pump(Mode::Raw, 64);
    let mut io = passing(&[7u8; 100]);
    let mut c = StreamCounters::default();
    let next = p.drive(T0, &mut io, 30, &mut c);
    assert_eq!(next, Next::Yield);
    assert_eq!((io.passed, c.bytes_in), (30, 30));
}

#[test]
fn serving_lines_never_passes_through() {
    let mut p = pump(Mode::Lines, 64);
    let mut io = passing(b"one\ntwo\n");
    let mut c = StreamCounters::default();
    let _ = p.drive(T0, &mut io, usize::MAX, &mut c);
    assert_eq!(io.output, b"one\ntwo\n");
    assert_eq!(io.passed, 0, "lines are echoed only once complete");
}
