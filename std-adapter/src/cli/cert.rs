//! `ricochet cert`: a self-signed test certificate and its key, for
//! `serve --tls-cert/--tls-key` and `probe --tls-ca`, without OpenSSL.
//!
//! What rustls takes as a server's certificate: not a CA (`CA:FALSE`), every
//! name in subjectAltName (rustls ignores the common name), ECDSA P-256, and
//! `serverAuth`. The key file is created mode 0600; an existing file is
//! never overwritten without `--force`.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::ServerName;

use super::say;

/// The names a test certificate is for when no `--name` is given: what a
/// server on this host is reached by.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Make a self-signed test certificate and key for `serve --tls-cert/--tls-key`
///
/// Writes DIR/cert.pem (the certificate, which `probe --tls-ca` trusts) and
/// DIR/key.pem (its private key, mode 0600): ECDSA P-256, not a CA, valid
/// for each --name (DNS names and IP addresses, in subjectAltName) from now
/// for --days. For tests and private networks; a service that strangers
/// reach wants a certificate from a CA they trust.
///
/// Exit status: 0 when both files are written, 1 when they cannot be (a
/// file already there without --force, a directory that cannot be made or
/// written), 2 on a usage error.
#[derive(Debug, Args)]
#[command(
    after_help = "Then: ricochet serve --tcp 127.0.0.1:7443 --tls-cert cert.pem --tls-key key.pem\n      \
                  ricochet probe tls://localhost:7443 --tls-ca cert.pem"
)]
pub(crate) struct CertArgs {
    /// A DNS name or IP address the certificate is valid for (repeat for
    /// more; a DNS name may start with `*.`) [default: localhost,
    /// 127.0.0.1, ::1]
    #[arg(long = "name", value_name = "NAME", value_parser = parse_name)]
    names: Vec<String>,

    /// Days the certificate is valid for, from now
    #[arg(long, value_name = "N", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,

    /// Directory to write cert.pem and key.pem in (made if missing)
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,

    /// Replace cert.pem and key.pem if they are already there
    #[arg(long)]
    force: bool,
}

/// A `--name`: an IP address or a DNS name rustls can match a server by.
fn parse_name(s: &str) -> Result<String, String> {
    let plain = s.strip_prefix("*.").unwrap_or(s);
    // An empty name ("" or "*.") is neither: `try_from` refuses it.
    match ServerName::try_from(plain) {
        Ok(_) => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?} is neither an IP address nor a DNS name (letters, digits, '-' and '.', \
             e.g. localhost, echo.example.com, *.example.com, 127.0.0.1, ::1)"
        )),
    }
}

/// Runs `ricochet cert`.
pub(crate) fn run(args: CertArgs) -> ExitCode {
    match write_pair(&args) {
        Ok(summary) => {
            let _ = writeln!(std::io::stdout().lock(), "{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(format_args!("ricochet cert: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Makes the certificate and writes both files; returns what to tell the user.
fn write_pair(args: &CertArgs) -> Result<String, String> {
    let names: Vec<String> = if args.names.is_empty() {
        DEFAULT_NAMES.iter().map(|n| (*n).to_owned()).collect()
    } else {
        args.names.clone()
    };
    let now = time::OffsetDateTime::now_utc();
    // A minute back: a peer whose clock is a little behind still accepts it.
    let not_before = now - time::Duration::minutes(1);
    let not_after = now + time::Duration::days(i64::from(args.days));
    let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let mut params = CertificateParams::new(names.clone())
        .map_err(|e| format!("cannot make a certificate for {names:?}: {e}"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, subject_name(&key));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the certificate: {e}"))?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot make the directory {}: {e}", args.out.display()))?;
    let cert_path = args.out.join("cert.pem");
    let key_path = args.out.join("key.pem");
    if !args.force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(format!(
                    "{} is already there: give --force to replace it, or --out another directory",
                    p.display()
                ));
            }
        }
    }
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600, args.force)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644, args.force)?;
    let until = not_after.date();
    // `--out .` (the default) names the files as the user would type them.
    let shown = |p: &Path| {
        if args.out == Path::new(".") {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        } else {
            p.display().to_string()
        }
    };
    let (cert_path, key_path) = (shown(&cert_path), shown(&key_path));
    let here = ricochet::serve::ipv6_addresses_here().unwrap_or_default();
    let (listen, target, server_name) = try_lines(&names[0], &here);
    Ok(format!(
        "wrote {} (self-signed, not a CA, for {}; valid until {until} UTC) and {} (its key, mode 0600)\n\
         serve: ricochet serve --tcp {listen}:7443 --tls-cert {} --tls-key {}\n\
         probe: ricochet probe tls://{target}:7443 --tls-ca {}{server_name}",
        cert_path,
        names.join(", "),
        key_path,
        cert_path,
        key_path,
        cert_path,
    ))
}

/// Where the printed lines try the certificate for `name` (its first
/// name): the address `serve` listens on, the host `probe` connects to,
/// and the `--tls-server-name` it checks, so that the two lines work as
/// printed on this host. A local name is used as it is; an IP address is
/// listened on (the certificate is for a host that has it), a link-local
/// one with the interface that has it among `here` (this host's IPv6
/// addresses: it exists once per interface, and neither line takes it
/// without one); another DNS name (or a wildcard's example) is checked on
/// 127.0.0.1, since it may not resolve to this host.
fn try_lines(name: &str, here: &[(Ipv6Addr, String)]) -> (String, String, String) {
    let loopback = || "127.0.0.1".to_owned();
    if name == "localhost" {
        (loopback(), name.to_owned(), String::new())
    } else if let Ok(ip) = name.parse::<IpAddr>() {
        let on = match ip {
            IpAddr::V6(v6) if v6.is_unicast_link_local() => here
                .iter()
                .find(|(a, _)| *a == v6)
                .map(|(_, interface)| format!("[{name}%{interface}]")),
            _ => None,
        };
        let host = on.unwrap_or_else(|| probe_host(name));
        (host.clone(), host, String::new())
    } else {
        let checked = format!(" --tls-server-name {}", probe_host(name));
        (loopback(), loopback(), checked)
    }
}

/// The certificate's subject (and, self-signed, issuer) common name: unique
/// to its key, `ricochet test certificate 1a2b3c4d5e6f7a8b`. Not a server
/// name (clients check subjectAltName): a subject the same as a trusted
/// root's (Debian's ssl-cert-snakeoil.pem in /etc/ssl/certs is
/// `CN=localhost`) makes a verifier check the signature against that root's
/// key and fail with a bad signature instead of "unknown issuer"; and two
/// of these certificates must not collide with each other either.
fn subject_name(key: &KeyPair) -> String {
    // The public point's first bytes after its format byte: random.
    let hex: String = key
        .public_key_raw()
        .iter()
        .skip(1)
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("ricochet test certificate {hex}")
}

/// How the probe line names the server: an IPv6 address in brackets, a
/// wildcard name as one name it covers.
fn probe_host(name: &str) -> String {
    if name.contains(':') {
        format!("[{name}]")
    } else if let Some(rest) = name.strip_prefix("*.") {
        format!("echo.{rest}")
    } else {
        name.to_owned()
    }
}

/// Writes `bytes` to a new file `path` with `mode`; with `replace`, a file
/// already there is removed first (so the key never keeps a looser mode it
/// had before).
fn write_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), String> {
    if replace {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot replace {}: {e}", path.display())),
        }
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{parse_name, probe_host, try_lines};

    #[test]
    fn names_take_dns_names_wildcards_and_ip_addresses() {
        for ok in [
            "localhost",
            "echo.example.com",
            "*.example.com",
            "127.0.0.1",
            "::1",
        ] {
            assert_eq!(parse_name(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "two words", "*.", "a..b", "under_score!"] {
            let e = parse_name(bad).unwrap_err();
            assert!(
                e.contains("neither an IP address nor a DNS name"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn probe_line_brackets_ipv6_and_picks_a_name_under_a_wildcard() {
        assert_eq!(probe_host("::1"), "[::1]");
        assert_eq!(probe_host("*.example.com"), "echo.example.com");
        assert_eq!(probe_host("localhost"), "localhost");
    }

    /// A link-local address is printed with the interface that has it:
    /// `--tcp [fe80::1]:7443` was printed, which `serve` refuses (it exists
    /// once per interface), and so would the probe.
    #[test]
    fn lines_for_a_link_local_address_name_the_interface_that_has_it() {
        let here = [
            ("fe80::2".parse().unwrap(), "eth0".to_owned()),
            ("fe80::1".parse().unwrap(), "veth1".to_owned()),
        ];
        let (listen, target, checked) = try_lines("fe80::1", &here);
        assert_eq!(
            (&listen[..], &target[..], &checked[..]),
            ("[fe80::1%veth1]", "[fe80::1%veth1]", "")
        );
        // Not on this host: as given (serve then says what is missing).
        assert_eq!(try_lines("fe80::9", &here).0, "[fe80::9]");
        assert_eq!(try_lines("::1", &here).0, "[::1]");
        assert_eq!(try_lines("127.0.0.1", &here).0, "127.0.0.1");
    }

    /// Only a link-local address takes an interface: `::1` and a global
    /// address are the same on every interface, and this host lists them
    /// too (`lo`, `eth0` in /proc/net/if_inet6); `[::1%lo]` would be a
    /// scope the user never asked for.
    #[test]
    fn lines_for_a_loopback_or_global_address_name_no_interface() {
        let here = [
            ("::1".parse().unwrap(), "lo".to_owned()),
            ("2001:db8::1".parse().unwrap(), "eth0".to_owned()),
            ("fe80::1".parse().unwrap(), "eth0".to_owned()),
        ];
        for (name, shown) in [("::1", "[::1]"), ("2001:db8::1", "[2001:db8::1]")] {
            let (listen, target, checked) = try_lines(name, &here);
            assert_eq!(
                (&listen[..], &target[..], &checked[..]),
                (shown, shown, ""),
                "{name}"
            );
        }
    }
}
