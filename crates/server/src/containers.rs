//! /containers, /exec and /commit routes, over three narrow backends: the life cycle, exec, and
//! the container's files.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, FromRef, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use berth_api::container::{CreateRequest, CreateResponse, WaitError, WaitResponse};
use berth_api::stdcopy;
use berth_daemon::backend::{ArchiveBackend, ContainerLifecycle, ExecBackend};
use berth_daemon::container::{AttachOptions, LogOptions, WaitCondition};
use berth_types::Error;
use futures_util::stream;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::version::ApiVersion;
use crate::{hijack, json_response, shape, JsonBody};

type Svc = State<Arc<dyn ContainerLifecycle>>;
type Exec = State<Arc<dyn ExecBackend>>;
type Files = State<Arc<dyn ArchiveBackend>>;

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<dyn ContainerLifecycle>: FromRef<S>,
    Arc<dyn ExecBackend>: FromRef<S>,
    Arc<dyn ArchiveBackend>: FromRef<S>,
{
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{parent}/{alias}", delete(remove_link))
        .route("/containers/{id}/export", get(export))
        .route("/containers/{id}/changes", get(changes))
        .route(
            "/containers/{id}/archive",
            get(archive_get).head(archive_head).put(archive_put).layer(DefaultBodyLimit::disable()),
        )
        .route("/commit", post(commit))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/exec", post(exec_create))
        .route("/exec/{id}/start", post(exec_start))
        .route("/exec/{id}/json", get(exec_inspect))
        .route("/exec/{id}/resize", post(exec_resize))
        .route("/containers/{id}/resize", post(resize))
}

async fn create(
    State(svc): Svc,
    q: Query,
    Extension(v): Extension<ApiVersion>,
    JsonBody(mut body): JsonBody<CreateRequest>,
) -> ApiResult<Response> {
    let more_warnings = shape::create_request(&v, &mut body)?;
    let platform = match q.str("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(berth_api::image::OciPlatform::parse(p).map_err(Error::invalid)?),
        None => None,
    };
    let (id, warnings) = svc.create(body, q.str("name"), platform.as_ref()).await?;
    let warnings = warnings.into_iter().chain(more_warnings).collect();
    let mut r = json_response(&CreateResponse { id, warnings });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn list(State(svc): Svc, q: Query, Extension(v): Extension<ApiVersion>) -> ApiResult<Response> {
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let mut out = svc.list(q.bool("all"), limit, &q.filters()?)?;
    for c in out.iter_mut() {
        if q.bool("size") {
            c.sizes = svc.sizes(&c.id).await;
        }
        shape::container_summary(&v, c);
    }
    Ok(json_response(&out))
}

async fn inspect(
    State(svc): Svc,
    Path(id): Path<String>,
    q: Query,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<Response> {
    let mut c = svc.inspect(&id)?;
    if q.bool("size") {
        c.sizes = svc.sizes(&c.id).await;
    }
    let mut c = serde_json::to_value(&c).map_err(|e| ApiError(Error::internal(e.to_string())))?;
    shape::container_inspect(&v, &mut c);
    Ok(json_response(&c))
}

async fn start(State(svc): Svc, Path(id): Path<String>) -> ApiResult<StatusCode> {
    svc.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stop(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
    svc.stop(&id, q.int("t")?, q.str("signal").filter(|s| !s.is_empty())).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
    match svc.stop(&id, q.int("t")?, q.str("signal").filter(|s| !s.is_empty())).await {
        Ok(()) => {}
        Err(e) if e.kind == berth_types::ErrorKind::NotModified => {}
        Err(e) => return Err(e.into()),
    }
    svc.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kill(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
    svc.kill(&id, q.str("signal").unwrap_or("")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Headers go out at once (the CLI waits for them before it starts the container); the body
/// `{"StatusCode":N,"Error":null}` follows at exit.
async fn wait(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let cond = WaitCondition::parse(q.str("condition").unwrap_or(""))?;
    let fut = svc.wait(&id, cond)?;
    let body = stream::once(async move {
        let w = fut.await;
        let resp = WaitResponse { status_code: w.exit_code, error: w.error.map(|message| WaitError { message }) };
        let mut b = serde_json::to_vec(&resp).unwrap_or_default();
        b.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(b))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

async fn attach(State(svc): Svc, Path(id): Path<String>, q: Query, req: Request) -> ApiResult<Response> {
    let opts = AttachOptions {
        stdin: q.bool("stdin"),
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        stream: q.bool("stream"),
        logs: q.bool("logs"),
    };
    let opts_logs = opts.logs;
    let a = svc.attach(&id, opts).await?;
    let streams = hijack::Streams::from(a)
        .with_detach_keys(q.str("detachKeys").unwrap_or(""))
        .map_err(|e| ApiError(Error::invalid(e)))?;
    Ok(hijack::respond(req, streams, opts_logs))
}

/// `since`/`until` as unix seconds with an optional fraction, or RFC 3339.
fn time_param(q: &Query, k: &str) -> ApiResult<Option<f64>> {
    match q.str(k).filter(|s| !s.is_empty() && *s != "0") {
        None => Ok(None),
        Some(s) => match s.parse::<f64>() {
            Ok(v) => Ok(Some(v)),
            Err(_) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| Some(d.timestamp() as f64 + d.timestamp_subsec_nanos() as f64 / 1e9))
                .map_err(|_| ApiError(Error::invalid(format!("invalid value for {k}: {s:?}")))),
        },
    }
}

async fn logs(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let (stdout, stderr) = (q.bool("stdout"), q.bool("stderr"));
    if !stdout && !stderr {
        return Err(ApiError(Error::invalid("Bad parameters: you must choose at least one stream")));
    }
    let tail = match q.str("tail").unwrap_or("all") {
        "" | "all" => None,
        n => {
            Some(n.parse::<i64>().map_err(|_| ApiError(Error::invalid(format!("invalid tail {n:?}"))))?.max(0) as usize)
        }
    };
    let opts = LogOptions {
        stdout,
        stderr,
        follow: q.bool("follow"),
        tail,
        since: time_param(&q, "since")?,
        until: time_param(&q, "until")?,
        timestamps: q.bool("timestamps"),
    };
    let (tty, rx) = svc.logs(&id, opts)?;
    let body = stream::unfold(rx, move |mut rx| async move {
        let (s, data) = rx.recv().await?;
        let bytes = if tty { data.to_vec() } else { stdcopy::frame(s, &data) };
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)), rx))
    });
    let mut r = Response::new(Body::from_stream(body));
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(r)
}

async fn remove(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    if q.bool("link") {
        svc.remove_link(&id).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    svc.remove(&id, q.bool("force"), q.bool("v")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /containers/{parent}/{alias}?link=1`: `docker rm --link /parent/alias`.
async fn remove_link(State(svc): Svc, Path((parent, alias)): Path<(String, String)>, q: Query) -> ApiResult<Response> {
    if !q.bool("link") {
        return Err(Error::not_found(format!("No such container: {parent}/{alias}")).into());
    }
    svc.remove_link(&format!("{parent}/{alias}")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn tar_response(r: tokio::io::DuplexStream) -> Response {
    let mut resp = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(r)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    resp
}

async fn export(State(svc): Files, Path(id): Path<String>) -> ApiResult<Response> {
    let (w, r) = tokio::io::duplex(256 * 1024);
    svc.export(&id, w)?;
    Ok(tar_response(r))
}

async fn changes(State(svc): Files, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json_response(&svc.changes(&id).await?))
}

fn stat_header(stat: &berth_api::container::PathStat) -> HeaderValue {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(stat).unwrap_or_default());
    HeaderValue::from_str(&b).unwrap_or(HeaderValue::from_static(""))
}

fn archive_path(q: &Query) -> ApiResult<String> {
    match q.str("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError(Error::invalid("path is required"))),
    }
}

async fn archive_head(State(svc): Files, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let stat = svc.archive_stat(&id, &archive_path(&q)?).await?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&stat));
    Ok(r)
}

async fn archive_get(State(svc): Files, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let (w, r) = tokio::io::duplex(256 * 1024);
    let stat = svc.archive_get(&id, &archive_path(&q)?, w).await?;
    let mut resp = tar_response(r);
    resp.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&stat));
    Ok(resp)
}

async fn archive_put(State(svc): Files, Path(id): Path<String>, q: Query, req: Request) -> ApiResult<StatusCode> {
    use futures_util::TryStreamExt;
    let path = archive_path(&q)?;
    let body = tokio_util::io::StreamReader::new(req.into_body().into_data_stream().map_err(std::io::Error::other));
    svc.archive_put(&id, &path, q.bool("noOverwriteDirNonDir"), q.bool("copyUIDGID"), Box::new(body)).await?;
    Ok(StatusCode::OK)
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=`, the body an optional Config.
async fn commit(State(svc): Files, q: Query, req: Request) -> ApiResult<Response> {
    let container = q
        .str("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError(Error::invalid("container is required")))?;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 4 << 20).await.map_err(|e| ApiError(Error::invalid(e.to_string())))?;
    crate::guard::json_content(&parts.headers, &body)?;
    let config: Option<berth_api::container::Config> =
        if body.iter().all(|b| b.is_ascii_whitespace()) { None } else { crate::from_json(&body)? };
    let reference = match q.str("repo").filter(|r| !r.is_empty()) {
        None => None,
        Some(repo) => {
            let r = berth_types::Reference::parse(repo)?;
            Some(match q.str("tag").filter(|t| !t.is_empty()) {
                Some(t) => r.with_tag(t)?,
                None => berth_types::Reference::parse_tagged(repo)?,
            })
        }
    };
    let changes: Vec<String> =
        q.all("changes").iter().flat_map(|c| c.lines().map(String::from).collect::<Vec<_>>()).collect();
    let req = berth_daemon::container::CommitRequest {
        reference,
        config,
        changes,
        author: q.str("author").unwrap_or("").to_string(),
        comment: q.str("comment").unwrap_or("").to_string(),
        pause: q.str("pause").is_none_or(|_| q.bool("pause")),
    };
    let id = svc.commit(container, req).await?;
    let mut r = json_response(&berth_api::container::IdResponse { id });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn exec_create(
    State(svc): Exec,
    Path(id): Path<String>,
    JsonBody(cfg): JsonBody<berth_daemon::container::ExecConfig>,
) -> ApiResult<Response> {
    let id = svc.exec_create(&id, cfg).await?;
    let mut r = json_response(&berth_api::container::IdResponse { id });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStartBody {
    detach: bool,
    /// Chooses the framing of the answer, as Docker: raw for a TTY, multiplexed (stdcopy)
    /// otherwise — whatever the exec was created with (its process keeps its pty either way).
    tty: bool,
}

async fn exec_start(State(svc): Exec, Path(id): Path<String>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|e| ApiError(Error::invalid(e.to_string())))?;
    crate::guard::json_content(&parts.headers, &bytes)?;
    let b: ExecStartBody = if bytes.iter().all(|c| c.is_ascii_whitespace()) {
        ExecStartBody::default()
    } else {
        crate::from_json(&bytes)?
    };
    let req = Request::from_parts(parts, Body::empty());
    if b.detach {
        svc.exec_start(&id, true).await?;
        return Ok(StatusCode::OK.into_response());
    }
    // A missing exec or a stopped container is an HTTP error; the rest happens on the stream.
    svc.exec_check(&id)?;
    let tty = b.tty;
    Ok(hijack::respond_deferred(req, tty, move || async move {
        match svc.exec_start(&id, false).await {
            Ok(stream) => {
                let keys = stream.detach_keys.clone();
                let mut streams = hijack::Streams::from(stream);
                streams.tty = tty;
                streams.with_detach_keys(&keys).unwrap_or_else(|e| error_stream(tty, e))
            }
            // As Docker: a process that cannot start is reported inside the hijacked stream (the
            // exit code is in exec inspect).
            Err(e) => error_stream(tty, e.message),
        }
    })
    .await)
}

/// A stream that only says `msg` (on stdout, as Docker reports exec start failures).
fn error_stream(tty: bool, msg: String) -> hijack::Streams {
    let output = berth_daemon::container::Output::Fixed(vec![(1, bytes::Bytes::from(format!("{msg}\r\n")))]);
    hijack::Streams { tty, output, stdin: None, detach: None }
}

async fn exec_inspect(State(svc): Exec, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json_response(&svc.exec_inspect(&id)?))
}

async fn pause(State(svc): Svc, Path(id): Path<String>) -> ApiResult<StatusCode> {
    svc.set_paused(&id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unpause(State(svc): Svc, Path(id): Path<String>) -> ApiResult<StatusCode> {
    svc.set_paused(&id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rename(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let name = q.str("name").filter(|n| !n.is_empty()).ok_or_else(|| ApiError(Error::invalid("name is required")))?;
    svc.rename(&id, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `h` and `w` of a resize: Docker answers 400 for missing or malformed ones.
fn size(q: &Query) -> ApiResult<(u16, u16)> {
    let dim = |k: &str| -> ApiResult<u16> {
        q.str(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError(Error::invalid(format!("invalid {k}: {:?}", q.str(k).unwrap_or("")))))
    };
    Ok((dim("h")?, dim("w")?))
}

async fn resize(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let (h, w) = size(&q)?;
    svc.resize(&id, h, w).await?;
    Ok(StatusCode::OK)
}

async fn exec_resize(State(svc): Exec, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let (h, w) = size(&q)?;
    svc.exec_resize(&id, h, w).await?;
    Ok(StatusCode::OK)
}

async fn update(
    State(svc): Svc,
    Path(id): Path<String>,
    Extension(v): Extension<ApiVersion>,
    crate::JsonBody(body): crate::JsonBody<berth_daemon::container::UpdateConfig>,
) -> ApiResult<Response> {
    // Per-device block I/O rules are read from 1.55 (moby ignored them before).
    let body = if v.less_than("1.55") { body.without_blkio_devices() } else { body };
    Ok(json_response(&svc.update(&id, body).await?))
}

async fn top(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    Ok(json_response(&svc.top(&id, q.str("ps_args").unwrap_or("")).await?))
}

/// `stream=1` (default): a sample a second, each with the previous as `precpu_stats`. `stream=0`:
/// one sample whose precpu is half a second older (so the client can compute CPU%), or none with
/// `one-shot=1`.
async fn stats(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let stream = q.str("stream").is_none_or(|_| q.bool("stream"));
    let first = svc.stats(&id, None).await?;
    if !stream {
        let v = if q.bool("one-shot") {
            first
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            svc.stats(&id, Some(first)).await?
        };
        return Ok(json_response(&v));
    }
    let body = futures_util::stream::unfold((svc, id, Some(first), true), |(svc, id, prev, first_round)| async move {
        if !first_round {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let v = if first_round { prev.clone()? } else { svc.stats(&id, prev).await.ok()? };
        let mut line = serde_json::to_vec(&v).ok()?;
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(line)), (svc, id, Some(v), false)))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

async fn prune(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let (deleted, space) = svc.prune(&q.filters()?).await?;
    Ok(json_response(&berth_api::container::PruneResponse {
        containers_deleted: Some(deleted).filter(|d| !d.is_empty()),
        space_reclaimed: space,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::Request;
    use berth_api::container::{
        Change, ContainerInspect, ExecInspect, PathStat, Sizes, Summary, TopResponse, UpdateResponse,
    };
    use berth_api::filters::Filters;
    use berth_api::image::OciPlatform;
    use berth_api::stats::Stats;
    use berth_daemon::backend::{BoxFuture, BoxReader, Waiting};
    use berth_daemon::container::{
        AttachStream, Chunk, CommitRequest, ExecConfig, ExecStream, UpdateConfig, WaitState,
    };
    use berth_types::Result;
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    use super::*;

    /// One container, `c1` (stopped: a stop is "not modified"); records the calls that got through.
    #[derive(Default)]
    struct Fake(Mutex<Vec<String>>);

    impl Fake {
        fn saw(&self, s: String) {
            self.0.lock().unwrap().push(s);
        }
    }

    fn known(id: &str) -> Result<()> {
        match id {
            "c1" => Ok(()),
            _ => Err(Error::not_found(format!("No such container: {id}"))),
        }
    }

    fn done<'a, T: Send + 'a>(r: Result<T>) -> BoxFuture<'a, T> {
        Box::pin(async move { r })
    }

    impl ContainerLifecycle for Fake {
        fn create<'a>(
            &'a self,
            _: CreateRequest,
            name: Option<&'a str>,
            p: Option<&'a OciPlatform>,
        ) -> BoxFuture<'a, (String, Vec<String>)> {
            self.saw(format!("create {name:?} {:?}", p.map(|p| p.to_string())));
            done(Ok(("c1".into(), Vec::new())))
        }
        fn list(&self, _: bool, _: Option<usize>, _: &Filters) -> Result<Vec<Summary>> {
            Ok(Vec::new())
        }
        fn inspect(&self, id: &str) -> Result<ContainerInspect> {
            known(id).and(Err(Error::internal("not faked")))
        }
        fn sizes<'a>(&'a self, _: &'a str) -> std::pin::Pin<Box<dyn std::future::Future<Output = Sizes> + Send + 'a>> {
            Box::pin(async { Sizes::default() })
        }
        fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
            self.saw(format!("start {id}"));
            done(known(id))
        }
        fn stop<'a>(&'a self, id: &'a str, t: Option<i64>, _: Option<&'a str>) -> BoxFuture<'a, ()> {
            self.saw(format!("stop {id} {t:?}"));
            done(known(id).and(Err(Error::not_modified())))
        }
        fn kill<'a>(&'a self, id: &'a str, _: &'a str) -> BoxFuture<'a, ()> {
            done(known(id))
        }
        fn wait(&self, id: &str, _: WaitCondition) -> Result<Waiting> {
            known(id)?;
            Ok(Box::pin(async { WaitState { exits: 1, exit_code: 3, running: false, removed: false, error: None } }))
        }
        fn remove<'a>(&'a self, id: &'a str, _: bool, _: bool) -> BoxFuture<'a, ()> {
            done(known(id))
        }
        fn remove_link<'a>(&'a self, link: &'a str) -> BoxFuture<'a, ()> {
            self.saw(format!("unlink {link}"));
            done(Ok(()))
        }
        fn set_paused<'a>(&'a self, id: &'a str, _: bool) -> BoxFuture<'a, ()> {
            done(known(id))
        }
        fn rename<'a>(&'a self, id: &'a str, _: &'a str) -> BoxFuture<'a, ()> {
            done(known(id))
        }
        fn resize<'a>(&'a self, id: &'a str, h: u16, w: u16) -> BoxFuture<'a, ()> {
            self.saw(format!("resize {id} {h}x{w}"));
            done(known(id))
        }
        fn update<'a>(&'a self, id: &'a str, _: UpdateConfig) -> BoxFuture<'a, UpdateResponse> {
            done(known(id).map(|_| UpdateResponse { warnings: Vec::new() }))
        }
        fn top<'a>(&'a self, id: &'a str, _: &'a str) -> BoxFuture<'a, TopResponse> {
            done(known(id).and(Err(Error::conflict(format!("container {id} is not running")))))
        }
        fn stats<'a>(&'a self, id: &'a str, _: Option<Stats>) -> BoxFuture<'a, Stats> {
            done(known(id).and(Err(Error::internal("not faked"))))
        }
        fn logs(&self, id: &str, _: LogOptions) -> Result<(bool, mpsc::Receiver<Chunk>)> {
            known(id)?;
            let (tx, rx) = mpsc::channel(1);
            tx.try_send((1, bytes::Bytes::from_static(b"hi\n"))).unwrap();
            Ok((false, rx))
        }
        fn attach<'a>(&'a self, id: &'a str, _: AttachOptions) -> BoxFuture<'a, AttachStream> {
            done(known(id).and(Err(Error::internal("not faked"))))
        }
        fn prune<'a>(&'a self, _: &'a Filters) -> BoxFuture<'a, (Vec<String>, u64)> {
            done(Ok((vec!["c1".into()], 7)))
        }
    }

    impl ExecBackend for Fake {
        fn exec_create<'a>(&'a self, c: &'a str, _: ExecConfig) -> BoxFuture<'a, String> {
            done(known(c).map(|_| "e1".to_string()))
        }
        fn exec_check(&self, id: &str) -> Result<()> {
            Err(Error::not_found(format!("No such exec instance: {id}")))
        }
        fn exec_start<'a>(&'a self, id: &'a str, _: bool) -> BoxFuture<'a, ExecStream> {
            done(Err(Error::not_found(format!("No such exec instance: {id}"))))
        }
        fn exec_inspect(&self, id: &str) -> Result<ExecInspect> {
            Err(Error::not_found(format!("No such exec instance: {id}")))
        }
        fn exec_resize<'a>(&'a self, id: &'a str, _: u16, _: u16) -> BoxFuture<'a, ()> {
            done(Err(Error::not_found(format!("No such exec instance: {id}"))))
        }
    }

    impl ArchiveBackend for Fake {
        fn archive_stat<'a>(&'a self, id: &'a str, path: &'a str) -> BoxFuture<'a, PathStat> {
            let stat =
                PathStat { name: path.into(), size: 1, mode: 0, mtime: String::new(), link_target: String::new() };
            done(known(id).map(|_| stat))
        }
        fn archive_get<'a>(&'a self, id: &'a str, _: &'a str, _: tokio::io::DuplexStream) -> BoxFuture<'a, PathStat> {
            done(known(id).and(Err(Error::not_found("Could not find the file /x in container c1"))))
        }
        fn archive_put<'a>(&'a self, id: &'a str, _: &'a str, _: bool, _: bool, _: BoxReader) -> BoxFuture<'a, ()> {
            done(known(id))
        }
        fn export(&self, id: &str, _: tokio::io::DuplexStream) -> Result<()> {
            known(id)
        }
        fn changes<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Vec<Change>> {
            done(known(id).map(|_| vec![Change { path: "/tmp".into(), kind: 1 }]))
        }
        fn commit<'a>(&'a self, id: &'a str, req: CommitRequest) -> BoxFuture<'a, String> {
            self.saw(format!("commit {id} {:?}", req.reference.map(|r| r.to_string())));
            done(known(id).map(|_| "sha256:img".to_string()))
        }
    }

    async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut().insert(ApiVersion("1.56".into()));
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn statuses_and_error_mapping_as_docker() {
        let fake = Arc::new(Fake::default());
        let (l, e, a): (Arc<dyn ContainerLifecycle>, Arc<dyn ExecBackend>, Arc<dyn ArchiveBackend>) =
            (fake.clone(), fake.clone(), fake.clone());
        #[derive(Clone)]
        struct S(Arc<dyn ContainerLifecycle>, Arc<dyn ExecBackend>, Arc<dyn ArchiveBackend>);
        impl FromRef<S> for Arc<dyn ContainerLifecycle> {
            fn from_ref(s: &S) -> Self {
                s.0.clone()
            }
        }
        impl FromRef<S> for Arc<dyn ExecBackend> {
            fn from_ref(s: &S) -> Self {
                s.1.clone()
            }
        }
        impl FromRef<S> for Arc<dyn ArchiveBackend> {
            fn from_ref(s: &S) -> Self {
                s.2.clone()
            }
        }
        let app: Router = routes().with_state(S(l, e, a));
        let body = r#"{"Image": "busybox"}"#;
        // Create: 201 with the platform parsed; a malformed one is a 400 before the backend.
        let (s, b) = call(&app, "POST", "/containers/create?name=x&platform=linux/arm64", body).await;
        assert_eq!((s, b.contains("\"Id\":\"c1\"")), (StatusCode::CREATED, true), "{b}");
        assert_eq!(
            call(&app, "POST", "/containers/create?platform=linux/a/b/c", body).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(call(&app, "POST", "/containers/create", r#"{"Image": 7}"#).await.0, StatusCode::BAD_REQUEST);
        // Stop of a stopped container: 304; restart goes on to start it.
        assert_eq!(call(&app, "POST", "/containers/c1/stop?t=5", "").await.0, StatusCode::NOT_MODIFIED);
        assert_eq!(call(&app, "POST", "/containers/c1/restart", "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "POST", "/containers/c2/start", "").await.0, StatusCode::NOT_FOUND);
        // Wait: headers at once, then the exit; an unknown condition is a 400.
        let (s, b) = call(&app, "POST", "/containers/c1/wait", "").await;
        assert_eq!((s, b.trim()), (StatusCode::OK, r#"{"StatusCode":3,"Error":null}"#));
        assert_eq!(call(&app, "POST", "/containers/c1/wait?condition=soon", "").await.0, StatusCode::BAD_REQUEST);
        // Logs need a stream; multiplexed framing without a TTY.
        assert_eq!(call(&app, "GET", "/containers/c1/logs", "").await.0, StatusCode::BAD_REQUEST);
        let (s, b) = call(&app, "GET", "/containers/c1/logs?stdout=1", "").await;
        assert_eq!((s, b.as_bytes()[0], b.ends_with("hi\n")), (StatusCode::OK, 1, true));
        // Resize and rename check their parameters.
        assert_eq!(call(&app, "POST", "/containers/c1/resize?h=x&w=80", "").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "POST", "/containers/c1/resize?h=24&w=80", "").await.0, StatusCode::OK);
        assert_eq!(call(&app, "POST", "/containers/c1/rename", "").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "GET", "/containers/c1/top", "").await.0, StatusCode::CONFLICT);
        // Files: a path is required; a missing file is a 404; changes are typed.
        assert_eq!(call(&app, "HEAD", "/containers/c1/archive", "").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "HEAD", "/containers/c1/archive?path=/etc", "").await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/containers/c1/archive?path=/x", "").await.0, StatusCode::NOT_FOUND);
        let (s, b) = call(&app, "GET", "/containers/c1/changes", "").await;
        assert_eq!((s, b.trim()), (StatusCode::OK, r#"[{"Path":"/tmp","Kind":1}]"#));
        assert_eq!(call(&app, "POST", "/commit", "").await.0, StatusCode::BAD_REQUEST);
        let (s, b) = call(&app, "POST", "/commit?container=c1&repo=img&tag=2", "").await;
        assert_eq!((s, b.trim()), (StatusCode::CREATED, r#"{"Id":"sha256:img"}"#));
        // Exec: unknown instances are 404s before any stream is hijacked.
        assert_eq!(call(&app, "POST", "/containers/c1/exec", r#"{"Cmd": ["true"]}"#).await.0, StatusCode::CREATED);
        assert_eq!(call(&app, "POST", "/exec/e9/start", "{}").await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "GET", "/exec/e9/json", "").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&app, "POST", "/containers/prune", "").await.1.trim(),
            r#"{"ContainersDeleted":["c1"],"SpaceReclaimed":7}"#
        );
        assert_eq!(call(&app, "DELETE", "/containers/p/alias?link=1", "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(
            *fake.0.lock().unwrap(),
            [
                "create Some(\"x\") Some(\"linux/arm64\")",
                "stop c1 Some(5)",
                "stop c1 None",
                "start c1",
                "start c2",
                "resize c1 24x80",
                "commit c1 Some(\"docker.io/library/img:2\")",
                "unlink p/alias",
            ]
        );
    }
}
