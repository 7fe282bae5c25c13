//! A process's stdio as the shim wires it: pipes for output and a socket for stdin, or one pty
//! whose master comes back over a console socket. Shared by the container's init and its execs.

use std::os::fd::OwnedFd;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;

use crate::supervisor::Stdin;
use crate::tty::Console;

/// Our ends of a process's stdio.
pub struct Stdio {
    pub out: [Option<OwnedFd>; 2],
    pub stdin: Option<Stdin>,
    /// The pty master, kept for resizes.
    pub master: Option<OwnedFd>,
}

/// What is left to do once the process exists.
pub enum Pending {
    Ready(Stdio),
    Tty { console: Console, open_stdin: bool },
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Sets the process's stdio on `builder`. With a TTY, `console_name` (in `dir`) is where the
/// process sends its pty master.
pub fn prepare(
    builder: ContainerBuilder,
    tty: bool,
    open_stdin: bool,
    dir: &Path,
    console_name: &str,
) -> Result<(ContainerBuilder, Pending), String> {
    if tty {
        let console = Console::listen(dir, console_name)?;
        let b = builder.with_console_socket(Some(&console.path));
        return Ok((b, Pending::Tty { console, open_stdin }));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut b = builder.with_stdout(out_w).with_stderr(err_w);
    // stdin is a socket, not a pipe: writing to it after the process closed its end gives EPIPE
    // on send(MSG_NOSIGNAL) without any signal at all.
    let stdin = if open_stdin {
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let _ = rustix::net::shutdown(&theirs, rustix::net::Shutdown::Write);
        b = b.with_stdin(theirs);
        Some(Stdin::Socket(ours))
    } else {
        let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
        b = b.with_stdin(OwnedFd::from(null));
        None
    };
    Ok((b, Pending::Ready(Stdio { out: [Some(out_r), Some(err_r)], stdin, master: None })))
}

impl Pending {
    /// After the process was created: receives the pty master if there is one.
    pub fn finish(self, size: Option<[u16; 2]>) -> Result<Stdio, String> {
        match self {
            Pending::Ready(s) => Ok(s),
            Pending::Tty { console, open_stdin } => {
                let master = console.receive()?;
                crate::tty::initial_size(&master, size);
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup pty master: {e}"));
                let stdin = if open_stdin { Some(Stdin::Tty(dup(&master)?)) } else { None };
                Ok(Stdio { out: [Some(dup(&master)?), None], stdin, master: Some(master) })
            }
        }
    }
}
