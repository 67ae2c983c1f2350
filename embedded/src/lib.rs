//! The ricochet echo core on a smoltcp interface (work in progress).
#![no_std]
