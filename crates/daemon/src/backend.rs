//! The narrow contracts the API routes are written against: each route module of the server
//! depends on one of these traits, the daemon's services implement them, and route tests run
//! in-process against fakes. Everything crossing them is a wire type of `berth_api`.

use std::future::Future;
use std::pin::Pin;

use berth_api::filters::Filters;
use berth_types::Result;

/// A boxed, sendable future: the traits stay object safe, so routes hold `Arc<dyn …>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What `/volumes` needs.
pub trait VolumeBackend: Send + Sync {
    /// Creates the volume, or returns the one of that name (Docker's create is idempotent).
    fn create(&self, req: berth_api::volume::CreateRequest) -> BoxFuture<'_, berth_api::volume::Volume>;
    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, berth_api::volume::Volume>;
    fn list<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<berth_api::volume::Volume>>;
    /// `force` makes an unknown volume a success.
    fn remove<'a>(&'a self, name: &'a str, force: bool) -> BoxFuture<'a, ()>;
    /// Names removed and bytes freed.
    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, (Vec<String>, u64)>;
}

impl VolumeBackend for crate::VolumeService {
    fn create(&self, req: berth_api::volume::CreateRequest) -> BoxFuture<'_, berth_api::volume::Volume> {
        Box::pin(async move {
            let name = Some(req.name).filter(|n| !n.is_empty());
            let v = crate::VolumeService::create(self, name, req.driver, req.driver_opts, req.labels).await?;
            Ok(crate::volumes::volume_view(&v, None))
        })
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, berth_api::volume::Volume> {
        Box::pin(
            async move { Ok(crate::volumes::volume_view(&crate::VolumeService::inspect(self, name).await?, None)) },
        )
    }

    fn list<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<berth_api::volume::Volume>> {
        Box::pin(async move {
            let vols = crate::VolumeService::list(self, filters).await?;
            Ok(vols.iter().map(|v| crate::volumes::volume_view(v, None)).collect())
        })
    }

    fn remove<'a>(&'a self, name: &'a str, force: bool) -> BoxFuture<'a, ()> {
        Box::pin(crate::VolumeService::remove(self, name, force))
    }

    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, (Vec<String>, u64)> {
        Box::pin(crate::VolumeService::prune(self, filters))
    }
}
