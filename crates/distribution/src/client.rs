//! Endpoints, TLS and the authenticated request loop shared by every registry operation.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_types::{Error, ErrorKind, Result};
use reqwest::header::{HeaderMap, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::auth::{parse_challenge, AuthConfig, Challenge, TokenCache, TokenResponse};

/// Docker Hub: what `docker.io` means on the wire.
pub const DOCKER_HUB_API: &str = "https://registry-1.docker.io";
/// The address Docker's login defaults to.
pub const DOCKER_HUB_INDEX: &str = "https://index.docker.io/v1/";

/// The daemon's registry settings (`insecure-registries`, `registry-mirrors`, certs.d).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryConfig {
    /// `host[:port]` or CIDRs; 127.0.0.0/8 and ::1 are always insecure, as with Docker.
    pub insecure: Vec<String>,
    /// Base URLs tried before Docker Hub for `docker.io` pulls.
    pub mirrors: Vec<String>,
    /// `<dir>/<host[:port]>/{*.crt, *.cert, *.key}`: extra CAs and client certificates per registry.
    pub certs_dir: Option<PathBuf>,
}

/// Shared by every pull and push: HTTP clients per registry host, resolved endpoints, tokens.
pub struct Registries {
    /// Replaced whole on a reload (SIGHUP): readers take a snapshot.
    cfg: std::sync::RwLock<Arc<RegistryConfig>>,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    pub(crate) tokens: TokenCache,
}

/// The registry's JSON error body.
#[derive(Debug, Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A registry answered with an error status.
#[derive(Debug, Clone)]
pub struct RegistryError {
    pub status: StatusCode,
    /// The first error code (`MANIFEST_UNKNOWN`, `DENIED`, ...), empty when the body had none.
    pub code: String,
    /// Docker's rendering: `manifest unknown: manifest unknown`.
    pub message: String,
}

impl RegistryError {
    async fn from_response(resp: Response) -> RegistryError {
        let status = resp.status();
        let body: ErrorBody = resp.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let (code, message) = match body.errors.first() {
            Some(e) => {
                let desc = e.code.to_lowercase().replace('_', " ");
                (e.code.clone(), if e.message.is_empty() { desc } else { format!("{desc}: {}", e.message) })
            }
            None => (String::new(), format!("unexpected status from registry: {status}")),
        };
        RegistryError { status, code, message }
    }

    pub fn into_error(self) -> Error {
        let kind = match self.status {
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => ErrorKind::Forbidden,
            s if s.is_client_error() => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, self.message)
    }

    pub fn is_denied(&self) -> bool {
        matches!(self.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || self.code == "DENIED"
            || self.code == "UNAUTHORIZED"
            || (self.status == StatusCode::NOT_FOUND && self.code == "NAME_UNKNOWN")
    }
}

/// A transport failure, worded like Go's `Get "url": ...`.
pub(crate) fn transport(method: &Method, url: &str, e: reqwest::Error) -> Error {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    let m = method.as_str();
    let verb = format!("{}{}", &m[..1], m[1..].to_lowercase());
    Error::internal(format!("{verb} \"{url}\": {msg}"))
}

fn default_insecure(ip: IpAddr) -> bool {
    ip.is_loopback()
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else { return false };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn host_only(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl Registries {
    pub fn new(cfg: RegistryConfig) -> Registries {
        Registries {
            cfg: std::sync::RwLock::new(Arc::new(cfg)),
            clients: Mutex::new(HashMap::new()),
            tokens: TokenCache::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<RegistryConfig> {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new configuration (daemon.json reloaded): mirrors and insecure registries apply to the
    /// next pull or push; cached clients are dropped (their TLS settings may differ now).
    pub fn set_config(&self, cfg: RegistryConfig) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Whether `host` (`name[:port]`) may be spoken to over plain HTTP or unverified TLS.
    pub async fn is_insecure(&self, host: &str) -> bool {
        let name = host_only(host);
        let cfg = self.config();
        if cfg.insecure.iter().any(|i| i == host || i == name) {
            return true;
        }
        let ips: Vec<IpAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match tokio::net::lookup_host((name, 0)).await {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                Err(_) => Vec::new(),
            },
        };
        ips.iter().any(|ip| default_insecure(*ip) || cfg.insecure.iter().any(|c| in_cidr(*ip, c)))
    }

    fn client(&self, host: &str, insecure: bool) -> Result<reqwest::Client> {
        let key = format!("{host}\n{insecure}");
        if let Some(c) = self.clients.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .danger_accept_invalid_certs(insecure);
        if let Some(dir) = self.config().certs_dir.as_ref().map(|d| d.join(host)).filter(|d| d.is_dir()) {
            b = add_certs(b, &dir)?;
        }
        let c = b.build().map_err(|e| Error::internal(format!("registry client for {host}: {e}")))?;
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).insert(key, c.clone());
        Ok(c)
    }

    /// Endpoint groups to try for a domain, best first: for docker.io pulls each mirror, then Docker
    /// Hub; within a group the entries are the same registry over https, then http when insecure.
    pub async fn endpoint_groups(&self, domain: &str, pull: bool) -> Vec<Vec<(String, String, bool)>> {
        let mut out = Vec::new();
        if domain == berth_types::DEFAULT_DOMAIN {
            if pull {
                for m in &self.config().mirrors {
                    let m = m.trim_end_matches('/').to_string();
                    let host = m.split("://").nth(1).unwrap_or(&m).to_string();
                    let insecure = m.starts_with("http://") || self.is_insecure(&host).await;
                    out.push(vec![(m, host, insecure)]);
                }
            }
            out.push(vec![(DOCKER_HUB_API.to_string(), "registry-1.docker.io".to_string(), false)]);
            return out;
        }
        let insecure = self.is_insecure(domain).await;
        let mut group = vec![(format!("https://{domain}"), domain.to_string(), insecure)];
        if insecure {
            group.push((format!("http://{domain}"), domain.to_string(), true));
        }
        out.push(group);
        out
    }

    /// Finds the endpoint of a group that answers `GET /v2/` and the challenge it sets.
    async fn ping(&self, group: &[(String, String, bool)]) -> Result<(reqwest::Client, String, Option<Challenge>)> {
        let mut last = None;
        for (base, host, insecure) in group {
            let http = self.client(host, *insecure)?;
            let url = format!("{base}/v2/");
            match http.get(&url).send().await {
                Ok(resp) => {
                    let challenge =
                        resp.headers().get(WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).and_then(parse_challenge);
                    if resp.status() == StatusCode::UNAUTHORIZED || resp.status().is_success() {
                        return Ok((http, base.clone(), challenge));
                    }
                    last = Some(Error::internal(format!("Get \"{url}\": unexpected status {}", resp.status())));
                }
                Err(e) => last = Some(transport(&Method::GET, &url, e)),
            }
        }
        Err(last.unwrap_or_else(|| Error::internal("no registry endpoint")))
    }

    /// A session on one repository at one endpoint group, for the actions it needs (`pull`, `pull,push`).
    pub async fn open(
        self: &Arc<Self>,
        group: &[(String, String, bool)],
        name: &str,
        auth: AuthConfig,
        actions: &str,
    ) -> Result<Repository> {
        let (http, base, challenge) = self.ping(group).await?;
        Ok(Repository {
            registries: self.clone(),
            http,
            base,
            name: name.to_string(),
            auth,
            challenge: Mutex::new(challenge),
            scopes: vec![format!("repository:{name}:{actions}")],
        })
    }

    /// A session at the registry itself (no mirrors): pushes, inspection.
    pub async fn repository(
        self: &Arc<Self>,
        domain: &str,
        name: &str,
        auth: AuthConfig,
        actions: &str,
    ) -> Result<Repository> {
        let groups = self.endpoint_groups(domain, false).await;
        self.open(groups.last().map(Vec::as_slice).unwrap_or(&[]), name, auth, actions).await
    }

    /// `docker login`: checks the credentials against the registry. Returns an identity token when
    /// the token server issued a refresh token.
    pub async fn login(self: &Arc<Self>, auth: &AuthConfig) -> Result<String> {
        let addr = auth.server_address.trim();
        let domain = if addr.is_empty() || addr.contains("index.docker.io") || addr.contains("registry-1.docker.io") {
            berth_types::DEFAULT_DOMAIN.to_string()
        } else {
            let a = addr.split("://").nth(1).unwrap_or(addr);
            a.split('/').next().unwrap_or(a).to_string()
        };
        let groups = self.endpoint_groups(&domain, false).await;
        let (http, base, challenge) = self.ping(groups.last().map(Vec::as_slice).unwrap_or(&[])).await?;
        let url = format!("{base}/v2/");
        let failed = |s: StatusCode| {
            Error::unauthorized(format!(
                "login attempt to {url} failed with status: {} {}",
                s.as_u16(),
                s.canonical_reason().unwrap_or("")
            ))
        };
        match challenge {
            None => Ok(String::new()),
            Some(Challenge::Basic) => {
                let resp = http
                    .get(&url)
                    .basic_auth(&auth.username, Some(&auth.password))
                    .send()
                    .await
                    .map_err(|e| transport(&Method::GET, &url, e))?;
                if resp.status().is_success() {
                    Ok(String::new())
                } else {
                    Err(failed(resp.status()))
                }
            }
            Some(Challenge::Bearer { realm, service }) => {
                let t = fetch_token(&http, &realm, &service, &[], auth, true).await.map_err(|e| {
                    if e.kind == ErrorKind::Unauthorized {
                        Error::unauthorized(format!("Get \"{url}\": unauthorized: {}", e.message))
                    } else {
                        e
                    }
                })?;
                Ok(t.refresh_token)
            }
        }
    }
}

fn add_certs(mut b: reqwest::ClientBuilder, dir: &std::path::Path) -> Result<reqwest::ClientBuilder> {
    let bad = |p: &std::path::Path, e: &dyn std::fmt::Display| Error::invalid(format!("{}: {e}", p.display()));
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    names.sort();
    for p in &names {
        match p.extension().and_then(|e| e.to_str()) {
            Some("crt") => {
                let pem = std::fs::read(p)?;
                for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(p, &e))? {
                    b = b.add_root_certificate(c);
                }
            }
            Some("cert") => {
                let key = p.with_extension("key");
                let mut pem = std::fs::read(p)?;
                pem.extend(std::fs::read(&key).map_err(|e| bad(&key, &format!("missing key certificate: {e}")))?);
                b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| bad(p, &e))?);
            }
            _ => {}
        }
    }
    Ok(b)
}

/// Asks a token server for a bearer token (Docker's flows: refresh-token POST, credentials GET, anonymous GET).
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    realm: &str,
    service: &str,
    scopes: &[String],
    auth: &AuthConfig,
    offline: bool,
) -> Result<TokenResponse> {
    let mut q: Vec<(&str, &str)> = vec![("service", service)];
    q.extend(scopes.iter().map(|s| ("scope", s.as_str())));
    let req = if !auth.identity_token.is_empty() {
        let mut form = q.clone();
        form.extend([
            ("grant_type", "refresh_token"),
            ("refresh_token", auth.identity_token.as_str()),
            ("client_id", "docker"),
        ]);
        http.post(realm).form(&form)
    } else {
        let mut rb = http.get(realm);
        if !auth.username.is_empty() {
            q.push(("account", &auth.username));
            if offline {
                q.extend([("offline_token", "true"), ("client_id", "docker")]);
            }
            rb = rb.basic_auth(&auth.username, Some(&auth.password));
        }
        rb.query(&q)
    };
    let resp = req.send().await.map_err(|e| transport(&Method::GET, realm, e))?;
    let status = resp.status();
    if !status.is_success() {
        let e = RegistryError::from_response(resp).await;
        let msg = if e.code.is_empty() { "incorrect username or password".to_string() } else { e.message };
        return Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::unauthorized(msg),
            _ => Error::internal(format!("token server {realm}: {status}: {msg}")),
        });
    }
    let t: TokenResponse =
        resp.json().await.map_err(|e| Error::internal(format!("token server {realm}: invalid answer: {e}")))?;
    if t.bearer().is_empty() {
        return Err(Error::internal(format!("token server {realm} answered without a token")));
    }
    Ok(t)
}

/// One repository on one registry, with its credentials and the actions it was opened for.
pub struct Repository {
    registries: Arc<Registries>,
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) name: String,
    auth: AuthConfig,
    challenge: Mutex<Option<Challenge>>,
    scopes: Vec<String>,
}

impl Repository {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.name)
    }

    /// The `Authorization` header for `extra` scopes on top of the session's.
    async fn authorization(&self, extra: &[String]) -> Result<Option<String>> {
        let challenge = self.challenge.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => {
                if self.auth.username.is_empty() {
                    return Ok(None);
                }
                use base64::Engine as _;
                let raw = format!("{}:{}", self.auth.username, self.auth.password);
                Ok(Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))))
            }
            Some(Challenge::Bearer { realm, service }) => {
                if !self.auth.registry_token.is_empty() {
                    return Ok(Some(format!("Bearer {}", self.auth.registry_token)));
                }
                let mut scopes = self.scopes.clone();
                scopes.extend(extra.iter().cloned());
                let key = TokenCache::key(&realm, &service, &scopes.join(" "), &self.auth.username);
                if let Some(t) = self.registries.tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let t = fetch_token(&self.http, &realm, &service, &scopes, &self.auth, false).await?;
                let bearer = t.bearer().to_string();
                self.registries.tokens.put(key, bearer.clone(), t.expires_in);
                Ok(Some(format!("Bearer {bearer}")))
            }
        }
    }

    /// Sends a request built by `build`, authorised; on a 401 with a new challenge, retries once.
    /// Bodies that cannot be rebuilt (streams) must go through an endpoint that was authorised before.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        extra_scopes: &[String],
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        for attempt in 0..2 {
            let mut rb = build(self.http.request(method.clone(), url));
            if let Some(a) = self.authorization(extra_scopes).await? {
                rb = rb.header(AUTHORIZATION, a);
            }
            let resp = rb.send().await.map_err(|e| transport(&method, url, e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let fresh = challenge_of(resp.headers());
                let mut cur = self.challenge.lock().unwrap_or_else(|e| e.into_inner());
                if fresh.is_some() && *cur != fresh {
                    *cur = fresh;
                    continue;
                }
                // The same challenge: a cached token the registry no longer honours (its policy
                // changed) is dropped, and a fresh one asked for once.
                if let Some(Challenge::Bearer { realm, service }) = cur.clone() {
                    let mut scopes = self.scopes.clone();
                    scopes.extend(extra_scopes.iter().cloned());
                    let key = TokenCache::key(&realm, &service, &scopes.join(" "), &self.auth.username);
                    if self.registries.tokens.get(&key).is_some() {
                        self.registries.tokens.remove(&key);
                        continue;
                    }
                }
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Sends and turns an error status into a `RegistryError`.
    pub(crate) async fn send_ok(
        &self,
        method: Method,
        url: &str,
        extra_scopes: &[String],
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> std::result::Result<Response, Failure> {
        let resp = self.send(method, url, extra_scopes, build).await.map_err(Failure::Transport)?;
        if resp.status().is_success() || resp.status() == StatusCode::PARTIAL_CONTENT {
            return Ok(resp);
        }
        Err(Failure::Registry(RegistryError::from_response(resp).await))
    }
}

fn challenge_of(h: &HeaderMap) -> Option<Challenge> {
    h.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge)
}

/// Why a registry call failed: the registry said no, or we never got an answer.
#[derive(Debug, Clone)]
pub enum Failure {
    Registry(RegistryError),
    Transport(Error),
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        match f {
            Failure::Registry(r) => r.into_error(),
            Failure::Transport(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_hosts() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(in_cidr(ip, "10.0.0.0/8"));
        assert!(!in_cidr(ip, "10.1.3.0/24"));
        assert!(in_cidr("::1".parse().unwrap(), "::1/128"));
        assert_eq!(host_only("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(host_only("[::1]:5000"), "::1");
        assert_eq!(host_only("registry.example"), "registry.example");
    }

    #[tokio::test]
    async fn loopback_is_insecure_by_default() {
        let r = Registries::new(RegistryConfig { insecure: vec!["10.9.0.0/16".into()], ..Default::default() });
        assert!(r.is_insecure("127.0.0.1:5000").await);
        assert!(r.is_insecure("localhost:5000").await);
        assert!(r.is_insecure("10.9.1.1:443").await);
        assert!(!r.is_insecure("10.8.1.1").await);
    }
}
