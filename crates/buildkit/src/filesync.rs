//! The receiving side of fsutil's DiffCopy (`moby.filesync.v1.FileSync/DiffCopy`): the client
//! sends one STAT packet per entry in walk order (an empty STAT ends the list), berthd asks for
//! each regular file's data by its index (REQ) and gets DATA packets ending with an empty one,
//! then FIN. The entries are written out as a tar stream, so the build context goes through the
//! same confined applier as a classic build's (no entry can land outside the context).
//!
//! Everything here is client input: entry count, name lengths, sizes and the data's length
//! against the announced size are checked.

use std::time::Duration;

use berth_types::{Error, Result};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::proto::{self, Packet, Stat};
use crate::session::Session;

const DIFF_COPY: &str = "/moby.filesync.v1.FileSync/DiffCopy";
/// Entries one transfer may announce.
const MAX_ENTRIES: usize = 1 << 20;
/// Silence from the client that ends a transfer.
const IDLE: Duration = Duration::from_secs(120);

// Go's os.FileMode type bits, as fsutil sends them.
const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_DEVICE: u32 = 1 << 26;
const MODE_NAMED_PIPE: u32 = 1 << 25;
const MODE_SOCKET: u32 = 1 << 24;
const MODE_SETUID: u32 = 1 << 23;
const MODE_SETGID: u32 = 1 << 22;
const MODE_CHAR_DEVICE: u32 = 1 << 21;
const MODE_STICKY: u32 = 1 << 20;
const MODE_IRREGULAR: u32 = 1 << 19;
const MODE_TYPE: u32 =
    MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR;

/// What to ask the client for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The local's name: `context`, `dockerfile`, or a named context.
    pub dir: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub follow: Vec<String>,
    /// Bytes of file data this transfer may bring (the Dockerfile's is small).
    pub max_bytes: u64,
}

fn meta(v: &str) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    // fsutil percent-encodes values that are not valid header text (and says so with `-encoded`);
    // the patterns here come from the client's own Dockerfile/.dockerignore.
    v.parse().map_err(|_| Error::invalid(format!("build context pattern {v:?} is not valid header text")))
}

/// What an entry is, from fsutil's stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    Symlink,
    /// A regular file; `hardlink` when it names an earlier entry instead of carrying data.
    File {
        hardlink: bool,
    },
    Fifo,
    Char,
    Block,
    /// Sockets and irregular files are not transferred.
    Skip,
}

pub(crate) fn kind_of(st: &Stat) -> EntryKind {
    match st.mode & MODE_TYPE {
        MODE_DIR => EntryKind::Dir,
        MODE_SYMLINK => EntryKind::Symlink,
        MODE_NAMED_PIPE => EntryKind::Fifo,
        k if k & MODE_DEVICE != 0 && k & MODE_CHAR_DEVICE != 0 => EntryKind::Char,
        k if k & MODE_DEVICE != 0 => EntryKind::Block,
        0 => EntryKind::File { hardlink: !st.linkname.is_empty() },
        _ => EntryKind::Skip,
    }
}

/// Unix permission and special bits of fsutil's Go mode.
pub(crate) fn unix_perm(go: u32) -> u32 {
    let mut mode = go & 0o777;
    for (bit, unix) in [(MODE_SETUID, 0o4000), (MODE_SETGID, 0o2000), (MODE_STICKY, 0o1000)] {
        if go & bit != 0 {
            mode |= unix;
        }
    }
    mode
}

/// One DiffCopy call, receiving side: the entry list first (data may only be asked for once it
/// is complete), then the data of the entries asked for, one at a time, then FIN both ways.
pub(crate) struct Transfer {
    tx: mpsc::Sender<Packet>,
    inbound: tonic::Streaming<Packet>,
    pub entries: Vec<Stat>,
    /// The file asked for last: its announced size and the bytes come so far.
    pending: (u64, u64),
}

impl Transfer {
    pub(crate) async fn open(session: &Session, req: &Request) -> Result<Transfer> {
        if !session.supports(DIFF_COPY) {
            return Err(Error::invalid("the build session offers no file sync (DiffCopy)"));
        }
        let (tx, rx) = mpsc::channel::<Packet>(16);
        let mut call = tonic::Request::new(ReceiverStream::new(rx));
        let md = call.metadata_mut();
        md.insert("dir-name", meta(&req.dir)?);
        for (key, vals) in
            [("include-patterns", &req.include), ("exclude-patterns", &req.exclude), ("followpaths", &req.follow)]
        {
            for v in vals {
                md.append(key, meta(v)?);
            }
        }
        let mut g = session.grpc().await?;
        let codec = tonic_prost::ProstCodec::<Packet, Packet>::default();
        let mut inbound = g
            .streaming(call, http::uri::PathAndQuery::from_static(DIFF_COPY), codec)
            .await
            .map_err(|s| Error::invalid(format!("build context {}: {}", req.dir, s.message())))?
            .into_inner();
        let mut entries: Vec<Stat> = Vec::new();
        loop {
            let p = next(&mut inbound).await?;
            match (p.r#type, p.stat) {
                (proto::PACKET_STAT, Some(st)) => {
                    if entries.len() >= MAX_ENTRIES {
                        return Err(Error::invalid("build context: too many entries"));
                    }
                    entries.push(st);
                }
                (proto::PACKET_STAT, None) => break,
                (t, _) => {
                    return Err(Error::invalid(format!("build context: unexpected packet {t} in the entry list")))
                }
            }
        }
        Ok(Transfer { tx, inbound, entries, pending: (0, 0) })
    }

    /// Asks for entry `id`'s data.
    pub(crate) async fn request(&mut self, id: usize) -> Result<()> {
        self.pending = (self.entries.get(id).map(|s| s.size.max(0) as u64).unwrap_or(0), 0);
        self.tx
            .send(Packet { r#type: proto::PACKET_REQ, id: id as u32, ..Default::default() })
            .await
            .map_err(|_| Error::invalid("build context: the transfer closed"))
    }

    /// The next chunk of entry `id` (asked for last); `None` at its end. The data must be exactly
    /// as long as the entry announced (a file that changed while it was sent is an error).
    pub(crate) async fn chunk(&mut self, id: usize) -> Result<Option<Vec<u8>>> {
        let p = next(&mut self.inbound).await?;
        let path = || self.entries.get(id).map(|s| s.path.clone()).unwrap_or_default();
        if p.r#type != proto::PACKET_DATA || p.id != id as u32 {
            return Err(Error::invalid(format!("build context: unexpected packet {} for {}", p.r#type, path())));
        }
        let (size, got) = &mut self.pending;
        *got += p.data.len() as u64;
        if *got > *size {
            return Err(Error::invalid(format!("build context: {} grew while it was sent", path())));
        }
        if p.data.is_empty() && *got != *size {
            return Err(Error::invalid(format!("build context: {} changed while it was sent", path())));
        }
        Ok((!p.data.is_empty()).then_some(p.data))
    }

    /// FIN both ways ends the call cleanly on the client's side.
    pub(crate) async fn finish(mut self) {
        let _ = self.tx.send(Packet { r#type: proto::PACKET_FIN, ..Default::default() }).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inbound.next()).await;
    }
}

/// Receives the directory as a tar stream into `out`; returns the bytes of file data received.
pub async fn receive(session: &Session, req: &Request, out: &mut (impl AsyncWrite + Unpin)) -> Result<u64> {
    let mut t = Transfer::open(session, req).await?;
    let mut total = 0u64;
    for id in 0..t.entries.len() {
        let st = t.entries[id].clone();
        let kind = kind_of(&st);
        if kind == EntryKind::Skip {
            continue;
        }
        let hardlink = kind == EntryKind::File { hardlink: true };
        let wants_data = kind == EntryKind::File { hardlink: false } && st.size > 0;
        let size = if wants_data { st.size as u64 } else { 0 };
        if total.saturating_add(size) > req.max_bytes {
            return Err(Error::invalid(format!("build context {} is larger than {} bytes", req.dir, req.max_bytes)));
        }
        out.write_all(&header(&st, hardlink, size)?).await?;
        if !wants_data {
            continue;
        }
        t.request(id).await?;
        while let Some(data) = t.chunk(id).await? {
            out.write_all(&data).await?;
        }
        out.write_all(&[0u8; 512][..((512 - size % 512) % 512) as usize]).await?;
        total += size;
    }
    out.write_all(&[0u8; 1024]).await?;
    out.flush().await?;
    t.finish().await;
    Ok(total)
}

/// Go's `os.FileMode` of a Unix mode (what fsutil's stat carries).
pub(crate) fn go_mode(unix: u32) -> u32 {
    let kind = match unix & 0o170000 {
        0o040000 => MODE_DIR,
        0o120000 => MODE_SYMLINK,
        0o010000 => MODE_NAMED_PIPE,
        0o140000 => MODE_SOCKET,
        0o020000 => MODE_DEVICE | MODE_CHAR_DEVICE,
        0o060000 => MODE_DEVICE,
        _ => 0,
    };
    let mut m = kind | (unix & 0o777);
    for (bit, go) in [(0o4000, MODE_SETUID), (0o2000, MODE_SETGID), (0o1000, MODE_STICKY)] {
        if unix & bit != 0 {
            m |= go;
        }
    }
    m
}

/// The client's next packet; its errors, silence and early end are errors.
async fn next(inbound: &mut tonic::Streaming<Packet>) -> Result<Packet> {
    match tokio::time::timeout(IDLE, inbound.next()).await {
        Err(_) => Err(Error::invalid("build context: the client stopped sending")),
        Ok(None) => Err(Error::invalid("build context: the client ended the transfer early")),
        Ok(Some(Err(s))) => Err(Error::invalid(format!("build context: {}", s.message()))),
        Ok(Some(Ok(p))) if p.r#type == proto::PACKET_ERR => {
            Err(Error::invalid(format!("build context: {}", String::from_utf8_lossy(&p.data))))
        }
        Ok(Some(Ok(p))) => Ok(p),
    }
}

/// The tar header(s) of one entry: GNU long-name/long-link records first when the names do not
/// fit the header.
fn header(st: &Stat, hardlink: bool, size: u64) -> Result<Vec<u8>> {
    let path = st.path.trim_start_matches('/');
    if path.is_empty() || path.contains('\0') || st.linkname.contains('\0') {
        return Err(Error::invalid(format!("build context: bad entry name {:?}", st.path)));
    }
    let kind = st.mode & MODE_TYPE;
    let (ty, name) = match kind {
        MODE_DIR => (tar::EntryType::Directory, format!("{path}/")),
        MODE_SYMLINK => (tar::EntryType::Symlink, path.to_string()),
        MODE_NAMED_PIPE => (tar::EntryType::Fifo, path.to_string()),
        k if k & MODE_DEVICE != 0 && k & MODE_CHAR_DEVICE != 0 => (tar::EntryType::Char, path.to_string()),
        k if k & MODE_DEVICE != 0 => (tar::EntryType::Block, path.to_string()),
        _ if hardlink => (tar::EntryType::Link, path.to_string()),
        _ => (tar::EntryType::Regular, path.to_string()),
    };
    let mut out = Vec::with_capacity(512);
    let mut h = tar::Header::new_gnu();
    if name.len() > 100 {
        out.extend(long_record(b'L', &name));
    }
    let link = st.linkname.trim_start_matches(if hardlink { "/" } else { "" });
    if link.len() > 100 {
        out.extend(long_record(b'K', link));
    }
    h.set_entry_type(ty);
    set_bytes(&mut h.as_old_mut().name, name.as_bytes());
    set_bytes(&mut h.as_old_mut().linkname, link.as_bytes());
    h.set_mode(unix_perm(st.mode));
    h.set_uid(st.uid as u64);
    h.set_gid(st.gid as u64);
    h.set_size(size);
    h.set_mtime((st.mod_time.max(0) / 1_000_000_000) as u64);
    if matches!(ty, tar::EntryType::Char | tar::EntryType::Block) {
        h.set_device_major(st.devmajor as u32)?;
        h.set_device_minor(st.devminor as u32)?;
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

fn set_bytes(field: &mut [u8], v: &[u8]) {
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
}

/// A `././@LongLink` record carrying a name that does not fit a header (`L` path, `K` link).
fn long_record(kind: u8, name: &str) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    set_bytes(&mut h.as_old_mut().name, b"././@LongLink");
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(0o644);
    h.set_size(name.len() as u64 + 1);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(path: &str, mode: u32, size: i64, link: &str) -> Stat {
        Stat {
            path: path.into(),
            mode,
            size,
            linkname: link.into(),
            uid: 1,
            gid: 2,
            mod_time: 5_000_000_000,
            ..Default::default()
        }
    }

    fn entries(bytes: &[u8]) -> Vec<(String, tar::EntryType, String, u32)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                    link,
                    e.header().mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn headers_carry_go_modes_links_and_long_names() {
        let long = "d/".to_string() + &"x".repeat(150);
        let mut tar = Vec::new();
        tar.extend(header(&stat("d", MODE_DIR | 0o755, 0, ""), false, 0).unwrap());
        tar.extend(header(&stat("d/s", MODE_SYMLINK | 0o777, 0, "../etc/passwd"), false, 0).unwrap());
        tar.extend(header(&stat("d/h", 0o644, 3, "d/f"), true, 0).unwrap());
        tar.extend(header(&stat(&long, MODE_SETUID | 0o755, 0, ""), false, 0).unwrap());
        tar.extend([0u8; 1024]);
        let e = entries(&tar);
        assert_eq!(e[0], ("d/".into(), tar::EntryType::Directory, "".into(), 0o755));
        assert_eq!(e[1], ("d/s".into(), tar::EntryType::Symlink, "../etc/passwd".into(), 0o777));
        assert_eq!(e[2], ("d/h".into(), tar::EntryType::Link, "d/f".into(), 0o644));
        assert_eq!(e[3], (long, tar::EntryType::Regular, "".into(), 0o4755));
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(header(&stat("/", MODE_DIR, 0, ""), false, 0).is_err());
        assert!(header(&stat("a\0b", 0, 0, ""), false, 0).is_err());
    }
}
