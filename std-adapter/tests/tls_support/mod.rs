//! TLS test helpers: a throwaway PKI made by the test (rcgen; no private key
//! is ever committed), our server with a TLS listener, and a blocking rustls
//! client with bounded waits.
#![allow(dead_code, unreachable_pub)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use ricochet::core::Mode;
use ricochet::serve::{Server, ServerConfig, ServerHandle, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Every wait of these helpers is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// A CA, a server certificate for `localhost` and `127.0.0.1` signed by it, a
/// client certificate signed by it, and a second CA that signed nothing we
/// serve. All PEM files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: &str| -> PathBuf {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).expect("write PEM");
            p
        };
        let issuer = ca("ricochet test CA");
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        let client_key = KeyPair::generate().expect("client key");
        let mut cparams = CertificateParams::new(vec!["client.test".to_owned()]).expect("params");
        cparams
            .distinguished_name
            .push(DnType::CommonName, "ricochet test client");
        let client = cparams
            .signed_by(&client_key, &issuer)
            .expect("client cert");
        let other = ca("some other CA");
        Pki {
            ca: write("ca.pem", &issuer.pem()),
            cert: write("cert.pem", &cert.pem()),
            key: write("key.pem", &key.serialize_pem()),
            client_cert: write("client.pem", &client.pem()),
            client_key: write("client-key.pem", &client_key.serialize_pem()),
            other_ca: write("other-ca.pem", &other.pem()),
            dir,
        }
    }
}

/// Our server with one TLS listener and one plain TCP listener, on 127.0.0.1:0.
pub struct TlsServer {
    pub handle: Option<ServerHandle>,
    pub tls: SocketAddr,
    pub tcp: SocketAddr,
}

impl TlsServer {
    /// Starts it; `tweak` adjusts the configuration first.
    pub fn start(pki: &Pki, mode: Mode, tweak: impl FnOnce(&mut ServerConfig)) -> TlsServer {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = ServerConfig {
            tcp: vec![local],
            mode,
            threads: 2,
            tls: Some(TlsConfig::new(vec![local], &pki.cert, &pki.key)),
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let server = Server::bind(config).expect("bind our TLS server");
        let handle = server.spawn().expect("spawn our TLS server");
        TlsServer {
            tls: handle.tls_addr().expect("tls address"),
            tcp: handle.tcp_addr().expect("tcp address"),
            handle: Some(handle),
        }
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("running")
    }

    /// Waits (bounded) until the server's counters satisfy `ready`.
    pub fn wait_stats(&self, what: &str, ready: impl Fn(&ricochet::serve::StatsSnapshot) -> bool) {
        let start = Instant::now();
        loop {
            let s = self.handle().stats();
            if ready(&s) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}: {s:#?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            // Bounded: a server that does not stop fails the test instead
            // of hanging it (unless the test is failing already).
            if let Err(e) = h.join_within(std::time::Duration::from_secs(60))
                && !std::thread::panicking()
            {
                panic!("the TLS server: {e}");
            }
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting `ca`, optionally with a client certificate.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(c.expect("CA cert")).expect("add CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .expect("client cert")
                .map(|c| c.expect("cert"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A blocking TLS client over one TCP connection (read timeout: bounded waits).
pub struct Client {
    pub tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Client {
        Client::over(TcpStream::connect(addr).expect("connect"), config)
    }

    /// [`Client::connect`] with a receive buffer of `rcvbuf` bytes, set
    /// before connecting: a small window, so that little of what the
    /// server sends fits in the kernels while the client reads nothing.
    pub fn connect_with_window(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        rcvbuf: usize,
    ) -> Client {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        sock.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        sock.connect(&addr.into()).expect("connect");
        Client::over(sock.into(), config)
    }

    fn over(sock: TcpStream, config: Arc<rustls::ClientConfig>) -> Client {
        sock.set_read_timeout(Some(WAIT)).expect("timeout");
        sock.set_write_timeout(Some(WAIT)).expect("timeout");
        sock.set_nodelay(true).expect("nodelay");
        let name = ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(config, name).expect("client connection");
        Client {
            tls: rustls::StreamOwned::new(conn, sock),
        }
    }

    /// Completes the handshake (or returns its error).
    pub fn handshake(&mut self) -> std::io::Result<()> {
        while self.tls.conn.is_handshaking() {
            self.tls.conn.complete_io(&mut self.tls.sock)?;
        }
        Ok(())
    }

    /// Sends `data`.
    pub fn send(&mut self, data: &[u8]) {
        self.tls.write_all(data).expect("TLS write");
        self.tls.flush().expect("TLS flush");
    }

    /// Reads exactly `n` bytes.
    pub fn recv(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.tls.read_exact(&mut v).expect("TLS read");
        v
    }

    /// close_notify, then FIN: our half-close.
    pub fn half_close(&mut self) {
        self.tls.conn.send_close_notify();
        self.tls.flush().expect("send close_notify");
        self.tls.sock.shutdown(Shutdown::Write).expect("FIN");
    }

    /// Reads until the server's close_notify (Ok) or an error; returns what came.
    pub fn read_to_close(&mut self) -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.tls.read_to_end(&mut v).map(|_| v)
    }
}

/// Reads raw bytes from a plain socket until EOF (Ok) or an error, bounded by [`WAIT`].
pub fn read_raw_to_end(sock: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    sock.set_read_timeout(Some(WAIT))?;
    let mut v = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return Ok(v),
            Ok(n) => v.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Deterministic test data (NUL and '\n' included).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A TLS server that completes each handshake (rustls, `pki`'s server
/// certificate), reads the client's first plaintext, then writes `raw`
/// straight to the TCP socket, outside TLS, and holds the connection open
/// until dropped: a server that speaks plain text once connected, or a
/// record altered on the way. On 127.0.0.1:0.
pub struct RawAfterHandshake {
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawAfterHandshake {
    pub fn start(pki: &Pki, raw: &'static [u8]) -> RawAfterHandshake {
        use std::sync::atomic::{AtomicBool, Ordering};
        let chain: Vec<_> = CertificateDer::pem_file_iter(&pki.cert)
            .expect("server cert")
            .map(|c| c.expect("cert"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&pki.key).expect("server key");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            let start = Instant::now();
            while !stop2.load(Ordering::Relaxed) && start.elapsed() < WAIT {
                let sock = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    Err(_) => break,
                };
                let _ = sock.set_nonblocking(false);
                let _ = sock.set_read_timeout(Some(WAIT));
                let _ = sock.set_write_timeout(Some(WAIT));
                let conn = rustls::ServerConnection::new(config.clone()).expect("connection");
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut buf = [0u8; 4096];
                // The handshake, then the first plaintext (or an error).
                if matches!(tls.read(&mut buf), Ok(n) if n > 0) {
                    let _ = tls.sock.write_all(raw);
                }
                held.push(tls);
            }
        });
        RawAfterHandshake {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RawAfterHandshake {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
