//! What runs in the container's process just before `execve`, for the init and for every exec.
//!
//! A TTY exec's program must see the client's window size from its first instruction (`stty size`,
//! full-screen programs), as runc's `consoleSize` guarantees; libcontainer runs the workload before
//! the shim gets the pty master, so the size is set here on the pty slave.
//!
//! The container's seccomp filter is loaded here from BPF compiled once per profile (see
//! `seccomp.rs`), instead of by libcontainer, which would compile it again in every process.
//! Loading a filter without `no_new_privs` needs CAP_SYS_ADMIN, which the container's own set
//! usually lacks: it is in the process's permitted set only (never bounding, so `execve` cannot give
//! it back), raised for the load and dropped before `execve`.

use berth_runtime::shim::ShimConfig;

use crate::seccomp::{self, Compiled};

/// The profile file the shim keeps in the bundle once it has taken it out of config.json.
pub const PROFILE_FILE: &str = "seccomp.json";

#[derive(Clone)]
pub struct Workload {
    pub size: Option<[u16; 2]>,
    pub seccomp: Option<Compiled>,
    /// An exec into a container in a user namespace: joined here (see `userns.rs`).
    pub userns: Option<crate::userns::UsernsExec>,
}

fn err(what: &str, e: impl std::fmt::Display) -> libcontainer::workload::ExecutorError {
    libcontainer::workload::ExecutorError::Other(format!("{what}: {e}"))
}

/// Where compiled filters are cached: beside the runtime state, shared by every shim of this daemon.
fn cache_dir(cfg: &ShimConfig) -> std::path::PathBuf {
    cfg.state_root.join(".seccomp-bpf")
}

/// The container's compiled filter, from the profile the shim set aside at create (or, for a
/// container made by an older shim, from its config.json).
pub fn container_filter(cfg: &ShimConfig) -> Result<Option<Compiled>, String> {
    let profile: Option<oci_spec::runtime::LinuxSeccomp> = match std::fs::read(cfg.bundle.join(PROFILE_FILE)) {
        Ok(raw) => Some(serde_json::from_slice(&raw).map_err(|e| format!("read seccomp profile: {e}"))?),
        Err(_) => oci_spec::runtime::Spec::load(cfg.bundle.join("config.json"))
            .ok()
            .and_then(|s| s.linux().as_ref().and_then(|l| l.seccomp().clone())),
    };
    profile.map(|p| seccomp::cached(&cache_dir(cfg), &p)).transpose()
}

/// Takes the seccomp profile out of the bundle's config.json (so libcontainer does not compile it)
/// and keeps it beside; without `noNewPrivileges`, CAP_SYS_ADMIN joins the permitted set for the
/// load. Returns the compiled filter.
pub fn take_from_spec(cfg: &ShimConfig) -> Result<Option<Compiled>, String> {
    let path = cfg.bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?)
            .map_err(|e| format!("parse {}: {e}", path.display()))?;
    let Some(profile) = spec["linux"].as_object_mut().and_then(|l| l.remove("seccomp")) else {
        return Ok(None);
    };
    if spec["process"]["noNewPrivileges"] != true {
        if let Some(p) = spec["process"]["capabilities"]["permitted"].as_array_mut() {
            if !p.iter().any(|c| c == "CAP_SYS_ADMIN") {
                p.push("CAP_SYS_ADMIN".into());
            }
        }
    }
    std::fs::write(cfg.bundle.join(PROFILE_FILE), serde_json::to_vec(&profile).map_err(|e| e.to_string())?)
        .map_err(|e| format!("write seccomp profile: {e}"))?;
    std::fs::write(&path, serde_json::to_vec(&spec).map_err(|e| e.to_string())?)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    let profile: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_value(profile).map_err(|e| format!("invalid seccomp profile: {e}"))?;
    seccomp::cached(&cache_dir(cfg), &profile).map(Some)
}

impl libcontainer::workload::Executor for Workload {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorError> {
        if let Some([rows, cols]) = self.size {
            // SAFETY: fd 0 is the pty slave libcontainer installed and stays open across this call.
            let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
            let ws = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            let _ = rustix::termios::tcsetwinsize(stdin, ws);
        }
        if let Some(u) = &self.userns {
            u.enter().map_err(|e| err("user namespace", e))?;
        }
        if let Some(filter) = &self.seccomp {
            use rustix::thread::{capabilities, set_capabilities, CapabilitySet, CapabilitySets};
            let cur = capabilities(None).map_err(|e| err("capget", e))?;
            let admin = CapabilitySet::SYS_ADMIN;
            let borrowed = !cur.effective.contains(admin);
            if borrowed {
                if cur.permitted.contains(admin) {
                    set_capabilities(None, CapabilitySets { effective: cur.effective | admin, ..cur })
                        .map_err(|e| err("raise CAP_SYS_ADMIN", e))?;
                } else {
                    // Not ours to borrow: fall back to no_new_privs, which also allows the load.
                    rustix::thread::set_no_new_privs(true).map_err(|e| err("no_new_privs", e))?;
                }
            }
            seccomp::load(filter).map_err(|e| err("seccomp", e))?;
            if borrowed {
                let permitted = if cur.permitted.contains(admin) { cur.permitted - admin } else { cur.permitted };
                set_capabilities(
                    None,
                    CapabilitySets { effective: cur.effective, permitted, inheritable: cur.inheritable },
                )
                .map_err(|e| err("drop CAP_SYS_ADMIN", e))?;
            }
        }
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }
}
