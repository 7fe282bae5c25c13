//! What the registries know about our layers: which compressed blob is which diff id, and where
//! it was seen. A pull skips blobs whose layer is here; a push skips compressing a layer a
//! registry already holds, and mounts it from another repository when it can. The gzip (or zstd)
//! a push made is kept beside its layer, so a later push to any registry sends it as it is.

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

/// A layer compressed as an earlier push made it. Its name carries its digest; a push re-hashes
/// it as it reads and refuses it when the two differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBlob {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

/// A file being written by a push; a crash leaves at most this, which no reader takes.
const PARTIAL: &str = ".layer.tar.partial-";

/// `layers/<chain>/layer.tar.<ext>.sha256-<hex>`: removed with the layer by gc, never read as a tar.
fn kept_name(ext: &str, hex: &str) -> String {
    format!("layer.tar.{ext}.sha256-{hex}")
}

impl ImageStore {
    /// The file an earlier push of this layer compressed (`ext`: `gz`, `zst`), if it is still here.
    pub fn kept_blob(&self, chain: &Digest, ext: &str) -> Option<KeptBlob> {
        let dir = self.layout.layer(chain.hex());
        let prefix = kept_name(ext, "");
        std::fs::read_dir(&dir).ok()?.flatten().find_map(|e| {
            let name = e.file_name();
            let hex = name.to_str()?.strip_prefix(prefix.as_str())?;
            let digest: Digest = format!("sha256:{hex}").parse().ok()?;
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            Some(KeptBlob { path: e.path(), digest, size: meta.len() })
        })
    }

    /// A new file for a push to write this layer compressed into, in the layer's folder;
    /// `keep_blob` names it once a registry took its digest.
    pub fn keep_file(&self, chain: &Digest) -> Result<(PathBuf, std::fs::File)> {
        let path = self.layout.layer(chain.hex()).join(format!("{PARTIAL}{}", berth_types::new_id()));
        let f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok((path, f))
    }

    /// Names a finished file by its digest. Not fsynced: a crash at worst loses the cache, and
    /// the name is checked against the content on every use.
    pub fn keep_blob(&self, chain: &Digest, partial: &Path, ext: &str, digest: &Digest) -> Result<()> {
        let dir = self.layout.layer(chain.hex());
        std::fs::rename(partial, dir.join(kept_name(ext, digest.hex())))?;
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
    fn a_kept_blob_is_found_by_its_layer_and_format_and_partials_are_not() {
        let (_d, s) = crate::testutil::store();
        let tar = crate::testutil::tar_with(&[("f", b"x")]);
        let l = s.ingest_layer(&tar[..], None).unwrap();
        assert_eq!(s.kept_blob(&l.chain_id, "gz"), None);
        let (partial, mut f) = s.keep_file(&l.chain_id).unwrap();
        std::io::Write::write_all(&mut f, b"gz").unwrap();
        assert_eq!(s.kept_blob(&l.chain_id, "gz"), None, "a partial file is never used");
        s.keep_blob(&l.chain_id, &partial, "gz", &Digest::of(b"gz")).unwrap();
        let c = s.kept_blob(&l.chain_id, "gz").unwrap();
        assert_eq!((c.digest, c.size), (Digest::of(b"gz"), 2));
        assert_eq!(s.kept_blob(&l.chain_id, "zst"), None, "another format is another file");
        assert_eq!(s.kept_blob(&Digest::of(b"no such layer"), "gz"), None);
    }
}
