//! `berth system df|events|info|prune|dial-stdio`, `version`, and the generic `inspect`.

use anyhow::{bail, Result};
use berth_api::container::Summary;
use berth_api::events::Event;
use berth_api::system::{BuildCacheEntry, DiskUsageView};
use berth_api::volume::Volume;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::{confirm, filters_query, kv_filters, print_inspect, prune_report, render, FormatArg};
use crate::client::{empty, enc, ApiError, Client};
use crate::units::human_size;

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Show docker disk usage
    Df(DfArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// Display system-wide information
    Info(FormatArg),
    /// Remove unused data
    Prune(SystemPruneArgs),
    /// Proxy the stdio stream to the daemon connection (what `ssh://` hosts run remotely)
    #[command(name = "dial-stdio")]
    DialStdio,
}

#[derive(Args, Debug)]
pub struct DfArgs {
    #[command(flatten)]
    pub format: FormatArg,
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    #[command(flatten)]
    pub format: FormatArg,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Args, Debug)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    #[command(flatten)]
    pub format: FormatArg,
}

#[derive(Args, Debug)]
pub struct InspectAnyArgs {
    #[command(flatten)]
    pub format: super::InspectFormat,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    /// Return JSON for specified type
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

pub async fn run(c: &Client, cmd: SystemCmd, context: &str) -> Result<i32> {
    match cmd {
        SystemCmd::Df(a) => df(c, a).await,
        SystemCmd::Events(a) => events(c, a).await,
        SystemCmd::Info(f) => info(c, f, context).await,
        SystemCmd::Prune(a) => prune(c, a).await,
        SystemCmd::DialStdio => unreachable!("dial-stdio runs before a client is made"),
    }
}

fn client_version(context: &str) -> Value {
    json!({
        "Platform": {"Name": "Berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "APIVersion": crate::client::API_VERSION,
        "DefaultAPIVersion": crate::client::API_VERSION,
        "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "n/a (Rust)",
        "Os": std::env::consts::OS,
        "Arch": if std::env::consts::ARCH == "x86_64" { "amd64" } else if std::env::consts::ARCH == "aarch64" { "arm64" } else { std::env::consts::ARCH },
        "BuildTime": "",
        "Context": context,
    })
}

const VERSION_TMPL: &str = "Client:{{if .Client.Platform.Name}} {{.Client.Platform.Name}}{{end}}
 Version:           {{.Client.Version}}
 API version:       {{.Client.APIVersion}}
 Git commit:        {{.Client.GitCommit}}
 OS/Arch:           {{.Client.Os}}/{{.Client.Arch}}
 Context:           {{.Client.Context}}
{{- if .Server}}

Server:{{if .Server.Platform.Name}} {{.Server.Platform.Name}}{{end}}
 Engine:
  Version:          {{.Server.Version}}
  API version:      {{.Server.APIVersion}} (minimum version {{.Server.MinAPIVersion}})
  Git commit:       {{.Server.GitCommit}}
  OS/Arch:          {{.Server.Os}}/{{.Server.Arch}}
  Kernel:           {{.Server.KernelVersion}}
{{- end}}";

/// `berth version [--format]`: the client part always; the server's when it answers (exit 1 otherwise).
pub async fn version(c: &Client, a: VersionArgs, context: &str) -> Result<i32> {
    let mut client = client_version(context);
    let server = c.get::<berth_api::system::Version>("/version").await;
    // The client speaks the negotiated version once the daemon answered, as docker's `API version` shows.
    if server.is_ok() {
        if let Ok(p) = c.api_prefix().await {
            client["APIVersion"] = json!(p.trim_start_matches("/v"));
        }
    }
    // Templates see docker's Go field names (`.Server.APIVersion`), not the JSON ones.
    let server_doc = server.as_ref().ok().map(|s| {
        let mut s = serde_json::to_value(s).unwrap_or_default();
        if let Some(o) = s.as_object_mut() {
            if let Some(v) = o.remove("ApiVersion") {
                o.insert("APIVersion".into(), v);
            }
        }
        s
    });
    let doc = json!({"Client": client, "Server": server_doc});
    let tmpl = a.format.format.clone().unwrap_or_else(|| VERSION_TMPL.to_string());
    if tmpl == "json" {
        println!("{}", serde_json::to_string(&doc)?);
    } else {
        let t = crate::format::Template::parse(&tmpl.replace("\\t", "\t").replace("\\n", "\n"))?;
        println!("{}", t.render(&doc)?);
    }
    match server {
        Ok(_) => Ok(0),
        Err(e) => {
            eprintln!("{e:#}");
            Ok(1)
        }
    }
}

async fn info(c: &Client, f: FormatArg, context: &str) -> Result<i32> {
    let info: berth_api::system::Info = c.get("/info").await?;
    if let Some(fmt) = f.format.as_deref().filter(|f| !f.is_empty()) {
        // Templates see the answer as docker's CLI does, with the client's part beside it.
        let mut i = serde_json::to_value(&info)?;
        i["ClientInfo"] = json!({"Debug": false, "Context": context, "Version": env!("CARGO_PKG_VERSION")});
        if fmt == "json" {
            println!("{}", serde_json::to_string(&i)?);
        } else {
            let t = crate::format::Template::parse(&fmt.replace("\\t", "\t").replace("\\n", "\n"))?;
            println!("{}", t.render(&i)?);
        }
        return Ok(0);
    }
    let i = &info;
    println!("Client:\n Version:    {}\n Context:    {context}\n Debug Mode: false\n", env!("CARGO_PKG_VERSION"));
    println!("Server:");
    println!(
        " Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}",
        i.containers, i.containers_running, i.containers_paused, i.containers_stopped
    );
    println!(" Images: {}\n Server Version: {}\n Storage Driver: {}", i.images, i.server_version, i.driver);
    for [k, v] in &i.driver_status {
        println!("  {k}: {v}");
    }
    println!(
        " Logging Driver: {}\n Cgroup Driver: {}\n Cgroup Version: {}",
        i.logging_driver, i.cgroup_driver, i.cgroup_version
    );
    println!(
        " Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}\n CPUs: {}\n Total Memory: {}",
        i.kernel_version,
        i.operating_system,
        i.os_type,
        i.architecture,
        i.ncpu,
        crate::units::bytes_size(i.mem_total as f64)
    );
    println!(" Name: {}\n ID: {}\n Docker Root Dir: {}", i.name, i.id, i.docker_root_dir);
    println!(" Live Restore Enabled: {}", i.live_restore_enabled);
    Ok(0)
}

/// `docker events`' default line: time, type, action, actor id and its attributes sorted.
pub fn event_line(e: &Event) -> String {
    let nanos = if e.time_nano != 0 { e.time_nano } else { e.time * 1_000_000_000 };
    let t = chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S.%9fZ").to_string())
        .unwrap_or_default();
    let mut line = format!("{t} {} {} {}", e.kind, e.action, e.actor.id);
    let mut attrs: Vec<String> = e.actor.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    attrs.sort();
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

async fn events(c: &Client, a: EventsArgs) -> Result<i32> {
    let mut path = format!("/events?filters={}", enc(&kv_filters(&a.filter).to_string()));
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(t) = v {
            path.push_str(&format!("&{k}={}", enc(&super::timestamp_arg(t)?)));
        }
    }
    let tmpl = match a.format.format.as_deref() {
        None | Some("") => None,
        Some("json") => Some(crate::format::Template::parse("{{json .}}")?),
        Some(f) => Some(crate::format::Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n"))?),
    };
    let resp = Client::check(c.send(Method::GET, &path, empty(), None).await?).await?;
    crate::client::read_json_lines(resp, |e: Value| -> Result<Option<()>> {
        use std::io::Write;
        match &tmpl {
            Some(t) => println!("{}", t.render(&e)?),
            None => println!("{}", event_line(&serde_json::from_value(e)?)),
        }
        let _ = std::io::stdout().flush();
        Ok(None)
    })
    .await?;
    Ok(0)
}

pub const DF_HEADERS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

fn reclaim(r: f64, total: f64, pct: bool) -> String {
    if pct && total > 0.0 {
        format!("{} ({}%)", human_size(r), (r * 100.0 / total) as i64)
    } else {
        human_size(r)
    }
}

async fn df(c: &Client, a: DfArgs) -> Result<i32> {
    let d: DiskUsageView = c.get("/system/df").await?;
    // Sums start at +0 (an empty f64 `sum()` is -0, which would print as "-0B").
    let (images, containers, vols, cache) = (&d.images, &d.containers, &d.volumes, &d.build_cache);
    let img_total: f64 = images.iter().map(|i| i.size as f64).fold(0.0, |a, b| a + b);
    let img_used: f64 = images.iter().filter(|i| i.containers > 0).map(|i| i.size as f64).fold(0.0, |a, b| a + b);
    let rw = |c: &Summary| c.sizes.size_rw.unwrap_or(0) as f64;
    let ctr_total: f64 = containers.iter().map(rw).fold(0.0, |a, b| a + b);
    let ctr_reclaim: f64 = containers.iter().filter(|c| c.state != "running").map(rw).fold(0.0, |a, b| a + b);
    // A volume's (size, users); -1 (not computed) counts as 0 bytes.
    let usage = |v: &Volume| v.usage_data.map_or((0.0, 0), |u| (u.size.max(0) as f64, u.ref_count));
    let vol_total: f64 = vols.iter().map(|v| usage(v).0).fold(0.0, |a, b| a + b);
    let vol_reclaim: f64 = vols.iter().filter(|v| usage(v).1 == 0).map(|v| usage(v).0).fold(0.0, |a, b| a + b);
    let own = |b: &&BuildCacheEntry| !b.shared;
    let cache_total: f64 = cache.iter().filter(own).map(|b| b.size as f64).fold(0.0, |a, b| a + b);
    let cache_reclaim: f64 =
        cache.iter().filter(own).filter(|b| !b.in_use).map(|b| b.size as f64).fold(0.0, |a, b| a + b);
    let rows = vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(),
            "Active": images.iter().filter(|i| i.containers > 0).count().to_string(),
            "Size": human_size(img_total), "Reclaimable": reclaim(img_total - img_used, img_total, true)}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(),
            "Active": containers.iter().filter(|c| c.state == "running").count().to_string(),
            "Size": human_size(ctr_total), "Reclaimable": reclaim(ctr_reclaim, ctr_total, true)}),
        json!({"Type": "Local Volumes", "TotalCount": vols.len().to_string(),
            "Active": vols.iter().filter(|v| usage(v).1 > 0).count().to_string(),
            "Size": human_size(vol_total), "Reclaimable": reclaim(vol_reclaim, vol_total, true)}),
        json!({"Type": "Build Cache", "TotalCount": cache.len().to_string(),
            "Active": cache.iter().filter(|b| b.in_use).count().to_string(),
            "Size": human_size(cache_total), "Reclaimable": reclaim(cache_reclaim, cache_total, false)}),
    ];
    let default = "table {{.Type}}\\t{{.TotalCount}}\\t{{.Active}}\\t{{.Size}}\\t{{.Reclaimable}}";
    if !a.verbose {
        print!("{}", render(&rows, &a.format, DF_HEADERS, default)?);
        return Ok(0);
    }
    // -v: one table per kind, as docker prints them.
    let table = |title: &str, header: &[&str], body: Vec<Vec<String>>| {
        let mut t = header.join("\t") + "\n";
        for r in body {
            t.push_str(&(r.join("\t") + "\n"));
        }
        format!("{title}\n{}\n", crate::output::tabwrite(&t, 10, 3))
    };
    let mut out = String::new();
    out.push_str(&table(
        "Images space usage:\n",
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
        images
            .iter()
            .flat_map(|i| {
                let tags = if i.repo_tags.is_empty() { vec!["<none>:<none>".to_string()] } else { i.repo_tags.clone() };
                tags.into_iter().map(move |t| {
                    let (r, tg) = t
                        .rsplit_once(':')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .unwrap_or((t.clone(), "<none>".into()));
                    vec![
                        r,
                        tg,
                        crate::units::short(&i.id),
                        crate::units::ago(i.created),
                        human_size(i.size as f64),
                        human_size(i.shared_size.max(0) as f64),
                        human_size(i.size as f64 - i.shared_size.max(0) as f64),
                        i.containers.max(0).to_string(),
                    ]
                })
            })
            .collect(),
    ));
    out.push_str(&table(
        "Containers space usage:\n",
        &["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"],
        containers
            .iter()
            .map(|c| {
                vec![
                    crate::units::short(&c.id),
                    c.image.clone(),
                    format!("{:?}", crate::units::ellipsis(&c.command, 20)),
                    c.mounts.len().to_string(),
                    human_size(rw(c)),
                    crate::units::ago(c.created),
                    c.status.clone(),
                    c.names.first().map(|n| n.trim_start_matches('/')).unwrap_or("").to_string(),
                ]
            })
            .collect(),
    ));
    out.push_str(&table(
        "Local Volumes space usage:\n",
        &["VOLUME NAME", "LINKS", "SIZE"],
        vols.iter().map(|v| vec![v.name.clone(), usage(v).1.to_string(), human_size(usage(v).0)]).collect(),
    ));
    out.push_str(&table(
        "Build cache usage: ".to_string().as_str().trim_end(),
        &["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"],
        cache
            .iter()
            .map(|b| {
                vec![
                    crate::units::short(&b.id),
                    b.kind.clone(),
                    human_size(b.size as f64),
                    crate::units::ago_rfc3339(&b.created_at),
                    crate::units::ago_rfc3339(&b.last_used_at),
                    b.usage_count.to_string(),
                    b.shared.to_string(),
                ]
            })
            .collect(),
    ));
    print!("{}", out.trim_end_matches('\n').to_string() + "\n");
    Ok(0)
}

async fn prune(c: &Client, a: SystemPruneArgs) -> Result<i32> {
    let mut warn = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
    );
    if a.volumes {
        warn.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    warn.push_str(if a.all {
        "  - all images without at least one container associated to them\n"
    } else {
        "  - all dangling images\n"
    });
    warn.push_str("  - unused build cache\n");
    if !a.force && !confirm(&warn)? {
        return Ok(0);
    }
    let f = filters_query(&a.filter);
    let mut total = 0.0;
    let mut out = String::new();
    let mut step = |v: Value, key: &str, title: &str| {
        total += v["SpaceReclaimed"].as_f64().unwrap_or(0.0);
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.remove("SpaceReclaimed");
        }
        out.push_str(&prune_report(&v, key, title));
    };
    step(
        c.call(Method::POST, &format!("/containers/prune?{f}"), None).await?,
        "ContainersDeleted",
        "Deleted Containers:",
    );
    step(c.call(Method::POST, &format!("/networks/prune?{f}"), None).await?, "NetworksDeleted", "Deleted Networks:");
    if a.volumes {
        step(c.call(Method::POST, &format!("/volumes/prune?{f}"), None).await?, "VolumesDeleted", "Deleted Volumes:");
    }
    let mut img = a.filter.clone();
    img.push(format!("dangling={}", !a.all));
    step(
        c.call(Method::POST, &format!("/images/prune?{}", filters_query(&img)), None).await?,
        "ImagesDeleted",
        "Deleted Images:",
    );
    step(
        c.call(Method::POST, &format!("/build/prune?all={}&{f}", a.all as u8), None).await?,
        "CachesDeleted",
        "Deleted build cache objects:",
    );
    print!("{out}");
    println!("Total reclaimed space: {}", human_size(total));
    Ok(0)
}

/// `berth inspect [--type T] NAME...`: containers first, then images, networks and volumes, as docker
/// resolves a name of unknown kind.
pub async fn inspect_any(c: &Client, a: InspectAnyArgs) -> Result<i32> {
    let kinds: Vec<&str> = match a.kind.as_deref() {
        None | Some("") => vec!["container", "image", "network", "volume"],
        Some(k @ ("container" | "image" | "network" | "volume")) => vec![k],
        Some(k) => bail!("\"{k}\" is not a valid value for --type"),
    };
    let mut found = Vec::new();
    let mut code = 0;
    for n in &a.names {
        let mut hit = None;
        for k in &kinds {
            let p = match *k {
                "container" => format!("/containers/{}/json?size={}", enc(n), a.size as u8),
                "image" => format!("/images/{n}/json"),
                "network" => format!("/networks/{}", enc(n)),
                _ => format!("/volumes/{}", enc(n)),
            };
            match c.get::<Value>(&p).await {
                Ok(v) => {
                    hit = Some(v);
                    break;
                }
                Err(e) if e.downcast_ref::<ApiError>().is_some_and(|a| a.status == 404 || a.status == 400) => {}
                Err(e) => return Err(e),
            }
        }
        match hit {
            Some(v) => found.push(v),
            None => {
                match a.kind.as_deref() {
                    Some(k) if !k.is_empty() => eprintln!("Error: No such {k}: {n}"),
                    _ => eprintln!("Error: No such object: {n}"),
                }
                code = 1;
            }
        }
    }
    print_inspect(&found, a.format.format.as_deref())?;
    Ok(code)
}
