//! A session's buffer, allocated when the session first writes into it.
//!
//! On io_uring a raw session's input usually passes straight from the
//! received buffers to the send (`Transport::pass_through`) and the
//! transport tells the pump when there is nothing to read
//! (`Transport::read_would_block`), so such a session never writes into its
//! own buffer: it holds none (4 KiB less per connection by default, idle or
//! busy). It gets one the first time it needs it (a send that stopped
//! short, a `lines` or `frames` mode, a readiness-based transport's first
//! read) and keeps it until the connection ends, so the echo path never
//! allocates twice.

/// What the storage reads as before its allocation: zeros, as a freshly
/// allocated one. Larger buffers are allocated at once.
static ZEROS: [u8; LAZY_MAX] = [0; LAZY_MAX];

/// The largest buffer allocated lazily.
const LAZY_MAX: usize = 64 * 1024;

/// A session's storage (`AsRef`/`AsMut<[u8]>` of a fixed length): nothing
/// allocated until the first mutable borrow, zeros until then.
#[derive(Debug)]
pub(crate) struct SessionStorage {
    len: usize,
    bytes: Option<Box<[u8]>>,
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

    fn allocate(&mut self) -> &mut [u8] {
        let len = self.len;
        self.bytes
            .get_or_insert_with(|| vec![0u8; len].into_boxed_slice())
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

    #[test]
    fn storage_above_the_lazy_limit_is_allocated_at_once() {
        let s = SessionStorage::new(LAZY_MAX + 1);
        assert!(s.is_allocated());
        assert_eq!(s.as_ref().len(), LAZY_MAX + 1);
        assert!(SessionStorage::new(LAZY_MAX).as_ref().len() == LAZY_MAX);
        assert!(!SessionStorage::new(LAZY_MAX).is_allocated());
    }
}
