//! /_ping, /version, /info, /events, /plugins and the swarm endpoints Berth answers with 503.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use berth_daemon::events::matches;
use berth_daemon::{EventBus, SystemService};
use berth_types::Error;
use futures_util::stream;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::{json_response, AppState};

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

/// `POST /auth` (`docker login`): the daemon checks the credentials against the registry.
async fn login(State(images): State<Arc<berth_daemon::ImageService>>, body: axum::body::Bytes) -> ApiResult<Response> {
    let mut auth: berth_distribution::AuthConfig = crate::from_json(&body)?;
    auth.normalise();
    let token = images.login(auth).await?;
    Ok(json_response(&serde_json::json!({"Status": "Login Succeeded", "IdentityToken": token})))
}

/// `docker system df`: images, containers and volumes with their sizes.
async fn df(
    State(images): State<Arc<berth_daemon::ImageService>>,
    State(containers): State<Arc<berth_daemon::ContainerService>>,
    State(volumes): State<Arc<berth_daemon::VolumeService>>,
    State(builds): State<Arc<berth_daemon::BuildService>>,
) -> ApiResult<Response> {
    let filters = berth_api::filters::Filters::default();
    let mut cs = containers.list(true, None, &filters)?;
    for c in cs.iter_mut() {
        crate::containers::add_sizes(&containers, c).await;
    }
    let imgs = images.list().await?;
    // Shared layers count once: `docker system df` reports the disk actually used.
    let layers: u64 = imgs
        .iter()
        .flat_map(|i| i.config.rootfs.diff_ids.iter().zip(&i.layer_sizes))
        .collect::<std::collections::HashMap<_, _>>()
        .values()
        .copied()
        .sum();
    let image_json: Vec<serde_json::Value> = imgs
        .iter()
        .map(|i| {
            let used = cs.iter().filter(|c| c["ImageID"] == i.id.as_str()).count();
            let created = i
                .config
                .created
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|d| d.timestamp())
                .unwrap_or(0);
            serde_json::json!({
                "Id": i.id, "ParentId": i.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(), "RepoTags": i.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
                "RepoDigests": i.repo_digests.iter().map(|t| t.familiar()).collect::<Vec<_>>(), "Created": created, "Size": i.size, "SharedSize": 0,
                "Labels": i.config.config.labels, "Containers": used,
            })
        })
        .collect();
    Ok(json_response(&serde_json::json!({
        "LayersSize": layers,
        "Images": image_json,
        "Containers": cs,
        "Volumes": volumes.usage().await?,
        "BuildCache": build_cache(&builds).await?,
    })))
}

/// Build cache entries as `docker system df -v` lists them.
async fn build_cache(builds: &berth_daemon::BuildService) -> ApiResult<Vec<serde_json::Value>> {
    Ok(builds
        .cache()
        .await?
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "ID": e.key.hex(),
                "Parents": e.parent.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "Type": "regular",
                "Description": e.record.created_by,
                "InUse": e.in_use,
                "Shared": false,
                "Size": e.size,
                "CreatedAt": e.record.created,
                "LastUsedAt": e.record.last_used,
                "UsageCount": e.record.usage_count,
            })
        })
        .collect())
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

async fn version(State(sys): State<Arc<SystemService>>) -> Response {
    json_response(&sys.version())
}

async fn info(State(sys): State<Arc<SystemService>>) -> Response {
    json_response(&sys.info().await)
}

async fn events(State(bus): State<Arc<EventBus>>, q: Query) -> ApiResult<Response> {
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
    let line = |e: &berth_api::events::Event| {
        let mut b = serde_json::to_vec(e).unwrap_or_default();
        b.push(b'\n');
        bytes::Bytes::from(b)
    };
    let f2 = filters.clone();
    let initial: Vec<Result<bytes::Bytes, std::io::Error>> = past
        .iter()
        .filter(|e| matches(e, &filters) && until.is_none_or(|u| e.time_nano <= u))
        .map(|e| Ok(line(e)))
        .collect();
    let live = stream::unfold((rx, f2), move |(mut rx, f)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if until.is_some_and(|u| e.time_nano > u) => return None,
                Ok(e) if matches(&e, &f) => return Some((Ok(line(&e)), (rx, f))),
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
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
