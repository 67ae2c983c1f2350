//! Unix socket files: stale ones replaced, foreign files never deleted,
//! owner-only permissions by default, removed on exit.

mod serve_support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};

use ricochet::serve::{BindError, Server, ServerConfig};
use serve_support::{IO_TIMEOUT, STOP_TIMEOUT, round_trip};

fn config(path: &std::path::Path) -> ServerConfig {
    serve_support::with_io(ServerConfig {
        unix: vec![path.to_owned()],
        threads: 2,
        ..ServerConfig::default()
    })
}

fn connect(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

#[test]
fn unix_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listening
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket()
    );
    let server = Server::bind(config(&path))
        .expect("stale socket replaced")
        .spawn()
        .unwrap();
    round_trip(&mut connect(&path), b"fresh");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
    assert!(!path.exists(), "socket file removed on exit");
}

#[test]
fn unix_regular_file_at_path_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"do not delete me").unwrap();
    let err = Server::bind(config(&path)).unwrap_err();
    assert!(matches!(err, BindError::UnixNotSocket { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("not a socket") && msg.contains("precious.txt"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"do not delete me");
}

#[test]
fn unix_path_too_long_is_refused_naming_the_limit() {
    // sun_path holds 107 bytes and a NUL on Linux: 107 binds, 108 cannot.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().as_os_str().len() + 1;
    let at = |len: usize| dir.path().join("s".repeat(len - base));
    let fits = at(107);
    let server = Server::bind(config(&fits))
        .expect("a 107-byte path binds")
        .spawn()
        .unwrap();
    round_trip(&mut connect(&fits), b"fits");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
    let long = at(108);
    let err = Server::bind(config(&long)).unwrap_err();
    assert!(
        matches!(
            err,
            BindError::UnixPathTooLong {
                len: 108,
                max: 107,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("108 bytes") && msg.contains("at most 107"),
        "{msg}"
    );
    assert!(!long.exists());
}

#[test]
fn unix_live_socket_is_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sock");
    let _live = UnixListener::bind(&path).unwrap();
    let err = Server::bind(config(&path)).unwrap_err();
    assert!(matches!(err, BindError::UnixInUse { .. }), "{err:?}");
    assert!(path.exists());
}

#[test]
fn unix_socket_file_is_owner_only_by_default_and_mode_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.sock");
    let shared = dir.path().join("shared.sock");
    let a = Server::bind(config(&private)).unwrap();
    let b = Server::bind(ServerConfig {
        unix_mode: 0o660,
        ..config(&shared)
    })
    .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&shared), 0o660);
    drop((a, b));
    assert!(
        !private.exists() && !shared.exists(),
        "unspawned servers remove their files too"
    );
}

#[test]
fn unix_socket_file_removed_at_shutdown_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bye.sock");
    let server = Server::bind(config(&path)).unwrap().spawn().unwrap();
    let mut c = connect(&path);
    round_trip(&mut c, b"hello");
    server.shutdown();
    assert!(
        !path.exists(),
        "no new client can find the server once it stops accepting"
    );
    drop(c);
    server.join_within(STOP_TIMEOUT).unwrap();
}
