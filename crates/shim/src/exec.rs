//! Execs: extra processes in the running container, made with libcontainer's tenant builder.

use std::os::fd::OwnedFd;
use std::time::Instant;

use berth_runtime::proto::ExecRequest;
use berth_runtime::shim::ShimConfig;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use crate::supervisor::Stdin;

pub struct ExecProc {
    pub id: String,
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub out: [Option<OwnedFd>; 2],
    pub stdin: Option<Stdin>,
    /// The pty master of a TTY exec, kept for resizes.
    pub master: Option<OwnedFd>,
    pub exit: Option<i32>,
    pub exited_at: Option<Instant>,
}

/// Starts the exec described by `req`. Called from the single-threaded shim, as libcontainer needs.
pub fn spawn(cfg: &ShimConfig, init_pid: i32, req: &ExecRequest) -> Result<ExecProc, String> {
    let id = req.exec_id.clone();
    let base = ContainerBuilder::new(cfg.id.clone(), SyscallType::Linux)
        .with_root_path(&cfg.state_root)
        .map_err(|e| e.to_string())?;
    let dir = req.process_json.parent().unwrap_or(&cfg.bundle);
    let console = format!("x-{}.sock", &id[..8.min(id.len())]);
    let (builder, pending) = crate::stdio::prepare(base, req.tty, req.open_stdin, dir, &console)?;
    let size = req.console_size.filter(|[h, w]| req.tty && *h > 0 && *w > 0);
    // libcontainer's tenant builder drops the container's seccomp profile: the exec applies it itself.
    let seccomp = crate::workload::container_filter(cfg)?;
    let (userns, process_json) = match crate::userns::prepare(init_pid, &req.process_json)? {
        Some((u, staged)) => (Some(u), staged),
        None => (None, req.process_json.clone()),
    };
    let builder = builder.with_executor(crate::workload::Workload { size, seccomp, userns });
    let built = builder.as_tenant().with_detach(true).with_process(Some(&process_json)).build();
    if process_json != req.process_json {
        let _ = std::fs::remove_file(&process_json);
    }
    let pid = built.map_err(|e| format!("OCI runtime exec failed: {e}"))?.as_raw();
    let io = pending.finish(req.console_size)?;
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or("bad exec pid")?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_open {pid}: {e}"))?;
    Ok(ExecProc { id, pid, pidfd, out: io.out, stdin: io.stdin, master: io.master, exit: None, exited_at: None })
}
