//! Where a `ricochet serve` child listens: it announces each endpoint on
//! stdout as `listening tcp ADDR` or `listening udp ADDR` once bound (port
//! 0 becomes a real port there). The attack and loss runs start servers
//! this way and read the addresses with [`addresses`].

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Child;
use std::thread;

/// The TCP address, and with `want_udp` the UDP one, that `child` (spawned
/// with a piped stdout) announces. The rest of its stdout is drained by a
/// thread, so the server never blocks writing it. On an error (its stdout
/// ended first: it exited; or it announced an address that does not
/// parse) the child is killed and reaped.
pub(crate) fn addresses(
    child: &mut Child,
    want_udp: bool,
) -> Result<(SocketAddr, Option<SocketAddr>), String> {
    let read = read(child, want_udp);
    if read.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    read
}

fn read(child: &mut Child, want_udp: bool) -> Result<(SocketAddr, Option<SocketAddr>), String> {
    let stdout = child
        .stdout
        .take()
        .ok_or("the server's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut tcp, mut udp) = (None, None);
    while tcp.is_none() || (want_udp && udp.is_none()) {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            Some(Err(e)) => return Err(format!("reading the server's stdout: {e}")),
            None => return Err("the server exited before listening".into()),
        };
        let mut words = line.split_whitespace();
        let (Some("listening"), Some(kind), Some(addr), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let slot = match kind {
            "tcp" => &mut tcp,
            "udp" => &mut udp,
            _ => continue,
        };
        *slot = Some(
            addr.parse::<SocketAddr>()
                .map_err(|e| format!("the server announced {line:?}: {e}"))?,
        );
    }
    thread::spawn(move || for _ in lines {});
    Ok((tcp.expect("loop ends with tcp"), udp))
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn fake_server(stdout: &str) -> Child {
        Command::new("sh")
            .args(["-c", &format!("printf '{stdout}'; exec sleep 30")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh")
    }

    fn stop(mut child: Child) {
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn announced_tcp_and_udp_are_read_past_other_lines() {
        let mut child = fake_server(
            "listening unix /tmp/x.sock\\nlistening udp 127.0.0.1:6\\nlistening tcp [::1]:5\\n",
        );
        let got = addresses(&mut child, true);
        stop(child);
        assert_eq!(
            got,
            Ok((
                "[::1]:5".parse().unwrap(),
                Some("127.0.0.1:6".parse().unwrap())
            ))
        );
    }

    #[test]
    fn tcp_alone_does_not_wait_for_udp() {
        let mut child = fake_server("listening tcp 127.0.0.1:5\\n");
        let got = addresses(&mut child, false);
        stop(child);
        assert_eq!(got, Ok(("127.0.0.1:5".parse().unwrap(), None)));
    }

    #[test]
    fn stdout_ending_before_listening_is_an_error_and_the_server_killed() {
        // The server closes its stdout but keeps running: only `addresses`
        // can end it.
        let mut child = Command::new("sh")
            .args(["-c", "echo starting; exec >&-; exec sleep 30"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let e = addresses(&mut child, false).unwrap_err();
        assert!(e.contains("exited before listening"), "{e}");
        let status = child.try_wait().expect("wait");
        stop(child);
        assert!(status.is_some(), "the server was killed and reaped");
    }

    #[test]
    fn unparsable_address_is_an_error_naming_the_line() {
        let mut child = fake_server("listening tcp nowhere\\n");
        let e = addresses(&mut child, false).unwrap_err();
        assert!(e.contains("nowhere"), "{e}");
        let status = child.try_wait().expect("wait");
        stop(child);
        assert!(status.is_some(), "the server was killed and reaped");
    }
}
