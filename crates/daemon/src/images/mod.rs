//! The image service: `berth_image::ImageStore` on blocking threads, plus events and usage rules.

mod platforms;
pub(crate) mod pull;
mod push;
mod views;

pub use platforms::{check_runnable, identity, platform_of};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use berth_image::{Image, ImageStore, Snapshot, Usage};
use berth_types::{Digest, Error, Reference, Result};
use tokio::io::AsyncRead;
use tokio_util::io::SyncIoBridge;

use berth_distribution::{AuthConfig, Registries};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::events::EventBus;

pub(crate) use berth_image::DeleteResponse;
/// What the image routes name: re-exported so the server needs no image crate.
pub use berth_image::{ImportOptions, LayerCompression};
pub use pull::PullOptions;
pub use push::PushOptions;
pub use views::ListOptions;

/// Registry settings of the image service (daemon.json's `max-concurrent-downloads` and friends).
#[derive(Debug, Clone, PartialEq)]
pub struct DistributionConfig {
    pub registry: berth_distribution::RegistryConfig,
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
    /// How a push compresses layers (`push-compression`: gzip, or zstd as an opt-in).
    pub push_compression: berth_image::LayerCompression,
}

impl Default for DistributionConfig {
    fn default() -> Self {
        DistributionConfig {
            registry: Default::default(),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            push_compression: Default::default(),
        }
    }
}

/// The JSON-lines progress of a pull or push; a client that went away is not an error.
#[derive(Clone)]
pub(crate) struct Progress(mpsc::UnboundedSender<Vec<u8>>);

impl Progress {
    pub(crate) fn send(&self, line: Vec<u8>) {
        let _ = self.0.send(line);
    }

    /// The client closed the connection: as with Docker, the transfer is cancelled.
    pub(crate) fn gone(&self) -> bool {
        self.0.is_closed()
    }
}

pub type UsageFn = Arc<dyn Fn(&Digest) -> Vec<Usage> + Send + Sync>;

pub struct ImageService {
    store: Arc<ImageStore>,
    events: Arc<EventBus>,
    usage: OnceLock<UsageFn>,
    registries: Arc<Registries>,
    /// Shared by every pull, as Docker's `max-concurrent-downloads`.
    downloads: Semaphore,
    uploads: Semaphore,
    push_compression: berth_image::LayerCompression,
    /// The limits the semaphores stand for (changed by a reload).
    limits: Mutex<(usize, usize)>,
    /// Layers (chain ids) being downloaded, so two pulls of one image fetch each layer once.
    inflight: Mutex<HashMap<Digest, watch::Receiver<bool>>>,
}

/// `until` as unix seconds or an RFC 3339 time.
fn parse_until(u: &str) -> Result<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(u) {
        return Ok(d.timestamp());
    }
    u.split('.').next().unwrap_or("").parse().map_err(|_| Error::invalid(format!("invalid filter 'until={u}'")))
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

impl ImageService {
    pub fn new(store: Arc<ImageStore>, events: Arc<EventBus>, dist: DistributionConfig) -> ImageService {
        ImageService {
            store,
            events,
            usage: OnceLock::new(),
            registries: Arc::new(Registries::new(dist.registry)),
            downloads: Semaphore::new(dist.max_concurrent_downloads.max(1)),
            uploads: Semaphore::new(dist.max_concurrent_uploads.max(1)),
            limits: Mutex::new((dist.max_concurrent_downloads.max(1), dist.max_concurrent_uploads.max(1))),
            inflight: Mutex::new(HashMap::new()),
            push_compression: dist.push_compression,
        }
    }

    /// A reload of daemon.json: registries (mirrors, insecure ones) and the transfer limits. A
    /// lower limit takes the permits back as transfers finish.
    pub fn reconfigure(self: &Arc<Self>, dist: DistributionConfig) {
        self.registries.set_config(dist.registry);
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = [dist.max_concurrent_downloads.max(1), dist.max_concurrent_uploads.max(1)];
        for (i, new) in wanted.into_iter().enumerate() {
            let old = if i == 0 { &mut limits.0 } else { &mut limits.1 };
            let sem = if i == 0 { &self.downloads } else { &self.uploads };
            if new > *old {
                sem.add_permits(new - *old);
            } else if new < *old {
                let left = (*old - new) - sem.forget_permits(*old - new);
                // Permits in use now are taken back as their transfers end.
                if left > 0 {
                    let svc = self.clone();
                    tokio::spawn(async move {
                        let sem = if i == 0 { &svc.downloads } else { &svc.uploads };
                        if let Ok(p) = sem.acquire_many(left as u32).await {
                            p.forget();
                        }
                    });
                }
            }
            *old = new;
        }
    }

    /// The registry settings in force.
    pub fn registry_config(&self) -> Arc<berth_distribution::RegistryConfig> {
        self.registries.config()
    }

    /// `POST /auth`: validates credentials against their registry; returns an identity token when one was issued.
    pub async fn login(&self, auth: AuthConfig) -> Result<String> {
        self.registries.login(&auth).await
    }

    /// Wires in who uses which image; the container service provides it after both exist.
    pub fn set_usage(&self, f: UsageFn) {
        let _ = self.usage.set(f);
    }

    /// Who uses an image id (containers); nobody before the container service is up.
    pub fn usage(&self) -> UsageFn {
        self.usage.get().cloned().unwrap_or_else(|| Arc::new(|_: &Digest| Vec::new()))
    }

    /// Imports a rootfs tar streamed from `body`.
    pub async fn import(&self, body: impl AsyncRead + Send + Unpin + 'static, opts: ImportOptions) -> Result<Digest> {
        let _timer = crate::metrics::image_action("import");
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
        let _timer = crate::metrics::image_action("tag");
        let mut reference = Reference::parse(repo)?;
        if reference.digest().is_some() {
            return Err(Error::invalid("refusing to create a tag with a digest reference"));
        }
        reference = reference.with_tag(if tag.is_empty() { berth_types::DEFAULT_TAG } else { tag })?;
        let (store, name, r) = (self.store.clone(), name.to_string(), reference.clone());
        let img = blocking(move || store.tag(&name, &r)).await?;
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), reference.familiar());
        self.events.publish("image", "tag", img.id.as_str(), attrs);
        Ok(())
    }

    pub async fn delete(&self, name: &str, force: bool) -> Result<Vec<DeleteResponse>> {
        let _timer = crate::metrics::image_action("delete");
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
                    self.events.publish("image", "untag", deleted.as_deref().unwrap_or(""), attrs);
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

    /// Writes the archive of `names` into `out` (a pipe to the response), on a blocking thread:
    /// of a multi-platform image, every platform that is here, or only those in `platforms`.
    pub async fn save(
        &self,
        names: Vec<String>,
        platforms: &[berth_distribution::manifest::Platform],
        out: impl tokio::io::AsyncWrite + Send + Unpin + 'static,
    ) -> Result<()> {
        // Resolve first, so an unknown name is a 404 before any byte is sent.
        let (chosen, only) = if platforms.is_empty() {
            let (store, names) = (self.store.clone(), names.clone());
            (blocking(move || store.choose(&names)).await?, None)
        } else {
            let (mut chosen, mut only) = (berth_image::SaveSet::new(), std::collections::HashSet::new());
            for n in &names {
                let mut first = None;
                for p in platforms {
                    let img = self.resolve_for(n, Some(p)).await?;
                    only.insert(img.id.clone());
                    first.get_or_insert(img);
                }
                let Some(img) = first else { continue };
                let by_id = n.starts_with("sha256:") || img.id.hex().starts_with(n.as_str());
                let tags = chosen.entry(img.id).or_default();
                tags.extend(Reference::parse_tagged(n).ok().filter(|_| !by_id));
            }
            (chosen, Some(only))
        };
        let store = self.store.clone();
        let events = self.events.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = SyncIoBridge::new(out);
            match store.save_chosen(&chosen, only.as_ref(), &mut w) {
                Ok(_) => {
                    use std::io::Write;
                    let _ = w.flush();
                    let _ = w.shutdown();
                    for n in &names {
                        let mut a = BTreeMap::new();
                        a.insert("name".to_string(), n.clone());
                        events.publish("image", "save", n, a);
                    }
                }
                Err(e) => tracing::warn!("save {names:?}: {e}"),
            }
        });
        Ok(())
    }

    /// Loads an archive streamed from `body`; returns Docker's "Loaded image" lines.
    pub async fn load(
        &self,
        body: impl AsyncRead + Send + Unpin + 'static,
        platforms: &[berth_distribution::manifest::Platform],
    ) -> Result<Vec<String>> {
        let _timer = crate::metrics::image_action("load");
        let store = self.store.clone();
        let opts = berth_image::LoadOptions { platforms: platforms.to_vec() };
        let lines = blocking(move || store.load(SyncIoBridge::new(body), &opts)).await?;
        for l in &lines {
            let name = l.rsplit(": ").next().unwrap_or("").to_string();
            let mut a = BTreeMap::new();
            a.insert("name".to_string(), name.clone());
            self.events.publish("image", "load", &name, a);
        }
        Ok(lines)
    }

    /// `POST /images/prune`.
    pub async fn prune(&self, filters: &berth_api::filters::Filters) -> Result<(Vec<DeleteResponse>, u64)> {
        filters.validate(&["dangling", "label", "label!", "until"]).map_err(Error::invalid)?;
        let all = filters.get("dangling").iter().any(|d| d == "false" || d == "0");
        let until = match filters.get("until").first() {
            Some(u) => Some(parse_until(u)?),
            None => None,
        };
        let f = filters.clone();
        let store = self.store.clone();
        let usage = self.usage.get().cloned();
        let (out, reclaimed) = blocking(move || {
            let keep = |img: &Image| {
                let created = img
                    .config
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|d| d.timestamp());
                !f.match_labels(&img.config.config.labels)
                    || f.get("label!").iter().any(|l| match l.split_once('=') {
                        Some((k, v)) => img.config.config.labels.get(k).is_some_and(|x| x == v),
                        None => img.config.config.labels.contains_key(l.as_str()),
                    })
                    || until.is_some_and(|u| created.is_some_and(|c| c >= u))
            };
            let none = |_: &Digest| Vec::new();
            match &usage {
                Some(u) => store.prune(all, &keep, u.as_ref()),
                None => store.prune(all, &keep, &none),
            }
        })
        .await?;
        for r in &out {
            if let DeleteResponse::Deleted(id) = r {
                let mut a = BTreeMap::new();
                a.insert("name".to_string(), id.clone());
                self.events.publish("image", "delete", id, a);
            }
        }
        Ok((out, reclaimed))
    }

    /// Commits a container's changes (`diff_tar`) on top of `base`.
    pub async fn commit(
        &self,
        base: Digest,
        diff_tar: std::path::PathBuf,
        opts: berth_image::CommitOptions,
    ) -> Result<Digest> {
        let store = self.store.clone();
        let reference = opts.reference.clone();
        let id = blocking(move || store.commit(&base, &diff_tar, opts)).await?;
        if let Some(r) = reference {
            let mut a = BTreeMap::new();
            a.insert("name".to_string(), r.familiar());
            self.events.publish("image", "tag", id.as_str(), a);
        }
        Ok(id)
    }

    /// The blocking store, for container operations already on a blocking thread.
    pub fn store(&self) -> Arc<ImageStore> {
        self.store.clone()
    }

    pub fn count(&self) -> usize {
        self.store.count().unwrap_or(0)
    }
}
