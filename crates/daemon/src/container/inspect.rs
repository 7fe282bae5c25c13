//! Inspect and list shapes, with every key Docker emits.

use std::sync::Arc;

use berth_api::filters::Filters;
use berth_types::{Error, Result};

use super::record::ContainerRecord;
use super::ContainerService;

/// go-units' HumanDuration, as `docker ps` shows durations.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if s < 1 {
        "Less than a second".into()
    } else if s < 60 {
        plural(s, "second")
    } else if s / 60 < 60 {
        let m = s / 60;
        if m == 1 {
            "About a minute".into()
        } else {
            plural(m, "minute")
        }
    } else if s / 3600 < 48 {
        let h = s / 3600;
        if h == 1 {
            "About an hour".into()
        } else {
            plural(h, "hour")
        }
    } else if s / 86400 < 14 {
        plural(s / 86400, "day")
    } else if s / 86400 < 60 {
        plural(s / (86400 * 7), "week")
    } else if s / 86400 < 365 * 2 {
        plural(s / (86400 * 30), "month")
    } else {
        plural(s / (86400 * 365), "year")
    }
}

fn since(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).map(|d| chrono::Utc::now().timestamp() - d.timestamp()).unwrap_or(0)
}

fn status_text(r: &ContainerRecord) -> String {
    match r.state.shown() {
        "paused" => format!("Up {} (Paused)", human_duration(since(&r.state.started_at))),
        "running" if r.state.health.is_some() => {
            let h = match r.state.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => "health: starting".to_string(),
                Some(s) => s.to_string(),
                None => String::new(),
            };
            format!("Up {} ({h})", human_duration(since(&r.state.started_at)))
        }
        "running" => format!("Up {}", human_duration(since(&r.state.started_at))),
        "exited" => format!("Exited ({}) {} ago", r.state.exit_code, human_duration(since(&r.state.finished_at))),
        "created" => "Created".into(),
        "removing" => "Removal In Progress".into(),
        "restarting" => {
            format!("Restarting ({}) {} ago", r.state.exit_code, human_duration(since(&r.state.finished_at)))
        }
        "dead" => "Dead".into(),
        other => other.to_string(),
    }
}

/// `docker ps`'s Ports: one entry per published binding.
fn port_list(r: &ContainerRecord) -> Vec<berth_api::container::Port> {
    let mut out = Vec::new();
    for (spec, v) in &r.ports {
        let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let private: u16 = port.parse().unwrap_or(0);
        for b in v.iter().flatten() {
            out.push(berth_api::container::Port {
                ip: b.host_ip.clone(),
                private_port: private,
                public_port: b.host_port.parse().unwrap_or(0),
                kind: proto.to_string(),
            });
        }
    }
    out
}

fn unix_secs(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).map(|d| d.timestamp()).unwrap_or(0)
}

impl ContainerService {
    /// `GET /containers/{id}/json`.
    pub fn inspect(&self, name: &str) -> Result<berth_api::container::ContainerInspect> {
        use berth_api::container::{ContainerInspect, ContainerState, GraphDriver, NetworkSettings};
        let e = self.get(name)?;
        let r = e.record();
        let dir = self.container_dir(&r.id);
        let snap = self.cfg.data_root.join("snapshots").join(&r.id);
        let path = |p: std::path::PathBuf| p.display().to_string();
        let mut host_config = r.host_config.clone();
        if host_config.log_config.kind.is_empty() {
            host_config.log_config.kind = "json-file".into();
        }
        let graph = [("MergedDir", "merged"), ("UpperDir", "upper"), ("WorkDir", "work")];
        Ok(ContainerInspect {
            id: r.id.clone(),
            created: r.created.clone(),
            path: r.path.clone(),
            args: r.args.clone(),
            state: ContainerState {
                status: r.state.shown().to_string(),
                // Docker counts a restarting container as running (its policy owns it).
                running: r.state.running() || r.state.restarting(),
                paused: r.state.paused(),
                restarting: r.state.restarting(),
                oom_killed: r.state.oom_killed,
                dead: r.state.status == super::Status::Dead,
                pid: r.state.pid,
                exit_code: r.state.exit_code,
                error: r.state.error.clone(),
                started_at: r.state.started_at.clone(),
                finished_at: r.state.finished_at.clone(),
                health: r.state.health.clone(),
            },
            image: r.image_id.to_string(),
            image_manifest_descriptor: r.image_manifest.clone(),
            resolv_conf_path: path(dir.join("resolv.conf")),
            hostname_path: path(dir.join("hostname")),
            hosts_path: path(dir.join("hosts")),
            log_path: path(self.log_path(&r.id)),
            name: format!("/{}", r.name),
            restart_count: r.restart_count,
            driver: "overlay2".into(),
            platform: "linux".into(),
            mount_label: String::new(),
            process_label: String::new(),
            app_armor_profile: String::new(),
            exec_ids: None,
            host_config,
            graph_driver: GraphDriver {
                name: "overlay2".into(),
                data: graph.iter().map(|(k, d)| (k.to_string(), path(snap.join(d)))).collect(),
            },
            mounts: r.mounts.iter().map(|m| m.view()).collect(),
            config: r.config.clone(),
            // The newest shape (API 1.52+): the deprecated top-level address fields are added back
            // from `Networks.bridge` for older clients by the server's version views.
            network_settings: NetworkSettings {
                sandbox_id: String::new(),
                sandbox_key: if r.state.running() { path(self.netns_path(&r.id)) } else { String::new() },
                ports: r.ports.clone(),
                networks: self.networks(&r),
            },
            sizes: Default::default(),
        })
    }

    /// Bytes written by a container into its writable layer.
    pub fn size_rw(&self, id: &str) -> u64 {
        berth_sys::root::tree_size(&self.cfg.data_root.join("snapshots").join(id).join("upper"))
    }

    /// `SizeRw` and `SizeRootFs` as Docker reports them (`size=1`): the writable layer, and that
    /// plus the image's layers. The walk of the writable layer runs off the async workers. A
    /// container removed meanwhile reports zeros rather than failing a whole list (cri-dockerd
    /// reads them unchecked for every stats call).
    pub async fn sizes(self: &Arc<Self>, name: &str) -> berth_api::container::Sizes {
        let Ok(rec) = self.get(name).map(|e| e.record()) else { return zero_sizes() };
        let svc = self.clone();
        let id = rec.id.clone();
        let Ok(rw) = tokio::task::spawn_blocking(move || svc.size_rw(&id)).await else { return zero_sizes() };
        let image = self.images.resolve(rec.image_id.as_str()).await.map(|i| i.size).unwrap_or(0);
        berth_api::container::Sizes { size_rw: Some(rw), size_root_fs: Some(rw + image) }
    }

    /// One entry of `GET /containers/json`.
    fn summary(&self, r: &ContainerRecord) -> berth_api::container::Summary {
        use berth_api::container::{HealthSummary, Summary, SummaryHostConfig, SummaryNetworkSettings};
        let mode = if r.host_config.network_mode.is_empty() { "default" } else { r.host_config.network_mode.as_str() };
        let annotations = r.host_config.annotations.as_ref().filter(|m| !m.is_empty()).map(|m| serde_json::json!(m));
        Summary {
            id: r.id.clone(),
            names: vec![format!("/{}", r.name)],
            image: r.config.image.clone(),
            image_id: r.image_id.to_string(),
            image_manifest_descriptor: r.image_manifest.clone(),
            command: r.command(),
            created: unix_secs(&r.created),
            ports: port_list(r),
            labels: r.config.labels.clone(),
            state: r.state.shown().to_string(),
            status: status_text(r),
            host_config: SummaryHostConfig { network_mode: mode.to_string(), annotations },
            network_settings: SummaryNetworkSettings { networks: self.networks(r) },
            mounts: r.mounts.iter().map(|m| m.view()).collect(),
            health: Some(HealthSummary {
                status: r.state.health.as_ref().map(|h| h.status.clone()).unwrap_or_else(|| "none".into()),
                failing_streak: r.state.health.as_ref().map(|h| h.failing_streak).unwrap_or(0),
            }),
            sizes: Default::default(),
        }
    }

    /// `GET /containers/json`.
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        filters: &Filters,
    ) -> Result<Vec<berth_api::container::Summary>> {
        filters
            .validate(&[
                "id", "name", "status", "label", "exited", "ancestor", "before", "since", "network", "volume",
                "health", "is-task", "publish", "expose",
            ])
            .map_err(Error::invalid)?;
        for s in filters.get("status") {
            if !matches!(s.as_str(), "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead") {
                return Err(Error::invalid(format!("invalid filter 'status={s}'")));
            }
        }
        // Newest first, each record read in place under its lock (no copy of every record: a
        // list of a thousand containers is mostly this loop).
        let mut entries: Vec<(String, Arc<super::Entry>)> = self
            .all()
            .into_iter()
            .map(|e| {
                let created = e.record.lock().expect("record lock").created.clone();
                (created, e)
            })
            .collect();
        entries.sort_by(|a, b| b.0.cmp(&a.0));
        let created_of = |name: &str| self.get(name).ok().map(|e| e.record().created);
        let filter = super::list_filter::ListFilter::new(filters, &created_of)?;
        let images = self.images.clone();
        let show_all = all || limit.is_some() || !filters.get("status").is_empty() || !filters.get("exited").is_empty();
        let mut out = Vec::with_capacity(entries.len());
        for (_, e) in &entries {
            if out.len() >= limit.unwrap_or(usize::MAX) {
                break;
            }
            let r = e.record.lock().expect("record lock");
            if !(show_all || r.state.running()) || !filter.matches(&r) {
                continue;
            }
            out.push(self.summary(&r));
        }
        drop(images);
        Ok(out)
    }
}

fn zero_sizes() -> berth_api::container::Sizes {
    berth_api::container::Sizes { size_rw: Some(0), size_root_fs: Some(0) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_like_go_units() {
        use super::human_duration as h;
        assert_eq!(h(0), "Less than a second");
        assert_eq!(h(1), "1 second");
        assert_eq!(h(59), "59 seconds");
        assert_eq!(h(60), "About a minute");
        assert_eq!(h(3 * 60), "3 minutes");
        assert_eq!(h(3600), "About an hour");
        assert_eq!(h(5 * 3600), "5 hours");
        assert_eq!(h(3 * 86400), "3 days");
    }
}
