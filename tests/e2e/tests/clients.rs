//! Client libraries other than the docker CLI, unchanged against berthd: testcontainers (Python),
//! on top of docker-py, the way test suites use it.

use std::process::Command;

use berth_e2e::{err, out, Berthd, Bounded};

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
    let o = Command::new("python3").arg("-c").arg(script).env("DOCKER_HOST", d.host()).bounded();
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
