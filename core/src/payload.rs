//! Deterministic pseudo-random payload bytes, addressable by offset.
//!
//! The probe never stores what it sent: byte `i` of a stream is a pure
//! function of the seed and `i`, so the verifier regenerates what it expects.
//! Bytes come from SplitMix64 over 8-byte blocks: binary, NUL bytes
//! included, no period a test could hit, and about 1 GB/s per core.

/// A seeded generator of payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Payload {
    key: u64,
}

/// SplitMix64's output function.
pub const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Payload {
    /// The generator for `seed`.
    pub const fn new(seed: u64) -> Self {
        Payload { key: mix(seed) }
    }

    /// The byte at `offset`.
    pub fn byte(&self, offset: u64) -> u8 {
        let block = mix(self.key ^ (offset >> 3));
        block.to_le_bytes()[(offset & 7) as usize]
    }

    /// Fills `out` with the bytes starting at `offset`.
    pub fn fill(&self, offset: u64, out: &mut [u8]) {
        let mut pos = offset;
        let mut rest = out;
        // Unaligned head.
        while pos & 7 != 0 {
            let Some((first, tail)) = rest.split_first_mut() else {
                return;
            };
            *first = self.byte(pos);
            pos += 1;
            rest = tail;
        }
        let mut chunks = rest.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&mix(self.key ^ (pos >> 3)).to_le_bytes());
            pos += 8;
        }
        for b in chunks.into_remainder() {
            *b = self.byte(pos);
            pos += 1;
        }
    }

    /// A pseudo-random number for `index`, independent of the byte stream
    /// (used for message sizes).
    pub fn number(&self, index: u64) -> u64 {
        mix(self.key.rotate_left(32) ^ mix(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_byte_at_every_alignment() {
        let p = Payload::new(42);
        for start in 0..17u64 {
            let mut out = [0u8; 29];
            p.fill(start, &mut out);
            for (i, b) in out.iter().enumerate() {
                assert_eq!(*b, p.byte(start + i as u64), "start {start} i {i}");
            }
        }
    }

    #[test]
    fn mix_of_splitmix64_states_gives_its_published_outputs() {
        // SplitMix64 seeded with 0 (Vigna's reference): the first three
        // outputs, for states 1, 2 and 3 golden-ratio steps on.
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix(GOLDEN), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(mix(GOLDEN.wrapping_mul(2)), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn seeded_stream_bytes_and_numbers_are_the_same_in_every_version() {
        // A probe and a verifier built apart must agree on every byte.
        let p = Payload::new(42);
        let mut head = [0u8; 16];
        p.fill(0, &mut head);
        assert_eq!(
            head,
            [
                0x04, 0x72, 0x10, 0x65, 0xba, 0xfa, 0xe1, 0x57, 0xe5, 0x42, 0x93, 0x8c, 0x24, 0xe9,
                0x4f, 0xf3
            ]
        );
        let mut far = [0u8; 12];
        p.fill(1_000_000, &mut far);
        assert_eq!(
            far,
            [
                0x3a, 0x04, 0xd5, 0x0e, 0x2e, 0xea, 0x9a, 0xd4, 0x2c, 0xa6, 0x12, 0xdb
            ]
        );
        assert_eq!(
            [p.number(0), p.number(1), p.number(7)],
            [
                0x99B7_3BCC_C7A0_0795,
                0x8F14_3EF4_9C63_855F,
                0xE448_27FF_02BE_B061
            ]
        );
    }

    #[test]
    fn different_seeds_give_different_streams_with_nul_bytes() {
        let (a, b) = (Payload::new(1), Payload::new(2));
        let mut x = [0u8; 4096];
        let mut y = [0u8; 4096];
        a.fill(0, &mut x);
        b.fill(0, &mut y);
        assert_ne!(x, y);
        assert!(x.contains(&0), "binary payload includes NUL");
    }
}
