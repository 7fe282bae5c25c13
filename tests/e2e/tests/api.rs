//! Engine API core: negotiation, headers, errors, info, events.

use berth_e2e::{err, out, Berthd, Bounded};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A raw request on the socket, without the client's version prefix.
async fn raw(d: &Berthd, method: &str, path: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (and close) before an oversized body is fully sent.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
    (status, headers, rest.as_bytes().to_vec())
}

fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn ping_and_version_negotiation() {
    let d = Berthd::start();
    rt().block_on(async {
        for m in ["GET", "HEAD"] {
            let (st, h, body) = raw(&d, m, "/_ping", b"").await;
            assert_eq!(st, 200);
            assert_eq!(header(&h, "api-version"), Some("1.56"));
            assert_eq!(header(&h, "ostype"), Some("linux"));
            assert_eq!(header(&h, "docker-experimental"), Some("false"));
            assert_eq!(header(&h, "swarm"), Some("inactive"));
            assert!(header(&h, "server").unwrap().starts_with("Docker/"));
            assert_eq!(header(&h, "cache-control"), Some("no-cache, no-store, must-revalidate"));
            if m == "GET" {
                assert!(String::from_utf8_lossy(&body).contains("OK"));
            }
        }
        for v in ["/v1.24/version", "/v1.44/version", "/v1.56/version", "/version", "/v1.41/_ping"] {
            let (st, h, _) = raw(&d, "GET", v, b"").await;
            assert_eq!(st, 200, "{v}");
            assert_eq!(header(&h, "api-version"), Some("1.56"));
        }
        let (st, _, body) = raw(&d, "GET", "/v1.57/version", b"").await;
        assert_eq!(st, 400);
        let v: Value = serde_json::from_slice(&body[body.iter().position(|b| *b == b'{').unwrap()..]).unwrap();
        assert_eq!(v["message"], "client version 1.57 is too new. Maximum supported API version is 1.56");
        let (st, _, _) = raw(&d, "GET", "/v1.12/version", b"").await;
        assert_eq!(st, 400);
        let (st, _, body) = raw(&d, "GET", "/v1.44/no/such/route", b"").await;
        assert_eq!(st, 404);
        assert!(String::from_utf8_lossy(&body).contains("\"message\""));
        let (st, _, _) = raw(&d, "GET", "/v1.44/swarm", b"").await;
        assert_eq!(st, 503);
        let (st, _, _) = raw(&d, "GET", "/v1.44/services", b"").await;
        assert_eq!(st, 503);
        let (st, _, body) = raw(&d, "GET", "/v1.44/plugins", b"").await;
        assert_eq!(st, 200);
        assert!(String::from_utf8_lossy(&body).contains("[]"));
    });
    let v = d.ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(v, "1.56");
}

#[test]
fn info_reports_real_figures() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&["create", "--name", "c1", "busybox", "true"]);
    let c = d.client();
    let info: Value = rt().block_on(c.get("/info")).unwrap();
    assert_eq!(info["Containers"], 1);
    assert_eq!(info["ContainersStopped"], 1);
    assert_eq!(info["ContainersRunning"], 0);
    assert_eq!(info["Images"], 1);
    assert_eq!(info["Driver"], "overlay2");
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(info["DockerRootDir"], d.data_root().to_str().unwrap());
    assert!(info["NCPU"].as_u64().unwrap() >= 1);
    assert!(info["MemTotal"].as_u64().unwrap() > 0);
    assert!(!info["KernelVersion"].as_str().unwrap().is_empty());
    assert!(["1", "2"].contains(&info["CgroupVersion"].as_str().unwrap()));
    assert!(info["SecurityOptions"].is_array());
    assert_eq!(d.ok(&["info", "--format", "{{.Containers}} {{.Images}} {{.Driver}}"]), "1 1 overlay2");
    // The driver's status is read from the host: the data root's filesystem as `stat -f` names it.
    let fs =
        out(&berth_e2e::run_bounded(std::process::Command::new("stat").args(["-f", "-c", "%T"]).arg(d.data_root())));
    let want = match fs.trim() {
        "ext2/ext3" => "extfs",
        "tmpfs" => "tmpfs",
        "xfs" => "xfs",
        "btrfs" => "btrfs",
        other => panic!("a test machine on {other}"),
    };
    assert_eq!(info["DriverStatus"][0], serde_json::json!(["Backing Filesystem", want]));
    let swap = std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    assert_eq!(info["SwapLimit"], swap);
    assert_eq!(info["LoggingDriver"], "json-file");
    // An API without encryption is warned about, in dockerd's words.
    let port = berth_e2e::free_port();
    let tcp = Berthd::start_with(&["-H", &format!("tcp://127.0.0.1:{port}")]);
    let w = tcp.ok(&["info", "-f", "{{json .Warnings}}"]);
    assert!(w.contains(&format!("API is accessible on http://127.0.0.1:{port} without encryption")), "{w}");
    assert!(!d.ok(&["info", "-f", "{{json .Warnings}}"]).contains("without encryption"));
}

#[test]
fn bad_input_gets_docker_errors() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    rt().block_on(async {
        let (st, _, body) = raw(&d, "POST", "/v1.44/containers/create", b"{not json").await;
        assert_eq!(st, 400);
        assert!(String::from_utf8_lossy(&body).contains("invalid JSON"));
        let (st, _, _) = raw(&d, "POST", "/v1.44/containers/create", br#"{"Image":"busybox","Cmd":42}"#).await;
        assert_eq!(st, 400);
        // Oversized bodies are refused, not buffered without bound.
        let big = vec![b' '; 5 << 20];
        let (st, _, _) = raw(&d, "POST", "/v1.44/containers/create", &big).await;
        assert_eq!(st, 400);
        let (st, _, body) = raw(&d, "GET", "/v1.44/containers/nope/json", b"").await;
        assert_eq!(st, 404);
        assert!(String::from_utf8_lossy(&body).contains("No such container: nope"));
        let (st, _, _) = raw(&d, "GET", "/v1.44/containers/json?filters=%7Bbad", b"").await;
        assert_eq!(st, 400);
        let (st, _, _) =
            raw(&d, "GET", "/v1.44/containers/json?filters=%7B%22status%22%3A%5B%22bogus%22%5D%7D", b"").await;
        assert_eq!(st, 400);
    });
    let o = d.docker(&["run", "--rm", "nosuchimage:1"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Unable to find image 'nosuchimage:1' locally"), "{}", err(&o));
    let o = d.docker(&["rm", "nope"]);
    assert!(err(&o).contains("No such container: nope"));
    let o = d.docker(&["create", "--name", "bad name", "busybox"]);
    assert!(err(&o).contains("Invalid container name"), "{}", err(&o));
    d.ok(&["create", "--name", "dup", "busybox", "true"]);
    let o = d.docker(&["create", "--name", "dup", "busybox", "true"]);
    assert!(err(&o).contains("is already in use"), "{}", err(&o));
    assert!(out(&o).is_empty());
}

#[test]
fn events_stream_lifecycle() {
    let d = Berthd::start();
    let since = chrono_now();
    d.import_busybox("busybox");
    assert_eq!(d.docker(&["run", "--name", "ev", "busybox", "sh", "-c", "exit 7"]).status.code(), Some(7));
    d.ok(&["rm", "ev"]);
    d.ok(&["rmi", "busybox"]);
    let until = chrono_now() + 1;
    let o = d.ok(&["events", "--since", &since.to_string(), "--until", &until.to_string(), "--format", "{{json .}}"]);
    let evs: Vec<Value> = o.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<String> =
        evs.iter().map(|e| format!("{}:{}", e["Type"].as_str().unwrap(), e["Action"].as_str().unwrap())).collect();
    for want in [
        "image:import",
        "container:create",
        "container:attach",
        "container:start",
        "container:die",
        "container:destroy",
        "image:untag",
        "image:delete",
    ] {
        assert!(actions.iter().any(|a| a == want), "missing {want} in {actions:?}");
    }
    let die = evs.iter().find(|e| e["Action"] == "die").unwrap();
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "7");
    assert_eq!(die["Actor"]["Attributes"]["name"], "ev");
    assert_eq!(die["status"], "die");
    assert_eq!(die["scope"], "local");
    assert!(die["timeNano"].as_i64().unwrap() > 0);
    // Filters apply to history too.
    let o = d.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "event=die",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(o.trim(), "die");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn live_events_follow() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let c = d.client();
    rt().block_on(async {
        let resp = c
            .send(
                Method::GET,
                "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D",
                berth_cli::client::empty(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let host = d.host();
        let h = tokio::task::spawn_blocking(move || {
            std::process::Command::new("docker").env("DOCKER_HOST", host).args(["create", "busybox", "true"]).bounded()
        });
        let frame =
            tokio::time::timeout(std::time::Duration::from_secs(10), body.frame()).await.unwrap().unwrap().unwrap();
        let v: Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
        assert_eq!(v["Action"], "create");
        assert!(h.await.unwrap().status.success());
    });
}

/// Go and Python clients send `null` for empty slices, maps, strings and structs: every body reads
/// a `null` member as absent, as Docker's server does (before: "invalid type: null, expected a
/// string" 400s on network create, IPAM configs and more).
#[test]
fn null_members_read_as_absent() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    rt().block_on(async {
        let create = br#"{"Image":"busybox","Cmd":["true"],"Env":null,"Labels":null,"ExposedPorts":null,"Volumes":null,
            "Entrypoint":null,"Healthcheck":null,"HostConfig":{"Binds":null,"PortBindings":null,"Dns":null,"ExtraHosts":null,
            "CapAdd":null,"SecurityOpt":null,"Tmpfs":null,"Ulimits":null,"Mounts":null,"LogConfig":{"Type":"","Config":null},
            "RestartPolicy":null,"Sysctls":null,"GroupAdd":null,"MaskedPaths":null},
            "NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":null,"Aliases":null,"DriverOpts":null}}}}"#;
        let (st, _, body) = raw(&d, "POST", "/v1.44/containers/create?name=nulls", create).await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
        let net = br#"{"Name":"n1","Driver":null,"Options":null,"Labels":null,"IPAM":{"Driver":null,"Config":null,"Options":null}}"#;
        let (st, _, body) = raw(&d, "POST", "/v1.44/networks/create", net).await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
        let (st, _, body) = raw(&d, "POST", "/v1.44/networks/create", br#"{"Name":"n2","IPAM":{"Config":[{"Subnet":"10.99.0.0/28","Gateway":null,"IPRange":null}]}}"#).await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
        let (st, _, body) =
            raw(&d, "POST", "/v1.44/networks/n1/connect", br#"{"Container":"nulls","EndpointConfig":null}"#).await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let (st, _, body) = raw(&d, "POST", "/v1.44/volumes/create", br#"{"Name":"v1","Driver":null,"DriverOpts":null,"Labels":null}"#).await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    });
    // Nulls were absent, not values: the defaults apply.
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "nulls"]), "json-file");
    assert_eq!(d.ok(&["network", "inspect", "-f", "{{.Driver}}", "n1"]), "bridge");
    d.ok(&["rm", "nulls"]);
    d.ok(&["network", "rm", "n1", "n2"]);
}

/// `docker search` gets a clear 501 in Docker's format (it got "page not found").
#[test]
fn image_search_is_a_clear_501() {
    let d = Berthd::start();
    let o = d.docker(&["search", "busybox"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("image search is not supported by berthd"), "{}", err(&o));
    rt().block_on(async {
        let (st, _, _) = raw(&d, "GET", "/v1.44/images/search?term=busybox", b"").await;
        assert_eq!(st, 501);
    });
}

/// `POST /containers/create?platform=`: an image of another platform is Docker's 404 (the CLI
/// then pulls the platform asked for); the image's own platform, or none asked, creates.
#[test]
fn create_checks_the_platform_asked_for() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let arch = d.ok(&["image", "inspect", "-f", "{{.Architecture}}", "busybox"]);
    let other = if arch == "amd64" { "arm64" } else { "amd64" };
    rt().block_on(async {
        let body = br#"{"Image":"busybox","Cmd":["true"]}"#;
        let (st, _, b) = raw(&d, "POST", &format!("/containers/create?platform=linux/{other}/v8"), body).await;
        assert_eq!(st, 404, "{}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v["message"],
            format!("image with reference busybox was found but its platform (linux/{arch}) does not match the specified platform (linux/{other}/v8)")
        );
        let (st, _, b) = raw(&d, "POST", "/containers/create?platform=windows", body).await;
        assert_eq!(st, 404, "{}", String::from_utf8_lossy(&b));
        let (st, _, b) = raw(&d, "POST", "/containers/create?platform=linux/x", body).await;
        assert_eq!(st, 404, "{}", String::from_utf8_lossy(&b));
        for ok in [format!("linux/{arch}"), "linux".into(), String::new()] {
            let (st, _, b) = raw(&d, "POST", &format!("/containers/create?platform={ok}"), body).await;
            assert_eq!(st, 201, "{ok}: {}", String::from_utf8_lossy(&b));
        }
    });
    // Through the CLI as well.
    d.ok(&["create", "--platform", &format!("linux/{arch}"), "busybox", "true"]);
}
