//! The API's version gates, against a real berthd: each answer shaped as moby shapes it for the
//! version a request asks (1.24 … 1.56), and each request read as moby reads it at that version.

use berth_e2e::*;
use serde_json::{json, Value};

fn daemon() -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d
}

#[test]
fn container_inspect_and_list_by_version() {
    let d = daemon();
    d.ok(&["network", "create", "vnet"]);
    let id =
        d.ok(&["run", "-d", "--name", "web", "--network", "vnet", "--network-alias", "www", "busybox", "sleep", "300"]);
    let short = &id[..12];
    let nets = |v: &str| d.api_at(v, "GET", "/containers/web/json", None).1["NetworkSettings"].clone();
    // 1.45+: the aliases as asked; the short id is a DNS name only.
    let n = nets("1.56");
    assert_eq!(n["Networks"]["vnet"]["Aliases"], json!(["www"]), "{n}");
    assert!(n["Networks"]["vnet"]["DNSNames"].as_array().unwrap().iter().any(|x| x == short), "{n}");
    assert!(n.get("IPAddress").is_none() && n.get("Bridge").is_none(), "1.52 dropped them: {n}");
    let n = nets("1.51");
    assert_eq!(n["Networks"]["vnet"]["Aliases"], json!(["www"]));
    assert_eq!(n["IPAddress"], "", "not on the default bridge: {n}");
    let n = nets("1.44");
    let aliases = n["Networks"]["vnet"]["Aliases"].as_array().unwrap().clone();
    assert!(aliases.contains(&json!("www")) && aliases.contains(&json!(short)), "{n}");
    // On the default bridge, old clients find its address at the top.
    d.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "300"]);
    let (_, c) = d.api_at("1.51", "GET", "/containers/plain/json", None);
    let ns = &c["NetworkSettings"];
    assert_eq!(ns["IPAddress"], ns["Networks"]["bridge"]["IPAddress"]);
    assert!(ns["IPAddress"].as_str().unwrap().starts_with("10.213."), "{ns}");
    assert_eq!(c["HostConfig"]["KernelMemoryTCP"], 0);
    let (_, c) = d.api_at("1.52", "GET", "/containers/plain/json", None);
    assert!(c["HostConfig"].get("KernelMemoryTCP").is_none() && c["Config"].get("OnBuild").is_none(), "{c}");

    // The list: Health from 1.52, annotations from 1.46.
    let body = json!({"Image": "busybox", "Cmd": ["sleep", "300"],
        "HostConfig": {"Annotations": {"org.example.team": "core"}}});
    let (code, _) = d.api_at("1.56", "POST", "/containers/create?name=annotated", Some(&body));
    assert_eq!(code, 201);
    let find = |v: &str| {
        let (_, l) = d.api_at(v, "GET", "/containers/json?all=1", None);
        l.as_array().unwrap().iter().find(|c| c["Names"][0] == "/annotated").cloned().unwrap()
    };
    let c = find("1.56");
    assert_eq!(c["Health"], json!({"Status": "none", "FailingStreak": 0}));
    assert_eq!(c["HostConfig"]["Annotations"]["org.example.team"], "core");
    let c = find("1.51");
    assert!(c.get("Health").is_none());
    assert_eq!(c["HostConfig"]["Annotations"]["org.example.team"], "core");
    assert!(find("1.45")["HostConfig"].get("Annotations").is_none());
    // An endpoint's MAC address given at connect is applied (1.54 made it so in moby).
    d.ok(&["create", "--name", "late", "--network", "vnet", "busybox", "sleep", "300"]);
    d.ok(&["network", "disconnect", "vnet", "late"]);
    let body = json!({"Container": "late", "EndpointConfig": {"MacAddress": "02:42:0a:00:00:77"}});
    let (code, v) = d.api_at("1.54", "POST", "/networks/vnet/connect", Some(&body));
    assert_eq!(code, 200, "{v}");
    d.ok(&["start", "late"]);
    assert_eq!(d.ok(&["exec", "late", "cat", "/sys/class/net/eth0/address"]), "02:42:0a:00:00:77");
    // Stats name their platform.
    let (_, s) = d.api_at("1.56", "GET", "/containers/plain/stats?stream=0&one-shot=1", None);
    assert_eq!(s["os_type"], "linux");
}

#[test]
fn create_requests_read_per_version() {
    let d = daemon();
    d.ok(&["volume", "create", "vol"]);
    // A container-wide MAC address is gone at 1.52 (an endpoint's one stays).
    let mac = json!({"Image": "busybox", "Cmd": ["true"], "MacAddress": "02:42:ac:11:00:99"});
    let (code, v) = d.api_at("1.52", "POST", "/containers/create", Some(&mac));
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["message"],
        "container-wide MAC address no longer supported; use endpoint-specific MAC address instead"
    );
    let (code, _) = d.api_at("1.51", "POST", "/containers/create", Some(&mac));
    assert_eq!(code, 201);
    // A volume's subpath needs 1.45.
    let sub = json!({"Image": "busybox", "HostConfig": {"Mounts": [
        {"Type": "volume", "Source": "vol", "Target": "/v", "VolumeOptions": {"Subpath": "x"}}]}});
    let (code, v) = d.api_at("1.44", "POST", "/containers/create", Some(&sub));
    assert_eq!((code, v["message"].as_str()), (400, Some("VolumeOptions.Subpath needs API v1.45 or newer")));
    // Image mounts need 1.48.
    let img =
        json!({"Image": "busybox", "HostConfig": {"Mounts": [{"Type": "image", "Source": "busybox", "Target": "/i"}]}});
    let (code, v) = d.api_at("1.47", "POST", "/containers/create", Some(&img));
    assert_eq!((code, v["message"].as_str()), (400, Some(r#"Mount type "Image" needs API v1.48 or newer"#)));
    // An empty list of bindings publishes on an ephemeral port (in every version); 1.52 warns.
    let ports = json!({"Image": "busybox", "Cmd": ["sleep", "300"], "ExposedPorts": {"80/tcp": {}},
        "HostConfig": {"PortBindings": {"80/tcp": []}}});
    let (code, v) = d.api_at("1.52", "POST", "/containers/create?name=pp", Some(&ports));
    assert_eq!(code, 201, "{v}");
    assert!(v["Warnings"][0].as_str().unwrap().contains("empty list of port-bindings: 80/tcp"), "{v}");
    let (_, v) = d.api_at("1.44", "POST", "/containers/create?name=qq", Some(&ports));
    assert_eq!(v["Warnings"], json!([]));
    d.ok(&["start", "pp"]);
    let port = d.ok(&["port", "pp", "80/tcp"]);
    assert!(port.starts_with("0.0.0.0:") && !port.ends_with(":0"), "{port}");
}

#[test]
fn image_answers_by_version() {
    let d = daemon();
    let o = d.docker_stdin(&["build", "-q", "-t", "cfg", "-"], Some(b"FROM busybox\nCMD [\"sh\"]\n"));
    assert!(o.status.success(), "{}", err(&o));
    let cfg = |v: &str| d.api_at(v, "GET", "/images/cfg/json", None).1;
    let i = cfg("1.56");
    assert_eq!(i["Config"]["Cmd"], json!(["sh"]));
    for gone in ["Hostname", "Tty", "Image", "User", "Env", "Entrypoint"] {
        assert!(i["Config"].get(gone).is_none(), "1.52 Config has {gone}: {}", i["Config"]);
    }
    assert!(i.get("Author").is_none(), "only what is set: {i}");
    let i = cfg("1.50");
    assert_eq!(i["Config"]["User"], "");
    assert!(i["Config"].get("Hostname").is_none() && i.get("Author").is_some(), "{i}");
    let i = cfg("1.49");
    assert_eq!(i["Config"]["Hostname"], "");
    assert_eq!(i["Config"]["Tty"], false);
    assert!(i.get("Container").is_none());
    assert!(cfg("1.44").get("Container").is_some());
    // The containers using each image: counted from 1.51.
    d.ok(&["create", "--name", "user", "cfg"]);
    let count = |v: &str| {
        let (_, l) = d.api_at(v, "GET", "/images/json", None);
        l.as_array().unwrap().iter().find(|i| i["RepoTags"][0] == "cfg:latest").unwrap()["Containers"].clone()
    };
    assert_eq!((count("1.51"), count("1.50")), (json!(1), json!(-1)));
    // `platform`: the image's own platform, or Docker's 404 for one it does not have.
    let arch = cfg("1.56")["Architecture"].as_str().unwrap().to_string();
    let mine = format!("{{\"os\":\"linux\",\"architecture\":\"{arch}\"}}");
    let other = r#"{"os":"linux","architecture":"s390x"}"#;
    let q = |p: &str| format!("platform={}", enc(p));
    assert_eq!(d.api_at("1.49", "GET", &format!("/images/cfg/json?{}", q(&mine)), None).0, 200);
    let (code, v) = d.api_at("1.49", "GET", &format!("/images/cfg/json?{}", q(other)), None);
    assert_eq!(code, 404, "{v}");
    assert!(v["message"].as_str().unwrap().contains("does not match the specified platform (linux/s390x)"), "{v}");
    assert_eq!(d.api_at("1.48", "GET", &format!("/images/cfg/history?{}", q(other)), None).0, 404);
    assert_eq!(d.api_at("1.48", "GET", &format!("/images/cfg/history?{}", q(&mine)), None).0, 200);
    assert_eq!(d.api_at("1.52", "GET", &format!("/images/cfg/get?{}", q(other)), None).0, 404);
    assert_eq!(d.api_at("1.50", "DELETE", &format!("/images/cfg?platforms={}", enc(other)), None).0, 404);
    // Attestations (1.55): none kept, a clear empty list; an unknown image is a 404.
    assert_eq!(d.api_at("1.55", "GET", "/images/cfg/attestations", None), (200, json!([])));
    assert_eq!(d.api_at("1.55", "GET", "/images/nosuch/attestations", None).0, 404);
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn system_answers_by_version() {
    let cdi = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(
        cdi.path().join("v.json"),
        r#"{"cdiVersion":"0.6.0","kind":"example.com/dev","devices":[{"name":"one","containerEdits":{"env":["ONE=1"]}}]}"#,
    )
    .unwrap();
    let d = Berthd::start_with(&["--cdi-spec-dir", cdi.path().to_str().unwrap()]);
    d.import_busybox("busybox");
    let info = |v: &str| d.api_at(v, "GET", "/info", None).1;
    let i = info("1.56");
    assert_eq!(i["FirewallBackend"]["Driver"], "nftables");
    assert_eq!(i["DiscoveredDevices"], json!([{"Source": "cdi", "ID": "example.com/dev=one"}]));
    for gone in ["BridgeNfIptables", "KernelMemoryTCP", "Containerd", "NRI"] {
        assert!(i.get(gone).is_none(), "{gone}");
    }
    assert!(i["RuncCommit"].get("Expected").is_none());
    let i = info("1.49");
    assert!(i.get("FirewallBackend").is_some() && i.get("DiscoveredDevices").is_none());
    assert_eq!(i["BridgeNfIptables"], false);
    let i = info("1.48");
    assert!(i.get("FirewallBackend").is_none() && i["RuncCommit"].get("Expected").is_some());
    assert!(info("1.46")["RegistryConfig"].get("AllowNondistributableArtifactsCIDRs").is_some());

    // Events: the legacy fields until 1.52; the media type by version and Accept.
    d.ok(&["run", "--rm", "busybox", "true"]);
    let now = chrono_now();
    let events = |v: &str, accept: &[&str]| d.api_raw(v, "GET", &format!("/events?since=0&until={now}"), None, accept);
    let (code, old) = events("1.51", &[]);
    assert_eq!(code, 200);
    let first: Value = serde_json::from_str(old.lines().next().unwrap()).unwrap();
    assert!(first.get("status").is_some() && first.get("id").is_some(), "{first}");
    let (_, new) = events("1.52", &[]);
    let first: Value = serde_json::from_str(new.lines().next().unwrap()).unwrap();
    assert!(
        first.get("status").is_none() && first.get("from").is_none() && first["Actor"]["ID"].is_string(),
        "{first}"
    );
    let (_, seq) = events("1.52", &["Accept: application/json-seq"]);
    assert!(seq.starts_with('\u{1e}') && seq.lines().all(|l| l.starts_with('\u{1e}')), "{seq:?}");
    let ctype = |v: &str, accept: &str| {
        let o = run_bounded(
            std::process::Command::new("curl")
                .args(["-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{content_type}", "--unix-socket"])
                .arg(&d.socket)
                .args(["-H", accept])
                .arg(format!("http://x/v{v}/events?since=0&until={now}")),
        );
        out(&o)
    };
    assert_eq!(ctype("1.51", "Accept: */*"), "application/json");
    assert_eq!(ctype("1.52", "Accept: */*"), "application/jsonl");
    assert_eq!(ctype("1.52", "Accept: application/x-ndjson"), "application/x-ndjson");
    assert_eq!(ctype("1.52", "Accept: application/jsonl"), "application/jsonl");

    // system df: legacy arrays before 1.52; the usage summaries from 1.52, the arrays only
    // without `verbose`; `type` picks kinds.
    d.ok(&["create", "--name", "c1", "busybox", "true"]);
    let df = |v: &str, q: &str| d.api_at(v, "GET", &format!("/system/df{q}"), None);
    let (_, o) = df("1.51", "");
    assert!(o["Images"].is_array() && o.get("ImageUsage").is_none(), "{o}");
    let (_, o) = df("1.52", "");
    assert!(o["Images"].is_array(), "{o}");
    assert_eq!(o["ImageUsage"]["TotalCount"], 1);
    assert_eq!(o["ImageUsage"]["ActiveCount"], 1);
    assert_eq!(o["ContainerUsage"]["TotalCount"], 1);
    assert!(o["ImageUsage"]["TotalSize"].as_i64().unwrap() > 0);
    let (_, o) = df("1.52", "?verbose=1&type=image");
    assert!(o.get("Images").is_none() && o.get("ContainerUsage").is_none(), "{o}");
    assert_eq!(o["ImageUsage"]["Items"][0]["Containers"], 1);
    let (code, o) = df("1.52", "?type=disks");
    assert_eq!((code, o["message"].as_str()), (400, Some("unknown object type: disks")));

    // Networks: EnableIPv4, and from 1.52 the IPAM statistics of inspect.
    let body = json!({"Name": "v4off", "EnableIPv4": false});
    let (code, v) = d.api_at("1.48", "POST", "/networks/create", Some(&body));
    assert_eq!(code, 400, "{v}");
    assert_eq!(d.api_at("1.47", "POST", "/networks/create", Some(&body)).0, 201, "ignored before 1.48");
    let body = json!({"Name": "stats", "IPAM": {"Config": [{"Subnet": "10.99.0.0/24", "IPRange": "10.99.0.128/25"}]}});
    assert_eq!(d.api_at("1.52", "POST", "/networks/create", Some(&body)).0, 201);
    d.ok(&["run", "-d", "--name", "s1", "--network", "stats", "busybox", "sleep", "300"]);
    let (_, n) = d.api_at("1.52", "GET", "/networks/stats", None);
    assert_eq!(n["EnableIPv4"], true);
    // network, gateway, broadcast and the one container; 128 in the range less the broadcast
    // and the container.
    assert_eq!(n["Status"]["IPAM"]["Subnets"]["10.99.0.0/24"], json!({"IPsInUse": 4, "DynamicIPsAvailable": 126}));
    assert!(d.api_at("1.51", "GET", "/networks/stats", None).1.get("Status").is_none());
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1
}
