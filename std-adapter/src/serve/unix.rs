//! Unix stream socket files: stale-file handling, permissions, cleanup.
//!
//! A socket file outlives the process that bound it if that process died
//! without cleaning up. At start we remove such a *stale* file, but only when
//! it is a socket and a connection attempt is refused (nobody listens). Any
//! other file is left alone and reported, and so is another user's socket
//! file that this user may not connect to.
//!
//! Check, remove and bind are one step for every ricochet server using the
//! same directory: each holds an exclusive `flock` on the directory across
//! them ([`DirectoryLock`]), and across the removal at shutdown. Without it,
//! two servers started at once on one stale path could both find it stale;
//! the second to remove it would unlink the first's fresh socket, and the
//! first would run on, listening on a file nobody can reach.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::error::BindError;

/// Removes a stale socket file at `path`, if any. The caller holds the
/// [`DirectoryLock`] of its directory, so no other server's fresh file can be
/// the one removed.
///
/// Returns whether a stale file was removed.
pub(crate) fn clear_stale(path: &Path) -> Result<bool, BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        // Something on the way is a file, not a directory.
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(BindError::UnixNoDirectory {
                path: path.to_owned(),
            });
        }
        // A directory on the way cannot be searched: there may be no file at
        // all, and binding there would fail the same way.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(BindError::PermissionDenied {
                endpoint: super::error::Endpoint::Unix(path.to_owned()),
            });
        }
        Err(source) => {
            return Err(BindError::UnixInspect {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::UnixNotSocket {
            path: path.to_owned(),
        });
    }
    match connect_unless_dying(path) {
        Ok(()) => Err(BindError::UnixInUse {
            path: path.to_owned(),
        }),
        // Connecting needs write permission on the socket file: another
        // user's (a server once run with sudo) is neither checked nor ours
        // to remove.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && meta.uid() != euid() => {
            Err(BindError::UnixForeignSocket {
                path: path.to_owned(),
                owner: meta.uid(),
                owner_name: super::tls::user_name(meta.uid()),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            #[cfg(test)]
            tests::at(tests::Point::FoundStale);
            std::fs::remove_file(path).map_err(|source| BindError::UnixInspect {
                path: path.to_owned(),
                source,
            })?;
            Ok(true)
        }
        // Removed while we looked (its server shut down and unlinked it):
        // the path is free.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(BindError::UnixInspect {
            path: path.to_owned(),
            source,
        }),
    }
}

/// How long a server waits for another one to finish checking and binding
/// in the same directory: its stale check may take up to
/// [`IN_USE_WAIT`](super::listener::IN_USE_WAIT), and a host may be busy.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An exclusive `flock` on the directory of a socket path, held while a
/// server checks, removes and binds a socket file there, or removes its own
/// at shutdown. Released on drop.
///
/// Best effort: a directory this user may not open for reading (mode
/// `-wx`), or a lock held past [`LOCK_WAIT`] (some other program's), gives
/// no lock, and the steps run unguarded, as they did before it existed.
pub(crate) struct DirectoryLock {
    _held: Option<std::fs::File>,
}

impl DirectoryLock {
    /// Locks the directory `path` is in, waiting up to [`LOCK_WAIT`].
    pub(crate) fn of(path: &Path) -> DirectoryLock {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let Ok(file) = std::fs::File::open(dir) else {
            return DirectoryLock { _held: None };
        };
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return DirectoryLock { _held: Some(file) },
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    #[cfg(test)]
                    tests::at(tests::Point::LockBusy);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "socket directory not locked");
                    return DirectoryLock { _held: None };
                }
            }
        }
    }
}

/// This process's effective uid.
#[allow(unsafe_code)]
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Connects to the socket at `path`: `Ok` if someone listens there,
/// `ConnectionRefused` if nobody does.
///
/// A server killed a moment before (SIGKILL) may still listen for a few
/// milliseconds while the kernel tears its io_uring rings down: the
/// connection is then dropped (end of stream or reset) when the socket
/// goes, and the next attempt is refused. So a connection that ends within
/// [`IN_USE_WAIT`](super::listener::IN_USE_WAIT) is tried again (at most
/// every 10 ms); one still open then, or a listener still there after
/// it, is a live server.
fn connect_unless_dying(path: &Path) -> io::Result<()> {
    use std::io::Read;
    let deadline = std::time::Instant::now() + super::listener::IN_USE_WAIT;
    loop {
        let mut stream = StdUnixStream::connect(path)?;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            // Ended: a dying listener's, or a server that closes at once.
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            // Open all along (a timeout), or it spoke: someone serves here.
            _ => return Ok(()),
        }
        drop(stream);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Binds and listens on `path` with permission bits `mode`.
///
/// The permissions are set between `bind` and `listen`: nobody can connect
/// before the file has its final mode.
pub(crate) fn bind(
    path: &Path,
    mode: u32,
    backlog: u32,
) -> Result<(StdUnixListener, SocketFile), BindError> {
    let max = max_path_len();
    let len = path.as_os_str().len();
    if len > max {
        return Err(BindError::UnixPathTooLong {
            path: path.to_owned(),
            len,
            max,
        });
    }
    let _lock = DirectoryLock::of(path);
    let removed = clear_stale(path)?;
    if removed {
        tracing::info!(path = %path.display(), "removed stale unix socket file");
    }
    let fail = |source: io::Error| {
        BindError::from_io(super::error::Endpoint::Unix(path.to_owned()), source)
    };
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
    let addr = SockAddr::unix(path).map_err(fail)?;
    socket.bind(&addr).map_err(|e| {
        if matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        ) {
            BindError::UnixNoDirectory {
                path: path.to_owned(),
            }
        } else {
            fail(e)
        }
    })?;
    // From here on the file is ours: remove it if anything below fails.
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    socket
        .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
        .map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok((socket.into(), file))
}

/// The longest path a Unix socket address holds: `sun_path` less its
/// terminating NUL (107 bytes on Linux, 103 on macOS and the BSDs).
pub(crate) fn max_path_len() -> usize {
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::offset_of!(libc::sockaddr_un, sun_path) - 1
}

/// A socket file this server created; removed by [`SocketFile::remove`] or on drop.
///
/// Removal checks device and inode first, so a file that someone replaced
/// meanwhile (another server on the same path) is left alone.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// A socket file someone else created (a service manager): never removed.
    pub(crate) fn not_ours(path: PathBuf) -> SocketFile {
        SocketFile {
            path,
            dev: 0,
            ino: 0,
        }
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it is still the one we bound (idempotent).
    pub(crate) fn remove(&mut self) {
        if self.ino == 0 {
            return;
        }
        // Not between another server's stale check and its bind.
        let _lock = DirectoryLock::of(&self.path);
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
            && let Err(e) = {
                #[cfg(test)]
                tests::at(tests::Point::OwnFileChecked);
                std::fs::remove_file(&self.path)
            }
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove unix socket file");
        }
        self.ino = 0;
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::sync::mpsc;

    /// Where a test may stop a thread that binds.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Point {
        /// The stale check found nobody listening, before the removal.
        FoundStale,
        /// Another holds the directory lock: about to wait for it.
        LockBusy,
        /// At shutdown: the file is still the one bound, before its removal.
        OwnFileChecked,
    }

    /// What a test thread runs at each [`Point`].
    type Hook = Box<dyn FnMut(Point)>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Calls this thread's hook, if a test set one.
    pub(super) fn at(point: Point) {
        HOOK.with(|h| {
            if let Some(hook) = h.borrow_mut().as_mut() {
                hook(point);
            }
        });
    }

    fn set_hook(hook: impl FnMut(Point) + 'static) {
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    }

    /// Whether a server binding now waited for the directory lock, or bound
    /// without waiting.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Waits,
        Done,
    }

    type Bound = Result<(StdUnixListener, SocketFile), BindError>;

    /// A server binding `path` on a thread of its own, and what it did
    /// first: waited for the lock, or finished.
    fn bind_on_a_thread(path: &Path) -> (std::thread::JoinHandle<Bound>, Seen) {
        let (tell, seen) = mpsc::channel();
        let path = path.to_owned();
        let thread = std::thread::spawn(move || {
            let waiting = tell.clone();
            let mut told = false;
            set_hook(move |point| {
                if point == Point::LockBusy && !told {
                    told = true;
                    let _ = waiting.send(Seen::Waits);
                }
            });
            let r = bind(&path, 0o660, 16);
            let _ = tell.send(Seen::Done);
            r
        });
        let first = seen
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        (thread, first)
    }

    #[test]
    fn two_servers_binding_one_stale_path_at_once_leave_one_listening_and_refuse_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        // A server that died without unlinking: a stale file.
        drop(StdUnixListener::bind(&path).unwrap());
        let (to_main, from_first) = mpsc::channel();
        let (resume_first, first_waits) = mpsc::channel::<()>();
        let first_path = path.clone();
        // The first server stops just after finding the file stale.
        let first = std::thread::spawn(move || {
            let mut told = false;
            set_hook(move |point| {
                if point == Point::FoundStale && !told {
                    told = true;
                    to_main.send("first found it stale").unwrap();
                    let _ = first_waits.recv_timeout(std::time::Duration::from_secs(10));
                }
            });
            bind(&first_path, 0o660, 16)
        });
        assert_eq!(
            from_first.recv_timeout(std::time::Duration::from_secs(10)),
            Ok("first found it stale")
        );
        // The second server starts then: it either waits for the first's
        // lock (then the first goes on) or, unguarded, binds at once.
        let (second, second_saw) = bind_on_a_thread(&path);
        resume_first.send(()).unwrap();
        let first = first.join().unwrap();
        let second = second.join().unwrap();
        assert_eq!(
            second_saw,
            Seen::Waits,
            "the second server bound while the first was between its check and its bind"
        );
        let (first_listener, _first_file) = first.map_err(|e| e.to_string()).unwrap();
        // The second found the first listening and said so.
        assert!(
            matches!(second, Err(BindError::UnixInUse { .. })),
            "{:?}",
            second.map(|_| ()).map_err(|e| e.to_string())
        );
        // And the path reaches the first server.
        first_listener.set_nonblocking(false).unwrap();
        let _client = StdUnixStream::connect(&path).unwrap();
        first_listener.accept().unwrap();
    }

    #[test]
    fn directory_lock_of_a_socket_path_locks_the_directory_it_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirectoryLock::of(&dir.path().join("echo.sock"));
        let other = std::fs::File::open(dir.path()).unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "the socket's directory is not locked"
        );
        drop(lock);
        other.try_lock().unwrap();
    }

    #[test]
    fn socket_path_below_a_regular_file_is_refused_as_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"keep").unwrap();
        let r = clear_stale(&file.join("echo.sock"));
        assert!(
            matches!(r, Err(BindError::UnixNoDirectory { .. })),
            "{:?}",
            r.map_err(|e| e.to_string())
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }

    /// A server killed as the check connects: its listener closes with the
    /// check's connection still queued, which reads as a reset.
    #[test]
    fn socket_whose_listener_dies_with_the_check_queued_is_found_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let listener = mio::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut listener = listener;
            let mut poll = mio::Poll::new().unwrap();
            poll.registry()
                .register(&mut listener, mio::Token(0), mio::Interest::READABLE)
                .unwrap();
            let mut events = mio::Events::with_capacity(1);
            poll.poll(&mut events, Some(std::time::Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "the check never connected");
            // Dies without accepting it.
            drop(listener);
        });
        let r = clear_stale(&path);
        server.join().unwrap();
        assert!(matches!(r, Ok(true)), "{:?}", r.map_err(|e| e.to_string()));
        assert!(!path.exists());
    }

    /// Another user's socket is left alone only when this user may not
    /// check it: one this user can connect to, refused, is stale all the
    /// same. Needs root (to give the file away); skipped otherwise.
    #[test]
    fn stale_socket_of_another_user_that_refuses_a_connect_is_removed() {
        if euid() != 0 {
            eprintln!("skipped: needs root to chown the socket file");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        drop(StdUnixListener::bind(&path).unwrap());
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let r = clear_stale(&path);
        assert!(matches!(r, Ok(true)), "{:?}", r.map_err(|e| e.to_string()));
        assert!(!path.exists());
    }

    /// A socket file of this user that the check may not connect to (this
    /// thread's file-system uid set to another user's): not another user's
    /// socket to leave alone, but a failed inspection. Needs root (to take
    /// another file-system uid); skipped otherwise.
    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code)]
    fn own_socket_file_refusing_the_connect_is_an_inspect_error_not_foreign() {
        // SAFETY: geteuid has no preconditions and cannot fail. Not euid():
        // the code under test's own answer must not decide the skip.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to take another file-system uid");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("echo.sock");
        let _listener = StdUnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (inspect, shown) = std::thread::spawn(move || {
            // SAFETY: setfsuid changes this thread's file-system uid only,
            // and the thread ends after the check.
            unsafe { libc::setfsuid(65534) };
            let r = clear_stale(&path);
            let inspect = matches!(r, Err(BindError::UnixInspect { .. }));
            (inspect, format!("{:?}", r.map_err(|e| e.to_string())))
        })
        .join()
        .unwrap();
        assert!(inspect, "{shown}");
    }

    #[test]
    fn socket_file_removed_while_it_is_checked_leaves_the_path_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let listener = StdUnixListener::bind(&path).unwrap();
        let file = path.clone();
        // A server shutting down: it drops the check's connection, then
        // unlinks its file, then closes.
        let server = std::thread::spawn(move || {
            let (c, _) = listener.accept().unwrap();
            drop(c);
            std::fs::remove_file(&file).unwrap();
        });
        let r = clear_stale(&path);
        server.join().unwrap();
        assert!(matches!(r, Ok(false)), "{:?}", r.map_err(|e| e.to_string()));
    }

    #[test]
    fn server_removing_its_file_at_shutdown_never_removes_the_next_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let (listener, file) = bind(&path, 0o660, 16).map_err(|e| e.to_string()).unwrap();
        // Shutting down: the listener closes, then the file is removed.
        drop(listener);
        let (to_main, from_old) = mpsc::channel();
        let (resume_old, old_waits) = mpsc::channel::<()>();
        let old = std::thread::spawn(move || {
            let mut file = file;
            set_hook(move |point| {
                if point == Point::OwnFileChecked {
                    to_main.send("old checked its file").unwrap();
                    let _ = old_waits.recv_timeout(std::time::Duration::from_secs(10));
                }
            });
            file.remove();
        });
        assert_eq!(
            from_old.recv_timeout(std::time::Duration::from_secs(10)),
            Ok("old checked its file")
        );
        // The next server starts then, on the same path.
        let (new, new_saw) = bind_on_a_thread(&path);
        resume_old.send(()).unwrap();
        old.join().unwrap();
        let (new_listener, _new_file) = new.join().unwrap().map_err(|e| e.to_string()).unwrap();
        assert_eq!(
            new_saw,
            Seen::Waits,
            "the next server bound during the old one's removal"
        );
        // The path reaches the new server: the old one removed only its own file.
        new_listener.set_nonblocking(false).unwrap();
        let _client = StdUnixStream::connect(&path).unwrap();
        new_listener.accept().unwrap();
    }
}
