//! The one place where an error category becomes an HTTP status and Docker's JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_types::{Error, ErrorKind};

/// A handler's error; converts from any `berth_types::Error`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        if status.is_server_error() {
            // The source (an I/O error, say) is for the log; clients get Docker's message.
            match std::error::Error::source(&self.0) {
                Some(src) => tracing::error!(source = %src, source_debug = ?src, "{}", self.0.message),
                None => tracing::error!("{}", self.0.message),
            }
        }
        (status, axum::Json(serde_json::json!({ "message": self.0.message }))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn docker_error_shape() {
        let r = ApiError(Error::not_found("No such container: x")).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body = http_body_util::BodyExt::collect(r.into_body()).await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"message":"No such container: x"}"#);
        let r = ApiError(Error::not_modified()).into_response();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    }
}
