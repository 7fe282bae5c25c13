#![recursion_limit = "512"]
//! The services behind the Engine API, composed by [`Daemon::open`].

pub mod config;
pub mod container;
pub mod events;
pub mod images;
mod names;
pub mod system;

use std::sync::Arc;

use berth_image::ImageStore;
use berth_store::Store;
use berth_types::Result;

pub use config::DaemonConfig;
pub use container::ContainerService;
pub use events::EventBus;
pub use images::ImageService;
pub use system::SystemService;

/// The composition root: every service, built once at start-up.
#[derive(Clone)]
pub struct Daemon {
    pub containers: Arc<ContainerService>,
    pub images: Arc<ImageService>,
    pub system: Arc<SystemService>,
    pub events: Arc<EventBus>,
}

impl Daemon {
    /// Opens the state under the data root and re-attaches to containers that kept running.
    pub async fn open(config: DaemonConfig) -> Result<Daemon> {
        let config = Arc::new(config);
        let cfg = config.clone();
        let (store, image_store) = tokio::task::spawn_blocking(move || -> Result<_> {
            for d in [&cfg.data_root, &cfg.exec_root] {
                std::fs::create_dir_all(d)?;
            }
            let store = Arc::new(Store::open(&cfg.data_root.join("berth.db"))?);
            let images = ImageStore::open(store.clone(), &cfg.data_root)?;
            Ok((store, images))
        })
        .await
        .map_err(|e| berth_types::Error::internal(e.to_string()))??;
        let events = Arc::new(EventBus::new());
        let images = Arc::new(ImageService::new(Arc::new(image_store), events.clone()));
        let containers =
            ContainerService::open(config.clone(), store, images.clone(), events.clone()).await?;
        images.set_usage(containers.usage_fn());
        let system = Arc::new(SystemService::new(
            config,
            containers.clone(),
            images.clone(),
        ));
        Ok(Daemon {
            containers,
            images,
            system,
            events,
        })
    }

    /// Called on SIGTERM: leaves containers running (their shims carry on) and releases host state.
    pub async fn shutdown(&self) {
        self.containers.shutdown().await;
    }
}
