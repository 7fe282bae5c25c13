//! The end-to-end harness: one real berthd per test, cleaned up on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_cli::client::Client;

pub mod buildkit;
pub mod registry;
pub mod token;

/// Where cargo put the binaries of this build (target/<profile>).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("BERTH_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace")
}

fn rand_tag() -> String {
    let mut b = [0u8; 4];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The busybox rootfs tar, made once per build dir from Debian's busybox-static and reused.
pub fn busybox_tar() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let p = bin_dir().join("e2e-busybox.tar");
        if !p.exists() {
            // Built under a unique name and renamed, so parallel test binaries never see half a tar.
            let tmp = bin_dir().join(format!(".e2e-busybox-{}.tar", std::process::id()));
            let st = Command::new(workspace().join("scripts/mk-busybox-tar.sh"))
                .arg(&tmp)
                .status()
                .expect("mk-busybox-tar.sh");
            assert!(st.success(), "could not build the busybox tar");
            std::fs::rename(&tmp, &p).expect("rename busybox tar");
        }
        p
    })
    .clone()
}

/// A reservation held for the life of the value (or the process): a bound abstract UNIX socket
/// (`@berth-e2e-<kind>-<n>`), which only one socket on the host can hold and which the kernel
/// releases when its holder exits, however it exits. Every test binary running at the same time
/// sees it, so two tests never get the same subnet or port (random picks collided about once a
/// run at four threads), and nothing is left on disk.
pub struct Reservation {
    pub n: u32,
    _held: std::os::unix::net::UnixListener,
}

/// Reserves one number of `range` (starting at a random place), or panics if all are taken.
fn reserve(kind: &str, range: std::ops::Range<u32>, usable: impl Fn(u32) -> bool) -> Reservation {
    use std::os::linux::net::SocketAddrExt;
    let mut b = [0u8; 4];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("random");
    let len = range.end - range.start;
    let offset = u32::from_le_bytes(b) % len;
    for i in 0..len {
        let n = range.start + (offset + i) % len;
        let name = format!("berth-e2e-{kind}-{n}");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        if let Ok(held) = std::os::unix::net::UnixListener::bind_addr(&addr) {
            if usable(n) {
                return Reservation { n, _held: held };
            }
        }
    }
    panic!("every {kind} in {range:?} is reserved")
}

/// The third octet of a daemon's private 10.213.N.0/24 and 10.214.N.0/24, reserved for its life.
pub fn reserve_subnet() -> Reservation {
    reserve("subnet", 1..255, |_| true)
}

/// A loopback TCP port nobody listens on, reserved for the rest of this test process: outside the
/// kernel's ephemeral range (so no client socket takes it) and locked against other tests.
pub fn free_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<Reservation>> = std::sync::Mutex::new(Vec::new());
    let r = reserve("port", 20000..30000, |p| std::net::TcpListener::bind(("127.0.0.1", p as u16)).is_ok());
    let port = r.n as u16;
    HELD.lock().expect("held ports").push(r);
    port
}

pub struct Berthd {
    pub root: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    /// This daemon's default bridge, and the third octet of its private 10.213/10.214 subnets.
    pub bridge: String,
    pub net: u8,
    /// Extra berthd flags (a TLS listener, say), kept across restarts.
    pub extra: Vec<String>,
    /// Started as systemd would (`berth.socket` + `Type=notify`): the socket is bound by
    /// `systemd-socket-activate`, berthd gets it as `fd://berth.sock`, and this socket hears sd_notify.
    pub notify: Option<std::os::unix::net::UnixDatagram>,
    /// Extra environment of the daemon (and so of its shims).
    pub env: Vec<(String, String)>,
    /// The berthd binary (the built one unless a test runs an installed one).
    pub berthd: PathBuf,
    child: Option<Child>,
    _subnet: Reservation,
    _dir: tempfile::TempDir,
}

impl Berthd {
    /// Starts a berthd with its own data root, exec root, socket and cgroup parent.
    pub fn start() -> Berthd {
        Berthd::start_with(&[])
    }

    /// `start` with extra berthd flags.
    pub fn start_with(extra: &[&str]) -> Berthd {
        Berthd::start_as(extra, false)
    }

    /// `start_with` and extra environment variables for the daemon.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Berthd {
        let mut d = Berthd::start_as(extra, false);
        d.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        d.restart();
        d
    }

    /// Started through socket activation (`systemd-socket-activate`, the tool systemd ships for
    /// exactly this), with a `NOTIFY_SOCKET` the test reads: what `berth.socket` + `berth.service` do.
    pub fn start_activated() -> Berthd {
        Berthd::start_as(&[], true)
    }

    /// `start_activated` with another berthd binary (one a package installed), with `extra` flags.
    pub fn start_activated_from(berthd: &std::path::Path, extra: &[&str]) -> Berthd {
        Berthd::start_as_from(extra, true, berthd.to_path_buf())
    }

    fn start_as(extra: &[&str], activated: bool) -> Berthd {
        Berthd::start_as_from(extra, activated, bin_dir().join("berthd"))
    }

    fn start_as_from(extra: &[&str], activated: bool, berthd: PathBuf) -> Berthd {
        let dir = tempfile::Builder::new().prefix("bt-").tempdir_in("/tmp").expect("tempdir");
        let root = dir.path().to_path_buf();
        let tag = rand_tag();
        let cgroup_parent = format!("/berth-test-{tag}");
        let bridge = format!("bt{}", &tag[..6]);
        let subnet = reserve_subnet();
        let net = subnet.n as u8;
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let notify = activated.then(|| {
            let n = std::os::unix::net::UnixDatagram::bind(root.join("notify.sock")).expect("notify socket");
            n.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
            n
        });
        let mut d = Berthd {
            socket: root.join("b.sock"),
            root,
            cgroup_parent,
            bridge,
            net,
            extra,
            notify,
            env: Vec::new(),
            berthd,
            child: None,
            _subnet: subnet,
            _dir: dir,
        };
        d.spawn();
        d
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn data_root(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Starts (or restarts) the daemon process on the same roots.
    pub fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.root.join("berthd.log")).expect("log");
        let berthd = self.berthd.clone();
        let mut cmd = match self.notify {
            None => {
                let mut c = Command::new(&berthd);
                c.args(["-H", &self.host()]);
                c
            }
            Some(_) => {
                // The activator binds the socket anew at each start, as systemd does.
                let _ = std::fs::remove_file(&self.socket);
                let mut c = Command::new("systemd-socket-activate");
                c.args(["-l", self.socket.to_str().unwrap(), "--fdname=berth.sock"])
                    .arg(format!("--setenv=NOTIFY_SOCKET={}", self.root.join("notify.sock").display()))
                    .arg(&berthd)
                    .args(["-H", "fd://berth.sock"]);
                c
            }
        };
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["--data-root", self.root.join("data").to_str().unwrap()])
            .args(["--exec-root", self.root.join("run").to_str().unwrap()])
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(["--bridge", &self.bridge, "--bip", &format!("10.213.{}.1/24", self.net)])
            .args(["--default-address-pool", &format!("base=10.214.{}.0/24,size=28", self.net)])
            .args(["--config-file", self.root.join("daemon.json").to_str().unwrap()])
            .args(["--log-level", "debug"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // Ready means answering /_ping, not just a bound socket.
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 64];
                if s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.0 200") || buf[..n].starts_with(b"HTTP/1.1 200"))
                {
                    return;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("berthd exited at start ({st}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("berthd did not listen within 20s:\n{}", self.log());
    }

    /// SIGTERM and wait, as an operator would stop it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(c.id() as i32).expect("pid"),
                rustix::process::Signal::TERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// berthd's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("berthd is running")
    }

    /// Stop (SIGTERM) and start again on the same roots.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGKILL: a crash.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("berthd.log")).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.host()).expect("client")
    }

    /// One API call at API version `version` over the daemon's socket (curl, bounded): the status
    /// and the JSON answer (`Null` when the body is not JSON).
    pub fn api_at(
        &self,
        version: &str,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let (code, text) = self.api_raw(version, method, path, body, &[]);
        (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// `api_at` with extra request headers, the body as text.
    pub fn api_raw(
        &self,
        version: &str,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[&str],
    ) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&self.socket)
            .args(["-X", method])
            .arg(format!("http://x/v{version}{path}"));
        for h in headers {
            c.args(["-H", h]);
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
        }
        let text = out(&run_bounded(&mut c));
        let (text, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
        (code.parse().unwrap_or(0), text.to_string())
    }

    /// Runs the real docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    /// docker with extra environment (for example `DOCKER_BUILDKIT=0` for the classic builder).
    pub fn docker_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", self.host()).env("DOCKER_CONFIG", self.root.join("docker-config")).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run_with(&mut c, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with(
            Command::new("docker")
                .env("DOCKER_HOST", self.host())
                .env("DOCKER_CONFIG", self.root.join("docker-config"))
                .args(args),
            stdin,
        )
    }

    /// Runs `berth` against this daemon (sharing the docker CLI's config folder).
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_stdin(args, None)
    }

    pub fn berth_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with(
            Command::new(bin_dir().join("berth"))
                .env("BERTH_HOST", self.host())
                .env("BERTH_CONFIG", self.root.join("docker-config"))
                .env_remove("DOCKER_HOST")
                .args(args),
            stdin,
        )
    }

    /// docker, asserting success; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\n--- berthd log ---\n{}",
            o.status,
            out(&o),
            err(&o),
            self.log_tail()
        );
        out(&o).trim().to_string()
    }

    pub fn log_tail(&self) -> String {
        let l = self.log();
        let lines: Vec<&str> = l.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Entries left in the image store's scratch folder (interrupted unpacks); 0 when clean.
    pub fn image_tmp_entries(&self) -> usize {
        std::fs::read_dir(self.data_root().join("image/tmp")).map(|r| r.count()).unwrap_or(0)
    }

    /// Imports the busybox rootfs as `name`.
    pub fn import_busybox(&self, name: &str) -> String {
        let tar = busybox_tar();
        self.ok(&["import", tar.to_str().unwrap(), name])
    }

    /// Every mount under this daemon's root but the folders berthd keeps as mount points of their
    /// own while it runs (`snapshots`, `netns`, `userns`: see `berth_sys::mntscope`); those are
    /// `scope_mounts`.
    pub fn mounts(&self) -> Vec<String> {
        let scopes = self.scope_mounts();
        self.all_mounts().into_iter().filter(|m| !scopes.contains(m)).collect()
    }

    /// The mount points of their own berthd makes of its scope folders, as far as they are mounted.
    pub fn scope_mounts(&self) -> Vec<String> {
        let scopes = [self.data_root().join("snapshots"), self.root.join("run/netns"), self.root.join("run/userns")];
        let scopes: Vec<String> = scopes.iter().map(|p| p.to_string_lossy().to_string()).collect();
        self.all_mounts().into_iter().filter(|m| scopes.contains(m)).collect()
    }

    fn all_mounts(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root.to_string_lossy().to_string();
        info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&root)).map(String::from).collect()
    }

    /// cgroup directories under this daemon's parent, in every hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let base = Path::new("/sys/fs/cgroup");
        let parent = self.cgroup_parent.trim_start_matches('/');
        let mut hier: Vec<PathBuf> =
            std::fs::read_dir(base).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        hier.push(base.to_path_buf());
        for h in hier {
            let p = h.join(parent);
            if p.is_dir() {
                out.push(p);
            }
        }
        out
    }

    /// Container cgroups still under this daemon's parent, in every hierarchy (empty when clean).
    pub fn container_cgroups(&self) -> Vec<PathBuf> {
        self.cgroups()
            .iter()
            .flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten())
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect()
    }

    /// The nftables table of this daemon (named after its default bridge).
    pub fn nft_table(&self) -> String {
        format!("berth_{}", self.bridge)
    }

    /// Linux bridges of this daemon still present.
    pub fn bridges(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let mine = [format!("10.213.{}.", self.net), format!("10.214.{}.", self.net)];
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| mine.iter().any(|m| l.contains(&format!("inet {m}"))))
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .collect();
        if std::path::Path::new("/sys/class/net").join(&self.bridge).exists() {
            v.push(self.bridge.clone());
        }
        v.sort();
        v.dedup();
        v
    }

    /// Shim processes started for this daemon (their command line names our root).
    pub fn shims(&self) -> Vec<i32> {
        let root = self.root.to_string_lossy().to_string();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("berth-shim") && cmd.contains(&root) {
                out.push(pid);
            }
        }
        out
    }
}

/// Polls `f` until it holds; panics naming `what` after a generous deadline. The way tests wait for
/// a state: never a fixed sleep.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`eventually`] for async conditions (API calls from a test's runtime).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long one client command may take before the test fails as hung (`BERTH_TEST_CLIENT_TIMEOUT`
/// seconds overrides it). Generous: it catches hangs, it does not time anything.
pub fn client_timeout() -> Duration {
    let secs = std::env::var("BERTH_TEST_CLIENT_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(240);
    Duration::from_secs(secs)
}

/// Runs any client command with the client deadline: a hang fails the test.
pub fn run_bounded(cmd: &mut Command) -> Output {
    run_with(cmd, None)
}

/// `Command::output` with the client deadline: a client that hangs fails the test, never the run.
pub trait Bounded {
    fn bounded(&mut self) -> Output;
}

impl Bounded for Command {
    fn bounded(&mut self) -> Output {
        run_with(self, None)
    }
}

fn run_with(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let what = format!("{cmd:?}");
    run_within(cmd, stdin, client_timeout())
        .unwrap_or_else(|| panic!("client {what} did not finish within {:?}: hung", client_timeout()))
}

/// `run_with` that gives up after `limit` (the command killed) instead of failing the test: for
/// clean-up in `Drop`, where a panic during another panic aborts the run and leaves everything.
fn run_within(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Option<Output> {
    use std::io::{Read, Write};
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let data = stdin.map(<[u8]>::to_vec);
    let mut input = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let (Some(s), Some(d)) = (input.as_mut(), data) {
            let _ = s.write_all(&d);
        }
    });
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let errs = reader(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() <= deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let _ = writer.join();
    Some(Output { status, stdout: out.join().unwrap_or_default(), stderr: errs.join().unwrap_or_default() })
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

impl Drop for Berthd {
    fn drop(&mut self) {
        // Remove containers through the API first so shims exit and clean their cgroups. Never a
        // panic here (a test that failed is unwinding): a daemon that does not answer is stopped
        // and its leftovers are removed below all the same.
        if self.child.is_some() {
            let docker = |args: &[&str]| {
                let mut c = Command::new("docker");
                c.env("DOCKER_HOST", self.host()).env("DOCKER_CONFIG", self.root.join("docker-config")).args(args);
                run_within(&mut c, None, Duration::from_secs(60))
            };
            if let Some(ids) = docker(&["ps", "-aq", "--no-trunc"]) {
                for id in out(&ids).lines().filter(|l| !l.is_empty()) {
                    if docker(&["rm", "-f", id]).is_none() {
                        break;
                    }
                }
            }
        }
        self.stop();
        // Whatever is left is ours alone: shims of this root, the processes in our cgroups (a
        // container whose shim is gone), mounts under it, our cgroup parent.
        for pid in self.shims() {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        for c in self.container_cgroups() {
            let procs = std::fs::read_to_string(c.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
        }
        let mut mounts = self.all_mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
        // Bridges of this daemon: its default one and `br-*` ones on its private subnets.
        for l in self.bridges() {
            let _ = Command::new("ip").args(["link", "del", &l]).output();
        }
        // Its nftables table (berthd keeps it across restarts, as Docker keeps its rules).
        let _ = Command::new("nft").args(["delete", "table", "ip", &self.nft_table()]).output();
        let _ = Command::new("nft").args(["delete", "table", "ip6", &self.nft_table()]).output();
        for _ in 0..50 {
            let left: Vec<PathBuf> = self.cgroups();
            if left.is_empty() {
                break;
            }
            for p in left {
                remove_cgroup_tree(&p);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Removes a cgroup folder and everything under it, children first (a container may have made
/// cgroups of its own); processes still in it (a test that killed a shim) are ours and killed.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(d) = std::fs::read_dir(dir) {
        for c in d.flatten().filter(|c| c.path().is_dir()) {
            remove_cgroup_tree(&c.path());
        }
    }
    for pid in std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
        if let Some(pid) = pid.trim().parse().ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let o = run_bounded(Command::new("openssl").current_dir(dir).args(args));
    assert!(o.status.success(), "openssl {args:?}: {}", err(&o));
}

/// A CA (`ca.pem`), a server certificate for 127.0.0.1 (`server-cert.pem`, `server-key.pem`) and a
/// client certificate (`client-*.pem`, also `cert.pem`/`key.pem`), as docker's TLS guide makes them.
pub fn make_certs(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend(["-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=berth-test-ca"]);
    openssl(dir, &a);
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let mut a = vec!["req"];
        a.extend(ec);
        let (key, csr, cert) = (format!("{name}-key.pem"), format!("{name}.csr"), format!("{name}-cert.pem"));
        a.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=berth-test"]);
        openssl(dir, &a);
        let ext = format!("{name}.ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
    // The client files under docker's default names, for DOCKER_CERT_PATH.
    std::fs::copy(dir.join("client-cert.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(dir.join("client-key.pem"), dir.join("key.pem")).unwrap();
}
