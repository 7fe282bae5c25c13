//! Docker's semantics of a container's configuration (capabilities, masked paths, devices, block I/O,
//! the process environment) and the input the OCI spec is built from (`oci.rs`).

use std::path::PathBuf;

use berth_api::container::HostConfig;
use berth_api::hostconfig::{BlkioDeviceKey, DeviceRule};

pub use crate::oci::{build, host_paths};
use crate::user::ResolvedUser;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL_CAPS: [&str; 41] = [
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

pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// A mount the daemon resolved (volume, bind or tmpfs), in OCI terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecMount {
    pub destination: String,
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// A namespace a container may share with the host or another container instead of having its
/// own (PidMode, IpcMode, UTSMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedNs {
    Pid,
    Ipc,
    Uts,
}

impl SharedNs {
    /// The name in `/proc/<pid>/ns/` and in Docker's messages.
    pub fn name(self) -> &'static str {
        match self {
            SharedNs::Pid => "pid",
            SharedNs::Ipc => "ipc",
            SharedNs::Uts => "uts",
        }
    }
}

/// What the spec is made from; the daemon fills it after merging container and image config.
#[derive(Debug, Clone)]
pub struct SpecInput {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ResolvedUser,
    pub hostname: String,
    pub domainname: String,
    pub tty: bool,
    /// None shares the host's network namespace.
    pub netns: Option<PathBuf>,
    /// The pinned user namespace the container joins (`userns-remap`); None runs it in the host's.
    pub userns: Option<PathBuf>,
    pub cgroups_path: String,
    pub host_config: HostConfig,
    /// Files the daemon generated (hosts, hostname, resolv.conf) and where they go.
    pub etc_files: Vec<(PathBuf, String)>,
    /// User mounts, parents first; a default mount at the same destination is dropped.
    pub mounts: Vec<SpecMount>,
    /// PidMode/IpcMode/UTSMode: `(Pid, None)` shares the host's namespace, `Some(path)` joins
    /// another container's.
    pub ns_join: Vec<(SharedNs, Option<PathBuf>)>,
    /// `--init`: the host path of a static init (tini) to run as pid 1 in front of the command.
    pub init: Option<PathBuf>,
    /// `--device`s, resolved on the host.
    pub devices: Vec<Device>,
    /// OCI hooks (from CDI specs): `(hook name, hook)`.
    pub hooks: Vec<crate::cdi::Hook>,
}

/// A host device made available in the container (`--device /dev/x[:/dev/y[:rwm]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: String,
    /// The node on the host it comes from.
    pub host_path: String,
    /// `c` or `b`.
    pub kind: String,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub access: String,
}

impl Device {
    /// The device at `path` in the container, from a host node's stat; `None` if it is no device.
    fn from_stat(path: &str, host_path: &str, st: &rustix::fs::Stat, access: &str) -> Option<Device> {
        let kind = match st.st_mode & libc_mode::S_IFMT {
            libc_mode::S_IFCHR => "c",
            libc_mode::S_IFBLK => "b",
            _ => return None,
        };
        Some(Device {
            path: path.to_string(),
            host_path: host_path.to_string(),
            kind: kind.into(),
            major: rustix::fs::major(st.st_rdev) as u64,
            minor: rustix::fs::minor(st.st_rdev) as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            access: access.to_string(),
        })
    }
}

/// Where the init binary appears in the container, as Docker's docker-init.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Every device node under the host's /dev, as a privileged container gets them (runc skips the
/// same folders: they are mounted separately or meaningless in a container).
fn all_host_devices(dir: &std::path::Path, out: &mut Vec<Device>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !matches!(name.as_str(), "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev") {
                all_host_devices(&p, out);
            }
            continue;
        }
        if name == "console" || ft.is_symlink() {
            continue;
        }
        if let Some(d) = rustix::fs::stat(&p)
            .ok()
            .and_then(|st| Device::from_stat(&p.to_string_lossy(), &p.to_string_lossy(), &st, "rwm"))
        {
            out.push(d);
        }
    }
}

/// Resolves `--device` entries (`{PathOnHost, PathInContainer, CgroupPermissions}`) against the
/// host; a privileged container gets every host device as well.
pub fn host_devices(hc: &HostConfig) -> berth_types::Result<Vec<Device>> {
    let mut out = Vec::new();
    if hc.privileged {
        all_host_devices(std::path::Path::new("/dev"), &mut out);
    }
    for d in hc.resources.devices.iter().flatten() {
        let host = d.path_on_host.as_str();
        let inside = Some(d.path_in_container.as_str()).filter(|p| !p.is_empty()).unwrap_or(host);
        let access = Some(d.cgroup_permissions.as_str()).filter(|p| !p.is_empty()).unwrap_or("rwm");
        out.push(device_from_host(host, inside, access)?);
    }
    Ok(out)
}

/// The host device node `host`, to appear at `inside` with cgroup `access` (`rwm`).
pub fn device_from_host(host: &str, inside: &str, access: &str) -> berth_types::Result<Device> {
    let st = rustix::fs::stat(host).map_err(|e| {
        berth_types::Error::invalid(format!(
            "error gathering device information while adding custom device \"{host}\": {e}"
        ))
    })?;
    Device::from_stat(inside, host, &st, access)
        .ok_or_else(|| berth_types::Error::invalid(format!("{host} is not a device node")))
}

mod libc_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFCHR: u32 = 0o020000;
    pub const S_IFBLK: u32 = 0o060000;
}

fn cap_name(c: &str) -> String {
    let c = c.to_ascii_uppercase();
    if c.starts_with("CAP_") {
        c
    } else {
        format!("CAP_{c}")
    }
}

/// Docker's capability arithmetic: defaults, then CapDrop (ALL clears), then CapAdd (ALL adds all).
pub fn capabilities(hc: &HostConfig) -> Vec<String> {
    // libcontainer 0.7 fails to start a process holding CAP_SYS_RESOURCE ("failed syscall"), so
    // "all capabilities" means all but that one until it is fixed there.
    let all = || ALL_CAPS.iter().filter(|c| **c != "CAP_SYS_RESOURCE").map(|s| s.to_string()).collect::<Vec<_>>();
    if hc.privileged {
        return all();
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let drops: Vec<String> = hc.cap_drop.iter().map(|c| cap_name(c)).collect();
    if drops.iter().any(|c| c == "CAP_ALL") {
        caps.clear();
    } else {
        caps.retain(|c| !drops.contains(c));
    }
    for a in &hc.cap_add {
        let a = cap_name(a);
        if a == "CAP_ALL" {
            return all();
        }
        if a == "CAP_SYS_RESOURCE" {
            continue;
        }
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    caps
}

/// The environment Docker gives a process: PATH if missing, HOSTNAME, HOME, TERM for a TTY.
pub fn process_env(env: &[String], hostname: &str, home: &str, tty: bool) -> Vec<String> {
    let has = |k: &str| env.iter().any(|e| e.split_once('=').map(|x| x.0).unwrap_or(e) == k);
    let mut out = Vec::new();
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOSTNAME") {
        out.push(format!("HOSTNAME={hostname}"));
    }
    if tty && !has("TERM") {
        out.push("TERM=xterm".into());
    }
    out.extend(env.iter().cloned());
    if !has("HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

/// `MaskedPaths` and `ReadonlyPaths` as applied, as Docker: none when privileged or with
/// `--security-opt systempaths=unconfined`; the HostConfig's lists when given (cri-dockerd sends
/// the kubelet's); Docker's defaults otherwise.
pub fn system_paths(hc: &HostConfig) -> (Vec<String>, Vec<String>) {
    if hc.privileged || hc.security_opts().iter().any(|o| o == "systempaths=unconfined") {
        return (Vec::new(), Vec::new());
    }
    let list = |given: &Option<Vec<String>>, default: &[&str]| -> Vec<String> {
        match given {
            Some(a) => a.clone(),
            None => default.iter().map(|s| s.to_string()).collect(),
        }
    };
    (list(&hc.masked_paths, &MASKED_PATHS), list(&hc.readonly_paths, &READONLY_PATHS))
}

/// `(path, weight|rate)` rules as (major, minor, value) of each host block device (blocking:
/// stats the nodes); anything but a block device is refused.
pub fn blkio_devices(key: BlkioDeviceKey, list: &[DeviceRule]) -> berth_types::Result<Vec<(u64, u64, u64)>> {
    let key = key.docker();
    let mut out = Vec::new();
    for (path, value) in list {
        let st =
            rustix::fs::stat(path.as_str()).map_err(|e| berth_types::Error::invalid(format!("{key}: {path}: {e}")))?;
        if st.st_mode & libc_mode::S_IFMT != libc_mode::S_IFBLK {
            return Err(berth_types::Error::invalid(format!("{key}: {path} is not a block device")));
        }
        out.push((rustix::fs::major(st.st_rdev) as u64, rustix::fs::minor(st.st_rdev) as u64, *value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_arithmetic() {
        let mut hc =
            HostConfig { cap_drop: vec!["chown".into()], cap_add: vec!["NET_ADMIN".into()], ..Default::default() };
        let c = capabilities(&hc);
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert_eq!(c.len(), 14);
        hc.cap_drop = vec!["ALL".into()];
        assert_eq!(capabilities(&hc), vec!["CAP_NET_ADMIN".to_string()]);
    }

    #[test]
    fn system_paths_as_docker() {
        let mut hc = HostConfig::default();
        let (m, r) = system_paths(&hc);
        assert!(m.contains(&"/proc/kcore".to_string()) && r.contains(&"/proc/sys".to_string()));
        // Given lists replace the defaults, an empty one included.
        hc.masked_paths = Some(vec!["/proc/version".into()]);
        hc.readonly_paths = Some(vec![]);
        assert_eq!(system_paths(&hc), (vec!["/proc/version".to_string()], vec![]));
        hc.security_opt = Some(vec!["systempaths=unconfined".into()]);
        assert_eq!(system_paths(&hc), (vec![], vec![]));
        let privileged = HostConfig { privileged: true, ..Default::default() };
        assert_eq!(system_paths(&privileged), (vec![], vec![]));
    }

    #[test]
    fn env_defaults() {
        let e = process_env(&["A=1".into()], "abc", "/root", false);
        assert_eq!(e, vec![format!("PATH={DEFAULT_PATH}"), "HOSTNAME=abc".into(), "A=1".into(), "HOME=/root".into()]);
        let e = process_env(&["PATH=/x".into(), "HOME=/h".into()], "abc", "/root", true);
        assert_eq!(e, vec!["HOSTNAME=abc".to_string(), "TERM=xterm".into(), "PATH=/x".into(), "HOME=/h".into()]);
    }
}
