//! Who may do what: no auth, htpasswd basic auth (bcrypt), or bearer tokens from the built-in
//! token endpoint (`/token`), JWTs signed with a secret every replica shares, scoped per repository
//! and action (`pull`, `push`, `delete`), with the challenge the Docker client follows.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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
    pub secret: Vec<u8>,
    pub anonymous_pull: bool,
    pub lifetime_secs: u64,
}

pub enum Mode {
    None,
    Htpasswd { realm: String },
    Token(TokenSettings),
}

pub struct Authenticator {
    mode: Mode,
    users: HashMap<String, String>,
    /// sha256 of credentials already checked: bcrypt is slow by design, pulls are many requests.
    verified: Mutex<HashSet<[u8; 32]>>,
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
        Authenticator { mode, users, verified: Mutex::new(HashSet::new()) }
    }

    /// Checks `Authorization: Basic` against the users; `Some(user)` when valid.
    async fn basic_user(&self, headers: &HeaderMap) -> Option<String> {
        let v = headers.get("authorization")?.to_str().ok()?;
        let raw = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
        let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(raw.trim()).ok()?).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        let key: [u8; 32] = Sha256::digest(decoded.as_bytes()).into();
        if self.verified.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            return Some(user.to_string());
        }
        let hash = self.users.get(user)?.clone();
        let pass = pass.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false)).await.ok()?;
        if ok {
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
            Some(user.to_string())
        } else {
            None
        }
    }

    /// Lets the request through, or answers with the challenge the client follows.
    pub async fn check(&self, headers: &HeaderMap, need: &Access) -> RegResult<()> {
        match &self.mode {
            Mode::None => Ok(()),
            Mode::Htpasswd { realm } => {
                match self.basic_user(headers).await {
                    Some(_) => Ok(()),
                    None => Err(RegError::new(Code::Unauthorized)
                        .header("WWW-Authenticate", format!("Basic realm=\"{realm}\""))),
                }
            }
            Mode::Token(t) => {
                let bearer = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
                let claims = bearer.and_then(|b| self.decode(t, b)).filter(|c| c.refresh != Some(true));
                let allowed = claims.as_ref().is_some_and(|c| {
                    need.kind.is_empty()
                        || need.actions.iter().all(|a| {
                            c.access.iter().any(|g| {
                                g.kind == need.kind
                                    && g.name == need.name
                                    && (g.actions.iter().any(|x| x == a || x == "*"))
                            })
                        })
                });
                if allowed {
                    return Ok(());
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
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[&t.service]);
        v.set_issuer(&[&t.issuer]);
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&t.secret), &v).ok().map(|d| d.claims)
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
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&t.secret))
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

/// `GET|POST /token`: Docker's token flows (credentials by Basic auth, OAuth2 password and
/// refresh-token grants, anonymous).
pub async fn token_endpoint(
    State(reg): State<Shared>,
    method: Method,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match issue(&reg, method, q, &headers, &body).await {
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
            Some(a.basic_user(&h).await.ok_or_else(denied)?)
        }
        _ if headers.contains_key("authorization") => Some(a.basic_user(headers).await.ok_or_else(denied)?),
        _ => None,
    };
    let mut grants = requested(&get("scope"));
    for g in grants.iter_mut() {
        g.actions.retain(|x| match &user {
            Some(_) => matches!(x.as_str(), "pull" | "push" | "delete" | "*"),
            None => t.anonymous_pull && x == "pull" && g.kind == "repository",
        });
    }
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
