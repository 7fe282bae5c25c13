//! stop, kill, remove, wait.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::proto;
use berth_types::{Error, Result};

use super::{blocking, ContainerService, Entry, Event, Status, WaitState, CONTAINERS};

/// How long a shim has to answer a PAUSE or RESUME before the request fails.
const CONTROL_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(Error::invalid(format!("invalid condition: \"{other}\""))),
        }
    }
}

impl ContainerService {
    /// Resolves the container now (so a 404 is immediate) and returns the wait itself.
    pub fn wait(&self, name: &str, cond: WaitCondition) -> Result<impl Future<Output = WaitState> + Send + 'static> {
        let e = self.get(name)?;
        // Read under the record's lock: an exit is either in `start` or arrives through `rx`.
        let (start, mut rx) = e.subscribe_wait();
        Ok(async move {
            let done = |w: &WaitState| match cond {
                // Level-triggered: not running now, or an exit since the wait began (a restart
                // policy may already have started the next run).
                WaitCondition::NotRunning => !w.running || w.exits > start.exits,
                WaitCondition::NextExit => w.exits > start.exits,
                WaitCondition::Removed => w.removed,
            };
            let r = rx.wait_for(|w| done(w)).await.map(|w| w.clone());
            r.unwrap_or_else(|_| rx.borrow().clone())
        })
    }

    /// `docker pause` / `docker unpause`: freezes or thaws every process of the container.
    pub async fn set_paused(&self, name: &str, pause: bool) -> Result<()> {
        let e = self.get(name)?;
        let _op = e.op.lock().await;
        self.set_paused_locked(&e, pause).await
    }

    pub(super) async fn set_paused_locked(&self, e: &Entry, pause: bool) -> Result<()> {
        // One exchange at a time, the state read under it: a second unpause racing a kill's thaw
        // gets Docker's "is not paused", not the runtime's refusal or a lost answer.
        let _exchange = e.pause_op.lock().await;
        // Checked by the state machine first (Docker's errors), applied once the shim confirms.
        let rec = e.record();
        rec.state.check(if pause { Event::Pause } else { Event::Unpause }, &rec.id, &rec.name)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        *e.control.lock().expect("control lock") = Some(tx);
        if let Err(err) = e.shim_send(if pause { proto::PAUSE } else { proto::RESUME }, &[]).await {
            e.control.lock().expect("control lock").take();
            return Err(err);
        }
        // The exit handler fails a pending request, and the deadline bounds a shim that hangs.
        match tokio::time::timeout(CONTROL_DEADLINE, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(Error::conflict(format!("Container {} is not running", rec.id))),
            Err(_) => {
                e.control.lock().expect("control lock").take();
                return Err(Error::internal(format!("container {}: the shim did not answer within 10s", rec.id)));
            }
        }
        let rec = e.transition(if pause { Event::Pause } else { Event::Unpause })?;
        self.persist(&rec).await?;
        self.publish(if pause { "pause" } else { "unpause" }, &rec, &[]);
        Ok(())
    }

    /// Stop, kill and remove thaw a paused container first, so its processes can get the signal.
    async fn thaw(&self, e: &Entry) {
        if e.record().state.paused() {
            let _ = self.set_paused_locked(e, false).await;
        }
    }

    async fn send_signal(&self, e: &Entry, sig: i32) -> Result<()> {
        e.shim_send(proto::SIGNAL, &sig.to_be_bytes()).await
    }

    async fn wait_exit(e: &Entry, exits_before: u64, timeout: Option<Duration>) -> bool {
        let mut rx = e.wait.subscribe();
        // An exit since, or not alive at all: a start that failed (its exit never came — it never
        // ran) ends the wait as well as an exit does.
        let fut = rx.wait_for(|w| w.exits > exits_before || !w.running);
        match timeout {
            Some(t) => matches!(tokio::time::timeout(t, fut).await, Ok(Ok(_))),
            None => fut.await.is_ok(),
        }
    }

    /// `docker stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let _timer = crate::metrics::container_action("stop");
        let e = self.get(name)?;
        let _op = e.op.lock().await;
        // Exits counted before the state is read (here and in kill and rm -f): an exit recorded
        // between the two would otherwise be waited for again — 30 s for nothing.
        let exits = e.wait.borrow().exits;
        // A manual stop also cancels a restart the policy had scheduled.
        e.update(|r| r.manual_stop = true);
        let rec = e.transition(Event::RestartCancelled)?;
        self.persist(&rec).await?;
        if !rec.state.running() {
            return Err(Error::not_modified());
        }
        let sig_name = signal.map(String::from).or(rec.config.stop_signal.clone()).unwrap_or_else(|| "SIGTERM".into());
        let sig = berth_sys::process::parse_signal(&sig_name)?;
        let secs = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        self.thaw(&e).await;
        if let Err(err) = self.send_signal(&e, sig).await {
            // It exited between the check and the signal: stopped is what was asked for.
            return if e.record().state.running() { Err(err) } else { Ok(()) };
        }
        self.publish("kill", &rec, &[("signal", sig.to_string())]);
        let limit = (secs >= 0).then(|| Duration::from_secs(secs as u64));
        if !Self::wait_exit(&e, exits, limit).await {
            self.send_signal(&e, 9).await.ok();
            self.publish("kill", &rec, &[("signal", "9".into())]);
            Self::wait_exit(&e, exits, Some(Duration::from_secs(30))).await;
        }
        self.publish("stop", &rec, &[]);
        Ok(())
    }

    /// `docker kill -s`.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let e = self.get(name)?;
        let exits = e.wait.borrow().exits;
        let rec = e.record();
        let sig = berth_sys::process::parse_signal(if signal.is_empty() { "KILL" } else { signal })?;
        if !rec.state.running() {
            return Err(Error::conflict(format!("Container {} is not running", rec.id)));
        }
        e.update(|r| r.manual_stop = true);
        self.thaw(&e).await;
        self.send_signal(&e, sig).await?;
        self.publish("kill", &rec, &[("signal", sig.to_string())]);
        if sig == 9 {
            Self::wait_exit(&e, exits, Some(Duration::from_secs(10))).await;
        }
        Ok(())
    }

    /// `docker rm [-f]`.
    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let _timer = crate::metrics::container_action("delete");
        let e = self.get(name)?;
        let rec = e.record();
        // Refused in Docker's words: without force a running, paused or restarting container, and
        // any being removed. (With force the process is killed first; `remove_entry` checks again.)
        if !force || rec.state.status == Status::Removing {
            rec.state.check(Event::Remove { force: false }, &rec.id, &rec.name)?;
        }
        if force {
            // The policy must not start it again while it goes.
            e.update(|r| r.manual_stop = true);
            let _ = e.transition(Event::RestartCancelled);
            let exits = e.wait.borrow().exits;
            if e.record().state.status.alive() {
                self.thaw(&e).await;
                let _ = self.send_signal(&e, 9).await;
                self.publish("kill", &rec, &[("signal", "9".into())]);
                Self::wait_exit(&e, exits, Some(Duration::from_secs(30))).await;
            }
        }
        let _op = e.op.lock().await;
        self.remove_entry(&e, volumes, force).await
    }

    /// `POST /containers/prune`: every stopped container matching the label and `until` filters.
    pub async fn prune(&self, filters: &berth_api::filters::Filters) -> Result<(Vec<String>, u64)> {
        filters.validate(&["label", "label!", "until"]).map_err(Error::invalid)?;
        let until = match filters.get("until").first() {
            None => None,
            Some(u) => Some(match chrono::DateTime::parse_from_rfc3339(u) {
                Ok(d) => d.timestamp(),
                Err(_) => u
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .parse::<i64>()
                    .map_err(|_| Error::invalid(format!("invalid filter 'until={u}'")))?,
            }),
        };
        let mut deleted = Vec::new();
        let mut space = 0;
        for e in self.all() {
            let r = e.record();
            let created = chrono::DateTime::parse_from_rfc3339(&r.created).map(|d| d.timestamp()).unwrap_or(0);
            let excluded = filters.get("label!").iter().any(|l| match l.split_once('=') {
                Some((k, v)) => r.config.labels.get(k).is_some_and(|x| x == v),
                None => r.config.labels.contains_key(l.as_str()),
            });
            if !matches!(r.state.status, Status::Created | Status::Exited | Status::Dead)
                || !filters.match_labels(&r.config.labels)
                || excluded
                || until.is_some_and(|u| created >= u)
            {
                continue;
            }
            // Under the container's lifecycle lock, as `rm` takes it: one that is busy right now
            // (an export or a copy mounting its root) is left for the next prune — removing it
            // under that mount failed half-way and left it dead.
            let Ok(_op) = e.op.try_lock() else { continue };
            let size = self.size_rw(&r.id);
            if self.remove_entry(&e, false, false).await.is_ok() {
                space += size;
                deleted.push(r.id);
            }
        }
        Ok((deleted, space))
    }

    /// Deletes a stopped container and everything it owns, once the state machine moved it to
    /// `removing` (which only one caller can do).
    pub(super) async fn remove_entry(&self, e: &Arc<Entry>, volumes: bool, force: bool) -> Result<()> {
        let rec = e.transition(Event::Remove { force })?;
        let id = rec.id.clone();
        self.release_host_state(&id).await;
        for key in super::mounts::image_mount_keys(&rec) {
            if let Err(err) = self.images.remove_snapshot(&key).await {
                tracing::warn!(container = %id, "image mount snapshot {key}: {err}");
            }
        }
        let snap = self.images.remove_snapshot(&id).await;
        let (cdir, bdir, store) = (self.container_dir(&id), self.bundle_dir(&id), self.store.clone());
        let id2 = id.clone();
        let files = blocking(move || {
            for d in [cdir, bdir] {
                match std::fs::remove_dir_all(&d) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            store.delete(CONTAINERS, &id2)
        })
        .await;
        if let Err(err) = snap.as_ref().and(files.as_ref()) {
            // Docker's `dead`: visible, and only `rm -f` may try again.
            tracing::error!(container = %id, "remove: {err}");
            if let Ok(rec) = e.transition(Event::RemoveFailed) {
                let _ = self.persist(&rec).await;
            }
            return snap.and(files);
        }
        // Gone means gone: its cgroups too, which its shim deletes after reporting the exit.
        e.shim_finished().await;
        self.entries.lock().expect("entries lock").remove(&id);
        self.release_name(&rec.name, &id);
        self.publish("destroy", &rec, &[]);
        self.forget_execs(&id);
        if volumes {
            self.remove_anonymous_volumes(&rec).await;
        }
        e.mark_removed();
        Ok(())
    }
}
