//! `berth-registry`: serves the distribution API over a storage driver, on plain HTTP or TLS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_registry::auth::{read_htpasswd, Authenticator, Mode, TokenSettings};
use berth_registry::storage::Storage;
use berth_registry::{app, config, gc, Registry};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "berth-registry", version, about = "An OCI distribution (Docker Registry v2) server")]
struct Args {
    /// TOML configuration file; BERTH_REGISTRY_* variables override it, flags override both
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:5000)
    #[arg(long)]
    listen: Option<String>,
    /// Filesystem storage folder (default /var/lib/berth-registry)
    #[arg(long)]
    root: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// none, htpasswd or token
    #[arg(long)]
    auth: Option<String>,
    /// htpasswd file (bcrypt) for the htpasswd and token modes
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// Access policy (TOML: groups and rules over repository globs), reloaded on change or SIGHUP
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Refuse every write
    #[arg(long)]
    read_only: bool,
    /// Allow DELETE of manifests and blobs (true or false)
    #[arg(long)]
    delete_enabled: Option<bool>,
    /// debug, info, warn or error
    #[arg(long)]
    log_level: Option<String>,
    /// Pull-through cache of this registry (e.g. https://registry-1.docker.io); pushes refused
    #[arg(long)]
    proxy_remote: Option<String>,
    /// User name for the remote (its password: BERTH_REGISTRY_PROXY_PASSWORD or proxy.password)
    #[arg(long)]
    proxy_username: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Mark and sweep once, offline (run it while no replica writes), and report what it freed
    Gc {
        /// Report what would be freed; delete nothing
        #[arg(long)]
        dry_run: bool,
        /// Only blobs older than this, and not touched within it (default: gc.grace_secs)
        #[arg(long)]
        grace_secs: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    // `--print-manpage` (for packaging): the man page, generated from these very flags.
    if std::env::args().nth(1).as_deref() == Some("--print-manpage") {
        let _ = clap_mangen::Man::new(<Args as clap::CommandFactory>::command())
            .section("8")
            .render(&mut std::io::stdout());
        return Ok(());
    }
    raise_nofile();
    let a = Args::parse();
    let mut c = config::load(a.config.as_deref(), std::env::vars())?;
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = a.root {
        c.root = v;
    }
    if a.tls_cert.is_some() {
        c.tls.cert = a.tls_cert;
        c.tls.key = a.tls_key;
    }
    if let Some(v) = a.auth {
        c.auth.mode = v;
    }
    if let Some(v) = a.htpasswd {
        c.auth.htpasswd = Some(v);
    }
    if let Some(v) = a.policy {
        c.auth.policy = Some(v);
    }
    c.read_only |= a.read_only;
    if let Some(v) = a.delete_enabled {
        c.delete_enabled = v;
    }
    if let Some(v) = a.log_level {
        c.log_level = v;
    }
    if let Some(v) = a.proxy_remote {
        c.proxy.remote_url = Some(v);
    }
    if let Some(v) = a.proxy_username {
        c.proxy.username = Some(v);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!("berth_registry={0},audit={0}", c.log_level)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let storage = match c.storage.driver.as_str() {
        "filesystem" => Storage::filesystem(&c.root)?,
        "s3" => Storage::s3(c.storage.s3.as_ref().context("storage.s3 settings are required for the s3 driver")?)?,
        other => bail!("unknown storage driver {other:?}: use filesystem or s3"),
    };
    if let Some(Command::Gc { dry_run, grace_secs }) = a.command {
        let reg =
            Registry::new(storage, Authenticator::new(Mode::None, Default::default()), true, false, Duration::ZERO);
        let grace = Duration::from_secs(grace_secs.unwrap_or(c.gc.grace_secs));
        let upload_grace = Duration::from_secs(grace_secs.unwrap_or(c.gc.upload_grace_secs));
        let r = gc::collect(&reg, grace, upload_grace, dry_run)
            .await
            .map_err(|e| anyhow::anyhow!("gc: {}", e.detail.unwrap_or_default()))?;
        let verb = if dry_run { "would free" } else { "freed" };
        println!(
            "{verb} {} blobs ({} bytes) and {} abandoned uploads",
            r.blobs_deleted, r.bytes_freed, r.uploads_deleted
        );
        return Ok(());
    }
    let users = match &c.auth.htpasswd {
        Some(p) => read_htpasswd(p)?,
        None => Default::default(),
    };
    let tls = c.tls.cert.is_some();
    let mode = match c.auth.mode.as_str() {
        "none" => Mode::None,
        "htpasswd" if users.is_empty() => bail!("auth mode htpasswd needs --htpasswd with at least one user"),
        "htpasswd" => Mode::Htpasswd { realm: c.auth.realm.clone() },
        "token" => {
            let scheme = if tls { "https" } else { "http" };
            let key = match c.auth.token_algorithm.to_ascii_uppercase().as_str() {
                "HS256" => {
                    let secret = match &c.auth.secret {
                        // HS256 is only as strong as its key: a short shared secret can be
                        // brute-forced offline from any token.
                        Some(s) if s.len() < 32 => bail!("auth.secret must be at least 32 bytes (it has {})", s.len()),
                        Some(s) => s.as_bytes().to_vec(),
                        None => {
                            tracing::warn!("no auth.secret: tokens are valid on this process only");
                            [*uuid::Uuid::new_v4().as_bytes(), *uuid::Uuid::new_v4().as_bytes()].concat()
                        }
                    };
                    berth_registry::keys::SigningKey::hs256(&secret)
                }
                alg => {
                    let read = |p: &Option<PathBuf>, what: &str| -> Result<Vec<u8>> {
                        let p = p.as_ref().with_context(|| format!("{alg} tokens need auth.token_{what}_key (PEM)"))?;
                        std::fs::read(p).with_context(|| format!("read {}", p.display()))
                    };
                    berth_registry::keys::SigningKey::asymmetric(
                        alg,
                        &read(&c.auth.token_private_key, "private")?,
                        &read(&c.auth.token_public_key, "public")?,
                    )?
                }
            };
            Mode::Token(Box::new(TokenSettings {
                realm: c.auth.token_realm.clone().unwrap_or_else(|| format!("{scheme}://{}/token", c.listen)),
                service: c.auth.service.clone(),
                issuer: c.auth.issuer.clone(),
                key,
                anonymous_pull: c.auth.anonymous_pull,
                lifetime_secs: c.auth.token_lifetime_secs.max(60),
            }))
        }
        other => bail!("unknown auth mode {other:?}: use none, htpasswd or token"),
    };
    let authn = Authenticator::new(mode, users);
    match &c.auth.policy {
        Some(p) => authn.set_policy(Some(berth_registry::policy::Policy::load(p)?)),
        None if c.auth.mode != "none" => {
            tracing::warn!("no access policy (--policy): every authenticated user may pull, push and delete everywhere")
        }
        None => {}
    }
    let mut reg = Registry::new(storage, authn, c.read_only, c.delete_enabled, Duration::from_secs(c.gc.grace_secs));
    if let Some(url) = &c.proxy.remote_url {
        tracing::info!(remote = %url, "pull-through cache: pushes are refused here");
        reg = reg.with_proxy(berth_registry::proxy::Remote::new(
            url,
            c.proxy.username.clone(),
            c.proxy.password.clone(),
        )?);
    }
    let reg = Arc::new(reg);
    if let Some(p) = c.auth.policy.clone() {
        tokio::spawn(reload_policy(reg.clone(), p));
    }
    if c.gc.interval_secs > 0 && !c.read_only {
        let (r, every) = (reg.clone(), Duration::from_secs(c.gc.interval_secs));
        let (grace, upload_grace) = (Duration::from_secs(c.gc.grace_secs), Duration::from_secs(c.gc.upload_grace_secs));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match gc::run(&r, grace, upload_grace).await {
                    Ok(rep) => tracing::info!(?rep, "gc"),
                    Err(e) => tracing::warn!("gc: {}", e.detail.unwrap_or_default()),
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(&c.listen).await.with_context(|| format!("listen on {}", c.listen))?;
    tracing::info!(listen = %c.listen, tls, driver = %c.storage.driver, auth = %c.auth.mode, "berth-registry ready");
    let router = app(reg);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
    };
    let tls = match (&c.tls.cert, &c.tls.key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    serve(listener, router, tls, shutdown).await;
    Ok(())
}

/// Reloads the policy when its file changes (checked every 2 s) or on SIGHUP; a file that does not
/// parse keeps the policy in force, loudly.
async fn reload_policy(reg: Arc<Registry>, path: PathBuf) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = stamp(&path);
    loop {
        let forced = tokio::select! {
            _ = hup.recv() => true,
            _ = tokio::time::sleep(Duration::from_secs(2)) => false,
        };
        let now = stamp(&path);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        match berth_registry::policy::Policy::load(&path) {
            Ok(p) => {
                reg.auth.set_policy(Some(p));
                tracing::info!(path = %path.display(), "access policy reloaded");
            }
            Err(e) => tracing::error!("access policy not reloaded, the previous one stays: {e:#}"),
        }
    }
}

/// A registry holds a socket per client and a file per upload: take the whole descriptor allowance
/// the hard limit grants, not the 1024 a shell's soft limit leaves.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

/// A client gets this long to send a request's headers, and to finish a TLS handshake: idle or
/// slow connections cannot pile up until the registry runs out of descriptors.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<_, _>>()
        .with_context(|| format!("read {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
        .with_context(|| format!("no private key in {}", key.display()))?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// One accept loop for plain HTTP and TLS: accept errors (EMFILE) back off and never end the
/// server; every connection has a handshake and a header-read deadline.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (tls, router) = (tls.clone(), router.clone().layer(axum::Extension(berth_registry::ClientAddr(peer.ip()))));
        tokio::spawn(async move {
            match tls {
                Some(acc) => {
                    if let Ok(Ok(s)) = tokio::time::timeout(HEADER_TIMEOUT, acc.accept(tcp)).await {
                        serve_conn(s, router).await;
                    }
                }
                None => serve_conn(tcp, router).await,
            }
        });
    }
}

async fn serve_conn<IO>(io: IO, router: axum::Router)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(router);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .await;
}
