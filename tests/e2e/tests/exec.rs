//! `docker exec` against a running container.

use berth_e2e::{err, out, Berthd};
use serde_json::Value;

#[test]
fn exec_runs_in_the_container() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "box", "-e", "FOO=bar", "-w", "/srv", "busybox", "sleep", "300"]);
    let o = d.docker(&["exec", "box", "sh", "-c", "echo out $FOO $(pwd); echo err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(out(&o), "out bar /srv\n");
    assert_eq!(err(&o), "err\n");
    let o = d.docker_stdin(&["exec", "-i", "box", "tr", "a-z", "A-Z"], Some(b"piped in\n"));
    assert_eq!(out(&o), "PIPED IN\n");
    assert_eq!(
        d.ok(&["exec", "-u", "www", "-w", "/tmp", "-e", "FOO=over", "box", "sh", "-c", "id -u; pwd; echo $FOO"]),
        "33\n/tmp\nover"
    );
    // Same namespaces as the container: it sees pid 1 and the container's hostname.
    let ps = d.ok(&["exec", "box", "ps", "-o", "pid,comm"]);
    assert!(ps.lines().any(|l| l.trim() == "1 sleep"), "{ps}");
    let host = d.ok(&["inspect", "-f", "{{.Config.Hostname}}", "box"]);
    assert_eq!(d.ok(&["exec", "box", "hostname"]), host);
    // Exit codes for processes that cannot start, as Docker's.
    let o = d.docker(&["exec", "box", "nosuch"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(out(&o).contains("executable file not found"), "{}", out(&o));
    assert_eq!(d.docker(&["exec", "box", "/etc/passwd"]).status.code(), Some(126));
    // Detached exec, then exec inspect.
    d.ok(&["exec", "-d", "box", "sh", "-c", "echo bg > /tmp/bg"]);
    berth_e2e::eventually("the detached exec's file", || out(&d.docker(&["exec", "box", "cat", "/tmp/bg"])) == "bg\n");
    let c = d.client();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = serde_json::json!({"Cmd": ["sh", "-c", "exit 3"], "AttachStdout": true});
    let created = rt.block_on(c.call(hyper::Method::POST, "/containers/box/exec", Some(&body))).unwrap();
    let id = created["Id"].as_str().unwrap().to_string();
    rt.block_on(c.call(hyper::Method::POST, &format!("/exec/{id}/start"), Some(&serde_json::json!({"Detach": true}))))
        .unwrap();
    let mut info = Value::Null;
    for _ in 0..100 {
        info = rt.block_on(c.get::<Value>(&format!("/exec/{id}/json"))).unwrap();
        if info["Running"] == false && info["ExitCode"] == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(info["ExitCode"], 3, "{info}");
    assert_eq!(info["ProcessConfig"]["entrypoint"], "sh");
    assert!(rt.block_on(c.get::<Value>("/exec/nope/json")).is_err());
    // Not running: 409.
    d.ok(&["stop", "-t", "0", "box"]);
    let o = d.docker(&["exec", "box", "true"]);
    assert!(err(&o).contains("is not running"), "{}", err(&o));
    d.ok(&["rm", "box"]);
}

/// A shim idle for a while hands its setup code and heap back to the kernel; everything it does
/// afterwards (exec, logs, attach, stop) faults what it needs back in.
#[test]
fn an_idle_shim_still_serves_everything() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "quiet",
        "busybox",
        "sh",
        "-c",
        "echo before; trap 'echo bye; exit 3' TERM; while true; do sleep 0.1; done",
    ]);
    // Not a synchronisation: idleness is the condition under test (a shim sheds its memory after
    // a second without work), so the clock must pass.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(d.ok(&["exec", "quiet", "echo", "after-idle"]), "after-idle");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(d.ok(&["exec", "-u", "1", "quiet", "sh", "-c", "id -u"]), "1");
    assert_eq!(d.ok(&["logs", "quiet"]), "before");
    d.ok(&["stop", "-t", "5", "quiet"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "quiet"]), "3");
    assert_eq!(d.ok(&["logs", "quiet"]), "before\nbye");
    d.ok(&["rm", "quiet"]);
}
