//! The gRPC server on a hijacked `/grpc` connection: HTTP/2 by hyper, gRPC framing and status by
//! tonic's server helpers, one match on the method path (no generated code: the messages are
//! declared in `proto`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use tonic::body::Body;
use tonic::{Request, Response, Status};

use crate::control;
use crate::BuildKit;

use crate::control::BoxStream as StatusStream;

pub(crate) async fn serve<IO>(bk: Arc<BuildKit>, io: IO)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let bk = bk.clone();
        async move { Ok::<_, Infallible>(route(bk, req).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(std::time::Duration::from_secs(30))
        .serve_connection(io, svc);
    if let Err(e) = conn.await {
        tracing::debug!("buildkit grpc connection: {e}");
    }
}

async fn route(bk: Arc<BuildKit>, req: http::Request<Incoming>) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    tracing::debug!(method = %path, "buildkit call");
    match path.as_str() {
        "/moby.buildkit.v1.Control/Info" => {
            unary(req, |_: Request<crate::proto::Empty>| async move { Ok(control::info()) }).await
        }
        "/moby.buildkit.v1.Control/ListWorkers" => {
            unary(req, |_: Request<crate::proto::Empty>| async move { Ok(control::list_workers(&bk)) }).await
        }
        "/moby.buildkit.v1.Control/Solve" => {
            unary(req, |r| async move { control::solve(&bk, r.into_inner()).await }).await
        }
        "/moby.buildkit.v1.Control/Status" => {
            streaming(req, |r| async move { control::status(&bk, r.into_inner()).await }).await
        }
        "/moby.buildkit.v1.Control/DiskUsage" => {
            unary(req, |r| async move { control::disk_usage(&bk, r.into_inner()).await }).await
        }
        "/moby.buildkit.v1.Control/Prune" => {
            streaming(req, |r| async move { control::prune(&bk, r.into_inner()).await }).await
        }
        // No build history is kept: an empty stream, as a BuildKit with history disabled answers.
        "/moby.buildkit.v1.Control/ListenBuildHistory" => {
            streaming(req, |_: Request<crate::proto::BuildHistoryRequest>| async move {
                Ok(Box::pin(futures_util::stream::empty()) as StatusStream<crate::proto::Empty>)
            })
            .await
        }
        "/moby.buildkit.v1.frontend.LLBBridge/Ping" => {
            unary(req, |_: Request<crate::proto::Empty>| async move { Ok(control::ping(&bk)) }).await
        }
        "/moby.buildkit.v1.frontend.LLBBridge/Solve" => {
            unary(req, |r| async move {
                let f = control::forwarder_of(&bk, r.metadata()).await?;
                control::gateway_solve(&bk, &f, r.into_inner()).await
            })
            .await
        }
        "/moby.buildkit.v1.frontend.LLBBridge/Return" => {
            unary(req, |r: Request<crate::proto::ReturnRequest>| async move {
                let f = control::forwarder_of(&bk, r.metadata()).await?;
                f.ret(r.into_inner());
                Ok(crate::proto::Empty {})
            })
            .await
        }
        "/moby.buildkit.v1.frontend.LLBBridge/Inputs" => {
            unary(req, |_: Request<crate::proto::Empty>| async move { Ok(crate::proto::InputsResponse::default()) })
                .await
        }
        "/moby.buildkit.v1.frontend.LLBBridge/Warn" => {
            unary(req, |r: Request<crate::proto::WarnRequest>| async move {
                let f = control::forwarder_of(&bk, r.metadata()).await?;
                f.warn(r.into_inner());
                Ok(crate::proto::Empty {})
            })
            .await
        }
        other => Status::unimplemented(format!("{other} is not served by berthd's BuildKit API")).into_http(),
    }
}

/// Runs a handler that tonic's service traits call through `&mut self` (once per request).
fn call_once<Req, T, F, Fut>(slot: &mut Option<F>, r: Request<Req>) -> CallFuture<T>
where
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<T, Status>> + Send + 'static,
{
    match slot.take() {
        Some(f) => {
            let fut = f(r);
            Box::pin(async move { fut.await.map(Response::new) })
        }
        None => Box::pin(async { Err(Status::internal("called twice")) }),
    }
}

type CallFuture<T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;

/// A unary call: decodes `Req`, runs `f`, encodes its answer or status.
fn unary<Req, Resp, F, Fut>(req: http::Request<Incoming>, f: F) -> BoxFuture<'static, http::Response<Body>>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Request<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    struct Once<F>(Option<F>);
    impl<Req, Resp, F, Fut> tonic::server::UnaryService<Req> for Once<F>
    where
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        type Response = Resp;
        type Future = CallFuture<Resp>;
        fn call(&mut self, r: Request<Req>) -> Self::Future {
            call_once(&mut self.0, r)
        }
    }
    Box::pin(async move {
        let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default());
        g.unary(Once(Some(f)), req).await
    })
}

/// A server-streaming call.
fn streaming<Req, Resp, F, Fut>(req: http::Request<Incoming>, f: F) -> BoxFuture<'static, http::Response<Body>>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Request<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<StatusStream<Resp>, Status>> + Send + 'static,
{
    struct Once<F>(Option<F>);
    impl<Req, Resp, F, Fut> tonic::server::ServerStreamingService<Req> for Once<F>
    where
        Resp: Send + 'static,
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<StatusStream<Resp>, Status>> + Send + 'static,
    {
        type Response = Resp;
        type ResponseStream = StatusStream<Resp>;
        type Future = CallFuture<StatusStream<Resp>>;
        fn call(&mut self, r: Request<Req>) -> Self::Future {
            call_once(&mut self.0, r)
        }
    }
    Box::pin(async move {
        let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default());
        g.server_streaming(Once(Some(f)), req).await
    })
}
