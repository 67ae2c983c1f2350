//! The line and frame codecs on arbitrary bytes: no panic, and the answers
//! agree with a byte-by-byte reading of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ricochet_core::{frames, lines};

fuzz_target!(|data: &[u8]| {
    // lines: the prefix ends at the last '\n' and counts every '\n'.
    let (len, count) = lines::complete_prefix(data);
    let expected_len = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    assert_eq!(len, expected_len);
    assert_eq!(count as usize, data.iter().filter(|&&b| b == b'\n').count());
    assert_eq!(lines::first_line(data).map(<[u8]>::len), data.iter().position(|&b| b == b'\n').map(|p| p + 1));

    // frames: walk the headers by hand and compare.
    let limit = data.first().map_or(64, |&b| usize::from(b) * 8 + 2);
    let mut at = 0;
    let mut n = 0;
    let expected = loop {
        if data.len() < at + 2 {
            break Ok((at, n));
        }
        let total = 2 + usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
        if total > limit {
            // The whole frames before a header announcing too much, else the error.
            break if at > 0 { Ok((at, n)) } else { Err(frames::FrameTooLarge { len: total, limit }) };
        }
        if at + total > data.len() {
            break Ok((at, n));
        }
        at += total;
        n += 1;
    };
    assert_eq!(frames::complete_prefix(data, limit), expected);
    if let frames::Status::Complete(f) = frames::decode(data) {
        let mut out = vec![0u8; f.wire_len()];
        assert_eq!(frames::encode(f.payload, &mut out), Ok(f.wire_len()));
        assert_eq!(&out[..], &data[..f.wire_len()]);
    }
});
