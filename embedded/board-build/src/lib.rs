//! The build script of a cortex-m-rt firmware crate, written once: a
//! board's `build.rs` is
//!
//! ```ignore
//! fn main() {
//!     ricochet_board_build::link(include_bytes!("memory.x"));
//! }
//! ```
//!
//! with `ricochet-board-build` under `[build-dependencies]`.

use std::env;
use std::fs;
use std::path::PathBuf;

/// Puts `memory_x` (the board's `memory.x`) where the linker finds it and
/// adds the link scripts: cortex-m-rt's `link.x`, which includes
/// `memory.x`, and `defmt.x`, with `--nmagic` (sections need not be page
/// aligned in flash).
///
/// Copying `memory.x` into `OUT_DIR` (and adding that to the search path)
/// makes the build independent of the directory cargo runs the linker
/// from. Cargo re-runs the build script when `memory.x` or `build.rs`
/// changes.
///
/// # Panics
///
/// If `OUT_DIR` is unset (only cargo runs build scripts, and it sets it)
/// or `memory.x` cannot be written there.
pub fn link(memory_x: &[u8]) {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("memory.x"), memory_x).expect("write memory.x to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");

    println!("cargo:rustc-link-arg=--nmagic");
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rustc-link-arg=-Tdefmt.x");
}
