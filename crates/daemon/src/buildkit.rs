//! The daemon's side of BuildKit's API (crate `berth-buildkit`): builds run through the same
//! [`BuildService`] as `POST /build`, so both front ends share the step cache, the images and
//! the build bookkeeping.

use std::pin::Pin;
use std::sync::Arc;

use berth_buildkit::{BuildOptions, CacheItem, Engine, MountedImage, PruneOptions};
use berth_types::{Reference, Result};
use futures_util::future::BoxFuture;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::build::BuildService;
use crate::ImageService;

pub struct BuildKitEngine {
    pub builds: Arc<BuildService>,
    pub images: Arc<ImageService>,
}

fn item(e: berth_image::CacheEntry) -> CacheItem {
    CacheItem {
        id: e.key.hex().to_string(),
        parent: e.parent.map(|p| p.hex().to_string()),
        size: e.size,
        in_use: e.in_use,
        created: e.record.created,
        last_used: e.record.last_used,
        usage_count: e.record.usage_count,
        description: e.record.created_by,
    }
}

impl Engine for BuildKitEngine {
    fn build(
        &self,
        context: Pin<Box<dyn AsyncRead + Send>>,
        opts: BuildOptions,
    ) -> BoxFuture<'_, Result<mpsc::UnboundedReceiver<berth_api::progress::JsonMessage>>> {
        Box::pin(async move {
            let prepared = self.builds.prepare(context, opts).await?;
            Ok(self.builds.run(prepared))
        })
    }

    fn build_dir(
        &self,
        context: std::path::PathBuf,
        opts: BuildOptions,
    ) -> BoxFuture<'_, Result<mpsc::UnboundedReceiver<berth_api::progress::JsonMessage>>> {
        Box::pin(async move {
            let prepared = self.builds.prepare_dir(context, opts).await?;
            Ok(self.builds.run(prepared))
        })
    }

    fn import_rootfs(&self, tar: Pin<Box<dyn AsyncRead + Send>>) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            let opts = berth_image::ImportOptions {
                message: "named build context".into(),
                created: Some("1970-01-01T00:00:00Z".into()),
                ..Default::default()
            };
            Ok(self.images.import(tar, opts).await?.to_string())
        })
    }

    fn remove_image(&self, image: String) -> BoxFuture<'_, Result<()>> {
        // Not forced: an image a concurrent build still uses stays (its layers are shared anyway).
        Box::pin(async move { self.images.delete(&image, false).await.map(|_| ()) })
    }

    fn tag(&self, image: String, names: Vec<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            for n in names {
                let r = Reference::parse(&n)?;
                self.images.tag(&image, &r.familiar_repository(), r.tag().unwrap_or("latest")).await?;
            }
            Ok(())
        })
    }

    fn cache(&self) -> BoxFuture<'_, Result<Vec<CacheItem>>> {
        Box::pin(async move { Ok(self.builds.cache().await?.into_iter().map(item).collect()) })
    }

    fn mount_image(&self, image: String) -> BoxFuture<'_, Result<MountedImage>> {
        let store = self.images.store();
        Box::pin(async move {
            let digest = self.images.resolve(&image).await?.id;
            let key = format!("export-{}", berth_types::new_id());
            let (s2, k2) = (store.clone(), key.clone());
            let root = tokio::task::spawn_blocking(move || -> Result<std::path::PathBuf> {
                let snap = s2.prepare_image_view(&k2, Some(&digest))?;
                if let Err(e) = snap.overlay.mount(&snap.target) {
                    let _ = s2.remove_snapshot(&k2);
                    return Err(e);
                }
                Ok(snap.target)
            })
            .await
            .map_err(|e| berth_types::Error::internal(format!("blocking task: {e}")))??;
            let target = root.clone();
            let release = move || {
                let undo = move || {
                    let _ = berth_sys::mount::unmount(&target);
                    let _ = store.remove_snapshot(&key);
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => drop(h.spawn_blocking(undo)),
                    Err(_) => undo(),
                }
            };
            Ok(MountedImage::new(root, Box::new(release)))
        })
    }

    fn prune(&self, opts: PruneOptions) -> BoxFuture<'_, Result<Vec<CacheItem>>> {
        Box::pin(async move {
            let before = self.builds.cache().await?;
            let until = opts.keep_duration.map(|d| {
                (chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default())
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            });
            let o = berth_image::CachePruneOptions {
                until,
                reserved_space: opts.reserved_space,
                max_used_space: opts.max_used_space,
                min_free_space: opts.min_free_space,
            };
            let (deleted, _) = self.builds.prune(o).await?;
            Ok(before.into_iter().map(item).filter(|c| deleted.iter().any(|d| d.ends_with(&c.id))).collect())
        })
    }
}
