//! Process-level calls for the shim: detaching from the daemon and signal dispositions.

use berth_types::{Error, Result};

/// Forks; the parent exits at once and the child continues in a new session, so the caller is
/// re-parented away from whoever spawned it. Must be called while the process is single-threaded.
pub fn daemonize() -> Result<()> {
    // SAFETY: the shim calls this first thing, while it has exactly one thread, so the child is a
    // complete copy with no locks held by vanished threads.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error().into()),
        0 => {}
        // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the child now.
        _ => unsafe { libc::_exit(0) },
    }
    rustix::process::setsid().map_err(|e| Error::internal(format!("setsid: {e}")))?;
    Ok(())
}

/// Makes the caller adopt orphaned descendants, so it can reap the container's processes.
pub fn set_child_subreaper() -> Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| Error::internal(format!("set child subreaper: {e}")))
}

extern "C" fn noop(_: libc::c_int) {}

/// Replaces SIGPIPE's disposition with a handler that does nothing. Writes to a closed pipe then fail
/// with EPIPE instead of killing us, and — unlike SIG_IGN, which survives execve — children get the
/// default disposition back when they exec, as a container's processes must.
pub fn sigpipe_noop_handler() -> Result<()> {
    // SAFETY: sigaction with a zeroed struct plus a valid handler; `noop` is async-signal-safe.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = noop as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGPIPE, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) has no memory effects.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Whether `pid` is a live process: it exists, is neither a zombie nor dead, and is not on its way
/// out (PF_EXITING: a pid namespace's init waiting in exit for its namespace to empty looks
/// running by its state alone). Read from `/proc/<pid>/stat`, after the command's closing
/// parenthesis (the command itself may hold one).
pub fn alive(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some((_, rest)) = stat.rsplit_once(')') else { return false };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().and_then(|s| s.chars().next());
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    !matches!(state, None | Some('Z' | 'X' | 'x')) && flags & PF_EXITING == 0
}

/// Reaps `pid` if it exited: `Some(docker_exit_code, signal)`.
pub fn try_wait(pid: i32) -> Option<(i32, Option<i32>)> {
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r != pid {
        return None;
    }
    if libc::WIFEXITED(status) {
        Some((libc::WEXITSTATUS(status), None))
    } else if libc::WIFSIGNALED(status) {
        let s = libc::WTERMSIG(status);
        Some((128 + s, Some(s)))
    } else {
        None
    }
}

/// Reaps any exited child other than the ones we track by pid (zombies adopted as subreaper).
pub fn reap_others(keep: &[i32]) {
    loop {
        let mut status = 0;
        // SAFETY: as above. WNOWAIT peeks first so a tracked child is never reaped here.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        // SAFETY: waitid filled `info` for an exited child when it returned 0.
        let pid = unsafe { info.si_pid() };
        if r != 0 || pid == 0 || keep.contains(&pid) {
            return;
        }
        // SAFETY: reaping the child waitid just reported.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    }
}

/// Parses a signal given by number or name (`KILL`, `SIGKILL`, `9`).
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.trim_start_matches("SIG").trim_start_matches("sig").to_ascii_uppercase();
    let n = match name.as_str() {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(Error::invalid(format!("Invalid signal: {s}"))),
    };
    Ok(n)
}

/// A sealed in-memory copy of the executable at `path`, to run instead of the file (the
/// CVE-2019-5736 defence): a process in a container that reaches `/proc/<pid>/exe` of something
/// berthd started finds an anonymous memfd whose content can never change (write, shrink, grow
/// and further seals are sealed), never the binary on the host.
pub fn sealed_copy(path: &std::path::Path) -> berth_types::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
    let err = |what: &str, e: std::io::Error| berth_types::Error::internal(format!("{what} {}: {e}", path.display()));
    let fd = memfd_create("berth-shim", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| err("memfd for", e.into()))?;
    let mut src = std::fs::File::open(path).map_err(|e| err("open", e))?;
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst).map_err(|e| err("copy", e))?;
    let fd = std::os::fd::OwnedFd::from(dst);
    fcntl_add_seals(&fd, SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE)
        .map_err(|e| err("seal copy of", e.into()))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals() {
        assert_eq!(super::parse_signal("KILL").unwrap(), 9);
        assert_eq!(super::parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(super::parse_signal("10").unwrap(), 10);
        assert!(super::parse_signal("NOPE").is_err());
        assert!(super::parse_signal("0").is_err());
    }

    #[test]
    fn alive_is_false_for_zombies_and_the_gone() {
        assert!(super::alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: a zombie once it has exited.
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!super::alive(pid));
        child.wait().unwrap();
        assert!(!super::alive(pid));
    }
}
