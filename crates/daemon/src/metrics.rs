//! Prometheus metrics (`--metrics-addr`): the families dockerd exports that dashboards read
//! (`engine_daemon_*`, `builder_*`) and Berth's own (`berth_*`: API requests by route, pulls and
//! pushes, shims). One process-wide registry (`prometheus-client`, the Prometheus project's
//! Rust client): services record into it where things happen; gauges of state (containers by
//! state, shims and their memory) are read when scraped. The HTTP side is berthd's.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Action {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineInfo {
    pub architecture: String,
    pub daemon_id: String,
    pub graphdriver: String,
    pub kernel: String,
    pub os: String,
    pub os_type: String,
    pub version: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from 5 ms to ~80 s: container and image actions, API requests.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn histograms<L: Clone + std::hash::Hash + Eq>() -> Histograms<L> {
    Family::new_with_constructor(seconds as fn() -> Histogram)
}

pub struct Metrics {
    registry: Registry,
    pub container_actions: Histograms<Action>,
    pub network_actions: Histograms<Action>,
    pub image_actions: Histograms<Action>,
    pub events: Counter,
    pub events_subscribers: Gauge,
    pub health_checks: Counter,
    pub health_checks_failed: Counter,
    pub builds_triggered: Counter,
    pub builds_failed: Family<Reason, Counter>,
    pub pull_bytes: Counter,
    pub push_bytes: Counter,
    pub api_requests: Family<RouteStatus, Counter>,
    pub api_seconds: Histograms<Route>,
    pub container_states: Family<State, Gauge>,
    pub shims: Gauge,
    pub shim_rss: Gauge,
    pub engine_info: Family<EngineInfo, Gauge>,
    pub cpus: Gauge,
    pub memory: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            container_actions: histograms(),
            network_actions: histograms(),
            image_actions: histograms(),
            events: Counter::default(),
            events_subscribers: Gauge::default(),
            health_checks: Counter::default(),
            health_checks_failed: Counter::default(),
            builds_triggered: Counter::default(),
            builds_failed: Family::default(),
            pull_bytes: Counter::default(),
            push_bytes: Counter::default(),
            api_requests: Family::default(),
            api_seconds: histograms(),
            container_states: Family::default(),
            shims: Gauge::default(),
            shim_rss: Gauge::default(),
            engine_info: Family::default(),
            cpus: Gauge::default(),
            memory: Gauge::default(),
        };
        let mut r = Registry::default();
        // Counters are registered without `_total`: the encoder adds it, as OpenMetrics says.
        r.register(
            "engine_daemon_container_actions_seconds",
            "The number of seconds it takes to process each container action",
            m.container_actions.clone(),
        );
        r.register(
            "engine_daemon_network_actions_seconds",
            "The number of seconds it takes to process each network action",
            m.network_actions.clone(),
        );
        r.register(
            "engine_daemon_image_actions_seconds",
            "The number of seconds it takes to process each image action",
            m.image_actions.clone(),
        );
        r.register("engine_daemon_events", "The number of events logged", m.events.clone());
        r.register(
            "engine_daemon_events_subscribers",
            "The number of current subscribers to events",
            m.events_subscribers.clone(),
        );
        r.register("engine_daemon_health_checks", "The total number of health checks", m.health_checks.clone());
        r.register(
            "engine_daemon_health_checks_failed",
            "The total number of failed health checks",
            m.health_checks_failed.clone(),
        );
        r.register("builder_builds_triggered", "Number of triggered image builds", m.builds_triggered.clone());
        r.register("builder_builds_failed", "Number of failed image builds", m.builds_failed.clone());
        r.register(
            "engine_daemon_container_states_containers",
            "The count of containers in various states",
            m.container_states.clone(),
        );
        r.register("engine_daemon_engine_info", "The information related to the engine", m.engine_info.clone());
        r.register(
            "engine_daemon_engine_cpus_cpus",
            "The number of cpus that the host system of the engine has",
            m.cpus.clone(),
        );
        r.register(
            "engine_daemon_engine_memory_bytes",
            "The number of bytes of memory that the host system of the engine has",
            m.memory.clone(),
        );
        r.register("berth_pull_bytes", "Compressed bytes fetched from registries", m.pull_bytes.clone());
        r.register("berth_push_bytes", "Compressed bytes sent to registries", m.push_bytes.clone());
        r.register("berth_api_requests", "API requests by route, method and status", m.api_requests.clone());
        r.register("berth_api_request_seconds", "API request latency by route and method", m.api_seconds.clone());
        r.register("berth_shims", "Running berth-shim processes", m.shims.clone());
        r.register("berth_shim_rss_bytes", "Resident memory of all berth-shim processes", m.shim_rss.clone());
        Metrics { registry: r, ..m }
    }

    /// The OpenMetrics text of everything recorded.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Observes the seconds from its start to its drop into one action's histogram.
pub struct Timer {
    family: &'static Histograms<Action>,
    action: &'static str,
    start: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        let a = Action { action: self.action.to_string() };
        self.family.get_or_create(&a).observe(self.start.elapsed().as_secs_f64());
    }
}

pub fn container_action(action: &'static str) -> Timer {
    Timer { family: &get().container_actions, action, start: Instant::now() }
}

pub fn network_action(action: &'static str) -> Timer {
    Timer { family: &get().network_actions, action, start: Instant::now() }
}

pub fn image_action(action: &'static str) -> Timer {
    Timer { family: &get().image_actions, action, start: Instant::now() }
}

/// berth-shim processes of this daemon (those under its exec root) and their resident bytes,
/// from /proc (blocking).
pub fn shims_of(exec_root: &std::path::Path) -> (i64, i64) {
    let root = exec_root.to_string_lossy().to_string();
    let (mut n, mut rss) = (0, 0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if !(cmd.contains("berth-shim") && cmd.contains(&root)) {
            continue;
        }
        n += 1;
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let kib: i64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        rss += kib * 1024;
    }
    (n, rss)
}
