//! Unix stream socket files: stale-file handling, permissions, cleanup.
//!
//! A socket file outlives the process that bound it if that process died
//! without cleaning up. At start we remove such a *stale* file, but only when
//! it is a socket and a connection attempt is refused (nobody listens). Any
//! other file is left alone and reported, and so is another user's socket
//! file that this user may not connect to. (A check-then-remove race with a
//! second server starting at the same instant is possible and accepted: the
//! loser's bind then fails with "address in use".)

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::error::BindError;

/// Removes a stale socket file at `path`, if any.
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
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
            && let Err(e) = std::fs::remove_file(&self.path)
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
}
