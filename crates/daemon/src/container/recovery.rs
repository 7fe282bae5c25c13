//! Crash recovery at berthd start: whatever an interrupted operation of a previous berthd left
//! behind is collected, and what was collected is logged.
//!
//! - build-step containers of builds that died with their daemon (their client is gone too);
//! - cgroups under our parent that belong to no live container (a shim killed with its daemon,
//!   a build step cut off mid-run): their processes are killed and the cgroups removed;
//! - snapshots (writable layers) of containers that have no record: a create cut off before it
//!   persisted;
//! - images of builds that died with their daemon, that nothing holds (no tag, no container, no
//!   child): the dangling step images no client ever got.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{blocking, ContainerService};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl ContainerService {
    pub(super) async fn recover(self: &Arc<Self>) {
        let steps: Vec<String> = self.all().iter().map(|e| e.record()).filter(|r| r.build_step).map(|r| r.id).collect();
        for id in &steps {
            if let Err(e) = self.remove(id, true, true).await {
                tracing::warn!(container = %id, "recovery: removing a build step: {e}");
            }
        }
        if !steps.is_empty() {
            tracing::info!(count = steps.len(), "recovery: removed build-step containers of interrupted builds");
        }
        let store = self.images.store();
        let usage = self.usage_fn();
        match blocking(move || store.collect_interrupted_builds(&*usage)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "recovery: removed dangling images of interrupted builds"),
            Err(e) => tracing::warn!("recovery: images of interrupted builds: {e}"),
        }
        let live: Vec<String> =
            self.all().iter().map(|e| e.record()).filter(|r| r.state.status.alive()).map(|r| r.id).collect();
        let parent = self.cfg.cgroup_parent.trim_matches('/').to_string();
        let cgroups = blocking(move || Ok(collect_cgroups(Path::new(CGROUP_ROOT), &parent, &live))).await;
        if let Ok(n @ 1..) = cgroups {
            tracing::info!(count = n, "recovery: removed cgroups of containers that no longer run");
        }
        // Containers with a parent of their own (`--cgroup-parent`): only their own cgroup, by id —
        // the rest of such a parent (a pod's, say) is not ours.
        let own: Vec<String> = self
            .all()
            .iter()
            .map(|e| e.record())
            .filter(|r| !r.state.status.alive() && !r.host_config.resources.cgroup_parent.trim().is_empty())
            .map(|r| self.cgroups_path(&r).trim_start_matches('/').to_string())
            .collect();
        if !own.is_empty() {
            let n = blocking(move || Ok(own.iter().map(|rel| kill_cgroup(rel)).sum::<usize>())).await.unwrap_or(0);
            if n > 0 {
                tracing::info!(count = n, "recovery: removed cgroups of containers that no longer run");
            }
        }
        let known: Vec<String> = self.ids();
        let snapshots = self.images.store().layout().snapshots();
        let orphans: Vec<String> = std::fs::read_dir(&snapshots)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !known.contains(k))
            .collect();
        for k in &orphans {
            let merged = snapshots.join(k).join("merged");
            let _ = blocking(move || berth_sys::mount::unmount(&merged)).await;
            if let Err(e) = self.images.remove_snapshot(k).await {
                tracing::warn!(snapshot = %k, "recovery: {e}");
            }
        }
        if !orphans.is_empty() {
            tracing::info!(count = orphans.len(), "recovery: removed snapshots of half-created containers");
        }
    }
}

/// Every hierarchy's copy of `<root>/<hierarchy>/<parent>/<id>` whose id is not in `live`:
/// processes killed, directories removed. Returns how many were removed.
pub(crate) fn collect_cgroups(root: &Path, parent: &str, live: &[String]) -> usize {
    let mut removed = 0;
    for h in hierarchies(root) {
        let Ok(children) = std::fs::read_dir(h.join(parent)) else { continue };
        for c in children.flatten() {
            let name = c.file_name().to_string_lossy().to_string();
            if !c.path().is_dir() || live.contains(&name) {
                continue;
            }
            if remove_cgroup(&c.path()) {
                removed += 1;
            }
        }
    }
    removed
}

/// A container's cgroup `rel` (under the cgroup root), in every hierarchy: its processes killed and
/// the cgroups removed. For a container whose shim died without reporting an exit: nothing else
/// supervises those processes any more.
pub(crate) fn kill_cgroup(rel: &str) -> usize {
    hierarchies(Path::new(CGROUP_ROOT))
        .iter()
        .map(|h| h.join(rel))
        .filter(|p| p.is_dir())
        .filter(|p| remove_cgroup(p))
        .count()
}

/// Each v1 hierarchy under `root`, and `root` itself (the v2 tree, or the empty cgroup2 mount).
fn hierarchies(root: &Path) -> Vec<PathBuf> {
    let mut h: Vec<PathBuf> =
        std::fs::read_dir(root).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    h.push(root.to_path_buf());
    h
}

/// Kills what runs in a cgroup (and its children) and removes it, retrying while the kernel
/// reaps the processes. A bounded number of tries: a cgroup that will not go is logged and left.
fn remove_cgroup(dir: &Path) -> bool {
    if let Ok(sub) = std::fs::read_dir(dir) {
        for s in sub.flatten().filter(|s| s.path().is_dir()) {
            remove_cgroup(&s.path());
        }
    }
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = berth_sys::process::kill(pid, 9);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    tracing::warn!(cgroup = %dir.display(), "recovery: could not remove a leftover cgroup");
    false
}
