//! Choosing the workers' I/O backend: io_uring where the kernel allows it,
//! epoll otherwise.
//!
//! [`IoBackend::Auto`] tries io_uring and falls back to epoll with one log
//! line that says why (a seccomp filter, `kernel.io_uring_disabled`, an old
//! kernel); [`IoBackend::Uring`] turns the same reason into a
//! [`SpawnError::IoUring`]; [`IoBackend::Epoll`] never touches io_uring.

use super::config::IoBackend;
use super::error::SpawnError;

/// The backend to run for `asked`: [`IoBackend::Uring`] or [`IoBackend::Epoll`].
/// TLS listeners are not affected: they always run on epoll (beside io_uring,
/// on an epoll loop of their own inside each io_uring worker; see
/// [`super::Server::spawn`]).
pub(crate) fn choose(asked: IoBackend) -> Result<IoBackend, SpawnError> {
    match asked {
        IoBackend::Epoll => Ok(IoBackend::Epoll),
        IoBackend::Uring => match uring_unavailable() {
            None => Ok(IoBackend::Uring),
            Some(reason) => Err(SpawnError::IoUring { reason }),
        },
        IoBackend::Auto => match uring_unavailable() {
            None => Ok(IoBackend::Uring),
            Some(reason) => {
                tracing::info!("io_uring is not available ({reason}): serving with epoll");
                Ok(IoBackend::Epoll)
            }
        },
    }
}

/// Why io_uring cannot be used here, or `None` if it can.
#[cfg(target_os = "linux")]
fn uring_unavailable() -> Option<String> {
    super::uring::probe().err()
}

#[cfg(not(target_os = "linux"))]
fn uring_unavailable() -> Option<String> {
    Some("io_uring is a Linux interface".to_owned())
}

/// Explains a failed `io_uring_setup` (`errno`), given the contents of
/// `/proc/sys/kernel/io_uring_disabled` if it could be read.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn explain_setup_error(errno: i32, disabled_sysctl: Option<&str>) -> String {
    let disabled = disabled_sysctl.map(str::trim);
    match errno {
        libc::EPERM | libc::EACCES => match disabled {
            Some("2") => "io_uring_setup refused: the sysctl kernel.io_uring_disabled is 2 \
                          (io_uring off for every process)"
                .to_owned(),
            Some("1") => "io_uring_setup refused: the sysctl kernel.io_uring_disabled is 1 \
                          (io_uring only for members of kernel.io_uring_group)"
                .to_owned(),
            _ => "io_uring_setup refused with EPERM, most likely by a seccomp filter \
                  (container runtimes block io_uring by default)"
                .to_owned(),
        },
        libc::ENOSYS => "io_uring_setup does not exist: the kernel is built without io_uring, \
                         or a seccomp filter hides it"
            .to_owned(),
        libc::EINVAL => {
            "io_uring_setup refused the ring parameters: the kernel is too old".to_owned()
        }
        libc::ENOMEM => format!("io_uring_setup is out of memory: {}", memlock_advice()),
        other => format!(
            "io_uring_setup failed: {}",
            std::io::Error::from_raw_os_error(other)
        ),
    }
}

/// Explains why a worker could not set up its ring or the buffers it
/// registers (`e`), `workers` workers in all.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn explain_worker_ring_error(e: &std::io::Error, workers: usize) -> String {
    match e.raw_os_error() {
        Some(libc::ENOMEM) => format!(
            "the io_uring rings of {workers} worker{} do not fit: {}",
            if workers == 1 { "" } else { "s" },
            memlock_advice()
        ),
        _ => format!("a worker cannot set up its io_uring ring: {e}"),
    }
}

/// What an io_uring `ENOMEM` most likely is, and the ways out.
fn memlock_advice() -> String {
    memlock_advice_for(
        rlimit::getrlimit(rlimit::Resource::MEMLOCK)
            .ok()
            .map(|(soft, _)| soft),
    )
}

/// [`memlock_advice`] for a soft `RLIMIT_MEMLOCK` of `soft` bytes (`None`:
/// unknown); an unlimited or unknown limit is not quoted.
fn memlock_advice_for(soft: Option<u64>) -> String {
    let limit = match soft {
        Some(soft) if soft != rlimit::INFINITY => format!(" of {} KiB", soft / 1024),
        _ => String::new(),
    };
    format!(
        "without CAP_IPC_LOCK the rings (about 600 KiB per worker) count against the \
         locked-memory limit{limit} (RLIMIT_MEMLOCK, shared by all of this user's \
         processes); raise it (ulimit -l, or LimitMEMLOCK= in a systemd unit) or run \
         fewer workers (--threads)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_refusal_names_the_sysctl_or_seccomp() {
        let e = explain_setup_error(libc::EPERM, Some("2\n"));
        assert!(e.contains("kernel.io_uring_disabled is 2"), "{e}");
        let e = explain_setup_error(libc::EPERM, Some("1"));
        assert!(e.contains("kernel.io_uring_group"), "{e}");
        for sysctl in [Some("0"), None] {
            let e = explain_setup_error(libc::EPERM, sysctl);
            assert!(e.contains("seccomp"), "{e}");
        }
        assert!(explain_setup_error(libc::ENOSYS, None).contains("without io_uring"));
        assert!(explain_setup_error(libc::EINVAL, None).contains("too old"));
    }

    #[test]
    fn ring_out_of_memory_names_the_locked_memory_limit_and_both_fixes() {
        let enomem = std::io::Error::from_raw_os_error(libc::ENOMEM);
        let e = explain_worker_ring_error(&enomem, 2);
        assert!(
            e.starts_with("the io_uring rings of 2 workers do not fit: "),
            "{e}"
        );
        assert!(
            e.contains("RLIMIT_MEMLOCK") && e.contains("LimitMEMLOCK="),
            "{e}"
        );
        assert!(e.contains("--threads"), "{e}");
        let e = explain_worker_ring_error(&enomem, 1);
        assert!(
            e.starts_with("the io_uring rings of 1 worker do not fit: "),
            "{e}"
        );
        let e = explain_setup_error(libc::ENOMEM, None);
        assert!(e.starts_with("io_uring_setup is out of memory: "), "{e}");
        assert!(e.contains("RLIMIT_MEMLOCK"), "{e}");
    }

    #[test]
    fn ring_error_other_than_out_of_memory_is_shown_as_it_is() {
        let e = std::io::Error::from_raw_os_error(libc::EBADF);
        let shown = explain_worker_ring_error(&e, 2);
        assert_eq!(
            shown,
            format!("a worker cannot set up its io_uring ring: {e}")
        );
    }

    #[test]
    fn memlock_advice_quotes_a_finite_limit_only() {
        let finite = memlock_advice_for(Some(8 << 20));
        assert!(
            finite.contains("locked-memory limit of 8192 KiB (RLIMIT_MEMLOCK"),
            "{finite}"
        );
        for unquoted in [Some(rlimit::INFINITY), None] {
            let a = memlock_advice_for(unquoted);
            assert!(a.contains("locked-memory limit (RLIMIT_MEMLOCK"), "{a}");
        }
    }

    #[test]
    fn epoll_is_chosen_without_asking_the_kernel() {
        assert_eq!(choose(IoBackend::Epoll).ok(), Some(IoBackend::Epoll));
    }
}
