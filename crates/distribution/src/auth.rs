//! Credentials as clients send them, registry challenges, and the token flows Docker follows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_types::{Error, Result};
use serde::{Deserialize, Serialize};

/// `X-Registry-Auth` / `POST /auth` body. Never logged: `Debug` hides the secrets.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// `base64(user:password)`, as in config.json; used when username/password are empty.
    #[serde(default)]
    pub auth: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    /// A refresh token from an earlier login (OAuth2 `refresh_token` grant).
    #[serde(default, rename = "identitytoken")]
    pub identity_token: String,
    /// A bearer token to send as is.
    #[serde(default, rename = "registrytoken")]
    pub registry_token: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// Decodes `X-Registry-Auth`: base64url (or standard) JSON, padding optional. Empty means anonymous.
    pub fn from_header(h: &str) -> Result<AuthConfig> {
        let h = h.trim();
        if h.is_empty() {
            return Ok(AuthConfig::default());
        }
        let trimmed = h.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|e| Error::invalid(format!("invalid X-Registry-Auth header: {e}")))?;
        let mut a: AuthConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("invalid X-Registry-Auth header: {e}")))?;
        a.normalise();
        Ok(a)
    }

    /// Fills username/password from `auth` when only that was given.
    pub fn normalise(&mut self) {
        if self.username.is_empty() && !self.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                self.username = u.to_string();
                self.password = p.to_string();
            }
        }
    }

    pub fn has_credentials(&self) -> bool {
        !self.username.is_empty() || !self.identity_token.is_empty() || !self.registry_token.is_empty()
    }
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: String },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm").cloned().unwrap_or_default(),
        service: params.get("service").cloned().unwrap_or_default(),
    })
}

/// `k="v", k2=v2` with quoted commas allowed.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string();
        }
        out.insert(key.trim().to_ascii_lowercase(), val);
    }
    out
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub expires_in: u64,
    #[serde(default)]
    pub refresh_token: String,
}

impl TokenResponse {
    pub(crate) fn bearer(&self) -> &str {
        if self.token.is_empty() {
            &self.access_token
        } else {
            &self.token
        }
    }
}

/// Bearer tokens by (realm, service, scope, user), kept until shortly before they expire.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    pub(crate) fn key(realm: &str, service: &str, scope: &str, user: &str) -> String {
        format!("{realm}\n{service}\n{scope}\n{user}")
    }

    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let mut m = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(key) {
            Some((t, exp)) if *exp > Instant::now() => Some(t.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    /// Forgets a token the registry refused (its grants changed, say).
    pub(crate) fn remove(&self, key: &str) {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    pub(crate) fn put(&self, key: String, token: String, expires_in: u64) {
        // Docker's floor: a token without a lifetime lives 60 s; renew 10 s early.
        let life = Duration::from_secs(expires_in.max(60)).saturating_sub(Duration::from_secs(10));
        let mut m = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(key, (token, Instant::now() + life));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_auth_header_leniently() {
        let json = r#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}"#;
        let url = base64::engine::general_purpose::URL_SAFE.encode(json);
        let nopad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let std = base64::engine::general_purpose::STANDARD.encode(json);
        for h in [url, nopad, std] {
            let a = AuthConfig::from_header(&h).unwrap();
            assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p?>"));
        }
        assert_eq!(AuthConfig::from_header("e30=").unwrap(), AuthConfig::default());
        assert_eq!(AuthConfig::from_header("e30").unwrap(), AuthConfig::default());
        assert_eq!(AuthConfig::from_header("").unwrap(), AuthConfig::default());
        assert!(AuthConfig::from_header("!!!").is_err());
        let a =
            AuthConfig::from_header(&base64::engine::general_purpose::STANDARD.encode(r#"{"auth":"dTpw"}"#)).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        assert!(!format!("{a:?}").contains("\"p\""));
    }

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: "registry.docker.io".into()
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
        let p = parse_params(r#"realm="a,b", service=x"#);
        assert_eq!(p["realm"], "a,b");
        assert_eq!(p["service"], "x");
    }
}
