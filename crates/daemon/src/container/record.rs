//! What the daemon persists about a container, and its Docker state machine.

use berth_api::container::{Config, HostConfig};
use berth_types::Digest;
use serde::{Deserialize, Serialize};

/// Docker's zero time, shown for times that have not happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// created | running | exited | dead | removing
    pub status: String,
    pub pid: i32,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    /// Frozen by `docker pause`; the status stays `running`, as the process does.
    #[serde(default)]
    pub paused: bool,
    /// Waiting out the restart policy's backoff before the next run.
    #[serde(default)]
    pub restarting: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::Health>,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: "created".into(),
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            oom_killed: false,
            paused: false,
            restarting: false,
            health: None,
        }
    }
}

impl State {
    pub fn running(&self) -> bool {
        self.status == "running"
    }

    /// The status Docker shows: `paused` for a frozen running container.
    pub fn shown(&self) -> &str {
        if self.running() {
            if self.paused {
                "paused"
            } else {
                "running"
            }
        } else if self.restarting {
            "restarting"
        } else {
            &self.status
        }
    }
}

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
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub restart_count: i64,
    /// Stopped or killed by hand: restart policies leave it alone until it is started again.
    #[serde(default)]
    pub manual_stop: bool,
    pub networking_config: Option<serde_json::Value>,
    #[serde(default)]
    pub mounts: Vec<super::mounts::MountPoint>,
    #[serde(default)]
    pub endpoints: Vec<berth_network::Endpoint>,
    /// Published ports while running, as `NetworkSettings.Ports` shows them.
    #[serde(default)]
    pub ports: std::collections::BTreeMap<String, serde_json::Value>,
}

impl ContainerRecord {
    /// The full command line, as `docker ps` shows it.
    pub fn command(&self) -> String {
        std::iter::once(self.path.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }
}
