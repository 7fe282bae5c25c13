//! Containers in user namespaces (`userns-remap`): root in the container is an unprivileged id on
//! the host.
//!
//! Each remapped container gets a user namespace with the daemon's maps, pinned in the exec root
//! beside its network namespace, which that user namespace owns (so the container may mount sysfs
//! and the runtime may join it after entering the user namespace). A container that shares another
//! one's network, pid, ipc or uts namespace joins that one's user namespace too. The rootfs is an
//! overlay of idmapped layers (see `berth_sys::idmap`): layers stay unshifted on disk.
//! `--userns=host` (`HostConfig.UsernsMode: "host"`) opts a container out, as with Docker; privileged
//! containers and the host's network or pid namespace require it.

use std::path::{Path, PathBuf};

use berth_api::container::HostConfig;
use berth_sys::idmap::Remap;
use berth_types::{Error, Result};

use super::record::ContainerRecord;
use super::ContainerService;

/// The user namespace a container starts in, when it is not the host's.
#[derive(Debug, Clone)]
pub(super) struct UsernsPlan {
    pub remap: Remap,
    /// Where the namespace is pinned (the container's own, or the one it shares namespaces with).
    pub path: PathBuf,
    /// The container makes the namespace (and pins it at `path`) rather than joining one.
    pub own: bool,
}

impl UsernsPlan {
    /// The host uid and gid of the container's root.
    pub fn root(&self) -> (u32, u32) {
        self.remap.root()
    }
}

/// Docker's create-time checks of `UsernsMode` against the daemon's remap and the other modes.
pub(super) fn check_create(hc: &HostConfig, remapped_daemon: bool) -> Result<()> {
    let mode = hc.userns_mode.as_str();
    if !matches!(mode, "" | "host") {
        return Err(Error::invalid(format!("invalid UsernsMode: {mode:?} (use \"host\" or leave it empty)")));
    }
    if !remapped_daemon || mode == "host" {
        return Ok(());
    }
    if hc.privileged {
        return Err(Error::invalid(
            "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode",
        ));
    }
    if hc.network_mode == "host" {
        return Err(Error::invalid("cannot share the host's network namespace when user namespaces are enabled"));
    }
    if hc.pid_mode == "host" {
        return Err(Error::invalid("cannot share the host PID namespace when user namespaces are enabled"));
    }
    Ok(())
}

impl ContainerService {
    pub(super) fn userns_path(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("userns").join(&id[..16])
    }

    /// True when the container runs in a user namespace of its own or another container's.
    pub(super) fn remapped(&self, rec: &ContainerRecord) -> bool {
        self.cfg.userns_remap.is_some() && rec.host_config.userns_mode != "host"
    }

    /// The user namespace `rec` starts in; `owners` are the containers whose namespaces it joins.
    pub(super) fn userns_plan(&self, rec: &ContainerRecord, owners: &[ContainerRecord]) -> Result<Option<UsernsPlan>> {
        let Some(remap) = self.cfg.userns_remap.clone().filter(|_| self.remapped(rec)) else {
            return Ok(None);
        };
        let mut path = None;
        for o in owners {
            if !self.remapped(o) {
                return Err(Error::invalid(format!(
                    "cannot share the namespaces of container {} with a container in a user namespace: it runs in the host's (--userns=host)",
                    &o.id[..12]
                )));
            }
            let p = self.userns_path(&o.id);
            if path.as_ref().is_some_and(|q| q != &p) {
                return Err(Error::invalid(
                    "cannot share namespaces of two different containers that each have their own user namespace",
                ));
            }
            path = Some(p);
        }
        Ok(Some(match path {
            Some(path) => UsernsPlan { remap, path, own: false },
            None => UsernsPlan { remap, path: self.userns_path(&rec.id), own: true },
        }))
    }
}

/// Makes (or, for a joiner, finds) the plan's user namespace, with `netns` made inside it when
/// given; returns an fd of the namespace for idmapping the rootfs. Blocking.
pub(super) fn enter_plan(plan: &UsernsPlan, netns: Option<&Path>) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    if let Some(ns) = netns {
        std::fs::create_dir_all(ns.parent().expect("netns dir"))?;
        berth_sys::netns::remove(ns)?;
    }
    if plan.own {
        std::fs::create_dir_all(plan.path.parent().expect("userns dir"))?;
        berth_sys::netns::remove(&plan.path)?;
        berth_sys::idmap::pin_namespaces(&plan.remap, &plan.path, netns)?;
    }
    let f = std::fs::File::open(&plan.path).map_err(|e| {
        Error::conflict(format!("the user namespace of the container whose namespaces are shared is gone: {e}"))
    })?;
    if let (false, Some(ns)) = (plan.own, netns) {
        berth_sys::idmap::pin_netns_in(f.as_fd(), ns)?;
    }
    Ok(f.into())
}

/// Gives the container's root the files berthd made for it (hosts, hostname, resolv.conf) and a
/// way through berthd's folders to them and to its rootfs. Blocking.
pub(super) fn open_paths(plan: &UsernsPlan, data_root: &Path, rootfs: &Path, etc_files: &[PathBuf]) -> Result<()> {
    let (uid, gid) = plan.root();
    crate::perms::grant_traverse(data_root, rootfs, gid)?;
    for f in etc_files {
        crate::perms::grant_traverse(data_root, f, gid)?;
        std::os::unix::fs::lchown(f, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// A volume's folder as a remapped container needs it: reachable, and its root owned by the
/// container's root when it is still host root's (a new volume). Blocking.
pub(super) fn open_volume(root: (u32, u32), data_root: &Path, mountpoint: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    crate::perms::grant_traverse(data_root, mountpoint, root.1)?;
    let md = std::fs::symlink_metadata(mountpoint)?;
    if (md.uid(), md.gid()) == (0, 0) {
        std::os::unix::fs::lchown(mountpoint, Some(root.0), Some(root.1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(json: serde_json::Value) -> HostConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn create_checks_as_docker() {
        assert!(check_create(&hc(serde_json::json!({"Privileged": true})), false).is_ok());
        let e = check_create(&hc(serde_json::json!({"Privileged": true})), true).unwrap_err();
        assert!(e.message.starts_with("privileged mode is incompatible with user namespaces."));
        assert!(check_create(&hc(serde_json::json!({"Privileged": true, "UsernsMode": "host"})), true).is_ok());
        let e = check_create(&hc(serde_json::json!({"NetworkMode": "host"})), true).unwrap_err();
        assert_eq!(e.message, "cannot share the host's network namespace when user namespaces are enabled");
        let e = check_create(&hc(serde_json::json!({"PidMode": "host"})), true).unwrap_err();
        assert_eq!(e.message, "cannot share the host PID namespace when user namespaces are enabled");
        assert!(check_create(&hc(serde_json::json!({"UsernsMode": "private"})), false).is_err());
    }
}
