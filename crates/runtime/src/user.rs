//! Lookups inside a container's root: users, groups, and the command to run.

use std::path::Path;

use berth_sys::root::Root;
use berth_types::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

fn lines(root: &Root, file: &str) -> Vec<Vec<String>> {
    let data = root.read(Path::new(file)).unwrap_or_default();
    String::from_utf8_lossy(&data)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(String::from).collect())
        .collect()
}

/// Resolves Docker's `User` (`""`, `name`, `uid`, `name:group`, `uid:gid`) against /etc/passwd and
/// /etc/group in the rootfs, as runc's user lookup does.
pub fn resolve_user(root: &Root, spec: &str) -> Result<ResolvedUser> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = lines(root, "/etc/passwd");
    let entry = passwd.iter().find(|f| f.len() >= 4 && (f[0] == user || f[2] == user));
    let (uid, mut gid, home, name) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            f.get(5).cloned().unwrap_or_else(|| "/".into()),
            f[0].clone(),
        ),
        // As runc: a uid without a passwd entry keeps the default group, 0.
        (None, Ok(uid)) => (uid, 0, "/".to_string(), String::new()),
        (None, Err(_)) => {
            return Err(Error::invalid(format!("unable to find user {user}: no matching entries in passwd file")))
        }
    };
    let groups = lines(root, "/etc/group");
    if let Some(g) = group {
        gid = match groups.iter().find(|f| f.len() >= 3 && (f[0] == g || f[2] == g)) {
            Some(f) => f[2].parse().unwrap_or(0),
            None => g
                .parse()
                .map_err(|_| Error::invalid(format!("unable to find group {g}: no matching entries in group file")))?,
        };
    }
    let mut additional_gids: Vec<u32> = if name.is_empty() || group.is_some() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .collect()
    };
    additional_gids.retain(|g| *g != gid);
    Ok(ResolvedUser { uid, gid, additional_gids, home })
}

/// Checks that `cmd` can be executed inside the root, with runc's wording for the failures that the
/// docker CLI turns into exit codes 127 (not found) and 126 (not executable).
pub fn check_command(root: &Root, cmd: &str, path_env: &str, cwd: &str) -> Result<()> {
    let candidates: Vec<String> = if cmd.contains('/') {
        let p = if cmd.starts_with('/') { cmd.to_string() } else { format!("{cwd}/{cmd}") };
        vec![p]
    } else {
        path_env.split(':').filter(|d| !d.is_empty()).map(|d| format!("{d}/{cmd}")).collect()
    };
    let mut denied = false;
    for c in &candidates {
        if let Ok(st) = root.stat(Path::new(c)) {
            let is_file = st.st_mode & 0o170000 == 0o100000;
            if is_file && st.st_mode & 0o111 != 0 {
                return Ok(());
            }
            denied = true;
        }
    }
    let why = if denied {
        "permission denied"
    } else if cmd.contains('/') {
        "no such file or directory"
    } else {
        "executable file not found in $PATH"
    };
    Err(Error::invalid(format!("exec: \"{cmd}\": {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::create_dir_all(t.path().join("bin")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nwww:x:33:\nextra:x:50:www\n").unwrap();
        std::fs::write(t.path().join("bin/sh"), "").unwrap();
        std::fs::set_permissions(t.path().join("bin/sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(t.path().join("bin/noexec"), "").unwrap();
        let r = Root::open(t.path()).unwrap();
        (t, r)
    }

    #[test]
    fn users() {
        let (_t, r) = rootfs();
        assert_eq!(resolve_user(&r, "").unwrap().uid, 0);
        let w = resolve_user(&r, "www").unwrap();
        assert_eq!((w.uid, w.gid, w.additional_gids.clone(), w.home.as_str()), (33, 33, vec![50], "/var/www"));
        assert_eq!(
            resolve_user(&r, "1000:50").unwrap(),
            ResolvedUser { uid: 1000, gid: 50, additional_gids: vec![], home: "/".into() }
        );
        assert_eq!(resolve_user(&r, "www:extra").unwrap().gid, 50);
        // runc keeps the default group for a uid without an entry (Docker: uid=4242 gid=0).
        assert_eq!((resolve_user(&r, "4242").unwrap().uid, resolve_user(&r, "4242").unwrap().gid), (4242, 0));
        assert!(resolve_user(&r, "nobody2").unwrap_err().message.contains("no matching entries in passwd file"));
    }

    #[test]
    fn commands() {
        let (_t, r) = rootfs();
        let path = "/usr/bin:/bin";
        check_command(&r, "sh", path, "/").unwrap();
        check_command(&r, "/bin/sh", path, "/").unwrap();
        assert_eq!(
            check_command(&r, "nosuchcmd", path, "/").unwrap_err().message,
            "exec: \"nosuchcmd\": executable file not found in $PATH"
        );
        assert!(check_command(&r, "noexec", path, "/").unwrap_err().message.contains("permission denied"));
        assert!(check_command(&r, "/nope", path, "/").unwrap_err().message.contains("no such file or directory"));
    }
}
