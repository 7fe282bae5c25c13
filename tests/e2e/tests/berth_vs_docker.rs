//! `berth` against the real docker CLI on one berthd: the same scenario through both gives the same
//! effect and output; TLS, ssh and contexts reach other daemons; terminals behave under a pty.

use std::path::Path;
use std::process::{Command, Output};

use berth_e2e::{bin_dir, err, out, Berthd, Bounded};

fn berth_ok(d: &Berthd, args: &[&str]) -> String {
    let o = d.berth(args);
    assert!(o.status.success(), "berth {args:?} failed ({}):\n{}\n{}", o.status, out(&o), err(&o));
    out(&o)
}

/// Runs the same arguments through both CLIs and asserts equal stdout and exit codes.
/// The same command through berth and docker: both succeed, with the same output. (Comparing alone
/// passed when both failed alike.)
fn same(d: &Berthd, args: &[&str]) -> String {
    let (a, b) = (d.berth(args), d.docker(args));
    assert!(b.status.success(), "docker {args:?} failed: {}", err(&b));
    assert!(a.status.success(), "berth {args:?} failed: {}", err(&a));
    assert_eq!(out(&a), out(&b), "stdout differs for {args:?}\nberth stderr: {}\ndocker stderr: {}", err(&a), err(&b));
    out(&a)
}

/// The same failing command through both: the same exit code and the same stdout.
fn same_failure(d: &Berthd, args: &[&str]) {
    let (a, b) = (d.berth(args), d.docker(args));
    assert!(!b.status.success(), "docker {args:?} succeeded");
    assert_eq!(a.status.code(), b.status.code(), "exit codes differ for {args:?}: {} / {}", err(&a), err(&b));
    assert_eq!(out(&a), out(&b), "stdout differs for {args:?}");
}

#[test]
fn container_and_image_commands_match_docker() {
    let d = Berthd::start();
    d.import_busybox("bb");
    d.ok(&["run", "-d", "--name", "web", "-p", "127.0.0.1::80", "-e", "A=1", "-l", "tier=front", "bb", "sleep", "300"]);
    berth_ok(&d, &["create", "--name", "idle", "--memory", "32m", "--restart", "on-failure:2", "bb", "true"]);
    let o = d.berth(&["run", "--name", "done", "bb", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((o.status.code(), out(&o), err(&o)), (Some(3), "out\n".into(), "err\n".into()));

    // Listings through templates (all but the time columns, which tick) and docker's table.
    same(&d, &["ps", "-a", "--format", "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Ports}}\t{{.Names}}"]);
    same(&d, &["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Labels}} {{.State}} {{.Networks}}"]);
    same(&d, &["ps", "-q"]);
    same(&d, &["ps", "--format", "{{.Names}} {{.Label \"tier\"}}"]);
    same(&d, &["ps", "-a", "--filter", "name=idle", "--format", "{{json .Names}}"]);
    same(&d, &["images", "--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}"]);
    same(&d, &["images", "-q"]);
    same(&d, &["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    same(&d, &["network", "ls"]);
    same(&d, &["volume", "ls"]);
    same(&d, &["history", "--format", "{{.ID}} {{.Size}} {{.CreatedBy}}", "bb"]);

    // Inspect and friends.
    let tmpl = "{{.Name}} {{.State.Status}} {{.HostConfig.Memory}} {{json .Config.Env}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}} {{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}{{index .Config.Cmd 0}}";
    same(&d, &["inspect", "-f", tmpl, "web", "idle"]);
    same(&d, &["container", "inspect", "--format", "{{.State.ExitCode}}", "done"]);
    same(&d, &["inspect", "--format", "{{.Id}}", "bb"]);
    same_failure(&d, &["inspect", "nosuch"]);
    same(&d, &["image", "inspect", "-f", "{{.Config.Cmd}}", "bb"]);
    same(&d, &["port", "web"]);
    same(&d, &["port", "web", "80"]);
    same(&d, &["top", "web"]);
    same(&d, &["logs", "done"]);
    same(&d, &["logs", "--tail", "1", "web"]);
    same(&d, &["version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}"]);
    same(&d, &["info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.Images}} {{.Driver}}"]);

    // exec: output, exit code, -e/-w/-u.
    same(&d, &["exec", "-e", "X=5", "-w", "/tmp", "-u", "1:1", "web", "sh", "-c", "echo $X $(pwd) $(id -u)"]);
    same_failure(&d, &["exec", "web", "sh", "-c", "exit 9"]);
    same_failure(&d, &["exec", "idle", "true"]);

    // cp both ways, diff, commit, history.
    let local = d.root.join("cp-src");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    std::fs::write(local.join("sub/f"), "payload\n").unwrap();
    berth_ok(&d, &["cp", local.to_str().unwrap(), "web:/tmp/in"]);
    assert_eq!(d.ok(&["exec", "web", "cat", "/tmp/in/sub/f"]), "payload");
    let back = d.root.join("cp-back");
    berth_ok(&d, &["cp", "web:/tmp/in", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(back.join("sub/f")).unwrap(), "payload\n");
    berth_ok(&d, &["cp", "web:/tmp/in/sub/f", d.root.join("one").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(d.root.join("one")).unwrap(), "payload\n");
    same(&d, &["diff", "web"]);
    let id = berth_ok(&d, &["commit", "-m", "snap", "-c", "ENV Z=1", "web", "snap:1"]);
    assert!(id.starts_with("sha256:"), "{id}");
    same(&d, &["inspect", "-f", "{{.Comment}} {{.Config.Env}}", "snap:1"]);

    // Lifecycle: rename, pause, wait, kill, restart, rm.
    berth_ok(&d, &["rename", "idle", "idle2"]);
    berth_ok(&d, &["pause", "web"]);
    same(&d, &["inspect", "-f", "{{.State.Status}}", "web"]);
    berth_ok(&d, &["unpause", "web"]);
    assert_eq!(berth_ok(&d, &["wait", "done"]), "3\n");
    berth_ok(&d, &["start", "idle2"]);
    assert_eq!(berth_ok(&d, &["wait", "idle2"]), "0\n");
    assert_eq!(berth_ok(&d, &["kill", "-s", "TERM", "web"]), "web\n");
    same(&d, &["inspect", "-f", "{{.State.Running}}", "web"]);

    // Stats on a running container: docker's columns and figures.
    d.ok(&["start", "web"]);
    let s = berth_ok(&d, &["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}"]);
    assert!(s.starts_with("web 1 ") && s.contains(" / "), "{s}");
    // Streaming: the table keeps coming from per-container streams until the client is stopped.
    let mut child = Command::new(bin_dir().join("berth"))
        .env("BERTH_HOST", d.host())
        .args(["stats", "--format", "{{.Name}} {{.PIDs}}", "web"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read until the second redraw (the client's deadline bounds it), then stop the client.
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut seen, mut line) = (0, String::new());
    while seen < 2 {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0, "stats stream ended");
        // Redraws start with the terminal's clear-screen sequence; the row is what follows.
        if line.trim_end().ends_with("web 1") {
            seen += 1;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    let s = berth_ok(&d, &["stats", "--no-stream", "web"]);
    assert!(s.starts_with("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT"), "{s}");

    // save → rmi → load, export.
    let tar = d.root.join("bb.tar");
    berth_ok(&d, &["save", "-o", tar.to_str().unwrap(), "snap:1"]);
    berth_ok(&d, &["rmi", "snap:1"]);
    assert!(berth_ok(&d, &["load", "-i", tar.to_str().unwrap()]).contains("Loaded image: snap:1"));
    same(&d, &["images", "--format", "{{.Repository}}:{{.Tag}}", "snap"]);
    let exp = d.root.join("web.tar");
    berth_ok(&d, &["export", "-o", exp.to_str().unwrap(), "web"]);
    let listing = Command::new("tar").arg("tf").arg(&exp).bounded();
    assert!(out(&listing).lines().any(|l| l.trim_start_matches("./") == "etc/passwd"), "{}", out(&listing));

    // Events between two fixed times read the same through both CLIs.
    let now = chrono_now();
    same(&d, &["events", "--since", "0", "--until", &now]);
    same(
        &d,
        &[
            "events",
            "--since",
            "0",
            "--until",
            &now,
            "--filter",
            "event=create",
            "--format",
            "{{.Actor.Attributes.name}}",
        ],
    );
    same(&d, &["system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"]);

    // Prunes and removal.
    d.ok(&["stop", "-t", "0", "web"]);
    same(&d, &["container", "prune", "-f", "--filter", "label=none=1"]);
    let pruned = berth_ok(&d, &["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:") && pruned.contains("Total reclaimed space:"), "{pruned}");
    same(&d, &["ps", "-aq"]);

    // Bad input: docker's messages' shape and exit codes.
    for args in [&["run", "--nosuch", "bb"][..], &["nosuchcmd"], &["rm"], &["ps", "--last", "x"], &["rm", "nosuch"]] {
        let (a, b) = (d.berth(args), d.docker(args));
        assert_eq!(a.status.code(), b.status.code(), "{args:?}: {} / {}", err(&a), err(&b));
    }
    assert!(err(&d.berth(&["run", "--nosuch", "bb"])).starts_with("unknown flag: --nosuch"));
}

fn chrono_now() -> String {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string()
}

use berth_e2e::free_port;

fn cli(bin: &str, cfg: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(bin);
    c.env("BERTH_CONFIG", cfg).env("DOCKER_CONFIG", cfg);
    for k in ["BERTH_HOST", "DOCKER_HOST", "BERTH_CONTEXT", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"] {
        c.env_remove(k);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.args(args).bounded()
}

#[test]
fn tls_listener_serves_both_clients_with_client_certificates() {
    let tmp = tempfile::Builder::new().prefix("bt-tls-").tempdir_in("/tmp").unwrap();
    let certs = tmp.path().join("certs");
    berth_e2e::make_certs(&certs);
    let p = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let port = free_port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let d = Berthd::start_with(&[
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("server-cert.pem"),
        "--tlskey",
        &p("server-key.pem"),
    ]);
    d.import_busybox("bb");
    let cfg = tmp.path().join("cfg");
    let berth = bin_dir().join("berth");
    let berth = berth.to_str().unwrap();
    let tls_flags =
        ["--tlsverify", "--tlscacert", &p("ca.pem"), "--tlscert", &p("cert.pem"), "--tlskey", &p("key.pem")];
    let with = |bin: &str, extra: &[&str]| {
        let mut a: Vec<&str> = vec!["-H", &tcp];
        a.extend(tls_flags);
        a.extend(extra);
        cli(bin, &cfg, &[], &a)
    };
    for bin in ["docker", berth] {
        let o = with(bin, &["run", "--rm", "bb", "echo", "over-tls"]);
        assert!(o.status.success(), "{bin}: {}", err(&o));
        assert_eq!(out(&o), "over-tls\n", "{bin}");
        let o = with(bin, &["version", "--format", "{{.Server.APIVersion}}"]);
        assert_eq!(out(&o).trim(), "1.56", "{bin}: {}", err(&o));
    }
    // No client certificate, or no TLS at all: refused.
    let o = cli(berth, &cfg, &[], &["-H", &tcp, "--tlsverify", "--tlscacert", &p("ca.pem"), "ps"]);
    assert!(!o.status.success(), "a client without a certificate got in");
    let o = cli(berth, &cfg, &[], &["-H", &tcp, "ps"]);
    assert!(!o.status.success(), "plain HTTP got in");
    // DOCKER_TLS_VERIFY + DOCKER_CERT_PATH, as docker reads them.
    let env = [("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", certs.to_str().unwrap())];
    let o = cli(berth, &cfg, &env, &["-H", &tcp, "ps", "-a", "--format", "{{.ID}}"]);
    assert!(o.status.success(), "{}", err(&o));
    // A context carrying the TLS material, stored where docker keeps it: both CLIs use it.
    let ep = format!("host={tcp},ca={},cert={},key={}", p("ca.pem"), p("cert.pem"), p("key.pem"));
    let o = cli(berth, &cfg, &[], &["context", "create", "secure", "--docker", &ep]);
    assert!(o.status.success(), "{}", err(&o));
    for bin in ["docker", berth] {
        let o = cli(bin, &cfg, &[], &["--context", "secure", "images", "--format", "{{.Repository}}"]);
        assert_eq!(out(&o).trim(), "bb", "{bin}: {}", err(&o));
    }
}

#[test]
fn ssh_hosts_run_dial_stdio_on_the_remote_side() {
    let d = Berthd::start();
    d.import_busybox("bb");
    d.ok(&["create", "--name", "far", "bb", "true"]);
    // A stand-in for ssh that "logs in" locally: drops its options and the target, runs the command
    // with the remote's daemon in the environment.
    let fake = d.root.join("fake-ssh");
    let script = format!(
        "#!/bin/sh\nwhile [ \"$1\" != \"--\" ]; do shift; done\nshift; echo \"$1\" >> {log}\nshift\nPATH={bin}:$PATH BERTH_HOST={host} exec \"$@\"\n",
        log = d.root.join("ssh.log").display(),
        bin = bin_dir().display(),
        host = d.host()
    );
    std::fs::write(&fake, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = d.root.join("ssh-cfg");
    let env = [("BERTH_SSH", fake.to_str().unwrap())];
    let berth = bin_dir().join("berth");
    let o =
        cli(berth.to_str().unwrap(), &cfg, &env, &["-H", "ssh://me@far-host", "ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(out(&o), "far\n", "{}", err(&o));
    let o = cli(
        berth.to_str().unwrap(),
        &cfg,
        &env,
        &["-H", "ssh://me@far-host:2222", "run", "--rm", "bb", "echo", "via-ssh"],
    );
    assert_eq!(out(&o), "via-ssh\n", "{}", err(&o));
    let log = std::fs::read_to_string(d.root.join("ssh.log")).unwrap();
    assert!(log.lines().all(|l| l == "me@far-host"), "{log}");
}

/// Runs `cmd` under a pseudo-terminal (util-linux `script`). Each step waits until the output
/// holds its text at least `n` times (a prompt, an echo), then types its input: no guessed delays.
/// Returns once the command exits (the client deadline bounds the wait).
fn under_pty(cmd: &str, steps: &[(&str, usize, &str)]) -> Output {
    use std::io::{Read, Write};
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    for (expect, n, input) in steps {
        berth_e2e::eventually(&format!("{expect:?} ×{n} on the terminal"), || {
            String::from_utf8_lossy(&seen.lock().unwrap()).matches(expect).count() >= *n
        });
        let _ = stdin.write_all(input.as_bytes());
        let _ = stdin.flush();
    }
    berth_e2e::eventually("the command under the pty to exit", || child.try_wait().unwrap().is_some());
    drop(stdin);
    let status = child.wait().unwrap();
    let _ = reader.join();
    let mut stderr = Vec::new();
    let _ = child.stderr.take().unwrap().read_to_end(&mut stderr);
    let stdout = seen.lock().unwrap().clone();
    Output { status, stdout, stderr }
}

#[test]
fn run_it_attach_and_detach_under_a_pty() {
    let d = Berthd::start();
    d.import_busybox("bb");
    let berth = format!("BERTH_HOST={} {}", d.host(), bin_dir().join("berth").display());
    let o = under_pty(
        &format!("stty cols 91 rows 33; {berth} run -it --rm bb sh -c 'tty; sleep 0.5; stty size; exit 7'"),
        &[],
    );
    assert_eq!(o.status.code(), Some(7), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("/dev/pts/"), "{}", out(&o));
    assert!(out(&o).contains("33 91"), "window size not sent: {}", out(&o));
    // ctrl-p ctrl-q detaches and leaves the container running; attach joins it again.
    let o = under_pty(
        &format!("{berth} run -it --name det bb sh"),
        &[("# ", 1, "echo typed-in\r"), ("typed-in", 2, "\x10\x11")],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("typed-in"), "{}", out(&o));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "det"]), "true");
    let o = under_pty(&format!("{berth} attach det"), &[("", 0, "echo again\r"), ("again", 2, "exit 3\r")]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("again"), "{}", out(&o));
    // SIGTERM to the client while the terminal is raw: the terminal comes back as it was.
    let script = format!(
        "stty -g > {d}/before; {berth} run -it --rm --name term bb sh & pid=$!; sleep 1.5; kill -TERM $pid; wait $pid; echo code=$?; stty -g > {d}/after",
        d = d.root.display()
    );
    let o = under_pty(&script, &[]);
    assert!(out(&o).contains("code=143"), "{}{}", out(&o), err(&o));
    let (before, after) =
        (std::fs::read_to_string(d.root.join("before")), std::fs::read_to_string(d.root.join("after")));
    assert_eq!(before.unwrap(), after.unwrap(), "terminal settings not restored");
    // exec -it into a running container.
    d.ok(&["run", "-d", "--name", "bg", "bb", "sleep", "60"]);
    let o = under_pty(
        &format!("{berth} exec -it bg sh"),
        &[("# ", 1, "echo inside-$((6*7))\r"), ("inside-42", 1, "exit 4\r")],
    );
    assert_eq!(o.status.code(), Some(4), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("inside-42"), "{}", out(&o));
    d.ok(&["rm", "-f", "bg", "det", "term"]);
}

#[test]
fn help_completion_and_management_forms() {
    let d = Berthd::start();
    let o = d.berth(&["completion", "bash"]);
    assert!(o.status.success() && out(&o).contains("_berth"), "{}", err(&o));
    for shell in ["zsh", "fish"] {
        assert!(d.berth(&["completion", shell]).status.success());
    }
    for cmd in [
        "run",
        "create",
        "exec",
        "ps",
        "images",
        "build",
        "pull",
        "push",
        "cp",
        "stats",
        "top",
        "logs",
        "commit",
        "save",
        "load",
        "events",
        "inspect",
        "container",
        "image",
        "network",
        "volume",
        "system",
        "context",
    ] {
        let o = d.berth(&[cmd, "--help"]);
        assert!(o.status.success() && !out(&o).is_empty(), "{cmd} --help: {}", err(&o));
    }
    // Management forms and shortcuts are the same commands.
    d.import_busybox("bb");
    assert_eq!(berth_ok(&d, &["container", "ls", "-aq"]), berth_ok(&d, &["ps", "-aq"]));
    assert_eq!(berth_ok(&d, &["image", "ls", "-q"]), berth_ok(&d, &["images", "-q"]));
    assert_eq!(berth_ok(&d, &["system", "info", "--format", "{{.Images}}"]), "1\n");
    berth_ok(&d, &["image", "tag", "bb", "bb:two"]);
    assert!(berth_ok(&d, &["image", "rm", "bb:two"]).contains("Untagged: bb:two"));
}

/// `cp` works on the filesystem the container's processes see: its /etc files, volumes and tmpfs.
#[test]
fn cp_sees_what_the_container_sees() {
    let d = Berthd::start();
    d.import_busybox("bb");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "seen",
        "-h",
        "seen-host",
        "-v",
        "cpvol:/data",
        "--tmpfs",
        "/scratch",
        "bb",
        "sleep",
        "300",
    ]);
    for bin in ["docker", "berth"] {
        let dst = d.root.join(format!("hostname-{bin}"));
        let o = if bin == "docker" {
            d.docker(&["cp", "seen:/etc/hostname", dst.to_str().unwrap()])
        } else {
            d.berth(&["cp", "seen:/etc/hostname", dst.to_str().unwrap()])
        };
        assert!(o.status.success(), "{bin}: {}", err(&o));
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), "seen-host\n", "{bin}");
    }
    let f = d.root.join("in-volume");
    std::fs::write(&f, "kept\n").unwrap();
    berth_ok(&d, &["cp", f.to_str().unwrap(), "seen:/data/"]);
    berth_ok(&d, &["cp", f.to_str().unwrap(), "seen:/scratch/t"]);
    assert_eq!(d.ok(&["exec", "seen", "cat", "/scratch/t"]), "kept");
    d.ok(&["rm", "-f", "seen"]);
    // The file went into the volume, not the container's own layer.
    assert_eq!(d.ok(&["run", "--rm", "-v", "cpvol:/data", "bb", "cat", "/data/in-volume"]), "kept");
}

/// `login` without flags prompts on a terminal, without echoing the password.
#[test]
fn interactive_login_under_a_pty() {
    use berth_e2e::registry::{Auth, Registry};
    let reg = Registry::start(Auth::Basic { user: "erin".into(), password: "hidden-pw".into() });
    let d = Berthd::start();
    let cfg = d.root.join("login-cfg");
    let cmd = format!(
        "BERTH_HOST={} BERTH_CONFIG={} {} login {}",
        d.host(),
        cfg.display(),
        bin_dir().join("berth").display(),
        reg.addr
    );
    let o = under_pty(&cmd, &[("Username: ", 1, "erin\r"), ("Password: ", 1, "hidden-pw\r")]);
    let text = out(&o);
    assert!(text.contains("Username: ") && text.contains("Password: "), "{text}");
    assert!(text.contains("Login Succeeded"), "{text}{}", err(&o));
    assert!(!text.contains("hidden-pw"), "password echoed: {text}");
    assert!(std::fs::read_to_string(cfg.join("config.json")).unwrap().contains(&reg.addr));
    // Credentials are for its owner only, as the docker CLI writes them.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(cfg.join("config.json")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

/// network connect/disconnect and the prunes, through berth, seen by docker (and the reverse).
#[test]
fn networks_volumes_and_prunes_match_docker() {
    let d = Berthd::start();
    d.import_busybox("bb");
    let subnet = format!("10.214.{}.64/28", d.net);
    berth_ok(&d, &["network", "create", "--subnet", &subnet, "--label", "k=v", "side"]);
    same(&d, &["network", "ls", "--filter", "label=k=v", "--format", "{{.Name}} {{.Driver}} {{.Labels}}"]);
    d.ok(&["run", "-d", "--name", "joiner", "bb", "sleep", "300"]);
    berth_ok(&d, &["network", "connect", "--alias", "other", "side", "joiner"]);
    let nets = d.ok(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "joiner"]);
    assert!(nets.contains("side") && nets.contains("bridge"), "{nets}");
    same(&d, &["network", "inspect", "-f", "{{range .Containers}}{{.Name}}{{end}}", "side"]);
    berth_ok(&d, &["network", "disconnect", "side", "joiner"]);
    assert!(!d.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "joiner"]).contains("side"));
    d.ok(&["rm", "-f", "joiner"]);
    berth_ok(&d, &["volume", "create", "--label", "keep=no", "scratch"]);
    berth_ok(&d, &["volume", "create", "kept"]);
    d.ok(&["create", "--name", "holder", "-v", "kept:/k", "bb", "true"]);
    same(&d, &["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    let o = berth_ok(&d, &["volume", "prune", "-a", "-f"]);
    assert!(o.contains("Deleted Volumes:\nscratch\n") && !o.contains("kept"), "{o}");
    let o = berth_ok(&d, &["network", "prune", "-f"]);
    assert!(o.contains("Deleted Networks:\nside"), "{o}");
    let o = berth_ok(&d, &["system", "prune", "-f"]);
    assert!(o.contains("Deleted Containers:") && o.contains("Total reclaimed space:"), "{o}");
    same(&d, &["ps", "-aq"]);
    same(&d, &["volume", "ls", "-q"]);
}
