//! API listeners: UNIX sockets (mode 0660) and loopback TCP.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use anyhow::{bail, Context, Result};
use axum::extract::Request;
use tokio::net::{TcpListener, UnixListener};

pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

pub async fn open_all(hosts: &[String]) -> Result<Vec<Listener>> {
    let mut out = Vec::new();
    for h in hosts {
        out.push(open(h).await?);
    }
    Ok(out)
}

async fn open(host: &str) -> Result<Listener> {
    if let Some(path) = host.strip_prefix("unix://") {
        let path = std::path::Path::new(path);
        if path.exists() {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                bail!("{} is in use by another daemon", path.display());
            }
            std::fs::remove_file(path).with_context(|| format!("remove stale socket {}", path.display()))?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let l = UnixListener::bind(path).with_context(|| format!("listen on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        return Ok(Listener::Unix(l));
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let addr: SocketAddr = addr.parse().with_context(|| format!("invalid TCP address {addr:?}"))?;
        if !addr.ip().is_loopback() {
            bail!("refusing to listen on {addr} without TLS: only loopback TCP is accepted until TLS lands");
        }
        let l = TcpListener::bind(addr).await.with_context(|| format!("listen on {addr}"))?;
        return Ok(Listener::Tcp(l));
    }
    bail!("unsupported host {host:?}: use unix:///path or tcp://127.0.0.1:port")
}

pub async fn serve<S>(l: Listener, app: S, mut stop: tokio::sync::watch::Receiver<bool>)
where
    S: tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let svc = axum::ServiceExt::<Request>::into_make_service(app);
    let res = match l {
        Listener::Unix(l) => axum::serve(l, svc).with_graceful_shutdown(shutdown).await,
        Listener::Tcp(l) => axum::serve(l, svc).with_graceful_shutdown(shutdown).await,
    };
    if let Err(e) = res {
        tracing::error!("listener failed: {e}");
    }
}
