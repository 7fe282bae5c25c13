//! Attach: live output to clients, stdin from them. Output before the attach comes from the log.

use std::sync::Arc;

use berth_runtime::proto;
use berth_types::{Error, Result};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::logs::LogOptions;
use super::{Chunk, ContainerService, Entry};

#[derive(Debug)]
pub enum StdinMsg {
    Data(Bytes),
    Close,
}

/// Chunks (of up to 32 KiB) queued for one attached client: what berthd holds for it at most.
pub(super) const QUEUE: usize = 64;
/// How long a client that stopped reading may hold up the container's output before it is
/// disconnected (the container's output waits meanwhile, as with Docker).
pub(super) const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// One attached client's output channel and which streams it wants.
#[derive(Clone)]
pub(super) struct Subscriber {
    stdout: bool,
    stderr: bool,
    tx: mpsc::Sender<Chunk>,
}

impl Subscriber {
    /// Delivers a chunk, waiting while the client's queue is full; false once the client has gone
    /// or has not read for `STALL`.
    pub(super) async fn send(&self, stream: u8, chunk: &Bytes) -> bool {
        let wanted = (stream == 1 && self.stdout) || (stream == 2 && self.stderr);
        if !wanted {
            return !self.tx.is_closed();
        }
        matches!(tokio::time::timeout(STALL, self.tx.send((stream, chunk.clone()))).await, Ok(Ok(())))
    }

    fn same(&self, other: &Subscriber) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

/// Hands a chunk to every attached client: bounded queues, so a client that stops reading slows
/// the container's output (or is dropped after `STALL`) instead of growing berthd.
pub(super) async fn broadcast(e: &Entry, stream: u8, chunk: Bytes) {
    let subs: Vec<Subscriber> = e.subscribers.lock().expect("subscribers lock").clone();
    let mut gone = Vec::new();
    for s in &subs {
        if !s.send(stream, &chunk).await {
            gone.push(s.clone());
        }
    }
    if !gone.is_empty() {
        e.subscribers.lock().expect("subscribers lock").retain(|s| !gone.iter().any(|g| g.same(s)));
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub stream: bool,
    pub logs: bool,
}

/// An attached client's view: output until the container exits, and stdin if it asked for it.
pub struct AttachStream {
    pub tty: bool,
    pub output: mpsc::Receiver<Chunk>,
    pub stdin: Option<StdinSink>,
}

pub struct StdinSink {
    tx: mpsc::UnboundedSender<StdinMsg>,
    /// With StdinOnce, the client's EOF closes the container's stdin.
    pub close_on_eof: bool,
}

impl StdinSink {
    pub fn send(&self, data: Bytes) {
        let _ = self.tx.send(StdinMsg::Data(data));
    }
    pub fn close(&self) {
        let _ = self.tx.send(StdinMsg::Close);
    }
}

/// Forwards stdin to the shim, waiting for it when the client writes before the container started.
pub(super) fn spawn_stdin_forwarder(e: &Arc<Entry>, mut rx: mpsc::UnboundedReceiver<StdinMsg>) {
    let shim = e.shim.clone();
    let ready = e.shim_ready.clone();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let (kind, data) = match msg {
                StdinMsg::Data(d) => (proto::STDIN, d),
                StdinMsg::Close => (proto::CLOSE_STDIN, Bytes::new()),
            };
            loop {
                let notified = ready.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(w) = shim.lock().await.as_mut() {
                    let _ = w.send(kind, &data).await;
                    break;
                }
                notified.await;
            }
        }
    });
}

impl ContainerService {
    pub async fn attach(&self, name: &str, opts: AttachOptions) -> Result<AttachStream> {
        let e = self.get(name)?;
        let rec = e.record();
        let (tx, output) = mpsc::channel(QUEUE);
        let past = if opts.logs {
            let lo = LogOptions { stdout: opts.stdout, stderr: opts.stderr, ..Default::default() };
            Some(self.logs(name, lo)?.1)
        } else {
            None
        };
        let live = if opts.stream {
            // A stopped container may be attached to: the stream starts with its next start, as
            // `docker start -a` relies on. (The docker CLI itself refuses `attach` to a stopped one.)
            if matches!(rec.state.status, super::Status::Removing | super::Status::Dead) {
                return Err(Error::conflict(format!("container {} is marked for removal", rec.id)));
            }
            let (live_tx, live_rx) = mpsc::channel(QUEUE);
            e.subscribers.lock().expect("subscribers lock").push(Subscriber {
                stdout: opts.stdout,
                stderr: opts.stderr,
                tx: live_tx,
            });
            Some(live_rx)
        } else {
            None
        };
        // The log first, then live output (subscribed before the log was read, so nothing falls
        // in between), through the client's one bounded queue.
        tokio::spawn(async move {
            for mut rx in [past, live].into_iter().flatten() {
                while let Some(c) = rx.recv().await {
                    if tx.send(c).await.is_err() {
                        return;
                    }
                }
            }
        });
        self.publish("attach", &rec, &[]);
        let stdin = (opts.stdin && rec.config.open_stdin)
            .then(|| StdinSink { tx: e.stdin.clone(), close_on_eof: rec.config.stdin_once });
        Ok(AttachStream { tty: rec.config.tty, output, stdin })
    }
}
