//! `run` and `create` flags, turned into the create body exactly as the docker CLI builds it
//! (cli/command/container/opts.go): Config, HostConfig and NetworkingConfig.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};

use crate::units::{parse_bytes, parse_duration};

#[derive(Args, Debug, Clone, Default)]
pub struct ContainerOpts {
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long = "cgroupns")]
    pub cgroupns: Option<String>,
    /// Write the container ID to the file
    #[arg(long = "cidfile")]
    pub cidfile: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long = "cpus")]
    pub cpus: Option<f64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Add a host device to the container
    #[arg(long = "device")]
    pub device: Vec<String>,
    /// Limit read rate (bytes per second) from a device
    #[arg(long = "device-read-bps")]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long = "device-write-bps")]
    pub device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device
    #[arg(long = "device-read-iops")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device
    #[arg(long = "device-write-iops")]
    pub device_write_iops: Vec<String>,
    /// Block IO weight (relative device weight)
    #[arg(long = "blkio-weight-device")]
    pub blkio_weight_device: Vec<String>,
    /// Set custom DNS servers
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Container NIS domain name
    #[arg(long = "domainname")]
    pub domainname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long = "entrypoint")]
    pub entrypoint: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Expose a port or a range of ports
    #[arg(long = "expose")]
    pub expose: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h)
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Container host name
    #[arg(short = 'h', long = "hostname")]
    pub hostname: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long = "init")]
    pub init: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long = "ip6")]
    pub ip6: Option<String>,
    /// IPC mode to use
    #[arg(long = "ipc")]
    pub ipc: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    pub label_file: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long = "memory")]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long = "memory-swappiness")]
    pub memory_swappiness: Option<i64>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Assign a name to the container
    #[arg(long = "name")]
    pub name: Option<String>,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// PID namespace to use
    #[arg(long = "pid")]
    pub pid: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Set platform if server is multi-platform capable
    #[arg(long = "platform")]
    pub platform: Option<String>,
    /// Give extended privileges to this container
    #[arg(long = "privileged")]
    pub privileged: bool,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long = "pull", default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Restart policy to apply when a container exits
    #[arg(long = "restart", default_value = "no")]
    pub restart: String,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long = "rm")]
    pub rm: bool,
    /// Runtime to use for this container
    #[arg(long = "runtime")]
    pub runtime: Option<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Storage driver options for the container
    #[arg(long = "storage-opt")]
    pub storage_opt: Vec<String>,
    /// Sysctl options
    #[arg(long = "sysctl")]
    pub sysctl: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Ulimit options
    #[arg(long = "ulimit")]
    pub ulimit: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// User namespace to use
    #[arg(long = "userns")]
    pub userns: Option<String>,
    /// UTS namespace to use
    #[arg(long = "uts")]
    pub uts: Option<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Optional volume driver for the container
    #[arg(long = "volume-driver")]
    pub volume_driver: Option<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `KEY=VALUE` (a bare `KEY` is `KEY=`).
pub(crate) fn kv(s: &str) -> (String, String) {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    (k.to_string(), v.to_string())
}

/// `-e KEY` without a value takes KEY from our environment (and is dropped if unset), as docker does.
fn env_entry(s: &str) -> Option<String> {
    if s.contains('=') {
        return Some(s.to_string());
    }
    std::env::var(s).ok().map(|v| format!("{s}={v}"))
}

/// A `--env-file`/`--label-file`: one entry a line, `#` comments and blank lines skipped.
fn read_lines_file(path: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("open {path}"))?;
    Ok(text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.to_string())
        .collect())
}

/// One `-p` spec expanded into (container port/proto, host ip, host port) bindings.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, String, String)>> {
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, p.to_string()),
        None => (spec, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        bail!("invalid proto: {proto}");
    }
    // An IPv6 host address is bracketed: [::1]:80:80.
    let (ip, rest) = match body.strip_prefix('[') {
        Some(b) => {
            let (ip, r) = b.split_once("]:").ok_or_else(|| anyhow!("invalid IP address: {body}"))?;
            (ip.to_string(), r.to_string())
        }
        None => {
            let parts: Vec<&str> = body.split(':').collect();
            match parts.len() {
                1 | 2 => (String::new(), body.to_string()),
                3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
                _ => bail!("invalid port format: {spec}"),
            }
        }
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        bail!("invalid IP address: {ip}");
    }
    let (host, ctr) = match rest.split_once(':') {
        Some((h, c)) => (h.to_string(), c.to_string()),
        None => (String::new(), rest.clone()),
    };
    let range = |s: &str| -> Result<(u16, u16)> {
        let bad = || anyhow!("invalid containerPort: {s}");
        match s.split_once('-') {
            Some((a, b)) => Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)),
            None => {
                let p = s.parse().map_err(|_| bad())?;
                Ok((p, p))
            }
        }
    };
    let (c0, c1) = range(&ctr)?;
    if c0 == 0 || c1 < c0 {
        bail!("invalid containerPort: {ctr}");
    }
    let hosts: Vec<String> = if host.is_empty() {
        vec![String::new(); (c1 - c0 + 1) as usize]
    } else {
        let (h0, h1) = range(&host).map_err(|_| anyhow!("invalid hostPort: {host}"))?;
        if h1 - h0 != c1 - c0 {
            // docker allows a host range for one container port: the daemon picks from it.
            if c0 == c1 {
                vec![host.clone()]
            } else {
                bail!("invalid ranges specified for container and host Ports: {ctr} and {host}");
            }
        } else {
            (h0..=h1).map(|p| p.to_string()).collect()
        }
    };
    Ok((c0..=c1).zip(hosts).map(|(c, h)| (format!("{c}/{proto}"), ip.clone(), h)).collect())
}

/// `--mount type=bind,source=/a,target=/b,readonly` as a HostConfig.Mounts entry.
fn parse_mount(spec: &str) -> Result<Value> {
    let mut m = json!({"Type": "volume"});
    let mut tmpfs = Map::new();
    let mut bind = Map::new();
    let mut vol = Map::new();
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let truthy = |v: Option<&str>| -> Result<bool> {
            match v.unwrap_or("true") {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                o => bail!("invalid value for {k}: {o}"),
            }
        };
        let need = |v: Option<&str>| {
            v.map(String::from).ok_or_else(|| anyhow!("invalid field '{field}' must be a key=value pair"))
        };
        match k.as_str() {
            "type" => m["Type"] = json!(need(v)?),
            "source" | "src" => m["Source"] = json!(need(v)?),
            "target" | "destination" | "dst" => m["Target"] = json!(need(v)?),
            "readonly" | "ro" => m["ReadOnly"] = json!(truthy(v)?),
            "consistency" => m["Consistency"] = json!(need(v)?),
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(need(v)?));
            }
            "bind-recursive" => {}
            "volume-nocopy" => {
                vol.insert("NoCopy".into(), json!(truthy(v)?));
            }
            "volume-label" => {
                let (lk, lv) = kv(&need(v)?);
                vol.entry("Labels").or_insert_with(|| json!({}))[lk] = json!(lv);
            }
            "volume-driver" => {
                vol.insert("DriverConfig".into(), json!({"Name": need(v)?}));
            }
            "tmpfs-size" => {
                tmpfs.insert("SizeBytes".into(), json!(parse_bytes(&need(v)?)?));
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(&need(v)?, 8).map_err(|_| anyhow!("invalid tmpfs-mode"))?;
                tmpfs.insert("Mode".into(), json!(mode));
            }
            _ => bail!("unexpected key '{k}' in '{field}'"),
        }
    }
    if m["Target"].is_null() {
        bail!("target is required");
    }
    if !bind.is_empty() {
        m["BindOptions"] = Value::Object(bind);
    }
    if !vol.is_empty() {
        m["VolumeOptions"] = Value::Object(vol);
    }
    if !tmpfs.is_empty() {
        m["TmpfsOptions"] = Value::Object(tmpfs);
    }
    Ok(m)
}

/// `--security-opt seccomp=<file>` sends the profile itself, as the docker CLI does.
fn security_opt(o: &str) -> Result<String> {
    let (k, v) = o.split_once(['=', ':']).unwrap_or((o, ""));
    if k == "seccomp" && v != "unconfined" && !v.is_empty() {
        let raw = std::fs::read(v).with_context(|| format!("opening seccomp profile ({v}) failed"))?;
        let parsed: Value = serde_json::from_slice(&raw).with_context(|| format!("parsing seccomp profile {v}"))?;
        return Ok(format!("seccomp={}", serde_json::to_string(&parsed)?));
    }
    Ok(if o.contains('=') || !o.contains(':') { o.to_string() } else { format!("{k}={v}") })
}

/// `host:ip` or `host=ip` (docker accepts both) as `host:ip`.
fn extra_host(h: &str) -> String {
    match h.split_once('=') {
        Some((n, ip)) => format!("{n}:{ip}"),
        None => h.to_string(),
    }
}

impl ContainerOpts {
    /// The create body (Config with HostConfig and NetworkingConfig), as docker sends it.
    /// `attach_default` is what `run` attaches without `-a`: stdout and stderr unless detached.
    pub fn to_body(&self, detach: bool) -> Result<Value> {
        let mut env: Vec<String> = Vec::new();
        for f in &self.env_file {
            env.extend(read_lines_file(f)?.iter().filter_map(|l| env_entry(l)));
        }
        env.extend(self.env.iter().filter_map(|e| env_entry(e)));
        let mut labels = Map::new();
        for f in &self.label_file {
            for l in read_lines_file(f)? {
                let (k, v) = kv(&l);
                labels.insert(k, json!(v));
            }
        }
        for l in &self.label {
            let (k, v) = kv(l);
            labels.insert(k, json!(v));
        }

        let mut exposed = Map::new();
        let mut bindings = Map::new();
        for p in &self.publish {
            for (port, ip, host) in parse_publish(p)? {
                exposed.insert(port.clone(), json!({}));
                let list = bindings.entry(port).or_insert_with(|| json!([]));
                list.as_array_mut().expect("array").push(json!({"HostIp": ip, "HostPort": host}));
            }
        }
        for e in &self.expose {
            let (body, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            let (a, b) = body.split_once('-').unwrap_or((body, body));
            let (a, b): (u16, u16) = (
                a.parse().map_err(|_| anyhow!("invalid range format for --expose: {e}"))?,
                b.parse().map_err(|_| anyhow!("invalid range format for --expose: {e}"))?,
            );
            for p in a..=b {
                exposed.insert(format!("{p}/{proto}"), json!({}));
            }
        }

        let mut binds = Vec::new();
        let mut volumes = Map::new();
        for v in &self.volume {
            let parts: Vec<&str> = v.split(':').collect();
            match parts.len() {
                1 => {
                    if !v.starts_with('/') {
                        bail!("invalid volume specification: '{v}': invalid mount config for type \"volume\": invalid mount path: '{v}' mount path must be absolute");
                    }
                    volumes.insert(v.clone(), json!({}));
                }
                2 | 3 => binds.push(v.clone()),
                _ => bail!("invalid volume specification: '{v}'"),
            }
        }
        let mounts = self.mount.iter().map(|m| parse_mount(m)).collect::<Result<Vec<_>>>()?;

        let mut tmpfs = Map::new();
        for t in &self.tmpfs {
            let (p, o) = t.split_once(':').unwrap_or((t, ""));
            tmpfs.insert(p.to_string(), json!(o));
        }
        let mut sysctls = Map::new();
        for s in &self.sysctl {
            let (k, v) = s.split_once('=').ok_or_else(|| anyhow!("sysctl '{s}' is not allowed: must be key=value"))?;
            sysctls.insert(k.to_string(), json!(v));
        }
        let mut ulimits = Vec::new();
        for u in &self.ulimit {
            let (name, limits) = u.split_once('=').ok_or_else(|| anyhow!("invalid ulimit argument: {u}"))?;
            let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
            let n = |s: &str| s.parse::<i64>().map_err(|_| anyhow!("invalid ulimit argument: {u}"));
            ulimits.push(json!({"Name": name, "Soft": n(soft)?, "Hard": n(hard)?}));
        }
        let mut devices = Vec::new();
        for d in &self.device {
            let parts: Vec<&str> = d.split(':').collect();
            let (host, ctr, perms) = match parts.as_slice() {
                [h] => (*h, *h, "rwm"),
                [h, c] if c.chars().all(|ch| "rwm".contains(ch)) && !c.starts_with('/') => (*h, *h, *c),
                [h, c] => (*h, *c, "rwm"),
                [h, c, p] => (*h, *c, *p),
                _ => bail!("invalid device specification: {d}"),
            };
            devices.push(json!({"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}));
        }
        // `PATH:RATE` (bytes with a unit for bps, a number for iops; a weight for --blkio-weight-device).
        let throttles = |list: &[String], bytes: bool, field: &str| -> Result<Vec<Value>> {
            list.iter()
                .map(|t| {
                    let (path, rate) = t.rsplit_once(':').ok_or_else(|| anyhow!("bad format: {t}"))?;
                    let n: i64 = if bytes {
                        parse_bytes(rate)?
                    } else {
                        rate.parse().map_err(|_| {
                            anyhow!("invalid rate for device: {t}. The correct format is <device-path>:<number>")
                        })?
                    };
                    Ok(json!({"Path": path, field: n}))
                })
                .collect()
        };
        let read_bps = throttles(&self.device_read_bps, true, "Rate")?;
        let write_bps = throttles(&self.device_write_bps, true, "Rate")?;
        let read_iops = throttles(&self.device_read_iops, false, "Rate")?;
        let write_iops = throttles(&self.device_write_iops, false, "Rate")?;
        let weight_device = throttles(&self.blkio_weight_device, false, "Weight")?;
        let restart = match self.restart.split_once(':') {
            Some(("on-failure", n)) => {
                json!({"Name": "on-failure", "MaximumRetryCount": n.parse::<i64>().map_err(|_| anyhow!("invalid restart policy format: maximum retry count must be an integer"))?})
            }
            Some((p, _)) => bail!(
                "invalid restart policy format: {p}: maximum retry count cannot be used with restart policy '{p}'"
            ),
            None => match self.restart.as_str() {
                "" | "no" => json!({"Name": "no", "MaximumRetryCount": 0}),
                p @ ("always" | "unless-stopped" | "on-failure") => json!({"Name": p, "MaximumRetryCount": 0}),
                p => bail!("invalid restart policy format: unknown policy '{p}'"),
            },
        };
        if self.rm && !matches!(self.restart.as_str(), "" | "no") {
            bail!("Conflicting options: --restart and --rm");
        }
        let health = if self.no_healthcheck {
            if self.health_cmd.is_some() {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            json!({"Test": ["NONE"]})
        } else {
            let d = |s: &Option<String>, what: &str| -> Result<i64> {
                s.as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map(|v| v.unwrap_or(0))
                    .with_context(|| format!("--{what}"))
            };
            let any = self.health_cmd.is_some()
                || self.health_interval.is_some()
                || self.health_timeout.is_some()
                || self.health_retries.is_some()
                || self.health_start_period.is_some();
            if any {
                let test = match &self.health_cmd {
                    Some(c) => json!(["CMD-SHELL", c]),
                    None => Value::Null,
                };
                json!({
                    "Test": test,
                    "Interval": d(&self.health_interval, "health-interval")?,
                    "Timeout": d(&self.health_timeout, "health-timeout")?,
                    "StartPeriod": d(&self.health_start_period, "health-start-period")?,
                    "Retries": self.health_retries.unwrap_or(0),
                })
            } else {
                Value::Null
            }
        };
        let std_attach = |s: &str| {
            if self.attach.is_empty() {
                match s {
                    "stdin" => self.interactive && !detach,
                    _ => !detach,
                }
            } else {
                self.attach.iter().any(|a| a.eq_ignore_ascii_case(s))
            }
        };
        let bytes = |s: &Option<String>| s.as_deref().map(parse_bytes).transpose();
        let memory_swap = match self.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            Some(s) => Some(parse_bytes(s)?),
            None => None,
        };
        let network = self.network.clone().unwrap_or_else(|| "default".into());
        let mut endpoints = Map::new();
        if !self.network_alias.is_empty() || self.ip.is_some() || self.ip6.is_some() || self.mac_address.is_some() {
            let mut ep = json!({"Aliases": self.network_alias});
            let mut ipam = Map::new();
            if let Some(ip) = &self.ip {
                ipam.insert("IPv4Address".into(), json!(ip));
            }
            if let Some(ip) = &self.ip6 {
                ipam.insert("IPv6Address".into(), json!(ip));
            }
            if !ipam.is_empty() {
                ep["IPAMConfig"] = Value::Object(ipam);
            }
            if let Some(m) = &self.mac_address {
                ep["MacAddress"] = json!(m);
            }
            endpoints.insert(network.clone(), ep);
        }
        let mut log_config = Map::new();
        for o in &self.log_opt {
            let (k, v) = kv(o);
            log_config.insert(k, json!(v));
        }
        let security_opt = self.security_opt.iter().map(|o| security_opt(o)).collect::<Result<Vec<_>>>()?;
        let storage_opt: Map<String, Value> =
            self.storage_opt.iter().map(|o| kv(o)).map(|(k, v)| (k, json!(v))).collect();
        let cmd = if self.cmd.is_empty() { Value::Null } else { json!(self.cmd) };
        let entrypoint = match &self.entrypoint {
            Some(e) if e.is_empty() => json!([""]),
            Some(e) => json!([e]),
            None => Value::Null,
        };
        let opt_str = |s: &Option<String>| s.clone().unwrap_or_default();
        let host_config = json!({
            "Binds": binds,
            "ContainerIDFile": opt_str(&self.cidfile),
            "LogConfig": {"Type": opt_str(&self.log_driver), "Config": log_config},
            "NetworkMode": network,
            "PortBindings": bindings,
            "RestartPolicy": restart,
            "AutoRemove": self.rm,
            "VolumeDriver": opt_str(&self.volume_driver),
            "VolumesFrom": self.volumes_from,
            "CapAdd": self.cap_add,
            "CapDrop": self.cap_drop,
            "CgroupnsMode": opt_str(&self.cgroupns),
            "Dns": self.dns,
            "DnsOptions": self.dns_option,
            "DnsSearch": self.dns_search,
            "ExtraHosts": self.add_host.iter().map(|h| extra_host(h)).collect::<Vec<_>>(),
            "GroupAdd": self.group_add,
            "IpcMode": opt_str(&self.ipc),
            "OomScoreAdj": self.oom_score_adj.unwrap_or(0),
            "PidMode": opt_str(&self.pid),
            "Privileged": self.privileged,
            "PublishAllPorts": self.publish_all,
            "ReadonlyRootfs": self.read_only,
            "SecurityOpt": security_opt,
            "StorageOpt": storage_opt,
            "Tmpfs": tmpfs,
            "UTSMode": opt_str(&self.uts),
            "UsernsMode": opt_str(&self.userns),
            "ShmSize": bytes(&self.shm_size)?.unwrap_or(0),
            "Sysctls": sysctls,
            "Runtime": opt_str(&self.runtime),
            "Init": if self.init { json!(true) } else { Value::Null },
            "CpuShares": self.cpu_shares.unwrap_or(0),
            "Memory": bytes(&self.memory)?.unwrap_or(0),
            "NanoCpus": self.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
            "CgroupParent": opt_str(&self.cgroup_parent),
            "BlkioWeight": self.blkio_weight.unwrap_or(0),
            "BlkioWeightDevice": weight_device,
            "BlkioDeviceReadBps": read_bps,
            "BlkioDeviceWriteBps": write_bps,
            "BlkioDeviceReadIOps": read_iops,
            "BlkioDeviceWriteIOps": write_iops,
            "CpuPeriod": self.cpu_period.unwrap_or(0),
            "CpuQuota": self.cpu_quota.unwrap_or(0),
            "CpusetCpus": opt_str(&self.cpuset_cpus),
            "CpusetMems": opt_str(&self.cpuset_mems),
            "Devices": devices,
            "MemoryReservation": bytes(&self.memory_reservation)?.unwrap_or(0),
            "MemorySwap": memory_swap.unwrap_or(0),
            "MemorySwappiness": self.memory_swappiness.map(|v| json!(v)).unwrap_or(Value::Null),
            "OomKillDisable": self.oom_kill_disable,
            "PidsLimit": self.pids_limit.map(|v| json!(v)).unwrap_or(Value::Null),
            "Ulimits": ulimits,
            "Mounts": mounts,
        });
        let mut body = json!({
            "Hostname": opt_str(&self.hostname),
            "Domainname": opt_str(&self.domainname),
            "User": opt_str(&self.user),
            "AttachStdin": std_attach("stdin"),
            "AttachStdout": std_attach("stdout"),
            "AttachStderr": std_attach("stderr"),
            "ExposedPorts": exposed,
            "Tty": self.tty,
            "OpenStdin": self.interactive,
            "StdinOnce": self.interactive && std_attach("stdin"),
            "Env": env,
            "Cmd": cmd,
            "Image": self.image,
            "Volumes": volumes,
            "WorkingDir": opt_str(&self.workdir),
            "Entrypoint": entrypoint,
            "Labels": labels,
            "HostConfig": host_config,
            "NetworkingConfig": {"EndpointsConfig": endpoints},
        });
        if !health.is_null() {
            body["Healthcheck"] = health;
        }
        if let Some(s) = &self.stop_signal {
            body["StopSignal"] = json!(s);
        }
        if let Some(t) = self.stop_timeout {
            body["StopTimeout"] = json!(t);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_expand_like_docker() {
        assert_eq!(parse_publish("8080:80").unwrap(), vec![("80/tcp".into(), "".into(), "8080".into())]);
        assert_eq!(parse_publish("127.0.0.1::53/udp").unwrap(), vec![("53/udp".into(), "127.0.0.1".into(), "".into())]);
        assert_eq!(parse_publish("[::1]:81:80").unwrap(), vec![("80/tcp".into(), "::1".into(), "81".into())]);
        assert_eq!(parse_publish("8000-8001:80-81").unwrap().len(), 2);
        assert!(parse_publish("80:90:100:1").is_err());
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("80/foo").is_err());
    }

    #[test]
    fn flags_become_docker_create_body() {
        let o = ContainerOpts {
            image: "busybox".into(),
            memory: Some("64m".into()),
            cpus: Some(1.5),
            restart: "on-failure:3".into(),
            volume: vec!["/anon".into(), "data:/data:ro".into()],
            mount: vec!["type=tmpfs,target=/t,tmpfs-size=1m".into()],
            health_cmd: Some("true".into()),
            health_interval: Some("2s".into()),
            ulimit: vec!["nofile=10:20".into()],
            pull: "missing".into(),
            ..Default::default()
        };
        let b = o.to_body(false).unwrap();
        assert_eq!(b["HostConfig"]["Memory"], 64 << 20);
        assert_eq!(b["HostConfig"]["NanoCpus"], 1_500_000_000i64);
        assert_eq!(b["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
        assert_eq!(b["Volumes"]["/anon"], json!({}));
        assert_eq!(b["HostConfig"]["Binds"], json!(["data:/data:ro"]));
        assert_eq!(b["HostConfig"]["Mounts"][0]["TmpfsOptions"]["SizeBytes"], 1 << 20);
        assert_eq!(b["Healthcheck"]["Interval"], 2_000_000_000i64);
        assert_eq!(b["HostConfig"]["Ulimits"][0], json!({"Name": "nofile", "Soft": 10, "Hard": 20}));
        assert_eq!(b["AttachStdout"], true);
        let bad = ContainerOpts { restart: "always".into(), rm: true, ..o };
        assert!(bad.to_body(false).is_err());
    }
}
