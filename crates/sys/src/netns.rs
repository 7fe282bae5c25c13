//! Network namespaces pinned by a bind mount on a file, the way `ip netns` does it.

use std::path::Path;

use berth_types::{Error, Result};
use rustix::mount::{mount_bind, unmount, UnmountFlags};
use rustix::thread::{unshare_unsafe, UnshareFlags};

/// Creates a network namespace with `lo` up and pins it at `path`.
///
/// `unshare` changes the calling thread, so it runs on a throwaway OS thread, never on a tokio worker.
pub fn create(path: &Path) -> Result<()> {
    std::fs::File::create(path)?;
    let p = path.to_path_buf();
    let res = std::thread::spawn(move || -> Result<()> {
        // SAFETY: CLONE_NEWNET only changes this thread's network namespace; this thread owns no
        // sockets or other state tied to the old namespace, and ends right after.
        unsafe { unshare_unsafe(UnshareFlags::NEWNET) }.map_err(|e| Error::internal(format!("unshare netns: {e}")))?;
        loopback_up()?;
        mount_bind("/proc/thread-self/ns/net", &p)
            .map_err(|e| Error::internal(format!("pin netns at {}: {e}", p.display())))
    })
    .join()
    .map_err(|_| Error::internal("netns thread panicked"))?;
    if res.is_err() {
        let _ = std::fs::remove_file(path);
    }
    res
}

/// Unpins and removes a namespace made by [`create`]; a missing one is not an error.
pub fn remove(path: &Path) -> Result<()> {
    match unmount(path, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(Error::internal(format!("unmount netns {}: {e}", path.display()))),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
pub(crate) fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2); the fd is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, which lives for both calls; the
    // ifr_ifru union is accessed as ifru_flags, the member these ioctls use.
    let rc = unsafe {
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        rc
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours and not used afterwards.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(Error::internal(format!("bring up lo: {err}")));
    }
    Ok(())
}

/// Runs `f` on a throwaway OS thread inside the network namespace pinned at `path`. Sockets `f`
/// opens stay in that namespace after the thread ends (the embedded DNS listens this way).
pub fn run_in<T: Send + 'static>(path: &Path, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let ns = std::fs::File::open(path).map_err(|e| Error::internal(format!("open netns {}: {e}", path.display())))?;
    std::thread::spawn(move || -> Result<T> {
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| Error::internal(format!("setns: {e}")))?;
        f()
    })
    .join()
    .map_err(|_| Error::internal("netns thread panicked"))?
}

#[cfg(test)]
mod tests {
    #[test]
    #[ignore = "needs root: run with --include-ignored (CI runs as root)"]
    fn create_and_remove() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("ns");
        super::create(&p).unwrap();
        assert!(crate::mount::is_mountpoint(&p));
        super::remove(&p).unwrap();
        assert!(!p.exists());
        super::remove(&p).unwrap();
    }
}
