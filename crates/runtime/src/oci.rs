//! The OCI runtime spec (`config.json`) of a container, built with `oci-spec`'s types from a
//! [`SpecInput`]: Docker's defaults (mounts, device rules, namespaces), then the HostConfig's
//! resources, limits, devices, shared namespaces and the init.
//!
//! oci-spec's `Default`s are runc's example config (a `sh` process, `noNewPrivileges`, an
//! `RLIMIT_NOFILE` of 1024, default namespaces and masked paths): every member those defaults
//! fill is set here explicitly, so nothing of runc's example leaks into a container.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_api::hostconfig::BlkioDeviceKey;
use berth_types::{Error, Result};
use oci_spec::runtime::{
    Capabilities, Capability, Hook, HookBuilder, Hooks, LinuxBlockIo, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpu,
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemory,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResources, LinuxSeccomp,
    LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder, Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
    Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::spec::{blkio_devices, capabilities, system_paths, SharedNs, SpecInput, INIT_PATH};

fn oci_err(e: oci_spec::OciSpecError) -> Error {
    Error::internal(format!("runtime spec: {e}"))
}

/// A setting where zero means "not set".
fn set(v: i64) -> Option<i64> {
    Some(v).filter(|v| *v != 0)
}

fn text(v: &str) -> Option<String> {
    Some(v.to_string()).filter(|v| !v.is_empty())
}

pub(crate) fn mount(
    destination: impl Into<PathBuf>,
    kind: &str,
    source: impl Into<PathBuf>,
    options: &[&str],
) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into())
        .set_typ(Some(kind.to_string()))
        .set_source(Some(source.into()))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

fn namespace(kind: LinuxNamespaceType, path: Option<PathBuf>) -> Result<LinuxNamespace> {
    let b = LinuxNamespaceBuilder::default().typ(kind);
    match path {
        Some(p) => b.path(p).build(),
        None => b.build(),
    }
    .map_err(oci_err)
}

fn namespace_kind(kind: SharedNs) -> LinuxNamespaceType {
    match kind {
        SharedNs::Pid => LinuxNamespaceType::Pid,
        SharedNs::Ipc => LinuxNamespaceType::Ipc,
        SharedNs::Uts => LinuxNamespaceType::Uts,
    }
}

fn device_type(kind: &str) -> LinuxDeviceType {
    match kind {
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        "u" => LinuxDeviceType::U,
        "p" => LinuxDeviceType::P,
        _ => LinuxDeviceType::A,
    }
}

fn device_rule(allow: bool, kind: Option<&str>, major: Option<i64>, minor: Option<i64>) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access("rwm");
    if let Some(k) = kind {
        b = b.typ(device_type(k));
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().map_err(oci_err)
}

/// Docker's default device rules: deny all, then the usual character devices.
fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    let mut rules = vec![device_rule(false, None, None, None)?];
    for (major, minor) in
        [(1, Some(5)), (1, Some(3)), (1, Some(9)), (1, Some(8)), (5, Some(0)), (5, Some(1)), (1, Some(7))]
    {
        rules.push(device_rule(true, Some("c"), Some(major), minor)?);
    }
    rules.push(device_rule(true, Some("c"), Some(136), None)?);
    rules.push(device_rule(true, Some("c"), Some(5), Some(2))?);
    rules.push(device_rule(false, Some("c"), Some(10), Some(229))?);
    rules.push(device_rule(true, Some("c"), Some(10), Some(200))?);
    Ok(rules)
}

/// `CAP_X` names as oci-spec's capabilities; a name it does not know is refused.
fn capability_set(names: &[String]) -> Result<Capabilities> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(n.clone()))
                .map_err(|_| Error::invalid(format!("unknown capability: {n:?}")))
        })
        .collect()
}

/// `--ulimit` entries as rlimits; -1 is unlimited, as Docker converts it.
fn rlimits(list: &[berth_api::hostconfig::Ulimit]) -> Result<Vec<PosixRlimit>> {
    let value = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
    list.iter()
        .map(|u| {
            let name = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
            let typ: PosixRlimitType = serde_json::from_value(serde_json::Value::String(name))
                .map_err(|_| Error::invalid(format!("invalid ulimit name: {:?}", u.name)))?;
            PosixRlimitBuilder::default().typ(typ).soft(value(u.soft)).hard(value(u.hard)).build().map_err(oci_err)
        })
        .collect()
}

fn process(input: &SpecInput, caps: &[String], no_new_privileges: bool) -> Result<Process> {
    let hc = &input.host_config;
    let mut user = UserBuilder::default().uid(input.user.uid).gid(input.user.gid);
    if !input.user.additional_gids.is_empty() {
        user = user.additional_gids(input.user.additional_gids.clone());
    }
    let capset = capability_set(caps)?;
    let mut caps = LinuxCapabilitiesBuilder::default()
        .bounding(capset.clone())
        .effective(capset.clone())
        .permitted(capset)
        .build()
        .map_err(oci_err)?;
    // Not inherited across exec, no ambient set: as Docker (the builder's default fills both).
    caps.set_inheritable(None).set_ambient(None);
    let mut args = input.args.clone();
    if input.init.is_some() {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    let mut p = ProcessBuilder::default()
        .terminal(input.tty)
        .user(user.build().map_err(oci_err)?)
        .args(args)
        .env(input.env.clone())
        .cwd(if input.cwd.is_empty() { "/" } else { input.cwd.as_str() })
        .capabilities(caps)
        .build()
        .map_err(oci_err)?;
    let limits = hc.resources.ulimits.as_deref().unwrap_or_default();
    p.set_rlimits(if limits.is_empty() { None } else { Some(rlimits(limits)?) });
    // Only present when set: libcontainer reads an explicit `false` as "load seccomp after the
    // capabilities are dropped", which then fails for lack of CAP_SYS_ADMIN.
    p.set_no_new_privileges(no_new_privileges.then_some(true));
    p.set_oom_score_adj(set(hc.oom_score_adj).map(|v| v as i32));
    Ok(p)
}

/// The mounts Docker gives every container, then the cgroup v1 binds, the generated /etc files and
/// the user's mounts (a default at a user mount's destination is dropped).
fn mounts(input: &SpecInput) -> Vec<Mount> {
    let hc = &input.host_config;
    let shm_size = format!("size={}", set(hc.shm_size).filter(|v| *v > 0).unwrap_or(64 << 20));
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["ro", "nosuid", "noexec", "nodev"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", &shm_size]),
    ];
    let v1 = cgroup_v1_mounts(host_cgroup_mounts(), &input.cgroups_path, hc.privileged);
    if !v1.is_empty() {
        out.retain(|m| m.typ().as_deref() != Some("cgroup"));
        out.extend(v1);
    }
    let user_at = |d: &std::path::Path| input.mounts.iter().any(|u| std::path::Path::new(&u.destination) == d);
    out.retain(|m| !user_at(m.destination()));
    for (src, dest) in &input.etc_files {
        if !user_at(std::path::Path::new(dest)) {
            out.push(mount(dest, "bind", src, &["rbind", "rprivate"]));
        }
    }
    for m in &input.mounts {
        let opts: Vec<&str> = m.options.iter().map(String::as_str).collect();
        out.push(mount(&m.destination, &m.kind, &m.source, &opts));
    }
    if input.userns.is_some() {
        // In a user namespace no device node can be made: each is bound from the host's node (the
        // runtime would bind from the path in the container, wrong for `--device a:b`). The
        // devices cgroup still decides access.
        for d in &input.devices {
            out.push(mount(&d.path, "bind", &d.host_path, &["bind", "rprivate", "nosuid", "noexec"]));
        }
    }
    if let Some(init) = &input.init {
        out.push(mount(INIT_PATH, "bind", init, &["rbind", "ro", "rprivate"]));
    }
    out
}

/// The host's cgroup mounts (mountinfo's cgroup lines), read once: they do not change while the
/// daemon runs, and the whole of mountinfo grows by a line per running container, so reading it
/// for every container made starting N containers cost O(N²).
fn host_cgroup_mounts() -> &'static str {
    static LINES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        let all = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        all.lines().filter(|l| l.contains(" - cgroup ")).map(|l| format!("{l}\n")).collect()
    })
}

/// `/sys/fs/cgroup` on a cgroup v1 host, as runc makes it: a tmpfs with, for each controller
/// hierarchy, a bind of the container's own cgroup there, read-only unless privileged. libcontainer's
/// own v1 cgroup mount leaves them writable (a container could raise its own memory limit) and
/// binds whole named hierarchies (the host's name=systemd root), and it misreads its cgroups when
/// the container joins another's pid namespace. Empty on a host without v1 hierarchies.
pub(crate) fn cgroup_v1_mounts(mountinfo: &str, cgroups_path: &str, privileged: bool) -> Vec<Mount> {
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
            out.push(mount("/sys/fs/cgroup", "tmpfs", "tmpfs", &["nosuid", "noexec", "nodev", "mode=755", "size=64k"]));
        }
        let mut options = vec!["rbind", "nosuid", "noexec", "nodev", "rprivate"];
        if !privileged {
            options.push("ro");
        }
        let source = format!("{point}/{}", cgroups_path.trim_start_matches('/'));
        out.push(mount(point, "bind", source, &options));
    }
    out
}

fn memory(r: &berth_api::hostconfig::Resources) -> Option<LinuxMemory> {
    let mut m = LinuxMemory::default();
    m.set_limit(Some(r.memory).filter(|v| *v > 0))
        .set_reservation(set(r.memory_reservation))
        .set_swap(set(r.memory_swap))
        // -1 (or absent) is the kernel's default; 0–100 is applied (validated at create).
        .set_swappiness(r.memory_swappiness.and_then(|v| u64::try_from(v).ok()))
        .set_disable_oom_killer(r.oom_kill_disable.filter(|d| *d));
    (m != LinuxMemory::default()).then_some(m)
}

fn cpu(r: &berth_api::hostconfig::Resources) -> Option<LinuxCpu> {
    let mut c = LinuxCpu::default();
    c.set_shares(u64::try_from(r.cpu_shares).ok().filter(|v| *v > 0));
    if r.nano_cpus > 0 {
        c.set_period(Some(100_000)).set_quota(Some(r.nano_cpus * 100_000 / 1_000_000_000));
    }
    if let Some(q) = set(r.cpu_quota) {
        c.set_quota(Some(q)).set_period(Some(set(r.cpu_period).and_then(|p| u64::try_from(p).ok()).unwrap_or(100_000)));
    } else if let Some(p) = set(r.cpu_period).and_then(|p| u64::try_from(p).ok()) {
        c.set_period(Some(p));
    }
    c.set_cpus(text(&r.cpuset_cpus)).set_mems(text(&r.cpuset_mems));
    (c != LinuxCpu::default()).then_some(c)
}

/// Per-device weights and throttles (`--blkio-weight-device`, `--device-read-bps`, …): Docker's
/// (path, value) become OCI (major, minor, value) from the host node's numbers.
fn block_io(r: &berth_api::hostconfig::Resources) -> Result<Option<LinuxBlockIo>> {
    let mut b = LinuxBlockIo::default();
    b.set_weight(Some(r.blkio_weight).filter(|w| *w != 0));
    for key in BlkioDeviceKey::ALL {
        let Some(list) = r.blkio_device_rules(key).filter(|l| !l.is_empty()) else { continue };
        let numbers = blkio_devices(key, &list)?;
        let throttles = || -> Result<Vec<_>> {
            numbers
                .iter()
                .map(|(major, minor, rate)| {
                    LinuxThrottleDeviceBuilder::default()
                        .major(*major as i64)
                        .minor(*minor as i64)
                        .rate(*rate)
                        .build()
                        .map_err(oci_err)
                })
                .collect()
        };
        match key {
            BlkioDeviceKey::Weight => {
                let list = numbers
                    .iter()
                    .map(|(major, minor, w)| {
                        LinuxWeightDeviceBuilder::default()
                            .major(*major as i64)
                            .minor(*minor as i64)
                            .weight(u16::try_from(*w).unwrap_or(u16::MAX))
                            .build()
                            .map_err(oci_err)
                    })
                    .collect::<Result<Vec<_>>>()?;
                b.set_weight_device(Some(list));
            }
            BlkioDeviceKey::ReadBps => drop(b.set_throttle_read_bps_device(Some(throttles()?))),
            BlkioDeviceKey::WriteBps => drop(b.set_throttle_write_bps_device(Some(throttles()?))),
            BlkioDeviceKey::ReadIops => drop(b.set_throttle_read_iops_device(Some(throttles()?))),
            BlkioDeviceKey::WriteIops => drop(b.set_throttle_write_iops_device(Some(throttles()?))),
        }
    }
    Ok((b != LinuxBlockIo::default()).then_some(b))
}

/// The cgroup settings: Docker's device rules plus `--device`s (every device when privileged),
/// memory, CPU, pids and block I/O.
fn resources(input: &SpecInput) -> Result<LinuxResources> {
    let hc = &input.host_config;
    let r = &hc.resources;
    let devices = if hc.privileged {
        // Privileged: the devices cgroup allows everything, as with Docker.
        vec![LinuxDeviceCgroupBuilder::default().allow(true).access("rwm").build().map_err(oci_err)?]
    } else {
        let mut rules = default_device_rules()?;
        for d in &input.devices {
            let rule = LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(device_type(&d.kind))
                .major(d.major as i64)
                .minor(d.minor as i64)
                .access(d.access.clone())
                .build()
                .map_err(oci_err)?;
            rules.push(rule);
        }
        rules
    };
    let mut res = LinuxResources::default();
    res.set_devices(Some(devices)).set_memory(memory(r)).set_cpu(cpu(r)).set_block_io(block_io(r)?);
    if let Some(p) = r.pids_limit.filter(|p| *p != 0) {
        res.set_pids(Some(LinuxPidsBuilder::default().limit(p).build().map_err(oci_err)?));
    }
    Ok(res)
}

/// Device nodes made in the container (none in a user namespace: bound instead, see [`mounts`]).
fn device_nodes(input: &SpecInput) -> Result<Option<Vec<LinuxDevice>>> {
    if input.userns.is_some() || input.devices.is_empty() {
        return Ok(None);
    }
    let mut seen = std::collections::HashSet::new();
    input
        .devices
        .iter()
        // A `--device` inside a privileged container's /dev is listed once.
        .filter(|d| seen.insert(d.path.clone()))
        .map(|d| {
            LinuxDeviceBuilder::default()
                .path(&d.path)
                .typ(device_type(&d.kind))
                .major(d.major as i64)
                .minor(d.minor as i64)
                .file_mode(d.mode)
                .uid(d.uid)
                .gid(d.gid)
                .build()
                .map_err(oci_err)
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Only namespaced sysctls, and `net.*` only with a network namespace of the container's own.
fn sysctls(input: &SpecInput) -> Result<Option<HashMap<String, String>>> {
    let Some(map) = input.host_config.sysctls.as_ref().filter(|m| !m.is_empty()) else { return Ok(None) };
    let host_net = input.netns.is_none();
    for k in map.keys() {
        let namespaced = k.starts_with("net.")
            || k.starts_with("kernel.shm")
            || k.starts_with("kernel.msg")
            || k == "kernel.sem"
            || k.starts_with("fs.mqueue.");
        if !namespaced || (host_net && k.starts_with("net.")) {
            return Err(Error::invalid(format!(
                "sysctl \"{k}\" is not allowed: only namespaced sysctls are (and net.* not with the host network)"
            )));
        }
    }
    Ok(Some(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
}

/// The namespaces made or joined: pid, ipc, uts, mount of its own unless shared (PidMode,
/// IpcMode, UTSMode), the pinned user namespace first, the prepared network namespace.
fn namespaces(input: &SpecInput) -> Result<Vec<LinuxNamespace>> {
    let mut out = Vec::new();
    // Joined first by the runtime, so the namespaces made after it are owned by it.
    if let Some(u) = &input.userns {
        out.push(namespace(LinuxNamespaceType::User, Some(u.clone()))?);
    }
    for kind in [LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts, LinuxNamespaceType::Mount] {
        if !input.ns_join.iter().any(|(k, _)| namespace_kind(*k) == kind) {
            out.push(namespace(kind, None)?);
        }
    }
    if let Some(ns) = &input.netns {
        out.push(namespace(LinuxNamespaceType::Network, Some(ns.clone()))?);
    }
    for (kind, path) in &input.ns_join {
        if let Some(p) = path {
            out.push(namespace(namespace_kind(*kind), Some(p.clone()))?);
        }
    }
    Ok(out)
}

fn hooks(input: &SpecInput) -> Result<Option<Hooks>> {
    if input.hooks.is_empty() {
        return Ok(None);
    }
    let mut by_name: HashMap<&str, Vec<Hook>> = HashMap::new();
    for h in &input.hooks {
        if !matches!(
            h.hook_name.as_str(),
            "prestart" | "createRuntime" | "createContainer" | "startContainer" | "poststart" | "poststop"
        ) {
            return Err(Error::invalid(format!("unknown OCI hook {:?} in a CDI spec", h.hook_name)));
        }
        let mut b = HookBuilder::default().path(&h.path).args(h.args.clone()).env(h.env.clone());
        if let Some(t) = h.timeout {
            b = b.timeout(t);
        }
        by_name.entry(h.hook_name.as_str()).or_default().push(b.build().map_err(oci_err)?);
    }
    let mut hooks = Hooks::default();
    let mut take = |n: &str| by_name.remove(n);
    hooks
        .set_prestart(take("prestart"))
        .set_create_runtime(take("createRuntime"))
        .set_create_container(take("createContainer"))
        .set_start_container(take("startContainer"))
        .set_poststart(take("poststart"))
        .set_poststop(take("poststop"));
    Ok(Some(hooks))
}

fn seccomp(
    input: &SpecInput,
    caps: &[String],
    profile: &Option<Option<serde_json::Value>>,
) -> Result<Option<LinuxSeccomp>> {
    // Privileged containers run without seccomp, as in Docker.
    if input.host_config.privileged {
        return Ok(None);
    }
    let oci = match profile {
        None => crate::seccomp::to_oci(
            &serde_json::from_str(crate::seccomp::DEFAULT_PROFILE).expect("embedded profile is JSON"),
            caps,
        )?,
        Some(None) => return Ok(None),
        Some(Some(p)) => crate::seccomp::to_oci(p, caps)?,
    };
    serde_json::from_value(oci).map(Some).map_err(|e| Error::invalid(format!("seccomp profile: {e}")))
}

/// Every host path the spec names: the root, namespace files and mount sources — what a shim
/// that prunes its mount namespace must keep (`ShimConfig::keep_mounts`).
pub fn host_paths(spec: &Spec) -> Vec<PathBuf> {
    let root = spec.root().as_ref().map(|r| r.path().clone());
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    let mounts = spec.mounts().clone().unwrap_or_default();
    root.into_iter()
        .chain(namespaces.into_iter().filter_map(|n| n.path().clone()))
        .chain(mounts.into_iter().filter_map(|m| m.source().clone()))
        .filter(|p| p.is_absolute())
        .collect()
}

/// The container's runtime spec.
pub fn build(input: &SpecInput) -> Result<Spec> {
    let hc = &input.host_config;
    let caps = capabilities(hc);
    let sec = crate::seccomp::parse_security_opts(hc.security_opts())?;
    let (masked, mut readonly) = system_paths(hc);
    if !hc.privileged && !readonly.is_empty() {
        // The tmpfs that holds the cgroup v1 binds (see `cgroup_v1_mounts`), read-only once they are in.
        readonly.push("/sys/fs/cgroup".into());
    }
    let mut linux = LinuxBuilder::default().build().map_err(oci_err)?;
    linux
        .set_namespaces(Some(namespaces(input)?))
        .set_cgroups_path(Some(PathBuf::from(&input.cgroups_path)))
        .set_resources(Some(resources(input)?))
        .set_masked_paths(Some(masked))
        .set_readonly_paths(Some(readonly))
        .set_devices(device_nodes(input)?)
        .set_sysctl(sysctls(input)?)
        .set_seccomp(seccomp(input, &caps, &sec.seccomp)?)
        .set_uid_mappings(None)
        .set_gid_mappings(None);
    let root = RootBuilder::default().path(&input.rootfs).readonly(hc.readonly_rootfs).build().map_err(oci_err)?;
    let mut spec = SpecBuilder::default().build().map_err(oci_err)?;
    // Only a private UTS namespace may have its own names.
    let shared_uts = input.ns_join.iter().any(|(k, _)| *k == SharedNs::Uts);
    spec.set_version("1.0.2".into())
        .set_process(Some(process(input, &caps, sec.no_new_privileges)?))
        .set_root(Some(root))
        .set_hostname((!shared_uts).then(|| input.hostname.clone()))
        .set_domainname((!shared_uts).then(|| input.domainname.clone()))
        .set_mounts(Some(mounts(input)))
        .set_linux(Some(linux))
        .set_hooks(hooks(input)?)
        // `Annotations` (API 1.43+) go into the OCI spec, as Docker passes them to the runtime.
        .set_annotations(
            hc.annotations
                .as_ref()
                .filter(|a| !a.is_empty())
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        );
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_binds_the_containers_own_cgroups_read_only() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let m = cgroup_v1_mounts(mi, "/berth/abc", false);
        let dests: Vec<&std::path::Path> = m.iter().map(|v| v.destination().as_path()).collect();
        assert_eq!(dests, ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory"].map(std::path::Path::new));
        assert_eq!(m[2].source().as_deref(), Some(std::path::Path::new("/sys/fs/cgroup/memory/berth/abc")));
        assert!(m[2].options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(!cgroup_v1_mounts(mi, "/berth/abc", true)[1].options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(cgroup_v1_mounts("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", "/x", false).is_empty());
    }

    #[test]
    fn names_map_to_oci_types() {
        assert_eq!(capability_set(&["CAP_CHOWN".into()]).unwrap().len(), 1);
        assert!(capability_set(&["CAP_NOPE".into()]).is_err());
        let u = berth_api::hostconfig::Ulimit { name: "nofile".into(), soft: 10, hard: -1 };
        let r = rlimits(&[u]).unwrap();
        assert_eq!((r[0].typ(), r[0].soft(), r[0].hard()), (PosixRlimitType::RlimitNofile, 10, u64::MAX));
        let bad = berth_api::hostconfig::Ulimit { name: "bogus".into(), soft: 1, hard: 1 };
        assert_eq!(rlimits(&[bad]).unwrap_err().message, "invalid ulimit name: \"bogus\"");
    }
}
