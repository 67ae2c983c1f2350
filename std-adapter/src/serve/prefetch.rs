//! Cache prefetch hints: ask the CPU to start loading memory the worker is
//! about to touch, so that several connections' cache misses overlap
//! instead of each stalling in turn (see the io_uring worker's `reap`).

/// Hints that the `len` bytes from `start` are about to be read or
/// written. A hint only: it never faults, whatever the address, and
/// changes nothing; on targets without one it does nothing.
#[inline]
pub(crate) fn range<T>(start: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start: *const i8 = start.cast();
        let mut off = 0;
        while off < len.max(1) {
            #[allow(unsafe_code)]
            // SAFETY: a prefetch neither faults nor writes; `wrapping_add`
            // computes the address without asserting it is in bounds.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(off));
            }
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn hint_on_any_address_neither_faults_nor_changes_memory() {
        let data: Vec<u8> = (0..=255).collect();
        range(data.as_ptr(), data.len());
        range(data.as_ptr(), 0);
        // Not mapped: a load would fault; a hint must not.
        range(std::ptr::null::<u8>(), 4096);
        range(usize::MAX as *const u8, 128);
        range(std::ptr::dangling::<u64>(), 64);
        assert!(data.iter().enumerate().all(|(i, &b)| b as usize == i));
    }
}
