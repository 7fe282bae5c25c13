//! `POST /build` (the classic builder's wire protocol) and `POST /build/prune`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use berth_api::container::HostConfig;
use berth_daemon::backend::BuildBackend;
use berth_daemon::build::{BuildOptions, CachePruneOptions};
use berth_types::{Error, Reference};
use futures_util::TryStreamExt;
use serde_json::{json, Value};
use tokio_util::io::StreamReader;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::{json_response, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/build", post(build).layer(DefaultBodyLimit::disable())).route("/build/prune", post(prune))
}

fn invalid(msg: String) -> ApiError {
    ApiError(Error::invalid(msg))
}

/// A JSON-valued parameter; the CLI sends `null`, `{}` or `[]` when unset.
fn json_param<T: serde::de::DeserializeOwned + Default>(q: &Query, k: &str) -> ApiResult<T> {
    match q.str(k).map(str::trim).filter(|v| !v.is_empty() && *v != "null") {
        None => Ok(T::default()),
        Some(v) => serde_json::from_str(v).map_err(|e| invalid(format!("invalid {k} parameter {v:?}: {e}"))),
    }
}

/// `X-Registry-Config`: base64url JSON, registry host to auth config; padding optional.
fn registry_config(headers: &HeaderMap) -> ApiResult<Value> {
    let Some(h) = headers.get("X-Registry-Config").and_then(|h| h.to_str().ok()).map(str::trim) else {
        return Ok(json!({}));
    };
    if h.is_empty() {
        return Ok(json!({}));
    }
    let t = h.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .map_err(|e| invalid(format!("invalid X-Registry-Config header: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("invalid X-Registry-Config header: {e}")))
}

fn options(q: &Query, headers: &HeaderMap) -> ApiResult<BuildOptions> {
    if q.str("version") == Some("2") {
        return Err(invalid(
            "BuildKit is not supported by this daemon: build with the classic builder (DOCKER_BUILDKIT=0)".into(),
        ));
    }
    if q.str("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError(Error::not_implemented(
            "remote build contexts are not supported: send the context as the request body",
        )));
    }
    let mut tags = Vec::new();
    for t in q.all("t").into_iter().filter(|t| !t.is_empty()) {
        let r = Reference::parse_tagged(&t).map_err(|e| invalid(format!("invalid tag {t:?}: {}", e.message)))?;
        if r.digest().is_some() {
            return Err(invalid(format!("invalid tag {t:?}: a build cannot be tagged with a digest")));
        }
        tags.push(r);
    }
    let build_args: BTreeMap<String, Option<String>> = json_param(q, "buildargs")?;
    let labels: BTreeMap<String, String> = json_param(q, "labels")?;
    let cache_from: Vec<String> = json_param(q, "cachefrom")?;
    let ulimits: Vec<berth_api::hostconfig::Ulimit> = json_param(q, "ulimits")?;
    let positive = |k: &str| -> Result<i64, ApiError> { Ok(q.int(k)?.filter(|v| *v != 0).unwrap_or(0)) };
    let text = |k: &str| q.str(k).unwrap_or("").to_string();
    let hosts: Vec<String> =
        q.all("extrahosts").iter().flat_map(|h| h.split(',')).filter(|h| !h.is_empty()).map(String::from).collect();
    let host = HostConfig {
        network_mode: q.str("networkmode").filter(|m| *m != "default").unwrap_or("").to_string(),
        shm_size: positive("shmsize")?,
        extra_hosts: (!hosts.is_empty()).then_some(hosts),
        resources: berth_api::hostconfig::Resources {
            memory: q.int("memory")?.unwrap_or(0),
            cpu_shares: q.int("cpushares")?.unwrap_or(0),
            memory_swap: positive("memswap")?,
            cpu_period: positive("cpuperiod")?,
            cpu_quota: positive("cpuquota")?,
            cpuset_cpus: text("cpusetcpus"),
            cpuset_mems: text("cpusetmems"),
            cgroup_parent: text("cgroupparent"),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            ..Default::default()
        },
        ..Default::default()
    };
    if let Some(p) = q.str("platform").filter(|p| !p.is_empty()) {
        if !p.starts_with("linux") {
            return Err(invalid(format!("unsupported platform {p}: only linux images can be built")));
        }
    }
    Ok(BuildOptions {
        dockerfile: q.str("dockerfile").unwrap_or("Dockerfile").to_string(),
        tags,
        build_args,
        labels,
        target: q.str("target").filter(|t| !t.is_empty()).map(String::from),
        no_cache: q.bool("nocache"),
        pull: q.bool("pull"),
        quiet: q.bool("q"),
        host,
        // `rm` defaults to true when absent, as in Docker's API.
        rm: q.str("rm").is_none() || q.bool("rm"),
        force_rm: q.bool("forcerm"),
        auths: registry_config(headers)?,
        platform: q.str("platform").filter(|p| !p.is_empty()).map(String::from),
        cache_from,
        ..Default::default()
    })
}

async fn build(State(svc): State<Arc<dyn BuildBackend>>, q: Query, req: Request) -> ApiResult<Response> {
    let opts = match options(&q, req.headers()) {
        Ok(o) => o,
        Err(e) => {
            // Read (a bounded part of) the context so the client sees the error, not a broken pipe.
            let mut body = StreamReader::new(req.into_body().into_data_stream().map_err(std::io::Error::other));
            let _ =
                tokio::io::copy(&mut tokio::io::AsyncReadExt::take(&mut body, 64 << 20), &mut tokio::io::sink()).await;
            return Err(e);
        }
    };
    let body = StreamReader::new(req.into_body().into_data_stream().map_err(std::io::Error::other));
    let rx = svc.build(Box::new(body), opts).await?;
    // A quiet step (`RUN sleep 60`) writes nothing for a while; a newline every second (JSON
    // stream readers skip whitespace) is how a client that went away gets noticed: the write fails,
    // the stream is dropped and the build, with its RUN container, is cancelled.
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = match tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await {
            Ok(v) => {
                let mut line = serde_json::to_vec(&v?).unwrap_or_default();
                line.extend_from_slice(b"\r\n");
                line
            }
            Err(_) => b"\n".to_vec(),
        };
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(line)), rx))
    });
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError(Error::internal(e.to_string())))
}

/// `POST /build/prune`: the budgets `reserved-space` (`keep-storage`), `max-used-space` and
/// `min-free-space`, and the `until` filter (a Go duration or a time). `all` changes nothing here: every entry of the
/// classic builder's cache is a step image, so "dangling" and "unused" are the same entries.
async fn prune(
    State(svc): State<Arc<dyn BuildBackend>>,
    q: crate::query::Query,
    axum::extract::Extension(v): axum::extract::Extension<crate::version::ApiVersion>,
) -> ApiResult<Response> {
    let f = q.filters()?;
    f.validate(&["until", "unused-for"]).map_err(|e| ApiError(Error::invalid(e)))?;
    let until = match f.get("until").first().or(f.get("unused-for").first()) {
        None => None,
        Some(u) => Some(prune_cutoff(u)?),
    };
    // The budgets' names from 1.48 (moby's build router); `keep-storage`, reserved-space's old
    // name, is read when that is not given.
    let bytes = |k: &str| -> ApiResult<u64> { Ok(q.int(k)?.unwrap_or(0).max(0) as u64) };
    let mut opts = CachePruneOptions { until, ..Default::default() };
    if !v.less_than("1.48") {
        opts.reserved_space = bytes("reserved-space")?;
        opts.max_used_space = bytes("max-used-space")?;
        opts.min_free_space = bytes("min-free-space")?;
    }
    if opts.reserved_space == 0 {
        opts.reserved_space = bytes("keep-storage")?;
    }
    let (deleted, reclaimed) = svc.prune(opts).await?;
    Ok(json_response(&berth_api::system::BuildCachePruneResponse {
        caches_deleted: Some(deleted).filter(|d| !d.is_empty()),
        space_reclaimed: reclaimed,
    }))
}

/// `until=24h` (a Go duration: that long ago) or a time (unix seconds or RFC 3339), as RFC 3339.
fn prune_cutoff(u: &str) -> ApiResult<String> {
    let bad = || ApiError(Error::invalid(format!("invalid filter 'until={u}'")));
    let at = if let Ok(ns) = berth_dockerfile::duration::parse(u) {
        chrono::Utc::now() - chrono::Duration::nanoseconds(ns)
    } else if let Ok(d) = chrono::DateTime::parse_from_rfc3339(u) {
        d.with_timezone(&chrono::Utc)
    } else {
        let secs: i64 = u.split('.').next().unwrap_or("").parse().map_err(|_| bad())?;
        chrono::DateTime::from_timestamp(secs, 0).ok_or_else(bad)?
    };
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}
