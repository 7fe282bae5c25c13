//! /images and /distribution routes, over an [`ImageBackend`] alone. Names may contain slashes, so
//! the routes below `/images/` are one catch-all that dispatches on the last path segment.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, FromRef, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_api::auth::AuthConfig;
use berth_api::image::OciPlatform as Platform;
use berth_api::progress;
use berth_daemon::backend::{ImageBackend, Progress};
use berth_daemon::images::{ImportOptions, ListOptions, PullOptions, PushOptions};
use berth_types::{Error, Reference};
use futures_util::TryStreamExt;
use serde_json::Value;
use tokio_util::io::StreamReader;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::version::ApiVersion;
use crate::{json_response, shape};

type Images = State<Arc<dyn ImageBackend>>;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<dyn ImageBackend>: FromRef<S>,
{
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create).layer(DefaultBodyLimit::disable()))
        .route("/images/get", get(save_many))
        .route("/images/load", post(load).layer(DefaultBodyLimit::disable()))
        .route("/images/prune", post(prune))
        .route("/distribution/{*rest}", get(distribution))
        .route("/images/{*rest}", get(get_dispatch).post(post_dispatch).delete(remove))
}

async fn list(State(svc): Images, q: Query, Extension(v): Extension<ApiVersion>) -> ApiResult<Response> {
    let opts = ListOptions {
        all: q.bool("all"),
        filters: q.filters()?,
        manifests: q.bool("manifests") && !v.less_than("1.47"),
        identity: q.bool("identity") && !v.less_than("1.54"),
    };
    let list: Vec<Value> = svc
        .list(&opts)
        .await?
        .into_iter()
        .map(|s| {
            let mut s = serde_json::to_value(s).unwrap_or_default();
            shape::image_summary(&v, &mut s);
            s
        })
        .collect();
    Ok(json_response(&list))
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
            Err(_) if !p.trim_start().starts_with('{') => Platform::parse(p).map_err(Error::invalid)?,
            Err(e) => return Err(ApiError(Error::invalid(format!("invalid platform {p:?}: {e}")))),
        });
    }
    Ok(out)
}

/// The one platform a request names from API `since` (the first of several), if any.
fn platform_from(q: &Query, v: &ApiVersion, since: &str) -> ApiResult<Option<Platform>> {
    if v.less_than(since) {
        return Ok(None);
    }
    Ok(platforms(&q.all("platform"))?.into_iter().next())
}

/// The platforms a save or load keeps: one from 1.48, several from 1.52, every one before.
fn save_platforms(q: &Query, v: &ApiVersion) -> ApiResult<Vec<Platform>> {
    let mut p = if v.less_than("1.48") { Vec::new() } else { platforms(&q.all("platform"))? };
    if v.less_than("1.52") {
        p.truncate(1);
    }
    Ok(p)
}

fn body_reader(req: Request) -> berth_daemon::backend::BoxReader {
    Box::new(StreamReader::new(req.into_body().into_data_stream().map_err(std::io::Error::other)))
}

/// Streams an archive: the blocking writer fills one end of a pipe, the response drains the other.
async fn tar_stream(svc: &dyn ImageBackend, names: Vec<String>, platforms: &[Platform]) -> ApiResult<Response> {
    let (w, r) = tokio::io::duplex(256 * 1024);
    svc.save(names, platforms, w).await?;
    Response::builder()
        .header("Content-Type", "application/x-tar")
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(r)))
        .map_err(|e| ApiError(Error::internal(e.to_string())))
}

async fn save_many(State(svc): Images, q: Query, Extension(v): Extension<ApiVersion>) -> ApiResult<Response> {
    let names = q.all("names");
    if names.is_empty() {
        return Err(ApiError(Error::invalid("no images to save: give names=")));
    }
    tar_stream(svc.as_ref(), names, &save_platforms(&q, &v)?).await
}

async fn load(State(svc): Images, q: Query, Extension(v): Extension<ApiVersion>, req: Request) -> ApiResult<Response> {
    let platforms = save_platforms(&q, &v)?;
    // As Docker: the answer is a 200 JSON stream whatever happens, and a load that fails says so
    // in it (the docker CLI prints it and exits 1; docker-py raises ImageLoadError from it).
    let mut out = Vec::new();
    match svc.load(body_reader(req), &platforms).await {
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

async fn prune(State(svc): Images, q: Query) -> ApiResult<Response> {
    let (out, space) = svc.prune(&q.filters()?).await?;
    let images_deleted = Some(out).filter(|o| !o.is_empty());
    Ok(json_response(&berth_api::image::PruneResponse { images_deleted, space_reclaimed: space }))
}

async fn get_dispatch(
    State(svc): Images,
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
        return tar_stream(svc.as_ref(), vec![name.to_string()], &save_platforms(&q, &v)?).await;
    }
    if let Some(name) = rest.strip_suffix("/json") {
        let platform = platform_from(&q, &v, "1.49")?;
        let inspect = svc.inspect(name, platform.as_ref(), q.bool("manifests")).await?;
        let mut j = serde_json::to_value(inspect).map_err(|e| ApiError(Error::internal(e.to_string())))?;
        shape::image_inspect(&v, &mut j);
        return Ok(json_response(&j));
    }
    if let Some(name) = rest.strip_suffix("/attestations") {
        let platform = platform_from(&q, &v, "1.55")?;
        return Ok(json_response(&svc.attestations(name, platform.as_ref()).await?));
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let platform = platform_from(&q, &v, "1.48")?;
        return Ok(json_response(&svc.history(name, platform.as_ref()).await?));
    }
    Err(ApiError(Error::not_found("page not found")))
}

async fn post_dispatch(
    State(svc): Images,
    Path(rest): Path<String>,
    q: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/push") {
        return push(svc.as_ref(), name, &q, &headers).await;
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
        Some(h) => Ok(AuthConfig::from_header(h).map_err(Error::invalid)?),
        None => Ok(AuthConfig::default()),
    }
}

/// A progress stream (pull, push) as a chunked JSON-lines response.
fn progress_response(rx: Progress) -> ApiResult<Response> {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, std::io::Error>(bytes::Bytes::from(line)), rx))
    });
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError(Error::internal(e.to_string())))
}

/// `POST /images/{name}/push?tag=`.
async fn push(svc: &dyn ImageBackend, name: &str, q: &Query, headers: &HeaderMap) -> ApiResult<Response> {
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
async fn distribution(State(svc): Images, Path(name): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let name = name.strip_suffix("/json").ok_or_else(|| ApiError(Error::not_found("page not found")))?;
    let r = Reference::parse_tagged(name)?;
    Ok(json_response(&svc.distribution(&r, registry_auth(&headers)?).await?))
}

async fn remove(State(svc): Images, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    // `platforms` (1.50): only those platforms of a multi-platform image.
    let only = platforms(&q.all("platforms"))?;
    Ok(json_response(&svc.delete(&name, q.bool("force"), &only).await?))
}

/// `POST /images/create`: a pull with `fromImage`, an import with `fromSrc=-` (the body is the tar).
async fn create(State(svc): Images, q: Query, req: Request) -> ApiResult<Response> {
    if let Some(image) = q.str("fromImage").filter(|s| !s.is_empty()) {
        let reference = pull_reference(image, q.str("tag").unwrap_or(""))?;
        let platform = match q.str("platform").filter(|p| !p.is_empty()) {
            Some(p) => Some(Platform::parse(p).map_err(Error::invalid)?),
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
    let id = svc.import(body_reader(req), opts).await?;
    tracing::info!(image = %berth_types::short_id(&id), "imported");
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from(progress::status(&id)))
        .map_err(|e| ApiError(Error::internal(e.to_string())))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::Request;
    use berth_api::filters::Filters;
    use berth_api::image::DeleteResponseItem;
    use berth_api::image::{AttestationStatement, DistributionInspect, HistoryItem, ImageInspect, ImageSummary};
    use berth_daemon::backend::{BoxFuture, BoxReader};
    use tower::ServiceExt;

    use super::*;
    use serde_json::json;

    /// One image, `busybox`; records what the routes passed on.
    #[derive(Default)]
    struct Fake {
        seen: Mutex<Vec<String>>,
    }

    impl Fake {
        fn saw(&self, what: String) {
            self.seen.lock().unwrap().push(what);
        }
    }

    fn known(name: &str) -> berth_types::Result<()> {
        match name {
            "busybox" => Ok(()),
            _ => Err(Error::not_found(format!("No such image: {name}"))),
        }
    }

    fn inspect_of() -> ImageInspect {
        serde_json::from_value(json!({"Id": "sha256:x", "RepoTags": ["busybox:latest"], "RepoDigests": [],
            "Parent": "", "Comment": "", "Created": "", "DockerVersion": "", "Author": "", "Config": {"Cmd": ["sh"]},
            "Architecture": "amd64", "Os": "linux", "Size": 1, "GraphDriver": {"Name": "overlay2", "Data": null},
            "RootFS": {"Type": "layers", "Layers": []}, "Metadata": {"LastTagTime": ""},
            "Identity": {"Pull": [{"Repository": "docker.io/library/busybox"}]}, "Container": "c", "ContainerConfig": {}}))
        .unwrap()
    }

    impl ImageBackend for Fake {
        fn list<'a>(&'a self, opts: &'a ListOptions) -> BoxFuture<'a, Vec<ImageSummary>> {
            self.saw(format!("list manifests={} identity={}", opts.manifests, opts.identity));
            Box::pin(async { Ok(Vec::new()) })
        }
        fn inspect<'a>(&'a self, name: &'a str, p: Option<&'a Platform>, m: bool) -> BoxFuture<'a, ImageInspect> {
            self.saw(format!("inspect {name} {:?} {m}", p.map(|p| p.to_string())));
            Box::pin(async move { known(name).map(|_| inspect_of()) })
        }
        fn history<'a>(&'a self, name: &'a str, p: Option<&'a Platform>) -> BoxFuture<'a, Vec<HistoryItem>> {
            self.saw(format!("history {name} {:?}", p.map(|p| p.to_string())));
            Box::pin(async move { known(name).map(|_| Vec::new()) })
        }
        fn attestations<'a>(
            &'a self,
            name: &'a str,
            _: Option<&'a Platform>,
        ) -> BoxFuture<'a, Vec<AttestationStatement>> {
            Box::pin(async move { known(name).map(|_| Vec::new()) })
        }
        fn pull(&self, opts: PullOptions) -> BoxFuture<'_, Progress> {
            self.saw(format!("pull {} {:?}", opts.reference, opts.platform.map(|p| p.to_string())));
            Box::pin(async { Err(Error::not_found("pull access denied for nope")) })
        }
        fn push(&self, _: PushOptions) -> BoxFuture<'_, Progress> {
            Box::pin(async { Err(Error::not_found("An image does not exist locally with the tag: nope")) })
        }
        fn import(&self, _: BoxReader, _: ImportOptions) -> BoxFuture<'_, String> {
            Box::pin(async { Ok("sha256:new".to_string()) })
        }
        fn save<'a>(&'a self, names: Vec<String>, p: &'a [Platform], _: tokio::io::DuplexStream) -> BoxFuture<'a, ()> {
            self.saw(format!("save {names:?} {}", p.len()));
            Box::pin(async { Ok(()) })
        }
        fn load<'a>(&'a self, _: BoxReader, p: &'a [Platform]) -> BoxFuture<'a, Vec<String>> {
            self.saw(format!("load {}", p.len()));
            Box::pin(async { Err(Error::invalid("invalid archive: it holds no image")) })
        }
        fn tag<'a>(&'a self, name: &'a str, _: &'a str, _: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async move { known(name) })
        }
        fn delete<'a>(&'a self, name: &'a str, _: bool, p: &'a [Platform]) -> BoxFuture<'a, Vec<DeleteResponseItem>> {
            self.saw(format!("delete {name} {}", p.len()));
            Box::pin(async move { known(name).map(|_| vec![DeleteResponseItem::untagged(name)]) })
        }
        fn prune<'a>(&'a self, _: &'a Filters) -> BoxFuture<'a, (Vec<DeleteResponseItem>, u64)> {
            Box::pin(async { Ok((Vec::new(), 0)) })
        }
        fn distribution<'a>(&'a self, _: &'a Reference, _: AuthConfig) -> BoxFuture<'a, DistributionInspect> {
            Box::pin(async { Err(Error::unauthorized("authentication required")) })
        }
    }

    async fn call(app: &Router, version: &str, method: &str, uri: &str) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        req.extensions_mut().insert(ApiVersion(version.to_string()));
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        (status, axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec())
    }

    async fn json_of(app: &Router, version: &str, method: &str, uri: &str) -> (StatusCode, Value) {
        let (s, b) = call(app, version, method, uri).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn statuses_version_gates_and_platforms() {
        let fake = Arc::new(Fake::default());
        let backend: Arc<dyn ImageBackend> = fake.clone();
        let app: Router = routes().with_state(backend);
        let arm = "%7B%22os%22%3A%22linux%22%2C%22architecture%22%3A%22arm64%22%7D";
        // `platform` on inspect from 1.49, on history from 1.48; `manifests` on the list from 1.47.
        assert_eq!(
            json_of(&app, "1.48", "GET", &format!("/images/busybox/json?platform={arm}")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            json_of(&app, "1.49", "GET", &format!("/images/busybox/json?platform={arm}")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            json_of(&app, "1.48", "GET", "/images/busybox/history?platform=linux/arm64").await.0,
            StatusCode::OK
        );
        assert_eq!(json_of(&app, "1.46", "GET", "/images/json?manifests=1").await.0, StatusCode::OK);
        assert_eq!(json_of(&app, "1.47", "GET", "/images/json?manifests=1&identity=1").await.0, StatusCode::OK);
        assert_eq!(json_of(&app, "1.54", "GET", "/images/json?identity=1").await.0, StatusCode::OK);
        // Several platforms to save from 1.52, one before; `platforms` on delete.
        assert_eq!(
            call(&app, "1.51", "GET", "/images/get?names=busybox&platform=linux/amd64&platform=linux/arm64").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "1.52", "GET", "/images/get?names=busybox&platform=linux/amd64&platform=linux/arm64").await.0,
            StatusCode::OK
        );
        assert_eq!(json_of(&app, "1.50", "DELETE", "/images/busybox?platforms=linux/arm64").await.0, StatusCode::OK);
        assert_eq!(
            *fake.seen.lock().unwrap(),
            [
                "inspect busybox None false",
                "inspect busybox Some(\"linux/arm64\") false",
                "history busybox Some(\"linux/arm64\")",
                "list manifests=false identity=false",
                "list manifests=true identity=false",
                "list manifests=false identity=true",
                "save [\"busybox\"] 1",
                "save [\"busybox\"] 2",
                "delete busybox 1",
            ]
        );
        // Errors keep Docker's statuses and shape; a malformed platform is a 400 before the backend.
        let (s, v) = json_of(&app, "1.56", "GET", "/images/nope/json").await;
        assert_eq!((s, v["message"].as_str()), (StatusCode::NOT_FOUND, Some("No such image: nope")));
        assert_eq!(
            json_of(&app, "1.56", "GET", "/images/busybox/json?platform=%7B%22os%22").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(json_of(&app, "1.56", "GET", "/images/search?term=x").await.0, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(json_of(&app, "1.56", "GET", "/distribution/reg/x:1/json").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(&app, "1.56", "POST", "/images/create?fromImage=nope").await.0, StatusCode::NOT_FOUND);
        assert_eq!(json_of(&app, "1.56", "POST", "/images/create").await.0, StatusCode::BAD_REQUEST);
        // A failed load is a 200 whose stream says why, as Docker's.
        let (s, body) = call(&app, "1.56", "POST", "/images/load").await;
        assert_eq!(s, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("it holds no image"));
        // The version views: Container below 1.45 only, Identity from 1.53.
        let (_, old) = json_of(&app, "1.44", "GET", "/images/busybox/json").await;
        let (_, at52) = json_of(&app, "1.52", "GET", "/images/busybox/json").await;
        let (_, at53) = json_of(&app, "1.53", "GET", "/images/busybox/json").await;
        assert_eq!((old["Container"].as_str(), at52.get("Container")), (Some("c"), None));
        assert!(
            at52.get("Identity").is_none() && at53["Identity"]["Pull"][0]["Repository"] == "docker.io/library/busybox"
        );
    }
}
