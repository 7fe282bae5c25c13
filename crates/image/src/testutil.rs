//! Helpers for this crate's unit tests.

use std::sync::Arc;

use crate::ImageStore;

/// A tar of regular files.
pub fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, d) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(p).unwrap();
        h.set_size(d.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append(&h, *d).unwrap();
    }
    b.into_inner().unwrap()
}

/// An image store on a fresh temp data root.
pub fn store() -> (tempfile::TempDir, ImageStore) {
    let d = tempfile::tempdir().unwrap();
    let st = berth_store::Store::open(&d.path().join("db")).unwrap();
    let s = ImageStore::open(Arc::new(st), d.path()).unwrap();
    (d, s)
}

/// Deterministic noise (xorshift; `seed` picks the stream), incompressible, so failures reproduce.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
