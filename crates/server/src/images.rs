//! /images routes, over `ImageService` alone. Names may contain slashes, so the routes below
//! `/images/` are one catch-all that dispatches on the last path segment.

use berth_api::image::{ImageGraphDriver, ImageInspect, ImageMetadata, ImageSummary, InspectRootFs};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, Path, Request, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_api::progress;
use berth_daemon::images::{PullOptions, PushOptions};
use berth_daemon::ImageService;
use berth_distribution::manifest::Platform;
use berth_distribution::AuthConfig;
use berth_image::{Image, ImportOptions};
use berth_types::{short_id, Error, Reference};
use futures_util::TryStreamExt;
use serde_json::{json, Value};
use tokio_util::io::StreamReader;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::version::ApiVersion;
use crate::{json_response, shape, AppState};

type Svc = State<Arc<ImageService>>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create).layer(DefaultBodyLimit::disable()))
        .route("/images/get", get(save_many))
        .route("/images/load", post(load).layer(DefaultBodyLimit::disable()))
        .route("/images/prune", post(prune))
        .route("/distribution/{*rest}", get(distribution))
        .route("/images/{*rest}", get(get_dispatch).post(post_dispatch).delete(remove))
}

fn unix(t: Option<&str>) -> i64 {
    t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|d| d.timestamp()).unwrap_or(0)
}

fn summary(img: &Image, containers: usize) -> ImageSummary {
    ImageSummary {
        id: img.id.to_string(),
        parent_id: img.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        repo_tags: img.tags.iter().map(|t| t.familiar()).collect(),
        repo_digests: img.repo_digests.iter().map(|t| t.familiar()).collect(),
        created: unix(img.config.created.as_deref()),
        size: img.size,
        shared_size: -1,
        labels: img.config.config.labels.clone(),
        containers: i64::try_from(containers).unwrap_or(i64::MAX),
        manifests: None,
    }
}

async fn list(
    State(svc): Svc,
    State(ctrs): State<Arc<berth_daemon::ContainerService>>,
    q: Query,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<Response> {
    let f = q.filters()?;
    f.validate(&["dangling", "label", "reference", "before", "since", "until"])
        .map_err(|e| ApiError(Error::invalid(e)))?;
    let all = svc.list().await?;
    let created = |name: &str| {
        all.iter()
            .find(|i| {
                i.tags.iter().any(|t| t.familiar() == name || t.to_string() == name) || i.id.hex().starts_with(name)
            })
            .and_then(|i| i.config.created.clone())
    };
    let before = f
        .get("before")
        .first()
        .map(|n| created(n).ok_or_else(|| ApiError(Error::not_found(format!("No such image: {n}")))))
        .transpose()?;
    let since = f
        .get("since")
        .first()
        .map(|n| created(n).ok_or_else(|| ApiError(Error::not_found(format!("No such image: {n}")))))
        .transpose()?;
    // Untagged images other images were built from are intermediate steps: only `-a` shows them.
    let parents: std::collections::HashSet<&berth_types::Digest> =
        all.iter().filter_map(|i| i.parent.as_ref()).collect();
    let show_all = q.bool("all");
    // The other platforms of a multi-platform image are listed under its references (Manifests).
    let platforms = svc.platform_images().await?;
    let member = |i: &Image| i.tags.is_empty() && platforms.contains(&i.id);
    let mut out: Vec<&Image> = all
        .iter()
        .filter(|i| show_all || !(i.tags.is_empty() && i.repo_digests.is_empty() && parents.contains(&i.id)))
        .filter(|i| show_all || !member(i))
        .filter(|i| match f.get("dangling").first().map(String::as_str) {
            Some("true") | Some("1") => i.tags.is_empty() && !member(i),
            Some("false") | Some("0") => !i.tags.is_empty(),
            _ => true,
        })
        .filter(|i| f.match_labels(&i.config.config.labels))
        .filter(|i| {
            let refs = f.get("reference");
            refs.is_empty() || refs.iter().any(|p| i.tags.iter().any(|t| reference_matches(p, t)))
        })
        .filter(|i| before.as_ref().is_none_or(|b| i.config.created.as_ref() < Some(b)))
        .filter(|i| since.as_ref().is_none_or(|s| i.config.created.as_ref() > Some(s)))
        .collect();
    out.sort_by(|a, b| b.config.created.cmp(&a.config.created));
    // How many containers use each image (API 1.51+; -1 before).
    let used = ctrs.image_users();
    // `identity` (1.54) asks for the manifests, each with its image's origin.
    let with_identity = q.bool("identity") && !v.less_than("1.54");
    let with_manifests = (q.bool("manifests") && !v.less_than("1.47")) || with_identity;
    let mut list: Vec<Value> = Vec::with_capacity(out.len());
    for i in out {
        let mut s = summary(i, used.get(i.id.as_str()).copied().unwrap_or(0));
        if with_manifests {
            s.manifests = Some(svc.manifests(i, with_identity).await?.unwrap_or_default());
        }
        let mut s = serde_json::to_value(s).unwrap_or_default();
        shape::image_summary(&v, &mut s);
        list.push(s);
    }
    Ok(json_response(&list))
}

/// `reference` filter: a glob over the familiar name, with or without its tag.
fn reference_matches(pattern: &str, r: &Reference) -> bool {
    let fam = r.familiar();
    let repo = r.familiar_repository();
    berth_api::filters::glob(pattern, &fam) || berth_api::filters::glob(pattern, &repo)
}

/// The newest shape of `GET /images/{name}/json`, before the pull's descriptor and manifests.
fn inspect(img: &Image) -> ImageInspect {
    let c = &img.config;
    let text = |o: &Option<String>| o.clone().unwrap_or_default();
    ImageInspect {
        id: img.id.to_string(),
        repo_tags: img.tags.iter().map(|t| t.familiar()).collect(),
        repo_digests: img.repo_digests.iter().map(|t| t.familiar()).collect(),
        parent: img.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        comment: text(&c.comment),
        created: text(&c.created),
        docker_version: text(&c.docker_version),
        author: text(&c.author),
        config: c.config.clone(),
        architecture: c.architecture.clone(),
        variant: c.variant.clone(),
        os: c.os.clone(),
        size: img.size,
        graph_driver: ImageGraphDriver { name: "overlay2".into(), data: None },
        root_fs: InspectRootFs { kind: "layers".into(), layers: c.rootfs.diff_ids.clone() },
        metadata: ImageMetadata { last_tag_time: berth_api::ZERO_TIME.into() },
        descriptor: None,
        manifests: None,
        identity: None,
    }
}

/// `shape::image_inspect` makes the older shapes.
fn inspect_json(typed: ImageInspect, img: &Image, v: &ApiVersion) -> Value {
    let mut j = serde_json::to_value(typed).unwrap_or_default();
    let legacy = json!({
        "Container": img.config.container.clone().unwrap_or_default(),
        "ContainerConfig": img.config.container_config.clone().unwrap_or_default(),
    });
    shape::image_inspect(v, &mut j, &legacy);
    j
}

/// The `platform` parameters a request gives: JSON-encoded OCI platforms from 1.46 (one per
/// parameter, or a JSON array), or `os/arch[/variant]`.
fn platforms(asked: &[String]) -> ApiResult<Vec<Platform>> {
    let asked: Vec<String> = asked
        .iter()
        .flat_map(|p| match serde_json::from_str::<Vec<Value>>(p) {
            Ok(list) => list.iter().map(Value::to_string).collect(),
            Err(_) => vec![p.clone()],
        })
        .collect();
    let mut out = Vec::new();
    for p in asked.iter().filter(|p| !p.is_empty()) {
        out.push(match serde_json::from_str(p) {
            Ok(w) => w,
            Err(_) if !p.trim_start().starts_with('{') => Platform::parse(p)?,
            Err(e) => return Err(ApiError(Error::invalid(format!("invalid platform {p:?}: {e}")))),
        });
    }
    Ok(out)
}

/// The platforms a save or load keeps: one from 1.48, several from 1.52, every one before.
fn save_platforms(q: &Query, v: &ApiVersion) -> ApiResult<Vec<Platform>> {
    let mut p = if v.less_than("1.48") { Vec::new() } else { platforms(&q.all("platform"))? };
    if v.less_than("1.52") {
        p.truncate(1);
    }
    Ok(p)
}

/// The image `name` names for the request's `platform` (one; the first when several are given).
async fn resolve_for(svc: &ImageService, name: &str, asked: &[String]) -> ApiResult<Image> {
    let p = platforms(asked)?;
    Ok(svc.resolve_for(name, p.first()).await?)
}

/// Streams an archive: the blocking writer fills one end of a pipe, the response drains the other.
async fn tar_stream(svc: &ImageService, names: Vec<String>, platforms: &[Platform]) -> ApiResult<Response> {
    let (w, r) = tokio::io::duplex(256 * 1024);
    svc.save(names, platforms, w).await?;
    Response::builder()
        .header("Content-Type", "application/x-tar")
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(r)))
        .map_err(|e| ApiError(Error::internal(e.to_string())))
}

async fn save_many(State(svc): Svc, q: Query, Extension(v): Extension<ApiVersion>) -> ApiResult<Response> {
    let names = q.all("names");
    if names.is_empty() {
        return Err(ApiError(Error::invalid("no images to save: give names=")));
    }
    tar_stream(&svc, names, &save_platforms(&q, &v)?).await
}

async fn load(State(svc): Svc, q: Query, Extension(v): Extension<ApiVersion>, req: Request) -> ApiResult<Response> {
    let platforms = save_platforms(&q, &v)?;
    let body = StreamReader::new(req.into_body().into_data_stream().map_err(std::io::Error::other));
    // As Docker: the answer is a 200 JSON stream whatever happens, and a load that fails says so
    // in it (the docker CLI prints it and exits 1; docker-py raises ImageLoadError from it).
    let mut out = Vec::new();
    match svc.load(body, &platforms).await {
        Ok(lines) => {
            for l in lines {
                out.extend(progress::stream(&format!("{l}\n")));
            }
        }
        Err(e) => out.extend(progress::error(&e.message)),
    }
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from(out))
        .map_err(|e| ApiError(Error::internal(e.to_string())))
}

async fn prune(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let (out, space) = svc.prune(&q.filters()?).await?;
    // DeleteResponse serialises as Docker's `{"Untagged": ...}` / `{"Deleted": ...}`.
    let deleted = if out.is_empty() { Value::Null } else { json!(out) };
    Ok(json_response(&json!({"ImagesDeleted": deleted, "SpaceReclaimed": space})))
}

async fn get_dispatch(
    State(svc): Svc,
    Path(rest): Path<String>,
    q: Query,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<Response> {
    // `docker search` asks an index (Docker Hub's search API); berthd has none to ask. A clear
    // 501 the CLI prints, rather than "page not found" or an image lookup of "search".
    if rest == "search" {
        return Err(ApiError(Error::not_implemented(
            "image search is not supported by berthd: it has no index service to search (list a registry's repositories with GET /v2/_catalog)",
        )));
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return tar_stream(&svc, vec![name.to_string()], &save_platforms(&q, &v)?).await;
    }
    if let Some(name) = rest.strip_suffix("/json") {
        let img = if v.less_than("1.49") {
            svc.resolve(name).await?
        } else {
            resolve_for(&svc, name, &q.all("platform")).await?
        };
        let mut typed = inspect(&img);
        typed.descriptor = svc.descriptor(&img).await?;
        typed.identity = berth_daemon::images::identity(&img);
        if q.bool("manifests") {
            typed.manifests = Some(svc.manifests(&img, false).await?.unwrap_or_default());
        }
        return Ok(json_response(&inspect_json(typed, &img, &v)));
    }
    // In-toto attestations (1.55): Berth stores an image's config and layers, never the
    // attestation manifests of an index, so a known image has none.
    if let Some(name) = rest.strip_suffix("/attestations") {
        resolve_for(&svc, name, &q.all("platform")).await?;
        return Ok(json_response(&json!([])));
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let img = if v.less_than("1.48") {
            svc.resolve(name).await?
        } else {
            resolve_for(&svc, name, &q.all("platform")).await?
        };
        // Non-empty history entries map, in order, onto the layers.
        let mut sizes = img.layer_sizes.iter();
        let mut hist: Vec<Value> = img
            .config
            .history
            .iter()
            .map(|h| {
                let size = if h.empty_layer { 0 } else { sizes.next().copied().unwrap_or(0) };
                json!({
                    "Id": "<missing>",
                    "Created": unix(h.created.as_deref()),
                    "CreatedBy": h.created_by.clone().unwrap_or_default(),
                    "Tags": null,
                    "Size": size,
                    "Comment": h.comment.clone().unwrap_or_default(),
                })
            })
            .collect();
        // Each build step still present names the history entry it ended with, as in Docker.
        let mut cur = Some(img.clone());
        while let Some(i) = cur.take() {
            if let Some(h) = i.config.history.len().checked_sub(1).and_then(|n| hist.get_mut(n)) {
                h["Id"] = json!(i.id);
                h["Tags"] = json!(i.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>());
            }
            if let Some(p) = &i.parent {
                cur = svc.resolve(p.as_str()).await.ok();
            }
        }
        hist.reverse();
        return Ok(json_response(&hist));
    }
    Err(ApiError(Error::not_found("page not found")))
}

async fn post_dispatch(State(svc): Svc, Path(rest): Path<String>, q: Query, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/push") {
        return push(svc, name, &q, &headers).await;
    }
    if let Some(name) = rest.strip_suffix("/tag") {
        svc.tag(name, q.str("repo").unwrap_or(""), q.str("tag").unwrap_or("")).await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    Err(ApiError(Error::not_found("page not found")))
}

/// `X-Registry-Auth`, decoded leniently; absent means anonymous.
fn registry_auth(headers: &HeaderMap) -> ApiResult<AuthConfig> {
    match headers.get("X-Registry-Auth").and_then(|h| h.to_str().ok()) {
        Some(h) => Ok(AuthConfig::from_header(h)?),
        None => Ok(AuthConfig::default()),
    }
}

/// A progress stream (pull, push) as a chunked JSON-lines response.
fn progress_response(rx: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) -> ApiResult<Response> {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, std::io::Error>(bytes::Bytes::from(line)), rx))
    });
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError(Error::internal(e.to_string())))
}

/// `POST /images/{name}/push?tag=`.
async fn push(svc: Arc<ImageService>, name: &str, q: &Query, headers: &HeaderMap) -> ApiResult<Response> {
    let platform = platforms(&q.all("platform"))?.into_iter().next();
    let mut reference = Reference::parse(name)?;
    if let Some(t) = q.str("tag").filter(|t| !t.is_empty()) {
        reference = reference.with_tag(t)?;
    }
    let rx = svc.push(PushOptions { reference, auth: registry_auth(headers)?, platform }).await?;
    progress_response(rx)
}

/// The reference a pull asks for: `fromImage` with `tag` (a tag or a digest) applied, as Docker does.
fn pull_reference(image: &str, tag: &str) -> ApiResult<Reference> {
    let r = Reference::parse(image)?;
    if tag.is_empty() {
        return Ok(r);
    }
    Ok(match tag.parse::<berth_types::Digest>() {
        Ok(d) => r.digested(d),
        Err(_) => r.with_tag(tag)?,
    })
}

/// `GET /distribution/{name}/json`: what the registry holds for a reference.
async fn distribution(State(svc): Svc, Path(name): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let name = name.strip_suffix("/json").ok_or_else(|| ApiError(Error::not_found("page not found")))?;
    let r = Reference::parse_tagged(name)?;
    Ok(json_response(&svc.distribution_inspect(&r, registry_auth(&headers)?).await?))
}

async fn remove(State(svc): Svc, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    // `platforms` (1.50): only those platforms of a multi-platform image.
    let only = platforms(&q.all("platforms"))?;
    if !only.is_empty() {
        return Ok(json_response(&svc.delete_platforms(&name, &only, q.bool("force")).await?));
    }
    Ok(json_response(&svc.delete(&name, q.bool("force")).await?))
}

/// `POST /images/create`: a pull with `fromImage`, an import with `fromSrc=-` (the body is the tar).
async fn create(State(svc): Svc, q: Query, req: Request) -> ApiResult<Response> {
    if let Some(image) = q.str("fromImage").filter(|s| !s.is_empty()) {
        let reference = pull_reference(image, q.str("tag").unwrap_or(""))?;
        let platform = match q.str("platform").filter(|p| !p.is_empty()) {
            Some(p) => Some(Platform::parse(p)?),
            None => None,
        };
        let auth = registry_auth(req.headers())?;
        let rx = svc.pull(PullOptions { reference, platform, auth }).await?;
        return progress_response(rx);
    }
    let src = q.str("fromSrc").unwrap_or("");
    if src != "-" {
        return Err(ApiError(Error::invalid(if src.is_empty() {
            "either fromImage or fromSrc must be given".to_string()
        } else {
            format!("importing from {src:?} is not supported: send the archive as the request body (fromSrc=-)")
        })));
    }
    let reference = match q.str("repo").filter(|s| !s.is_empty()) {
        None => None,
        Some(repo) => {
            let r = Reference::parse(repo)?;
            Some(match q.str("tag").filter(|s| !s.is_empty()) {
                Some(t) => r.with_tag(t)?,
                None => Reference::parse_tagged(repo)?,
            })
        }
    };
    let opts = ImportOptions {
        reference,
        message: q.str("message").unwrap_or("").to_string(),
        changes: q.all("changes").into_iter().flat_map(|c| c.lines().map(String::from).collect::<Vec<_>>()).collect(),
        created: None,
    };
    let body = StreamReader::new(req.into_body().into_data_stream().map_err(std::io::Error::other));
    let id = svc.import(body, opts).await?;
    tracing::info!(image = %short_id(id.as_str()), "imported");
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from(progress::status(id.as_str())))
        .map_err(|e| ApiError(Error::internal(e.to_string())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs() {
        assert!(berth_api::filters::glob("bus*", "busybox:latest"));
        assert!(berth_api::filters::glob("*box*", "busybox:latest"));
        assert!(!berth_api::filters::glob("alp*", "busybox"));
        assert!(berth_api::filters::glob("busybox", "busybox"));
        assert!(berth_api::filters::glob("a*b*c", "aXbYbZc"));
        assert!(!berth_api::filters::glob("a*b*c", "aXbYbZ"));
        assert!(berth_api::filters::glob("**", ""));
        // Once exponential (25 stars) and a stack overflow (200k): now a linear scan.
        let hostile = "*".repeat(25) + "x";
        assert!(!berth_api::filters::glob(&hostile, &"a".repeat(60)));
        let huge = "*a".repeat(100_000);
        assert!(!berth_api::filters::glob(&huge, &"a".repeat(1000)));
    }
}
