//! ADD of a URL: the file is downloaded by the daemon, as Docker's classic builder does.

use berth_types::{Digest, Error, Result};

use crate::copy::Source;
use crate::Output;

/// Downloads bigger than this are refused rather than held in memory.
const MAX_DOWNLOAD: usize = 512 << 20;

pub(crate) async fn download(url: &str, checksum: Option<&str>, out: &Output) -> Result<Source> {
    let fail = |e: &dyn std::fmt::Display| Error::invalid(format!("failed to download {url}: {e}"));
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && !n.contains(':'))
        .ok_or_else(|| Error::invalid(format!("cannot determine filename from url: {url}")))?
        .to_string();
    let mut resp = reqwest::get(url).await.map_err(|e| fail(&e))?;
    if !resp.status().is_success() {
        return Err(Error::invalid(format!(
            "failed to GET {url} with status {}: {}",
            resp.status(),
            resp.status().canonical_reason().unwrap_or("")
        )));
    }
    let mtime = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0);
    let mut data = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(&e))? {
        if out.gone() {
            return Err(crate::cancelled());
        }
        data.extend_from_slice(&chunk);
        if data.len() > MAX_DOWNLOAD {
            return Err(fail(&format!("larger than {} MiB", MAX_DOWNLOAD >> 20)));
        }
    }
    if let Some(want) = checksum {
        let got = Digest::of(&data);
        if got.as_str() != want {
            return Err(Error::invalid(format!("digest mismatch for {url}: expected {want}, got {got}")));
        }
    }
    // Downloaded files are 0600, as with Docker.
    Ok(Source::Inline { name, data, mode: 0o600, mtime })
}
