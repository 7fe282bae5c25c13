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
    let size = req.console_size.filter(|[h, w]| req.tty && *h > 0 && *w > 0);
    // libcontainer's tenant builder drops the container's seccomp profile: the exec applies it itself.
    let seccomp = oci_spec::runtime::Spec::load(cfg.bundle.join("config.json"))
        .ok()
        .and_then(|s| s.linux().as_ref().and_then(|l| l.seccomp().clone()));
    let builder = builder.with_executor(ExecExecutor { size, seccomp });
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

/// Runs in the exec'd process just before `execve`.
///
/// A TTY exec's program must see the client's window size from its first instruction (`stty size`,
/// full-screen programs), as runc's `consoleSize` guarantees; libcontainer runs the workload before
/// the shim gets the pty master, so the size is set here on the pty slave.
///
/// An exec runs under the container's seccomp profile, as with runc. Loading a filter without
/// `no_new_privs` needs CAP_SYS_ADMIN, which the container's own set usually lacks: the daemon
/// puts it in the exec's permitted set only (never bounding, so `execve` cannot give it back),
/// and it is raised for the load and dropped before `execve`.
#[derive(Clone)]
struct ExecExecutor {
    size: Option<[u16; 2]>,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

fn exec_err(what: &str, e: impl std::fmt::Display) -> libcontainer::workload::ExecutorError {
    libcontainer::workload::ExecutorError::Other(format!("{what}: {e}"))
}

impl libcontainer::workload::Executor for ExecExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorError> {
        if let Some([rows, cols]) = self.size {
            // SAFETY: fd 0 is the pty slave libcontainer installed and stays open across this call.
            let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
            let ws = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            let _ = rustix::termios::tcsetwinsize(stdin, ws);
        }
        if let Some(profile) = &self.seccomp {
            use rustix::thread::{capabilities, set_capabilities, CapabilitySet, CapabilitySets};
            let cur = capabilities(None).map_err(|e| exec_err("capget", e))?;
            let admin = CapabilitySet::SYS_ADMIN;
            let borrowed = !cur.effective.contains(admin);
            if borrowed {
                if cur.permitted.contains(admin) {
                    set_capabilities(None, CapabilitySets { effective: cur.effective | admin, ..cur })
                        .map_err(|e| exec_err("raise CAP_SYS_ADMIN", e))?;
                } else {
                    // Not ours to borrow: fall back to no_new_privs, which also allows the load.
                    rustix::thread::set_no_new_privs(true).map_err(|e| exec_err("no_new_privs", e))?;
                }
            }
            libcontainer::seccomp::initialize_seccomp(profile).map_err(|e| exec_err("seccomp", e))?;
            if borrowed {
                let permitted = if cur.permitted.contains(admin) { cur.permitted - admin } else { cur.permitted };
                set_capabilities(
                    None,
                    CapabilitySets { effective: cur.effective, permitted, inheritable: cur.inheritable },
                )
                .map_err(|e| exec_err("drop CAP_SYS_ADMIN", e))?;
            }
        }
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }
}
