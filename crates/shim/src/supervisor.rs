//! The shim's single-threaded event loop: output, clients, and the container's exit.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_runtime::proto::{self, Decoder, ExitStatus, Hello};
use berth_runtime::shim::ShimConfig;
use libcontainer::container::Container;
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::exec::ExecProc;
use crate::log::Log;

/// After init exits, wait at most this long for its output pipes to drain.
const DRAIN: Duration = Duration::from_secs(2);

pub fn listen(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(l)
}

/// Where a process's stdin goes: a socket (written with MSG_NOSIGNAL) or a pty master.
pub enum Stdin {
    Socket(OwnedFd),
    Tty(OwnedFd),
}

impl Stdin {
    /// Writes all of `data`; an error means the reader is gone.
    pub fn write_all(&self, mut data: &[u8]) -> rustix::io::Result<()> {
        while !data.is_empty() {
            let n = match self {
                Stdin::Socket(fd) => rustix::net::send(fd, data, rustix::net::SendFlags::NOSIGNAL)?,
                Stdin::Tty(fd) => rustix::io::write(fd, data)?,
            };
            data = &data[n..];
        }
        Ok(())
    }
}

struct Client {
    stream: UnixStream,
    dec: Decoder,
    dead: bool,
}

pub struct Supervisor {
    cfg: ShimConfig,
    container: Container,
    pid: i32,
    pidfd: OwnedFd,
    listener: UnixListener,
    out: [Option<OwnedFd>; 2],
    stdin: Option<Stdin>,
    /// The pty master of a TTY container, kept for resizes.
    master: Option<OwnedFd>,
    clients: Vec<Client>,
    started: bool,
    exit: Option<ExitStatus>,
    exited_at: Option<Instant>,
    log: Log,
    execs: Vec<ExecProc>,
    /// Setup work (a start, an exec) happened since memory was last shed; shed on the next idle poll.
    shed_pending: bool,
}

/// What a polled fd is.
#[derive(Clone, Copy)]
enum Src {
    Listener,
    Init,
    Out(usize),
    Client(usize),
    ExecPid(usize),
    ExecOut(usize, usize),
}

impl Supervisor {
    pub fn new(
        cfg: ShimConfig,
        container: Container,
        pid: i32,
        listener: UnixListener,
        out: [Option<OwnedFd>; 2],
        stdin: Option<Stdin>,
        master: Option<OwnedFd>,
    ) -> Result<Supervisor, String> {
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or("bad pid")?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| format!("pidfd_open {pid}: {e}"))?;
        let log = if cfg.log_none {
            Log::open(&ShimConfig { log_driver: "none".into(), ..cfg.clone() })
        } else {
            Log::open(&cfg)
        };
        Ok(Supervisor {
            cfg,
            container,
            pid,
            pidfd,
            listener,
            out,
            stdin,
            master,
            clients: Vec::new(),
            started: false,
            exit: None,
            exited_at: None,
            log,
            execs: Vec::new(),
            shed_pending: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn run(mut self) -> ! {
        loop {
            self.poll_once();
            let mut keep: Vec<i32> = self.execs.iter().map(|e| e.pid).collect();
            keep.push(self.pid);
            berth_sys::process::reap_others(&keep);
            self.finish_execs();
            if let Some(at) = self.exited_at {
                if self.out.iter().all(Option::is_none) || at.elapsed() > DRAIN {
                    self.finish();
                }
            }
        }
    }

    fn poll_once(&mut self) {
        let readable = PollFlags::IN | PollFlags::HUP | PollFlags::ERR;
        let ready: Vec<Src> = {
            let mut srcs = vec![Src::Listener, Src::Init];
            let mut fds = vec![PollFd::new(&self.listener, PollFlags::IN), PollFd::new(&self.pidfd, PollFlags::IN)];
            for (i, o) in self.out.iter().enumerate() {
                if let Some(fd) = o {
                    srcs.push(Src::Out(i));
                    fds.push(PollFd::new(fd, PollFlags::IN));
                }
            }
            for (i, c) in self.clients.iter().enumerate() {
                srcs.push(Src::Client(i));
                fds.push(PollFd::new(&c.stream, PollFlags::IN));
            }
            for (i, e) in self.execs.iter().enumerate() {
                if e.exit.is_none() {
                    srcs.push(Src::ExecPid(i));
                    fds.push(PollFd::new(&e.pidfd, PollFlags::IN));
                }
                for (k, o) in e.out.iter().enumerate() {
                    if let Some(fd) = o {
                        srcs.push(Src::ExecOut(i, k));
                        fds.push(PollFd::new(fd, PollFlags::IN));
                    }
                }
            }
            let busy = self.exited_at.is_some() || self.execs.iter().any(|e| e.exit.is_some());
            let timeout = if busy { Duration::from_millis(50) } else { Duration::from_secs(1) };
            let ts = Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: timeout.subsec_nanos() as i64 };
            match poll(&mut fds, Some(&ts)) {
                Err(_) => return,
                // Idle for a whole timeout: the processes we forked have exec'd, so the pages we share
                // with them no longer pin our code in memory.
                Ok(0) if self.shed_pending && !busy => {
                    self.shed_pending = false;
                    berth_sys::memory::shed();
                }
                Ok(_) => {}
            }
            srcs.iter().zip(fds.iter()).filter(|(_, f)| f.revents().intersects(readable)).map(|(s, _)| *s).collect()
        };
        let mut accept = false;
        for src in ready {
            match src {
                Src::Listener => accept = true,
                Src::Init => {
                    if self.exit.is_none() {
                        if let Some((code, signal)) = berth_sys::process::try_wait(self.pid) {
                            let finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                            self.exit = Some(ExitStatus { code, signal, finished_at, oom_killed: false });
                            self.exited_at = Some(Instant::now());
                        }
                    }
                }
                Src::Out(i) => self.read_output(i),
                Src::Client(i) => self.read_client(i),
                Src::ExecPid(i) => {
                    if let Some((code, _)) = berth_sys::process::try_wait(self.execs[i].pid) {
                        self.execs[i].exit = Some(code);
                        self.execs[i].exited_at = Some(Instant::now());
                    }
                }
                Src::ExecOut(i, k) => self.read_exec_output(i, k),
            }
        }
        self.clients.retain(|c| !c.dead);
        if accept {
            if let Ok((stream, _)) = self.listener.accept() {
                let hello = Hello { pid: self.pid, started: self.started, exit: self.exit.clone() };
                let mut c = Client { stream, dec: Decoder::default(), dead: false };
                send(&mut c, proto::HELLO, &serde_json::to_vec(&hello).unwrap_or_default());
                self.clients.push(c);
            }
        }
    }

    fn read_exec_output(&mut self, i: usize, k: usize) {
        let mut buf = [0u8; 32 * 1024];
        let n = match &self.execs[i].out[k] {
            Some(fd) => rustix::io::read(fd, &mut buf).unwrap_or(0),
            None => return,
        };
        if n == 0 {
            self.execs[i].out[k] = None;
            return;
        }
        let mut payload = vec![(k + 1) as u8];
        payload.extend(proto::with_id(&self.execs[i].id, &buf[..n]));
        self.broadcast(proto::EXEC_OUTPUT, &payload);
    }

    /// The error to report for a request the runtime refused: `ERR_NOT_RUNNING` when it failed
    /// because the init has exited or is exiting (libcontainer's "status Stopped", a setns into a
    /// dying namespace), so the daemon answers Docker's 409; the runtime's message otherwise.
    fn refusal(&self, msg: String) -> String {
        if self.exit.is_some() || !berth_sys::process::alive(self.pid) {
            proto::ERR_NOT_RUNNING.to_string()
        } else {
            msg
        }
    }

    /// Reports execs that exited and whose output is drained (or that had their grace period).
    fn finish_execs(&mut self) {
        let mut done = Vec::new();
        for (i, e) in self.execs.iter().enumerate() {
            if let (Some(code), Some(at)) = (e.exit, e.exited_at) {
                if e.out.iter().all(Option::is_none) || at.elapsed() > DRAIN {
                    done.push((i, code));
                }
            }
        }
        for (i, code) in done.into_iter().rev() {
            let e = self.execs.remove(i);
            let msg = proto::ExecExited { exec_id: e.id, code };
            self.broadcast(proto::EXEC_EXITED, &serde_json::to_vec(&msg).unwrap_or_default());
        }
    }

    fn read_output(&mut self, stream: usize) {
        let mut buf = [0u8; 32 * 1024];
        let n = match &self.out[stream] {
            Some(fd) => rustix::io::read(fd, &mut buf).unwrap_or(0),
            None => return,
        };
        if n == 0 {
            self.out[stream] = None;
            self.log.flush(stream);
            return;
        }
        self.log.write(stream, &buf[..n]);
        let kind = if stream == 0 { proto::STDOUT } else { proto::STDERR };
        self.broadcast(kind, &buf[..n]);
    }

    fn broadcast(&mut self, kind: u8, payload: &[u8]) {
        for c in &mut self.clients {
            send(c, kind, payload);
        }
    }

    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 32 * 1024];
        let n = match self.clients[i].stream.read(&mut buf) {
            Ok(0) | Err(_) => {
                self.clients[i].dead = true;
                return;
            }
            Ok(n) => n,
        };
        self.clients[i].dec.push(&buf[..n]);
        loop {
            let frame = match self.clients[i].dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(_) => {
                    self.clients[i].dead = true;
                    return;
                }
            };
            self.handle(i, frame.0, &frame.1);
        }
    }

    fn handle(&mut self, i: usize, kind: u8, payload: &[u8]) {
        match kind {
            proto::START if !self.started => {
                self.started = true;
                self.shed_pending = true;
                match self.container.start() {
                    Ok(()) => send(&mut self.clients[i], proto::STARTED, &self.pid.to_be_bytes()),
                    Err(e) => send(&mut self.clients[i], proto::ERROR, format!("start container: {e}").as_bytes()),
                }
            }
            proto::START => send(&mut self.clients[i], proto::STARTED, &self.pid.to_be_bytes()),
            proto::STDIN => {
                if let Some(s) = &self.stdin {
                    if s.write_all(payload).is_err() {
                        self.stdin = None;
                    }
                }
            }
            proto::PAUSE | proto::RESUME => {
                let r = if kind == proto::PAUSE { self.container.pause() } else { self.container.resume() };
                match r {
                    Ok(()) => send(&mut self.clients[i], proto::ACK, &[]),
                    Err(e) => {
                        let msg = self.refusal(e.to_string());
                        send(&mut self.clients[i], proto::ERROR, msg.as_bytes())
                    }
                }
            }
            proto::RESIZE => {
                if let Some(m) = &self.master {
                    crate::tty::resize(m, payload);
                }
            }
            proto::EXEC_RESIZE => {
                if let Some((id, size)) = proto::split_id(payload) {
                    if let Some(m) = self.execs.iter().find(|e| e.id == id).and_then(|e| e.master.as_ref()) {
                        crate::tty::resize(m, size);
                    }
                }
            }
            proto::CLOSE_STDIN => self.stdin = None,
            proto::EXEC => {
                let answer = match serde_json::from_slice::<proto::ExecRequest>(payload) {
                    Ok(req) => match crate::exec::spawn(&self.cfg, self.pid, &req) {
                        Ok(p) => {
                            let a = proto::ExecStarted { exec_id: req.exec_id.clone(), pid: p.pid, error: None };
                            self.execs.push(p);
                            self.shed_pending = true;
                            a
                        }
                        Err(e) => proto::ExecStarted { exec_id: req.exec_id, pid: 0, error: Some(self.refusal(e)) },
                    },
                    Err(e) => proto::ExecStarted {
                        exec_id: String::new(),
                        pid: 0,
                        error: Some(format!("bad exec request: {e}")),
                    },
                };
                send(&mut self.clients[i], proto::EXEC_STARTED, &serde_json::to_vec(&answer).unwrap_or_default());
            }
            proto::EXEC_STDIN | proto::EXEC_CLOSE_STDIN => {
                if let Some((id, data)) = proto::split_id(payload) {
                    if let Some(e) = self.execs.iter_mut().find(|e| e.id == id) {
                        if kind == proto::EXEC_CLOSE_STDIN {
                            e.stdin = None;
                        } else if let Some(s) = &e.stdin {
                            if s.write_all(data).is_err() {
                                e.stdin = None;
                            }
                        }
                    }
                }
            }
            proto::SIGNAL if payload.len() == 4 && self.exit.is_none() => {
                let sig = i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                if let Err(e) = berth_sys::process::kill(self.pid, sig) {
                    send(&mut self.clients[i], proto::ERROR, format!("kill {}: {e}", self.pid).as_bytes());
                }
            }
            _ => {}
        }
    }

    fn finish(mut self) -> ! {
        self.log.flush(0);
        self.log.flush(1);
        let mut exit = self.exit.clone().expect("finish after exit");
        exit.oom_killed = oom_kills(&self.cfg.cgroups_path) > 0;
        let json = serde_json::to_vec(&exit).unwrap_or_default();
        // For a berthd that was not listening (restarting): written whole or not at all (rename),
        // not synced — it lives in the exec root, runtime state that a host crash ends anyway.
        let tmp = self.cfg.exit_file.with_extension("tmp");
        if std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&json))
            .and_then(|_| std::fs::rename(&tmp, &self.cfg.exit_file))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
        // The exit first: waiters need not wait for the clean-up below. berthd holds a new start
        // or a removal of this container until this connection closes, after the clean-up. Not
        // with poststop hooks (CDI's): they run in the delete, and must still find the container's
        // bundle and root, which berthd releases once it hears of the exit.
        let poststop = self
            .container
            .spec()
            .ok()
            .and_then(|c| c.hooks)
            .is_some_and(|h| h.poststop().as_ref().is_some_and(|p| !p.is_empty()));
        if !poststop {
            self.broadcast(proto::EXITED, &json);
        }
        // Removes the libcontainer state and the container's cgroup.
        let _ = self.container.delete(true);
        // libcontainer removes the container's own cgroup folders only: child cgroups the
        // container made (a privileged one running systemd or a nested engine) kept them all.
        remove_cgroup_trees(&self.cfg.cgroups_path);
        if poststop {
            self.broadcast(proto::EXITED, &json);
        }
        let _ = std::fs::remove_file(&self.cfg.socket);
        for c in &self.clients {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        std::process::exit(0);
    }
}

/// Removes the container's cgroup folder, children first, in every hierarchy (v1 controllers and
/// the v2 root). Its processes are gone; a folder can stay busy for a moment after the last one
/// left, so each removal is retried briefly.
fn remove_cgroup_trees(cgroups_path: &str) {
    fn remove_tree(dir: &std::path::Path) {
        if let Ok(children) = std::fs::read_dir(dir) {
            for c in children.flatten() {
                if c.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&c.path());
                }
            }
        }
        for _ in 0..20 {
            match std::fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                _ => return,
            }
        }
    }
    let rel = cgroups_path.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let base = std::path::Path::new("/sys/fs/cgroup");
    let mut roots: Vec<std::path::PathBuf> =
        std::fs::read_dir(base).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    roots.push(base.to_path_buf());
    for r in roots {
        let p = r.join(rel);
        if p.is_dir() {
            remove_tree(&p);
        }
    }
}

/// OOM kills recorded by the container's memory cgroup (v1 `memory.oom_control`, v2 `memory.events`).
fn oom_kills(cgroups_path: &str) -> u64 {
    let rel = cgroups_path.trim_start_matches('/');
    let base = std::path::Path::new("/sys/fs/cgroup");
    let candidates = [base.join("memory").join(rel).join("memory.oom_control"), base.join(rel).join("memory.events")];
    for p in candidates {
        if let Ok(text) = std::fs::read_to_string(&p) {
            return text
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
                .unwrap_or(0);
        }
    }
    0
}

fn send(c: &mut Client, kind: u8, payload: &[u8]) {
    if c.dead {
        return;
    }
    if c.stream.write_all(&proto::encode(kind, payload)).is_err() {
        c.dead = true;
    }
}
