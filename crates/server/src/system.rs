//! /_ping, /version, /info, /events, /plugins and the swarm endpoints Berth answers with 503.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use berth_daemon::backend::{SystemBackend, UsageKind};
use berth_daemon::events::matches;
use berth_daemon::EventBus;
use berth_types::Error;
use futures_util::stream;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::version::ApiVersion;
use crate::{json_response, shape, AppState};

pub fn routes() -> Router<AppState> {
    let swarm = || {
        any(|| async {
            ApiError(Error::unavailable("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."))
        })
    };
    let mut r = Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/events", get(events))
        .route("/plugins", get(|| async { json_response(&serde_json::json!([])) }))
        .route("/system/df", get(df))
        .route("/auth", axum::routing::post(login));
    for p in ["swarm", "nodes", "services", "tasks", "secrets", "configs"] {
        r = r.route(&format!("/{p}"), swarm()).route(&format!("/{p}/{{*rest}}"), swarm());
    }
    r
}

type System = State<Arc<dyn SystemBackend>>;

/// `POST /auth` (`docker login`): the daemon checks the credentials against the registry.
async fn login(State(sys): System, body: axum::body::Bytes) -> ApiResult<Response> {
    let mut auth: berth_api::auth::AuthConfig = crate::from_json(&body)?;
    auth.normalise();
    let token = sys.login(auth).await?;
    Ok(json_response(&berth_api::system::AuthResponse { status: "Login Succeeded".into(), identity_token: token }))
}

/// `docker system df`: images, containers, volumes and build cache with their sizes; `type`
/// picks kinds (1.42+). The version view picks the shape (`shape::disk_usage`).
async fn df(State(sys): System, q: Query, Extension(v): Extension<ApiVersion>) -> ApiResult<Response> {
    let mut kinds = Vec::new();
    for t in q.all("type") {
        kinds.push(UsageKind::parse(&t).ok_or_else(|| ApiError(Error::invalid(format!("unknown object type: {t}"))))?);
    }
    let usage = sys.disk_usage(&kinds).await?;
    Ok(json_response(&shape::disk_usage(&v, q.bool("verbose"), &usage)))
}

async fn ping() -> Response {
    let mut r = "OK".into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

async fn version(State(sys): System) -> Response {
    json_response(&sys.version())
}

async fn info(State(sys): System, Extension(v): Extension<ApiVersion>) -> ApiResult<Response> {
    let mut i = serde_json::to_value(sys.info().await?).map_err(|e| ApiError(Error::internal(e.to_string())))?;
    shape::info(&v, &mut i);
    Ok(json_response(&i))
}

/// The event stream's media type: `Accept` picks among the JSON stream types (moby's strict
/// match), else `application/jsonl` from 1.52 and `application/json` before.
fn events_media_type(v: &ApiVersion, headers: &axum::http::HeaderMap) -> &'static str {
    const TYPES: [&str; 3] = ["application/jsonl", "application/x-ndjson", "application/json-seq"];
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or("");
    for want in accept.split(',').map(|p| p.split(';').next().unwrap_or("").trim()) {
        // jsonl is a 1.53 addition; an older client asking for it gets the default.
        if let Some(t) = TYPES.iter().find(|t| **t == want && !(want == "application/jsonl" && v.less_than("1.53"))) {
            return t;
        }
    }
    if v.less_than("1.52") {
        "application/json"
    } else {
        "application/jsonl"
    }
}

async fn events(
    State(bus): State<Arc<EventBus>>,
    q: Query,
    Extension(v): Extension<ApiVersion>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let filters = q.filters()?;
    filters
        .validate(&[
            "type",
            "event",
            "container",
            "image",
            "label",
            "network",
            "volume",
            "daemon",
            "scope",
            "node",
            "service",
            "config",
            "secret",
            "plugin",
        ])
        .map_err(|e| ApiError(Error::invalid(e)))?;
    let since = q.str("since").filter(|s| !s.is_empty()).map(crate::query::parse_time).transpose()?;
    let until = q.str("until").filter(|s| !s.is_empty()).map(crate::query::parse_time).transpose()?;
    let (past, rx) = bus.subscribe(since);
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let deadline = until.map(|u| Duration::from_nanos((u - now).max(0) as u64));
    let media = events_media_type(&v, &headers);
    // RFC 7464 (json-seq): each record after an RS, ending with LF.
    let seq = media == "application/json-seq";
    let line = move |e: &berth_api::events::Event| -> Option<bytes::Bytes> {
        let e = shape::event(&v, e)?;
        let mut b = if seq { vec![0x1e] } else { Vec::new() };
        b.extend(serde_json::to_vec(&e).unwrap_or_default());
        b.push(b'\n');
        Some(bytes::Bytes::from(b))
    };
    let f2 = filters.clone();
    let initial: Vec<Result<bytes::Bytes, std::io::Error>> = past
        .iter()
        .filter(|e| matches(e, &filters) && until.is_none_or(|u| e.time_nano <= u))
        .filter_map(|e| line(e).map(Ok))
        .collect();
    let live = stream::unfold((rx, f2, line), move |(mut rx, f, line)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if until.is_some_and(|u| e.time_nano > u) => return None,
                Ok(e) if matches(&e, &f) => match line(&e) {
                    Some(b) => return Some((Ok(b), (rx, f, line))),
                    None => continue,
                },
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    let body = stream::iter(initial).chain(match deadline {
        Some(d) => live.take_until(tokio::time::sleep(d)).boxed(),
        None => live.boxed(),
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    Ok(r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times() {
        assert_eq!(crate::query::parse_time("12").unwrap(), 12_000_000_000);
        assert_eq!(crate::query::parse_time("12.5").unwrap(), 12_500_000_000);
        assert!(crate::query::parse_time("x").is_err());
        // Once a panic in the handler: multi-byte fractions, and overflowing seconds.
        assert!(crate::query::parse_time("1.ééééé").is_err());
        assert!(crate::query::parse_time("99999999999999999.1").is_err());
        assert!(crate::query::parse_time("1.").is_err());
    }
}
