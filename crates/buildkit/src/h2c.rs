//! gRPC client calls over an already upgraded connection (berthd's side of `/session`, and the
//! replay tests' side of `/grpc`): hyper's HTTP/2 client as the tower service tonic calls.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2::{Connection, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// One HTTP/2 connection's request sender, as a tower service.
#[derive(Clone)]
pub struct H2(SendRequest<tonic::body::Body>);

impl tower::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// The client half of HTTP/2 (prior knowledge) on `io`; the connection must be polled to run.
pub async fn handshake<IO>(
    io: IO,
) -> hyper::Result<(SendRequest<tonic::body::Body>, Connection<IO, tonic::body::Body, TokioExecutor>)>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // The build context comes this way: HTTP/2's 64 KiB default window would pace a 50 MB
        // context at one round trip per 64 KiB.
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .handshake(io)
        .await
}

/// A tonic client over a connection's sender, ready for a call.
pub async fn grpc(send: SendRequest<tonic::body::Body>) -> hyper::Result<tonic::client::Grpc<H2>> {
    let mut g = tonic::client::Grpc::with_origin(H2(send), http::Uri::from_static("http://buildkit"));
    g.ready().await?;
    Ok(g)
}
