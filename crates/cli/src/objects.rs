//! `berth network ...` and `berth volume ...`: docker's subcommands, flags and output.

use std::collections::BTreeMap;

use anyhow::Result;
use berth_api::container::IdResponse;
use berth_api::network::{self, Ipam, IpamConfig, NetworkResource};
use berth_api::volume::{self, Volume, VolumeList};
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{enc, Client};
use crate::units::short;

#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    pub name: String,
    pub driver: String,
    pub subnet: Vec<String>,
    pub gateway: Vec<String>,
    pub ip_range: Vec<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: Vec<String>,
    pub opts: Vec<String>,
    pub ipv6: bool,
}

pub async fn network_create(c: &Client, n: &NetworkCreate) -> Result<String> {
    let configs: Vec<IpamConfig> = n
        .subnet
        .iter()
        .enumerate()
        .map(|(i, s)| IpamConfig {
            subnet: s.clone(),
            gateway: n.gateway.get(i).cloned().unwrap_or_default(),
            ip_range: n.ip_range.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    let body = network::CreateRequest {
        name: n.name.clone(),
        driver: if n.driver.is_empty() { "bridge".into() } else { n.driver.clone() },
        internal: n.internal,
        attachable: n.attachable,
        enable_ipv6: Some(n.ipv6),
        labels: Some(kv_strings(&n.labels)),
        options: Some(kv_strings(&n.opts)),
        ipam: Some(Ipam { driver: "default".into(), options: None, config: Some(configs) }),
        ..Default::default()
    };
    let v: IdResponse = c.call_as(Method::POST, "/networks/create", Some(&serde_json::to_value(&body)?)).await?;
    Ok(format!("{}\n", v.id))
}

pub const NETWORK_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `KEY=VALUE` list flags (`--label`, `--opt`) as a map (a bare `KEY` is `KEY=`).
fn kv_strings(items: &[String]) -> BTreeMap<String, String> {
    items.iter().map(|i| crate::cmd::opts::kv(i)).collect()
}

pub async fn network_ls(
    c: &Client,
    quiet: bool,
    filters: &[String],
    format: Option<&str>,
    no_trunc: bool,
) -> Result<String> {
    let list: Vec<NetworkResource> = c.get(&format!("/networks?{}", crate::cmd::filters_query(filters))).await?;
    let rows: Vec<Value> = list
        .iter()
        .map(|n| {
            json!({
                "ID": if no_trunc { n.id.clone() } else { short(&n.id) },
                "Name": n.name,
                "Driver": n.driver,
                "Scope": n.scope,
                "IPv6": n.enable_ipv6.to_string(),
                "Internal": n.internal.to_string(),
                "Labels": labels_text(&n.labels),
                "CreatedAt": n.created,
            })
        })
        .collect();
    if quiet && format.is_none() {
        return Ok(rows.iter().map(|r| format!("{}\n", r["ID"].as_str().unwrap_or_default())).collect());
    }
    crate::output::Format::parse(format)?.render(
        &rows,
        NETWORK_HEADERS,
        "table {{.ID}}\\t{{.Name}}\\t{{.Driver}}\\t{{.Scope}}",
    )
}

pub async fn volume_create(
    c: &Client,
    name: Option<&str>,
    driver: &str,
    opts: &[String],
    labels: &[String],
) -> Result<String> {
    let body = volume::CreateRequest {
        name: name.unwrap_or_default().to_string(),
        driver: if driver.is_empty() { "local".into() } else { driver.to_string() },
        driver_opts: kv_strings(opts),
        labels: kv_strings(labels),
    };
    let v: Volume = c.call_as(Method::POST, "/volumes/create", Some(&serde_json::to_value(&body)?)).await?;
    Ok(format!("{}\n", v.name))
}

pub const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Size", "SIZE"),
];

pub async fn volume_ls(c: &Client, quiet: bool, filters: &[String], format: Option<&str>) -> Result<String> {
    let v: VolumeList = c.get(&format!("/volumes?{}", crate::cmd::filters_query(filters))).await?;
    let rows: Vec<Value> = v
        .volumes
        .iter()
        .map(|v| {
            json!({
                "Name": v.name,
                "Driver": v.driver,
                "Scope": v.scope,
                "Mountpoint": v.mountpoint,
                "Labels": labels_text(&v.labels),
                "Size": match v.usage_data.map(|u| u.size) { Some(n) if n >= 0 => crate::units::human_size(n as f64), _ => "N/A".into() },
            })
        })
        .collect();
    if quiet && format.is_none() {
        return Ok(rows.iter().map(|r| format!("{}\n", r["Name"].as_str().unwrap_or_default())).collect());
    }
    crate::output::Format::parse(format)?.render(&rows, VOLUME_HEADERS, "table {{.Driver}}\\t{{.Name}}")
}

/// `network rm` / `volume rm`: each name printed when removed, errors reported and counted.
pub async fn remove_each(c: &Client, kind: &str, names: &[String], force: bool) -> i32 {
    let mut code = 0;
    for n in names {
        let path = format!("/{kind}/{}{}", enc(n), if force { "?force=1" } else { "" });
        match c.call(Method::DELETE, &path, None).await {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e:#}");
                code = 1;
            }
        }
    }
    code
}

/// `network inspect` / `volume inspect`: a JSON array of the objects (or `--format`), as docker prints it.
pub async fn inspect_each(c: &Client, kind: &str, names: &[String], format: Option<&str>) -> Result<i32> {
    let paths: Vec<String> = names.iter().map(|n| format!("/{kind}/{}", enc(n))).collect();
    crate::cmd::inspect_format(c, &paths, names, format, "").await
}
