//! Pull-through cache (`--proxy-remote`): a manifest or blob this registry lacks is fetched from
//! the remote registry on first pull, checked against its digest, stored, and served from then on,
//! as distribution's proxy mode does. The remote's Basic or Bearer challenge is answered with the
//! configured credentials (or anonymously). Such a registry is read-only: pushes go to the remote.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};

use crate::error::{Code, RegError, RegResult};

/// Manifest types asked of the remote (all of them: what a client takes is decided here).
const ACCEPT: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct Remote {
    base: String,
    username: String,
    password: String,
    http: reqwest::Client,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, String>>,
}

fn upstream(e: impl std::fmt::Display) -> RegError {
    RegError::with(Code::Unknown, format!("proxy remote: {e}"))
}

impl Remote {
    pub fn new(url: &str, username: Option<String>, password: Option<String>) -> anyhow::Result<Remote> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(600))
            .build()?;
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            username: username.unwrap_or_default(),
            password: password.unwrap_or_default(),
            http,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// A GET of `path` on the remote, answering its auth challenge once.
    async fn get(&self, path: &str, scope: &str, accept: Option<&str>) -> RegResult<Option<reqwest::Response>> {
        let url = format!("{}{path}", self.base);
        let send = |auth: Option<String>| {
            let mut rb = self.http.get(&url);
            if let Some(a) = accept {
                rb = rb.header("Accept", a);
            }
            if let Some(a) = auth {
                rb = rb.header("Authorization", a);
            }
            rb.send()
        };
        let cached = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).get(scope).cloned();
        let mut r = send(cached.map(|t| format!("Bearer {t}"))).await.map_err(upstream)?;
        if r.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let auth = self.answer(&challenge, scope).await?;
            r = send(Some(auth)).await.map_err(upstream)?;
        }
        match r.status() {
            s if s.is_success() => Ok(Some(r)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s => Err(upstream(format!("GET {path}: {s}"))),
        }
    }

    /// The Authorization for a challenge: Basic with the credentials, or a Bearer token from the
    /// realm it names (with the credentials when there are any).
    async fn answer(&self, challenge: &str, scope: &str) -> RegResult<String> {
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password))
        );
        let Some(params) = challenge.strip_prefix("Bearer ") else { return Ok(basic) };
        let param = |k: &str| {
            params
                .split(',')
                .find_map(|p| p.trim().strip_prefix(&format!("{k}=")).map(|v| v.trim_matches('"').to_string()))
        };
        let realm = param("realm").ok_or_else(|| upstream("a Bearer challenge without a realm"))?;
        let mut rb = self
            .http
            .get(&realm)
            .query(&[("service", param("service").unwrap_or_default()), ("scope", scope.to_string())]);
        if !self.username.is_empty() {
            rb = rb.header("Authorization", basic);
        }
        let v: serde_json::Value = rb.send().await.map_err(upstream)?.json().await.map_err(upstream)?;
        let token = v["token"].as_str().or(v["access_token"].as_str()).ok_or_else(|| upstream("no token"))?.to_string();
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(scope.to_string(), token.clone());
        Ok(format!("Bearer {token}"))
    }

    /// A manifest of the remote: its bytes and media type, checked against `digest` when the
    /// reference is one.
    pub async fn manifest(&self, name: &str, reference: &str) -> RegResult<Option<(Bytes, String)>> {
        let scope = format!("repository:{name}:pull");
        let Some(r) = self.get(&format!("/v2/{name}/manifests/{reference}"), &scope, Some(ACCEPT)).await? else {
            return Ok(None);
        };
        let media_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        let body = r.bytes().await.map_err(upstream)?;
        if let Some(want) = reference.strip_prefix("sha256:") {
            if hex::encode(Sha256::digest(&body)) != want {
                return Err(RegError::with(Code::DigestInvalid, "the remote's manifest does not match its digest"));
            }
        }
        Ok(Some((body, media_type)))
    }

    /// A blob of the remote, streamed into `put` (which stores it); `false` when the remote lacks it.
    pub async fn blob<F, Fut>(&self, name: &str, digest: &str, put: F) -> RegResult<bool>
    where
        F: FnOnce(futures_util::stream::BoxStream<'static, Result<Bytes, std::io::Error>>) -> Fut,
        Fut: std::future::Future<Output = RegResult<()>>,
    {
        let scope = format!("repository:{name}:pull");
        let Some(r) = self.get(&format!("/v2/{name}/blobs/{digest}"), &scope, None).await? else { return Ok(false) };
        let stream = r.bytes_stream().map_err(std::io::Error::other).boxed();
        put(stream).await?;
        Ok(true)
    }
}
