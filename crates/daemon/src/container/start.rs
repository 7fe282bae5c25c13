//! `start`: the container's rootfs, namespaces, network and spec made ready, its shim spawned and
//! told to start (supervision and exits: `supervise.rs`).

use berth_runtime::spec::SharedNs;
use std::path::Path;
use std::sync::Arc;

use berth_runtime::proto;
use berth_runtime::shim::{self, ShimConfig, ShimConn};
use berth_runtime::spec::{self, SpecInput, SpecMount};
use berth_runtime::user;
use berth_sys::root::Root;
use berth_types::{Error, Result};
use tokio::sync::oneshot;

use super::record::ContainerRecord;
use super::supervise::{read_hello, PendingStart, WatchedShim};
use super::{blocking, ContainerService, Entry, Event};

use super::network::DEFAULT_HOSTS;

/// The host's resolv.conf without loopback nameservers, which mean nothing inside a container.
fn container_resolv_conf(hc: &berth_api::container::HostConfig) -> String {
    resolv_conf_from(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(), hc)
}

/// [`container_resolv_conf`] from the host's file as text.
fn resolv_conf_from(host: &str, hc: &berth_api::container::HostConfig) -> String {
    let list = |l: &Option<Vec<String>>| l.clone().unwrap_or_default();
    let (dns, search, opts) = (list(&hc.dns), list(&hc.dns_search), list(&hc.dns_options));
    let mut out: Vec<String> = host
        .lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            let first = w.next();
            // --dns, --dns-search and --dns-option replace the host's lines of that kind.
            !(first == Some("nameserver")
                && (!dns.is_empty() || w.next().is_some_and(|ip| ip.starts_with("127.") || ip == "::1"))
                || (first == Some("search") || first == Some("domain")) && !search.is_empty()
                || first == Some("options") && !opts.is_empty())
        })
        .map(String::from)
        .collect();
    out.extend(dns.iter().map(|d| format!("nameserver {d}")));
    if !search.is_empty() {
        out.push(format!("search {}", search.join(" ")));
    }
    if !opts.is_empty() {
        out.push(format!("options {}", opts.join(" ")));
    }
    if !out.iter().any(|l| l.starts_with("nameserver")) {
        out.extend(["nameserver 8.8.8.8".to_string(), "nameserver 8.8.4.4".to_string()]);
    }
    out.join("\n") + "\n"
}

pub(super) use berth_runtime::shim::parse_size;

/// `ConsoleSize: [rows, cols]` as clients send it (API >= 1.42).
/// Docker's `ConsoleSize` (height, width); `[0, 0]` is "not given".
pub(super) fn console_size(v: [u64; 2]) -> Option<[u16; 2]> {
    let clamp = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
    (v != [0, 0]).then(|| [clamp(v[0]), clamp(v[1])])
}

/// `--group-add` on top of the user's groups: numbers as given, names through the container's
/// /etc/group. For the init and for every exec alike.
pub(super) fn group_add(
    root: &Root,
    hc: &berth_api::container::HostConfig,
    usr: &mut user::ResolvedUser,
) -> Result<()> {
    for g in hc.group_add.iter().flatten() {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                user::resolve_user(root, &format!("0:{g}"))
                    .map_err(|_| {
                        Error::invalid(format!("Unable to find group {g}: no matching entries in group file"))
                    })?
                    .gid
            }
        };
        if !usr.additional_gids.contains(&gid) {
            usr.additional_gids.push(gid);
        }
    }
    Ok(())
}

/// Exit code Docker records when a start fails, by the runtime's message.
fn start_failure_code(msg: &str) -> i64 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        128
    }
}

impl ContainerService {
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<()> {
        let _timer = crate::metrics::container_action("start");
        let e = self.get(name)?;
        // A manual start re-arms the restart policy.
        e.update(|r| r.manual_stop = false);
        self.start_inner_checked(&e).await
    }

    /// Starts a container under its lifecycle lock, through the state machine: `starting` here;
    /// `running` is recorded by the supervisor when the shim reports STARTED (before it can see the
    /// exit), or the start fails and the state goes back.
    pub(super) async fn start_inner_checked(self: &Arc<Self>, e: &Arc<Entry>) -> Result<()> {
        let e = e.clone();
        let _op = e.op.lock().await;
        let rec = e.transition(Event::Start)?;
        // The previous run's shim may still be deleting the runtime state and cgroups this start
        // makes anew under the same names.
        e.shim_finished().await;
        match self.start_inner(&e, &rec).await {
            Ok(()) => Ok(()),
            Err(err) => {
                *e.shim.lock().await = None;
                self.release_host_state(&rec.id).await;
                self.release_volumes(&rec, false).await;
                self.release_network(&e).await;
                let msg = err.message.clone();
                let failed = Event::StartFailed { error: msg.clone(), code: start_failure_code(&msg) };
                if let Ok(rec) = e.transition(failed) {
                    let _ = self.persist(&rec).await;
                }
                if rec.host_config.auto_remove {
                    let _ = self.remove_entry(&e, true, false).await;
                }
                Err(err)
            }
        }
    }

    /// What a start does once the process runs: the supervisor calls it on STARTED, before it
    /// reads the next frame, so an exit is always recorded after the start it ends.
    pub(super) async fn on_started(self: &Arc<Self>, e: &Arc<Entry>, pid: i32) -> Result<()> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let rec = e.transition(Event::Started { pid, at: now })?;
        self.persist(&rec).await?;
        self.start_health(e);
        self.publish_volume_mounts(&rec);
        self.publish("start", &rec, &[]);
        Ok(())
    }

    async fn start_inner(self: &Arc<Self>, e: &Arc<Entry>, rec: &ContainerRecord) -> Result<()> {
        let id = rec.id.clone();
        let snapshot = self.images.snapshot_mounts(&id).await?;
        // Image mounts: each image's own snapshot, mounted below beside the root.
        let mut image_snaps = Vec::new();
        for m in rec.mounts.iter().filter(|m| m.kind == "image") {
            let key = super::mounts::image_mount_key(&id, &m.destination);
            image_snaps.push((m.destination.clone(), self.images.snapshot_mounts(&key).await?));
        }
        // `container:<id>` joins the other container's network namespace (the host's, when that one
        // runs on the host network) and, as Docker, shares its hostname, hosts and resolv.conf.
        let joined = match rec.host_config.network_mode.strip_prefix("container:") {
            Some(other) => {
                let o = self.get(other)?.record();
                if !o.state.running() {
                    return Err(Error::conflict(format!("cannot join network of a non running container: {}", o.id)));
                }
                Some(o)
            }
            None => None,
        };
        let rec = &match &joined {
            Some(o) => e.update(|r| {
                r.config.hostname = o.config.hostname.clone();
                r.config.domainname = o.config.domainname.clone();
            }),
            None => rec.clone(),
        };
        let host_net = rec.host_config.network_mode == "host"
            || joined.as_ref().is_some_and(|o| o.host_config.network_mode == "host");
        let shared_ns = joined.as_ref().filter(|_| !host_net).map(|o| self.netns_path(&o.id));
        let etc_dir = joined.as_ref().map(|o| self.container_dir(&o.id));
        let own_ns = !host_net && shared_ns.is_none();
        let ns_join = self.namespace_modes(rec)?;
        let userns = self.userns_plan(rec, &self.ns_owners(rec, joined.as_ref()))?;
        // Link variables come first: the container's own environment overrides them, as Docker's.
        let env_base = super::links::overlay_env(self.link_env(rec)?, &rec.config.env);
        let (data_root, exec_root) = (self.cfg.data_root.clone(), self.cfg.exec_root.clone());
        let cdi_names = berth_runtime::cdi::requested(&rec.host_config)?;
        let cdi_dirs = self.cfg.cdi_spec_dirs.clone();
        let init = match rec.host_config.init {
            Some(true) => Some(self.init_binary()?),
            _ => None,
        };
        let netns = if host_net { None } else { shared_ns.clone().or_else(|| Some(self.netns_path(&id))) };
        let bundle = self.bundle_dir(&id);
        let cdir = self.container_dir(&id);
        let rec2 = rec.clone();
        let cgroups_path = self.cgroups_path(rec);
        let netns2 = netns.clone();
        let shim_cfg = ShimConfig {
            id: id.clone(),
            bundle: bundle.clone(),
            state_root: self.cfg.exec_root.join("runtime"),
            log_path: self.log_path(&id),
            socket: self.shim_socket(&id),
            exit_file: bundle.join("exit.json"),
            open_stdin: rec.config.open_stdin,
            tty: rec.config.tty,
            console_size: console_size(rec.host_config.console_size),
            log_max_size: rec.host_config.log_config.config.get("max-size").and_then(|s| parse_size(s)).unwrap_or(0),
            log_max_files: rec.host_config.log_config.config.get("max-file").and_then(|s| s.parse().ok()).unwrap_or(1),
            log_none: rec.host_config.log_config.kind == "none",
            log_driver: rec.host_config.log_config.kind.clone(),
            log_opts: rec.host_config.log_config.config.clone(),
            log_attrs: super::logdriver::attrs(rec),
            log_tag: super::logdriver::tag(rec),
            name: rec.name.clone(),
            image: rec.config.image.clone(),
            journal_socket: self.cfg.journal_socket.clone(),
            cgroups_path: cgroups_path.clone(),
            detach_mounts: super::mount_scopes(&self.cfg.data_root, &self.cfg.exec_root),
            keep_mounts: Vec::new(),
        };
        let shim_bin = self.cfg.shim_exec.clone();
        let vstore = self.volumes.store();
        let staging = self.staging_dir(&id);
        let shim_cfg2 = shim_cfg.clone();
        let t0 = std::time::Instant::now();
        // Processes a crashed shim left in the container's cgroup would block a new create.
        let cg = self.cgroup(rec);
        let _ = blocking(move || {
            for p in cg.pids() {
                let _ = berth_sys::process::kill(p, 9);
            }
            Ok(())
        })
        .await;
        let pid = blocking(move || {
            let rec = rec2;
            // A remapped container's own network namespace is made inside its user namespace.
            let userns_fd = match &userns {
                Some(u) => Some(super::userns::enter_plan(u, netns2.as_deref().filter(|_| own_ns))?),
                None => None,
            };
            let mut image_roots = std::collections::BTreeMap::new();
            for s in std::iter::once(&snapshot).chain(image_snaps.iter().map(|(_, s)| s)) {
                if !berth_sys::mount::is_mountpoint(&s.target) {
                    match (&userns, &userns_fd) {
                        (Some(u), Some(fd)) => {
                            use std::os::fd::AsFd;
                            s.overlay.mount_idmapped(&s.target, fd.as_fd(), u.root())?
                        }
                        _ => s.overlay.mount(&s.target)?,
                    }
                }
            }
            for (dst, s) in &image_snaps {
                image_roots.insert(dst.clone(), s.target.clone());
            }
            if let (true, Some(ns), None) = (own_ns, &netns2, &userns) {
                std::fs::create_dir_all(ns.parent().expect("netns dir"))?;
                berth_sys::netns::remove(ns)?;
                berth_sys::netns::create(ns)?;
            }
            // /etc files, kept with the container like Docker's hostname, hosts and resolv.conf;
            // a container on another's network uses that one's.
            let hostname = rec.config.hostname.clone();
            if etc_dir.is_none() {
                std::fs::write(cdir.join("hostname"), format!("{hostname}\n"))?;
                let hosts = if host_net {
                    std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| DEFAULT_HOSTS.to_string())
                } else {
                    DEFAULT_HOSTS.to_string()
                };
                std::fs::write(cdir.join("hosts"), hosts)?;
                let resolv = container_resolv_conf(&rec.host_config);
                let resolv =
                    if super::dns::wants_dns(&rec) { super::dns::resolv_conf(&rec, &resolv) } else { resolv };
                std::fs::write(cdir.join("resolv.conf"), resolv)?;
            }
            let etc = etc_dir.unwrap_or_else(|| cdir.clone());
            let etc_files: Vec<_> = ["hostname", "hosts", "resolv.conf"].iter().map(|f| etc.join(f)).collect();
            if let Some(u) = &userns {
                super::userns::open_paths(u, &data_root, &snapshot.target, &etc_files)?;
                for root in image_roots.values() {
                    super::userns::open_paths(u, &data_root, root, &[])?;
                }
            }
            let reach = userns.as_ref().map(|u| super::mounts::Reach { root: u.root(), data_root, exec_root });

            let root = Root::open(&snapshot.target)?;
            let mut usr = user::resolve_user(&root, &rec.config.user)?;
            group_add(&root, &rec.host_config, &mut usr)?;
            let mut devices = spec::host_devices(&rec.host_config)?;
            let cdi = if cdi_names.is_empty() {
                Default::default()
            } else {
                berth_runtime::cdi::resolve(&cdi_dirs, &cdi_names)?
            };
            apply_cdi(&cdi, &mut devices, &mut usr)?;
            let cwd = if rec.config.working_dir.is_empty() { "/".to_string() } else { rec.config.working_dir.clone() };
            // In a remapped rootfs files are made as the container's root (host root is not mapped).
            match &userns {
                Some(u) => berth_sys::idmap::with_fs_ids(u.root(), || root.mkdir(Path::new(&cwd), 0o755))?,
                None => root.mkdir(Path::new(&cwd), 0o755)?,
            }
            let env = spec::process_env(
                &super::links::overlay_env(env_base, &cdi.env),
                &hostname,
                &usr.home,
                rec.config.tty,
            );
            let path_env = env
                .iter()
                .find_map(|v| v.strip_prefix("PATH="))
                .unwrap_or(spec::DEFAULT_PATH)
                .to_string();
            let mut mounts =
                super::mounts::spec_mounts(&rec.mounts, &vstore, &root, &staging, reach.as_ref(), &image_roots)?;
            mounts.extend(cdi.mounts.iter().map(|m| SpecMount {
                destination: m.container_path.clone(),
                kind: "bind".into(),
                source: m.host_path.clone(),
                options: if m.options.is_empty() { vec!["rbind".into(), "rprivate".into()] } else { m.options.clone() },
            }));
            user::check_command(&root, &rec.path, &path_env, &cwd).map_err(|e| {
                Error::invalid(format!(
                    "failed to create task for container: failed to create shim task: OCI runtime create failed: unable to start container process: {}: unknown",
                    e.message
                ))
            })?;
            let mut args = vec![rec.path.clone()];
            args.extend(rec.args.iter().cloned());
            let input = SpecInput {
                rootfs: snapshot.target.clone(),
                args,
                env,
                cwd,
                user: usr,
                hostname,
                domainname: rec.config.domainname.clone(),
                tty: rec.config.tty,
                netns: netns2,
                userns: userns.as_ref().map(|u| u.path.clone()),
                cgroups_path,
                host_config: rec.host_config.clone(),
                etc_files: etc_files.into_iter().map(|f| {
                    let inside = format!("/etc/{}", f.file_name().expect("file name").to_string_lossy());
                    (f, inside)
                }).collect(),
                mounts,
                ns_join,
                init,
                devices,
                hooks: cdi.hooks.clone(),
            };
            tracing::debug!(container = %rec.id, elapsed = ?t0.elapsed(), "rootfs, netns and files ready");
            let _ = std::fs::remove_dir_all(&bundle);
            // State a killed shim left behind (after a reboot, say) would make the create fail.
            let _ = std::fs::remove_dir_all(shim_cfg2.state_root.join(&shim_cfg2.id));
            std::fs::create_dir_all(&bundle)?;
            std::fs::create_dir_all(shim_cfg2.socket.parent().expect("socket dir"))?;
            let oci = spec::build(&input)?;
            let shim_cfg2 = ShimConfig { keep_mounts: spec::host_paths(&oci), ..shim_cfg2 };
            let json = serde_json::to_vec_pretty(&oci).map_err(|e| Error::internal(e.to_string()))?;
            std::fs::write(bundle.join("config.json"), json)?;
            shim::spawn(&shim_bin, &shim_cfg2)
                .map_err(|e| Error::internal(format!("failed to create task for container: {}", e.message)))
        })
        .await?;

        tracing::debug!(container = %id, elapsed = ?t0.elapsed(), "shim created the container");
        // Connected at once: from here on, whatever ends this start, the shim is watched until it
        // closes, so the next start of this container waits for its clean-up (`shim_finished`).
        let conn = async {
            let mut conn = ShimConn::connect(&shim_cfg.socket).await?;
            let hello = read_hello(&mut conn.reader).await?;
            Ok::<_, Error>((conn, hello))
        };
        let (conn, hello) = match conn.await {
            Ok(c) => c,
            Err(err) => {
                // The init waits for START: killing it makes the shim exit and clean up.
                let _ = berth_sys::process::kill(pid, 9);
                return Err(err);
            }
        };
        e.shim_gone.send_replace(false);
        let mut watched = WatchedShim { reader: Some(conn.reader), gone: e.shim_gone.clone() };
        if rec.host_config.resources.oom_kill_disable == Some(true) {
            // The cgroup exists and the init waits for START: nothing has run yet.
            let cg = self.cgroup(rec);
            if let Err(err) = blocking(move || Ok(cg.disable_oom_killer()?)).await {
                let _ = berth_sys::process::kill(pid, 9);
                return Err(Error::internal(format!("oom-kill-disable: {}", err.message)));
            }
        }
        if own_ns && !rec.endpoints.is_empty() {
            let mut eps = rec.endpoints.clone();
            for (i, ep) in eps.iter_mut().enumerate() {
                ep.if_name = ep.wanted_if_name(i);
            }
            let plumbed = match self.assign_addresses(&id, &mut eps) {
                Ok(lease) => {
                    let (store, eps2) = (self.networks.store(), eps.clone());
                    blocking(move || {
                        let gateway = Self::gateway_endpoint(&store, &eps2);
                        Self::plumb(&store, pid, &eps2, 0, gateway)
                    })
                    .await
                    .map(|()| lease)
                }
                Err(e) => Err(e),
            };
            let lease = match plumbed {
                Ok(lease) => lease,
                Err(err) => {
                    // The init waits for START: killing it makes the shim exit and clean up.
                    let _ = berth_sys::process::kill(pid, 9);
                    return Err(err);
                }
            };
            let rec = e.update(|r| r.endpoints = eps);
            // In the record now: the addresses are taken by it.
            drop(lease);
            for ep in &rec.endpoints {
                if let Ok(n) = self.networks.get(&ep.network_id).await {
                    self.networks.publish("connect", &n, &[("container", id.clone())]);
                }
            }
        }
        let rec_now = e.record();
        self.start_dns(e).await;
        self.refresh_hosts(&rec_now).await;
        // Published before the process runs, as Docker programs them: a host port that cannot be
        // had fails the start instead of leaving a running container without it.
        match self.publish_ports(&rec_now).await {
            Ok(ports) if ports != rec_now.ports => {
                e.update(|r| r.ports = ports);
            }
            Ok(_) => {}
            Err(err) => {
                let _ = berth_sys::process::kill(pid, 9);
                return Err(Error::internal(format!(
                    "driver failed programming external connectivity on endpoint {} ({id}): {}",
                    rec.name.trim_start_matches('/'),
                    err.message
                )));
            }
        }
        tracing::debug!(container = %id, elapsed = ?t0.elapsed(), "network ready");
        let (tx, rx) = oneshot::channel();
        *e.shim.lock().await = Some(conn.writer);
        e.shim_ready.notify_waiters();
        let start = PendingStart { done: tx, pid: hello.pid.max(pid) };
        let reader = watched.reader.take().expect("the shim's reader");
        tokio::spawn(self.clone().supervise(e.clone(), reader, Some(start)));
        if let Some(w) = e.shim.lock().await.as_mut() {
            w.send(proto::START, &[]).await?;
        }
        let started = rx.await;
        tracing::debug!(container = %id, elapsed = ?t0.elapsed(), "container started");
        match started {
            Ok(r) => r,
            Err(_) => Err(Error::internal(format!("shim for {id} went away during start"))),
        }
    }

    /// Unmounts the root and removes the network namespace of a container that is not running.
    pub(super) async fn release_host_state(&self, id: &str) {
        let target = self.images.snapshot_mounts(id).await.map(|s| s.target);
        let mut image_roots = Vec::new();
        if let Ok(rec) = self.get(id).map(|e| e.record()) {
            for key in super::mounts::image_mount_keys(&rec) {
                if let Ok(s) = self.images.snapshot_mounts(&key).await {
                    image_roots.push(s.target);
                }
            }
        }
        let netns = self.netns_path(id);
        let staging = self.staging_dir(id);
        let userns = self.userns_path(id);
        let _ = blocking(move || {
            super::mounts::release_staging(&staging);
            for t in image_roots {
                berth_sys::mount::unmount(&t)?;
            }
            if let Ok(t) = target {
                berth_sys::mount::unmount(&t)?;
            }
            berth_sys::netns::remove(&netns)?;
            berth_sys::netns::remove(&userns)
        })
        .await
        .map_err(|err| tracing::warn!(container = %id, "release host state: {err}"));
    }

    /// The containers whose namespaces `rec` joins: its network's and its pid, ipc and uts ones'.
    fn ns_owners(&self, rec: &ContainerRecord, joined: Option<&ContainerRecord>) -> Vec<ContainerRecord> {
        let mut out: Vec<ContainerRecord> = joined.into_iter().cloned().collect();
        let hc = &rec.host_config;
        for mode in [&hc.pid_mode, &hc.ipc_mode, &hc.uts_mode] {
            if let Some(o) = mode.strip_prefix("container:").and_then(|o| self.get(o).ok()) {
                out.push(o.record());
            }
        }
        out
    }

    /// PidMode, IpcMode and UTSMode: `host` shares the host's namespace, `container:<id>` another
    /// running container's.
    fn namespace_modes(&self, rec: &ContainerRecord) -> Result<Vec<(SharedNs, Option<std::path::PathBuf>)>> {
        let mut out = Vec::new();
        let hc = &rec.host_config;
        for (key, mode, ns) in [
            ("PidMode", &hc.pid_mode, SharedNs::Pid),
            ("IpcMode", &hc.ipc_mode, SharedNs::Ipc),
            ("UTSMode", &hc.uts_mode, SharedNs::Uts),
        ] {
            let (mode, kind) = (mode.as_str(), ns.name());
            if mode == "host" {
                out.push((ns, None));
            } else if let Some(other) = mode.strip_prefix("container:") {
                let o = self.get(other)?.record();
                if !o.state.running() || o.state.pid <= 0 {
                    return Err(Error::conflict(format!(
                        "cannot join {kind} namespace of a non running container: {}",
                        o.id
                    )));
                }
                out.push((ns, Some(format!("/proc/{}/ns/{kind}", o.state.pid).into())));
            } else {
                let valid =
                    matches!(mode, "" | "private") || (ns == SharedNs::Ipc && matches!(mode, "shareable" | "none"));
                if !valid {
                    return Err(Error::invalid(format!("invalid {key}: {mode}")));
                }
            }
        }
        Ok(out)
    }

    /// The static init `--init` runs as pid 1: `--init-path`, else tini as Debian ships it.
    fn init_binary(&self) -> Result<std::path::PathBuf> {
        let candidates =
            [self.cfg.init_path.clone(), Some("/usr/bin/tini-static".into()), Some("/usr/bin/docker-init".into())];
        candidates.into_iter().flatten().find(|p: &std::path::PathBuf| p.is_file()).ok_or_else(|| {
            Error::invalid("docker-init binary not found: install tini (tini-static) or set --init-path")
        })
    }
}

/// A CDI device's edits that are not plain spec entries: its device nodes (read from the host),
/// its extra groups.
fn apply_cdi(
    cdi: &berth_runtime::cdi::ContainerEdits,
    devices: &mut Vec<berth_runtime::spec::Device>,
    usr: &mut user::ResolvedUser,
) -> Result<()> {
    for n in &cdi.device_nodes {
        let host = n.host_path.as_deref().unwrap_or(&n.path);
        devices.push(spec::device_from_host(host, &n.path, n.permissions.as_deref().unwrap_or("rwm"))?);
    }
    for g in &cdi.additional_gids {
        if *g != usr.gid && !usr.additional_gids.contains(g) {
            usr.additional_gids.push(*g);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(extra: serde_json::Value) -> berth_api::container::HostConfig {
        serde_json::from_value(extra).unwrap()
    }

    #[test]
    fn resolv_conf_follows_dockers_rules() {
        let host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";
        // Loopback servers mean nothing in the container's namespace; the rest is kept.
        let plain = resolv_conf_from(host, &hc(serde_json::json!({})));
        assert_eq!(plain, "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n");
        // --dns, --dns-search, --dns-option replace the host's lines of their kind.
        let given = resolv_conf_from(
            host,
            &hc(serde_json::json!({"Dns": ["9.9.9.9"], "DnsSearch": ["a.test"], "DnsOptions": ["ndots:2"]})),
        );
        assert_eq!(given, "nameserver 9.9.9.9\nsearch a.test\noptions ndots:2\n");
        // Only loopback servers on the host: Docker's public fallbacks.
        let fallback = resolv_conf_from("nameserver 127.0.0.1\nnameserver ::1\n", &hc(serde_json::json!({})));
        assert_eq!(fallback, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn log_sizes_console_sizes_and_start_failure_codes() {
        assert_eq!(parse_size("100m"), Some(100 << 20));
        assert_eq!(parse_size("10K"), Some(10 << 10));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(console_size([24, 80]), Some([24, 80]));
        assert_eq!(console_size([0, 0]), None);
        assert_eq!(console_size([1 << 20, 80]), Some([u16::MAX, 80]));
        // As Docker: 127 when the command is not there, 126 when it cannot run, 128 otherwise.
        assert_eq!(start_failure_code("exec: \"nope\": executable file not found in $PATH"), 127);
        assert_eq!(start_failure_code("open /x: no such file or directory"), 127);
        assert_eq!(start_failure_code("exec /etc/passwd: permission denied"), 126);
        assert_eq!(start_failure_code("cgroup: device or resource busy"), 128);
    }
}
