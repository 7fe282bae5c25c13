//! Debian's `docker-registry` (the reference distribution server) on a loopback port of its own,
//! a fault-injecting proxy in front of it, and a raw HTTP helper to talk to either.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the registry authenticates.
pub enum Auth {
    None,
    /// htpasswd basic auth with one user.
    Basic {
        user: String,
        password: String,
    },
    /// Bearer tokens from `realm`, verified against the certificate bundle at `cert`.
    Token {
        realm: String,
        issuer: String,
        service: String,
        cert: PathBuf,
    },
}

pub struct Registry {
    /// `127.0.0.1:<port>`
    pub addr: String,
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// `sha256:<hex>` of some bytes, as registries name content.
pub fn digest_of(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// Writes an htpasswd file with one bcrypt user into `dir`; returns its path.
pub fn htpasswd(dir: &std::path::Path, user: &str, password: &str) -> PathBuf {
    let p = dir.join("htpasswd");
    std::fs::write(&p, format!("{user}:{}\n", bcrypt::hash(password, 5).expect("bcrypt"))).expect("htpasswd");
    p
}

/// Busybox imported into `d` and pushed to `registry` as `<registry>/<repo>:1`; returns that reference.
pub fn seed(d: &crate::Berthd, registry: &str, repo: &str) -> String {
    d.import_busybox("bb-seed");
    let r = format!("{registry}/{repo}:1");
    d.ok(&["tag", "bb-seed", &r]);
    d.ok(&["push", &r]);
    r
}

pub use crate::free_port;

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        let dir = tempfile::Builder::new().prefix("bt-reg-").tempdir_in("/tmp").expect("tempdir");
        let root = dir.path().to_path_buf();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Basic { user, password } => {
                let file = htpasswd(&root, user, password);
                format!("auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n", file.display())
            }
            Auth::Token { realm, issuer, service, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: berth-test\n{auth_yaml}",
            root.join("data").display()
        );
        std::fs::write(root.join("config.yml"), config).expect("config");
        let log = std::fs::File::create(root.join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .args(["serve", root.join("config.yml").to_str().unwrap()])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn docker-registry (apt-get install docker-registry)");
        let mut r = Registry { addr, root, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http(&r.addr, "GET", "/v2/", &[], b"").is_ok() {
                return r;
            }
            if let Ok(Some(st)) = r.child.try_wait() {
                panic!("docker-registry exited ({st}): {}", r.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not listen: {}", r.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange (`Connection: close`): status, headers (lowercased names), body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // A server may answer before it read the whole body (a size limit): read its answer anyway.
    if let Err(e) = s.write_all(body) {
        if !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
            return Err(e);
        }
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let hdrs: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if hdrs.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok((status, hdrs, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    out
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// What the proxy does to the first large blob body it relays.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// Relays faithfully (counts only).
    None,
    /// Sends half the body, then closes the connection.
    DropMidBody,
    /// Answers 500 instead.
    Status500,
    /// Flips one byte.
    Corrupt,
    /// Makes the first deflate block's type the reserved one (a gzip blob with no optional header
    /// fields): every inflater stops at once, before the blob's digest can be known.
    CorruptDeflate,
    /// Sends half the body, waits 3 s, then the rest.
    Stall,
    /// Sends the blob followed by 256 MiB of zeros (all declared in `Content-Length`).
    Oversize,
}

/// A proxy to a registry that spoils the first blob download larger than 16 KiB, then behaves.
pub struct FaultProxy {
    pub addr: String,
    /// Requests that carried a `Range` header.
    pub ranges: Arc<AtomicUsize>,
    /// GETs of blobs larger than 16 KiB (layers).
    pub layer_gets: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: &str, fault: Fault) -> FaultProxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let ranges = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fired = Arc::new(AtomicUsize::new(0));
        let layer_gets = fired.clone();
        let (up, r2, s2) = (upstream.to_string(), ranges.clone(), stop.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = c else { continue };
                let (up, r2, fired) = (up.clone(), r2.clone(), fired.clone());
                std::thread::spawn(move || {
                    let _ = relay(c, &up, fault, &r2, &fired);
                });
            }
        });
        FaultProxy { addr, ranges, layer_gets, stop }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Relays requests of one client connection, one upstream connection each.
fn relay(
    mut c: TcpStream,
    upstream: &str,
    fault: Fault,
    ranges: &AtomicUsize,
    fired: &AtomicUsize,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    loop {
        // Request head, then a Content-Length body (pulls send none).
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if c.read(&mut byte)? == 0 {
                return Ok(());
            }
            // A TLS ClientHello (the client trying https first): hang up as a plain-HTTP server would.
            if head.is_empty() && !byte[0].is_ascii_uppercase() {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let len: usize = text
            .lines()
            .find_map(|l| l.to_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        c.read_exact(&mut body)?;
        if text.lines().any(|l| l.to_lowercase().starts_with("range:")) {
            ranges.fetch_add(1, Ordering::SeqCst);
        }
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").to_string();
        let hdrs: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .filter(|(k, _)| !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("host"))
            .collect();
        let mut parts = first.split(' ');
        let (method, path) = (parts.next().unwrap_or("GET").to_string(), parts.next().unwrap_or("/").to_string());
        let hrefs: Vec<(&str, &str)> = hdrs
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, rh, mut rb) = http(upstream, &method, &path, &hrefs, &body)?;
        let is_blob = method == "GET" && path.contains("/blobs/sha256:") && rb.len() > 16 * 1024;
        let spoil = is_blob && fired.fetch_add(1, Ordering::SeqCst) == 0 && fault != Fault::None;
        if spoil && fault == Fault::Status500 {
            let msg = br#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#;
            write!(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", msg.len())?;
            c.write_all(msg)?;
            return Ok(());
        }
        if spoil && fault == Fault::Corrupt {
            let i = rb.len() / 2;
            rb[i] ^= 0xff;
        }
        if spoil && fault == Fault::CorruptDeflate {
            assert_eq!((rb[0], rb[1], rb[3]), (0x1f, 0x8b, 0), "not a plain gzip blob");
            rb[10] |= 0b110;
        }
        let reason = match status {
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            206 => "Partial Content",
            401 => "Unauthorized",
            404 => "Not Found",
            _ => "Status",
        };
        let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
        for (k, v) in &rh {
            if k != "content-length" && k != "connection" && k != "transfer-encoding" {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        const EXTRA: usize = 256 << 20;
        let declared = if method == "HEAD" {
            header(&rh, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0)
        } else if spoil && fault == Fault::Oversize {
            rb.len() + EXTRA
        } else {
            rb.len()
        };
        out.push_str(&format!("Content-Length: {declared}\r\nConnection: keep-alive\r\n\r\n"));
        c.write_all(out.as_bytes())?;
        if method == "HEAD" {
            continue;
        }
        if spoil && fault == Fault::Stall {
            c.write_all(&rb[..rb.len() / 2])?;
            c.flush()?;
            std::thread::sleep(Duration::from_secs(3));
            c.write_all(&rb[rb.len() / 2..])?;
            continue;
        }
        if spoil && fault == Fault::Oversize {
            c.write_all(&rb)?;
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..EXTRA / zeros.len() {
                c.write_all(&zeros)?; // ends with an error once the client hangs up
            }
            continue;
        }
        if spoil && fault == Fault::DropMidBody {
            c.write_all(&rb[..rb.len() / 2])?;
            c.flush()?;
            return Ok(());
        }
        c.write_all(&rb)?;
    }
}

/// A `berth-registry` on a loopback port and temp root of its own.
pub struct BerthRegistry {
    pub addr: String,
    pub root: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl BerthRegistry {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> BerthRegistry {
        let dir = tempfile::Builder::new().prefix("bt-breg-").tempdir_in("/tmp").expect("tempdir");
        let root = dir.path().to_path_buf();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut r = BerthRegistry {
            addr,
            root,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            _dir: dir,
        };
        r.spawn();
        r
    }

    /// Another process over the same storage (a replica) on its own port.
    pub fn replica(&self) -> BerthRegistry {
        let dir = tempfile::Builder::new().prefix("bt-breg-").tempdir_in("/tmp").expect("tempdir");
        let mut r = BerthRegistry {
            addr: format!("127.0.0.1:{}", free_port()),
            root: self.root.clone(),
            child: None,
            args: self.args.clone(),
            env: self.env.clone(),
            _dir: dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._dir.path().join("registry.log"))
            .expect("log");
        let child = Command::new(crate::bin_dir().join("berth-registry"))
            .args(["--listen", &self.addr, "--root", self.root.join("data").to_str().unwrap()])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn berth-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // A TCP connect, not an HTTP request: the registry may speak TLS only.
            if TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("berth-registry exited ({st}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("berth-registry did not listen: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for BerthRegistry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A failing test shows whether the registry was still up, and what it said.
            if std::thread::panicking() {
                eprintln!("--- berth-registry {} (exit: {:?}) ---\n{}", self.addr, c.try_wait(), self.log());
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// moto's S3 server on a free loopback port with one bucket (`berth`); killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (scripts/deps.sh installs it)");
        let m = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = format!("127.0.0.1:{port}");
        while !http(&addr, "PUT", "/berth", &[], b"").is_ok_and(|r| r.0 == 200) {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    /// The environment that points a berth-registry at this bucket.
    pub fn registry_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BERTH_REGISTRY_STORAGE_DRIVER", "s3".into()),
            ("BERTH_REGISTRY_STORAGE_S3_BUCKET", "berth".into()),
            ("BERTH_REGISTRY_STORAGE_S3_ENDPOINT", self.endpoint.clone()),
            ("BERTH_REGISTRY_STORAGE_S3_ACCESS_KEY", "test".into()),
            ("BERTH_REGISTRY_STORAGE_S3_SECRET_KEY", "test".into()),
            ("BERTH_REGISTRY_STORAGE_S3_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first error code of a distribution error body (empty when there is none).
pub fn code(r: &Reply) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.2).unwrap_or_default();
    v["errors"][0]["code"].as_str().unwrap_or("").to_string()
}

/// Location headers are absolute paths here; keep path and query.
pub fn path_of(loc: &str) -> String {
    match loc.split_once("://") {
        Some((_, rest)) => rest[rest.find('/').unwrap()..].to_string(),
        None => loc.to_string(),
    }
}

pub fn upload(addr: &str, repo: &str, data: &[u8]) -> String {
    let d = digest_of(data);
    let r = http(addr, "POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[], data).unwrap();
    assert_eq!(r.0, 201, "monolithic upload: {}", String::from_utf8_lossy(&r.2));
    d
}

pub fn put_manifest(addr: &str, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Reply {
    http(addr, "PUT", &format!("/v2/{repo}/manifests/{reference}"), &[("Content-Type", media_type)], body).unwrap()
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub fn image_manifest(config: &str, config_len: usize, layer: &str, layer_len: usize) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_len}],
    })
}

/// Makes `<repo>:<tag>` a two-platform index from the image `<repo>:1` (linux/amd64): that image,
/// and an "arm64" twin of it (the same layers under a config that says linux/arm64/v8). Returns
/// the index's digest.
pub fn push_two_platforms(addr: &str, repo: &str, tag: &str) -> String {
    const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    let (st, h, manifest) =
        http(addr, "GET", &format!("/v2/{repo}/manifests/1"), &[("Accept", DOCKER_V2)], b"").unwrap();
    assert_eq!(st, 200);
    let amd_digest = header(&h, "docker-content-digest").unwrap().to_string();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let cfg_digest = m["config"]["digest"].as_str().unwrap();
    let (_, _, cfg) = http(addr, "GET", &format!("/v2/{repo}/blobs/{cfg_digest}"), &[], b"").unwrap();
    let mut arm_cfg: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    arm_cfg["architecture"] = "arm64".into();
    arm_cfg["variant"] = "v8".into();
    let arm_cfg = serde_json::to_vec(&arm_cfg).unwrap();
    // Debian's docker-registry takes no single-POST upload: open a session, then PUT.
    let arm_cfg_digest = digest_of(&arm_cfg);
    let (st, h, _) = http(addr, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"").unwrap();
    assert_eq!(st, 202);
    let loc = path_of(header(&h, "location").unwrap());
    let sep = if loc.contains('?') { '&' } else { '?' };
    let (st, _, _) = http(addr, "PUT", &format!("{loc}{sep}digest={arm_cfg_digest}"), &[], &arm_cfg).unwrap();
    assert_eq!(st, 201);
    let mut arm = m.clone();
    arm["config"]["digest"] = arm_cfg_digest.clone().into();
    arm["config"]["size"] = arm_cfg.len().into();
    let arm = serde_json::to_vec(&arm).unwrap();
    let (st, h, _) = put_manifest(addr, repo, "arm", DOCKER_V2, &arm);
    assert_eq!(st, 201);
    let arm_digest = header(&h, "docker-content-digest").unwrap().to_string();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {"mediaType": DOCKER_V2, "digest": arm_digest, "size": arm.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": DOCKER_V2, "digest": amd_digest, "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    });
    let (st, h, body) = put_manifest(addr, repo, tag, DOCKER_LIST, &serde_json::to_vec(&index).unwrap());
    assert_eq!(st, 201, "index refused: {}", String::from_utf8_lossy(&body));
    header(&h, "docker-content-digest").unwrap().to_string()
}
