//! rename, top and stats: what `docker rename`, `docker top` and `docker stats` read.
//!
//! Figures come from the container's cgroup (v1 controllers or the unified hierarchy) and, for
//! the network, from `/proc/<init pid>/net/dev` inside its namespace.

use std::collections::BTreeMap;

use berth_api::stats::{
    BlkioStats, CpuStats, CpuUsage, MemoryStats, NetworkStats, PidsStats, Stats, StorageStats, ThrottlingData,
};
use std::path::{Path, PathBuf};

use berth_types::{validate_name, Error, Result};

use super::{blocking, ContainerService};

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn kv(p: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse::<u64>().ok()?))
        })
        .collect()
}

/// Host CPU time in nanoseconds, as Docker's `system_cpu_usage` (from /proc/stat's cpu line).
fn system_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let jiffies: u64 =
        s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse::<u64>().ok()).sum();
    jiffies * (1_000_000_000 / 100)
}

pub(super) struct Cgroup {
    v1: bool,
    pub(super) rel: String,
}

impl Cgroup {
    pub(super) fn v1(&self) -> bool {
        self.v1
    }

    pub(super) fn path(&self, controller: &str) -> PathBuf {
        if self.v1 {
            Path::new("/sys/fs/cgroup").join(controller).join(&self.rel)
        } else {
            Path::new("/sys/fs/cgroup").join(&self.rel)
        }
    }

    /// Whether the freezer holds the container's processes (v1 `freezer.state`, v2 `cgroup.freeze`).
    pub(super) fn frozen(&self) -> bool {
        if self.v1 {
            std::fs::read_to_string(self.path("freezer").join("freezer.state")).is_ok_and(|s| s.trim() != "THAWED")
        } else {
            std::fs::read_to_string(self.path("").join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        }
    }

    /// Thaws the container's processes.
    pub(super) fn thaw(&self) -> std::io::Result<()> {
        if self.v1 {
            std::fs::write(self.path("freezer").join("freezer.state"), "THAWED")
        } else {
            std::fs::write(self.path("").join("cgroup.freeze"), "0")
        }
    }

    /// `--oom-kill-disable` on cgroup v1 (`memory.oom_control`; v2 has no such switch). Set by
    /// berthd because libcontainer applies every memory setting but this one.
    pub(super) fn disable_oom_killer(&self) -> std::io::Result<()> {
        std::fs::write(self.path("memory").join("memory.oom_control"), "1")
    }

    pub(super) fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path("pids").join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// One sample of a running container: its cgroup's CPU, memory and pids counters (v1 or v2) and
/// the interfaces of its network namespace.
fn sample(cg: &Cgroup, pid: i32) -> Stats {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (cpu_usage, mut memory, pids) = if cg.v1 {
        let acct = cg.path("cpuacct");
        let percpu: Vec<u64> = std::fs::read_to_string(acct.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let st = kv(&acct.join("cpuacct.stat"));
        let tick = |k: &str| st.get(k).copied().unwrap_or(0) * 10_000_000;
        let mem = cg.path("memory");
        (
            CpuUsage {
                total_usage: read_u64(&acct.join("cpuacct.usage")).unwrap_or(0),
                percpu_usage: Some(percpu),
                usage_in_kernelmode: tick("system"),
                usage_in_usermode: tick("user"),
            },
            MemoryStats {
                usage: Some(read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0)),
                max_usage: Some(read_u64(&mem.join("memory.max_usage_in_bytes")).unwrap_or(0)),
                stats: Some(kv(&mem.join("memory.stat"))),
                limit: Some(read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(0)),
            },
            PidsStats {
                current: Some(read_u64(&cg.path("pids").join("pids.current")).unwrap_or(0)),
                limit: read_u64(&cg.path("pids").join("pids.max")),
            },
        )
    } else {
        let base = cg.path("");
        let st = kv(&base.join("cpu.stat"));
        let us = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
        (
            CpuUsage {
                total_usage: us("usage_usec"),
                percpu_usage: None,
                usage_in_kernelmode: us("system_usec"),
                usage_in_usermode: us("user_usec"),
            },
            MemoryStats {
                usage: Some(read_u64(&base.join("memory.current")).unwrap_or(0)),
                max_usage: None,
                stats: Some(kv(&base.join("memory.stat"))),
                limit: Some(read_u64(&base.join("memory.max")).unwrap_or(0)),
            },
            PidsStats {
                current: Some(read_u64(&base.join("pids.current")).unwrap_or(0)),
                limit: read_u64(&base.join("pids.max")),
            },
        )
    };
    let mut networks = BTreeMap::new();
    for l in std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default().lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else { continue };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if f.len() >= 12 {
            let n = NetworkStats {
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            };
            networks.insert(name.to_string(), n);
        }
    }
    if memory.limit.is_none_or(|l| l == 0 || l > 1 << 62) {
        // No limit: Docker reports the host's memory.
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        memory.limit = Some(total * 1024);
    }
    Stats {
        read: now,
        pids_stats: pids,
        cpu_stats: CpuStats {
            cpu_usage,
            system_cpu_usage: Some(system_cpu_ns()),
            online_cpus: Some(u32::try_from(ncpu).unwrap_or(u32::MAX)),
            throttling_data: ThrottlingData::default(),
        },
        memory_stats: memory,
        networks: Some(networks),
        ..not_running()
    }
}

/// The sample of a container that is not running: zero time, no counters.
fn not_running() -> Stats {
    Stats {
        name: String::new(),
        id: String::new(),
        read: berth_api::ZERO_TIME.into(),
        preread: berth_api::ZERO_TIME.into(),
        os_type: "linux".into(),
        pids_stats: PidsStats::default(),
        blkio_stats: BlkioStats::default(),
        num_procs: 0,
        storage_stats: StorageStats::default(),
        cpu_stats: CpuStats::default(),
        precpu_stats: CpuStats::default(),
        memory_stats: MemoryStats::default(),
        networks: None,
    }
}

impl ContainerService {
    pub(super) fn cgroup(&self, rec: &super::record::ContainerRecord) -> Cgroup {
        Cgroup {
            v1: crate::system::cgroup_version() == "1",
            rel: self.cgroups_path(rec).trim_start_matches('/').to_string(),
        }
    }

    /// `POST /containers/{id}/rename`.
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let e = self.get(name)?;
        let new_name = validate_name(new_name)?.to_string();
        let old = e.record().name;
        if old == new_name {
            return Err(Error::invalid("Renaming a container with the same name as its current name"));
        }
        let id = e.id();
        self.reserve_name(&new_name, &id)?;
        e.update(|r| r.name = new_name.clone());
        self.release_name(&old, &id);
        let rec = e.record();
        self.persist(&rec).await?;
        self.publish("rename", &rec, &[("oldName", format!("/{old}"))]);
        if rec.state.running() {
            self.refresh_hosts(&rec).await;
        }
        Ok(())
    }

    /// `GET /containers/{id}/top`: the host's `ps` output, filtered to the container's processes.
    pub async fn top(&self, name: &str, ps_args: &str) -> Result<berth_api::container::TopResponse> {
        let e = self.get(name)?;
        let rec = e.record();
        if !rec.state.running() {
            return Err(Error::conflict(format!("Container {} is not running", rec.id)));
        }
        let cg = self.cgroup(&rec);
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(String::from).collect()
        };
        blocking(move || {
            let pids = cg.pids();
            // The arguments are the client's: ps refusing them (or a NUL in them) is a bad request.
            let out = std::process::Command::new("ps").args(&args).output().map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidInput => Error::invalid(format!("Error running ps: {e}")),
                _ => Error::internal(format!("Error running ps: {e}")),
            })?;
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr);
                let why = why.lines().next().unwrap_or("").trim();
                return Err(Error::invalid(format!("Error running ps: {why}")));
            }
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let titles: Vec<&str> = header.split_whitespace().collect();
            let pid_col = titles
                .iter()
                .position(|t| *t == "PID")
                .ok_or_else(|| Error::invalid("Couldn't find PID field in ps output"))?;
            let n = titles.len();
            let procs: Vec<Vec<String>> = lines
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let pid: i32 = f.get(pid_col)?.parse().ok()?;
                    if !pids.contains(&pid) {
                        return None;
                    }
                    let mut row: Vec<String> = f.iter().take(n - 1).map(|s| s.to_string()).collect();
                    row.push(f.iter().skip(n - 1).cloned().collect::<Vec<_>>().join(" "));
                    Some(row)
                })
                .collect();
            let titles = titles.into_iter().map(String::from).collect();
            Ok(berth_api::container::TopResponse { titles, processes: procs })
        })
        .await
    }

    /// One stats object; `prev` becomes its `precpu_stats`.
    pub async fn stats(&self, name: &str, prev: Option<Stats>) -> Result<Stats> {
        let e = self.get(name)?;
        let rec = e.record();
        let (cg, pid) = (self.cgroup(&rec), rec.state.pid);
        let running = rec.state.running();
        let mut v = blocking(move || Ok(if running { sample(&cg, pid) } else { not_running() })).await?;
        v.name = format!("/{}", rec.name);
        v.id = rec.id.clone();
        if let Some(p) = prev {
            (v.precpu_stats, v.preread) = (p.cpu_stats, p.read);
        }
        Ok(v)
    }
}
