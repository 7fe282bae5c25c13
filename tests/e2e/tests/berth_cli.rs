//! The `berth` CLI, first cut, against berthd.

use berth_e2e::{busybox_tar, err, out, Berthd};

#[test]
fn berth_commands() {
    let d = Berthd::start();
    let o = d.berth(&["version"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("API version: 1.44"));
    let o = d.berth(&["import", busybox_tar().to_str().unwrap(), "bb"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).starts_with("sha256:"));
    let o = d.berth(&["images"]);
    assert!(out(&o).lines().next().unwrap().starts_with("REPOSITORY"));
    assert!(out(&o).contains("bb "), "{}", out(&o));
    let o = d.berth(&["info"]);
    assert!(out(&o).contains("Images: 1"), "{}", out(&o));
    let o = d.berth(&["run", "--rm", "bb", "sh", "-c", "echo hi; echo oops >&2; exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(out(&o), "hi\n");
    assert_eq!(err(&o), "oops\n");
    let o = d.berth(&["run", "--rm", "bb", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127));
    let o = d.berth(&["run", "-d", "--name", "bg", "bb", "sh", "-c", "echo started; sleep 100"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim().len(), 64);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = d.berth(&["ps"]);
    assert!(out(&o).contains("bg"), "{}", out(&o));
    assert!(out(&o).contains("Up "), "{}", out(&o));
    let o = d.berth(&["logs", "bg"]);
    assert_eq!(out(&o), "started\n");
    let o = d.berth(&["stop", "-t", "1", "bg"]);
    assert_eq!(out(&o), "bg\n", "{}", err(&o));
    let o = d.berth(&["ps", "-a", "--filter", "status=exited"]);
    assert!(out(&o).contains("Exited (137)"), "{}", out(&o));
    let o = d.berth(&["rm", "bg"]);
    assert!(o.status.success());
    let o = d.berth(&["rm", "bg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("No such container: bg"), "{}", err(&o));
    // docker and berth agree on what they see.
    assert_eq!(d.ok(&["images", "-q"]), out(&d.berth(&["images", "-q"])).trim());
}
