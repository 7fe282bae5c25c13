//! The registry operations a pull or push needs: manifests, tags, blob download (resumable) and upload.

use std::sync::Arc;
use std::time::Duration;

use berth_types::{Digest, Error, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, Response, StatusCode};

use crate::client::{Failure, RegistryError, Repository};
use crate::manifest::{ACCEPT as MANIFEST_TYPES, MAX_MANIFEST};

/// A manifest as fetched: the exact bytes (their digest is the manifest's identity), and its type.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub content_type: String,
    pub digest: Digest,
}

/// How often a broken blob download is resumed before the pull gives up.
const RESUME_ATTEMPTS: u32 = 5;

impl Repository {
    /// `GET /v2/<name>/manifests/<reference>` with every type we understand in `Accept`.
    pub async fn get_manifest(&self, reference: &str) -> std::result::Result<FetchedManifest, Failure> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.send_ok(Method::GET, &url, &[], |rb| rb.header(ACCEPT, MANIFEST_TYPES.join(", "))).await?;
        let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let header_digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = read_limited(resp, MAX_MANIFEST, &url).await.map_err(Failure::Transport)?;
        let digest = Digest::of(&bytes);
        let bad = |what: &Digest| {
            Failure::Transport(Error::invalid(format!(
                "manifest verification failed for digest {what}: the registry sent content with digest {digest}"
            )))
        };
        if let Ok(want) = reference.parse::<Digest>() {
            if want != digest {
                return Err(bad(&want));
            }
        } else if let Some(h) = header_digest.filter(|h| *h != digest) {
            return Err(bad(&h));
        }
        Ok(FetchedManifest { bytes, content_type, digest })
    }

    /// `PUT /v2/<name>/manifests/<reference>`; returns the digest the registry stored.
    pub async fn put_manifest(&self, reference: &str, media_type: &str, body: Bytes) -> Result<Digest> {
        let url = self.url(&format!("manifests/{reference}"));
        let digest = Digest::of(&body);
        let resp =
            self.send_ok(Method::PUT, &url, &[], |rb| rb.header(CONTENT_TYPE, media_type).body(body.clone())).await?;
        let stored = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if let Some(s) = stored.filter(|s| *s != digest) {
            return Err(Error::internal(format!("registry stored manifest as {s}, we sent {digest}")));
        }
        Ok(digest)
    }

    /// Every tag of the repository, following `Link` pagination.
    pub async fn tags(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut out = Vec::new();
        let mut url = self.url("tags/list");
        loop {
            let resp = self.send_ok(Method::GET, &url, &[], |rb| rb).await?;
            let next = resp
                .headers()
                .get("Link")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split(';').next())
                .map(|l| l.trim().trim_start_matches('<').trim_end_matches('>').to_string());
            let page: Tags = resp.json().await.map_err(|e| Error::internal(format!("tags of {}: {e}", self.name)))?;
            out.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) if !n.is_empty() => url = self.resolve(&n)?,
                _ => return Ok(out),
            }
        }
    }

    /// `HEAD` of a blob: its size when the registry has it.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(Method::HEAD, &url, &[], |rb| rb).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(RegistryError::from_status(resp.status()).into_error()),
        }
    }

    /// A small blob (an image config) read whole and verified.
    pub async fn get_small_blob(&self, digest: &Digest, limit: usize) -> Result<Bytes> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send_ok(Method::GET, &url, &[], |rb| rb).await?;
        let bytes = read_limited(resp, limit, &url).await?;
        if Digest::of(&bytes) != *digest {
            return Err(Error::invalid(format!(
                "digest mismatch for blob {digest}: content has {}",
                Digest::of(&bytes)
            )));
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming; the stream resumes with `Range` after a dropped connection.
    pub async fn open_blob(self: &Arc<Self>, digest: &Digest) -> Result<BlobStream> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send_ok(Method::GET, &url, &[], |rb| rb).await?;
        let total = resp.content_length();
        Ok(BlobStream { repo: self.clone(), url, offset: 0, total, body: Some(resp), pending: None, attempts: 0 })
    }

    /// Tries a cross-repository mount. `Ok(None)`: mounted; `Ok(Some(location))`: the registry
    /// started an ordinary upload instead.
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<Option<String>> {
        let url = format!("{}?mount={digest}&from={from}", self.url("blobs/uploads/"));
        let extra = [format!("repository:{from}:pull")];
        let resp = self.send_ok(Method::POST, &url, &extra, |rb| rb.header(CONTENT_LENGTH, "0")).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(None);
        }
        Ok(Some(self.location(&resp)?))
    }

    /// `POST /v2/<name>/blobs/uploads/`: a new upload session's location.
    pub async fn start_upload(&self) -> Result<String> {
        let url = self.url("blobs/uploads/");
        let resp = self.send_ok(Method::POST, &url, &[], |rb| rb.header(CONTENT_LENGTH, "0")).await?;
        self.location(&resp)
    }

    /// One streamed `PATCH` with the whole blob; returns where the upload continues.
    pub async fn upload(&self, location: &str, body: reqwest::Body) -> Result<String> {
        let body = std::sync::Mutex::new(Some(body));
        let resp = self
            .send_ok(Method::PATCH, location, &[], |rb| {
                let rb = rb.header(CONTENT_TYPE, "application/octet-stream");
                match body.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    Some(b) => rb.body(b),
                    None => rb,
                }
            })
            .await?;
        self.location(&resp)
    }

    /// `PUT <location>?digest=`: the registry verifies and commits the upload.
    pub async fn commit_upload(&self, location: &str, digest: &Digest) -> Result<()> {
        let mut url = reqwest::Url::parse(location).map_err(|e| Error::internal(format!("upload location: {e}")))?;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        self.send_ok(Method::PUT, url.as_str(), &[], |rb| rb.header(CONTENT_LENGTH, "0")).await?;
        Ok(())
    }

    /// A monolithic upload: the whole (small) blob in the closing `PUT`.
    pub async fn upload_whole(&self, location: &str, digest: &Digest, body: Bytes) -> Result<()> {
        let mut url = reqwest::Url::parse(location).map_err(|e| Error::internal(format!("upload location: {e}")))?;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        self.send_ok(Method::PUT, url.as_str(), &[], |rb| {
            rb.header(CONTENT_TYPE, "application/octet-stream").body(body.clone())
        })
        .await?;
        Ok(())
    }

    fn location(&self, resp: &Response) -> Result<String> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::internal("registry answered an upload without a Location"))?;
        self.resolve(loc)
    }

    /// A `Location` or `Link` may be relative to the registry.
    fn resolve(&self, loc: &str) -> Result<String> {
        let base = reqwest::Url::parse(&self.base).map_err(|e| Error::internal(e.to_string()))?;
        base.join(loc).map(|u| u.to_string()).map_err(|e| Error::internal(format!("bad location {loc:?}: {e}")))
    }
}

impl RegistryError {
    fn from_status(status: StatusCode) -> RegistryError {
        RegistryError { status, code: String::new(), message: format!("unexpected status from registry: {status}") }
    }
}

/// Reads a body whole, refusing more than `limit` bytes.
async fn read_limited(resp: Response, limit: usize, url: &str) -> Result<Bytes> {
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Err(Error::invalid(format!("{url}: answer larger than {limit} bytes")));
    }
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| crate::client::transport(&Method::GET, url, e))?;
        if out.len() + chunk.len() > limit {
            return Err(Error::invalid(format!("{url}: answer larger than {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// A blob body that survives dropped connections by asking for the rest with `Range`.
pub struct BlobStream {
    repo: Arc<Repository>,
    url: String,
    offset: u64,
    total: Option<u64>,
    body: Option<Response>,
    /// Bytes already read from a resumed response that ignored `Range`.
    pending: Option<Bytes>,
    attempts: u32,
}

impl BlobStream {
    /// The size announced by the registry, if any.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// The next piece of the blob; `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if let Some(b) = self.pending.take() {
            self.offset += b.len() as u64;
            return Ok(Some(b));
        }
        loop {
            let err = match self.body.as_mut() {
                Some(resp) => match resp.chunk().await {
                    Ok(Some(b)) => {
                        self.offset += b.len() as u64;
                        return Ok(Some(b));
                    }
                    Ok(None) if self.total.is_none_or(|t| self.offset >= t) => return Ok(None),
                    Ok(None) => Error::internal(format!("unexpected EOF at byte {}", self.offset)),
                    Err(e) => crate::client::transport(&Method::GET, &self.url, e),
                },
                None => Error::internal("no response"),
            };
            self.attempts += 1;
            if self.attempts > RESUME_ATTEMPTS {
                return Err(err);
            }
            tracing::warn!(url = %self.url, offset = self.offset, "blob download broke ({err}); resuming");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(self.attempts))).await;
            self.body = None;
            self.reopen().await?;
        }
    }

    async fn reopen(&mut self) -> Result<()> {
        let range = format!("bytes={}-", self.offset);
        let resp = self.repo.send_ok(Method::GET, &self.url, &[], |rb| rb.header(RANGE, range.clone())).await?;
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            self.body = Some(resp);
            return Ok(());
        }
        // The registry ignored Range: read past what we already have.
        let mut resp = resp;
        let mut skip = self.offset;
        while skip > 0 {
            match resp.chunk().await.map_err(|e| crate::client::transport(&Method::GET, &self.url, e))? {
                Some(b) if (b.len() as u64) <= skip => skip -= b.len() as u64,
                Some(b) => {
                    // Keep the tail as the first chunk of the resumed stream.
                    let tail = b.slice(skip as usize..);
                    self.body = Some(resp);
                    self.pending = Some(tail);
                    return Ok(());
                }
                None => return Err(Error::internal("blob shorter on retry than before")),
            }
        }
        self.body = Some(resp);
        Ok(())
    }
}
