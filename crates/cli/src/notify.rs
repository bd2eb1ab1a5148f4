//! The service manager's readiness protocol (`sd_notify(3)`), without
//! libsystemd: one datagram of `KEY=VALUE` lines to the unix socket named
//! by `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading
//! `@`). Without the variable (not started by systemd with `Type=notify`)
//! nothing is sent. The messages never carry a secret.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`. `Ok(false)` when
/// the variable is not set; an error when it is set but the datagram could
/// not be sent.
pub fn notify(state: &str) -> std::io::Result<bool> {
    notify_to(std::env::var_os("NOTIFY_SOCKET"), state)
}

/// [`notify`] with `$NOTIFY_SOCKET` given.
fn notify_to(target: Option<std::ffi::OsString>, state: &str) -> std::io::Result<bool> {
    let Some(target) = target.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        send_abstract(&socket, name, state)?;
    } else if bytes.first() == Some(&b'/') {
        socket.send_to(state.as_bytes(), std::path::Path::new(&target))?;
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract name (@…)",
        ));
    }
    Ok(true)
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names (NOTIFY_SOCKET=@…) exist on Linux only",
    ))
}

/// [`notify`], with a failure logged rather than returned: the service
/// manager not hearing a status line must not stop the gateway (systemd
/// then times the start out by itself).
pub fn tell(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %e, "could not notify the service manager ({state:?})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name_and_nothing_without_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let abstract_name = format!("redcap-warden-notify-test-{}", std::process::id());
        let abstract_listener = {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                .unwrap();
            UnixDatagram::bind_addr(&addr).unwrap()
        };
        let mut buf = [0u8; 256];
        assert!(notify_to(Some(path.clone().into()), "READY=1").unwrap());
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let at = format!("@{abstract_name}");
        assert!(notify_to(Some(at.into()), "STOPPING=1").unwrap());
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        assert!(notify_to(Some("relative.sock".into()), "READY=1").is_err());
        assert!(!notify_to(None, "READY=1").unwrap());
        assert!(!notify_to(Some("".into()), "READY=1").unwrap());
    }
}
