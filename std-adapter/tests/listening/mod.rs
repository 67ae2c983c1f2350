//! Whether a server is ready for connections, read from `/proc/net`
//! without connecting. Bound is not enough: socat and
//! systemd-socket-activate bind, then listen, and a connection in between
//! is refused (a flaky `Connection refused`).

use std::path::Path;

/// Whether a socket listens on 127.0.0.1:`port` (TCP), from `/proc/net/tcp`.
pub fn tcp_listening(port: u16) -> bool {
    let local = format!("{:08X}:{port:04X}", u32::from_ne_bytes([127, 0, 0, 1]));
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (addr, _remote, state) = (fields.next(), fields.next(), fields.next());
            addr == Some(local.as_str()) && state == Some("0A")
        })
    })
}

/// Whether a Unix stream socket listens at `path`, from `/proc/net/unix`
/// (`Num RefCount Protocol Flags Type St Inode Path`: a listening socket
/// has the `__SO_ACCEPTCON` flag, 0x10000).
pub fn unix_listening(path: &Path) -> bool {
    let Some(path) = path.to_str() else {
        return false;
    };
    std::fs::read_to_string("/proc/net/unix").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(3).and_then(|f| u32::from_str_radix(f, 16).ok());
            fields.get(7) == Some(&path) && flags.is_some_and(|f| f & 0x1_0000 != 0)
        })
    })
}
