//! The exporters that send the result to the client (`-o type=tar`, `-o type=local`), over the
//! session's `moby.filesync.v1.FileSend/DiffCopy`, addressed by the exporter's index
//! (`buildkit-attachable-exporter-id`): `tar` as a byte stream, `local` with fsutil's file sync,
//! berthd being the sender this time. The image's filesystem is read from a private read-only
//! mount of it; nothing there is followed (symlinks are sent as symlinks).

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_types::{Error, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::filesync::go_mode;
use crate::proto::{self, BytesMessage, Packet, Stat};
use crate::session::Session;

const FILE_SEND: &str = "/moby.filesync.v1.FileSend/DiffCopy";
const CHUNK: usize = 32 << 10;
/// Silence from the client that ends an export.
const IDLE: std::time::Duration = std::time::Duration::from_secs(120);

/// The client's next message, within [`IDLE`].
async fn next<T>(inbound: &mut tonic::Streaming<T>) -> Result<Option<T>> {
    match tokio::time::timeout(IDLE, inbound.next()).await {
        Err(_) => Err(Error::invalid("export: the client stopped answering")),
        Ok(None) => Ok(None),
        Ok(Some(m)) => m.map(Some).map_err(|s| Error::invalid(format!("export: {}", s.message()))),
    }
}

fn call<T>(stream: T, index: usize) -> Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(stream);
    let v = index.to_string().parse().map_err(|_| Error::internal("exporter id"))?;
    r.metadata_mut().insert("buildkit-attachable-exporter-id", v);
    Ok(r)
}

fn closed() -> Error {
    Error::invalid("the client closed the export")
}

/// `type=tar`: the filesystem at `root` as one tar stream.
pub(crate) async fn tar(session: &Session, index: usize, root: PathBuf) -> Result<u64> {
    if !session.supports(FILE_SEND) {
        return Err(Error::invalid("the client's session takes no files (FileSend)"));
    }
    let (tx, rx) = mpsc::channel::<BytesMessage>(8);
    let mut g = session.grpc().await?;
    let codec = tonic_prost::ProstCodec::<BytesMessage, BytesMessage>::default();
    let send =
        g.streaming(call(ReceiverStream::new(rx), index)?, http::uri::PathAndQuery::from_static(FILE_SEND), codec);
    // The tar is written on a blocking thread; its chunks go out as they are made.
    let writer = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut w = ChunkWriter { tx, buf: Vec::with_capacity(CHUNK), total: 0 };
        let mut b = tar::Builder::new(&mut w);
        b.follow_symlinks(false);
        for (rel, _) in walk(&root)? {
            b.append_path_with_name(root.join(&rel), &rel)?;
        }
        b.finish()?;
        drop(b);
        w.flush_chunk()?;
        Ok(w.total)
    });
    let mut inbound = send.await.map_err(|s| Error::invalid(format!("export: {}", s.message())))?.into_inner();
    let total = writer.await.map_err(|e| Error::internal(format!("export task: {e}")))??;
    // The client answers (ends its side) once it has written everything.
    while next(&mut inbound).await?.is_some() {}
    Ok(total)
}

struct ChunkWriter {
    tx: mpsc::Sender<BytesMessage>,
    buf: Vec<u8>,
    total: u64,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.total += data.len() as u64;
            self.tx.blocking_send(BytesMessage { data }).map_err(|_| std::io::Error::other(closed()))?;
        }
        Ok(())
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every entry under `root` in fsutil's walk order (depth first, names in byte order), with its
/// metadata (not followed). Sockets are left out, as fsutil does.
fn walk(root: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
    fn dir(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) -> Result<()> {
        let mut names: Vec<_> =
            std::fs::read_dir(root.join(rel))?.map(|e| e.map(|e| e.file_name())).collect::<std::io::Result<_>>()?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for n in names {
            let p = rel.join(&n);
            let md = std::fs::symlink_metadata(root.join(&p))?;
            if md.file_type().is_socket() {
                continue;
            }
            let is_dir = md.is_dir();
            out.push((p.clone(), md));
            if is_dir {
                dir(root, &p, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    dir(root, Path::new(""), &mut out)?;
    Ok(out)
}

/// `type=local`: the files at `root`, sent with fsutil's protocol (stats, then the data the
/// client asks for). Returns the bytes of file data sent.
pub(crate) async fn local(session: &Session, index: usize, root: PathBuf) -> Result<u64> {
    if !session.supports(FILE_SEND) {
        return Err(Error::invalid("the client's session takes no files (FileSend)"));
    }
    let r = root.clone();
    let entries = tokio::task::spawn_blocking(move || walk(&r)).await.map_err(|e| Error::internal(e.to_string()))??;
    tracing::debug!(entries = entries.len(), "local export");
    let (tx, rx) = mpsc::channel::<Packet>(16);
    // The stats go out first and on their own: the client answers (even its headers) only once
    // it has them.
    let stats = stats(&root, &entries)?;
    let stx = tx.clone();
    let sender = tokio::spawn(async move {
        for st in stats {
            stx.send(Packet { r#type: proto::PACKET_STAT, stat: Some(st), ..Default::default() })
                .await
                .map_err(|_| closed())?;
        }
        stx.send(Packet { r#type: proto::PACKET_STAT, ..Default::default() }).await.map_err(|_| closed())
    });
    let mut g = session.grpc().await?;
    let codec = tonic_prost::ProstCodec::<Packet, Packet>::default();
    let mut inbound = g
        .streaming(call(ReceiverStream::new(rx), index)?, http::uri::PathAndQuery::from_static(FILE_SEND), codec)
        .await
        .map_err(|s| Error::invalid(format!("export: {}", s.message())))?
        .into_inner();
    let mut total = 0u64;
    while let Some(p) = next(&mut inbound).await? {
        match p.r#type {
            proto::PACKET_REQ => {
                let (rel, md) =
                    entries.get(p.id as usize).ok_or_else(|| Error::invalid(format!("export: no entry {}", p.id)))?;
                if !md.is_file() {
                    return Err(Error::invalid(format!("export: entry {} is not a file", p.id)));
                }
                total += send_file(&tx, p.id, root.join(rel)).await?;
            }
            proto::PACKET_FIN => {
                let _ = tx.send(Packet { r#type: proto::PACKET_FIN, ..Default::default() }).await;
                break;
            }
            proto::PACKET_ERR => {
                return Err(Error::invalid(format!("export: {}", String::from_utf8_lossy(&p.data))));
            }
            _ => {}
        }
    }
    drop(tx);
    sender.await.map_err(|e| Error::internal(format!("export task: {e}")))??;
    // The client ends the call once it has what it asked for.
    while next(&mut inbound).await?.is_some() {}
    Ok(total)
}

/// fsutil's stat of each entry; a hard link names the first path of its inode.
fn stats(root: &Path, entries: &[(PathBuf, std::fs::Metadata)]) -> Result<Vec<Stat>> {
    let mut seen: HashMap<(u64, u64), String> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (rel, md) in entries {
        let path = rel.to_string_lossy().into_owned();
        let mut st = Stat {
            path: path.clone(),
            mode: go_mode(md.mode()),
            uid: md.uid(),
            gid: md.gid(),
            mod_time: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ..Default::default()
        };
        let ft = md.file_type();
        if ft.is_symlink() {
            st.linkname = std::fs::read_link(root.join(rel))?.to_string_lossy().into_owned();
        } else if ft.is_file() {
            st.size = md.size() as i64;
            if md.nlink() > 1 {
                match seen.get(&(md.dev(), md.ino())) {
                    Some(first) => st.linkname = first.clone(),
                    None => drop(seen.insert((md.dev(), md.ino()), path)),
                }
            }
        } else if ft.is_block_device() || ft.is_char_device() {
            st.devmajor = rustix::fs::major(md.rdev()) as i64;
            st.devminor = rustix::fs::minor(md.rdev()) as i64;
        }
        out.push(st);
    }
    Ok(out)
}

/// One file's DATA packets, ending with an empty one. Opened without following a final symlink.
async fn send_file(tx: &mpsc::Sender<Packet>, id: u32, path: PathBuf) -> Result<u64> {
    let (ctx, mut crx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new().read(true).custom_flags(libc_nofollow()).open(&path);
        let mut f = match f {
            Ok(f) => f,
            Err(e) => return drop(ctx.blocking_send(Err(e))),
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if ctx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => return drop(ctx.blocking_send(Err(e))),
            }
        }
    });
    let mut total = 0u64;
    while let Some(chunk) = crx.recv().await {
        let data = chunk?;
        total += data.len() as u64;
        tx.send(Packet { r#type: proto::PACKET_DATA, id, data, ..Default::default() }).await.map_err(|_| closed())?;
    }
    tx.send(Packet { r#type: proto::PACKET_DATA, id, ..Default::default() }).await.map_err(|_| closed())?;
    Ok(total)
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}
