//! What `/images` answers, in the newest wire shape: list entries with Docker's filters, inspect
//! and history (the server's version views adapt them to older API versions).

use std::collections::{HashMap, HashSet};

use berth_api::filters::Filters;
use berth_api::image::{
    HistoryItem, ImageGraphDriver, ImageInspect, ImageMetadata, ImageSummary, InspectRootFs, OciPlatform,
};
use berth_image::Image;
use berth_types::{Digest, Error, Reference, Result};

use super::ImageService;

/// `GET /images/json`'s parameters.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Intermediate build images and the other platforms of multi-platform images too.
    pub all: bool,
    pub filters: Filters,
    /// Each entry's `Manifests` (API 1.47+).
    pub manifests: bool,
    /// Each manifest's `Identity` (API 1.54+; implies `manifests`).
    pub identity: bool,
}

fn unix(t: Option<&str>) -> i64 {
    t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|d| d.timestamp()).unwrap_or(0)
}

/// `reference` filter: a glob over the familiar name, with or without its tag.
fn reference_matches(pattern: &str, r: &Reference) -> bool {
    berth_api::filters::glob(pattern, &r.familiar()) || berth_api::filters::glob(pattern, &r.familiar_repository())
}

fn summary(img: &Image, containers: usize) -> ImageSummary {
    ImageSummary {
        id: img.id.to_string(),
        parent_id: img.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        repo_tags: img.tags.iter().map(|t| t.familiar()).collect(),
        repo_digests: img.repo_digests.iter().map(|t| t.familiar()).collect(),
        created: unix(img.config.created.as_deref()),
        size: img.size,
        shared_size: -1,
        labels: img.config.config.labels.clone(),
        containers: i64::try_from(containers).unwrap_or(i64::MAX),
        manifests: None,
    }
}

/// The `before`/`since` filter's image: its creation time.
fn created_of(all: &[Image], name: &str) -> Result<String> {
    all.iter()
        .find(|i| i.tags.iter().any(|t| t.familiar() == name || t.to_string() == name) || i.id.hex().starts_with(name))
        .and_then(|i| i.config.created.clone())
        .ok_or_else(|| Error::not_found(format!("No such image: {name}")))
}

impl ImageService {
    /// `GET /images/json`, newest first. `users` counts the containers of each image id.
    pub async fn summaries(&self, opts: &ListOptions, users: &HashMap<String, usize>) -> Result<Vec<ImageSummary>> {
        let f = &opts.filters;
        f.validate(&["dangling", "label", "reference", "before", "since", "until"]).map_err(Error::invalid)?;
        let all = self.list().await?;
        let before = f.get("before").first().map(|n| created_of(&all, n)).transpose()?;
        let since = f.get("since").first().map(|n| created_of(&all, n)).transpose()?;
        // Untagged images other images were built from are intermediate steps: only `-a` shows them.
        let parents: HashSet<&Digest> = all.iter().filter_map(|i| i.parent.as_ref()).collect();
        // The other platforms of a multi-platform image are listed under its references (Manifests).
        let platforms = self.platform_images().await?;
        let member = |i: &Image| i.tags.is_empty() && platforms.contains(&i.id);
        let mut out: Vec<&Image> = all
            .iter()
            .filter(|i| opts.all || !(i.tags.is_empty() && i.repo_digests.is_empty() && parents.contains(&i.id)))
            .filter(|i| opts.all || !member(i))
            .filter(|i| match f.get("dangling").first().map(String::as_str) {
                Some("true") | Some("1") => i.tags.is_empty() && !member(i),
                Some("false") | Some("0") => !i.tags.is_empty(),
                _ => true,
            })
            .filter(|i| f.match_labels(&i.config.config.labels))
            .filter(|i| {
                let refs = f.get("reference");
                refs.is_empty() || refs.iter().any(|p| i.tags.iter().any(|t| reference_matches(p, t)))
            })
            .filter(|i| before.as_ref().is_none_or(|b| i.config.created.as_ref() < Some(b)))
            .filter(|i| since.as_ref().is_none_or(|s| i.config.created.as_ref() > Some(s)))
            .collect();
        out.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        let mut list = Vec::with_capacity(out.len());
        for i in out {
            let mut s = summary(i, users.get(i.id.as_str()).copied().unwrap_or(0));
            if opts.manifests || opts.identity {
                s.manifests = Some(self.manifests(i, opts.identity).await?.unwrap_or_default());
            }
            list.push(s);
        }
        Ok(list)
    }

    /// `GET /images/{name}/json` of `name` (for `platform`), with its `Manifests` when asked.
    pub async fn inspect(&self, name: &str, platform: Option<&OciPlatform>, manifests: bool) -> Result<ImageInspect> {
        let img = self.resolve_for(name, platform).await?;
        let c = &img.config;
        let text = |o: &Option<String>| o.clone().unwrap_or_default();
        Ok(ImageInspect {
            id: img.id.to_string(),
            repo_tags: img.tags.iter().map(|t| t.familiar()).collect(),
            repo_digests: img.repo_digests.iter().map(|t| t.familiar()).collect(),
            parent: img.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            comment: text(&c.comment),
            created: text(&c.created),
            docker_version: text(&c.docker_version),
            author: text(&c.author),
            config: c.config.clone(),
            architecture: c.architecture.clone(),
            variant: c.variant.clone(),
            os: c.os.clone(),
            size: img.size,
            graph_driver: ImageGraphDriver { name: "overlay2".into(), data: None },
            root_fs: InspectRootFs { kind: "layers".into(), layers: c.rootfs.diff_ids.clone() },
            metadata: ImageMetadata { last_tag_time: berth_api::ZERO_TIME.into() },
            descriptor: self.descriptor(&img).await?,
            manifests: match manifests {
                true => Some(self.manifests(&img, false).await?.unwrap_or_default()),
                false => None,
            },
            identity: super::identity(&img),
            container: Some(text(&c.container)),
            container_config: Some(c.container_config.clone().unwrap_or_default()),
        })
    }

    /// `GET /images/{name}/history`, newest first: each build step still here names the history
    /// entry it ended with, as in Docker; the others are `<missing>`.
    pub async fn history(&self, name: &str, platform: Option<&OciPlatform>) -> Result<Vec<HistoryItem>> {
        let img = self.resolve_for(name, platform).await?;
        // Non-empty history entries map, in order, onto the layers.
        let mut sizes = img.layer_sizes.iter();
        let mut hist: Vec<HistoryItem> = img
            .config
            .history
            .iter()
            .map(|h| HistoryItem {
                id: "<missing>".into(),
                created: unix(h.created.as_deref()),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: None,
                size: if h.empty_layer { 0 } else { sizes.next().copied().unwrap_or(0) },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect();
        let mut cur = Some(img);
        while let Some(i) = cur.take() {
            if let Some(h) = i.config.history.len().checked_sub(1).and_then(|n| hist.get_mut(n)) {
                h.id = i.id.to_string();
                h.tags = Some(i.tags.iter().map(|t| t.familiar()).collect());
            }
            if let Some(p) = &i.parent {
                cur = self.resolve(p.as_str()).await.ok();
            }
        }
        hist.reverse();
        Ok(hist)
    }
}
