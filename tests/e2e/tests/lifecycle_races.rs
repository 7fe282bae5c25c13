//! The container life cycle under concurrency: many clients at once, operations racing an exit,
//! generated names, restarting containers. Every request has a client deadline; a deadline that
//! passes fails the test (a hang is a bug, never a slow run).

use std::time::Duration;

use berth_cli::client::Client;
use berth_e2e::{err, Berthd};
use hyper::Method;
use serde_json::{json, Value};

/// Generous: a request that needs this long is hung, not slow.
const DEADLINE: Duration = Duration::from_secs(60);

fn daemon() -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime")
}

/// One API call with the deadline; the error names the call.
async fn call(c: &Client, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
    match tokio::time::timeout(DEADLINE, c.call(method.clone(), path, body.as_ref())).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{method} {path}: {e}")),
        Err(_) => panic!("{method} {path}: no answer within {DEADLINE:?} (hung)"),
    }
}

/// One API call with the deadline: the answer, or Docker's status and message.
async fn call_status(c: &Client, method: Method, path: &str, body: Option<Value>) -> Result<Value, (u16, String)> {
    match tokio::time::timeout(DEADLINE, c.call(method.clone(), path, body.as_ref())).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => match e.downcast_ref::<berth_cli::client::ApiError>() {
            Some(a) => Err((a.status.as_u16(), a.message.clone())),
            None => panic!("{method} {path}: {e:#}"),
        },
        Err(_) => panic!("{method} {path}: no answer within {DEADLINE:?} (hung)"),
    }
}

async fn create(c: &Client, cmd: &[&str], host_config: Value) -> String {
    let body = json!({"Image": "busybox", "Cmd": cmd, "HostConfig": host_config});
    let v = call(c, Method::POST, "/containers/create", Some(body)).await.expect("create");
    v["Id"].as_str().expect("id").to_string()
}

/// 16 clients × create → start → wait → rm. Before the state machine, about one cycle in 400 lost
/// its exit: the wait never answered, and every later wait on that container hung too.
#[test]
fn concurrent_lifecycles_never_lose_an_exit() {
    let d = daemon();
    const CLIENTS: usize = 16;
    const CYCLES: usize = 25;
    let host = d.host();
    rt().block_on(async move {
        let mut tasks = Vec::new();
        for worker in 0..CLIENTS {
            let c = Client::new(&host).expect("client");
            tasks.push(tokio::spawn(async move {
                let mut kept = None;
                for cycle in 0..CYCLES {
                    let code = (worker + cycle) % 3;
                    let cmd = format!("exit {code}");
                    let id = create(&c, &["sh", "-c", &cmd], json!({})).await;
                    call(&c, Method::POST, &format!("/containers/{id}/start"), None).await.expect("start");
                    let w = call(&c, Method::POST, &format!("/containers/{id}/wait"), None).await.expect("wait");
                    assert_eq!(w["StatusCode"], code as i64, "{id}: {w}");
                    // A second wait on the exited container answers at once with the same code.
                    let w = call(&c, Method::POST, &format!("/containers/{id}/wait"), None).await.expect("wait");
                    assert_eq!(w["StatusCode"], code as i64, "{id}: {w}");
                    let st = call(&c, Method::GET, &format!("/containers/{id}/json"), None).await.expect("inspect");
                    assert_eq!(st["State"]["Status"], "exited", "{id}: {}", st["State"]);
                    if cycle == CYCLES - 1 {
                        kept = Some(id);
                    } else {
                        call(&c, Method::DELETE, &format!("/containers/{id}"), None).await.expect("rm");
                    }
                }
                kept.expect("kept")
            }));
        }
        for t in tasks {
            t.await.expect("worker");
        }
    });
    // The docker CLI's `wait` on exited containers answers at once.
    let ids: Vec<String> = d.ok(&["ps", "-aq"]).lines().map(String::from).collect();
    assert_eq!(ids.len(), CLIENTS);
    let mut args = vec!["wait"];
    args.extend(ids.iter().map(String::as_str));
    assert_eq!(d.ok(&args).lines().count(), CLIENTS);
}

/// `commit` (which pauses by default) right after `start`, as the container exits: every commit
/// answers. Before, a pause sent as the process exited was never answered, and the commit hung.
#[test]
fn commit_racing_an_exit_always_answers() {
    let d = daemon();
    let host = d.host();
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        for i in 0..24 {
            let id = create(&c, &["touch", "/test"], json!({})).await;
            call(&c, Method::POST, &format!("/containers/{id}/start"), None).await.expect("start");
            let v = call(&c, Method::POST, &format!("/commit?container={id}&repo=racy&tag={i}"), None)
                .await
                .expect("commit");
            assert!(v["Id"].as_str().is_some_and(|s| s.starts_with("sha256:")), "{v}");
            let w = call(&c, Method::POST, &format!("/containers/{id}/wait"), None).await.expect("wait");
            assert_eq!(w["StatusCode"], 0);
            // Not paused, whatever the order: a later rm needs no unpause.
            call(&c, Method::DELETE, &format!("/containers/{id}"), None).await.expect("rm");
        }
    });
}

/// Generated names are drawn and reserved in one step: 120 unnamed creates at once all succeed,
/// each with its own name. (Before, two creates could draw the same name and one failed with
/// "Conflict. The container name … is already in use".)
#[test]
fn generated_names_never_collide() {
    let d = daemon();
    let host = d.host();
    let names = rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        let mut tasks = Vec::new();
        for _ in 0..120 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { create(&c, &["true"], json!({})).await }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("create task"));
        }
        let mut names = Vec::new();
        for id in ids {
            let v = call(&c, Method::GET, &format!("/containers/{id}/json"), None).await.expect("inspect");
            names.push(v["Name"].as_str().expect("name").to_string());
        }
        names
    });
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate generated names: {names:?}");
    // A chosen name that is taken is still a conflict, in Docker's words.
    let taken = names[0].trim_start_matches('/');
    let o = d.docker(&["create", "--name", taken, "busybox", "true"]);
    assert!(err(&o).contains("is already in use by container"), "{}", err(&o));
}

/// A container the restart policy is about to run again cannot be removed without force (409 in
/// Docker's words); with force it goes, and the policy does not bring it back.
#[test]
fn restarting_container_needs_force_to_remove() {
    let d = daemon();
    let id = d.ok(&["run", "-d", "--restart", "always", "busybox", "false"]);
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut saw_restarting = false;
    while !saw_restarting {
        assert!(std::time::Instant::now() < deadline, "never saw it restarting");
        let o = d.docker(&["rm", &id]);
        assert!(!o.status.success(), "a restarting container was removed without force");
        let e = err(&o);
        if e.contains("You cannot remove a restarting container") {
            assert!(e.contains("Stop the container before attempting removal or force remove"), "{e}");
            saw_restarting = true;
        } else {
            assert!(e.contains("container is running"), "{e}");
        }
    }
    let st = d.ok(&["inspect", "-f", "{{.State.Restarting}} {{.State.Running}}", &id]);
    assert!(st == "true true" || st == "false true", "{st}");
    d.ok(&["rm", "-f", &id]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
}

/// kill -9 of berthd while a build's RUN step runs, three times (once with the step's shim killed
/// too, as after a reboot): the next start collects the step containers and their cgroups, and
/// the images of the steps that had finished, and nothing of them is left (before: 8 cgroups after
/// three kills, and a dangling image per kill).
#[test]
fn crash_mid_build_leaves_nothing_behind() {
    let mut d = daemon();
    let ctx = tempfile::tempdir().expect("context");
    let df = "FROM busybox\nRUN echo one > /one\nENV STEP=two\nRUN echo step-running; sleep 300\n";
    std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
    let base = d.ok(&["images", "-aq", "--no-trunc"]);
    for round in 0..3 {
        let mut build = std::process::Command::new("docker")
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", ctx.path().to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker build");
        // The last step: the ones before it have made their images by then.
        berth_e2e::eventually("the last RUN step to run", || {
            d.ok(&["ps", "--no-trunc", "--filter", "status=running", "--format", "{{.Command}}"]).contains("sleep 300")
        });
        d.crash();
        if round == 2 {
            for pid in d.shims() {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid).unwrap(),
                    rustix::process::Signal::KILL,
                );
            }
        }
        let _ = build.wait();
        d.spawn();
        assert_eq!(d.ok(&["ps", "-aq"]), "", "round {round}: build-step containers left:\n{}", d.log_tail());
        assert!(d.log().contains("recovery: removed build-step containers"), "{}", d.log_tail());
        // Only the parent itself may remain in each hierarchy: no container cgroup under it.
        let leftover = d.container_cgroups();
        assert!(leftover.is_empty(), "round {round}: cgroups left: {leftover:?}");
        assert!(d.mounts().iter().all(|m| !m.contains("/snapshots/")), "{:?}", d.mounts());
        assert_eq!(d.ok(&["images", "-aq", "--no-trunc"]), base, "round {round}: step images left");
        assert!(d.log().contains("recovery: removed dangling images of interrupted builds"), "{}", d.log_tail());
    }
    // A build that ends (here: fails) keeps its step images as cache, as Docker's classic builder.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nRUN echo one > /one\nRUN false\n").unwrap();
    let o = d.docker_env(&[("DOCKER_BUILDKIT", "0")], &["build", ctx.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let after = d.ok(&["images", "-aq"]).lines().count();
    assert_eq!(after, 2, "the finished step's image is kept");
    d.restart();
    assert_eq!(d.ok(&["images", "-aq"]).lines().count(), after, "a finished build's images survive a restart");
}

/// Attach, then start (compose v1's `run -T`, docker-py's attach_socket): the output and exit code
/// of a short-lived container are never lost, whatever the timing, with the machine loaded by two
/// spinning processes and eight such runs at a time.
#[test]
fn attached_output_survives_load() {
    let d = daemon();
    /// Load that ends with the test, however it ends (dropping a Child does not kill it).
    struct Spinners(Vec<std::process::Child>);
    impl Drop for Spinners {
        fn drop(&mut self) {
            for s in &mut self.0 {
                let _ = s.kill();
                let _ = s.wait();
            }
        }
    }
    let spinners = Spinners(
        (0..2).map(|_| std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap()).collect(),
    );
    let script = r#"
import docker, os, threading
c = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=60)
lost = []
def one(i):
    ctr = c.containers.create("busybox", ["sh", "-c", "echo line-%d; echo err-%d >&2; exit %d" % (i, i, i % 4)])
    s = c.api.attach_socket(ctr.id, params={"stdout": 1, "stderr": 1, "stream": 1})
    ctr.start()
    sock, data = s._sock, b""
    sock.settimeout(60)
    while True:
        b = sock.recv(65536)
        if not b:
            break
        data += b
    code = ctr.wait(timeout=60)["StatusCode"]
    if b"line-%d" % i not in data or b"err-%d" % i not in data or code != i % 4:
        lost.append((i, code, data[:120]))
    ctr.remove()
for batch in range(6):
    ts = [threading.Thread(target=one, args=(batch * 8 + k,)) for k in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
print("LOST", lost)
"#;
    let o = berth_e2e::run_bounded(
        std::process::Command::new("python3").arg("-c").arg(script).env("DOCKER_HOST", d.host()),
    );
    drop(spinners);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "LOST []");
}

/// kill -9 of berthd while clients create, start, exec into, commit and remove containers, load
/// images and pull them from a registry, three times: each restart finds a consistent state (every container inspects as created,
/// running, paused or exited and can be removed), and once everything is removed nothing is left: no
/// mount, cgroup, network namespace, shim or unpack folder. (It found a commit's pause cut off by
/// the crash: a "running" container left frozen, which `rm -f` could not kill.)
#[test]
fn kill_9_under_load_leaves_a_consistent_state() {
    let mut d = daemon();
    let tar = d.root.join("bb.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), "busybox"]);
    let reg = berth_e2e::registry::BerthRegistry::start(&[], &[]);
    let remote = berth_e2e::registry::seed(&d, &reg.addr, "crash/pulled");
    for round in 0..3 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ops = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let host = d.host();
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (stop, ops, host, tar) = (stop.clone(), ops.clone(), host.clone(), tar.clone());
                let remote = remote.clone();
                std::thread::spawn(move || {
                    let docker = |args: &[&str]| {
                        berth_e2e::run_bounded(
                            std::process::Command::new("docker").env("DOCKER_HOST", &host).args(args),
                        )
                    };
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let name = format!("w{w}-{round}-{i}");
                        i += 1;
                        match w {
                            0 | 1 => {
                                docker(&["run", "-d", "--name", &name, "busybox", "sleep", "300"]);
                                docker(&["exec", &name, "sh", "-c", "echo x > /f"]);
                                docker(&["commit", &name, &format!("snap:{name}")]);
                                docker(&["rm", "-f", &name]);
                            }
                            2 | 3 => {
                                docker(&["run", "--rm", "busybox", "true"]);
                            }
                            4 => {
                                docker(&["create", "--name", &name, "busybox", "true"]);
                                docker(&["start", &name]);
                            }
                            5 => {
                                docker(&["load", "-i", tar.to_str().unwrap()]);
                            }
                            _ => {
                                docker(&["rmi", &remote]);
                                docker(&["pull", &remote]);
                            }
                        }
                        ops.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        berth_e2e::eventually("the clients to get going", || ops.load(std::sync::atomic::Ordering::SeqCst) >= 4);
        d.crash();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in workers {
            w.join().expect("worker");
        }
        d.spawn();
        let ids: Vec<String> = d.ok(&["ps", "-aq", "--no-trunc"]).lines().map(String::from).collect();
        for id in &ids {
            let st = d.ok(&["inspect", "-f", "{{.State.Status}}", id]);
            // Paused is consistent too: a commit's pause the crash cut off, recorded and frozen alike.
            assert!(matches!(st.as_str(), "created" | "running" | "paused" | "exited"), "round {round}: {id} is {st}");
        }
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            d.ok(&args);
        }
        assert_eq!(d.ok(&["ps", "-aq"]), "", "round {round}");
        assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "alive"]), "alive");
        // A pull the crash cut off leaves either the whole image or none of it: pulled again, it runs.
        d.ok(&["pull", &remote]);
        assert_eq!(d.ok(&["run", "--rm", &remote, "echo", "pulled"]), "pulled");
        berth_e2e::eventually("every shim to exit", || d.shims().is_empty());
        let snapshots: Vec<String> = d.mounts().into_iter().filter(|m| m.contains("/snapshots/")).collect();
        assert!(snapshots.is_empty(), "round {round}: rootfs mounts left: {snapshots:?}");
        let netns = std::fs::read_dir(d.root.join("run/netns")).map(|r| r.count()).unwrap_or(0);
        assert_eq!(netns, 0, "round {round}: network namespaces left");
        let cgroups = d.container_cgroups();
        assert!(cgroups.is_empty(), "round {round}: cgroups left: {cgroups:?}");
        assert_eq!(d.image_tmp_entries(), 0, "round {round}: unpack folders left");
    }
}

/// Which operation races the exit in `operations_racing_an_exit_answer`.
#[derive(Clone, Copy, Debug)]
enum Racer {
    Stop,
    Kill,
    Exec,
    Pause,
    Remove,
}

/// Sends `op` to a container whose process exits at about the same moment, and checks that the
/// answer is one Docker gives for one of the two orders (before or after the exit).
async fn race_one(c: &Client, op: Racer, id: &str) {
    let path = |p: &str| format!("/containers/{id}{p}");
    let r = match op {
        Racer::Stop => call_status(c, Method::POST, &path("/stop?t=1"), None).await,
        Racer::Kill => call_status(c, Method::POST, &path("/kill"), None).await,
        Racer::Pause => call_status(c, Method::POST, &path("/pause"), None).await,
        Racer::Remove => call_status(c, Method::DELETE, &path(""), None).await,
        Racer::Exec => {
            let body = json!({"Cmd": ["true"], "AttachStdout": false});
            match call_status(c, Method::POST, &path("/exec"), Some(body)).await {
                Ok(v) => {
                    let exec = v["Id"].as_str().expect("exec id").to_string();
                    let started =
                        call_status(c, Method::POST, &format!("/exec/{exec}/start"), Some(json!({"Detach": true})))
                            .await;
                    // Started or refused, the exec never reports running once the container is gone.
                    call(c, Method::POST, &path("/wait"), None).await.expect("wait");
                    berth_e2e::eventually_async("the exec to end", || async {
                        let v = call(c, Method::GET, &format!("/exec/{exec}/json"), None).await.expect("exec inspect");
                        v["Running"] == false
                    })
                    .await;
                    started
                }
                refused => refused,
            }
        }
    };
    match r {
        Ok(_) => {}
        // Stop of an exited container: 304; the rest: 409 in Docker's words.
        Err((304, _)) if matches!(op, Racer::Stop) => {}
        Err((409, m)) if m.contains("is not running") || m.contains("container is running") => {}
        Err(other) => panic!("{op:?} on {id}: unexpected answer {other:?}"),
    }
}

/// After the race and the start have both answered: whatever the order, the container ends
/// exited with a code (or was removed), and goes.
async fn settle(c: &Client, op: Racer, id: &str) {
    let path = |p: &str| format!("/containers/{id}{p}");
    if matches!(op, Racer::Pause) {
        // Paused before the exit: frozen, so it cannot have exited; unpause lets it finish.
        let st = call(c, Method::GET, &path("/json"), None).await.expect("inspect");
        if st["State"]["Paused"] == true {
            // Or the pause froze a process that had just exited (a zombie): its exit lands now.
            match call_status(c, Method::POST, &path("/unpause"), None).await {
                Ok(_) => {}
                Err((409, m)) if m.contains("is not running") => {}
                Err(e) => panic!("unpause of {id}: {e:?}"),
            }
        }
    }
    if let Ok(st) = call_status(c, Method::GET, &path("/json"), None).await {
        let w = call(c, Method::POST, &path("/wait"), None).await.expect("wait");
        assert!(w["StatusCode"].is_i64(), "{op:?}: {w}");
        let st2 = call(c, Method::GET, &path("/json"), None).await.expect("inspect");
        assert_eq!(st2["State"]["Status"], "exited", "{op:?} on {id}: {} then {}", st["State"], st2["State"]);
        assert_eq!(st2["State"]["Running"], false);
        call(c, Method::DELETE, &path(""), None).await.expect("rm");
    }
}

/// stop, kill, exec, pause and rm, each sent as the container's process exits (started without
/// waiting, the process living 0–3 ms): every request answers, with an answer Docker gives for one
/// of the two orders, and the container always ends exited with its code and removable.
#[test]
fn operations_racing_an_exit_answer() {
    let d = daemon();
    let host = d.host();
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        let mut tasks = Vec::new();
        for (k, op) in [Racer::Stop, Racer::Kill, Racer::Exec, Racer::Pause, Racer::Remove].into_iter().enumerate() {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..16 {
                    // usleep is not in busybox's sh; a short loop is a process that ends by itself.
                    let spin = format!("i=0; while [ $i -lt {} ]; do i=$((i+1)); done", (i + k) % 4 * 40);
                    let id = create(&c, &["sh", "-c", &spin], json!({})).await;
                    let start = {
                        let (c, id) = (c.clone(), id.clone());
                        tokio::spawn(async move {
                            call_status(&c, Method::POST, &format!("/containers/{id}/start"), None).await
                        })
                    };
                    // Half the time right after start returns, half while it runs.
                    let started = if i % 2 == 0 {
                        let s = start.await.expect("start task");
                        race_one(&c, op, &id).await;
                        s
                    } else {
                        tokio::task::yield_now().await;
                        let raced = race_one(&c, op, &id);
                        tokio::join!(raced, start).1.expect("start task")
                    };
                    settle(&c, op, &id).await;
                    match started {
                        Ok(_) => {}
                        // rm got there first: the container went, or is going, before the start.
                        Err((404, _)) if matches!(op, Racer::Remove) => {}
                        Err((409, m)) if matches!(op, Racer::Remove) && m.contains("marked for removal") => {}
                        Err(e) => panic!("start of {id} racing {op:?}: {e:?}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("racer");
        }
    });
    assert_eq!(d.ok(&["ps", "-aq"]), "");
}

/// wait registered just before start, as the process exits, and after: every condition
/// (next-exit, not-running, removed) answers with the exit code.
#[test]
fn waits_around_an_exit_all_answer() {
    let d = daemon();
    let host = d.host();
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        for i in 0..20 {
            let code = i % 5;
            let id = create(&c, &["sh", "-c", &format!("exit {code}")], json!({})).await;
            let wait = |cond: &'static str| {
                let (c, id) = (c.clone(), id.clone());
                tokio::spawn(async move {
                    call(&c, Method::POST, &format!("/containers/{id}/wait?condition={cond}"), None).await
                })
            };
            // Registered on a created container: the coming exit is the one that counts.
            let before = wait("next-exit");
            let removed = wait("removed");
            // Docker answers a not-running wait on a created container at once; so the races
            // start here, as the start answers and the process exits.
            call(&c, Method::POST, &format!("/containers/{id}/start"), None).await.expect("start");
            let during = wait("not-running");
            let v = before.await.expect("wait task").expect("before");
            assert_eq!(v["StatusCode"], code, "wait registered before the start of {id}: {v}");
            let after = wait("not-running");
            for (what, w) in [("during", during), ("after", after)] {
                let v = w.await.expect("wait task").expect(what);
                assert_eq!(v["StatusCode"], code, "wait {what} the exit of {id}: {v}");
            }
            call(&c, Method::DELETE, &format!("/containers/{id}"), None).await.expect("rm");
            let v = removed.await.expect("wait task").expect("removed");
            assert_eq!(v["StatusCode"], code, "wait removed of {id}: {v}");
        }
    });
}

/// kill -9 of berthd while a pull is half-way through a layer (the proxy stalls it): the restart
/// finds neither the image nor any part of it (no layer, no unpack folder), and the pull then
/// works from the start.
#[test]
fn kill_9_during_pull_leaves_no_part_of_the_image() {
    use berth_e2e::registry::{seed, BerthRegistry, Fault, FaultProxy};
    // No local busybox: its layer would make the pull skip the download.
    let mut d = Berthd::start();
    let reg = BerthRegistry::start(&[], &[]);
    seed(&d, &reg.addr, "crash/pulled");
    d.ok(&["rmi", &format!("{}/crash/pulled:1", reg.addr), "bb-seed"]);
    let count = |d: &Berthd, dir: &str| std::fs::read_dir(d.data_root().join(dir)).map(|r| r.count()).unwrap_or(0);
    let layers = |d: &Berthd| (count(d, "image/layers"), count(d, "image/blobs/sha256"));
    let before = layers(&d);
    let proxy = FaultProxy::start(&reg.addr, Fault::Stall);
    let remote = format!("{}/crash/pulled:1", proxy.addr);
    let pull = {
        let (host, remote) = (d.host(), remote.clone());
        std::thread::spawn(move || {
            berth_e2e::run_bounded(
                std::process::Command::new("docker").env("DOCKER_HOST", host).args(["pull", &remote]),
            )
        })
    };
    berth_e2e::eventually("the layer download to start", || {
        proxy.layer_gets.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    d.crash();
    assert!(!pull.join().expect("pull").status.success(), "the pull finished before the crash");
    d.spawn();
    assert!(!d.docker(&["image", "inspect", &remote]).status.success(), "a half-pulled image exists");
    assert_eq!(layers(&d), before, "layers or blobs of the cut-off pull are left");
    assert_eq!(d.image_tmp_entries(), 0, "download or unpack folders left");
    d.ok(&["pull", &remote]);
    assert_eq!(d.ok(&["run", "--rm", &remote, "echo", "pulled"]), "pulled");
}

/// Restart after restart: the next start begins the moment the exit is recorded. Before, the exit
/// handler removed the bundle folder after recording the exit, and now and then deleted the new
/// start's bundle under it (the restart failed with 404 "No such file or directory").
#[test]
fn back_to_back_restarts_all_succeed() {
    let d = daemon();
    let id = d.ok(&["run", "-d", "busybox", "sleep", "600"]);
    let host = d.host();
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        for i in 0..60 {
            let r = call(&c, Method::POST, &format!("/containers/{id}/restart?t=0"), None).await;
            assert!(r.is_ok(), "restart {i}: {r:?}");
        }
        let st = call(&c, Method::GET, &format!("/containers/{id}/json"), None).await.expect("inspect");
        assert_eq!(st["State"]["Status"], "running");
        assert_eq!(st["RestartCount"], 0, "restarts by the client are not the policy's");
    });
}

/// The shim of a running container killed while berthd runs (an OOM killer's choice, an operator's
/// mistake): berthd records the exit (255, with the reason), the container's processes do not
/// outlive it unsupervised, and the container starts again and goes without a trace.
#[test]
fn a_killed_shim_ends_its_container_cleanly() {
    let d = daemon();
    let id = d.ok(&["run", "-d", "busybox", "sleep", "600"]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
    // The container's shim is its init's parent (a shim still daemonising may be listed too).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: i32 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(d.shims().contains(&ppid), "{ppid} is not a shim of this daemon: {:?}", d.shims());
    rustix::process::kill_process(rustix::process::Pid::from_raw(ppid).unwrap(), rustix::process::Signal::KILL)
        .unwrap();
    assert_eq!(d.ok(&["wait", &id]), "255");
    let st = d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Error}}", &id]);
    assert!(st.starts_with("exited ") && st.contains("shim"), "{st}");
    berth_e2e::eventually("the container's process to be gone", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(d.container_cgroups().is_empty(), "{:?}", d.container_cgroups());
    assert!(d.mounts().iter().all(|m| !m.contains("/snapshots/")), "{:?}", d.mounts());
    d.ok(&["start", &id]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", &id]), "running");
    d.ok(&["rm", "-f", &id]);
    berth_e2e::eventually("every shim to exit", || d.shims().is_empty());
}

/// Sixteen creates of the same explicit name at once: exactly one wins, the others get Docker's
/// 409 naming the winner, and the name is free again once the winner is removed.
#[test]
fn same_name_creates_race_to_one_winner() {
    let d = daemon();
    let host = d.host();
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move {
                    let body = json!({"Image": "busybox", "Cmd": ["true"]});
                    call_status(&c, Method::POST, "/containers/create?name=contested", Some(body)).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("create task") {
                Ok(v) => winners.push(v["Id"].as_str().unwrap().to_string()),
                Err((409, m)) => assert!(m.contains("\"/contested\" is already in use by container"), "{m}"),
                Err(e) => panic!("unexpected answer {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        call(&c, Method::DELETE, &format!("/containers/{}", winners[0]), None).await.expect("rm");
        let body = json!({"Image": "busybox", "Cmd": ["true"]});
        call(&c, Method::POST, "/containers/create?name=contested", Some(body)).await.expect("the name is free again");
    });
}

/// A shim reports the exit before it deletes the container's cgroups and runtime state, so a
/// waiter hears of the exit sooner. A start that follows at once must not race that clean-up (it
/// would meet the old runtime state, or have its new cgroup — with the limits in it — deleted
/// under it), and a removal, manual or `--rm`, is not answered before the cgroups are gone.
#[test]
fn a_start_or_removal_right_after_an_exit_waits_for_the_shims_clean_up() {
    let d = daemon();
    let host = d.host();
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        // Exits 0 only when its own memory limit is in force (cgroup v1 or v2).
        let check =
            "l=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max); \
                     test \"$l\" = 33554432";
        let id = create(&c, &["sh", "-c", check], json!({"Memory": 33554432})).await;
        for round in 0..25 {
            call(&c, Method::POST, &format!("/containers/{id}/start"), None).await.expect("start");
            let w = call(&c, Method::POST, &format!("/containers/{id}/wait"), None).await.expect("wait");
            assert_eq!(w["StatusCode"], 0, "round {round}: the limit was not in force: {w}");
        }
        call(&c, Method::DELETE, &format!("/containers/{id}"), None).await.expect("rm");
        assert!(d.container_cgroups().is_empty(), "after rm: {:?}", d.container_cgroups());
        for round in 0..10 {
            let id = create(&c, &["true"], json!({"AutoRemove": true})).await;
            // As the docker CLI does: the wait goes first; a container already gone is removed too.
            let (c2, path) = (c.clone(), format!("/containers/{id}/wait?condition=removed"));
            let waited = tokio::spawn(async move { call_status(&c2, Method::POST, &path, None).await });
            call(&c, Method::POST, &format!("/containers/{id}/start"), None).await.expect("start");
            match waited.await.expect("wait task") {
                Ok(_) | Err((404, _)) => {}
                Err(e) => panic!("round {round}: wait: {e:?}"),
            }
            assert!(d.container_cgroups().is_empty(), "round {round}, after --rm: {:?}", d.container_cgroups());
        }
    });
}

/// A start that fails after its shim made the container (here: the static address is taken, found
/// when the network is plumbed) kills that init; its shim cleans up and goes, and nothing of it is
/// left — no shim, no cgroup — when the address frees and the start succeeds. (Until the fix, the
/// refusal itself hung a worker thread of berthd for good: the address lease was dropped under
/// the lock its drop takes.)
#[test]
fn a_start_failing_after_its_shim_leaves_nothing_behind() {
    let d = daemon();
    d.ok(&["network", "create", "--subnet", &format!("10.214.{}.0/24", d.net), "fixed"]);
    let ip = format!("10.214.{}.77", d.net);
    d.ok(&["run", "-d", "--name", "holder", "--network", "fixed", "--ip", &ip, "busybox", "sleep", "600"]);
    d.ok(&["create", "--name", "second", "--network", "fixed", "--ip", &ip, "busybox", "true"]);
    for round in 0..5 {
        let o = d.docker(&["start", "second"]);
        assert!(err(&o).contains("Address already in use"), "round {round}: {}", err(&o));
    }
    // The same refusal on `network connect` to a running container, which picks its address alike.
    d.ok(&["run", "-d", "--name", "third", "busybox", "sleep", "600"]);
    let o = d.docker(&["network", "connect", "--ip", &ip, "fixed", "third"]);
    assert!(err(&o).contains("Address already in use"), "{}", err(&o));
    d.ok(&["rm", "-f", "third"]);
    berth_e2e::eventually("only the holder's shim", || d.shims().len() == 1);
    berth_e2e::eventually("only the holder's cgroups", || {
        d.container_cgroups().iter().all(|c| c.ends_with(d.ok(&["inspect", "-f", "{{.Id}}", "holder"])))
    });
    d.ok(&["rm", "-f", "holder"]);
    d.ok(&["start", "-a", "second"]);
    d.ok(&["rm", "second"]);
    assert!(d.container_cgroups().is_empty(), "{:?}", d.container_cgroups());
    d.ok(&["network", "rm", "fixed"]);
}

/// `network connect` racing the container's own exit: whether the connect comes before the exit,
/// after it, or while the process and its network namespace go, the answer is a success (the
/// endpoint recorded, plumbed at the next start) or Docker's refusal — never a raw netlink error.
#[test]
fn network_connect_racing_an_exit_never_fails_raw() {
    let d = daemon();
    let host = d.host();
    d.ok(&["network", "create", "racing"]);
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        let mut raced = 0;
        for round in 0..40 {
            let id = create(&c, &["true"], json!({})).await;
            call(&c, Method::POST, &format!("/containers/{id}/start"), None).await.expect("start");
            match call_status(&c, Method::POST, "/networks/racing/connect", Some(json!({"Container": id}))).await {
                Ok(_) => raced += 1,
                Err((409, _)) => {}
                Err(e) => panic!("round {round}: connect: {e:?}"),
            }
            call(&c, Method::DELETE, &format!("/containers/{id}?force=1"), None).await.expect("rm");
        }
        assert!(raced > 0, "no connect succeeded");
    });
}

/// Unpauses racing the thaw that `kill` does on a paused container: each answers 204 or Docker's
/// 409 ("is not paused"), never the runtime's refusal (500) or a lost answer after 10 s.
#[test]
fn unpause_racing_a_kills_thaw_answers_in_dockers_words() {
    let d = daemon();
    let host = d.host();
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        let id = create(&c, &["sleep", "600"], json!({})).await;
        call(&c, Method::POST, &format!("/containers/{id}/start"), None).await.expect("start");
        for round in 0..15 {
            call(&c, Method::POST, &format!("/containers/{id}/pause"), None).await.expect("pause");
            let mut tasks = Vec::new();
            for k in 0..4 {
                let (c, id) = (c.clone(), id.clone());
                tasks.push(tokio::spawn(async move {
                    // SIGWINCH: thawed first, then a signal `sleep` ignores.
                    let path = if k == 0 {
                        format!("/containers/{id}/kill?signal=WINCH")
                    } else {
                        format!("/containers/{id}/unpause")
                    };
                    let t = std::time::Instant::now();
                    (call_status(&c, Method::POST, &path, None).await, t.elapsed())
                }));
            }
            for (k, t) in tasks.into_iter().enumerate() {
                let (answer, took) = t.await.expect("task");
                assert!(took < Duration::from_secs(5), "round {round}: an answer took {took:?}");
                match answer {
                    Ok(_) => {}
                    Err((409, m)) if k > 0 && m.ends_with("is not paused") => {}
                    Err(e) => panic!("round {round}, request {k}: {e:?}"),
                }
            }
            let st = call(&c, Method::GET, &format!("/containers/{id}/json"), None).await.expect("inspect");
            assert_eq!(st["State"]["Status"], "running", "round {round}");
        }
        call(&c, Method::DELETE, &format!("/containers/{id}?force=1"), None).await.expect("rm");
    });
}

/// `rm -f` of a container whose start is failing at that moment (its address is taken): the
/// removal's kill meets a container that never ran and so never exits; it must not wait for that
/// exit (it waited 30 s).
#[test]
fn forced_removal_of_a_failing_start_is_prompt() {
    let d = daemon();
    d.ok(&["network", "create", "--subnet", &format!("10.214.{}.0/24", d.net), "taken"]);
    let ip = format!("10.214.{}.88", d.net);
    d.ok(&["run", "-d", "--name", "holder", "--network", "taken", "--ip", &ip, "busybox", "sleep", "600"]);
    let host = d.host();
    rt().block_on(async move {
        let c = Client::new(&host).expect("client");
        for round in 0..10 {
            let body = json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "taken"},
                "NetworkingConfig": {"EndpointsConfig": {"taken": {"IPAMConfig": {"IPv4Address": ip}}}}});
            let v = call(&c, Method::POST, "/containers/create", Some(body)).await.expect("create");
            let id = v["Id"].as_str().unwrap().to_string();
            let (c2, path) = (c.clone(), format!("/containers/{id}/start"));
            let start = tokio::spawn(async move { call_status(&c2, Method::POST, &path, None).await });
            tokio::time::sleep(Duration::from_millis(round * 2)).await;
            let t = std::time::Instant::now();
            match call_status(&c, Method::DELETE, &format!("/containers/{id}?force=1"), None).await {
                Ok(_) | Err((404, _)) | Err((409, _)) => {}
                Err(e) => panic!("round {round}: rm -f: {e:?}"),
            }
            assert!(t.elapsed() < Duration::from_secs(8), "round {round}: rm -f took {:?}", t.elapsed());
            let _ = start.await.expect("start task");
            let _ = call_status(&c, Method::DELETE, &format!("/containers/{id}?force=1"), None).await;
        }
    });
}
