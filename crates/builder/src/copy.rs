//! COPY and ADD onto a mounted root. Reads come from real paths already confined to their root
//! (the walk never follows a symlink); every write goes through [`Root`], so a symlink in the image
//! (`/app -> /etc`) cannot send a file outside the root being built.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_sys::root::{clean, Root};
use berth_types::{Error, Result};

/// One source, resolved.
#[derive(Debug, Clone)]
pub enum Source {
    /// A path in the source root (the context or `--from`'s image).
    Path(PathBuf),
    /// A heredoc or downloaded file: content, file name, mode, mtime.
    Inline { name: String, data: Vec<u8>, mode: u32, mtime: i64 },
}

#[derive(Debug, Clone)]
pub struct Job {
    pub sources: Vec<Source>,
    /// Absolute in the destination root; a trailing `/` means a directory.
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<u32>,
    /// ADD: local tar archives are unpacked rather than copied.
    pub extract: bool,
}

/// Resolves `--chown` as Docker does: names through the image's passwd and group files, and a
/// missing group is the user's numeric id.
fn owner(root: &Root, spec: &str) -> Result<(u32, u32)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            let r = berth_runtime::user::resolve_user(root, u)
                .map_err(|_| Error::invalid(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}")))?;
            r.uid
        }
    };
    let gid = match g {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => berth_runtime::user::resolve_user(root, &format!("0:{g}"))
                .map_err(|_| Error::invalid(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}")))?
                .gid,
        },
    };
    Ok((uid, gid))
}

fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    let mut head = [0u8; 512];
    let n = std::io::Read::read(&mut f, &mut head).unwrap_or(0);
    head[..n].starts_with(&[0x1f, 0x8b])
        || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &head[257..262] == b"ustar")
}

/// Runs a job: `src_root` is where `Source::Path`s live, `dest_root` the mounted root.
pub fn run(job: &Job, src_root: Option<&Root>, dest_root: &Path) -> Result<()> {
    let dest = Root::open(dest_root)?;
    let ids = match &job.chown {
        Some(spec) => Some(owner(&dest, spec)?),
        None => None,
    };
    let (uid, gid) = ids.unwrap_or((0, 0));
    let dest_rel = clean(Path::new(&job.dest));
    let trailing = job.dest.ends_with('/') || job.dest.ends_with("/.") || dest_rel.as_os_str().is_empty();
    let dest_is_dir =
        trailing || dest.stat(&dest_rel).map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR).unwrap_or(false);
    if job.sources.len() > 1 && !trailing {
        return Err(Error::invalid(
            "When using COPY with more than one source file, the destination must be a directory and end with a /",
        ));
    }
    let w = Writer { root: &dest, uid, gid, chmod: job.chmod };
    for src in &job.sources {
        match src {
            Source::Inline { name, data, mode, mtime } => {
                let to = if dest_is_dir { dest_rel.join(name) } else { dest_rel.clone() };
                w.parent_dirs(&to)?;
                let mut f = dest.create_file(&to, 0o600)?;
                std::io::Write::write_all(&mut f, data)?;
                dest.set_meta(&to, uid, gid, Some(job.chmod.unwrap_or(*mode)), *mtime)?;
            }
            Source::Path(rel) => {
                let src_root = src_root.ok_or_else(|| Error::internal("copy source without a root"))?;
                let real = crate::context::real_path(src_root, rel)?;
                // `real` is already resolved inside its root: never follow it again on the host.
                let md = std::fs::symlink_metadata(&real)?;
                if md.is_dir() {
                    w.dir(&dest_rel, None)?;
                    w.contents(&real, &dest_rel)?;
                } else if job.extract && is_archive(&real) {
                    w.dir(&dest_rel, None)?;
                    let plain = berth_image::compress::decompress(std::fs::File::open(&real)?)?;
                    berth_image::apply::apply_at(plain, &dest, &dest_rel, false)?;
                } else {
                    let name = real.file_name().map(PathBuf::from).unwrap_or_default();
                    let to = if dest_is_dir { dest_rel.join(name) } else { dest_rel.clone() };
                    w.parent_dirs(&to)?;
                    w.entry(&real, &to)?;
                }
            }
        }
    }
    Ok(())
}

struct Writer<'a> {
    root: &'a Root,
    uid: u32,
    gid: u32,
    chmod: Option<u32>,
}

impl Writer<'_> {
    /// Missing parents of `to` are created root-owned 0755, as Docker does.
    fn parent_dirs(&self, to: &Path) -> Result<()> {
        if let Some(p) = to.parent() {
            if !p.as_os_str().is_empty() {
                self.root.mkdir(p, 0o755)?;
            }
        }
        Ok(())
    }

    /// A destination directory: an existing one keeps its metadata; a new one is owned by the copy.
    fn dir(&self, to: &Path, src: Option<&std::fs::Metadata>) -> Result<()> {
        if to.as_os_str().is_empty() {
            return Ok(());
        }
        if let Ok(st) = self.root.stat(to) {
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                return Ok(());
            }
            self.root.remove_all(to)?;
        }
        self.parent_dirs(to)?;
        self.root.mkdir(to, 0o755)?;
        let mode = self.chmod.or(src.map(|m| m.mode() & 0o7777)).unwrap_or(0o755);
        self.root.set_meta(to, self.uid, self.gid, Some(mode), src.map(|m| m.mtime()).unwrap_or(0))?;
        Ok(())
    }

    fn contents(&self, real: &Path, to: &Path) -> Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(real)?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            self.entry(&real.join(&n), &to.join(&n))?;
        }
        Ok(())
    }

    /// Copies one entry (recursively for directories) without following symlinks.
    fn entry(&self, real: &Path, to: &Path) -> Result<()> {
        let md = std::fs::symlink_metadata(real)?;
        let ft = md.file_type();
        if ft.is_dir() {
            self.dir(to, Some(&md))?;
            self.contents(real, to)?;
            // Children changed the directory's mtime; put the source's back.
            let mode = self.chmod.unwrap_or(md.mode() & 0o7777);
            return self.root.set_meta(to, self.uid, self.gid, Some(mode), md.mtime());
        }
        if let Ok(st) = self.root.lstat(to) {
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                self.root.remove_all(to)?;
            }
        }
        if ft.is_symlink() {
            let _ = self.root.remove_all(to);
            self.root.symlink(to, &std::fs::read_link(real)?)?;
            return self.root.set_meta(to, self.uid, self.gid, None, md.mtime());
        }
        if !ft.is_file() {
            // Devices, fifos and sockets in a build context are not copied (Docker errors on them too).
            return Ok(());
        }
        let mut out = self.root.create_file(to, 0o600)?;
        let mut inp = std::fs::File::open(real)?;
        std::io::copy(&mut inp, &mut out)?;
        drop(out);
        let mode = self.chmod.unwrap_or(md.mode() & 0o7777);
        self.root.set_meta(to, self.uid, self.gid, Some(mode), md.mtime())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Root, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        let dst = t.path().join("dst");
        std::fs::create_dir_all(src.join("dir/sub")).unwrap();
        std::fs::write(src.join("a.txt"), "a").unwrap();
        std::fs::write(src.join("dir/sub/b"), "b").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("dir/link")).unwrap();
        std::fs::create_dir_all(dst.join("etc")).unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        // The image has a symlink pointing out of its root: writes through it must stay inside.
        std::os::unix::fs::symlink(t.path().join("outside"), dst.join("escape")).unwrap();
        std::fs::write(dst.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
            .unwrap();
        std::fs::write(dst.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = Root::open(&src).unwrap();
        (t, r, dst)
    }

    fn job(sources: Vec<Source>, dest: &str) -> Job {
        Job { sources, dest: dest.into(), chown: None, chmod: None, extract: false }
    }

    #[test]
    fn copy_semantics() {
        let (t, src, dst) = setup();
        run(&job(vec![Source::Path("a.txt".into())], "/x/y"), Some(&src), &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("x/y")).unwrap(), b"a");
        run(&job(vec![Source::Path("a.txt".into())], "/x/"), Some(&src), &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("x/a.txt")).unwrap(), b"a");
        // A directory source copies its contents; symlinks inside are copied as links.
        run(&job(vec![Source::Path("dir".into())], "/app"), Some(&src), &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("app/sub/b")).unwrap(), b"b");
        assert_eq!(std::fs::read_link(dst.join("app/link")).unwrap(), Path::new("/etc/passwd"));
        // An existing directory as destination receives the file.
        run(&job(vec![Source::Path("a.txt".into())], "/app"), Some(&src), &dst).unwrap();
        assert!(dst.join("app/a.txt").is_file());
        let e = run(&job(vec![Source::Path("a.txt".into()), Source::Path("dir".into())], "/m"), Some(&src), &dst);
        assert!(e.unwrap_err().message.contains("must be a directory and end with a /"));
        // Writes through a symlink of the image stay inside the root.
        run(&job(vec![Source::Path("a.txt".into())], "/escape/pwned"), Some(&src), &dst).unwrap();
        assert!(!t.path().join("outside/pwned").exists());
    }

    #[test]
    fn chown_chmod_and_inline() {
        let (_t, src, dst) = setup();
        let mut j = job(vec![Source::Path("a.txt".into())], "/o/");
        j.chown = Some("app:staff".into());
        j.chmod = Some(0o640);
        run(&j, Some(&src), &dst).unwrap();
        let md = std::fs::metadata(dst.join("o/a.txt")).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (1000, 50, 0o640));
        j.chown = Some("1234".into());
        run(&j, Some(&src), &dst).unwrap();
        let md = std::fs::metadata(dst.join("o/a.txt")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 1234));
        j.chown = Some("nobody".into());
        assert!(run(&j, Some(&src), &dst).unwrap_err().message.contains("no such user"));
        let inline = Source::Inline { name: "EOF".into(), data: b"hi\n".to_vec(), mode: 0o644, mtime: 0 };
        run(&job(vec![inline], "/etc/motd"), None, &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("etc/motd")).unwrap(), b"hi\n");
    }
}
