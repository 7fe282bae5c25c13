//! berth-registry against independent clients: the docker CLI through berthd, skopeo, and raw HTTP
//! for access control, gc, quotas, the cache and the storage drivers (the spec's own rows and corners
//! are in `registry_spec.rs`).

use std::process::Command;

use berth_e2e::registry::{
    code, digest_of, header, htpasswd, http, image_manifest, path_of, put_manifest, seed, upload, BerthRegistry,
};
use berth_e2e::{err, Berthd, Bounded};

#[test]
fn docker_and_skopeo_round_trip() {
    let reg = BerthRegistry::start(&[], &[]);
    let d = Berthd::start();
    d.import_busybox("bb");
    let r = format!("{}/team/bb:1", reg.addr);
    d.ok(&["tag", "bb", &r]);
    let push = d.ok(&["push", &r]);
    assert!(push.contains("1: digest: sha256:"), "{push}");
    assert!(d.ok(&["push", &r]).contains("Layer already exists"));
    // skopeo copies it out to an OCI layout and back in under another name, as OCI manifests.
    let tmp = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", tmp.path().join("layout").display());
    for (from, to) in [(format!("docker://{r}"), layout.clone()), (layout, format!("docker://{}/copy/bb:2", reg.addr))]
    {
        let o = Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false", &from, &to])
            .bounded();
        assert!(o.status.success(), "skopeo copy {from} {to}: {}\n{}", err(&o), reg.log());
    }
    let copy = format!("{}/copy/bb:2", reg.addr);
    d.ok(&["rmi", "bb", &r]);
    assert!(d.ok(&["pull", &copy]).contains("Downloaded newer image"));
    assert_eq!(d.ok(&["run", "--rm", &copy, "echo", "round-trip"]), "round-trip");
    let cat = http(&reg.addr, "GET", "/v2/_catalog", &[], b"").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&cat.2).unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["copy/bb", "team/bb"]));
    let page = http(&reg.addr, "GET", "/v2/_catalog?n=1", &[], b"").unwrap();
    assert!(header(&page.1, "link").unwrap().contains("last=copy/bb"));
    let metrics = String::from_utf8(http(&reg.addr, "GET", "/metrics", &[], b"").unwrap().2).unwrap();
    assert!(metrics.contains("berth_registry_requests_total{method=\"PATCH\",status=\"202\"}"), "{metrics}");
    assert!(reg.log().contains("status=201"), "no access log line");
}

#[test]
fn replicas_finish_each_others_uploads() {
    let one = BerthRegistry::start(&[], &[]);
    let two = one.replica();
    let r = http(&one.addr, "POST", "/v2/rep/x/blobs/uploads/", &[], b"").unwrap();
    let loc = path_of(header(&r.1, "location").unwrap());
    assert_eq!(http(&two.addr, "PATCH", &loc, &[], b"first half, ").unwrap().0, 202);
    assert_eq!(http(&one.addr, "PATCH", &loc, &[], b"second half").unwrap().0, 202);
    let d = digest_of(b"first half, second half");
    let sep = if loc.contains('?') { '&' } else { '?' };
    assert_eq!(http(&two.addr, "PUT", &format!("{loc}{sep}digest={d}"), &[], b"").unwrap().0, 201);
    assert_eq!(
        http(&one.addr, "GET", &format!("/v2/rep/x/blobs/{d}"), &[], b"").unwrap().2,
        b"first half, second half"
    );
    // A docker push through one replica is pulled through the other.
    let dm = Berthd::start();
    seed(&dm, &one.addr, "rep/bb");
    let r2 = format!("{}/rep/bb:1", two.addr);
    dm.ok(&["pull", &r2]);
    assert_eq!(dm.ok(&["run", "--rm", &r2, "echo", "replica"]), "replica");
}

#[test]
fn htpasswd_and_token_auth() {
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path(), "bob", "hunter2");
    let h = file.to_str().unwrap();
    for mode in ["htpasswd", "token"] {
        let reg = BerthRegistry::start(
            &["--auth", mode, "--htpasswd", h],
            &[("BERTH_REGISTRY_AUTH_SECRET", "a-secret-of-at-least-32-bytes-long!")],
        );
        let d = Berthd::start();
        d.import_busybox("bb");
        let r = format!("{}/auth/bb:1", reg.addr);
        d.ok(&["tag", "bb", &r]);
        let anon = d.docker(&["push", &r]);
        assert!(!anon.status.success(), "{mode}: anonymous push accepted");
        let bad = d.docker_stdin(&["login", &reg.addr, "-u", "bob", "--password-stdin"], Some(b"wrong"));
        assert!(!bad.status.success(), "{mode}: wrong password accepted");
        let good = d.docker_stdin(&["login", &reg.addr, "-u", "bob", "--password-stdin"], Some(b"hunter2"));
        assert!(good.status.success(), "{mode}: {}", err(&good));
        assert!(d.ok(&["push", &r]).contains("1: digest:"), "{mode}");
        d.ok(&["rmi", "bb", &r]);
        assert!(d.ok(&["pull", &r]).contains("Downloaded newer image"), "{mode}");
        let v2 = http(&reg.addr, "GET", "/v2/", &[], b"").unwrap();
        let challenge = header(&v2.1, "www-authenticate").unwrap_or("");
        let want = if mode == "token" { "Bearer realm=" } else { "Basic realm=" };
        assert!(v2.0 == 401 && challenge.starts_with(want), "{mode}: {challenge}");
    }
}

/// Online gc removes what nothing references (blobs and abandoned uploads) while pushes keep
/// going, and every pushed image stays whole.
#[test]
fn gc_under_concurrent_pushes() {
    let env = [
        ("BERTH_REGISTRY_GC_INTERVAL_SECS", "1"),
        ("BERTH_REGISTRY_GC_GRACE_SECS", "2"),
        ("BERTH_REGISTRY_GC_UPLOAD_GRACE_SECS", "2"),
    ];
    let reg = BerthRegistry::start(&[], &env);
    let a = reg.addr.clone();
    let junk = upload(&a, "gc/junk", b"nobody references me");
    let r = http(&a, "POST", "/v2/gc/junk/blobs/uploads/", &[], b"").unwrap();
    let abandoned = path_of(header(&r.1, "location").unwrap());
    let d = Berthd::start();
    d.import_busybox("bb");
    // Rounds, not a time budget: gc runs every second meanwhile, whatever this machine's speed.
    let mut pushed = Vec::new();
    for i in 0..4 {
        // Each round: a new layer on the shared base, pushed while gc runs every second.
        let name = format!("c{i}");
        d.ok(&["run", "--name", &name, "bb", "sh", "-c", &format!("echo {i} > /round")]);
        let tag = format!("{a}/gc/app:{i}");
        d.ok(&["commit", &name, &tag]);
        d.ok(&["rm", &name]);
        d.ok(&["push", &tag]);
        pushed.push(tag);
    }
    berth_e2e::eventually("gc to collect the abandoned upload", || {
        code(&http(&a, "GET", &abandoned, &[], b"").unwrap()) == "BLOB_UPLOAD_UNKNOWN"
    });
    // A HEAD counts as a use (it restarts the blob's grace period), so the junk blob is probed
    // less often than grace + interval, until gc takes it or a generous deadline passes.
    let junk_gone = (0..15).any(|_| {
        std::thread::sleep(std::time::Duration::from_secs(4));
        http(&a, "HEAD", &format!("/v2/gc/junk/blobs/{junk}"), &[], b"").unwrap().0 == 404
    });
    assert!(junk_gone, "junk survived gc");
    for t in &pushed {
        d.ok(&["rmi", t]);
    }
    for (i, t) in pushed.iter().enumerate() {
        d.ok(&["pull", t]);
        assert_eq!(d.ok(&["run", "--rm", t, "cat", "/round"]), i.to_string());
    }
}

/// Two registry processes over one S3 bucket (moto): a chunked upload alternates between them, a
/// docker push through one is pulled through the other, skopeo reads it back.
#[test]
fn s3_replicas_serve_one_client() {
    let moto = berth_e2e::registry::Moto::start();
    let env = moto.registry_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let one = BerthRegistry::start(&[], &env);
    let two = one.replica();
    let r = http(&one.addr, "POST", "/v2/s3/x/blobs/uploads/", &[], b"").unwrap();
    let loc = path_of(header(&r.1, "location").unwrap());
    assert_eq!(http(&two.addr, "PATCH", &loc, &[("Content-Range", "0-4")], b"alpha").unwrap().0, 202);
    assert_eq!(http(&one.addr, "PATCH", &loc, &[("Content-Range", "5-8")], b"beta").unwrap().0, 202);
    let d = digest_of(b"alphabeta");
    let sep = if loc.contains('?') { '&' } else { '?' };
    assert_eq!(http(&two.addr, "PUT", &format!("{loc}{sep}digest={d}"), &[], b"").unwrap().0, 201);
    let wrong =
        http(&one.addr, "POST", &format!("/v2/s3/x/blobs/uploads/?digest={}", digest_of(b"x")), &[], b"y").unwrap();
    assert_eq!(code(&wrong), "DIGEST_INVALID");
    let dm = Berthd::start();
    seed(&dm, &one.addr, "s3/bb");
    let r2 = format!("{}/s3/bb:1", two.addr);
    dm.ok(&["pull", &r2]);
    assert_eq!(dm.ok(&["run", "--rm", &r2, "echo", "s3"]), "s3");
    let o = Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{r2}")]).bounded();
    assert!(o.status.success(), "{}", err(&o));
}

/// HTTPS only: curl sees TLS, and berthd (127.0.0.0/8 is insecure: unverified TLS first) pushes and pulls.
#[test]
fn tls_registry() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ])
        .bounded();
    assert!(o.status.success(), "{}", err(&o));
    let reg = BerthRegistry::start(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()], &[]);
    let curl = Command::new("curl")
        .args(["-sf", "--cacert", cert.to_str().unwrap(), &format!("https://{}/v2/", reg.addr)])
        .bounded();
    assert!(curl.status.success(), "https /v2/ failed");
    assert!(http(&reg.addr, "GET", "/v2/", &[], b"").map(|r| r.0 != 200).unwrap_or(true), "plain HTTP answered");
    // Out of descriptors under a flood of idle connections (EMFILE on accept): the registry waits
    // and serves again once they go. (The TLS accept loop used to end the process on the first
    // accept error.)
    let o = Command::new("prlimit").args(["--pid", &reg.pid().to_string(), "--nofile=64:64"]).bounded();
    assert!(o.status.success(), "{}", err(&o));
    let idle: Vec<_> = (0..100).filter_map(|_| std::net::TcpStream::connect(&reg.addr).ok()).collect();
    drop(idle);
    berth_e2e::eventually("the registry to serve again after the flood", || {
        Command::new("curl")
            .args(["-sf", "--max-time", "5", "--cacert", cert.to_str().unwrap(), &format!("https://{}/v2/", reg.addr)])
            .bounded()
            .status
            .success()
    });
    let d = Berthd::start();
    let r = seed(&d, &reg.addr, "tls/bb");
    d.ok(&["rmi", "bb-seed", &r]);
    d.ok(&["pull", &r]);
    assert_eq!(d.ok(&["run", "--rm", &r, "echo", "tls"]), "tls");
}

/// skopeo and oci-client round-trip an image through berth-registry on both storage drivers with
/// each auth mode: skopeo copies an OCI layout in and back out (digests compared), oci-client pushes
/// and pulls a layer; anonymous access is refused where auth is on.
#[test]
fn every_driver_and_auth_mode_round_trips() {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;
    let dir = tempfile::tempdir().unwrap();
    let h = htpasswd(dir.path(), "ann", "pw-ann").to_str().unwrap().to_string();
    // A source OCI layout: busybox pushed by berthd to a scratch registry, copied out by skopeo.
    let scratch = BerthRegistry::start(&[], &[]);
    let d = Berthd::start();
    let src = seed(&d, &scratch.addr, "src/bb");
    let layout = format!("oci:{}:src", dir.path().join("layout").display());
    let skopeo = |args: &[&str]| {
        let o = Command::new("skopeo").args(args).bounded();
        assert!(o.status.success(), "skopeo {args:?}: {}", err(&o));
        o
    };
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{src}"), &layout]);
    let digest_of = |o: std::process::Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["Layers"].clone()
    };
    let want = digest_of(skopeo(&["inspect", &layout]));
    let moto = berth_e2e::registry::Moto::start();
    let s3 = moto.registry_env();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for driver in ["filesystem", "s3"] {
        for mode in ["none", "htpasswd", "token"] {
            let mut env: Vec<(&str, &str)> =
                vec![("BERTH_REGISTRY_AUTH_SECRET", "a-secret-of-at-least-32-bytes-long!")];
            if driver == "s3" {
                env.extend(s3.iter().map(|(k, v)| (*k, v.as_str())));
            }
            let args: Vec<&str> = if mode == "none" { vec![] } else { vec!["--auth", mode, "--htpasswd", &h] };
            let reg = BerthRegistry::start(&args, &env);
            let what = format!("{driver}/{mode}");
            let repo = format!("{}/rt/{driver}-{mode}", reg.addr);
            let mut creds = vec!["--dest-tls-verify=false"];
            if mode != "none" {
                creds.extend(["--dest-creds", "ann:pw-ann"]);
                let o = Command::new("skopeo")
                    .args(["copy", "--dest-tls-verify=false", &layout, &format!("docker://{repo}:anon")])
                    .bounded();
                assert!(!o.status.success(), "{what}: anonymous push accepted");
            }
            let mut push = vec!["copy"];
            push.extend(&creds);
            let dest = format!("docker://{repo}:1");
            push.extend([layout.as_str(), dest.as_str()]);
            skopeo(&push);
            let back = format!("oci:{}:{driver}-{mode}", dir.path().join("back").display());
            let mut pull = vec!["copy", "--src-tls-verify=false"];
            if mode != "none" {
                pull.extend(["--src-creds", "ann:pw-ann"]);
            }
            pull.extend([dest.as_str(), back.as_str()]);
            skopeo(&pull);
            assert_eq!(digest_of(skopeo(&["inspect", &back])), want, "{what}: layers changed on the way");

            let auth = if mode == "none" {
                RegistryAuth::Anonymous
            } else {
                RegistryAuth::Basic("ann".into(), "pw-ann".into())
            };
            let reference: oci_client::Reference = format!("{repo}:oci").parse().unwrap();
            let client =
                || oci_client::Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
            let layer = ImageLayer::new(vec![3u8; 200_000], "application/vnd.oci.image.layer.v1.tar+gzip".into(), None);
            let config = Config::new(
                br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
                "application/vnd.oci.image.config.v1+json".into(),
                None,
            );
            rt.block_on(client().push(&reference, &[layer], config, &auth, None))
                .unwrap_or_else(|e| panic!("{what} push: {e}"));
            let img = rt
                .block_on(client().pull(&reference, &auth, vec!["application/vnd.oci.image.layer.v1.tar+gzip"]))
                .unwrap_or_else(|e| panic!("{what} pull: {e}"));
            assert_eq!(img.layers[0].data.len(), 200_000, "{what}");
            if mode != "none" {
                let anon = client();
                let r = rt.block_on(anon.pull(
                    &reference,
                    &RegistryAuth::Anonymous,
                    vec!["application/vnd.oci.image.layer.v1.tar+gzip"],
                ));
                assert!(r.is_err(), "{what}: anonymous pull allowed");
            }
        }
    }
}

/// Teams: with a policy, a user of team A cannot read, write, delete or mount anything of team
/// B, in either auth mode; the catalog shows each only its own; anonymous callers get what the
/// policy gives anonymous; a policy change applies without a restart; every write and refusal
/// is an audit line.
#[test]
fn team_policy_in_both_auth_modes() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    let line = |u: &str, p: &str| format!("{u}:{}\n", bcrypt::hash(p, 5).unwrap());
    std::fs::write(&pw, line("alice", "alice-pw") + &line("bob", "bob-pw")).unwrap();
    let policy = dir.path().join("policy.toml");
    let rules = |extra: &str| {
        format!(
            "[groups]\nteam-a = [\"alice\"]\nteam-b = [\"bob\"]\n\
             [[rules]]\nrepositories = [\"team-a/*\", \"public/*\"]\nprincipals = [\"group:team-a\"]\nactions = [\"pull\", \"push\", \"delete\"]\n\
             [[rules]]\nrepositories = [\"team-b/*\"]\nprincipals = [\"group:team-b\"{extra}]\nactions = [\"pull\", \"push\", \"delete\"]\n\
             [[rules]]\nrepositories = [\"public/*\"]\nprincipals = [\"anonymous\", \"authenticated\"]\nactions = [\"pull\"]\n"
        )
    };
    std::fs::write(&policy, rules("")).unwrap();
    let basic =
        |u: &str, p: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
    for mode in ["htpasswd", "token"] {
        let reg = BerthRegistry::start(
            &["--auth", mode, "--htpasswd", pw.to_str().unwrap(), "--policy", policy.to_str().unwrap()],
            &[("BERTH_REGISTRY_AUTH_SECRET", "a-secret-of-at-least-32-bytes-long!")],
        );
        // A bearer (token mode, for these scopes) or basic authorization for raw requests.
        let authz = |u: &str, p: &str, scopes: &[&str]| -> String {
            if mode == "htpasswd" {
                return basic(u, p);
            }
            let q: Vec<String> = scopes.iter().map(|s| format!("scope={s}")).collect();
            let r = http(
                &reg.addr,
                "GET",
                &format!("/token?service=berth-registry&{}", q.join("&")),
                &[("Authorization", &basic(u, p))],
                b"",
            )
            .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&r.2).unwrap();
            format!("Bearer {}", v["token"].as_str().unwrap())
        };
        let (da, db, anon) = (Berthd::start(), Berthd::start(), Berthd::start());
        for (d, u, p) in [(&da, "alice", "alice-pw"), (&db, "bob", "bob-pw")] {
            d.import_busybox("bb");
            let o = d.docker_stdin(&["login", &reg.addr, "-u", u, "--password-stdin"], Some(p.as_bytes()));
            assert!(o.status.success(), "{mode} {u}: {}", err(&o));
        }
        let (a_img, b_img, pub_img) = (
            format!("{}/team-a/app:1", reg.addr),
            format!("{}/team-b/app:1", reg.addr),
            format!("{}/public/tool:1", reg.addr),
        );
        for (d, r) in [(&da, &a_img), (&db, &b_img), (&da, &pub_img)] {
            d.ok(&["tag", "bb", r]);
            d.ok(&["push", r]);
        }
        // Team B: no pull, push or delete in team A.
        let o = db.docker(&["pull", &a_img]);
        assert!(!o.status.success(), "{mode}: bob pulled team A's image");
        db.ok(&["tag", "bb", &format!("{}/team-a/intruder:1", reg.addr)]);
        let o = db.docker(&["push", &format!("{}/team-a/intruder:1", reg.addr)]);
        assert!(!o.status.success(), "{mode}: bob pushed into team A");
        let m = http(
            &reg.addr,
            "HEAD",
            "/v2/team-a/app/manifests/1",
            &[
                ("Authorization", &authz("alice", "alice-pw", &["repository:team-a/app:pull"])),
                ("Accept", "application/vnd.docker.distribution.manifest.v2+json"),
            ],
            b"",
        )
        .unwrap();
        let digest = header(&m.1, "docker-content-digest").unwrap().to_string();
        let del = http(
            &reg.addr,
            "DELETE",
            &format!("/v2/team-a/app/manifests/{digest}"),
            &[("Authorization", &authz("bob", "bob-pw", &["repository:team-a/app:delete"]))],
            b"",
        )
        .unwrap();
        assert!(del.0 == 401 || del.0 == 403, "{mode}: bob's delete: {}", del.0);
        // A cross-repository mount out of team A is an ordinary upload for bob (202), not a copy.
        let manifest = http(
            &reg.addr,
            "GET",
            "/v2/team-a/app/manifests/1",
            &[
                ("Authorization", &authz("alice", "alice-pw", &["repository:team-a/app:pull"])),
                ("Accept", "application/vnd.docker.distribution.manifest.v2+json"),
            ],
            b"",
        )
        .unwrap();
        let layer = serde_json::from_slice::<serde_json::Value>(&manifest.2).unwrap()["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let mount = format!("/v2/team-b/stolen/blobs/uploads/?mount={layer}&from=team-a/app");
        let bob_mount = authz("bob", "bob-pw", &["repository:team-b/stolen:pull,push", "repository:team-a/app:pull"]);
        let r = http(&reg.addr, "POST", &mount, &[("Authorization", &bob_mount)], b"").unwrap();
        assert_eq!(r.0, 202, "{mode}: bob mounted team A's layer");
        let alice_mount =
            authz("alice", "alice-pw", &["repository:team-a/copy:pull,push", "repository:team-a/app:pull"]);
        let r = http(
            &reg.addr,
            "POST",
            &mount.replace("team-b/stolen", "team-a/copy"),
            &[("Authorization", &alice_mount)],
            b"",
        )
        .unwrap();
        assert_eq!(r.0, 201, "{mode}: alice mounts within her team");
        // The catalog shows each caller what it may pull.
        let cat = |u: &str, p: &str| {
            let r = http(
                &reg.addr,
                "GET",
                "/v2/_catalog",
                &[("Authorization", &authz(u, p, &["registry:catalog:*"]))],
                b"",
            )
            .unwrap();
            assert_eq!(r.0, 200, "{mode}: {}", String::from_utf8_lossy(&r.2));
            serde_json::from_slice::<serde_json::Value>(&r.2).unwrap()["repositories"].clone()
        };
        assert_eq!(cat("bob", "bob-pw"), serde_json::json!(["public/tool", "team-b/app"]), "{mode}");
        assert_eq!(cat("alice", "alice-pw"), serde_json::json!(["public/tool", "team-a/app", "team-a/copy"]), "{mode}");
        // Anonymous: public pulls only.
        anon.ok(&["pull", &pub_img]);
        assert!(!anon.docker(&["pull", &b_img]).status.success(), "{mode}: anonymous pulled team B's image");
        // A tag that cannot exist is a 404, as the spec says.
        let r = http(
            &reg.addr,
            "GET",
            "/v2/public/tool/manifests/.bad",
            &[("Authorization", &authz("alice", "alice-pw", &["repository:public/tool:pull"]))],
            b"",
        )
        .unwrap();
        assert_eq!(r.0, 404, "{mode}: {}", String::from_utf8_lossy(&r.2));
        // A policy change applies without a restart: now bob may read team B... and alice too.
        std::fs::write(&policy, rules(", \"user:alice\"")).unwrap();
        let reloaded = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            da.docker(&["pull", &b_img]).status.success()
        });
        assert!(reloaded, "{mode}: the policy did not reload:\n{}", reg.log());
        std::fs::write(&policy, rules("")).unwrap();
        berth_e2e::eventually("the policy reloads back", || !da.docker(&["pull", &b_img]).status.success());
        let log = reg.log();
        assert!(
            log.contains(r#""action":"push""#)
                && log.contains(r#""user":"alice""#)
                && log.contains(r#""repository":"team-a/app""#),
            "{mode}: no audit line:\n{log}"
        );
        assert!(log.contains(r#""allowed":false"#), "{mode}: refusals are audited too");
        let metrics = String::from_utf8_lossy(&http(&reg.addr, "GET", "/metrics", &[], b"").unwrap().2).to_string();
        assert!(metrics.contains("berth_registry_auth_failures_total{kind="), "{mode}: {metrics}");
        assert!(metrics.contains("berth_registry_storage_seconds_count{op=\"put\"}"), "{mode}: {metrics}");
    }
    // A short token secret is refused at start.
    let o = berth_e2e::run_bounded(
        std::process::Command::new(berth_e2e::bin_dir().join("berth-registry"))
            .args(["--listen", "127.0.0.1:1", "--root", dir.path().join("r").to_str().unwrap(), "--auth", "token"])
            .env("BERTH_REGISTRY_AUTH_SECRET", "short"),
    );
    assert!(!o.status.success() && err(&o).contains("at least 32 bytes"), "{}", err(&o));
}

/// `berth-registry gc [--dry-run]`: offline mark and sweep that reports what it frees (or would).
#[test]
fn offline_gc_reports_and_frees() {
    let reg = BerthRegistry::start(&[], &[]);
    let d = Berthd::start();
    let r = seed(&d, &reg.addr, "gc/app");
    let m = http(
        &reg.addr,
        "HEAD",
        "/v2/gc/app/manifests/1",
        &[("Accept", "application/vnd.docker.distribution.manifest.v2+json")],
        b"",
    )
    .unwrap();
    let digest = header(&m.1, "docker-content-digest").unwrap().to_string();
    assert_eq!(http(&reg.addr, "DELETE", &format!("/v2/gc/app/manifests/{digest}"), &[], b"").unwrap().0, 202);
    let gc = |extra: &[&str]| {
        let mut c = Command::new(berth_e2e::bin_dir().join("berth-registry"));
        c.args(["--root", reg.root.join("data").to_str().unwrap(), "gc", "--grace-secs", "0"]).args(extra);
        let o = c.bounded();
        assert!(o.status.success(), "{}", err(&o));
        berth_e2e::out(&o).trim().to_string()
    };
    let dry = gc(&["--dry-run"]);
    assert!(dry.starts_with("would free 3 blobs"), "manifest, config and layer: {dry}");
    assert!(gc(&["--dry-run"]).starts_with("would free 3 blobs"), "a dry run deletes nothing");
    assert!(gc(&[]).starts_with("freed 3 blobs"));
    assert!(gc(&["--dry-run"]).starts_with("would free 0 blobs"));
    let _ = r;
}

/// Quotas (`[[quotas]]` in the policy file): a repository may hold so many bytes of blobs; a
/// push past it is a 403 DENIED that says so, and other repositories are not limited.
#[test]
fn repository_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[[quotas]]\nrepositories = [\"small/*\"]\nbytes = 4096\n").unwrap();
    let reg = BerthRegistry::start(&["--policy", policy.to_str().unwrap()], &[]);
    let d = Berthd::start();
    d.import_busybox("bb");
    let big = format!("{}/small/app:1", reg.addr);
    d.ok(&["tag", "bb", &big]);
    let o = d.docker(&["push", &big]);
    assert!(!o.status.success(), "a 1 MB layer went into a 4 KB quota");
    // A blob that fits is accepted; the next one past the quota is refused with the reason.
    let small = b"x".repeat(3000);
    let dg = digest_of(&small);
    let r = http(
        &reg.addr,
        "POST",
        &format!("/v2/small/raw/blobs/uploads/?digest={dg}"),
        &[("Content-Type", "application/octet-stream")],
        &small,
    )
    .unwrap();
    assert_eq!(r.0, 201, "{}", String::from_utf8_lossy(&r.2));
    let more = b"y".repeat(3000);
    let dg2 = digest_of(&more);
    let r = http(
        &reg.addr,
        "POST",
        &format!("/v2/small/raw/blobs/uploads/?digest={dg2}"),
        &[("Content-Type", "application/octet-stream")],
        &more,
    )
    .unwrap();
    assert_eq!(r.0, 403);
    let body = String::from_utf8_lossy(&r.2);
    assert!(body.contains("DENIED") && body.contains("repository quota exceeded"), "{body}");
    // Elsewhere, no limit.
    d.ok(&["tag", "bb", &format!("{}/large/app:1", reg.addr)]);
    d.ok(&["push", &format!("{}/large/app:1", reg.addr)]);
}

/// `Accept` is honoured on manifest reads: an index only for clients that take indexes (others
/// get its linux/amd64 manifest, as distribution serves older clients), a manifest of a type the
/// client does not take is not there for it (404 MANIFEST_UNKNOWN).
#[test]
fn manifest_reads_honour_accept() {
    let reg = BerthRegistry::start(&[], &[]);
    let a = reg.addr.as_str();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (cd, ld) = (upload(a, "acc/app", config), upload(a, "acc/app", b"layer"));
    let m = image_manifest(&cd, config.len(), &ld, 5);
    let mbytes = serde_json::to_vec(&m).unwrap();
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let mt = m["mediaType"].as_str().unwrap_or(oci).to_string();
    assert_eq!(put_manifest(a, "acc/app", "single", &mt, &mbytes).0, 201);
    let md = digest_of(&mbytes);
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": mt, "digest": md, "size": mbytes.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}]
    });
    let ibytes = serde_json::to_vec(&index).unwrap();
    assert_eq!(put_manifest(a, "acc/app", "multi", "application/vnd.oci.image.index.v1+json", &ibytes).0, 201);
    let get = |reference: &str, accept: &str| {
        let r = http(a, "GET", &format!("/v2/acc/app/manifests/{reference}"), &[("Accept", accept)], b"").unwrap();
        (
            r.0,
            header(&r.1, "docker-content-digest").unwrap_or("").to_string(),
            String::from_utf8_lossy(&r.2).to_string(),
        )
    };
    let all = format!("application/vnd.oci.image.index.v1+json, {oci}, {docker}");
    assert_eq!(get("multi", &all).1, digest_of(&ibytes), "a client that takes indexes gets the index");
    assert_eq!(get("multi", "*/*").1, digest_of(&ibytes));
    let (st, dg, _) = get("multi", &format!("{mt}, application/vnd.docker.distribution.manifest.v1+prettyjws"));
    assert_eq!((st, dg), (200, md.clone()), "an older client gets the linux/amd64 manifest");
    let other = if mt == oci { docker } else { oci };
    let (st, _, body) = get("single", other);
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("MANIFEST_UNKNOWN"), "{body}");
}

/// Pull-through cache (`--proxy-remote`): the first pull fetches from the remote (answering its
/// auth with the configured credentials) and stores what it got; later pulls are served from the
/// cache even with the remote gone; pushes to the cache are refused.
#[test]
fn pull_through_cache() {
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path(), "bob", "hunter2");
    let secret = "a-secret-of-at-least-32-bytes-long!";
    let remote = BerthRegistry::start(
        &["--auth", "token", "--htpasswd", file.to_str().unwrap()],
        &[("BERTH_REGISTRY_AUTH_SECRET", secret)],
    );
    let d = Berthd::start();
    d.import_busybox("bb");
    let o = d.docker_stdin(&["login", &remote.addr, "-u", "bob", "--password-stdin"], Some(b"hunter2"));
    assert!(o.status.success(), "{}", err(&o));
    d.ok(&["tag", "bb", &format!("{}/team/app:1", remote.addr)]);
    d.ok(&["push", &format!("{}/team/app:1", remote.addr)]);
    let cache = BerthRegistry::start(
        &["--proxy-remote", &format!("http://{}", remote.addr), "--proxy-username", "bob"],
        &[("BERTH_REGISTRY_PROXY_PASSWORD", "hunter2")],
    );
    let via = format!("{}/team/app:1", cache.addr);
    let client = Berthd::start();
    assert!(client.ok(&["pull", &via]).contains("Downloaded newer image"));
    assert_eq!(client.ok(&["run", "--rm", &via, "echo", "through the cache"]), "through the cache");
    // The remote goes away: what was pulled is still there.
    drop(remote);
    client.ok(&["rmi", &via]);
    assert!(client.ok(&["pull", &via]).contains("Downloaded newer image"), "served from the cache");
    // A cache is read-only.
    client.ok(&["tag", &via, &format!("{}/team/other:1", cache.addr)]);
    let o = client.docker(&["push", &format!("{}/team/other:1", cache.addr)]);
    assert!(!o.status.success(), "a push into the cache was accepted");
    // What the remote never had is not there.
    let r = http(&cache.addr, "GET", "/v2/team/nothing/manifests/1", &[], b"").unwrap();
    assert_eq!(r.0, 404, "{}", String::from_utf8_lossy(&r.2));
}

/// Token mode with an ES256 (or RS256) key pair: docker login, push and pull work, tokens carry
/// the key id, and the public key is published at /.well-known/jwks.json for other services.
#[test]
fn asymmetric_tokens_and_jwks() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    for args in [
        vec!["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &p("k.pem")],
        vec!["pkey", "-in", &p("k.pem"), "-pubout", "-out", &p("pub.pem")],
    ] {
        assert!(Command::new("openssl").args(&args).bounded().status.success());
    }
    let file = htpasswd(dir.path(), "bob", "hunter2");
    let reg = BerthRegistry::start(
        &["--auth", "token", "--htpasswd", file.to_str().unwrap()],
        &[
            ("BERTH_REGISTRY_AUTH_TOKEN_ALGORITHM", "ES256"),
            ("BERTH_REGISTRY_AUTH_TOKEN_PRIVATE_KEY", &p("k.pem")),
            ("BERTH_REGISTRY_AUTH_TOKEN_PUBLIC_KEY", &p("pub.pem")),
        ],
    );
    let d = Berthd::start();
    d.import_busybox("bb");
    let o = d.docker_stdin(&["login", &reg.addr, "-u", "bob", "--password-stdin"], Some(b"hunter2"));
    assert!(o.status.success(), "{}", err(&o));
    let r = format!("{}/es/app:1", reg.addr);
    d.ok(&["tag", "bb", &r]);
    d.ok(&["push", &r]);
    d.ok(&["rmi", &r]);
    d.ok(&["pull", &r]);
    let jwks: serde_json::Value =
        serde_json::from_slice(&http(&reg.addr, "GET", "/.well-known/jwks.json", &[], b"").unwrap().2).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("bob:hunter2"));
    let t = http(
        &reg.addr,
        "GET",
        "/token?service=berth-registry&scope=repository:es/app:pull",
        &[("Authorization", &basic)],
        b"",
    )
    .unwrap();
    let token = serde_json::from_slice::<serde_json::Value>(&t.2).unwrap()["token"].as_str().unwrap().to_string();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("ES256"), key["kid"].as_str()));
}

/// The team rules, quotas and the pull-through cache on the S3 driver (moto), checked with skopeo
/// as an independent OCI client: allowed, denied, anonymous, a quota past its limit, a cache.
#[test]
fn policy_quota_and_cache_on_s3_with_skopeo() {
    let moto = berth_e2e::registry::Moto::start();
    let s3 = moto.registry_env();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    let line = |u: &str, p: &str| format!("{u}:{}\n", bcrypt::hash(p, 5).unwrap());
    std::fs::write(&pw, line("alice", "alice-pw") + &line("bob", "bob-pw")).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[groups]\nteam-a = [\"alice\"]\n\
         [[rules]]\nrepositories = [\"team-a/*\"]\nprincipals = [\"group:team-a\"]\nactions = [\"pull\", \"push\", \"delete\"]\n\
         [[rules]]\nrepositories = [\"team-a/public\"]\nprincipals = [\"anonymous\", \"authenticated\"]\nactions = [\"pull\"]\n\
         [[quotas]]\nrepositories = [\"team-a/tiny\"]\nbytes = 1024\n",
    )
    .unwrap();
    let mut env: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("BERTH_REGISTRY_AUTH_SECRET", "a-secret-of-at-least-32-bytes-long!"));
    let reg = BerthRegistry::start(
        &["--auth", "token", "--htpasswd", pw.to_str().unwrap(), "--policy", policy.to_str().unwrap()],
        &env,
    );
    let d = Berthd::start();
    d.import_busybox("bb");
    let o = d.docker_stdin(&["login", &reg.addr, "-u", "alice", "--password-stdin"], Some(b"alice-pw"));
    assert!(o.status.success(), "{}", err(&o));
    for repo in ["team-a/app", "team-a/public"] {
        d.ok(&["tag", "bb", &format!("{}/{repo}:1", reg.addr)]);
        d.ok(&["push", &format!("{}/{repo}:1", reg.addr)]);
    }
    let tiny = format!("{}/team-a/tiny:1", reg.addr);
    d.ok(&["tag", "bb", &tiny]);
    assert!(!d.docker(&["push", &tiny]).status.success(), "past the quota");
    let skopeo = |creds: Option<&str>, repo: &str| {
        let mut c = Command::new("skopeo");
        c.args(["inspect", "--tls-verify=false"]);
        match creds {
            Some(cr) => c.args(["--creds", cr]),
            None => c.arg("--no-creds"),
        };
        c.arg(format!("docker://{}/{repo}:1", reg.addr)).bounded().status.success()
    };
    assert!(skopeo(Some("alice:alice-pw"), "team-a/app"));
    assert!(!skopeo(Some("bob:bob-pw"), "team-a/app"), "bob reads team A");
    assert!(!skopeo(None, "team-a/app"), "anonymous reads team A");
    assert!(skopeo(None, "team-a/public"), "anonymous reads what the policy gives anonymous");
    // A cache of it, on S3 too: it pulls with alice's credentials and serves anonymous pullers.
    let mut cenv: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    cenv.retain(|(k, _)| *k != "BERTH_REGISTRY_STORAGE_S3_BUCKET");
    cenv.push(("BERTH_REGISTRY_STORAGE_S3_BUCKET", "berth-cache"));
    cenv.push(("BERTH_REGISTRY_PROXY_PASSWORD", "alice-pw"));
    let _ = berth_e2e::registry::http(moto.endpoint.trim_start_matches("http://"), "PUT", "/berth-cache", &[], b"");
    let cache =
        BerthRegistry::start(&["--proxy-remote", &format!("http://{}", reg.addr), "--proxy-username", "alice"], &cenv);
    let via = format!("{}/team-a/app:1", cache.addr);
    let client = Berthd::start();
    assert!(client.ok(&["pull", &via]).contains("Downloaded newer image"));
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--no-creds", &format!("docker://{via}")])
        .bounded();
    assert!(o.status.success(), "{}", err(&o));
}
