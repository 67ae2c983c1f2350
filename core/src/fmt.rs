//! Logging shim: `trace!`/`debug!`/`warn!` go to `defmt`, to `log`, or nowhere.
//!
//! Arguments must implement both `defmt::Format` and `core::fmt::Debug`-style
//! formatting used by the chosen backend; keep messages to plain values.
#![allow(unused_macros)]

macro_rules! debug {
    ($($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        ::defmt::debug!($($arg)*);
        #[cfg(feature = "log")]
        ::log::debug!($($arg)*);
    }};
}

macro_rules! trace {
    ($($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        ::defmt::trace!($($arg)*);
        #[cfg(feature = "log")]
        ::log::trace!($($arg)*);
    }};
}
