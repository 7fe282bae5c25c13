//! systemd's readiness protocol (`Type=notify`): `READY=1` once the API answers, `STOPPING=1`
//! when a shutdown starts. Nothing without `NOTIFY_SOCKET`.

/// Sends `state` to the service manager, if there is one; failures are logged, never fatal.
pub fn notify(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else { return };
    let sent = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        match path.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())?;
                sock.send_to_addr(state.as_bytes(), &addr)?;
            }
            None => {
                sock.send_to(state.as_bytes(), &path)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(socket = %path, "sd_notify {state:?}: {e}");
    }
}
