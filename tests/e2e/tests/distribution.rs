//! Pull, push and login: the docker CLI against berthd, berthd against Debian's docker-registry
//! (the reference distribution server), with skopeo as an independent second client.

use std::process::Command;
use std::sync::atomic::Ordering;

use berth_e2e::registry::{free_port, Auth, Fault, FaultProxy, Registry};
use berth_e2e::token::TokenServer;
use berth_e2e::{err, out, Berthd, Bounded};

/// A busybox image pushed to `reg` as `<reg>/<repo>:1`; returns that reference.
fn seed(d: &Berthd, reg: &Registry, repo: &str) -> String {
    berth_e2e::registry::seed(d, &reg.addr, repo)
}

/// A registry holding `<repo>:1`, a berthd without the image, and a proxy with `fault` in front of
/// the registry; returns the reference through the proxy.
fn behind_proxy(repo: &str, fault: Fault) -> (Registry, Berthd, FaultProxy, String) {
    let reg = Registry::start(Auth::None);
    let d = Berthd::start();
    let r = seed(&d, &reg, repo);
    d.ok(&["rmi", "bb-seed", &r]);
    let proxy = FaultProxy::start(&reg.addr, fault);
    let via = r.replace(&reg.addr, &proxy.addr);
    (reg, d, proxy, via)
}

#[test]
fn push_pull_run_and_skips() {
    let reg = Registry::start(Auth::None);
    let d = Berthd::start();
    d.import_busybox("bb");
    let r = format!("{}/team/bb:1", reg.addr);
    d.ok(&["tag", "bb", &r]);
    let push = d.ok(&["push", &r]);
    assert!(push.contains(&format!("The push refers to repository [{}/team/bb]", reg.addr)), "{push}");
    assert!(push.contains("1: digest: sha256:"), "{push}");
    // The registry has what we sent: skopeo reads it independently.
    let sk = Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{r}")]).bounded();
    assert!(sk.status.success(), "skopeo: {}", err(&sk));
    let info: serde_json::Value = serde_json::from_slice(&sk.stdout).unwrap();
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);

    // Second push: nothing to upload. Another repository on the same registry: mounted.
    let again = d.ok(&["push", &r]);
    assert!(again.contains("Layer already exists"), "{again}");
    let other = format!("{}/other/bb:2", reg.addr);
    d.ok(&["tag", "bb", &other]);
    let mounted = d.ok(&["push", &other]);
    assert!(mounted.contains("Mounted from team/bb"), "{mounted}");

    // Pull into an empty store, run it, and see the repo digest recorded.
    d.ok(&["rmi", "bb", &r, &other]);
    assert!(d.ok(&["images", "-q"]).is_empty());
    let pull = d.ok(&["pull", &r]);
    assert!(pull.contains("Pull complete"), "{pull}");
    assert!(pull.contains(&format!("Status: Downloaded newer image for {r}")), "{pull}");
    let digest = pull.lines().find_map(|l| l.strip_prefix("Digest: ")).expect("digest line").to_string();
    assert_eq!(d.ok(&["run", "--rm", &r, "echo", "pulled"]), "pulled");
    let digests = d.ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &r]);
    assert_eq!(digests, format!("[\"{}/team/bb@{digest}\"]", reg.addr));
    assert!(d.ok(&["pull", &r]).contains("Image is up to date"));
    // By digest, into a store that has the layer: nothing downloaded.
    d.ok(&["rmi", &r]);
    d.import_busybox("keep-layer");
    let by_digest = d.ok(&["pull", &format!("{}/team/bb@{digest}", reg.addr)]);
    assert!(by_digest.contains("Already exists"), "{by_digest}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let until = now.to_string();
    let events =
        d.ok(&["events", "--since", "0", "--until", &until, "--filter", "type=image", "--format", "{{.Action}}"]);
    assert!(events.contains("push") && events.contains("pull"), "{events}");
}

/// A pushed layer is one gzip member that C zlib reads to its end with nothing left over, its
/// content the layer's diff id: the parallel compressor's pieces (random, text, Huffman-only,
/// stored) are one stream, not concatenated members some readers stop after.
#[test]
fn pushed_layers_are_one_gzip_member() {
    let reg = Registry::start(Auth::None);
    let d = Berthd::start();
    d.import_busybox("bb");
    let fill = "head -c 1500000 /dev/urandom > /r && seq 1 400000 > /t && head -c 900000 /dev/urandom | base64 > /b";
    d.ok(&["run", "--name", "fill", "bb", "sh", "-c", fill]);
    let r = format!("{}/pieces/big:1", reg.addr);
    d.ok(&["commit", "fill", &r]);
    d.ok(&["push", &r]);
    let diff_ids = d.ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", &r]);
    let check = r#"
import hashlib, json, sys, urllib.request, zlib
base, diff_ids = sys.argv[1], json.loads(sys.argv[2])
req = urllib.request.Request(base + "/manifests/1", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
layers = json.load(urllib.request.urlopen(req, timeout=30))["layers"]
assert len(layers) == len(diff_ids), layers
for layer, diff_id in zip(layers, diff_ids):
    blob = urllib.request.urlopen(base + "/blobs/" + layer["digest"], timeout=30).read()
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    z = zlib.decompressobj(31)
    tar = z.decompress(blob)
    assert z.eof and z.unused_data == b"", "more than one gzip member"
    assert "sha256:" + hashlib.sha256(tar).hexdigest() == diff_id, "content differs"
    print(len(tar), len(blob))
"#;
    let base = format!("http://{}/v2/pieces/big", reg.addr);
    let o = Command::new("python3").args(["-c", check, &base, &diff_ids]).bounded();
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let sizes: Vec<(u64, u64)> = out(&o)
        .lines()
        .map(|l| {
            let mut n = l.split(' ').map(|x| x.parse::<u64>().unwrap());
            (n.next().unwrap(), n.next().unwrap())
        })
        .collect();
    // The filled layer is ~4.6 MB: several pieces, so the threaded path ran; random data stored,
    // not grown, and the text and base64 compressed.
    let (tar, gz) = *sizes.iter().max().unwrap();
    assert!(tar > 4_000_000, "{sizes:?}");
    assert!(gz < tar - 1_000_000, "{sizes:?}");
}

/// The gzip a push made is kept beside its layer: a push to another registry sends the same
/// blob without compressing again, and a kept gzip that does not match its digest is refused
/// (nothing committed), dropped, and made anew by the next push.
#[test]
fn a_second_push_sends_the_kept_gzip() {
    let (reg1, reg2, reg3) = (Registry::start(Auth::None), Registry::start(Auth::None), Registry::start(Auth::None));
    let d = Berthd::start();
    d.import_busybox("bb");
    let kept = || kept_files(&d);
    assert!(kept().is_empty());
    let digest_in = |reg: &Registry| {
        let r = format!("{}/k/bb:1", reg.addr);
        d.ok(&["tag", "bb", &r]);
        d.ok(&["push", &r]);
        let sk = Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{r}")]).bounded();
        assert!(sk.status.success(), "skopeo: {}", err(&sk));
        let info: serde_json::Value = serde_json::from_slice(&sk.stdout).unwrap();
        info["Layers"][0].as_str().unwrap().to_string()
    };
    let first = digest_in(&reg1);
    let files = kept();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_str().unwrap().ends_with(first.trim_start_matches("sha256:")), "{files:?} {first}");
    assert_eq!(digest_in(&reg2), first, "the same blob from the kept gzip");

    // Damaged: the push fails before committing anything, and the damaged file goes.
    let mut gz = std::fs::read(&files[0]).unwrap();
    let mid = gz.len() / 2;
    gz[mid] ^= 0xff;
    std::fs::write(&files[0], &gz).unwrap();
    let r3 = format!("{}/k/bb:1", reg3.addr);
    d.ok(&["tag", "bb", &r3]);
    let o = d.docker(&["push", &r3]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(err(&o).contains("kept compressed file"), "{}", err(&o));
    assert!(kept().is_empty(), "{:?}", kept());
    assert_eq!(digest_in(&reg3), first, "made anew, the same bytes");
    assert_eq!(kept().len(), 1);
}

/// `push-compression: zstd` (daemon.json): layers go up as OCI `tar+zstd` in an OCI manifest,
/// skopeo reads them, and a berthd pulls and runs the image; a bad value stops berthd at start.
#[test]
fn zstd_push_is_an_opt_in() {
    let reg = Registry::start(Auth::None);
    let d = Berthd::start_with(&["--push-compression", "zstd"]);
    d.import_busybox("bb");
    let r = format!("{}/z/bb:1", reg.addr);
    d.ok(&["tag", "bb", &r]);
    d.ok(&["push", &r]);
    let raw =
        Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{r}")]).bounded();
    assert!(raw.status.success(), "skopeo: {}", err(&raw));
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{m}");
    assert_eq!(m["config"]["mediaType"], "application/vnd.oci.image.config.v1+json", "{m}");
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd", "{m}");
    let blob = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "30",
            &format!("http://{}/v2/z/bb/blobs/{}", reg.addr, m["layers"][0]["digest"].as_str().unwrap()),
        ])
        .bounded();
    assert!(blob.stdout.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "not a zstd frame");
    let kept = kept_files(&d);
    assert!(kept.iter().any(|p| p.to_str().unwrap().contains("layer.tar.zst.sha256-")), "{kept:?}");

    let d2 = Berthd::start();
    d2.ok(&["pull", &r]);
    assert_eq!(d2.ok(&["run", "--rm", &r, "echo", "from zstd"]), "from zstd");

    // In daemon.json, and wrong: berthd says so and does not start.
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let conf = dir.path().join("daemon.json");
    std::fs::write(&conf, r#"{"push-compression": "lz4"}"#).unwrap();
    let o = Command::new(berth_e2e::bin_dir().join("berthd"))
        .args(["-H", &format!("unix://{}", dir.path().join("b.sock").display())])
        .args(["--data-root", dir.path().join("data").to_str().unwrap()])
        .args(["--exec-root", dir.path().join("run").to_str().unwrap()])
        .args(["--config-file", conf.to_str().unwrap()])
        .bounded();
    assert!(!o.status.success());
    assert!(err(&o).contains("unknown push compression \"lz4\": gzip or zstd"), "{}", err(&o));
}

/// The files pushes kept beside the layers of `d`.
fn kept_files(d: &Berthd) -> Vec<std::path::PathBuf> {
    let layers = d.data_root().join("image/layers");
    std::fs::read_dir(layers)
        .unwrap()
        .flatten()
        .flat_map(|l| std::fs::read_dir(l.path()).unwrap().flatten().map(|e| e.path()))
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("layer.tar."))
        .collect()
}

#[test]
fn pull_errors_speak_docker() {
    let reg = Registry::start(Auth::None);
    let d = Berthd::start();
    // The reference registry answers MANIFEST_UNKNOWN for a repository it never saw, as Docker shows it.
    let missing = format!("{}/nobody/here:1", reg.addr);
    let o = d.docker(&["pull", &missing]);
    assert!(!o.status.success());
    assert!(err(&o).contains(&format!("manifest for {missing} not found: manifest unknown")), "{}", err(&o));
    let r = seed(&d, &reg, "x/bb");
    let tagless = r.replace(":1", ":nope");
    let o = d.docker(&["pull", &tagless]);
    assert!(err(&o).contains(&format!("manifest for {tagless} not found: manifest unknown")), "{}", err(&o));
    // Nothing listens there: a transport error, not a hang.
    let o = d.docker(&["pull", &format!("127.0.0.1:{}/a/b:1", free_port())]);
    assert!(!o.status.success() && err(&o).contains("connect"), "{}", err(&o));
    // docker run of a missing image pulls it first.
    d.ok(&["rmi", "bb-seed", &r]);
    let o = d.docker(&["run", "--rm", &r, "true"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("Unable to find image"), "{}", err(&o));
    let o = d.docker(&["push", &format!("{}/not/local:1", reg.addr)]);
    assert!(err(&o).contains("An image does not exist locally with the tag"), "{}", err(&o));
}

#[test]
fn basic_auth_login_push_pull() {
    let reg = Registry::start(Auth::Basic { user: "alice".into(), password: "s3cret!".into() });
    let d = Berthd::start();
    let login =
        |pw: &str| d.docker_stdin(&["login", &reg.addr, "-u", "alice", "--password-stdin"], Some(pw.as_bytes()));
    let bad = login("wrong");
    assert!(!bad.status.success(), "wrong password accepted");
    assert!(err(&bad).contains("401"), "{}", err(&bad));
    d.import_busybox("bb");
    let r = format!("{}/priv/bb:1", reg.addr);
    d.ok(&["tag", "bb", &r]);
    let denied = d.docker(&["push", &r]);
    assert!(!denied.status.success(), "anonymous push accepted: {}", out(&denied));
    let good = login("s3cret!");
    assert!(good.status.success(), "{}", err(&good));
    assert!(out(&good).contains("Login Succeeded"));
    assert!(d.ok(&["push", &r]).contains("1: digest:"));
    d.ok(&["rmi", "bb", &r]);
    assert!(d.ok(&["pull", &r]).contains("Downloaded newer image"));
    assert!(!d.log().contains("s3cret!"), "the password reached the daemon log");
    d.ok(&["logout", &reg.addr]);
    let o = d.docker(&["pull", &r.replace(":1", ":2")]);
    assert!(err(&o).contains("may require 'docker login'"), "{}", err(&o));
}

/// A two-platform index made by hand: the real amd64 image and an "arm64" twin of it.
#[test]
fn index_pull_picks_the_platform() {
    let reg = Registry::start(Auth::None);
    let d = Berthd::start();
    let r = seed(&d, &reg, "multi/bb");
    let index_digest = berth_e2e::registry::push_two_platforms(&reg.addr, "multi/bb", "multi");
    let multi = r.replace(":1", ":multi");
    d.ok(&["rmi", "bb-seed", &r]);
    let pull = d.ok(&["pull", &multi]);
    assert!(pull.contains(&format!("Digest: {index_digest}")), "{pull}");
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &multi]), "amd64");
    assert_eq!(d.ok(&["run", "--rm", &multi, "echo", "ok"]), "ok");
    let arm_ref = multi.replace(":multi", ":armed");
    d.ok(&["rmi", &multi]);
    d.ok(&["pull", "--platform", "linux/arm64", &multi]);
    d.ok(&["tag", &multi, &arm_ref]);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}/{{.Variant}}", &arm_ref]), "arm64/v8");
    let o = d.docker(&["pull", "--platform", "linux/s390x", &multi]);
    assert!(err(&o).contains("no matching manifest for linux/s390x"), "{}", err(&o));
    // docker manifest inspect goes through the client; /distribution goes through us.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dist: serde_json::Value =
        rt.block_on(d.client().get(&format!("/distribution/{multi}/json"))).expect("distribution");
    assert_eq!(dist["Descriptor"]["digest"], index_digest);
    assert_eq!(dist["Platforms"].as_array().unwrap().len(), 2);
}

/// Faults on the layer download: a dropped connection is resumed with Range; a 500 and a corrupt
/// blob fail the pull with a clear error, leave no image behind, and the retry succeeds. A blob
/// damaged so that inflating stops at once is still reported as the digest mismatch it is; one
/// with more bytes than its manifest gives is cut off there.
#[test]
fn registry_faults_leave_no_partial_image() {
    let reg = Registry::start(Auth::None);
    let d = Berthd::start();
    let r = seed(&d, &reg, "f/bb");
    d.ok(&["rmi", "bb-seed", &r]);
    for (fault, expect) in [
        (Fault::DropMidBody, None),
        (Fault::Status500, Some("injected failure")),
        (Fault::Corrupt, Some("digest mismatch")),
        (Fault::CorruptDeflate, Some("digest mismatch")),
        (Fault::Oversize, Some("the registry sent more than the")),
    ] {
        let proxy = FaultProxy::start(&reg.addr, fault);
        let via = r.replace(&reg.addr, &proxy.addr);
        let o = d.docker(&["pull", &via]);
        match expect {
            None => {
                assert!(o.status.success(), "{fault:?}: {}", err(&o));
                assert!(proxy.ranges.load(Ordering::SeqCst) >= 1, "{fault:?}: no Range request");
            }
            Some(msg) => {
                assert!(!o.status.success(), "{fault:?}: pull succeeded");
                assert!(err(&o).contains(msg), "{fault:?}: {}", err(&o));
                assert!(d.ok(&["images", "-q"]).is_empty(), "{fault:?}: partial image left");
                let retry = d.docker(&["pull", &via]);
                assert!(retry.status.success(), "{fault:?} retry: {}", err(&retry));
            }
        }
        assert_eq!(d.ok(&["run", "--rm", &via, "echo", "ok"]), "ok");
        d.ok(&["rmi", &via]);
        assert_eq!(d.image_tmp_entries(), 0, "{fault:?}: unpack folders left in image/tmp");
    }
}

#[test]
fn concurrent_pulls_download_each_layer_once() {
    let (_reg, d, proxy, via) = behind_proxy("c/bb", Fault::None);
    let host = d.host();
    let cfg = d.root.join("docker-config");
    let pulls: Vec<_> = (0..3)
        .map(|_| {
            Command::new("docker")
                .env("DOCKER_HOST", &host)
                .env("DOCKER_CONFIG", &cfg)
                .args(["pull", "-q", &via])
                .spawn()
                .expect("docker pull")
        })
        .collect();
    for p in pulls {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success());
    }
    assert_eq!(proxy.layer_gets.load(Ordering::SeqCst), 1, "the layer was downloaded more than once");
    assert_eq!(d.ok(&["run", "--rm", &via, "echo", "ok"]), "ok");
}

/// Docker Hub's scheme: a 401 challenge to a token server; anonymous tokens carry no rights;
/// `docker login` gets a refresh token that later pushes and pulls trade for access tokens.
#[test]
fn token_auth_with_identity_tokens() {
    let tok = TokenServer::start("alice", "pw-alice");
    let reg = Registry::start(Auth::Token {
        realm: tok.realm.clone(),
        issuer: tok.issuer.clone(),
        service: tok.service.clone(),
        cert: tok.cert.clone(),
    });
    let d = Berthd::start();
    d.import_busybox("bb");
    let r = format!("{}/tok/bb:1", reg.addr);
    d.ok(&["tag", "bb", &r]);
    let o = d.docker(&["push", &r]);
    assert!(!o.status.success(), "anonymous push accepted");
    assert!(err(&o).contains("unauthorized: authentication required"), "{} {}", out(&o), err(&o));
    let bad = d.docker_stdin(&["login", &reg.addr, "-u", "alice", "--password-stdin"], Some(b"nope"));
    assert!(!bad.status.success());
    assert!(err(&bad).contains("unauthorized"), "{}", err(&bad));
    let good = d.docker_stdin(&["login", &reg.addr, "-u", "alice", "--password-stdin"], Some(b"pw-alice"));
    assert!(good.status.success(), "{}", err(&good));
    // The CLI stored the identity token, not the password.
    let cfg = std::fs::read_to_string(d.root.join("docker-config/config.json")).unwrap();
    assert!(cfg.contains("identitytoken") && !cfg.contains("pw-alice"), "{cfg}");
    assert!(d.ok(&["push", &r]).contains("1: digest:"));
    d.ok(&["rmi", "bb", &r]);
    assert!(d.ok(&["pull", &r]).contains("Downloaded newer image"));
    assert!(tok.refresh_grants.load(Ordering::SeqCst) >= 1, "the identity token was never used");
}

/// `registry-mirrors`: `docker pull busybox` (Docker Hub's library/busybox) is served by the mirror
/// that has it, after one that is down and one that lacks the image; `pull -a` fetches every tag.
#[test]
fn hub_pulls_go_through_the_mirror() {
    let reg = Registry::start(Auth::None);
    let mut d = Berthd::start();
    d.import_busybox("bb");
    for t in ["latest", "1.36"] {
        let r = format!("{}/library/busybox:{t}", reg.addr);
        d.ok(&["tag", "bb", &r]);
        d.ok(&["push", &r]);
        d.ok(&["rmi", &r]);
    }
    d.ok(&["rmi", "bb"]);
    d.stop();
    let empty = Registry::start(Auth::None);
    let mirror = format!("http://{}", reg.addr);
    let mirrors = [format!("http://127.0.0.1:{}", free_port()), format!("http://{}", empty.addr), mirror.clone()];
    std::fs::write(d.root.join("daemon.json"), serde_json::json!({"registry-mirrors": mirrors}).to_string()).unwrap();
    d.spawn();
    let shown = d.ok(&["info", "-f", "{{json .RegistryConfig.Mirrors}}"]);
    assert!(shown.ends_with(&format!("\"{mirror}/\"]")), "{shown}");
    let pull = d.ok(&["pull", "busybox"]);
    assert!(pull.contains("Pulling from library/busybox"), "{pull}");
    assert!(pull.contains("Status: Downloaded newer image for busybox:latest"), "{pull}");
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "hub"]), "hub");
    let all = d.ok(&["pull", "-a", "busybox"]);
    assert!(all.contains("Image is up to date for busybox"), "{all}");
    let tags = d.ok(&["images", "busybox", "--format", "{{.Tag}}"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["1.36", "latest"]);
}

/// A client that hangs up mid-pull cancels it, as with Docker: nothing is stored, nothing is left in
/// image/tmp, and the next pull works.
#[test]
fn client_hangup_cancels_the_pull() {
    use std::io::{BufRead, Write};
    let (_reg, d, _proxy, via) = behind_proxy("cancel/bb", Fault::Stall);
    let (name, tag) = via.rsplit_once(':').unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    write!(s, "POST /v1.44/images/create?fromImage={name}&tag={tag} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut lines = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while !line.contains("Pulling fs layer") {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "stream ended early");
    }
    drop(lines);
    drop(s);
    berth_e2e::eventually("the pull to be cancelled and cleaned up", || {
        d.log().contains("pull cancelled") && d.image_tmp_entries() == 0
    });
    assert!(d.ok(&["images", "-q"]).is_empty(), "a cancelled pull stored an image");
    d.ok(&["pull", &via]);
    assert_eq!(d.ok(&["run", "--rm", &via, "echo", "ok"]), "ok");
}
