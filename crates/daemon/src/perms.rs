//! Who may reach berthd's directories on the host (Docker's CVE-2021-41091 class).
//!
//! Layers hold whatever images bring — setuid-root binaries, device nodes — and bundles and logs
//! hold containers' environments and output. No host user but root may walk into them. The data
//! root is 0710 and everything directly under it root-only (0700 directories, 0600 files); the exec
//! root is 0711, because the default API socket lives in it (its own mode decides who may use it),
//! and its directories are 0700. Checked and corrected at every start, as a root created by an older
//! berthd, or loosened by hand, must not stay open. Inside containers nothing changes: setuid
//! binaries work as with Docker, because the fix is that host users cannot reach the layers.
//!
//! With `userns-remap`, a container's runtime resolves its rootfs, volumes and /etc files as the
//! container's root, an unprivileged host id: the directories on those paths give search (x, not
//! read) to that root's group, and nothing more (Docker gives the same to its remapped root).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

pub const DATA_ROOT_MODE: u32 = 0o710;
pub const EXEC_ROOT_MODE: u32 = 0o711;
/// What berthd makes under each root (the stores make theirs when they open).
const DATA_DIRS: &[&str] = &["containers", "volumes", "snapshots"];
const EXEC_DIRS: &[&str] = &["containers", "s", "netns", "runtime", "subpaths", "userns"];

/// Sets the modes above; returns what it had to correct, for the log. `remap_gid` is the group of
/// remapped containers' root, which may pass through the data root and the folders under it that
/// lead to their files.
pub fn secure_roots(data_root: &Path, exec_root: &Path, remap_gid: Option<u32>) -> std::io::Result<Vec<String>> {
    let mut fixed = Vec::new();
    // Made now (not on first use with the default 0755), so they are never open for a moment.
    for (root, dirs) in [(data_root, DATA_DIRS), (exec_root, EXEC_DIRS)] {
        for d in dirs {
            std::fs::DirBuilder::new().mode(0o700).recursive(true).create(root.join(d))?;
        }
    }
    for (root, mode) in [(data_root, DATA_ROOT_MODE), (exec_root, EXEC_ROOT_MODE)] {
        set_mode(root, mode, &mut fixed)?;
        set_group(root, if root == data_root { remap_gid.unwrap_or(0) } else { 0 }, &mut fixed)?;
        for e in std::fs::read_dir(root)?.flatten() {
            let ft = e.file_type()?;
            let on_path = ft.is_dir() && remap_paths(root == data_root).iter().any(|d| root.join(d) == e.path());
            if on_path {
                set_group(&e.path(), remap_gid.unwrap_or(0), &mut fixed)?;
            }
            // Sockets keep their own mode: the API socket's decides who may use the API.
            let mode = if on_path && remap_gid.is_some() {
                0o710
            } else if ft.is_dir() {
                0o700
            } else if ft.is_file() {
                0o600
            } else {
                continue;
            };
            set_mode(&e.path(), mode, &mut fixed)?;
        }
    }
    Ok(fixed)
}

/// The folders under the data root (or the exec root) on the way to what a remapped container's
/// runtime opens: its rootfs, /etc files and volumes (and volume subpaths), its network namespace.
fn remap_paths(data: bool) -> &'static [&'static str] {
    if data {
        &["containers", "volumes", "snapshots"]
    } else {
        // Network namespaces are joined by path once the runtime is in the user namespace.
        &["subpaths", "netns"]
    }
}

fn set_group(p: &Path, gid: u32, fixed: &mut Vec<String>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let now = std::fs::symlink_metadata(p)?.gid();
    if now != gid {
        std::os::unix::fs::lchown(p, None, Some(gid))?;
        fixed.push(format!("{} group {now} -> {gid}", p.display()));
    }
    Ok(())
}

/// For a remapped container: gives group `gid` search permission on every folder from `base`
/// (exclusive: the roots are set at start) down to `target`'s parent, so that the runtime, acting
/// as the container's root, can reach `target`. `target` must lie under `base`.
pub fn grant_traverse(base: &Path, target: &Path, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let rel = target.strip_prefix(base).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not under {}", target.display(), base.display()),
        )
    })?;
    let mut cur = base.to_path_buf();
    let parents: Vec<_> = rel.parent().map(|p| p.components().collect()).unwrap_or_default();
    for c in parents {
        cur.push(c);
        let md = std::fs::symlink_metadata(&cur)?;
        if !md.is_dir() {
            return Err(std::io::Error::other(format!("{} is not a directory", cur.display())));
        }
        if md.gid() != gid {
            std::os::unix::fs::lchown(&cur, None, Some(gid))?;
        }
        if md.mode() & 0o010 == 0 {
            std::fs::set_permissions(&cur, std::fs::Permissions::from_mode((md.mode() & 0o7777) | 0o010))?;
        }
    }
    Ok(())
}

/// For `userns-remap`: the folders above a root must let anyone search them (not read them), or
/// the containers' root, an unprivileged id, cannot reach its files. Adds `o+x` where missing, as
/// dockerd does for its remapped root; returns what it changed.
pub fn open_ancestors(root: &Path) -> std::io::Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let mut fixed = Vec::new();
    for dir in root.ancestors().skip(1) {
        let md = std::fs::metadata(dir)?;
        if md.mode() & 0o001 == 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode((md.mode() & 0o7777) | 0o001))?;
            fixed.push(dir.display().to_string());
        }
    }
    Ok(fixed)
}

fn set_mode(p: &Path, mode: u32, fixed: &mut Vec<String>) -> std::io::Result<()> {
    let now = std::fs::symlink_metadata(p)?.permissions().mode() & 0o7777;
    if now != mode {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
        fixed.push(format!("{} {now:o} -> {mode:o}", p.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_closed_and_reopened_never() {
        let t = tempfile::tempdir().unwrap();
        let (data, exec) = (t.path().join("data"), t.path().join("run"));
        for d in [data.join("image/layers"), exec.join("containers")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(data.join("berth.db"), "").unwrap();
        std::fs::set_permissions(data.join("berth.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let fixed = secure_roots(&data, &exec, None).unwrap();
        assert!(fixed.iter().any(|f| f.ends_with("berth.db 644 -> 600")), "{fixed:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&data), 0o710);
        assert_eq!(mode(&data.join("image")), 0o700);
        assert_eq!(mode(&exec), 0o711);
        assert_eq!(mode(&exec.join("containers")), 0o700);
        // A second start has nothing to fix.
        assert!(secure_roots(&data, &exec, None).unwrap().is_empty());
    }

    #[test]
    fn remapped_roots_open_a_path_to_their_group_only() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let (data, exec) = (t.path().join("data"), t.path().join("run"));
        std::fs::create_dir_all(data.join("image")).unwrap();
        secure_roots(&data, &exec, Some(4242)).unwrap();
        let md = |p: &Path| std::fs::metadata(p).unwrap();
        for p in [data.clone(), data.join("snapshots"), data.join("containers"), exec.join("subpaths")] {
            assert_eq!((md(&p).mode() & 0o7777, md(&p).gid()), (0o710, 4242), "{}", p.display());
        }
        assert_eq!((md(&data.join("image")).mode() & 0o7777, md(&data.join("image")).gid()), (0o700, 0));
        assert!(secure_roots(&data, &exec, Some(4242)).unwrap().is_empty());
        let deep = data.join("containers/abc/hosts");
        std::fs::DirBuilder::new().mode(0o700).create(data.join("containers/abc")).unwrap();
        grant_traverse(&data, &deep, 4242).unwrap();
        assert_eq!(
            (md(&data.join("containers/abc")).mode() & 0o7777, md(&data.join("containers/abc")).gid()),
            (0o710, 4242)
        );
        assert!(grant_traverse(&data, Path::new("/etc/passwd"), 4242).is_err());
        // Without the remap, a second start takes it all back.
        let fixed = secure_roots(&data, &exec, None).unwrap();
        assert_eq!((md(&data).gid(), md(&data.join("snapshots")).mode() & 0o7777), (0, 0o700), "{fixed:?}");
    }
}
