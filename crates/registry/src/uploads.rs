//! Blobs: reads with `Range`, uploads (monolithic, chunked, streamed), mounts, cancel, delete.
//!
//! An upload's state lives in storage (`uploads/<id>/info` plus one object per chunk), so any
//! replica can take the next request. Every chunk is hashed as it streams in; an upload of one
//! chunk whose hash is the promised digest is renamed into place, anything else is assembled into
//! a temporary object, verified, and only then renamed. A wrong digest stores nothing.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_types::Digest;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Code, RegError, RegResult};
use crate::storage::StorageError;
use crate::{metrics, Registry};

pub(crate) fn blob_key(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

pub(crate) fn link_key(name: &str, d: &Digest) -> String {
    format!("repositories/{name}/_layers/{}", d.hex())
}

pub(crate) fn touch_key(d: &Digest) -> String {
    format!("touched/{}", d.hex())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadInfo {
    pub name: String,
    /// RFC 3339, for gc of abandoned uploads.
    pub started: String,
    pub offset: u64,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub key: String,
    pub size: u64,
    /// sha256 of this chunk alone: for a one-chunk upload, the blob's digest.
    pub digest: Digest,
}

fn info_key(id: &str) -> String {
    format!("uploads/{id}/info")
}

/// Records that a blob is in use now: gc spares blobs touched within its grace period.
pub(crate) async fn touch(reg: &Registry, d: &Digest) -> RegResult<()> {
    let fresh = {
        let mut t = reg.touched.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match t.get(d.hex()) {
            Some(at) if now.duration_since(*at) < reg.touch_every => true,
            _ => {
                if t.len() > 100_000 {
                    t.clear();
                }
                t.insert(d.hex().to_string(), now);
                false
            }
        }
    };
    if !fresh {
        reg.storage.put(&touch_key(d), Bytes::from(chrono::Utc::now().to_rfc3339())).await?;
    }
    Ok(())
}

/// A repository quota (the access policy's): linking `d` into `name` must keep the bytes of its
/// blobs within it, or the request is refused (403 DENIED) and the blob stays unlinked.
async fn within_quota(reg: &Registry, name: &str, d: &Digest) -> RegResult<()> {
    let Some(limit) = reg.auth.quota_for(name) else { return Ok(()) };
    if reg.storage.stat(&link_key(name, d)).await?.is_some() {
        return Ok(());
    }
    let size = reg.storage.stat(&blob_key(d)).await?.map(|m| m.size).unwrap_or(0);
    let mut used = 0u64;
    for hex in reg.storage.children(&format!("repositories/{name}/_layers")).await? {
        if let Ok(h) = format!("sha256:{hex}").parse::<Digest>() {
            used += reg.storage.stat(&blob_key(&h)).await?.map(|m| m.size).unwrap_or(0);
        }
    }
    if used + size > limit {
        return Err(RegError::with(
            Code::Denied,
            format!(
                "repository quota exceeded: {name} may hold {limit} bytes; it holds {used} and this blob has {size}"
            ),
        ));
    }
    Ok(())
}

/// The blob's size if `name` may see it.
pub(crate) async fn linked(reg: &Registry, name: &str, d: &Digest) -> RegResult<Option<u64>> {
    if reg.storage.stat(&link_key(name, d)).await?.is_none() {
        return Ok(None);
    }
    Ok(reg.storage.stat(&blob_key(d)).await?.map(|m| m.size))
}

fn parse_range(h: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = h.get("range")?.to_str().ok()?.strip_prefix("bytes=")?;
    let (s, e) = v.split_once('-')?;
    let s: u64 = s.trim().parse().ok()?;
    let e = e.trim();
    Some((s, if e.is_empty() { None } else { Some(e.parse().ok()?) }))
}

/// Pull-through cache: a blob not here is streamed from the remote into storage, its digest
/// checked on the way (a mismatch stores nothing), and linked into the repository.
async fn blob_from_remote(reg: &Registry, name: &str, d: &Digest) -> RegResult<Option<u64>> {
    let Some(remote) = &reg.proxy else { return Ok(None) };
    let tmp = format!("uploads/proxy-{}", uuid::Uuid::new_v4());
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(sha2::Sha256::new()));
    let (h2, tmp2) = (hasher.clone(), tmp.clone());
    let found = remote
        .blob(name, d.as_str(), |s| async move {
            use futures_util::StreamExt;
            let s = s.map(move |c| {
                let c = c.map_err(|e| StorageError::Driver(format!("proxy remote: {e}")))?;
                sha2::Digest::update(&mut *h2.lock().unwrap_or_else(|e| e.into_inner()), &c);
                metrics::bytes_in(c.len() as u64);
                Ok(c)
            });
            reg.storage.put_stream(&tmp2, Box::pin(s)).await.map(drop).map_err(RegError::from)
        })
        .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            let _ = reg.storage.delete(&tmp).await;
            return Err(e);
        }
    };
    if !found {
        return Ok(None);
    }
    let got =
        hex::encode(sha2::Digest::finalize(std::mem::take(&mut *hasher.lock().unwrap_or_else(|e| e.into_inner()))));
    if got != d.hex() {
        reg.storage.delete(&tmp).await?;
        return Err(RegError::with(Code::DigestInvalid, format!("the remote's blob does not match {d}")));
    }
    if reg.storage.stat(&blob_key(d)).await?.is_none() {
        reg.storage.rename(&tmp, &blob_key(d)).await?;
    } else {
        reg.storage.delete(&tmp).await?;
    }
    reg.storage.put(&link_key(name, d), Bytes::new()).await?;
    linked(reg, name, d).await
}

pub(crate) async fn get_blob(reg: &Registry, name: &str, d: &Digest, h: &HeaderMap, head: bool) -> RegResult<Response> {
    let size = match linked(reg, name, d).await? {
        Some(s) => s,
        None => {
            blob_from_remote(reg, name, d).await?.ok_or_else(|| RegError::with(Code::BlobUnknown, d.to_string()))?
        }
    };
    touch(reg, d).await?;
    let range = parse_range(h).filter(|_| !head);
    if let Some((s, e)) = range {
        if s >= size || e.is_some_and(|e| e < s) {
            return Ok(
                (StatusCode::RANGE_NOT_SATISFIABLE, [("Content-Range", format!("bytes */{size}"))]).into_response()
            );
        }
    }
    let mut b = Response::builder()
        .header("Content-Type", "application/octet-stream")
        .header("Docker-Content-Digest", d.as_str())
        .header("Accept-Ranges", "bytes")
        .header("ETag", format!("\"{d}\""))
        .header("Cache-Control", "max-age=31536000");
    if head {
        return b
            .header("Content-Length", size)
            .body(Body::empty())
            .map_err(|e| RegError::with(Code::Unknown, e.to_string()));
    }
    let body = reg.storage.get(&blob_key(d), range.map(|(s, e)| (s, e.map(|e| e.min(size - 1))))).await?;
    let (status, len) = match body.range {
        Some((s, e)) => {
            b = b.header("Content-Range", format!("bytes {s}-{e}/{size}"));
            (StatusCode::PARTIAL_CONTENT, e - s + 1)
        }
        None => (StatusCode::OK, size),
    };
    let stream = body.stream.inspect_ok(|c| metrics::bytes_out(c.len() as u64)).map_err(std::io::Error::other);
    b.status(status)
        .header("Content-Length", len)
        .body(Body::from_stream(stream))
        .map_err(|e| RegError::with(Code::Unknown, e.to_string()))
}

pub(crate) async fn delete_blob(reg: &Registry, name: &str, d: &Digest) -> RegResult<Response> {
    if !reg.delete_enabled {
        return Err(RegError::with(Code::Unsupported, "deletion is disabled"));
    }
    if reg.storage.stat(&link_key(name, d)).await?.is_none() {
        return Err(RegError::with(Code::BlobUnknown, d.to_string()));
    }
    reg.storage.delete(&link_key(name, d)).await?;
    Ok((StatusCode::ACCEPTED, [("Docker-Content-Digest", d.to_string())]).into_response())
}

fn upload_response(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    let range = if offset == 0 { "0-0".to_string() } else { format!("0-{}", offset - 1) };
    (
        status,
        [
            ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
            ("Range", range),
            ("Docker-Upload-UUID", id.to_string()),
            ("Content-Length", "0".to_string()),
        ],
    )
        .into_response()
}

fn created(name: &str, d: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            ("Location", format!("/v2/{name}/blobs/{d}")),
            ("Docker-Content-Digest", d.to_string()),
            ("Content-Length", "0".to_string()),
        ],
    )
        .into_response()
}

async fn load(reg: &Registry, name: &str, id: &str) -> RegResult<UploadInfo> {
    let raw = reg.storage.read(&info_key(id)).await?.ok_or_else(|| RegError::with(Code::BlobUploadUnknown, id))?;
    let info: UploadInfo = serde_json::from_slice(&raw).map_err(|e| RegError::with(Code::Unknown, e.to_string()))?;
    if info.name != name {
        return Err(RegError::with(Code::BlobUploadUnknown, id));
    }
    Ok(info)
}

async fn save(reg: &Registry, id: &str, info: &UploadInfo) -> RegResult<()> {
    let raw = serde_json::to_vec(info).map_err(|e| RegError::with(Code::Unknown, e.to_string()))?;
    reg.storage.put(&info_key(id), raw.into()).await?;
    Ok(())
}

async fn new_upload(reg: &Registry, name: &str) -> RegResult<(String, UploadInfo)> {
    let id = uuid::Uuid::new_v4().to_string();
    let info = UploadInfo { name: name.into(), started: chrono::Utc::now().to_rfc3339(), offset: 0, chunks: vec![] };
    save(reg, &id, &info).await?;
    Ok((id, info))
}

/// `POST /v2/<name>/blobs/uploads/`: a mount, a monolithic upload, or a new session.
pub(crate) async fn start(
    reg: &Registry,
    name: &str,
    q: &HashMap<String, String>,
    h: &HeaderMap,
    body: Body,
) -> RegResult<Response> {
    if let (Some(d), Some(from)) = (q.get("mount"), q.get("from")) {
        let d = crate::names::digest(d)?;
        if crate::names::valid_name(from) && linked(reg, from, &d).await?.is_some() {
            within_quota(reg, name, &d).await?;
            touch(reg, &d).await?;
            reg.storage.put(&link_key(name, &d), Bytes::new()).await?;
            return Ok(created(name, &d));
        }
        // Not there: an ordinary upload, as the spec asks.
    }
    // Only sha256 is stored: another algorithm is refused up front, as the spec asks (400).
    if let Some(a) = q.get("digest-algorithm").filter(|a| a.as_str() != "sha256") {
        return Err(RegError::with(Code::DigestInvalid, format!("unsupported digest algorithm {a:?}: only sha256")));
    }
    let (id, mut info) = new_upload(reg, name).await?;
    if let Some(d) = q.get("digest") {
        let d = crate::names::digest(d)?;
        if reg.storage.stat(&blob_key(&d)).await?.is_none() {
            drop_upload(reg, &id).await?;
            return monolithic(reg, name, &d, h, body).await;
        }
        append(reg, &id, &mut info, h, body).await?;
        return commit(reg, name, &id, &info, &d).await;
    }
    Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
}

/// `POST ...?digest=` of a blob not stored yet: streamed straight to its place (on object storage
/// a multipart upload, part by part), verified on the way; nothing appears on a mismatch.
async fn monolithic(reg: &Registry, name: &str, d: &Digest, h: &HeaderMap, body: Body) -> RegResult<Response> {
    let declared: Option<u64> = h.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let stream = body.into_data_stream().map(|r| {
        r.inspect(|c| metrics::bytes_in(c.len() as u64)).map_err(|e| StorageError::Driver(format!("request body: {e}")))
    });
    let stored =
        reg.storage.put_stream_verified(&blob_key(d), Box::pin(stream), d, declared).await.map_err(|e| match e {
            StorageError::Driver(m) if m.starts_with("request body") => RegError::with(Code::BlobUploadInvalid, m),
            e => e.into(),
        })?;
    match stored {
        Ok(_) => {}
        Err(got) if got.ends_with(" bytes") => {
            return Err(RegError::with(Code::SizeInvalid, format!("Content-Length {declared:?} but {got} arrived")))
        }
        Err(_) => return Err(RegError::with(Code::DigestInvalid, format!("content does not match {d}"))),
    }
    within_quota(reg, name, d).await?;
    touch(reg, d).await?;
    reg.storage.put(&link_key(name, d), Bytes::new()).await?;
    Ok(created(name, d))
}

pub(crate) async fn status(reg: &Registry, name: &str, id: &str) -> RegResult<Response> {
    let info = load(reg, name, id).await?;
    Ok(upload_response(StatusCode::NO_CONTENT, name, id, info.offset))
}

/// A chunk's `Content-Range` must start where the upload is: anything else (a chunk out of
/// order, the final one included) is the spec's 416, with the session's range; nothing is taken.
fn out_of_order(h: &HeaderMap, name: &str, id: &str, info: &UploadInfo) -> Option<Response> {
    let cr = h.get("content-range").and_then(|v| v.to_str().ok())?;
    let start = cr.trim_start_matches("bytes ").split('-').next().and_then(|s| s.trim().parse::<u64>().ok());
    (start != Some(info.offset)).then(|| upload_response(StatusCode::RANGE_NOT_SATISFIABLE, name, id, info.offset))
}

pub(crate) async fn patch(reg: &Registry, name: &str, id: &str, h: &HeaderMap, body: Body) -> RegResult<Response> {
    let mut info = load(reg, name, id).await?;
    if let Some(r) = out_of_order(h, name, id, &info) {
        return Ok(r);
    }
    append(reg, id, &mut info, h, body).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, info.offset))
}

/// Streams a request body into a new chunk object, hashing it on the way.
async fn append(reg: &Registry, id: &str, info: &mut UploadInfo, h: &HeaderMap, body: Body) -> RegResult<()> {
    let declared: Option<u64> = h.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let key = format!("uploads/{id}/{:020}", info.offset);
    let hash = std::sync::Arc::new(std::sync::Mutex::new(Sha256::new()));
    let h2 = hash.clone();
    let stream = body.into_data_stream().map(move |r| {
        r.inspect(|c| {
            h2.lock().unwrap_or_else(|e| e.into_inner()).update(c);
            metrics::bytes_in(c.len() as u64);
        })
        .map_err(|e| StorageError::Driver(format!("request body: {e}")))
    });
    let n = reg.storage.put_stream(&key, Box::pin(stream)).await.map_err(|e| match e {
        StorageError::Driver(m) if m.starts_with("request body") => RegError::with(Code::BlobUploadInvalid, m),
        e => e.into(),
    })?;
    if declared.is_some_and(|d| d != n) {
        reg.storage.delete(&key).await?;
        return Err(RegError::with(
            Code::SizeInvalid,
            format!("Content-Length {} but {n} bytes arrived", declared.unwrap_or(0)),
        ));
    }
    if n == 0 {
        reg.storage.delete(&key).await?;
        return Ok(());
    }
    let digest = Digest::from_hasher(hash.lock().unwrap_or_else(|e| e.into_inner()).clone());
    info.chunks.push(Chunk { key, size: n, digest });
    info.offset += n;
    save(reg, id, info).await
}

pub(crate) async fn finish(
    reg: &Registry,
    name: &str,
    id: &str,
    q: &HashMap<String, String>,
    h: &HeaderMap,
    body: Body,
) -> RegResult<Response> {
    let mut info = load(reg, name, id).await?;
    let d =
        crate::names::digest(q.get("digest").ok_or_else(|| RegError::with(Code::DigestInvalid, "digest missing"))?)?;
    if let Some(r) = out_of_order(h, name, id, &info) {
        return Ok(r);
    }
    append(reg, id, &mut info, h, body).await?;
    commit(reg, name, id, &info, &d).await
}

/// Verifies the upload against `d`, moves it into place, links it into the repository.
async fn commit(reg: &Registry, name: &str, id: &str, info: &UploadInfo, d: &Digest) -> RegResult<Response> {
    let result = place(reg, info, d).await;
    drop_upload(reg, id).await?;
    result?;
    within_quota(reg, name, d).await?;
    touch(reg, d).await?;
    reg.storage.put(&link_key(name, d), Bytes::new()).await?;
    Ok(created(name, d))
}

async fn place(reg: &Registry, info: &UploadInfo, d: &Digest) -> RegResult<()> {
    let mismatch = || RegError::with(Code::DigestInvalid, format!("content does not match {d}"));
    match info.chunks.as_slice() {
        [] => {
            if *d != Digest::of(b"") {
                return Err(mismatch());
            }
            if reg.storage.stat(&blob_key(d)).await?.is_none() {
                reg.storage.put(&blob_key(d), Bytes::new()).await?;
            }
        }
        [one] => {
            if one.digest != *d {
                return Err(mismatch());
            }
            if reg.storage.stat(&blob_key(d)).await?.is_none() {
                reg.storage.rename(&one.key, &blob_key(d)).await?;
            }
        }
        many => {
            if reg.storage.stat(&blob_key(d)).await?.is_some() {
                // Same digest already stored: still verify what we were sent.
                if assemble_digest(reg, many).await? != *d {
                    return Err(mismatch());
                }
                return Ok(());
            }
            // Straight into place, verified on the way: no assembled copy to move (on object
            // storage a move is a copy).
            if reg
                .storage
                .put_stream_verified(&blob_key(d), Box::pin(chunks_stream(reg, many)), d, None)
                .await?
                .is_err()
            {
                return Err(mismatch());
            }
        }
    }
    Ok(())
}

fn chunks_stream<'a>(
    reg: &'a Registry,
    chunks: &'a [Chunk],
) -> impl futures_util::Stream<Item = Result<Bytes, StorageError>> + 'a {
    futures_util::stream::iter(chunks)
        .then(move |c| async move { reg.storage.get(&c.key, None).await.map(|b| b.stream) })
        .try_flatten()
}

async fn assemble_digest(reg: &Registry, chunks: &[Chunk]) -> RegResult<Digest> {
    let mut h = Sha256::new();
    let mut s = Box::pin(chunks_stream(reg, chunks));
    while let Some(c) = s.next().await {
        h.update(&c?);
    }
    Ok(Digest::from_hasher(h))
}

async fn drop_upload(reg: &Registry, id: &str) -> RegResult<()> {
    for o in reg.storage.list(&format!("uploads/{id}")).await? {
        reg.storage.delete(o.location.as_ref()).await?;
    }
    Ok(())
}

pub(crate) async fn cancel(reg: &Registry, name: &str, id: &str) -> RegResult<Response> {
    load(reg, name, id).await?;
    drop_upload(reg, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
