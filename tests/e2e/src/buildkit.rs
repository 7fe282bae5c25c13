//! The client's side of BuildKit's API as buildx v0.28.0's docker driver plays it (recorded in
//! tests/e2e/fixtures/buildx-0.28.0.json), for the replay tests in tests/buildkit.rs: the `/grpc`
//! calls, and a session (`/session`) that serves file sync (as fsutil sends), secrets, registry
//! credentials and the exporters' receiving ends.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::Berthd;
use berth_buildkit::proto::{self, Packet, Stat};
use futures_util::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

pub const CALL: Duration = Duration::from_secs(60);

pub fn fixture() -> Value {
    let p = crate::workspace().join("tests/e2e/fixtures/buildx-0.28.0.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

pub fn map(v: &Value) -> HashMap<String, String> {
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect()
}

/// `POST <path>` upgraded to h2c, as the docker client's DialHijack does.
pub async fn hijack(d: &Berthd, path: &str, headers: &[(&str, String)]) -> hyper::upgrade::Upgraded {
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn.with_upgrades());
    let mut req =
        http::Request::post(format!("http://d/v1.50{path}")).header("Connection", "Upgrade").header("Upgrade", "h2c");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = send.send_request(req.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 101, "{path} did not switch protocols");
    assert_eq!(resp.headers()["upgrade"], "h2c");
    hyper::upgrade::on(resp).await.unwrap()
}

pub type Grpc = tonic::client::Grpc<berth_buildkit::h2c::H2>;

pub async fn control(d: &Berthd) -> Grpc {
    let (send, conn) = berth_buildkit::h2c::handshake(hijack(d, "/grpc", &[]).await).await.unwrap();
    tokio::spawn(conn);
    berth_buildkit::h2c::grpc(send).await.unwrap()
}

pub async fn unary<Req, Resp>(g: &mut Grpc, method: &'static str, req: Request<Req>) -> Result<Resp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    g.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let call = g.unary(req, http::uri::PathAndQuery::from_static(method), codec);
    tokio::time::timeout(CALL, call).await.expect(method).map(|r| r.into_inner())
}

pub fn with_build_id<T>(msg: T, build: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("buildkit-controlapi-buildid", build.parse().unwrap());
    r
}

// --- the client's session: fsutil's sending side of DiffCopy ------------------------------------

pub type Dirs = Arc<BTreeMap<String, Vec<(String, Vec<u8>)>>>;

/// What berthd's exporters sent to the client: `tar` → the stream; `local:<path>` → a file's data.
pub type Received = Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>>;

/// The client's secrets: the `secrets` entry of the dirs map, by file name.
pub fn secret_of(dirs: &Dirs, id: &str) -> Option<Vec<u8>> {
    dirs.get("secrets")?.iter().find(|(n, _)| n == id).map(|(_, d)| d.clone())
}

/// Registry credentials the client's session answers with: the `auth` entry, `host` → `user:pass`.
pub struct Credentials(Dirs);

impl tonic::server::UnaryService<proto::CredentialsRequest> for Credentials {
    type Response = proto::CredentialsResponse;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send>>;
    fn call(&mut self, req: Request<proto::CredentialsRequest>) -> Self::Future {
        let found =
            self.0.get("auth").and_then(|a| a.iter().find(|(h, _)| *h == req.get_ref().host).map(|(_, c)| c.clone()));
        let (username, secret) = match found.map(|c| String::from_utf8(c).unwrap()) {
            Some(c) => c.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())).unwrap(),
            None => Default::default(),
        };
        Box::pin(async move { Ok(tonic::Response::new(proto::CredentialsResponse { username, secret })) })
    }
}

pub struct GetSecret(Dirs);

impl tonic::server::UnaryService<proto::GetSecretRequest> for GetSecret {
    type Response = proto::GetSecretResponse;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send>>;
    fn call(&mut self, req: Request<proto::GetSecretRequest>) -> Self::Future {
        let found = secret_of(&self.0, &req.get_ref().id);
        Box::pin(async move {
            match found {
                Some(data) => Ok(tonic::Response::new(proto::GetSecretResponse { data })),
                None => Err(Status::not_found("secret not found")),
            }
        })
    }
}

pub fn excluded(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_prefix('*') {
        Some(suffix) => path.ends_with(suffix),
        None => path == p,
    })
}

/// Serves `/moby.filesync.v1.FileSync/DiffCopy` for `dirs` on the session connection.
pub async fn serve_session(io: hyper::upgrade::Upgraded, dirs: Dirs, received: Received) {
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (dirs, received) = (dirs.clone(), received.clone());
        async move {
            let resp = match req.uri().path() {
                "/moby.filesync.v1.FileSync/DiffCopy" => {
                    let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Packet, Packet>::default());
                    g.streaming(DiffCopy(dirs), req).await
                }
                "/moby.buildkit.secrets.v1.Secrets/GetSecret" => {
                    let codec = tonic_prost::ProstCodec::<proto::GetSecretResponse, proto::GetSecretRequest>::default();
                    tonic::server::Grpc::new(codec).unary(GetSecret(dirs), req).await
                }
                "/moby.filesync.v1.Auth/Credentials" => {
                    let codec =
                        tonic_prost::ProstCodec::<proto::CredentialsResponse, proto::CredentialsRequest>::default();
                    tonic::server::Grpc::new(codec).unary(Credentials(dirs), req).await
                }
                // The exporters: which one berthd addresses is in the metadata; `exports` says its kind.
                "/moby.filesync.v1.FileSend/DiffCopy" => {
                    let id = req.headers()["buildkit-attachable-exporter-id"].to_str().unwrap().to_string();
                    let kind =
                        dirs["exports"].iter().find(|(i, _)| *i == id).map(|(_, k)| k.clone()).expect("exporter id");
                    if kind == b"tar" {
                        let codec = tonic_prost::ProstCodec::<proto::BytesMessage, proto::BytesMessage>::default();
                        tonic::server::Grpc::new(codec).streaming(TarSink(received), req).await
                    } else {
                        let codec = tonic_prost::ProstCodec::<Packet, Packet>::default();
                        tonic::server::Grpc::new(codec).streaming(LocalSink(received), req).await
                    }
                }
                // An SSH agent "default" (when `ssh` is given) that answers each chunk upper-cased.
                "/moby.sshforward.v1.SSH/CheckAgent" => {
                    let codec = tonic_prost::ProstCodec::<proto::Empty, proto::CheckAgentRequest>::default();
                    tonic::server::Grpc::new(codec).unary(CheckAgent(dirs), req).await
                }
                "/moby.sshforward.v1.SSH/ForwardAgent" => {
                    let codec = tonic_prost::ProstCodec::<proto::BytesMessage, proto::BytesMessage>::default();
                    tonic::server::Grpc::new(codec).streaming(EchoAgent, req).await
                }
                other => panic!("berthd called an unexpected method {other}"),
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, svc).await;
}

pub struct DiffCopy(Dirs);

pub struct CheckAgent(Dirs);

impl tonic::server::UnaryService<proto::CheckAgentRequest> for CheckAgent {
    type Response = proto::Empty;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send>>;
    fn call(&mut self, req: Request<proto::CheckAgentRequest>) -> Self::Future {
        let known = self.0.get("ssh").is_some_and(|ids| ids.iter().any(|(id, _)| *id == req.get_ref().id));
        Box::pin(async move {
            match known {
                true => Ok(tonic::Response::new(proto::Empty {})),
                false => Err(Status::not_found("unset ssh forward key")),
            }
        })
    }
}

/// A stand-in SSH agent: each chunk comes back upper-cased.
pub struct EchoAgent;

impl tonic::server::StreamingService<proto::BytesMessage> for EchoAgent {
    type Response = proto::BytesMessage;
    type ResponseStream = BytesStream;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<BytesStream>, Status>> + Send>>;
    fn call(&mut self, req: Request<tonic::Streaming<proto::BytesMessage>>) -> Self::Future {
        Box::pin(async move {
            let out = req.into_inner().map(|m| m.map(|m| proto::BytesMessage { data: m.data.to_ascii_uppercase() }));
            Ok(tonic::Response::new(Box::pin(out) as BytesStream))
        })
    }
}

/// The client's side of `-o type=tar`: the bytes, until berthd closes its side.
pub struct TarSink(Received);

pub type BytesStream = Pin<Box<dyn Stream<Item = Result<proto::BytesMessage, Status>> + Send>>;

impl tonic::server::StreamingService<proto::BytesMessage> for TarSink {
    type Response = proto::BytesMessage;
    type ResponseStream = BytesStream;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<BytesStream>, Status>> + Send>>;
    fn call(&mut self, req: Request<tonic::Streaming<proto::BytesMessage>>) -> Self::Future {
        let received = self.0.clone();
        Box::pin(async move {
            let mut inbound = req.into_inner();
            let mut all = Vec::new();
            while let Some(m) = inbound.next().await {
                all.extend(m?.data);
            }
            received.lock().unwrap().insert("tar".into(), all);
            Ok(tonic::Response::new(Box::pin(futures_util::stream::empty()) as BytesStream))
        })
    }
}

/// The client's side of `-o type=local`, as fsutil receives: the stats, a REQ per file with data,
/// the data, then FIN both ways.
pub struct LocalSink(Received);

impl tonic::server::StreamingService<Packet> for LocalSink {
    type Response = Packet;
    type ResponseStream = PacketStream;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<PacketStream>, Status>> + Send>>;
    fn call(&mut self, req: Request<tonic::Streaming<Packet>>) -> Self::Future {
        let received = self.0.clone();
        Box::pin(async move {
            let mut inbound = req.into_inner();
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(async move {
                let mut stats = Vec::new();
                while let Some(Ok(p)) = inbound.next().await {
                    match (p.r#type, p.stat) {
                        (proto::PACKET_STAT, Some(st)) => stats.push(st),
                        (proto::PACKET_STAT, None) => break,
                        (t, _) => panic!("unexpected packet {t} among the stats"),
                    }
                }
                let wanted: Vec<usize> = (0..stats.len())
                    .filter(|&i| stats[i].mode >> 24 == 0 && stats[i].size > 0 && stats[i].linkname.is_empty())
                    .collect();
                for &i in &wanted {
                    tx.send(Ok(Packet { r#type: proto::PACKET_REQ, id: i as u32, ..Default::default() }))
                        .await
                        .unwrap();
                }
                let mut open = wanted.len();
                let mut files: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
                while open > 0 {
                    let p = inbound.next().await.expect("data").unwrap();
                    assert_eq!(p.r#type, proto::PACKET_DATA);
                    if p.data.is_empty() {
                        open -= 1;
                    }
                    files.entry(p.id).or_default().extend(p.data);
                }
                tx.send(Ok(Packet { r#type: proto::PACKET_FIN, ..Default::default() })).await.unwrap();
                let fin = inbound.next().await.expect("fin").unwrap();
                assert_eq!(fin.r#type, proto::PACKET_FIN);
                let mut r = received.lock().unwrap();
                for (i, st) in stats.iter().enumerate() {
                    r.insert(format!("local:{}", st.path), files.remove(&(i as u32)).unwrap_or_default());
                }
            });
            Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx)) as PacketStream))
        })
    }
}

pub type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

impl tonic::server::StreamingService<Packet> for DiffCopy {
    type Response = Packet;
    type ResponseStream = PacketStream;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<PacketStream>, Status>> + Send>>;

    fn call(&mut self, req: Request<tonic::Streaming<Packet>>) -> Self::Future {
        let dirs = self.0.clone();
        Box::pin(async move {
            let md = req.metadata();
            let all = |k: &str| md.get_all(k).iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
            let (dir, include, exclude) = (all("dir-name").remove(0), all("include-patterns"), all("exclude-patterns"));
            let files: Vec<(String, Vec<u8>)> = dirs[&dir]
                .iter()
                .filter(|(p, _)| include.is_empty() || include.contains(p))
                .filter(|(p, _)| !excluded(p, &exclude))
                .cloned()
                .collect();
            let mut inbound = req.into_inner();
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(async move {
                for (p, data) in &files {
                    // `symlink:TARGET` stands for a symlink (Go's os.ModeSymlink), as fsutil sends one.
                    let st = match data.strip_prefix(b"symlink:") {
                        Some(t) => Stat {
                            path: p.clone(),
                            mode: (1 << 27) | 0o777,
                            linkname: String::from_utf8_lossy(t).into(),
                            ..Default::default()
                        },
                        // A modification time that follows the content, as a real file's would.
                        None => Stat {
                            path: p.clone(),
                            mode: 0o644,
                            // `lie:` content: a file announced one byte longer than what comes.
                            size: data.len() as i64 + i64::from(data.starts_with(b"lie:")),
                            mod_time: data.iter().map(|b| *b as i64).sum::<i64>() * 1_000_000_007,
                            ..Default::default()
                        },
                    };
                    tx.send(Ok(Packet { r#type: proto::PACKET_STAT, stat: Some(st), ..Default::default() }))
                        .await
                        .unwrap();
                }
                tx.send(Ok(Packet { r#type: proto::PACKET_STAT, ..Default::default() })).await.unwrap();
                while let Some(Ok(p)) = inbound.next().await {
                    match p.r#type {
                        proto::PACKET_REQ => {
                            let data = files[p.id as usize].1.clone();
                            for chunk in data.chunks(3) {
                                let d = Packet {
                                    r#type: proto::PACKET_DATA,
                                    id: p.id,
                                    data: chunk.to_vec(),
                                    ..Default::default()
                                };
                                tx.send(Ok(d)).await.unwrap();
                            }
                            tx.send(Ok(Packet { r#type: proto::PACKET_DATA, id: p.id, ..Default::default() }))
                                .await
                                .unwrap();
                        }
                        proto::PACKET_FIN => {
                            let _ = tx.send(Ok(Packet { r#type: proto::PACKET_FIN, ..Default::default() })).await;
                            return;
                        }
                        t => panic!("unexpected packet {t} from berthd"),
                    }
                }
            });
            Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx)) as PacketStream))
        })
    }
}

pub async fn open_session(d: &Berthd, id: &str, dirs: Dirs, received: Received) {
    let methods = fixture()["session_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let mut headers =
        vec![("X-Docker-Expose-Session-Uuid", id.to_string()), ("X-Docker-Expose-Session-Name", "e2e".into())];
    headers.extend(methods.into_iter().map(|m| ("X-Docker-Expose-Session-Grpc-Method", m)));
    // buildx names the client's context folder by a shared key (berthd keeps it between builds).
    if let Some((_, key)) = dirs.get("sharedkey").and_then(|k| k.first()) {
        headers.push(("X-Docker-Expose-Session-Sharedkey", String::from_utf8(key.clone()).unwrap()));
    }
    // buildx offers FileSend only when an exporter writes to the client.
    if dirs.contains_key("exports") {
        headers.push(("X-Docker-Expose-Session-Grpc-Method", "/moby.filesync.v1.FileSend/DiffCopy".into()));
    }
    let io = hijack(d, "/session", &headers).await;
    tokio::spawn(serve_session(io, dirs, received));
}

// --- one build, as buildx runs it ---------------------------------------------------------------

pub struct Outcome {
    pub solve: Result<proto::SolveResponse, Status>,
    pub gateway: Result<proto::GatewaySolveResponse, Status>,
    pub updates: Vec<proto::StatusResponse>,
    pub received: Received,
}

impl Outcome {
    pub fn vertex(&self, name: &str) -> proto::Vertex {
        let vs: Vec<&proto::Vertex> =
            self.updates.iter().flat_map(|u| &u.vertexes).filter(|v| v.name == name).collect();
        let names: Vec<&String> = self.updates.iter().flat_map(|u| &u.vertexes).map(|v| &v.name).collect();
        (*vs.last().unwrap_or_else(|| panic!("no vertex {name:?} in {names:?}"))).clone()
    }

    pub fn logs(&self, v: &proto::Vertex) -> String {
        let l: Vec<u8> = self
            .updates
            .iter()
            .flat_map(|u| &u.logs)
            .filter(|l| l.vertex == v.digest)
            .flat_map(|l| l.msg.clone())
            .collect();
        String::from_utf8(l).unwrap()
    }
}

pub async fn build(d: &Berthd, dirs: Dirs, opts: HashMap<String, String>, tag: &str) -> Outcome {
    let f = fixture();
    let mut exporter_attrs = map(&f["solve"]["exporters"][0]["attrs"]);
    exporter_attrs.insert("name".into(), tag.into());
    let moby =
        proto::Exporter { r#type: f["solve"]["exporters"][0]["type"].as_str().unwrap().into(), attrs: exporter_attrs };
    build_with(d, dirs, opts, vec![moby]).await
}

/// One build as buildx runs it, with these exporters.
pub async fn build_with(
    d: &Berthd,
    dirs: Dirs,
    opts: HashMap<String, String>,
    exporters: Vec<proto::Exporter>,
) -> Outcome {
    let f = fixture();
    let (build, session) = (format!("ref{}", crate::free_port()), format!("sess{}", crate::free_port()));
    let mut g = control(d).await;

    // buildx: ListWorkers, then the session, Status and Solve at once, then the gateway calls.
    let workers: proto::ListWorkersResponse =
        unary(&mut g, "/moby.buildkit.v1.Control/ListWorkers", Request::new(proto::Empty {})).await.unwrap();
    assert_eq!(workers.record.len(), 1);
    let w = &workers.record[0];
    assert_eq!(w.platforms[0].os, "linux");
    assert!(
        !w.labels.contains_key("org.mobyproject.buildkit.worker.snapshotter"),
        "buildx would assume containerd: {:?}",
        w.labels
    );
    let received = Received::default();
    open_session(d, &session, dirs, received.clone()).await;

    let mut sg = control(d).await;
    let status_ref = build.clone();
    let status = tokio::spawn(async move {
        sg.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<proto::StatusRequest, proto::StatusResponse>::default();
        let req = Request::new(proto::StatusRequest { r#ref: status_ref });
        let mut s = sg
            .server_streaming(req, http::uri::PathAndQuery::from_static("/moby.buildkit.v1.Control/Status"), codec)
            .await
            .unwrap()
            .into_inner();
        let mut all = Vec::new();
        while let Some(u) = tokio::time::timeout(CALL, s.next()).await.expect("status stream stalled") {
            all.push(u.unwrap());
        }
        all
    });

    let mut cg = control(d).await;
    let solve_req = proto::SolveRequest {
        r#ref: build.clone(),
        session: session.clone(),
        frontend: f["solve"]["frontend"].as_str().unwrap().into(),
        exporters,
        ..Default::default()
    };
    let solve = tokio::spawn(async move {
        unary::<_, proto::SolveResponse>(&mut cg, "/moby.buildkit.v1.Control/Solve", Request::new(solve_req)).await
    });

    let pong: proto::PongResponse =
        unary(&mut g, "/moby.buildkit.v1.frontend.LLBBridge/Ping", with_build_id(proto::Empty {}, &build))
            .await
            .unwrap();
    for cap in ["return", "proto.refarray", "solve.base"] {
        assert!(pong.frontend_api_caps.iter().any(|c| c.id == cap && c.enabled), "cap {cap} missing");
    }
    let mut frontend_opt = map(&f["gateway_solve"]["frontend_opt"]);
    frontend_opt.extend(opts);
    let gw = proto::GatewaySolveRequest {
        frontend: f["gateway_solve"]["frontend"].as_str().unwrap().into(),
        frontend_opt,
        allow_result_return: true,
        allow_result_array_ref: true,
        ..Default::default()
    };
    let gateway: Result<proto::GatewaySolveResponse, Status> =
        unary(&mut g, "/moby.buildkit.v1.frontend.LLBBridge/Solve", with_build_id(gw, &build)).await;
    // The client returns what the frontend gave it (or its error), as grpcclient.Run does.
    let ret = match &gateway {
        Ok(r) => proto::ReturnRequest { result: r.result.clone(), error: None },
        Err(s) => proto::ReturnRequest {
            result: None,
            error: Some(proto::RpcStatus { code: 2, message: s.message().into() }),
        },
    };
    let _: proto::Empty =
        unary(&mut g, "/moby.buildkit.v1.frontend.LLBBridge/Return", with_build_id(ret, &build)).await.unwrap();
    let solve = solve.await.unwrap();
    let updates = tokio::time::timeout(CALL, status).await.unwrap().unwrap();
    Outcome { solve, gateway, updates, received }
}

pub fn dirs(dockerfile: &str, context: &[(&str, &str)]) -> Dirs {
    dirs_with_secrets(dockerfile, context, &[])
}

pub fn dirs_with_secrets(dockerfile: &str, context: &[(&str, &str)], secrets: &[(&str, &str)]) -> Dirs {
    let mut m = BTreeMap::new();
    m.insert("secrets".to_string(), secrets.iter().map(|(n, d)| (n.to_string(), d.as_bytes().to_vec())).collect());
    m.insert("dockerfile".to_string(), vec![("Dockerfile".to_string(), dockerfile.as_bytes().to_vec())]);
    m.insert("context".to_string(), context.iter().map(|(p, c)| (p.to_string(), c.as_bytes().to_vec())).collect());
    Arc::new(m)
}
