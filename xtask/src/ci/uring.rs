//! Whether this machine lets the test stage run `ricochet serve` on
//! io_uring, and if not, why and what to do: checked once before the
//! suite runs, instead of every server test failing with the same reason.

/// Why `io_uring_setup` fails for this process, or `None` if it works.
pub(super) fn refused() -> Option<String> {
    // struct io_uring_params: 120 bytes, zeroed (no flags).
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup writes at most sizeof(struct io_uring_params)
    // = 120 bytes into `params`, which has that many.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: a descriptor io_uring_setup just returned to us.
        #[allow(unsafe_code)]
        unsafe {
            libc::close(fd as i32)
        };
        return None;
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    Some(explain(errno, sysctl.as_deref()))
}

/// The test stage's message for a refused `io_uring_setup` (`errno`),
/// given `/proc/sys/kernel/io_uring_disabled` if it could be read: the
/// cause and the fix.
pub(super) fn explain(errno: i32, disabled_sysctl: Option<&str>) -> String {
    let cause = match (errno, disabled_sysctl.map(str::trim)) {
        (libc::EPERM | libc::EACCES, Some(v @ ("1" | "2"))) => format!(
            "the sysctl kernel.io_uring_disabled is {v}; `sysctl kernel.io_uring_disabled=0` \
             allows it"
        ),
        (libc::EPERM | libc::EACCES | libc::ENOSYS, _) => {
            "most likely a seccomp filter (container runtimes block io_uring by default: run \
             the container with `--security-opt seccomp=unconfined` or a profile that allows \
             io_uring_setup), or a kernel built without io_uring"
                .to_owned()
        }
        (other, _) => format!("{}", std::io::Error::from_raw_os_error(other)),
    };
    format!(
        "io_uring_setup fails here ({cause}). The test stage runs every test with \
         `ricochet serve` on io_uring, then the server tests again on epoll; on this machine \
         the first half cannot run. To run the server tests on epoll alone: \
         `RICOCHET_IO=epoll cargo test -p ricochet` (the io_uring-specific tests still fail)"
    )
}

#[cfg(test)]
mod tests {
    use super::explain;

    /// Each cause names itself and its fix, and every message says what
    /// the stage would have run and the epoll-only alternative.
    #[test]
    fn refused_io_uring_is_explained_by_sysctl_seccomp_or_errno_with_the_fix() {
        let sysctl = explain(libc::EPERM, Some("2\n"));
        assert!(
            sysctl.contains("kernel.io_uring_disabled is 2")
                && sysctl.contains("sysctl kernel.io_uring_disabled=0"),
            "{sysctl}"
        );
        let seccomp = explain(libc::EPERM, Some("0\n"));
        assert!(
            seccomp.contains("seccomp") && seccomp.contains("--security-opt"),
            "{seccomp}"
        );
        assert!(explain(libc::ENOSYS, None).contains("seccomp"));
        let other = explain(libc::ENOMEM, Some("0"));
        assert!(other.contains("Cannot allocate memory"), "{other}");
        for m in [sysctl, seccomp, other] {
            assert!(m.contains("RICOCHET_IO=epoll cargo test"), "{m}");
        }
    }
}
