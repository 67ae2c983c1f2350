//! Failures as recorded and shown: what each kind of failure says.

use super::*;

/// The stream a test's probe sent: `len` bytes that never repeat a run of
/// eight (a pattern of period 251).
fn sent_stream(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i * 37 % 251) as u8).collect()
}

/// A mismatch at stream offset `offset`: `actual` came where `expected` was sent.
fn mismatch_at(offset: u64, expected: u8, actual: u8) -> Failure {
    let e = ProbeError::Mismatch {
        offset,
        expected,
        actual,
    };
    Failure::probe(e, StdDuration::from_secs(1))
}

#[test]
fn a_tls_alert_where_the_echo_should_be_is_named_with_the_scheme_to_use() {
    let t = StdDuration::from_secs(1);
    let mismatch = |actual| ProbeError::Mismatch {
        offset: 0,
        expected: 0xc3,
        actual,
    };
    // What `ricochet serve --tls` answers a plain client: decode_error.
    let alert = b"\x15\x03\x03\x00\x02\x02\x32";
    let f = Failure::probe_in(mismatch(0x15), t, Some((alert, 0)));
    assert!(f.message.contains("tls://HOST:PORT"), "{}", f.message);
    // Anything else at offset 0, or a record-like byte later, is not.
    for (chunk, at) in [(&b"\x15\x07\x03\x00\x02\x02\x32"[..], 0), (alert, 64)] {
        let e = ProbeError::Mismatch {
            offset: at,
            expected: 0xc3,
            actual: 0x15,
        };
        let f = Failure::probe_in(e, t, Some((chunk, at)));
        assert!(!f.message.contains("tls://"), "{}", f.message);
    }
}

#[test]
fn bytes_that_repeat_earlier_ones_are_named_with_where_they_were_sent() {
    let t = StdDuration::from_secs(1);
    let sent = sent_stream(200);
    let mismatch = |offset: u64| mismatch_at(offset, 0, 0);
    // Verified up to 150; the chunk read from 150 repeats from 120 on.
    let mut f = mismatch(150);
    f.repeats_earlier(&sent[..150], &sent[120..170], 150);
    assert!(
        f.message
            .contains("repeat those sent at stream offset 120, 30 bytes earlier"),
        "{}",
        f.message
    );
    // The repeat starts inside the chunk: what it verified counts as sent.
    let chunk: Vec<u8> = [&sent[150..160], &sent[140..170]].concat();
    let mut f = mismatch(160);
    f.repeats_earlier(&sent[..150], &chunk, 150);
    assert!(
        f.message
            .contains("repeat those sent at stream offset 140, 20 bytes earlier"),
        "{}",
        f.message
    );
    // Bytes past the end of what was sent, repeating: said too.
    let e = ProbeError::UnexpectedData { offset: 200 };
    let mut f = Failure::probe(e, t);
    f.repeats_earlier(&sent, &sent[100..130], 200);
    assert!(
        f.message.contains("stream offset 100, 100 bytes earlier"),
        "{}",
        f.message
    );
    // Too few bytes to tell, bytes sent nowhere before, another kind of
    // failure: nothing added.
    for (mut f, chunk) in [
        (mismatch(150), &sent[120..127]),
        (mismatch(150), &[9u8; 16][..]),
        (
            Failure::probe(ProbeError::Timeout { outstanding: 8 }, t),
            &sent[120..170],
        ),
    ] {
        let before = f.message.clone();
        f.repeats_earlier(&sent[..150], chunk, 150);
        assert_eq!(f.message, before);
    }
}

#[test]
fn bytes_that_skip_ahead_are_named_with_how_many_were_lost() {
    let t = StdDuration::from_secs(1);
    let sent = sent_stream(300);
    let mismatch = |offset: u64| mismatch_at(offset, 0, 0);
    // Verified up to 100; read from there: 10 right, then from 150 on.
    let chunk: Vec<u8> = [&sent[100..110], &sent[150..180]].concat();
    let mut f = mismatch(110);
    f.skips_ahead(&sent[100..], &chunk, 100);
    assert!(
        f.message.contains(
            "are those sent at stream offset 150, 40 bytes later: the server lost the 40 \
             bytes between"
        ),
        "{}",
        f.message
    );
    // Bytes that are nowhere ahead, too few to tell, bytes past the end
    // of what was sent (nothing ahead), another kind: nothing added.
    for (mut f, chunk) in [
        (mismatch(110), [&sent[100..110], &[9u8; 16][..]].concat()),
        (mismatch(110), [&sent[100..110], &sent[150..157]].concat()),
        (
            Failure::probe(ProbeError::UnexpectedData { offset: 300 }, t),
            sent[150..180].to_vec(),
        ),
        (
            Failure::probe(ProbeError::Timeout { outstanding: 8 }, t),
            chunk.clone(),
        ),
    ] {
        let before = f.message.clone();
        let start = f.offset.map_or(100, |o| o.min(100));
        let ahead = if start == 100 { &sent[100..] } else { &[][..] };
        f.skips_ahead(ahead, &chunk, start);
        assert_eq!(f.message, before);
    }
}

#[test]
fn bytes_inserted_where_the_stream_goes_on_after_them_are_named() {
    let sent = sent_stream(300);
    let mismatch = mismatch_at;
    // Verified up to 100; read from there: 10 right, an insert, the rest.
    let with = |added: &[u8]| [&sent[100..110], added, &sent[110..140]].concat();
    for (added, words) in [
        (
            &b"\n"[..],
            "1 byte inserted there (\"\\n\"), the stream going on after it: a line end",
        ),
        (
            b"\r\n",
            "2 bytes inserted there (\"\\r\\n\"), the stream going on after them: a line end",
        ),
        (
            b"abc",
            "3 bytes inserted there (\"abc\"), the stream going on after them: the server added them",
        ),
    ] {
        let mut f = mismatch(110, sent[110], added[0]);
        assert!(f.inserted(&sent[100..], &with(added), 100));
        assert!(f.message.contains(words), "{}", f.message);
    }
    // A carriage return before a line feed (its own words), 17 bytes
    // (more than a few), a stream that does not go on after them, too
    // few bytes after them to tell: nothing added.
    let crlf = [&sent[100..110], b"\r", &sent[110..140]].concat();
    let long = with(&[7u8; 17]);
    let lost = [&sent[100..110], b"\n", &sent[150..180]].concat();
    let short = with(b"\n")[..18].to_vec();
    for (mut f, chunk) in [
        (mismatch(110, b'\n', b'\r'), crlf),
        (mismatch(110, sent[110], 7), long),
        (mismatch(110, sent[110], b'\n'), lost),
        (mismatch(110, sent[110], b'\n'), short),
    ] {
        let before = f.message.clone();
        assert!(!f.inserted(&sent[100..], &chunk, 100));
        assert_eq!(f.message, before);
    }
}

#[test]
fn early_closes_say_how_the_peer_ended_the_connection() {
    let t = StdDuration::from_secs(1);
    for kind in [
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::ConnectionAborted,
        io::ErrorKind::BrokenPipe,
    ] {
        let f = Failure::io("read", &io::Error::from(kind), 0);
        assert_eq!(
            (f.kind, f.peer_end()),
            (ErrorKind::EarlyClose, Some(PeerEnd::Reset))
        );
    }
    let eof = ProbeError::PrematureClose {
        verified: 0,
        outstanding: 64,
    };
    let f = Failure::probe(eof, t);
    assert_eq!(
        (f.kind, f.peer_end()),
        (ErrorKind::EarlyClose, Some(PeerEnd::Closed))
    );
    let f = Failure::probe(ProbeError::Timeout { outstanding: 64 }, t);
    assert_eq!(f.peer_end(), None);
    let f = Failure::io("read", &io::Error::from(io::ErrorKind::Other), 0);
    assert_eq!(f.peer_end(), None);
}

#[test]
fn a_server_not_reading_is_said_with_how_long_writes_were_refused() {
    let t = StdDuration::from_secs(2);
    let blocked = |d: StdDuration| {
        let mut f = Failure::probe(ProbeError::Timeout { outstanding: 64 }, t);
        f.not_reading(d);
        f.message
    };
    for (d, shown) in [
        (StdDuration::from_micros(1_998_400), "for the last 2s ("),
        (
            StdDuration::from_micros(1_449_000),
            "for the last 1s 400ms (",
        ),
        (StdDuration::from_micros(999_900), "for the last 999ms ("),
    ] {
        let m = blocked(d);
        assert!(
            m.contains("the server is not reading either") && m.contains(shown),
            "{d:?}: {m}"
        );
    }
    // Refused for under a millisecond: nothing to say.
    assert!(!blocked(StdDuration::from_micros(900)).contains("not reading"));
}
