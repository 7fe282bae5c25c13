//! The classic builder's step cache: a cache key (computed by the builder) names the image a step
//! produced. Entries whose image was deleted are ignored and dropped lazily.

use berth_types::{Digest, Result};
use serde::{Deserialize, Serialize};

use crate::store::{ImageRecord, ImageStore, IMAGES};
use crate::{DeleteResponse, Image, Usage};
use berth_store::Table;

const BUILD_CACHE: Table = Table::new("build_cache");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRecord {
    pub image: Digest,
    pub created_by: String,
    pub created: String,
    pub last_used: String,
    pub usage_count: u64,
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

    /// `docker builder prune`: forgets every cache entry and deletes the step images nothing else
    /// holds (no tag, no container). Returns the entries removed and the bytes freed.
    pub fn cache_prune(&self, usage: &dyn Fn(&Digest) -> Vec<Usage>) -> Result<(Vec<String>, u64)> {
        let before: u64 = self.layer_bytes()?;
        let mut removed = Vec::new();
        for e in self.cache_list(usage)? {
            self.store.delete(BUILD_CACHE, e.key.as_str())?;
            removed.push(e.key.hex().to_string());
            if e.in_use {
                continue;
            }
            if self.store.get::<ImageRecord>(IMAGES, e.record.image.as_str())?.is_some() {
                let _: Vec<DeleteResponse> = self.delete(e.record.image.as_str(), false, usage).unwrap_or_default();
            }
        }
        // Entries whose image is gone already.
        for (k, _) in self.store.list::<CacheRecord>(BUILD_CACHE)? {
            self.store.delete(BUILD_CACHE, &k)?;
        }
        self.gc()?;
        Ok((removed, before.saturating_sub(self.layer_bytes()?)))
    }
}
