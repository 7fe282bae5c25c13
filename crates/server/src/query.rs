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
