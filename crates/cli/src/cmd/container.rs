//! `berth container …` (and the top-level shortcuts): every container command but the terminal ones
//! (`run.rs`), with docker's flags, tables and `--format` fields.

use anyhow::{bail, Result};
use berth_api::container::{
    Change, ContainerInspect, IdResponse, Port, Summary, TopResponse, UpdateResponse, WaitResponse,
};
use berth_api::hostconfig::PortBinding;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};

use super::run::{AttachArgs, CreateArgs, ExecArgs, RunArgs, StartArgs};
use super::{confirm, each, filters_query, inspect_format, kv_filters, prune_report, FormatArg};
use crate::client::{enc, Client};
use crate::output::Format;
use crate::units::{ago, ellipsis, human_size_prec, short};

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(OneContainer),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// List containers
    #[command(alias = "ps", alias = "list")]
    Ls(PsArgs),
    /// Pause all processes within one or more containers
    Pause(Containers),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Unpause all processes within one or more containers
    Unpause(Containers),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(Containers),
}

#[derive(Args, Debug)]
pub struct Containers {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct OneContainer {
    pub container: String,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth ps [OPTIONS]")]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    #[command(flatten)]
    pub format: FormatArg,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth rm [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth stop [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long, alias = "time", allow_hyphen_values = true)]
    pub timeout: Option<i64>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth kill [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth logs [OPTIONS] CONTAINER")]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub format: super::InspectFormat,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
        berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH")]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    pub quiet: bool,
    pub src: String,
    pub dst: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    #[command(flatten)]
    pub format: FormatArg,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub async fn run(c: &Client, cmd: ContainerCmd) -> Result<i32> {
    match cmd {
        ContainerCmd::Attach(a) => super::run::attach(c, a).await,
        ContainerCmd::Commit(a) => commit(c, a).await,
        ContainerCmd::Cp(a) => super::cp::cp(c, a.src, a.dst, a.follow_link, a.quiet).await,
        ContainerCmd::Create(a) => super::run::create_cmd(c, a).await,
        ContainerCmd::Diff(a) => {
            let changes: Option<Vec<Change>> = c.get(&format!("/containers/{}/changes", enc(&a.container))).await?;
            for ch in changes.unwrap_or_default() {
                let kind = match ch.kind {
                    0 => "C",
                    1 => "A",
                    _ => "D",
                };
                println!("{kind} {}", ch.path);
            }
            Ok(0)
        }
        ContainerCmd::Exec(a) => super::run::exec(c, a).await,
        ContainerCmd::Export(a) => {
            super::save_stream(
                c,
                Method::GET,
                &format!("/containers/{}/export", enc(&a.container)),
                a.output.as_deref(),
            )
            .await?;
            Ok(0)
        }
        ContainerCmd::Inspect(a) => {
            let paths: Vec<String> =
                a.containers.iter().map(|n| format!("/containers/{}/json?size={}", enc(n), a.size as u8)).collect();
            inspect_format(c, &paths, &a.containers, a.format.format.as_deref(), "container").await
        }
        ContainerCmd::Kill(a) => Ok(each(&a.containers, |n| {
            let c = c.clone();
            let q = a.signal.as_ref().map(|s| format!("?signal={}", enc(s))).unwrap_or_default();
            async move { c.call(Method::POST, &format!("/containers/{}/kill{q}", enc(&n)), None).await.map(|_| ()) }
        })
        .await),
        ContainerCmd::Logs(a) => logs(c, a).await,
        ContainerCmd::Ls(a) => {
            print!("{}", ps(c, &a).await?);
            Ok(0)
        }
        ContainerCmd::Pause(a) => simple(c, &a.containers, "pause").await,
        ContainerCmd::Unpause(a) => simple(c, &a.containers, "unpause").await,
        ContainerCmd::Port(a) => port(c, a).await,
        ContainerCmd::Prune(a) => {
            if !a.force && !confirm("WARNING! This will remove all stopped containers.")? {
                return Ok(0);
            }
            let v = c.call(Method::POST, &format!("/containers/prune?{}", filters_query(&a.filter)), None).await?;
            print!("{}", prune_report(&v, "ContainersDeleted", "Deleted Containers:"));
            Ok(0)
        }
        ContainerCmd::Rename(a) => {
            c.call(Method::POST, &format!("/containers/{}/rename?name={}", enc(&a.container), enc(&a.new_name)), None)
                .await?;
            Ok(0)
        }
        ContainerCmd::Restart(a) => stop_like(c, a, "restart").await,
        ContainerCmd::Rm(a) => Ok(each(&a.containers, |n| {
            let c = c.clone();
            let q = format!("force={}&v={}&link={}", a.force as u8, a.volumes as u8, a.link as u8);
            async move { c.call(Method::DELETE, &format!("/containers/{}?{q}", enc(&n)), None).await.map(|_| ()) }
        })
        .await),
        ContainerCmd::Run(a) => super::run::run(c, a).await,
        ContainerCmd::Start(a) => super::run::start(c, a).await,
        ContainerCmd::Stats(a) => super::stats::stats(c, a).await,
        ContainerCmd::Stop(a) => stop_like(c, a, "stop").await,
        ContainerCmd::Top(a) => {
            let q =
                if a.ps_args.is_empty() { String::new() } else { format!("?ps_args={}", enc(&a.ps_args.join(" "))) };
            let v: TopResponse = c.get(&format!("/containers/{}/top{q}", enc(&a.container))).await?;
            let mut text = String::new();
            text.push_str(&v.titles.join("\t"));
            text.push('\n');
            for p in &v.processes {
                text.push_str(&p.join("\t"));
                text.push('\n');
            }
            print!("{}", crate::output::tabwrite(&text, 20, 3));
            Ok(0)
        }
        ContainerCmd::Update(a) => update(c, a).await,
        ContainerCmd::Wait(a) => Ok(super::each_print(&a.containers, |n| {
            let c = c.clone();
            async move {
                let v: WaitResponse = c.call_as(Method::POST, &format!("/containers/{}/wait", enc(&n)), None).await?;
                Ok(v.status_code.to_string())
            }
        })
        .await),
    }
}

async fn simple(c: &Client, names: &[String], action: &'static str) -> Result<i32> {
    Ok(each(names, |n| {
        let c = c.clone();
        async move { c.call(Method::POST, &format!("/containers/{}/{action}", enc(&n)), None).await.map(|_| ()) }
    })
    .await)
}

async fn stop_like(c: &Client, a: StopArgs, action: &'static str) -> Result<i32> {
    let mut q = Vec::new();
    if let Some(t) = a.timeout {
        q.push(format!("t={t}"));
    }
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", enc(s)));
    }
    let q = q.join("&");
    Ok(each(&a.containers, |n| {
        let c = c.clone();
        let q = q.clone();
        async move { c.call(Method::POST, &format!("/containers/{}/{action}?{q}", enc(&n)), None).await.map(|_| ()) }
    })
    .await)
}

async fn commit(c: &Client, a: CommitArgs) -> Result<i32> {
    let mut q = format!("container={}&pause={}", enc(&a.container), a.pause as u8);
    if let Some(r) = &a.repository {
        let (repo, tag) = super::split_tag(r);
        q.push_str(&format!("&repo={}&tag={}", enc(&repo), enc(&tag)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&comment={}", enc(m)));
    }
    if let Some(au) = &a.author {
        q.push_str(&format!("&author={}", enc(au)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    let v: IdResponse = c.call_as(Method::POST, &format!("/commit?{q}"), Some(&json!({}))).await?;
    println!("{}", v.id);
    Ok(0)
}

async fn logs(c: &Client, a: LogsArgs) -> Result<i32> {
    let info: ContainerInspect = c.get(&format!("/containers/{}/json", enc(&a.container))).await?;
    let tty = info.config.tty;
    let mut path = format!(
        "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}&details={}&tail={}",
        enc(&a.container),
        a.follow as u8,
        a.timestamps as u8,
        a.details as u8,
        enc(&a.tail)
    );
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(t) = v {
            path.push_str(&format!("&{k}={}", enc(&super::timestamp_arg(t)?)));
        }
    }
    let resp = Client::check(c.send(Method::GET, &path, crate::client::empty(), None).await?).await?;
    use futures_util::TryStreamExt;
    let stream = http_body_util::BodyStream::new(resp.into_body())
        .try_filter_map(|f| async move { Ok(f.into_data().ok()) })
        .map_err(std::io::Error::other);
    crate::tty::copy_output(tokio_util::io::StreamReader::new(Box::pin(stream)), tty).await?;
    Ok(0)
}

async fn port(c: &Client, a: PortArgs) -> Result<i32> {
    let info: ContainerInspect = c.get(&format!("/containers/{}/json", enc(&a.container))).await?;
    let ports = info.network_settings.ports;
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| {
        let (n, p) = k.split_once('/').unwrap_or((k, "tcp"));
        (n.parse::<u32>().unwrap_or(0), p.to_string())
    });
    let fmt_binding = |b: &PortBinding| {
        let (ip, port) = (b.host_ip.as_str(), b.host_port.as_str());
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{}:{port}", if ip.is_empty() { "0.0.0.0" } else { ip })
        }
    };
    if let Some(want) = &a.port {
        let key = if want.contains('/') { want.clone() } else { format!("{want}/tcp") };
        match ports.get(&key).and_then(Option::as_ref) {
            Some(list) if !list.is_empty() => {
                for b in list {
                    println!("{}", fmt_binding(b));
                }
                Ok(0)
            }
            _ => bail!("Error: No public port '{key}' published for {}", a.container),
        }
    } else {
        for k in keys {
            for b in ports[k].iter().flatten() {
                println!("{k} -> {}", fmt_binding(b));
            }
        }
        Ok(0)
    }
}

async fn update(c: &Client, a: UpdateArgs) -> Result<i32> {
    use crate::units::parse_bytes;
    let mut body = Map::new();
    let mut put = |k: &str, v: Value| {
        body.insert(k.to_string(), v);
    };
    if let Some(v) = a.blkio_weight {
        put("BlkioWeight", json!(v));
    }
    if let Some(v) = a.cpu_period {
        put("CpuPeriod", json!(v));
    }
    if let Some(v) = a.cpu_quota {
        put("CpuQuota", json!(v));
    }
    if let Some(v) = a.cpu_shares {
        put("CpuShares", json!(v));
    }
    if let Some(v) = a.cpus {
        put("NanoCpus", json!((v * 1e9) as i64));
    }
    if let Some(v) = &a.cpuset_cpus {
        put("CpusetCpus", json!(v));
    }
    if let Some(v) = &a.cpuset_mems {
        put("CpusetMems", json!(v));
    }
    if let Some(v) = &a.memory {
        put("Memory", json!(parse_bytes(v)?));
    }
    if let Some(v) = &a.memory_reservation {
        put("MemoryReservation", json!(parse_bytes(v)?));
    }
    if let Some(v) = &a.memory_swap {
        put("MemorySwap", json!(if v == "-1" { -1 } else { parse_bytes(v)? }));
    }
    if let Some(v) = a.pids_limit {
        put("PidsLimit", json!(v));
    }
    if let Some(r) = &a.restart {
        let (name, n) = r.split_once(':').unwrap_or((r, "0"));
        put("RestartPolicy", json!({"Name": name, "MaximumRetryCount": n.parse::<i64>().unwrap_or(0)}));
    }
    let body = Value::Object(body);
    Ok(each(&a.containers, |n| {
        let c = c.clone();
        let body = body.clone();
        async move {
            let v: UpdateResponse =
                c.call_as(Method::POST, &format!("/containers/{}/update", enc(&n)), Some(&body)).await?;
            for w in v.warnings {
                eprintln!("{w}");
            }
            Ok(())
        }
    })
    .await)
}

/// docker's ps PORTS column: `0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 443/tcp`.
fn display_ports(ports: &[Port]) -> String {
    let mut out: Vec<(u16, String)> = Vec::new();
    for p in ports {
        let private = p.private_port;
        let proto = if p.kind.is_empty() { "tcp" } else { p.kind.as_str() };
        let s = match Some(p.public_port).filter(|n| *n > 0) {
            Some(public) => {
                let ip = &p.ip;
                let ip = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
                format!("{ip}:{public}->{private}/{proto}")
            }
            None => format!("{private}/{proto}"),
        };
        if !out.iter().any(|(_, o)| *o == s) {
            out.push((private, s));
        }
    }
    out.sort();
    out.into_iter().map(|(_, s)| s).collect::<Vec<_>>().join(", ")
}

/// One row of `docker ps` as docker's ContainerContext exposes it to `--format`.
fn ps_row(i: &Summary, trunc: bool) -> Value {
    let (id, cmd) = (i.id.as_str(), i.command.as_str());
    let names: Vec<String> =
        i.names.iter().map(|n| n.trim_start_matches('/').to_string()).filter(|n| !trunc || !n.contains('/')).collect();
    let image = if trunc && i.image.starts_with("sha256:") { short(&i.image) } else { i.image.clone() };
    let mut labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    let created = i.created;
    let networks: Vec<String> = i.network_settings.networks.keys().cloned().collect();
    let mounts: Vec<String> = i
        .mounts
        .iter()
        .map(|m| {
            let n = m.name.as_deref().filter(|s| !s.is_empty()).unwrap_or(&m.source);
            if trunc {
                ellipsis(n, 15)
            } else {
                n.to_string()
            }
        })
        .collect();
    let rw = human_size_prec(i.sizes.size_rw.unwrap_or(0) as f64, 3);
    let size = match i.sizes.size_root_fs.filter(|r| *r > 0) {
        Some(root) => format!("{rw} (virtual {})", human_size_prec(root as f64, 3)),
        None => rw,
    };
    let command = if trunc { ellipsis(cmd, 20) } else { cmd.to_string() };
    json!({
        "ID": if trunc { short(id) } else { id.to_string() },
        "Image": image,
        "Command": serde_json::to_string(&command).unwrap_or_default(),
        "CreatedAt": chrono::DateTime::from_timestamp(created, 0).map(|d| d.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
        "RunningFor": ago(created),
        "Ports": display_ports(&i.ports),
        "State": i.state,
        "Status": i.status,
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "Platform": Value::Null,
        "LocalVolumes": i.mounts.iter().filter(|m| m.driver.as_deref() == Some("local")).count().to_string(),
    })
}

pub const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

pub async fn ps(c: &Client, a: &PsArgs) -> Result<String> {
    let limit = if a.latest { 1 } else { a.last };
    let mut path = format!(
        "/containers/json?all={}&size={}&filters={}",
        (a.all || limit > 0) as u8,
        a.size as u8,
        enc(&kv_filters(&a.filter).to_string())
    );
    if limit > 0 {
        path.push_str(&format!("&limit={limit}"));
    }
    let list: Vec<Summary> = c.get(&path).await?;
    let trunc = !a.no_trunc;
    let rows: Vec<Value> = list.iter().map(|i| ps_row(i, trunc)).collect();
    if a.quiet && a.format.format.is_none() {
        return Ok(rows.iter().map(|r| format!("{}\n", r["ID"].as_str().unwrap_or(""))).collect());
    }
    let mut default =
        "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}"
            .to_string();
    if a.size {
        default.push_str("\\t{{.Size}}");
    }
    Format::parse(a.format.format.as_deref())?.render(&rows, PS_HEADERS, &default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_column_reads_as_docker() {
        let p: Vec<Port> = serde_json::from_value(json!([
            {"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0", "Type": "tcp"},
            {"PrivatePort": 80, "PublicPort": 8080, "IP": "::", "Type": "tcp"},
            {"PrivatePort": 443, "Type": "tcp"}
        ]))
        .unwrap();
        assert_eq!(display_ports(&p), "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 443/tcp");
    }
}
