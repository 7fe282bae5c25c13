//! Who may reach berthd's directories on the host (Docker's CVE-2021-41091 class).
//!
//! Layers hold whatever images bring — setuid-root binaries, device nodes — and bundles and logs
//! hold containers' environments and output. No host user but root may walk into them. The data
//! root is 0710 and everything directly under it root-only (0700 directories, 0600 files); the exec
//! root is 0711, because the default API socket lives in it (its own mode decides who may use it),
//! and its directories are 0700. Checked and corrected at every start, as a root created by an older
//! berthd, or loosened by hand, must not stay open. Inside containers nothing changes: setuid
//! binaries work as with Docker, because the fix is that host users cannot reach the layers.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

pub const DATA_ROOT_MODE: u32 = 0o710;
pub const EXEC_ROOT_MODE: u32 = 0o711;
/// What berthd makes under each root (the stores make theirs when they open).
const DATA_DIRS: &[&str] = &["containers", "volumes", "snapshots"];
const EXEC_DIRS: &[&str] = &["containers", "s", "netns", "runtime", "subpaths"];

/// Sets the modes above; returns what it had to correct, for the log.
pub fn secure_roots(data_root: &Path, exec_root: &Path) -> std::io::Result<Vec<String>> {
    let mut fixed = Vec::new();
    // Made now (not on first use with the default 0755), so they are never open for a moment.
    for (root, dirs) in [(data_root, DATA_DIRS), (exec_root, EXEC_DIRS)] {
        for d in dirs {
            std::fs::DirBuilder::new().mode(0o700).recursive(true).create(root.join(d))?;
        }
    }
    for (root, mode) in [(data_root, DATA_ROOT_MODE), (exec_root, EXEC_ROOT_MODE)] {
        set_mode(root, mode, &mut fixed)?;
        for e in std::fs::read_dir(root)?.flatten() {
            let ft = e.file_type()?;
            // Sockets keep their own mode: the API socket's decides who may use the API.
            let mode = if ft.is_dir() {
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
        let fixed = secure_roots(&data, &exec).unwrap();
        assert!(fixed.iter().any(|f| f.ends_with("berth.db 644 -> 600")), "{fixed:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&data), 0o710);
        assert_eq!(mode(&data.join("image")), 0o700);
        assert_eq!(mode(&exec), 0o711);
        assert_eq!(mode(&exec.join("containers")), 0o700);
        // A second start has nothing to fix.
        assert!(secure_roots(&data, &exec).unwrap().is_empty());
    }
}
