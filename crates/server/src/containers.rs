//! /containers routes, over `ContainerService` alone.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
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
use crate::{hijack, json_response, AppState, JsonBody};

type Svc = State<Arc<ContainerService>>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}", delete(remove))
}

async fn create(
    State(svc): Svc,
    q: Query,
    JsonBody(body): JsonBody<CreateRequest>,
) -> ApiResult<Response> {
    let (id, warnings) = svc.create(body, q.str("name")).await?;
    let mut r = json_response(&CreateResponse { id, warnings });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn list(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    Ok(json_response(&svc.list(
        q.bool("all"),
        limit,
        &q.filters()?,
    )?))
}

async fn inspect(State(svc): Svc, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json_response(&svc.inspect(&id)?))
}

async fn start(State(svc): Svc, Path(id): Path<String>) -> ApiResult<StatusCode> {
    svc.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stop(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
    svc.stop(&id, q.int("t")?, q.str("signal").filter(|s| !s.is_empty()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<StatusCode> {
    match svc
        .stop(&id, q.int("t")?, q.str("signal").filter(|s| !s.is_empty()))
        .await
    {
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
        let resp = WaitResponse {
            status_code: w.exit_code,
            error: w.error.map(|message| WaitError { message }),
        };
        let mut b = serde_json::to_vec(&resp).unwrap_or_default();
        b.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(b))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn attach(
    State(svc): Svc,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> ApiResult<Response> {
    let opts = AttachOptions {
        stdin: q.bool("stdin"),
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        stream: q.bool("stream"),
        logs: q.bool("logs"),
    };
    let a = svc.attach(&id, opts).await?;
    Ok(hijack::respond(req, a))
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
        return Err(ApiError(Error::invalid(
            "Bad parameters: you must choose at least one stream",
        )));
    }
    let tail = match q.str("tail").unwrap_or("all") {
        "" | "all" => None,
        n => Some(
            n.parse::<i64>()
                .map_err(|_| ApiError(Error::invalid(format!("invalid tail {n:?}"))))?
                .max(0) as usize,
        ),
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
        let bytes = if tty {
            data.to_vec()
        } else {
            stdcopy::frame(s, &data)
        };
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)), rx))
    });
    let mut r = Response::new(Body::from_stream(body));
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(r)
}

async fn remove(State(svc): Svc, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    svc.remove(&id, q.bool("force"), q.bool("v")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
