//! API version negotiation and the headers every response carries.

use std::future::Future;
use std::pin::Pin;

use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_api::{version_cmp, API_VERSION, ENGINE_VERSION, MIN_API_VERSION};
use berth_types::Error;

use crate::error::ApiError;

/// The version a request asked for (the prefix), or the current one when unprefixed.
#[derive(Debug, Clone)]
pub struct ApiVersion(pub String);

impl ApiVersion {
    pub fn less_than(&self, v: &str) -> bool {
        version_cmp(&self.0, v) == std::cmp::Ordering::Less
    }
}

pub type VersionFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

type Negotiate = fn(Request, Next) -> VersionFuture;

/// The complete API service: negotiation around the router.
pub type Api = axum::middleware::FromFn<Negotiate, (), Router, (Request,)>;

pub fn layer(router: Router) -> Api {
    let f: Negotiate = |req, next| Box::pin(negotiate(req, next));
    tower::Layer::layer(&axum::middleware::from_fn(f), router)
}

/// Splits `/v1.44/containers/json` into ("1.44", "/containers/json").
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let v = &rest[..end];
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((v, &rest[end..]))
}

async fn negotiate(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let mut version = API_VERSION.to_string();
    if let Some((v, rest)) = split_version(&path) {
        if version_cmp(v, API_VERSION).is_gt() {
            return with_headers(
                ApiError(Error::invalid(format!(
                    "client version {v} is too new. Maximum supported API version is {API_VERSION}"
                )))
                .into_response(),
            );
        }
        if version_cmp(v, MIN_API_VERSION).is_lt() {
            return with_headers(ApiError(Error::invalid(format!(
                "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
            ))).into_response());
        }
        version = v.to_string();
        let rest = if rest.is_empty() { "/" } else { rest };
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = pq.parse().ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    // The span covers the handler and everything it logs (services included), not just this line.
    let span = tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), version = %version);
    span.in_scope(|| tracing::debug!("api request"));
    req.extensions_mut().insert(ApiVersion(version));
    with_headers(tracing::Instrument::instrument(next.run(req), span).await)
}

fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    if let Ok(v) = HeaderValue::from_str(&format!("Docker/{ENGINE_VERSION} (linux)")) {
        h.insert("Server", v);
    }
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits() {
        assert_eq!(super::split_version("/v1.44/info"), Some(("1.44", "/info")));
        assert_eq!(super::split_version("/v1.24/containers/x/json"), Some(("1.24", "/containers/x/json")));
        assert_eq!(super::split_version("/volumes"), None);
        assert_eq!(super::split_version("/info"), None);
    }
}
