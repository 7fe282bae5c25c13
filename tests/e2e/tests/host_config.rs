//! HostConfig coverage beyond the basics, through the docker CLI: shm size, sysctls, ulimits, OOM
//! score, cpuset/quota and memory reservation/swap, devices, group-add, pid/ipc/uts modes, --init.

use berth_e2e::{err, out, Berthd};

fn daemon() -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d
}

fn run(d: &Berthd, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    d.ok(&a)
}

#[test]
fn limits_sysctls_and_devices() {
    let d = daemon();
    assert!(run(&d, &["--shm-size", "128m", "busybox", "df", "-k", "/dev/shm"]).contains("131072"));
    let s = run(
        &d,
        &[
            "--sysctl",
            "net.ipv4.ip_unprivileged_port_start=1000",
            "--sysctl",
            "kernel.shmmax=1234567",
            "busybox",
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
            "/proc/sys/kernel/shmmax",
        ],
    );
    assert_eq!(s, "1000\n1234567");
    // A sysctl of the host's network namespace is refused with the host network.
    let o = d.docker(&["run", "--rm", "--network", "host", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "true"]);
    assert!(!o.status.success() && err(&o).contains("not allowed"), "{}", err(&o));
    assert_eq!(
        run(&d, &["--ulimit", "nofile=1024:2048", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"]),
        "1024\n2048"
    );
    assert_eq!(run(&d, &["--oom-score-adj", "500", "busybox", "cat", "/proc/self/oom_score_adj"]), "500");
    assert_eq!(
        run(&d, &["--cpuset-cpus", "0", "busybox", "grep", "Cpus_allowed_list", "/proc/self/status"]),
        "Cpus_allowed_list:\t0"
    );
    let cg = run(
        &d,
        &[
            "--cpu-quota",
            "50000",
            "--memory",
            "64m",
            "--memory-reservation",
            "32m",
            "busybox",
            "cat",
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
        ],
    );
    assert_eq!(cg, "50000\n33554432");
    let dev = run(
        &d,
        &["--device", "/dev/null:/dev/mynull", "busybox", "sh", "-c", "ls -l /dev/mynull && echo x > /dev/mynull"],
    );
    assert!(dev.starts_with("crw") && dev.contains("1,   3"), "{dev}");
    let o = d.docker(&["run", "--rm", "--device", "/nonexistent", "busybox", "true"]);
    assert!(!o.status.success() && err(&o).contains("error gathering device information"), "{}", err(&o));
    let id = run(&d, &["--group-add", "1234", "--group-add", "staff", "busybox", "id"]);
    assert!(id.contains("1234") && id.contains("50(staff)"), "{id}");
    let o = d.docker(&["run", "--rm", "--group-add", "nosuchgroup", "busybox", "true"]);
    assert!(!o.status.success() && err(&o).contains("Unable to find group nosuchgroup"), "{}", err(&o));
}

#[test]
fn namespace_modes_and_init() {
    let d = daemon();
    let host_ns = |t: &str| std::fs::read_link(format!("/proc/self/ns/{t}")).unwrap().to_string_lossy().to_string();
    assert_eq!(run(&d, &["--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc"]), host_ns("ipc"));
    assert_ne!(run(&d, &["busybox", "readlink", "/proc/self/ns/ipc"]), host_ns("ipc"));
    assert_eq!(run(&d, &["--pid", "host", "busybox", "readlink", "/proc/self/ns/pid"]), host_ns("pid"));
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert_eq!(run(&d, &["--uts", "host", "busybox", "hostname"]), host_name);
    // Joining another container's pid namespace shows its processes.
    d.ok(&["run", "-d", "--name", "pidsrc", "busybox", "sleep", "300"]);
    let ps = run(&d, &["--pid", "container:pidsrc", "busybox", "ps"]);
    assert!(ps.contains("sleep 300"), "{ps}");
    let o = d.docker(&["run", "--rm", "--pid", "container:nosuch", "busybox", "true"]);
    assert!(!o.status.success());
    d.ok(&["rm", "-f", "pidsrc"]);

    // --init: tini is pid 1, forwards SIGTERM (so stop ends with 143, not a SIGKILL after the
    // timeout) and reaps.
    assert_eq!(
        run(&d, &["--init", "busybox", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]).trim(),
        "/sbin/docker-init -- sh -c tr '\\0' ' ' < /proc/1/cmdline"
    );
    d.ok(&["run", "-d", "--init", "--name", "inited", "busybox", "sleep", "300"]);
    d.ok(&["stop", "-t", "20", "inited"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "inited"]), "143");
    d.ok(&["run", "-d", "--name", "bare", "busybox", "sleep", "300"]);
    d.ok(&["stop", "-t", "1", "bare"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "bare"]), "137", "sleep as pid 1 ignores SIGTERM");
    d.ok(&["rm", "inited", "bare"]);
}

#[test]
fn update_changes_limits_live() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "upd", "--memory", "64m", "busybox", "sleep", "300"]);
    d.ok(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "--cpu-shares",
        "512",
        "--restart",
        "on-failure:3",
        "upd",
    ]);
    let live = d.ok(&[
        "exec",
        "upd",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        "/sys/fs/cgroup/pids/pids.max",
        "/sys/fs/cgroup/cpu/cpu.shares",
    ]);
    assert_eq!(live, "134217728\n268435456\n50000\n50\n512");
    let hc = d.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        "upd",
    ]);
    assert_eq!(hc, "134217728 268435456 500000000 50 on-failure:3");
    // Docker's checks.
    let o = d.docker(&["update", "--memory", "512m", "upd"]);
    assert!(err(&o).contains("update the memoryswap at the same time"), "{}", err(&o));
    let o = d.docker(&["update", "--memory", "2m", "upd"]);
    assert!(err(&o).contains("Minimum memory limit allowed is 6MB"), "{}", err(&o));
    // A stopped container keeps the new values for its next start.
    d.ok(&["stop", "-t", "1", "upd"]);
    d.ok(&["update", "--pids-limit", "20", "upd"]);
    d.ok(&["start", "upd"]);
    assert_eq!(d.ok(&["exec", "upd", "cat", "/sys/fs/cgroup/pids/pids.max"]), "20");
    d.ok(&["rm", "-f", "upd"]);
}

#[test]
fn privileged_sees_host_devices() {
    let d = daemon();
    // Some host device node outside Docker's default set.
    let Some(dev) = ["/dev/loop0", "/dev/kmsg", "/dev/fuse", "/dev/loop-control"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        panic!("no extra device node on this host to check with");
    };
    let o = d.docker(&["run", "--rm", "busybox", "ls", dev]);
    assert!(!o.status.success(), "{dev} visible without --privileged");
    assert_eq!(run(&d, &["--privileged", "busybox", "ls", dev]), dev);
    // And the devices cgroup lets it be opened.
    let o = d.docker(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "head -c 0 /dev/kmsg 2>/dev/null || true; ls /dev | wc -l",
    ]);
    assert!(o.status.success());
    let n: usize = berth_e2e::out(&o).trim().parse().unwrap();
    assert!(n > 20, "only {n} devices in a privileged container");
}

/// Block I/O throttles reach the container's blkio cgroup, from the docker CLI and from berth alike.
#[test]
fn block_io_throttles() {
    let d = daemon();
    // A whole disk of this machine, from /sys/block (loop, ram and zram devices are no disks); any
    // block device works. None at all is a broken test machine: fail, never skip.
    let disk = std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !["loop", "ram", "zram"].iter().any(|p| n.starts_with(p)))
        .map(|n| format!("/dev/{n}"))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
                .unwrap_or(false)
        })
        .expect("no block device under /sys/block with a node in /dev");
    let disk = disk.as_str();
    let st = rustix::fs::stat(disk).unwrap();
    let dev = format!("{}:{}", rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
    let cg = |id: &str, file: &str| {
        let p = std::path::Path::new("/sys/fs/cgroup/blkio")
            .join(d.cgroup_parent.trim_start_matches('/'))
            .join(id)
            .join(file);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let id = d.ok(&[
        "run",
        "-d",
        "--device-read-bps",
        &format!("{disk}:1mb"),
        "--device-write-iops",
        &format!("{disk}:100"),
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(cg(&id, "blkio.throttle.read_bps_device").trim(), format!("{dev} 1048576"));
    assert_eq!(cg(&id, "blkio.throttle.write_iops_device").trim(), format!("{dev} 100"));
    let hc = d.ok(&["inspect", "-f", "{{json .HostConfig.BlkioDeviceReadBps}}", &id]);
    assert_eq!(hc, format!(r#"[{{"Path":"{disk}","Rate":1048576}}]"#));
    let o = d.berth(&["run", "-d", "--device-write-bps", &format!("{disk}:2m"), "busybox", "sleep", "60"]);
    let id2 = berth_e2e::out(&o).trim().to_string();
    assert_eq!(cg(&id2, "blkio.throttle.write_bps_device").trim(), format!("{dev} 2097152"), "{}", err(&o));
    // Updated live from API 1.55 (ignored before, as moby); `[]` clears, absent leaves as is.
    let rules = |rate: u64| serde_json::json!({"BlkioDeviceReadBps": [{"Path": disk, "Rate": rate}]});
    let (code, v) = d.api_at("1.54", "POST", &format!("/containers/{id}/update"), Some(&rules(2 << 20)));
    assert_eq!(code, 200, "{v}");
    assert_eq!(cg(&id, "blkio.throttle.read_bps_device").trim(), format!("{dev} 1048576"));
    let (code, v) = d.api_at("1.55", "POST", &format!("/containers/{id}/update"), Some(&rules(2 << 20)));
    assert_eq!(code, 200, "{v}");
    assert_eq!(cg(&id, "blkio.throttle.read_bps_device").trim(), format!("{dev} 2097152"));
    assert!(d.ok(&["inspect", "-f", "{{json .HostConfig.BlkioDeviceReadBps}}", &id]).contains("2097152"));
    let body = serde_json::json!({"BlkioDeviceReadBps": [], "CpuShares": 512});
    assert_eq!(d.api_at("1.55", "POST", &format!("/containers/{id}/update"), Some(&body)).0, 200);
    assert_eq!(cg(&id, "blkio.throttle.read_bps_device").trim(), "");
    assert_eq!(cg(&id, "blkio.throttle.write_iops_device").trim(), format!("{dev} 100"), "untouched");
    let bad = serde_json::json!({"BlkioDeviceWriteBps": [{"Path": "/dev/null", "Rate": 1}]});
    let (code, v) = d.api_at("1.55", "POST", &format!("/containers/{id}/update"), Some(&bad));
    assert!(code == 400 && v["message"].as_str().unwrap().contains("not a block device"), "{v}");
    // Not a block device: refused with a clear error.
    let o = d.docker(&["run", "--rm", "--device-read-bps", "/dev/null:1mb", "busybox", "true"]);
    assert!(!o.status.success() && err(&o).contains("not a block device"), "{}", err(&o));
    d.ok(&["rm", "-f", &id, &id2]);
}

/// `OomScoreAdj` below berthd's own needs CAP_SYS_RESOURCE (cri-dockerd asks -998 for every
/// sandbox). With it, applied as asked; without it (this kind of VM), the lowest allowed value is
/// applied and the create warns, instead of a start that fails ("io error" before).
#[test]
fn oom_score_adj_below_the_daemons_own() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = u64::from_str_radix(status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim(), 16).unwrap();
    let can_lower = caps & (1 << 24) != 0;
    let own = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", d.pid())).unwrap().trim().to_string();
    let o = d.docker(&["run", "--rm", "--oom-score-adj", "-998", "busybox", "cat", "/proc/self/oom_score_adj"]);
    assert!(o.status.success(), "{}", err(&o));
    if can_lower {
        assert_eq!(out(&o).trim(), "-998");
    } else {
        assert_eq!(out(&o).trim(), own);
        assert!(err(&o).contains("OomScoreAdj -998 needs CAP_SYS_RESOURCE"), "{}", err(&o));
    }
    // Raising it needs nothing.
    assert_eq!(d.ok(&["run", "--rm", "--oom-score-adj", "500", "busybox", "cat", "/proc/self/oom_score_adj"]), "500");
}

/// Inspect shows what applies, as Docker fills it in at create: runtime runc, a 64 MiB /dev/shm, a
/// private IPC namespace, the host's cgroup namespace. A runtime or cgroupns mode berthd does not
/// have is refused (it was stored and ignored).
#[test]
fn host_config_defaults_and_refusals() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let id = d.ok(&["create", "busybox", "true"]);
    let f = "{{.HostConfig.Runtime}} {{.HostConfig.ShmSize}} {{.HostConfig.IpcMode}} {{.HostConfig.CgroupnsMode}}";
    assert_eq!(d.ok(&["inspect", "-f", f, &id]), "runc 67108864 private host");
    assert_eq!(d.ok(&["start", "-a", &id]), "");
    let o = d.docker(&["create", "--runtime", "nope", "busybox", "true"]);
    assert!(err(&o).contains("unknown or invalid runtime name: nope"), "{}", err(&o));
    let o = d.docker(&["create", "--cgroupns", "private", "busybox", "true"]);
    assert!(err(&o).contains("not supported by berthd"), "{}", err(&o));
    // Given values stay as given.
    let id2 = d.ok(&["create", "--shm-size", "8m", "--runtime", "runc", "busybox", "true"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.ShmSize}}", &id2]), "8388608");
    d.ok(&["rm", &id, &id2]);
}

/// Memory swappiness, the OOM-killer switch and annotations are applied, not stored and echoed:
/// the container's memory cgroup and the OCI spec carry them; an out-of-range swappiness is refused.
#[test]
fn swappiness_oom_kill_disable_and_annotations_are_applied() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let id = d.ok(&[
        "run",
        "-d",
        "-m",
        "64m",
        "--memory-swappiness",
        "10",
        "--oom-kill-disable",
        "--annotation",
        "org.example.team=core",
        "busybox",
        "sleep",
        "300",
    ]);
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").exists();
    if v1 {
        let dir =
            d.cgroups().into_iter().find(|p| p.starts_with("/sys/fs/cgroup/memory")).expect("memory cgroup").join(&id);
        assert_eq!(std::fs::read_to_string(dir.join("memory.swappiness")).unwrap().trim(), "10");
        let oom = std::fs::read_to_string(dir.join("memory.oom_control")).unwrap();
        assert!(oom.contains("oom_kill_disable 1"), "{oom}");
    }
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.root.join("run/containers").join(&id).join("config.json")).unwrap())
            .unwrap();
    assert_eq!(spec["annotations"]["org.example.team"], "core");
    let o = d.docker(&["create", "--memory-swappiness", "101", "busybox"]);
    assert!(!o.status.success(), "swappiness 101 accepted");
    d.ok(&["rm", "-f", &id]);
}

/// CDI devices (`--device vendor.com/class=name`, sent as a `cdi` DeviceRequest): a spec the test
/// writes (a fake device backed by /dev/null) gives the container its device node, mount,
/// environment and hook; what no spec defines, and `--gpus` without a driver, are clear 400s.
#[test]
fn cdi_devices_as_docker() {
    let specs = tempfile::Builder::new().prefix("bt-cdi-").tempdir_in("/tmp").unwrap();
    let marker = specs.path().join("hook-ran");
    // A poststop hook runs when the container is deleted: it must still find the container's
    // bundle (the shim reports such an exit only after the delete). It lists the bundle's
    // config.json, named in the state it reads on stdin.
    let stopped = specs.path().join("poststop-saw");
    let poststop = format!(
        r#"b=$(grep -o "\"bundle\":\"[^\"]*\"" | cut -d\" -f4); ls "$b/config.json" > {} 2>&1"#,
        stopped.display()
    );
    std::fs::write(
        specs.path().join("fake.yaml"),
        format!(
            "cdiVersion: 0.6.0\nkind: example.com/fake\ncontainerEdits:\n  env: [FAKE_VENDOR=1]\ndevices:\n\
             - name: dev0\n  containerEdits:\n    env: [FAKE_DEVICE=dev0]\n    deviceNodes:\n    - path: /dev/fake0\n      hostPath: /dev/null\n\
             \x20   mounts:\n    - hostPath: {dir}\n      containerPath: /opt/fake\n      options: [ro, rbind]\n\
             \x20   hooks:\n    - hookName: createRuntime\n      path: /bin/sh\n      args: [sh, -c, 'touch {marker}']\n\
             \x20   - hookName: poststop\n      path: /bin/sh\n      args: [sh, -c, '{poststop}']\n",
            dir = specs.path().display(),
            marker = marker.display()
        ),
    )
    .unwrap();
    let d = Berthd::start_with(&["--cdi-spec-dir", specs.path().to_str().unwrap()]);
    d.import_busybox("busybox");
    let info = d.ok(&["info", "--format", "{{json .CDISpecDirs}}"]);
    assert_eq!(info, format!("[\"{}\"]", specs.path().display()));
    let s = d.ok(&[
        "run",
        "--rm",
        "--device",
        "example.com/fake=dev0",
        "busybox",
        "sh",
        "-c",
        "env | grep FAKE_ | sort; stat -c '%t,%T' /dev/fake0; ls /opt/fake; echo x > /dev/fake0 && echo wrote",
    ]);
    // The hook ran before the process: its marker is in the mounted folder.
    assert_eq!(s, "FAKE_DEVICE=dev0\nFAKE_VENDOR=1\n1,3\nfake.yaml\nhook-ran\nwrote");
    assert!(marker.exists(), "the spec's createRuntime hook ran");
    let saw = std::fs::read_to_string(&stopped).expect("the poststop hook ran");
    assert!(saw.trim_end().ends_with("/config.json"), "the poststop hook found no bundle: {saw}");
    d.ok(&["create", "--name", "withdev", "--device", "example.com/fake=dev0", "busybox", "true"]);
    let req = d.ok(&["inspect", "-f", "{{json .HostConfig.DeviceRequests}}", "withdev"]);
    assert!(req.contains(r#""Driver":"cdi""#) && req.contains("example.com/fake=dev0"), "{req}");
    let o = d.docker(&["run", "--rm", "--device", "example.com/fake=nope", "busybox", "true"]);
    assert!(
        err(&o).contains("CDI device injection failed: unresolvable CDI devices example.com/fake=nope"),
        "{}",
        err(&o)
    );
    let o = d.docker(&["run", "--rm", "--gpus", "all", "busybox", "true"]);
    assert!(err(&o).contains(r#"could not select device driver "" with capabilities: [[gpu]]"#), "{}", err(&o));
    d.ok(&["rm", "withdev"]);
}

/// `--cgroup-parent` places the container's cgroup under that parent (what cri-dockerd does with
/// a pod's cgroup), `..` cleaned away as Docker does; stats, update and removal find it there.
#[test]
fn cgroup_parent_of_a_container_is_applied() {
    let d = daemon();
    let own = format!("{}/custom", d.cgroup_parent);
    let id = d.ok(&["run", "-d", "--cgroup-parent", &own, "-m", "64m", "busybox", "sleep", "600"]);
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").exists();
    let limit_file = |mb: &str| {
        if v1 {
            std::path::Path::new("/sys/fs/cgroup/memory").join(own.trim_start_matches('/')).join(&id).join(mb)
        } else {
            std::path::Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/')).join(&id).join("memory.max")
        }
    };
    let limit = || {
        std::fs::read_to_string(limit_file("memory.limit_in_bytes")).expect("the container's cgroup under its parent")
    };
    assert_eq!(limit().trim(), "67108864");
    // The container's own view is its cgroup, wherever it lives on the host.
    let inside = if v1 { "/sys/fs/cgroup/memory/memory.limit_in_bytes" } else { "/sys/fs/cgroup/memory.max" };
    assert_eq!(d.ok(&["exec", &id, "cat", inside]), "67108864");
    d.ok(&["update", "-m", "96m", "--memory-swap", "-1", &id]);
    assert_eq!(limit().trim(), "100663296");
    let mem = d.ok(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &id]);
    assert!(mem.ends_with("96MiB"), "{mem}");
    d.ok(&["rm", "-f", &id]);
    assert!(!limit_file("memory.limit_in_bytes").exists(), "the container's cgroup is gone with it");
    // `..` does not climb out of the hierarchy: cleaned, as Docker's filepath.Join does.
    let climbing = format!("/../..{}/climb", d.cgroup_parent);
    let id = d.ok(&["run", "-d", "--cgroup-parent", &climbing, "busybox", "sleep", "600"]);
    let cg =
        std::fs::read_to_string(format!("/proc/{}/cgroup", d.ok(&["inspect", "-f", "{{.State.Pid}}", &id]))).unwrap();
    assert!(cg.contains(&format!("{}/climb/{id}", d.cgroup_parent)), "{cg}");
    d.ok(&["rm", "-f", &id]);
}
