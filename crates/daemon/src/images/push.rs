//! `docker push`: layers the registry has are skipped or mounted from a sibling repository; the
//! others are compressed (gzip on every core, `berth_image::pgzip`, or zstd when daemon.json's
//! `push-compression` says so) while streaming up; the digest is remembered and the file kept.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_api::progress;
use berth_distribution::manifest::{
    Descriptor, ImageManifest, Index, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG,
    OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
};
use berth_distribution::{AuthConfig, Repository};
use berth_image::{BlobSource, Image, KeptBlob, LayerInfo};
use berth_types::{short_id, Digest, Error, Reference, Result};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::{blocking, ImageService, Progress};

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// With a tag, that tag; without, every local tag of the repository.
    pub reference: Reference,
    pub auth: AuthConfig,
    /// Of a multi-platform image, push this platform's image as a single-platform one (1.46).
    pub platform: Option<berth_distribution::manifest::Platform>,
}

/// A layer as the manifest lists it.
struct Pushed {
    digest: Digest,
    size: u64,
    media_type: String,
}

impl ImageService {
    /// Starts a push; errors before any output (no such local image, registry unreachable,
    /// credentials refused) are returned for the API to answer with their status.
    pub async fn push(self: &Arc<Self>, opts: PushOptions) -> Result<mpsc::UnboundedReceiver<Vec<u8>>> {
        let r = opts.reference.clone();
        let images: Vec<(Reference, Image)> = {
            let store = self.store.clone();
            let r = r.clone();
            blocking(move || {
                let all = store.list()?;
                let mut out: Vec<(Reference, Image)> = Vec::new();
                for img in all {
                    for t in &img.tags {
                        let same_repo = t.domain() == r.domain() && t.path() == r.path();
                        if same_repo && (r.tag().is_none() || t.tag() == r.tag()) {
                            out.push((t.clone(), img.clone()));
                        }
                    }
                }
                out.sort_by_key(|(t, _)| t.to_string());
                Ok(out)
            })
            .await?
        };
        if images.is_empty() {
            return Err(Error::not_found(format!(
                "An image does not exist locally with the tag: {}",
                r.name_only().familiar()
            )));
        }
        let mut images = images;
        if let Some(p) = &opts.platform {
            for (tag, img) in images.iter_mut() {
                *img = self.resolve_for(&tag.to_string(), Some(p)).await?;
            }
        }
        let all_platforms = opts.platform.is_none();
        let repo = Arc::new(self.registries.repository(r.domain(), r.path(), opts.auth.clone(), "pull,push").await?);
        let (tx, rx) = mpsc::unbounded_channel();
        let svc = self.clone();
        tokio::spawn(async move {
            let _timer = crate::metrics::image_action("push");
            let p = Progress(tx);
            p.send(progress::status(&format!("The push refers to repository [{}]", r.name_only().familiar())));
            for (tag, img) in &images {
                if let Err(e) = svc.push_one(&repo, tag, img, all_platforms, &p).await {
                    tracing::warn!(image = %tag, "push failed: {e}");
                    p.send(progress::error(&e.message));
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// Pushes one reference: its image, or every platform of a multi-platform image that is here
    /// and an index over them (as Docker's containerd store pushes an index), under the tag.
    async fn push_one(
        self: &Arc<Self>,
        repo: &Arc<Repository>,
        tag: &Reference,
        img: &Image,
        all_platforms: bool,
        p: &Progress,
    ) -> Result<()> {
        let t = tag.tag().unwrap_or(berth_types::DEFAULT_TAG);
        let platforms = if all_platforms { self.platforms_here(tag).await? } else { Vec::new() };
        let (digest, size) = if platforms.len() > 1 {
            self.push_index(repo, tag, &platforms, p).await?
        } else {
            let (digest, size, _) = self.push_image(repo, tag, img, Some(t), p).await?;
            (digest, size)
        };
        let (store, id, dref) = (self.store.clone(), img.id.clone(), tag.digested(digest.clone()));
        blocking(move || store.tag(id.as_str(), &dref).map(|_| ())).await?;
        p.send(progress::status(&format!("{t}: digest: {digest} size: {size}")));
        p.send(progress::aux(serde_json::json!({"Tag": t, "Digest": digest, "Size": size})));
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), tag.familiar());
        self.events.publish("image", "push", &tag.familiar(), attrs);
        Ok(())
    }

    /// The platforms of the multi-platform image `tag` names that are here, in the index's order.
    async fn platforms_here(&self, tag: &Reference) -> Result<Vec<(Image, berth_api::image::OciPlatform)>> {
        let (store, r) = (self.store.clone(), tag.clone());
        let Some(rec) = blocking(move || store.index_of(&r)).await? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for e in &rec.manifests {
            let (Some(id), Some(platform)) = (&e.image, &e.descriptor.platform) else { continue };
            if let Ok(img) = self.resolve(id.as_str()).await {
                out.push((img, platform.clone()));
            }
        }
        Ok(out)
    }

    /// Each platform's image by digest, then an index over them under the tag; its digest and size.
    async fn push_index(
        self: &Arc<Self>,
        repo: &Arc<Repository>,
        tag: &Reference,
        platforms: &[(Image, berth_api::image::OciPlatform)],
        p: &Progress,
    ) -> Result<(Digest, usize)> {
        let mut manifests = Vec::new();
        for (img, platform) in platforms {
            let (digest, size, media_type) = self.push_image(repo, tag, img, None, p).await?;
            manifests.push(Descriptor {
                media_type: media_type.into(),
                digest,
                size: size as u64,
                platform: Some(platform.clone()),
                urls: None,
                annotations: None,
            });
        }
        // An OCI-only registry took OCI manifests: the index is OCI's then too.
        let media_type = if manifests.iter().any(|m| m.media_type == OCI_MANIFEST) { OCI_INDEX } else { DOCKER_LIST };
        let index = Index { schema_version: 2, media_type: media_type.into(), manifests };
        let body = Bytes::from(serde_json::to_vec_pretty(&index).map_err(|e| Error::internal(e.to_string()))?);
        let digest = repo.put_manifest(tag.tag().unwrap_or(berth_types::DEFAULT_TAG), media_type, body.clone()).await?;
        Ok((digest, body.len()))
    }

    /// One image's layers, config and manifest, the manifest under `reference` (a tag) or by its
    /// digest; the manifest's digest, size and media type.
    async fn push_image(
        self: &Arc<Self>,
        repo: &Arc<Repository>,
        tag: &Reference,
        img: &Image,
        reference: Option<&str>,
        p: &Progress,
    ) -> Result<(Digest, usize, &'static str)> {
        let store = self.store.clone();
        let id = img.id.clone();
        let layers = blocking(move || store.layers_of(&id)).await?;
        for l in &layers {
            p.send(progress::layer("Preparing", short_id(l.diff_id.as_str())));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, l) in layers.iter().enumerate() {
            let (svc, repo, l, p, tag) = (self.clone(), repo.clone(), l.clone(), p.clone(), tag.clone());
            tasks.spawn(async move { svc.push_layer(&repo, &tag, &l, &p).await.map(|d| (i, d)) });
        }
        let mut pushed: Vec<Option<Pushed>> = (0..layers.len()).map(|_| None).collect();
        while let Some(res) = tasks.join_next().await {
            match res.map_err(|e| Error::internal(format!("layer task: {e}")))? {
                Ok((i, d)) => pushed[i] = Some(d),
                Err(e) => {
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
        // The config blob, exactly as stored: its digest is the image id.
        let config = Bytes::from(tokio::fs::read(self.store.layout().blob(img.id.hex())).await?);
        if repo.blob_size(&img.id).await?.is_none() {
            let loc = repo.start_upload().await?;
            repo.upload_whole(&loc, &img.id, config.clone()).await?;
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: DOCKER_MANIFEST.into(),
            config: Descriptor {
                media_type: DOCKER_CONFIG.into(),
                digest: img.id.clone(),
                size: config.len() as u64,
                platform: None,
                urls: None,
                annotations: None,
            },
            layers: pushed
                .into_iter()
                .flatten()
                .map(|l| Descriptor {
                    media_type: l.media_type,
                    digest: l.digest,
                    size: l.size,
                    platform: None,
                    urls: None,
                    annotations: None,
                })
                .collect(),
        };
        let encode = |m: &ImageManifest| {
            serde_json::to_vec_pretty(m).map(Bytes::from).map_err(|e| Error::internal(e.to_string()))
        };
        // By digest, the reference is the body's own digest.
        let at = |b: &Bytes| reference.map(String::from).unwrap_or_else(|| Digest::of(b).to_string());
        // zstd layers have no Docker media type: such a manifest is OCI's from the start.
        if manifest.layers.iter().any(|l| l.media_type.ends_with("+zstd")) {
            let body = encode(&to_oci(manifest))?;
            let digest = repo.put_manifest(&at(&body), OCI_MANIFEST, body.clone()).await?;
            return Ok((digest, body.len(), OCI_MANIFEST));
        }
        let mut body = encode(&manifest)?;
        let mut media_type = DOCKER_MANIFEST;
        let digest = match repo.put_manifest(&at(&body), DOCKER_MANIFEST, body.clone()).await {
            Ok(d) => d,
            // An OCI-only registry refuses Docker media types: say the same thing in OCI's.
            Err(e) if e.kind == berth_types::ErrorKind::InvalidArgument => {
                tracing::info!("registry refused a Docker manifest ({e}); pushing it as OCI");
                let oci = to_oci(manifest);
                body = encode(&oci)?;
                media_type = OCI_MANIFEST;
                repo.put_manifest(&at(&body), OCI_MANIFEST, body.clone()).await?
            }
            Err(e) => return Err(e),
        };
        Ok((digest, body.len(), media_type))
    }

    /// One layer into the registry: skipped, mounted, or compressed and uploaded.
    async fn push_layer(&self, repo: &Arc<Repository>, tag: &Reference, l: &LayerInfo, p: &Progress) -> Result<Pushed> {
        let short = short_id(l.diff_id.as_str()).to_string();
        let _permit = match self.uploads.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                p.send(progress::layer("Waiting", &short));
                self.uploads.acquire().await.map_err(|e| Error::internal(e.to_string()))?
            }
        };
        let (registry, repository) = (tag.domain().to_string(), tag.path().to_string());
        let record = |digest: &Digest, size: u64, media_type: &str| {
            let src = BlobSource {
                digest: digest.clone(),
                size,
                media_type: media_type.to_string(),
                registry: registry.clone(),
                repository: repository.clone(),
            };
            let (store, diff) = (self.store.clone(), l.diff_id.clone());
            blocking(move || store.record_blob(&diff, src))
        };
        let (store, diff) = (self.store.clone(), l.diff_id.clone());
        let known = blocking(move || store.blobs_of(&diff)).await?;
        // Known compressed forms, this registry first: a HEAD answers whether this repository has one.
        let mut here: Vec<&BlobSource> = known.iter().filter(|s| s.registry == registry).collect();
        here.sort_by_key(|s| s.repository != repository);
        let mut checked = std::collections::HashSet::new();
        for s in &here {
            if checked.insert(s.digest.clone()) {
                if let Some(size) = repo.blob_size(&s.digest).await? {
                    record(&s.digest, size, &s.media_type).await?;
                    p.send(progress::layer("Layer already exists", &short));
                    return Ok(Pushed { digest: s.digest.clone(), size, media_type: s.media_type.clone() });
                }
            }
        }
        let mut location = None;
        for s in here.iter().filter(|s| s.repository != repository) {
            match repo.mount_blob(&s.digest, &s.repository).await {
                Ok(None) => {
                    record(&s.digest, s.size, &s.media_type).await?;
                    p.send(progress::layer(
                        &format!("Mounted from {}", familiar_path(&registry, &s.repository)),
                        &short,
                    ));
                    return Ok(Pushed { digest: s.digest.clone(), size: s.size, media_type: s.media_type.clone() });
                }
                Ok(Some(loc)) => {
                    location = Some(loc);
                    break;
                }
                Err(e) => tracing::debug!("mount of {} from {} refused: {e}", s.digest, s.repository),
            }
        }
        let location = match location {
            Some(l) => l,
            None => repo.start_upload().await?,
        };
        let (digest, size) = self.upload_compressed(repo, &location, l, &short, p).await?;
        let media_type = self.push_compression.media_type();
        record(&digest, size, media_type).await?;
        p.send(progress::layer("Pushed", &short));
        Ok(Pushed { digest, size, media_type: media_type.into() })
    }

    /// Streams the layer compressed into a `PATCH`: the file an earlier push kept, or a new one made
    /// on every core (`push-compression`: pgzip or zstd) and kept once the registry has taken it.
    async fn upload_compressed(
        &self,
        repo: &Arc<Repository>,
        location: &str,
        l: &LayerInfo,
        short: &str,
        p: &Progress,
    ) -> Result<(Digest, u64)> {
        let GzipSource { path, total, cached, partial } = self.gzip_source(l).await?;
        let partial_path = partial.as_ref().map(|(path, _)| path.clone());
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let (ptx, mut prx) = tokio::sync::watch::channel(0u64);
        let (from_cache, compression) = (cached.is_some(), self.push_compression);
        let compress = tokio::task::spawn_blocking(move || -> Result<(Digest, u64)> {
            let src = std::fs::File::open(&path)?;
            let keep = partial.map(|(_, f)| f);
            let mut sink = ChannelWriter { tx, hash: Sha256::new(), size: 0, buf: Vec::with_capacity(CHUNK), keep };
            if from_cache {
                let mut src = berth_image::compress::Counting::new(src, |read| {
                    let _ = ptx.send(read);
                });
                std::io::copy(&mut src, &mut sink)?;
            } else {
                compression.compress(src, &mut sink, |read| {
                    let _ = ptx.send(read);
                })?;
            }
            sink.flush()?;
            Ok((Digest::from_hasher(sink.hash), sink.size))
        });
        let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx).map(|o| o.map(Ok::<Bytes, std::io::Error>))
        }));
        let progress = {
            let (p, short) = (p.clone(), short.to_string());
            tokio::spawn(async move {
                let mut last = Instant::now() - Duration::from_secs(1);
                while prx.changed().await.is_ok() {
                    if last.elapsed() >= Duration::from_millis(100) {
                        last = Instant::now();
                        let n = *prx.borrow();
                        p.send(progress::bytes("Pushing", &short, n, total));
                    }
                }
            })
        };
        let uploaded = repo.upload(location, body).await;
        let compressed = compress.await.map_err(|e| Error::internal(format!("compress task: {e}")));
        progress.abort();
        let result = async {
            let next = uploaded?;
            let (digest, size) = compressed??;
            if let Some(c) = &cached {
                if c.digest != digest {
                    return Err(Error::internal(format!(
                        "the kept compressed file of layer {} reads as {digest}, not {}: removed, push again",
                        l.diff_id, c.digest
                    )));
                }
            }
            repo.commit_upload(&next, &digest).await?;
            Ok((digest, size))
        }
        .await;
        self.settle_gzip(l, partial_path, cached, &result).await?;
        let (digest, size) = result?;
        crate::metrics::get().push_bytes.inc_by(size);
        Ok((digest, size))
    }
    /// Where a layer's compressed form comes from: the file an earlier push kept, or the layer's
    /// tar, then compressed into a new file beside the layer as it goes up.
    async fn gzip_source(&self, l: &LayerInfo) -> Result<GzipSource> {
        let (store, chain) = (self.store.clone(), l.chain_id.clone());
        let ext = self.push_compression.file_ext();
        let cached = blocking(move || Ok(store.kept_blob(&chain, ext))).await?;
        if let Some(c) = cached {
            return Ok(GzipSource { path: c.path.clone(), total: c.size, cached: Some(c), partial: None });
        }
        let path = self.store.layer_tar(&l.chain_id);
        let total = tokio::fs::metadata(&path).await?.len();
        // The cache is a convenience: without a file for it, the push goes on.
        let (store, chain) = (self.store.clone(), l.chain_id.clone());
        let partial = match blocking(move || store.keep_file(&chain)).await {
            Ok(pf) => Some(pf),
            Err(e) => {
                tracing::debug!("no gzip cache for layer {}: {e}", l.chain_id);
                None
            }
        };
        Ok(GzipSource { path, total, cached: None, partial })
    }

    /// After an upload: a new file is kept only once the registry took it; a kept one that failed
    /// to go up is dropped (if it was damaged, the next push makes a new one instead of failing
    /// the same way).
    async fn settle_gzip(
        &self,
        l: &LayerInfo,
        partial: Option<PathBuf>,
        cached: Option<KeptBlob>,
        result: &Result<(Digest, u64)>,
    ) -> Result<()> {
        let (store, chain, done) = (self.store.clone(), l.chain_id.clone(), result.as_ref().ok().cloned());
        let ext = self.push_compression.file_ext();
        let stale = if result.is_err() { cached.map(|c| c.path) } else { None };
        blocking(move || {
            if let Some(partial) = partial {
                let kept = match &done {
                    Some((digest, _)) => store.keep_blob(&chain, &partial, ext, digest),
                    None => Ok(()),
                };
                if done.is_none() || kept.is_err() {
                    let _ = std::fs::remove_file(&partial);
                }
            }
            if let Some(stale) = stale {
                let _ = std::fs::remove_file(stale);
            }
            Ok(())
        })
        .await
    }
}

/// The file a push reads a layer's compressed form from, or the tar it compresses and the file it
/// keeps the result in; `total` is the source's size for the progress bar.
struct GzipSource {
    path: PathBuf,
    total: u64,
    cached: Option<KeptBlob>,
    partial: Option<(PathBuf, std::fs::File)>,
}

const CHUNK: usize = 256 * 1024;

/// The same manifest with OCI media types (gzip layers stay gzip, plain stay plain).
fn to_oci(mut m: ImageManifest) -> ImageManifest {
    m.media_type = OCI_MANIFEST.into();
    m.config.media_type = OCI_CONFIG.into();
    for l in &mut m.layers {
        l.media_type = match l.media_type.as_str() {
            DOCKER_LAYER_GZIP => OCI_LAYER_GZIP.into(),
            "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar".into(),
            other => other.to_string(),
        };
    }
    m
}

/// `docker.io` repositories are shown without their domain and `library/`.
fn familiar_path(registry: &str, repository: &str) -> String {
    if registry == berth_types::DEFAULT_DOMAIN {
        repository.strip_prefix("library/").unwrap_or(repository).to_string()
    } else {
        repository.to_string()
    }
}

/// Hashes, counts and forwards compressed bytes in 256 KiB pieces to the upload body, and writes
/// them to `keep` too when a push keeps its gzip.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    hash: Sha256,
    size: u64,
    buf: Vec<u8>,
    keep: Option<std::fs::File>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hash.update(data);
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some(f) = &mut self.keep {
            f.write_all(&self.buf)?;
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(chunk).map_err(|_| std::io::Error::other("upload stopped"))
    }
}
