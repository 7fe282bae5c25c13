//! Multi-platform images: the index (manifest list) a reference was pulled from, and which of
//! its manifests are here as images.
//!
//! An image is still one platform, named by its config digest (moby's graphdriver store); what
//! makes a reference multi-platform is the index record beside it. A reference (`repo:tag` or
//! `repo@sha256:<index>`) links to the index it was pulled as; each entry of the index knows the
//! image it was pulled as, if it was. The link holds only while the reference still points at one
//! of the index's images, so re-tagging it to anything else drops the link without bookkeeping.
//! The images of a linked index are its platforms: not dangling, listed under the reference.

use std::collections::HashSet;

use berth_api::image::Descriptor;
use berth_store::Table;
use berth_types::{Digest, Reference, Result};
use serde::{Deserialize, Serialize};

use crate::store::{ImageRecord, ImageStore, IMAGES, TAGS};

/// Index digest → [`IndexRecord`].
const INDEXES: Table = Table::new("indexes");
/// Reference → the digest of the index it was pulled as.
const REF_INDEX: Table = Table::new("ref_index");

/// An index as pulled: its own descriptor and its manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexRecord {
    pub descriptor: Descriptor,
    pub manifests: Vec<IndexEntry>,
}

/// One manifest of an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// With the platform and annotations the index gives it.
    pub descriptor: Descriptor,
    /// The image (config digest) this manifest was pulled as, once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Digest>,
    /// Manifest, config and layers as the registry holds them (known once pulled).
    #[serde(default)]
    pub content_size: u64,
}

/// An index as JSON (an OCI index or Docker manifest list).
#[derive(Debug, Deserialize)]
pub(crate) struct ParsedIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl ParsedIndex {
    pub(crate) fn record(self, digest: &Digest, size: u64, media_type: &str) -> IndexRecord {
        IndexRecord::new(media_type, digest, size, self.manifests)
    }
}

impl IndexRecord {
    /// The record of an index (its media type, digest and size) with `manifests`, none pulled yet.
    pub fn new(
        media_type: &str,
        digest: &Digest,
        size: u64,
        manifests: impl IntoIterator<Item = Descriptor>,
    ) -> IndexRecord {
        IndexRecord {
            descriptor: Descriptor {
                media_type: media_type.to_string(),
                digest: digest.to_string(),
                size,
                annotations: None,
                platform: None,
            },
            manifests: manifests
                .into_iter()
                .map(|descriptor| IndexEntry { descriptor, image: None, content_size: 0 })
                .collect(),
        }
    }

    /// The entry of a manifest digest.
    pub fn entry(&self, manifest: &str) -> Option<&IndexEntry> {
        self.manifests.iter().find(|e| e.descriptor.digest == manifest)
    }

    /// Images of this index that were pulled (they may have been deleted since).
    pub fn images(&self) -> impl Iterator<Item = &Digest> {
        self.manifests.iter().filter_map(|e| e.image.as_ref())
    }
}

/// What a pull of one manifest of an index records.
pub struct PulledManifest<'a> {
    pub manifest: &'a str,
    pub image: &'a Digest,
    pub content_size: u64,
}

impl ImageStore {
    /// Records that `refs` name `index` and that its manifest `pulled.manifest` is the image
    /// `pulled.image`, keeping what earlier pulls of the same index recorded.
    pub fn record_index(&self, refs: &[Reference], index: IndexRecord, pulled: PulledManifest<'_>) -> Result<()> {
        let key = index.descriptor.digest.clone();
        self.store.write(|tx| {
            // Same digest, same manifests: an earlier pull's record only adds which are here.
            let mut rec = tx.get::<IndexRecord>(INDEXES, &key)?.unwrap_or_else(|| index.clone());
            for e in rec.manifests.iter_mut().filter(|e| e.descriptor.digest == pulled.manifest) {
                e.image = Some(pulled.image.clone());
                e.content_size = pulled.content_size;
            }
            tx.put(INDEXES, &key, &rec)?;
            for r in refs {
                tx.put(REF_INDEX, &r.to_string(), &key)?;
            }
            Ok(())
        })
    }

    /// The index a reference names, while the reference still points at one of its images.
    pub fn index_of(&self, r: &Reference) -> Result<Option<IndexRecord>> {
        let key = r.to_string();
        let (Some(digest), Some(target)) =
            (self.store.get::<String>(REF_INDEX, &key)?, self.store.get::<Digest>(TAGS, &key)?)
        else {
            return Ok(None);
        };
        Ok(self.store.get::<IndexRecord>(INDEXES, &digest)?.filter(|rec| rec.images().any(|i| *i == target)))
    }

    /// The index any reference of `refs` names (an image's tags and repo digests).
    pub fn index_of_any<'a>(&self, refs: impl IntoIterator<Item = &'a Reference>) -> Result<Option<IndexRecord>> {
        for r in refs {
            if let Some(rec) = self.index_of(r)? {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// Links `to` to the index `from` names, if it names one (a tag of a multi-platform image
    /// names the same index, as in Docker).
    pub(crate) fn copy_index_link(&self, from: &Reference, to: &Reference) -> Result<()> {
        if let Some(rec) = self.index_of(from)? {
            self.store.put(REF_INDEX, &to.to_string(), &rec.descriptor.digest)?;
        }
        Ok(())
    }

    /// After a delete: the platforms of `rec` nothing names any more (no reference links the
    /// index, no tag, no container) go too, as a multi-platform image is removed whole.
    pub(crate) fn delete_orphan_platforms(
        &self,
        rec: &IndexRecord,
        usage: &dyn Fn(&Digest) -> Vec<crate::Usage>,
    ) -> Result<Vec<crate::DeleteResponse>> {
        let named = self.platform_images()?;
        if rec.images().any(|i| named.contains(i)) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for id in rec.images() {
            let Ok(img) = self.resolve(id.as_str()) else { continue };
            if img.tags.is_empty() && img.repo_digests.is_empty() && usage(id).is_empty() {
                out.extend(self.delete_image(id.as_str(), img, false, usage)?);
            }
        }
        Ok(out)
    }

    /// Whether the image is here (an index entry's image may have been deleted).
    pub fn has_image(&self, id: &Digest) -> Result<bool> {
        Ok(self.store.get::<ImageRecord>(IMAGES, id.as_str())?.is_some())
    }

    /// Images that are platforms of an index some reference still names: not dangling.
    pub fn platform_images(&self) -> Result<HashSet<Digest>> {
        let mut out = HashSet::new();
        for (r, _) in self.store.list::<String>(REF_INDEX)? {
            if let Some(rec) = self.index_of(&Reference::parse(&r)?)? {
                out.extend(rec.images().cloned());
            }
        }
        Ok(out)
    }

    /// Forgets the links of references that no longer name an index, and indexes no reference
    /// names (after a delete).
    pub(crate) fn forget_stale_indexes(&self) -> Result<()> {
        let mut live = HashSet::new();
        for (r, digest) in self.store.list::<String>(REF_INDEX)? {
            if self.index_of(&Reference::parse(&r)?)?.is_some() {
                live.insert(digest);
            } else {
                self.store.delete(REF_INDEX, &r)?;
            }
        }
        for (digest, _) in self.store.list::<IndexRecord>(INDEXES)? {
            if !live.contains(&digest) {
                self.store.delete(INDEXES, &digest)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::image::OciPlatform;

    fn desc(digest: &str, arch: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.into(),
            size: 10,
            annotations: None,
            platform: arch.map(|a| OciPlatform {
                architecture: a.into(),
                os: "linux".into(),
                variant: None,
                os_version: None,
            }),
        }
    }

    fn index() -> IndexRecord {
        let entry = |d: &str, a: &str| IndexEntry { descriptor: desc(d, Some(a)), image: None, content_size: 0 };
        IndexRecord {
            descriptor: desc("sha256:idx", None),
            manifests: vec![entry("m-amd", "amd64"), entry("m-arm", "arm64")],
        }
    }

    #[test]
    fn a_link_holds_while_the_reference_points_into_the_index() {
        let (_d, s) = crate::testutil::store();
        let r = Reference::parse("reg:5000/multi:1").unwrap();
        let (amd, other) = (Digest::of(b"amd"), Digest::of(b"other"));
        s.store.put(TAGS, &r.to_string(), &amd).unwrap();
        s.record_index(
            std::slice::from_ref(&r),
            index(),
            PulledManifest { manifest: "m-amd", image: &amd, content_size: 5 },
        )
        .unwrap();
        let rec = s.index_of(&r).unwrap().expect("linked");
        assert_eq!(rec.entry("m-amd").unwrap().image.as_ref(), Some(&amd));
        assert_eq!(rec.entry("m-arm").unwrap().image, None);
        // A second platform keeps the first.
        let arm = Digest::of(b"arm");
        s.record_index(
            std::slice::from_ref(&r),
            index(),
            PulledManifest { manifest: "m-arm", image: &arm, content_size: 5 },
        )
        .unwrap();
        assert_eq!(s.platform_images().unwrap(), HashSet::from([amd.clone(), arm.clone()]));
        // Re-tagged to an image outside the index: the link is gone, and so are the records.
        s.store.put(TAGS, &r.to_string(), &other).unwrap();
        assert_eq!(s.index_of(&r).unwrap(), None);
        s.forget_stale_indexes().unwrap();
        assert!(s.store.list::<IndexRecord>(INDEXES).unwrap().is_empty());
        assert!(s.store.list::<String>(REF_INDEX).unwrap().is_empty());
    }
}
