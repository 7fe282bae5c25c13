//! Images: content store, layers, references, import and container snapshots.

pub mod apply;
pub mod changes;
pub mod compress;
mod layout;
mod store;

pub use layout::Layout;
pub use store::{DeleteResponse, Image, ImageStore, ImportOptions, Snapshot, Usage};
