//! `POST /grpc` and `POST /session`: BuildKit's API for buildx's docker driver. Both upgrade the
//! connection to h2c; the connection then belongs to `berth-buildkit` (gRPC server on `/grpc`,
//! gRPC client of the CLI's session on `/session`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use berth_buildkit::BuildKit;
use berth_types::Error;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/grpc", post(grpc)).route("/session", post(session))
}

/// The 101 to h2c, or Docker's 400 when the client did not ask for it.
fn upgrade(req: &Request) -> ApiResult<Response> {
    let asked =
        req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("h2c"));
    if !asked {
        return Err(ApiError(Error::invalid("upgrade to h2c required")));
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    Ok(r)
}

async fn grpc(State(bk): State<Arc<BuildKit>>, mut req: Request) -> ApiResult<Response> {
    let r = upgrade(&req)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => bk.serve_grpc(io).await,
            Err(e) => tracing::debug!("/grpc upgrade: {e}"),
        }
    });
    Ok(r)
}

async fn session(State(bk): State<Arc<BuildKit>>, mut req: Request) -> ApiResult<Response> {
    let r = upgrade(&req)?;
    let headers = req.headers().clone();
    if !headers.contains_key("X-Docker-Expose-Session-Uuid") {
        return Err(ApiError(Error::invalid("session: no X-Docker-Expose-Session-Uuid header")));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => bk.serve_session(io, &headers).await,
            Err(e) => tracing::debug!("/session upgrade: {e}"),
        }
    });
    Ok(r)
}
