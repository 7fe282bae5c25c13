//! Images in and out as archives: save/load, commit, export/import, cp, diff, history, prune, df, and
//! archives made by another tool (skopeo).

use std::process::Command;

use berth_e2e::{err, out, Berthd, Bounded};
use serde_json::Value;

fn daemon() -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo").arg("--insecure-policy").args(args).bounded()
}

#[test]
fn save_load_round_trip_and_commit() {
    let d = daemon();
    assert_eq!(
        d.docker(&[
            "run",
            "--name",
            "work",
            "busybox",
            "sh",
            "-c",
            "echo made > /made; rm /etc/group; mkdir -p /srv/a"
        ])
        .status
        .code(),
        Some(0)
    );
    let diff = d.ok(&["diff", "work"]);
    assert_eq!(diff, "C /etc\nD /etc/group\nA /made\nA /srv\nA /srv/a", "init-layer mount points must not show");
    let id = d.ok(&[
        "commit",
        "-a",
        "me",
        "-m",
        "msg",
        "-c",
        "CMD [\"cat\",\"/made\"]",
        "-c",
        "ENV MADE=1",
        "work",
        "made:v1",
    ]);
    assert!(id.starts_with("sha256:"));
    assert_eq!(d.ok(&["run", "--rm", "made:v1"]), "made");
    assert_eq!(
        d.ok(&["run", "--rm", "made:v1", "sh", "-c", "echo $MADE; ls /etc/group 2>&1; true"]),
        "1\nls: /etc/group: No such file or directory"
    );
    let insp: Value = serde_json::from_str(&d.ok(&["image", "inspect", "made:v1"])).unwrap();
    assert_eq!(insp[0]["Author"], "me");
    assert_eq!(insp[0]["Comment"], "msg");
    assert_eq!(insp[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let hist = d.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "made:v1"]);
    let first = hist.lines().next().unwrap();
    assert!(first.starts_with("sh -c echo made") && first.ends_with("|msg"), "{hist}");

    let archive = d.root.join("saved.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), "made:v1", "busybox"]);
    let listing = Command::new("tar").arg("tf").arg(&archive).bounded();
    let names = out(&listing);
    for f in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(names.lines().any(|l| l == f), "{f} missing from the archive: {names}");
    }
    d.ok(&["rm", "work"]);
    d.ok(&["rmi", "made:v1", "busybox"]);
    assert_eq!(d.ok(&["images", "-q"]), "");
    let o = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(o.contains("Loaded image: made:v1") && o.contains("Loaded image: busybox:latest"), "{o}");
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", "made:v1"]), id);
    assert_eq!(d.ok(&["run", "--rm", "made:v1"]), "made");
    // Gzipped archives load too, and loading again changes nothing.
    let gz = d.root.join("saved.tar.gz");
    assert!(Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", archive.display(), gz.display()))
        .status()
        .unwrap()
        .success());
    // Loaded into an empty store (the images were there already, a load that did nothing passed).
    d.ok(&["rmi", "made:v1", "busybox"]);
    assert_eq!(d.ok(&["images", "-q"]), "");
    d.ok(&["load", "-q", "-i", gz.to_str().unwrap()]);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", "made:v1"]), id);
    assert_eq!(d.ok(&["run", "--rm", "made:v1"]), "made");
    let before = d.ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(before.lines().count(), 2);
    d.ok(&["load", "-q", "-i", gz.to_str().unwrap()]);
    assert_eq!(d.ok(&["images", "-q", "--no-trunc"]), before);
}

#[test]
fn export_import_and_cp() {
    let d = daemon();
    d.ok(&[
        "run",
        "--name",
        "src",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo one > /data/sub/f && ln -s sub/f /data/link && chmod 640 /data/sub/f",
    ]);
    let tar = d.root.join("export.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), "src"]);
    d.ok(&["import", tar.to_str().unwrap(), "exported"]);
    assert_eq!(d.ok(&["run", "--rm", "exported", "cat", "/data/link"]), "one");
    // cp out: directories, symlinks and modes.
    let dest = d.root.join("out");
    d.ok(&["cp", "src:/data", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dest.join("sub/f")).unwrap(), "one\n");
    assert_eq!(std::fs::read_link(dest.join("link")).unwrap(), std::path::Path::new("sub/f"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dest.join("sub/f")).unwrap().permissions().mode() & 0o777, 0o640);
    // cp in: into a stopped and into a running container.
    let host = d.root.join("in");
    std::fs::create_dir_all(host.join("deep")).unwrap();
    std::fs::write(host.join("deep/x"), "in!").unwrap();
    d.ok(&["cp", host.to_str().unwrap(), "src:/data/"]);
    assert!(d.ok(&["cp", "src:/data/in/deep/x", "-"]).contains("in!"));
    d.ok(&["run", "-d", "--name", "live", "busybox", "sleep", "100"]);
    d.ok(&["cp", host.join("deep/x").to_str().unwrap(), "live:/tmp/x"]);
    let o = d.ok(&["cp", "live:/tmp/x", "-"]);
    assert!(o.contains("in!"));
    let o = d.docker(&["cp", "live:/nope", d.root.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Could not find the file /nope"), "{}", err(&o));
    d.ok(&["rm", "-f", "live"]);
}

#[test]
fn hostile_cp_and_archives() {
    let d = daemon();
    d.ok(&["create", "--name", "target", "busybox", "true"]);
    let victim = tempfile::tempdir().unwrap();
    // A tar for `docker cp -` that climbs and plants an escaping symlink, then writes through it.
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, link: &str, data: &[u8]| {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    let v = victim.path().to_str().unwrap().to_string();
    add("../../../../escape", tar::EntryType::Regular, "", b"x");
    add("esc", tar::EntryType::Symlink, &v, b"");
    add("esc/pwned", tar::EntryType::Regular, "", b"x");
    add("hl", tar::EntryType::Link, "../../../../etc/passwd", b"");
    let evil = b.into_inner().unwrap();
    let passwd_links = std::fs::metadata("/etc/passwd").map(|m| std::os::unix::fs::MetadataExt::nlink(&m)).unwrap();
    let o = d.docker_stdin(&["cp", "-", "target:/tmp"], Some(&evil));
    // Refused at the hard link, which names nothing inside the archive's destination.
    assert!(!o.status.success() && err(&o).contains("invalid tar entry hl"), "{}", err(&o));
    // Every escape target is checked: the symlink's victim, the climb's landing places above the
    // container's root, and the host file the hard link names.
    assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0, "cp wrote through a symlink");
    let mut above: Vec<std::path::PathBuf> = vec!["/escape".into(), "/tmp/escape".into()];
    let mut dir = d.data_root();
    while dir.starts_with(&d.root) {
        above.push(dir.join("escape"));
        dir = dir.parent().unwrap().to_path_buf();
    }
    for p in &above {
        assert!(std::fs::symlink_metadata(p).is_err(), "cp climbed out to {}", p.display());
    }
    let now = std::fs::metadata("/etc/passwd").map(|m| std::os::unix::fs::MetadataExt::nlink(&m)).unwrap();
    assert_eq!(now, passwd_links, "cp hard-linked a host file");
    // A load whose layer does not match its manifest is refused, nothing stored.
    d.ok(&["tag", "busybox", "orig:1"]);
    let archive = d.root.join("a.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), "orig:1"]);
    d.ok(&["rmi", "orig:1"]);
    let mut bytes = std::fs::read(&archive).unwrap();
    // Corrupt the busybox binary inside the layer blob (an ELF header byte).
    let pos = bytes.windows(4).position(|w| w == b"\x7fELF").unwrap();
    bytes[pos + 8] ^= 0xff;
    let o = d.docker_stdin(&["load"], Some(&bytes));
    assert!(!o.status.success());
    assert!(err(&o).contains("mismatch") || err(&o).contains("do not match"), "{}", err(&o));
    let o = d.docker_stdin(&["load"], Some(&std::fs::read(&archive).unwrap()[..4096]));
    assert!(!o.status.success(), "a truncated archive loaded");
    assert_eq!(d.ok(&["images", "--format", "{{.Repository}}"]), "busybox");
}

#[test]
fn skopeo_reads_and_writes_our_archives() {
    let d = daemon();
    let archive = d.root.join("bb.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    let o = skopeo(&["inspect", &format!("docker-archive:{}", archive.display())]);
    assert!(o.status.success(), "skopeo inspect: {}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    // skopeo writes an OCI layout and a docker-archive of its own; both load and run.
    let oci = d.root.join("oci");
    let o = skopeo(&[
        "copy",
        &format!("docker-archive:{}", archive.display()),
        &format!("oci:{}:sk-oci:v1", oci.display()),
    ]);
    assert!(o.status.success(), "skopeo copy to oci: {}", err(&o));
    let oci_tar = d.root.join("oci.tar");
    assert!(Command::new("tar").arg("-C").arg(&oci).arg("-cf").arg(&oci_tar).arg(".").status().unwrap().success());
    d.ok(&["rmi", "busybox"]);
    let o = d.ok(&["load", "-i", oci_tar.to_str().unwrap()]);
    assert!(o.contains("Loaded image"), "{o}");
    let sk_archive = d.root.join("sk.tar");
    let o = skopeo(&[
        "copy",
        &format!("oci:{}:sk-oci:v1", oci.display()),
        &format!("docker-archive:{}:skopeo/made:v2", sk_archive.display()),
    ]);
    assert!(o.status.success(), "skopeo copy to docker-archive: {}", err(&o));
    let o = d.ok(&["load", "-i", sk_archive.to_str().unwrap()]);
    assert!(o.contains("Loaded image: skopeo/made:v2"), "{o}");
    assert_eq!(d.ok(&["run", "--rm", "skopeo/made:v2", "echo", "ran"]), "ran");
}

#[test]
fn prune_and_df() {
    let d = daemon();
    d.ok(&["run", "--name", "cc", "busybox", "sh", "-c", "echo x > /x"]);
    d.ok(&["commit", "cc"]);
    d.ok(&["tag", "busybox", "extra:1"]);
    assert_eq!(d.ok(&["images", "-q", "--filter", "dangling=true"]).lines().count(), 1);
    let o = d.ok(&["image", "prune", "-f"]);
    assert!(o.contains("deleted: sha256:"), "{o}");
    assert_eq!(d.ok(&["images", "-q", "--filter", "dangling=true"]), "");
    // -a removes unused tagged images, never one a container uses.
    d.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines().count(), 2, "busybox is used by cc");
    let df = d.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.contains("Images 1") && df.contains("Containers 1"), "{df}");
    d.ok(&["rm", "cc"]);
    d.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(std::fs::read_dir(d.data_root().join("image/layers")).unwrap().count(), 0);
}

/// A committed image records its container and parent as Docker's: `Parent` is the image the
/// container ran, `Container`/`ContainerConfig` (API < 1.45) the container and its config. The
/// parent then stays while the child does: untagged by reference, a conflict by id.
#[test]
fn commit_records_its_container_and_parent() {
    let d = daemon();
    let base = d.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]);
    let id = d.ok(&["run", "-d", "busybox", "sh", "-c", "touch /made; sleep 300"]);
    let img = d.ok(&["commit", &id, "child:1"]);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Parent}}", "child:1"]), base);
    // Both fields are shown below API 1.45 only (moby's version history).
    let (_, v) = d.api_at("1.44", "GET", "/images/child:1/json", None);
    assert_eq!(v["Container"], id.as_str());
    assert_eq!(v["ContainerConfig"]["Cmd"], serde_json::json!(["sh", "-c", "touch /made; sleep 300"]));
    let (_, v) = d.api_at("1.45", "GET", "/images/child:1/json", None);
    assert!(v.get("Container").is_none() && v.get("ContainerConfig").is_none(), "{v}");
    d.ok(&["rm", "-f", &id]);
    // By reference: only untagged, and hidden from the list as an intermediate image.
    assert_eq!(d.ok(&["rmi", "busybox"]), "Untagged: busybox:latest");
    assert_eq!(d.ok(&["images", "-q", "--no-trunc"]), img);
    assert_eq!(d.ok(&["images", "-aq", "--no-trunc"]).lines().count(), 2);
    // By id: a hard conflict, force or not.
    let o = d.docker(&["rmi", "-f", &base]);
    assert!(err(&o).contains("image has dependent child images"), "{}", err(&o));
    // The child goes, and its untagged parent with it.
    d.ok(&["rmi", "child:1"]);
    assert_eq!(d.ok(&["images", "-aq"]), "");
}

/// `docker cp` into and out of a volume of a container that is not running works as Docker's (the
/// path is looked up in the volume, not in the empty mount point of the rootfs; it answered 404);
/// a read-only mount refuses the copy in; a destination folder that does not exist is a 404.
#[test]
fn cp_with_volumes_of_a_stopped_container() {
    let d = daemon();
    d.ok(&[
        "create",
        "--name",
        "holder",
        "-v",
        "vol1:/vol1",
        "-v",
        "ro1:/ro1:ro",
        "busybox",
        "sh",
        "-c",
        "cat /vol1/in.txt",
    ]);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "into the volume\n").unwrap();
    let src = host.path().join("in.txt");
    d.ok(&["cp", src.to_str().unwrap(), "holder:/vol1/in.txt"]);
    // It landed in the volume: the container reads it when it runs, and so does another one.
    assert_eq!(d.ok(&["start", "-a", "holder"]), "into the volume");
    assert_eq!(d.ok(&["run", "--rm", "-v", "vol1:/v", "busybox", "cat", "/v/in.txt"]), "into the volume");
    // Out of it, the file and the whole volume folder by its name.
    let out_dir = tempfile::tempdir().unwrap();
    d.ok(&["cp", "holder:/vol1/in.txt", out_dir.path().join("back.txt").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out_dir.path().join("back.txt")).unwrap(), "into the volume\n");
    d.ok(&["cp", "holder:/vol1", out_dir.path().to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out_dir.path().join("vol1/in.txt")).unwrap(), "into the volume\n");
    // Read-only: refused; a folder that does not exist: not found.
    let o = d.docker(&["cp", src.to_str().unwrap(), "holder:/ro1/in.txt"]);
    assert!(err(&o).contains("marked read-only"), "{}", err(&o));
    let o = d.docker(&["cp", src.to_str().unwrap(), "holder:/nosuchdir/in.txt"]);
    assert!(!o.status.success() && err(&o).contains("Could not find the file /nosuchdir"), "{}", err(&o));
    d.ok(&["rm", "-v", "holder"]);
}

/// `docker cp` into a container owns what it extracts as Docker does: by the container's root, or
/// with `-a` (copyUIDGID) by the container's user — never by whatever uid the archive carried.
#[test]
fn cp_ownership_as_docker() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "owned", "-u", "33:33", "busybox", "sleep", "300"]);
    let host = tempfile::tempdir().unwrap();
    let f = host.path().join("f.txt");
    std::fs::write(&f, "x").unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(1234)).unwrap();
    d.ok(&["cp", f.to_str().unwrap(), "owned:/tmp/plain.txt"]);
    d.ok(&["cp", "-a", f.to_str().unwrap(), "owned:/tmp/archive.txt"]);
    let owners = d.ok(&["exec", "owned", "stat", "-c", "%u:%g", "/tmp/plain.txt", "/tmp/archive.txt"]);
    assert_eq!(owners.lines().collect::<Vec<_>>(), ["0:0", "33:33"]);
    d.ok(&["rm", "-f", "owned"]);
}
