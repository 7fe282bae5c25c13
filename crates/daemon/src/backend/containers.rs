//! What `/containers`, `/exec` and `/commit` need, in three narrow contracts — the life cycle,
//! exec, and the container's files — and the container service behind them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use berth_api::container::{
    Change, ContainerInspect, CreateRequest, ExecInspect, PathStat, Sizes, Summary, TopResponse, UpdateResponse,
};
use berth_api::filters::Filters;
use berth_api::image::OciPlatform;
use berth_api::stats::Stats;
use berth_types::Result;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use super::{BoxFuture, BoxReader};
use crate::container::{
    AttachOptions, AttachStream, Chunk, CommitRequest, ExecConfig, ExecStream, LogOptions, UpdateConfig, WaitCondition,
    WaitState,
};
use crate::ContainerService;

/// A wait that has begun: it resolves when the condition is met.
pub type Waiting = Pin<Box<dyn Future<Output = WaitState> + Send>>;

/// Creating, running, stopping, observing and removing containers.
pub trait ContainerLifecycle: Send + Sync {
    /// The new container's id and the warnings; with `platform`, the image's platform must be it.
    fn create<'a>(
        &'a self,
        req: CreateRequest,
        name: Option<&'a str>,
        platform: Option<&'a OciPlatform>,
    ) -> BoxFuture<'a, (String, Vec<String>)>;
    fn list(&self, all: bool, limit: Option<usize>, filters: &Filters) -> Result<Vec<Summary>>;
    fn inspect(&self, id: &str) -> Result<ContainerInspect>;
    /// `SizeRw`/`SizeRootFs` (walks the writable layer).
    fn sizes<'a>(&'a self, id: &'a str) -> Pin<Box<dyn Future<Output = Sizes> + Send + 'a>>;
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
    fn stop<'a>(&'a self, id: &'a str, timeout: Option<i64>, signal: Option<&'a str>) -> BoxFuture<'a, ()>;
    fn kill<'a>(&'a self, id: &'a str, signal: &'a str) -> BoxFuture<'a, ()>;
    /// Errors (no such container) come back at once; the wait itself is the returned future.
    fn wait(&self, id: &str, cond: WaitCondition) -> Result<Waiting>;
    fn remove<'a>(&'a self, id: &'a str, force: bool, volumes: bool) -> BoxFuture<'a, ()>;
    /// `docker rm --link /parent/alias`.
    fn remove_link<'a>(&'a self, link: &'a str) -> BoxFuture<'a, ()>;
    fn set_paused<'a>(&'a self, id: &'a str, paused: bool) -> BoxFuture<'a, ()>;
    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, ()>;
    fn resize<'a>(&'a self, id: &'a str, h: u16, w: u16) -> BoxFuture<'a, ()>;
    fn update<'a>(&'a self, id: &'a str, u: UpdateConfig) -> BoxFuture<'a, UpdateResponse>;
    fn top<'a>(&'a self, id: &'a str, ps_args: &'a str) -> BoxFuture<'a, TopResponse>;
    /// One sample; `prev` is the one before it (for the `precpu` figures).
    fn stats<'a>(&'a self, id: &'a str, prev: Option<Stats>) -> BoxFuture<'a, Stats>;
    /// Whether the container has a TTY, and its log records.
    fn logs(&self, id: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<Chunk>)>;
    fn attach<'a>(&'a self, id: &'a str, opts: AttachOptions) -> BoxFuture<'a, AttachStream>;
    /// Ids removed and bytes freed.
    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, (Vec<String>, u64)>;
}

/// Processes started in running containers.
pub trait ExecBackend: Send + Sync {
    fn exec_create<'a>(&'a self, container: &'a str, config: ExecConfig) -> BoxFuture<'a, String>;
    /// That the exec exists and its container runs (an HTTP error before a stream is hijacked).
    fn exec_check(&self, id: &str) -> Result<()>;
    fn exec_start<'a>(&'a self, id: &'a str, detach: bool) -> BoxFuture<'a, ExecStream>;
    fn exec_inspect(&self, id: &str) -> Result<ExecInspect>;
    fn exec_resize<'a>(&'a self, id: &'a str, h: u16, w: u16) -> BoxFuture<'a, ()>;
}

/// A container's files: copy in and out, export, changes, commit.
pub trait ArchiveBackend: Send + Sync {
    fn archive_stat<'a>(&'a self, id: &'a str, path: &'a str) -> BoxFuture<'a, PathStat>;
    /// Starts writing the tar of `path` into `out`; its stat.
    fn archive_get<'a>(&'a self, id: &'a str, path: &'a str, out: DuplexStream) -> BoxFuture<'a, PathStat>;
    fn archive_put<'a>(
        &'a self,
        id: &'a str,
        path: &'a str,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
        body: BoxReader,
    ) -> BoxFuture<'a, ()>;
    /// Checks the container, then writes its whole file system as a tar into `out` in the background.
    fn export(&self, id: &str, out: DuplexStream) -> Result<()>;
    fn changes<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Vec<Change>>;
    /// The new image's id.
    fn commit<'a>(&'a self, id: &'a str, req: CommitRequest) -> BoxFuture<'a, String>;
}

/// The container service as all three.
pub struct Containers(pub Arc<ContainerService>);

impl ContainerLifecycle for Containers {
    fn create<'a>(
        &'a self,
        req: CreateRequest,
        name: Option<&'a str>,
        platform: Option<&'a OciPlatform>,
    ) -> BoxFuture<'a, (String, Vec<String>)> {
        Box::pin(async move {
            match platform {
                Some(p) => self.0.create_for_platform(req, name, p).await,
                None => self.0.create(req, name).await,
            }
        })
    }
    fn list(&self, all: bool, limit: Option<usize>, filters: &Filters) -> Result<Vec<Summary>> {
        self.0.list(all, limit, filters)
    }
    fn inspect(&self, id: &str) -> Result<ContainerInspect> {
        self.0.inspect(id)
    }
    fn sizes<'a>(&'a self, id: &'a str) -> Pin<Box<dyn Future<Output = Sizes> + Send + 'a>> {
        Box::pin(self.0.sizes(id))
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.0.start(id))
    }
    fn stop<'a>(&'a self, id: &'a str, timeout: Option<i64>, signal: Option<&'a str>) -> BoxFuture<'a, ()> {
        Box::pin(self.0.stop(id, timeout, signal))
    }
    fn kill<'a>(&'a self, id: &'a str, signal: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.0.kill(id, signal))
    }
    fn wait(&self, id: &str, cond: WaitCondition) -> Result<Waiting> {
        Ok(Box::pin(self.0.wait(id, cond)?))
    }
    fn remove<'a>(&'a self, id: &'a str, force: bool, volumes: bool) -> BoxFuture<'a, ()> {
        Box::pin(self.0.remove(id, force, volumes))
    }
    fn remove_link<'a>(&'a self, link: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.0.remove_link(link))
    }
    fn set_paused<'a>(&'a self, id: &'a str, paused: bool) -> BoxFuture<'a, ()> {
        Box::pin(self.0.set_paused(id, paused))
    }
    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.0.rename(id, name))
    }
    fn resize<'a>(&'a self, id: &'a str, h: u16, w: u16) -> BoxFuture<'a, ()> {
        Box::pin(self.0.resize(id, h, w))
    }
    fn update<'a>(&'a self, id: &'a str, u: UpdateConfig) -> BoxFuture<'a, UpdateResponse> {
        Box::pin(self.0.update_resources(id, u))
    }
    fn top<'a>(&'a self, id: &'a str, ps_args: &'a str) -> BoxFuture<'a, TopResponse> {
        Box::pin(self.0.top(id, ps_args))
    }
    fn stats<'a>(&'a self, id: &'a str, prev: Option<Stats>) -> BoxFuture<'a, Stats> {
        Box::pin(self.0.stats(id, prev))
    }
    fn logs(&self, id: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<Chunk>)> {
        self.0.logs(id, opts)
    }
    fn attach<'a>(&'a self, id: &'a str, opts: AttachOptions) -> BoxFuture<'a, AttachStream> {
        Box::pin(self.0.attach(id, opts))
    }
    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, (Vec<String>, u64)> {
        Box::pin(self.0.prune(filters))
    }
}

impl ExecBackend for Containers {
    fn exec_create<'a>(&'a self, container: &'a str, config: ExecConfig) -> BoxFuture<'a, String> {
        Box::pin(self.0.exec_create(container, config))
    }
    fn exec_check(&self, id: &str) -> Result<()> {
        self.0.exec_check(id)
    }
    fn exec_start<'a>(&'a self, id: &'a str, detach: bool) -> BoxFuture<'a, ExecStream> {
        Box::pin(self.0.exec_start(id, detach))
    }
    fn exec_inspect(&self, id: &str) -> Result<ExecInspect> {
        self.0.exec_inspect(id)
    }
    fn exec_resize<'a>(&'a self, id: &'a str, h: u16, w: u16) -> BoxFuture<'a, ()> {
        Box::pin(self.0.exec_resize(id, h, w))
    }
}

impl ArchiveBackend for Containers {
    fn archive_stat<'a>(&'a self, id: &'a str, path: &'a str) -> BoxFuture<'a, PathStat> {
        Box::pin(self.0.archive_stat(id, path))
    }
    fn archive_get<'a>(&'a self, id: &'a str, path: &'a str, out: DuplexStream) -> BoxFuture<'a, PathStat> {
        Box::pin(self.0.archive_get(id, path, out))
    }
    fn archive_put<'a>(
        &'a self,
        id: &'a str,
        path: &'a str,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
        body: BoxReader,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.0.archive_put(id, path, no_overwrite_dir_non_dir, copy_uid_gid, body))
    }
    fn export(&self, id: &str, out: DuplexStream) -> Result<()> {
        self.0.get(id)?;
        let (svc, id) = (self.0.clone(), id.to_string());
        tokio::spawn(async move {
            if let Err(e) = svc.export(&id, out).await {
                tracing::warn!(container = %id, "export: {e}");
            }
        });
        Ok(())
    }
    fn changes<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Vec<Change>> {
        Box::pin(async move {
            Ok(self.0.changes(id).await?.into_iter().map(|c| Change { path: c.path, kind: c.kind }).collect())
        })
    }
    fn commit<'a>(&'a self, id: &'a str, req: CommitRequest) -> BoxFuture<'a, String> {
        Box::pin(async move { Ok(self.0.commit(id, req).await?.to_string()) })
    }
}
