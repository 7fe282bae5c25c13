//! The Control and LLBBridge calls. A buildx build is a *gateway* build: `Control/Solve` comes
//! without a frontend, and the client then drives the build through `LLBBridge` calls tagged
//! with the build's ref (`buildid`): `Solve` with the `dockerfile.v0` frontend, then `Return`
//! with the result to export. A client that names the frontend in `Control/Solve` itself
//! (buildctl) gets the same build directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_types::Error;
use tokio::sync::oneshot;
use tonic::Status;

use crate::progress::{Builds, Reporter};
use crate::proto::{self, ApiCap};
use crate::BuildKit;

/// The BuildKit release whose API this matches (buildx reads it for feature checks).
const BUILDKIT_VERSION: &str = "v0.25.0";
/// A server-streaming call's answer.
pub(crate) type BoxStream<T> = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send + 'static>>;

const FORWARDER_WAIT: Duration = Duration::from_secs(15);

pub(crate) fn status_of(e: Error) -> Status {
    use berth_types::ErrorKind as K;
    match e.kind {
        K::NotFound => Status::not_found(e.message),
        K::InvalidArgument => Status::invalid_argument(e.message),
        K::Conflict => Status::failed_precondition(e.message),
        K::Unauthorized => Status::unauthenticated(e.message),
        K::Forbidden => Status::permission_denied(e.message),
        K::NotImplemented => Status::unimplemented(e.message),
        K::Unavailable => Status::unavailable(e.message),
        _ => Status::unknown(e.message),
    }
}

pub(crate) fn info() -> proto::InfoResponse {
    proto::InfoResponse { buildkit_version: Some(version()) }
}

fn version() -> proto::BuildkitVersion {
    proto::BuildkitVersion {
        package: "github.com/moby/buildkit".into(),
        version: BUILDKIT_VERSION.into(),
        revision: format!("berth-{}", env!("CARGO_PKG_VERSION")),
    }
}

fn worker(bk: &BuildKit) -> proto::WorkerRecord {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let labels = [
        ("org.mobyproject.buildkit.worker.executor", "oci"),
        ("org.mobyproject.buildkit.worker.hostname", bk.hostname.as_str()),
        ("org.mobyproject.buildkit.worker.network", "host"),
        // No `...worker.snapshotter` label: buildx reads it as "containerd image store" and would
        // then ask for OCI exporters and multi-platform builds berthd does not do.
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    proto::WorkerRecord {
        id: bk.hostname.clone(),
        labels,
        platforms: vec![proto::Platform { architecture: arch.into(), os: "linux".into(), variant: String::new() }],
        gc_policy: vec![proto::GcPolicy { all: true, ..Default::default() }],
        buildkit_version: Some(version()),
    }
}

pub(crate) fn list_workers(bk: &BuildKit) -> proto::ListWorkersResponse {
    proto::ListWorkersResponse { record: vec![worker(bk)] }
}

/// The gateway capabilities berthd implements (anything else the client must not use).
pub(crate) fn ping(bk: &BuildKit) -> proto::PongResponse {
    let caps = |ids: &[&str]| ids.iter().map(|id| ApiCap { id: id.to_string(), enabled: true }).collect();
    proto::PongResponse {
        frontend_api_caps: caps(&[
            "solve.base",
            "solve.inlinereturn",
            "return",
            "returnmap",
            "proto.refarray",
            "frontend.inputs",
            "gateway.warnings",
        ]),
        llb_caps: caps(&["source.image", "source.local", "source.local.unique", "source.local.sessionid"]),
        workers: vec![worker(bk)],
    }
}

/// What the client returned: the image to export, if any.
type Returned = Result<Option<String>, Status>;

/// A gateway build waiting for its client's `Return`.
pub(crate) struct Forwarder {
    session: String,
    reporter: Arc<Reporter>,
    /// Result refs handed to the client: ref id to image id.
    refs: Mutex<HashMap<String, String>>,
    returned: Mutex<Option<oneshot::Sender<Returned>>>,
}

impl Forwarder {
    pub(crate) fn ret(&self, r: proto::ReturnRequest) {
        tracing::debug!(result = ?r.result, error = ?r.error, "gateway return");
        let res = match (r.error, r.result) {
            (Some(e), _) if e.code != 0 => Err(Status::new(tonic::Code::from(e.code), e.message)),
            (_, Some(res)) => match res.ref_ids().as_slice() {
                [] => Ok(None),
                [id] => match self.refs.lock().unwrap().get(id) {
                    Some(image) => Ok(Some(image.clone())),
                    None => Err(Status::invalid_argument(format!("unknown result ref {id}"))),
                },
                _ => Err(Status::unimplemented("berthd exports one image per build (no multi-platform results)")),
            },
            _ => Ok(None),
        };
        if let Some(tx) = self.returned.lock().unwrap().take() {
            let _ = tx.send(res);
        }
    }

    pub(crate) fn warn(&self, w: proto::WarnRequest) {
        self.reporter.warn(&w.digest, &String::from_utf8_lossy(&w.short));
    }
}

/// The gateway build named by a call's `buildkit-controlapi-buildid` metadata (it may still be starting).
pub(crate) async fn forwarder_of(bk: &BuildKit, md: &tonic::metadata::MetadataMap) -> Result<Arc<Forwarder>, Status> {
    let id = md
        .get("buildkit-controlapi-buildid")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Status::invalid_argument("no build id (buildkit-controlapi-buildid) in the call's metadata"))?
        .to_string();
    let deadline = tokio::time::Instant::now() + FORWARDER_WAIT;
    loop {
        let notified = bk.forwarders_changed.notified();
        if let Some(f) = bk.forwarders.lock().unwrap().get(&id) {
            return Ok(f.clone());
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Err(Status::not_found(format!("no such job {id}")));
        }
    }
}

/// `LLBBridge/Solve`: runs the Dockerfile frontend; the result is a ref the client returns.
pub(crate) async fn gateway_solve(
    bk: &BuildKit,
    f: &Forwarder,
    req: proto::GatewaySolveRequest,
) -> Result<proto::GatewaySolveResponse, Status> {
    tracing::debug!(frontend = %req.frontend, opts = ?req.frontend_opt, "gateway solve");
    if req.frontend != "dockerfile.v0" {
        return Err(unsupported_frontend(&req.frontend, req.definition.is_some()));
    }
    let session = bk.sessions.get(&f.session).await.map_err(status_of)?;
    if let Some(metadata) = crate::frontend::subrequest(&session, &req.frontend_opt).await? {
        let result = proto::GatewayResult { result: None, metadata };
        return Ok(proto::GatewaySolveResponse { r#ref: String::new(), result: Some(result) });
    }
    let image = crate::frontend::dockerfile(bk, &session, &req.frontend_opt, &f.reporter).await?;
    let id = format!("berth-{}", berth_types::new_id());
    f.refs.lock().unwrap().insert(id.clone(), image);
    let result = proto::GatewayResult {
        result: Some(proto::ResultKind::Ref(proto::Ref { id: id.clone() })),
        ..Default::default()
    };
    Ok(proto::GatewaySolveResponse { r#ref: id, result: Some(result) })
}

fn unsupported_frontend(frontend: &str, llb: bool) -> Status {
    if frontend.is_empty() && llb {
        Status::unimplemented("berthd builds Dockerfiles (the dockerfile.v0 frontend); raw LLB definitions are not run")
    } else {
        Status::unimplemented(format!("frontend {frontend:?} is not supported by berthd: use dockerfile.v0"))
    }
}

/// Where the result goes: berthd's images (tagged with `names`), and the client's exporters
/// (`local`, `tar`) by their index in the request.
#[derive(Default)]
struct Export {
    names: Vec<String>,
    to_client: Vec<(String, usize)>,
}

fn exporters(req: &proto::SolveRequest) -> Result<Option<Export>, Status> {
    let mut list = req.exporters.clone();
    if list.is_empty() && !req.exporter_deprecated.is_empty() {
        list.push(proto::Exporter {
            r#type: req.exporter_deprecated.clone(),
            attrs: req.exporter_attrs_deprecated.clone(),
        });
    }
    if req.cache.as_ref().is_some_and(|c| !c.exports.is_empty()) {
        return Err(Status::unimplemented("cache export is not supported by berthd (as with Docker's docker driver)"));
    }
    let mut export: Option<Export> = None;
    for (index, e) in list.into_iter().enumerate() {
        match e.r#type.as_str() {
            "local" | "tar" => export.get_or_insert_with(Export::default).to_client.push((e.r#type.clone(), index)),
            // `moby` is the docker driver's own exporter (into the daemon's images); `image` is
            // the same store here.
            "moby" | "image" => {
                let names = e
                    .attrs
                    .get("name")
                    .map(|n| n.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect())
                    .unwrap_or_default();
                if e.attrs.get("push").is_some_and(|p| p == "true") && e.r#type == "image" {
                    return Err(Status::unimplemented("push from the build is not supported: build, then docker push"));
                }
                export.get_or_insert_with(Export::default).names = names;
            }
            other => {
                return Err(Status::unimplemented(format!(
                "exporter {other:?} is not supported by berthd: use --load (the default), local, tar, or docker save"
            )))
            }
        }
    }
    Ok(export)
}

/// `Control/Solve`.
pub(crate) async fn solve(bk: &Arc<BuildKit>, req: proto::SolveRequest) -> Result<proto::SolveResponse, Status> {
    tracing::debug!(r#ref = %req.r#ref, frontend = %req.frontend, attrs = ?req.frontend_attrs, exporters = ?req.exporters, "solve");
    let export = exporters(&req)?;
    if req.r#ref.is_empty() {
        return Err(Status::invalid_argument("solve: no ref"));
    }
    let progress = bk.builds.start(&req.r#ref);
    let _running = Running { bk, r: req.r#ref.clone() };
    let reporter = Arc::new(Reporter::new(&req.r#ref, progress));
    solve_and_export(bk, &req, export, &reporter).await
}

/// A Solve in progress: however it ends — answered, failed, or dropped because the client went
/// away — its gateway entry goes and its progress ends, so no Status reader waits on it.
struct Running<'a> {
    bk: &'a Arc<BuildKit>,
    r: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.bk.forwarders.lock().unwrap().remove(&self.r);
        self.bk.builds.end(&self.r);
    }
}

async fn solve_and_export(
    bk: &Arc<BuildKit>,
    req: &proto::SolveRequest,
    export: Option<Export>,
    reporter: &Arc<Reporter>,
) -> Result<proto::SolveResponse, Status> {
    let has_llb = req.definition.as_ref().is_some_and(|d| !d.def.is_empty());
    let image = match req.frontend.as_str() {
        "" if !has_llb => {
            let (tx, rx) = oneshot::channel();
            let f = Arc::new(Forwarder {
                session: req.session.clone(),
                reporter: reporter.clone(),
                refs: Mutex::default(),
                returned: Mutex::new(Some(tx)),
            });
            bk.forwarders.lock().unwrap().insert(req.r#ref.clone(), f);
            bk.forwarders_changed.notify_waiters();
            // The client's Return ends it; a client that goes away drops this call (and its build).
            // (Its gateway entry goes with the Solve: see `Running`.)
            rx.await.unwrap_or_else(|_| Err(Status::cancelled("the build ended without a result")))?
        }
        "dockerfile.v0" => {
            let session = bk.sessions.get(&req.session).await.map_err(status_of)?;
            Some(crate::frontend::dockerfile(bk, &session, &req.frontend_attrs, reporter).await?)
        }
        other => return Err(unsupported_frontend(other, has_llb)),
    };
    let mut resp = HashMap::new();
    if let (Some(image), Some(export)) = (&image, &export) {
        for (kind, index) in &export.to_client {
            to_client(bk, &req.session, reporter, image, kind, *index).await?;
        }
    }
    if let (Some(image), Some(export)) = (image, export.filter(|e| e.to_client.is_empty() || !e.names.is_empty())) {
        let v = reporter.start("export", "exporting to image");
        reporter.log(&v, 1, format!("writing image {image} done\n"));
        if !export.names.is_empty() {
            bk.engine.tag(image.clone(), export.names.clone()).await.map_err(|e| {
                reporter.fail(&v, &e.message);
                status_of(e)
            })?;
            for n in &export.names {
                reporter.log(&v, 1, format!("naming to {n} done\n"));
            }
            resp.insert("image.name".to_string(), export.names.join(","));
        }
        reporter.complete(&v);
        resp.insert("containerimage.config.digest".to_string(), image.clone());
        resp.insert("containerimage.digest".to_string(), image);
    }
    Ok(proto::SolveResponse { exporter_response: resp })
}

/// Sends the result to the client's `local` or `tar` exporter.
async fn to_client(
    bk: &BuildKit,
    session: &str,
    rep: &Reporter,
    image: &str,
    kind: &str,
    index: usize,
) -> Result<(), Status> {
    let name = if kind == "tar" { "sending tarball" } else { "exporting to client directory" };
    let v = rep.start(&format!("export-{index}"), name);
    let res = async {
        let session = bk.sessions.get(session).await?;
        let mounted = bk.engine.mount_image(image.to_string()).await?;
        let root = mounted.root.clone();
        let sent = if kind == "tar" {
            crate::export::tar(&session, index, root).await?
        } else {
            crate::export::local(&session, index, root).await?
        };
        drop(mounted);
        Ok::<u64, Error>(sent)
    }
    .await;
    match res {
        Ok(bytes) => {
            rep.log(&v, 1, format!("copying files {bytes}B done\n"));
            rep.complete(&v);
            Ok(())
        }
        Err(e) => {
            rep.fail(&v, &e.message);
            Err(status_of(e))
        }
    }
}

/// `Control/Status`: the build's updates from its start until it ends.
pub(crate) async fn status(
    bk: &BuildKit,
    req: proto::StatusRequest,
) -> Result<BoxStream<proto::StatusResponse>, Status> {
    let builds: Arc<Builds> = bk.builds.clone();
    let progress = builds
        .get(&req.r#ref, Duration::from_secs(30))
        .await
        .ok_or_else(|| Status::not_found(format!("no such job {}", req.r#ref)))?;
    let stream = futures_util::stream::unfold((progress, 0usize), |(p, from)| async move {
        let batch = p.next(from).await?;
        let next = from + batch.len();
        // Many small updates become one message each time the client catches up.
        let mut merged = proto::StatusResponse::default();
        for u in batch {
            merged.vertexes.extend(u.vertexes);
            merged.statuses.extend(u.statuses);
            merged.logs.extend(u.logs);
            merged.warnings.extend(u.warnings);
        }
        Some((Ok(merged), (p, next)))
    });
    let s: BoxStream<proto::StatusResponse> = Box::pin(stream);
    Ok(s)
}

/// The contexts kept between builds, as BuildKit lists its local sources.
async fn kept_contexts(bk: &BuildKit) -> Vec<proto::UsageRecord> {
    bk.contexts
        .usage()
        .await
        .into_iter()
        .map(|(id, size, t)| {
            let t = proto::Timestamp::from(chrono::DateTime::<chrono::Utc>::from(t));
            proto::UsageRecord {
                id,
                size: size as i64,
                created_at: Some(t.clone()),
                last_used_at: Some(t),
                description: "local source for context".into(),
                record_type: "source.local".into(),
                ..Default::default()
            }
        })
        .collect()
}

fn usage_record(c: crate::CacheItem) -> proto::UsageRecord {
    let ts = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| proto::Timestamp::from(t.to_utc()));
    proto::UsageRecord {
        id: c.id,
        in_use: c.in_use,
        size: c.size as i64,
        created_at: ts(&c.created),
        last_used_at: ts(&c.last_used),
        usage_count: c.usage_count as i64,
        description: c.description,
        record_type: "regular".into(),
        parents: c.parent.into_iter().collect(),
        ..Default::default()
    }
}

/// `Control/DiskUsage`.
pub(crate) async fn disk_usage(
    bk: &BuildKit,
    _req: proto::DiskUsageRequest,
) -> Result<proto::DiskUsageResponse, Status> {
    let items = bk.engine.cache().await.map_err(status_of)?;
    let mut record: Vec<proto::UsageRecord> = items.into_iter().map(usage_record).collect();
    record.extend(kept_contexts(bk).await);
    Ok(proto::DiskUsageResponse { record })
}

/// `Control/Prune`: the removed records, streamed.
pub(crate) async fn prune(bk: &BuildKit, req: proto::PruneRequest) -> Result<BoxStream<proto::UsageRecord>, Status> {
    if let Some(f) = req.filter.iter().find(|f| !f.is_empty()) {
        return Err(Status::invalid_argument(format!("prune filter {f:?} is not supported by berthd")));
    }
    let opts = crate::PruneOptions {
        all: req.all,
        keep_duration: (req.keep_duration > 0).then(|| Duration::from_nanos(req.keep_duration as u64)),
        reserved_space: req.reserved_space.max(0) as u64,
        max_used_space: req.max_used_space.max(0) as u64,
        min_free_space: req.min_free_space.max(0) as u64,
    };
    let mut removed: Vec<proto::UsageRecord> =
        bk.engine.prune(opts).await.map_err(status_of)?.into_iter().map(usage_record).collect();
    // Kept contexts are only a transfer cache: a prune drops the ones not in use.
    removed.extend(bk.contexts.prune().await.into_iter().map(|(id, size)| proto::UsageRecord {
        id,
        size: size as i64,
        description: "local source for context".into(),
        record_type: "source.local".into(),
        ..Default::default()
    }));
    Ok(Box::pin(futures_util::stream::iter(removed.into_iter().map(Ok))))
}
