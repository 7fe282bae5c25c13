//! API listeners: UNIX sockets (mode 0660), loopback TCP, and TCP with TLS — mutual TLS with
//! `--tlsverify`, as dockerd does — on any address.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::extract::Request;
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::rustls;

/// The daemon's TLS: its certificate and key, and with `--tlsverify` the CA client certificates must chain to.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
    Tls(TcpListener, tokio_rustls::TlsAcceptor),
}

pub async fn open_all(hosts: &[String], tls: Option<&TlsSettings>) -> Result<Vec<Listener>> {
    let acceptor = tls.map(acceptor).transpose()?;
    let mut out = Vec::new();
    for h in hosts {
        out.push(open(h, acceptor.as_ref()).await?);
    }
    Ok(out)
}

fn pem_certs(p: &PathBuf) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
    rustls_pemfile::certs(&mut std::io::BufReader::new(f))
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("read certificates from {}", p.display()))
}

fn acceptor(t: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = pem_certs(&t.cert)?;
    let f = std::fs::File::open(&t.key).with_context(|| format!("open {}", t.key.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(f))?
        .with_context(|| format!("no private key in {}", t.key.display()))?;
    let b = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let b = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in pem_certs(ca)? {
                roots.add(c)?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(b.with_single_cert(certs, key)?)))
}

async fn open(host: &str, tls: Option<&tokio_rustls::TlsAcceptor>) -> Result<Listener> {
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
        if let Some(acc) = tls {
            let l = TcpListener::bind(addr).await.with_context(|| format!("listen on {addr}"))?;
            return Ok(Listener::Tls(l, acc.clone()));
        }
        if !addr.ip().is_loopback() {
            bail!("refusing to listen on {addr} without TLS: use --tlsverify with --tlscacert, --tlscert and --tlskey");
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
    let l = match l {
        Listener::Tls(l, acc) => return serve_tls(l, acc, app, shutdown).await,
        other => other,
    };
    let svc = axum::ServiceExt::<Request>::into_make_service(app);
    let res = match l {
        Listener::Unix(l) => axum::serve(l, svc).with_graceful_shutdown(shutdown).await,
        Listener::Tcp(l) => axum::serve(l, svc).with_graceful_shutdown(shutdown).await,
        Listener::Tls(..) => unreachable!("served above"),
    };
    if let Err(e) = res {
        tracing::error!("listener failed: {e}");
    }
}

/// TLS connections: each handshake (and client-certificate check) runs on its own task, so a slow
/// or hostile client never stalls the accept loop; hijacked streams (attach, exec) keep working
/// through the upgrade.
async fn serve_tls<S>(
    l: TcpListener,
    acc: tokio_rustls::TlsAcceptor,
    app: S,
    shutdown: impl std::future::Future<Output = ()>,
) where
    S: tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acc, app) = (acc.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(30), acc.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut app = app.clone();
                async move { tower::Service::call(&mut app, req.map(axum::body::Body::new)).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        });
    }
}
