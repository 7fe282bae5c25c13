//! `userns-remap`: which host ids a remapped container's ids become, from /etc/subuid and
//! /etc/subgid, as Docker reads them.
//!
//! `default` is Docker's: the system user `dockremap` (made if missing) with a 65,536-id range
//! (allocated above every range already in the files if it has none). `NAME[:GROUP]` and
//! `UID[:GID]` name an existing user (and group, the user's name by default) whose ranges are used.
//! Container ids are handed out from 0 through the ranges in file order.

use std::path::Path;

use berth_sys::idmap::{IdMap, Remap};
use berth_types::{Error, Result};

const DEFAULT_USER: &str = "dockremap";
const DEFAULT_RANGE: u64 = 65_536;
const FIRST_ID: u64 = 100_000;

/// The ids `spec` (a `userns-remap` value) maps to, reading the system's files.
pub fn resolve(spec: &str) -> Result<Remap> {
    resolve_in(spec, Path::new("/etc"))
}

fn resolve_in(spec: &str, etc: &Path) -> Result<Remap> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(Error::invalid(format!(
            "invalid userns-remap value {spec:?}: use default, USER[:GROUP] or UID[:GID]"
        )));
    }
    if user == "default" {
        if group.is_some() {
            return Err(Error::invalid("userns-remap default takes no group"));
        }
        ensure_default_user(etc)?;
        return resolve_in(DEFAULT_USER, etc);
    }
    let passwd = read(&etc.join("passwd"))?;
    let (uname, uid) =
        lookup(&passwd, user).ok_or_else(|| Error::invalid(format!("no such user {user:?} for userns-remap")))?;
    let group_file = read(&etc.join("group"))?;
    let (gname, gid) = match group {
        Some(g) => {
            lookup(&group_file, g).ok_or_else(|| Error::invalid(format!("no such group {g:?} for userns-remap")))?
        }
        None => lookup(&group_file, &uname).unwrap_or((uname.clone(), uid)),
    };
    let uids = ranges(&read(&etc.join("subuid"))?, &uname, uid);
    if uids.is_empty() {
        return Err(Error::invalid(format!("no subuid ranges found for user {uname:?}")));
    }
    let gids = ranges(&read(&etc.join("subgid"))?, &gname, gid);
    if gids.is_empty() {
        return Err(Error::invalid(format!("no subgid ranges found for group {gname:?}")));
    }
    Ok(Remap { uids, gids })
}

fn read(p: &Path) -> Result<String> {
    match std::fs::read_to_string(p) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::internal(format!("read {}: {e}", p.display()))),
    }
}

/// A passwd or group entry by name or number: (name, id).
fn lookup(file: &str, key: &str) -> Option<(String, u32)> {
    file.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id = f.get(2)?.parse::<u32>().ok()?;
        (f[0] == key || key.parse::<u32>() == Ok(id)).then(|| (f[0].to_string(), id))
    })
}

/// The ranges of `name` (or of its number) in a subuid/subgid file, as container-to-host maps.
fn ranges(file: &str, name: &str, id: u32) -> Vec<IdMap> {
    let mut next = 0u32;
    let mut out = Vec::new();
    for l in file.lines() {
        let f: Vec<&str> = l.trim().split(':').collect();
        let [owner, start, count] = f[..] else { continue };
        if owner != name && owner.parse::<u32>() != Ok(id) {
            continue;
        }
        let (Ok(host), Ok(size)) = (start.parse::<u32>(), count.parse::<u32>()) else { continue };
        if size == 0 || host.checked_add(size).is_none() {
            continue;
        }
        out.push(IdMap { container: next, host, size });
        match next.checked_add(size) {
            Some(n) => next = n,
            None => break,
        }
    }
    out
}

/// Makes `dockremap` and its ranges when missing, with the system's own tools (which lock the
/// files against other writers), as Docker does.
fn ensure_default_user(etc: &Path) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| Error::internal(format!("run {}: {e}", args[0])))?;
        if !out.status.success() {
            return Err(Error::internal(format!(
                "{} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    };
    if lookup(&read(&etc.join("passwd"))?, DEFAULT_USER).is_none() {
        run(&["useradd", "--system", "--no-create-home", "--shell", "/bin/false", DEFAULT_USER])?;
    }
    let (_, uid) = lookup(&read(&etc.join("passwd"))?, DEFAULT_USER)
        .ok_or_else(|| Error::internal("useradd made no dockremap user"))?;
    for (file, flag) in [("subuid", "--add-subuids"), ("subgid", "--add-subgids")] {
        let text = read(&etc.join(file))?;
        if ranges(&text, DEFAULT_USER, uid).is_empty() {
            let start = free_start(&text);
            let range = format!("{start}-{}", start + DEFAULT_RANGE - 1);
            run(&["usermod", flag, &range, DEFAULT_USER])?;
        }
    }
    Ok(())
}

/// The first id above every range in a subuid/subgid file (and not below 100,000).
fn free_start(file: &str) -> u64 {
    file.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
        })
        .fold(FIRST_ID, u64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etc(subuid: &str, subgid: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("passwd"), "root:x:0:0::/root:/bin/sh\nalice:x:1000:1001::/home/a:/bin/sh\n")
            .unwrap();
        std::fs::write(t.path().join("group"), "root:x:0:\nalice:x:1001:\nstaff:x:50:\n").unwrap();
        std::fs::write(t.path().join("subuid"), subuid).unwrap();
        std::fs::write(t.path().join("subgid"), subgid).unwrap();
        t
    }

    #[test]
    fn ranges_by_name_or_number_in_file_order() {
        let t = etc("alice:100000:65536\nbob:200000:10\n1000:300000:5\n", "staff:400000:1000\n");
        let r = resolve_in("alice:staff", t.path()).unwrap();
        assert_eq!(
            r.uids,
            vec![
                IdMap { container: 0, host: 100_000, size: 65_536 },
                IdMap { container: 65_536, host: 300_000, size: 5 }
            ]
        );
        assert_eq!(r.gids, vec![IdMap { container: 0, host: 400_000, size: 1000 }]);
        assert_eq!(r.root(), (100_000, 400_000));
        let r = resolve_in("1000", t.path()).unwrap_err();
        assert_eq!(r.message, "no subgid ranges found for group \"alice\"");
    }

    #[test]
    fn refusals() {
        let t = etc("", "");
        assert_eq!(resolve_in("nobody9", t.path()).unwrap_err().message, "no such user \"nobody9\" for userns-remap");
        assert_eq!(resolve_in("alice", t.path()).unwrap_err().message, "no subuid ranges found for user \"alice\"");
        assert!(resolve_in("alice:", t.path()).is_err());
        assert!(resolve_in("default:x", t.path()).is_err());
    }

    #[test]
    fn default_ranges_go_above_every_other() {
        assert_eq!(free_start(""), 100_000);
        assert_eq!(free_start("a:100000:65536\nb:300000:10\n"), 300_010);
    }
}
