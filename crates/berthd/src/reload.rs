//! SIGHUP: daemon.json read again. The keys dockerd reloads (and Berth has) apply at once —
//! `debug`/`log-level`, `labels`, `max-concurrent-downloads`/`-uploads`, `registry-mirrors`,
//! `insecure-registries` — and the log says what changed and which other changes wait for a
//! restart. A file that no longer parses changes nothing.

use std::collections::BTreeMap;

use crate::config::{Args, Settings};

/// The keys applied on a reload; any other key that changed needs a restart.
const RELOADABLE: &[&str] = &[
    "debug",
    "log-level",
    "labels",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "registry-mirrors",
    "insecure-registries",
];

/// The file's top-level keys and values (empty when missing or unreadable).
pub fn file_keys(path: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b).ok())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

/// What a reload should do, from the file as it was and as it is.
pub struct Plan {
    pub settings: Settings,
    pub applied: Vec<String>,
    pub need_restart: Vec<String>,
}

pub fn plan(
    args: &Args,
    before: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<(Plan, BTreeMap<String, serde_json::Value>)> {
    let settings = Settings::load(args.clone())?;
    let after = file_keys(&args.config_file);
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = keys.into_iter().filter(|k| before.get(*k) != after.get(*k)).cloned().collect();
    let (applied, need_restart): (Vec<String>, Vec<String>) =
        changed.into_iter().partition(|k| RELOADABLE.contains(&k.as_str()));
    Ok((Plan { settings, applied, need_restart }, after))
}

/// The reloadable part of the settings, as the daemon takes it.
pub fn reload_of(s: &Settings) -> berth_daemon::system::Reload {
    berth_daemon::system::Reload { labels: s.labels.clone(), debug: s.debug, distribution: s.distribution.clone() }
}
