//! `POST /containers/create`: merge with the image, validate, prepare the writable layer, persist.

use berth_api::container::{Config, CreateRequest};
use berth_types::{new_id, validate_name, Error, ErrorKind, Reference, Result};

use super::record::{ContainerRecord, State};
use super::{ContainerService, Entry};

/// Docker's `merge(userConf, imageConf)`: the image fills what the user left empty.
pub(super) fn merge(user: &mut Config, image: &Config) {
    if user.user.is_empty() {
        user.user = image.user.clone();
    }
    if let Some(ports) = &image.exposed_ports {
        let mine = user.exposed_ports.get_or_insert_with(Default::default);
        for (k, v) in ports {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if user.env.is_empty() {
        user.env = image.env.clone();
    } else {
        let key = |e: &str| e.split_once('=').map(|x| x.0.to_string()).unwrap_or_else(|| e.to_string());
        let extra: Vec<String> =
            image.env.iter().filter(|ie| !user.env.iter().any(|ue| key(ue) == key(ie))).cloned().collect();
        user.env.extend(extra);
    }
    for (k, v) in &image.labels {
        user.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if user.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        if user.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            user.cmd = image.cmd.clone();
        }
        if user.entrypoint.is_none() {
            user.entrypoint = image.entrypoint.clone();
        }
    }
    if user.healthcheck.is_none() {
        user.healthcheck = image.healthcheck.clone();
    }
    if user.working_dir.is_empty() {
        user.working_dir = image.working_dir.clone();
    }
    if let Some(vols) = &image.volumes {
        let mine = user.volumes.get_or_insert_with(Default::default);
        for (k, v) in vols {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if user.stop_signal.is_none() {
        user.stop_signal = image.stop_signal.clone();
    }
    if user.on_build.is_none() {
        user.on_build = image.on_build.clone();
    }
}

/// Path and arguments from entrypoint + cmd; `[""]` as entrypoint means none.
pub(super) fn command(config: &Config) -> Result<(String, Vec<String>)> {
    let mut argv: Vec<String> = match &config.entrypoint {
        Some(e) if !(e.len() == 1 && e[0].is_empty()) => e.clone(),
        _ => Vec::new(),
    };
    argv.extend(config.cmd.clone().unwrap_or_default());
    if argv.is_empty() {
        return Err(Error::invalid("No command specified"));
    }
    let path = argv.remove(0);
    Ok((path, argv))
}

fn image_not_found(name: &str) -> Error {
    let shown = Reference::parse_tagged(name).map(|r| r.familiar()).unwrap_or_else(|_| name.to_string());
    Error::not_found(format!("No such image: {shown}"))
}

impl ContainerService {
    pub async fn create(&self, req: CreateRequest, name: Option<&str>) -> Result<(String, Vec<String>)> {
        let _timer = crate::metrics::container_action("create");
        self.create_as(req, name, false, None).await
    }

    /// `POST /containers/create?platform=`: the image must be of that platform, as Docker's 404
    /// says (the CLI then pulls the platform asked for).
    pub async fn create_for_platform(
        &self,
        req: CreateRequest,
        name: Option<&str>,
        platform: &berth_api::image::OciPlatform,
    ) -> Result<(String, Vec<String>)> {
        self.create_as(req, name, false, Some(platform)).await
    }

    /// A RUN step's container: recorded as the build's, so recovery collects it after a crash.
    pub async fn create_build_step(&self, req: CreateRequest) -> Result<String> {
        self.create_as(req, None, true, None).await.map(|(id, _)| id)
    }

    /// A build step's container that the build keeps (`--rm=false`) becomes an ordinary one.
    pub async fn adopt_build_step(&self, id: &str) -> Result<()> {
        let rec = self.get(id)?.update(|r| r.build_step = false);
        self.persist(&rec).await
    }

    async fn create_as(
        &self,
        req: CreateRequest,
        name: Option<&str>,
        build_step: bool,
        platform: Option<&berth_distribution::manifest::Platform>,
    ) -> Result<(String, Vec<String>)> {
        let mut config = req.config;
        let host_config = req.host_config;
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            validate_name(n)?;
        }
        if config.image.is_empty() {
            return Err(Error::invalid("config.Image must not be empty"));
        }
        let image = self.images.resolve(&config.image).await.map_err(|e| match e.kind {
            ErrorKind::NotFound => image_not_found(&config.image),
            _ => e,
        })?;
        // A platform of a multi-platform image, or the image itself when it is of that platform.
        let image = match platform {
            Some(want) => self.images.resolve_for(&config.image, Some(want)).await?,
            None => image,
        };
        crate::images::check_runnable(&config.image, &crate::images::platform_of(&image.config))?;
        let restart = host_config.restart_policy.name.as_str();
        if !matches!(restart, "" | "no" | "always" | "unless-stopped" | "on-failure") {
            return Err(Error::invalid(format!("invalid restart policy '{restart}'")));
        }
        if host_config.auto_remove && !matches!(restart, "" | "no") {
            return Err(Error::invalid("can't create 'AutoRemove' container with restart policy"));
        }
        // The driver and its options as they will apply: the daemon's default driver for a
        // container that names none, the daemon's options under its own (as dockerd merges them),
        // so inspect shows what is in force. Checked against each driver's option list.
        let mut host_config = host_config;
        super::logdriver::resolve(&mut host_config.log_config, &self.cfg.log_driver, &self.cfg.log_opts)?;
        merge(&mut config, &image.config.config);
        let (path, args) = command(&config)?;
        let id = new_id();
        if config.hostname.is_empty() {
            // As Docker: on the host's network the container is named as the host.
            let host = (host_config.network_mode == "host")
                .then(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .flatten()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty());
            config.hostname = host.unwrap_or_else(|| id[..12].to_string());
        }

        apply_host_defaults(&mut host_config)?;
        // A device request that cannot be met is refused now, never dropped at start.
        let cdi_names = berth_runtime::cdi::requested(&host_config)?;
        if !cdi_names.is_empty() {
            let dirs = self.cfg.cdi_spec_dirs.clone();
            super::blocking(move || berth_runtime::cdi::resolve(&dirs, &cdi_names).map(drop)).await?;
        }
        super::userns::check_create(&host_config, self.cfg.userns_remap.is_some())?;
        // Reserve the name before any slow work, so two creates cannot both win it (and release
        // it on every failure after this point).
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = validate_name(n)?.to_string();
                self.reserve_name(&n, &id)?;
                n
            }
            None => self.reserve_random_name(&id),
        };
        let image_id = image.id.clone();
        let image_manifest = self.images.manifest_descriptor(&config.image, &image_id).await;
        if let Err(e) = self.check_links(&mut host_config, &name) {
            self.release_name(&name, &id);
            return Err(e);
        }
        let mut warnings: Vec<String> = clamp_oom_score_adj(&mut host_config).into_iter().collect();
        if host_config.resources.oom_kill_disable == Some(true) && crate::system::cgroup_version() != "1" {
            // As Docker: cgroup v2 has no OOM-killer switch; discarded, and said so.
            host_config.resources.oom_kill_disable = Some(false);
            warnings.push("Your kernel does not support OomKillDisable. OomKillDisable discarded.".into());
        }
        for w in &warnings {
            tracing::warn!(container = %id, "{w}");
        }
        let res = self
            .create_reserved(
                req.networking_config,
                config,
                host_config,
                (image_id, image_manifest),
                path,
                args,
                &id,
                &name,
                build_step,
            )
            .await;
        if res.is_err() {
            self.release_name(&name, &id);
        }
        res.map(|()| (id, warnings))
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_reserved(
        &self,
        networking_config: Option<berth_api::network::NetworkingConfig>,
        config: Config,
        host_config: berth_api::container::HostConfig,
        (image_id, image_manifest): (berth_types::Digest, Option<berth_api::image::Descriptor>),
        path: String,
        args: Vec<String>,
        id: &str,
        name: &str,
        build_step: bool,
    ) -> Result<()> {
        let (id, name) = (id.to_string(), name.to_string());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let record = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: now,
            config,
            host_config,
            image_id,
            image_manifest,
            path,
            args,
            state: State::default(),
            restart_count: 0,
            manual_stop: false,
            networking_config,
            mounts: Vec::new(),
            endpoints: Vec::new(),
            ports: Default::default(),
            build_step,
        };
        let mut record = record;
        record.endpoints = self.resolve_endpoints(&record).await?;
        record.mounts = self.resolve_mounts(&record).await?;
        let entry = Entry::new(record.clone());
        self.entries.lock().expect("entries lock").insert(id.clone(), entry);
        let res = self.finish_create(&record).await;
        if let Err(e) = res {
            self.entries.lock().expect("entries lock").remove(&id);
            self.remove_anonymous_volumes(&record).await;
            let _ = self.images.remove_snapshot(&id).await;
            for key in super::mounts::image_mount_keys(&record) {
                let _ = self.images.remove_snapshot(&key).await;
            }
            let _ = std::fs::remove_dir_all(self.container_dir(&id));
            return Err(e);
        }
        self.publish("create", &record, &[]);
        Ok(())
    }

    async fn finish_create(&self, record: &ContainerRecord) -> Result<()> {
        self.images.prepare_snapshot(&record.id, &record.image_id).await?;
        for m in record.mounts.iter().filter(|m| m.kind == "image") {
            let image: berth_types::Digest = m.source.parse()?;
            let key = super::mounts::image_mount_key(&record.id, &m.destination);
            self.images.prepare_snapshot(&key, &image).await?;
        }
        std::fs::create_dir_all(self.container_dir(&record.id))?;
        self.persist(record).await
    }

    /// Ids of every container, for callers that iterate.
    pub fn ids(&self) -> Vec<String> {
        self.entries.lock().expect("entries lock").keys().cloned().collect()
    }
}

/// What Docker fills in at create, so that inspect shows what applies: the runtime (only runc's
/// equivalent exists here: any other name is refused, never stored and ignored), the 64 MiB
/// /dev/shm, a private IPC namespace, and the host's cgroup namespace (berthd makes none).
fn apply_host_defaults(hc: &mut berth_api::container::HostConfig) -> Result<()> {
    match hc.runtime.as_str() {
        "" | "runc" => hc.runtime = "runc".into(),
        other => return Err(Error::invalid(format!("unknown or invalid runtime name: {other}"))),
    }
    match hc.resources.memory_swappiness {
        None | Some(-1..=100) => {}
        Some(v) => return Err(Error::invalid(format!("invalid value: {v}, valid memory swappiness range is 0-100"))),
    }
    if hc.annotations.as_ref().is_some_and(|m| m.keys().any(|k| k.is_empty())) {
        return Err(Error::invalid("invalid Annotations: keys must be non-empty and values strings"));
    }
    // As moby: the default masked and read-only paths are written into the HostConfig (so inspect
    // shows what applies), except for a privileged container, which has none.
    let defaults = |l: &[&str]| Some(l.iter().map(|p| p.to_string()).collect());
    if hc.masked_paths.is_none() && !hc.privileged {
        hc.masked_paths = defaults(&berth_runtime::spec::MASKED_PATHS);
    }
    if hc.readonly_paths.is_none() && !hc.privileged {
        hc.readonly_paths = defaults(&berth_runtime::spec::READONLY_PATHS);
    }
    if hc.shm_size == 0 {
        hc.shm_size = 64 << 20;
    }
    if hc.ipc_mode.is_empty() {
        hc.ipc_mode = "private".into();
    }
    match hc.cgroupns_mode.as_str() {
        "" | "host" => hc.cgroupns_mode = "host".into(),
        other => {
            return Err(Error::invalid(format!(
                "cgroup namespace mode {other:?} is not supported by berthd: containers share the host's"
            )))
        }
    }
    Ok(())
}

/// Lowering `oom_score_adj` takes `CAP_SYS_RESOURCE`, which berthd may lack (some VMs, nested
/// containers): cri-dockerd asks -998 for every sandbox, and the start would fail. Without the
/// capability a value below berthd's own is raised to it — the lowest the kernel allows here — and
/// the create says so in its warnings (Docker fails the start instead).
fn clamp_oom_score_adj(hc: &mut berth_api::container::HostConfig) -> Option<String> {
    let asked = Some(hc.oom_score_adj).filter(|v| *v != 0)?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let cap_eff = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let caps = u64::from_str_radix(cap_eff.trim(), 16).ok()?;
    const CAP_SYS_RESOURCE: u64 = 24;
    if caps & (1 << CAP_SYS_RESOURCE) != 0 {
        return None;
    }
    let own: i64 = std::fs::read_to_string("/proc/self/oom_score_adj").ok()?.trim().parse().ok()?;
    if asked >= own {
        return None;
    }
    hc.oom_score_adj = own;
    Some(format!(
        "OomScoreAdj {asked} needs CAP_SYS_RESOURCE, which the daemon lacks: set to {own}, the lowest allowed here"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_like_docker() {
        let image = Config {
            env: vec!["PATH=/bin".into(), "A=image".into()],
            cmd: Some(vec!["sh".into()]),
            working_dir: "/srv".into(),
            ..Default::default()
        };
        let mut user = Config { env: vec!["A=user".into()], ..Default::default() };
        merge(&mut user, &image);
        assert_eq!(user.env, vec!["A=user".to_string(), "PATH=/bin".into()]);
        assert_eq!(command(&user).unwrap(), ("sh".to_string(), vec![]));
        assert_eq!(user.working_dir, "/srv");

        let mut user = Config { cmd: Some(vec!["echo".into(), "hi".into()]), ..Default::default() };
        merge(
            &mut user,
            &Config { entrypoint: Some(vec!["/init".into()]), cmd: Some(vec!["x".into()]), ..Default::default() },
        );
        assert_eq!(command(&user).unwrap(), ("/init".to_string(), vec!["echo".into(), "hi".into()]));

        let mut user = Config { entrypoint: Some(vec!["".into()]), ..Default::default() };
        merge(
            &mut user,
            &Config { entrypoint: Some(vec!["/init".into()]), cmd: Some(vec!["x".into()]), ..Default::default() },
        );
        assert_eq!(command(&user).unwrap_err().message, "No command specified");
    }
}
