//! What the daemon persists about a container (its state machine is `state.rs`).

use berth_api::container::{Config, HostConfig};
use berth_types::Digest;
use serde::{Deserialize, Serialize};

pub use super::state::{State, Status, ZERO_TIME};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    pub created: String,
    /// The configuration after merging with the image's, as inspect shows it.
    pub config: Config,
    pub host_config: HostConfig,
    pub image_id: Digest,
    /// The platform manifest of a multi-platform image the container was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_manifest: Option<berth_api::image::Descriptor>,
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub restart_count: i64,
    /// Stopped or killed by hand: restart policies leave it alone until it is started again.
    #[serde(default)]
    pub manual_stop: bool,
    pub networking_config: Option<berth_api::network::NetworkingConfig>,
    #[serde(default)]
    pub mounts: Vec<super::mounts::MountPoint>,
    #[serde(default)]
    pub endpoints: Vec<berth_network::Endpoint>,
    /// Made by the builder for a RUN step: owned by its build, collected if berthd dies mid-build.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_step: bool,
    /// Published ports while running, as `NetworkSettings.Ports` shows them.
    #[serde(default)]
    pub ports: berth_api::hostconfig::PortMap,
}

impl ContainerRecord {
    /// The full command line, as `docker ps` shows it.
    pub fn command(&self) -> String {
        std::iter::once(self.path.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }
}
