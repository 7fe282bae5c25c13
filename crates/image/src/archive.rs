//! `docker save` and `docker load`: docker-archive (manifest.json, repositories) combined with an OCI
//! image layout (index.json, oci-layout, blobs/sha256/...), as Docker 25+ writes them; loading takes
//! either form, plain or compressed, and checks every digest it is given.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_sys::root::Root;
use berth_types::{Digest, Error, Reference, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::index::IndexRecord;
use crate::ingest::LayerInfo;
use crate::store::ImageStore;

/// What a save writes: images by id, each with the tags to record.
pub type SaveSet = BTreeMap<Digest, Vec<Reference>>;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn blob_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn dir_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_size(0);
    h
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json serialises")
}

/// Writes a blob once; its descriptor.
fn write_blob<W: Write>(
    b: &mut tar::Builder<W>,
    written: &mut HashSet<Digest>,
    media_type: &str,
    data: &[u8],
) -> Result<Value> {
    let digest = Digest::of(data);
    if written.insert(digest.clone()) {
        b.append_data(&mut blob_header(data.len() as u64), format!("blobs/sha256/{}", digest.hex()), data)?;
    }
    Ok(json!({"mediaType": media_type, "digest": digest, "size": data.len()}))
}

fn with_annotations(desc: &Value, annotations: Value) -> Value {
    let mut d = desc.clone();
    d["annotations"] = annotations;
    d
}

/// Reads through to a hash, to check a blob's digest while it streams.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// One image found in an archive, before it is stored.
struct Found {
    config: PathBuf,
    config_digest: Option<Digest>,
    layers: Vec<(PathBuf, Option<Digest>)>,
    tags: Vec<Reference>,
    /// A platform of a multi-platform image: the index, its references and this manifest.
    from_index: Option<FromIndex>,
}

struct FromIndex {
    record: IndexRecord,
    refs: Vec<Reference>,
    manifest: String,
    content_size: u64,
}

/// The platforms a load keeps of a multi-platform archive (`docker load --platform`); without
/// any, every platform the archive holds.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub platforms: Vec<berth_api::image::OciPlatform>,
}

impl LoadOptions {
    fn wants(&self, p: &Value) -> bool {
        self.platforms.is_empty() || self.platforms.iter().any(|w| platform_fits(p, w))
    }
}

fn platform_fits(p: &Value, want: &berth_api::image::OciPlatform) -> bool {
    p["os"].as_str() == Some(want.os.as_str())
        && p["architecture"].as_str() == Some(want.architecture.as_str())
        && want.variant.as_deref().is_none_or(|v| p["variant"].as_str().is_none_or(|pv| pv == v))
}

fn is_host(p: &Value) -> bool {
    p["os"].as_str() == Some("linux") && p["architecture"].as_str() == Some(crate::store::docker_arch())
}

/// A digest named by an archive path like `blobs/sha256/<hex>` or `<hex>.json`.
fn digest_in_path(p: &str) -> Option<Digest> {
    let name = Path::new(p).file_name()?.to_str()?;
    let hex = name.strip_suffix(".json").unwrap_or(name);
    if p.starts_with("blobs/sha256/") || name.ends_with(".json") {
        format!("sha256:{hex}").parse().ok()
    } else {
        None
    }
}

impl ImageStore {
    /// Writes the images named by `names` (references or ids) as one archive, with every
    /// platform of a multi-platform image that is here.
    pub fn save<W: Write>(&self, names: &[String], out: W) -> Result<W> {
        let chosen = self.choose(names)?;
        self.save_chosen(&chosen, None, out)
    }

    /// The images `names` name, each with the tags to record.
    pub fn choose(&self, names: &[String]) -> Result<SaveSet> {
        let mut chosen = SaveSet::new();
        for n in names {
            let img = self.resolve(n)?;
            let entry = chosen.entry(img.id.clone()).or_default();
            let by_id = n.starts_with("sha256:") || img.id.hex().starts_with(n.as_str());
            if by_id {
                continue;
            }
            let parsed = Reference::parse(n)?;
            let tags: Vec<Reference> = if parsed.tag().is_some() {
                vec![Reference::parse_tagged(n)?]
            } else {
                // A bare repository saves every tag of it, as Docker does.
                self.list()?
                    .into_iter()
                    .flat_map(|i| i.tags)
                    .filter(|t| t.repository() == parsed.repository())
                    .collect()
            };
            for t in tags {
                if !entry.contains(&t) {
                    entry.push(t);
                }
            }
        }
        Ok(chosen)
    }

    /// Writes `chosen` as one archive. A reference of a multi-platform image names an index of
    /// its platforms that are here (as Docker's containerd store saves them) — only those in
    /// `only` when given — or the one image when that leaves one.
    pub fn save_chosen<W: Write>(&self, chosen: &SaveSet, only: Option<&HashSet<Digest>>, out: W) -> Result<W> {
        let mut b = tar::Builder::new(out);
        b.append_data(&mut dir_header(), "blobs/", std::io::empty())?;
        b.append_data(&mut dir_header(), "blobs/sha256/", std::io::empty())?;
        let mut written: HashSet<Digest> = HashSet::new();
        let mut manifest_json = Vec::new();
        let mut index = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (id, tags) in chosen {
            let (top, layers) = self.write_image(&mut b, &mut written, id)?;
            let kept = |i: &Digest| only.is_none_or(|o| o.contains(i)) && self.has_image(i).unwrap_or(false);
            let platforms = self.index_of_any(tags)?.filter(|rec| rec.images().filter(|i| kept(i)).count() > 1);
            let top = match platforms {
                Some(rec) => self.write_platforms(&mut b, &mut written, &rec, &kept)?,
                None => top,
            };
            if tags.is_empty() {
                index.push(with_annotations(&top, json!({})));
            }
            for t in tags {
                index.push(with_annotations(
                    &top,
                    json!({
                        "io.containerd.image.name": t.to_string(),
                        "org.opencontainers.image.ref.name": t.tag().unwrap_or("latest"),
                    }),
                ));
                if let Some(top) = layers.last() {
                    repositories
                        .entry(t.familiar_repository())
                        .or_default()
                        .insert(t.tag().unwrap_or("latest").to_string(), top.diff_id.hex().to_string());
                }
            }
            manifest_json.push(json!({
                "Config": format!("blobs/sha256/{}", id.hex()),
                "RepoTags": if tags.is_empty() { Value::Null } else { json!(tags.iter().map(|t| t.familiar()).collect::<Vec<_>>()) },
                "Layers": layers.iter().map(|l| format!("blobs/sha256/{}", l.diff_id.hex())).collect::<Vec<_>>(),
            }));
        }
        let files: [(&str, Vec<u8>); 4] = [
            ("index.json", to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}))),
            ("manifest.json", to_vec(&json!(manifest_json))),
            ("oci-layout", to_vec(&json!({"imageLayoutVersion": "1.0.0"}))),
            ("repositories", to_vec(&json!(repositories))),
        ];
        for (name, data) in files {
            b.append_data(&mut blob_header(data.len() as u64), name, &data[..])?;
        }
        Ok(b.into_inner()?)
    }

    /// One image's config, layers (as plain tars, named by diff id) and an OCI manifest over
    /// them; the manifest's descriptor and the layers.
    fn write_image<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        written: &mut HashSet<Digest>,
        id: &Digest,
    ) -> Result<(Value, Vec<LayerInfo>)> {
        let config = std::fs::read(self.layout.blob(id.hex()))?;
        let layers = self.layers_of(id)?;
        if written.insert(id.clone()) {
            b.append_data(&mut blob_header(config.len() as u64), format!("blobs/sha256/{}", id.hex()), &config[..])?;
        }
        let mut descs = Vec::new();
        for l in &layers {
            let path = self.layer_tar(&l.chain_id);
            let f = std::fs::File::open(&path)
                .map_err(|e| Error::internal(format!("layer {} has no stored tar: {e}", l.diff_id)))?;
            let size = f.metadata()?.len();
            if written.insert(l.diff_id.clone()) {
                b.append_data(&mut blob_header(size), format!("blobs/sha256/{}", l.diff_id.hex()), f)?;
            }
            descs.push(
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.diff_id, "size": size}),
            );
        }
        let manifest = to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": id, "size": config.len()},
            "layers": descs,
        }));
        let desc = write_blob(b, written, OCI_MANIFEST, &manifest)?;
        Ok((desc, layers))
    }

    /// Every platform of `rec` that is here, and an index over them; the index's descriptor.
    fn write_platforms<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        written: &mut HashSet<Digest>,
        rec: &IndexRecord,
        kept: &dyn Fn(&Digest) -> bool,
    ) -> Result<Value> {
        let mut manifests = Vec::new();
        for e in &rec.manifests {
            let Some(id) = e.image.as_ref().filter(|i| kept(i)) else { continue };
            let (mut desc, _) = self.write_image(b, written, id)?;
            desc["platform"] = json!(e.descriptor.platform);
            manifests.push(desc);
        }
        let index = to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}));
        write_blob(b, written, OCI_INDEX, &index)
    }

    /// Loads every image of an archive. Returns Docker's lines: `Loaded image: x:tag` or
    /// `Loaded image ID: sha256:...`. Nothing of a failed load stays visible.
    pub fn load(&self, body: impl Read, opts: &LoadOptions) -> Result<Vec<String>> {
        let tmp = self.layout.tmp().join(format!("load-{}", berth_types::new_id()));
        std::fs::create_dir_all(&tmp)?;
        let res = self.load_from(body, &tmp, opts);
        crate::store::remove_tree(&tmp)?;
        if res.is_err() {
            let _ = self.gc();
        }
        res
    }

    fn load_from(&self, body: impl Read, tmp: &Path, opts: &LoadOptions) -> Result<Vec<String>> {
        let plain = crate::compress::decompress(body)?;
        // The archive is itself untrusted: unpack it with the confined applier.
        crate::apply::apply(plain, &Root::open(tmp)?).map_err(|e| e.context("invalid archive"))?;
        let root = Root::open(tmp)?;
        // The OCI layout when it holds a multi-platform image (manifest.json names one platform
        // only) or there is no manifest.json; else the docker-archive, as Docker reads both.
        let index = root.read(Path::new("index.json")).ok();
        let multi = index.as_deref().is_some_and(holds_an_index);
        let found = match (root.read(Path::new("manifest.json")), index) {
            (Ok(m), _) if !multi => docker_archive(&m)?,
            (_, Some(i)) => oci_layout(&root, &i, opts)?,
            (Err(_), None) => {
                return Err(Error::invalid("invalid archive: neither manifest.json nor index.json found"))
            }
            (Ok(_), None) => unreachable!("multi implies an index"),
        };
        if found.is_empty() {
            return Err(Error::invalid("invalid archive: it holds no image"));
        }
        let mut out = Vec::new();
        for f in found {
            let config = root
                .read(&f.config)
                .map_err(|e| Error::invalid(format!("invalid archive: config {}: {e}", f.config.display())))?;
            if let Some(d) = &f.config_digest {
                if Digest::of(&config) != *d {
                    return Err(Error::invalid(format!(
                        "invalid archive: config digest mismatch: {} is not {d}",
                        Digest::of(&config)
                    )));
                }
            }
            let mut layers: Vec<LayerInfo> = Vec::new();
            for (p, want) in &f.layers {
                // The blob's digest is checked first, then it is unpacked (and, if it is a plain
                // tar, moved into the store rather than copied).
                let mut file = root
                    .open_file(p)
                    .map_err(|e| Error::invalid(format!("invalid archive: layer {}: {e}", p.display())))?;
                if let Some(w) = want {
                    let mut h =
                        Hashing { inner: std::io::BufReader::with_capacity(1 << 20, &mut file), hash: Sha256::new() };
                    std::io::copy(&mut h, &mut std::io::sink())?;
                    let got = Digest::from_hasher(h.hash);
                    if got != *w {
                        return Err(Error::invalid(format!(
                            "invalid archive: layer digest mismatch: {} has {got}, manifest says {w}",
                            p.display()
                        )));
                    }
                }
                // The fast path only for a regular file that really is inside our temp folder: the
                // archive may have planted symlinks (`blobs -> /etc`) to make us read host files.
                let real = tmp.join(berth_sys::root::clean(p));
                let inside = match (real.canonicalize(), tmp.canonicalize()) {
                    (Ok(r), Ok(t)) => r.starts_with(&t) && r == real,
                    _ => false,
                };
                let parent = layers.last().map(|l| l.chain_id.clone());
                let info = if inside && real.is_file() {
                    self.ingest_layer_file(&real, parent.as_ref())?
                } else {
                    self.ingest_layer(std::io::BufReader::with_capacity(1 << 20, root.open_file(p)?), parent.as_ref())?
                };
                layers.push(info);
            }
            let id = self.create_image(&config, &layers, &f.tags)?;
            // The other platforms of a named multi-platform image are loaded under its name.
            let named_elsewhere = f.tags.is_empty() && f.from_index.as_ref().is_some_and(|x| !x.refs.is_empty());
            if let Some(x) = f.from_index {
                let pulled = crate::PulledManifest { manifest: &x.manifest, image: &id, content_size: x.content_size };
                self.record_index(&x.refs, x.record, pulled)?;
            }
            if named_elsewhere {
                continue;
            }
            if f.tags.is_empty() {
                out.push(format!("Loaded image ID: {id}"));
            }
            out.extend(f.tags.iter().map(|t| format!("Loaded image: {}", t.familiar())));
        }
        Ok(out)
    }
}

fn docker_archive(manifest: &[u8]) -> Result<Vec<Found>> {
    let entries: Vec<ArchiveManifest> =
        serde_json::from_slice(manifest).map_err(|e| Error::invalid(format!("invalid archive: manifest.json: {e}")))?;
    entries
        .into_iter()
        .map(|m| {
            let tags = m
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse_tagged(t))
                .collect::<Result<Vec<_>>>()?;
            Ok(Found {
                config_digest: digest_in_path(&m.config),
                config: PathBuf::from(&m.config),
                // Layer blobs of a docker-archive may be compressed; their digests are checked
                // against the config's diff ids when the image is created.
                layers: m.layers.iter().map(|l| (PathBuf::from(l), None)).collect(),
                tags,
                from_index: None,
            })
        })
        .collect()
}

fn blob_path(digest: &str) -> Result<(PathBuf, Digest)> {
    let d: Digest = digest.parse().map_err(|_| Error::invalid(format!("invalid archive: bad digest {digest:?}")))?;
    Ok((PathBuf::from(format!("blobs/sha256/{}", d.hex())), d))
}

fn holds_an_index(index: &[u8]) -> bool {
    let idx: Value = serde_json::from_slice(index).unwrap_or_default();
    idx["manifests"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(|d| matches!(d["mediaType"].as_str(), Some(OCI_INDEX) | Some(DOCKER_LIST))))
}

fn oci_layout(root: &Root, index: &[u8], opts: &LoadOptions) -> Result<Vec<Found>> {
    let idx: Value =
        serde_json::from_slice(index).map_err(|e| Error::invalid(format!("invalid archive: index.json: {e}")))?;
    let mut out = Vec::new();
    collect(root, &idx, &mut out, opts, 0)?;
    Ok(out)
}

fn read_blob(root: &Root, digest: &str) -> Result<Vec<u8>> {
    let (p, d) = blob_path(digest)?;
    let data = root.read(&p).map_err(|e| Error::invalid(format!("invalid archive: blob {d}: {e}")))?;
    if Digest::of(&data) != d {
        return Err(Error::invalid(format!("invalid archive: blob {d} does not match its digest")));
    }
    Ok(data)
}

/// The references a descriptor of index.json names.
fn names_of(desc: &Value) -> Result<Vec<Reference>> {
    let ann = &desc["annotations"];
    let name = ann["io.containerd.image.name"]
        .as_str()
        .or(ann["org.opencontainers.image.ref.name"].as_str().filter(|n| n.contains(':') || n.contains('/')));
    Ok(name.map(Reference::parse_tagged).transpose()?.into_iter().collect())
}

fn collect(root: &Root, index: &Value, out: &mut Vec<Found>, opts: &LoadOptions, depth: u32) -> Result<()> {
    if depth > 4 {
        return Err(Error::invalid("invalid archive: indexes nest too deep"));
    }
    for desc in index["manifests"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let media = desc["mediaType"].as_str().unwrap_or("");
        let digest = desc["digest"].as_str().unwrap_or("");
        if let Some(p) = desc.get("platform") {
            let fits = match opts.platforms.is_empty() {
                false => opts.wants(p),
                true => depth > 0 || is_host(p),
            };
            if !fits {
                continue;
            }
        }
        let blob = read_blob(root, digest)?;
        let v: Value = serde_json::from_slice(&blob)
            .map_err(|e| Error::invalid(format!("invalid archive: manifest {digest}: {e}")))?;
        if media == OCI_INDEX || media == DOCKER_LIST || v.get("manifests").is_some() {
            if depth == 0 {
                platforms_of(root, desc, &v, &blob, out, opts)?;
            } else {
                collect(root, &v, out, opts, depth + 1)?;
            }
            continue;
        }
        let tags = names_of(desc)?;
        let Some(f) = found(&v, tags, None)? else { continue };
        // The same manifest listed once per tag: one image, all its tags.
        if let Some(same) = out.iter_mut().find(|o| o.config == f.config) {
            same.tags.extend(f.tags);
            continue;
        }
        out.push(f);
    }
    Ok(())
}

/// The image a manifest describes.
fn found(v: &Value, tags: Vec<Reference>, from_index: Option<FromIndex>) -> Result<Option<Found>> {
    let (config, config_digest) = blob_path(v["config"]["digest"].as_str().unwrap_or(""))?;
    let layers = v["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|l| blob_path(l["digest"].as_str().unwrap_or("")).map(|(p, d)| (p, Some(d))))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Found { config, config_digest: Some(config_digest), layers, tags, from_index }))
}

/// A multi-platform image of index.json: each platform whose content the archive holds (or the
/// one asked for) becomes an image; the references go to this host's platform, or the first.
fn platforms_of(
    root: &Root,
    desc: &Value,
    index: &Value,
    blob: &[u8],
    out: &mut Vec<Found>,
    opts: &LoadOptions,
) -> Result<()> {
    let refs = names_of(desc)?;
    let parsed: crate::index::ParsedIndex = serde_json::from_slice(blob)
        .map_err(|e| Error::invalid(format!("invalid archive: index {}: {e}", desc["digest"])))?;
    let record = parsed.record(&Digest::of(blob), blob.len() as u64, desc["mediaType"].as_str().unwrap_or(OCI_INDEX));
    let mut mine = Vec::new();
    for m in index["manifests"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let Some(p) = m.get("platform") else { continue };
        if !opts.wants(p) || p["os"] == "unknown" {
            continue;
        }
        // Platforms whose content was left out of the archive are skipped, as Docker does.
        let digest = m["digest"].as_str().unwrap_or("");
        let Ok(mblob) = read_blob(root, digest) else { continue };
        let v: Value = serde_json::from_slice(&mblob)
            .map_err(|e| Error::invalid(format!("invalid archive: manifest {digest}: {e}")))?;
        // Opened, not read: a layer may be larger than anything read whole.
        let present =
            |d: &Value| blob_path(d["digest"].as_str().unwrap_or("")).is_ok_and(|(p, _)| root.open_file(&p).is_ok());
        let layers = v["layers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if !present(&v["config"]) || !layers.iter().all(present) {
            continue;
        }
        let content = mblob.len() as u64
            + v["config"]["size"].as_u64().unwrap_or(0)
            + layers.iter().map(|l| l["size"].as_u64().unwrap_or(0)).sum::<u64>();
        let x = FromIndex {
            record: record.clone(),
            refs: refs.clone(),
            manifest: digest.to_string(),
            content_size: content,
        };
        if let Some(f) = found(&v, Vec::new(), Some(x))? {
            mine.push((is_host(p), f));
        }
    }
    if mine.is_empty() {
        let asked: Vec<String> = opts.platforms.iter().map(|p| format!("{}/{}", p.os, p.architecture)).collect();
        return Err(Error::invalid(match asked.is_empty() {
            false => format!("invalid archive: no image for platform {} in it", asked.join(", ")),
            true => "invalid archive: no platform of its multi-platform image is in it".to_string(),
        }));
    }
    let default = mine.iter().position(|(host, _)| *host).unwrap_or(0);
    mine[default].1.tags = refs;
    // The default goes last, so the references end up on it.
    let last = mine.remove(default);
    out.extend(mine.into_iter().map(|(_, f)| f));
    out.push(last.1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{store, tar_with};

    #[test]
    fn save_load_round_trip() {
        let (_a, s1) = store();
        let r = Reference::parse_tagged("bb:1").unwrap();
        let id = s1
            .import(&tar_with(&[("f", b"x")])[..], crate::ImportOptions { reference: Some(r), ..Default::default() })
            .unwrap();
        let archive = s1.save(&["bb:1".into()], Vec::new()).unwrap();
        let (_b, s2) = store();
        assert_eq!(s2.load(&archive[..], &LoadOptions::default()).unwrap(), vec!["Loaded image: bb:1".to_string()]);
        assert_eq!(s2.resolve("bb:1").unwrap().id, id);
        // Loading twice is idempotent.
        s2.load(&archive[..], &LoadOptions::default()).unwrap();
        assert_eq!(s2.list().unwrap().len(), 1);
    }

    /// Both platforms of a multi-platform image come back from its archive, the layer they share
    /// being larger than anything read whole (it was read to see that it is there, and refused).
    #[test]
    fn a_multi_platform_archive_with_a_large_layer_loads_every_platform() {
        let (_a, s1) = store();
        let big = vec![0u8; (berth_sys::root::READ_LIMIT + (1 << 20)) as usize];
        let r = Reference::parse_tagged("multi:1").unwrap();
        let opts = crate::ImportOptions { reference: Some(r.clone()), ..Default::default() };
        let amd = s1.import(&tar_with(&[("big", &big)])[..], opts).unwrap();
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(s1.layout.blob(amd.hex())).unwrap()).unwrap();
        let host = cfg["architecture"].as_str().unwrap().to_string();
        let foreign = if host == "arm64" { "amd64" } else { "arm64" };
        cfg["architecture"] = json!(foreign);
        let other = s1.create_image(&serde_json::to_vec(&cfg).unwrap(), &s1.layers_of(&amd).unwrap(), &[]).unwrap();
        let desc = |d: &str, arch: &str| berth_api::image::Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: d.into(),
            size: 1,
            annotations: None,
            platform: Some(berth_api::image::OciPlatform {
                architecture: arch.into(),
                os: "linux".into(),
                ..Default::default()
            }),
        };
        let index = IndexRecord::new(OCI_INDEX, &Digest::of(b"index"), 2, [desc("m1", &host), desc("m2", foreign)]);
        for (m, id) in [("m1", &amd), ("m2", &other)] {
            s1.record_index(
                std::slice::from_ref(&r),
                index.clone(),
                crate::PulledManifest { manifest: m, image: id, content_size: 1 },
            )
            .unwrap();
        }
        let archive = s1.save(&["multi:1".into()], Vec::new()).unwrap();
        let (_b, s2) = store();
        assert_eq!(s2.load(&archive[..], &LoadOptions::default()).unwrap(), vec!["Loaded image: multi:1".to_string()]);
        assert_eq!(s2.list().unwrap().len(), 2);
        assert_eq!(s2.resolve("multi:1").unwrap().id, amd);
    }

    #[test]
    fn tampered_archives_store_nothing() {
        let (_a, s1) = store();
        s1.import(
            &tar_with(&[("f", b"x")])[..],
            crate::ImportOptions { reference: Some(Reference::parse_tagged("bb").unwrap()), ..Default::default() },
        )
        .unwrap();
        let archive = s1.save(&["bb".into()], Vec::new()).unwrap();
        // Flip one byte of the layer content ("x" → "y") inside the archive.
        let pos = archive.windows(2).position(|w| w == b"x\0").unwrap();
        let mut bad = archive.clone();
        bad[pos] = b'y';
        let (_b, s2) = store();
        let e = s2.load(&bad[..], &LoadOptions::default()).unwrap_err();
        assert_eq!(e.kind, berth_types::ErrorKind::InvalidArgument, "{e}");
        assert!(s2.list().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(s2.layout().layers()).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(s2.layout().tmp()).unwrap().count(), 0);
        // Truncated.
        let e = s2.load(&archive[..archive.len() / 3], &LoadOptions::default()).unwrap_err();
        assert_eq!(e.kind, berth_types::ErrorKind::InvalidArgument, "{e}");
        assert!(s2.list().unwrap().is_empty());
    }

    #[test]
    fn archive_symlinks_cannot_reach_host_files() {
        let outside = tempfile::tempdir().unwrap();
        let layer = tar_with(&[("secret", b"host data")]);
        std::fs::write(outside.path().join("layer.tar"), &layer).unwrap();
        let diff = Digest::of(&layer);
        let config = serde_json::to_vec(
            &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff]}}),
        )
        .unwrap();
        let manifest = serde_json::to_vec(
            &json!([{"Config": "config.json", "RepoTags": ["evil:1"], "Layers": ["evil/layer.tar"]}]),
        )
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "evil", outside.path()).unwrap();
        for (name, data) in [("config.json", &config), ("manifest.json", &manifest)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        let archive = b.into_inner().unwrap();
        let (_d, s) = store();
        assert!(s.load(&archive[..], &LoadOptions::default()).is_err(), "a layer outside the archive was loaded");
        assert!(s.list().unwrap().is_empty());
        assert_eq!(std::fs::read(outside.path().join("layer.tar")).unwrap(), layer);
    }
}
