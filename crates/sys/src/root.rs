//! File operations confined to a root directory.
//!
//! Paths are cleaned lexically first (as `filepath.Clean("/" + p)`: `..` never climbs above the root),
//! then every parent directory is opened with `openat2(RESOLVE_IN_ROOT)`, so a symlink planted by an
//! earlier entry (`a -> /etc`, `b -> ../../..`) resolves inside the root, never outside. The last
//! component is never followed: an entry created on top of a symlink replaces the link itself.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use berth_types::{Error, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RawMode, ResolveFlags, Timespec, Timestamps, CWD};
use rustix::io::Errno;

/// The most [`Root::read`] reads: files berthd reads whole from a container or an image are small
/// (passwd, group, manifests, a Dockerfile).
pub const READ_LIMIT: u64 = 16 << 20;

/// Cleans `p` into a relative path with no `.`, `..` or empty components (`..` never climbs above
/// its start).
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A directory that operations may not escape.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::internal(format!("open root {}: {e}", path.display())))?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn openat2(&self, rel: &Path, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        let rel: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        loop {
            match rfs::openat2(&self.fd, rel, flags | OFlags::CLOEXEC, mode, RESOLVE) {
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                r => return r,
            }
        }
    }

    /// Opens directory `rel` (already cleaned) and creates missing components with mode 0755.
    fn dir(&self, rel: &Path, create: bool) -> Result<OwnedFd> {
        self.dir_depth(rel, create, 0)
    }

    fn dir_depth(&self, rel: &Path, create: bool, depth: u32) -> Result<OwnedFd> {
        let open = |p: &Path| self.openat2(p, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty());
        match open(rel) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(io_err(e, rel)),
        }
        if depth > 40 {
            return Err(io_err(Errno::LOOP, rel));
        }
        let mut cur = PathBuf::new();
        let mut fd = open(Path::new(".")).map_err(|e| io_err(e, rel))?;
        for c in rel.components() {
            let parent = cur.clone();
            cur.push(c);
            match open(&cur) {
                Ok(next) => {
                    fd = next;
                    continue;
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err(e, &cur)),
            }
            match rfs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    // A dangling symlink: create its target, resolved inside the root.
                    let target = rfs::readlinkat(&fd, c.as_os_str(), Vec::new()).map_err(|e| io_err(e, &cur))?;
                    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                    let resolved = if target.is_absolute() { clean(target) } else { clean(&parent.join(target)) };
                    self.dir_depth(&resolved, create, depth + 1)?;
                }
                Err(e) => return Err(io_err(e, &cur)),
            }
            // Re-resolve from the root: the component may be a symlink left by an earlier entry.
            fd = open(&cur).map_err(|e| io_err(e, &cur))?;
        }
        Ok(fd)
    }

    /// Splits a path into (parent dir fd, final name); `None` for the root itself.
    fn parent(&self, p: &Path, create: bool) -> Result<Option<(OwnedFd, PathBuf)>> {
        let rel = clean(p);
        let Some(name) = rel.file_name().map(PathBuf::from) else {
            return Ok(None);
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok(Some((self.dir(parent, create)?, name)))
    }

    /// Removes whatever is at `p` (recursively for directories). Missing is fine.
    pub fn remove_all(&self, p: &Path) -> Result<()> {
        let Some((dir, name)) = self.parent(p, false).or_else(not_found_is_none)? else {
            return Ok(());
        };
        remove_at(&dir, &name).map_err(|e| io_err(e, p))
    }

    /// Removes a non-directory at `p` so something else can be created there; keeps directories
    /// unless `replace_dir`.
    fn clear(&self, dir: &OwnedFd, name: &Path, replace_dir: bool) -> rustix::io::Result<bool> {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                if replace_dir {
                    remove_at(dir, name)?;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
            Ok(_) => {
                rfs::unlinkat(dir, name, AtFlags::empty())?;
                Ok(false)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn mkdir(&self, p: &Path, mode: u32) -> Result<()> {
        let Some((dir, name)) = self.parent(p, true)? else {
            return Ok(());
        };
        let exists_as_dir = self.clear(&dir, &name, false).map_err(|e| io_err(e, p))?;
        if !exists_as_dir {
            rfs::mkdirat(&dir, &name, Mode::from_raw_mode(mode as RawMode)).map_err(|e| io_err(e, p))?;
        }
        Ok(())
    }

    /// Creates (replacing) a regular file and returns it open for writing.
    pub fn create_file(&self, p: &Path, mode: u32) -> Result<std::fs::File> {
        let (dir, name) = self.parent(p, true)?.ok_or_else(|| Error::invalid("cannot write the root"))?;
        self.clear(&dir, &name, true).map_err(|e| io_err(e, p))?;
        let fd = rfs::openat(
            &dir,
            &name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode as RawMode),
        )
        .map_err(|e| io_err(e, p))?;
        Ok(std::fs::File::from(fd))
    }

    pub fn symlink(&self, p: &Path, target: &Path) -> Result<()> {
        let (dir, name) = self.parent(p, true)?.ok_or_else(|| Error::invalid("cannot replace the root"))?;
        self.clear(&dir, &name, true).map_err(|e| io_err(e, p))?;
        rfs::symlinkat(target, &dir, &name).map_err(|e| io_err(e, p))
    }

    /// Hard-links `p` to the existing entry `target`, both inside the root.
    pub fn hardlink(&self, p: &Path, target: &Path) -> Result<()> {
        let (tdir, tname) = self.parent(target, false)?.ok_or_else(|| Error::invalid("cannot link to the root"))?;
        let (dir, name) = self.parent(p, true)?.ok_or_else(|| Error::invalid("cannot replace the root"))?;
        if clean(p) == clean(target) {
            return Ok(());
        }
        self.clear(&dir, &name, true).map_err(|e| io_err(e, p))?;
        rfs::linkat(&tdir, &tname, &dir, &name, AtFlags::empty()).map_err(|e| io_err(e, p))
    }

    /// Creates a device node, fifo or (for overlay whiteouts) a 0:0 character device.
    pub fn mknod(&self, p: &Path, kind: FileType, mode: u32, major: u32, minor: u32) -> Result<()> {
        let (dir, name) = self.parent(p, true)?.ok_or_else(|| Error::invalid("cannot replace the root"))?;
        self.clear(&dir, &name, true).map_err(|e| io_err(e, p))?;
        let dev = rfs::makedev(major, minor);
        rfs::mknodat(&dir, &name, kind, Mode::from_raw_mode(mode as RawMode), dev).map_err(|e| io_err(e, p))
    }

    /// Sets owner, mode (not on symlinks) and mtime of `p` without following a final symlink.
    pub fn set_meta(&self, p: &Path, uid: u32, gid: u32, mode: Option<u32>, mtime: i64) -> Result<()> {
        let (dir, name) = match self.parent(p, false)? {
            Some(x) => x,
            None => (self.dir(Path::new(""), false)?, PathBuf::from(".")),
        };
        // Everything through one O_PATH fd of the entry itself: a process in the container that
        // swaps the entry for a symlink after we looked cannot redirect any of these calls.
        let fd = rfs::openat(&dir, &name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_err(e, p))?;
        let owner = (Some(rfs::Uid::from_raw(uid)), Some(rfs::Gid::from_raw(gid)));
        rfs::chownat(&fd, c"", owner.0, owner.1, AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(e, p))?;
        let is_link = FileType::from_raw_mode(rfs::fstat(&fd).map_err(|e| io_err(e, p))?.st_mode) == FileType::Symlink;
        // Linux has no lchmod, and a symlink's mode means nothing: never chmod one.
        if let Some(mode) = mode.filter(|_| !is_link) {
            // chmod after chown: chown clears setuid/setgid bits. fchmod refuses O_PATH fds; the
            // fd's /proc link names the inode already resolved, so it cannot be redirected.
            rfs::chmod(proc_fd(&fd).as_str(), Mode::from_raw_mode(mode as RawMode)).map_err(|e| io_err(e, p))?;
        }
        let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
        rfs::utimensat(&dir, &name, &Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(e, p))
    }

    pub fn set_xattr(&self, p: &Path, key: &OsStr, value: &[u8]) -> Result<()> {
        let fd = self.openat2(&clean(p), OFlags::PATH | OFlags::NOFOLLOW, Mode::empty()).map_err(|e| io_err(e, p))?;
        // fsetxattr does not work on O_PATH fds; go through the fd's /proc link, which names the
        // already-resolved inode and so cannot be redirected.
        rfs::setxattr(proc_fd(&fd).as_str(), key.as_bytes(), value, rfs::XattrFlags::empty())
            .or_else(|e| if e == Errno::LOOP { Ok(()) } else { Err(e) })
            .map_err(|e| io_err(e, p))
    }

    /// Reads a whole regular file inside the root (following symlinks within it), of at most
    /// [`READ_LIMIT`] bytes.
    pub fn read(&self, p: &Path) -> Result<Vec<u8>> {
        self.read_limited(p, READ_LIMIT)
    }

    /// Reads a regular file of at most `limit` bytes. What a container or an image put there is
    /// hostile: a fifo must not block (O_NONBLOCK, and only regular files are read), and
    /// `/dev/zero` or a huge file must not exhaust memory (the size is checked and the read capped).
    pub fn read_limited(&self, p: &Path, limit: u64) -> Result<Vec<u8>> {
        let fd = self.openat2(&clean(p), OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).map_err(|e| io_err(e, p))?;
        let st = rfs::fstat(&fd).map_err(|e| io_err(e, p))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::invalid(format!("{}: not a regular file", p.display())));
        }
        if st.st_size as u64 > limit {
            return Err(Error::invalid(format!("{}: larger than {limit} bytes", p.display())));
        }
        let mut buf = Vec::with_capacity(st.st_size as usize);
        // Capped again while reading: the file may grow after the fstat.
        std::io::Read::read_to_end(&mut std::io::Read::take(std::fs::File::from(fd), limit + 1), &mut buf)?;
        if buf.len() as u64 > limit {
            return Err(Error::invalid(format!("{}: larger than {limit} bytes", p.display())));
        }
        Ok(buf)
    }

    /// Opens directory `p` inside the root (following symlinks within it); None if it is missing or
    /// not a directory.
    pub fn open_dir(&self, p: &Path) -> Result<Option<OwnedFd>> {
        match self.openat2(&clean(p), OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(io_err(e, p)),
        }
    }

    /// Opens a regular file inside the root for reading, following symlinks within it.
    /// Only regular files: a fifo or a device there is refused, never opened blocking.
    pub fn open_file(&self, p: &Path) -> Result<std::fs::File> {
        let fd = self.openat2(&clean(p), OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).map_err(|e| io_err(e, p))?;
        if FileType::from_raw_mode(rfs::fstat(&fd).map_err(|e| io_err(e, p))?.st_mode) != FileType::RegularFile {
            return Err(Error::invalid(format!("{}: not a regular file", p.display())));
        }
        Ok(std::fs::File::from(fd))
    }

    /// Opens `p` as an O_PATH fd, following symlinks within the root (never blocks on a fifo).
    pub fn open_path(&self, p: &Path) -> Result<OwnedFd> {
        self.openat2(&clean(p), OFlags::PATH, Mode::empty()).map_err(|e| io_err(e, p))
    }

    /// Opens `p` as an O_PATH fd, following symlinks only within the root, with its stat.
    pub fn open_in_root(&self, p: &Path) -> Result<(OwnedFd, rfs::Stat)> {
        let fd = self.openat2(&clean(p), OFlags::PATH, Mode::empty()).map_err(|e| io_err(e, p))?;
        let st = rfs::fstat(&fd).map_err(|e| io_err(e, p))?;
        Ok((fd, st))
    }

    /// Opens `p` as an O_PATH fd without following a final symlink, with its stat.
    pub fn open_nofollow(&self, p: &Path) -> Result<(OwnedFd, rfs::Stat)> {
        let fd = self.openat2(&clean(p), OFlags::PATH | OFlags::NOFOLLOW, Mode::empty()).map_err(|e| io_err(e, p))?;
        let st = rfs::fstat(&fd).map_err(|e| io_err(e, p))?;
        Ok((fd, st))
    }

    /// Opens the parent directory of `p` (creating nothing) and returns it with the final name.
    pub fn open_parent(&self, p: &Path) -> Result<Option<(OwnedFd, PathBuf)>> {
        self.parent(p, false)
    }

    /// Stats `p` inside the root without following a final symlink.
    pub fn lstat(&self, p: &Path) -> Result<rfs::Stat> {
        Ok(self.open_nofollow(p)?.1)
    }

    /// Stats `p` inside the root, following symlinks within it.
    pub fn stat(&self, p: &Path) -> Result<rfs::Stat> {
        let fd = self.openat2(&clean(p), OFlags::PATH, Mode::empty()).map_err(|e| io_err(e, p))?;
        rfs::fstat(fd.as_fd()).map_err(|e| io_err(e, p))
    }
}

/// The /proc link of an fd: a path that resolves to exactly that open inode.
fn proc_fd(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd))
}

fn not_found_is_none<T>(e: Error) -> Result<Option<T>> {
    if e.kind == berth_types::ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(e)
    }
}

fn remove_at(dir: &OwnedFd, name: &Path) -> rustix::io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {
            let sub = rfs::openat(
                dir,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let entries: Vec<PathBuf> = rfs::Dir::read_from(&sub)?
                .filter_map(|e| e.ok())
                .map(|e| PathBuf::from(OsStr::from_bytes(e.file_name().to_bytes())))
                .filter(|n| n != Path::new(".") && n != Path::new(".."))
                .collect();
            for e in entries {
                remove_at(&sub, &e)?;
            }
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Err(e) => Err(e),
    }
}

/// A failure inside a root. A missing path is an explicit not-found: these are paths a client
/// names inside a container or a volume (`docker cp`, a subpath), where Docker answers 404.
fn io_err(e: Errno, p: &Path) -> Error {
    let io = std::io::Error::from(e);
    let kind = if e == Errno::NOENT {
        berth_types::ErrorKind::NotFound
    } else {
        Error::from(std::io::Error::from(io.kind())).kind
    };
    Error::new(kind, format!("{}: {io}", p.display())).with_source(io)
}

/// Bytes of the regular files under `p`, never following symlinks (volume and layer sizes).
pub fn tree_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.path().symlink_metadata() {
            Ok(m) if m.is_dir() => tree_size(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// Opens a path relative to the current directory; exposed for callers that only need CWD.
pub fn cwd() -> impl AsFd {
    CWD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_and_never_block() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", t.path().join("etc/passwd")).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, t.path().join("etc/group"), FileType::Fifo, Mode::from_raw_mode(0o644), 0)
            .unwrap();
        std::fs::write(t.path().join("etc/big"), vec![b'x'; 4096]).unwrap();
        std::fs::write(t.path().join("etc/ok"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let r = Root::open(t.path()).unwrap();
        // /dev/zero is outside the root: the symlink resolves inside it, to nothing.
        assert!(r.read(Path::new("/etc/passwd")).is_err());
        let e = r.read(Path::new("/etc/group")).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
        let e = r.read_limited(Path::new("/etc/big"), 1024).unwrap_err();
        assert!(e.message.contains("larger than 1024 bytes"), "{e}");
        assert_eq!(r.read(Path::new("/etc/ok")).unwrap().len(), 26);
    }

    #[test]
    fn clean_never_climbs() {
        assert_eq!(clean(Path::new("/../../etc/passwd")), PathBuf::from("etc/passwd"));
        assert_eq!(clean(Path::new("a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(clean(Path::new("..")), PathBuf::from(""));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let r = Root::open(t.path()).unwrap();
        r.symlink(Path::new("escape"), outside.path()).unwrap();
        r.symlink(Path::new("up"), Path::new("../../../../")).unwrap();
        r.create_file(Path::new("escape/pwned"), 0o644).unwrap();
        r.create_file(Path::new("up/pwned2"), 0o644).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // The writes landed inside the root.
        assert!(t.path().join(outside.path().strip_prefix("/").unwrap()).join("pwned").exists());
        assert!(t.path().join("pwned2").exists());
        // A file written over a symlink replaces the link, not its target.
        std::fs::write(outside.path().join("victim"), "safe").unwrap();
        r.symlink(Path::new("v"), &outside.path().join("victim")).unwrap();
        r.create_file(Path::new("v"), 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(outside.path().join("victim")).unwrap(), "safe");
        r.remove_all(Path::new("/")).unwrap();
        r.remove_all(Path::new("nonexistent/deeper")).unwrap();
    }
}
