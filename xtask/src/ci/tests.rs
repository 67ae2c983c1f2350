use super::*;

/// The test files that share the server's test support but whose servers
/// do not depend on `RICOCHET_IO`: run once. A file that declares
/// `mod serve_support;` must be in this list or in [`SERVER_TESTS`].
const BACKEND_BLIND_TESTS: &[&str] = &[
    // `ricochet cert` serves nothing.
    "cert_cli",
    // The packaged unit and man pages, read as files.
    "dist_files",
    // `--inetd` serves its one connection with the blocking adapter.
    "serve_inetd",
    // Chooses `--io` itself, `RICOCHET_IO` removed.
    "serve_io",
    // A library server on `IoBackend::Uring` itself (its buffer rings freed at a stop).
    "serve_uring_teardown",
];

#[test]
fn an_option_given_to_ci_points_at_the_command_that_takes_it() {
    let e = unknown_stage("--board");
    assert!(
        e.contains("unknown stage \"--board\"")
            && e.contains("cargo xtask qemu --board NAME --check"),
        "{e}"
    );
    assert!(!unknown_stage("tset").contains("--check"));
}

#[test]
fn fuzz_secs_refuses_zero_and_non_numbers_instead_of_running_unbounded_or_60s() {
    assert_eq!(fuzz_secs(None), Ok(60));
    assert_eq!(fuzz_secs(Some("5")), Ok(5));
    // libFuzzer's -max_total_time=0 is "no limit": never pass it on.
    let zero = fuzz_secs(Some("0")).unwrap_err();
    assert!(
        zero.contains("RICOCHET_FUZZ_SECS=\"0\"") && zero.contains("1 to 86400"),
        "{zero}"
    );
    for bad in ["10s", "", "-1", "ten"] {
        let e = fuzz_secs(Some(bad)).unwrap_err();
        assert!(e.contains("RICOCHET_FUZZ_SECS"), "{bad:?}: {e}");
    }
}

#[test]
fn every_test_file_sharing_the_server_support_is_run_on_each_backend_or_said_not_to_need_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../std-adapter/tests");
    // A test target is `NAME.rs` or, split into modules, `NAME/main.rs`.
    let target = |t: &str| {
        let file = dir.join(format!("{t}.rs"));
        if file.is_file() {
            Some(file)
        } else {
            Some(dir.join(t).join("main.rs")).filter(|m| m.is_file())
        }
    };
    let mut unlisted = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let is_target =
            path.extension().is_some_and(|e| e == "rs") || path.join("main.rs").is_file();
        let text = target(stem)
            .and_then(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default();
        if is_target
            && text.lines().any(|l| l.trim() == "mod serve_support;")
            && !SERVER_TESTS.contains(&stem)
            && !BACKEND_BLIND_TESTS.contains(&stem)
        {
            unlisted.push(stem.to_owned());
        }
    }
    assert!(
        unlisted.is_empty(),
        "{unlisted:?} use serve_support but are in neither SERVER_TESTS nor BACKEND_BLIND_TESTS"
    );
    for t in SERVER_TESTS.iter().chain(BACKEND_BLIND_TESTS) {
        assert!(target(t).is_some(), "no test file {t}.rs or {t}/main.rs");
    }
}

#[test]
fn firmware_within_its_flash_budget_passes_and_one_byte_over_is_named() {
    assert!(within_flash_budget("lm3s6965evb", FLASH_BUDGET).is_ok());
    let e = within_flash_budget("lm3s6965evb", FLASH_BUDGET + 1).unwrap_err();
    assert!(
        e.contains("40961 B of flash, 1 B over its 40960-byte budget"),
        "{e}"
    );
}
