//! Log drivers on the daemon's side: which driver and options a container gets (checked as
//! dockerd checks them, per driver), and the attributes and tag its shim writes with each entry.
//! The drivers themselves run in the shim (`berth-shim`'s `log` module).

use std::collections::BTreeMap;

use berth_api::container::LogConfig;
use berth_types::{Error, Result};

use super::record::ContainerRecord;

/// Options every driver takes (dockerd's global ones): only the blocking mode is here.
const COMMON: &[&str] = &["mode", "max-buffer-size"];

/// The options each driver accepts, as dockerd's `ValidateLogOpt`s.
fn accepted(driver: &str) -> Option<&'static [&'static str]> {
    Some(match driver {
        "json-file" => &["max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"],
        "local" => &["max-file", "max-size", "compress"],
        "journald" => &["tag", "labels", "labels-regex", "env", "env-regex"],
        "syslog" => &[
            "env",
            "env-regex",
            "labels",
            "labels-regex",
            "syslog-address",
            "syslog-facility",
            "syslog-tls-ca-cert",
            "syslog-tls-cert",
            "syslog-tls-key",
            "syslog-tls-skip-verify",
            "tag",
            "syslog-format",
        ],
        "none" => &[],
        _ => return None,
    })
}

/// Sets the driver a container runs with and checks its options.
pub(super) fn resolve(lc: &mut LogConfig, daemon_driver: &str, daemon_opts: &BTreeMap<String, String>) -> Result<()> {
    if lc.kind.is_empty() {
        lc.kind = daemon_driver.to_string();
    }
    let driver = lc.kind.clone();
    let Some(ok) = accepted(&driver) else {
        return Err(match driver.as_str() {
            // Docker's other drivers exist, but are not built into berthd: refused plainly.
            "gelf" | "fluentd" | "awslogs" | "splunk" | "etwlogs" | "gcplogs" | "logentries" => {
                Error::invalid(format!("logging driver {driver:?} is not supported by berthd"))
            }
            other => Error::invalid(format!("logger: no log driver named '{other}' is registered")),
        });
    };
    if driver == daemon_driver {
        for (k, v) in daemon_opts {
            lc.config.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    for (k, v) in &lc.config {
        if !ok.contains(&k.as_str()) && !COMMON.contains(&k.as_str()) {
            return Err(Error::invalid(format!("unknown log opt '{k}' for {driver} log driver")));
        }
        let valid = match k.as_str() {
            "max-size" => super::start::parse_size(v).is_some(),
            "max-file" => v.parse::<u32>().is_ok_and(|n| n >= 1),
            "compress" | "syslog-tls-skip-verify" => matches!(v.as_str(), "true" | "false"),
            // Entries are written as they come; a buffering mode would be a stored, unapplied option.
            "mode" => v == "blocking",
            "labels-regex" | "env-regex" => regex::Regex::new(v).is_ok(),
            "syslog-format" => matches!(v.as_str(), "" | "rfc3164" | "rfc5424" | "rfc5424micro"),
            "syslog-facility" => syslog_facility(v),
            "syslog-address" => syslog_address(v),
            _ => true,
        };
        if !valid {
            return Err(Error::invalid(format!("invalid value for log opt '{k}' of the {driver} log driver: {v:?}")));
        }
    }
    if driver == "json-file" || driver == "local" {
        if let (Some(_), Some(n)) = (lc.config.get("compress"), lc.config.get("max-file")) {
            if lc.config["compress"] == "true" && n == "1" {
                return Err(Error::invalid("compress cannot be true when max-file is less than 2"));
            }
        }
    }
    Ok(())
}

fn syslog_facility(v: &str) -> bool {
    const NAMES: [&str; 20] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "local0",
        "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ];
    v.is_empty() || NAMES.contains(&v) || v.parse::<u8>().is_ok_and(|n| n < 24)
}

fn syslog_address(v: &str) -> bool {
    v.is_empty()
        || v.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "unix" | "unixgram" | "udp" | "tcp" | "tcp+tls") && !rest.is_empty()
        })
}

/// The tag of a container's entries: the `tag` option's template (`{{.ID}}`, `{{.FullID}}`,
/// `{{.Name}}`, `{{.ImageID}}`, `{{.ImageFullID}}`, `{{.ImageName}}`, `{{.DaemonName}}`), or
/// the short id, as Docker's default.
pub(super) fn tag(rec: &ContainerRecord) -> String {
    let template = rec.host_config.log_config.config.get("tag").map(String::as_str).unwrap_or("{{.ID}}");
    let image_hex = rec.image_id.as_str().trim_start_matches("sha256:");
    let mut out = template.to_string();
    for (k, v) in [
        ("FullID", rec.id.as_str()),
        ("ID", &rec.id[..12.min(rec.id.len())]),
        ("Name", rec.name.as_str()),
        ("ImageFullID", rec.image_id.as_str()),
        ("ImageID", &image_hex[..12.min(image_hex.len())]),
        ("ImageName", rec.config.image.as_str()),
        ("DaemonName", "docker"),
    ] {
        for form in [format!("{{{{.{k}}}}}"), format!("{{{{ .{k} }}}}")] {
            out = out.replace(&form, v);
        }
    }
    out
}

/// The attributes each entry carries: the labels and environment variables the options name
/// (or match), and `tag` when one is set (json-file writes it among them, as Docker's).
pub(super) fn attrs(rec: &ContainerRecord) -> BTreeMap<String, String> {
    let opts = &rec.host_config.log_config.config;
    let listed = |k: &str| -> Vec<String> {
        opts.get(k)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    };
    let regex = |k: &str| opts.get(k).and_then(|v| regex::Regex::new(v).ok());
    let mut out = BTreeMap::new();
    let (labels, labels_re) = (listed("labels"), regex("labels-regex"));
    for (k, v) in &rec.config.labels {
        if labels.contains(k) || labels_re.as_ref().is_some_and(|r| r.is_match(k)) {
            out.insert(k.clone(), v.clone());
        }
    }
    let (env, env_re) = (listed("env"), regex("env-regex"));
    for e in &rec.config.env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        if env.iter().any(|n| n == k) || env_re.as_ref().is_some_and(|r| r.is_match(k)) {
            out.insert(k.to_string(), v.to_string());
        }
    }
    if rec.host_config.log_config.kind == "json-file" && opts.contains_key("tag") {
        out.insert("tag".into(), tag(rec));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_and_their_options() {
        let defaults: BTreeMap<String, String> = [("max-size".to_string(), "100m".to_string())].into();
        let mut lc = LogConfig { kind: String::new(), config: BTreeMap::new() };
        resolve(&mut lc, "json-file", &defaults).unwrap();
        assert_eq!((lc.kind.as_str(), lc.config["max-size"].as_str()), ("json-file", "100m"));
        // Another driver does not get json-file's defaults.
        let mut lc = LogConfig { kind: "syslog".into(), config: BTreeMap::new() };
        resolve(&mut lc, "json-file", &defaults).unwrap();
        assert!(lc.config.is_empty());
        let bad = |kind: &str, k: &str, v: &str| {
            let mut lc = LogConfig { kind: kind.into(), config: [(k.to_string(), v.to_string())].into() };
            resolve(&mut lc, "json-file", &BTreeMap::new()).unwrap_err().message
        };
        assert!(bad("journald", "max-size", "1m").contains("unknown log opt 'max-size' for journald"));
        assert!(bad("syslog", "syslog-address", "http://x").contains("invalid value"));
        assert!(bad("syslog", "syslog-facility", "nope").contains("invalid value"));
        assert!(bad("json-file", "mode", "non-blocking").contains("invalid value"));
        assert!(bad("gelf", "x", "y").contains("not supported by berthd"));
    }
}
