//! The layer applier: a tar stream onto a directory, as overlay lower layers need it.
//!
//! Security boundary: entries are cleaned lexically and resolved with `RESOLVE_IN_ROOT` by
//! [`Root`], so `..`, absolute names, and symlinks or hardlinks aiming outside all stay inside.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_sys::root::{clean, Root};
use berth_types::{Error, Result};
use rustix::fs::FileType;
use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// What an apply wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
    /// Bytes of regular file content: the layer's size as `docker images` counts it.
    pub size: u64,
}

fn bad(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("invalid tar entry {}: {e}", path.display()))
}

/// Applies the (already decompressed) tar stream `r` onto `root`.
pub fn apply(r: impl Read, root: &Root) -> Result<Applied> {
    apply_tar(r, root, Path::new(""), false, true, None, None)
}

/// The SHA-256 of each regular file's content by the file's inode number. By inode, not path: a
/// later entry may reach a file through a symlinked folder (`e/f` writing `d/f`), or replace it, and
/// a path would then name a stale digest; a replaced file is a new inode with its own entry here,
/// and nothing in an apply rewrites a file in place.
pub type FileDigests = std::collections::HashMap<u64, [u8; 32]>;

/// [`apply`], hashing each regular file's content as it is written (a build context: the COPY
/// cache key needs those digests, and hashing while the client is still sending costs no second
/// read of every byte afterwards).
pub fn apply_hashed(r: impl Read, root: &Root) -> Result<(Applied, FileDigests)> {
    let mut digests = FileDigests::new();
    let applied = apply_tar(r, root, Path::new(""), false, true, None, Some(&mut digests))?;
    Ok((applied, digests))
}

/// A writer that hashes what passes through it.
struct Hashing<'a, W> {
    inner: &'a mut W,
    hash: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Applies `r` under the directory `at` of `root` (`docker cp` into a container). With
/// `no_overwrite_dir_non_dir`, replacing a directory by a non-directory (or the reverse) fails.
/// Whiteout files are files here (only a layer's whiteouts delete), and hardlink targets are names
/// within the archive, so under `at` too, as Docker extracts them.
pub fn apply_at(r: impl Read, root: &Root, at: &Path, no_overwrite_dir_non_dir: bool) -> Result<Applied> {
    apply_tar(r, root, at, no_overwrite_dir_non_dir, false, None, None)
}

/// [`apply_at`] with every entry owned by `owner` (uid, gid) instead of the archive's owners, as
/// `docker cp` extracts: the container's root, or its user with `copyUIDGID`.
pub fn apply_at_owned(
    r: impl Read,
    root: &Root,
    at: &Path,
    no_overwrite_dir_non_dir: bool,
    owner: (u32, u32),
) -> Result<Applied> {
    apply_tar(r, root, at, no_overwrite_dir_non_dir, false, Some(owner), None)
}

fn apply_tar(
    r: impl Read,
    root: &Root,
    at: &Path,
    no_overwrite_dir_non_dir: bool,
    layer: bool,
    owner: Option<(u32, u32)>,
    mut digests: Option<&mut FileDigests>,
) -> Result<Applied> {
    let mut archive = tar::Archive::new(r);
    let mut applied = Applied::default();
    let mut dirs: Vec<(PathBuf, u32, u32, u32, i64)> = Vec::new();
    let entries = archive.entries().map_err(|e| Error::invalid(format!("invalid tar: {e}")))?;
    for entry in entries {
        let mut e = entry.map_err(|e| Error::invalid(format!("invalid tar: {e}")))?;
        let raw = e.path().map_err(|err| Error::invalid(format!("invalid tar entry name: {err}")))?.into_owned();
        let rel = clean(&at.join(clean(&raw)));
        let h = e.header();
        let (mode, uid, gid) = (
            h.mode().map_err(|x| bad(&raw, x))? & 0o7777,
            // Go's archive/tar reads an empty numeric field as 0; so do we.
            owner.map_or(h.uid().unwrap_or(0) as u32, |o| o.0),
            owner.map_or(h.gid().unwrap_or(0) as u32, |o| o.1),
        );
        let mtime = h.mtime().unwrap_or(0) as i64;
        let kind = h.entry_type();
        applied.entries += 1;

        let name = rel.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        if layer && name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            let parent = rel.parent().unwrap_or(Path::new(""));
            if name == OPAQUE.as_bytes() {
                root.mkdir(parent, 0o755)?;
                root.set_xattr(parent, OsStr::new("trusted.overlay.opaque"), b"y").map_err(|x| bad(&raw, x))?;
            } else {
                let target = parent.join(OsStr::from_bytes(&name[WHITEOUT_PREFIX.len()..]));
                root.mknod(&target, FileType::CharacterDevice, 0, 0, 0).map_err(|x| bad(&raw, x))?;
            }
            continue;
        }
        if rel.as_os_str().is_empty() && kind != EntryType::Directory {
            continue; // "." or "/" as a non-directory: nothing to write.
        }
        if no_overwrite_dir_non_dir {
            if let Ok(st) = root.lstat(&rel) {
                let is_dir = st.st_mode & 0o170000 == 0o040000;
                if is_dir != (kind == EntryType::Directory) {
                    return Err(Error::invalid(format!(
                        "cannot overwrite {} {} with a {}",
                        if is_dir { "directory" } else { "non-directory" },
                        rel.display(),
                        if is_dir { "non-directory" } else { "directory" }
                    )));
                }
            }
        }
        let xattrs = pax_xattrs(&mut e);
        match kind {
            EntryType::Directory => {
                root.mkdir(&rel, 0o755).map_err(|x| bad(&raw, x))?;
                dirs.push((rel.clone(), mode, uid, gid, mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut f = root.create_file(&rel, 0o600).map_err(|x| bad(&raw, x))?;
                match digests.as_deref_mut() {
                    Some(d) => {
                        let ino = std::os::unix::fs::MetadataExt::ino(&f.metadata().map_err(|x| bad(&raw, x))?);
                        let mut w = Hashing { inner: &mut f, hash: sha2::Digest::new() };
                        applied.size += std::io::copy(&mut e, &mut w).map_err(|x| bad(&raw, x))?;
                        d.insert(ino, sha2::Digest::finalize(w.hash).into());
                    }
                    None => applied.size += std::io::copy(&mut e, &mut f).map_err(|x| bad(&raw, x))?,
                }
            }
            EntryType::Symlink => {
                let target =
                    e.link_name().map_err(|x| bad(&raw, x))?.ok_or_else(|| bad(&raw, "symlink without target"))?;
                root.symlink(&rel, &target).map_err(|x| bad(&raw, x))?;
            }
            EntryType::Link => {
                let target =
                    e.link_name().map_err(|x| bad(&raw, x))?.ok_or_else(|| bad(&raw, "hardlink without target"))?;
                root.hardlink(&rel, &clean(&at.join(clean(&target)))).map_err(|x| bad(&raw, x))?;
                // A hardlink shares its target's inode and metadata.
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = e.header().device_major().ok().flatten().unwrap_or(0);
                let minor = e.header().device_minor().ok().flatten().unwrap_or(0);
                root.mknod(&rel, ft, mode, major, minor).map_err(|x| bad(&raw, x))?;
            }
            // PAX and GNU long-name headers are consumed by the reader; anything else is skipped
            // as Docker skips it.
            _ => continue,
        }
        for (k, v) in xattrs {
            // Unsupported namespaces (e.g. security.* under some LSMs) are not fatal, as in Docker.
            if let Err(err) = root.set_xattr(&rel, OsStr::from_bytes(&k), &v) {
                tracing::debug!(path = %rel.display(), "xattr skipped: {err}");
            }
        }
        if kind != EntryType::Directory {
            let mode = (kind != EntryType::Symlink).then_some(mode);
            root.set_meta(&rel, uid, gid, mode, mtime).map_err(|x| bad(&raw, x))?;
        }
    }
    // Directory times last: creating children changed them. Deepest first.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    for (p, mode, uid, gid, mtime) in dirs {
        root.set_meta(&p, uid, gid, Some(mode), mtime)?;
    }
    Ok(applied)
}

fn pax_xattrs<R: Read>(e: &mut tar::Entry<'_, R>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(Some(exts)) = e.pax_extensions() else {
        return Vec::new();
    };
    exts.filter_map(|x| x.ok())
        .filter_map(|x| {
            let k = x.key_bytes().strip_prefix(b"SCHILY.xattr.")?.to_vec();
            allowed_xattr(&k).then(|| (k, x.value_bytes().to_vec()))
        })
        .collect()
}

/// Which extended attributes a layer may set. `trusted.*` is the kernel's and overlayfs's own
/// (`trusted.overlay.*` would forge whiteouts, opaque dirs, redirects and metacopy in a lower
/// layer) and most of `security.*` belongs to the host's LSMs and integrity subsystems: a layer
/// keeps file capabilities (`security.capability`, which `ping` and friends need), ACLs and `user.*`.
fn allowed_xattr(key: &[u8]) -> bool {
    key.starts_with(b"user.") || key == b"security.capability" || key.starts_with(b"system.posix_acl_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_cannot_set_the_kernels_xattrs() {
        assert!(allowed_xattr(b"user.mime"));
        assert!(allowed_xattr(b"security.capability"));
        assert!(allowed_xattr(b"system.posix_acl_access"));
        for k in [&b"trusted.overlay.opaque"[..], b"trusted.overlay.redirect", b"security.ima", b"security.selinux"] {
            assert!(!allowed_xattr(k), "{}", String::from_utf8_lossy(k));
        }
    }

    fn tar_of(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == EntryType::Directory { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.set_mtime(1_600_000_000);
            // Write the raw name so hostile paths reach the applier unmodified.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                let ln = &mut h.as_old_mut().linkname;
                ln[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn applies_files_dirs_links() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let tar = tar_of(&[
            ("bin/", EntryType::Directory, b"", None),
            ("bin/busybox", EntryType::Regular, b"ELF", None),
            ("bin/sh", EntryType::Symlink, b"", Some("busybox")),
            ("bin/ash", EntryType::Link, b"", Some("bin/busybox")),
        ]);
        let a = apply(&tar[..], &root).unwrap();
        assert_eq!(a.size, 3);
        assert_eq!(std::fs::read_link(t.path().join("bin/sh")).unwrap(), PathBuf::from("busybox"));
        assert_eq!(std::fs::read(t.path().join("bin/ash")).unwrap(), b"ELF");
    }

    #[test]
    fn hostile_entries_stay_inside() {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let out = outside.path().to_str().unwrap().to_string();
        let root = Root::open(t.path()).unwrap();
        let evil_abs = format!("{out}/abs");
        let link_file = "esc/pwned".to_string();
        let tar = tar_of(&[
            ("../../../../escaped", EntryType::Regular, b"x", None),
            (&evil_abs, EntryType::Regular, b"x", None),
            ("esc", EntryType::Symlink, b"", Some(&out)),
            (&link_file, EntryType::Regular, b"x", None),
            ("dots", EntryType::Symlink, b"", Some("../../../..")),
            ("dots/pwned2", EntryType::Regular, b"x", None),
        ]);
        apply(&tar[..], &root).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "wrote outside the root");
        assert!(t.path().join("escaped").exists());
        assert!(t.path().join("pwned2").exists());
    }

    #[test]
    fn cp_joins_hardlinks_to_its_directory_and_keeps_whiteout_names() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/shadow"), "secret").unwrap();
        std::fs::create_dir_all(t.path().join("data")).unwrap();
        std::fs::write(t.path().join("data/keep"), "kept").unwrap();
        let root = Root::open(t.path()).unwrap();
        let tar = tar_of(&[
            ("etc/shadow", EntryType::Regular, b"mine", None),
            ("link", EntryType::Link, b"", Some("etc/shadow")),
            (".wh.keep", EntryType::Regular, b"", None),
        ]);
        apply_at(&tar[..], &root, Path::new("data"), false).unwrap();
        // The link is to the archive's own etc/shadow under data/, never the container's.
        assert_eq!(std::fs::read_to_string(t.path().join("data/link")).unwrap(), "mine");
        assert_eq!(std::fs::read_to_string(t.path().join("etc/shadow")).unwrap(), "secret");
        // A file named like a whiteout is just a file in docker cp: nothing is deleted.
        assert_eq!(std::fs::read_to_string(t.path().join("data/keep")).unwrap(), "kept");
        assert!(t.path().join("data/.wh.keep").exists());
    }

    #[test]
    fn hardlink_to_outside_is_refused_or_contained() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let tar = tar_of(&[("h", EntryType::Link, b"", Some("../../../etc/passwd"))]);
        // etc/passwd does not exist inside the root: the link cannot be made, and nothing outside is touched.
        let e = apply(&tar[..], &root).unwrap_err();
        assert_eq!(e.kind, berth_types::ErrorKind::InvalidArgument);
    }

    #[test]
    #[ignore = "needs root: run with --include-ignored (CI runs as root)"]
    fn whiteouts_become_overlay_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let tar = tar_of(&[
            ("etc/.wh.gone", EntryType::Regular, b"", None),
            ("var/.wh..wh..opq", EntryType::Regular, b"", None),
        ]);
        apply(&tar[..], &root).unwrap();
        let st = rustix::fs::lstat(t.path().join("etc/gone")).unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::CharacterDevice);
        let mut buf = [0u8; 4];
        let n = rustix::fs::lgetxattr(t.path().join("var"), "trusted.overlay.opaque", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"y");
    }

    #[test]
    fn garbage_is_invalid() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let junk = vec![0x41u8; 1024];
        assert_eq!(apply(&junk[..], &root).unwrap_err().kind, berth_types::ErrorKind::InvalidArgument);
    }

    /// Structured fuzzing on stable: random sequences of hostile entries (names that climb, absolute
    /// names, symlinks and hardlinks aimed outside, entries through those links) must never create
    /// anything outside the root. Deterministic (xorshift), so a failure reproduces.
    #[test]
    fn mutated_hostile_tars_never_escape() {
        let jail = tempfile::tempdir().unwrap();
        let outside = jail.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::set_permissions(&outside, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let out = outside.to_str().unwrap().to_string();
        let names = [
            "a".to_string(),
            "a/b".into(),
            "../x".into(),
            "/abs".into(),
            "link".into(),
            "link/f".into(),
            "..".into(),
            "up/../../f".into(),
            format!("{out}/f"),
            "dir/".into(),
            "l2/deeper/f".into(),
            "link/../../../g".into(),
            ".wh.link".into(),
            "dir/.wh..wh..opq".into(),
        ];
        let targets =
            [out.clone(), "../../..".into(), "/".into(), "a".into(), "link".into(), format!("{out}/t"), "l2".into()];
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..2000 {
            let root = jail.path().join(format!("root{round}"));
            std::fs::create_dir(&root).unwrap();
            let count = 1 + rnd(8);
            let mut entries = Vec::new();
            for _ in 0..count {
                let kind =
                    [EntryType::Regular, EntryType::Directory, EntryType::Symlink, EntryType::Link, EntryType::Fifo]
                        [rnd(5)];
                let name = names[rnd(names.len())].clone();
                let link =
                    matches!(kind, EntryType::Symlink | EntryType::Link).then(|| targets[rnd(targets.len())].clone());
                entries.push((name, kind, link));
            }
            let refs: Vec<(&str, EntryType, &[u8], Option<&str>)> =
                entries.iter().map(|(n, k, l)| (n.as_str(), *k, &b"data"[..], l.as_deref())).collect();
            let tar = tar_of(&refs);
            let _ = apply(&tar[..], &Root::open(&root).unwrap());
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "round {round} escaped: {entries:?}");
            let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&outside).unwrap().permissions());
            assert_eq!(mode & 0o7777, 0o700, "round {round} changed the mode of a directory outside: {entries:?}");
            let stray: Vec<_> = std::fs::read_dir(jail.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n != "outside" && !n.starts_with("root"))
                .collect();
            assert!(stray.is_empty(), "round {round} wrote {stray:?} next to the root: {entries:?}");
            let _ = Root::open(jail.path()).unwrap().remove_all(Path::new(&format!("root{round}")));
        }
    }
}
