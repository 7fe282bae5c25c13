//! The terminal side of `run -it`, `exec -it`, `attach` and `start -ai`: raw mode restored on every
//! exit path, window size sent on start and on SIGWINCH, stdin pumped into the hijacked stream with
//! docker's client-side detach keys, and a stream copied to stdout/stderr.

use std::os::fd::BorrowedFd;

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::Client;

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

pub fn stdin_is_tty() -> bool {
    rustix::termios::isatty(stdin_fd())
}

pub fn stdout_is_tty() -> bool {
    // SAFETY: fd 1 stays open for the life of the process.
    rustix::termios::isatty(unsafe { BorrowedFd::borrow_raw(1) })
}

pub fn stderr_is_tty() -> bool {
    // SAFETY: fd 2 stays open for the life of the process.
    rustix::termios::isatty(unsafe { BorrowedFd::borrow_raw(2) })
}

/// Raw mode on stdin until dropped (drop runs on return, `?` and panic alike). A SIGTERM or SIGHUP
/// while raw restores the terminal before the process exits with 128+signal, as a shell expects.
pub struct RawGuard {
    saved: rustix::termios::Termios,
    on_signal: Option<tokio::task::JoinHandle<()>>,
}

impl RawGuard {
    pub fn new() -> Result<RawGuard> {
        let saved = rustix::termios::tcgetattr(stdin_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin_fd(), rustix::termios::OptionalActions::Now, &raw)?;
        let restore = saved.clone();
        let on_signal = tokio::runtime::Handle::try_current().ok().map(|h| {
            h.spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup()))
                else {
                    return;
                };
                let code = tokio::select! {
                    _ = term.recv() => 128 + 15,
                    _ = hup.recv() => 128 + 1,
                };
                let _ = rustix::termios::tcsetattr(stdin_fd(), rustix::termios::OptionalActions::Now, &restore);
                std::process::exit(code);
            })
        });
        Ok(RawGuard { saved, on_signal })
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        if let Some(t) = self.on_signal.take() {
            t.abort();
        }
        let _ = rustix::termios::tcsetattr(stdin_fd(), rustix::termios::OptionalActions::Now, &self.saved);
    }
}

/// Reads a line from the terminal after `prompt`; with `secret`, echo is off while typing (docker
/// login's password prompt) and restored however the read ends.
pub fn prompt_line(prompt: &str, secret: bool) -> Result<String> {
    use std::io::Write;
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let saved = rustix::termios::tcgetattr(stdin_fd())?;
    let restore = secret.then(|| {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(stdin_fd(), rustix::termios::OptionalActions::Now, &quiet);
        RawGuard { saved: saved.clone(), on_signal: None }
    });
    let mut line = String::new();
    let r = std::io::stdin().read_line(&mut line);
    drop(restore);
    if secret {
        eprintln!();
    }
    r?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The terminal's size as (height, width), from stdout or stdin.
pub fn size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        // SAFETY: fds 0 and 1 stay open for the life of the process.
        if let Ok(w) = rustix::termios::tcgetwinsize(unsafe { BorrowedFd::borrow_raw(fd) }) {
            if w.ws_row > 0 && w.ws_col > 0 {
                return Some((w.ws_row, w.ws_col));
            }
        }
    }
    None
}

/// Sends the size now and on every window change until the task is dropped. `path` is
/// `/containers/{id}/resize` or `/exec/{id}/resize`.
pub fn monitor_size(c: &Client, path: String) -> tokio::task::JoinHandle<()> {
    let c = c.clone();
    tokio::spawn(async move {
        let send = |c: Client, path: String| async move {
            if let Some((h, w)) = size() {
                let _ = c.call(hyper::Method::POST, &format!("{path}?h={h}&w={w}"), None).await;
            }
        };
        send(c.clone(), path.clone()).await;
        let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
            return;
        };
        while sig.recv().await.is_some() {
            send(c.clone(), path.clone()).await;
        }
    })
}

/// How the stdin pump ended.
#[derive(Debug, PartialEq, Eq)]
pub enum StdinEnd {
    Eof,
    Detached,
}

/// Copies stdin into `w`. With `keys`, watches for the detach sequence as docker's escape proxy does
/// (the keys are not sent). On EOF the write side is shut down (half-close) so the container sees it.
pub async fn pump_stdin(mut w: impl AsyncWrite + Unpin, keys: Option<Vec<u8>>) -> StdinEnd {
    let mut scanner = keys.map(berth_api::detach::Scanner::new);
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (data, detach) = match scanner.as_mut().map(|s| s.feed(&buf[..n])) {
            Some(berth_api::detach::Scan::Forward(d)) => (d, false),
            Some(berth_api::detach::Scan::Detach(d)) => (d, true),
            None => (buf[..n].to_vec(), false),
        };
        if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
            return StdinEnd::Eof;
        }
        if detach {
            return StdinEnd::Detached;
        }
    }
    let _ = w.shutdown().await;
    StdinEnd::Eof
}

/// Demultiplexes a stdcopy stream (or copies a TTY stream) to our stdout and stderr.
pub async fn copy_output(mut r: impl AsyncRead + Unpin, tty: bool) -> Result<()> {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if tty {
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await?;
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        let (frames, rest) = berth_api::stdcopy::parse(&pending);
        let rest = rest.to_vec();
        for (s, data) in frames {
            if s == berth_api::stdcopy::STDERR {
                stderr.write_all(&data).await?;
                stderr.flush().await?;
            } else {
                stdout.write_all(&data).await?;
                stdout.flush().await?;
            }
        }
        pending = rest;
    }
    Ok(())
}

/// Forwards the signals the CLI receives to the container (`--sig-proxy`, for non-TTY runs).
pub fn proxy_signals(c: &Client, id: String) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let c = c.clone();
    tokio::spawn(async move {
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (k, name) in kinds {
            let Ok(mut s) = signal(k) else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(name).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        while let Some(name) = rx.recv().await {
            let _ = c.call(hyper::Method::POST, &format!("/containers/{id}/kill?signal={name}"), None).await;
        }
    })
}
