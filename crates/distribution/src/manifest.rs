//! Manifest and index shapes (Docker schema 2 and OCI), media types, and platform selection.

use berth_types::{Digest, Error, Result};
use serde::{Deserialize, Serialize};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Everything we can pull, best first: what the `Accept` header lists.
pub const ACCEPT: [&str; 4] = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];

/// The registry's limit is 4 MiB; a larger "manifest" is an attack or a mistake.
pub const MAX_MANIFEST: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An OCI platform: one type from the API to the registry.
pub use berth_api::image::OciPlatform as Platform;

/// A Docker schema 2 or OCI image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A Docker manifest list or OCI index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest GET returned, classified.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Index),
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

impl Manifest {
    /// Classifies by the response's `Content-Type`, falling back to the body's `mediaType` and shape.
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Manifest> {
        let probe: Probe =
            serde_json::from_slice(body).map_err(|e| Error::invalid(format!("invalid manifest: {e}")))?;
        let ct = content_type.split(';').next().unwrap_or("").trim();
        let mt = if probe.media_type.is_empty() { ct } else { probe.media_type.as_str() };
        if probe.schema_version == 1 || SCHEMA1.contains(&mt) || SCHEMA1.contains(&ct) {
            return Err(Error::invalid(
                "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. \
                 Suggest the author of the image to rebuild it with a current build tool",
            ));
        }
        let is_index = mt == DOCKER_LIST || mt == OCI_INDEX || (mt.is_empty() && probe.manifests.is_some());
        if is_index {
            let i: Index = serde_json::from_slice(body).map_err(|e| Error::invalid(format!("invalid index: {e}")))?;
            return Ok(Manifest::Index(i));
        }
        if !(mt == DOCKER_MANIFEST || mt == OCI_MANIFEST || mt.is_empty() || mt == "application/json") {
            return Err(Error::invalid(format!("unsupported manifest media type: {mt}")));
        }
        let m: ImageManifest =
            serde_json::from_slice(body).map_err(|e| Error::invalid(format!("invalid manifest: {e}")))?;
        if m.config.media_type.contains("helm") || m.config.media_type.contains("wasm") {
            return Err(Error::invalid(format!(
                "media type {} is not an image config: this artifact cannot be run",
                m.config.media_type
            )));
        }
        Ok(Manifest::Image(Box::new(m)))
    }
}

impl Index {
    /// The entry for `want`, as containerd's platform matcher orders them (exact variant first).
    pub fn select(&self, want: &Platform) -> Result<&Descriptor> {
        let images = self.manifests.iter().filter(|d| d.media_type != "application/vnd.in-toto+json");
        want.best(images, |d| d.platform.as_ref())
            .ok_or_else(|| Error::not_found(format!("no matching manifest for {want} in the manifest list entries")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8, plat: &str) -> serde_json::Value {
        let p: Vec<&str> = plat.split('/').collect();
        let mut platform = serde_json::json!({"os": p[0], "architecture": p[1]});
        if let Some(v) = p.get(2) {
            platform["variant"] = (*v).into();
        }
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
            "size": 10, "platform": platform})
    }

    #[test]
    fn selects_platform_from_index() {
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [d(1, "linux/arm/v7"), d(2, "linux/arm64/v8"), d(3, "linux/amd64"), d(4, "windows/amd64")]});
        let Manifest::Index(i) = Manifest::parse("", &serde_json::to_vec(&body).unwrap()).unwrap() else { panic!() };
        let pick = |p: &str| i.select(&Platform::parse(p).unwrap()).map(|d| d.digest.hex()[..2].to_string());
        assert_eq!(pick("linux/amd64").unwrap(), "03");
        assert_eq!(pick("linux/arm64").unwrap(), "02");
        assert_eq!(pick("linux/arm/v7").unwrap(), "01");
        assert_eq!(pick("windows/amd64").unwrap(), "04");
        assert!(pick("linux/s390x").unwrap_err().message.contains("no matching manifest for linux/s390x"));
    }

    #[test]
    fn refuses_schema1_and_unknown_types() {
        let s1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(Manifest::parse("application/vnd.docker.distribution.manifest.v1+prettyjws", s1)
            .unwrap_err()
            .message
            .contains("schema 1"));
        let odd = br#"{"schemaVersion":2,"mediaType":"application/x-foo","config":{}}"#;
        assert!(Manifest::parse("", odd).is_err());
        assert!(Manifest::parse("", b"not json").is_err());
    }
}
