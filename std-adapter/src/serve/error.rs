//! One error enum per server operation: [`BindError`], [`SpawnError`], [`JoinError`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::Scoped;

/// A listening endpoint: what the server binds and what it reports.
///
/// Displays as `tcp 127.0.0.1:7007`, `udp [::1]:7007`, `unix /run/echo.sock`
/// (a link-local scope by its interface's name: `tcp [fe80::1%eth0]:7007`);
/// `ricochet serve` prints one `listening <endpoint>` line per endpoint on
/// stdout.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP listener.
    Tcp(SocketAddr),
    /// A UDP socket.
    Udp(SocketAddr),
    /// A Unix stream listener.
    Unix(PathBuf),
    /// A TLS listener (TLS over TCP).
    Tls(SocketAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp {}", Scoped(*a)),
            Endpoint::Udp(a) => write!(f, "udp {}", Scoped(*a)),
            Endpoint::Unix(p) => write!(f, "unix {}", p.display()),
            Endpoint::Tls(a) => write!(f, "tls {}", Scoped(*a)),
        }
    }
}

impl Endpoint {
    /// The socket address of a TCP, UDP or TLS endpoint.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Tcp(a) | Endpoint::Udp(a) | Endpoint::Tls(a) => Some(*a),
            Endpoint::Unix(_) => None,
        }
    }
}

/// Why [`crate::serve::Server::bind`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BindError {
    /// The configuration names no TCP, UDP or Unix endpoint.
    NoListener,
    /// A configuration value is out of range.
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// Another socket already uses this address.
    AddrInUse {
        /// The endpoint that could not be bound.
        endpoint: Endpoint,
    },
    /// Binding needs privileges (ports below 1024 need root or `CAP_NET_BIND_SERVICE`;
    /// a Unix path needs write access to its directory).
    PermissionDenied {
        /// The endpoint that could not be bound.
        endpoint: Endpoint,
    },
    /// The address is not configured on this machine (e.g. `[::1]` without IPv6).
    AddrNotAvailable {
        /// The endpoint that could not be bound.
        endpoint: Endpoint,
    },
    /// A link-local IPv6 address (`fe80::/10`) without a scope id: it exists
    /// once per interface, so the interface must be named.
    LinkLocalWithoutScope {
        /// The endpoint that could not be bound.
        endpoint: Endpoint,
    },
    /// An IPv4 address written as IPv6 (v4-mapped, `[::ffff:127.0.0.1]`):
    /// an IPv6 listener is IPv6-only, so it cannot bind one; the IPv4
    /// address itself can be.
    V4MappedAddress {
        /// The endpoint that could not be bound.
        endpoint: Endpoint,
    },
    /// An IPv6 address where the kernel has no IPv6 at all (booted with
    /// `ipv6.disable=1`, or built without it): no IPv6 socket can be made.
    NoIpv6 {
        /// The endpoint that could not be bound.
        endpoint: Endpoint,
    },
    /// A file that is not a socket exists at a Unix socket path; it is never deleted.
    UnixNotSocket {
        /// The path.
        path: PathBuf,
    },
    /// A server is listening on the Unix socket path.
    UnixInUse {
        /// The path.
        path: PathBuf,
    },
    /// The directory of a Unix socket path (or one on the way to it) does
    /// not exist, or is not a directory.
    UnixNoDirectory {
        /// The path.
        path: PathBuf,
    },
    /// A Unix socket path longer than a socket address holds (107 bytes on
    /// Linux, 103 on macOS and the BSDs).
    UnixPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest path a socket address holds, in bytes.
        max: usize,
    },
    /// A socket file of another user is at the path: this user may not
    /// connect to it (to see whether a server listens) nor remove it.
    UnixForeignSocket {
        /// The socket path.
        path: PathBuf,
        /// The uid that owns the file.
        owner: u32,
        /// That user's name, if the user database has one.
        owner_name: Option<String>,
    },
    /// The existing file at a Unix socket path could not be checked or removed.
    UnixInspect {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The TLS certificate, key or client CA could not be loaded.
    Tls(super::tls::TlsConfigError),
    /// Any other socket error.
    Io {
        /// The endpoint being set up.
        endpoint: Endpoint,
        /// The underlying error.
        source: io::Error,
    },
}

impl BindError {
    /// Classifies an I/O error from setting up `endpoint`.
    pub(crate) fn from_io(endpoint: Endpoint, source: io::Error) -> Self {
        let unscoped_link_local = matches!(
            endpoint.socket_addr(),
            Some(SocketAddr::V6(a)) if a.ip().is_unicast_link_local() && a.scope_id() == 0
        );
        if unscoped_link_local && source.kind() == io::ErrorKind::InvalidInput {
            return BindError::LinkLocalWithoutScope { endpoint };
        }
        let v4_mapped = matches!(
            endpoint.socket_addr(),
            Some(SocketAddr::V6(a)) if a.ip().to_ipv4_mapped().is_some()
        );
        if v4_mapped && source.kind() == io::ErrorKind::InvalidInput {
            return BindError::V4MappedAddress { endpoint };
        }
        if matches!(endpoint.socket_addr(), Some(SocketAddr::V6(_)))
            && source.raw_os_error() == Some(libc::EAFNOSUPPORT)
        {
            return BindError::NoIpv6 { endpoint };
        }
        match source.kind() {
            io::ErrorKind::AddrInUse => BindError::AddrInUse { endpoint },
            io::ErrorKind::PermissionDenied => BindError::PermissionDenied { endpoint },
            io::ErrorKind::AddrNotAvailable => BindError::AddrNotAvailable { endpoint },
            _ => BindError::Io { endpoint, source },
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::NoListener => {
                f.write_str("nothing to listen on: give at least one TCP, UDP or Unix address")
            }
            BindError::InvalidConfig { reason } => write!(f, "invalid configuration: {reason}"),
            BindError::AddrInUse { endpoint } => {
                let (flag, mut free) = match endpoint {
                    Endpoint::Tcp(a) => ("tcp", *a),
                    Endpoint::Udp(a) => ("udp", *a),
                    Endpoint::Tls(a) => ("tls", *a),
                    Endpoint::Unix(_) => {
                        return write!(
                            f,
                            "{endpoint}: address already in use (another server is listening on \
                             this socket: stop that server or choose another path)"
                        );
                    }
                };
                free.set_port(0);
                write!(
                    f,
                    "{endpoint}: address already in use (another server is running there; \
                     pick another port, or port 0 for any free one, e.g. --{flag} {free})"
                )
            }
            BindError::PermissionDenied { endpoint } => match endpoint {
                Endpoint::Unix(p) => write!(
                    f,
                    "unix {}: permission denied: this user cannot search or write the directory \
                     (check the permissions of every directory on the way, or choose a path this \
                     user owns, e.g. under $XDG_RUNTIME_DIR or /tmp)",
                    p.display()
                ),
                _ => {
                    let port = endpoint.socket_addr().map_or(0, |a| a.port());
                    write!(
                        f,
                        "{endpoint}: permission denied: {}",
                        port_denied_advice(port, unprivileged_port_start())
                    )
                }
            },
            BindError::AddrNotAvailable { endpoint } => {
                write!(
                    f,
                    "{endpoint}: address not available on this machine: {}",
                    not_available_advice(endpoint)
                )
            }
            BindError::LinkLocalWithoutScope { endpoint } => {
                let kind = match endpoint {
                    Endpoint::Udp(_) => "udp",
                    Endpoint::Tls(_) => "tls",
                    _ => "tcp",
                };
                let (ip, port) = match endpoint.socket_addr() {
                    Some(a) => (a.ip().to_string(), a.port().to_string()),
                    None => ("fe80::1".to_owned(), "PORT".to_owned()),
                };
                write!(
                    f,
                    "{endpoint}: a link-local IPv6 address exists once per interface: name the interface, \
                     e.g. --{kind} [{ip}%eth0]:{port} (see `ip -6 addr`)"
                )
            }
            BindError::NoIpv6 { endpoint } => {
                let (flag, port, ip) = match endpoint {
                    Endpoint::Udp(a) => ("udp", a.port(), a.ip()),
                    Endpoint::Tls(a) => ("tls", a.port(), a.ip()),
                    Endpoint::Tcp(a) => ("tcp", a.port(), a.ip()),
                    Endpoint::Unix(_) => return write!(f, "{endpoint}: no IPv6 here"),
                };
                let v4 = if ip.is_loopback() {
                    "127.0.0.1"
                } else if ip.is_unspecified() {
                    "0.0.0.0"
                } else {
                    "ADDRESS"
                };
                write!(
                    f,
                    "{endpoint}: this system has no IPv6 (the kernel was booted with \
                     ipv6.disable=1, or built without IPv6), so no IPv6 socket can be made; \
                     listen on IPv4 instead, --{flag} {v4}:{port}{}",
                    if v4 == "ADDRESS" {
                        " (one of this host's IPv4 addresses)"
                    } else {
                        ""
                    }
                )
            }
            BindError::V4MappedAddress { endpoint } => {
                let (flag, v4) = match endpoint {
                    Endpoint::Udp(a) => ("udp", *a),
                    Endpoint::Tls(a) => ("tls", *a),
                    Endpoint::Tcp(a) => ("tcp", *a),
                    Endpoint::Unix(_) => return write!(f, "{endpoint}: not an IP address"),
                };
                let v4 = std::net::SocketAddr::new(v4.ip().to_canonical(), v4.port());
                write!(
                    f,
                    "{endpoint}: an IPv4 address written as IPv6 (v4-mapped), which an IPv6 \
                     listener cannot bind (it is IPv6-only): give the IPv4 address, e.g. \
                     --{flag} {v4}"
                )
            }
            BindError::UnixNotSocket { path } => write!(
                f,
                "unix {}: a file that is not a socket exists at this path; refusing to delete it \
                 (remove it yourself or choose another path)",
                path.display()
            ),
            BindError::UnixInUse { path } => write!(
                f,
                "unix {}: another server is listening on this socket (stop that server or \
                 choose another path)",
                path.display()
            ),
            BindError::UnixNoDirectory { path } => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                if dir.exists() {
                    write!(
                        f,
                        "unix {}: {} is not a directory (choose a path in a directory)",
                        path.display(),
                        dir.display()
                    )
                } else {
                    write!(
                        f,
                        "unix {}: the directory {} does not exist (create it, or choose another path)",
                        path.display(),
                        dir.display()
                    )
                }
            }
            BindError::UnixPathTooLong { path, len, max } => write!(
                f,
                "unix {}: the path is {len} bytes, a Unix socket path holds at most {max} \
                 (choose a shorter path, or a relative one from a nearer directory)",
                path.display()
            ),
            BindError::UnixForeignSocket {
                path,
                owner,
                owner_name,
            } => {
                let who = owner_name
                    .as_deref()
                    .map_or(format!("uid {owner}"), |n| format!("{n} (uid {owner})"));
                write!(
                    f,
                    "unix {}: a socket file of another user, {who}, is there (left by a server \
                     run as that user, e.g. with sudo?); this user may not connect to it to see \
                     whether a server still listens, so it is not replaced. If no server uses \
                     it, remove it as that user (`sudo rm {}`), or choose another path",
                    path.display(),
                    path.display()
                )
            }
            BindError::UnixInspect { path, source } => {
                write!(
                    f,
                    "unix {}: cannot check or remove the existing file: {source}",
                    path.display()
                )
            }
            BindError::Tls(e) => e.fmt(f),
            BindError::Io { endpoint, source } => write!(f, "{endpoint}: {source}"),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BindError::UnixInspect { source, .. } | BindError::Io { source, .. } => Some(source),
            BindError::Tls(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`crate::serve::Server::spawn`] failed (no thread is left running).
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// Creating an event loop (epoll instance, waker) failed.
    EventLoop(io::Error),
    /// Registering a socket with an event loop failed.
    Register(io::Error),
    /// The OS refused a new thread.
    Thread(io::Error),
    /// io_uring was asked for ([`crate::serve::IoBackend::Uring`]) and the
    /// kernel refused it (seccomp, `kernel.io_uring_disabled`, an old kernel).
    IoUring {
        /// Why, in words, with what to do about it.
        reason: String,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::EventLoop(e) => {
                write!(f, "cannot create an event loop: {e}{}", fd_hint(e))
            }
            SpawnError::Register(e) => {
                write!(
                    f,
                    "cannot register a socket with the event loop: {e}{}",
                    fd_hint(e)
                )
            }
            SpawnError::Thread(e) => {
                let hint = match thread_limit_hint(e) {
                    "" => fd_hint(e),
                    hint => hint,
                };
                write!(f, "cannot start a worker thread: {e}{hint}")
            }
            SpawnError::IoUring { reason } => write!(
                f,
                "io_uring is not available: {reason}; use --io epoll (or --io auto, which falls \
                 back to epoll by itself)"
            ),
        }
    }
}

/// Why an address cannot be bound here, and what to listen on instead:
/// loopback of one family is missing on hosts and network namespaces that
/// run the other alone (`ricochet serve`'s default is 127.0.0.1).
fn not_available_advice(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Udp(a) => address_advice("udp", *a),
        Endpoint::Tls(a) => address_advice("tls", *a),
        Endpoint::Tcp(a) => address_advice("tcp", *a),
        Endpoint::Unix(_) => "no such address".to_owned(),
    }
}

/// [`not_available_advice`] for `addr` given as `--{flag}` (`tcp`, or
/// `metrics` for the metrics endpoint).
pub(crate) fn address_advice(flag: &str, addr: SocketAddr) -> String {
    let port = addr.port();
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_loopback() => format!(
            "no interface has {ip} (an IPv6-only host or network namespace?); listen on IPv6 \
             loopback instead, --{flag} [::1]:{port}"
        ),
        std::net::IpAddr::V4(ip) => format!(
            "no interface has {ip} (see `ip addr`); give one of this host's addresses, or \
             0.0.0.0 for all of them"
        ),
        std::net::IpAddr::V6(ip) if ip.is_loopback() => format!(
            "no interface has {ip}: IPv6 is disabled here (net.ipv6.conf.lo.disable_ipv6, or \
             ipv6.disable=1 at boot); listen on IPv4 loopback instead, --{flag} 127.0.0.1:{port}"
        ),
        std::net::IpAddr::V6(ip) => format!(
            "no interface has {ip} (see `ip -6 addr`; or IPv6 is disabled here); give one of \
             this host's addresses, or [::] for all of them"
        ),
    }
}

/// The lowest port any user may bind: `net.ipv4.ip_unprivileged_port_start`
/// of this network namespace on Linux (1024 unless changed; 0 in many
/// containers), 1024 elsewhere.
pub(crate) fn unprivileged_port_start() -> u16 {
    #[cfg(target_os = "linux")]
    if let Some(start) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return start;
    }
    1024
}

/// Why binding `port` was refused, given the lowest unprivileged port
/// `start`, and the ways to serve it anyway.
pub(crate) fn port_denied_advice(port: u16, start: u16) -> String {
    if port >= start {
        return format!(
            "port {port} is not a privileged one here (net.ipv4.ip_unprivileged_port_start is \
             {start}), so a security policy refused it (SELinux, AppArmor, a cgroup's BPF \
             filter, a unit's SocketBindDeny=)"
        );
    }
    format!(
        "ports below {start} (net.ipv4.ip_unprivileged_port_start) need root or \
         CAP_NET_BIND_SERVICE. Use a port of {start} or above; or let systemd bind it and hand \
         it over (socket activation: contrib/systemd/ricochet.socket, no privilege needed); or \
         grant the binary that one right (`sudo setcap cap_net_bind_service=+ep $(command -v \
         ricochet)`, or AmbientCapabilities=CAP_NET_BIND_SERVICE in a unit)"
    )
}

/// What to do when starting a thread failed with `EAGAIN`: the user's
/// limit of processes and threads; empty for any other error.
pub(crate) fn thread_limit_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EAGAIN) {
        " (this user's limit of processes and threads is reached: raise it with ulimit -u, or \
         TasksMax= in a systemd unit, or use fewer --threads)"
    } else {
        ""
    }
}

/// What to do when an error is the open-file limit running out; empty
/// for any other error.
fn fd_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) => {
            " (the open-file limit is used up: raise it with ulimit -n, or LimitNOFILE= in a \
             systemd unit)"
        }
        Some(libc::ENFILE) => {
            " (the system-wide open-file table is full: raise fs.file-max, or close files \
             elsewhere)"
        }
        _ => "",
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::EventLoop(e) | SpawnError::Register(e) | SpawnError::Thread(e) => Some(e),
            SpawnError::IoUring { .. } => None,
        }
    }
}

/// Why [`crate::serve::ServerHandle::join`] reports a failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// A worker thread panicked (a bug); the other workers were stopped.
    WorkerPanicked {
        /// The worker's index.
        worker: usize,
    },
    /// A worker's event loop failed (`epoll_wait` error).
    EventLoop {
        /// The worker's index.
        worker: usize,
        /// The underlying error.
        source: io::Error,
    },
    /// [`crate::serve::ServerHandle::join_within`]'s limit passed with
    /// workers still running (left running, detached).
    StillRunning {
        /// How many workers had not exited.
        running: usize,
        /// The limit that passed.
        limit: std::time::Duration,
    },
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::WorkerPanicked { worker } => write!(f, "worker {worker} panicked"),
            JoinError::EventLoop { worker, source } => {
                write!(f, "worker {worker}: event loop failed: {source}")
            }
            JoinError::StillRunning { running, limit } => write!(
                f,
                "{running} worker(s) still running {} after the join began \
                 (was the server shut down or aborted first?)",
                humantime::format_duration(*limit)
            ),
        }
    }
}

impl std::error::Error for JoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JoinError::EventLoop { source, .. } => Some(source),
            JoinError::WorkerPanicked { .. } | JoinError::StillRunning { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
