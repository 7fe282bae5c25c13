//! `berth cp`: docker's copy rules between a container and the local filesystem, over the archive
//! endpoints (GET/HEAD/PUT `/containers/{id}/archive`). Tars are streamed, never held whole.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use hyper::Method;

use crate::client::{empty, enc, reader_body, Client};
use crate::units::human_size;

/// Go's `os.ModeDir`, as the path-stat header carries it.
const MODE_DIR: u32 = 1 << 31;

/// `CONTAINER:PATH` → Some((container, path)); a local path (absolute, `./x`, no colon) → None.
fn split_arg(arg: &str) -> Option<(String, String)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty()).then(|| (c.to_string(), p.to_string()))
}

fn stat_header(resp: &hyper::Response<hyper::body::Incoming>) -> Option<berth_api::container::PathStat> {
    let raw = resp.headers().get("X-Docker-Container-Path-Stat")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub async fn cp(c: &Client, src: String, dst: String, follow: bool, quiet: bool) -> Result<i32> {
    match (split_arg(&src), split_arg(&dst)) {
        (Some((ctr, path)), None) => from_container(c, &ctr, &path, &dst, follow, quiet).await,
        (None, Some((ctr, path))) => to_container(c, &src, &ctr, &path, follow, quiet).await,
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

async fn from_container(c: &Client, ctr: &str, path: &str, dst: &str, _follow: bool, quiet: bool) -> Result<i32> {
    let resp = Client::check(
        c.send(Method::GET, &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)), empty(), None).await?,
    )
    .await?;
    let src_is_dir = stat_header(&resp).is_some_and(|s| s.mode & MODE_DIR != 0);
    let body = http_body_util::BodyStream::new(resp.into_body());
    use futures_util::TryStreamExt;
    let stream = body.try_filter_map(|f| async move { Ok(f.into_data().ok()) }).map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
    if dst == "-" {
        let mut r = reader;
        tokio::io::copy(&mut r, &mut tokio::io::stdout()).await?;
        return Ok(0);
    }
    let dst_path = PathBuf::from(dst);
    let contents_only = path.ends_with("/.");
    let sync = tokio_util::io::SyncIoBridge::new(reader);
    let dst2 = dst_path.clone();
    let n = tokio::task::spawn_blocking(move || extract(sync, &dst2, src_is_dir, contents_only)).await??;
    if !quiet {
        eprintln!("Successfully copied {} to {}", human_size(n as f64), dst_path.display());
    }
    Ok(0)
}

/// Extracts the archive docker's way: into an existing directory as-is; otherwise its top entry
/// becomes `dst`. Staged in a sibling temporary directory so a failure leaves `dst` untouched.
fn extract(r: impl std::io::Read, dst: &Path, src_is_dir: bool, contents_only: bool) -> Result<u64> {
    let dst_dir = dst.is_dir();
    if dst.exists() && !dst_dir && src_is_dir {
        bail!("cannot copy a directory to a file");
    }
    let parent = if dst_dir {
        dst.to_path_buf()
    } else {
        dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
    };
    if !parent.is_dir() {
        bail!("destination directory {:?} must exist", parent.display());
    }
    let stage = tempfile::Builder::new().prefix(".berth-cp-").tempdir_in(&parent)?;
    let mut ar = tar::Archive::new(CountingReader { inner: r, n: 0 });
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    ar.unpack(stage.path()).context("extracting the archive")?;
    let n = ar.into_inner().n;
    let mut tops = std::fs::read_dir(stage.path())?.collect::<std::io::Result<Vec<_>>>()?;
    if tops.len() != 1 {
        bail!("unexpected archive: {} top-level entries", tops.len());
    }
    let top = tops.remove(0).path();
    if dst_dir && !contents_only {
        let target = dst.join(top.file_name().expect("entry name"));
        replace(&top, &target)?;
    } else if dst_dir && contents_only {
        for e in std::fs::read_dir(&top)? {
            let e = e?;
            replace(&e.path(), &dst.join(e.file_name()))?;
        }
    } else {
        replace(&top, dst)?;
    }
    Ok(n)
}

/// Moves `from` onto `to`, merging directories into an existing one as docker's copy does.
fn replace(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() && to.is_dir() {
        for e in std::fs::read_dir(from)? {
            let e = e?;
            replace(&e.path(), &to.join(e.file_name()))?;
        }
        return Ok(());
    }
    if to.is_dir() {
        bail!("cannot overwrite directory {:?} with non-directory", to.display());
    }
    std::fs::rename(from, to).with_context(|| format!("move into {}", to.display()))
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

async fn to_container(c: &Client, src: &str, ctr: &str, path: &str, follow: bool, quiet: bool) -> Result<i32> {
    let put = |dir: String, body| {
        let c = c.clone();
        async move {
            let p = format!("/containers/{}/archive?path={}&noOverwriteDirNonDir=true", enc(ctr), enc(&dir));
            Client::check(c.send(Method::PUT, &p, body, Some("application/x-tar")).await?).await
        }
    };
    if src == "-" {
        put(path.to_string(), reader_body(tokio::io::stdin())).await?;
        return Ok(0);
    }
    let meta = if follow { std::fs::metadata(src) } else { std::fs::symlink_metadata(src) }
        .map_err(|_| anyhow!("lstat {src}: no such file or directory"))?;
    let head =
        c.send(Method::HEAD, &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)), empty(), None).await?;
    let exists = head.status().is_success();
    if !exists && head.status() != hyper::StatusCode::NOT_FOUND {
        Client::check(head).await?;
        unreachable!("check fails on a non-success status");
    }
    let dst_is_dir = exists && stat_header(&head).is_some_and(|s| s.mode & MODE_DIR != 0);
    let contents_only = src.ends_with("/.");
    let (target_dir, name) = if dst_is_dir {
        (path.to_string(), Path::new(src.trim_end_matches("/.")).file_name().map(|n| n.to_string_lossy().into_owned()))
    } else {
        if path.ends_with('/') {
            bail!("Error response from daemon: Could not find the file {path} in container {ctr}");
        }
        if exists && meta.is_dir() {
            bail!("cannot copy a directory to a file");
        }
        let p = Path::new(path);
        let parent =
            p.parent().map(|d| d.to_string_lossy().into_owned()).filter(|d| !d.is_empty()).unwrap_or("/".into());
        (parent, p.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    let name = name.ok_or_else(|| anyhow!("invalid destination {path:?}"))?;
    let (rd, wr) = tokio::io::duplex(256 * 1024);
    let src_path = PathBuf::from(src.trim_end_matches("/."));
    let writer = tokio_util::io::SyncIoBridge::new(wr);
    let packer = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut b = tar::Builder::new(CountingWriter { inner: writer, n: 0 });
        b.follow_symlinks(follow);
        if meta.is_dir() {
            if contents_only && dst_is_dir {
                b.append_dir_all(".", &src_path)?;
            } else {
                b.append_dir_all(&name, &src_path)?;
            }
        } else {
            b.append_path_with_name(&src_path, &name)?;
        }
        let mut w = b.into_inner()?;
        std::io::Write::flush(&mut w)?;
        let n = w.n;
        drop(w);
        Ok(n)
    });
    let upload = put(target_dir, reader_body(rd));
    let (up, packed) = tokio::join!(upload, packer);
    up?;
    let n = packed??;
    if !quiet {
        eprintln!("Successfully copied {} to {ctr}:{path}", human_size(n as f64));
    }
    Ok(0)
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_as_docker() {
        assert_eq!(split_arg("web:/etc/hosts"), Some(("web".into(), "/etc/hosts".into())));
        assert_eq!(split_arg("/tmp/a:b"), None);
        assert_eq!(split_arg("./a:b"), None);
        assert_eq!(split_arg("file"), None);
    }
}
