//! Cache prefetch hints: ask the CPU to start loading memory the worker is
//! about to touch, so that several connections' cache misses overlap
//! instead of each stalling in turn (see the io_uring worker's `reap` and
//! the epoll worker's `run`).
//!
//! A hint only: it never faults, whatever the address, and changes
//! nothing. On x86_64 it is `prefetcht0`; elsewhere there is none yet
//! (`std::hint::prefetch_read` is unstable), the hints do nothing and
//! [`ENABLED`] is false so callers skip the work of computing addresses.

use std::collections::VecDeque;

/// Whether this target has a prefetch hint.
pub(crate) const ENABLED: bool = cfg!(all(target_arch = "x86_64", target_feature = "sse"));

/// Hints that the `len` bytes from `start` are about to be read or
/// written: every cache line they touch.
#[inline]
pub(crate) fn range<T>(start: *const T, len: usize) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let start: *const i8 = start.cast();
        // From the line holding the first byte to the one holding the last.
        let lines = ((start.addr() % LINE) + len.max(1)).div_ceil(LINE);
        for i in 0..lines {
            #[allow(unsafe_code)]
            // SAFETY: `_mm_prefetch` needs only SSE, which the `cfg`
            // above guarantees; it takes any address (no dereference, no
            // fault), and `wrapping_add` computes one without claiming it
            // is in bounds.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(i * LINE));
            }
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = (start, len);
}

/// Hints that the oldest entries of `queue` (up to 8; the start of its
/// buffer when it is empty) are about to be used.
#[inline]
// The io_uring backend's (Linux only).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn deque_front<T>(queue: &VecDeque<T>) {
    let (front, _) = queue.as_slices();
    range(front.as_ptr(), front.len().clamp(1, 8) * size_of::<T>());
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::{deque_front, range};

    /// Each address here would fault if loaded: a hint must not.
    #[test]
    fn hint_on_an_unmapped_address_does_not_fault() {
        range(std::ptr::null::<u8>(), 4096);
        range(usize::MAX as *const u8, 128);
        range(std::ptr::dangling::<u64>(), 64);
        range(std::ptr::null::<u8>(), 0);
        let data = [7u8; 300];
        // Unaligned, spanning several lines, and past the end.
        range(data.as_ptr().wrapping_add(3), data.len());
        range(data.as_ptr().wrapping_add(data.len()), 64);
    }

    #[test]
    fn hint_on_a_queue_never_allocated_emptied_or_wrapped_does_not_fault() {
        let never: VecDeque<u64> = VecDeque::new();
        deque_front(&never);
        let mut q: VecDeque<u64> = VecDeque::with_capacity(4);
        q.extend([1, 2, 3]);
        q.pop_front();
        q.pop_front();
        q.extend([4, 5]); // wraps around the buffer's end
        deque_front(&q);
        q.clear();
        deque_front(&q);
        assert!(q.is_empty());
    }
}
