//! Copy-up: image content under a mount point is copied into an empty volume before first use.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_sys::root::Root;
use berth_types::Result;

/// Copies the directory `dest` of the container root `rootfs` into `volume`, if the volume is empty
/// and the image has a directory there. Paths inside the rootfs are resolved within it.
pub fn copy_up(rootfs: &Root, dest: &str, volume: &Path) -> Result<bool> {
    if std::fs::read_dir(volume)?.next().is_some() {
        return Ok(false);
    }
    let Some(src) = rootfs.open_dir(Path::new(dest))? else {
        return Ok(false);
    };
    let base = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&src));
    copy_dir(Path::new(&base), volume)?;
    let meta = std::fs::metadata(&base)?;
    set_owner_mode(volume, &meta)?;
    Ok(true)
}

fn set_owner_mode(p: &Path, meta: &std::fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// Copies a tree without following any symlink inside it.
fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_dir(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            // Devices, fifos and sockets are not copied up, as in Docker.
            continue;
        }
        set_owner_mode(&to, &meta)?;
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
        // Missing in the image: nothing to copy.
        let vol2 = tempfile::tempdir().unwrap();
        assert!(!copy_up(&r, "/nothere", vol2.path()).unwrap());
    }
}
