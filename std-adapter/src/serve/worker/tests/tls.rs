//! TLS connections on the epoll worker.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::pki_types::ServerName;

use super::*;
use crate::serve::tls::{TlsStream, test_configs};

/// A TLS connection whose drives stop at a small share of records (4 KiB,
/// so that every 16 KiB message crosses it): the worker drives it again at
/// its next turn without a readiness event, and each message's echo comes
/// back whole. Were it left waiting for an event, the rest of a message
/// would sit in the socket and rustls until the client sent more, which it
/// does only after the echo.
#[test]
fn tls_input_left_at_a_drives_share_of_records_is_read_at_the_next_turn() {
    let (mut w, _) = worker(0, 8);
    let (server, client) = test_configs();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let csock = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (ssock, peer) = l.accept().expect("accept");
    ssock.set_nonblocking(true).expect("non-blocking");
    let now = w.clock.now();
    let mut tls = TlsStream::new(
        mio::net::TcpStream::from_std(ssock),
        server,
        now + ricochet_core::time::Duration::from_secs(30),
    )
    .expect("TLS");
    tls.set_ciphertext_cap(4 * 1024);
    w.admit(Stream::Tls(Box::new(tls)), Peer::Tcp(peer), now);
    assert_eq!(w.conns.len(), 1, "admitted");

    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let finish = || done.store(true, Ordering::Relaxed);
            csock
                .set_read_timeout(Some(StdDuration::from_secs(10)))
                .expect("timeout");
            let name = ServerName::try_from("localhost").expect("name");
            let conn = rustls::ClientConnection::new(client, name).expect("client");
            let mut tls = rustls::StreamOwned::new(conn, csock);
            let message: Vec<u8> = (0..16 * 1024u32).map(|i| (i % 253) as u8).collect();
            let mut back = vec![0u8; message.len()];
            for round in 0..8 {
                let echoed = tls
                    .write_all(&message)
                    .and_then(|()| tls.read_exact(&mut back));
                if let Err(e) = echoed {
                    finish();
                    return Err(format!("round {round}: {e}"));
                }
                if back != message {
                    finish();
                    return Err(format!("round {round}: the echo differs"));
                }
            }
            finish();
            Ok(())
        });
        turn_until(&mut w, "every echo", |_| done.load(Ordering::Relaxed));
        client.join().expect("client thread").expect("echo");
    });
}
