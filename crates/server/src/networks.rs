//! /networks routes, over `NetworkService` (and `ContainerService` for connect/disconnect).

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_daemon::{ContainerService, NetworkService};
use berth_network::store::CreateOptions;
use berth_types::Error;

use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::version::ApiVersion;
use crate::{json_response, AppState, JsonBody};

type Svc = State<Arc<NetworkService>>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> ApiResult<Option<T>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| ApiError(Error::invalid(format!("invalid {what}: {s}"))))
}

async fn create(
    State(svc): Svc,
    Extension(v): Extension<ApiVersion>,
    JsonBody(b): JsonBody<berth_api::network::CreateRequest>,
) -> ApiResult<Response> {
    // EnableIPv4 is read from 1.48; IPv6-only networks are experimental in Docker, and not here.
    if b.enable_ipv4 == Some(false) && !v.less_than("1.48") {
        return Err(ApiError(Error::invalid("IPv4 can only be disabled if experimental features are enabled")));
    }
    let ipam = b.ipam.unwrap_or_default();
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(ApiError(Error::not_found(format!("plugin \"{}\" not found", ipam.driver))));
    }
    // IPv4 subnets (the first, then more) and one IPv6 subnet, told apart by their addresses.
    let (mut v4s, mut v6) = (Vec::new(), None);
    for c in ipam.config.unwrap_or_default() {
        if c.subnet.contains(':') || (c.subnet.is_empty() && c.gateway.contains(':')) {
            if v6.replace(c).is_some() {
                return Err(ApiError(Error::invalid(
                    "berthd supports one IPv6 subnet per network: more than one given",
                )));
            }
        } else {
            v4s.push(c);
        }
    }
    let mut more_subnets = Vec::new();
    for c in v4s.iter().skip(1) {
        let subnet = parse("subnet", &c.subnet)?
            .ok_or_else(|| ApiError(Error::invalid("every IPAM config after the first needs a subnet")))?;
        more_subnets.push((subnet, parse("gateway", &c.gateway)?, parse("ip-range", &c.ip_range)?));
    }
    let c = v4s.into_iter().next().unwrap_or_default();
    let c6 = v6.unwrap_or_default();
    let n = svc
        .create(CreateOptions {
            name: b.name,
            driver: b.driver,
            internal: b.internal,
            attachable: b.attachable,
            labels: b.labels.unwrap_or_default(),
            options: b.options.unwrap_or_default(),
            subnet: parse("subnet", &c.subnet)?,
            gateway: parse("gateway", &c.gateway)?,
            ip_range: parse("ip-range", &c.ip_range)?,
            enable_ipv6: b.enable_ipv6.unwrap_or(false),
            subnet6: parse("subnet", &c6.subnet)?,
            gateway6: parse("gateway", &c6.gateway)?,
            ip_range6: parse("ip-range", &c6.ip_range)?,
            more_subnets,
        })
        .await?;
    let mut r = json_response(&berth_api::network::CreateResponse { id: n.id, warning: String::new() });
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn list(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let nets = svc.list(&q.filters()?).await?;
    Ok(json_response(&nets.iter().map(|n| svc.resource(n)).collect::<Vec<_>>()))
}

async fn inspect(State(svc): Svc, Path(id): Path<String>, Extension(v): Extension<ApiVersion>) -> ApiResult<Response> {
    let n = svc.get(&id).await?;
    let mut r = svc.resource(&n);
    // IPAM statistics, from 1.52.
    if !v.less_than("1.52") && n.driver == "bridge" {
        r.status = Some(svc.status(&n));
    }
    Ok(json_response(&r))
}

async fn remove(State(svc): Svc, Path(id): Path<String>) -> ApiResult<Response> {
    svc.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(svc): Svc, q: Query) -> ApiResult<Response> {
    let deleted = svc.prune(&q.filters()?).await?;
    Ok(json_response(&json!({"NetworksDeleted": deleted})))
}

async fn connect(
    State(containers): State<Arc<ContainerService>>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<berth_api::network::ConnectRequest>,
) -> ApiResult<StatusCode> {
    containers.connect(&id, &b.container, b.endpoint_config.unwrap_or_default()).await?;
    Ok(StatusCode::OK)
}

async fn disconnect(
    State(containers): State<Arc<ContainerService>>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<berth_api::network::ConnectRequest>,
) -> ApiResult<StatusCode> {
    let _ = b.force;
    containers.disconnect(&id, &b.container).await?;
    Ok(StatusCode::OK)
}
