//! How the client reaches a daemon: a UNIX socket, TCP, TCP with (mutual) TLS, or `ssh://` running
//! `berth system dial-stdio` on the remote side, as the docker CLI does with `docker system dial-stdio`.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TLS settings for a TCP endpoint (`--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Verify the daemon's certificate against `ca` (`--tlsverify`); `--tls` alone does not.
    pub verify: bool,
}

/// A daemon address with the TLS it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub tls: Option<Tls>,
}

impl Endpoint {
    pub fn plain(host: &str) -> Endpoint {
        Endpoint { host: host.to_string(), tls: None }
    }
}

#[derive(Clone)]
pub(crate) enum Transport {
    Unix(PathBuf),
    Tcp(String),
    Tls { addr: String, name: rustls::pki_types::ServerName<'static>, cfg: Arc<rustls::ClientConfig> },
    Ssh { target: String, port: Option<String> },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Unix(p) => write!(f, "unix://{}", p.display()),
            Transport::Tcp(a) => write!(f, "tcp://{a}"),
            Transport::Tls { addr, .. } => write!(f, "tcp://{addr} (TLS)"),
            Transport::Ssh { target, .. } => write!(f, "ssh://{target}"),
        }
    }
}

impl Transport {
    pub(crate) fn new(ep: &Endpoint) -> Result<Transport> {
        let host = ep.host.as_str();
        if let Some(p) = host.strip_prefix("unix://") {
            return Ok(Transport::Unix(PathBuf::from(p)));
        }
        if let Some(rest) = host.strip_prefix("ssh://") {
            let rest = rest.trim_end_matches('/');
            if rest.is_empty() {
                bail!("invalid ssh URL {host:?}: no host");
            }
            let (target, port) = match rest.rsplit_once(':') {
                Some((t, p)) if p.chars().all(|c| c.is_ascii_digit()) => (t.to_string(), Some(p.to_string())),
                _ => (rest.to_string(), None),
            };
            return Ok(Transport::Ssh { target, port });
        }
        let Some(addr) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("https://")) else {
            bail!("unsupported host {host:?}: use unix:///path, tcp://host:port or ssh://user@host")
        };
        let addr = addr.trim_end_matches('/');
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:{}", if ep.tls.is_some() { 2376 } else { 2375 })
        };
        let Some(tls) = &ep.tls else { return Ok(Transport::Tcp(addr)) };
        let hostname = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&addr).trim_matches(['[', ']']);
        let name = rustls::pki_types::ServerName::try_from(hostname.to_string())
            .map_err(|_| anyhow!("invalid TLS server name {hostname:?}"))?;
        Ok(Transport::Tls { addr, name, cfg: Arc::new(client_config(tls)?) })
    }

    pub(crate) async fn connect(&self) -> Result<Box<dyn Io>> {
        Ok(match self {
            Transport::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await.with_context(|| {
                format!("Cannot connect to the Docker daemon at unix://{}. Is the docker daemon running?", p.display())
            })?),
            Transport::Tcp(a) => Box::new(tcp(a).await?),
            Transport::Tls { addr, name, cfg } => {
                let s = tcp(addr).await?;
                let conn = tokio_rustls::TlsConnector::from(cfg.clone());
                Box::new(conn.connect(name.clone(), s).await.with_context(|| format!("TLS handshake with {addr}"))?)
            }
            Transport::Ssh { target, port } => Box::new(SshStream::spawn(target, port.as_deref())?),
        })
    }
}

async fn tcp(a: &str) -> Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpStream::connect(a)
        .await
        .with_context(|| format!("Cannot connect to the Docker daemon at tcp://{a}. Is the docker daemon running?"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn read_pem(p: &PathBuf) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let f = std::fs::File::open(p).with_context(|| format!("could not read CA certificate {:?}", p.display()))?;
    rustls_pemfile::certs(&mut std::io::BufReader::new(f))
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in {}", p.display()))
}

fn client_config(t: &Tls) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let b = if t.verify {
        let ca = t.ca.as_ref().ok_or_else(|| anyhow!("--tlsverify needs a CA certificate (--tlscacert)"))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in read_pem(ca)? {
            roots.add(c)?;
        }
        b.with_root_certificates(roots)
    } else {
        b.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            let certs = read_pem(cert)?;
            let f = std::fs::File::open(key).with_context(|| format!("could not read key {:?}", key.display()))?;
            let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(f))?
                .ok_or_else(|| anyhow!("no private key in {}", key.display()))?;
            Ok(b.with_client_auth_cert(certs, key)?)
        }
        _ => Ok(b.with_no_client_auth()),
    }
}

/// `--tls` without `--tlsverify`: encrypt but accept any daemon certificate, as docker does.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One connection over ssh: the remote `berth system dial-stdio` joins our pipes to its daemon.
struct SshStream {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
}

impl SshStream {
    fn spawn(target: &str, port: Option<&str>) -> Result<SshStream> {
        let ssh = std::env::var("BERTH_SSH").unwrap_or_else(|_| "ssh".into());
        let mut cmd = tokio::process::Command::new(&ssh);
        cmd.args(["-o", "ConnectTimeout=30", "-T"]);
        if let Some(p) = port {
            cmd.args(["-p", p]);
        }
        cmd.args(["--", target, "berth", "system", "dial-stdio"]);
        cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("run {ssh} for ssh://{target}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        Ok(SshStream { _child: child, stdin, stdout })
    }
}

impl AsyncRead for SshStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

/// `berth system dial-stdio`: joins stdin/stdout to the daemon's socket, half-closing as each side ends.
pub async fn dial_stdio(ep: &Endpoint) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let conn = Transport::new(ep)?.connect().await?;
    let (mut rd, mut wr) = tokio::io::split(conn);
    let up = async {
        tokio::io::copy(&mut tokio::io::stdin(), &mut wr).await?;
        wr.shutdown().await
    };
    let down = async {
        let mut out = tokio::io::stdout();
        tokio::io::copy(&mut rd, &mut out).await?;
        out.flush().await
    };
    // The daemon closing its side ends the session even if our stdin stays open (docker does the same).
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut down => r?,
        r = &mut up => {
            r?;
            down.await?;
        }
    }
    Ok(())
}
