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
pub fn spawn(cfg: &ShimConfig, req: &ExecRequest) -> Result<ExecProc, String> {
    let id = req.exec_id.clone();
    let base = ContainerBuilder::new(cfg.id.clone(), SyscallType::Linux)
        .with_root_path(&cfg.state_root)
        .map_err(|e| e.to_string())?;
    let dir = req.process_json.parent().unwrap_or(&cfg.bundle);
    let console = format!("x-{}.sock", &id[..8.min(id.len())]);
    let (builder, pending) = crate::stdio::prepare(base, req.tty, req.open_stdin, dir, &console)?;
    let builder = match req.console_size.filter(|[h, w]| req.tty && *h > 0 && *w > 0) {
        Some([rows, cols]) => builder.with_executor(SizedTty { rows, cols }),
        None => builder,
    };
    let pid = builder
        .as_tenant()
        .with_detach(true)
        .with_process(Some(&req.process_json))
        .build()
        .map_err(|e| format!("OCI runtime exec failed: {e}"))?
        .as_raw();
    let io = pending.finish(req.console_size)?;
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or("bad exec pid")?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_open {pid}: {e}"))?;
    Ok(ExecProc { id, pid, pidfd, out: io.out, stdin: io.stdin, master: io.master, exit: None, exited_at: None })
}

/// The exec'd program of a TTY exec must see the client's window size from its first instruction
/// (`stty size`, full-screen programs), as runc's `consoleSize` guarantees. libcontainer runs the
/// workload before the shim gets the pty master to resize it, so this executor, running in the
/// container process just before `execve`, sets the size on its own terminal (the pty slave).
#[derive(Clone)]
struct SizedTty {
    rows: u16,
    cols: u16,
}

impl libcontainer::workload::Executor for SizedTty {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorError> {
        // SAFETY: fd 0 is the pty slave libcontainer installed and stays open across this call.
        let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
        let ws = rustix::termios::Winsize { ws_row: self.rows, ws_col: self.cols, ws_xpixel: 0, ws_ypixel: 0 };
        let _ = rustix::termios::tcsetwinsize(stdin, ws);
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }
}
