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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &[u8]) -> TokenSettings {
        TokenSettings {
            realm: "https://r/token".into(),
            service: "berth-registry".into(),
            issuer: "berth".into(),
            secret: secret.to_vec(),
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
        rt().block_on(a.check(h, n)).err().map(|e| format!("{e:?}"))
    }

    fn token_auth() -> Authenticator {
        Authenticator::new(Mode::Token(settings(b"0123456789abcdef0123456789abcdef")), HashMap::new())
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
}
