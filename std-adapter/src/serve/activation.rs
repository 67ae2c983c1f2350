//! Sockets inherited from a service manager (socket activation): systemd's
//! `LISTEN_FDS` protocol, as `systemd-socket-activate` and `systemfd` speak
//! it too.
//!
//! The manager binds the sockets (port 7 needs no root in the server then)
//! and passes them as descriptors 3, 4, ... with `LISTEN_FDS` (their count)
//! and `LISTEN_PID` (the process they are meant for: ignored when it names
//! another process). [`from_env`] takes them, once per process, and tells
//! each one's kind from the socket itself: a listening TCP socket
//! (`ListenStream=7`, IPv4 or IPv6), a UDP socket (`ListenDatagram=7`) or a
//! listening Unix stream socket (`ListenStream=/run/echo.sock`). Anything
//! else is refused with a message that names the descriptor and the fix;
//! a connected socket means the socket unit has `Accept=yes`, which is
//! inetd style (`ricochet serve --inetd`), not this.
//!
//! [`Server::bind_with`](super::Server::bind_with) serves them beside any
//! explicitly configured endpoint. The manager owns the addresses: an
//! inherited Unix socket file is never removed by the server.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use socket2::SockRef;

use super::error::{BindError, Endpoint};
use super::listener::TcpGroup;
use super::unix::SocketFile;

/// The first descriptor of the `LISTEN_FDS` protocol (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

/// A socket passed by the service manager, by kind.
#[derive(Debug)]
pub enum InheritedSocket {
    /// A listening TCP socket (IPv4 or IPv6).
    Tcp(TcpListener),
    /// A UDP socket.
    Udp(UdpSocket),
    /// A listening Unix stream socket.
    Unix(UnixListener),
}

impl InheritedSocket {
    /// The endpoint it serves: its bound address, or a Unix socket's path
    /// (`@name` for an abstract one).
    pub fn endpoint(&self) -> io::Result<Endpoint> {
        Ok(match self {
            InheritedSocket::Tcp(l) => Endpoint::Tcp(l.local_addr()?),
            InheritedSocket::Udp(s) => Endpoint::Udp(s.local_addr()?),
            InheritedSocket::Unix(l) => Endpoint::Unix(unix_name(&l.local_addr()?)),
        })
    }

    /// The socket address of a TCP or UDP socket.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            InheritedSocket::Tcp(l) => l.local_addr().ok(),
            InheritedSocket::Udp(s) => s.local_addr().ok(),
            InheritedSocket::Unix(_) => None,
        }
    }
}

fn unix_name(addr: &std::os::unix::net::SocketAddr) -> PathBuf {
    if let Some(path) = addr.as_pathname() {
        return path.to_owned();
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::linux::net::SocketAddrExt;
        if let Some(name) = addr.as_abstract_name() {
            return PathBuf::from(format!("@{}", String::from_utf8_lossy(name)));
        }
    }
    PathBuf::from("(unnamed)")
}

/// Why an inherited descriptor cannot be served.
#[derive(Debug)]
#[non_exhaustive]
pub enum ActivationError {
    /// A connected stream socket: the socket unit has `Accept=yes`.
    Connected {
        /// The descriptor.
        fd: i32,
    },
    /// Not a listening TCP or Unix stream socket, nor a UDP socket.
    Unsupported {
        /// The descriptor.
        fd: i32,
    },
    /// The descriptor could not be inspected.
    Io {
        /// The descriptor.
        fd: i32,
        /// The underlying error.
        source: io::Error,
    },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::Connected { fd } => write!(
                f,
                "inherited descriptor {fd} (LISTEN_FDS) is a connected stream socket, not a \
                 listener: the socket unit has Accept=yes. Set Accept=no (ricochet serves every \
                 connection itself), or start `ricochet serve --inetd` per connection"
            ),
            ActivationError::Unsupported { fd } => write!(
                f,
                "inherited descriptor {fd} (LISTEN_FDS) is neither a listening TCP or Unix stream \
                 socket nor a UDP socket: ricochet serves ListenStream= (an IP port or a Unix \
                 path) and ListenDatagram= (an IP port); remove the other Listen*= lines from \
                 the socket unit"
            ),
            ActivationError::Io { fd, source } => {
                write!(f, "inherited descriptor {fd} (LISTEN_FDS): {source}")
            }
        }
    }
}

impl std::error::Error for ActivationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ActivationError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why sockets in the environment are not this process's: `LISTEN_FDS`
/// set while `LISTEN_PID` names another process (a wrapper between the
/// service manager and the server that ran it as a child instead of
/// `exec`ing it). [`from_env`] then ignores them, as the protocol says;
/// the caller should say so, or the service silently serves its own
/// addresses instead of the manager's. Call it before [`from_env`].
pub fn foreign_sockets_note() -> Option<String> {
    let var = |name| std::env::var(name).ok();
    foreign_note(var("LISTEN_FDS"), var("LISTEN_PID"), std::process::id())
}

/// As `listenfd` reads them: a missing or empty `LISTEN_PID` means this
/// process; otherwise it must be this process's id exactly (untrimmed).
fn foreign_note(fds: Option<String>, pid: Option<String>, own: u32) -> Option<String> {
    let fds = fds.filter(|n| n.parse::<u32>().is_ok_and(|n| n > 0))?;
    let pid = pid.filter(|p| !p.is_empty())?;
    if pid.parse::<u32>().ok() == Some(own) {
        return None;
    }
    Some(format!(
        "LISTEN_FDS={fds} is set but LISTEN_PID={pid} names another process (this one is {own}): \
         the inherited sockets are ignored and only the addresses given here are served; a \
         wrapper between the service manager and ricochet must exec it, not run it as a child"
    ))
}

/// Takes the sockets the service manager passed to this process.
///
/// Empty without `LISTEN_FDS`, or when `LISTEN_PID` names another process.
/// Takes them at most once per process: a second call returns an empty
/// list (the variables are removed from the environment, so child
/// processes do not see them either). Call it before starting threads
/// (it changes the environment). Each socket is returned as the manager
/// configured it (still blocking; [`Server::bind_with`](super::Server::bind_with)
/// makes it non-blocking).
pub fn from_env() -> Result<Vec<InheritedSocket>, ActivationError> {
    let mut fds = listenfd::ListenFd::from_env();
    (0..fds.len())
        .map(|i| {
            let fd = FIRST_FD.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
            take(&mut fds, i, fd)
        })
        .collect()
}

/// Takes descriptor `idx` of `fds` as whichever kind it is.
fn take(
    fds: &mut listenfd::ListenFd,
    idx: usize,
    fd: i32,
) -> Result<InheritedSocket, ActivationError> {
    let io = |source| ActivationError::Io { fd, source };
    if let Ok(Some(l)) = fds.take_tcp_listener(idx) {
        check_listening(SockRef::from(&l), fd)?;
        return Ok(InheritedSocket::Tcp(l));
    }
    if let Ok(Some(s)) = fds.take_udp_socket(idx) {
        return Ok(InheritedSocket::Udp(s));
    }
    match fds.take_unix_listener(idx) {
        Ok(Some(l)) => {
            check_listening(SockRef::from(&l), fd)?;
            Ok(InheritedSocket::Unix(l))
        }
        Ok(None) => Err(io(io::Error::other("already taken"))),
        Err(_) => Err(ActivationError::Unsupported { fd }),
    }
}

fn check_listening(socket: SockRef<'_>, fd: i32) -> Result<(), ActivationError> {
    match is_listener(&socket) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ActivationError::Connected { fd }),
        Err(source) => Err(ActivationError::Io { fd, source }),
    }
}

/// Whether a stream socket is listening (`SO_ACCEPTCONN` where the system
/// has it; elsewhere: a listening socket has no peer).
pub fn is_listener(socket: &socket2::Socket) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        socket.is_listener()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        match socket.peer_addr() {
            Ok(_) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// Inherited sockets ready for the workers, by kind.
#[derive(Debug, Default)]
pub(crate) struct Adopted {
    pub(crate) tcp: Vec<TcpGroup>,
    pub(crate) udp: Vec<(SocketAddr, UdpSocket)>,
    pub(crate) unix: Vec<(UnixListener, SocketFile)>,
}

/// Makes `sockets` non-blocking and ready for `workers` workers: each TCP
/// listener is shared by every worker (one `SO_REUSEPORT` group per worker
/// needs sockets the server binds itself), each Unix listener too, and each
/// UDP socket is served by one worker. Inherited Unix socket files belong
/// to the manager and are never removed.
pub(crate) fn adopt(sockets: Vec<InheritedSocket>, workers: usize) -> Result<Adopted, BindError> {
    let mut adopted = Adopted::default();
    for socket in sockets {
        match socket {
            InheritedSocket::Tcp(l) => {
                let fail = |e| BindError::from_io(Endpoint::Tcp(unspecified()), e);
                let addr = l.local_addr().map_err(fail)?;
                let fail = |e| BindError::from_io(Endpoint::Tcp(addr), e);
                l.set_nonblocking(true).map_err(fail)?;
                let mut sockets = Vec::with_capacity(workers);
                for _ in 1..workers {
                    sockets.push(l.try_clone().map_err(fail)?);
                }
                sockets.push(l);
                adopted.tcp.push(TcpGroup { addr, sockets });
            }
            InheritedSocket::Udp(s) => {
                let fail = |e| BindError::from_io(Endpoint::Udp(unspecified()), e);
                let addr = s.local_addr().map_err(fail)?;
                s.set_nonblocking(true)
                    .map_err(|e| BindError::from_io(Endpoint::Udp(addr), e))?;
                adopted.udp.push((addr, s));
            }
            InheritedSocket::Unix(l) => {
                let fail = |e| BindError::from_io(Endpoint::Unix(PathBuf::from("(inherited)")), e);
                let path = unix_name(&l.local_addr().map_err(fail)?);
                l.set_nonblocking(true)
                    .map_err(|e| BindError::from_io(Endpoint::Unix(path.clone()), e))?;
                adopted.unix.push((l, SocketFile::not_ours(path)));
            }
        }
    }
    Ok(adopted)
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io::ErrorKind;
    use std::net::{Ipv4Addr, TcpStream};
    use std::os::unix::net::UnixStream;

    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    fn note(fds: Option<&str>, pid: Option<&str>) -> Option<String> {
        foreign_note(fds.map(String::from), pid.map(String::from), 42)
    }

    #[test]
    fn listen_pid_of_another_process_is_named_with_the_fix() {
        let n = note(Some("2"), Some("1")).unwrap();
        assert!(
            n.starts_with(
                "LISTEN_FDS=2 is set but LISTEN_PID=1 names another process (this one is 42)"
            ) && n.contains("must exec it"),
            "{n}"
        );
    }

    #[test]
    fn own_pid_or_no_sockets_is_nothing_to_say() {
        for (fds, pid) in [
            (Some("1"), Some("42")),
            (None, Some("1")),
            (Some("0"), Some("1")),
            (Some("1"), None),
            // listenfd takes an empty LISTEN_PID as this process's.
            (Some("2"), Some("")),
        ] {
            assert_eq!(note(fds, pid), None, "{fds:?} {pid:?}");
        }
    }

    #[test]
    fn listening_sockets_are_listeners_and_connected_ones_are_not() {
        let tcp = TcpListener::bind(loopback()).unwrap();
        let client = TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        let (server, _) = tcp.accept().unwrap();
        assert!(is_listener(&SockRef::from(&tcp)).unwrap());
        assert!(!is_listener(&SockRef::from(&client)).unwrap());
        assert!(!is_listener(&SockRef::from(&server)).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let unix = UnixListener::bind(dir.path().join("s")).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(is_listener(&SockRef::from(&unix)).unwrap());
        assert!(!is_listener(&SockRef::from(&a)).unwrap());
    }

    #[test]
    fn connected_stream_socket_is_refused_as_accept_yes_naming_its_descriptor() {
        let tcp = TcpListener::bind(loopback()).unwrap();
        check_listening(SockRef::from(&tcp), 3).unwrap();
        let client = TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        let e = check_listening(SockRef::from(&client), 5).unwrap_err();
        assert!(matches!(e, ActivationError::Connected { fd: 5 }), "{e:?}");
        let (a, _b) = UnixStream::pair().unwrap();
        let e = check_listening(SockRef::from(&a), 4).unwrap_err();
        assert!(matches!(e, ActivationError::Connected { fd: 4 }), "{e:?}");
    }

    #[test]
    fn refusals_name_the_descriptor_and_the_fix() {
        let connected = ActivationError::Connected { fd: 4 }.to_string();
        assert!(
            connected.starts_with("inherited descriptor 4 (LISTEN_FDS) is a connected")
                && connected.contains("Accept=no")
                && connected.contains("--inetd"),
            "{connected}"
        );
        let unsupported = ActivationError::Unsupported { fd: 5 }.to_string();
        assert!(
            unsupported.starts_with("inherited descriptor 5 (LISTEN_FDS) is neither")
                && unsupported.contains("ListenDatagram="),
            "{unsupported}"
        );
        let io = ActivationError::Io {
            fd: 6,
            source: io::Error::other("boom"),
        };
        assert_eq!(io.to_string(), "inherited descriptor 6 (LISTEN_FDS): boom");
    }

    #[test]
    fn io_refusal_keeps_its_cause_and_the_others_have_none() {
        let io = ActivationError::Io {
            fd: 3,
            source: io::Error::other("boom"),
        };
        assert_eq!(
            io.source().map(ToString::to_string).as_deref(),
            Some("boom")
        );
        assert!(ActivationError::Connected { fd: 3 }.source().is_none());
        assert!(ActivationError::Unsupported { fd: 3 }.source().is_none());
    }

    /// One inherited socket of each kind, as a manager would pass them:
    /// TCP and UDP on 127.0.0.1:0, a Unix listener in a temporary
    /// directory (kept while the value lives).
    struct Inherited {
        tcp: InheritedSocket,
        tcp_addr: SocketAddr,
        udp: InheritedSocket,
        udp_addr: SocketAddr,
        unix: InheritedSocket,
        path: PathBuf,
        _dir: tempfile::TempDir,
    }

    fn inherited() -> Inherited {
        let tcp = TcpListener::bind(loopback()).unwrap();
        let udp = UdpSocket::bind(loopback()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        Inherited {
            tcp_addr: tcp.local_addr().unwrap(),
            tcp: InheritedSocket::Tcp(tcp),
            udp_addr: udp.local_addr().unwrap(),
            udp: InheritedSocket::Udp(udp),
            unix: InheritedSocket::Unix(UnixListener::bind(&path).unwrap()),
            path,
            _dir: dir,
        }
    }

    #[test]
    fn inherited_socket_endpoint_is_its_bound_address_or_path() {
        let Inherited {
            tcp,
            tcp_addr,
            udp,
            udp_addr,
            unix,
            path,
            _dir,
        } = inherited();
        assert_eq!(tcp.endpoint().unwrap(), Endpoint::Tcp(tcp_addr));
        assert_eq!(udp.endpoint().unwrap(), Endpoint::Udp(udp_addr));
        assert_eq!(unix.endpoint().unwrap(), Endpoint::Unix(path));
        assert_eq!(tcp.socket_addr(), Some(tcp_addr));
        assert_eq!(udp.socket_addr(), Some(udp_addr));
        assert_eq!(unix.socket_addr(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_unix_socket_is_named_with_an_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ricochet-activation-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let l = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(
            unix_name(&l.local_addr().unwrap()),
            PathBuf::from(format!("@{name}"))
        );
    }

    #[test]
    fn adopted_sockets_are_non_blocking_and_tcp_is_shared_by_every_worker() {
        let Inherited {
            tcp,
            tcp_addr,
            udp,
            udp_addr,
            unix,
            path,
            _dir,
        } = inherited();
        let adopted = adopt(vec![tcp, udp, unix], 3).unwrap();
        assert_eq!(adopted.tcp.len(), 1);
        assert_eq!(adopted.tcp[0].addr, tcp_addr);
        assert_eq!(adopted.tcp[0].sockets.len(), 3);
        for l in &adopted.tcp[0].sockets {
            assert_eq!(l.local_addr().unwrap(), tcp_addr);
            assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
        }
        assert_eq!(adopted.udp.len(), 1);
        assert_eq!(adopted.udp[0].0, udp_addr);
        let mut buf = [0; 1];
        let e = adopted.udp[0].1.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert_eq!(adopted.unix.len(), 1);
        assert_eq!(adopted.unix[0].1.path(), path);
        let e = adopted.unix[0].0.accept().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        drop(adopted);
        assert!(path.exists(), "the manager's socket file was removed");
    }
}
