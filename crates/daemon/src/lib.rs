#![recursion_limit = "512"]
//! The services behind the Engine API, composed by [`Daemon::open`].

pub mod backend;
pub mod build;
mod build_mounts;
pub mod buildkit;
pub mod config;
pub mod container;
pub mod events;
pub mod images;
pub mod metrics;
mod names;
pub mod networks;
pub mod perms;
pub mod remap;
pub mod system;
pub mod volumes;

use std::sync::Arc;

use berth_image::ImageStore;
use berth_store::Store;
use berth_types::Result;

pub use build::BuildService;
pub use config::DaemonConfig;
pub use container::ContainerService;
pub use events::EventBus;
pub use images::ImageService;
pub use networks::NetworkService;
pub use system::SystemService;
pub use volumes::VolumeService;

/// The composition root: every service, built once at start-up.
#[derive(Clone)]
pub struct Daemon {
    pub containers: Arc<ContainerService>,
    pub images: Arc<ImageService>,
    pub system: Arc<SystemService>,
    pub volumes: Arc<VolumeService>,
    pub networks: Arc<NetworkService>,
    pub events: Arc<EventBus>,
    pub builds: Arc<BuildService>,
    /// BuildKit's API (`/grpc`, `/session`) over the same builds.
    pub buildkit: Arc<berth_buildkit::BuildKit>,
}

impl Daemon {
    /// Opens the state under the data root and re-attaches to containers that kept running.
    pub async fn open(config: DaemonConfig) -> Result<Daemon> {
        let config = Arc::new(config);
        let cfg = config.clone();
        let (store, image_store, volume_store, network_store) = tokio::task::spawn_blocking(move || -> Result<_> {
            for d in [&cfg.data_root, &cfg.exec_root] {
                std::fs::create_dir_all(d)?;
            }
            let store = Arc::new(Store::open(&cfg.data_root.join("berth.db"))?);
            let images = ImageStore::open(store.clone(), &cfg.data_root)?;
            let volumes = berth_volume::VolumeStore::open(store.clone(), &cfg.data_root)?;
            let networks = berth_network::NetworkStore::open(store.clone(), cfg.pools.clone(), &cfg.bridge, cfg.bip)?;
            networks.set_default_bridge_ipv6(cfg.default_bridge_ipv6)?;
            for f in perms::secure_roots(&cfg.data_root, &cfg.exec_root, cfg.userns_remap.as_ref().map(|r| r.root().1))?
            {
                tracing::warn!("data and exec roots corrected: {f}");
            }
            container::own_mount_scopes(&cfg.data_root, &cfg.exec_root)?;
            if cfg.userns_remap.is_some() {
                for root in [&cfg.data_root, &cfg.exec_root] {
                    for f in perms::open_ancestors(root)? {
                        tracing::warn!("userns-remap: the containers' root must pass through {f}: made searchable (o+x), as Docker does");
                    }
                }
            }
            Ok((store, images, volumes, networks))
        })
        .await
        .map_err(|e| berth_types::Error::internal(e.to_string()))??;
        let events = Arc::new(EventBus::new());
        let images = Arc::new(ImageService::new(Arc::new(image_store), events.clone(), config.distribution.clone()));
        let volumes = Arc::new(VolumeService::new(Arc::new(volume_store), events.clone()));
        let firewall = Arc::new(berth_network::firewall::Firewall::new(&config.bridge));
        let networks = Arc::new(NetworkService::new(Arc::new(network_store), events.clone(), firewall));
        // Rules are rebuilt from the records at start: nothing stale survives a restart.
        if let Err(e) = networks.sync_firewall().await {
            tracing::warn!("firewall: {e}");
        }
        let containers = ContainerService::open(
            config.clone(),
            store,
            images.clone(),
            volumes.clone(),
            networks.clone(),
            events.clone(),
        )
        .await?;
        images.set_usage(containers.usage_fn());
        volumes.set_usage(containers.volume_usage_fn());
        let (c1, c2) = (Arc::downgrade(&containers), Arc::downgrade(&containers));
        networks.set_usage(
            Arc::new(move |id: &str| c1.upgrade().map(|c| c.attached_to(id)).unwrap_or_default()),
            Arc::new(move |id: &str| c2.upgrade().map(|c| c.configured_on(id)).unwrap_or_default()),
        );
        let buildkit_state = config.data_root.join("buildkit");
        let system = Arc::new(SystemService::new(config, containers.clone(), images.clone()));
        let builds = Arc::new(BuildService::new(containers.clone(), images.clone()));
        let engine = Arc::new(buildkit::BuildKitEngine { builds: builds.clone(), images: images.clone() });
        let hostname = rustix::system::uname().nodename().to_string_lossy().into_owned();
        let buildkit = berth_buildkit::BuildKit::new(engine, hostname, buildkit_state);
        Ok(Daemon { containers, images, system, volumes, networks, events, builds, buildkit })
    }

    /// A reload of daemon.json (SIGHUP): applies what may change while running and records a
    /// `daemon reload` event, as dockerd.
    pub fn reload(&self, r: &system::Reload) {
        self.system.reload(r);
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("labels".to_string(), format!("{:?}", r.labels));
        attrs.insert("debug".to_string(), r.debug.to_string());
        attrs.insert("max-concurrent-downloads".to_string(), r.distribution.max_concurrent_downloads.to_string());
        attrs.insert("max-concurrent-uploads".to_string(), r.distribution.max_concurrent_uploads.to_string());
        attrs.insert("insecure-registries".to_string(), format!("{:?}", r.distribution.registry.insecure));
        attrs.insert("registry-mirrors".to_string(), format!("{:?}", r.distribution.registry.mirrors));
        self.events.publish("daemon", "reload", self.system.id(), attrs);
    }

    /// Called on SIGTERM: leaves containers running (their shims carry on) and releases host state.
    pub async fn shutdown(&self) {
        self.containers.shutdown().await;
    }
}
