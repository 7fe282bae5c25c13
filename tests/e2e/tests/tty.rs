//! TTYs: `run -t`, `run -it` and `exec -it` through a real pseudo-terminal on the client side.

use berth_e2e::Berthd;

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
if data:
    time.sleep(1.0)
    os.write(fd, data)
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
        .output()
        .unwrap();
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
