//! berth-registry: the OCI distribution API (Docker Registry v2) over a storage driver.

pub mod auth;
pub mod config;
pub mod error;
pub mod gc;
pub mod keys;
mod manifests;
pub mod metrics;
mod names;
pub mod policy;
pub mod proxy;
pub mod storage;
mod tags;
mod uploads;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::{Access, Authenticator};
use crate::error::{Code, RegError, RegResult};
use crate::names::Route;
use crate::storage::Storage;

/// What every handler shares: storage, policy, auth. Nothing else: replicas are interchangeable.
pub struct Registry {
    pub storage: Storage,
    pub auth: Authenticator,
    pub read_only: bool,
    pub delete_enabled: bool,
    /// How long this process trusts its own last touch of a blob before writing a new one
    /// (a fraction of gc's grace period): touching on every read would be a write per read.
    pub touch_every: std::time::Duration,
    pub(crate) touched: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// Pull-through cache mode: what is missing here comes from this remote (see `proxy.rs`).
    pub proxy: Option<proxy::Remote>,
}

impl Registry {
    pub fn new(
        storage: Storage,
        auth: Authenticator,
        read_only: bool,
        delete_enabled: bool,
        gc_grace: std::time::Duration,
    ) -> Registry {
        Registry {
            storage,
            auth,
            read_only,
            delete_enabled,
            touch_every: (gc_grace / 4).min(std::time::Duration::from_secs(60)),
            touched: Default::default(),
            proxy: None,
        }
    }

    /// Makes this registry a pull-through cache of `remote` (read-only here).
    pub fn with_proxy(mut self, remote: proxy::Remote) -> Registry {
        self.proxy = Some(remote);
        self
    }
}

pub type Shared = Arc<Registry>;

/// The address a request came from (a request extension the server sets per connection), for the
/// failed-login limit and the audit log.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The whole service.
pub fn app(reg: Shared) -> Router {
    Router::new()
        .route("/v2/", get(base).head(base))
        .route("/v2", get(base).head(base))
        .route("/v2/{*rest}", axum::routing::any(dispatch))
        .route("/token", get(auth::token_endpoint).post(auth::token_endpoint))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/metrics", get(|| async { ([("Content-Type", "text/plain; version=0.0.4")], metrics::render()) }))
        .route("/health", get(health))
        .with_state(reg)
        .layer(axum::middleware::from_fn(access_log))
}

/// One log line per request with its status and duration; request counters.
async fn access_log(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t = Instant::now();
    let mut r = next.run(req).await;
    let status = r.status().as_u16();
    metrics::request(method.as_str(), status);
    r.headers_mut().insert("Docker-Distribution-API-Version", axum::http::HeaderValue::from_static("registry/2.0"));
    tracing::info!(%method, %path, status, ms = t.elapsed().as_secs_f64() * 1000.0, "request");
    r
}

async fn base(State(reg): State<Shared>, ext: axum::http::Extensions, headers: HeaderMap) -> RegResult<Response> {
    reg.auth.check(&headers, ext.get::<ClientAddr>().map(|c| c.0), &Access::base()).await?;
    Ok((StatusCode::OK, [("Content-Type", "application/json")], "{}").into_response())
}

async fn health(State(reg): State<Shared>) -> Response {
    match reg.storage.stat("health-check-probe").await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}\n")).into_response(),
    }
}

/// Every `/v2/<name>/...` request: the name may contain slashes, so the route is parsed by hand.
async fn dispatch(State(reg): State<Shared>, req: Request) -> Response {
    match route(reg, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(reg: Shared, req: Request) -> RegResult<Response> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().strip_prefix("/v2/").unwrap_or("");
    let raw_query = parts.uri.query().unwrap_or("");
    let query = crate::names::query(raw_query);
    let tags = crate::names::query_all(raw_query, "tag");
    let m = &parts.method;
    let route = match Route::parse(path) {
        // A tag that cannot exist names no manifest: the spec's 404 on reads and deletes (a
        // PUT of it stays a 400).
        Err(e) if e.code == Code::ManifestInvalid && matches!(*m, Method::GET | Method::HEAD | Method::DELETE) => {
            return Err(RegError::with(Code::ManifestUnknown, e.detail.unwrap_or_default()));
        }
        r => r?,
    };
    let access = Access::for_route(&route, m, &query);
    let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
    let granted = reg.auth.check(&parts.headers, client, &access).await?;
    let writes = !matches!(*m, Method::GET | Method::HEAD);
    if reg.read_only && writes {
        return Err(RegError::with(Code::Unsupported, "the registry is in read-only mode"));
    }
    if reg.proxy.is_some() && writes {
        return Err(RegError::with(Code::Unsupported, "this registry is a pull-through cache: push to its remote"));
    }
    let res = handle(&reg, route, m, (&query, &tags), parts.headers, body, &granted).await;
    if writes {
        if let Ok(r) = &res {
            let digest = r.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).unwrap_or("");
            let action = if *m == Method::DELETE { "delete" } else { "push" };
            auth::audit(&granted.caller, action, &access.name, digest, true);
        }
    }
    res
}

async fn handle(
    reg: &Shared,
    route: Route,
    m: &Method,
    (query, tags): (&std::collections::HashMap<String, String>, &[String]),
    headers: HeaderMap,
    body: axum::body::Body,
    granted: &auth::Granted,
) -> RegResult<Response> {
    let (reg, query, parts_headers) = (reg.clone(), query, headers);
    match (route, m.clone()) {
        (Route::Catalog, Method::GET) => tags::catalog(&reg, query, |repo| reg.auth.may_list(granted, repo)).await,
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            uploads::get_blob(&reg, &name, &digest, &parts_headers, *m == Method::HEAD).await
        }
        (Route::Blob { name, digest }, Method::DELETE) => uploads::delete_blob(&reg, &name, &digest).await,
        (Route::UploadStart { name }, Method::POST) => {
            // A mount copies a blob out of another repository: the caller must be able to pull
            // there, or it is an ordinary upload (as the spec allows).
            let mut query = query.clone();
            let from = query.get("from").cloned().unwrap_or_default();
            if query.contains_key("mount") && !reg.auth.may(granted, &from, "pull") {
                auth::audit(&granted.caller, "mount", &from, query.get("mount").map_or("", |s| s.as_str()), false);
                query.remove("mount");
            }
            uploads::start(&reg, &name, &query, &parts_headers, body).await
        }
        (Route::Upload { name, id }, Method::GET) => uploads::status(&reg, &name, &id).await,
        (Route::Upload { name, id }, Method::PATCH) => uploads::patch(&reg, &name, &id, &parts_headers, body).await,
        (Route::Upload { name, id }, Method::PUT) => {
            uploads::finish(&reg, &name, &id, query, &parts_headers, body).await
        }
        (Route::Upload { name, id }, Method::DELETE) => uploads::cancel(&reg, &name, &id).await,
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            manifests::get(&reg, &name, &reference, &parts_headers, *m == Method::HEAD).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            manifests::put(&reg, &name, &reference, tags, &parts_headers, body).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => manifests::delete(&reg, &name, &reference).await,
        (Route::Tags { name }, Method::GET) => tags::list(&reg, &name, query).await,
        (Route::Referrers { name, digest }, Method::GET) => manifests::referrers(&reg, &name, &digest, query).await,
        _ => Err(Code::Unsupported.into()),
    }
}
