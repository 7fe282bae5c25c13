//! `docker pull`: manifest negotiation, parallel streamed layer downloads applied as they arrive,
//! each layer fetched once however many pulls want it, and the image made visible only when whole.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_api::image::ImageConfig;
use berth_api::progress;
use berth_distribution::manifest::{Descriptor, ImageManifest, Manifest, Platform};
use berth_distribution::{AuthConfig, Failure, FetchedManifest, Repository};
use berth_image::{chain_id as chain_id_of, BlobSource, ImageStore, LayerInfo};
use berth_types::{short_id, Digest, Error, ErrorKind, Reference, Result};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};

use super::{blocking, ImageService, Progress};

/// What `POST /images/create?fromImage=` asks for.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// With a tag or digest; with neither, every tag of the repository.
    pub reference: Reference,
    pub platform: Option<Platform>,
    pub auth: AuthConfig,
}

/// Image configs are small; anything bigger is not one.
const MAX_CONFIG: usize = 8 << 20;

/// Releases a pull's layer leases however the pull ends.
struct Leases {
    store: Arc<ImageStore>,
    held: Vec<Digest>,
}

impl Leases {
    fn hold(&mut self, chain: &Digest) {
        self.store.lease(chain);
        self.held.push(chain.clone());
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        for c in &self.held {
            self.store.release(c);
        }
    }
}

/// Docker's wording for a refusal, from the pull's point of view (a 404, as Docker answers it).
fn access_denied(r: &Reference, why: &str) -> Error {
    Error::not_found(format!(
        "pull access denied for {}, repository does not exist or may require 'docker login': {why}",
        r.familiar_repository()
    ))
}

/// A registry failure, worded for a pull.
fn pull_error(r: &Reference, f: Failure) -> Error {
    match f {
        Failure::Registry(e) if e.is_denied() => access_denied(r, &e.message),
        Failure::Registry(e) if e.status == reqwest::StatusCode::NOT_FOUND => {
            let what = match (r.tag(), r.digest()) {
                (_, Some(d)) => format!("{}@{d}", r.familiar_repository()),
                (Some(t), None) => format!("{}:{t}", r.familiar_repository()),
                _ => r.familiar_repository(),
            };
            Error::not_found(format!("manifest for {what} not found: {}", e.message))
        }
        other => other.into(),
    }
}

impl ImageService {
    /// Starts a pull. Errors found before the first byte of output (unknown image, bad
    /// credentials, registry down) are returned here so the API answers with their status;
    /// later ones arrive in-band on the returned stream.
    pub async fn pull(self: &Arc<Self>, opts: PullOptions) -> Result<mpsc::UnboundedReceiver<Vec<u8>>> {
        let r = opts.reference.clone();
        // Mirrors first (docker.io), then the registry; a mirror that fails or lacks the image is skipped.
        let groups = self.registries.endpoint_groups(r.domain(), true).await;
        let mut found = None;
        for (i, g) in groups.iter().enumerate() {
            match self.resolve_pull(g, &opts).await {
                Ok(x) => {
                    found = Some(x);
                    break;
                }
                Err(e) if i + 1 < groups.len() => tracing::info!(endpoint = %g[0].0, "pull of {r} falls back: {e}"),
                Err(e) => return Err(e),
            }
        }
        let (repo, refs, first) = found.ok_or_else(|| Error::internal("no registry endpoint"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let svc = self.clone();
        tokio::spawn(async move {
            let _timer = crate::metrics::image_action("pull");
            let p = Progress(tx);
            let mut first = Some(first);
            let mut newer = false;
            let mut result = Ok(());
            for one in &refs {
                match svc.pull_one(&repo, one, first.take(), opts.platform.as_ref(), &p).await {
                    Ok(n) => newer |= n,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            match result {
                Ok(()) => {
                    let name = if refs.len() == 1 { refs[0].familiar() } else { r.familiar_repository() };
                    let what = if newer { "Downloaded newer image for" } else { "Image is up to date for" };
                    p.send(progress::status(&format!("Status: {what} {name}")));
                }
                Err(e) => {
                    tracing::warn!(image = %r, "pull failed: {e}");
                    p.send(progress::error(&e.message));
                }
            }
        });
        Ok(rx)
    }

    /// Opens the repository at one endpoint group, lists what to pull and fetches the first manifest,
    /// so that "not found" is a 404 before any output.
    async fn resolve_pull(
        &self,
        group: &[(String, String, bool)],
        opts: &PullOptions,
    ) -> Result<(Arc<Repository>, Vec<Reference>, FetchedManifest)> {
        let r = &opts.reference;
        let denied = |e: Error| match e.kind {
            ErrorKind::Unauthorized | ErrorKind::Forbidden => access_denied(r, &e.message),
            _ => e,
        };
        let repo = Arc::new(self.registries.open(group, r.path(), opts.auth.clone(), "pull").await.map_err(denied)?);
        let refs: Vec<Reference> = if r.tag().is_some() || r.digest().is_some() {
            vec![r.clone()]
        } else {
            let mut tags = repo.tags().await.map_err(|e| match e.kind {
                ErrorKind::NotFound => access_denied(r, &e.message),
                _ => denied(e),
            })?;
            tags.sort();
            tags.into_iter().map(|t| r.clone().with_tag(&t)).collect::<Result<_>>()?
        };
        let first_ref = refs.first().cloned().ok_or_else(|| Error::not_found("repository has no tags"))?;
        let first = repo.get_manifest(&reference_arg(&first_ref)).await.map_err(|f| pull_error(&first_ref, f))?;
        Ok((repo, refs, first))
    }

    /// Pulls one tag or digest; true when something new was stored.
    async fn pull_one(
        self: &Arc<Self>,
        repo: &Arc<Repository>,
        r: &Reference,
        fetched: Option<FetchedManifest>,
        platform: Option<&Platform>,
        p: &Progress,
    ) -> Result<bool> {
        let tag_or_digest = r.digest().map(|d| d.to_string()).or(r.tag().map(String::from)).unwrap_or_default();
        let top = match fetched {
            Some(f) => f,
            None => repo.get_manifest(&reference_arg(r)).await.map_err(|f| pull_error(r, f))?,
        };
        p.send(progress::status_id(&format!("Pulling from {}", r.path()), &tag_or_digest));
        let want = platform.cloned().unwrap_or_else(Platform::host);
        // Of an index: the record kept beside the image, and the manifest pulled (digest, size).
        let mut from_index = None;
        let manifest = match Manifest::parse(&top.content_type, &top.bytes)? {
            Manifest::Image(m) => *m,
            Manifest::Index(i) => {
                let d = i.select(&want)?;
                let m = repo.get_manifest(d.digest.as_str()).await.map_err(|f| pull_error(r, f))?;
                let media_type = top.content_type.split(';').next().unwrap_or("").trim();
                let rec = super::platforms::index_record(&i, media_type, &top.digest, top.bytes.len() as u64);
                from_index = Some((rec, d.digest.to_string(), m.bytes.len() as u64));
                match Manifest::parse(&m.content_type, &m.bytes)? {
                    Manifest::Image(m) => *m,
                    Manifest::Index(_) => return Err(Error::invalid("an index may not point at another index")),
                }
            }
        };
        let config_bytes = repo.get_small_blob(&manifest.config.digest, MAX_CONFIG).await?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::invalid(format!("invalid image config {}: {e}", manifest.config.digest)))?;
        let diff_ids: Vec<Digest> = config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect::<Result<_>>()
            .map_err(|e| Error::invalid(format!("invalid diff id in image config: {e}")))?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::invalid(format!(
                "invalid image: manifest has {} layers, its config lists {} diff ids",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let id = Digest::of(&config_bytes);
        let mut refs = vec![r.digested(top.digest.clone())];
        if r.tag().is_some() {
            refs.push(r.clone());
        }
        let content_size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let record_index = |refs: Vec<Reference>| async {
            match from_index.clone() {
                Some((rec, m, size)) => self.record_pulled_index(refs, rec, m, id.clone(), size + content_size).await,
                None => Ok(()),
            }
        };
        if let Ok(existing) = self.resolve(id.as_str()).await {
            let (store, refs2) = (self.store.clone(), refs.clone());
            blocking(move || refs2.iter().try_for_each(|x| store.tag(existing.id.as_str(), x).map(|_| ()))).await?;
            record_index(refs).await?;
            p.send(progress::status(&format!("Digest: {}", top.digest)));
            return Ok(false);
        }
        let layers = self.fetch_layers(repo, r, &manifest, &diff_ids, p).await?;
        let store = self.store.clone();
        let (cb, refs2) = (config_bytes.clone(), refs.clone());
        let (registry, repository) = (r.domain().to_string(), r.path().to_string());
        let descs = manifest.layers.clone();
        let new_id = blocking(move || {
            for (l, d) in layers.0.iter().zip(&descs) {
                let src = BlobSource {
                    digest: d.digest.clone(),
                    size: d.size,
                    media_type: d.media_type.clone(),
                    registry: registry.clone(),
                    repository: repository.clone(),
                };
                store.record_blob(&l.diff_id, src)?;
            }
            let id = store.create_image(&cb, &layers.0, &refs2);
            drop(layers.1);
            id
        })
        .await?;
        record_index(refs).await?;
        p.send(progress::status(&format!("Digest: {}", top.digest)));
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), r.familiar());
        self.events.publish("image", "pull", &r.familiar(), attrs);
        tracing::info!(image = %r, id = %short_id(new_id.as_str()), "pulled");
        Ok(true)
    }

    /// Every layer of `m` in the store (downloaded, or already there), bottom first, leased.
    async fn fetch_layers(
        self: &Arc<Self>,
        repo: &Arc<Repository>,
        r: &Reference,
        m: &ImageManifest,
        diff_ids: &[Digest],
        p: &Progress,
    ) -> Result<(Vec<LayerInfo>, Leases)> {
        let mut leases = Leases { store: self.store.clone(), held: Vec::new() };
        let mut chains = Vec::new();
        let mut parent: Option<Digest> = None;
        for d in diff_ids {
            let c = chain_id_of(parent.as_ref(), d);
            chains.push(c.clone());
            parent = Some(c);
        }
        let (store, all) = (self.store.clone(), chains.clone());
        let present = blocking(move || all.iter().map(|c| store.has_layer(c)).collect::<Result<Vec<bool>>>()).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, desc) in m.layers.iter().enumerate() {
            let short = short_id(desc.digest.as_str()).to_string();
            leases.hold(&chains[i]);
            if present[i] {
                p.send(progress::layer("Already exists", &short));
                continue;
            }
            p.send(progress::layer("Pulling fs layer", &short));
            let (svc, repo, desc, p) = (self.clone(), repo.clone(), desc.clone(), p.clone());
            let (chain, parent, diff) =
                (chains[i].clone(), i.checked_sub(1).map(|j| chains[j].clone()), diff_ids[i].clone());
            tasks.spawn(async move { svc.fetch_layer(&repo, &desc, &diff, parent, &chain, &p).await });
        }
        while let Some(res) = tasks.join_next().await {
            let res = res.map_err(|e| Error::internal(format!("layer task: {e}")))?;
            if let Err(e) = res {
                tasks.abort_all();
                return Err(e.context(format!("failed to pull {}", r.familiar())));
            }
        }
        let store = self.store.clone();
        let chains2 = chains.clone();
        let infos = blocking(move || {
            chains2
                .iter()
                .map(|c| store.layer_info(c)?.ok_or_else(|| Error::internal(format!("layer {c} vanished"))))
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        Ok((infos, leases))
    }

    /// One layer into the store, downloaded by this pull or by a concurrent one that got there first.
    async fn fetch_layer(
        self: Arc<Self>,
        repo: &Arc<Repository>,
        desc: &Descriptor,
        diff_id: &Digest,
        parent: Option<Digest>,
        chain: &Digest,
        p: &Progress,
    ) -> Result<()> {
        let short = short_id(desc.digest.as_str()).to_string();
        loop {
            // Either lead the download of this chain, or follow the pull that leads it.
            let lead = {
                let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
                match inflight.get(chain) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(false);
                        inflight.insert(chain.clone(), rx);
                        Ok(tx)
                    }
                }
            };
            match lead {
                Ok(tx) => {
                    let res = self.download_layer(repo, desc, diff_id, parent.clone(), &short, p).await;
                    self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(chain);
                    let _ = tx.send(true);
                    res?;
                    p.send(progress::layer("Pull complete", &short));
                    return Ok(());
                }
                Err(mut rx) => {
                    p.send(progress::layer("Waiting", &short));
                    let _ = rx.wait_for(|done| *done).await;
                    let (store, c) = (self.store.clone(), chain.clone());
                    if blocking(move || store.has_layer(&c)).await? {
                        p.send(progress::layer("Download complete", &short));
                        p.send(progress::layer("Pull complete", &short));
                        return Ok(());
                    }
                    // The leader failed: try ourselves.
                }
            }
        }
    }

    /// Streams a blob through the digest check into the layer unpacker, then names the layer.
    async fn download_layer(
        &self,
        repo: &Arc<Repository>,
        desc: &Descriptor,
        diff_id: &Digest,
        parent: Option<Digest>,
        short: &str,
        p: &Progress,
    ) -> Result<()> {
        let _permit = match self.downloads.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                p.send(progress::layer("Waiting", short));
                self.downloads.acquire().await.map_err(|e| Error::internal(e.to_string()))?
            }
        };
        let mut blob = repo.open_blob(&desc.digest).await.map_err(|e| e.context(format!("layer {}", desc.digest)))?;
        let total = blob.total().unwrap_or(desc.size);
        let (btx, brx) = mpsc::channel::<std::io::Result<Bytes>>(64);
        let store = self.store.clone();
        let unpack =
            tokio::task::spawn_blocking(move || store.unpack_layer(ChannelReader { rx: brx, cur: Bytes::new() }));
        let mut hash = Sha256::new();
        let mut got = 0u64;
        let mut last = Instant::now() - Duration::from_secs(1);
        // Once the unpacker has stopped (say, on a corrupt deflate stream), the rest of the blob
        // is still read and hashed, not sent: a blob that does not match its digest is reported
        // as that — the cause — rather than as whatever its damage did to the decompressor.
        let mut unpacker_stopped = false;
        let fed: Result<()> = async {
            while let Some(chunk) = blob.next_chunk().await? {
                if p.gone() {
                    return Err(Error::internal("pull cancelled: the client closed the connection"));
                }
                hash.update(&chunk);
                got += chunk.len() as u64;
                if desc.size > 0 && got > desc.size {
                    return Err(Error::invalid(format!(
                        "layer {}: the registry sent more than the {} bytes its manifest gives",
                        desc.digest, desc.size
                    )));
                }
                crate::metrics::get().pull_bytes.inc_by(chunk.len() as u64);
                if last.elapsed() >= Duration::from_millis(100) {
                    last = Instant::now();
                    p.send(progress::bytes("Downloading", short, got, total));
                }
                if !unpacker_stopped && btx.send(Ok(chunk)).await.is_err() {
                    unpacker_stopped = true;
                }
            }
            p.send(progress::layer("Verifying Checksum", short));
            let actual = Digest::from_hasher(hash.clone());
            if actual != desc.digest {
                return Err(Error::invalid(format!(
                    "digest mismatch for layer {}: the registry sent content with digest {actual}",
                    desc.digest
                )));
            }
            Ok(())
        }
        .await;
        if let Err(e) = &fed {
            // The unpacker sees the failure as a read error and throws its folder away.
            let _ = btx.send(Err(std::io::Error::other(e.message.clone()))).await;
        }
        drop(btx);
        let unpacked = unpack.await.map_err(|e| Error::internal(format!("unpack task: {e}")))?;
        fed?;
        let u = unpacked.map_err(|e| e.context(format!("layer {}", desc.digest)))?;
        p.send(progress::layer("Download complete", short));
        if u.diff_id != *diff_id {
            return Err(Error::invalid(format!(
                "layer {} unpacks to {} but the image config says {diff_id}",
                desc.digest, u.diff_id
            )));
        }
        let store = self.store.clone();
        blocking(move || store.commit_layer(u, parent.as_ref()).map(|_| ())).await
    }
}

impl ImageService {
    /// `GET /distribution/{name}/json`: the descriptor a reference resolves to and its platforms.
    pub async fn distribution_inspect(
        &self,
        r: &Reference,
        auth: AuthConfig,
    ) -> Result<berth_api::image::DistributionInspect> {
        use berth_api::image::{Descriptor, DistributionInspect, OciPlatform};
        let repo = Arc::new(self.registries.repository(r.domain(), r.path(), auth, "pull").await?);
        let m = repo.get_manifest(&reference_arg(r)).await.map_err(|f| pull_error(r, f))?;
        let media_type = m.content_type.split(';').next().unwrap_or("").trim().to_string();
        let platforms = match Manifest::parse(&m.content_type, &m.bytes)? {
            Manifest::Index(i) => i.manifests.iter().filter_map(|d| d.platform.as_ref()).cloned().collect(),
            Manifest::Image(im) => {
                let cfg: ImageConfig =
                    serde_json::from_slice(&repo.get_small_blob(&im.config.digest, MAX_CONFIG).await?)
                        .map_err(|e| Error::invalid(format!("invalid image config: {e}")))?;
                vec![OciPlatform { architecture: cfg.architecture, os: cfg.os, variant: cfg.variant, os_version: None }]
            }
        };
        Ok(DistributionInspect {
            descriptor: Descriptor {
                media_type,
                digest: m.digest.to_string(),
                size: m.bytes.len() as u64,
                annotations: None,
                platform: None,
            },
            platforms,
        })
    }
}

/// `tag` or `sha256:...`, as the manifest URL wants it.
fn reference_arg(r: &Reference) -> String {
    r.digest().map(|d| d.to_string()).or(r.tag().map(String::from)).unwrap_or_else(|| "latest".into())
}

/// Bytes from the downloading task, read by the blocking unpacker.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}
