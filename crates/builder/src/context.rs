//! The build context: the client's tar unpacked into a private folder through the layer applier
//! (the same confinement: no entry lands outside), `.dockerignore` applied, and content checksums
//! for the cache.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_dockerfile::pattern::{glob_match, has_meta, Ignore};
use berth_sys::root::{clean, Root};
use berth_types::{Digest, Error, Result};
use sha2::{Digest as _, Sha256};

pub struct Context {
    dir: PathBuf,
    root: Root,
    sums: Mutex<HashMap<PathBuf, [u8; 32]>>,
    /// SHA-256 of files' content known beforehand (BuildKit's kept contexts hash what they
    /// write), by path under the context: not read again for the cache key.
    known: HashMap<PathBuf, [u8; 32]>,
    /// SHA-256 of files' content by inode, hashed as the context was unpacked.
    written: berth_image::apply::FileDigests,
}

impl Drop for Context {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn not_found(src: &str) -> Error {
    Error::invalid(format!(
        "COPY failed: file not found in build context or excluded by .dockerignore: stat {src}: file does not exist"
    ))
}

impl Context {
    /// Unpacks a (plain, gzip or zstd) tar into `dir`, which must not exist. Blocking.
    pub fn extract(body: impl Read, dir: PathBuf) -> Result<Context> {
        std::fs::create_dir_all(&dir)?;
        // Made first: dropping it removes the folder, whatever fails below.
        let mut ctx = Context {
            root: Root::open(&dir)?,
            dir,
            sums: Mutex::new(HashMap::new()),
            known: HashMap::new(),
            written: HashMap::new(),
        };
        let mut plain = berth_image::compress::decompress(body)?;
        // Files are hashed as they are written, while the client still sends the rest: a COPY's
        // cache key then reads nothing again (50 MB of context: ~25 ms of SHA-256 off the build).
        let applied = berth_image::apply::apply_hashed(&mut plain, &ctx.root);
        // The client may still be sending the archive's padding (or the rest of a bad one): read
        // it (bounded), so the error answered next (a Dockerfile parse error, say) reaches the
        // client instead of a broken pipe.
        let _ = std::io::copy(&mut std::io::Read::take(&mut plain, 64 << 20), &mut std::io::sink());
        let (_, written) = applied.map_err(|e| Error::invalid(format!("invalid build context: {e}")))?;
        ctx.written = written;
        Ok(ctx)
    }

    /// A context folder made by someone else (BuildKit's kept contexts), taken over: it is
    /// removed with the context.
    /// `known` gives the content digests of files under it, when the maker has them.
    pub fn adopt(dir: PathBuf, known: HashMap<PathBuf, [u8; 32]>) -> Result<Context> {
        Ok(Context { root: Root::open(&dir)?, dir, sums: Mutex::new(HashMap::new()), known, written: HashMap::new() })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads the Dockerfile at `name` (relative to the context) before `.dockerignore` may hide it.
    pub fn dockerfile(&self, name: &str) -> Result<String> {
        let name = if name.is_empty() { "Dockerfile" } else { name };
        let rel = clean(Path::new(name));
        let data = match self.root.read(&rel) {
            Ok(d) => d,
            // Docker also accepts the lower-case name when the default one is missing.
            Err(_) if name == "Dockerfile" => self.root.read(Path::new("dockerfile")).map_err(|_| missing(name))?,
            Err(_) => return Err(missing(name)),
        };
        String::from_utf8(data).map_err(|_| Error::invalid("the Dockerfile is not valid UTF-8"))
    }

    /// Removes what `.dockerignore` excludes (the CLI did so already; other clients may not have).
    pub fn apply_dockerignore(&self) -> Result<()> {
        let Ok(text) = self.root.read(Path::new(".dockerignore")) else { return Ok(()) };
        let ig = Ignore::parse(&String::from_utf8_lossy(&text));
        if !ig.is_empty() {
            prune(&self.dir, "", &ig)?;
        }
        Ok(())
    }

    /// Expands COPY sources (cleaned, globs matched as Go's `filepath.Match` per path) to the paths
    /// they name inside the context. Each must match something.
    pub fn resolve(&self, sources: &[String]) -> Result<Vec<PathBuf>> {
        resolve_in(&self.root, sources)
    }

    /// A checksum of paths' content and metadata (not times): the COPY part of a cache key.
    pub fn checksum(&self, paths: &[PathBuf]) -> Result<Digest> {
        let mut h = Sha256::new();
        for p in paths {
            h.update(p.as_os_str().as_encoded_bytes());
            h.update([0]);
            let cached = self.sums.lock().expect("sums lock").get(p).copied();
            let sum = match cached {
                Some(s) => s,
                None => {
                    let real = real_path(&self.root, p)?;
                    let mut sub = Sha256::new();
                    hash_tree(&real, Path::new(""), &mut sub, &|p, md| {
                        self.written
                            .get(&md.ino())
                            .or_else(|| p.strip_prefix(self.root.path()).ok().and_then(|r| self.known.get(r)))
                            .copied()
                    })?;
                    let s: [u8; 32] = sub.finalize().into();
                    self.sums.lock().expect("sums lock").insert(p.clone(), s);
                    s
                }
            };
            h.update(sum);
        }
        Ok(Digest::from_hasher(h))
    }
}

fn missing(name: &str) -> Error {
    Error::invalid(format!("Cannot locate specified Dockerfile: {name}"))
}

fn prune(dir: &Path, rel: &str, ig: &Ignore) -> Result<()> {
    for e in std::fs::read_dir(dir.join(rel))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let full = dir.join(&child);
        let is_dir = e.file_type()?.is_dir();
        let excluded = ig.excludes(&child);
        if is_dir {
            if excluded && !ig.has_exclusions() {
                std::fs::remove_dir_all(&full)?;
                continue;
            }
            prune(dir, &child, ig)?;
            if excluded && std::fs::read_dir(&full)?.next().is_none() {
                std::fs::remove_dir(&full)?;
            }
        } else if excluded {
            std::fs::remove_file(&full)?;
        }
    }
    Ok(())
}

/// The real path of `rel` inside `root`, symlinks on the way resolved within the root.
pub(crate) fn real_path(root: &Root, rel: &Path) -> Result<PathBuf> {
    // Symlinks are followed within the root; one that leads nowhere inside it (`-> /etc/shadow`)
    // is not found, as with Docker.
    let fd = root.open_path(rel).map_err(|_| not_found(&rel.to_string_lossy()))?;
    use std::os::fd::AsRawFd;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    if !real.starts_with(root.path()) {
        return Err(Error::invalid(format!("{} resolves outside the build context", rel.display())));
    }
    Ok(real)
}

pub(crate) fn resolve_in(root: &Root, sources: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for src in sources {
        if climbs_out(src) {
            return Err(Error::invalid(format!("COPY failed: forbidden path outside the build context: {src} ()")));
        }
        let rel = clean(Path::new(src));
        if !has_meta(src) {
            root.lstat(&rel).map_err(|_| not_found(src))?;
            out.push(rel);
            continue;
        }
        let pattern = rel.to_string_lossy().into_owned();
        let depth = pattern.split('/').count();
        let mut found = Vec::new();
        walk_match(root.path(), Path::new(""), &pattern, depth, &mut found)?;
        if found.is_empty() {
            return Err(not_found(src));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Whether a relative source names something above the root (`../x`), which Docker refuses.
fn climbs_out(src: &str) -> bool {
    let mut depth = 0i32;
    for seg in src.split('/') {
        match seg {
            "" | "." => {}
            ".." if src.starts_with('/') => depth = (depth - 1).max(0),
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// Paths `depth` components deep that match `pattern`; never follows symlinks while walking.
fn walk_match(base: &Path, rel: &Path, pattern: &str, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(base.join(rel)) else { return Ok(()) };
    let seg = pattern.split('/').nth(rel.components().count()).unwrap_or_default().to_string();
    for e in rd.flatten() {
        let child = rel.join(e.file_name());
        let name = e.file_name().to_string_lossy().into_owned();
        if !glob_match(&seg, &name, true) {
            continue;
        }
        if child.components().count() == depth {
            out.push(child);
        } else if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk_match(base, &child, pattern, depth, out)?;
        }
    }
    Ok(())
}

/// A tree's content and metadata (not times); a file counts by the SHA-256 of its content, read
/// unless `known` has it.
fn hash_tree(
    real: &Path,
    rel: &Path,
    h: &mut Sha256,
    known: &dyn Fn(&Path, &std::fs::Metadata) -> Option<[u8; 32]>,
) -> Result<()> {
    let md = std::fs::symlink_metadata(real)?;
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update(md.mode().to_le_bytes());
    if md.file_type().is_symlink() {
        h.update(std::fs::read_link(real)?.as_os_str().as_encoded_bytes());
    } else if md.is_file() {
        h.update(md.len().to_le_bytes());
        let digest = match known(real, &md) {
            Some(d) => d,
            None => {
                let mut fh = Sha256::new();
                let mut f = std::fs::File::open(real)?;
                let mut buf = vec![0u8; 1 << 17];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    fh.update(&buf[..n]);
                }
                fh.finalize().into()
            }
        };
        h.update(digest);
    } else if md.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(real)?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            hash_tree(&real.join(&n), &rel.join(&n), h, known)?;
        }
    }
    h.update([0xff]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Context) {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let c = Context::extract(&tar[..], t.path().join("ctx")).unwrap();
        (t, c)
    }

    #[test]
    fn dockerignore_and_globs() {
        let (_t, c) = ctx(&[
            ("Dockerfile", b"FROM scratch\n"),
            (".dockerignore", b"*.log\nbuild\n!build/keep\n"),
            ("a.txt", b"a"),
            ("b.txt", b"b"),
            ("x.log", b"x"),
            ("build/out", b"o"),
            ("build/keep", b"k"),
            ("d/e/f.txt", b"f"),
        ]);
        c.apply_dockerignore().unwrap();
        assert!(c.root().lstat(Path::new("x.log")).is_err());
        assert!(c.root().lstat(Path::new("build/out")).is_err());
        assert!(c.root().lstat(Path::new("build/keep")).is_ok());
        let r = c.resolve(&["*.txt".into(), "d/*/f.txt".into(), "/../a.txt".into()]).unwrap();
        assert!(c.resolve(&["../../etc/passwd".into()]).unwrap_err().message.contains("forbidden path outside"));
        assert_eq!(r, vec![PathBuf::from("a.txt"), "b.txt".into(), "d/e/f.txt".into(), "a.txt".into()]);
        assert!(c.resolve(&["x.log".into()]).unwrap_err().message.contains("file not found in build context"));
        assert!(c.resolve(&["*.none".into()]).is_err());
        assert_eq!(c.dockerfile("").unwrap(), "FROM scratch\n");
        assert!(c.dockerfile("nope").unwrap_err().message.contains("Cannot locate specified Dockerfile: nope"));
    }

    #[test]
    fn checksum_follows_content_not_time() {
        let (_t, c) = ctx(&[("a", b"1"), ("d/b", b"2")]);
        let s1 = c.checksum(&["a".into(), "d".into()]).unwrap();
        let (_t2, c2) = ctx(&[("a", b"1"), ("d/b", b"3")]);
        assert_ne!(s1, c2.checksum(&["a".into(), "d".into()]).unwrap());
        let (_t3, c3) = ctx(&[("a", b"1"), ("d/b", b"2")]);
        assert_eq!(s1, c3.checksum(&["a".into(), "d".into()]).unwrap());
    }

    #[test]
    fn known_digests_give_the_same_checksum_as_reading() {
        let (t, c) = ctx(&[("a", b"1"), ("d/b", b"2")]);
        let read = c.checksum(&["a".into(), "d".into()]).unwrap();
        // The same folder adopted with its files' digests given: not read, same key.
        let copy = t.path().join("copy");
        std::fs::create_dir_all(copy.join("d")).unwrap();
        std::fs::write(copy.join("a"), b"1").unwrap();
        std::fs::write(copy.join("d/b"), b"2").unwrap();
        for p in ["a", "d", "d/b"] {
            let src = std::fs::metadata(c.path().join(p)).unwrap().permissions();
            std::fs::set_permissions(copy.join(p), src).unwrap();
        }
        let known: HashMap<PathBuf, [u8; 32]> =
            [("a", b"1"), ("d/b", b"2")].iter().map(|(p, d)| (PathBuf::from(p), Sha256::digest(d).into())).collect();
        let adopted = Context::adopt(copy.clone(), known).unwrap();
        assert_eq!(read, adopted.checksum(&["a".into(), "d".into()]).unwrap());
        // A wrong digest changes the key: the digests are what the key is made of.
        let wrong: HashMap<PathBuf, [u8; 32]> = [(PathBuf::from("a"), [0u8; 32])].into_iter().collect();
        let copy2 = t.path().join("copy2");
        std::fs::create_dir_all(&copy2).unwrap();
        std::fs::write(copy2.join("a"), b"1").unwrap();
        std::fs::set_permissions(copy2.join("a"), std::fs::metadata(c.path().join("a")).unwrap().permissions())
            .unwrap();
        let c2 = Context::adopt(copy2, wrong).unwrap();
        assert_ne!(c.checksum(&["a".into()]).unwrap(), c2.checksum(&["a".into()]).unwrap());
    }

    /// Digests taken while unpacking follow the files, not the names: a later entry that writes
    /// `d/f` through the symlink `e` → `d` must not leave `d/f` with the digest of what it held.
    #[test]
    fn digests_taken_while_unpacking_follow_the_files() {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        file(&mut b, "d/f", b"old");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "e", "d").unwrap();
        file(&mut b, "e/f", b"new");
        let c = Context::extract(&b.into_inner().unwrap()[..], t.path().join("ctx")).unwrap();
        assert_eq!(std::fs::read(c.path().join("d/f")).unwrap(), b"new");
        let (_t2, plain) = ctx(&[("d/f", b"new")]);
        assert_eq!(c.checksum(&["d".into()]).unwrap(), plain.checksum(&["d".into()]).unwrap());
        // And the digests taken while unpacking are the ones reading gives.
        let (_t3, fresh) = ctx(&[("a", b"1"), ("d/b", b"2")]);
        let read = Context::adopt(fresh.path().to_path_buf(), HashMap::new()).unwrap();
        assert_eq!(
            fresh.checksum(&["a".into(), "d".into()]).unwrap(),
            read.checksum(&["a".into(), "d".into()]).unwrap()
        );
        std::mem::forget(read); // the folder is `fresh`'s to remove
    }
}
