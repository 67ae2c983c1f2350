//! Buffers the kernel fills or reads on its own time: a ring of provided
//! receive buffers (`IORING_REGISTER_PBUF_RING`) and a pool of send buffers.
//!
//! The ring keeps a mirror of which buffer sits in which slot: a bundle
//! receive (`IORING_RECVSEND_BUNDLE`) names only its first buffer, and the
//! others are the slots after it, in ring order.
//!
//! Why hand-written: the `io-uring` crate gives the entry layout
//! ([`BufRingEntry`]) and the registration call, not an owner of the memory.
//! The unsafe code is confined to this file: allocating the ring and the
//! buffers, publishing the ring's tail, and reading a buffer the kernel
//! filled (after its completion, before it is handed back).

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

/// A ring of `count` provided buffers of `size` bytes each, in buffer group `bgid`.
///
/// The kernel takes a buffer from the ring for each receive completion and
/// names it by id in the completion; the worker hands it back with
/// [`BufRing::recycle`] once it is done reading, and [`BufRing::publish`]
/// makes the returned ones visible before the next `io_uring_enter`.
pub(crate) struct BufRing {
    entries: NonNull<BufRingEntry>,
    mem: NonNull<u8>,
    count: u16,
    size: usize,
    bgid: u16,
    /// Local tail: entries written so far (wrapping).
    tail: u16,
    /// The tail the kernel has seen.
    published: u16,
    /// Buffers the kernel may take now (in the ring, published or not).
    available: usize,
    /// The buffer id written at each ring slot.
    bid_at: Box<[u16]>,
    /// The ring slot each buffer id was last written at.
    slot_of: Box<[u16]>,
}

/// The buffers one receive completion filled: `count` buffers from ring
/// slot `start` on, `len` bytes in all (see [`BufRing::take_completion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Filled {
    start: u16,
    /// How many buffers the completion took.
    pub(crate) count: usize,
    len: usize,
}

// SAFETY: the ring and the buffers are owned by this value (allocated in
// `new`, freed in `drop`); the kernel reads and writes them only while the
// worker thread that owns this value drives the ring.
#[allow(unsafe_code)]
unsafe impl Send for BufRing {}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing")
            .field("count", &self.count)
            .field("size", &self.size)
            .field("bgid", &self.bgid)
            .field("available", &self.available)
            .finish_non_exhaustive()
    }
}

#[allow(unsafe_code)]
impl BufRing {
    fn ring_layout(count: u16) -> Layout {
        // Page-aligned, as the kernel requires of a ring it maps.
        Layout::from_size_align(usize::from(count) * size_of::<BufRingEntry>(), 4096)
            .expect("ring layout")
    }

    fn mem_layout(count: u16, size: usize) -> Layout {
        Layout::from_size_align(usize::from(count) * size, 64).expect("buffer layout")
    }

    /// `count` (a power of two, at most 32768) buffers of `size` bytes, all
    /// in the ring; not yet registered.
    pub(crate) fn new(count: u16, size: usize, bgid: u16) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && count <= 32768 && size > 0);
        let ring_layout = Self::ring_layout(count);
        let mem_layout = Self::mem_layout(count, size);
        // SAFETY: both layouts have a non-zero size.
        let entries = unsafe { alloc_zeroed(ring_layout) }.cast::<BufRingEntry>();
        let Some(entries) = NonNull::new(entries) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        // SAFETY: as above. Not zeroed: pages are touched only when used.
        let Some(mem) = NonNull::new(unsafe { alloc(mem_layout) }) else {
            // SAFETY: allocated just above with this layout.
            unsafe { dealloc(entries.as_ptr().cast(), ring_layout) };
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut ring = BufRing {
            entries,
            mem,
            count,
            size,
            bgid,
            tail: 0,
            published: 0,
            available: 0,
            bid_at: vec![0; usize::from(count)].into_boxed_slice(),
            slot_of: vec![0; usize::from(count)].into_boxed_slice(),
        };
        for bid in 0..count {
            ring.recycle(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with the kernel as buffer group `bgid`.
    pub(crate) fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring memory stays allocated until `self` is dropped,
        // and the worker drops it only after the io_uring instance is gone
        // (or leaks it, see the worker's teardown).
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                self.count,
                self.bgid,
                0,
            )
        }
    }

    /// The buffer group id.
    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Buffers the kernel may take now.
    pub(crate) fn available(&self) -> usize {
        self.available
    }

    /// The first `len` bytes of buffer `bid`, which the kernel filled and
    /// named in a completion, and which has not been recycled since.
    pub(crate) fn filled(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid) % usize::from(self.count);
        let len = len.min(self.size);
        // SAFETY: in bounds (bid < count, len <= size). The kernel wrote
        // this buffer before posting the completion that named it and does
        // not touch it again until it is recycled, so nothing writes it
        // while this shared borrow lives (recycling needs `&mut self`).
        unsafe { std::slice::from_raw_parts(self.mem.as_ptr().add(bid * self.size), len) }
    }

    /// Writes `data` into buffer `bid`, as the kernel would (tests only).
    #[cfg(test)]
    pub(crate) fn fill_for_test(&mut self, bid: u16, data: &[u8]) {
        let bid = usize::from(bid) % usize::from(self.count);
        let len = data.len().min(self.size);
        // SAFETY: in bounds (bid < count, len <= size); `&mut self`: no
        // other borrow of the buffers exists, and no kernel uses them.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.mem.as_ptr().add(bid * self.size),
                len,
            );
        }
    }

    /// Counts `n` buffers as free, as if the others were held elsewhere
    /// (tests only: the ring itself is unchanged).
    #[cfg(test)]
    pub(crate) fn set_available_for_test(&mut self, n: usize) {
        self.available = n;
    }

    /// Hands buffer `bid` back to the kernel (visible after [`BufRing::publish`]).
    pub(crate) fn recycle(&mut self, bid: u16) {
        let mask = self.count - 1;
        let slot = usize::from(self.tail & mask);
        let bid = bid & mask;
        // SAFETY: `slot < count`: inside the ring. The kernel reads entries
        // only up to the published tail, so it does not read this one now.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        // SAFETY: `bid < count`: the address is inside `mem`.
        let addr = unsafe { self.mem.as_ptr().add(usize::from(bid) * self.size) };
        entry.set_addr(addr as u64);
        entry.set_len(u32::try_from(self.size).unwrap_or(u32::MAX));
        entry.set_bid(bid);
        self.bid_at[slot] = bid;
        self.slot_of[usize::from(bid)] = slot as u16;
        self.tail = self.tail.wrapping_add(1);
        self.available += 1;
    }

    /// The kernel took a buffer (a completion named it).
    pub(crate) fn taken(&mut self) {
        self.available = self.available.saturating_sub(1);
    }

    /// The buffers a receive completion took out of the ring (counted as
    /// taken, see [`BufRing::taken`]): it named buffer `first`
    /// (`IORING_CQE_F_BUFFER`) and received `len` bytes.
    ///
    /// A plain receive takes one buffer. A bundle receive takes buffers
    /// from consecutive ring slots, `first`'s slot first, and fills each
    /// whole but the last: the kernel maps whole buffers (it truncates
    /// only a bundle's sole buffer, to the bytes queued), and when it
    /// extends a bundle with a second pass it does so only after the first
    /// filled every buffer it mapped. So `len` bytes took
    /// `ceil(len / size)` buffers (one if `len` is 0).
    pub(crate) fn take_completion(&mut self, first: u16, len: usize) -> Filled {
        let start = self.slot_of[usize::from(first & (self.count - 1))];
        debug_assert_eq!(self.bid_at[usize::from(start)], first & (self.count - 1));
        let count = len.div_ceil(self.size).clamp(1, usize::from(self.count));
        self.available = self.available.saturating_sub(count);
        Filled { start, count, len }
    }

    /// Buffer `k` (< `filled.count`) of a completion, and the bytes in it.
    pub(crate) fn nth(&self, filled: Filled, k: usize) -> (u16, usize) {
        let slot = filled.start.wrapping_add(k as u16) & (self.count - 1);
        let bytes = filled.len.saturating_sub(k * self.size).min(self.size);
        (self.bid_at[usize::from(slot)], bytes)
    }

    /// Puts every buffer of a completion back (its bytes are not wanted).
    pub(crate) fn recycle_completion(&mut self, filled: Filled) {
        for k in 0..filled.count {
            let (bid, _) = self.nth(filled, k);
            self.recycle(bid);
        }
    }

    /// Makes the recycled buffers visible to the kernel.
    pub(crate) fn publish(&mut self) {
        if self.published == self.tail {
            return;
        }
        // SAFETY: the tail field overlays the reserved field of entry 0,
        // inside the ring, 2-byte aligned; the kernel reads it concurrently,
        // hence the atomic release store (entries written before it).
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
        self.published = self.tail;
    }

    /// A raw pointer to buffer `bid` at `offset` (for an echo's `iovec`).
    pub(crate) fn ptr(&self, bid: u16, offset: usize) -> *mut u8 {
        let bid = usize::from(bid) % usize::from(self.count);
        self.mem
            .as_ptr()
            .wrapping_add(bid * self.size + offset.min(self.size))
    }
}

#[allow(unsafe_code)]
impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the worker drops
        // the ring only when the kernel no longer uses it.
        unsafe {
            dealloc(self.entries.as_ptr().cast(), Self::ring_layout(self.count));
            dealloc(self.mem.as_ptr(), Self::mem_layout(self.count, self.size));
        }
    }
}

/// Send buffers of [`TX_CAP`] bytes, reused: a connection holds one only
/// while it has echo the kernel has not taken, so idle connections hold
/// none. At most `spare` are kept free.
#[derive(Debug)]
pub(crate) struct TxPool {
    free: Vec<Vec<u8>>,
    spare: usize,
}

/// Bytes a connection may have queued for sending.
pub(crate) const TX_CAP: usize = 64 * 1024;

impl TxPool {
    pub(crate) fn new(spare: usize) -> Self {
        TxPool {
            free: Vec::new(),
            spare,
        }
    }

    /// An empty buffer with room for [`TX_CAP`] bytes (never reallocated
    /// while filled up to that).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(TX_CAP))
    }

    /// Returns a buffer no send reads any more.
    pub(crate) fn put(&mut self, mut buf: Vec<u8>) {
        if self.free.len() < self.spare {
            buf.clear();
            self.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_are_available_again_in_order() {
        let mut ring = BufRing::new(4, 64, 0).expect("ring");
        assert_eq!(ring.available(), 4);
        ring.taken();
        ring.taken();
        assert_eq!(ring.available(), 2);
        ring.recycle(1);
        ring.publish();
        assert_eq!(ring.available(), 3);
        assert_eq!(
            ring.filled(1, 1000).len(),
            64,
            "a buffer is never longer than its size"
        );
    }

    #[test]
    fn completion_buffers_are_the_ring_slots_after_the_first_whatever_their_ids() {
        let mut ring = BufRing::new(8, 100, 0).expect("ring");
        // The kernel takes all eight; they come back out of order, so
        // slots and ids differ, and the ring wraps.
        for _ in 0..8 {
            ring.taken();
        }
        for bid in [5, 2, 7, 0, 3, 6, 1, 4] {
            ring.recycle(bid);
        }
        ring.publish();
        // A bundle that named buffer 7 (slot 2) took the next slots' buffers.
        let filled = ring.take_completion(7, 250);
        assert_eq!(filled.count, 3);
        assert_eq!(ring.available(), 5, "three buffers out of the ring");
        let got: Vec<_> = (0..filled.count).map(|k| ring.nth(filled, k)).collect();
        assert_eq!(got, [(7, 100), (0, 100), (3, 50)]);
        // Across the end of the ring: slot 7 (buffer 4), then slot 0.
        let filled = ring.take_completion(4, 200);
        let got: Vec<_> = (0..filled.count).map(|k| ring.nth(filled, k)).collect();
        assert_eq!(got, [(4, 100), (5, 100)]);
        assert_eq!(ring.available(), 3);
        // Bytes not wanted (a closing connection): all of them go back.
        ring.recycle_completion(filled);
        assert_eq!(ring.available(), 5);
    }

    #[test]
    fn a_plain_or_empty_completion_takes_one_buffer() {
        let mut ring = BufRing::new(4, 100, 0).expect("ring");
        for (len, bytes) in [(0, 0), (1, 1), (100, 100)] {
            let filled = ring.take_completion(2, len);
            assert_eq!(filled.count, 1);
            assert_eq!(ring.nth(filled, 0), (2, bytes));
        }
    }

    #[test]
    fn new_ring_names_the_buffer_group_it_was_made_for() {
        // Receives name the group by `bgid()`: another group's buffers
        // (a UDP socket's) or none at all would be taken instead.
        for bgid in [0, 3] {
            assert_eq!(BufRing::new(4, 64, bgid).expect("ring").bgid(), bgid);
        }
    }

    #[test]
    fn debug_of_a_ring_shows_its_shape_and_free_buffers() {
        let mut ring = BufRing::new(4, 64, 2).expect("ring");
        ring.taken();
        let shown = format!("{ring:?}");
        for part in ["count: 4", "size: 64", "bgid: 2", "available: 3"] {
            assert!(shown.contains(part), "{part:?} not in {shown}");
        }
    }

    /// The process's virtual size (`VmSize`), in KiB.
    fn vm_size_kib() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmSize:"))
            .expect("VmSize line");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn dropped_ring_gives_its_memory_back() {
        // 256 MiB of buffers a ring (never touched: address space only),
        // eight times: a ring that kept its memory would leave 2 GiB.
        let before = vm_size_kib();
        for _ in 0..8 {
            drop(BufRing::new(32768, 8192, 0).expect("ring"));
        }
        let grown = vm_size_kib().saturating_sub(before);
        assert!(
            grown < 1024 * 1024,
            "{grown} KiB more after dropping 8 rings"
        );
    }

    #[test]
    fn tx_pool_keeps_at_most_its_spares() {
        let mut pool = TxPool::new(1);
        let (a, b) = (pool.take(), pool.take());
        assert!(a.capacity() >= TX_CAP);
        pool.put(a);
        pool.put(b);
        assert_eq!(pool.free.len(), 1);
    }
}
