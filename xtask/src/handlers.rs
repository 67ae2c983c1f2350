//! The QEMU boards' fault and panic handlers (`ricochet-qemu-rt`), checked
//! end to end on every QEMU board: its firmware built with
//! `selftest-panic`, then with `selftest-fault` (an undefined instruction),
//! must each log what happened and end QEMU with status 1. CI relies on
//! that: a firmware that faults fails its run instead of hanging it until
//! the time limit.

use std::process::ExitStatus;

use crate::vm::{Qemu, build_variant, require_tools};
use crate::{Board, Ctx, QemuMachine};

/// The line a board logs once booted, before the self-test runs: a panic
/// or fault must come after it, not from an earlier failure.
fn booted_line(board: &Board) -> String {
    format!("ricochet: {} up", board.name)
}

/// One QEMU run of a self-test build ends within this (it takes well
/// under a second once QEMU is up).
const LIMIT_SECS: u64 = 60;
/// What `timeout` exits with when it had to stop QEMU: 124 after its
/// TERM, 128 + 9 when TERM was not enough and its `-k` KILL came.
const TIMED_OUT: [i32; 2] = [124, 137];

/// Each self-test feature, and the log line its handler must write.
const SELFTESTS: &[(&str, &str)] = &[
    ("selftest-panic", "ERROR panic"),
    ("selftest-fault", "ERROR hard fault: pc 0x"),
];

/// Builds and boots `board` with each self-test feature (in its own
/// target directory, so the image the other checks boot is untouched) and
/// checks how each run ended.
pub(crate) fn check(ctx: &Ctx, board: &Board, machine: &QemuMachine) -> Result<(), String> {
    require_tools()?;
    for &(feature, expected) in SELFTESTS {
        let elf = build_variant(ctx, board, "selftest", feature)?;
        let (_, log, mut qemu) =
            Qemu::boot_forwarded(ctx, board, machine, &elf, feature, LIMIT_SECS)?;
        let status = qemu.wait()?;
        let text = qemu.log_text();
        let ended = ended_as_expected(status, &text, &booted_line(board), expected).map_err(|e| {
            format!(
                "{feature}: {e}\n--- firmware log ({}):\n{}",
                log.display(),
                text.lines().take(40).collect::<Vec<_>>().join("\n")
            )
        });
        drop(qemu);
        crate::vm::keep_log_if_failed(&ended, &log);
        ended?;
        eprintln!(
            "{}: {feature}: logged {expected:?}, exit status 1",
            board.name
        );
    }
    Ok(())
}

/// Whether a self-test run ended as it must: QEMU's status 1 (the
/// handler's semihosting exit) and the handler's line in the log.
/// `booted` is the board's boot line, which must come first.
fn ended_as_expected(
    status: ExitStatus,
    log: &str,
    booted: &str,
    expected: &str,
) -> Result<(), String> {
    match status.code() {
        Some(1) => {}
        Some(code) if TIMED_OUT.contains(&code) => {
            return Err(format!(
                "QEMU was still running after {LIMIT_SECS} s: the handler did not end it"
            ));
        }
        Some(code) => return Err(format!("QEMU exited with status {code}, not 1")),
        None => return Err(format!("QEMU ended by a signal ({status})")),
    }
    let Some(at) = log.lines().position(|l| l.contains(booted)) else {
        return Err(format!(
            "the log has no {booted:?} line: it failed before the self-test"
        ));
    };
    if log.lines().skip(at + 1).any(|l| l.contains(expected)) {
        Ok(())
    } else {
        Err(format!(
            "the log has no line with {expected:?} after {booted:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    const BOOTED: &str = "ricochet: mps2-an385 up";
    const PANIC_LOG: &str =
        "0.000 INFO  ricochet: mps2-an385 up, lan9118 id 0x01180001\n0.000 ERROR panic\n";

    #[test]
    fn booted_line_is_the_boards_up_line() {
        let board = crate::BOARDS
            .iter()
            .find(|b| b.name == "mps2-an385")
            .expect("an MPS2 board");
        assert_eq!(booted_line(board), BOOTED);
    }

    #[test]
    fn selftest_another_boards_boot_line_fails() {
        let log = "0.000 INFO  ricochet: lm3s6965evb up\n0.000 ERROR panic\n";
        let e = ended_as_expected(exited(1), log, BOOTED, "ERROR panic").unwrap_err();
        assert!(e.contains("before the self-test"), "{e}");
    }

    #[test]
    fn selftest_status_one_with_the_line_passes() {
        assert_eq!(
            ended_as_expected(exited(1), PANIC_LOG, BOOTED, "ERROR panic"),
            Ok(())
        );
    }

    #[test]
    fn selftest_status_one_without_the_line_fails() {
        let e =
            ended_as_expected(exited(1), PANIC_LOG, BOOTED, "ERROR hard fault: pc 0x").unwrap_err();
        assert!(e.contains("no line"), "{e}");
    }

    #[test]
    fn selftest_clean_exit_fails() {
        let e = ended_as_expected(exited(0), PANIC_LOG, BOOTED, "ERROR panic").unwrap_err();
        assert!(e.contains("status 0"), "{e}");
    }

    #[test]
    fn selftest_timed_out_fails_naming_the_limit() {
        for code in TIMED_OUT {
            let e = ended_as_expected(exited(code), PANIC_LOG, BOOTED, "ERROR panic").unwrap_err();
            assert!(e.contains("still running"), "{code}: {e}");
        }
    }

    #[test]
    fn selftest_panic_before_boot_fails() {
        let e =
            ended_as_expected(exited(1), "0.000 ERROR panic\n", BOOTED, "ERROR panic").unwrap_err();
        assert!(e.contains("before the self-test"), "{e}");
    }

    #[test]
    fn selftest_killed_by_a_signal_fails() {
        let e = ended_as_expected(ExitStatus::from_raw(9), PANIC_LOG, BOOTED, "ERROR panic")
            .unwrap_err();
        assert!(e.contains("signal"), "{e}");
    }
}
