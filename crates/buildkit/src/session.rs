//! `POST /session`: the client's side of a build (the build context, secrets, registry
//! credentials) served by the client over a hijacked connection on which berthd is the gRPC
//! *client*. Sessions are kept by id until their connection closes; a Solve names its session.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_types::{Error, Result};
use hyper::client::conn::http2::SendRequest;
use tokio::sync::Notify;

use crate::h2c::H2;
use crate::proto;

/// How long a Solve waits for its session to connect (the client dials both at once).
const SESSION_WAIT: Duration = Duration::from_secs(15);

/// A connected client session.
#[derive(Clone)]
pub struct Session {
    pub id: String,
    /// The client's key for what it sends (buildx: its context folder), by which berthd keeps
    /// a context between builds; empty when the client gave none.
    pub shared_key: String,
    /// gRPC methods the client serves (`/moby.filesync.v1.FileSync/DiffCopy`, ...).
    methods: Arc<HashSet<String>>,
    send: SendRequest<tonic::body::Body>,
}

impl Session {
    pub fn supports(&self, method: &str) -> bool {
        self.methods.contains(method)
    }

    /// A tonic client over this session's connection.
    pub(crate) async fn grpc(&self) -> Result<tonic::client::Grpc<H2>> {
        crate::h2c::grpc(self.send.clone()).await.map_err(|e| Error::invalid(format!("build session {}: {e}", self.id)))
    }

    /// `moby.buildkit.secrets.v1.Secrets/GetSecret`: `None` when the client has no such secret.
    pub async fn secret(&self, id: &str) -> Result<Option<Vec<u8>>> {
        const M: &str = "/moby.buildkit.secrets.v1.Secrets/GetSecret";
        if !self.supports(M) {
            return Ok(None);
        }
        let mut g = self.grpc().await?;
        let codec = tonic_prost::ProstCodec::<proto::GetSecretRequest, proto::GetSecretResponse>::default();
        let req = tonic::Request::new(proto::GetSecretRequest { id: id.to_string() });
        match g.unary(req, http::uri::PathAndQuery::from_static(M), codec).await {
            Ok(r) => Ok(Some(r.into_inner().data)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(Error::invalid(format!("secret {id}: {}", s.message()))),
        }
    }

    /// `moby.filesync.v1.Auth/Credentials` for a registry host: `(user, secret)`, empty when none.
    pub async fn credentials(&self, host: &str) -> Result<(String, String)> {
        const M: &str = "/moby.filesync.v1.Auth/Credentials";
        if !self.supports(M) {
            return Ok(Default::default());
        }
        let mut g = self.grpc().await?;
        let codec = tonic_prost::ProstCodec::<proto::CredentialsRequest, proto::CredentialsResponse>::default();
        let req = tonic::Request::new(proto::CredentialsRequest { host: host.to_string() });
        let r = g
            .unary(req, http::uri::PathAndQuery::from_static(M), codec)
            .await
            .map_err(|s| Error::invalid(format!("credentials for {host}: {}", s.message())))?
            .into_inner();
        Ok((r.username, r.secret))
    }
}

/// `RUN --mount=type=secret` reads the client's secrets through its session.
impl berth_builder::Secrets for Session {
    fn get(&self, id: &str) -> futures_util::future::BoxFuture<'_, Result<Option<Vec<u8>>>> {
        let id = id.to_string();
        Box::pin(async move { self.secret(&id).await })
    }
}

/// `RUN --mount=type=ssh` reaches the client's agents through its session.
impl berth_builder::SshAgents for Session {
    fn check(&self, id: &str) -> futures_util::future::BoxFuture<'_, Result<bool>> {
        let id = id.to_string();
        Box::pin(async move {
            const M: &str = "/moby.sshforward.v1.SSH/CheckAgent";
            if !self.supports(M) {
                return Ok(false);
            }
            let mut g = self.grpc().await?;
            let codec = tonic_prost::ProstCodec::<proto::CheckAgentRequest, proto::Empty>::default();
            let req = tonic::Request::new(proto::CheckAgentRequest { id: id.clone() });
            match g.unary(req, http::uri::PathAndQuery::from_static(M), codec).await {
                Ok(_) => Ok(true),
                Err(s) if s.code() == tonic::Code::NotFound || s.code() == tonic::Code::Unknown => Ok(false),
                Err(s) => Err(Error::invalid(format!("ssh agent {id}: {}", s.message()))),
            }
        })
    }

    fn connect(&self, id: &str) -> futures_util::future::BoxFuture<'_, Result<Box<dyn berth_builder::AgentConn>>> {
        let id = id.to_string();
        Box::pin(async move {
            const M: &str = "/moby.sshforward.v1.SSH/ForwardAgent";
            // The agent's bytes go both ways as BytesMessages; the step gets one end of a pipe.
            let (ours, theirs) = tokio::io::duplex(64 << 10);
            let (mut rd, mut wr) = tokio::io::split(theirs);
            let (tx, rx) = tokio::sync::mpsc::channel::<proto::BytesMessage>(8);
            let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            req.metadata_mut()
                .insert("buildkit.ssh.id", id.parse().map_err(|_| Error::invalid(format!("bad ssh id {id:?}")))?);
            let mut g = self.grpc().await?;
            let codec = tonic_prost::ProstCodec::<proto::BytesMessage, proto::BytesMessage>::default();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 32 << 10];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 || tx.send(proto::BytesMessage { data: buf[..n].to_vec() }).await.is_err() {
                        break;
                    }
                }
            });
            // The agent speaks only when spoken to, and the client sends its response headers
            // only with its first bytes: the call is awaited on its own, never before returning.
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                match g.streaming(req, http::uri::PathAndQuery::from_static(M), codec).await {
                    Ok(r) => {
                        let mut inbound = r.into_inner();
                        while let Ok(Some(m)) = inbound.message().await {
                            if wr.write_all(&m.data).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(s) => tracing::debug!("ssh agent {id}: {}", s.message()),
                }
                let _ = wr.shutdown().await;
            });
            Ok(Box::new(ours) as Box<dyn berth_builder::AgentConn>)
        })
    }
}

/// The sessions connected now.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    changed: Notify,
}

impl Sessions {
    /// Takes over a hijacked `/session` connection; returns when it closes. `headers` are the
    /// request's (`X-Docker-Expose-Session-Uuid`, `...-Grpc-Method` repeated).
    pub async fn serve<IO>(&self, io: IO, headers: &http::HeaderMap) -> Result<()>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let id = headers
            .get("X-Docker-Expose-Session-Uuid")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::invalid("session: no X-Docker-Expose-Session-Uuid"))?
            .to_string();
        let methods: HashSet<String> = headers
            .get_all("X-Docker-Expose-Session-Grpc-Method")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|m| m.trim().to_string()))
            .collect();
        let (send, conn) = crate::h2c::handshake(io).await.map_err(|e| Error::invalid(format!("session {id}: {e}")))?;
        tracing::debug!(session = %id, ?methods, "build session connected");
        let shared_key = headers
            .get("X-Docker-Expose-Session-Sharedkey")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let session = Session { id: id.clone(), shared_key, methods: Arc::new(methods), send };
        self.by_id.lock().unwrap().insert(id.clone(), session);
        self.changed.notify_waiters();
        let res = conn.await;
        self.by_id.lock().unwrap().remove(&id);
        tracing::debug!(session = %id, "build session closed");
        res.map_err(|e| Error::invalid(format!("session {id}: {e:?}")))
    }

    /// The session `id`, waiting a while for it to connect.
    pub async fn get(&self, id: &str) -> Result<Session> {
        let deadline = tokio::time::Instant::now() + SESSION_WAIT;
        loop {
            let notified = self.changed.notified();
            if let Some(s) = self.by_id.lock().unwrap().get(id) {
                return Ok(s.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Error::invalid(format!("no active session for {id}: context deadline exceeded")));
            }
        }
    }
}
