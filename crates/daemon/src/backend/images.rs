//! What `/images` and `/distribution` need, and the daemon's image service behind it.

use std::sync::Arc;

use berth_api::auth::AuthConfig;
use berth_api::filters::Filters;
use berth_api::image::{
    AttestationStatement, DeleteResponseItem, DistributionInspect, HistoryItem, ImageInspect, ImageSummary, OciPlatform,
};
use berth_types::Reference;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{BoxFuture, BoxReader};
use crate::images::{DeleteResponse, ImportOptions, ListOptions, PullOptions, PushOptions};

fn items(out: Vec<DeleteResponse>) -> Vec<DeleteResponseItem> {
    out.into_iter()
        .map(|r| match r {
            DeleteResponse::Untagged(t) => DeleteResponseItem::untagged(t),
            DeleteResponse::Deleted(id) => DeleteResponseItem::deleted(id),
        })
        .collect()
}

/// A progress stream (pull, push): JSON lines, the last one saying how it ended.
pub type Progress = UnboundedReceiver<Vec<u8>>;

pub trait ImageBackend: Send + Sync {
    fn list<'a>(&'a self, opts: &'a ListOptions) -> BoxFuture<'a, Vec<ImageSummary>>;
    /// Of `platform` when given (a platform of a multi-platform image, or the image's own).
    fn inspect<'a>(
        &'a self,
        name: &'a str,
        platform: Option<&'a OciPlatform>,
        manifests: bool,
    ) -> BoxFuture<'a, ImageInspect>;
    fn history<'a>(&'a self, name: &'a str, platform: Option<&'a OciPlatform>) -> BoxFuture<'a, Vec<HistoryItem>>;
    fn attestations<'a>(
        &'a self,
        name: &'a str,
        platform: Option<&'a OciPlatform>,
    ) -> BoxFuture<'a, Vec<AttestationStatement>>;
    /// Errors before the first byte (unknown image, refused credentials) come back here.
    fn pull(&self, opts: PullOptions) -> BoxFuture<'_, Progress>;
    fn push(&self, opts: PushOptions) -> BoxFuture<'_, Progress>;
    /// The new image's id.
    fn import(&self, body: BoxReader, opts: ImportOptions) -> BoxFuture<'_, String>;
    /// Starts writing the archive into `out`; a name that is not here fails before any byte.
    fn save<'a>(
        &'a self,
        names: Vec<String>,
        platforms: &'a [OciPlatform],
        out: tokio::io::DuplexStream,
    ) -> BoxFuture<'a, ()>;
    /// Docker's `Loaded image` lines.
    fn load<'a>(&'a self, body: BoxReader, platforms: &'a [OciPlatform]) -> BoxFuture<'a, Vec<String>>;
    fn tag<'a>(&'a self, name: &'a str, repo: &'a str, tag: &'a str) -> BoxFuture<'a, ()>;
    /// With `platforms`, only those platforms of a multi-platform image.
    fn delete<'a>(
        &'a self,
        name: &'a str,
        force: bool,
        platforms: &'a [OciPlatform],
    ) -> BoxFuture<'a, Vec<DeleteResponseItem>>;
    /// What was deleted and the bytes freed.
    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, (Vec<DeleteResponseItem>, u64)>;
    fn distribution<'a>(&'a self, reference: &'a Reference, auth: AuthConfig) -> BoxFuture<'a, DistributionInspect>;
}

/// The image service, with the container service for who uses which image.
pub struct Imaging {
    pub images: Arc<crate::ImageService>,
    pub containers: Arc<crate::ContainerService>,
}

impl ImageBackend for Imaging {
    fn list<'a>(&'a self, opts: &'a ListOptions) -> BoxFuture<'a, Vec<ImageSummary>> {
        Box::pin(async move { self.images.summaries(opts, &self.containers.image_users()).await })
    }

    fn inspect<'a>(
        &'a self,
        name: &'a str,
        platform: Option<&'a OciPlatform>,
        manifests: bool,
    ) -> BoxFuture<'a, ImageInspect> {
        Box::pin(self.images.inspect(name, platform, manifests))
    }

    fn history<'a>(&'a self, name: &'a str, platform: Option<&'a OciPlatform>) -> BoxFuture<'a, Vec<HistoryItem>> {
        Box::pin(self.images.history(name, platform))
    }

    fn attestations<'a>(
        &'a self,
        name: &'a str,
        platform: Option<&'a OciPlatform>,
    ) -> BoxFuture<'a, Vec<AttestationStatement>> {
        // Berth keeps an index's image manifests, never its attestation manifests' content: a
        // known image has no statements here.
        Box::pin(async move { self.images.resolve_for(name, platform).await.map(|_| Vec::new()) })
    }

    fn pull(&self, opts: PullOptions) -> BoxFuture<'_, Progress> {
        Box::pin(self.images.pull(opts))
    }

    fn push(&self, opts: PushOptions) -> BoxFuture<'_, Progress> {
        Box::pin(self.images.push(opts))
    }

    fn import(&self, body: BoxReader, opts: ImportOptions) -> BoxFuture<'_, String> {
        Box::pin(async move { Ok(self.images.import(body, opts).await?.to_string()) })
    }

    fn save<'a>(
        &'a self,
        names: Vec<String>,
        platforms: &'a [OciPlatform],
        out: tokio::io::DuplexStream,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.images.save(names, platforms, out))
    }

    fn load<'a>(&'a self, body: BoxReader, platforms: &'a [OciPlatform]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(self.images.load(body, platforms))
    }

    fn tag<'a>(&'a self, name: &'a str, repo: &'a str, tag: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.images.tag(name, repo, tag))
    }

    fn delete<'a>(
        &'a self,
        name: &'a str,
        force: bool,
        platforms: &'a [OciPlatform],
    ) -> BoxFuture<'a, Vec<DeleteResponseItem>> {
        Box::pin(async move {
            Ok(items(match platforms.is_empty() {
                true => self.images.delete(name, force).await?,
                false => self.images.delete_platforms(name, platforms, force).await?,
            }))
        })
    }

    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, (Vec<DeleteResponseItem>, u64)> {
        Box::pin(async move {
            let (out, space) = self.images.prune(filters).await?;
            Ok((items(out), space))
        })
    }

    fn distribution<'a>(&'a self, reference: &'a Reference, auth: AuthConfig) -> BoxFuture<'a, DistributionInspect> {
        Box::pin(self.images.distribution_inspect(reference, auth))
    }
}
