//! Volumes and mounts through the docker CLI.

use berth_e2e::{err, out, Berthd};
use serde_json::Value;

fn daemon() -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d
}

#[test]
fn named_volume_outlives_containers_and_restarts() {
    let mut d = daemon();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(d.ok(&["volume", "create", "--label", "team=a", "data"]), "data");
    d.ok(&["run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo persisted > /data/f"]);
    assert_eq!(d.ok(&["run", "--rm", "-v", "data:/data:ro", "busybox", "cat", "/data/f"]), "persisted");
    let o = d.docker(&["run", "--rm", "-v", "data:/data:ro", "busybox", "sh", "-c", "echo x > /data/g"]);
    assert!(!o.status.success(), "a read-only volume accepted a write");
    assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
    let v: Value = serde_json::from_str(&d.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["Name"], "data");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Labels"]["team"], "a");
    assert_eq!(v[0]["Scope"], "local");
    assert!(v[0]["Mountpoint"].as_str().unwrap().ends_with("/volumes/data/_data"));
    // In use by a (stopped) container: 409; named volumes survive `rm -v`.
    d.ok(&["create", "--name", "holder", "-v", "data:/data", "busybox", "true"]);
    let o = d.docker(&["volume", "rm", "data"]);
    assert!(err(&o).contains("volume is in use"), "{}", err(&o));
    let c: Value = serde_json::from_str(&d.ok(&["inspect", "holder"])).unwrap();
    let m = &c[0]["Mounts"][0];
    assert_eq!(
        (m["Type"].as_str(), m["Name"].as_str(), m["Destination"].as_str(), m["RW"].as_bool()),
        (Some("volume"), Some("data"), Some("/data"), Some(true))
    );
    assert_eq!(m["Driver"], "local");
    d.stop();
    d.spawn();
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "data");
    assert_eq!(d.ok(&["run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"]), "persisted");
    d.ok(&["rm", "-v", "holder"]);
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", "label=team=a"]), "data");
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]), "data");
    d.ok(&["volume", "rm", "data"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
    let ev = d.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until,
        "--filter",
        "type=volume",
        "--format",
        "{{.Action}}",
    ]);
    // History is in memory, as Docker's: `create` happened before the restart.
    for a in ["mount", "unmount", "destroy"] {
        assert!(ev.lines().any(|l| l == a), "no volume {a} event in {ev:?}");
    }
    assert!(!d.data_root().join("volumes/data").exists());
    let o = d.docker(&["volume", "rm", "data"]);
    assert!(err(&o).contains("no such volume"), "{}", err(&o));
}

#[test]
fn copy_up_anonymous_and_prune() {
    let d = Berthd::start();
    let tar = berth_e2e::busybox_tar();
    // An image whose /etc holds content and that declares a VOLUME.
    d.ok(&["import", "-c", "VOLUME /etc", tar.to_str().unwrap(), "withvol"]);
    d.import_busybox("busybox");
    d.ok(&["volume", "create", "fresh"]);
    // A new named volume mounted over image content gets it copied in first.
    assert!(d.ok(&["run", "--rm", "-v", "fresh:/etc", "withvol", "cat", "/etc/passwd"]).contains("root:x:0:0"));
    assert!(std::fs::read_to_string(d.data_root().join("volumes/fresh/_data/passwd")).unwrap().contains("root"));
    // nocopy leaves it empty.
    d.ok(&["volume", "create", "empty"]);
    let o = d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=empty,dst=/etc,volume-nocopy",
        "withvol",
        "ls",
        "-A",
        "/etc",
    ]);
    assert_eq!(o, "");
    // Image VOLUMEs and `-v /path` make anonymous volumes; `--rm` removes them.
    d.ok(&["run", "--rm", "-v", "/scratch", "withvol", "true"]);
    d.ok(&["run", "--name", "keep", "-v", "/scratch", "withvol", "true"]);
    let anon: Vec<String> = d.ok(&["volume", "ls", "-q"]).lines().filter(|l| l.len() == 64).map(String::from).collect();
    assert_eq!(anon.len(), 2, "the kept container's two anonymous volumes (VOLUME /etc and -v /scratch)");
    // Prune: only anonymous, unused ones; the container still holds its own.
    let o = d.ok(&["volume", "prune", "-f"]);
    assert!(!o.contains("fresh"));
    assert_eq!(d.ok(&["volume", "ls", "-q"]).lines().filter(|l| l.len() == 64).count(), 2);
    d.ok(&["rm", "keep"]);
    let o = d.ok(&["volume", "prune", "-f"]);
    assert!(o.contains(&anon[0]) && o.contains(&anon[1]), "{o}");
    let mut left: Vec<String> = d.ok(&["volume", "ls", "-q"]).lines().map(String::from).collect();
    left.sort();
    assert_eq!(left, ["empty", "fresh"]);
    d.ok(&["volume", "prune", "-f", "--all"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    // `rm -v` removes a container's anonymous volumes.
    d.ok(&["create", "--name", "anon", "-v", "/x", "busybox", "true"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    d.ok(&["rm", "-v", "anon"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn binds_tmpfs_and_mount_flag() {
    let d = daemon();
    let host = d.root.join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("hello"), "from host").unwrap();
    let h = host.to_str().unwrap();
    assert_eq!(d.ok(&["run", "--rm", "-v", &format!("{h}:/mnt"), "busybox", "cat", "/mnt/hello"]), "from host");
    d.ok(&["run", "--rm", "-v", &format!("{h}:/mnt"), "busybox", "sh", "-c", "echo back > /mnt/out"]);
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "back\n");
    let o = d.docker(&["run", "--rm", "-v", &format!("{h}:/mnt:ro"), "busybox", "touch", "/mnt/x"]);
    assert!(!o.status.success());
    // -v creates a missing host folder; --mount refuses one.
    let missing = d.root.join("made-by-v");
    d.ok(&["run", "--rm", "-v", &format!("{}:/m", missing.display()), "busybox", "true"]);
    assert!(missing.is_dir());
    let o = d.docker(&["run", "--rm", "--mount", &format!("type=bind,src={}/nope,dst=/m", h), "busybox", "true"]);
    assert!(err(&o).contains("bind source path does not exist"), "{}", err(&o));
    assert_eq!(
        d.ok(&["run", "--rm", "--mount", &format!("type=bind,src={h},dst=/m,readonly"), "busybox", "cat", "/m/hello"]),
        "from host"
    );
    // tmpfs: empty, in memory, with its size.
    let o = d.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m",
        "busybox",
        "sh",
        "-c",
        "ls -A /scratch; grep ' /scratch ' /proc/mounts",
    ]);
    assert!(o.starts_with("tmpfs /scratch tmpfs") && o.contains("size=1024k"), "{o}");
    let o = d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=2097152",
        "busybox",
        "grep",
        " /t ",
        "/proc/mounts",
    ]);
    assert!(o.contains("size=2048k"), "{o}");
    // A volume mount with a subpath.
    d.ok(&["volume", "create", "sub"]);
    d.ok(&["run", "--rm", "-v", "sub:/v", "busybox", "sh", "-c", "mkdir -p /v/inner && echo deep > /v/inner/f"]);
    assert_eq!(
        d.ok(&["run", "--rm", "--mount", "type=volume,src=sub,dst=/s,volume-subpath=inner", "busybox", "cat", "/s/f"]),
        "deep"
    );
    // --volumes-from
    d.ok(&["create", "--name", "src", "-v", "sub:/shared", "busybox", "true"]);
    assert_eq!(d.ok(&["run", "--rm", "--volumes-from", "src:ro", "busybox", "cat", "/shared/inner/f"]), "deep");
    let o = d.docker(&["run", "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/shared/x"]);
    assert!(!o.status.success());
    d.ok(&["rm", "src"]);
    d.ok(&["volume", "rm", "sub"]);
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

#[test]
fn driver_options_and_bad_input() {
    let d = daemon();
    d.ok(&["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=1m", "mem"]);
    let o = d.ok(&["run", "--rm", "-v", "mem:/m", "busybox", "sh", "-c", "echo hi > /m/f; grep ' /m ' /proc/mounts"]);
    assert!(o.starts_with("tmpfs /m tmpfs"), "{o}");
    // Unmounted again when the last user stops: the data lived in memory only.
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
    let src = d.root.join("bindsrc");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), "bound").unwrap();
    d.ok(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        &format!("device={}", src.display()),
        "bound",
    ]);
    assert_eq!(d.ok(&["run", "--rm", "-v", "bound:/b", "busybox", "cat", "/b/a"]), "bound");
    for bad in ["a", "../x", "x/y", ".hidden"] {
        let o = d.docker(&["volume", "create", bad]);
        assert!(!o.status.success(), "{bad} accepted");
        assert!(err(&o).contains("includes invalid characters for a local volume name"), "{bad}: {}", err(&o));
    }
    let o = d.docker(&["run", "--rm", "-v", "rel/path:/x", "busybox", "true"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("If you intended to pass a host directory, use absolute path"), "{}", err(&o));
    let o = d.docker(&["run", "--rm", "--mount", "type=bind,src=relative,dst=/x", "busybox", "true"]);
    assert!(!o.status.success());
    let o = d.docker(&["volume", "create", "-d", "nfs-plugin", "x1"]);
    assert!(err(&o).contains("not found"), "{}", err(&o));
    let o = d.docker(&["run", "--rm", "-v", "/a:/same", "-v", "/b:/same", "busybox", "true"]);
    assert!(err(&o).contains("Duplicate mount point"), "{}", err(&o));
    // docker system df lists volumes with their sizes.
    let o = d.ok(&["system", "df", "-v"]);
    assert!(o.contains("mem") && o.contains("bound"), "{o}");
    let df = d.docker(&["system", "df", "--format", "{{.Type}}"]);
    assert!(out(&df).contains("Local Volumes"), "{}", out(&df));
}

/// Bind recursion as Docker 25+: a bind carries the mounts under its source, a read-only bind is
/// read-only all the way down, `bind-recursive=disabled` (NonRecursive) leaves the submounts out and
/// `bind-recursive=writable` (ReadOnlyNonRecursive) makes only the top read-only. These options were
/// accepted and ignored before.
#[test]
fn bind_recursion_options_are_applied() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let src = d.root.join("bindsrc");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    /// The tmpfs under the bind source, unmounted however the test ends.
    struct Sub(std::path::PathBuf);
    impl Drop for Sub {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let sub = Sub(src.join("sub"));
    assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&sub.0).status().unwrap().success());
    let run = |opts: &str, cmd: &str| {
        let m = format!("type=bind,src={},dst=/m{opts}", src.display());
        d.ok(&["run", "--rm", "--mount", &m, "busybox", "sh", "-c", cmd])
    };
    let has_sub = "grep -c ' /m/sub ' /proc/self/mounts || true";
    assert_eq!(run("", has_sub), "1");
    assert_eq!(run(",bind-recursive=disabled", has_sub), "0");
    let writes = "touch /m/top 2>/dev/null && echo top-rw || echo top-ro; touch /m/sub/x 2>/dev/null && echo sub-rw || echo sub-ro";
    assert_eq!(run(",readonly", writes), "top-ro\nsub-ro");
    assert_eq!(run(",readonly,bind-recursive=writable", writes), "top-ro\nsub-rw");
    assert_eq!(run("", writes), "top-rw\nsub-rw");
    drop(sub);
}

/// `TmpfsOptions.Options` (API 1.46) is applied: `exec` lifts the default `noexec`; an option that
/// could widen the container's reach (`suid`) is refused, not dropped.
#[test]
fn tmpfs_options_are_applied() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let create = |opts: serde_json::Value| {
        let body = serde_json::json!({
            "Image": "busybox",
            "Cmd": ["sh", "-c", "cp /bin/busybox /t/true && /t/true && echo ran || echo refused"],
            "HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": opts}}]},
        });
        rt.block_on(d.client().call(hyper::Method::POST, "/containers/create", Some(&body)))
            .map(|v| v["Id"].as_str().unwrap().to_string())
    };
    let exec = create(serde_json::json!([["exec"]])).expect("create");
    assert_eq!(d.ok(&["start", "-a", &exec]), "ran");
    let plain = create(serde_json::json!([])).expect("create");
    assert_eq!(d.ok(&["start", "-a", &plain]), "refused");
    let e = create(serde_json::json!([["suid"]])).expect_err("suid accepted");
    assert!(format!("{e:#}").contains("unsupported tmpfs option"), "{e:#}");
    d.ok(&["rm", &exec, &plain]);
}

/// `--mount type=image` (API 1.48): an image's files, read-only, whole or from a subpath resolved
/// inside the image (a symlink in it cannot lead to the host), gone with the container.
#[test]
fn image_mounts() {
    let d = daemon();
    let df = b"FROM busybox\nRUN mkdir -p /srv/sub && echo hi > /srv/sub/f && ln -s / /srv/escape\n";
    let o = d.docker_stdin(&["build", "-q", "-t", "data", "-"], Some(df));
    assert!(o.status.success(), "{}", err(&o));
    let run = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend(args);
        d.docker(&a)
    };
    let o = run(&["--mount", "type=image,source=data,target=/img", "busybox", "cat", "/img/srv/sub/f"]);
    assert_eq!(out(&o), "hi\n", "{}", err(&o));
    let o = run(&["--mount", "type=image,source=data,target=/img,image-subpath=srv/sub", "busybox", "cat", "/img/f"]);
    assert_eq!(out(&o), "hi\n", "{}", err(&o));
    // Read-only, whatever was asked.
    let o = run(&["--mount", "type=image,source=data,target=/img", "busybox", "touch", "/img/x"]);
    assert!(!o.status.success() && err(&o).contains("Read-only file system"), "{}", err(&o));
    // A subpath through a symlink to `/` stays in the image: its root, not the host's.
    let o = run(&[
        "--mount",
        "type=image,source=data,target=/img,image-subpath=srv/escape",
        "busybox",
        "ls",
        "/img/srv/sub",
    ]);
    assert_eq!(out(&o), "f\n", "{}", err(&o));
    let o = run(&["--mount", "type=image,source=data,target=/img,image-subpath=../x", "busybox", "true"]);
    assert!(!o.status.success() && err(&o).contains("subpath must be a relative path"), "{}", err(&o));
    // The image must be here: a 404, as moby (the docker CLI would then pull the container's
    // image and try again; there is no registry here, so ask the API).
    let body = serde_json::json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Mounts": [{"Type": "image", "Source": "nosuch", "Target": "/img"}]}});
    let (code, v) = d.api_at("1.48", "POST", "/containers/create", Some(&body));
    assert_eq!(code, 404, "{v}");
    assert!(v["message"].as_str().unwrap().contains("No such image: nosuch"), "{v}");
    // Inspect as moby: the image as asked, its id, read-only; nothing mounted once it is gone.
    let id = d.ok(&["run", "-d", "--mount", "type=image,source=data,target=/img", "busybox", "sleep", "300"]);
    let m: Value = serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Mounts}}", &id])).unwrap();
    assert_eq!(
        (m[0]["Type"].as_str(), m[0]["Name"].as_str(), m[0]["RW"].as_bool()),
        (Some("image"), Some("data"), Some(false))
    );
    assert!(m[0]["Source"].as_str().unwrap().starts_with("sha256:"), "{m}");
    assert!(d.mounts().iter().any(|p| p.contains("-image-")), "{:?}", d.mounts());
    d.ok(&["restart", "-t", "0", &id]);
    assert_eq!(d.ok(&["exec", &id, "cat", "/img/srv/sub/f"]), "hi");
    d.ok(&["rm", "-f", &id]);
    assert!(!d.mounts().iter().any(|p| p.contains("-image-")), "{:?}", d.mounts());
    assert!(!std::fs::read_dir(d.data_root().join("snapshots"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("-image-")));
}
