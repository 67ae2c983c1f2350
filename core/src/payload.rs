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
