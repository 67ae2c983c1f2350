//! The accept loop the in-test TCP servers share: a thread per connection,
//! a count of those accepted, and a stop that ends the loop and joins them.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Accepts on 127.0.0.1:0 until dropped; dropping it stops accepting, tells
/// each connection's thread to stop (the flag `serve` is given) and joins them.
pub struct Accepting {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    accepted: Arc<AtomicUsize>,
}

impl Accepting {
    /// Binds and serves each connection with `serve` on a thread of its own;
    /// returns the listening address too.
    pub fn start(
        serve: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static,
    ) -> (Accepting, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let serve = Arc::new(serve);
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        accepted2.fetch_add(1, Ordering::SeqCst);
                        let (stop3, serve) = (stop2.clone(), serve.clone());
                        conns.push(std::thread::spawn(move || serve(s, &stop3)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(_) => break,
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        let me = Accepting {
            stop,
            thread: Some(thread),
            accepted,
        };
        (me, addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}
