//! berth-shim: supervises one container. See README.md for its role.

mod exec;
mod log;
mod seccomp;
mod stdio;
mod supervisor;
mod tty;
mod userns;
mod workload;

use std::io::Write;
use std::path::PathBuf;

use berth_runtime::shim::{ShimConfig, CONFIG_FILE};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

fn main() {
    let bundle = match std::env::args_os().nth(1) {
        Some(b) => PathBuf::from(b),
        None => {
            eprintln!("usage: berth-shim <bundle>");
            std::process::exit(2);
        }
    };
    // Our stdout is the readiness pipe berthd reads until it closes.
    let mut ready = std::io::stdout();
    let cfg: ShimConfig = match std::fs::read(bundle.join(CONFIG_FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(ready, "err read shim config: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = berth_sys::process::daemonize() {
        let _ = writeln!(ready, "err daemonize: {e}");
        std::process::exit(1);
    }
    match create(&cfg) {
        Ok(sup) => {
            let _ = writeln!(ready, "ok {}", sup.pid());
            let _ = ready.flush();
            close_stdio();
            sup.run();
        }
        Err(e) => {
            let _ = writeln!(ready, "err {e}");
            std::process::exit(1);
        }
    }
}

/// Points fds 0–2 at /dev/null so that berthd's readiness pipe closes and nothing we print lands
/// anywhere unexpected.
fn close_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

fn create(cfg: &ShimConfig) -> Result<supervisor::Supervisor, String> {
    berth_sys::process::set_child_subreaper().map_err(|e| e.to_string())?;
    berth_sys::process::sigpipe_noop_handler().map_err(|e| e.to_string())?;
    let listener = supervisor::listen(&cfg.socket)?;
    own_mount_namespace(cfg)?;
    let seccomp = workload::take_from_spec(cfg)?;
    let base = ContainerBuilder::new(cfg.id.clone(), SyscallType::Linux)
        .with_root_path(&cfg.state_root)
        .map_err(|e| e.to_string())?
        .with_executor(workload::Workload { size: None, seccomp, userns: None });
    let (builder, pending) = stdio::prepare(base, cfg.tty, cfg.open_stdin, &cfg.bundle, "console.sock")?;
    let container = builder
        .validate_id()
        .map_err(|e| e.to_string())?
        .as_init(&cfg.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("OCI runtime create failed: {e}"))?;
    let pid = container.pid().map(|p| p.as_raw()).ok_or("container has no pid")?;
    let io = pending.finish(cfg.console_size)?;
    supervisor::Supervisor::new(cfg.clone(), container, pid, listener, io.out, io.stdin, io.master)
}

/// Gives the shim (and so its container, whose namespace libcontainer copies from ours) a mount
/// namespace without the other containers' mounts: see `berth_sys::mntscope`. Makes the mount
/// table every mountinfo read in libcontainer and libcgroups walks the same size at 1 or 1,000
/// running containers.
fn own_mount_namespace(cfg: &ShimConfig) -> Result<(), String> {
    if cfg.detach_mounts.is_empty() {
        return Ok(());
    }
    // SAFETY: the shim is single-threaded here (libcontainer needs it so too): no other thread
    // shares the fs attributes and mount namespace this changes.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|e| format!("unshare mount namespace: {e}"))?;
    berth_sys::mntscope::prune_namespace(&cfg.detach_mounts, &cfg.keep_mounts).map_err(|e| e.to_string())
}
