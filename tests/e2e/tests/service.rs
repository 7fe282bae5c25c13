//! berthd as a system service: socket activation (`-H fd://NAME`), the sd_notify readiness
//! protocol, and the packaged systemd units.

use berth_e2e::*;
use std::process::Command;

fn next_notice(d: &Berthd) -> String {
    let mut buf = [0u8; 4096];
    let n = d.notify.as_ref().expect("activated").recv(&mut buf).expect("an sd_notify message within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn socket_activated_and_notifying() {
    let mut d = Berthd::start_activated();
    // The first message is readiness, sent once the API answers, naming berthd as the main pid
    // (socket-activate execs berthd in place: same pid as the child the harness holds).
    let ready = next_notice(&d);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.lines().any(|l| l == format!("MAINPID={}", d.pid())), "{ready} (pid {})", d.pid());
    // A whole container life cycle over the inherited socket.
    d.import_busybox("busybox:latest");
    let o = d.docker(&["run", "--rm", "busybox", "echo", "through fd://"]);
    assert_eq!(out(&o).trim(), "through fd://", "{}", err(&o));
    // The variables were for berthd only: nothing it starts inherits them.
    let o = d.docker(&["run", "--rm", "busybox", "env"]);
    assert!(!out(&o).contains("LISTEN_"), "{}", out(&o));

    d.stop();
    assert_eq!(next_notice(&d).trim(), "STOPPING=1");
    // Activated again (a restart of berth.service), the state is all there.
    d.spawn();
    assert!(next_notice(&d).contains("READY=1"));
    assert!(d.ok(&["images", "-q"]).lines().count() == 1);
}

#[test]
fn an_fd_host_without_activation_is_a_clear_error() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let o = run_bounded(
        Command::new(bin_dir().join("berthd"))
            .args(["-H", "fd://berth.sock"])
            .args(["--data-root", dir.path().join("data").to_str().unwrap()])
            .args(["--exec-root", dir.path().join("run").to_str().unwrap()])
            .args(["--config-file", dir.path().join("none.json").to_str().unwrap()]),
    );
    assert!(!o.status.success());
    assert!(err(&o).contains("fd://berth.sock: no such socket from systemd"), "{}", err(&o));
}

/// The units the package installs pass `systemd-analyze verify` (with ExecStart pointing at the
/// built binaries: verify checks that they exist), with no warning at all.
#[test]
fn packaged_units_verify() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let src = workspace().join("packaging/systemd");
    let mut units = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let text = text.replace("/usr/bin/", &format!("{}/", bin_dir().display()));
        let dst = dir.path().join(e.file_name());
        std::fs::write(&dst, text).unwrap();
        units.push(dst);
    }
    assert!(units.len() >= 3, "{units:?}");
    let o = run_bounded(Command::new("systemd-analyze").arg("verify").args(&units));
    assert!(o.status.success() && err(&o).trim().is_empty(), "{}\n{}", out(&o), err(&o));
    let service = std::fs::read_to_string(src.join("berth.service")).unwrap();
    for must in ["Type=notify", "KillMode=process", "Delegate=yes", "TasksMax=infinity", "-H fd://"] {
        assert!(service.contains(must), "berth.service lacks {must}");
    }
}

/// One sample of a scrape: name, labels, value.
type Sample = (String, std::collections::BTreeMap<String, String>, f64);

/// Parses the OpenMetrics text a Prometheus server reads: every line a comment (`# TYPE`,
/// `# HELP`, `# UNIT`, the closing `# EOF`) or `name{labels} value`.
fn parse_metrics(text: &str) -> (Vec<(String, String)>, Vec<Sample>) {
    let mut types = Vec::new();
    let mut samples = Vec::new();
    assert!(text.ends_with("# EOF\n"), "no closing # EOF");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.push((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF", "{line}");
            continue;
        }
        let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match head.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let labels = l
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").unwrap_or_else(|| panic!("bad label {p}: {line}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (head.to_string(), Default::default()),
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name: {line}");
        samples.push((name, labels, value));
    }
    (types, samples)
}

#[test]
fn metrics_as_prometheus_scrapes_them() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Berthd::start_with(&["--metrics-addr", &addr]);
    d.import_busybox("busybox");
    d.ok(&["network", "create", "mnet"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "m1",
        "--network",
        "mnet",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "busybox",
        "sleep",
        "300",
    ]);
    d.ok(&["run", "-d", "--name", "m2", "busybox", "sleep", "300"]);
    d.ok(&["pause", "m2"]);
    d.ok(&["create", "--name", "m3", "busybox", "true"]);
    d.ok(&["stop", "-t", "0", "m3"]);
    let o = d.docker_stdin(&["build", "-q", "-t", "mb", "-"], Some(b"FROM busybox\nRUN true\n"));
    assert!(o.status.success(), "{}", err(&o));
    let o = d.docker_stdin(&["build", "-q", "-t", "mf", "-"], Some(b"FROM busybox\nRUN exit 3\n"));
    assert!(!o.status.success());
    eventually("a health probe", || d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "m1"]) == "healthy");
    let scrape = || {
        let o = run_bounded(std::process::Command::new("curl").args([
            "-sS",
            "--max-time",
            "20",
            &format!("http://{addr}/metrics"),
        ]));
        assert!(o.status.success(), "{}", err(&o));
        parse_metrics(&out(&o))
    };
    let (types, samples) = scrape();
    let kind = |n: &str| types.iter().find(|(t, _)| t == n).map(|(_, k)| k.as_str());
    for (family, k) in [
        ("engine_daemon_container_states_containers", "gauge"),
        ("engine_daemon_container_actions_seconds", "histogram"),
        ("engine_daemon_network_actions_seconds", "histogram"),
        ("engine_daemon_image_actions_seconds", "histogram"),
        ("engine_daemon_events", "counter"),
        ("engine_daemon_health_checks", "counter"),
        ("builder_builds_triggered", "counter"),
        ("builder_builds_failed", "counter"),
        ("berth_api_requests", "counter"),
        ("berth_api_request_seconds", "histogram"),
        ("berth_shims", "gauge"),
        ("berth_shim_rss_bytes", "gauge"),
        ("berth_pull_bytes", "counter"),
        ("engine_daemon_engine_info", "gauge"),
    ] {
        assert_eq!(kind(family), Some(k), "{family}");
    }
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.2)
            .sum()
    };
    let state = |s: &str| value("engine_daemon_container_states_containers", &[("state", s)]);
    // Stopped: m3 and what the failed build left (as Docker's classic builder without --force-rm).
    let stopped = d.ok(&["ps", "-aq"]).lines().count() - 2;
    assert!(stopped >= 1);
    assert_eq!((state("running"), state("paused"), state("stopped")), (1.0, 1.0, stopped as f64));
    // /info counts paused containers apart, as Docker (it said 0 before).
    let info = d.ok(&["info", "-f", "{{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}}"]);
    assert_eq!(info, format!("1 1 {stopped}"));
    assert!(value("engine_daemon_container_actions_seconds_count", &[("action", "start")]) >= 2.0);
    assert!(value("engine_daemon_container_actions_seconds_count", &[("action", "create")]) >= 3.0);
    assert!(value("engine_daemon_network_actions_seconds_count", &[("action", "create")]) >= 1.0);
    assert!(value("engine_daemon_events_total", &[]) >= 6.0);
    assert!(value("engine_daemon_health_checks_total", &[]) >= 1.0);
    assert_eq!(value("builder_builds_triggered_total", &[]), 2.0);
    assert_eq!(value("builder_builds_failed_total", &[("reason", "error_processing_commands_error")]), 1.0);
    assert_eq!(value("berth_shims", &[]), 2.0, "two running containers, two shims");
    assert!(value("berth_shim_rss_bytes", &[]) > 1e5);
    assert!(value("berth_api_requests_total", &[("route", "/containers/{id}/json"), ("status", "200")]) >= 1.0);
    assert!(value("berth_api_requests_total", &[("route", "/containers/create"), ("status", "201")]) >= 3.0);
    assert!(value("berth_api_request_seconds_count", &[("route", "/containers/{id}/start")]) >= 2.0);
    // Counters only grow between scrapes.
    d.ok(&["rm", "-f", "m3"]);
    let (_, again) = scrape();
    let events = |s: &[Sample]| s.iter().find(|x| x.0 == "engine_daemon_events_total").map(|x| x.2).unwrap();
    assert!(events(&again) > events(&samples));
    assert!(again
        .iter()
        .any(|(n, l, _)| n == "engine_daemon_container_actions_seconds_count" && l["action"] == "delete"));
}

/// `scripts/package.sh` builds a .deb that installs (into a throw-away root, as dpkg --root does,
/// its maintainer scripts touching nothing outside it), and the engine it installed runs, socket
/// activated with its packaged daemon.json; removing keeps the configuration, purging does not.
#[test]
fn package_installs_and_its_engine_runs() {
    let out_dir = tempfile::tempdir_in("/tmp").unwrap();
    let o = run_bounded(
        Command::new("sh")
            .arg(workspace().join("scripts/package.sh"))
            .env("BERTH_BIN_DIR", bin_dir())
            .env("OUT", out_dir.path())
            .env("DEB_COMPRESSION", "none"),
    );
    assert!(o.status.success(), "{}", err(&o));
    let deb = out(&o).trim().to_string();
    let info = out(&run_bounded(Command::new("dpkg-deb").args(["--info", &deb])));
    for must in ["Package: berth", "Depends: tini, nftables", "postinst", "conffiles"] {
        assert!(info.contains(must), "{must}: {info}");
    }
    let root = tempfile::tempdir_in("/tmp").unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(r.join("var/lib/dpkg/updates")).unwrap();
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let o = run_bounded(
            Command::new("dpkg")
                .arg(format!("--root={}", r.display()))
                .args(["--force-depends", "--force-script-chrootless", "--log=/dev/null"])
                .args(args),
        );
        assert!(o.status.success(), "dpkg {args:?}: {}", err(&o));
    };
    dpkg(&["-i", &deb]);
    for f in [
        "usr/bin/berthd",
        "usr/bin/berth",
        "usr/bin/berth-shim",
        "usr/bin/berth-registry",
        "lib/systemd/system/berth.service",
        "lib/systemd/system/berth.socket",
        "lib/systemd/system/berth-registry.service",
        "etc/berth/daemon.json",
        "etc/berth/registry.toml",
        "usr/share/bash-completion/completions/berth",
        "usr/share/zsh/vendor-completions/_berth",
        "usr/share/fish/vendor_completions.d/berth.fish",
    ] {
        let m = std::fs::metadata(r.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(m.len() > 0, "{f} is empty");
    }
    let man = run_bounded(Command::new("zcat").arg(r.join("usr/share/man/man8/berthd.8.gz")));
    assert!(out(&man).contains(".TH berthd 8") && out(&man).contains("metrics\\-addr"), "man page from the flags");
    let conffiles = std::fs::read_to_string(r.join("var/lib/dpkg/info/berth.conffiles")).unwrap();
    assert!(conffiles.contains("/etc/berth/daemon.json"));
    // The installed engine, started as berth.socket + berth.service start it, with its daemon.json.
    let installed = r.join("usr/bin/berthd");
    let conf = r.join("etc/berth/daemon.json");
    // (the harness names its own --config-file: the packaged one goes there, read at the restart)
    let mut d = Berthd::start_activated_from(&installed, &[]);
    std::fs::copy(&conf, d.root.join("daemon.json")).unwrap();
    d.restart();
    d.import_busybox("busybox");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "installed"]), "installed");
    let id = d.ok(&["create", "busybox", "true"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.LogConfig.Config}}", &id]), "map[max-file:3 max-size:100m]");
    drop(d);
    dpkg(&["-r", "berth"]);
    assert!(r.join("etc/berth/daemon.json").exists() && !r.join("usr/bin/berthd").exists(), "remove keeps conffiles");
    dpkg(&["-P", "berth"]);
    assert!(!r.join("etc/berth/daemon.json").exists(), "purge removes them");
}

/// SIGHUP reads daemon.json again: the keys dockerd reloads apply at once (seen in /info and a
/// `daemon reload` event), the others are logged as waiting for a restart, a broken file changes
/// nothing.
#[test]
fn daemon_json_reloads_on_sighup() {
    let d = Berthd::start();
    let conf = d.root.join("daemon.json");
    let hup = || {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(d.pid() as i32).unwrap(),
            rustix::process::Signal::HUP,
        )
        .unwrap();
        eventually("a daemon reload event", || {
            let until =
                (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
            d.ok(&[
                "events",
                "--since",
                &since,
                "--until",
                &until,
                "--filter",
                "type=daemon",
                "--format",
                "{{.Action}}",
            ])
            .contains("reload")
        });
    };
    assert_eq!(d.ok(&["info", "-f", "{{json .Labels}} {{.Debug}}"]), "[] false");
    std::fs::write(
        &conf,
        r#"{"labels": ["team=core", "zone=a"], "debug": true, "max-concurrent-downloads": 7,
            "insecure-registries": ["10.9.9.9:5000"], "registry-mirrors": ["https://mirror.example"],
            "bridge": "other0"}"#,
    )
    .unwrap();
    hup();
    assert_eq!(d.ok(&["info", "-f", "{{json .Labels}} {{.Debug}}"]), r#"["team=core","zone=a"] true"#);
    let reg = d.ok(&["info", "-f", "{{json .RegistryConfig}}"]);
    assert!(reg.contains("10.9.9.9:5000") && reg.contains("https://mirror.example/"), "{reg}");
    eventually("the log says what waits for a restart", || {
        d.log().contains("take effect at the next start") && d.log().contains("bridge")
    });
    // A broken file changes nothing and says so.
    std::fs::write(&conf, "{ not json").unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(d.pid() as i32).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    eventually("the refusal in the log", || d.log().contains("not reloaded"));
    assert_eq!(d.ok(&["info", "-f", "{{json .Labels}}"]), r#"["team=core","zone=a"]"#);
    // Still serving.
    d.import_busybox("busybox");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "ok"]), "ok");
}

/// The cgroup driver: cgroupfs (what berthd does) is accepted and reported; systemd's is refused
/// at start in plain words, not ignored.
#[test]
fn cgroup_driver_is_cgroupfs_or_refused() {
    let d = Berthd::start_with(&["--exec-opt", "native.cgroupdriver=cgroupfs"]);
    assert_eq!(d.ok(&["info", "-f", "{{.CgroupDriver}}"]), "cgroupfs");
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let o = run_bounded(
        Command::new(bin_dir().join("berthd"))
            .args(["--exec-opt", "native.cgroupdriver=systemd"])
            .args(["--data-root", dir.path().join("data").to_str().unwrap()])
            .args(["--config-file", dir.path().join("none.json").to_str().unwrap()]),
    );
    assert!(!o.status.success());
    assert!(err(&o).contains("the systemd driver is not supported"), "{}", err(&o));
}

/// The mount-table lines of cgroup hierarchies carrying `favordynmods`: (mount point, superblock
/// options).
fn favordynmods_mounts() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let t: Vec<&str> = tail.split(' ').collect();
            let (fstype, opts, point) = (t.first()?, t.get(2)?, head.split(' ').nth(4)?);
            (fstype.starts_with("cgroup") && opts.split(',').any(|o| o == "favordynmods"))
                .then(|| (point.to_string(), opts.to_string()))
        })
        .collect()
}

/// daemon.json `cgroup-favordynmods`: berthd mounts its controller-less hierarchy with the option
/// for as long as it runs, containers run, a berthd killed without cleaning up has its mount
/// adopted by the next, and a clean stop takes it away.
#[test]
fn cgroup_favordynmods_is_applied_while_berthd_runs() {
    if favordynmods_mounts().iter().any(|(_, o)| !o.contains("name=berth-favordynmods")) {
        eprintln!("the host favors dynamic cgroup changes already: nothing of berthd's to check");
        return;
    }
    let mut d = Berthd::start();
    let at = d.root.join("run/favordynmods").to_string_lossy().into_owned();
    let ours = || favordynmods_mounts().into_iter().filter(|(p, _)| *p == at).count();
    assert_eq!(ours(), 0, "not asked for: not mounted");
    std::fs::write(d.root.join("daemon.json"), r#"{"cgroup-favordynmods": true}"#).unwrap();
    d.restart();
    assert_eq!(ours(), 1, "{}", d.log());
    d.import_busybox("busybox");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "ok"]), "ok");
    d.crash();
    assert_eq!(ours(), 1, "a crash leaves the mount");
    d.spawn();
    assert_eq!(ours(), 1, "adopted, not mounted twice");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "ok"]), "ok");
    d.stop();
    assert_eq!(ours(), 0, "a clean stop unmounts it");
    assert!(!std::path::Path::new(&at).exists());
}
