//! State survives berthd restarts and crashes; running containers keep running under their shims.

use std::time::Duration;

use berth_e2e::{err, Berthd, Bounded};

#[test]
fn restart_preserves_images_and_containers() {
    let mut d = Berthd::start();
    let img = d.import_busybox("busybox");
    assert_eq!(d.docker(&["run", "--name", "done", "busybox", "sh", "-c", "echo kept; exit 2"]).status.code(), Some(2));
    let live = d.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do echo alive; sleep 0.2; done",
    ]);
    let shim_pids = d.shims();
    assert_eq!(shim_pids.len(), 1);

    d.stop();
    // Not a synchronisation: a window in which a shim tied to berthd would have died with it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.shims(), shim_pids, "the shim outlives berthd");
    d.spawn();
    assert_eq!(d.ok(&["images", "-q", "--no-trunc"]), img);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "done"]), "exited 2");
    assert_eq!(d.ok(&["logs", "done"]), "kept");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "live"]), "running");
    assert_eq!(d.ok(&["ps", "-q", "--no-trunc"]), live);
    // Its output still reaches the log through the re-attached shim.
    let before = d.ok(&["logs", "live"]).lines().count();
    berth_e2e::eventually("live to log again", || d.ok(&["logs", "live"]).lines().count() > before);
    d.ok(&["stop", "live"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "live"]), "0");

    // A crash while a container runs, and it exits while berthd is down: the exit is recorded.
    d.ok(&["start", "live"]);
    d.ok(&["run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 9"]);
    d.crash();
    // "short" exits while berthd is down: its shim goes once it has recorded the exit.
    berth_e2e::eventually("short's shim to exit", || d.shims().len() == 1);
    d.spawn();
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "short"]), "exited 9");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "live"]), "running");
    d.ok(&["rm", "-f", "live", "short", "done"]);
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

#[test]
fn second_daemon_on_the_same_root_refuses() {
    let d = Berthd::start();
    let o = std::process::Command::new(berth_e2e::bin_dir().join("berthd"))
        .args(["--data-root", d.data_root().to_str().unwrap()])
        .args(["--exec-root", d.root.join("run2").to_str().unwrap()])
        .args(["-H", &format!("unix://{}", d.root.join("other.sock").display())])
        .args(["--config-file", "/nonexistent/daemon.json"])
        .bounded();
    assert!(!o.status.success());
    assert!(err(&o).contains("already using data root"), "{}", err(&o));
    // Non-loopback TCP is refused until TLS lands.
    let o = std::process::Command::new(berth_e2e::bin_dir().join("berthd"))
        .args(["--data-root", d.root.join("data3").to_str().unwrap()])
        .args(["-H", "tcp://0.0.0.0:23750", "--config-file", "/nonexistent/daemon.json"])
        .bounded();
    assert!(!o.status.success());
    assert!(err(&o).contains("without TLS"), "{}", err(&o));
}

#[test]
fn daemon_json_and_tcp_loopback() {
    let mut d = Berthd::start();
    d.stop();
    // Docker's daemon.json key names; flags still win for the roots the harness passes.
    std::fs::write(
        d.root.join("daemon.json"),
        r#"{"log-level":"warn","pidfile":"PIDFILE","hosts":["tcp://127.0.0.1:0"]}"#
            .replace("PIDFILE", d.root.join("berthd.pid").to_str().unwrap()),
    )
    .unwrap();
    d.spawn();
    let pid = std::fs::read_to_string(d.root.join("berthd.pid")).unwrap();
    assert!(pid.trim().parse::<u32>().is_ok());
    d.stop();
    assert!(!d.root.join("berthd.pid").exists(), "pidfile removed on clean shutdown");
    assert!(!d.socket.exists(), "socket removed on clean shutdown");
    std::fs::write(d.root.join("daemon.json"), r#"{"no-such-key": 1}"#).unwrap();
    let o = std::process::Command::new(berth_e2e::bin_dir().join("berthd"))
        .args([
            "--data-root",
            d.data_root().to_str().unwrap(),
            "--config-file",
            d.root.join("daemon.json").to_str().unwrap(),
        ])
        .bounded();
    assert!(!o.status.success());
    assert!(err(&o).contains("invalid config file"), "{}", err(&o));
    std::fs::remove_file(d.root.join("daemon.json")).unwrap();
    d.spawn();
}

#[test]
fn tcp_on_loopback_serves_the_api() {
    let d = Berthd::start();
    let port = berth_e2e::free_port();
    let root = d.root.join("tcp");
    let mut child = std::process::Command::new(berth_e2e::bin_dir().join("berthd"))
        .args(["--data-root", root.join("data").to_str().unwrap()])
        .args(["--exec-root", root.join("run").to_str().unwrap()])
        .args(["-H", &format!("tcp://127.0.0.1:{port}"), "--config-file", "/nonexistent/daemon.json"])
        .args(["--cgroup-parent", &format!("{}-tcp", d.cgroup_parent)])
        // Its own bridge name, so its nftables table is its own too.
        .args(["--bridge", &format!("{}t", d.bridge)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let host = format!("tcp://127.0.0.1:{port}");
    let mut ok = false;
    for _ in 0..200 {
        let o = std::process::Command::new("docker")
            .args(["-H", &host, "version", "--format", "{{.Server.APIVersion}}"])
            .bounded();
        if o.status.success() {
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1.56");
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // What a web page could send: refused (CSRF with Origin, DNS rebinding with a foreign Host,
    // a "simple" form post that is not JSON). curl answers the HTTP status.
    let status = |args: &[&str]| {
        let o = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30"])
            .args(args)
            .bounded();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let base = format!("http://127.0.0.1:{port}");
    let create = format!("{base}/containers/create");
    let body = r#"{"Image":"busybox","HostConfig":{"Privileged":true}}"#;
    assert_eq!(status(&["-H", "Origin: http://evil.example", &format!("{base}/_ping")]), "403");
    assert_eq!(status(&["-H", "Host: evil.example", &format!("{base}/_ping")]), "403");
    assert_eq!(status(&["-H", "Content-Type: text/plain", "-d", body, &create]), "400");
    assert_eq!(status(&["-H", "Content-Type: application/x-www-form-urlencoded", "-d", body, &create]), "400");
    assert_eq!(status(&[&format!("{base}/_ping")]), "200");
    // A client that idles without sending its headers is dropped, and the server still answers.
    let idle: Vec<_> = (0..64).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    assert_eq!(status(&[&format!("{base}/_ping")]), "200");
    drop(idle);
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    );
    let st = child.wait().unwrap();
    let _ = std::process::Command::new("nft").args(["delete", "table", "ip", &format!("{}t", d.nft_table())]).output();
    assert!(ok, "docker could not reach berthd over loopback TCP");
    assert!(st.success(), "berthd exits 0 on SIGTERM");
}

#[test]
fn restart_policies() {
    let mut d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3"]);
    let mut count = String::new();
    for _ in 0..100 {
        count = d.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky"]);
        if count == "2 exited" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count, "2 exited", "on-failure:2 runs three times in all");
    assert_eq!(d.ok(&["logs", "flaky"]), "run\nrun\nrun");
    d.ok(&["run", "-d", "--name", "forever", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 0"]);
    berth_e2e::eventually("always to restart twice", || {
        d.ok(&["inspect", "-f", "{{.RestartCount}}", "forever"]).parse::<i64>().unwrap() >= 2
    });
    d.ok(&["stop", "forever"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "forever"]), "exited", "a manual stop ends restarting");
    // And it stays so: no restart is pending (the next backoff would have run it within this window).
    let count = d.ok(&["inspect", "-f", "{{.RestartCount}}", "forever"]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(d.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "forever"]), format!("{count} exited"));
    // After a "reboot" (berthd down, every shim gone), `always` containers come back.
    d.ok(&["run", "-d", "--name", "svc", "--restart", "unless-stopped", "busybox", "sleep", "1000"]);
    let init: i32 = d.ok(&["inspect", "-f", "{{.State.Pid}}", "svc"]).parse().unwrap();
    d.crash();
    let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(init).unwrap(), rustix::process::Signal::KILL);
    for pid in d.shims() {
        let _ =
            rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::KILL);
    }
    berth_e2e::eventually("every shim gone", || d.shims().is_empty());
    d.spawn();
    let mut st = String::new();
    for _ in 0..300 {
        st = d.ok(&["inspect", "-f", "{{.State.Status}}", "svc"]);
        if st == "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log: Vec<String> = d.log().lines().filter(|l| !l.contains("api request")).map(String::from).collect();
    assert_eq!(st, "running", "berthd log:\n{}", log[log.len().saturating_sub(30)..].join("\n"));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", "forever"]), "exited", "stopped by hand: left alone");
    d.ok(&["rm", "-f", "svc", "flaky", "forever"]);
}

/// A container record this berthd cannot read (written by another version, or damaged) is logged
/// and skipped at start: it keeps neither the daemon nor the other containers from loading (one
/// such record made the whole start fail before).
#[test]
fn an_unreadable_record_does_not_stop_the_daemon() {
    let mut d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["create", "--name", "good", "busybox", "true"]);
    d.stop();
    let bad_id = "b".repeat(64);
    {
        let store = berth_store::Store::open(&d.data_root().join("berth.db")).expect("open the stopped daemon's store");
        let record = serde_json::json!({"id": bad_id, "name": "bad", "host_config": {"Dns": "not a list"}});
        store.put(berth_store::Table::new("containers"), &bad_id, &record).unwrap();
    }
    d.spawn();
    assert_eq!(d.ok(&["ps", "-a", "--format", "{{.Names}}"]), "good");
    assert!(d.log().contains("could not load the container's record"), "{}", d.log());
    d.ok(&["rm", "good"]);
}
