//! One file descriptor held back so the metrics endpoint can still be
//! scraped when the process has run out of them.
//!
//! Out of descriptors (EMFILE/ENFILE) is exactly when an operator looks at
//! the metrics (`ricochet_accept_errors_total{reason="fd_exhausted"}`), and
//! exactly when `accept` on the metrics listener fails too. The endpoint
//! keeps a duplicate of its listener open; on EMFILE it closes that
//! duplicate, accepts into the freed slot and serves the scrape, and takes
//! a descriptor back into reserve as soon as it can. A worker that accepts
//! in the few microseconds between can win the slot: then this scrape
//! waits for the next one, as it would have without the reserve.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// A spare descriptor (a duplicate of `source`), or none while it is lent out.
#[derive(Debug)]
pub(super) struct SpareFd(Option<OwnedFd>);

impl SpareFd {
    /// Duplicates `source` into reserve; none if even that fails (then
    /// [`SpareFd::restore`] tries again).
    pub(super) fn new(source: &impl AsFd) -> SpareFd {
        SpareFd(source.as_fd().try_clone_to_owned().ok())
    }

    /// Closes the spare if `e` means "out of descriptors" and one is held:
    /// `true` when the caller should retry its accept now.
    pub(super) fn release_for(&mut self, e: &io::Error) -> bool {
        out_of_descriptors(e) && self.0.take().is_some()
    }

    /// Takes a descriptor back into reserve if it is lent out (best effort:
    /// while the process is still out of them, a later call tries again).
    pub(super) fn restore(&mut self, source: &impl AsFd) {
        if self.0.is_none() {
            self.0 = source.as_fd().try_clone_to_owned().ok();
        }
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl SpareFd {
        fn is_held(&self) -> bool {
            self.0.is_some()
        }
    }

    #[test]
    fn exhaustion_lends_the_spare_once_and_restore_takes_it_back() {
        let source = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut spare = SpareFd::new(&source);
        assert!(spare.is_held());
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(
            spare.release_for(&emfile),
            "first EMFILE: retry with the spare"
        );
        assert!(!spare.is_held());
        assert!(!spare.release_for(&emfile), "nothing left to lend");
        spare.restore(&source);
        assert!(spare.is_held());
        assert!(spare.release_for(&io::Error::from_raw_os_error(libc::ENFILE)));
    }

    #[test]
    fn other_accept_errors_keep_the_spare() {
        let source = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut spare = SpareFd::new(&source);
        for errno in [libc::ECONNABORTED, libc::ENOMEM, libc::EAGAIN] {
            assert!(!spare.release_for(&io::Error::from_raw_os_error(errno)));
            assert!(spare.is_held());
        }
    }
}
