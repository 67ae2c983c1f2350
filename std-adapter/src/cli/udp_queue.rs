//! `ricochet serve --udp-receive-buffer`: the flag's value, and what the
//! kernel granted each UDP socket, said once at start.

use ricochet::serve::{MAX_UDP_RECEIVE_BUFFER, Server};

/// `--udp-receive-buffer`: bytes, or `None` for the kernel's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReceiveBuffer(pub(crate) Option<usize>);

pub(crate) fn parse_receive_buffer(s: &str) -> Result<ReceiveBuffer, String> {
    if matches!(s.trim(), "off" | "0") {
        return Ok(ReceiveBuffer(None));
    }
    let bytes = ricochet::probe::units::parse_bytes(s)?;
    if bytes > MAX_UDP_RECEIVE_BUFFER {
        return Err(format!(
            "{bytes} bytes is more than a socket's receive queue can be (2 GiB - 1); 4MiB absorbs \
             several milliseconds of a flood"
        ));
    }
    Ok(ReceiveBuffer(Some(bytes)))
}

/// Says, once per UDP socket, what receive queue the kernel granted: at
/// debug level if all that was asked, else at warn level if the size was
/// asked for (`explicit`) and at info level if it is the default.
/// The first `own` sockets are the server's; the others came from a
/// service manager, whose own setting (systemd's `ReceiveBuffer=`) is the
/// fix for them.
pub(crate) fn report_receive_buffers(
    server: &Server,
    want: Option<usize>,
    explicit: bool,
    own: usize,
) {
    let Some(want) = want else {
        return;
    };
    for (i, (addr, got)) in server.udp_receive_buffers().into_iter().enumerate() {
        match got {
            Ok(got) if got >= want => {
                tracing::debug!(%addr, bytes = got, "UDP receive queue");
            }
            Ok(got) => {
                let msg = short_queue(addr, got, want, i >= own);
                if explicit {
                    tracing::warn!("{msg}");
                } else {
                    tracing::info!("{msg}");
                }
            }
            Err(e) => tracing::warn!(%addr, error = %e, "cannot read the UDP receive queue size"),
        }
    }
}

/// The note for a UDP socket granted `got` bytes of the `want` asked for.
fn short_queue(addr: std::net::SocketAddr, got: usize, want: usize, activated: bool) -> String {
    let fix = if activated {
        // The server cannot raise an inherited socket past the cap; the
        // manager, with its privileges, can.
        format!(
            "ReceiveBuffer={want} in the socket unit (systemd sets it with its privileges; it \
             applies to the unit's TCP listeners too), sysctl -w net.core.rmem_max={want}, or \
             choose --udp-receive-buffer"
        )
    } else {
        format!("sysctl -w net.core.rmem_max={want}, start as root, or choose --udp-receive-buffer")
    };
    format!(
        "UDP receive queue of {addr} is {got} bytes, not the {want} asked for: the kernel caps \
         it at net.core.rmem_max for a process without CAP_NET_ADMIN; a short queue drops more \
         datagrams under a flood (raise it: {fix})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_queue_of_an_activated_socket_names_the_socket_units_receive_buffer() {
        let addr = "[::]:7".parse().unwrap();
        let note = short_queue(addr, 212_992, 4 << 20, true);
        assert!(
            note.starts_with("UDP receive queue of [::]:7 is 212992 bytes, not the 4194304")
                && note.contains("ReceiveBuffer=4194304 in the socket unit")
                && !note.contains("start as root"),
            "{note}"
        );
        let note = short_queue(addr, 212_992, 4 << 20, false);
        assert!(
            note.contains("start as root") && !note.contains("ReceiveBuffer"),
            "{note}"
        );
    }

    #[test]
    fn receive_buffer_takes_sizes_and_off_or_0_for_the_kernels_default() {
        assert_eq!(
            parse_receive_buffer("4MiB"),
            Ok(ReceiveBuffer(Some(4 << 20)))
        );
        assert_eq!(
            parse_receive_buffer("65536"),
            Ok(ReceiveBuffer(Some(65536)))
        );
        assert_eq!(parse_receive_buffer("off"), Ok(ReceiveBuffer(None)));
        assert_eq!(parse_receive_buffer("0"), Ok(ReceiveBuffer(None)));
        // The largest the kernel takes is taken.
        assert_eq!(
            parse_receive_buffer(&MAX_UDP_RECEIVE_BUFFER.to_string()),
            Ok(ReceiveBuffer(Some(MAX_UDP_RECEIVE_BUFFER)))
        );
    }

    #[test]
    fn receive_buffer_past_2_gib_or_not_a_size_is_refused_with_the_reason() {
        let err = parse_receive_buffer("2GiB").unwrap_err();
        assert!(err.contains("2 GiB - 1"), "{err}");
        let err = parse_receive_buffer("lots").unwrap_err();
        assert!(err.contains("bad size"), "{err}");
    }
}
