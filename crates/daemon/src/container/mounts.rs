//! Container mounts: `-v`/Binds, `--mount`, `--tmpfs`, `--volumes-from`, image VOLUMEs.
//!
//! `resolve` runs at create: it validates every form with Docker's messages, creates anonymous (and
//! missing named) volumes, and returns the container's mount points, persisted with its record.
//! `spec_mounts` runs at start, on a blocking thread: it mounts volumes that need it, copies image
//! content into empty volumes, and produces the OCI mounts, parents before children.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_runtime::spec::SpecMount;
use berth_sys::root::Root;
use berth_types::{Error, Result};
use berth_volume::VolumeStore;
use serde::{Deserialize, Serialize};

use super::record::ContainerRecord;
use super::ContainerService;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountPoint {
    /// volume | bind | tmpfs
    pub kind: String,
    /// The volume's name; empty for binds and tmpfs.
    pub name: String,
    /// Host path: the bind source or the volume's folder.
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// The mode text as given (`ro`, `z`, `nocopy`, ...), shown by inspect.
    pub mode: String,
    pub propagation: String,
    pub nocopy: bool,
    pub subpath: String,
    pub tmpfs_options: Vec<String>,
    /// `BindOptions.NonRecursive`: the source alone, without the mounts under it.
    #[serde(default)]
    pub non_recursive: bool,
    /// `BindOptions.ReadOnlyNonRecursive`: read-only on the top mount only (Docker's behaviour
    /// before 25); otherwise a read-only bind is read-only all the way down.
    #[serde(default)]
    pub ro_non_recursive: bool,
}

impl MountPoint {
    /// Docker's `Mounts` entry in inspect.
    pub fn view(&self) -> berth_api::container::MountView {
        berth_api::container::MountView {
            kind: self.kind.clone(),
            // As moby: a volume's name; for an image mount the image as asked (its id in Source).
            name: matches!(self.kind.as_str(), "volume" | "image").then(|| self.name.clone()),
            source: self.source.clone(),
            destination: self.destination.clone(),
            driver: (self.kind == "volume").then(|| "local".to_string()),
            mode: self.mode.clone(),
            rw: self.rw,
            propagation: self.propagation.clone(),
        }
    }
}

fn bad_mount(kind: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("invalid mount config for type \"{kind}\": {why}"))
}

fn check_target(kind: &str, t: &str) -> Result<String> {
    if t.is_empty() {
        return Err(bad_mount(kind, "field Target must not be empty"));
    }
    if !t.starts_with('/') {
        return Err(bad_mount(kind, format!("invalid mount path: '{t}' mount path must be absolute")));
    }
    let clean = berth_sys::root::clean(Path::new(t));
    Ok(format!("/{}", clean.display()))
}

const PROPAGATIONS: [&str; 6] = ["shared", "rshared", "slave", "rslave", "private", "rprivate"];

/// Docker's tmpfs defaults, with the user's options after them (so `exec` can undo `noexec`).
fn tmpfs_opts(user: &[String]) -> Vec<String> {
    let mut o: Vec<String> = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
    for u in user.iter().filter(|u| !u.is_empty()) {
        match u.as_str() {
            "exec" => o.retain(|x| x != "noexec"),
            "suid" => o.retain(|x| x != "nosuid"),
            "dev" => o.retain(|x| x != "nodev"),
            other => o.push(other.to_string()),
        }
    }
    o
}

/// A volume to create (or reuse) while resolving.
struct VolumeReq {
    name: Option<String>,
    labels: BTreeMap<String, String>,
    driver: String,
    options: BTreeMap<String, String>,
}

impl ContainerService {
    /// Resolves every mount form of a create request; creates the volumes they need.
    pub(super) async fn resolve_mounts(&self, rec: &ContainerRecord) -> Result<Vec<MountPoint>> {
        let hc = &rec.host_config;
        let mut out: Vec<MountPoint> = Vec::new();
        let mut vols: Vec<(usize, VolumeReq)> = Vec::new();
        let push = |out: &mut Vec<MountPoint>, m: MountPoint| -> Result<()> {
            if out.iter().any(|o| o.destination == m.destination) {
                return Err(Error::invalid(format!("Duplicate mount point: {}", m.destination)));
            }
            out.push(m);
            Ok(())
        };
        for b in &hc.binds {
            let parts: Vec<&str> = b.split(':').collect();
            let (src, dst, mode) = match parts.as_slice() {
                [d] => ("", *d, ""),
                [s, d] => (*s, *d, ""),
                [s, d, m] => (*s, *d, *m),
                _ => return Err(Error::invalid(format!("invalid spec: {b}: too many colons"))),
            };
            let kind = if src.starts_with('/') { "bind" } else { "volume" };
            let dst = check_target(kind, dst)?;
            let mut rw = true;
            let mut propagation = if kind == "bind" { "rprivate".to_string() } else { String::new() };
            let mut nocopy = false;
            for m in mode.split(',').filter(|m| !m.is_empty()) {
                match m {
                    "ro" => rw = false,
                    "rw" => rw = true,
                    "z" | "Z" => {}
                    "nocopy" if kind == "volume" => nocopy = true,
                    p if PROPAGATIONS.contains(&p) && kind == "bind" => propagation = p.to_string(),
                    other => return Err(Error::invalid(format!("invalid mode: {other}"))),
                }
            }
            let mp = MountPoint {
                kind: kind.into(),
                name: String::new(),
                source: src.to_string(),
                destination: dst,
                rw,
                mode: mode.to_string(),
                propagation,
                nocopy,
                subpath: String::new(),
                tmpfs_options: Vec::new(),
                non_recursive: false,
                ro_non_recursive: false,
            };
            if kind == "volume" {
                if !src.is_empty() {
                    berth_volume::validate_name(src)?;
                }
                let name = (!src.is_empty()).then(|| src.to_string());
                vols.push((
                    out.len(),
                    VolumeReq { name, labels: BTreeMap::new(), driver: String::new(), options: BTreeMap::new() },
                ));
            }
            push(&mut out, mp)?;
        }
        for m in hc.mounts.iter().cloned() {
            let dst = check_target(&m.kind, &m.target)?;
            let mut mp = MountPoint {
                kind: m.kind.clone(),
                name: String::new(),
                source: m.source.clone(),
                destination: dst,
                rw: !m.read_only,
                mode: String::new(),
                propagation: String::new(),
                nocopy: false,
                subpath: String::new(),
                tmpfs_options: Vec::new(),
                non_recursive: false,
                ro_non_recursive: false,
            };
            match m.kind.as_str() {
                "bind" => {
                    if m.source.is_empty() {
                        return Err(bad_mount("bind", "field Source must not be empty"));
                    }
                    if !m.source.starts_with('/') {
                        return Err(bad_mount(
                            "bind",
                            format!("invalid mount path: '{}' mount path must be absolute", m.source),
                        ));
                    }
                    let create = m.bind_options.as_ref().is_some_and(|b| b.create_mountpoint);
                    if !Path::new(&m.source).exists() && !create {
                        return Err(bad_mount("bind", format!("bind source path does not exist: {}", m.source)));
                    }
                    let p = m.bind_options.as_ref().map(|b| b.propagation.clone()).unwrap_or_default();
                    if !p.is_empty() && !PROPAGATIONS.contains(&p.as_str()) {
                        return Err(bad_mount("bind", format!("invalid propagation mode: {p}")));
                    }
                    mp.propagation = if p.is_empty() { "rprivate".into() } else { p };
                    let bo = m.bind_options.unwrap_or_default();
                    if (bo.read_only_non_recursive || bo.read_only_force_recursive) && !m.read_only {
                        return Err(bad_mount("bind", "read-only recursion options require a read-only mount"));
                    }
                    if bo.read_only_non_recursive && bo.read_only_force_recursive {
                        return Err(bad_mount("bind", "ReadOnlyNonRecursive and ReadOnlyForceRecursive conflict"));
                    }
                    if bo.non_recursive && bo.read_only_force_recursive {
                        return Err(bad_mount("bind", "NonRecursive and ReadOnlyForceRecursive conflict"));
                    }
                    mp.non_recursive = bo.non_recursive;
                    mp.ro_non_recursive = bo.read_only_non_recursive;
                    push(&mut out, mp)?;
                }
                "volume" => {
                    if m.bind_options.is_some() || m.tmpfs_options.is_some() {
                        return Err(bad_mount("volume", "only VolumeOptions may be given"));
                    }
                    let vo = m.volume_options.unwrap_or_default();
                    if !m.source.is_empty() {
                        berth_volume::validate_name(&m.source)?;
                    }
                    if vo.subpath.starts_with('/') || vo.subpath.split('/').any(|c| c == "..") {
                        return Err(bad_mount(
                            "volume",
                            format!("subpath must be a relative path within the volume: {}", vo.subpath),
                        ));
                    }
                    mp.nocopy = vo.no_copy;
                    mp.subpath = vo.subpath.clone();
                    let dc = vo.driver_config.unwrap_or_default();
                    let req = VolumeReq {
                        name: (!m.source.is_empty()).then(|| m.source.clone()),
                        labels: vo.labels.unwrap_or_default(),
                        driver: dc.name,
                        options: dc.options.unwrap_or_default(),
                    };
                    vols.push((out.len(), req));
                    push(&mut out, mp)?;
                }
                "tmpfs" => {
                    if !m.source.is_empty() {
                        return Err(bad_mount("tmpfs", "field Source must not be specified"));
                    }
                    let mut o = Vec::new();
                    if let Some(t) = &m.tmpfs_options {
                        if t.size_bytes < 0 {
                            return Err(bad_mount("tmpfs", "invalid tmpfs size"));
                        }
                        if t.size_bytes > 0 {
                            o.push(format!("size={}", t.size_bytes));
                        }
                        if t.mode != 0 {
                            o.push(format!("mode={:o}", t.mode));
                        }
                        // Only what cannot widen a container's reach: exec (as `--tmpfs /x:exec`),
                        // and inode or huge-page limits. Anything else is refused, not dropped.
                        for opt in t.options.iter().flatten() {
                            match opt.as_slice() {
                                [f] if f == "exec" || f == "noexec" => o.push(f.clone()),
                                [k, v]
                                    if (k == "nr_inodes" && v.parse::<u64>().is_ok())
                                        || (k == "huge"
                                            && matches!(v.as_str(), "never" | "always" | "within_size" | "advise")) =>
                                {
                                    o.push(format!("{k}={v}"))
                                }
                                _ => return Err(bad_mount("tmpfs", format!("unsupported tmpfs option {opt:?}"))),
                            }
                        }
                    }
                    if m.read_only {
                        o.push("ro".into());
                    }
                    mp.tmpfs_options = tmpfs_opts(&o);
                    push(&mut out, mp)?;
                }
                "image" => {
                    // An image's files, read-only (API 1.48): its layers under a snapshot of
                    // their own, mounted at start. The image must be here (no pull, as moby).
                    if m.source.is_empty() {
                        return Err(bad_mount("image", "field Source must not be empty"));
                    }
                    if m.bind_options.is_some() || m.volume_options.is_some() || m.tmpfs_options.is_some() {
                        return Err(bad_mount("image", "only ImageOptions may be given"));
                    }
                    let sub = m.image_options.map(|o| o.subpath).unwrap_or_default();
                    if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                        return Err(bad_mount(
                            "image",
                            format!("subpath must be a relative path within the image: {sub}"),
                        ));
                    }
                    let img = self.images.resolve(&m.source).await?;
                    mp.name = m.source.clone();
                    mp.source = img.id.to_string();
                    mp.subpath = sub;
                    mp.rw = false;
                    push(&mut out, mp)?;
                }
                other => return Err(Error::invalid(format!("mount type unknown: \"{other}\""))),
            }
        }
        if let Some(t) = &hc.tmpfs {
            for (dst, opts) in t {
                let dst = check_target("tmpfs", dst)?;
                let user: Vec<String> = opts.split(',').map(String::from).collect();
                let rw = !user.iter().any(|u| u == "ro");
                push(
                    &mut out,
                    MountPoint {
                        kind: "tmpfs".into(),
                        name: String::new(),
                        source: String::new(),
                        destination: dst,
                        rw,
                        mode: String::new(),
                        propagation: String::new(),
                        nocopy: false,
                        subpath: String::new(),
                        tmpfs_options: tmpfs_opts(&user),
                        non_recursive: false,
                        ro_non_recursive: false,
                    },
                )?;
            }
        }
        if let Some(from) = &hc.volumes_from {
            for f in from {
                let (cid, mode) = f.split_once(':').unwrap_or((f, ""));
                let other = self.get(cid)?.record();
                for m in other.mounts {
                    if out.iter().any(|o| o.destination == m.destination) {
                        continue;
                    }
                    let mut m = m.clone();
                    match mode {
                        "ro" => m.rw = false,
                        "rw" => m.rw = true,
                        "" => {}
                        other => return Err(Error::invalid(format!("invalid mode: {other}"))),
                    }
                    // An image's files are never writable (each container gets its own view).
                    m.rw &= m.kind != "image";
                    out.push(m);
                }
            }
        }
        // Config.Volumes (merged with the image's VOLUMEs): an anonymous volume where nothing else mounts.
        for dst in rec.config.volumes.iter().flat_map(|v| v.keys()) {
            let dst = check_target("volume", dst)?;
            if out.iter().any(|o| o.destination == dst) {
                continue;
            }
            vols.push((
                out.len(),
                VolumeReq { name: None, labels: BTreeMap::new(), driver: String::new(), options: BTreeMap::new() },
            ));
            out.push(MountPoint {
                kind: "volume".into(),
                name: String::new(),
                source: String::new(),
                destination: dst,
                rw: true,
                mode: String::new(),
                propagation: String::new(),
                nocopy: false,
                subpath: String::new(),
                tmpfs_options: Vec::new(),
                non_recursive: false,
                ro_non_recursive: false,
            });
        }
        for (i, req) in vols {
            let v = self.volumes.create(req.name, req.driver, req.options, req.labels).await?;
            out[i].name = v.name.clone();
            out[i].source = v.mountpoint.display().to_string();
        }
        for m in out.iter().filter(|m| m.kind == "bind") {
            // `-v /host:/c` creates a missing host folder, as Docker does (`--mount` refused above).
            if !Path::new(&m.source).exists() {
                std::fs::create_dir_all(&m.source).map_err(|e| {
                    Error::invalid(format!("error while creating mount source path '{}': {e}", m.source))
                })?;
            }
        }
        Ok(out)
    }
}

impl ContainerService {
    /// Publishes `volume mount` for each volume of a container that just started.
    pub(super) fn publish_volume_mounts(&self, rec: &ContainerRecord) {
        for m in rec.mounts.iter().filter(|m| m.kind == "volume") {
            let prop = if m.propagation.is_empty() { String::new() } else { m.propagation.clone() };
            self.volumes.publish(
                "mount",
                &m.name,
                &[
                    ("container", rec.id.clone()),
                    ("destination", m.destination.clone()),
                    ("propagation", prop),
                    ("read/write", m.rw.to_string()),
                ],
            );
        }
    }

    /// One user fewer for each volume of a container that stopped (or failed to start).
    pub(super) async fn release_volumes(&self, rec: &ContainerRecord, publish: bool) {
        let names: Vec<String> = rec.mounts.iter().filter(|m| m.kind == "volume").map(|m| m.name.clone()).collect();
        let store = self.volumes.store();
        let n2 = names.clone();
        let _ = super::blocking(move || {
            for n in &n2 {
                if let Err(e) = store.unmount(n) {
                    tracing::warn!(volume = %n, "unmount: {e}");
                }
            }
            Ok(())
        })
        .await;
        if publish {
            for n in names {
                self.volumes.publish("unmount", &n, &[("container", rec.id.clone())]);
            }
        }
    }

    /// `docker rm -v` and `--rm`: the container's anonymous volumes that nothing else uses.
    pub(super) async fn remove_anonymous_volumes(&self, rec: &ContainerRecord) {
        for m in rec.mounts.iter().filter(|m| m.kind == "volume" && !m.name.is_empty()) {
            match self.volumes.inspect(&m.name).await {
                Ok(v) if v.anonymous() => {
                    if let Err(e) = self.volumes.remove(&m.name, false).await {
                        tracing::debug!(volume = %m.name, "kept: {e}");
                    }
                }
                _ => {}
            }
        }
    }
}

/// Mounts volumes, copies image content into empty ones, and returns the OCI mounts (blocking).
/// `staging` is a root-only directory of this container where volume subpaths are bound first.
/// What a remapped container's root must reach: its host ids and berthd's roots.
pub(super) struct Reach {
    pub root: (u32, u32),
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
}

pub(super) fn spec_mounts(
    mounts: &[MountPoint],
    volumes: &VolumeStore,
    rootfs: &Root,
    staging: &Path,
    reach: Option<&Reach>,
    images: &BTreeMap<String, PathBuf>,
) -> Result<Vec<SpecMount>> {
    let mut sorted: Vec<&MountPoint> = mounts.iter().collect();
    sorted.sort_by_key(|m| Path::new(&m.destination).components().count());
    let mut out = Vec::new();
    for (n, m) in sorted.into_iter().enumerate() {
        match m.kind.as_str() {
            "tmpfs" => out.push(SpecMount {
                destination: m.destination.clone(),
                kind: "tmpfs".into(),
                source: "tmpfs".into(),
                options: m.tmpfs_options.clone(),
            }),
            kind => {
                let mut source = m.source.clone();
                if kind == "image" {
                    // The image's snapshot, mounted by the caller (`images`: destination → root).
                    let root = images
                        .get(&m.destination)
                        .ok_or_else(|| Error::internal(format!("image mount {} is not mounted", m.destination)))?;
                    source = root.display().to_string();
                    if !m.subpath.is_empty() {
                        let staged = stage_subpath(root, &m.subpath, &staging.join(n.to_string()))?;
                        if let Some(r) = reach {
                            crate::perms::grant_traverse(&r.exec_root, &staged, r.root.1)?;
                        }
                        source = staged.display().to_string();
                    }
                }
                if kind == "volume" {
                    let v = volumes.mount(&m.name)?;
                    if !m.nocopy && m.subpath.is_empty() {
                        berth_volume::copy_up(rootfs, &m.destination, &v.mountpoint)?;
                    }
                    if let Some(r) = reach {
                        super::userns::open_volume(r.root, &r.data_root, &v.mountpoint)?;
                    }
                    source = v.mountpoint.display().to_string();
                    if !m.subpath.is_empty() {
                        let staged = stage_subpath(&v.mountpoint, &m.subpath, &staging.join(n.to_string()))?;
                        if let Some(r) = reach {
                            crate::perms::grant_traverse(&r.exec_root, &staged, r.root.1)?;
                        }
                        source = staged.display().to_string();
                    }
                }
                let mut options = vec![if m.non_recursive { "bind" } else { "rbind" }.to_string()];
                options.push(if m.propagation.is_empty() { "rprivate".into() } else { m.propagation.clone() });
                if !m.rw {
                    options.push("ro".into());
                    // As Docker 25+: read-only all the way down (mount_setattr), unless asked not to.
                    if !m.non_recursive && !m.ro_non_recursive {
                        options.push("rro".into());
                    }
                }
                out.push(SpecMount { destination: m.destination.clone(), kind: "bind".into(), source, options });
            }
        }
    }
    Ok(out)
}

/// The snapshot key of a container's image mount: one writable-layer-less view per destination.
pub(super) fn image_mount_key(id: &str, destination: &str) -> String {
    let d = berth_types::Digest::of(destination.as_bytes());
    format!("{id}-image-{}", &d.hex()[..16])
}

/// The snapshot keys of every image mount of `rec`.
pub(super) fn image_mount_keys(rec: &ContainerRecord) -> Vec<String> {
    rec.mounts.iter().filter(|m| m.kind == "image").map(|m| image_mount_key(&rec.id, &m.destination)).collect()
}

/// A volume subpath, resolved inside the volume (a symlink in it cannot lead out: another
/// container may have planted `app -> /`), opened, and bound from that fd onto `target`, which the
/// runtime then mounts. The runtime never resolves a path inside the volume.
pub(crate) fn stage_subpath(volume: &Path, subpath: &str, target: &Path) -> Result<PathBuf> {
    let (fd, st) = Root::open(volume)?.open_in_root(Path::new(subpath)).map_err(|_| {
        let shown = volume.join(berth_sys::root::clean(Path::new(subpath)));
        Error::invalid(format!("cannot access path {}: no such file or directory", shown.display()))
    })?;
    std::fs::create_dir_all(target.parent().expect("staging dir"))?;
    berth_sys::mount::unmount(target)?;
    let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    if is_dir {
        std::fs::create_dir_all(target)?;
    } else {
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(target)?;
    }
    berth_sys::mount::bind_fd(&fd, target)?;
    Ok(target.to_path_buf())
}

/// Undoes `stage_subpath` for a container: detaches and removes its staging directory.
pub(super) fn release_staging(staging: &Path) {
    let Ok(entries) = std::fs::read_dir(staging) else { return };
    for e in entries.flatten() {
        let _ = berth_sys::mount::unmount(&e.path());
        // A directory or file that is no mount point any more: removing it cannot reach a volume.
        let _ = std::fs::remove_dir(e.path()).or_else(|_| std::fs::remove_file(e.path()));
    }
    let _ = std::fs::remove_dir(staging);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_defaults() {
        assert_eq!(tmpfs_opts(&["size=1m".into()]), ["noexec", "nosuid", "nodev", "size=1m"]);
        assert_eq!(tmpfs_opts(&["exec".into()]), ["nosuid", "nodev"]);
        assert!(check_target("bind", "rel").unwrap_err().message.contains("must be absolute"));
        assert_eq!(check_target("bind", "/a/../b/").unwrap(), "/b");
    }
}
