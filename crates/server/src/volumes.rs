//! /volumes routes, over `VolumeService` alone.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_api::volume::{CreateRequest, VolumeList};
use berth_daemon::volumes::volume_view;
use berth_daemon::VolumeService;

use serde_json::json;

use crate::error::ApiResult;
use crate::query::Query;
use crate::{json_response, AppState, JsonBody};

type Svc = State<Arc<VolumeService>>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

async fn create(State(svc): Svc, JsonBody(b): JsonBody<CreateRequest>) -> ApiResult<Response> {
    let name = Some(b.name).filter(|n| !n.is_empty());
    let v = svc.create(name, b.driver, b.driver_opts, b.labels).await?;
    let mut r = json_response(&volume_view(&v, None));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn list(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let vols = svc.list(&q.filters()?).await?;
    let volumes = vols.iter().map(|v| volume_view(v, None)).collect();
    Ok(json_response(&VolumeList { volumes, warnings: Vec::new() }))
}

async fn inspect(State(svc): Svc, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(json_response(&volume_view(&svc.inspect(&name).await?, None)))
}

async fn remove(State(svc): Svc, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    svc.remove(&name, q.bool("force")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let (deleted, space) = svc.prune(&q.filters()?).await?;
    Ok(json_response(&json!({"VolumesDeleted": deleted, "SpaceReclaimed": space})))
}
