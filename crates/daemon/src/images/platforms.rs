//! Multi-platform images in the daemon: the index a pull records, resolving a reference for one
//! platform through it, the `Manifests` and `Descriptor` that list and inspect show, removing one
//! platform, and whether this host can run a platform at all.

use berth_api::image::{
    Descriptor, Identity, ImageConfig, ImageManifestSummary, ManifestAttestationData, ManifestImageData, ManifestSize,
    PullIdentity, UnpackedSize,
};
use berth_distribution::manifest::{self, Platform};
use berth_image::{DeleteResponse, Image, IndexEntry, IndexRecord, PulledManifest, Usage};
use berth_types::{Digest, Error, Reference, Result};

use super::{blocking, ImageService};

/// Where BuildKit's attestation manifests say what they are about.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// An image config's platform (Docker's configs leave `os` empty at times: Linux).
pub fn platform_of(cfg: &ImageConfig) -> Platform {
    let os = if cfg.os.is_empty() { "linux" } else { cfg.os.as_str() };
    Platform { architecture: cfg.architecture.clone(), os: os.into(), variant: cfg.variant.clone(), os_version: None }
}

/// The record a pull keeps of an index it pulled one manifest of.
pub(crate) fn index_record(index: &manifest::Index, media_type: &str, digest: &Digest, size: u64) -> IndexRecord {
    let manifests = index.manifests.iter().map(|d| Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: d.size,
        annotations: d.annotations.clone(),
        platform: d.platform.clone(),
    });
    IndexRecord::new(media_type, digest, size, manifests)
}

fn is_attestation(d: &Descriptor) -> bool {
    d.annotations.as_ref().and_then(|a| a.get(REFERENCE_TYPE)).is_some_and(|t| t == "attestation-manifest")
}

/// The entry of `rec` for `want`: an image manifest of that platform, exact variant first.
fn entry_for<'a>(rec: &'a IndexRecord, want: &Platform) -> Option<&'a IndexEntry> {
    let images = rec.manifests.iter().filter(|e| !is_attestation(&e.descriptor));
    want.best(images, |e| e.descriptor.platform.as_ref())
}

/// An image's trusted origin: the repositories it was pulled from or pushed to (its repo digests
/// are written only by a pull or a push, never by a tag).
pub fn identity(img: &Image) -> Option<Identity> {
    let mut pull: Vec<PullIdentity> = Vec::new();
    for r in &img.repo_digests {
        let repository = r.repository();
        if !pull.iter().any(|p| p.repository == repository) {
            pull.push(PullIdentity { repository });
        }
    }
    (!pull.is_empty()).then_some(Identity { pull })
}

/// Whether this host runs binaries of `p`: its own architecture, or one the kernel hands to an
/// emulator (a `binfmt_misc` handler such as qemu-user's, registered under the arch's name).
pub fn check_runnable(name: &str, p: &Platform) -> Result<()> {
    let host = Platform::host();
    if p.os != host.os {
        return Err(Error::invalid(format!("image {name} is for {p}: this host runs {} containers only", host.os)));
    }
    if p.architecture.is_empty() || p.architecture == host.architecture {
        return Ok(());
    }
    let qemu = match p.architecture.as_str() {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        other => other,
    };
    let handler = std::path::Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{qemu}"));
    if handler.exists() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "image {name} is for {p}, which this host ({host}) cannot run: no binfmt_misc emulator is registered for {}",
        p.architecture
    )))
}

impl ImageService {
    /// After a pull of one manifest of an index: records the index under `refs`, and points them
    /// at this host's platform when that one is here (as Docker picks the default platform of a
    /// multi-platform image), else at the image just pulled.
    pub(crate) async fn record_pulled_index(
        &self,
        refs: Vec<Reference>,
        index: IndexRecord,
        manifest: String,
        image: Digest,
        content_size: u64,
    ) -> Result<()> {
        let store = self.store.clone();
        blocking(move || {
            let pulled = PulledManifest { manifest: &manifest, image: &image, content_size };
            store.record_index(&refs, index, pulled)?;
            let Some(rec) = store.index_of_any(&refs)? else { return Ok(()) };
            let host = entry_for(&rec, &Platform::host()).and_then(|e| e.image.clone());
            if let Some(h) = host.filter(|h| *h != image) {
                if store.has_image(&h)? {
                    for r in &refs {
                        store.tag(h.as_str(), r)?;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// The image `name` resolves to for `platform`: through the index the reference was pulled
    /// as, or the image itself when it is of that platform. Docker's 404s otherwise (the docker
    /// CLI pulls that platform on a 404 from create, then retries).
    pub async fn resolve_for(&self, name: &str, platform: Option<&Platform>) -> Result<Image> {
        let img = self.resolve(name).await?;
        let Some(want) = platform else { return Ok(img) };
        let store = self.store.clone();
        let linked = match Reference::parse_tagged(name) {
            Ok(r) => blocking(move || store.index_of(&r)).await?,
            Err(_) => None,
        };
        if let Some(rec) = linked {
            let missing = || {
                Error::not_found(format!(
                    "image with reference {name} was found but does not provide the specified platform ({want})"
                ))
            };
            let id = entry_for(&rec, want).and_then(|e| e.image.clone()).ok_or_else(missing)?;
            return self.resolve(id.as_str()).await.map_err(|_| missing());
        }
        let have = platform_of(&img.config);
        if have.matches(want) {
            return Ok(img);
        }
        Err(Error::not_found(format!(
            "image with reference {name} was found but its platform ({have}) does not match the specified platform ({want})"
        )))
    }

    /// Images that are platforms of a multi-platform image some reference names.
    pub async fn platform_images(&self) -> Result<std::collections::HashSet<Digest>> {
        let store = self.store.clone();
        blocking(move || store.platform_images()).await
    }

    /// The platform manifest `image` is of the multi-platform image `name` names (a
    /// container's `ImageManifestDescriptor`); none for a single-platform image.
    pub async fn manifest_descriptor(&self, name: &str, image: &Digest) -> Option<Descriptor> {
        let r = Reference::parse_tagged(name).ok()?;
        let store = self.store.clone();
        let rec = blocking(move || store.index_of(&r)).await.ok()??;
        rec.manifests.iter().find(|e| e.image.as_ref() == Some(image)).map(|e| e.descriptor.clone())
    }

    /// The index an image's references were pulled as.
    async fn index_of_image(&self, img: &Image) -> Result<Option<IndexRecord>> {
        let (store, refs) = (self.store.clone(), img.tags.iter().chain(&img.repo_digests).cloned().collect::<Vec<_>>());
        blocking(move || store.index_of_any(&refs)).await
    }

    /// The descriptor an image was pulled as: the index its references name, else none (Docker's
    /// graphdriver store, which Berth's is, has none for single-platform images either).
    pub async fn descriptor(&self, img: &Image) -> Result<Option<Descriptor>> {
        Ok(self.index_of_image(img).await?.map(|rec| rec.descriptor))
    }

    /// `Manifests` of a multi-platform image (none for one pulled as a single manifest or built).
    pub async fn manifests(&self, img: &Image, with_identity: bool) -> Result<Option<Vec<ImageManifestSummary>>> {
        let Some(rec) = self.index_of_image(img).await? else { return Ok(None) };
        let (store, usage) = (self.store.clone(), self.usage());
        blocking(move || {
            let mut out = Vec::new();
            for e in &rec.manifests {
                let here = match &e.image {
                    Some(id) if store.has_image(id)? => Some(store.resolve(id.as_str())?),
                    _ => None,
                };
                let unpacked = here.as_ref().map(|i| i.size).unwrap_or(0);
                let content = if here.is_some() { e.content_size } else { 0 };
                let (kind, image_data, attestation_data) = if is_attestation(&e.descriptor) {
                    let target = e.descriptor.annotations.as_ref().and_then(|a| a.get(REFERENCE_DIGEST)).cloned();
                    ("attestation", None, Some(ManifestAttestationData { r#for: target.unwrap_or_default() }))
                } else if let Some(p) = &e.descriptor.platform {
                    let containers = match &here {
                        Some(i) => usage(&i.id)
                            .into_iter()
                            .map(|u| match u {
                                Usage::Running(c) | Usage::Stopped(c) => c,
                            })
                            .collect(),
                        None => Vec::new(),
                    };
                    let data = ManifestImageData { platform: p.clone(), containers, size: UnpackedSize { unpacked } };
                    ("image", Some(data), None)
                } else {
                    ("unknown", None, None)
                };
                let identity = match (&here, with_identity) {
                    (Some(i), true) => identity(i),
                    _ => None,
                };
                out.push(ImageManifestSummary {
                    identity,
                    id: e.descriptor.digest.clone(),
                    descriptor: e.descriptor.clone(),
                    available: here.is_some(),
                    size: ManifestSize { total: content + unpacked, content },
                    kind: kind.into(),
                    image_data,
                    attestation_data,
                });
            }
            Ok(Some(out))
        })
        .await
    }

    /// `DELETE /images/{name}?platforms=` (1.50): only those platforms' images of a
    /// multi-platform image; of a single-platform image, the image when it is of one of them.
    pub async fn delete_platforms(
        &self,
        name: &str,
        platforms: &[Platform],
        force: bool,
    ) -> Result<Vec<DeleteResponse>> {
        let img = self.resolve(name).await?;
        let Some(rec) = self.index_of_image(&img).await? else {
            for p in platforms {
                self.resolve_for(name, Some(p)).await?;
            }
            return self.delete(name, force).await;
        };
        let targets =
            futures_util::future::try_join_all(platforms.iter().map(|p| self.resolve_for(name, Some(p)))).await?;
        let doomed: Vec<&Digest> = targets.iter().map(|t| &t.id).collect();
        // The references move to a platform that stays, so the others keep their name.
        let stays = rec.images().find(|i| !doomed.contains(i)).cloned();
        let (store, refs) = (self.store.clone(), img.tags.iter().chain(&img.repo_digests).cloned().collect::<Vec<_>>());
        if let Some(s) = stays.clone() {
            if doomed.contains(&&img.id) && self.resolve(s.as_str()).await.is_ok() {
                blocking(move || refs.iter().try_for_each(|r| store.tag(s.as_str(), r).map(|_| ()))).await?;
            }
        }
        let mut out = Vec::new();
        for t in &targets {
            out.extend(self.delete(t.id.as_str(), force).await?);
        }
        Ok(out)
    }
}
