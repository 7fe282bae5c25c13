//! The Engine API server.

mod body;
mod build;
mod buildkit;
mod containers;
pub mod error;
pub mod guard;
mod hijack;
mod images;
mod networks;
pub mod query;
mod shape;
mod system;
mod version;
mod volumes;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequest, Request};
use axum::response::IntoResponse;
use axum::Router;
use berth_daemon::backend::Backends;
use berth_daemon::{Daemon, EventBus};
use berth_types::Error;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest JSON body accepted (create bodies are a few KiB).
const MAX_JSON: usize = 4 << 20;

/// The router state: the daemon's services and the route backends made from them once. A local
/// wrapper only because of the orphan rule; each route module extracts just what it needs.
#[derive(Clone)]
pub struct AppState(Daemon, Backends);

macro_rules! substate {
    ($field:ident: $t:ty) => {
        impl FromRef<AppState> for Arc<$t> {
            fn from_ref(s: &AppState) -> Self {
                s.0.$field.clone()
            }
        }
    };
}
macro_rules! backend {
    ($field:ident: $t:path) => {
        impl FromRef<AppState> for Arc<dyn $t> {
            fn from_ref(s: &AppState) -> Self {
                s.1.$field.clone()
            }
        }
    };
}
substate!(events: EventBus);
substate!(buildkit: berth_buildkit::BuildKit);
backend!(images: berth_daemon::backend::ImageBackend);
backend!(system: berth_daemon::backend::SystemBackend);
backend!(volumes: berth_daemon::backend::VolumeBackend);
backend!(networks: berth_daemon::backend::NetworkBackend);
backend!(builds: berth_daemon::backend::BuildBackend);
backend!(lifecycle: berth_daemon::backend::ContainerLifecycle);
backend!(exec: berth_daemon::backend::ExecBackend);
backend!(archive: berth_daemon::backend::ArchiveBackend);

/// The whole API as a service: version negotiation wraps routing, so `/v1.44/x` routes as `/x`.
pub fn app(daemon: &Daemon) -> version::Api {
    let router = Router::new()
        .merge(system::routes())
        .merge(containers::routes())
        .merge(images::routes())
        .merge(volumes::routes())
        .merge(networks::routes())
        .merge(build::routes())
        .merge(buildkit::routes())
        .route_layer(axum::middleware::from_fn(record_metrics))
        .fallback(|| async { ApiError(Error::not_found("page not found")) })
        .layer(axum::middleware::from_fn(body::settle))
        .with_state(AppState(daemon.clone(), Backends::of(daemon)));
    version::layer(router)
}

/// Requests served so far (any route): idle detection for berthd's memory trim.
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn requests_served() -> u64 {
    SERVED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts each request by its route template (`/containers/{id}/json`: bounded label values) and
/// times it to its response head (streams run on after).
async fn record_metrics(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let route =
        req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let method = req.method().to_string();
    let start = std::time::Instant::now();
    SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let resp = next.run(req).await;
    let m = berth_daemon::metrics::get();
    let status = resp.status().as_u16().to_string();
    m.api_seconds
        .get_or_create(&berth_daemon::metrics::Route { method: method.clone(), route: route.clone() })
        .observe(start.elapsed().as_secs_f64());
    m.api_requests.get_or_create(&berth_daemon::metrics::RouteStatus { method, route, status }).inc();
    resp
}

/// A JSON body with Docker's 400 for anything malformed, and a size limit.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_JSON)
            .await
            .map_err(|e| ApiError(Error::invalid(format!("failed to read request body: {e}"))))?;
        guard::json_content(&parts.headers, &body)?;
        let text: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) { b"{}" } else { &body };
        from_json(text).map(JsonBody)
    }
}

/// A JSON request body as Docker's server reads it (`null` members are absent), with Docker's 400.
pub(crate) fn from_json<T: DeserializeOwned>(text: &[u8]) -> Result<T, ApiError> {
    let invalid = |e: serde_json::Error| ApiError(Error::invalid(format!("invalid JSON: {e}")));
    let mut v: serde_json::Value = serde_json::from_slice(text).map_err(invalid)?;
    berth_api::serde_helpers::strip_nulls(&mut v);
    serde_json::from_value(v).map_err(invalid)
}

/// `application/json` with Docker's trailing newline.
pub fn json_response(v: &impl serde::Serialize) -> axum::response::Response {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}
