//! Who may do what: no auth, htpasswd basic auth (bcrypt), or bearer tokens from the built-in
//! token endpoint (`/token`), JWTs signed with a secret every replica shares, scoped per repository
//! and action (`pull`, `push`, `delete`), with the challenge the Docker client follows.
//!
//! What a caller may do is the access policy's answer (`policy.rs`), in both modes: a token carries
//! only what the policy granted when it was issued, and is checked against the policy again on use
//! (a reload revokes). Without a policy any authenticated user may do anything. Password checks cost
//! the same for unknown users (a bcrypt against a dummy hash), failures are rate limited per user and
//! per address, and every write or refusal is an audit line (JSON, target `audit`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::policy::{Caller, Policy, ACTIONS};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Code, RegError, RegResult};
use crate::names::Route;
use crate::Shared;

/// `type:name:actions` a request needs.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// `GET /v2/`: any authenticated caller.
    pub fn base() -> Access {
        Access::default()
    }

    pub fn for_route(r: &Route, m: &Method, q: &HashMap<String, String>) -> Access {
        let repo = |name: &str, actions: &[&str]| Access {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        };
        let action = match *m {
            Method::GET | Method::HEAD => "pull",
            Method::DELETE => "delete",
            _ => "push",
        };
        match r {
            Route::Catalog => Access { kind: "registry".into(), name: "catalog".into(), actions: vec!["*".into()] },
            Route::UploadStart { name } if q.contains_key("mount") => repo(name, &["pull", "push"]),
            Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Manifest { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. } => repo(name, &[action]),
        }
    }

    fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Grant {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    #[serde(default)]
    access: Vec<Grant>,
    /// Set on refresh (identity) tokens, which grant nothing by themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh: Option<bool>,
}

pub struct TokenSettings {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// HS256 with a shared secret, or an RS256/ES256 key pair (see `keys.rs`).
    pub key: crate::keys::SigningKey,
    pub anonymous_pull: bool,
    pub lifetime_secs: u64,
}

pub enum Mode {
    None,
    Htpasswd { realm: String },
    Token(Box<TokenSettings>),
}

pub struct Authenticator {
    mode: Mode,
    users: HashMap<String, String>,
    /// sha256 of credentials already checked: bcrypt is slow by design, pulls are many requests.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// The access policy (`None`: any authenticated user may do anything); swapped on reload.
    policy: RwLock<Option<Arc<Policy>>>,
    /// A bcrypt hash of nothing, checked for unknown users so they cost what known ones do.
    dummy_hash: String,
    failures: Limiter,
}

/// A request let through: who asked and, in token mode, what the token grants.
pub struct Granted {
    pub caller: Caller,
    grants: Option<Vec<Grant>>,
}

/// Failed logins in the last minute, per user and per address: past the limit, 429.
struct Limiter {
    window: Duration,
    max: usize,
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    fn new(max: usize, window: Duration) -> Limiter {
        Limiter { window, max, seen: Mutex::new(HashMap::new()) }
    }

    fn prune(&self, q: &mut VecDeque<Instant>) {
        while q.front().is_some_and(|t| t.elapsed() > self.window) {
            q.pop_front();
        }
    }

    fn blocked(&self, keys: &[String]) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().any(|k| {
            seen.get_mut(k).is_some_and(|q| {
                self.prune(q);
                q.len() >= self.max
            })
        })
    }

    fn fail(&self, keys: &[String]) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            // Bounded: forget everything rather than grow without end under a spray of names.
            seen.clear();
        }
        for k in keys {
            let q = seen.entry(k.clone()).or_default();
            self.prune(q);
            q.push_back(Instant::now());
        }
    }
}

/// One audit line: who did (or was refused) what, where.
pub fn audit(caller: &Caller, action: &str, repository: &str, detail: &str, allowed: bool) {
    let who = match caller {
        Caller::Anonymous => serde_json::Value::Null,
        Caller::User(u) => u.as_str().into(),
    };
    let line = serde_json::json!({"user": who, "action": action, "repository": repository, "digest": detail, "allowed": allowed});
    tracing::info!(target: "audit", "{line}");
}

/// Reads an htpasswd file: `user:$2y$...` lines (bcrypt only).
pub fn read_htpasswd(path: &std::path::Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    let mut users = HashMap::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (u, h) = l.split_once(':').ok_or_else(|| anyhow::anyhow!("{}: bad line {l:?}", path.display()))?;
        if !h.starts_with("$2") {
            anyhow::bail!("{}: user {u}: only bcrypt hashes are supported", path.display());
        }
        users.insert(u.to_string(), h.to_string());
    }
    Ok(users)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Authenticator {
    pub fn new(mode: Mode, users: HashMap<String, String>) -> Authenticator {
        // The same cost as the users' own hashes, so an unknown name takes as long as a known one.
        let cost = users
            .values()
            .filter_map(|h| h.split('$').nth(2).and_then(|c| c.parse::<u32>().ok()))
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy_hash = bcrypt::hash("berth-registry: no such user", cost).unwrap_or_default();
        Authenticator {
            mode,
            users,
            verified: Mutex::new(HashSet::new()),
            policy: RwLock::new(None),
            dummy_hash,
            failures: Limiter::new(10, Duration::from_secs(60)),
        }
    }

    /// Installs (or, with `None`, removes) the access policy; requests from now on follow it.
    pub fn set_policy(&self, p: Option<Policy>) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = p.map(Arc::new);
    }

    fn policy(&self) -> Option<Arc<Policy>> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the policy (or, without one, the defaults) lets `caller` do on `repo`.
    pub fn policy_allows(&self, caller: &Caller, repo: &str, action: &str) -> bool {
        if let Mode::None = self.mode {
            return true;
        }
        match (self.policy(), caller) {
            (Some(p), c) => p.allows(c, repo, action),
            (None, Caller::User(_)) => true,
            (None, Caller::Anonymous) => matches!(&self.mode, Mode::Token(t) if t.anonymous_pull) && action == "pull",
        }
    }

    /// Whether anonymous callers may do anything at all (then `/v2/` and the catalog answer them).
    fn anonymous_welcome(&self) -> bool {
        match self.policy() {
            Some(p) => p.grants_anonymous(),
            None => matches!(&self.mode, Mode::None) || matches!(&self.mode, Mode::Token(t) if t.anonymous_pull),
        }
    }

    /// Whether a request already let through may also `action` `repo` (a mount's source).
    pub fn may(&self, g: &Granted, repo: &str, action: &str) -> bool {
        self.policy_allows(&g.caller, repo, action)
            && g.grants.as_ref().is_none_or(|grants| {
                grants.iter().any(|x| {
                    x.kind == "repository" && x.name == repo && x.actions.iter().any(|a| a == action || a == "*")
                })
            })
    }

    /// The bytes `repo` may hold, when the policy sets a quota for it.
    pub fn quota_for(&self, repo: &str) -> Option<u64> {
        self.policy().and_then(|p| p.quota(repo))
    }

    /// Whether the catalog shows `repo` to this caller: only what it may pull.
    pub fn may_list(&self, g: &Granted, repo: &str) -> bool {
        self.policy_allows(&g.caller, repo, "pull")
    }

    /// Checks `Authorization: Basic` against the users: `Ok(None)` without credentials,
    /// `Ok(Some(user))` when valid, `Err` (401, or 429 past the failure limit) otherwise.
    async fn basic_user(&self, headers: &HeaderMap, client: Option<IpAddr>) -> RegResult<Option<String>> {
        let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else { return Ok(None) };
        let Some(raw) = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")) else { return Ok(None) };
        let bad = || RegError::with(Code::Unauthorized, "incorrect username or password");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
        let mut keys = vec![format!("user:{user}")];
        if let Some(ip) = client {
            keys.push(format!("addr:{ip}"));
        }
        if self.failures.blocked(&keys) {
            crate::metrics::auth_failure("rate_limited");
            return Err(RegError::with(Code::TooManyRequests, "too many failed logins: try again in a minute")
                .header("Retry-After", "60".into()));
        }
        let key: [u8; 32] = Sha256::digest(decoded.as_bytes()).into();
        if self.verified.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            return Ok(Some(user.to_string()));
        }
        let known = self.users.get(user).cloned();
        let hash = known.clone().unwrap_or_else(|| self.dummy_hash.clone());
        let pass = pass.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false)).await.unwrap_or(false);
        if ok && known.is_some() {
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
            return Ok(Some(user.to_string()));
        }
        self.failures.fail(&keys);
        crate::metrics::auth_failure("login");
        tracing::warn!(target: "audit", "{}", serde_json::json!({"user": user, "action": "login", "allowed": false, "address": client.map(|c| c.to_string())}));
        Err(bad())
    }

    /// Lets the request through (saying who asked), or answers with the challenge the client
    /// follows (401), a refusal for a known caller (403 DENIED), or 429.
    pub async fn check(&self, headers: &HeaderMap, client: Option<IpAddr>, need: &Access) -> RegResult<Granted> {
        match &self.mode {
            Mode::None => Ok(Granted { caller: Caller::Anonymous, grants: None }),
            Mode::Htpasswd { realm } => {
                let challenge =
                    || RegError::new(Code::Unauthorized).header("WWW-Authenticate", format!("Basic realm=\"{realm}\""));
                let caller = match self.basic_user(headers, client).await {
                    Ok(Some(u)) => Caller::User(u),
                    Ok(None) => Caller::Anonymous,
                    Err(e) if e.code == Code::TooManyRequests => return Err(e),
                    Err(_) => return Err(challenge()),
                };
                let ok = match need.kind.as_str() {
                    "" | "registry" => caller != Caller::Anonymous || self.anonymous_welcome(),
                    _ => need.actions.iter().all(|a| self.policy_allows(&caller, &need.name, a)),
                };
                if ok {
                    return Ok(Granted { caller, grants: None });
                }
                if caller == Caller::Anonymous {
                    return Err(challenge());
                }
                audit(&caller, &need.actions.join(","), &need.name, "", false);
                crate::metrics::auth_failure("denied");
                Err(RegError::new(Code::Denied))
            }
            Mode::Token(t) => {
                let bearer = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
                let claims = bearer.and_then(|b| self.decode(t, b)).filter(|c| c.refresh != Some(true));
                if let Some(c) = &claims {
                    let caller = if c.sub.is_empty() { Caller::Anonymous } else { Caller::User(c.sub.clone()) };
                    let granted = Granted { caller, grants: Some(c.access.clone()) };
                    let allowed = match need.kind.as_str() {
                        "" => true,
                        "registry" => c.access.iter().any(|g| g.kind == need.kind && g.name == need.name),
                        _ => need.actions.iter().all(|a| self.may(&granted, &need.name, a)),
                    };
                    if allowed {
                        return Ok(granted);
                    }
                }
                if bearer.is_some() {
                    crate::metrics::auth_failure("token");
                }
                let mut challenge = format!("Bearer realm=\"{}\",service=\"{}\"", t.realm, t.service);
                if !need.kind.is_empty() {
                    challenge.push_str(&format!(",scope=\"{}\"", need.scope()));
                }
                if claims.is_some() {
                    challenge.push_str(",error=\"insufficient_scope\"");
                }
                Err(RegError::new(Code::Unauthorized).header("WWW-Authenticate", challenge))
            }
        }
    }

    fn decode(&self, t: &TokenSettings, token: &str) -> Option<Claims> {
        let mut v = Validation::new(t.key.alg);
        v.set_audience(&[&t.service]);
        v.set_issuer(&[&t.issuer]);
        jsonwebtoken::decode::<Claims>(token, &t.key.decoding, &v).ok().map(|d| d.claims)
    }

    fn sign(
        &self,
        t: &TokenSettings,
        sub: &str,
        access: Vec<Grant>,
        lifetime: u64,
        refresh: bool,
    ) -> RegResult<String> {
        let n = now();
        let claims = Claims {
            iss: t.issuer.clone(),
            sub: sub.to_string(),
            aud: t.service.clone(),
            exp: n + lifetime,
            nbf: n.saturating_sub(10),
            iat: n,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
            refresh: refresh.then_some(true),
        };
        let mut header = Header::new(t.key.alg);
        header.kid = t.key.kid.clone();
        jsonwebtoken::encode(&header, &claims, &t.key.encoding)
            .map_err(|e| RegError::with(Code::Unknown, e.to_string()))
    }
}

/// Scopes as asked: `repository:name:pull,push` (several, space or repeated parameter separated).
fn requested(scopes: &[String]) -> Vec<Grant> {
    scopes
        .iter()
        .flat_map(|s| s.split(' ').map(String::from).collect::<Vec<_>>())
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(Grant {
                kind: kind.into(),
                name: name.into(),
                actions: actions.split(',').map(String::from).collect(),
            })
        })
        .collect()
}

/// What a token may carry: each asked scope cut down to what the policy grants the caller (`*`
/// stays only where every action is granted); the catalog for any caller the registry welcomes.
fn grant_scopes(a: &Authenticator, caller: &Caller, asked: Vec<Grant>) -> Vec<Grant> {
    let mut out = Vec::new();
    for mut g in asked {
        match g.kind.as_str() {
            "repository" => {
                let all = ACTIONS.iter().all(|x| a.policy_allows(caller, &g.name, x));
                let mut actions = Vec::new();
                for x in &g.actions {
                    let keep: Vec<&str> = match x.as_str() {
                        "*" if all => vec!["*"],
                        "*" => ACTIONS.iter().copied().filter(|y| a.policy_allows(caller, &g.name, y)).collect(),
                        y if ACTIONS.contains(&y) && a.policy_allows(caller, &g.name, y) => vec![y],
                        _ => vec![],
                    };
                    for k in keep {
                        if !actions.iter().any(|z: &String| z == k) {
                            actions.push(k.to_string());
                        }
                    }
                }
                g.actions = actions;
            }
            "registry" if g.name == "catalog" && (*caller != Caller::Anonymous || a.anonymous_welcome()) => {
                g.actions = vec!["*".into()];
            }
            _ => g.actions.clear(),
        }
        if !g.actions.is_empty() {
            out.push(g);
        }
    }
    out
}

/// `GET /.well-known/jwks.json`: the public key tokens are signed with (token mode with an
/// RS256/ES256 key; an empty set for a shared secret), for services that verify them.
pub async fn jwks(State(reg): State<Shared>) -> Response {
    match &reg.auth.mode {
        Mode::Token(t) => axum::Json(t.key.jwks()).into_response(),
        _ => RegError::with(Code::Unsupported, "token auth is not enabled").into_response(),
    }
}

/// `GET|POST /token`: Docker's token flows (credentials by Basic auth, OAuth2 password and
/// refresh-token grants, anonymous).
pub async fn token_endpoint(
    State(reg): State<Shared>,
    method: Method,
    ext: axum::http::Extensions,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let client = ext.get::<crate::ClientAddr>().map(|c| c.0);
    match issue(&reg, method, q, &headers, &body, client).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn issue(
    reg: &Shared,
    method: Method,
    q: Vec<(String, String)>,
    headers: &HeaderMap,
    body: &[u8],
    client: Option<IpAddr>,
) -> RegResult<Response> {
    let a = &reg.auth;
    let Mode::Token(t) = &a.mode else {
        return Err(RegError::with(Code::Unsupported, "token auth is not enabled"));
    };
    let mut params = q;
    if method == Method::POST {
        params.extend(crate::names::query(&String::from_utf8_lossy(body)));
    }
    let get = |k: &str| params.iter().filter(|(x, _)| x == k).map(|(_, v)| v.clone()).collect::<Vec<String>>();
    let denied = || RegError::with(Code::Unauthorized, "incorrect username or password");
    let user = match get("grant_type").first().map(String::as_str) {
        Some("refresh_token") => {
            let rt = get("refresh_token").first().cloned().unwrap_or_default();
            match a.decode(t, &rt) {
                Some(c) if c.refresh == Some(true) && a.users.contains_key(&c.sub) => Some(c.sub),
                _ => return Err(denied()),
            }
        }
        Some("password") => {
            let (u, p) = (get("username").first().cloned().unwrap_or_default(), get("password").first().cloned());
            let mut h = HeaderMap::new();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{}", p.unwrap_or_default()));
            h.insert("authorization", format!("Basic {basic}").parse().map_err(|_| denied())?);
            Some(a.basic_user(&h, client).await?.ok_or_else(denied)?)
        }
        _ if headers.contains_key("authorization") => Some(a.basic_user(headers, client).await?.ok_or_else(denied)?),
        _ => None,
    };
    let caller = user.clone().map_or(Caller::Anonymous, Caller::User);
    let grants = grant_scopes(a, &caller, requested(&get("scope")));
    let sub = user.clone().unwrap_or_default();
    let token = a.sign(t, &sub, grants, t.lifetime_secs, false)?;
    let mut answer = serde_json::json!({
        "token": token, "access_token": token, "expires_in": t.lifetime_secs,
        "issued_at": chrono::Utc::now().to_rfc3339(),
    });
    let offline = get("offline_token").first().is_some_and(|v| v == "true") || method == Method::POST;
    if let (Some(u), true) = (&user, offline) {
        answer["refresh_token"] = a.sign(t, u, Vec::new(), 90 * 24 * 3600, true)?.into();
    }
    Ok(axum::Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey};

    fn settings(secret: &[u8]) -> TokenSettings {
        TokenSettings {
            realm: "https://r/token".into(),
            service: "berth-registry".into(),
            issuer: "berth".into(),
            key: crate::keys::SigningKey::hs256(secret),
            anonymous_pull: false,
            lifetime_secs: 300,
        }
    }

    fn grant(name: &str, actions: &[&str]) -> Grant {
        Grant { kind: "repository".into(), name: name.into(), actions: actions.iter().map(|s| s.to_string()).collect() }
    }

    fn need(name: &str, action: &str) -> Access {
        Access { kind: "repository".into(), name: name.into(), actions: vec![action.into()] }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// The challenge of a refusal, or `None` when the request may go on.
    fn refused(a: &Authenticator, h: &HeaderMap, n: &Access) -> Option<String> {
        rt().block_on(a.check(h, None, n)).err().map(|e| format!("{e:?}"))
    }

    fn token_auth() -> Authenticator {
        Authenticator::new(Mode::Token(Box::new(settings(b"0123456789abcdef0123456789abcdef"))), HashMap::new())
    }

    fn signed(a: &Authenticator, access: Vec<Grant>, refresh: bool) -> String {
        let Mode::Token(t) = &a.mode else { unreachable!() };
        a.sign(t, "alice", access, 300, refresh).unwrap()
    }

    /// Claims signed by hand: expired ones, another audience or issuer.
    fn forged(secret: &[u8], edit: impl FnOnce(&mut Claims)) -> String {
        let n = now();
        let mut c = Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: "berth-registry".into(),
            exp: n + 300,
            nbf: n - 10,
            iat: n,
            jti: "j".into(),
            access: vec![grant("team/app", &["pull", "push"])],
            refresh: None,
        };
        edit(&mut c);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn a_token_opens_only_its_repositories_and_actions() {
        let a = token_auth();
        let t = signed(&a, vec![grant("team/app", &["pull"])], false);
        assert_eq!(refused(&a, &bearer(&t), &need("team/app", "pull")), None);
        let other = refused(&a, &bearer(&t), &need("team/other", "pull")).expect("another repository");
        assert!(other.contains("insufficient_scope") && other.contains("repository:team/other:pull"), "{other}");
        let push = refused(&a, &bearer(&t), &need("team/app", "push")).expect("push with a pull token");
        assert!(push.contains("insufficient_scope"), "{push}");
        // A prefix is not a grant.
        assert!(refused(&a, &bearer(&t), &need("team/app2", "pull")).is_some());
        // `*` grants every action on its repository only.
        let star = signed(&a, vec![grant("team/app", &["*"])], false);
        assert_eq!(refused(&a, &bearer(&star), &need("team/app", "delete")), None);
        assert!(refused(&a, &bearer(&star), &need("team/x", "pull")).is_some());
    }

    #[test]
    fn refresh_expired_and_forged_tokens_are_refused() {
        let a = token_auth();
        let secret = b"0123456789abcdef0123456789abcdef";
        let n = need("team/app", "pull");
        // A refresh token is an identity, not a grant.
        let refresh = signed(&a, vec![grant("team/app", &["pull"])], true);
        assert!(refused(&a, &bearer(&refresh), &n).is_some());
        // Expired (past the validation leeway), not yet valid, another audience or issuer.
        let expired = forged(secret, |c| c.exp = now() - 3600);
        assert!(refused(&a, &bearer(&expired), &n).is_some(), "expired");
        let other_aud = forged(secret, |c| c.aud = "someone-else".into());
        assert!(refused(&a, &bearer(&other_aud), &n).is_some(), "audience");
        let other_iss = forged(secret, |c| c.iss = "mallory".into());
        assert!(refused(&a, &bearer(&other_iss), &n).is_some(), "issuer");
        // Signed with another secret, or the signature cut off, or alg none.
        let wrong_key = forged(b"another-secret-another-secret-xx", |_| {});
        assert!(refused(&a, &bearer(&wrong_key), &n).is_some(), "forged signature");
        let good = forged(secret, |_| {});
        assert_eq!(refused(&a, &bearer(&good), &n), None);
        let unsigned = good.rsplit_once('.').map(|(h, _)| format!("{h}.")).unwrap();
        assert!(refused(&a, &bearer(&unsigned), &n).is_some(), "no signature");
        let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = good.split('.').nth(1).unwrap();
        assert!(refused(&a, &bearer(&format!("{none_header}.{body}.")), &n).is_some(), "alg none");
        // No token at all: the challenge names the scope, without an error.
        let c = refused(&a, &HeaderMap::new(), &n).unwrap();
        assert!(
            c.contains("scope=") && c.contains("repository:team/app:pull") && !c.contains("insufficient_scope"),
            "{c}"
        );
    }

    #[test]
    fn htpasswd_checks_the_password_of_a_known_user() {
        let users: HashMap<String, String> = [("alice".to_string(), bcrypt::hash("pw", 4).unwrap())].into();
        let a = Authenticator::new(Mode::Htpasswd { realm: "r".into() }, users);
        let basic = |u: &str, p: &str| {
            let mut h = HeaderMap::new();
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            h.insert("authorization", format!("Basic {v}").parse().unwrap());
            h
        };
        let n = Access::base();
        assert_eq!(refused(&a, &basic("alice", "pw"), &n), None);
        // Cached after the first check; a wrong password is not.
        assert_eq!(refused(&a, &basic("alice", "pw"), &n), None);
        assert!(refused(&a, &basic("alice", "nope"), &n).is_some());
        assert!(refused(&a, &basic("mallory", "pw"), &n).is_some());
        assert!(refused(&a, &basic("alice", ""), &n).is_some());
        let c = refused(&a, &HeaderMap::new(), &n).unwrap();
        assert!(c.contains("Basic realm"), "{c}");
    }

    #[test]
    fn scopes_parse_as_docker_sends_them() {
        let g = requested(&["repository:team/app:pull,push repository:x:pull".into(), "registry:catalog:*".into()]);
        let got: Vec<(String, String, Vec<String>)> = g.into_iter().map(|g| (g.kind, g.name, g.actions)).collect();
        assert_eq!(got[0], ("repository".into(), "team/app".into(), vec!["pull".into(), "push".into()]));
        assert_eq!(got[1].1, "x");
        assert_eq!(got[2], ("registry".into(), "catalog".into(), vec!["*".into()]));
        // A repository on a registry with a port: the name keeps its colon.
        let g = requested(&["repository:host:5000/app:pull".into()]);
        assert_eq!(g[0].name, "host:5000/app");
        assert!(requested(&["garbage".into()]).is_empty());
    }

    const POLICY: &str = r#"
[groups]
team-a = ["alice"]
team-b = ["bob"]
[[rules]]
repositories = ["team-a/*"]
principals = ["group:team-a"]
actions = ["pull", "push", "delete"]
[[rules]]
repositories = ["team-b/*"]
principals = ["group:team-b"]
actions = ["pull", "push", "delete"]
[[rules]]
repositories = ["public/*"]
principals = ["anonymous", "authenticated"]
actions = ["pull"]
"#;

    fn basic(u: &str, p: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        h.insert("authorization", format!("Basic {v}").parse().unwrap());
        h
    }

    fn team_users() -> HashMap<String, String> {
        [("alice", "a"), ("bob", "b")].iter().map(|(u, p)| (u.to_string(), bcrypt::hash(p, 4).unwrap())).collect()
    }

    #[test]
    fn htpasswd_follows_the_policy() {
        let a = Authenticator::new(Mode::Htpasswd { realm: "r".into() }, team_users());
        a.set_policy(Some(Policy::parse(POLICY).unwrap()));
        assert_eq!(refused(&a, &basic("alice", "a"), &need("team-a/app", "push")), None);
        let denied = refused(&a, &basic("alice", "a"), &need("team-b/app", "pull")).unwrap();
        assert!(denied.contains("Denied"), "a known user is refused with 403: {denied}");
        // Anonymous: what the policy gives anonymous, else the challenge to log in.
        assert_eq!(refused(&a, &HeaderMap::new(), &need("public/x", "pull")), None);
        assert_eq!(refused(&a, &HeaderMap::new(), &Access::base()), None, "/v2/ answers anonymous callers");
        assert!(refused(&a, &HeaderMap::new(), &need("team-a/app", "pull")).unwrap().contains("Basic realm"));
        // Without a policy: any authenticated user, everywhere.
        a.set_policy(None);
        assert_eq!(refused(&a, &basic("alice", "a"), &need("team-b/app", "delete")), None);
        assert!(refused(&a, &HeaderMap::new(), &Access::base()).is_some());
    }

    #[test]
    fn tokens_carry_only_what_the_policy_grants() {
        let a = Authenticator::new(Mode::Token(Box::new(settings(b"0123456789abcdef0123456789abcdef"))), team_users());
        a.set_policy(Some(Policy::parse(POLICY).unwrap()));
        let alice = Caller::User("alice".into());
        let got = grant_scopes(
            &a,
            &alice,
            requested(&[
                "repository:team-a/app:*".into(),
                "repository:team-b/app:pull,push".into(),
                "repository:public/x:pull,push".into(),
                "registry:catalog:*".into(),
            ]),
        );
        let got: Vec<(String, Vec<String>)> = got.into_iter().map(|g| (g.name, g.actions)).collect();
        assert_eq!(
            got,
            [
                ("team-a/app".to_string(), vec!["*".to_string()]),
                ("public/x".to_string(), vec!["pull".to_string()]),
                ("catalog".to_string(), vec!["*".to_string()]),
            ]
        );
        // A token granted before a policy change is checked against the new one on use.
        let t = signed(&a, vec![grant("team-a/app", &["pull"])], false);
        assert_eq!(refused(&a, &bearer(&t), &need("team-a/app", "pull")), None);
        a.set_policy(Some(Policy::parse(&POLICY.replace("team-a = [\"alice\"]", "team-a = []")).unwrap()));
        assert!(refused(&a, &bearer(&t), &need("team-a/app", "pull")).is_some(), "revoked by the reload");
        // Anonymous callers get the anonymous rules only.
        let anon = grant_scopes(
            &a,
            &Caller::Anonymous,
            requested(&["repository:public/x:pull,push".into(), "repository:team-a/app:pull".into()]),
        );
        assert_eq!(anon.len(), 1);
        assert_eq!((anon[0].name.as_str(), anon[0].actions.clone()), ("public/x", vec!["pull".to_string()]));
    }

    #[test]
    fn failed_logins_are_limited_per_user_and_address() {
        let a = Authenticator::new(Mode::Htpasswd { realm: "r".into() }, team_users());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let try_login = |u: &str, p: &str, from: IpAddr| {
            rt().block_on(a.check(&basic(u, p), Some(from), &Access::base())).err().map(|e| e.code)
        };
        for _ in 0..10 {
            assert_eq!(try_login("alice", "wrong", ip), Some(Code::Unauthorized));
        }
        assert_eq!(try_login("alice", "a", ip), Some(Code::TooManyRequests), "even the right password waits");
        assert_eq!(try_login("bob", "b", ip), Some(Code::TooManyRequests), "the address is limited too");
        assert_eq!(try_login("bob", "b", "192.0.2.8".parse().unwrap()), None, "another address, another user");
        // Unknown users fail like known ones, and count the same.
        assert_eq!(try_login("mallory", "x", "192.0.2.9".parse().unwrap()), Some(Code::Unauthorized));
    }
}
