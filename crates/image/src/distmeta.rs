//! What the registries know about our layers: which compressed blob is which diff id, and where
//! it was seen. A pull skips blobs whose layer is here; a push skips compressing a layer a
//! registry already holds, and mounts it from another repository when it can. The gzip a push
//! made is kept beside its layer, so a later push to any registry sends it without compressing.

use std::path::{Path, PathBuf};

use berth_store::Table;
use berth_types::{Digest, Result};
use serde::{Deserialize, Serialize};

use crate::store::ImageStore;

/// Compressed blob digest → diff id.
const BLOB_DIFF: Table = Table::new("blob_diff");
/// Diff id → the blobs it was pulled as or pushed as.
const DIFF_BLOBS: Table = Table::new("diff_blobs");

/// One compressed form of a layer and a repository that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSource {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// Registry host as in references (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path on that registry (`library/busybox`).
    pub repository: String,
}

/// How many sources a layer remembers; the oldest go first.
const MAX_SOURCES: usize = 32;

impl ImageStore {
    /// The diff id of a compressed blob we unpacked or pushed before.
    pub fn diff_of_blob(&self, blob: &Digest) -> Result<Option<Digest>> {
        self.store.get::<Digest>(BLOB_DIFF, blob.as_str())
    }

    /// Every known compressed form of a layer, newest first.
    pub fn blobs_of(&self, diff_id: &Digest) -> Result<Vec<BlobSource>> {
        Ok(self.store.get::<Vec<BlobSource>>(DIFF_BLOBS, diff_id.as_str())?.unwrap_or_default())
    }

    /// Remembers that `diff_id` is `src.digest` in `src.registry/src.repository`.
    pub fn record_blob(&self, diff_id: &Digest, src: BlobSource) -> Result<()> {
        self.store.write(|tx| {
            tx.put(BLOB_DIFF, src.digest.as_str(), diff_id)?;
            let mut all: Vec<BlobSource> = tx.get(DIFF_BLOBS, diff_id.as_str())?.unwrap_or_default();
            all.retain(|s| s != &src);
            all.insert(0, src.clone());
            all.truncate(MAX_SOURCES);
            tx.put(DIFF_BLOBS, diff_id.as_str(), &all)
        })
    }
}

/// A layer's gzip as an earlier push made it. Its name carries its digest; a push re-hashes it
/// as it reads and refuses it when the two differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedGzip {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

/// `layers/<chain>/layer.tar.gz.sha256-<hex>`: removed with the layer by gc, never read as a tar.
const GZIP_PREFIX: &str = "layer.tar.gz.sha256-";
/// A gzip being written by a push; a crash leaves at most this, which no reader takes.
const GZIP_PARTIAL: &str = ".layer.tar.gz.partial-";

impl ImageStore {
    /// The gzip an earlier push of this layer made, if it is still here.
    pub fn cached_gzip(&self, chain: &Digest) -> Option<CachedGzip> {
        let dir = self.layout.layer(chain.hex());
        std::fs::read_dir(&dir).ok()?.flatten().find_map(|e| {
            let name = e.file_name();
            let hex = name.to_str()?.strip_prefix(GZIP_PREFIX)?;
            let digest: Digest = format!("sha256:{hex}").parse().ok()?;
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            Some(CachedGzip { path: e.path(), digest, size: meta.len() })
        })
    }

    /// A new file for a push to write this layer's gzip into, in the layer's folder; `keep_gzip`
    /// names it once a registry took its digest.
    pub fn gzip_cache_file(&self, chain: &Digest) -> Result<(PathBuf, std::fs::File)> {
        let path = self.layout.layer(chain.hex()).join(format!("{GZIP_PARTIAL}{}", berth_types::new_id()));
        let f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok((path, f))
    }

    /// Names a finished gzip by its digest. Not fsynced: a crash at worst loses the cache, and
    /// the name is checked against the content on every use.
    pub fn keep_gzip(&self, chain: &Digest, partial: &Path, digest: &Digest) -> Result<()> {
        let dir = self.layout.layer(chain.hex());
        std::fs::rename(partial, dir.join(format!("{GZIP_PREFIX}{}", digest.hex())))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_blobs_newest_first() {
        let (_d, s) = crate::testutil::store();
        let diff = Digest::of(b"diff");
        let src = |repo: &str| BlobSource {
            digest: Digest::of(b"gz"),
            size: 2,
            media_type: "gzip".into(),
            registry: "r:5000".into(),
            repository: repo.into(),
        };
        s.record_blob(&diff, src("a")).unwrap();
        s.record_blob(&diff, src("b")).unwrap();
        s.record_blob(&diff, src("a")).unwrap();
        assert_eq!(s.diff_of_blob(&Digest::of(b"gz")).unwrap(), Some(diff.clone()));
        let got: Vec<String> = s.blobs_of(&diff).unwrap().into_iter().map(|b| b.repository).collect();
        assert_eq!(got, ["a", "b"]);
        assert_eq!(s.diff_of_blob(&Digest::of(b"other")).unwrap(), None);
    }

    #[test]
    fn a_kept_gzip_is_found_by_its_layer_and_partials_are_not() {
        let (_d, s) = crate::testutil::store();
        let tar = crate::testutil::tar_with(&[("f", b"x")]);
        let l = s.ingest_layer(&tar[..], None).unwrap();
        assert_eq!(s.cached_gzip(&l.chain_id), None);
        let (partial, mut f) = s.gzip_cache_file(&l.chain_id).unwrap();
        std::io::Write::write_all(&mut f, b"gz").unwrap();
        assert_eq!(s.cached_gzip(&l.chain_id), None, "a partial file is never used");
        s.keep_gzip(&l.chain_id, &partial, &Digest::of(b"gz")).unwrap();
        let c = s.cached_gzip(&l.chain_id).unwrap();
        assert_eq!((c.digest, c.size), (Digest::of(b"gz"), 2));
        assert_eq!(s.cached_gzip(&Digest::of(b"no such layer")), None);
    }
}
