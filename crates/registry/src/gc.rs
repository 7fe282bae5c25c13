//! Online garbage collection: no read-only window. Blobs no manifest revision references are
//! deleted once older than the grace period *and* untouched for as long: every HEAD, GET, mount,
//! upload and manifest PUT touches the blobs it names, so a push that found a blob present (and is
//! about to reference it) keeps it alive. A manifest PUT touches then re-checks its blobs, so at worst
//! a racing PUT fails with MANIFEST_BLOB_UNKNOWN; it never succeeds with a blob gc removes.

use std::collections::HashSet;
use std::time::Duration;

use berth_types::Digest;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::RegResult;
use crate::uploads::{blob_key, touch_key, UploadInfo};
use crate::Registry;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub blobs_deleted: usize,
    pub bytes_freed: u64,
    pub uploads_deleted: usize,
}

fn older(t: DateTime<Utc>, grace: Duration) -> bool {
    Utc::now().signed_duration_since(t).to_std().is_ok_and(|age| age >= grace)
}

/// Every blob a manifest revision of any repository refers to, and the manifests themselves.
async fn mark(reg: &Registry) -> RegResult<HashSet<String>> {
    let mut live = HashSet::new();
    for name in crate::tags::repositories(reg).await? {
        for hex in reg.storage.children(&format!("repositories/{name}/_manifests/revisions")).await? {
            live.insert(hex.clone());
            let Ok(d) = format!("sha256:{hex}").parse::<Digest>() else { continue };
            let Some(body) = reg.storage.read(&blob_key(&d)).await? else { continue };
            let Ok(v) = serde_json::from_slice::<Value>(&body) else { continue };
            let descs = v.get("config").into_iter().chain(
                ["layers", "manifests", "blobs"].iter().filter_map(|k| v.get(*k).and_then(Value::as_array)).flatten(),
            );
            for desc in descs {
                if let Some(h) = desc.get("digest").and_then(Value::as_str).and_then(|s| s.strip_prefix("sha256:")) {
                    live.insert(h.to_string());
                }
            }
        }
    }
    Ok(live)
}

async fn touched_recently(reg: &Registry, hex: &str, grace: Duration) -> RegResult<bool> {
    let Some(b) = reg.storage.read(&format!("touched/{hex}")).await? else { return Ok(false) };
    Ok(DateTime::parse_from_rfc3339(String::from_utf8_lossy(&b).trim())
        .map(|t| !older(t.with_timezone(&Utc), grace))
        .unwrap_or(false))
}

pub async fn run(reg: &Registry, grace: Duration, upload_grace: Duration) -> RegResult<Report> {
    collect(reg, grace, upload_grace, false).await
}

/// Mark and sweep; with `dry_run` nothing is deleted and the report says what would be.
pub async fn collect(reg: &Registry, grace: Duration, upload_grace: Duration, dry_run: bool) -> RegResult<Report> {
    let mut report = Report::default();
    let live = mark(reg).await?;
    let mut dead = HashSet::new();
    for o in reg.storage.list("blobs/sha256").await? {
        let Some(hex) = o.location.filename().map(String::from) else { continue };
        if live.contains(&hex) || !older(o.last_modified, grace) || touched_recently(reg, &hex, grace).await? {
            continue;
        }
        report.blobs_deleted += 1;
        report.bytes_freed += o.size;
        dead.insert(hex.clone());
        if dry_run {
            continue;
        }
        reg.storage.delete(o.location.as_ref()).await?;
        let Ok(d) = format!("sha256:{hex}").parse::<Digest>() else { continue };
        reg.storage.delete(&touch_key(&d)).await?;
    }
    if !dead.is_empty() && !dry_run {
        for o in reg.storage.list("repositories").await? {
            let k = o.location.as_ref();
            if k.contains("/_layers/") && o.location.filename().is_some_and(|f| dead.contains(f)) {
                reg.storage.delete(k).await?;
            }
        }
    }
    for id in reg.storage.children("uploads").await? {
        let info = reg.storage.read(&format!("uploads/{id}/info")).await?;
        let started = info
            .and_then(|b| serde_json::from_slice::<UploadInfo>(&b).ok())
            .and_then(|i| DateTime::parse_from_rfc3339(&i.started).ok())
            .map(|t| t.with_timezone(&Utc));
        let objects = reg.storage.list(&format!("uploads/{id}")).await?;
        let abandoned = match started {
            Some(t) => older(t, upload_grace),
            None => objects.iter().all(|o| older(o.last_modified, upload_grace)),
        };
        if abandoned && dry_run {
            report.uploads_deleted += 1;
        } else if abandoned {
            for o in objects {
                reg.storage.delete(o.location.as_ref()).await?;
            }
            report.uploads_deleted += 1;
        }
    }
    Ok(report)
}
