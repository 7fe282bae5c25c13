//! /volumes routes, over `VolumeService` alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_daemon::volumes::volume_json;
use berth_daemon::VolumeService;
use serde::Deserialize;
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

async fn create(State(svc): Svc, JsonBody(b): JsonBody<CreateBody>) -> ApiResult<Response> {
    let v = svc
        .create(b.name, b.driver.unwrap_or_default(), b.driver_opts.unwrap_or_default(), b.labels.unwrap_or_default())
        .await?;
    let mut r = json_response(&volume_json(&v, None));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn list(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let vols = svc.list(&q.filters()?).await?;
    Ok(json_response(&json!({
        "Volumes": vols.iter().map(|v| volume_json(v, None)).collect::<Vec<_>>(),
        "Warnings": [],
    })))
}

async fn inspect(State(svc): Svc, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(json_response(&volume_json(&svc.inspect(&name).await?, None)))
}

async fn remove(State(svc): Svc, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    svc.remove(&name, q.bool("force")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let (deleted, space) = svc.prune(&q.filters()?).await?;
    Ok(json_response(&json!({"VolumesDeleted": deleted, "SpaceReclaimed": space})))
}
