//! TTYs: `run -t`, `run -it` and `exec -it` through a real pseudo-terminal on the client side.

use berth_e2e::{Berthd, Bounded};

/// Runs the docker CLI inside a pty of `rows`x`cols` (via python's pty module), feeding `input`
/// after a moment; returns (output, exit code).
fn in_pty(d: &Berthd, args: &[&str], input: &str) -> (String, i32) {
    let script = r#"
import os, pty, select, struct, sys, time, fcntl, termios
args, data = sys.argv[2:], sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    os.execvp("docker", ["docker"] + args)
out = b""
# "<pause>" in the input waits a moment (lets output arrive before the next keys).
for part in data.split(b"<pause>") if data else []:
    time.sleep(1.0)
    os.write(fd, part)
end = time.time() + 20
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(st))
"#;
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(input)
        .args(args)
        .env("DOCKER_HOST", d.host())
        .bounded();
    (String::from_utf8_lossy(&o.stdout).to_string(), o.status.code().unwrap_or(-1))
}

#[test]
fn tty_run_and_exec() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    assert_eq!(d.ok(&["run", "--rm", "-t", "busybox", "tty"]).trim(), "/dev/pts/0");
    let (o, code) = in_pty(&d, &["run", "--rm", "-it", "busybox", "sh", "-c", "stty size; exit 4"], "");
    assert_eq!((o.trim(), code), ("33 111", 4));
    d.ok(&["run", "-d", "--name", "term", "-t", "busybox", "sleep", "300"]);
    let (o, code) = in_pty(&d, &["exec", "-it", "term", "sh"], "echo typed-$((1+2))\nexit 7\n");
    assert!(o.contains("typed-3"), "{o}");
    assert_eq!(code, 7);
    // The size is there from the program's first instruction, every time (it used to race the shim).
    for _ in 0..5 {
        let (o, _) = in_pty(&d, &["exec", "-it", "term", "stty", "size"], "");
        assert_eq!(o.trim(), "33 111");
    }
    d.ok(&["rm", "-f", "term"]);
}

#[test]
fn detach_keys_leave_the_container_running() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    // ctrl-p ctrl-q: the CLI ends the attach and the shell keeps running (it used to lose its stdin).
    let (o, code) =
        in_pty(&d, &["run", "-it", "--name", "dk", "busybox", "sh"], "echo before-$((2*3))\n<pause>\x10\x11");
    assert!(o.contains("before-6"), "{o}");
    assert_eq!(code, 0, "{o}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]), "true");
    // Custom keys on a later attach; the shell still answers.
    let (o, code) = in_pty(&d, &["attach", "--detach-keys", "ctrl-a,x", "dk"], "echo again-$((3*3))\n<pause>\x01x");
    assert!(o.contains("again-9"), "{o}");
    // `docker attach` reports the detach as Docker's does: "read escape sequence", status 1.
    assert!(o.contains("read escape sequence") && code == 1, "{code} {o}");
    assert!(!o.contains("failed to resize"), "{o}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]), "true");

    // The daemon recognises the keys itself for clients without an escape proxy (raw API).
    let sock = d.host().trim_start_matches("unix://").to_string();
    let script = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_UNIX); s.connect("{sock}")
s.sendall(b"POST /v1.44/containers/dk/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
time.sleep(0.5); s.recv(4096)
s.sendall(b"\x18")
s.settimeout(5)
while s.recv(4096): pass
print("closed")
"#
    );
    let o = std::process::Command::new("python3").arg("-c").arg(&script).bounded();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "closed", "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]), "true");
    // A window change reaches the container's terminal.
    let o = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", &sock, "-X", "POST"])
        .arg("http://d/v1.44/containers/dk/resize?h=40&w=100")
        .bounded();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200");
    assert_eq!(d.ok(&["exec", "dk", "stty", "-F", "/dev/pts/0", "size"]), "40 100");
    let o = d.docker(&["attach", "--detach-keys", "ctrl-ab", "dk"]);
    assert!(!o.status.success());
    d.ok(&["rm", "-f", "dk"]);
}
