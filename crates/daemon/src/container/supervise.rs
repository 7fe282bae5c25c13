//! Supervision of a running container's shim: its frames relayed until the exit, the exit
//! recorded (and the container restarted or removed), the reconnection after a berthd restart, and
//! the watch on a shim that has reported its exit but is still cleaning up.

use std::sync::Arc;

use berth_runtime::proto::{self, ExitStatus, Hello};
use berth_runtime::shim::{self, ShimConn, ShimReader};
use berth_types::{Error, Result};
use bytes::Bytes;
use tokio::sync::oneshot;

use super::record::ContainerRecord;
use super::{blocking, ContainerService, Entry, Event, Status};

impl ContainerService {
    /// Relays a shim's frames until the container exits. Frames are handled in order, so the
    /// start (STARTED) is recorded before the exit (EXITED) that follows it.
    pub(super) async fn supervise(
        self: Arc<Self>,
        e: Arc<Entry>,
        mut reader: ShimReader,
        mut start: Option<PendingStart>,
    ) {
        let id = e.id();
        let status = loop {
            match reader.recv().await {
                Ok(Some((proto::STARTED, _))) => {
                    if let Some(s) = start.take() {
                        let r = self.on_started(&e, s.pid).await;
                        let _ = s.done.send(r);
                    }
                }
                Ok(Some((proto::ACK, _))) => {
                    if let Some(tx) = e.control.lock().expect("control lock").take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Ok(Some((proto::ERROR, msg))) => {
                    let msg = String::from_utf8_lossy(&msg).to_string();
                    if let Some(tx) = e.control.lock().expect("control lock").take() {
                        let err = if msg == proto::ERR_NOT_RUNNING {
                            Error::conflict(format!("Container {id} is not running"))
                        } else {
                            Error::internal(msg)
                        };
                        let _ = tx.send(Err(err));
                        continue;
                    }
                    match start.take() {
                        Some(s) => {
                            let _ = s.done.send(Err(Error::internal(msg)));
                        }
                        None => tracing::warn!(container = %id, "shim: {msg}"),
                    }
                }
                Ok(Some((kind @ (proto::STDOUT | proto::STDERR), data))) => {
                    let stream = if kind == proto::STDOUT { 1 } else { 2 };
                    super::attach::broadcast(&e, stream, Bytes::from(data)).await;
                }
                Ok(Some((kind @ (proto::EXEC_STARTED | proto::EXEC_OUTPUT | proto::EXEC_EXITED), data))) => {
                    self.exec_frame(&e, kind, &data).await;
                }
                Ok(Some((proto::EXITED, data))) => {
                    // The shim now deletes the container's cgroups and runtime state, then closes.
                    gone_when_closed(reader, e.shim_gone.clone());
                    break serde_json::from_slice::<ExitStatus>(&data).ok();
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    e.shim_gone.send_replace(true);
                    break None;
                }
            }
        };
        if let Some(s) = start.take() {
            // It never started (or its shim failed before): the start's failure path cleans up
            // and records the outcome; a second clean-up here would release things twice.
            let _ = s.done.send(Err(Error::internal(format!("container {id} exited before it started"))));
            return;
        }
        let status = status.or_else(|| shim::read_exit(&self.bundle_dir(&id).join("exit.json")));
        self.on_exit(&e, status).await;
    }

    /// Records an exit: releases host state, persists, publishes `die`, wakes waiters, auto-removes.
    pub(super) async fn on_exit(self: &Arc<Self>, e: &Arc<Entry>, status: Option<ExitStatus>) {
        let t0 = std::time::Instant::now();
        *e.shim.lock().await = None;
        // A pause or resume in flight will never be answered now.
        if let Some(tx) = e.control.lock().expect("control lock").take() {
            let _ = tx.send(Err(Error::conflict(format!("Container {} is not running", e.id()))));
        }
        e.subscribers.lock().expect("subscribers lock").clear();
        // Execs still running died with the container's pid namespace.
        let orphans: Vec<String> = e.exec_routes.lock().expect("exec routes lock").keys().cloned().collect();
        for x in orphans {
            self.exec_exited(e, &x, 137);
        }
        let id = e.id();
        if status.is_none() {
            // The shim died without reporting: the container's processes are nobody's now. End
            // them (as containerd deletes the task of a dead shim) before their rootfs goes.
            let rel = self.cgroup(&e.record()).rel;
            let n = blocking(move || Ok(super::recovery::kill_cgroup(&rel))).await.unwrap_or(0);
            tracing::warn!(container = %id, cgroups = n, "the shim exited without reporting: container processes killed");
        }
        self.release_host_state(&id).await;
        self.release_volumes(&e.record(), true).await;
        self.release_network(e).await;
        // Before the exit is recorded: a start that follows at once (restart, a policy, a client
        // woken by wait) writes a new bundle here, which a later removal would delete under it.
        let bundle = self.bundle_dir(&id);
        let _ = blocking(move || Ok(std::fs::remove_dir_all(bundle))).await;
        let oom = status.as_ref().is_some_and(|s| s.oom_killed);
        let (code, finished, error) = match status {
            Some(s) => (s.code as i64, s.finished_at, String::new()),
            None => (
                255,
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "the container's shim exited without reporting a status".to_string(),
            ),
        };
        let exited = Event::Exited { code, at: finished, oom, error };
        let restart = |r: &ContainerRecord| super::restart::should_restart(r).then_some(Event::RestartScheduled);
        let rec = match e.transition_then(exited, restart) {
            Ok(rec) => rec,
            Err(err) => {
                tracing::warn!(container = %id, "exit report: {err}");
                return;
            }
        };
        if oom {
            self.publish("oom", &rec, &[]);
        }
        if let Err(err) = self.persist(&rec).await {
            tracing::error!(container = %id, "persist exit: {err}");
        }
        tracing::debug!(container = %id, elapsed = ?t0.elapsed(), "exit recorded");
        self.publish("die", &rec, &[("exitCode", code.to_string())]);
        self.maybe_restart(e);
        if rec.host_config.auto_remove {
            if let Err(err) = self.remove_entry(e, true, false).await {
                tracing::error!(container = %id, "auto-remove: {err}");
            }
            tracing::debug!(container = %id, elapsed = ?t0.elapsed(), "auto-removed");
        }
    }

    /// After a crash the freezer is the truth: a pause (a commit's, say) cut off between freezing
    /// and recording leaves a "running" container frozen, where no signal can end it; a resume cut
    /// off the same way leaves a "paused" one running.
    async fn reconcile_freezer(&self, e: &Arc<Entry>) {
        let rec = e.record();
        let cg = self.cgroup(&rec);
        let frozen = blocking(move || Ok(cg.frozen())).await.unwrap_or(false);
        match (rec.state.status, frozen) {
            (Status::Running, true) => {
                let cg = self.cgroup(&rec);
                match blocking(move || Ok(cg.thaw()?)).await {
                    Ok(()) => {
                        tracing::info!(container = %rec.id, "recovery: thawed a container an interrupted pause left frozen")
                    }
                    Err(err) => tracing::warn!(container = %rec.id, "recovery: thaw: {err}"),
                }
            }
            (Status::Paused, false) => {
                if let Ok(rec) = e.transition(Event::Unpause) {
                    let _ = self.persist(&rec).await;
                    tracing::info!(container = %rec.id, "recovery: a paused container found running is recorded as running");
                }
            }
            _ => {}
        }
    }

    /// After a berthd restart: reconnect to a container's shim, or record the exit it had meanwhile.
    pub(super) async fn reconnect(self: Arc<Self>, e: Arc<Entry>) {
        let id = e.id();
        match ShimConn::connect(&self.shim_socket(&id)).await {
            Ok(mut conn) => match read_hello(&mut conn.reader).await {
                Ok(hello) => {
                    if e.record().state.status == Status::Starting {
                        // berthd died during this start: finish the books on what the shim says.
                        if hello.started {
                            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                            let _ = e.transition(Event::Started { pid: hello.pid, at: now });
                        } else {
                            tracing::info!(container = %id, "recovery: killing a start interrupted by a crash");
                            let _ = conn.writer.send(proto::SIGNAL, &9i32.to_be_bytes()).await;
                        }
                    }
                    *e.shim.lock().await = Some(conn.writer);
                    e.shim_ready.notify_waiters();
                    self.reconcile_freezer(&e).await;
                    let rec = e.record();
                    self.start_health(&e);
                    self.start_dns(&e).await;
                    if let Err(err) = self.publish_ports(&rec).await {
                        tracing::warn!(container = %id, "re-publish ports: {err}");
                    }
                    e.shim_gone.send_replace(false);
                    tokio::spawn(self.clone().supervise(e, conn.reader, None));
                }
                Err(err) => {
                    tracing::warn!(container = %id, "shim hello: {err}");
                    let status = shim::read_exit(&self.bundle_dir(&id).join("exit.json"));
                    self.on_exit(&e, status).await;
                }
            },
            Err(_) => {
                let status = shim::read_exit(&self.bundle_dir(&id).join("exit.json"));
                self.on_exit(&e, status).await;
            }
        }
    }
}

/// Marks the shim gone (`Entry::shim_gone`) once its connection closes — after its clean-up — or
/// after `SHIM_CLEANUP` at the latest. Its frames are of no interest any more.
fn gone_when_closed(mut reader: ShimReader, gone: tokio::sync::watch::Sender<bool>) {
    tokio::spawn(async move {
        let drain = async { while let Ok(Some(_)) = reader.recv().await {} };
        let _ = tokio::time::timeout(super::SHIM_CLEANUP, drain).await;
        gone.send_replace(true);
    });
}

/// A new shim's connection until its supervisor takes it: a start that fails on the way (its
/// init killed) still learns when that shim has cleaned up and gone.
pub(super) struct WatchedShim {
    pub(super) reader: Option<ShimReader>,
    pub(super) gone: tokio::sync::watch::Sender<bool>,
}

impl Drop for WatchedShim {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            gone_when_closed(reader, self.gone.clone());
        }
    }
}

/// A start waiting for the shim's STARTED: answered by the supervisor once `running` is recorded.
pub(super) struct PendingStart {
    pub(super) done: oneshot::Sender<Result<()>>,
    pub(super) pid: i32,
}

pub(super) async fn read_hello(reader: &mut ShimReader) -> Result<Hello> {
    match reader.recv().await? {
        Some((proto::HELLO, data)) => {
            serde_json::from_slice(&data).map_err(|e| Error::internal(format!("bad shim hello: {e}")))
        }
        _ => Err(Error::internal("shim closed before hello")),
    }
}
