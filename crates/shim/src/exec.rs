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

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn pidfd(pid: i32) -> Result<OwnedFd, String> {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or("bad exec pid")?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_open {pid}: {e}"))
}

fn base(cfg: &ShimConfig) -> Result<ContainerBuilder, String> {
    ContainerBuilder::new(cfg.id.clone(), SyscallType::Linux).with_root_path(&cfg.state_root).map_err(|e| e.to_string())
}

/// Starts the exec described by `req`. Called from the single-threaded shim, as libcontainer needs.
pub fn spawn(cfg: &ShimConfig, req: &ExecRequest) -> Result<ExecProc, String> {
    let id = req.exec_id.clone();
    if req.tty {
        let dir = req.process_json.parent().unwrap_or(&cfg.bundle);
        let console = crate::tty::Console::listen(dir, &format!("x-{}.sock", &id[..8.min(id.len())]))?;
        let pid = base(cfg)?
            .with_console_socket(Some(&console.path))
            .as_tenant()
            .with_detach(true)
            .with_process(Some(&req.process_json))
            .build()
            .map_err(|e| format!("OCI runtime exec failed: {e}"))?
            .as_raw();
        let master = console.receive()?;
        crate::tty::initial_size(&master, req.console_size);
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup pty master: {e}"));
        let stdin = if req.open_stdin { Some(Stdin::Tty(dup(&master)?)) } else { None };
        let out = [Some(dup(&master)?), None];
        return Ok(ExecProc {
            id,
            pid,
            pidfd: pidfd(pid)?,
            out,
            stdin,
            master: Some(master),
            exit: None,
            exited_at: None,
        });
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut builder = base(cfg)?.with_stdout(out_w).with_stderr(err_w);
    let stdin = if req.open_stdin {
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let _ = rustix::net::shutdown(&theirs, rustix::net::Shutdown::Write);
        builder = builder.with_stdin(theirs);
        Some(Stdin::Socket(ours))
    } else {
        let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
        builder = builder.with_stdin(OwnedFd::from(null));
        None
    };
    let pid = builder
        .as_tenant()
        .with_detach(true)
        .with_process(Some(&req.process_json))
        .build()
        .map_err(|e| format!("OCI runtime exec failed: {e}"))?
        .as_raw();
    let out = [Some(out_r), Some(err_r)];
    Ok(ExecProc { id, pid, pidfd: pidfd(pid)?, out, stdin, master: None, exit: None, exited_at: None })
}
