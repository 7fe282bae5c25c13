//! `berth stats`: docker's figures (CPU % from the cpu/precpu deltas, memory without the page cache,
//! network and block I/O sums) from `/containers/{id}/stats`, once or redrawn every second.

use berth_api::stats::Stats;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::{json, Value};

use super::container::StatsArgs;
use crate::client::{enc, Client};
use crate::output::Format;
use crate::units::{bytes_size, human_size_prec, short};

pub const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

const DEFAULT: &str =
    "table {{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}";

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// One row of the stats table from one stats sample, computed as the docker CLI computes it.
pub fn row(arg: &str, s: &Stats, trunc: bool) -> Value {
    let (now, pre) = (&s.cpu_stats, &s.precpu_stats);
    let cpu_delta = now.cpu_usage.total_usage as f64 - pre.cpu_usage.total_usage as f64;
    let sys_delta = now.system_cpu_usage.unwrap_or(0) as f64 - pre.system_cpu_usage.unwrap_or(0) as f64;
    let cpus = match now.online_cpus {
        Some(n) if n > 0 => f64::from(n),
        _ => now.cpu_usage.percpu_usage.as_ref().map_or(0.0, |a| a.len() as f64),
    };
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 { cpu_delta / sys_delta * cpus * 100.0 } else { 0.0 };
    let m = &s.memory_stats;
    let usage = m.usage.unwrap_or(0) as f64;
    // cgroup v1 reports total_inactive_file, v2 inactive_file: docker subtracts whichever is there.
    let stat = |k: &str| m.stats.as_ref().and_then(|st| st.get(k)).map(|v| *v as f64);
    let cache = stat("total_inactive_file").or(stat("inactive_file")).unwrap_or(0.0);
    let mem = if cache < usage { usage - cache } else { usage };
    let limit = m.limit.unwrap_or(0) as f64;
    let mem_pct = if limit > 0.0 { mem / limit * 100.0 } else { 0.0 };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s.networks.iter().flat_map(|n| n.values()) {
        rx += n.rx_bytes as f64;
        tx += n.tx_bytes as f64;
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in s.blkio_stats.io_service_bytes_recursive.iter().flatten() {
        match e["op"].as_str().map(|o| o.to_ascii_lowercase()).as_deref() {
            Some("read") => rd += f(&e["value"]),
            Some("write") => wr += f(&e["value"]),
            _ => {}
        }
    }
    let id = s.id.as_str();
    json!({
        "Container": arg,
        "ID": if trunc { short(id) } else { id.to_string() },
        "Name": s.name.trim_start_matches('/'),
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(mem), bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", human_size_prec(rx, 3), human_size_prec(tx, 3)),
        "BlockIO": format!("{} / {}", human_size_prec(rd, 3), human_size_prec(wr, 3)),
        "PIDs": s.pids_stats.current.unwrap_or(0).to_string(),
    })
}

async fn sample(c: &Client, names: &[String], trunc: bool) -> (Vec<Value>, i32) {
    let fetch = names.iter().map(|n| {
        let c = c.clone();
        async move { (n.clone(), c.get::<Stats>(&format!("/containers/{}/stats?stream=0", enc(n))).await) }
    });
    let mut rows = Vec::new();
    let mut code = 0;
    for (n, r) in futures_util::future::join_all(fetch).await {
        match r {
            Ok(s) => rows.push(row(&n, &s, trunc)),
            Err(e) => {
                eprintln!("{e:#}");
                code = 1;
            }
        }
    }
    (rows, code)
}

pub async fn stats(c: &Client, a: StatsArgs) -> Result<i32> {
    let fmt = Format::parse(a.format.format.as_deref())?;
    let trunc = !a.no_trunc;
    let names = |c: Client| {
        let given = a.containers.clone();
        let all = a.all;
        async move {
            if !given.is_empty() {
                return Ok::<_, anyhow::Error>(given);
            }
            let list: Vec<berth_api::container::Summary> =
                c.get(&format!("/containers/json?all={}", all as u8)).await?;
            Ok(list.into_iter().map(|i| i.id).collect())
        }
    };
    if a.no_stream {
        let (rows, code) = sample(c, &names(c.clone()).await?, trunc).await;
        print!("{}", fmt.render(&rows, STATS_HEADERS, DEFAULT)?);
        return Ok(code);
    }
    // As the docker CLI: one streaming request per container feeding the latest row; the table is
    // redrawn every 500 ms, and (without names) containers that appear or go are picked up each time.
    let latest: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    let mut streams: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let current = names(c.clone()).await?;
        streams.retain(|n, t| {
            let keep = current.contains(n) && !t.is_finished();
            if !keep {
                t.abort();
                latest.lock().expect("stats lock").remove(n);
            }
            keep
        });
        for n in &current {
            if !streams.contains_key(n) {
                streams.insert(n.clone(), tokio::spawn(follow(c.clone(), n.clone(), trunc, latest.clone())));
            }
        }
        let rows: Vec<Value> =
            current.iter().filter_map(|n| latest.lock().expect("stats lock").get(n).cloned()).collect();
        // Clear and redraw as docker does on a terminal; plain appends when piped.
        if crate::tty::stdout_is_tty() {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", fmt.render(&rows, STATS_HEADERS, DEFAULT)?);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Reads `/containers/{name}/stats?stream=1` and keeps the newest row for `name`.
async fn follow(c: Client, name: String, trunc: bool, latest: Arc<Mutex<BTreeMap<String, Value>>>) {
    let path = format!("/containers/{}/stats?stream=1", enc(&name));
    let Ok(resp) = c.send(hyper::Method::GET, &path, crate::client::empty(), None).await else { return };
    let Ok(resp) = Client::check(resp).await else { return };
    let _ = crate::client::read_json_lines(resp, |s: Stats| -> Result<Option<()>> {
        latest.lock().expect("stats lock").insert(name.clone(), row(&name, &s, trunc));
        Ok(None)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_computed_as_docker_does() {
        let s = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000u64}, "system_cpu_usage": 20_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000_000u64}, "system_cpu_usage": 10_000_000_000u64},
            "memory_stats": {"usage": 10_485_760u64, "limit": 104_857_600u64, "stats": {"total_inactive_file": 5_242_880u64}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 500}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 8192}]},
            "pids_stats": {"current": 3}
        });
        let s: Stats = serde_json::from_value(s).unwrap();
        let r = row("web", &s, true);
        assert_eq!(r["CPUPerc"], "20.00%");
        assert_eq!(r["MemUsage"], "5MiB / 100MiB");
        assert_eq!(r["MemPerc"], "5.00%");
        assert_eq!(r["NetIO"], "1.5kB / 500B");
        assert_eq!(r["BlockIO"], "4.1kB / 8.19kB");
        assert_eq!(r["PIDs"], "3");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["ID"], "0123456789ab");
    }
}
