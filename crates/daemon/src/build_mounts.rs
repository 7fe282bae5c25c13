//! The host side of a RUN step's `--mount`s (BuildKit builds): each becomes a `HostConfig.Mounts`
//! entry of the step's container. Sources inside the build context or an image are resolved
//! there (openat2, confined) and bound from the opened fd onto a private staging path, so the
//! runtime never resolves a path someone else controls. A writable bind gets an overlay so its
//! writes are thrown away; caches live under the data root by id and are never part of a layer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use berth_api::mount::{Mount, TmpfsOptions};
use berth_builder::{BindRoot, RunMount, Sharing, SshSource};
use berth_image::ImageStore;
use berth_types::{new_id, Digest, Result};
use tokio::sync::OwnedMutexGuard;

/// Per cache id, for `sharing=locked` (one step at a time) and `private` (a step that finds it
/// busy gets a fresh, throw-away folder).
static CACHE_LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

/// A step's mounts, set up; torn down on drop (after the step's container is gone).
pub(crate) struct StepMounts {
    store: Arc<ImageStore>,
    staging: PathBuf,
    snapshots: Vec<String>,
    _locks: Vec<OwnedMutexGuard<()>>,
    /// `HostConfig.Mounts` entries for the step's container.
    pub api: Vec<Mount>,
    /// Targets whose mount points the runtime may have created (removed from the step's layer).
    pub targets: Vec<String>,
    /// The SSH agent sockets' accept loops.
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for StepMounts {
    fn drop(&mut self) {
        for f in &self.forwarders {
            f.abort();
        }
        let (store, staging, snaps) = (self.store.clone(), self.staging.clone(), std::mem::take(&mut self.snapshots));
        // Unmounting is a syscall per mount: not on an async worker.
        let undo = move || {
            release(&staging);
            for k in snaps {
                if let Ok(s) = store.snapshot_mounts(&k) {
                    let _ = berth_sys::mount::unmount(&s.target);
                }
                let _ = store.remove_snapshot(&k);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(undo)),
            Err(_) => undo(),
        }
    }
}

/// Unmounts and removes a step's staging folder. Nothing is removed recursively while it may still
/// be a mount point: a bind of the build context (or an image root) must never be emptied.
fn release(staging: &Path) {
    let Ok(entries) = std::fs::read_dir(staging) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let top = if name.ends_with("-rw") { p.join("merged") } else { p.clone() };
        let _ = berth_sys::mount::unmount(&top);
        if berth_sys::mount::is_mountpoint(&top) {
            tracing::warn!("build mount {} is still mounted; left in place", top.display());
            continue;
        }
        let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
    }
    let _ = std::fs::remove_dir(staging);
}

fn cache_lock(id: &str) -> Arc<tokio::sync::Mutex<()>> {
    CACHE_LOCKS.lock().unwrap().entry(id.to_string()).or_default().clone()
}

/// Sets up `mounts` for one step.
pub(crate) async fn prepare(store: Arc<ImageStore>, mounts: Vec<RunMount>) -> Result<StepMounts> {
    let staging = store.layout().tmp().join(format!("runmount-{}", new_id()));
    let mut locks = Vec::new();
    // Which caches this step may use as they are (the rest get a throw-away folder).
    let mut shared_ok = Vec::new();
    for m in &mounts {
        if let RunMount::Cache { id, sharing, .. } = m {
            let ok = match sharing {
                Sharing::Shared => true,
                Sharing::Locked => {
                    locks.push(cache_lock(id).lock_owned().await);
                    true
                }
                Sharing::Private => match cache_lock(id).try_lock_owned() {
                    Ok(g) => {
                        locks.push(g);
                        true
                    }
                    Err(_) => false,
                },
            };
            shared_ok.push(ok);
        }
    }
    let mut step = StepMounts {
        store: store.clone(),
        staging,
        snapshots: vec![],
        _locks: locks,
        api: vec![],
        targets: vec![],
        forwarders: vec![],
    };
    let st = store.clone();
    let staging = step.staging.clone();
    let (api, targets, snapshots, sockets) =
        tokio::task::spawn_blocking(move || set_up(&st, &staging, mounts, shared_ok))
            .await
            .map_err(|e| berth_types::Error::internal(format!("blocking task: {e}")))?;
    step.snapshots = snapshots;
    step.targets = targets;
    for (listener, id, agents) in sockets {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        step.forwarders.push(tokio::spawn(forward_agent(listener, id, agents)));
    }
    step.api = api?;
    Ok(step)
}

/// An SSH agent socket of the step, with the client's agent it forwards to.
type AgentSocket = (std::os::unix::net::UnixListener, String, SshSource);

/// A bind mount of a staged file or folder for the step's container.
fn bind(source: &Path, target: String, read_only: bool) -> Mount {
    Mount { kind: "bind".into(), source: source.display().to_string(), target, read_only, ..Default::default() }
}

type SetUp = (Result<Vec<Mount>>, Vec<String>, Vec<String>, Vec<AgentSocket>);

/// Accepts the step's connections to an agent socket and joins each to a new connection to the
/// client's agent; ends when the step does (aborted).
async fn forward_agent(listener: tokio::net::UnixListener, id: String, agents: SshSource) {
    while let Ok((mut conn, _)) = listener.accept().await {
        let (id, agents) = (id.clone(), agents.clone());
        tokio::spawn(async move {
            match agents.0.connect(&id).await {
                Ok(mut agent) => {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut agent).await;
                }
                Err(e) => tracing::debug!("ssh agent {id}: {e}"),
            }
        });
    }
}

/// The blocking part. Snapshots made are returned even on failure, so the drop removes them.
fn set_up(store: &ImageStore, staging: &Path, mounts: Vec<RunMount>, shared_ok: Vec<bool>) -> SetUp {
    let mut snapshots = Vec::new();
    let mut targets = Vec::new();
    let mut sockets = Vec::new();
    let mut shared = shared_ok.into_iter();
    let res = (|| -> Result<Vec<Mount>> {
        std::fs::create_dir_all(staging)?;
        let mut api = Vec::new();
        for (n, m) in mounts.into_iter().enumerate() {
            targets.push(m.target().to_string());
            let slot = staging.join(n.to_string());
            api.push(match m {
                RunMount::Bind { target, root, source, rw } => {
                    let root_dir = match root {
                        BindRoot::Context(dir) => dir,
                        BindRoot::Image(img) => {
                            let key = format!("runmount-{}", new_id());
                            snapshots.push(key.clone());
                            let s = store.prepare_image_view(&key, img.id.as_ref())?;
                            s.overlay.mount(&s.target)?;
                            s.target
                        }
                    };
                    let staged = crate::container::stage_confined(&root_dir, &source, &slot)?;
                    let source = if rw { writable_view(&staged, &staging.join(format!("{n}-rw")))? } else { staged };
                    bind(&source, target, !rw)
                }
                RunMount::Cache { target, id, mode, uid, gid, readonly, .. } => {
                    let dir = if shared.next().unwrap_or(true) {
                        store.layout().root().join("buildkit-cache").join(Digest::of(id.as_bytes()).hex())
                    } else {
                        slot
                    };
                    if !dir.exists() {
                        std::fs::create_dir_all(&dir)?;
                        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
                        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                    }
                    bind(&dir, target, readonly)
                }
                RunMount::Tmpfs { target, size } => {
                    let size_bytes = size.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
                    let tmpfs_options = Some(TmpfsOptions { size_bytes, ..Default::default() });
                    Mount { kind: "tmpfs".into(), target, tmpfs_options, ..Default::default() }
                }
                RunMount::Secret { target, data, mode, uid, gid } => {
                    use std::os::unix::fs::OpenOptionsExt;
                    let file = staging.join(format!("{n}-secret"));
                    let mut f = std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(&file)?;
                    std::io::Write::write_all(&mut f, &data)?;
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
                    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                    bind(&file, target, true)
                }
                RunMount::Ssh { target, id, mode, uid, gid, agents } => {
                    let sock = staging.join(format!("{n}-ssh"));
                    // Bound through the folder's fd: a data root's path can be longer than a
                    // socket address may be (108 bytes).
                    let dir = std::fs::File::open(staging)?;
                    let short = format!("/proc/self/fd/{}/{n}-ssh", std::os::fd::AsRawFd::as_raw_fd(&dir));
                    let listener = std::os::unix::net::UnixListener::bind(&short)?;
                    drop(dir);
                    std::os::unix::fs::chown(&sock, Some(uid), Some(gid))?;
                    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                    sockets.push((listener, id, agents));
                    bind(&sock, target, false)
                }
            });
        }
        Ok(api)
    })();
    (res, targets, snapshots, sockets)
}

/// An overlay over `lower` whose writes land in a throw-away upper folder: a `rw` bind mount.
fn writable_view(lower: &Path, dir: &Path) -> Result<PathBuf> {
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d)?;
    }
    if !lower.is_dir() {
        return Err(berth_types::Error::invalid("a writable bind mount (rw) needs a directory source"));
    }
    berth_sys::mount::Overlay { lowers: vec![lower.to_path_buf()], upper, work }.mount(&merged)?;
    Ok(merged)
}
