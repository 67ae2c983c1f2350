//! The `lines` codec: a unit is every byte up to and including `\n`.
//!
//! `\r\n` needs no special case: the `\r` is part of the line. A line is
//! echoed exactly as received, terminator included.

/// The line terminator.
pub const TERMINATOR: u8 = b'\n';

#[cfg(test)]
std::thread_local! {
    /// Bytes [`complete_prefix`] looked at on this thread: what the session
    /// tests hold the cost of long lines to.
    pub(crate) static SCANNED: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Where the complete lines in `buf` end.
///
/// Returns `(len, lines)`: `buf[..len]` is made of `lines` complete lines and
/// `buf[len..]` is an unterminated remainder (possibly empty). Runs in one
/// pass over `buf` (memchr).
pub fn complete_prefix(buf: &[u8]) -> (usize, u64) {
    #[cfg(test)]
    SCANNED.with(|n| n.set(n.get() + buf.len() as u64));
    let mut end = 0;
    let mut lines = 0u64;
    for pos in memchr::memchr_iter(TERMINATOR, buf) {
        end = pos + 1;
        lines += 1;
    }
    (end, lines)
}

/// The first complete line of `buf` (terminator included), if any.
pub fn first_line(buf: &[u8]) -> Option<&[u8]> {
    memchr::memchr(TERMINATOR, buf).map(|pos| &buf[..=pos])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_prefix_table() {
        let cases: &[(&[u8], usize, u64)] = &[
            (b"", 0, 0),
            (b"abc", 0, 0),
            (b"\n", 1, 1),
            (b"abc\n", 4, 1),
            (b"abc\r\n", 5, 1),
            (b"a\nb", 2, 1),
            (b"a\nb\n", 4, 2),
            (b"\n\n\nx", 3, 3),
            (b"\0\0\n\0", 3, 1),
        ];
        for &(input, len, lines) in cases {
            assert_eq!(complete_prefix(input), (len, lines), "input {input:?}");
        }
    }

    #[test]
    fn first_line_table() {
        assert_eq!(first_line(b"ab\ncd\n"), Some(&b"ab\n"[..]));
        assert_eq!(first_line(b"abcd"), None);
        assert_eq!(first_line(b"\n"), Some(&b"\n"[..]));
    }
}
