//! Size-first run-time routines for firmware whose flash is tight:
//! `memcpy`, `memmove`, `memset`, `memcmp` (and the ARM EABI
//! `__aeabi_mem*` entry points), and the unsigned 64-bit division behind
//! `__aeabi_uldivmod`.
//!
//! compiler_builtins' versions are tuned for speed: on thumbv7m the memory
//! routines take about 3.4 KB of flash (`memmove` alone 1.6 KB) and the
//! 64-bit division 870 bytes. These take about 550 bytes together. The
//! copies move a word at a time when source and destination share their
//! alignment within a word (the common case for buffers), and a byte at a
//! time otherwise; the division is shift-and-subtract over the quotient's
//! bits (at most 64 steps; smoltcp divides microseconds by 1000, a few
//! times per frame).
//!
//! A firmware opts in by linking the crate (`use ricochet_mem as _;`): the
//! symbols are defined on bare-metal targets only (`target_os = "none"`)
//! and take precedence over compiler_builtins' weak ones. On other targets
//! the crate defines nothing, so host tests exercise the same code under
//! other names ([`copy_forward`], [`copy_backward`], [`fill`],
//! [`compare`], [`divide`]).
//!
//! The crate is `#![no_builtins]`: LLVM must not turn these loops back into
//! calls to the functions they implement.

#![no_std]
#![no_builtins]

mod exports;

const WORD: usize = core::mem::size_of::<usize>();

/// Copies `n` bytes from `src` to `dst`, lowest address first.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `n` bytes; if the
/// regions overlap, `dst` must not be above `src` (as for `memmove` copying
/// down).
pub unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    let mut i = 0;
    if (dst as usize ^ src as usize).is_multiple_of(WORD) {
        // Same phase: bytes up to a word boundary, then whole words.
        while i < n && !(dst as usize + i).is_multiple_of(WORD) {
            // SAFETY: i < n, within both regions.
            unsafe { *dst.add(i) = *src.add(i) };
            i += 1;
        }
        while n - i >= WORD {
            // SAFETY: both addresses are word-aligned here and a whole word
            // lies within both regions (n - i >= WORD). Copying up, a
            // word never overwrites source bytes not yet read: dst <= src.
            unsafe { *(dst.add(i) as *mut usize) = *(src.add(i) as *const usize) };
            i += WORD;
        }
    }
    while i < n {
        // SAFETY: i < n, within both regions.
        unsafe { *dst.add(i) = *src.add(i) };
        i += 1;
    }
}

/// Copies `n` bytes from `src` to `dst`, highest address first.
///
/// # Safety
///
/// As [`copy_forward`], but if the regions overlap, `dst` must not be below
/// `src`.
pub unsafe fn copy_backward(dst: *mut u8, src: *const u8, n: usize) {
    let mut i = n;
    if (dst as usize ^ src as usize).is_multiple_of(WORD) {
        while i > 0 && !(dst as usize + i).is_multiple_of(WORD) {
            i -= 1;
            // SAFETY: i < n.
            unsafe { *dst.add(i) = *src.add(i) };
        }
        while i >= WORD {
            i -= WORD;
            // SAFETY: word-aligned (dst + i + WORD was aligned) and within
            // both regions; copying down from the top never overwrites
            // source bytes not yet read when dst >= src.
            unsafe { *(dst.add(i) as *mut usize) = *(src.add(i) as *const usize) };
        }
    }
    while i > 0 {
        i -= 1;
        // SAFETY: i < n.
        unsafe { *dst.add(i) = *src.add(i) };
    }
}

/// Copies `n` bytes from `src` to `dst`; the regions may overlap.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `n` bytes.
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // dst below src, or far enough above it: copying up is safe.
        // SAFETY: the caller's guarantee; the overlap rule holds.
        unsafe { copy_forward(dst, src, n) }
    } else {
        // SAFETY: as above, with dst inside (src, src + n).
        unsafe { copy_backward(dst, src, n) }
    }
}

/// Sets `n` bytes at `dst` to `byte`.
///
/// # Safety
///
/// `dst` must be valid for writes of `n` bytes.
pub unsafe fn fill(dst: *mut u8, byte: u8, n: usize) {
    let mut i = 0;
    while i < n && !(dst as usize + i).is_multiple_of(WORD) {
        // SAFETY: i < n.
        unsafe { *dst.add(i) = byte };
        i += 1;
    }
    let word = usize::from_ne_bytes([byte; WORD]);
    while n - i >= WORD {
        // SAFETY: aligned, and a whole word lies within the region.
        unsafe { *(dst.add(i) as *mut usize) = word };
        i += WORD;
    }
    while i < n {
        // SAFETY: i < n.
        unsafe { *dst.add(i) = byte };
        i += 1;
    }
}

/// Compares `n` bytes: the difference of the first pair that differs (as
/// unsigned bytes), or 0.
///
/// # Safety
///
/// `a` and `b` must be valid for reads of `n` bytes.
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// `(n / d, n % d)`; `d` must not be 0 (Rust checks before it divides:
/// with 0 the result is `(u64::MAX, n)`).
pub fn divide(n: u64, d: u64) -> (u64, u64) {
    if d > n {
        return (0, n);
    }
    if d == 0 {
        return (u64::MAX, n);
    }
    // Line the divisor up under the dividend's top bit, then one quotient
    // bit per step.
    let shift = d.leading_zeros() - n.leading_zeros();
    let mut d = d << shift;
    let mut r = n;
    let mut q = 0;
    for _ in 0..=shift {
        q <<= 1;
        if r >= d {
            r -= d;
            q |= 1;
        }
        d >>= 1;
    }
    (q, r)
}

#[cfg(test)]
mod tests;
