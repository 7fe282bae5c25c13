//! The volume service: `berth_volume::VolumeStore` on blocking threads, events, and usage rules.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use berth_api::filters::Filters;
use berth_types::{Error, Result};
use berth_volume::{Volume, VolumeStore};

use crate::events::EventBus;

/// Ids of the containers that refer to a volume (any state), from the container service.
pub type VolumeUsageFn = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

pub struct VolumeService {
    store: Arc<VolumeStore>,
    events: Arc<EventBus>,
    usage: OnceLock<VolumeUsageFn>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

/// A stored volume as the API shows it; with its (size, reference count) for `system df`.
pub fn volume_view(v: &Volume, usage: Option<(i64, usize)>) -> berth_api::volume::Volume {
    berth_api::volume::Volume {
        created_at: v.created_at.clone(),
        driver: v.driver.clone(),
        labels: v.labels.clone(),
        mountpoint: v.mountpoint.display().to_string(),
        name: v.name.clone(),
        options: (!v.options.is_empty()).then(|| v.options.clone()),
        scope: "local".into(),
        usage_data: usage.map(|(size, refs)| berth_api::volume::UsageData {
            size,
            ref_count: i64::try_from(refs).unwrap_or(i64::MAX),
        }),
    }
}

impl VolumeService {
    pub fn new(store: Arc<VolumeStore>, events: Arc<EventBus>) -> VolumeService {
        VolumeService { store, events, usage: OnceLock::new() }
    }

    pub fn set_usage(&self, f: VolumeUsageFn) {
        let _ = self.usage.set(f);
    }

    fn users(&self, name: &str) -> Vec<String> {
        self.usage.get().map(|f| f(name)).unwrap_or_default()
    }

    /// The blocking store, for the container service's start path (already on a blocking thread).
    pub fn store(&self) -> Arc<VolumeStore> {
        self.store.clone()
    }

    pub fn publish(&self, action: &str, name: &str, attrs: &[(&str, String)]) {
        let mut a: BTreeMap<String, String> = attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        a.entry("driver".into()).or_insert_with(|| "local".into());
        self.events.publish("volume", action, name, a);
    }

    pub async fn create(
        &self,
        name: Option<String>,
        driver: String,
        options: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let store = self.store.clone();
        let (v, created) = blocking(move || store.create(name.as_deref(), &driver, options, labels)).await?;
        if created {
            self.publish("create", &v.name, &[]);
        }
        Ok(v)
    }

    pub async fn inspect(&self, name: &str) -> Result<Volume> {
        let (store, name) = (self.store.clone(), name.to_string());
        blocking(move || store.inspect(&name)).await
    }

    pub async fn list(&self, filters: &Filters) -> Result<Vec<Volume>> {
        filters.validate(&["name", "label", "dangling", "driver"]).map_err(Error::invalid)?;
        let store = self.store.clone();
        let all = blocking(move || store.list()).await?;
        let dangling = match filters.get("dangling").first().map(String::as_str) {
            None => None,
            Some("true") | Some("1") => Some(true),
            Some("false") | Some("0") => Some(false),
            Some(other) => return Err(Error::invalid(format!("invalid filter 'dangling={other}'"))),
        };
        let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
            let v = filters.get(key);
            v.is_empty() || v.iter().any(|x| pred(x))
        };
        Ok(all
            .into_iter()
            .filter(|v| any("name", &|n| v.name.contains(n)))
            .filter(|v| any("driver", &|d| v.driver == d))
            .filter(|v| filters.match_labels(&v.labels))
            .filter(|v| dangling.is_none_or(|d| self.users(&v.name).is_empty() == d))
            .collect())
    }

    pub async fn remove(&self, name: &str, force: bool) -> Result<()> {
        let users = self.users(name);
        let (store, n) = (self.store.clone(), name.to_string());
        match blocking(move || store.remove(&n, &users)).await {
            Ok(()) => {
                self.publish("destroy", name, &[]);
                Ok(())
            }
            Err(e) if force && e.kind == berth_types::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /volumes/prune`: unused anonymous volumes, or every unused one with `all=true`.
    pub async fn prune(&self, filters: &Filters) -> Result<(Vec<String>, u64)> {
        filters.validate(&["label", "label!", "all"]).map_err(Error::invalid)?;
        let all = filters.get("all").iter().any(|v| v == "true" || v == "1");
        let store = self.store.clone();
        let vols = blocking(move || store.list()).await?;
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for v in vols {
            if (!all && !v.anonymous()) || !filters.match_labels(&v.labels) || !self.users(&v.name).is_empty() {
                continue;
            }
            if filters.get("label!").iter().any(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(l.as_str()),
            }) {
                continue;
            }
            let (store, v2) = (self.store.clone(), v.clone());
            let size = blocking(move || Ok(store.size(&v2).max(0) as u64)).await?;
            if self.remove(&v.name, false).await.is_ok() {
                reclaimed += size;
                deleted.push(v.name);
            }
        }
        Ok((deleted, reclaimed))
    }

    /// Every volume with its size and reference count, for `docker system df`.
    pub async fn usage(&self) -> Result<Vec<berth_api::volume::Volume>> {
        let store = self.store.clone();
        let usage = self.usage.get().cloned();
        // Sizes walk the volumes' folders: blocking work.
        blocking(move || {
            let users = |n: &str| usage.as_ref().map(|f| f(n).len()).unwrap_or(0);
            Ok(store.list()?.iter().map(|v| volume_view(v, Some((store.size(v), users(&v.name))))).collect())
        })
        .await
    }
}
