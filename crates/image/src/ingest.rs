//! Writing images: layers (unpacked once per chain id, with their exact tar kept for save and
//! push), import, images from a config and layers (load), and commit.
//!
//! A layer is unpacked into `tmp/<random>/diff` while its uncompressed stream is hashed (the diff id)
//! and copied to `tmp/<random>/layer.tar` (decompression on a second thread); then the folder is renamed to `layers/<chain>`. Only after
//! every layer and the config blob are in place does one store transaction make the image visible.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_api::container::Config;
use berth_api::image::{History, ImageConfig, RootFs};
use berth_sys::root::Root;
use berth_types::{Digest, Error, Reference, Result};
use sha2::{Digest as _, Sha256};

use crate::store::{
    chain_id, docker_arch, write_atomic, ImageRecord, ImageStore, ImportOptions, LayerRecord, IMAGES, LAYERS, TAGS,
};

/// Uncompressed bytes per message between the two threads of an unpack, and messages in flight.
const PIPE_CHUNK: usize = 256 * 1024;
const PIPE_DEPTH: usize = 8;

/// The decompressing half of an unpack: decompresses `body` and passes the result on in chunks,
/// reusing the buffers `free` gives back. Returns false when the applying side hung up first. A
/// failure is also sent down the pipe, so the applying side stops with it.
fn produce(
    body: impl Read,
    tx: std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<bool> {
    let fail = |e: std::io::Error| {
        let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
        Error::from(e)
    };
    let mut plain = crate::compress::decompress(body)?;
    loop {
        let mut buf = free.try_recv().unwrap_or_else(|_| Vec::with_capacity(PIPE_CHUNK));
        buf.clear();
        (&mut plain).take(PIPE_CHUNK as u64).read_to_end(&mut buf).map_err(fail)?;
        if buf.is_empty() {
            return Ok(true);
        }
        if tx.send(Ok(buf)).is_err() {
            return Ok(false);
        }
    }
}

/// The applying half's view of the pipe: a reader over the chunks that hashes each (the diff id)
/// and copies it to the layer's tar (when there is a copy to make) as it arrives, then hands its
/// buffer back.
struct Chunks {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    free: std::sync::mpsc::SyncSender<Vec<u8>>,
    hash: Sha256,
    copy: Option<berth_sys::writeback::WritebackFile>,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    let chunk = chunk?;
                    self.hash.update(&chunk);
                    if let Some(copy) = &mut self.copy {
                        copy.write_all(&chunk)?;
                    }
                    let done = std::mem::replace(&mut self.cur, chunk);
                    let _ = self.free.try_send(done);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A layer unpacked but not yet named by its chain id. Dropping it removes the folder.
#[derive(Debug)]
pub struct Unpacked {
    tmp: PathBuf,
    pub diff_id: Digest,
    /// Bytes of the unpacked files.
    pub size: u64,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = crate::store::remove_tree(&self.tmp);
        }
    }
}

/// A layer now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub size: u64,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl ImageStore {
    /// The uncompressed tar of a layer, byte for byte as it was ingested.
    pub fn layer_tar(&self, chain: &Digest) -> PathBuf {
        self.layout.layer(chain.hex()).join("layer.tar")
    }

    /// Unpacks one layer (plain, gzip or zstd) on top of `parent`. Idempotent per chain id.
    pub fn ingest_layer(&self, body: impl Read + Send, parent: Option<&Digest>) -> Result<LayerInfo> {
        let u = self.unpack(body, None)?;
        self.commit_layer(u, parent)
    }

    /// Ingests a layer that is a file of ours (a blob of an archive being loaded). An uncompressed
    /// tar is read once and then hard-linked into place as the layer's stored tar, not copied.
    pub fn ingest_layer_file(&self, file: &std::path::Path, parent: Option<&Digest>) -> Result<LayerInfo> {
        let u = self.unpack_file(file)?;
        self.commit_layer(u, parent)
    }

    /// `ingest_layer_file` for a build step's changes: leased as `ingest_layer_leased` is.
    pub fn ingest_layer_file_leased(
        &self,
        file: &std::path::Path,
        parent: Option<&Digest>,
    ) -> Result<(LayerInfo, Lease<'_>)> {
        let u = self.unpack_file(file)?;
        let info = self.commit_layer_inner(u, parent, true)?;
        let lease = Lease { store: self, chain: info.chain_id.clone() };
        Ok((info, lease))
    }

    fn unpack_file(&self, file: &std::path::Path) -> Result<Unpacked> {
        let mut f = std::fs::File::open(file)?;
        let mut magic = [0u8; 4];
        let n = std::io::Read::read(&mut f, &mut magic)?;
        let compressed = n >= 2 && magic[..2] == [0x1f, 0x8b] || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd];
        if compressed {
            return self.unpack(std::fs::File::open(file)?, None);
        }
        self.unpack(std::fs::File::open(file)?, Some(file))
    }

    /// The first half of an ingest: unpacks a layer (plain, gzip or zstd) into a private folder and
    /// hashes it. Layers of one image can be unpacked in parallel; `commit_layer` then chains them.
    pub fn unpack_layer(&self, body: impl Read + Send) -> Result<Unpacked> {
        self.unpack(body, None)
    }

    /// Two threads: a second one decompresses while this one hashes (the diff id), keeps the copy
    /// and applies — inflate is the largest part of a pull's CPU, and one thread per layer left
    /// the last layer of a pull on one core.
    fn unpack(&self, body: impl Read + Send, plain_file: Option<&std::path::Path>) -> Result<Unpacked> {
        let tmp = self.layout.tmp().join(berth_types::new_id());
        let diff = tmp.join("diff");
        std::fs::create_dir_all(&diff)?;
        // From here on, dropping `u` removes the folder: every error path below cleans up.
        let mut u = Unpacked { tmp, diff_id: Digest::of(b""), size: 0 };
        // A plain file of ours is linked as the layer's tar afterwards; anything else is copied.
        let copy = match plain_file {
            Some(_) => None,
            // Its disk writes start as it is written: the sync before the commit waits for the tail.
            None => Some(berth_sys::writeback::WritebackFile::new(
                std::fs::OpenOptions::new().write(true).create_new(true).open(u.tmp.join("layer.tar"))?,
            )),
        };
        let root = Root::open(&diff)?;
        let (applied, produced) = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(PIPE_DEPTH);
            let (free_tx, free_rx) = std::sync::mpsc::sync_channel(PIPE_DEPTH + 2);
            let producer = s.spawn(move || produce(body, tx, free_rx));
            let mut stream = Chunks { rx, cur: Vec::new(), pos: 0, free: free_tx, hash: Sha256::new(), copy };
            let applied = crate::apply::apply(&mut stream, &root).and_then(|a| {
                // The diff id covers the whole uncompressed stream, trailing zero blocks included.
                std::io::copy(&mut stream, &mut std::io::sink())
                    .map_err(|e| Error::invalid(format!("invalid tar: {e}")))?;
                Ok((a, Digest::from_hasher(stream.hash.clone()), stream.copy.take()))
            });
            // Hanging up stops the producer when the apply failed part way.
            drop(stream);
            let produced = producer.join().map_err(|_| Error::internal("layer decompression thread panicked"));
            (applied, produced)
        });
        // The producer's own error (a corrupt stream) is the cause of the apply's; it stops
        // without one only when the apply stopped first, with its own.
        let (applied, diff_id, f) = match (produced??, applied) {
            (true, Ok(done)) => done,
            (_, Err(e)) => return Err(e),
            (false, Ok(_)) => return Err(Error::internal("layer unpack ended before its stream")),
        };
        match (plain_file, f) {
            (Some(src), _) => {
                // A hard link: the blob may serve another image of the same archive too.
                std::fs::hard_link(src, u.tmp.join("layer.tar"))?;
                std::fs::File::open(u.tmp.join("layer.tar"))?.sync_all()?;
            }
            (None, Some(f)) => drop(f.sync_all()?),
            (None, None) => return Err(Error::internal("layer copy missing")),
        }
        u.diff_id = diff_id;
        u.size = applied.size;
        Ok(u)
    }

    /// The second half: names an unpacked layer by its chain id on top of `parent`. When that layer
    /// exists already, the unpacked copy is dropped. Serialised with `gc`, which would otherwise
    /// see a fresh folder without its record.
    pub fn commit_layer(&self, u: Unpacked, parent: Option<&Digest>) -> Result<LayerInfo> {
        self.commit_layer_inner(u, parent, false)
    }

    /// Unpacks and names a layer that keeps a lease until the returned guard drops: a concurrent
    /// gc (another build step, a container removal) cannot take it before an image references it.
    pub fn ingest_layer_leased(
        &self,
        body: impl Read + Send,
        parent: Option<&Digest>,
    ) -> Result<(LayerInfo, Lease<'_>)> {
        let u = self.unpack(body, None)?;
        let info = self.commit_layer_inner(u, parent, true)?;
        let lease = Lease { store: self, chain: info.chain_id.clone() };
        Ok((info, lease))
    }

    fn commit_layer_inner(&self, u: Unpacked, parent: Option<&Digest>, lease: bool) -> Result<LayerInfo> {
        let _gc = self.gc_lock.lock().unwrap_or_else(|e| e.into_inner());
        if lease {
            // Under the gc lock: no gc runs between naming the layer and leasing it.
            self.lease(&chain_id(parent, &u.diff_id));
        }
        let chain = chain_id(parent, &u.diff_id);
        let dest = self.layout.layer(chain.hex());
        if !(self.store.get::<LayerRecord>(LAYERS, chain.as_str())?.is_some() && dest.exists()) {
            crate::store::remove_tree(&dest)?;
            std::fs::rename(&u.tmp, &dest)?;
            let rec = LayerRecord { diff_id: u.diff_id.clone(), parent: parent.cloned(), size: u.size };
            self.store.put(LAYERS, chain.as_str(), &rec)?;
        }
        Ok(LayerInfo { diff_id: u.diff_id.clone(), chain_id: chain, size: u.size })
    }

    /// Makes an image visible: config blob written, then record and tags in one transaction. The
    /// config's diff ids must be exactly those of `layers`.
    pub fn create_image(&self, config_bytes: &[u8], layers: &[LayerInfo], tags: &[Reference]) -> Result<Digest> {
        self.create_child(config_bytes, layers, tags, None, None)
    }

    /// [`create_image`](Self::create_image) for a build step, recording the image it was made from
    /// and, in the same transaction, the build that made it (so that a build a crash cuts off
    /// leaves no image recovery cannot find: see [`collect_interrupted_builds`](Self::collect_interrupted_builds)).
    pub fn create_child(
        &self,
        config_bytes: &[u8],
        layers: &[LayerInfo],
        tags: &[Reference],
        parent: Option<&Digest>,
        build: Option<&str>,
    ) -> Result<Digest> {
        let config: ImageConfig =
            serde_json::from_slice(config_bytes).map_err(|e| Error::invalid(format!("invalid image config: {e}")))?;
        let want: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        if config.rootfs.diff_ids != want {
            return Err(Error::invalid(format!(
                "layers do not match the image config: config lists {:?}, archive has {want:?}",
                config.rootfs.diff_ids
            )));
        }
        let id = Digest::of(config_bytes);
        write_atomic(&self.layout.blob(id.hex()), config_bytes)?;
        let record = ImageRecord {
            id: id.clone(),
            chain: layers.iter().map(|l| l.chain_id.clone()).collect(),
            size: layers.iter().map(|l| l.size).sum(),
            parent: parent.cloned(),
        };
        self.store.write(|tx| {
            tx.put(IMAGES, id.as_str(), &record)?;
            for r in tags {
                tx.put(TAGS, &r.to_string(), &id)?;
            }
            if let Some(b) = build {
                crate::buildcache::record_build_image(tx, b, &id)?;
            }
            Ok(())
        })?;
        Ok(id)
    }

    /// Imports a rootfs tar (plain, gzip or zstd) as a one-layer image.
    pub fn import(&self, body: impl Read + Send, opts: ImportOptions) -> Result<Digest> {
        let mut config = Config::default();
        crate::changes::apply(&mut config, &opts.changes)?;
        let (layer, _lease) = self.ingest_layer_leased(body, None)?;
        let now = opts.created.clone().unwrap_or_else(now);
        let comment = if opts.message.is_empty() { "Imported from -".to_string() } else { opts.message };
        let image = ImageConfig {
            architecture: docker_arch().into(),
            os: "linux".into(),
            created: Some(now.clone()),
            comment: Some(comment.clone()),
            docker_version: Some(berth_api::ENGINE_VERSION.into()),
            config,
            rootfs: RootFs { kind: "layers".into(), diff_ids: vec![layer.diff_id.to_string()] },
            history: vec![History { created: Some(now), comment: Some(comment), ..Default::default() }],
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&image).map_err(|e| Error::internal(e.to_string()))?;
        let refs: Vec<Reference> = opts.reference.into_iter().collect();
        let res = self.create_image(&bytes, &[layer], &refs);
        if res.is_err() {
            let _ = self.gc();
        }
        res
    }

    /// The layers of an image, bottom first.
    pub fn layers_of(&self, image: &Digest) -> Result<Vec<LayerInfo>> {
        let rec = self
            .store
            .get::<ImageRecord>(IMAGES, image.as_str())?
            .ok_or_else(|| Error::not_found(format!("No such image: {image}")))?;
        rec.chain
            .iter()
            .map(|c| {
                let l = self
                    .store
                    .get::<LayerRecord>(LAYERS, c.as_str())?
                    .ok_or_else(|| Error::internal(format!("image {image} lacks layer {c}")))?;
                Ok(LayerInfo { diff_id: l.diff_id, chain_id: c.clone(), size: l.size })
            })
            .collect()
    }

    /// `docker commit`: the container's changes (`diff_tar`, a layer tar from its upper dir) on top
    /// of its image, with the container's config as the new image config.
    pub fn commit(&self, base: &Digest, diff_tar: &Path, opts: CommitOptions) -> Result<Digest> {
        let base_img = self.resolve(base.as_str())?;
        let mut layers = self.layers_of(base)?;
        let parent = layers.last().map(|l| l.chain_id.clone());
        let (layer, _lease) = self.ingest_layer_leased(std::fs::File::open(diff_tar)?, parent.as_ref())?;
        let mut config = base_img.config.clone();
        let mut c = opts.config;
        crate::changes::apply(&mut c, &opts.changes)?;
        config.config = c;
        let now = now();
        config.created = Some(now.clone());
        config.author = (!opts.author.is_empty()).then(|| opts.author.clone());
        config.comment = (!opts.comment.is_empty()).then(|| opts.comment.clone());
        config.docker_version = Some(berth_api::ENGINE_VERSION.into());
        config.rootfs.diff_ids.push(layer.diff_id.to_string());
        let (container, container_config) = opts.container.map(|(id, c)| (Some(id), Some(c))).unwrap_or_default();
        config.container = container;
        config.container_config = container_config;
        config.history.push(History {
            created: Some(now),
            created_by: Some(opts.created_by),
            author: config.author.clone(),
            comment: config.comment.clone(),
            empty_layer: false,
        });
        layers.push(layer);
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::internal(e.to_string()))?;
        let refs: Vec<Reference> = opts.reference.into_iter().collect();
        // As Docker: a committed image's parent is the image its container ran.
        let res = self.create_child(&bytes, &layers, &refs, Some(&base_img.id), None);
        if res.is_err() {
            let _ = self.gc();
        }
        res
    }
}

/// Keeps a freshly ingested layer from gc until an image references it (see `ingest_layer_leased`).
pub struct Lease<'a> {
    store: &'a ImageStore,
    chain: Digest,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.store.release(&self.chain);
    }
}

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub reference: Option<Reference>,
    pub config: Config,
    pub changes: Vec<String>,
    pub author: String,
    pub comment: String,
    pub created_by: String,
    /// The committed container's id and config, recorded in the image as Docker does.
    pub container: Option<(String, Config)>,
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::testutil::{store, tar_with};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::pgzip::compress(data, &mut out, crate::pgzip::GzipOptions::default(), |_| {}).unwrap();
        out
    }

    /// Noise that does not compress, so a few MB stay a few MB through the pipe.
    fn noise(n: usize) -> Vec<u8> {
        crate::testutil::noise(n, 0x9e37_79b9_7f4a_7c15)
    }

    /// Runs `f` on a thread and fails the test if it takes longer than a minute: a stage of the
    /// unpack pipe left waiting on the other would otherwise hang the test run.
    fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(60)).expect("the unpack hung")
    }

    #[test]
    fn a_stream_many_chunks_long_is_hashed_kept_and_applied_whole() {
        let big = noise(3 * PIPE_CHUNK * PIPE_DEPTH / 2 + 17);
        let tar = tar_with(&[("a", b"first"), ("big", &big), ("z", b"last")]);
        for body in [tar.clone(), gzip(&tar)] {
            let (_d, s) = store();
            let u = s.unpack_layer(&body[..]).unwrap();
            assert_eq!(u.diff_id, Digest::of(&tar));
            assert!(std::fs::read(u.tmp.join("layer.tar")).unwrap() == tar);
            assert!(std::fs::read(u.tmp.join("diff/big")).unwrap() == big);
            assert_eq!(std::fs::read(u.tmp.join("diff/z")).unwrap(), b"last");
        }
    }

    #[test]
    fn a_stream_broken_mid_way_fails_and_leaves_nothing() {
        let tar = tar_with(&[("big", &noise(4 * PIPE_CHUNK * PIPE_DEPTH))]);
        let gz = gzip(&tar);
        let (d, s) = bounded(move || {
            let (d, s) = store();
            let e = s.unpack_layer(&gz[..gz.len() / 2]).unwrap_err();
            assert!(e.message.contains("incomplete deflate stream"), "{e}");
            (d, s)
        });
        assert_eq!(std::fs::read_dir(s.layout.tmp()).unwrap().count(), 0);
        drop(d);
    }

    #[test]
    fn an_apply_error_stops_the_decompressing_thread() {
        // The first entry cannot be applied; megabytes follow that the decompressor must not wait
        // to hand over.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_path("h").unwrap();
        h.set_link_name("../../../etc/passwd").unwrap();
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        let mut tar = b.into_inner().unwrap();
        tar.extend(tar_with(&[("big", &noise(4 * PIPE_CHUNK * PIPE_DEPTH))]));
        let gz = gzip(&tar);
        let (_d, s) = store();
        let s = std::sync::Arc::new(s);
        let s2 = s.clone();
        let e = bounded(move || s2.unpack_layer(&gz[..]).unwrap_err());
        assert_eq!(e.kind, berth_types::ErrorKind::InvalidArgument, "the apply's own error: {e}");
        assert_eq!(std::fs::read_dir(s.layout.tmp()).unwrap().count(), 0);
    }
}
