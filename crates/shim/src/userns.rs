//! Execs into a container that runs in a user namespace (`userns-remap`).
//!
//! libcontainer's tenant builder (0.7.0) joins every namespace of the container except its user
//! namespace: an exec would run as host root beside a remapped init. So for such a container the
//! shim lets libcontainer set the exec up as root with every capability (it must still be allowed
//! to join the other namespaces), and the workload, just before `execve`, joins the container's
//! user namespace and only then takes on the exec's own user, groups, capabilities and
//! no-new-privileges, exactly as the process spec asks.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::thread::{CapabilitySet, CapabilitySets};

/// Kernel capability numbers, by their OCI names.
const CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn mask(v: &serde_json::Value) -> Result<CapabilitySet, String> {
    let mut bits = 0u64;
    for c in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = c.as_str().unwrap_or_default();
        let n = CAPS.iter().position(|k| *k == name).ok_or_else(|| format!("unknown capability {name:?}"))?;
        bits |= 1 << n;
    }
    Ok(CapabilitySet::from_bits_retain(bits))
}

/// What the exec becomes once inside the user namespace.
#[derive(Clone, Debug)]
pub struct UsernsExec {
    userns: Arc<OwnedFd>,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    bounding: CapabilitySet,
    sets: CapabilitySets,
    no_new_privileges: bool,
}

/// For a container whose init runs in a user namespace other than ours: the exec's real process
/// settings, and a copy of its process spec for libcontainer that runs it as root with every
/// capability until the workload takes them over. `None` for a container in our namespace.
pub fn prepare(init_pid: i32, process_json: &Path) -> Result<Option<(UsernsExec, PathBuf)>, String> {
    let theirs = std::fs::File::open(format!("/proc/{init_pid}/ns/user"))
        .map_err(|e| format!("open the container's user namespace: {e}"))?;
    let ours = std::fs::metadata("/proc/self/ns/user").map_err(|e| format!("stat our user namespace: {e}"))?;
    if theirs.metadata().map_err(|e| e.to_string())?.ino() == ours.ino() {
        return Ok(None);
    }
    let raw = std::fs::read(process_json).map_err(|e| format!("read {}: {e}", process_json.display()))?;
    let mut p: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| format!("exec process spec: {e}"))?;
    let id = |k: &str| p["user"][k].as_u64().unwrap_or(0) as u32;
    let caps = &p["capabilities"];
    let exec = UsernsExec {
        userns: Arc::new(theirs.into()),
        uid: id("uid"),
        gid: id("gid"),
        groups: p["user"]["additionalGids"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g.as_u64()).map(|g| g as u32).collect())
            .unwrap_or_default(),
        bounding: mask(&caps["bounding"])?,
        sets: CapabilitySets {
            effective: mask(&caps["effective"])?,
            permitted: mask(&caps["permitted"])?,
            inheritable: mask(&caps["inheritable"])?,
        },
        no_new_privileges: p["noNewPrivileges"] == true,
    };
    // Every capability the shim holds (some hosts withhold a few, CAP_SYS_RESOURCE say).
    let ours = rustix::thread::capabilities(None).map_err(|e| format!("capget: {e}"))?.permitted;
    let all: Vec<&str> =
        CAPS.iter().enumerate().filter(|(n, _)| ours.bits() & (1 << n) != 0).map(|(_, c)| *c).collect();
    p["user"] = serde_json::json!({"uid": 0, "gid": 0});
    p["capabilities"] = serde_json::json!({"bounding": all, "effective": all, "permitted": all});
    if let Some(o) = p.as_object_mut() {
        o.remove("noNewPrivileges");
    }
    let staged = process_json.with_extension("root.json");
    std::fs::write(&staged, serde_json::to_vec(&p).map_err(|e| e.to_string())?)
        .map_err(|e| format!("write {}: {e}", staged.display()))?;
    Ok(Some((exec, staged)))
}

impl UsernsExec {
    /// Joins the user namespace and takes on the exec's credentials. Runs in the exec's process,
    /// single-threaded, before its seccomp filter is loaded and `execve`.
    pub fn enter(&self) -> Result<(), String> {
        rustix::thread::move_into_link_name_space(self.userns.as_fd(), Some(rustix::thread::LinkNameSpaceType::User))
            .map_err(|e| format!("join the container's user namespace: {e}"))?;
        // SAFETY: plain credential syscalls on this single-threaded process; `groups` outlives the call.
        let rc = unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0 {
                -1
            } else if libc::setresgid(self.gid, self.gid, self.gid) != 0 {
                -2
            } else if libc::setresuid(self.uid, self.uid, self.uid) != 0 {
                -3
            } else {
                0
            }
        };
        if rc != 0 {
            return Err(format!("set user {}:{}: {}", self.uid, self.gid, std::io::Error::last_os_error()));
        }
        // Joining a user namespace gives every capability, the bounding set included: back to
        // the exec's own. (Changing to a uid other than the namespace's root does not drop them,
        // as the old uid was not that root.)
        let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(CAPS.len() as u32 - 1);
        for cap in 0..=last {
            if cap >= 64 || !self.bounding.contains(CapabilitySet::from_bits_retain(1 << cap)) {
                // SAFETY: prctl with integer arguments only.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                    return Err(format!("drop capability {cap}: {}", std::io::Error::last_os_error()));
                }
            }
        }
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
        rustix::thread::set_capabilities(None, self.sets).map_err(|e| format!("set capabilities: {e}"))?;
        if self.no_new_privileges {
            rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_masks_by_kernel_number() {
        let m = mask(&serde_json::json!(["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"])).unwrap();
        assert_eq!(m.bits(), 1 | (1 << 21) | (1 << 40));
        assert!(mask(&serde_json::json!(["CAP_NOPE"])).is_err());
        assert_eq!(mask(&serde_json::Value::Null).unwrap().bits(), 0);
    }
}
