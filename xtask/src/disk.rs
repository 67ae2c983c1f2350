//! Free disk space before a full CI run.
//!
//! A full `cargo xtask ci` on a fresh clone writes about 6 GiB of build
//! output (the workspace's `target/` and each board's own `target/`). Run
//! out of space half-way and cargo fails deep in the `firmware` stage with
//! "No space left on device", minutes in and far from the cause; so the run
//! checks first and names the shortfall and the fix.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Ctx, boards};

/// What a full CI run on a fresh clone writes (6.1 GiB measured on
/// 2026-12-04, `du -sh` of a finished clone), plus room for `cargo install`'s
/// temporary build of the cargo tools on a new machine.
pub(crate) const FULL_RUN_BYTES: u64 = 7 << 30;

const GIB: f64 = (1u64 << 30) as f64;

/// Bytes an unprivileged process may still write on the filesystem that
/// holds `path` (`statvfs`: available blocks times the fragment size).
fn free_bytes(path: &Path) -> Result<u64, String> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} has a NUL byte", path.display()))?;
    // SAFETY: statvfs is plain data, for which all-zero bytes are valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path, `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes the files under `dir` occupy on disk (allocated blocks; 0 when
/// `dir` does not exist). Symbolic links are not followed.
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The bytes still missing for a run that writes `need` bytes in all when
/// `built` of them are already there (earlier runs' build output, which
/// cargo reuses) and `free` can still be written; `None` when it fits.
pub(crate) fn shortfall(need: u64, built: u64, free: u64) -> Option<u64> {
    let still = need.saturating_sub(built);
    (free < still).then(|| still - free)
}

/// The error a run that does not fit gets: how much is free, how much is
/// missing, and what to do about it.
pub(crate) fn shortfall_message(root: &Path, free: u64, missing: u64) -> String {
    format!(
        "only {:.1} GiB free on the filesystem holding {}; a full CI run needs \
         {:.1} GiB more for its build output (about {:.0} GiB from a fresh clone: \
         target/ and each board's target/). Free space (old clones and their \
         target/ directories, `cargo clean`) and run again; `cargo xtask ci \
         STAGE...` runs single stages without this check",
        free as f64 / GIB,
        root.display(),
        missing as f64 / GIB,
        FULL_RUN_BYTES as f64 / GIB,
    )
}

/// Checks there is room for a full run's build output: where cargo puts
/// it ([`build_dirs`]).
pub(crate) fn preflight(ctx: &Ctx) -> Result<(), String> {
    let dirs = build_dirs(&ctx.root, &crate::target_dir_of(&ctx.root), &boards(ctx));
    // The target directory may not exist yet: its filesystem is that of
    // its nearest existing ancestor.
    let at = dirs[0]
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(&ctx.root)
        .to_owned();
    let free = free_bytes(&at)?;
    let built = dirs.iter().map(|d| tree_bytes(d)).sum();
    match shortfall(FULL_RUN_BYTES, built, free) {
        None => Ok(()),
        Some(missing) => Err(shortfall_message(&at, free, missing)),
    }
}

/// Where a run's build output goes: `target` (the workspace's target
/// directory, `CARGO_TARGET_DIR` if set), and each board's own `target/`
/// unless `CARGO_TARGET_DIR` puts every build in `target` too.
fn build_dirs(root: &Path, target: &Path, boards: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = vec![target.to_owned()];
    if target == root.join("target") {
        dirs.extend(boards.iter().map(|b| b.join("target")));
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With CARGO_TARGET_DIR set the check measured `<clone>/target`, where
    /// nothing is written, and the wrong filesystem.
    #[test]
    fn build_output_is_looked_for_where_cargo_target_dir_puts_it() {
        let root = Path::new("/src/clone");
        let boards = [
            root.join("embedded/boards/a"),
            root.join("embedded/boards/b"),
        ];
        assert_eq!(
            build_dirs(root, &root.join("target"), &boards),
            [
                root.join("target"),
                root.join("embedded/boards/a/target"),
                root.join("embedded/boards/b/target")
            ]
        );
        let elsewhere = Path::new("/scratch/target");
        assert_eq!(build_dirs(root, elsewhere, &boards), [elsewhere]);
    }

    #[test]
    fn fresh_clone_on_a_full_disk_falls_short_by_the_difference() {
        assert_eq!(
            shortfall(FULL_RUN_BYTES, 0, 5 << 30),
            Some(FULL_RUN_BYTES - (5 << 30))
        );
    }

    #[test]
    fn fresh_clone_with_room_fits() {
        assert_eq!(shortfall(FULL_RUN_BYTES, 0, FULL_RUN_BYTES), None);
    }

    #[test]
    fn earlier_build_output_counts_towards_the_need() {
        assert_eq!(shortfall(FULL_RUN_BYTES, 6 << 30, 1 << 30), None);
        assert_eq!(shortfall(FULL_RUN_BYTES, FULL_RUN_BYTES + 1, 0), None);
    }

    #[test]
    fn shortfall_message_names_free_missing_and_the_fix() {
        let m = shortfall_message(Path::new("/check/main"), 5 << 30, 2 << 30);
        assert!(m.contains("only 5.0 GiB free"), "{m}");
        assert!(m.contains("/check/main"), "{m}");
        assert!(m.contains("2.0 GiB more"), "{m}");
        assert!(m.contains("cargo clean"), "{m}");
    }

    #[test]
    fn free_bytes_is_positive_for_a_real_directory_and_an_error_for_a_missing_one() {
        let dir = std::env::temp_dir();
        let free = free_bytes(&dir).unwrap();
        assert!(free > 0);
        let err = free_bytes(Path::new("/no/such/dir/ricochet")).unwrap_err();
        assert!(err.contains("No such file"), "{err}");
    }

    #[test]
    fn tree_bytes_sums_the_files_below_and_is_zero_for_a_missing_dir() {
        let dir = std::env::temp_dir().join(format!("ricochet-disk-{}", std::process::id()));
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a"), vec![1u8; 64 << 10]).unwrap();
        fs::write(dir.join("sub/b"), vec![1u8; 64 << 10]).unwrap();
        let n = tree_bytes(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert!(n >= 128 << 10, "{n}");
        assert_eq!(tree_bytes(&dir), 0);
    }
}
