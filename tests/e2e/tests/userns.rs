//! `userns-remap`: root in a container is an unprivileged id on the host, for its init, its execs,
//! the files it writes and the namespaces it shares; `--userns=host` opts out as with Docker.
//!
//! Each test makes a throw-away system user with its own subordinate id range (and removes both),
//! as an operator would prepare one; `default` makes Docker's `dockremap`.

use std::process::Command;
use std::sync::Mutex;

use berth_e2e::{err, out, run_bounded, Berthd};

/// useradd and userdel lock /etc/passwd: one at a time within this binary.
static ACCOUNTS: Mutex<()> = Mutex::new(());

const RANGE: u32 = 65_536;

/// A system user with a subuid/subgid range, removed (with its ranges) on drop.
struct RemapUser {
    name: String,
    base: u32,
}

impl RemapUser {
    fn new() -> RemapUser {
        let n = berth_e2e::reserve_subnet().n;
        let name = format!("bt-remap-{n}");
        // Ranges far above any a distribution hands out, one per reservation.
        let base = 1_500_000_000 + n * RANGE;
        let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = sh(&["userdel", &name]);
        sh(&["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", &name]).unwrap();
        let range = format!("{base}-{}", base + RANGE - 1);
        sh(&["usermod", "--add-subuids", &range, "--add-subgids", &range, &name]).unwrap();
        RemapUser { name, base }
    }
}

impl Drop for RemapUser {
    fn drop(&mut self) {
        let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let range = format!("{}-{}", self.base, self.base + RANGE - 1);
        let _ = sh(&["usermod", "--del-subuids", &range, "--del-subgids", &range, &self.name]);
        let _ = sh(&["userdel", &self.name]);
    }
}

fn sh(args: &[&str]) -> Result<String, String> {
    let o = run_bounded(Command::new(args[0]).args(&args[1..]));
    if o.status.success() {
        Ok(out(&o))
    } else {
        Err(format!("{args:?}: {}", err(&o)))
    }
}

fn host_uid_of(pid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find(|l| l.starts_with("Uid:")).unwrap().split_whitespace().nth(1).unwrap().to_string()
}

fn daemon(u: &RemapUser) -> Berthd {
    let d = Berthd::start_with(&["--userns-remap", &u.name]);
    d.import_busybox("busybox");
    d
}

#[test]
fn remapped_root_is_not_host_root() {
    let u = RemapUser::new();
    let d = daemon(&u);
    let info = d.ok(&["info", "--format", "{{json .SecurityOptions}}"]);
    assert!(info.contains("name=userns"), "{info}");
    let map = d.ok(&["run", "--rm", "busybox", "cat", "/proc/self/uid_map"]);
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", &u.base.to_string(), "65536"]);

    // A host file only root may read, bound in: root in the container is not that root.
    let secret = d.root.join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let bind = format!("{}:/s", secret.display());
    let o = d.docker(&["run", "--rm", "-v", &bind, "busybox", "cat", "/s"]);
    assert!(!o.status.success(), "remapped root read a root-only host file: {}", out(&o));
    assert!(err(&o).contains("Permission denied"), "{}", err(&o));
    assert_eq!(d.ok(&["run", "--rm", "--userns=host", "-v", &bind, "busybox", "cat", "/s"]), "s3cret");
    // An image mount is seen unshifted, as the root is (root-owned files are root's in it).
    let img = d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=image,source=busybox,target=/img",
        "busybox",
        "stat",
        "-c",
        "%u %a",
        "/img/bin",
    ]);
    assert_eq!(img, d.ok(&["run", "--rm", "busybox", "stat", "-c", "%u %a", "/bin"]));

    d.ok(&["run", "-d", "--name", "cc", "-v", "data:/data", "busybox", "sleep", "1000"]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "cc"]);
    assert_eq!(host_uid_of(&pid), u.base.to_string(), "the init's host uid");
    // Execs join the user namespace too (libcontainer's tenant leaves it out), with their own user.
    assert_eq!(d.ok(&["exec", "cc", "cat", "/proc/self/uid_map"]), map);
    assert_eq!(d.ok(&["exec", "cc", "id", "-u"]), "0");
    assert_eq!(
        d.ok(&["exec", "-u", "1000:1000", "cc", "sh", "-c", "id -u; grep CapEff /proc/self/status"]),
        "1000\nCapEff:\t0000000000000000"
    );
    let o = d.docker(&["exec", "cc", "cat", "/s"]);
    assert!(!o.status.success());
    d.ok(&["exec", "cc", "sh", "-c", "touch /data/by-exec /by-exec && echo x >> /etc/hosts"]);
    d.ok(&["exec", "-u", "1000", "cc", "touch", "/tmp/by-1000"]);
    let vol = d.data_root().join("volumes/data/_data");
    let owner = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&vol.join("by-exec")), (u.base, u.base), "a file an exec wrote in a volume");
    assert_eq!(owner(&vol), (u.base, u.base), "a new volume belongs to the container's root");
    // In the rootfs, owners are stored unshifted: layers stay usable by any engine.
    let snap = d.data_root().join("snapshots").join(d.ok(&["inspect", "-f", "{{.Id}}", "cc"])).join("upper");
    assert_eq!(owner(&snap.join("by-exec")), (0, 0));
    assert_eq!(owner(&snap.join("tmp/by-1000")), (1000, 0));

    // docker cp both ways, in the container's ids.
    let f = d.root.join("cp-in");
    std::fs::write(&f, "in").unwrap();
    d.ok(&["cp", f.to_str().unwrap(), "cc:/tmp/"]);
    assert_eq!(d.ok(&["exec", "cc", "stat", "-c", "%u:%g", "/tmp/cp-in"]), "0:0");
    let tar = d.docker(&["cp", "cc:/tmp/by-1000", "-"]);
    let listing = tar_listing(&tar.stdout);
    assert!(listing.contains("1000/0"), "{listing}");
    let export = d.docker(&["export", "cc"]);
    let listing = tar_listing(&export.stdout);
    assert!(listing.lines().any(|l| l.starts_with("-rw-r--r-- 0/0") && l.ends_with(" by-exec")), "{listing}");
    let listing = tar_listing(&d.docker(&["cp", "cc:/data/by-exec", "-"]).stdout);
    assert!(listing.starts_with("-rw-r--r-- 0/0"), "a volume's file, as the container sees it: {listing}");

    // Commit: the layer has the container's ids.
    d.ok(&["commit", "cc", "committed"]);
    assert_eq!(d.ok(&["run", "--rm", "--userns=host", "committed", "stat", "-c", "%u", "/by-exec"]), "0");

    // Namespaces shared with a remapped container: its user namespace comes with them.
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "cc"]);
    let s = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:cc",
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/uid_map; ip -4 addr show eth0",
    ]);
    assert!(s.contains(&ip), "{s}");
    assert_eq!(s.lines().next().unwrap().split_whitespace().collect::<Vec<_>>()[1], u.base.to_string());
    let ps = d.ok(&["run", "--rm", "--pid", "container:cc", "busybox", "ps"]);
    assert!(ps.contains("sleep 1000"), "{ps}");

    // A device is bound from its host node (no node can be made in a user namespace).
    assert_eq!(
        d.ok(&["run", "--rm", "--device", "/dev/zero:/dev/z", "busybox", "sh", "-c", "head -c 2 /dev/z | od -An -c"]),
        "\\0  \\0"
    );

    // Docker's refusals, and the way out.
    for (args, want) in [
        (&["--privileged"][..], "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode"),
        (&["--network", "host"][..], "cannot share the host's network namespace when user namespaces are enabled"),
        (&["--pid", "host"][..], "cannot share the host PID namespace when user namespaces are enabled"),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend(["busybox", "true"]);
        let o = d.docker(&a);
        assert!(!o.status.success() && err(&o).contains(want), "{args:?}: {}", err(&o));
    }
    let map = d.ok(&["run", "--rm", "--userns=host", "--privileged", "busybox", "cat", "/proc/self/uid_map"]);
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"]);
    let o = d.docker(&["run", "--rm", "--userns=private", "busybox", "true"]);
    assert!(!o.status.success());

    // Nothing of the namespaces is left once the containers are gone.
    d.ok(&["rm", "-f", "cc"]);
    let left: Vec<_> = std::fs::read_dir(d.root.join("run/userns")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn remapped_builds_and_restarts() {
    let u = RemapUser::new();
    let mut d = daemon(&u);
    let ctx = d.root.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("f"), "f").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN touch /ran && cat /proc/self/uid_map > /map\nCOPY f /f\n",
    )
    .unwrap();
    let o = d.docker_env(&[("DOCKER_BUILDKIT", "0")], &["build", "-q", "-t", "built", ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let s = d.ok(&["run", "--rm", "built", "sh", "-c", "stat -c %u:%g /ran /f; cat /map"]);
    let lines: Vec<_> = s.lines().collect();
    assert_eq!(lines[..2], ["0:0", "0:0"]);
    assert_eq!(lines[2].split_whitespace().nth(1), Some(u.base.to_string().as_str()), "RUN ran remapped");

    // Live restore: a remapped container outlives a berthd restart, and execs still join it.
    d.ok(&["run", "-d", "--name", "rr", "busybox", "sleep", "1000"]);
    d.restart();
    let map = d.ok(&["exec", "rr", "cat", "/proc/self/uid_map"]);
    assert_eq!(map.split_whitespace().nth(1), Some(u.base.to_string().as_str()));
    d.ok(&["restart", "-t", "0", "rr"]);
    let map = d.ok(&["exec", "rr", "cat", "/proc/self/uid_map"]);
    assert_eq!(map.split_whitespace().nth(1), Some(u.base.to_string().as_str()));
    d.ok(&["rm", "-f", "rr"]);
}

#[test]
fn remap_settings_are_checked_at_start() {
    let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let t = tempfile::Builder::new().prefix("bt-").tempdir_in("/tmp").unwrap();
    let root = t.path().to_str().unwrap();
    for (value, want) in [
        ("bt-no-such-user", "no such user \"bt-no-such-user\" for userns-remap"),
        ("nobody", "no subuid ranges found for user \"nobody\""),
    ] {
        let o = run_bounded(
            Command::new(berth_e2e::bin_dir().join("berthd"))
                .args(["--data-root", &format!("{root}/data"), "--exec-root", &format!("{root}/run")])
                .args(["-H", &format!("unix://{root}/s.sock"), "--userns-remap", value]),
        );
        assert!(!o.status.success());
        assert!(err(&o).contains(want), "{value}: {}", err(&o));
        assert!(!t.path().join("data").exists(), "refused before anything is made");
    }
}

fn tar_listing(tar: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), tar).unwrap();
    sh(&["tar", "-tvf", f.path().to_str().unwrap(), "--numeric-owner"]).unwrap()
}

/// `--userns-remap default`: Docker's `dockremap` user, made with a range of its own when missing.
#[test]
fn default_makes_dockremap() {
    let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let existed = sh(&["getent", "passwd", "dockremap"]).is_ok();
    let d = Berthd::start_with(&["--userns-remap", "default"]);
    let ranges = std::fs::read_to_string("/etc/subuid").unwrap();
    let line = ranges.lines().find(|l| l.starts_with("dockremap:")).map(str::to_string);
    d.import_busybox("busybox");
    let map = d.ok(&["run", "--rm", "busybox", "cat", "/proc/self/uid_map"]);
    drop(d);
    if !existed {
        let _ = sh(&["userdel", "dockremap"]);
        let left = std::fs::read_to_string("/etc/subuid").unwrap();
        if let Some(l) = &line {
            let f: Vec<&str> = l.split(':').collect();
            let range = format!("{}-{}", f[1], f[1].parse::<u64>().unwrap() + f[2].parse::<u64>().unwrap() - 1);
            if left.contains(l.as_str()) {
                let _ = sh(&["usermod", "--del-subuids", &range, "--del-subgids", &range, "dockremap"]);
            }
        }
    }
    let line = line.expect("dockremap got a subuid range");
    let f: Vec<&str> = line.split(':').collect();
    assert_eq!(f[2], "65536");
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", f[1], "65536"]);
}
