//! Containers: run, attach, wait, logs, stop, kill, rm, ps, inspect, --rm, exit codes, pause, health.

use std::time::Duration;

use berth_e2e::{err, out, Berthd, Bounded};
use serde_json::Value;

fn daemon() -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d
}

#[test]
fn run_echo_and_exit_codes() {
    let d = daemon();
    let o = d.docker(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(out(&o), "hello\n", "{}", err(&o));
    assert!(o.status.success());
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo to-out; echo to-err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(out(&o), "to-out\n");
    assert_eq!(err(&o), "to-err\n");
    let o = d.docker(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    assert!(err(&o).contains("exec: \"nosuchcmd\": executable file not found in $PATH"), "{}", err(&o));
    let o = d.docker(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", err(&o));
    // Killed by a signal: 128 + signal, as the shell inside reports it too.
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "sleep 30 & kill -9 $!; wait $!"]);
    assert_eq!(o.status.code(), Some(137));
    // --rm removed them all, even the ones that failed to start.
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

#[test]
fn config_merges_with_the_image() {
    let d = Berthd::start();
    let tar = berth_e2e::busybox_tar();
    d.ok(&[
        "import",
        "-c",
        "ENV FROM_IMAGE=1",
        "-c",
        "ENV SHARED=image",
        "-c",
        "WORKDIR /srv",
        "-c",
        "CMD [\"sh\",\"-c\",\"echo default-cmd\"]",
        tar.to_str().unwrap(),
        "bbx",
    ]);
    assert_eq!(d.ok(&["run", "--rm", "bbx"]), "default-cmd");
    let o = d.ok(&[
        "run",
        "--rm",
        "-e",
        "SHARED=user",
        "-e",
        "MINE=2",
        "bbx",
        "sh",
        "-c",
        "echo $FROM_IMAGE $SHARED $MINE $HOSTNAME; pwd",
    ]);
    let lines: Vec<&str> = o.lines().collect();
    let f: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(&f[..3], ["1", "user", "2"]);
    assert_eq!(f[3].len(), 12, "hostname defaults to the short id");
    assert_eq!(lines[1], "/srv");
    assert_eq!(d.ok(&["run", "--rm", "-w", "/made/here", "bbx", "pwd"]), "/made/here");
    assert_eq!(d.ok(&["run", "--rm", "-h", "myhost", "bbx", "hostname"]), "myhost");
    let id = d.ok(&["run", "--rm", "-u", "www", "bbx", "id"]);
    assert!(id.starts_with("uid=33(www) gid=33(www) groups=") && id.contains("50(staff)"), "{id}");
    assert_eq!(d.ok(&["run", "--rm", "-u", "1234:50", "bbx", "id", "-u"]), "1234");
    let o = d.docker(&["run", "--rm", "-u", "nobody2", "bbx", "true"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("unable to find user nobody2"), "{}", err(&o));
    assert_eq!(d.ok(&["run", "--rm", "--entrypoint", "echo", "bbx", "a", "b"]), "a b");
    // Isolation: own pid namespace; its own network namespace (the default bridge's eth0 and lo).
    assert_eq!(d.ok(&["run", "--rm", "bbx", "sh", "-c", "echo $$"]), "1");
    assert_eq!(d.ok(&["run", "--rm", "bbx", "ls", "/sys/class/net"]), "eth0\nlo");
    assert_eq!(d.ok(&["run", "--rm", "--network", "none", "bbx", "ls", "/sys/class/net"]), "lo");
    assert!(d.ok(&["run", "--rm", "bbx", "cat", "/etc/hosts"]).contains("localhost"));
}

#[test]
fn detached_logs_stop_kill_rm() {
    let d = daemon();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "-l",
        "team=a",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    assert_eq!(id.len(), 64);
    berth_e2e::eventually("three ticks", || d.ok(&["logs", "ticker"]).lines().count() >= 3);
    assert_eq!(d.ok(&["ps", "--format", "{{.Names}} {{.State}}"]), "ticker running");
    assert_eq!(d.ok(&["ps", "-q", "--filter", "label=team=a"]), &id[..12]);
    assert_eq!(d.ok(&["ps", "-q", "--filter", "label=team=b"]), "");
    assert_eq!(d.ok(&["ps", "-q", "--filter", "name=tick", "--filter", "status=running"]), &id[..12]);
    assert_eq!(d.ok(&["ps", "-q", "--filter", &format!("id={}", &id[..6])]), &id[..12]);
    let tail = d.ok(&["logs", "--tail", "2", "ticker"]);
    assert_eq!(tail.lines().count(), 2);
    assert!(tail.starts_with("tick "));
    let ts = d.ok(&["logs", "-t", "--tail", "1", "ticker"]);
    assert!(ts.split(' ').next().unwrap().ends_with('Z'), "{ts}");
    let o = d.docker(&["rm", "ticker"]);
    assert!(err(&o).contains("container is running"), "{}", err(&o));
    // Its TERM handler ended it (exit 0, "bye"), not the SIGKILL after the timeout (137).
    d.ok(&["stop", "ticker"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ticker"]), "exited 0");
    assert!(d.ok(&["logs", "--tail", "1", "ticker"]).ends_with("bye"));
    // Restart from exited, then stop with a short timeout: SIGKILL after it.
    d.ok(&["run", "-d", "--name", "stubborn", "busybox", "sleep", "1000"]);
    // sleep ignores TERM as pid 1: only the SIGKILL after the timeout ends it (137).
    d.ok(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]), "137");
    let o = d.docker(&["stop", "stubborn"]);
    assert!(o.status.success(), "stop of a stopped container is a no-op: {}", err(&o));
    d.ok(&["start", "stubborn"]);
    d.ok(&["kill", "-s", "KILL", "stubborn"]);
    assert_eq!(d.ok(&["wait", "stubborn"]), "137");
    d.ok(&["start", "stubborn"]);
    d.ok(&["rm", "-f", "stubborn"]);
    d.ok(&["rm", "ticker"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert!(d.mounts().is_empty());
    assert!(!d.data_root().join("containers").join(&id).exists());
    let o = d.docker(&["kill", "nope"]);
    assert!(err(&o).contains("No such container"));
}

#[test]
fn inspect_shape_and_wait_conditions() {
    let d = daemon();
    let id = d.ok(&["create", "--name", "shape", "busybox", "sh", "-c", "exit 4"]);
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "shape"])).unwrap();
    let c = &v[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/shape");
    assert_eq!(c["Path"], "sh");
    assert_eq!(c["Args"][1], "exit 4");
    assert_eq!(c["State"]["Status"], "created");
    assert_eq!(c["State"]["StartedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(c["Driver"], "overlay2");
    assert!(c["NetworkSettings"]["Networks"].is_object());
    assert!(c["HostConfig"].is_object());
    assert_eq!(c["Config"]["Image"], "busybox");
    assert!(c["Image"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(c["Mounts"], serde_json::json!([]));
    // wait on a created container returns at once; next-exit waits for the start.
    assert_eq!(d.ok(&["wait", "shape"]), "0");
    let host = d.host();
    let waiter = std::thread::spawn(move || {
        std::process::Command::new("docker").env("DOCKER_HOST", host).args(["container", "wait", "shape"]).bounded()
    });
    d.ok(&["start", "shape"]);
    let w = waiter.join().unwrap();
    assert!(matches!(out(&w).trim(), "4" | "0"), "{}", out(&w));
    // `wait` (not-running) returns once it has exited, with its code.
    assert_eq!(d.ok(&["wait", "shape"]), "4");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "shape"]), "4");
    let o = d.docker(&["start", "-a", "shape"]);
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn stdin_and_attach() {
    let d = daemon();
    let o = d.docker_stdin(&["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z"], Some(b"hello stdin\n"));
    assert_eq!(out(&o), "HELLO STDIN\n", "{}", err(&o));
    // A late attach sees new output and ends when the container does.
    d.ok(&["run", "-d", "--name", "late", "busybox", "sh", "-c", "sleep 1; echo from-late; exit 5"]);
    let o = d.docker(&["attach", "late"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(out(&o), "from-late\n");
    let o = d.docker(&["attach", "late"]);
    assert!(err(&o).contains("You cannot attach to a stopped container"), "{}", err(&o));
}

#[test]
fn logs_follow_until_exit() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "follow", "busybox", "sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done"]);
    let o = d.docker(&["logs", "-f", "follow"]);
    assert_eq!(out(&o), "line 1\nline 2\nline 3\n");
    let o = d.docker(&["logs", "--since", "1s", "follow"]);
    assert!(o.status.success());
}

#[test]
fn cleanup_leaves_nothing() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "aa", "busybox", "sleep", "1000"]);
    d.ok(&["run", "--name", "bb", "busybox", "true"]);
    assert!(!d.cgroups().is_empty(), "a running container has a cgroup under our parent");
    d.ok(&["rm", "-f", "aa", "bb"]);
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
    assert!(d.shims().is_empty());
    let netns = std::fs::read_dir(d.root.join("run/netns")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(netns, 0);
}

#[test]
fn pause_unpause_freezes_processes() {
    let d = daemon();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.1; done",
    ]);
    berth_e2e::eventually("the first count", || d.docker(&["cp", "counter:/count", "-"]).status.success());
    d.ok(&["pause", "counter"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}", "counter"]),
        "paused true true"
    );
    assert!(d.ok(&["ps", "--format", "{{.Status}}"]).ends_with("(Paused)"));
    let read = || d.ok(&["cp", "counter:/count", "-"]);
    let a = read();
    // Not a synchronisation: the window in which a running counter would have moved (it ticks
    // every 0.1 s).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(), a, "a paused container kept running");
    let o = d.docker(&["exec", "counter", "true"]);
    assert!(err(&o).contains("is paused"), "{}", err(&o));
    let o = d.docker(&["pause", "counter"]);
    assert!(err(&o).contains("already paused"), "{}", err(&o));
    d.ok(&["unpause", "counter"]);
    berth_e2e::eventually("the counter to move again", || read() != a);
    // commit pauses by default and leaves it running after.
    d.ok(&["commit", "counter", "snap:1"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "counter"]), "running");
    // A paused container can still be force-removed.
    d.ok(&["pause", "counter"]);
    d.ok(&["rm", "-f", "counter"]);
}

#[test]
fn rename_top_stats() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c", "while true; do :; done"]);
    berth_e2e::eventually("the shell to run", || d.ok(&["top", "busy"]).contains("sh"));
    let stats = d.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}"]);
    let f: Vec<&str> = stats.split_whitespace().collect();
    assert_eq!(f[0], "busy");
    let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
    // Behaviour, not speed: a spinning shell shows some CPU use (how much belongs in bench/).
    assert!(cpu > 0.0, "a spinning shell shows CPU use: {stats}");
    assert!(stats.contains("/ 64MiB"), "{stats}");
    assert_eq!(f.last().copied(), Some("1"));
    let top = d.ok(&["top", "busy", "-o", "pid,comm"]);
    assert!(top.lines().any(|l| l.trim_end().ends_with("sh")), "{top}");
    d.ok(&["rename", "busy", "spinner"]);
    assert_eq!(d.ok(&["ps", "--format", "{{.Names}}"]), "spinner");
    let o = d.docker(&["rename", "spinner", "bad name"]);
    assert!(!o.status.success());
    d.ok(&["rm", "-f", "spinner"]);
    let o = d.docker(&["top", "spinner"]);
    assert!(err(&o).contains("No such container"));
}

#[test]
fn log_rotation_and_none_driver() {
    let d = daemon();
    // Rotation by default (daemon.json `log-opts` would replace it), shown in inspect; a
    // container's own options win key by key.
    d.ok(&["create", "--name", "quietdefault", "busybox", "true"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .HostConfig.LogConfig.Config}}", "quietdefault"]),
        r#"{"max-file":"3","max-size":"100m"}"#
    );
    d.ok(&["create", "--name", "own", "--log-opt", "max-size=1m", "busybox", "true"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .HostConfig.LogConfig.Config}}", "own"]),
        r#"{"max-file":"3","max-size":"1m"}"#
    );
    d.ok(&["rm", "quietdefault", "own"]);
    // A tail is read from the end: the last lines of a long log, in order.
    d.ok(&["run", "--name", "long", "busybox", "sh", "-c", "seq 1 200000"]);
    assert_eq!(d.ok(&["logs", "--tail", "3", "long"]), "199998\n199999\n200000");
    assert_eq!(d.ok(&["logs", "--tail", "0", "long"]), "");
    d.ok(&["rm", "long"]);
    d.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "chatty"]);
    let log = d.data_root().join("containers").join(&id).join(format!("{id}-json.log"));
    assert!(std::fs::metadata(&log).unwrap().len() < 4096, "the live file stays small");
    assert!(std::path::Path::new(&format!("{}.1", log.display())).exists());
    assert!(std::path::Path::new(&format!("{}.2", log.display())).exists());
    assert!(!std::path::Path::new(&format!("{}.3", log.display())).exists(), "max-file=3 keeps three files");
    let all = d.ok(&["logs", "chatty"]);
    assert!(all.ends_with("line-199"), "{all}");
    let n = all.lines().count();
    assert!(n < 200 && n > 20, "older lines rotated away, recent ones kept across files ({n})");
    let lines: Vec<u32> = all.lines().map(|l| l.trim_start_matches("line-").parse().unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[1] == w[0] + 1), "in order across rotated files");
    d.ok(&["run", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "x"]);
    let o = d.docker(&["logs", "quiet"]);
    assert!(!o.status.success());
    let o = d.docker(&["run", "--rm", "--log-opt", "max-size=lots", "busybox", "true"]);
    assert!(!o.status.success());
    // An unknown driver in Docker's words; a known one berthd lacks, plainly.
    let o = d.docker(&["create", "--log-driver", "asdf", "busybox", "true"]);
    assert!(err(&o).contains("logger: no log driver named 'asdf' is registered"), "{}", err(&o));
    let o = d.docker(&["create", "--log-driver", "gelf", "busybox", "true"]);
    assert!(err(&o).contains("\"gelf\" is not supported"), "{}", err(&o));
}

#[test]
fn healthchecks() {
    let d = daemon();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /ready",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "300",
    ]);
    let health = |d: &Berthd| d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]);
    let wait_for = |want: &str| {
        for _ in 0..100 {
            if health(&d) == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("health never became {want}: {}", health(&d));
    };
    wait_for("unhealthy");
    assert!(d.ok(&["ps", "--format", "{{.Status}}"]).ends_with("(unhealthy)"));
    d.ok(&["exec", "hc", "touch", "/ready"]);
    wait_for("healthy");
    let log: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .State.Health}}", "hc"])).unwrap();
    assert_eq!(log["FailingStreak"], 0);
    assert!(log["Log"].as_array().unwrap().len() <= 5);
    assert_eq!(d.ok(&["ps", "-q", "--filter", "health=healthy"]).len(), 12);
    d.ok(&["rm", "-f", "hc"]);
}

#[test]
fn container_and_system_prune() {
    let d = daemon();
    d.ok(&["run", "--name", "old1", "-l", "keep=no", "busybox", "true"]);
    d.ok(&["run", "--name", "kept", "-l", "keep=yes", "busybox", "true"]);
    d.ok(&["run", "-d", "--name", "alive", "busybox", "sleep", "300"]);
    let o = d.ok(&["container", "prune", "-f", "--filter", "label=keep=no"]);
    assert!(o.contains("Deleted Containers"), "{o}");
    let mut left: Vec<String> = d.ok(&["ps", "-a", "--format", "{{.Names}}"]).lines().map(String::from).collect();
    left.sort();
    assert_eq!(left, ["alive", "kept"]);
    d.ok(&["system", "prune", "-f"]);
    assert_eq!(d.ok(&["ps", "-a", "--format", "{{.Names}}"]), "alive", "running containers are never pruned");
    d.ok(&["rm", "-f", "alive"]);
}

/// `size=1` on inspect and list reports `SizeRw` (the writable layer) and `SizeRootFs` (that plus
/// the image), as Docker: `docker inspect -s`, `docker ps -s`, and cri-dockerd, which reads
/// `SizeRw` without a nil check on every stats call (it crashed on their absence).
#[test]
fn sizes_on_request() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let image: u64 = d.ok(&["image", "inspect", "-f", "{{.Size}}", "busybox"]).parse().unwrap();
    let id = d.ok(&["run", "-d", "busybox", "sh", "-c", "head -c 1048576 /dev/zero > /blob; sleep 300"]);
    berth_e2e::eventually("the file to be written", || {
        d.docker(&["exec", &id, "sh", "-c", "[ $(wc -c < /blob) = 1048576 ]"]).status.success()
    });
    let sizes = d.ok(&["inspect", "-s", "-f", "{{.SizeRw}} {{.SizeRootFs}}", &id]);
    let (rw, rootfs) = sizes.split_once(' ').unwrap();
    let (rw, rootfs): (u64, u64) = (rw.parse().unwrap(), rootfs.parse().unwrap());
    assert!(rw >= 1 << 20, "{sizes}");
    assert_eq!(rootfs, rw + image, "{sizes}");
    // Not asked for: not there (the walk of the writable layer is not free).
    assert_eq!(d.ok(&["inspect", "-f", "{{.SizeRw}}", &id]), "<nil>");
    let ps = d.ok(&["ps", "-s", "--format", "{{.Size}}"]);
    assert!(ps.contains("MB (virtual "), "{ps}");
    d.ok(&["rm", "-f", &id]);
}

/// `docker ps --filter` applies every filter Docker's list takes (they were accepted and ignored):
/// before/since, network, volume, publish/expose (ports and ranges), is-task, and `name` as a
/// regular expression over the slashed name.
#[test]
fn list_filters_are_applied() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["network", "create", "flt"]);
    d.ok(&["create", "--name", "first", "-p", "127.0.0.1::8080", "busybox", "true"]);
    d.ok(&[
        "create",
        "--name",
        "second",
        "--network",
        "flt",
        "-v",
        "fvol:/data",
        "--expose",
        "9000/udp",
        "busybox",
        "true",
    ]);
    d.ok(&["create", "--name", "third", "busybox", "true"]);
    let ps = |f: &str| {
        let mut names: Vec<String> =
            d.ok(&["ps", "-a", "--filter", f, "--format", "{{.Names}}"]).lines().map(String::from).collect();
        names.sort();
        names.join(",")
    };
    assert_eq!(ps("before=third"), "first,second");
    assert_eq!(ps("since=first"), "second,third");
    assert_eq!(ps("network=flt"), "second");
    assert_eq!(ps("volume=fvol"), "second");
    assert_eq!(ps("volume=/data"), "second");
    assert_eq!(ps("publish=8080"), "first");
    assert_eq!(ps("publish=8000-8100/tcp"), "first");
    assert_eq!(ps("expose=9000/udp"), "second");
    assert_eq!(ps("expose=8080"), "first");
    assert_eq!(ps("is-task=true"), "");
    assert_eq!(ps("is-task=false"), "first,second,third");
    assert_eq!(ps("name=^/th"), "third");
    assert_eq!(ps("name=ir"), "first,third");
    let o = d.docker(&["ps", "-a", "--filter", "before=nosuch"]);
    assert!(err(&o).contains("No such container: nosuch"), "{}", err(&o));
    d.ok(&["rm", "first", "second", "third"]);
    d.ok(&["network", "rm", "flt"]);
}

/// `--health-start-interval` (compose `start_interval`): during the start period the probe runs
/// that often, so a one-hour interval still finds the container healthy within seconds. (It was
/// stored and ignored: the first probe came after the interval.)
#[test]
fn health_start_interval_is_applied() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let id = d.ok(&[
        "run",
        "-d",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "--health-start-period",
        "5m",
        "--health-start-interval",
        "1s",
        "busybox",
        "sleep",
        "300",
    ]);
    berth_e2e::eventually("the container to be healthy", || {
        d.ok(&["inspect", "-f", "{{.State.Health.Status}}", &id]) == "healthy"
    });
    d.ok(&["rm", "-f", &id]);
}

/// A create refused after its name was reserved (an unknown runtime, a bad link) leaves the name
/// free: the next create with it succeeds.
#[test]
fn a_refused_create_frees_its_name() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    for bad in [&["--runtime", "bogus"][..], &["--link", "nosuch"][..], &["--memory-swappiness", "200"][..]] {
        let mut args = vec!["create", "--name", "taken"];
        args.extend_from_slice(bad);
        args.extend(["busybox", "true"]);
        assert!(!d.docker(&args).status.success(), "{bad:?}");
        d.ok(&["create", "--name", "taken", "busybox", "true"]);
        d.ok(&["rm", "taken"]);
    }
}

/// A shim, and so its container, works in a mount namespace that holds its own container's mounts
/// and none of the others' (#24: every start and removal read each running container's mounts
/// several times over in libcontainer's mountinfo scans); berthd's own scope mounts go when it
/// stops with nothing left below them.
#[test]
fn a_shim_sees_only_its_own_containers_mounts() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "sa", "busybox", "sleep", "60"]);
    d.ok(&["run", "-d", "--name", "sb", "--network", "none", "busybox", "sleep", "60"]);
    d.ok(&["run", "-d", "--name", "sc", "--network", "container:sa", "busybox", "sleep", "60"]);
    let root = d.root.to_string_lossy().to_string();
    let mut host: Vec<String> = d.mounts().into_iter().filter(|m| m.contains("/snapshots/")).collect();
    host.sort();
    assert_eq!(host.len(), 3, "{host:?}");
    let shims = d.shims();
    assert_eq!(shims.len(), 3);
    let mut roots = Vec::new();
    for pid in shims {
        let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let ours: Vec<&str> =
            info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&root)).collect();
        let snaps: Vec<&&str> = ours.iter().filter(|m| m.contains("/snapshots/")).collect();
        assert_eq!(snaps.len(), 1, "shim {pid} sees {ours:?}");
        roots.push(snaps[0].to_string());
        // Its own network namespace's pin (sc's is sa's), nothing of the others'.
        assert!(ours.iter().filter(|m| m.contains("/run/netns/")).count() <= 1, "shim {pid} sees {ours:?}");
    }
    roots.sort();
    assert_eq!(roots, host, "each shim holds its own container's root");
    // The containers work as before: sc shares sa's network namespace; files land in their roots.
    d.ok(&["exec", "sa", "sh", "-c", "echo hi > /f"]);
    assert_eq!(d.ok(&["exec", "sa", "cat", "/f"]), "hi");
    assert_eq!(d.ok(&["exec", "sc", "cat", "/etc/hostname"]), d.ok(&["exec", "sa", "cat", "/etc/hostname"]));
    d.ok(&["rm", "-f", "sa", "sb", "sc"]);
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
    assert_eq!(d.scope_mounts().len(), 3, "kept while berthd runs");
    let mut d = d;
    d.stop();
    assert!(d.scope_mounts().is_empty(), "{:?}", d.scope_mounts());
}
