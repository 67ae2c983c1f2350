//! Command-line front ends: argument parsing and reporting only; the work is in the library.

pub(crate) mod probe;
pub(crate) mod serve;
