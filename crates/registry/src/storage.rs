//! The storage driver: one trait (`object_store::ObjectStore`) behind which sit the filesystem
//! (default; writes land whole or not at all) and S3-compatible object storage. Everything the
//! registry keeps, uploads in progress included, lives here, so replicas share nothing else.
//!
//! Layout (keys):
//! - `blobs/sha256/<hex>`: content (layers, configs, manifests);
//! - `repositories/<name>/_layers/<hex>`: the blob is part of the repository (body: size);
//! - `repositories/<name>/_manifests/revisions/<hex>`: a manifest of the repository (body: media type);
//! - `repositories/<name>/_manifests/tags/<tag>`: the tag's manifest digest;
//! - `repositories/<name>/_referrers/<subject hex>/<hex>`: descriptor JSON of a manifest with a `subject`;
//! - `uploads/<uuid>/info` (JSON) and `uploads/<uuid>/<offset>` (chunks);
//! - `touched/<hex>`: when a blob was last reused, so gc spares blobs that a push is about to reference.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, PutPayload, WriteMultipart};

/// A storage failure: the object is missing, or the driver failed.
#[derive(Debug)]
pub enum StorageError {
    NotFound,
    Driver(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("not found"),
            StorageError::Driver(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            e => StorageError::Driver(e.to_string()),
        }
    }
}

pub type SResult<T> = Result<T, StorageError>;

/// S3 settings; credentials may also come from the usual `AWS_*` environment.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Plain-HTTP endpoints (a local S3-compatible server).
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The filesystem driver's folder: blob reads go straight to the file with large buffers
    /// (object_store's local reader yields 8 KiB pieces, a third of pull throughput).
    root: Option<std::path::PathBuf>,
}

/// An object's body, possibly a range of it.
pub struct Body {
    pub stream: BoxStream<'static, SResult<Bytes>>,
    /// Size of the whole object.
    pub size: u64,
    /// The byte range served, inclusive, when a range was asked for.
    pub range: Option<(u64, u64)>,
}

impl Storage {
    pub fn filesystem(root: &std::path::Path) -> anyhow::Result<Storage> {
        std::fs::create_dir_all(root)?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)?.with_automatic_cleanup(true);
        Ok(Storage { store: Arc::new(fs), root: Some(root.canonicalize()?) })
    }

    pub fn s3(c: &S3Config) -> anyhow::Result<Storage> {
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&c.bucket);
        if let Some(e) = &c.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        b = b.with_region(c.region.clone().unwrap_or_else(|| "us-east-1".into()));
        if let (Some(k), Some(s)) = (&c.access_key, &c.secret_key) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        }
        b = b.with_allow_http(c.allow_http);
        Ok(Storage { store: Arc::new(b.build()?), root: None })
    }

    pub async fn stat(&self, key: &str) -> SResult<Option<ObjectMeta>> {
        let _t = crate::metrics::StorageTimer::start("stat");
        match self.store.head(&Key::from(key)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A small object whole; `None` when missing.
    pub async fn read(&self, key: &str) -> SResult<Option<Bytes>> {
        let _t = crate::metrics::StorageTimer::start("read");
        match self.store.get(&Key::from(key)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams an object, or `range` (`start`, inclusive `end` or to the end) of it.
    pub async fn get(&self, key: &str, range: Option<(u64, Option<u64>)>) -> SResult<Body> {
        let _t = crate::metrics::StorageTimer::start("get");
        if let Some(root) = &self.root {
            return file_body(root.join(key), range).await;
        }
        let opts = GetOptions {
            range: range.map(|(s, e)| match e {
                Some(e) => GetRange::Bounded(s..e + 1),
                None => GetRange::Offset(s),
            }),
            ..Default::default()
        };
        let r = self.store.get_opts(&Key::from(key), opts).await?;
        let size = r.meta.size;
        let served = range.map(|_| (r.range.start, r.range.end.saturating_sub(1)));
        let stream = r.into_stream().map_err(StorageError::from).boxed();
        Ok(Body { stream, size, range: served })
    }

    pub async fn put(&self, key: &str, data: Bytes) -> SResult<()> {
        let _t = crate::metrics::StorageTimer::start("put");
        self.store.put(&Key::from(key), PutPayload::from_bytes(data)).await?;
        Ok(())
    }

    /// Writes a stream as one object that appears only when complete; returns its size.
    pub async fn put_stream(
        &self,
        key: &str,
        mut s: impl futures_util::Stream<Item = SResult<Bytes>> + Unpin,
    ) -> SResult<u64> {
        let _t = crate::metrics::StorageTimer::start("put_stream");
        let up = self.store.put_multipart(&Key::from(key)).await?;
        let mut w = WriteMultipart::new_with_chunk_size(up, 8 << 20);
        let mut n = 0u64;
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(c) => {
                    n += c.len() as u64;
                    w.wait_for_capacity(4).await?;
                    w.write(&c);
                }
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(e);
                }
            }
        }
        w.finish().await?;
        Ok(n)
    }

    /// Streams into `key` (a multipart upload on object storage, part by part), hashing on the
    /// way: the object appears only if the content has digest `want` (and `len` bytes, when given);
    /// otherwise the upload is aborted and nothing is left. `Ok(Err(got))` on a mismatch.
    pub async fn put_stream_verified(
        &self,
        key: &str,
        mut s: impl futures_util::Stream<Item = SResult<Bytes>> + Unpin,
        want: &berth_types::Digest,
        len: Option<u64>,
    ) -> SResult<Result<u64, String>> {
        let _t = crate::metrics::StorageTimer::start("put_stream");
        use sha2::Digest as _;
        let up = self.store.put_multipart(&Key::from(key)).await?;
        let mut w = WriteMultipart::new_with_chunk_size(up, 8 << 20);
        let (mut n, mut h) = (0u64, sha2::Sha256::new());
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(c) => {
                    n += c.len() as u64;
                    h.update(&c);
                    w.wait_for_capacity(4).await?;
                    w.write(&c);
                }
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(e);
                }
            }
        }
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if got != want.as_str() || len.is_some_and(|l| l != n) {
            let _ = w.abort().await;
            return Ok(Err(if got != want.as_str() { got } else { format!("{n} bytes") }));
        }
        w.finish().await?;
        Ok(Ok(n))
    }

    pub async fn delete(&self, key: &str) -> SResult<()> {
        let _t = crate::metrics::StorageTimer::start("delete");
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix`, recursively.
    pub async fn list(&self, prefix: &str) -> SResult<Vec<ObjectMeta>> {
        let _t = crate::metrics::StorageTimer::start("list");
        let p = Key::from(prefix);
        let all: Vec<ObjectMeta> = self.store.list(Some(&p)).try_collect().await?;
        Ok(all)
    }

    /// The names directly under `prefix` (objects and "folders").
    pub async fn children(&self, prefix: &str) -> SResult<Vec<String>> {
        let _t = crate::metrics::StorageTimer::start("children");
        let p = Key::from(prefix);
        let r = self.store.list_with_delimiter(Some(&p)).await?;
        let mut out: Vec<String> = r
            .common_prefixes
            .iter()
            .chain(r.objects.iter().map(|o| &o.location))
            .filter_map(|k| k.filename().map(String::from))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Moves an object (a rename on the filesystem, copy and delete on object storage).
    pub async fn rename(&self, from: &str, to: &str) -> SResult<()> {
        let _t = crate::metrics::StorageTimer::start("rename");
        self.store.rename(&Key::from(from), &Key::from(to)).await?;
        Ok(())
    }
}

/// Streams (a range of) a file in 1 MiB reads.
async fn file_body(path: std::path::PathBuf, range: Option<(u64, Option<u64>)>) -> SResult<Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(&path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::NotFound,
        _ => StorageError::Driver(format!("{}: {e}", path.display())),
    })?;
    let size = f.metadata().await.map_err(|e| StorageError::Driver(e.to_string()))?.len();
    let (start, end) = match range {
        Some((s, e)) => (s, e.unwrap_or(size.saturating_sub(1)).min(size.saturating_sub(1))),
        None => (0, size.saturating_sub(1)),
    };
    if start > 0 {
        f.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| StorageError::Driver(e.to_string()))?;
    }
    let len = if size == 0 { 0 } else { end + 1 - start };
    let reader = tokio_util::io::ReaderStream::with_capacity(f.take(len), 1 << 20);
    let stream = reader.map_err(|e| StorageError::Driver(e.to_string())).boxed();
    Ok(Body { stream, size, range: range.map(|_| (start, end)) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The suite every driver must pass.
    pub(crate) async fn driver_suite(s: &Storage) {
        assert!(s.stat("a/b").await.unwrap().is_none());
        assert!(s.read("a/b").await.unwrap().is_none());
        s.put("a/b", Bytes::from_static(b"hello world")).await.unwrap();
        assert_eq!(s.stat("a/b").await.unwrap().unwrap().size, 11);
        assert_eq!(&s.read("a/b").await.unwrap().unwrap()[..], b"hello world");
        let body = s.get("a/b", Some((6, None))).await.unwrap();
        assert_eq!(body.range, Some((6, 10)));
        let got: Vec<Bytes> = body.stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), b"world");
        let body = s.get("a/b", Some((0, Some(4)))).await.unwrap();
        let got: Vec<Bytes> = body.stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), b"hello");
        let chunks = futures_util::stream::iter((0..3).map(|i| Ok(Bytes::from(vec![i as u8; 5 << 20]))));
        assert_eq!(s.put_stream("big/x", chunks).await.unwrap(), 15 << 20);
        assert_eq!(s.stat("big/x").await.unwrap().unwrap().size, 15 << 20);
        // A failing stream leaves nothing behind.
        let bad =
            futures_util::stream::iter(vec![Ok(Bytes::from_static(b"x")), Err(StorageError::Driver("cut".into()))]);
        assert!(s.put_stream("big/y", bad).await.is_err());
        assert!(s.stat("big/y").await.unwrap().is_none());
        // A verified stream appears only with the digest (and length) it was promised.
        let want = berth_types::Digest::of(b"abcdef");
        let parts = || futures_util::stream::iter(vec![Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"def"))]);
        assert_eq!(s.put_stream_verified("v/ok", parts(), &want, Some(6)).await.unwrap(), Ok(6));
        assert_eq!(&s.read("v/ok").await.unwrap().unwrap()[..], b"abcdef");
        let other = berth_types::Digest::of(b"other");
        assert!(s.put_stream_verified("v/bad", parts(), &other, None).await.unwrap().is_err());
        assert!(s.stat("v/bad").await.unwrap().is_none(), "a mismatch leaves nothing");
        assert!(s.put_stream_verified("v/short", parts(), &want, Some(7)).await.unwrap().is_err());
        assert!(s.stat("v/short").await.unwrap().is_none());
        s.put("a/c/d", Bytes::from_static(b"1")).await.unwrap();
        assert_eq!(s.children("a").await.unwrap(), ["b", "c"]);
        assert_eq!(s.list("a").await.unwrap().len(), 2);
        s.rename("a/b", "z/b").await.unwrap();
        assert!(s.stat("a/b").await.unwrap().is_none());
        assert!(s.stat("z/b").await.unwrap().is_some());
        s.delete("z/b").await.unwrap();
        s.delete("z/b").await.unwrap();
        assert!(s.stat("z/b").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn filesystem_driver() {
        let d = tempfile::tempdir().unwrap();
        driver_suite(&Storage::filesystem(d.path()).unwrap()).await;
    }

    /// A moto S3 server on a free loopback port, with one bucket; killed on drop.
    pub(crate) struct Moto {
        child: std::process::Child,
        pub endpoint: String,
    }

    impl Moto {
        pub(crate) fn start() -> Moto {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = std::process::Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("moto_server (pip install 'moto[server]'; scripts/deps.sh does it)");
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            // Bucket creation doubles as the readiness probe.
            while std::process::Command::new("curl")
                .args(["-sf", "-X", "PUT", &format!("{endpoint}/berth-test")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                assert!(std::time::Instant::now() < deadline, "moto_server did not start");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Moto { child, endpoint }
        }
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn s3_driver() {
        let moto = Moto::start();
        let c = S3Config {
            bucket: "berth-test".into(),
            endpoint: Some(moto.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key: Some("test".into()),
            secret_key: Some("test".into()),
            allow_http: true,
        };
        driver_suite(&Storage::s3(&c).unwrap()).await;
    }
}
