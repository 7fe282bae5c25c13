//! Orchestrators that drive the Engine API: the calls cri-dockerd (Kubernetes) makes for a pod,
//! replayed from a recording (`fixtures/cri-dockerd/pod.json`, taken from a critest run, see
//! tests/critest/README.md) against a real berthd.

use berth_e2e::{out, run_bounded, Berthd};
use serde_json::Value;

/// One API call over the daemon's socket, as cri-dockerd makes them (API 1.44); the JSON answer.
fn api(d: &Berthd, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    d.api_at("1.44", method, path, body)
}

fn fixture(sandbox: &str, dir: &str) -> Value {
    let text = std::fs::read_to_string(berth_e2e::workspace().join("tests/e2e/fixtures/cri-dockerd/pod.json")).unwrap();
    let text = text.replace("{{sandbox}}", sandbox).replace("{{dir}}", dir);
    let text = text.replace("{{pause}}", "busybox").replace("{{image}}", "busybox");
    serde_json::from_str(&text).unwrap()
}

fn create(d: &Berthd, name: &str, mut body: Value) -> String {
    if body["Labels"]["io.kubernetes.docker.type"] == "podsandbox" {
        // The pause image's command (the stand-in image is busybox): it ends on SIGTERM.
        body["Cmd"] = serde_json::json!(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]);
    }
    let (code, v) = api(d, "POST", &format!("/containers/create?name={name}"), Some(&body));
    assert_eq!(code, 201, "{v}");
    v["Id"].as_str().unwrap().to_string()
}

fn start(d: &Berthd, id: &str) {
    let (code, v) = api(d, "POST", &format!("/containers/{id}/start"), None);
    assert_eq!(code, 204, "{v}");
}

#[test]
fn cri_dockerd_pod_replayed() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    // What cri-dockerd reads of /info at start.
    let (_, info) = api(&d, "GET", "/info", None);
    assert!(!info["CgroupDriver"].as_str().unwrap_or("").is_empty(), "{info}");
    assert_eq!(info["DockerRootDir"], d.data_root().to_str().unwrap());
    assert!(info["Runtimes"]["runc"].is_object(), "{}", info["Runtimes"]);

    // The sandbox: IpcMode shareable, no-new-privileges, OomScoreAdj -998 (lowered to what the
    // host allows, with a warning), ShmSize.
    let sb = create(&d, "k8s_POD_replay", fixture("", "")["sandbox"].clone());
    start(&d, &sb);
    let (_, si) = api(&d, "GET", &format!("/containers/{sb}/json"), None);
    assert_eq!(si["State"]["Running"], true, "{si}");
    assert_eq!(si["HostConfig"]["IpcMode"], "shareable");
    let ip = si["NetworkSettings"]["IPAddress"].as_str().unwrap().to_string();
    assert!(!ip.is_empty());
    assert!(si["NetworkSettings"]["SandboxKey"].as_str().is_some_and(|k| std::path::Path::new(k).exists()), "{si}");

    // An app container in the sandbox's network, ipc and pid namespaces.
    let pod = fixture(&sb, "");
    let app = create(&d, "k8s_app_replay", pod["container"].clone());
    start(&d, &app);
    let sh = |id: &str, cmd: &str| d.ok(&["exec", id, "sh", "-c", cmd]);
    assert!(sh(&app, "ip -4 addr show eth0").contains(&ip), "shares the sandbox's network");
    assert!(sh(&app, "ps").contains("trap 'exit 0' TERM"), "shares the sandbox's pid namespace");
    assert_eq!(sh(&app, "hostname"), sh(&sb, "hostname"));

    // ExecSync: create, start (attached, not detached), inspect.
    let (code, ex) = api(&d, "POST", &format!("/containers/{app}/exec"), Some(&pod["exec"]));
    assert_eq!(code, 201, "{ex}");
    let exec_id = ex["Id"].as_str().unwrap().to_string();
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "--max-time", "60", "--output", "-", "--unix-socket", d.socket.to_str().unwrap()])
        .args(["-X", "POST", "-H", "Content-Type: application/json", "-d", r#"{"Detach":false,"Tty":false}"#])
        .arg(format!("http://x/v1.44/exec/{exec_id}/start"));
    let raw = run_bounded(&mut c).stdout;
    // stdcopy frames: an 8-byte header, then "hello".
    assert!(raw.len() >= 13 && raw[0] == 1 && &raw[8..13] == b"hello", "{raw:?}");
    let (_, xi) = api(&d, "GET", &format!("/exec/{exec_id}/json"), None);
    assert_eq!((xi["Running"].clone(), xi["ExitCode"].clone()), (Value::Bool(false), serde_json::json!(0)), "{xi}");

    // Stats one-shot and sizes, as the kubelet's stats calls read them.
    let (code, st) = api(&d, "GET", &format!("/containers/{app}/stats?one-shot=1&stream=0"), None);
    assert_eq!(code, 200);
    assert!(
        st["memory_stats"]["usage"].as_u64().is_some() && st["cpu_stats"]["cpu_usage"]["total_usage"].is_u64(),
        "{st}"
    );
    let (_, sized) = api(&d, "GET", &format!("/containers/{app}/json?size=1"), None);
    assert!(sized["SizeRw"].is_u64() && sized["SizeRootFs"].is_u64(), "{sized}");
    // The json-file log cri-dockerd links for the kubelet.
    let log = sized["LogPath"].as_str().unwrap().to_string();
    d.ok(&["exec", &app, "true"]);
    assert!(std::path::Path::new(&log).exists(), "{log}");

    // Binds with SELinux's :Z (ignored without SELinux, as Docker does), and a sandbox's sysctls.
    let dir = tempfile::Builder::new().prefix("bt-cri-").tempdir_in("/tmp").unwrap();
    let pod = fixture(&sb, dir.path().to_str().unwrap());
    let vol = create(&d, "k8s_vol_replay", pod["container_volume"].clone());
    start(&d, &vol);
    sh(&vol, &format!("touch {}/from-pod", dir.path().display()));
    assert!(dir.path().join("from-pod").exists());
    let sb2 = create(&d, "k8s_POD_sysctls", pod["sandbox_sysctls"].clone());
    start(&d, &sb2);
    assert_eq!(sh(&sb2, "cat /proc/sys/kernel/shm_rmid_forced"), "1");

    // Teardown as cri-dockerd does it: stop with a timeout, then remove with force and volumes.
    for id in [&vol, &app, &sb, &sb2] {
        let (code, v) = api(&d, "POST", &format!("/containers/{id}/stop?t=10"), None);
        assert!(code == 204 || code == 304, "{v}");
        let (code, v) = api(&d, "DELETE", &format!("/containers/{id}?force=1&v=1"), None);
        assert_eq!(code, 204, "{v}");
    }
}

/// Nomad's docker driver: its calls for a task group with group networking, as its source makes
/// them (API >= 1.44; image load; NetworkList for the bridge gateway; a pause container with
/// `none` networking whose SandboxKey is entered for CNI; tasks joining `container:<pause>` with
/// their resources, log rotation, groups, healthcheck off and the alloc dir bound in; streamed
/// stats), each checked where it lands.
#[test]
fn nomad_task_group_replayed() {
    let d = Berthd::start();
    let (_, v) = api(&d, "GET", "/version", None);
    let ver: Vec<u32> = v["ApiVersion"].as_str().unwrap().split('.').map(|x| x.parse().unwrap()).collect();
    assert!(ver >= vec![1, 44], "Nomad needs API 1.44: {v}");
    // `load = "image.tar"`: the image comes as a docker-save archive.
    let src = Berthd::start();
    src.import_busybox("nomad/task:1");
    let tar = src.root.join("image.tar");
    src.ok(&["save", "-o", tar.to_str().unwrap(), "nomad/task:1"]);
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "--max-time", "60", "--unix-socket", d.socket.to_str().unwrap(), "-X", "POST"])
        .args(["-H", "Content-Type: application/x-tar", "--data-binary"])
        .arg(format!("@{}", tar.display()))
        .arg("http://x/v1.44/images/load?quiet=1");
    assert!(out(&run_bounded(&mut c)).contains("Loaded image"));
    // NetworkList: the default bridge's gateway, which Nomad advertises.
    let (_, nets) = api(&d, "GET", "/networks", None);
    let bridge = nets.as_array().unwrap().iter().find(|n| n["Name"] == "bridge").unwrap().clone();
    assert!(bridge["IPAM"]["Config"][0]["Gateway"].as_str().is_some_and(|g| !g.is_empty()), "{bridge}");

    // The group's pause container: no network of Docker's; Nomad's CNI enters its namespace.
    let pause = serde_json::json!({
        "Image": "nomad/task:1", "Cmd": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        "Labels": {"com.hashicorp.nomad.alloc_id": "a1"},
        "HostConfig": {"NetworkMode": "none", "Memory": 0, "CpuShares": 0, "Init": false}
    });
    let (code, p) = api(&d, "POST", "/containers/create?name=nomad_init_a1", Some(&pause));
    assert_eq!(code, 201, "{p}");
    let pause_id = p["Id"].as_str().unwrap().to_string();
    assert_eq!(api(&d, "POST", &format!("/containers/{pause_id}/start"), None).0, 204);
    let (_, pi) = api(&d, "GET", &format!("/containers/{pause_id}/json"), None);
    let key = pi["NetworkSettings"]["SandboxKey"].as_str().unwrap().to_string();
    let entered =
        run_bounded(std::process::Command::new("nsenter").arg(format!("--net={key}")).args(["ip", "-o", "link"]));
    assert!(entered.status.success() && out(&entered).contains("lo"), "SandboxKey {key} is enterable");

    // A task of the group.
    let alloc = tempfile::Builder::new().prefix("bt-nomad-").tempdir_in("/tmp").unwrap();
    std::fs::write(alloc.path().join("local.txt"), "from the alloc dir").unwrap();
    let task = serde_json::json!({
        "Image": "nomad/task:1", "Cmd": ["sh", "-c", "echo started; sleep 1000"],
        "Env": ["NOMAD_ALLOC_ID=a1", "NOMAD_TASK_NAME=web"],
        "Labels": {"com.hashicorp.nomad.alloc_id": "a1", "com.hashicorp.nomad.task_name": "web"},
        "Healthcheck": {"Test": ["NONE"]},
        "HostConfig": {
            "NetworkMode": format!("container:{pause_id}"),
            "Memory": 64 << 20, "MemoryReservation": 32 << 20, "MemorySwap": 64 << 20,
            "CpuShares": 100, "CpusetCpus": "0", "PidsLimit": 64,
            "GroupAdd": ["1234"], "CgroupnsMode": "host",
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}},
            "Mounts": [{"Type": "bind", "Source": alloc.path(), "Target": "/alloc", "ReadOnly": false}]
        }
    });
    let (code, t) = api(&d, "POST", "/containers/create?name=web-a1", Some(&task));
    assert_eq!(code, 201, "{t}");
    let task_id = t["Id"].as_str().unwrap().to_string();
    assert_eq!(api(&d, "POST", &format!("/containers/{task_id}/start"), None).0, 204);
    let sh = |cmd: &str| d.ok(&["exec", &task_id, "sh", "-c", cmd]);
    assert_eq!(
        sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes \
            /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/pids/pids.max"),
        format!("{}\n{}\n100\n0\n64", 64 << 20, 32 << 20)
    );
    assert!(sh("id -G").split_whitespace().any(|g| g == "1234"), "GroupAdd applies to execs too");
    assert_eq!(sh("cat /alloc/local.txt"), "from the alloc dir");
    assert_eq!(sh("ip -o link | grep -c eth || true"), "0", "the pause container's namespace: no Docker network");
    let (_, ti) = api(&d, "GET", &format!("/containers/{task_id}/json"), None);
    assert_eq!(ti["State"]["Health"], Value::Null, "healthcheck off");
    assert_eq!(ti["HostConfig"]["LogConfig"]["Config"]["max-file"], "2");
    // Streamed stats: a sample per second until the client goes.
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "--max-time", "3", "--unix-socket", d.socket.to_str().unwrap()])
        .arg(format!("http://x/v1.44/containers/{task_id}/stats?stream=1"));
    let stream = out(&run_bounded(&mut c));
    assert!(stream.lines().filter(|l| l.contains("\"memory_stats\"")).count() >= 2, "{stream}");
    for id in [&task_id, &pause_id] {
        assert_eq!(api(&d, "POST", &format!("/containers/{id}/stop?t=5"), None).0, 204);
        assert_eq!(api(&d, "DELETE", &format!("/containers/{id}?force=1"), None).0, 204);
    }
}
