//! `docker exec`: extra processes in a running container, started by its shim.
//!
//! Lifecycle: `exec_create` records the request (the container must be running); `exec_start`
//! resolves user, environment and working directory in the container's root, writes an OCI
//! `process.json` next to the bundle, asks the shim to start it and routes its output to the
//! caller; the shim's EXEC_EXITED sets the exit code *before* the output channel closes, so a
//! client that inspects after its stream ends always sees the code.

use berth_api::container::{ExecInspect, ExecProcessConfig};
use std::collections::HashMap;

use std::sync::{Arc, Mutex};

use berth_runtime::proto::{self, ExecRequest, ExecStarted};
use berth_runtime::spec;
use berth_runtime::user;
use berth_sys::root::Root;
use berth_types::{Error, Result};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::{blocking, Chunk, ContainerService, Entry};

/// The body of `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    #[serde(deserialize_with = "berth_api::serde_helpers::nullable")]
    pub cmd: Vec<String>,
    #[serde(deserialize_with = "berth_api::serde_helpers::nullable")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "berth_api::serde_helpers::nullable")]
    pub user: String,
    #[serde(deserialize_with = "berth_api::serde_helpers::nullable")]
    pub working_dir: String,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub privileged: bool,
    #[serde(deserialize_with = "berth_api::serde_helpers::nullable")]
    pub detach_keys: String,
    pub console_size: Option<[u64; 2]>,
}

#[derive(Debug, Default)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i64>,
    pid: i32,
}

pub struct ExecEntry {
    id: String,
    container_id: String,
    config: ExecConfig,
    state: Mutex<ExecState>,
}

/// How the supervisor reaches an exec's caller.
pub(super) struct ExecRoute {
    out: Option<mpsc::Sender<Chunk>>,
    started: Option<oneshot::Sender<ExecStarted>>,
}

/// A started exec, as the server streams it.
pub struct ExecStream {
    pub tty: bool,
    /// The exec's DetachKeys (Docker's notation; empty is the default).
    pub detach_keys: String,
    pub output: mpsc::Receiver<Chunk>,
    pub stdin: Option<mpsc::UnboundedSender<Option<Bytes>>>,
}

pub(super) type ExecRoutes = Mutex<HashMap<String, ExecRoute>>;

impl ContainerService {
    fn exec_entry(&self, id: &str) -> Result<Arc<ExecEntry>> {
        self.execs
            .lock()
            .expect("execs lock")
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("No such exec instance: {id}")))
    }

    pub async fn exec_create(&self, name: &str, config: ExecConfig) -> Result<String> {
        let e = self.get(name)?;
        let rec = e.record();
        if rec.state.restarting() {
            return Err(Error::conflict(format!(
                "Container {} is restarting, wait until the container is running",
                rec.id
            )));
        }
        if !rec.state.running() {
            return Err(Error::conflict(format!("Container {} is not running", rec.id)));
        }
        if rec.state.paused() {
            return Err(Error::conflict(format!("Container {} is paused, unpause the container before exec", rec.id)));
        }
        if config.cmd.is_empty() {
            return Err(Error::invalid("No exec command specified"));
        }
        let id = berth_types::new_id();
        let cmd = config.cmd.join(" ");
        let entry = Arc::new(ExecEntry {
            id: id.clone(),
            container_id: rec.id.clone(),
            config,
            state: Mutex::new(ExecState::default()),
        });
        self.execs.lock().expect("execs lock").insert(id.clone(), entry);
        self.publish(&format!("exec_create: {cmd}"), &rec, &[("execID", id.clone())]);
        Ok(id)
    }

    /// What `exec_start` would refuse, checked without starting: a missing or started exec, a
    /// stopped container.
    pub fn exec_check(&self, exec_id: &str) -> Result<()> {
        let x = self.exec_entry(exec_id)?;
        if x.state.lock().expect("exec state lock").started {
            return Err(Error::conflict(format!("exec instance {exec_id} is already started")));
        }
        let rec = self.get(&x.container_id)?.record();
        if !rec.state.running() {
            return Err(not_running(&rec.id));
        }
        Ok(())
    }

    pub async fn exec_start(&self, exec_id: &str, detach: bool) -> Result<ExecStream> {
        let x = self.exec_entry(exec_id)?;
        {
            let mut st = x.state.lock().expect("exec state lock");
            if st.started {
                return Err(Error::conflict(format!("exec instance {exec_id} is already started")));
            }
            st.started = true;
        }
        let e = self.get(&x.container_id)?;
        let rec = e.record();
        if !rec.state.running() {
            return Err(Error::conflict(format!("Container {} is not running", rec.id)));
        }
        let snap = self.images.snapshot_mounts(&rec.id).await?;
        let process_json = self.bundle_dir(&rec.id).join(format!("exec-{}.json", &exec_id[..16]));
        let (cfg, rec2, pj) = (x.config.clone(), rec.clone(), process_json.clone());
        let container_spec = self.bundle_dir(&rec.id).join("config.json");
        let prepared = blocking(move || {
            let root = Root::open(&snap.target)?;
            let mut usr = user::resolve_user(&root, if cfg.user.is_empty() { &rec2.config.user } else { &cfg.user })?;
            super::start::group_add(&root, &rec2.host_config, &mut usr)?;
            // The container's own process settings bind every exec too (no-new-privileges,
            // rlimits): read from the spec it runs with, which berthd wrote.
            let init: serde_json::Value = serde_json::from_slice(&std::fs::read(&container_spec)?)
                .map_err(|e| Error::internal(format!("container spec: {e}")))?;
            let nnp = init["process"]["noNewPrivileges"] == true;
            let cwd = if !cfg.working_dir.is_empty() {
                cfg.working_dir.clone()
            } else if !rec2.config.working_dir.is_empty() {
                rec2.config.working_dir.clone()
            } else {
                "/".into()
            };
            let mut env = rec2.config.env.clone();
            for v in &cfg.env {
                let k = v.split_once('=').map(|x| x.0).unwrap_or(v);
                env.retain(|o| o.split_once('=').map(|x| x.0).unwrap_or(o) != k);
                env.push(v.clone());
            }
            let env = spec::process_env(&env, &rec2.config.hostname, &usr.home, cfg.tty);
            let path_env = env.iter().find_map(|v| v.strip_prefix("PATH=")).unwrap_or(spec::DEFAULT_PATH).to_string();
            user::check_command(&root, &cfg.cmd[0], &path_env, &cwd).map_err(|e| {
                Error::invalid(format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: {}: unknown",
                    e.message
                ))
            })?;
            let mut hc = rec2.host_config.clone();
            hc.privileged |= cfg.privileged;
            let caps = spec::capabilities(&hc);
            // CAP_SYS_ADMIN in the permitted set only: the shim needs it for a moment to load the
            // container's seccomp profile into the exec, then drops it before execve.
            // (With no-new-privileges the load needs no capability at all.)
            let mut permitted = caps.clone();
            if !nnp && !permitted.iter().any(|c| c == "CAP_SYS_ADMIN") {
                permitted.push("CAP_SYS_ADMIN".into());
            }
            let mut u = json!({"uid": usr.uid, "gid": usr.gid});
            if !usr.additional_gids.is_empty() {
                u["additionalGids"] = json!(usr.additional_gids);
            }
            let mut process = json!({
                "terminal": cfg.tty,
                "user": u,
                "args": cfg.cmd,
                "env": env,
                "cwd": cwd,
                "capabilities": {"bounding": caps, "effective": caps, "permitted": permitted},
            });
            if nnp {
                process["noNewPrivileges"] = json!(true);
            }
            if let Some(r) = init["process"].get("rlimits") {
                process["rlimits"] = r.clone();
            }
            std::fs::write(&pj, serde_json::to_vec(&process).map_err(|e| Error::internal(e.to_string()))?)?;
            Ok(())
        })
        .await;
        if let Err(err) = prepared {
            // The rootfs goes with the exit: a failure then is the exit's, in Docker's words.
            if !e.running_now().await {
                return Err(not_running(&rec.id));
            }
            let code =
                if err.message.contains("not found") || err.message.contains("no such file") { 127 } else { 126 };
            let mut st = x.state.lock().expect("exec state lock");
            st.exit_code = Some(code);
            return Err(err);
        }
        let (out_tx, output) = mpsc::channel(super::attach::QUEUE);
        let (started_tx, started_rx) = oneshot::channel();
        e.exec_routes
            .lock()
            .expect("exec routes lock")
            .insert(exec_id.to_string(), ExecRoute { out: (!detach).then_some(out_tx), started: Some(started_tx) });
        let req = ExecRequest {
            exec_id: exec_id.to_string(),
            process_json: process_json.clone(),
            open_stdin: x.config.attach_stdin && !detach,
            tty: x.config.tty,
            console_size: x.config.console_size.and_then(super::start::console_size),
        };
        let sent =
            e.shim_send(proto::EXEC, &serde_json::to_vec(&req).map_err(|e| Error::internal(e.to_string()))?).await;
        if let Err(err) = sent {
            e.exec_routes.lock().expect("exec routes lock").remove(exec_id);
            let _ = std::fs::remove_file(&process_json);
            return Err(err);
        }
        let started = started_rx.await.map_err(|_| not_running(&rec.id));
        let _ = std::fs::remove_file(&process_json);
        let started = started?;
        if let Some(msg) = started.error {
            e.exec_routes.lock().expect("exec routes lock").remove(exec_id);
            if msg == proto::ERR_NOT_RUNNING {
                return Err(not_running(&rec.id));
            }
            let mut st = x.state.lock().expect("exec state lock");
            st.exit_code = Some(126);
            return Err(Error::invalid(msg));
        }
        // Running was recorded by the supervisor as it read EXEC_STARTED, in order with the exit
        // report: set here, after a wake-up, it could land after a quick exit and stick.
        self.publish(&format!("exec_start: {}", x.config.cmd.join(" ")), &rec, &[("execID", exec_id.to_string())]);
        let stdin = (x.config.attach_stdin && !detach).then(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Option<Bytes>>();
            let shim = e.shim.clone();
            let id = exec_id.to_string();
            tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    let (kind, data) = match msg {
                        Some(d) => (proto::EXEC_STDIN, proto::with_id(&id, &d)),
                        None => (proto::EXEC_CLOSE_STDIN, proto::with_id(&id, &[])),
                    };
                    if let Some(w) = shim.lock().await.as_mut() {
                        let _ = w.send(kind, &data).await;
                    }
                }
            });
            tx
        });
        Ok(ExecStream { tty: x.config.tty, detach_keys: x.config.detach_keys.clone(), output, stdin })
    }

    /// Routes a shim frame about an exec (called by the container's supervisor).
    pub(super) async fn exec_frame(&self, e: &Entry, kind: u8, data: &[u8]) {
        match kind {
            proto::EXEC_STARTED => {
                if let Ok(s) = serde_json::from_slice::<ExecStarted>(data) {
                    if s.error.is_none() {
                        if let Ok(x) = self.exec_entry(&s.exec_id) {
                            let mut st = x.state.lock().expect("exec state lock");
                            st.running = true;
                            st.pid = s.pid;
                        }
                    }
                    if let Some(r) = e.exec_routes.lock().expect("exec routes lock").get_mut(&s.exec_id) {
                        if let Some(tx) = r.started.take() {
                            let _ = tx.send(s);
                        }
                    }
                }
            }
            proto::EXEC_OUTPUT => {
                let Some((&stream, rest)) = data.split_first() else { return };
                if let Some((id, bytes)) = proto::split_id(rest) {
                    let out = e.exec_routes.lock().expect("exec routes lock").get(&id).and_then(|r| r.out.clone());
                    if let Some(out) = out {
                        // Bounded, as an attach: a client that stops reading slows the exec's
                        // output, and after STALL its stream is dropped (the exec runs on).
                        let chunk = (stream, Bytes::copy_from_slice(bytes));
                        if !matches!(tokio::time::timeout(super::attach::STALL, out.send(chunk)).await, Ok(Ok(()))) {
                            if let Some(r) = e.exec_routes.lock().expect("exec routes lock").get_mut(&id) {
                                r.out = None;
                            }
                        }
                    }
                }
            }
            proto::EXEC_EXITED => {
                if let Ok(x) = serde_json::from_slice::<proto::ExecExited>(data) {
                    self.exec_exited(e, &x.exec_id, x.code as i64);
                }
            }
            _ => {}
        }
    }

    /// Records an exec's exit, then closes its output (in that order: see the module doc).
    pub(super) fn exec_exited(&self, e: &Entry, exec_id: &str, code: i64) {
        if let Ok(x) = self.exec_entry(exec_id) {
            let mut st = x.state.lock().expect("exec state lock");
            st.running = false;
            st.exit_code = Some(code);
            st.pid = 0;
        }
        e.exec_routes.lock().expect("exec routes lock").remove(exec_id);
        let rec = e.record();
        self.publish("exec_die", &rec, &[("execID", exec_id.to_string()), ("exitCode", code.to_string())]);
    }

    /// `POST /exec/{id}/resize`.
    pub async fn exec_resize(&self, exec_id: &str, h: u16, w: u16) -> Result<()> {
        let x = self.exec_entry(exec_id)?;
        let e = self.get(&x.container_id)?;
        let mut size = h.to_be_bytes().to_vec();
        size.extend_from_slice(&w.to_be_bytes());
        e.shim_send(proto::EXEC_RESIZE, &proto::with_id(exec_id, &size)).await
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize(&self, name: &str, h: u16, w: u16) -> Result<()> {
        let e = self.get(name)?;
        let mut size = h.to_be_bytes().to_vec();
        size.extend_from_slice(&w.to_be_bytes());
        e.shim_send(proto::RESIZE, &size).await
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspect> {
        let x = self.exec_entry(exec_id)?;
        let st = x.state.lock().expect("exec state lock");
        let c = &x.config;
        Ok(ExecInspect {
            id: x.id.clone(),
            running: st.running,
            exit_code: st.exit_code,
            process_config: ExecProcessConfig {
                tty: c.tty,
                entrypoint: c.cmd.first().cloned().unwrap_or_default(),
                arguments: c.cmd.iter().skip(1).cloned().collect(),
                privileged: c.privileged,
                user: c.user.clone(),
            },
            open_stdin: c.attach_stdin,
            open_stderr: c.attach_stderr,
            open_stdout: c.attach_stdout,
            can_remove: false,
            container_id: x.container_id.clone(),
            detach_keys: c.detach_keys.clone(),
            pid: st.pid,
        })
    }

    /// Drops one exec record (healthcheck probes, which nobody inspects later).
    pub(super) fn forget_exec(&self, exec_id: &str) {
        self.execs.lock().expect("execs lock").remove(exec_id);
    }

    /// Drops exec records of a removed container.
    pub(super) fn forget_execs(&self, container_id: &str) {
        self.execs.lock().expect("execs lock").retain(|_, x| x.container_id != container_id);
    }
}

/// Docker's answer to an exec in a container whose process is not running.
fn not_running(id: &str) -> Error {
    Error::conflict(format!("Container {id} is not running"))
}
