//! Images: content store, layers, references, import and container snapshots.

pub mod apply;
pub mod archive;
mod buildcache;
pub mod changes;
pub mod compress;
mod distmeta;
mod index;
mod ingest;
mod layout;
pub mod pgzip;
mod snapshot;
mod store;
#[cfg(test)]
mod testutil;
pub mod tree;

pub use archive::{LoadOptions, SaveSet};
pub use buildcache::{CacheEntry, CachePruneOptions, CacheRecord};
pub use compress::LayerCompression;
pub use distmeta::{BlobSource, KeptBlob};
pub use index::{IndexEntry, IndexRecord, PulledManifest};
pub use ingest::{CommitOptions, LayerInfo, Lease, Unpacked};
pub use layout::Layout;
pub use store::{chain_id, DeleteResponse, Image, ImageStore, ImportOptions, Snapshot, Usage};
