//! Manifests and indexes (Docker schema 2 and OCI), tags, and the referrers API.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_types::Digest;
use bytes::Bytes;
use serde_json::Value;

use crate::error::{Code, RegError, RegResult};
use crate::names::Reference;
use crate::uploads::{blob_key, linked, touch};
use crate::Registry;

pub const MAX_MANIFEST: usize = 4 << 20;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn revision_key(name: &str, d: &Digest) -> String {
    format!("repositories/{name}/_manifests/revisions/{}", d.hex())
}

pub(crate) fn tag_key(name: &str, tag: &str) -> String {
    format!("repositories/{name}/_manifests/tags/{tag}")
}

fn referrer_key(name: &str, subject: &Digest, d: &Digest) -> String {
    format!("repositories/{name}/_referrers/{}/{}", subject.hex(), d.hex())
}

/// The digest a reference points at in `name`, if any.
async fn resolve(reg: &Registry, name: &str, r: &Reference) -> RegResult<Option<Digest>> {
    let d = match r {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(t) => match reg.storage.read(&tag_key(name, t)).await? {
            Some(b) => match String::from_utf8_lossy(&b).trim().parse::<Digest>() {
                Ok(d) => d,
                Err(_) => return Ok(None),
            },
            None => return Ok(None),
        },
    };
    Ok(reg.storage.stat(&revision_key(name, &d)).await?.map(|_| d))
}

/// Pull-through cache: a tag is asked of the remote every time (it may have moved; the copy here
/// serves when the remote cannot answer), a digest only when it is not here yet. What comes back
/// is stored as if pushed.
async fn from_remote(reg: &Registry, name: &str, r: &Reference) -> RegResult<Option<Digest>> {
    let Some(remote) = &reg.proxy else { return Ok(None) };
    let reference = match r {
        Reference::Tag(t) => t.clone(),
        Reference::Digest(d) if resolve(reg, name, r).await?.is_some() => return Ok(Some(d.clone())),
        Reference::Digest(d) => d.to_string(),
    };
    let fetched = match remote.manifest(name, &reference).await {
        Ok(f) => f,
        Err(e) if matches!(r, Reference::Tag(_)) => {
            tracing::warn!(name, reference, "proxy remote unavailable, serving the cached tag: {:?}", e.detail);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let Some((bytes, media_type)) = fetched else { return Ok(None) };
    let d = Digest::of(&bytes);
    if reg.storage.stat(&blob_key(&d)).await?.is_none() {
        reg.storage.put(&blob_key(&d), bytes).await?;
    }
    reg.storage.put(&revision_key(name, &d), Bytes::from(media_type)).await?;
    if let Reference::Tag(t) = r {
        reg.storage.put(&tag_key(name, t), Bytes::from(d.to_string())).await?;
    }
    Ok(Some(d))
}

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// The media types an `Accept` header lists (none: anything).
fn accepted(h: &HeaderMap) -> Vec<String> {
    h.get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

pub(crate) async fn get(reg: &Registry, name: &str, r: &Reference, h: &HeaderMap, head: bool) -> RegResult<Response> {
    let unknown = || RegError::with(Code::ManifestUnknown, r.to_string());
    let mut d = match from_remote(reg, name, r).await? {
        Some(d) => d,
        None => resolve(reg, name, r).await?.ok_or_else(unknown)?,
    };
    let mut media_type =
        String::from_utf8_lossy(&reg.storage.read(&revision_key(name, &d)).await?.ok_or_else(unknown)?).to_string();
    let mut body = reg.storage.read(&blob_key(&d)).await?.ok_or_else(unknown)?;
    // Accept is honoured: a manifest only in a type the client takes. A client that takes image
    // manifests but not indexes gets the linux/amd64 one of an index (as distribution serves
    // older clients); otherwise the manifest is not there for it.
    let ok = accepted(h);
    let takes = |t: &str| ok.is_empty() || ok.iter().any(|a| a == t || a == "*/*");
    if !takes(&media_type) {
        let child = if INDEX_TYPES.contains(&media_type.as_str()) {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let list = v["manifests"].as_array().cloned().unwrap_or_default();
            list.into_iter().find(|m| {
                m["platform"]["os"] == "linux"
                    && m["platform"]["architecture"] == "amd64"
                    && m["mediaType"].as_str().is_some_and(takes)
            })
        } else {
            None
        };
        let found = match child.and_then(|c| c["digest"].as_str().and_then(|s| s.parse::<Digest>().ok())) {
            Some(cd) => reg.storage.read(&blob_key(&cd)).await?.map(|b| (cd, b)),
            None => None,
        };
        let Some((cd, b)) = found else {
            return Err(RegError::with(
                Code::ManifestUnknown,
                format!("{media_type} manifest found, but the Accept header does not take it"),
            ));
        };
        media_type = serde_json::from_slice::<Value>(&b)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(String::from))
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        d = cd;
        body = b;
    }
    let b = Response::builder()
        .header("Content-Type", media_type)
        .header("Docker-Content-Digest", d.as_str())
        .header("ETag", format!("\"{d}\""))
        .header("Content-Length", body.len());
    b.body(if head { Body::empty() } else { Body::from(body) })
        .map_err(|e| RegError::with(Code::Unknown, e.to_string()))
}

fn invalid(detail: impl Into<String>) -> RegError {
    RegError::with(Code::ManifestInvalid, detail)
}

fn descriptor_digest(v: &Value) -> RegResult<Digest> {
    let s = v.get("digest").and_then(Value::as_str).ok_or_else(|| invalid("descriptor without digest"))?;
    s.parse::<Digest>().map_err(|_| invalid(format!("invalid descriptor digest {s:?}")))
}

/// A request body of at most `max` bytes. A larger one is still read to its end (up to 64 MiB,
/// discarded), so the client gets the error: closing with unread data makes the kernel reset the
/// connection, and the client sees a broken pipe instead of MANIFEST_INVALID.
async fn read_capped(body: Body, max: usize) -> RegResult<Bytes> {
    use futures_util::StreamExt;
    const DRAIN: usize = 64 << 20;
    let mut stream = body.into_data_stream();
    let (mut buf, mut seen) = (Vec::new(), 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| invalid(format!("reading the manifest: {e}")))?;
        seen += chunk.len();
        if seen <= max {
            buf.extend_from_slice(&chunk);
        } else if seen > max + DRAIN {
            break;
        }
    }
    if seen > max {
        return Err(RegError::with(Code::ManifestTooLarge, format!("manifest larger than {max} bytes")));
    }
    Ok(Bytes::from(buf))
}

/// Most `tag` parameters one manifest PUT may carry (the spec asks for at least 10).
const MAX_TAG_PARAMS: usize = 100;

/// `PUT /v2/<name>/manifests/<reference>[?tag=…]`: with `tag` parameters (only on a push by
/// digest) each tag is pointed at the manifest too and named in an `OCI-Tag` header.
pub(crate) async fn put(
    reg: &Registry,
    name: &str,
    r: &Reference,
    tags: &[String],
    h: &HeaderMap,
    body: Body,
) -> RegResult<Response> {
    if tags.len() > MAX_TAG_PARAMS {
        return Err(RegError::with(Code::TooManyTags, format!("at most {MAX_TAG_PARAMS} tags per request")));
    }
    if let Some(t) = tags.iter().find(|t| !crate::names::valid_tag(t)) {
        return Err(invalid(format!("invalid tag {t:?}")));
    }
    if !tags.is_empty() && matches!(r, Reference::Tag(_)) {
        return Err(invalid("tag parameters go with a push by digest"));
    }
    let bytes = read_capped(body, MAX_MANIFEST).await?;
    let d = Digest::of(&bytes);
    if let Reference::Digest(want) = r {
        if *want != d {
            return Err(RegError::with(Code::DigestInvalid, format!("manifest digest is {d}, not {want}")));
        }
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let ct = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim();
    let body_type = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
    let media_type = if !body_type.is_empty() { body_type } else { ct };
    if !body_type.is_empty() && !ct.is_empty() && ct != body_type {
        return Err(invalid(format!("Content-Type {ct} but the manifest says {body_type}")));
    }
    if v.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    // Every referenced blob (or child manifest) must already be in this repository.
    match media_type {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let config = v.get("config").ok_or_else(|| invalid("manifest without config"))?;
            let mut needed = vec![descriptor_digest(config)?];
            for l in v.get("layers").and_then(Value::as_array).ok_or_else(|| invalid("manifest without layers"))? {
                // Foreign layers live elsewhere, by URL.
                if l.get("urls").and_then(Value::as_array).is_some_and(|u| !u.is_empty()) {
                    continue;
                }
                needed.push(descriptor_digest(l)?);
            }
            for n in &needed {
                touch(reg, n).await?;
                if linked(reg, name, n).await?.is_none() {
                    return Err(RegError::with(Code::ManifestBlobUnknown, n.to_string()));
                }
            }
        }
        DOCKER_LIST | OCI_INDEX => {
            for m in v.get("manifests").and_then(Value::as_array).ok_or_else(|| invalid("index without manifests"))? {
                let c = descriptor_digest(m)?;
                if reg.storage.stat(&revision_key(name, &c)).await?.is_none() {
                    return Err(RegError::with(Code::ManifestBlobUnknown, c.to_string()));
                }
            }
        }
        other => return Err(invalid(format!("unsupported manifest media type {other:?}"))),
    }
    if reg.storage.stat(&blob_key(&d)).await?.is_none() {
        reg.storage.put(&blob_key(&d), bytes.clone()).await?;
    }
    reg.storage.put(&revision_key(name, &d), Bytes::from(media_type.to_string())).await?;
    let mut resp = Response::builder()
        .status(StatusCode::CREATED)
        .header("Location", format!("/v2/{name}/manifests/{d}"))
        .header("Docker-Content-Digest", d.as_str())
        .header("Content-Length", 0);
    if let Some(subject) = v.get("subject") {
        let s = descriptor_digest(subject)?;
        let mut desc = serde_json::json!({"mediaType": media_type, "digest": d, "size": bytes.len()});
        let artifact = v
            .get("artifactType")
            .and_then(Value::as_str)
            .or_else(|| v.pointer("/config/mediaType").and_then(Value::as_str))
            .unwrap_or("");
        desc["artifactType"] = artifact.into();
        if let Some(a) = v.get("annotations") {
            desc["annotations"] = a.clone();
        }
        reg.storage.put(&referrer_key(name, &s, &d), Bytes::from(desc.to_string())).await?;
        resp = resp.header("OCI-Subject", s.as_str());
    }
    if let Reference::Tag(t) = r {
        reg.storage.put(&tag_key(name, t), Bytes::from(d.to_string())).await?;
    }
    for t in tags {
        reg.storage.put(&tag_key(name, t), Bytes::from(d.to_string())).await?;
        resp = resp.header("OCI-Tag", t.as_str());
    }
    resp.body(Body::empty()).map_err(|e| RegError::with(Code::Unknown, e.to_string()))
}

pub(crate) async fn delete(reg: &Registry, name: &str, r: &Reference) -> RegResult<Response> {
    if !reg.delete_enabled {
        return Err(RegError::with(Code::Unsupported, "deletion is disabled"));
    }
    let d = resolve(reg, name, r).await?.ok_or_else(|| RegError::new(Code::ManifestUnknown))?;
    match r {
        Reference::Tag(t) => reg.storage.delete(&tag_key(name, t)).await?,
        Reference::Digest(_) => {
            for t in reg.storage.children(&format!("repositories/{name}/_manifests/tags")).await? {
                let k = tag_key(name, &t);
                if reg.storage.read(&k).await?.is_some_and(|b| String::from_utf8_lossy(&b).trim() == d.as_str()) {
                    reg.storage.delete(&k).await?;
                }
            }
            reg.storage.delete(&revision_key(name, &d)).await?;
            // This manifest no longer refers to anything.
            for subject in reg.storage.children(&format!("repositories/{name}/_referrers")).await? {
                reg.storage.delete(&format!("repositories/{name}/_referrers/{subject}/{}", d.hex())).await?;
            }
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose subject is `digest`.
pub(crate) async fn referrers(
    reg: &Registry,
    name: &str,
    d: &Digest,
    q: &HashMap<String, String>,
) -> RegResult<Response> {
    // "Assuming a repository is found": an unknown one is the spec's 404.
    if reg.storage.children(&format!("repositories/{name}")).await?.is_empty() {
        return Err(RegError::with(Code::NameUnknown, name.to_string()));
    }
    let prefix = format!("repositories/{name}/_referrers/{}", d.hex());
    let mut manifests = Vec::new();
    for m in reg.storage.list(&prefix).await? {
        if let Some(b) = reg.storage.read(m.location.as_ref()).await? {
            if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                manifests.push(v);
            }
        }
    }
    let filter = q.get("artifactType").filter(|a| !a.is_empty());
    if let Some(a) = filter {
        manifests.retain(|m| m.get("artifactType").and_then(Value::as_str) == Some(a.as_str()));
    }
    let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut r = Response::builder().header("Content-Type", OCI_INDEX);
    if filter.is_some() {
        r = r.header("OCI-Filters-Applied", "artifactType");
    }
    r.body(Body::from(body.to_string())).map_err(|e| RegError::with(Code::Unknown, e.to_string()))
}
