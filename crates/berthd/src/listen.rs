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
    let verified = tls.is_some_and(|t| t.client_ca.is_some());
    let mut activated = activated_fds();
    let mut out = Vec::new();
    for h in hosts {
        match h.strip_prefix("fd://") {
            Some(name) => out.extend(from_fds(&mut activated, name, acceptor.as_ref(), verified)?),
            None => out.push(open(h, acceptor.as_ref(), verified).await?),
        }
    }
    Ok(out)
}

/// `docker info`'s warnings about how the API is served, in dockerd's words.
pub fn warnings(hosts: &[String], tls: Option<&TlsSettings>) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts.iter().filter(|h| h.starts_with("tcp://")) {
        let addr = h.trim_start_matches("tcp://");
        match tls {
            None => out.push(format!(
                "WARNING: API is accessible on http://{addr} without encryption.\n         Access to the remote API is equivalent to root access on the host."
            )),
            Some(t) if t.client_ca.is_none() => out.push(format!(
                "WARNING: API is accessible on https://{addr} without TLS client verification (--tlsverify).\n         Any client that reaches it has root access on the host."
            )),
            Some(_) => {}
        }
    }
    out
}

/// The listening sockets systemd passed (`LISTEN_FDS`, `LISTEN_FDNAMES`, for this pid), by name;
/// the variables are removed so no child inherits them.
fn activated_fds() -> Vec<(String, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok()).unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES").unwrap_or_default().split(':').map(String::from).collect();
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: called at start, before berthd starts threads of its own that read the environment.
        unsafe { std::env::remove_var(k) };
    }
    if !ours {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let fd = 3 + i;
            // Ours to close, as systemd says; never shared with a child (close-on-exec).
            let _ = rustix::io::fcntl_setfd(
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                rustix::io::FdFlags::CLOEXEC,
            );
            // SAFETY: systemd handed us fds 3..3+LISTEN_FDS, each an open listening socket.
            let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            (names.get(i as usize).cloned().unwrap_or_default(), owned)
        })
        .collect()
}

/// `fd://` (every socket systemd passed) or `fd://NAME` (those named so, `FileDescriptorName=`),
/// under the same rules as the addresses they listen on.
fn from_fds(
    fds: &mut Vec<(String, std::os::fd::OwnedFd)>,
    name: &str,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    verified: bool,
) -> Result<Vec<Listener>> {
    let (taken, rest): (Vec<_>, Vec<_>) =
        std::mem::take(fds).into_iter().partition(|(n, _)| name.is_empty() || n == name);
    *fds = rest;
    if taken.is_empty() {
        bail!("fd://{name}: no such socket from systemd (LISTEN_FDS); is berthd started by its berth.socket?");
    }
    let mut out = Vec::new();
    for (_, fd) in taken {
        let family = rustix::net::getsockname(&fd).context("getsockname of an activated socket")?.address_family();
        use rustix::net::AddressFamily as F;
        match family {
            F::UNIX => {
                let l = std::os::unix::net::UnixListener::from(fd);
                l.set_nonblocking(true)?;
                out.push(Listener::Unix(UnixListener::from_std(l)?));
            }
            F::INET | F::INET6 => {
                let l = std::net::TcpListener::from(fd);
                l.set_nonblocking(true)?;
                let local = l.local_addr()?;
                let l = TcpListener::from_std(l)?;
                match tls {
                    Some(acc) => {
                        if !verified && !local.ip().is_loopback() {
                            tracing::warn!(addr = %local, "SECURITY: --tls without --tlsverify on an activated socket: ANY client that reaches it gets root on this host");
                        }
                        out.push(Listener::Tls(l, acc.clone()));
                    }
                    None if local.ip().is_loopback() => out.push(Listener::Tcp(l)),
                    None => bail!("refusing the activated socket {local} without TLS: use --tlsverify"),
                }
            }
            _ => bail!("fd://{name}: not a UNIX or TCP socket"),
        }
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

async fn open(host: &str, tls: Option<&tokio_rustls::TlsAcceptor>, verified: bool) -> Result<Listener> {
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
            if !verified && !addr.ip().is_loopback() {
                // Encrypted, but anyone who can reach the port owns the host: say so loudly.
                for _ in 0..3 {
                    tracing::warn!(
                        %addr,
                        "SECURITY: serving the API with --tls but without --tlsverify: ANY client that reaches \
                         this address gets root on this host. Use --tlsverify with --tlscacert."
                    );
                }
            }
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

/// Where a listener's clients come from, for the request checks that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exposure {
    /// A UNIX socket: its file mode decides who connects.
    Socket,
    /// Plain TCP on loopback: any local process, and any web page a local browser shows.
    Loopback,
    /// TCP with TLS.
    Tls,
}

/// A client gets this long to send a request's headers (a slow or idle client must not hold a
/// connection and a task forever).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    tokio::pin!(shutdown);
    loop {
        // Accept errors (EMFILE under a flood of connections, say) never end the server: back off
        // a moment and accept again.
        let accepted = tokio::select! {
            r = accept(&l) => r,
            _ = &mut shutdown => return,
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            match conn {
                Conn::Unix(s) => serve_conn(s, app, Exposure::Socket).await,
                Conn::Tcp(s) => serve_conn(s, app, Exposure::Loopback).await,
                Conn::Tls(tcp, acc, peer) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
                    Ok(Ok(t)) => serve_conn(t, app, Exposure::Tls).await,
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
    Tls(tokio::net::TcpStream, tokio_rustls::TlsAcceptor, SocketAddr),
}

async fn accept(l: &Listener) -> std::io::Result<Conn> {
    Ok(match l {
        Listener::Unix(l) => Conn::Unix(l.accept().await?.0),
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Conn::Tcp(s)
        }
        Listener::Tls(l, acc) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Conn::Tls(s, acc.clone(), peer)
        }
    })
}

/// One HTTP/1 connection, with upgrades (attach, exec) and a header-read deadline; every request
/// passes the checks for where it came from before it reaches the API.
async fn serve_conn<IO, S>(io: IO, app: S, exposure: Exposure)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        async move {
            if let Some(refused) =
                berth_server::guard::check(&req, exposure == Exposure::Loopback, exposure != Exposure::Socket)
            {
                return Ok(refused);
            }
            tower::Service::call(&mut app, req.map(axum::body::Body::new)).await
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}
