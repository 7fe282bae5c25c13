//! The classic builder's step cache: a cache key (computed by the builder) names the image a step
//! produced. Entries whose image was deleted are ignored and dropped lazily.

use berth_types::{Digest, Error, Result};
use serde::{Deserialize, Serialize};

use crate::store::{ImageRecord, ImageStore, IMAGES};
use crate::{DeleteResponse, Image, Usage};
use berth_store::Table;

const BUILD_CACHE: Table = Table::new("build_cache");
/// Images made by builds that have not finished, keyed `<build id>/<image id>`.
const BUILDS: Table = Table::new("builds_in_progress");

/// Records, in the transaction that creates it, that `image` was made by the unfinished `build`.
pub(crate) fn record_build_image(tx: &mut berth_store::Txn, build: &str, image: &Digest) -> Result<()> {
    tx.put(BUILDS, &format!("{build}/{image}"), &())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRecord {
    pub image: Digest,
    pub created_by: String,
    pub created: String,
    pub last_used: String,
    pub usage_count: u64,
}

/// What `docker builder prune` keeps: the cache used at or after `until` (RFC 3339), and the
/// newest entries within BuildKit's three budgets (0 = not set; none set = prune all it may):
/// `reserved_space` is never pruned below (`keep-storage`'s new name), `max_used_space` is
/// pruned down to, and `min_free_space` is pruned for until the data root's disk has that free.
#[derive(Debug, Clone, Default)]
pub struct CachePruneOptions {
    pub until: Option<String>,
    pub reserved_space: u64,
    pub max_used_space: u64,
    pub min_free_space: u64,
}

impl CachePruneOptions {
    /// Whether one more entry goes, with `total` bytes of cache left and `free` bytes free.
    fn wants_more(&self, total: u64, free: u64) -> bool {
        if self.reserved_space > 0 && total <= self.reserved_space {
            return false;
        }
        if self.max_used_space == 0 && self.min_free_space == 0 {
            return true;
        }
        (self.max_used_space > 0 && total > self.max_used_space)
            || (self.min_free_space > 0 && free < self.min_free_space)
    }
}

/// One entry as `docker system df` shows build cache.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub key: Digest,
    pub record: CacheRecord,
    pub parent: Option<Digest>,
    /// Bytes this step added (its own layer, if it made one).
    pub size: u64,
    pub in_use: bool,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl ImageStore {
    /// The image cached under `key`, if it still exists.
    pub fn cache_get(&self, key: &Digest) -> Result<Option<Image>> {
        let Some(mut rec) = self.store.get::<CacheRecord>(BUILD_CACHE, key.as_str())? else { return Ok(None) };
        match self.store.get::<ImageRecord>(IMAGES, rec.image.as_str())? {
            Some(_) => {
                rec.last_used = now();
                rec.usage_count += 1;
                self.store.put(BUILD_CACHE, key.as_str(), &rec)?;
                Ok(Some(self.resolve(rec.image.as_str())?))
            }
            None => {
                self.store.delete(BUILD_CACHE, key.as_str())?;
                Ok(None)
            }
        }
    }

    pub fn cache_put(&self, key: &Digest, image: &Digest, created_by: &str) -> Result<()> {
        let t = now();
        let rec = CacheRecord {
            image: image.clone(),
            created_by: created_by.into(),
            created: t.clone(),
            last_used: t,
            usage_count: 0,
        };
        self.store.put(BUILD_CACHE, key.as_str(), &rec)
    }

    /// A build ended (built or failed; either way its client saw the outcome): the images it made
    /// are ordinary images and build cache from now on.
    pub fn build_finished(&self, build: &str) -> Result<()> {
        let prefix = format!("{build}/");
        let keys: Vec<String> =
            self.store.list::<()>(BUILDS)?.into_iter().map(|(k, _)| k).filter(|k| k.starts_with(&prefix)).collect();
        self.store.write(|tx| keys.iter().try_for_each(|k| tx.delete(BUILDS, k)))
    }

    /// At start: the images of builds a crash cut off (no client got their result) that nothing
    /// holds — no tag, no container, no child image — are deleted with their untagged parents, as
    /// the build would have been had it finished and been pruned. Returns how many were deleted.
    pub fn collect_interrupted_builds(&self, usage: &dyn Fn(&Digest) -> Vec<Usage>) -> Result<usize> {
        let made: Vec<Digest> =
            self.store.list::<()>(BUILDS)?.iter().filter_map(|(k, _)| k.split_once('/')?.1.parse().ok()).collect();
        let mut deleted = 0;
        // Newest first is not known from the keys; repeat while something goes, so a step's image
        // is considered once its child from the same build is gone.
        loop {
            let records = self.store.list::<ImageRecord>(IMAGES)?;
            let has_child = |id: &Digest| records.iter().any(|(_, r)| r.parent.as_ref() == Some(id));
            let free = made.iter().find(|id| {
                records.iter().any(|(k, _)| k == id.as_str())
                    && !has_child(id)
                    && usage(id).is_empty()
                    && self.resolve(id.as_str()).is_ok_and(|i| i.tags.is_empty() && i.repo_digests.is_empty())
            });
            let Some(id) = free else { break };
            deleted += self
                .delete(id.as_str(), false, usage)?
                .iter()
                .filter(|d| matches!(d, DeleteResponse::Deleted(_)))
                .count();
        }
        let keys: Vec<String> = self.store.list::<()>(BUILDS)?.into_iter().map(|(k, _)| k).collect();
        self.store.write(|tx| keys.iter().try_for_each(|k| tx.delete(BUILDS, k)))?;
        Ok(deleted)
    }

    /// Live cache entries; `in_use` when a tag or a container holds the step's image.
    pub fn cache_list(&self, usage: &dyn Fn(&Digest) -> Vec<Usage>) -> Result<Vec<CacheEntry>> {
        let mut out = Vec::new();
        for (k, rec) in self.store.list::<CacheRecord>(BUILD_CACHE)? {
            let Ok(img) = self.resolve(rec.image.as_str()) else { continue };
            let own_layer = img.config.history.last().is_some_and(|h| !h.empty_layer);
            let size = if own_layer { img.layer_sizes.last().copied().unwrap_or(0) } else { 0 };
            let in_use = !img.tags.is_empty() || !usage(&img.id).is_empty();
            out.push(CacheEntry { key: k.parse()?, record: rec, parent: img.parent.clone(), size, in_use });
        }
        Ok(out)
    }

    /// `docker builder prune`: forgets the cache entries nothing uses (no tag, no container) and
    /// deletes their step images — only those last used before `opts.until`, the oldest first
    /// while the budgets want more (see `CachePruneOptions`). Returns the entries removed and
    /// the bytes freed.
    pub fn cache_prune(
        &self,
        usage: &dyn Fn(&Digest) -> Vec<Usage>,
        opts: &CachePruneOptions,
    ) -> Result<(Vec<String>, u64)> {
        let before: u64 = self.layer_bytes()?;
        let entries = self.cache_list(usage)?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut candidates: Vec<&CacheEntry> = entries
            .iter()
            .filter(|e| !e.in_use)
            .filter(|e| opts.until.as_ref().is_none_or(|u| e.record.last_used.as_str() < u.as_str()))
            .collect();
        // Oldest first: with a budget, the most recently used survive.
        candidates.sort_by(|a, b| a.record.last_used.cmp(&b.record.last_used));
        let mut removed = Vec::new();
        let free_at_start = match opts.min_free_space {
            0 => 0,
            _ => rustix::fs::statvfs(self.layout.root())
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
                .map_err(|e| Error::internal(format!("statvfs of the data root: {e}")))?,
        };
        let start_total = total;
        for e in candidates {
            // What the removals so far freed, as far as the cache's own sizes tell.
            if !opts.wants_more(total, free_at_start + (start_total - total)) {
                break;
            }
            self.store.delete(BUILD_CACHE, e.key.as_str())?;
            removed.push(e.key.hex().to_string());
            total = total.saturating_sub(e.size);
            if self.store.get::<ImageRecord>(IMAGES, e.record.image.as_str())?.is_some() {
                let _: Vec<DeleteResponse> = self.delete(e.record.image.as_str(), false, usage).unwrap_or_default();
            }
        }
        // Entries whose image is gone already.
        for (k, rec) in self.store.list::<CacheRecord>(BUILD_CACHE)? {
            if self.store.get::<ImageRecord>(IMAGES, rec.image.as_str())?.is_none() {
                self.store.delete(BUILD_CACHE, &k)?;
            }
        }
        self.gc()?;
        Ok((removed, before.saturating_sub(self.layer_bytes()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{store, tar_with};
    use crate::ImportOptions;
    use berth_api::image::ImageConfig;
    use berth_types::Reference;

    #[test]
    fn prune_budgets_as_buildkit() {
        let o = |reserved, max_used, min_free| CachePruneOptions {
            reserved_space: reserved,
            max_used_space: max_used,
            min_free_space: min_free,
            ..Default::default()
        };
        // No budget: everything it may.
        assert!(o(0, 0, 0).wants_more(1, 0));
        // Reserved alone: down to it, never below.
        assert!(o(100, 0, 0).wants_more(101, 0) && !o(100, 0, 0).wants_more(100, 0));
        // Max used: down to it; free space: until the disk has that much.
        assert!(o(0, 50, 0).wants_more(51, 0) && !o(0, 50, 0).wants_more(50, 0));
        assert!(o(0, 0, 10).wants_more(500, 9) && !o(0, 0, 10).wants_more(500, 10));
        // Reserved wins over both.
        assert!(!o(100, 50, 10).wants_more(100, 0));
    }

    /// A step image on `parent`: the parent's layers and config, one more history entry.
    fn step(s: &ImageStore, parent: &Digest, n: u32, build: &str) -> Digest {
        let img = s.resolve(parent.as_str()).unwrap();
        let mut config: ImageConfig = img.config.clone();
        config.config.env = vec![format!("STEP={n}")];
        let bytes = serde_json::to_vec(&config).unwrap();
        s.create_child(&bytes, &s.layers_of(parent).unwrap(), &[], Some(parent), Some(build)).unwrap()
    }

    #[test]
    fn images_of_an_interrupted_build_are_collected_and_a_finished_builds_kept() {
        let (_d, s) = store();
        let opts = ImportOptions { reference: Some(Reference::parse_tagged("base").unwrap()), ..Default::default() };
        let base = s.import(&tar_with(&[("f", b"x")])[..], opts).unwrap();
        let none = |_: &Digest| Vec::new();
        // A finished build: its (untagged) images stay as build cache.
        let done = step(&s, &base, 1, "b1");
        s.build_finished("b1").unwrap();
        // An interrupted one: three steps, the last held by a container, another build's image
        // tagged by a user meanwhile.
        let a = step(&s, &base, 2, "b2");
        let b = step(&s, &a, 3, "b2");
        let tagged = step(&s, &base, 4, "b2");
        s.tag(tagged.as_str(), &Reference::parse_tagged("kept").unwrap()).unwrap();
        let used = step(&s, &base, 5, "b2");
        let usage = |d: &Digest| if d == &used { vec![Usage::Stopped("c".repeat(64))] } else { Vec::new() };
        assert_eq!(s.collect_interrupted_builds(&usage).unwrap(), 2, "the chain a <- b");
        let left: Vec<Digest> = s.list().unwrap().into_iter().map(|i| i.id).collect();
        for (id, kept) in [(&base, true), (&done, true), (&a, false), (&b, false), (&tagged, true), (&used, true)] {
            assert_eq!(left.contains(id), kept, "{id}");
        }
        // The bookkeeping is gone: a second start collects nothing more.
        assert_eq!(s.collect_interrupted_builds(&none).unwrap(), 0);
        assert!(left.contains(&used));
    }
}
