//! Query strings the way Docker's Go server reads them.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use berth_api::filters::Filters;
use berth_types::Error;

use crate::error::ApiError;

/// All query parameters, repeated keys kept in order.
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, Vec<String>>);

impl Query {
    pub fn parse(q: &str) -> Query {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            m.entry(dec(k)).or_default().push(dec(v));
        }
        Query(m)
    }

    pub fn str(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, k: &str) -> Vec<String> {
        self.0.get(k).cloned().unwrap_or_default()
    }

    /// Go's `httputils.BoolValue`: anything but "", "0", "no", "false", "none" is true.
    pub fn bool(&self, k: &str) -> bool {
        self.str(k)
            .is_some_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "no" | "false" | "none"))
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.str(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => {
                v.parse().map(Some).map_err(|_| ApiError(Error::invalid(format!("invalid value for {k}: {v:?}"))))
            }
        }
    }

    pub fn filters(&self) -> Result<Filters, ApiError> {
        Filters::parse(self.str("filters").unwrap_or("")).map_err(|e| ApiError(Error::invalid(e)))
    }
}

/// Docker's `since`/`until`: unix seconds, optionally with a fractional part, or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<i64, ApiError> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(d.timestamp_nanos_opt().unwrap_or(0));
    }
    // Any value a client sends must parse or fail cleanly: digits only, and no overflow.
    let bad = || ApiError(Error::invalid(format!("invalid timestamp {s:?}")));
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let frac = format!("{frac:0<9}");
    let nanos: i64 = frac[..9].parse().map_err(|_| bad())?;
    secs.checked_mul(1_000_000_000).and_then(|n| n.checked_add(nanos)).ok_or_else(bad)
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Query::parse(parts.uri.query().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let q = Query::parse("force=1&v=False&name=a%2Fb&changes=CMD+x&changes=ENV+A%3D1&t=");
        assert!(q.bool("force"));
        assert!(!q.bool("v"));
        assert!(!q.bool("missing"));
        assert_eq!(q.str("name"), Some("a/b"));
        assert_eq!(q.all("changes"), vec!["CMD x".to_string(), "ENV A=1".into()]);
        assert_eq!(q.int("t").unwrap(), None);
    }
}
