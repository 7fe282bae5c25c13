//! Multi-platform images through the docker CLI: a two-platform index in Debian's docker-registry
//! (linux/amd64 and an arm64 twin), pulled one platform at a time, listed as a tree, run, inspected,
//! saved, loaded and removed by platform.

use berth_e2e::registry::{http, push_two_platforms, seed, Auth, Registry};
use berth_e2e::{err, Berthd};
use serde_json::Value;

/// The registry, a berthd without the image, the index's reference and digest.
fn two_platforms() -> (Registry, Berthd, String, String) {
    let reg = Registry::start(Auth::None);
    let d = Berthd::start();
    let r = seed(&d, &reg.addr, "multi/bb");
    let digest = push_two_platforms(&reg.addr, "multi/bb", "multi");
    d.ok(&["rmi", "bb-seed", &r]);
    (reg, d, r.replace(":1", ":multi"), digest)
}

fn host_arch(d: &Berthd) -> String {
    d.ok(&["version", "-f", "{{.Server.Arch}}"])
}

/// `docker images -a` lines of every image (id, tags).
fn all_images(d: &Berthd) -> Vec<String> {
    d.ok(&["images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn platforms_are_pulled_listed_run_and_removed_as_one_image() {
    let (reg, d, multi, index) = two_platforms();
    if host_arch(&d) != "amd64" {
        eprintln!("skipped: the index's runnable platform is amd64");
        return;
    }
    d.ok(&["pull", "--platform", "linux/arm64", &multi]);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &multi]), "arm64");
    // The host's platform joins it; the reference now means the host's platform.
    d.ok(&["pull", &multi]);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &multi]), "amd64");
    let arm = d.ok(&["image", "inspect", "--platform", "linux/arm64", "-f", "{{.Architecture}}/{{.Variant}}", &multi]);
    assert_eq!(arm, "arm64/v8");
    // One image in the list, not a second dangling one; both platforms under it in the tree.
    let listed = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), [multi.as_str()], "{listed}");
    assert_eq!(d.ok(&["images", "-q", "--filter", "dangling=true"]), "");
    let tree = d.ok(&["image", "ls", "--tree"]);
    assert!(tree.contains("linux/amd64") && tree.contains("linux/arm64/v8"), "{tree}");
    // The API's view: the index is the descriptor, both manifests available.
    let (_, inspect) = d.api_at("1.48", "GET", &format!("/images/{multi}/json?manifests=1"), None);
    assert_eq!(inspect["Descriptor"]["digest"], index.as_str(), "{inspect}");
    let ms = inspect["Manifests"].as_array().expect("Manifests");
    assert_eq!(ms.len(), 2, "{inspect}");
    assert!(ms.iter().all(|m| m["Available"] == true && m["Kind"] == "image"), "{inspect}");
    // Where it came from (1.53): the repository it was pulled from; not before 1.53.
    let repo = multi.rsplit_once(':').unwrap().0;
    assert!(inspect.get("Identity").is_none(), "{inspect}");
    let (_, at53) = d.api_at("1.53", "GET", &format!("/images/{multi}/json"), None);
    assert_eq!(at53["Identity"]["Pull"][0]["Repository"], repo, "{at53}");
    let (_, list) = d.api_at("1.47", "GET", "/images/json?manifests=1", None);
    let row = list.as_array().unwrap().iter().find(|i| i["RepoTags"][0] == multi.as_str()).unwrap().clone();
    assert_eq!(row["Manifests"].as_array().unwrap().len(), 2, "{row}");
    // Pushing the reference pushes every platform that is here and an index over them (a tag of
    // it names the same multi-platform image); `--platform` pushes one as a single manifest.
    let again = multi.replace(":multi", ":again");
    d.ok(&["tag", &multi, &again]);
    d.ok(&["push", &again]);
    let accept = [(
        "Accept",
        "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, \
         application/vnd.docker.distribution.manifest.v2+json",
    )];
    let get = || {
        let (st, _, body) = http(&reg.addr, "GET", "/v2/multi/bb/manifests/again", &accept, b"").unwrap();
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let pushed = get();
    let mut archs: Vec<&str> = pushed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    archs.sort();
    assert_eq!(archs, ["amd64", "arm64"], "{pushed}");
    d.ok(&["push", "--platform", "linux/arm64", &again]);
    let single = get();
    assert!(single.get("manifests").is_none() && single["config"]["digest"].is_string(), "{single}");
    d.ok(&["rmi", &again]);
    // Pruning dangling images leaves the other platform alone.
    d.ok(&["image", "prune", "-f"]);
    d.ok(&["image", "inspect", "--platform", "linux/arm64", &multi]);
    // Run picks the platform; one this host cannot run is refused before anything starts.
    assert_eq!(d.ok(&["run", "--rm", "--platform", "linux/amd64", &multi, "echo", "ok"]), "ok");
    // A container names the platform manifest it was made from (1.48), in inspect and the list.
    let c = d.ok(&["create", &multi, "true"]);
    let amd = ms.iter().find(|m| m["ImageData"]["Platform"]["architecture"] == "amd64").unwrap()["ID"].clone();
    let (_, ci) = d.api_at("1.48", "GET", &format!("/containers/{c}/json"), None);
    assert_eq!(ci["ImageManifestDescriptor"]["digest"], amd, "{ci}");
    assert_eq!(ci["ImageManifestDescriptor"]["platform"]["architecture"], "amd64", "{ci}");
    let (_, old) = d.api_at("1.47", "GET", &format!("/containers/{c}/json"), None);
    assert!(old.get("ImageManifestDescriptor").is_none(), "{old}");
    let (_, list) = d.api_at("1.48", "GET", "/containers/json?all=1", None);
    assert_eq!(list[0]["ImageManifestDescriptor"]["digest"], amd, "{list}");
    d.ok(&["rm", &c]);
    if !std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        let o = d.docker(&["run", "--rm", "--platform", "linux/arm64", &multi, "true"]);
        assert!(!o.status.success());
        assert!(err(&o).contains("cannot run"), "{}", err(&o));
        assert_eq!(d.ok(&["ps", "-aq"]), "", "a refused run left a container");
    }
    // One platform removed: the other stays under the reference.
    d.ok(&["rmi", "--platform", "linux/arm64", &multi]);
    let o = d.docker(&["image", "inspect", "--platform", "linux/arm64", &multi]);
    assert!(err(&o).contains("does not provide the specified platform (linux/arm64"), "{}", err(&o));
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &multi]), "amd64");
    // The whole image: every platform goes with its last reference.
    d.ok(&["pull", "--platform", "linux/arm64", &multi]);
    assert_eq!(all_images(&d).len(), 2, "{:?}", all_images(&d));
    d.ok(&["rmi", &multi]);
    assert_eq!(all_images(&d), Vec::<String>::new());
}

#[test]
fn save_and_load_keep_the_platforms() {
    let (_reg, d, multi, _) = two_platforms();
    d.ok(&["pull", "--platform", "linux/arm64", &multi]);
    d.ok(&["pull", "--platform", "linux/amd64", &multi]);
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.tar");
    let arm = dir.path().join("arm.tar");
    d.ok(&["save", "-o", both.to_str().unwrap(), &multi]);
    d.ok(&["save", "--platform", "linux/arm64", "-o", arm.to_str().unwrap(), &multi]);
    // The whole image is an index of both platforms under the reference.
    let listing =
        std::process::Command::new("tar").args(["-xOf", both.to_str().unwrap(), "index.json"]).output().unwrap();
    let index: Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(index["manifests"][0]["mediaType"], "application/vnd.oci.image.index.v1+json", "{index}");
    d.ok(&["rmi", &multi]);
    assert!(all_images(&d).is_empty());
    let loaded = d.ok(&["load", "-i", both.to_str().unwrap()]);
    assert!(loaded.contains(&format!("Loaded image: {multi}")), "{loaded}");
    assert_eq!(all_images(&d).len(), 2, "{:?}", all_images(&d));
    let a = d.ok(&["image", "inspect", "--platform", "linux/arm64", "-f", "{{.Architecture}}", &multi]);
    assert_eq!(a, "arm64");
    let tree = d.ok(&["image", "ls", "--tree"]);
    assert!(tree.contains("linux/amd64") && tree.contains("linux/arm64/v8"), "{tree}");
    // Loading only one platform of it.
    d.ok(&["rmi", &multi]);
    d.ok(&["load", "--platform", "linux/arm64", "-i", both.to_str().unwrap()]);
    assert_eq!(all_images(&d).len(), 1, "{:?}", all_images(&d));
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &multi]), "arm64");
    // Several platforms at once from API 1.52 (an index of them); the first only before.
    let save_at = |version: &str, file: &std::path::Path| {
        let enc = |p: &str| p.replace('/', "%2F");
        let url = format!(
            "http://x/v{version}/images/get?names={}&platform={}&platform={}",
            enc(&multi),
            enc("linux/arm64"),
            enc("linux/amd64")
        );
        let o = berth_e2e::run_bounded(
            std::process::Command::new("curl")
                .args(["-sSf", "--max-time", "60", "-o", file.to_str().unwrap(), "--unix-socket"])
                .arg(&d.socket)
                .arg(url),
        );
        assert!(o.status.success(), "{}", err(&o));
        let o = berth_e2e::run_bounded(std::process::Command::new("tar").args([
            "-xOf",
            file.to_str().unwrap(),
            "index.json",
        ]));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    d.ok(&["rmi", &multi]);
    d.ok(&["load", "-i", both.to_str().unwrap()]);
    let two = save_at("1.52", &dir.path().join("two.tar"));
    assert_eq!(two["manifests"][0]["mediaType"], "application/vnd.oci.image.index.v1+json", "{two}");
    let one = save_at("1.51", &dir.path().join("one.tar"));
    assert_eq!(one["manifests"][0]["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{one}");
    // The archive of one platform is that image alone.
    d.ok(&["rmi", &multi]);
    let loaded = d.ok(&["load", "-i", arm.to_str().unwrap()]);
    assert!(loaded.contains(&format!("Loaded image: {multi}")), "{loaded}");
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Architecture}}", &multi]), "arm64");
}
