//! What `/version`, `/info`, `/auth` and `/system/df` need, and the daemon behind them.

use std::collections::HashMap;
use std::sync::Arc;

use berth_api::auth::AuthConfig;
use berth_api::container::Summary;
use berth_api::filters::Filters;
use berth_api::image::ImageSummary;
use berth_api::system::{BuildCacheEntry, DiskUsage, Info, UsageOf, Version};
use berth_api::volume::Volume;
use berth_image::Image;
use berth_types::Result;

use super::BoxFuture;

/// The kinds `docker system df --type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageKind {
    Container,
    Image,
    Volume,
    BuildCache,
}

impl UsageKind {
    pub fn parse(s: &str) -> Option<UsageKind> {
        match s {
            "container" => Some(UsageKind::Container),
            "image" => Some(UsageKind::Image),
            "volume" => Some(UsageKind::Volume),
            "build-cache" => Some(UsageKind::BuildCache),
            _ => None,
        }
    }
}

pub trait SystemBackend: Send + Sync {
    fn version(&self) -> Version;
    fn info(&self) -> BoxFuture<'_, Info>;
    /// Checks the credentials against the registry (`docker login`); an identity token, if any.
    fn login(&self, auth: AuthConfig) -> BoxFuture<'_, String>;
    /// The kinds asked for (all when none).
    fn disk_usage<'a>(&'a self, kinds: &'a [UsageKind]) -> BoxFuture<'a, DiskUsage>;
}

/// The daemon's services, as `/system` sees them.
pub struct Systems {
    pub system: Arc<crate::SystemService>,
    pub images: Arc<crate::ImageService>,
    pub containers: Arc<crate::ContainerService>,
    pub volumes: Arc<crate::VolumeService>,
    pub builds: Arc<crate::BuildService>,
}

impl SystemBackend for Systems {
    fn version(&self) -> Version {
        self.system.version()
    }

    fn info(&self) -> BoxFuture<'_, Info> {
        Box::pin(async move { Ok(self.system.info().await) })
    }

    fn login(&self, auth: AuthConfig) -> BoxFuture<'_, String> {
        Box::pin(self.images.login(auth))
    }

    fn disk_usage<'a>(&'a self, kinds: &'a [UsageKind]) -> BoxFuture<'a, DiskUsage> {
        Box::pin(async move {
            let asked = |k: UsageKind| kinds.is_empty() || kinds.contains(&k);
            let mut out = DiskUsage::default();
            // Containers are counted for images too (which are in use).
            let mut cs = Vec::new();
            for mut c in self.containers.list(true, None, &Filters::default())? {
                if asked(UsageKind::Container) {
                    c.sizes = self.containers.sizes(&c.id).await;
                }
                cs.push(c);
            }
            if asked(UsageKind::Image) {
                let (u, layers) = image_usage(&self.images.list().await?, &cs);
                out.layers_size = Some(layers);
                out.images = Some(u);
            }
            if asked(UsageKind::Volume) {
                out.volumes = Some(volume_usage(self.volumes.usage().await?));
            }
            if asked(UsageKind::BuildCache) {
                out.build_cache = Some(cache_usage(build_cache(&self.builds).await?));
            }
            if asked(UsageKind::Container) {
                out.containers = Some(container_usage(cs));
            }
            Ok(out)
        })
    }
}

fn container_usage(cs: Vec<Summary>) -> UsageOf<Summary> {
    let size = |c: &Summary| c.sizes.size_rw.unwrap_or(0) as i64;
    UsageOf {
        active_count: cs.iter().filter(|c| c.state == "running").count(),
        total_count: cs.len(),
        total_size: cs.iter().map(size).sum(),
        reclaimable: cs.iter().filter(|c| c.state != "running").map(size).sum(),
        items: cs,
    }
}

/// Images, and the bytes of their layers: shared layers count once (the disk actually used);
/// reclaimable is what no container's image holds.
fn image_usage(imgs: &[Image], cs: &[Summary]) -> (UsageOf<ImageSummary>, i64) {
    let users = |i: &Image| cs.iter().filter(|c| c.image_id == i.id.as_str()).count();
    let layers = |i: &Image| -> Vec<(String, u64)> {
        i.config.rootfs.diff_ids.iter().map(|d| d.to_string()).zip(i.layer_sizes.iter().copied()).collect()
    };
    let all: HashMap<String, u64> = imgs.iter().flat_map(layers).collect();
    let used: HashMap<String, u64> = imgs.iter().filter(|i| users(i) > 0).flat_map(layers).collect();
    let total = all.values().sum::<u64>() as i64;
    let items: Vec<ImageSummary> = imgs
        .iter()
        .map(|i| ImageSummary {
            id: i.id.to_string(),
            parent_id: i.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            repo_tags: i.tags.iter().map(|t| t.familiar()).collect(),
            repo_digests: i.repo_digests.iter().map(|t| t.familiar()).collect(),
            created: i
                .config
                .created
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|d| d.timestamp())
                .unwrap_or(0),
            size: i.size,
            shared_size: 0,
            labels: i.config.config.labels.clone(),
            containers: users(i) as i64,
            manifests: None,
        })
        .collect();
    let u = UsageOf {
        active_count: imgs.iter().filter(|i| users(i) > 0).count(),
        total_count: items.len(),
        total_size: total,
        reclaimable: total - used.values().sum::<u64>() as i64,
        items,
    };
    (u, total)
}

fn volume_usage(vols: Vec<Volume>) -> UsageOf<Volume> {
    let usage = |v: &Volume| v.usage_data.map_or((0, 0), |u| (u.size.max(0), u.ref_count));
    UsageOf {
        active_count: vols.iter().filter(|v| usage(v).1 > 0).count(),
        total_count: vols.len(),
        total_size: vols.iter().map(|v| usage(v).0).sum(),
        reclaimable: vols.iter().filter(|v| usage(v).1 == 0).map(|v| usage(v).0).sum(),
        items: vols,
    }
}

fn cache_usage(cache: Vec<BuildCacheEntry>) -> UsageOf<BuildCacheEntry> {
    let own = |b: &&BuildCacheEntry| !b.shared;
    UsageOf {
        active_count: cache.iter().filter(|b| b.in_use).count(),
        total_count: cache.len(),
        total_size: cache.iter().filter(own).map(|b| b.size as i64).sum(),
        reclaimable: cache.iter().filter(own).filter(|b| !b.in_use).map(|b| b.size as i64).sum(),
        items: cache,
    }
}

/// Build cache entries as `docker system df -v` lists them.
async fn build_cache(builds: &crate::BuildService) -> Result<Vec<BuildCacheEntry>> {
    Ok(builds
        .cache()
        .await?
        .into_iter()
        .map(|e| BuildCacheEntry {
            id: e.key.hex().to_string(),
            parents: e.parent.iter().map(|p| p.to_string()).collect(),
            kind: "regular".into(),
            description: e.record.created_by,
            in_use: e.in_use,
            shared: false,
            size: e.size,
            created_at: e.record.created,
            last_used_at: e.record.last_used,
            usage_count: e.record.usage_count,
        })
        .collect())
}
