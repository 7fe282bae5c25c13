//! A typed Engine API client over a UNIX socket or TCP.

use berth_api::progress::JsonMessage;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::AsyncRead;

use crate::transport::{Endpoint, Io, Transport};

/// The newest API version this client speaks; lowered to the daemon's by negotiation.
pub const API_VERSION: &str = berth_api::API_VERSION;
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// An error answer from the daemon, with Docker's message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for ApiError {}

#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    /// `/v1.xx`: fixed by `$DOCKER_API_VERSION`, else negotiated with `/_ping` on first use.
    prefix: Arc<tokio::sync::OnceCell<String>>,
    fixed: Option<String>,
}

type Body = BoxBody<Bytes, std::io::Error>;

pub fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A request body streamed from any reader (a tar file for import, say).
pub fn reader_body(r: impl AsyncRead + Send + Sync + 'static) -> Body {
    use futures_util::TryStreamExt;
    let s = tokio_util::io::ReaderStream::new(r).map_ok(Frame::data);
    BodyExt::boxed(StreamBody::new(s))
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn version_num(v: &str) -> (u32, u32) {
    let (a, b) = v.split_once('.').unwrap_or((v, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

impl Client {
    /// `unix:///path`, `tcp://host:port` or `ssh://user@host`, without TLS.
    pub fn new(host: &str) -> Result<Client> {
        Client::connect_to(&Endpoint::plain(host))
    }

    pub fn connect_to(ep: &Endpoint) -> Result<Client> {
        let fixed = std::env::var("BERTH_API_VERSION")
            .or_else(|_| std::env::var("DOCKER_API_VERSION"))
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| format!("/v{}", v.trim_start_matches('v')));
        Ok(Client { transport: Transport::new(ep)?, prefix: Arc::new(tokio::sync::OnceCell::new()), fixed })
    }

    async fn connect(&self) -> Result<Box<dyn Io>> {
        self.transport.connect().await
    }

    /// The API version both sides speak: ours, or the daemon's `Api-Version` if older (as the docker CLI
    /// negotiates). A daemon that does not answer `/_ping` gets ours.
    pub async fn api_prefix(&self) -> Result<String> {
        if let Some(f) = &self.fixed {
            return Ok(f.clone());
        }
        let p = self
            .prefix
            .get_or_try_init(|| async {
                let io = TokioIo::new(self.connect().await?);
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                let req = Request::builder().method(Method::GET).uri("/_ping").header("Host", "berth").body(empty())?;
                let resp = sender.send_request(req).await?;
                let server = resp.headers().get("api-version").and_then(|v| v.to_str().ok()).unwrap_or(API_VERSION);
                let v = if version_num(server) < version_num(API_VERSION) { server } else { API_VERSION };
                Ok::<_, anyhow::Error>(format!("/v{v}"))
            })
            .await?;
        Ok(p.clone())
    }

    /// Sends one request on a fresh connection.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        self.send_with(method, path, body, content_type, &[]).await
    }

    /// `send` with extra headers (`X-Registry-Auth`).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>> {
        let prefix = self.api_prefix().await?;
        let io = TokioIo::new(self.connect().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut req = Request::builder().method(method).uri(format!("{prefix}{path}")).header("Host", "berth");
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Ok(sender.send_request(req.body(body)?).await?)
    }

    /// Turns a non-2xx answer into an `ApiError` with the daemon's message.
    pub async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>> {
        if resp.status().is_success() || resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(ApiError { status, message }.into())
    }

    /// A request whose answer is JSON (or empty, as `Value::Null`).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (b, ct) = match body {
            Some(v) => (full(serde_json::to_vec(v)?), Some("application/json")),
            None => (empty(), None),
        };
        let resp = Self::check(self.send(method, path, b, ct).await?).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("bad JSON from daemon for {path}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call_as(Method::GET, path, None).await
    }

    /// [`call`](Self::call), the answer decoded into its `berth_api` type.
    pub async fn call_as<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&Value>) -> Result<T> {
        let v = self.call(method, path, body).await?;
        serde_json::from_value(v).with_context(|| format!("unexpected answer from daemon for {path}"))
    }

    /// `POST` with Upgrade: tcp; returns the raw bidirectional stream after `101`.
    pub async fn hijack(&self, path: &str) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        self.hijack_with(path, None).await
    }

    /// `hijack` with a JSON body (exec start sends `{"Detach":false,"Tty":…}`).
    pub async fn hijack_with(&self, path: &str, body: Option<&Value>) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let prefix = self.api_prefix().await?;
        let io = TokioIo::new(self.connect().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{prefix}{path}"))
            .header("Host", "berth")
            .header("Connection", "Upgrade")
            .header("Upgrade", "tcp");
        let req = match body {
            Some(v) => req.header("Content-Type", "application/json").body(full(serde_json::to_vec(v)?))?,
            None => req.body(empty())?,
        };
        let resp = Self::check(sender.send_request(req).await?).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            bail!("daemon did not upgrade the connection ({})", resp.status());
        }
        let up = hyper::upgrade::on(resp).await.map_err(|e| anyhow!("upgrade: {e}"))?;
        Ok(TokioIo::new(up))
    }
}

/// Reads a JSON-lines body (pull, push, build), calling `f` on each message until it returns a
/// value or the body ends.
pub async fn read_json_lines<M: DeserializeOwned, T>(
    resp: Response<Incoming>,
    mut f: impl FnMut(M) -> Result<Option<T>>,
) -> Result<Option<T>> {
    use futures_util::StreamExt;
    let mut body = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let Ok(v) = serde_json::from_slice::<M>(&line) else { continue };
            if let Some(done) = f(v)? {
                return Ok(Some(done));
            }
        }
    }
    Ok(None)
}

/// A progress message as the docker CLI prints it without a terminal (no per-byte progress).
pub fn print_status(v: &JsonMessage) {
    let status = v.status.as_deref().unwrap_or("");
    if status.is_empty() || v.progress_detail.as_ref().is_some_and(|p| p.current.is_some()) {
        return;
    }
    match v.id.as_deref() {
        Some(id) => println!("{id}: {status}"),
        None => println!("{status}"),
    }
}
