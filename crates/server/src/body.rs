//! Request bodies are read before a route answers.
//!
//! A route that answers without reading what the client sent (a tag, a kill, an error found in the
//! path) leaves the body unread; closing a socket with unread data makes the kernel send a reset,
//! which can destroy the answer on its way and leave the client with "connection reset" instead of
//! the error. So every body, except those a route streams (build contexts, image archives and
//! imports, `docker cp` archives), is read here first, up to the JSON limit; a larger one is
//! drained (bounded in size and time) and refused in Docker's format. A streamed body the route
//! let go of unread (it failed before reading: a bad path, an unknown container) is drained the
//! same way before the answer goes out.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_types::Error;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::ApiError;

/// Largest body drained from a client before its oversized request is answered.
const DRAIN_MAX: u64 = 256 << 20;
/// And for how long.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// Routes that read their body as a stream, of any size.
fn streams_body(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST => path == "/build" || path == "/images/load" || path == "/images/create",
        Method::PUT => path.ends_with("/archive"),
        _ => false,
    }
}

pub async fn settle(req: Request, next: Next) -> Response {
    if streams_body(req.method(), req.uri().path()) {
        let (parts, body) = req.into_parts();
        let slot = Arc::new(Mutex::new(None));
        let body = Body::new(Returning { inner: Some(body), slot: slot.clone() });
        let resp = next.run(Request::from_parts(parts, body)).await;
        // Dropped unread (or half read) by a route that has answered: drain what is left.
        let left = slot.lock().expect("body slot").take();
        if let Some(left) = left {
            let _ = tokio::time::timeout(DRAIN_TIME, read(left, 0)).await;
        }
        return resp;
    }
    let (parts, body) = req.into_parts();
    let (kept, over) = match tokio::time::timeout(DRAIN_TIME, read(body, crate::MAX_JSON)).await {
        Ok(Ok(r)) => r,
        Ok(Err(())) => return ApiError(Error::invalid("failed to read request body")).into_response(),
        Err(_) => return ApiError(Error::invalid("request body not received in time")).into_response(),
    };
    if over {
        let msg = format!("request body too large: at most {} MiB", crate::MAX_JSON >> 20);
        return ApiError(Error::invalid(msg)).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(kept))).await
}

/// Reads `body` keeping up to `keep` bytes; past that it drains (up to `DRAIN_MAX`) and reports
/// the body as over the limit.
async fn read(body: Body, keep: usize) -> Result<(Vec<u8>, bool), ()> {
    let mut body = body.into_data_stream();
    let (mut kept, mut over, mut drained) = (Vec::new(), false, 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| ())?;
        if !over && kept.len() + chunk.len() <= keep {
            kept.extend_from_slice(&chunk);
            continue;
        }
        over = true;
        drained += chunk.len() as u64;
        if drained > DRAIN_MAX {
            break;
        }
    }
    Ok((kept, over))
}

/// A streamed request body that, when the route drops it, hands what is left back to `settle`.
struct Returning {
    inner: Option<Body>,
    slot: Arc<Mutex<Option<Body>>>,
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match self.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Some(b) = self.inner.take().filter(|b| !http_body::Body::is_end_stream(b)) {
            *self.slot.lock().expect("body slot") = Some(b);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_streaming_routes_skip_the_read() {
        use axum::http::Method;
        assert!(super::streams_body(&Method::POST, "/build"));
        assert!(super::streams_body(&Method::PUT, "/containers/x/archive"));
        assert!(!super::streams_body(&Method::POST, "/containers/create"));
        assert!(!super::streams_body(&Method::POST, "/images/x/tag"));
        assert!(!super::streams_body(&Method::GET, "/containers/x/archive"));
    }
}
