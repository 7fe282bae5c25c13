//! `POST /containers/{id}/update` (`docker update`): resources and restart policy, applied to the
//! record and, for a running container, live to its cgroup (v1 or v2), as Docker does.

use std::path::Path;

use berth_api::hostconfig::{BlkioDeviceKey, DeviceRule, Resources};
use berth_types::{Error, Result};

use super::stats::Cgroup;
use super::{blocking, ContainerService};

pub use berth_api::hostconfig::UpdateConfig;

/// One per-device change for a running container: the HostConfig key, the rules before (to
/// clear the devices no longer listed) and after, as (major, minor, value).
struct DeviceRules {
    key: BlkioDeviceKey,
    old: Vec<(u64, u64, u64)>,
    new: Vec<(u64, u64, u64)>,
}

/// Writes per-device weights and throttles: cgroup v1's `blkio.*_device` files, where a value
/// of 0 removes a device's rule, or v2's `io.weight`/`io.max`.
fn apply_devices(cg: &Cgroup, rules: &[DeviceRules]) -> Result<()> {
    for r in rules {
        let gone = r.old.iter().filter(|o| !r.new.iter().any(|n| (n.0, n.1) == (o.0, o.1)));
        let lines: Vec<(u64, u64, u64)> = gone.map(|o| (o.0, o.1, 0)).chain(r.new.iter().copied()).collect();
        for (major, minor, value) in lines {
            if cg.v1() {
                let file = match r.key {
                    BlkioDeviceKey::Weight => "blkio.weight_device",
                    BlkioDeviceKey::ReadBps => "blkio.throttle.read_bps_device",
                    BlkioDeviceKey::WriteBps => "blkio.throttle.write_bps_device",
                    BlkioDeviceKey::ReadIops => "blkio.throttle.read_iops_device",
                    BlkioDeviceKey::WriteIops => "blkio.throttle.write_iops_device",
                };
                write(&cg.path("blkio"), file, format!("{major}:{minor} {value}"))?;
            } else {
                let (file, text) = match r.key {
                    BlkioDeviceKey::Weight => (
                        "io.weight",
                        format!("{major}:{minor} {}", if value == 0 { "default".into() } else { value.to_string() }),
                    ),
                    key => {
                        let name = match key {
                            BlkioDeviceKey::ReadBps => "rbps",
                            BlkioDeviceKey::WriteBps => "wbps",
                            BlkioDeviceKey::ReadIops => "riops",
                            _ => "wiops",
                        };
                        let v = if value == 0 { "max".to_string() } else { value.to_string() };
                        ("io.max", format!("{major}:{minor} {name}={v}"))
                    }
                };
                write(&cg.path(""), file, text)?;
            }
        }
    }
    Ok(())
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
fn apply_live(cg: &Cgroup, u: &Resources, old_memory: i64, old_swap: i64) -> Result<()> {
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
    pub async fn update_resources(&self, name: &str, u: UpdateConfig) -> Result<berth_api::container::UpdateResponse> {
        let e = self.get(name)?;
        let _op = e.op.lock().await;
        let rec = e.record();
        let hc = &rec.host_config;
        let (old_memory, old_swap) = (hc.resources.memory, hc.resources.memory_swap);
        let (restart_policy, u) = (u.restart_policy, u.resources);
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
        if let Some(p) = &restart_policy {
            if !p.name.is_empty() && p.name != "no" && hc.auto_remove {
                return Err(Error::invalid(
                    "Cannot update container: Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
        }
        // Per-device rules: validated (block devices only) whether or not it runs.
        let asked: Vec<(BlkioDeviceKey, Vec<DeviceRule>)> =
            BlkioDeviceKey::ALL.into_iter().filter_map(|k| Some((k, u.blkio_device_rules(k)?))).collect();
        let before: Vec<Vec<DeviceRule>> =
            asked.iter().map(|(k, _)| hc.resources.blkio_device_rules(*k).unwrap_or_default()).collect();
        let (asked2, running) = (asked.clone(), rec.state.running());
        let rules = blocking(move || {
            let mut rules = Vec::new();
            for ((key, new), old) in asked2.into_iter().zip(before) {
                let new = berth_runtime::spec::blkio_devices(key, &new)
                    .map_err(|e| Error::invalid(format!("Cannot update container: {}", e.message)))?;
                // Devices gone since the last start are skipped: nothing of theirs to clear.
                let old = if running {
                    berth_runtime::spec::blkio_devices(key, &old).unwrap_or_default()
                } else {
                    Vec::new()
                };
                rules.push(DeviceRules { key, old, new });
            }
            Ok(rules)
        })
        .await?;
        if rec.state.running() {
            let (cg, u2) = (self.cgroup(&rec), u.clone());
            blocking(move || {
                apply_live(&cg, &u2, old_memory, old_swap)?;
                apply_devices(&cg, &rules)
            })
            .await?;
        }
        let rec = e.update(|r| {
            let hc = &mut r.host_config.resources;
            if u.blkio_weight != 0 {
                hc.blkio_weight = u.blkio_weight;
            }
            if u.cpu_period != 0 {
                hc.cpu_period = u.cpu_period;
            }
            if u.cpu_quota != 0 {
                hc.cpu_quota = u.cpu_quota;
            }
            if !u.cpuset_cpus.is_empty() {
                hc.cpuset_cpus = u.cpuset_cpus.clone();
            }
            if !u.cpuset_mems.is_empty() {
                hc.cpuset_mems = u.cpuset_mems.clone();
            }
            if u.memory_swap != 0 {
                hc.memory_swap = u.memory_swap;
            }
            if u.memory_reservation != 0 {
                hc.memory_reservation = u.memory_reservation;
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
            for (k, _) in &asked {
                hc.take_blkio_device_rules(&u, *k);
            }
            if let Some(p) = &restart_policy {
                r.host_config.restart_policy = p.clone();
            }
        });
        self.persist(&rec).await?;
        self.publish("update", &rec, &[]);
        Ok(berth_api::container::UpdateResponse { warnings: Vec::new() })
    }
}
