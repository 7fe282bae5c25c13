//! User namespaces for `userns-remap`: id maps, a namespace held by an fd, and idmapped mounts.
//!
//! A remapped container runs in a user namespace whose root is an unprivileged host id (from
//! /etc/subuid and /etc/subgid). Its layers stay as they are on disk: the rootfs it sees is an
//! idmapped mount, which shows on-disk id `n` as host id `host + n`, so the container (which maps
//! host `host + n` back to `n`) sees the image's owners unchanged and what it writes lands on disk
//! unshifted — commit, diff, export and other engines see ordinary layers.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use berth_types::{Error, Result};

/// One line of a uid_map or gid_map: `size` ids from `container` on map to `host` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdMap {
    /// The host id of container id `id`, if the maps cover it.
    pub fn to_host(maps: &[IdMap], id: u32) -> Option<u32> {
        maps.iter().find(|m| id >= m.container && id - m.container < m.size).map(|m| m.host + (id - m.container))
    }

    /// The container id of host id `id`, if the maps cover it.
    pub fn to_container(maps: &[IdMap], id: u32) -> Option<u32> {
        maps.iter().find(|m| id >= m.host && id - m.host < m.size).map(|m| m.container + (id - m.host))
    }

    /// The text /proc/<pid>/uid_map takes.
    pub fn lines(maps: &[IdMap]) -> String {
        maps.iter().map(|m| format!("{} {} {}\n", m.container, m.host, m.size)).collect()
    }
}

/// The id maps of a remapped container: container ids to host ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

impl Remap {
    /// The host uid and gid of the container's root.
    pub fn root(&self) -> (u32, u32) {
        (IdMap::to_host(&self.uids, 0).unwrap_or(0), IdMap::to_host(&self.gids, 0).unwrap_or(0))
    }
}

/// A child cloned into a new user namespace with `remap`'s maps, parked until dropped.
struct Holder {
    pid: i32,
    /// The child reads this until we close it: one byte means "maps are written", EOF "exit".
    go: Option<OwnedFd>,
    /// The child writes one byte here once it has done its part (0 = done, else an errno).
    done: OwnedFd,
}

impl Holder {
    /// Clones the child into a new user namespace with `remap`'s maps, or (`Err(fd)`) into the
    /// existing one `fd` refers to; with `net` it also makes a network namespace inside it, so that
    /// the container's root owns it (mounting sysfs, joining it, configuring it from inside all
    /// need that).
    fn spawn(userns: std::result::Result<&Remap, BorrowedFd<'_>>, net: bool) -> Result<Holder> {
        use rustix::pipe::{pipe_with, PipeFlags};
        let pipe = || pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::internal(format!("pipe: {e}")));
        let (go_r, go_w) = pipe()?;
        let (done_r, done_w) = pipe()?;
        // SAFETY: the child runs only async-signal-safe raw syscalls (read, write, unshare, _exit)
        // on memory it owns a copy of, so cloning a multi-threaded process is sound; SIGCHLD makes
        // it reapable by waitpid.
        let flags = if userns.is_ok() { libc::CLONE_NEWUSER } else { 0 };
        let join = userns.err().map_or(-1, |fd| fd.as_raw_fd());
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD, 0, 0, 0, 0) };
        if pid < 0 {
            return Err(Error::internal(format!("clone a user namespace: {}", std::io::Error::last_os_error())));
        }
        if pid == 0 {
            // SAFETY: child side, see above.
            unsafe {
                let mut b = 0u8;
                let buf = &mut b as *mut u8 as *mut libc::c_void;
                // The child is a copy of the whole process: it holds every descriptor the other
                // threads had, among them other namespace children's `go` pipes. Kept open here,
                // such a pipe never reaches EOF and two children wait on each other for good.
                close_all_but(&[go_r.as_raw_fd(), done_w.as_raw_fd(), join]);
                if libc::read(go_r.as_raw_fd(), buf, 1) != 1 {
                    libc::_exit(1);
                }
                let mut status = 0u8;
                if (join >= 0 && libc::setns(join, libc::CLONE_NEWUSER) != 0)
                    || (net && libc::unshare(libc::CLONE_NEWNET) != 0)
                {
                    status = (*libc::__errno_location()).clamp(1, 255) as u8;
                }
                libc::write(done_w.as_raw_fd(), &status as *const u8 as *const libc::c_void, 1);
                while libc::read(go_r.as_raw_fd(), buf, 1) > 0 {}
                libc::_exit(0);
            }
        }
        let h = Holder { pid: pid as i32, go: Some(go_w), done: done_r };
        drop((go_r, done_w));
        if let Ok(remap) = userns {
            let proc = format!("/proc/{}", h.pid);
            write_map(&format!("{proc}/uid_map"), &remap.uids)?;
            write_map(&format!("{proc}/gid_map"), &remap.gids)?;
        }
        let go = h.go.as_ref().expect("go pipe");
        rustix::io::write(go, &[1]).map_err(|e| Error::internal(format!("wake the namespace child: {e}")))?;
        let mut status = [0u8];
        match rustix::io::read(&h.done, &mut status) {
            Ok(1) if status[0] == 0 => Ok(h),
            Ok(1) => Err(Error::internal(format!(
                "enter the user namespace and make a network namespace in it: {}",
                std::io::Error::from_raw_os_error(status[0] as i32)
            ))),
            _ => Err(Error::internal("the namespace child ended early")),
        }
    }

    fn ns(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.pid)
    }
}

/// Closes every descriptor from 3 up but `keep` (negative entries ignored), with `close_range`
/// over the gaps: async-signal-safe, no allocation (runs in a cloned child).
///
/// # Safety
/// Only for a child that will not touch any other descriptor again.
unsafe fn close_all_but(keep: &[i32; 3]) {
    let mut k = *keep;
    k.sort_unstable();
    let mut from: libc::c_uint = 3;
    for &fd in k.iter().filter(|&&fd| fd >= 3) {
        let fd = fd as libc::c_uint;
        if fd > from {
            libc::syscall(libc::SYS_close_range, from, fd - 1, 0);
        }
        from = from.max(fd + 1);
    }
    libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0);
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.go = None;
        let mut status = 0;
        // SAFETY: reaps our own child, which exits as soon as its pipe closes.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// A new user namespace with `remap`'s maps, held by the returned fd alone (for idmapped mounts).
pub fn userns(remap: &Remap) -> Result<OwnedFd> {
    let h = Holder::spawn(Ok(remap), false)?;
    let f = std::fs::File::open(h.ns("user")).map_err(|e| Error::internal(format!("open user namespace: {e}")))?;
    Ok(OwnedFd::from(f))
}

/// A new user namespace with `remap`'s maps pinned at `user`, and with `net` a network namespace
/// it owns pinned there (with `lo` up). Both are bind mounts, as `ip netns` pins; remove each with
/// [`crate::netns::remove`].
pub fn pin_namespaces(remap: &Remap, user: &Path, net: Option<&Path>) -> Result<()> {
    let h = Holder::spawn(Ok(remap), net.is_some())?;
    let mut pins: Vec<(&Path, String)> = vec![(user, h.ns("user"))];
    if let Some(n) = net {
        pins.push((n, h.ns("net")));
    }
    pin(h, &pins, net)
}

/// A network namespace owned by the existing user namespace `userns`, pinned at `net` with `lo`
/// up (for a container that joins another's user namespace but has its own network).
pub fn pin_netns_in(userns: BorrowedFd<'_>, net: &Path) -> Result<()> {
    let h = Holder::spawn(Err(userns), true)?;
    let pins = [(net, h.ns("net"))];
    pin(h, &pins, Some(net))
}

fn pin(h: Holder, pins: &[(&Path, String)], net: Option<&Path>) -> Result<()> {
    let mut made = Vec::new();
    let res = pins.iter().try_for_each(|(target, src)| {
        std::fs::File::create(target)?;
        made.push(*target);
        rustix::mount::mount_bind(src.as_str(), *target)
            .map_err(|e| Error::internal(format!("pin {src} at {}: {e}", target.display())))
    });
    drop(h);
    let res = res.and_then(|()| match net {
        Some(n) => crate::netns::run_in(n, crate::netns::loopback_up),
        None => Ok(()),
    });
    if res.is_err() {
        for p in made {
            let _ = crate::netns::remove(p);
        }
    }
    res
}

fn write_map(path: &str, maps: &[IdMap]) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(IdMap::lines(maps).as_bytes()))
        .map_err(|e| Error::internal(format!("write {path}: {e}")))
}

/// Runs `f` on this thread with its filesystem uid and gid set to `ids` (files it creates get
/// those owners; an idmapped mount refuses ids it does not map), its capabilities kept. Must run
/// on a thread of our own (a blocking-pool thread), as fs ids are per thread.
pub fn with_fs_ids<T>(ids: (u32, u32), f: impl FnOnce() -> T) -> T {
    set_fs_ids(ids);
    let out = f();
    set_fs_ids((0, 0));
    out
}

fn set_fs_ids((uid, gid): (u32, u32)) {
    // SAFETY: setfsuid/setfsgid change only this thread's credentials and cannot fail in a way
    // that matters: an id we may not take is ignored and the old one kept.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
    }
    // Leaving fsuid 0 clears the file capabilities from the effective set; raise them again from
    // the permitted set, which is unchanged.
    if let Ok(cur) = rustix::thread::capabilities(None) {
        let _ =
            rustix::thread::set_capabilities(None, rustix::thread::CapabilitySets { effective: cur.permitted, ..cur });
    }
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at `path` (not its submounts), idmapped through `userns`: ids on
/// disk appear mapped as `userns` maps them. Attach it with `move_mount`, or name it as
/// `/proc/self/fd/N` while the fd is open.
pub fn idmapped_tree(path: &Path, userns: BorrowedFd<'_>) -> Result<OwnedFd> {
    use rustix::mount::{open_tree, OpenTreeFlags};
    let tree = open_tree(rustix::fs::CWD, path, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC)
        .map_err(|e| Error::internal(format!("open_tree {}: {e}", path.display())))?;
    let attr =
        MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (size given) and the empty path; all live for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(Error::internal(format!(
            "idmap the mount of {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(tree)
}

/// Reads the maps of a process (for tests and checks).
pub fn read_maps(path: &str) -> Result<Vec<IdMap>> {
    let mut s = String::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut s))?;
    Ok(s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some(IdMap { container: it.next()??, host: it.next()??, size: it.next()?? })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    /// Namespace children made at once from several threads: each is a copy of the whole process,
    /// so it held every other child's wake-up pipe too, and two children could each keep the
    /// other's pipe open forever (two container creates with userns-remap hung for good).
    #[test]
    #[ignore = "needs root: run with --include-ignored (CI runs as root)"]
    fn concurrent_namespace_children_never_wait_on_each_other() {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let m = vec![IdMap { container: 0, host: 300_000, size: 1000 }];
                let remap = Remap { uids: m.clone(), gids: m };
                for _ in 0..25 {
                    userns(&remap).unwrap();
                }
                let _ = tx.send(());
            });
        }
        for _ in 0..4 {
            rx.recv_timeout(std::time::Duration::from_secs(60)).expect("namespace children waited on each other");
        }
    }

    #[test]
    fn map_arithmetic() {
        let m = [IdMap { container: 0, host: 100_000, size: 65_536 }];
        assert_eq!(IdMap::to_host(&m, 0), Some(100_000));
        assert_eq!(IdMap::to_host(&m, 65_535), Some(165_535));
        assert_eq!(IdMap::to_host(&m, 65_536), None);
        assert_eq!(IdMap::to_container(&m, 100_001), Some(1));
        assert_eq!(IdMap::to_container(&m, 0), None);
        assert_eq!(IdMap::lines(&m), "0 100000 65536\n");
    }

    #[test]
    #[ignore = "needs root: run with --include-ignored (CI runs as root)"]
    fn idmapped_overlay_shows_shifted_owners() {
        let m = vec![IdMap { container: 0, host: 100_000, size: 65_536 }];
        let ns = userns(&Remap { uids: m.clone(), gids: m }).unwrap();
        let t = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = t.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let (l, up, wk, mnt) = (d("l"), d("up"), d("wk"), d("mnt"));
        std::fs::write(l.join("f"), "x").unwrap();
        let o = crate::mount::Overlay { lowers: vec![l], upper: up, work: wk };
        o.mount(&mnt).unwrap();
        // overlayfs cannot be idmapped itself: its layers are.
        assert!(idmapped_tree(&mnt, ns.as_fd()).is_err());
        crate::mount::unmount(&mnt).unwrap();
        let tree = idmapped_tree(&t.path().join("l"), ns.as_fd()).unwrap();
        let view = format!("/proc/self/fd/{}", tree.as_raw_fd());
        assert_eq!(std::fs::metadata(format!("{view}/f")).unwrap().uid(), 100_000);

        let up = t.path().join("up");
        let o = crate::mount::Overlay { lowers: vec![t.path().join("l")], upper: up.join("fs"), work: up.join("work") };
        std::fs::create_dir_all(&o.upper).unwrap();
        std::fs::create_dir_all(&o.work).unwrap();
        o.mount_idmapped(&mnt, ns.as_fd(), (100_000, 100_000)).unwrap();
        assert_eq!(std::fs::metadata(mnt.join("f")).unwrap().uid(), 100_000);
        let st = std::process::Command::new("setpriv")
            .args(["--reuid=100000", "--regid=100000", "--clear-groups", "touch"])
            .arg(mnt.join("by-container-root"))
            .status()
            .unwrap();
        assert!(st.success());
        // Host root's own id is not mapped: it writes as the container's root.
        assert!(std::fs::write(mnt.join("g"), "y").is_err());
        with_fs_ids((100_000, 100_000), || std::fs::write(mnt.join("g"), "y")).unwrap();
        crate::mount::unmount(&mnt).unwrap();
        for f in ["by-container-root", "g"] {
            assert_eq!(std::fs::metadata(o.upper.join(f)).unwrap().uid(), 0, "{f} is stored unshifted");
        }
    }

    #[test]
    #[ignore = "needs root: run with --include-ignored (CI runs as root)"]
    fn pinned_namespaces_carry_the_maps() {
        let m = vec![IdMap { container: 0, host: 200_000, size: 1000 }];
        let t = tempfile::tempdir().unwrap();
        let (u, n) = (t.path().join("user"), t.path().join("net"));
        pin_namespaces(&Remap { uids: m.clone(), gids: m }, &u, Some(&n)).unwrap();
        let out = std::process::Command::new("nsenter")
            .arg(format!("--user={}", u.display()))
            .arg(format!("--net={}", n.display()))
            .args(["cat", "/proc/self/uid_map", "/sys/class/net/lo/operstate"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.split_whitespace().collect::<Vec<_>>().starts_with(&["0", "200000", "1000"]), "{text}");
        crate::netns::remove(&u).unwrap();
        crate::netns::remove(&n).unwrap();
        assert!(!u.exists() && !n.exists());
    }
}
