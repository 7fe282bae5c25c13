//! `berth network ...` and `berth volume ...`: docker's subcommands, flags and output.

use anyhow::Result;
use hyper::Method;
use serde_json::{json, Map, Value};

use crate::client::{enc, Client};
use crate::commands::table;

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

fn short(id: &str) -> String {
    id.chars().take(12).collect()
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
        "Labels": kv_map(&n.labels),
        "Options": kv_map(&n.opts),
        "IPAM": {"Driver": "default", "Config": configs},
    });
    let v = c.call(Method::POST, "/networks/create", Some(&body)).await?;
    Ok(format!("{}\n", v["Id"].as_str().unwrap_or_default()))
}

pub async fn network_ls(c: &Client, quiet: bool) -> Result<String> {
    let list: Vec<Value> = c.get("/networks").await?;
    if quiet {
        return Ok(list.iter().map(|n| short(n["Id"].as_str().unwrap_or_default()) + "\n").collect());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            vec![short(&s("Id")), s("Name"), s("Driver"), s("Scope")]
        })
        .collect();
    Ok(table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows))
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

pub async fn volume_ls(c: &Client, quiet: bool) -> Result<String> {
    let v: Value = c.get("/volumes").await?;
    let list = v["Volumes"].as_array().cloned().unwrap_or_default();
    if quiet {
        return Ok(list.iter().map(|v| format!("{}\n", v["Name"].as_str().unwrap_or_default())).collect());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| vec![v["Driver"].as_str().unwrap_or_default().into(), v["Name"].as_str().unwrap_or_default().into()])
        .collect();
    Ok(table(&["DRIVER", "VOLUME NAME"], &rows))
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

/// `network inspect` / `volume inspect`: a JSON array of the objects, as docker prints it.
pub async fn inspect_each(c: &Client, kind: &str, names: &[String]) -> Result<(String, i32)> {
    let mut out = Vec::new();
    let mut code = 0;
    for n in names {
        match c.get::<Value>(&format!("/{kind}/{}", enc(n))).await {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("{e:#}");
                code = 1;
            }
        }
    }
    Ok((serde_json::to_string_pretty(&out)? + "\n", code))
}
