//! The distribution spec's error codes, and the one place they become a status and a JSON body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::storage::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    RangeInvalid,
    TooManyRequests,
    /// A manifest over the size limit: the spec's 413.
    ManifestTooLarge,
    /// More `tag` parameters on a manifest PUT than one request may carry: the spec's 414.
    TooManyTags,
    /// `n` of a list is not a number (distribution's code).
    PaginationNumberInvalid,
    Unknown,
}

impl Code {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        use Code::*;
        match self {
            BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry"),
            BlobUploadInvalid => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", "blob upload invalid"),
            BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
            DigestInvalid => {
                (StatusCode::BAD_REQUEST, "DIGEST_INVALID", "provided digest did not match uploaded content")
            }
            ManifestBlobUnknown => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"),
            ManifestInvalid => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "manifest invalid"),
            ManifestUnknown => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown"),
            NameInvalid => (StatusCode::BAD_REQUEST, "NAME_INVALID", "invalid repository name"),
            NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry"),
            SizeInvalid => (StatusCode::BAD_REQUEST, "SIZE_INVALID", "provided length did not match content length"),
            Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required"),
            Denied => (StatusCode::FORBIDDEN, "DENIED", "requested access to the resource is denied"),
            Unsupported => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "The operation is unsupported."),
            RangeInvalid => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID", "invalid content range"),
            TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "too many requests"),
            ManifestTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID", "manifest invalid"),
            TooManyTags => (StatusCode::URI_TOO_LONG, "MANIFEST_INVALID", "too many tags in one request"),
            PaginationNumberInvalid => {
                (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
            }
            Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "unknown error"),
        }
    }
}

/// A handler's failure: a code, an optional detail, and headers some codes need (challenges).
#[derive(Debug)]
pub struct RegError {
    pub code: Code,
    pub detail: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

pub type RegResult<T> = Result<T, RegError>;

impl RegError {
    pub fn new(code: Code) -> RegError {
        RegError { code, detail: None, headers: Vec::new() }
    }
    pub fn with(code: Code, detail: impl Into<String>) -> RegError {
        RegError { code, detail: Some(detail.into()), headers: Vec::new() }
    }
    pub fn header(mut self, k: &'static str, v: String) -> RegError {
        self.headers.push((k, v));
        self
    }
}

impl From<Code> for RegError {
    fn from(c: Code) -> Self {
        RegError::new(c)
    }
}

impl From<StorageError> for RegError {
    fn from(e: StorageError) -> Self {
        crate::metrics::storage_error();
        RegError::with(Code::Unknown, format!("storage: {e}"))
    }
}

impl IntoResponse for RegError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.code.parts();
        let mut entry = serde_json::json!({"code": code, "message": message});
        if let Some(d) = &self.detail {
            entry["detail"] = d.clone().into();
        }
        if status.is_server_error() {
            tracing::error!("{code}: {}", self.detail.as_deref().unwrap_or(""));
        }
        let mut r = (status, axum::Json(serde_json::json!({"errors": [entry]}))).into_response();
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    }
}
