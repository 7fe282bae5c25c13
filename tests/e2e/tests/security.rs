//! Security: the default seccomp profile and capabilities, exec confinement, hostile image files, host users kept out of berthd's directories.

use berth_e2e::{err, Berthd, Bounded};

#[test]
fn default_confinement() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    // seccomp blocks unshare without CAP_SYS_ADMIN, as Docker's profile does.
    let o = d.docker(&["run", "--rm", "busybox", "unshare", "-U", "true"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Operation not permitted"), "{}", err(&o));
    assert_eq!(d.ok(&["run", "--rm", "busybox", "grep", "Seccomp:", "/proc/self/status"]), "Seccomp:\t2");
    d.ok(&["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "unshare", "-U", "true"]);
    d.ok(&["run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "unshare", "-U", "true"]);
    // A profile given as a file (the CLI sends its content).
    let prof = d.root.join("deny-mkdir.json");
    std::fs::write(
        &prof,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let o =
        d.docker(&["run", "--rm", "--security-opt", &format!("seccomp={}", prof.display()), "busybox", "mkdir", "/x"]);
    assert!(!o.status.success());
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--security-opt",
            "no-new-privileges",
            "busybox",
            "grep",
            "NoNewPrivs",
            "/proc/self/status"
        ]),
        "NoNewPrivs:\t1"
    );
    // Capabilities: Docker's default set; drop and add work.
    let caps = d.ok(&["run", "--rm", "busybox", "grep", "CapEff", "/proc/self/status"]);
    assert_eq!(caps, "CapEff:\t00000000a80425fb", "Docker's 14 default capabilities");
    // The capability borrowed to load the seccomp filter is gone by the time the program runs.
    let caps = d.ok(&["run", "--rm", "busybox", "grep", "-E", "^Cap(Prm|Bnd)", "/proc/self/status"]);
    assert_eq!(caps, "CapPrm:\t00000000a80425fb\nCapBnd:\t00000000a80425fb");
    for user in ["0", "1000:1000"] {
        let s = d.ok(&["run", "--rm", "-u", user, "busybox", "grep", "-E", "^(Seccomp|CapPrm):", "/proc/self/status"]);
        let want = if user == "0" {
            "CapPrm:\t00000000a80425fb\nSeccomp:\t2"
        } else {
            "CapPrm:\t0000000000000000\nSeccomp:\t2"
        };
        assert_eq!(s, want, "user {user}");
    }
    let o = d.docker(&["run", "--rm", "--cap-drop", "CHOWN", "busybox", "chown", "1", "/tmp"]);
    assert!(!o.status.success());
    // No remount of /, no view of host processes.
    let o = d.docker(&["run", "--rm", "busybox", "mount", "-o", "remount,rw", "/proc/sys"]);
    assert!(!o.status.success());
    let pids = d.ok(&["run", "--rm", "busybox", "sh", "-c", "ls /proc | grep -c '^[0-9]'"]);
    assert!(pids.parse::<u32>().unwrap() <= 4, "sees {pids} processes");
    // Privileged: no seccomp.
    assert_eq!(
        d.ok(&["run", "--rm", "--privileged", "busybox", "grep", "Seccomp:", "/proc/self/status"]),
        "Seccomp:\t0"
    );
}

#[test]
fn limits_are_enforced() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let o = d.docker(&[
        "run",
        "--name",
        "oomer",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137), "the OOM killer ends it");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.OOMKilled}}", "oomer"]), "true");
    let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=oom",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(ev, "oomer");
    // pids limit: the 6th concurrent process cannot be forked.
    let o = d.docker(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait",
    ]);
    assert!(!o.status.success() || berth_e2e::err(&o).contains("fork"), "{}", berth_e2e::err(&o));
    assert_eq!(d.ok(&["run", "--rm", "--name", "fine", "-m", "64m", "busybox", "true"]), "");
}

/// The container's cgroups are visible but read-only, and only its own (cgroup v1 here): a
/// container cannot raise its own memory limit, nor write into the host's named hierarchies.
#[test]
fn cgroups_are_read_only_and_the_containers_own() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
        echo 999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes; \
        cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
        mkdir /sys/fs/cgroup/x /sys/fs/cgroup/systemd/x /sys/fs/cgroup/memory/x; \
        ls /sys/fs/cgroup";
    let o = d.docker(&["run", "--rm", "-m", "64m", "busybox", "sh", "-c", script]);
    let (stdout, stderr) = (berth_e2e::out(&o), err(&o));
    assert!(stdout.starts_with("67108864\n67108864\n"), "the limit stays: {stdout}");
    assert!(stderr.contains("memory.limit_in_bytes: Read-only file system"), "{stderr}");
    assert_eq!(stderr.matches("Read-only file system").count(), 3, "no folder is made anywhere: {stderr}");
    assert!(stdout.contains("memory") && !stdout.contains("systemd"), "{stdout}");
    // The same with a shared pid namespace (libcontainer misread its cgroups there).
    d.ok(&["run", "-d", "--name", "pidowner", "busybox", "sleep", "100"]);
    for _ in 0..5 {
        let s = d.ok(&[
            "run",
            "--rm",
            "--pid",
            "container:pidowner",
            "-m",
            "32m",
            "busybox",
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]);
        assert_eq!(s, "33554432");
    }
    // Privileged containers keep them writable, as with Docker.
    d.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "echo 999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    d.ok(&["rm", "-f", "pidowner"]);
}

/// A privileged container that makes cgroups of its own (systemd, a nested engine) leaves none
/// behind when it ends: its cgroup folders go, children first, in every hierarchy.
#[test]
fn child_cgroups_of_a_container_go_with_it() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let script = "for h in memory cpu pids; do mkdir -p /sys/fs/cgroup/$h/x/y; done; ls -d /sys/fs/cgroup/memory/x/y";
    assert_eq!(
        d.ok(&["run", "--rm", "--privileged", "busybox", "sh", "-c", script]).trim(),
        "/sys/fs/cgroup/memory/x/y"
    );
    d.ok(&["run", "--name", "kept", "--privileged", "busybox", "sh", "-c", script]);
    d.ok(&["rm", "kept"]);
    berth_e2e::eventually("no container cgroup left", || d.container_cgroups().is_empty());
}

#[test]
fn exec_runs_under_the_container_seccomp_profile() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "secx", "busybox", "sleep", "300"]);
    // libcontainer's exec path drops the profile; berth applies it again (runc does the same).
    let o = d.docker(&["exec", "secx", "unshare", "-U", "true"]);
    assert!(!o.status.success(), "unshare of a user namespace must be blocked in an exec");
    let status = |who: &str| {
        let s = d.ok(&["exec", "secx", "cat", &format!("/proc/{who}/status")]);
        s.lines().filter(|l| l.starts_with("Seccomp:") || l.starts_with("Cap")).map(String::from).collect::<Vec<_>>()
    };
    let (mine, init) = (status("self"), status("1"));
    assert!(mine.contains(&"Seccomp:\t2".to_string()), "{mine:?}");
    // The capability borrowed to load the filter is gone: the exec has exactly the container's sets.
    assert_eq!(mine, init);
    let user = d.ok(&["exec", "-u", "33", "secx", "grep", "Seccomp:", "/proc/self/status"]);
    assert_eq!(user, "Seccomp:\t2");
    d.ok(&["rm", "-f", "secx"]);
}

/// An exec gets every process setting of its container: no-new-privileges, rlimits, --group-add.
/// (Before, `docker exec` printed NoNewPrivs 0 in a no-new-privileges container.)
#[test]
fn exec_inherits_the_containers_process_settings() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "nnp",
        "--security-opt",
        "no-new-privileges",
        "--ulimit",
        "nofile=1024:2048",
        "--group-add",
        "1234",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(d.ok(&["exec", "nnp", "grep", "NoNewPrivs", "/proc/1/status"]), "NoNewPrivs:\t1");
    assert_eq!(d.ok(&["exec", "nnp", "grep", "NoNewPrivs", "/proc/self/status"]), "NoNewPrivs:\t1");
    assert_eq!(d.ok(&["exec", "-u", "33", "nnp", "grep", "NoNewPrivs", "/proc/self/status"]), "NoNewPrivs:\t1");
    assert_eq!(d.ok(&["exec", "nnp", "sh", "-c", "ulimit -n; ulimit -Hn"]), "1024\n2048");
    assert!(d.ok(&["exec", "nnp", "id", "-G"]).split(' ').any(|g| g == "1234"));
    // Without the option, execs have no_new_privs off, as the init.
    d.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "300"]);
    assert_eq!(d.ok(&["exec", "plain", "grep", "NoNewPrivs", "/proc/self/status"]), "NoNewPrivs:\t0");
    d.ok(&["rm", "-f", "nnp", "plain"]);
}

/// An image whose /etc/passwd is a fifo and whose /etc/group is /dev/zero (a char device): berthd
/// reads neither (it only reads bounded regular files), so start, exec and a named user answer
/// promptly instead of hanging a worker or exhausting memory.
#[test]
fn hostile_user_files_are_not_read() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&[
        "run",
        "--name",
        "mk",
        "busybox",
        "sh",
        "-c",
        "rm /etc/passwd /etc/group; mkfifo /etc/passwd; mknod /etc/group c 1 5",
    ]);
    d.ok(&["commit", "mk", "hostile"]);
    assert_eq!(d.ok(&["run", "--rm", "hostile", "echo", "ok"]), "ok");
    let o = d.docker(&["run", "--rm", "--user", "www", "hostile", "true"]);
    assert!(err(&o).contains("unable to find user www"), "{}", err(&o));
    d.ok(&["run", "-d", "--name", "hx", "hostile", "sleep", "300"]);
    assert_eq!(d.ok(&["exec", "hx", "echo", "ok"]), "ok");
    assert_eq!(d.ok(&["exec", "-u", "0:0", "hx", "echo", "ok"]), "ok");
    d.ok(&["rm", "-f", "hx", "mk"]);
}

/// Runs `sh -c script` as the unprivileged host user nobody; returns whether it succeeded.
fn as_nobody(script: &str) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script])
        .bounded()
}

/// No unprivileged host user reaches layers, bundles or logs (Docker's CVE-2021-41091 class): the
/// data root is 0710 and what is under it root-only, the exec root 0711 with root-only contents,
/// and a root loosened while berthd was down is closed again at the next start.
#[test]
fn host_users_cannot_reach_layers_bundles_or_logs() {
    use std::os::unix::fs::PermissionsExt;
    let mut d = Berthd::start();
    // The test's own temp dir is 0700: open it, so only berthd's modes stand in the way.
    std::fs::set_permissions(&d.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "up", "-e", "SECRET=hunter2", "busybox", "sh", "-c", "echo logged; sleep 300"]);
    let log = d.ok(&["inspect", "-f", "{{.LogPath}}", "up"]);
    let data = d.data_root();
    let run = d.root.join("run");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&data), 0o710);
    assert_eq!(mode(&run), 0o711);
    assert_eq!(mode(std::path::Path::new(&log)), 0o600);
    let layers = std::fs::read_dir(data.join("image/layers")).unwrap().flatten().next().expect("a layer").path();
    for target in [
        format!("ls {}", data.display()),
        format!("ls {}/bin/busybox", layers.display()),
        format!("cat {log}"),
        format!("cat {}/containers/*/config.json", run.display()),
        format!("ls {}/containers", run.display()),
    ] {
        let o = as_nobody(&target);
        assert!(!o.status.success(), "nobody could run `{target}`: {}", String::from_utf8_lossy(&o.stdout));
    }
    // The container itself still works as before, and setuid binaries in it too.
    assert_eq!(d.ok(&["logs", "up"]), "logged");
    d.ok(&["rm", "-f", "up"]);
    // Loosened while down: closed again at start.
    d.stop();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("image"), std::fs::Permissions::from_mode(0o755)).unwrap();
    d.spawn();
    assert_eq!(mode(&data), 0o710);
    assert_eq!(mode(&data.join("image")), 0o700);
    assert!(d.log().contains("data and exec roots corrected"), "{}", d.log_tail());
}

/// A volume subpath that another container turned into a symlink to `/` must not mount the host's
/// root: the subpath resolves inside the volume (to the volume's own root here), and what is
/// mounted is the inode resolved, not a path the runtime resolves again.
#[test]
fn volume_subpath_cannot_escape_the_volume() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["volume", "create", "shared"]);
    d.ok(&["run", "--rm", "-v", "shared:/v", "busybox", "sh", "-c", "echo vol > /v/marker; ln -s / /v/app"]);
    let host_marker = d.root.join("host-only-marker");
    std::fs::write(&host_marker, "host").unwrap();
    let o = d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=shared,dst=/x,volume-subpath=app",
        "busybox",
        "sh",
        "-c",
        &format!("ls /x; cat /x{} 2>&1; true", host_marker.display()),
    ]);
    let seen = berth_e2e::out(&o);
    assert!(o.status.success(), "{}", err(&o));
    // Inside the volume, `/` is the volume's root: its marker shows, the host's files do not.
    assert!(seen.contains("marker"), "{seen}");
    assert!(!seen.contains("host\n") && !seen.contains("etc\n"), "the host's root was mounted: {seen}");
    // Staging mounts go with the container.
    assert!(d.mounts().iter().all(|m| !m.contains("/subpaths/")), "{:?}", d.mounts());
    d.ok(&["volume", "rm", "shared"]);
}

/// CVE-2019-5736 class: shims (and so every process forked from them before it execs the
/// container's program) run from a sealed in-memory copy of berth-shim, so what a container finds
/// behind `/proc/<pid>/exe` cannot be written, truncated or resealed, and the binary on the host
/// is not it.
#[test]
fn shims_run_from_a_sealed_copy() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["run", "-d", "--name", "sealed", "busybox", "sleep", "300"]);
    let shim = *d.shims().first().expect("a shim");
    let exe = std::fs::read_link(format!("/proc/{shim}/exe")).unwrap();
    assert!(exe.to_string_lossy().starts_with("/memfd:berth-shim"), "{}", exe.display());
    // Even root cannot change it: the memfd is sealed against writes, growth and shrinking.
    let w = std::fs::OpenOptions::new().write(true).open(format!("/proc/{shim}/exe"));
    let write_refused = match w {
        Err(_) => true,
        Ok(mut f) => std::io::Write::write_all(&mut f, b"#!/bin/sh\n").is_err(),
    };
    assert!(write_refused, "the shim's executable could be written");
    let f = std::fs::File::open(format!("/proc/{shim}/exe")).unwrap();
    assert!(f.set_len(0).is_err(), "the shim's executable could be truncated");
    // The container still works through it: exec, stop.
    assert_eq!(d.ok(&["exec", "sealed", "echo", "ok"]), "ok");
    d.ok(&["rm", "-f", "sealed"]);
}

/// `MaskedPaths` and `ReadonlyPaths` are applied, not just stored (cri-dockerd sends the kubelet's):
/// given lists replace Docker's defaults, `systempaths=unconfined` and privileged lift them.
#[test]
fn masked_and_readonly_paths_are_applied() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let ro_proc_sys = "grep -c ' /proc/sys ' /proc/self/mounts || true";
    // Docker's defaults: /proc/timer_list masked (an empty /dev/null), /proc/sys read-only.
    assert_eq!(d.ok(&["run", "--rm", "busybox", "sh", "-c", ro_proc_sys]), "1");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "wc", "-c", "/proc/timer_list"]), "0 /proc/timer_list");
    // Lifted.
    assert_eq!(
        d.ok(&["run", "--rm", "--security-opt", "systempaths=unconfined", "busybox", "sh", "-c", ro_proc_sys]),
        "0"
    );
    // Given through the API: exactly these, instead of the defaults.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let c = d.client();
    let body = serde_json::json!({
        "Image": "busybox",
        "Cmd": ["sh", "-c", "cat /proc/version | wc -c; touch /etc/x 2>&1 | grep -c Read-only; grep -c ' /proc/sys ' /proc/self/mounts; true"],
        "HostConfig": {"MaskedPaths": ["/proc/version"], "ReadonlyPaths": ["/etc"]},
    });
    let id = rt.block_on(c.call(hyper::Method::POST, "/containers/create", Some(&body))).expect("create")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    d.ok(&["start", "-a", &id]);
    let got = d.ok(&["logs", &id]);
    let lines: Vec<&str> = got.lines().map(str::trim).collect();
    assert_eq!(lines, ["0", "1", "0"], "masked /proc/version, read-only /etc, /proc/sys not in the list: {got}");
    d.ok(&["rm", &id]);
}
