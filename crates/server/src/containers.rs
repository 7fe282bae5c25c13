//! /containers routes, over `ContainerService` alone.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use berth_api::container::{CreateRequest, CreateResponse, WaitError, WaitResponse};
use berth_api::stdcopy;
use berth_daemon::container::{AttachOptions, LogOptions, WaitCondition};
use berth_daemon::ContainerService;
use berth_types::Error;
use futures_util::stream;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::version::ApiVersion;
use crate::{hijack, json_response, shape, AppState, JsonBody};

type Svc = State<Arc<ContainerService>>;

pub fn routes() -> Router<AppState> {
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
    let (id, warnings) = match q.str("platform").filter(|p| !p.is_empty()) {
        Some(p) => {
            let p = berth_api::image::OciPlatform::parse(p).map_err(Error::invalid)?;
            svc.create_for_platform(body, q.str("name"), &p).await?
        }
        None => svc.create(body, q.str("name")).await?,
    };
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

async fn export(State(svc): Svc, Path(id): Path<String>) -> ApiResult<Response> {
    svc.get(&id)?;
    let (w, r) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        if let Err(e) = svc.export(&id, w).await {
            tracing::warn!(container = %id, "export: {e}");
        }
    });
    Ok(tar_response(r))
}

async fn changes(State(svc): Svc, Path(id): Path<String>) -> ApiResult<Response> {
    let list: Vec<serde_json::Value> =
        svc.changes(&id).await?.into_iter().map(|c| serde_json::json!({"Path": c.path, "Kind": c.kind})).collect();
    Ok(json_response(&list))
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

async fn archive_head(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let stat = svc.archive_stat(&id, &archive_path(&q)?).await?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&stat));
    Ok(r)
}

async fn archive_get(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let (w, r) = tokio::io::duplex(256 * 1024);
    let stat = svc.archive_get(&id, &archive_path(&q)?, w).await?;
    let mut resp = tar_response(r);
    resp.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&stat));
    Ok(resp)
}

async fn archive_put(State(svc): Svc, Path(id): Path<String>, q: Query, req: Request) -> ApiResult<StatusCode> {
    use futures_util::TryStreamExt;
    let path = archive_path(&q)?;
    let body = tokio_util::io::StreamReader::new(req.into_body().into_data_stream().map_err(std::io::Error::other));
    svc.archive_put(&id, &path, q.bool("noOverwriteDirNonDir"), q.bool("copyUIDGID"), body).await?;
    Ok(StatusCode::OK)
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=`, the body an optional Config.
async fn commit(State(svc): Svc, q: Query, req: Request) -> ApiResult<Response> {
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
    let mut r = json_response(&serde_json::json!({"Id": id}));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn exec_create(
    State(svc): Svc,
    Path(id): Path<String>,
    JsonBody(cfg): JsonBody<berth_daemon::container::ExecConfig>,
) -> ApiResult<Response> {
    let id = svc.exec_create(&id, cfg).await?;
    let mut r = json_response(&serde_json::json!({"Id": id}));
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

async fn exec_start(State(svc): Svc, Path(id): Path<String>, req: Request) -> ApiResult<Response> {
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

async fn exec_inspect(State(svc): Svc, Path(id): Path<String>) -> ApiResult<Response> {
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

async fn exec_resize(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
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
    Ok(json_response(&svc.update_resources(&id, body).await?))
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
    Ok(json_response(&serde_json::json!({"ContainersDeleted": deleted, "SpaceReclaimed": space})))
}
