//! Puts `memory.x` where the linker finds it and adds the link scripts.
//!
//! cortex-m-rt's `link.x` includes `memory.x`. Copying it into `OUT_DIR` (and
//! adding that to the search path) makes the build independent of the
//! directory cargo runs the linker from, and re-runs the build script when
//! the memory map changes.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("write memory.x");
    // cortex-m-rt's `device` feature includes device.x; every vector is in
    // src/vectors.rs already, so it adds nothing.
    fs::write(out.join("device.x"), "/* vectors: src/vectors.rs */\n").expect("write device.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");

    println!("cargo:rustc-link-arg=--nmagic");
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rustc-link-arg=-Tdefmt.x");
}
