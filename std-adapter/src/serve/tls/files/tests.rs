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

/// The user this process runs as is the one `id` names, whoever runs the
/// tests (root in CI): its uid, and its name from the user database, or
/// none where the uid has no entry (`id -un` then fails).
#[test]
fn the_effective_user_is_the_one_id_names() {
    let id = |flag: &str| {
        let out = std::process::Command::new("id")
            .arg(flag)
            .output()
            .expect("run id");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let (uid, user) = effective_user();
    assert_eq!(Some(uid.to_string()), id("-u"));
    assert_eq!(user, id("-un"));
    if uid == 0 {
        assert_eq!(user.as_deref(), Some("root"));
    }
}

/// The uid is the one files this process creates get as owner.
#[test]
fn the_effective_uid_owns_what_this_process_creates() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("mine");
    std::fs::write(&file, b"").expect("write");
    let owner = std::fs::metadata(&file).expect("stat").uid();
    let (uid, user) = effective_user();
    assert_eq!(uid, owner);
    assert_eq!(user, user_name(owner));
}

/// Root is in every user database; a uid no one has is no name, not an
/// empty one.
#[test]
fn a_known_uid_has_its_name_and_an_unknown_one_none() {
    assert_eq!(user_name(0).as_deref(), Some("root"));
    assert_eq!(user_name(u32::MAX - 7), None);
}

/// A file without the PEM block wanted names the block, and, for the
/// files that are easy to confuse, which file the flag takes.
#[test]
fn a_file_without_the_item_names_its_pem_label_and_what_the_flag_takes() {
    let missing = |what| {
        TlsConfigError::Missing {
            what,
            path: PathBuf::from("f.pem"),
        }
        .to_string()
    };
    let cases = [
        (
            "certificate",
            "\"-----BEGIN CERTIFICATE-----\" block (e.g. made with `",
        ),
        (
            "private key",
            "\"-----BEGIN PRIVATE KEY-----\" (or \"-----BEGIN EC PRIVATE KEY-----\"",
        ),
        (
            "client certificate",
            "(--tls-cert takes the client certificate, signed by a CA",
        ),
        (
            "client private key",
            "BEGIN RSA PRIVATE KEY-----\") block (--tls-key takes the private key of --tls-cert's",
        ),
        (
            "client CA",
            "(--tls-client-ca takes the certificate of the CA that signed",
        ),
    ];
    for (what, want) in cases {
        let msg = missing(what);
        assert!(
            msg.starts_with(&format!("TLS {what} f.pem: no {what} found in it;")),
            "{msg}"
        );
        assert!(msg.contains(want), "{what}: {msg}");
    }
}

#[test]
fn an_encrypted_key_is_told_by_either_marker_and_a_plain_one_is_not() {
    let plain = rcgen::KeyPair::generate().expect("key").serialize_pem();
    assert!(!is_encrypted_key(plain.as_bytes()));
    assert!(is_encrypted_key(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n"
    ));
    assert!(is_encrypted_key(
        b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
    ));
}

/// A self-signed certificate and its key, in PEM, and the key in DER.
fn identity() -> (String, String, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (cert.pem(), key.serialize_pem(), der)
}

fn der_of(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a certificate")
}

/// Every certificate of a file is read, in order; the key is read as
/// written; each root of a CA file is trusted.
#[test]
fn pem_files_give_every_certificate_in_order_and_the_key_as_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, key_pem, key) = identity();
    let (b, ..) = identity();
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, format!("{a}{b}")).expect("write");
    let keyfile = dir.path().join("key.pem");
    std::fs::write(&keyfile, &key_pem).expect("write");
    let certs = read_certificates("certificate", &chain).expect("read");
    assert_eq!(certs, vec![der_of(&a), der_of(&b)]);
    assert_eq!(
        read_private_key("private key", &keyfile).expect("read"),
        key
    );
    assert_eq!(read_roots("client CA", &chain).expect("roots").len(), 2);
    // A key file is no certificate file, and a certificate no key.
    let e = read_certificates("certificate", &keyfile).unwrap_err();
    assert!(matches!(e, TlsConfigError::Missing { .. }), "{e:?}");
    let e = read_private_key("private key", &chain).unwrap_err();
    assert!(matches!(e, TlsConfigError::Missing { .. }), "{e:?}");
}

/// A key that is the key of no certificate of the chain is a mismatch; the
/// key of a later one says where it is: the chain is not leaf first.
#[test]
fn a_key_of_a_later_certificate_says_which_and_of_none_is_a_mismatch() {
    let (a, _, key_a) = identity();
    let (b, _, _) = identity();
    let (c, _, key_c) = identity();
    let (_, _, stranger) = identity();
    let chain = vec![der_of(&a), der_of(&b), der_of(&c)];
    let inconsistent = || rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch);
    let (cert, key) = (Path::new("chain.pem"), Path::new("key.pem"));
    match identity_refused(inconsistent(), cert, key, &chain, &key_c) {
        TlsConfigError::ChainOrder {
            position, count, ..
        } => assert_eq!((position, count), (3, 3)),
        other => panic!("{other:?}"),
    }
    let e = identity_refused(inconsistent(), cert, key, &chain, &stranger);
    assert!(matches!(e, TlsConfigError::KeyMismatch { .. }), "{e:?}");
    // Only the certificates after the first are searched: the leaf's own
    // key is not "out of order".
    let e = identity_refused(inconsistent(), cert, key, &chain[..1], &key_a);
    assert!(matches!(e, TlsConfigError::KeyMismatch { .. }), "{e:?}");
}

/// `der` with its version field set to `v` (0 is X.509 version 1).
fn with_version(der: &CertificateDer<'_>, v: u8) -> CertificateDer<'static> {
    let mut bytes = der.to_vec();
    let at = bytes
        .windows(5)
        .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
        .expect("a version 3 field");
    bytes[at + 4] = v;
    CertificateDer::from(bytes)
}

/// Any other refusal of a version 1 or 2 leaf is its version; of a
/// version 3 one, rustls's own words with both files.
#[test]
fn a_refused_old_version_leaf_names_its_version_and_a_v3_one_the_reason() {
    let (a, _, key) = identity();
    let v3 = der_of(&a);
    let (cert, keyfile) = (Path::new("c.pem"), Path::new("k.pem"));
    let refused = || rustls::Error::General("refused".to_owned());
    for (v, want) in [(0, 1), (1, 2)] {
        match identity_refused(refused(), cert, keyfile, &[with_version(&v3, v)], &key) {
            TlsConfigError::CertificateVersion { version, .. } => assert_eq!(version, want),
            other => panic!("version {want}: {other:?}"),
        }
    }
    match identity_refused(refused(), cert, keyfile, &[v3], &key) {
        TlsConfigError::Rejected { reason } => assert_eq!(
            reason,
            "certificate c.pem, private key k.pem: unexpected error: refused"
        ),
        other => panic!("{other:?}"),
    }
}
