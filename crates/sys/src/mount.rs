//! Overlay mounts and unmounts.

use std::path::{Path, PathBuf};

use berth_types::{Error, Result};
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, unmount as umount2, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MoveMountFlags, UnmountFlags,
};

/// An overlay mount to make: lower layers top-most first, as overlayfs orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Overlay {
    /// Mounts the overlay on `target`. Uses `lowerdir+` (Linux 6.8+) so the number of layers is not
    /// limited by the page-sized option string; falls back to `mount(2)` on older kernels.
    pub fn mount(&self, target: &Path) -> Result<()> {
        if self.lowers.is_empty() {
            return Err(Error::invalid("overlay needs at least one lower directory"));
        }
        match self.mount_new_api(target) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => self.mount_legacy(target),
            Err(e) => Err(Error::internal(format!("mount overlay on {}: {e}", target.display()))),
        }
    }

    fn mount_new_api(&self, target: &Path) -> rustix::io::Result<()> {
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for l in &self.lowers {
            fsconfig_set_string(&fs, "lowerdir+", l)?;
        }
        fsconfig_set_string(&fs, "upperdir", &self.upper)?;
        fsconfig_set_string(&fs, "workdir", &self.work)?;
        // Docker's overlay2 driver mounts with index=off: no stale-index failures after restores.
        fsconfig_set_string(&fs, "index", "off")?;
        fsconfig_create(&fs)?;
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
        move_mount(&mnt, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
    }

    /// Mounts the overlay on `target` for a container in the user namespace `userns`: every layer
    /// is an idmapped mount, so the container sees the image's owners unshifted and what it writes
    /// lands on disk unshifted. overlayfs makes upper entries with the mounter's credentials,
    /// which must be mapped in the idmapped upper layer: the mount is made with fs ids `root` (the
    /// container root's host ids). Needs Linux 6.8+ (`lowerdir+`).
    pub fn mount_idmapped(&self, target: &Path, userns: std::os::fd::BorrowedFd<'_>, root: (u32, u32)) -> Result<()> {
        use std::os::fd::AsRawFd;
        let (Some(upper_name), Some(work_name), Some(top)) =
            (self.upper.file_name(), self.work.file_name(), self.upper.parent())
        else {
            return Err(Error::invalid("overlay upper directory has no parent"));
        };
        if self.work.parent() != Some(top) {
            return Err(Error::invalid("overlay upper and work directories must share a parent"));
        }
        let lowers = self.lowers.iter().map(|l| crate::idmap::idmapped_tree(l, userns)).collect::<Result<Vec<_>>>()?;
        let top = crate::idmap::idmapped_tree(top, userns)?;
        let view = |fd: &std::os::fd::OwnedFd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let idmapped = Overlay {
            lowers: lowers.iter().map(view).collect(),
            upper: view(&top).join(upper_name),
            work: view(&top).join(work_name),
        };
        crate::idmap::with_fs_ids(root, || idmapped.mount_new_api(target))
            .map_err(|e| Error::internal(format!("mount idmapped overlay on {}: {e}", target.display())))
    }

    fn mount_legacy(&self, target: &Path) -> Result<()> {
        let lowers: Vec<String> = self.lowers.iter().map(|p| p.display().to_string()).collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={},index=off",
            lowers.join(":"),
            self.upper.display(),
            self.work.display()
        );
        let data = std::ffi::CString::new(data).map_err(|_| Error::invalid("overlay path contains NUL"))?;
        rustix::mount::mount("overlay", target, "overlay", rustix::mount::MountFlags::empty(), Some(data.as_c_str()))
            .map_err(|e| Error::internal(format!("mount overlay on {}: {e}", target.display())))
    }
}

/// Mounts `source` of `fstype` on `target` with mount(8)-style options: flag words (`bind`, `rbind`,
/// `ro`, `nosuid`, `nodev`, `noexec`) become mount flags, the rest (`size=64m`, `mode=1777`, ...) data.
pub fn mount_fs(source: &str, target: &Path, fstype: &str, options: &[String]) -> Result<()> {
    use rustix::mount::MountFlags as F;
    let mut flags = F::empty();
    let mut data = Vec::new();
    for o in options.iter().filter(|o| !o.is_empty()) {
        match o.as_str() {
            "bind" => flags |= F::BIND,
            "rbind" => flags |= F::BIND | F::REC,
            "ro" => flags |= F::RDONLY,
            "rw" => {}
            "nosuid" => flags |= F::NOSUID,
            "nodev" => flags |= F::NODEV,
            "noexec" => flags |= F::NOEXEC,
            "noatime" => flags |= F::NOATIME,
            other => data.push(other.to_string()),
        }
    }
    let fstype = if flags.contains(F::BIND) || fstype == "none" { "" } else { fstype };
    let data = std::ffi::CString::new(data.join(",")).map_err(|_| Error::invalid("mount options contain NUL"))?;
    rustix::mount::mount(source, target, fstype, flags, Some(data.as_c_str()))
        .map_err(|e| Error::internal(format!("mount {source} on {}: {e}", target.display())))
}

/// Bind-mounts the inode `fd` refers to on `target` (a file or directory that exists). The source
/// is the fd's /proc link, which names the inode already resolved: nothing re-resolves a path that
/// someone else (a container sharing a volume) could have turned into a symlink meanwhile.
pub fn bind_fd(fd: &std::os::fd::OwnedFd, target: &Path) -> Result<()> {
    let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
    rustix::mount::mount_bind(source.as_str(), target)
        .map_err(|e| Error::internal(format!("bind mount on {}: {e}", target.display())))
}

/// Detaches whatever is mounted on `target`; not mounted is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::internal(format!("unmount {}: {e}", target.display()))),
    }
}

/// True when `path` is a mount point: its mount id differs from its parent's (statx, Linux 5.8+),
/// else, on older kernels, a line of mountinfo names it. Reading mountinfo costs a line per mount
/// on the host — one per running container — so it is the fallback, not the way.
pub fn is_mountpoint(path: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let mnt_id = |p: &Path| {
        statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID)
            .ok()
            .filter(|s| StatxFlags::from_bits_retain(s.stx_mask).contains(StatxFlags::MNT_ID))
            .map(|s| s.stx_mnt_id)
    };
    match path.parent() {
        Some(parent) => match (mnt_id(path), mnt_id(parent)) {
            (Some(a), Some(b)) => return a != b,
            (None, _) if !path.exists() => return false,
            _ => {}
        },
        // The root of the namespace is a mount point; an empty path is none.
        None => return path.has_root(),
    }
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_by_mount_id() {
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(is_mountpoint(Path::new("/")));
        let t = tempfile::tempdir().unwrap();
        assert!(!is_mountpoint(t.path()));
        assert!(!is_mountpoint(&t.path().join("missing")));
        // A symlink is not the mount it points into.
        assert!(!is_mountpoint(Path::new("/proc/self")));
    }

    #[test]
    #[ignore = "needs root: run with --include-ignored (CI runs as root)"]
    fn overlay_mount_roundtrip() {
        let t = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = t.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let (l1, l2, up, wk, mnt) = (d("l1"), d("l2"), d("up"), d("wk"), d("mnt"));
        std::fs::write(l1.join("a"), "top").unwrap();
        std::fs::write(l2.join("a"), "bottom").unwrap();
        std::fs::write(l2.join("b"), "b").unwrap();
        let o = Overlay { lowers: vec![l1, l2], upper: up.clone(), work: wk };
        o.mount(&mnt).unwrap();
        assert!(is_mountpoint(&mnt));
        assert_eq!(std::fs::read_to_string(mnt.join("a")).unwrap(), "top");
        std::fs::write(mnt.join("c"), "new").unwrap();
        unmount(&mnt).unwrap();
        assert!(!is_mountpoint(&mnt));
        assert_eq!(std::fs::read_to_string(up.join("c")).unwrap(), "new");
        unmount(&mnt).unwrap();
    }
}
