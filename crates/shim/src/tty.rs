//! Pseudo-terminals: libcontainer's init creates the pty and sends its master over a console
//! socket, which the shim listens on before creating the container.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// A listening console socket. Bound through a relative path from its folder, since UNIX socket
/// paths are limited to 108 bytes and bundle paths can be longer.
pub struct Console {
    listener: UnixListener,
    pub path: PathBuf,
}

impl Console {
    pub fn listen(dir: &Path, name: &str) -> Result<Console, String> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let prev = std::env::current_dir().map_err(|e| e.to_string())?;
        std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        let l = UnixListener::bind(name);
        let _ = std::env::set_current_dir(prev);
        let listener = l.map_err(|e| format!("bind console socket: {e}"))?;
        Ok(Console { listener, path })
    }

    /// Receives the pty master the container's process sent (it is queued already).
    pub fn receive(self) -> Result<OwnedFd, String> {
        let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
        let ts = Timespec { tv_sec: 10, tv_nsec: 0 };
        poll(&mut fds, Some(&ts)).map_err(|e| format!("poll console socket: {e}"))?;
        let (conn, _) = self.listener.accept().map_err(|e| format!("accept console socket: {e}"))?;
        let mut name = [0u8; 64];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        recvmsg(&conn, &mut [std::io::IoSliceMut::new(&mut name)], &mut cmsg, RecvFlags::CMSG_CLOEXEC)
            .map_err(|e| format!("receive pty master: {e}"))?;
        let _ = std::fs::remove_file(&self.path);
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = m {
                if let Some(fd) = fds.next() {
                    return Ok(fd);
                }
            }
        }
        Err("no pty master received on the console socket".into())
    }
}

/// Sets an initial size, if one was given.
pub fn initial_size(master: &OwnedFd, size: Option<[u16; 2]>) {
    if let Some([h, w]) = size.filter(|[h, w]| *h > 0 && *w > 0) {
        let mut p = h.to_be_bytes().to_vec();
        p.extend_from_slice(&w.to_be_bytes());
        resize(master, &p);
    }
}

/// Sets the terminal size of a pty master.
pub fn resize(master: &OwnedFd, payload: &[u8]) {
    if payload.len() < 4 {
        return;
    }
    let rows = u16::from_be_bytes([payload[0], payload[1]]);
    let cols = u16::from_be_bytes([payload[2], payload[3]]);
    let ws = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let _ = rustix::termios::tcsetwinsize(master, ws);
}
