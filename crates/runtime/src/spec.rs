//! Docker's container configuration → an OCI runtime spec (`config.json`), with Docker's defaults.

use std::path::PathBuf;

use berth_api::container::HostConfig;
use berth_api::hostconfig::{BlkioDeviceKey, DeviceRule};
use serde_json::{json, Value};

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
    /// PidMode/IpcMode/UTSMode: `("pid", None)` shares the host's namespace, `Some(path)` joins
    /// another container's.
    pub ns_join: Vec<(String, Option<PathBuf>)>,
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

/// A setting where zero means "not set".
fn set(v: i64) -> Option<i64> {
    Some(v).filter(|v| *v != 0)
}

fn text(v: &str) -> Option<&str> {
    Some(v).filter(|v| !v.is_empty())
}

/// The parts of HostConfig beyond the basics: shm size, sysctls, ulimits, OOM score, more resources,
/// devices, shared namespaces and the init.
fn apply_extras(spec: &mut Value, input: &SpecInput) -> berth_types::Result<()> {
    let hc = &input.host_config;
    let r = &hc.resources;
    if let Some(shm) = set(hc.shm_size).filter(|v| *v > 0) {
        for m in spec["mounts"].as_array_mut().into_iter().flatten() {
            if m["destination"] == "/dev/shm" && m["source"] == "shm" {
                m["options"] = json!(["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]);
            }
        }
    }
    if let Some(map) = hc.sysctls.as_ref().filter(|m| !m.is_empty()) {
        let host_net = input.netns.is_none();
        let mut out = serde_json::Map::new();
        for (k, v) in map {
            let namespaced = k.starts_with("net.")
                || k.starts_with("kernel.shm")
                || k.starts_with("kernel.msg")
                || k == "kernel.sem"
                || k.starts_with("fs.mqueue.");
            if !namespaced || (host_net && k.starts_with("net.")) {
                return Err(berth_types::Error::invalid(format!(
                    "sysctl \"{k}\" is not allowed: only namespaced sysctls are (and net.* not with the host network)"
                )));
            }
            out.insert(k.clone(), json!(v));
        }
        spec["linux"]["sysctl"] = Value::Object(out);
    }
    if let Some(list) = r.ulimits.as_ref().filter(|l| !l.is_empty()) {
        let rl: Vec<Value> = list
            .iter()
            .map(|u| json!({"type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": u.soft, "hard": u.hard}))
            .collect();
        spec["process"]["rlimits"] = json!(rl);
    }
    if let Some(adj) = set(hc.oom_score_adj) {
        spec["process"]["oomScoreAdj"] = json!(adj);
    }
    // `Annotations` (API 1.43+) go into the OCI spec, as Docker passes them to the runtime.
    if let Some(a) = hc.annotations.as_ref().filter(|a| !a.is_empty()) {
        spec["annotations"] = json!(a);
    }
    let res = &mut spec["linux"]["resources"];
    if let Some(v) = set(r.memory_reservation) {
        res["memory"]["reservation"] = json!(v);
    }
    if r.oom_kill_disable == Some(true) {
        res["memory"]["disableOOMKiller"] = json!(true);
    }
    // -1 (or absent) is the kernel's default; 0–100 is applied (validated at create).
    if let Some(v) = r.memory_swappiness.filter(|v| *v >= 0) {
        res["memory"]["swappiness"] = json!(v);
    }
    if let Some(v) = set(r.memory_swap) {
        res["memory"]["swap"] = json!(v);
    }
    if let Some(v) = set(r.cpu_quota) {
        res["cpu"]["quota"] = json!(v);
        res["cpu"]["period"] = json!(set(r.cpu_period).unwrap_or(100_000));
    } else if let Some(v) = set(r.cpu_period) {
        res["cpu"]["period"] = json!(v);
    }
    if let Some(v) = text(&r.cpuset_cpus) {
        res["cpu"]["cpus"] = json!(v);
    }
    if let Some(v) = text(&r.cpuset_mems) {
        res["cpu"]["mems"] = json!(v);
    }
    if r.blkio_weight != 0 {
        res["blockIO"]["weight"] = json!(r.blkio_weight);
    }
    // Per-device weights and throttles (`--blkio-weight-device`, `--device-read-bps`, …): Docker's
    // {Path, Weight|Rate} become OCI {major, minor, weight|rate} from the host node's numbers.
    for key in BlkioDeviceKey::ALL {
        let Some(list) = r.blkio_device_rules(key).filter(|l| !l.is_empty()) else { continue };
        let out: Vec<Value> = blkio_devices(key, &list)?
            .into_iter()
            .map(|(major, minor, value)| {
                if key == BlkioDeviceKey::Weight {
                    json!({"major": major, "minor": minor, "weight": value})
                } else {
                    json!({"major": major, "minor": minor, "rate": value})
                }
            })
            .collect();
        res["blockIO"][oci_blkio_key(key)] = json!(out);
    }
    if hc.privileged {
        // Privileged: the devices cgroup allows everything, as with Docker.
        res["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    for d in input.devices.iter().filter(|_| !hc.privileged) {
        res["devices"].as_array_mut().expect("devices list").push(json!({
            "allow": true, "type": d.kind, "major": d.major, "minor": d.minor, "access": d.access
        }));
    }
    if input.userns.is_some() {
        // In a user namespace no device node can be made: each is bound from the host's node (the
        // runtime would bind from the path in the container, wrong for `--device a:b`). The
        // devices cgroup above still decides access.
        let mounts = spec["mounts"].as_array_mut().expect("mounts");
        for d in &input.devices {
            mounts.push(json!({"destination": d.path, "type": "bind", "source": d.host_path,
                               "options": ["bind", "rprivate", "nosuid", "noexec"]}));
        }
    } else if !input.devices.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let devs: Vec<Value> = input
            .devices
            .iter()
            // A `--device` inside a privileged container's /dev is listed once.
            .filter(|d| seen.insert(d.path.clone()))
            .map(|d| {
                json!({"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
                       "fileMode": d.mode, "uid": d.uid, "gid": d.gid})
            })
            .collect();
        spec["linux"]["devices"] = json!(devs);
    }
    for (kind, path) in &input.ns_join {
        if kind == "uts" {
            // Only a private UTS namespace may have its own names.
            if let Some(o) = spec.as_object_mut() {
                o.remove("hostname");
                o.remove("domainname");
            }
        }
        let list = spec["linux"]["namespaces"].as_array_mut().expect("namespaces");
        list.retain(|n| n["type"] != kind.as_str());
        if let Some(p) = path {
            list.push(json!({"type": kind, "path": p}));
        }
    }
    if let Some(init) = &input.init {
        spec["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": INIT_PATH, "type": "bind", "source": init, "options": ["rbind", "ro", "rprivate"]
        }));
        let mut args = vec![json!(INIT_PATH), json!("--")];
        args.extend(spec["process"]["args"].as_array().cloned().unwrap_or_default());
        spec["process"]["args"] = json!(args);
    }
    Ok(())
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

/// `/sys/fs/cgroup` on a cgroup v1 host, as runc makes it: a tmpfs with, for each controller
/// hierarchy, a bind of the container's own cgroup there, read-only unless privileged. libcontainer's
/// own v1 cgroup mount leaves them writable (a container could raise its own memory limit) and
/// binds whole named hierarchies (the host's name=systemd root), and it misreads its cgroups when
/// the container joins another's pid namespace. Empty on a host without v1 hierarchies.
fn cgroup_v1_mounts(mountinfo: &str, cgroups_path: &str, privileged: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for l in mountinfo.lines() {
        let Some((pre, post)) = l.split_once(" - ") else { continue };
        let post: Vec<&str> = post.split_whitespace().collect();
        let point = pre.split_whitespace().nth(4).unwrap_or_default();
        if post.first() != Some(&"cgroup") || !point.starts_with("/sys/fs/cgroup/") {
            continue;
        }
        let named = post.get(2).is_some_and(|o| o.split(',').any(|x| x.starts_with("name=")));
        if named {
            continue;
        }
        if out.is_empty() {
            out.push(json!({"destination": "/sys/fs/cgroup", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "noexec", "nodev", "mode=755", "size=64k"]}));
        }
        let mut options = vec!["rbind", "nosuid", "noexec", "nodev", "rprivate"];
        if !privileged {
            options.push("ro");
        }
        out.push(json!({"destination": point, "type": "bind",
                        "source": format!("{point}/{}", cgroups_path.trim_start_matches('/')), "options": options}));
    }
    out
}

pub fn build(input: &SpecInput) -> berth_types::Result<Value> {
    let hc = &input.host_config;
    let caps = capabilities(hc);
    let mut namespaces =
        vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"})];
    // Joined first by the runtime, so the namespaces made after it are owned by it.
    if let Some(u) = &input.userns {
        namespaces.insert(0, json!({"type": "user", "path": u}));
    }
    if let Some(ns) = &input.netns {
        namespaces.push(json!({"type": "network", "path": ns}));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ];
    let v1 = cgroup_v1_mounts(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        &input.cgroups_path,
        hc.privileged,
    );
    if !v1.is_empty() {
        mounts.retain(|m| m["type"] != "cgroup");
        mounts.extend(v1);
    }
    mounts.retain(|m| !input.mounts.iter().any(|u| m["destination"] == u.destination.as_str()));
    for (src, dest) in &input.etc_files {
        if !input.mounts.iter().any(|u| &u.destination == dest) {
            mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
        }
    }
    for m in &input.mounts {
        mounts.push(json!({"destination": m.destination, "type": m.kind, "source": m.source, "options": m.options}));
    }
    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}
        ]
    });
    if hc.resources.memory > 0 {
        resources["memory"] = json!({"limit": hc.resources.memory});
    }
    let mut cpu = serde_json::Map::new();
    if hc.resources.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(hc.resources.cpu_shares));
    }
    if hc.resources.nano_cpus > 0 {
        cpu.insert("period".into(), json!(100_000));
        cpu.insert("quota".into(), json!(hc.resources.nano_cpus * 100_000 / 1_000_000_000));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = hc.resources.pids_limit.filter(|p| *p != 0) {
        resources["pids"] = json!({"limit": p});
    }
    let (masked, mut readonly) = system_paths(hc);
    if !hc.privileged && !readonly.is_empty() {
        // The tmpfs that holds the cgroup v1 binds (see `cgroup_v1_mounts`), read-only once they are in.
        readonly.push("/sys/fs/cgroup".into());
    }
    let mut user = json!({"uid": input.user.uid, "gid": input.user.gid});
    if !input.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(input.user.additional_gids);
    }
    let sec = crate::seccomp::parse_security_opts(hc.security_opts())?;
    // Privileged containers run without seccomp, as in Docker.
    let seccomp = if hc.privileged {
        None
    } else {
        match &sec.seccomp {
            None => Some(crate::seccomp::to_oci(
                &serde_json::from_str(crate::seccomp::DEFAULT_PROFILE).expect("embedded profile is JSON"),
                &caps,
            )?),
            Some(None) => None,
            Some(Some(p)) => Some(crate::seccomp::to_oci(p, &caps)?),
        }
    };
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": input.tty,
            "user": user,
            "args": input.args,
            "env": input.env,
            "cwd": if input.cwd.is_empty() { "/" } else { input.cwd.as_str() },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}
        },
        "root": {"path": input.rootfs, "readonly": hc.readonly_rootfs},
        "hostname": input.hostname,
        "domainname": input.domainname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": input.cgroups_path,
            "resources": resources,
            "maskedPaths": masked,
            "readonlyPaths": readonly
        }
    });
    if let Some(s) = seccomp {
        spec["linux"]["seccomp"] = s;
    }
    for h in &input.hooks {
        if !matches!(
            h.hook_name.as_str(),
            "prestart" | "createRuntime" | "createContainer" | "startContainer" | "poststart" | "poststop"
        ) {
            return Err(berth_types::Error::invalid(format!("unknown OCI hook {:?} in a CDI spec", h.hook_name)));
        }
        let mut hook = json!({"path": h.path, "args": h.args, "env": h.env});
        if let Some(t) = h.timeout {
            hook["timeout"] = json!(t);
        }
        if !spec["hooks"].is_object() {
            spec["hooks"] = json!({});
        }
        spec["hooks"][&h.hook_name].as_array_mut().map(|a| a.push(hook.clone())).unwrap_or_else(|| {
            spec["hooks"][&h.hook_name] = json!([hook]);
        });
    }
    // Only present when set: libcontainer reads an explicit `false` as "load seccomp after the
    // capabilities are dropped", which then fails for lack of CAP_SYS_ADMIN.
    if sec.no_new_privileges {
        spec["process"]["noNewPrivileges"] = json!(true);
    }
    apply_extras(&mut spec, input)?;
    Ok(spec)
}

/// The OCI `blockIO` member of a per-device rule list.
fn oci_blkio_key(key: BlkioDeviceKey) -> &'static str {
    match key {
        BlkioDeviceKey::Weight => "weightDevice",
        BlkioDeviceKey::ReadBps => "throttleReadBpsDevice",
        BlkioDeviceKey::WriteBps => "throttleWriteBpsDevice",
        BlkioDeviceKey::ReadIops => "throttleReadIOPSDevice",
        BlkioDeviceKey::WriteIops => "throttleWriteIOPSDevice",
    }
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
    fn cgroup_v1_binds_the_containers_own_cgroups_read_only() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let m = cgroup_v1_mounts(mi, "/berth/abc", false);
        let dests: Vec<&str> = m.iter().map(|v| v["destination"].as_str().unwrap()).collect();
        assert_eq!(dests, ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory"]);
        assert_eq!(m[2]["source"], "/sys/fs/cgroup/memory/berth/abc");
        assert!(m[2]["options"].as_array().unwrap().contains(&json!("ro")));
        assert!(!cgroup_v1_mounts(mi, "/berth/abc", true)[1]["options"].as_array().unwrap().contains(&json!("ro")));
        assert!(cgroup_v1_mounts("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", "/x", false).is_empty());
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
