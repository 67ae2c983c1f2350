//! Logging shim: `error!` .. `trace!` go to `defmt`, to `log`, or nowhere.
//!
//! Messages use `{}` for values that are both `Display` and `defmt::Format`
//! (ricochet-core's and smoltcp's types are) and `{:?}` for values that are
//! both `Debug` and `defmt::Format` (this crate's types), so one message
//! compiles with either backend. Without a backend the arguments are only
//! borrowed, so nothing is evaluated twice and nothing goes unused.
#![allow(unused_macros)]

macro_rules! log_at {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($fmt $(, $arg)*);
        #[cfg(feature = "log")]
        ::log::$level!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        {
            let _ = ($(&$arg,)*);
        }
    }};
}

macro_rules! error {
    ($($t:tt)*) => { log_at!(error, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { log_at!(warn, $($t)*) };
}

macro_rules! info {
    ($($t:tt)*) => { log_at!(info, $($t)*) };
}

macro_rules! debug {
    ($($t:tt)*) => { log_at!(debug, $($t)*) };
}

macro_rules! trace {
    ($($t:tt)*) => { log_at!(trace, $($t)*) };
}
