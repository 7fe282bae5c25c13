//! `berth network ...` and `berth volume ...`: docker's subcommands, flags and output.

use anyhow::Result;
use hyper::Method;
use serde_json::{json, Map, Value};

use crate::client::{enc, Client};
use crate::units::short;

/// `KEY=VALUE` list flags (`--label`, `--opt`) as a JSON object.
fn kv_map(list: &[String]) -> Value {
    let m: Map<String, Value> = list
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), json!(v))
        })
        .collect();
    Value::Object(m)
}

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
    let configs: Vec<Value> = n
        .subnet
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut cfg = json!({"Subnet": s});
            if let Some(g) = n.gateway.get(i) {
                cfg["Gateway"] = json!(g);
            }
            if let Some(r) = n.ip_range.get(i) {
                cfg["IPRange"] = json!(r);
            }
            cfg
        })
        .collect();
    let body = json!({
        "Name": n.name,
        "Driver": if n.driver.is_empty() { "bridge" } else { n.driver.as_str() },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "EnableIPv6": n.ipv6,
        "Labels": kv_map(&n.labels),
        "Options": kv_map(&n.opts),
        "IPAM": {"Driver": "default", "Config": configs},
    });
    let v = c.call(Method::POST, "/networks/create", Some(&body)).await?;
    Ok(format!("{}\n", v["Id"].as_str().unwrap_or_default()))
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

fn labels_text(v: &Value) -> String {
    let mut l: Vec<String> =
        v.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
    l.sort();
    l.join(",")
}

pub async fn network_ls(
    c: &Client,
    quiet: bool,
    filters: &[String],
    format: Option<&str>,
    no_trunc: bool,
) -> Result<String> {
    let list: Vec<Value> = c.get(&format!("/networks?{}", crate::cmd::filters_query(filters))).await?;
    let rows: Vec<Value> = list
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            json!({
                "ID": if no_trunc { s("Id") } else { short(&s("Id")) },
                "Name": s("Name"),
                "Driver": s("Driver"),
                "Scope": s("Scope"),
                "IPv6": n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                "Internal": n["Internal"].as_bool().unwrap_or(false).to_string(),
                "Labels": labels_text(&n["Labels"]),
                "CreatedAt": s("Created"),
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
    let body = json!({
        "Name": name.unwrap_or_default(),
        "Driver": if driver.is_empty() { "local" } else { driver },
        "DriverOpts": kv_map(opts),
        "Labels": kv_map(labels),
    });
    let v = c.call(Method::POST, "/volumes/create", Some(&body)).await?;
    Ok(format!("{}\n", v["Name"].as_str().unwrap_or_default()))
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
    let v: Value = c.get(&format!("/volumes?{}", crate::cmd::filters_query(filters))).await?;
    let list = v["Volumes"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Value> = list
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            json!({
                "Name": s("Name"),
                "Driver": s("Driver"),
                "Scope": s("Scope"),
                "Mountpoint": s("Mountpoint"),
                "Labels": labels_text(&v["Labels"]),
                "Size": match v["UsageData"]["Size"].as_i64() { Some(n) if n >= 0 => crate::units::human_size(n as f64), _ => "N/A".into() },
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
