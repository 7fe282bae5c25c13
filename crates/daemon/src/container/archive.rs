//! Moving files in and out of containers: export, diff, commit, and the archive API of `docker cp`.
//!
//! Each operation needs the container's root: a running container's is mounted already; for a
//! stopped one it is mounted for the operation and unmounted after, under the container's lifecycle
//! lock so a start cannot interleave.

use berth_api::container::PathStat;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_image::tree::{self, TreeMode};
use berth_image::CommitOptions;
use berth_sys::idmap::{IdMap, Remap};
use berth_sys::root::Root;
use berth_types::{Digest, Error, Reference, Result};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::SyncIoBridge;

use super::{blocking, ContainerService, Entry};

/// What `POST /commit` asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub reference: Option<Reference>,
    /// The new image's config; the container's when absent.
    pub config: Option<berth_api::container::Config>,
    pub changes: Vec<String>,
    pub author: String,
    pub comment: String,
    /// Freeze the container while its changes are read (Docker's default).
    pub pause: bool,
}

/// Go's `os.FileMode` bits from a Unix mode, as the path-stat header carries them.
pub fn go_file_mode(mode: u32) -> u32 {
    let mut m = mode & 0o777;
    match mode & 0o170000 {
        0o040000 => m |= 1 << 31,
        0o120000 => m |= 1 << 27,
        0o010000 => m |= 1 << 25,
        0o140000 => m |= 1 << 24,
        0o060000 => m |= 1 << 26,
        0o020000 => m |= (1 << 26) | (1 << 21),
        _ => {}
    }
    if mode & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if mode & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if mode & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m
}

/// What `HEAD /containers/{id}/archive` reports, before base64.
pub fn path_stat(name: &str, st: &rustix::fs::Stat, link_target: &str) -> PathStat {
    let mtime = chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    PathStat {
        name: name.to_string(),
        size: st.st_size,
        mode: go_file_mode(st.st_mode),
        mtime,
        link_target: link_target.to_string(),
    }
}

/// A container removed while the caller waited for its lifecycle lock is gone, root and all.
fn still_there(e: &Entry) -> Result<()> {
    match e.wait.borrow().removed {
        true => Err(Error::not_found(format!("No such container: {}", e.id()))),
        false => Ok(()),
    }
}

impl ContainerService {
    /// Runs `f` on the container's mounted root (mounting a stopped container's for the call) and
    /// its upper dir. A remapped container's root, while it runs, is its idmapped view, whose
    /// owners are host ids: `f` then gets the maps to write them as the container sees them.
    async fn with_root<T: Send + 'static>(
        &self,
        e: &Arc<Entry>,
        f: impl FnOnce(&Path, &Path, Option<&Remap>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _op = e.op.lock().await;
        let id = e.id();
        still_there(e)?;
        let snap = self.images.snapshot_mounts(&id).await?;
        let remap = self.cfg.userns_remap.clone().filter(|_| self.remapped(&e.record()));
        blocking(move || {
            let mounted_here = !berth_sys::mount::is_mountpoint(&snap.target);
            if mounted_here {
                snap.overlay.mount(&snap.target)?;
            }
            let r = f(&snap.target, &snap.overlay.upper, remap.as_ref().filter(|_| !mounted_here));
            if mounted_here {
                berth_sys::mount::unmount(&snap.target)?;
            }
            r
        })
        .await
    }

    /// Runs `f` on the container's filesystem as its processes see it, which is what `docker cp`
    /// reads and writes: a running container's through `/proc/<pid>/root` (its volumes, binds, tmpfs
    /// and /etc/hosts, hostname and resolv.conf included), a stopped one's root filesystem.
    /// The container's filesystem for one path: `f` gets a root and the path inside it. For a
    /// container that is not running, a path inside one of its volumes or binds is looked up in
    /// that mount's host folder, as Docker mounts them for the copy (the rootfs holds only the
    /// empty mount point); `write` refuses a read-only mount there.
    ///
    /// For a remapped container, `f` also gets its maps where what it reaches is stored in host
    /// ids (everything of a running one; volumes and binds of a stopped one), and then runs as the
    /// container's root (files it makes in an idmapped root must have a mapped owner).
    async fn with_path_view<T: Send + 'static>(
        &self,
        e: &Arc<Entry>,
        path: &str,
        write: bool,
        f: impl FnOnce(&Path, &str, Option<&Remap>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let rec = e.record();
        let remap = self.cfg.userns_remap.clone().filter(|_| self.remapped(&rec));
        if rec.state.running() && rec.state.pid > 0 {
            let _op = e.op.lock().await;
            still_there(e)?;
            let root = PathBuf::from(format!("/proc/{}/root", rec.state.pid));
            let p = path.to_string();
            return blocking(move || as_container(remap.as_ref(), |m| f(&root, &p, m))).await;
        }
        if let Some((m, inside)) = mount_for(&rec, path) {
            if write && !m.rw {
                return Err(Error::invalid("mounted volume is marked read-only"));
            }
            let src = PathBuf::from(&m.source);
            return blocking(move || as_container(remap.as_ref(), |m| f(&src, &inside, m))).await;
        }
        let p = path.to_string();
        self.with_root(e, move |root, _, _| f(root, &p, None)).await
    }

    /// `GET /containers/{id}/export`: the container's whole filesystem as a tar.
    pub async fn export(&self, name: &str, out: impl AsyncWrite + Send + Unpin + 'static) -> Result<()> {
        let e = self.get(name)?;
        let rec = e.record();
        let res = self
            .with_root(&e, move |root, _, unmap| {
                let mut w = SyncIoBridge::new(out);
                tree::write_dir_as(&tree::open_dir(root)?, Path::new(""), TreeMode::Plain, unmap, &mut w)?;
                let _ = w.shutdown();
                Ok(())
            })
            .await;
        self.publish("export", &rec, &[]);
        res
    }

    /// `GET /containers/{id}/changes`.
    pub async fn changes(&self, name: &str) -> Result<Vec<tree::Change>> {
        let _timer = crate::metrics::container_action("changes");
        let e = self.get(name)?;
        let snap = self.images.snapshot_mounts(&e.id()).await?;
        blocking(move || tree::changes(&snap.overlay.upper, &snap.overlay.lowers)).await
    }

    /// `POST /commit`: the container's changes as a new layer over its image.
    pub async fn commit(&self, name: &str, req: CommitRequest) -> Result<Digest> {
        let _timer = crate::metrics::container_action("commit");
        let e = self.get(name)?;
        let rec = e.record();
        let CommitRequest { reference, config, changes, author, comment, pause } = req;
        // As Docker: freeze a running container while its changes are read, unless told not to.
        let paused_here =
            pause && rec.state.running() && !rec.state.paused() && self.set_paused(name, true).await.is_ok();
        let diff = self.write_diff(&e).await;
        if paused_here {
            let _ = self.set_paused(name, false).await;
        }
        let tmp = diff?;
        let mut c = config.unwrap_or_else(|| rec.config.clone());
        if c.image.is_empty() {
            c.image = rec.config.image.clone();
        }
        c.hostname = String::new();
        let container = Some((rec.id.clone(), rec.config.clone()));
        let opts =
            CommitOptions { reference, config: c, changes, author, comment, created_by: rec.command(), container };
        let res = self.images.commit(rec.image_id.clone(), tmp.clone(), opts).await;
        let _ = std::fs::remove_file(&tmp);
        let id = res?;
        self.publish("commit", &rec, &[("comment", String::new())]);
        Ok(id)
    }

    /// Writes the container's changes as a layer tar into the image store's temp folder.
    async fn write_diff(&self, e: &Arc<Entry>) -> Result<PathBuf> {
        let tmp = self.cfg.data_root.join("image/tmp").join(format!("commit-{}", berth_types::new_id()));
        let tmp2 = tmp.clone();
        let res = self
            .with_root(e, move |_, upper, _| {
                let f = std::fs::File::create(&tmp2)?;
                let mut w = std::io::BufWriter::new(f);
                tree::write_dir(&tree::open_dir(upper)?, Path::new(""), TreeMode::OverlayUpper, &mut w)?;
                use std::io::Write;
                w.flush()?;
                Ok(())
            })
            .await;
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map(|_| tmp)
    }

    /// A stopped container's changes as a layer tar (a build step), or `None` when it changed nothing.
    pub async fn diff_tar(&self, name: &str) -> Result<Option<PathBuf>> {
        let e = self.get(name)?;
        let snap = self.images.snapshot_mounts(&e.id()).await?;
        let empty = blocking(move || Ok(std::fs::read_dir(&snap.overlay.upper)?.next().is_none())).await?;
        if empty {
            return Ok(None);
        }
        self.write_diff(&e).await.map(Some)
    }

    /// Takes out of a build step's layer the mount points the runtime made for its `--mount`s: an
    /// empty folder or file at a target, and parents made only for it, that the image did not have
    /// (as BuildKit, whose layers carry no trace of a step's mounts).
    pub async fn remove_mount_stubs(&self, name: &str, targets: Vec<String>) -> Result<()> {
        let e = self.get(name)?;
        let snap = self.images.snapshot_mounts(&e.id()).await?;
        blocking(move || {
            let upper = Root::open(&snap.overlay.upper)?;
            let lowers: Vec<Root> = snap.overlay.lowers.iter().filter_map(|l| Root::open(l).ok()).collect();
            for t in targets {
                let mut p = berth_sys::root::clean(Path::new(&t));
                while !p.as_os_str().is_empty() {
                    if lowers.iter().any(|l| l.lstat(&p).is_ok()) {
                        break;
                    }
                    let Ok(st) = upper.lstat(&p) else { break };
                    let empty = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                        rustix::fs::FileType::RegularFile => st.st_size == 0,
                        rustix::fs::FileType::Directory => match upper.open_dir(&p)? {
                            Some(fd) => rustix::fs::Dir::read_from(&fd)
                                .map_err(|e| Error::internal(format!("read {}: {e}", p.display())))?
                                .filter_map(|d| d.ok())
                                .all(|d| matches!(d.file_name().to_bytes(), b"." | b"..")),
                            None => false,
                        },
                        _ => false,
                    };
                    if !empty {
                        break;
                    }
                    upper.remove_all(&p)?;
                    p.pop();
                }
            }
            Ok(())
        })
        .await
    }

    /// `HEAD /containers/{id}/archive`: the stat of a path (a final symlink is not followed).
    pub async fn archive_stat(&self, name: &str, path: &str) -> Result<PathStat> {
        let e = self.get(name)?;
        let p = path.to_string();
        self.with_path_view(&e, path, false, move |root, inside, _| {
            stat_in(&Root::open(root)?, inside).map(|(v, _)| named(v, &p))
        })
        .await
    }

    /// `GET /containers/{id}/archive`: the stat, then a tar of the path streamed into `out`.
    pub async fn archive_get(
        self: &Arc<Self>,
        name: &str,
        path: &str,
        out: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Result<PathStat> {
        let e = self.get(name)?;
        let p = path.to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let svc = self.clone();
        let work_fn = move |root: &Path, inside: &str, unmap: Option<&Remap>| {
            let r = Root::open(root)?;
            let (stat, resolved) = match stat_in(&r, inside) {
                Ok((v, res)) => (named(v, &p), res),
                Err(err) => {
                    let _ = tx.send(Err(err.clone()));
                    return Err(err);
                }
            };
            let _ = tx.send(Ok(stat.clone()));
            let base = stat.name.clone();
            let mut w = SyncIoBridge::new(out);
            let Some((parent, fname)) = r.open_parent(&resolved)? else {
                // A mount's own folder (a stopped container's volume): its contents under its name.
                let dir = r
                    .open_dir(Path::new(""))?
                    .ok_or_else(|| Error::not_found(format!("Could not find the file {p}")))?;
                tree::write_dir_as(&dir, Path::new(&base), TreeMode::Plain, unmap, &mut w)?;
                let _ = w.shutdown();
                return Ok(());
            };
            let contents_only = p.ends_with("/.");
            if contents_only {
                let dir = rustix::fs::openat(
                    &parent,
                    &fname,
                    rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::NOFOLLOW
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| Error::from(std::io::Error::from(e)))?;
                tree::write_dir_as(&dir, Path::new(&base), TreeMode::Plain, unmap, &mut w)?;
            } else {
                use std::os::unix::ffi::OsStrExt;
                tree::write_entry(&parent, fname.as_os_str().as_bytes(), Path::new(&base), unmap, &mut w)?;
            }
            let _ = w.shutdown();
            Ok(())
        };
        // The stat is known before the body streams; the tar is written as the client reads.
        let path = path.to_string();
        let work = tokio::spawn(async move { svc.with_path_view(&e, &path, false, work_fn).await });
        let stat = match rx.await {
            Ok(stat) => stat?,
            // The task failed before it could even stat the path (the container or its volume
            // went meanwhile): its own error says why.
            Err(_) => {
                return Err(match work.await {
                    Ok(Err(err)) => err,
                    Ok(Ok(())) => Error::internal("archive: the copy ended without a stat"),
                    Err(err) => Error::internal(format!("archive task: {err}")),
                })
            }
        };
        drop(work);
        Ok(stat)
    }

    /// `PUT /containers/{id}/archive`: extracts a tar into the directory `path`.
    /// Entries are owned by the container's root, or with `copy_uid_gid` (`docker cp -a`) by its
    /// user, as Docker extracts them.
    pub async fn archive_put(
        &self,
        name: &str,
        path: &str,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
        body: impl AsyncRead + Send + Unpin + 'static,
    ) -> Result<()> {
        let e = self.get(name)?;
        let owner = if copy_uid_gid {
            let user = e.record().config.user.clone();
            self.with_path_view(&e, "/", false, move |root, _, _| {
                let u = berth_runtime::user::resolve_user(&Root::open(root)?, &user)?;
                Ok((u.uid, u.gid))
            })
            .await?
        } else {
            (0, 0)
        };
        let (p, id) = (path.to_string(), name.to_string());
        self.with_path_view(&e, path, true, move |root, inside, remap| {
            let r = Root::open(root)?;
            let st = r
                .stat(Path::new(inside))
                .map_err(|_| Error::not_found(format!("Could not find the file {p} in container {id}")))?;
            if st.st_mode & 0o170000 != 0o040000 {
                return Err(Error::invalid(format!("extraction point is not a directory: {p}")));
            }
            let plain = berth_image::compress::decompress(SyncIoBridge::new(body))?;
            // Where files are stored in host ids (a remapped container's), owners are shifted.
            let owner = match remap {
                Some(m) => IdMap::to_host(&m.uids, owner.0).zip(IdMap::to_host(&m.gids, owner.1)).ok_or_else(|| {
                    Error::invalid(format!(
                        "owner {}:{} is not mapped in the container's user namespace",
                        owner.0, owner.1
                    ))
                })?,
                None => owner,
            };
            berth_image::apply::apply_at_owned(plain, &r, Path::new(inside), no_overwrite_dir_non_dir, owner)?;
            Ok(())
        })
        .await
    }
}

/// Runs `f` as a remapped container's root (its maps given), or as berthd.
fn as_container<T>(remap: Option<&Remap>, f: impl FnOnce(Option<&Remap>) -> T) -> T {
    match remap {
        Some(r) => berth_sys::idmap::with_fs_ids(r.root(), || f(Some(r))),
        None => f(None),
    }
}

/// The volume or bind (not tmpfs: its contents live only while the container runs) mounted at the
/// longest destination that holds `path`, and the path inside that mount's host folder (under
/// its subpath, so that the lookup stays confined to the volume).
fn mount_for(rec: &super::record::ContainerRecord, path: &str) -> Option<(super::mounts::MountPoint, String)> {
    let clean = berth_sys::root::clean(Path::new(path));
    let clean = Path::new("/").join(clean);
    let m = rec
        .mounts
        .iter()
        // Image mounts are not a host folder (their source is the image id): a stopped container's
        // path under one is looked up in its own root.
        .filter(|m| m.kind != "tmpfs" && m.kind != "image" && clean.starts_with(&m.destination))
        .max_by_key(|m| m.destination.len())?;
    let rel = clean.strip_prefix(&m.destination).ok()?;
    let mut inside = PathBuf::from("/").join(&m.subpath).join(rel).to_string_lossy().into_owned();
    // A trailing `/` or `/.` asks to follow the final component or copy contents only: kept.
    if path.ends_with("/.") {
        inside.push_str("/.");
    } else if path.ends_with('/') && !inside.ends_with('/') {
        inside.push('/');
    }
    Some((m.clone(), inside))
}

/// A stat named by the path the client asked for (inside a mount the folder itself has no name).
fn named(mut stat: PathStat, asked: &str) -> PathStat {
    if stat.name == "/" {
        if let Some(n) = Path::new(asked).file_name() {
            stat.name = n.to_string_lossy().into_owned();
        }
    }
    stat
}

/// Resolves `p` in the container root: parents follow symlinks (inside the root), the final
/// component does not unless the path ends with `/` or `/.`.
fn stat_in(r: &Root, p: &str) -> Result<(PathStat, PathBuf)> {
    let not_found = || Error::not_found(format!("Could not find the file {p} in container"));
    let follow = p.ends_with('/') || p.ends_with("/.");
    let clean = berth_sys::root::clean(Path::new(p));
    let (resolved, st, link) = if follow {
        let st = r.stat(&clean).map_err(|_| not_found())?;
        (clean.clone(), st, String::new())
    } else {
        let (_, st) = r.open_nofollow(&clean).map_err(|_| not_found())?;
        let link = if st.st_mode & 0o170000 == 0o120000 {
            let (parent, name) = r.open_parent(&clean)?.ok_or_else(not_found)?;
            let t =
                rustix::fs::readlinkat(&parent, &name, Vec::new()).map_err(|e| Error::from(std::io::Error::from(e)))?;
            t.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        (clean.clone(), st, link)
    };
    let name = clean.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into());
    Ok((path_stat(&name, &st, &link), resolved))
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_modes() {
        assert_eq!(super::go_file_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(super::go_file_mode(0o100644), 0o644);
        assert_eq!(super::go_file_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(super::go_file_mode(0o104755), (1 << 23) | 0o755);
    }
}
