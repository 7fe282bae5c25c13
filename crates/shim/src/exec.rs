//! Execs: extra processes in the running container, made with libcontainer's tenant builder.

use std::os::fd::OwnedFd;
use std::time::Instant;

use berth_runtime::proto::ExecRequest;
use berth_runtime::shim::ShimConfig;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

pub struct ExecProc {
    pub id: String,
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub out: [Option<OwnedFd>; 2],
    pub stdin: Option<OwnedFd>,
    pub exit: Option<i32>,
    pub exited_at: Option<Instant>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Starts the exec described by `req`. Called from the single-threaded shim, as libcontainer needs.
pub fn spawn(cfg: &ShimConfig, req: &ExecRequest) -> Result<ExecProc, String> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut builder = ContainerBuilder::new(cfg.id.clone(), SyscallType::Linux)
        .with_root_path(&cfg.state_root)
        .map_err(|e| e.to_string())?
        .with_stdout(out_w)
        .with_stderr(err_w);
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
        Some(ours)
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
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or("bad exec pid")?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_open {pid}: {e}"))?;
    Ok(ExecProc {
        id: req.exec_id.clone(),
        pid,
        pidfd,
        out: [Some(out_r), Some(err_r)],
        stdin,
        exit: None,
        exited_at: None,
    })
}
