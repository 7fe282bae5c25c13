//! Images, layers and snapshots in the metadata store and on disk.
//!
//! Lifecycle of an image: `import` unpacks a layer into `tmp/`, renames it to its chain id (or drops
//! it when that layer already exists), writes the config blob (temp, fsync, rename) and then, in one
//! store transaction, the image record and its tag. A crash before that commit leaves only files
//! that start-up removes (`tmp/`) or that `gc` finds unreferenced.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_api::image::ImageConfig;
use berth_store::{Store, Table};
use berth_sys::mount::Overlay;
use berth_sys::root::Root;
use berth_types::{short_id, Digest, Error, Reference, Result};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

pub(crate) const IMAGES: Table = Table::new("images");
pub(crate) const TAGS: Table = Table::new("tags");
pub(crate) const LAYERS: Table = Table::new("layers");
pub(crate) const SNAPSHOTS: Table = Table::new("snapshots");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub(crate) id: Digest,
    /// Chain ids, bottom layer first.
    pub(crate) chain: Vec<Digest>,
    pub(crate) size: u64,
    /// The image a build step made this one from (Docker's `Parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parent: Option<Digest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub(crate) diff_id: Digest,
    pub(crate) parent: Option<Digest>,
    pub(crate) size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    /// Top layer's chain id; the snapshot keeps it and its ancestors alive.
    pub(crate) parent: Option<Digest>,
}

/// An image as the services see it.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: Digest,
    pub config: ImageConfig,
    /// `repo:tag` references.
    pub tags: Vec<Reference>,
    /// `repo@sha256:` references: the manifest digests this image was pulled or pushed as.
    pub repo_digests: Vec<Reference>,
    pub size: u64,
    /// Size of each layer, bottom first.
    pub layer_sizes: Vec<u64>,
    /// The image a build step made this one from.
    pub parent: Option<Digest>,
}

/// Who uses an image, for delete's conflict rules: the daemon knows containers, this crate does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    Running(String),
    Stopped(String),
}

/// One line of `DELETE /images/{name}`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DeleteResponse {
    Untagged(String),
    Deleted(String),
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub reference: Option<Reference>,
    pub message: String,
    pub changes: Vec<String>,
    /// The image's creation time (RFC 3339) instead of now: the same files then make the same
    /// image id (a build's named context, imported for every build, keeps its step cache).
    pub created: Option<String>,
}

/// A container's root: mount `overlay` on `target`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub overlay: Overlay,
    pub target: PathBuf,
}

pub struct ImageStore {
    pub(crate) store: Arc<Store>,
    pub(crate) layout: Layout,
    /// Held by `gc` and by whoever names a new layer, so gc never sees a folder without its record.
    pub(crate) gc_lock: Mutex<()>,
    /// Layers (chain ids) that writers in progress (pulls) rely on before any image references them.
    leases: Mutex<HashMap<Digest, usize>>,
}

pub(crate) fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// Chain id: `sha256(parent_chain + " " + diff_id)`, or the diff id for a base layer.
pub fn chain_id(parent: Option<&Digest>, diff: &Digest) -> Digest {
    match parent {
        None => diff.clone(),
        Some(p) => Digest::of(format!("{p} {diff}").as_bytes()),
    }
}

/// Writes `data` to `path` so that it appears whole or not at all.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::internal("blob path without parent"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", berth_types::new_id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl ImageStore {
    /// Opens the image store and removes ingests a crash left behind.
    pub fn open(store: Arc<Store>, data_root: &Path) -> Result<ImageStore> {
        let layout = Layout::new(data_root);
        let _ = std::fs::remove_dir_all(layout.tmp());
        for d in [layout.blobs(), layout.layers(), layout.tmp(), layout.snapshots()] {
            std::fs::create_dir_all(&d)?;
        }
        let s = ImageStore { store, layout, gc_lock: Mutex::new(()), leases: Mutex::new(HashMap::new()) };
        s.gc()?;
        Ok(s)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn image_of(&self, rec: &ImageRecord, refs: Vec<Reference>) -> Result<Image> {
        let (repo_digests, tags): (Vec<Reference>, Vec<Reference>) =
            refs.into_iter().partition(|r| r.digest().is_some());
        let bytes = std::fs::read(self.layout.blob(rec.id.hex()))
            .map_err(|e| Error::internal(format!("read config of image {}: {e}", rec.id)))?;
        let config: ImageConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::internal(format!("corrupt config of image {}: {e}", rec.id)))?;
        let layer_sizes = rec
            .chain
            .iter()
            .map(|c| Ok(self.store.get::<LayerRecord>(LAYERS, c.as_str())?.map(|l| l.size).unwrap_or(0)))
            .collect::<Result<Vec<u64>>>()?;
        Ok(Image {
            id: rec.id.clone(),
            config,
            tags,
            repo_digests,
            size: rec.size,
            layer_sizes,
            parent: rec.parent.clone(),
        })
    }

    fn all_tags(&self) -> Result<Vec<(Reference, Digest)>> {
        self.store.list::<Digest>(TAGS)?.into_iter().map(|(k, v)| Ok((Reference::parse(&k)?, v))).collect()
    }

    /// How many images there are, without reading their configs (for `/info`).
    pub fn count(&self) -> Result<usize> {
        Ok(self.store.list::<ImageRecord>(IMAGES)?.len())
    }

    /// Every image with its tags.
    pub fn list(&self) -> Result<Vec<Image>> {
        let tags = self.all_tags()?;
        self.store
            .list::<ImageRecord>(IMAGES)?
            .into_iter()
            .filter_map(|(key, rec)| {
                let t = tags.iter().filter(|(_, id)| *id == rec.id).map(|(r, _)| r.clone()).collect();
                match self.image_of(&rec, t) {
                    // Removed (its record, then its config) since the listing was read: not an
                    // error of the listing, just an image that is no longer there.
                    Err(_) if matches!(self.store.get::<ImageRecord>(IMAGES, &key), Ok(None)) => None,
                    other => Some(other),
                }
            })
            .collect()
    }

    /// Finds an image by reference, full id, or unique id prefix, as Docker does.
    pub fn resolve(&self, name: &str) -> Result<Image> {
        let not_found = || Error::not_found(format!("No such image: {name}"));
        let by_id = |hex: &str| -> Result<Option<ImageRecord>> {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(None);
            }
            let hits: Vec<ImageRecord> = self
                .store
                .list::<ImageRecord>(IMAGES)?
                .into_iter()
                .filter(|(_, r)| r.id.hex().starts_with(hex))
                .map(|(_, r)| r)
                .collect();
            match hits.len() {
                0 => Ok(None),
                1 => Ok(hits.into_iter().next()),
                _ => Err(Error::invalid(format!("ambiguous image id prefix {hex}"))),
            }
        };
        let rec = if let Some(hex) = name.strip_prefix("sha256:") {
            by_id(hex)?
        } else {
            let by_ref = match Reference::parse_tagged(name) {
                Ok(r) => match self.store.get::<Digest>(TAGS, &r.to_string())? {
                    Some(id) => self.store.get::<ImageRecord>(IMAGES, id.as_str())?,
                    None => None,
                },
                Err(_) => None,
            };
            match by_ref {
                Some(r) => Some(r),
                None => by_id(name)?,
            }
        };
        let rec = rec.ok_or_else(not_found)?;
        let tags = self.all_tags()?.into_iter().filter(|(_, id)| *id == rec.id).map(|(r, _)| r).collect();
        self.image_of(&rec, tags)
    }

    /// Points `reference` at the image `name` resolves to.
    pub fn tag(&self, name: &str, reference: &Reference) -> Result<Image> {
        let img = self.resolve(name)?;
        self.store.put(TAGS, &reference.to_string(), &img.id)?;
        if let Ok(from) = Reference::parse_tagged(name) {
            self.copy_index_link(&from, reference)?;
        }
        Ok(img)
    }

    /// Removes a tag or an image with Docker's rules. `usage` lists the containers using an image id.
    /// The platforms of a multi-platform image go with the last reference that names it.
    pub fn delete(
        &self,
        name: &str,
        force: bool,
        usage: &dyn Fn(&Digest) -> Vec<Usage>,
    ) -> Result<Vec<DeleteResponse>> {
        let img = self.resolve(name)?;
        let linked = self.index_of_any(img.tags.iter().chain(&img.repo_digests))?;
        let mut out = self.delete_image(name, img, force, usage)?;
        if let Some(rec) = linked {
            out.extend(self.delete_orphan_platforms(&rec, usage)?);
        }
        self.forget_stale_indexes()?;
        Ok(out)
    }

    /// [`delete`](Self::delete) of one image or tag; `img` is what `name` resolves to.
    pub(crate) fn delete_image(
        &self,
        name: &str,
        img: Image,
        force: bool,
        usage: &dyn Fn(&Digest) -> Vec<Usage>,
    ) -> Result<Vec<DeleteResponse>> {
        let short = short_id(img.id.as_str()).to_string();
        let by_ref =
            !name.starts_with("sha256:") && Reference::parse_tagged(name).ok().is_some_and(|r| img.tags.contains(&r));
        let users = usage(&img.id);
        let running = users.iter().find_map(|u| match u {
            Usage::Running(c) => Some(c.clone()),
            _ => None,
        });
        let stopped = users.iter().find_map(|u| match u {
            Usage::Stopped(c) => Some(c.clone()),
            _ => None,
        });
        let mut out = Vec::new();
        if by_ref {
            let r = Reference::parse_tagged(name)?;
            if img.tags.len() > 1 {
                self.store.delete(TAGS, &r.to_string())?;
                return Ok(vec![DeleteResponse::Untagged(r.familiar())]);
            }
            if let Some(c) = running.clone().or(if force { None } else { stopped.clone() }) {
                return Err(Error::conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {short}",
                    short_id(&c)
                )));
            }
        } else {
            if let Some(c) = &running {
                return Err(Error::conflict(format!(
                    "conflict: unable to delete {short} (cannot be forced) - image is being used by running container {}",
                    short_id(c)
                )));
            }
            if !force {
                if img.tags.len() > 1 {
                    return Err(Error::conflict(format!(
                        "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                    )));
                }
                if let Some(c) = &stopped {
                    return Err(Error::conflict(format!(
                        "conflict: unable to delete {short} (must be forced) - image is being used by stopped container {}",
                        short_id(c)
                    )));
                }
            }
        }
        // An image other images were built or committed on stays while they do, as Docker's: by
        // reference it is only untagged; by id it is a hard conflict, force or not.
        let has_children =
            self.store.list::<ImageRecord>(IMAGES)?.iter().any(|(_, r)| r.parent.as_ref() == Some(&img.id));
        if has_children {
            if by_ref {
                let r = Reference::parse_tagged(name)?;
                self.store.delete(TAGS, &r.to_string())?;
                return Ok(vec![DeleteResponse::Untagged(r.familiar())]);
            }
            return Err(Error::conflict(format!(
                "conflict: unable to delete {short} (cannot be forced) - image has dependent child images"
            )));
        }
        let refs: Vec<&Reference> = img.tags.iter().chain(&img.repo_digests).collect();
        self.store.write(|tx| {
            for t in &refs {
                tx.delete(TAGS, &t.to_string())?;
            }
            tx.delete(IMAGES, img.id.as_str())
        })?;
        out.extend(refs.iter().map(|t| DeleteResponse::Untagged(t.familiar())));
        out.push(DeleteResponse::Deleted(img.id.to_string()));
        let _ = std::fs::remove_file(self.layout.blob(img.id.hex()));
        // As Docker: untagged build parents nothing else uses go with their last child.
        let mut parent = img.parent.clone();
        while let Some(p) = parent.take() {
            let Ok(pimg) = self.resolve(p.as_str()) else { break };
            let children = self.store.list::<ImageRecord>(IMAGES)?.iter().any(|(_, r)| r.parent.as_ref() == Some(&p));
            if !pimg.tags.is_empty() || !pimg.repo_digests.is_empty() || children || !usage(&p).is_empty() {
                break;
            }
            self.store.delete(IMAGES, p.as_str())?;
            let _ = std::fs::remove_file(self.layout.blob(p.hex()));
            out.push(DeleteResponse::Deleted(p.to_string()));
            parent = pimg.parent.clone();
        }
        self.gc()?;
        Ok(out)
    }

    /// `docker image prune`: unused dangling images, or every unused image with `all`.
    pub fn prune(
        &self,
        all: bool,
        keep: &dyn Fn(&Image) -> bool,
        usage: &dyn Fn(&Digest) -> Vec<Usage>,
    ) -> Result<(Vec<DeleteResponse>, u64)> {
        let mut out = Vec::new();
        let mut reclaimed = 0;
        let images = self.list()?;
        let parents: HashSet<&Digest> = images.iter().filter_map(|i| i.parent.as_ref()).collect();
        // The platforms of a multi-platform image are named through its index: not dangling.
        let platforms = if all { HashSet::new() } else { self.platform_images()? };
        for img in &images {
            if platforms.contains(&img.id) {
                continue;
            }
            // Only top images: deleting one takes its untagged build parents along.
            if parents.contains(&img.id) || self.store.get::<ImageRecord>(IMAGES, img.id.as_str())?.is_none() {
                continue;
            }
            if (!all && !img.tags.is_empty()) || !usage(&img.id).is_empty() || keep(img) {
                continue;
            }
            let before = self.layer_bytes()?;
            out.extend(self.delete(img.id.as_str(), true, usage)?);
            reclaimed += before.saturating_sub(self.layer_bytes()?);
        }
        Ok((out, reclaimed))
    }

    pub(crate) fn layer_bytes(&self) -> Result<u64> {
        Ok(self.store.list::<LayerRecord>(LAYERS)?.iter().map(|(_, l)| l.size).sum())
    }

    /// Keeps `chain` (and its parents) from `gc` until `release`: a pull's layers before its image exists.
    pub fn lease(&self, chain: &Digest) {
        *self.leases.lock().unwrap_or_else(|e| e.into_inner()).entry(chain.clone()).or_default() += 1;
    }

    pub fn release(&self, chain: &Digest) {
        let mut l = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = l.get_mut(chain) {
            *n -= 1;
            if *n == 0 {
                l.remove(chain);
            }
        }
    }

    /// A layer by chain id.
    pub fn layer_info(&self, chain: &Digest) -> Result<Option<crate::LayerInfo>> {
        Ok(self.store.get::<LayerRecord>(LAYERS, chain.as_str())?.map(|l| crate::LayerInfo {
            diff_id: l.diff_id,
            chain_id: chain.clone(),
            size: l.size,
        }))
    }

    /// Whether the layer with this chain id is in the store.
    pub fn has_layer(&self, chain: &Digest) -> Result<bool> {
        Ok(self.store.get::<LayerRecord>(LAYERS, chain.as_str())?.is_some())
    }

    /// Removes layers that no image, snapshot or lease references.
    pub fn gc(&self) -> Result<()> {
        let _gc = self.gc_lock.lock().unwrap_or_else(|e| e.into_inner());
        let leased: Vec<Digest> = self.leases.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        let layers = self.store.list::<LayerRecord>(LAYERS)?;
        let mut live: HashSet<String> = HashSet::new();
        let mut mark = |top: &Digest| {
            let mut cur = Some(top.clone());
            while let Some(c) = cur {
                if !live.insert(c.to_string()) {
                    break;
                }
                cur = layers.iter().find(|(k, _)| *k == c.as_str()).and_then(|(_, l)| l.parent.clone());
            }
        };
        for (_, img) in self.store.list::<ImageRecord>(IMAGES)? {
            img.chain.iter().for_each(&mut mark);
        }
        leased.iter().for_each(&mut mark);
        for (_, s) in self.store.list::<SnapshotRecord>(SNAPSHOTS)? {
            if let Some(p) = &s.parent {
                mark(p);
            }
        }
        let dead: Vec<String> = layers.iter().map(|(k, _)| k.clone()).filter(|k| !live.contains(k)).collect();
        for k in &dead {
            let d: Digest = k.parse()?;
            remove_tree(&self.layout.layer(d.hex()))?;
            self.store.delete(LAYERS, k)?;
        }
        // Layer directories without a record are leftovers of a crash between rename and commit.
        let known: BTreeSet<String> = layers
            .iter()
            .filter(|(k, _)| live.contains(k))
            .filter_map(|(k, _)| k.strip_prefix("sha256:").map(String::from))
            .collect();
        for e in std::fs::read_dir(self.layout.layers())?.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if !known.contains(&n) {
                remove_tree(&e.path())?;
            }
        }
        Ok(())
    }
}

/// Removes a directory tree that may hold whiteout devices and read-only dirs; missing is fine.
pub(crate) fn remove_tree(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            let parent = p.parent().ok_or_else(|| Error::internal("remove root"))?;
            Root::open(parent)?.remove_all(Path::new(p.file_name().unwrap_or_default()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{store, tar_with};

    #[test]
    fn a_leased_fresh_layer_survives_gc_until_released() {
        let (_d, s) = store();
        let tar = tar_with(&[("f", b"data")]);
        let (info, lease) = s.ingest_layer_leased(&tar[..], None).unwrap();
        // Another writer's gc runs before any image references the layer.
        s.gc().unwrap();
        assert!(s.has_layer(&info.chain_id).unwrap() && s.layout.layer(info.chain_id.hex()).exists());
        drop(lease);
        s.gc().unwrap();
        assert!(!s.has_layer(&info.chain_id).unwrap(), "unreferenced once released");
    }

    #[test]
    fn import_resolve_tag_delete() {
        let (_d, s) = store();
        let tar = tar_with(&[("bin/true", b"x")]);
        let opts = ImportOptions { reference: Some(Reference::parse_tagged("bb").unwrap()), ..Default::default() };
        let id = s.import(&tar[..], opts.clone()).unwrap();
        // Same content twice: same layer, new image id (created differs), layer stored once.
        let id2 = s.import(&tar[..], ImportOptions::default()).unwrap();
        assert_eq!(std::fs::read_dir(s.layout.layers()).unwrap().count(), 1);
        assert_eq!(s.resolve("bb").unwrap().id, id);
        assert_eq!(s.resolve("docker.io/library/bb:latest").unwrap().id, id);
        assert_eq!(s.resolve(&id.hex()[..8]).unwrap().id, id);
        assert_eq!(s.resolve(id.as_str()).unwrap().tags[0].familiar(), "bb:latest");
        assert_eq!(s.resolve("nope").unwrap_err().message, "No such image: nope");
        s.tag("bb", &Reference::parse_tagged("bb:v2").unwrap()).unwrap();
        let none = |_: &Digest| Vec::new();
        assert_eq!(s.delete("bb:v2", false, &none).unwrap(), vec![DeleteResponse::Untagged("bb:v2".into())]);
        let used = |_: &Digest| vec![Usage::Stopped("c".repeat(64))];
        assert_eq!(s.delete("bb", false, &used).unwrap_err().kind, berth_types::ErrorKind::Conflict);
        let r = s.delete("bb", false, &none).unwrap();
        assert_eq!(r[0], DeleteResponse::Untagged("bb:latest".into()));
        s.delete(id2.as_str(), false, &none).unwrap();
        assert_eq!(std::fs::read_dir(s.layout.layers()).unwrap().count(), 0, "layer gc'd");
    }

    #[test]
    fn bad_tar_stores_nothing() {
        let (_d, s) = store();
        assert!(s.import(&[0x42u8; 2048][..], ImportOptions::default()).is_err());
        assert!(s.list().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(s.layout.tmp()).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(s.layout.layers()).unwrap().count(), 0);
    }

    #[test]
    fn diff_id_is_sha_of_uncompressed_stream() {
        let (_d, s) = store();
        let tar = tar_with(&[("a", b"1")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let id = s.import(&gz.finish().unwrap()[..], ImportOptions::default()).unwrap();
        let img = s.resolve(id.as_str()).unwrap();
        assert_eq!(img.config.rootfs.diff_ids, vec![Digest::of(&tar).to_string()]);
        let snap = s.prepare_snapshot("c1", &id).unwrap();
        assert_eq!(snap.overlay.lowers.len(), 2, "the init layer and the image layer");
        s.delete(id.as_str(), true, &|_| Vec::new()).unwrap();
        assert_eq!(std::fs::read_dir(s.layout.layers()).unwrap().count(), 1, "snapshot keeps its layer");
        s.remove_snapshot("c1").unwrap();
        assert_eq!(std::fs::read_dir(s.layout.layers()).unwrap().count(), 0);
    }
}
