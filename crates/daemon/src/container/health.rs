//! Healthchecks: the image's HEALTHCHECK or `--health-*`, run by berthd as execs, with Docker's
//! states (starting, healthy, unhealthy), failing streak, a log of the last five probes, and
//! `health_status: ...` events.

use std::sync::Arc;
use std::time::Duration;

use berth_api::container::HealthConfig;

use super::exec::ExecConfig;
use super::{ContainerService, Entry};

const LOG_KEEP: usize = 5;
const OUTPUT_MAX: usize = 4096;

pub use berth_api::container::{Health, HealthLog};

/// A container's probe, from Config.Healthcheck (durations in nanoseconds; 0 means Docker's default).
#[derive(Debug, Clone)]
struct Probe {
    cmd: Vec<String>,
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    /// Between probes during the start period while still "starting" (API 1.44's StartInterval,
    /// compose's `start_interval`; Docker's default 5 s).
    start_interval: Duration,
    retries: i64,
}

fn probe(hc: Option<&HealthConfig>) -> Option<Probe> {
    let hc = hc?;
    let test = hc.test.clone()?;
    let cmd = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => return None, // NONE, empty or inherited-nothing
    };
    if cmd.is_empty() {
        return None;
    }
    // Zero (or a negative a client slipped past validation) is the default.
    let d = |n: i64, default: u64| Duration::from_nanos(u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(default));
    Some(Probe {
        cmd,
        interval: d(hc.interval, 30_000_000_000),
        timeout: d(hc.timeout, 30_000_000_000),
        start_period: d(hc.start_period, 0),
        start_interval: d(hc.start_interval, 5_000_000_000),
        retries: Some(hc.retries).filter(|r| *r > 0).unwrap_or(3),
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl ContainerService {
    /// Starts the health monitor of a container that just started, if it has a healthcheck.
    pub(super) fn start_health(self: &Arc<Self>, e: &Arc<Entry>) {
        let rec = e.record();
        let Some(p) = probe(rec.config.healthcheck.as_ref()) else { return };
        let run = e.wait.borrow().exits;
        let rec = e.update(|r| r.state.health = Some(Health { status: "starting".into(), ..Default::default() }));
        let _ = rec;
        let (svc, e) = (self.clone(), e.clone());
        tokio::spawn(async move {
            let began = std::time::Instant::now();
            loop {
                let starting = e.record().state.health.as_ref().is_some_and(|h| h.status == "starting");
                let wait = if starting && began.elapsed() < p.start_period { p.start_interval } else { p.interval };
                tokio::time::sleep(wait).await;
                // This run of the container is over: stop probing.
                if e.wait.borrow().exits != run || !e.record().state.running() {
                    return;
                }
                let start = now();
                let (code, output) = svc.probe_once(&e, &p).await;
                let in_grace = began.elapsed() < p.start_period;
                svc.record_probe(&e, HealthLog { start, end: now(), exit_code: code, output }, p.retries, in_grace)
                    .await;
            }
        });
    }

    async fn probe_once(&self, e: &Entry, p: &Probe) -> (i64, String) {
        let cfg = ExecConfig { cmd: p.cmd.clone(), attach_stdout: true, attach_stderr: true, ..Default::default() };
        let id = match self.exec_create(&e.id(), cfg).await {
            Ok(id) => id,
            Err(err) => return (-1, err.message),
        };
        let mut stream = match self.exec_start(&id, false).await {
            Ok(s) => s,
            Err(err) => return (-1, err.message),
        };
        let mut out = Vec::new();
        let collect = async {
            while let Some((_, chunk)) = stream.output.recv().await {
                if out.len() < OUTPUT_MAX {
                    out.extend_from_slice(&chunk[..chunk.len().min(OUTPUT_MAX - out.len())]);
                }
            }
        };
        if tokio::time::timeout(p.timeout, collect).await.is_err() {
            return (-1, format!("Health check exceeded timeout ({:?})", p.timeout));
        }
        let code = self.exec_inspect(&id).ok().and_then(|x| x.exit_code).unwrap_or(-1);
        self.forget_exec(&id);
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    async fn record_probe(&self, e: &Entry, entry: HealthLog, retries: i64, in_grace: bool) {
        let ok = entry.exit_code == 0;
        let m = crate::metrics::get();
        m.health_checks.inc();
        if !ok {
            m.health_checks_failed.inc();
        }
        let before = e.record().state.health.map(|h| h.status).unwrap_or_default();
        let rec = e.update(|r| {
            let h = r.state.health.get_or_insert_with(Health::default);
            h.log.push(entry);
            if h.log.len() > LOG_KEEP {
                h.log.remove(0);
            }
            if ok {
                h.failing_streak = 0;
                h.status = "healthy".into();
            } else if !in_grace {
                h.failing_streak += 1;
                if h.failing_streak >= retries {
                    h.status = "unhealthy".into();
                }
            }
        });
        let after = rec.state.health.as_ref().map(|h| h.status.clone()).unwrap_or_default();
        let _ = self.persist(&rec).await;
        if after != before {
            self.publish(&format!("health_status: {after}"), &rec, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_from_config() {
        let h = |v: serde_json::Value| serde_json::from_value::<HealthConfig>(v).unwrap();
        let p =
            probe(Some(&h(serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000u64})))).unwrap();
        assert_eq!(p.cmd, ["/bin/sh", "-c", "true"]);
        assert_eq!(p.interval, Duration::from_secs(1));
        assert_eq!(p.retries, 3);
        assert!(probe(Some(&HealthConfig::none())).is_none());
        assert!(probe(None).is_none());
        let p = probe(Some(&h(serde_json::json!({"Test": ["CMD", "ls", "/"], "Retries": 1})))).unwrap();
        assert_eq!(p.cmd, ["ls", "/"]);
        assert_eq!(p.retries, 1);
    }
}
