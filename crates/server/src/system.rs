//! /_ping, /version, /info, /events, /plugins and the swarm endpoints Berth answers with 503.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, State};
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

/// `POST /auth` (`docker login`): the daemon checks the credentials against the registry.
async fn login(State(images): State<Arc<berth_daemon::ImageService>>, body: axum::body::Bytes) -> ApiResult<Response> {
    let mut auth: berth_distribution::AuthConfig = crate::from_json(&body)?;
    auth.normalise();
    let token = images.login(auth).await?;
    Ok(json_response(&serde_json::json!({"Status": "Login Succeeded", "IdentityToken": token})))
}

/// One kind of object in `docker system df`: its items and the summary 1.52 added.
struct DiskUsage {
    /// The pre-1.52 key of the items (`Images`), and the 1.52 summary's (`ImageUsage`).
    legacy: &'static str,
    usage: &'static str,
    items: Vec<serde_json::Value>,
    active: usize,
    total: i64,
    reclaimable: i64,
}

fn bytes(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or(0).max(0)
}

/// `docker system df`: images, containers, volumes and build cache with their sizes; `type`
/// picks kinds (1.42+). Before 1.52 the answer is the legacy arrays; from 1.52 it is the
/// `*Usage` summaries, with the legacy arrays too unless `verbose` is asked (as moby).
async fn df(
    State(images): State<Arc<berth_daemon::ImageService>>,
    State(containers): State<Arc<berth_daemon::ContainerService>>,
    State(volumes): State<Arc<berth_daemon::VolumeService>>,
    State(builds): State<Arc<berth_daemon::BuildService>>,
    q: Query,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult<Response> {
    use serde_json::{json, Value};
    let kinds = ["container", "image", "volume", "build-cache"];
    let mut want: Vec<&str> = Vec::new();
    for t in q.all("type") {
        let k = kinds
            .iter()
            .find(|k| **k == t)
            .ok_or_else(|| ApiError(Error::invalid(format!("unknown object type: {t}"))))?;
        want.push(k);
    }
    let asked = |k: &str| want.is_empty() || want.contains(&k);
    let mut parts = Vec::new();
    let mut layers_size = None;
    // Containers are counted for images too (which are in use).
    let mut cs = Vec::new();
    for mut c in containers.list(true, None, &berth_api::filters::Filters::default())? {
        if asked("container") {
            c.sizes = containers.sizes(&c.id).await;
        }
        cs.push(serde_json::to_value(&c).map_err(|e| ApiError(Error::internal(e.to_string())))?);
    }
    if asked("container") {
        parts.push(container_usage(&cs));
    }
    if asked("image") {
        let (u, layers) = image_usage(&images.list().await?, &cs);
        layers_size = Some(layers);
        parts.push(u);
    }
    if asked("volume") {
        parts.push(volume_usage(volumes.usage().await?));
    }
    if asked("build-cache") {
        parts.push(cache_usage(build_cache(&builds).await?));
    }
    let mut out = serde_json::Map::new();
    if v.less_than("1.52") || !q.bool("verbose") {
        if let Some(l) = layers_size {
            out.insert("LayersSize".into(), json!(l));
        }
        for p in &parts {
            out.insert(p.legacy.into(), json!(p.items));
        }
    }
    if !v.less_than("1.52") {
        for p in parts {
            out.insert(
                p.usage.into(),
                json!({"ActiveCount": p.active, "TotalCount": p.items.len(), "TotalSize": p.total,
                       "Reclaimable": p.reclaimable, "Items": p.items}),
            );
        }
    }
    Ok(json_response(&Value::Object(out)))
}

fn container_usage(cs: &[serde_json::Value]) -> DiskUsage {
    let stopped = |c: &&serde_json::Value| c["State"] != "running";
    DiskUsage {
        legacy: "Containers",
        usage: "ContainerUsage",
        active: cs.iter().filter(|c| c["State"] == "running").count(),
        total: cs.iter().map(|c| bytes(&c["SizeRw"])).sum(),
        reclaimable: cs.iter().filter(stopped).map(|c| bytes(&c["SizeRw"])).sum(),
        items: cs.to_vec(),
    }
}

/// Images, and the bytes of their layers: shared layers count once (the disk actually used);
/// reclaimable is what no container's image holds.
fn image_usage(imgs: &[berth_image::Image], cs: &[serde_json::Value]) -> (DiskUsage, i64) {
    let users = |i: &berth_image::Image| cs.iter().filter(|c| c["ImageID"] == i.id.as_str()).count();
    let layers = |i: &berth_image::Image| -> Vec<(String, u64)> {
        i.config.rootfs.diff_ids.iter().map(|d| d.to_string()).zip(i.layer_sizes.iter().copied()).collect()
    };
    let all: std::collections::HashMap<String, u64> = imgs.iter().flat_map(layers).collect();
    let used: std::collections::HashMap<String, u64> = imgs.iter().filter(|i| users(i) > 0).flat_map(layers).collect();
    let total = all.values().sum::<u64>() as i64;
    let items: Vec<serde_json::Value> = imgs
        .iter()
        .map(|i| {
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
                "Labels": i.config.config.labels, "Containers": users(i),
            })
        })
        .collect();
    let u = DiskUsage {
        legacy: "Images",
        usage: "ImageUsage",
        active: imgs.iter().filter(|i| users(i) > 0).count(),
        total,
        reclaimable: total - used.values().sum::<u64>() as i64,
        items,
    };
    (u, total)
}

fn volume_usage(vols: Vec<berth_api::volume::Volume>) -> DiskUsage {
    let usage = |v: &berth_api::volume::Volume| v.usage_data.map_or((0, 0), |u| (u.size.max(0), u.ref_count));
    DiskUsage {
        legacy: "Volumes",
        usage: "VolumeUsage",
        active: vols.iter().filter(|v| usage(v).1 > 0).count(),
        total: vols.iter().map(|v| usage(v).0).sum(),
        reclaimable: vols.iter().filter(|v| usage(v).1 == 0).map(|v| usage(v).0).sum(),
        items: vols.iter().filter_map(|v| serde_json::to_value(v).ok()).collect(),
    }
}

fn cache_usage(cache: Vec<serde_json::Value>) -> DiskUsage {
    let own = |b: &&serde_json::Value| b["Shared"] != true;
    DiskUsage {
        legacy: "BuildCache",
        usage: "BuildCacheUsage",
        active: cache.iter().filter(|b| b["InUse"] == true).count(),
        total: cache.iter().filter(own).map(|b| bytes(&b["Size"])).sum(),
        reclaimable: cache.iter().filter(own).filter(|b| b["InUse"] != true).map(|b| bytes(&b["Size"])).sum(),
        items: cache,
    }
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

async fn info(State(sys): State<Arc<SystemService>>, Extension(v): Extension<ApiVersion>) -> Response {
    let mut i = serde_json::to_value(sys.info().await).unwrap_or_default();
    shape::info(&v, &mut i);
    json_response(&i)
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
