//! The image config blob (Docker/OCI image spec) and the history entries it carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::Config;
use crate::serde_helpers::nullable;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// `application/vnd.oci.image.config.v1+json` / Docker's image JSON. Its sha256 is the image id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default)]
    pub config: Config,
    /// The container a `docker commit` made this image from, and its config then (Docker's image
    /// JSON; inspect shows them as `Container`/`ContainerConfig` below API 1.45).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_config: Option<Config>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, deserialize_with = "nullable")]
    pub history: Vec<History>,
}

/// An OCI platform (`os`/`architecture`[/`variant`]): of an image, an index entry, a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

impl OciPlatform {
    pub fn host() -> OciPlatform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let variant = (arch == "arm64").then(|| "v8".to_string());
        OciPlatform { architecture: arch.into(), os: "linux".into(), variant, os_version: None }
    }

    /// `os[/arch[/variant]]` as in `--platform`.
    pub fn parse(s: &str) -> Result<OciPlatform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || format!("\"{s}\": unknown operating system or architecture: invalid argument");
        let (os, arch, variant) = match parts.as_slice() {
            [os] => (*os, OciPlatform::host().architecture, None),
            [os, arch] => (*os, (*arch).to_string(), None),
            [os, arch, v] => (*os, (*arch).to_string(), Some((*v).to_string())),
            _ => return Err(bad()),
        };
        if os.is_empty() || arch.is_empty() {
            return Err(bad());
        }
        let arch = match arch.as_str() {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            _ => arch,
        };
        Ok(OciPlatform { os: os.to_lowercase(), architecture: arch, variant, os_version: None })
    }

    /// The item of `items` for this platform, as containerd's matcher orders them: one whose
    /// variant is exactly the one asked for, else the first that serves it.
    pub fn best<'a, T>(
        &self,
        items: impl IntoIterator<Item = &'a T>,
        platform: impl Fn(&T) -> Option<&OciPlatform>,
    ) -> Option<&'a T> {
        let fits: Vec<&T> = items.into_iter().filter(|i| platform(i).is_some_and(|p| p.matches(self))).collect();
        fits.iter()
            .find(|i| platform(i).and_then(|p| p.variant.as_ref()) == self.variant.as_ref())
            .or(fits.first())
            .copied()
    }

    /// Whether this platform (of an image or index entry) serves `want`.
    pub fn matches(&self, want: &OciPlatform) -> bool {
        self.os == want.os
            && self.architecture == want.architecture
            && match (&want.variant, &self.variant) {
                (Some(w), Some(v)) => w == v,
                (Some(w), None) => want.architecture == "arm64" && w == "v8",
                _ => true,
            }
    }
}

impl std::fmt::Display for OciPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An OCI descriptor: what a manifest is, by type, digest and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<OciPlatform>,
}

/// One manifest of a multi-platform image (`Manifests` of image list and inspect, API 1.47+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageManifestSummary {
    #[serde(rename = "ID")]
    pub id: String,
    pub descriptor: Descriptor,
    /// Whether the manifest's content (config and layers) is here.
    pub available: bool,
    pub size: ManifestSize,
    /// `image`, `attestation` or `unknown`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_data: Option<ManifestImageData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_data: Option<ManifestAttestationData>,
    /// With `identity=1` (API 1.54+): the origin of this manifest's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestSize {
    /// Content plus the unpacked layers.
    pub total: u64,
    /// The manifest, config and layers as a registry holds them.
    pub content: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestImageData {
    pub platform: OciPlatform,
    /// Containers using this platform's image.
    pub containers: Vec<String>,
    pub size: UnpackedSize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnpackedSize {
    pub unpacked: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestAttestationData {
    /// The image manifest the attestation is about.
    pub r#for: String,
}

/// `GET /distribution/{name}/json`: the manifest a reference names in its registry, and the
/// platforms it holds (an index's entries, or the one of an image manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DistributionInspect {
    pub descriptor: Descriptor,
    pub platforms: Vec<OciPlatform>,
}

/// An entry of `GET /images/json`, in the newest shape (the server's version views adapt it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageSummary {
    pub id: String,
    pub parent_id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub size: u64,
    /// -1: not computed, as Docker without `shared-size=1`.
    pub shared_size: i64,
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// Containers using the image (API 1.51+; -1 before).
    pub containers: i64,
    /// The manifests of a multi-platform image (API 1.47+, asked for with `manifests=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<ImageManifestSummary>>,
}

/// `GET /images/{name}/json`, in the newest shape (the server's version views adapt it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub docker_version: String,
    pub author: String,
    pub config: Config,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    pub size: u64,
    pub graph_driver: ImageGraphDriver,
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    pub metadata: ImageMetadata,
    /// The manifest or index the image was pulled as (API 1.48+; absent for local images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<Descriptor>,
    /// The manifests of a multi-platform image (API 1.48+, asked for with `manifests=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<ImageManifestSummary>>,
    /// Where the image came from, as only the daemon knows it (API 1.53+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The commit's container and its config (below API 1.45 only; the version views drop them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_config: Option<Config>,
}

/// One entry of `GET /images/{name}/history`, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HistoryItem {
    /// The image a step left, while it is here; `<missing>` otherwise.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    pub tags: Option<Vec<String>>,
    pub size: u64,
    pub comment: String,
}

/// One in-toto statement of `GET /images/{name}/attestations` (API 1.55).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttestationStatement {
    pub descriptor: Descriptor,
    pub predicate_type: String,
}

/// Trusted origin of an image: the repositories it was pulled from or pushed to (a tag cannot
/// change it). Berth verifies no signatures and keeps no build references, so only `Pull`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull: Vec<PullIdentity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PullIdentity {
    pub repository: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageGraphDriver {
    pub name: String,
    pub data: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageMetadata {
    pub last_tag_time: String,
}

/// One line of `DELETE /images/{name}` and of an image prune: a reference untagged or an image
/// deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteResponseItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untagged: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

impl DeleteResponseItem {
    pub fn untagged(reference: impl Into<String>) -> Self {
        DeleteResponseItem { untagged: Some(reference.into()), deleted: None }
    }

    pub fn deleted(id: impl Into<String>) -> Self {
        DeleteResponseItem { untagged: None, deleted: Some(id.into()) }
    }
}

/// `POST /images/prune`: `ImagesDeleted` is null when nothing was, as Docker's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PruneResponse {
    pub images_deleted: Option<Vec<DeleteResponseItem>>,
    pub space_reclaimed: u64,
}
