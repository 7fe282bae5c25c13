//! The only place that knows where image data lives under the data root:
//!
//! ```text
//! <data-root>/
//!   image/blobs/sha256/<hex>      config blobs, named by their digest
//!   image/layers/<chain-hex>/diff one unpacked layer, shared by all images that use it
//!   image/tmp/<random>/           ingests in progress; emptied at start-up
//!   snapshots/<key>/upper|work    a container's writable layer and overlay work dir
//!   snapshots/<key>/merged        where the daemon mounts the container's root
//!   snapshots/<key>/empty         the lower dir of an image without layers
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(data_root: &Path) -> Layout {
        Layout { root: data_root.to_path_buf() }
    }

    /// The data root (for the free space of its disk).
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blob(&self, hex: &str) -> PathBuf {
        self.root.join("image/blobs/sha256").join(hex)
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("image/blobs/sha256")
    }
    pub fn layers(&self) -> PathBuf {
        self.root.join("image/layers")
    }
    pub fn layer(&self, chain_hex: &str) -> PathBuf {
        self.layers().join(chain_hex)
    }
    pub fn layer_diff(&self, chain_hex: &str) -> PathBuf {
        self.layer(chain_hex).join("diff")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("image/tmp")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn snapshot(&self, key: &str) -> PathBuf {
        self.snapshots().join(key)
    }
}
