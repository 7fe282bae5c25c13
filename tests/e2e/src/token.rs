//! A Docker token server for tests: issues RS256 JWTs (signed with `openssl`) that docker-registry
//! verifies through the `x5c` certificate chain, for one user, with refresh (identity) tokens.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;

pub struct TokenServer {
    pub realm: String,
    pub cert: PathBuf,
    pub issuer: String,
    pub service: String,
    /// Token requests that arrived with a refresh token (identity token flow).
    pub refresh_grants: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: String,
    _dir: tempfile::TempDir,
}

const REFRESH: &str = "berth-test-refresh-token";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::Builder::new().prefix("bt-tok-").tempdir_in("/tmp").expect("tempdir");
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let st = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=berth-token"])
            .args(["-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
            .output()
            .expect("openssl");
        assert!(st.status.success(), "openssl req: {}", String::from_utf8_lossy(&st.stderr));
        let der = Command::new("openssl")
            .args(["x509", "-in", cert.to_str().unwrap(), "-outform", "der"])
            .output()
            .expect("openssl x509")
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        let (issuer, service) = ("berth-test-issuer".to_string(), "berth-test-registry".to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let refresh_grants = Arc::new(AtomicUsize::new(0));
        let creds = format!("{user}:{password}");
        let (s2, g2, iss, svc, key2) =
            (stop.clone(), refresh_grants.clone(), issuer.clone(), service.clone(), key.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut c) = c else { continue };
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                let mut auth = None;
                let mut len = 0usize;
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                    let lower = l.to_lowercase();
                    if lower.starts_with("authorization: basic ") {
                        let raw = l.trim()["authorization: basic ".len()..].to_string();
                        auth = base64::engine::general_purpose::STANDARD
                            .decode(raw.trim())
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok());
                    }
                    if let Some(v) = lower.strip_prefix("content-length: ") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = std::io::Read::read_exact(&mut r, &mut body);
                let query = first.split(' ').nth(1).and_then(|p| p.split_once('?')).map(|(_, q)| q.to_string());
                let params = query.unwrap_or_else(|| String::from_utf8_lossy(&body).to_string());
                let kv: Vec<(String, String)> = params
                    .split('&')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.to_string(), percent_decode(v)))
                    .collect();
                let get = |k: &str| kv.iter().filter(|(x, _)| x == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
                let refreshed = get("refresh_token").first().is_some_and(|t| t == REFRESH);
                if refreshed {
                    g2.fetch_add(1, Ordering::SeqCst);
                }
                let authed = refreshed || auth.as_deref() == Some(creds.as_str());
                if auth.is_some() && !authed {
                    let msg = br#"{"details":"incorrect username or password"}"#;
                    let _ = write!(
                        c,
                        "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        msg.len()
                    );
                    let _ = c.write_all(msg);
                    continue;
                }
                // Anonymous callers get a token with no rights: the registry then says "denied".
                let access: Vec<serde_json::Value> = if authed {
                    get("scope")
                        .iter()
                        .flat_map(|s| s.split(' ').map(String::from).collect::<Vec<_>>())
                        .filter_map(|s| {
                            let parts: Vec<&str> = s.splitn(3, ':').collect();
                            (parts.len() == 3).then(|| {
                                serde_json::json!({"type": parts[0], "name": parts[1],
                                    "actions": parts[2].split(',').collect::<Vec<_>>()})
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
                let claims = serde_json::json!({"iss": iss, "sub": "alice", "aud": svc, "exp": now + 300,
                    "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", rand_id()), "access": access});
                let signing = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
                let sig = sign(&key2, signing.as_bytes());
                let token = format!("{signing}.{}", b64(&sig));
                let mut answer = serde_json::json!({"token": token, "access_token": token, "expires_in": 300});
                if authed && get("offline_token").first().is_some_and(|v| v == "true") {
                    answer["refresh_token"] = REFRESH.into();
                }
                let body = answer.to_string();
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { realm, cert, issuer, service, refresh_grants, stop, addr, _dir: dir }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

fn sign(key: &std::path::Path, data: &[u8]) -> Vec<u8> {
    let mut c = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", key.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl dgst");
    c.stdin.take().unwrap().write_all(data).unwrap();
    c.wait_with_output().unwrap().stdout
}

fn rand_id() -> u64 {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap();
    u64::from_le_bytes(b)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}
