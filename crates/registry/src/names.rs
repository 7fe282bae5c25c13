//! Parsing what the URL says: repository names (the spec's grammar; nothing like `../` gets
//! through), digests, tags, and which endpoint a `/v2/...` path is.

use std::collections::HashMap;

use berth_types::Digest;

use crate::error::{Code, RegError, RegResult};

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Catalog,
    Blob { name: String, digest: Digest },
    UploadStart { name: String },
    Upload { name: String, id: String },
    Manifest { name: String, reference: Reference },
    Tags { name: String },
    Referrers { name: String, digest: Digest },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => f.write_str(d.as_str()),
        }
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` per component, `/`-separated, at most 255 characters.
pub fn valid_name(n: &str) -> bool {
    n.len() <= 255
        && !n.is_empty()
        && n.split('/').all(|c| {
            let b = c.as_bytes();
            if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
                return false;
            }
            let mut i = 0;
            while i < b.len() {
                if is_alnum(b[i]) {
                    i += 1;
                    continue;
                }
                let s = i;
                while i < b.len() && !is_alnum(b[i]) {
                    i += 1;
                }
                let sep = &c[s..i];
                if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                    return false;
                }
            }
            true
        })
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

pub fn digest(s: &str) -> RegResult<Digest> {
    s.parse::<Digest>().map_err(|_| RegError::with(Code::DigestInvalid, format!("invalid digest {s:?}")))
}

fn name(n: &str) -> RegResult<String> {
    if valid_name(n) {
        Ok(n.to_string())
    } else {
        Err(RegError::with(Code::NameInvalid, format!("invalid repository name {n:?}")))
    }
}

impl Route {
    /// `path` is what follows `/v2/`.
    pub fn parse(path: &str) -> RegResult<Route> {
        if path == "_catalog" {
            return Ok(Route::Catalog);
        }
        let not_found = || RegError::with(Code::NameUnknown, "unknown endpoint");
        // The endpoint marker is the last one in the path: names may contain "blobs" too.
        let markers = ["/blobs/uploads/", "/blobs/uploads", "/blobs/", "/manifests/", "/tags/list", "/referrers/"];
        let (at, marker) = markers
            .iter()
            .filter_map(|m| path.rfind(m).map(|i| (i, *m)))
            .max_by_key(|(i, m)| (*i, m.len()))
            .ok_or_else(not_found)?;
        let n = &path[..at];
        let rest = &path[at + marker.len()..];
        Ok(match marker {
            "/blobs/uploads/" | "/blobs/uploads" if rest.is_empty() => Route::UploadStart { name: name(n)? },
            "/blobs/uploads/" => {
                if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || rest.len() > 64 {
                    return Err(RegError::with(Code::BlobUploadUnknown, "invalid upload id"));
                }
                Route::Upload { name: name(n)?, id: rest.to_string() }
            }
            "/blobs/" => Route::Blob { name: name(n)?, digest: digest(rest)? },
            "/manifests/" => {
                let reference = if rest.contains(':') {
                    Reference::Digest(digest(rest)?)
                } else if valid_tag(rest) {
                    Reference::Tag(rest.to_string())
                } else {
                    return Err(RegError::with(Code::ManifestInvalid, format!("invalid tag {rest:?}")));
                };
                Route::Manifest { name: name(n)?, reference }
            }
            "/tags/list" if rest.is_empty() => Route::Tags { name: name(n)? },
            "/referrers/" => Route::Referrers { name: name(n)?, digest: digest(rest)? },
            _ => return Err(not_found()),
        })
    }
}

/// A query string as a map (last value wins), percent-decoded.
/// Every value of a repeatable query parameter (`tag=a&tag=b`), decoded, in order.
pub fn query_all(q: &str, key: &str) -> Vec<String> {
    let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().to_string();
    q.split('&').filter_map(|p| p.split_once('=')).filter(|(k, _)| dec(k) == key).map(|(_, v)| dec(v)).collect()
}

pub fn query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().to_string();
            (dec(k), dec(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        for ok in ["a", "library/busybox", "a.b/c_d/e__f/g--h", "x0/9y"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "../etc", "a/../b", "A", "a//b", "/a", "a/", "a..b", "-a", "a_", "a/.b", &"a".repeat(256)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn routes_parse() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Route::parse("_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            Route::parse(&format!("a/blobs/b/blobs/{d}")).unwrap(),
            Route::Blob { name: "a/blobs/b".into(), digest: d.parse().unwrap() }
        );
        assert_eq!(Route::parse("x/y/blobs/uploads/").unwrap(), Route::UploadStart { name: "x/y".into() });
        assert_eq!(
            Route::parse("x/blobs/uploads/abc-1").unwrap(),
            Route::Upload { name: "x".into(), id: "abc-1".into() }
        );
        assert_eq!(
            Route::parse("x/manifests/v1.0").unwrap(),
            Route::Manifest { name: "x".into(), reference: Reference::Tag("v1.0".into()) }
        );
        assert_eq!(Route::parse("x/tags/list").unwrap(), Route::Tags { name: "x".into() });
        assert_eq!(Route::parse("../x/tags/list").unwrap_err().code, Code::NameInvalid);
        assert_eq!(Route::parse("x/blobs/sha256:zz").unwrap_err().code, Code::DigestInvalid);
        assert_eq!(Route::parse("x/blobs/uploads/../../etc").unwrap_err().code, Code::BlobUploadUnknown);
        assert_eq!(Route::parse("x/manifests/bad tag").unwrap_err().code, Code::ManifestInvalid);
    }
}
