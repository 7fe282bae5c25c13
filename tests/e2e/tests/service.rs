//! berthd as a system service: socket activation (`-H fd://NAME`), the sd_notify readiness
//! protocol, and the packaged systemd units.

use berth_e2e::*;
use std::process::Command;

fn next_notice(d: &Berthd) -> String {
    let mut buf = [0u8; 4096];
    let n = d.notify.as_ref().expect("activated").recv(&mut buf).expect("an sd_notify message within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn socket_activated_and_notifying() {
    let mut d = Berthd::start_activated();
    // The first message is readiness, sent once the API answers, naming berthd as the main pid
    // (socket-activate execs berthd in place: same pid as the child the harness holds).
    let ready = next_notice(&d);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.lines().any(|l| l == format!("MAINPID={}", d.pid())), "{ready} (pid {})", d.pid());
    // A whole container life cycle over the inherited socket.
    d.import_busybox("busybox:latest");
    let o = d.docker(&["run", "--rm", "busybox", "echo", "through fd://"]);
    assert_eq!(out(&o).trim(), "through fd://", "{}", err(&o));
    // The variables were for berthd only: nothing it starts inherits them.
    let o = d.docker(&["run", "--rm", "busybox", "env"]);
    assert!(!out(&o).contains("LISTEN_"), "{}", out(&o));

    d.stop();
    assert_eq!(next_notice(&d).trim(), "STOPPING=1");
    // Activated again (a restart of berth.service), the state is all there.
    d.spawn();
    assert!(next_notice(&d).contains("READY=1"));
    assert!(d.ok(&["images", "-q"]).lines().count() == 1);
}

#[test]
fn an_fd_host_without_activation_is_a_clear_error() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let o = run_bounded(
        Command::new(bin_dir().join("berthd"))
            .args(["-H", "fd://berth.sock"])
            .args(["--data-root", dir.path().join("data").to_str().unwrap()])
            .args(["--exec-root", dir.path().join("run").to_str().unwrap()])
            .args(["--config-file", dir.path().join("none.json").to_str().unwrap()]),
    );
    assert!(!o.status.success());
    assert!(err(&o).contains("fd://berth.sock: no such socket from systemd"), "{}", err(&o));
}

/// The units the package installs pass `systemd-analyze verify` (with ExecStart pointing at the
/// built binaries: verify checks that they exist), with no warning at all.
#[test]
fn packaged_units_verify() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let src = workspace().join("packaging/systemd");
    let mut units = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let text = text.replace("/usr/bin/", &format!("{}/", bin_dir().display()));
        let dst = dir.path().join(e.file_name());
        std::fs::write(&dst, text).unwrap();
        units.push(dst);
    }
    assert!(units.len() >= 3, "{units:?}");
    let o = run_bounded(Command::new("systemd-analyze").arg("verify").args(&units));
    assert!(o.status.success() && err(&o).trim().is_empty(), "{}\n{}", out(&o), err(&o));
    let service = std::fs::read_to_string(src.join("berth.service")).unwrap();
    for must in ["Type=notify", "KillMode=process", "Delegate=yes", "TasksMax=infinity", "-H fd://"] {
        assert!(service.contains(must), "berth.service lacks {must}");
    }
}
