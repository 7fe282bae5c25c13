//! BuildKit's API as buildx's `docker` driver uses it, over Berth's own builder:
//! - `POST /grpc` (h2c): the `moby.buildkit.v1.Control` service (Info, ListWorkers, Solve, Status,
//!   DiskUsage, Prune) and the `moby.buildkit.v1.frontend.LLBBridge` gateway buildx drives its
//!   build through (Ping, Solve with the `dockerfile.v0` frontend, Return);
//! - `POST /session` (h2): the client's session, on which berthd is the gRPC client, for the build
//!   context (fsutil DiffCopy), secrets and registry credentials.
//!
//! Builds run on the daemon through the narrow [`Engine`] trait; nothing here knows about images
//! or containers. Raw LLB is not executed: berthd runs Dockerfiles, and says so.

mod contexts;
mod control;
mod export;
pub mod filesync;
mod frontend;
mod grpc;
pub mod h2c;
pub mod progress;
pub mod proto;
pub mod session;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use berth_builder::BuildOptions;
use berth_types::Result;
use futures_util::future::BoxFuture;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

/// One build-cache entry as `buildx du` lists it.
#[derive(Debug, Clone, Default)]
pub struct CacheItem {
    pub id: String,
    pub parent: Option<String>,
    pub size: u64,
    pub in_use: bool,
    /// RFC 3339.
    pub created: String,
    pub last_used: String,
    pub usage_count: u64,
    pub description: String,
}

/// What `buildx prune` asks for.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    pub all: bool,
    pub keep_duration: Option<Duration>,
    pub reserved_space: u64,
    pub max_used_space: u64,
    pub min_free_space: u64,
}

/// An image's filesystem, mounted read-only for an exporter until this is dropped.
pub struct MountedImage {
    pub root: std::path::PathBuf,
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl MountedImage {
    pub fn new(root: std::path::PathBuf, release: Box<dyn FnOnce() + Send>) -> MountedImage {
        MountedImage { root, release: Some(release) }
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        if let Some(r) = self.release.take() {
            r();
        }
    }
}

/// The daemon's side: builds, tags and the build cache.
pub trait Engine: Send + Sync + 'static {
    /// Starts a build over `context` (a tar stream): the classic builder's JSON messages, ending
    /// with `{"aux":{"ID":...}}` or an `error`. Errors before the first step (a Dockerfile that
    /// does not parse) are the call's. Dropping the receiver cancels the build.
    fn build(
        &self,
        context: Pin<Box<dyn AsyncRead + Send>>,
        opts: BuildOptions,
    ) -> BoxFuture<'_, Result<mpsc::UnboundedReceiver<berth_api::progress::JsonMessage>>>;
    /// Like `build`, over a context folder the build takes over (and removes when it ends).
    fn build_dir(
        &self,
        context: std::path::PathBuf,
        opts: BuildOptions,
    ) -> BoxFuture<'_, Result<mpsc::UnboundedReceiver<berth_api::progress::JsonMessage>>>;
    /// A folder's tar as a one-layer image with no config (a local named context), the same
    /// files giving the same id; returns the id.
    fn import_rootfs(&self, tar: Pin<Box<dyn AsyncRead + Send>>) -> BoxFuture<'_, Result<String>>;
    /// Removes an image made by `import_rootfs` once its build no longer needs it.
    fn remove_image(&self, image: String) -> BoxFuture<'_, Result<()>>;
    /// Tags `image` (an id) with each of `names`.
    fn tag(&self, image: String, names: Vec<String>) -> BoxFuture<'_, Result<()>>;
    fn cache(&self) -> BoxFuture<'_, Result<Vec<CacheItem>>>;
    /// `image`'s filesystem, mounted read-only (the `local` and `tar` exporters read it).
    fn mount_image(&self, image: String) -> BoxFuture<'_, Result<MountedImage>>;
    fn prune(&self, opts: PruneOptions) -> BoxFuture<'_, Result<Vec<CacheItem>>>;
}

/// The BuildKit endpoints of one daemon.
pub struct BuildKit {
    engine: Arc<dyn Engine>,
    sessions: session::Sessions,
    builds: Arc<progress::Builds>,
    /// Gateway builds (`Solve` without a frontend) by ref, waiting for the client's `Return`.
    forwarders: Mutex<HashMap<String, Arc<control::Forwarder>>>,
    forwarders_changed: tokio::sync::Notify,
    /// The worker id and labels buildx shows.
    hostname: String,
    /// Clients' contexts kept between builds, and each build's copy of one.
    contexts: Arc<contexts::Contexts>,
    work: std::path::PathBuf,
}

impl BuildKit {
    /// `state` is a private folder of the daemon's (kept contexts live there); what a crash
    /// left in its work folder is removed.
    pub fn new(engine: Arc<dyn Engine>, hostname: String, state: std::path::PathBuf) -> Arc<BuildKit> {
        let work = state.join("work");
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::fs::create_dir_all(&work);
        // Clients' files: root's alone, as everything under the data root.
        let _ = std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        Arc::new(BuildKit {
            contexts: Arc::new(contexts::Contexts::new(state.join("contexts"))),
            work,
            engine,
            sessions: Default::default(),
            builds: Default::default(),
            forwarders: Default::default(),
            forwarders_changed: Default::default(),
            hostname,
        })
    }

    /// Serves gRPC (h2, prior knowledge) on a hijacked `/grpc` connection until it closes.
    pub async fn serve_grpc<IO>(self: &Arc<Self>, io: IO)
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        grpc::serve(self.clone(), io).await
    }

    /// Takes over a hijacked `/session` connection until it closes.
    pub async fn serve_session<IO>(self: &Arc<Self>, io: IO, headers: &http::HeaderMap)
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        if let Err(e) = self.sessions.serve(io, headers).await {
            tracing::debug!("build session: {e}");
        }
    }
}
