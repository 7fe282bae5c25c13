//! Orchestrators that drive the Engine API: the calls cri-dockerd (Kubernetes) makes for a pod,
//! replayed from a recording (`fixtures/cri-dockerd/pod.json`, taken from a critest run, see
//! tests/critest/README.md) against a real berthd.

use berth_e2e::{out, run_bounded, Berthd};
use serde_json::Value;

/// One API call over the daemon's socket, as cri-dockerd makes them (API 1.44); the JSON answer.
fn api(d: &Berthd, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", d.socket.to_str().unwrap()])
        .args(["-X", method])
        .arg(format!("http://x/v1.44{path}"));
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
    }
    let text = out(&run_bounded(&mut c));
    let (json, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
    (code.parse().unwrap_or(0), serde_json::from_str(json).unwrap_or(Value::Null))
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
