//! Client libraries other than the docker CLI, unchanged against berthd: testcontainers (Python),
//! on top of docker-py, the way test suites use it.

use std::process::Command;

use berth_e2e::{err, out, Berthd, Bounded};

/// A daemon with busybox and, if `name` is given, a container of that name sleeping.
fn daemon_with(name: Option<&str>) -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    if let Some(n) = name {
        d.ok(&["run", "-d", "--name", n, "busybox", "sleep", "300"]);
    }
    d
}

/// A Python script (docker-py) against `d`, with the client deadline.
fn py(d: &Berthd, script: &str) -> std::process::Output {
    Command::new("python3").arg("-c").arg(script).env("DOCKER_HOST", d.host()).bounded()
}

#[test]
fn testcontainers_python_generic_container() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let script = r#"
import time, urllib.request
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs
c = (DockerContainer("busybox:latest")
     .with_command(["sh", "-c", "mkdir -p /w && echo hello-tc > /w/index.html && echo ready && exec httpd -f -p 80 -h /w"])
     .with_exposed_ports(80)
     .with_env("MODE", "test"))
with c:
    wait_for_logs(c, "ready", timeout=10)
    host, port = c.get_container_host_ip(), c.get_exposed_port(80)
    body = None
    for _ in range(50):
        try:
            body = urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=2).read().decode().strip()
            break
        except Exception:
            time.sleep(0.1)
    print("http", body)
    code, output = c.exec(["sh", "-c", "echo $MODE"])
    print("exec", code, output.decode().strip())
    cid = c.get_wrapped_container().id
print("stopped", cid[:12])
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("DOCKER_HOST", d.host())
        // Ryuk (the reaper) is an image from Docker Hub; this machine has no registry access.
        .env("TESTCONTAINERS_RYUK_DISABLED", "true")
        .bounded();
    let s = out(&o);
    assert!(o.status.success(), "{s}\n{}", err(&o));
    assert!(s.contains("http hello-tc"), "{s}");
    assert!(s.contains("exec 0 test"), "{s}");
    // The context manager removed the container.
    let id = s.lines().find_map(|l| l.strip_prefix("stopped ")).unwrap().to_string();
    assert!(!d.docker(&["inspect", &id]).status.success(), "container {id} left behind");
}

#[test]
fn docker_py_exec_run_never_loses_output() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "pyexec", "-e", "MODE=test", "busybox", "sleep", "300"]);
    // The exec starts only once the 101 is on the wire: a short process's output used to arrive in
    // the same read as the headers and vanish into docker-py's buffered reader (1 run in 10).
    let script = r#"
import docker
ct = docker.from_env().containers.get("pyexec")
bad = [i for i in range(30) if ct.exec_run(["sh", "-c", "echo $MODE"]).output.strip() != b"test"]
print("bad", len(bad))
"#;
    let o = py(&d, script);
    assert_eq!(out(&o).trim(), "bad 0", "{}", err(&o));
    d.ok(&["rm", "-f", "pyexec"]);
}

/// docker-py's `containers.run(remove=True)` follows the log, waits, removes the container, and
/// only then reads what it followed: the output written before the exit must reach it even though
/// the log file is gone by then (the follower keeps the file open).
#[test]
fn docker_py_run_with_remove_keeps_the_output() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let script = r#"
import docker
c = docker.from_env()
bad = [i for i in range(30) if c.containers.run("busybox", ["echo", "n%d" % i], remove=True).strip() != b"n%d" % i]
print("bad", bad)
"#;
    let o = berth_e2e::run_bounded(Command::new("python3").arg("-c").arg(script).env("DOCKER_HOST", d.host()));
    assert_eq!(out(&o).trim(), "bad []", "{}", err(&o));
}

/// The framing of an exec's output follows the start request's `Tty`, as Docker: an exec created
/// with a TTY and started with `Tty: false` answers stdcopy frames (docker-py demultiplexes them;
/// raw bytes made it fail with "104 is not a valid stream"), and the reverse answers raw bytes.
#[test]
fn exec_framing_follows_the_start_request() {
    let d = daemon_with(Some("frames"));
    let script = r#"
import docker
api = docker.from_env(timeout=60).api
def run(create_tty, start_tty):
    x = api.exec_create("frames", ["sh", "-c", "echo framed-output"], tty=create_tty)
    return api.exec_start(x["Id"], tty=start_tty)
# A TTY exec started without one: frames, demultiplexed by docker-py into plain output.
print(repr(run(True, False)))
# A plain exec started as a TTY: raw bytes, the frame header would show if it were there.
print(repr(run(False, True)))
"#;
    let o = py(&d, script);
    assert!(o.status.success(), "{}", err(&o));
    let lines: Vec<String> = out(&o).lines().map(String::from).collect();
    // Through the TTY the line ends in \r\n; demultiplexed, nothing else is in it.
    assert_eq!(lines[0], r"b'framed-output\r\n'", "{}", out(&o));
    assert_eq!(lines[1], r"b'framed-output\n'", "{}", out(&o));
    d.ok(&["rm", "-f", "frames"]);
}

/// docker-py's `attach(logs=True, stream=False)` on an exited container returns its logs, every
/// time (the logs were ready at once and came in the client's first read with the 101, which
/// docker-py's buffered reader swallowed: empty answers now and then).
#[test]
fn attach_logs_of_an_exited_container() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let id = d.ok(&["run", "-d", "busybox", "sh", "-c", "echo out1; echo err1 >&2"]);
    assert_eq!(d.ok(&["wait", &id]), "0");
    let script = format!(
        r#"
import docker
c = docker.from_env(timeout=60).containers.get("{id}")
got = set()
for i in range(20):
    got.add((c.attach(logs=True, stream=False), c.attach(logs=True, stream=False, stderr=False),
             c.attach(logs=True, stream=False, stdout=False)))
print(sorted(got))
"#
    );
    let o = py(&d, &script);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), r"[(b'out1\nerr1\n', b'out1\n', b'err1\n')]");
}

/// A load of something that is not an image archive answers as Docker's: a 200 JSON stream with
/// the error in it, which docker-py raises as `ImageLoadError` and the docker CLI prints.
#[test]
fn a_bad_archive_load_is_an_error_in_the_stream() {
    let d = Berthd::start();
    let script = r#"
import docker
try:
    docker.from_env(timeout=60).images.load(b"this is not a tar archive" * 100)
    print("loaded")
except docker.errors.ImageLoadError as e:
    print("ImageLoadError", "invalid" in str(e) or "tar" in str(e))
"#;
    let o = py(&d, script);
    assert_eq!(out(&o).trim(), "ImageLoadError True", "{}", err(&o));
    let o = d.docker_stdin(&["load"], Some(b"not a tar"));
    assert!(!o.status.success());
    assert!(!err(&o).is_empty());
    assert_eq!(d.ok(&["images", "-aq"]), "");
}

/// Once an exec's stream has ended, exec inspect says it is not running and gives its exit code
/// (cri-dockerd's ExecSync, docker-py's exec_run). Before, a quick exit could be recorded before
/// the start's own "running" update, which then stuck: Running true with the exit code, for good.
#[test]
fn exec_inspect_after_the_stream_is_final() {
    let d = daemon_with(Some("execs"));
    let script = r#"
import docker, threading
api = docker.from_env(timeout=60).api
bad = []
def one(i):
    x = api.exec_create("execs", ["sh", "-c", "echo x; exit %d" % (i % 5)])
    api.exec_start(x["Id"])
    r = api.exec_inspect(x["Id"])
    if r["Running"] or r["ExitCode"] != i % 5:
        bad.append((i, r["Running"], r["ExitCode"]))
for b in range(20):
    ts = [threading.Thread(target=one, args=(b * 8 + k,)) for k in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
print("bad", bad)
"#;
    let o = py(&d, script);
    assert_eq!(out(&o).trim(), "bad []", "{}", err(&o));
    d.ok(&["rm", "-f", "execs"]);
}
