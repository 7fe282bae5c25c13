//! Build contexts kept between builds, as BuildKit keeps its local sources: per client context
//! (the session's shared key and the local's name) berthd keeps the files of the last transfer
//! and a manifest of their stats, and asks the client only for what changed. A rebuild of an
//! unchanged 50 MB context then moves a few hundred bytes of stats. Each build gets its own
//! copy (hard links: files are replaced, never rewritten, so a running build never sees a
//! later sync).
//!
//! Entries come from the client: they are written through confined resolution (openat2) into
//! berthd's private folder; nothing is followed.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_sys::root::Root;
use berth_types::{Error, Result};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::filesync::{kind_of, unix_perm, EntryKind, Request, Transfer};
use crate::proto::Stat;
use crate::session::Session;

/// Contexts kept at most (the most recently used).
const KEEP: usize = 64;

/// Content digests of a build's context files, by path under it.
pub(crate) type Digests = HashMap<PathBuf, [u8; 32]>;

/// What the manifest keeps per entry: path, mode, uid, gid, size, mtime, link, content digest.
type ManifestEntry = (String, u32, u32, u32, i64, i64, String, String);

pub(crate) struct Contexts {
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What the writer thread does, in transfer order.
enum Op {
    Entry(Stat),
    Begin(Stat),
    Data(Vec<u8>),
    End,
    /// Removes what the transfer did not list.
    Finish(HashSet<String>),
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

/// The stats that make two transfers of an entry the same.
fn same(a: &Stat, b: &Stat) -> bool {
    (a.mode, a.uid, a.gid, a.size, a.mod_time, &a.linkname, a.devmajor, a.devminor)
        == (b.mode, b.uid, b.gid, b.size, b.mod_time, &b.linkname, b.devmajor, b.devminor)
}

impl Contexts {
    pub(crate) fn new(dir: PathBuf) -> Contexts {
        Contexts { dir, locks: Mutex::default() }
    }

    /// Brings the kept copy of `req.dir` for `key` up to date from the client, then makes `out`
    /// (which must not exist) a copy of it for one build. Returns the bytes of file data received
    /// and the SHA-256 of every regular file's content by path (hashed as written, kept in the
    /// manifest: an unchanged file is not read again).
    pub(crate) async fn sync(
        &self,
        session: &Session,
        key: &str,
        req: &Request,
        out: PathBuf,
    ) -> Result<(u64, Digests)> {
        let name = hex::encode(Sha256::digest(format!("{key}\0{}", req.dir)));
        let lock = self.locks.lock().unwrap().entry(name.clone()).or_default().clone();
        let _held = lock.lock().await;
        let base = self.dir.join(&name);
        let (tree, manifest) = (base.join("tree"), base.join("manifest.json"));
        // The manifest goes first: a sync cut short leaves none, and the next sends everything.
        let (t2, m2) = (tree.clone(), manifest.clone());
        let old: HashMap<String, (Stat, String)> = blocking(move || {
            std::fs::create_dir_all(&t2)?;
            let old = match std::fs::read(&m2) {
                Ok(b) => serde_json::from_slice::<Vec<ManifestEntry>>(&b).unwrap_or_default(),
                Err(_) => vec![],
            };
            let _ = std::fs::remove_file(&m2);
            Ok(old
                .into_iter()
                .map(|(path, mode, uid, gid, size, mod_time, linkname, digest)| {
                    let st =
                        Stat { path: path.clone(), mode, uid, gid, size, mod_time, linkname, ..Default::default() };
                    (path, (st, digest))
                })
                .collect())
        })
        .await?;

        let mut t = Transfer::open(session, req).await?;
        let (tx, rx) = mpsc::channel::<Op>(32);
        let t3 = tree.clone();
        let writer = tokio::task::spawn_blocking(move || write(&t3, rx));
        let res = self.transfer(&mut t, &old, &tx, req.max_bytes).await;
        drop(tx);
        let written = writer.await.map_err(|e| Error::internal(format!("context writer: {e}")))?;
        let total = res?;
        let mut digests = written?;
        let entries = std::mem::take(&mut t.entries);
        t.finish().await;
        // Unchanged files keep the digest they were written with; a hard link has its target's.
        for st in &entries {
            match kind_of(st) {
                EntryKind::File { hardlink: false } if !digests.contains_key(&st.path) => {
                    if let Some((_, d)) = old.get(&st.path) {
                        digests.insert(st.path.clone(), d.clone());
                    }
                }
                EntryKind::File { hardlink: true } => {
                    if let Some(d) = digests.get(st.linkname.trim_start_matches('/')).cloned() {
                        digests.insert(st.path.clone(), d);
                    }
                }
                _ => {}
            }
        }
        let known: Digests = digests
            .iter()
            .filter_map(|(p, d)| {
                Some((PathBuf::from(p.trim_start_matches('/')), hex::decode(d).ok()?.try_into().ok()?))
            })
            .collect();

        blocking(move || {
            let m: Vec<_> = entries
                .iter()
                .filter(|s| kind_of(s) != EntryKind::Skip)
                .map(|s| {
                    let d = digests.get(&s.path).cloned().unwrap_or_default();
                    (&s.path, s.mode, s.uid, s.gid, s.size, s.mod_time, &s.linkname, d)
                })
                .collect();
            std::fs::write(&manifest, serde_json::to_vec(&m).map_err(|e| Error::internal(e.to_string()))?)?;
            copy_tree(&tree, &out)
        })
        .await?;
        Ok((total, known))
    }

    /// Sends the writer what changed since `old`; the data of changed files is asked for.
    async fn transfer(
        &self,
        t: &mut Transfer,
        old: &HashMap<String, (Stat, String)>,
        tx: &mpsc::Sender<Op>,
        max: u64,
    ) -> Result<u64> {
        let gone = || Error::internal("the context writer stopped");
        let mut total = 0u64;
        let mut listed = HashSet::new();
        for id in 0..t.entries.len() {
            let st = t.entries[id].clone();
            let kind = kind_of(&st);
            if kind == EntryKind::Skip {
                continue;
            }
            listed.insert(st.path.trim_start_matches('/').to_string());
            // A hard link is made again every time: its target may have been replaced.
            let unchanged =
                kind != (EntryKind::File { hardlink: true }) && old.get(&st.path).is_some_and(|(o, _)| same(o, &st));
            if unchanged {
                continue;
            }
            if kind != (EntryKind::File { hardlink: false }) || st.size == 0 {
                tx.send(Op::Entry(st)).await.map_err(|_| gone())?;
                continue;
            }
            total = total.saturating_add(st.size as u64);
            if total > max {
                return Err(Error::invalid(format!("build context is larger than {max} bytes")));
            }
            tx.send(Op::Begin(st.clone())).await.map_err(|_| gone())?;
            t.request(id).await?;
            while let Some(data) = t.chunk(id).await? {
                tx.send(Op::Data(data)).await.map_err(|_| gone())?;
            }
            tx.send(Op::End).await.map_err(|_| gone())?;
        }
        tx.send(Op::Finish(listed)).await.map_err(|_| gone())?;
        Ok(total)
    }

    /// Drops every kept context nobody is syncing now (`buildx prune`); returns their sizes.
    pub(crate) async fn prune(self: &Arc<Self>) -> Vec<(String, u64)> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.drop_all_but(0)).await.unwrap_or_default()
    }

    /// Keeps the [`KEEP`] most recently synced contexts (after a sync).
    pub(crate) async fn evict(self: &Arc<Self>) {
        let me = self.clone();
        let evicted = tokio::task::spawn_blocking(move || me.drop_all_but(KEEP)).await.unwrap_or_default();
        if !evicted.is_empty() {
            tracing::debug!(count = evicted.len(), "kept build contexts evicted");
        }
    }

    /// Keeps the `keep` most recently synced contexts and drops the others nobody is syncing
    /// now; returns what went. Kept contexts are a transfer cache: without a bound, every
    /// folder a client ever built from would stay on disk.
    fn drop_all_but(&self, keep: usize) -> Vec<(String, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return vec![] };
        let mut all: Vec<(std::time::SystemTime, String, PathBuf)> = entries
            .flatten()
            .map(|e| {
                let t = e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                (t, e.file_name().to_string_lossy().into_owned(), e.path())
            })
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut out = Vec::new();
        for (_, name, path) in all.into_iter().skip(keep) {
            let lock = self.locks.lock().unwrap().get(&name).cloned();
            let _held = match &lock {
                Some(l) => match l.try_lock() {
                    Ok(g) => Some(g),
                    Err(_) => continue,
                },
                None => None,
            };
            let size = du(&path);
            if std::fs::remove_dir_all(&path).is_ok() {
                out.push((name.clone(), size));
            }
            drop(_held);
            // The lock goes with its context unless someone took it meanwhile.
            let mut locks = self.locks.lock().unwrap();
            if locks.get(&name).is_some_and(|l| Arc::strong_count(l) == 1) {
                locks.remove(&name);
            }
        }
        out
    }

    /// The kept contexts and their sizes (`buildx du`).
    pub(crate) async fn usage(self: &Arc<Self>) -> Vec<(String, u64, std::time::SystemTime)> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || usage_of(&dir)).await.unwrap_or_default()
    }
}

fn usage_of(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    entries
        .flatten()
        .map(|e| {
            let t = e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            (e.file_name().to_string_lossy().into_owned(), du(&e.path()), t)
        })
        .collect()
}

fn du(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p).map(|d| d.flatten().map(|e| du(&e.path())).sum()).unwrap_or(0),
        Ok(m) => std::os::unix::fs::MetadataExt::blocks(&m) * 512,
        Err(_) => 0,
    }
}

/// The writer: applies the transfer's changes to the kept tree, confined to it; returns the
/// content digests (hex) of the regular files it wrote.
fn write(tree: &Path, mut rx: mpsc::Receiver<Op>) -> Result<HashMap<String, String>> {
    let root = Root::open(tree)?;
    let mut digests = HashMap::new();
    let mut open: Option<(Stat, std::fs::File, Sha256)> = None;
    let meta = |st: &Stat| {
        let mode = (kind_of(st) != EntryKind::Symlink).then(|| unix_perm(st.mode));
        root.set_meta(Path::new(&st.path), st.uid, st.gid, mode, st.mod_time.div_euclid(1_000_000_000))
    };
    while let Some(op) = rx.blocking_recv() {
        match op {
            Op::Entry(st) => {
                let p = Path::new(&st.path);
                match kind_of(&st) {
                    EntryKind::Dir => root.mkdir(p, 0o700)?,
                    EntryKind::Symlink => root.symlink(p, Path::new(&st.linkname))?,
                    EntryKind::File { hardlink: true } => {
                        root.hardlink(p, Path::new(&st.linkname))?;
                        continue;
                    }
                    EntryKind::File { hardlink: false } => {
                        drop(root.create_file(p, 0o600)?);
                        digests.insert(st.path.clone(), hex::encode(Sha256::digest(b"")));
                    }
                    EntryKind::Fifo => root.mknod(p, rustix::fs::FileType::Fifo, 0o600, 0, 0)?,
                    EntryKind::Char | EntryKind::Block => {
                        let ft = if kind_of(&st) == EntryKind::Char {
                            rustix::fs::FileType::CharacterDevice
                        } else {
                            rustix::fs::FileType::BlockDevice
                        };
                        root.mknod(p, ft, 0o600, st.devmajor as u32, st.devminor as u32)?
                    }
                    EntryKind::Skip => continue,
                }
                meta(&st)?;
            }
            Op::Begin(st) => {
                // A new inode: builds holding the old one by a hard link keep their content.
                let f = root.create_file(Path::new(&st.path), 0o600)?;
                open = Some((st, f, Sha256::new()));
            }
            Op::Data(d) => {
                let (_, f, h) = open.as_mut().ok_or_else(|| Error::internal("context data without a file"))?;
                f.write_all(&d)?;
                h.update(&d);
            }
            Op::End => {
                if let Some((st, f, h)) = open.take() {
                    drop(f);
                    meta(&st)?;
                    digests.insert(st.path.clone(), hex::encode(h.finalize()));
                }
            }
            Op::Finish(listed) => remove_unlisted(tree, &root, &listed)?,
        }
    }
    Ok(digests)
}

/// Removes what the client no longer sends (deleted, or now excluded by .dockerignore).
fn remove_unlisted(tree: &Path, root: &Root, listed: &HashSet<String>) -> Result<()> {
    fn walk(tree: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(tree.join(rel))? {
            let e = e?;
            let p = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                walk(tree, &p, out)?;
            }
            out.push(p);
        }
        Ok(())
    }
    let mut all = Vec::new();
    walk(tree, Path::new(""), &mut all)?;
    for p in all {
        if !listed.contains(p.to_string_lossy().as_ref()) {
            root.remove_all(&p)?;
        }
    }
    Ok(())
}

/// `out` as a copy of `tree`: folders and symlinks made again, files hard-linked.
fn copy_tree(tree: &Path, out: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir(out)?;
    let mut dirs = Vec::new();
    fn walk(tree: &Path, out: &Path, rel: &Path, dirs: &mut Vec<(PathBuf, std::fs::Metadata)>) -> Result<()> {
        for e in std::fs::read_dir(tree.join(rel))? {
            let e = e?;
            let p = rel.join(e.file_name());
            let md = std::fs::symlink_metadata(tree.join(&p))?;
            let ft = md.file_type();
            if ft.is_dir() {
                std::fs::create_dir(out.join(&p))?;
                walk(tree, out, &p, dirs)?;
                dirs.push((p, md));
            } else if ft.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(tree.join(&p))?, out.join(&p))?;
                std::os::unix::fs::lchown(out.join(&p), Some(md.uid()), Some(md.gid()))?;
            } else {
                std::fs::hard_link(tree.join(&p), out.join(&p))?;
            }
        }
        Ok(())
    }
    walk(tree, out, Path::new(""), &mut dirs)?;
    for (p, md) in dirs {
        let d = out.join(&p);
        std::os::unix::fs::chown(&d, Some(md.uid()), Some(md.gid()))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_most_recent_contexts_are_kept() {
        let t = std::env::temp_dir().join(format!("bt-contexts-{}", std::process::id()));
        let c = Contexts::new(t.clone());
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            std::fs::create_dir_all(t.join(name).join("tree")).unwrap();
            std::fs::write(t.join(name).join("tree/f"), vec![0u8; 10]).unwrap();
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64);
            std::fs::File::open(t.join(name)).unwrap().set_modified(when).unwrap();
        }
        // One in use is never dropped, however old.
        let busy = c.locks.lock().unwrap().entry("a".into()).or_default().clone();
        let guard = busy.try_lock().unwrap();
        let gone: Vec<String> = c.drop_all_but(2).into_iter().map(|(n, _)| n).collect();
        assert_eq!(gone, vec!["b".to_string()]);
        let left: std::collections::BTreeSet<String> =
            std::fs::read_dir(&t).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(left, ["a", "c", "d"].iter().map(|s| s.to_string()).collect());
        drop(guard);
        assert_eq!(c.drop_all_but(0).len(), 3);
        let _ = std::fs::remove_dir_all(&t);
    }
}
