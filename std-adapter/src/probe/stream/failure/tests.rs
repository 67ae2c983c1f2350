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
    f.repeats_earlier(&sent, 150, &sent[120..170], 150);
    assert!(
        f.message
            .contains("repeat those sent at stream offset 120, 30 bytes earlier"),
        "{}",
        f.message
    );
    // The repeat starts inside the chunk: what it verified counts as sent.
    let chunk: Vec<u8> = [&sent[150..160], &sent[140..170]].concat();
    let mut f = mismatch(160);
    f.repeats_earlier(&sent, 150, &chunk, 150);
    assert!(
        f.message
            .contains("repeat those sent at stream offset 140, 20 bytes earlier"),
        "{}",
        f.message
    );
    // Fewer bytes sent twice than are looked for: the stream goes on
    // right after them, past the bad byte (they were named "inserted").
    let mut f = mismatch(150);
    f.repeats_earlier(&sent, 150, &sent[140..180], 150);
    assert!(
        f.message
            .contains("repeat those sent at stream offset 140, 10 bytes earlier"),
        "{}",
        f.message
    );
    // Bytes past the end of what was sent, repeating: said too.
    let e = ProbeError::UnexpectedData { offset: 200 };
    let mut f = Failure::probe(e, t);
    f.repeats_earlier(&sent, 200, &sent[100..130], 200);
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
        f.repeats_earlier(&sent, 150, chunk, 150);
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
    // One byte lost: counted as one.
    let chunk: Vec<u8> = [&sent[100..110], &sent[111..140]].concat();
    let mut f = mismatch(110);
    f.skips_ahead(&sent[100..], &chunk, 100);
    assert!(
        f.message
            .contains("stream offset 111, 1 byte later: the server lost the 1 byte between"),
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

#[test]
fn a_tls_record_header_is_told_by_its_version_and_a_length_a_record_can_have() {
    // An alert or a handshake, version 3.0 to 3.4, length 1 to 2^14 + 2048.
    for header in [[21, 3, 0, 0, 1], [22, 3, 4, 0x48, 0x00]] {
        assert!(tls_record(&header), "{header:?}");
    }
    // A later minor version, an empty record, one too long: not a record.
    for header in [[22, 3, 5, 0, 2], [21, 3, 3, 0, 0], [22, 3, 3, 0x48, 0x01]] {
        assert!(!tls_record(&header), "{header:?}");
    }
}

#[test]
fn a_mismatch_shows_the_bytes_received_around_it_with_their_stream_offset() {
    let t = StdDuration::from_secs(1);
    let chunk: Vec<u8> = (b'a'..=b'z').chain(b'A'..=b'Z').collect();
    // The bad byte is chunk[10], at stream offset 510: 8 bytes before, 16 on.
    let e = ProbeError::Mismatch {
        offset: 510,
        expected: b'x',
        actual: b'k',
    };
    let f = Failure::probe_in(e, t, Some((&chunk, 500)));
    assert!(
        f.message
            .ends_with("; received at stream offset 502: \"cdefghijklmnopqrstuvwxyz\""),
        "{}",
        f.message
    );
}

#[test]
fn a_timeout_says_how_long_nothing_came_back() {
    let f = Failure::probe(
        ProbeError::Timeout { outstanding: 64 },
        StdDuration::from_secs(2),
    );
    assert_eq!(f.kind, ErrorKind::Timeout);
    assert_eq!(
        f.message,
        "timed out waiting for 64 outstanding bytes (no progress for 2s)"
    );
}

#[test]
fn a_tls_refusal_after_the_handshake_is_a_handshake_failure_not_an_early_close() {
    let refused = RefusedByServer {
        alert: rustls::AlertDescription::CertificateRequired,
        client_cert: None,
    };
    let f = Failure::io("read", &io::Error::other(refused), 0);
    assert!(f.is_handshake());
    assert_eq!(f.peer_end(), None);
    let f = Failure::io("read", &io::Error::from(io::ErrorKind::ConnectionReset), 0);
    assert!(!f.is_handshake());
}

#[test]
fn a_mismatch_in_a_frames_length_header_says_so_and_one_past_it_does_not() {
    let in_header = |f: &Failure| f.message.contains("2-byte length header of the frame");
    // The frame starts at stream offset 300: its header is 300 and 301.
    for (offset, said) in [(301, true), (302, false), (299, false)] {
        let mut f = mismatch_at(offset, 0, 1);
        f.in_frame_header(300);
        assert_eq!(in_header(&f), said, "{offset}: {}", f.message);
    }
    assert!(
        {
            let mut f = mismatch_at(300, 0, 1);
            f.in_frame_header(300);
            f.message
        }
        .contains("frame that starts at stream offset 300: the server changed the length")
    );
    // Bytes past the end of what was sent are no mismatch in a header.
    let mut f = Failure::probe(
        ProbeError::UnexpectedData { offset: 300 },
        StdDuration::from_secs(1),
    );
    f.in_frame_header(300);
    assert!(!in_header(&f), "{}", f.message);
}

/// A raw streaming probe (100-byte messages) that has sent `sent` bytes
/// and verified the first `verified`, and the stream it sent.
fn probe_after(sent: usize, verified: usize) -> (StreamProbe, Vec<u8>) {
    use ricochet_core::probe::{Pattern, ProbeConfig, SizeRange};
    let now = ricochet_core::Instant::ZERO;
    let config = ProbeConfig {
        pattern: Pattern::Stream { window: sent },
        size: SizeRange::fixed(100),
        count: None,
        ..ProbeConfig::default()
    };
    let mut probe = StreamProbe::new(config, now).unwrap();
    let mut stream = vec![0; sent];
    let mut at = 0;
    while at < sent {
        let n = probe.fill_transmit(now, &mut stream[at..]);
        assert!(n > 0, "the probe offered nothing at {at}");
        probe.commit_sent(now, n).unwrap();
        at += n;
    }
    let mut done = 0;
    while done < verified {
        done += probe
            .handle_received(now, &stream[done..verified])
            .unwrap()
            .consumed;
    }
    (probe, stream)
}

/// What the probe says of `chunk`, read from where it has verified up to
/// (stream offset `start`): it must fail at stream offset `bad`.
fn said_of(probe: &mut StreamProbe, chunk: &[u8], start: u64, bad: u64) -> String {
    let now = ricochet_core::Instant::ZERO;
    let e = probe.handle_received(now, chunk).unwrap_err();
    assert!(
        matches!(e, ProbeError::Mismatch { offset, .. } if offset == bad),
        "{e}"
    );
    let mut f = Failure::probe_in(e, StdDuration::from_secs(1), Some((chunk, start)));
    f.where_sent(probe, chunk, start);
    f.message
}

#[test]
fn a_mismatch_names_a_repeat_from_far_back_with_the_probes_own_stream() {
    // Verified up to 2500; the server sends again from 500 on: 2000 bytes
    // back, more than a small look back would find.
    let (mut probe, s) = probe_after(3000, 2500);
    let m = said_of(&mut probe, &s[500..600], 2500, 2500);
    assert!(
        m.contains("repeat those sent at stream offset 500, 2000 bytes earlier"),
        "{m}"
    );
}

#[test]
fn a_mismatch_names_a_few_bytes_sent_twice_a_repeat_not_an_insert() {
    // Verified up to 1000; the server sends its last 10 bytes again.
    let (mut probe, s) = probe_after(3000, 1000);
    let m = said_of(&mut probe, &s[990..1100], 1000, 1000);
    assert!(
        m.contains("repeat those sent at stream offset 990, 10 bytes earlier")
            && !m.contains("inserted"),
        "{m}"
    );
}

#[test]
fn a_mismatch_names_bytes_lost_or_inserted_with_the_probes_own_stream() {
    // Verified up to 1000; read from there: 10 right, then from 1200 on.
    let (mut probe, s) = probe_after(3000, 1000);
    let lost = [&s[1000..1010], &s[1200..1300]].concat();
    let m = said_of(&mut probe, &lost, 1000, 1010);
    assert!(
        m.contains("are those sent at stream offset 1200, 190 bytes later"),
        "{m}"
    );
    assert!(!m.contains("inserted") && !m.contains("repeat"), "{m}");
    // The same, with a line end inserted instead.
    let (mut probe, s) = probe_after(3000, 1000);
    let inserted = [&s[1000..1010], b"\n", &s[1010..1100]].concat();
    let m = said_of(&mut probe, &inserted, 1000, 1010);
    assert!(m.contains("1 byte inserted there (\"\\n\")"), "{m}");
    assert!(!m.contains("later") && !m.contains("repeat"), "{m}");
}

#[test]
fn a_byte_sent_twice_is_not_named_as_bytes_skipped() {
    let sent = sent_stream(300);
    // Verified up to 100; read from there: 10 right, then byte 109 again
    // and the rest: nothing lost.
    let chunk: Vec<u8> = [&sent[100..110], &sent[109..140]].concat();
    let mut f = mismatch_at(110, sent[110], sent[109]);
    let before = f.message.clone();
    f.skips_ahead(&sent[100..], &chunk, 100);
    assert_eq!(f.message, before);
}
