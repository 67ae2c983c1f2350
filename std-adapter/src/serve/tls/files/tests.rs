use super::*;

fn denied() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::PermissionDenied)
}

/// Permission denied names the user this process runs as and the fix,
/// not "check the path" (the path is right: the user may not read it).
#[test]
fn permission_denied_names_the_user_and_the_fix() {
    let path = Path::new("/etc/ricochet/key.pem");
    let e = read_error("private key", path, denied());
    let (uid, user) = effective_user();
    let who = match &user {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with("TLS private key /etc/ricochet/key.pem: cannot read it: "),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("runs as {who}"))
            && msg.contains(&format!("make it readable by {who}"))
            && msg.contains("DynamicUser=yes")
            && msg.contains("`LoadCredential=tls-key:/etc/ricochet/key.pem`")
            && msg.contains("`--tls-key ${CREDENTIALS_DIRECTORY}/tls-key`"),
        "{msg}"
    );
    assert!(!msg.contains("check the path"), "{msg}");
    assert!(std::error::Error::source(&e).is_some());
    // A file that is there (stat works) is said to be there; one
    // behind a directory the user may not enter is not.
    let here = std::env::current_exe().expect("this test binary");
    let msg = read_error("private key", &here, denied()).to_string();
    assert!(
        msg.contains("the file is there, but that user may not read it"),
        "{msg}"
    );
    let msg = read_error("private key", Path::new("/no/such/dir/key.pem"), denied());
    assert!(
        msg.to_string()
            .contains("may not enter a directory on the path to the file"),
        "{msg}"
    );
    // A relative path is named absolutely: systemd would take `c.pem`
    // as a credential's name, not a file.
    let e = read_error("certificate", Path::new("c.pem"), denied());
    let cwd = std::env::current_dir().expect("cwd");
    assert!(
        e.to_string().contains(&format!(
            "`LoadCredential=tls-cert:{}` and give `--tls-cert ${{CREDENTIALS_DIRECTORY}}/tls-cert`",
            cwd.join("c.pem").display()
        )),
        "{e}"
    );
    // The probe's own files: no service unit to hand them over.
    let e = read_error("client private key", Path::new("k.pem"), denied());
    assert!(
        e.to_string().contains("make it readable") && !e.to_string().contains("LoadCredential"),
        "{e}"
    );
}

/// Any other read error still points at the path.
#[test]
fn a_missing_file_points_at_the_path() {
    let e = read_error(
        "private key",
        Path::new("nope.pem"),
        std::io::Error::from(std::io::ErrorKind::NotFound),
    );
    assert!(
        matches!(e, TlsConfigError::Read { .. })
            && e.to_string()
                .contains("(check the path given to --tls-key)"),
        "{e}"
    );
}

/// Root (as CI runs the tests) is found in the user database by name.
#[test]
fn the_effective_user_is_named() {
    let (uid, user) = effective_user();
    if uid == 0 {
        assert_eq!(user.as_deref(), Some("root"));
    }
}
