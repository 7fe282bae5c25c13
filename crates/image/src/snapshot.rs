//! Snapshots: a container's writable layer over its image's layers.

use berth_sys::mount::Overlay;
use berth_types::{Digest, Error, Result};

use crate::store::{
    remove_tree, ImageRecord, ImageStore, LayerRecord, Snapshot, SnapshotRecord, IMAGES, LAYERS, SNAPSHOTS,
};

impl ImageStore {
    /// Creates the writable layer of container `key` over `image` and returns what to mount.
    pub fn prepare_snapshot(&self, key: &str, image: &Digest) -> Result<Snapshot> {
        self.prepare_snapshot_over(key, Some(image))
    }

    /// A snapshot over `image`, or over nothing (a build step on `scratch`).
    pub fn prepare_snapshot_over(&self, key: &str, image: Option<&Digest>) -> Result<Snapshot> {
        let parent = match image {
            Some(image) => self
                .store
                .get::<ImageRecord>(IMAGES, image.as_str())?
                .ok_or_else(|| Error::not_found(format!("No such image: {image}")))?
                .chain
                .last()
                .cloned(),
            None => None,
        };
        let dir = self.layout.snapshot(key);
        for sub in ["upper", "work", "merged"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // The init layer, as Docker's: mount points the runtime needs exist below the writable
        // layer, so they never show up in `docker diff` or a commit.
        let init = dir.join("init");
        for d in ["dev", "proc", "sys", "etc", "dev/pts", "dev/shm"] {
            std::fs::create_dir_all(init.join(d))?;
        }
        for f in ["etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"] {
            std::fs::File::create(init.join(f))?;
        }
        self.store.put(SNAPSHOTS, key, &SnapshotRecord { parent })?;
        self.snapshot_mounts(key)
    }

    /// A snapshot of `image`'s filesystem as it is, without the init layer a container gets
    /// (`/.dockerenv`, `/etc/hosts` stubs): what an exporter or a `RUN --mount=from=` reads.
    pub fn prepare_image_view(&self, key: &str, image: Option<&Digest>) -> Result<Snapshot> {
        self.prepare_snapshot_over(key, image)?;
        std::fs::remove_dir_all(self.layout.snapshot(key).join("init"))?;
        self.snapshot_mounts(key)
    }

    /// The mount of an existing snapshot (after a restart, say).
    pub fn snapshot_mounts(&self, key: &str) -> Result<Snapshot> {
        let rec = self
            .store
            .get::<SnapshotRecord>(SNAPSHOTS, key)?
            .ok_or_else(|| Error::not_found(format!("no snapshot {key}")))?;
        let dir = self.layout.snapshot(key);
        let mut lowers = Vec::new();
        if dir.join("init").is_dir() {
            lowers.push(dir.join("init"));
        }
        let mut cur = rec.parent.clone();
        while let Some(c) = cur {
            lowers.push(self.layout.layer_diff(c.hex()));
            // One point read per layer of the chain (every start mounts), not a scan of the store's
            // every layer.
            cur = self.store.get::<LayerRecord>(LAYERS, c.as_str())?.and_then(|l| l.parent);
        }
        if lowers.is_empty() {
            let empty = dir.join("empty");
            std::fs::create_dir_all(&empty)?;
            lowers.push(empty);
        }
        Ok(Snapshot {
            overlay: Overlay { lowers, upper: dir.join("upper"), work: dir.join("work") },
            target: dir.join("merged"),
        })
    }

    /// Deletes a snapshot's files (the caller unmounted it) and any layers it alone kept.
    pub fn remove_snapshot(&self, key: &str) -> Result<()> {
        remove_tree(&self.layout.snapshot(key))?;
        self.store.delete(SNAPSHOTS, key)?;
        self.gc()
    }
}
