//! The `cross` stage (`cargo xtask ci cross`): `cargo check -p ricochet` for macOS and
//! FreeBSD (check only: nothing is linked or run).
//!
//! rustls's `ring` provider compiles some C in its build script, for the
//! target. FreeBSD's flags suit the host's `cc`. For macOS, `cc` does not
//! know Apple's flags and no macOS SDK exists on Linux, so the check uses
//! `clang` (Debian's `clang` package) in freestanding mode with four stub
//! headers written under `target/` (the declarations ring's C needs). The
//! objects are thrown away: on a Mac, the real SDK builds them.

use std::path::Path;

use crate::{Ctx, cargo, have, run};

/// The stub headers: just enough declarations for ring's C code.
const STUBS: &[(&str, &str)] = &[
    (
        "TargetConditionals.h",
        "#pragma once\n#define TARGET_OS_MAC 1\n#define TARGET_OS_OSX 1\n#define TARGET_OS_IPHONE 0\n\
         #define TARGET_OS_IOS 0\n#define TARGET_OS_TV 0\n#define TARGET_OS_WATCH 0\n#define TARGET_OS_SIMULATOR 0\n",
    ),
    (
        "string.h",
        "#pragma once\n#include <stddef.h>\nvoid *memcpy(void *d, const void *s, size_t n);\n\
         void *memmove(void *d, const void *s, size_t n);\nvoid *memset(void *d, int c, size_t n);\n\
         int memcmp(const void *a, const void *b, size_t n);\n",
    ),
    (
        "stdlib.h",
        "#pragma once\n#include <stddef.h>\nvoid abort(void);\n",
    ),
    ("assert.h", "#pragma once\n#define assert(x) ((void)0)\n"),
];

fn write_stubs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in STUBS {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Warnings are errors for the other targets too (as `clippy -D warnings`
/// makes them for Linux): code only Linux uses must be behind `cfg`, and a
/// warning nobody reads would let that slip. Target-specific, so the
/// host's build scripts are not rebuilt.
const DENY_WARNINGS: &str = "-D warnings";

/// Checks the `ricochet` package for x86_64 macOS and FreeBSD.
pub(crate) fn cross_check(ctx: &Ctx) -> Result<(), String> {
    run(
        &ctx.root,
        "rustup",
        &[
            "target",
            "add",
            "x86_64-apple-darwin",
            "x86_64-unknown-freebsd",
        ],
        &[],
    )?;
    run(
        &ctx.root,
        &cargo(),
        &[
            "check",
            "--locked",
            "-p",
            "ricochet",
            "--all-targets",
            "--target",
            "x86_64-unknown-freebsd",
        ],
        &[(
            "CARGO_TARGET_X86_64_UNKNOWN_FREEBSD_RUSTFLAGS",
            DENY_WARNINGS,
        )],
    )?;
    if !have("clang") {
        return Err(
            "the macOS check needs clang for ring's C code: apt-get install -y --no-install-recommends clang"
                .to_owned(),
        );
    }
    let stubs = ctx.root.join("target/xtask-macos-stub-headers");
    write_stubs(&stubs)?;
    let cflags = format!("-ffreestanding -nostdlibinc -I{}", stubs.display());
    run(
        &ctx.root,
        &cargo(),
        &[
            "check",
            "--locked",
            "-p",
            "ricochet",
            "--all-targets",
            "--target",
            "x86_64-apple-darwin",
        ],
        &[
            ("CC_x86_64_apple_darwin", "clang"),
            ("CFLAGS_x86_64_apple_darwin", &cflags),
            ("CARGO_TARGET_X86_64_APPLE_DARWIN_RUSTFLAGS", DENY_WARNINGS),
        ],
    )
}
