//! The echo buffer of one session: caller-owned storage laid out as
//! `[ sent | pending | held | free ]`.
//!
//! - *pending*: released by the mode, not yet written to the peer;
//! - *held*: received, waiting for the rest of its unit (a line, a frame);
//! - *free*: where the next read lands.
//!
//! Space before *pending* (bytes already sent) is reclaimed without copying
//! whenever everything was sent. Otherwise live bytes are moved to the front
//! only when that is paid for:
//!
//! - when at least as many bytes were sent (and so freed) as are moved, or
//! - when nothing is pending (a held, incomplete unit fills the rest) and
//!   there is no free space: a byte can be moved this way only once, since
//!   it cannot move again before everything in front of it was sent, and
//!   it was the first byte not sent.
//!
//! So the bytes moved never exceed the bytes received plus the bytes sent:
//! the cost per byte is bounded, whatever the peer's read and write sizes.
//! A slow reader that frees a few bytes of a full buffer at a time does not
//! trigger a move per acknowledgement: reading waits (backpressure) until
//! half the buffer was sent.

/// The buffer. `S` is the storage the caller provides: an array, a boxed
/// slice, or a `&mut [u8]` into a `static`.
#[derive(Clone)]
pub(crate) struct EchoBuffer<S> {
    storage: S,
    /// The storage's length, fixed at construction.
    capacity: usize,
    /// Start of pending bytes (everything before was sent).
    head: usize,
    /// End of pending bytes = start of held bytes.
    released: usize,
    /// End of received bytes = start of free space.
    tail: usize,
    /// Bytes moved by compaction since the buffer was (re)armed.
    moved: u64,
}

impl<S> EchoBuffer<S> {
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn storage(&self) -> &S {
        &self.storage
    }

    pub(crate) fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub(crate) fn moved(&self) -> u64 {
        self.moved
    }

    /// Pending plus held bytes.
    pub(crate) fn buffered(&self) -> usize {
        self.tail - self.head
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.released - self.head
    }

    pub(crate) fn held_len(&self) -> usize {
        self.tail - self.released
    }

    /// Free bytes at the end, without compacting.
    pub(crate) fn free_now(&self) -> usize {
        self.capacity - self.tail
    }

    /// Free bytes after the compaction [`EchoBuffer::free_mut`] would do.
    pub(crate) fn free_len(&self) -> usize {
        if self.may_compact() {
            self.capacity - self.buffered()
        } else {
            self.free_now()
        }
    }

    fn may_compact(&self) -> bool {
        if self.head == 0 {
            return false;
        }
        let live = self.buffered();
        self.head >= live || (self.released == self.head && self.tail == self.capacity)
    }

    /// Forgets every byte (a new connection, or an abort).
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.released = 0;
        self.tail = 0;
    }

    pub(crate) fn rearm(&mut self) {
        self.clear();
        self.moved = 0;
    }

    /// `n` bytes were written at the start of the free space.
    pub(crate) fn commit_received(&mut self, n: usize) {
        self.tail += n;
    }

    /// `n` pending bytes were sent. Returns whether the buffer is now empty.
    pub(crate) fn commit_sent(&mut self, n: usize) -> bool {
        self.head += n;
        if self.head == self.tail {
            // Everything echoed: the whole buffer is free again, no copy.
            self.clear();
            true
        } else {
            false
        }
    }

    /// Moves `len` held bytes to pending. Returns whether pending was empty.
    pub(crate) fn release(&mut self, len: usize) -> bool {
        let was_empty = self.released == self.head;
        self.released += len;
        was_empty
    }

    /// Drops every held byte; returns how many.
    pub(crate) fn discard_held(&mut self) -> usize {
        let n = self.held_len();
        self.tail = self.released;
        n
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> EchoBuffer<S> {
    pub(crate) fn new(storage: S) -> Self {
        let capacity = storage.as_ref().len();
        EchoBuffer {
            storage,
            capacity,
            head: 0,
            released: 0,
            tail: 0,
            moved: 0,
        }
    }

    pub(crate) fn held(&self) -> &[u8] {
        &self.storage.as_ref()[self.released..self.tail]
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.storage.as_ref()[self.head..self.released]
    }

    /// The free space, compacting first when that is paid for (module docs).
    pub(crate) fn free_mut(&mut self) -> &mut [u8] {
        if self.may_compact() {
            let live = self.buffered();
            self.storage.as_mut().copy_within(self.head..self.tail, 0);
            self.released -= self.head;
            self.tail = live;
            self.head = 0;
            self.moved += live as u64;
        }
        let tail = self.tail;
        &mut self.storage.as_mut()[tail..]
    }

    /// The whole storage, for a caller that holds no bytes any more (a
    /// terminal session discarding input while it lingers).
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        self.clear();
        self.storage.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_buffer_with_little_sent_does_not_move_until_half_is_sent() {
        let mut b = EchoBuffer::new([0u8; 8]);
        b.free_mut()[..8].copy_from_slice(b"01234567");
        b.commit_received(8);
        b.release(8);
        b.commit_sent(1);
        assert_eq!(b.free_len(), 0, "one byte freed: reading waits");
        assert!(b.free_mut().is_empty());
        assert_eq!(b.moved(), 0);
        b.commit_sent(3);
        assert_eq!(b.free_len(), 4, "half sent: the move is paid for");
        assert_eq!(b.free_mut().len(), 4);
        assert_eq!(b.moved(), 4);
        assert_eq!(b.pending(), b"4567");
    }

    #[test]
    fn held_unit_filling_the_rest_moves_once_when_nothing_is_pending() {
        let mut b = EchoBuffer::new([0u8; 8]);
        b.free_mut()[..8].copy_from_slice(b"ab\ncdefg");
        b.commit_received(8);
        b.release(3);
        b.commit_sent(3);
        // "cdefg" is held (5 bytes), 3 were sent: nothing pending, buffer full.
        assert_eq!(b.free_mut().len(), 3);
        assert_eq!(b.held(), b"cdefg");
        assert_eq!(b.moved(), 5);
    }

    #[test]
    fn everything_sent_frees_the_whole_buffer_without_moving() {
        let mut b = EchoBuffer::new([0u8; 8]);
        b.free_mut()[..5].copy_from_slice(b"hello");
        b.commit_received(5);
        b.release(5);
        assert!(b.commit_sent(5));
        assert_eq!(b.free_mut().len(), 8);
        assert_eq!(b.moved(), 0);
    }
}
