//! What the registries know about our layers: which compressed blob is which diff id, and where
//! it was seen. A pull skips blobs whose layer is here; a push skips compressing a layer a
//! registry already holds, and mounts it from another repository when it can.

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
}
