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
    pub output: berth_daemon::container::Output,
    pub stdin: Option<Box<dyn Fn(Option<bytes::Bytes>) + Send>>,
    /// Detach keys of a TTY with stdin: typing them ends the attach, the container runs on.
    pub detach: Option<Vec<u8>>,
}

impl From<AttachStream> for Streams {
    fn from(a: AttachStream) -> Streams {
        let tty = a.tty;
        let stdin = a.stdin.map(|s| {
            Box::new(move |d: Option<bytes::Bytes>| match d {
                Some(d) => s.send(d),
                // As Docker: the client's EOF closes a StdinOnce container's stdin, but never a
                // TTY's (a terminal client going away is not the end of the input).
                None if s.close_on_eof && !tty => s.close(),
                None => {}
            }) as Box<dyn Fn(Option<bytes::Bytes>) + Send>
        });
        Streams { tty, output: berth_daemon::container::Output::Stream(a.output), stdin, detach: None }
    }
}

impl From<ExecStream> for Streams {
    fn from(x: ExecStream) -> Streams {
        let stdin = x.stdin.map(|tx| {
            Box::new(move |d: Option<bytes::Bytes>| {
                let _ = tx.send(d);
            }) as Box<dyn Fn(Option<bytes::Bytes>) + Send>
        });
        Streams { tty: x.tty, output: berth_daemon::container::Output::Stream(x.output), stdin, detach: None }
    }
}

impl Streams {
    /// Sets the detach keys (Docker's notation) when they apply: a TTY with stdin attached.
    pub fn with_detach_keys(mut self, spec: &str) -> Result<Streams, String> {
        let keys = berth_api::detach::parse(spec)?;
        if self.tty && self.stdin.is_some() {
            self.detach = Some(keys);
        }
        Ok(self)
    }
}

/// Answers an attach or exec start: with `Upgrade: tcp`, a 101 and a task relaying both ways over
/// the hijacked connection; without it (old clients), a 200 with the output as the body.
/// `ready`: output is there at once (an attach with `logs`), see `HEAD_GAP`.
pub fn respond(mut req: Request, attach: impl Into<Streams>, ready: bool) -> Response {
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
            Ok(upgraded) if ready => relay(after_head(upgraded, true).await, attach).await,
            Ok(upgraded) => relay(TokioIo::new(upgraded), attach).await,
            Err(e) => tracing::warn!("attach upgrade failed: {e}"),
        }
    });
    switching_protocols(tty)
}

/// Output ready at once (an attach's logs) must not share the client's first read with the 101:
/// docker-py reads the head through a buffered reader, then reads the raw socket, so bytes that
/// came with the head are lost (an exited container's logs came back empty now and then). On the
/// UNIX socket the output waits until the client has read the head (bounded); on TCP, where that
/// cannot be seen, for a moment — Docker's attach has that moment by nature (it opens and parses
/// the log first).
async fn head_read(s: &tokio::net::UnixStream) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while berth_sys::socket::unread_by_peer(s).is_ok_and(|n| n > 0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// The upgraded connection, once the client has read the 101 (see `head_read`); where that
/// cannot be seen (TCP), after a moment if `gap`.
async fn after_head(upgraded: hyper::upgrade::Upgraded, gap: bool) -> Box<dyn Duplex> {
    match upgraded.downcast::<TokioIo<tokio::net::UnixStream>>() {
        Ok(parts) => {
            let unix = parts.io.into_inner();
            head_read(&unix).await;
            Box::new(Rewind { pre: parts.read_buf, io: unix })
        }
        Err(upgraded) => {
            if gap {
                tokio::time::sleep(HEAD_GAP).await;
            }
            Box::new(TokioIo::new(upgraded))
        }
    }
}

trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

/// See `head_read`.
const HEAD_GAP: std::time::Duration = std::time::Duration::from_millis(5);

/// An upgraded connection with the bytes hyper read past the request (early stdin) in front.
struct Rewind<T> {
    pre: bytes::Bytes,
    io: T,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            let head = self.pre.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The `101` that hands the connection over to the raw stream.
fn switching_protocols(tty: bool) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(tty)));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    r
}

/// Like [`respond`], but the streams are made only once the connection is upgraded (the 101 is on
/// the wire): an exec's process starts after its client reads the headers, as with Docker. A
/// client that reads the 101 through a buffered reader (docker-py) would otherwise lose output that
/// arrived in the same read as the headers.
pub async fn respond_deferred<F, Fut>(mut req: Request, tty: bool, start: F) -> Response
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Streams> + Send + 'static,
{
    if !wants_upgrade(&req) {
        return respond(req, start().await, false);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // The process starts now; a short one's output must not beat the head either.
                let io = after_head(upgraded, false).await;
                relay(io, start().await).await
            }
            Err(e) => tracing::warn!("exec upgrade failed: {e}"),
        }
    });
    switching_protocols(tty)
}

/// Output until the container's output ends, stdin until the client's EOF; the connection closes
/// when the output ends, whatever the client is doing with its write side.
async fn relay<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(io: IO, mut attach: Streams) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let stdin = attach.stdin.take();
    let mut scanner = attach.detach.take().map(berth_api::detach::Scanner::new);
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
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
                    let Some(s) = &stdin else { continue };
                    let data = match scanner.as_mut().map(|sc| sc.feed(&buf[..n])) {
                        None => buf[..n].to_vec(),
                        Some(berth_api::detach::Scan::Forward(d)) => d,
                        Some(berth_api::detach::Scan::Detach(d)) => {
                            if !d.is_empty() {
                                s(Some(bytes::Bytes::from(d)));
                            }
                            let _ = detached_tx.send(());
                            return;
                        }
                    };
                    if !data.is_empty() {
                        s(Some(bytes::Bytes::from(data)));
                    }
                }
            }
        }
    });
    // A oneshot must not be polled again once it resolved (tokio panics): `watching` guards it.
    let mut watching = true;
    loop {
        let (s, data) = tokio::select! {
            m = attach.output.recv() => match m {
                Some(m) => m,
                None => break,
            },
            r = &mut detached, if watching => {
                // Ok: the detach keys were typed, the attach ends and the container runs on.
                // Err: stdin ended without them; the output goes on.
                if r.is_ok() {
                    break;
                }
                watching = false;
                continue;
            }
        };
        let res = if attach.tty { wr.write_all(&data).await } else { wr.write_all(&stdcopy::frame(s, &data)).await };
        if res.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
    reader.abort();
}
