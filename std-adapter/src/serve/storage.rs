//! A session's buffer, allocated when the session first writes into it,
//! and handed back to its worker's pool whenever the session holds no
//! bytes in it.
//!
//! On io_uring a raw session's input usually passes straight from the
//! received buffers to the send (`Transport::pass_through`) and the
//! transport tells the pump when there is nothing to read
//! (`Transport::read_would_block`), so such a session never writes into its
//! own buffer: it holds none (4 KiB less per connection by default, idle or
//! busy) until the read of its end of stream borrows one for that drive. On epoll a connection is read only once input came
//! (`Pump::clear_readable`), and after each drive that left nothing pending
//! or held (`Pump::idle_storage_mut`: an echo sent whole) its buffer goes
//! back to a small pool of its worker thread, where the next session that
//! needs one takes it: an idle connection holds no buffer on either
//! backend, and busy ones share a few buffers that stay in cache.
//!
//! A pooled buffer keeps the bytes of its last session; a session only
//! ever reads bytes it wrote.

use std::cell::RefCell;

/// What the storage reads as before its allocation: zeros, as a freshly
/// allocated one. Larger buffers are allocated at once.
static ZEROS: [u8; LAZY_MAX] = [0; LAZY_MAX];

/// The largest buffer allocated lazily (and pooled).
const LAZY_MAX: usize = 64 * 1024;

/// Bytes of free buffers a worker thread keeps for its next sessions.
const POOL_BYTES: usize = 256 * 1024;

thread_local! {
    /// Free session buffers of this worker thread, the last given back on
    /// top (still in cache).
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A session's storage (`AsRef`/`AsMut<[u8]>` of a fixed length): nothing
/// allocated until the first mutable borrow, zeros until then.
pub(crate) struct SessionStorage {
    len: usize,
    bytes: Option<Box<[u8]>>,
}

/// Its length and whether it holds a buffer, never the bytes (a pooled
/// buffer keeps another connection's).
impl std::fmt::Debug for SessionStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStorage")
            .field("len", &self.len)
            .field("allocated", &self.bytes.is_some())
            .finish()
    }
}

impl SessionStorage {
    /// Storage of `len` bytes (at most [`LAZY_MAX`] of them allocated only
    /// when first written to).
    pub(crate) fn new(len: usize) -> Self {
        let mut storage = SessionStorage { len, bytes: None };
        if len > LAZY_MAX {
            storage.allocate();
        }
        storage
    }

    /// Whether the buffer was allocated.
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.bytes.is_some()
    }

    /// Gives the buffer back to this thread's pool, for the next session
    /// that writes into its storage (this one or another). Only while the
    /// session holds no bytes in it ([`ricochet_core::Pump::idle_storage_mut`]).
    /// Freed instead when the pool is full; buffers above [`LAZY_MAX`] stay.
    pub(crate) fn release(&mut self) {
        if self.len > LAZY_MAX {
            return;
        }
        if let Some(bytes) = self.bytes.take() {
            // During the thread's exit the pool may be gone: then it is freed.
            let _ = POOL.try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if (pool.len() + 1) * bytes.len() <= POOL_BYTES {
                    pool.push(bytes);
                }
            });
        }
    }

    fn allocate(&mut self) -> &mut [u8] {
        let len = self.len;
        self.bytes.get_or_insert_with(|| {
            POOL.try_with(|pool| pool.borrow_mut().pop())
                .ok()
                .flatten()
                .filter(|pooled| pooled.len() == len)
                .unwrap_or_else(|| vec![0u8; len].into_boxed_slice())
        })
    }
}

impl Drop for SessionStorage {
    fn drop(&mut self) {
        self.release();
    }
}

/// Hands the session's buffer back to the pool if the session holds no
/// bytes in it: called after each drive.
pub(crate) fn release_idle(pump: &mut ricochet_core::Pump<SessionStorage>) {
    if let Some(storage) = pump.idle_storage_mut() {
        storage.release();
    }
}

impl AsRef<[u8]> for SessionStorage {
    fn as_ref(&self) -> &[u8] {
        match &self.bytes {
            Some(bytes) => bytes,
            // new() allocated any longer one.
            None => &ZEROS[..self.len],
        }
    }
}

impl AsMut<[u8]> for SessionStorage {
    fn as_mut(&mut self) -> &mut [u8] {
        self.allocate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_storage_reads_as_zeros_of_its_length_without_allocating() {
        let s = SessionStorage::new(4096);
        assert_eq!(s.as_ref().len(), 4096);
        assert!(s.as_ref().iter().all(|&b| b == 0));
        assert!(!s.is_allocated());
    }

    #[test]
    fn first_write_allocates_and_keeps_what_was_written() {
        let mut s = SessionStorage::new(64);
        s.as_mut()[..3].copy_from_slice(b"abc");
        assert!(s.is_allocated());
        assert_eq!(s.as_ref().len(), 64);
        assert_eq!(&s.as_ref()[..4], b"abc\0");
        s.as_mut()[3] = b'd';
        assert_eq!(
            &s.as_ref()[..4],
            b"abcd",
            "the same allocation, not a new one"
        );
    }

    /// Buffers in this thread's pool (each test runs on a thread of its own).
    fn pooled() -> usize {
        POOL.with(|pool| pool.borrow().len())
    }

    #[test]
    fn released_buffer_is_reused_by_the_next_session_that_writes() {
        let mut a = SessionStorage::new(4096);
        a.as_mut()[0] = 7;
        let at = a.as_ref().as_ptr();
        a.release();
        assert!(!a.is_allocated());
        assert_eq!(pooled(), 1);
        let mut b = SessionStorage::new(4096);
        assert_eq!(b.as_mut().as_ptr(), at, "the pooled buffer, not a new one");
        assert_eq!(pooled(), 0);
        assert_eq!(a.as_ref().len(), 4096);
    }

    #[test]
    fn pool_keeps_at_most_its_bytes_and_drops_the_rest() {
        let mut all: Vec<SessionStorage> = (0..100).map(|_| SessionStorage::new(4096)).collect();
        for s in &mut all {
            s.as_mut();
        }
        drop(all);
        assert_eq!(pooled(), POOL_BYTES / 4096);
    }

    #[test]
    fn pooled_buffer_of_another_length_is_not_handed_out() {
        let mut a = SessionStorage::new(64);
        a.as_mut();
        a.release();
        let mut b = SessionStorage::new(128);
        assert_eq!(b.as_mut().len(), 128);
    }

    #[test]
    fn debug_shows_the_length_never_the_bytes() {
        let mut s = SessionStorage::new(64);
        s.as_mut()[..6].copy_from_slice(b"secret");
        let shown = format!("{s:?}");
        assert_eq!(shown, "SessionStorage { len: 64, allocated: true }");
    }

    #[test]
    fn storage_above_the_lazy_limit_is_allocated_at_once() {
        let s = SessionStorage::new(LAZY_MAX + 1);
        assert!(s.is_allocated());
        assert_eq!(s.as_ref().len(), LAZY_MAX + 1);
        assert!(SessionStorage::new(LAZY_MAX).as_ref().len() == LAZY_MAX);
        assert!(!SessionStorage::new(LAZY_MAX).is_allocated());
    }

    #[test]
    fn idle_session_gives_its_buffer_back_to_the_pool() {
        let config = ricochet_core::SessionConfig::default();
        let mut pump = ricochet_core::Pump::new(
            SessionStorage::new(4096),
            config,
            ricochet_core::Instant::ZERO,
        );
        let idle = pump
            .idle_storage_mut()
            .expect("a new session holds nothing");
        idle.as_mut();
        assert!(pump.session().storage().is_allocated());
        release_idle(&mut pump);
        assert!(!pump.session().storage().is_allocated());
        assert_eq!(pooled(), 1);
    }

    #[test]
    fn storage_above_the_lazy_limit_stays_allocated_when_released() {
        let mut big = SessionStorage::new(LAZY_MAX + 1);
        big.release();
        assert!(big.is_allocated(), "kept, never lazily reallocated");
        assert_eq!(pooled(), 0);
        let mut at_limit = SessionStorage::new(LAZY_MAX);
        at_limit.as_mut();
        at_limit.release();
        assert!(!at_limit.is_allocated(), "at the limit: lazy, so pooled");
        assert_eq!(pooled(), 1);
    }
}
