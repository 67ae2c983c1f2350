//! # ricochet (std adapter)
//!
//! An RFC 862 echo server and a verifying echo client on std sockets, both
//! driven by [`ricochet_core`]. The server is event-driven (one io_uring
//! ring or mio event loop per worker thread); the probe verifies every byte it gets back.
//!
//! - [`serve`]: the server (`ricochet serve`), embeddable as a library.
//! - [`probe`]: the verifying load tool (`ricochet probe`).
//! - [`blocking`]: a tiny blocking driver for one connection over any
//!   `Read + Write` (or `embedded_io` stream).
//! - [`clock`]: the one place where std time becomes core time.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod blocking;
pub mod clock;
pub mod probe;
pub mod serve;

pub use ricochet_core as core;
