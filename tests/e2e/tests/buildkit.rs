//! BuildKit's API (`POST /grpc`, `POST /session`) as buildx v0.28.0's docker driver drives it,
//! replayed against a real berthd: the calls, their order and their attributes are the ones
//! recorded from `docker build` with that buildx (tests/e2e/fixtures/buildx-0.28.0.json); this
//! test plays the client's side — including the session's file sync sender, as fsutil sends —
//! and checks berthd's answers: workers, capabilities, the vertexes and logs of the progress
//! stream, the cache on a rebuild, the exporter's response, the image itself, and failures.
//! (buildx itself cannot be built in CI; with it installed, `docker build` runs the same calls.)

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_buildkit::proto::{self, Packet, Stat};
use berth_e2e::Berthd;
use futures_util::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

const CALL: Duration = Duration::from_secs(60);

fn fixture() -> Value {
    let p = berth_e2e::workspace().join("tests/e2e/fixtures/buildx-0.28.0.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn map(v: &Value) -> HashMap<String, String> {
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect()
}

/// `POST <path>` upgraded to h2c, as the docker client's DialHijack does.
async fn hijack(d: &Berthd, path: &str, headers: &[(&str, String)]) -> hyper::upgrade::Upgraded {
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

type Grpc = tonic::client::Grpc<berth_buildkit::h2c::H2>;

async fn control(d: &Berthd) -> Grpc {
    let (send, conn) = berth_buildkit::h2c::handshake(hijack(d, "/grpc", &[]).await).await.unwrap();
    tokio::spawn(conn);
    berth_buildkit::h2c::grpc(send).await.unwrap()
}

async fn unary<Req, Resp>(g: &mut Grpc, method: &'static str, req: Request<Req>) -> Result<Resp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    g.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let call = g.unary(req, http::uri::PathAndQuery::from_static(method), codec);
    tokio::time::timeout(CALL, call).await.expect(method).map(|r| r.into_inner())
}

fn with_build_id<T>(msg: T, build: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("buildkit-controlapi-buildid", build.parse().unwrap());
    r
}

// --- the client's session: fsutil's sending side of DiffCopy ------------------------------------

type Dirs = Arc<BTreeMap<String, Vec<(String, Vec<u8>)>>>;

/// The client's secrets: the `secrets` entry of the dirs map, by file name.
fn secret_of(dirs: &Dirs, id: &str) -> Option<Vec<u8>> {
    dirs.get("secrets")?.iter().find(|(n, _)| n == id).map(|(_, d)| d.clone())
}

/// Registry credentials the client's session answers with: the `auth` entry, `host` → `user:pass`.
struct Credentials(Dirs);

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

struct GetSecret(Dirs);

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

fn excluded(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_prefix('*') {
        Some(suffix) => path.ends_with(suffix),
        None => path == p,
    })
}

/// Serves `/moby.filesync.v1.FileSync/DiffCopy` for `dirs` on the session connection.
async fn serve_session(io: hyper::upgrade::Upgraded, dirs: Dirs) {
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let dirs = dirs.clone();
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
                other => panic!("berthd called an unexpected method {other}"),
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, svc).await;
}

struct DiffCopy(Dirs);

type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

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
                        None => Stat { path: p.clone(), mode: 0o644, size: data.len() as i64, ..Default::default() },
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

async fn open_session(d: &Berthd, id: &str, dirs: Dirs) {
    let methods = fixture()["session_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let mut headers =
        vec![("X-Docker-Expose-Session-Uuid", id.to_string()), ("X-Docker-Expose-Session-Name", "e2e".into())];
    headers.extend(methods.into_iter().map(|m| ("X-Docker-Expose-Session-Grpc-Method", m)));
    let io = hijack(d, "/session", &headers).await;
    tokio::spawn(serve_session(io, dirs));
}

// --- one build, as buildx runs it ---------------------------------------------------------------

struct Outcome {
    solve: Result<proto::SolveResponse, Status>,
    gateway: Result<proto::GatewaySolveResponse, Status>,
    updates: Vec<proto::StatusResponse>,
}

impl Outcome {
    fn vertex(&self, name: &str) -> proto::Vertex {
        let vs: Vec<&proto::Vertex> =
            self.updates.iter().flat_map(|u| &u.vertexes).filter(|v| v.name == name).collect();
        let names: Vec<&String> = self.updates.iter().flat_map(|u| &u.vertexes).map(|v| &v.name).collect();
        (*vs.last().unwrap_or_else(|| panic!("no vertex {name:?} in {names:?}"))).clone()
    }

    fn logs(&self, v: &proto::Vertex) -> String {
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

async fn build(d: &Berthd, dirs: Dirs, opts: HashMap<String, String>, tag: &str) -> Outcome {
    let f = fixture();
    let (build, session) = (format!("ref{}", berth_e2e::free_port()), format!("sess{}", berth_e2e::free_port()));
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
    open_session(d, &session, dirs).await;

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
    let mut exporter_attrs = map(&f["solve"]["exporters"][0]["attrs"]);
    exporter_attrs.insert("name".into(), tag.into());
    let solve_req = proto::SolveRequest {
        r#ref: build.clone(),
        session: session.clone(),
        frontend: f["solve"]["frontend"].as_str().unwrap().into(),
        exporters: vec![proto::Exporter {
            r#type: f["solve"]["exporters"][0]["type"].as_str().unwrap().into(),
            attrs: exporter_attrs,
        }],
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
    Outcome { solve, gateway, updates }
}

fn dirs(dockerfile: &str, context: &[(&str, &str)]) -> Dirs {
    dirs_with_secrets(dockerfile, context, &[])
}

fn dirs_with_secrets(dockerfile: &str, context: &[(&str, &str)], secrets: &[(&str, &str)]) -> Dirs {
    let mut m = BTreeMap::new();
    m.insert("secrets".to_string(), secrets.iter().map(|(n, d)| (n.to_string(), d.as_bytes().to_vec())).collect());
    m.insert("dockerfile".to_string(), vec![("Dockerfile".to_string(), dockerfile.as_bytes().to_vec())]);
    m.insert("context".to_string(), context.iter().map(|(p, c)| (p.to_string(), c.as_bytes().to_vec())).collect());
    Arc::new(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildx_build_replayed_builds_caches_and_exports() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox\nARG MSG=none\nRUN echo \"msg=$MSG\" && echo msg=$MSG > /msg\nCOPY a.txt /a.txt\nCOPY . /ctx/\nCMD [\"cat\", \"/msg\"]\n";
    let ctx = dirs(df, &[(".dockerignore", "*.log\n"), ("a.txt", "file a\n"), ("skip.log", "never sent\n")]);
    let opts = HashMap::from([("build-arg:MSG".to_string(), "hi".to_string())]);

    let o = build(&d, ctx.clone(), opts.clone(), "bk-replay:1").await;
    let resp = o.solve.as_ref().unwrap_or_else(|s| panic!("solve: {s:?}\n{}", d.log_tail()));
    let image = resp.exporter_response["containerimage.config.digest"].clone();
    assert!(image.starts_with("sha256:"), "{resp:?}");
    assert_eq!(resp.exporter_response["image.name"], "bk-replay:1");
    let run = o.vertex("[3/6] RUN echo \"msg=$MSG\" && echo msg=$MSG > /msg");
    assert!(run.completed.is_some() && run.error.is_empty() && !run.cached, "{run:?}");
    assert!(o.logs(&run).contains("msg=hi"), "{:?}", o.logs(&run));
    assert!(o.vertex("[internal] load build definition from Dockerfile").completed.is_some());
    assert!(o.logs(&o.vertex("exporting to image")).contains("naming to bk-replay:1 done"));

    // The image is berthd's: it runs, and what .dockerignore excluded never reached it.
    assert_eq!(d.ok(&["run", "--rm", "bk-replay:1"]).trim(), "msg=hi");
    let files = d.ok(&["run", "--rm", "bk-replay:1", "ls", "-a", "/ctx"]);
    assert!(files.contains("a.txt") && files.contains(".dockerignore") && !files.contains("skip.log"), "{files}");
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", "bk-replay:1"]).trim(), image);

    // The same build again: every step from the cache, the same image.
    let again = build(&d, ctx, opts, "bk-replay:2").await;
    let run = again.vertex("[3/6] RUN echo \"msg=$MSG\" && echo msg=$MSG > /msg");
    assert!(run.cached, "{run:?}");
    assert_eq!(again.solve.unwrap().exporter_response["containerimage.config.digest"], image);

    // buildx du / prune.
    let mut g = control(&d).await;
    let du: proto::DiskUsageResponse =
        unary(&mut g, "/moby.buildkit.v1.Control/DiskUsage", Request::new(proto::DiskUsageRequest::default()))
            .await
            .unwrap();
    assert!(!du.record.is_empty() && du.record.iter().all(|r| !r.id.is_empty() && r.created_at.is_some()), "{du:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildx_build_failures_answer_as_buildkit() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    // A failing step: the gateway Solve fails with the step's error, the vertex carries it, its
    // output (stderr too) is in the log, and Control/Solve ends with the client's returned error.
    let o = build(&d, dirs("FROM busybox\nRUN echo to-stderr >&2; exit 3\n", &[]), HashMap::new(), "bk-fail").await;
    let e = o.gateway.as_ref().unwrap_err();
    assert!(e.message().contains("returned a non-zero code: 3"), "{e:?}");
    let v = o.vertex("[2/2] RUN echo to-stderr >&2; exit 3");
    assert!(v.error.contains("non-zero code: 3") && o.logs(&v).contains("to-stderr"), "{v:?}");
    assert!(o.solve.unwrap_err().message().contains("non-zero code: 3"));
    assert!(!d.ok(&["images", "-q", "bk-fail"]).contains("sha256"));

    // A Dockerfile that does not parse, a missing Dockerfile, and what berthd cannot do.
    let o = build(&d, dirs("FROM busybox\nBOGUS x\n", &[]), HashMap::new(), "bk-bad").await;
    assert!(o.gateway.unwrap_err().message().contains("unknown instruction: BOGUS"));
    let mut no_df = BTreeMap::new();
    no_df.insert("dockerfile".to_string(), vec![]);
    no_df.insert("context".to_string(), vec![]);
    let o = build(&d, Arc::new(no_df), HashMap::new(), "bk-none").await;
    assert!(o.gateway.unwrap_err().message().contains("failed to read dockerfile"));
    let multi = HashMap::from([("platform".to_string(), "linux/amd64,linux/arm64".to_string())]);
    let o = build(&d, dirs("FROM busybox\n", &[]), multi, "bk-multi").await;
    assert_eq!(o.gateway.unwrap_err().code(), tonic::Code::Unimplemented);

    // A raw LLB definition is refused clearly, not run.
    let mut g = control(&d).await;
    let llb = proto::SolveRequest {
        r#ref: "llb1".into(),
        definition: Some(proto::Definition { def: vec![vec![1, 2, 3]] }),
        ..Default::default()
    };
    let e = unary::<_, proto::SolveResponse>(&mut g, "/moby.buildkit.v1.Control/Solve", Request::new(llb))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    assert!(e.message().contains("raw LLB"), "{e:?}");
    // Without the h2c upgrade, Docker's 400.
    let o = d.api_raw("1.50", "POST", "/grpc", None, &[]);
    assert_eq!(o.0, 400, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_mounts_cache_bind_tmpfs_and_secrets() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox\n\
        RUN --mount=type=cache,target=/cache,id=c1 sh -c 'echo run >> /cache/log; wc -l < /cache/log > /runs'\n\
        RUN --mount=type=bind,source=src,target=/src cp /src/data.txt /copied\n\
        RUN --mount=type=bind,source=src,target=/src,rw sh -c 'echo x > /src/new && test -s /src/new'\n\
        RUN --mount=type=tmpfs,target=/scratch,size=1m sh -c 'echo t > /scratch/t && df /scratch | grep -q 1024'\n\
        RUN --mount=type=secret,id=tok sh -c 'wc -c < /run/secrets/tok > /secret-len'\n\
        RUN --mount=type=secret,id=tok,env=TOK sh -c 'echo ${#TOK} > /env-len'\n";
    let ctx = [("src/data.txt", "from the context\n")];
    let secrets = [("tok", "s3cr3t-value")];
    let o = build(&d, dirs_with_secrets(df, &ctx, &secrets), HashMap::new(), "bk-mounts:1").await;
    o.solve.as_ref().unwrap_or_else(|s| panic!("{s:?}\n{}", d.log_tail()));
    let out = d.ok(&["run", "--rm", "bk-mounts:1", "cat", "/runs", "/copied", "/secret-len", "/env-len"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1", "from", "the", "context", "12", "12"], "{out}");
    // No trace of the mounts in the image: mount points, the rw bind's write, the secret.
    let ls = d.ok(&["run", "--rm", "bk-mounts:1", "sh", "-c", "ls -a / ; ls /src /cache /scratch /run 2>&1; true"]);
    for gone in ["src:", "cache:", "scratch:", "run:"] {
        assert!(ls.contains(&format!("ls: /{}", gone.trim_end_matches(':'))), "{gone} left in the image: {ls}");
    }
    let history = d.ok(&["history", "--no-trunc", "bk-mounts:1"]);
    assert!(!history.contains("s3cr3t"), "{history}");

    // The cache outlives the build: a rebuild without the step cache finds the first run's log.
    let o = build(
        &d,
        dirs_with_secrets(df, &ctx, &secrets),
        HashMap::from([("no-cache".into(), "".into())]),
        "bk-mounts:2",
    )
    .await;
    o.solve.as_ref().unwrap();
    assert_eq!(d.ok(&["run", "--rm", "bk-mounts:2", "cat", "/runs"]).trim(), "2");

    // A required secret the client lacks, and a bind source that leads out of the context.
    let o =
        build(&d, dirs("FROM busybox\nRUN --mount=type=secret,id=nope,required true\n", &[]), HashMap::new(), "bk-m3")
            .await;
    assert!(o.gateway.unwrap_err().message().contains("secret nope: not found"));
    let escape = "FROM busybox\nRUN --mount=type=bind,source=../../../../etc,target=/x ls /x/shadow\n";
    let o = build(&d, dirs(escape, &[("a", "a")]), HashMap::new(), "bk-m4").await;
    let e = o.gateway.unwrap_err();
    assert!(e.message().contains("RUN --mount failed: forbidden path outside the build context"), "{e:?}");
    // A symlink in the context that points out of it resolves inside the context (where there is
    // no /etc/shadow), never on the host.
    let link = "FROM busybox\nRUN --mount=type=bind,source=etc,target=/x cat /x/shadow\n";
    let o = build(&d, dirs(link, &[("etc", "symlink:/etc")]), HashMap::new(), "bk-m6").await;
    let logs: Vec<u8> = o.updates.iter().flat_map(|u| &u.logs).flat_map(|l| l.msg.clone()).collect();
    let logs = String::from_utf8_lossy(&logs);
    assert!(o.gateway.is_err() && !logs.contains("root:"), "{logs}");
    let o = build(&d, dirs("FROM busybox\nRUN --mount=type=ssh true\n", &[]), HashMap::new(), "bk-m5").await;
    assert!(o.gateway.unwrap_err().message().contains("type=ssh is not supported"));
}

/// `FROM` a private image: berthd asks the client's session for the registry's credentials (the
/// CLI answers from its `docker login`s) and pulls with them; without them the pull is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_from_with_the_sessions_credentials() {
    use berth_e2e::registry::{Auth, Registry};
    let reg = Registry::start(Auth::Basic { user: "alice".into(), password: "s3cret!".into() });
    let d = Berthd::start();
    d.import_busybox("bb");
    let private = format!("{}/priv/bb:1", reg.addr);
    d.ok(&["tag", "bb", &private]);
    let login = d.docker_stdin(&["login", &reg.addr, "-u", "alice", "--password-stdin"], Some(b"s3cret!"));
    assert!(login.status.success());
    d.ok(&["push", &private]);
    d.ok(&["logout", &reg.addr]);
    d.ok(&["rmi", "bb", &private]);
    let df = format!("FROM {private}\nRUN echo built-on-private > /m\n");

    let anonymous = build(&d, dirs(&df, &[]), HashMap::new(), "bk-priv-anon").await;
    let e = anonymous.gateway.unwrap_err();
    assert!(
        e.message().contains("401")
            || e.message().contains("denied")
            || e.message().contains("authentication required"),
        "{e:?}"
    );

    let mut m = (*dirs(&df, &[])).clone();
    m.insert("auth".into(), vec![(reg.addr.clone(), b"alice:s3cret!".to_vec())]);
    let o = build(&d, Arc::new(m), HashMap::new(), "bk-priv").await;
    o.solve.as_ref().unwrap_or_else(|s| panic!("{s:?}\n{}", d.log_tail()));
    assert_eq!(d.ok(&["run", "--rm", "bk-priv", "cat", "/m"]).trim(), "built-on-private");
    assert!(!d.log().contains("s3cret!"), "the password reached the daemon log");
}

/// The real thing, where the buildx plugin is at hand (it cannot be built in CI, which runs the
/// replays above instead): `BERTH_BUILDX=/path/to/docker-buildx cargo test -p berth-e2e --test
/// buildkit`. (Not `#[ignore]`: the suite runs ignored tests too.)
#[test]
fn docker_build_with_the_real_buildx() {
    use berth_e2e::{err, out, Bounded};
    let Some(plugin) = std::env::var_os("BERTH_BUILDX").map(std::path::PathBuf::from) else {
        eprintln!("BERTH_BUILDX is not set: the real buildx is not run (the recorded replays are)");
        return;
    };
    let d = Berthd::start();
    d.import_busybox("busybox");
    let cfg = d.root.join("buildx-config");
    std::fs::create_dir_all(cfg.join("cli-plugins")).unwrap();
    std::os::unix::fs::symlink(&plugin, cfg.join("cli-plugins/docker-buildx")).unwrap();
    let ctx = d.root.join("bx-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS base\nARG MSG\nRUN echo msg=$MSG > /msg\nFROM base\nCOPY a.txt /\nCMD [\"cat\", \"/msg\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("a.txt"), "a\n").unwrap();
    let docker = |args: &[&str]| {
        std::process::Command::new("docker")
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_CONFIG", &cfg)
            .env_remove("DOCKER_BUILDKIT")
            .args(args)
            .current_dir(&ctx)
            .bounded()
    };
    let o = docker(&["build", "--progress=plain", "--build-arg", "MSG=real", "-t", "bx-real", "."]);
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    let log = err(&o);
    assert!(
        log.contains("[internal] load build definition from Dockerfile") && log.contains("naming to bx-real done"),
        "{log}"
    );
    assert_eq!(d.ok(&["run", "--rm", "bx-real"]).trim(), "msg=real");
    let o = docker(&["buildx", "build", "--load", "--progress=plain", "--build-arg", "MSG=real", "-t", "bx-real", "."]);
    assert!(o.status.success() && err(&o).contains("CACHED"), "{}", err(&o));
    let o = docker(&["build", "--target", "base", "-t", "bx-base", "."]);
    assert!(o.status.success(), "{}", err(&o));
    // Secrets from the CLI (--secret) through the session, and a cache mount.
    std::fs::write(ctx.join("Dockerfile.s"), "FROM busybox\nRUN --mount=type=secret,id=tok --mount=type=cache,target=/c sh -c 'wc -c < /run/secrets/tok > /len'\n").unwrap();
    std::fs::write(d.root.join("tok"), "abcd").unwrap();
    let src = format!("id=tok,src={}", d.root.join("tok").display());
    let o = docker(&["build", "-f", "Dockerfile.s", "--secret", &src, "-t", "bx-secret", "."]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(d.ok(&["run", "--rm", "bx-secret", "cat", "/len"]).trim(), "4");
    // bake: two targets built at once.
    let hcl = "target \"x\" {\n dockerfile = \"Dockerfile\"\n args = { MSG = \"x\" }\n tags = [\"bake-x\"]\n}\n\
               target \"y\" {\n dockerfile = \"Dockerfile\"\n args = { MSG = \"y\" }\n tags = [\"bake-y\"]\n}\n\
               group \"default\" { targets = [\"x\", \"y\"] }\n";
    std::fs::write(ctx.join("docker-bake.hcl"), hcl).unwrap();
    let o = docker(&["buildx", "bake"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(d.ok(&["run", "--rm", "bake-y"]).trim(), "msg=y");
    // FROM a private image: buildx's session answers with this CLI's `docker login`.
    let reg = berth_e2e::registry::Registry::start(berth_e2e::registry::Auth::Basic {
        user: "bob".into(),
        password: "pw-b0b".into(),
    });
    let private = format!("{}/priv/bb:1", reg.addr);
    assert!(docker(&["login", &reg.addr, "-u", "bob", "-p", "pw-b0b"]).status.success());
    d.ok(&["tag", "busybox", &private]);
    assert!(docker(&["push", &private]).status.success());
    d.ok(&["rmi", &private]);
    std::fs::write(ctx.join("Dockerfile.p"), format!("FROM {private}\nRUN echo private > /p\n")).unwrap();
    let o = docker(&["build", "-f", "Dockerfile.p", "-t", "bx-private", "."]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(d.ok(&["run", "--rm", "bx-private", "cat", "/p"]).trim(), "private");
    let o = docker(&["buildx", "du"]);
    assert!(o.status.success() && out(&o).contains("Total:"), "{}{}", out(&o), err(&o));
    let o = docker(&["buildx", "prune", "-af"]);
    assert!(o.status.success(), "{}", err(&o));
}
