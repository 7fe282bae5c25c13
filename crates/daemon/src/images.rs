//! The image service: `berth_image::ImageStore` on blocking threads, plus events and usage rules.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use berth_image::{DeleteResponse, Image, ImageStore, ImportOptions, Snapshot, Usage};
use berth_types::{Digest, Error, Reference, Result};
use tokio::io::AsyncRead;
use tokio_util::io::SyncIoBridge;

use crate::events::EventBus;

pub type UsageFn = Arc<dyn Fn(&Digest) -> Vec<Usage> + Send + Sync>;

pub struct ImageService {
    store: Arc<ImageStore>,
    events: Arc<EventBus>,
    usage: OnceLock<UsageFn>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

impl ImageService {
    pub fn new(store: Arc<ImageStore>, events: Arc<EventBus>) -> ImageService {
        ImageService {
            store,
            events,
            usage: OnceLock::new(),
        }
    }

    /// Wires in who uses which image; the container service provides it after both exist.
    pub fn set_usage(&self, f: UsageFn) {
        let _ = self.usage.set(f);
    }

    /// Imports a rootfs tar streamed from `body`.
    pub async fn import(
        &self,
        body: impl AsyncRead + Send + Unpin + 'static,
        opts: ImportOptions,
    ) -> Result<Digest> {
        let store = self.store.clone();
        let reference = opts.reference.clone();
        let id = blocking(move || store.import(SyncIoBridge::new(body), opts)).await?;
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), id.to_string());
        self.events.publish("image", "import", id.as_str(), attrs);
        if let Some(r) = reference {
            let mut attrs = BTreeMap::new();
            attrs.insert("name".to_string(), r.familiar());
            self.events.publish("image", "tag", id.as_str(), attrs);
        }
        Ok(id)
    }

    pub async fn list(&self) -> Result<Vec<Image>> {
        let store = self.store.clone();
        blocking(move || store.list()).await
    }

    pub async fn resolve(&self, name: &str) -> Result<Image> {
        let (store, name) = (self.store.clone(), name.to_string());
        blocking(move || store.resolve(&name)).await
    }

    pub async fn tag(&self, name: &str, repo: &str, tag: &str) -> Result<()> {
        let mut reference = Reference::parse(repo)?;
        if reference.digest().is_some() {
            return Err(Error::invalid(
                "refusing to create a tag with a digest reference",
            ));
        }
        reference = reference.with_tag(if tag.is_empty() {
            berth_types::DEFAULT_TAG
        } else {
            tag
        })?;
        let (store, name, r) = (self.store.clone(), name.to_string(), reference.clone());
        let img = blocking(move || store.tag(&name, &r)).await?;
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), reference.familiar());
        self.events.publish("image", "tag", img.id.as_str(), attrs);
        Ok(())
    }

    pub async fn delete(&self, name: &str, force: bool) -> Result<Vec<DeleteResponse>> {
        let (store, name) = (self.store.clone(), name.to_string());
        let usage = self.usage.get().cloned();
        let out = blocking(move || {
            let none = |_: &Digest| Vec::new();
            match &usage {
                Some(u) => store.delete(&name, force, u.as_ref()),
                None => store.delete(&name, force, &none),
            }
        })
        .await?;
        let deleted = out.iter().find_map(|r| match r {
            DeleteResponse::Deleted(id) => Some(id.clone()),
            _ => None,
        });
        for r in &out {
            let mut attrs = BTreeMap::new();
            match r {
                DeleteResponse::Untagged(t) => {
                    attrs.insert("name".to_string(), t.clone());
                    self.events
                        .publish("image", "untag", deleted.as_deref().unwrap_or(""), attrs);
                }
                DeleteResponse::Deleted(id) => {
                    attrs.insert("name".to_string(), id.clone());
                    self.events.publish("image", "delete", id, attrs);
                }
            }
        }
        Ok(out)
    }

    pub async fn prepare_snapshot(&self, key: &str, image: &Digest) -> Result<Snapshot> {
        let (store, key, image) = (self.store.clone(), key.to_string(), image.clone());
        blocking(move || store.prepare_snapshot(&key, &image)).await
    }

    pub async fn snapshot_mounts(&self, key: &str) -> Result<Snapshot> {
        let (store, key) = (self.store.clone(), key.to_string());
        blocking(move || store.snapshot_mounts(&key)).await
    }

    pub async fn remove_snapshot(&self, key: &str) -> Result<()> {
        let (store, key) = (self.store.clone(), key.to_string());
        blocking(move || store.remove_snapshot(&key)).await
    }

    pub fn count(&self) -> usize {
        self.store.list().map(|l| l.len()).unwrap_or(0)
    }
}
