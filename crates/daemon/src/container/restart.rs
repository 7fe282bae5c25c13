//! Restart policies: `no`, `always`, `unless-stopped`, `on-failure[:N]`, with Docker's backoff
//! (100 ms doubling, capped at a minute, reset after a run of 10 s or more). A manual stop or kill
//! turns restarting off until the next manual start.

use std::sync::Arc;
use std::time::Duration;

use super::record::ContainerRecord;
use super::{ContainerService, Entry, Event, Status};

const FIRST: Duration = Duration::from_millis(100);
const CAP: Duration = Duration::from_secs(60);
/// A run at least this long resets the backoff.
const STABLE: i64 = 10;

/// Whether the policy asks for another run after this exit.
pub fn should_restart(rec: &ContainerRecord) -> bool {
    if rec.manual_stop || rec.host_config.auto_remove {
        return false;
    }
    let p = &rec.host_config.restart_policy;
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            rec.state.exit_code != 0 && (p.maximum_retry_count <= 0 || rec.restart_count < p.maximum_retry_count)
        }
        _ => false,
    }
}

fn ran_for(rec: &ContainerRecord) -> i64 {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|d| d.timestamp()).unwrap_or(0);
    t(&rec.state.finished_at) - t(&rec.state.started_at)
}

impl ContainerService {
    /// Called after an exit was recorded: schedules the next run if the policy wants one.
    pub(super) fn maybe_restart(self: &Arc<Self>, e: &Arc<Entry>) {
        let rec = e.record();
        // `on_exit` moves a container straight from running to restarting (one step, so `rm`
        // never sees it exited in between); a failed restart comes back here exited.
        let scheduled = match rec.state.status {
            Status::Restarting => true,
            Status::Exited if should_restart(&rec) => e.transition(Event::RestartScheduled).is_ok(),
            _ => false,
        };
        if !scheduled {
            *e.backoff.lock().expect("backoff lock") = FIRST;
            return;
        }
        let delay = {
            let mut b = e.backoff.lock().expect("backoff lock");
            if ran_for(&rec) >= STABLE {
                *b = FIRST;
            }
            let d = *b;
            *b = (*b * 2).min(CAP);
            d
        };
        let rec = e.update(|r| r.restart_count += 1);
        let (svc, e) = (self.clone(), e.clone());
        tokio::spawn(async move {
            let _ = svc.persist(&rec).await;
            tokio::time::sleep(delay).await;
            let now = e.record();
            // Removed, stopped or started by hand meanwhile: nothing to do.
            if now.state.status != Status::Restarting || now.manual_stop || svc.get(&now.id).is_err() {
                return;
            }
            match svc.start_inner_checked(&e).await {
                Ok(()) => {}
                Err(err) if err.kind == berth_types::ErrorKind::NotModified => {}
                Err(err) => {
                    tracing::warn!(container = %now.id, "restart: {err}");
                    svc.maybe_restart(&e);
                }
            }
        });
    }

    /// At berthd start: `always` and `unless-stopped` containers not stopped by hand run again
    /// (their shims are gone after a reboot, say).
    pub(super) fn restart_on_boot(self: &Arc<Self>) {
        for e in self.all() {
            let r = e.record();
            let wants = matches!(r.host_config.restart_policy.name.as_str(), "always" | "unless-stopped");
            if wants && !r.manual_stop && matches!(r.state.status, Status::Exited | Status::Restarting) {
                let (svc, e) = (self.clone(), e.clone());
                tokio::spawn(async move {
                    if let Err(err) = svc.start_inner_checked(&e).await {
                        tracing::warn!(container = %e.id(), "start on boot: {err}");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let mut r: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "x", "name": "x", "created": "", "config": {}, "host_config": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}},
            "image_id": format!("sha256:{}", "0".repeat(64)), "path": "sh", "args": [], "state": super::super::record::State::default(),
            "restart_count": 0, "networking_config": null
        }))
        .unwrap();
        r.state.exit_code = 1;
        assert!(should_restart(&r));
        r.restart_count = 2;
        assert!(!should_restart(&r));
        r.state.exit_code = 0;
        r.host_config.restart_policy.name = "always".into();
        assert!(should_restart(&r));
        r.manual_stop = true;
        assert!(!should_restart(&r));
    }
}
