//! Tag lists and the catalog, both paginated with `n`, `last` and a `Link` to the next page.

use std::collections::{BTreeSet, HashMap};

use axum::response::{IntoResponse, Response};

use crate::error::{Code, RegError, RegResult};
use crate::Registry;

/// `n` and `last` applied to a sorted list; the `Link` header when more remain.
fn page(all: Vec<String>, q: &HashMap<String, String>, base: &str) -> RegResult<(Vec<String>, Option<String>)> {
    let n = match q.get("n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| RegError::with(Code::PaginationNumberInvalid, n.clone()))?),
        None => None,
    };
    let after: Vec<String> = match q.get("last") {
        Some(l) => all.into_iter().filter(|t| t > l).collect(),
        None => all,
    };
    match n {
        // "When n is zero, this endpoint MUST return an empty list, and MUST NOT include a Link".
        Some(0) => Ok((Vec::new(), None)),
        Some(n) if after.len() > n => {
            let items: Vec<String> = after.into_iter().take(n).collect();
            let last = items.last().cloned().unwrap_or_default();
            Ok((items, Some(format!("<{base}?n={n}&last={last}>; rel=\"next\""))))
        }
        _ => Ok((after, None)),
    }
}

pub(crate) async fn list(reg: &Registry, name: &str, q: &HashMap<String, String>) -> RegResult<Response> {
    let repo = format!("repositories/{name}");
    if reg.storage.children(&repo).await?.is_empty() {
        return Err(RegError::with(Code::NameUnknown, name.to_string()));
    }
    let tags = reg.storage.children(&format!("{repo}/_manifests/tags")).await?;
    let (tags, link) = page(tags, q, &format!("/v2/{name}/tags/list"))?;
    let body = axum::Json(serde_json::json!({"name": name, "tags": tags}));
    Ok(match link {
        Some(l) => ([("Link", l)], body).into_response(),
        None => body.into_response(),
    })
}

/// Every repository: any path under `repositories/` that holds `_manifests` or `_layers`.
pub(crate) async fn repositories(reg: &Registry) -> RegResult<Vec<String>> {
    let mut names = BTreeSet::new();
    for o in reg.storage.list("repositories").await? {
        let k = o.location.as_ref().strip_prefix("repositories/").unwrap_or("").to_string();
        for marker in ["/_manifests/", "/_layers/"] {
            if let Some(i) = k.find(marker) {
                names.insert(k[..i].to_string());
            }
        }
    }
    Ok(names.into_iter().collect())
}

pub(crate) async fn catalog(
    reg: &Registry,
    q: &HashMap<String, String>,
    visible: impl Fn(&str) -> bool,
) -> RegResult<Response> {
    let all: Vec<String> = repositories(reg).await?.into_iter().filter(|r| visible(r)).collect();
    let (repos, link) = page(all, q, "/v2/_catalog")?;
    let body = axum::Json(serde_json::json!({"repositories": repos}));
    Ok(match link {
        Some(l) => ([("Link", l)], body).into_response(),
        None => body.into_response(),
    })
}
