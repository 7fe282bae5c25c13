//! Hijacked connections: `101 UPGRADED`, then raw bytes both ways (attach, exec start).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use berth_api::stdcopy;
use berth_daemon::container::{AttachStream, ExecStream};
use futures_util::stream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

fn wants_upgrade(req: &Request) -> bool {
    req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// What a hijacked connection relays: output to the client, client bytes to a stdin (None = EOF).
pub struct Streams {
    pub tty: bool,
    pub output: tokio::sync::mpsc::UnboundedReceiver<(u8, bytes::Bytes)>,
    pub stdin: Option<Box<dyn Fn(Option<bytes::Bytes>) + Send>>,
}

impl From<AttachStream> for Streams {
    fn from(a: AttachStream) -> Streams {
        let stdin = a.stdin.map(|s| {
            Box::new(move |d: Option<bytes::Bytes>| match d {
                Some(d) => s.send(d),
                None if s.close_on_eof => s.close(),
                None => {}
            }) as Box<dyn Fn(Option<bytes::Bytes>) + Send>
        });
        Streams { tty: a.tty, output: a.output, stdin }
    }
}

impl From<ExecStream> for Streams {
    fn from(x: ExecStream) -> Streams {
        let stdin = x.stdin.map(|tx| {
            Box::new(move |d: Option<bytes::Bytes>| {
                let _ = tx.send(d);
            }) as Box<dyn Fn(Option<bytes::Bytes>) + Send>
        });
        Streams { tty: x.tty, output: x.output, stdin }
    }
}

/// Answers an attach or exec start: with `Upgrade: tcp`, a 101 and a task relaying both ways over
/// the hijacked connection; without it (old clients), a 200 with the output as the body.
pub fn respond(mut req: Request, attach: impl Into<Streams>) -> Response {
    let attach: Streams = attach.into();
    let tty = attach.tty;
    if !wants_upgrade(&req) {
        let out = stream::unfold(attach, move |mut a| async move {
            let (s, data) = a.output.recv().await?;
            let bytes = if a.tty { data.to_vec() } else { stdcopy::frame(s, &data) };
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)), a))
        });
        let mut r = Response::new(Body::from_stream(out));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(tty)));
        return r;
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => relay(TokioIo::new(upgraded), attach).await,
            Err(e) => tracing::warn!("attach upgrade failed: {e}"),
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(tty)));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    r
}

/// Output until the container's output ends, stdin until the client's EOF; the connection closes
/// when the output ends, whatever the client is doing with its write side.
async fn relay<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(io: IO, mut attach: Streams) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let stdin = attach.stdin.take();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    if let Some(s) = &stdin {
                        s(None);
                    }
                    return;
                }
                Ok(n) => {
                    if let Some(s) = &stdin {
                        s(Some(bytes::Bytes::copy_from_slice(&buf[..n])));
                    }
                }
            }
        }
    });
    while let Some((s, data)) = attach.output.recv().await {
        let res = if attach.tty { wr.write_all(&data).await } else { wr.write_all(&stdcopy::frame(s, &data)).await };
        if res.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
    reader.abort();
}
