//! Reading the TLS identity: certificate chains, private keys and CA
//! roots from PEM files, and [`TlsConfigError`], which names the file, what
//! is wrong with it and the fix (a missing or unreadable file naming the
//! user this process runs as, an encrypted key, a key that is not the
//! certificate's, a chain that is not leaf first).

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{CERT_COMMAND, provider};

/// Why the TLS identity could not be loaded (reported by
/// [`crate::serve::Server::bind`] as [`crate::serve::BindError::Tls`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    Read {
        /// What the file was for: `certificate`, `private key`, `client CA` (the server's), or
        /// `client certificate`, `client private key` (the probe's).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file could not be read for lack of permission: the user this
    /// process runs as may not read it, or may not enter a directory on its
    /// path.
    PermissionDenied {
        /// As in [`TlsConfigError::Read`].
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error (of kind `PermissionDenied`).
        source: std::io::Error,
        /// Whether the file itself was seen (it exists, its mode or owner
        /// is what bars the user), rather than a directory on its path.
        file_seen: bool,
        /// The effective uid of this process when the read failed.
        uid: u32,
        /// That uid's user name, when the user database has one.
        user: Option<String>,
    },
    /// The private key is encrypted (passphrase-protected: PKCS#8
    /// `ENCRYPTED PRIVATE KEY`, or a traditional key with `Proc-Type:
    /// 4,ENCRYPTED`); it must be given unencrypted.
    EncryptedKey {
        /// As in [`TlsConfigError::Read`].
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM item of the kind needed.
    Missing {
        /// As in [`TlsConfigError::Read`].
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid PEM.
    Pem {
        /// As in [`TlsConfigError::Read`].
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// The private key is not the key of the certificate.
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
    },
    /// The private key is not the key of the first certificate of the chain
    /// file but of a later one: the chain is not leaf first.
    ChainOrder {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// Which certificate of the file the key belongs to (1 is the first).
        position: usize,
        /// How many certificates the file holds.
        count: usize,
    },
    /// rustls refused the certificate, the key or the CA (an unsupported
    /// key type, a CA that is not a certificate...).
    Rejected {
        /// What rustls said.
        reason: String,
    },
    /// The certificate is X.509 version 1 or 2 (`openssl x509 -req` without
    /// an extensions file makes version 1): rustls takes version 3 only.
    CertificateVersion {
        /// The certificate file.
        cert: PathBuf,
        /// Its version (1 or 2).
        version: u32,
    },
    /// `handshake_timeout` is zero, or TLS was configured without a listener.
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Read { what, path, source } => write!(
                f,
                "TLS {what} {}: cannot read it: {source} (check the path given to --tls-{})",
                path.display(),
                flag(what)
            ),
            TlsConfigError::PermissionDenied {
                what,
                path,
                source,
                file_seen,
                uid,
                user,
            } => {
                let who = match user {
                    Some(name) => format!("{name} (uid {uid})"),
                    None => format!("uid {uid}"),
                };
                let flag = flag(what);
                let barred = if *file_seen {
                    "the file is there, but that user may not read it"
                } else {
                    "that user may not enter a directory on the path to the file"
                };
                write!(
                    f,
                    "TLS {what} {}: cannot read it: {source}: ricochet runs as {who}, and \
                     {barred}; make it readable by {who} (e.g. owned by a group of that user, \
                     mode 0640, in directories it may enter)",
                    path.display()
                )?;
                if matches!(*what, "certificate" | "private key" | "client CA") {
                    // The shipped unit runs as a DynamicUser no file can be
                    // chowned to: systemd hands the file over instead. It
                    // takes a relative path as a credential's name, not a
                    // file: the hint names the file absolutely.
                    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                    write!(
                        f,
                        ", or, under systemd with DynamicUser=yes (the shipped ricochet.service), \
                         hand it over with `LoadCredential=tls-{flag}:{}` and give \
                         `--tls-{flag} ${{CREDENTIALS_DIRECTORY}}/tls-{flag}`",
                        absolute.display()
                    )?;
                }
                Ok(())
            }
            TlsConfigError::EncryptedKey { what, path } => write!(
                f,
                "TLS {what} {}: the key is encrypted (passphrase-protected), and ricochet \
                 needs it unencrypted (it starts unattended, with no one to ask for the \
                 passphrase): decrypt it once with `openssl pkey -in {} -out key.pem` (it asks \
                 for the passphrase) and give --tls-{} key.pem, a file only the user the \
                 server runs as may read (chmod 600)",
                path.display(),
                path.display(),
                flag(what)
            ),
            TlsConfigError::Missing { what, path } => {
                write!(
                    f,
                    "TLS {what} {}: no {what} found in it; expected a PEM file with a {} block",
                    path.display(),
                    pem_label(what)
                )?;
                match *what {
                    // The probe's own identity (`ricochet probe --tls-cert`):
                    // a self-signed server certificate is not what it needs.
                    "client certificate" => f.write_str(
                        " (--tls-cert takes the client certificate, signed by a CA the server \
                         trusts, e.g. one in its --tls-client-ca file)",
                    ),
                    "client private key" => f.write_str(
                        " (--tls-key takes the private key of --tls-cert's certificate)",
                    ),
                    // Not a server certificate: the CA that signs the clients'.
                    "client CA" => f.write_str(
                        " (--tls-client-ca takes the certificate of the CA that signed the \
                         clients' certificates, e.g. made with `openssl req -x509 -newkey ec \
                         -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem \
                         -subj /CN=ricochet-clients-ca`, which then signs each client's with \
                         `openssl x509 -req -CA ca.pem -CAkey ca-key.pem`)",
                    ),
                    _ => write!(f, " (e.g. made with `{CERT_COMMAND}`)"),
                }
            }
            TlsConfigError::Pem { what, path, reason } => write!(
                f,
                "TLS {what} {}: not a valid PEM file ({reason})",
                path.display()
            ),
            TlsConfigError::KeyMismatch { cert, key } => write!(
                f,
                "TLS: the key in {} is not the key of the certificate in {}: give --tls-key \
                 the key made with that certificate (the key.pem written beside it by \
                 `{CERT_COMMAND}`, or the -keyout of the same `openssl req`), or --tls-cert the \
                 certificate of this key",
                key.display(),
                cert.display()
            ),
            TlsConfigError::ChainOrder {
                cert,
                key,
                position,
                count,
            } => write!(
                f,
                "TLS: the certificates in {} are out of order: the key in {} is the key of \
                 certificate {position} of {count} in that file, not of the first; the \
                 server's own certificate (the leaf, the one made with this key) must come \
                 first, then the intermediates that sign it, e.g. `cat server.pem \
                 intermediate.pem > chain.pem`",
                cert.display(),
                key.display()
            ),
            TlsConfigError::Rejected { reason } => write!(
                f,
                "TLS certificate and key refused: {reason} (the key must be the certificate's \
                 own, as PKCS#8, PKCS#1 or SEC1 PEM)"
            ),
            TlsConfigError::CertificateVersion { cert, version } => write!(
                f,
                "TLS certificate {} is X.509 version {version} (what `openssl x509 -req` makes \
                 without an extensions file): TLS takes version 3 only; sign it again with \
                 `-extfile` giving its extensions (a server's names in subjectAltName), or, for \
                 a server, make one with `{CERT_COMMAND}`",
                cert.display()
            ),
            TlsConfigError::Invalid { reason } => write!(f, "TLS configuration: {reason}"),
        }
    }
}

impl std::error::Error for TlsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsConfigError::Read { source, .. }
            | TlsConfigError::PermissionDenied { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The flag that names the file (`--tls-{flag}`), the same in `ricochet
/// serve` (its certificate) and `ricochet probe` (its client certificate).
fn flag(what: &str) -> &'static str {
    match what {
        "certificate" | "client certificate" => "cert",
        "private key" | "client private key" => "key",
        _ => "client-ca",
    }
}

fn pem_label(what: &str) -> &'static str {
    match what {
        "private key" | "client private key" => {
            "\"-----BEGIN PRIVATE KEY-----\" (or \"-----BEGIN EC PRIVATE KEY-----\", \
             \"-----BEGIN RSA PRIVATE KEY-----\")"
        }
        _ => "\"-----BEGIN CERTIFICATE-----\"",
    }
}

/// A file that could not be read: [`TlsConfigError::PermissionDenied`]
/// (naming the user this process runs as) or [`TlsConfigError::Read`].
fn read_error(what: &'static str, path: &Path, source: std::io::Error) -> TlsConfigError {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        let (uid, user) = effective_user();
        return TlsConfigError::PermissionDenied {
            what,
            path: path.to_owned(),
            source,
            // stat needs no read permission on the file, only on the
            // directories up to it.
            file_seen: std::fs::metadata(path).is_ok(),
            uid,
            user,
        };
    }
    TlsConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The effective uid of this process, and its user name if the user
/// database has one (see [`user_name`]).
fn effective_user() -> (u32, Option<String>) {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    (uid, user_name(uid))
}

/// The name of user `uid`, if the user database has one (`getpwuid_r`:
/// /etc/passwd, or systemd's dynamic users through nss-systemd).
#[allow(unsafe_code)]
// Not `nix::unistd::User::from_uid` (what `--user` uses in the CLI): nix
// is a CLI-only dependency, kept out of the library (`cargo xtask ci
// test` checks the library builds without it).
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `passwd` is plain data (integers and pointers): all zeroes is
    // a valid value, overwritten by getpwuid_r on success.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right type; `buf` is
    // `buf.len()` bytes long, and getpwuid_r writes no further.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success `pw_name` points to a NUL-terminated string inside
    // `buf`, which is still alive.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn pem_error(what: &'static str, path: &Path, e: rustls::pki_types::pem::Error) -> TlsConfigError {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(source) => read_error(what, path, source),
        E::NoItemsFound => TlsConfigError::Missing {
            what,
            path: path.to_owned(),
        },
        other => TlsConfigError::Pem {
            what,
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// Reads every certificate of a PEM file (at least one).
pub(crate) fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    // Opening first gives the I/O error (not found, permission) as is.
    std::fs::metadata(path).map_err(|source| read_error(what, path, source))?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsConfigError::Missing {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1; the first one).
pub(crate) fn read_private_key(
    what: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let pem = std::fs::read(path).map_err(|source| read_error(what, path, source))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        // An encrypted key is no PEM key rustls knows: PKCS#8's has another
        // label (no key found), a traditional one headers that are not
        // base64 (a decode error). Neither says what is wrong.
        if is_encrypted_key(&pem) {
            TlsConfigError::EncryptedKey {
                what,
                path: path.to_owned(),
            }
        } else {
            pem_error(what, path, e)
        }
    })
}

/// Whether `pem` holds an encrypted private key: PKCS#8 (`-----BEGIN
/// ENCRYPTED PRIVATE KEY-----`, `openssl pkcs8 -topk8`) or a traditional
/// OpenSSL one (`Proc-Type: 4,ENCRYPTED`, `openssl rsa -aes256`).
fn is_encrypted_key(pem: &[u8]) -> bool {
    let contains = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    contains(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(b"Proc-Type: 4,ENCRYPTED")
}

/// Why rustls refused a certificate chain (`chain`, read from `cert`) with
/// its key (`private`, read from `key`) (`with_single_cert`,
/// `with_client_auth_cert`): a key that is not the certificate's names both
/// files, and when it is the key of a later certificate of the chain, says
/// the chain is out of order.
pub(crate) fn identity_refused(
    e: rustls::Error,
    cert: &Path,
    key: &Path,
    chain: &[CertificateDer<'static>],
    private: &PrivateKeyDer<'static>,
) -> TlsConfigError {
    match e {
        rustls::Error::InconsistentKeys(_) => match key_position(chain, private) {
            Some(i) => TlsConfigError::ChainOrder {
                cert: cert.to_owned(),
                key: key.to_owned(),
                position: i + 1,
                count: chain.len(),
            },
            None => TlsConfigError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
        },
        e => match leaf_version(chain) {
            // rustls says only `UnsupportedCertVersion`.
            Some(version) if version < 3 => TlsConfigError::CertificateVersion {
                cert: cert.to_owned(),
                version,
            },
            _ => TlsConfigError::Rejected {
                reason: format!(
                    "certificate {}, private key {}: {e}",
                    cert.display(),
                    key.display()
                ),
            },
        },
    }
}

/// The X.509 version (1, 2 or 3) of `chain`'s first certificate, if it parses.
fn leaf_version(chain: &[CertificateDer<'static>]) -> Option<u32> {
    let (_, leaf) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    leaf.version().0.checked_add(1)
}

/// The index of the certificate of `chain`, after the first, whose public
/// key is `private`'s; `None` if none is (or the key cannot say). Compared
/// as rustls compares the leaf's (SubjectPublicKeyInfo bytes), but parsed
/// with `x509-parser`, which also reads certificates webpki refuses (an
/// X.509 v1 one, as `openssl x509 -req` makes without extensions).
fn key_position(
    chain: &[CertificateDer<'static>],
    private: &PrivateKeyDer<'static>,
) -> Option<usize> {
    let signing = provider()
        .key_provider
        .load_private_key(private.clone_key())
        .ok()?;
    let spki = signing.public_key()?;
    chain.iter().enumerate().skip(1).find_map(|(i, c)| {
        let (_, cert) = x509_parser::parse_x509_certificate(c).ok()?;
        (cert.public_key().raw == spki.as_ref()).then_some(i)
    })
}

/// A root store of every certificate in a PEM file.
pub(crate) fn read_roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(what, path)? {
        roots.add(cert).map_err(|e| TlsConfigError::Rejected {
            reason: format!("{what} {}: {e}", path.display()),
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests;
