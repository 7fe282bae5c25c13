//! Per-version views of answers: the one place where the shape of a response depends on the API
//! version a request asked for. Services build the newest shape (API 1.56); these functions turn
//! it into what a client of an older version was sent, following moby's version history
//! (`api/docs/CHANGELOG.md`) and its routers' `versions.LessThan` gates.

use serde_json::{json, Value};

use crate::version::ApiVersion;

/// `defaults` fills the keys `obj` lacks (moby's `compat.WithExtraFields`): present keys win.
fn fill(obj: &mut Value, defaults: Value) {
    let (Some(o), Value::Object(d)) = (obj.as_object_mut(), defaults) else { return };
    for (k, v) in d {
        o.entry(k).or_insert(v);
    }
}

fn take_key(obj: &mut Value, key: &str) -> Value {
    obj.as_object_mut().and_then(|o| o.remove(key)).unwrap_or(Value::Null)
}

fn remove_key(obj: &mut Value, key: &str) {
    if let Some(o) = obj.as_object_mut() {
        o.remove(key);
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// `GET /containers/{id}/json`.
pub fn container_inspect(v: &ApiVersion, c: &mut Value) {
    if v.less_than("1.48") {
        remove_key(c, "ImageManifestDescriptor");
    }
    if v.less_than("1.45") {
        // Old clients found the short id (and the hostname) among a user network's aliases.
        let short: String = c["Id"].as_str().unwrap_or_default().chars().take(12).collect();
        let host = c["Config"]["Hostname"].as_str().unwrap_or_default().to_string();
        if let Some(nets) = c["NetworkSettings"]["Networks"].as_object_mut() {
            for (name, ep) in nets.iter_mut().filter(|(n, _)| !matches!(n.as_str(), "bridge" | "host" | "none")) {
                let _ = name;
                let mut aliases: Vec<Value> = ep["Aliases"].as_array().cloned().unwrap_or_default();
                for a in [&short, &host] {
                    if !a.is_empty() && !aliases.iter().any(|x| x == a.as_str()) {
                        aliases.push(json!(a));
                    }
                }
                ep["Aliases"] = json!(aliases);
            }
        }
    }
    if v.less_than("1.52") {
        // The default bridge's addresses at the top of NetworkSettings (deprecated since 1.21).
        let b = c["NetworkSettings"]["Networks"]["bridge"].clone();
        let s = |k: &str| b.get(k).cloned().unwrap_or_else(|| json!(""));
        let n = |k: &str| b.get(k).cloned().unwrap_or_else(|| json!(0));
        fill(
            &mut c["NetworkSettings"],
            json!({
                "Bridge": "", "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
                "EndpointID": s("EndpointID"), "Gateway": s("Gateway"),
                "GlobalIPv6Address": s("GlobalIPv6Address"), "GlobalIPv6PrefixLen": n("GlobalIPv6PrefixLen"),
                "IPAddress": s("IPAddress"), "IPPrefixLen": n("IPPrefixLen"),
                "IPv6Gateway": s("IPv6Gateway"), "MacAddress": s("MacAddress"),
            }),
        );
        fill(&mut c["HostConfig"], json!({"KernelMemoryTCP": 0}));
    } else {
        if let Some(cfg) = c["Config"].as_object_mut() {
            cfg.remove("MacAddress");
            if cfg.get("OnBuild").is_some_and(is_empty) {
                cfg.remove("OnBuild");
            }
        }
        if let Some(hc) = c["HostConfig"].as_object_mut() {
            hc.remove("KernelMemoryTCP");
        }
    }
}

/// One entry of `GET /containers/json`.
pub fn container_summary(v: &ApiVersion, c: &mut berth_api::container::Summary) {
    if v.less_than("1.48") {
        c.image_manifest_descriptor = None;
    }
    if v.less_than("1.46") {
        c.host_config.annotations = None;
    }
    if v.less_than("1.52") {
        c.health = None;
    }
}

/// The container-only fields an image's `Config` carried before API 1.50, and the ones that
/// were always present (even empty) at 1.50 and 1.51 (moby's `legacyConfigFields`).
fn legacy_image_config(v: &ApiVersion) -> Value {
    let mut d = json!({
        "Cmd": null, "Entrypoint": null, "Env": null, "Labels": null, "OnBuild": null,
        "User": "", "Volumes": null, "WorkingDir": "",
    });
    if v.less_than("1.50") {
        fill(
            &mut d,
            json!({
                "AttachStderr": false, "AttachStdin": false, "AttachStdout": false, "Domainname": "",
                "Hostname": "", "Image": "", "OpenStdin": false, "StdinOnce": false, "Tty": false,
            }),
        );
    }
    d
}

/// Fields of an image's configuration that are not the image's (a container's), never shown
/// from API 1.50.
const CONTAINER_ONLY: &[&str] = &[
    "Hostname",
    "Domainname",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Image",
    "NetworkDisabled",
    "MacAddress",
    "StopTimeout",
];

/// `GET /images/{name}/json`, from the newest shape: `Config` holds only what is set, and
/// `Parent`, `Comment`, `DockerVersion` and `Author` are there only when set.
pub fn image_inspect(v: &ApiVersion, i: &mut Value) {
    // A commit's `Container` and `ContainerConfig` are shown below 1.45 only, last.
    let legacy = json!({"Container": take_key(i, "Container"), "ContainerConfig": take_key(i, "ContainerConfig")});
    if v.less_than("1.53") {
        remove_key(i, "Identity");
    }
    if v.less_than("1.48") {
        remove_key(i, "Descriptor");
        remove_key(i, "Manifests");
    }
    if let Some(cfg) = i["Config"].as_object_mut() {
        cfg.retain(|k, val| !CONTAINER_ONLY.contains(&k.as_str()) && !is_empty(val));
    }
    if let Some(o) = i.as_object_mut() {
        o.retain(|k, val| !(matches!(k.as_str(), "Parent" | "Comment" | "DockerVersion" | "Author") && is_empty(val)));
    }
    if v.less_than("1.52") {
        fill(i, json!({"Parent": "", "Comment": "", "DockerVersion": "", "Author": ""}));
        if !i["Config"].is_object() {
            i["Config"] = json!({});
        }
        fill(&mut i["Config"], legacy_image_config(v));
    }
    if v.less_than("1.45") {
        fill(i, json!({"Container": legacy["Container"], "ContainerConfig": legacy["ContainerConfig"]}));
    }
    if v.less_than("1.44") {
        let size = i["Size"].clone();
        fill(i, json!({"VirtualSize": size}));
    }
}

/// One entry of `GET /images/json`.
pub fn image_summary(v: &ApiVersion, i: &mut Value) {
    if v.less_than("1.51") {
        i["Containers"] = json!(-1);
    }
    if v.less_than("1.44") {
        let size = i["Size"].clone();
        fill(i, json!({"VirtualSize": size}));
    }
}

/// `GET /system/df`: before 1.52 the legacy arrays (`Images`, …, `LayersSize`); from 1.52 the
/// `*Usage` summaries, with the legacy arrays too unless `verbose` is asked (as moby).
pub fn disk_usage(v: &ApiVersion, verbose: bool, u: &berth_api::system::DiskUsage) -> Value {
    fn put<T: serde::Serialize>(out: &mut serde_json::Map<String, Value>, k: &str, x: &T) {
        out.insert(k.into(), serde_json::to_value(x).unwrap_or(Value::Null));
    }
    let mut out = serde_json::Map::new();
    if v.less_than("1.52") || !verbose {
        if let Some(l) = u.layers_size {
            put(&mut out, "LayersSize", &l);
        }
        u.images.iter().for_each(|x| put(&mut out, "Images", &x.items));
        u.containers.iter().for_each(|x| put(&mut out, "Containers", &x.items));
        u.volumes.iter().for_each(|x| put(&mut out, "Volumes", &x.items));
        u.build_cache.iter().for_each(|x| put(&mut out, "BuildCache", &x.items));
    }
    if !v.less_than("1.52") {
        u.images.iter().for_each(|x| put(&mut out, "ImageUsage", x));
        u.containers.iter().for_each(|x| put(&mut out, "ContainerUsage", x));
        u.volumes.iter().for_each(|x| put(&mut out, "VolumeUsage", x));
        u.build_cache.iter().for_each(|x| put(&mut out, "BuildCacheUsage", x));
    }
    Value::Object(out)
}

/// `GET /info`.
pub fn info(v: &ApiVersion, i: &mut Value) {
    if v.less_than("1.44") {
        // Runtimes were `{path}` only.
        if let Some(rts) = i["Runtimes"].as_object_mut() {
            for rt in rts.values_mut() {
                if let Some(r) = rt.as_object_mut() {
                    r.retain(|k, _| k == "path" || k == "runtimeArgs");
                }
            }
        }
    }
    if v.less_than("1.46") {
        remove_key(i, "Containerd");
    }
    if v.less_than("1.47") {
        fill(
            &mut i["RegistryConfig"],
            json!({"AllowNondistributableArtifactsCIDRs": null, "AllowNondistributableArtifactsHostnames": null}),
        );
    }
    if v.less_than("1.49") {
        remove_key(i, "FirewallBackend");
        for k in ["ContainerdCommit", "RuncCommit", "InitCommit"] {
            let id = i[k]["ID"].clone();
            fill(&mut i[k], json!({"Expected": id}));
        }
    }
    if v.less_than("1.50") {
        remove_key(i, "DiscoveredDevices");
        fill(i, json!({"BridgeNfIptables": false, "BridgeNfIp6tables": false}));
    }
    if v.less_than("1.52") {
        fill(i, json!({"KernelMemoryTCP": false}));
    }
    if v.less_than("1.53") {
        remove_key(i, "NRI");
    }
}

fn invalid(msg: &str) -> crate::error::ApiError {
    crate::error::ApiError(berth_types::Error::invalid(msg))
}

/// `POST /containers/create`: what a client of version `v` may ask and how moby's router reads
/// it (its `versions.LessThan` gates), before the service sees the request; the warnings to add.
pub fn create_request(
    v: &ApiVersion,
    body: &mut berth_api::container::CreateRequest,
) -> Result<Vec<String>, crate::error::ApiError> {
    let mounts = &body.host_config.mounts;
    if v.less_than("1.45") && mounts.iter().any(|m| m.volume_options.as_ref().is_some_and(|o| !o.subpath.is_empty())) {
        return Err(invalid("VolumeOptions.Subpath needs API v1.45 or newer"));
    }
    if v.less_than("1.48") {
        if mounts.iter().any(|m| m.kind == "image") {
            return Err(invalid(r#"Mount type "Image" needs API v1.48 or newer"#));
        }
        // Every endpoint had the same priority before 1.48.
        let eps = body.networking_config.iter_mut().flat_map(|n| n.endpoints_config.values_mut());
        for ep in eps.flatten() {
            ep.gw_priority = 0;
        }
    }
    if !v.less_than("1.52") && !body.config.mac_address.is_empty() {
        return Err(invalid(
            "container-wide MAC address no longer supported; use endpoint-specific MAC address instead",
        ));
    }
    // A port with an empty list of bindings is published on an ephemeral host port (Docker
    // backfills one empty binding, in every version; from 1.52 it warns that this will end).
    let mut empty = Vec::new();
    for (port, list) in body.host_config.port_bindings.iter_mut() {
        if list.as_ref().is_none_or(Vec::is_empty) {
            *list = Some(vec![berth_api::hostconfig::PortBinding::default()]);
            empty.push(port.clone());
        }
    }
    let mut warnings = Vec::new();
    if !v.less_than("1.52") && !empty.is_empty() {
        warnings.push(format!(
            "Following container port(s) have an empty list of port-bindings: {}. Such bindings will be discarded in a future version.",
            empty.join(", ")
        ));
    }
    Ok(warnings)
}

/// One event of `GET /events`: before 1.52 with the legacy `status`, `id` and `from`.
pub fn event(v: &ApiVersion, e: &berth_api::events::Event) -> Option<berth_api::events::Event> {
    // Image `create` events (any build's result) are news from 1.46 on.
    if v.less_than("1.46") && e.kind == "image" && e.action == "create" {
        return None;
    }
    let mut e = e.clone();
    if v.less_than("1.52") {
        if e.status.is_empty() && matches!(e.kind.as_str(), "container" | "image") {
            e.status = e.action.clone();
            e.id = e.actor.id.clone();
            e.from = e.actor.attributes.get("image").cloned().unwrap_or_default();
        }
    } else {
        e.status.clear();
        e.id.clear();
        e.from.clear();
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(v: &str) -> ApiVersion {
        ApiVersion(v.into())
    }

    #[test]
    fn image_config_by_version() {
        let newest = || {
            json!({"Id": "sha256:x", "Size": 3, "Parent": "", "Comment": "", "Author": "a", "DockerVersion": "",
                   "Config": {"Cmd": ["sh"], "Env": [], "Hostname": "", "Tty": false, "User": ""}})
        };
        let newest = || {
            let mut i = newest();
            i["Container"] = json!("c");
            i["ContainerConfig"] = json!({});
            i
        };
        let mut i = newest();
        image_inspect(&at("1.56"), &mut i);
        assert_eq!(i["Config"], json!({"Cmd": ["sh"]}));
        assert!(i.get("Parent").is_none() && i.get("Comment").is_none() && i.get("Container").is_none());
        assert_eq!(i["Author"], "a");
        let mut i = newest();
        image_inspect(&at("1.51"), &mut i);
        assert_eq!(i["Config"]["User"], "");
        assert!(i["Config"]["Env"].is_null() && i["Config"].get("Hostname").is_none());
        assert_eq!(i["Parent"], "");
        let mut i = newest();
        image_inspect(&at("1.44"), &mut i);
        assert_eq!(i["Config"]["Hostname"], "");
        assert_eq!(i["Container"], "c");
        assert!(i.get("VirtualSize").is_none());
        image_inspect(&at("1.43"), &mut i);
        assert_eq!(i["VirtualSize"], 3);
    }

    #[test]
    fn container_network_settings_by_version() {
        let newest = || {
            json!({"Id": "0123456789abcdef", "Config": {"Hostname": "h", "OnBuild": null, "MacAddress": "m"},
                   "HostConfig": {}, "NetworkSettings": {"Networks": {
                       "bridge": {"IPAddress": "10.0.0.2", "Gateway": "10.0.0.1", "IPPrefixLen": 24},
                       "mine": {"Aliases": ["web"]}}}})
        };
        let mut c = newest();
        container_inspect(&at("1.56"), &mut c);
        assert!(c["NetworkSettings"].get("IPAddress").is_none());
        assert!(c["Config"].get("OnBuild").is_none() && c["Config"].get("MacAddress").is_none());
        assert_eq!(c["NetworkSettings"]["Networks"]["mine"]["Aliases"], json!(["web"]));
        let mut c = newest();
        container_inspect(&at("1.51"), &mut c);
        assert_eq!(c["NetworkSettings"]["IPAddress"], "10.0.0.2");
        assert_eq!(c["NetworkSettings"]["IPPrefixLen"], 24);
        assert_eq!(c["NetworkSettings"]["GlobalIPv6Address"], "");
        assert_eq!(c["NetworkSettings"]["Networks"]["mine"]["Aliases"], json!(["web"]));
        let mut c = newest();
        container_inspect(&at("1.44"), &mut c);
        assert_eq!(c["NetworkSettings"]["Networks"]["mine"]["Aliases"], json!(["web", "0123456789ab", "h"]));
        assert!(c["NetworkSettings"]["Networks"]["bridge"].get("Aliases").is_none());
    }

    #[test]
    fn events_by_version() {
        let e = berth_api::events::Event {
            status: "start".into(),
            id: "abc".into(),
            from: "busybox".into(),
            kind: "container".into(),
            action: "start".into(),
            ..Default::default()
        };
        let new = serde_json::to_value(event(&at("1.52"), &e).unwrap()).unwrap();
        assert!(new.get("status").is_none() && new.get("id").is_none() && new.get("from").is_none());
        let old = serde_json::to_value(event(&at("1.51"), &e).unwrap()).unwrap();
        assert_eq!(old["status"], "start");
        let built = berth_api::events::Event { kind: "image".into(), action: "create".into(), ..Default::default() };
        assert!(event(&at("1.45"), &built).is_none() && event(&at("1.46"), &built).is_some());
    }
}
