//! cgroup `favordynmods`: moving a process into a cgroup without waiting for an RCU grace period.
//!
//! Every write of a pid to `cgroup.procs` write-locks the kernel's global
//! `cgroup_threadgroup_rwsem`. That lock is per-CPU for its readers (fork, exit, exec), so its
//! writer first waits for an RCU grace period — 5 to 16 ms on a 2-core VM, once per container
//! start and per exec, whatever berthd does around it. The kernel's answer for hosts that move
//! tasks often is the `favordynmods` mount option (Linux 6.0+, for cgroup v1 and v2): while any
//! hierarchy carries it, writers skip the grace period (before 6.18 by keeping the lock's readers
//! on their slower shared path; from 6.18 by a lock per thread group, which the kernel then keeps
//! until reboot). It is a setting of the whole host, so berthd applies it only when asked
//! (daemon.json `cgroup-favordynmods`), by mounting a controller-less named v1 hierarchy of its own
//! with the option; unmounting it at shutdown gives older kernels their fast readers back.

use std::path::{Path, PathBuf};

use berth_types::{Error, Result};

/// The name of berthd's controller-less hierarchy. Several berthds on one host share it: a named
/// hierarchy mounted again with the same options is the same hierarchy.
const NAME: &str = "berth-favordynmods";

/// How the host came to favor dynamic cgroup changes.
#[derive(Debug, PartialEq, Eq)]
pub enum Favored {
    /// A cgroup mount the host made already carries the option: nothing to do or undo.
    ByHost,
    /// Our hierarchy, mounted on this folder (now, or by a berthd that did not stop cleanly).
    Mounted(PathBuf),
}

/// Makes cgroup migrations cheap for as long as the returned value is not released; `dir` is
/// where berthd's hierarchy is mounted (made if missing). Fails on kernels without the option.
pub fn favor(dir: &Path) -> Result<Favored> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::internal(format!("read /proc/self/mountinfo: {e}")))?;
    if super::mount::is_mountpoint(dir) {
        return Ok(Favored::Mounted(dir.to_path_buf()));
    }
    if favored_by_host(&info) {
        return Ok(Favored::ByHost);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
    let opts: Vec<String> =
        ["nosuid", "nodev", "noexec", "none", &format!("name={NAME}"), "favordynmods"].map(String::from).into();
    match super::mount::mount_fs("berth", dir, "cgroup", &opts) {
        Ok(()) => Ok(Favored::Mounted(dir.to_path_buf())),
        Err(e) => {
            let _ = std::fs::remove_dir(dir);
            Err(Error::invalid(format!(
                "cgroup-favordynmods: this kernel does not take the favordynmods option (Linux 6.0+): {}",
                e.message
            )))
        }
    }
}

/// Undoes `favor`: unmounts berthd's hierarchy (the kernel drops it with its last mount, as it
/// has no cgroups of its own) and removes the folder.
pub fn release(f: &Favored) -> Result<()> {
    if let Favored::Mounted(dir) = f {
        super::mount::unmount(dir)?;
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::internal(format!("remove {}: {e}", dir.display()))),
        }
    }
    Ok(())
}

/// True when a cgroup mount of the host's own has `favordynmods` among its superblock options.
/// Another berthd's mount of our hierarchy does not count: that berthd unmounts it when it stops.
fn favored_by_host(mountinfo: &str) -> bool {
    let ours = format!("name={NAME}");
    mountinfo.lines().any(|l| {
        let Some((_, tail)) = l.split_once(" - ") else { return false };
        let mut t = tail.split(' ');
        let (fstype, _source, superopts) = (t.next(), t.next(), t.next().unwrap_or(""));
        matches!(fstype, Some("cgroup" | "cgroup2"))
            && superopts.split(',').any(|o| o == "favordynmods")
            && !superopts.split(',').any(|o| o == ours)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
29 23 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
30 23 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
31 23 0:28 / /run/berth/favordynmods rw,relatime - cgroup berth rw,name=berth-favordynmods,favordynmods
";

    #[test]
    fn only_a_cgroup_mount_of_the_host_with_the_option_counts() {
        assert!(!favored_by_host(INFO), "ours and option-less mounts do not count");
        let v2 = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods\n";
        assert!(favored_by_host(v2));
        let v1 = "30 23 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,favordynmods\n";
        assert!(favored_by_host(v1));
        let tmpfs = "30 23 0:27 / /x/favordynmods rw - tmpfs favordynmods rw,favordynmods\n";
        assert!(!favored_by_host(tmpfs));
        assert!(!favored_by_host("garbage\n\n - \n"));
    }

    /// On the real kernel (this flips the kernel's one-way per-thread-group switch on 6.18+,
    /// which only changes how fast cgroup writes are): mounted, found again, and gone after.
    #[test]
    fn the_hierarchy_is_mounted_adopted_and_released() {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        if favored_by_host(&info) {
            return; // the host favors already: nothing of ours to check
        }
        let tmp = tempfile::Builder::new().prefix("bt-dynmods-").tempdir_in("/tmp").unwrap();
        let dir = tmp.path().join("favordynmods");
        let f = favor(&dir).expect("favor");
        assert_eq!(f, Favored::Mounted(dir.clone()));
        let line = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
            .map(String::from)
            .expect("mounted");
        assert!(line.contains("favordynmods") && line.contains(&format!("name={NAME}")), "{line}");
        // A berthd that did not stop cleanly left it mounted: the next one adopts it.
        assert_eq!(favor(&dir).expect("again"), Favored::Mounted(dir.clone()));
        // A second berthd shares the hierarchy with a mount of its own.
        let other = tmp.path().join("other");
        assert_eq!(favor(&other).expect("second"), Favored::Mounted(other.clone()));
        release(&Favored::Mounted(other.clone())).unwrap();
        assert!(super::super::mount::is_mountpoint(&dir), "the first stays");
        release(&f).unwrap();
        assert!(!dir.exists() && !other.exists());
    }
}
