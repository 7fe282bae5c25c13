//! BuildKit's API (`POST /grpc`, `POST /session`) as buildx v0.28.0's docker driver drives it,
//! replayed against a real berthd: the calls, their order and their attributes are the ones
//! recorded from `docker build` with that buildx (tests/e2e/fixtures/buildx-0.28.0.json); this
//! test plays the client's side — including the session's file sync sender, as fsutil sends —
//! and checks berthd's answers: workers, capabilities, the vertexes and logs of the progress
//! stream, the cache on a rebuild, the exporter's response, the image itself, and failures.
//! (buildx itself cannot be built in CI; with it installed, `docker build` runs the same calls.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use berth_buildkit::proto;
use berth_e2e::buildkit::*;
use berth_e2e::Berthd;
use tonic::Request;

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
    // An SSH mount the client has no agent for, not required: the step runs without it.
    let o = build(
        &d,
        dirs("FROM busybox\nRUN --mount=type=ssh sh -c 'test -z \"$SSH_AUTH_SOCK\"'\n", &[]),
        HashMap::new(),
        "bk-m5",
    )
    .await;
    o.gateway.as_ref().unwrap();
}

/// With a shared key (buildx sends one per context folder), berthd keeps the context between
/// builds and the client sends only what changed: a rebuild moves no file data, a changed file
/// only its own bytes, and what was deleted or newly excluded is gone from the next build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_context_sends_only_changes() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox\nCOPY . /ctx/\nRUN ls /ctx | sort | tr '\\n' ' ' > /list; cat /ctx/a > /a\n";
    let ctx = |files: &[(&str, &str)]| {
        let mut m = (*dirs(df, files)).clone();
        m.insert("sharedkey".into(), vec![("key".into(), b"e2e-context-1".to_vec())]);
        Arc::new(m)
    };
    let transferred = |o: &Outcome| {
        let log = o.logs(&o.vertex("[internal] load build context"));
        log.trim().trim_start_matches("transferring context: ").trim_end_matches("B done").parse::<u64>().unwrap()
    };
    let big = "x".repeat(100_000);
    let o = build(&d, ctx(&[("a", "first"), ("big", &big), ("gone", "soon")]), HashMap::new(), "kc:1").await;
    o.solve.as_ref().unwrap_or_else(|s| panic!("{s:?}\n{}", d.log_tail()));
    assert_eq!(transferred(&o), 100_000 + 5 + 4);
    assert_eq!(d.ok(&["run", "--rm", "kc:1", "cat", "/list"]).trim(), "a big gone");

    // Nothing changed: no file data, every step from the cache.
    let o = build(&d, ctx(&[("a", "first"), ("big", &big), ("gone", "soon")]), HashMap::new(), "kc:2").await;
    assert_eq!(transferred(&o), 0);
    assert!(o.vertex("[3/3] RUN ls /ctx | sort | tr '\\n' ' ' > /list; cat /ctx/a > /a").cached);

    // One file changed, one deleted: only the changed bytes come, and the build sees both.
    let o = build(&d, ctx(&[("a", "second"), ("big", &big)]), HashMap::new(), "kc:3").await;
    o.solve.as_ref().unwrap();
    assert_eq!(transferred(&o), 6);
    assert_eq!(d.ok(&["run", "--rm", "kc:3", "cat", "/list"]).trim(), "a big");
    assert_eq!(d.ok(&["run", "--rm", "kc:3", "cat", "/a"]).trim(), "second");
    // The earlier image is untouched by the later sync.
    assert_eq!(d.ok(&["run", "--rm", "kc:1", "cat", "/a"]).trim(), "first");

    // `buildx du` lists the kept context; `buildx prune` drops it (then everything comes again).
    let mut g = control(&d).await;
    let du: proto::DiskUsageResponse =
        unary(&mut g, "/moby.buildkit.v1.Control/DiskUsage", Request::new(proto::DiskUsageRequest::default()))
            .await
            .unwrap();
    assert!(du.record.iter().any(|r| r.record_type == "source.local" && r.size >= 100_000), "{du:?}");
    let mut pg = control(&d).await;
    pg.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<proto::PruneRequest, proto::UsageRecord>::default();
    let req = Request::new(proto::PruneRequest { all: true, ..Default::default() });
    let mut s = pg
        .server_streaming(req, http::uri::PathAndQuery::from_static("/moby.buildkit.v1.Control/Prune"), codec)
        .await
        .unwrap()
        .into_inner();
    let mut pruned = Vec::new();
    while let Some(r) = futures_util::StreamExt::next(&mut s).await {
        pruned.push(r.unwrap());
    }
    assert!(pruned.iter().any(|r| r.record_type == "source.local"), "{pruned:?}");
    let o = build(&d, ctx(&[("a", "second"), ("big", &big)]), HashMap::new(), "kc:4").await;
    assert_eq!(transferred(&o), 100_000 + 6);

    // A hostile client: a file "through" a symlink that points out of the context stays inside.
    let out = format!("bt-kc-escape-{}", std::process::id());
    let target = std::env::temp_dir();
    let evil = [("a", "x"), ("evil", &*format!("symlink:{}", target.display())), (&*format!("evil/{out}"), "pwned")];
    let _ = build(&d, ctx(&evil), HashMap::new(), "kc:5").await;
    assert!(!target.join(&out).exists(), "the context sync wrote outside its folder");
}

/// `RUN --mount=type=ssh`: the step gets a socket (and SSH_AUTH_SOCK) whose connections reach the
/// client's agent through its session; a required agent the client lacks fails the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_mounts_forward_to_the_clients_agent() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox\nRUN --mount=type=ssh sh -c 'test -S \"$SSH_AUTH_SOCK\" && echo $SSH_AUTH_SOCK > /sock && sleep 3'\n";
    let mut m = (*dirs(df, &[])).clone();
    m.insert("ssh".into(), vec![("default".into(), vec![])]);
    let staging = d.data_root().join("image/tmp");
    let talk = tokio::spawn(async move {
        // While the step runs, talk to its socket from the host (where it is staged).
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let Some(sock) = std::fs::read_dir(&staging)
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("0-ssh"))
                .find(|p| p.exists())
            else {
                continue;
            };
            // Through the folder's fd: the staged path is longer than a socket address may be.
            let dir = std::fs::File::open(sock.parent().unwrap()).unwrap();
            let short = format!("/proc/self/fd/{}/0-ssh", std::os::fd::AsRawFd::as_raw_fd(&dir));
            let mut c = tokio::net::UnixStream::connect(&short).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut c, b"hello agent").await.unwrap();
            let mut buf = [0u8; 11];
            tokio::io::AsyncReadExt::read_exact(&mut c, &mut buf).await.unwrap();
            return buf.to_vec();
        }
        panic!("no agent socket appeared");
    });
    let o = build(&d, Arc::new(m), HashMap::new(), "bk-ssh").await;
    o.solve.as_ref().unwrap_or_else(|s| panic!("{s:?}\n{}", d.log_tail()));
    assert_eq!(talk.await.unwrap(), b"HELLO AGENT");
    assert_eq!(d.ok(&["run", "--rm", "bk-ssh", "cat", "/sock"]).trim(), "/run/buildkit/ssh_agent.0");
    assert!(d.ok(&["run", "--rm", "bk-ssh", "sh", "-c", "ls /run 2>&1; true"]).contains("No such file"));

    let o =
        build(&d, dirs("FROM busybox\nRUN --mount=type=ssh,id=work,required true\n", &[]), HashMap::new(), "bk-ssh2")
            .await;
    assert!(o.gateway.unwrap_err().message().contains("no SSH key \"work\""));
}

/// `--build-context NAME=docker-image://REF` and `NAME=<folder>`: FROM/COPY --from NAME use the
/// image, or the folder (imported for the build, the same files giving the same image, so the
/// step cache holds; removed after the build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_contexts_stand_for_their_names() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM base\nCOPY --from=extra /f.txt /f.txt\nRUN cat /f.txt > /seen\n";
    let ctx = || {
        let mut m = (*dirs(df, &[])).clone();
        m.insert("extra".into(), vec![("f.txt".into(), b"from a named folder\n".to_vec())]);
        Arc::new(m)
    };
    let opts = HashMap::from([
        ("context:base".to_string(), "docker-image://busybox".to_string()),
        ("context:extra".to_string(), "local:extra".to_string()),
    ]);
    let ids = || d.ok(&["images", "-aq"]).lines().map(String::from).collect::<std::collections::BTreeSet<_>>();
    let images_before = ids().len();
    let o = build(&d, ctx(), opts.clone(), "bk-named:1").await;
    o.solve.as_ref().unwrap_or_else(|s| panic!("{s:?}\n{}", d.log_tail()));
    assert_eq!(d.ok(&["run", "--rm", "bk-named:1", "cat", "/seen"]).trim(), "from a named folder");
    let again = build(&d, ctx(), opts, "bk-named:2").await;
    assert!(again.vertex("[2/3] COPY --from=extra /f.txt /f.txt").cached);
    // The folder's image went with its build: only the build's own images remain.
    // (the final image and the COPY step's; the RUN's is the final one)
    assert_eq!(ids().len(), images_before + 2, "{}", d.ok(&["images", "-a"]));
    let remote = HashMap::from([("context:base".to_string(), "https://example.com/r.git".to_string())]);
    let o = build(&d, ctx(), remote, "bk-named:3").await;
    assert_eq!(o.gateway.unwrap_err().code(), tonic::Code::Unimplemented);
}

/// `docker build --call targets`: the stages, answered without building; other subrequests are
/// refused clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_targets_lists_the_stages() {
    let d = Berthd::start();
    let df = "FROM busybox AS base\nRUN true\nFROM base AS final\nRUN false\n";
    let opts = HashMap::from([("requestid".to_string(), "frontend.targets".to_string())]);
    let o = build(&d, dirs(df, &[]), opts, "bk-call").await;
    let meta = o.gateway.as_ref().unwrap().result.as_ref().unwrap().metadata.clone();
    assert_eq!(meta["version"], b"1.0.0");
    let list: serde_json::Value = serde_json::from_slice(&meta["result.json"]).unwrap();
    let names: Vec<&str> = list["targets"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["base", "final"]);
    assert_eq!(list["targets"][1]["default"], true);
    assert_eq!(list["targets"][1]["location"]["ranges"][0]["start"]["line"], 3);
    o.solve.as_ref().unwrap();
    assert!(d.ok(&["images", "-q"]).is_empty(), "a subrequest builds nothing");
    let lint = HashMap::from([("requestid".to_string(), "frontend.lint".to_string())]);
    let o = build(&d, dirs(df, &[]), lint, "bk-lint").await;
    assert_eq!(o.gateway.unwrap_err().code(), tonic::Code::Unimplemented);
}

/// `-o type=local,dest=...` and `-o type=tar,dest=...`: the image's files sent to the client,
/// without the container stubs (`/.dockerenv`), symlinks as symlinks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_tar_exporters_send_the_files() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let df = "FROM busybox\nRUN echo exported > /out.txt && ln -s out.txt /link\n";
    let mut m = (*dirs(df, &[])).clone();
    m.insert("exports".into(), vec![("0".into(), b"local".to_vec()), ("1".into(), b"tar".to_vec())]);
    let exporters = vec![
        proto::Exporter { r#type: "local".into(), attrs: Default::default() },
        proto::Exporter { r#type: "tar".into(), attrs: Default::default() },
    ];
    let o = build_with(&d, Arc::new(m), HashMap::new(), exporters).await;
    o.solve.as_ref().unwrap_or_else(|s| panic!("{s:?}\n{}", d.log_tail()));
    let r = o.received.lock().unwrap().clone();
    assert_eq!(
        r.get("local:out.txt").map(Vec::as_slice),
        Some(b"exported\n".as_slice()),
        "{:?}",
        r.keys().take(20).collect::<Vec<_>>()
    );
    assert!(r.contains_key("local:bin/busybox") && r.contains_key("local:link") && !r.contains_key("local:.dockerenv"));
    assert!(o.logs(&o.vertex("exporting to client directory")).contains("copying files"));
    let tar = r.get("tar").expect("tar stream");
    let mut a = tar::Archive::new(tar.as_slice());
    let mut seen = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        seen.insert(p, (e.header().entry_type(), data));
    }
    assert_eq!(seen["out.txt"].1, b"exported\n");
    assert_eq!(seen["link"].0, tar::EntryType::Symlink);
    assert!(!seen.contains_key(".dockerenv"), "{:?}", seen.keys().take(10).collect::<Vec<_>>());
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
    // Exporters to the client: a folder and a tarball.
    let dest = d.root.join("bx-out");
    let o = docker(&["buildx", "build", "-o", &format!("type=local,dest={}", dest.display()), "."]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "a\n");
    assert!(!dest.join(".dockerenv").exists());
    let tarball = d.root.join("bx-out.tar");
    let o = docker(&["buildx", "build", "-o", &format!("type=tar,dest={}", tarball.display()), "."]);
    assert!(o.status.success(), "{}", err(&o));
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&tarball).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"msg".to_string()) && names.contains(&"bin/busybox".to_string()), "{names:?}");
    // --ssh default: the step gets a socket to this client's ssh-agent.
    let agent_sock = d.root.join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent_sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    berth_e2e::eventually("ssh-agent listens", || agent_sock.exists());
    std::fs::write(
        ctx.join("Dockerfile.ssh"),
        "FROM busybox\nRUN --mount=type=ssh,required test -S \"$SSH_AUTH_SOCK\"\n",
    )
    .unwrap();
    let o = std::process::Command::new("docker")
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", &cfg)
        .env("SSH_AUTH_SOCK", &agent_sock)
        .args(["build", "--ssh", "default", "-f", "Dockerfile.ssh", "."])
        .current_dir(&ctx)
        .bounded();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(o.status.success(), "{}", err(&o));
    let o = docker(&["build", "--no-cache", "-f", "Dockerfile.ssh", "."]);
    assert!(!o.status.success() && err(&o).contains("no SSH key"), "{}", err(&o));
    // Named contexts: an image and a folder.
    let extra = d.root.join("bx-extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("e.txt"), "extra\n").unwrap();
    std::fs::write(ctx.join("Dockerfile.n"), "FROM base\nCOPY --from=extra /e.txt /e.txt\n").unwrap();
    let o = docker(&[
        "build",
        "-f",
        "Dockerfile.n",
        "--build-context",
        "base=docker-image://busybox",
        "--build-context",
        &format!("extra={}", extra.display()),
        "-t",
        "bx-named",
        ".",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(d.ok(&["run", "--rm", "bx-named", "cat", "/e.txt"]).trim(), "extra");
    // --call targets: the stages, nothing built.
    let o = docker(&["buildx", "build", "--call", "targets", "."]);
    assert!(o.status.success() && out(&o).contains("(default)"), "{}{}", out(&o), err(&o));
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

/// Hostile or broken clients of `/grpc` get errors in gRPC's terms and berthd keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_grpc_clients_get_errors_and_berthd_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Berthd::start();
    // Not HTTP/2 after the upgrade: the connection is closed, nothing else happens.
    let mut io = hyper_util::rt::TokioIo::new(hijack(&d, "/grpc", &[]).await);
    io.write_all(b"GET / HTTP/1.1\r\n\r\nthis is not h2").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), io.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "berthd kept a garbage connection open");

    let mut g = control(&d).await;
    // A body that is not a SolveRequest (field 2 must be a message, here a varint).
    let bad = proto::Stat { path: "r".into(), mode: 7, ..Default::default() };
    let e = unary::<_, proto::SolveResponse>(&mut g, "/moby.buildkit.v1.Control/Solve", Request::new(bad))
        .await
        .unwrap_err();
    assert!(matches!(e.code(), tonic::Code::Internal | tonic::Code::InvalidArgument), "{e:?}");
    // A method berthd does not serve.
    let e =
        unary::<_, proto::Empty>(&mut g, "/moby.buildkit.v1.Control/UpdateBuildHistory", Request::new(proto::Empty {}))
            .await
            .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    // An exporter berthd does not have, and a Solve without a ref.
    let oci = proto::SolveRequest {
        r#ref: "x1".into(),
        exporters: vec![proto::Exporter { r#type: "oci".into(), attrs: Default::default() }],
        ..Default::default()
    };
    let e = unary::<_, proto::SolveResponse>(&mut g, "/moby.buildkit.v1.Control/Solve", Request::new(oci))
        .await
        .unwrap_err();
    assert!(e.code() == tonic::Code::Unimplemented && e.message().contains("\"oci\""), "{e:?}");
    let e = unary::<_, proto::SolveResponse>(
        &mut g,
        "/moby.buildkit.v1.Control/Solve",
        Request::new(proto::SolveRequest::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // A file that is not as long as the client announced.
    d.import_busybox("busybox");
    let o = build(&d, dirs("FROM busybox\nCOPY f /f\n", &[("f", "lie:short")]), HashMap::new(), "bk-lie").await;
    assert!(o.gateway.unwrap_err().message().contains("f changed while it was sent"));
    // Still serving, on this connection and on the API.
    let w: proto::ListWorkersResponse =
        unary(&mut g, "/moby.buildkit.v1.Control/ListWorkers", Request::new(proto::Empty {})).await.unwrap();
    assert_eq!(w.record.len(), 1);
    assert!(d.ok(&["version", "--format", "{{.Server.Version}}"]).contains("berth"));
}

/// Concurrent buildx builds (bake, CI runners): each finishes, the ones sharing a context key wait
/// for each other's sync only and each sees its own files, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_builds_all_finish_and_leave_nothing() {
    let d = Arc::new(Berthd::start());
    d.import_busybox("busybox");
    let mut tasks = Vec::new();
    for i in 0..6 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let df = format!("FROM busybox\nCOPY . /ctx/\nRUN --mount=type=cache,target=/c,sharing=locked echo {i} >> /c/log && cp /ctx/f /f\n");
            let mut m = (*dirs(&df, &[("f", &format!("file {i}"))])).clone();
            // Three builds share one context folder (buildx's shared key), three have their own.
            let key = if i % 2 == 0 { "shared".to_string() } else { format!("own-{i}") };
            m.insert("sharedkey".into(), vec![("key".into(), key.into_bytes())]);
            let o = build(&d, Arc::new(m), HashMap::new(), &format!("cc:{i}")).await;
            o.solve.as_ref().map(|_| ()).map_err(|s| s.message().to_string())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = tokio::time::timeout(std::time::Duration::from_secs(120), t).await.expect("a build hung").unwrap();
        r.unwrap_or_else(|e| panic!("build {i}: {e}\n{}", d.log_tail()));
    }
    for i in 0..6 {
        assert_eq!(d.ok(&["run", "--rm", &format!("cc:{i}"), "cat", "/f"]).trim(), format!("file {i}"));
    }
    let left = |p: std::path::PathBuf| std::fs::read_dir(p).map(|r| r.count()).unwrap_or(0);
    berth_e2e::eventually("build copies removed", || left(d.data_root().join("buildkit/work")) == 0);
    let staging = std::fs::read_dir(d.data_root().join("image/tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("runmount-"))
        .count();
    assert_eq!(staging, 0, "mount staging left behind");
}

/// A client that goes away in the middle of a gateway build (Ctrl-C in buildx): its build ends,
/// so a Status reader of that build is answered to the end instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_build_ends_its_build() {
    let d = Berthd::start();
    let r = format!("gone{}", berth_e2e::free_port());
    let mut a = control(&d).await;
    let req = proto::SolveRequest { r#ref: r.clone(), session: "nobody".into(), ..Default::default() };
    let solve = tokio::spawn(async move {
        let _: Result<proto::SolveResponse, _> =
            unary(&mut a, "/moby.buildkit.v1.Control/Solve", Request::new(req)).await;
    });
    let mut b = control(&d).await;
    b.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<proto::StatusRequest, proto::StatusResponse>::default();
    let status = b
        .server_streaming(
            Request::new(proto::StatusRequest { r#ref: r }),
            http::uri::PathAndQuery::from_static("/moby.buildkit.v1.Control/Status"),
            codec,
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    solve.abort(); // the client's call (and its connection) goes away, no Return
    let mut s = status.into_inner();
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(m) = futures_util::StreamExt::next(&mut s).await {
            m.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the Status stream of an abandoned build never ended");
}
