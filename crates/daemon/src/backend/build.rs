//! What `POST /build` and `POST /build/prune` need: the classic builder over the daemon.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use berth_api::progress::JsonMessage;

use super::{BoxFuture, BoxReader};
use crate::build::{BuildOptions, CachePruneOptions};

pub trait BuildBackend: Send + Sync {
    /// Unpacks the context and parses the Dockerfile (their errors come back here, before any
    /// output), then runs the build: its JSON messages, the last one saying how it ended.
    fn build(&self, context: BoxReader, opts: BuildOptions) -> BoxFuture<'_, UnboundedReceiver<JsonMessage>>;
    /// The build cache ids removed and the bytes freed.
    fn prune(&self, opts: CachePruneOptions) -> BoxFuture<'_, (Vec<String>, u64)>;
}

impl BuildBackend for Arc<crate::BuildService> {
    fn build(&self, context: BoxReader, opts: BuildOptions) -> BoxFuture<'_, UnboundedReceiver<JsonMessage>> {
        Box::pin(async move {
            let prepared = self.prepare(context, opts).await?;
            Ok(self.run(prepared))
        })
    }

    fn prune(&self, opts: CachePruneOptions) -> BoxFuture<'_, (Vec<String>, u64)> {
        Box::pin(crate::BuildService::prune(self, opts))
    }
}
