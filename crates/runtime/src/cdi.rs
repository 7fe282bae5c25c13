//! Container Device Interface: devices named `vendor.com/class=name` (`--device`, `DeviceRequests`
//! with driver `cdi`), resolved through the CDI spec files (JSON or YAML) of the spec directories
//! into container edits — device nodes, mounts, environment, hooks, extra groups — as Docker does.
//!
//! Spec files are read fresh for each container (vendors drop them in at any time), bounded in
//! size; a later directory overrides an earlier one for the same device (`/var/run/cdi` over
//! `/etc/cdi` by default), as the CDI reference implementation orders them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_types::{Error, Result};
use serde::Deserialize;

/// The default spec directories, in priority order (last wins).
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// A spec file larger than this is skipped (a spec is a few KiB).
const MAX_SPEC: u64 = 4 << 20;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(default)]
    pub host_path: Option<String>,
    #[serde(default)]
    pub permissions: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    kind: String,
    #[serde(default)]
    devices: Vec<SpecDevice>,
    #[serde(default)]
    container_edits: ContainerEdits,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecDevice {
    name: String,
    #[serde(default)]
    container_edits: ContainerEdits,
}

impl ContainerEdits {
    fn append(&mut self, o: &ContainerEdits) {
        self.env.extend(o.env.iter().cloned());
        self.device_nodes.extend(o.device_nodes.iter().cloned());
        self.mounts.extend(o.mounts.iter().cloned());
        self.hooks.extend(o.hooks.iter().cloned());
        self.additional_gids.extend(o.additional_gids.iter().copied());
    }
}

/// Whether `name` is a qualified CDI device name (`vendor.com/class=name`).
pub fn is_qualified(name: &str) -> bool {
    let Some((kind, dev)) = name.split_once('=') else { return false };
    let Some((vendor, class)) = kind.split_once('/') else { return false };
    let ok =
        |s: &str, extra: &[char]| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c));
    ok(vendor, &['.', '-', '_']) && ok(class, &['-', '_']) && ok(dev, &['.', '-', '_', ':'])
}

/// Every device the spec files in `dirs` define: qualified name → (spec-wide edits, device edits).
fn load(dirs: &[PathBuf]) -> BTreeMap<String, (ContainerEdits, ContainerEdits)> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml")))
            .collect();
        files.sort();
        for f in files {
            let Some(spec) = read_spec(&f) else { continue };
            for d in spec.devices {
                out.insert(format!("{}={}", spec.kind, d.name), (spec.container_edits.clone(), d.container_edits));
            }
        }
    }
    out
}

fn read_spec(f: &Path) -> Option<Spec> {
    let md = std::fs::metadata(f).ok()?;
    if !md.is_file() || md.len() > MAX_SPEC {
        tracing::warn!(file = %f.display(), "CDI spec skipped: not a regular file or too large");
        return None;
    }
    let text = std::fs::read_to_string(f).ok()?;
    // JSON is YAML too, but parse it as JSON first for exact errors.
    let spec = if f.extension().is_some_and(|e| e == "json") {
        serde_json::from_str::<Spec>(&text).map_err(|e| e.to_string())
    } else {
        yaml_serde::from_str::<Spec>(&text).map_err(|e| e.to_string())
    };
    match spec {
        Ok(s) if s.kind.split_once('/').is_some() => Some(s),
        Ok(s) => {
            tracing::warn!(file = %f.display(), kind = %s.kind, "CDI spec skipped: kind is not vendor/class");
            None
        }
        Err(e) => {
            tracing::warn!(file = %f.display(), "CDI spec skipped: {e}");
            None
        }
    }
}

/// The qualified names of every device the spec files in `dirs` define (`/info`'s `DiscoveredDevices`).
pub fn devices(dirs: &[PathBuf]) -> Vec<String> {
    load(dirs).into_keys().collect()
}

/// The edits for `names`, each spec's own edits once; Docker's error names every device that
/// no spec defines.
pub fn resolve(dirs: &[PathBuf], names: &[String]) -> Result<ContainerEdits> {
    let known = load(dirs);
    let missing: Vec<&str> = names.iter().filter(|n| !known.contains_key(*n)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(Error::invalid(format!(
            "CDI device injection failed: unresolvable CDI devices {}",
            missing.join(", ")
        )));
    }
    let mut edits = ContainerEdits::default();
    let mut kinds_done = Vec::new();
    for n in names {
        let (spec_edits, dev_edits) = &known[n];
        let kind = n.split_once('=').map(|x| x.0).unwrap_or_default();
        if !kinds_done.contains(&kind) {
            edits.append(spec_edits);
            kinds_done.push(kind);
        }
        edits.append(dev_edits);
    }
    Ok(edits)
}

/// The CDI device names a HostConfig asks for (`DeviceRequests` with driver `cdi`), and Docker's
/// refusal of any other request (no other device driver is built in, e.g. `--gpus` without CDI).
pub fn requested(hc: &berth_api::container::HostConfig) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for r in hc.resources.device_requests.iter().flatten() {
        let driver = r.driver.as_str();
        if driver == "cdi" {
            for id in r.device_ids.iter().flatten() {
                if !is_qualified(id) {
                    return Err(Error::invalid(format!("invalid CDI device name {id:?}: use vendor.com/class=name")));
                }
                names.push(id.to_string());
            }
            continue;
        }
        let caps = serde_json::to_string(&r.capabilities).unwrap_or_default();
        let caps = caps.replace('"', "").replace(',', " ");
        return Err(Error::invalid(format!("could not select device driver {driver:?} with capabilities: {caps}")));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_qualified("vendor.com/class=dev0"));
        assert!(is_qualified("nvidia.com/gpu=all"));
        assert!(!is_qualified("/dev/null"));
        assert!(!is_qualified("vendor.com=x"));
        assert!(!is_qualified("a/b="));
    }

    #[test]
    fn specs_resolve_with_priority_and_spec_edits_once() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            a.join("v.json"),
            r#"{"cdiVersion":"0.6.0","kind":"example.com/dev","containerEdits":{"env":["SPEC=1"]},
               "devices":[{"name":"d0","containerEdits":{"env":["D=0"],"deviceNodes":[{"path":"/dev/d0","hostPath":"/dev/null"}]}},
                          {"name":"d1","containerEdits":{"env":["D=1"]}}]}"#,
        )
        .unwrap();
        std::fs::write(
            b.join("v.yaml"),
            "cdiVersion: 0.6.0\nkind: example.com/dev\ndevices:\n- name: d1\n  containerEdits:\n    env: [D=override]\n    mounts:\n    - hostPath: /etc/hostname\n      containerPath: /h\n      options: [ro, bind]\n",
        )
        .unwrap();
        std::fs::write(b.join("broken.yaml"), "kind: [").unwrap();
        let dirs = vec![a, b];
        let e = resolve(&dirs, &["example.com/dev=d0".into(), "example.com/dev=d1".into()]).unwrap();
        assert_eq!(e.env, ["SPEC=1", "D=0", "D=override"]);
        assert_eq!(e.device_nodes[0].host_path.as_deref(), Some("/dev/null"));
        assert_eq!(e.mounts[0].container_path, "/h");
        let err = resolve(&dirs, &["example.com/dev=d9".into(), "x.com/y=z".into()]).unwrap_err();
        assert_eq!(err.message, "CDI device injection failed: unresolvable CDI devices example.com/dev=d9, x.com/y=z");
    }
}
