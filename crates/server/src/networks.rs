//! /networks routes, over the daemon's `NetworkBackend` contract alone (tested below against a fake).

use std::sync::Arc;

use axum::extract::{Extension, FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_api::network::{ConnectRequest, CreateRequest, CreateResponse};
use berth_daemon::backend::NetworkBackend;
use berth_types::Error;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::version::ApiVersion;
use crate::{json_response, JsonBody};

type Svc = State<Arc<dyn NetworkBackend>>;

/// The routes, for any state that hands out a network backend (the daemon's, or a test's fake).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<dyn NetworkBackend>: FromRef<S>,
{
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

async fn create(
    State(svc): Svc,
    Extension(v): Extension<ApiVersion>,
    JsonBody(b): JsonBody<CreateRequest>,
) -> ApiResult<Response> {
    // EnableIPv4 is read from 1.48; IPv6-only networks are experimental in Docker, and not here.
    if b.enable_ipv4 == Some(false) && !v.less_than("1.48") {
        return Err(ApiError(Error::invalid("IPv4 can only be disabled if experimental features are enabled")));
    }
    let id = svc.create(b).await?;
    let mut r = json_response(&CreateResponse { id, warning: String::new() });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn list(State(svc): Svc, q: Query) -> ApiResult<Response> {
    Ok(json_response(&svc.list(&q.filters()?).await?))
}

async fn inspect(State(svc): Svc, Path(id): Path<String>, Extension(v): Extension<ApiVersion>) -> ApiResult<Response> {
    // IPAM statistics, from 1.52.
    Ok(json_response(&svc.inspect(&id, !v.less_than("1.52")).await?))
}

async fn remove(State(svc): Svc, Path(id): Path<String>) -> ApiResult<Response> {
    svc.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let deleted = svc.prune(&q.filters()?).await?;
    Ok(json_response(&berth_api::network::PruneResponse { networks_deleted: Some(deleted).filter(|d| !d.is_empty()) }))
}

async fn connect(
    State(svc): Svc,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ConnectRequest>,
) -> ApiResult<StatusCode> {
    svc.connect(&id, &b.container, b.endpoint_config.unwrap_or_default()).await?;
    Ok(StatusCode::OK)
}

async fn disconnect(
    State(svc): Svc,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ConnectRequest>,
) -> ApiResult<StatusCode> {
    // `Force` only matters for swarm's stale endpoints; a local disconnect is the same either way.
    svc.disconnect(&id, &b.container).await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use berth_api::filters::Filters;
    use berth_api::network::{EndpointSettings, NetworkResource};
    use berth_daemon::backend::BoxFuture;
    use tower::ServiceExt;

    use super::*;
    use serde_json::json;

    /// Networks by name, and the last connect it was asked for.
    #[derive(Default)]
    struct Fake {
        nets: Mutex<BTreeMap<String, CreateRequest>>,
        connected: Mutex<Vec<(String, String, EndpointSettings)>>,
    }

    fn resource(name: &str, status: bool) -> NetworkResource {
        let v = json!({"Name": name, "Id": format!("id-{name}"), "Created": "", "Scope": "local", "Driver": "bridge",
            "EnableIPv4": true, "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": []},
            "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
            "ConfigOnly": false, "Containers": {}, "Options": {}, "Labels": {}});
        let mut r: NetworkResource = serde_json::from_value(v).unwrap();
        if status {
            r.status = Some(serde_json::from_value(json!({"IPAM": {"Subnets": {}}})).unwrap());
        }
        r
    }

    impl NetworkBackend for Fake {
        fn create(&self, req: CreateRequest) -> BoxFuture<'_, String> {
            let name = req.name.clone();
            let dup = self.nets.lock().unwrap().insert(name.clone(), req).is_some();
            Box::pin(async move {
                match dup {
                    true => Err(Error::conflict(format!("network with name {name} already exists"))),
                    false => Ok(format!("id-{name}")),
                }
            })
        }
        fn inspect<'a>(&'a self, id: &'a str, status: bool) -> BoxFuture<'a, NetworkResource> {
            let known = self.nets.lock().unwrap().contains_key(id);
            Box::pin(async move {
                known.then(|| resource(id, status)).ok_or_else(|| Error::not_found(format!("network {id} not found")))
            })
        }
        fn list<'a>(&'a self, _: &'a Filters) -> BoxFuture<'a, Vec<NetworkResource>> {
            let names: Vec<String> = self.nets.lock().unwrap().keys().cloned().collect();
            Box::pin(async move { Ok(names.iter().map(|n| resource(n, false)).collect()) })
        }
        fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
            let gone = self.nets.lock().unwrap().remove(id).is_some();
            Box::pin(
                async move { gone.then_some(()).ok_or_else(|| Error::not_found(format!("network {id} not found"))) },
            )
        }
        fn prune<'a>(&'a self, _: &'a Filters) -> BoxFuture<'a, Vec<String>> {
            Box::pin(async move { Ok(Vec::new()) })
        }
        fn connect<'a>(&'a self, n: &'a str, c: &'a str, ep: EndpointSettings) -> BoxFuture<'a, ()> {
            self.connected.lock().unwrap().push((n.into(), c.into(), ep));
            Box::pin(async move { Ok(()) })
        }
        fn disconnect<'a>(&'a self, _: &'a str, c: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async move { Err(Error::not_found(format!("No such container: {c}"))) })
        }
    }

    async fn call(app: &Router, version: &str, method: &str, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut().insert(ApiVersion(version.to_string()));
        let r = app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn statuses_version_gates_and_typed_bodies() {
        let fake = Arc::new(Fake::default());
        let backend: Arc<dyn NetworkBackend> = fake.clone();
        let app: Router = routes().with_state(backend);
        let (s, v) = call(&app, "1.56", "POST", "/networks/create", r#"{"Name": "n1", "Labels": null}"#).await;
        assert_eq!((s, v), (StatusCode::CREATED, json!({"Id": "id-n1", "Warning": ""})));
        assert_eq!(call(&app, "1.56", "POST", "/networks/create", r#"{"Name": "n1"}"#).await.0, StatusCode::CONFLICT);
        // EnableIPv4=false is refused from 1.48; older clients' value was never read.
        let body = r#"{"Name": "v6only", "EnableIPv4": false}"#;
        assert_eq!(call(&app, "1.48", "POST", "/networks/create", body).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "1.47", "POST", "/networks/create", body).await.0, StatusCode::CREATED);
        assert_eq!(
            call(&app, "1.56", "POST", "/networks/create", r#"{"Internal": "yes"}"#).await.0,
            StatusCode::BAD_REQUEST
        );
        // Status (IPAM statistics) only from 1.52.
        let (s, v) = call(&app, "1.52", "GET", "/networks/n1", "").await;
        assert_eq!((s, v["Status"].is_object()), (StatusCode::OK, true));
        assert!(call(&app, "1.51", "GET", "/networks/n1", "").await.1.get("Status").is_none());
        let (s, v) = call(&app, "1.56", "GET", "/networks/nope", "").await;
        assert_eq!((s, v["message"].as_str()), (StatusCode::NOT_FOUND, Some("network nope not found")));
        assert_eq!(call(&app, "1.56", "GET", "/networks", "").await.1.as_array().map(Vec::len), Some(2));
        // Connect hands the typed endpoint settings through; a mistyped one is a 400.
        let ep =
            r#"{"Container": "c1", "EndpointConfig": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.1.0.9"}}}"#;
        assert_eq!(call(&app, "1.56", "POST", "/networks/n1/connect", ep).await.0, StatusCode::OK);
        let (n, c, settings) = fake.connected.lock().unwrap()[0].clone();
        assert_eq!((n.as_str(), c.as_str(), settings.aliases), ("n1", "c1", Some(vec!["web".to_string()])));
        assert_eq!(settings.ipam_config.unwrap().ipv4_address, "10.1.0.9");
        let bad = r#"{"Container": "c1", "EndpointConfig": {"Aliases": "web"}}"#;
        assert_eq!(call(&app, "1.56", "POST", "/networks/n1/connect", bad).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(
            call(&app, "1.56", "POST", "/networks/n1/disconnect", r#"{"Container": "x"}"#).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(call(&app, "1.56", "DELETE", "/networks/n1", "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "1.56", "DELETE", "/networks/n1", "").await.0, StatusCode::NOT_FOUND);
        let (s, v) = call(&app, "1.56", "POST", "/networks/prune", "").await;
        assert_eq!((s, v), (StatusCode::OK, json!({"NetworksDeleted": null})));
    }
}
