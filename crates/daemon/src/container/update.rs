//! `POST /containers/{id}/update` (`docker update`): resources and restart policy, applied to the
//! record and, for a running container, live to its cgroup (v1 or v2), as Docker does.

use std::path::Path;

use berth_api::container::RestartPolicy;
use berth_types::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::stats::Cgroup;
use super::{blocking, ContainerService};

/// The body of `POST /containers/{id}/update`; zero or absent means "leave as is".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    pub blkio_weight: u16,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub pids_limit: Option<i64>,
    pub restart_policy: Option<RestartPolicy>,
}

fn write(dir: &Path, file: &str, value: impl ToString) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, value.to_string())
        .map_err(|e| Error::invalid(format!("Cannot update container: failed to write {}: {e}", p.display())))
}

/// cgroup v2's `cpu.weight` from Docker's shares (the OCI conversion).
fn shares_to_weight(shares: i64) -> i64 {
    if shares <= 0 {
        return 100;
    }
    1 + ((shares - 2) * 9999) / 262142
}

/// Writes the changed limits into a running container's cgroup.
fn apply_live(cg: &Cgroup, u: &UpdateConfig, old_memory: i64, old_swap: i64) -> Result<()> {
    let limit = |v: i64| if v < 0 { "max".to_string() } else { v.to_string() };
    if cg.v1() {
        let mem = cg.path("memory");
        // The memory limit may never exceed memory+swap: order the writes by direction.
        let swap_first = u.memory_swap != 0 && (u.memory_swap > old_swap || old_swap < 0);
        if swap_first {
            write(&mem, "memory.memsw.limit_in_bytes", u.memory_swap)?;
        }
        if u.memory != 0 {
            write(&mem, "memory.limit_in_bytes", u.memory)?;
        }
        if u.memory_swap != 0 && !swap_first {
            write(&mem, "memory.memsw.limit_in_bytes", u.memory_swap)?;
        }
        if u.memory_reservation != 0 {
            write(&mem, "memory.soft_limit_in_bytes", u.memory_reservation)?;
        }
        let cpu = cg.path("cpu");
        if u.cpu_shares != 0 {
            write(&cpu, "cpu.shares", u.cpu_shares)?;
        }
        if u.nano_cpus != 0 {
            write(&cpu, "cpu.cfs_period_us", 100_000)?;
            write(&cpu, "cpu.cfs_quota_us", u.nano_cpus * 100_000 / 1_000_000_000)?;
        }
        if u.cpu_period != 0 {
            write(&cpu, "cpu.cfs_period_us", u.cpu_period)?;
        }
        if u.cpu_quota != 0 {
            write(&cpu, "cpu.cfs_quota_us", u.cpu_quota)?;
        }
        if !u.cpuset_cpus.is_empty() {
            write(&cg.path("cpuset"), "cpuset.cpus", &u.cpuset_cpus)?;
        }
        if !u.cpuset_mems.is_empty() {
            write(&cg.path("cpuset"), "cpuset.mems", &u.cpuset_mems)?;
        }
        if let Some(p) = u.pids_limit.filter(|p| *p != 0) {
            write(&cg.path("pids"), "pids.max", limit(p))?;
        }
        if u.blkio_weight != 0 {
            let blkio = cg.path("blkio");
            let file = if blkio.join("blkio.weight").exists() { "blkio.weight" } else { "blkio.bfq.weight" };
            write(&blkio, file, u.blkio_weight)?;
        }
    } else {
        let dir = cg.path("");
        let _ = old_memory;
        if u.memory != 0 {
            write(&dir, "memory.max", u.memory)?;
        }
        if u.memory_swap != 0 {
            let mem = if u.memory != 0 { u.memory } else { old_memory };
            write(
                &dir,
                "memory.swap.max",
                if u.memory_swap < 0 { "max".into() } else { (u.memory_swap - mem).max(0).to_string() },
            )?;
        }
        if u.memory_reservation != 0 {
            write(&dir, "memory.low", u.memory_reservation)?;
        }
        if u.cpu_shares != 0 {
            write(&dir, "cpu.weight", shares_to_weight(u.cpu_shares))?;
        }
        let period = if u.cpu_period != 0 { u.cpu_period } else { 100_000 };
        if u.nano_cpus != 0 {
            write(&dir, "cpu.max", format!("{} 100000", u.nano_cpus * 100_000 / 1_000_000_000))?;
        } else if u.cpu_quota != 0 {
            write(&dir, "cpu.max", format!("{} {period}", limit(u.cpu_quota)))?;
        }
        if !u.cpuset_cpus.is_empty() {
            write(&dir, "cpuset.cpus", &u.cpuset_cpus)?;
        }
        if !u.cpuset_mems.is_empty() {
            write(&dir, "cpuset.mems", &u.cpuset_mems)?;
        }
        if let Some(p) = u.pids_limit.filter(|p| *p != 0) {
            write(&dir, "pids.max", limit(p))?;
        }
        if u.blkio_weight != 0 {
            write(&dir, "io.weight", u.blkio_weight)?;
        }
    }
    Ok(())
}

impl ContainerService {
    /// `docker update`: validates like Docker, writes the cgroup of a running container, persists.
    pub async fn update_resources(&self, name: &str, u: UpdateConfig) -> Result<Value> {
        let e = self.get(name)?;
        let _op = e.op.lock().await;
        let rec = e.record();
        let hc = &rec.host_config;
        let extra_i64 = |k: &str| hc.extra.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
        let (old_memory, old_swap) = (hc.memory, extra_i64("MemorySwap"));
        let memory = if u.memory != 0 { u.memory } else { old_memory };
        let swap = if u.memory_swap != 0 { u.memory_swap } else { old_swap };
        if u.memory != 0 && u.memory < 6 * 1024 * 1024 {
            return Err(Error::invalid("Minimum memory limit allowed is 6MB"));
        }
        if swap > 0 && memory > swap {
            return Err(Error::invalid(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
            ));
        }
        if u.nano_cpus != 0 && (u.cpu_quota != 0 || u.cpu_period != 0) {
            return Err(Error::invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set"));
        }
        if let Some(p) = &u.restart_policy {
            if !p.name.is_empty() && p.name != "no" && hc.auto_remove {
                return Err(Error::invalid(
                    "Cannot update container: Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
        }
        if rec.state.running() {
            let (cg, u2) = (self.cgroup(&rec.id), u.clone());
            blocking(move || apply_live(&cg, &u2, old_memory, old_swap)).await?;
        }
        let rec = e.update(|r| {
            let hc = &mut r.host_config;
            let mut set = |k: &str, v: Value| {
                hc.extra.insert(k.to_string(), v);
            };
            if u.blkio_weight != 0 {
                set("BlkioWeight", json!(u.blkio_weight));
            }
            if u.cpu_period != 0 {
                set("CpuPeriod", json!(u.cpu_period));
            }
            if u.cpu_quota != 0 {
                set("CpuQuota", json!(u.cpu_quota));
            }
            if !u.cpuset_cpus.is_empty() {
                set("CpusetCpus", json!(u.cpuset_cpus));
            }
            if !u.cpuset_mems.is_empty() {
                set("CpusetMems", json!(u.cpuset_mems));
            }
            if u.memory_swap != 0 {
                set("MemorySwap", json!(u.memory_swap));
            }
            if u.memory_reservation != 0 {
                set("MemoryReservation", json!(u.memory_reservation));
            }
            if u.memory != 0 {
                hc.memory = u.memory;
            }
            if u.cpu_shares != 0 {
                hc.cpu_shares = u.cpu_shares;
            }
            if u.nano_cpus != 0 {
                hc.nano_cpus = u.nano_cpus;
            }
            if let Some(p) = u.pids_limit.filter(|p| *p != 0) {
                hc.pids_limit = Some(p);
            }
            if let Some(p) = &u.restart_policy {
                hc.restart_policy = p.clone();
            }
        });
        self.persist(&rec).await?;
        self.publish("update", &rec, &[]);
        Ok(json!({"Warnings": []}))
    }
}
