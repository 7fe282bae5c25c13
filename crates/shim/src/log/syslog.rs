//! The syslog driver: each line a syslog message, over a unix socket (datagram or stream), UDP,
//! TCP or TCP with TLS, in Docker's formats: its default (RFC 3164 without a hostname, as the
//! local syslog daemon takes it), `rfc3164`, `rfc5424` and `rfc5424micro`. Facility from
//! `syslog-facility` (default daemon); stdout is severity info, stderr err.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::shim::ShimConfig;

/// How long a connect or a write may take before the message is dropped (the container's output
/// must not stall behind a dead log server for long).
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq)]
enum Target {
    Unix(String),
    Unixgram(String),
    Udp(String),
    Tcp(String),
    Tls(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Default,
    Rfc3164,
    Rfc5424,
    Rfc5424Micro,
}

enum Conn {
    Gram(UnixDatagram),
    Stream(UnixStream),
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

pub struct Syslog {
    target: Target,
    format: Format,
    facility: u8,
    tag: String,
    hostname: String,
    pid: u32,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Conn>,
    lost: u64,
}

/// `syslog-address`: `unix:///dev/log`, `unixgram:///path`, `udp://host[:514]`,
/// `tcp://host[:514]`, `tcp+tls://host[:514]`; empty is the local daemon's /dev/log.
fn parse_target(a: &str) -> Result<Target, String> {
    if a.is_empty() {
        return Ok(Target::Unixgram("/dev/log".into()));
    }
    let (scheme, rest) = a.split_once("://").ok_or_else(|| format!("syslog-address {a:?}: no scheme"))?;
    let hostport = |r: &str| {
        if r.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            r.to_string()
        } else {
            format!("{r}:514")
        }
    };
    match scheme {
        "unix" => Ok(Target::Unix(rest.to_string())),
        "unixgram" => Ok(Target::Unixgram(rest.to_string())),
        "udp" => Ok(Target::Udp(hostport(rest))),
        "tcp" => Ok(Target::Tcp(hostport(rest))),
        "tcp+tls" => Ok(Target::Tls(hostport(rest))),
        other => Err(format!("unsupported scheme: '{other}'")),
    }
}

/// syslog facility names to numbers (RFC 5424 table).
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "", "",
        "", "", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ];
    if name.is_empty() {
        return Some(3);
    }
    if let Ok(n) = name.parse::<u8>() {
        return (n < 24).then_some(n);
    }
    NAMES.iter().position(|n| !n.is_empty() && *n == name).map(|i| i as u8)
}

fn tls_config(opts: &std::collections::BTreeMap<String, String>) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let pem = |k: &str| -> Result<Option<Vec<u8>>, String> {
        opts.get(k).map(|p| std::fs::read(p).map_err(|e| format!("{k} {p}: {e}"))).transpose()
    };
    let builder = if opts.get("syslog-tls-skip-verify").is_some_and(|v| v == "true") {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match pem("syslog-tls-ca-cert")? {
            Some(ca) => {
                for c in rustls_pemfile::certs(&mut ca.as_slice()) {
                    roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let cfg = match (pem("syslog-tls-cert")?, pem("syslog-tls-key")?) {
        (Some(cert), Some(key)) => {
            let certs = rustls_pemfile::certs(&mut cert.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = rustls_pemfile::private_key(&mut key.as_slice())
                .map_err(|e| e.to_string())?
                .ok_or("syslog-tls-key: no private key")?;
            builder.with_client_auth_cert(certs, key).map_err(|e| e.to_string())?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("syslog-tls-cert and syslog-tls-key go together".into()),
    };
    Ok(Arc::new(cfg))
}

/// `syslog-tls-skip-verify=true`: the server is not authenticated (signatures still checked).
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
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connect_tcp(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other(format!("{addr}: no address"));
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, TIMEOUT) {
            Ok(s) => {
                s.set_write_timeout(Some(TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Syslog {
    pub fn new(cfg: &ShimConfig) -> Result<Syslog, String> {
        let opt = |k: &str| cfg.log_opts.get(k).map(String::as_str).unwrap_or("");
        let target = parse_target(opt("syslog-address"))?;
        let format = match opt("syslog-format") {
            "" => Format::Default,
            "rfc3164" => Format::Rfc3164,
            "rfc5424" => Format::Rfc5424,
            "rfc5424micro" => Format::Rfc5424Micro,
            f => return Err(format!("unknown syslog format: {f}")),
        };
        let facility = facility(opt("syslog-facility")).ok_or("invalid syslog facility")?;
        let tls = matches!(target, Target::Tls(_)).then(|| tls_config(&cfg.log_opts)).transpose()?;
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
        let mut s = Syslog {
            target,
            format,
            facility,
            tag: cfg.log_tag.clone(),
            hostname,
            pid: std::process::id(),
            tls,
            conn: None,
            lost: 0,
        };
        // Connect now so a wrong address shows at once in the shim's log; retried per message.
        if let Err(e) = s.connect() {
            eprintln!("berth-shim {}: syslog {:?}: {e}", cfg.id, s.target);
        }
        Ok(s)
    }

    fn connect(&mut self) -> std::io::Result<()> {
        let conn = match &self.target {
            Target::Unixgram(p) => {
                let s = UnixDatagram::unbound()?;
                s.connect(p)?;
                Conn::Gram(s)
            }
            Target::Unix(p) => match UnixDatagram::unbound().and_then(|s| s.connect(p).map(|_| s)) {
                // Docker's `unix://` tries a datagram socket, then a stream one.
                Ok(s) => Conn::Gram(s),
                Err(_) => {
                    let s = UnixStream::connect(p)?;
                    s.set_write_timeout(Some(TIMEOUT))?;
                    Conn::Stream(s)
                }
            },
            Target::Udp(a) => {
                let s = UdpSocket::bind(if a.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })?;
                s.connect(a)?;
                Conn::Udp(s)
            }
            Target::Tcp(a) => Conn::Tcp(connect_tcp(a)?),
            Target::Tls(a) => {
                let host = a.rsplit_once(':').map(|x| x.0).unwrap_or(a).trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let cfg = self.tls.clone().ok_or_else(|| std::io::Error::other("no TLS configuration"))?;
                let c = rustls::ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
                Conn::Tls(Box::new(rustls::StreamOwned::new(c, connect_tcp(a)?)))
            }
        };
        self.conn = Some(conn);
        Ok(())
    }

    /// The message as the format has it.
    fn message(&self, stream: usize, text: &[u8]) -> Vec<u8> {
        let pri = self.facility as u32 * 8 + if stream == 0 { 6 } else { 3 };
        let now = chrono::Local::now();
        let text = String::from_utf8_lossy(text);
        let (tag, pid, host) = (&self.tag, self.pid, &self.hostname);
        let line = match self.format {
            Format::Default => format!("<{pri}>{} {tag}[{pid}]: {text}", now.format("%b %e %H:%M:%S")),
            Format::Rfc3164 => format!("<{pri}>{} {host} {tag}[{pid}]: {text}", now.format("%b %e %H:%M:%S")),
            Format::Rfc5424 => {
                format!("<{pri}>1 {} {host} {tag} {pid} {tag} - {text}", now.format("%Y-%m-%dT%H:%M:%S%:z"))
            }
            Format::Rfc5424Micro => {
                format!("<{pri}>1 {} {host} {tag} {pid} {tag} - {text}", now.format("%Y-%m-%dT%H:%M:%S%.6f%:z"))
            }
        };
        line.into_bytes()
    }

    fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        let rfc5424 = matches!(self.format, Format::Rfc5424 | Format::Rfc5424Micro);
        match self.conn.as_mut().ok_or_else(|| std::io::Error::other("not connected"))? {
            Conn::Gram(s) => s.send(msg).map(|_| ()),
            Conn::Udp(s) => s.send(msg).map(|_| ()),
            // Streams: a newline ends each message; over TLS, RFC 5425's octet counting for RFC 5424.
            Conn::Stream(s) => s.write_all(&[msg, b"\n"].concat()),
            Conn::Tcp(s) => s.write_all(&[msg, b"\n"].concat()),
            Conn::Tls(s) if rfc5424 => {
                s.write_all(&[format!("{} ", msg.len()).as_bytes(), msg].concat()).and_then(|_| s.flush())
            }
            Conn::Tls(s) => s.write_all(&[msg, b"\n"].concat()).and_then(|_| s.flush()),
        }
    }

    pub fn entry(&mut self, stream: usize, text: &[u8]) {
        let msg = self.message(stream, text);
        if self.conn.is_none() || self.send(&msg).is_err() {
            // One reconnect per message: a restarted log server picks up again.
            self.conn = None;
            let again = self.connect().and_then(|_| self.send(&msg));
            if let Err(e) = again {
                if self.lost == 0 {
                    eprintln!("berth-shim: syslog {:?}: {e}", self.target);
                }
                self.lost += 1;
                self.conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_facilities() {
        assert_eq!(parse_target("udp://127.0.0.1").unwrap(), Target::Udp("127.0.0.1:514".into()));
        assert_eq!(parse_target("tcp://h:601").unwrap(), Target::Tcp("h:601".into()));
        assert_eq!(parse_target("unix:///dev/log").unwrap(), Target::Unix("/dev/log".into()));
        assert!(parse_target("http://x").is_err());
        assert_eq!(
            (facility("daemon"), facility("local7"), facility(""), facility("nope")),
            (Some(3), Some(23), Some(3), None)
        );
    }
}
