//! /volumes routes, over the daemon's `VolumeBackend` contract alone (tested below against a fake).

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_api::volume::{CreateRequest, VolumeList};
use berth_daemon::backend::VolumeBackend;

use crate::error::ApiResult;
use crate::query::Query;
use crate::{json_response, JsonBody};

type Svc = State<Arc<dyn VolumeBackend>>;

/// The routes, for any state that hands out a volume backend (the daemon's, or a test's fake).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<dyn VolumeBackend>: FromRef<S>,
{
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

async fn create(State(svc): Svc, JsonBody(b): JsonBody<CreateRequest>) -> ApiResult<Response> {
    let mut r = json_response(&svc.create(b).await?);
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn list(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let volumes = svc.list(&q.filters()?).await?;
    Ok(json_response(&VolumeList { volumes, warnings: Vec::new() }))
}

async fn inspect(State(svc): Svc, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(json_response(&svc.inspect(&name).await?))
}

async fn remove(State(svc): Svc, Path(name): Path<String>, q: Query) -> ApiResult<Response> {
    svc.remove(&name, q.bool("force")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let (deleted, space) = svc.prune(&q.filters()?).await?;
    Ok(json_response(&berth_api::volume::PruneResponse { volumes_deleted: deleted, space_reclaimed: space }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use berth_api::filters::Filters;
    use berth_api::volume::Volume;
    use berth_daemon::backend::BoxFuture;
    use berth_types::Error;
    use tower::ServiceExt;

    use super::*;
    use serde_json::json;

    /// Volumes in a map; `in-use` cannot be removed (Docker's 409).
    #[derive(Default)]
    struct Fake(Mutex<BTreeMap<String, Volume>>);

    fn volume(name: &str, labels: BTreeMap<String, String>) -> Volume {
        Volume {
            created_at: "2026-01-01T00:00:00Z".into(),
            driver: "local".into(),
            labels,
            mountpoint: format!("/fake/{name}/_data"),
            name: name.into(),
            options: None,
            scope: "local".into(),
            usage_data: None,
        }
    }

    impl VolumeBackend for Fake {
        fn create(&self, req: CreateRequest) -> BoxFuture<'_, Volume> {
            let v = volume(&req.name, req.labels);
            self.0.lock().unwrap().entry(req.name.clone()).or_insert(v.clone());
            Box::pin(async move { Ok(v) })
        }
        fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Volume> {
            let v = self.0.lock().unwrap().get(name).cloned();
            Box::pin(async move { v.ok_or_else(|| Error::not_found(format!("get {name}: no such volume"))) })
        }
        fn list<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<Volume>> {
            let all: Vec<Volume> = self.0.lock().unwrap().values().cloned().collect();
            Box::pin(async move { Ok(all.into_iter().filter(|v| filters.match_labels(&v.labels)).collect()) })
        }
        fn remove<'a>(&'a self, name: &'a str, force: bool) -> BoxFuture<'a, ()> {
            let r = match (name, self.0.lock().unwrap().remove(name)) {
                ("in-use", _) => Err(Error::conflict("remove in-use: volume is in use")),
                (_, Some(_)) => Ok(()),
                (_, None) if force => Ok(()),
                (_, None) => Err(Error::not_found(format!("get {name}: no such volume"))),
            };
            Box::pin(async move { r })
        }
        fn prune<'a>(&'a self, _: &'a Filters) -> BoxFuture<'a, (Vec<String>, u64)> {
            let names: Vec<String> = std::mem::take(&mut *self.0.lock().unwrap()).into_keys().collect();
            Box::pin(async move { Ok((names, 42)) })
        }
    }

    async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn statuses_shapes_and_errors_as_docker() {
        let backend: Arc<dyn VolumeBackend> = Arc::new(Fake::default());
        let app: Router = routes().with_state(backend);
        let (s, v) = call(&app, "POST", "/volumes/create", r#"{"Name": "data", "Labels": {"k": "v"}}"#).await;
        assert_eq!((s, v["Name"].as_str(), v["Options"].is_null()), (StatusCode::CREATED, Some("data"), true));
        // Nulls read as absent; a mistyped member is a 400 in Docker's error shape.
        assert_eq!(
            call(&app, "POST", "/volumes/create", r#"{"Name": "x", "Labels": null}"#).await.0,
            StatusCode::CREATED
        );
        let (s, v) = call(&app, "POST", "/volumes/create", r#"{"Name": 7}"#).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert_eq!(call(&app, "POST", "/volumes/create", "{not json").await.0, StatusCode::BAD_REQUEST);
        // A body that is not JSON at all, said so by its type: refused before it is read as JSON.
        let req = Request::builder().method("POST").uri("/volumes/create").header("Content-Type", "text/plain");
        let r = app.clone().oneshot(req.body(Body::from("{}")).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let (s, v) = call(&app, "GET", "/volumes/data", "").await;
        assert_eq!((s, v["Labels"]["k"].as_str()), (StatusCode::OK, Some("v")));
        let (s, v) = call(&app, "GET", "/volumes/nope", "").await;
        assert_eq!((s, v["message"].as_str()), (StatusCode::NOT_FOUND, Some("get nope: no such volume")));
        // Filters: the label filter reaches the backend; a malformed filters value is a 400.
        let (s, v) = call(&app, "GET", "/volumes?filters=%7B%22label%22%3A%5B%22k%3Dv%22%5D%7D", "").await;
        assert_eq!(
            (s, v["Volumes"].as_array().map(Vec::len), v["Warnings"].clone()),
            (StatusCode::OK, Some(1), json!([]))
        );
        assert_eq!(call(&app, "GET", "/volumes?filters=%7Bbad", "").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "DELETE", "/volumes/in-use", "").await.0, StatusCode::CONFLICT);
        assert_eq!(call(&app, "DELETE", "/volumes/gone", "").await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "DELETE", "/volumes/gone?force=1", "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "DELETE", "/volumes/data", "").await.0, StatusCode::NO_CONTENT);
        let (s, v) = call(&app, "POST", "/volumes/prune", "").await;
        assert_eq!((s, v), (StatusCode::OK, json!({"VolumesDeleted": ["x"], "SpaceReclaimed": 42})));
    }
}
