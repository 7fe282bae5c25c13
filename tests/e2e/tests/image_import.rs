//! Image import and the image list: import, list, inspect, rmi, normalisation, hostile and malformed tars.

use std::io::Write;

use berth_e2e::{busybox_tar, err, Berthd};
use serde_json::Value;

#[test]
fn import_list_inspect_remove() {
    let d = Berthd::start();
    let id = d.import_busybox("busybox");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    // gzip works too, and the same content is one layer.
    let gz = d.root.join("bb.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&std::fs::read(busybox_tar()).unwrap()).unwrap();
    enc.finish().unwrap();
    let id2 = d.ok(&[
        "import",
        "-c",
        "ENV FOO=bar",
        "-c",
        "CMD [\"sh\"]",
        "-m",
        "gz",
        gz.to_str().unwrap(),
        "example.com/team/bb:v1",
    ]);
    let layers = std::fs::read_dir(d.data_root().join("image/layers")).unwrap().count();
    assert_eq!(layers, 1, "identical layers must be stored once");

    let list = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = list.lines().collect();
    names.sort();
    assert_eq!(names, ["busybox:latest", "example.com/team/bb:v1"]);

    let inspect: Value = serde_json::from_str(&d.ok(&["image", "inspect", "example.com/team/bb:v1"])).unwrap();
    assert_eq!(inspect[0]["Id"], id2.as_str());
    assert_eq!(inspect[0]["Config"]["Env"][0], "FOO=bar");
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "sh");
    assert_eq!(inspect[0]["Comment"], "gz");
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(inspect[0]["Os"], "linux");
    // Names normalise Docker's way.
    for n in ["busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox:latest", &id[7..19]] {
        assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", n]), id, "{n}");
    }
    d.ok(&["tag", "busybox", "mine:2"]);
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", "mine:2"]), id);
    // In use by a container: refused unless forced.
    d.ok(&["create", "--name", "user", "busybox", "true"]);
    let o = d.docker(&["rmi", &id]);
    assert!(!o.status.success());
    assert!(err(&o).contains("conflict"), "{}", err(&o));
    // Removing one of two tags only untags.
    assert_eq!(d.ok(&["rmi", "mine:2"]), "Untagged: mine:2");
    let o = d.docker(&["rmi", "busybox"]);
    assert!(err(&o).contains("container") && err(&o).contains("is using its referenced image"), "{}", err(&o));
    d.ok(&["rm", "user"]);
    let o = d.ok(&["rmi", "busybox"]);
    assert!(o.contains("Untagged: busybox:latest") && o.contains(&format!("Deleted: {id}")), "{o}");
    d.ok(&["rmi", "example.com/team/bb:v1"]);
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(std::fs::read_dir(d.data_root().join("image/layers")).unwrap().count(), 0, "layers garbage-collected");
    let o = d.docker(&["rmi", "nothere"]);
    assert!(err(&o).contains("No such image: nothere"), "{}", err(&o));
}

fn raw_tar(entries: &[(&str, u8, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, link) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_tars_stay_inside_their_root() {
    let d = Berthd::start();
    let victim = tempfile::tempdir().unwrap();
    let v = victim.path().to_str().unwrap().to_string();
    let evil = raw_tar(&[
        ("../../../../../../tmp/escape-dotdot", b'0', b"x", ""),
        (&format!("{v}/abs"), b'0', b"x", ""),
        ("link", b'2', b"", &v),
        ("link/through-symlink", b'0', b"x", ""),
        ("up", b'2', b"", "../../../../../../../.."),
        (&format!("up{v}/through-dotdot-link"), b'0', b"x", ""),
    ]);
    let o = d.docker_stdin(&["import", "-", "evil"], Some(&evil));
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0, "a tar entry escaped its root");
    assert!(!std::path::Path::new("/tmp/escape-dotdot").exists());
    // And the container sees them inside its own root.
    d.ok(&["rmi", "evil"]);
}

#[test]
fn malformed_tar_is_400_and_stores_nothing() {
    let d = Berthd::start();
    let garbage = vec![0x5au8; 4096];
    let o = d.docker_stdin(&["import", "-", "junk"], Some(&garbage));
    assert!(!o.status.success());
    assert!(err(&o).contains("invalid tar"), "{}", err(&o));
    // A truncated gzip stream too.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&std::fs::read(busybox_tar()).unwrap()).unwrap();
    let gz = enc.finish().unwrap();
    let o = d.docker_stdin(&["import", "-", "trunc"], Some(&gz[..gz.len() / 2]));
    assert!(!o.status.success());
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(std::fs::read_dir(d.data_root().join("image/layers")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(d.data_root().join("image/tmp")).unwrap().count(), 0);
}
