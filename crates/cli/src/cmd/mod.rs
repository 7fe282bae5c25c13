//! The command tree: docker's management commands (`container`, `image`, `system`, …) and the
//! top-level shortcuts, each a thin clap layer over the Engine API client.

pub mod container;
pub mod cp;
pub mod image;
pub mod objects;
pub mod opts;
pub mod run;
pub mod stats;
pub mod system;

use std::io::{BufRead, Write};

use anyhow::{anyhow, Result};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{empty, Client};
use crate::output::Format;

#[derive(Args, Debug, Clone, Default)]
pub struct FormatArg {
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a Go template
    #[arg(long = "format")]
    pub format: Option<String>,
}

/// `inspect`'s `-f/--format` (listings have no `-f`: there it is `--filter`).
#[derive(Args, Debug, Clone, Default)]
pub struct InspectFormat {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long = "format")]
    pub format: Option<String>,
}

/// Runs `f` on each name like docker: print the name on success, the error on failure, exit 1 if any failed.
pub async fn each<F, Fut>(names: &[String], f: F) -> i32
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    each_print(names, |n| {
        let fut = f(n.clone());
        async move { fut.await.map(|_| n) }
    })
    .await
}

/// `each`, printing what `f` returns (`docker wait` prints exit codes).
pub async fn each_print<F, Fut>(names: &[String], f: F) -> i32
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let mut code = 0;
    for n in names {
        match f(n.clone()).await {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("{e:#}");
                code = 1;
            }
        }
    }
    code
}

/// `--filter k=v` flags as the API's `filters` JSON (`{"k":{"v":true}}`).
pub fn kv_filters(list: &[String]) -> Value {
    let mut f = serde_json::Map::new();
    for kv in list {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        f.entry(k.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(v.into(), json!(true));
    }
    Value::Object(f)
}

pub fn filters_query(list: &[String]) -> String {
    format!("filters={}", crate::client::enc(&kv_filters(list).to_string()))
}

/// docker's "Are you sure you want to continue? [y/N]" prompt.
pub fn confirm(warning: &str) -> Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// A prune answer as docker prints it: the deleted items, then the space reclaimed.
pub fn prune_report(v: &Value, key: &str, title: &str) -> String {
    let mut out = String::new();
    let items = v[key].as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        out.push_str(title);
        out.push('\n');
        for i in items {
            match i.as_str() {
                Some(s) => out.push_str(&format!("{s}\n")),
                None => {
                    for (k, val) in i.as_object().into_iter().flatten() {
                        out.push_str(&format!("{k}: {}\n", val.as_str().unwrap_or_default()));
                    }
                }
            }
        }
        out.push('\n');
    }
    if !v["SpaceReclaimed"].is_null() {
        out.push_str(&format!(
            "Total reclaimed space: {}\n",
            crate::units::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
        ));
    }
    out
}

/// `inspect`: the objects as an indented JSON array, or each through `--format`; missing ones
/// are reported ("Error: No such container: x") and make the exit code 1.
pub async fn inspect_format(
    c: &Client,
    paths: &[String],
    names: &[String],
    format: Option<&str>,
    kind: &str,
) -> Result<i32> {
    let mut found = Vec::new();
    let mut code = 0;
    for (p, n) in paths.iter().zip(names) {
        match c.get::<Value>(p).await {
            Ok(v) => found.push(v),
            Err(e) => {
                let not_found = e.downcast_ref::<crate::client::ApiError>().is_some_and(|a| a.status == 404);
                if not_found && !kind.is_empty() && kind != "image" {
                    eprintln!("Error: No such {kind}: {n}");
                } else {
                    eprintln!("{e:#}");
                }
                code = 1;
            }
        }
    }
    if kind == "image" && format.is_some_and(|f| !f.is_empty() && f != "json") {
        found.iter_mut().for_each(image_zero_values);
    }
    print_inspect(&found, format)?;
    Ok(code)
}

/// The docker CLI runs templates over its Go types, where a field the daemon leaves out (an
/// image's unset config fields, from API 1.50/1.52) is that field's zero value, not `<no value>`.
fn image_zero_values(v: &mut Value) {
    let fill = |o: &mut Value, keys: &[(&str, Value)]| {
        if let Some(m) = o.as_object_mut() {
            for (k, z) in keys {
                m.entry(k.to_string()).or_insert_with(|| z.clone());
            }
        }
    };
    let s = || Value::String(String::new());
    fill(v, &[("Parent", s()), ("Comment", s()), ("DockerVersion", s()), ("Author", s())]);
    if v["Config"].is_object() {
        let n = Value::Null;
        let keys = [
            ("Cmd", n.clone()),
            ("Entrypoint", n.clone()),
            ("Env", n.clone()),
            ("Labels", n.clone()),
            ("OnBuild", n.clone()),
            ("Volumes", n.clone()),
            ("User", s()),
            ("WorkingDir", s()),
        ];
        fill(&mut v["Config"], &keys);
    }
}

pub fn print_inspect(found: &[Value], format: Option<&str>) -> Result<()> {
    match format.filter(|f| !f.is_empty() && *f != "json") {
        None => {
            let mut out = serde_json::to_string_pretty(&found)?;
            if found.is_empty() {
                out = "[]".into();
            }
            println!("{out}");
        }
        Some(f) => {
            let f = f.replace("\\t", "\t").replace("\\n", "\n");
            let t = crate::format::Template::parse(&f).map_err(|e| anyhow!("template parsing error: {e}"))?;
            for v in found {
                println!("{}", t.render(v)?);
            }
        }
    }
    Ok(())
}

/// Streams a GET answer (export, save) to a file or stdout, refusing a terminal as docker does.
pub async fn save_stream(c: &Client, method: Method, path: &str, output: Option<&str>) -> Result<()> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    if output.is_none() && crate::tty::stdout_is_tty() {
        anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = Client::check(c.send(method, path, empty(), None).await?).await?;
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match output {
        Some(f) => Box::new(tokio::fs::File::create(f).await.map_err(|e| anyhow!("failed to save to {f}: {e}"))?),
        None => Box::new(tokio::io::stdout()),
    };
    let mut body = http_body_util::BodyExt::into_data_stream(resp.into_body());
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?).await?;
    }
    out.flush().await?;
    Ok(())
}

/// `repo[:tag]` → (repo, tag), `latest` when absent; a registry port is not a tag.
pub fn split_tag(r: &str) -> (String, String) {
    match r.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((repo, tag)) => (repo.to_string(), tag.to_string()),
        None => (r.to_string(), "latest".to_string()),
    }
}

/// `--since`/`--until`: RFC 3339, a unix time, or a duration before now (`10m`), as the API wants
/// (unix seconds with an optional fraction).
pub fn timestamp_arg(s: &str) -> Result<String> {
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Ok(s.to_string());
    }
    if let Ok(ns) = crate::units::parse_duration(s) {
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - ns;
        return Ok(format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000));
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(format!("{}.{:09}", d.timestamp(), d.timestamp_subsec_nanos()));
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f)
            .or_else(|_| chrono::NaiveDate::parse_from_str(s, f).map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")))
        {
            return Ok(d.and_utc().timestamp().to_string());
        }
    }
    Err(anyhow!("invalid value for \"since\"/\"until\": {s:?}: use RFC 3339, a unix time or a duration"))
}

/// Renders a listing with `--format` (docker's table by default).
pub fn render(rows: &[Value], format: &FormatArg, headers: &[(&str, &str)], default: &str) -> Result<String> {
    Format::parse(format.format.as_deref())?.render(rows, headers, default)
}
