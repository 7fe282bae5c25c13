//! Keeping per-container mounts out of every other container's way.
//!
//! Each running container puts mounts on the host (its overlay root, the bind mount that pins its
//! network namespace), so the host's mount table has a line per container. Every mount namespace
//! made by copying the host's then starts with all of them, and libcontainer and libcgroups read
//! `/proc/self/mountinfo` in full several times per create and delete (a cgroup v1 controller the
//! host has not mounted is looked for to the end of the file): at 800 running containers a start
//! spent ~70 ms parsing other containers' mounts. berthd therefore keeps those mounts under a few
//! folders that are mount points of their own (`own_private_mount`, as moby makes its graph home a
//! private mount), and a shim, in a mount namespace of its own, detaches those folders whole —
//! keeping only its container's mounts — before libcontainer runs (`prune_namespace`): the
//! container's namespace and every mountinfo read then see a table of constant size.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_types::{Error, Result};
use rustix::mount::{
    mount_bind, mount_change, move_mount, open_tree, unmount, MountPropagationFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags,
};

/// Makes `dir` a mount point of its own (a bind mount on itself unless it already is one) and
/// private, so the mounts made under it neither propagate to other namespaces nor need more than
/// one detach to leave a copied namespace. Idempotent: a restarted berthd finds it in place.
/// Returns whether `dir` is now such a mount point: when mounts are already below a `dir` that is
/// not one (containers of an earlier berthd without scopes still run), it is left alone — a bind
/// over them would shadow their mounts, and unmounting the bind's copies later would leave the
/// originals mounted — and made a scope at a later start, once they are gone.
pub fn own_private_mount(dir: &Path) -> Result<bool> {
    let err = |what: &str, e: rustix::io::Errno| Error::internal(format!("{what} {}: {e}", dir.display()));
    if !crate::mount::is_mountpoint(dir) {
        if mounts_below(dir)? {
            return Ok(false);
        }
        mount_bind(dir, dir).map_err(|e| err("bind mount", e))?;
    }
    mount_change(dir, MountPropagationFlags::PRIVATE).map_err(|e| err("make private", e))?;
    Ok(true)
}

/// Whether anything is mounted below `dir` in this mount namespace.
fn mounts_below(dir: &Path) -> Result<bool> {
    let prefix = format!("{}/", dir.display());
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| m.starts_with(&prefix)))
}

/// Undoes `own_private_mount` when nothing is mounted below `dir` any more (a daemon stopping with
/// no container running); with mounts below it, it stays, for the containers that keep running.
pub fn release_own_mount(dir: &Path) -> Result<()> {
    if mounts_below(dir)? {
        return Ok(());
    }
    crate::mount::unmount(dir)
}

/// Run by a single-threaded process in a mount namespace it has just unshared (a copy of the
/// host's): turns the copy into a downstream of the host's (so nothing done here reaches the
/// host, while mounts the host makes later, as bind propagation asks, still arrive), then detaches
/// each folder of `detach` that is a mount point — everything mounted below it with it, in one call
/// — except the mounts that hold the paths of `keep`, which are cloned first and put back where
/// they were. A `keep` path outside the detached folders needs nothing.
pub fn prune_namespace(detach: &[PathBuf], keep: &[PathBuf]) -> Result<()> {
    mount_change("/", MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC)
        .map_err(|e| Error::internal(format!("make the mount namespace a downstream: {e}")))?;
    let detach: Vec<&PathBuf> = detach.iter().filter(|d| crate::mount::is_mountpoint(d)).collect();
    let below = |k: &Path| detach.iter().any(|d| k.starts_with(d) && k != d.as_path());
    // A kept path inside a mount (a sub-folder of an image mount, say) keeps that whole mount.
    let mut kept: Vec<&Path> = keep
        .iter()
        .filter_map(|k| k.ancestors().take_while(|a| below(a)).find(|a| crate::mount::is_mountpoint(a)))
        .collect();
    kept.sort();
    kept.dedup();
    let mut clones: Vec<(&Path, OwnedFd)> = Vec::new();
    for k in kept {
        let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE;
        let fd = match open_tree(rustix::fs::CWD, k, flags) {
            Ok(fd) => fd,
            // A kernel without open_tree (before 5.2): nothing is detached yet, so the copied
            // namespace is whole and works as before, only with every container's mounts in it.
            Err(rustix::io::Errno::NOSYS) => return Ok(()),
            Err(e) => return Err(Error::internal(format!("clone mount {}: {e}", k.display()))),
        };
        clones.push((k, fd));
    }
    for d in &detach {
        unmount(d.as_path(), UnmountFlags::DETACH)
            .map_err(|e| Error::internal(format!("detach {}: {e}", d.display())))?;
    }
    for (k, fd) in clones {
        move_mount(&fd, "", rustix::fs::CWD, k, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
            .map_err(|e| Error::internal(format!("put back mount {}: {e}", k.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts_under(table: &str, dir: &Path) -> Vec<String> {
        let info = std::fs::read_to_string(table).unwrap();
        let d = dir.to_string_lossy().to_string();
        info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&d)).map(String::from).collect()
    }

    /// In a forked child with its own mount namespace: of three tmpfs mounts under a detached
    /// folder only the kept one remains, with its content, and the parent's table is untouched.
    #[test]
    fn prune_keeps_only_what_is_asked() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("snapshots");
        for n in ["a", "b", "c"] {
            std::fs::create_dir_all(base.join(n)).unwrap();
        }
        // Mounts already below a folder that is no scope yet: left alone, no bind over them.
        std::fs::create_dir_all(t.path().join("old/x")).unwrap();
        crate::mount::mount_fs("tmpfs", &t.path().join("old/x"), "tmpfs", &["size=1m".into()]).unwrap();
        assert!(!own_private_mount(&t.path().join("old")).unwrap());
        assert!(!crate::mount::is_mountpoint(&t.path().join("old")));
        crate::mount::unmount(&t.path().join("old/x")).unwrap();
        assert!(own_private_mount(&base).unwrap());
        assert!(own_private_mount(&base).unwrap()); // idempotent
        for n in ["a", "b", "c"] {
            crate::mount::mount_fs("tmpfs", &base.join(n), "tmpfs", &["size=1m".into()]).unwrap();
            std::fs::write(base.join(n).join("f"), n).unwrap();
        }
        let before = mounts_under("/proc/self/mountinfo", t.path());
        assert_eq!(before.len(), 4, "{before:?}");
        // A thread may have a mount namespace of its own (unsharing it unshares the thread's fs
        // attributes too), so the test needs no fork; /proc/thread-self shows the thread's view.
        let (base2, keep) = (base.clone(), base.join("b"));
        std::fs::create_dir_all(base.join("b").join("sub")).unwrap();
        let child = std::thread::spawn(move || {
            // SAFETY: this thread is ours alone and ends right after; nothing else uses its fs state.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.unwrap();
            // A path inside a mount keeps the mount; one outside the detached folder is no matter.
            prune_namespace(std::slice::from_ref(&base2), &[keep.join("sub"), PathBuf::from("/proc")]).unwrap();
            let seen = mounts_under("/proc/thread-self/mountinfo", &base2);
            (seen, std::fs::read_to_string(keep.join("f")).ok(), base2.join("a").join("f").exists())
        });
        let (seen, kept, other) = child.join().unwrap();
        assert_eq!(seen, vec![base.join("b").to_string_lossy().to_string()]);
        assert_eq!(kept.as_deref(), Some("b"));
        assert!(!other, "a detached mount is still reachable");
        assert_eq!(mounts_under("/proc/self/mountinfo", t.path()), before);
        release_own_mount(&base).unwrap();
        assert_eq!(mounts_under("/proc/self/mountinfo", t.path()).len(), 4, "kept while mounts are below");
        for n in ["a", "b", "c"] {
            crate::mount::unmount(&base.join(n)).unwrap();
        }
        release_own_mount(&base).unwrap();
        assert!(mounts_under("/proc/self/mountinfo", t.path()).is_empty());
    }
}
