//! Copy-up: image content under a mount point is copied into an empty volume before first use.
//!
//! A volume is shared: another container may plant symlinks in it while we copy. So nothing here
//! resolves a path again: both trees are walked through directory fds, every open is `O_NOFOLLOW`,
//! files are created `O_EXCL`, and owner and mode are set on the opened fd.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use berth_sys::root::Root;
use berth_types::Result;
use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};

/// Copies the directory `dest` of the container root `rootfs` into `volume`, if the volume is empty
/// and the image has a directory there. Paths inside the rootfs are resolved within it.
pub fn copy_up(rootfs: &Root, dest: &str, volume: &Path) -> Result<bool> {
    let dst = rfs::open(volume, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .map_err(std::io::Error::from)?;
    if Dir::read_from(&dst).map_err(std::io::Error::from)?.flatten().any(|e| !is_dot(e.file_name().to_bytes())) {
        return Ok(false);
    }
    let Some(src) = rootfs.open_dir(Path::new(dest))? else {
        return Ok(false);
    };
    copy_dir(&src, &dst)?;
    set_owner_mode(&dst, &rfs::fstat(&src).map_err(std::io::Error::from)?)?;
    Ok(true)
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// Owner then mode (chown clears setuid bits), on the fd itself.
fn set_owner_mode(fd: impl AsFd, st: &rfs::Stat) -> std::io::Result<()> {
    rfs::fchown(&fd, Some(rfs::Uid::from_raw(st.st_uid)), Some(rfs::Gid::from_raw(st.st_gid)))?;
    rfs::fchmod(&fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    Ok(())
}

fn open_at(dir: &OwnedFd, name: &std::ffi::CStr, flags: OFlags, mode: Mode) -> std::io::Result<OwnedFd> {
    Ok(rfs::openat(dir, name, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode)?)
}

/// Copies a tree without following any symlink on either side.
fn copy_dir(src: &OwnedFd, dst: &OwnedFd) -> std::io::Result<()> {
    for e in Dir::read_from(src)? {
        let e = e?;
        let name = e.file_name();
        if is_dot(name.to_bytes()) {
            continue;
        }
        let st = rfs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
                let from = open_at(src, name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
                let to = open_at(dst, name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
                copy_dir(&from, &to)?;
                set_owner_mode(&to, &st)?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(src, name, Vec::new())?;
                rfs::symlinkat(target.as_c_str(), dst, name)?;
                let owner = (Some(rfs::Uid::from_raw(st.st_uid)), Some(rfs::Gid::from_raw(st.st_gid)));
                rfs::chownat(dst, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            FileType::RegularFile => {
                // O_NONBLOCK: a file swapped for a fifo after the stat must not hang the copy.
                let from = open_at(src, name, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
                if FileType::from_raw_mode(rfs::fstat(&from)?.st_mode) != FileType::RegularFile {
                    continue;
                }
                let to =
                    open_at(dst, name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, Mode::from_raw_mode(0o600))?;
                let (mut r, mut w) = (std::fs::File::from(from), std::fs::File::from(to));
                std::io::copy(&mut r, &mut w)?;
                set_owner_mode(&w, &st)?;
            }
            // Devices, fifos and sockets are not copied up, as in Docker.
            _ => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_into_empty_volumes_only() {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("srv/sub")).unwrap();
        std::fs::write(rootfs.path().join("srv/sub/f"), "image").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", rootfs.path().join("srv/link")).unwrap();
        let vol = tempfile::tempdir().unwrap();
        let r = Root::open(rootfs.path()).unwrap();
        assert!(copy_up(&r, "/srv", vol.path()).unwrap());
        assert_eq!(std::fs::read_to_string(vol.path().join("sub/f")).unwrap(), "image");
        assert_eq!(std::fs::read_link(vol.path().join("link")).unwrap(), Path::new("/etc/passwd"));
        // Not empty any more: nothing copied again.
        std::fs::write(rootfs.path().join("srv/new"), "x").unwrap();
        assert!(!copy_up(&r, "/srv", vol.path()).unwrap());
        assert!(!vol.path().join("new").exists());
        // A symlink planted in the volume is never followed: the copy fails instead of writing
        // through it.
        let vol3 = tempfile::tempdir().unwrap();
        let victim = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(victim.path(), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(victim.path(), vol3.path().join("new")).unwrap();
        let fd = rfs::open(vol3.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let src = r.open_dir(Path::new("/srv")).unwrap().unwrap();
        assert!(copy_dir(&src, &fd).is_err());
        assert_eq!(std::fs::read_to_string(victim.path()).unwrap(), "");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(victim.path()).unwrap().permissions().mode() & 0o777, 0o600);
        // Missing in the image: nothing to copy.
        let vol2 = tempfile::tempdir().unwrap();
        assert!(!copy_up(&r, "/nothere", vol2.path()).unwrap());
    }
}
