//! The daemon's settings, as `berthd` flags and daemon.json give them.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// cgroup parent of every container, like Docker's `cgroup-parent` (default `/berth`).
    pub cgroup_parent: String,
    /// The `berth-shim` binary.
    pub shim_path: PathBuf,
}
