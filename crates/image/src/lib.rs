//! Images: content store, layers, references, import and container snapshots.

pub mod apply;
pub mod archive;
pub mod changes;
pub mod compress;
mod ingest;
mod layout;
mod snapshot;
mod store;
#[cfg(test)]
mod testutil;
pub mod tree;

pub use ingest::{CommitOptions, LayerInfo};
pub use layout::Layout;
pub use store::{DeleteResponse, Image, ImageStore, ImportOptions, Snapshot, Usage};
