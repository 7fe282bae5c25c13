//! The shim's single-threaded event loop: output, clients, and the container's exit.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_runtime::proto::{self, Decoder, ExitStatus, Hello};
use berth_runtime::shim::ShimConfig;
use libcontainer::container::Container;
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::log::JsonLog;

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
    stdin: Option<OwnedFd>,
    clients: Vec<Client>,
    started: bool,
    exit: Option<ExitStatus>,
    exited_at: Option<Instant>,
    log: JsonLog,
}

impl Supervisor {
    pub fn new(
        cfg: ShimConfig,
        container: Container,
        pid: i32,
        listener: UnixListener,
        out: OwnedFd,
        err: OwnedFd,
        stdin: Option<OwnedFd>,
    ) -> Result<Supervisor, String> {
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or("bad pid")?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| format!("pidfd_open {pid}: {e}"))?;
        let log = JsonLog::open(&cfg.log_path);
        Ok(Supervisor {
            cfg,
            container,
            pid,
            pidfd,
            listener,
            out: [Some(out), Some(err)],
            stdin,
            clients: Vec::new(),
            started: false,
            exit: None,
            exited_at: None,
            log,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn run(mut self) -> ! {
        loop {
            self.poll_once();
            berth_sys::process::reap_others(self.pid);
            if let Some(at) = self.exited_at {
                if self.out.iter().all(Option::is_none) || at.elapsed() > DRAIN {
                    self.finish();
                }
            }
        }
    }

    fn poll_once(&mut self) {
        let readable = PollFlags::IN | PollFlags::HUP | PollFlags::ERR;
        let (ready_listener, ready_out, ready_pid, ready_clients) = {
            let mut fds = vec![PollFd::new(&self.listener, PollFlags::IN), PollFd::new(&self.pidfd, PollFlags::IN)];
            let mut out_idx = [None, None];
            for (i, o) in self.out.iter().enumerate() {
                if let Some(fd) = o {
                    out_idx[i] = Some(fds.len());
                    fds.push(PollFd::new(fd, PollFlags::IN));
                }
            }
            let first_client = fds.len();
            for c in &self.clients {
                fds.push(PollFd::new(&c.stream, PollFlags::IN));
            }
            let timeout = if self.exited_at.is_some() { Duration::from_millis(50) } else { Duration::from_secs(1) };
            let ts = Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: timeout.subsec_nanos() as i64 };
            if poll(&mut fds, Some(&ts)).is_err() {
                return;
            }
            let hit = |i: usize| fds[i].revents().intersects(readable);
            (
                hit(0),
                [out_idx[0].is_some_and(hit), out_idx[1].is_some_and(hit)],
                hit(1),
                (0..self.clients.len()).map(|i| hit(first_client + i)).collect::<Vec<_>>(),
            )
        };
        if ready_pid && self.exit.is_none() {
            if let Some((code, signal)) = berth_sys::process::try_wait(self.pid) {
                let finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                self.exit = Some(ExitStatus { code, signal, finished_at });
                self.exited_at = Some(Instant::now());
            }
        }
        for (stream, ready) in ready_out.iter().enumerate() {
            if *ready {
                self.read_output(stream);
            }
        }
        for (i, ready) in ready_clients.iter().enumerate() {
            if *ready {
                self.read_client(i);
            }
        }
        self.clients.retain(|c| !c.dead);
        if ready_listener {
            if let Ok((stream, _)) = self.listener.accept() {
                let hello = Hello { pid: self.pid, started: self.started, exit: self.exit.clone() };
                let mut c = Client { stream, dec: Decoder::default(), dead: false };
                send(&mut c, proto::HELLO, &serde_json::to_vec(&hello).unwrap_or_default());
                self.clients.push(c);
            }
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
                match self.container.start() {
                    Ok(()) => send(&mut self.clients[i], proto::STARTED, &self.pid.to_be_bytes()),
                    Err(e) => send(&mut self.clients[i], proto::ERROR, format!("start container: {e}").as_bytes()),
                }
            }
            proto::START => send(&mut self.clients[i], proto::STARTED, &self.pid.to_be_bytes()),
            proto::STDIN => {
                if let Some(fd) = &self.stdin {
                    if send_all(fd, payload).is_err() {
                        self.stdin = None;
                    }
                }
            }
            proto::CLOSE_STDIN => self.stdin = None,
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
        let exit = self.exit.clone().expect("finish after exit");
        let json = serde_json::to_vec(&exit).unwrap_or_default();
        let tmp = self.cfg.exit_file.with_extension("tmp");
        if std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&json).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, &self.cfg.exit_file))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
        // Removes the libcontainer state and the container's cgroup.
        let _ = self.container.delete(true);
        self.broadcast(proto::EXITED, &json);
        let _ = std::fs::remove_file(&self.cfg.socket);
        for c in &self.clients {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        std::process::exit(0);
    }
}

fn send(c: &mut Client, kind: u8, payload: &[u8]) {
    if c.dead {
        return;
    }
    if c.stream.write_all(&proto::encode(kind, payload)).is_err() {
        c.dead = true;
    }
}

fn send_all(fd: &impl AsFd, mut data: &[u8]) -> rustix::io::Result<()> {
    while !data.is_empty() {
        let n = rustix::net::send(fd, data, rustix::net::SendFlags::NOSIGNAL)?;
        data = &data[n..];
    }
    Ok(())
}
