//! The diff generator and the tar writer: a directory (an overlay upper dir, a container's root, a
//! path for `docker cp`) to a tar stream, and `docker diff`'s change list.
//!
//! Walking is fd-relative and never follows a symlink (`openat(O_NOFOLLOW)`, `statat(NOFOLLOW)`),
//! so a container that swaps a directory for a symlink while we read cannot make us read host files.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_sys::idmap::Remap;
use berth_types::{Error, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use tar::{EntryType, Header};

/// How to translate what the walk finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeMode {
    /// Everything as it is (export, cp).
    Plain,
    /// An overlay upper dir: 0:0 char devices become `.wh.` files, opaque dirs get `.wh..wh..opq`.
    OverlayUpper,
}

fn io(e: rustix::io::Errno, what: &str) -> Error {
    Error::from(std::io::Error::from(e)).context(what)
}

fn names(dir: &OwnedFd) -> Result<Vec<Vec<u8>>> {
    let mut v: Vec<Vec<u8>> = rfs::Dir::read_from(dir)
        .map_err(|e| io(e, "read dir"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    v.sort();
    Ok(v)
}

/// The id a remapped container sees for host id `id` (the kernel's overflow id when unmapped).
fn seen(maps: &[berth_sys::idmap::IdMap], id: u32) -> u32 {
    berth_sys::idmap::IdMap::to_container(maps, id).unwrap_or(OVERFLOW_ID)
}

const OVERFLOW_ID: u32 = 65_534;

fn header_for(st: &rfs::Stat, kind: EntryType, unmap: Option<&Remap>) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    let (uid, gid) = match unmap {
        Some(r) => (seen(&r.uids, st.st_uid), seen(&r.gids, st.st_gid)),
        None => (st.st_uid, st.st_gid),
    };
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn is_opaque(dir: &OwnedFd) -> bool {
    let mut buf = [0u8; 4];
    matches!(rfs::fgetxattr(dir, "trusted.overlay.opaque", &mut buf), Ok(n) if &buf[..n] == b"y")
}

struct Walker<W: Write> {
    b: tar::Builder<W>,
    mode: TreeMode,
    links: HashMap<(u64, u64), PathBuf>,
    /// Host ids are written as this remapped container sees them.
    unmap: Option<Remap>,
}

impl<W: Write> Walker<W> {
    fn entry(&mut self, parent: &OwnedFd, name: &[u8], tar_path: &Path) -> Result<()> {
        let name_os = OsStr::from_bytes(name);
        let st = rfs::statat(parent, name_os, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(e, "stat"))?;
        let what = || tar_path.display().to_string();
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let fd = rfs::openat(
                    parent,
                    name_os,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io(e, &what()))?;
                self.dir(&fd, &st, tar_path)?;
            }
            FileType::RegularFile => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key).cloned() {
                        let mut h = header_for(&st, EntryType::Link, self.unmap.as_ref());
                        self.b.append_link(&mut h, tar_path, &first)?;
                        return Ok(());
                    }
                    self.links.insert(key, tar_path.to_path_buf());
                }
                let fd =
                    rfs::openat(parent, name_os, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| io(e, &what()))?;
                let mut h = header_for(&st, EntryType::Regular, self.unmap.as_ref());
                h.set_size(st.st_size as u64);
                let f = std::fs::File::from(fd);
                // Limit to the stat size: a file growing under us must not corrupt the stream.
                self.b.append_data(&mut h, tar_path, std::io::Read::take(f, st.st_size as u64))?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(parent, name_os, Vec::new()).map_err(|e| io(e, &what()))?;
                let mut h = header_for(&st, EntryType::Symlink, self.unmap.as_ref());
                self.b.append_link(&mut h, tar_path, OsStr::from_bytes(target.as_bytes()))?;
            }
            FileType::CharacterDevice if self.mode == TreeMode::OverlayUpper && st.st_rdev == 0 => {
                let wh = tar_path.with_file_name(format!(".wh.{}", name_os.to_string_lossy()));
                let mut h = header_for(&st, EntryType::Regular, self.unmap.as_ref());
                h.set_mode(0o600);
                self.b.append_data(&mut h, wh, std::io::empty())?;
            }
            t @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                let kind = match t {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut h = header_for(&st, kind, self.unmap.as_ref());
                h.set_device_major(rfs::major(st.st_rdev))?;
                h.set_device_minor(rfs::minor(st.st_rdev))?;
                self.b.append_data(&mut h, tar_path, std::io::empty())?;
            }
            _ => {} // sockets are not archived, as in Docker
        }
        Ok(())
    }

    fn dir(&mut self, fd: &OwnedFd, st: &rfs::Stat, tar_path: &Path) -> Result<()> {
        if !tar_path.as_os_str().is_empty() {
            let mut h = header_for(st, EntryType::Directory, self.unmap.as_ref());
            self.b.append_data(&mut h, tar_path, std::io::empty())?;
            if self.mode == TreeMode::OverlayUpper && is_opaque(fd) {
                let mut h = header_for(st, EntryType::Regular, self.unmap.as_ref());
                h.set_mode(0o600);
                self.b.append_data(&mut h, tar_path.join(".wh..wh..opq"), std::io::empty())?;
            }
        }
        for n in names(fd)? {
            let p = tar_path.join(OsStr::from_bytes(&n));
            self.entry(fd, &n, &p)?;
        }
        Ok(())
    }
}

/// Writes the tree at `dir` as a tar into `out`; entries are named `prefix/...` (no prefix: bare).
pub fn write_dir<W: Write>(dir: &OwnedFd, prefix: &Path, mode: TreeMode, out: W) -> Result<W> {
    write_dir_as(dir, prefix, mode, None, out)
}

/// [`write_dir`] of a remapped container's files as found on the host: owners are written as the
/// container sees them (`unmap`'s host ids back to container ids).
pub fn write_dir_as<W: Write>(
    dir: &OwnedFd,
    prefix: &Path,
    mode: TreeMode,
    unmap: Option<&Remap>,
    out: W,
) -> Result<W> {
    let st = rfs::fstat(dir).map_err(|e| io(e, "stat"))?;
    let mut w = Walker { b: tar::Builder::new(out), mode, links: HashMap::new(), unmap: unmap.cloned() };
    w.b.follow_symlinks(false);
    w.dir(dir, &st, prefix)?;
    Ok(w.b.into_inner()?)
}

/// Writes one entry (a file, symlink or whole directory) found as `name` in `parent`.
pub fn write_entry<W: Write>(
    parent: &OwnedFd,
    name: &[u8],
    tar_name: &Path,
    unmap: Option<&Remap>,
    out: W,
) -> Result<W> {
    let mut w =
        Walker { b: tar::Builder::new(out), mode: TreeMode::Plain, links: HashMap::new(), unmap: unmap.cloned() };
    w.b.follow_symlinks(false);
    w.entry(parent, name, tar_name)?;
    Ok(w.b.into_inner()?)
}

/// One line of `docker diff`: kind 0 modified, 1 added, 2 deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: u8,
}

/// Compares an overlay upper dir with its lower dirs (top first).
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let fd = rfs::open(upper, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io(e, "open upper"))?;
    let mut out = Vec::new();
    walk_changes(&fd, Path::new("/"), lowers, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn in_lower(lowers: &[PathBuf], p: &Path) -> bool {
    let rel = p.strip_prefix("/").unwrap_or(p);
    lowers.iter().any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
}

fn walk_changes(dir: &OwnedFd, path: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) -> Result<()> {
    for n in names(dir)? {
        let name = OsStr::from_bytes(&n);
        let p = path.join(name);
        let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(e, "stat"))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::CharacterDevice && st.st_rdev == 0 {
            out.push(Change { path: p.display().to_string(), kind: 2 });
            continue;
        }
        let kind = if in_lower(lowers, &p) { 0 } else { 1 };
        out.push(Change { path: p.display().to_string(), kind });
        if ft == FileType::Directory {
            let sub = rfs::openat(
                dir,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io(e, "open"))?;
            walk_changes(&sub, &p, lowers, out)?;
        }
    }
    Ok(())
}

/// Opens a directory path for `write_dir` (our own folders: layer and upper dirs).
pub fn open_dir(p: &Path) -> Result<OwnedFd> {
    rfs::open(p, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io(e, &p.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sys::root::Root;

    #[test]
    fn round_trips_through_the_applier() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("etc/sub")).unwrap();
        std::fs::write(src.path().join("etc/sub/f"), "data").unwrap();
        std::fs::hard_link(src.path().join("etc/sub/f"), src.path().join("etc/hl")).unwrap();
        std::os::unix::fs::symlink("../etc/sub/f", src.path().join("etc/ln")).unwrap();
        let tar = write_dir(&open_dir(src.path()).unwrap(), Path::new(""), TreeMode::Plain, Vec::new()).unwrap();
        let dst = tempfile::tempdir().unwrap();
        crate::apply::apply(&tar[..], &Root::open(dst.path()).unwrap()).unwrap();
        assert_eq!(std::fs::read_to_string(dst.path().join("etc/sub/f")).unwrap(), "data");
        assert_eq!(std::fs::read_to_string(dst.path().join("etc/hl")).unwrap(), "data");
        assert_eq!(std::fs::read_link(dst.path().join("etc/ln")).unwrap(), Path::new("../etc/sub/f"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(dst.path().join("etc/hl")).unwrap().ino(),
            std::fs::metadata(dst.path().join("etc/sub/f")).unwrap().ino()
        );
    }

    #[test]
    #[ignore = "needs root: run with --include-ignored (CI runs as root)"]
    fn upper_dirs_become_whiteouts() {
        let up = tempfile::tempdir().unwrap();
        let lower = tempfile::tempdir().unwrap();
        std::fs::create_dir(lower.path().join("etc")).unwrap();
        std::fs::write(lower.path().join("etc/gone"), "x").unwrap();
        std::fs::create_dir(up.path().join("etc")).unwrap();
        std::fs::write(up.path().join("etc/new"), "n").unwrap();
        rfs::mknodat(rfs::CWD, up.path().join("etc/gone"), FileType::CharacterDevice, Mode::empty(), 0).unwrap();
        std::fs::create_dir(up.path().join("opq")).unwrap();
        rfs::setxattr(up.path().join("opq"), "trusted.overlay.opaque", b"y", rfs::XattrFlags::empty()).unwrap();
        let tar = write_dir(&open_dir(up.path()).unwrap(), Path::new(""), TreeMode::OverlayUpper, Vec::new()).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<String> =
            a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["etc", "etc/.wh.gone", "etc/new", "opq", "opq/.wh..wh..opq"]);
        let ch = changes(up.path(), &[lower.path().to_path_buf()]).unwrap();
        let got: Vec<(String, u8)> = ch.into_iter().map(|c| (c.path, c.kind)).collect();
        assert_eq!(got, [("/etc".to_string(), 0), ("/etc/gone".into(), 2), ("/etc/new".into(), 1), ("/opq".into(), 1)]);
    }
}
