//! Credentials as clients send them, registry challenges, and the token flows Docker follows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use berth_api::auth::AuthConfig;

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
