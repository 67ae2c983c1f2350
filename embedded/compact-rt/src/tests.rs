//! Every length and alignment against the slice methods, overlap both ways.

extern crate std;

use std::vec::Vec;

use super::{compare, copy, copy_forward, divide, fill};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn forward_copy_of_every_length_and_alignment_matches_copy_from_slice() {
    let src = pattern(80);
    for len in 0..40 {
        for s in 0..8 {
            for d in 0..8 {
                let mut dst = std::vec![0xEEu8; 80];
                // SAFETY: both ranges lie inside their vectors.
                unsafe { copy_forward(dst.as_mut_ptr().add(d), src.as_ptr().add(s), len) };
                assert_eq!(&dst[d..d + len], &src[s..s + len], "len {len} s {s} d {d}");
                assert!(dst[..d].iter().all(|&b| b == 0xEE));
                assert!(dst[d + len..].iter().all(|&b| b == 0xEE));
            }
        }
    }
}

#[test]
fn overlapping_move_either_way_matches_copy_within() {
    for len in 0..40 {
        for from in 0..10 {
            for to in 0..10 {
                let mut expected = pattern(60);
                expected.copy_within(from..from + len, to);
                let mut buf = pattern(60);
                let base = buf.as_mut_ptr();
                // SAFETY: both ranges lie inside the vector; `copy` allows overlap.
                unsafe { copy(base.add(to), base.add(from), len) };
                assert_eq!(buf, expected, "len {len} from {from} to {to}");
            }
        }
    }
}

#[test]
fn fill_sets_exactly_the_range_at_every_alignment() {
    for len in 0..40 {
        for at in 0..8 {
            let mut buf = std::vec![1u8; 60];
            // SAFETY: the range lies inside the vector.
            unsafe { fill(buf.as_mut_ptr().add(at), 0xA5, len) };
            for (i, &b) in buf.iter().enumerate() {
                let inside = (at..at + len).contains(&i);
                assert_eq!(b, if inside { 0xA5 } else { 1 }, "len {len} at {at} i {i}");
            }
        }
    }
}

#[test]
fn compare_orders_by_the_first_differing_byte_as_unsigned() {
    let a = [1u8, 2, 3, 200];
    let b = [1u8, 2, 3, 4];
    // SAFETY: 4 bytes each.
    unsafe {
        assert_eq!(compare(a.as_ptr(), a.as_ptr(), 4), 0);
        assert!(compare(a.as_ptr(), b.as_ptr(), 4) > 0, "200 > 4 unsigned");
        assert!(compare(b.as_ptr(), a.as_ptr(), 4) < 0);
        assert_eq!(compare(a.as_ptr(), b.as_ptr(), 3), 0);
        assert_eq!(compare(a.as_ptr(), b.as_ptr(), 0), 0);
    }
}

#[test]
fn division_matches_the_operators_across_magnitudes() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let edges = [
        1,
        2,
        3,
        7,
        1000,
        12_500_000,
        u64::from(u32::MAX),
        u64::MAX - 1,
        u64::MAX,
    ];
    for &n in &edges {
        for &d in &edges {
            assert_eq!(divide(n, d), (n / d, n % d), "{n} / {d}");
        }
    }
    for _ in 0..100_000 {
        let (a, b) = (next(), next());
        // Divisors and dividends of every width.
        let n = a >> (b % 64);
        let d = (b >> (a % 64)).max(1);
        assert_eq!(divide(n, d), (n / d, n % d), "{n} / {d}");
    }
}
